//! `GET /queries/payments/...`: charges, for their payer and admins.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use storming_projections::page::{self, Page};
use storming_projections::payments::{self, PaymentView};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer_json, answer_key, kept_or_read, view_position, Answer, Freshness, Params};
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
    let key = answer_key(("payment", &id));
    let payment = kept_or_read(&app, payments::NAME, view, key, async |reader| {
        let Some(payment) = payments::get(reader, view.generation, &id).await? else { return Ok(None) };
        let json = serde_json::to_vec(&payment).map_err(page::unwritten)?;
        Ok(Some(Answer { json: json.into(), customer_id: Some(payment.customer_id), changes_at: None }))
    })
    .await?;
    let payment = payment.ok_or_else(|| ApiError::not_found("payment-not-found", format!("no payment {id}")))?;
    if payment.customer_id.as_ref() != Some(&caller.id) && !caller.has(Role::Admin) {
        return Err(ApiError::forbidden("only the payer and admins may see a payment"));
    }
    Ok(answer_json(view, payment.json))
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
    // An admin sees every charge; anyone else the page of their own.
    let payer = (!caller.has(Role::Admin)).then_some(&caller.id);
    let view = view_position(&app, payments::NAME, params.min_position).await?;
    let key = answer_key(("payments", &reference_id, payer));
    let page = kept_or_read(&app, payments::NAME, view, key, async |reader| {
        let mut charges = payments::by_reference(reader, view.generation, &reference_id).await?;
        if let Some(payer) = payer {
            charges.retain(|charge| &charge.customer_id == payer);
        }
        let json = serde_json::to_vec(&Page { items: charges, next: None }).map_err(page::unwritten)?;
        Ok(Answer::of(json))
    })
    .await?;
    Ok(answer_json(view, page.json))
}
