//! A stream consumer that stops taking items holds back reading from the server (backpressure)
//! but nothing else: calls still go out at once, pings on time, and the held items arrive in
//! order once the consumer takes them. On a paused clock against a scripted server.

use std::time::Duration;

use futures_util::StreamExt as _;
use signalr_client::{
    HubConnectionBuilder,
    protocol::{Completion, HubMessage, Payload, PayloadFormat, StreamItem},
};

use super::timing::{Peer, now, started};

fn int(n: i32) -> Payload {
    Payload::from_value(PayloadFormat::Json, &n).unwrap()
}

/// The next message that is not a ping, and how many pings came before it.
async fn next_non_ping(peer: &mut Peer) -> (HubMessage, usize) {
    let mut pings = 0;
    loop {
        match peer.recv().await.expect("a message") {
            HubMessage::Ping => pings += 1,
            m => return (m, pings),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_consumer_holds_reading_back_not_calls_or_pings() {
    let builder = HubConnectionBuilder::new("memory://hub")
        .with_stream_buffer(1)
        .with_stream_consumer_timeout(Duration::from_secs(60))
        .with_server_timeout(Duration::from_secs(120));
    let (conn, _listener, mut peer, _) = started(builder).await;
    let mut items = conn.stream::<i32>("Counter", ()).await.unwrap();
    let HubMessage::StreamInvocation(call) = next_non_ping(&mut peer).await.0 else {
        panic!("no stream invocation")
    };
    let id = call.invocation_id;
    // One item fits the buffer; the second is held; the third waits unread behind it.
    for n in 0..3 {
        peer.send(&HubMessage::StreamItem(StreamItem::new(id.clone(), int(n))));
    }
    peer.send(&HubMessage::Completion(Completion::void(id.clone())));
    tokio::time::sleep(Duration::from_millis(10)).await;

    // A call made now goes out at once, not after the consumer timeout.
    let t0 = now();
    let add = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.invoke::<i32>("Add", (1, 2)).await })
    };
    let (message, _) = next_non_ping(&mut peer).await;
    let HubMessage::Invocation(invocation) = message else {
        panic!("not an invocation: {message:?}")
    };
    assert_eq!(invocation.target, "Add");
    assert!((now() - t0) < Duration::from_secs(1), "{:?}", (now() - t0));
    peer.send(&HubMessage::Completion(Completion::value(
        invocation.invocation_id.unwrap(),
        int(3),
    )));
    // Pings keep going out while reading is held back (every 15 s of sending nothing).
    let watch = tokio::spawn(async move {
        let first = peer.recv().await;
        let at = now() - t0;
        (first, at, peer)
    });
    let (first, at, _peer) = watch.await.unwrap();
    assert_eq!(first, Some(HubMessage::Ping));
    assert_eq!(at, Duration::from_secs(15));
    // The answer is behind the held items: it comes once the consumer takes them, in order.
    assert!(!add.is_finished());
    let all: Vec<i32> = items.by_ref().map(Result::unwrap).collect().await;
    assert_eq!(all, [0, 1, 2]);
    assert_eq!(add.await.unwrap().unwrap(), 3);
}
