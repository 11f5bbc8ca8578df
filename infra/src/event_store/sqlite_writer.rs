//! SQLite's appends, on a connection of the process's own (ADR 21).
//!
//! sqlx runs every SQLite connection on a thread of its own, and each statement is a message to
//! that thread and an answer back: a group of appends was `BEGIN`, a statement per append (a
//! `SAVEPOINT`, its statements and a `RELEASE` for one of several events or with a key) and
//! `COMMIT`, each two hand-offs between threads. Here a group runs whole on a plain connection
//! (rusqlite, the same SQLite library sqlx links), on one of tokio's blocking threads, which
//! answers once; that thread goes on with the groups that queued meanwhile (the group commit's
//! turn, ADR 38). The commit's `fsync` happens there, not on a thread that serves requests.
//!
//! The connection is used by one turn at a time (see [`super::GroupCommit`]), opened on first
//! use, and closed after any failure other than a conflict, so that the next group starts on a
//! fresh one.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::{idempotency_key, Answer, Rendered, COMPLETE_KEY, INSERT_EVENT_SQLITE};

/// The appends' connection to one SQLite file.
#[derive(Debug)]
pub struct SqliteWriter {
    path: PathBuf,
    busy_timeout: Duration,
    connection: Mutex<Option<Connection>>,
}

/// Whether a store waits for another connection's write lock (up to the busy timeout).
#[derive(Debug, Clone, Copy)]
enum Wait {
    ForTheLock,
    Not,
}

impl SqliteWriter {
    /// Appends to the database file at `path`, which must exist (migrated, in WAL mode). A write
    /// of another process waits up to `busy_timeout` for SQLite's lock.
    pub fn new(path: impl Into<PathBuf>, busy_timeout: Duration) -> Self {
        Self { path: path.into(), busy_timeout, connection: Mutex::new(None) }
    }

    /// [`SqliteWriter::store_now`] on a blocking thread.
    #[cfg(test)]
    pub async fn store(self: &std::sync::Arc<Self>, appends: Vec<Rendered>) -> Result<Vec<Answer>, PersistenceError> {
        let writer = self.clone();
        tokio::task::spawn_blocking(move || writer.store_now(&appends))
            .await
            .map_err(|panicked| PersistenceError::UnknownError(Box::new(panicked)))?
    }

    /// Stores `appends` (each the events of one command) in one transaction, or a single event
    /// without a key as one statement, and answers each: the position of its last event, or a
    /// conflict when one of its (type, id, sequence) is stored already, which stores none of that
    /// append and all of the others. Any other failure stores none of them. Blocks the calling
    /// thread until the commit is on disk: the group commit calls it on a blocking thread.
    pub(super) fn store_now(&self, appends: &[Rendered]) -> Result<Vec<Answer>, PersistenceError> {
        self.store_waiting(appends, Wait::ForTheLock).map_err(unknown)
    }

    /// As [`SqliteWriter::store_now`], but never sleeps in SQLite's busy handler: `None`, with
    /// nothing stored, when another connection (another process's) holds the file's write lock
    /// or took it since this one's snapshot. For a thread that serves requests (ADR 41).
    pub(super) fn store_unless_busy(&self, appends: &[Rendered]) -> Option<Result<Vec<Answer>, PersistenceError>> {
        match self.store_waiting(appends, Wait::Not) {
            Err(error) if is_busy(&error) => None,
            stored => Some(stored.map_err(unknown)),
        }
    }

    fn store_waiting(&self, appends: &[Rendered], wait: Wait) -> rusqlite::Result<Vec<Answer>> {
        let mut slot = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
        let connection = match &mut *slot {
            Some(connection) => connection,
            empty => empty.insert(self.open()?),
        };
        let stored = match wait {
            Wait::ForTheLock => store_appends(connection, appends),
            Wait::Not => {
                let stored = connection.busy_timeout(Duration::ZERO).and_then(|()| store_appends(connection, appends));
                if connection.busy_timeout(self.busy_timeout).is_err() {
                    // It would not wait for the lock on the writer's thread either: not kept.
                    *slot = None;
                    return stored;
                }
                stored
            }
        };
        if stored.is_err() {
            *slot = None;
        }
        stored
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        open_append_connection(&self.path, self.busy_timeout)
    }
}

/// A connection to the SQLite file at `path` set as the appends' own (the harness's direct
/// ceiling opens its connections with it too).
pub fn open_append_connection(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    connection.busy_timeout(busy_timeout)?;
    // As every write-side connection: an acknowledged command survives a power loss.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(connection)
}

/// See [`SqliteWriter::store_now`]. `Err` only for a failure that is not a conflict.
fn store_appends(connection: &mut Connection, appends: &[Rendered]) -> rusqlite::Result<Vec<Answer>> {
    if let [append] = appends {
        if let ([event], [json], None) = (&append.events[..], &append.json[..], idempotency_key(&append.events)) {
            // One statement, its own transaction.
            return Ok(vec![answer(insert(connection, event, json))?]);
        }
    }
    let mut tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(appends.len());
    for append in appends {
        let stored = match (&append.events[..], &append.json[..], idempotency_key(&append.events)) {
            // SQLite backs out only the failing statement.
            ([event], [json], None) => insert(&tx, event, json),
            (.., key) => {
                // Dropped without `commit`, the savepoint rolls its statements back.
                let savepoint = tx.savepoint()?;
                let stored = append_in(&savepoint, append, key);
                if stored.is_ok() {
                    savepoint.commit()?;
                }
                stored
            }
        };
        answers.push(answer(stored)?);
    }
    tx.commit()?;
    Ok(answers)
}

/// Every event of one append, then its key's completion; the last event's position.
fn append_in(connection: &Connection, append: &Rendered, key: Option<(&str, &str)>) -> rusqlite::Result<i64> {
    let mut position = None;
    for (event, json) in append.events.iter().zip(append.json.iter()) {
        position = Some(insert(connection, event, json)?);
    }
    let position = position.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    if let Some((caller, key)) = key {
        // Its parameters appear in the order of their numbers, as SQLite numbers them.
        connection.prepare_cached(COMPLETE_KEY)?.execute(params![position, caller, key])?;
    }
    Ok(position)
}

/// One event; the global position it got, its row id. The statement runs to its end: outside a
/// transaction SQLite commits it there, and a failed commit is reported there.
/// `json` is the event's payload and metadata as JSON text, as sqlx stores them.
fn insert(
    connection: &Connection,
    event: &SerializedEvent,
    (payload, metadata): &(String, String),
) -> rusqlite::Result<i64> {
    connection.prepare_cached(INSERT_EVENT_SQLITE)?.insert(params![
        event.aggregate_type,
        event.aggregate_id,
        event.sequence as i64,
        event.event_type,
        event.event_version,
        payload,
        metadata,
    ])
}

/// A stored (type, id, sequence) is an answer, a conflict; any other failure is not.
fn answer(stored: rusqlite::Result<i64>) -> rusqlite::Result<Answer> {
    match stored {
        Ok(position) => Ok(Ok(position)),
        Err(error) if is_unique_violation(&error) => Ok(Err(PersistenceError::OptimisticLockError)),
        Err(error) => Err(error),
    }
}

/// Another connection holds the write lock, or committed since this one's read snapshot began.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _) if failure.code == ErrorCode::DatabaseBusy)
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == ErrorCode::ConstraintViolation
                && matches!(
                    failure.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
    )
}

fn unknown(error: rusqlite::Error) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(error))
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::db::{Database, DbError};

    /// A migrated database in a file of its own, removed with its WAL when dropped.
    pub(in crate::event_store) struct File(pub(in crate::event_store) PathBuf);

    impl File {
        pub(in crate::event_store) async fn migrated(name: &str) -> (Self, Database) {
            let path = std::env::temp_dir().join(format!("storming-writer-{name}-{}.db", std::process::id()));
            let file = Self(path);
            file.remove();
            let database = Database::connect(&format!("sqlite://{}", file.0.display()), 2).await.unwrap();
            (file, database)
        }

        fn remove(&self) {
            for file in [self.0.clone(), crate::db::views_file_beside(&self.0)] {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
                }
            }
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            self.remove();
        }
    }

    pub(in crate::event_store) fn event(stream: &str, sequence: usize) -> SerializedEvent {
        SerializedEvent::new(
            stream.to_string(),
            sequence,
            "Test".to_string(),
            "Happened".to_string(),
            "1".to_string(),
            json!({ "n": sequence }),
            json!({}),
        )
    }

    pub(in crate::event_store) fn rendered(appends: Vec<Vec<SerializedEvent>>) -> Vec<Rendered> {
        appends.into_iter().map(|events| Rendered::new(events.into())).collect()
    }

    async fn stored(database: &Database) -> Vec<(String, i64, i64, String)> {
        let crate::db::StorePool::Sqlite(pool) = &database.store else { unreachable!() };
        sqlx::query_as("SELECT aggregate_id, sequence, position, payload FROM events ORDER BY position")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn it_should_store_a_group_in_order_and_refuse_only_the_appends_that_conflict() {
        let (file, database) = File::migrated("group").await;
        let writer = Arc::new(SqliteWriter::new(&file.0, Duration::from_secs(1)));
        writer.store(rendered(vec![vec![event("a", 1)]])).await.unwrap();

        let appends = vec![
            vec![event("b", 1), event("b", 2)],
            vec![event("a", 1)],                // stored already: a conflict
            vec![event("c", 1), event("a", 1)], // refused in part: none of it stored
            vec![event("d", 1)],
        ];
        let answers = writer.store(rendered(appends)).await.unwrap();

        assert!(
            matches!(
                answers[..],
                [Ok(3), Err(PersistenceError::OptimisticLockError), Err(PersistenceError::OptimisticLockError), Ok(4)]
            ),
            "{answers:?}"
        );
        let rows = stored(&database).await;
        let streams: Vec<(&str, i64, i64)> =
            rows.iter().map(|(id, sequence, position, _)| (id.as_str(), *sequence, *position)).collect();
        assert_eq!(streams, [("a", 1, 1), ("b", 1, 2), ("b", 2, 3), ("d", 1, 4)]);
        assert_eq!(rows[1].3, r#"{"n":1}"#, "the payload is stored as JSON text, as sqlx stores it");
    }

    #[tokio::test]
    async fn it_should_commit_with_a_full_sync_and_drop_its_connection_after_a_failure() {
        let (file, database) = File::migrated("failure").await;
        let writer = Arc::new(SqliteWriter::new(&file.0, Duration::from_secs(1)));
        writer.store(rendered(vec![vec![event("a", 1)]])).await.unwrap();
        {
            let slot = writer.connection.lock().unwrap();
            let synchronous: i64 =
                slot.as_ref().unwrap().pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap();
            // FULL is also this build's default; the pragma keeps it so whatever the build says.
            assert_eq!(synchronous, 2, "FULL: an acknowledged append survives a power loss");
        }

        // A sequence stored as -1 breaks the table's CHECK: not a conflict, the whole group fails.
        let failed = writer.store(rendered(vec![vec![event("b", 1)], vec![event("c", usize::MAX)]])).await;
        assert!(matches!(failed, Err(PersistenceError::UnknownError(_))), "{failed:?}");
        assert!(writer.connection.lock().unwrap().is_none(), "not trusted after a failure");

        assert_eq!(writer.store(rendered(vec![vec![event("d", 1)]])).await.unwrap()[0].as_ref().unwrap(), &2);
        let ids: Vec<String> = stored(&database).await.into_iter().map(|(id, ..)| id).collect();
        assert_eq!(ids, ["a", "d"]);
    }

    #[tokio::test]
    async fn it_should_refuse_a_sqlite_database_that_is_not_a_file() {
        let refused = Database::connect("sqlite::memory:", 2).await;
        assert!(matches!(refused, Err(DbError::SqliteNotAFile(_))), "{:?}", refused.err());
    }
}
