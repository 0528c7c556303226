//! Proxies that refuse or misbehave: each gets a typed error that names the proxy (never its
//! credentials) and bounded memory. Real proxies (tinyproxy, HAProxy in front of it) are
//! exercised by the field tests in `signalr-client/tests/field`; the answers here are ones no
//! well-behaved proxy gives.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use signalr_protocol::{TransferFormat, TransportKind};
use signalr_testserver::{ServerConfig, TestServer};
use signalr_transport::{HttpOptions, Proxy, TransportError, connect};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Mutex,
};

/// A proxy that reads one request head per connection, records it, and answers with `reply`;
/// `None` tunnels a CONNECT to where it asks (a working proxy).
async fn proxy(reply: Option<&'static [u8]>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://user:s3cret@{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                seen.lock().await.push(head.clone());
                if let Some(reply) = reply {
                    let _ = socket.write_all(reply).await;
                    // Hold the connection open: the client must not wait for more.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let target = head.split_whitespace().nth(1).unwrap().to_owned();
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = socket.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = socket
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
            });
        }
    });
    (url, log)
}

fn ws_through(proxy: &str) -> HttpOptions {
    HttpOptions::default()
        .skip_negotiation(true)
        .transports([TransportKind::WebSockets])
        .connect_timeout(Duration::from_secs(5))
        .proxy(Proxy::url(proxy))
}

#[tokio::test]
async fn a_websocket_tunnels_through_connect_with_basic_credentials() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let (proxy_url, log) = proxy(None).await;
    let conn = connect(server.url(), TransferFormat::Text, &ws_through(&proxy_url))
        .await
        .unwrap();
    drop(conn);
    let log = log.lock().await;
    let authority = server.local_addr().to_string();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with(&format!(
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        )),
        "{}",
        log[0]
    );
    // user:s3cret
    assert!(
        log[0].contains("proxy-authorization: Basic dXNlcjpzM2NyZXQ=\r\n"),
        "{}",
        log[0]
    );
}

#[tokio::test]
async fn no_proxy_hosts_bypass_it() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let (proxy_url, log) = proxy(None).await;
    let options = HttpOptions::default()
        .connect_timeout(Duration::from_secs(5))
        .proxy(Proxy::url(proxy_url).with_no_proxy("127.0.0.1"));
    for kind in TransportKind::ALL {
        let conn = connect(
            server.url(),
            TransferFormat::Text,
            &options.clone().transports([kind]),
        )
        .await
        .unwrap();
        drop(conn);
    }
    assert!(log.lock().await.is_empty());
}

#[tokio::test]
async fn refusals_and_broken_replies_are_typed_and_name_the_proxy() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    for (reply, status, retryable) in [
        (
            &b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"[..],
            407,
            false,
        ),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", 403, false),
        (
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
            502,
            true,
        ),
    ] {
        let (proxy_url, _) = proxy(Some(reply)).await;
        let err = connect(server.url(), TransferFormat::Text, &ws_through(&proxy_url))
            .await
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        match &err {
            TransportError::ProxyRefused { proxy, status: s } => {
                assert_eq!(*s, status);
                assert!(proxy.starts_with("http://127.0.0.1:"), "{proxy}");
            }
            other => panic!("{status}: {other:?}"),
        }
        assert_eq!(err.is_retryable(), retryable, "{status}");
    }
    let huge: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(64 * 1024))
            .into_bytes()
            .into_boxed_slice(),
    );
    for (reply, want) in [
        (
            &b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..],
            "malformed proxy CONNECT response",
        ),
        (huge, "larger than"),
        (b"HTTP/1.1 200 OK\r\n\r\nunexpected", "data after the reply"),
    ] {
        let (proxy_url, _) = proxy(Some(reply)).await;
        let err = connect(server.url(), TransferFormat::Text, &ws_through(&proxy_url))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::MalformedResponse { .. })
                && err.to_string().contains(want),
            "{err:?}"
        );
    }
    // A proxy that is not there.
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let err = connect(server.url(), TransferFormat::Text, &ws_through(&gone))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Proxy { .. }) && err.is_retryable(),
        "{err:?}"
    );
    assert!(err.to_string().contains(&gone), "{err}");
}

#[tokio::test]
async fn a_forward_proxy_that_wants_credentials_is_named() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let (proxy_url, log) = proxy(Some(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
    ))
    .await;
    let options = HttpOptions::default().proxy(Proxy::url(proxy_url));
    let err = connect(server.url(), TransferFormat::Text, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::ProxyRefused { status: 407, .. }),
        "{err:?}"
    );
    // Negotiate went to the proxy in absolute form, as a forward request.
    let log = log.lock().await;
    assert!(
        log[0].starts_with(&format!("POST {}/negotiate", server.url())),
        "{}",
        log[0]
    );
}

/// A server (or a load balancer in front of it) that answers negotiate with a flood of
/// `Set-Cookie` headers: the jar keeps at most 50 per response, and a head past hyper's
/// 100-header limit is an error, never unbounded memory.
#[tokio::test]
async fn a_set_cookie_flood_is_bounded() {
    async fn negotiate_with(cookies: usize) -> (Result<(), TransportError>, usize) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hub", listener.local_addr().unwrap());
        let value = "v".repeat(100);
        let head: String = std::iter::once("HTTP/1.1 200 OK\r\n".to_owned())
            .chain((0..cookies).map(|i| format!("Set-Cookie: c{i}={value}; Path=/\r\n")))
            .collect();
        let body = r#"{"error":"go away"}"#;
        let response = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        let jar = Arc::new(signalr_transport::CookieJar::new());
        let options = HttpOptions::default().cookies(Some(Arc::clone(&jar)));
        let result = connect(&url, TransferFormat::Text, &options)
            .await
            .map(drop);
        (result, jar.len())
    }
    let (result, held) = negotiate_with(90).await;
    assert!(
        matches!(result, Err(TransportError::Negotiate(_))),
        "{result:?}"
    );
    assert_eq!(held, signalr_transport::MAX_SET_COOKIES);
    let (result, held) = negotiate_with(500).await;
    assert!(
        matches!(
            result,
            Err(TransportError::Http {
                what: "negotiate",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(held, 0);
}
