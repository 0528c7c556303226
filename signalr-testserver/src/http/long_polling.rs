//! The long-polling transport: `GET` polls (held up to the poll timeout), `POST` sends,
//! `DELETE` ends.

use std::{collections::HashMap, sync::Arc, sync::atomic::Ordering};

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use signalr_protocol::TransportKind;

use super::{User, lookup, offered, status};
use crate::{
    app::App,
    wire::{ConnEntry, Control, Outbound},
};

/// Tells the session a poll is in progress (the disconnect timeout waits); it hears the end
/// however the poll ends.
struct Polling(Arc<ConnEntry>);

impl Polling {
    fn start(entry: Arc<ConnEntry>) -> Self {
        let _ = entry.control.send(Control::Polling(true));
        Self(entry)
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        let _ = self.0.control.send(Control::Polling(false));
    }
}

pub(super) async fn poll(
    app: &Arc<App>,
    params: &HashMap<String, String>,
    user: &User,
) -> Result<Response, Response> {
    offered(app, TransportKind::LongPolling)?;
    let entry = lookup(app, params, user)?;
    if !entry.bind(TransportKind::LongPolling) {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "the connection uses another transport",
        ));
    }
    let _polling = Polling::start(Arc::clone(&entry));
    if entry.first_poll.swap(false, Ordering::AcqRel) {
        // The first poll of a new connection is answered at once: the transport is "open".
        return Ok(StatusCode::OK.into_response());
    }
    let Ok(mut outbound) = Arc::clone(&entry.outbound).try_lock_owned() else {
        return Err(status(StatusCode::CONFLICT, "another poll is in progress"));
    };
    let Ok(first) = tokio::time::timeout(app.config.poll_timeout, outbound.recv()).await else {
        // Nothing to send within the poll timeout: an empty 200, and the client polls again.
        return Ok(StatusCode::OK.into_response());
    };
    let mut body = BytesMut::new();
    let mut next = first;
    loop {
        match next {
            Some(Outbound::Frame { bytes, .. }) => body.extend_from_slice(&bytes),
            Some(Outbound::Close | Outbound::Abort(_)) | None => break,
        }
        match outbound.try_recv() {
            Ok(more) => next = Some(more),
            Err(_) => break,
        }
    }
    if body.is_empty() {
        // The connection ended. As ASP.NET Core's `HttpConnectionDispatcher` (it disposes and
        // removes the connection once a poll has read 204), one poll says so; later polls, and
        // a DELETE, find no such connection (404), so a client that polls again learns that
        // the connection is gone instead of reading 204 until the disconnect timeout.
        app.registry.forget(&entry);
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        body.freeze(),
    )
        .into_response())
}
