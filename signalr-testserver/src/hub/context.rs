//! What a hub method knows about its caller, and how it reaches clients.

use std::{fmt, sync::Arc, time::Duration};

use serde::Serialize;
use signalr_protocol::{Arguments, Payload, PayloadFormat};
use tokio::sync::{mpsc, oneshot};

use super::UploadStream;
use crate::{
    app::App,
    error::{HubError, HubResult},
    wire::{Command, convert},
};

/// What a hub method knows about its caller, and how it reaches clients.
#[derive(Clone)]
pub struct HubContext {
    pub(crate) connection_id: Arc<str>,
    pub(crate) format: PayloadFormat,
    pub(crate) caller: mpsc::Sender<Command>,
    pub(crate) app: Arc<App>,
    /// The invocation's client-to-server streams; `None` when it has none (no allocation).
    pub(crate) uploads: Option<Arc<std::sync::Mutex<Vec<Option<UploadStream>>>>>,
    /// The invocation's `headers`; `None` when it had none (no allocation).
    pub(crate) headers: Option<Arc<signalr_protocol::Headers>>,
}

impl fmt::Debug for HubContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubContext")
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}

impl HubContext {
    /// The caller's connection id.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// The name of the server instance ([`ServerConfig::server_name`](crate::ServerConfig)).
    pub fn server_name(&self) -> &str {
        &self.app.config.server_name
    }

    /// The `headers` of the invocation being served (empty when it had none, and in an
    /// `on_connected` hook): where a client puts trace context (`traceparent`, `tracestate`).
    pub fn headers(&self) -> &signalr_protocol::Headers {
        static EMPTY: signalr_protocol::Headers = signalr_protocol::Headers::new();
        self.headers.as_deref().unwrap_or(&EMPTY)
    }

    /// The caller's payload format, for building payloads it can read.
    pub fn payload_format(&self) -> PayloadFormat {
        self.format
    }

    /// Takes the `index`-th client-to-server stream of this invocation (in `streamIds` order).
    pub fn take_upload(&self, index: usize) -> Option<UploadStream> {
        let mut uploads = self
            .uploads
            .as_ref()?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        uploads.get_mut(index).and_then(Option::take)
    }

    /// Calls `method(args…)` on the caller.
    pub async fn send_to_caller(&self, method: &str, args: Vec<Payload>) -> HubResult<()> {
        self.command(Command::Call {
            target: method.into(),
            args,
        })
        .await
    }

    /// Calls `method` on the caller with `args`, a tuple such as `(1, "a")` serialized straight
    /// into the caller's format: one allocation fewer per argument than
    /// [`send_to_caller`](Self::send_to_caller), for hub methods that send in bulk.
    pub async fn send_args_to_caller(&self, method: &str, args: impl Serialize) -> HubResult<()> {
        let arguments = Arguments::from_values(self.format, &args)?;
        self.command(Command::CallWith {
            target: method.into(),
            arguments,
        })
        .await
    }

    /// Queues `command` for the caller's session: at once when there is room, else waiting.
    async fn command(&self, command: Command) -> HubResult<()> {
        let gone = || HubError::new("the caller is gone");
        match self.caller.try_send(command) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(command)) => {
                self.caller.send(command).await.map_err(|_| gone())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(gone()),
        }
    }

    /// Calls `method(args…)` on every connection. Returns how many connections were reached,
    /// or with a Redis backplane how many instances.
    pub async fn send_to_all(&self, method: &str, args: &[Payload]) -> HubResult<usize> {
        self.app.send_to_all(method, args).await
    }

    /// Calls `method(args…)` on every member of `group`, on every instance.
    pub async fn send_to_group(
        &self,
        group: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.app.send_to_group(group, method, args).await
    }

    /// Calls `method(args…)` on the connection `connection_id`, on whichever instance holds it.
    pub async fn send_to_connection(
        &self,
        connection_id: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.app
            .send_to_connection(connection_id, method, args)
            .await
    }

    /// Calls `method(args…)` on every connection of `user` (`ServerConfig::users`).
    pub async fn send_to_user(
        &self,
        user: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.app.send_to_user(user, method, args).await
    }

    /// Adds the caller to `group`.
    pub async fn join_group(&self, group: &str) {
        self.app.join_group(group, &self.connection_id).await;
    }

    /// Removes the caller from `group`.
    pub async fn leave_group(&self, group: &str) {
        self.app.leave_group(group, &self.connection_id).await;
    }

    /// Adds any connection to `group` (`join`) or removes it; one on another instance through
    /// the backplane, waiting for that instance's ack (an error after the backplane timeout).
    pub async fn change_group(
        &self,
        join: bool,
        group: &str,
        connection_id: &str,
    ) -> HubResult<()> {
        self.app.change_group(join, group, connection_id).await
    }

    /// Invokes `method(args…)` on the connection `connection_id`, on whichever instance holds
    /// it, and waits for its result (in the caller's format).
    pub async fn invoke_connection(
        &self,
        connection_id: &str,
        method: &str,
        args: Vec<Payload>,
    ) -> HubResult<Payload> {
        let answer = self.app.ask_connection(connection_id, method, args).await?;
        Ok(convert(self.format, &[answer])?
            .pop()
            .unwrap_or_else(|| Payload::null(self.format)))
    }

    /// Invokes `method(args…)` on the caller and waits for its result (a client result).
    pub async fn invoke_caller(&self, method: &str, args: Vec<Payload>) -> HubResult<Payload> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::InvokeClient {
            target: method.into(),
            args,
            reply,
        })
        .await?;
        answer
            .await
            .map_err(|_| HubError::new("the connection closed before the client answered"))?
    }

    /// Sends the caller a Close message with these fields, then ends its connection.
    pub async fn close_caller(&self, error: Option<String>, allow_reconnect: bool) {
        let _ = self
            .command(Command::Close {
                error,
                allow_reconnect,
            })
            .await;
    }

    /// Drops the caller's transport at once, without a Close message.
    pub fn abort_caller(&self) {
        self.app.abort(&self.connection_id);
    }

    /// Stops reading from and writing to the caller's connection for `duration`, leaving the
    /// socket open (a half-open link).
    pub fn blackhole_caller(&self, duration: Duration) {
        self.app.blackhole(&self.connection_id, duration);
    }
}
