//! payments (green): one row per charge, for the payer and admins.
//!
//! `PaymentApproved → APPROVED`; `PaymentRefunded → REFUNDED`. A batch's writes go together
//! (`runtime::batch`).

use async_trait::async_trait;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use storming_domain::payment::{Payment, PaymentEvent};
use storming_domain::recorded::RecordedEvent;

use crate::reader::{Param, ViewReader};
use crate::runtime::batch::{self, Value, Writes};
use crate::runtime::generations::table;
use crate::runtime::{BoxError, Projection};

pub const NAME: &str = "payments";

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReferenceView {
    pub flow: String,
    pub kind: String,
    pub id: String,
}

/// A charge as its payer and admins see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub id: String,
    pub reference: ReferenceView,
    pub customer_id: String,
    pub amount: i64,
    pub status: String,
    pub authorization_id: String,
    pub refund_id: Option<String>,
    pub updated_at: String,
}

pub struct PaymentsView;

#[async_trait]
impl Projection for PaymentsView {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema(&self) -> &'static str {
        include_str!("../sql/payments.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["payments"]
    }

    fn plan(&self, events: &[RecordedEvent], generation: i64) -> Option<Result<Writes, BoxError>> {
        let payments = table("payments", generation);
        Some(batch::writes_of(events, |writes, event| write(writes, &payments, event)))
    }
}

const APPROVED: &[&str] = &[
    "payment_id",
    "reference_flow",
    "reference_kind",
    "reference_id",
    "customer_id",
    "amount",
    "status",
    "authorization_id",
    "updated_at",
];

/// The row writes of one event.
fn write(writes: &mut Writes, payments: &str, event: &RecordedEvent) -> Result<(), BoxError> {
    if event.aggregate_type != <Payment as Aggregate>::TYPE {
        return Ok(());
    }
    let at = || Value::from(event.recorded_at.clone());
    match event.decode::<PaymentEvent>()? {
        PaymentEvent::PaymentApproved { payment_id, reference, customer_id, amount, authorization_id } => writes
            .insert(
                payments,
                APPROVED,
                &["payment_id"],
                vec![
                    payment_id.to_string().into(),
                    reference.flow.into(),
                    reference.kind.into(),
                    reference.id.to_string().into(),
                    customer_id.into(),
                    amount.amount().into(),
                    "APPROVED".into(),
                    authorization_id.into(),
                    at(),
                ],
            ),
        PaymentEvent::PaymentRefunded { payment_id, refund_id, .. } => writes.update(
            payments,
            &["payment_id"],
            &["status", "refund_id", "updated_at"],
            vec![payment_id.to_string().into(), "REFUNDED".into(), refund_id.into(), at()],
        ),
    }
    Ok(())
}

const COLUMNS: &[&str] = &[
    "payment_id",
    "reference_flow",
    "reference_kind",
    "reference_id",
    "customer_id",
    "amount",
    "status",
    "authorization_id",
    "refund_id",
    "updated_at",
];

/// The columns of generation `generation`, for its queries.
fn select(generation: i64) -> String {
    format!("SELECT {} FROM {}", COLUMNS.join(", "), table("payments", generation))
}

pub async fn get(
    reader: &mut ViewReader<'_>,
    generation: i64,
    payment_id: &str,
) -> Result<Option<PaymentView>, sqlx::Error> {
    let sql = format!("{} WHERE payment_id = $1", select(generation));
    let row: Option<PaymentRow> = reader.row(&sql, &[Param::Text(payment_id)]).await?;
    Ok(row.map(PaymentRow::into_view))
}

/// The charges for one rental, order, reservation or booking.
pub async fn by_reference(
    reader: &mut ViewReader<'_>,
    generation: i64,
    reference_id: &str,
) -> Result<Vec<PaymentView>, sqlx::Error> {
    let sql = format!("{} WHERE reference_id = $1 ORDER BY payment_id", select(generation));
    let rows: Vec<PaymentRow> = reader.rows(&sql, &[Param::Text(reference_id)]).await?;
    Ok(rows.into_iter().map(PaymentRow::into_view).collect())
}

/// A row as the view's queries read it.
#[derive(Deserialize, FromRow)]
struct PaymentRow {
    payment_id: String,
    reference_flow: String,
    reference_kind: String,
    reference_id: String,
    customer_id: String,
    amount: i64,
    status: String,
    authorization_id: String,
    refund_id: Option<String>,
    updated_at: String,
}

impl PaymentRow {
    fn into_view(self) -> PaymentView {
        PaymentView {
            id: self.payment_id,
            reference: ReferenceView { flow: self.reference_flow, kind: self.reference_kind, id: self.reference_id },
            customer_id: self.customer_id,
            amount: self.amount,
            status: self.status,
            authorization_id: self.authorization_id,
            refund_id: self.refund_id,
            updated_at: self.updated_at,
        }
    }
}
