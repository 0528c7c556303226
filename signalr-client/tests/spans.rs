//! The shape of the client's `tracing` spans and events, as the crate docs ("Tracing")
//! document them, seen by a recording subscriber: one connection span with its id, transport,
//! protocol and statefulness; a span per invocation, send and stream with the method, the
//! invocation id, the outcome and the duration; a reconnect event with its reason. Payloads
//! never appear.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt as _;
use signalr_client::{HubConnectionBuilder, reconnect::FixedDelays};
use signalr_testserver::{ServerConfig, TestServer};
use tracing::{
    Instrument as _, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};

#[derive(Clone, Debug, Default)]
struct SpanRecord {
    name: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
struct EventRecord {
    span: Option<String>,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<BTreeMap<u64, SpanRecord>>>,
    events: Arc<Mutex<Vec<EventRecord>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut record = SpanRecord {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.name().to_owned()),
            ..SpanRecord::default()
        };
        attrs.record(&mut Fields(&mut record.fields));
        self.spans.lock().unwrap().insert(id.into_u64(), record);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, _: Context<'_, S>) {
        if let Some(record) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut record.fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("signalr_client") {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(EventRecord {
            span: ctx.event_span(event).map(|s| s.name().to_owned()),
            fields,
        });
    }
}

impl Recorder {
    fn spans(&self, name: &str) -> Vec<SpanRecord> {
        self.spans
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
}

// One thread: every task the test spawns (the client's driver, its handlers, the server's
// sessions) runs where the recorder is the default subscriber.
#[tokio::test(flavor = "current_thread")]
async fn spans_and_events_have_the_documented_shape() {
    let recorder = Recorder::default();
    let _guard = tracing_subscriber::registry()
        .with(recorder.clone())
        .set_default();
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let conn = HubConnectionBuilder::new(server.url())
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0]))
        .build()
        .unwrap();
    let (tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel();
    conn.on_reconnected(move |_| {
        let _ = tx.send(());
    });
    let outer = tracing::info_span!("app.request");
    async {
        conn.start().await.unwrap();
        let sum: i64 = conn.invoke("Add", (40, 2)).await.unwrap();
        assert_eq!(sum, 42);
        assert!(conn.invoke::<()>("Fail", ("no",)).await.is_err());
        conn.send("Echo", ("secret-payload",)).await.unwrap();
        let items: Vec<i32> = conn
            .stream::<i32>("Counter", (3, 1))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(items, [0, 1, 2]);
    }
    .instrument(outer)
    .await;
    let _ = conn.invoke::<()>("AbortMe", ()).await;
    tokio::time::timeout(Duration::from_secs(10), reconnected.recv())
        .await
        .unwrap();
    let id = conn.connection_id().unwrap();
    conn.stop().await.unwrap();
    server.shutdown().await;

    let connections = recorder.spans("signalr.connection");
    assert_eq!(connections.len(), 1, "{connections:?}");
    let c = &connections[0].fields;
    assert_eq!(c["rpc.system"], "signalr");
    assert_eq!(c["signalr.protocol"], "json");
    assert_eq!(c["signalr.transport"], "WebSockets");
    assert_eq!(c["signalr.stateful"], "false");
    // Re-recorded after the reconnect: the connection id now in use.
    assert_eq!(c["signalr.connection_id"], id);

    let invokes = recorder.spans("signalr.invoke");
    let add = invokes
        .iter()
        .find(|s| s.fields["rpc.method"] == "Add")
        .unwrap();
    assert_eq!(add.fields["rpc.system"], "signalr");
    assert_eq!(add.fields["signalr.outcome"], "ok");
    assert!(!add.fields["signalr.invocation_id"].is_empty());
    assert!(add.fields["signalr.duration_us"].parse::<u64>().is_ok());
    // A child of the application's span it was made in.
    assert_eq!(add.parent.as_deref(), Some("app.request"));
    let fail = invokes
        .iter()
        .find(|s| s.fields["rpc.method"] == "Fail")
        .unwrap();
    assert_eq!(fail.fields["signalr.outcome"], "hub_error");
    let sends = recorder.spans("signalr.send");
    assert_eq!(sends[0].fields["rpc.method"], "Echo");
    assert_eq!(sends[0].fields["signalr.outcome"], "ok");
    let streams = recorder.spans("signalr.stream");
    assert_eq!(streams[0].fields["rpc.method"], "Counter");
    assert_eq!(streams[0].fields["signalr.outcome"], "ok");
    assert_eq!(streams[0].fields["signalr.items"], "3");

    let events = recorder.events.lock().unwrap().clone();
    let attempt = events
        .iter()
        .find(|e| {
            e.fields.get("message").map(String::as_str) == Some("reconnect attempt scheduled")
        })
        .unwrap_or_else(|| panic!("no reconnect event: {events:?}"));
    assert_eq!(attempt.span.as_deref(), Some("signalr.connection"));
    assert_eq!(attempt.fields["signalr.attempt"], "1");
    assert_eq!(attempt.fields["signalr.delay_ms"], "0");
    assert!(!attempt.fields["signalr.reason"].is_empty());
    // No payload in any span or event.
    let everything = format!("{:?}{events:?}", recorder.spans.lock().unwrap());
    assert!(!everything.contains("secret-payload"), "{everything}");
}
