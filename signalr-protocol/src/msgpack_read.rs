//! A minimal, allocation-free MessagePack reader over a byte slice.
//!
//! It reads the envelope of a hub message and finds the byte range of each value (arguments,
//! items, results) without decoding it, so payloads stay raw until they are bound to a type.
//! Every length is checked against the bytes actually present before it is used, so a header
//! that claims 2³² elements with one byte of data is an error, not an allocation. Skipping is
//! iterative, so deep nesting cannot overflow the stack.

use std::{borrow::Cow, fmt, ops::Range};

/// Where and why reading failed.
#[derive(Debug)]
pub(crate) struct ReadError {
    what: Cow<'static, str>,
    offset: usize,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for ReadError {}

type Result<T> = std::result::Result<T, ReadError>;

/// A cursor over one MessagePack buffer.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err<T>(&self, what: impl Into<Cow<'static, str>>) -> Result<T> {
        Err(ReadError {
            what: what.into(),
            offset: self.pos,
        })
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => self.err(format!(
                "{n} bytes needed, {} left",
                self.buf.len().saturating_sub(self.pos)
            )),
        }
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn be_u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn be_u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn be_u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn len32(&mut self) -> Result<usize> {
        let n = self.be_u32()?;
        usize::try_from(n).or_else(|_| self.err("length does not fit in memory"))
    }

    fn unexpected<T>(&mut self, expected: &str, marker: u8) -> Result<T> {
        self.pos -= 1;
        self.err(format!("expected {expected}, found marker 0x{marker:02x}"))
    }

    /// Reads an array header.
    pub(crate) fn read_array_len(&mut self) -> Result<usize> {
        match self.byte()? {
            m @ 0x90..=0x9f => Ok(usize::from(m & 0x0f)),
            0xdc => Ok(usize::from(self.be_u16()?)),
            0xdd => self.len32(),
            m => self.unexpected("an array", m),
        }
    }

    /// Reads a map header.
    pub(crate) fn read_map_len(&mut self) -> Result<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Ok(usize::from(m & 0x0f)),
            0xde => Ok(usize::from(self.be_u16()?)),
            0xdf => self.len32(),
            m => self.unexpected("a map", m),
        }
    }

    /// Reads an integer in any of its encodings; values above `i64::MAX` are an error.
    pub(crate) fn read_int(&mut self) -> Result<i64> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => i64::from(m),
            0xe0..=0xff => i64::from(i8::from_be_bytes([m])),
            0xcc => i64::from(self.byte()?),
            0xcd => i64::from(self.be_u16()?),
            0xce => i64::from(self.be_u32()?),
            0xcf => {
                let v = self.be_u64()?;
                match i64::try_from(v) {
                    Ok(v) => v,
                    Err(_) => return self.err("integer larger than i64::MAX"),
                }
            }
            0xd0 => i64::from(i8::from_be_bytes([self.byte()?])),
            0xd1 => i64::from(i16::from_be_bytes(self.be_u16()?.to_be_bytes())),
            0xd2 => i64::from(i32::from_be_bytes(self.be_u32()?.to_be_bytes())),
            0xd3 => i64::from_be_bytes(self.be_u64()?.to_be_bytes()),
            m => return self.unexpected("an integer", m),
        })
    }

    /// Reads a UTF-8 string.
    pub(crate) fn read_str(&mut self) -> Result<&'a str> {
        let n = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(self.be_u16()?),
            0xdb => self.len32()?,
            m => return self.unexpected("a string", m),
        };
        let start = self.pos;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|_| ReadError {
            what: "string is not valid UTF-8".into(),
            offset: start,
        })
    }

    /// Reads `nil` (as `None`) or a string.
    pub(crate) fn read_nil_or_str(&mut self) -> Result<Option<&'a str>> {
        if self.peek() == Some(0xc0) {
            self.pos += 1;
            Ok(None)
        } else {
            self.read_str().map(Some)
        }
    }

    /// Reads a boolean.
    pub(crate) fn read_bool(&mut self) -> Result<bool> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            m => self.unexpected("a boolean", m),
        }
    }

    /// Skips one complete value (however deeply nested) and returns its byte range.
    // One arm per marker family, in the order of the MessagePack spec's table.
    #[allow(clippy::match_same_arms)]
    pub(crate) fn skip_value(&mut self) -> Result<Range<usize>> {
        let start = self.pos;
        // Values still to skip. Each loop turn consumes at least one byte, so the loop runs at
        // most `buf.len()` times whatever the headers claim.
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let m = self.byte()?;
            let (skip, children): (usize, u64) = match m {
                0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
                0x80..=0x8f => (0, 2 * u64::from(m & 0x0f)),
                0x90..=0x9f => (0, u64::from(m & 0x0f)),
                0xa0..=0xbf => (usize::from(m & 0x1f), 0),
                0xc4 | 0xd9 => (usize::from(self.byte()?), 0),
                0xc5 | 0xda => (usize::from(self.be_u16()?), 0),
                0xc6 | 0xdb => (self.len32()?, 0),
                0xc7 => (usize::from(self.byte()?) + 1, 0),
                0xc8 => (usize::from(self.be_u16()?) + 1, 0),
                0xc9 => (self.len32()?.saturating_add(1), 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, u64::from(self.be_u16()?)),
                0xdd => (0, u64::from(self.be_u32()?)),
                0xde => (0, 2 * u64::from(self.be_u16()?)),
                0xdf => (0, 2 * u64::from(self.be_u32()?)),
                0xc1 => return self.unexpected("a value", m),
            };
            self.take(skip)?;
            pending += children;
        }
        Ok(start..self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_nested_values() {
        // [1, {"a": [nil, true]}, "xy", bin8(2)]
        let v = [
            0x94, 0x01, 0x81, 0xa1, b'a', 0x92, 0xc0, 0xc3, 0xa2, b'x', b'y', 0xc4, 0x02, 9, 9,
        ];
        let mut r = Reader::new(&v);
        assert_eq!(r.skip_value().unwrap(), 0..v.len());
        assert!(r.is_empty());
    }

    #[test]
    fn huge_headers_with_no_data_fail_fast() {
        for v in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01][..],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(Reader::new(v).skip_value().is_err(), "{v:02x?}");
        }
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut v = vec![0x91; 1_000_000];
        v.push(0xc0);
        assert_eq!(Reader::new(&v).skip_value().unwrap().end, v.len());
    }

    #[test]
    fn integers_in_every_encoding() {
        let cases: [(&[u8], i64); 8] = [
            (&[0x24], 36),
            (&[0xcc, 0x24], 36),
            (&[0xcd, 0x04, 0xd2], 1234),
            (&[0xff], -1),
            (&[0xd0, 0x80], -128),
            (&[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], -1),
            (
                &[0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                i64::MAX,
            ),
            (&[0xce, 0, 0, 1, 0], 256),
        ];
        for (bytes, want) in cases {
            assert_eq!(Reader::new(bytes).read_int().unwrap(), want, "{bytes:02x?}");
        }
        assert!(
            Reader::new(&[0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0])
                .read_int()
                .is_err()
        );
    }
}
