//! Choosing a transport: negotiate, then the allowed transports the server offers for the
//! transfer format, in order, negotiating again after each failure (the token is spent).

use std::sync::Arc;

use reqwest::Url;
use signalr_protocol::{TransferFormat, TransportKind};
use tracing::{debug, warn};

use crate::{
    Transport,
    auth::{TokenSource, token},
    error::{Result, TransportError},
    long_polling::LongPollingTransport,
    negotiate::{Negotiated, negotiate_with},
    net::{HttpClient, Net},
    options::HttpOptions,
    redact::redact,
    sse::SseTransport,
    websocket::WebSocketTransport,
};

/// A started transport and what negotiate said about the connection.
#[derive(Debug)]
#[non_exhaustive]
pub struct Connection {
    /// The transport, ready for the handshake.
    pub transport: Box<dyn Transport>,
    /// `None` when negotiation was skipped.
    pub negotiated: Option<Negotiated>,
}

impl Connection {
    /// The connection id the server gave (what the hub sees); `None` without negotiate.
    pub fn connection_id(&self) -> Option<&str> {
        self.negotiated
            .as_ref()
            .map(|n| n.connection.connection_id.as_str())
    }

    /// Whether the server granted stateful reconnect.
    pub fn stateful_reconnect(&self) -> bool {
        self.negotiated
            .as_ref()
            .is_some_and(|n| n.connection.use_stateful_reconnect)
    }
}

/// Parses a hub URL; `ws`/`wss` are accepted and negotiate over `http`/`https`.
pub fn hub_url(url: &str) -> Result<Url> {
    let mut parsed = Url::parse(url).map_err(|e| TransportError::InvalidUrl {
        url: redact(url),
        reason: e.to_string(),
    })?;
    let http = match parsed.scheme() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => {
            return Err(TransportError::InvalidUrl {
                url: redact(url),
                reason: format!("unsupported scheme {other:?}"),
            });
        }
    };
    parsed
        .set_scheme(http)
        .map_err(|()| TransportError::InvalidUrl {
            url: redact(url),
            reason: "cannot use this scheme".into(),
        })?;
    Ok(parsed)
}

/// Negotiates (unless skipped) and starts the first transport that works.
///
/// Transports are tried in the order of `options.transports` among those the server offers
/// with `format` (MessagePack needs `Binary`, so never Server-Sent Events). Each failure is kept
/// and returned in [`TransportError::AllTransportsFailed`].
pub async fn connect(
    url: &str,
    format: TransferFormat,
    options: &HttpOptions,
) -> Result<Connection> {
    connect_with(&HttpClient::new(options)?, url, format, options).await
}

/// [`connect`] with a [`HttpClient`] built once: what a client that reconnects uses, so that
/// every attempt shares one connection pool, TLS configuration and cookie jar. `client` must
/// have been built from `options` (the options still say which transports, tokens, headers and
/// timeouts to use).
pub async fn connect_with(
    client: &HttpClient,
    url: &str,
    format: TransferFormat,
    options: &HttpOptions,
) -> Result<Connection> {
    let url = hub_url(url)?;
    let net = &client.attempt()?;
    if options.skip_negotiation {
        if !options.transports.contains(&TransportKind::WebSockets) {
            return Err(TransportError::SkipNegotiationNeedsWebSockets);
        }
        let source = if options.access_token_factory.is_some() {
            TokenSource::Factory
        } else {
            TokenSource::None
        };
        let token = token(&source, options).await?;
        let ws = WebSocketTransport::connect(
            net,
            &url,
            token.as_deref(),
            &options.headers,
            format,
            options,
        )
        .await?;
        return Ok(Connection {
            transport: Box::new(ws),
            negotiated: None,
        });
    }
    let mut failures: Vec<(TransportKind, TransportError)> = Vec::new();
    loop {
        let negotiated = negotiate_with(net, &url, options).await?;
        let tried: Vec<TransportKind> = failures.iter().map(|(k, _)| *k).collect();
        let candidate = options.transports.iter().copied().find(|kind| {
            !tried.contains(kind)
                && negotiated
                    .connection
                    .formats_for(*kind)
                    .is_some_and(|formats| formats.contains(&format))
        });
        let Some(kind) = candidate else {
            return Err(if failures.is_empty() {
                TransportError::NoCommonTransport
            } else {
                TransportError::AllTransportsFailed { failures }
            });
        };
        debug!(transport = kind.as_str(), "starting transport");
        match open_with(net, kind, &negotiated, format, options).await {
            Ok(transport) => {
                return Ok(Connection {
                    transport,
                    negotiated: Some(negotiated),
                });
            }
            Err(e) => {
                warn!(transport = kind.as_str(), error = %e, "transport failed to start; trying the next");
                failures.push((kind, e));
            }
        }
    }
}

/// Opens `kind` on a negotiated connection: used by [`connect`], and to resume a stateful
/// connection on a new WebSocket with the same connection token. The requests go out with what
/// negotiate used: the same TLS configuration, proxy rules and cookie jar.
pub async fn open(
    kind: TransportKind,
    negotiated: &Negotiated,
    format: TransferFormat,
    options: &HttpOptions,
) -> Result<Box<dyn Transport>> {
    open_with(
        &negotiated.client.attempt()?,
        kind,
        negotiated,
        format,
        options,
    )
    .await
}

/// [`open`] on the attempt `net` that negotiated (its pooled connection is reused).
async fn open_with(
    net: &Arc<Net>,
    kind: TransportKind,
    negotiated: &Negotiated,
    format: TransferFormat,
    options: &HttpOptions,
) -> Result<Box<dyn Transport>> {
    let url = negotiated.connect_url();
    let token = token(&negotiated.token, options).await?;
    let token = token.as_deref();
    let headers = &negotiated.headers;
    let opened: Result<Box<dyn Transport>> = match kind {
        TransportKind::ServerSentEvents => {
            SseTransport::connect(net, &url, token, headers, options)
                .await
                .map(|t| Box::new(t) as _)
        }
        TransportKind::LongPolling => {
            LongPollingTransport::connect(net, &url, token, headers, format, options)
                .await
                .map(|t| Box::new(t) as _)
        }
        _ => WebSocketTransport::connect(net, &url, token, headers, format, options)
            .await
            .map(|t| Box::new(t) as _),
    };
    opened.map_err(|e| match e {
        // Negotiate just created the connection; a 404 means another instance answered.
        TransportError::Status { what, status: 404 } => TransportError::UnknownConnection { what },
        other => other,
    })
}
