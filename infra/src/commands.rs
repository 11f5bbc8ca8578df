//! The command bus: one [`Executor`] per aggregate type. It runs cqrs-es's cycle (load the
//! aggregate, let it handle the command into an event sink, store the events) and adds what every
//! command needs — the aggregate's turn within the process ([`crate::turns`]), its metadata on
//! every event, a bounded retry on an optimistic concurrency conflict (reload and decide again;
//! [`Load`] says when a command may decide on its cached state without reading first), the
//! global position of the last stored event for read-your-writes (from the INSERT itself), and a
//! wake-up for the in-process workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError};
use rand::Rng;
use storming_domain::customer::Customer;
use storming_domain::library::Book;
use storming_domain::payment::{Payment, PaymentCommand, PaymentError, PaymentProvider, PaymentServices};
use storming_domain::rental::{BookCopy, RentalServices};
use storming_domain::shared::EventMetadata;
use tokio::sync::watch;
use uuid::Uuid;

use crate::db::Database;
pub use crate::event_store::Load;
use crate::event_store::{CachedStore, Loaded, Rider, Store, AGGREGATE_CACHE_ENTRIES, PAYMENT_CACHE_ENTRIES};
use crate::idempotency::{IdempotencyKey, CALLER_ENTRY, KEY_ENTRY};
use crate::log::{GlobalLog, LogError};
use crate::payment::PaymentDesk;
use crate::turns::AggregateTurns;

/// Paid commands whose events were not stored (they lost a race to another process, or the store
/// failed), by what their refund did at once: `refunded` a charge, or `refund_failed` (the store or
/// the provider failed; the reconciliation policy refunds the charge from the log later, if there
/// was one). A customer sees each refunded one as a charge and its refund; within one process,
/// commands on one aggregate take turns (ADR 47) and races cause none.
pub const UNRECORDED_CHARGES: &str = "storming_payment_unrecorded_charges_total";

/// How often a command is decided again after losing a race for its aggregate.
const CONFLICT_RETRIES: u32 = 8;

/// How long an executor reads before deciding every command after a decision on its cached
/// state lost to events stored meanwhile: another process is writing the same aggregates, and
/// a read costs less than a decision and an append that are thrown away.
const READ_FIRST_AFTER_STALE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command (a business rule); nothing was stored.
    #[error(transparent)]
    Rejected(E),
    /// Every attempt lost the race for the aggregate to concurrent commands.
    #[error("the aggregate kept changing under the command")]
    Conflict,
    /// The store failed; nothing was stored. The detail is for the log, never for a client.
    #[error("event store failure: {0}")]
    Store(String),
}

impl<E: std::error::Error> From<LogError> for CommandError<E> {
    fn from(error: LogError) -> Self {
        Self::Store(error.to_string())
    }
}

/// Tells in-process workers that the log has grown, so they need not wait for their next poll.
#[derive(Debug)]
pub struct LogSignal(watch::Sender<u64>);

impl LogSignal {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(watch::channel(0).0))
    }

    pub fn notify(&self) {
        self.0.send_modify(|appended| *appended = appended.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// What a command did through its services while it decided.
#[derive(Default)]
struct Inside {
    /// What the other aggregates it called decided, to be stored with its own events (ADR 18).
    riders: Vec<Rider>,
    /// Whether it called a service at all (a rent's payment, declined ones too).
    called: bool,
}

tokio::task_local! {
    /// While a command decides: what it does through its services.
    static INSIDE: Arc<Mutex<Inside>>;
}

/// One attempt at a command: the position of the last event stored (`None` if it decided none);
/// whether it was decided on the cached state without a read ([`Loaded::unread`]); and whether it
/// called a service.
struct Attempt<E: std::error::Error> {
    outcome: Result<Option<i64>, AggregateError<E>>,
    unread: bool,
    called: bool,
}

/// Executes commands of one aggregate type.
pub struct Executor<A: Aggregate + Clone> {
    store: Store<A>,
    services: A::Services,
    log: GlobalLog,
    signal: Arc<LogSignal>,
    /// When a decision on the cached state last lost to events stored meanwhile ([`Load::Cached`]).
    stale_at: Mutex<Option<Instant>>,
    /// The commands on one aggregate decide one after another in this process (ADR 47).
    turns: AggregateTurns,
}

impl<A> Executor<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
    A::Error: Send + Sync + 'static,
{
    /// An executor that keeps up to `cached` aggregates' last state in memory.
    pub fn new(db: &Database, services: A::Services, signal: Arc<LogSignal>, cached: usize) -> Self {
        Self {
            store: CachedStore::new(db, cached),
            services,
            log: GlobalLog::new(db),
            signal,
            stale_at: Mutex::new(None),
            turns: AggregateTurns::default(),
        }
    }

    /// `aggregate_id` was minted just now for a new aggregate, and no one else has seen it: the
    /// first command on it decides on the empty aggregate without reading its stream.
    pub fn minted(&self, aggregate_id: &str) {
        self.store.mint(aggregate_id);
    }

    /// Decides and stores; returns the global position of the stream's last event.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<i64, CommandError<A::Error>> {
        self.execute_once(aggregate_id, command, metadata, None).await
    }

    /// As [`Executor::execute`]; with a key, the events are stored together with the key's
    /// completion, in one transaction.
    pub async fn execute_once(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        key: Option<&IdempotencyKey>,
    ) -> Result<i64, CommandError<A::Error>> {
        self.execute_once_loaded(aggregate_id, command, metadata, key, Load::Current).await
    }

    /// As [`Executor::execute_once`], the aggregate loaded as `load` says.
    pub async fn execute_once_loaded(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        key: Option<&IdempotencyKey>,
        load: Load,
    ) -> Result<i64, CommandError<A::Error>> {
        let mut entries = metadata.to_map();
        if let Some(key) = key {
            entries.insert(CALLER_ENTRY.to_string(), key.caller.clone());
            entries.insert(KEY_ENTRY.to_string(), key.key.clone());
        }
        let mut load = if load == Load::Cached && !self.cache_trusted() { Load::Current } else { load };
        let mut conflicts = 0;
        // Another command on this aggregate in this process decides first and stores, so that
        // this one decides on what it stored instead of losing to it at the store after calling
        // its services (a rent's charge, refunded after a lost race; ADR 47).
        let turn = self.turns.take(aggregate_id).await;
        let stored = loop {
            let attempt = self.decide_and_store(aggregate_id, command.clone(), entries.clone(), load).await;
            if attempt.unread {
                // Decided on the cached state without reading what was stored after it (ADR 46,
                // ADR 48): unless it was stored, the answer is a read's decision.
                load = Load::Read;
                match &attempt.outcome {
                    Err(AggregateError::AggregateConflict) => {
                        tracing::debug!(
                            aggregate_type = A::TYPE,
                            aggregate_id,
                            "a decision on the cached state lost at the store's key, deciding again on a read"
                        );
                        *self.stale_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                        continue;
                    }
                    // Refused, or nothing to do, on a state that may be stale. Not when a service
                    // was called: the state allowed the call, the service's answer decided, and
                    // deciding again would call it again (a declined charge, a provider's timeout).
                    Ok(None) | Err(AggregateError::UserError(_)) if !attempt.called => continue,
                    // Stored, or the store failed: answered as a read's decision is.
                    _ => {}
                }
            }
            match attempt.outcome {
                Ok(stored) => break stored,
                Err(AggregateError::UserError(error)) => return Err(CommandError::Rejected(error)),
                Err(AggregateError::AggregateConflict) if conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    // Another process stored first; its notification may not have arrived yet.
                    load = Load::Read;
                    tracing::debug!(aggregate_type = A::TYPE, aggregate_id, conflicts, "conflict, deciding again");
                    let jitter = rand::thread_rng().gen_range(1..=5 * u64::from(conflicts));
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(AggregateError::AggregateConflict) => return Err(CommandError::Conflict),
                Err(other) => return Err(CommandError::Store(other.to_string())),
            }
        };
        drop(turn);
        match stored {
            Some(position) => {
                self.signal.notify();
                Ok(position)
            }
            // Nothing new (a command the aggregate had already done): the stream's last event.
            None => Ok(self.log.last_position_of_stream(A::TYPE, aggregate_id).await?),
        }
    }

    /// Whether no decision on the cached state lost to another process's events lately.
    fn cache_trusted(&self) -> bool {
        let stale_at = *self.stale_at.lock().unwrap_or_else(PoisonError::into_inner);
        stale_at.is_none_or(|at| at.elapsed() >= READ_FIRST_AFTER_STALE)
    }

    /// One attempt. What the aggregates it called decide on their own streams meanwhile (a rent's
    /// payment, [`Executor::decide_inside`]) is stored with its events, or alone if it decided
    /// none.
    async fn decide_and_store(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
        load: Load,
    ) -> Attempt<A::Error> {
        let inside = Arc::default();
        let decided = INSIDE.scope(Arc::clone(&inside), self.decide(aggregate_id, command, load)).await;
        let Inside { riders, called } =
            std::mem::take(&mut *inside.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let rode = !riders.is_empty();
        let (outcome, unread) = match decided {
            Ok((events, Loaded { context, unread })) => {
                (self.store.append(riders, events, context, metadata).await, unread)
            }
            Err((error, unread)) => {
                self.store.store_riders_alone(riders).await;
                (Err(error), unread)
            }
        };
        debug_assert!(
            load != Load::Cached || !unread || !called,
            "a command decided on the cached state called a service"
        );
        if rode && !matches!(outcome, Ok(Some(_))) {
            // What rode may be stored though the command's own events are not: wake the workers
            // for it (a command that stored its own wakes them in `execute_once`).
            self.signal.notify();
        }
        Attempt { outcome, unread, called }
    }

    /// Loads the aggregate and decides `command` on it: the events, and the aggregate as loaded,
    /// which the event sink has brought to the state after them. A failure says whether the
    /// aggregate was loaded without a read, as [`Loaded::unread`].
    async fn decide(
        &self,
        aggregate_id: &str,
        command: A::Command,
        load: Load,
    ) -> Result<(Vec<A::Event>, Loaded<A>), (AggregateError<A::Error>, bool)> {
        let mut loaded = self.store.load(aggregate_id, load).await.map_err(|error| (error, false))?;
        let sink = EventSink::default();
        let handled = loaded.context.aggregate.handle(command, &self.services, &sink).await;
        handled.map_err(|error| (AggregateError::UserError(error), loaded.unread))?;
        Ok((sink.collect().await, loaded))
    }
}

impl<A> Executor<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone,
    A::Error: Send + Sync + 'static,
{
    /// Decides a command called from inside another executor's command (the payment a rent
    /// makes), whose events are then stored with that command's, in its group commit, never
    /// after them (ADR 18). Called outside a command, or where riders are not stored
    /// ([`crate::event_store::EventRepository::stores_riders`]), it is [`Executor::execute`].
    pub async fn decide_inside(
        self: &Arc<Self>,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<(), CommandError<A::Error>> {
        let inside = INSIDE.try_with(Arc::clone).ok().filter(|_| self.store.repo().stores_riders());
        let Some(inside) = inside else {
            return self.execute(aggregate_id, command, metadata).await.map(drop);
        };
        inside.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).called = true;
        let failed = |error: AggregateError<A::Error>| match error {
            AggregateError::UserError(error) => CommandError::Rejected(error),
            other => CommandError::Store(other.to_string()),
        };
        let (events, loaded) =
            self.decide(aggregate_id, command, Load::Read).await.map_err(|(error, _)| failed(error))?;
        let Some(decided) = self.store.serialize(events, loaded.context, metadata.to_map()).map_err(failed)? else {
            return Ok(());
        };
        let (this, settled) = (Arc::clone(self), decided.state);
        let rider = Rider::new(decided.events, move |epoch| this.store.stored(settled, epoch));
        inside.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).riders.push(rider);
        Ok(())
    }
}

/// Every aggregate's executor, wired with its ports.
pub struct CommandBus {
    pub customers: Executor<Customer>,
    pub library: Executor<Book>,
    pub payments: Arc<Executor<Payment>>,
    pub shelf: Executor<BookCopy>,
    pub log: GlobalLog,
    pub signal: Arc<LogSignal>,
}

impl CommandBus {
    pub fn new(db: &Database, provider: Arc<dyn PaymentProvider>, signal: Arc<LogSignal>) -> Self {
        let payments = Arc::new(Executor::new(db, PaymentServices { provider }, signal.clone(), PAYMENT_CACHE_ENTRIES));
        let shelf_services = RentalServices { payments: Arc::new(PaymentDesk::new(payments.clone())) };
        Self {
            customers: Executor::new(db, (), signal.clone(), AGGREGATE_CACHE_ENTRIES),
            library: Executor::new(db, (), signal.clone(), AGGREGATE_CACHE_ENTRIES),
            shelf: Executor::new(db, shelf_services, signal.clone(), AGGREGATE_CACHE_ENTRIES),
            payments,
            log: GlobalLog::new(db),
            signal,
        }
    }

    /// Makes sure no money stays taken for a paid command that ended without its events stored
    /// (declined, refused, lost its race, or the store failed after the provider approved): if
    /// payment `payment_id` was approved, refund it.
    pub async fn refund_unrecorded_charge(&self, payment_id: Uuid, metadata: &EventMetadata) {
        let refund = PaymentCommand::RefundPayment { reason: "the paid command was not recorded".into() };
        match self.payments.execute(&payment_id.to_string(), refund, metadata).await {
            Ok(_) => {
                metrics::counter!(UNRECORDED_CHARGES, "outcome" => "refunded").increment(1);
                tracing::warn!(payment_id = %payment_id, "refunded a charge whose command was not recorded");
            }
            Err(CommandError::Rejected(PaymentError::NothingToRefund)) => {}
            Err(error) => {
                // The reconciliation policy refunds a charge later, from the log.
                metrics::counter!(UNRECORDED_CHARGES, "outcome" => "refund_failed").increment(1);
                tracing::error!(payment_id = %payment_id, error = %error, "could not refund a charge whose command was not recorded")
            }
        }
    }
}
