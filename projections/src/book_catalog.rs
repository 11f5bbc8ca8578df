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

use crate::page::{self, PageWriter};
use crate::reader::{Param, RowSink, ViewReader};
use crate::runtime::batch::{self, Value, Writes};
use crate::runtime::generations::table;
use crate::runtime::{BoxError, Projection};

pub const NAME: &str = "book_catalog";

/// A book as the catalog shows it; its text is borrowed from the row it was read from, and it is
/// written out as JSON while that row is read (ADR 30).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CatalogBook<'r> {
    pub id: &'r str,
    pub title: &'r str,
    pub author: Option<&'r str>,
    pub rental_fee: i64,
    /// Whether the rental shelf has it yet (it can be rented only then).
    pub on_shelf: bool,
    pub availability: &'r str,
    pub current_rental_id: Option<&'r str>,
    pub updated_at: &'r str,
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

/// The book, as the JSON of its [`CatalogBook`].
pub async fn get(reader: &mut ViewReader<'_>, generation: i64, book_id: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
    /// The book's row, once read.
    struct One(Option<Vec<u8>>);
    impl RowSink for One {
        type Row<'r> = BookRow<'r>;

        fn take(&mut self, row: BookRow<'_>) -> Result<(), sqlx::Error> {
            self.0 = Some(serde_json::to_vec(&row.into_book()).map_err(page::unwritten)?);
            Ok(())
        }
    }
    let sql = format!("{} WHERE book_id = $1", select(generation));
    let mut one = One(None);
    reader.each_row(&sql, &[Param::Text(book_id)], &mut one).await?;
    Ok(one.0)
}

/// Books in id order (registration order), after the cursor; only rentable ones if `available`:
/// a [`Page`](crate::page::Page) of [`CatalogBook`]s, as JSON.
pub async fn list(
    reader: &mut ViewReader<'_>,
    generation: i64,
    available: bool,
    limit: i64,
    after: Option<&str>,
) -> Result<Vec<u8>, sqlx::Error> {
    /// The page, written row by row.
    struct Books(PageWriter);
    impl RowSink for Books {
        type Row<'r> = BookRow<'r>;

        fn take(&mut self, row: BookRow<'_>) -> Result<(), sqlx::Error> {
            let book = row.into_book();
            self.0.push(&book, book.id).map_err(page::unwritten)
        }
    }
    let sql = format!(
        "{} WHERE ($1 = 0 OR (on_shelf = 1 AND availability = 'AVAILABLE')) AND book_id > $2 \
         ORDER BY book_id LIMIT $3",
        select(generation)
    );
    let mut books = Books(PageWriter::new(limit));
    let params =
        [Param::Int(i64::from(available)), Param::Text(after.unwrap_or("")), Param::Int(books.0.rows_to_read())];
    reader.each_row(&sql, &params, &mut books).await?;
    books.0.finish().map_err(page::unwritten)
}

/// A row as the catalog's queries read it, its text borrowed from the row.
#[derive(Deserialize, FromRow)]
struct BookRow<'r> {
    book_id: &'r str,
    title: &'r str,
    #[serde(borrow)]
    author: Option<&'r str>,
    rental_fee: i64,
    on_shelf: i64,
    availability: &'r str,
    #[serde(borrow)]
    current_rental_id: Option<&'r str>,
    updated_at: &'r str,
}

impl<'r> BookRow<'r> {
    fn into_book(self) -> CatalogBook<'r> {
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
