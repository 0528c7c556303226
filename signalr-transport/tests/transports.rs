//! Each transport against the test server, negotiate in all its shapes, and fallback.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use serde_json::json;
use signalr_protocol::{
    Arguments, CompletionResult, HandshakeRequest, HandshakeResponse, HubMessage, HubProtocol,
    Invocation, JsonHubProtocol, MessageDecoder, MessagePackHubProtocol, TransportKind,
};
use signalr_testserver::{Redirect, ServerConfig, TestServer};
use signalr_transport::{
    Connection, CrossOriginRedirects, HttpOptions, Transport, TransportError, connect,
};
use tokio::{io::AsyncWriteExt as _, net::TcpListener};

const WAIT: Duration = Duration::from_secs(10);

async fn server(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = ServerConfig::default();
    configure(&mut config);
    TestServer::start(config).await.unwrap()
}

/// Handshake, `Add(a, b)`, and the result, over whatever transport `conn` holds.
async fn add(transport: &mut dyn Transport, protocol: Arc<dyn HubProtocol>, a: i64, b: i64) -> i64 {
    let mut out = BytesMut::new();
    HandshakeRequest::new(protocol.name(), 1).encode(&mut out);
    let args = Arguments::from_values(protocol.payload_format(), &(a, b)).unwrap();
    protocol
        .encode(
            &HubMessage::Invocation(Invocation::new("1", "Add", args)),
            &mut out,
        )
        .unwrap();
    transport.send(out.freeze()).await.unwrap();
    let mut buf = BytesMut::new();
    let mut decoder = None;
    loop {
        let chunk = tokio::time::timeout(WAIT, transport.recv())
            .await
            .unwrap()
            .expect("open")
            .unwrap();
        if decoder.is_none() {
            buf.extend_from_slice(&chunk);
            if let Some(r) = HandshakeResponse::decode(&mut buf, 1 << 16).unwrap() {
                assert_eq!(r, HandshakeResponse::ok());
                decoder = Some(MessageDecoder::with_buffer(
                    Arc::clone(&protocol),
                    buf.split(),
                ));
            }
        } else if let Some(d) = &mut decoder {
            d.push(&chunk);
        }
        if let Some(d) = &mut decoder {
            while let Some(m) = d.next_message().unwrap() {
                if let HubMessage::Completion(c) = m {
                    let CompletionResult::Value(v) = c.result else {
                        panic!("{:?}", c.result)
                    };
                    return v.deserialize().unwrap();
                }
            }
        }
    }
}

fn only(kind: TransportKind) -> HttpOptions {
    HttpOptions::default().transports([kind])
}

#[tokio::test]
async fn every_transport_and_format() {
    let s = server(|_| {}).await;
    let cases: [(TransportKind, Arc<dyn HubProtocol>); 5] = [
        (TransportKind::WebSockets, Arc::new(JsonHubProtocol::new())),
        (
            TransportKind::WebSockets,
            Arc::new(MessagePackHubProtocol::new()),
        ),
        (
            TransportKind::ServerSentEvents,
            Arc::new(JsonHubProtocol::new()),
        ),
        (TransportKind::LongPolling, Arc::new(JsonHubProtocol::new())),
        (
            TransportKind::LongPolling,
            Arc::new(MessagePackHubProtocol::new()),
        ),
    ];
    for (kind, protocol) in cases {
        let mut conn = connect(s.url(), protocol.transfer_format(), &only(kind))
            .await
            .unwrap();
        assert_eq!(conn.transport.kind(), kind);
        assert!(conn.connection_id().is_some());
        assert_eq!(
            add(&mut *conn.transport, protocol, 40, 2).await,
            42,
            "{kind:?}"
        );
        conn.transport.close().await.unwrap();
    }
}

#[tokio::test]
async fn messagepack_never_picks_sse_and_falls_through_the_order() {
    let s = server(|c| {
        c.transports = vec![TransportKind::ServerSentEvents, TransportKind::LongPolling];
    })
    .await;
    let conn = connect(
        s.url(),
        signalr_protocol::TransferFormat::Binary,
        &HttpOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(conn.transport.kind(), TransportKind::LongPolling);
    let conn = connect(
        s.url(),
        signalr_protocol::TransferFormat::Text,
        &HttpOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(conn.transport.kind(), TransportKind::ServerSentEvents);
    let err = connect(
        s.url(),
        signalr_protocol::TransferFormat::Binary,
        &only(TransportKind::ServerSentEvents),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::NoCommonTransport), "{err}");
}

#[tokio::test]
async fn falls_back_when_websockets_are_refused() {
    let s = server(|c| c.refuse_websockets = true).await;
    let mut conn: Connection = connect(
        s.url(),
        signalr_protocol::TransferFormat::Text,
        &HttpOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(conn.transport.kind(), TransportKind::ServerSentEvents);
    assert_eq!(
        add(&mut *conn.transport, Arc::new(JsonHubProtocol::new()), 1, 2).await,
        3
    );
    // With only WebSockets allowed, every failure is reported.
    let err = connect(
        s.url(),
        signalr_protocol::TransferFormat::Text,
        &only(TransportKind::WebSockets),
    )
    .await
    .unwrap_err();
    let TransportError::AllTransportsFailed { failures } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            failures[..],
            [(
                TransportKind::WebSockets,
                TransportError::Status { status: 503, .. }
            )]
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("WebSockets: WebSocket upgrade returned HTTP 503"),
        "{err}"
    );
}

#[tokio::test]
async fn negotiate_versions_and_skip_negotiation() {
    let v0 = server(|c| c.negotiate_version = 0).await;
    let mut conn = connect(
        v0.url(),
        signalr_protocol::TransferFormat::Text,
        &only(TransportKind::LongPolling),
    )
    .await
    .unwrap();
    let n = conn.negotiated.as_ref().unwrap();
    assert_eq!(
        (
            n.connection.negotiate_version,
            n.connection.connection_token.as_deref()
        ),
        (0, None)
    );
    assert_eq!(
        add(&mut *conn.transport, Arc::new(JsonHubProtocol::new()), 2, 2).await,
        4
    );

    let mut ws = connect(
        &v0.url().replace("http://", "ws://"),
        signalr_protocol::TransferFormat::Binary,
        &HttpOptions::default().skip_negotiation(true),
    )
    .await
    .unwrap();
    assert!(ws.negotiated.is_none());
    assert_eq!(
        add(
            &mut *ws.transport,
            Arc::new(MessagePackHubProtocol::new()),
            3,
            4
        )
        .await,
        7
    );
    let err = connect(
        v0.url(),
        signalr_protocol::TransferFormat::Text,
        &only(TransportKind::LongPolling).skip_negotiation(true),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        TransportError::SkipNegotiationNeedsWebSockets
    ));
}

#[tokio::test]
async fn tokens_and_redirects() {
    let target = server(|c| c.required_token = Some("from-redirect".into())).await;
    // 401 without a token, success with one.
    let err = connect(
        target.url(),
        signalr_protocol::TransferFormat::Text,
        &HttpOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Status {
                what: "negotiate",
                status: 401
            }
        ),
        "{err}"
    );
    let with_token =
        HttpOptions::default().access_token_factory(|| async { Ok("from-redirect".to_owned()) });
    for kind in TransportKind::ALL {
        let options = with_token.clone().transports([kind]);
        let mut conn = connect(
            target.url(),
            signalr_protocol::TransferFormat::Text,
            &options,
        )
        .await
        .unwrap();
        assert_eq!(
            add(&mut *conn.transport, Arc::new(JsonHubProtocol::new()), 5, 5).await,
            10,
            "{kind:?}"
        );
    }

    // A chain: redirect -> redirect -> target, with the redirect's token used at the end.
    let hop2 =
        server(|c| c.redirect = Some(Redirect::new(target.url(), Some("from-redirect".into()))))
            .await;
    let hop1 = server(|c| c.redirect = Some(Redirect::new(hop2.url(), None))).await;
    let mut conn = connect(
        hop1.url(),
        signalr_protocol::TransferFormat::Text,
        &HttpOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(conn.negotiated.as_ref().unwrap().url.as_str(), target.url());
    assert_eq!(
        add(&mut *conn.transport, Arc::new(JsonHubProtocol::new()), 1, 1).await,
        2
    );

    // Refusing cross-origin redirects (every test server is its own origin: another port).
    let options = HttpOptions::default().cross_origin_redirects(CrossOriginRedirects::Refuse);
    assert!(
        connect(hop1.url(), signalr_protocol::TransferFormat::Text, &options)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn redirect_loops_stop() {
    // A -> A is caught at the first hop.
    let (a, a_url) = listener().await;
    serve_redirect(a, &a_url);
    let err = connect(
        &a_url,
        signalr_protocol::TransferFormat::Text,
        &HttpOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::RedirectLoop { .. }), "{err}");

    // A -> B -> A ping-pong ends at the limit, not in a hang.
    let ((a, a_url), (b, b_url)) = (listener().await, listener().await);
    serve_redirect(a, &b_url);
    serve_redirect(b, &a_url);
    let options = HttpOptions::default().max_redirects(5);
    let err = connect(&a_url, signalr_protocol::TransferFormat::Text, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::RedirectLimit { limit: 5 }),
        "{err}"
    );

    // A real chain: 6 redirects fail with 5 allowed, succeed with 7.
    let mut chain = vec![server(|_| {}).await];
    for _ in 0..6 {
        let next = chain.last().unwrap().url().to_owned();
        chain.push(server(|c| c.redirect = Some(Redirect::new(next, None))).await);
    }
    let start = chain.last().unwrap().url().to_owned();
    let err = connect(&start, signalr_protocol::TransferFormat::Text, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::RedirectLimit { limit: 5 }),
        "{err}"
    );
    let enough = HttpOptions::default().max_redirects(7);
    assert!(
        connect(&start, signalr_protocol::TransferFormat::Text, &enough)
            .await
            .is_ok()
    );
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hub", l.local_addr().unwrap());
    (l, url)
}

/// Answers every request on `listener` with a negotiate redirect to `to`.
fn serve_redirect(listener: TcpListener, to: &str) {
    let body = format!("{{\"url\":\"{to}\"}}");
    let response: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    tokio::spawn(answer_all(listener, response));
}

async fn answer_all(listener: TcpListener, response: &'static [u8]) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let mut buf = [0u8; 4096];
        let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
        let _ = socket.write_all(response).await;
        let _ = socket.shutdown().await;
    }
}

/// A tiny HTTP server that answers every request with `response`, then closes.
async fn canned(response: &'static [u8]) -> String {
    let (l, url) = listener().await;
    tokio::spawn(answer_all(l, response));
    url
}

#[tokio::test]
async fn broken_servers_give_typed_errors() {
    // A response cut mid-body.
    let url = canned(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"negotiateVersion\":1,").await;
    let err = connect(
        &url,
        signalr_protocol::TransferFormat::Text,
        &HttpOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Http {
                what: "negotiate",
                ..
            }
        ),
        "{err}"
    );
    // Garbage, a negotiate error, a classic ASP.NET server, 500.
    for (body, want) in [
        ("<html>", "invalid negotiate response"),
        ("{\"error\":\"nope!\"}", "negotiate failed: nope!"),
        (
            "{\"ProtocolVersion\":\"1.5\",\"Url\":\"/signalr\"}",
            "classic ASP.NET SignalR",
        ),
    ] {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let url = canned(Box::leak(response.into_bytes().into_boxed_slice())).await;
        let err = connect(
            &url,
            signalr_protocol::TransferFormat::Text,
            &HttpOptions::default(),
        )
        .await
        .unwrap_err();
        let text = format!("{err} / {err:?}");
        assert!(text.contains(want), "{text}");
    }
    let url = canned(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n").await;
    let err = connect(
        &url,
        signalr_protocol::TransferFormat::Text,
        &HttpOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::Status { status: 500, .. }) && err.is_retryable(),
        "{err}"
    );
    // A server that never answers: the request timeout.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hub", listener.local_addr().unwrap());
    let options = HttpOptions::default().request_timeout(Duration::from_millis(200));
    let err = connect(&url, signalr_protocol::TransferFormat::Text, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Timeout {
                what: "negotiate",
                ..
            }
        ),
        "{err}"
    );
    drop(listener);
}

#[tokio::test]
async fn a_websocket_dropped_mid_connection_is_an_error() {
    let s = server(|_| {}).await;
    let protocol: Arc<dyn HubProtocol> = Arc::new(JsonHubProtocol::new());
    let mut conn = connect(
        s.url(),
        protocol.transfer_format(),
        &only(TransportKind::WebSockets),
    )
    .await
    .unwrap();
    assert_eq!(
        add(&mut *conn.transport, Arc::clone(&protocol), 1, 1).await,
        2
    );
    let mut out = BytesMut::new();
    protocol
        .encode(
            &HubMessage::Invocation(Invocation::new(
                "2",
                "AbortMe",
                Arguments::from_values(protocol.payload_format(), &json!([])).unwrap(),
            )),
            &mut out,
        )
        .unwrap();
    conn.transport.send(out.freeze()).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, conn.transport.recv())
            .await
            .unwrap()
        {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                assert!(
                    matches!(e, TransportError::WebSocketClosed { code: 1006, .. }),
                    "{e}"
                );
                break;
            }
            None => panic!("an abort is not a clean close"),
        }
    }
    assert!(conn.transport.recv().await.is_none());

    // Long polling: DELETE ends it, and the server's 204 reads as a clean close.
    let mut lp = connect(
        s.url(),
        protocol.transfer_format(),
        &only(TransportKind::LongPolling),
    )
    .await
    .unwrap();
    assert_eq!(
        add(&mut *lp.transport, Arc::clone(&protocol), 2, 2).await,
        4
    );
    let mut out = BytesMut::new();
    protocol
        .encode(
            &HubMessage::Invocation(Invocation::new(
                "3",
                "CloseMe",
                Arguments::from_values(protocol.payload_format(), &json!([null, false])).unwrap(),
            )),
            &mut out,
        )
        .unwrap();
    lp.transport.send(out.freeze()).await.unwrap();
    let mut closed_cleanly = false;
    for _ in 0..10 {
        match tokio::time::timeout(WAIT, lp.transport.recv())
            .await
            .unwrap()
        {
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
            None => {
                closed_cleanly = true;
                break;
            }
        }
    }
    assert!(closed_cleanly);
    lp.transport.close().await.unwrap();
}
