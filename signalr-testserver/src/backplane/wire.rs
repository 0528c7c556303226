//! ASP.NET Core's Redis backplane format, sans-IO: channel names and the MessagePack payloads
//! of `RedisProtocol`, as `Microsoft.AspNetCore.SignalR.StackExchangeRedis` writes and reads
//! them, so that an instance of this server can share a Redis with ASP.NET Core servers.
//!
//! Sources, dotnet/aspnetcore `src/SignalR/server/StackExchangeRedis/`:
//! `src/Internal/RedisProtocol.cs` at 3bdb2c15, `src/Internal/RedisChannels.cs` at cca91f24,
//! `src/Internal/GroupAction.cs` at cca91f24; the byte vectors of `test/RedisProtocolTests.cs`
//! are this module's tests.
//!
//! ```
//! use signalr_testserver::backplane::wire::{Channels, RedisInvocation};
//!
//! let channels = Channels::new("Chat.ChatHub", "node-a");
//! assert_eq!(channels.group("room"), "Chat.ChatHub:group:room");
//! // One serialized hub message per protocol, each exactly as a client transport carries it.
//! let invocation = RedisInvocation::new(vec![("json".into(), b"{}\x1e".to_vec().into())]);
//! let bytes = invocation.encode();
//! assert_eq!(RedisInvocation::decode(&bytes).unwrap(), invocation);
//! ```

use bytes::Bytes;
use rmp::Marker;

/// A payload that is not what `RedisProtocol` reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes ended inside a value.
    #[error("the {0} payload ends early")]
    Truncated(&'static str),
    /// An array shorter than the message needs (ASP.NET Core: "Insufficient items in … array.").
    #[error("insufficient items in the {0} array")]
    InsufficientItems(&'static str),
    /// A value of the wrong MessagePack type.
    #[error("the {field} of a {message} is not a {expected}")]
    WrongType {
        /// The message being read.
        message: &'static str,
        /// The field being read.
        field: &'static str,
        /// What was expected there.
        expected: &'static str,
    },
    /// A string that is not UTF-8.
    #[error("the {field} of a {message} is not UTF-8")]
    NotUtf8 {
        /// The message being read.
        message: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// A group action other than 1 (add) or 2 (remove).
    #[error("unknown group action {0}")]
    UnknownGroupAction(u8),
}

/// The channel names of one hub (`RedisChannels`): `{hub}:all`, `{hub}:group:{name}`,
/// `{hub}:connection:{id}`, `{hub}:user:{id}`, `{hub}:internal:groups`,
/// `{hub}:internal:ack:{server}` and `{hub}:internal:return:{server}`. `hub` is what ASP.NET
/// Core uses, the hub class's .NET full name (`typeof(THub).FullName`); names and ids are
/// appended verbatim, and every channel is a literal (`SUBSCRIBE`, never `PSUBSCRIBE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channels {
    hub: String,
    server_name: String,
}

impl Channels {
    /// The channels of `hub` as seen by the server named `server_name`.
    pub fn new(hub: &str, server_name: &str) -> Self {
        Self {
            hub: hub.to_owned(),
            server_name: server_name.to_owned(),
        }
    }

    /// Every connection of the hub.
    pub fn all(&self) -> String {
        format!("{}:all", self.hub)
    }

    /// Group membership commands between servers.
    pub fn group_management(&self) -> String {
        format!("{}:internal:groups", self.hub)
    }

    /// Where this server receives client results it asked another server for.
    pub fn return_results(&self) -> String {
        format!("{}:internal:return:{}", self.hub, self.server_name)
    }

    /// Where this server receives acks of its group commands.
    pub fn own_ack(&self) -> String {
        self.ack(&self.server_name)
    }

    /// The acks of the server named `server_name`.
    pub fn ack(&self, server_name: &str) -> String {
        format!("{}:internal:ack:{server_name}", self.hub)
    }

    /// One connection.
    pub fn connection(&self, connection_id: &str) -> String {
        format!("{}:connection:{connection_id}", self.hub)
    }

    /// The members of a group.
    pub fn group(&self, group: &str) -> String {
        format!("{}:group:{group}", self.hub)
    }

    /// Every connection of a user.
    pub fn user(&self, user: &str) -> String {
        format!("{}:user:{user}", self.hub)
    }
}

/// A hub invocation published to the all, group, connection or user channel.
///
/// `[[excluded ids…], {protocol: bin…}]`, or `[…, …, invocationId, returnChannel]` when it
/// asks for a client result. Each map value is the whole message as a client transport carries
/// it in that protocol (JSON and the record separator; the MessagePack length prefix and
/// body), which the receiving server writes to its connections unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisInvocation {
    /// Connections not to deliver to (only on the all and group channels, as ASP.NET Core).
    pub excluded_connection_ids: Vec<String>,
    /// One serialized message per hub protocol name, in order.
    pub messages: Vec<(String, Bytes)>,
    /// For a client result: the invocation id and the logical return channel
    /// (`{hub}:internal:return:{server}`) the answer goes to.
    pub client_result: Option<(String, String)>,
}

impl RedisInvocation {
    /// An invocation for every connection, with these serialized messages.
    pub fn new(messages: Vec<(String, Bytes)>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    /// The serialized message for `protocol` (the name a client sent in its handshake).
    pub fn message(&self, protocol: &str) -> Option<&Bytes> {
        self.messages
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, bytes)| bytes)
    }

    /// `RedisProtocol.WriteInvocation`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let len = if self.client_result.is_some() { 4 } else { 2 };
        write_array_len(&mut out, len);
        write_array_len(&mut out, self.excluded_connection_ids.len());
        for id in &self.excluded_connection_ids {
            write_str(&mut out, id);
        }
        write_map_len(&mut out, self.messages.len());
        for (protocol, bytes) in &self.messages {
            write_str(&mut out, protocol);
            write_bin(&mut out, bytes);
        }
        if let Some((invocation_id, return_channel)) = &self.client_result {
            write_str(&mut out, invocation_id);
            write_str(&mut out, return_channel);
        }
        out
    }

    /// `RedisProtocol.ReadInvocation`: at least two items; a third and fourth, when both are
    /// there and the id is not empty, ask for a client result; items past those are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        const M: &str = "Invocation";
        let mut r = Reader::new(bytes, M);
        let len = r.array_len("array")?;
        if len < 2 {
            return Err(WireError::InsufficientItems(M));
        }
        let ids = r.array_len("excluded connection ids")?;
        let mut excluded_connection_ids = Vec::with_capacity(ids.min(1024));
        for _ in 0..ids {
            excluded_connection_ids.push(r.string("excluded connection id")?.unwrap_or_default());
        }
        let count = r.map_len("serialized messages")?;
        let mut messages = Vec::with_capacity(count.min(16));
        for _ in 0..count {
            let protocol = r.string("protocol name")?.unwrap_or_default();
            let message = r.bytes("serialized message")?;
            messages.push((protocol, Bytes::copy_from_slice(message)));
        }
        let mut client_result = None;
        if len > 3 {
            let invocation_id = r.string("invocation id")?;
            let return_channel = r.string("return channel")?;
            if let (Some(id), Some(channel)) = (invocation_id, return_channel) {
                if !id.is_empty() {
                    client_result = Some((id, channel));
                }
            }
        }
        Ok(Self {
            excluded_connection_ids,
            messages,
            client_result,
        })
    }
}

/// `GroupAction`: a byte on the wire, 0 unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupAction {
    /// Add the connection to the group.
    Add = 1,
    /// Remove the connection from the group.
    Remove = 2,
}

/// A group membership change for a connection held by another server, on
/// `{hub}:internal:groups`: `[id, serverName, action, groupName, connectionId]`. The server
/// that holds the connection applies it and acks `id` on the sender's ack channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCommand {
    /// The sender's ack id.
    pub id: i32,
    /// The sender's server name (its ack channel).
    pub server_name: String,
    /// Add or remove.
    pub action: GroupAction,
    /// The group.
    pub group: String,
    /// The connection.
    pub connection_id: String,
}

impl GroupCommand {
    /// `RedisProtocol.WriteGroupCommand`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_array_len(&mut out, 5);
        write_int(&mut out, i64::from(self.id));
        write_str(&mut out, &self.server_name);
        write_int(&mut out, self.action as i64);
        write_str(&mut out, &self.group);
        write_str(&mut out, &self.connection_id);
        out
    }

    /// `RedisProtocol.ReadGroupCommand`.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        const M: &str = "GroupCommand";
        let mut r = Reader::new(bytes, M);
        if r.array_len("array")? < 5 {
            return Err(WireError::InsufficientItems(M));
        }
        let id = r.int32("id")?;
        let server_name = r.string("server name")?.unwrap_or_default();
        let action = match r.int("action")? {
            1 => GroupAction::Add,
            2 => GroupAction::Remove,
            other => {
                return Err(WireError::UnknownGroupAction(
                    u8::try_from(other).unwrap_or(0),
                ));
            }
        };
        let group = r.string("group name")?.unwrap_or_default();
        let connection_id = r.string("connection id")?.unwrap_or_default();
        Ok(Self {
            id,
            server_name,
            action,
            group,
            connection_id,
        })
    }
}

/// `RedisProtocol.WriteAck`: `[id]`.
pub fn encode_ack(id: i32) -> Vec<u8> {
    let mut out = Vec::new();
    write_array_len(&mut out, 1);
    write_int(&mut out, i64::from(id));
    out
}

/// `RedisProtocol.ReadAck`.
pub fn decode_ack(bytes: &[u8]) -> Result<i32, WireError> {
    const M: &str = "Ack";
    let mut r = Reader::new(bytes, M);
    if r.array_len("array")? < 1 {
        return Err(WireError::InsufficientItems(M));
    }
    r.int32("id")
}

/// A client's answer to a client result, forwarded to the server that asked, on its
/// `{hub}:internal:return:{server}`: `[protocolName, bin]`, the bin the whole Completion
/// message in that protocol as the client's transport carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisCompletion {
    /// The hub protocol of the answering connection.
    pub protocol: String,
    /// The serialized Completion message.
    pub message: Bytes,
}

impl RedisCompletion {
    /// `RedisProtocol.WriteCompletionMessage`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_array_len(&mut out, 2);
        write_str(&mut out, &self.protocol);
        write_bin(&mut out, &self.message);
        out
    }

    /// `RedisProtocol.ReadCompletion`.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        const M: &str = "CompletionMessage";
        let mut r = Reader::new(bytes, M);
        if r.array_len("array")? < 2 {
            return Err(WireError::InsufficientItems(M));
        }
        let protocol = r.string("protocol name")?.unwrap_or_default();
        let message = Bytes::copy_from_slice(r.bytes("completion message")?);
        Ok(Self { protocol, message })
    }
}

// Writing, with MessagePack-CSharp's choices: the smallest form of every length and integer,
// strings as str, byte payloads as bin. Writes into a Vec cannot fail.

fn write_array_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let _ = rmp::encode::write_array_len(out, len);
}

fn write_map_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let _ = rmp::encode::write_map_len(out, len);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(out, s);
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let _ = rmp::encode::write_bin(out, b);
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    let _ = rmp::encode::write_sint(out, v);
}

/// A bounds-checked MessagePack reader over one payload.
struct Reader<'a> {
    bytes: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], message: &'static str) -> Self {
        Self { bytes, message }
    }

    fn wrong(&self, field: &'static str, expected: &'static str) -> WireError {
        WireError::WrongType {
            message: self.message,
            field,
            expected,
        }
    }

    fn marker(&mut self) -> Result<Marker, WireError> {
        let (&first, rest) = self
            .bytes
            .split_first()
            .ok_or(WireError::Truncated(self.message))?;
        self.bytes = rest;
        Ok(Marker::from_u8(first))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated(self.message));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn be(&mut self, n: usize) -> Result<u64, WireError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len_of(&mut self, n: usize) -> Result<usize, WireError> {
        usize::try_from(self.be(n)?).map_err(|_| WireError::Truncated(self.message))
    }

    fn array_len(&mut self, field: &'static str) -> Result<usize, WireError> {
        match self.marker()? {
            Marker::FixArray(n) => Ok(usize::from(n)),
            Marker::Array16 => self.len_of(2),
            Marker::Array32 => self.len_of(4),
            _ => Err(self.wrong(field, "array")),
        }
    }

    fn map_len(&mut self, field: &'static str) -> Result<usize, WireError> {
        match self.marker()? {
            Marker::FixMap(n) => Ok(usize::from(n)),
            Marker::Map16 => self.len_of(2),
            Marker::Map32 => self.len_of(4),
            _ => Err(self.wrong(field, "map")),
        }
    }

    /// A str, or nil (`None`).
    fn string(&mut self, field: &'static str) -> Result<Option<String>, WireError> {
        let len = match self.marker()? {
            Marker::Null => return Ok(None),
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => self.len_of(1)?,
            Marker::Str16 => self.len_of(2)?,
            Marker::Str32 => self.len_of(4)?,
            _ => return Err(self.wrong(field, "string")),
        };
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| WireError::NotUtf8 {
                message: self.message,
                field,
            })
    }

    /// A bin, or a str (MessagePack-CSharp's `ReadBytes` accepts both), or nil (empty).
    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let len = match self.marker()? {
            Marker::Null => 0,
            Marker::Bin8 | Marker::Str8 => self.len_of(1)?,
            Marker::Bin16 | Marker::Str16 => self.len_of(2)?,
            Marker::Bin32 | Marker::Str32 => self.len_of(4)?,
            Marker::FixStr(n) => usize::from(n),
            _ => return Err(self.wrong(field, "binary")),
        };
        self.take(len)
    }

    fn int(&mut self, field: &'static str) -> Result<i64, WireError> {
        let v = match self.marker()? {
            Marker::FixPos(n) => i64::from(n),
            Marker::FixNeg(n) => i64::from(n),
            Marker::U8 => self.signed(1, false)?,
            Marker::U16 => self.signed(2, false)?,
            Marker::U32 => self.signed(4, false)?,
            Marker::U64 => self.signed(8, false)?,
            Marker::I8 => self.signed(1, true)?,
            Marker::I16 => self.signed(2, true)?,
            Marker::I32 => self.signed(4, true)?,
            Marker::I64 => self.signed(8, true)?,
            _ => return Err(self.wrong(field, "integer")),
        };
        Ok(v)
    }

    fn signed(&mut self, n: usize, signed: bool) -> Result<i64, WireError> {
        let raw = self.be(n)?;
        if signed {
            let shift = 64 - 8 * u32::try_from(n).unwrap_or(8);
            #[allow(clippy::cast_possible_wrap, reason = "two's complement sign extension")]
            Ok(((raw << shift) as i64) >> shift)
        } else {
            i64::try_from(raw).map_err(|_| self.wrong("integer", "64-bit integer"))
        }
    }

    fn int32(&mut self, field: &'static str) -> Result<i32, WireError> {
        let v = self.int(field)?;
        i32::try_from(v).map_err(|_| self.wrong(field, "32-bit integer"))
    }
}

#[cfg(test)]
mod tests {
    //! The vectors of dotnet/aspnetcore
    //! `src/SignalR/server/StackExchangeRedis/test/RedisProtocolTests.cs` (the ack, group and
    //! invocation data are the same at 6df502e2 and in the newest version, which adds the
    //! completion data), byte for byte in both directions; and those of
    //! `test/DefaultHubMessageSerializerTests.cs` at 6df502e2 for what goes in the map.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn acks() {
        for (id, encoded) in [
            (0, "9100"),
            (42, "912a"),
            (180, "91ccb4"),
            (384, "91cd0180"),
            (70000, "91ce00011170"),
        ] {
            assert_eq!(encode_ack(id), hex(encoded), "WriteAck {id}");
            assert_eq!(decode_ack(&hex(encoded)), Ok(id), "ParseAck {encoded}");
        }
    }

    #[test]
    fn group_commands() {
        for (action, encoded) in [
            (GroupAction::Add, "952aa15301a147a143"),
            (GroupAction::Remove, "952aa15302a147a143"),
        ] {
            let command = GroupCommand {
                id: 42,
                server_name: "S".into(),
                action,
                group: "G".into(),
                connection_id: "C".into(),
            };
            assert_eq!(command.encode(), hex(encoded));
            assert_eq!(GroupCommand::decode(&hex(encoded)), Ok(command));
        }
    }

    /// `DummyHubProtocol("p1")` and `("p2")` serialize every message as the one byte 0x2a.
    fn dummy(excluded: &[&str]) -> RedisInvocation {
        RedisInvocation {
            excluded_connection_ids: excluded.iter().map(|s| (*s).to_owned()).collect(),
            messages: vec![
                ("p1".into(), Bytes::from_static(&[0x2a])),
                ("p2".into(), Bytes::from_static(&[0x2a])),
            ],
            client_result: None,
        }
    }

    #[test]
    fn invocations() {
        for (excluded, encoded) in [
            (&[][..], "929082a27031c4012aa27032c4012a"),
            (&["a"][..], "9291a16182a27031c4012aa27032c4012a"),
            (
                &["a", "b", "c", "d", "e", "f"][..],
                "9296a161a162a163a164a165a16682a27031c4012aa27032c4012a",
            ),
        ] {
            let invocation = dummy(excluded);
            assert_eq!(invocation.encode(), hex(encoded), "{excluded:?}");
            let decoded = RedisInvocation::decode(&hex(encoded)).unwrap();
            assert_eq!(decoded, invocation);
            assert_eq!(decoded.message("p1").unwrap().as_ref(), [0x2a]);
            assert_eq!(decoded.message("p2").unwrap().as_ref(), [0x2a]);
            assert_eq!(decoded.message("json"), None);
        }
    }

    #[test]
    fn completions() {
        let json = RedisCompletion {
            protocol: "json".into(),
            message: Bytes::from_static(b"{\"type\":3,\"invocationId\":\"1\",\"result\":1}"),
        };
        let json_hex = "92a46a736f6ec4287b2274797065223a332c22696e766f636174696f6e4964223a2231222c22726573756c74223a317d";
        let msgpack = RedisCompletion {
            protocol: "messagepack".into(),
            message: Bytes::from_static(&[0x95, 0x03, 0x80, 0xa3, b'x', b'y', b'z', 0x03, 0x2a]),
        };
        let msgpack_hex = "92ab6d6573736167657061636bc409950380a378797a032a";
        for (completion, encoded) in [(json, json_hex), (msgpack, msgpack_hex)] {
            assert_eq!(completion.encode(), hex(encoded));
            assert_eq!(RedisCompletion::decode(&hex(encoded)), Ok(completion));
        }
    }

    /// What `DefaultHubMessageSerializer` puts in the map for `InvocationMessage("target", [])`
    /// with the real protocols: the framed bytes of `signalr_protocol`'s encoders.
    #[test]
    fn serialized_messages_are_the_framed_hub_messages() {
        use signalr_protocol::{
            Arguments, HubMessage, HubProtocol, Invocation, JsonHubProtocol,
            MessagePackHubProtocol, PayloadFormat,
        };
        let message = |format| {
            HubMessage::Invocation(Invocation::non_blocking(
                "target",
                Arguments::from_values(format, &()).unwrap(),
            ))
        };
        let mut mp = bytes::BytesMut::new();
        MessagePackHubProtocol::new()
            .encode(&message(PayloadFormat::MessagePack), &mut mp)
            .unwrap();
        assert_eq!(mp.as_ref(), hex("0d960180c0a67461726765749090"));
        let mut json = bytes::BytesMut::new();
        JsonHubProtocol::new()
            .encode(&message(PayloadFormat::Json), &mut json)
            .unwrap();
        assert_eq!(
            json.as_ref(),
            hex(
                "7b2274797065223a312c22746172676574223a22746172676574222c22617267756d656e7473223a5b5d7d1e"
            )
        );
    }

    #[test]
    fn client_result_requests_carry_the_id_and_return_channel() {
        let mut invocation = dummy(&[]);
        invocation.client_result = Some(("abc".into(), "R".into()));
        let encoded = hex("949082a27031c4012aa27032c4012aa3616263a152");
        assert_eq!(invocation.encode(), encoded);
        assert_eq!(RedisInvocation::decode(&encoded), Ok(invocation));
        // Three items: the third is ignored, as `length > 3` in ReadInvocation.
        let three = hex("939082a27031c4012aa27032c4012aa3616263");
        assert_eq!(RedisInvocation::decode(&three).unwrap().client_result, None);
    }

    #[test]
    fn what_aspnet_tolerates_is_read_and_the_rest_refused() {
        // A str where a bin is expected, and nil.
        let lenient = hex("929082a27031a12aa27032c0");
        let decoded = RedisInvocation::decode(&lenient).unwrap();
        assert_eq!(decoded.message("p1").unwrap().as_ref(), [0x2a]);
        assert!(decoded.message("p2").unwrap().is_empty());
        assert_eq!(
            RedisInvocation::decode(&hex("9190")),
            Err(WireError::InsufficientItems("Invocation"))
        );
        assert_eq!(
            decode_ack(&hex("90")),
            Err(WireError::InsufficientItems("Ack"))
        );
        assert_eq!(
            GroupCommand::decode(&hex("952aa15303a147a143")),
            Err(WireError::UnknownGroupAction(3))
        );
        // Every truncation of a valid payload is an error, never a panic.
        let full = dummy(&["a"]).encode();
        for end in 0..full.len() {
            assert!(RedisInvocation::decode(&full[..end]).is_err(), "{end}");
        }
        // A length far beyond the payload is refused without allocating it.
        assert_eq!(
            RedisInvocation::decode(&hex("92dd7fffffff")),
            Err(WireError::Truncated("Invocation"))
        );
    }
}
