//! Scale-out through a real Redis (`redis-server` from Debian's package, started on a free
//! port with persistence off and stopped however the test ends): several instances share the
//! hub in ASP.NET Core's backplane format. Skipped with a message when `redis-server` is
//! missing; under `CI=true` that is a failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use signalr_protocol::{Completion, CompletionResult, HubMessage, Payload};
use signalr_testserver::{ServerConfig, TestServer};
use support::{WsClient, ok, value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn redis_server() -> Option<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
    {
        let path = PathBuf::from(dir).join("redis-server");
        if path.exists() {
            return Some(path);
        }
    }
    let hint = "redis-server is not installed: apt-get install -y redis-server (Debian's package)";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{hint}; under CI=true a backplane test may not be skipped"
    );
    eprintln!("skipping: {hint}");
    None
}

/// A `redis-server` child on `port`, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start(program: &PathBuf, port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let child = Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let redis = Self { child, port };
        for _ in 0..100 {
            if redis.ping().await {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not answer PING on port {port}");
    }

    async fn ping(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").await.is_ok()
            && s.read_exact(&mut buf).await.is_ok()
            && &buf == b"+PONG\r\n"
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
    async fn subscribers(&self, channel: &str) -> Option<u64> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let command = format!(
            "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        s.write_all(command.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 256];
        // `*2 $n channel :count`: done at the line that starts with ':'.
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            if let Some(line) = text.split("\r\n").find(|l| l.starts_with(':')) {
                if text.ends_with("\r\n") {
                    return line[1..].parse().ok();
                }
            }
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn instance(
    redis: &Redis,
    name: &str,
    hub: &str,
    configure: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let mut config = ServerConfig::default();
    config.redis = Some(redis.url());
    config.hub_name = hub.into();
    config.server_name = name.into();
    configure(&mut config);
    TestServer::start(config).await.unwrap()
}

/// A raw client that keeps every invocation the server sends it.
struct Peer {
    ws: WsClient,
    id: String,
    got: Vec<(String, Value)>,
    asks: Vec<(String, String, Value)>,
    next: u32,
}

impl Peer {
    async fn connect(server: &TestServer, protocol: &str, token: Option<&str>) -> Self {
        let url = match token {
            Some(t) => format!("{}?access_token={t}", server.url()),
            None => server.url().to_owned(),
        };
        let mut ws = WsClient::connect(&url, protocol, 1).await;
        let id = match ws.recv_non_ping().await.unwrap() {
            HubMessage::Invocation(i) if i.target == "welcome" => {
                let args: Vec<Payload> = i.arguments.to_payloads().unwrap();
                value(&args[0]).as_str().unwrap().to_owned()
            }
            other => panic!("expected the welcome, got {other:?}"),
        };
        Self {
            ws,
            id,
            got: Vec::new(),
            asks: Vec::new(),
            next: 0,
        }
    }

    fn keep(&mut self, message: HubMessage) {
        if let HubMessage::Invocation(i) = message {
            let args: Vec<Payload> = i.arguments.to_payloads().unwrap();
            let arg = args.first().map_or(Value::Null, value);
            match i.invocation_id {
                Some(id) => self.asks.push((id, i.target, arg)),
                None => self.got.push((i.target, arg)),
            }
        }
    }

    /// Invokes and waits for the completion, keeping what else arrives.
    async fn call(&mut self, target: &str, args: Value) -> CompletionResult {
        self.next += 1;
        let id = format!("c{}", self.next);
        self.ws.invoke(&id, target, &args).await;
        loop {
            match self.ws.recv_non_ping().await.expect("connection open") {
                HubMessage::Completion(c) if c.invocation_id == id => return c.result,
                m => self.keep(m),
            }
        }
    }

    /// Reads until `method` arrives; what came, in order, `method` last.
    async fn until(&mut self, method: &str) -> Vec<(String, Value)> {
        loop {
            if let Some(at) = self.got.iter().position(|(m, _)| m == method) {
                return self.got.drain(..=at).collect();
            }
            let m = self.ws.recv_non_ping().await.expect("connection open");
            self.keep(m);
        }
    }

    async fn ask(&mut self) -> (String, String, Value) {
        loop {
            if !self.asks.is_empty() {
                return self.asks.remove(0);
            }
            let m = self.ws.recv_non_ping().await.expect("connection open");
            self.keep(m);
        }
    }

    async fn answer(&mut self, id: &str, value: &Value) {
        let payload = Payload::from_value(self.ws.protocol.payload_format(), value).unwrap();
        self.ws
            .send(&HubMessage::Completion(Completion::value(id, payload)))
            .await;
    }
}

fn names(got: &[(String, Value)]) -> Vec<(&str, &Value)> {
    got.iter().map(|(m, v)| (m.as_str(), v)).collect()
}

#[tokio::test]
async fn three_instances_reach_exactly_the_right_connections_once() {
    let Some(program) = redis_server() else {
        return;
    };
    let redis = Redis::start(&program, None).await;
    let users = |c: &mut ServerConfig| {
        c.users = HashMap::from([("ta".into(), "alice".into()), ("tb".into(), "bob".into())]);
    };
    let hub = "Tests.FanOutHub";
    let s0 = instance(&redis, "s0", hub, users).await;
    let s1 = instance(&redis, "s1", hub, users).await;
    let s2 = instance(&redis, "s2", hub, users).await;
    // JSON and MessagePack mixed, two users over three instances.
    let mut ann = Peer::connect(&s0, "json", Some("ta")).await;
    let mut amy = Peer::connect(&s1, "messagepack", Some("ta")).await;
    let mut bob = Peer::connect(&s2, "json", Some("tb")).await;
    let mut ben = Peer::connect(&s2, "messagepack", Some("tb")).await;
    for (p, server) in [
        (&mut ann, "s0"),
        (&mut amy, "s1"),
        (&mut bob, "s2"),
        (&mut ben, "s2"),
    ] {
        assert_eq!(ok(p.call("GetServerName", json!([])).await), json!(server));
    }

    ok(ann.call("JoinGroup", json!(["g"])).await);
    ok(amy.call("JoinGroup", json!(["g"])).await);
    ok(bob.call("SendToGroup", json!(["g", "grp", {"n": 1}])).await);
    ok(ann.call("Broadcast", json!(["bc", "x"])).await);
    ok(ben.call("SendToUser", json!(["alice", "u", 7])).await);
    ok(ann
        .call("SendToConnection", json!([bob.id, "direct", 3]))
        .await);
    // A group change for a connection on another instance, acked by that instance.
    assert_eq!(
        ok(ann.call("AddToGroup", json!([ben.id, "g2"])).await),
        json!("g2")
    );
    ok(amy.call("SendToGroup", json!(["g2", "g2m", [1, 2]])).await);
    ok(bob.call("SendToCaller", json!(["self", true])).await);
    ok(ben.call("Broadcast", json!(["end", null])).await);

    let bc = ("bc", &json!("x"));
    let end = ("end", &Value::Null);
    let grp = ("grp", &json!({"n": 1}));
    assert_eq!(
        names(&ann.until("end").await),
        [grp, bc, ("u", &json!(7)), end]
    );
    assert_eq!(
        names(&amy.until("end").await),
        [grp, bc, ("u", &json!(7)), end]
    );
    assert_eq!(
        names(&bob.until("end").await),
        [bc, ("direct", &json!(3)), ("self", &json!(true)), end]
    );
    assert_eq!(
        names(&ben.until("end").await),
        [bc, ("g2m", &json!([1, 2])), end]
    );

    // Client results across instances, each answer in its caller's format.
    let b_id = amy.id.clone();
    let ask = tokio::spawn(async move {
        let answer = bob
            .call("AskConnection", json!([b_id, "plusOne", 20]))
            .await;
        (bob, answer)
    });
    let (id, method, arg) = amy.ask().await;
    assert_eq!((method.as_str(), &arg), ("plusOne", &json!(20)));
    amy.answer(&id, &json!(21)).await;
    let (mut bob, answer) = ask.await.unwrap();
    assert_eq!(ok(answer), json!(21));
    let a_id = ann.id.clone();
    let ask = tokio::spawn(async move {
        let answer = ben.call("AskConnection", json!([a_id, "name", "?"])).await;
        (ben, answer)
    });
    let (id, _, _) = ann.ask().await;
    ann.answer(&id, &json!({"is": "alice"})).await;
    let (_d, answer) = ask.await.unwrap();
    assert_eq!(ok(answer), json!({"is": "alice"}));
    // One that does not exist anywhere: ASP.NET Core's words.
    match bob.call("AskConnection", json!(["nobody", "x", 1])).await {
        CompletionResult::Error(e) => assert_eq!(e, "Connection 'nobody' does not exist."),
        other => panic!("{other:?}"),
    }
    for s in [s0, s1, s2] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn a_client_result_whose_connection_ends_gets_an_error_and_an_instance_that_vanishes_a_timeout()
 {
    let Some(program) = redis_server() else {
        return;
    };
    let redis = Redis::start(&program, None).await;
    let hub = "Tests.ResultsHub";
    let short = |c: &mut ServerConfig| c.backplane_timeout = Duration::from_millis(1500);
    let s0 = instance(&redis, "s0", hub, short).await;
    let s1 = instance(&redis, "s1", hub, short).await;
    let mut caller = Peer::connect(&s0, "json", None).await;

    // The target connection ends before answering: its instance says so.
    let mut target = Peer::connect(&s1, "messagepack", None).await;
    let id = target.id.clone();
    let ask = tokio::spawn(async move {
        let r = caller.call("AskConnection", json!([id, "never", 0])).await;
        (caller, r)
    });
    target.ask().await;
    target.ws.invoke("abort", "AbortMe", &json!([])).await;
    let (mut caller, answer) = ask.await.unwrap();
    assert_eq!(
        answer,
        CompletionResult::Error("Connection disconnected.".into())
    );

    // The whole instance dies (SIGKILL: no Close, nothing forwarded): an error after the
    // backplane timeout, not a hang (ASP.NET Core would wait for the caller's cancellation).
    let mut child = Command::new(env!("CARGO_BIN_EXE_signalr-testserver"))
        .args(["--port", "0", "--redis", &redis.url(), "--hub-name", hub])
        .args(["--server-name", "doomed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let mut ws = WsClient::connect(&url, "json", 1).await;
    let HubMessage::Invocation(welcome) = ws.recv_non_ping().await.unwrap() else {
        panic!("no welcome")
    };
    let id = value(&welcome.arguments.to_payloads().unwrap()[0]);
    let ask = tokio::spawn(async move {
        let r = caller.call("AskConnection", json!([id, "never", 0])).await;
        (caller, r)
    });
    // The request reached the client; then its instance is killed.
    loop {
        if let HubMessage::Invocation(i) = ws.recv_non_ping().await.unwrap() {
            if i.target == "never" {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut caller, answer) = ask.await.unwrap();
    match answer {
        CompletionResult::Error(e) => assert!(e.contains("did not answer within 1500 ms"), "{e}"),
        other => panic!("{other:?}"),
    }

    // A group change nobody acknowledges fails after the timeout (ASP.NET Core: ~30 s).
    match caller.call("AddToGroup", json!(["nobody", "g"])).await {
        CompletionResult::Error(e) => assert!(e.contains("no server acknowledged"), "{e}"),
        other => panic!("{other:?}"),
    }
    s0.shutdown().await;
    s1.shutdown().await;
}

#[tokio::test]
async fn a_message_over_the_maximum_size_is_refused_before_it_is_published() {
    let Some(program) = redis_server() else {
        return;
    };
    let redis = Redis::start(&program, None).await;
    let hub = "Tests.SizeHub";
    let big = |c: &mut ServerConfig| c.max_message_size = 4096;
    let s0 = instance(&redis, "s0", hub, big).await;
    let s1 = instance(&redis, "s1", hub, big).await;
    let mut a = Peer::connect(&s0, "messagepack", None).await;
    let mut b = Peer::connect(&s1, "json", None).await;
    // 3,000 small integers: about 3 KB in MessagePack, within the limit coming in, but twice
    // that in JSON, which every published message also carries.
    let numbers: Vec<u8> = (0..3000).map(|i| u8::try_from(i % 100).unwrap()).collect();
    match a.call("Broadcast", json!(["big", numbers])).await {
        CompletionResult::Error(e) => {
            assert!(
                e.contains("over the maximum message size of 4096 bytes"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    ok(a.call("Broadcast", json!(["end", null])).await);
    assert_eq!(names(&b.until("end").await), [("end", &Value::Null)]);
    s0.shutdown().await;
    s1.shutdown().await;
}

#[tokio::test]
async fn redis_unreachable_at_start_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = ServerConfig::default();
    config.redis = Some(format!("redis://:hunter2@127.0.0.1:{port}"));
    let err = TestServer::start(config).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot connect to the Redis at redis://…@127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    // The binary: one line on stderr, status 1.
    let out = Command::new(env!("CARGO_BIN_EXE_signalr-testserver"))
        .args([
            "--port",
            "0",
            "--redis",
            &format!("redis://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot start: cannot connect to the Redis"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn instances_outlive_a_redis_restart_and_resubscribe() {
    let Some(program) = redis_server() else {
        return;
    };
    let mut redis = Redis::start(&program, None).await;
    let hub = "Tests.RestartHub";
    let s0 = instance(&redis, "s0", hub, |_| {}).await;
    let s1 = instance(&redis, "s1", hub, |_| {}).await;
    let mut a = Peer::connect(&s0, "json", None).await;
    let mut b = Peer::connect(&s1, "messagepack", None).await;
    ok(a.call("JoinGroup", json!(["g"])).await);
    ok(b.call("Broadcast", json!(["before", 1])).await);
    assert_eq!(names(&a.until("before").await), [("before", &json!(1))]);

    redis.kill();
    // What is sent while Redis is away is lost, and the sender is told (not silently).
    match b.call("Broadcast", json!(["during", 2])).await {
        CompletionResult::Error(e) => assert!(e.contains("unreachable"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Each instance still serves its own connections.
    assert_eq!(
        ok(a.call("Echo", json!(["still here"])).await),
        json!("still here")
    );

    let redis = Redis::start(&program, Some(redis.port)).await;
    // Wait until both instances have resubscribed (Redis counts them), the group too.
    let mut waited = 0;
    while redis.subscribers(&format!("{hub}:all")).await != Some(2)
        || redis.subscribers(&format!("{hub}:group:g")).await != Some(1)
    {
        waited += 1;
        assert!(waited < 200, "the instances never resubscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Traffic resumes; nothing from the outage arrives late. (The publisher reconnects on
    // the next send.)
    ok(b.call("SendToGroup", json!(["g", "after", 3])).await);
    ok(b.call("Broadcast", json!(["end", null])).await);
    assert_eq!(
        names(&a.until("end").await),
        [("after", &json!(3)), ("end", &Value::Null)]
    );
    s0.shutdown().await;
    s1.shutdown().await;
}
