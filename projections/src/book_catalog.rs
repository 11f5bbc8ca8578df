//! book_catalog (green): every registered book with its fee and availability, for everyone.
//!
//! `BookRegistered → row`; `BookShelved → on_shelf`; `BookRented → RENTED`;
//! `BookReturned | RentalCancelled → AVAILABLE`. A batch's writes go together (`runtime::batch`).

use async_trait::async_trait;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use storming_domain::library::{Book, LibraryEvent};
use storming_domain::recorded::RecordedEvent;
use storming_domain::rental::{BookCopy, RentalEvent};

use crate::page::Page;
use crate::reader::{Param, ViewReader};
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

    fn plan(&self, events: &[RecordedEvent], generation: i64) -> Option<Result<Writes, BoxError>> {
        let catalog = table("book_catalog", generation);
        Some(batch::writes_of(events, |writes, event| write(writes, &catalog, event)))
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

const COLUMNS: &[&str] =
    &["book_id", "title", "author", "rental_fee", "on_shelf", "availability", "current_rental_id", "updated_at"];

/// The columns of generation `generation`, for its queries.
fn select(generation: i64) -> String {
    format!("SELECT {} FROM {}", COLUMNS.join(", "), table("book_catalog", generation))
}

pub async fn get(
    reader: &mut ViewReader<'_>,
    generation: i64,
    book_id: &str,
) -> Result<Option<CatalogBook>, sqlx::Error> {
    let sql = format!("{} WHERE book_id = $1", select(generation));
    let row: Option<BookRow> = reader.row(&sql, &[Param::Text(book_id)]).await?;
    Ok(row.map(BookRow::into_book))
}

/// Books in id order (registration order), after the cursor; only rentable ones if `available`.
pub async fn list(
    reader: &mut ViewReader<'_>,
    generation: i64,
    available: bool,
    limit: i64,
    after: Option<&str>,
) -> Result<Page<CatalogBook>, sqlx::Error> {
    let sql = format!(
        "{} WHERE ($1 = 0 OR (on_shelf = 1 AND availability = 'AVAILABLE')) AND book_id > $2 \
         ORDER BY book_id LIMIT $3",
        select(generation)
    );
    let params = [Param::Int(i64::from(available)), Param::Text(after.unwrap_or("")), Param::Int(limit + 1)];
    let rows: Vec<BookRow> = reader.rows(&sql, &params).await?;
    let books = rows.into_iter().map(BookRow::into_book).collect();
    Ok(Page::from_rows(books, limit, |book| book.id.clone()))
}

/// A row as the catalog's queries read it.
#[derive(Deserialize, FromRow)]
struct BookRow {
    book_id: String,
    title: String,
    author: Option<String>,
    rental_fee: i64,
    on_shelf: i64,
    availability: String,
    current_rental_id: Option<String>,
    updated_at: String,
}

impl BookRow {
    fn into_book(self) -> CatalogBook {
        let Self { book_id, title, author, rental_fee, on_shelf, availability, current_rental_id, updated_at } = self;
        CatalogBook {
            id: book_id,
            title,
            author,
            rental_fee,
            on_shelf: on_shelf != 0,
            availability,
            current_rental_id,
            updated_at,
        }
    }
}
