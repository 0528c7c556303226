//! Rows 3.11–3.14: what the server answers to the handshake.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use signalr_client::{
    HandshakeError, HubError,
    protocol::{HubMessage, Invocation},
};

use crate::{
    Case,
    support::{ALL, Pair, Peer, describe, quick_retries, scripted, spawn_start, within},
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("3.11", a_garbage_handshake_response_fails_start_once, ALL),
        case!("3.12", a_handshake_error_fails_start_with_its_text, ALL),
        case!("3.13", a_missing_handshake_response_times_out, ALL),
        case!(
            "3.14",
            a_split_or_coalesced_handshake_with_extra_fields_works,
            ALL
        ),
    ]
}

async fn a_garbage_handshake_response_fails_start_once(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = pair
        .builder(server.url())
        .with_automatic_reconnect_policy(quick_retries())
        .build()
        .unwrap();
    let start = spawn_start(&conn);
    let peer = Peer::accept(&mut script, pair).await;
    peer.raw(&b"<html><body>502 Bad Gateway</body></html>\x1e"[..])
        .await;
    let err = within(start).await.unwrap().unwrap_err();
    assert!(
        matches!(err, HubError::Handshake(HandshakeError::Malformed(_))),
        "{}",
        describe(&err)
    );
    // One failed attempt: no retry storm although automatic reconnect is on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(script.try_accept().is_none(), "start() tried again");
    drop(peer);
    server.shutdown().await;
}

async fn a_handshake_error_fails_start_with_its_text(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = pair
        .builder(server.url())
        .with_automatic_reconnect_policy(quick_retries())
        .build()
        .unwrap();
    let start = spawn_start(&conn);
    let peer = Peer::accept(&mut script, pair).await;
    peer.raw(&b"{\"error\":\"Requested protocol 'messagepack' is not available.\"}\x1e"[..])
        .await;
    let err = within(start).await.unwrap().unwrap_err();
    match &err {
        HubError::Handshake(HandshakeError::Refused(text)) => {
            assert_eq!(text, "Requested protocol 'messagepack' is not available.");
        }
        other => panic!("{}", describe(other)),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(script.try_accept().is_none(), "start() tried again");
    drop(peer);
    server.shutdown().await;
}

async fn a_missing_handshake_response_times_out(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = pair
        .builder(server.url())
        .with_handshake_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let start = spawn_start(&conn);
    let peer = Peer::accept(&mut script, pair).await;
    let err = within(start).await.unwrap().unwrap_err();
    assert!(
        matches!(err, HubError::HandshakeTimeout),
        "{}",
        describe(&err)
    );
    drop(peer);
    server.shutdown().await;
}

async fn a_split_or_coalesced_handshake_with_extra_fields_works(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = pair.builder(server.url()).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let _hello = conn.on("hello", move |n: i32| {
        let s = Arc::clone(&s);
        async move { s.lock().unwrap().push(n) }
    });
    let start = spawn_start(&conn);
    let peer = Peer::accept(&mut script, pair).await;
    // The response in two pieces, the second carrying the first message as well.
    peer.raw(&b"{\"minorVersion\":1,"[..]).await;
    let mut rest = b"\"unknown\":[1,{}]}\x1e".to_vec();
    rest.extend_from_slice(
        &pair.encode(&HubMessage::Invocation(Invocation::non_blocking(
            "hello",
            pair.args(&(7,)),
        ))),
    );
    peer.raw(rest).await;
    within(start).await.unwrap().unwrap();
    within(async {
        while seen.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), [7]);
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}
