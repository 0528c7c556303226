//! A canary token must never reach a log: every transport, header and query placement, a
//! redirect that hands out a token, and failures, with everything (our tracing, the test server,
//! and `log` records from tungstenite and friends) captured at TRACE level.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use bytes::BytesMut;
use signalr_protocol::{HandshakeRequest, TransferFormat, TransportKind};
use signalr_testserver::{Redirect, ServerConfig, TestServer};
use signalr_transport::{HttpOptions, connect};

const CANARY: &str = "CANARY-7f3a9c-TOKEN";
const REDIRECT_CANARY: &str = "CANARY-REDIRECT-51d2";
const COOKIE_CANARY: &str = "CANARY-COOKIE-93be";
const PROXY_CANARY: &str = "CANARY-PROXY-PASS-0c44";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let mut config = ServerConfig::default();
    config.required_token = Some(CANARY.into());
    let server = TestServer::start(config).await.unwrap();
    let mut config = ServerConfig::default();
    config.redirect = Some(Redirect::new(server.url(), Some(REDIRECT_CANARY.into())));
    let redirector = TestServer::start(config).await.unwrap();

    // A session cookie goes with every request of every transport.
    let jar = Arc::new(signalr_transport::CookieJar::new());
    jar.add(&format!("session={COOKIE_CANARY}; Path=/"), server.url())
        .unwrap();
    let factory = HttpOptions::default()
        .cookies(Some(jar))
        .access_token_factory(|| async { Ok(CANARY.to_owned()) });
    for in_query in [false, true] {
        for kind in TransportKind::ALL {
            let options = factory
                .clone()
                .transports([kind])
                .access_token_in_query(in_query);
            let mut conn = connect(server.url(), TransferFormat::Text, &options)
                .await
                .unwrap();
            let mut hs = BytesMut::new();
            HandshakeRequest::new("json", 1).encode(&mut hs);
            conn.transport.send(hs.freeze()).await.unwrap();
            let _ = conn.transport.recv().await;
            conn.transport.close().await.unwrap();
        }
    }
    // The redirect's token is wrong for the target: a 401 whose error must not carry it.
    let err = connect(
        redirector.url(),
        TransferFormat::Text,
        &HttpOptions::default(),
    )
    .await
    .unwrap_err();
    tracing::error!(error = %err, debug = ?err, "expected failure");
    // A skip-negotiation WebSocket with the token in the query, against a URL that refuses it.
    let ws = HttpOptions::default()
        .skip_negotiation(true)
        .access_token_in_query(true)
        .access_token_factory(|| async { Ok(CANARY.to_owned()) })
        .transports([TransportKind::WebSockets]);
    let ok = connect(server.url(), TransferFormat::Text, &ws).await;
    tracing::info!(connected = ok.is_ok(), options = ?ws, "skip-negotiation attempt");

    // A proxy with credentials that is not there: its failures name it, not its password.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!(
        "http://user:{PROXY_CANARY}@{}",
        unused.local_addr().unwrap()
    );
    drop(unused);
    for kind in TransportKind::ALL {
        let options = factory
            .clone()
            .transports([kind])
            .proxy(signalr_transport::Proxy::url(proxy.clone()));
        let err = connect(server.url(), TransferFormat::Text, &options)
            .await
            .unwrap_err();
        tracing::error!(error = %err, debug = ?err, options = ?options, "expected proxy failure");
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("negotiate") && logs.contains("opening WebSocket"),
        "the capture works:\n{logs}"
    );
    assert!(
        logs.contains("access_token=[redacted]"),
        "query tokens are logged redacted"
    );
    assert!(
        !logs.contains(CANARY),
        "the token leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains(REDIRECT_CANARY),
        "the redirect's token leaked into the logs"
    );
    assert!(
        logs.contains("expected proxy failure") && logs.contains("proxy http://127.0.0.1:"),
        "the proxy is named:\n{logs}"
    );
    assert!(
        !logs.contains(COOKIE_CANARY),
        "a cookie leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains(PROXY_CANARY),
        "proxy credentials leaked into the logs:\n{logs}"
    );
}
