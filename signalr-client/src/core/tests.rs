//! The core without a runtime: every input is a call with its instant, every effect is polled.
//! The only clock read is the base instant of each test; time moves by adding to it.
#![allow(
    clippy::unchecked_time_subtraction,
    clippy::naive_bytecount,
    clippy::option_option
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use signalr_protocol::{
    Ack, Arguments, Close, Completion, CompletionResult, HandshakeRequest, HubMessage, HubProtocol,
    Invocation, JsonHubProtocol, MessageDecoder, Payload, PayloadFormat, Sequence, StreamItem,
    TransportKind,
};
use signalr_reconnect::{FixedDelays, KeepAliveConfig};

use super::{
    Action, Core, Event, Opened, Request, Settings,
    fake::{Fake, Items, Slot},
};
use crate::{
    error::{HandshakeError, HubError, Result},
    state::HubConnectionState,
};

mod sim;

/// The base instant of a test.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn settings() -> Settings {
    Settings {
        protocol: Arc::new(JsonHubProtocol::new()),
        keep_alive: KeepAliveConfig::default(),
        stateful_buffer: None,
        outbox_capacity: 4,
        stream_consumer_timeout: secs(5),
        retry: Some(Arc::new(FixedDelays::dotnet_default())),
        start_policy: None,
        log_message_content: false,
    }
}

fn json(value: i64) -> Payload {
    Payload::json(&value).unwrap()
}

fn args(values: &[i64]) -> Arguments {
    Arguments::from_values(PayloadFormat::Json, values).unwrap()
}

fn invoke(id: &str, reply: &Slot<CompletionResult>) -> Request<Fake> {
    Request::Invoke {
        id: id.into(),
        target: "Add".into(),
        headers: signalr_protocol::Headers::default(),
        arguments: args(&[1, 2]),
        stream_ids: Vec::new(),
        reply: reply.clone(),
    }
}

fn send(reply: Option<&Slot<()>>) -> Request<Fake> {
    Request::Send {
        target: "Echo".into(),
        headers: signalr_protocol::Headers::default(),
        arguments: args(&[7]),
        stream_ids: Vec::new(),
        reply: reply.cloned(),
        reservation: None,
    }
}

fn stream(id: &str, items: &Items) -> Request<Fake> {
    Request::Stream {
        id: id.into(),
        target: "Counter".into(),
        headers: signalr_protocol::Headers::default(),
        arguments: args(&[]),
        stream_ids: Vec::new(),
        items: items.clone(),
    }
}

fn ws(stateful: bool) -> Opened {
    Opened {
        kind: TransportKind::WebSockets,
        connection_id: Some("c1".into()),
        stateful,
    }
}

/// A core, its clock, and what it said.
struct H {
    core: Core<Fake>,
    now: Instant,
    protocol: Arc<dyn HubProtocol>,
    events: Vec<Event<Fake>>,
    /// The server's calls for the handlers.
    calls: Vec<super::ServerCall>,
    actions: Vec<Action>,
    /// Handshake requests written.
    hellos: Vec<HandshakeRequest>,
}

impl H {
    fn new(settings: Settings) -> Self {
        Self {
            protocol: Arc::clone(&settings.protocol),
            core: Core::new(Arc::new(settings)),
            now: epoch(),
            events: Vec::new(),
            calls: Vec::new(),
            actions: Vec::new(),
            hellos: Vec::new(),
        }
    }

    /// Collects what the core said.
    fn poll(&mut self) {
        while let Some(a) = self.core.poll_action() {
            self.actions.push(a);
        }
        while let Some(e) = self.core.poll_event() {
            self.events.push(e);
        }
        self.calls.extend(self.core.poll_calls());
    }

    /// Everything the core writes now, each write reported done.
    fn written(&mut self) -> Vec<HubMessage> {
        let mut messages = Vec::new();
        while let Some(bytes) = self.core.poll_transmit(self.now) {
            let mut buf = BytesMut::from(&bytes[..]);
            if bytes.starts_with(b"{\"protocol\"") {
                let hello = HandshakeRequest::decode(&mut buf, usize::MAX)
                    .unwrap()
                    .unwrap();
                self.hellos.push(hello);
            }
            let mut decoder = MessageDecoder::new(Arc::clone(&self.protocol));
            decoder.push(&buf);
            while let Some(m) = decoder.next_message().unwrap() {
                messages.push(m);
            }
            self.core.handle_written(self.now);
        }
        self.poll();
        messages
    }

    fn receive(&mut self, message: &HubMessage) {
        let mut buf = BytesMut::new();
        self.protocol.encode(message, &mut buf).unwrap();
        self.core.handle_received(self.now, &buf);
        self.poll();
    }

    fn request(&mut self, request: Request<Fake>) {
        self.core.handle_request(self.now, request);
        self.poll();
    }

    /// Runs every timer due up to `now + by`, in order, then sets the clock there.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.core.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.core.handle_timeout(self.now);
            self.poll();
        }
        self.now = until;
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn states(&self) -> Vec<HubConnectionState> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::State(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    fn started(&mut self) -> Option<Result<()>> {
        let i = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Started(_)))?;
        match self.events.remove(i) {
            Event::Started(r) => Some(r.map_err(|e| *e)),
            _ => None,
        }
    }

    fn closed(&self) -> Option<Option<&HubError>> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(r) => Some(r.as_deref()),
            _ => None,
        })
    }

    /// Opens a transport for the pending connect and completes the handshake.
    fn open(&mut self, opened: Opened) {
        let actions = self.take_actions();
        assert!(
            actions.iter().any(|a| matches!(a, Action::Connect(_))),
            "{actions:?}"
        );
        self.core.handle_transport_opened(self.now, opened);
        assert!(self.written().is_empty());
        self.core.handle_received(self.now, b"{}\x1e");
        self.poll();
    }

    /// Started and connected.
    fn connected(settings: Settings, opened: Opened) -> Self {
        let mut h = Self::new(settings);
        h.core.handle_start(h.now);
        h.poll();
        h.open(opened);
        assert!(matches!(h.started(), Some(Ok(()))));
        h
    }
}

#[test]
fn start_sends_the_handshake_and_reports_connected() {
    let mut h = H::new(settings());
    h.core.handle_start(h.now);
    h.poll();
    assert!(matches!(h.take_actions()[..], [Action::Connect(None)]));
    h.core.handle_transport_opened(h.now, ws(false));
    h.written();
    assert_eq!(h.hellos[0].protocol, "json");
    assert_eq!(h.hellos[0].version, 1);
    assert!(h.core.wants_read());
    // The handshake response and a message in the same read.
    let mut read = b"{}\x1e".to_vec();
    let mut buf = BytesMut::new();
    h.protocol
        .encode(
            &HubMessage::Invocation(Invocation::non_blocking("Notify", args(&[1]))),
            &mut buf,
        )
        .unwrap();
    read.extend_from_slice(&buf);
    h.core.handle_received(h.now, &read);
    h.poll();
    assert!(matches!(h.started(), Some(Ok(()))));
    assert_eq!(h.states(), [HubConnectionState::Connected]);
    assert!(h.events.iter().any(|e| matches!(e, Event::Connected { kind: TransportKind::WebSockets, connection_id: Some(id), stateful: false } if id == "c1")));
    assert!(h.calls.iter().any(|call| call.target == "Notify"));
}

#[test]
fn a_refused_handshake_fails_start_without_retrying() {
    let mut s = settings();
    s.start_policy = Some(Arc::new(FixedDelays::from_secs(&[1, 1, 1])));
    let mut h = H::new(s);
    h.core.handle_start(h.now);
    h.poll();
    h.take_actions();
    h.core.handle_transport_opened(h.now, ws(false));
    h.written();
    h.core
        .handle_received(h.now, b"{\"error\":\"no such protocol\"}\x1e");
    h.poll();
    assert!(matches!(
        h.started(),
        Some(Err(HubError::Handshake(HandshakeError::Refused(e)))) if e == "no such protocol"
    ));
    assert!(h.core.is_finished());
    assert!(matches!(h.take_actions()[..], [Action::Discard]));
    // No close event for a start that failed, as the official clients.
    assert!(h.closed().is_none());
}

#[test]
fn the_handshake_times_out_after_the_handshake_timeout() {
    let mut h = H::new(settings());
    h.core.handle_start(h.now);
    h.poll();
    h.take_actions();
    h.core.handle_transport_opened(h.now, ws(false));
    h.written();
    h.advance(secs(15) - ms(1));
    assert!(h.started().is_none());
    h.advance(ms(1));
    assert!(matches!(h.started(), Some(Err(HubError::HandshakeTimeout))));
}

#[test]
fn a_closed_or_garbled_handshake_is_typed() {
    for (input, closed) in [(None, true), (Some(&b"{\"x\":\x1e"[..]), false)] {
        let mut h = H::new(settings());
        h.core.handle_start(h.now);
        h.poll();
        h.core.handle_transport_opened(h.now, ws(false));
        h.written();
        match input {
            Some(bytes) => h.core.handle_received(h.now, bytes),
            None => h.core.handle_transport_closed(h.now),
        }
        h.poll();
        let started = h.started();
        if closed {
            assert!(matches!(
                started,
                Some(Err(HubError::Handshake(HandshakeError::Closed)))
            ));
        } else {
            assert!(matches!(
                started,
                Some(Err(HubError::Handshake(HandshakeError::Malformed(_))))
            ));
        }
    }
}

#[test]
fn the_start_policy_retries_a_failed_start_on_its_delays() {
    let mut s = settings();
    s.start_policy = Some(Arc::new(FixedDelays::from_secs(&[2])));
    let mut h = H::new(s);
    h.core.handle_start(h.now);
    h.poll();
    h.take_actions();
    h.core
        .handle_connect_failed(h.now, HubError::ConnectionClosed);
    h.poll();
    assert!(h.take_actions().is_empty());
    // A call while starting is refused: there is no outbox before the first connection.
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    assert!(matches!(
        reply.take(),
        Some(Err(HubError::NotConnected {
            state: HubConnectionState::Connecting
        }))
    ));
    h.advance(secs(2) - ms(1));
    assert!(h.take_actions().is_empty());
    h.advance(ms(1));
    h.open(ws(false));
    assert!(matches!(h.started(), Some(Ok(()))));
    // A second failure after the policy's one retry gives up.
    let mut s = settings();
    s.start_policy = Some(Arc::new(FixedDelays::from_secs(&[2])));
    let mut h = H::new(s);
    h.core.handle_start(h.now);
    h.poll();
    h.core
        .handle_connect_failed(h.now, HubError::ConnectionClosed);
    h.advance(secs(2));
    h.core
        .handle_connect_failed(h.now, HubError::ConnectionClosed);
    h.poll();
    assert!(matches!(h.started(), Some(Err(HubError::ConnectionClosed))));
    assert!(h.core.is_finished());
}

#[test]
fn an_invocation_is_answered_by_its_completion() {
    let mut h = H::connected(settings(), ws(false));
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    let written = h.written();
    assert!(
        matches!(&written[..], [HubMessage::Invocation(i)] if i.target == "Add" && i.invocation_id.as_deref() == Some("1"))
    );
    assert_eq!(reply.answers(), 0);
    h.receive(&HubMessage::Completion(Completion::value("1", json(3))));
    let Some(Ok(CompletionResult::Value(v))) = reply.take() else {
        panic!("no value")
    };
    assert_eq!(v.deserialize::<i64>().unwrap(), 3);
    // A completion nobody waits for is ignored.
    h.receive(&HubMessage::Completion(Completion::void("9")));
    assert!(!h.core.is_finished());
}

#[test]
fn a_stream_item_for_an_invocation_fails_it_as_a_protocol_violation() {
    let mut h = H::connected(settings(), ws(false));
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    h.written();
    h.receive(&HubMessage::StreamItem(StreamItem::new("1", json(1))));
    assert!(matches!(
        reply.take(),
        Some(Err(HubError::Protocol(
            signalr_protocol::ProtocolError::UnexpectedMessage { .. }
        )))
    ));
}

#[test]
fn requests_made_together_go_out_in_one_write() {
    let mut h = H::connected(settings(), ws(false));
    let sent = Slot::new();
    let reply = Slot::new();
    h.request(send(Some(&sent)));
    h.request(invoke("1", &reply));
    h.request(send(None));
    let bytes = h.core.poll_transmit(h.now).unwrap();
    assert_eq!(bytes.iter().filter(|b| **b == 0x1e).count(), 3);
    assert!(h.core.poll_transmit(h.now).is_none(), "one write at a time");
    // A send waiting for its outcome has it once written.
    assert_eq!(sent.answers(), 0);
    h.core.handle_written(h.now);
    assert!(matches!(sent.take(), Some(Ok(()))));
}

#[test]
fn pings_go_out_after_the_keep_alive_interval_of_silence() {
    let mut h = H::connected(settings(), ws(false));
    h.advance(secs(15) - ms(1));
    assert!(h.written().is_empty());
    h.advance(ms(1));
    assert_eq!(h.written(), [HubMessage::Ping]);
    // Sending moves the next ping later (and the server's ping its timeout).
    h.advance(secs(10));
    h.receive(&HubMessage::Ping);
    h.request(send(None));
    h.written();
    h.advance(secs(14));
    assert!(h.written().is_empty());
    h.advance(secs(1));
    assert_eq!(h.written(), [HubMessage::Ping]);
}

#[test]
fn long_polling_neither_pings_nor_times_the_server_out() {
    let opened = Opened {
        kind: TransportKind::LongPolling,
        connection_id: None,
        stateful: false,
    };
    let mut h = H::connected(settings(), opened);
    h.advance(secs(120));
    assert!(h.written().is_empty());
    assert_eq!(h.states(), [HubConnectionState::Connected]);
}

#[test]
fn server_silence_past_the_server_timeout_loses_the_connection() {
    let mut h = H::connected(settings(), ws(false));
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    h.written();
    // Received traffic (a ping) moves the deadline.
    h.advance(secs(20));
    h.receive(&HubMessage::Ping);
    h.advance(secs(30) - ms(1));
    assert_eq!(h.states(), [HubConnectionState::Connected]);
    h.advance(ms(1));
    assert_eq!(
        h.states(),
        [
            HubConnectionState::Connected,
            HubConnectionState::Reconnecting
        ]
    );
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Reconnecting(e) if matches!(**e, HubError::ServerTimeout)))
    );
    // The call in flight fails with the loss.
    assert!(
        matches!(reply.take(), Some(Err(HubError::ConnectionLost(e))) if matches!(*e, HubError::ServerTimeout))
    );
}

#[test]
fn reconnect_follows_the_policy_then_gives_up_with_a_typed_reason() {
    let mut h = H::connected(settings(), ws(false));
    h.take_actions();
    h.core
        .handle_transport_error(h.now, HubError::ConnectionClosed);
    h.poll();
    assert!(matches!(h.take_actions()[..], [Action::Discard]));
    // The default delays: 0, 2, 10, 30 s.
    let mut at = Vec::new();
    let t0 = h.now;
    for _ in 0..4 {
        for _ in 0..60_000 {
            h.advance(Duration::ZERO);
            if h.actions.iter().any(|a| matches!(a, Action::Connect(_))) {
                break;
            }
            h.advance(ms(1));
        }
        at.push(h.now - t0);
        let Some(Action::Connect(Some(attempt))) = h.take_actions().pop() else {
            panic!("no attempt")
        };
        assert_eq!(attempt.number, u32::try_from(at.len()).unwrap());
        h.core
            .handle_connect_failed(h.now, HubError::ConnectionClosed);
        h.poll();
    }
    assert_eq!(at, [ms(0), secs(2), secs(12), secs(42)]);
    let Some(Some(HubError::ReconnectFailed { attempts, .. })) = h.closed() else {
        panic!("not given up")
    };
    assert_eq!(*attempts, 4);
    assert!(h.core.is_finished());
}

#[test]
fn a_reconnect_that_succeeds_reports_reconnected_and_sends_the_outbox_in_order() {
    let mut h = H::connected(settings(), ws(false));
    h.core
        .handle_transport_error(h.now, HubError::ConnectionClosed);
    h.poll();
    // Calls made while reconnecting wait, up to the outbox's capacity (4).
    let replies: Vec<_> = (0..5).map(|_| Slot::new()).collect();
    for (i, reply) in replies.iter().enumerate() {
        h.request(invoke(&format!("r{i}"), reply));
    }
    assert!(matches!(
        replies[4].take(),
        Some(Err(HubError::OutboxFull { capacity: 4 }))
    ));
    h.advance(ms(0));
    h.open(ws(false));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Reconnected(Some(id)) if id == "c1"))
    );
    let ids: Vec<_> = h
        .written()
        .into_iter()
        .filter_map(|m| match m {
            HubMessage::Invocation(i) => i.invocation_id,
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3"]);
}

#[test]
fn sends_reported_done_when_queued_are_held_past_the_outbox_capacity() {
    // Sends admitted while connected (their callers already told they are done) that reach
    // the core after the link broke: the outbox (capacity 4) takes every one, in order. Its
    // capacity bounds the calls made while reconnecting, whose callers still wait: four of
    // those wait too, and the fifth is refused.
    let mut h = H::connected(settings(), ws(false));
    h.core
        .handle_transport_error(h.now, HubError::ConnectionClosed);
    h.poll();
    for _ in 0..6 {
        h.request(send(None));
    }
    let replies: Vec<_> = (0..5).map(|_| Slot::new()).collect();
    for (i, reply) in replies.iter().enumerate() {
        h.request(invoke(&format!("r{i}"), reply));
    }
    assert!(matches!(
        replies[4].take(),
        Some(Err(HubError::OutboxFull { capacity: 4 }))
    ));
    h.advance(ms(0));
    h.open(ws(false));
    let written: Vec<_> = h
        .written()
        .into_iter()
        .filter_map(|m| match m {
            HubMessage::Invocation(i) => Some(i.invocation_id.unwrap_or_default()),
            _ => None,
        })
        .collect();
    assert_eq!(written, ["", "", "", "", "", "", "r0", "r1", "r2", "r3"]);
}

#[test]
fn a_close_without_allow_reconnect_ends_the_connection() {
    let mut h = H::connected(settings(), ws(false));
    h.receive(&HubMessage::Close(Close::new(Some("bye".into()), false)));
    assert!(matches!(
        h.closed(),
        Some(Some(HubError::ServerClosed { error: Some(e), allow_reconnect: false })) if e == "bye"
    ));
    // A close that allows it reconnects.
    let mut h = H::connected(settings(), ws(false));
    h.receive(&HubMessage::Close(Close::new(None, true)));
    assert!(h.closed().is_none());
    assert_eq!(h.states().last(), Some(&HubConnectionState::Reconnecting));
}

#[test]
fn without_a_retry_policy_a_loss_closes() {
    let mut s = settings();
    s.retry = None;
    let mut h = H::connected(s, ws(false));
    h.core.handle_transport_closed(h.now);
    h.poll();
    assert!(matches!(h.closed(), Some(Some(HubError::ConnectionClosed))));
    // A call made after gets the reason.
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    assert!(matches!(
        reply.take(),
        Some(Err(HubError::ConnectionLost(_)))
    ));
}

#[test]
fn a_protocol_violation_loses_the_connection_with_its_reason() {
    let mut s = settings();
    s.retry = None;
    let mut h = H::connected(s, ws(false));
    h.core.handle_received(h.now, b"{\"type\":1}\x1e");
    h.poll();
    assert!(matches!(h.closed(), Some(Some(HubError::Protocol(_)))));
}

#[test]
fn stop_writes_what_was_queued_then_close_and_acknowledges() {
    let mut h = H::connected(settings(), ws(false));
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    h.take_actions();
    h.request(Request::Stop { reply: 7 });
    // The invocation first, then the Close action with its frame.
    assert!(matches!(&h.written()[..], [HubMessage::Invocation(_)]));
    assert!(matches!(h.take_actions()[..], [Action::Close(Some(_))]));
    assert_eq!(h.states().last(), Some(&HubConnectionState::Disconnecting));
    assert!(!h.core.wants_requests());
    h.core.handle_closed(h.now, Some(20));
    h.poll();
    assert!(matches!(h.closed(), Some(None)));
    assert!(matches!(reply.take(), Some(Err(HubError::Stopped))));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Stopped(r) if r[..] == [7]))
    );
}

#[test]
fn a_close_that_hangs_is_given_up_after_the_grace() {
    let mut h = H::connected(settings(), ws(false));
    h.request(Request::Stop { reply: 1 });
    h.written();
    h.advance(secs(6));
    assert!(matches!(h.closed(), Some(None)));
}

#[test]
fn stop_while_reconnecting_closes_at_once() {
    let mut h = H::connected(settings(), ws(false));
    h.core
        .handle_transport_error(h.now, HubError::ConnectionClosed);
    h.advance(ms(0));
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    h.request(Request::Stop { reply: 2 });
    assert!(matches!(h.closed(), Some(None)));
    assert!(matches!(reply.take(), Some(Err(HubError::Stopped))));
    assert!(h.core.is_finished());
}

#[test]
fn stop_while_starting_fails_start() {
    let mut h = H::new(settings());
    h.core.handle_start(h.now);
    h.request(Request::Stop { reply: 3 });
    assert!(matches!(h.started(), Some(Err(HubError::Stopped))));
    assert!(h.core.is_finished());
}

#[test]
fn a_full_stream_consumer_holds_reading_back_until_it_has_room() {
    let mut h = H::connected(settings(), ws(false));
    let items = Items::new(3); // two items and the end
    h.request(stream("s", &items));
    h.written();
    for n in 0..4 {
        h.receive(&HubMessage::StreamItem(StreamItem::new("s", json(n))));
    }
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    // Two delivered, the third held (reading stops), the fourth unread behind it.
    assert_eq!(items.len(), 2);
    assert!(!h.core.wants_read());
    assert!(h.core.blocked_stream().is_some());
    // Calls and pings go on meanwhile.
    assert!(matches!(&h.written()[..], [HubMessage::Invocation(_)]));
    h.advance(secs(4));
    // The consumer takes one: the held item goes in, and the next is held.
    items.take();
    h.core.handle_stream_room(h.now);
    h.poll();
    assert_eq!(items.len(), 2);
    assert!(!h.core.wants_read());
    items.take();
    items.take();
    h.core.handle_stream_room(h.now);
    assert_eq!(items.len(), 1);
    assert!(h.core.wants_read());
}

#[test]
fn a_stream_consumer_that_takes_nothing_is_given_up_after_its_timeout() {
    let mut h = H::connected(settings(), ws(false));
    let items = Items::new(2);
    h.request(stream("s", &items));
    h.written();
    h.receive(&HubMessage::StreamItem(StreamItem::new("s", json(0))));
    h.receive(&HubMessage::StreamItem(StreamItem::new("s", json(1))));
    assert!(!h.core.wants_read());
    h.advance(secs(5));
    assert!(
        matches!(&h.written()[..], [HubMessage::CancelInvocation(c)] if c.invocation_id == "s")
    );
    assert!(matches!(items.take(), Some(Ok(_))));
    assert!(matches!(
        items.take(),
        Some(Err(HubError::StreamConsumerTooSlow))
    ));
    assert!(h.core.wants_read());
}

#[test]
fn a_dropped_stream_consumer_cancels_its_stream() {
    let mut h = H::connected(settings(), ws(false));
    let items = Items::new(4);
    h.request(stream("s", &items));
    h.written();
    items.closed.set(true);
    h.receive(&HubMessage::StreamItem(StreamItem::new("s", json(0))));
    assert!(matches!(
        &h.written()[..],
        [HubMessage::CancelInvocation(_)]
    ));
    // An explicit cancel of a live stream sends CancelInvocation once.
    let items = Items::new(4);
    h.request(stream("t", &items));
    h.written();
    h.request(Request::Cancel { id: "t".into() });
    h.request(Request::Cancel { id: "t".into() });
    assert_eq!(h.written().len(), 1);
}

#[test]
fn stream_ends_reach_the_consumer() {
    let mut h = H::connected(settings(), ws(false));
    let items = Items::new(4);
    h.request(stream("s", &items));
    h.written();
    h.receive(&HubMessage::Completion(Completion::error("s", "boom")));
    assert!(
        matches!(items.take(), Some(Err(HubError::Invocation { message })) if message == "boom")
    );
}

#[test]
fn a_client_result_answer_goes_out_as_a_completion() {
    let mut h = H::connected(settings(), ws(false));
    assert!(h.core.wants_answers());
    h.core
        .handle_answer(h.now, Completion::value("srv-1", json(42)));
    assert!(matches!(&h.written()[..], [HubMessage::Completion(c)] if c.invocation_id == "srv-1"));
}

#[test]
fn a_failed_write_fails_its_sends_without_stateful_reconnect() {
    let mut h = H::connected(settings(), ws(false));
    let sent = Slot::new();
    h.request(send(Some(&sent)));
    h.request(send(None));
    assert!(h.core.poll_transmit(h.now).is_some());
    h.core
        .handle_write_failed(h.now, HubError::ConnectionClosed);
    h.poll();
    assert!(matches!(
        sent.take(),
        Some(Err(HubError::ConnectionLost(_)))
    ));
    assert_eq!(h.states().last(), Some(&HubConnectionState::Reconnecting));
}

/// A stateful connection with a 100-byte replay buffer.
fn stateful() -> H {
    let mut s = settings();
    s.stateful_buffer = Some(100);
    let mut h = H::connected(s, ws(true));
    assert_eq!(h.hellos[0].version, 2);
    h.take_actions();
    h
}

#[test]
fn stateful_reconnect_resumes_and_replays_what_was_not_acknowledged() {
    let mut h = stateful();
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    h.request(send(None));
    assert_eq!(h.written().len(), 2);
    h.receive(&HubMessage::Ack(Ack::new(1)));
    h.core
        .handle_transport_error(h.now, HubError::ConnectionClosed);
    h.poll();
    assert!(matches!(
        h.take_actions()[..],
        [Action::Discard, Action::Resume]
    ));
    // Not reconnecting: the state stays, the call waits.
    assert_eq!(h.states(), [HubConnectionState::Connected]);
    let sent = Slot::new();
    h.request(send(Some(&sent)));
    h.core.handle_resumed(h.now);
    // Sequence, then the unacknowledged send, then (once resumed) the outbox.
    let replay = h.written();
    assert!(
        matches!(
            &replay[0],
            HubMessage::Sequence(Sequence { sequence_id: 2, .. })
        ),
        "{replay:?}"
    );
    assert!(matches!(&replay[1], HubMessage::Invocation(i) if i.invocation_id.is_none()));
    assert_eq!(replay.len(), 3, "{replay:?}");
    assert!(matches!(sent.take(), Some(Ok(()))));
    // The invocation in flight survived: the server's Sequence, then its answer.
    h.receive(&HubMessage::Sequence(Sequence::new(1)));
    h.receive(&HubMessage::Completion(Completion::void("1")));
    assert!(matches!(reply.take(), Some(Ok(CompletionResult::Void))));
}

#[test]
fn a_resume_refused_by_the_server_falls_back_to_a_new_connection() {
    let mut h = stateful();
    let reply = Slot::new();
    h.request(invoke("1", &reply));
    h.written();
    h.core
        .handle_transport_error(h.now, HubError::ConnectionClosed);
    h.poll();
    h.take_actions();
    let gone = HubError::Transport(signalr_transport::TransportError::Status {
        what: "WebSocket upgrade",
        status: 404,
    });
    h.core.handle_resume_failed(h.now, &gone);
    h.poll();
    assert!(matches!(
        reply.take(),
        Some(Err(HubError::ConnectionLost(e))) if matches!(*e, HubError::ResumeFailed { unacknowledged: 1, .. })
    ));
    assert_eq!(h.states().last(), Some(&HubConnectionState::Reconnecting));
}

#[test]
fn resume_attempts_back_off_within_the_resume_window() {
    let mut h = stateful();
    h.core
        .handle_transport_error(h.now, HubError::ConnectionClosed);
    h.poll();
    let t0 = h.now;
    let mut attempts = Vec::new();
    while h.states().last() == Some(&HubConnectionState::Connected) {
        if h.take_actions().iter().any(|a| matches!(a, Action::Resume)) {
            attempts.push(h.now - t0);
            h.core
                .handle_resume_failed(h.now, &HubError::ConnectionClosed);
            h.poll();
            continue;
        }
        h.advance(ms(1));
    }
    assert_eq!(
        attempts[..8],
        [
            ms(0),
            ms(10),
            ms(30),
            ms(70),
            ms(150),
            ms(310),
            ms(630),
            ms(1130)
        ]
    );
    assert!(h.now - t0 <= secs(10));
    assert!(h.now - t0 > secs(9));
}

#[test]
fn an_ack_goes_out_a_second_after_the_first_unacknowledged_message() {
    let mut h = stateful();
    h.receive(&HubMessage::Sequence(Sequence::new(1)));
    h.receive(&HubMessage::Invocation(Invocation::non_blocking(
        "Notify",
        args(&[1]),
    )));
    h.advance(ms(500));
    h.receive(&HubMessage::Invocation(Invocation::non_blocking(
        "Notify",
        args(&[2]),
    )));
    h.advance(ms(499));
    assert!(h.written().is_empty());
    h.advance(ms(1));
    assert_eq!(h.written(), [HubMessage::Ack(Ack::new(2))]);
    // A replayed duplicate is acknowledged, not dispatched again.
    let before = h.calls.len();
    h.receive(&HubMessage::Sequence(Sequence::new(2)));
    h.receive(&HubMessage::Invocation(Invocation::non_blocking(
        "Notify",
        args(&[2]),
    )));
    assert_eq!(h.calls.len(), before);
    // Nothing new to acknowledge (after a resume the Ack is said again: the buffer's tests).
    h.advance(secs(1));
    assert!(h.written().is_empty());
}

#[test]
fn a_full_replay_buffer_holds_requests_back_until_an_ack() {
    let mut h = stateful();
    let mut n = 0;
    while h.core.wants_requests() {
        h.request(send(None));
        n += 1;
        assert!(n < 10);
    }
    assert!(!h.core.wants_answers());
    let first = h.written().len();
    assert_eq!(first, n);
    // Whatever comes meanwhile waits in the outbox, in order.
    h.core.handle_request(h.now, send(None));
    assert!(h.written().is_empty());
    h.receive(&HubMessage::Ack(Ack::new(u64::try_from(n).unwrap())));
    assert_eq!(h.written().len(), 1);
    assert!(h.core.wants_requests());
}

#[test]
fn an_ack_past_what_was_sent_is_a_protocol_violation() {
    let mut h = stateful();
    h.request(send(None));
    h.written();
    h.receive(&HubMessage::Ack(Ack::new(5)));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Reconnecting(e) if matches!(**e, HubError::Protocol(_))))
    );
}

#[test]
fn every_request_is_answered_once_whatever_ends_the_connection() {
    // Each way a connection can end, with every kind of call pending or queued.
    for end in 0..4 {
        let mut s = settings();
        s.retry = None;
        let mut h = H::connected(s, ws(false));
        let invoked = Slot::new();
        let sent = Slot::new();
        let items = Items::new(4);
        h.request(invoke("1", &invoked));
        h.request(stream("2", &items));
        h.written();
        h.request(send(Some(&sent)));
        match end {
            0 => h.request(Request::Stop { reply: 0 }),
            1 => h.core.handle_transport_closed(h.now),
            2 => h.advance(secs(30)),
            _ => h.receive(&HubMessage::Close(Close::new(None, false))),
        }
        h.written();
        h.advance(secs(10));
        h.poll();
        assert!(h.core.is_finished(), "end {end}");
        assert_eq!(invoked.answers(), 1, "end {end}");
        assert!(sent.answers() <= 1);
        assert!(matches!(items.take(), Some(Err(_))), "end {end}");
    }
}
