//! `POST /commands/book-rental/...`: the book-rental flow's commands.
//!
//! `RegisterBook → Book → BookRegistered`; `RentBook → BookCopy (+ Payment) → BookRented`;
//! `CancelRental → RentalCancelled`; `ReturnBook → BookReturned`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Utc;
use cqrs_es::Aggregate;
use serde::Deserialize;
use storming_domain::library::LibraryCommand;
use storming_domain::rental::{BookCopy, RentalCommand, RentalEvent};
use storming_domain::shared::{required_text, uuid, Krw};
use storming_infra::commands::Load;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{metadata, once, path_id, Accepted, Body, IdempotencyKeyHeader, Planned, RequestLine};
use crate::auth::{Caller, Role};
use crate::openapi::CommandErrors;
use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_book))
        .routes(routes!(rent_book))
        .routes(routes!(cancel_rental))
        .routes(routes!(return_book))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterBookBody {
    #[schema(min_length = 1, max_length = 300, pattern = r"[^ \t\n\r\f\v]")]
    title: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"[^ \t\n\r\f\v]")]
    author: Option<String>,
    /// KRW, more than zero.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "super::whole_number")]
    rental_fee: i64,
}

/// A book manager adds a book to the library; the shelf policy then puts it on the rental shelf.
#[utoipa::path(
    post, path = "/commands/book-rental/books", tag = "commands", security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body = RegisterBookBody,
    responses((status = 201, body = Accepted, headers(("Location" = String))), CommandErrors)
)]
#[tracing::instrument(skip_all, fields(actor = %caller.id))]
async fn register_book(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body<RegisterBookBody>,
) -> Result<Response, ApiError> {
    caller.require(Role::BookManager)?;
    let title = required_text("title", &body.value.title, 300)?;
    let author = body.value.author.as_deref().map(|author| required_text("author", author, 200)).transpose()?;
    let rental_fee = Krw::positive("rental_fee", body.value.rental_fee)?;
    let plan = |ids: &[Uuid]| Planned::created(ids[0], format!("/queries/book-rental/books/{}", ids[0]));
    let (app, caller, headers) = (&app, &caller, &headers);
    once(app, caller, headers, body.request, vec![Uuid::now_v7()], plan, |ids, key| async move {
        let book_id = ids[0];
        let command = LibraryCommand::RegisterBook { book_id, title, author, rental_fee };
        let metadata = metadata(caller, headers, book_id);
        Ok(app.bus.library.execute_once(&book_id.to_string(), command, &metadata, key.as_ref()).await?)
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RentBookBody {
    #[schema(format = Uuid)]
    book_id: String,
}

/// A customer rents a shelved, available book, paying its fee synchronously. If the rental is
/// not stored after all, the charge is refunded before the answer.
#[utoipa::path(
    post, path = "/commands/book-rental/rentals", tag = "commands", security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body = RentBookBody,
    responses((status = 201, body = Accepted, headers(("Location" = String))), CommandErrors)
)]
#[tracing::instrument(skip_all, fields(actor = %caller.id))]
async fn rent_book(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body<RentBookBody>,
) -> Result<Response, ApiError> {
    caller.require(Role::Customer)?;
    let book_id = uuid("book_id", &body.value.book_id)?;
    let plan = |ids: &[Uuid]| Planned::created(ids[0], format!("/queries/book-rental/rentals/{}", ids[0]));
    let fresh = vec![Uuid::now_v7(), Uuid::now_v7()];
    let minted_payment = fresh[1];
    let (app, caller, headers) = (&app, &caller, &headers);
    once(app, caller, headers, body.request, fresh, plan, |ids, key| async move {
        let (rental_id, payment_id) = (ids[0], ids[1]);
        if payment_id == minted_payment {
            // Minted by this request, not by an earlier attempt with the same key: no event is
            // stored under it yet, so the charge need not read the payment's stream first.
            app.bus.payments.minted(&payment_id.to_string());
        }
        let metadata = metadata(caller, headers, rental_id);
        let command = RentalCommand::RentBook {
            rental_id,
            payment_id,
            customer_id: caller.id.clone(),
            now: Utc::now(),
            terms: app.rental_terms,
            metadata: metadata.clone(),
        };
        // Run to its end in a task of its own: a request dropped halfway (its client went away)
        // could leave a charge with no record, or an unrecorded rental's charge unrefunded.
        let (bus, book) = (app.bus.clone(), book_id.to_string());
        let paid = tokio::spawn(async move {
            let result = bus.shelf.execute_once(&book, command, &metadata, key.as_ref()).await;
            if result.is_err() {
                bus.refund_unrecorded_charge(payment_id, &metadata).await;
            }
            result
        });
        let position = paid.await.map_err(ApiError::internal)??;
        let holder = RentalHolder { book_id: book_id.to_string(), customer_id: caller.id.clone() };
        app.rentals.insert(&rental_id.to_string(), holder);
        tracing::info!(rental_id = %rental_id, book_id = %book_id, "book rented");
        Ok(position)
    })
    .await
}

/// The renter cancels within the cancel window; the refund policy gives the fee back.
#[utoipa::path(
    post, path = "/commands/book-rental/rentals/{id}/cancel", tag = "commands", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The rental id"),
        IdempotencyKeyHeader
    ),
    responses((status = 200, body = Accepted), CommandErrors)
)]
#[tracing::instrument(skip_all, fields(actor = %caller.id, rental_id = %id))]
async fn cancel_rental(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RequestLine(request): RequestLine,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let terms = app.rental_terms;
    let cancel = |rental_id, customer_id, now| RentalCommand::CancelRental { rental_id, customer_id, now, terms };
    act_on_rental(&app, &caller, &headers, request, &id, cancel).await
}

/// The renter gives the book back.
#[utoipa::path(
    post, path = "/commands/book-rental/rentals/{id}/return", tag = "commands", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The rental id"),
        IdempotencyKeyHeader
    ),
    responses((status = 200, body = Accepted), CommandErrors)
)]
#[tracing::instrument(skip_all, fields(actor = %caller.id, rental_id = %id))]
async fn return_book(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RequestLine(request): RequestLine,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let give_back = |rental_id, customer_id, now| RentalCommand::ReturnBook { rental_id, customer_id, now };
    act_on_rental(&app, &caller, &headers, request, &id, give_back).await
}

/// Runs the renter's `command` on the book copy that holds rental `id`.
async fn act_on_rental(
    app: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    request: String,
    id: &str,
    command: impl FnOnce(Uuid, String, chrono::DateTime<Utc>) -> RentalCommand,
) -> Result<Response, ApiError> {
    let (rental_id, book_id) = renters_rental(app, caller, id).await?;
    once(
        app,
        caller,
        headers,
        request,
        vec![],
        |_| Planned::done(rental_id),
        |_, key| async move {
            let command = command(rental_id, caller.id.clone(), Utc::now());
            let metadata = metadata(caller, headers, rental_id);
            // A return or a cancellation calls no service: decided on the cached copy (ADR 46).
            let position =
                app.bus.shelf.execute_once_loaded(&book_id, command, &metadata, key.as_ref(), Load::Cached).await?;
            // The rental has ended: a later command on it is refused, and may read it again.
            app.rentals.remove(&rental_id.to_string());
            Ok(position)
        },
    )
    .await
}

/// Which copy holds a rental and who rented it, as the rental's `BookRented` says: a fact that
/// never changes, so a process remembers it for the open rentals it stored or looked up (at most
/// [`RENTALS_REMEMBERED`]; forgotten when returned or cancelled), and their return or cancellation
/// need not read it from the log again.
#[derive(Debug, Clone)]
pub struct RentalHolder {
    book_id: String,
    customer_id: String,
}

/// About 150 bytes each.
pub const RENTALS_REMEMBERED: usize = 10_000;

/// Finds the book copy that holds rental `id` in the rental context's own events (strongly
/// consistent, unlike a view), and checks that the caller is its renter.
async fn renters_rental(app: &AppState, caller: &Caller, id: &str) -> Result<(Uuid, String), ApiError> {
    caller.require(Role::Customer)?;
    let rental_id = path_id(id, "rental-not-found")?;
    let not_found = || ApiError::not_found("rental-not-found", format!("no rental {rental_id}"));
    let key = rental_id.to_string();
    let holder = match app.rentals.get(&key) {
        Some(holder) => holder,
        None => {
            let first = app.log.first_of_correlation(&key, BookCopy::TYPE).await?.ok_or_else(not_found)?;
            let Ok(RentalEvent::BookRented { customer_id, .. }) = first.decode::<RentalEvent>() else {
                return Err(not_found());
            };
            let holder = RentalHolder { book_id: first.aggregate_id, customer_id };
            app.rentals.insert(&key, holder.clone());
            holder
        }
    };
    if holder.customer_id != caller.id {
        return Err(ApiError::forbidden("only the renter may do this"));
    }
    Ok((rental_id, holder.book_id))
}
