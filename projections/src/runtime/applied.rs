//! The in-process news between a view's workers and the queries that wait for it.
//!
//! A query that asks for `min_position` waits until the view has applied that event. It polls the
//! view's checkpoint as a fallback (the worker may run in another process), and looks again at
//! once when a worker of this process commits a batch of that view, instead of at its next poll.
//!
//! The other way round, such a query hurries the view's workers: a worker at the head lets new
//! events gather for a while before its next batch (`WorkerSettings::coalesce`), and a query
//! waiting for one of them should not wait out that pause. Readers that ask for no position do
//! not hurry anyone, so under load the batches stay large.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

/// Two channels per projection: one rung after each batch its workers commit, one rung when a
/// query waits for a batch of it.
#[derive(Debug)]
pub struct Applied {
    rings: HashMap<&'static str, watch::Sender<u64>>,
    hurries: HashMap<&'static str, watch::Sender<u64>>,
}

impl Applied {
    /// The channels of `projections` (their names).
    pub fn new(projections: impl IntoIterator<Item = &'static str>) -> Arc<Self> {
        let names: Vec<&'static str> = projections.into_iter().collect();
        let channels = || names.iter().map(|name| (*name, watch::Sender::new(0))).collect();
        Arc::new(Self { rings: channels(), hurries: channels() })
    }

    /// A worker of `projection` committed a batch.
    pub fn ring(&self, projection: &str) {
        if let Some(sender) = self.rings.get(projection) {
            sender.send_modify(|batches| *batches = batches.wrapping_add(1));
        }
    }

    /// Rings of `projection` from now on; `None` for a name it does not know.
    pub fn subscribe(&self, projection: &str) -> Option<watch::Receiver<u64>> {
        self.rings.get(projection).map(watch::Sender::subscribe)
    }

    /// A query waits for events `projection` has not applied yet: its workers read at once
    /// instead of letting more events gather first.
    pub fn hurry(&self, projection: &str) {
        if let Some(sender) = self.hurries.get(projection) {
            sender.send_modify(|waits| *waits = waits.wrapping_add(1));
        }
    }

    /// Hurries of `projection` from now on (for its workers); `None` for a name it does not know.
    pub fn hurried(&self, projection: &str) -> Option<watch::Receiver<u64>> {
        self.hurries.get(projection).map(watch::Sender::subscribe)
    }
}

/// The next ring on `rings`; never, when there is no channel (or it has closed).
pub async fn next_ring(rings: &mut Option<watch::Receiver<u64>>) {
    match rings {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                *rings = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_batch_of_a_view_wakes_its_waiters_only() {
        let applied = Applied::new(["my_page", "rental_status"]);
        let mut my_page = applied.subscribe("my_page");
        let mut rentals = applied.subscribe("rental_status");
        assert!(applied.subscribe("unknown").is_none());

        applied.ring("my_page");
        tokio::time::timeout(Duration::from_secs(5), next_ring(&mut my_page)).await.expect("woken");
        let woken = tokio::time::timeout(Duration::from_millis(50), next_ring(&mut rentals)).await;
        assert!(woken.is_err(), "another view's batch wakes nobody waiting for this one");
    }

    #[tokio::test]
    async fn without_a_channel_the_wait_never_ends_by_itself() {
        let mut none = None;
        let woken = tokio::time::timeout(Duration::from_millis(50), next_ring(&mut none)).await;
        assert!(woken.is_err());

        let applied = Applied::new(["my_page"]);
        let mut closed = applied.subscribe("my_page");
        drop(applied);
        let woken = tokio::time::timeout(Duration::from_millis(50), next_ring(&mut closed)).await;
        assert!(woken.is_err(), "a closed channel is not a ring");
        assert!(closed.is_none());
    }

    #[tokio::test]
    async fn a_hurry_reaches_the_workers_of_its_view_only_and_waits_for_them() {
        let applied = Applied::new(["my_page", "rental_status"]);
        let mut my_page = applied.hurried("my_page");
        let mut rentals = applied.hurried("rental_status");
        assert!(applied.hurried("unknown").is_none());

        // Hurried while its worker was busy: the worker's next pause ends at once.
        applied.hurry("my_page");
        tokio::time::timeout(Duration::from_secs(5), next_ring(&mut my_page)).await.expect("hurried");
        let hurried = tokio::time::timeout(Duration::from_millis(50), next_ring(&mut rentals)).await;
        assert!(hurried.is_err(), "another view's readers hurry nobody here");
        let again = tokio::time::timeout(Duration::from_millis(50), next_ring(&mut my_page)).await;
        assert!(again.is_err(), "a hurry is seen once");
        let mut rings = applied.subscribe("my_page");
        applied.hurry("my_page");
        let rung = tokio::time::timeout(Duration::from_millis(50), next_ring(&mut rings)).await;
        assert!(rung.is_err(), "a hurry is not a batch committed");
    }
}
