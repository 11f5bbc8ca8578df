//! Shared kernel: the value types every context speaks — money, command metadata, validation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// An amount of Korean won. KRW has no fractional unit, so money is a whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Krw(i64);

impl Krw {
    /// Parses a price, fee or charge: it must be more than zero.
    pub fn positive(field: &'static str, amount: i64) -> Result<Self, ValidationError> {
        if amount <= 0 {
            return Err(ValidationError::new(field, "must be a positive whole number of KRW"));
        }
        Ok(Self(amount))
    }

    pub fn amount(self) -> i64 {
        self.0
    }
}

/// A field of a command that does not meet its rule; the API answers 422 naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// Parses free text a person typed (a title, a name): trimmed, not empty, bounded.
pub fn required_text(field: &'static str, value: &str, max_chars: usize) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max_chars {
        return Err(ValidationError::new(field, format!("must be at most {max_chars} characters")));
    }
    Ok(trimmed.to_string())
}

/// Who asked, why, and inside which business transaction: stored with every event.
///
/// The correlation id is the id of the business transaction (the rental, order, ...); the
/// causation id is what directly caused the event — the HTTP request for a person's command, the
/// causing event for a policy's command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventMetadata {
    pub correlation_id: String,
    pub causation_id: String,
    pub actor: String,
    pub request_id: String,
}

impl EventMetadata {
    /// The form cqrs-es stores next to each event.
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("correlation_id".to_string(), self.correlation_id.clone()),
            ("causation_id".to_string(), self.causation_id.clone()),
            ("actor".to_string(), self.actor.clone()),
            ("request_id".to_string(), self.request_id.clone()),
        ])
    }
}
