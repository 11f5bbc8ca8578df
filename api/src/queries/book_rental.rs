//! `GET /queries/book-rental/...`: the book catalog and the rental status views.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use storming_domain::shared::ValidationError;
use storming_projections::book_catalog::{self, CatalogBook};
use storming_projections::page::Page;
use storming_projections::rental_status::RentalView;
use storming_projections::rental_status::{self, RentalFilter};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer_json, answer_key, kept_or_read, limit, view_position, Answer, Freshness, Params};
use crate::auth::{Caller, Role};
use crate::openapi::QueryErrors;
use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_books))
        .routes(routes!(get_book))
        .routes(routes!(list_rentals))
        .routes(routes!(get_rental))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CatalogParams {
    available: Option<bool>,
    /// Wait (up to 5 s) until the view has applied the event at this position.
    #[param(minimum = 0)]
    min_position: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    after: Option<String>,
}

/// The catalog, for every signed-in role; `?available=true` keeps only books that can be rented.
#[utoipa::path(
    get, path = "/queries/book-rental/books", tag = "queries", security(("bearer" = [])), params(CatalogParams),
    responses((status = 200, body = Page<CatalogBook>, headers(("X-Projection-Position" = i64, description = "The log position the view has reached"))), QueryErrors)
)]
async fn list_books(
    State(app): State<AppState>,
    _caller: Caller,
    Params(params): Params<CatalogParams>,
) -> Result<Response, ApiError> {
    let limit = limit(params.limit)?;
    let available = params.available.unwrap_or(false);
    let view = view_position(&app, book_catalog::NAME, params.min_position).await?;
    let key = answer_key(("books", available, limit, &params.after));
    let page = kept_or_read(&app, book_catalog::NAME, view, key, async |reader| {
        let json = book_catalog::list(reader, view.generation, available, limit, params.after.as_deref()).await?;
        Ok(Answer::of(json))
    })
    .await?;
    Ok(answer_json(view, page.json))
}

/// One book of the catalog.
#[utoipa::path(
    get, path = "/queries/book-rental/books/{book_id}", tag = "queries", security(("bearer" = [])),
    params(("book_id" = String, Path), Freshness),
    responses((status = 200, body = CatalogBook, headers(("X-Projection-Position" = i64, description = "The log position the view has reached"))), QueryErrors)
)]
async fn get_book(
    State(app): State<AppState>,
    _caller: Caller,
    Path(book_id): Path<String>,
    Params(params): Params<Freshness>,
) -> Result<Response, ApiError> {
    let view = view_position(&app, book_catalog::NAME, params.min_position).await?;
    let key = answer_key(("book", &book_id));
    let book = kept_or_read(&app, book_catalog::NAME, view, key, async |reader| {
        let json = book_catalog::get(reader, view.generation, &book_id).await?;
        Ok(json.map(Answer::of))
    })
    .await?;
    let book = book.ok_or_else(|| ApiError::not_found("book-not-found", format!("no book {book_id}")))?;
    Ok(answer_json(view, book.json))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RentalParams {
    book_id: Option<String>,
    customer_id: Option<String>,
    #[param(pattern = "^(RENTED|RETURNED|CANCELLED)$")]
    status: Option<String>,
    /// Wait (up to 5 s) until the view has applied the event at this position.
    #[param(minimum = 0)]
    min_position: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    after: Option<String>,
}

/// Rentals: a customer sees their own, a book manager all, narrowed by book, customer and status.
#[utoipa::path(
    get, path = "/queries/book-rental/rentals", tag = "queries", security(("bearer" = [])), params(RentalParams),
    responses((status = 200, body = Page<RentalView>, headers(("X-Projection-Position" = i64, description = "The log position the view has reached"))), QueryErrors)
)]
async fn list_rentals(
    State(app): State<AppState>,
    caller: Caller,
    Params(params): Params<RentalParams>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::Customer, Role::BookManager])?;
    let limit = limit(params.limit)?;
    if let Some(status) = &params.status {
        if !matches!(status.as_str(), "RENTED" | "RETURNED" | "CANCELLED") {
            return Err(ValidationError::new("status", "must be RENTED, RETURNED or CANCELLED").into());
        }
    }
    let customer_id = if caller.has(Role::BookManager) {
        params.customer_id
    } else {
        match params.customer_id {
            Some(other) if other != caller.id => {
                return Err(ApiError::forbidden("customers see only their own rentals"))
            }
            _ => Some(caller.id.clone()),
        }
    };
    let filter = RentalFilter { book_id: params.book_id, customer_id, status: params.status };
    let view = view_position(&app, rental_status::NAME, params.min_position).await?;
    let key = answer_key(("rentals", &filter.book_id, &filter.customer_id, &filter.status, limit, &params.after));
    let page = kept_or_read(&app, rental_status::NAME, view, key, async |reader| {
        let after = params.after.as_deref();
        let page = rental_status::list(reader, view.generation, &filter, limit, after, Utc::now()).await?;
        Ok(Answer { changes_at: page.changes_at, ..Answer::of(page.json) })
    })
    .await?;
    Ok(answer_json(view, page.json))
}

/// One rental, for its renter and book managers.
#[utoipa::path(
    get, path = "/queries/book-rental/rentals/{id}", tag = "queries", security(("bearer" = [])),
    params(("id" = String, Path), Freshness),
    responses((status = 200, body = RentalView, headers(("X-Projection-Position" = i64, description = "The log position the view has reached"))), QueryErrors)
)]
async fn get_rental(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(params): Params<Freshness>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::Customer, Role::BookManager])?;
    let view = view_position(&app, rental_status::NAME, params.min_position).await?;
    let key = answer_key(("rental", &id));
    let rental = kept_or_read(&app, rental_status::NAME, view, key, async |reader| {
        let rental = rental_status::get(reader, view.generation, &id, Utc::now()).await?;
        Ok(rental.map(|rental| Answer {
            json: rental.json.into(),
            customer_id: Some(rental.customer_id),
            changes_at: rental.changes_at,
        }))
    })
    .await?;
    let rental = rental.ok_or_else(|| ApiError::not_found("rental-not-found", format!("no rental {id}")))?;
    if rental.customer_id.as_ref() != Some(&caller.id) && !caller.has(Role::BookManager) {
        return Err(ApiError::forbidden("only the renter and book managers may see a rental"));
    }
    Ok(answer_json(view, rental.json))
}
