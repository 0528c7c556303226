//! Message framing: the record separator of the text format and the VarInt length prefix of the
//! binary format.
//!
//! [`FrameDecoder`] splits a byte stream into message bodies incrementally. It enforces the
//! maximum message size as soon as the size is known — from the length prefix, or from the
//! number of bytes buffered without a record separator — so a peer cannot make it buffer more
//! than the maximum. In text mode it remembers how far it has scanned (the `next_index`
//! technique of tokio-util's `AnyDelimiterCodec`), so feeding a long record one byte at a time
//! costs linear, not quadratic, time.

use bytes::{BufMut, BytesMut};

use crate::error::{ProtocolError, Result};

/// The byte that ends every text-format message (and every handshake message): `0x1E`.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// The longest binary length prefix: 5 bytes.
pub const MAX_VARINT_LEN: usize = 5;

/// The largest body length a binary length prefix can carry: 2 GiB − 1.
pub const MAX_BINARY_BODY_LEN: u32 = 0x7fff_ffff;

/// How messages travel on a transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferFormat {
    /// UTF-8 text, each message ended by [`RECORD_SEPARATOR`] (JSON).
    Text,
    /// Bytes, each message prefixed by its VarInt length (MessagePack).
    Binary,
}

impl TransferFormat {
    /// The name used in negotiate responses: `"Text"` or `"Binary"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "Text",
            Self::Binary => "Binary",
        }
    }

    /// Parses a negotiate `transferFormats` entry.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "Text" => Some(Self::Text),
            "Binary" => Some(Self::Binary),
            _ => None,
        }
    }
}

/// Appends the VarInt encoding of `len` (its shortest form) and returns how many bytes it took.
pub fn write_varint(len: u32, dst: &mut impl BufMut) -> Result<usize> {
    let (bytes, n) = varint_bytes(len)?;
    dst.put_slice(&bytes[..n]);
    Ok(n)
}

fn varint_bytes(len: u32) -> Result<([u8; MAX_VARINT_LEN], usize)> {
    if len > MAX_BINARY_BODY_LEN {
        return Err(ProtocolError::MessageTooLarge {
            size: u64::from(len),
            max: MAX_BINARY_BODY_LEN as usize,
        });
    }
    let mut out = [0u8; MAX_VARINT_LEN];
    let mut rest = len;
    let mut n = 0;
    loop {
        // Truncation intended: the low 7 bits.
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out[n] = low;
            return Ok((out, n + 1));
        }
        out[n] = low | 0x80;
        n += 1;
    }
}

/// Reads a VarInt length prefix from the front of `src`.
///
/// Returns `Ok(None)` when the prefix is incomplete, `Ok(Some((body_len, prefix_len)))` when it is
/// whole, and an error for a prefix longer than 5 bytes or a length of 2 GiB or more.
/// Non-minimal encodings are accepted, as the official parsers accept them.
pub fn read_varint(src: &[u8]) -> Result<Option<(u32, usize)>> {
    let mut len: u32 = 0;
    for i in 0..MAX_VARINT_LEN {
        let Some(&b) = src.get(i) else {
            return Ok(None);
        };
        if i == MAX_VARINT_LEN - 1 && b > 0x07 {
            return Err(ProtocolError::InvalidLengthPrefix {
                reason: if b & 0x80 == 0 {
                    "the length is 2 GiB or more"
                } else {
                    "the prefix is longer than 5 bytes"
                },
            });
        }
        len |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((len, i + 1)));
        }
    }
    // Unreachable: the fifth byte either ends the prefix or fails the check above.
    Err(ProtocolError::InvalidLengthPrefix {
        reason: "the prefix is longer than 5 bytes",
    })
}

/// Appends one framed message to `dst`: `write` appends the body, this adds the record
/// separator or the length prefix. On error `dst` is left as it was.
pub fn encode_framed(
    format: TransferFormat,
    dst: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<()>,
) -> Result<()> {
    let start = dst.len();
    let result = write(dst).and_then(|()| match format {
        TransferFormat::Text => {
            dst.put_u8(RECORD_SEPARATOR);
            Ok(())
        }
        TransferFormat::Binary => {
            let body_len = dst.len() - start;
            let len = u32::try_from(body_len).unwrap_or(u32::MAX);
            let (prefix, n) = varint_bytes(len)?;
            // Make room for the prefix in front of the body.
            dst.put_slice(&prefix[..n]);
            dst.copy_within(start..start + body_len, start + n);
            dst[start..start + n].copy_from_slice(&prefix[..n]);
            Ok(())
        }
    });
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

/// Splits a byte stream into message bodies, incrementally.
///
/// Feed it the same buffer again after appending more bytes; it returns each complete body
/// (without its record separator or length prefix) once, and `Ok(None)` when it needs more.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    format: TransferFormat,
    max_message_size: usize,
    /// Text mode: bytes of `src` already known to hold no record separator.
    next_index: usize,
}

impl FrameDecoder {
    /// A decoder for `format` that rejects framed messages (body plus separator or prefix) larger
    /// than `max_message_size` bytes.
    pub fn new(format: TransferFormat, max_message_size: usize) -> Self {
        Self {
            format,
            max_message_size,
            next_index: 0,
        }
    }

    /// The transfer format this decoder splits.
    pub fn format(&self) -> TransferFormat {
        self.format
    }

    /// The configured maximum framed message size.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Takes the next complete message body off the front of `src`.
    ///
    /// After an error the stream cannot be resynchronised; the connection should be closed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>> {
        match self.format {
            TransferFormat::Text => self.decode_text(src),
            TransferFormat::Binary => self.decode_binary(src),
        }
    }

    fn decode_text(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>> {
        let from = self.next_index.min(src.len());
        let Some(offset) = memchr::memchr(RECORD_SEPARATOR, &src[from..]) else {
            self.next_index = src.len();
            if src.len() >= self.max_message_size {
                // With its separator the record would be at least len + 1 bytes.
                return Err(self.too_large(src.len() + 1));
            }
            return Ok(None);
        };
        let end = from + offset;
        self.next_index = 0;
        if end >= self.max_message_size {
            return Err(self.too_large(end + 1));
        }
        let mut body = src.split_to(end + 1);
        body.truncate(end);
        Ok(Some(body))
    }

    fn decode_binary(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>> {
        let Some((body_len, prefix_len)) = read_varint(src)? else {
            return Ok(None);
        };
        let total = u64::from(body_len) + prefix_len as u64;
        if total > self.max_message_size as u64 {
            return Err(ProtocolError::MessageTooLarge {
                size: total,
                max: self.max_message_size,
            });
        }
        // `total <= max_message_size`, a usize.
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let mut body = src.split_to(total);
        let _prefix = body.split_to(prefix_len);
        Ok(Some(body))
    }

    /// Call at the end of input: an error if `src` still holds part of a message.
    pub fn finish(&self, src: &[u8]) -> Result<()> {
        if src.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::PartialMessage {
                buffered: src.len(),
            })
        }
    }

    fn too_large(&self, size: usize) -> ProtocolError {
        ProtocolError::MessageTooLarge {
            size: size as u64,
            max: self.max_message_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(len: u32) -> Vec<u8> {
        let mut v = Vec::new();
        write_varint(len, &mut v).unwrap();
        v
    }

    #[test]
    fn varint_table() {
        for (len, bytes) in [
            (0, &[0x00][..]),
            (53, &[0x35]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (5248, &[0x80, 0x29]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (MAX_BINARY_BODY_LEN, &[0xff, 0xff, 0xff, 0xff, 0x07]),
        ] {
            assert_eq!(varint(len), bytes, "{len}");
            assert_eq!(read_varint(bytes).unwrap(), Some((len, bytes.len())));
        }
        assert!(write_varint(MAX_BINARY_BODY_LEN + 1, &mut Vec::new()).is_err());
    }

    #[test]
    fn varint_malformed() {
        assert_eq!(read_varint(&[0x80]).unwrap(), None);
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff]).unwrap(), None);
        assert!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x08]).is_err());
        // Non-minimal forms are accepted.
        assert_eq!(read_varint(&[0x81, 0x00]).unwrap(), Some((1, 2)));
    }

    #[test]
    fn text_limit_counts_the_separator() {
        let mut d = FrameDecoder::new(TransferFormat::Text, 4);
        let mut ok = BytesMut::from(&b"abc\x1e"[..]);
        assert_eq!(&d.decode(&mut ok).unwrap().unwrap()[..], b"abc");
        let mut big = BytesMut::from(&b"abcd\x1e"[..]);
        assert!(matches!(
            d.decode(&mut big),
            Err(ProtocolError::MessageTooLarge { size: 5, max: 4 })
        ));
        // An unterminated record fails as soon as it cannot fit any more.
        let mut d = FrameDecoder::new(TransferFormat::Text, 4);
        let mut open = BytesMut::from(&b"abc"[..]);
        assert!(d.decode(&mut open).unwrap().is_none());
        open.extend_from_slice(b"d");
        assert!(d.decode(&mut open).is_err());
    }

    #[test]
    fn binary_limit_is_checked_from_the_prefix() {
        let mut d = FrameDecoder::new(TransferFormat::Binary, 100);
        // Claims 2 GiB − 1 with no body: rejected before anything is buffered.
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0x07][..]);
        assert!(matches!(
            d.decode(&mut src),
            Err(ProtocolError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn binary_frames_round_trip() {
        let mut buf = BytesMut::new();
        let body = vec![7u8; 300];
        encode_framed(TransferFormat::Binary, &mut buf, |d| {
            d.extend_from_slice(&body);
            Ok(())
        })
        .unwrap();
        assert_eq!(&buf[..2], &[0xac, 0x02]);
        let mut d = FrameDecoder::new(TransferFormat::Binary, 1000);
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], &body[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn failed_encode_leaves_dst_untouched() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let r = encode_framed(TransferFormat::Text, &mut buf, |d| {
            d.extend_from_slice(b"partial");
            Err(ProtocolError::MissingMessageType)
        });
        assert!(r.is_err());
        assert_eq!(&buf[..], b"keep");
    }
}
