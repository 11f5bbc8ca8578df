//! The cqrs-es event repository, chosen at run time from the database URL.
//!
//! One concrete type delegates to sqlite-es or postgres-es, so every aggregate has the same store
//! type whatever the backend. Only the plain event-store mode is used: the snapshot and
//! aggregate-store modes of cqrs-es 0.5.0 apply new events twice (see DESIGN.md).
//!
//! The events of a command sent with an `Idempotency-Key` are stored here instead, with the same
//! seven-column INSERT the crates use, so that the key is completed in the same transaction.
//!
//! [`CachedStore`] keeps each aggregate's last committed state in memory, so a command reads only
//! the events stored after it (usually none) instead of replaying the whole stream.

use std::collections::HashMap;
use std::sync::Mutex;

use cqrs_es::persist::{
    EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream,
    SerializedEvent, SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::Row;
use sqlx::{PgPool, SqlitePool};

use crate::db::{Database, StorePool, WriteGate};
use crate::idempotency::{CALLER_ENTRY, KEY_ENTRY};

pub enum EventRepository {
    Sqlite(SqliteEventRepository, SqlitePool, WriteGate),
    Postgres(PostgresEventRepository, PgPool),
}

const TAIL: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata \
                    FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence";

/// The events of one stream after `$sequence`, as cqrs-es stores them (the same code for both pool
/// types, hence a macro). The sequence is bound, not formatted into the SQL as the crates do, so
/// that one prepared statement serves every call.
macro_rules! tail {
    ($pool:expr, $aggregate_type:expr, $aggregate_id:expr, $sequence:expr) => {{
        let rows = sqlx::query(TAIL)
            .bind($aggregate_type)
            .bind($aggregate_id)
            .bind($sequence as i64)
            .fetch_all($pool)
            .await
            .map_err(store_error)?;
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
    }};
}

const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                            payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const COMPLETE_KEY_SQLITE: &str = "UPDATE idempotency_keys SET position = (SELECT position FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1) \
     WHERE caller = $3 AND key = $4 AND position IS NULL";
const COMPLETE_KEY_POSTGRES: &str = "UPDATE idempotency_keys SET position = (SELECT global_position FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1) \
     WHERE caller = $3 AND key = $4 AND position IS NULL";

/// Stores `events` and completes the idempotency key in one transaction on `pool` (the same code
/// for both pool types, hence a macro).
macro_rules! insert_and_complete {
    ($pool:expr, $events:expr, $complete:expr, $caller:expr, $key:expr) => {{
        let mut tx = $pool.begin().await.map_err(store_error)?;
        for event in $events {
            sqlx::query(INSERT_EVENT)
                .bind(&event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(event.sequence as i64)
                .bind(&event.event_type)
                .bind(&event.event_version)
                .bind(&event.payload)
                .bind(&event.metadata)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        let last = &$events[$events.len() - 1];
        sqlx::query($complete)
            .bind(&last.aggregate_type)
            .bind(&last.aggregate_id)
            .bind($caller)
            .bind($key)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }};
}

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

/// The idempotency key the events are stored under, if their command had one.
fn idempotency_key(events: &[SerializedEvent]) -> Option<(&str, &str)> {
    let metadata = &events.first()?.metadata;
    Some((metadata.get(CALLER_ENTRY)?.as_str()?, metadata.get(KEY_ENTRY)?.as_str()?))
}

/// The event store every aggregate uses.
pub type Store<A> = CachedStore<A>;

impl EventRepository {
    pub fn new(db: &Database) -> Self {
        match &db.store {
            StorePool::Sqlite(pool) => Self::Sqlite(
                SqliteEventRepository::new(pool.clone()),
                pool.clone(),
                db.write_gate.clone().unwrap_or_default(),
            ),
            StorePool::Postgres(pool) => Self::Postgres(PostgresEventRepository::new(pool.clone()), pool.clone()),
        }
    }

    pub fn store<A: Aggregate + Clone>(db: &Database) -> Store<A> {
        CachedStore::new(db, AGGREGATE_CACHE_ENTRIES)
    }

    /// The events of stream `aggregate_id` stored after `sequence`, in order.
    pub async fn events_after<A: Aggregate>(
        &self,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(_, pool, _) => tail!(pool, A::TYPE, aggregate_id, sequence),
            Self::Postgres(_, pool) => tail!(pool, A::TYPE, aggregate_id, sequence),
        }
    }
}

/// How many aggregates of one type [`CachedStore`] keeps (about 200 bytes to 1 KiB each).
pub const AGGREGATE_CACHE_ENTRIES: usize = 10_000;

/// cqrs-es's event store with each aggregate's last committed state kept in memory.
///
/// Loading a cached aggregate reads only the events stored after its cached sequence, so another
/// process's commands are always seen; a stale entry can cost at most a reread, never a wrong
/// decision, because the store's unique (type, id, sequence) key still decides every race. Only
/// state read from the store or stored by a successful commit enters the cache. When full, an
/// arbitrary entry is evicted: a miss costs one full replay.
pub struct CachedStore<A: Aggregate> {
    inner: PersistedEventStore<EventRepository, A>,
    repo: EventRepository,
    cache: Mutex<HashMap<String, (A, usize)>>,
    capacity: usize,
}

impl<A: Aggregate + Clone> CachedStore<A> {
    pub fn new(db: &Database, capacity: usize) -> Self {
        Self {
            inner: PersistedEventStore::new_event_store(EventRepository::new(db)),
            repo: EventRepository::new(db),
            cache: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn cached(&self, aggregate_id: &str) -> Option<(A, usize)> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(aggregate_id).cloned()
    }

    fn remember(&self, aggregate_id: &str, aggregate: A, sequence: usize) {
        if self.capacity == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= self.capacity && !cache.contains_key(aggregate_id) {
            if let Some(evicted) = cache.keys().next().cloned() {
                cache.remove(&evicted);
            }
        }
        match cache.get_mut(aggregate_id) {
            // Never replace a newer state (a concurrent command of this process committed later).
            Some((_, known)) if *known > sequence => {}
            _ => {
                cache.insert(aggregate_id.to_string(), (aggregate, sequence));
            }
        }
    }
}

impl<A: Aggregate + Clone> EventStore<A> for CachedStore<A> {
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.inner.load_events(aggregate_id).await
    }

    async fn load_aggregate(&self, aggregate_id: &str) -> Result<Self::AC, AggregateError<A::Error>> {
        let Some((aggregate, sequence)) = self.cached(aggregate_id) else {
            let context = self.inner.load_aggregate(aggregate_id).await?;
            self.remember(aggregate_id, context.aggregate.clone(), context.current_sequence);
            return Ok(context);
        };
        let mut context = EventStoreAggregateContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate,
            current_sequence: sequence,
            current_snapshot: None,
        };
        let newer = self.repo.events_after::<A>(aggregate_id, sequence).await?;
        if !newer.is_empty() {
            for event in newer {
                let envelope = EventEnvelope::<A>::try_from(event)?;
                context.current_sequence = envelope.sequence;
                context.aggregate.apply(envelope.payload);
            }
            self.remember(aggregate_id, context.aggregate.clone(), context.current_sequence);
        }
        Ok(context)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        // cqrs-es's event sink has already applied `events` to the context's aggregate while the
        // command was handled, so it is the state after them.
        let decided = context.aggregate.clone();
        let committed = self.inner.commit(events, context, metadata).await?;
        if let Some(last) = committed.last() {
            self.remember(&last.aggregate_id, decided, last.sequence);
        }
        Ok(committed)
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.get_events::<A>(aggregate_id).await,
            Self::Postgres(repo, _) => repo.get_events::<A>(aggregate_id).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
            Self::Postgres(repo, _) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.get_snapshot::<A>(aggregate_id).await,
            Self::Postgres(repo, _) => repo.get_snapshot::<A>(aggregate_id).await,
        }
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let _turn = match self {
            Self::Sqlite(.., gate) => Some(gate.lock().await),
            Self::Postgres(..) => None,
        };
        if let Some((caller, key)) = idempotency_key(events) {
            return match self {
                Self::Sqlite(_, pool, _) => insert_and_complete!(pool, events, COMPLETE_KEY_SQLITE, caller, key),
                Self::Postgres(_, pool) => insert_and_complete!(pool, events, COMPLETE_KEY_POSTGRES, caller, key),
            };
        }
        match self {
            Self::Sqlite(repo, ..) => repo.persist::<A>(events, snapshot_update).await,
            Self::Postgres(repo, _) => repo.persist::<A>(events, snapshot_update).await,
        }
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.stream_events::<A>(aggregate_id).await,
            Self::Postgres(repo, _) => repo.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Sqlite(repo, ..) => repo.stream_all_events::<A>().await,
            Self::Postgres(repo, _) => repo.stream_all_events::<A>().await,
        }
    }
}
