//! The event store: cqrs-es's persisted event store over one repository type, chosen at run time
//! from the database URL.
//!
//! Reads delegate to sqlite-es or postgres-es, so every aggregate has the same store type whatever
//! the backend. Only the plain event-store mode is used: the snapshot and aggregate-store modes of
//! cqrs-es 0.5.0 apply new events twice (see DESIGN.md).
//!
//! Writes are ours ([`EventRepository::append`]), into the same seven columns the crates write, so
//! that a command learns its events' global position from the INSERT itself (PostgreSQL's
//! `RETURNING`, SQLite's row id), a
//! single event is a single statement, and an `Idempotency-Key` is completed in the transaction
//! that stores the events (ADR 8).
//!
//! [`CachedStore`] keeps each aggregate's last committed state in memory, so a command reads only
//! the events stored after it (usually none) instead of replaying the whole stream.

use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::persist::{
    EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream,
    SerializedEvent, SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::Postgres;
use sqlx::Row;

use crate::bounded::Bounded;
use crate::db::{CommandConnections, Database, StorePool};
use crate::foreign::{Epoch, ForeignCommits};
use crate::idempotency::{CALLER_ENTRY, KEY_ENTRY};
use crate::kept::KeptConnections;

pub enum EventRepository {
    Sqlite(SqliteEventRepository, Arc<SqliteStoreReads>, Arc<GroupCommit>),
    Postgres(PostgresEventRepository, Arc<KeptConnections<Postgres>>, Arc<GroupCommit>),
}

const TAIL: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata \
                    FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence";

/// PostgreSQL: the events of stream (`aggregate_type`, `aggregate_id`) after `sequence`, as
/// cqrs-es stores them, read on a kept connection (SQLite reads them in place,
/// [`SqliteStoreReads`]). The sequence is bound, not formatted into the SQL as the crates do, so
/// that one prepared statement serves every call.
async fn tail(
    kept: &KeptConnections<Postgres>,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: usize,
) -> Result<Vec<SerializedEvent>, PersistenceError> {
    let mut connection = kept.lend().await.map_err(store_error)?;
    let rows = sqlx::query(TAIL)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .fetch_all(&mut *connection)
        .await
        .map_err(store_error)?;
    connection.keep();
    rows.iter()
        .map(|row| {
            Ok(SerializedEvent::new(
                row.try_get("aggregate_id").map_err(store_error)?,
                row.try_get::<i64, _>("sequence").map_err(store_error)? as usize,
                row.try_get("aggregate_type").map_err(store_error)?,
                row.try_get("event_type").map_err(store_error)?,
                row.try_get("event_version").map_err(store_error)?,
                row.try_get("payload").map_err(store_error)?,
                row.try_get("metadata").map_err(store_error)?,
            ))
        })
        .collect()
}

/// One event. On SQLite its global position is the table's row id (ADR 37), which SQLite gives as
/// the newest plus one under the single writer's lock, and the writer takes it from the connection
/// (`last_insert_rowid`), not from a `RETURNING` clause: SQLite runs `RETURNING` as a trigger, and a
/// statement with a trigger that may abort keeps a statement journal inside a transaction, a page
/// copy per page it changes (ADR 45).
const INSERT_EVENT_SQLITE: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_EVENT_POSTGRES: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) RETURNING global_position";
const COMPLETE_KEY: &str =
    "UPDATE idempotency_keys SET position = $1 WHERE caller = $2 AND key = $3 AND position IS NULL";

mod group_commit;
mod sqlite_reads;
mod sqlite_writer;

/// What one append is answered: the global position of its last event, or why it was not stored.
type Answer = Result<i64, PersistenceError>;

pub use group_commit::GroupCommit;
pub use sqlite_reads::SqliteStoreReads;
pub use sqlite_writer::{open_append_connection, SqliteWriter};

/// A unique violation is another command that stored the same sequence first.
fn store_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => PersistenceError::OptimisticLockError,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

/// One command's events as the group commit stores them, each event's payload and metadata
/// already JSON text: rendered by the command's own task before it queues for the writer's turn,
/// not during that turn, which every other append waits for (ADR 36). Cloned cheaply: a rent's
/// payment is kept by its command, to be stored again alone if its group failed (ADR 18).
#[derive(Debug, Clone)]
pub struct Rendered {
    events: Arc<[SerializedEvent]>,
    json: Arc<[(String, String)]>,
}

impl Rendered {
    pub fn new(events: Arc<[SerializedEvent]>) -> Self {
        let json = events.iter().map(|event| (event.payload.to_string(), event.metadata.to_string())).collect();
        Self { events, json }
    }
}

/// The idempotency key the events are stored under, if their command had one.
fn idempotency_key(events: &[SerializedEvent]) -> Option<(&str, &str)> {
    let metadata = &events.first()?.metadata;
    Some((metadata.get(CALLER_ENTRY)?.as_str()?, metadata.get(KEY_ENTRY)?.as_str()?))
}

/// The event store every aggregate uses.
pub type Store<A> = CachedStore<A>;

impl EventRepository {
    pub fn new(db: &Database) -> Self {
        match (&db.store, &db.commands) {
            (StorePool::Sqlite(pool), CommandConnections::Sqlite(reads)) => {
                Self::Sqlite(SqliteEventRepository::new(pool.clone()), reads.clone(), db.group_commit.clone())
            }
            (StorePool::Postgres(pool), CommandConnections::Postgres(kept)) => {
                Self::Postgres(PostgresEventRepository::new(pool.clone()), kept.clone(), db.group_commit.clone())
            }
            _ => unreachable!("the store and the commands' connections are of one backend"),
        }
    }

    /// Stores the events of one command (with the completion of its idempotency key, if it had
    /// one) and returns the global position of the last. A stored (type, id, sequence) is an
    /// optimistic-concurrency conflict.
    pub async fn append(&self, events: &[SerializedEvent]) -> Result<i64, PersistenceError> {
        match self {
            Self::Sqlite(.., group) | Self::Postgres(.., group) => group.append(events).await,
        }
    }

    /// Whether another aggregate's events are stored with the command that decided them (ADR 18).
    /// On PostgreSQL a lone rent's two events are then one statement instead of two; on SQLite one
    /// transaction and one fsync instead of two, in one job on the appends' connection (ADR 21).
    pub fn stores_riders(&self) -> bool {
        true
    }

    /// Stores several commands' events, none before those ahead of it in `chain`
    /// ([`GroupCommit::append_chain`]); an answer per append, in order.
    pub async fn append_chain(&self, chain: &[Arc<[SerializedEvent]>]) -> Vec<Result<i64, PersistenceError>> {
        match self {
            Self::Sqlite(.., group) | Self::Postgres(.., group) => group.append_chain(chain).await,
        }
    }

    /// The events of stream `aggregate_id` stored after `sequence`, in order.
    pub async fn events_after<A: Aggregate>(
        &self,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            // In place, on the calling thread (ADR 23).
            Self::Sqlite(_, reads, _) => reads.events_after(A::TYPE, aggregate_id, sequence),
            Self::Postgres(_, kept, _) => tail(kept, A::TYPE, aggregate_id, sequence).await,
        }
    }
}

/// How many aggregates of one type [`CachedStore`] keeps (about 200 bytes to 1 KiB each).
pub const AGGREGATE_CACHE_ENTRIES: usize = 10_000;

/// How many payments it keeps. Every rent starts a new payment, which is read again only if it is
/// refunded, soon after (a lost race, a cancellation): with the full allowance the cache filled
/// with payments nobody reads within seconds of load, and held them (BENCHMARKS.md, memory).
pub const PAYMENT_CACHE_ENTRIES: usize = 1_000;

/// How a command's aggregate is brought up to date before it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// The cached state and the events stored after it, read from the store (only another
    /// process can have stored any), or the whole stream when the aggregate is not cached.
    Read,
    /// The cached state as it is when the process knows it current: read or stored in the epoch
    /// of other writers' commits the process is in ([`crate::foreign`], ADR 48); else as
    /// [`Load::Read`]. For any command, those that call services too: a state taken as current
    /// may be stale by the commits whose notification is on its way, and a decision on it is
    /// decided again on a read if it loses at the key, or refuses or decides nothing before
    /// calling a service; but that window is a notification's delivery, not the cache's lifetime.
    Current,
    /// The cached state as it is, without that read (ADR 46): for a command whose decision calls
    /// no service, so that deciding it on a stale state has no effect outside the store. Events
    /// it decides meet the store's unique (type, id, sequence) key, and if another process's
    /// events got there first it is decided again at once, on a read; a refusal, or a decision
    /// of nothing, is decided again on a read before it is answered. After a cached decision lost
    /// to another process, its executor reads first for 10 s (`READ_FIRST_AFTER_STALE`).
    Cached,
}

/// An aggregate as a command decides on it, and whether it was taken from the cache without
/// reading the events stored after it ([`Load::Current`], [`Load::Cached`]).
pub struct Loaded<A: Aggregate> {
    pub context: EventStoreAggregateContext<A>,
    pub unread: bool,
}

/// An aggregate's last committed state as the process knows it.
#[derive(Clone)]
struct Cached<A> {
    state: A,
    sequence: usize,
    /// The epoch of other writers' commits in which it was read or stored ([`crate::foreign`]):
    /// while the process is still in it, the state is the stored one.
    known_in: Option<Epoch>,
}

/// cqrs-es's event store with each aggregate's last committed state kept in memory.
///
/// Loading a cached aggregate reads only the events stored after its cached sequence, so another
/// process's commands are always seen, unless the process knows that no other process stored any
/// ([`Load::Current`]); a stale entry can cost at most a reread, never a wrong decision, because
/// the store's unique (type, id, sequence) key still decides every race. [`Load::Cached`] skips
/// that read, for the commands that are decided again when they lose to it (ADR 46). Only state
/// read from the store or stored by a successful commit enters the cache. When full, an arbitrary
/// entry is evicted: a miss costs one full replay.
pub struct CachedStore<A: Aggregate> {
    inner: PersistedEventStore<EventRepository, A>,
    repo: EventRepository,
    cache: Bounded<Cached<A>>,
    /// Ids this process minted for new aggregates and has not loaded yet: their first load needs
    /// no read, since nothing can be stored under an id that nobody else has seen.
    minted: Bounded<()>,
    foreign: Arc<ForeignCommits>,
}

impl<A: Aggregate + Clone> CachedStore<A> {
    pub fn new(db: &Database, capacity: usize) -> Self {
        Self {
            inner: PersistedEventStore::new_event_store(EventRepository::new(db)),
            repo: EventRepository::new(db),
            cache: Bounded::new(capacity),
            minted: Bounded::new(capacity),
            foreign: db.foreign.clone(),
        }
    }

    /// `aggregate_id` was minted just now for a new aggregate: its first load starts from the
    /// empty aggregate without reading the store. Were its stream not empty after all, the append
    /// would meet the store's unique key like any stale decision, and the retry reads the stream.
    pub fn mint(&self, aggregate_id: &str) {
        self.minted.insert(aggregate_id, ());
    }

    /// The repository it reads from and writes to.
    pub fn repo(&self) -> &EventRepository {
        &self.repo
    }

    /// The epoch now, to stamp on a state about to be read or stored (taken before, so that any
    /// other writer's commit after it moves the epoch on).
    fn epoch(&self) -> Option<Epoch> {
        self.foreign.epoch()
    }

    fn remember(&self, aggregate_id: &str, state: A, sequence: usize, known_in: Option<Epoch>) {
        // Never replace a newer state (a concurrent command of this process committed later).
        let cached = Cached { state, sequence, known_in };
        self.cache.insert_unless(aggregate_id, cached, |known| known.sequence > sequence);
    }
}

impl<A: Aggregate + Clone> CachedStore<A> {
    /// The aggregate's state and sequence as `load` says.
    pub async fn load(&self, aggregate_id: &str, load: Load) -> Result<Loaded<A>, AggregateError<A::Error>> {
        if self.minted.remove(aggregate_id).is_some() {
            return Ok(Loaded { context: context_at(aggregate_id, A::default(), 0), unread: false });
        }
        let epoch = self.epoch();
        let Some(cached) = self.cache.get(aggregate_id) else {
            let context = self.inner.load_aggregate(aggregate_id).await?;
            self.remember(aggregate_id, context.aggregate.clone(), context.current_sequence, epoch);
            return Ok(Loaded { context, unread: false });
        };
        let unread = match load {
            Load::Read => false,
            Load::Current => epoch.is_some() && cached.known_in == epoch,
            Load::Cached => true,
        };
        let mut context = context_at(aggregate_id, cached.state, cached.sequence);
        if unread {
            return Ok(Loaded { context, unread });
        }
        let newer = self.repo.events_after::<A>(aggregate_id, cached.sequence).await?;
        for event in newer {
            let envelope = EventEnvelope::<A>::try_from(event)?;
            context.current_sequence = envelope.sequence;
            context.aggregate.apply(envelope.payload);
        }
        if epoch.is_some() || context.current_sequence != cached.sequence {
            self.remember(aggregate_id, context.aggregate.clone(), context.current_sequence, epoch);
        }
        Ok(Loaded { context, unread })
    }

    /// The events a command decided on `context` (whose aggregate the event sink has already
    /// brought to the state after them), serialized for the store; `None` when it decided none.
    pub fn serialize(
        &self,
        events: Vec<A::Event>,
        context: EventStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Option<Decided<A>>, AggregateError<A::Error>> {
        let EventStoreAggregateContext { aggregate_id, aggregate: state, current_sequence, .. } = context;
        let serialized = events
            .into_iter()
            .zip(current_sequence + 1..)
            .map(|(payload, sequence)| {
                let envelope = EventEnvelope::<A> {
                    aggregate_id: aggregate_id.clone(),
                    sequence,
                    payload,
                    metadata: metadata.clone(),
                };
                SerializedEvent::try_from(&envelope)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = serialized.last() else { return Ok(None) };
        let sequence = last.sequence;
        Ok(Some(Decided { events: serialized, state: Settled { aggregate_id, state, sequence } }))
    }

    /// Stores each rider by itself, as its own command would have.
    pub async fn store_riders_alone(&self, riders: Vec<Rider>) {
        for rider in riders {
            let epoch = self.epoch();
            match self.repo.append(&rider.events).await {
                Ok(_) => (rider.stored)(epoch),
                // Stored already, by another process running the same keyed command.
                Err(PersistenceError::OptimisticLockError) => {}
                Err(error) => tracing::error!(
                    aggregate_type = %rider.events[0].aggregate_type,
                    aggregate_id = %rider.events[0].aggregate_id,
                    %error,
                    "could not store the events decided for another command"
                ),
            }
        }
    }

    /// A decision's events are stored: its aggregate's state after them is the cache's, known
    /// current in `epoch` (taken before they were stored).
    pub fn stored(&self, settled: Settled<A>, epoch: Option<Epoch>) {
        self.remember(&settled.aggregate_id, settled.state, settled.sequence, epoch);
    }

    /// Stores the events a command decided on `context` and returns the global position of the
    /// last; `None` when it decided none. `riders` (appends another aggregate decided for this
    /// command, a rent's payment) are stored no later than its events, in the same group when the
    /// queue allows (ADR 18). A rider is stored even when the command's own events are not: if
    /// the shared group failed, it is stored again alone, so that a charge keeps its record.
    pub async fn append(
        &self,
        riders: Vec<Rider>,
        events: Vec<A::Event>,
        context: EventStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Option<i64>, AggregateError<A::Error>> {
        let Some(decided) = self.serialize(events, context, metadata)? else {
            self.store_riders_alone(riders).await;
            return Ok(None);
        };
        let mut chain: Vec<Arc<[SerializedEvent]>> = riders.iter().map(|rider| rider.events.clone()).collect();
        chain.push(decided.events.into());
        let epoch = self.epoch();
        let mut answers = self.repo.append_chain(&chain).await;
        let own = answers.pop().expect("one answer per append");
        for (rider, answer) in riders.into_iter().zip(answers) {
            match answer {
                Ok(_) => (rider.stored)(epoch),
                // The very events are stored already (the same keyed command, run by another
                // process): its aggregate is read again next time.
                Err(PersistenceError::OptimisticLockError) => {}
                Err(_) => self.store_riders_alone(vec![rider]).await,
            }
        }
        let position = own?;
        self.stored(decided.state, epoch);
        Ok(Some(position))
    }
}

/// `aggregate` at `sequence`, as a command decides on it (the cache keeps no snapshots).
fn context_at<A: Aggregate>(aggregate_id: &str, aggregate: A, sequence: usize) -> EventStoreAggregateContext<A> {
    EventStoreAggregateContext {
        aggregate_id: aggregate_id.to_string(),
        aggregate,
        current_sequence: sequence,
        current_snapshot: None,
    }
}

/// A command's events, serialized and not yet stored.
pub struct Decided<A: Aggregate> {
    pub events: Vec<SerializedEvent>,
    pub state: Settled<A>,
}

/// The state an aggregate reaches once a decision's events are stored.
pub struct Settled<A: Aggregate> {
    aggregate_id: String,
    state: A,
    sequence: usize,
}

/// Events one aggregate decided inside another's command, stored with that command's events
/// (ADR 18), and what to do once they are (given the epoch taken before they were stored).
pub struct Rider {
    events: Arc<[SerializedEvent]>,
    stored: Box<dyn FnOnce(Option<Epoch>) + Send>,
}

impl Rider {
    pub fn new(events: Vec<SerializedEvent>, stored: impl FnOnce(Option<Epoch>) + Send + 'static) -> Self {
        Self { events: events.into(), stored: Box::new(stored) }
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.get_events::<A>(aggregate_id).await,
            Self::Postgres(repo, ..) => repo.get_events::<A>(aggregate_id).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
            Self::Postgres(repo, ..) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.get_snapshot::<A>(aggregate_id).await,
            Self::Postgres(repo, ..) => repo.get_snapshot::<A>(aggregate_id).await,
        }
    }

    /// Unused by the write side, which calls [`EventRepository::append`] itself to learn the
    /// position; here so that the one write path serves any caller of the trait.
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match events {
            [] => Ok(()),
            events => self.append(events).await.map(drop),
        }
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.stream_events::<A>(aggregate_id).await,
            Self::Postgres(repo, ..) => repo.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.stream_all_events::<A>().await,
            Self::Postgres(repo, ..) => repo.stream_all_events::<A>().await,
        }
    }
}
