//! The log's newest events, read once for all the workers of a process.
//!
//! Every command wakes every worker (four projections, three policies), and each of them used to
//! read the same new events from the database: seven statements for one batch of news. A
//! [`SharedTail`] keeps the newest events it has read, as one contiguous run of the log, and
//! serves any reader whose cursor falls inside that run from memory. Readers at the run's end (the
//! workers following the head) take turns: the first reads the database and extends the run, and
//! those waiting behind it find the news in memory.
//!
//! Why a run is safe to serve: the log is append-only, and the reader under it returns, after a
//! cursor, a *prefix* of everything that will ever follow that cursor (on PostgreSQL, only events
//! of transactions older than every running one: nothing can commit behind them). So the events
//! between two cursors never change once read, and a reader served from memory sees exactly what
//! the database would have given it then. It may see less than the database holds *now*; it reads
//! again after its batch, as it would have anyway.
//!
//! Readers far behind the run (a catch-up, a rebuild) read the database directly; once a direct
//! read reaches the head, its events become the run, so the tail always follows the head.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use storming_domain::recorded::{LogCursor, RecordedEvent};

use super::{BoxError, EventSource};

/// How many of the newest events a process keeps for its workers (about 1 KiB each). Workers at
/// the head are at most one coalescing window behind it, a few dozen events under load.
pub const TAIL_EVENTS: usize = 1_024;

pub struct SharedTail {
    source: Arc<dyn EventSource>,
    capacity: usize,
    run: Mutex<Run>,
    /// Held by the reader that reads the database for the run's end; the others wait behind it.
    fetch: tokio::sync::Mutex<()>,
}

/// A contiguous run of the log: every event after `start`, up to and including the last one held.
#[derive(Default)]
struct Run {
    /// `None` until the first read that reached the head.
    start: Option<LogCursor>,
    events: VecDeque<RecordedEvent>,
}

impl Run {
    fn end(&self) -> Option<LogCursor> {
        self.events.back().map(RecordedEvent::cursor).or(self.start)
    }

    /// The held events after `cursor` (at most `limit`), if `cursor` is inside the run and
    /// something follows it; `None` if the database must be asked.
    fn after(&self, cursor: LogCursor, limit: usize) -> Option<Vec<RecordedEvent>> {
        let (start, end) = (self.start?, self.end()?);
        if cursor < start || cursor >= end {
            return None;
        }
        let first = self.events.partition_point(|event| event.cursor() <= cursor);
        Some(self.events.range(first..).take(limit).cloned().collect())
    }

    /// Takes in what a read after `cursor` returned, if it reached the head (it returned less
    /// than it asked for: nothing more was readable then). A full batch is a reader catching up,
    /// which nobody else needs; copying it would only slow the catch-up down.
    fn merge(&mut self, cursor: LogCursor, events: &[RecordedEvent], reached_head: bool, capacity: usize) {
        if !reached_head {
            return;
        }
        match (self.start, self.end()) {
            // The read starts inside the run (or at its end): what it found past the end continues it.
            (Some(start), Some(end)) if start <= cursor && cursor <= end => {
                let past = events.partition_point(|event| event.cursor() <= end);
                self.events.extend(events[past..].iter().cloned());
            }
            // The first read, or one elsewhere: the run starts over there, at the head.
            _ => {
                self.start = Some(cursor);
                self.events = events.iter().cloned().collect();
            }
        }
        while self.events.len() > capacity {
            if let Some(dropped) = self.events.pop_front() {
                self.start = Some(dropped.cursor());
            }
        }
    }
}

impl SharedTail {
    pub fn new(source: Arc<dyn EventSource>, capacity: usize) -> Self {
        Self { source, capacity, run: Mutex::new(Run::default()), fetch: tokio::sync::Mutex::new(()) }
    }

    fn run(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the database and takes the result into the run.
    async fn read_through(&self, cursor: LogCursor, limit: i64) -> Result<Vec<RecordedEvent>, BoxError> {
        let events = self.source.read_after(cursor, limit).await?;
        let reached_head = (events.len() as i64) < limit;
        self.run().merge(cursor, &events, reached_head, self.capacity);
        Ok(events)
    }
}

#[async_trait]
impl EventSource for SharedTail {
    async fn read_after(&self, cursor: LogCursor, limit: i64) -> Result<Vec<RecordedEvent>, BoxError> {
        let wanted = usize::try_from(limit).unwrap_or(0);
        if let Some(events) = self.run().after(cursor, wanted) {
            return Ok(events);
        }
        let follows_the_head = {
            let run = self.run();
            run.start.is_none() || run.end() == Some(cursor)
        };
        if !follows_the_head {
            return self.read_through(cursor, limit).await;
        }
        let _turn = self.fetch.lock().await;
        // Whoever read while this reader waited may have brought its news.
        if let Some(events) = self.run().after(cursor, wanted) {
            return Ok(events);
        }
        self.read_through(cursor, limit).await
    }

    async fn has_unreadable(&self, cursor: LogCursor) -> Result<bool, BoxError> {
        self.source.has_unreadable(cursor).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use storming_domain::recorded::Payload;
    use storming_domain::shared::EventMetadata;

    use super::*;

    /// An in-memory log of `head` events at positions 1..=head (SQLite's cursors), counting reads.
    struct Log {
        head: std::sync::atomic::AtomicI64,
        reads: AtomicUsize,
    }

    impl Log {
        fn new(head: i64) -> Arc<Self> {
            Arc::new(Self { head: head.into(), reads: AtomicUsize::new(0) })
        }

        fn append(&self, count: i64) {
            self.head.fetch_add(count, Ordering::SeqCst);
        }

        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    fn event(position: i64) -> RecordedEvent {
        RecordedEvent {
            position,
            transaction_id: 0,
            recorded_at: "2026-12-02T00:00:00.000Z".into(),
            aggregate_type: "test".into(),
            aggregate_id: "a".into(),
            sequence: position,
            event_type: "Happened".into(),
            event_version: "1".into(),
            payload: Payload::parse("{}".into()).unwrap(),
            metadata: EventMetadata::default(),
        }
    }

    fn at(position: i64) -> LogCursor {
        LogCursor { transaction_id: 0, position }
    }

    fn positions(events: &[RecordedEvent]) -> Vec<i64> {
        events.iter().map(|event| event.position).collect()
    }

    #[async_trait]
    impl EventSource for Log {
        async fn read_after(&self, cursor: LogCursor, limit: i64) -> Result<Vec<RecordedEvent>, BoxError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await; // let other readers queue up meanwhile
            let head = self.head.load(Ordering::SeqCst);
            Ok((cursor.position + 1..=head).take(limit as usize).map(event).collect())
        }
    }

    #[tokio::test]
    async fn readers_at_the_head_share_one_read_of_the_news() {
        let log = Log::new(10);
        let tail = Arc::new(SharedTail::new(log.clone(), 100));
        assert_eq!(positions(&tail.read_after(at(0), 500).await.unwrap()), (1..=10).collect::<Vec<_>>());
        log.append(5);
        let readers = (0..7).map(|_| {
            let tail = tail.clone();
            tokio::spawn(async move { tail.read_after(at(10), 500).await.unwrap() })
        });
        for reader in readers.collect::<Vec<_>>() {
            assert_eq!(positions(&reader.await.unwrap()), vec![11, 12, 13, 14, 15]);
        }
        assert_eq!(log.reads(), 2, "one read for the start, one for the news of all seven readers");
    }

    #[tokio::test]
    async fn a_reader_inside_the_run_gets_what_follows_its_cursor_up_to_its_limit() {
        let log = Log::new(20);
        let tail = SharedTail::new(log.clone(), 100);
        tail.read_after(at(0), 500).await.unwrap();
        assert_eq!(positions(&tail.read_after(at(7), 3).await.unwrap()), vec![8, 9, 10]);
        assert_eq!(positions(&tail.read_after(at(18), 500).await.unwrap()), vec![19, 20]);
        assert_eq!(log.reads(), 1);
    }

    #[tokio::test]
    async fn a_reader_behind_the_run_reads_the_database_and_the_run_stays_at_the_head() {
        let log = Log::new(1_000);
        let tail = SharedTail::new(log.clone(), 100);
        tail.read_after(at(990), 500).await.unwrap(); // a worker at the head: the run is 991..=1000
        let behind = tail.read_after(at(0), 500).await.unwrap(); // a rebuild from the start
        assert_eq!(positions(&behind), (1..=500).collect::<Vec<_>>());
        assert_eq!(log.reads(), 2);
        assert_eq!(positions(&tail.read_after(at(995), 500).await.unwrap()), vec![996, 997, 998, 999, 1000]);
        assert_eq!(log.reads(), 2, "the run still holds the head");
    }

    #[tokio::test]
    async fn a_read_ahead_of_the_run_that_reaches_the_head_moves_the_run_there() {
        let log = Log::new(10);
        let tail = SharedTail::new(log.clone(), 100);
        tail.read_after(at(0), 500).await.unwrap();
        log.append(990);
        tail.read_after(at(950), 500).await.unwrap(); // another process's checkpoint, far ahead
        assert_eq!(positions(&tail.read_after(at(998), 500).await.unwrap()), vec![999, 1000]);
        assert_eq!(log.reads(), 2);
    }

    #[tokio::test]
    async fn the_run_keeps_only_the_newest_events() {
        let log = Log::new(0);
        let tail = SharedTail::new(log.clone(), 4);
        tail.read_after(at(0), 500).await.unwrap();
        log.append(10);
        assert_eq!(tail.read_after(at(0), 500).await.unwrap().len(), 10);
        // 7..=10 are held; 5 is before them and is read again.
        assert_eq!(positions(&tail.read_after(at(8), 500).await.unwrap()), vec![9, 10]);
        assert_eq!(log.reads(), 2);
        assert_eq!(positions(&tail.read_after(at(5), 2).await.unwrap()), vec![6, 7]);
        assert_eq!(log.reads(), 3);
    }

    #[tokio::test]
    async fn a_full_batch_is_not_kept_and_the_next_read_that_reaches_the_head_is() {
        let log = Log::new(10);
        let tail = SharedTail::new(log.clone(), 1_000);
        tail.read_after(at(0), 500).await.unwrap();
        log.append(30);
        assert_eq!(tail.read_after(at(10), 20).await.unwrap().len(), 20); // 11..=30, more to come
        assert_eq!(positions(&tail.read_after(at(25), 500).await.unwrap()), (26..=40).collect::<Vec<_>>());
        assert_eq!(log.reads(), 3, "11..=30 were not kept");
        assert_eq!(positions(&tail.read_after(at(35), 500).await.unwrap()), vec![36, 37, 38, 39, 40]);
        assert_eq!(log.reads(), 3);
    }
}
