//! The command side of the API: `POST /commands/...` only. A command is executed synchronously —
//! when the answer comes, its events are stored — and answers `{"id", "position"}`.

mod book_rental;
mod customers;
mod once;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use storming_domain::shared::EventMetadata;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

pub use book_rental::{RentalHolder, RENTALS_REMEMBERED};
pub use once::{once, IdempotencyKeyHeader, KeyLocks, Planned};

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::{AppState, REQUEST_ID};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(customers::router()).merge(book_rental::router())
}

/// A command's JSON body, with every rejection answered as problem+json (400, 413, 415), and the
/// request's fingerprint (method, path, canonical body) for idempotency keys.
pub struct Body<T> {
    pub value: T,
    pub request: String,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let line = format!("{} {}", request.method(), request.uri().path());
        let Json(json) = Json::<serde_json::Value>::from_request(request, state).await?;
        // serde_json's maps are ordered by key, so equal bodies print alike.
        let request = format!("{line}\n{json}");
        let value = serde_json::from_value(json)
            .map_err(|error| ApiError::BadRequest { code: "invalid-body", detail: format!("invalid body: {error}") })?;
        Ok(Self { value, request })
    }
}

/// Reads a whole number that JSON may write either way (`1500` or `1500.0`: JSON Schema's
/// `integer` takes both); anything else is a 400.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(whole) = number.as_i64() {
        return Ok(whole);
    }
    match number.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => Ok(float as i64),
        _ => Err(serde::de::Error::custom(format!("expected a whole number, got {number}"))),
    }
}

/// The fingerprint of a command without a body: its method and path.
pub struct RequestLine(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestLine {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self(format!("{} {}", parts.method, parts.uri.path())))
    }
}

/// What a command answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The aggregate or business transaction the command acted on.
    pub id: String,
    /// The global log position of the last stored event (for `?min_position=`).
    pub position: i64,
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
