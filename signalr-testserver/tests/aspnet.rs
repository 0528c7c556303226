//! Where the test server must answer exactly as ASP.NET Core does, because real clients depend
//! on it (issue #19): each case cites the ASP.NET Core source it follows. dotnet/aspnetcore at
//! these commits: `HttpConnectionDispatcher.cs` 0296a234, `HubConnectionHandler.cs` bf884ebc,
//! `MessagePackHubProtocolWorker.cs` 2df466fc, `DefaultHubDispatcher.cs` 00b551ec.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::BytesMut;
use futures_util::SinkExt as _;
use signalr_protocol::{HandshakeRequest, HandshakeResponse, HubMessage};
use signalr_testserver::{ServerConfig, TestServer};
use support::{WsClient, negotiate};
use tokio_tungstenite::tungstenite::Message;

async fn server(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = ServerConfig::default();
    configure(&mut config);
    TestServer::start(config).await.unwrap()
}

/// `ProcessSend` refuses a POST only on a WebSocket connection (405) or a disposed one (404):
/// a long-polling client may POST its handshake before its first poll (aiosignalr does), and
/// the bytes wait for the transport.
#[tokio::test]
async fn a_post_before_the_first_poll_is_accepted_and_kept() {
    let s = server(|_| {}).await;
    let http = reqwest::Client::new();
    let c = negotiate(s.url(), "negotiateVersion=1").await;
    let url = format!("{}?id={}", s.url(), c.token());
    let mut hello = BytesMut::new();
    HandshakeRequest::new("json", 1).encode(&mut hello);
    let posted = http.post(&url).body(hello.to_vec()).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    // The first poll is still answered at once and empty; the handshake answer follows.
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), first.bytes().await.unwrap().len()),
        (200, 0)
    );
    let mut buf = BytesMut::from(&http.get(&url).send().await.unwrap().bytes().await.unwrap()[..]);
    assert_eq!(
        HandshakeResponse::decode(&mut buf, 1024).unwrap(),
        Some(HandshakeResponse::ok())
    );
}

/// A MessagePack frame whose body ASP.NET Core's reader throws on: the connection is closed
/// with `CloseMessage("Connection closed with an error.")`, the reason only with detailed
/// errors (`ErrorMessageHelper.BuildErrorMessage`, `HubConnectionHandler.SendCloseAsync`).
async fn close_error_for(body: &[u8], detailed: bool) -> Option<String> {
    let s = server(|c| c.detailed_errors = detailed).await;
    let mut ws = WsClient::connect(s.url(), "messagepack", 1).await;
    let _welcome = ws.recv_non_ping().await;
    let mut frame = vec![u8::try_from(body.len()).unwrap()];
    frame.extend_from_slice(body);
    ws.ws.send(Message::binary(frame)).await.unwrap();
    loop {
        if let HubMessage::Close(close) = ws.recv().await? {
            return close.error;
        }
    }
}

/// What ASP.NET Core's `MessagePackHubProtocolWorker` reads from an Invocation frame: `[1,
/// headers, invocationId, target, arguments, streamIds?]`. signalrcore 1.0.2 sends an upload
/// (`send("Sum", [], …, on_invocation=…)` with a `Subject`) as `[1, {}, "Sum", [], [id]]`, the
/// invocation id left out: "Sum" lands in the id slot and `ReadString(ref reader, "target")`
/// meets the empty array (0x90) and throws. Bytes as signalrcore sent them (interop/README.md).
#[tokio::test]
async fn signalrcore_upload_invocation_is_refused_as_aspnet_refuses_it() {
    let mut sum = vec![
        0x95, 0x01, 0x80, 0xa3, b'S', b'u', b'm', 0x90, 0x91, 0xd9, 0x24,
    ];
    sum.extend_from_slice(b"5cf815db-9195-441b-959e-493049abd232");
    assert_eq!(
        close_error_for(&sum, false).await.as_deref(),
        Some("Connection closed with an error.")
    );
    let detailed = close_error_for(&sum, true).await.unwrap();
    assert!(detailed.contains("target"), "{detailed}");
}

/// `ReadHeaders` starts with `ReadMapLength(ref reader, "headers")`, which throws on anything
/// but a map. aiosignalr 0.1.1 writes the headers of `CancelInvocation`, `StreamItem` and
/// `Completion` as the integer 128 (`cc 80`, the empty map's marker packed as a number); its
/// `Invocation` and `StreamInvocation` carry a real empty map. Bytes as aiosignalr sent them.
#[tokio::test]
async fn aiosignalr_headers_written_as_an_integer_are_refused_as_aspnet_refuses_them() {
    let frames: [(&[u8], &str); 3] = [
        (
            &[0x93, 0x05, 0xcc, 0x80, 0xa2, b'1', b'1'],
            "CancelInvocation",
        ),
        (&[0x94, 0x02, 0xcc, 0x80, 0xa1, b'1', 0x02], "StreamItem"),
        (
            &[0x95, 0x03, 0xcc, 0x80, 0xa2, b's', b'1', 0x03, 0x2a],
            "Completion",
        ),
    ];
    for (frame, kind) in frames {
        assert_eq!(
            close_error_for(frame, false).await.as_deref(),
            Some("Connection closed with an error."),
            "{kind}"
        );
        let detailed = close_error_for(frame, true).await.unwrap();
        assert!(
            detailed.contains(kind) && detailed.contains("headers"),
            "{detailed}"
        );
    }
}

/// When the application has ended, the poll that reads the end gets 204, and ASP.NET Core
/// then disposes and removes the connection (`HttpConnectionDispatcher.ExecuteAsync`): the
/// next poll and a DELETE get 404. aiosignalr polls again after a 204 and reconnects on 404;
/// a server that answered 204 forever left it polling a dead connection.
#[tokio::test]
async fn after_the_end_one_poll_reads_204_and_the_next_404() {
    let s = server(|_| {}).await;
    let http = reqwest::Client::new();
    let c = negotiate(s.url(), "negotiateVersion=1").await;
    let url = format!("{}?id={}", s.url(), c.token());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let mut hello = BytesMut::new();
    HandshakeRequest::new("json", 1).encode(&mut hello);
    assert_eq!(
        http.post(&url)
            .body(hello.to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The handshake answer and the welcome.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let abort = b"{\"type\":1,\"target\":\"AbortMe\",\"arguments\":[]}\x1e".to_vec();
    assert_eq!(
        http.post(&url).body(abort).send().await.unwrap().status(),
        200
    );
    assert_eq!(http.get(&url).send().await.unwrap().status(), 204);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_malformed_message_closes_with_aspnet_words() {
    // [5, 7]: a CancelInvocation without its headers map (ReadMapLength throws).
    let cancel_without_headers = [0x92, 0x05, 0x07];
    assert_eq!(
        close_error_for(&cancel_without_headers, false)
            .await
            .as_deref(),
        Some("Connection closed with an error.")
    );
    let detailed = close_error_for(&cancel_without_headers, true)
        .await
        .unwrap();
    // The reason in this server's words (ASP.NET Core's reader fails on the headers first).
    assert!(
        detailed.starts_with("Connection closed with an error. InvalidDataException: ")
            && detailed.contains("CancelInvocation"),
        "{detailed}"
    );
}

/// `GetInvocationHeaders` answers the `headers` the invocation carried, here trace context as
/// the .NET client writes it. The frames are the official JS encoders' bytes for
/// `{type: 1, invocationId: "1", target: "GetInvocationHeaders", arguments: [], streamIds: [],
/// headers: {traceparent, tracestate}}` (`@microsoft/signalr` and
/// `@microsoft/signalr-protocol-msgpack` 10.0.11); `signalr-protocol` encodes the MessagePack
/// one to the same bytes.
#[tokio::test]
async fn invocation_headers_arrive_as_sent_in_both_protocols() {
    use signalr_protocol::{
        Arguments, HubProtocol, Invocation, MessagePackHubProtocol, PayloadFormat,
    };
    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let json = format!(
        "{{\"type\":1,\"invocationId\":\"1\",\"target\":\"GetInvocationHeaders\",\"arguments\":[],\"streamIds\":[],\"headers\":{{\"traceparent\":\"{TRACEPARENT}\",\"tracestate\":\"congo=t61rcWkgMzE\"}}}}\u{1e}"
    );
    let msgpack_hex = "7e960182ab7472616365706172656e74d93730302d30616637363531393136636434336464383434386562323131633830333139632d623761643662373136393230333333312d3031aa74726163657374617465b1636f6e676f3d7436317263576b674d7a45a131b4476574496e766f636174696f6e486561646572739090";
    let msgpack: Vec<u8> = (0..msgpack_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&msgpack_hex[i..i + 2], 16).unwrap())
        .collect();
    let headers = signalr_protocol::Headers::from([
        ("traceparent".to_owned(), TRACEPARENT.to_owned()),
        ("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned()),
    ]);
    let ours = Invocation::new(
        "1",
        "GetInvocationHeaders",
        Arguments::from_values(PayloadFormat::MessagePack, &()).unwrap(),
    )
    .with_headers(headers.clone());
    let mut encoded = BytesMut::new();
    MessagePackHubProtocol::new()
        .encode(&HubMessage::Invocation(ours), &mut encoded)
        .unwrap();
    assert_eq!(encoded.as_ref(), msgpack.as_slice());

    let s = server(|_| {}).await;
    for (protocol, frame) in [
        ("json", Message::text(json)),
        ("messagepack", Message::binary(msgpack)),
    ] {
        let mut ws = WsClient::connect(s.url(), protocol, 1).await;
        ws.ws.send(frame).await.unwrap();
        let answer = loop {
            if let HubMessage::Completion(c) = ws.recv_non_ping().await.unwrap() {
                break c;
            }
        };
        let signalr_protocol::CompletionResult::Value(map) = answer.result else {
            panic!("{protocol}: {answer:?}")
        };
        let got: signalr_protocol::Headers = map.deserialize().unwrap();
        assert_eq!(got, headers, "{protocol}");
        // Without headers: an empty map.
        ws.invoke("2", "GetInvocationHeaders", &serde_json::json!([]))
            .await;
        let empty = loop {
            if let HubMessage::Completion(c) = ws.recv_non_ping().await.unwrap() {
                break c;
            }
        };
        let signalr_protocol::CompletionResult::Value(map) = empty.result else {
            panic!("{protocol}")
        };
        assert!(
            map.deserialize::<signalr_protocol::Headers>()
                .unwrap()
                .is_empty()
        );
    }
}
