//! Sends that skip the driver task.
//!
//! On a transport with a shared sender (WebSockets) and without stateful reconnect, a `send`
//! made while connected, with no earlier call still waiting for the driver, encodes its message
//! and writes it from the caller's own task. Sends made meanwhile join that write: the first
//! caller to find no write in progress leads, yields once so that calls made in the same poll
//! add their messages, and then writes everything queued; the others wait for the write that
//! carries theirs. On tokio's multi-thread runtime every hand-over between tasks wakes a thread
//! on another core, which costs more than encoding and writing a message (BENCHMARKS.md): this
//! path makes none.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use signalr_protocol::ProtocolError;
use signalr_transport::TransportSender;
use tokio::sync::Notify;

use crate::{
    error::{HubError, Result},
    rt,
};

/// The writer shared by a connected session's direct sends.
pub(crate) struct Outgoing {
    sender: Arc<dyn TransportSender>,
    state: Mutex<State>,
    /// Woken whenever a write ends or the lead is given up; waiting callers re-check `state`.
    /// (One `Notify`: a `watch` would keep eight of them per connection.)
    changed: Notify,
    /// A write that takes longer fails (the server timeout: a blackholed socket).
    write_timeout: Duration,
}

struct State {
    /// Messages not written yet.
    buf: BytesMut,
    /// A caller is writing `buf` out; the others wait for it.
    leading: bool,
    /// Writes started so far: bytes added now go out with write number `started + 1`.
    started: u64,
    /// Writes finished (the highest number).
    done: u64,
    /// The first write that failed; it and every later one failed.
    failed_from: Option<u64>,
    /// Set when a write failed: this path is over; the driver finds the loss on its own.
    broken: Option<Arc<HubError>>,
    /// When the last write finished, for the keep-alive.
    last_sent: Option<Instant>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives up the lead if the leader's future is dropped: the write it had started counts as
/// done (its bytes are with the transport), and a waiting caller takes over what is left.
struct Lead<'a>(&'a Outgoing);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        {
            let mut state = lock(&self.0.state);
            state.leading = false;
            state.done = state.done.max(state.started);
        }
        self.0.changed.notify_waiters();
    }
}

impl Outgoing {
    pub(crate) fn new(sender: Arc<dyn TransportSender>, write_timeout: Duration) -> Self {
        Self {
            sender,
            state: Mutex::new(State {
                buf: BytesMut::new(),
                leading: false,
                started: 0,
                done: 0,
                failed_from: None,
                broken: None,
                last_sent: None,
            }),
            changed: Notify::new(),
            write_timeout,
        }
    }

    /// When a direct write last finished.
    pub(crate) fn last_sent(&self) -> Option<Instant> {
        lock(&self.state).last_sent
    }

    /// Appends one message (`encode` writes it) and returns once a write carried it.
    pub(crate) async fn send(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> std::result::Result<(), ProtocolError>,
    ) -> Result<()> {
        let (target, lead) = {
            let mut state = lock(&self.state);
            if let Some(e) = &state.broken {
                return Err(HubError::ConnectionLost(Arc::clone(e)));
            }
            let start = state.buf.len();
            if let Err(e) = encode(&mut state.buf) {
                state.buf.truncate(start);
                return Err(HubError::Payload(e));
            }
            let lead = !state.leading;
            state.leading = true;
            (state.started + 1, lead)
        };
        if lead {
            let guard = Lead(self);
            // Calls made in the same poll (a burst of sends) join this write.
            tokio::task::yield_now().await;
            self.write_all().await;
            std::mem::forget(guard);
        }
        self.wait(target).await
    }

    /// Writes until nothing is queued; the caller leads.
    async fn write_all(&self) {
        loop {
            let (bytes, number) = {
                let mut state = lock(&self.state);
                if state.buf.is_empty() || state.broken.is_some() {
                    state.leading = false;
                    state.done = state.done.max(state.started);
                    drop(state);
                    // Wake the waiters: done, or broken, or theirs to take over.
                    self.changed.notify_waiters();
                    return;
                }
                state.started += 1;
                (state.buf.split().freeze(), state.started)
            };
            let failure =
                match tokio::time::timeout(self.write_timeout, self.sender.send(bytes)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(HubError::Transport(e)),
                    Err(_) => Some(HubError::ServerTimeout),
                };
            {
                let mut state = lock(&self.state);
                state.done = state.done.max(number);
                match failure {
                    Some(e) => {
                        state.broken = Some(Arc::new(e));
                        state.failed_from.get_or_insert(number);
                    }
                    None => state.last_sent = Some(rt::now()),
                }
            }
            self.changed.notify_waiters();
        }
    }

    /// Waits for write number `target`: its outcome. Leads when nobody does and it is not
    /// written yet (a leader was dropped).
    async fn wait(&self, target: u64) -> Result<()> {
        loop {
            // Registered before looking, so that no wake-up between the two is lost.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let take_over = {
                let mut state = lock(&self.state);
                if state.done >= target {
                    return match state.failed_from {
                        Some(first) if target >= first => Err(failure(&state)),
                        _ => Ok(()),
                    };
                }
                if state.broken.is_some() {
                    return Err(failure(&state));
                }
                let take_over = !state.leading;
                state.leading = true;
                take_over
            };
            if take_over {
                let guard = Lead(self);
                self.write_all().await;
                std::mem::forget(guard);
                continue;
            }
            changed.await;
        }
    }
}

/// What a caller whose write failed gets.
fn failure(state: &State) -> HubError {
    HubError::ConnectionLost(
        state
            .broken
            .clone()
            .unwrap_or_else(|| Arc::new(HubError::ConnectionClosed)),
    )
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing").finish_non_exhaustive()
    }
}
