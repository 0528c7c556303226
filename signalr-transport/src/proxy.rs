//! HTTP and HTTPS forward proxies, for every transport.
//!
//! Which proxy a URL goes through is decided by hyper-util's `Matcher`, the one reqwest itself
//! uses, so the WebSocket follows exactly the rules negotiate, SSE and long polling follow:
//! `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, in upper or lower case, by default.
//! reqwest sends the HTTP requests (forwarded to an `http` proxy for `http` URLs, tunnelled for
//! `https`); the WebSocket goes through a `CONNECT` tunnel written here, because the upgrade
//! is ours too (see `websocket.rs`) and because the tunnel must report the proxy's status code
//! and keep its reply within bounds, which hyper-util's `Tunnel` does not offer.

use std::fmt;

use hyper_util::client::proxy::matcher::Matcher;
use reqwest::{
    Url,
    header::{HeaderValue, PROXY_AUTHORIZATION},
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use crate::{
    error::{Result, TransportError},
    head::read_head,
};

/// Which proxy to use.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proxy {
    /// As the environment says, exactly as reqwest reads it: `HTTPS_PROXY` for `https`/`wss`
    /// hubs, `HTTP_PROXY` for `http`/`ws` (ignored when `REQUEST_METHOD` is set, as in CGI),
    /// `ALL_PROXY` for both, and `NO_PROXY` for the hosts that bypass them; each in upper or
    /// lower case. No proxy when none is set. The default.
    #[default]
    System,
    /// No proxy, whatever the environment says.
    None,
    /// `url` for every hub URL except the hosts in `no_proxy`.
    Url {
        /// `http://host:port` or `https://host:port` (TLS to the proxy itself); credentials as
        /// userinfo (`http://user:password@host:port`) are sent as `Proxy-Authorization: Basic`.
        url: String,
        /// Hosts that bypass the proxy, in `NO_PROXY`'s syntax (`localhost,.internal,10.0.0.0/8`).
        no_proxy: Option<String>,
    },
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("System"),
            Self::None => f.write_str("None"),
            Self::Url { url, no_proxy } => f
                .debug_struct("Url")
                .field("url", &display_name(url))
                .field("no_proxy", no_proxy)
                .finish(),
        }
    }
}

impl Proxy {
    /// `url` for every hub URL (credentials as userinfo).
    pub fn url(url: impl Into<String>) -> Self {
        Self::Url {
            url: url.into(),
            no_proxy: None,
        }
    }

    /// Hosts that bypass the proxy, in `NO_PROXY`'s syntax; only for [`Proxy::Url`].
    #[must_use]
    pub fn with_no_proxy(self, hosts: impl Into<String>) -> Self {
        match self {
            Self::Url { url, .. } => Self::Url {
                url,
                no_proxy: Some(hosts.into()),
            },
            other => other,
        }
    }
}

/// A proxy URL as it may be shown: `scheme://host:port`, without credentials.
pub(crate) fn display_name(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => "<invalid proxy URL>".into(),
    }
}

/// The proxy rules of one connection.
pub(crate) struct Proxies {
    matcher: Option<Matcher>,
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // hyper-util's Debug shows the proxy URIs without their credentials.
        f.debug_struct("Proxies")
            .field("matcher", &self.matcher)
            .finish()
    }
}

/// Where one request goes: the proxy, and the credentials it wants.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) proxy: Url,
    pub(crate) auth: Option<HeaderValue>,
    /// `scheme://host:port`, for errors and logs.
    pub(crate) name: String,
}

impl Route {
    /// `e` as the proxy's failure when it is a plain I/O or TLS-layer failure of the
    /// connection to the proxy; typed errors (a refused certificate, a malformed reply) stay.
    pub(crate) fn blame(&self, e: TransportError) -> TransportError {
        match e {
            TransportError::WebSocket(source) => TransportError::Proxy {
                proxy: self.name.clone(),
                source,
            },
            other => other,
        }
    }
}

impl Proxies {
    pub(crate) fn new(proxy: &Proxy) -> Result<Self> {
        let matcher = match proxy {
            Proxy::System => Some(Matcher::from_system()),
            Proxy::None => None,
            Proxy::Url { url, no_proxy } => {
                check_url(url)?;
                Some(
                    Matcher::builder()
                        .all(url.clone())
                        .no(no_proxy.clone().unwrap_or_default())
                        .build(),
                )
            }
        };
        Ok(Self { matcher })
    }

    /// The proxy for `url` (any of http, https, ws, wss), if one applies.
    pub(crate) fn route(&self, url: &Url) -> Result<Option<Route>> {
        let Some(matcher) = &self.matcher else {
            return Ok(None);
        };
        let scheme = match url.scheme() {
            "ws" | "http" => "http",
            _ => "https",
        };
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        let Ok(uri) = format!("{scheme}://{host}:{port}/").parse::<http::Uri>() else {
            return Ok(None);
        };
        let Some(intercept) = matcher.intercept(&uri) else {
            return Ok(None);
        };
        let text = intercept.uri().to_string();
        let name = display_name(&text);
        let proxy = Url::parse(&text).map_err(|e| TransportError::InvalidUrl {
            url: name.clone(),
            reason: format!("proxy URL: {e}"),
        })?;
        if !matches!(proxy.scheme(), "http" | "https") {
            return Err(TransportError::InvalidUrl {
                url: name,
                reason: format!(
                    "unsupported proxy scheme {:?} (http and https are)",
                    proxy.scheme()
                ),
            });
        }
        Ok(Some(Route {
            auth: intercept.basic_auth().cloned().map(|mut v| {
                v.set_sensitive(true);
                v
            }),
            proxy,
            name,
        }))
    }

    /// Applies the same rules to a reqwest client.
    pub(crate) fn apply(
        proxy: &Proxy,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder> {
        Ok(match proxy {
            // reqwest reads the environment itself, with the same matcher.
            Proxy::System => builder,
            Proxy::None => builder.no_proxy(),
            Proxy::Url { url, no_proxy } => {
                let p =
                    reqwest::Proxy::all(url.as_str()).map_err(|e| TransportError::InvalidUrl {
                        url: display_name(url),
                        reason: format!("proxy URL: {}", e.without_url()),
                    })?;
                builder
                    .proxy(p.no_proxy(no_proxy.as_deref().and_then(reqwest::NoProxy::from_string)))
            }
        })
    }
}

fn check_url(url: &str) -> Result<()> {
    let parsed = Url::parse(url).map_err(|e| TransportError::InvalidUrl {
        url: display_name(url),
        reason: format!("proxy URL: {e}"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(TransportError::InvalidUrl {
            url: display_name(url),
            reason: "a proxy URL is http://host:port or https://host:port".into(),
        });
    }
    Ok(())
}

/// The largest `CONNECT` reply head accepted.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// Asks the proxy on `io` for a tunnel to `host:port`; on success `io` carries the tunnel.
pub(crate) async fn tunnel<S>(io: &mut S, host: &str, port: u16, route: &Route) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
    if let Some(auth) = &route.auth {
        request.extend_from_slice(PROXY_AUTHORIZATION.as_str().as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    io.write_all(&request)
        .await
        .map_err(|e| route.blame(TransportError::WebSocket(e.into())))?;
    let head = read_head(io, MAX_CONNECT_HEAD, "proxy CONNECT")
        .await
        .map_err(|e| route.blame(e))?;
    if !(200..300).contains(&head.status) {
        return Err(TransportError::ProxyRefused {
            proxy: route.name.clone(),
            status: head.status,
        });
    }
    // The client speaks first in a tunnel (a TLS ClientHello, an upgrade request), so a proxy
    // that sends more than its reply is not speaking HTTP.
    if !head.rest.is_empty() {
        return Err(TransportError::MalformedResponse {
            what: "proxy CONNECT",
            reason: "data after the reply, before the client spoke".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hide_credentials() {
        assert_eq!(
            display_name("http://user:pa55@proxy.example:3128"),
            "http://proxy.example:3128"
        );
        assert_eq!(
            display_name("https://proxy.example"),
            "https://proxy.example:443"
        );
        let shown = format!("{:?}", Proxy::url("http://user:pa55@p.example:8080"));
        assert!(!shown.contains("pa55"), "{shown}");
    }

    #[test]
    fn explicit_routes_and_bypasses() {
        let proxies = Proxies::new(
            &Proxy::url("http://u:p@proxy.example:3128").with_no_proxy("local.example"),
        )
        .unwrap();
        let url = |s: &str| Url::parse(s).unwrap();
        let route = proxies
            .route(&url("wss://hub.example/hub"))
            .unwrap()
            .unwrap();
        assert_eq!(route.name, "http://proxy.example:3128");
        assert_eq!(route.auth.unwrap().to_str().unwrap(), "Basic dTpw");
        assert!(
            proxies
                .route(&url("ws://hub.example:81/hub"))
                .unwrap()
                .is_some()
        );
        assert!(
            proxies
                .route(&url("http://local.example/hub"))
                .unwrap()
                .is_none()
        );
        let none = Proxies::new(&Proxy::None).unwrap();
        assert!(none.route(&url("http://hub.example/")).unwrap().is_none());
        assert!(Proxies::new(&Proxy::url("socks5://p.example:1080")).is_err());
        assert!(Proxies::new(&Proxy::url("not a url")).is_err());
    }
}
