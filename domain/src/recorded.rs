//! An event as it sits in the global log: the stored envelope that workers and the audit read.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;

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
    pub payload: Payload,
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
        serde_json::from_str(self.payload.get())
    }
}

/// An event's payload as stored: JSON text, checked to be JSON when it is read, and decoded only
/// into the event enum its reader wants, never first into a `serde_json::Value` tree (which cost
/// about a fifth of a projection's CPU). Serialized as the JSON it holds.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// `text`, if it is one JSON value.
    pub fn parse(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }
}

/// The same text: payloads read from one store compare as stored.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}
