//! The long-polling transport: repeated `GET`s for what the server sends, `POST` for what the
//! client sends, `DELETE` to end.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::{Method, Url, header::HeaderMap};
use signalr_protocol::{TransferFormat, TransportKind};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::debug;

use crate::{
    Transport,
    endpoint::{Endpoint, on_started},
    error::{Result, TransportError},
    net::Net,
    options::HttpOptions,
    sse::next_chunk,
};

/// A long-polling connection: a background task polls, `recv` reads what it got.
#[derive(Debug)]
pub struct LongPollingTransport {
    endpoint: Endpoint,
    format: TransferFormat,
    request_timeout: Duration,
    received: mpsc::Receiver<Result<Bytes>>,
    poller: JoinHandle<()>,
    closed: bool,
}

struct Poller {
    endpoint: Endpoint,
    timeout: Duration,
    max: usize,
}

impl Poller {
    /// One poll: `Ok(Some(bytes))` with data, `Ok(None)` when the poll timed out empty, an error
    /// when the connection is over.
    async fn poll(&self, n: u64) -> Result<Option<Bytes>> {
        let mut url = self.endpoint.url.clone();
        // A cache buster, as the official clients add (they use a timestamp; a counter does too).
        url.query_pairs_mut().append_pair("_", &n.to_string());
        let response = match self
            .endpoint
            .send("poll", Method::GET, url, self.timeout, |r| r)
            .await
        {
            Ok(r) => r,
            // A poll that outlives the client timeout is abandoned and re-issued.
            Err(TransportError::Timeout { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match response.status().as_u16() {
            200 => {
                let body = match response.bytes().await {
                    Ok(b) => b,
                    Err(e) if e.is_timeout() => return Ok(None),
                    Err(e) => {
                        return Err(TransportError::Http {
                            what: "poll",
                            source: e.without_url().into(),
                        });
                    }
                };
                if body.len() > self.max.saturating_mul(64) {
                    return Err(TransportError::MessageTooLarge { max: self.max });
                }
                Ok(Some(body).filter(|b| !b.is_empty()))
            }
            204 => Err(TransportError::ClosedByServer),
            404 => Err(TransportError::ConnectionGone),
            status => Err(on_started("poll", status)),
        }
    }

    async fn run(self, tx: mpsc::Sender<Result<Bytes>>) {
        let mut n = 0;
        loop {
            n += 1;
            match self.poll(n).await {
                Ok(Some(data)) => {
                    // Waits while the reader is behind: backpressure stops the polling.
                    if tx.send(Ok(data)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    debug!(error = %e, "polling ended");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}

impl LongPollingTransport {
    /// Starts polling the connection at `url` (with `id`): the first poll must answer 200.
    pub(crate) async fn connect(
        net: &Arc<Net>,
        url: &Url,
        token: Option<&str>,
        headers: &HeaderMap,
        format: TransferFormat,
        options: &HttpOptions,
    ) -> Result<Self> {
        let endpoint = Endpoint::new(net, url, token, headers);
        let first = endpoint
            .send(
                "first poll",
                Method::GET,
                url.clone(),
                options.connect_timeout,
                |r| r,
            )
            .await?;
        let status = first.status().as_u16();
        if status != 200 {
            return Err(TransportError::Status {
                what: "first poll",
                status,
            });
        }
        let (tx, received) = mpsc::channel(16);
        if let Ok(body) = first.bytes().await {
            if !body.is_empty() {
                let _ = tx.send(Ok(body)).await;
            }
        }
        let poller = Poller {
            endpoint: endpoint.clone(),
            timeout: options.poll_timeout,
            max: options.max_message_size,
        };
        let poller = tokio::spawn(poller.run(tx));
        Ok(Self {
            endpoint,
            format,
            request_timeout: options.request_timeout,
            received,
            poller,
            closed: false,
        })
    }
}

impl Drop for LongPollingTransport {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

#[async_trait]
impl Transport for LongPollingTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::LongPolling
    }

    fn transfer_format(&self) -> TransferFormat {
        self.format
    }

    async fn send(&mut self, data: Bytes) -> Result<()> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        self.endpoint.post(data, self.request_timeout).await
    }

    async fn recv(&mut self) -> Option<Result<Bytes>> {
        // 204: the server closed the connection cleanly.
        next_chunk(&mut self.received, &mut self.closed).await
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.poller.abort();
        let response = self
            .endpoint
            .send(
                "DELETE",
                Method::DELETE,
                self.endpoint.url.clone(),
                self.request_timeout,
                |r| r,
            )
            .await?;
        // 404 on DELETE is harmless: the server already forgot the connection.
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            status => Err(TransportError::Status {
                what: "DELETE",
                status,
            }),
        }
    }
}
