#![no_main]
//! The client's message dispatch: the input is what the server sends after the handshake, fed
//! into a `HubConnection` through the in-memory transport on a paused clock. The client has an
//! `invoke` (id "0") and a `stream` (id "1") in flight and a handler of each kind. Oracles: no
//! panic (libfuzzer-sys aborts on a panic in any task); once the server closes (or the client
//! stops), the invoke resolves, the stream ends and the connection is `Disconnected`, within
//! 60 s of virtual time, having closed once and never tried to reconnect. When the server
//! closes (no stop), the outcome is what the bytes say, decoded as the client decodes them:
//! the invoke gets the first Completion (or StreamItem: an error) for "0", or fails with the
//! connection; the connection ends for the first Close, undecodable message or the server's
//! end; no `send` invocation after that reaches the handler.
//!
//! The first byte: bit 0 MessagePack, bits 1-4 chunk size - 1, bit 5 the data rides with the
//! handshake response (before any call), bit 6 the stream is read while the data arrives (or
//! only at the end), bit 7 the client stops instead of the server closing.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use libfuzzer_sys::fuzz_target;
use signalr_client::{
    HubConnection, HubConnectionBuilder, HubConnectionState, HubError,
    protocol::{
        CompletionResult, HandshakeRequest, HandshakeResponse, HubMessage, HubProtocol,
        JsonHubProtocol, MessageDecoder, MessagePackHubProtocol,
    },
    transport::memory::{self, MemoryPeer},
};

fuzz_target!(|data: &[u8]| {
    let Some((&config, body)) = data.split_first() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(session(config, body));
});

/// The server's end: reads what the client sends until `want` says stop; `false` when the
/// client closed the transport first.
async fn read_until(
    peer: &mut MemoryPeer,
    decoder: &mut MessageDecoder<Arc<dyn HubProtocol>>,
    want: impl Fn(&HubMessage) -> bool,
) -> bool {
    loop {
        while let Some(m) = decoder
            .next_message()
            .expect("the client sends valid messages")
        {
            if want(&m) {
                return true;
            }
        }
        match peer.recv().await {
            Some(bytes) => decoder.push(&bytes),
            None => return false,
        }
    }
}

async fn session(config: u8, body: &[u8]) {
    let msgpack = config & 1 != 0;
    let chunk = usize::from((config >> 1) & 0x0f) + 1;
    let early = config & 0x20 != 0;
    let read_along = config & 0x40 != 0;
    let stop = config & 0x80 != 0;
    let protocol: Arc<dyn HubProtocol> = if msgpack {
        Arc::new(MessagePackHubProtocol::new())
    } else {
        Arc::new(JsonHubProtocol::new())
    };

    let (connector, listener) = memory::connector();
    let mut builder = HubConnectionBuilder::new("memory://hub").with_connector(connector);
    if msgpack {
        builder = builder.with_messagepack();
    }
    // No automatic reconnect: a lost connection ends the session.
    let conn = builder.build().expect("a connection");
    let closes = Arc::new(AtomicUsize::new(0));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let close_reason = Arc::new(Mutex::new(None));
    {
        let closes = Arc::clone(&closes);
        let close_reason = Arc::clone(&close_reason);
        conn.on_close(move |error| {
            closes.fetch_add(1, Ordering::Relaxed);
            let reason = error.map_or_else(|| "none".to_owned(), |e| format!("{e:?}"));
            *close_reason.lock().expect("not poisoned") = Some(reason);
        });
        let reconnects = Arc::clone(&reconnects);
        conn.on_reconnecting(move |_| {
            reconnects.fetch_add(1, Ordering::Relaxed);
        });
    }
    let handled = Arc::new(AtomicUsize::new(0));
    let _on = conn.on("send", {
        let handled = Arc::clone(&handled);
        move |_: Vec<serde_json::Value>| {
            handled.fetch_add(1, Ordering::Relaxed);
            async {}
        }
    });
    let _on_invoke = conn.on_invoke("ask", |n: i64| async move {
        if n < 0 {
            Err("negative".to_owned())
        } else {
            Ok(n.wrapping_mul(2))
        }
    });

    let starting = tokio::spawn({
        let conn = conn.clone();
        async move { conn.start().await }
    });
    let mut peer = listener.accept().await.expect("a connection");
    let mut buf = BytesMut::new();
    loop {
        if let Some(request) =
            HandshakeRequest::decode(&mut buf, 1 << 16).expect("a valid handshake")
        {
            assert_eq!(request.protocol, protocol.name());
            break;
        }
        buf.extend_from_slice(&peer.recv().await.expect("a handshake request"));
    }
    let mut decoder = MessageDecoder::with_buffer(Arc::clone(&protocol), buf);
    let mut hello = BytesMut::new();
    HandshakeResponse::ok().encode(&mut hello);
    if early {
        hello.extend_from_slice(body);
    }
    peer.send(hello.freeze());
    starting
        .await
        .expect("start does not panic")
        .expect("the handshake succeeds");

    let invoke = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<serde_json::Value>("Add", (1, 2)).await }
    });
    let mut open = read_until(&mut peer, &mut decoder, |m| {
        matches!(m, HubMessage::Invocation(_))
    })
    .await;
    let stream = conn.stream::<serde_json::Value>("Counter", (3,)).await;
    if open {
        open = read_until(&mut peer, &mut decoder, |m| {
            matches!(m, HubMessage::StreamInvocation(_))
        })
        .await;
    }
    let items = tokio::spawn(async move {
        let Ok(mut stream) = stream else { return 0 };
        if !read_along {
            // Read only after the data: a flood of items overflows the stream's buffer.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut n = 0;
        while stream.next().await.is_some() {
            n += 1;
        }
        n
    });
    if open && !early {
        for piece in body.chunks(chunk) {
            peer.send(Bytes::copy_from_slice(piece));
            tokio::task::yield_now().await;
        }
    }
    if stop {
        conn.stop().await.expect("stop succeeds");
    } else {
        peer.close();
    }

    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        let result = invoke.await.expect("invoke does not panic");
        let items = items.await.expect("the stream does not panic");
        conn.state_changes()
            .wait_for(|s| *s == HubConnectionState::Disconnected)
            .await
            .expect("the connection is alive");
        (result, items)
    })
    .await;
    let Ok((result, _items)) = ended else {
        panic!("stuck after 60 s: state {:?}", conn.state());
    };
    drop(peer);
    assert_disconnected(&conn).await;
    assert_eq!(closes.load(Ordering::Relaxed), 1, "closed once");
    assert_eq!(
        reconnects.load(Ordering::Relaxed),
        0,
        "no reconnect without a policy"
    );
    if stop || !(open || early) {
        return; // a stop may overtake the data
    }
    let want = expected(&protocol, body);
    let handled = handled.load(Ordering::Relaxed);
    assert!(
        handled <= want.sends,
        "{handled} send invocations handled, only {} before the end",
        want.sends
    );
    let end = close_reason
        .lock()
        .expect("not poisoned")
        .take()
        .expect("on_close ran");
    match want.end {
        End::Closed => assert!(end.starts_with("ServerClosed"), "closed by {end}"),
        End::Protocol => assert!(end.starts_with("Protocol"), "closed by {end}"),
        End::Cut => assert!(
            end.starts_with("Protocol") || end == "ConnectionClosed",
            "closed by {end}"
        ),
        End::Eof => assert_eq!(end, "ConnectionClosed"),
    }
    if early {
        return; // the invoke was not in flight yet
    }
    match (want.invoke, result) {
        (Some(Answer::Completion(CompletionResult::Value(p))), result) => {
            match (result, p.deserialize::<serde_json::Value>()) {
                (Ok(got), Ok(sent)) => assert_eq!(got, sent),
                (Err(HubError::Payload { .. }), Err(_)) => {}
                (got, sent) => panic!("invoke got {got:?} for {sent:?}"),
            }
        }
        (Some(Answer::Completion(CompletionResult::Void)), Ok(serde_json::Value::Null)) => {}
        (
            Some(Answer::Completion(CompletionResult::Error(sent))),
            Err(HubError::Invocation { message }),
        ) => {
            assert_eq!(message, sent);
        }
        (Some(Answer::StreamItem), Err(HubError::Protocol(_)))
        | (None, Err(HubError::ConnectionLost(_))) => {}
        (want, got) => panic!("invoke got {got:?}, the server said {want:?}"),
    }
}

/// A disconnected connection refuses calls at once, with a typed error.
async fn assert_disconnected(conn: &HubConnection) {
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    let refused = conn.invoke::<()>("Late", ()).await;
    assert!(
        matches!(refused, Err(HubError::NotConnected { .. })),
        "{refused:?}"
    );
}

/// The server's first answer to the invoke (id "0").
#[derive(Debug)]
enum Answer {
    Completion(CompletionResult),
    StreamItem,
}

/// Why the connection ends.
#[derive(Debug)]
enum End {
    /// A Close message.
    Closed,
    /// A message that does not decode.
    Protocol,
    /// The server's end, in the middle of a record (an error or a plain end).
    Cut,
    /// The server's end.
    Eof,
}

/// What the server's bytes must make the client do.
struct Expected {
    /// `send` invocations before the end: at most this many reach the handler.
    sends: usize,
    invoke: Option<Answer>,
    end: End,
}

/// Decodes the server's bytes as the client does, up to where the client stops reading.
fn expected(protocol: &Arc<dyn HubProtocol>, body: &[u8]) -> Expected {
    let mut decoder = MessageDecoder::new(Arc::clone(protocol));
    decoder.push(body);
    let mut want = Expected {
        sends: 0,
        invoke: None,
        end: End::Eof,
    };
    loop {
        match decoder.next_message() {
            Ok(Some(HubMessage::Invocation(i))) if i.target.to_lowercase() == "send" => {
                want.sends +=
                    usize::from(i.arguments.deserialize::<Vec<serde_json::Value>>().is_ok());
            }
            Ok(Some(HubMessage::Completion(c)))
                if c.invocation_id == "0" && want.invoke.is_none() =>
            {
                want.invoke = Some(Answer::Completion(c.result));
            }
            Ok(Some(HubMessage::StreamItem(i)))
                if i.invocation_id == "0" && want.invoke.is_none() =>
            {
                want.invoke = Some(Answer::StreamItem);
            }
            Ok(Some(HubMessage::Close(_))) => {
                want.end = End::Closed;
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if decoder.finish().is_err() {
                    want.end = End::Cut;
                }
                break;
            }
            Err(_) => {
                want.end = End::Protocol;
                break;
            }
        }
    }
    want
}
