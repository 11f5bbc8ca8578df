//! Projection generations (migration 0006): the tables of each projection exist per generation;
//! queries read the active one while a rebuild fills the next from position 0; the two are
//! switched in one guarded UPDATE once the new one has caught up. Indexes that only queries use
//! are built when a generation comes within a batch of the head, not kept up during its catch-up
//! (see [`Projection::query_indexes`]); a rebuilt generation goes live only with them.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Row};
use storming_domain::recorded::LogCursor;

use super::{BoxError, Projection};
use crate::reader::{Param, ViewReader};

/// The name of table `base` in `generation`.
pub fn table(base: &str, generation: i64) -> String {
    format!("{base}_g{generation}")
}

/// The checkpoint and lease name of the worker that builds `generation` of projection `name`.
pub fn worker_key(name: &str, generation: i64) -> String {
    format!("{name}@g{generation}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generations {
    pub active: i64,
    pub active_version: i64,
    pub building: Option<i64>,
    pub building_version: Option<i64>,
    pub retired: Option<i64>,
    pub retired_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("generation {0} is already being built")]
    InProgress(i64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn load(pool: &AnyPool, name: &str) -> Result<Option<Generations>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT active, active_version, building, building_version, retired, retired_at_ms \
         FROM projection_generations WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(Generations {
            active: row.try_get("active")?,
            active_version: row.try_get("active_version")?,
            building: row.try_get("building")?,
            building_version: row.try_get("building_version")?,
            retired: row.try_get("retired")?,
            retired_at_ms: row.try_get("retired_at_ms")?,
        })
    })
    .transpose()
}

/// The generation queries read (1 until the projection was first set up).
pub async fn active(pool: &AnyPool, name: &str) -> Result<i64, sqlx::Error> {
    Ok(load(pool, name).await?.map_or(1, |generations| generations.active))
}

/// The generation queries read and how far it has applied the log, in one statement (generation 1
/// at the start of the log until the projection was first set up). The join's key is
/// [`worker_key`] spelled in SQL.
pub async fn active_and_reached(reader: &mut ViewReader<'_>, name: &str) -> Result<(i64, LogCursor), sqlx::Error> {
    #[derive(serde::Deserialize, sqlx::FromRow)]
    struct Reached {
        active: i64,
        transaction_id: Option<i64>,
        position: Option<i64>,
    }
    let row: Option<Reached> = reader
        .row(
            "SELECT g.active, c.transaction_id, c.position FROM projection_generations g \
             LEFT JOIN checkpoints c ON c.name = g.name || '@g' || CAST(g.active AS text) \
             WHERE g.name = $1",
            &[Param::Text(name)],
        )
        .await?;
    let Some(row) = row else { return Ok((1, LogCursor::START)) };
    let reached = match (row.transaction_id, row.position) {
        (Some(transaction_id), Some(position)) => LogCursor { transaction_id, position },
        _ => LogCursor::START,
    };
    Ok((row.active, reached))
}

/// Sets the projection up on first start (generation 1), and starts a rebuild when the code's
/// version of the projection is not the active one's.
pub async fn ensure(pool: &AnyPool, projection: &dyn Projection) -> Result<Generations, BoxError> {
    let mut tx = pool.begin().await?;
    let created = sqlx::query(
        "INSERT INTO projection_generations (name, active, active_version) VALUES ($1, 1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(projection.name())
    .bind(projection.version())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if created == 1 {
        create_tables(&mut tx, projection, 1).await?;
    }
    tx.commit().await?;
    let generations = load(pool, projection.name()).await?.ok_or("the projection's registry row vanished")?;
    if generations.active_version != projection.version() && generations.building.is_none() {
        tracing::info!(
            projection = projection.name(),
            from = generations.active_version,
            to = projection.version(),
            "the projection's version changed: rebuilding it (the active generation answers as it stands until then)"
        );
        match start_rebuild(pool, projection).await {
            Ok(_) | Err(RebuildError::InProgress(_)) => {}
            Err(RebuildError::Database(error)) => return Err(error.into()),
        }
        return Ok(load(pool, projection.name()).await?.ok_or("the projection's registry row vanished")?);
    }
    Ok(generations)
}

/// Starts building the next generation from position 0; queries keep reading the active one.
pub async fn start_rebuild(pool: &AnyPool, projection: &dyn Projection) -> Result<i64, RebuildError> {
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query(
        "UPDATE projection_generations \
         SET building = (CASE WHEN COALESCE(retired, 0) > active THEN retired ELSE active END) + 1, building_version = $2 \
         WHERE name = $1 AND building IS NULL",
    )
    .bind(projection.name())
    .bind(projection.version())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let building: Option<i64> = sqlx::query("SELECT building FROM projection_generations WHERE name = $1")
        .bind(projection.name())
        .fetch_one(&mut *tx)
        .await?
        .try_get("building")?;
    let building = building.ok_or(sqlx::Error::RowNotFound)?;
    if claimed == 0 {
        return Err(RebuildError::InProgress(building));
    }
    drop_tables(&mut tx, projection, building).await?; // leftovers of an earlier attempt, if any
    create_tables(&mut tx, projection, building).await?;
    tx.commit().await?;
    tracing::info!(projection = projection.name(), generation = building, "rebuild started");
    Ok(building)
}

/// Makes `building` the active generation; the previous one is retired. Guarded: only one
/// process switches, and only the generation that is being built.
async fn switch(pool: &AnyPool, name: &str, building: i64) -> Result<bool, sqlx::Error> {
    let switched = sqlx::query(
        "UPDATE projection_generations SET retired = active, retired_at_ms = $3, active = building, \
         active_version = building_version, building = NULL, building_version = NULL \
         WHERE name = $1 AND building = $2 AND retired IS NULL",
    )
    .bind(name)
    .bind(building)
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(pool)
    .await?
    .rows_affected();
    Ok(switched == 1)
}

/// Drops the retired generation once `grace` has passed since the switch (or at once if `grace`
/// is zero), with its checkpoint and lease.
async fn drop_retired(pool: &AnyPool, projection: &dyn Projection, grace: Duration) -> Result<(), BoxError> {
    let Some(generations) = load(pool, projection.name()).await? else { return Ok(()) };
    let (Some(retired), Some(at)) = (generations.retired, generations.retired_at_ms) else { return Ok(()) };
    if chrono::Utc::now().timestamp_millis() - at < i64::try_from(grace.as_millis()).unwrap_or(i64::MAX) {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    let cleared = sqlx::query(
        "UPDATE projection_generations SET retired = NULL, retired_at_ms = NULL WHERE name = $1 AND retired = $2",
    )
    .bind(projection.name())
    .bind(retired)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if cleared == 1 {
        drop_tables(&mut tx, projection, retired).await?;
        let key = worker_key(projection.name(), retired);
        sqlx::query("DELETE FROM checkpoints WHERE name = $1").bind(&key).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM worker_leases WHERE name = $1").bind(&key).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn create_tables(
    tx: &mut AnyConnection,
    projection: &dyn Projection,
    generation: i64,
) -> Result<(), sqlx::Error> {
    run_ddl(tx, projection.schema(), generation).await
}

/// Builds the indexes only `projection`'s queries use on `generation` (idempotent). SQLite
/// writers of this process queue behind `gate` meanwhile.
pub async fn create_query_indexes(
    pool: &AnyPool,
    projection: &dyn Projection,
    generation: i64,
    gate: Option<&tokio::sync::Mutex<()>>,
) -> Result<(), sqlx::Error> {
    let _turn = match gate {
        Some(gate) => Some(gate.lock().await),
        None => None,
    };
    let mut tx = pool.begin().await?;
    run_ddl(&mut tx, projection.query_indexes(), generation).await?;
    tx.commit().await
}

/// Runs each statement of `ddl` (see [`ddl_statements`]).
async fn run_ddl(tx: &mut AnyConnection, ddl: &str, generation: i64) -> Result<(), sqlx::Error> {
    for statement in ddl_statements(ddl, generation) {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    Ok(())
}

/// The `;`-separated statements of `ddl`, with `{g}` replaced by `generation`. Its comment lines
/// (`--` first on the line) are dropped before it is split, so a comment may hold a `;`.
pub fn ddl_statements(ddl: &str, generation: i64) -> Vec<String> {
    let code: Vec<&str> = ddl.lines().filter(|line| !line.trim_start().starts_with("--")).collect();
    let code = code.join("\n").replace("{g}", &generation.to_string());
    code.split(';').map(str::trim).filter(|statement| !statement.is_empty()).map(str::to_string).collect()
}

async fn drop_tables(tx: &mut AnyConnection, projection: &dyn Projection, generation: i64) -> Result<(), sqlx::Error> {
    for base in projection.tables() {
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", table(base, generation))).execute(&mut *tx).await?;
    }
    Ok(())
}

/// How long a retired generation's tables stay for the queries that were reading them.
pub const RETIRED_GRACE: Duration = Duration::from_secs(30);

/// The worker of one generation, run by a [`Supervisor`]: asked to stop when its generation is
/// retired or the supervisor stops, and aborted if the supervisor's own task is (a process's
/// `kill`, a panic), so that no worker outlives its supervisor.
struct GenerationWorker {
    generation: i64,
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for GenerationWorker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Keeps a projection's generations moving: runs a worker for the active generation and one for
/// the generation being built, switches once the new one has caught up, and drops retired tables.
pub struct Supervisor {
    pub projection: Arc<dyn Projection>,
    pub source: Arc<dyn super::EventSource>,
    pub pool: AnyPool,
    pub wake: tokio::sync::watch::Receiver<u64>,
    pub settings: super::WorkerSettings,
    /// Handed to its workers (see [`super::Worker::with_write_gate`]).
    pub write_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    /// Rung by its workers (see [`super::Worker::with_applied`]).
    pub applied: Option<std::sync::Arc<super::Applied>>,
    /// Handed to its workers (see [`super::Worker::with_appends`]).
    pub appends: Option<super::AppendCount>,
    /// Handed to its workers (see [`super::Worker::with_sqlite_batches`]).
    pub sqlite_batches: Option<Arc<super::SqliteBatches>>,
}

impl Supervisor {
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let name = self.projection.name();
        let mut workers: Vec<GenerationWorker> = Vec::new();
        let mut indexed = Vec::new();
        while !*stop.borrow() {
            if let Err(error) = self.supervise(&mut workers, &mut indexed).await {
                tracing::error!(projection = name, error = %error, "supervising the projection's generations failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = stop.changed() => {}
            }
        }
        for mut worker in workers {
            let _ = worker.stop.send(true);
            let _ = (&mut worker.handle).await;
        }
    }

    /// `indexed`: the generations this process has seen get their query indexes.
    async fn supervise(&self, workers: &mut Vec<GenerationWorker>, indexed: &mut Vec<i64>) -> Result<(), BoxError> {
        let Some(generations) = load(&self.pool, self.projection.name()).await? else { return Ok(()) };
        let wanted = ours(&generations, self.projection.version());
        for worker in workers.iter() {
            if !wanted.contains(&worker.generation) {
                let _ = worker.stop.send(true);
            }
        }
        workers.retain(|worker| wanted.contains(&worker.generation) || !worker.handle.is_finished());
        for generation in &wanted {
            if !workers.iter().any(|worker| worker.generation == *generation) {
                let (stop_worker, stopped) = tokio::sync::watch::channel(false);
                let worker = super::Worker::projection_generation(
                    self.projection.clone(),
                    *generation,
                    self.source.clone(),
                    self.pool.clone(),
                    self.wake.clone(),
                    self.settings,
                )
                .with_write_gate(self.write_gate.clone())
                .with_applied(self.applied.clone())
                .with_appends(self.appends.clone())
                .with_sqlite_batches(self.sqlite_batches.clone());
                let handle = tokio::spawn(worker.run(stopped));
                workers.push(GenerationWorker { generation: *generation, stop: stop_worker, handle });
            }
        }
        for generation in wanted {
            if indexed.contains(&generation) {
                continue;
            }
            if !self.projection.query_indexes().is_empty() {
                if !self.behind_by_less_than_a_batch(generation).await? {
                    continue;
                }
                self.create_query_indexes(generation).await?;
            }
            indexed.push(generation);
        }
        if let Some(building) = generations.building.filter(|building| indexed.contains(building)) {
            let cursor = super::checkpoint(&self.pool, &worker_key(self.projection.name(), building)).await?.cursor;
            let caught_up = self.source.read_after(cursor, 1).await?.is_empty();
            if caught_up {
                drop_retired(&self.pool, self.projection.as_ref(), Duration::ZERO).await?;
                if switch(&self.pool, self.projection.name(), building).await? {
                    tracing::info!(
                        projection = self.projection.name(),
                        generation = building,
                        "rebuilt generation is now active"
                    );
                }
            }
        }
        drop_retired(&self.pool, self.projection.as_ref(), RETIRED_GRACE).await
    }

    /// Whether `generation`'s worker has left catch-up: fewer than a batch of events to go.
    async fn behind_by_less_than_a_batch(&self, generation: i64) -> Result<bool, BoxError> {
        let cursor = super::checkpoint(&self.pool, &worker_key(self.projection.name(), generation)).await?.cursor;
        let batch = self.settings.batch_size;
        Ok((self.source.read_after(cursor, batch).await?.len() as i64) < batch)
    }

    async fn create_query_indexes(&self, generation: i64) -> Result<(), BoxError> {
        let started = std::time::Instant::now();
        create_query_indexes(&self.pool, self.projection.as_ref(), generation, self.write_gate.as_deref()).await?;
        tracing::info!(
            projection = self.projection.name(),
            generation,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "query indexes ready"
        );
        Ok(())
    }
}

/// The generations, active and being built, that code of `version` maintains: those built by the
/// same version. Another version's tables may not fit this code's writes (ADR 26 changed a key, so
/// the old tables lack the new conflict target), and its rows may mean something else: a
/// generation of another version is left to processes of that version, and until one replaces
/// it, it answers as it stands.
fn ours(generations: &Generations, version: i64) -> Vec<i64> {
    let active = (generations.active, Some(generations.active_version));
    let building = generations.building.map(|building| (building, generations.building_version));
    std::iter::once(active)
        .chain(building)
        .filter(|(_, built_by)| *built_by == Some(version))
        .map(|(generation, _)| generation)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ddl_file_is_split_into_its_statements_after_its_comments_are_dropped() {
        let ddl = "-- a view; its rows\nCREATE TABLE t_g{g} (id text PRIMARY KEY, -- the key\n  n bigint);\n\n\
                   -- an index; built later\nCREATE INDEX IF NOT EXISTS t_g{g}_n ON t_g{g} (n);\n";

        let statements = ddl_statements(ddl, 3);

        assert_eq!(
            statements,
            [
                "CREATE TABLE t_g3 (id text PRIMARY KEY, -- the key\n  n bigint)",
                "CREATE INDEX IF NOT EXISTS t_g3_n ON t_g3 (n)"
            ]
        );
    }

    #[test]
    fn code_maintains_only_the_generations_its_own_version_built() {
        let upgrading = Generations {
            active: 1,
            active_version: 1,
            building: Some(2),
            building_version: Some(2),
            retired: None,
            retired_at_ms: None,
        };
        assert_eq!(ours(&upgrading, 2), [2], "the new code builds its generation, not the old one");
        assert_eq!(ours(&upgrading, 1), [1], "the old code keeps its own up, not the new one");
        let settled = Generations { building: None, building_version: None, ..upgrading };
        assert_eq!(ours(&settled, 1), [1]);
        assert!(ours(&settled, 2).is_empty(), "until it has its own generation, newer code leaves the old one alone");
    }
}
