//! SQLite's checkpoints, off the path of the commands and the workers.
//!
//! In WAL mode a commit appends the pages it changed to the `-wal` file; a checkpoint copies them
//! back into the database file and syncs that file. By default the connection whose commit takes
//! the WAL past 1,000 pages runs the checkpoint inside that commit: a command's group commit
//! (holding the write gate, every other command queued behind it) or a worker's batch. A catch-up
//! of `my_page` writes about a thousand pages per batch, so nearly every one of its commits also
//! copied the previous batch's pages, and the pages it changes again in the next batch were
//! copied again and again.
//!
//! Here no connection of the process checkpoints on commit (`wal_autocheckpoint = 0`); one task
//! with its own connection runs a *passive* checkpoint every [`CHECKPOINT_EVERY`]. A passive
//! checkpoint never waits for a writer or a reader: it copies what no reader still needs, and the
//! rest at its next pass. A page changed many times between two passes is copied once. When the
//! last connection to the database closes, SQLite checkpoints what is left itself; an unclean
//! stop leaves the WAL to the next start, which reads it as before (durability is the WAL's
//! sync at each command's commit, not the checkpoint's).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection, SqlitePool};

/// How often the task copies the WAL into the database file. At 3,000 commands a second and a
/// few pages each, the WAL holds about as much between two passes as SQLite's default (1,000
/// pages) lets it hold before a commit checkpoints.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The pragma every connection of a process with a [`Checkpointer`] runs: none checkpoints on commit.
pub const NO_CHECKPOINT_ON_COMMIT: &str = "PRAGMA wal_autocheckpoint = 0;";

/// What the last pass found, for operators and tests.
#[derive(Debug, Default)]
pub struct Checkpointer {
    /// Frames in the WAL at the last pass (`-1` before the first pass).
    wal_frames: AtomicI64,
    /// Of those, frames copied into the database file.
    copied_frames: AtomicI64,
}

impl Checkpointer {
    /// Opens the task's connection and starts it; the task ends once `store` is closed.
    pub async fn start(options: &SqliteConnectOptions, store: SqlitePool) -> Result<Arc<Self>, sqlx::Error> {
        let mut connection = SqliteConnection::connect_with(options).await?;
        let state = Arc::new(Self { wal_frames: AtomicI64::new(-1), copied_frames: AtomicI64::new(-1) });
        let shared = state.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !store.is_closed() {
                ticks.tick().await;
                let pass = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)");
                match pass.fetch_one(&mut connection).await {
                    Ok((_, wal_frames, copied_frames)) => {
                        shared.wal_frames.store(wal_frames, Ordering::Relaxed);
                        shared.copied_frames.store(copied_frames, Ordering::Relaxed);
                    }
                    Err(error) => tracing::warn!(%error, "a WAL checkpoint failed; the next pass tries again"),
                }
            }
            let _ = connection.close().await;
        });
        Ok(state)
    }

    /// `(frames in the WAL, frames copied)` at the last pass; `None` before the first.
    pub fn last_pass(&self) -> Option<(i64, i64)> {
        let wal_frames = self.wal_frames.load(Ordering::Relaxed);
        (wal_frames >= 0).then(|| (wal_frames, self.copied_frames.load(Ordering::Relaxed)))
    }
}
