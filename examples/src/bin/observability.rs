//! Run with: `cargo run -p examples --features observability --bin observability`
//!
//! The client's spans and metrics in a real exporter: the test server runs in this process,
//! a client makes the demo's calls (an invoke, a stream, a send, a client result) inside an
//! application span, survives a dropped transport (`AbortMe`), and stops. Spans go to stdout
//! through `opentelemetry-stdout` as they end: the client's `signalr.invoke`, `signalr.send`,
//! `signalr.stream` and `signalr.handler`, and the server's hub-method spans, which continue the
//! client's trace through the `traceparent` header (feature `opentelemetry` on both sides).
//! The metrics (feature `metrics`) are printed at the end from `metrics-util`'s sink.

use std::time::Duration;

use futures_util::StreamExt as _;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use signalr_client::{HubConnectionBuilder, HubConnectionState, reconnect::FixedDelays};
use signalr_testserver::{ServerConfig, TestServer};
use tracing::Instrument as _;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Metrics: the recorder goes in before any connection is built.
    let recorder = DebuggingRecorder::new();
    let metrics = recorder.snapshotter();
    recorder.install()?;
    // Spans: every `tracing` span to OpenTelemetry, exported to stdout as it ends.
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("observability")))
        .init();

    let server = TestServer::start(ServerConfig::default()).await?;
    let conn = HubConnectionBuilder::new(server.url())
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0]))
        .build()?;
    conn.on_invoke("confirm", |what: String| async move {
        Ok::<_, std::convert::Infallible>(format!("yes, {what}"))
    });
    conn.start().await?;

    let request = tracing::info_span!("demo.request");
    async {
        let sum: i64 = conn.invoke("Add", (40, 2)).await?;
        let headers: std::collections::BTreeMap<String, String> =
            conn.invoke("GetInvocationHeaders", ()).await?;
        eprintln!("Add(40, 2) = {sum}; the server got headers {headers:?}");
        let items: Vec<i32> = conn
            .stream::<i32>("Counter", (3, 10))
            .await?
            .filter_map(|i| async move { i.ok() })
            .collect()
            .await;
        eprintln!("Counter(3) = {items:?}");
        conn.send("Echo", ("fire and forget",)).await?;
        let answer: String = conn.invoke("AskClient", ("confirm", "the order")).await?;
        eprintln!("AskClient -> {answer:?}");
        Ok::<_, signalr_client::HubError>(())
    }
    .instrument(request)
    .await?;

    eprintln!("dropping the transport (AbortMe); the client reconnects");
    let _ = conn.invoke::<()>("AbortMe", ()).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        conn.state_changes()
            .wait_for(|s| *s == HubConnectionState::Connected),
    )
    .await??;
    let after: i64 = conn.invoke("Add", (1, 2)).await?;
    eprintln!("after the reconnect: Add(1, 2) = {after}");
    conn.stop().await?;
    server.shutdown().await;
    provider.shutdown()?;

    eprintln!("\nmetrics:");
    let mut rows: Vec<(String, String)> = metrics
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n.to_string(),
                DebugValue::Gauge(v) => v.to_string(),
                DebugValue::Histogram(v) => {
                    let ms: Vec<String> = v
                        .iter()
                        .map(|s| format!("{:.2} ms", s.into_inner() * 1000.0))
                        .collect();
                    format!("[{}]", ms.join(", "))
                }
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect();
    rows.sort();
    for (name, value) in rows {
        eprintln!("  {name} = {value}");
    }
    Ok(())
}
