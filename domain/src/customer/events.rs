//! Events of the customer context.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerEvent {
    /// A customer gave their profile.
    CustomerRegistered { customer_id: String, name: String, phone: Option<String> },
}

impl DomainEvent for CustomerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CustomerRegistered { .. } => "CustomerRegistered".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}
