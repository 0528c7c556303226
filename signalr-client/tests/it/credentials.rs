//! Expired credentials on long-lived connections: the test server lets a connection's token
//! expire (`ServerConfig::token_lifetime`) and answers 401 to the next request on it. A 401 on
//! a send, a poll or a resume is a lost connection that reconnects with a fresh negotiate and a
//! fresh token from the factory, not a dead end.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use signalr_client::{
    HubConnectionBuilder, HubError, protocol::TransportKind, reconnect::FixedDelays,
    transport::TransportError,
};

use crate::support::{WAIT, server};

/// Whether `err` (or what it wraps) is a refusal of expired credentials.
fn expired(err: &HubError) -> bool {
    match err {
        HubError::Transport(TransportError::Unauthorized { status: 401, .. }) => true,
        HubError::ConnectionLost(cause) | HubError::ResumeFailed { cause, .. } => expired(cause),
        _ => false,
    }
}

#[tokio::test]
async fn a_401_on_a_send_or_a_poll_reconnects_with_a_fresh_token() {
    let s = server(|c| {
        c.required_token = Some("t0k3n".into());
        c.token_lifetime = Some(Duration::from_millis(300));
        // Polls come back quickly, so the next one meets the expiry.
        c.poll_timeout = Duration::from_millis(100);
    })
    .await;
    for transport in [TransportKind::ServerSentEvents, TransportKind::LongPolling] {
        let tokens = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&tokens);
        let conn = HubConnectionBuilder::new(s.url())
            .with_transports([transport])
            .with_access_token(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok("t0k3n".to_owned()) }
            })
            // SSE sends its pings as POSTs: one of them meets the expiry.
            .with_keep_alive_interval(Duration::from_millis(100))
            .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0; 10]))
            .build()
            .unwrap();
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&reasons);
        conn.on_reconnecting(move |err| seen.lock().unwrap().push(err.is_some_and(expired)));
        let (tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel();
        conn.on_reconnected(move |id| {
            let _ = tx.send(id.map(str::to_owned));
        });
        conn.start().await.unwrap();
        let first = conn.connection_id();
        let before = tokens.load(Ordering::SeqCst);
        let id = tokio::time::timeout(WAIT, reconnected.recv())
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: no reconnect after the token expired"))
            .unwrap();
        assert_ne!(id, first, "{transport:?}: a new connection");
        assert_eq!(
            reasons.lock().unwrap().first(),
            Some(&true),
            "{transport:?}: {reasons:?}"
        );
        assert!(
            tokens.load(Ordering::SeqCst) > before,
            "{transport:?}: a fresh token"
        );
        let sum: i64 = conn.invoke("Add", (1, 2)).await.unwrap();
        assert_eq!(sum, 3);
        conn.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_401_on_a_stateful_resume_falls_back_to_a_new_connection() {
    let s = server(|c| {
        c.stateful_reconnect = true;
        c.token_lifetime = Some(Duration::from_millis(200));
    })
    .await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_transports([TransportKind::WebSockets])
        .with_stateful_reconnect(100_000)
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0; 10]))
        .build()
        .unwrap();
    let (tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel();
    conn.on_reconnected(move |id| {
        let _ = tx.send(id.map(str::to_owned));
    });
    conn.start().await.unwrap();
    let first = conn.connection_id();
    // An open WebSocket makes no further requests: it outlives its token, until it is cut.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(conn.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
    let _ = conn.invoke::<()>("AbortMe", ()).await;
    let id = tokio::time::timeout(WAIT, reconnected.recv())
        .await
        .expect("a new connection after the refused resume")
        .unwrap();
    assert_ne!(id, first);
    assert_eq!(conn.invoke::<i64>("Add", (2, 2)).await.unwrap(), 4);
    conn.stop().await.unwrap();
}
