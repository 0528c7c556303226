//! The HTTP side: negotiate, the three transports on the hub URL, and the admin controls.

// `Err(Response)` is the refusal handed straight back to axum; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

mod admin;
mod long_polling;
mod sse;
mod websocket;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequestParts as _, Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use signalr_protocol::{
    AvailableTransport, NegotiateResponse, NegotiatedConnection, TransferFormat, TransportKind,
};

use crate::{app::App, wire::ConnEntry};

type Params = Query<HashMap<String, String>>;

pub(crate) fn router(app: Arc<App>) -> Router {
    let hub = app.config.hub_path.trim_end_matches('/').to_owned();
    let mut router = Router::new()
        .route(&format!("{hub}/negotiate"), post(negotiate))
        .route(&hub, get(connect).post(send).delete(delete));
    if app.config.admin {
        router = router
            .route("/admin/abort", post(admin::abort))
            .route("/admin/refuse", post(admin::refuse))
            .route("/admin/blackhole", post(admin::blackhole));
    }
    router.with_state(app)
}

fn status(code: StatusCode, text: &'static str) -> Response {
    (code, text).into_response()
}

/// Who made a request: the user its token stands for, when `ServerConfig::users` is set.
type User = Option<Arc<str>>;

/// The request's user when it may go on; otherwise the response that refuses it.
fn gate(
    app: &App,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<User, Response> {
    if app.refusing() {
        return Err(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is refusing connections",
        ));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = params.get("access_token").map(String::as_str);
    let unauthorized = || status(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    if let Some(required) = app.config.required_token.as_deref() {
        if bearer != Some(required) && query != Some(required) {
            return Err(unauthorized());
        }
    }
    let users = &app.config.users;
    if users.is_empty() {
        return Ok(None);
    }
    bearer
        .or(query)
        .and_then(|token| users.get(token))
        .map(|user| Some(Arc::from(user.as_str())))
        .ok_or_else(unauthorized)
}

fn formats(kind: TransportKind) -> Vec<TransferFormat> {
    match kind {
        TransportKind::ServerSentEvents => vec![TransferFormat::Text],
        _ => vec![TransferFormat::Text, TransferFormat::Binary],
    }
}

async fn negotiate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let user = match gate(&app, &headers, &params) {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let config = &app.config;
    let body = if let Some(redirect) = &config.redirect {
        NegotiateResponse::Redirect {
            url: redirect.url.clone(),
            access_token: redirect.access_token.clone(),
        }
    } else {
        match params.get("negotiateVersion").map(|v| v.parse::<u32>()) {
            Some(Err(_)) => {
                NegotiateResponse::Error("The client requested an invalid protocol version.".into())
            }
            requested => {
                let version = requested
                    .and_then(Result::ok)
                    .unwrap_or(0)
                    .min(config.negotiate_version);
                let stateful = config.stateful_reconnect
                    && params
                        .get("useStatefulReconnect")
                        .is_some_and(|v| v == "true");
                let entry = app.create_connection(true, version == 0, stateful, user);
                let mut c = NegotiatedConnection::new(
                    version,
                    entry.connection_id.to_string(),
                    config
                        .transports
                        .iter()
                        .map(|&t| AvailableTransport::new(t, formats(t)))
                        .collect(),
                );
                if version >= 1 {
                    c = c.with_connection_token(entry.token.clone());
                }
                NegotiateResponse::Connection(c.with_stateful_reconnect(stateful))
            }
        }
    };
    ([(header::CONTENT_TYPE, "application/json")], body.to_json()).into_response()
}

/// The connection named by `id`, or the response that says why there is none; 403 when it
/// belongs to another user than `user`.
fn lookup(
    app: &App,
    params: &HashMap<String, String>,
    user: &User,
) -> Result<Arc<ConnEntry>, Response> {
    let id = params
        .get("id")
        .ok_or_else(|| status(StatusCode::BAD_REQUEST, "the connection id is missing"))?;
    let entry = app
        .entry(id)
        .ok_or_else(|| status(StatusCode::NOT_FOUND, "no connection with this id"))?;
    if entry.user != *user {
        tracing::info!(connection_id = %entry.connection_id, "refused a request from another user");
        return Err(status(
            StatusCode::FORBIDDEN,
            "the connection belongs to another user",
        ));
    }
    if entry.expired() {
        tracing::info!(connection_id = %entry.connection_id, "refused a request: the token expired");
        return Err(status(
            StatusCode::UNAUTHORIZED,
            "the access token of this connection expired",
        ));
    }
    Ok(entry)
}

fn offered(app: &App, kind: TransportKind) -> Result<(), Response> {
    if app.config.transports.contains(&kind) {
        Ok(())
    } else {
        Err(status(
            StatusCode::NOT_FOUND,
            "this transport is not enabled",
        ))
    }
}

/// The connection a request (POST, DELETE) names, when its caller may use it.
fn requested(
    app: &App,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Arc<ConnEntry>, Response> {
    let user = gate(app, headers, params)?;
    lookup(app, params, &user)
}

/// `GET {hub}`: a WebSocket upgrade, an SSE stream or a long poll, by the request's headers.
async fn connect(State(app): State<Arc<App>>, Query(params): Params, request: Request) -> Response {
    let headers = request.headers();
    let user = match gate(&app, headers, &params) {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let result = if is_upgrade {
        let (mut parts, _body) = request.into_parts();
        match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => websocket::connect(&app, &params, &user, upgrade),
            Err(rejection) => Err(rejection.into_response()),
        }
    } else if wants_sse {
        sse::connect(&app, &params, &user)
    } else {
        long_polling::poll(&app, &params, &user).await
    };
    result.unwrap_or_else(|refused| refused)
}

/// `POST {hub}`: bytes from an SSE or long-polling client.
async fn send(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Params,
    body: Bytes,
) -> Response {
    let entry = match requested(&app, &headers, &params) {
        Ok(e) => e,
        Err(refused) => return refused,
    };
    // As ASP.NET Core's HttpConnectionDispatcher.ProcessSend: refused on a WebSocket
    // connection (405) or one that has ended (404), and accepted before any transport has
    // connected (a long-polling client may POST its handshake before its first poll).
    match entry.transport() {
        Some(TransportKind::WebSockets) => {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST requests are not allowed for WebSocket connections.",
            );
        }
        None => {
            if !entry.send_early(body).await {
                return status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too much data before a transport connected",
                );
            }
        }
        Some(_) => {
            if entry.inbound.send((0, body)).await.is_err() {
                return status(StatusCode::NOT_FOUND, "the connection has ended");
            }
        }
    }
    StatusCode::OK.into_response()
}

/// `DELETE {hub}`: a long-polling client ends its connection.
async fn delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let entry = match requested(&app, &headers, &params) {
        Ok(e) => e,
        Err(refused) => return refused,
    };
    if entry.transport() != Some(TransportKind::LongPolling) {
        return status(
            StatusCode::BAD_REQUEST,
            "DELETE is for long-polling connections",
        );
    }
    let _ = entry.control.send(crate::wire::Control::End);
    status(StatusCode::ACCEPTED, "")
}
