//! Checkpoints: how far each worker has applied the log.

use sqlx::{AnyConnection, AnyPool, Row};
use storming_domain::recorded::LogCursor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub name: String,
    pub cursor: LogCursor,
    pub updated_at: String,
}

/// The checkpoint of `name`; the start of the log if the worker never ran.
pub async fn checkpoint(pool: &AnyPool, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query("SELECT transaction_id, position, updated_at FROM checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(row) => Checkpoint {
            name: name.to_string(),
            cursor: LogCursor { transaction_id: row.try_get("transaction_id")?, position: row.try_get("position")? },
            updated_at: row.try_get("updated_at")?,
        },
        None => Checkpoint { name: name.to_string(), cursor: LogCursor::START, updated_at: String::new() },
    })
}

/// Moves checkpoint `$1` to transaction `$2`, position `$3`, at `$4` (creating the row on first use).
pub(crate) const ADVANCE: &str = "INSERT INTO checkpoints (name, transaction_id, position, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET transaction_id = $2, position = $3, updated_at = $4";

/// A checkpoint's `updated_at` for now.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Moves `name` to `cursor` (creating the row on first use), inside the caller's transaction.
pub(crate) async fn advance(tx: &mut AnyConnection, name: &str, cursor: LogCursor) -> Result<(), sqlx::Error> {
    sqlx::query(ADVANCE).bind(name).bind(cursor.transaction_id).bind(cursor.position).bind(now()).execute(tx).await?;
    Ok(())
}
