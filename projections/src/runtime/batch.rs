//! Row writes of a batch of events, sent as a few multi-row statements instead of one statement
//! (and one round trip) per event.
//!
//! A view describes each event's effect as an [`Writes::insert`] ("insert this row unless its key
//! exists") or an [`Writes::update`] ("set these columns of the row with this key"). [`Writes::flush`]
//! sends consecutive writes of the same shape as one statement, in order, so the result is the
//! one the writes would have had one by one:
//! - a run of inserts becomes one `INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING` (the first row
//!   of a key wins, as it would have alone);
//! - a run of updates keeps the last write per key (they set the same columns) and becomes one
//!   `UPDATE … FROM (VALUES …)`, which both SQLite (3.33+) and PostgreSQL run.

use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments};
use storming_domain::recorded::RecordedEvent;

use super::{at_position, BoxError};

/// A column value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.to_string())
    }
}

impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Self {
        Self::MaybeText(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

/// The statement a write belongs to: writes of one shape can share a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// `columns`, with the conflict target `key`.
    Insert { table: String, columns: &'static [&'static str], key: &'static [&'static str] },
    /// The row found by `key` gets `set`.
    Update { table: String, key: &'static [&'static str], set: &'static [&'static str] },
}

#[derive(Debug)]
struct Write {
    shape: Shape,
    /// Insert: one per column. Update: the key's values, then the set columns' values.
    values: Vec<Value>,
}

/// Applies `events` through a view's `write` (one event's row writes), sending them together.
pub async fn apply(
    tx: &mut AnyConnection,
    events: &[RecordedEvent],
    mut write: impl FnMut(&mut Writes, &RecordedEvent) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let mut writes = Writes::default();
    for event in events {
        write(&mut writes, event).map_err(|error| at_position(event, error))?;
    }
    Ok(writes.flush(tx).await?)
}

/// The most bind parameters in one statement (SQLite allows 32,766; PostgreSQL 65,535).
const MAX_PARAMETERS: usize = 30_000;

/// The writes of one batch, in event order.
#[derive(Debug, Default)]
pub struct Writes {
    writes: Vec<Write>,
}

impl Writes {
    /// Inserts a row of `columns` into `table` unless a row with the same `key` exists.
    pub fn insert(
        &mut self,
        table: &str,
        columns: &'static [&'static str],
        key: &'static [&'static str],
        values: Vec<Value>,
    ) {
        debug_assert_eq!(columns.len(), values.len());
        self.writes.push(Write { shape: Shape::Insert { table: table.to_string(), columns, key }, values });
    }

    /// Sets `set` (values after the key's) on the row of `table` whose `key` columns equal the
    /// first values; nothing if there is none.
    pub fn update(
        &mut self,
        table: &str,
        key: &'static [&'static str],
        set: &'static [&'static str],
        values: Vec<Value>,
    ) {
        debug_assert_eq!(key.len() + set.len(), values.len());
        self.writes.push(Write { shape: Shape::Update { table: table.to_string(), key, set }, values });
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Sends every write, in order, in as few statements as their shapes allow.
    pub async fn flush(self, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let style = if tx.backend_name() == "SQLite" { Parameters::Anonymous } else { Parameters::Numbered };
        if style == Parameters::Numbered && self.writes.iter().any(|write| matches!(write.shape, Shape::Update { .. }))
        {
            join_by_key(tx).await?;
        }
        let mut writes = self.writes.into_iter().peekable();
        while let Some(first) = writes.next() {
            let per_row = first.values.len();
            let mut rows = vec![first.values];
            while let Some(next) = writes.peek() {
                if next.shape != first.shape || (rows.len() + 1) * per_row > MAX_PARAMETERS {
                    break;
                }
                rows.push(writes.next().map(|write| write.values).unwrap_or_default());
            }
            let (sql, rows) = match &first.shape {
                Shape::Insert { table, columns, key } => (insert_sql(table, columns, key, rows.len(), style), rows),
                Shape::Update { table, key, set } => {
                    let rows = last_per_key(rows, key.len());
                    (update_sql(table, key, set, rows.len(), style), rows)
                }
            };
            let rows_sent = rows.len();
            let mut arguments = AnyArguments::default();
            for value in rows.into_iter().flatten() {
                match value {
                    Value::Text(text) => arguments.add(text),
                    Value::MaybeText(text) => arguments.add(text),
                    Value::Int(number) => arguments.add(number),
                }
                .map_err(sqlx::Error::Encode)?;
            }
            let keep = keeps_prepared(style, rows_sent);
            sqlx::query_with(&sql, arguments).persistent(keep).execute(&mut *tx).await?;
        }
        Ok(())
    }
}

/// Whether a statement of `rows` rows stays prepared on the connection. On SQLite a prepared
/// statement lives in this process, as large as its rows: kept, the runs of every length a live
/// load brings (1, 2 … 30 rows per shape) filled each read connection's cache of 100 statements,
/// about 3 MB a connection (14 of the 64 MB at 64 clients, ADR 9). Only single-row statements,
/// which recur, are kept; preparing the others again cost no measurable catch-up speed. PostgreSQL
/// keeps its prepared statements in its own processes, and a catch-up's 500-row statement recurs.
fn keeps_prepared(style: Parameters, rows: usize) -> bool {
    style == Parameters::Numbered || rows == 1
}

/// PostgreSQL, for the rest of the caller's transaction: join by nested loops only. An update run
/// joins its `VALUES` list to the view on the view's key (or an indexed column), so the right plan
/// is an index probe per row, whatever the view's size. Left to itself, PostgreSQL hashes the whole
/// view instead: it plans a 500-row list against a seq scan even at 150,000 rows, and the statement
/// is prepared, so a generic plan made while the view was nearly empty is kept as the view grows
/// (20–40 ms a batch at 150,000 rows and linear in the size, against 5 ms by the index). Plans
/// cached on the connection were made under this setting too: these statements run nowhere else.
async fn join_by_key(tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Of several updates to one key, the last; in the order the keys were first written.
fn last_per_key(rows: Vec<Vec<Value>>, key_len: usize) -> Vec<Vec<Value>> {
    let mut kept: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
    let mut at: std::collections::HashMap<Vec<Value>, usize> = std::collections::HashMap::new();
    for row in rows {
        let key = row[..key_len].to_vec();
        match at.get(&key) {
            Some(&index) => kept[index] = row,
            None => {
                at.insert(key, kept.len());
                kept.push(row);
            }
        }
    }
    kept
}

/// How parameters are written: PostgreSQL numbers them (`$1`); for SQLite, plain `?` — sqlx
/// looks the name of every numbered parameter up, and SQLite finds a name by scanning all of
/// them, which made a 6,000-parameter statement spend most of its time naming parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameters {
    Numbered,
    Anonymous,
}

/// `($1, $2), ($3, $4)…` (or `(?, ?), (?, ?)…`) for `rows` rows of `width` values.
fn placeholders(rows: usize, width: usize, style: Parameters) -> String {
    let mut sql = String::with_capacity(rows * width * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            match style {
                Parameters::Numbered => {
                    sql.push('$');
                    sql.push_str(&(row * width + column + 1).to_string());
                }
                Parameters::Anonymous => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

fn insert_sql(table: &str, columns: &[&str], key: &[&str], rows: usize, style: Parameters) -> String {
    format!(
        "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({}) DO NOTHING",
        columns.join(", "),
        placeholders(rows, columns.len(), style),
        key.join(", ")
    )
}

/// The statement a run of `rows` updates becomes. The VALUES list's columns are `column1`,
/// `column2`… on both backends: the key's first.
pub fn update_sql(table: &str, key: &[&str], set: &[&str], rows: usize, style: Parameters) -> String {
    let assignments: Vec<String> =
        set.iter().enumerate().map(|(n, column)| format!("{column} = v.column{}", key.len() + n + 1)).collect();
    let matches: Vec<String> =
        key.iter().enumerate().map(|(n, column)| format!("{table}.{column} = v.column{}", n + 1)).collect();
    format!(
        "UPDATE {table} SET {} FROM (VALUES {}) AS v WHERE {}",
        assignments.join(", "),
        placeholders(rows, key.len() + set.len(), style),
        matches.join(" AND ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_run_is_one_statement_with_a_conflict_target() {
        assert_eq!(
            insert_sql("t_g1", &["id", "name"], &["id"], 2, Parameters::Numbered),
            "INSERT INTO t_g1 (id, name) VALUES ($1, $2), ($3, $4) ON CONFLICT (id) DO NOTHING"
        );
    }

    #[test]
    fn an_update_run_joins_a_values_list_on_the_key() {
        assert_eq!(
            update_sql("t_g1", &["id"], &["status", "at"], 2, Parameters::Numbered),
            "UPDATE t_g1 SET status = v.column2, at = v.column3 FROM (VALUES ($1, $2, $3), ($4, $5, $6)) AS v \
             WHERE t_g1.id = v.column1"
        );
    }

    #[test]
    fn on_sqlite_only_single_row_statements_stay_prepared() {
        assert!(keeps_prepared(Parameters::Anonymous, 1));
        assert!(!keeps_prepared(Parameters::Anonymous, 2));
        assert!(!keeps_prepared(Parameters::Anonymous, 500));
        assert!(keeps_prepared(Parameters::Numbered, 500), "PostgreSQL keeps its statements in its own processes");
    }

    #[test]
    fn sqlite_gets_anonymous_parameters() {
        assert_eq!(placeholders(2, 2, Parameters::Anonymous), "(?, ?), (?, ?)");
    }

    #[test]
    fn of_several_updates_to_a_key_the_last_is_kept() {
        let row = |key: &str, status: &str| vec![Value::from(key), Value::from(status)];
        let kept = last_per_key(vec![row("a", "RENTED"), row("b", "RENTED"), row("a", "RETURNED")], 1);
        assert_eq!(kept, vec![row("a", "RETURNED"), row("b", "RENTED")]);
    }
}
