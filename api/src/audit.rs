//! The audit (admins): the full event history, read straight from the log.
//!
//! `/audit/events` pages through the global log in the order workers apply it;
//! `/audit/streams/{type}/{id}` is one aggregate's history and `.../state?version=N` its state
//! after event N; `/audit/correlations/{id}` is every event of one business transaction.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cqrs_es::Aggregate;
use serde::Deserialize;
use serde_json::{json, Value};
use storming_domain::customer::Customer;
use storming_domain::library::Book;
use storming_domain::payment::Payment;
use storming_domain::recorded::{LogCursor, RecordedEvent};
use storming_domain::rental::BookCopy;
use storming_domain::shared::ValidationError;
use storming_infra::log::LogFilter;
use storming_projections::page::Page;

use crate::auth::{Caller, Role};
use crate::problem::ApiError;
use crate::queries::{limit, Params};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/events", get(events))
        .route("/audit/streams/{aggregate_type}/{aggregate_id}", get(stream))
        .route("/audit/streams/{aggregate_type}/{aggregate_id}/state", get(state))
        .route("/audit/correlations/{correlation_id}", get(correlation))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    after: Option<String>,
    limit: Option<i64>,
    aggregate_type: Option<String>,
    event_type: Option<String>,
    correlation_id: Option<String>,
}

/// The global log, filtered, in pages. The cursor is opaque to clients.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateParams {
    version: Option<i64>,
}

/// The aggregate's state after event `version` (the latest when absent), rebuilt from its events.
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
