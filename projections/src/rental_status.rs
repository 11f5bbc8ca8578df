//! rental_status (green): one row per rental — customers see their own, book managers all.
//!
//! `BookRented → RENTED/PAID`; `BookReturned → RETURNED (overdue)`; `RentalCancelled → CANCELLED`;
//! `PaymentRefunded → REFUNDED`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use storming_domain::payment::{Payment, PaymentEvent};
use storming_domain::recorded::RecordedEvent;
use storming_domain::rental::{BookCopy, RentalEvent};

use crate::page::{self, PageWriter};
use crate::reader::{Param, RowSink, ViewReader};
use crate::rfc3339;
use crate::runtime::batch::{self, Value, Writes};
use crate::runtime::generations::table;
use crate::runtime::{BoxError, Projection};

pub const NAME: &str = "rental_status";

/// A rental as its renter and the book managers see it; its text is borrowed from the row it was
/// read from, and it is written out as JSON while that row is read (ADR 30).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RentalView<'r> {
    pub id: &'r str,
    pub book_id: &'r str,
    pub title: &'r str,
    pub customer_id: &'r str,
    pub status: &'r str,
    /// Returned late, or still rented past its due date.
    pub overdue: bool,
    pub payment_id: &'r str,
    pub payment_status: &'r str,
    pub fee: i64,
    pub rented_at: &'r str,
    pub due_at: &'r str,
    pub returned_at: Option<&'r str>,
    pub cancelled_at: Option<&'r str>,
    pub updated_at: &'r str,
}

/// One rental read by [`get`]: whose it is, its [`RentalView`] as JSON, and when the clock makes it
/// overdue (see [`Rentals::changes_at`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundRental {
    pub customer_id: String,
    pub json: Vec<u8>,
    pub changes_at: Option<DateTime<Utc>>,
}

/// A page of rentals read by [`list`], as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Rentals {
    pub json: Vec<u8>,
    /// When the page would read differently with no event: the earliest due time of a rental it
    /// shows as rented and not yet overdue (`None` if it shows none).
    pub changes_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct RentalFilter {
    pub book_id: Option<String>,
    pub customer_id: Option<String>,
    pub status: Option<String>,
}

pub struct RentalStatusView;

#[async_trait]
impl Projection for RentalStatusView {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema(&self) -> &'static str {
        include_str!("../sql/rental_status.sql")
    }

    fn query_indexes(&self) -> &'static str {
        include_str!("../sql/rental_status_query_indexes.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rental_status"]
    }

    fn plan(&self, events: &[RecordedEvent], generation: i64) -> Option<Result<Writes, BoxError>> {
        let rentals = table("rental_status", generation);
        Some(batch::writes_of(events, |writes, event| write(writes, &rentals, event)))
    }
}

/// Every column, as [`RentalRow`] names them and its queries read them: first those a rental
/// starts with ([`RENTED`]), then those its end sets.
const COLUMNS: &[&str] = &[
    "rental_id",
    "book_id",
    "title",
    "customer_id",
    "status",
    "overdue",
    "payment_id",
    "payment_status",
    "fee",
    "rented_at",
    "due_at",
    "updated_at",
    "returned_at",
    "cancelled_at",
];

/// The columns `BookRented` inserts, in the order of its values.
pub const RENTED: &[&str] = COLUMNS.split_at(12).0;

/// The row writes of one event.
fn write(writes: &mut Writes, rentals: &str, event: &RecordedEvent) -> Result<(), BoxError> {
    let at = || Value::from(event.recorded_at.clone());
    match event.aggregate_type.as_str() {
        <BookCopy as Aggregate>::TYPE => match event.decode::<RentalEvent>()? {
            RentalEvent::BookShelved { .. } => {}
            RentalEvent::BookRented { rental_id, book_id, title, customer_id, fee, payment_id, rented_at, due_at } => {
                writes.insert(
                    rentals,
                    RENTED,
                    &["rental_id"],
                    vec![
                        rental_id.to_string().into(),
                        book_id.to_string().into(),
                        title.into(),
                        customer_id.into(),
                        "RENTED".into(),
                        0.into(),
                        payment_id.to_string().into(),
                        "PAID".into(),
                        fee.amount().into(),
                        rfc3339(&rented_at).into(),
                        rfc3339(&due_at).into(),
                        at(),
                    ],
                );
            }
            RentalEvent::RentalCancelled { rental_id, cancelled_at, .. } => writes.update(
                rentals,
                &["rental_id"],
                &["status", "cancelled_at", "updated_at"],
                vec![rental_id.to_string().into(), "CANCELLED".into(), rfc3339(&cancelled_at).into(), at()],
            ),
            RentalEvent::BookReturned { rental_id, returned_at, overdue, .. } => writes.update(
                rentals,
                &["rental_id"],
                &["status", "returned_at", "overdue", "updated_at"],
                vec![
                    rental_id.to_string().into(),
                    "RETURNED".into(),
                    rfc3339(&returned_at).into(),
                    i64::from(overdue).into(),
                    at(),
                ],
            ),
        },
        <Payment as Aggregate>::TYPE => {
            if let PaymentEvent::PaymentRefunded { payment_id, .. } = event.decode::<PaymentEvent>()? {
                writes.update(
                    rentals,
                    &["payment_id"],
                    &["payment_status", "updated_at"],
                    vec![payment_id.to_string().into(), "REFUNDED".into(), at()],
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// The columns of generation `generation`, for its queries.
fn select(generation: i64) -> String {
    format!("SELECT {} FROM {}", COLUMNS.join(", "), table("rental_status", generation))
}

pub async fn get(
    reader: &mut ViewReader<'_>,
    generation: i64,
    rental_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<FoundRental>, sqlx::Error> {
    /// The rental's row, once read.
    struct One {
        found: Option<FoundRental>,
        now: DateTime<Utc>,
    }
    impl RowSink for One {
        type Row<'r> = RentalRow<'r>;

        fn take(&mut self, row: RentalRow<'_>) -> Result<(), sqlx::Error> {
            let (view, changes_at) = row.into_view(self.now);
            let json = serde_json::to_vec(&view).map_err(page::unwritten)?;
            self.found = Some(FoundRental { customer_id: view.customer_id.to_owned(), json, changes_at });
            Ok(())
        }
    }
    let sql = format!("{} WHERE rental_id = $1", select(generation));
    let mut one = One { found: None, now };
    reader.each_row(&sql, &[Param::Text(rental_id)], &mut one).await?;
    Ok(one.found)
}

/// Rentals in id (time) order after the cursor, narrowed by the filter: a [`Page`](crate::page::Page) of
/// [`RentalView`]s, as JSON.
pub async fn list(
    reader: &mut ViewReader<'_>,
    generation: i64,
    filter: &RentalFilter,
    limit: i64,
    after: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Rentals, sqlx::Error> {
    /// The page, written row by row.
    struct Written {
        page: PageWriter,
        now: DateTime<Utc>,
        changes_at: Option<DateTime<Utc>>,
    }
    impl RowSink for Written {
        type Row<'r> = RentalRow<'r>;

        fn take(&mut self, row: RentalRow<'_>) -> Result<(), sqlx::Error> {
            let (view, changes_at) = row.into_view(self.now);
            self.changes_at = self.changes_at.into_iter().chain(changes_at).min();
            self.page.push(&view, view.id).map_err(page::unwritten)
        }
    }
    let sql = list_sql(generation, filter);
    let mut params: Vec<Param> = set_filters(filter).map(|(_, value)| Param::Text(value)).collect();
    params.push(Param::Text(after.unwrap_or("")));
    let mut written = Written { page: PageWriter::new(limit), now, changes_at: None };
    params.push(Param::Int(written.page.rows_to_read()));
    reader.each_row(&sql, &params, &mut written).await?;
    Ok(Rentals { json: written.page.finish().map_err(page::unwritten)?, changes_at: written.changes_at })
}

/// The statement of [`list`]: each filter that is set is a plain condition, then the cursor and
/// the limit. So a customer's or a book's list walks its index (`rental_status_query_indexes.sql`)
/// from the cursor and stops at the limit; with `($1 IS NULL OR customer_id = $1)` instead, no
/// plan can use either index, and a customer's list read the rentals of everyone.
pub fn list_sql(generation: i64, filter: &RentalFilter) -> String {
    let mut conditions: Vec<String> =
        set_filters(filter).enumerate().map(|(n, (column, _))| format!("{column} = ${}", n + 1)).collect();
    let cursor = conditions.len() + 1;
    conditions.push(format!("rental_id > ${cursor}"));
    format!("{} WHERE {} ORDER BY rental_id LIMIT ${}", select(generation), conditions.join(" AND "), cursor + 1)
}

/// The filter's columns that are set, with their values, in the order [`list_sql`] numbers them.
fn set_filters(filter: &RentalFilter) -> impl Iterator<Item = (&'static str, &str)> {
    [("book_id", &filter.book_id), ("customer_id", &filter.customer_id), ("status", &filter.status)]
        .into_iter()
        .filter_map(|(column, value)| value.as_deref().map(|value| (column, value)))
}

/// A row as its queries read it, its text borrowed from the row.
#[derive(Deserialize, FromRow)]
struct RentalRow<'r> {
    rental_id: &'r str,
    book_id: &'r str,
    title: &'r str,
    customer_id: &'r str,
    status: &'r str,
    overdue: i64,
    payment_id: &'r str,
    payment_status: &'r str,
    fee: i64,
    rented_at: &'r str,
    due_at: &'r str,
    #[serde(borrow)]
    returned_at: Option<&'r str>,
    #[serde(borrow)]
    cancelled_at: Option<&'r str>,
    updated_at: &'r str,
}

impl<'r> RentalRow<'r> {
    /// The rental as it reads at `now`, and the due time from which it reads as overdue if it does
    /// not yet.
    fn into_view(self, now: DateTime<Utc>) -> (RentalView<'r>, Option<DateTime<Utc>>) {
        let returned_late = self.overdue != 0;
        let due = DateTime::parse_from_rfc3339(self.due_at).ok().filter(|_| self.status == "RENTED");
        let past_due = due.is_some_and(|due| now > due);
        let changes_at = due.map(|due| due.to_utc()).filter(|_| !returned_late && !past_due);
        let view = RentalView {
            id: self.rental_id,
            book_id: self.book_id,
            title: self.title,
            customer_id: self.customer_id,
            status: self.status,
            overdue: returned_late || past_due,
            payment_id: self.payment_id,
            payment_status: self.payment_status,
            fee: self.fee,
            rented_at: self.rented_at,
            due_at: self.due_at,
            returned_at: self.returned_at,
            cancelled_at: self.cancelled_at,
            updated_at: self.updated_at,
        };
        (view, changes_at)
    }
}
