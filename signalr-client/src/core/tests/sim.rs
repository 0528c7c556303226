//! A deterministic simulation of the core against a scripted server on virtual time, in the
//! manner of quinn's `Pair::step`: each seed draws a schedule of calls, sends, server
//! notifications, delays, cuts, failed attempts and the order in which independent events of
//! one instant are handled; the invariants are checked at every step and at the end. A failing
//! schedule names its seed (`SIM_SEED=<seed>` replays it alone).
//!
//! The server shares only the codec and the sans-IO replay buffer with the client.

use std::{
    collections::VecDeque,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    time::Instant,
};

use bytes::{Bytes, BytesMut};
use signalr_protocol::{
    Completion, HandshakeRequest, HubMessage, HubProtocol, Invocation, JsonHubProtocol,
    MessageDecoder, stateful::MessageBuffer,
};

use super::{Fake, Items, Slot, args, epoch, ms, settings, stream, ws};
use crate::{
    core::{Action, Core, Event, Request},
    error::HubError,
    state::HubConnectionState,
};

/// xorshift64*: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The server's side of one logical connection (it outlives a cut when stateful).
struct Session {
    buffer: Option<MessageBuffer>,
    decoder: MessageDecoder<Arc<dyn HubProtocol>>,
    handshaken: bool,
}

struct Server {
    protocol: Arc<dyn HubProtocol>,
    session: Option<Session>,
    /// The values of the sends it received, in order.
    sends: Vec<i64>,
    /// The next notification's value.
    next_notify: i64,
}

impl Server {
    /// Bytes from the client; what it answers.
    fn receive(&mut self, bytes: &[u8], out: &mut Vec<Bytes>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut data = BytesMut::from(bytes);
        if !session.handshaken {
            let hello = HandshakeRequest::decode(&mut data, usize::MAX)
                .expect("a valid handshake")
                .expect("a whole handshake per write");
            assert_eq!(hello.protocol, "json");
            session.handshaken = true;
            out.push(Bytes::from_static(b"{}\x1e"));
        }
        session.decoder.push(&data);
        let mut replies = Vec::new();
        while let Some(message) = session.decoder.next_message().expect("the client's bytes") {
            if let Some(buffer) = &mut session.buffer {
                match &message {
                    HubMessage::Sequence(s) => {
                        buffer.on_sequence(s.sequence_id).expect("a valid Sequence");
                        continue;
                    }
                    HubMessage::Ack(a) => {
                        buffer.on_ack(a.sequence_id).expect("a valid Ack");
                        continue;
                    }
                    m if m.message_type().is_trackable() && !buffer.on_received() => continue,
                    _ => {}
                }
            }
            match message {
                HubMessage::Invocation(i) if i.target == "Echo" => {
                    let values: Vec<i64> = i.arguments.deserialize().expect("Echo's argument");
                    self.sends.push(values[0]);
                }
                HubMessage::Invocation(i) => {
                    let values: Vec<i64> = i.arguments.deserialize().expect("numbers");
                    let id = i.invocation_id.expect("an invocation id");
                    replies.push(HubMessage::Completion(Completion::value(
                        id,
                        super::json(values.iter().sum()),
                    )));
                }
                HubMessage::StreamInvocation(s) => {
                    for n in 0..3 {
                        replies.push(HubMessage::StreamItem(signalr_protocol::StreamItem::new(
                            s.invocation_id.clone(),
                            super::json(n),
                        )));
                    }
                    replies.push(HubMessage::Completion(Completion::void(s.invocation_id)));
                }
                _ => {}
            }
        }
        for reply in replies {
            out.push(self.encode(&reply));
        }
    }

    fn encode(&mut self, message: &HubMessage) -> Bytes {
        let mut buf = BytesMut::new();
        self.protocol.encode(message, &mut buf).expect("encodable");
        let bytes = buf.freeze();
        if let Some(buffer) = self.session.as_mut().and_then(|s| s.buffer.as_mut()) {
            if message.message_type().is_trackable() {
                buffer.on_sent(bytes.clone());
            }
        }
        bytes
    }

    fn notify(&mut self) -> Bytes {
        let n = self.next_notify;
        self.next_notify += 1;
        self.encode(&HubMessage::Invocation(Invocation::non_blocking(
            "Notify",
            args(&[n]),
        )))
    }

    fn ack(&mut self) -> Option<Bytes> {
        let buffer = self.session.as_mut()?.buffer.as_mut()?;
        let ack = buffer.take_ack()?;
        Some(self.encode(&HubMessage::Ack(ack)))
    }
}

/// What one schedule went through.
#[derive(Default)]
struct Stats {
    cuts: usize,
    /// Stateful, every loss resumed: checked for zero loss.
    zero_loss_checked: bool,
    sends: usize,
    invokes: usize,
}

/// One schedule; panics when an invariant breaks.
#[allow(clippy::too_many_lines)]
fn run(seed: u64) -> Stats {
    let mut stats = Stats::default();
    let mut rng = Rng::new(seed);
    let stateful = rng.chance(50);
    let mut s = settings();
    s.outbox_capacity = 64;
    if stateful {
        s.stateful_buffer = Some(400 + usize::try_from(rng.below(2000)).unwrap());
    }
    let protocol: Arc<dyn HubProtocol> = Arc::new(JsonHubProtocol::new());
    let mut core: Core<Fake> = Core::new(Arc::new(s));
    let mut server = Server {
        protocol: Arc::clone(&protocol),
        session: None,
        sends: Vec::new(),
        next_notify: 0,
    };
    let mut now: Instant = epoch();
    let mut link_up = false;
    // Bytes in flight to the client, with when they arrive.
    let mut to_client: VecDeque<(Instant, Bytes)> = VecDeque::new();
    // An attempt the shell is making: (when it completes, resume?).
    let mut op: Option<(Instant, bool)> = None;
    let mut closing: Option<Instant> = None;
    let mut invokes: Vec<Slot<signalr_protocol::CompletionResult>> = Vec::new();
    let mut sends: Vec<(i64, Option<Slot<()>>)> = Vec::new();
    let mut streams: Vec<Items> = Vec::new();
    let mut notified: Vec<i64> = Vec::new();
    let mut resumes_ok = true;
    let mut stopped = false;
    core.handle_start(now);
    // Faults and calls for `steps`; then it settles (no fault, no call) until every call is
    // answered and a few seconds passed for the last Acks, and stops.
    let steps = 40 + rng.below(80);
    let mut connected = false;
    let mut settled_at: Option<Instant> = None;
    for step in 0..20_000 {
        let faults = step < steps;
        if !faults && !stopped {
            // Seen from inside: nothing waits in the outbox, nothing is unacknowledged.
            let unacknowledged = core
                .link
                .as_ref()
                .and_then(|l| l.stateful.as_ref())
                .map_or(0, MessageBuffer::unacknowledged);
            let quiet = connected
                && invokes.iter().all(|r| r.answers() == 1)
                && to_client.is_empty()
                && core.outbox.is_empty()
                && unacknowledged == 0;
            match settled_at {
                _ if !quiet => settled_at = None,
                None => settled_at = Some(now),
                Some(at) if now - at > ms(3000) => {
                    core.handle_request(now, Request::Stop { reply: 0 });
                    stopped = true;
                }
                Some(_) => {}
            }
        }
        // Independent events of this instant, in an order the seed picks.
        let mut order = [0u8, 1, 2, 3];
        for i in (1..order.len()).rev() {
            order.swap(i, usize::try_from(rng.below(i as u64 + 1)).unwrap());
        }
        for source in order {
            match source {
                // The application.
                0 if faults && core.wants_requests() && rng.chance(40) => {
                    match rng.below(4) {
                        0 => {
                            let reply = Slot::new();
                            let n = i64::try_from(invokes.len()).unwrap();
                            core.handle_request(
                                now,
                                Request::Invoke {
                                    id: format!("i{n}"),
                                    target: "Add".into(),
                                    headers: signalr_protocol::Headers::default(),
                                    arguments: args(&[n, 1]),
                                    stream_ids: Vec::new(),
                                    reply: reply.clone(),
                                },
                            );
                            invokes.push(reply);
                        }
                        1 => {
                            let items = Items::new(2 + usize::try_from(rng.below(3)).unwrap());
                            let id = format!("s{}", streams.len());
                            core.handle_request(now, stream(&id, &items));
                            streams.push(items);
                        }
                        _ => {
                            let n = i64::try_from(sends.len()).unwrap();
                            // Done once queued only while connected, as `HubConnection::send`.
                            let reply = (!connected || rng.chance(50)).then(Slot::new);
                            core.handle_request(
                                now,
                                Request::Send {
                                    target: "Echo".into(),
                                    headers: signalr_protocol::Headers::default(),
                                    arguments: args(&[n]),
                                    stream_ids: Vec::new(),
                                    reply: reply.clone(),
                                    reservation: None,
                                },
                            );
                            sends.push((n, reply));
                        }
                    }
                }
                // The network towards the client (held back while a stream consumer is full).
                1 => {
                    while to_client.front().is_some_and(|(at, _)| *at <= now) && core.wants_read() {
                        let (_, bytes) = to_client.pop_front().unwrap();
                        core.handle_received(now, &bytes);
                    }
                }
                // The server on its own: notifications and Acks.
                2 if link_up && server.session.as_ref().is_some_and(|s| s.handshaken) => {
                    let delay = ms(rng.below(30));
                    if faults && rng.chance(20) {
                        let bytes = server.notify();
                        to_client.push_back((now + delay, bytes));
                    }
                    if rng.chance(30) {
                        if let Some(bytes) = server.ack() {
                            to_client.push_back((now + delay, bytes));
                        }
                    }
                }
                // Consumers take stream items now and then.
                3 => {
                    for items in &streams {
                        if rng.chance(30) {
                            items.take();
                        }
                    }
                    if core.blocked_stream().is_some() {
                        core.handle_stream_room(now);
                    }
                }
                _ => {}
            }
        }
        // A cut: the link and everything in flight on it are gone.
        if faults && link_up && rng.chance(3) {
            stats.cuts += 1;
            link_up = false;
            to_client.clear();
            if !stateful {
                server.session = None;
            }
            core.handle_transport_error(now, HubError::ConnectionClosed);
        }
        // What the core asks for.
        while let Some(action) = core.poll_action() {
            match action {
                Action::Connect(_) => op = Some((now + ms(1 + rng.below(50)), false)),
                Action::Resume => op = Some((now + ms(1 + rng.below(50)), true)),
                Action::Discard => {
                    link_up = false;
                    to_client.clear();
                }
                Action::Close(_) => closing = Some(now + ms(rng.below(20))),
            }
        }
        if let Some((_, resume)) = op.filter(|(at, _)| *at <= now) {
            op = None;
            // One attempt in five fails.
            let fails = faults && rng.chance(20);
            match (resume, fails) {
                (false, false) => {
                    server.session = Some(Session {
                        buffer: stateful.then(|| MessageBuffer::new(100_000)),
                        decoder: MessageDecoder::new(Arc::clone(&protocol)),
                        handshaken: false,
                    });
                    link_up = true;
                    core.handle_transport_opened(now, ws(stateful));
                }
                (false, true) => core.handle_connect_failed(now, HubError::ConnectionClosed),
                (true, false) if server.session.is_some() => {
                    link_up = true;
                    core.handle_resumed(now);
                    // The server's half of the resume: Sequence and its own replay.
                    if let Some(buffer) = server.session.as_mut().and_then(|s| s.buffer.as_mut()) {
                        let mut buf = BytesMut::new();
                        buffer.resume_into(protocol.as_ref(), &mut buf).unwrap();
                        to_client.push_back((now, buf.freeze()));
                    }
                }
                (true, _) => core.handle_resume_failed(now, &HubError::ConnectionClosed),
            }
        }
        if closing.is_some_and(|at| at <= now) {
            closing = None;
            link_up = false;
            core.handle_closed(now, None);
        }
        // Writes: delivered to the server unless the link is down.
        while let Some(bytes) = core.poll_transmit(now) {
            if faults && link_up && rng.chance(2) {
                // Written, and lost with the link before the server read it.
                core.handle_written(now);
                link_up = false;
                to_client.clear();
                if !stateful {
                    server.session = None;
                }
                core.handle_transport_error(now, HubError::ConnectionClosed);
            } else if link_up {
                let mut replies = Vec::new();
                server.receive(&bytes, &mut replies);
                let delay = ms(rng.below(30));
                for reply in replies {
                    to_client.push_back((now + delay, reply));
                }
                core.handle_written(now);
            } else {
                core.handle_write_failed(now, HubError::ConnectionClosed);
            }
        }
        while let Some(event) = core.poll_event() {
            if let Event::State(state) = event {
                connected = state == HubConnectionState::Connected;
                if state == HubConnectionState::Reconnecting && stateful {
                    resumes_ok = false;
                }
            }
        }
        for call in core.poll_calls() {
            assert_eq!(call.target, "Notify");
            let values: Vec<i64> = call.arguments.deserialize().unwrap();
            // Never twice, never out of order (with stateful reconnect, never a gap).
            if let Some(last) = notified.last() {
                assert!(values[0] > *last, "notification {} after {last}", values[0]);
            }
            notified.push(values[0]);
        }
        if core.is_finished() {
            break;
        }
        // Time moves: a little, or to the next deadline when nothing else is due.
        let next = [
            core.poll_timeout(),
            to_client.front().map(|(at, _)| *at),
            op.map(|(at, _)| at),
            closing,
        ]
        .into_iter()
        .flatten()
        .min();
        now += match next {
            Some(at) if at > now && rng.chance(50) => at - now,
            _ => ms(rng.below(20)),
        };
        if core.poll_timeout().is_some_and(|at| at <= now) {
            core.handle_timeout(now);
        }
    }
    assert!(
        core.is_finished(),
        "not finished: stopped {stopped}, connected {connected}, stateful {stateful}, unanswered {:?}, in flight {}, phase {:?}",
        invokes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.answers() != 1)
            .map(|(i, _)| i)
            .collect::<Vec<_>>(),
        to_client.len(),
        core.phase,
    );
    for (i, reply) in invokes.iter().enumerate() {
        assert_eq!(
            reply.answers(),
            1,
            "invocation {i} answered {} times",
            reply.answers()
        );
    }
    for (n, reply) in &sends {
        if let Some(reply) = reply {
            assert!(reply.answers() <= 1, "send {n} answered twice");
        }
    }
    // Sends are never duplicated nor reordered; with every resume a success, none is lost.
    assert!(
        server.sends.windows(2).all(|w| w[0] < w[1]),
        "sends out of order or twice: {:?}",
        server.sends
    );
    stats.sends = sends.len();
    stats.invokes = invokes.len();
    stats.zero_loss_checked = stateful && resumes_ok;
    if stateful && resumes_ok {
        let sent: Vec<i64> = sends
            .iter()
            .filter(|(_, r)| r.as_ref().is_none_or(|r| matches!(r.take(), Some(Ok(())))))
            .map(|(n, _)| *n)
            .collect();
        for n in &sent {
            assert!(server.sends.contains(n), "send {n} accepted but lost");
        }
    }
    for (i, items) in streams.iter().enumerate() {
        assert!(
            items.len() <= items.capacity,
            "stream {i} over its capacity"
        );
    }
    stats
}

#[test]
fn ten_thousand_seeded_schedules_keep_every_promise() {
    let seeds: Vec<u64> = if let Ok(seed) = std::env::var("SIM_SEED") {
        vec![seed.parse().expect("SIM_SEED is a number")]
    } else {
        let count = std::env::var("SIM_SCHEDULES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000u64);
        (1..=count).collect()
    };
    let schedules = seeds.len();
    let (mut cuts, mut checked, mut sends, mut invokes) = (0, 0, 0, 0);
    for seed in seeds {
        let stats = catch_unwind(AssertUnwindSafe(|| run(seed)))
            .unwrap_or_else(|_| panic!("schedule failed: SIM_SEED={seed} replays it"));
        cuts += stats.cuts;
        checked += usize::from(stats.zero_loss_checked);
        sends += stats.sends;
        invokes += stats.invokes;
    }
    eprintln!(
        "simulated {schedules} schedules: {cuts} cuts, {invokes} invocations, {sends} sends; \
         {checked} stateful schedules checked for zero loss"
    );
    // The schedules do what they are for.
    if schedules >= 1000 {
        assert!(cuts > schedules, "{cuts} cuts");
        assert!(checked > schedules / 10, "{checked} checked for zero loss");
    }
}
