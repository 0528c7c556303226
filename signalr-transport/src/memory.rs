//! An in-process transport and a [`Connector`] that hands out in-process connections, for
//! tests that script the server side byte by byte and run on a paused clock (no sockets, so
//! `tokio::time::pause()` is exact).

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use signalr_protocol::{TransferFormat, TransportKind};
use tokio::sync::{Mutex, mpsc};

use crate::{Connection, Connector, Transport, TransportError};

/// The client's end of an in-process connection.
#[derive(Debug)]
pub struct MemoryTransport {
    format: TransferFormat,
    to_peer: Option<mpsc::UnboundedSender<Bytes>>,
    from_peer: mpsc::UnboundedReceiver<Bytes>,
}

/// The scripted server's end of an in-process connection.
#[derive(Debug)]
pub struct MemoryPeer {
    to_client: Option<mpsc::UnboundedSender<Bytes>>,
    from_client: mpsc::UnboundedReceiver<Bytes>,
}

/// A connected pair: what the client sends, the peer receives, and the other way round.
pub fn pair(format: TransferFormat) -> (MemoryTransport, MemoryPeer) {
    let (to_peer, from_client) = mpsc::unbounded_channel();
    let (to_client, from_peer) = mpsc::unbounded_channel();
    (
        MemoryTransport {
            format,
            to_peer: Some(to_peer),
            from_peer,
        },
        MemoryPeer {
            to_client: Some(to_client),
            from_client,
        },
    )
}

impl MemoryPeer {
    /// Sends bytes to the client; `false` once the client is gone.
    pub fn send(&self, data: impl Into<Bytes>) -> bool {
        self.to_client
            .as_ref()
            .is_some_and(|t| t.send(data.into()).is_ok())
    }

    /// The next bytes the client sent; `None` once it closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.from_client.recv().await
    }

    /// Ends the connection cleanly, as a server that closes the transport.
    pub fn close(&mut self) {
        self.to_client = None;
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::WebSockets
    }

    fn transfer_format(&self) -> TransferFormat {
        self.format
    }

    async fn send(&mut self, data: Bytes) -> Result<(), TransportError> {
        match &self.to_peer {
            Some(tx) if tx.send(data).is_ok() => Ok(()),
            _ => Err(TransportError::Closed),
        }
    }

    async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        self.from_peer.recv().await.map(Ok)
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.to_peer = None;
        Ok(())
    }
}

/// Hands out in-process connections: every `connect` creates a [`pair`] and gives the peer end
/// to whoever waits in [`MemoryListener::accept`]. A connect with nobody accepting waits.
#[derive(Clone)]
pub struct MemoryConnector {
    peers: mpsc::UnboundedSender<MemoryPeer>,
}

/// Where a test receives the peer end of each connection the client makes.
#[derive(Debug)]
pub struct MemoryListener {
    peers: Arc<Mutex<mpsc::UnboundedReceiver<MemoryPeer>>>,
}

impl fmt::Debug for MemoryConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConnector").finish_non_exhaustive()
    }
}

/// A connector and its listener.
pub fn connector() -> (MemoryConnector, MemoryListener) {
    let (peers, rx) = mpsc::unbounded_channel();
    (
        MemoryConnector { peers },
        MemoryListener {
            peers: Arc::new(Mutex::new(rx)),
        },
    )
}

impl MemoryListener {
    /// The peer end of the next connection the client makes.
    pub async fn accept(&self) -> Option<MemoryPeer> {
        self.peers.lock().await.recv().await
    }
}

#[async_trait]
impl Connector for MemoryConnector {
    async fn connect(&self, format: TransferFormat) -> Result<Connection, TransportError> {
        let (transport, peer) = pair(format);
        self.peers.send(peer).map_err(|_| TransportError::Closed)?;
        Ok(Connection {
            transport: Box::new(transport),
            negotiated: None,
        })
    }
}
