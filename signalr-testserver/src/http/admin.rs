//! Out-of-band fault controls under `/admin` (served only when enabled).

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Query, State},
};
use serde_json::{Value, json};

use crate::app::App;

fn millis(params: &HashMap<String, String>) -> Duration {
    Duration::from_millis(params.get("ms").and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// `POST /admin/abort`: drop every connection's transport.
pub(super) async fn abort(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({ "aborted": app.abort_all() }))
}

/// `POST /admin/refuse?ms=N`: refuse negotiate and transport requests for N ms.
pub(super) async fn refuse(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
) -> Json<Value> {
    let d = millis(&params);
    app.refuse_for(d);
    Json(json!({ "refusing_ms": d.as_millis() }))
}

/// `POST /admin/blackhole?ms=N`: blackhole every connection for N ms.
pub(super) async fn blackhole(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
) -> Json<Value> {
    Json(json!({ "blackholed": app.blackhole_all(millis(&params)) }))
}
