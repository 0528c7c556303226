//! The only clock read in the workspace.

/// Now, through tokio, so that every timeout obeys `tokio::time::pause()` in tests.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
