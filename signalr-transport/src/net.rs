//! What every request of a connection shares: the HTTP clients (their connection pools), the
//! TLS configuration, the proxy rules and the cookie jar. Built once, then used by every
//! negotiate, transport request, reconnect and stateful resume.

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use reqwest::{RequestBuilder, Response, Url};

use crate::{
    cookies::CookieJar,
    error::{Result, TransportError},
    options::HttpOptions,
    proxy::{Proxies, Proxy},
    tls,
};

/// What the connection attempts of one client share, built once from [`HttpOptions`]: the
/// TLS configuration (the operating system's trust store is read once, here), the proxy rules
/// and the cookie jar. Cheap to clone.
///
/// Each attempt made with [`connect_with`](crate::connect_with) gets HTTP connections of its
/// own: after a loss, pooled connections may lead into a half-open link, and a negotiate sent
/// on one would wait out its whole timeout. [`connect`](crate::connect) builds one per call.
#[derive(Clone, Debug)]
pub struct HttpClient {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tls: tls::Config,
    cookies: Option<Arc<CookieJar>>,
    /// The user's client ([`HttpOptions::http_client`]), used for every request when set.
    given: Option<reqwest::Client>,
    proxy: Proxy,
    connect_timeout: Duration,
}

impl HttpClient {
    /// Checks `options` (the proxy URL, the TLS roots and identity) and builds the client.
    pub fn new(options: &HttpOptions) -> Result<Self> {
        // Checked here; each attempt reads the rules again (the environment may change, and an
        // idle connection then keeps no matcher).
        Proxies::new(&options.proxy)?;
        Ok(Self {
            shared: Arc::new(Shared {
                tls: tls::config(&options.tls)?,
                cookies: options.cookies.clone(),
                given: options.http_client.clone(),
                proxy: options.proxy.clone(),
                connect_timeout: options.connect_timeout,
            }),
        })
    }

    /// A new attempt: the shared settings, and connection pools of its own.
    pub(crate) fn attempt(&self) -> Result<Arc<Net>> {
        Ok(Arc::new(Net {
            proxies: Proxies::new(&self.shared.proxy)?,
            shared: Arc::clone(&self.shared),
            direct: OnceLock::new(),
            proxied: OnceLock::new(),
        }))
    }
}

/// One connection attempt's HTTP side: negotiate and the transport it opens share it (the
/// transport's requests reuse negotiate's pooled connection); an event stream or a long-polling
/// transport keeps it for its life. A WebSocket does not, so no idle HTTP connection is held
/// beside it.
pub(crate) struct Net {
    shared: Arc<Shared>,
    proxies: Proxies,
    /// For requests that go direct: connections are pooled.
    direct: OnceLock<reqwest::Client>,
    /// For requests through a proxy: a connection each (see [`Net::http`]).
    proxied: OnceLock<reqwest::Client>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("shared", &self.shared)
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl Net {
    pub(crate) fn tls(&self) -> &tls::Config {
        &self.shared.tls
    }

    /// The settings this attempt was made with, for later attempts (a stateful resume).
    pub(crate) fn client(&self) -> HttpClient {
        HttpClient {
            shared: Arc::clone(&self.shared),
        }
    }

    pub(crate) fn proxies(&self) -> &Proxies {
        &self.proxies
    }

    pub(crate) fn cookies(&self) -> Option<&CookieJar> {
        self.shared.cookies.as_deref()
    }

    /// The reqwest client for a request to `url`. Through a proxy, each request has a
    /// connection of its own: proxies such as tinyproxy close the connection after every
    /// response without saying so (no `Connection: close`), and a request sent on it at that
    /// moment fails with "connection closed before message completed" (a send cannot be
    /// retried safely).
    pub(crate) fn http(&self, url: &Url) -> Result<&reqwest::Client> {
        if let Some(given) = &self.shared.given {
            return Ok(given);
        }
        let proxied = self.proxies().route(url)?.is_some();
        let cell = if proxied { &self.proxied } else { &self.direct };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let client = self.build(proxied)?;
        Ok(cell.get_or_init(|| client))
    }

    fn build(&self, proxied: bool) -> Result<reqwest::Client> {
        let builder = reqwest::Client::builder();
        #[cfg(feature = "rustls")]
        let builder = builder.tls_backend_preconfigured((*self.tls().rustls).clone());
        let mut builder = Proxies::apply(&self.shared.proxy, builder)?;
        if proxied {
            builder = builder.pool_max_idle_per_host(0);
        }
        builder
            .tcp_nodelay(true)
            .connect_timeout(self.shared.connect_timeout)
            // SignalR redirects are negotiate bodies; HTTP redirects are not followed, so that
            // headers are never forwarded to a host we did not check.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TransportError::Http {
                what: "client setup",
                source: e.into(),
            })
    }

    /// Sends `request` (to `url`, within `timeout`) with the jar's cookies, and stores what the
    /// response sets. A 407 is the proxy's refusal; failures are typed (timeouts, TLS, the
    /// proxy named).
    pub(crate) async fn send(
        &self,
        what: &'static str,
        mut request: RequestBuilder,
        url: &Url,
        timeout: Duration,
    ) -> Result<Response> {
        if let Some(jar) = self.cookies() {
            if let Some(cookie) = jar.header_for(url) {
                request = request.header(reqwest::header::COOKIE, cookie);
            }
        }
        // `Duration::MAX`: no limit (an event stream's body lasts as long as the connection).
        if timeout != Duration::MAX {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.error(what, e, url, timeout))?;
        if let Some(jar) = self.cookies() {
            jar.store_from(url, response.headers());
        }
        if response.status() == reqwest::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            if let Ok(Some(route)) = self.proxies().route(url) {
                return Err(TransportError::ProxyRefused {
                    proxy: route.name,
                    status: 407,
                });
            }
        }
        Ok(response)
    }

    /// A reqwest failure as a transport error. The URL inside reqwest's error is dropped
    /// (`without_url`) so that tokens in query strings never reach messages.
    pub(crate) fn error(
        &self,
        what: &'static str,
        e: reqwest::Error,
        url: &Url,
        timeout: Duration,
    ) -> TransportError {
        if e.is_timeout() {
            return TransportError::Timeout {
                what,
                after: timeout,
            };
        }
        let connect = e.is_connect();
        match tls::classify(what, e.without_url().into()) {
            TransportError::Http { what, source } if connect => match self.proxies().route(url) {
                Ok(Some(route)) => TransportError::Proxy {
                    proxy: route.name,
                    source,
                },
                _ => TransportError::Http { what, source },
            },
            other => other,
        }
    }
}
