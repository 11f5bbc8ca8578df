//! `POST /commands/customers`: `RegisterCustomer → Customer → CustomerRegistered`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use storming_domain::customer::CustomerCommand;
use storming_domain::shared::{required_text, ValidationError};

use super::{created, metadata, Body};
use crate::auth::{Caller, Role};
use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/commands/customers", post(register_customer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterCustomerBody {
    name: String,
    phone: Option<String>,
}

/// The signed-in customer gives their profile (once).
#[tracing::instrument(skip_all, fields(customer_id = %caller.id))]
async fn register_customer(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body<RegisterCustomerBody>,
) -> Result<Response, ApiError> {
    caller.require(Role::Customer)?;
    let name = required_text("name", &body.name, 200)?;
    let phone = body.phone.map(|phone| required_text("phone", &phone, 40)).transpose()?;
    if let Some(phone) = &phone {
        if !phone.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')')) {
            return Err(ValidationError::new("phone", "may hold only digits, spaces and + - ( )").into());
        }
    }
    let command = CustomerCommand::RegisterCustomer { customer_id: caller.id.clone(), name, phone };
    let position = app.bus.customers.execute(&caller.id, command, &metadata(&caller, &headers, &caller.id)).await?;
    Ok(created("/queries/customers/me".into(), &caller.id, position))
}
