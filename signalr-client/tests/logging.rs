//! What the client logs, as its crate docs say: a server call with no handler is a warning in
//! the JavaScript client's words; a call that does not fit its handler is a warning with the
//! method, the argument and serde's reason. One test binary: a global subscriber.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use signalr_client::HubConnectionBuilder;
use signalr_testserver::{ServerConfig, TestServer};

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
async fn warnings_say_what_went_wrong() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let conn = HubConnectionBuilder::new(server.url()).build().unwrap();
    conn.on("price", |_price: f64| async {});
    conn.start().await.unwrap();
    conn.invoke::<()>("SendToCaller", ("Nobody", 1))
        .await
        .unwrap();
    conn.invoke::<()>("SendToCaller", ("price", "cheap"))
        .await
        .unwrap();
    let logs = || String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !(logs().contains("nobody") && logs().contains("'price'")) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{}", logs()));
    let logs = logs();
    assert!(
        logs.contains(" WARN ") && logs.contains("No client method with the name 'nobody' found."),
        "{logs}"
    );
    let line = logs.lines().find(|l| l.contains("'price'")).unwrap();
    assert!(
        line.contains("WARN")
            && line.contains("argument 0 of 'price' does not bind")
            && line.contains("invalid type: string \\\"cheap\\\", expected f64"),
        "{line}"
    );
    conn.stop().await.unwrap();
}
