//! The test server against raw HTTP and WebSocket clients: negotiate, each transport, the hub
//! contract, faults, limits and stateful reconnect. Servers bind port 0 and stop when dropped.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::BytesMut;
use serde_json::{Value, json};
use signalr_protocol::{
    Ack, CompletionResult, HandshakeRequest, HandshakeResponse, HubMessage, MessageDecoder,
    NegotiateResponse, Sequence, TransferFormat, TransportKind,
};
use signalr_testserver::{Redirect, ServerConfig, TestServer};
use support::{WAIT, WsClient, negotiate, ok, protocol, value};

async fn server(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = ServerConfig::default();
    configure(&mut config);
    TestServer::start(config).await.unwrap()
}

#[tokio::test]
async fn negotiate_versions_and_transports() {
    let s = server(|_| {}).await;
    let c = negotiate(s.url(), "negotiateVersion=1").await;
    assert_eq!(c.negotiate_version, 1);
    assert!(c.connection_token.is_some());
    assert_ne!(
        c.connection_token.as_deref(),
        Some(c.connection_id.as_str())
    );
    assert_eq!(
        c.formats_for(TransportKind::WebSockets),
        Some(&[TransferFormat::Text, TransferFormat::Binary][..])
    );
    assert_eq!(
        c.formats_for(TransportKind::ServerSentEvents),
        Some(&[TransferFormat::Text][..])
    );
    assert!(
        !c.use_stateful_reconnect,
        "not granted unless the hub allows it"
    );

    // No version asked: version 0, the id is the token.
    let c0 = negotiate(s.url(), "").await;
    assert_eq!(
        (c0.negotiate_version, c0.connection_token.as_deref()),
        (0, None)
    );

    // A version above the server's is clamped; garbage is an error response.
    assert_eq!(
        negotiate(s.url(), "negotiateVersion=7")
            .await
            .negotiate_version,
        1
    );
    let body = reqwest::Client::new()
        .post(format!("{}/negotiate?negotiateVersion=x", s.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(matches!(
        NegotiateResponse::parse(&body).unwrap(),
        NegotiateResponse::Error(_)
    ));

    let s0 = server(|c| {
        c.negotiate_version = 0;
        c.transports = vec![TransportKind::LongPolling];
    })
    .await;
    let c = negotiate(s0.url(), "negotiateVersion=1").await;
    assert_eq!(c.negotiate_version, 0);
    assert_eq!(c.available_transports.len(), 1);
}

#[tokio::test]
async fn redirect_and_required_token() {
    let s = server(|c| {
        c.redirect = Some(Redirect::new(
            "http://127.0.0.1:1/other",
            Some("tok".into()),
        ));
    })
    .await;
    let body = reqwest::Client::new()
        .post(format!("{}/negotiate?negotiateVersion=1", s.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        NegotiateResponse::parse(&body).unwrap(),
        NegotiateResponse::Redirect {
            url: "http://127.0.0.1:1/other".into(),
            access_token: Some("tok".into())
        }
    );

    let s = server(|c| c.required_token = Some("secret".into())).await;
    let http = reqwest::Client::new();
    let url = format!("{}/negotiate?negotiateVersion=1", s.url());
    assert_eq!(http.post(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http.post(&url)
            .header("Authorization", "Bearer wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.post(&url)
            .header("Authorization", "Bearer secret")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.post(format!("{url}&access_token=secret"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The WebSocket upgrade is checked too.
    assert!(
        tokio_tungstenite::connect_async(support::ws_url(s.url()))
            .await
            .is_err()
    );
    let mut ws = WsClient::connect(&format!("{}?access_token=secret", s.url()), "json", 1).await;
    assert!(matches!(ws.recv().await, Some(HubMessage::Invocation(w)) if w.target == "welcome"));
}

#[tokio::test]
async fn websocket_contract_in_both_protocols() {
    let s = server(|_| {}).await;
    for name in ["json", "messagepack"] {
        let c = negotiate(s.url(), "negotiateVersion=1").await;
        let mut ws = WsClient::connect(&format!("{}?id={}", s.url(), c.token()), name, 1).await;
        assert_eq!(
            ws.last_binary,
            name == "messagepack",
            "the handshake response uses the protocol's frame type"
        );
        let Some(HubMessage::Invocation(welcome)) = ws.recv().await else {
            panic!("welcome first")
        };
        assert_eq!(
            (welcome.target.as_str(), welcome.invocation_id),
            ("welcome", None)
        );
        assert_eq!(
            welcome.arguments.deserialize::<(String,)>().unwrap().0,
            c.connection_id
        );

        assert_eq!(ok(ws.call("1", "Add", &json!([40, 2])).await), json!(42));
        let any = json!({"a": [1, "two", null, true], "b": {"c": 1.5}});
        assert_eq!(ok(ws.call("2", "Echo", &json!([any])).await), any);
        assert_eq!(
            ok(ws.call("3", "GetConnectionId", &json!([])).await),
            json!(c.connection_id)
        );
        assert_eq!(ok(ws.call("4", "NoResult", &json!([])).await), Value::Null);
        assert_eq!(
            ws.call("5", "Fail", &json!(["boom"])).await,
            CompletionResult::Error("boom".into())
        );
        let CompletionResult::Error(e) = ws.call("6", "Nope", &json!([])).await else {
            panic!("unknown method must fail")
        };
        assert!(e.contains("'Nope'"), "{e}");
        let CompletionResult::Error(e) = ws.call("7", "Add", &json!(["x"])).await else {
            panic!("bad arguments must fail")
        };
        assert!(e.contains("Failed to invoke 'Add'"), "{e}");
        // Still usable after errors.
        assert_eq!(ok(ws.call("8", "Add", &json!([1, 1])).await), json!(2));

        // SendToCaller and Sequence deliver calls before the completion.
        ws.invoke("9", "Sequence", &json!([5])).await;
        let mut seen = Vec::new();
        loop {
            match ws.recv_non_ping().await.unwrap() {
                HubMessage::Invocation(m) if m.target == "seq" => {
                    seen.push(m.arguments.deserialize::<(i64,)>().unwrap().0);
                }
                HubMessage::Completion(c) => {
                    assert_eq!(ok(c.result), json!(5));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }
}

#[tokio::test]
async fn streams_both_ways_and_client_results() {
    let s = server(|_| {}).await;
    let mut ws = WsClient::connect(s.url(), "json", 1).await; // without negotiate
    let _welcome = ws.recv().await;

    ws.stream("c", "Counter", &json!([3, 0])).await;
    let mut items = Vec::new();
    loop {
        match ws.recv_non_ping().await.unwrap() {
            HubMessage::StreamItem(i) => items.push(value(&i.item)),
            HubMessage::Completion(c) => {
                assert_eq!(c.result, CompletionResult::Void);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(items, [json!(0), json!(1), json!(2)]);

    // Cancel a slow stream after its first item: it stops.
    ws.stream("slow", "Counter", &json!([1000, 20])).await;
    assert!(matches!(
        ws.recv_non_ping().await,
        Some(HubMessage::StreamItem(_))
    ));
    ws.send(&HubMessage::CancelInvocation(
        signalr_protocol::CancelInvocation::new("slow"),
    ))
    .await;
    assert_eq!(ok(ws.call("after", "Add", &json!([2, 3])).await), json!(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ok(ws.call("after2", "Add", &json!([2, 3])).await),
        json!(5),
        "no more items after the cancel"
    );

    // Calling a streaming method with Invocation fails, and the other way round.
    let CompletionResult::Error(e) = ws.call("w", "Counter", &json!([1, 0])).await else {
        panic!()
    };
    assert!(e.contains("streaming 'Counter'"), "{e}");

    // Upload: Sum over a client-to-server stream.
    let sum = signalr_protocol::Invocation::new("sum", "Sum", ws.args(&json!([])))
        .with_stream_ids(vec!["up".into()]);
    ws.send(&HubMessage::Invocation(sum)).await;
    for i in 1..=10 {
        let item = signalr_protocol::Payload::json(&i).unwrap();
        ws.send(&HubMessage::StreamItem(signalr_protocol::StreamItem::new(
            "up", item,
        )))
        .await;
    }
    ws.send(&HubMessage::Completion(signalr_protocol::Completion::void(
        "up",
    )))
    .await;
    loop {
        if let HubMessage::Completion(c) = ws.recv_non_ping().await.unwrap() {
            assert_eq!(ok(c.result), json!(55));
            break;
        }
    }

    // AskClient: the server invokes us with an id and returns our answer.
    ws.invoke("ask", "AskClient", &json!(["double", 21])).await;
    let HubMessage::Invocation(question) = ws.recv_non_ping().await.unwrap() else {
        panic!("a client invocation")
    };
    assert_eq!(question.target, "double");
    let qid = question.invocation_id.expect("client results carry an id");
    let answer = signalr_protocol::Payload::json(&42).unwrap();
    ws.send(&HubMessage::Completion(
        signalr_protocol::Completion::value(qid, answer),
    ))
    .await;
    let HubMessage::Completion(c) = ws.recv_non_ping().await.unwrap() else {
        panic!()
    };
    assert_eq!((c.invocation_id.as_str(), ok(c.result)), ("ask", json!(42)));
}

#[tokio::test]
async fn groups_and_broadcast_across_protocols() {
    let s = server(|_| {}).await;
    let mut a = WsClient::connect(s.url(), "json", 1).await;
    let mut b = WsClient::connect(s.url(), "messagepack", 1).await;
    let (_, _) = (a.recv().await, b.recv().await);
    assert_eq!(
        ok(b.call("j", "JoinGroup", &json!(["g"])).await),
        json!("g")
    );
    assert_eq!(
        ok(a.call("s", "SendToGroup", &json!(["g", "hello", {"x": 1}]))
            .await),
        json!("sent")
    );
    let HubMessage::Invocation(m) = b.recv_non_ping().await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            m.target.as_str(),
            m.arguments.deserialize::<(Value,)>().unwrap().0
        ),
        ("hello", json!({"x": 1}))
    );
    assert_eq!(
        ok(a.call("b", "Broadcast", &json!(["all", "hi"])).await),
        json!(2)
    );
    assert!(
        matches!(b.recv_non_ping().await, Some(HubMessage::Invocation(m)) if m.target == "all")
    );
    // a got its own broadcast too (after the completion, or before).
    assert_eq!(
        ok(b.call("l", "LeaveGroup", &json!(["g"])).await),
        json!("g")
    );
    a.call("s2", "SendToGroup", &json!(["g", "hello", 2])).await;
    assert_eq!(
        ok(b.call("x", "Add", &json!([1, 2])).await),
        json!(3),
        "b is no longer in the group"
    );
}

#[tokio::test]
async fn handshake_refusals() {
    let s =
        server(|c| c.transports = vec![TransportKind::WebSockets, TransportKind::ServerSentEvents])
            .await;
    for (request, want) in [
        (
            HandshakeRequest::new("xml", 1),
            "The protocol 'xml' is not supported.",
        ),
        (
            HandshakeRequest::new("json", 3),
            "The server does not support version 3 of the 'json' protocol.",
        ),
    ] {
        let (mut raw, _) = tokio_tungstenite::connect_async(support::ws_url(s.url()))
            .await
            .unwrap();
        let mut hs = BytesMut::new();
        request.encode(&mut hs);
        futures_util::SinkExt::send(
            &mut raw,
            tokio_tungstenite::tungstenite::Message::text(String::from_utf8(hs.to_vec()).unwrap()),
        )
        .await
        .unwrap();
        let mut ws = WsClient::attach(raw, "json");
        assert_eq!(
            ws.handshake_response().await,
            HandshakeResponse::error(want)
        );
        assert!(
            ws.frame().await.is_none(),
            "the server closes after refusing"
        );
    }
    // MessagePack over SSE: refused with the .NET text.
    let c = negotiate(s.url(), "negotiateVersion=1").await;
    let url = format!("{}?id={}", s.url(), c.token());
    let http = reqwest::Client::new();
    let mut events = http
        .get(&url)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut hs = BytesMut::new();
    HandshakeRequest::new("messagepack", 1).encode(&mut hs);
    assert_eq!(
        http.post(&url)
            .body(hs.to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut text = String::new();
    while !text.contains("error") {
        let chunk = tokio::time::timeout(WAIT, events.chunk())
            .await
            .unwrap()
            .unwrap()
            .expect("an event");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.contains("does not support 'Binary' transfer format"),
        "{text}"
    );
}

#[tokio::test]
async fn server_sent_events_round_trip() {
    let s = server(|_| {}).await;
    let c = negotiate(s.url(), "negotiateVersion=1").await;
    let url = format!("{}?id={}", s.url(), c.token());
    let http = reqwest::Client::new();
    let mut events = http
        .get(&url)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let proto = protocol("json");
    let mut hs = BytesMut::new();
    HandshakeRequest::new("json", 1).encode(&mut hs);
    let mut invoke = BytesMut::new();
    let add = signalr_protocol::Invocation::new(
        "1",
        "Add",
        signalr_protocol::Arguments::from_values(signalr_protocol::PayloadFormat::Json, &(2, 3))
            .unwrap(),
    );
    proto
        .encode(&HubMessage::Invocation(add), &mut invoke)
        .unwrap();
    assert_eq!(
        http.post(&url)
            .body(hs.to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.post(&url)
            .body(invoke.to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Parse `data:` lines back into the text stream.
    let mut raw = String::new();
    let mut stream = BytesMut::new();
    let mut decoder: Option<MessageDecoder<_>> = None;
    loop {
        let chunk = tokio::time::timeout(WAIT, events.chunk())
            .await
            .unwrap()
            .unwrap()
            .expect("more events");
        raw.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = raw.find("\r\n\r\n") {
            let event: String = raw.drain(..end + 4).collect();
            for line in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                stream.extend_from_slice(line.as_bytes());
            }
        }
        if decoder.is_none() {
            if let Some(r) = HandshakeResponse::decode(&mut stream, 1024).unwrap() {
                assert_eq!(r, HandshakeResponse::ok());
                decoder = Some(MessageDecoder::new(proto.clone()));
            }
        }
        if let Some(d) = &mut decoder {
            d.push(&stream.split());
            while let Some(m) = d.next_message().unwrap() {
                if let HubMessage::Completion(c) = m {
                    assert_eq!(ok(c.result), json!(5));
                    return;
                }
            }
        }
    }
}

#[tokio::test]
async fn long_polling_round_trip_and_delete() {
    let s = server(|_| {}).await;
    let http = reqwest::Client::new();
    for name in ["json", "messagepack"] {
        let c = negotiate(s.url(), "negotiateVersion=1").await;
        let url = format!("{}?id={}", s.url(), c.token());
        // The first poll is answered at once, empty.
        let first = http.get(&url).send().await.unwrap();
        assert_eq!(
            (first.status().as_u16(), first.bytes().await.unwrap().len()),
            (200, 0)
        );
        let proto = protocol(name);
        let mut out = BytesMut::new();
        HandshakeRequest::new(name, 1).encode(&mut out);
        let args =
            signalr_protocol::Arguments::from_values(proto.payload_format(), &(20, 22)).unwrap();
        proto
            .encode(
                &HubMessage::Invocation(signalr_protocol::Invocation::new("1", "Add", args)),
                &mut out,
            )
            .unwrap();
        assert_eq!(
            http.post(&url)
                .body(out.to_vec())
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let mut buf = BytesMut::new();
        let mut decoder = None;
        let result = 'poll: loop {
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            buf.extend_from_slice(&response.bytes().await.unwrap());
            if decoder.is_none() {
                if let Some(r) = HandshakeResponse::decode(&mut buf, 1024).unwrap() {
                    assert_eq!(r, HandshakeResponse::ok());
                    decoder = Some(MessageDecoder::new(proto.clone()));
                }
            }
            if let Some(d) = &mut decoder {
                d.push(&buf.split());
                while let Some(m) = d.next_message().unwrap() {
                    if let HubMessage::Completion(c) = m {
                        break 'poll c.result;
                    }
                }
            }
        };
        assert_eq!(ok(result), json!(42));
        // DELETE ends it: 202, then polls get 204 or 404.
        assert_eq!(http.delete(&url).send().await.unwrap().status(), 202);
        let after = http.get(&url).send().await.unwrap().status().as_u16();
        assert!(after == 204 || after == 404, "{after}");
    }
}

#[tokio::test]
async fn transport_statuses() {
    let s = server(|_| {}).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(s.url()).send().await.unwrap().status(),
        400,
        "poll without id"
    );
    assert_eq!(
        http.get(format!("{}?id=nope", s.url()))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.post(format!("{}?id=nope", s.url()))
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let c = negotiate(s.url(), "negotiateVersion=1").await;
    let url = format!("{}?id={}", s.url(), c.token());
    let mut ws = WsClient::connect(&url, "json", 1).await;
    let _ = ws.recv().await;
    assert_eq!(
        http.post(&url).body("x").send().await.unwrap().status(),
        405,
        "POST to a WebSocket connection"
    );
    assert_eq!(
        http.delete(&url).send().await.unwrap().status(),
        400,
        "DELETE on a WebSocket connection"
    );
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        400,
        "switching transport"
    );
    assert!(
        tokio_tungstenite::connect_async(support::ws_url(&url))
            .await
            .is_err(),
        "a second socket: 409"
    );
    let limited = server(|c| c.transports = vec![TransportKind::LongPolling]).await;
    assert!(
        tokio_tungstenite::connect_async(support::ws_url(limited.url()))
            .await
            .is_err(),
        "WebSockets not offered"
    );
}

#[tokio::test]
async fn faults_close_abort_and_controls() {
    let s = server(|c| c.admin = true).await;
    let mut ws = WsClient::connect(s.url(), "json", 1).await;
    let _ = ws.recv().await;
    ws.invoke("1", "CloseMe", &json!(["bye", true])).await;
    let Some(HubMessage::Close(close)) = ws.recv_non_ping().await else {
        panic!("a Close message")
    };
    assert_eq!(
        (close.error.as_deref(), close.allow_reconnect),
        (Some("bye"), true)
    );
    assert!(ws.recv().await.is_none());

    let mut ws = WsClient::connect(s.url(), "json", 1).await;
    let _ = ws.recv().await;
    ws.invoke("1", "AbortMe", &json!([])).await;
    // No Close message and no close frame: the socket just ends.
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws.ws))
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => {
                panic!("an abort sends no close frame")
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                assert!(!t.contains("\"type\":7"), "no Close message: {t}");
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }

    let mut ws = WsClient::connect(s.url(), "json", 1).await;
    let _ = ws.recv().await;
    assert_eq!(s.controls().connection_count(), 1);
    let http = reqwest::Client::new();
    let admin = s.url().replace("/hub", "/admin");
    let aborted: Value = http
        .post(format!("{admin}/abort"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(aborted, json!({"aborted": 1}));
    assert!(ws.recv().await.is_none());

    http.post(format!("{admin}/refuse?ms=60000"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        http.post(format!("{}/negotiate", s.url()))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );

    let plain = server(|_| {}).await;
    let admin = plain.url().replace("/hub", "/admin");
    assert_eq!(
        http.post(format!("{admin}/abort"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "admin is off by default"
    );
}

#[tokio::test]
async fn blackhole_holds_messages_then_delivers_them() {
    let s = server(|_| {}).await;
    let mut ws = WsClient::connect(s.url(), "json", 1).await;
    let _ = ws.recv().await;
    ws.invoke("1", "Blackhole", &json!([300])).await;
    ws.invoke("2", "Add", &json!([1, 2])).await;
    // Nothing arrives while the link is "unplugged"; afterwards both completions do.
    let quiet = tokio::time::timeout(Duration::from_millis(150), ws.ws.next_frame()).await;
    assert!(quiet.is_err(), "the server wrote during the blackhole");
    let mut done = Vec::new();
    while done.len() < 2 {
        if let HubMessage::Completion(c) = ws.recv_non_ping().await.unwrap() {
            done.push(c.invocation_id);
        }
    }
    assert_eq!(done, ["1", "2"]);
}

#[tokio::test]
async fn limits_and_timeouts() {
    let s = server(|c| {
        c.max_message_size = 1024;
        c.keep_alive_interval = Duration::from_millis(100);
        c.client_timeout = Duration::from_millis(600);
        c.detailed_errors = true;
    })
    .await;
    // Keep-alive: a quiet client gets pings.
    let mut ws = WsClient::connect(s.url(), "json", 1).await;
    let _ = ws.recv().await;
    assert_eq!(ws.recv().await, Some(HubMessage::Ping));
    // A message over the limit closes the connection with an error.
    ws.invoke("1", "Echo", &json!(["x".repeat(2000)])).await;
    let close = loop {
        match ws.recv().await {
            Some(HubMessage::Close(c)) => break c,
            Some(_) => {}
            None => panic!("closed without a Close message"),
        }
    };
    assert!(
        close
            .error
            .unwrap_or_default()
            .contains("exceeds the maximum")
    );
    // A client that sends nothing is dropped after the client timeout.
    let mut quiet = WsClient::connect(s.url(), "json", 1).await;
    let mut closed = false;
    for _ in 0..100 {
        if quiet.recv().await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "a silent client is dropped");
}

#[tokio::test]
async fn stateful_reconnect_resumes_without_loss() {
    let s = server(|c| c.stateful_reconnect = true).await;
    let c = negotiate(s.url(), "negotiateVersion=1&useStatefulReconnect=true").await;
    assert!(c.use_stateful_reconnect);
    let url = format!("{}?id={}", s.url(), c.token());
    let mut ws = WsClient::connect(&url, "json", 2).await;
    assert!(matches!(ws.recv().await, Some(HubMessage::Invocation(w)) if w.target == "welcome")); // server id 1
    ws.invoke("1", "Sequence", &json!([3])).await; // client id 1
    let mut got = Vec::new();
    while got.len() < 3 {
        if let Some(HubMessage::Invocation(m)) = ws.recv_non_ping().await {
            got.push(m.arguments.deserialize::<(i64,)>().unwrap().0); // server ids 2..4
        }
    }
    // Drop the socket without a close frame, then resume on a new one with the same token.
    drop(ws);
    let (raw, _) = tokio_tungstenite::connect_async(support::ws_url(&url))
        .await
        .unwrap();
    let mut ws = WsClient::attach(raw, "json");
    // The server says where its replay starts: nothing was acknowledged, so from 1.
    assert_eq!(
        ws.recv().await,
        Some(HubMessage::Sequence(Sequence::new(1)))
    );
    ws.send(&HubMessage::Sequence(Sequence::new(2))).await; // we processed our id 1 already
    let mut replayed = Vec::new();
    let completion = loop {
        match ws.recv_non_ping().await.unwrap() {
            HubMessage::Invocation(m) => replayed.push(m.target),
            HubMessage::Completion(c) => break c,
            HubMessage::Ack(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        replayed,
        ["welcome", "seq", "seq", "seq"],
        "everything unacknowledged is replayed in order"
    );
    assert_eq!(ok(completion.result), json!(3));
    // Acknowledge everything; new traffic continues the numbering.
    ws.send(&HubMessage::Ack(Ack::new(5))).await;
    assert_eq!(ok(ws.call("2", "Add", &json!([1, 2])).await), json!(3));
    // The server acknowledges what we sent.
    loop {
        if let Some(HubMessage::Ack(a)) = ws.recv().await {
            assert!(a.sequence_id >= 2);
            break;
        }
    }
}

/// Small conveniences for the tests above.
trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

trait NextFrame {
    async fn next_frame(&mut self) -> Option<tokio_tungstenite::tungstenite::Message>;
}

impl NextFrame
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn next_frame(&mut self) -> Option<tokio_tungstenite::tungstenite::Message> {
        futures_util::StreamExt::next(self)
            .await
            .and_then(Result::ok)
    }
}
