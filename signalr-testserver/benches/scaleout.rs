//! Broadcast to 1,000 connections: on one instance, and spread over two instances on one
//! Redis (`redis-server` from Debian's package, started on a free port, persistence off).
//!
//! `cargo bench -p signalr-testserver --bench scaleout` (3 rounds of each, interleaved).
//! Every connection is a raw WebSocket client (tokio-tungstenite, JSON): no client library's
//! cost is in the figures. A sender on the first instance invokes `Broadcast("b", t)` 200
//! times back to back, `t` the send time; each connection records when each `b` arrives. Reported:
//! deliveries per second (1,000 × 200 over the time from the first send to the last
//! delivery) and the delivery latency p50 / p99 over all 200,000 deliveries. Servers, Redis
//! and clients share this 2-core machine, the same way for both set-ups. Nothing here is a test.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::disallowed_methods,
    clippy::zombie_processes,
    reason = "a benchmark reads the clock; the Redis child is reaped by its guard"
)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use signalr_testserver::{ServerConfig, TestServer};
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 1000;
const BROADCASTS: usize = 200;
/// Broadcasts sent one at a time, each after the last was delivered everywhere.
const SINGLES: usize = 50;
const ROUNDS: usize = 3;

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis() -> Option<Redis> {
    let program = ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(program)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Redis(child, port));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server did not start");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url.replace("http://", "ws://"))
        .await
        .unwrap();
    ws.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await
        .unwrap();
    // The handshake answer and the welcome.
    let mut seen = 0;
    while seen < 2 {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            seen += t.matches('\u{1e}').count();
        }
    }
    ws
}

/// Reads until `SINGLES` `l` and `BROADCASTS` `b` calls arrived; their latencies in µs
/// against `base`, apart. Counts each delivery in `delivered`.
async fn receive(
    mut ws: Ws,
    base: Instant,
    delivered: Arc<(AtomicUsize, tokio::sync::Notify)>,
) -> (Vec<u64>, Vec<u64>) {
    let (mut single, mut burst) = (Vec::with_capacity(SINGLES), Vec::with_capacity(BROADCASTS));
    while single.len() < SINGLES || burst.len() < BROADCASTS {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            continue;
        };
        let now = base.elapsed().as_micros() as u64;
        for record in text.split('\u{1e}').filter(|r| !r.is_empty()) {
            let v: Value = serde_json::from_str(record).unwrap();
            if v["type"] != 1 {
                continue;
            }
            let latency = now.saturating_sub(v["arguments"][0].as_u64().unwrap_or(now));
            match v["target"].as_str() {
                Some("l") => single.push(latency),
                Some("b") => burst.push(latency),
                _ => continue,
            }
            // Every 1,000th delivery wakes the sender waiting for a broadcast to be everywhere.
            if (delivered.0.fetch_add(1, Ordering::AcqRel) + 1) % CONNECTIONS == 0 {
                delivered.1.notify_waiters();
            }
        }
    }
    (single, burst)
}

struct Figures {
    single_p50: u64,
    single_p99: u64,
    per_second: f64,
    burst_p50: u64,
    burst_p99: u64,
}

fn broadcast(method: &str, i: usize, base: Instant) -> Message {
    let t = base.elapsed().as_micros();
    Message::text(format!(
        "{{\"type\":1,\"invocationId\":\"{method}{i}\",\"target\":\"Broadcast\",\"arguments\":[\"{method}\",{t}]}}\u{1e}"
    ))
}

fn pct(v: &mut [u64], p: usize) -> u64 {
    v.sort_unstable();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

async fn round(urls: &[String]) -> Figures {
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        clients.push(connect(&urls[i % urls.len()]).await);
    }
    let mut sender = connect(&urls[0]).await;
    let base = Instant::now();
    let delivered = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
    let receivers: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(receive(ws, base, Arc::clone(&delivered))))
        .collect();
    // One at a time: the latency of a broadcast to everyone, nothing queued before it.
    for i in 0..SINGLES {
        let everywhere = delivered.1.notified();
        tokio::pin!(everywhere);
        everywhere.as_mut().enable();
        sender.send(broadcast("l", i, base)).await.unwrap();
        while delivered.0.load(Ordering::Acquire) < (i + 1) * CONNECTIONS {
            everywhere.as_mut().await;
            everywhere.set(delivered.1.notified());
            everywhere.as_mut().enable();
        }
    }
    // Back to back: the delivery rate.
    let start = base.elapsed();
    for i in 0..BROADCASTS {
        sender.send(broadcast("b", i, base)).await.unwrap();
    }
    let (mut single, mut burst) = (Vec::new(), Vec::new());
    for r in receivers {
        let (s, b) = r.await.unwrap();
        single.extend(s);
        burst.extend(b);
    }
    let elapsed = base.elapsed().saturating_sub(start);
    Figures {
        single_p50: pct(&mut single, 50),
        single_p99: pct(&mut single, 99),
        per_second: (CONNECTIONS * BROADCASTS) as f64 / elapsed.as_secs_f64(),
        burst_p50: pct(&mut burst, 50),
        burst_p99: pct(&mut burst, 99),
    }
}

async fn servers(redis: Option<&Redis>, n: usize, hub: &str) -> Vec<TestServer> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut config = ServerConfig::default();
        config.redis = redis.map(|r| format!("redis://127.0.0.1:{}", r.1));
        config.hub_name = hub.into();
        config.server_name = format!("s{i}");
        out.push(TestServer::start(config).await.unwrap());
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(redis) = redis() else {
        eprintln!("skipping: redis-server is not installed (apt-get install -y redis-server)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut results: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
        for r in 0..ROUNDS {
            for (k, (backplane, n)) in [(false, 1), (true, 2)].into_iter().enumerate() {
                let hub = format!("Bench.Hub{r}{k}");
                let s = servers(backplane.then_some(&redis), n, &hub).await;
                let urls: Vec<String> = s.iter().map(|s| s.url().to_owned()).collect();
                results[k].push(round(&urls).await);
                for server in s {
                    server.shutdown().await;
                }
            }
        }
        for (k, name) in ["one instance", "two instances on Redis"].iter().enumerate() {
            let f = &results[k];
            let ms = |g: fn(&Figures) -> u64| median(f.iter().map(|x| g(x) as f64).collect()) / 1000.0;
            println!(
                "{name}, {CONNECTIONS} connections (median of {ROUNDS}): one broadcast p50 {:.2} ms, p99 {:.2} ms; {BROADCASTS} back to back: {:.0} deliveries/s, latency p50 {:.1} ms, p99 {:.1} ms",
                ms(|x| x.single_p50),
                ms(|x| x.single_p99),
                median(f.iter().map(|x| x.per_second).collect()),
                ms(|x| x.burst_p50),
                ms(|x| x.burst_p99),
            );
        }
    });
}
