//! The JSON hub protocol: one JSON object per message, ended by `0x1E`.
//!
//! Encoding follows the .NET writer's property order (`type`, `headers`, `invocationId`, then the
//! type's own fields). Decoding accepts properties in any order (the JS client writes `type`
//! last), ignores unknown properties, and keeps `arguments`, `item` and `result` as raw JSON text
//! until they are bound to a type.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::{
    error::{ProtocolError, Result},
    framing::TransferFormat,
    handshake::write_json_str,
    message::{
        Ack, CancelInvocation, Close, Completion, CompletionResult, Decoded, Headers, HubMessage,
        Invocation, MessageType, Sequence, StreamInvocation, StreamItem,
    },
    payload::{Arguments, Payload, PayloadFormat},
    protocol::{DEFAULT_MAX_MESSAGE_SIZE, HubProtocol, check_encodable},
};

/// The JSON hub protocol (`"json"`, version 2, text transfer format).
#[derive(Clone, Debug)]
pub struct JsonHubProtocol {
    max_message_size: usize,
}

impl JsonHubProtocol {
    /// The protocol with the default maximum message size ([`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn new() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// Sets the largest framed message (JSON text plus record separator) the decoder accepts.
    #[must_use]
    pub fn with_max_message_size(mut self, max_message_size: usize) -> Self {
        self.max_message_size = max_message_size;
        self
    }
}

impl JsonHubProtocol {
    /// Parses `body` with the general parser only, without the fast path for the common
    /// messages: for tests and fuzzing, which check that both give the same answer.
    #[doc(hidden)]
    pub fn parse_message_without_fast_path(&self, body: &[u8]) -> Result<Decoded> {
        parse(body)
    }
}

impl Default for JsonHubProtocol {
    fn default() -> Self {
        Self::new()
    }
}

impl HubProtocol for JsonHubProtocol {
    fn name(&self) -> &'static str {
        "json"
    }

    fn version(&self) -> u32 {
        2
    }

    fn transfer_format(&self) -> TransferFormat {
        TransferFormat::Text
    }

    fn payload_format(&self) -> PayloadFormat {
        PayloadFormat::Json
    }

    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn write_message(&self, message: &HubMessage, dst: &mut BytesMut) -> Result<()> {
        check_encodable(message, PayloadFormat::Json)?;
        write(message, dst);
        Ok(())
    }

    fn parse_message(&self, body: &[u8]) -> Result<Decoded> {
        match parse_common(body) {
            Some(message) => Ok(Decoded::Message(message)),
            None => parse(body),
        }
    }
}

/// The envelope of the common messages (invocations, stream items, completions, pings) with
/// their scalar fields typed: one pass over the text. Anything it cannot take as it is (another
/// type, headers, stream ids, escaped strings, a field of the wrong type, an invalid message)
/// goes to [`parse`], which decides, so the two always agree.
#[derive(Deserialize)]
struct CommonEnvelope<'a> {
    #[serde(rename = "type")]
    message_type: i64,
    #[serde(default, borrow, deserialize_with = "present")]
    headers: Option<&'a RawValue>,
    #[serde(rename = "invocationId", default, borrow)]
    invocation_id: Option<&'a str>,
    #[serde(default, borrow)]
    target: Option<&'a str>,
    #[serde(default, borrow, deserialize_with = "present")]
    arguments: Option<&'a RawValue>,
    #[serde(rename = "streamIds", default, borrow, deserialize_with = "present")]
    stream_ids: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    item: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    // Not used by these types, but a duplicate of them is an error, as in `parse`.
    #[serde(
        rename = "allowReconnect",
        default,
        borrow,
        deserialize_with = "present"
    )]
    _allow_reconnect: Option<&'a RawValue>,
    #[serde(rename = "sequenceId", default, borrow, deserialize_with = "present")]
    _sequence_id: Option<&'a RawValue>,
}

/// The fast path for the common messages; `None` hands the body to [`parse`].
fn parse_common(body: &[u8]) -> Option<HubMessage> {
    if body.first() != Some(&b'{') {
        return None;
    }
    let env: CommonEnvelope<'_> = serde_json::from_slice(body).ok()?;
    if env.headers.is_some() || env.stream_ids.is_some() {
        return None;
    }
    // An empty id is an error; a null one is no id.
    let id = match env.invocation_id {
        Some("") => return None,
        id => id.map(str::to_owned),
    };
    let message = match env.message_type {
        1 => {
            let arguments = env.arguments.filter(|a| a.get().starts_with('['))?;
            HubMessage::Invocation(Invocation {
                headers: Headers::new(),
                invocation_id: id,
                target: env.target?.to_owned(),
                arguments: Arguments::from_checked(PayloadFormat::Json, copy(arguments)),
                stream_ids: Vec::new(),
            })
        }
        2 => HubMessage::StreamItem(StreamItem {
            headers: Headers::new(),
            invocation_id: id?,
            item: Payload::from_checked(PayloadFormat::Json, copy(env.item?)),
        }),
        3 => {
            let result = match (env.result, env.error.filter(|e| e.get() != "null")) {
                (Some(value), None) => {
                    CompletionResult::Value(Payload::from_checked(PayloadFormat::Json, copy(value)))
                }
                (None, None) => CompletionResult::Void,
                // An error's text, or both: the full parser's cases.
                _ => return None,
            };
            HubMessage::Completion(Completion {
                headers: Headers::new(),
                invocation_id: id?,
                result,
            })
        }
        6 => HubMessage::Ping,
        _ => return None,
    };
    Some(message)
}

fn write(message: &HubMessage, dst: &mut BytesMut) {
    dst.put_slice(b"{\"type\":");
    dst.put_u8(b'0' + message.message_type().code());
    if let Some(headers) = message.headers() {
        if !headers.is_empty() {
            dst.put_slice(b",\"headers\":");
            // A map of strings always serializes.
            let _ = serde_json::to_writer(dst.writer(), headers);
        }
    }
    if let Some(id) = message.invocation_id() {
        dst.put_slice(b",\"invocationId\":");
        write_json_str(dst, id);
    }
    match message {
        HubMessage::Invocation(Invocation {
            target,
            arguments,
            stream_ids,
            ..
        })
        | HubMessage::StreamInvocation(StreamInvocation {
            target,
            arguments,
            stream_ids,
            ..
        }) => {
            dst.put_slice(b",\"target\":");
            write_json_str(dst, target);
            dst.put_slice(b",\"arguments\":");
            dst.put_slice(arguments.as_bytes());
            if !stream_ids.is_empty() {
                dst.put_slice(b",\"streamIds\":");
                let _ = serde_json::to_writer(dst.writer(), stream_ids);
            }
        }
        HubMessage::StreamItem(StreamItem { item, .. }) => {
            dst.put_slice(b",\"item\":");
            dst.put_slice(item.as_bytes());
        }
        HubMessage::Completion(Completion { result, .. }) => match result {
            CompletionResult::Void => {}
            CompletionResult::Value(value) => {
                dst.put_slice(b",\"result\":");
                dst.put_slice(value.as_bytes());
            }
            CompletionResult::Error(error) => {
                dst.put_slice(b",\"error\":");
                write_json_str(dst, error);
            }
        },
        HubMessage::Close(Close {
            error,
            allow_reconnect,
        }) => {
            if let Some(error) = error {
                dst.put_slice(b",\"error\":");
                write_json_str(dst, error);
            }
            if *allow_reconnect {
                dst.put_slice(b",\"allowReconnect\":true");
            }
        }
        HubMessage::Ack(Ack { sequence_id }) | HubMessage::Sequence(Sequence { sequence_id }) => {
            dst.put_slice(b",\"sequenceId\":");
            dst.put_slice(sequence_id.to_string().as_bytes());
        }
        HubMessage::CancelInvocation(_) | HubMessage::Ping => {}
    }
    dst.put_u8(b'}');
}

/// Every property any message type uses, kept raw; `null` is kept as a value (so that
/// `"result":null` differs from no `result`).
/// [`CommonEnvelope`] declares the same properties, so that both reject the same duplicates: a
/// property added here goes there too.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", default, borrow, deserialize_with = "present")]
    message_type: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    headers: Option<&'a RawValue>,
    #[serde(rename = "invocationId", default, borrow, deserialize_with = "present")]
    invocation_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    target: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    arguments: Option<&'a RawValue>,
    #[serde(rename = "streamIds", default, borrow, deserialize_with = "present")]
    stream_ids: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    item: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    #[serde(
        rename = "allowReconnect",
        default,
        borrow,
        deserialize_with = "present"
    )]
    allow_reconnect: Option<&'a RawValue>,
    #[serde(rename = "sequenceId", default, borrow, deserialize_with = "present")]
    sequence_id: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Typed access to the envelope's fields for one message type.
struct Fields<'a> {
    env: Envelope<'a>,
    message_type: &'static str,
}

impl<'a> Fields<'a> {
    fn parse<T: Deserialize<'a>>(
        &self,
        field: &'static str,
        raw: &'a RawValue,
        expected: &str,
    ) -> Result<T> {
        serde_json::from_str(raw.get()).map_err(|_| {
            ProtocolError::invalid(self.message_type, field, format!("expected {expected}"))
        })
    }

    fn non_null(raw: Option<&'a RawValue>) -> Option<&'a RawValue> {
        raw.filter(|r| r.get() != "null")
    }

    fn headers(&self) -> Result<Headers> {
        match Self::non_null(self.env.headers) {
            None => Ok(Headers::new()),
            Some(raw) => self.parse("headers", raw, "an object of strings"),
        }
    }

    fn id(&self, raw: &'a RawValue) -> Result<String> {
        let id: String = self.parse("invocationId", raw, "a string")?;
        if id.is_empty() {
            return Err(ProtocolError::invalid(
                self.message_type,
                "invocationId",
                "empty",
            ));
        }
        Ok(id)
    }

    fn required_id(&self) -> Result<String> {
        let raw = self
            .env
            .invocation_id
            .ok_or_else(|| ProtocolError::missing(self.message_type, "invocationId"))?;
        self.id(raw)
    }

    fn optional_id(&self) -> Result<Option<String>> {
        Self::non_null(self.env.invocation_id)
            .map(|raw| self.id(raw))
            .transpose()
    }

    fn target(&self) -> Result<String> {
        let raw = self
            .env
            .target
            .ok_or_else(|| ProtocolError::missing(self.message_type, "target"))?;
        self.parse("target", raw, "a string")
    }

    fn arguments(&self) -> Result<Arguments> {
        let raw = self
            .env
            .arguments
            .ok_or_else(|| ProtocolError::missing(self.message_type, "arguments"))?;
        if !raw.get().starts_with('[') {
            return Err(ProtocolError::invalid(
                self.message_type,
                "arguments",
                "expected an array",
            ));
        }
        Ok(Arguments::from_checked(PayloadFormat::Json, copy(raw)))
    }

    fn stream_ids(&self) -> Result<Vec<String>> {
        match Self::non_null(self.env.stream_ids) {
            None => Ok(Vec::new()),
            Some(raw) => {
                let ids: Vec<String> = self.parse("streamIds", raw, "an array of strings")?;
                if ids.iter().any(String::is_empty) {
                    return Err(ProtocolError::invalid(
                        self.message_type,
                        "streamIds",
                        "a stream id is empty",
                    ));
                }
                Ok(ids)
            }
        }
    }

    fn sequence_id(&self) -> Result<u64> {
        let raw = self
            .env
            .sequence_id
            .ok_or_else(|| ProtocolError::missing(self.message_type, "sequenceId"))?;
        let id: i64 = self.parse("sequenceId", raw, "an integer")?;
        u64::try_from(id).map_err(|_| {
            ProtocolError::invalid(self.message_type, "sequenceId", format!("negative ({id})"))
        })
    }

    fn error(&self) -> Result<Option<String>> {
        Self::non_null(self.env.error)
            .map(|raw| self.parse("error", raw, "a string"))
            .transpose()
    }
}

fn copy(raw: &RawValue) -> Bytes {
    Bytes::copy_from_slice(raw.get().as_bytes())
}

fn parse(body: &[u8]) -> Result<Decoded> {
    // A derived struct would also accept an array (fields by position); a message is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ProtocolError::Malformed {
            format: "JSON",
            source: "a message must be a JSON object".into(),
        });
    }
    let env: Envelope<'_> = serde_json::from_slice(body).map_err(|e| ProtocolError::Malformed {
        format: "JSON",
        source: e.into(),
    })?;
    let code: i64 = match env.message_type {
        None => return Err(ProtocolError::MissingMessageType),
        Some(raw) => {
            serde_json::from_str(raw.get()).map_err(|_| ProtocolError::MissingMessageType)?
        }
    };
    let Some(kind) = MessageType::from_code(code) else {
        return Ok(Decoded::Unknown { message_type: code });
    };
    let f = Fields {
        env,
        message_type: kind.name(),
    };
    let message = match kind {
        MessageType::Invocation => HubMessage::Invocation(Invocation {
            headers: f.headers()?,
            invocation_id: f.optional_id()?,
            target: f.target()?,
            arguments: f.arguments()?,
            stream_ids: f.stream_ids()?,
        }),
        MessageType::StreamInvocation => HubMessage::StreamInvocation(StreamInvocation {
            headers: f.headers()?,
            invocation_id: f.required_id()?,
            target: f.target()?,
            arguments: f.arguments()?,
            stream_ids: f.stream_ids()?,
        }),
        MessageType::StreamItem => {
            let item = f
                .env
                .item
                .ok_or_else(|| ProtocolError::missing(f.message_type, "item"))?;
            HubMessage::StreamItem(StreamItem {
                headers: f.headers()?,
                invocation_id: f.required_id()?,
                item: Payload::from_checked(PayloadFormat::Json, copy(item)),
            })
        }
        MessageType::Completion => {
            let invocation_id = f.required_id()?;
            let result = match (f.env.result, f.error()?) {
                (Some(_), Some(_)) => return Err(ProtocolError::ResultAndError { invocation_id }),
                (Some(value), None) => {
                    CompletionResult::Value(Payload::from_checked(PayloadFormat::Json, copy(value)))
                }
                (None, Some(error)) => CompletionResult::Error(error),
                (None, None) => CompletionResult::Void,
            };
            HubMessage::Completion(Completion {
                headers: f.headers()?,
                invocation_id,
                result,
            })
        }
        MessageType::CancelInvocation => HubMessage::CancelInvocation(CancelInvocation {
            headers: f.headers()?,
            invocation_id: f.required_id()?,
        }),
        MessageType::Ping => HubMessage::Ping,
        MessageType::Close => {
            let allow_reconnect = match Fields::non_null(f.env.allow_reconnect) {
                None => false,
                Some(raw) => f.parse("allowReconnect", raw, "a boolean")?,
            };
            HubMessage::Close(Close {
                error: f.error()?,
                allow_reconnect,
            })
        }
        MessageType::Ack => HubMessage::Ack(Ack {
            sequence_id: f.sequence_id()?,
        }),
        MessageType::Sequence => HubMessage::Sequence(Sequence {
            sequence_id: f.sequence_id()?,
        }),
    };
    Ok(Decoded::Message(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<Decoded> {
        JsonHubProtocol::new().parse_message(text.as_bytes())
    }

    fn encode(message: &HubMessage) -> String {
        let mut buf = BytesMut::new();
        JsonHubProtocol::new().encode(message, &mut buf).unwrap();
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_parser() {
        let protocol = JsonHubProtocol::new();
        let cases = [
            r#"{"type":1,"target":"seq","arguments":[1]}"#,
            r#"{"type":1,"invocationId":"7","target":"Echo","arguments":["x"]}"#,
            r#"{"type":1,"invocationId":null,"target":"a","arguments":[]}"#,
            r#"{"type":1,"invocationId":"","target":"a","arguments":[]}"#,
            r#"{"type":1,"target":"","arguments":[]}"#,
            r#"{"type":1,"target":null,"arguments":[]}"#,
            r#"{"type":1,"target":"a\u0062","arguments":[]}"#,
            r#"{"type":1,"target":"a","arguments":{}}"#,
            r#"{"type":1,"target":"a"}"#,
            r#"{"type":1,"target":"a","arguments":[],"headers":null}"#,
            r#"{"type":1,"target":"a","arguments":[],"headers":{"k":"v"}}"#,
            r#"{"type":1,"target":"a","arguments":[],"streamIds":["1"]}"#,
            r#"{"type":1,"target":"a","arguments":[],"sequenceId":1,"sequenceId":2}"#,
            r#"{"type":1,"target":"a","target":"b","arguments":[]}"#,
            r#"{"type":1.0,"target":"a","arguments":[]}"#,
            r#"{"type":"1","target":"a","arguments":[]}"#,
            r#"{"target":"a","arguments":[],"type":1}"#,
            r#" {"type":1,"target":"a","arguments":[]}"#,
            r#"{"type":1,"target":"a","arguments":[]} x"#,
            r#"{"type":2,"invocationId":"1","item":null}"#,
            r#"{"type":2,"invocationId":"1"}"#,
            r#"{"type":2,"invocationId":null,"item":1}"#,
            r#"{"type":3,"invocationId":"1"}"#,
            r#"{"type":3,"invocationId":"1","result":null}"#,
            r#"{"type":3,"invocationId":"1","result":{"a":[1]}}"#,
            r#"{"type":3,"invocationId":"1","error":null}"#,
            r#"{"type":3,"invocationId":"1","error":"boom"}"#,
            r#"{"type":3,"invocationId":"1","error":5}"#,
            r#"{"type":3,"invocationId":"1","result":1,"error":"e"}"#,
            r#"{"type":3,"invocationId":"1","result":1,"error":null}"#,
            r#"{"type":3,"result":1}"#,
            r#"{"type":6}"#,
            r#"{"type":6,"invocationId":5}"#,
            r#"{"type":6,"allowReconnect":true,"allowReconnect":false}"#,
            r#"{"type":7,"error":"bye","allowReconnect":true}"#,
            r#"{"type":99}"#,
            r#"[1,"a",[]]"#,
        ];
        for case in cases {
            assert_eq!(
                format!("{:?}", protocol.parse_message(case.as_bytes())),
                format!(
                    "{:?}",
                    protocol.parse_message_without_fast_path(case.as_bytes())
                ),
                "{case}"
            );
        }
    }

    #[test]
    fn null_result_is_a_value_and_absent_result_is_void() {
        let Decoded::Message(HubMessage::Completion(c)) =
            decode(r#"{"type":3,"invocationId":"1","result":null}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            c.result,
            CompletionResult::Value(Payload::null(PayloadFormat::Json))
        );
        let Decoded::Message(HubMessage::Completion(c)) =
            decode(r#"{"type":3,"invocationId":"1"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.result, CompletionResult::Void);
    }

    #[test]
    fn field_errors_name_the_message_and_field() {
        let cases = [
            (
                r#"{"type":1,"target":"x"}"#,
                "Invocation message is missing required field `arguments`",
            ),
            (
                r#"{"type":1,"target":"x","arguments":{}}"#,
                "Invocation message has an invalid `arguments`: expected an array",
            ),
            (
                r#"{"type":2,"invocationId":"1"}"#,
                "StreamItem message is missing required field `item`",
            ),
            (
                r#"{"type":3,"invocationId":5}"#,
                "Completion message has an invalid `invocationId`: expected a string",
            ),
            (
                r#"{"type":5,"invocationId":""}"#,
                "CancelInvocation message has an invalid `invocationId`: empty",
            ),
            (
                r#"{"type":8,"sequenceId":-1}"#,
                "Ack message has an invalid `sequenceId`: negative (-1)",
            ),
            (
                r#"{"type":9}"#,
                "Sequence message is missing required field `sequenceId`",
            ),
            (r#"{"type":"1"}"#, "message has no integer `type`"),
            (r"[1]", "malformed JSON message"),
        ];
        for (text, want) in cases {
            assert_eq!(decode(text).unwrap_err().to_string(), want, "{text}");
        }
    }

    #[test]
    fn unknown_properties_are_ignored() {
        assert_eq!(
            decode(r#"{"future":[1,{"a":2}],"type":6,"extra":null}"#).unwrap(),
            Decoded::Message(HubMessage::Ping)
        );
    }

    #[test]
    fn encodes_close_fields_only_when_set() {
        assert_eq!(
            encode(&HubMessage::Close(Close::default())),
            "{\"type\":7}\u{1e}"
        );
        assert_eq!(
            encode(&HubMessage::Close(Close::new(Some("x".into()), true))),
            "{\"type\":7,\"error\":\"x\",\"allowReconnect\":true}\u{1e}"
        );
    }

    #[test]
    fn refuses_to_encode_foreign_payloads_and_empty_ids() {
        let mut buf = BytesMut::new();
        let args = Arguments::empty(PayloadFormat::MessagePack);
        let err = JsonHubProtocol::new()
            .encode(
                &HubMessage::Invocation(Invocation::new("1", "x", args)),
                &mut buf,
            )
            .unwrap_err();
        assert!(err.to_string().contains("MessagePack payload"), "{err}");
        let err = JsonHubProtocol::new()
            .encode(
                &HubMessage::CancelInvocation(CancelInvocation::new("")),
                &mut buf,
            )
            .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert!(buf.is_empty());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!(
            "{{\"type\":1,\"target\":\"x\",\"arguments\":{}}}",
            "[".repeat(100_000)
        );
        let outcome = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || decode(&text).is_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome);
    }
}
