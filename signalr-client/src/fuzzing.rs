//! Not part of the API: the connection core driven by fuzz input, for the `client_session`
//! target (`fuzz/`). No runtime, no clock: one input is a few thousand calls on plain values.

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use signalr_protocol::{
    Ack, Arguments, Close, Completion, CompletionResult, Headers, HubMessage, HubProtocol,
    Invocation, JsonHubProtocol, MessagePackHubProtocol, Payload, Sequence, StreamItem,
    TransportKind,
};
use signalr_reconnect::{FixedDelays, KeepAliveConfig};

use crate::{
    core::{
        Action, Core, Opened, Request, Settings,
        fake::{Fake, Items, Slot},
    },
    error::HubError,
};

/// The input's bytes, read from the front; zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// Runs one input. The first byte: bit 0 MessagePack, bit 1 stateful reconnect offered, bit 2
/// no retry policy, bit 3 long polling, bit 4 an initial-start policy. Then one operation per
/// byte (and its operands): the server's bytes (raw or well-formed messages), cuts, the end of
/// the transport, time passing, calls, sends, streams, cancels, consumers taking items, client
/// results, stops, and the outcome of each connect, resume, write and close.
///
/// Oracles (each a panic): no panic in the core; no request answered twice; no stream item
/// past its consumer's room; a timer never due at the instant it was handled; and once the
/// input is used up, a stop with every operation succeeding ends the connection within ten
/// minutes of virtual time, every invocation answered exactly once.
#[doc(hidden)]
#[allow(clippy::too_many_lines, clippy::missing_panics_doc)]
pub fn client_session(data: &[u8]) {
    let mut input = Input(data);
    let config = input.byte();
    let protocol: Arc<dyn HubProtocol> = if config & 1 == 0 {
        Arc::new(JsonHubProtocol::new())
    } else {
        Arc::new(MessagePackHubProtocol::new())
    };
    let format = protocol.payload_format();
    let kind = if config & 8 == 0 {
        TransportKind::WebSockets
    } else {
        TransportKind::LongPolling
    };
    let settings = Settings {
        protocol: Arc::clone(&protocol),
        keep_alive: KeepAliveConfig::default(),
        stateful_buffer: Some(512),
        outbox_capacity: 8,
        stream_consumer_timeout: Duration::from_secs(5),
        retry: (config & 4 == 0).then(|| Arc::new(FixedDelays::dotnet_default()) as _),
        start_policy: (config & 16 != 0).then(|| Arc::new(FixedDelays::from_secs(&[1, 2])) as _),
        log_message_content: false,
    };
    let mut core: Core<Fake> = Core::new(Arc::new(settings));
    #[allow(clippy::disallowed_methods)]
    let mut now = std::time::Instant::now();
    let mut invokes: Vec<Slot<CompletionResult>> = Vec::new();
    let mut streams: Vec<Items> = Vec::new();
    let mut actions: Vec<Action> = Vec::new();
    let encode = |m: &HubMessage| {
        let mut buf = BytesMut::new();
        protocol.encode(m, &mut buf).ok().map(|()| buf.freeze())
    };
    let number = |format, n: u8| Payload::from_value(format, &i64::from(n)).ok();
    core.handle_start(now);
    let mut ops = 0;
    while !input.0.is_empty() && ops < 4096 {
        ops += 1;
        let op = input.byte();
        match op % 16 {
            // Raw bytes from the server, up to 64.
            0 => {
                let n = usize::from(input.byte() % 64) + 1;
                let bytes = input.bytes(n).to_vec();
                if core.wants_read() {
                    core.handle_received(now, &bytes);
                }
            }
            // A well-formed message from the server.
            1 => {
                let which = input.byte();
                let arg = input.byte();
                // One of the first calls, or of the first streams.
                let id = if which & 0x40 == 0 {
                    format!("{}", arg % 8)
                } else {
                    format!("s{}", arg % 8)
                };
                let message = match which % 9 {
                    0 => HubMessage::Completion(Completion::void(id)),
                    1 => match number(format, arg) {
                        Some(p) => HubMessage::Completion(Completion::value(id, p)),
                        None => HubMessage::Ping,
                    },
                    2 => HubMessage::Completion(Completion::error(id, "failed")),
                    3 => match number(format, arg) {
                        Some(p) => HubMessage::StreamItem(StreamItem::new(id, p)),
                        None => HubMessage::Ping,
                    },
                    4 => HubMessage::Close(Close::new(None, arg & 1 == 0)),
                    5 => HubMessage::Ack(Ack::new(u64::from(arg))),
                    6 => HubMessage::Sequence(Sequence::new(u64::from(arg))),
                    7 => {
                        let args = Arguments::from_values(format, &[i64::from(arg)]);
                        match args {
                            Ok(a) => {
                                let mut call = Invocation::non_blocking("ask", a);
                                if arg & 1 == 0 {
                                    call.invocation_id = Some(format!("srv{arg}"));
                                }
                                HubMessage::Invocation(call)
                            }
                            Err(_) => HubMessage::Ping,
                        }
                    }
                    _ => HubMessage::Ping,
                };
                let mut bytes = Vec::new();
                if which & 0x80 != 0 {
                    // With a handshake response ahead, as the first read after the upgrade.
                    bytes.extend_from_slice(b"{}\x1e");
                }
                if let Some(m) = encode(&message) {
                    bytes.extend_from_slice(&m);
                }
                if core.wants_read() {
                    core.handle_received(now, &bytes);
                }
            }
            2 => core.handle_transport_error(now, HubError::ConnectionClosed),
            3 => core.handle_transport_closed(now),
            // Time passes: up to 25.5 s.
            4 => now += Duration::from_millis(u64::from(input.byte()) * 100),
            5 => {
                let reply = Slot::new();
                core.handle_request(
                    now,
                    Request::Invoke {
                        id: format!("{}", invokes.len()),
                        target: "Add".into(),
                        headers: Headers::default(),
                        arguments: Arguments::empty(format),
                        stream_ids: Vec::new(),
                        reply: reply.clone(),
                    },
                );
                invokes.push(reply);
            }
            6 => {
                let reply = (op & 0x10 != 0).then(Slot::new);
                core.handle_request(
                    now,
                    Request::Send {
                        target: "Echo".into(),
                        headers: Headers::default(),
                        arguments: Arguments::empty(format),
                        stream_ids: vec!["u".into()],
                        reply,
                        reservation: None,
                    },
                );
            }
            7 => {
                let items = Items::new(usize::from(input.byte() % 4) + 1);
                core.handle_request(
                    now,
                    Request::Stream {
                        id: format!("s{}", streams.len()),
                        target: "Counter".into(),
                        headers: Headers::default(),
                        arguments: Arguments::empty(format),
                        stream_ids: Vec::new(),
                        items: items.clone(),
                    },
                );
                streams.push(items);
            }
            8 => {
                let id = format!("s{}", input.byte() % 8);
                core.handle_request(now, Request::Cancel { id });
            }
            9 => {
                for items in &streams {
                    items.take();
                }
                if op & 0x10 != 0 {
                    if let Some(items) = streams.last() {
                        items.closed.set(true);
                    }
                }
                core.handle_stream_room(now);
            }
            10 => core.handle_request(now, Request::Stop { reply: 0 }),
            11 => {
                let id = format!("srv{}", input.byte());
                core.handle_answer(now, Completion::void(id));
            }
            // The outcome of what the core asked for.
            12 => {
                let ok = input.byte();
                for action in actions.drain(..) {
                    match action {
                        Action::Connect(_) if ok & 1 == 0 => core.handle_transport_opened(
                            now,
                            Opened {
                                kind,
                                connection_id: Some("c".into()),
                                stateful: config & 2 != 0,
                            },
                        ),
                        Action::Connect(_) => {
                            core.handle_connect_failed(now, HubError::ConnectionClosed);
                        }
                        Action::Resume if ok & 2 == 0 => core.handle_resumed(now),
                        Action::Resume => {
                            core.handle_resume_failed(now, &HubError::ConnectionClosed);
                        }
                        Action::Close(frame) => {
                            core.handle_closed(now, frame.map(|f| f.len()));
                        }
                        Action::Discard => {}
                    }
                }
            }
            13 => {
                if core.poll_transmit(now).is_some() {
                    match input.byte() % 8 {
                        0 => core.handle_write_failed(now, HubError::ConnectionClosed),
                        1 => core.handle_write_timeout(now),
                        _ => core.handle_written(now),
                    }
                }
            }
            14 => {
                let response: &[u8] = if op & 0x10 == 0 {
                    b"{}\x1e"
                } else {
                    b"{\"error\":\"no\"}\x1e"
                };
                if core.wants_read() {
                    core.handle_received(now, response);
                }
            }
            _ => {
                let id = "u".to_owned();
                let request = match (op & 0x10 != 0, number(format, op)) {
                    (false, Some(item)) => Request::UploadItem { id, item },
                    _ => Request::UploadDone { id, error: None },
                };
                core.handle_request(now, request);
            }
        }
        run_timers(&mut core, now);
        actions.extend(std::iter::from_fn(|| core.poll_action()));
        while core.poll_event().is_some() {}
    }
    // The end: a stop, with everything the core asks for succeeding.
    core.handle_request(now, Request::Stop { reply: 1 });
    for _ in 0..600 {
        if core.is_finished() {
            break;
        }
        actions.extend(std::iter::from_fn(|| core.poll_action()));
        for action in actions.drain(..) {
            match action {
                Action::Close(_) => core.handle_closed(now, None),
                Action::Resume => core.handle_resumed(now),
                Action::Connect(_) => {
                    core.handle_connect_failed(now, HubError::ConnectionClosed);
                }
                Action::Discard => {}
            }
        }
        while core.poll_transmit(now).is_some() {
            core.handle_written(now);
        }
        while core.poll_event().is_some() {}
        now += Duration::from_secs(1);
        run_timers(&mut core, now);
    }
    assert!(
        core.is_finished(),
        "the connection did not end after a stop"
    );
    for (i, reply) in invokes.iter().enumerate() {
        assert_eq!(
            reply.answers(),
            1,
            "invocation {i} answered {} times",
            reply.answers()
        );
    }
}

/// Runs the timers due at `now`; none may still be due after.
fn run_timers(core: &mut Core<Fake>, now: std::time::Instant) {
    if core.poll_timeout().is_some_and(|at| at <= now) {
        core.handle_timeout(now);
        assert!(
            core.poll_timeout().is_none_or(|at| at > now),
            "a timer still due after it was handled"
        );
    }
}
