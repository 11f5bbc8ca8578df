//! `GET /queries/customers/me` and `GET /queries/my-page`, answered by the my_page view.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use storming_projections::my_page::{self, MyPageItem, Profile};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer, limit, view_position, Freshness, Params, QueryConnection};
use crate::auth::{Caller, Role};
use crate::openapi::QueryErrors;
use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me)).routes(routes!(my_page))
}

/// The signed-in customer's profile.
#[utoipa::path(
    get, path = "/queries/customers/me", tag = "queries", security(("bearer" = [])), params(Freshness),
    responses((status = 200, body = Profile, headers(("X-Projection-Position" = i64, description = "The log position the view has reached"))), QueryErrors)
)]
async fn me(
    State(app): State<AppState>,
    caller: Caller,
    Params(params): Params<Freshness>,
) -> Result<Response, ApiError> {
    caller.require(Role::Customer)?;
    let view = view_position(&app, my_page::NAME, params.min_position).await?;
    let mut connection = QueryConnection::lend(&app).await?;
    let profile = my_page::profile(&mut connection.reader(), view.generation, &caller.id).await?;
    connection.keep();
    let profile =
        profile.ok_or_else(|| ApiError::not_found("customer-not-found", "you have not registered a profile yet"))?;
    Ok(answer(view, profile))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MyPageParams {
    /// Wait (up to 5 s) until the view has applied the event at this position.
    #[param(minimum = 0)]
    min_position: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    after: Option<String>,
}

/// One customer's page across every flow, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct MyPageView {
    customer_id: String,
    profile: Option<Profile>,
    items: Vec<MyPageItem>,
    next: Option<String>,
    /// The customer's latest notifications. The notification context arrives with the herb-shop
    /// and food-delivery flows; until then this list is empty.
    #[schema(value_type = Vec<Object>)]
    notifications: Vec<serde_json::Value>,
}

/// The signed-in customer's page: profile and rows of every flow, newest first.
#[utoipa::path(
    get, path = "/queries/my-page", tag = "queries", security(("bearer" = [])), params(MyPageParams),
    responses((status = 200, body = MyPageView, headers(("X-Projection-Position" = i64, description = "The log position the view has reached"))), QueryErrors)
)]
async fn my_page(
    State(app): State<AppState>,
    caller: Caller,
    Params(params): Params<MyPageParams>,
) -> Result<Response, ApiError> {
    caller.require(Role::Customer)?;
    let limit = limit(params.limit)?;
    let view = view_position(&app, my_page::NAME, params.min_position).await?;
    let mut connection = QueryConnection::lend(&app).await?;
    let profile = my_page::profile(&mut connection.reader(), view.generation, &caller.id).await?;
    let page =
        my_page::items(&mut connection.reader(), view.generation, &caller.id, limit, params.after.as_deref()).await?;
    connection.keep();
    let body =
        MyPageView { customer_id: caller.id, profile, items: page.items, next: page.next, notifications: vec![] };
    Ok(answer(view, body))
}
