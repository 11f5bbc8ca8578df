//! Events of the library context.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::shared::Krw;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LibraryEvent {
    /// A book joined the library; the rental context shelves it when it hears of it.
    BookRegistered { book_id: Uuid, title: String, author: Option<String>, rental_fee: Krw },
}

impl DomainEvent for LibraryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::BookRegistered { .. } => "BookRegistered".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}
