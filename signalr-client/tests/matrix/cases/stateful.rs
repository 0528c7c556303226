//! Stateful reconnect: rows 3.1 and 3.6 with resuming, 3.35–3.37, and the at-most-once
//! behaviour without it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use signalr_client::{
    HubConnection, HubError,
    protocol::{Ack, HubMessage, Sequence},
    reconnect::FixedDelays,
};
use signalr_testserver::proxy::FaultProxy;

use crate::{
    Case,
    support::{
        ALL, Events, Pair, Peer, WEBSOCKETS, describe, quick_retries, record, scripted, server,
        spawn_start, wait_len, within,
    },
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "3.1",
            a_cut_mid_call_is_resumed_and_the_call_completes,
            WEBSOCKETS
        ),
        case!(
            "3.6",
            a_resume_the_server_forgot_falls_back_loudly,
            WEBSOCKETS
        ),
        case!("3.35", sequence_and_ack_out_of_range_are_errors, WEBSOCKETS),
        case!("3.35", a_backwards_ack_is_ignored, WEBSOCKETS),
        case!("3.36", repeated_cuts_lose_and_duplicate_nothing, WEBSOCKETS),
        case!("3.37", a_full_replay_buffer_holds_sends_back, WEBSOCKETS),
        case!(
            "3.37",
            answers_wait_for_room_in_the_replay_buffer,
            WEBSOCKETS
        ),
        case!(
            "3.37",
            the_answer_goes_out_once_the_server_acknowledges,
            WEBSOCKETS
        ),
        case!(
            "9.at-most-once",
            without_stateful_reconnect_calls_fail_or_complete_once,
            ALL
        ),
    ]
}

fn stateful(pair: Pair, url: &str) -> HubConnection {
    pair.builder(url)
        .with_stateful_reconnect(100_000)
        .with_automatic_reconnect_policy(quick_retries())
        .build()
        .unwrap()
}

async fn a_cut_mid_call_is_resumed_and_the_call_completes(pair: Pair) {
    let s = server(|c| c.stateful_reconnect = true).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = stateful(pair, &proxy.url(s.url()));
    let events = Events::attach(&conn);
    let (_seq, seen) = record(&conn, "seq");
    conn.start().await.unwrap();
    let id = conn.connection_id();
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<i32>("Sequence", (1000,)).await }
    });
    wait_len(&seen, 300).await;
    proxy.reset_all();
    assert_eq!(within(call).await.unwrap().unwrap(), 1000);
    wait_len(&seen, 1000).await;
    assert_eq!(*seen.lock().unwrap(), (0..1000).collect::<Vec<_>>());
    assert_eq!(conn.connection_id(), id, "resumed, not reconnected");
    assert_eq!(events.list(), Vec::<String>::new());
    conn.stop().await.unwrap();
    drop(proxy);
    s.shutdown().await;
}

async fn a_resume_the_server_forgot_falls_back_loudly(pair: Pair) {
    let s = server(|c| {
        c.stateful_reconnect = true;
        c.disconnect_timeout = Duration::from_millis(50);
    })
    .await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = stateful(pair, &proxy.url(s.url()));
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let id = conn.connection_id();
    // A call in flight that keeps the link quiet: the server waits for a client result that
    // never comes.
    let _wait = conn.on_invoke("wait", |_: i32| {
        std::future::pending::<Result<i32, String>>()
    });
    let slow = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<i32>("AskClient", ("wait", 1)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Resumes are refused until the server forgot the connection; then 404.
    proxy.refuse_for(Duration::from_millis(1500));
    proxy.reset_all();
    let err = within(slow).await.unwrap().unwrap_err();
    assert!(
        matches!(err, HubError::ConnectionLost(_)),
        "{}",
        describe(&err)
    );
    let reconnecting = events.wait_for("reconnecting").await;
    assert!(
        reconnecting.contains("could not be resumed"),
        "{reconnecting}"
    );
    events.wait_for("reconnected").await;
    assert_ne!(conn.connection_id(), id, "a new connection");
    assert_eq!(conn.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
    conn.stop().await.unwrap();
    drop(proxy);
    s.shutdown().await;
}

/// A connected stateful client and its scripted server side.
async fn scripted_stateful(
    pair: Pair,
) -> (signalr_testserver::TestServer, HubConnection, Peer, Events) {
    let (server, mut script) = scripted(|c| c.stateful_reconnect = true).await;
    let conn = pair
        .builder(server.url())
        .with_stateful_reconnect(2_000)
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    let start = spawn_start(&conn);
    let peer = Peer::connected(&mut script, pair).await;
    within(start).await.unwrap().unwrap();
    (server, conn, peer, events)
}

async fn sequence_and_ack_out_of_range_are_errors(pair: Pair) {
    let faults = [
        HubMessage::Sequence(Sequence::new(5)), // ahead of the next expected (1)
        HubMessage::Sequence(Sequence::new(0)), // ids start at 1
        HubMessage::Ack(Ack::new(10)),          // nothing was sent
    ];
    for fault in faults {
        let (server, conn, peer, events) = scripted_stateful(pair).await;
        peer.send(&fault).await;
        let closed = events.wait_for("closed").await;
        assert!(closed.contains("protocol error"), "{fault:?}: {closed}");
        drop((conn, peer));
        server.shutdown().await;
    }
}

async fn a_backwards_ack_is_ignored(pair: Pair) {
    let (server, conn, mut peer, events) = scripted_stateful(pair).await;
    for i in 0..3 {
        conn.send("Note", (i,)).await.unwrap();
    }
    for _ in 0..3 {
        assert!(matches!(peer.recv().await, Some(HubMessage::Invocation(_))));
    }
    peer.send(&HubMessage::Ack(Ack::new(3))).await;
    peer.send(&HubMessage::Ack(Ack::new(1))).await;
    conn.send("Note", (3,)).await.unwrap();
    assert!(matches!(peer.recv().await, Some(HubMessage::Invocation(_))));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(events.list(), Vec::<String>::new());
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}

async fn repeated_cuts_lose_and_duplicate_nothing(pair: Pair) {
    const N: usize = 3000;
    let s = server(|c| c.stateful_reconnect = true).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = stateful(pair, &proxy.url(s.url()));
    let (_seq, seen) = record(&conn, "seq");
    conn.start().await.unwrap();
    let id = conn.connection_id();
    let call = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.invoke::<i32>("Sequence", (i32::try_from(N).unwrap(),))
                .await
        }
    });
    // Ten cuts, some of them during the replay of the one before.
    for cut in 1..=10 {
        wait_len(&seen, cut * N / 12).await;
        proxy.reset_all();
        if cut % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            proxy.reset_all();
        }
    }
    assert_eq!(
        within(call).await.unwrap().unwrap(),
        i32::try_from(N).unwrap()
    );
    wait_len(&seen, N).await;
    assert_eq!(
        *seen.lock().unwrap(),
        (0..i32::try_from(N).unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(conn.connection_id(), id);
    conn.stop().await.unwrap();
    drop(proxy);
    s.shutdown().await;
}

async fn a_full_replay_buffer_holds_sends_back(pair: Pair) {
    // The server never acknowledges: after 2,000 bytes, sends wait instead of buffering more.
    let (server, conn, peer, events) = scripted_stateful(pair).await;
    let payload = "x".repeat(200);
    let done = Arc::new(AtomicUsize::new(0));
    let sends: Vec<_> = (0..40)
        .map(|_| {
            let conn = conn.clone();
            let payload = payload.clone();
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let r = conn.send("Note", (payload,)).await;
                done.fetch_add(1, Ordering::SeqCst);
                r
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = done.load(Ordering::SeqCst);
    assert!(
        (5..=15).contains(&sent),
        "{sent} of 40 sends went out with 2,000 bytes of buffer"
    );
    // The connection ends: every waiting send fails, none hangs.
    peer.conn.abort().await;
    let mut failed = 0;
    for send in sends {
        if let Err(e) = within(send).await.unwrap() {
            assert!(matches!(e, HubError::ConnectionLost(_)), "{}", describe(&e));
            failed += 1;
        }
    }
    assert_eq!(failed, 40 - sent, "every send still waiting failed");
    events.wait_for("closed").await;
    server.shutdown().await;
}

/// A stateful connection whose 2,000-byte buffer 20 sends have filled (the server never
/// acknowledged), then a client-result call `ask` from the server: the connection, the server's
/// side, the sends still running and how many of them went out.
struct FullBuffer {
    server: signalr_testserver::TestServer,
    conn: HubConnection,
    peer: Peer,
    events: Events,
    sends: Vec<tokio::task::JoinHandle<signalr_client::Result<()>>>,
    went_out: usize,
    /// The `ask` handler: bind it, or it is unregistered.
    _ask: signalr_client::Subscription,
}

async fn full_buffer_then_ask(pair: Pair) -> FullBuffer {
    let (server, conn, mut peer, events) = scripted_stateful(pair).await;
    let ask = conn.on_invoke("ask", || async { Ok::<_, String>(7) });
    let payload = "x".repeat(200);
    let sends: Vec<_> = (0..20)
        .map(|_| {
            let (conn, payload) = (conn.clone(), payload.clone());
            tokio::spawn(async move { conn.send("Note", (payload,)).await })
        })
        .collect();
    // Everything that fit in the buffer arrives; then nothing more.
    let went_out = peer
        .drain(Duration::from_millis(300))
        .await
        .iter()
        .filter(|m| matches!(m, HubMessage::Invocation(_)))
        .count();
    assert!(
        (5..20).contains(&went_out),
        "{went_out} of 20 sends went out"
    );
    let call = signalr_client::protocol::Invocation::new("s1", "ask", pair.args(&()));
    peer.send(&HubMessage::Invocation(call)).await;
    FullBuffer {
        server,
        conn,
        peer,
        events,
        sends,
        went_out,
        _ask: ask,
    }
}

async fn answers_wait_for_room_in_the_replay_buffer(pair: Pair) {
    // The answer is a tracked message too: it waits for an Ack like the sends. And stop() gets
    // through although calls are held back (it used to wait for an Ack that never came).
    let FullBuffer {
        server,
        conn,
        mut peer,
        events,
        sends,
        _ask,
        ..
    } = full_buffer_then_ask(pair).await;
    let early = peer.drain(Duration::from_millis(300)).await;
    assert!(
        !early.iter().any(|m| matches!(m, HubMessage::Completion(_))),
        "answered past a full buffer: {early:?}"
    );
    within(conn.stop()).await.unwrap();
    for send in sends {
        let _ = within(send).await.unwrap();
    }
    events.wait_for("closed").await;
    drop(peer);
    server.shutdown().await;
}

async fn the_answer_goes_out_once_the_server_acknowledges(pair: Pair) {
    // As above, but the server acknowledges what it gets: the answer goes out (the held sends
    // compete with it for the room an Ack makes).
    let FullBuffer {
        server,
        conn,
        mut peer,
        sends,
        went_out,
        _ask,
        ..
    } = full_buffer_then_ask(pair).await;
    let mut received = went_out;
    peer.send(&HubMessage::Ack(Ack::new(u64::try_from(received).unwrap())))
        .await;
    let answer = within(async {
        loop {
            match peer.recv().await {
                Some(HubMessage::Completion(c)) => return c,
                Some(HubMessage::Invocation(_)) => {
                    received += 1;
                    peer.send(&HubMessage::Ack(Ack::new(u64::try_from(received).unwrap())))
                        .await;
                }
                Some(_) => {}
                None => panic!("the client closed"),
            }
        }
    })
    .await;
    assert_eq!(answer.invocation_id, "s1");
    let signalr_client::protocol::CompletionResult::Value(value) = answer.result else {
        panic!("{:?}", answer.result)
    };
    assert_eq!(value.deserialize::<i32>().unwrap(), 7);
    conn.stop().await.unwrap();
    for send in sends {
        let _ = within(send).await.unwrap();
    }
    drop(peer);
    server.shutdown().await;
}

async fn without_stateful_reconnect_calls_fail_or_complete_once(pair: Pair) {
    // At most once: a call in flight when the link breaks fails (it may or may not have run);
    // calls made while reconnecting wait in the outbox and go out once, in order.
    let s = server(|_| {}).await;
    let conn = pair
        .builder(s.url())
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[200, 100, 100, 100]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    let (_echo, seen) = record(&conn, "echo");
    conn.start().await.unwrap();
    let slow = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<i32>("Sequence", (1_000_000,)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.controls().abort_all();
    let err = within(slow).await.unwrap().unwrap_err();
    assert!(
        matches!(err, HubError::ConnectionLost(_)),
        "{}",
        describe(&err)
    );
    events.wait_for("reconnecting").await;
    // Made in order while reconnecting (the first retry waits 200 ms): queued in the outbox.
    let calls = (0..20).map(|i| conn.invoke::<String>("SendToCaller", ("echo", i)));
    for result in within(futures_util::future::join_all(calls)).await {
        assert_eq!(result.unwrap(), "sent");
    }
    wait_len(&seen, 20).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
    assert_eq!(events.count("reconnected"), 1, "{:?}", events.list());
    conn.stop().await.unwrap();
    s.shutdown().await;
}
