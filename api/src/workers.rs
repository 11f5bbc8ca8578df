//! The workers: the four projections and the two policies, each following the global log on its
//! own task, in `storming serve` or in `storming work` processes.
//!
//! Policies (lilac): `BookRegistered → PutOnShelf` (rental), `RentalCancelled → RefundPayment`
//! and `PaymentApproved → (nothing recorded in time) → RefundPayment` (payment). Their commands are idempotent by the state they act on — a book already on the
//! shelf is not shelved again, a refunded payment is not refunded again (and the provider is asked
//! with the payment's refund key) — so an event delivered again changes nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::Aggregate;
use storming_domain::library::{Book, LibraryEvent};
use storming_domain::payment::policies::{reconcile_approval, refund_cancelled_rental, Reconciliation};
use storming_domain::payment::{Payment, PaymentError, PaymentEvent};
use storming_domain::recorded::{LogCursor, RecordedEvent};
use storming_domain::rental::{policies::shelve_registered_book, BookCopy, RentalEvent};
use storming_domain::shared::EventMetadata;
use storming_infra::commands::{CommandBus, CommandError};
use storming_infra::db::{Backend, Database, StorePool, SQLITE_BUSY_TIMEOUT};
use storming_infra::foreign;
use storming_infra::log::{GlobalLog, LogFilter};
use storming_projections::book_catalog::BookCatalog;
use storming_projections::my_page::MyPage;
use storming_projections::payments::PaymentsView;
use storming_projections::rental_status::RentalStatusView;
use storming_projections::runtime::{generations, AppendCount, Events, SharedTail, SqliteBatches, TAIL_EVENTS};
use storming_projections::{BoxError, EventSource, Policy, Projection, RetryLater, Supervisor, Worker};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::AppState;

/// The global log as workers read it.
pub struct LogSource(pub GlobalLog);

#[async_trait]
impl EventSource for LogSource {
    async fn read_after(&self, cursor: LogCursor, limit: i64) -> Result<Events, BoxError> {
        Ok(self.0.read_after(cursor, limit, &LogFilter::default()).await?.into())
    }

    async fn has_unreadable(&self, cursor: LogCursor) -> Result<bool, BoxError> {
        Ok(self.0.any_after(cursor).await?)
    }
}

/// The metadata of a policy's command: same business transaction, caused by `event`.
fn caused_by(event: &RecordedEvent, policy: &str) -> EventMetadata {
    EventMetadata {
        correlation_id: event.metadata.correlation_id.clone(),
        causation_id: event.event_id(),
        actor: format!("policy/{policy}"),
        request_id: event.metadata.request_id.clone(),
    }
}

/// Whenever the library registers a book, the rental context puts it on its shelf.
pub struct ShelfPolicy(pub Arc<CommandBus>);

#[async_trait]
impl Policy for ShelfPolicy {
    fn name(&self) -> &'static str {
        "rental.shelf_policy"
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        event.aggregate_type == Book::TYPE && event.event_type == "BookRegistered"
    }

    async fn react(&self, event: &RecordedEvent, _later: &[RecordedEvent]) -> Result<(), BoxError> {
        if event.aggregate_type != Book::TYPE {
            return Ok(());
        }
        let registered = event.decode::<LibraryEvent>()?;
        let LibraryEvent::BookRegistered { book_id, .. } = &registered;
        let command = shelve_registered_book(&registered);
        self.0.shelf.execute(&book_id.to_string(), command, &caused_by(event, self.name())).await?;
        Ok(())
    }
}

/// Whenever a rental is cancelled, the payment context refunds it; a provider failure is retried
/// with backoff by the worker until the refund is confirmed.
pub struct RefundPolicy(pub Arc<CommandBus>);

#[async_trait]
impl Policy for RefundPolicy {
    fn name(&self) -> &'static str {
        "payment.refund_policy"
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        event.aggregate_type == BookCopy::TYPE && event.event_type == "RentalCancelled"
    }

    async fn react(&self, event: &RecordedEvent, _later: &[RecordedEvent]) -> Result<(), BoxError> {
        if event.aggregate_type != BookCopy::TYPE {
            return Ok(());
        }
        let Some((payment_id, command)) = refund_cancelled_rental(&event.decode::<RentalEvent>()?) else {
            return Ok(());
        };
        match self.0.payments.execute(&payment_id.to_string(), command, &caused_by(event, self.name())).await {
            Ok(_) => Ok(()),
            Err(CommandError::Rejected(PaymentError::NothingToRefund)) => {
                tracing::warn!(payment_id = %payment_id, "a cancelled rental had no approved payment to refund");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Every projection of this build.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(BookCatalog), Arc::new(RentalStatusView), Arc::new(PaymentsView), Arc::new(MyPage)]
}

/// How often the reconciliation policy looks again for a transaction's own events.
const RECHECK: Duration = Duration::from_secs(1);

/// Whenever a payment is approved, make sure its transaction was recorded too: if no event of
/// another context carries the payment's reference id as its correlation id within the grace
/// period (the core command crashed between the charge and its own events), refund it.
pub struct ReconciliationPolicy {
    pub bus: Arc<CommandBus>,
    pub grace: Duration,
}

#[async_trait]
impl Policy for ReconciliationPolicy {
    fn name(&self) -> &'static str {
        "payment.reconciliation_policy"
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        event.aggregate_type == Payment::TYPE && event.event_type == "PaymentApproved"
    }

    async fn react(&self, event: &RecordedEvent, later: &[RecordedEvent]) -> Result<(), BoxError> {
        if event.aggregate_type != Payment::TYPE {
            return Ok(());
        }
        let PaymentEvent::PaymentApproved { payment_id, reference, .. } = event.decode::<PaymentEvent>()? else {
            return Ok(());
        };
        let reference_id = reference.id.to_string();
        // Usually the transaction's own event follows the approval within the same batch: then
        // the log need not be read.
        let of_another_context = |other: &RecordedEvent| {
            other.aggregate_type != Payment::TYPE && other.metadata.correlation_id == reference_id
        };
        if later.iter().any(of_another_context) {
            return Ok(());
        }
        let transaction = self.bus.log.correlation(&reference_id).await?;
        // A charge refunded before its command was answered (it lost its race, or its events
        // could not be stored) needs nothing more.
        let refunded = transaction
            .iter()
            .any(|other| other.aggregate_type == Payment::TYPE && other.event_type == "PaymentRefunded");
        if refunded {
            return Ok(());
        }
        let recorded = transaction.iter().any(of_another_context);
        let approved_at = DateTime::parse_from_rfc3339(&event.recorded_at)?.with_timezone(&Utc);
        let grace = TimeDelta::from_std(self.grace)?;
        match reconcile_approval(recorded, Utc::now() - approved_at, grace) {
            Reconciliation::Recorded => Ok(()),
            // Usually the transaction's own event is a moment behind: look again soon, not at the
            // end of the grace period.
            Reconciliation::Wait(wait) => Err(RetryLater(wait.to_std().unwrap_or(self.grace).min(RECHECK)).into()),
            Reconciliation::Refund(refund) => {
                tracing::warn!(payment_id = %payment_id, reference = %reference.id, "refunding a charge whose transaction was never recorded");
                self.bus.payments.execute(&payment_id.to_string(), refund, &caused_by(event, self.name())).await?;
                Ok(())
            }
        }
    }
}

/// Every policy of this build.
pub fn policies(app: &AppState) -> Vec<Arc<dyn Policy>> {
    let bus = &app.bus;
    let reconciliation = ReconciliationPolicy { bus: bus.clone(), grace: app.reconcile_after };
    vec![Arc::new(ShelfPolicy(bus.clone())), Arc::new(RefundPolicy(bus.clone())), Arc::new(reconciliation)]
}

/// The names of every worker, projections first.
pub fn names(app: &AppState) -> Vec<&'static str> {
    let projections = projections().into_iter().map(|projection| projection.name());
    projections.chain(policies(app).into_iter().map(|policy| policy.name())).collect()
}

#[derive(Debug, thiserror::Error)]
#[error("no worker is named {unknown:?}; the workers are: {known}")]
pub struct UnknownWorker {
    pub unknown: String,
    pub known: String,
}

/// Sets every projection up (its first generation on first start; a rebuild when its version
/// changed). Every process does it before it serves or works.
pub async fn ensure_projections(app: &AppState) -> Result<(), BoxError> {
    for projection in projections() {
        generations::ensure(&app.db.read_side, projection.as_ref()).await?;
    }
    Ok(())
}

/// Starts one task per selected worker (all when `only` is `None`) — for a projection, the
/// supervisor of its generations. They stop when `stop` turns true; on PostgreSQL, what another
/// process stores wakes them through [`listen_to_other_processes`].
pub fn spawn(
    app: &AppState,
    only: Option<&[String]>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, UnknownWorker> {
    let known = names(app);
    if let Some(unknown) = only.into_iter().flatten().find(|name| !known.contains(&name.as_str())) {
        return Err(UnknownWorker { unknown: unknown.clone(), known: known.join(", ") });
    }
    let selected = |name: &str| only.is_none_or(|only| only.iter().any(|wanted| wanted == name));
    // One read of the news for all of them (see `SharedTail`).
    let source: Arc<dyn EventSource> = Arc::new(SharedTail::new(Arc::new(LogSource(app.log.clone())), TAIL_EVENTS));
    let pool = app.db.read_side.clone();
    let settings = app.worker_settings;
    let wake = || app.bus.signal.subscribe();
    let batches = sqlite_batches(&app.db);
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for projection in projections().into_iter().filter(|projection| selected(projection.name())) {
        let supervisor = Supervisor {
            projection,
            source: source.clone(),
            pool: pool.clone(),
            wake: wake(),
            settings,
            write_gate: app.db.views_gate.clone(),
            applied: Some(app.applied.clone()),
            appends: appends(&app.db),
            sqlite_batches: batches.clone(),
        };
        tasks.push(tokio::spawn(supervisor.run(stop.clone())));
    }
    for policy in policies(app).into_iter().filter(|policy| selected(policy.name())) {
        let worker = Worker::policy(policy, source.clone(), pool.clone(), wake(), settings)
            .with_write_gate(app.db.views_gate.clone());
        tasks.push(tokio::spawn(worker.run(stop.clone())));
    }
    Ok(tasks)
}

/// On PostgreSQL, the task that listens to other processes' commits: it wakes this process's
/// workers and tells its command side when its cached aggregates are current ([`foreign::listen`],
/// ADR 48). Every process that runs commands or workers starts it.
pub fn listen_to_other_processes(app: &AppState, stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let StorePool::Postgres(pool) = &app.db.store else { return None };
    let (foreign, signal) = (app.db.foreign.clone(), app.bus.signal.clone());
    Some(tokio::spawn(foreign::listen(pool.clone(), foreign, signal, stop)))
}

/// SQLite: the count of the process's appends, which a catch-up batch yields to (see
/// `Worker::with_appends`). PostgreSQL has no single writer to share.
pub fn appends(db: &Database) -> Option<AppendCount> {
    if !matches!(db.backend, Backend::Sqlite) {
        return None;
    }
    let group_commit = db.group_commit.clone();
    Some(Arc::new(move || group_commit.appends()))
}

/// SQLite: the plain connection the process's projections write their batches on, one job per
/// batch (ADR 24). PostgreSQL's go through the read side's pool.
pub fn sqlite_batches(db: &Database) -> Option<Arc<SqliteBatches>> {
    db.sqlite_views_file.as_ref().map(|file| SqliteBatches::new(file, SQLITE_BUSY_TIMEOUT))
}
