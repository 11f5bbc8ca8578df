//! Connections kept out of sqlx's pool between uses, so that lending one costs no round trip.
//!
//! sqlx 0.8 pings every pooled connection as it is handed back (`PoolConnection`'s return path
//! does it unconditionally, in a task it spawns): on PostgreSQL a round trip to the server, on
//! SQLite a message to the connection's thread and back, as costly as a query's own statement.
//! A query is one or two statements, so that ping was a third to a half of its hand-offs (ADR 11).
//!
//! [`KeptConnections`] takes connections from a pool of its own once and keeps them in a list of
//! its own between uses. A [`Lent`] connection goes back to that list only when its borrower says
//! the work finished ([`Lent::keep`]); any other way it is dropped, and goes back through sqlx:
//! - work that failed (`?` returns before `keep`): a connection that broke (the database
//!   restarted, the backend was terminated) is closed there, not lent again;
//! - work that was cancelled (its future dropped mid-statement): sqlx's return path pings the
//!   connection, which flushes what the statement left unread, and keeps or closes it.
//!
//! A connection idle for [`PING_WHEN_IDLE_FOR`] is pinged before it is lent, as the pools do on
//! checkout ([`crate::db`]): the database may have closed it meanwhile. One older than the pool's
//! maximum lifetime (sqlx's default: 30 minutes) is not kept but handed back, and the pool closes
//! it, as it would have had it been pooled: a database process does not grow forever.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Pool};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::db::PING_WHEN_IDLE_FOR;

#[derive(Debug)]
pub struct KeptConnections<DB: sqlx::Database> {
    /// Where the connections come from and, when one fails or is cancelled, go back to.
    pool: Pool<DB>,
    idle: Mutex<Vec<Idle<DB>>>,
    /// One per connection the pool may open: work beyond that waits here, in order.
    turns: Semaphore,
}

#[derive(Debug)]
struct Idle<DB: sqlx::Database> {
    connection: PoolConnection<DB>,
    /// When it was taken from the pool.
    born: Instant,
    /// When it was last kept.
    since: Instant,
}

impl<DB: sqlx::Database> KeptConnections<DB> {
    /// Keeps the connections of `pool`, which nothing else should use (its connections are held
    /// here, not in it, so other users would find it empty).
    pub fn new(pool: Pool<DB>) -> Self {
        let size = pool.options().get_max_connections() as usize;
        Self { pool, idle: Mutex::new(Vec::with_capacity(size)), turns: Semaphore::new(size) }
    }

    /// A connection of the borrower's own, once one is free (in order of asking).
    pub async fn lend(&self) -> Result<Lent<'_, DB>, sqlx::Error> {
        let turn = self.turns.acquire().await.map_err(|_| sqlx::Error::PoolClosed)?;
        let (connection, born) = self.take().await?;
        Ok(Lent { connection, born, home: self, _turn: turn })
    }

    /// The connections idle in the list (for tests).
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }

    /// Gives every kept connection back and closes the pool, which waits for the lent ones: a
    /// borrower that keeps its connection after this gives it back instead ([`Lent::keep`]).
    pub async fn close(&self) {
        self.turns.close();
        // Taken out under the lock, dropped after it: each drop hands a connection back to the pool.
        let idle = std::mem::take(&mut *self.idle());
        drop(idle);
        self.pool.close().await;
    }

    /// The most recently used idle connection (its pages are the warmest), or a new one.
    async fn take(&self) -> Result<(PoolConnection<DB>, Instant), sqlx::Error> {
        loop {
            let idle = self.idle().pop();
            let Some(Idle { mut connection, born, since }) = idle else {
                return Ok((self.pool.acquire().await?, Instant::now()));
            };
            if since.elapsed() < PING_WHEN_IDLE_FOR || connection.ping().await.is_ok() {
                return Ok((connection, born));
            }
            // Dead: dropping it hands it back to the pool, which closes it.
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle<DB>>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection lent by [`KeptConnections::lend`]: call [`Lent::keep`] once the work on it has
/// finished; dropped without it, the connection goes back through sqlx's pool (see the module).
#[derive(Debug)]
pub struct Lent<'a, DB: sqlx::Database> {
    connection: PoolConnection<DB>,
    born: Instant,
    home: &'a KeptConnections<DB>,
    _turn: SemaphorePermit<'a>,
}

impl<DB: sqlx::Database> Lent<'_, DB> {
    /// The work finished: the connection is kept for the next borrower, as it is (or given back
    /// to the pool, once it has outlived the pool's maximum lifetime or the connections are being
    /// closed).
    pub fn keep(self) {
        let Lent { connection, born, home, _turn } = self;
        let expired = home.pool.options().get_max_lifetime().is_some_and(|lifetime| born.elapsed() >= lifetime);
        let mut idle = home.idle();
        // Under the list's lock: `close` closes the turns before it empties the list.
        if expired || home.turns.is_closed() {
            drop(idle);
            drop(connection);
        } else {
            idle.push(Idle { connection, born, since: Instant::now() });
        }
    }
}

impl<DB: sqlx::Database> Deref for Lent<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        &self.connection
    }
}

impl<DB: sqlx::Database> DerefMut for Lent<'_, DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.connection
    }
}
