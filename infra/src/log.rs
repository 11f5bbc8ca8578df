//! The global log: every event of every context, read in the order workers must apply them.
//!
//! - SQLite: one writer at a time, so `position` (assigned at insert) is also commit order.
//! - PostgreSQL: `global_position` is assigned at insert but transactions commit in any order, so
//!   a reader following `global_position > last` skips events that commit late. This reader
//!   follows `(transaction_id, global_position)` and reads only transactions older than the
//!   oldest one still running (`pg_snapshot_xmin`): nothing can commit behind its cursor.
//!
//! The same reader serves the audit (with filters) and the write side's look-ups.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, FromRow, Row};
use storming_domain::recorded::{LogCursor, Payload, RecordedEvent};

use crate::db::{Backend, Database};

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
    #[error("event at position {position} has undecodable {column}: {source}")]
    Undecodable { position: i64, column: &'static str, source: serde_json::Error },
}

#[derive(Debug, Clone)]
pub struct GlobalLog {
    pool: AnyPool,
    sql: &'static LogSql,
}

/// How a backend's lists of events come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// A row per event (PostgreSQL: the rows of a result arrive together on the socket).
    PerEvent,
    /// One row, one JSON array of [`EventColumns`]s (SQLite: each row is otherwise a message from
    /// sqlx's connection thread and an `Any` row to decode; a catch-up reads 2,000 at a time).
    OneJsonArray,
}

/// The SQL of one backend.
#[derive(Debug)]
struct LogSql {
    /// How `follow`, `read_after`, `stream` and `correlation` return their events.
    rows: Rows,
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
        "SELECT position, 0 AS transaction_id, recorded_at, aggregate_type, aggregate_id, sequence, \
         event_type, event_version, payload, metadata FROM events"
    };
    (postgres) => {
        "SELECT global_position AS position, transaction_id::text::bigint AS transaction_id, \
         to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS recorded_at, \
         aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text AS payload, \
         metadata::text AS metadata FROM events"
    };
}

/// SQLite: the events `$select` finds (it reads `columns!(sqlite)`), in `$order`, as one JSON array
/// of arrays in the order of [`EventColumns`]. Payload and metadata go in as JSON strings, their text
/// as stored, and are decoded as the rows' columns are (a position names what is undecodable).
macro_rules! one_json_array {
    ($select:expr, $order:literal) => {
        concat!(
            "SELECT json_group_array(json_array(position, recorded_at, aggregate_type, aggregate_id, sequence, \
             event_type, event_version, payload, metadata) ORDER BY ",
            $order,
            ") FROM (",
            $select,
            ")"
        )
    };
}

// Arguments of read_after, on both backends: $1 position, $2 aggregate_type, $3 event_type,
// $4 correlation_id, $5 limit, $6 transaction id (PostgreSQL only; SQLite ignores it).
static SQLITE: LogSql = LogSql {
    rows: Rows::OneJsonArray,
    follow: one_json_array!(concat!(columns!(sqlite), " WHERE position > $1 ORDER BY position LIMIT $2"), "position"),
    read_after: one_json_array!(
        concat!(
            columns!(sqlite),
            " WHERE position > $1 AND ($2 IS NULL OR aggregate_type = $2) AND ($3 IS NULL OR event_type = $3)",
            " AND ($4 IS NULL OR json_extract(metadata, '$.correlation_id') = $4) ORDER BY position LIMIT $5"
        ),
        "position"
    ),
    stream: one_json_array!(
        concat!(columns!(sqlite), " WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"),
        "sequence"
    ),
    correlation: one_json_array!(
        concat!(columns!(sqlite), " WHERE json_extract(metadata, '$.correlation_id') = $1 ORDER BY position"),
        "position"
    ),
    head: "SELECT COALESCE(MAX(position), 0) FROM events",
    cursor_of: "SELECT 0 FROM events WHERE position = $1",
    last_position_of_stream:
        "SELECT COALESCE((SELECT position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         ORDER BY sequence DESC LIMIT 1), 0)",
    lag: "SELECT COUNT(*) AS behind, MIN(recorded_at) AS oldest FROM events WHERE position > $1",
    any_after: "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE position > $1 ORDER BY position LIMIT 1) AS next",
};

static POSTGRES: LogSql = LogSql {
    rows: Rows::PerEvent,
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
        Self { pool: db.read_side.clone(), sql }
    }

    /// Up to `limit` events after `cursor`, in log order, none of which can be followed later by an
    /// event that belongs before it.
    pub async fn read_after(
        &self,
        cursor: LogCursor,
        limit: i64,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        if filter.aggregate_type.is_none() && filter.event_type.is_none() && filter.correlation_id.is_none() {
            let query = sqlx::query(self.sql.follow).bind(cursor.position).bind(limit);
            return self.events(query.bind(cursor.transaction_id.to_string())).await;
        }
        let query = sqlx::query(self.sql.read_after)
            .bind(cursor.position)
            .bind(filter.aggregate_type.clone())
            .bind(filter.event_type.clone())
            .bind(filter.correlation_id.clone())
            .bind(limit)
            .bind(cursor.transaction_id.to_string());
        self.events(query).await
    }

    /// One stream (aggregate instance), in sequence order.
    pub async fn stream(&self, aggregate_type: &str, aggregate_id: &str) -> Result<Vec<RecordedEvent>, LogError> {
        self.events(sqlx::query(self.sql.stream).bind(aggregate_type).bind(aggregate_id)).await
    }

    /// Every event of one business transaction, in log position order.
    pub async fn correlation(&self, correlation_id: &str) -> Result<Vec<RecordedEvent>, LogError> {
        self.events(sqlx::query(self.sql.correlation).bind(correlation_id)).await
    }

    /// The events one of the lists above finds, read as this backend returns them.
    async fn events<'q>(&self, query: Query<'q, Any, AnyArguments<'q>>) -> Result<Vec<RecordedEvent>, LogError> {
        match self.sql.rows {
            Rows::PerEvent => query.fetch_all(&self.pool).await?.iter().map(decode).collect(),
            Rows::OneJsonArray => {
                let json: String = query.fetch_one(&self.pool).await?.try_get(0)?;
                let events: Vec<EventColumns> =
                    serde_json::from_str(&json).map_err(|error| sqlx::Error::Decode(error.into()))?;
                events.into_iter().map(EventColumns::decode).collect()
            }
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

fn decode(row: &AnyRow) -> Result<RecordedEvent, LogError> {
    EventColumns::from_row(row)?.decode_with(row.try_get("transaction_id")?)
}

/// One event's columns: a row's, by name, or an element of SQLite's lists (`one_json_array!`),
/// an array in this order.
#[derive(serde::Deserialize, sqlx::FromRow)]
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
    /// On SQLite, where one writer at a time makes every transaction id 0.
    fn decode(self) -> Result<RecordedEvent, LogError> {
        self.decode_with(0)
    }

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
