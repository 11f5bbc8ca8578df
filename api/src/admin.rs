//! Operations (admins): every worker's position, lag, owner and state.
//!
//! Read from the database (checkpoints, leases, the log), so that any API process can tell, whatever
//! process runs the workers.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use storming_projections::page::Page;
use storming_projections::runtime::{checkpoint, lease};

use crate::auth::{Caller, Role};
use crate::problem::ApiError;
use crate::{workers, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/projections", get(list))
}

/// One worker as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    pub name: String,
    /// `projection` or `policy`.
    pub kind: &'static str,
    pub version: i64,
    /// The position of the last event it applied.
    pub position: i64,
    /// Events stored that it has not applied yet.
    pub lag_events: i64,
    /// How long the oldest of those has been waiting, in milliseconds.
    pub lag_ms: i64,
    /// `RUNNING` while an owner holds its lease, `STOPPED` otherwise.
    pub status: &'static str,
    pub owner: Option<String>,
    pub checkpoint_updated_at: Option<String>,
}

/// Every worker of this build.
pub async fn worker_views(app: &AppState) -> Result<Vec<WorkerView>, ApiError> {
    let projections = workers::projections().into_iter().map(|projection| (projection.name(), "projection"));
    let policies = workers::policies(&app.bus).into_iter().map(|policy| (policy.name(), "policy"));
    let now = Utc::now();
    let mut views = Vec::new();
    for (name, kind) in projections.chain(policies) {
        let checkpoint = checkpoint(&app.db.read_side, name).await?;
        let lag = app.log.lag(checkpoint.cursor).await?;
        let lag_ms = lag
            .oldest_recorded_at
            .as_deref()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map_or(0, |oldest| (now - oldest.with_timezone(&Utc)).num_milliseconds().max(0));
        let holder = lease::holder(&app.db.read_side, name).await?;
        let live =
            holder.as_ref().filter(|(owner, expires_at)| !owner.is_empty() && *expires_at > now.timestamp_millis());
        views.push(WorkerView {
            name: name.to_string(),
            kind,
            version: 1,
            position: checkpoint.cursor.position,
            lag_events: lag.events,
            lag_ms,
            status: if live.is_some() { "RUNNING" } else { "STOPPED" },
            owner: live.map(|(owner, _)| owner.clone()),
            checkpoint_updated_at: (!checkpoint.updated_at.is_empty()).then_some(checkpoint.updated_at),
        });
    }
    Ok(views)
}

async fn list(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(Page { items: worker_views(&app).await?, next: None }).into_response())
}
