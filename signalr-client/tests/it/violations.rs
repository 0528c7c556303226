//! Well-formed messages that the protocol does not allow where they come, from a scripted
//! server: the call they answer fails with `ProtocolError::UnexpectedMessage`, which says what
//! was received (not "cannot encode", the encoder's words), and the connection stays up.

use signalr_client::{
    HubConnectionBuilder, HubConnectionState, HubError,
    protocol::{Completion, HubMessage, Payload, PayloadFormat, ProtocolError, StreamItem},
};

use super::timing::{Peer, started};

#[tokio::test(start_paused = true)]
async fn a_handshake_cut_short_or_refused_says_which() {
    use signalr_client::{HandshakeError, transport::memory};
    let (connector, listener) = memory::connector();
    let conn = HubConnectionBuilder::new("memory://hub")
        .with_connector(connector)
        .build()
        .unwrap();
    let starting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.start().await })
    };
    drop(Peer::accept(&listener).await); // reads the request, then hangs up
    let err = starting.await.unwrap().unwrap_err();
    assert!(
        matches!(err, HubError::Handshake(HandshakeError::Closed)),
        "{err:#}"
    );
    assert_eq!(
        format!("{err:#}"),
        "handshake failed: the server closed the connection during the handshake"
    );
    let refused = HubError::Handshake(HandshakeError::Refused(
        "Requested protocol 'messagepack' is not available.".into(),
    ));
    assert_eq!(refused.to_string(), "handshake failed");
    assert_eq!(
        format!("{refused:#}"),
        "handshake failed: the server refused it: Requested protocol 'messagepack' is not available."
    );
}

/// The id of the next invocation or stream invocation the client sends.
async fn next_call(peer: &mut Peer) -> String {
    loop {
        match peer.recv().await.expect("a message") {
            HubMessage::Invocation(i) => break i.invocation_id.expect("an invocation id"),
            HubMessage::StreamInvocation(i) => break i.invocation_id,
            _ => {}
        }
    }
}

fn one() -> Payload {
    Payload::from_value(PayloadFormat::Json, &1).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_stream_item_for_an_invoke_fails_that_call_and_says_so() {
    let (conn, _listener, mut peer, _) = started(HubConnectionBuilder::new("memory://hub")).await;
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.invoke::<i32>("Add", (1, 2)).await })
    };
    let id = next_call(&mut peer).await;
    peer.send(&HubMessage::StreamItem(StreamItem::new(id, one())));
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(
            &err,
            HubError::Protocol(ProtocolError::UnexpectedMessage {
                message_type: "StreamItem",
                ..
            })
        ),
        "{err:?}"
    );
    let text = format!("{err:#}");
    assert!(text.contains("unexpected StreamItem message"), "{text}");
    assert!(!text.contains("cannot encode"), "{text}");
    assert_eq!(conn.state(), HubConnectionState::Connected);
}

#[tokio::test(start_paused = true)]
async fn a_stream_completed_with_a_result_ends_it_with_that_error() {
    use futures_util::StreamExt as _;
    let (conn, _listener, mut peer, _) = started(HubConnectionBuilder::new("memory://hub")).await;
    let stream = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.stream::<i32>("Counter", (3, 1)).await })
    };
    let id = next_call(&mut peer).await;
    let mut items = stream.await.unwrap().unwrap();
    peer.send(&HubMessage::Completion(Completion::value(id, one())));
    let err = items.next().await.expect("the stream's end").unwrap_err();
    assert!(
        matches!(
            &err,
            HubError::Protocol(ProtocolError::UnexpectedMessage {
                message_type: "Completion",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        format!("{err:#}").contains("a stream completed with a result"),
        "{err:#}"
    );
    assert_eq!(conn.state(), HubConnectionState::Connected);
}
