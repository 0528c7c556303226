//! Rows the test server must refuse that need more than one client: an over-long invocation
//! id (S.3), a stateful resume by another user (S.4) and a storm of resumes (S.6). The other
//! refusal rows are in `lifecycle.rs`.

use std::collections::HashMap;

use futures_util::{SinkExt as _, StreamExt as _, future::join_all};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, client::IntoClientRequest as _};

use crate::{
    Case,
    support::{ONCE, Pair, server, within},
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("S.3", the_server_refuses_an_overlong_invocation_id, ONCE),
        case!("S.4", the_server_refuses_a_resume_by_another_user, ONCE),
        case!("S.6", the_server_refuses_a_storm_of_resumes, ONCE),
    ]
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const RS: char = '\u{1e}';

/// One HTTP/1.1 request with `Connection: close`: the status and the body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    bearer: Option<&str>,
) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    within(tcp.read_to_end(&mut response)).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Negotiates with stateful reconnect as the holder of `bearer`: the connection token.
async fn negotiate(addr: std::net::SocketAddr, bearer: Option<&str>) -> String {
    let (status, body) = http(
        addr,
        "POST",
        "/hub/negotiate?negotiateVersion=1&useStatefulReconnect=true",
        bearer,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The body may be chunked: the JSON object is between the first `{` and the last `}`.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["useStatefulReconnect"], true, "{json}");
    v["connectionToken"].as_str().unwrap().to_owned()
}

/// Opens the WebSocket of connection `token` as `bearer`; the HTTP status when refused.
async fn open(
    addr: std::net::SocketAddr,
    token: &str,
    bearer: Option<&str>,
) -> Result<Socket, u16> {
    let mut request = format!("ws://{addr}/hub?id={token}")
        .into_client_request()
        .unwrap();
    if let Some(b) = bearer {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {b}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("the upgrade failed without an HTTP status: {e}"),
    }
}

/// The status of a refused upgrade; panics when it was accepted.
fn refusal(opened: Result<Socket, u16>) -> u16 {
    opened.expect_err("the upgrade was accepted")
}

/// Reads text frames until one contains `needle`; that frame.
async fn read_until(ws: &mut Socket, needle: &str) -> String {
    within(async {
        while let Some(Ok(m)) = ws.next().await {
            let text = m.into_text().unwrap_or_default();
            if text.as_str().contains(needle) {
                return text.as_str().to_owned();
            }
        }
        panic!("the socket ended before {needle:?}");
    })
    .await
}

/// The JSON handshake (version 2 asks for stateful reconnect) and its answer.
async fn handshake(ws: &mut Socket, version: u32) {
    ws.send(Message::text(format!(
        "{{\"protocol\":\"json\",\"version\":{version}}}{RS}"
    )))
    .await
    .unwrap();
    let answer = read_until(ws, "{").await;
    assert!(!answer.contains("error"), "{answer}");
}

/// Sends `message` (a JSON hub message, without its separator) and checks that the server closes
/// the connection for an id over the 256-byte limit.
async fn refused_for_a_long_id(ws: &mut Socket, message: &str) {
    ws.send(Message::text(format!("{message}{RS}")))
        .await
        .unwrap();
    let close = read_until(ws, "\"type\":7").await;
    assert!(close.contains("longer than 256"), "{close}");
}

async fn echo(ws: &mut Socket, id: &str) -> String {
    ws.send(Message::text(format!(
        "{{\"type\":1,\"invocationId\":\"{id}\",\"target\":\"Echo\",\"arguments\":[\"hi\"]}}{RS}"
    )))
    .await
    .unwrap();
    read_until(ws, "\"type\":3").await
}

async fn the_server_refuses_an_overlong_invocation_id(_: Pair) {
    // The reason in the Close message (ASP.NET Core's EnableDetailedErrors).
    let s = server(|c| c.detailed_errors = true).await;
    let url = s.url().replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    handshake(&mut ws, 1).await;
    // At the limit (256 bytes): answered.
    let at_limit = "i".repeat(256);
    let completion = echo(&mut ws, &at_limit).await;
    assert!(completion.contains(&at_limit), "{completion}");
    // One byte over: a Close with an error, then the end.
    let over = "i".repeat(257);
    refused_for_a_long_id(
        &mut ws,
        &format!(
            "{{\"type\":1,\"invocationId\":\"{over}\",\"target\":\"Echo\",\"arguments\":[\"hi\"]}}"
        ),
    )
    .await;
    // A stream id over the limit is refused the same way.
    let (mut ws, _) = tokio_tungstenite::connect_async(s.url().replace("http://", "ws://"))
        .await
        .unwrap();
    handshake(&mut ws, 1).await;
    refused_for_a_long_id(
        &mut ws,
        &format!(
            "{{\"type\":1,\"invocationId\":\"1\",\"target\":\"Sum\",\"arguments\":[],\"streamIds\":[\"{over}\"]}}"
        ),
    )
    .await;
    s.shutdown().await;
}

async fn the_server_refuses_a_resume_by_another_user(_: Pair) {
    let s = server(|c| {
        c.stateful_reconnect = true;
        c.users = HashMap::from([
            ("alice-token".to_owned(), "alice".to_owned()),
            ("bob-token".to_owned(), "bob".to_owned()),
        ]);
    })
    .await;
    let addr = s.local_addr();
    // Without a known token: 401, on negotiate and on the socket.
    assert_eq!(
        http(addr, "POST", "/hub/negotiate?negotiateVersion=1", None)
            .await
            .0,
        401
    );
    assert_eq!(
        http(
            addr,
            "POST",
            "/hub/negotiate?negotiateVersion=1",
            Some("mallory-token")
        )
        .await
        .0,
        401
    );
    let token = negotiate(addr, Some("alice-token")).await;
    let mut alice = open(addr, &token, Some("alice-token")).await.unwrap();
    handshake(&mut alice, 2).await;
    assert!(echo(&mut alice, "1").await.contains("\"result\":\"hi\""));
    // Bob holds Alice's connection token: every request on her connection is refused.
    assert_eq!(refusal(open(addr, &token, Some("bob-token")).await), 403);
    let target = format!("/hub?id={token}");
    assert_eq!(http(addr, "POST", &target, Some("bob-token")).await.0, 403);
    assert_eq!(
        http(addr, "DELETE", &target, Some("bob-token")).await.0,
        403
    );
    assert_eq!(refusal(open(addr, &token, None).await), 401);
    // Alice's socket was not cut by any of that.
    assert!(echo(&mut alice, "2").await.contains("\"result\":\"hi\""));
    // Alice herself may resume: no second handshake; each side starts with a Sequence (she
    // has sent two invocations, so hers continues at 3).
    let mut again = open(addr, &token, Some("alice-token")).await.unwrap();
    read_until(&mut again, "\"type\":9").await;
    again
        .send(Message::text(format!(
            "{{\"type\":9,\"sequenceId\":3}}{RS}"
        )))
        .await
        .unwrap();
    assert!(echo(&mut again, "3").await.contains("\"result\":\"hi\""));
    drop((alice, again));
    s.shutdown().await;
}

async fn the_server_refuses_a_storm_of_resumes(_: Pair) {
    const ATTEMPTS: usize = 100;
    const BURST: usize = 10;
    const PER_SECOND: u32 = 5;
    let s = server(|c| {
        c.stateful_reconnect = true;
        c.resume_burst = u32::try_from(BURST).unwrap();
        c.resumes_per_second = PER_SECOND;
    })
    .await;
    let addr = s.local_addr();
    let token = negotiate(addr, None).await;
    let mut first = open(addr, &token, None).await.unwrap();
    handshake(&mut first, 2).await;
    // A hundred resumes of the same connection at once.
    let started = crate::wall();
    let outcomes = within(join_all((0..ATTEMPTS).map(|_| open(addr, &token, None)))).await;
    let lasted = started.elapsed().as_secs_f64();
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes.iter().filter(|o| matches!(o, Err(429))).count();
    let other: Vec<u16> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().copied())
        .filter(|&s| s != 429)
        .collect();
    assert!(other.is_empty(), "other refusals: {other:?}");
    // At most the burst, plus what the budget refilled while the storm lasted.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let budget = BURST + (f64::from(PER_SECOND) * lasted).ceil() as usize;
    assert!(
        accepted >= 1 && accepted <= budget && accepted + refused == ATTEMPTS,
        "{accepted} accepted, {refused} refused in {lasted:.2} s (budget {budget})"
    );
    drop(outcomes);
    // The server still serves everyone else.
    let url = s.url().replace("http://", "ws://");
    let (mut other, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    handshake(&mut other, 1).await;
    assert!(echo(&mut other, "1").await.contains("\"result\":\"hi\""));
    drop((first, other));
    s.shutdown().await;
}
