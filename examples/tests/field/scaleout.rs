//! Scale-out: two `signalr-testserver` processes on one `redis-server`, behind HAProxy with
//! cookie affinity and health checks. The instance a client is on is killed with SIGKILL (no
//! Close, nothing from the application): the client reconnects to the survivor, rejoins its
//! groups in `on_reconnected`, and group traffic from the other side reaches it. With stateful
//! reconnect, the resume to the dead instance fails with `ResumeFailed` and its count, and a
//! new connection follows.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use signalr_client::{
    HubConnection, HubConnectionBuilder, HubError, protocol::TransportKind, reconnect::FixedDelays,
};

use crate::support::{HaproxyConfig, Running, free_port, program, server_name};

/// The test server binary, built by `cargo test --workspace` (it has integration tests).
fn testserver_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SIGNALR_TESTSERVER_BIN") {
        return bin.into();
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let bin = target
        .parent()
        .expect("target dir")
        .join("debug")
        .join("signalr-testserver");
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p signalr-testserver",
        bin.display()
    );
    bin
}

struct Cluster {
    _redis: Running,
    instances: Vec<(String, u16, Option<Running>)>,
    _lb: Running,
    url: String,
}

impl Cluster {
    async fn start(dir: &std::path::Path, extra: &[&str]) -> Option<Self> {
        let redis = program("redis-server", "redis-server")?;
        let haproxy = program("haproxy", "haproxy")?;
        let redis_port = free_port();
        let redis = Running::start(
            &redis,
            &[
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            dir.join("redis.log"),
            redis_port,
        )
        .await;
        let redis_url = format!("redis://127.0.0.1:{redis_port}");
        let server = testserver_binary();
        let mut instances = Vec::new();
        for name in ["s0", "s1"] {
            let port = free_port();
            let port_text = port.to_string();
            let mut args = vec![
                "--port",
                &port_text,
                "--redis",
                &redis_url,
                "--server-name",
                name,
            ];
            args.extend_from_slice(extra);
            let running =
                Running::start(&server, &args, dir.join(format!("{name}.log")), port).await;
            instances.push((name.to_owned(), port, Some(running)));
        }
        let port = free_port();
        // Health checks every 200 ms, down after two failures: a dead instance is out of
        // the rotation within about half a second; its affinity cookie is then ignored.
        let mut config = HaproxyConfig::new()
            .frontend(port, None, "hubs")
            .line("backend hubs")
            .line("    balance roundrobin")
            .line("    cookie SRV insert indirect nocache")
            .line("    option httpchk GET /hub/negotiate")
            .line("    http-check expect status 405")
            // A refused connection is retried on another instance at once, instead of three
            // times on the dead one a second apart (HAProxy's default).
            .line("    option redispatch 1")
            .line("    retries 2");
        for (name, p, _) in &instances {
            config = config.line(&format!(
                "    server {name} 127.0.0.1:{p} cookie {name} check inter 200ms fall 2 rise 1"
            ));
        }
        let lb = config.start(&haproxy, dir, &[port]).await;
        Some(Self {
            _redis: redis,
            instances,
            _lb: lb,
            url: format!("http://127.0.0.1:{port}/hub"),
        })
    }

    /// SIGKILLs the instance named `name`; the port of the other one.
    fn kill(&mut self, name: &str) -> u16 {
        let mut survivor = 0;
        for (n, port, running) in &mut self.instances {
            if n == name {
                running.take().expect("running").kill();
            } else {
                survivor = *port;
            }
        }
        survivor
    }
}

/// A connection directly to one instance (not through the balancer).
async fn direct(port: u16) -> HubConnection {
    let conn = HubConnectionBuilder::new(format!("http://127.0.0.1:{port}/hub"))
        .with_transports([TransportKind::WebSockets])
        .build()
        .unwrap();
    conn.start().await.unwrap();
    conn
}

#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "reads the clock to report the failover time, asserts nothing on it"
)]
async fn a_killed_instance_fails_over_to_the_survivor_and_groups_are_rejoined() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut cluster) = Cluster::start(dir.path(), &[]).await else {
        return;
    };
    for transport in TransportKind::ALL {
        let conn = HubConnectionBuilder::new(&cluster.url)
            .with_transports([transport])
            .with_automatic_reconnect_policy(FixedDelays::from_millis(&[
                0, 100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000,
            ]))
            .build()
            .unwrap();
        let (group_tx, mut group) = tokio::sync::mpsc::unbounded_channel();
        let _on_team = conn.on("team", move |n: i32| {
            let group_tx = group_tx.clone();
            async move {
                let _ = group_tx.send(n);
            }
        });
        // The application's part: groups belong to a connection, so rejoin them after a
        // reconnect (a weak handle: the callback must not keep the connection alive).
        let (rejoined_tx, mut rejoined) = tokio::sync::mpsc::unbounded_channel();
        let weak = conn.downgrade();
        conn.on_reconnected(move |_| {
            let (weak, rejoined_tx) = (weak.clone(), rejoined_tx.clone());
            tokio::spawn(async move {
                if let Some(conn) = weak.upgrade() {
                    let joined = conn.invoke::<String>("JoinGroup", ("team",)).await;
                    let _ = rejoined_tx.send((Instant::now(), joined));
                }
            });
        });
        conn.start().await.unwrap();
        conn.invoke::<String>("JoinGroup", ("team",)).await.unwrap();
        let before = server_name(&conn).await;

        let killed = Instant::now();
        let survivor = cluster.kill(&before);
        let (at, joined) = tokio::time::timeout(Duration::from_secs(20), rejoined.recv())
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: no reconnect to the survivor"))
            .unwrap();
        joined.unwrap();
        eprintln!(
            "{transport:?}: instance {before} killed, on_reconnected and the group rejoined after {} ms",
            (at - killed).as_millis()
        );
        let after = server_name(&conn).await;
        assert_ne!(after, before, "{transport:?}: on the survivor");
        // Group traffic from a connection on the other instance reaches it, over Redis.
        let sender = direct(survivor).await;
        let _: String = sender
            .invoke("SendToGroup", ("team", "team", 7))
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), group.recv())
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: group message after the failover"));
        assert_eq!(n, Some(7));
        sender.stop().await.unwrap();
        conn.stop().await.unwrap();
        // The next transport starts with both instances up again.
        cluster = Cluster::start(dir.path(), &[]).await.unwrap();
    }
}

#[tokio::test]
async fn a_resume_to_a_killed_instance_fails_with_its_count_and_a_new_connection_follows() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut cluster) = Cluster::start(dir.path(), &["--stateful-reconnect"]).await else {
        return;
    };
    let conn = HubConnectionBuilder::new(&cluster.url)
        .with_transports([TransportKind::WebSockets])
        .with_stateful_reconnect(100_000)
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[
            0, 100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000,
        ]))
        .build()
        .unwrap();
    let (why_tx, mut why) = tokio::sync::mpsc::unbounded_channel();
    conn.on_reconnecting(move |e| {
        let _ = why_tx.send(e.map(|e| match e {
            HubError::ResumeFailed { unacknowledged, .. } => Some(*unacknowledged),
            _ => None,
        }));
    });
    let (re_tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel();
    conn.on_reconnected(move |id| drop(re_tx.send(id.map(str::to_owned))));
    conn.start().await.unwrap();
    let first = conn.connection_id();
    let before = server_name(&conn).await;
    // The instance stops reading (acks stop), then the client sends: those messages stay
    // unacknowledged, and then the instance dies.
    conn.send("Blackhole", (30_000,)).await.unwrap();
    // Blackholed: a call is not answered (nor acknowledged).
    let quiet = tokio::time::timeout(
        Duration::from_millis(500),
        conn.invoke::<i64>("Add", (1, 2)),
    );
    assert!(
        quiet.await.is_err(),
        "the instance answered while blackholed"
    );
    for i in 0..5 {
        conn.send("Echo", (i,)).await.unwrap();
    }
    cluster.kill(&before);
    let reason = tokio::time::timeout(Duration::from_secs(20), why.recv())
        .await
        .expect("reconnecting")
        .unwrap();
    let Some(Some(unacknowledged)) = reason else {
        panic!("expected ResumeFailed, got {reason:?}")
    };
    assert!(unacknowledged >= 5, "{unacknowledged}");
    let new_id = tokio::time::timeout(Duration::from_secs(20), reconnected.recv())
        .await
        .expect("a new connection")
        .unwrap();
    assert_ne!(new_id, first);
    assert_ne!(server_name(&conn).await, before);
    conn.stop().await.unwrap();
}
