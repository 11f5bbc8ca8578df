//! The in-process news that a projection's worker committed a batch.
//!
//! A query that asks for `min_position` waits until the view has applied that event. It polls the
//! view's checkpoint as a fallback (the worker may run in another process), and looks again at
//! once when a worker of this process commits a batch of that view, instead of at its next poll.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

/// One channel per projection, rung after each batch its workers commit.
#[derive(Debug)]
pub struct Applied(HashMap<&'static str, watch::Sender<u64>>);

impl Applied {
    /// The channels of `projections` (their names).
    pub fn new(projections: impl IntoIterator<Item = &'static str>) -> Arc<Self> {
        Arc::new(Self(projections.into_iter().map(|name| (name, watch::Sender::new(0))).collect()))
    }

    /// A worker of `projection` committed a batch.
    pub fn ring(&self, projection: &str) {
        if let Some(sender) = self.0.get(projection) {
            sender.send_modify(|batches| *batches = batches.wrapping_add(1));
        }
    }

    /// Rings of `projection` from now on; `None` for a name it does not know.
    pub fn subscribe(&self, projection: &str) -> Option<watch::Receiver<u64>> {
        self.0.get(projection).map(watch::Sender::subscribe)
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
}
