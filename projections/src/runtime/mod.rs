//! The worker runtime: `global log → worker → (view tables | policy commands) + checkpoint`.
//!
//! A worker owns one projection or one policy. It reads the log after its checkpoint in batches.
//! A projection applies the batch and advances the checkpoint in one transaction, so each event
//! takes effect exactly once. A policy issues its commands first (they are idempotent, keyed by the
//! causing event) and then advances the checkpoint, so a crash in between re-delivers events that
//! change nothing the second time.
//!
//! Only the holder of a worker's lease runs it; every checkpoint write renews the lease and fails
//! if another owner has taken it (fencing), so replicas in other processes stand by and take over
//! when the owner dies.
//!
//! Workers wake on an in-process signal when a command stores events (and, on PostgreSQL, on
//! `NOTIFY` from other processes), and poll slowly as a fallback.

pub mod applied;
pub mod batch;
mod checkpoint;
pub mod generations;
pub mod lease;
mod sqlite_batches;
mod tail;
mod worker;

pub use applied::Applied;
pub use checkpoint::{checkpoint, Checkpoint};
pub use generations::Supervisor;
pub use sqlite_batches::SqliteBatches;
pub use tail::{Events, SharedTail, TAIL_EVENTS};
pub use worker::{process_owner, Step, Worker, WorkerSettings};

use async_trait::async_trait;
use sqlx::AnyConnection;
use storming_domain::recorded::{LogCursor, RecordedEvent};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How many appends (commands) this process has asked the log for so far: a catch-up that saw
/// some during its batch leaves the writer to them for a while (see `Worker::with_appends`).
pub type AppendCount = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// Where workers read the global log from (the gap-safe reader in `storming-infra`).
#[async_trait]
pub trait EventSource: Send + Sync {
    async fn read_after(&self, cursor: LogCursor, limit: i64) -> Result<Events, BoxError>;

    /// Whether events are stored after `cursor` that `read_after` does not return yet (on
    /// PostgreSQL: committed behind a transaction that is still running). A worker then looks
    /// again shortly instead of sleeping until its next poll.
    async fn has_unreadable(&self, _cursor: LogCursor) -> Result<bool, BoxError> {
        Ok(false)
    }
}

/// A read model: applies each event to its tables inside the worker's transaction. Its tables
/// exist per generation (see [`generations`]), so that it can be rebuilt beside the live one.
#[async_trait]
pub trait Projection: Send + Sync {
    /// The permanent name (its registry row, its entry in `/admin/projections`).
    fn name(&self) -> &'static str;
    /// Bumped when the view's tables or meaning change: a new generation is then rebuilt from the
    /// log on start, while the old one keeps answering.
    fn version(&self) -> i64 {
        1
    }
    /// The DDL of its tables, with `{g}` where the generation goes, and of the indexes its own
    /// writes need.
    fn schema(&self) -> &'static str;
    /// `CREATE INDEX IF NOT EXISTS` statements for indexes that only queries use. A generation
    /// gets them once it has caught up with the log (and before a rebuilt one goes live): kept up
    /// row by row during a catch-up they cost more than the rows themselves (rental_status over
    /// 300,000 events: 20,000 events/s with them, 60,000 without), built once they take a sort.
    fn query_indexes(&self) -> &'static str {
        ""
    }
    /// The base names of its tables.
    fn tables(&self) -> &'static [&'static str];
    /// A batch's row writes, planned without a connection ([`batch::writes_of`]): this crate's
    /// views describe each event as row writes here, and [`Projection::apply`] sends them
    /// together. On SQLite a worker sends them itself instead, on a plain connection, in one job
    /// with its lease and checkpoint (ADR 24). `None`: the view writes its own SQL in `apply`.
    fn plan(&self, _events: &[RecordedEvent], _generation: i64) -> Option<Result<batch::Writes, BoxError>> {
        None
    }
    /// Applies a batch of events, in order, inside the worker's transaction: by default, sends
    /// what [`Projection::plan`] answers. A view implements one of the two. Whatever a view does,
    /// a batch must end where its events applied one by one would.
    async fn apply(&self, tx: &mut AnyConnection, events: &[RecordedEvent], generation: i64) -> Result<(), BoxError> {
        match self.plan(events, generation) {
            Some(writes) => Ok(writes?.flush(tx).await?),
            None => Err(format!("projection {} neither plans nor applies its writes", self.name()).into()),
        }
    }
}

/// `error`, saying which event caused it.
pub fn at_position(event: &RecordedEvent, error: BoxError) -> BoxError {
    format!("{} at position {} ({}): {error}", event.event_type, event.position, event.event_id()).into()
}

/// A policy's answer for an event it cannot decide on yet (it waits for something to happen or not
/// within a time): the worker stops at the event and asks again after `0`, quietly.
#[derive(Debug, thiserror::Error)]
#[error("not yet: looking again in {0:?}")]
pub struct RetryLater(pub std::time::Duration);

/// A policy: "whenever <event>, then <command>". Its commands must be idempotent.
#[async_trait]
pub trait Policy: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether `event` may need a command (from its type alone, without decoding it). A batch
    /// with none of these writes no checkpoint of its own: the worker moves on in memory and
    /// stores how far it got with its next lease renewal, so that a policy that reacts to one
    /// event in a thousand does not commit a transaction for every command. A crash before that
    /// renewal re-delivers only events the policy ignores.
    fn wants(&self, _event: &RecordedEvent) -> bool {
        true
    }
    /// Reacts to `event`. `later` holds the events after it in the same batch, already in the
    /// log: what the policy may know of the log after `event` without reading it.
    async fn react(&self, event: &RecordedEvent, later: &[RecordedEvent]) -> Result<(), BoxError>;
}
