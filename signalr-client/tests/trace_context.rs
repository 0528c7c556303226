//! W3C trace context across the hub (feature `opentelemetry`), end to end through an
//! OpenTelemetry SDK with an in-memory exporter:
//!
//! - our client, inside a span of a known trace, invokes `GetInvocationHeaders`: the server got
//!   a `traceparent` with that trace id and the invocation span's own id, and the `tracestate`,
//!   in JSON and in MessagePack (`HubConnectionTests.Tracing.cs` in dotnet/aspnetcore checks the
//!   .NET client the same way: the header is the invocation activity's id);
//! - a send and a stream carry it too, and the test server's hub-method spans continue the
//!   trace (their parents are the client's send and stream spans), as ASP.NET Core's do;
//! - a server call that carries a `traceparent` runs its handler in a span whose parent is that
//!   context.
#![cfg(feature = "opentelemetry")]
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, str::FromStr as _, time::Duration};

use futures_util::StreamExt as _;
use opentelemetry::{
    Context,
    trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        TracerProvider as _,
    },
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use signalr_client::{HubConnectionBuilder, transport::memory};
use signalr_testserver::{ServerConfig, TestServer};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::prelude::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const STATE: &str = "congo=t61rcWkgMzE";

/// An SDK exporting to memory, as the default subscriber of this thread.
fn otel() -> (
    InMemorySpanExporter,
    SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let guard = tracing_subscriber::registry().with(layer).set_default();
    (exporter, provider, guard)
}

/// A span of the application, continuing the known remote trace.
fn app_span() -> tracing::Span {
    let remote = SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex(PARENT).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_str(STATE).unwrap(),
    );
    let span = tracing::info_span!("app.request");
    let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    span
}

fn finished(exporter: &InMemorySpanExporter, provider: &SdkTracerProvider) -> Vec<SpanData> {
    let _ = provider.force_flush();
    exporter.get_finished_spans().unwrap()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

async fn across_the_hub(messagepack: bool) {
    let (exporter, provider, _guard) = otel();
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut builder = HubConnectionBuilder::new(server.url());
    if messagepack {
        builder = builder.with_messagepack();
    }
    let conn = builder.build().unwrap();
    conn.start().await.unwrap();
    let app = app_span();
    let headers: BTreeMap<String, String> = async {
        let headers = conn.invoke("GetInvocationHeaders", ()).await.unwrap();
        conn.send("Echo", ("sent",)).await.unwrap();
        let items: Vec<i32> = conn
            .stream::<i32>("Counter", (2, 1))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(items, [0, 1]);
        headers
    }
    .instrument(app)
    .await;
    // The send's hub method ran by the time a later call is answered.
    let _: i64 = conn.invoke("Add", (1, 2)).await.unwrap();
    // Outside the application's span: a trace of the call's own, and no empty `tracestate`
    // (the .NET client writes none when there is none).
    let own: BTreeMap<String, String> = conn.invoke("GetInvocationHeaders", ()).await.unwrap();
    assert!(own["traceparent"].starts_with("00-"), "{own:?}");
    assert!(!own["traceparent"].contains(TRACE), "{own:?}");
    assert!(!own.contains_key("tracestate"), "{own:?}");
    conn.stop().await.unwrap();
    server.shutdown().await;

    let spans = finished(&exporter, &provider);
    let invoke = named(&spans, "signalr.invoke")
        .into_iter()
        .find(|s| {
            attribute(s, "rpc.method").as_deref() == Some("GetInvocationHeaders")
                && s.span_context.trace_id().to_string() == TRACE
        })
        .unwrap();
    let context = &invoke.span_context;
    assert_eq!(context.trace_id().to_string(), TRACE);
    assert_eq!(
        headers.get("traceparent").map(String::as_str),
        Some(format!("00-{TRACE}-{}-01", context.span_id()).as_str()),
        "{headers:?}"
    );
    assert_eq!(headers.get("tracestate").map(String::as_str), Some(STATE));
    assert_eq!(invoke.span_kind, opentelemetry::trace::SpanKind::Client);

    // The server's hub-method spans continue the client's send and stream spans.
    let send = named(&spans, "signalr.send")[0];
    let stream = named(&spans, "signalr.stream")[0];
    let echo = named(&spans, "SignalRTestServer.TestHub/Echo")[0];
    let counter = named(&spans, "SignalRTestServer.TestHub/Counter")[0];
    for (server_span, client_span) in [(echo, send), (counter, stream)] {
        assert_eq!(server_span.span_context.trace_id().to_string(), TRACE);
        assert_eq!(
            server_span.parent_span_id,
            client_span.span_context.span_id()
        );
        assert!(server_span.parent_span_is_remote);
        assert_eq!(
            server_span.span_kind,
            opentelemetry::trace::SpanKind::Server
        );
        assert_eq!(
            attribute(server_span, "rpc.system").as_deref(),
            Some("signalr")
        );
    }
    // A call made outside the application's span starts a trace of its own, which the
    // server continues too.
    let add = named(&spans, "SignalRTestServer.TestHub/Add")[0];
    let add_call = named(&spans, "signalr.invoke")
        .into_iter()
        .find(|s| attribute(s, "rpc.method").as_deref() == Some("Add"))
        .unwrap();
    assert_ne!(add_call.span_context.trace_id().to_string(), TRACE);
    assert_eq!(
        add.span_context.trace_id(),
        add_call.span_context.trace_id()
    );
    assert_eq!(add.parent_span_id, add_call.span_context.span_id());
}

// One thread: the client's driver, its handlers and the server's sessions all run where the
// SDK's layer is the default subscriber.
#[tokio::test(flavor = "current_thread")]
async fn invocations_carry_the_trace_context_in_json() {
    across_the_hub(false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn invocations_carry_the_trace_context_in_messagepack() {
    across_the_hub(true).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_call_with_a_traceparent_is_the_parent_of_its_handler_span() {
    let (exporter, provider, _guard) = otel();
    let (connector, listener) = memory::connector();
    let conn = HubConnectionBuilder::new("memory://hub")
        .with_connector(connector)
        .build()
        .unwrap();
    let (tx, mut ticks) = tokio::sync::mpsc::unbounded_channel();
    conn.on("tick", move |n: i32| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(n);
        }
    });
    let starting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.start().await })
    };
    let mut peer = listener.accept().await.unwrap();
    let _handshake = peer.recv().await.unwrap();
    peer.send(b"{}\x1e".to_vec());
    starting.await.unwrap().unwrap();
    let call = format!(
        "{{\"type\":1,\"headers\":{{\"traceparent\":\"00-{TRACE}-{PARENT}-01\",\"tracestate\":\"{STATE}\"}},\"target\":\"tick\",\"arguments\":[7]}}\x1e"
    );
    peer.send(call.into_bytes());
    // And one without headers: its handler span is a root, as ASP.NET Core's hub-method
    // activities are (not under the long-lived connection).
    peer.send(b"{\"type\":1,\"target\":\"tick\",\"arguments\":[8]}\x1e".to_vec());
    for expected in [7, 8] {
        let n = tokio::time::timeout(Duration::from_secs(10), ticks.recv())
            .await
            .unwrap();
        assert_eq!(n, Some(expected));
    }
    conn.stop().await.unwrap();
    drop(peer);

    let spans = finished(&exporter, &provider);
    let handlers = named(&spans, "signalr.handler");
    assert_eq!(handlers.len(), 2, "{spans:#?}");
    let traced = handlers
        .iter()
        .find(|s| s.span_context.trace_id().to_string() == TRACE)
        .unwrap();
    assert_eq!(traced.span_context.trace_id().to_string(), TRACE);
    assert_eq!(traced.parent_span_id.to_string(), PARENT);
    assert!(traced.parent_span_is_remote);
    assert_eq!(traced.span_context.trace_state().header(), STATE);
    assert_eq!(attribute(traced, "rpc.method").as_deref(), Some("tick"));
    let plain = handlers
        .iter()
        .find(|s| s.span_context.trace_id().to_string() != TRACE)
        .unwrap();
    assert_eq!(plain.parent_span_id, SpanId::INVALID);
}
