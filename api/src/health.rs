//! Liveness and readiness. Neither says anything about the configuration or the data.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
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
