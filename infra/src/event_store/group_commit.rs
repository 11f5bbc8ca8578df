//! Group commit for SQLite's single writer.
//!
//! SQLite commits one transaction at a time, and each commit waits for the disk (fsync). Commands
//! that arrive while a commit is under way queue here. The next to get the write gate *leads*: it
//! takes every queued append and stores them all in one transaction, so they share one fsync and
//! one turn of the gate. Each append in a group is still all-or-nothing and still refused alone:
//! a single event is one INSERT (SQLite backs out only the failing statement on a conflict),
//! several events or a key to complete run under a savepoint. Any other failure fails the whole
//! group, and nothing of it is stored.
//!
//! A lone append (no one else waiting) is stored by its own caller, as if there were no queue. A
//! group is stored by a spawned task, so that a leader whose request is dropped (its client went
//! away) cannot leave the others without an answer, or answered wrongly.
//!
//! Appends run on one connection kept for them, taken from the pool once: a pooled checkout costs
//! sqlx a ping of the connection's thread when it is handed back, as much as a statement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use sqlx::{Acquire, SqliteConnection, SqlitePool};
use tokio::sync::{oneshot, OwnedMutexGuard};

use super::{idempotency_key, store_error, COMPLETE_KEY, INSERT_EVENT_SQLITE};
use crate::db::WriteGate;

type Answer = Result<i64, PersistenceError>;

/// The appends of one process's SQLite write side, grouped into shared commits.
#[derive(Debug)]
pub struct GroupCommit {
    pool: SqlitePool,
    gate: WriteGate,
    /// The appends' own connection, used only under the gate; opened on first use, and dropped
    /// after any failure other than a conflict so that the next append starts on a fresh one.
    writer: tokio::sync::Mutex<Option<SqliteConnection>>,
    queue: Mutex<Vec<Pending>>,
    next_id: AtomicU64,
    commits: AtomicU64,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    events: Vec<SerializedEvent>,
    reply: oneshot::Sender<Answer>,
}

impl GroupCommit {
    pub fn new(pool: SqlitePool, gate: WriteGate) -> Self {
        Self {
            pool,
            gate,
            writer: tokio::sync::Mutex::default(),
            queue: Mutex::default(),
            next_id: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    /// Stores the events of one command (completing its idempotency key, if any) and returns the
    /// global position of the last.
    pub async fn append(self: &Arc<Self>, events: &[SerializedEvent]) -> Answer {
        let (reply, mut answer) = oneshot::channel();
        let queued = Queued { group: self, id: self.next_id.fetch_add(1, Ordering::Relaxed) };
        self.queue().push(Pending { id: queued.id, events: events.to_vec(), reply });
        let turn = tokio::select! {
            biased;
            // A leader stored it while this request waited for the gate.
            stored = &mut answer => return answered(stored),
            turn = self.gate.clone().lock_owned() => turn,
        };
        let mut group = {
            let mut queue = self.queue();
            if queue.iter().any(|pending| pending.id == queued.id) {
                std::mem::take(&mut *queue)
            } else {
                Vec::new() // taken by the leader before this one, which has answered by now
            }
        };
        match group.len() {
            0 => {
                drop(turn);
                answered(answer.await)
            }
            1 => {
                drop(group.pop());
                let stored = self.store_alone(events).await;
                drop(turn);
                stored
            }
            _ => {
                tokio::spawn(self.clone().store_group(group, turn));
                answered(answer.await)
            }
        }
    }

    /// How many appends wait for the gate now.
    pub fn waiting(&self) -> usize {
        self.queue().len()
    }

    /// How many appends this process has asked for (a command's events are one).
    pub fn appends(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }

    /// How many transactions this process's appends have committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Pending>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn store_alone(&self, events: &[SerializedEvent]) -> Answer {
        let mut writer = self.writer.lock().await;
        let connection = Self::connection(&mut writer, &self.pool).await?;
        let key = idempotency_key(events);
        let stored = append!(&mut *connection, INSERT_EVENT_SQLITE, events, key);
        self.settled(&mut writer, stored)
    }

    /// Stores `group` in one transaction and answers each of its appends; holds the gate `turn`
    /// until then.
    async fn store_group(self: Arc<Self>, group: Vec<Pending>, turn: OwnedMutexGuard<()>) {
        let mut writer = self.writer.lock().await;
        let stored = self.store_together(&mut writer, &group).await;
        let answers = match self.settled(&mut writer, stored) {
            Ok(answers) => answers,
            Err(error) => {
                let detail = format!("the group commit failed: {error}");
                group.iter().map(|_| Err(PersistenceError::UnknownError(detail.clone().into()))).collect()
            }
        };
        drop(writer);
        drop(turn);
        for (pending, answer) in group.into_iter().zip(answers) {
            let _ = pending.reply.send(answer); // a caller that went away needs no answer
        }
    }

    async fn store_together(
        &self,
        writer: &mut Option<SqliteConnection>,
        group: &[Pending],
    ) -> Result<Vec<Answer>, PersistenceError> {
        let connection = Self::connection(writer, &self.pool).await?;
        let mut tx = connection.begin().await.map_err(store_error)?;
        let mut answers = Vec::with_capacity(group.len());
        for pending in group {
            let (events, key) = (&pending.events[..], idempotency_key(&pending.events));
            let answer = async { append!(&mut *tx, INSERT_EVENT_SQLITE, events, key) }.await;
            match answer {
                Ok(_) | Err(PersistenceError::OptimisticLockError) => answers.push(answer),
                // Anything else may have ended the transaction: store none of the group.
                Err(error) => return Err(error),
            }
        }
        tx.commit().await.map_err(store_error)?;
        metrics::histogram!("storming_event_store_group_size").record(group.len() as f64);
        Ok(answers)
    }

    async fn connection<'w>(
        writer: &'w mut Option<SqliteConnection>,
        pool: &SqlitePool,
    ) -> Result<&'w mut SqliteConnection, PersistenceError> {
        if writer.is_none() {
            *writer = Some(pool.acquire().await.map_err(store_error)?.detach());
        }
        Ok(writer.as_mut().expect("opened above"))
    }

    /// Counts a commit; after a failure other than a conflict, the connection is not trusted.
    fn settled<T>(
        &self,
        writer: &mut Option<SqliteConnection>,
        result: Result<T, PersistenceError>,
    ) -> Result<T, PersistenceError> {
        match &result {
            Ok(_) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(PersistenceError::OptimisticLockError) => {}
            Err(_) => *writer = None,
        }
        result
    }
}

/// An append in the queue; a request dropped while it waits leaves the queue with it.
struct Queued<'a> {
    group: &'a GroupCommit,
    id: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.group.queue().retain(|pending| pending.id != self.id);
    }
}

fn answered(stored: Result<Answer, oneshot::error::RecvError>) -> Answer {
    stored.unwrap_or_else(|_| Err(PersistenceError::UnknownError("the group commit ended without an answer".into())))
}
