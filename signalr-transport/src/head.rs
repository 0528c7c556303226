//! Reading an HTTP/1.1 response head off a raw stream (the WebSocket upgrade and the proxy
//! `CONNECT` reply, which are ours), within bounds: at most `max` bytes and
//! [`MAX_HEADERS`] headers, parsed by httparse.

use bytes::BytesMut;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::{
    error::{Result, TransportError},
    tls::classify,
};

/// The most headers a response head may have (hyper's default).
pub(crate) const MAX_HEADERS: usize = 100;

/// A response head and the bytes read after it.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    /// What followed the head in the last read: it belongs to whatever comes next.
    pub(crate) rest: BytesMut,
}

/// Reads a response head. Errors: `MalformedResponse` for a head that is not HTTP, too large or
/// has too many headers; a TLS error when a certificate was refused; `WebSocket` with the
/// cause for I/O failures and an early end.
pub(crate) async fn read_head<S>(io: &mut S, max: usize, what: &'static str) -> Result<Head>
where
    S: AsyncRead + Unpin,
{
    let malformed = |reason: String| TransportError::MalformedResponse { what, reason };
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = io
            .read(&mut chunk)
            .await
            .map_err(|e| classify("TLS handshake", e.into()))?;
        if n == 0 {
            return Err(TransportError::WebSocket(
                format!("the peer closed the connection before the end of the {what} response")
                    .into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut parsed);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let mut headers = HeaderMap::new();
                for h in response.headers.iter() {
                    let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(h.name.as_bytes()),
                        HeaderValue::from_bytes(h.value),
                    ) else {
                        return Err(malformed(format!("invalid header {:?}", h.name)));
                    };
                    headers.append(name, value);
                }
                let status = response.code.unwrap_or(0);
                let rest = buf.split_off(len);
                return Ok(Head {
                    status,
                    headers,
                    rest,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < max => {}
            Ok(httparse::Status::Partial) => {
                return Err(malformed(format!("the head is larger than {max} bytes")));
            }
            Err(e) => return Err(malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8], max: usize) -> Result<Head> {
        let mut io = bytes;
        read_head(&mut io, max, "test").await
    }

    #[tokio::test]
    async fn heads_in_and_out_of_bounds() {
        let head = parse(
            b"HTTP/1.1 101 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nxyz",
            1024,
        )
        .await
        .unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(head.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(&head.rest[..], b"xyz");

        let err = |r: Result<Head>| r.unwrap_err().to_string();
        assert!(err(parse(b"garbage\r\n\r\n", 1024).await).contains("malformed test response"));
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(5000));
        assert!(err(parse(long.as_bytes(), 4096).await).contains("larger than 4096"));
        let mut flood = String::from("HTTP/1.1 101 OK\r\n");
        for i in 0..=MAX_HEADERS {
            flood += "Set-Cookie: c";
            flood += &i.to_string();
            flood += "=v\r\n";
        }
        flood.push_str("\r\n");
        assert!(err(parse(flood.as_bytes(), 1 << 20).await).contains("too many headers"));
        let early = parse(b"HTTP/1.1 200 OK\r\n", 1024).await.unwrap_err();
        let cause = std::error::Error::source(&early).unwrap().to_string();
        assert!(cause.contains("closed the connection"), "{cause}");
    }
}
