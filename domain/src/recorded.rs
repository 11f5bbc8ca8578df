//! An event as it sits in the global log: the stored envelope that workers and the audit read.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shared::EventMetadata;

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
    /// A stable id for this event, used as the causation id of what it causes.
    pub fn event_id(&self) -> String {
        format!("{}/{}/{}", self.aggregate_type, self.aggregate_id, self.sequence)
    }

    /// Decodes the payload as the event enum of its aggregate type.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        serde_json::from_value(self.payload.clone())
    }
}
