//! Commands of the payment context.

use uuid::Uuid;

use super::PaymentReference;
use crate::shared::Krw;

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// Charge a customer for a core transaction. Idempotent: authorizing an approved payment again
    /// charges nothing more.
    AuthorizePayment { payment_id: Uuid, reference: PaymentReference, customer_id: String, amount: Krw },
    /// Give the money back (after a cancellation, a rejection, or a transaction that could not be
    /// recorded). Refunding twice refunds once.
    RefundPayment { reason: String },
}
