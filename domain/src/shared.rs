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

/// The white space `required_text` trims: ASCII only, as the API's schema says
/// (`pattern: [^ \t\n\r\f\v]`), so that the server and its OpenAPI document agree exactly.
const BLANK: [char; 6] = [' ', '\t', '\n', '\r', '\x0c', '\x0b'];

/// Parses free text a person typed (a title, a name): at most `max_chars` characters, not blank;
/// kept trimmed.
pub fn required_text(field: &'static str, value: &str, max_chars: usize) -> Result<String, ValidationError> {
    if value.chars().count() > max_chars {
        return Err(ValidationError::new(field, format!("must be at most {max_chars} characters")));
    }
    let trimmed = value.trim_matches(BLANK);
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, "must not be blank"));
    }
    Ok(trimmed.to_string())
}

/// Parses an id: a UUID in its hyphenated form (`8-4-4-4-12` hex digits), as the schema's
/// `format: uuid` says.
pub fn uuid(field: &'static str, value: &str) -> Result<uuid::Uuid, ValidationError> {
    let hyphenated = value.len() == 36 && [8, 13, 18, 23].iter().all(|&at| value.as_bytes()[at] == b'-');
    match uuid::Uuid::try_parse(value) {
        Ok(id) if hyphenated => Ok(id),
        _ => Err(ValidationError::new(field, "must be a UUID (8-4-4-4-12 hexadecimal digits)")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_keep_text_trimmed_and_refuse_blank_or_long_text() {
        assert_eq!(required_text("title", "  Dune ", 10).unwrap(), "Dune");
        assert!(required_text("title", " \t\n", 10).is_err());
        assert!(required_text("title", "", 10).is_err());
        assert!(required_text("title", "abcdefghijk", 10).is_err());
    }

    #[test]
    fn it_should_take_only_hyphenated_uuids() {
        assert!(uuid("book_id", "01a1fe13-0a5e-73a4-a8ec-687abda10e81").is_ok());
        assert!(uuid("book_id", "01a1fe130a5e73a4a8ec687abda10e81").is_err());
        assert!(uuid("book_id", "{01a1fe13-0a5e-73a4-a8ec-687abda10e81}").is_err());
        assert!(uuid("book_id", "dune").is_err());
    }
}
