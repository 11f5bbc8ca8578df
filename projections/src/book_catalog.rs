//! book_catalog (green): every registered book with its fee and availability, for everyone.
//!
//! `BookRegistered → row`; `BookShelved → on_shelf`; `BookRented → RENTED`;
//! `BookReturned | RentalCancelled → AVAILABLE`. A batch's writes go together (`runtime::batch`).

use async_trait::async_trait;
use cqrs_es::Aggregate;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};
use storming_domain::library::{Book, LibraryEvent};
use storming_domain::recorded::RecordedEvent;
use storming_domain::rental::{BookCopy, RentalEvent};

use crate::page::Page;
use crate::runtime::batch::{self, Value, Writes};
use crate::runtime::generations::table;
use crate::runtime::{BoxError, Projection};

pub const NAME: &str = "book_catalog";

/// A book as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CatalogBook {
    pub id: String,
    pub title: String,
    pub author: Option<String>,
    pub rental_fee: i64,
    /// Whether the rental shelf has it yet (it can be rented only then).
    pub on_shelf: bool,
    pub availability: String,
    pub current_rental_id: Option<String>,
    pub updated_at: String,
}

pub struct BookCatalog;

#[async_trait]
impl Projection for BookCatalog {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema(&self) -> &'static str {
        include_str!("../sql/book_catalog.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["book_catalog"]
    }

    async fn apply(&self, tx: &mut AnyConnection, events: &[RecordedEvent], generation: i64) -> Result<(), BoxError> {
        let catalog = table("book_catalog", generation);
        batch::apply(tx, events, |writes, event| write(writes, &catalog, event)).await
    }
}

const REGISTERED: &[&str] = &["book_id", "title", "author", "rental_fee", "on_shelf", "availability", "updated_at"];

/// What a rent, a return or a cancellation sets: one shape, so a batch of them is one statement.
const AVAILABILITY: &[&str] = &["availability", "current_rental_id", "updated_at"];

/// The row writes of one event.
fn write(writes: &mut Writes, catalog: &str, event: &RecordedEvent) -> Result<(), BoxError> {
    let at = || Value::from(event.recorded_at.clone());
    match event.aggregate_type.as_str() {
        <Book as Aggregate>::TYPE => match event.decode::<LibraryEvent>()? {
            LibraryEvent::BookRegistered { book_id, title, author, rental_fee } => writes.insert(
                catalog,
                REGISTERED,
                &["book_id"],
                vec![
                    book_id.to_string().into(),
                    title.into(),
                    author.into(),
                    rental_fee.amount().into(),
                    0.into(),
                    "AVAILABLE".into(),
                    at(),
                ],
            ),
        },
        <BookCopy as Aggregate>::TYPE => match event.decode::<RentalEvent>()? {
            RentalEvent::BookShelved { book_id, .. } => {
                writes.update(
                    catalog,
                    &["book_id"],
                    &["on_shelf", "updated_at"],
                    vec![book_id.to_string().into(), 1.into(), at()],
                );
            }
            RentalEvent::BookRented { book_id, rental_id, .. } => writes.update(
                catalog,
                &["book_id"],
                AVAILABILITY,
                vec![book_id.to_string().into(), "RENTED".into(), Some(rental_id.to_string()).into(), at()],
            ),
            RentalEvent::BookReturned { book_id, .. } | RentalEvent::RentalCancelled { book_id, .. } => writes.update(
                catalog,
                &["book_id"],
                AVAILABILITY,
                vec![book_id.to_string().into(), "AVAILABLE".into(), Value::MaybeText(None), at()],
            ),
        },
        _ => {}
    }
    Ok(())
}

/// The columns of generation `generation`, for its queries.
fn select(generation: i64) -> String {
    let catalog = table("book_catalog", generation);
    format!("SELECT book_id, title, author, rental_fee, on_shelf, availability, current_rental_id, updated_at FROM {catalog}")
}

pub async fn get<'c>(
    db: impl Executor<'c, Database = Any>,
    generation: i64,
    book_id: &str,
) -> Result<Option<CatalogBook>, sqlx::Error> {
    let row =
        sqlx::query(&format!("{} WHERE book_id = $1", select(generation))).bind(book_id).fetch_optional(db).await?;
    row.as_ref().map(decode).transpose()
}

/// Books in id order (registration order), after the cursor; only rentable ones if `available`.
pub async fn list<'c>(
    db: impl Executor<'c, Database = Any>,
    generation: i64,
    available: bool,
    limit: i64,
    after: Option<&str>,
) -> Result<Page<CatalogBook>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "{} WHERE ($1 = 0 OR (on_shelf = 1 AND availability = 'AVAILABLE')) AND book_id > $2 \
         ORDER BY book_id LIMIT $3",
        select(generation)
    ))
    .bind(i64::from(available))
    .bind(after.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let books = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(books, limit, |book| book.id.clone()))
}

fn decode(row: &AnyRow) -> Result<CatalogBook, sqlx::Error> {
    Ok(CatalogBook {
        id: row.try_get("book_id")?,
        title: row.try_get("title")?,
        author: row.try_get("author")?,
        rental_fee: row.try_get("rental_fee")?,
        on_shelf: row.try_get::<i64, _>("on_shelf")? != 0,
        availability: row.try_get("availability")?,
        current_rental_id: row.try_get("current_rental_id")?,
        updated_at: row.try_get("updated_at")?,
    })
}
