//! Whether this process's requests come one at a time, over one connection (ADR 41).
//!
//! The group commit hands a group to another thread so that the requests behind it can go on and
//! queue for the next group (ADR 8, 21, 38). With a single caller nothing can queue: a connection
//! carries one HTTP/1 request at a time (this server speaks no HTTP/2), so while that caller's
//! append is stored there is no other request to serve. Then the hand-off is two thread wake-ups
//! for nothing, and SQLite's group commit stores the append on the request's own thread instead.
//!
//! "One at a time" is read from the requests themselves: exactly one in flight now, and every
//! request of the last [`RECENT`] came over the same connection. A second caller is seen at its
//! first request; its appends, and the first caller's, then go through the writer's thread again
//! until it has been quiet for [`RECENT`]. Requests a blocked thread has not read yet are not
//! seen, which is why one request in flight is not enough on its own: two callers whose requests
//! were each read while the other's append was stored would each look alone.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a second connection's request counts as recent.
pub const RECENT: Duration = Duration::from_millis(100);

/// The requests this process is serving and the connections they came over.
#[derive(Debug, Default)]
pub struct Callers {
    in_flight: AtomicUsize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// The connection the last request came over.
    last: Option<SocketAddr>,
    /// Until then a request of another connection than `last`'s is recent.
    shared_until: Option<Instant>,
}

/// A request in flight; it is done when this is dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Callers>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Callers {
    /// A request arrived over the connection from `peer`; it is in flight until the guard drops.
    pub fn arrived(self: &Arc<Self>, peer: SocketAddr) -> InFlight {
        self.arrived_at(peer, Instant::now())
    }

    fn arrived_at(self: &Arc<Self>, peer: SocketAddr, now: Instant) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.seen();
        if seen.last.is_some_and(|last| last != peer) {
            seen.shared_until = Some(now + RECENT);
        }
        seen.last = Some(peer);
        InFlight(self.clone())
    }

    /// How many requests are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// One request in flight, and none of another connection for [`RECENT`]: nothing can queue
    /// behind an append while it is stored.
    pub fn one_at_a_time(&self) -> bool {
        self.one_at_a_time_at(Instant::now())
    }

    fn one_at_a_time_at(&self, now: Instant) -> bool {
        // One in flight: its arrival set `last`.
        self.in_flight.load(Ordering::Relaxed) == 1 && self.seen().shared_until.is_none_or(|until| now >= until)
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        // Two plain fields, each written whole: a panic cannot leave them torn.
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn one_connection_is_one_at_a_time() {
        let callers = Arc::new(Callers::default());
        let start = Instant::now();
        assert!(!callers.one_at_a_time_at(start), "no request, no caller");

        let first = callers.arrived_at(peer(1), start);
        assert!(callers.one_at_a_time_at(start));
        drop(first);
        let _second = callers.arrived_at(peer(1), start + Duration::from_millis(1));
        assert!(callers.one_at_a_time_at(start + Duration::from_millis(1)));
    }

    #[test]
    fn a_second_request_in_flight_is_not_one_at_a_time() {
        let callers = Arc::new(Callers::default());
        let now = Instant::now();
        let _a = callers.arrived_at(peer(1), now);
        let b = callers.arrived_at(peer(1), now);
        assert!(!callers.one_at_a_time_at(now));
        drop(b);
        assert!(callers.one_at_a_time_at(now));
    }

    #[test]
    fn another_connection_counts_until_it_has_been_quiet_for_a_while() {
        let callers = Arc::new(Callers::default());
        let start = Instant::now();
        drop(callers.arrived_at(peer(1), start));
        drop(callers.arrived_at(peer(2), start + Duration::from_millis(1)));
        // Each caller's request then comes alone, but the two take turns.
        let later = start + Duration::from_millis(2);
        let _a = callers.arrived_at(peer(1), later);
        assert!(!callers.one_at_a_time_at(later));
        assert!(!callers.one_at_a_time_at(later + RECENT - Duration::from_millis(1)));
        assert!(callers.one_at_a_time_at(later + RECENT));
    }

    #[test]
    fn no_requests_is_not_one_at_a_time() {
        // A `storming work` process, or policies' commands between requests: their appends keep
        // the writer's thread.
        let callers = Arc::new(Callers::default());
        let now = Instant::now();
        drop(callers.arrived_at(peer(1), now));
        assert!(!callers.one_at_a_time_at(now + RECENT * 2));
    }
}
