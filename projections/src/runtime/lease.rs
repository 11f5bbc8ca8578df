//! Leases: at most one live owner per worker, with fencing (see migration 0004).
//!
//! Times are this process's clock in milliseconds; the owners of one worker are expected to run on
//! machines with synchronised clocks, and the lease length leaves seconds of slack.

use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Row};

/// A held lease: the owner may advance the worker's checkpoint while its token is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub token: i64,
}

/// The lease of `name` moved to another owner: this one must stop.
#[derive(Debug, thiserror::Error)]
#[error("the lease of worker {0} was taken over by another owner")]
pub struct LeaseLost(pub String);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// When a lease renewed now for `ttl` expires.
pub(crate) fn expiry(ttl: Duration) -> i64 {
    now_ms() + ms(ttl)
}

/// Renews lease `$1` while its token is `$2`, until `$3`: no row when another owner took it.
pub(crate) const RENEW: &str = "UPDATE worker_leases SET expires_at = $3 WHERE name = $1 AND token = $2";

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Takes the lease of `name` for `owner` if nobody holds it (or `owner` already does); `None` if
/// another owner holds it.
pub async fn try_acquire(pool: &AnyPool, name: &str, owner: &str, ttl: Duration) -> Result<Option<Lease>, sqlx::Error> {
    let now = now_ms();
    sqlx::query("INSERT INTO worker_leases (name, owner, token, expires_at) VALUES ($1, '', 0, 0) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(pool)
        .await?;
    let taken = sqlx::query(
        "UPDATE worker_leases SET owner = $2, token = token + 1, expires_at = $3 \
         WHERE name = $1 AND (expires_at < $4 OR owner = $2)",
    )
    .bind(name)
    .bind(owner)
    .bind(now + ms(ttl))
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    if taken == 0 {
        return Ok(None);
    }
    let token: i64 = sqlx::query("SELECT token FROM worker_leases WHERE name = $1 AND owner = $2")
        .bind(name)
        .bind(owner)
        .fetch_one(pool)
        .await?
        .try_get("token")?;
    Ok(Some(Lease { name: name.to_string(), owner: owner.to_string(), token }))
}

impl Lease {
    /// Renews the lease inside the caller's transaction, and fails it if the lease is no longer
    /// ours: the fencing check of every checkpoint write.
    pub async fn renew(&self, tx: &mut AnyConnection, ttl: Duration) -> Result<(), super::BoxError> {
        let renewed =
            sqlx::query(RENEW).bind(&self.name).bind(self.token).bind(expiry(ttl)).execute(tx).await?.rows_affected();
        if renewed == 0 {
            return Err(LeaseLost(self.name.clone()).into());
        }
        Ok(())
    }

    /// Gives the lease up at once (on a graceful stop), so that a stand-by takes over without
    /// waiting for it to expire.
    pub async fn release(&self, pool: &AnyPool) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE worker_leases SET expires_at = 0 WHERE name = $1 AND token = $2")
            .bind(&self.name)
            .bind(self.token)
            .execute(pool)
            .await?;
        Ok(())
    }
}

/// Who holds `name`, and until when (milliseconds since the epoch).
pub async fn holder(pool: &AnyPool, name: &str) -> Result<Option<(String, i64)>, sqlx::Error> {
    let row = sqlx::query("SELECT owner, expires_at FROM worker_leases WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    row.map(|row| Ok((row.try_get("owner")?, row.try_get("expires_at")?))).transpose()
}
