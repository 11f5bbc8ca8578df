//! Liveness, readiness and metrics. None of them says anything about the configuration or the
//! business data.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// The process-wide Prometheus recorder, installed on first use (before anything records).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only this one's");
        }
        handle
    })
}

/// Prometheus text: every worker's position and lag (read at scrape time, whichever process runs
/// the workers), and the payment circuit breaker's state and transitions.
async fn metrics(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    for worker in crate::admin::worker_views(&app).await? {
        let name = worker.name;
        metrics::gauge!("storming_worker_position", "worker" => name.clone()).set(worker.position as f64);
        metrics::gauge!("storming_worker_lag_events", "worker" => name.clone()).set(worker.lag_events as f64);
        metrics::gauge!("storming_worker_lag_ms", "worker" => name.clone()).set(worker.lag_ms as f64);
        metrics::gauge!("storming_worker_running", "worker" => name).set(if worker.status == "RUNNING" {
            1.0
        } else {
            0.0
        });
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], prometheus().render()))
}

/// The process is alive.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers and is migrated to this build's schema.
async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    if app.db.is_ready().await {
        Ok(Json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::Unavailable("the database is unreachable or not migrated".into()))
    }
}
