//! End-to-end tests: the real server, on a real listener, against a fresh SQLite file and a fresh
//! PostgreSQL database, driven over HTTP like a client. Views are polled with a deadline or read
//! with `min_position`, never slept on.

mod batches;
mod concurrency;
mod edges;
mod event_store;
mod fake_provider;
mod global_log;
mod kept_answers;
mod one_caller;
mod payment;
mod pools;
mod query_plans;
mod rebuild;
mod rental_rules;
mod rental_story;
mod restart;
pub mod support;
mod workers;
