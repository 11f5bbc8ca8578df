//! my_page (green): one page per customer across every flow — a profile and a row per rental,
//! order, reservation and booking. Built only from events.
//!
//! `CustomerRegistered → profile`; `BookRented → row`; `BookReturned | RentalCancelled → status`;
//! `PaymentRefunded → payment status`.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use storming_domain::customer::{Customer, CustomerEvent};
use storming_domain::payment::{Payment, PaymentEvent};
use storming_domain::recorded::RecordedEvent;
use storming_domain::rental::{self, BookCopy, RentalEvent};

use crate::page::{self, PageWriter};
use crate::reader::{Param, RowSink, ViewReader};
use crate::runtime::batch::{self, Value, Writes};
use crate::runtime::generations::table;
use crate::runtime::{BoxError, Projection};

pub const NAME: &str = "my_page";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Profile {
    pub customer_id: String,
    pub name: String,
    pub phone: Option<String>,
    pub registered_at: String,
}

/// One rental, order, reservation or booking of the customer; its text is borrowed from the row it
/// was read from, and it is written out as JSON while that row is read (ADR 30).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MyPageItem<'r> {
    pub flow: &'r str,
    pub id: &'r str,
    pub title: &'r str,
    pub status: &'r str,
    pub payment_status: &'r str,
    pub amount: i64,
    pub updated_at: &'r str,
}

pub struct MyPage;

#[async_trait]
impl Projection for MyPage {
    fn name(&self) -> &'static str {
        NAME
    }

    /// 2: rows keyed by the item alone, the customer's page a query index (ADR 26).
    fn version(&self) -> i64 {
        2
    }

    fn schema(&self) -> &'static str {
        include_str!("../sql/my_page.sql")
    }

    fn query_indexes(&self) -> &'static str {
        include_str!("../sql/my_page_query_indexes.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["my_page_profiles", "my_page_items"]
    }

    fn plan(&self, events: &[RecordedEvent], generation: i64) -> Option<Result<Writes, BoxError>> {
        let tables = (table("my_page_profiles", generation), table("my_page_items", generation));
        Some(batch::writes_of(events, |writes, event| write(writes, &tables, event)))
    }
}

/// The row writes of one event.
fn write(writes: &mut Writes, (profiles, items): &(String, String), event: &RecordedEvent) -> Result<(), BoxError> {
    let at = || Value::from(event.recorded_at.clone());
    match event.aggregate_type.as_str() {
        <Customer as Aggregate>::TYPE => {
            let CustomerEvent::CustomerRegistered { customer_id, name, phone } = event.decode()?;
            writes.insert(
                profiles,
                &["customer_id", "name", "phone", "registered_at"],
                &["customer_id"],
                vec![customer_id.into(), name.into(), phone.into(), at()],
            );
        }
        <BookCopy as Aggregate>::TYPE => {
            let (rental_id, status) = match event.decode::<RentalEvent>()? {
                RentalEvent::BookShelved { .. } => return Ok(()),
                RentalEvent::BookRented { rental_id, title, customer_id, fee, .. } => {
                    writes.insert(
                        items,
                        &[
                            "customer_id",
                            "flow",
                            "item_id",
                            "title",
                            "status",
                            "payment_status",
                            "amount",
                            "updated_at",
                        ],
                        &["item_id"],
                        vec![
                            customer_id.into(),
                            rental::FLOW.into(),
                            rental_id.to_string().into(),
                            title.into(),
                            "RENTED".into(),
                            "PAID".into(),
                            fee.amount().into(),
                            at(),
                        ],
                    );
                    return Ok(());
                }
                RentalEvent::BookReturned { rental_id, .. } => (rental_id, "RETURNED"),
                RentalEvent::RentalCancelled { rental_id, .. } => (rental_id, "CANCELLED"),
            };
            writes.update(
                items,
                &["item_id"],
                &["status", "updated_at"],
                vec![rental_id.to_string().into(), status.into(), at()],
            );
        }
        <Payment as Aggregate>::TYPE => {
            if let PaymentEvent::PaymentRefunded { reference, .. } = event.decode::<PaymentEvent>()? {
                writes.update(
                    items,
                    &["item_id"],
                    &["payment_status", "updated_at"],
                    vec![reference.id.to_string().into(), "REFUNDED".into(), at()],
                );
            }
        }
        _ => {}
    }
    Ok(())
}

pub async fn profile(
    reader: &mut ViewReader<'_>,
    generation: i64,
    customer_id: &str,
) -> Result<Option<Profile>, sqlx::Error> {
    let profiles = table("my_page_profiles", generation);
    let sql = format!("SELECT customer_id, name, phone, registered_at FROM {profiles} WHERE customer_id = $1");
    reader.row(&sql, &[Param::Text(customer_id)]).await
}

/// The customer's rows, newest first (ids are UUID v7, so id order is creation order), written into
/// `page` (a [`PageWriter`] of [`MyPageItem`]s).
pub async fn items(
    reader: &mut ViewReader<'_>,
    generation: i64,
    customer_id: &str,
    page: &mut PageWriter,
    before: Option<&str>,
) -> Result<(), sqlx::Error> {
    /// The items, written row by row.
    struct Items<'p>(&'p mut PageWriter);
    impl RowSink for Items<'_> {
        type Row<'r> = ItemRow<'r>;

        fn take(&mut self, row: ItemRow<'_>) -> Result<(), sqlx::Error> {
            let item = row.into_item();
            self.0.push(&item, item.id).map_err(page::unwritten)
        }
    }
    let sql = items_sql(generation, before.is_some());
    let mut params = vec![Param::Text(customer_id)];
    params.extend(before.map(Param::Text));
    params.push(Param::Int(page.rows_to_read()));
    reader.each_row(&sql, &params, &mut Items(page)).await
}

/// The statement of [`items`] (`$1` customer, then the cursor if `after_cursor`, then the limit).
/// The cursor is a condition only when there is one, so that the key's index is entered at it: as
/// a `$2 IS NULL OR …` filter, a later page walked every newer row of the customer first.
pub fn items_sql(generation: i64, after_cursor: bool) -> String {
    let items = table("my_page_items", generation);
    let (cursor, limit) = if after_cursor { (" AND item_id < $2", "$3") } else { ("", "$2") };
    format!(
        "SELECT flow, item_id, title, status, payment_status, amount, updated_at FROM {items} \
         WHERE customer_id = $1{cursor} ORDER BY item_id DESC LIMIT {limit}"
    )
}

/// A row as [`items`] reads it, its text borrowed from the row.
#[derive(Deserialize, FromRow)]
struct ItemRow<'r> {
    flow: &'r str,
    item_id: &'r str,
    title: &'r str,
    status: &'r str,
    payment_status: &'r str,
    amount: i64,
    updated_at: &'r str,
}

impl<'r> ItemRow<'r> {
    fn into_item(self) -> MyPageItem<'r> {
        let Self { flow, item_id, title, status, payment_status, amount, updated_at } = self;
        MyPageItem { flow, id: item_id, title, status, payment_status, amount, updated_at }
    }
}
