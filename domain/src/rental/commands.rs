//! Commands of the rental context. They carry the time and the terms; the aggregate reads no clock.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::shared::{EventMetadata, Krw};

/// The configurable terms of a rental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RentalTerms {
    /// How long a rental runs before it is overdue (default 14 days).
    pub rental_period: TimeDelta,
    /// How long after renting the renter may still cancel for a refund (default 24 hours).
    pub cancel_window: TimeDelta,
}

impl Default for RentalTerms {
    fn default() -> Self {
        Self { rental_period: TimeDelta::days(14), cancel_window: TimeDelta::hours(24) }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RentalCommand {
    /// Put a newly registered book on the rental shelf (issued by the shelf policy).
    PutOnShelf { book_id: Uuid, title: String, rental_fee: Krw },
    /// A customer rents the book, paying its fee at once.
    RentBook {
        rental_id: Uuid,
        payment_id: Uuid,
        customer_id: String,
        now: DateTime<Utc>,
        terms: RentalTerms,
        /// The command's metadata, handed on to the payment so its events join this rental.
        metadata: EventMetadata,
    },
    /// The renter changes their mind within the cancel window; the fee is refunded.
    CancelRental { rental_id: Uuid, customer_id: String, now: DateTime<Utc>, terms: RentalTerms },
    /// The renter gives the book back.
    ReturnBook { rental_id: Uuid, customer_id: String, now: DateTime<Utc> },
}
