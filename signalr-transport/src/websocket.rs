//! The WebSockets transport (tokio-tungstenite, the version axum uses).

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{
    SinkExt as _, StreamExt as _,
    stream::{SplitSink, SplitStream},
};
use reqwest::{
    Url,
    header::{AUTHORIZATION, HeaderMap},
};
use signalr_protocol::{TransferFormat, TransportKind};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message, Utf8Bytes,
        handshake::{client::generate_key, derive_accept_key},
        protocol::{CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode},
    },
};
use tracing::debug;

use crate::{
    Transport,
    auth::bearer,
    error::{Result, TransportError},
    head::read_head,
    net::Net,
    options::HttpOptions,
    redact::{Redacted, redact},
    tls::{Stream, connect_tls},
};

type Socket = WebSocketStream<Stream>;

/// A connected WebSocket.
#[derive(Debug)]
pub struct WebSocketTransport {
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    format: TransferFormat,
    max_message_size: usize,
    closed: bool,
}

/// The `ws`/`wss` form of an `http`/`https` URL.
pub(crate) fn ws_url(url: &Url) -> Result<Url> {
    let mut ws = url.clone();
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(TransportError::InvalidUrl {
                url: redact(url.as_str()),
                reason: format!("unsupported scheme {other:?}"),
            });
        }
    };
    ws.set_scheme(scheme)
        .map_err(|()| TransportError::InvalidUrl {
            url: redact(url.as_str()),
            reason: "cannot change the scheme".into(),
        })?;
    Ok(ws)
}

impl WebSocketTransport {
    /// Opens a WebSocket to `url` (an `http(s)` or `ws(s)` hub URL, with `id` when negotiated),
    /// sending `token` as a bearer header (and, if the options say so, as `access_token`).
    pub(crate) async fn connect(
        net: &Net,
        url: &Url,
        token: Option<&str>,
        headers: &HeaderMap,
        format: TransferFormat,
        options: &HttpOptions,
    ) -> Result<Self> {
        let mut url = ws_url(url)?;
        if let (Some(token), true) = (token, options.access_token_in_query) {
            url.query_pairs_mut().append_pair("access_token", token);
        }
        debug!(url = %Redacted(url.as_str()), "opening WebSocket");
        let w = &options.websocket;
        let mut config = WebSocketConfig::default();
        config.read_buffer_size = w.read_buffer_size;
        config.write_buffer_size = w.write_buffer_size;
        config.max_write_buffer_size = w.max_write_buffer_size.max(w.write_buffer_size + 1);
        // Several hub messages may share one WebSocket message; leave room for framing.
        config.max_message_size = Some(options.max_message_size.saturating_mul(2));
        config.max_frame_size = Some(options.max_message_size.saturating_mul(2));
        let socket = tokio::time::timeout(
            options.connect_timeout,
            upgrade(net, &url, headers, token, config),
        )
        .await
        .map_err(|_| TransportError::Timeout {
            what: "WebSocket connect",
            after: options.connect_timeout,
        })??;
        let (sink, stream) = socket.split();
        Ok(Self {
            sink,
            stream,
            format,
            max_message_size: options.max_message_size,
            closed: false,
        })
    }
}

/// Headers of the upgrade response we accept before giving up.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The bytes to the hub: a TCP connection to it, or a tunnel through the proxy `route` names
/// (TLS to the proxy itself for an `https` proxy); then TLS to the hub for `wss`.
async fn open_stream(net: &Net, url: &Url, host: &str, port: u16) -> Result<Stream> {
    let route = net.proxies().route(url)?;
    let (first_host, first_port) = match &route {
        Some(r) => {
            debug!(proxy = %r.name, "WebSocket through a CONNECT tunnel");
            (
                r.proxy.host_str().unwrap_or_default(),
                r.proxy.port_or_known_default().unwrap_or(80),
            )
        }
        None => (host, port),
    };
    // A failure on the way to the proxy is the proxy's.
    let blame = |e: TransportError| match &route {
        Some(r) => r.blame(e),
        None => e,
    };
    let io = |e: std::io::Error| blame(TransportError::WebSocket(e.into()));
    let tcp = TcpStream::connect((first_host, first_port))
        .await
        .map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    let mut stream = Stream::Plain(tcp);
    if let Some(route) = &route {
        if route.proxy.scheme() == "https" {
            stream = connect_tls(stream, first_host, net.tls())
                .await
                .map_err(blame)?;
        }
        crate::proxy::tunnel(&mut stream, host, port, route).await?;
    }
    if url.scheme() == "wss" {
        stream = connect_tls(stream, host, net.tls()).await?;
    }
    Ok(stream)
}

/// Performs the HTTP/1.1 upgrade ourselves and hands the socket to tungstenite afterwards.
///
/// tungstenite's own client handshake logs the raw request at `trace` level (through the `log`
/// crate), `Authorization` header and `access_token` included; doing the upgrade here keeps
/// tokens out of every log, whatever the user's log filter. It also lets the upgrade carry the
/// connection's cookies and go through the connection's proxy.
async fn upgrade(
    net: &Net,
    url: &Url,
    headers: &HeaderMap,
    token: Option<&str>,
    config: WebSocketConfig,
) -> Result<Socket> {
    let invalid = |reason: &str| TransportError::InvalidUrl {
        url: redact(url.as_str()),
        reason: reason.into(),
    };
    let host = url.host_str().ok_or_else(|| invalid("no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = open_stream(net, url, host, port).await?;
    let key = generate_key();
    let mut headers = headers.clone();
    if let Some(jar) = net.cookies() {
        jar.attach(url, &mut headers);
    }
    stream
        .write_all(&request_head(url, host, &key, &headers, token)?)
        .await
        .map_err(|e| TransportError::WebSocket(e.into()))?;
    let head = read_head(&mut stream, MAX_RESPONSE_HEAD, "WebSocket upgrade").await?;
    if let Some(jar) = net.cookies() {
        jar.store_from(url, &head.headers);
    }
    if head.status != 101 {
        return Err(TransportError::Status {
            what: "WebSocket upgrade",
            status: head.status,
        });
    }
    let accept = head
        .headers
        .get("sec-websocket-accept")
        .map(http::HeaderValue::as_bytes);
    if accept != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return Err(TransportError::WebSocket(
            "the server's Sec-WebSocket-Accept does not match".into(),
        ));
    }
    Ok(
        WebSocketStream::from_partially_read(
            stream,
            head.rest.to_vec(),
            Role::Client,
            Some(config),
        )
        .await,
    )
}

/// The upgrade request: request line, the WebSocket headers, the user's headers, the token.
fn request_head(
    url: &Url,
    host: &str,
    key: &str,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<Vec<u8>> {
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut head = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    )
    .into_bytes();
    let token = token.map(bearer).transpose()?;
    for (name, value) in headers
        .iter()
        .chain(token.as_ref().map(|t| (&AUTHORIZATION, t)))
    {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

/// A read failure as the official clients report it: a connection that ends without a close
/// frame is close code 1006.
fn read_error(e: tokio_tungstenite::tungstenite::Error, max_message_size: usize) -> TransportError {
    use tokio_tungstenite::tungstenite::{Error as E, error::ProtocolError as P};
    match e {
        E::Capacity(_) => TransportError::MessageTooLarge {
            max: max_message_size,
        },
        E::ConnectionClosed | E::AlreadyClosed | E::Protocol(P::ResetWithoutClosingHandshake) => {
            TransportError::WebSocketClosed {
                code: 1006,
                reason: String::new(),
            }
        }
        E::Io(io) => TransportError::WebSocketClosed {
            code: 1006,
            reason: io.to_string(),
        },
        other => TransportError::WebSocket(other.into()),
    }
}

#[async_trait]
impl Transport for WebSocketTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::WebSockets
    }

    fn transfer_format(&self) -> TransferFormat {
        self.format
    }

    async fn send(&mut self, data: Bytes) -> Result<()> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        let message = match self.format {
            TransferFormat::Binary => Message::Binary(data),
            _ => Message::Text(
                Utf8Bytes::try_from(data).map_err(|e| TransportError::WebSocket(e.into()))?,
            ),
        };
        self.sink
            .send(message)
            .await
            .map_err(|e| TransportError::WebSocket(e.into()))
    }

    async fn recv(&mut self) -> Option<Result<Bytes>> {
        if self.closed {
            return None;
        }
        loop {
            let next = self.stream.next().await;
            match next {
                Some(Ok(Message::Text(text))) => return Some(Ok(Bytes::from(text))),
                Some(Ok(Message::Binary(bytes))) => return Some(Ok(bytes)),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    self.closed = true;
                    return match frame {
                        None => None,
                        Some(f) if f.code == CloseCode::Normal => None,
                        Some(f) => Some(Err(TransportError::WebSocketClosed {
                            code: f.code.into(),
                            reason: f.reason.to_string(),
                        })),
                    };
                }
                Some(Err(e)) => {
                    self.closed = true;
                    return Some(Err(read_error(e, self.max_message_size)));
                }
                None => {
                    // The TCP connection ended without a close frame: 1006.
                    self.closed = true;
                    return Some(Err(TransportError::WebSocketClosed {
                        code: 1006,
                        reason: String::new(),
                    }));
                }
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::default(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
        let _ = self.sink.close().await;
        Ok(())
    }
}
