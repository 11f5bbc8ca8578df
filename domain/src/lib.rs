//! `storming-domain`: the Event Storming board as code, with no I/O.
//!
//! One module per bounded context; inside each, `commands.rs` (blue), `events.rs` (orange),
//! `aggregate.rs` (yellow), `policies.rs` (lilac), `external.rs` (pink ports) and `errors.rs`.
//! Aggregates follow cqrs-es 0.5: they decide with `handle` and evolve with `apply`; the clock and
//! the ids come in with the command, the outside world only through ports in `Services`.
//!
//! Contexts implemented so far: `customer`, `payment` (generic), `library` and `rental`
//! (the book-rental flow).

pub mod customer;
pub mod library;
pub mod payment;
pub mod recorded;
pub mod rental;
pub mod shared;
