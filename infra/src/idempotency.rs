//! Idempotency keys: a command sent again with the same key does nothing new and is answered as
//! the first time. The row is reserved before the command runs and completed in the transaction
//! that stores the command's events (see `event_store`).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use uuid::Uuid;

/// The key of one command: the caller's own key, scoped to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub caller: String,
    pub key: String,
}

/// Metadata entries by which the event store recognises a keyed command's events.
pub const CALLER_ENTRY: &str = "idempotency_caller";
pub const KEY_ENTRY: &str = "idempotency_key";

/// A reserved (and perhaps completed) command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Method, path and canonical body of the request that reserved the key.
    pub request: String,
    /// The ids the command uses, chosen by the first request.
    pub reserved_ids: Vec<Uuid>,
    pub status: u16,
    pub response_id: String,
    pub location: Option<String>,
    /// The position of the command's last event, once its events are stored.
    pub position: Option<i64>,
}

/// Reserves `key` for `candidate`, or returns the reservation made first (by an earlier or a
/// concurrent request).
pub async fn reserve(
    pool: &AnyPool,
    key: &IdempotencyKey,
    candidate: &Reservation,
) -> Result<Reservation, sqlx::Error> {
    let ids = serde_json::to_string(&candidate.reserved_ids).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, key, request, reserved_ids, status, response_id, location, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (caller, key) DO NOTHING",
    )
    .bind(&key.caller)
    .bind(&key.key)
    .bind(&candidate.request)
    .bind(ids)
    .bind(i64::from(candidate.status))
    .bind(&candidate.response_id)
    .bind(&candidate.location)
    .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    .execute(pool)
    .await?;
    load(pool, key).await?.ok_or(sqlx::Error::RowNotFound)
}

pub async fn load(pool: &AnyPool, key: &IdempotencyKey) -> Result<Option<Reservation>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT request, reserved_ids, status, response_id, location, position FROM idempotency_keys \
         WHERE caller = $1 AND key = $2",
    )
    .bind(&key.caller)
    .bind(&key.key)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Completes a command that stored no event (nothing else would complete it).
pub async fn complete(pool: &AnyPool, key: &IdempotencyKey, position: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE idempotency_keys SET position = $3 WHERE caller = $1 AND key = $2 AND position IS NULL")
        .bind(&key.caller)
        .bind(&key.key)
        .bind(position)
        .execute(pool)
        .await?;
    Ok(())
}

/// Frees the key of a command that failed, so that the client may try again with it.
pub async fn release(pool: &AnyPool, key: &IdempotencyKey) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 AND position IS NULL")
        .bind(&key.caller)
        .bind(&key.key)
        .execute(pool)
        .await?;
    Ok(())
}

fn decode(row: &AnyRow) -> Result<Reservation, sqlx::Error> {
    let ids: String = row.try_get("reserved_ids")?;
    let status: i64 = row.try_get("status")?;
    Ok(Reservation {
        request: row.try_get("request")?,
        reserved_ids: serde_json::from_str(&ids).map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        status: u16::try_from(status).map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        response_id: row.try_get("response_id")?,
        location: row.try_get("location")?,
        position: row.try_get("position")?,
    })
}
