//! `storming-projections`: the green stickies — read models built from the global log — and the
//! worker runtime that feeds them (and the policies) event by event.
//!
//! Each view module owns its tables: it applies events inside the worker's transaction and answers
//! the queries the API serves. Views never call a context; they only read events.

pub mod book_catalog;
pub mod my_page;
pub mod page;
pub mod payments;
pub mod reader;
pub mod rental_status;
pub mod runtime;
mod sqlite_row;

pub use runtime::{BoxError, EventSource, Policy, Projection, RetryLater, Step, Supervisor, Worker, WorkerSettings};

/// Times in views: RFC 3339, UTC, milliseconds — the same text the log's `recorded_at` uses.
pub(crate) fn rfc3339(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
