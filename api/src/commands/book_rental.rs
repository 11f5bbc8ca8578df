//! `POST /commands/book-rental/...`: the book-rental flow's commands.
//!
//! `RegisterBook → Book → BookRegistered`; `RentBook → BookCopy (+ Payment) → BookRented`;
//! `CancelRental → RentalCancelled`; `ReturnBook → BookReturned`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use cqrs_es::Aggregate;
use serde::Deserialize;
use storming_domain::library::LibraryCommand;
use storming_domain::rental::{BookCopy, RentalCommand, RentalEvent};
use storming_domain::shared::{required_text, Krw, ValidationError};
use uuid::Uuid;

use super::{created, done, metadata, path_id, Body};
use crate::auth::{Caller, Role};
use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/commands/book-rental/books", post(register_book))
        .route("/commands/book-rental/rentals", post(rent_book))
        .route("/commands/book-rental/rentals/{id}/cancel", post(cancel_rental))
        .route("/commands/book-rental/rentals/{id}/return", post(return_book))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBookBody {
    title: String,
    author: Option<String>,
    rental_fee: i64,
}

/// A book manager adds a book to the library; the shelf policy then puts it on the rental shelf.
#[tracing::instrument(skip_all, fields(actor = %caller.id))]
async fn register_book(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body<RegisterBookBody>,
) -> Result<Response, ApiError> {
    caller.require(Role::BookManager)?;
    let command = LibraryCommand::RegisterBook {
        book_id: Uuid::now_v7(),
        title: required_text("title", &body.title, 300)?,
        author: body.author.map(|author| required_text("author", &author, 200)).transpose()?,
        rental_fee: Krw::positive("rental_fee", body.rental_fee)?,
    };
    let LibraryCommand::RegisterBook { book_id, .. } = &command;
    let book_id = *book_id;
    let position =
        app.bus.library.execute(&book_id.to_string(), command, &metadata(&caller, &headers, book_id)).await?;
    Ok(created(format!("/queries/book-rental/books/{book_id}"), book_id, position))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RentBookBody {
    book_id: String,
}

/// A customer rents a shelved, available book, paying its fee synchronously.
#[tracing::instrument(skip_all, fields(actor = %caller.id))]
async fn rent_book(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body<RentBookBody>,
) -> Result<Response, ApiError> {
    caller.require(Role::Customer)?;
    let book_id =
        Uuid::parse_str(body.book_id.trim()).map_err(|_| ValidationError::new("book_id", "must be a UUID"))?;
    let (rental_id, payment_id) = (Uuid::now_v7(), Uuid::now_v7());
    let metadata = metadata(&caller, &headers, rental_id);
    let command = RentalCommand::RentBook {
        rental_id,
        payment_id,
        customer_id: caller.id.clone(),
        now: Utc::now(),
        terms: app.rental_terms,
        metadata: metadata.clone(),
    };
    let result = app.bus.shelf.execute(&book_id.to_string(), command, &metadata).await;
    if result.is_err() {
        app.bus.refund_unrecorded_charge(payment_id, &metadata).await;
    }
    let position = result?;
    tracing::info!(rental_id = %rental_id, book_id = %book_id, "book rented");
    Ok(created(format!("/queries/book-rental/rentals/{rental_id}"), rental_id, position))
}

/// The renter cancels within the cancel window; the refund policy gives the fee back.
#[tracing::instrument(skip_all, fields(actor = %caller.id, rental_id = %id))]
async fn cancel_rental(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (rental_id, book_id) = renters_rental(&app, &caller, &id).await?;
    let command = RentalCommand::CancelRental {
        rental_id,
        customer_id: caller.id.clone(),
        now: Utc::now(),
        terms: app.rental_terms,
    };
    let position = app.bus.shelf.execute(&book_id, command, &metadata(&caller, &headers, rental_id)).await?;
    Ok(done(rental_id, position))
}

/// The renter gives the book back.
#[tracing::instrument(skip_all, fields(actor = %caller.id, rental_id = %id))]
async fn return_book(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (rental_id, book_id) = renters_rental(&app, &caller, &id).await?;
    let command = RentalCommand::ReturnBook { rental_id, customer_id: caller.id.clone(), now: Utc::now() };
    let position = app.bus.shelf.execute(&book_id, command, &metadata(&caller, &headers, rental_id)).await?;
    Ok(done(rental_id, position))
}

/// Finds the book copy that holds rental `id` in the rental context's own events (strongly
/// consistent, unlike a view), and checks that the caller is its renter.
async fn renters_rental(app: &AppState, caller: &Caller, id: &str) -> Result<(Uuid, String), ApiError> {
    caller.require(Role::Customer)?;
    let rental_id = path_id(id, "rental-not-found")?;
    let not_found = || ApiError::not_found("rental-not-found", format!("no rental {rental_id}"));
    let first = app.log.first_of_correlation(&rental_id.to_string(), BookCopy::TYPE).await?.ok_or_else(not_found)?;
    match first.decode::<RentalEvent>() {
        Ok(RentalEvent::BookRented { customer_id, .. }) if customer_id == caller.id => {
            Ok((rental_id, first.aggregate_id))
        }
        Ok(RentalEvent::BookRented { .. }) => Err(ApiError::forbidden("only the renter may do this")),
        _ => Err(not_found()),
    }
}
