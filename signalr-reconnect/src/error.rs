//! The one error type of this crate: configuration that cannot work.

use std::time::Duration;

/// A configuration that the machines in this crate refuse to run with.
///
/// Raised by [`KeepAliveConfig::validate`](crate::KeepAliveConfig::validate) and
/// [`KeepAlive::new`](crate::KeepAlive::new); a client builder should call `validate()` in its
/// `build()` so that the error surfaces there and never from a setter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A server timeout that is not longer than the keep-alive interval: the client would declare
    /// the server dead before a healthy server's next ping could arrive.
    #[error(
        "server timeout ({server_timeout:?}) must be longer than the keep-alive interval ({keep_alive_interval:?})"
    )]
    ServerTimeoutTooShort {
        /// The configured server timeout.
        server_timeout: Duration,
        /// The configured keep-alive interval.
        keep_alive_interval: Duration,
    },
    /// A duration that must be positive is zero.
    #[error("`{field}` must not be zero")]
    ZeroDuration {
        /// The name of the setting, e.g. `"keep_alive_interval"`.
        field: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_without_trailing_period() {
        let errors = [
            ConfigError::ZeroDuration {
                field: "server_timeout",
            },
            ConfigError::ServerTimeoutTooShort {
                server_timeout: Duration::from_secs(10),
                keep_alive_interval: Duration::from_secs(15),
            },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.starts_with(|c: char| !c.is_uppercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
        assert_eq!(
            ConfigError::ZeroDuration {
                field: "server_timeout"
            }
            .to_string(),
            "`server_timeout` must not be zero"
        );
    }
}
