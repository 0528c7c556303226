//! Each hub method runs in a span of its own, `signalr.hub_method` (at `debug`, so the
//! binary's default `info` filter skips it), as ASP.NET Core's `Microsoft.AspNetCore.SignalR.Server`
//! activity: `otel.name` `{hub}/{method}`, `rpc.system = "signalr"`, `rpc.service` (the hub
//! name), `rpc.method`. With the feature `opentelemetry`, the W3C trace context an invocation
//! carries in its headers (`traceparent`, `tracestate`, as the .NET client writes them) becomes
//! the span's parent, as ASP.NET Core's `DefaultHubDispatcher` does: the hub method continues
//! the caller's trace.

use signalr_protocol::Headers;
use tracing::Span;

/// The span a call of `method` runs in, continuing the trace in `headers` if there is one.
pub(crate) fn hub_method_span(
    hub: &str,
    method: &str,
    invocation_id: Option<&str>,
    headers: &Headers,
) -> Span {
    let span = tracing::debug_span!(
        "signalr.hub_method",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        rpc.system = "signalr",
        rpc.service = hub,
        rpc.method = method,
        signalr.invocation_id = invocation_id,
    );
    if span.is_disabled() {
        return span;
    }
    span.record("otel.name", format!("{hub}/{method}"));
    #[cfg(feature = "opentelemetry")]
    if !headers.is_empty() {
        otel::set_parent(&span, headers);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = headers;
    span
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use signalr_protocol::Headers;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    /// Headers read by OpenTelemetry's propagator.
    struct Carrier<'a>(&'a Headers);

    impl Extractor for Carrier<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).map(String::as_str)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(String::as_str).collect()
        }
    }

    pub(super) fn set_parent(span: &Span, headers: &Headers) {
        let cx = TraceContextPropagator::new().extract(&Carrier(headers));
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}
