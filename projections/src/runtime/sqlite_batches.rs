//! On SQLite, a projection's batch is one job on a plain connection of the process's own (ADR 24).
//!
//! Through sqlx a batch's transaction was six statements or more (`BEGIN`, the lease, the
//! checkpoint, the view's writes, `COMMIT`), each a message to the connection's thread and one
//! back, and it held the single writer the commands queue for from the first to the last. Here the
//! view's writes are planned first ([`Projection::plan`](super::Projection::plan)), and the whole
//! transaction runs on tokio's blocking threads in one go, on one connection that every view of
//! the process shares (they take the write gate in turn anyway), so its page cache outlives one
//! view's batch. The statements are the ones the sqlx path sends.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use storming_domain::recorded::LogCursor;

use super::batch::Statements;
use super::checkpoint::ADVANCE;
use super::lease::{Lease, LeaseLost, RENEW};
use super::BoxError;
use crate::reader::bind_numbered;

/// The connection the process's projections write their batches on.
#[derive(Debug)]
pub struct SqliteBatches {
    path: PathBuf,
    busy_timeout: Duration,
    connection: Mutex<Option<Connection>>,
}

impl SqliteBatches {
    /// Batches written to the database file at `path`, which must exist (migrated, in WAL mode). A
    /// write of another process waits up to `busy_timeout` for SQLite's lock.
    pub fn new(path: impl Into<PathBuf>, busy_timeout: Duration) -> Arc<Self> {
        Arc::new(Self { path: path.into(), busy_timeout, connection: Mutex::new(None) })
    }

    /// Writes `batch` in one transaction (see [`PlannedBatch`]).
    pub async fn commit(self: &Arc<Self>, batch: PlannedBatch) -> Result<(), BoxError> {
        let batches = self.clone();
        tokio::task::spawn_blocking(move || batches.commit_now(batch)).await?
    }

    fn commit_now(&self, batch: PlannedBatch) -> Result<(), BoxError> {
        let mut slot = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(self.open()?),
        };
        let committed = write_batch(connection, batch);
        if committed.as_ref().is_err_and(|error| !error.is::<LeaseLost>()) {
            // Not trusted after a failure (a transaction it could not end): the next batch opens
            // another.
            *slot = None;
        }
        committed
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(self.busy_timeout)?;
        // As the read side's sqlx connections: nothing a view writes is an acknowledged command,
        // and every command's commit syncs what came before it (ADR 8).
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        // A multi-row statement inside the batch's transaction may have to be undone alone, so
        // SQLite first copies each page it changes to a statement journal: past 64 KiB a
        // temporary file, created, written and deleted per batch. In memory instead (ADR 25).
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(connection)
    }
}

/// A projection's batch, planned: in one transaction, `lease` is renewed for `ttl` (failing with
/// [`LeaseLost`] if it is no longer ours, and then storing nothing), checkpoint `key` moves to
/// `last`, and `writes` are sent (rendered for SQLite).
pub struct PlannedBatch {
    pub lease: Lease,
    pub ttl: Duration,
    pub key: String,
    pub last: LogCursor,
    pub writes: Statements,
}

/// The batch's transaction. The lease is renewed first: it fences a stale owner out, and an
/// immediate transaction holds the write lock from its start.
fn write_batch(connection: &mut Connection, batch: PlannedBatch) -> Result<(), BoxError> {
    let PlannedBatch { lease, ttl, key, last, writes } = batch;
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let expires_at = super::lease::expiry(ttl);
    if execute_numbered(&tx, RENEW, &[&lease.name, &lease.token, &expires_at])? == 0 {
        return Err(LeaseLost(lease.name).into());
    }
    let now = super::checkpoint::now();
    execute_numbered(&tx, ADVANCE, &[&key, &last.transaction_id, &last.position, &now])?;
    writes.flush_sqlite(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Runs `sql`, written with numbered parameters (`$1`, `$2`, … as on PostgreSQL), with `params`.
fn execute_numbered(tx: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> rusqlite::Result<usize> {
    let mut statement = tx.prepare_cached(sql)?;
    bind_numbered(&mut statement, params)?;
    statement.raw_execute()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_connection_syncs_as_the_read_side_and_keeps_statement_journals_in_memory() {
        let path = std::env::temp_dir().join(format!("storming-batches-{}.db", std::process::id()));
        Connection::open(&path).unwrap();
        let connection = SqliteBatches::new(&path, Duration::from_secs(1)).open().unwrap();
        let pragma = |name: &str| -> i64 { connection.pragma_query_value(None, name, |row| row.get(0)).unwrap() };
        assert_eq!(pragma("synchronous"), 1, "NORMAL");
        assert_eq!(pragma("temp_store"), 2, "MEMORY");
        drop(connection);
        std::fs::remove_file(&path).unwrap();
    }
}
