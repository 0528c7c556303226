//! The Server-Sent Events transport: a streaming `GET` (text only) for what the server sends,
//! `POST` for what the client sends.
//!
//! Parsing is eventsource-stream's (lenient, like the WHATWG spec: CR, LF and CRLF line ends,
//! comments, `data:` with or without a space). The bytes before it are checked so that no line
//! grows past the maximum message size, which the parser alone would buffer without bound.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use async_trait::async_trait;
use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt as _};
use reqwest::{
    Url,
    header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, HeaderMap},
};
use signalr_protocol::{TransferFormat, TransportKind};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::debug;

use crate::{
    Transport,
    endpoint::Endpoint,
    error::{BoxError, Result, TransportError},
    negotiate::{bearer, http_error},
    options::HttpOptions,
    redact::Redacted,
};

/// A connected event stream plus the URL to `POST` to.
#[derive(Debug)]
pub struct SseTransport {
    endpoint: Endpoint,
    request_timeout: std::time::Duration,
    events: mpsc::Receiver<Result<Bytes>>,
    reader: JoinHandle<()>,
    closed: bool,
}

/// Fails the byte stream when a line grows beyond `max` bytes.
struct LineLimit<S> {
    inner: S,
    max: usize,
    line: usize,
}

impl<S: Stream<Item = std::result::Result<Bytes, reqwest::Error>> + Unpin> Stream for LineLimit<S> {
    type Item = std::result::Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                match memchr_last_newline(&chunk) {
                    Some(i) => self.line = chunk.len() - i - 1,
                    None => self.line += chunk.len(),
                }
                if self.line > self.max {
                    return Poll::Ready(Some(Err(Box::new(TransportError::MessageTooLarge {
                        max: self.max,
                    }))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.without_url().into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn memchr_last_newline(chunk: &[u8]) -> Option<usize> {
    chunk.iter().rposition(|&b| b == b'\n' || b == b'\r')
}

impl SseTransport {
    /// Opens the event stream at `url` (with `id`), sending `token` as a bearer header (and, if
    /// the options say so, as `access_token`).
    pub async fn connect(
        client: &reqwest::Client,
        url: &Url,
        token: Option<&str>,
        headers: &HeaderMap,
        options: &HttpOptions,
    ) -> Result<Self> {
        let mut stream_url = url.clone();
        if let (Some(token), true) = (token, options.access_token_in_query) {
            stream_url
                .query_pairs_mut()
                .append_pair("access_token", token);
        }
        debug!(url = %Redacted(stream_url.as_str()), "opening event stream");
        let mut request = client
            .get(stream_url)
            .headers(headers.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, bearer(token)?);
        }
        let response = tokio::time::timeout(options.connect_timeout, request.send())
            .await
            .map_err(|_| TransportError::Timeout {
                what: "event stream connect",
                after: options.connect_timeout,
            })?
            .map_err(|e| http_error("event stream", e, options))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(TransportError::Status {
                what: "event stream",
                status,
            });
        }
        let (tx, events) = mpsc::channel(64);
        // The byte stream is read by its own task so that `recv` is cancel-safe.
        let limited = LineLimit {
            inner: response.bytes_stream(),
            max: options.max_message_size,
            line: 0,
        };
        let reader = tokio::spawn(async move {
            let mut events = limited.eventsource();
            while let Some(event) = events.next().await {
                let item = match event {
                    Ok(e) => Ok(Bytes::from(e.data)),
                    Err(e) => Err(TransportError::Http {
                        what: "event stream",
                        source: e.to_string().into(),
                    }),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
            let _ = tx.send(Err(TransportError::ClosedByServer)).await;
        });
        Ok(Self {
            endpoint: Endpoint::new(client, url, token, headers),
            request_timeout: options.request_timeout,
            events,
            reader,
            closed: false,
        })
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The next chunk a background reader task delivered (shared with long polling): its
/// `ClosedByServer` (or its end) is a clean close, `None`; any other error ends the transport.
pub(crate) async fn next_chunk(
    received: &mut mpsc::Receiver<Result<Bytes>>,
    closed: &mut bool,
) -> Option<Result<Bytes>> {
    if *closed {
        return None;
    }
    match received.recv().await {
        Some(Err(TransportError::ClosedByServer)) | None => {
            *closed = true;
            None
        }
        Some(Err(e)) => {
            *closed = true;
            Some(Err(e))
        }
        Some(Ok(data)) => Some(Ok(data)),
    }
}

#[async_trait]
impl Transport for SseTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::ServerSentEvents
    }

    fn transfer_format(&self) -> TransferFormat {
        TransferFormat::Text
    }

    async fn send(&mut self, data: Bytes) -> Result<()> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        self.endpoint.post(data, self.request_timeout).await
    }

    async fn recv(&mut self) -> Option<Result<Bytes>> {
        // EventSource reports no reason when the stream ends: a clean close.
        next_chunk(&mut self.events, &mut self.closed).await
    }

    async fn close(&mut self) -> Result<()> {
        self.closed = true;
        self.reader.abort();
        Ok(())
    }
}
