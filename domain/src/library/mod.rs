//! library (supporting; book managers): `RegisterBook → Book → BookRegistered → (shelf policy in
//! rental), book_catalog`.

pub mod aggregate;
pub mod commands;
pub mod errors;
pub mod events;

pub use aggregate::Book;
pub use commands::LibraryCommand;
pub use errors::LibraryError;
pub use events::LibraryEvent;
