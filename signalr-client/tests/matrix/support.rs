//! What the cases share: pairs, builders, a scripted server peer, an event recorder.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use signalr_client::{
    HubConnection, HubConnectionBuilder, HubError, Subscription,
    protocol::{
        Arguments, HandshakeRequest, HandshakeResponse, HubMessage, HubProtocol, Invocation,
        JsonHubProtocol, MessageDecoder, MessagePackHubProtocol, PayloadFormat, TransportKind,
    },
    reconnect::FixedDelays,
    transport::HttpOptions,
};
use signalr_testserver::{
    ServerConfig, TestServer,
    script::{Script, ScriptedConnection},
};

/// How long a step inside a case may wait.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Logs to stderr when `RUST_LOG` is set.
pub(crate) fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A transport and a hub protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pair {
    pub(crate) transport: TransportKind,
    pub(crate) messagepack: bool,
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = if self.messagepack {
            "messagepack"
        } else {
            "json"
        };
        write!(f, "{}/{protocol}", self.transport.as_str())
    }
}

const fn pair(transport: TransportKind, messagepack: bool) -> Pair {
    Pair {
        transport,
        messagepack,
    }
}

const WS_JSON: Pair = pair(TransportKind::WebSockets, false);
const WS_MSGPACK: Pair = pair(TransportKind::WebSockets, true);
const SSE_JSON: Pair = pair(TransportKind::ServerSentEvents, false);
const LP_JSON: Pair = pair(TransportKind::LongPolling, false);
const LP_MSGPACK: Pair = pair(TransportKind::LongPolling, true);

/// Every pair SignalR has (SSE carries text only).
pub(crate) const ALL: &[Pair] = &[WS_JSON, WS_MSGPACK, SSE_JSON, LP_JSON, LP_MSGPACK];
/// The pairs with a server timeout and pings (long polling's poll cycle is its keep-alive).
pub(crate) const STREAMING: &[Pair] = &[WS_JSON, WS_MSGPACK, SSE_JSON];
/// WebSockets only: stateful reconnect, upgrades.
pub(crate) const WEBSOCKETS: &[Pair] = &[WS_JSON, WS_MSGPACK];
/// MessagePack only.
pub(crate) const BINARY: &[Pair] = &[WS_MSGPACK, LP_MSGPACK];
/// JSON only.
pub(crate) const TEXT: &[Pair] = &[WS_JSON, SSE_JSON, LP_JSON];
/// Cases about negotiate or HTTP, where the pair does not matter: run once.
pub(crate) const ONCE: &[Pair] = &[WS_JSON];

impl Pair {
    pub(crate) fn protocol(self) -> Arc<dyn HubProtocol> {
        if self.messagepack {
            Arc::new(MessagePackHubProtocol::new())
        } else {
            Arc::new(JsonHubProtocol::new())
        }
    }

    pub(crate) fn format(self) -> PayloadFormat {
        self.protocol().payload_format()
    }

    /// A builder for `url` on this pair only.
    pub(crate) fn builder(self, url: &str) -> HubConnectionBuilder {
        let b = HubConnectionBuilder::new(url).with_transports([self.transport]);
        if self.messagepack {
            b.with_messagepack()
        } else {
            b
        }
    }

    /// Arguments in this pair's encoding.
    pub(crate) fn args<T: serde::Serialize + ?Sized>(self, values: &T) -> Arguments {
        Arguments::from_values(self.format(), values).unwrap()
    }

    /// One message, framed in this pair's protocol.
    pub(crate) fn encode(self, message: &HubMessage) -> Bytes {
        let mut out = BytesMut::new();
        self.protocol().encode(message, &mut out).unwrap();
        out.freeze()
    }
}

/// Retries at once, then every 50 ms, ten times.
pub(crate) fn quick_retries() -> FixedDelays {
    FixedDelays::from_millis(&[0, 50, 50, 50, 50, 50, 50, 50, 50, 50])
}

/// HTTP options with short timeouts, so that silent servers fail fast.
pub(crate) fn short_timeouts(pair: Pair) -> HttpOptions {
    HttpOptions::default()
        .transports([pair.transport])
        .request_timeout(Duration::from_millis(800))
        .connect_timeout(Duration::from_millis(800))
}

/// The contract hub with `configure` applied.
pub(crate) async fn server(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = ServerConfig::default();
    configure(&mut config);
    TestServer::start(config).await.unwrap()
}

/// A scripted server: the test plays the hub.
pub(crate) async fn scripted(configure: impl FnOnce(&mut ServerConfig)) -> (TestServer, Script) {
    let mut config = ServerConfig::default();
    configure(&mut config);
    TestServer::start_scripted(config).await.unwrap()
}

/// The server side of one scripted connection, in the pair's protocol.
pub(crate) struct Peer {
    pub(crate) conn: ScriptedConnection,
    pub(crate) pair: Pair,
    decoder: MessageDecoder<Arc<dyn HubProtocol>>,
}

impl Peer {
    /// Accepts the next connection and reads the client's handshake request.
    pub(crate) async fn accept(script: &mut Script, pair: Pair) -> Self {
        let mut conn = tokio::time::timeout(WAIT, script.accept())
            .await
            .expect("no connection came")
            .expect("the server is gone");
        let mut buf = BytesMut::new();
        let request = loop {
            if let Some(request) = HandshakeRequest::decode(&mut buf, 1 << 16).unwrap() {
                break request;
            }
            let bytes = tokio::time::timeout(WAIT, conn.recv())
                .await
                .expect("no handshake request")
                .expect("closed before the handshake");
            buf.extend_from_slice(&bytes);
        };
        let protocol = pair.protocol();
        assert_eq!(request.protocol, protocol.name());
        Self {
            conn,
            pair,
            decoder: MessageDecoder::with_buffer(protocol, buf),
        }
    }

    /// Accepts and completes the handshake.
    pub(crate) async fn connected(script: &mut Script, pair: Pair) -> Self {
        let peer = Self::accept(script, pair).await;
        peer.handshake().await;
        peer
    }

    pub(crate) async fn handshake(&self) {
        let mut out = BytesMut::new();
        HandshakeResponse::ok().encode(&mut out);
        self.raw(out.freeze()).await;
    }

    /// Sends bytes unchanged, in a binary WebSocket message for MessagePack.
    pub(crate) async fn raw(&self, bytes: impl Into<Bytes>) {
        let _ = self.conn.send(bytes, self.pair.messagepack).await;
    }

    pub(crate) async fn send(&self, message: &HubMessage) {
        self.raw(self.pair.encode(message)).await;
    }

    /// The next message the client sent other than a Ping; `None` when it closed.
    pub(crate) async fn recv(&mut self) -> Option<HubMessage> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(HubMessage::Ping)) => continue,
                Ok(Some(m)) => return Some(m),
                Ok(None) => {}
                Err(e) => panic!("the client sent a bad message: {e}"),
            }
            let bytes = tokio::time::timeout(WAIT, self.conn.recv())
                .await
                .expect("the client sent nothing")?;
            self.decoder.push(&bytes);
        }
    }

    /// Every message the client sent, Pings included, until it closed or `within` passed.
    pub(crate) async fn drain(&mut self, within: Duration) -> Vec<HubMessage> {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(within, async {
            loop {
                while let Ok(Some(m)) = self.decoder.next_message() {
                    out.push(m);
                }
                match self.conn.recv().await {
                    Some(bytes) => self.decoder.push(&bytes),
                    None => return,
                }
            }
        })
        .await;
        out
    }

    /// The invocation id of the next call the client makes.
    pub(crate) async fn next_call(&mut self) -> String {
        match self.recv().await {
            Some(HubMessage::Invocation(i)) => i.invocation_id.expect("a blocking call"),
            Some(HubMessage::StreamInvocation(s)) => s.invocation_id,
            other => panic!("expected a call, got {other:?}"),
        }
    }
}

/// Records connection events in order.
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    pub(crate) fn attach(conn: &HubConnection) -> Self {
        let events = Self::default();
        let e = events.clone();
        conn.on_reconnecting(move |err| e.push("reconnecting", err));
        let e = events.clone();
        conn.on_reconnected(move |id| {
            e.0.lock()
                .unwrap()
                .push(format!("reconnected: {}", id.unwrap_or("-")));
        });
        let e = events.clone();
        conn.on_close(move |err| e.push("closed", err));
        events
    }

    fn push(&self, what: &str, err: Option<&HubError>) {
        let text = err.map(|e| format!("{e:#}")).unwrap_or_default();
        let chain = err.map(|e| error_chain(e)).unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .push(format!("{what}: {text}{chain}"));
    }

    pub(crate) fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.list().iter().filter(|e| e.starts_with(prefix)).count()
    }

    /// Waits until an event starting with `prefix` was recorded; returns it.
    pub(crate) async fn wait_for(&self, prefix: &str) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(e) = self.list().into_iter().find(|e| e.starts_with(prefix)) {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {prefix:?} event; got {:?}", self.list()))
    }
}

/// The sources of an error, as ` <- a <- b`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(" <- ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `e` and its sources in one line.
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    format!("{e}{}", error_chain(e))
}

/// Waits for `f` with the step deadline.
pub(crate) async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("a step took too long")
}

/// A scripted server, a client built by `build` on `pair`, started, and the server's side of
/// its connection with the handshake done.
pub(crate) async fn connected(
    pair: Pair,
    build: impl FnOnce(HubConnectionBuilder) -> HubConnectionBuilder,
) -> (TestServer, Script, HubConnection, Peer) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = build(pair.builder(server.url())).build().unwrap();
    let start = spawn_start(&conn);
    let peer = Peer::connected(&mut script, pair).await;
    within(start).await.unwrap().unwrap();
    (server, script, conn, peer)
}

/// Records the arguments of every `target(i32)` call the server makes.
pub(crate) fn record(conn: &HubConnection, target: &str) -> (Subscription, Arc<Mutex<Vec<i32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let sub = conn.on(target, move |n: i32| {
        let s = Arc::clone(&s);
        async move { s.lock().unwrap().push(n) }
    });
    (sub, seen)
}

/// Waits until `seen` holds `n` values.
pub(crate) async fn wait_len(seen: &Mutex<Vec<i32>>, n: usize) {
    within(async {
        while seen.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// A fire-and-forget `target(n)` call from the server.
pub(crate) fn call(pair: Pair, target: &str, n: i32) -> HubMessage {
    HubMessage::Invocation(Invocation::non_blocking(target, pair.args(&(n,))))
}

/// A raw HTTP server that answers every request with `respond(n, request_head)` (n counts from
/// 0) and closes; returns its base URL (`http://127.0.0.1:PORT/hub`) and the request heads seen.
pub(crate) async fn canned(
    respond: impl Fn(usize, &str) -> String + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hub", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::clone(&seen);
    let respond = Arc::new(respond);
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let requests = Arc::clone(&requests);
            let respond = Arc::clone(&respond);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let n = {
                    let mut seen = requests.lock().unwrap();
                    seen.push(head.clone());
                    seen.len() - 1
                };
                let body = respond(n, &head);
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, seen, task)
}

/// An HTTP response with a JSON body.
pub(crate) fn json_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `body` as one MessagePack frame: its VarInt length, then the bytes (the protocol crate's
/// framing, so that only the body is hand-made).
pub(crate) fn binary_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 5);
    signalr_client::protocol::framing::write_varint(u32::try_from(body.len()).unwrap(), &mut frame)
        .unwrap();
    frame.extend_from_slice(body);
    frame
}

/// Starts `conn` on a task of its own, so that the test can play the server meanwhile.
pub(crate) fn spawn_start(
    conn: &HubConnection,
) -> tokio::task::JoinHandle<signalr_client::Result<()>> {
    let conn = conn.clone();
    tokio::spawn(async move { conn.start().await })
}
