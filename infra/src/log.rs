//! The global log: every event of every context, read in the order workers must apply them.
//!
//! - SQLite: one writer at a time, so `position` (assigned at insert) is also commit order.
//! - PostgreSQL: `global_position` is assigned at insert but transactions commit in any order, so
//!   a reader following `global_position > last` skips events that commit late. This reader
//!   follows `(transaction_id, global_position)` and reads only transactions older than the
//!   oldest one still running (`pg_snapshot_xmin`): nothing can commit behind its cursor.
//!
//! The same reader serves the audit (with filters) and the write side's look-ups.
//!
//! On SQLite the lists of events are stepped in place, on a connection of the process's own: a
//! worker's read at the head and a transaction's events on the caller's thread, a catch-up's batch
//! and the audit's lists on a blocking thread (ADR 29). Everything else, and all of PostgreSQL, goes
//! through the read side's pool.

use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::ToSql;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, FromRow, Row};
use storming_domain::recorded::{LogCursor, Payload, RecordedEvent};

use crate::db::{Backend, CommandConnections, Database};
use crate::event_store::SqliteStoreReads;

/// Narrows an audit listing; empty for workers.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub aggregate_type: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("database error while reading the log: {0}")]
    Database(#[from] sqlx::Error),
    #[error("SQLite error while reading the log: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The thread a SQLite read ran on was shut down with the runtime before it could run.
    #[error("the log's read was cancelled: {0}")]
    Cancelled(tokio::task::JoinError),
    #[error("event at position {position} has undecodable {column}: {source}")]
    Undecodable { position: i64, column: &'static str, source: serde_json::Error },
}

#[derive(Debug, Clone)]
pub struct GlobalLog {
    pool: AnyPool,
    sql: &'static LogSql,
    /// SQLite: the connections `follow`, `read_after`, `stream` and `correlation` are stepped on
    /// (the commands' stream reads', [`CommandConnections`]); `None` on PostgreSQL.
    in_place: Option<Arc<SqliteStoreReads>>,
}

/// The SQL of one backend. On SQLite, `follow`, `read_after`, `stream` and `correlation` number
/// their parameters `?N` (rusqlite binds by number) and the rest `$N` (sqlx).
#[derive(Debug)]
struct LogSql {
    /// What workers run: no filter, so that the planner walks the log-order index and stops at
    /// the limit. PostgreSQL runs it as a prepared statement with a generic plan, which must not
    /// sort (tests/e2e/global_log.rs checks the plan): with a sort, one batch took 1.8 s at 300,000
    /// events against 2.3 ms with the index walk.
    follow: &'static str,
    read_after: &'static str,
    stream: &'static str,
    /// Found through the correlation index alone. A business transaction has a handful of
    /// events, so callers that want some of them filter these in memory: a second condition
    /// (`AND aggregate_type = $2`) let PostgreSQL, on a young table's missing statistics, intersect
    /// the correlation index with the primary key's `aggregate_type` prefix, a bitmap of half the
    /// log built for every return (0.4 ms a call at 40,000 events and growing with the log).
    correlation: &'static str,
    head: &'static str,
    cursor_of: &'static str,
    /// The newest event's position, found through the stream's key index backwards: not
    /// `MAX(position)`, which reads every event of the stream (commands slowed down as a book's
    /// history grew). The newest sequence has the highest position: it was stored after the rest.
    last_position_of_stream: &'static str,
    lag: &'static str,
    /// Whether any event is stored after a cursor, readable yet or not: the first one in log
    /// order, so that PostgreSQL walks the log-order index and stops at once, whatever its
    /// statistics say. As a `COUNT(*)` (what `lag` runs), planned from the statistics of a smaller
    /// log, it was a sequential scan of the whole table, on every empty read of every worker, and
    /// commands slowed down as the log grew (ADR 9).
    any_after: &'static str,
}

macro_rules! columns {
    (sqlite) => {
        "SELECT position, recorded_at, aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata FROM events"
    };
    (postgres) => {
        "SELECT global_position AS position, transaction_id::text::bigint AS transaction_id, \
         to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS recorded_at, \
         aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text AS payload, \
         metadata::text AS metadata FROM events"
    };
}

// Arguments of read_after, on both backends: 1 position, 2 aggregate_type, 3 event_type,
// 4 correlation_id, 5 limit, 6 transaction id (PostgreSQL only: SQLite's SQL does not number it, and
// the transaction id is the last argument of every list, so it is left unbound there).
static SQLITE: LogSql = LogSql {
    follow: concat!(columns!(sqlite), " WHERE position > ?1 ORDER BY position LIMIT ?2"),
    read_after: concat!(
        columns!(sqlite),
        " WHERE position > ?1 AND (?2 IS NULL OR aggregate_type = ?2) AND (?3 IS NULL OR event_type = ?3)",
        " AND (?4 IS NULL OR json_extract(metadata, '$.correlation_id') = ?4) ORDER BY position LIMIT ?5"
    ),
    stream: concat!(columns!(sqlite), " WHERE aggregate_type = ?1 AND aggregate_id = ?2 ORDER BY sequence"),
    correlation: concat!(columns!(sqlite), " WHERE json_extract(metadata, '$.correlation_id') = ?1 ORDER BY position"),
    head: "SELECT COALESCE(MAX(position), 0) FROM events",
    cursor_of: "SELECT 0 FROM events WHERE position = $1",
    last_position_of_stream:
        "SELECT COALESCE((SELECT position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         ORDER BY sequence DESC LIMIT 1), 0)",
    lag: "SELECT COUNT(*) AS behind, MIN(recorded_at) AS oldest FROM events WHERE position > $1",
    any_after: "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE position > $1 ORDER BY position LIMIT 1) AS next",
};

static POSTGRES: LogSql = LogSql {
    follow: concat!(
        columns!(postgres),
        " WHERE (transaction_id, global_position) > ($3::text::xid8, $1)",
        " AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
        // Qualified: a bare `transaction_id` here would name the output column (the bigint cast),
        // which no index has, and PostgreSQL would sort every event after the cursor.
        " ORDER BY events.transaction_id, events.global_position LIMIT $2"
    ),
    read_after: concat!(
        columns!(postgres),
        " WHERE ($2::text IS NULL OR aggregate_type = $2) AND ($3::text IS NULL OR event_type = $3)",
        " AND ($4::text IS NULL OR metadata ->> 'correlation_id' = $4)",
        " AND (transaction_id, global_position) > ($6::text::xid8, $1)",
        " AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
        " ORDER BY events.transaction_id, events.global_position LIMIT $5"
    ),
    stream: concat!(columns!(postgres), " WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"),
    correlation: concat!(columns!(postgres), " WHERE metadata ->> 'correlation_id' = $1 ORDER BY global_position"),
    head: "SELECT COALESCE(MAX(global_position), 0) FROM events",
    cursor_of: "SELECT transaction_id::text::bigint FROM events WHERE global_position = $1",
    last_position_of_stream:
        "SELECT COALESCE((SELECT global_position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         ORDER BY sequence DESC LIMIT 1), 0)",
    lag: "SELECT COUNT(*) AS behind, \
          to_char(MIN(recorded_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS oldest \
          FROM events WHERE (transaction_id, global_position) > ($2::text::xid8, $1)",
    any_after:
        "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE (transaction_id, global_position) > ($2::text::xid8, $1) \
                ORDER BY events.transaction_id, events.global_position LIMIT 1) AS next",
};

impl GlobalLog {
    /// The query workers follow the log with (`$1` position, `$2` limit, `$3` transaction id), for
    /// checking its plan.
    pub fn follow_sql(&self) -> &'static str {
        self.sql.follow
    }

    /// The query [`GlobalLog::any_after`] runs (`$1` position, `$2` transaction id), for checking
    /// its plan.
    pub fn any_after_sql(&self) -> &'static str {
        self.sql.any_after
    }

    /// The query [`GlobalLog::correlation`] runs (`$1` correlation id), for checking its plan.
    pub fn correlation_sql(&self) -> &'static str {
        self.sql.correlation
    }

    pub fn new(db: &Database) -> Self {
        let sql = match db.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        let in_place = match &db.commands {
            CommandConnections::Sqlite(reads) => Some(reads.clone()),
            CommandConnections::Postgres(_) => None,
        };
        Self { pool: db.read_side.clone(), sql, in_place }
    }

    /// Up to `limit` events after `cursor`, in log order, none of which can be followed later by an
    /// event that belongs before it.
    pub async fn read_after(
        &self,
        cursor: LogCursor,
        limit: i64,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let transaction_id = Arg::Text(Some(cursor.transaction_id.to_string()));
        if filter.aggregate_type.is_none() && filter.event_type.is_none() && filter.correlation_id.is_none() {
            let size = if limit <= SHORT_LIST { Size::Short } else { Size::Long };
            let args = vec![Arg::Int(cursor.position), Arg::Int(limit), transaction_id];
            return self.events(self.sql.follow, args, size).await;
        }
        // Long whatever the limit: a filter that few events match walks the log until it has them.
        let args = vec![
            Arg::Int(cursor.position),
            Arg::Text(filter.aggregate_type.clone()),
            Arg::Text(filter.event_type.clone()),
            Arg::Text(filter.correlation_id.clone()),
            Arg::Int(limit),
            transaction_id,
        ];
        self.events(self.sql.read_after, args, Size::Long).await
    }

    /// One stream (aggregate instance), in sequence order.
    pub async fn stream(&self, aggregate_type: &str, aggregate_id: &str) -> Result<Vec<RecordedEvent>, LogError> {
        let args = vec![Arg::Text(Some(aggregate_type.to_string())), Arg::Text(Some(aggregate_id.to_string()))];
        self.events(self.sql.stream, args, Size::Long).await
    }

    /// Every event of one business transaction (a handful), in log position order.
    pub async fn correlation(&self, correlation_id: &str) -> Result<Vec<RecordedEvent>, LogError> {
        self.events(self.sql.correlation, vec![Arg::Text(Some(correlation_id.to_string()))], Size::Short).await
    }

    /// The events one of the lists above finds: on SQLite stepped in place, a short list on the
    /// caller's thread and a long one on a blocking thread; else fetched through the pool.
    async fn events(&self, sql: &'static str, args: Vec<Arg>, size: Size) -> Result<Vec<RecordedEvent>, LogError> {
        let Some(reads) = &self.in_place else {
            let query = args.into_iter().fold(sqlx::query(sql), |query, arg| match arg {
                Arg::Int(int) => query.bind(int),
                Arg::Text(text) => query.bind(text),
            });
            return query.fetch_all(&self.pool).await?.iter().map(decode).collect();
        };
        if size == Size::Short {
            return step(reads, sql, &args);
        }
        let reads = reads.clone();
        match tokio::task::spawn_blocking(move || step(&reads, sql, &args)).await {
            Ok(found) => found,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(LogError::Cancelled(error)),
        }
    }

    /// The first event of a business transaction in streams of one aggregate type — how a command
    /// addressed by a transaction id (a rental id) finds the aggregate that holds it.
    pub async fn first_of_correlation(
        &self,
        correlation_id: &str,
        aggregate_type: &str,
    ) -> Result<Option<RecordedEvent>, LogError> {
        let events = self.correlation(correlation_id).await?;
        Ok(events.into_iter().find(|event| event.aggregate_type == aggregate_type))
    }

    /// The highest position in the log.
    pub async fn head(&self) -> Result<i64, LogError> {
        Ok(sqlx::query_scalar::<_, i64>(self.sql.head).fetch_one(&self.pool).await?)
    }

    /// The cursor a reader has once it has seen the event at `position`.
    pub async fn cursor_of(&self, position: i64) -> Result<Option<LogCursor>, LogError> {
        let transaction_id =
            sqlx::query_scalar::<_, i64>(self.sql.cursor_of).bind(position).fetch_optional(&self.pool).await?;
        Ok(transaction_id.map(|transaction_id| LogCursor { transaction_id, position }))
    }

    /// Whether any event is stored after `cursor`, including events [`GlobalLog::read_after`]
    /// cannot return yet (on PostgreSQL: committed behind a transaction still running).
    pub async fn any_after(&self, cursor: LogCursor) -> Result<bool, LogError> {
        let found = sqlx::query_scalar::<_, i64>(self.sql.any_after)
            .bind(cursor.position)
            .bind(cursor.transaction_id.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(found > 0)
    }

    /// The position of the newest event of one stream (0 if it has none).
    pub async fn last_position_of_stream(&self, aggregate_type: &str, aggregate_id: &str) -> Result<i64, LogError> {
        let position = sqlx::query_scalar::<_, i64>(self.sql.last_position_of_stream)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(position)
    }
}

/// How far a reader at some cursor is behind the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    /// Events stored after the cursor.
    pub events: i64,
    /// When the oldest of them was stored.
    pub oldest_recorded_at: Option<String>,
}

impl GlobalLog {
    /// The events a reader at `cursor` has not seen yet.
    pub async fn lag(&self, cursor: LogCursor) -> Result<Lag, LogError> {
        let row = sqlx::query(self.sql.lag)
            .bind(cursor.position)
            .bind(cursor.transaction_id.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(Lag { events: row.try_get("behind")?, oldest_recorded_at: row.try_get("oldest")? })
    }
}

/// SQLite: an unfiltered read of at most this many events is short: stepped on the caller's thread,
/// as a command's stream read is (ADR 23). A worker at the head asks for this many and finds a few
/// (tens of microseconds, less than handing the read to another thread); a full one holds the
/// thread about a millisecond. A longer list (a catch-up's batch, up to 16,000 events:
/// milliseconds), an audit's filtered one (it walks the log until enough events match) and a
/// stream (unbounded) go to a blocking thread, off the runtime's.
const SHORT_LIST: i64 = 500;

/// How many events a list can hold (see [`SHORT_LIST`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Short,
    Long,
}

/// An argument of a list's SQL, bound in order on either backend.
#[derive(Debug, Clone)]
enum Arg {
    Int(i64),
    Text(Option<String>),
}

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Int(int) => ToSqlOutput::from(*int),
            Arg::Text(Some(text)) => ToSqlOutput::from(text.as_str()),
            Arg::Text(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

fn decode(row: &AnyRow) -> Result<RecordedEvent, LogError> {
    EventColumns::from_row(row)?.decode_with(row.try_get("transaction_id")?)
}

/// SQLite: the events `sql` (reading `columns!(sqlite)`) finds, stepped on one of `reads`'
/// connections. Its `?N` are bound to the first `args`; the rest (the transaction id, last) it does
/// not use.
fn step(reads: &SqliteStoreReads, sql: &str, args: &[Arg]) -> Result<Vec<RecordedEvent>, LogError> {
    reads.with_connection(|connection| step_on(connection, sql, args))?
}

fn step_on(connection: &rusqlite::Connection, sql: &str, args: &[Arg]) -> Result<Vec<RecordedEvent>, LogError> {
    let mut statement = connection.prepare_cached(sql)?;
    let numbered = statement.parameter_count();
    debug_assert!(numbered <= args.len(), "every parameter of {sql} has an argument");
    for (index, arg) in args.iter().enumerate().take(numbered) {
        statement.raw_bind_parameter(index + 1, arg)?;
    }
    let mut rows = statement.raw_query();
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        // In `columns!(sqlite)`'s order. No transaction id: one writer at a time makes it 0.
        let columns = EventColumns {
            position: row.get(0)?,
            recorded_at: row.get(1)?,
            aggregate_type: row.get(2)?,
            aggregate_id: row.get(3)?,
            sequence: row.get(4)?,
            event_type: row.get(5)?,
            event_version: row.get(6)?,
            payload: row.get(7)?,
            metadata: row.get(8)?,
        };
        events.push(columns.decode_with(0)?);
    }
    Ok(events)
}

/// One event's columns: a row's, by name on PostgreSQL, by position on SQLite ([`step`]).
#[derive(sqlx::FromRow)]
struct EventColumns {
    position: i64,
    recorded_at: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

impl EventColumns {
    /// `transaction_id`: PostgreSQL's; 0 on SQLite, where one writer at a time makes the position
    /// commit order.
    fn decode_with(self, transaction_id: i64) -> Result<RecordedEvent, LogError> {
        let position = self.position;
        let undecodable = |column| move |source| LogError::Undecodable { position, column, source };
        Ok(RecordedEvent {
            position,
            transaction_id,
            payload: Payload::parse(self.payload).map_err(undecodable("payload"))?,
            metadata: serde_json::from_str(&self.metadata).map_err(undecodable("metadata"))?,
            recorded_at: self.recorded_at,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
        })
    }
}
