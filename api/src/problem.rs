//! The API's one error type, answered as `application/problem+json` (RFC 9457) with a stable
//! machine `code`. Each variant says which status it becomes. Internal failures are logged with
//! their detail and answered with a generic message: nothing internal reaches a client.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use storming_domain::customer::CustomerError;
use storming_domain::library::LibraryError;
use storming_domain::payment::PaymentError;
use storming_domain::rental::RentalError;
use storming_domain::shared::ValidationError;
use storming_infra::commands::CommandError;

/// Seconds a client should wait before retrying after a 503, unless the cause knows better.
const RETRY_AFTER_SECONDS: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or not the JSON this endpoint takes.
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// 401: no token, or a token that is not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 402: the payment provider declined the charge; nothing was recorded.
    #[error("{0}")]
    PaymentDeclined(String),
    /// 403: a valid token without the role, or not the owner.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource (`*-not-found`).
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// 409: a business rule or the resource's state refuses the command.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 413: the body is larger than the server accepts.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// 422: a field breaks its rule.
    #[error("{0}")]
    Validation(ValidationError),
    /// 422: the `Idempotency-Key` was first used for another request.
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// 429 + Retry-After: this caller sends more than its rate.
    #[error("too many requests; slow down")]
    RateLimited { retry_after: Duration },
    /// 503 + Retry-After: the payment provider is down, slow, or its breaker is open.
    #[error("{detail}")]
    PaymentUnavailable { detail: String, retry_after: Option<Duration> },
    /// 503 + Retry-After: the view has not reached the asked position in time.
    #[error("the view has not reached position {0} yet")]
    ProjectionBehind(i64),
    /// 503: the service cannot serve now (database unreachable or not migrated).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a failure of ours; the detail goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::NotFound { code, detail: detail.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::PaymentDeclined(_) => StatusCode::PAYMENT_REQUIRED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PaymentUnavailable { .. } | Self::ProjectionBehind(_) | Self::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::NotFound { code, .. } | Self::Conflict { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::PaymentDeclined(_) => "payment-declined",
            Self::Forbidden(_) => "forbidden",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::Validation(_) => "validation-failed",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::RateLimited { .. } => "rate-limited",
            Self::PaymentUnavailable { .. } => "payment-unavailable",
            Self::ProjectionBehind(_) => "projection-behind",
            Self::Unavailable(_) => "not-ready",
            Self::Internal(_) => "internal-error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "an internal error occurred; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("https://storming.dev/problems/{}", self.code()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "code": self.code(),
        });
        if let Self::Validation(error) = &self {
            body["field"] = json!(error.field);
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            let seconds = match &self {
                Self::PaymentUnavailable { retry_after: Some(wait), .. } | Self::RateLimited { retry_after: wait } => {
                    wait.as_secs_f64().ceil().max(1.0) as u64
                }
                _ => RETRY_AFTER_SECONDS,
            };
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::Validation(error)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(error) => {
                Self::BadRequest { code: "malformed-json", detail: error.body_text() }
            }
            JsonRejection::JsonDataError(error) => Self::BadRequest { code: "invalid-body", detail: error.body_text() },
            JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge
            }
            other => Self::BadRequest { code: "invalid-body", detail: other.body_text() },
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest { code: "invalid-query", detail: rejection.body_text() }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

impl From<storming_infra::log::LogError> for ApiError {
    fn from(error: storming_infra::log::LogError) -> Self {
        Self::internal(error)
    }
}

/// A domain error's answer.
pub trait ToApiError {
    fn to_api_error(&self) -> ApiError;
}

impl<E: std::error::Error + ToApiError> From<CommandError<E>> for ApiError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Rejected(error) => error.to_api_error(),
            CommandError::Conflict => Self::Conflict {
                code: "concurrent-modification",
                detail: "too many concurrent changes to the same resource; try again".into(),
            },
            CommandError::Store(detail) => Self::Internal(detail),
        }
    }
}

impl ToApiError for RentalError {
    fn to_api_error(&self) -> ApiError {
        let detail = self.to_string();
        let code = self.code();
        match self {
            Self::BookNotFound | Self::RentalNotFound => ApiError::NotFound { code, detail },
            Self::BookNotAvailable | Self::InvalidTransition { .. } | Self::CancelWindowClosed => {
                ApiError::Conflict { code, detail }
            }
            Self::NotRenter => ApiError::Forbidden(detail),
            Self::PaymentDeclined { .. } => ApiError::PaymentDeclined(detail),
            Self::PaymentUnavailable { retry_after, .. } => {
                ApiError::PaymentUnavailable { detail, retry_after: *retry_after }
            }
        }
    }
}

impl ToApiError for LibraryError {
    fn to_api_error(&self) -> ApiError {
        ApiError::Conflict { code: self.code(), detail: self.to_string() }
    }
}

impl ToApiError for CustomerError {
    fn to_api_error(&self) -> ApiError {
        ApiError::Conflict { code: self.code(), detail: self.to_string() }
    }
}

impl ToApiError for PaymentError {
    fn to_api_error(&self) -> ApiError {
        let detail = self.to_string();
        match self {
            Self::Declined { .. } => ApiError::PaymentDeclined(detail),
            Self::ProviderUnavailable { retry_after, .. } => {
                ApiError::PaymentUnavailable { detail, retry_after: *retry_after }
            }
            Self::NothingToRefund => ApiError::NotFound { code: self.code(), detail },
            Self::PaymentIdReused => ApiError::Conflict { code: self.code(), detail },
        }
    }
}
