//! One page of a list query: `{"items": [...], "next": "<cursor or null>"}` (API.md).
//!
//! A page is built either as a [`Page`] of owned items, or, where a query's rows borrow their text
//! from the statement that reads them, written as JSON row by row by a [`PageWriter`] (ADR 30).

use serde::Serialize;

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

/// The bytes a page's JSON is first given room for, per item (a rental is about 450 bytes as JSON),
/// and the most items that room is sized for: a page of 500 grows as it fills instead of asking for
/// 250 KiB up front, past the allocator's `mmap` threshold.
const BYTES_PER_ITEM: usize = 512;
const ITEMS_SIZED_FOR: usize = 16;

/// A page written as JSON while its rows are read, each row serialized as soon as it is read: a row
/// that borrows its text from the statement is never copied into owned strings (ADR 30). Fed up to
/// `limit + 1` rows in order, as [`Page::from_rows`] is: the extra row only tells that there is
/// more, and the cursor is the key of the last item written. The JSON is the same as a [`Page`]'s.
#[derive(Debug)]
pub struct PageWriter {
    json: Vec<u8>,
    limit: usize,
    written: usize,
    more: bool,
    last_key: String,
}

impl PageWriter {
    pub fn new(limit: i64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut json = Vec::with_capacity(64 + BYTES_PER_ITEM * limit.min(ITEMS_SIZED_FOR));
        json.extend_from_slice(br#"{"items":["#);
        Self { json, limit, written: 0, more: false, last_key: String::new() }
    }

    /// How many rows the page's statement should read: its items and one more, which only tells
    /// that there is more (the statement's `LIMIT`).
    pub fn rows_to_read(&self) -> i64 {
        i64::try_from(self.limit).map_or(i64::MAX, |limit| limit.saturating_add(1))
    }

    /// Writes `item` whose cursor is `key`, unless the page is already full (then there is more).
    pub fn push(&mut self, item: &impl Serialize, key: &str) -> serde_json::Result<()> {
        if self.written == self.limit {
            self.more = true;
            return Ok(());
        }
        if self.written > 0 {
            self.json.push(b',');
        }
        serde_json::to_writer(&mut self.json, item)?;
        self.written += 1;
        self.last_key.clear();
        self.last_key.push_str(key);
        Ok(())
    }

    /// The page's JSON: its items, its cursor, then the fields of `rest` (a struct or a map), so a
    /// page can be one field of a larger answer.
    pub fn finish_with(mut self, rest: &impl Serialize) -> serde_json::Result<Vec<u8>> {
        self.end_items()?;
        let start = self.json.len();
        serde_json::to_writer(&mut self.json, rest)?;
        match self.json.get(start..) {
            Some(b"{}") => {
                self.json.truncate(start);
                self.json.push(b'}');
            }
            // `{"a":1}` → `,"a":1}`: its fields follow the page's own.
            Some([b'{', ..]) => self.json[start] = b',',
            _ => return Err(serde::ser::Error::custom("the rest of a page must serialize as an object")),
        }
        Ok(self.json)
    }

    /// The page's JSON: its items and its cursor.
    pub fn finish(mut self) -> serde_json::Result<Vec<u8>> {
        self.end_items()?;
        self.json.push(b'}');
        Ok(self.json)
    }

    /// Closes the items and writes the cursor: `],"next":…`.
    fn end_items(&mut self) -> serde_json::Result<()> {
        self.json.extend_from_slice(br#"],"next":"#);
        let next = self.more.then_some(self.last_key.as_str());
        serde_json::to_writer(&mut self.json, &next)
    }
}

/// A page or an item that could not be written as JSON, as a query's other failures are reported.
pub fn unwritten(error: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(error))
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

    /// What a writer fed `rows` (each its own key) writes, parsed back.
    fn written(rows: &[&str], limit: i64, rest: Option<serde_json::Value>) -> serde_json::Value {
        let mut writer = PageWriter::new(limit);
        for row in rows {
            writer.push(row, row).unwrap();
        }
        let json = match rest {
            Some(rest) => writer.finish_with(&rest).unwrap(),
            None => writer.finish().unwrap(),
        };
        serde_json::from_slice(&json).unwrap()
    }

    #[test]
    fn a_written_page_should_be_the_json_of_the_same_page_built_from_its_rows() {
        for (rows, limit) in [(&["a", "b", "c"][..], 2), (&["a", "b"], 2), (&["a"], 5), (&[], 3)] {
            let page = Page::from_rows(rows.to_vec(), limit, |row| row.to_string());
            assert_eq!(written(rows, limit, None), serde_json::to_value(&page).unwrap(), "{rows:?} limit {limit}");
        }
        assert_eq!(PageWriter::new(2).rows_to_read(), 3, "the items and one more, which tells there is more");
    }

    #[test]
    fn a_written_page_should_carry_the_fields_of_the_rest_after_its_own() {
        let rest = serde_json::json!({"customer_id": "kim", "notifications": []});
        let page = written(&["a", "b"], 1, Some(rest));
        assert_eq!(page, serde_json::json!({"items": ["a"], "next": "a", "customer_id": "kim", "notifications": []}));
        let empty = written(&[], 1, Some(serde_json::json!({})));
        assert_eq!(empty, serde_json::json!({"items": [], "next": null}));
        let refused = PageWriter::new(1).finish_with(&[1, 2]);
        assert!(refused.is_err(), "a list has no fields to add");
    }
}
