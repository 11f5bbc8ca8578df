//! The OpenAPI 3 description of the API, served at `/openapi.json` with interactive docs at
//! `/docs` (Swagger UI, vendored into the binary: no CDN).
//!
//! Routes are registered through `utoipa-axum`, so a route cannot exist without its entry in the
//! document; the endpoint × role test walks the document.

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "storming",
        description = "Five Event-Storming businesses on one event-sourced backbone. Commands under /commands \
                       (POST), queries under /queries (GET), the event history under /audit, operations under /admin."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "commands", description = "Change something: executed synchronously; answered with the position of the last stored event."),
        (name = "queries", description = "Read the views; `min_position` waits for your own writes."),
        (name = "audit", description = "The full event history (admins)."),
        (name = "admin", description = "Workers and rebuilds (admins)."),
        (name = "operations", description = "Health and metrics.")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// An error, as `application/problem+json` (RFC 9457), with a stable machine `code`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[schema(example = "https://storming.dev/problems/book-not-available")]
    pub r#type: String,
    #[schema(example = "Conflict")]
    pub title: String,
    #[schema(example = 409)]
    pub status: u16,
    pub detail: String,
    #[schema(example = "book-not-available")]
    pub code: String,
    /// The field that broke its rule (422 `validation-failed` only).
    pub field: Option<String>,
}

/// The errors any command may answer.
#[allow(dead_code)] // a description for the document, never built
#[derive(IntoResponses)]
pub enum CommandErrors {
    /// Malformed JSON, wrong types, unknown fields, or an invalid `Idempotency-Key`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No token, or an invalid one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The payment was declined; nothing was recorded.
    #[response(status = 402, content_type = "application/problem+json")]
    PaymentDeclined(Problem),
    /// The token lacks the role, or the caller is not the owner.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// A business rule or the resource's state refuses the command.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is too large.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Problem),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// A field breaks its rule, or the `Idempotency-Key` was used for another request.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// Too many requests from this caller; see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
    /// The payment provider is unavailable (or its circuit breaker open); see `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The errors any query may answer.
#[allow(dead_code)] // a description for the document, never built
#[derive(IntoResponses)]
pub enum QueryErrors {
    /// Malformed query parameters.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No token, or an invalid one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The token lacks the role, or the caller is not the owner.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// A parameter breaks its rule (e.g. `limit`).
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// Too many requests from this caller; see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
    /// The view has not reached `min_position` in time (`projection-behind`); see `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}
