//! Raw protocol clients for the server tests: plain HTTP and WebSocket plus `signalr-protocol`,
//! so that the server is checked without our own client in the loop.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use signalr_protocol::{
    Arguments, HandshakeRequest, HandshakeResponse, HubMessage, HubProtocol, Invocation,
    JsonHubProtocol, MessageDecoder, MessagePackHubProtocol, NegotiateResponse,
    NegotiatedConnection, Payload, StreamInvocation,
};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn protocol(name: &str) -> Arc<dyn HubProtocol> {
    match name {
        "json" => Arc::new(JsonHubProtocol::new()),
        _ => Arc::new(MessagePackHubProtocol::new()),
    }
}

pub(crate) async fn negotiate(url: &str, query: &str) -> NegotiatedConnection {
    let body = reqwest::Client::new()
        .post(format!("{url}/negotiate?{query}"))
        .send()
        .await
        .expect("negotiate request")
        .bytes()
        .await
        .expect("negotiate body");
    match NegotiateResponse::parse(&body).expect("negotiate response parses") {
        NegotiateResponse::Connection(c) => c,
        other => panic!("unexpected negotiate response {other:?}"),
    }
}

pub(crate) fn ws_url(url: &str) -> String {
    url.replacen("http://", "ws://", 1)
}

/// A WebSocket hub client speaking the raw protocol.
pub(crate) struct WsClient {
    pub(crate) ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub(crate) protocol: Arc<dyn HubProtocol>,
    pub(crate) decoder: MessageDecoder<Arc<dyn HubProtocol>>,
    /// Whether the last frame received was binary.
    pub(crate) last_binary: bool,
}

impl WsClient {
    /// Connects to `url` (an `http://` hub URL plus query) and completes the handshake.
    pub(crate) async fn connect(url: &str, protocol_name: &str, version: u32) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(url))
            .await
            .expect("websocket connects");
        let mut client = Self::attach(ws, protocol_name);
        let mut hs = BytesMut::new();
        HandshakeRequest::new(protocol_name, version).encode(&mut hs);
        client
            .ws
            .send(Message::text(
                String::from_utf8(hs.to_vec()).expect("utf-8"),
            ))
            .await
            .expect("handshake sent");
        let response = client.handshake_response().await;
        assert_eq!(response, HandshakeResponse::ok());
        client
    }

    pub(crate) fn attach(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        protocol_name: &str,
    ) -> Self {
        let protocol = protocol(protocol_name);
        Self {
            ws,
            decoder: MessageDecoder::new(Arc::clone(&protocol)),
            protocol,
            last_binary: false,
        }
    }

    pub(crate) async fn handshake_response(&mut self) -> HandshakeResponse {
        let mut buf = BytesMut::new();
        loop {
            if let Some(r) =
                HandshakeResponse::decode(&mut buf, 1 << 16).expect("handshake response parses")
            {
                self.decoder = MessageDecoder::with_buffer(Arc::clone(&self.protocol), buf);
                return r;
            }
            match self.frame().await {
                Some(bytes) => buf.extend_from_slice(&bytes),
                None => panic!("socket closed before the handshake response"),
            }
        }
    }

    /// The next frame's bytes, or `None` when the socket closed.
    pub(crate) async fn frame(&mut self) -> Option<Vec<u8>> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
            {
                Some(Ok(Message::Text(t))) => {
                    self.last_binary = false;
                    return Some(t.as_bytes().to_vec());
                }
                Some(Ok(Message::Binary(b))) => {
                    self.last_binary = true;
                    return Some(b.to_vec());
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next hub message, or `None` when the socket closed.
    pub(crate) async fn recv(&mut self) -> Option<HubMessage> {
        loop {
            if let Some(m) = self.decoder.next_message().expect("server messages decode") {
                return Some(m);
            }
            let bytes = self.frame().await?;
            self.decoder.push(&bytes);
        }
    }

    /// The next message that is not a Ping.
    pub(crate) async fn recv_non_ping(&mut self) -> Option<HubMessage> {
        loop {
            match self.recv().await? {
                HubMessage::Ping => {}
                m => return Some(m),
            }
        }
    }

    pub(crate) async fn send(&mut self, message: &HubMessage) {
        let mut buf = BytesMut::new();
        self.protocol.encode(message, &mut buf).expect("encodes");
        let frame = if self.protocol.name() == "json" {
            Message::text(String::from_utf8(buf.to_vec()).expect("utf-8"))
        } else {
            Message::binary(buf.freeze())
        };
        self.ws.send(frame).await.expect("sent");
    }

    pub(crate) fn args(&self, values: &Value) -> Arguments {
        Arguments::from_values(self.protocol.payload_format(), values).expect("arguments")
    }

    pub(crate) async fn invoke(&mut self, id: &str, target: &str, args: &Value) {
        let message = HubMessage::Invocation(Invocation::new(id, target, self.args(args)));
        self.send(&message).await;
    }

    pub(crate) async fn stream(&mut self, id: &str, target: &str, args: &Value) {
        let message =
            HubMessage::StreamInvocation(StreamInvocation::new(id, target, self.args(args)));
        self.send(&message).await;
    }

    /// Invokes and waits for the completion, skipping other messages (welcome, pings).
    pub(crate) async fn call(
        &mut self,
        id: &str,
        target: &str,
        args: &Value,
    ) -> signalr_protocol::CompletionResult {
        self.invoke(id, target, args).await;
        loop {
            match self.recv().await.expect("connection open") {
                HubMessage::Completion(c) if c.invocation_id == id => return c.result,
                _ => {}
            }
        }
    }
}

pub(crate) fn value(p: &Payload) -> Value {
    p.deserialize().expect("payload converts to JSON")
}

/// The JSON value of a successful completion.
pub(crate) fn ok(result: signalr_protocol::CompletionResult) -> Value {
    match result {
        signalr_protocol::CompletionResult::Value(p) => value(&p),
        signalr_protocol::CompletionResult::Void => Value::Null,
        signalr_protocol::CompletionResult::Error(e) => panic!("hub error: {e}"),
    }
}
