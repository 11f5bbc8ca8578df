//! Events of the payment context.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::shared::Krw;

/// The correlation key back to what was paid for: `{flow, kind, id}`, e.g.
/// `{"book-rental", "rental", <rental id>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReference {
    pub flow: String,
    pub kind: String,
    pub id: Uuid,
}

impl PaymentReference {
    /// How the provider sees the reference: one opaque string.
    pub fn as_provider_reference(&self) -> String {
        format!("{}/{}/{}", self.flow, self.kind, self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentEvent {
    /// The provider took the money for a rental, order, reservation or booking.
    PaymentApproved {
        payment_id: Uuid,
        reference: PaymentReference,
        customer_id: String,
        amount: Krw,
        authorization_id: String,
    },
    /// The provider confirmed that the money went back to the customer.
    PaymentRefunded {
        payment_id: Uuid,
        reference: PaymentReference,
        customer_id: String,
        amount: Krw,
        refund_id: String,
        reason: String,
    },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PaymentApproved { .. } => "PaymentApproved".into(),
            Self::PaymentRefunded { .. } => "PaymentRefunded".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}
