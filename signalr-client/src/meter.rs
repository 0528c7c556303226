//! Metrics (feature `metrics`) through the [`metrics`](https://docs.rs/metrics) facade: what
//! the crate docs list under "Metrics". Without the feature every call here is empty and
//! compiles to nothing.
//!
//! Handles are registered when a connection starts, with the recorder installed then: install
//! yours (`metrics::set_global_recorder`, or an exporter's `install`) before starting
//! connections.

use std::time::Duration;

use signalr_protocol::TransportKind;

/// Whether metrics are recorded at all (the feature), so callers can skip reading the clock.
pub(crate) const ENABLED: bool = cfg!(feature = "metrics");

/// Why a connection closed for good, the `reason` label of `signalr.client.connections.closed`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CloseReason {
    /// `stop()`, or the last handle dropped.
    Stopped,
    /// The server sent Close without allowing a reconnect.
    ByServer,
    /// The retry policy gave up.
    GaveUp,
    /// Lost without a retry policy.
    Lost,
}

impl CloseReason {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::ByServer => "server_closed",
            Self::GaveUp => "reconnect_gave_up",
            Self::Lost => "lost",
        }
    }
}

/// One connection's instruments (all connections share the series: counters add up, the
/// gauges are the sum over connections).
#[derive(Debug)]
pub(crate) struct Meters {
    #[cfg(feature = "metrics")]
    on: on::Meters,
}

#[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self, unused_variables))]
impl Meters {
    pub(crate) fn new(protocol: &'static str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = protocol;
        Self {
            #[cfg(feature = "metrics")]
            on: on::Meters::new(protocol),
        }
    }

    /// The first connection of a `start` is up.
    pub(crate) fn started(&self, transport: TransportKind) {
        #[cfg(feature = "metrics")]
        self.on.started(transport);
    }

    /// A reconnect attempt ended; `outage` is how long the connection had been lost when it
    /// succeeded.
    pub(crate) fn reconnect_attempt(&self, outage: Option<Duration>) {
        #[cfg(feature = "metrics")]
        self.on.reconnect_attempt(outage);
    }

    /// A stateful resume succeeded after `outage`.
    pub(crate) fn resumed(&self, outage: Duration) {
        #[cfg(feature = "metrics")]
        self.on.resumed(outage);
    }

    pub(crate) fn closed(&self, why: CloseReason) {
        #[cfg(feature = "metrics")]
        self.on.closed(why.label());
    }

    pub(crate) fn sent(&self, messages: usize, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.on.sent(messages, bytes);
    }

    pub(crate) fn received_bytes(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.on.received_bytes(bytes);
    }

    pub(crate) fn received_message(&self) {
        #[cfg(feature = "metrics")]
        self.on.received_message();
    }

    pub(crate) fn outbox_depth(&self, depth: usize) {
        #[cfg(feature = "metrics")]
        self.on.outbox_depth(depth);
    }

    pub(crate) fn outbox_rejected(&self) {
        #[cfg(feature = "metrics")]
        self.on.outbox_rejected();
    }

    pub(crate) fn replay_bytes(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.on.replay_bytes(bytes);
    }
}

/// One `invoke` ended after `elapsed`, with `outcome` (the span's `signalr.outcome`).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn invocation(method: &str, outcome: &'static str, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(
        "signalr.client.invocation.duration",
        "rpc.method" => method.to_owned(),
        "outcome" => outcome,
    )
    .record(elapsed.as_secs_f64());
}

#[cfg(feature = "metrics")]
mod on {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
    use signalr_protocol::TransportKind;

    pub(super) struct Meters {
        protocol: &'static str,
        messages_sent: Counter,
        bytes_sent: Counter,
        messages_received: Counter,
        bytes_received: Counter,
        outbox: Gauge,
        outbox_rejected: Counter,
        replay: Gauge,
        reconnect_duration: Histogram,
        resume_duration: Histogram,
        /// What this connection last added to the shared gauges, taken back when it changes
        /// and when the connection ends.
        outbox_depth: AtomicUsize,
        replay_bytes: AtomicUsize,
    }

    impl std::fmt::Debug for Meters {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Meters").finish_non_exhaustive()
        }
    }

    /// Moves `gauge` by the change from `last` to `now`.
    #[allow(clippy::cast_precision_loss)]
    fn shift(gauge: &Gauge, last: &AtomicUsize, now: usize) {
        // One driver task writes these: no race between the swap and the gauge.
        let before = last.swap(now, Ordering::Relaxed);
        if now > before {
            gauge.increment((now - before) as f64);
        } else if now < before {
            gauge.decrement((before - now) as f64);
        }
    }

    impl Meters {
        pub(super) fn new(protocol: &'static str) -> Self {
            let by_protocol = [("protocol", protocol)];
            Self {
                protocol,
                messages_sent: counter!("signalr.client.messages.sent", &by_protocol),
                bytes_sent: counter!("signalr.client.bytes.sent", &by_protocol),
                messages_received: counter!("signalr.client.messages.received", &by_protocol),
                bytes_received: counter!("signalr.client.bytes.received", &by_protocol),
                outbox: gauge!("signalr.client.outbox.depth"),
                outbox_rejected: counter!("signalr.client.outbox.rejected"),
                replay: gauge!("signalr.client.replay_buffer.bytes"),
                reconnect_duration: histogram!("signalr.client.reconnect.duration", "kind" => "reconnect"),
                resume_duration: histogram!("signalr.client.reconnect.duration", "kind" => "resume"),
                outbox_depth: AtomicUsize::new(0),
                replay_bytes: AtomicUsize::new(0),
            }
        }

        pub(super) fn started(&self, transport: TransportKind) {
            counter!(
                "signalr.client.connections.started",
                "transport" => transport.as_str(),
                "protocol" => self.protocol,
            )
            .increment(1);
        }

        pub(super) fn reconnect_attempt(&self, outage: Option<Duration>) {
            let outcome = if outage.is_some() {
                "succeeded"
            } else {
                "failed"
            };
            counter!("signalr.client.reconnect.attempts", "outcome" => outcome).increment(1);
            if let Some(outage) = outage {
                self.reconnect_duration.record(outage.as_secs_f64());
            }
        }

        pub(super) fn resumed(&self, outage: Duration) {
            self.resume_duration.record(outage.as_secs_f64());
        }

        pub(super) fn closed(&self, reason: &'static str) {
            counter!(
                "signalr.client.connections.closed",
                "reason" => reason,
                "protocol" => self.protocol,
            )
            .increment(1);
        }

        pub(super) fn sent(&self, messages: usize, bytes: usize) {
            self.messages_sent.increment(messages as u64);
            self.bytes_sent.increment(bytes as u64);
        }

        pub(super) fn received_bytes(&self, bytes: usize) {
            self.bytes_received.increment(bytes as u64);
        }

        pub(super) fn received_message(&self) {
            self.messages_received.increment(1);
        }

        pub(super) fn outbox_depth(&self, depth: usize) {
            shift(&self.outbox, &self.outbox_depth, depth);
        }

        pub(super) fn outbox_rejected(&self) {
            self.outbox_rejected.increment(1);
        }

        pub(super) fn replay_bytes(&self, bytes: usize) {
            shift(&self.replay, &self.replay_bytes, bytes);
        }
    }

    impl Drop for Meters {
        fn drop(&mut self) {
            shift(&self.outbox, &self.outbox_depth, 0);
            shift(&self.replay, &self.replay_bytes, 0);
        }
    }
}
