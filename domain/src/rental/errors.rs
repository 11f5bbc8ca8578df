//! Why the shelf refuses a command.

use super::RentalStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RentalError {
    #[error("the book is not on the shelf")]
    BookNotFound,
    #[error("the book is already rented")]
    BookNotAvailable,
    #[error("no such rental of this book")]
    RentalNotFound,
    #[error("only the renter may do this")]
    NotRenter,
    #[error("the rental is {from:?} and cannot become {to:?}")]
    InvalidTransition { from: RentalStatus, to: RentalStatus },
    #[error("the cancel window has closed")]
    CancelWindowClosed,
    #[error("the payment was declined: {reason}")]
    PaymentDeclined { reason: String },
    #[error("the payment is unavailable: {detail}")]
    PaymentUnavailable { detail: String, retry_after: Option<std::time::Duration> },
}

impl RentalError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BookNotFound => "book-not-found",
            Self::BookNotAvailable => "book-not-available",
            Self::RentalNotFound => "rental-not-found",
            Self::NotRenter => "not-renter",
            Self::InvalidTransition { .. } => "invalid-transition",
            Self::CancelWindowClosed => "cancel-window-closed",
            Self::PaymentDeclined { .. } => "payment-declined",
            Self::PaymentUnavailable { .. } => "payment-unavailable",
        }
    }
}
