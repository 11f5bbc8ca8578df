//! One page of a list query: `{"items": [...], "next": "<cursor or null>"}` (API.md).

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, Arguments, FromRow};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order: the extra row only tells that
    /// there is more, and the cursor is the key of the last row shown.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Self { items: rows, next }
    }
}

/// The rows of `select` (a statement of `columns`, its rows in `order`) with `arguments`.
///
/// On SQLite the database returns them as one JSON array of objects keyed by column name, read
/// with `serde`: every row is otherwise a message from sqlx's connection thread and an `Any` row
/// to decode, and a page of ten rentals was answered at half the rate of a page of one. On
/// PostgreSQL, whose rows arrive together on the socket, building the JSON cost the database more
/// than it saved (queries 17% slower), so the rows are read as they are (BENCHMARKS.md, eighth
/// session).
pub async fn fetch_rows<'q, T>(
    connection: &mut AnyConnection,
    select: &'q str,
    columns: &[&str],
    order: &str,
    arguments: AnyArguments<'q>,
) -> Result<Vec<T>, sqlx::Error>
where
    T: DeserializeOwned + for<'r> FromRow<'r, AnyRow> + Send + Unpin,
{
    if connection.backend_name() != "SQLite" {
        return sqlx::query_as_with(select, arguments).fetch_all(&mut *connection).await;
    }
    let json: String =
        sqlx::query_scalar_with(&json_rows_sql(select, columns, order), arguments).fetch_one(&mut *connection).await?;
    serde_json::from_str(&json).map_err(|error| sqlx::Error::Decode(error.into()))
}

/// SQLite: the rows of `select` (a statement of `columns`) as one JSON array of objects keyed by
/// column name, in `order`.
pub fn json_rows_sql(select: &str, columns: &[&str], order: &str) -> String {
    let pairs = columns.iter().map(|column| format!("'{column}', {column}")).collect::<Vec<_>>().join(", ");
    format!("SELECT json_group_array(json_object({pairs}) ORDER BY {order}) FROM ({select})")
}

/// `arguments`, then `value`.
pub fn with<'q, T>(mut arguments: AnyArguments<'q>, value: T) -> Result<AnyArguments<'q>, sqlx::Error>
where
    T: 'q + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
{
    arguments.add(value).map_err(sqlx::Error::Encode)?;
    Ok(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_give_a_cursor_only_when_more_rows_follow() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page, Page { items: vec![1, 2], next: Some("2".into()) });
        let last = Page::from_rows(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(last, Page { items: vec![1, 2], next: None });
    }
}
