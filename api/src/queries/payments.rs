//! `GET /queries/payments/...`: charges, for their payer and admins.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use storming_projections::page::Page;
use storming_projections::payments::{self, PaymentView};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer, view_position, Freshness, Params, QueryConnection};
use crate::auth::{Caller, Role};
use crate::openapi::QueryErrors;
use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(by_reference)).routes(routes!(get_payment))
}

/// One charge, for its payer and admins.
#[utoipa::path(
    get, path = "/queries/payments/{id}", tag = "queries", security(("bearer" = [])),
    params(("id" = String, Path), Freshness),
    responses((status = 200, body = PaymentView, headers(("X-Projection-Position" = i64, description = "The log position the view has reached"))), QueryErrors)
)]
async fn get_payment(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(params): Params<Freshness>,
) -> Result<Response, ApiError> {
    let view = view_position(&app, payments::NAME, params.min_position).await?;
    let mut connection = QueryConnection::lend(&app).await?;
    let payment = payments::get(&mut connection.reader(), view.generation, &id).await?;
    connection.keep();
    let payment = payment.ok_or_else(|| ApiError::not_found("payment-not-found", format!("no payment {id}")))?;
    if payment.customer_id != caller.id && !caller.has(Role::Admin) {
        return Err(ApiError::forbidden("only the payer and admins may see a payment"));
    }
    Ok(answer(view, payment))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReferenceParams {
    /// The rental, order, reservation or booking the charges pay for.
    reference_id: String,
    /// Wait (up to 5 s) until the view has applied the event at this position.
    #[param(minimum = 0)]
    min_position: Option<i64>,
}

/// The charges for one rental, order, reservation or booking: an admin sees all of them, anyone
/// else only their own.
#[utoipa::path(
    get, path = "/queries/payments", tag = "queries", security(("bearer" = [])), params(ReferenceParams),
    responses((status = 200, body = Page<PaymentView>, headers(("X-Projection-Position" = i64, description = "The log position the view has reached"))), QueryErrors)
)]
async fn by_reference(
    State(app): State<AppState>,
    caller: Caller,
    Params(params): Params<ReferenceParams>,
) -> Result<Response, ApiError> {
    let reference_id = params.reference_id;
    let view = view_position(&app, payments::NAME, params.min_position).await?;
    let mut connection = QueryConnection::lend(&app).await?;
    let mut charges = payments::by_reference(&mut connection.reader(), view.generation, &reference_id).await?;
    connection.keep();
    if !caller.has(Role::Admin) {
        charges.retain(|charge| charge.customer_id == caller.id);
    }
    Ok(answer(view, Page { items: charges, next: None }))
}
