//! Rows 3.7–3.10: what negotiate answers.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use signalr_client::{HubConnectionBuilder, HubConnectionState, HubError};

use crate::{
    Case,
    support::{ONCE, Pair, canned, describe, json_response, quick_retries, server, within},
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("3.7", a_5xx_negotiate_is_retried_by_the_start_policy, ONCE),
        case!("3.7", a_404_negotiate_fails_at_once_with_the_status, ONCE),
        case!("3.7", a_401_asks_the_token_factory_once_more, ONCE),
        case!("3.8", each_broken_negotiate_body_has_its_own_error, ONCE),
        case!("3.9", negotiate_redirect_loops_stop, ONCE),
        case!(
            "3.10",
            a_cross_origin_redirect_carries_no_user_credentials,
            ONCE
        ),
    ]
}

async fn a_5xx_negotiate_is_retried_by_the_start_policy(_: Pair) {
    let s = server(|_| {}).await;
    s.controls().refuse_for(Duration::from_millis(200)); // 503 for a while: a restart
    let conn = HubConnectionBuilder::new(s.url())
        .with_initial_start_policy(quick_retries())
        .build()
        .unwrap();
    within(conn.start()).await.unwrap();
    assert_eq!(conn.state(), HubConnectionState::Connected);
    conn.stop().await.unwrap();
    s.shutdown().await;
}

async fn a_404_negotiate_fails_at_once_with_the_status(_: Pair) {
    let (url, seen, task) = canned(|_, _| json_response("404 Not Found", "")).await;
    let conn = HubConnectionBuilder::new(&url)
        .with_initial_start_policy(quick_retries())
        .build()
        .unwrap();
    let err = within(conn.start()).await.unwrap_err();
    assert!(describe(&err).contains("404"), "{}", describe(&err));
    assert_eq!(seen.lock().unwrap().len(), 1, "a 404 is not retried");
    task.abort();
}

async fn a_401_asks_the_token_factory_once_more(_: Pair) {
    // Always 401: the factory is asked twice, then start fails with the status.
    let (url, seen, task) = canned(|_, _| json_response("401 Unauthorized", "")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let conn = HubConnectionBuilder::new(&url)
        .with_access_token(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { Ok(format!("token-{n}")) }
        })
        .build()
        .unwrap();
    let err = within(conn.start()).await.unwrap_err();
    assert!(describe(&err).contains("401"), "{}", describe(&err));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    assert!(heads[0].contains("Bearer token-0") && heads[1].contains("Bearer token-1"));
    task.abort();

    // An expired token, then a fresh one: connected.
    let s = server(|c| c.required_token = Some("fresh".into())).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let conn = HubConnectionBuilder::new(s.url())
        .with_access_token(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { Ok(if n == 0 { "expired" } else { "fresh" }.to_owned()) }
        })
        .build()
        .unwrap();
    within(conn.start()).await.unwrap();
    assert_eq!(conn.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
    conn.stop().await.unwrap();
    s.shutdown().await;
}

async fn each_broken_negotiate_body_has_its_own_error(_: Pair) {
    let bodies = [
        "{\"connectionId\":",
        "{\"negotiateVersion\":1,\"availableTransports\":[]}",
        "{\"negotiateVersion\":1,\"connectionId\":\"a\",\"connectionToken\":\"b\",\"availableTransports\":[{\"transport\":\"Carrier pigeon\",\"transferFormats\":[\"Text\"]}]}",
        "{\"error\":\"the hub is closed\"}",
        "{\"ProtocolVersion\":\"1.5\",\"ConnectionId\":\"a\"}",
    ];
    let mut errors = HashSet::new();
    for body in bodies {
        let (url, seen, task) = canned(move |_, _| json_response("200 OK", body)).await;
        let conn = HubConnectionBuilder::new(&url).build().unwrap();
        let err = within(conn.start()).await.unwrap_err();
        assert!(
            matches!(err, HubError::Transport(_)),
            "{body}: {}",
            describe(&err)
        );
        // Negotiate only: no transport was tried.
        assert_eq!(seen.lock().unwrap().len(), 1, "{body}");
        assert!(
            errors.insert(describe(&err)),
            "{body}: the same error as another body"
        );
        task.abort();
    }
    let all = errors.into_iter().collect::<Vec<_>>().join("\n");
    assert!(all.contains("the hub is closed"), "{all}");
}

async fn negotiate_redirect_loops_stop(_: Pair) {
    // A → A: found at the first hop.
    let (url, seen, task) = canned(|_, head| {
        let host = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("host: ")
                    .or_else(|| l.strip_prefix("Host: "))
            })
            .unwrap_or_default()
            .to_owned();
        json_response("200 OK", &format!("{{\"url\":\"http://{host}/hub\"}}"))
    })
    .await;
    let err = within(HubConnectionBuilder::new(&url).build().unwrap().start())
        .await
        .unwrap_err();
    assert!(describe(&err).contains("loop"), "{}", describe(&err));
    assert_eq!(seen.lock().unwrap().len(), 1);
    task.abort();

    // A → B → A → …: stopped at the limit.
    let b_url = Arc::new(std::sync::OnceLock::<String>::new());
    let b = Arc::clone(&b_url);
    let (a_url, a_seen, a_task) = canned(move |_, _| {
        json_response("200 OK", &format!("{{\"url\":\"{}\"}}", b.get().unwrap()))
    })
    .await;
    let a = a_url.clone();
    let (url_b, _, b_task) =
        canned(move |_, _| json_response("200 OK", &format!("{{\"url\":\"{a}\"}}"))).await;
    b_url.set(url_b).unwrap();
    let err = within(HubConnectionBuilder::new(&a_url).build().unwrap().start())
        .await
        .unwrap_err();
    assert!(
        describe(&err).contains("redirection limit"),
        "{}",
        describe(&err)
    );
    assert!(a_seen.lock().unwrap().len() <= 100);
    a_task.abort();
    b_task.abort();
}

async fn a_cross_origin_redirect_carries_no_user_credentials(_: Pair) {
    let (b_url, b_seen, b_task) =
        canned(|_, _| json_response("500 Internal Server Error", "")).await;
    let target = b_url.clone();
    let (a_url, a_seen, a_task) = canned(move |_, _| {
        json_response(
            "200 OK",
            &format!("{{\"url\":\"{target}\",\"accessToken\":\"for-b\"}}"),
        )
    })
    .await;
    let conn = HubConnectionBuilder::new(&a_url)
        .with_access_token(|| async { Ok("secret-for-a".to_owned()) })
        .with_header(
            header_name("x-user-secret"),
            signalr_client::transport::header::HeaderValue::from_static("s3cr3t"),
        )
        .build()
        .unwrap();
    let _ = within(conn.start()).await.unwrap_err();
    let a = a_seen.lock().unwrap().join("\n").to_lowercase();
    assert!(
        a.contains("bearer secret-for-a") && a.contains("x-user-secret"),
        "{a}"
    );
    let b = b_seen.lock().unwrap().join("\n").to_lowercase();
    assert!(!b.is_empty(), "B was never asked");
    assert!(b.contains("bearer for-b"), "{b}");
    assert!(!b.contains("secret-for-a") && !b.contains("s3cr3t"), "{b}");
    a_task.abort();
    b_task.abort();
}

fn header_name(name: &'static str) -> signalr_client::transport::header::HeaderName {
    signalr_client::transport::header::HeaderName::from_static(name)
}
