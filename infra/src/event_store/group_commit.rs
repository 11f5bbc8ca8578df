//! Group commit: the appends of concurrent commands share a transaction.
//!
//! Every commit waits for the disk (fsync), and on PostgreSQL a transaction costs the database
//! CPU of its own beside its statements. Appends that arrive while a group is being stored queue
//! here, and are stored together as the next group, in one transaction, so they share one commit.
//! Each append in a group is still all-or-nothing and still refused alone (a stored sequence is a
//! conflict for that append only). Any other failure fails the whole group, and nothing of it is
//! stored.
//!
//! The writer's turn is one at a time on both backends. A request whose append is queued takes
//! the turn if nobody holds it, and whoever holds it keeps it while appends queue: once a group is
//! answered, it takes the appends that queued meanwhile and stores them as the next group, and
//! gives the turn up only when the queue is empty. Under load the writer goes from one commit to
//! the next without waking a request task to lead each group, which had to wait for a runtime
//! thread busy with other requests first (ADR 38).
//! - SQLite has a single writer anyway: the turn is the log's write gate. A group runs one
//!   statement per append on the appends' own connection (SQLite backs out only the failing
//!   statement on a conflict; several events or a key to complete run under a savepoint), and
//!   the turn's groups one after the other on a blocking thread ([`SqliteWriter`], ADR 21).
//! - PostgreSQL takes writers side by side, but a group is one multi-row INSERT (`UNNEST`,
//!   `ON CONFLICT DO NOTHING`, so a conflict refuses its rows without failing the statement) on
//!   one of the commands' kept connections: a statement of its own when every append is one
//!   event without a key, else in a transaction with what follows. Two or four groups at once
//!   were no faster than one (ADR 15). A group holds one append per stream (the others wait for
//!   the next), except that a single event under the key of a single event already in the group
//!   is answered as a conflict with it, unsent. Its rows go in in key order, so two processes'
//!   groups never wait on each other in a cycle. Of an append some of whose events were
//!   refused, the others are deleted again before the commit.
//!
//! A lone append (no one else waiting) is one statement, its own transaction; on PostgreSQL its
//! own caller stores it, as if there were no queue. Groups are stored by a spawned task (a
//! blocking one on SQLite), so that a leader whose request is dropped (its client went away)
//! cannot leave the others without an answer, or answered wrongly. On SQLite, when the process's
//! requests come one at a time (one caller, [`Callers`]) and the group is the request's own, its
//! thread stores it instead, without the two wake-ups of the hand-off: nothing could queue
//! behind it meanwhile (ADR 41). It does not wait for another process's write lock there; a
//! group that would is handed to the blocking thread after all.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::{Acquire, PgConnection, Postgres};
use tokio::sync::{oneshot, OwnedMutexGuard};

use super::sqlite_writer::SqliteWriter;
use super::{idempotency_key, store_error, Answer, Rendered, COMPLETE_KEY, INSERT_EVENT_POSTGRES};
use crate::callers::Callers;
use crate::db::WriteGate;
use crate::kept::KeptConnections;

/// The appends of one process's write side, grouped into shared commits.
#[derive(Debug)]
pub struct GroupCommit {
    writer: Writer,
    /// The writer's turn: SQLite's write gate of the log's file (ADR 32), or PostgreSQL's own.
    gate: WriteGate,
    queue: Mutex<Vec<Pending>>,
    next_id: AtomicU64,
    commits: AtomicU64,
    turns: AtomicU64,
    /// Turns whose group the request's own thread stored (ADR 41).
    on_request: AtomicU64,
}

#[derive(Debug)]
enum Writer {
    /// The appends' own connection, used only under the gate (ADR 21), and what tells whether
    /// the requests come one at a time (ADR 41).
    Sqlite(Arc<SqliteWriter>, Arc<Callers>),
    /// The commands' kept connections; one that failed goes back through sqlx's pool.
    Postgres(Arc<KeptConnections<Postgres>>),
}

#[derive(Debug)]
struct Pending {
    id: u64,
    /// Its events, shared with the caller (not copied), and their JSON as text (ADR 36).
    append: Rendered,
    reply: oneshot::Sender<Answer>,
    /// PostgreSQL: a single event under the (type, id, sequence) of a single event earlier in its
    /// group. Whatever that one meets (stored, or refused by a stored row), this one is a
    /// conflict, so it is answered with the group and never sent.
    doomed: bool,
    /// The append ahead of this one in its chain ([`GroupCommit::append_chain`]): this one never
    /// goes in a group before that one's.
    after: Option<u64>,
}

impl GroupCommit {
    /// SQLite's appends, by `writer`, under the process's write `gate`; on the request's own
    /// thread while `callers` come one at a time.
    pub fn sqlite(writer: SqliteWriter, gate: WriteGate, callers: Arc<Callers>) -> Self {
        Self::new(Writer::Sqlite(Arc::new(writer), callers), gate)
    }

    /// PostgreSQL's appends, on the commands' `kept` connections.
    pub fn postgres(kept: Arc<KeptConnections<Postgres>>) -> Self {
        Self::new(Writer::Postgres(kept), WriteGate::default())
    }

    fn new(writer: Writer, gate: WriteGate) -> Self {
        Self {
            writer,
            gate,
            queue: Mutex::default(),
            next_id: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            turns: AtomicU64::new(0),
            on_request: AtomicU64::new(0),
        }
    }

    /// Stores the events of one command (completing its idempotency key, if any) and returns the
    /// global position of the last.
    pub async fn append(self: &Arc<Self>, events: &[SerializedEvent]) -> Answer {
        let mut answers = self.append_chain(&[events.into()]).await;
        answers.pop().expect("one answer per append")
    }

    /// Stores several appends, each decided alone as [`GroupCommit::append`] decides one, such
    /// that none is committed before the ones ahead of it in `chain`: they go in one group, or
    /// the earlier ones in an earlier group (a rent's payment before its rental, ADR 18). Answers
    /// in `chain`'s order.
    pub async fn append_chain(self: &Arc<Self>, chain: &[Arc<[SerializedEvent]>]) -> Vec<Answer> {
        let first = self.next_id.fetch_add(chain.len() as u64, Ordering::Relaxed);
        let queued = Queued { group: self, ids: first..first + chain.len() as u64 };
        let mut waiting = Vec::with_capacity(chain.len());
        // Rendered here, on the command's own task: not in the writer's turn, nor under the queue's lock.
        let rendered: Vec<_> = chain.iter().map(|events| Rendered::new(events.clone())).collect();
        {
            let mut queue = self.queue();
            for (id, append) in queued.ids.clone().zip(rendered) {
                let (reply, answer) = oneshot::channel();
                let after = (id > first).then(|| id - 1);
                queue.push(Pending { id, append, reply, doomed: false, after });
                waiting.push(answer);
            }
        }
        let mut answers = Vec::with_capacity(chain.len());
        while answers.len() < chain.len() {
            let next = &mut waiting[answers.len()];
            let turn = tokio::select! {
                biased;
                // A leader stored it while this request waited for the turn.
                stored = next => {
                    answers.push(answered(stored));
                    continue;
                }
                turn = self.gate.clone().lock_owned() => turn,
            };
            let mut group = self.take();
            if group.is_empty() {
                // Taken by a leader before this one, which answers them.
                continue;
            }
            self.turns.fetch_add(1, Ordering::Relaxed);
            let ours = group.iter().all(|pending| queued.ids.contains(&pending.id));
            let kept = match &self.writer {
                Writer::Sqlite(writer, callers) => {
                    let group =
                        if ours && callers.one_at_a_time() { self.store_on_this_thread(writer, group) } else { group };
                    if group.is_empty() {
                        drop(turn);
                        continue;
                    }
                    // This group, and each group that queues while one is stored, on one blocking
                    // thread.
                    let (group_commit, writer) = (self.clone(), writer.clone());
                    drop(tokio::task::spawn_blocking(move || group_commit.drain_sqlite(&writer, group, turn)));
                    continue;
                }
                Writer::Postgres(kept) => kept.clone(),
            };
            if ours && group.len() == 1 {
                // Alone: stored by its own caller, as if there were no queue; whatever queued
                // meanwhile goes on in the same turn.
                let Pending { append, reply, .. } = group.pop().expect("one");
                let stored = self.store_alone(&kept, append).await;
                let more = self.take();
                if more.is_empty() {
                    drop(turn);
                } else {
                    drop(tokio::spawn(self.clone().drain_postgres(kept, more, turn)));
                }
                let _ = reply.send(stored);
            } else {
                drop(tokio::spawn(self.clone().drain_postgres(kept, group, turn)));
            }
        }
        answers
    }

    /// Holds the writer's turn until the guard is dropped: appends queue behind it (for tests).
    pub async fn hold(&self) -> OwnedMutexGuard<()> {
        self.gate.clone().lock_owned().await
    }

    /// How many appends wait for the turn now.
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

    /// How many times a request took the writer's turn and found appends to store. One turn
    /// stores every group that queues before the queue is empty (ADR 38).
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }

    /// How many turns' groups were stored on their request's own thread (ADR 41).
    pub fn stored_on_request(&self) -> u64 {
        self.on_request.load(Ordering::Relaxed)
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Pending>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next group: the whole queue on SQLite. On PostgreSQL the appends none of whose streams
    /// an earlier append in the queue writes to (so a key is inserted at most once per statement,
    /// and each append's rows are its own), with the doomed ones (see [`Pending::doomed`]: under
    /// contention most appends race for one sequence, and each would otherwise cost a group of
    /// its own); the others stay queued in order.
    fn take(&self) -> Vec<Pending> {
        let mut queue = self.queue();
        if let Writer::Sqlite { .. } = self.writer {
            return std::mem::take(&mut *queue);
        }
        let (mut streams, mut keys, mut deferred) = (HashSet::new(), HashSet::new(), HashSet::new());
        let (mut group, mut later) = (Vec::new(), Vec::new());
        for mut pending in std::mem::take(&mut *queue) {
            let its_streams: Vec<(String, String)> = pending.append.events.iter().map(stream_of).collect();
            let single = match &pending.append.events[..] {
                [event] => Some(key_of(event)),
                _ => None,
            };
            if pending.after.is_some_and(|ahead| deferred.contains(&ahead)) {
                // What it rides behind waits for the next group: so does it.
                deferred.insert(pending.id);
                later.push(pending);
            } else if its_streams.iter().all(|stream| !streams.contains(stream)) {
                keys.extend(single);
                group.push(pending);
            } else if single.is_some_and(|key| keys.contains(&key)) {
                pending.doomed = true;
                group.push(pending);
            } else {
                deferred.insert(pending.id);
                later.push(pending);
            }
            streams.extend(its_streams);
        }
        *queue = later;
        group
    }

    /// PostgreSQL: one append, on a kept connection of the commands'.
    async fn store_alone(&self, kept: &KeptConnections<Postgres>, append: Rendered) -> Answer {
        let mut connection = kept.lend().await.map_err(store_error)?;
        let stored = append_alone(&mut connection, &append).await;
        // A conflict is an answer; after anything else the connection is not kept.
        if matches!(stored, Ok(_) | Err(PersistenceError::OptimisticLockError)) {
            connection.keep();
        }
        self.counted(stored)
    }

    async fn store_postgres(
        &self,
        kept: &KeptConnections<Postgres>,
        group: &[Pending],
    ) -> Result<Vec<Answer>, PersistenceError> {
        let stored = async {
            let mut connection = kept.lend().await.map_err(store_error)?;
            let answers = store_postgres_group(&mut connection, group).await?;
            connection.keep();
            Ok(answers)
        };
        self.counted(stored.await)
    }

    /// PostgreSQL: stores `group` in one transaction, answers it, and goes on with the next group
    /// until the queue is empty; then gives the turn up (ADR 38).
    async fn drain_postgres(
        self: Arc<Self>,
        kept: Arc<KeptConnections<Postgres>>,
        mut group: Vec<Pending>,
        turn: OwnedMutexGuard<()>,
    ) {
        loop {
            let stored = self.store_postgres(&kept, &group).await;
            self.answer(group, stored);
            group = self.take();
            if group.is_empty() {
                break;
            }
        }
        drop(turn);
    }

    /// SQLite: stores `group` in one transaction, answers it, and goes on with the next group that
    /// queued meanwhile, on this blocking thread, until the queue is empty; then gives the turn
    /// up. Under load the writer goes from one commit to the next without a hand-off: no request
    /// task has to be woken, and wait for a runtime thread, to lead the next group (ADR 38).
    fn drain_sqlite(&self, writer: &SqliteWriter, mut group: Vec<Pending>, turn: OwnedMutexGuard<()>) {
        loop {
            let stored = writer.store_now(&appends_of(&group));
            self.stored_sqlite(group, stored);
            group = self.take();
            if group.is_empty() {
                break;
            }
        }
        drop(turn);
    }

    /// SQLite: stores `group` on this thread (ADR 41) and returns what is left for the blocking
    /// thread in the same turn: the appends that queued meanwhile, or `group` itself, unstored,
    /// when another connection holds the file's write lock (that thread may wait for it).
    fn store_on_this_thread(&self, writer: &SqliteWriter, group: Vec<Pending>) -> Vec<Pending> {
        let Some(stored) = writer.store_unless_busy(&appends_of(&group)) else { return group };
        self.stored_sqlite(group, stored);
        self.on_request.fetch_add(1, Ordering::Relaxed);
        self.take()
    }

    /// SQLite: counts a group's commit and answers its appends.
    fn stored_sqlite(&self, group: Vec<Pending>, stored: Result<Vec<Answer>, PersistenceError>) {
        if stored.as_ref().is_ok_and(|answers| answers.iter().any(Result::is_ok)) {
            // A group whose every append was refused stored nothing: not counted.
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        self.answer(group, stored);
    }

    /// Sends each append of `group` its answer: its own, or the group's failure.
    fn answer(&self, group: Vec<Pending>, stored: Result<Vec<Answer>, PersistenceError>) {
        let answers = match stored {
            Ok(answers) => {
                metrics::histogram!("storming_event_store_group_size").record(group.len() as f64);
                answers
            }
            Err(error) => {
                let detail = format!("the group commit failed: {error}");
                group.iter().map(|_| Err(PersistenceError::UnknownError(detail.clone().into()))).collect()
            }
        };
        for (pending, answer) in group.into_iter().zip(answers) {
            let _ = pending.reply.send(answer); // a caller that went away needs no answer
        }
    }

    fn counted<T>(&self, result: Result<T, PersistenceError>) -> Result<T, PersistenceError> {
        if result.is_ok() {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// Stores one append by itself and returns the global position of its last event. One event
/// without a key is one statement, its own transaction; otherwise the events and the key's
/// completion share one.
async fn append_alone(connection: &mut PgConnection, append: &Rendered) -> Answer {
    let key = idempotency_key(&append.events);
    if let ([event], [json], None) = (&append.events[..], &append.json[..], key) {
        return insert_one(event, json).fetch_one(connection).await.map_err(store_error);
    }
    let mut tx = connection.begin().await.map_err(store_error)?;
    let mut position = None;
    for (event, json) in append.events.iter().zip(append.json.iter()) {
        position = Some(insert_one(event, json).fetch_one(&mut *tx).await.map_err(store_error)?);
    }
    let position = position.ok_or_else(|| store_error(sqlx::Error::RowNotFound))?;
    if let Some((caller, key)) = key {
        sqlx::query(COMPLETE_KEY).bind(position).bind(caller).bind(key).execute(&mut *tx).await.map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)?;
    Ok(position)
}

/// `json` is the event's payload and metadata as JSON text, cast to `jsonb` by the statement.
fn insert_one<'e>(
    event: &'e SerializedEvent,
    (payload, metadata): &'e (String, String),
) -> QueryScalar<'e, Postgres, i64, PgArguments> {
    sqlx::query_scalar(INSERT_EVENT_POSTGRES)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence as i64)
        .bind(&event.event_type)
        .bind(&event.event_version)
        .bind(payload)
        .bind(metadata)
}

/// Every event of the group in one statement; a row whose (type, id, sequence) is stored is not
/// inserted, and not returned.
const INSERT_GROUP_POSTGRES: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[]::jsonb[], $7::text[]::jsonb[]) \
     ON CONFLICT DO NOTHING RETURNING aggregate_type, aggregate_id, sequence, global_position";
/// The rows an append that was refused in part had inserted (its transaction has not committed).
const DELETE_ROWS_POSTGRES: &str = "DELETE FROM events WHERE (aggregate_type, aggregate_id, sequence) IN \
     (SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]))";
/// The keys of the stored appends, each completed with its append's position.
const COMPLETE_KEYS_POSTGRES: &str = "UPDATE idempotency_keys AS k SET position = done.position \
     FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS done (caller, key, position) \
     WHERE k.caller = done.caller AND k.key = done.key AND k.position IS NULL";

/// One INSERT for the whole group (one append per stream). A group of single events without keys
/// is that statement alone, atomic by itself; otherwise the clean-up of appends refused in part and
/// the keys to complete follow it in one transaction.
async fn store_postgres_group(
    connection: &mut PgConnection,
    group: &[Pending],
) -> Result<Vec<Answer>, PersistenceError> {
    let mut rendered: Vec<(&SerializedEvent, &(String, String))> = group
        .iter()
        .filter(|pending| !pending.doomed)
        .flat_map(|pending| pending.append.events.iter().zip(pending.append.json.iter()))
        .collect();
    // In key order: two groups that insert rows of the same streams wait on each other in order.
    rendered.sort_unstable_by(|(a, _), (b, _)| {
        (&a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(&b.aggregate_type, &b.aggregate_id, b.sequence))
    });
    let (rows, json): (Vec<&SerializedEvent>, Vec<&(String, String)>) = rendered.into_iter().unzip();
    let alone = group
        .iter()
        .all(|pending| pending.append.events.len() == 1 && idempotency_key(&pending.append.events).is_none());
    if alone {
        let inserted = insert_rows(&mut *connection, &rows, &json).await?;
        return Ok(decide(group, &inserted).answers);
    }
    let mut tx = connection.begin().await.map_err(store_error)?;
    let inserted = insert_rows(&mut tx, &rows, &json).await?;
    let Decided { answers, refused_in_part, keys } = decide(group, &inserted);
    if !refused_in_part.is_empty() {
        sqlx::query(DELETE_ROWS_POSTGRES)
            .bind(column(&refused_in_part, |event| &event.aggregate_type))
            .bind(column(&refused_in_part, |event| &event.aggregate_id))
            .bind(sequences(&refused_in_part))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    if !keys.is_empty() {
        sqlx::query(COMPLETE_KEYS_POSTGRES)
            .bind(keys.iter().map(|(caller, ..)| *caller).collect::<Vec<_>>())
            .bind(keys.iter().map(|(_, key, _)| *key).collect::<Vec<_>>())
            .bind(keys.iter().map(|(.., position)| *position).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)?;
    Ok(answers)
}

/// A row the group's INSERT stored: its key and its global position.
type Inserted = (String, String, i64, i64);

/// `json` is each row's payload and metadata as JSON text.
async fn insert_rows(
    connection: &mut PgConnection,
    rows: &[&SerializedEvent],
    json: &[&(String, String)],
) -> Result<Vec<Inserted>, PersistenceError> {
    sqlx::query_as(INSERT_GROUP_POSTGRES)
        .bind(column(rows, |event| &event.aggregate_type))
        .bind(column(rows, |event| &event.aggregate_id))
        .bind(sequences(rows))
        .bind(column(rows, |event| &event.event_type))
        .bind(column(rows, |event| &event.event_version))
        .bind(json.iter().map(|(payload, _)| payload.as_str()).collect::<Vec<_>>())
        .bind(json.iter().map(|(_, metadata)| metadata.as_str()).collect::<Vec<_>>())
        .fetch_all(connection)
        .await
        .map_err(store_error)
}

/// One text column of `rows`, as an array parameter of the `UNNEST` statements.
fn column<'r>(rows: &[&'r SerializedEvent], get: fn(&SerializedEvent) -> &String) -> Vec<&'r str> {
    rows.iter().map(|event| get(event).as_str()).collect()
}

fn sequences(rows: &[&SerializedEvent]) -> Vec<i64> {
    rows.iter().map(|event| event.sequence as i64).collect()
}

/// What the INSERT decided for each append of the group.
struct Decided<'g> {
    /// In the group's order: the position of the append's last event, or a conflict.
    answers: Vec<Answer>,
    /// The rows that were inserted of appends refused in part.
    refused_in_part: Vec<&'g SerializedEvent>,
    /// The keys of the stored appends: (caller, key, position).
    keys: Vec<(&'g str, &'g str, i64)>,
}

/// An append is stored if every one of its events was inserted, refused otherwise.
fn decide<'g>(group: &'g [Pending], inserted: &[Inserted]) -> Decided<'g> {
    let positions: HashMap<(&str, &str, i64), i64> = inserted
        .iter()
        .map(|(aggregate_type, aggregate_id, sequence, position)| {
            ((aggregate_type.as_str(), aggregate_id.as_str(), *sequence), *position)
        })
        .collect();
    let mut decided =
        Decided { answers: Vec::with_capacity(group.len()), refused_in_part: Vec::new(), keys: Vec::new() };
    for pending in group {
        if pending.doomed {
            decided.answers.push(Err(PersistenceError::OptimisticLockError));
            continue;
        }
        let stored: Vec<(&SerializedEvent, Option<i64>)> = pending
            .append
            .events
            .iter()
            .map(|event| {
                let key = (event.aggregate_type.as_str(), event.aggregate_id.as_str(), event.sequence as i64);
                (event, positions.get(&key).copied())
            })
            .collect();
        let answer = match stored.iter().map(|(_, position)| *position).collect::<Option<Vec<i64>>>() {
            // The last event's, which the rows' order (by sequence) numbered last.
            Some(positions) => match positions.into_iter().max() {
                Some(last) => {
                    if let Some((caller, key)) = idempotency_key(&pending.append.events) {
                        decided.keys.push((caller, key, last));
                    }
                    Ok(last)
                }
                None => Err(store_error(sqlx::Error::RowNotFound)), // an append of no events
            },
            None => {
                let inserted = stored.iter().filter(|(_, position)| position.is_some());
                decided.refused_in_part.extend(inserted.map(|(event, _)| *event));
                Err(PersistenceError::OptimisticLockError)
            }
        };
        decided.answers.push(answer);
    }
    decided
}

/// What SQLite's writer stores of a group: each append's events, shared, not copied.
fn appends_of(group: &[Pending]) -> Vec<Rendered> {
    group.iter().map(|pending| pending.append.clone()).collect()
}

fn stream_of(event: &SerializedEvent) -> (String, String) {
    (event.aggregate_type.clone(), event.aggregate_id.clone())
}

fn key_of(event: &SerializedEvent) -> (String, String, usize) {
    (event.aggregate_type.clone(), event.aggregate_id.clone(), event.sequence)
}

/// A request's appends in the queue; a request dropped while they wait takes them out with it.
struct Queued<'a> {
    group: &'a GroupCommit,
    ids: std::ops::Range<u64>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.group.queue().retain(|pending| !self.ids.contains(&pending.id));
    }
}

fn answered(stored: Result<Answer, oneshot::error::RecvError>) -> Answer {
    stored.unwrap_or_else(|_| Err(PersistenceError::UnknownError("the group commit ended without an answer".into())))
}
