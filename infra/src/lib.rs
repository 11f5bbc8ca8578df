//! `storming-infra`: the adapters around the domain.
//!
//! - [`bounded`]: a map of at most so many entries, for what the command side remembers;
//! - [`callers`]: whether the requests come one at a time, over one connection;
//! - [`db`]: connects to SQLite (embedded default) or PostgreSQL from one URL and migrates it;
//! - [`event_store`]: the cqrs-es event repository chosen at run time, the append that returns an
//!   event's position, and SQLite's group commit;
//! - [`foreign`]: what a process has heard of other processes' commits on PostgreSQL, so that it
//!   knows when its cached aggregates are current;
//! - [`log`]: the gap-safe global log reader, and the audit's queries over the log;
//! - [`commands`]: the command bus — one executor per aggregate (cqrs-es's load, handle, store),
//!   metadata, conflict retry, the position of the last stored event, and the refund of a charge
//!   that was not recorded;
//! - [`idempotency`]: the `Idempotency-Key` reservations;
//! - [`kept`]: connections lent to queries without sqlx's round trip on their return;
//! - [`payment`]: the payment provider adapters and the `Payments` port of the core contexts;
//! - [`config`]: configuration from the environment;
//! - [`turns`]: the commands on one aggregate take turns within a process.

pub mod bounded;
pub mod callers;
pub mod commands;
pub mod config;
pub mod db;
pub mod event_store;
pub mod foreign;
pub mod idempotency;
pub mod kept;
pub mod log;
pub mod payment;
pub mod turns;
