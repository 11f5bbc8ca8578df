//! The cqrs-es event repository, chosen at run time from the database URL.
//!
//! One concrete type delegates to sqlite-es or postgres-es, so every aggregate has the same store
//! type whatever the backend. Only the plain event-store mode is used: the snapshot and
//! aggregate-store modes of cqrs-es 0.5.0 apply new events twice (see DESIGN.md).

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

use crate::db::{Database, StorePool};

pub enum EventRepository {
    Sqlite(SqliteEventRepository),
    Postgres(PostgresEventRepository),
}

/// The event store every aggregate uses.
pub type Store<A> = PersistedEventStore<EventRepository, A>;

impl EventRepository {
    pub fn new(db: &Database) -> Self {
        match &db.store {
            StorePool::Sqlite(pool) => Self::Sqlite(SqliteEventRepository::new(pool.clone())),
            StorePool::Postgres(pool) => Self::Postgres(PostgresEventRepository::new(pool.clone())),
        }
    }

    pub fn store<A: Aggregate>(db: &Database) -> Store<A> {
        PersistedEventStore::new_event_store(Self::new(db))
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(repo) => repo.get_events::<A>(aggregate_id).await,
            Self::Postgres(repo) => repo.get_events::<A>(aggregate_id).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Sqlite(repo) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
            Self::Postgres(repo) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        match self {
            Self::Sqlite(repo) => repo.get_snapshot::<A>(aggregate_id).await,
            Self::Postgres(repo) => repo.get_snapshot::<A>(aggregate_id).await,
        }
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match self {
            Self::Sqlite(repo) => repo.persist::<A>(events, snapshot_update).await,
            Self::Postgres(repo) => repo.persist::<A>(events, snapshot_update).await,
        }
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Sqlite(repo) => repo.stream_events::<A>(aggregate_id).await,
            Self::Postgres(repo) => repo.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Sqlite(repo) => repo.stream_all_events::<A>().await,
            Self::Postgres(repo) => repo.stream_all_events::<A>().await,
        }
    }
}
