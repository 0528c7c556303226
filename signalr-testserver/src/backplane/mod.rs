//! Scale-out through Redis, in ASP.NET Core's backplane format (`--redis URL`): instances that
//! share a Redis reach each other's connections, as `RedisHubLifetimeManager` does.
//!
//! [`wire`] is the format, sans-IO. The rest is the I/O: one multiplexed connection publishes,
//! one pub/sub connection subscribes, and what arrives is handed to the local sessions. Redis
//! pub/sub keeps nothing: while an instance is cut off from Redis it serves its own
//! connections, what is published meanwhile is lost for it (as for ASP.NET Core, whose
//! StackExchange.Redis resubscribes and replays nothing), and it resubscribes when Redis is back.

pub mod wire;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicI32, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use rand::RngCore as _;
use signalr_protocol::{
    Arguments, CompletionResult, Decoded, HubMessage, HubProtocol, Invocation, JsonHubProtocol,
    MessagePackHubProtocol, Payload, PayloadFormat,
};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use wire::{Channels, GroupAction, GroupCommand, RedisCompletion, RedisInvocation};

use crate::{
    error::HubError,
    lock,
    registry::{Registry, Target},
};

/// How long to wait for Redis when connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The hub protocols every published invocation is serialized in (ASP.NET Core serializes it in
/// every protocol the hub supports, so that each receiving server can write it unchanged).
const PROTOCOLS: [&str; 2] = ["json", "messagepack"];

fn protocol(name: &str) -> Option<Arc<dyn HubProtocol>> {
    match name {
        "json" => Some(Arc::new(JsonHubProtocol::new())),
        "messagepack" => Some(Arc::new(MessagePackHubProtocol::new())),
        _ => None,
    }
}

fn format_of(name: &str) -> PayloadFormat {
    if name == "messagepack" {
        PayloadFormat::MessagePack
    } else {
        PayloadFormat::Json
    }
}

/// A connected backplane.
pub(crate) struct Backplane {
    client: redis::Client,
    pub(crate) channels: Channels,
    server_name: String,
    timeout: Duration,
    max_message_size: usize,
    publisher: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    sink: Mutex<Option<redis::aio::PubSubSink>>,
    /// Channels wanted, with how many local reasons each has (members, connections).
    wanted: Mutex<HashMap<String, usize>>,
    next_ack: AtomicI32,
    acks: Mutex<HashMap<i32, oneshot::Sender<()>>>,
    results: Mutex<HashMap<String, oneshot::Sender<RedisCompletion>>>,
    reader: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

fn redis_error(url: &str, what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        format!("cannot {what} the Redis at {}: {e}", redacted(url)),
    )
}

/// The URL without its password.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Backplane {
    /// Connects to Redis and subscribes to the hub's server-wide channels; an error (with the
    /// URL, password redacted) if Redis cannot be reached within a few seconds.
    pub(crate) async fn connect(
        url: &str,
        hub_name: &str,
        server_name: &str,
        timeout: Duration,
        max_message_size: usize,
        registry: Weak<Registry>,
    ) -> std::io::Result<Arc<Self>> {
        let client =
            redis::Client::open(url).map_err(|e| redis_error(url, "parse the URL of", e))?;
        let publisher = Self::open_publisher(&client)
            .await
            .map_err(|e| redis_error(url, "connect to", e))?;
        let channels = Channels::new(hub_name, server_name);
        let this = Arc::new(Self {
            client,
            server_name: server_name.to_owned(),
            timeout,
            max_message_size,
            publisher: tokio::sync::Mutex::new(Some(publisher)),
            sink: Mutex::new(None),
            wanted: Mutex::new(HashMap::new()),
            next_ack: AtomicI32::new(0),
            acks: Mutex::new(HashMap::new()),
            results: Mutex::new(HashMap::new()),
            reader: Mutex::new(None),
            channels,
        });
        for channel in [
            this.channels.all(),
            this.channels.group_management(),
            this.channels.own_ack(),
            this.channels.return_results(),
        ] {
            lock(&this.wanted).insert(channel, 1);
        }
        let stream = this
            .open_subscriber()
            .await
            .map_err(|e| redis_error(url, "subscribe at", e))?;
        info!(url = %redacted(url), server = server_name, hub = hub_name, "connected to Redis");
        let task = tokio::spawn(read_loop(
            Arc::downgrade(&this),
            registry,
            stream,
            url.to_owned(),
        ));
        *lock(&this.reader) = Some(task.abort_handle());
        Ok(this)
    }

    async fn open_publisher(
        client: &redis::Client,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(Duration::from_secs(5)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A new pub/sub connection subscribed to every wanted channel.
    async fn open_subscriber(&self) -> redis::RedisResult<redis::aio::PubSubStream> {
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer",
                ))
            })??;
        let (mut sink, stream) = pubsub.split();
        // The sink first, then the snapshot: a channel wanted meanwhile is subscribed by one
        // or the other (SUBSCRIBE is idempotent).
        *lock(&self.sink) = Some(sink.clone());
        let channels: Vec<String> = lock(&self.wanted).keys().cloned().collect();
        if !channels.is_empty() {
            sink.subscribe(&channels).await?;
        }
        Ok(stream)
    }

    /// Stops reading from Redis (the server stops).
    pub(crate) fn stop(&self) {
        if let Some(task) = lock(&self.reader).take() {
            task.abort();
        }
    }

    /// Subscribes to `channel` for one more local reason; the SUBSCRIBE is awaited the first time.
    pub(crate) async fn subscribe(&self, channel: String) {
        let first = {
            let mut wanted = lock(&self.wanted);
            let count = wanted.entry(channel.clone()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if first {
            let sink = lock(&self.sink).clone();
            if let Some(mut sink) = sink {
                if let Err(e) = sink.subscribe(&channel).await {
                    // Resubscribed with the rest when Redis is back.
                    warn!(channel, error = %e, "SUBSCRIBE failed; retried when Redis is back");
                }
            }
        }
    }

    /// Adds a local connection to `group`, subscribing to the group's channel for its first
    /// local member.
    pub(crate) async fn join_group(&self, registry: &Registry, group: &str, id: &Arc<str>) {
        if registry.join_group(group, id) {
            self.subscribe(self.channels.group(group)).await;
        }
    }

    /// Removes a connection from `group`, unsubscribing when no local member is left.
    pub(crate) async fn leave_group(&self, registry: &Registry, group: &str, id: &str) {
        if registry.leave_group(group, id) {
            self.unsubscribe(self.channels.group(group)).await;
        }
    }

    /// Unsubscribes what an ended connection was subscribed for: its own channel, its user's,
    /// and the groups it leaves without a local member.
    pub(crate) fn forget_connection(
        self: &Arc<Self>,
        id: &str,
        user: Option<&str>,
        emptied: Vec<String>,
    ) {
        let bp = Arc::clone(self);
        let connection = self.channels.connection(id);
        let user = user.map(|u| self.channels.user(u));
        tokio::spawn(async move {
            bp.unsubscribe(connection).await;
            if let Some(user) = user {
                bp.unsubscribe(user).await;
            }
            for group in emptied {
                bp.unsubscribe(bp.channels.group(&group)).await;
            }
        });
    }

    /// Drops one local reason for `channel`; unsubscribes when none is left.
    pub(crate) async fn unsubscribe(&self, channel: String) {
        let last = {
            let mut wanted = lock(&self.wanted);
            match wanted.get_mut(&channel) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    wanted.remove(&channel);
                    true
                }
                None => false,
            }
        };
        if last {
            let sink = lock(&self.sink).clone();
            if let Some(mut sink) = sink {
                let _ = sink.unsubscribe(&channel).await;
            }
        }
    }

    /// Publishes `payload` (`PUBLISH`); the number of subscribers that received it. While Redis is away
    /// the message is lost (logged), as it is for ASP.NET Core.
    pub(crate) async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<i64, HubError> {
        // A clone of the multiplexed connection: publishes from different tasks go out
        // pipelined, not one round trip at a time; one task's publishes keep their order.
        let connection = {
            let mut publisher = self.publisher.lock().await;
            if publisher.is_none() {
                *publisher = Self::open_publisher(&self.client).await.ok();
            }
            publisher.clone()
        };
        let Some(mut connection) = connection else {
            warn!(channel, "Redis is unreachable: a message was lost");
            return Err(HubError::new("the backplane (Redis) is unreachable"));
        };
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut connection)
            .await;
        match sent {
            Ok(receivers) => Ok(receivers),
            Err(e) => {
                warn!(channel, error = %e, "PUBLISH failed: a message was lost");
                // The next publish opens a new connection.
                *self.publisher.lock().await = None;
                Err(HubError::new("the backplane (Redis) is unreachable"))
            }
        }
    }

    /// Serializes `target(args…)` in every protocol, each framed as a transport carries it;
    /// refused when any is over the maximum message size (before anything is published).
    pub(crate) fn serialize(
        &self,
        id: Option<&str>,
        target: &str,
        args: &[Payload],
    ) -> Result<Vec<(String, Bytes)>, HubError> {
        let mut messages = Vec::with_capacity(PROTOCOLS.len());
        for name in PROTOCOLS {
            let format = format_of(name);
            let arguments = Arguments::from_payloads(format, &crate::wire::convert(format, args)?)?;
            let invocation = match id {
                Some(id) => Invocation::new(id, target, arguments),
                None => Invocation::non_blocking(target, arguments),
            };
            let mut out = BytesMut::new();
            if let Some(p) = protocol(name) {
                p.encode(&HubMessage::Invocation(invocation), &mut out)?;
            }
            if out.len() > self.max_message_size {
                return Err(HubError::new(format!(
                    "the message to '{target}' is {} bytes in {name}, over the maximum message size of {} bytes: not published",
                    out.len(),
                    self.max_message_size
                )));
            }
            messages.push((name.to_owned(), out.freeze()));
        }
        Ok(messages)
    }

    /// Publishes `target(args…)` on `channel`, skipping `excluded` connections.
    pub(crate) async fn send(
        &self,
        channel: &str,
        target: &str,
        args: &[Payload],
        excluded: Vec<String>,
    ) -> Result<i64, HubError> {
        let invocation = RedisInvocation {
            excluded_connection_ids: excluded,
            messages: self.serialize(None, target, args)?,
            client_result: None,
        };
        self.publish(channel, invocation.encode()).await
    }

    /// Adds or removes a connection held by another server: publishes the command and waits
    /// for that server's ack, up to the backplane timeout (ASP.NET Core: 30 s, then the call
    /// throws).
    pub(crate) async fn group_command(
        &self,
        action: GroupAction,
        group: &str,
        connection_id: &str,
    ) -> Result<(), HubError> {
        let id = self
            .next_ack
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        lock(&self.acks).insert(id, tx);
        let command = GroupCommand {
            id,
            server_name: self.server_name.clone(),
            action,
            group: group.to_owned(),
            connection_id: connection_id.to_owned(),
        };
        let published = self
            .publish(&self.channels.group_management(), command.encode())
            .await;
        let answered = match published {
            Ok(_) => tokio::time::timeout(self.timeout, rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(e) => {
                lock(&self.acks).remove(&id);
                return Err(e);
            }
        };
        lock(&self.acks).remove(&id);
        answered.ok_or_else(|| {
            HubError::new(format!(
                "no server acknowledged the group change of connection '{connection_id}' within {} ms",
                self.timeout.as_millis()
            ))
        })
    }

    /// Asks a connection held by another server for a client result and waits for it (in the
    /// answering client's format) up to the backplane timeout: ASP.NET Core waits for the
    /// caller's cancellation only, which a hub method of this server does not have.
    pub(crate) async fn ask(
        &self,
        connection_id: &str,
        target: &str,
        args: &[Payload],
    ) -> Result<Payload, HubError> {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let invocation_id = base64_trimmed(&raw);
        let (tx, rx) = oneshot::channel();
        lock(&self.results).insert(invocation_id.clone(), tx);
        let request = RedisInvocation {
            excluded_connection_ids: Vec::new(),
            messages: match self.serialize(Some(&invocation_id), target, args) {
                Ok(m) => m,
                Err(e) => {
                    lock(&self.results).remove(&invocation_id);
                    return Err(e);
                }
            },
            client_result: Some((invocation_id.clone(), self.channels.return_results())),
        };
        let receivers = self
            .publish(&self.channels.connection(connection_id), request.encode())
            .await;
        if receivers.as_ref().is_ok_and(|&n| n < 1) || receivers.is_err() {
            lock(&self.results).remove(&invocation_id);
            receivers?;
            return Err(HubError::new(format!(
                "Connection '{connection_id}' does not exist."
            )));
        }
        let answer = tokio::time::timeout(self.timeout, rx).await;
        lock(&self.results).remove(&invocation_id);
        let completion = answer.ok().and_then(Result::ok).ok_or_else(|| {
            HubError::new(format!(
                "the server holding connection '{connection_id}' did not answer within {} ms",
                self.timeout.as_millis()
            ))
        })?;
        let p = protocol(&completion.protocol).ok_or_else(|| {
            HubError::new(format!(
                "a client result in the unknown protocol '{}'",
                completion.protocol
            ))
        })?;
        let mut buf = BytesMut::from(completion.message.as_ref());
        match p.decode(&mut buf)? {
            Some(Decoded::Message(HubMessage::Completion(c))) => match c.result {
                CompletionResult::Value(v) => Ok(v),
                CompletionResult::Void => Ok(Payload::null(p.payload_format())),
                CompletionResult::Error(e) => Err(HubError::new(e)),
            },
            _ => Err(HubError::new("a client result that is not a Completion")),
        }
    }

    /// Forwards a local client's answer to a remote client-result request.
    pub(crate) async fn forward_completion(
        &self,
        return_channel: &str,
        protocol: &str,
        message: Bytes,
    ) {
        let completion = RedisCompletion {
            protocol: protocol.to_owned(),
            message,
        };
        if let Err(e) = self.publish(return_channel, completion.encode()).await {
            warn!(return_channel, error = %e, "could not forward a client result");
        }
    }
}

/// 16 bytes as standard base64 without the trailing `==` (ASP.NET Core's
/// `GenerateInvocationId`: 22 characters).
fn base64_trimmed(raw: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(22);
    let mut bits: u32 = 0;
    let mut n = 0;
    for &b in raw {
        bits = (bits << 8) | u32::from(b);
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(char::from(ALPHABET[((bits >> n) & 63) as usize]));
        }
    }
    if n > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - n)) & 63) as usize]));
    }
    out
}

/// Reads the subscriptions; on a loss, logs it, reconnects with a backoff and resubscribes.
async fn read_loop(
    backplane: Weak<Backplane>,
    registry: Weak<Registry>,
    mut stream: redis::aio::PubSubStream,
    url: String,
) {
    loop {
        while let Some(message) = stream.next().await {
            let (Some(bp), Some(registry)) = (backplane.upgrade(), registry.upgrade()) else {
                return;
            };
            on_message(
                &bp,
                &registry,
                message.get_channel_name(),
                message.get_payload_bytes(),
            );
        }
        warn!(
            url = %redacted(&url),
            "lost the Redis subscription: what other instances publish until it is back is lost"
        );
        let mut delay = Duration::from_millis(100);
        loop {
            tokio::time::sleep(delay).await;
            let Some(bp) = backplane.upgrade() else {
                return;
            };
            match bp.open_subscriber().await {
                Ok(s) => {
                    info!(
                        channels = lock(&bp.wanted).len(),
                        "Redis is back: resubscribed"
                    );
                    stream = s;
                    break;
                }
                Err(e) => {
                    debug!(error = %e, "Redis still unreachable");
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

fn on_message(bp: &Arc<Backplane>, registry: &Arc<Registry>, channel: &str, payload: &[u8]) {
    let c = &bp.channels;
    let rest = |prefix: String| channel.strip_prefix(prefix.as_str()).map(str::to_owned);
    if channel == c.all() {
        deliver(registry, payload, channel, Target::All);
    } else if channel == c.group_management() {
        match GroupCommand::decode(payload) {
            Ok(command) => {
                if registry.is_local(&command.connection_id) {
                    let (bp, registry) = (Arc::clone(bp), Arc::clone(registry));
                    tokio::spawn(async move {
                        let id: Arc<str> = command.connection_id.as_str().into();
                        match command.action {
                            GroupAction::Add => bp.join_group(&registry, &command.group, &id).await,
                            GroupAction::Remove => {
                                bp.leave_group(&registry, &command.group, &id).await;
                            }
                        }
                        let ack = wire::encode_ack(command.id);
                        let _ = bp
                            .publish(&bp.channels.ack(&command.server_name), ack)
                            .await;
                    });
                }
            }
            Err(e) => warn!(channel, error = %e, "a group command that does not parse"),
        }
    } else if channel == c.own_ack() {
        match wire::decode_ack(payload) {
            Ok(id) => {
                if let Some(tx) = lock(&bp.acks).remove(&id) {
                    let _ = tx.send(());
                }
            }
            Err(e) => warn!(channel, error = %e, "an ack that does not parse"),
        }
    } else if channel == c.return_results() {
        match RedisCompletion::decode(payload) {
            Ok(completion) => {
                if let Some(id) = completion_id(&completion) {
                    if let Some(tx) = lock(&bp.results).remove(&id) {
                        let _ = tx.send(completion);
                    }
                } else {
                    warn!(channel, "a client result without an invocation id");
                }
            }
            Err(e) => warn!(channel, error = %e, "a client result that does not parse"),
        }
    } else if let Some(id) = rest(c.connection("")) {
        deliver(registry, payload, channel, Target::Connection(&id));
    } else if let Some(group) = rest(c.group("")) {
        deliver(registry, payload, channel, Target::Group(&group));
    } else if let Some(user) = rest(c.user("")) {
        deliver(registry, payload, channel, Target::User(&user));
    } else {
        debug!(channel, "a message on a channel this server does not know");
    }
}

/// The invocation id of a forwarded Completion, to find who waits for it.
fn completion_id(completion: &RedisCompletion) -> Option<String> {
    let p = protocol(&completion.protocol)?;
    let mut buf = BytesMut::from(completion.message.as_ref());
    match p.decode(&mut buf).ok()?? {
        Decoded::Message(HubMessage::Completion(c)) => Some(c.invocation_id),
        _ => None,
    }
}

fn deliver(registry: &Registry, payload: &[u8], channel: &str, target: Target<'_>) {
    let invocation = match RedisInvocation::decode(payload) {
        Ok(i) => i,
        Err(e) => {
            warn!(channel, error = %e, "an invocation that does not parse");
            return;
        }
    };
    // Every serialization must be exactly one well-formed hub message of its protocol before
    // it is written to clients as it is.
    let mut valid: Vec<(String, Bytes)> = Vec::new();
    for (name, bytes) in &invocation.messages {
        let Some(p) = protocol(name) else { continue };
        let mut buf = BytesMut::from(bytes.as_ref());
        match p.decode(&mut buf) {
            Ok(Some(Decoded::Message(HubMessage::Invocation(_)))) if buf.is_empty() => {
                valid.push((name.clone(), bytes.clone()));
            }
            _ => warn!(
                channel,
                protocol = name,
                "a serialized invocation that does not parse"
            ),
        }
    }
    // Excluded ids apply on the all and group channels only, as in ASP.NET Core.
    let excluded: &[String] = match target {
        Target::All | Target::Group(_) => &invocation.excluded_connection_ids,
        _ => &[],
    };
    let ask = match target {
        Target::Connection(_) => invocation.client_result.clone(),
        _ => None,
    };
    registry.deliver(target, excluded, &valid, ask.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_ids_are_aspnet_shaped() {
        let id = base64_trimmed(&[0xff; 16]);
        assert_eq!(id, "/////////////////////w");
        assert_eq!(base64_trimmed(&[0; 16]).len(), 22);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("redis://:secret@host:6379/0"),
            "redis://…@host:6379/0"
        );
        assert_eq!(redacted("redis://host:6379"), "redis://host:6379");
    }
}
