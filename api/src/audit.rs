//! The audit (admins): the full event history, read straight from the log.
//!
//! `/audit/events` pages through the global log in the order workers apply it;
//! `/audit/streams/{type}/{id}` is one aggregate's history and `.../state?version=N` its state
//! after event N; `/audit/correlations/{id}` is every event of one business transaction.

use crate::openapi::QueryErrors;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cqrs_es::Aggregate;
use serde::Deserialize;
use serde::Serialize;
use serde_json::{json, Value};
use storming_domain::customer::Customer;
use storming_domain::library::Book;
use storming_domain::payment::Payment;
use storming_domain::recorded::{LogCursor, RecordedEvent};
use storming_domain::rental::BookCopy;
use storming_domain::shared::ValidationError;
use storming_infra::log::LogFilter;
use storming_projections::page::Page;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Role};
use crate::problem::ApiError;
use crate::queries::{limit, Params};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(stream))
        .routes(routes!(state))
        .routes(routes!(correlation))
}

/// Who, why and in which business transaction: stored with every event.
#[allow(dead_code)] // the document's description of `EventMetadata`
#[derive(Serialize, ToSchema)]
struct AuditMetadata {
    correlation_id: String,
    causation_id: String,
    actor: String,
    request_id: String,
}

/// One event of the log.
#[allow(dead_code)] // the document's description of `RecordedEvent`
#[derive(Serialize, ToSchema)]
struct AuditEntry {
    position: i64,
    recorded_at: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    metadata: AuditMetadata,
}

#[allow(dead_code)] // the document's description of a page of events
#[derive(Serialize, ToSchema)]
struct AuditPage {
    items: Vec<AuditEntry>,
    next: Option<String>,
}

#[allow(dead_code)] // the document's description of a correlation
#[derive(Serialize, ToSchema)]
struct CorrelationView {
    correlation_id: String,
    items: Vec<AuditEntry>,
}

/// An aggregate's state after one of its events.
#[allow(dead_code)] // the document's description of the state answer
#[derive(Serialize, ToSchema)]
struct StateView {
    aggregate_type: String,
    aggregate_id: String,
    version: i64,
    #[schema(value_type = Object)]
    state: serde_json::Value,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    /// The `next` cursor of the previous page.
    #[param(pattern = "^[0-9]+-[0-9]+$")]
    after: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    aggregate_type: Option<String>,
    event_type: Option<String>,
    correlation_id: Option<String>,
}

/// The global log, filtered, in pages, in the order workers apply it. The cursor is opaque.
#[utoipa::path(
    get, path = "/audit/events", tag = "audit", security(("bearer" = [])), params(EventsParams),
    responses((status = 200, body = AuditPage), QueryErrors)
)]
async fn events(
    State(app): State<AppState>,
    caller: Caller,
    Params(params): Params<EventsParams>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let limit = limit(params.limit)?;
    let after = params.after.as_deref().map(parse_cursor).transpose()?.unwrap_or(LogCursor::START);
    let filter = LogFilter {
        aggregate_type: params.aggregate_type,
        event_type: params.event_type,
        correlation_id: params.correlation_id,
    };
    let events = app.log.read_after(after, limit + 1, &filter).await?;
    Ok(Json(Page::from_rows(events, limit, |event| format_cursor(event.cursor()))).into_response())
}

fn format_cursor(cursor: LogCursor) -> String {
    format!("{}-{}", cursor.transaction_id, cursor.position)
}

fn parse_cursor(raw: &str) -> Result<LogCursor, ValidationError> {
    let invalid = || ValidationError::new("after", "is not a cursor this API gave out");
    let (transaction_id, position) = raw.split_once('-').ok_or_else(invalid)?;
    Ok(LogCursor {
        transaction_id: transaction_id.parse().map_err(|_| invalid())?,
        position: position.parse().map_err(|_| invalid())?,
    })
}

/// One aggregate's events, in sequence order.
#[utoipa::path(
    get, path = "/audit/streams/{aggregate_type}/{aggregate_id}", tag = "audit", security(("bearer" = [])),
    params(("aggregate_type" = String, Path), ("aggregate_id" = String, Path)),
    responses((status = 200, body = AuditPage), QueryErrors)
)]
async fn stream(
    State(app): State<AppState>,
    caller: Caller,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let events = app.log.stream(&aggregate_type, &aggregate_id).await?;
    if events.is_empty() {
        return Err(ApiError::not_found("stream-not-found", format!("no events for {aggregate_type}/{aggregate_id}")));
    }
    Ok(Json(Page { items: events, next: None }).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StateParams {
    /// The state after this event of the stream (the latest when absent).
    #[param(minimum = 1)]
    version: Option<i64>,
}

/// The aggregate's state after event `version` (the latest when absent), rebuilt from its events.
#[utoipa::path(
    get, path = "/audit/streams/{aggregate_type}/{aggregate_id}/state", tag = "audit", security(("bearer" = [])),
    params(("aggregate_type" = String, Path), ("aggregate_id" = String, Path), StateParams),
    responses((status = 200, body = StateView), QueryErrors)
)]
async fn state(
    State(app): State<AppState>,
    caller: Caller,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
    Params(params): Params<StateParams>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let replay = match aggregate_type.as_str() {
        Customer::TYPE => replay::<Customer>,
        Book::TYPE => replay::<Book>,
        Payment::TYPE => replay::<Payment>,
        BookCopy::TYPE => replay::<BookCopy>,
        _ => {
            return Err(ApiError::not_found("aggregate-type-not-found", format!("no aggregate type {aggregate_type}")))
        }
    };
    let events = app.log.stream(&aggregate_type, &aggregate_id).await?;
    let latest = events.last().map(|event| event.sequence).unwrap_or(0);
    let version = params.version.unwrap_or(latest);
    if events.is_empty() || version < 1 || version > latest {
        return Err(ApiError::not_found(
            "version-not-found",
            format!("{aggregate_type}/{aggregate_id} has versions 1 to {latest}"),
        ));
    }
    let state = replay(&events[..version as usize])?;
    Ok(Json(
        json!({ "aggregate_type": aggregate_type, "aggregate_id": aggregate_id, "version": version, "state": state }),
    )
    .into_response())
}

fn replay<A: Aggregate>(events: &[RecordedEvent]) -> Result<Value, ApiError> {
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(event.decode::<A::Event>().map_err(ApiError::internal)?);
    }
    serde_json::to_value(&aggregate).map_err(ApiError::internal)
}

/// Every event of one business transaction, in any context, in log order.
#[utoipa::path(
    get, path = "/audit/correlations/{correlation_id}", tag = "audit", security(("bearer" = [])),
    params(("correlation_id" = String, Path)),
    responses((status = 200, body = CorrelationView), QueryErrors)
)]
async fn correlation(
    State(app): State<AppState>,
    caller: Caller,
    Path(correlation_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let events = app.log.correlation(&correlation_id).await?;
    if events.is_empty() {
        return Err(ApiError::not_found("correlation-not-found", format!("no events for {correlation_id}")));
    }
    Ok(Json(json!({ "correlation_id": correlation_id, "items": events })).into_response())
}
