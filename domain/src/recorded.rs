//! An event as it sits in the global log: the stored envelope that workers and the audit read.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shared::EventMetadata;

/// How far a reader has followed the global log: the commit-order key and the position of the
/// last event it has seen. On SQLite `transaction_id` is always 0 and `position` alone orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogCursor {
    pub transaction_id: i64,
    pub position: i64,
}

impl LogCursor {
    pub const START: Self = Self { transaction_id: 0, position: 0 };
}

/// One event of the global log, in the order workers must see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    /// Global log position (unique, assigned at insert).
    pub position: i64,
    /// Commit order key: the writing transaction on PostgreSQL; 0 on SQLite (one writer at a time).
    #[serde(skip)]
    pub transaction_id: i64,
    pub recorded_at: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

impl RecordedEvent {
    /// The reader's cursor once it has seen this event.
    pub fn cursor(&self) -> LogCursor {
        LogCursor { transaction_id: self.transaction_id, position: self.position }
    }

    /// A stable id for this event, used as the causation id of what it causes.
    pub fn event_id(&self) -> String {
        format!("{}/{}/{}", self.aggregate_type, self.aggregate_id, self.sequence)
    }

    /// Decodes the payload as the event enum of its aggregate type.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        serde_json::from_value(self.payload.clone())
    }
}
