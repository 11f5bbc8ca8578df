//! One database, two backends: SQLite (embedded default) or PostgreSQL, chosen from the URL.
//!
//! The event store runs on the backend's own pool (sqlite-es / postgres-es need the concrete
//! type); the read side — log readers, views, checkpoints — runs on an `Any` pool with SQL written
//! once in the dialect both backends share, except where the backends truly differ (the log).
//!
//! On SQLite the read side's tables live in a file of their own beside the log's (ADR 32): SQLite
//! has one writer per file, and the views' batches no longer take the one the commands' appends
//! wait for. The read side's connections open the views' file and attach the log's as `log`;
//! every table name is unique across the two, so the SQL names tables without their schema.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::pool::{PoolConnectionMetadata, PoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, PgPool, Postgres, SqlitePool};

use crate::callers::Callers;
use crate::event_store::{GroupCommit, SqliteStoreReads, SqliteWriter};
use crate::foreign::{ForeignCommits, WRITER_SETTING};
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
    /// SQLite only: held around every append transaction of this process on the log's file (see
    /// [`WriteGate`]); the group commit holds it.
    pub write_gate: Option<WriteGate>,
    /// SQLite only: held around every hot write transaction of this process on the views' file
    /// (the projections' batches, the policies' checkpoints).
    pub views_gate: Option<WriteGate>,
    /// The write side's appends, grouped into shared commits (on SQLite under the write gate).
    pub group_commit: Arc<GroupCommit>,
    /// SQLite: the requests this process serves, as the HTTP server reports them; while they come
    /// one at a time, the group commit stores a request's append on its own thread (ADR 41).
    pub callers: Option<Arc<Callers>>,
    /// SQLite: the log's file (events, idempotency keys), for connections of the process's own
    /// that read or append in place; `None` on PostgreSQL.
    pub sqlite_file: Option<PathBuf>,
    /// SQLite: the read side's file (views, checkpoints, leases, generations), for the
    /// projections' batches and the queries' reads in place; `None` on PostgreSQL.
    pub sqlite_views_file: Option<PathBuf>,
    /// What the process has heard of other processes' commits (ADR 48): on PostgreSQL once
    /// [`crate::foreign::listen`] runs; on SQLite never anything, so every command reads.
    pub foreign: Arc<ForeignCommits>,
}

/// SQLite has one writer at a time per file, and a connection that finds the lock taken *sleeps*
/// in its busy handler (1, 2, 5, 10 … 100 ms) before it tries again, so under load a command waits
/// far longer than the transaction ahead of it takes. This process's writers of a file queue here
/// instead, in order, and each is handed the turn the moment the previous one commits: one gate
/// per file, [`Database::write_gate`] for the log's and [`Database::views_gate`] for the read
/// side's (ADR 32). The busy handler stays
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
static SQLITE_VIEWS_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite-views");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite connection waits for the single writer's lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The page size of a new views' file (the log's keeps SQLite's 4 KiB). A view's batch changes a
/// row here and a row there, and SQLite writes each page it changed whole, to the WAL and again
/// when it checkpoints, on the disk the commands' syncs wait for: with 2 KiB pages the commands'
/// p99 at 16 clients fell by about a sixth, the catch-ups unchanged; 1 KiB cost the catch-ups
/// 30% (ADR 34). A file made by an older build keeps its page size (SQLite cannot change it in
/// WAL mode) until it is deleted and rebuilt.
pub const VIEWS_PAGE_SIZE: u32 = 2048;

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
        drop_views_left_in_the_log(&store).await.map_err(DbError::Connect)?;
        // Created by now: the pool above has opened it. The appends, the commands' stream reads
        // and the log's readers open connections of their own to it (ADR 21, 23, 29).
        if !file.is_file() {
            return Err(DbError::SqliteNotAFile(url.to_string()));
        }
        // The read side's commits do not wait for the disk (synchronous=NORMAL): nothing it
        // writes is an acknowledged command. Its views and checkpoints are derived from the log;
        // idempotency reservations and leases are redone by the next attempt. In WAL mode a power
        // loss can only drop a *suffix* of a file's commits, never reorder them (ADR 8), and a
        // worker reads only events whose commit was synced (FULL syncs a commit before any other
        // connection sees it): so the views' file can lose its last batches, never hold one the
        // log lost, and the workers redo what it lost from their checkpoints, which are in the
        // same file as the views (ADR 32).
        let views_file = views_file_beside(&file);
        let views = SqliteConnectOptions::new()
            .filename(&views_file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .page_size(VIEWS_PAGE_SIZE)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        // The read side's pools are `Any` pools, opened by URL: sqlx writes the file's name into
        // one, percent-encoded, as its own parser reads it back (a name may hold `%`, `?` or `#`).
        let views_url = views.to_url_lossy().to_string();
        let migrating =
            SqlitePoolOptions::new().max_connections(1).connect_with(views).await.map_err(DbError::Connect)?;
        let migrated = SQLITE_VIEWS_MIGRATIONS.run(&migrating).await;
        migrating.close().await;
        migrated?;
        let read_side = sqlite_read_pool(pool_size, &file).connect(&views_url).await.map_err(DbError::Connect)?;
        let queries = Arc::new(KeptConnections::new(
            sqlite_read_pool(pool_size, &file).connect_lazy(&views_url).map_err(DbError::Connect)?,
        ));
        // The commands' stream reads open a connection only when one is first needed: a process
        // that runs no commands (`storming work`, `migrate`) opens none for them.
        let commands = CommandConnections::Sqlite(Arc::new(SqliteStoreReads::new(&file, SQLITE_BUSY_TIMEOUT)));
        let write_gate = WriteGate::default();
        let writer = SqliteWriter::new(&file, SQLITE_BUSY_TIMEOUT);
        let callers = Arc::new(Callers::default());
        let group_commit = Arc::new(GroupCommit::sqlite(writer, write_gate.clone(), callers.clone()));
        Ok(Self {
            backend: Backend::Sqlite,
            store: StorePool::Sqlite(store),
            commands,
            read_side,
            queries,
            write_gate: Some(write_gate),
            views_gate: Some(WriteGate::default()),
            group_commit,
            callers: Some(callers),
            sqlite_file: Some(file),
            sqlite_views_file: Some(views_file),
            foreign: Arc::default(),
        })
    }

    async fn connect_postgres(url: &str, pool_size: u32) -> Result<Self, DbError> {
        let foreign = Arc::<ForeignCommits>::default();
        let store = writers_pool(pool_size, &foreign).connect(url).await.map_err(DbError::Connect)?;
        POSTGRES_MIGRATIONS.run(&store).await?;
        let kept = Arc::new(KeptConnections::new(
            writers_pool(pool_size, &foreign).connect_lazy(url).map_err(DbError::Connect)?,
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
            views_gate: None,
            group_commit,
            callers: None,
            sqlite_file: None,
            sqlite_views_file: None,
            foreign,
        })
    }

    /// Readiness: the database answers and every migration of this build is applied (on SQLite,
    /// in both files).
    pub async fn is_ready(&self) -> bool {
        match &self.store {
            StorePool::Sqlite(pool) => {
                all_applied(&SQLITE_MIGRATIONS, sqlx::query_scalar(APPLIED).fetch_one(pool).await)
                    && all_applied(
                        &SQLITE_VIEWS_MIGRATIONS,
                        sqlx::query_scalar(APPLIED_HERE).fetch_one(&self.read_side).await,
                    )
            }
            StorePool::Postgres(pool) => {
                all_applied(&POSTGRES_MIGRATIONS, sqlx::query_scalar(APPLIED).fetch_one(pool).await)
            }
        }
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

/// A pool of SQLite connections for the read side (views, checkpoints, the log, queries): each
/// opens the views' file and attaches the log's file `log` as `log` (ADR 32).
fn sqlite_read_pool(pool_size: u32, log: &Path) -> AnyPoolOptions {
    let log = log.display().to_string();
    AnyPoolOptions::new().max_connections(pool_size).test_before_acquire(false).after_connect(move |connection, _| {
        let log = log.clone();
        Box::pin(async move {
            connection.execute("PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;").await?;
            sqlx::query("ATTACH DATABASE $1 AS log").bind(log).execute(&mut *connection).await?;
            connection.execute("PRAGMA log.synchronous = NORMAL;").await?;
            Ok(())
        })
    })
}

/// A log's file from before ADR 32 held the views' tables too (`rental_status_g1`, ...: a view's
/// tables end in `_g` and their generation). Its migration 0008 dropped their registry; the tables
/// go here, so that no name is found in both files.
async fn drop_views_left_in_the_log(store: &SqlitePool) -> Result<(), sqlx::Error> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB '*_g[0-9]*'")
            .fetch_all(store)
            .await?;
    let generation = |name: &str| name.rsplit_once("_g").is_some_and(|(_, g)| g.bytes().all(|b| b.is_ascii_digit()));
    for table in tables.iter().filter(|name| generation(name)) {
        tracing::info!(table, "dropping a view's table left in the log's file (the views have a file of their own)");
        sqlx::query(&format!("DROP TABLE \"{table}\"")).execute(store).await?;
    }
    Ok(())
}

/// The read side's file beside the log's: `storming.db` → `storming-views.db`.
pub fn views_file_beside(log: &Path) -> PathBuf {
    let stem = log.file_stem().unwrap_or_default().to_string_lossy();
    let name = match log.extension() {
        Some(extension) => format!("{stem}-views.{}", extension.to_string_lossy()),
        None => format!("{stem}-views"),
    };
    log.with_file_name(name)
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

/// A pool whose connections may store events: each names this process as their writer, which the
/// notification of each commit carries (ADR 48).
fn writers_pool(pool_size: u32, foreign: &ForeignCommits) -> PoolOptions<Postgres> {
    let writer = foreign.writer().to_string();
    postgres_pool::<Postgres>(pool_size).after_connect(move |connection, _| {
        let writer = writer.clone();
        Box::pin(async move {
            sqlx::query("SELECT set_config($1, $2, false)")
                .bind(WRITER_SETTING)
                .bind(writer)
                .execute(&mut *connection)
                .await?;
            Ok(())
        })
    })
}

async fn ping_if_idle<C: Connection>(connection: &mut C, meta: PoolConnectionMetadata) -> Result<bool, sqlx::Error> {
    if meta.idle_for >= PING_WHEN_IDLE_FOR {
        connection.ping().await?;
    }
    Ok(true)
}

const APPLIED: &str = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
/// Whether a file's count of applied migrations covers every migration of `migrator`.
fn all_applied(migrator: &sqlx::migrate::Migrator, applied: Result<i64, sqlx::Error>) -> bool {
    matches!(applied, Ok(count) if count >= migrator.iter().count() as i64)
}

/// On the read side's connections the log's file is attached: its own migrations, not the log's.
const APPLIED_HERE: &str = "SELECT COUNT(*) FROM main._sqlx_migrations WHERE success";

#[cfg(test)]
mod tests {
    use sqlx::migrate::Migrator;

    use super::*;

    /// A directory of its own under the system's temporary one, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("storming-db-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn tables(file: &Path) -> Vec<String> {
        let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(file)).await.unwrap();
        let names = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        names
    }

    /// `.cargo/config.toml` sets how SQLite is compiled (`LIBSQLITE3_FLAGS`, ADR 28); an
    /// environment that sets the variable itself replaces them, and a build without them would
    /// still pass every other test, only slower.
    #[test]
    fn it_should_link_a_sqlite_compiled_with_the_workspaces_flags() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let mut statement = connection.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect();
        assert!(options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"), "{options:?}");
        assert!(!options.iter().any(|option| option == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
    }

    #[test]
    fn it_should_name_the_views_file_after_the_logs() {
        assert_eq!(views_file_beside(Path::new("/data/storming.db")), Path::new("/data/storming-views.db"));
        assert_eq!(views_file_beside(Path::new("shop")), Path::new("shop-views"));
        assert_eq!(views_file_beside(Path::new("a.b/c.sqlite3")), Path::new("a.b/c-views.sqlite3"));
    }

    #[tokio::test]
    async fn it_should_keep_the_read_side_in_a_file_of_its_own_and_reach_both_from_the_read_side() {
        // A name that a URL must encode: the views' file is found by its exact name all the same.
        let dir = Dir::new("split 100%?#");
        let log = dir.0.join("app.db");
        let url = SqliteConnectOptions::new().filename(&log).to_url_lossy().to_string();
        let database = Database::connect(&url, 2).await.unwrap();
        assert_eq!(database.sqlite_views_file.as_deref(), Some(dir.0.join("app-views.db").as_path()));
        assert!(database.is_ready().await);

        // The read side's connections name tables without their file: both are found.
        sqlx::query("CREATE TABLE things_g1 (id text PRIMARY KEY)").execute(&database.read_side).await.unwrap();
        let events: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&database.read_side).await.unwrap();
        assert_eq!(events, 0);
        database.close().await;

        assert_eq!(tables(&log).await, ["events", "idempotency_keys"]);
        let views = tables(&dir.0.join("app-views.db")).await;
        assert_eq!(views, ["checkpoints", "projection_generations", "things_g1", "worker_leases"]);
        assert_eq!(page_size(&log), 4096);
        assert_eq!(page_size(&dir.0.join("app-views.db")), VIEWS_PAGE_SIZE);
    }

    fn page_size(file: &Path) -> u32 {
        let connection = rusqlite::Connection::open(file).unwrap();
        connection.query_row("PRAGMA page_size", [], |row| row.get(0)).unwrap()
    }

    /// A log file `old.db` in `dir` as a build that knew only the migrations up to `version` left it.
    async fn log_migrated_up_to(dir: &Dir, version: i64) -> (PathBuf, SqlitePool) {
        let log = dir.0.join("old.db");
        let old = dir.0.join("old-migrations");
        std::fs::create_dir_all(&old).unwrap();
        for migration in SQLITE_MIGRATIONS.iter().filter(|migration| migration.version <= version) {
            let name = format!("{:04}_{}.sql", migration.version, migration.description.replace(' ', "_"));
            std::fs::write(old.join(name), migration.sql.as_bytes()).unwrap();
        }
        let options =
            SqliteConnectOptions::new().filename(&log).create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
        (log, pool)
    }

    #[tokio::test]
    async fn it_should_move_a_log_files_read_side_out_and_keep_its_events_and_other_tables() {
        let dir = Dir::new("upgrade");
        // A file as the last build before ADR 32 left it: its first seven migrations, a view's
        // table of generation 1 with a row, a checkpoint, an event, and a table of the operator's.
        let (log, pool) = log_migrated_up_to(&dir, 7).await;
        for statement in [
            "CREATE TABLE rental_status_g1 (rental_id text PRIMARY KEY, status text)",
            "INSERT INTO rental_status_g1 VALUES ('r1', 'RENTED')",
            "INSERT INTO checkpoints (name, position, updated_at) VALUES ('rental_status@g1', 1, 'now')",
            "CREATE TABLE operator_notes (note text)",
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('t', 'a', 1, 'Happened', '1', '{}', '{}')",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let database = Database::connect(&format!("sqlite://{}", log.display()), 2).await.unwrap();
        assert!(database.is_ready().await);
        let position: i64 =
            sqlx::query_scalar("SELECT position FROM events").fetch_one(&database.read_side).await.unwrap();
        assert_eq!(position, 1, "the log is kept");
        let checkpoints: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM checkpoints").fetch_one(&database.read_side).await.unwrap();
        assert_eq!(checkpoints, 0, "the views start over in their own file");
        database.close().await;
        assert_eq!(tables(&log).await, ["events", "idempotency_keys", "operator_notes"]);
    }

    #[tokio::test]
    async fn it_should_key_an_older_log_by_its_positions_and_keep_its_events() {
        let dir = Dir::new("rowid");
        // A log as the last build before ADR 37 left it: its first eight migrations, events
        // numbered by the trigger, and one given its position by the writer.
        let (log, pool) = log_migrated_up_to(&dir, 8).await;
        let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
                      metadata, position) VALUES ('t', $1, $2, 'Happened', '1', '{}', '{\"correlation_id\":\"c\"}', $3)";
        for (stream, sequence, position) in [("b", 1, None), ("a", 1, None), ("a", 2, Some(3)), ("b", 2, None)] {
            sqlx::query(insert).bind(stream).bind(sequence).bind(position).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let database = Database::connect(&format!("sqlite://{}", log.display()), 2).await.unwrap();
        let rows: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT position, aggregate_id, sequence FROM events ORDER BY rowid")
                .fetch_all(&database.read_side)
                .await
                .unwrap();
        let expected = [(1, "b", 1), (2, "a", 1), (3, "a", 2), (4, "b", 2)].map(|(p, s, n)| (p, s.to_string(), n));
        assert_eq!(rows, expected, "every event kept at its position, the table in log order");
        let StorePool::Sqlite(store) = &database.store else { unreachable!() };
        let next: i64 = sqlx::query_scalar(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('t', 'c', 1, 'Happened', '1', '{}', '{}') RETURNING position",
        )
        .fetch_one(store)
        .await
        .unwrap();
        assert_eq!(next, 5, "a row stored without a position is the log's next");
        let again = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('t', 'a', 2, 'Happened', '1', '{}', '{}')",
        )
        .execute(store)
        .await;
        let error = again.expect_err("a stream's sequence is stored once");
        assert!(error.as_database_error().is_some_and(|error| error.is_unique_violation()), "{error}");
        database.close().await;

        let connection = rusqlite::Connection::open(&log).unwrap();
        let texts = |sql: &str, column: usize| -> Vec<String> {
            let mut statement = connection.prepare(sql).unwrap();
            statement.query_map([], |row| row.get(column)).unwrap().collect::<Result<_, _>>().unwrap()
        };
        let plan = texts("EXPLAIN QUERY PLAN SELECT * FROM events WHERE position > 2 ORDER BY position LIMIT 10", 3);
        assert_eq!(plan, ["SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"], "the log read in its table's order");
        let indexes =
            texts("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name", 0);
        assert_eq!(indexes, ["events_correlation", "sqlite_autoindex_events_1"], "no index on position");
    }
}
