//! `GET /queries/customers/me` and `GET /queries/my-page`, answered by the my_page view.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use storming_projections::my_page::{self, MyPageItem, Profile};
use storming_projections::page::{self, PageWriter};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer_json, answer_key, kept_or_read, limit, view_position, Answer, Freshness, Params};
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
    let key = answer_key(("me", &caller.id));
    let profile = kept_or_read(&app, my_page::NAME, view, key, async |reader| {
        let Some(profile) = my_page::profile(reader, view.generation, &caller.id).await? else { return Ok(None) };
        let json = serde_json::to_vec(&profile).map_err(page::unwritten)?;
        Ok(Some(Answer::of(json)))
    })
    .await?;
    let profile =
        profile.ok_or_else(|| ApiError::not_found("customer-not-found", "you have not registered a profile yet"))?;
    Ok(answer_json(view, profile.json))
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

/// One customer's page across every flow, newest first: the answer's shape, as the OpenAPI document
/// describes it. The answer is written as its rows are read (ADR 30): a [`PageWriter`]'s items and
/// cursor, then the fields of a [`MyPageRest`]; a test checks the two against each other.
#[derive(Debug, Serialize, ToSchema)]
struct MyPageView<'r> {
    customer_id: String,
    profile: Option<Profile>,
    items: Vec<MyPageItem<'r>>,
    next: Option<String>,
    /// The customer's latest notifications. The notification context arrives with the herb-shop
    /// and food-delivery flows; until then this list is empty.
    #[schema(value_type = Vec<Object>)]
    notifications: Vec<serde_json::Value>,
}

/// A [`MyPageView`]'s fields besides its page.
#[derive(Serialize)]
struct MyPageRest<'a> {
    customer_id: &'a str,
    profile: Option<Profile>,
    notifications: [serde_json::Value; 0],
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
    let key = answer_key(("my-page", &caller.id, limit, &params.after));
    let page = kept_or_read(&app, my_page::NAME, view, key, async |reader| {
        let profile = my_page::profile(reader, view.generation, &caller.id).await?;
        let mut page = PageWriter::new(limit);
        my_page::items(reader, view.generation, &caller.id, &mut page, params.after.as_deref()).await?;
        let rest = MyPageRest { customer_id: &caller.id, profile, notifications: [] };
        let json = page.finish_with(&rest).map_err(page::unwritten)?;
        Ok(Answer::of(json))
    })
    .await?;
    Ok(answer_json(view, page.json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_my_page_should_have_the_documented_shape() {
        let profile = Profile {
            customer_id: "kim".into(),
            name: "Kim".into(),
            phone: None,
            registered_at: "2026-12-05T00:00:00Z".into(),
        };
        let item = MyPageItem {
            flow: "book-rental",
            id: "r1",
            title: "Dune",
            status: "RENTED",
            payment_status: "PAID",
            amount: 300,
            updated_at: "2026-12-05T00:00:01Z",
        };
        let mut page = PageWriter::new(1);
        page.push(&item, item.id).unwrap();
        page.push(&item, "r0").unwrap();
        let rest = MyPageRest { customer_id: "kim", profile: Some(profile.clone()), notifications: [] };
        let written: serde_json::Value = serde_json::from_slice(&page.finish_with(&rest).unwrap()).unwrap();
        let documented = MyPageView {
            customer_id: "kim".into(),
            profile: Some(profile),
            items: vec![item],
            next: Some("r1".into()),
            notifications: vec![],
        };
        assert_eq!(written, serde_json::to_value(&documented).unwrap());
    }
}
