//! The examples run as documented: each binary exits successfully and prints what its docs
//! promise, and `interop_client` passes every step on every transport and protocol pair.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use signalr_testserver::{ServerConfig, TestServer};

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn demo() {
    let out = run(env!("CARGO_BIN_EXE_demo"), &[]);
    for line in [
        "Add(40, 2) = 42",
        "Counter(5) = [0, 1, 2, 3, 4]",
        "bob got news: deploy at 5",
        "reconnecting (server timed out)",
        "after the second reconnect",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn chat() {
    let out = run(env!("CARGO_BIN_EXE_chat"), &[]);
    assert!(
        out.contains("[bob sees] alice: hi bob!") && out.contains("[alice sees] bob:"),
        "{out}"
    );
}

#[test]
fn streaming() {
    let out = run(env!("CARGO_BIN_EXE_streaming"), &[]);
    assert!(
        out.contains("took [0, 1, 2]") && out.contains("squares of 0..10: 285"),
        "{out}"
    );
}

#[test]
fn reconnect() {
    let out = run(env!("CARGO_BIN_EXE_reconnect"), &[]);
    for line in [
        "reconnecting (transport error: WebSocket closed with status code 1006)",
        "maintenance",
        "server timed out",
        "same connection: true",
        "closed (the server closed the connection: goodbye)",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn custom_stack() {
    let out = run(env!("CARGO_BIN_EXE_custom_stack"), &[]);
    assert!(
        out.contains("over LongPolling") && out.contains("Add(40, 2) = 42"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interop_client_passes_every_step() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let url = server.url().to_owned();
    for (transport, protocol) in [
        ("ws", "json"),
        ("ws", "messagepack"),
        ("sse", "json"),
        ("lp", "json"),
        ("lp", "messagepack"),
        ("auto", "json"),
    ] {
        let url = url.clone();
        let out = tokio::task::spawn_blocking(move || {
            run(
                env!("CARGO_BIN_EXE_interop_client"),
                &[&url, transport, protocol],
            )
        })
        .await
        .unwrap();
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(report["failed"], 0, "{transport}/{protocol}: {report}");
        // The test server has the optional methods too.
        assert_eq!(report["skipped"], 0, "{transport}/{protocol}: {report}");
        assert!(report["passed"].as_u64().unwrap() >= 14, "{report}");
    }
}

#[test]
fn interop_client_refuses_unknown_flags_and_malformed_values() {
    for args in [
        &["http://127.0.0.1:1/hub", "--bogus"][..],
        &["http://127.0.0.1:1/hub", "--header", "no-colon"],
        &["http://127.0.0.1:1/hub", "--header", "bad name:v"],
        &["http://127.0.0.1:1/hub", "carrier-pigeon"],
        &["http://127.0.0.1:1/hub", "ws", "xml"],
        &["http://127.0.0.1:1/hub", "--proxy"],
        &[
            "http://127.0.0.1:1/hub",
            "--proxy",
            "http://p:1",
            "--no-proxy",
        ],
        &[
            "http://127.0.0.1:1/hub",
            "--identity",
            "/nonexistent/client.pem",
        ],
        &["http://127.0.0.1:1/hub", "--proxy", "socks9://p:1"],
        &[],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_interop_client"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("Usage: interop_client"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: no report");
    }
}
