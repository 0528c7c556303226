//! Arguments, stream items and results, kept encoded until someone asks for a type.
//!
//! A decoded message keeps its values as the raw bytes they arrived in (a JSON text, or one
//! MessagePack value). [`Payload::deserialize`] binds them to a user type when the handler or the
//! caller of `invoke::<T>` knows it, so a message is parsed once and no intermediate value tree is
//! built. Encoding goes the other way: [`Payload::from_value`] serializes any `Serialize` in the
//! protocol's format.

use std::fmt;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{ProtocolError, Result};
#[cfg(feature = "messagepack")]
use crate::msgpack_read::Reader;

/// The value encoding of a hub protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadFormat {
    /// JSON text (`JsonHubProtocol`).
    Json,
    /// MessagePack (`MessagePackHubProtocol`). Needs the `messagepack` feature to encode or
    /// decode values.
    MessagePack,
}

impl PayloadFormat {
    /// `"JSON"` or `"MessagePack"`, as used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::MessagePack => "MessagePack",
        }
    }
}

/// One encoded value: an argument, a stream item or a completion result.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload {
    format: PayloadFormat,
    bytes: Bytes,
}

impl Payload {
    /// Serializes `value` in `format`.
    ///
    /// MessagePack structs are written as maps keyed by field name, as the official clients and
    /// servers expect (not rmp-serde's default of arrays).
    pub fn from_value<T: Serialize + ?Sized>(format: PayloadFormat, value: &T) -> Result<Self> {
        Ok(Self {
            format,
            bytes: serialize(format, value)?.into(),
        })
    }

    /// A JSON payload holding `value`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Self::from_value(PayloadFormat::Json, value)
    }

    /// A MessagePack payload holding `value`.
    #[cfg(feature = "messagepack")]
    pub fn messagepack<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Self::from_value(PayloadFormat::MessagePack, value)
    }

    /// `null` / `nil` in `format`.
    pub fn null(format: PayloadFormat) -> Self {
        let bytes: &'static [u8] = match format {
            PayloadFormat::Json => b"null",
            PayloadFormat::MessagePack => b"\xc0",
        };
        Self {
            format,
            bytes: Bytes::from_static(bytes),
        }
    }

    /// Wraps raw bytes after checking that they are exactly one well-formed value of `format`.
    pub fn from_raw(format: PayloadFormat, bytes: impl Into<Bytes>) -> Result<Self> {
        let bytes = bytes.into();
        check_one_value(format, &bytes)?;
        Ok(Self { format, bytes })
    }

    /// Wraps bytes the caller has already checked (a decoder's own slice of a message).
    pub(crate) fn from_checked(format: PayloadFormat, bytes: Bytes) -> Self {
        Self { format, bytes }
    }

    /// Deserializes the value into `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        deserialize(self.format, &self.bytes)
    }

    /// The format of the bytes.
    pub fn format(&self) -> PayloadFormat {
        self.format
    }

    /// The encoded value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded value, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_bytes(f, "Payload", self.format, &self.bytes)
    }
}

/// The argument list of an invocation: one encoded array.
///
/// Deserialize it whole into a tuple (`(String, i64)`) or a `Vec`, or split it into one
/// [`Payload`] per argument with [`Arguments::to_payloads`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Arguments {
    format: PayloadFormat,
    bytes: Bytes,
}

impl Arguments {
    /// No arguments.
    pub fn empty(format: PayloadFormat) -> Self {
        let bytes: &'static [u8] = match format {
            PayloadFormat::Json => b"[]",
            PayloadFormat::MessagePack => b"\x90",
        };
        Self {
            format,
            bytes: Bytes::from_static(bytes),
        }
    }

    /// Serializes `values`, which must serialize as a sequence: a tuple such as `(40, 2)` or
    /// `("hello",)`, an array, a `Vec`. `()` means no arguments.
    pub fn from_values<T: Serialize + ?Sized>(format: PayloadFormat, values: &T) -> Result<Self> {
        let bytes = serialize(format, values)?;
        match (format, bytes.first()) {
            // `()` serializes as null / nil.
            (PayloadFormat::Json, _) if bytes == b"null" => Ok(Self::empty(format)),
            (PayloadFormat::MessagePack, Some(0xc0)) => Ok(Self::empty(format)),
            (PayloadFormat::Json, Some(b'['))
            | (PayloadFormat::MessagePack, Some(0x90..=0x9f | 0xdc | 0xdd)) => Ok(Self {
                format,
                bytes: bytes.into(),
            }),
            _ => Err(ProtocolError::Serialize {
                format: format.name(),
                source: "arguments must serialize as a sequence (a tuple, array or Vec)".into(),
            }),
        }
    }

    /// Builds an argument list from individual values, which must all be in `format`.
    pub fn from_payloads<'a>(
        format: PayloadFormat,
        payloads: impl IntoIterator<Item = &'a Payload>,
    ) -> Result<Self> {
        let payloads: Vec<&Payload> = payloads.into_iter().collect();
        if let Some(p) = payloads.iter().find(|p| p.format != format) {
            return Err(ProtocolError::Serialize {
                format: format.name(),
                source: format!("argument is a {} payload", p.format.name()).into(),
            });
        }
        let body: usize = payloads.iter().map(|p| p.bytes.len() + 1).sum();
        let mut out = Vec::with_capacity(body + 5);
        match format {
            PayloadFormat::Json => {
                out.push(b'[');
                for (i, p) in payloads.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&p.bytes);
                }
                out.push(b']');
            }
            PayloadFormat::MessagePack => {
                crate::msgpack_write::write_array_len(&mut out, payloads.len());
                for p in &payloads {
                    out.extend_from_slice(&p.bytes);
                }
            }
        }
        Ok(Self {
            format,
            bytes: out.into(),
        })
    }

    /// Wraps raw bytes after checking that they are one well-formed array of `format`.
    pub fn from_raw(format: PayloadFormat, bytes: impl Into<Bytes>) -> Result<Self> {
        let bytes = bytes.into();
        check_one_value(format, &bytes)?;
        if !is_array(format, &bytes) {
            return Err(ProtocolError::Deserialize {
                format: format.name(),
                source: "arguments are not an array".into(),
            });
        }
        Ok(Self { format, bytes })
    }

    pub(crate) fn from_checked(format: PayloadFormat, bytes: Bytes) -> Self {
        Self { format, bytes }
    }

    /// Deserializes the whole list into `T`: a tuple, an array or a `Vec`. An empty list also
    /// binds to `()`, which serde reads only from `null`, so that "no arguments" has one
    /// spelling in handlers: `|(): ()|`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        deserialize(self.format, &self.bytes).or_else(|e| {
            if *self == Self::empty(self.format) {
                Payload::null(self.format).deserialize::<T>().map_err(|_| e)
            } else {
                Err(e)
            }
        })
    }

    /// Splits the list into one payload per argument, sharing the bytes (no copy).
    pub fn to_payloads(&self) -> Result<Vec<Payload>> {
        match self.format {
            PayloadFormat::Json => {
                let raw: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&self.bytes)
                    .map_err(|e| ProtocolError::Deserialize {
                        format: "JSON",
                        source: e.into(),
                    })?;
                Ok(raw
                    .iter()
                    .map(|r| Payload {
                        format: self.format,
                        bytes: subslice(&self.bytes, r.get().as_bytes()),
                    })
                    .collect())
            }
            PayloadFormat::MessagePack => self.split_messagepack(),
        }
    }

    #[cfg(feature = "messagepack")]
    fn split_messagepack(&self) -> Result<Vec<Payload>> {
        let mut r = Reader::new(&self.bytes);
        let n = r.read_array_len().map_err(|e| ProtocolError::Deserialize {
            format: "MessagePack",
            source: e.into(),
        })?;
        let mut out = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let range = r.skip_value().map_err(|e| ProtocolError::Deserialize {
                format: "MessagePack",
                source: e.into(),
            })?;
            out.push(Payload {
                format: self.format,
                bytes: self.bytes.slice(range),
            });
        }
        Ok(out)
    }

    #[cfg(not(feature = "messagepack"))]
    #[allow(clippy::unused_self)] // the same signature as with the feature
    fn split_messagepack(&self) -> Result<Vec<Payload>> {
        Err(no_messagepack_deser())
    }

    /// The format of the bytes.
    pub fn format(&self) -> PayloadFormat {
        self.format
    }

    /// The encoded array.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Arguments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_bytes(f, "Arguments", self.format, &self.bytes)
    }
}

fn debug_bytes(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    format: PayloadFormat,
    bytes: &[u8],
) -> fmt::Result {
    match format {
        PayloadFormat::Json => write!(f, "{name}({})", String::from_utf8_lossy(bytes)),
        PayloadFormat::MessagePack => {
            write!(f, "{name}(msgpack ")?;
            for b in bytes {
                write!(f, "{b:02x}")?;
            }
            f.write_str(")")
        }
    }
}

/// A `Bytes` for `part`, which must lie inside `whole`; shares the allocation when it does.
pub(crate) fn subslice(whole: &Bytes, part: &[u8]) -> Bytes {
    let base = whole.as_ptr() as usize;
    let start = (part.as_ptr() as usize).wrapping_sub(base);
    match start.checked_add(part.len()) {
        Some(end) if start <= whole.len() && end <= whole.len() => whole.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

fn is_array(format: PayloadFormat, bytes: &[u8]) -> bool {
    match format {
        PayloadFormat::Json => bytes.first() == Some(&b'['),
        PayloadFormat::MessagePack => matches!(bytes.first(), Some(0x90..=0x9f | 0xdc | 0xdd)),
    }
}

fn check_one_value(format: PayloadFormat, bytes: &[u8]) -> Result<()> {
    match format {
        PayloadFormat::Json => {
            let raw: &serde_json::value::RawValue =
                serde_json::from_slice(bytes).map_err(|e| ProtocolError::Deserialize {
                    format: "JSON",
                    source: e.into(),
                })?;
            // RawValue trims surrounding whitespace; the payload must be the value itself.
            if raw.get().len() == bytes.len() {
                Ok(())
            } else {
                Err(ProtocolError::Deserialize {
                    format: "JSON",
                    source: "whitespace around the value".into(),
                })
            }
        }
        PayloadFormat::MessagePack => check_one_messagepack(bytes),
    }
}

#[cfg(feature = "messagepack")]
fn check_one_messagepack(bytes: &[u8]) -> Result<()> {
    let mut r = Reader::new(bytes);
    r.skip_value().map_err(|e| ProtocolError::Deserialize {
        format: "MessagePack",
        source: e.into(),
    })?;
    if r.is_empty() {
        Ok(())
    } else {
        Err(ProtocolError::Deserialize {
            format: "MessagePack",
            source: "trailing bytes after the value".into(),
        })
    }
}

#[cfg(not(feature = "messagepack"))]
fn check_one_messagepack(_bytes: &[u8]) -> Result<()> {
    Err(no_messagepack_deser())
}

#[cfg(not(feature = "messagepack"))]
fn no_messagepack_deser() -> ProtocolError {
    ProtocolError::Deserialize {
        format: "MessagePack",
        source: "the `messagepack` feature is not enabled".into(),
    }
}

fn serialize<T: Serialize + ?Sized>(format: PayloadFormat, value: &T) -> Result<Vec<u8>> {
    match format {
        PayloadFormat::Json => serde_json::to_vec(value).map_err(|e| ProtocolError::Serialize {
            format: "JSON",
            source: e.into(),
        }),
        #[cfg(feature = "messagepack")]
        PayloadFormat::MessagePack => {
            // serde_json::to_vec starts at 128 bytes too; growing from zero costs 4 reallocations.
            let mut out = Vec::with_capacity(128);
            let mut ser = rmp_serde::Serializer::new(&mut out).with_struct_map();
            value
                .serialize(&mut ser)
                .map_err(|e| ProtocolError::Serialize {
                    format: "MessagePack",
                    source: e.into(),
                })?;
            Ok(out)
        }
        #[cfg(not(feature = "messagepack"))]
        PayloadFormat::MessagePack => Err(ProtocolError::Serialize {
            format: "MessagePack",
            source: "the `messagepack` feature is not enabled".into(),
        }),
    }
}

/// The deepest nesting a payload may have when it is bound to a type: serde_json's limit,
/// applied to MessagePack too, so that hostile nesting is an error on any stack size.
pub const MAX_DEPTH: usize = 128;

fn deserialize<T: DeserializeOwned>(format: PayloadFormat, bytes: &[u8]) -> Result<T> {
    match format {
        PayloadFormat::Json => {
            serde_json::from_slice(bytes).map_err(|e| ProtocolError::Deserialize {
                format: "JSON",
                source: e.into(),
            })
        }
        #[cfg(feature = "messagepack")]
        PayloadFormat::MessagePack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            // rmp-serde allows 1024 levels, which overflows small stacks; use serde_json's 128.
            de.set_max_depth(MAX_DEPTH);
            T::deserialize(&mut de).map_err(|e| ProtocolError::Deserialize {
                format: "MessagePack",
                source: e.into(),
            })
        }
        #[cfg(not(feature = "messagepack"))]
        PayloadFormat::MessagePack => Err(no_messagepack_deser()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_means_no_arguments() {
        let a = Arguments::from_values(PayloadFormat::Json, &()).unwrap();
        assert_eq!(a.as_bytes(), b"[]");
        let a = Arguments::from_values(PayloadFormat::Json, &(40, "x")).unwrap();
        assert_eq!(a.as_bytes(), b"[40,\"x\"]");
        assert!(Arguments::from_values(PayloadFormat::Json, &5).is_err());
    }

    #[test]
    fn no_arguments_bind_to_unit() {
        for format in [PayloadFormat::Json, PayloadFormat::MessagePack] {
            let none = Arguments::empty(format);
            none.deserialize::<()>().unwrap();
            assert!(none.deserialize::<Vec<i32>>().unwrap().is_empty());
            assert!(
                Arguments::from_values(format, &(1,))
                    .unwrap()
                    .deserialize::<()>()
                    .is_err()
            );
        }
    }

    #[test]
    fn json_arguments_split_without_copy() {
        let a = Arguments::from_raw(PayloadFormat::Json, &b"[1, {\"a\":[2]}, \"x\"]"[..]).unwrap();
        let parts = a.to_payloads().unwrap();
        let texts: Vec<&[u8]> = parts.iter().map(Payload::as_bytes).collect();
        assert_eq!(texts, [&b"1"[..], b"{\"a\":[2]}", b"\"x\""]);
        let rebuilt = Arguments::from_payloads(PayloadFormat::Json, &parts).unwrap();
        assert_eq!(
            rebuilt
                .deserialize::<(i32, serde_json::Value, String)>()
                .unwrap()
                .2,
            "x"
        );
    }

    #[test]
    fn raw_payloads_are_checked() {
        assert!(Payload::from_raw(PayloadFormat::Json, &b"{\"a\":1}"[..]).is_ok());
        assert!(Payload::from_raw(PayloadFormat::Json, &b"{\"a\":1"[..]).is_err());
        assert!(Payload::from_raw(PayloadFormat::Json, &b" 1"[..]).is_err());
        assert!(Arguments::from_raw(PayloadFormat::Json, &b"{}"[..]).is_err());
    }

    #[cfg(feature = "messagepack")]
    #[test]
    fn messagepack_structs_are_maps() {
        #[derive(serde::Serialize)]
        struct P {
            a: u8,
        }
        let p = Payload::messagepack(&P { a: 1 }).unwrap();
        assert_eq!(p.as_bytes(), [0x81, 0xa1, b'a', 0x01]);
    }

    #[cfg(feature = "messagepack")]
    #[test]
    fn messagepack_arguments_round_trip() {
        let a = Arguments::from_values(PayloadFormat::MessagePack, &(42, "x", [1, 2])).unwrap();
        let parts = a.to_payloads().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].deserialize::<String>().unwrap(), "x");
        let rebuilt = Arguments::from_payloads(PayloadFormat::MessagePack, &parts).unwrap();
        assert_eq!(rebuilt, a);
        let many: Vec<u32> = (0..20).collect();
        let a = Arguments::from_values(PayloadFormat::MessagePack, &many).unwrap();
        let rebuilt =
            Arguments::from_payloads(PayloadFormat::MessagePack, &a.to_payloads().unwrap())
                .unwrap();
        assert_eq!(rebuilt.deserialize::<Vec<u32>>().unwrap(), many);
    }
}
