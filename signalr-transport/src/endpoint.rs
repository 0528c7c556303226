//! Where a negotiated connection's HTTP requests go: the connection URL with its token and
//! headers, shared by Server-Sent Events and long polling.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use reqwest::{
    Method, Response, Url,
    header::{AUTHORIZATION, HeaderMap},
};

use crate::{
    auth::bearer,
    error::{Result, TransportError},
    net::Net,
};

/// The connection URL (`…?id=…`) and what every request to it carries.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) net: Arc<Net>,
    pub(crate) url: Url,
    token: Option<String>,
    headers: HeaderMap,
}

impl Endpoint {
    pub(crate) fn new(net: &Arc<Net>, url: &Url, token: Option<&str>, headers: &HeaderMap) -> Self {
        Self {
            net: Arc::clone(net),
            url: url.clone(),
            token: token.map(str::to_owned),
            headers: headers.clone(),
        }
    }

    /// Sends a request to `url` (the connection URL, or a variant of it) with the headers, the
    /// token and the cookies; `extra` adds to it.
    pub(crate) async fn send(
        &self,
        what: &'static str,
        method: Method,
        url: Url,
        timeout: Duration,
        extra: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        let mut request = self
            .net
            .http(&url)?
            .request(method, url.clone())
            .headers(self.headers.clone());
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, bearer(token)?);
        }
        self.net.send(what, extra(request), &url, timeout).await
    }

    /// `POST`s what the client sends: 2xx is success, 404 means the server forgot the connection.
    pub(crate) async fn post(&self, data: Bytes, timeout: Duration) -> Result<()> {
        let response = self
            .send("send", Method::POST, self.url.clone(), timeout, |r| {
                r.body(data)
            })
            .await?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(TransportError::ConnectionGone),
            status => Err(on_started("send", status)),
        }
    }
}

/// A failure status on a request of a started connection: 401 and 403 mean the credentials
/// expired (a new connection, with a fresh token, may succeed).
pub(crate) fn on_started(what: &'static str, status: u16) -> TransportError {
    match status {
        401 | 403 => TransportError::Unauthorized { what, status },
        _ => TransportError::Status { what, status },
    }
}
