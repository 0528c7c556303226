//! W3C trace context in hub message headers (feature `opentelemetry`).
//!
//! An invocation, stream invocation or send made inside an OpenTelemetry context carries
//! `traceparent` (and `tracestate`, when there is one) in its headers, as the .NET client
//! writes them (its `HubConnectionTests.Tracing.cs` in dotnet/aspnetcore: the header is the
//! invocation activity's id), so that an ASP.NET Core server continues the trace. A server
//! call that carries them becomes the parent of its handler's span. Without the feature,
//! [`Propagation`] is empty and no header is written.

use signalr_protocol::Headers;
use tracing::Span;

/// How trace context goes into and comes out of hub message headers: W3C trace context
/// unless the builder was given another propagator.
#[derive(Clone)]
pub(crate) struct Propagation {
    #[cfg(feature = "opentelemetry")]
    propagator: std::sync::Arc<dyn opentelemetry::propagation::TextMapPropagator + Send + Sync>,
}

// Derivable without the feature only.
#[allow(clippy::derivable_impls)]
impl Default for Propagation {
    fn default() -> Self {
        Self {
            #[cfg(feature = "opentelemetry")]
            propagator: std::sync::Arc::new(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            ),
        }
    }
}

impl std::fmt::Debug for Propagation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if cfg!(feature = "opentelemetry") {
            "trace context in headers"
        } else {
            "off"
        })
    }
}

impl Propagation {
    /// Propagates with `propagator` instead of W3C trace context.
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn with(
        propagator: impl opentelemetry::propagation::TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        Self {
            propagator: std::sync::Arc::new(propagator),
        }
    }

    /// The headers a call made in `span` carries: its trace context, or none.
    #[allow(clippy::unused_self)]
    pub(crate) fn inject(&self, span: &Span) -> Headers {
        #[cfg(feature = "opentelemetry")]
        {
            otel::inject(&*self.propagator, span)
        }
        #[cfg(not(feature = "opentelemetry"))]
        {
            let _ = span;
            Headers::new()
        }
    }

    /// Makes the trace context in a server call's `headers`, if any, the parent of `span`.
    #[allow(clippy::unused_self)]
    pub(crate) fn set_parent(&self, span: &Span, headers: &Headers) {
        #[cfg(feature = "opentelemetry")]
        if !headers.is_empty() && !span.is_disabled() {
            otel::set_parent(&*self.propagator, span, headers);
        }
        #[cfg(not(feature = "opentelemetry"))]
        let _ = (span, headers);
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::Context;
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt as _;
    use signalr_protocol::Headers;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    type Propagator = dyn TextMapPropagator + Send + Sync;

    struct Inject<'a>(&'a mut Headers);

    impl Injector for Inject<'_> {
        fn set(&mut self, key: &str, value: String) {
            // OpenTelemetry's W3C propagator writes an empty `tracestate`; the .NET client
            // leaves it out when there is none.
            if key == "tracestate" && value.is_empty() {
                return;
            }
            self.0.insert(key.to_owned(), value);
        }
    }

    struct Extract<'a>(&'a Headers);

    impl Extractor for Extract<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).map(String::as_str)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(String::as_str).collect()
        }
    }

    fn is_valid(cx: &Context) -> bool {
        cx.span().span_context().is_valid()
    }

    pub(super) fn inject(propagator: &Propagator, span: &Span) -> Headers {
        let mut headers = Headers::new();
        // The call's own span when an OpenTelemetry layer records it; otherwise the context
        // the application attached through OpenTelemetry's own API, if any.
        let cx = Some(span)
            .filter(|s| !s.is_disabled())
            .map(OpenTelemetrySpanExt::context)
            .filter(is_valid)
            .unwrap_or_else(Context::current);
        if is_valid(&cx) {
            propagator.inject_context(&cx, &mut Inject(&mut headers));
        }
        headers
    }

    pub(super) fn set_parent(propagator: &Propagator, span: &Span, headers: &Headers) {
        let cx = propagator.extract(&Extract(headers));
        if is_valid(&cx) {
            let _ = span.set_parent(cx);
        }
    }
}
