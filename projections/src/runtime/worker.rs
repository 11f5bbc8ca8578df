//! One worker: follows the log for one projection or policy until shut down, while it holds the
//! worker's lease; stands by while another process holds it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::AnyPool;
use storming_domain::recorded::{LogCursor, RecordedEvent};
use tokio::sync::{watch, Mutex, MutexGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::applied::{next_ring, Applied};
use super::batch::{Parameters, Statements};
use super::checkpoint::{advance, checkpoint};
use super::generations::worker_key;
use super::lease::{try_acquire, Lease, LeaseLost};
use super::sqlite_batches::{PlannedBatch, SqliteBatches};
use super::{at_position, AppendCount, BoxError, EventSource, Events, Policy, Projection, RetryLater};

/// A batch being read in the background, and then planned for a view that plans its writes.
type Reading = JoinHandle<Result<Batch, BoxError>>;

/// A batch of events as a worker gets it: for a view that plans its writes
/// ([`Projection::plan`]), with the statements they become already rendered, so that a batch read
/// ahead is also planned while the batch before it is written (ADR 43).
struct Batch {
    events: Events,
    /// `None` for a policy and for a view that writes its own SQL in [`Projection::apply`].
    planned: Option<Result<Statements, BoxError>>,
    /// How long the worker waited for the batch: its read and planning, or for a batch read ahead
    /// what was left of them.
    waited_for_read: Duration,
    /// How long its planning took, wherever it ran.
    planning: Duration,
}

/// How much a catch-up batch may grow from one batch to the next (see `catch_up_hold`).
const MOST_GROWTH: i64 = 4;

/// How soon a worker looks again at events it could not read yet.
const HORIZON_RETRY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Events read and applied per transaction while following the log.
    pub batch_size: i64,
    /// Events a projection reads and applies per transaction while it is behind (its last read
    /// was full): a catch-up or a rebuild. Larger batches spread each transaction's fixed cost
    /// (lease, checkpoint, commit, and on SQLite the pages a commit writes) over more events; on
    /// SQLite a batch holds the single writer, so commands wait up to one batch's transaction.
    /// Never below `batch_size`; policies always use `batch_size`. With `catch_up_hold`, the most.
    pub catch_up_batch_size: i64,
    /// SQLite: how long one catch-up transaction may hold the single writer that commands queue
    /// for. Each catch-up batch is then sized from the one before it — events in proportion to
    /// the time its transaction took — between `batch_size` and `catch_up_batch_size`, so that a
    /// view whose batches cost more per event (more pages written per commit) takes smaller ones.
    /// `None`: every catch-up batch is `catch_up_batch_size` events.
    pub catch_up_hold: Option<Duration>,
    /// How often an idle worker looks at the log without being woken.
    pub poll_interval: Duration,
    /// The longest pause between retries after a failure.
    pub max_backoff: Duration,
    /// How long a lease lasts without renewal: a dead owner's worker is taken over after this.
    pub lease_ttl: Duration,
    /// After a batch that reached the head, how long a worker lets new events gather before it
    /// reads again, so that under load one transaction carries many commands' events instead of
    /// one each. The first event after a quiet spell is read at once, and so is the next batch a
    /// query waits for (`Applied::hurry`); this bounds the added lag of the others. 30 ms by
    /// default: each batch at the head is a transaction, on SQLite a turn of the single writer the
    /// commands queue for, on PostgreSQL work on the cores they share (ADR 22, 27).
    pub coalesce: Duration,
}

impl WorkerSettings {
    /// The most events a catch-up batch holds.
    fn most_catch_up(&self) -> i64 {
        self.catch_up_batch_size.max(self.batch_size)
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            catch_up_batch_size: 4_000,
            catch_up_hold: None,
            poll_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(5),
            coalesce: Duration::from_millis(30),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Applied this many events.
    Applied(usize),
    /// Nothing new in the log.
    CaughtUp,
    /// Events are stored but cannot be read safely yet (an older transaction is still running).
    Waiting,
    /// Another owner holds the lease.
    Standby,
}

enum Task {
    /// A projection filling one generation of its tables.
    Projection(Arc<dyn Projection>, i64),
    Policy(Arc<dyn Policy>),
}

pub struct Worker {
    task: Task,
    source: Arc<dyn EventSource>,
    pool: AnyPool,
    wake: watch::Receiver<u64>,
    settings: WorkerSettings,
    /// The name of its checkpoint and lease.
    key: String,
    owner: String,
    lease: Option<Lease>,
    renewed: Instant,
    cursor: Option<LogCursor>,
    /// Whether its last read was full: it is behind, and reads on at once, in larger batches.
    behind: bool,
    /// Events per catch-up batch (see `WorkerSettings::catch_up_hold`).
    catch_up_limit: i64,
    /// While a projection applies a full batch (it is behind), the next batch is already being
    /// read on another connection: the batch of at most `.1` events after `.0`.
    read_ahead: Option<(LogCursor, i64, Reading)>,
    /// How far a policy got past its stored checkpoint through events it ignores (stored with
    /// the next lease renewal).
    unsaved: Option<LogCursor>,
    /// Held around each write transaction (SQLite's in-process writer queue of the read side's
    /// file; `storming-infra`'s `Database::views_gate`).
    write_gate: Option<Arc<Mutex<()>>>,
    /// Rung after each batch a projection commits (see [`Applied`]).
    applied: Option<Arc<Applied>>,
    /// The process's appends so far (see [`Worker::with_appends`]).
    appends: Option<AppendCount>,
    /// How long to leave the writer alone before the next catch-up batch.
    yield_for: Option<Duration>,
    /// SQLite: where a projection's planned batches are written (see [`Worker::with_sqlite_batches`]).
    sqlite_batches: Option<Arc<SqliteBatches>>,
    /// How its pool's backend is sent a batch's statements.
    style: Parameters,
}

/// This process's owner name: host, process id and a random part (pids are reused).
pub fn process_owner() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        format!("{host}:{}:{:08x}", std::process::id(), rand::random::<u32>())
    })
}

impl Worker {
    /// The worker that fills `generation` of `projection`'s tables.
    pub fn projection_generation(
        projection: Arc<dyn Projection>,
        generation: i64,
        source: Arc<dyn EventSource>,
        pool: AnyPool,
        wake: watch::Receiver<u64>,
        settings: WorkerSettings,
    ) -> Self {
        let key = worker_key(projection.name(), generation);
        Self::new(Task::Projection(projection, generation), key, source, pool, wake, settings)
    }

    pub fn policy(
        policy: Arc<dyn Policy>,
        source: Arc<dyn EventSource>,
        pool: AnyPool,
        wake: watch::Receiver<u64>,
        settings: WorkerSettings,
    ) -> Self {
        let key = policy.name().to_string();
        Self::new(Task::Policy(policy), key, source, pool, wake, settings)
    }

    fn new(
        task: Task,
        key: String,
        source: Arc<dyn EventSource>,
        pool: AnyPool,
        wake: watch::Receiver<u64>,
        settings: WorkerSettings,
    ) -> Self {
        let owner = process_owner().to_string();
        let style = Parameters::of_pool(&pool);
        Self {
            task,
            source,
            pool,
            wake,
            settings,
            key,
            owner,
            lease: None,
            renewed: Instant::now(),
            cursor: None,
            behind: false,
            catch_up_limit: match settings.catch_up_hold {
                Some(_) => settings.batch_size,
                None => settings.most_catch_up(),
            },
            read_ahead: None,
            unsaved: None,
            write_gate: None,
            applied: None,
            appends: None,
            yield_for: None,
            sqlite_batches: None,
            style,
        }
    }

    /// Queues its write transactions behind `gate` (SQLite: see `storming_infra::db::WriteGate`).
    pub fn with_write_gate(mut self, gate: Option<Arc<Mutex<()>>>) -> Self {
        self.write_gate = gate;
        self
    }

    /// On SQLite: a projection that plans its batches ([`super::Projection::plan`]) has each one
    /// written as one job on `batches`' plain connection, with its lease and checkpoint, instead
    /// of statement by statement through sqlx (ADR 24).
    pub fn with_sqlite_batches(mut self, batches: Option<Arc<SqliteBatches>>) -> Self {
        self.sqlite_batches = batches;
        self
    }

    /// Rings `applied` after each batch it commits (a projection's worker).
    pub fn with_applied(mut self, applied: Option<Arc<Applied>>) -> Self {
        self.applied = applied;
        self
    }

    async fn turn(gate: &Option<Arc<Mutex<()>>>) -> Option<MutexGuard<'_, ()>> {
        match gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    /// With a catch-up hold: a catch-up batch during which the process's commands appended to the
    /// log is followed by a pause as long as its transaction, so that while a view catches up
    /// beside live commands (a rebuild) they get the single writer at least half the time; a
    /// catch-up alone runs on at once. Without it, each append waited behind one catch-up batch,
    /// and a rebuild of `my_page` left 12–21 commands/s of 800–900 (ADR 14).
    pub fn with_appends(mut self, appends: Option<AppendCount>) -> Self {
        self.appends = appends;
        self
    }

    /// How long its next step leaves the writer alone before it reads (see
    /// [`Worker::with_appends`]); `None` when it reads at once.
    pub fn pause_before_next(&self) -> Option<Duration> {
        self.yield_for
    }

    /// Names the owner explicitly (two replicas inside one test process).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    pub fn name(&self) -> &'static str {
        match &self.task {
            Task::Projection(projection, _) => projection.name(),
            Task::Policy(policy) => policy.name(),
        }
    }

    /// The name of its checkpoint and lease (`name@gN` for a projection's generation).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Follows the log until `shutdown` turns true; a batch under way is finished first, and the
    /// lease is given up so that a stand-by takes over at once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let name = self.name();
        tracing::info!(worker = name, owner = %self.owner, "worker started");
        let mut backoff = Duration::from_millis(100);
        // A query waiting for this view's next batch cuts the pause at the head short.
        let mut hurried = match (&self.task, &self.applied) {
            (Task::Projection(..), Some(applied)) => applied.hurried(name),
            _ => None,
        };
        while !*shutdown.borrow() {
            let pause = match self.step().await {
                Ok(Step::Applied(_)) => {
                    backoff = Duration::from_millis(100);
                    if self.behind {
                        continue; // read on at once
                    }
                    // At the head: let the next events gather (the first one was not delayed),
                    // unless a query waits for them.
                    tokio::select! {
                        _ = tokio::time::sleep(self.settings.coalesce) => {}
                        _ = next_ring(&mut hurried) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Ok(Step::CaughtUp) => self.settings.poll_interval.min(self.settings.lease_ttl / 3),
                Ok(Step::Waiting) => HORIZON_RETRY,
                Ok(Step::Standby) => self.settings.lease_ttl / 3,
                Err(error) if error.is::<RetryLater>() => {
                    error.downcast_ref::<RetryLater>().map_or(self.settings.poll_interval, |later| later.0)
                }
                Err(error) => {
                    tracing::error!(worker = name, error = %error, retry_in_ms = backoff.as_millis() as u64, "worker batch failed");
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    pause
                }
            };
            tokio::select! {
                _ = self.wake.changed() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
        if let Some(lease) = self.lease.take() {
            if self.unsaved.is_some() {
                if let Err(error) = self.renew(&lease).await {
                    tracing::warn!(worker = name, error = %error, "could not store the checkpoint on the way out");
                }
            }
            if let Err(error) = lease.release(&self.pool).await {
                tracing::warn!(worker = name, error = %error, "could not release the lease; it will expire");
            }
        }
        tracing::info!(worker = name, "worker stopped");
    }

    /// Takes or keeps the lease, then reads and applies one batch.
    pub async fn step(&mut self) -> Result<Step, BoxError> {
        if let Some(pause) = self.yield_for.take() {
            tokio::time::sleep(pause).await;
        }
        let Some(lease) = self.hold_lease().await? else { return Ok(Step::Standby) };
        let cursor = match self.cursor {
            Some(cursor) => cursor,
            None => checkpoint(&self.pool, &self.key).await?.cursor,
        };
        self.cursor = Some(cursor);
        let batch = self.read(cursor).await?;
        let outcome = if batch.events.is_empty() {
            let waiting = self.source.has_unreadable(cursor).await?;
            self.renew_when_due(&lease).await.map(|()| if waiting { Step::Waiting } else { Step::CaughtUp })
        } else {
            let count = batch.events.len();
            let applied = match &self.task {
                Task::Projection(projection, generation) => {
                    self.apply_batch(&lease, projection.clone(), *generation, batch).await
                }
                Task::Policy(policy) => self.react_to_batch(&lease, policy.clone(), &batch.events).await,
            };
            applied.map(|()| Step::Applied(count))
        };
        if outcome.as_ref().is_err_and(|error| error.is::<LeaseLost>()) {
            tracing::warn!(worker = self.name(), owner = %self.owner, "lost the lease; standing by");
            self.lease = None;
            self.cursor = None;
            self.behind = false;
            self.unsaved = None;
            return Ok(Step::Standby);
        }
        outcome
    }

    /// How many events the next read asks for.
    fn limit(&self) -> i64 {
        match self.task {
            Task::Projection(..) if self.behind => self.catch_up_limit,
            _ => self.settings.batch_size,
        }
    }

    /// The batch after `cursor`: the one read ahead if it starts there, else read now. A
    /// projection that got a full batch starts reading (and planning) the next one before applying
    /// this one.
    async fn read(&mut self, cursor: LogCursor) -> Result<Batch, BoxError> {
        let started = Instant::now();
        let (mut batch, asked) = match self.read_ahead.take() {
            Some((after, asked, reading)) if after == cursor => (reading.await??, asked),
            stale => {
                if let Some((_, _, stale)) = stale {
                    stale.abort();
                }
                let limit = self.limit();
                (read_batch(self.source.clone(), self.view(), cursor, limit).await?, limit)
            }
        };
        batch.waited_for_read = started.elapsed();
        // Full: it got all it asked for, so more follow.
        let was_behind = self.behind;
        self.behind = batch.events.len() as i64 >= asked;
        if was_behind && !self.behind {
            give_back_freed_memory();
        }
        if let (true, Task::Projection(..), Some(last)) = (self.behind, &self.task, batch.events.last()) {
            let (source, view, after, limit) = (self.source.clone(), self.view(), last.cursor(), self.limit());
            self.read_ahead = Some((after, limit, tokio::spawn(read_batch(source, view, after, limit))));
        }
        Ok(batch)
    }

    /// What a projection's worker fills; `None` for a policy's.
    fn view(&self) -> Option<View> {
        match &self.task {
            Task::Projection(projection, generation) => {
                Some(View { projection: projection.clone(), generation: *generation, style: self.style })
            }
            Task::Policy(_) => None,
        }
    }

    async fn hold_lease(&mut self) -> Result<Option<Lease>, BoxError> {
        if self.lease.is_none() {
            self.lease = try_acquire(&self.pool, &self.key, &self.owner, self.settings.lease_ttl).await?;
            if let Some(lease) = &self.lease {
                tracing::info!(worker = self.name(), owner = %self.owner, token = lease.token, "took the lease");
                self.renewed = Instant::now();
                self.cursor = None; // another owner may have moved the checkpoint
                self.unsaved = None;
            }
        }
        Ok(self.lease.clone())
    }

    /// An idle owner renews its lease a few times per lease length, so that it keeps it.
    async fn renew_when_due(&mut self, lease: &Lease) -> Result<(), BoxError> {
        if self.renewed.elapsed() < self.settings.lease_ttl / 3 {
            return Ok(());
        }
        self.renew(lease).await
    }

    /// Renews the lease, storing the checkpoint a policy moved in memory.
    async fn renew(&mut self, lease: &Lease) -> Result<(), BoxError> {
        let _turn = Self::turn(&self.write_gate).await;
        let mut tx = self.pool.begin().await?;
        lease.renew(&mut tx, self.settings.lease_ttl).await?;
        if let Some(cursor) = self.unsaved {
            advance(&mut tx, &self.key, cursor).await?;
        }
        tx.commit().await?;
        self.renewed = Instant::now();
        self.unsaved = None;
        Ok(())
    }

    async fn apply_batch(
        &mut self,
        lease: &Lease,
        projection: Arc<dyn Projection>,
        generation: i64,
        batch: Batch,
    ) -> Result<(), BoxError> {
        let Batch { events, planned, waited_for_read, planning } = batch;
        let last = events.last().map(RecordedEvent::cursor).unwrap_or_default();
        let appends_before = self.appends_so_far();
        // Planned before the writer is taken (for a batch read ahead, while the batch before it
        // was written): it needs no connection.
        let planned = planned.transpose()?;
        let asked = Instant::now();
        let turn = Self::turn(&self.write_gate).await;
        let held = Instant::now();
        match (planned, &self.sqlite_batches) {
            (Some(writes), Some(batches)) => {
                let ttl = self.settings.lease_ttl;
                let (lease, key) = (lease.clone(), self.key.clone());
                batches.commit(PlannedBatch { lease, ttl, key, last, writes }).await?;
            }
            (planned, _) => {
                let mut tx = self.pool.begin().await?;
                // The lease is renewed first: it fences a stale owner out, and on SQLite the first
                // write takes the write lock at once, so the transaction never has to upgrade from
                // reader to writer (which SQLite may refuse).
                lease.renew(&mut tx, self.settings.lease_ttl).await?;
                advance(&mut tx, &self.key, last).await?;
                match planned {
                    Some(writes) => writes.flush(&mut tx).await?,
                    None => projection.apply(&mut tx, &events, generation).await?,
                }
                tx.commit().await?;
            }
        }
        drop(turn);
        let took = held.elapsed();
        if let (true, Some(hold)) = (self.behind, self.settings.catch_up_hold) {
            let (least, most) = (self.settings.batch_size, self.settings.most_catch_up());
            self.catch_up_limit = next_catch_up_limit(events.len(), took, hold, least, most);
            self.yield_for = (self.appends_so_far() != appends_before).then_some(took);
        }
        if let Some(applied) = &self.applied {
            applied.ring(projection.name());
        }
        tracing::debug!(
            worker = self.key.as_str(),
            events = events.len(),
            read_us = waited_for_read.as_micros() as u64,
            planning_us = planning.as_micros() as u64,
            waited_us = (held - asked).as_micros() as u64,
            transaction_us = took.as_micros() as u64,
            "applied a batch"
        );
        self.renewed = Instant::now();
        self.cursor = Some(last);
        Ok(())
    }

    /// The process's appends so far, if it counts them (see [`Worker::with_appends`]).
    fn appends_so_far(&self) -> Option<u64> {
        self.appends.as_ref().map(|appends| appends())
    }

    async fn react_to_batch(
        &mut self,
        lease: &Lease,
        policy: Arc<dyn Policy>,
        events: &[RecordedEvent],
    ) -> Result<(), BoxError> {
        if !events.iter().any(|event| policy.wants(event)) {
            let last = events.last().map(RecordedEvent::cursor).unwrap_or_default();
            self.cursor = Some(last);
            self.unsaved = Some(last);
            return self.renew_when_due(lease).await;
        }
        // No transaction is held while the policy's commands run: they write to the same database.
        let mut done = None;
        let mut failure = None;
        for (n, event) in events.iter().enumerate() {
            match policy.react(event, &events[n + 1..]).await {
                Ok(()) => done = Some(event.cursor()),
                Err(error) if error.is::<RetryLater>() => {
                    failure = Some(error);
                    break;
                }
                Err(error) => {
                    failure = Some(at_position(event, error));
                    break;
                }
            }
        }
        if let Some(cursor) = done {
            let _turn = Self::turn(&self.write_gate).await;
            let mut tx = self.pool.begin().await?;
            lease.renew(&mut tx, self.settings.lease_ttl).await?;
            advance(&mut tx, &self.key, cursor).await?;
            tx.commit().await?;
            self.renewed = Instant::now();
            self.cursor = Some(cursor);
            self.unsaved = None;
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The view a batch is planned for: its projection, the generation of its tables, and how the
/// statements are sent on the worker's backend.
struct View {
    projection: Arc<dyn Projection>,
    generation: i64,
    style: Parameters,
}

/// Reads the batch of at most `limit` events after `after` and, for a view that plans its writes,
/// plans them: in a task of its own for a batch read ahead, so that the next batch's decoding and
/// planning run beside this one's transaction (ADR 43).
async fn read_batch(
    source: Arc<dyn EventSource>,
    view: Option<View>,
    after: LogCursor,
    limit: i64,
) -> Result<Batch, BoxError> {
    let events = source.read_after(after, limit).await?;
    let Some(View { projection, generation, style }) = view.filter(|_| !events.is_empty()) else {
        return Ok(Batch { events, planned: None, waited_for_read: Duration::ZERO, planning: Duration::ZERO });
    };
    // On a blocking thread: a catch-up's batch takes milliseconds to plan, which the runtime's
    // threads would take from the requests (on SQLite there is one).
    let planning = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let planned = projection.plan(&events, generation).map(|writes| writes.map(|writes| writes.render(style)));
        Batch { events, planned, waited_for_read: Duration::ZERO, planning: started.elapsed() }
    });
    match planning.await {
        Ok(batch) => Ok(batch),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(error.into()),
    }
}

/// Hands the heap's free pages back to the system once a catch-up is over. glibc keeps what its
/// batches freed (a server whose four views caught up on 1,000,000 events held 261 MB after, 209 MB
/// with this; ADR 14).
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's heaps; it touches nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The next catch-up batch's size: as many events as would hold the writer for `hold`, if a
/// transaction's time grows in proportion to its events as the last one's did (`took` for
/// `events`); at most `MOST_GROWTH` times the last, and between `least` and `most`. A fixed cost
/// per transaction makes the proportion overestimate a small batch's cost per event, so the
/// sizes grow towards the one that takes `hold` from below.
fn next_catch_up_limit(events: usize, took: Duration, hold: Duration, least: i64, most: i64) -> i64 {
    let events = events.max(1) as i64;
    let fitting = (events as f64 * hold.as_secs_f64() / took.as_secs_f64().max(1e-6)) as i64;
    fitting.min(events * MOST_GROWTH).clamp(least, most)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_catch_up_batch_grows_towards_the_hold_at_most_fourfold() {
        assert_eq!(next_catch_up_limit(500, 10 * MS, 200 * MS, 500, 16_000), 2_000, "20x would fit; 4x at most");
        assert_eq!(next_catch_up_limit(2_000, 100 * MS, 200 * MS, 500, 16_000), 4_000);
    }

    #[test]
    fn a_catch_up_batch_that_held_the_writer_too_long_shrinks() {
        assert_eq!(next_catch_up_limit(8_000, 400 * MS, 200 * MS, 500, 16_000), 4_000);
    }

    #[test]
    fn a_catch_up_batch_stays_within_its_bounds() {
        assert_eq!(next_catch_up_limit(16_000, 50 * MS, 200 * MS, 500, 16_000), 16_000);
        assert_eq!(next_catch_up_limit(500, 2_000 * MS, 200 * MS, 500, 16_000), 500);
        assert_eq!(next_catch_up_limit(0, Duration::ZERO, 200 * MS, 500, 16_000), 500, "an empty batch, an instant");
    }
}
