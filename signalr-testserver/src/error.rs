//! The error a hub method reports to its caller (re-exported as [`crate::hub::HubError`]).

/// An error a hub method reports to its caller: the text goes in `Completion.error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HubError {
    message: String,
}

impl HubError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The text sent to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<&str> for HubError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<String> for HubError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<signalr_protocol::ProtocolError> for HubError {
    fn from(e: signalr_protocol::ProtocolError) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::new(message)
    }
}

/// The result of a hub method.
pub type HubResult<T> = Result<T, HubError>;
