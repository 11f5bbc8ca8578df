//! One worker: follows the log for one projection or policy until shut down.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use storming_domain::recorded::{LogCursor, RecordedEvent};
use tokio::sync::watch;

use super::checkpoint::{advance, checkpoint};
use super::{BoxError, EventSource, Policy, Projection};

#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Events read and applied per transaction.
    pub batch_size: i64,
    /// How often an idle worker looks at the log without being woken.
    pub poll_interval: Duration,
    /// The longest pause between retries after a failure.
    pub max_backoff: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { batch_size: 500, poll_interval: Duration::from_millis(500), max_backoff: Duration::from_secs(30) }
    }
}

enum Task {
    Projection(Arc<dyn Projection>),
    Policy(Arc<dyn Policy>),
}

pub struct Worker {
    task: Task,
    source: Arc<dyn EventSource>,
    pool: AnyPool,
    wake: watch::Receiver<u64>,
    settings: WorkerSettings,
    cursor: Option<LogCursor>,
}

impl Worker {
    pub fn projection(
        projection: Arc<dyn Projection>,
        source: Arc<dyn EventSource>,
        pool: AnyPool,
        wake: watch::Receiver<u64>,
        settings: WorkerSettings,
    ) -> Self {
        Self::new(Task::Projection(projection), source, pool, wake, settings)
    }

    pub fn policy(
        policy: Arc<dyn Policy>,
        source: Arc<dyn EventSource>,
        pool: AnyPool,
        wake: watch::Receiver<u64>,
        settings: WorkerSettings,
    ) -> Self {
        Self::new(Task::Policy(policy), source, pool, wake, settings)
    }

    fn new(
        task: Task,
        source: Arc<dyn EventSource>,
        pool: AnyPool,
        wake: watch::Receiver<u64>,
        settings: WorkerSettings,
    ) -> Self {
        Self { task, source, pool, wake, settings, cursor: None }
    }

    pub fn name(&self) -> &'static str {
        match &self.task {
            Task::Projection(projection) => projection.name(),
            Task::Policy(policy) => policy.name(),
        }
    }

    /// Follows the log until `shutdown` turns true; a batch under way is finished first.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let name = self.name();
        tracing::info!(worker = name, "worker started");
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            let pause = match self.step().await {
                Ok(0) => self.settings.poll_interval,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Err(error) => {
                    tracing::error!(worker = name, error = %error, retry_in_ms = backoff.as_millis() as u64, "worker batch failed");
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    pause
                }
            };
            tokio::select! {
                _ = self.wake.changed() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(worker = name, "worker stopped");
    }

    /// Reads and applies one batch; returns how many events it applied (0: caught up).
    pub async fn step(&mut self) -> Result<usize, BoxError> {
        let cursor = match self.cursor {
            Some(cursor) => cursor,
            None => checkpoint(&self.pool, self.name()).await?.cursor,
        };
        self.cursor = Some(cursor);
        let events = self.source.read_after(cursor, self.settings.batch_size).await?;
        if events.is_empty() {
            return Ok(0);
        }
        match &self.task {
            Task::Projection(projection) => self.apply_batch(projection.clone(), &events).await?,
            Task::Policy(policy) => self.react_to_batch(policy.clone(), &events).await?,
        }
        Ok(events.len())
    }

    async fn apply_batch(&mut self, projection: Arc<dyn Projection>, events: &[RecordedEvent]) -> Result<(), BoxError> {
        let last = events.last().map(RecordedEvent::cursor).unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        // The checkpoint is written first: on SQLite that takes the write lock at once, so the
        // transaction never has to upgrade from reader to writer (which SQLite may refuse).
        advance(&mut tx, projection.name(), last).await?;
        for event in events {
            projection.apply(&mut tx, event).await.map_err(|error| at_position(event, error))?;
        }
        tx.commit().await?;
        self.cursor = Some(last);
        Ok(())
    }

    async fn react_to_batch(&mut self, policy: Arc<dyn Policy>, events: &[RecordedEvent]) -> Result<(), BoxError> {
        // No transaction is held while the policy's commands run: they write to the same database.
        let mut done = None;
        let mut failure = None;
        for event in events {
            match policy.react(event).await {
                Ok(()) => done = Some(event.cursor()),
                Err(error) => {
                    failure = Some(at_position(event, error));
                    break;
                }
            }
        }
        if let Some(cursor) = done {
            let mut tx = self.pool.begin().await?;
            advance(&mut tx, policy.name(), cursor).await?;
            tx.commit().await?;
            self.cursor = Some(cursor);
        }
        failure.map_or(Ok(()), Err)
    }
}

fn at_position(event: &RecordedEvent, error: BoxError) -> BoxError {
    format!("{} at position {} ({}): {error}", event.event_type, event.position, event.event_id()).into()
}
