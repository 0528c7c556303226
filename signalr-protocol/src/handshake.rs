//! The handshake: the first message each side sends, always JSON text ended by `0x1E`, whatever
//! the hub protocol.
//!
//! The response may be followed by hub messages in the same read (in MessagePack sessions those
//! bytes are binary): [`HandshakeResponse::decode`] consumes exactly the response and its record
//! separator and leaves the rest of the buffer for the hub decoder.

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    error::{ProtocolError, Result},
    framing::{FrameDecoder, RECORD_SEPARATOR, TransferFormat},
};

/// The default limit for a handshake message: 32 KiB, the .NET server's limit.
pub const DEFAULT_MAX_HANDSHAKE_SIZE: usize = 32 * 1024;

/// What the client sends first: which hub protocol and version it speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeRequest {
    /// `"json"` or `"messagepack"`.
    pub protocol: String,
    /// `1`, or `2` when stateful reconnect is in use.
    pub version: u32,
}

impl HandshakeRequest {
    /// A request for `protocol` at `version`.
    pub fn new(protocol: impl Into<String>, version: u32) -> Self {
        Self {
            protocol: protocol.into(),
            version,
        }
    }

    /// Appends `{"protocol":…,"version":…}` and the record separator.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(b"{\"protocol\":");
        write_json_str(dst, &self.protocol);
        dst.put_slice(b",\"version\":");
        dst.put_slice(self.version.to_string().as_bytes());
        dst.put_slice(b"}\x1e");
    }

    /// Takes a request off the front of `src` (server side); `Ok(None)` = need more bytes.
    /// A request larger than `max_size` bytes is an error as soon as that is known.
    pub fn decode(src: &mut BytesMut, max_size: usize) -> Result<Option<Self>> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(borrow)]
            protocol: Option<&'a RawValue>,
            version: Option<&'a RawValue>,
        }
        let Some(body) = FrameDecoder::new(TransferFormat::Text, max_size).decode(src)? else {
            return Ok(None);
        };
        let wire: Wire<'_> =
            serde_json::from_slice(&body).map_err(|e| invalid("request", e.to_string()))?;
        let protocol = wire
            .protocol
            .ok_or_else(|| invalid("request", "missing `protocol`"))?;
        let protocol: String = serde_json::from_str(protocol.get())
            .map_err(|_| invalid("request", "`protocol` is not a string"))?;
        let version = wire
            .version
            .ok_or_else(|| invalid("request", "missing `version`"))?;
        let version: u32 = serde_json::from_str(version.get())
            .map_err(|_| invalid("request", "`version` is not a non-negative integer"))?;
        Ok(Some(Self { protocol, version }))
    }
}

/// The server's answer: `{}` on success, `{"error":…}` on failure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeResponse {
    /// Why the server refused the handshake; `None` on success.
    pub error: Option<String>,
}

impl HandshakeResponse {
    /// Success.
    pub fn ok() -> Self {
        Self { error: None }
    }

    /// Failure with `error`.
    pub fn error(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
        }
    }

    /// Appends the response and the record separator.
    pub fn encode(&self, dst: &mut BytesMut) {
        match &self.error {
            None => dst.put_slice(b"{}"),
            Some(e) => {
                dst.put_slice(b"{\"error\":");
                write_json_str(dst, e);
                dst.put_u8(b'}');
            }
        }
        dst.put_u8(RECORD_SEPARATOR);
    }

    /// Takes the response off the front of `src` (client side) and leaves whatever follows it;
    /// `Ok(None)` = need more bytes. A response larger than `max_size` bytes is an error as soon
    /// as that is known.
    ///
    /// A JSON object with a `type` property is a hub message, not a handshake response, and is an
    /// error. Unknown properties (older servers sent `minorVersion`) are ignored.
    pub fn decode(src: &mut BytesMut, max_size: usize) -> Result<Option<Self>> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(rename = "type", borrow)]
            message_type: Option<&'a RawValue>,
            error: Option<&'a RawValue>,
        }
        let Some(body) = FrameDecoder::new(TransferFormat::Text, max_size).decode(src)? else {
            return Ok(None);
        };
        let wire: Wire<'_> =
            serde_json::from_slice(&body).map_err(|e| invalid("response", e.to_string()))?;
        if wire.message_type.is_some() {
            return Err(invalid(
                "response",
                "expected a handshake response from the server, got a hub message",
            ));
        }
        let error = match wire.error {
            None => None,
            Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
                .map_err(|_| invalid("response", "`error` is not a string"))?,
        };
        Ok(Some(Self { error }))
    }
}

fn invalid(what: &'static str, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidHandshake {
        what,
        reason: reason.into(),
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn write_json_str(dst: &mut BytesMut, s: &str) {
    // Writing a &str into memory cannot fail.
    let _ = serde_json::to_writer(dst.writer(), s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let mut buf = BytesMut::new();
        HandshakeRequest::new("messagepack", 2).encode(&mut buf);
        assert_eq!(
            &buf[..],
            b"{\"protocol\":\"messagepack\",\"version\":2}\x1e"
        );
        let req = HandshakeRequest::decode(&mut buf, 100).unwrap().unwrap();
        assert_eq!(req, HandshakeRequest::new("messagepack", 2));
        assert!(buf.is_empty());
    }

    #[test]
    fn request_errors() {
        for bad in [
            &b"{\"protocol\":1,\"version\":1}\x1e"[..],
            b"{\"version\":1}\x1e",
            b"{\"protocol\":\"json\"}\x1e",
            b"[]\x1e",
            b"\xff\x1e",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(HandshakeRequest::decode(&mut buf, 100).is_err(), "{bad:?}");
        }
        // A slow-loris request without a separator fails once it passes the limit.
        let mut buf = BytesMut::from(&[b' '; 100][..]);
        assert!(matches!(
            HandshakeRequest::decode(&mut buf, 100),
            Err(ProtocolError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn response_keeps_what_follows() {
        let mut buf = BytesMut::from(&b"{\"minorVersion\":1}\x1e\x02\x91\x06"[..]);
        assert_eq!(
            HandshakeResponse::decode(&mut buf, 100).unwrap(),
            Some(HandshakeResponse::ok())
        );
        assert_eq!(&buf[..], b"\x02\x91\x06");
    }

    #[test]
    fn response_error_escapes() {
        let mut buf = BytesMut::new();
        HandshakeResponse::error("bad \"x\"\u{1e}").encode(&mut buf);
        assert_eq!(memchr::memchr_iter(RECORD_SEPARATOR, &buf).count(), 1);
        assert_eq!(
            HandshakeResponse::decode(&mut buf, 100).unwrap(),
            Some(HandshakeResponse::error("bad \"x\"\u{1e}"))
        );
    }

    #[test]
    fn html_error_page_is_a_parse_error() {
        let mut buf = BytesMut::from(&b"<html><body>502 Bad Gateway</body></html>\x1e"[..]);
        assert!(matches!(
            HandshakeResponse::decode(&mut buf, 1000),
            Err(ProtocolError::InvalidHandshake { .. })
        ));
    }
}
