//! The cqrs-es event repository, chosen at run time from the database URL.
//!
//! One concrete type delegates to sqlite-es or postgres-es, so every aggregate has the same store
//! type whatever the backend. Only the plain event-store mode is used: the snapshot and
//! aggregate-store modes of cqrs-es 0.5.0 apply new events twice (see DESIGN.md).
//!
//! The events of a command sent with an `Idempotency-Key` are stored here instead, with the same
//! seven-column INSERT the crates use, so that the key is completed in the same transaction.

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::{PgPool, SqlitePool};

use crate::db::{Database, StorePool};
use crate::idempotency::{CALLER_ENTRY, KEY_ENTRY};

pub enum EventRepository {
    Sqlite(SqliteEventRepository, SqlitePool),
    Postgres(PostgresEventRepository, PgPool),
}

const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                            payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const COMPLETE_KEY_SQLITE: &str = "UPDATE idempotency_keys SET position = (SELECT MAX(position) FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2) WHERE caller = $3 AND key = $4 AND position IS NULL";
const COMPLETE_KEY_POSTGRES: &str = "UPDATE idempotency_keys SET position = (SELECT MAX(global_position) FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2) WHERE caller = $3 AND key = $4 AND position IS NULL";

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
pub type Store<A> = PersistedEventStore<EventRepository, A>;

impl EventRepository {
    pub fn new(db: &Database) -> Self {
        match &db.store {
            StorePool::Sqlite(pool) => Self::Sqlite(SqliteEventRepository::new(pool.clone()), pool.clone()),
            StorePool::Postgres(pool) => Self::Postgres(PostgresEventRepository::new(pool.clone()), pool.clone()),
        }
    }

    pub fn store<A: Aggregate>(db: &Database) -> Store<A> {
        PersistedEventStore::new_event_store(Self::new(db))
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(repo, _) => repo.get_events::<A>(aggregate_id).await,
            Self::Postgres(repo, _) => repo.get_events::<A>(aggregate_id).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(repo, _) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
            Self::Postgres(repo, _) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        match self {
            Self::Sqlite(repo, _) => repo.get_snapshot::<A>(aggregate_id).await,
            Self::Postgres(repo, _) => repo.get_snapshot::<A>(aggregate_id).await,
        }
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if let Some((caller, key)) = idempotency_key(events) {
            return match self {
                Self::Sqlite(_, pool) => insert_and_complete!(pool, events, COMPLETE_KEY_SQLITE, caller, key),
                Self::Postgres(_, pool) => insert_and_complete!(pool, events, COMPLETE_KEY_POSTGRES, caller, key),
            };
        }
        match self {
            Self::Sqlite(repo, _) => repo.persist::<A>(events, snapshot_update).await,
            Self::Postgres(repo, _) => repo.persist::<A>(events, snapshot_update).await,
        }
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Sqlite(repo, _) => repo.stream_events::<A>(aggregate_id).await,
            Self::Postgres(repo, _) => repo.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Sqlite(repo, _) => repo.stream_all_events::<A>().await,
            Self::Postgres(repo, _) => repo.stream_all_events::<A>().await,
        }
    }
}
