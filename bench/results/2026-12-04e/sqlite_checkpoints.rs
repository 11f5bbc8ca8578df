//! SQLite's checkpoints, off the commands' commits (ADR 25).
//!
//! In WAL mode a commit appends the pages it changed to the `-wal` file; a checkpoint copies them
//! back into the database file, syncs that file, and lets the next writer start the WAL over. By
//! default the connection whose commit takes the WAL past 1,000 pages runs the checkpoint inside
//! that commit. On the appends' connection that is a group commit holding the write gate, and
//! every command queued behind it waits for the copy and the file's sync (2–4 ms on the bench
//! machine, about 20 times a second at 16 clients).
//!
//! Here the appends' connection does not checkpoint. Its commits report the WAL's length (SQLite's
//! WAL hook), and once [`CHECKPOINT_AFTER`] pages have gathered since the last checkpoint a task of
//! its own checkpoints, on a connection of its own, in two passes:
//! - the bulk, outside the gate: a passive checkpoint copies what the WAL holds and syncs the file
//!   while commands go on appending;
//! - the tail, under the gate: a second passive checkpoint copies the few pages committed during
//!   the first. With no writer of this process in between, the WAL is then copied whole, and the
//!   next writer starts it over. (A WAL that is never copied whole is never started over: it grows,
//!   and every commit's sync with it. ADR 13's first try.)
//!
//! The other connections (the views' batches, the workers' transactions through sqlx, another
//! process's) keep SQLite's own checkpoint at 1,000 pages: while commands run this task gets there
//! first; without them (a rebuild) they checkpoint as before.

use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{ffi, Connection, OpenFlags};
use tokio::sync::mpsc;

use crate::db::WriteGate;

/// WAL pages gathered since the last checkpoint that start the next one; below SQLite's own 1,000,
/// so that the other connections' commits seldom checkpoint under the gate.
pub const CHECKPOINT_AFTER: i64 = 2000;

/// The checkpoints of one SQLite file, run by a task of their own until this is dropped.
#[derive(Debug)]
pub struct SqliteCheckpoints {
    due: mpsc::Sender<()>,
    /// The WAL pages the last pass left copied.
    copied: Arc<AtomicI64>,
    passes: Arc<AtomicI64>,
}

impl SqliteCheckpoints {
    /// Starts the task (on the current tokio runtime) that checkpoints the file at `path`, taking
    /// the process's write `gate` for each tail pass.
    pub fn start(path: impl Into<PathBuf>, gate: WriteGate, busy_timeout: Duration) -> Arc<Self> {
        let (due, wanted) = mpsc::channel(1);
        let (copied, passes) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
        let checkpointer = Checkpointer {
            path: path.into(),
            busy_timeout,
            gate,
            copied: copied.clone(),
            passes: passes.clone(),
            connection: Arc::new(Mutex::new(None)),
        };
        drop(tokio::spawn(checkpointer.run(wanted)));
        Arc::new(Self { due, copied, passes })
    }

    /// `connection`, whose commits no longer checkpoint but start this task's checkpoints when
    /// the WAL has grown enough.
    pub fn watch(&self, connection: Connection) -> Watched {
        let hook = Box::new(Hook { due: self.due.clone(), copied: self.copied.clone() });
        let arg = &*hook as *const Hook as *mut c_void;
        // SAFETY: `arg` points to the boxed hook, which `Watched` keeps, unmoved, until after the
        // connection is closed (its fields drop in order). Setting a WAL hook also turns off the
        // connection's own checkpoints on commit, as intended.
        unsafe { ffi::sqlite3_wal_hook(connection.handle(), Some(on_commit), arg) };
        Watched { connection, _hook: hook }
    }

    /// How many checkpoint passes this task has run (for tests).
    pub fn passes(&self) -> i64 {
        self.passes.load(Ordering::Relaxed)
    }
}

/// A connection whose commits report the WAL's length to [`SqliteCheckpoints`].
pub struct Watched {
    // Closed before the hook it points to is freed: fields drop in declaration order.
    connection: Connection,
    _hook: Box<Hook>,
}

impl std::ops::Deref for Watched {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl std::ops::DerefMut for Watched {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").finish_non_exhaustive()
    }
}

struct Hook {
    due: mpsc::Sender<()>,
    copied: Arc<AtomicI64>,
}

impl Hook {
    /// A commit left `pages` in the WAL. Never blocks and never panics: it runs inside SQLite.
    fn committed(&self, pages: i64) {
        let copied = self.copied.load(Ordering::Relaxed);
        // Fewer pages than were copied: the WAL has started over since.
        let gathered = if pages >= copied { pages - copied } else { pages };
        if gathered >= CHECKPOINT_AFTER {
            // Full: a checkpoint is asked for already.
            let _ = self.due.try_send(());
        }
    }
}

unsafe extern "C" fn on_commit(arg: *mut c_void, _db: *mut ffi::sqlite3, _name: *const c_char, pages: c_int) -> c_int {
    // SAFETY: `arg` is the `Hook` that `SqliteCheckpoints::watch` boxed, alive while the
    // connection is open.
    let hook = unsafe { &*(arg as *const Hook) };
    hook.committed(i64::from(pages));
    ffi::SQLITE_OK
}

struct Checkpointer {
    path: PathBuf,
    busy_timeout: Duration,
    gate: WriteGate,
    copied: Arc<AtomicI64>,
    passes: Arc<AtomicI64>,
    connection: Arc<Mutex<Option<Connection>>>,
}

/// What a passive checkpoint did: `None` when another connection was checkpointing.
type Pass = Result<Option<i64>, Box<dyn std::error::Error + Send + Sync>>;

impl Checkpointer {
    async fn run(self, mut wanted: mpsc::Receiver<()>) {
        // Ends when the `SqliteCheckpoints` and every watched connection are gone.
        while wanted.recv().await.is_some() {
            let passed = match self.pass().await {
                // Another connection is checkpointing: its commit will do.
                Ok(None) => Ok(None),
                Ok(Some(_)) => {
                    let _turn = self.gate.lock().await;
                    self.pass().await
                }
                failed => failed,
            };
            match passed {
                Ok(Some(copied)) => self.copied.store(copied, Ordering::Relaxed),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "a SQLite checkpoint failed; the next commit asks again");
                    *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
            }
        }
    }

    /// One passive checkpoint, on a blocking thread: the WAL pages it left copied.
    async fn pass(&self) -> Pass {
        let (connection, path, busy_timeout) = (self.connection.clone(), self.path.clone(), self.busy_timeout);
        self.passes.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let mut slot = connection.lock().unwrap_or_else(PoisonError::into_inner);
            let connection = match &mut *slot {
                Some(connection) => connection,
                empty => empty.insert(open(&path, busy_timeout)?),
            };
            Ok(checkpoint(connection)?)
        })
        .await
        .unwrap_or_else(|panicked| Err(panicked.into()))
    }
}

fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    connection.busy_timeout(busy_timeout)?;
    // A checkpoint syncs the WAL before it copies, and the database file after.
    connection.pragma_update(None, "synchronous", "FULL")?;
    Ok(connection)
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: copies what no reader still needs, waiting for no one.
fn checkpoint(connection: &Connection) -> rusqlite::Result<Option<i64>> {
    let (busy, _wal, copied): (i64, i64, i64) =
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok((busy == 0).then_some(copied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_store::sqlite_writer::open_append_connection;
    use crate::event_store::{GroupCommit, SqliteWriter};
    use crate::event_store::sqlite_writer::tests::{event, File};

    #[tokio::test]
    async fn a_watched_connection_does_not_checkpoint_on_commit() {
        let (file, _database) = File::migrated("watched").await;
        let checkpoints = SqliteCheckpoints::start(&file.0, WriteGate::default(), Duration::from_secs(1));
        let plain = open_append_connection(&file.0, Duration::from_secs(1)).unwrap();
        let automatic = |connection: &Connection| -> i64 {
            connection.pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0)).unwrap()
        };
        assert_eq!(automatic(&plain), 1000, "SQLite's own checkpoint on commit");
        let watched = checkpoints.watch(plain);
        assert_eq!(automatic(&watched), 0, "left to the task");
    }

    #[tokio::test]
    async fn the_task_keeps_the_wal_short_under_a_stream_of_commits() {
        let (file, _database) = File::migrated("checkpoints").await;
        let gate = WriteGate::default();
        let checkpoints = SqliteCheckpoints::start(&file.0, gate.clone(), Duration::from_secs(1));
        let writer = SqliteWriter::new(&file.0, Duration::from_secs(1), checkpoints.clone());
        // The appends take the gate, as in the server: the tail pass finds no commit of theirs
        // under way, so the WAL is copied whole and the next commit starts it over. (Without the
        // gate, or without the tail, it is never copied whole while commits keep coming, and grows.)
        let appends = Arc::new(GroupCommit::sqlite(writer, gate));
        // Each commit adds a few pages (the table and its three indexes): several thresholds in all.
        let commits = 1_500;
        for n in 0..commits {
            appends.append(&[event(&format!("s{n}"), 1)]).await.unwrap();
        }
        let page = 4096;
        // The file keeps its longest length when the WAL starts over.
        let longest = std::fs::metadata(format!("{}-wal", file.0.display())).unwrap().len() / page;
        assert!(longest < 2 * CHECKPOINT_AFTER as u64, "the WAL started over: {longest} pages at its longest");
        assert!(checkpoints.passes() >= 4, "a bulk pass and a tail pass per checkpoint");
    }
}
