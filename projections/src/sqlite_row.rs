//! A SQLite row read straight into a `serde` type: each column is a field of that name, each value
//! SQLite's own (integer, real, text, blob or NULL), with no JSON between them (ADR 28). A type
//! may borrow its text from the row (`&str` fields): such a value lives until the statement steps
//! to its next row, and costs no allocation (ADR 30).
//!
//! A view's query type derives `Deserialize` for both backends' sake, so the one derive reads a
//! row here and, on PostgreSQL, `sqlx`'s `FromRow` reads it there. A `NULL` is `None` for an
//! `Option` field and an error for any other; a column the type does not name is skipped, as
//! `serde` skips unknown fields.

use std::fmt;

use rusqlite::types::ValueRef;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Row `row` of its statement as a `T`, which may borrow the row's text and blobs.
pub(crate) fn from_row<'r, T: Deserialize<'r>>(row: &'r rusqlite::Row<'_>) -> Result<T, RowError> {
    T::deserialize(RowDeserializer { row, column: 0 })
}

/// Why a row could not be read as the type asked for.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RowError(String);

impl de::Error for RowError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        RowError(message.to_string())
    }
}

impl From<rusqlite::Error> for RowError {
    fn from(error: rusqlite::Error) -> Self {
        RowError(error.to_string())
    }
}

/// A row as a map from column name to value; `column` is the next column to read.
struct RowDeserializer<'de, 'stmt> {
    row: &'de rusqlite::Row<'stmt>,
    column: usize,
}

impl<'de> de::Deserializer<'de> for RowDeserializer<'de, '_> {
    type Error = RowError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for RowDeserializer<'de, '_> {
    type Error = RowError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, RowError> {
        let statement = self.row.as_ref();
        if self.column == statement.column_count() {
            return Ok(None);
        }
        let name = statement.column_name(self.column)?;
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, RowError> {
        let value = self.row.get_ref(self.column)?;
        self.column += 1;
        seed.deserialize(ValueDeserializer(value))
    }
}

/// One column's value, borrowed from the row.
struct ValueDeserializer<'de>(ValueRef<'de>);

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = RowError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.0 {
            ValueRef::Null => visitor.visit_unit(),
            ValueRef::Integer(integer) => visitor.visit_i64(integer),
            ValueRef::Real(real) => visitor.visit_f64(real),
            ValueRef::Text(text) => visitor.visit_borrowed_str(
                std::str::from_utf8(text).map_err(|error| RowError(format!("text column: {error}")))?,
            ),
            ValueRef::Blob(blob) => visitor.visit_borrowed_bytes(blob),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.0 {
            ValueRef::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Row {
        id: String,
        n: i64,
        share: f64,
        note: Option<String>,
    }

    fn read<T: DeserializeOwned>(sql: &str) -> Result<Vec<T>, RowError> {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let mut statement = connection.prepare(sql).unwrap();
        let mut rows = statement.raw_query();
        let mut read = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            read.push(from_row(row)?);
        }
        Ok(read)
    }

    #[test]
    fn it_should_read_each_column_into_the_field_of_its_name_whatever_their_order() {
        let rows: Vec<Row> = read("SELECT 0.5 AS share, NULL AS note, 7 AS n, 'a' AS id, 'x' AS extra").unwrap();
        assert_eq!(rows, vec![Row { id: "a".into(), n: 7, share: 0.5, note: None }]);
        let rows: Vec<Row> = read("SELECT 'b' AS id, -1 AS n, 2.0 AS share, 'two' AS note").unwrap();
        assert_eq!(rows, vec![Row { id: "b".into(), n: -1, share: 2.0, note: Some("two".into()) }]);
    }

    #[test]
    fn it_should_lend_a_borrowing_type_the_rows_text_and_blobs() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Borrowed<'r> {
            id: &'r str,
            key: &'r [u8],
            #[serde(borrow)]
            note: Option<&'r str>,
        }
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let mut statement = connection
            .prepare("SELECT 'a' AS id, x'0102' AS key, NULL AS note UNION ALL SELECT 'b', x'', 'two'")
            .unwrap();
        let mut rows = statement.raw_query();
        let mut seen = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let read: Borrowed<'_> = from_row(row).unwrap();
            seen.push(format!("{read:?}"));
        }
        assert_eq!(
            seen,
            [r#"Borrowed { id: "a", key: [1, 2], note: None }"#, r#"Borrowed { id: "b", key: [], note: Some("two") }"#]
        );
    }

    #[test]
    fn it_should_refuse_a_null_or_a_value_of_another_type_where_the_field_wants_a_value() {
        let null = read::<Row>("SELECT NULL AS id, 1 AS n, 0.0 AS share, NULL AS note").unwrap_err();
        assert!(null.0.contains("invalid type: unit value, expected a string"), "{null}");
        let text = read::<Row>("SELECT 'a' AS id, 'one' AS n, 0.0 AS share, NULL AS note").unwrap_err();
        assert!(text.0.contains("invalid type: string \"one\", expected i64"), "{text}");
        let missing = read::<Row>("SELECT 'a' AS id, 1 AS n").unwrap_err();
        assert!(missing.0.contains("missing field `share`"), "{missing}");
    }
}
