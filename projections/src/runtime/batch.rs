//! Row writes of a batch of events, sent as a few multi-row statements instead of one statement
//! (and one round trip) per event.
//!
//! A view describes each event's effect as an [`Writes::insert`] ("insert this row unless its key
//! exists") or an [`Writes::update`] ("set these columns of the row with this key"). [`Writes::flush`]
//! sends writes of the same shape as one statement, so the result is the one the writes would have
//! had one by one:
//! - an insert statement is one `INSERT … ON CONFLICT DO NOTHING` of all its rows (the first row
//!   of a key wins, as it would have alone);
//! - an update statement keeps the last write per key (they set the same columns) and is one
//!   `UPDATE … FROM` its rows, joined on the key.
//!
//! On SQLite the rows are a `VALUES` list, a parameter per value; on PostgreSQL `unnest` of an
//! array per column, so that a statement's text does not change with its length ([`Parameters`]).
//!
//! Writes of one shape need not be consecutive to share a statement: a write that touches a row
//! no earlier write of another statement touched can move before them ([`plan`]). A live log
//! interleaves many rentals — rent, rent, return, rent, return… — and sent in event order those
//! were a statement per event or two; planned, a batch of them is one insert and one update.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt::Write as _;

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
    /// `columns`, with the conflict target `key`. A row that conflicts is left alone, or, once
    /// updates of the batch were folded into the insert ([`Writes::fold`]), gets the `overwrite`
    /// columns from it. The statement's columns are `columns`, then those of `overwrite` that are
    /// not among them.
    Insert {
        table: String,
        columns: &'static [&'static str],
        key: &'static [&'static str],
        overwrite: Vec<&'static str>,
    },
    /// The row found by `key` gets `set`.
    Update { table: String, key: &'static [&'static str], set: &'static [&'static str] },
}

#[derive(Debug)]
struct Write {
    /// Its shape's index in [`Writes::shapes`].
    shape: usize,
    /// Insert: one per statement column. Update: the key's values, then the set columns' values.
    values: Vec<Value>,
}

impl Shape {
    /// The table and the columns that find a write's row.
    fn target(&self) -> (&str, &'static [&'static str]) {
        match self {
            Shape::Insert { table, key, .. } | Shape::Update { table, key, .. } => (table, key),
        }
    }

    /// Where a write's key values are among its values, in the key's column order.
    fn key_positions(&self) -> Vec<usize> {
        match self {
            Shape::Insert { columns, key, .. } => key
                .iter()
                .map(|name| {
                    columns.iter().position(|column| column == name).expect("an insert's key is among its columns")
                })
                .collect(),
            Shape::Update { key, .. } => (0..key.len()).collect(),
        }
    }
}

/// An insert's statement columns: `columns`, then those of `overwrite` that are not among them.
fn statement_columns<'a>(columns: &[&'a str], overwrite: &[&'a str]) -> Vec<&'a str> {
    let extra = overwrite.iter().filter(|column| !columns.contains(column));
    columns.iter().chain(extra).copied().collect()
}

/// The index in `shapes` of the shape `known` recognizes, made by `new` and added the first time.
fn intern(shapes: &mut Vec<Shape>, known: impl Fn(&Shape) -> bool, new: impl FnOnce() -> Shape) -> usize {
    shapes.iter().position(known).unwrap_or_else(|| {
        shapes.push(new());
        shapes.len() - 1
    })
}

/// An update of shape `update` folded into an insert of shape `insert` ([`Writes::fold`]).
struct Fold {
    insert: usize,
    update: usize,
    /// The insert's shape with the update folded in.
    into: usize,
    /// Where each of the update's set values goes among the insert's values: over a column's
    /// value, or, one past the end, as a new last value.
    positions: Vec<usize>,
}

impl Fold {
    /// Adds the shape the fold leads to, unless `shapes` has it.
    fn of(shapes: &mut Vec<Shape>, insert: usize, update: usize) -> Self {
        let (Shape::Insert { table, columns, key, overwrite }, Shape::Update { set, .. }) =
            (&shapes[insert], &shapes[update])
        else {
            unreachable!("an update is folded into an insert")
        };
        let mut folded = overwrite.clone();
        folded.extend(set.iter().filter(|column| !overwrite.contains(column)));
        let statement = statement_columns(columns, &folded);
        let positions =
            set.iter().map(|column| statement.iter().position(|c| c == column).expect("folded in")).collect();
        let shape = Shape::Insert { table: table.clone(), columns, key, overwrite: folded };
        let into = intern(shapes, |known| *known == shape, || shape.clone());
        Self { insert, update, into, positions }
    }
}

/// What [`Writes::fold`] does with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Sent,
    /// An insert of a row an earlier insert of the batch wrote: it would do nothing.
    Dropped,
    /// An update moved into the insert at this index.
    FoldedInto(usize),
}

/// How the rows of a batch's shapes are told apart. A keying is a table and the columns that find
/// its rows; a row is a keying and their values.
struct Keyings {
    /// Each shape's keying.
    of_shape: Vec<usize>,
    /// Per keying, the other keyings of its table: their writes may touch its rows unseen.
    others: Vec<Vec<usize>>,
    /// Per shape, where a write's key values are among its values.
    key_positions: Vec<Vec<usize>>,
}

impl Keyings {
    fn of(shapes: &[Shape]) -> Self {
        let mut keyings: Vec<(&str, &[&str])> = Vec::new();
        let of_shape = shapes
            .iter()
            .map(|shape| {
                let target = shape.target();
                keyings.iter().position(|keying| *keying == target).unwrap_or_else(|| {
                    keyings.push(target);
                    keyings.len() - 1
                })
            })
            .collect();
        let others = keyings
            .iter()
            .map(|(table, key)| {
                (0..keyings.len()).filter(|&other| keyings[other].0 == *table && keyings[other].1 != *key).collect()
            })
            .collect();
        Self { of_shape, others, key_positions: shapes.iter().map(Shape::key_positions).collect() }
    }

    fn count(&self) -> usize {
        self.others.len()
    }

    /// The row `write` touches.
    fn row<'a>(&self, write: &'a Write) -> (usize, Vec<&'a Value>) {
        (self.of_shape[write.shape], self.key_positions[write.shape].iter().map(|&at| &write.values[at]).collect())
    }
}

/// One statement's writes: its shape's index and the rows it sends, in event order.
type Statement = (usize, Vec<Vec<Value>>);

/// The statements `writes` go out as, in the order they are sent: each write joins a statement of
/// its shape, the earliest one that runs after every statement holding an earlier write to the same
/// row — or that statement itself, if it has the same shape (its rows are then applied as one by
/// one would: the first insert of a key wins, the last update). Any other write commutes with it.
/// Two writes of one table whose keys are different columns (a rental found by its id, a rental
/// found by its payment) may touch the same row: they keep their order.
fn plan(shapes: &[Shape], writes: Vec<Write>) -> Vec<Statement> {
    let keyings = Keyings::of(shapes);
    let mut statements: Vec<usize> = Vec::new();
    let mut of_shape: Vec<Vec<usize>> = vec![Vec::new(); shapes.len()];
    let mut last_of_keying: Vec<Option<usize>> = vec![None; keyings.count()];
    let mut last_of_row: HashMap<(usize, Vec<&Value>), usize> = HashMap::with_capacity(writes.len());
    let mut placed = Vec::with_capacity(writes.len());
    for write in &writes {
        let row = keyings.row(write);
        let keying = row.0;
        let last_of_this_row = last_of_row.entry(row);
        let row_before = match &last_of_this_row {
            Entry::Occupied(last) => Some(*last.get()),
            Entry::Vacant(_) => None,
        };
        let others_before = keyings.others[keying].iter().filter_map(|&other| last_of_keying[other]);
        let after = row_before.into_iter().chain(others_before).max();
        let at = match after {
            Some(last) if statements[last] == write.shape => last,
            _ => {
                let mine = &mut of_shape[write.shape];
                let first_free = mine.partition_point(|&at| after.is_some_and(|last| at <= last));
                match mine.get(first_free) {
                    Some(&at) => at,
                    None => {
                        mine.push(statements.len());
                        statements.push(write.shape);
                        statements.len() - 1
                    }
                }
            }
        };
        last_of_keying[keying] = last_of_keying[keying].max(Some(at));
        // `at` is never before `after`, so it is the row's last statement now.
        *last_of_this_row.or_insert(at) = at;
        placed.push(at);
    }
    let mut planned: Vec<Statement> = statements.into_iter().map(|shape| (shape, Vec::new())).collect();
    for (write, at) in writes.into_iter().zip(placed) {
        planned[at].1.push(write.values);
    }
    planned
}

/// The row writes of `events` through a view's `write` (one event's row writes), to be sent
/// together.
pub fn writes_of(
    events: &[RecordedEvent],
    mut write: impl FnMut(&mut Writes, &RecordedEvent) -> Result<(), BoxError>,
) -> Result<Writes, BoxError> {
    let mut writes = Writes::default();
    for event in events {
        write(&mut writes, event).map_err(|error| at_position(event, error))?;
    }
    Ok(writes)
}

/// The most bind parameters in one statement (SQLite allows 32,766; PostgreSQL 65,535).
const MAX_PARAMETERS: usize = 30_000;

/// The writes of one batch, in event order.
#[derive(Debug, Default)]
pub struct Writes {
    /// Every shape of its writes, once each (a view has a handful).
    shapes: Vec<Shape>,
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
        let known = |shape: &Shape| {
            matches!(shape, Shape::Insert { table: t, columns: c, key: k, overwrite: o }
                if t == table && *c == columns && *k == key && o.is_empty())
        };
        let shape =
            self.shape(known, || Shape::Insert { table: table.to_string(), columns, key, overwrite: Vec::new() });
        self.writes.push(Write { shape, values });
    }

    /// Sets `set` (values after the key's) on the row of `table` whose `key` columns equal the
    /// first values; nothing if there is none. `set` never holds a column of `key`: a row keeps
    /// the key it was found by.
    pub fn update(
        &mut self,
        table: &str,
        key: &'static [&'static str],
        set: &'static [&'static str],
        values: Vec<Value>,
    ) {
        debug_assert_eq!(key.len() + set.len(), values.len());
        debug_assert!(set.iter().all(|column| !key.contains(column)), "{set:?} sets a column of {key:?}");
        let known = |shape: &Shape| matches!(shape, Shape::Update { table: t, key: k, set: s } if t == table && *k == key && *s == set);
        let shape = self.shape(known, || Shape::Update { table: table.to_string(), key, set });
        self.writes.push(Write { shape, values });
    }

    /// The index of the shape `known` recognizes, made by `new` the first time.
    fn shape(&mut self, known: impl Fn(&Shape) -> bool, new: impl FnOnce() -> Shape) -> usize {
        intern(&mut self.shapes, known, new)
    }

    /// Folds each update into its row's insert earlier in the batch, where no write between them
    /// may have touched the row, and drops an insert of a row an earlier insert of the batch wrote.
    /// The writes then leave the tables as before, one by one:
    /// - nothing deletes a row, so once a row was inserted (or found there) a second insert of it
    ///   does nothing;
    /// - the writes between an insert and an update of its row, by the same columns, touch other
    ///   rows — other values of the key — or are updates of the row folded already (the rule below
    ///   fails for good once it fails), so the update can move up to the insert. A write of the
    ///   same table by other columns (a rental found by its payment) might touch the row: after
    ///   one, the rows inserted before it take no more updates;
    /// - an insert with updates moved up to it is an upsert: a new row gets the updates' values,
    ///   and a row that was there before the batch gets the columns they set (`overwrite`), as the
    ///   updates would have set them after an insert that did nothing.
    ///
    /// A rent whose return falls in the same batch is then written once, as it ends.
    fn fold(&mut self) {
        let keyings = Keyings::of(&self.shapes);
        let mut fates = Vec::with_capacity(self.writes.len());
        {
            let mut inserted: HashMap<(usize, Vec<&Value>), usize> = HashMap::new();
            let mut last_of_keying: Vec<Option<usize>> = vec![None; keyings.count()];
            for (at, write) in self.writes.iter().enumerate() {
                let row = keyings.row(write);
                let keying = row.0;
                let fate = match &self.shapes[write.shape] {
                    Shape::Insert { .. } => match inserted.entry(row) {
                        Entry::Occupied(_) => Fate::Dropped,
                        Entry::Vacant(vacant) => {
                            vacant.insert(at);
                            Fate::Sent
                        }
                    },
                    Shape::Update { .. } => match inserted.get(&row) {
                        Some(&insert)
                            if keyings.others[keying].iter().all(|&other| last_of_keying[other] < Some(insert)) =>
                        {
                            Fate::FoldedInto(insert)
                        }
                        _ => Fate::Sent,
                    },
                };
                if fate == Fate::Sent {
                    last_of_keying[keying] = Some(at);
                }
                fates.push(fate);
            }
        }
        if fates.iter().all(|fate| *fate == Fate::Sent) {
            return;
        }
        let mut folds: Vec<Fold> = Vec::new();
        for (at, fate) in fates.iter().enumerate() {
            let Fate::FoldedInto(insert) = *fate else { continue };
            let (before, after) = self.writes.split_at_mut(at);
            let (insert, update) = (&mut before[insert], &mut after[0]);
            let fold = match folds.iter().position(|fold| (fold.insert, fold.update) == (insert.shape, update.shape)) {
                Some(known) => &folds[known],
                None => {
                    let fold = Fold::of(&mut self.shapes, insert.shape, update.shape);
                    folds.push(fold);
                    &folds[folds.len() - 1]
                }
            };
            let key_len = update.values.len() - fold.positions.len();
            for (&position, value) in fold.positions.iter().zip(update.values.drain(key_len..)) {
                if position < insert.values.len() {
                    insert.values[position] = value;
                } else {
                    debug_assert_eq!(position, insert.values.len());
                    insert.values.push(value);
                }
            }
            insert.shape = fold.into;
        }
        let writes = std::mem::take(&mut self.writes);
        self.writes =
            writes.into_iter().zip(fates).filter(|(_, fate)| *fate == Fate::Sent).map(|(write, _)| write).collect();
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Sends every write in as few statements as their shapes and rows allow (see [`Writes::fold`]
    /// and [`plan`]).
    pub async fn flush(self, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        self.render(Parameters::of(tx)).flush(tx).await
    }

    /// The statements the writes become for `style`'s backend, in order, with their values: what
    /// [`Writes::flush`] sends, built without a connection (a worker renders a batch read ahead
    /// while the batch before it is written, ADR 43).
    pub fn render(self, style: Parameters) -> Statements {
        Statements { style, sent: self.statements(style) }
    }

    /// The statements the writes become, in order, with their values.
    fn statements(mut self, style: Parameters) -> Vec<Sent> {
        self.fold();
        let mut statements = Vec::new();
        for (shape, rows) in plan(&self.shapes, self.writes) {
            let shape = &self.shapes[shape];
            let updates = matches!(shape, Shape::Update { .. });
            let rows = match shape {
                Shape::Insert { .. } => rows,
                Shape::Update { key, .. } => last_per_key(rows, key.len()),
            };
            if style == Parameters::Arrays {
                let (sql, values) = (statement_sql(shape, &Rows::arrays(&rows)), column_arrays(&rows));
                statements.push(Sent { sql, rows: rows.len(), updates, values });
                continue;
            }
            let per_row = rows.first().map_or(1, Vec::len).max(1);
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<Vec<Value>> = rows.by_ref().take((MAX_PARAMETERS / per_row).max(1)).collect();
                let sql = statement_sql(shape, &Rows::Values { rows: chunk.len(), width: per_row });
                // Moved, not cloned (`concat` would copy every text value of the batch once more).
                statements.push(Sent {
                    sql,
                    rows: chunk.len(),
                    updates,
                    values: chunk.into_iter().flatten().collect(),
                });
            }
        }
        statements
    }
}

/// A batch's writes as the statements they are sent as ([`Writes::render`]).
pub struct Statements {
    style: Parameters,
    sent: Vec<Sent>,
}

impl Statements {
    /// Sends them, in order, inside the caller's transaction.
    pub async fn flush(self, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if Parameters::of(tx) != self.style {
            return Err(sqlx::Error::Configuration(
                format!("a batch rendered as {:?} sent to {}", self.style, tx.backend_name()).into(),
            ));
        }
        if self.style == Parameters::Arrays && self.sent.iter().any(|statement| statement.updates) {
            join_by_key(tx).await?;
        }
        for statement in self.sent {
            let mut arguments = AnyArguments::default();
            for value in statement.values {
                match value {
                    Value::Text(text) => arguments.add(text),
                    Value::MaybeText(text) => arguments.add(text),
                    Value::Int(number) => arguments.add(number),
                }
                .map_err(sqlx::Error::Encode)?;
            }
            let keep = keeps_prepared(statement.rows, self.style);
            sqlx::query_with(&statement.sql, arguments).persistent(keep).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// [`Statements::flush`] on a plain SQLite connection, inside the caller's transaction (a
    /// worker's batch on SQLite, ADR 24).
    pub fn flush_sqlite(self, tx: &rusqlite::Connection) -> rusqlite::Result<()> {
        if self.style != Parameters::Anonymous {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("a batch rendered as {:?} sent to SQLite", self.style).into(),
            ));
        }
        for statement in self.sent {
            let values = rusqlite::params_from_iter(&statement.values);
            // The cache keeps only the recurring ones, as sqlx's does above.
            match keeps_prepared(statement.rows, Parameters::Anonymous) {
                true => tx.prepare_cached(&statement.sql)?.execute(values)?,
                false => tx.execute(&statement.sql, values)?,
            };
        }
        Ok(())
    }
}

/// One statement of a batch's writes, as sent.
struct Sent {
    sql: String,
    /// How many rows it writes.
    rows: usize,
    /// Whether it is an update run (joined to the view on its key).
    updates: bool,
    values: Vec<Value>,
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Value::Text(text) => text.to_sql(),
            Value::MaybeText(text) => text.to_sql(),
            Value::Int(number) => number.to_sql(),
        }
    }
}

/// Whether a statement of `rows` rows stays prepared on the connection. On PostgreSQL every one
/// does: its text is its shape's whatever its rows ([`Parameters::Arrays`]), so a connection keeps
/// a handful, parsed once. On SQLite only single-row ones, which recur: a prepared statement is kept
/// by the driver with its text, and a live load brings runs of every length (1, 2 … 30 rows per
/// shape), each a statement of its own, until every connection's cache of 100 is full (about 3 MB
/// a connection, 14 of the 64 MB at 64 clients, ADR 9; the same list on PostgreSQL held 5–19 MB of
/// the server's RSS at 16 and 64 clients, BENCHMARKS.md, sixteenth session).
fn keeps_prepared(rows: usize, style: Parameters) -> bool {
    style == Parameters::Arrays || rows == 1
}

/// PostgreSQL, for the rest of the caller's transaction: join by nested loops only. An update run
/// joins its rows to the view on the view's key (or an indexed column), so the right plan
/// is an index probe per row, whatever the view's size. Left to itself, PostgreSQL hashes the whole
/// view instead whenever it plans for a batch's own arrays (as it does a prepared statement's first
/// executions, which then decide whether a generic plan is kept): a 500-row run against a seq scan
/// even at 150,000 rows, 20–40 ms a batch there and linear in the size, against 5 ms by the index.
/// Plans cached on the connection were made under this setting too: these statements run nowhere
/// else.
async fn join_by_key(tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Of several updates to one key, the last; in the order the keys were first written.
fn last_per_key(rows: Vec<Vec<Value>>, key_len: usize) -> Vec<Vec<Value>> {
    let mut kept: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
    let mut at: HashMap<Vec<Value>, usize> = HashMap::new();
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

/// How a statement's rows are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameters {
    /// SQLite: a `VALUES` list with a plain `?` per value (sqlx looks the name of every numbered
    /// parameter up, and SQLite finds a name by scanning all of them, which made a 6,000-parameter
    /// statement spend most of its time naming parameters). Runs of more than [`MAX_PARAMETERS`]
    /// values are split.
    Anonymous,
    /// PostgreSQL: a parameter per column, an array of the rows' values, which `unnest` turns back
    /// into rows (ADR 42). The statement's text is then its shape's whatever its rows, parsed and
    /// planned once per connection; a `VALUES` list with a parameter per value was a new statement
    /// for every run length, which PostgreSQL parsed, analyzed and planned again each time (a
    /// quarter of its CPU in a catch-up).
    Arrays,
}

impl Parameters {
    /// How statements are sent on `tx`'s backend.
    pub fn of(tx: &AnyConnection) -> Self {
        if tx.backend_name() == "SQLite" {
            Parameters::Anonymous
        } else {
            Parameters::Arrays
        }
    }

    /// How statements are sent on `pool`'s backend.
    pub fn of_pool(pool: &sqlx::AnyPool) -> Self {
        if pool.connect_options().database_url.scheme() == "sqlite" {
            Parameters::Anonymous
        } else {
            Parameters::Arrays
        }
    }
}

/// The rows a statement reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rows {
    /// `rows` rows of `width` values, each a parameter ([`Parameters::Anonymous`]).
    Values { rows: usize, width: usize },
    /// One array parameter per column, of these element types ([`Parameters::Arrays`]).
    Arrays(Vec<&'static str>),
}

impl Rows {
    /// The arrays that carry `rows`: a column's element type is its first value's.
    fn arrays(rows: &[Vec<Value>]) -> Self {
        let first = rows.first().map_or(&[][..], Vec::as_slice);
        Self::Arrays(first.iter().map(|value| if matches!(value, Value::Int(_)) { "bigint" } else { "text" }).collect())
    }

    /// As the source of an `INSERT`.
    fn to_insert(&self) -> String {
        match self {
            Rows::Values { rows, width } => format!("VALUES {}", placeholders(*rows, *width)),
            Rows::Arrays(types) => format!("SELECT * FROM {}", unnest(types)),
        }
    }

    /// As the `FROM` of an `UPDATE`, named `v`, its columns `column1`, `column2`…
    fn to_update(&self) -> String {
        match self {
            Rows::Values { rows, width } => format!("(VALUES {}) AS v", placeholders(*rows, *width)),
            Rows::Arrays(types) => {
                let names: Vec<String> = (1..=types.len()).map(|n| format!("column{n}")).collect();
                format!("{} AS v({})", unnest(types), names.join(", "))
            }
        }
    }
}

/// `(?, ?), (?, ?)…` for `rows` rows of `width` values.
fn placeholders(rows: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    let mut sql = String::with_capacity(rows * (row.len() + 2));
    for n in 0..rows {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

/// `unnest($1::text[], $2::bigint[]…)`: a row per index of the arrays.
fn unnest(types: &[&str]) -> String {
    let arrays: Vec<String> = types.iter().enumerate().map(|(n, element)| format!("${}::{element}[]", n + 1)).collect();
    format!("unnest({})", arrays.join(", "))
}

/// Each column of `rows` as the text of a PostgreSQL array (`{"a","b",NULL}`, `{1,2}`), which
/// its `$n::text[]` (or `bigint[]`) in [`unnest`] reads (public for checking a statement's plan).
pub fn column_arrays(rows: &[Vec<Value>]) -> Vec<Value> {
    let width = rows.first().map_or(0, Vec::len);
    let mut columns = vec![String::from("{"); width];
    for (n, row) in rows.iter().enumerate() {
        for (column, value) in columns.iter_mut().zip(row) {
            if n > 0 {
                column.push(',');
            }
            match value {
                Value::Int(number) => {
                    let _ = write!(column, "{number}"); // writing to a String cannot fail
                }
                Value::MaybeText(None) => column.push_str("NULL"),
                Value::Text(text) | Value::MaybeText(Some(text)) => {
                    column.push('"');
                    let mut rest = text.as_str();
                    while let Some(at) = rest.find(['"', '\\']) {
                        column.push_str(&rest[..at]);
                        column.push('\\');
                        column.push_str(&rest[at..=at]);
                        rest = &rest[at + 1..];
                    }
                    column.push_str(rest);
                    column.push('"');
                }
            }
        }
    }
    columns
        .into_iter()
        .map(|mut column| {
            column.push('}');
            Value::Text(column)
        })
        .collect()
}

/// The statement of `shape` over `rows`.
fn statement_sql(shape: &Shape, rows: &Rows) -> String {
    match shape {
        Shape::Insert { table, columns, key, overwrite } => insert_sql(table, columns, key, overwrite, rows),
        Shape::Update { table, key, set } => update_sql(table, key, set, rows),
    }
}

fn insert_sql(table: &str, columns: &[&str], key: &[&str], overwrite: &[&str], rows: &Rows) -> String {
    let statement = statement_columns(columns, overwrite);
    let on_conflict = if overwrite.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let assignments: Vec<String> = overwrite.iter().map(|column| format!("{column} = excluded.{column}")).collect();
        format!("DO UPDATE SET {}", assignments.join(", "))
    };
    format!(
        "INSERT INTO {table} ({}) {} ON CONFLICT ({}) {on_conflict}",
        statement.join(", "),
        rows.to_insert(),
        key.join(", ")
    )
}

/// The statement a run of updates of text columns becomes on PostgreSQL, whatever its length (for
/// checking its plan).
pub fn postgres_text_update_sql(table: &str, key: &[&str], set: &[&str]) -> String {
    update_sql(table, key, set, &Rows::Arrays(vec!["text"; key.len() + set.len()]))
}

/// The statement a run of updates becomes: the rows' columns are `column1`, `column2`… on both
/// backends, the key's first.
fn update_sql(table: &str, key: &[&str], set: &[&str], rows: &Rows) -> String {
    let assignments: Vec<String> =
        set.iter().enumerate().map(|(n, column)| format!("{column} = v.column{}", key.len() + n + 1)).collect();
    let matches: Vec<String> =
        key.iter().enumerate().map(|(n, column)| format!("{table}.{column} = v.column{}", n + 1)).collect();
    format!("UPDATE {table} SET {} FROM {} WHERE {}", assignments.join(", "), rows.to_update(), matches.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_run_is_one_statement_with_a_conflict_target() {
        assert_eq!(
            insert_sql("t_g1", &["id", "name"], &["id"], &[], &Rows::Values { rows: 2, width: 2 }),
            "INSERT INTO t_g1 (id, name) VALUES (?, ?), (?, ?) ON CONFLICT (id) DO NOTHING"
        );
    }

    #[test]
    fn an_insert_with_updates_folded_in_overwrites_what_they_set() {
        assert_eq!(
            insert_sql("t_g1", &["id", "name"], &["id"], &["name", "ended_at"], &Rows::Values { rows: 1, width: 3 }),
            "INSERT INTO t_g1 (id, name, ended_at) VALUES (?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, ended_at = excluded.ended_at"
        );
    }

    #[test]
    fn an_update_run_joins_a_values_list_on_the_key() {
        assert_eq!(
            update_sql("t_g1", &["id"], &["status", "at"], &Rows::Values { rows: 2, width: 3 }),
            "UPDATE t_g1 SET status = v.column2, at = v.column3 FROM (VALUES (?, ?, ?), (?, ?, ?)) AS v \
             WHERE t_g1.id = v.column1"
        );
    }

    #[test]
    fn on_postgres_a_run_reads_an_array_per_column_whatever_its_length() {
        let rows = |n: i64| -> Vec<Vec<Value>> { (0..n).map(|n| vec![n.to_string().into(), n.into()]).collect() };
        let (one, three) = (Rows::arrays(&rows(1)), Rows::arrays(&rows(3)));
        assert_eq!(one, three);
        assert_eq!(
            insert_sql("t_g1", &["id", "fee"], &["id"], &[], &three),
            "INSERT INTO t_g1 (id, fee) SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT (id) DO NOTHING"
        );
        assert_eq!(
            update_sql("t_g1", &["id"], &["fee"], &three),
            "UPDATE t_g1 SET fee = v.column2 FROM unnest($1::text[], $2::bigint[]) AS v(column1, column2) \
             WHERE t_g1.id = v.column1"
        );
    }

    #[test]
    fn a_columns_array_quotes_text_and_keeps_nulls() {
        let rows = vec![
            vec![Value::from(r#"a "quoted" \ back,slash {}"#), Value::MaybeText(None), Value::Int(-7)],
            vec![Value::from(""), Value::MaybeText(Some("NULL".into())), Value::Int(12)],
        ];
        assert_eq!(
            column_arrays(&rows),
            [r#"{"a \"quoted\" \\ back,slash {}",""}"#, r#"{NULL,"NULL"}"#, "{-7,12}"].map(Value::from)
        );
    }

    #[test]
    fn only_postgres_keeps_every_statement_prepared() {
        assert!(keeps_prepared(1, Parameters::Anonymous));
        assert!(!keeps_prepared(2, Parameters::Anonymous));
        assert!(keeps_prepared(500, Parameters::Arrays));
    }

    #[test]
    fn sqlite_gets_anonymous_parameters() {
        assert_eq!(placeholders(2, 2), "(?, ?), (?, ?)");
    }

    /// The writes of a rent and of a return of rental `id` (`rental_status`'s shapes, smaller).
    fn rented(writes: &mut Writes, id: &str) {
        writes.insert("rentals", &["id", "status", "payment"], &["id"], vec![id.into(), "RENTED".into(), id.into()]);
    }

    fn returned(writes: &mut Writes, id: &str) {
        writes.update("rentals", &["id"], &["status", "returned"], vec![id.into(), "RETURNED".into(), id.into()]);
    }

    fn refunded(writes: &mut Writes, payment: &str) {
        writes.update("rentals", &["payment"], &["status"], vec![payment.into(), "REFUNDED".into()]);
    }

    /// What `writes` are sent as: each statement's kind and its rows.
    fn sent(mut writes: Writes) -> Vec<(&'static str, usize)> {
        writes.fold();
        let kinds: Vec<_> = writes
            .shapes
            .iter()
            .map(|shape| match shape {
                Shape::Insert { overwrite, .. } if overwrite.is_empty() => "insert",
                Shape::Insert { .. } => "upsert",
                Shape::Update { .. } => "update",
            })
            .collect();
        plan(&writes.shapes, writes.writes).iter().map(|(shape, rows)| (kinds[*shape], rows.len())).collect()
    }

    #[test]
    fn interleaved_rentals_are_one_statement_per_shape() {
        let mut writes = Writes::default();
        for id in ["a", "b", "c", "d"] {
            rented(&mut writes, id);
        }
        returned(&mut writes, "x"); // rented in an earlier batch
        for id in ["e", "b", "a", "c", "y"] {
            returned(&mut writes, id);
        }
        rented(&mut writes, "e");
        assert_eq!(sent(writes), [("upsert", 3), ("insert", 1), ("update", 3), ("insert", 1)]);
    }

    #[test]
    fn a_return_in_the_batch_of_its_rent_is_written_with_the_rent() {
        let mut writes = Writes::default();
        rented(&mut writes, "a");
        returned(&mut writes, "a");
        writes.fold();
        assert_eq!(writes.writes.len(), 1);
        let Shape::Insert { overwrite, .. } = &writes.shapes[writes.writes[0].shape] else { panic!("an insert") };
        assert_eq!(overwrite, &["status", "returned"]);
        assert_eq!(writes.writes[0].values, ["a", "RETURNED", "a", "a"].map(Value::from));
    }

    #[test]
    fn a_second_insert_of_a_row_is_not_sent() {
        let mut writes = Writes::default();
        rented(&mut writes, "a");
        refunded(&mut writes, "a");
        rented(&mut writes, "a");
        assert_eq!(sent(writes), [("insert", 1), ("update", 1)]);
    }

    #[test]
    fn a_write_never_moves_before_an_earlier_write_to_its_row() {
        let mut writes = Writes::default();
        returned(&mut writes, "a"); // nothing to update yet
        rented(&mut writes, "a");
        rented(&mut writes, "b");
        refunded(&mut writes, "b");
        returned(&mut writes, "b");
        assert_eq!(sent(writes), [("update", 1), ("insert", 2), ("update", 1), ("update", 1)]);
    }

    #[test]
    fn writes_that_find_rows_by_other_columns_keep_their_order() {
        let mut writes = Writes::default();
        rented(&mut writes, "a");
        refunded(&mut writes, "b");
        rented(&mut writes, "b");
        returned(&mut writes, "a"); // the refund might have touched a: not folded into its rent
        returned(&mut writes, "b");
        assert_eq!(sent(writes), [("insert", 1), ("update", 1), ("upsert", 1), ("update", 1)]);
    }

    /// A table as the statements leave it: rows of named values, in insertion order.
    type Table = Vec<HashMap<&'static str, Value>>;

    /// What one statement of `shape` with `rows` does to `table` (an insert's conflict target and
    /// an update's key are the rows' identity, as the views' tables declare them).
    fn run(table: &mut Table, shape: &Shape, rows: Vec<Vec<Value>>) {
        match shape {
            Shape::Insert { columns, key, overwrite, .. } => {
                for values in rows {
                    let row: HashMap<_, _> = statement_columns(columns, overwrite).into_iter().zip(values).collect();
                    match table.iter_mut().find(|other| key.iter().all(|column| other[column] == row[column])) {
                        Some(there) => {
                            for column in overwrite {
                                there.insert(column, row[column].clone());
                            }
                        }
                        None => table.push(row),
                    }
                }
            }
            Shape::Update { key, set, .. } => {
                for values in last_per_key(rows, key.len()) {
                    for row in table.iter_mut().filter(|row| key.iter().zip(&values).all(|(c, v)| &row[c] == v)) {
                        for (column, value) in set.iter().zip(&values[key.len()..]) {
                            row.insert(column, value.clone());
                        }
                    }
                }
            }
        }
    }

    /// A table's rows, in no particular order (a table has none).
    fn contents(table: &Table) -> Vec<String> {
        let mut rows: Vec<String> = table
            .iter()
            .map(|row| {
                let mut values: Vec<_> = row.iter().collect();
                values.sort_by_key(|(column, _)| **column);
                format!("{values:?}")
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn folded_and_planned_statements_leave_a_table_as_the_writes_one_by_one_do() {
        use rand::{Rng, SeedableRng};
        let columns: &'static [&'static str] = &["id", "status", "payment"];
        let ids = ["a", "b", "c"];
        let words = ["RENTED", "RETURNED", "LATE"];
        for seed in 0..5_000 {
            let mut random = rand::rngs::StdRng::seed_from_u64(seed);
            // Some rows are there before the batch, and an insert of theirs does nothing.
            let mut before = Table::new();
            for id in ids {
                if random.gen_bool(0.3) {
                    let row = [("id", id), ("status", "OLD"), ("payment", id), ("ended", "OLD")];
                    before.push(row.into_iter().map(|(column, value)| (column, Value::from(value))).collect());
                }
            }
            let mut writes = Writes::default();
            for _ in 0..random.gen_range(1..24) {
                let id = ids[random.gen_range(0..3)];
                let word = words[random.gen_range(0..3)];
                match random.gen_range(0..5) {
                    0 | 1 => writes.insert("t", columns, &["id"], vec![id.into(), word.into(), id.into()]),
                    2 => writes.update("t", &["id"], &["status"], vec![id.into(), word.into()]),
                    3 => writes.update("t", &["id"], &["ended", "payment"], vec![id.into(), word.into(), word.into()]),
                    _ => writes.update("t", &["payment"], &["status"], vec![id.into(), word.into()]),
                }
            }
            let mut one_by_one = before.clone();
            for write in &writes.writes {
                run(&mut one_by_one, &writes.shapes[write.shape], vec![write.values.clone()]);
            }
            writes.fold();
            let mut planned = before;
            for (shape, rows) in plan(&writes.shapes, writes.writes) {
                run(&mut planned, &writes.shapes[shape], rows);
            }
            assert_eq!(contents(&planned), contents(&one_by_one), "seed {seed}");
        }
    }

    #[test]
    fn statements_rendered_ahead_are_sent_to_the_backend_they_were_rendered_for_only() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        connection.execute_batch("CREATE TABLE t_g1 (id TEXT PRIMARY KEY, status TEXT NOT NULL)").unwrap();
        let writes = || {
            let mut writes = Writes::default();
            writes.insert("t_g1", &["id", "status"], &["id"], vec!["a".into(), "RENTED".into()]);
            writes.update("t_g1", &["id"], &["status"], vec!["a".into(), "RETURNED".into()]);
            writes
        };
        let stored = || -> Vec<(String, String)> {
            let mut statement = connection.prepare("SELECT id, status FROM t_g1").unwrap();
            statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
        };

        let refused = writes().render(Parameters::Arrays).flush_sqlite(&connection).unwrap_err();
        assert!(refused.to_string().contains("rendered as Arrays sent to SQLite"), "{refused}");
        assert!(stored().is_empty(), "nothing is sent of a batch rendered for PostgreSQL");

        writes().render(Parameters::Anonymous).flush_sqlite(&connection).unwrap();
        assert_eq!(stored(), vec![("a".to_string(), "RETURNED".to_string())]);
    }

    #[test]
    fn of_several_updates_to_a_key_the_last_is_kept() {
        let row = |key: &str, status: &str| vec![Value::from(key), Value::from(status)];
        let kept = last_per_key(vec![row("a", "RENTED"), row("b", "RENTED"), row("a", "RETURNED")], 1);
        assert_eq!(kept, vec![row("a", "RETURNED"), row("b", "RENTED")]);
    }
}
