//! What every request of one connection shares: the HTTP client, the TLS configuration, the
//! proxy rules and the cookie jar. Built once per [`connect`](crate::connect) and kept by
//! [`Negotiated`](crate::Negotiated), so a stateful resume uses the same ones.

use std::{fmt, sync::Arc, time::Duration};

use reqwest::{RequestBuilder, Response, Url};

use crate::{
    cookies::CookieJar,
    error::{Result, TransportError},
    options::HttpOptions,
    proxy::Proxies,
    tls,
};

pub(crate) struct Net {
    pub(crate) http: reqwest::Client,
    pub(crate) tls: tls::Config,
    pub(crate) proxies: Proxies,
    pub(crate) cookies: Option<Arc<CookieJar>>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("proxies", &self.proxies)
            .field("cookies", &self.cookies)
            .finish_non_exhaustive()
    }
}

impl Net {
    pub(crate) fn new(options: &HttpOptions) -> Result<Arc<Self>> {
        let tls = tls::config(&options.tls)?;
        let http = if let Some(c) = &options.http_client {
            c.clone()
        } else {
            let builder = reqwest::Client::builder();
            #[cfg(feature = "rustls")]
            let builder = builder.tls_backend_preconfigured((*tls.rustls).clone());
            Proxies::apply(&options.proxy, builder)?
                .tcp_nodelay(true)
                .connect_timeout(options.connect_timeout)
                // SignalR redirects are negotiate bodies; HTTP redirects are not followed, so
                // that headers are never forwarded to a host we did not check.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| TransportError::Http {
                    what: "client setup",
                    source: e.into(),
                })?
        };
        Ok(Arc::new(Self {
            http,
            tls,
            proxies: Proxies::new(&options.proxy)?,
            cookies: options.cookies.clone(),
        }))
    }

    /// Sends `request` (to `url`, within `timeout`) with the jar's cookies, and stores what the response sets.
    /// A 407 is the proxy's refusal; failures are typed (timeouts, TLS, the proxy named).
    pub(crate) async fn send(
        &self,
        what: &'static str,
        mut request: RequestBuilder,
        url: &Url,
        timeout: Duration,
    ) -> Result<Response> {
        if let Some(jar) = &self.cookies {
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
        if let Some(jar) = &self.cookies {
            jar.store_from(url, response.headers());
        }
        if response.status() == reqwest::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            if let Ok(Some(route)) = self.proxies.route(url) {
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
            TransportError::Http { what, source } if connect => match self.proxies.route(url) {
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
