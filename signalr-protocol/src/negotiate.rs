//! The negotiate response (`POST {hub}/negotiate`), parsed into what a client acts on.
//!
//! This is the body only; sending the request and following redirects is the transport crate's
//! job. Unknown properties (such as `tokenLifetimeSeconds`) are ignored, and transports or
//! transfer formats this crate does not know are skipped, as the official clients skip them.

use serde::{Deserialize, Serialize};

use crate::{
    error::{ProtocolError, Result},
    framing::TransferFormat,
};

/// A SignalR transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TransportKind {
    /// WebSockets: both transfer formats, stateful reconnect.
    WebSockets,
    /// Server-Sent Events: text only.
    ServerSentEvents,
    /// Long polling: both transfer formats.
    LongPolling,
}

impl TransportKind {
    /// Every transport, in the order a client tries them.
    pub const ALL: [Self; 3] = [Self::WebSockets, Self::ServerSentEvents, Self::LongPolling];

    /// The name used in negotiate responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSockets => "WebSockets",
            Self::ServerSentEvents => "ServerSentEvents",
            Self::LongPolling => "LongPolling",
        }
    }

    /// Parses a negotiate transport name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One entry of `availableTransports`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AvailableTransport {
    /// The transport.
    pub transport: TransportKind,
    /// The formats the server accepts on it.
    pub transfer_formats: Vec<TransferFormat>,
}

impl AvailableTransport {
    /// An entry for `transport` with `transfer_formats`.
    pub fn new(transport: TransportKind, transfer_formats: Vec<TransferFormat>) -> Self {
        Self {
            transport,
            transfer_formats,
        }
    }
}

/// A negotiate response that created a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NegotiatedConnection {
    /// `0` or `1`.
    pub negotiate_version: u32,
    /// The public connection id (what the hub sees).
    pub connection_id: String,
    /// Version 1 only: the secret that goes in the `id` query parameter.
    pub connection_token: Option<String>,
    /// What the server offers, in its order.
    pub available_transports: Vec<AvailableTransport>,
    /// Whether the server granted stateful reconnect.
    pub use_stateful_reconnect: bool,
}

impl NegotiatedConnection {
    /// A version `negotiate_version` response for `connection_id`, without a token and without
    /// stateful reconnect (see the `with_*` methods).
    pub fn new(
        negotiate_version: u32,
        connection_id: impl Into<String>,
        available_transports: Vec<AvailableTransport>,
    ) -> Self {
        Self {
            negotiate_version,
            connection_id: connection_id.into(),
            connection_token: None,
            available_transports,
            use_stateful_reconnect: false,
        }
    }

    /// Sets the connection token (version 1).
    #[must_use]
    pub fn with_connection_token(mut self, connection_token: Option<String>) -> Self {
        self.connection_token = connection_token;
        self
    }

    /// Sets whether stateful reconnect is granted.
    #[must_use]
    pub fn with_stateful_reconnect(mut self, use_stateful_reconnect: bool) -> Self {
        self.use_stateful_reconnect = use_stateful_reconnect;
        self
    }

    /// The value for the `id` query parameter: the connection token on version 1, the connection
    /// id on version 0.
    pub fn token(&self) -> &str {
        self.connection_token
            .as_deref()
            .unwrap_or(&self.connection_id)
    }

    /// The formats the server accepts on `transport`, or `None` when it does not offer it.
    pub fn formats_for(&self, transport: TransportKind) -> Option<&[TransferFormat]> {
        self.available_transports
            .iter()
            .find(|t| t.transport == transport)
            .map(|t| &t.transfer_formats[..])
    }
}

/// What a negotiate response tells the client to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiateResponse {
    /// Connect with one of the offered transports.
    Connection(NegotiatedConnection),
    /// Negotiate again at `url`, using `access_token` (when present) from now on.
    Redirect {
        /// The hub URL to negotiate with next.
        url: String,
        /// The token to use for that negotiate and the connection.
        access_token: Option<String>,
    },
    /// The server refused; the string is its reason. Try no transport.
    Error(String),
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(skip_serializing_if = "Option::is_none")]
    negotiate_version: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_transports: Option<Vec<WireTransport>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    use_stateful_reconnect: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(rename = "ProtocolVersion", skip_serializing)]
    classic_protocol_version: Option<serde_json::Value>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireTransport {
    transport: String,
    #[serde(default)]
    transfer_formats: Vec<String>,
}

fn invalid(reason: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidNegotiate {
        reason: reason.into(),
    }
}

impl NegotiateResponse {
    /// Parses a negotiate response body.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let wire: Wire = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("not a negotiate response object: {e}")))?;
        if wire.classic_protocol_version.is_some() {
            return Err(invalid(
                "the server is a classic ASP.NET SignalR server (`ProtocolVersion`), not ASP.NET Core SignalR",
            ));
        }
        if let Some(error) = wire.error {
            return Ok(Self::Error(error));
        }
        if let Some(url) = wire.url {
            return Ok(Self::Redirect {
                url,
                access_token: wire.access_token,
            });
        }
        let negotiate_version = match wire.negotiate_version {
            None => 0,
            Some(v) => v
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| invalid("`negotiateVersion` is not a non-negative integer"))?,
        };
        let connection_id = wire
            .connection_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("missing `connectionId`"))?;
        let connection_token = if negotiate_version >= 1 {
            Some(
                wire.connection_token
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid("version 1 response without `connectionToken`"))?,
            )
        } else {
            None
        };
        let available_transports = wire
            .available_transports
            .ok_or_else(|| invalid("missing `availableTransports`"))?
            .into_iter()
            .filter_map(|t| {
                Some(AvailableTransport {
                    transport: TransportKind::from_name(&t.transport)?,
                    transfer_formats: t
                        .transfer_formats
                        .iter()
                        .filter_map(|f| TransferFormat::from_name(f))
                        .collect(),
                })
            })
            .collect();
        Ok(Self::Connection(NegotiatedConnection {
            negotiate_version,
            connection_id,
            connection_token,
            available_transports,
            use_stateful_reconnect: wire.use_stateful_reconnect,
        }))
    }

    /// Serializes the response as a server sends it.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = match self {
            Self::Connection(c) => Wire {
                negotiate_version: Some(c.negotiate_version.into()),
                connection_id: Some(c.connection_id.clone()),
                connection_token: c.connection_token.clone(),
                available_transports: Some(
                    c.available_transports
                        .iter()
                        .map(|t| WireTransport {
                            transport: t.transport.as_str().to_owned(),
                            transfer_formats: t
                                .transfer_formats
                                .iter()
                                .map(|f| f.as_str().to_owned())
                                .collect(),
                        })
                        .collect(),
                ),
                use_stateful_reconnect: c.use_stateful_reconnect,
                ..Wire::default()
            },
            Self::Redirect { url, access_token } => Wire {
                url: Some(url.clone()),
                access_token: access_token.clone(),
                ..Wire::default()
            },
            Self::Error(error) => Wire {
                error: Some(error.clone()),
                ..Wire::default()
            },
        };
        // Strings, numbers and arrays always serialize.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_with_unknown_transport_and_fields() {
        let body = br#"{"negotiateVersion":1,"connectionId":"abc","connectionToken":"tok","tokenLifetimeSeconds":60,
            "availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]},
            {"transport":"WebTransport","transferFormats":["Binary"]},
            {"transport":"ServerSentEvents","transferFormats":["Text"]}]}"#;
        let NegotiateResponse::Connection(c) = NegotiateResponse::parse(body).unwrap() else {
            panic!()
        };
        assert_eq!(c.token(), "tok");
        assert_eq!(c.available_transports.len(), 2);
        assert_eq!(
            c.formats_for(TransportKind::ServerSentEvents),
            Some(&[TransferFormat::Text][..])
        );
        assert_eq!(
            NegotiateResponse::parse(&NegotiateResponse::Connection(c.clone()).to_json()).unwrap(),
            NegotiateResponse::Connection(c)
        );
    }

    #[test]
    fn version_0_uses_the_connection_id() {
        let NegotiateResponse::Connection(c) =
            NegotiateResponse::parse(br#"{"connectionId":"abc","availableTransports":[]}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!((c.negotiate_version, c.token()), (0, "abc"));
    }

    #[test]
    fn redirect_and_error() {
        assert_eq!(
            NegotiateResponse::parse(br#"{"url":"http://b/hub","accessToken":"t"}"#).unwrap(),
            NegotiateResponse::Redirect {
                url: "http://b/hub".into(),
                access_token: Some("t".into())
            }
        );
        assert_eq!(
            NegotiateResponse::parse(br#"{"error":"nope"}"#).unwrap(),
            NegotiateResponse::Error("nope".into())
        );
    }

    #[test]
    fn distinct_errors() {
        for (body, want) in [
            (&b"<html>"[..], "not a negotiate response object"),
            (br#"{"availableTransports":[]}"#, "missing `connectionId`"),
            (
                br#"{"negotiateVersion":1,"connectionId":"a","availableTransports":[]}"#,
                "without `connectionToken`",
            ),
            (br#"{"connectionId":"a"}"#, "missing `availableTransports`"),
            (
                br#"{"ProtocolVersion":"1.5","Url":"/signalr"}"#,
                "classic ASP.NET SignalR",
            ),
            (
                br#"{"negotiateVersion":"x","connectionId":"a","availableTransports":[]}"#,
                "`negotiateVersion`",
            ),
        ] {
            let err = NegotiateResponse::parse(body).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
