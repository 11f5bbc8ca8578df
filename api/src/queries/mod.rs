//! The query side of the API: `GET /queries/...` only, answered from the views.
//!
//! Every answer carries `X-Projection-Position`, the position the answering view has reached.
//! `?min_position=N` (from a command's answer) waits, up to 5 s, until the view has applied the
//! event at N — read-your-writes — or answers 503 `projection-behind`.

mod book_rental;
mod customers;
mod payments;

use std::time::Duration;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use storming_domain::shared::ValidationError;
use storming_projections::page::{DEFAULT_LIMIT, MAX_LIMIT};
use storming_projections::runtime::checkpoint;
use storming_projections::runtime::generations::{self, worker_key};
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;

use crate::problem::ApiError;
use crate::AppState;

/// The longest a query waits for `min_position`.
const MAX_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(customers::router()).merge(book_rental::router()).merge(payments::router())
}

/// Query-string parameters, with every rejection answered as problem+json (400).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Params(value))
    }
}

/// `?min_position=`, for queries that take nothing else.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// Wait (up to 5 s) until the view has applied the event at this position.
    #[param(minimum = 0)]
    pub min_position: Option<i64>,
}

/// A list's `?limit=`, checked: 1 to 500, 50 when absent.
pub fn limit(requested: Option<i64>) -> Result<i64, ValidationError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        Some(_) => Err(ValidationError::new("limit", format!("must be between 1 and {MAX_LIMIT}"))),
    }
}

/// The generation of a view that answers a query, and the position it has reached.
#[derive(Debug, Clone, Copy)]
pub struct ViewAt {
    pub generation: i64,
    pub position: i64,
}

/// The active generation of view `name`, once it has applied the event at `min_position`.
pub async fn view_position(app: &AppState, name: &str, min_position: Option<i64>) -> Result<ViewAt, ApiError> {
    let deadline = Instant::now() + MAX_WAIT;
    if min_position.is_some_and(|position| position < 0) {
        return Err(ValidationError::new("min_position", "must not be negative").into());
    }
    let wanted = min_position.filter(|position| *position > 0);
    let generation = generations::active(&app.db.read_side, name).await?;
    let key = worker_key(name, generation);
    let mut target = None;
    loop {
        let reached = checkpoint(&app.db.read_side, &key).await?.cursor;
        let view = ViewAt { generation, position: reached.position };
        let Some(position) = wanted else { return Ok(view) };
        if target.is_none() {
            // A position no command gave out: there is nothing to wait for.
            target = Some(
                app.log
                    .cursor_of(position)
                    .await?
                    .ok_or_else(|| ValidationError::new("min_position", "is not the position of a stored event"))?,
            );
        }
        if target.is_some_and(|target| reached >= target) {
            return Ok(view);
        }
        if Instant::now() >= deadline {
            return Err(ApiError::ProjectionBehind(position));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A view's answer, with the position it was read at.
pub fn answer<T: Serialize>(view: ViewAt, body: T) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert("x-projection-position", HeaderValue::from(view.position));
    response
}
