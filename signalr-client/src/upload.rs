//! Client-to-server streams: arguments that are streams.

use std::fmt;

use futures_util::{StreamExt as _, stream::BoxStream};
use serde::Serialize;
use signalr_protocol::{Payload, PayloadFormat};
use tokio::sync::{mpsc, watch};

use crate::{command::Command, state::HubConnectionState};

/// A stream passed as an argument: its items go to the server as the call runs, then its end
/// (or its error). Build one with [`Upload::new`] or [`Upload::fallible`] and put it in any
/// position of a call's argument tuple ([`IntoArguments`](crate::IntoArguments)), for
/// `invoke`, `send` or `stream`:
///
/// ```no_run
/// # async fn run(conn: signalr_client::HubConnection) -> signalr_client::Result<()> {
/// use signalr_client::Upload;
///
/// let readings = futures_util::stream::iter([20.5, 21.0, 21.5]);
/// let average: f64 = conn.invoke("Average", ("sensor-1", Upload::new(readings))).await?;
/// # Ok(()) }
/// ```
pub struct Upload {
    items: BoxStream<'static, Result<Box<dyn ErasedItem>, String>>,
}

/// An item waiting to be serialized in the connection's format.
pub(crate) trait ErasedItem: Send {
    fn to_payload(&self, format: PayloadFormat) -> Result<Payload, String>;
}

impl<T: Serialize + Send> ErasedItem for T {
    fn to_payload(&self, format: PayloadFormat) -> Result<Payload, String> {
        Payload::from_value(format, self).map_err(|e| e.to_string())
    }
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload").finish_non_exhaustive()
    }
}

impl Upload {
    /// Uploads every item of `items`, then completes the stream.
    pub fn new<S, T>(items: S) -> Self
    where
        S: futures_util::Stream<Item = T> + Send + 'static,
        T: Serialize + Send + 'static,
    {
        Self {
            items: items
                .map(|i| Ok(Box::new(i) as Box<dyn ErasedItem>))
                .boxed(),
        }
    }

    /// Uploads items until the first error, which fails the stream on the server with its
    /// message.
    pub fn fallible<S, T, E>(items: S) -> Self
    where
        S: futures_util::Stream<Item = Result<T, E>> + Send + 'static,
        T: Serialize + Send + 'static,
        E: fmt::Display,
    {
        Self {
            items: items
                .map(|i| {
                    i.map(|v| Box::new(v) as Box<dyn ErasedItem>)
                        .map_err(|e| e.to_string())
                })
                .boxed(),
        }
    }

    /// Sends the stream's items and its end to the driver as stream `id`, in order.
    ///
    /// Pauses while the connection is not `Connected`, so that a reconnect holds the user's
    /// stream back instead of queueing its items without bound.
    pub(crate) async fn pump(
        mut self,
        id: String,
        format: PayloadFormat,
        commands: mpsc::Sender<Box<Command>>,
        mut state: watch::Receiver<HubConnectionState>,
    ) {
        while let Some(item) = self.items.next().await {
            if state
                .wait_for(|s| *s == HubConnectionState::Connected)
                .await
                .is_err()
            {
                return;
            }
            let item = item.and_then(|i| i.to_payload(format));
            match item {
                Ok(payload) => {
                    if commands
                        .send(Box::new(Command::UploadItem {
                            id: id.clone(),
                            item: payload,
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(error) => {
                    let _ = commands
                        .send(Box::new(Command::UploadDone {
                            id,
                            error: Some(error),
                        }))
                        .await;
                    return;
                }
            }
        }
        let _ = commands
            .send(Box::new(Command::UploadDone { id, error: None }))
            .await;
    }
}
