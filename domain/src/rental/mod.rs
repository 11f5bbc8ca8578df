//! rental (core of book-rental): the shelf.
//!
//! `PutOnShelf (policy on BookRegistered) → BookCopy → BookShelved`;
//! `RentBook → [Payments] → BookCopy → BookRented → rental_status, book_catalog, my_page`;
//! `CancelRental → RentalCancelled → (refund policy in payment)`; `ReturnBook → BookReturned`.

pub mod aggregate;
pub mod closed;
pub mod commands;
pub mod errors;
pub mod events;
pub mod policies;

pub use aggregate::{BookCopy, RentalServices, RentalStatus};
pub use commands::{RentalCommand, RentalTerms};
pub use errors::RentalError;
pub use events::RentalEvent;

/// The flow name used in payment references and my-page rows.
pub const FLOW: &str = "book-rental";
