//! Our client and the official JavaScript client (`interop/peers/js-peer.mjs`, run by Node 20
//! with the packages `.ci/run` installs) exchange messages through the test server: group
//! messages both ways and broadcasts, in JSON and MessagePack.
#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde::Deserialize;
use signalr_client::HubConnectionBuilder;
use signalr_testserver::{ServerConfig, TestServer};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::Command,
};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize, PartialEq)]
struct Greeting {
    from: String,
    to: String,
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop")
}

#[tokio::test]
async fn our_client_and_the_official_client_talk_through_groups_and_broadcasts() {
    let modules = interop_dir().join("node_modules/@microsoft/signalr");
    assert!(
        modules.exists(),
        "the npm packages are missing: run `npm ci --prefix interop` (.ci/run does)"
    );
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    for protocol in ["json", "messagepack"] {
        // The peer exits when its stdin closes, and is killed on drop: never left behind.
        let mut peer = Command::new("node")
            .arg(interop_dir().join("peers/js-peer.mjs"))
            .args([server.url(), protocol])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(peer.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(ready.starts_with("ready "), "{ready}");

        let builder = HubConnectionBuilder::new(server.url());
        let ours = if protocol == "messagepack" {
            builder.with_messagepack()
        } else {
            builder
        }
        .build()
        .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let to_rust = {
            let tx = tx.clone();
            ours.on("toRust", move |text: String| {
                let tx = tx.clone();
                async move { tx.send(text).unwrap() }
            })
        };
        let (gtx, mut greetings) = tokio::sync::mpsc::unbounded_channel::<Greeting>();
        let hello_back = ours.on("helloBack", move |g: Greeting| {
            let gtx = gtx.clone();
            async move { gtx.send(g).unwrap() }
        });
        ours.start().await.unwrap();
        ours.invoke::<String>("JoinGroup", ("mixed",))
            .await
            .unwrap();

        // Rust -> group -> JS, which answers through the group -> Rust.
        ours.invoke::<String>("SendToGroup", ("mixed", "toJs", "hello from rust"))
            .await
            .unwrap();
        let answer = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("the JS client answered")
            .unwrap();
        assert_eq!(answer, "js got: hello from rust", "{protocol}");
        assert_eq!(
            tokio::time::timeout(WAIT, lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
            "toJs hello from rust"
        );

        // A broadcast from Rust reaches JS; JS's broadcast (an object) reaches Rust.
        let reached: usize = ours.invoke("Broadcast", ("hello", "rust")).await.unwrap();
        assert!(reached >= 2, "{reached}");
        let greeting = tokio::time::timeout(WAIT, greetings.recv())
            .await
            .expect("the JS broadcast arrived")
            .unwrap();
        assert_eq!(
            greeting,
            Greeting {
                from: "js".into(),
                to: "rust".into()
            },
            "{protocol}"
        );

        drop((to_rust, hello_back));
        ours.stop().await.unwrap();
        drop(peer.stdin.take()); // the peer stops its connection and exits
        let status = tokio::time::timeout(WAIT, peer.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(
            status.success(),
            "{protocol}: the peer exited with {status}"
        );
    }
}
