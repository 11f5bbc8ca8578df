//! `POST /commands/customers`: `RegisterCustomer → Customer → CustomerRegistered`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use storming_domain::customer::CustomerCommand;
use storming_domain::shared::{required_text, ValidationError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{metadata, once, Accepted, Body, IdempotencyKeyHeader, Planned};
use crate::auth::{Caller, Role};
use crate::openapi::CommandErrors;
use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register_customer))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterCustomerBody {
    #[schema(min_length = 1, max_length = 200, pattern = r"[^ \t\n\r\f\v]")]
    name: String,
    #[schema(max_length = 40, pattern = r"^[0-9+() -]*[0-9+()-][0-9+() -]*$")]
    phone: Option<String>,
}

/// The signed-in customer gives their profile (once).
#[utoipa::path(
    post, path = "/commands/customers", tag = "commands", security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body = RegisterCustomerBody,
    responses((status = 201, body = Accepted, headers(("Location" = String))), CommandErrors)
)]
#[tracing::instrument(skip_all, fields(customer_id = %caller.id))]
async fn register_customer(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body<RegisterCustomerBody>,
) -> Result<Response, ApiError> {
    caller.require(Role::Customer)?;
    let name = required_text("name", &body.value.name, 200)?;
    let phone = body.value.phone.as_deref().map(|phone| required_text("phone", phone, 40)).transpose()?;
    if let Some(phone) = &phone {
        if !phone.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')')) {
            return Err(ValidationError::new("phone", "may hold only digits, spaces and + - ( )").into());
        }
    }
    let plan = |_: &[uuid::Uuid]| Planned::created(&caller.id, "/queries/customers/me".into());
    let (app, caller, headers) = (&app, &caller, &headers);
    once(app, caller, headers, body.request, vec![], plan, |_, key| async move {
        let command = CustomerCommand::RegisterCustomer { customer_id: caller.id.clone(), name, phone };
        let metadata = metadata(caller, headers, &caller.id);
        Ok(app.bus.customers.execute_once(&caller.id, command, &metadata, key.as_ref()).await?)
    })
    .await
}
