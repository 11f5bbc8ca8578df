//! One page of a list query: `{"items": [...], "next": "<cursor or null>"}` (API.md).

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::AnyConnection;

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

/// `select` (a statement of `columns`, its rows in `order`) wrapped so that the database returns
/// its rows as one JSON array of objects keyed by column name: a page crosses from the database
/// as one value instead of a row per item. On SQLite each row is a message from sqlx's connection
/// thread, turned into `Any`'s row and then decoded: a page of ten rentals was answered at half
/// the rate of a page of one (BENCHMARKS.md, eighth session).
pub fn json_rows_sql(
    connection: &AnyConnection,
    select: &str,
    columns: &[&str],
    order: &str,
) -> Result<String, sqlx::Error> {
    let pairs = columns.iter().map(|column| format!("'{column}', {column}")).collect::<Vec<_>>().join(", ");
    match connection.backend_name() {
        "SQLite" => Ok(format!("SELECT json_group_array(json_object({pairs}) ORDER BY {order}) FROM ({select})")),
        "PostgreSQL" => Ok(format!(
            "SELECT coalesce(json_agg(json_build_object({pairs}) ORDER BY {order}), '[]')::text FROM ({select}) AS page"
        )),
        other => Err(sqlx::Error::Configuration(format!("no JSON rows for the {other} backend").into())),
    }
}

/// The rows of a statement from [`json_rows_sql`].
pub fn from_json_rows<T: DeserializeOwned>(json: &str) -> Result<Vec<T>, sqlx::Error> {
    serde_json::from_str(json).map_err(|error| sqlx::Error::Decode(error.into()))
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
