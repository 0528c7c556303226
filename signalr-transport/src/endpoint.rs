//! Where a negotiated connection's HTTP requests go: the connection URL with its token and
//! headers, shared by Server-Sent Events and long polling.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{
    Method, RequestBuilder, Url,
    header::{AUTHORIZATION, HeaderMap},
};

use crate::{
    error::{Result, TransportError},
    negotiate::bearer,
};

/// The connection URL (`…?id=…`) and what every request to it carries.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) client: reqwest::Client,
    pub(crate) url: Url,
    token: Option<String>,
    headers: HeaderMap,
}

impl Endpoint {
    pub(crate) fn new(
        client: &reqwest::Client,
        url: &Url,
        token: Option<&str>,
        headers: &HeaderMap,
    ) -> Self {
        Self {
            client: client.clone(),
            url: url.clone(),
            token: token.map(str::to_owned),
            headers: headers.clone(),
        }
    }

    /// A request to `url` (the connection URL, or a variant of it) with the headers and token.
    pub(crate) fn request(&self, method: Method, url: Url) -> Result<RequestBuilder> {
        let mut request = self
            .client
            .request(method, url)
            .headers(self.headers.clone());
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, bearer(token)?);
        }
        Ok(request)
    }

    /// `POST`s what the client sends: 2xx is success, 404 means the server forgot the connection.
    pub(crate) async fn post(&self, data: Bytes, timeout: Duration) -> Result<()> {
        let request = self
            .request(Method::POST, self.url.clone())?
            .timeout(timeout)
            .body(data);
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                TransportError::Timeout {
                    what: "send",
                    after: timeout,
                }
            } else {
                TransportError::Http {
                    what: "send",
                    source: e.without_url().into(),
                }
            }
        })?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(TransportError::ConnectionGone),
            status => Err(TransportError::Status {
                what: "send",
                status,
            }),
        }
    }
}
