//! Two test-server instances behind HAProxy: with cookie affinity (the usual way a
//! self-hosted ASP.NET Core SignalR app is scaled out), everything works on every transport,
//! across reconnects and stateful resumes; without it, negotiate and connect land on different
//! instances and the error says what is needed.

use std::{collections::BTreeSet, time::Duration};

use signalr_client::{
    HubConnectionBuilder, HubConnectionState, HubError, protocol::TransportKind,
    reconnect::FixedDelays, transport::TransportError,
};
use signalr_testserver::{ServerConfig, TestServer};

use crate::support::{
    HaproxyConfig, PAIRS, Running, builder, contract, free_port, program, server_name,
};

/// Two instances named `s0` and `s1`, configured by `configure`.
async fn instances(configure: impl Fn(&mut ServerConfig)) -> [TestServer; 2] {
    let start = |name: &str| {
        let mut config = ServerConfig::default();
        name.clone_into(&mut config.server_name);
        configure(&mut config);
        TestServer::start(config)
    };
    [start("s0").await.unwrap(), start("s1").await.unwrap()]
}

/// HAProxy in front of `servers`; the hub URL through it.
async fn balancer(
    haproxy: &std::path::Path,
    dir: &std::path::Path,
    servers: &[TestServer],
    affinity: bool,
) -> (Running, String) {
    let port = free_port();
    let addrs: Vec<_> = servers.iter().map(TestServer::local_addr).collect();
    let running = HaproxyConfig::new()
        .frontend(port, None, "hubs")
        .backend("hubs", &addrs, affinity)
        .start(haproxy, dir, &[port])
        .await;
    (running, format!("http://127.0.0.1:{port}/hub"))
}

#[tokio::test]
async fn with_cookie_affinity_the_whole_contract_passes_on_every_pair() {
    let Some(haproxy) = program("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let servers = instances(|_| {}).await;
    let (_lb, url) = balancer(&haproxy, dir.path(), &servers, true).await;
    let mut seen = BTreeSet::new();
    for (transport, messagepack) in PAIRS {
        let what = format!(
            "{transport:?}/{}",
            if messagepack { "MessagePack" } else { "JSON" }
        );
        let conn = builder(&url, transport, messagepack).build().unwrap();
        conn.start()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let name = server_name(&conn).await;
        contract(&conn, &what).await;
        // Every call of the connection reached the instance that negotiated it.
        assert_eq!(server_name(&conn).await, name, "{what}");
        seen.insert(name);
        conn.stop().await.unwrap();
    }
    // Round robin spread the connections over both instances: the affinity did the work.
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn an_automatic_reconnect_lands_on_the_same_instance() {
    let Some(haproxy) = program("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let servers = instances(|_| {}).await;
    let (_lb, url) = balancer(&haproxy, dir.path(), &servers, true).await;
    for transport in TransportKind::ALL {
        let conn = builder(&url, transport, false)
            .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0, 100, 500]))
            .build()
            .unwrap();
        let (tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel();
        conn.on_reconnected(move |id| drop(tx.send(id.map(str::to_owned))));
        conn.start().await.unwrap();
        let before = server_name(&conn).await;
        let first_id = conn.connection_id();
        // AbortMe drops the transport at once, without a Close: as a crash would.
        let _ = conn.invoke::<()>("AbortMe", ()).await;
        let new_id = tokio::time::timeout(Duration::from_secs(10), reconnected.recv())
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: no reconnect"))
            .unwrap();
        assert_ne!(new_id, first_id, "{transport:?}: a new connection");
        assert_eq!(
            server_name(&conn).await,
            before,
            "{transport:?}: the same instance"
        );
        conn.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_stateful_resume_goes_through_the_balancer_to_its_instance() {
    let Some(haproxy) = program("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let servers = instances(|c| c.stateful_reconnect = true).await;
    let (_lb, url) = balancer(&haproxy, dir.path(), &servers, true).await;
    let conn = HubConnectionBuilder::new(&url)
        .with_transports([TransportKind::WebSockets])
        .with_stateful_reconnect(100_000)
        .with_automatic_reconnect()
        .build()
        .unwrap();
    let (tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel::<()>();
    conn.on_reconnected(move |_| {
        let _ = tx.send(());
    });
    let (seq_tx, mut seq) = tokio::sync::mpsc::unbounded_channel();
    let _sub = conn.on("seq", move |i: i32| {
        let seq_tx = seq_tx.clone();
        async move {
            let _ = seq_tx.send(i);
        }
    });
    conn.start().await.unwrap();
    let name = server_name(&conn).await;
    let id = conn.connection_id();
    for _ in 0..3 {
        let _ = conn.invoke::<()>("AbortMe", ()).await;
        // Calls go on across the cut: the socket is replaced underneath them.
        let n: i32 = conn.invoke("Sequence", (50,)).await.unwrap();
        assert_eq!(n, 50);
        let mut got = Vec::new();
        while got.len() < 50 {
            got.push(
                tokio::time::timeout(Duration::from_secs(5), seq.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }
    assert_eq!(conn.connection_id(), id, "resumed, not reconnected");
    assert_eq!(server_name(&conn).await, name);
    assert_eq!(conn.state(), HubConnectionState::Connected);
    assert!(
        reconnected.try_recv().is_err(),
        "a resume is not a reconnect"
    );
    conn.stop().await.unwrap();
}

#[tokio::test]
async fn without_affinity_the_error_says_sticky_sessions_are_needed() {
    let Some(haproxy) = program("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let servers = instances(|_| {}).await;
    let (_lb, url) = balancer(&haproxy, dir.path(), &servers, false).await;
    for transport in TransportKind::ALL {
        let conn = builder(&url, transport, false).build().unwrap();
        let err = conn.start().await.unwrap_err();
        let HubError::Transport(TransportError::AllTransportsFailed { failures }) = &err else {
            panic!("{transport:?}: {err:?}");
        };
        assert!(
            matches!(
                failures[..],
                [(_, TransportError::UnknownConnection { .. })]
            ),
            "{transport:?}: {failures:?}"
        );
        assert!(
            failures[0].1.to_string().contains("sticky sessions"),
            "{err}"
        );
    }
    // WebSockets without negotiate need no affinity: one request makes the connection.
    let conn = HubConnectionBuilder::new(&url)
        .with_transports([TransportKind::WebSockets])
        .with_skip_negotiation()
        .build()
        .unwrap();
    conn.start().await.unwrap();
    contract(&conn, "skip negotiation").await;
    conn.stop().await.unwrap();
}

#[tokio::test]
async fn without_the_cookie_jar_affinity_is_lost() {
    let Some(haproxy) = program("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let servers = instances(|_| {}).await;
    let (_lb, url) = balancer(&haproxy, dir.path(), &servers, true).await;
    // The interop_client's --no-cookies: what a client without a jar does behind this balancer.
    let (code, out, _) =
        crate::support::interop_client(&[&url, "ws", "json", "--no-cookies"], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sticky sessions"), "{out}");
    let (code, out, err) = crate::support::interop_client(&[&url, "ws", "json"], &[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
}
