//! Where a query reads its view: a connection of the queries' `Any` pool, or, on SQLite, a
//! connection of this process's own that the query reads in place.
//!
//! sqlx runs every SQLite connection on a thread of its own: each statement is a message to that
//! thread and its answer a message back, two hand-offs between threads per statement, and on two
//! cores those hand-offs cost the machine more than the statement itself (BENCHMARKS.md,
//! sixteenth session). A view's query on SQLite is a read of a few pages of a file already in the
//! page cache, tens of microseconds: [`SqliteReads`] keeps plain connections (rusqlite, the same
//! SQLite library sqlx links) and a query steps its statement on the thread that serves the
//! request, with no hand-off (ADR 19). A reader never waits for the writer in WAL mode, so such a
//! read holds the thread for as long as its own pages take, save for the rare waits of
//! `BUSY_TIMEOUT`.
//!
//! Every read goes through [`ViewReader::each_row`]: the statement is written once, in the dialect
//! both backends share, and each row read into one `serde` type and handed to a [`RowSink`] as it
//! is read; [`ViewReader::rows`] collects owned rows. On SQLite each row is read from SQLite's own
//! values as the statement steps (`sqlite_row`, ADR 28), and a row type may borrow its text from
//! them: the lists the queries serve most are written out as JSON that way, row by row (ADR 30). Through sqlx's
//! thread, a row at a time, a page of ten rentals was answered at half the rate of a page of one,
//! so a page came from SQLite as one JSON value for a while (ADR 12); read in place there is no
//! hand-off per row, and building and parsing that JSON (with a sort in a temporary b-tree to
//! keep the rows' order inside the aggregate) cost more than the rows. On PostgreSQL, whose rows
//! arrive together on the socket, the rows are read as they are.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::ToSql;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{AnyConnection, Arguments, FromRow};

use crate::sqlite_row;

/// A value bound to a view query's `$n`.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

/// The connection a query reads its view on.
pub enum ViewReader<'c> {
    /// PostgreSQL.
    Any(&'c mut AnyConnection),
    /// SQLite, read in place on the calling thread.
    Sqlite(&'c mut rusqlite::Connection),
}

/// Where a query's rows go, one at a time as they are read (ADR 30). Its [`RowSink::Row`] may
/// borrow its text from the row it is read from (`&'r str` fields): on SQLite that is the
/// statement's own value, valid until the statement steps to the next row, so a row is written
/// out without a string of its own; on PostgreSQL it is the fetched row's.
pub trait RowSink {
    /// A row as read, its fields named as the statement's columns.
    type Row<'r>: Deserialize<'r> + FromRow<'r, AnyRow>;

    fn take(&mut self, row: Self::Row<'_>) -> Result<(), sqlx::Error>;
}

/// Owned rows, collected.
impl<T: DeserializeOwned + for<'r> FromRow<'r, AnyRow>> RowSink for Vec<T> {
    type Row<'r> = T;

    fn take(&mut self, row: T) -> Result<(), sqlx::Error> {
        self.push(row);
        Ok(())
    }
}

impl ViewReader<'_> {
    /// Each row of `select`, `params` bound to its `$1`, `$2`, …, handed to `sink` in order.
    pub async fn each_row<S: RowSink>(
        &mut self,
        select: &str,
        params: &[Param<'_>],
        sink: &mut S,
    ) -> Result<(), sqlx::Error> {
        match self {
            Self::Any(connection) => {
                let mut arguments = AnyArguments::default();
                for param in params {
                    match *param {
                        Param::Text(text) => arguments.add(text),
                        Param::Int(int) => arguments.add(int),
                    }
                    .map_err(sqlx::Error::Encode)?;
                }
                for row in sqlx::query_with(select, arguments).fetch_all(&mut **connection).await? {
                    sink.take(S::Row::from_row(&row)?)?;
                }
                Ok(())
            }
            Self::Sqlite(connection) => each_sqlite_row(connection, select, params, sink),
        }
    }

    /// The rows of `select` (see [`ViewReader::each_row`]), each read into an owned `T`.
    pub async fn rows<T>(&mut self, select: &str, params: &[Param<'_>]) -> Result<Vec<T>, sqlx::Error>
    where
        T: DeserializeOwned + for<'r> FromRow<'r, AnyRow> + Send,
    {
        let mut rows = Vec::new();
        self.each_row(select, params, &mut rows).await?;
        Ok(rows)
    }

    /// The one row of `select`, if any (see [`ViewReader::rows`]).
    pub async fn row<T>(&mut self, select: &str, params: &[Param<'_>]) -> Result<Option<T>, sqlx::Error>
    where
        T: DeserializeOwned + for<'r> FromRow<'r, AnyRow> + Send,
    {
        Ok(self.rows(select, params).await?.into_iter().next())
    }
}

/// The rows of `sql` with `params` bound by name (`$1` is the first), stepped on this thread and
/// each handed to `sink` while it is the statement's current row.
fn each_sqlite_row<S: RowSink>(
    connection: &rusqlite::Connection,
    sql: &str,
    params: &[Param<'_>],
    sink: &mut S,
) -> Result<(), sqlx::Error> {
    let mut statement = connection.prepare_cached(sql).map_err(SqliteReadError::reported)?;
    bind_numbered(&mut statement, params).map_err(SqliteReadError::reported)?;
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(SqliteReadError::reported)? {
        sink.take(sqlite_row::from_row(row).map_err(|error| sqlx::Error::Decode(error.into()))?)?;
    }
    Ok(())
}

/// Binds `params` to a statement written with numbered parameters (`$1`, `$2`, … as on
/// PostgreSQL) by their names: SQLite numbers such parameters in order of first appearance, not
/// by their names. A number the statement does not use is skipped.
pub(crate) fn bind_numbered(statement: &mut rusqlite::Statement<'_>, params: &[impl ToSql]) -> rusqlite::Result<()> {
    for (n, param) in params.iter().enumerate() {
        if let Some(index) = statement.parameter_index(&format!("${}", n + 1))? {
            statement.raw_bind_parameter(index, param)?;
        }
    }
    Ok(())
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Text(text) => ToSqlOutput::from(text),
            Param::Int(int) => ToSqlOutput::from(int),
        })
    }
}

/// How long a query's connection waits for a lock. In WAL mode a reader waits only while another
/// connection recovers the log after a crash, or rebuilds the shared index.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Statements kept prepared per connection: every view's queries, for two generations at once.
const PREPARED_STATEMENTS: usize = 64;

/// The SQLite connections this process's queries read on, kept between uses. A connection is a
/// file handle: it cannot go stale, and one is opened whenever none is free. At most as many are
/// in use as threads serve requests, since a read never waits for anything once it starts.
#[derive(Debug)]
pub struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl SqliteReads {
    /// Reads of the database file at `path`, which must already exist (in WAL mode).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), idle: Mutex::new(Vec::new()) }
    }

    /// A connection of the caller's own until the [`SqliteRead`] is dropped.
    pub fn lend(&self) -> Result<SqliteRead<'_>, sqlx::Error> {
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open().map_err(SqliteReadError::reported)?,
        };
        Ok(SqliteRead { connection: Some(connection), home: self })
    }

    /// The connections idle between reads (for tests).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        // Read-write without create, then query-only: a read-only connection cannot recover a
        // WAL file left by a crash, and this one never writes either way.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = rusqlite::Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "query_only", true)?;
        connection.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
        Ok(connection)
    }
}

/// A connection lent by [`SqliteReads::lend`]; it goes back when dropped (a statement that failed
/// leaves nothing behind: each read is its own transaction, ended when its statement is reset).
#[derive(Debug)]
pub struct SqliteRead<'a> {
    connection: Option<rusqlite::Connection>,
    home: &'a SqliteReads,
}

impl SqliteRead<'_> {
    pub fn reader(&mut self) -> ViewReader<'_> {
        ViewReader::Sqlite(self.connection.as_mut().expect("present until dropped"))
    }
}

impl Drop for SqliteRead<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.home.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(connection);
        }
    }
}

/// A failed read on a [`SqliteReads`] connection, as sqlx's other database errors are reported.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SqliteReadError(rusqlite::Error);

impl SqliteReadError {
    fn reported(error: rusqlite::Error) -> sqlx::Error {
        sqlx::Error::Database(Box::new(SqliteReadError(error)))
    }
}

impl sqlx::error::DatabaseError for SqliteReadError {
    fn message(&self) -> &str {
        match &self.0 {
            rusqlite::Error::SqliteFailure(_, Some(message)) => message,
            _ => "SQLite read failed",
        }
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, sqlx::FromRow)]
    struct Row {
        id: String,
        n: i64,
        note: Option<String>,
    }

    /// A database file with three rows, and the reads of it.
    fn database(name: &str) -> (PathBuf, SqliteReads) {
        let path = std::env::temp_dir().join(format!("storming-reader-{name}-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, note TEXT); \
                 INSERT INTO t VALUES ('a', 1, NULL), ('b', 2, 'two'), ('c', 3, 'three');",
            )
            .unwrap();
        (path.clone(), SqliteReads::new(path))
    }

    /// Closes the connections, then removes the file and the two WAL mode keeps beside it.
    fn remove(path: PathBuf, reads: SqliteReads) {
        drop(reads);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn it_should_bind_each_param_to_its_own_number_whatever_the_order_they_appear_in() {
        let (path, reads) = database("order");
        let mut read = reads.lend().unwrap();
        // `$2` appears first: SQLite would number it 1.
        let rows: Vec<Row> = read
            .reader()
            .rows(
                "SELECT id, n, note FROM t WHERE n > $2 AND id <> $1 ORDER BY id DESC",
                &[Param::Text("c"), Param::Int(0)],
            )
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![Row { id: "b".into(), n: 2, note: Some("two".into()) }, Row { id: "a".into(), n: 1, note: None }]
        );
        drop(read);
        remove(path, reads);
    }

    #[tokio::test]
    async fn it_should_answer_no_row_as_none_and_see_what_was_committed_since() {
        let (path, reads) = database("fresh");
        let mut read = reads.lend().unwrap();
        let missing: Option<Row> =
            read.reader().row("SELECT id, n, note FROM t WHERE id = $1", &[Param::Text("d")]).await.unwrap();
        assert_eq!(missing, None);
        drop(read);
        rusqlite::Connection::open(&path).unwrap().execute("INSERT INTO t VALUES ('d', 4, NULL)", []).unwrap();
        let mut read = reads.lend().unwrap();
        let found: Option<Row> =
            read.reader().row("SELECT id, n, note FROM t WHERE id = $1", &[Param::Text("d")]).await.unwrap();
        assert_eq!(found, Some(Row { id: "d".into(), n: 4, note: None }));
        drop(read);
        assert_eq!(reads.idle_count(), 1, "the one connection is kept and lent again");
        // An idle connection holds no read transaction: one would keep the WAL from being
        // checkpointed back into the file, and the WAL would grow without end.
        let (busy, frames): (i64, i64) = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap();
        assert_eq!((busy, frames), (0, 0), "the checkpoint ran to the end and emptied the WAL");
        remove(path, reads);
    }

    #[tokio::test]
    async fn it_should_report_a_row_of_another_shape_as_a_decode_error() {
        let (path, reads) = database("shape");
        let mut read = reads.lend().unwrap();
        let error = read.reader().rows::<Row>("SELECT id, note FROM t", &[]).await;
        assert!(
            matches!(error, Err(sqlx::Error::Decode(ref e)) if e.to_string().contains("missing field `n`")),
            "{error:?}"
        );
        drop(read);
        remove(path, reads);
    }

    #[tokio::test]
    async fn it_should_report_a_failed_read_as_a_database_error_and_never_write() {
        let (path, reads) = database("errors");
        let mut read = reads.lend().unwrap();
        let error = read.reader().rows::<Row>("SELECT id, n, note FROM missing", &[]).await;
        assert!(
            matches!(error, Err(sqlx::Error::Database(ref e)) if e.message().contains("no such table")),
            "{error:?}"
        );
        // The connection refuses to write, whatever statement it is given: through a read…
        let write = read.reader().rows::<Row>("DELETE FROM t RETURNING id, n, note", &[]).await;
        assert!(
            matches!(write, Err(sqlx::Error::Database(ref e)) if e.message().contains("readonly")),
            "a query's connection is query-only: {write:?}"
        );
        // …or directly.
        let ViewReader::Sqlite(connection) = read.reader() else { unreachable!("a SQLite read") };
        let write = connection.execute("DELETE FROM t", []);
        assert!(
            matches!(write, Err(rusqlite::Error::SqliteFailure(ref e, _)) if e.code == rusqlite::ErrorCode::ReadOnly),
            "a query's connection is query-only: {write:?}"
        );
        drop(read);
        let count: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 3);
        remove(path, reads);
    }
}
