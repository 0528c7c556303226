//! The MessagePack hub protocol: one MessagePack array per message, prefixed by its VarInt
//! length.
//!
//! Encoding follows the .NET writer's layout (`Invocation` and `StreamInvocation` always with six
//! elements, `Close` always with three). Decoding accepts every layout the official writers
//! produce: five- or six-element invocations, two- or three-element Close, any integer encoding,
//! `nil` headers, and surplus trailing elements, which later protocol versions may append.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    error::{ProtocolError, Result},
    framing::TransferFormat,
    message::{
        Ack, CancelInvocation, Close, Completion, CompletionResult, Decoded, Headers, HubMessage,
        Invocation, MessageType, Sequence, StreamInvocation, StreamItem,
    },
    msgpack_read::{ReadError, Reader},
    msgpack_write::{write_array_len, write_bool, write_map_len, write_nil, write_str, write_uint},
    payload::{Arguments, Payload, PayloadFormat},
    protocol::{DEFAULT_MAX_MESSAGE_SIZE, HubProtocol, check_encodable},
};

/// The MessagePack hub protocol (`"messagepack"`, version 2, binary transfer format).
///
/// Values are (de)serialized with rmp-serde; structs are written as maps keyed by field name,
/// which is what the .NET and JavaScript implementations read and write.
#[derive(Clone, Debug)]
pub struct MessagePackHubProtocol {
    max_message_size: usize,
}

impl MessagePackHubProtocol {
    /// The protocol with the default maximum message size ([`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn new() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// Sets the largest framed message (length prefix plus body) the decoder accepts.
    #[must_use]
    pub fn with_max_message_size(mut self, max_message_size: usize) -> Self {
        self.max_message_size = max_message_size;
        self
    }
}

impl Default for MessagePackHubProtocol {
    fn default() -> Self {
        Self::new()
    }
}

impl HubProtocol for MessagePackHubProtocol {
    fn name(&self) -> &'static str {
        "messagepack"
    }

    fn version(&self) -> u32 {
        2
    }

    fn transfer_format(&self) -> TransferFormat {
        TransferFormat::Binary
    }

    fn payload_format(&self) -> PayloadFormat {
        PayloadFormat::MessagePack
    }

    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn write_message(&self, message: &HubMessage, dst: &mut BytesMut) -> Result<()> {
        check_encodable(message, PayloadFormat::MessagePack)?;
        write(message, dst);
        Ok(())
    }

    fn parse_message(&self, body: &[u8]) -> Result<Decoded> {
        parse(body)
    }
}

fn write_headers(dst: &mut BytesMut, headers: &Headers) {
    write_map_len(dst, headers.len());
    for (k, v) in headers {
        write_str(dst, k);
        write_str(dst, v);
    }
}

fn write_call(
    dst: &mut BytesMut,
    code: MessageType,
    headers: &Headers,
    id: Option<&str>,
    target: &str,
    args: &Arguments,
    streams: &[String],
) {
    write_array_len(dst, 6);
    write_uint(dst, code.code().into());
    write_headers(dst, headers);
    match id {
        Some(id) => write_str(dst, id),
        None => write_nil(dst),
    }
    write_str(dst, target);
    dst.put_slice(args.as_bytes());
    write_array_len(dst, streams.len());
    for s in streams {
        write_str(dst, s);
    }
}

fn write(message: &HubMessage, dst: &mut BytesMut) {
    let code = message.message_type();
    match message {
        HubMessage::Invocation(m) => write_call(
            dst,
            code,
            &m.headers,
            m.invocation_id.as_deref(),
            &m.target,
            &m.arguments,
            &m.stream_ids,
        ),
        HubMessage::StreamInvocation(m) => {
            write_call(
                dst,
                code,
                &m.headers,
                Some(&m.invocation_id),
                &m.target,
                &m.arguments,
                &m.stream_ids,
            );
        }
        HubMessage::StreamItem(m) => {
            write_array_len(dst, 4);
            write_uint(dst, code.code().into());
            write_headers(dst, &m.headers);
            write_str(dst, &m.invocation_id);
            dst.put_slice(m.item.as_bytes());
        }
        HubMessage::Completion(m) => {
            write_array_len(
                dst,
                if m.result == CompletionResult::Void {
                    4
                } else {
                    5
                },
            );
            write_uint(dst, code.code().into());
            write_headers(dst, &m.headers);
            write_str(dst, &m.invocation_id);
            match &m.result {
                CompletionResult::Error(e) => {
                    write_uint(dst, 1);
                    write_str(dst, e);
                }
                CompletionResult::Void => write_uint(dst, 2),
                CompletionResult::Value(v) => {
                    write_uint(dst, 3);
                    dst.put_slice(v.as_bytes());
                }
            }
        }
        HubMessage::CancelInvocation(m) => {
            write_array_len(dst, 3);
            write_uint(dst, code.code().into());
            write_headers(dst, &m.headers);
            write_str(dst, &m.invocation_id);
        }
        HubMessage::Ping => {
            write_array_len(dst, 1);
            write_uint(dst, code.code().into());
        }
        HubMessage::Close(m) => {
            write_array_len(dst, 3);
            write_uint(dst, code.code().into());
            match &m.error {
                Some(e) => write_str(dst, e),
                None => write_nil(dst),
            }
            write_bool(dst, m.allow_reconnect);
        }
        HubMessage::Ack(Ack { sequence_id }) | HubMessage::Sequence(Sequence { sequence_id }) => {
            write_array_len(dst, 2);
            write_uint(dst, code.code().into());
            write_uint(dst, *sequence_id);
        }
    }
}

/// Reads the fields of one message, naming the field in every error.
struct Fields<'a> {
    r: Reader<'a>,
    body: &'a [u8],
    message_type: &'static str,
    /// Elements in the message array, including the type.
    len: usize,
}

impl<'a> Fields<'a> {
    fn field<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Reader<'a>) -> std::result::Result<T, ReadError>,
    ) -> Result<T> {
        let message_type = self.message_type;
        read(&mut self.r).map_err(|e| ProtocolError::invalid(message_type, field, e.to_string()))
    }

    fn headers(&mut self) -> Result<Headers> {
        self.field("headers", |r| {
            let mut headers = Headers::new();
            // The JS reader accepts nil headers; so do we.
            if r.peek() == Some(0xc0) {
                r.skip_value()?;
                return Ok(headers);
            }
            let n = r.read_map_len()?;
            for _ in 0..n {
                let k = r.read_str()?;
                let v = r.read_str()?;
                headers.insert(k.to_owned(), v.to_owned());
            }
            Ok(headers)
        })
    }

    fn non_empty(&self, field: &'static str, id: &str) -> Result<String> {
        if id.is_empty() {
            return Err(ProtocolError::invalid(self.message_type, field, "empty"));
        }
        Ok(id.to_owned())
    }

    fn id(&mut self) -> Result<String> {
        let id = self.field("invocationId", Reader::read_str)?;
        self.non_empty("invocationId", id)
    }

    fn optional_id(&mut self) -> Result<Option<String>> {
        match self.field("invocationId", Reader::read_nil_or_str)? {
            Some(id) => self.non_empty("invocationId", id).map(Some),
            None => Ok(None),
        }
    }

    fn string(&mut self, field: &'static str) -> Result<String> {
        self.field(field, Reader::read_str).map(str::to_owned)
    }

    fn raw(&mut self, field: &'static str) -> Result<Bytes> {
        let range = self.field(field, Reader::skip_value)?;
        Ok(Bytes::copy_from_slice(&self.body[range]))
    }

    fn arguments(&mut self) -> Result<Arguments> {
        if !matches!(self.r.peek(), Some(0x90..=0x9f | 0xdc | 0xdd)) {
            return Err(ProtocolError::invalid(
                self.message_type,
                "arguments",
                "expected an array",
            ));
        }
        Ok(Arguments::from_checked(
            PayloadFormat::MessagePack,
            self.raw("arguments")?,
        ))
    }

    fn stream_ids(&mut self) -> Result<Vec<String>> {
        // The .NET reader looks at the sixth element only when there is one.
        if self.len < 6 {
            return Ok(Vec::new());
        }
        let ids = self.field("streamIds", |r| {
            let n = r.read_array_len()?;
            let mut ids = Vec::with_capacity(n.min(16));
            for _ in 0..n {
                ids.push(r.read_str()?.to_owned());
            }
            Ok(ids)
        })?;
        if ids.iter().any(String::is_empty) {
            return Err(ProtocolError::invalid(
                self.message_type,
                "streamIds",
                "a stream id is empty",
            ));
        }
        Ok(ids)
    }

    fn sequence_id(&mut self) -> Result<u64> {
        let id = self.field("sequenceId", Reader::read_int)?;
        u64::try_from(id).map_err(|_| {
            ProtocolError::invalid(self.message_type, "sequenceId", format!("negative ({id})"))
        })
    }

    /// Fails unless the array holds every field in `fields` after the type; the error names the
    /// first one missing.
    fn require(&self, fields: &[&'static str]) -> Result<()> {
        // `len` counts the type too, and is at least 1.
        match fields.get(self.len.saturating_sub(1)) {
            Some(missing) if self.len <= fields.len() => {
                Err(ProtocolError::missing(self.message_type, missing))
            }
            _ => Ok(()),
        }
    }

    fn completion(&mut self) -> Result<Completion> {
        self.require(&["headers", "invocationId", "resultKind"])?;
        let headers = self.headers()?;
        let invocation_id = self.id()?;
        let result = match self.field("resultKind", Reader::read_int)? {
            1 => {
                self.require(&["headers", "invocationId", "resultKind", "error"])?;
                CompletionResult::Error(self.string("error")?)
            }
            2 => CompletionResult::Void,
            3 => {
                self.require(&["headers", "invocationId", "resultKind", "result"])?;
                let value = self.raw("result")?;
                CompletionResult::Value(Payload::from_checked(PayloadFormat::MessagePack, value))
            }
            other => {
                let reason = format!("{other} is not 1, 2 or 3");
                return Err(ProtocolError::invalid(
                    self.message_type,
                    "resultKind",
                    reason,
                ));
            }
        };
        Ok(Completion {
            headers,
            invocation_id,
            result,
        })
    }

    fn close(&mut self) -> Result<Close> {
        self.require(&["error"])?;
        let error = self
            .field("error", Reader::read_nil_or_str)?
            .map(str::to_owned);
        let allow_reconnect = self.len >= 3
            && self.field("allowReconnect", |r| {
                // The .NET writer never sends nil here; accept it as "absent" all the same.
                if r.peek() == Some(0xc0) {
                    r.skip_value().map(|_| false)
                } else {
                    r.read_bool()
                }
            })?;
        Ok(Close {
            error,
            allow_reconnect,
        })
    }
}

const CALL_FIELDS: [&str; 4] = ["headers", "invocationId", "target", "arguments"];

fn parse(body: &[u8]) -> Result<Decoded> {
    let mut r = Reader::new(body);
    let len = r.read_array_len().map_err(|e| ProtocolError::Malformed {
        format: "MessagePack",
        source: e.into(),
    })?;
    if len == 0 {
        return Err(ProtocolError::MissingMessageType);
    }
    let code = r
        .read_int()
        .map_err(|_| ProtocolError::MissingMessageType)?;
    let Some(kind) = MessageType::from_code(code) else {
        return Ok(Decoded::Unknown { message_type: code });
    };
    let mut f = Fields {
        r,
        body,
        message_type: kind.name(),
        len,
    };
    let message = match kind {
        MessageType::Invocation => {
            f.require(&CALL_FIELDS)?;
            HubMessage::Invocation(Invocation {
                headers: f.headers()?,
                invocation_id: f.optional_id()?,
                target: f.string("target")?,
                arguments: f.arguments()?,
                stream_ids: f.stream_ids()?,
            })
        }
        MessageType::StreamInvocation => {
            f.require(&CALL_FIELDS)?;
            HubMessage::StreamInvocation(StreamInvocation {
                headers: f.headers()?,
                invocation_id: f.id()?,
                target: f.string("target")?,
                arguments: f.arguments()?,
                stream_ids: f.stream_ids()?,
            })
        }
        MessageType::StreamItem => {
            f.require(&["headers", "invocationId", "item"])?;
            let headers = f.headers()?;
            let invocation_id = f.id()?;
            let item = Payload::from_checked(PayloadFormat::MessagePack, f.raw("item")?);
            HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id,
                item,
            })
        }
        MessageType::Completion => HubMessage::Completion(f.completion()?),
        MessageType::CancelInvocation => {
            f.require(&["headers", "invocationId"])?;
            let headers = f.headers()?;
            HubMessage::CancelInvocation(CancelInvocation {
                headers,
                invocation_id: f.id()?,
            })
        }
        MessageType::Ping => HubMessage::Ping,
        MessageType::Close => HubMessage::Close(f.close()?),
        MessageType::Ack => {
            f.require(&["sequenceId"])?;
            HubMessage::Ack(Ack {
                sequence_id: f.sequence_id()?,
            })
        }
        MessageType::Sequence => {
            f.require(&["sequenceId"])?;
            HubMessage::Sequence(Sequence {
                sequence_id: f.sequence_id()?,
            })
        }
    };
    Ok(Decoded::Message(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Decoded> {
        MessagePackHubProtocol::new().parse_message(bytes)
    }

    #[test]
    fn field_errors_name_the_message_and_field() {
        let cases: [(&[u8], &str); 6] = [
            (
                &[0x94, 0x01, 0x80, 0xc0, 0xa1, b'x'],
                "Invocation message is missing required field `arguments`",
            ),
            (
                &[0x95, 0x01, 0x80, 0xc0, 0xa1, b'x', 0x80],
                "Invocation message has an invalid `arguments`: expected an array",
            ),
            (
                &[0x94, 0x03, 0x80, 0xa1, b'1', 0x04],
                "Completion message has an invalid `resultKind`: 4 is not 1, 2 or 3",
            ),
            (
                &[0x94, 0x03, 0x80, 0xa1, b'1', 0x03],
                "Completion message is missing required field `result`",
            ),
            (
                &[0x92, 0x09, 0xff],
                "Sequence message has an invalid `sequenceId`: negative (-1)",
            ),
            (
                &[0x93, 0x05, 0x80, 0xa2, 0xff, 0xfe],
                "CancelInvocation message has an invalid `invocationId`: string is not valid UTF-8 at byte 4",
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).unwrap_err().to_string(), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn nil_headers_are_accepted() {
        let Decoded::Message(HubMessage::CancelInvocation(c)) =
            decode(&[0x93, 0x05, 0xc0, 0xa1, b'1']).unwrap()
        else {
            panic!()
        };
        assert!(c.headers.is_empty());
    }

    #[test]
    fn deep_payloads_do_not_overflow_the_stack() {
        // 128 levels of rmp-serde + serde_json::Value need more than 256 KiB in debug builds (release
        // fits in 256 KiB, checked by hand);
        // tokio worker threads have 2 MiB.
        const STACK: usize = 1024 * 1024;
        let mut body = vec![0x94, 0x02, 0x80, 0xa1, b'1'];
        body.extend(std::iter::repeat_n(0x91, 1_000_000));
        body.push(0xc0);
        let outcome = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                let Ok(Decoded::Message(HubMessage::StreamItem(item))) = decode(&body) else {
                    return false;
                };
                // Binding the payload to a type must fail cleanly too.
                item.item.deserialize::<serde_json::Value>().is_err()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome);
    }
}
