//! [`HubConnectionState`]: where a connection is in its life.

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HubConnectionState {
    /// Not connected; `start` may be called.
    Disconnected,
    /// `start` is negotiating, connecting or shaking hands.
    Connecting,
    /// Connected: calls go out.
    Connected,
    /// `stop` is closing the connection.
    Disconnecting,
    /// The connection was lost and the retry policy is trying again.
    Reconnecting,
}

impl std::fmt::Display for HubConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Disconnected => "Disconnected",
            Self::Connecting => "Connecting",
            Self::Connected => "Connected",
            Self::Disconnecting => "Disconnecting",
            Self::Reconnecting => "Reconnecting",
        })
    }
}
