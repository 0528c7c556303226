//! `POST {hub}/negotiate`, with SignalR redirects.

use std::sync::Arc;

use reqwest::{
    Url,
    header::{AUTHORIZATION, HeaderMap},
};
use signalr_protocol::{NegotiateResponse, NegotiatedConnection};
use tracing::debug;

use crate::{
    auth::{TokenSource, bearer, token},
    error::{Result, TransportError},
    net::Net,
    options::{CrossOriginRedirects, HttpOptions},
    redact::{Redacted, redact},
};

/// The outcome of negotiate: the connection and how to reach it.
#[derive(Clone)]
#[non_exhaustive]
pub struct Negotiated {
    /// The hub URL after redirects: the base for transport requests.
    pub url: Url,
    /// What the server said.
    pub connection: NegotiatedConnection,
    pub(crate) token: TokenSource,
    pub(crate) headers: HeaderMap,
    /// What negotiate's requests were made with: the resume of a stateful connection uses
    /// the same TLS configuration, proxy rules and cookie jar.
    pub(crate) client: crate::HttpClient,
}

impl std::fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Negotiated")
            .field("url", &Redacted(self.url.as_str()))
            .field("connection_id", &self.connection.connection_id)
            .field("negotiate_version", &self.connection.negotiate_version)
            .field("transports", &self.connection.available_transports)
            .field(
                "stateful_reconnect",
                &self.connection.use_stateful_reconnect,
            )
            .finish_non_exhaustive()
    }
}

impl Negotiated {
    /// Opens a new WebSocket to the same connection (same token, no negotiate): how a client
    /// resumes a stateful connection after losing its socket.
    pub async fn reconnect_websocket(
        &self,
        format: signalr_protocol::TransferFormat,
        options: &HttpOptions,
    ) -> Result<crate::WebSocketTransport> {
        let token = token(&self.token, options).await?;
        let net = self.client.attempt()?;
        crate::WebSocketTransport::connect(
            &net,
            &self.connect_url(),
            token.as_deref(),
            &self.headers,
            format,
            options,
        )
        .await
    }

    /// The URL transports connect to: the hub URL with `id=<connection token>`.
    pub fn connect_url(&self) -> Url {
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("id", self.connection.token());
        url
    }
}

/// The `negotiate` URL for a hub URL: `/negotiate` appended to the path, the query kept,
/// `negotiateVersion=1` added unless present.
pub(crate) fn negotiate_url(base: &Url, stateful: bool) -> Url {
    let mut url = base.clone();
    let path = if base.path().ends_with('/') {
        format!("{}negotiate", base.path())
    } else {
        format!("{}/negotiate", base.path())
    };
    url.set_path(&path);
    let has_version = base.query_pairs().any(|(k, _)| k == "negotiateVersion");
    {
        let mut q = url.query_pairs_mut();
        if !has_version {
            q.append_pair("negotiateVersion", "1");
        }
        if stateful {
            q.append_pair("useStatefulReconnect", "true");
        }
    }
    url
}

/// Where the redirect chain stands: the URL to negotiate with next and the credentials for it.
struct Hop {
    url: Url,
    source: TokenSource,
    headers: HeaderMap,
}

impl Hop {
    /// One negotiate request at this hop.
    async fn request(
        &self,
        net: &Net,
        options: &HttpOptions,
        attempt: u32,
    ) -> Result<NegotiateResponse> {
        let target = negotiate_url(&self.url, options.stateful_reconnect);
        debug!(url = %Redacted(target.as_str()), attempt, "negotiate");
        // A 401 with a token from the factory asks the factory once more (the token may have
        // expired), as the official clients do; a second 401 is the answer.
        let mut refreshed = false;
        let response = loop {
            let mut request = net
                .http(&target)?
                .post(target.clone())
                .headers(self.headers.clone());
            if let Some(token) = token(&self.source, options).await? {
                request = request.header(AUTHORIZATION, bearer(&token)?);
            }
            let response = net
                .send("negotiate", request, &target, options.request_timeout)
                .await?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED
                && matches!(self.source, TokenSource::Factory)
                && !refreshed
            {
                debug!("negotiate answered 401; asking the token factory again");
                refreshed = true;
                continue;
            }
            break response;
        };
        let status = response.status().as_u16();
        if status != 200 {
            return Err(TransportError::Status {
                what: "negotiate",
                status,
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| net.error("negotiate", e, &target, options.request_timeout))?;
        NegotiateResponse::parse(&body).map_err(TransportError::InvalidNegotiate)
    }

    /// Moves to a redirect's URL, checking it and deciding which credentials go along.
    fn follow(
        &mut self,
        next: &str,
        access_token: Option<String>,
        origin: &url::Origin,
        options: &HttpOptions,
    ) -> Result<()> {
        let next = Url::parse(next).map_err(|e| TransportError::InvalidUrl {
            url: redact(next),
            reason: e.to_string(),
        })?;
        if next == self.url {
            return Err(TransportError::RedirectLoop {
                url: redact(next.as_str()),
            });
        }
        if self.url.scheme() == "https" && next.scheme() != "https" {
            return Err(TransportError::InsecureRedirect {
                url: redact(next.as_str()),
            });
        }
        let redirect_token = access_token.map(TokenSource::Fixed);
        let current = std::mem::replace(&mut self.source, TokenSource::None);
        self.source = if next.origin() == *origin {
            redirect_token.unwrap_or(current)
        } else {
            match options.cross_origin_redirects {
                CrossOriginRedirects::Refuse => {
                    let reason = "redirect to another origin refused".into();
                    return Err(TransportError::InvalidUrl {
                        url: redact(next.as_str()),
                        reason,
                    });
                }
                CrossOriginRedirects::KeepCredentials => redirect_token.unwrap_or(current),
                // The default: nothing of the user's goes to a host they did not name.
                _ => {
                    self.headers.clear();
                    redirect_token.unwrap_or(TokenSource::None)
                }
            }
        };
        debug!(to = %Redacted(next.as_str()), "negotiate redirect");
        self.url = next;
        Ok(())
    }
}

/// Negotiates with the hub at `url`, following redirects as `options` allow.
pub async fn negotiate(url: &Url, options: &HttpOptions) -> Result<Negotiated> {
    negotiate_with(&crate::HttpClient::new(options)?.attempt()?, url, options).await
}

pub(crate) async fn negotiate_with(
    net: &Arc<Net>,
    url: &Url,
    options: &HttpOptions,
) -> Result<Negotiated> {
    let origin = url.origin();
    let source = if options.access_token_factory.is_some() {
        TokenSource::Factory
    } else {
        TokenSource::None
    };
    let mut hop = Hop {
        url: url.clone(),
        source,
        headers: options.headers.clone(),
    };
    let limit = options.max_redirects.clamp(1, 100);
    for attempt in 1..=limit {
        match hop.request(net, options, attempt).await? {
            NegotiateResponse::Error(e) => return Err(TransportError::Negotiate(e)),
            NegotiateResponse::Connection(connection) => {
                if connection.use_stateful_reconnect && !options.stateful_reconnect {
                    return Err(TransportError::UnrequestedStatefulReconnect);
                }
                return Ok(Negotiated {
                    url: hop.url,
                    connection,
                    token: hop.source,
                    headers: hop.headers,
                    client: net.client(),
                });
            }
            NegotiateResponse::Redirect {
                url: next,
                access_token,
            } => {
                if attempt == limit {
                    return Err(TransportError::RedirectLimit { limit });
                }
                hop.follow(&next, access_token, &origin, options)?;
            }
            _ => {
                return Err(TransportError::Negotiate(
                    "unsupported negotiate response".into(),
                ));
            }
        }
    }
    Err(TransportError::RedirectLimit { limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_urls() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            negotiate_url(&u("http://h/hub"), false).as_str(),
            "http://h/hub/negotiate?negotiateVersion=1"
        );
        assert_eq!(
            negotiate_url(&u("http://h/hub/"), false).as_str(),
            "http://h/hub/negotiate?negotiateVersion=1"
        );
        assert_eq!(
            negotiate_url(&u("http://h/hub?tenant=a"), true).as_str(),
            "http://h/hub/negotiate?tenant=a&negotiateVersion=1&useStatefulReconnect=true"
        );
        assert_eq!(
            negotiate_url(&u("http://h/hub?negotiateVersion=0"), false).as_str(),
            "http://h/hub/negotiate?negotiateVersion=0"
        );
    }
}
