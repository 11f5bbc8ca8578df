//! Turns to read something a query found missing (ADR 44): the query that takes the turn reads it,
//! and the queries that find it missing meanwhile wait for that read and take what it left,
//! instead of each reading it too.

use std::hash::{DefaultHasher, Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

/// How many turns the things read share, by their hash: two of them rarely wait for each other,
/// and then for one read.
const TURNS: usize = 256;

#[derive(Debug)]
pub struct ReadTurns(Box<[Mutex<()>]>);

impl Default for ReadTurns {
    fn default() -> Self {
        Self((0..TURNS).map(|_| Mutex::new(())).collect())
    }
}

impl ReadTurns {
    /// The turn to read `what` (a view's name, a view's query key…).
    pub async fn of(&self, what: impl Hash) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        what.hash(&mut hasher);
        self.0[hasher.finish() as usize % self.0.len()].lock().await
    }
}
