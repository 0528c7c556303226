//! Message content reaches the logs only when the user opts in
//! (`with_log_message_content`, the JavaScript client's `logMessageContent`): without it, the
//! `trace` events `data sent` / `data received` carry sizes only. One test binary: a global
//! subscriber at `trace`.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
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

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

async fn echo(server: &TestServer, messagepack: bool, content: bool, canary: &str) {
    let mut builder = HubConnectionBuilder::new(server.url()).with_log_message_content(content);
    if messagepack {
        builder = builder.with_messagepack();
    }
    let conn = builder.build().unwrap();
    conn.start().await.unwrap();
    let back: String = conn.invoke("Echo", (canary,)).await.unwrap();
    assert_eq!(back, canary);
    conn.stop().await.unwrap();
}

#[tokio::test]
async fn content_is_logged_only_when_asked_for() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("signalr_client=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let server = TestServer::start(ServerConfig::default()).await.unwrap();

    echo(&server, false, false, "canary-json-off").await;
    echo(&server, true, false, "canary-msgpack-off").await;
    let off = capture.text();
    assert!(
        off.contains("data sent") && off.contains("data received"),
        "{off}"
    );
    assert!(off.contains("signalr.bytes="), "{off}");
    assert!(!off.contains("canary"), "{off}");
    assert!(!off.contains("signalr.content"), "{off}");

    echo(&server, false, true, "canary-json-on").await;
    let json = capture.text();
    // The invocation as sent, and the completion as received.
    let sent = json
        .lines()
        .find(|l| l.contains("data sent") && l.contains("canary-json-on"))
        .unwrap_or_else(|| panic!("{json}"));
    assert!(sent.contains(r#"\"target\":\"Echo\""#), "{sent}");
    assert!(
        json.lines()
            .any(|l| l.contains("data received") && l.contains("canary-json-on")),
        "{json}"
    );

    echo(&server, true, true, "canary-mp").await;
    // MessagePack in hex: "canary-mp" is a9 63 61 6e 61 72 79 2d 6d 70.
    let hex = "a9 63 61 6e 61 72 79 2d 6d 70";
    let mp = capture.text();
    assert!(
        mp.lines()
            .any(|l| l.contains("data sent") && l.contains(hex)),
        "{mp}"
    );
    assert!(
        mp.lines()
            .any(|l| l.contains("data received") && l.contains(hex)),
        "{mp}"
    );
    server.shutdown().await;
}
