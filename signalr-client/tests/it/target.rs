//! Changing where to connect: the URL and the headers can be changed while disconnected or
//! reconnecting (as the JavaScript client's `baseUrl` setter allows), and a hook called before
//! every reconnect attempt may change them.

use std::sync::{Arc, Mutex};

use signalr_client::{
    HubConnectionBuilder, HubConnectionState, HubError,
    reconnect::FixedDelays,
    transport::header::{AUTHORIZATION, HeaderMap, HeaderValue},
};

use crate::support::{WAIT, server};

async fn name(conn: &signalr_client::HubConnection) -> String {
    conn.invoke("GetServerName", ()).await.unwrap()
}

#[tokio::test]
async fn the_url_and_headers_change_only_while_disconnected_or_reconnecting() {
    let a = server(|c| c.server_name = "a".into()).await;
    let b = server(|c| {
        c.server_name = "b".into();
        c.required_token = Some("for-b".into());
    })
    .await;
    let conn = HubConnectionBuilder::new(a.url()).build().unwrap();
    assert_eq!(conn.url(), a.url());
    conn.start().await.unwrap();
    assert_eq!(name(&conn).await, "a");
    let err = conn.set_url(b.url()).unwrap_err();
    assert!(
        matches!(
            err,
            HubError::InvalidState {
                state: HubConnectionState::Connected,
                ..
            }
        ),
        "{err}"
    );
    assert!(conn.set_headers(HeaderMap::new()).is_err());
    conn.stop().await.unwrap();
    // A URL that cannot be used is refused at once.
    assert!(matches!(
        conn.set_url("ftp://nope"),
        Err(HubError::Transport(_))
    ));
    conn.set_url(b.url()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer for-b"));
    conn.set_headers(headers).unwrap();
    conn.start().await.unwrap();
    assert_eq!(name(&conn).await, "b");
    assert_eq!(conn.url(), b.url());
    conn.stop().await.unwrap();
}

#[tokio::test]
async fn a_hook_before_every_reconnect_may_move_the_connection() {
    let a = server(|c| c.server_name = "a".into()).await;
    let b = server(|c| {
        c.server_name = "b".into();
        c.required_token = Some("routed".into());
    })
    .await;
    let b_url = b.url().to_owned();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&attempts);
    let conn = HubConnectionBuilder::new(a.url())
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0, 0, 0]))
        .with_before_reconnect(move |target, attempt| {
            seen.lock()
                .unwrap()
                .push((attempt.attempt, attempt.reason.to_string()));
            // The first attempt goes where it went; the second moves to b, with b's token.
            if attempt.attempt >= 2 {
                target.url.clone_from(&b_url);
                target
                    .headers
                    .insert(AUTHORIZATION, HeaderValue::from_static("Bearer routed"));
            }
        })
        .build()
        .unwrap();
    let (tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel::<()>();
    conn.on_reconnected(move |_| {
        let _ = tx.send(());
    });
    conn.start().await.unwrap();
    assert_eq!(name(&conn).await, "a");
    // a stops answering: the first attempt fails there, the second reaches b.
    a.controls().refuse_for(std::time::Duration::from_secs(60));
    let _ = conn.invoke::<()>("AbortMe", ()).await;
    tokio::time::timeout(WAIT, reconnected.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name(&conn).await, "b");
    assert_eq!(conn.url(), b.url(), "the hook's change stays");
    let numbers: Vec<u32> = attempts.lock().unwrap().iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2], "{attempts:?}");
    conn.stop().await.unwrap();
}

#[tokio::test]
async fn the_url_set_while_reconnecting_is_where_the_next_attempt_goes() {
    let a = server(|c| c.server_name = "a".into()).await;
    let b = server(|c| c.server_name = "b".into()).await;
    let conn = HubConnectionBuilder::new(a.url())
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[300]))
        .build()
        .unwrap();
    let (tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel::<()>();
    conn.on_reconnected(move |_| {
        let _ = tx.send(());
    });
    conn.start().await.unwrap();
    let mut states = conn.state_changes();
    let _ = conn.invoke::<()>("AbortMe", ()).await;
    tokio::time::timeout(
        WAIT,
        states.wait_for(|s| *s == HubConnectionState::Reconnecting),
    )
    .await
    .unwrap()
    .unwrap();
    conn.set_url(b.url()).unwrap();
    tokio::time::timeout(WAIT, reconnected.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name(&conn).await, "b");
    conn.stop().await.unwrap();
}
