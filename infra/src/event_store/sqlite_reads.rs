//! On SQLite, the store is read in place: on connections of the process's own (rusqlite, the same
//! SQLite library sqlx links). A command reads its aggregate's new events on the thread that
//! serves the request (ADR 23); the global log's lists of events are stepped the same way, a short
//! one on the caller's thread and a long one on a blocking thread (ADR 29).
//!
//! Through sqlx the read was a message to the connection's thread and its rows a message back, and
//! each row was copied into an `Any` row before it was decoded: two thread hand-offs per command,
//! for a read of a few pages that the operating system already holds. In WAL mode a reader never
//! waits for the writer, so the read holds the thread only for its own pages (the queries have
//! read this way since ADR 19).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use rusqlite::{ffi, Connection, OpenFlags};

use super::TAIL;

/// The connections the store is read on in place, kept between uses. A connection is a file
/// handle: it cannot go stale, and one is opened whenever none is free. At most as many are in use
/// as threads read at once.
#[derive(Debug)]
pub struct SqliteStoreReads {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    /// Set by [`SqliteStoreReads::close`]: every read after it fails, as a closed pool's do.
    closed: AtomicBool,
}

impl SqliteStoreReads {
    /// Reads of the database file at `path`, which must exist (migrated, in WAL mode). A read waits
    /// up to `busy_timeout` only while another connection recovers the WAL after a crash.
    pub fn new(path: impl Into<PathBuf>, busy_timeout: Duration) -> Self {
        Self { path: path.into(), busy_timeout, idle: Mutex::new(Vec::new()), closed: AtomicBool::new(false) }
    }

    /// The events of stream (`aggregate_type`, `aggregate_id`) stored after `sequence`, in order,
    /// as cqrs-es reads them.
    pub fn events_after(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.with_connection(|connection| read(connection, aggregate_type, aggregate_id, sequence)).map_err(unknown)?
    }

    /// What `read` finds on a connection of its own (an idle one, else a new one), which is kept for
    /// the next read afterwards. A failed read leaves nothing behind: each read is its own
    /// transaction, ended when its statement is reset. The error is opening a connection's, or
    /// that the reads are closed.
    pub fn with_connection<T>(&self, read: impl FnOnce(&Connection) -> T) -> rusqlite::Result<T> {
        if self.closed.load(Ordering::Acquire) {
            let misuse = ffi::Error::new(ffi::SQLITE_MISUSE);
            return Err(rusqlite::Error::SqliteFailure(misuse, Some("the database's reads are closed".into())));
        }
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let found = read(&connection);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.closed.load(Ordering::Acquire) {
            idle.push(connection);
        }
        Ok(found)
    }

    /// Closes the idle connections (on shutdown); a read after it fails, and a read under way
    /// finishes and closes its connection.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        // Read-write without create, then query-only: a read-only connection cannot recover a WAL
        // file left by a crash, and this one never writes either way.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(self.busy_timeout)?;
        connection.pragma_update(None, "query_only", true)?;
        Ok(connection)
    }
}

/// The stream's rows after `sequence`. `TAIL`'s `$1`, `$2`, `$3` appear in that order, which is
/// the order SQLite numbers them in, so they are bound by position.
fn read(
    connection: &Connection,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: usize,
) -> Result<Vec<SerializedEvent>, PersistenceError> {
    let mut statement = connection.prepare_cached(TAIL).map_err(unknown)?;
    let sequence = i64::try_from(sequence).map_err(|error| PersistenceError::UnknownError(Box::new(error)))?;
    let rows = statement
        .query_map((aggregate_type, aggregate_id, sequence), |row| {
            Ok((
                row.get::<_, String>("aggregate_type")?,
                row.get::<_, String>("aggregate_id")?,
                row.get::<_, i64>("sequence")?,
                row.get::<_, String>("event_type")?,
                row.get::<_, String>("event_version")?,
                row.get::<_, String>("payload")?,
                row.get::<_, String>("metadata")?,
            ))
        })
        .map_err(unknown)?;
    let mut events = Vec::new();
    for row in rows {
        let (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) =
            row.map_err(unknown)?;
        let json = |text: &str| {
            serde_json::from_str(text).map_err(|error| PersistenceError::DeserializationError(Box::new(error)))
        };
        events.push(SerializedEvent::new(
            aggregate_id,
            sequence as usize,
            aggregate_type,
            event_type,
            event_version,
            json(&payload)?,
            json(&metadata)?,
        ));
    }
    Ok(events)
}

fn unknown(error: rusqlite::Error) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(error))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::event_store::sqlite_writer::tests::{event, rendered, File};
    use crate::event_store::SqliteWriter;

    #[tokio::test]
    async fn it_should_read_a_streams_events_after_a_sequence_in_order_as_stored() {
        let (file, _database) = File::migrated("stream-reads").await;
        let writer = Arc::new(SqliteWriter::new(&file.0, Duration::from_secs(1)));
        let mut odd = event("a", 3);
        odd.payload = json!({"text": "é \"quoted\" \\ \u{1F4DA}", "big": 12345678901234567_i64, "list": [1, null]});
        odd.metadata = json!({"correlation_id": "c-1"});
        let appends = vec![vec![event("a", 1), event("a", 2)], vec![event("b", 1)], vec![odd.clone()]];
        writer.store(rendered(appends)).await.unwrap();

        let reads = SqliteStoreReads::new(&file.0, Duration::from_secs(1));
        let after_one = reads.events_after("Test", "a", 1).unwrap();
        let read: Vec<(String, usize, serde_json::Value)> =
            after_one.iter().map(|event| (event.aggregate_id.clone(), event.sequence, event.payload.clone())).collect();
        assert_eq!(read, [("a".to_string(), 2, json!({"n": 2})), ("a".to_string(), 3, odd.payload.clone())]);
        let last = &after_one[1];
        assert_eq!(
            (last.aggregate_type.as_str(), last.event_type.as_str(), last.event_version.as_str(), &last.metadata),
            ("Test", "Happened", "1", &odd.metadata)
        );
        assert!(reads.events_after("Test", "a", 3).unwrap().is_empty(), "nothing after the last");
        assert!(reads.events_after("Other", "a", 0).unwrap().is_empty(), "another type's stream");
        assert_eq!(reads.idle.lock().unwrap().len(), 1, "one connection, given back after each read");
    }

    #[tokio::test]
    async fn it_should_never_write() {
        let (file, _database) = File::migrated("stream-reads-query-only").await;
        let reads = SqliteStoreReads::new(&file.0, Duration::from_secs(1));
        reads.events_after("Test", "a", 0).unwrap();
        let connection = reads.idle.lock().unwrap().pop().unwrap();
        let refused = connection.execute("DELETE FROM events", []);
        assert!(refused.is_err(), "a stream read's connection is query-only");
    }

    #[tokio::test]
    async fn it_should_refuse_every_read_once_closed() {
        let (file, _database) = File::migrated("stream-reads-closed").await;
        let reads = SqliteStoreReads::new(&file.0, Duration::from_secs(1));
        reads.events_after("Test", "a", 0).unwrap();
        reads.close();
        assert_eq!(reads.idle.lock().unwrap().len(), 0, "the idle connection is closed");
        assert!(reads.events_after("Test", "a", 0).is_err(), "no connection is opened again");
        let during = reads.with_connection(|_| ());
        assert!(during.is_err(), "nor lent");
    }
}
