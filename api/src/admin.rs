//! Operations (admins): every worker's position, lag, owner and state; rebuilding a view.
//!
//! Read from the database (checkpoints, leases, the log), so that any API process can tell, whatever
//! process runs the workers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use storming_projections::page::Page;
use storming_projections::runtime::generations::{self, worker_key, RebuildError};
use storming_projections::runtime::{checkpoint, lease};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Role};
use crate::openapi::{CommandErrors, QueryErrors};
use crate::problem::ApiError;
use crate::{workers, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(rebuild))
}

/// A generation being rebuilt beside the active one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebuildView {
    pub generation: i64,
    pub version: i64,
    pub position: i64,
    pub lag_events: i64,
}

/// One worker as operators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerView {
    pub name: String,
    /// `projection` or `policy`.
    pub kind: &'static str,
    /// The code version of the view the active generation was built by (1 for a policy).
    pub version: i64,
    /// The active generation of a projection's tables (0 for a policy).
    pub generation: i64,
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
    /// The generation being rebuilt, if any.
    pub rebuilding: Option<RebuildView>,
}

/// Every worker of this build.
pub async fn worker_views(app: &AppState) -> Result<Vec<WorkerView>, ApiError> {
    let projections = workers::projections().into_iter().map(|projection| (projection.name(), "projection"));
    let policies = workers::policies(app).into_iter().map(|policy| (policy.name(), "policy"));
    let now = Utc::now();
    let mut views = Vec::new();
    for (name, kind) in projections.chain(policies) {
        let registry = generations::load(&app.db.read_side, name).await?;
        let key = match &registry {
            Some(registry) => worker_key(name, registry.active),
            None => name.to_string(),
        };
        let mut rebuilding = None;
        if let Some(building) = registry.as_ref().and_then(|registry| registry.building) {
            let cursor = checkpoint(&app.db.read_side, &worker_key(name, building)).await?.cursor;
            rebuilding = Some(RebuildView {
                generation: building,
                version: registry.as_ref().and_then(|registry| registry.building_version).unwrap_or(1),
                position: cursor.position,
                lag_events: app.log.lag(cursor).await?.events,
            });
        }
        let checkpoint = checkpoint(&app.db.read_side, &key).await?;
        let lag = app.log.lag(checkpoint.cursor).await?;
        let lag_ms = lag
            .oldest_recorded_at
            .as_deref()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map_or(0, |oldest| (now - oldest.with_timezone(&Utc)).num_milliseconds().max(0));
        let holder = lease::holder(&app.db.read_side, &key).await?;
        let live =
            holder.as_ref().filter(|(owner, expires_at)| !owner.is_empty() && *expires_at > now.timestamp_millis());
        views.push(WorkerView {
            name: name.to_string(),
            kind,
            version: registry.as_ref().map_or(1, |registry| registry.active_version),
            generation: registry.as_ref().map_or(0, |registry| registry.active),
            position: checkpoint.cursor.position,
            lag_events: lag.events,
            lag_ms,
            status: if live.is_some() { "RUNNING" } else { "STOPPED" },
            owner: live.map(|(owner, _)| owner.clone()),
            checkpoint_updated_at: (!checkpoint.updated_at.is_empty()).then_some(checkpoint.updated_at),
            rebuilding,
        });
    }
    Ok(views)
}

#[allow(dead_code)] // the document's description of the list
#[derive(Serialize, ToSchema)]
struct WorkerPage {
    items: Vec<WorkerView>,
    next: Option<String>,
}

/// Every worker: position, lag, owner, state, and any rebuild under way.
#[utoipa::path(
    get, path = "/admin/projections", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = WorkerPage), QueryErrors)
)]
async fn list(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(Page { items: worker_views(&app).await?, next: None }).into_response())
}

/// A rebuild under way.
#[derive(Debug, Serialize, ToSchema)]
struct RebuildStarted {
    name: String,
    generation: i64,
}

/// Rebuilds a view from position 0 into a new generation while the current one keeps answering;
/// the two are switched once the new one has caught up. Policies are never rebuilt.
#[utoipa::path(
    post, path = "/admin/projections/{name}/rebuild", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "book_catalog, rental_status, payments or my_page")),
    responses((status = 202, body = RebuildStarted), CommandErrors)
)]
async fn rebuild(State(app): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let projection = workers::projections()
        .into_iter()
        .find(|projection| projection.name() == name)
        .ok_or_else(|| ApiError::not_found("projection-not-found", format!("no projection {name}")))?;
    match generations::start_rebuild(&app.db.read_side, projection.as_ref()).await {
        Ok(generation) => Ok((StatusCode::ACCEPTED, Json(RebuildStarted { name, generation })).into_response()),
        Err(RebuildError::InProgress(generation)) => Err(ApiError::Conflict {
            code: "rebuild-in-progress",
            detail: format!("generation {generation} of {name} is being built"),
        }),
        Err(RebuildError::Database(error)) => Err(error.into()),
    }
}
