//! Commands on one aggregate take turns within a process (ADR 47).
//!
//! Two commands on one aggregate can both decide on the state before either is stored; the
//! store's unique (type, id, sequence) key then refuses the second, which decides again. That is
//! correct, but a command that calls a service has called it by then: a rent whose copy another
//! rent takes meanwhile has charged its customer, and refunds the charge after losing. Within a
//! process the executor makes such commands wait instead: each command on an aggregate takes the
//! aggregate's turn before it decides and gives it up once its events are stored (or refused),
//! so the next decides on the state they left. Commands from other processes still race, and
//! the store's key still decides between them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Mutex as Line, OwnedMutexGuard};

/// The turns of the aggregates that have a command deciding or waiting. An aggregate's line
/// is made by its first command and dropped with its last, so this holds only the aggregates in
/// use.
#[derive(Debug, Default)]
pub struct AggregateTurns {
    lines: Mutex<HashMap<String, Waiting>>,
}

#[derive(Debug, Default)]
struct Waiting {
    line: Arc<Line<()>>,
    /// The commands holding or waiting for the turn.
    commands: usize,
}

/// An aggregate's turn, held until dropped. Dropped while it still waits (its command's future
/// dropped), it leaves the line.
#[must_use = "the turn is given up as soon as it is dropped"]
pub struct Turn<'a> {
    turns: &'a AggregateTurns,
    aggregate_id: &'a str,
    held: Option<OwnedMutexGuard<()>>,
}

impl AggregateTurns {
    /// Waits for `aggregate_id`'s turn, first come first served.
    pub async fn take<'a>(&'a self, aggregate_id: &'a str) -> Turn<'a> {
        let line = {
            let mut lines = self.lines();
            if !lines.contains_key(aggregate_id) {
                lines.insert(aggregate_id.to_owned(), Waiting::default());
            }
            let waiting = lines.get_mut(aggregate_id).expect("inserted above");
            waiting.commands += 1;
            Arc::clone(&waiting.line)
        };
        // Counted before it waits, so that a turn dropped while waiting leaves the line.
        let mut turn = Turn { turns: self, aggregate_id, held: None };
        turn.held = Some(line.lock_owned().await);
        turn
    }

    fn lines(&self) -> MutexGuard<'_, HashMap<String, Waiting>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut lines = self.turns.lines();
        // The next command in the line, if any, has the turn from here.
        self.held = None;
        if let Some(waiting) = lines.get_mut(self.aggregate_id) {
            waiting.commands -= 1;
            if waiting.commands == 0 {
                lines.remove(self.aggregate_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Polls `future` once: `Some` if it was ready.
    fn ready_now<F: Future>(future: F) -> Option<F::Output> {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    impl AggregateTurns {
        fn in_use(&self) -> usize {
            self.lines().len()
        }
    }

    #[tokio::test]
    async fn a_command_waits_for_the_turn_of_its_aggregate_and_no_other() {
        let turns = AggregateTurns::default();
        let first = turns.take("copy-1").await;

        assert!(ready_now(turns.take("copy-1")).is_none(), "the same aggregate's turn is held");
        let other = ready_now(turns.take("copy-2")).expect("another aggregate's turn is free");
        drop(first);
        let next = ready_now(turns.take("copy-1")).expect("free once the holder is done");

        drop((other, next));
        assert_eq!(turns.in_use(), 0, "no line is kept for an aggregate no command is on");
    }

    #[tokio::test]
    async fn the_turn_goes_to_the_first_in_line_and_a_waiter_that_gives_up_leaves_it() {
        let turns = Arc::new(AggregateTurns::default());
        let first = turns.take("copy-1").await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for n in 0..3 {
            let (turns, order_tx) = (Arc::clone(&turns), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = turns.take("copy-1").await;
                order_tx.send(n).unwrap();
            }));
            tokio::task::yield_now().await; // each is in the line before the next comes
        }
        let gives_up = Arc::clone(&turns);
        let given_up = tokio::spawn(async move { drop(gives_up.take("copy-1").await) });
        tokio::task::yield_now().await;
        given_up.abort();
        let _ = given_up.await;

        drop(first);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        drop(order_tx);

        let mut served = Vec::new();
        while let Some(n) = order.recv().await {
            served.push(n);
        }
        assert_eq!(served, [0, 1, 2]);
        assert_eq!(turns.in_use(), 0, "the waiter that gave up left the line");
    }
}
