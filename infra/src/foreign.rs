//! What a process has heard of the commits of other processes on its PostgreSQL store (ADR 48).
//!
//! Every commit of events notifies `storming_events` with the name of the process that wrote
//! them (the `storming.writer` setting of its connections; migration 0008). A process that
//! listens, and has heard no other writer's commit since it last read or stored an aggregate, knows
//! that its cached state of that aggregate is the stored one, and a command may decide on it without
//! reading the stream ([`crate::event_store::CachedStore::load`]).
//!
//! What the process knows is an *epoch*: it moves on every other writer's commit heard, and
//! whenever the listening connection is lost or made. A cached state read or stored in an epoch is
//! known current for as long as the epoch lasts. Between a commit and its notification there is a
//! window of a notification's delivery in which a state is taken as current though it is not; a
//! command decided in it meets the store's unique (type, id, sequence) key, as any decision on a
//! stale state does, and is decided again on a read.
//! SQLite's stores have no notifications: they never listen, and every command reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::commands::LogSignal;

/// The channel every commit of events notifies (migration 0005), with its writer (0008).
pub const EVENTS_CHANNEL: &str = "storming_events";

/// The setting each of a process's connections to the store carries: the process's writer name.
pub const WRITER_SETTING: &str = "storming.writer";

/// How long the listener waits before it connects again after losing its connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// An epoch: while the process's [`ForeignCommits::epoch`] is the same, no other writer's commit
/// has been heard and the listening connection has not been lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

/// The other writers' commits this process has heard.
#[derive(Debug)]
pub struct ForeignCommits {
    /// This process's name as a writer: a random UUID, new for each process.
    writer: String,
    /// Twice the epoch's number, plus one while listening: one atomic value, so that an epoch read
    /// while listening can never be one taken while the connection was lost.
    state: AtomicU64,
    /// Other writers' commits heard since start.
    heard: AtomicU64,
}

impl Default for ForeignCommits {
    fn default() -> Self {
        Self { writer: uuid::Uuid::now_v7().simple().to_string(), state: AtomicU64::new(0), heard: AtomicU64::new(0) }
    }
}

impl ForeignCommits {
    /// This process's writer name, which its connections set as [`WRITER_SETTING`].
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// The epoch now, while listening; `None` when no epoch can be trusted (not listening yet, the
    /// connection lost, or SQLite).
    pub fn epoch(&self) -> Option<Epoch> {
        let state = self.state.load(Ordering::SeqCst);
        (state & 1 == 1).then_some(Epoch(state))
    }

    /// Whether the process listens now.
    pub fn listening(&self) -> bool {
        self.epoch().is_some()
    }

    /// How many commits of other writers the process has heard.
    pub fn heard(&self) -> u64 {
        self.heard.load(Ordering::SeqCst)
    }

    /// The listening connection is made and LISTENs: a new epoch begins, since any commit before
    /// it may have gone unheard.
    pub fn listen_began(&self) {
        let _ = self.state.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| Some((state | 1) + 2));
    }

    /// The listening connection is lost: no epoch until it is made again.
    pub fn listen_lost(&self) {
        let _ = self.state.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| Some((state | 1) + 1));
    }

    /// A commit was notified with `writer`: a new epoch if it was another writer's.
    pub fn notified(&self, writer: &str) -> bool {
        if writer == self.writer {
            return false;
        }
        self.state.fetch_add(2, Ordering::SeqCst);
        self.heard.fetch_add(1, Ordering::SeqCst);
        true
    }
}

/// Listens to [`EVENTS_CHANNEL`] on a connection of `pool` until `stop`: each other writer's commit
/// begins a new epoch of `foreign` and wakes this process's workers (its own commits wake them in
/// the command bus). A lost connection is made again after [`RECONNECT_AFTER`]; until then nothing
/// cached is known current, and the workers' slow poll covers the gap.
pub async fn listen(
    pool: PgPool,
    foreign: Arc<ForeignCommits>,
    signal: Arc<LogSignal>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.eager_reconnect(false);
            listener.listen(EVENTS_CHANNEL).await?;
            foreign.listen_began();
            // `try_recv`, not `recv`: `recv` makes a lost connection again by itself, and the
            // commits notified meanwhile would go unheard without the epoch moving.
            while let Some(notification) = listener.try_recv().await? {
                if foreign.notified(notification.payload()) {
                    signal.notify();
                }
            }
            Ok::<_, sqlx::Error>("the connection was lost".to_string())
        };
        tokio::select! {
            ended = listening => {
                foreign.listen_lost();
                let why = ended.unwrap_or_else(|error| error.to_string());
                tracing::warn!(why, "LISTEN storming_events ended; listening again in a second");
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_AFTER) => {}
                    _ = stop.changed() => {}
                }
            }
            _ = stop.changed() => foreign.listen_lost(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_epoch_before_listening() {
        let foreign = ForeignCommits::default();
        assert_eq!(foreign.epoch(), None);
        foreign.notified("someone-else");
        assert_eq!(foreign.epoch(), None);
    }

    #[test]
    fn an_epoch_lasts_until_another_writer_commits() {
        let foreign = ForeignCommits::default();
        foreign.listen_began();
        let epoch = foreign.epoch().expect("listening");
        assert!(!foreign.notified(foreign.writer()), "its own commit");
        assert_eq!(foreign.epoch(), Some(epoch));
        assert!(foreign.notified("someone-else"));
        let next = foreign.epoch().expect("still listening");
        assert_ne!(next, epoch);
        assert_eq!(foreign.heard(), 1);
    }

    #[test]
    fn a_lost_connection_ends_the_epoch_and_the_next_one_is_new() {
        let foreign = ForeignCommits::default();
        foreign.listen_began();
        let before = foreign.epoch().expect("listening");
        foreign.listen_lost();
        assert_eq!(foreign.epoch(), None);
        foreign.notified("someone-else");
        foreign.listen_began();
        let after = foreign.epoch().expect("listening again");
        assert_ne!(after, before);
        foreign.listen_began();
        assert_ne!(foreign.epoch(), Some(after), "a new connection is a new epoch");
    }

    #[test]
    fn each_process_is_its_own_writer() {
        assert_ne!(ForeignCommits::default().writer(), ForeignCommits::default().writer());
    }
}
