//! payments (green): one row per charge, for the payer and admins.
//!
//! `PaymentApproved → APPROVED`; `PaymentRefunded → REFUNDED`. A batch's writes go together
//! (`runtime::batch`).

use async_trait::async_trait;
use cqrs_es::Aggregate;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};
use storming_domain::payment::{Payment, PaymentEvent};
use storming_domain::recorded::RecordedEvent;

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

    async fn apply(&self, tx: &mut AnyConnection, events: &[RecordedEvent], generation: i64) -> Result<(), BoxError> {
        let payments = table("payments", generation);
        batch::apply(tx, events, |writes, event| write(writes, &payments, event)).await
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

/// The columns of generation `generation`, for its queries.
fn select(generation: i64) -> String {
    let payments = table("payments", generation);
    format!(
        "SELECT payment_id, reference_flow, reference_kind, reference_id, customer_id, amount, status, \
         authorization_id, refund_id, updated_at FROM {payments}"
    )
}

pub async fn get<'c>(
    db: impl Executor<'c, Database = Any>,
    generation: i64,
    payment_id: &str,
) -> Result<Option<PaymentView>, sqlx::Error> {
    let row = sqlx::query(&format!("{} WHERE payment_id = $1", select(generation)))
        .bind(payment_id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// The charges for one rental, order, reservation or booking.
pub async fn by_reference<'c>(
    db: impl Executor<'c, Database = Any>,
    generation: i64,
    reference_id: &str,
) -> Result<Vec<PaymentView>, sqlx::Error> {
    let rows = sqlx::query(&format!("{} WHERE reference_id = $1 ORDER BY payment_id", select(generation)))
        .bind(reference_id)
        .fetch_all(db)
        .await?;
    rows.iter().map(decode).collect()
}

fn decode(row: &AnyRow) -> Result<PaymentView, sqlx::Error> {
    Ok(PaymentView {
        id: row.try_get("payment_id")?,
        reference: ReferenceView {
            flow: row.try_get("reference_flow")?,
            kind: row.try_get("reference_kind")?,
            id: row.try_get("reference_id")?,
        },
        customer_id: row.try_get("customer_id")?,
        amount: row.try_get("amount")?,
        status: row.try_get("status")?,
        authorization_id: row.try_get("authorization_id")?,
        refund_id: row.try_get("refund_id")?,
        updated_at: row.try_get("updated_at")?,
    })
}
