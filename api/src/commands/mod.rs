//! The command side of the API: `POST /commands/...` only. A command is executed synchronously —
//! when the answer comes, its events are stored — and answers `{"id", "position"}`.

mod book_rental;
mod customers;

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use storming_domain::shared::EventMetadata;
use uuid::Uuid;

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::{AppState, REQUEST_ID};

pub fn router() -> Router<AppState> {
    Router::new().merge(customers::router()).merge(book_rental::router())
}

/// A JSON body, with every rejection answered as problem+json (400, 413, 415).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Body(value))
    }
}

/// What a command answers.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// The aggregate or business transaction the command acted on.
    pub id: String,
    /// The global log position of the last stored event (for `?min_position=`).
    pub position: i64,
}

/// `201 Created` with the query resource in `Location`.
pub fn created(location: String, id: impl ToString, position: i64) -> Response {
    let body = Accepted { id: id.to_string(), position };
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response()
}

/// `200 OK` for a command that changed an existing resource.
pub fn done(id: impl ToString, position: i64) -> Response {
    (StatusCode::OK, Json(Accepted { id: id.to_string(), position })).into_response()
}

/// The metadata of a person's command: the caller acts, the request causes, and `correlation_id`
/// names the business transaction.
pub fn metadata(caller: &Caller, headers: &HeaderMap, correlation_id: impl ToString) -> EventMetadata {
    let request_id = headers.get(&REQUEST_ID).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string();
    EventMetadata {
        correlation_id: correlation_id.to_string(),
        causation_id: format!("request/{request_id}"),
        actor: caller.id.clone(),
        request_id,
    }
}

/// An id from a path: anything that is not a UUID names nothing (404).
pub fn path_id(raw: &str, not_found: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(not_found, format!("no such id: {raw}")))
}
