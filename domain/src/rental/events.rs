//! Events of the rental context.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::shared::Krw;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RentalEvent {
    /// The book is on the rental shelf and can be rented.
    BookShelved { book_id: Uuid, title: String, rental_fee: Krw },
    /// A customer paid for and rented the book until `due_at`.
    BookRented {
        rental_id: Uuid,
        book_id: Uuid,
        title: String,
        customer_id: String,
        fee: Krw,
        payment_id: Uuid,
        rented_at: DateTime<Utc>,
        due_at: DateTime<Utc>,
    },
    /// The renter cancelled within the window; the payment is to be refunded.
    RentalCancelled {
        rental_id: Uuid,
        book_id: Uuid,
        customer_id: String,
        payment_id: Uuid,
        fee: Krw,
        cancelled_at: DateTime<Utc>,
    },
    /// The renter gave the book back, late if `overdue`.
    BookReturned { rental_id: Uuid, book_id: Uuid, customer_id: String, returned_at: DateTime<Utc>, overdue: bool },
}

impl DomainEvent for RentalEvent {
    fn event_type(&self) -> String {
        match self {
            Self::BookShelved { .. } => "BookShelved".into(),
            Self::BookRented { .. } => "BookRented".into(),
            Self::RentalCancelled { .. } => "RentalCancelled".into(),
            Self::BookReturned { .. } => "BookReturned".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}
