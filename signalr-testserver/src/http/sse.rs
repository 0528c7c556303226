//! The Server-Sent Events transport: a `text/event-stream` response carries server messages;
//! the client sends with `POST`.

use std::{collections::HashMap, convert::Infallible, sync::Arc};

use axum::{
    body::Body,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::{StreamExt as _, stream};
use signalr_protocol::TransportKind;
use tokio::sync::{OwnedMutexGuard, mpsc};

use super::{User, lookup, offered, status};
use crate::{
    app::App,
    wire::{ConnEntry, Control, Outbound},
};

/// Tells the session when the client drops the event stream.
struct Attached {
    entry: Arc<ConnEntry>,
    outbound: OwnedMutexGuard<mpsc::Receiver<Outbound>>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.entry.control.send(Control::TransportClosed(0));
    }
}

/// One event per frame: every line of the payload becomes a `data:` line, as the .NET server
/// writes them.
fn event(frame: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len() + 16);
    for line in frame.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

pub(super) fn connect(
    app: &Arc<App>,
    params: &HashMap<String, String>,
    user: &User,
) -> Result<Response, Response> {
    offered(app, TransportKind::ServerSentEvents)?;
    let entry = lookup(app, params, user)?;
    if !entry.bind(TransportKind::ServerSentEvents) {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "the connection uses another transport",
        ));
    }
    let Ok(outbound) = Arc::clone(&entry.outbound).try_lock_owned() else {
        return Err(status(
            StatusCode::CONFLICT,
            "the connection already has an event stream",
        ));
    };
    let attached = Attached { entry, outbound };
    // The comment line first, as the .NET server writes it (it lets browsers fire `onopen`).
    let opening = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b":\r\n")) });
    let events = stream::unfold(attached, |mut a| async move {
        match a.outbound.recv().await {
            Some(Outbound::Frame { bytes, .. }) => {
                let mut chunk = BytesMut::from(&event(&bytes)[..]);
                while let Ok(Outbound::Frame { bytes, .. }) = a.outbound.try_recv() {
                    chunk.put_slice(&event(&bytes));
                }
                Some((Ok::<_, Infallible>(chunk.freeze()), a))
            }
            Some(Outbound::Close | Outbound::Abort(_)) | None => None,
        }
    });
    let body = Body::from_stream(opening.chain(events));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONNECTION, "keep-alive"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::event;

    #[test]
    fn each_line_is_a_data_line() {
        assert_eq!(
            &event(b"{\"type\":6}\x1e")[..],
            b"data: {\"type\":6}\x1e\r\n\r\n"
        );
        assert_eq!(&event(b"a\r\nb")[..], b"data: a\r\ndata: b\r\n\r\n");
    }
}
