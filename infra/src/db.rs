//! One database, two backends: SQLite (embedded default) or PostgreSQL, chosen from the URL.
//!
//! The event store runs on the backend's own pool (sqlite-es / postgres-es need the concrete
//! type); the read side — log readers, views, checkpoints — runs on an `Any` pool with SQL written
//! once in the dialect both backends share, except where the backends truly differ (the log).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::pool::{PoolConnectionMetadata, PoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Any, AnyPool, Connection, Executor, PgPool, Postgres, SqlitePool};

use crate::event_store::{GroupCommit, SqliteStoreReads, SqliteWriter};
use crate::kept::KeptConnections;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backend's own pool, for the event store.
#[derive(Debug, Clone)]
pub enum StorePool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The commands' own connections to the store, for their stream reads: on SQLite plain
/// connections read in place (ADR 23), which the global log's lists of events are read on too
/// (ADR 29); on PostgreSQL kept between uses (see [`crate::kept`]), which PostgreSQL's appends use
/// too (SQLite's go through the group commit's connection).
#[derive(Debug, Clone)]
pub enum CommandConnections {
    Sqlite(Arc<SqliteStoreReads>),
    Postgres(Arc<KeptConnections<Postgres>>),
}

impl CommandConnections {
    async fn close(&self) {
        match self {
            Self::Sqlite(reads) => reads.close(),
            Self::Postgres(kept) => kept.close().await,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Database {
    pub backend: Backend,
    pub store: StorePool,
    /// The commands' own connections to the store for their stream reads (see [`CommandConnections`]).
    pub commands: CommandConnections,
    /// The read side's pool: views, checkpoints, the log reader.
    pub read_side: AnyPool,
    /// The queries' own connections, lent without sqlx's ping on their return (see [`crate::kept`]).
    pub queries: Arc<KeptConnections<Any>>,
    /// SQLite only: held around every hot write transaction of this process (see [`WriteGate`]).
    pub write_gate: Option<WriteGate>,
    /// The write side's appends, grouped into shared commits (on SQLite under the write gate).
    pub group_commit: Arc<GroupCommit>,
    /// SQLite: the database's file, for connections of the process's own that read it in place
    /// (the queries'); `None` on PostgreSQL.
    pub sqlite_file: Option<PathBuf>,
}

/// SQLite has one writer at a time, and a connection that finds the lock taken *sleeps* in its
/// busy handler (1, 2, 5, 10 … 100 ms) before it tries again, so under load a command waits far
/// longer than the transaction ahead of it takes. This process's writers queue here instead, in
/// order, and each is handed the turn the moment the previous one commits. The busy handler stays
/// as the fallback for writers in other processes (a separate `storming work`) and for rare writes
/// that do not take the gate. Never held across an `await` that needs the gate again.
pub type WriteGate = std::sync::Arc<tokio::sync::Mutex<()>>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl,
    #[error("could not connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("could not migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a SQLite database must be a file (sqlite://PATH), not {0}")]
    SqliteNotAFile(String),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite connection waits for the single writer's lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Database {
    /// Connects, creating the SQLite file on first start, and applies pending migrations.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, pool_size).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url, pool_size).await
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }

    async fn connect_sqlite(url: &str, pool_size: u32) -> Result<Self, DbError> {
        // Durability first: the write side runs WAL with synchronous=FULL, so an acknowledged
        // command survives a crash of the machine, not only of the process.
        let options = SqliteConnectOptions::from_str(url)
            .map_err(DbError::Connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        // A SQLite connection is a file handle in this process: it cannot go stale the way a
        // network connection can, so the pool does not ping it on every checkout (a round trip to
        // the connection's thread, as costly as a statement; profiled in ADR 8).
        let file = options.get_filename().to_path_buf();
        let store = SqlitePoolOptions::new()
            .max_connections(pool_size)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(DbError::Connect)?;
        SQLITE_MIGRATIONS.run(&store).await?;
        // The read side's commits do not wait for the disk (synchronous=NORMAL): nothing it
        // writes is an acknowledged command. Its views and checkpoints are derived from the log;
        // idempotency reservations and leases are redone by the next attempt. In WAL mode a power
        // loss can only drop a *suffix* of the commits, never reorder them, and every command's
        // commit (FULL, above) syncs everything before it: so what survives is always a log and
        // views that were true together at some instant, and workers redo the rest (ADR 8).
        let read_side = sqlite_read_pool(pool_size).connect(url).await.map_err(DbError::Connect)?;
        let queries =
            Arc::new(KeptConnections::new(sqlite_read_pool(pool_size).connect_lazy(url).map_err(DbError::Connect)?));
        // Created by now: the pool above has opened it. The appends, the commands' stream reads
        // and the queries open connections of their own to it (ADR 19, 21, 23).
        if !file.is_file() {
            return Err(DbError::SqliteNotAFile(url.to_string()));
        }
        // The commands' stream reads open a connection only when one is first needed: a process
        // that runs no commands (`storming work`, `migrate`) opens none for them.
        let commands = CommandConnections::Sqlite(Arc::new(SqliteStoreReads::new(&file, SQLITE_BUSY_TIMEOUT)));
        let write_gate = WriteGate::default();
        let writer = SqliteWriter::new(&file, SQLITE_BUSY_TIMEOUT);
        let group_commit = Arc::new(GroupCommit::sqlite(writer, write_gate.clone()));
        Ok(Self {
            backend: Backend::Sqlite,
            store: StorePool::Sqlite(store),
            commands,
            read_side,
            queries,
            write_gate: Some(write_gate),
            group_commit,
            sqlite_file: Some(file),
        })
    }

    async fn connect_postgres(url: &str, pool_size: u32) -> Result<Self, DbError> {
        let store = postgres_pool::<Postgres>(pool_size).connect(url).await.map_err(DbError::Connect)?;
        POSTGRES_MIGRATIONS.run(&store).await?;
        let kept = Arc::new(KeptConnections::new(
            postgres_pool::<Postgres>(pool_size).connect_lazy(url).map_err(DbError::Connect)?,
        ));
        let group_commit = Arc::new(GroupCommit::postgres(kept.clone()));
        let commands = CommandConnections::Postgres(kept);
        // As on SQLite, the read side's commits do not wait for the disk: PostgreSQL flushes its
        // WAL in order, so every command's commit (synchronous, on the store's pool) makes the
        // read side's commits before it durable too, and a crash can only lose a suffix of them,
        // which the workers redo. Each worker's batch used to wait for its own WAL flush: four
        // projections, four flushes per command beside the command's own (ADR 9).
        let read_side = postgres_pool::<Any>(pool_size)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection.execute("SET synchronous_commit = off").await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(DbError::Connect)?;
        let queries = Arc::new(KeptConnections::new(
            postgres_pool::<Any>(pool_size).connect_lazy(url).map_err(DbError::Connect)?,
        ));
        Ok(Self {
            backend: Backend::Postgres,
            store: StorePool::Postgres(store),
            commands,
            read_side,
            queries,
            write_gate: None,
            group_commit,
            sqlite_file: None,
        })
    }

    /// Readiness: the database answers and every migration of this build is applied.
    pub async fn is_ready(&self) -> bool {
        let (migrator, applied) = match &self.store {
            StorePool::Sqlite(pool) => {
                (&SQLITE_MIGRATIONS, sqlx::query_scalar::<_, i64>(APPLIED).fetch_one(pool).await)
            }
            StorePool::Postgres(pool) => {
                (&POSTGRES_MIGRATIONS, sqlx::query_scalar::<_, i64>(APPLIED).fetch_one(pool).await)
            }
        };
        matches!(applied, Ok(count) if count >= migrator.iter().count() as i64)
    }

    pub async fn close(&self) {
        self.commands.close().await;
        self.queries.close().await;
        self.read_side.close().await;
        match &self.store {
            StorePool::Sqlite(pool) => pool.close().await,
            StorePool::Postgres(pool) => pool.close().await,
        }
    }
}

/// A pool of SQLite connections for the read side (views, checkpoints, the log, queries).
fn sqlite_read_pool(pool_size: u32) -> AnyPoolOptions {
    AnyPoolOptions::new().max_connections(pool_size).test_before_acquire(false).after_connect(|connection, _| {
        Box::pin(async move {
            connection.execute("PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;").await?;
            Ok(())
        })
    })
}

/// A PostgreSQL connection idle for this long is pinged before it is handed out.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// A pool of PostgreSQL connections (the store's own driver or `Any`). sqlx pings every pooled
/// connection on checkout by default: a round trip to the server for each statement a command or
/// query runs. A connection just handed back is as alive as it was then; one that sat idle may
/// have been closed by a restart of the database, and is pinged (a dead one is dropped and another
/// taken, so the caller never sees it).
fn postgres_pool<DB: sqlx::Database>(pool_size: u32) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(pool_size)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| Box::pin(ping_if_idle(connection, meta)))
}

async fn ping_if_idle<C: Connection>(connection: &mut C, meta: PoolConnectionMetadata) -> Result<bool, sqlx::Error> {
    if meta.idle_for >= PING_WHEN_IDLE_FOR {
        connection.ping().await?;
    }
    Ok(true)
}

const APPLIED: &str = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
