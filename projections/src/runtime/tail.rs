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
use std::ops::{Deref, Range};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use storming_domain::recorded::{LogCursor, RecordedEvent};

use super::{BoxError, EventSource};

/// How many of the newest events a process keeps for its workers (about 1 KiB each). Workers at
/// the head are at most one coalescing window behind it, a few dozen events under load.
pub const TAIL_EVENTS: usize = 1_024;

/// Events read from the log, in order: a reader's own, or a range of a read the shared tail holds
/// and lends to every worker that asks for it (a worker only looks at its batch). Seven workers
/// used to copy each event, its strings and its payload, out of the tail (ADR 35).
pub struct Events(Held);

enum Held {
    Own(Vec<RecordedEvent>),
    Lent(Arc<[RecordedEvent]>, Range<usize>),
}

impl Deref for Events {
    type Target = [RecordedEvent];

    fn deref(&self) -> &[RecordedEvent] {
        match &self.0 {
            Held::Own(events) => events,
            Held::Lent(read, range) => &read[range.clone()],
        }
    }
}

impl From<Vec<RecordedEvent>> for Events {
    fn from(events: Vec<RecordedEvent>) -> Self {
        Self(Held::Own(events))
    }
}

pub struct SharedTail {
    source: Arc<dyn EventSource>,
    capacity: usize,
    run: Mutex<Run>,
    /// Held by the reader that reads the database for the run's end; the others wait behind it.
    fetch: tokio::sync::Mutex<()>,
}

/// A contiguous run of the log: every event after `start`, up to and including the last one held,
/// as the reads that brought them (each read's events are lent out, never copied, ADR 35).
#[derive(Default)]
struct Run {
    /// `None` until the first read that reached the head.
    start: Option<LogCursor>,
    reads: VecDeque<Arc<[RecordedEvent]>>,
    held: usize,
}

impl Run {
    fn end(&self) -> Option<LogCursor> {
        self.reads.back().and_then(|read| read.last()).map(RecordedEvent::cursor).or(self.start)
    }

    /// The held events after `cursor` (at most `limit`), if `cursor` is inside the run and
    /// something follows it; `None` if the database must be asked. Lent when they lie in one
    /// read, as they do for the workers following the head; copied when they span reads.
    fn after(&self, cursor: LogCursor, limit: usize) -> Option<Events> {
        let (start, end) = (self.start?, self.end()?);
        if cursor < start || cursor >= end {
            return None;
        }
        let first = self.reads.partition_point(|read| read.last().is_some_and(|last| last.cursor() <= cursor));
        let read = &self.reads[first];
        let from = read.partition_point(|event| event.cursor() <= cursor);
        if read.len() - from >= limit || first + 1 == self.reads.len() {
            let to = read.len().min(from + limit);
            return Some(Events(Held::Lent(read.clone(), from..to)));
        }
        let following = self.reads.range(first + 1..).flat_map(|read| read.iter());
        Some(read[from..].iter().chain(following).take(limit).cloned().collect::<Vec<_>>().into())
    }

    /// Takes in what a read after `cursor` that reached the head returned (it returned less than
    /// it asked for: nothing more was readable then).
    fn merge(&mut self, cursor: LogCursor, read: &Arc<[RecordedEvent]>, capacity: usize) {
        match (self.start, self.end()) {
            // The read starts inside the run (or at its end): what it found past the end continues it.
            (Some(start), Some(end)) if start <= cursor && cursor <= end => {
                match read.partition_point(|event| event.cursor() <= end) {
                    0 => self.push(read.clone()),
                    past => self.push(read[past..].into()),
                }
            }
            // The first read, or one elsewhere: the run starts over there, at the head.
            _ => {
                *self = Self { start: Some(cursor), ..Self::default() };
                self.push(read.clone());
            }
        }
        while self.held > capacity {
            let Some(oldest) = self.reads.pop_front() else { break };
            self.held -= oldest.len();
            if self.reads.is_empty() {
                // One read longer than the whole run (the last of a catch-up): its newest stay.
                let cut = oldest.len() - capacity;
                self.start = Some(oldest[cut - 1].cursor());
                self.push(oldest[cut..].into());
            } else {
                self.start = oldest.last().map(RecordedEvent::cursor);
            }
        }
    }

    fn push(&mut self, read: Arc<[RecordedEvent]>) {
        if !read.is_empty() {
            self.held += read.len();
            self.reads.push_back(read);
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

    /// Reads the database and, if the read reached the head, takes the result into the run. A
    /// full batch is a reader catching up, which nobody else needs; keeping it would only hold
    /// memory.
    async fn read_through(&self, cursor: LogCursor, limit: i64) -> Result<Events, BoxError> {
        let events = self.source.read_after(cursor, limit).await?;
        if events.len() as i64 >= limit {
            return Ok(events);
        }
        let read: Arc<[RecordedEvent]> = match events.0 {
            Held::Own(events) => events.into(),
            Held::Lent(read, range) => read[range].into(),
        };
        self.run().merge(cursor, &read, self.capacity);
        let all = 0..read.len();
        Ok(Events(Held::Lent(read, all)))
    }
}

#[async_trait]
impl EventSource for SharedTail {
    async fn read_after(&self, cursor: LogCursor, limit: i64) -> Result<Events, BoxError> {
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
        async fn read_after(&self, cursor: LogCursor, limit: i64) -> Result<Events, BoxError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await; // let other readers queue up meanwhile
            let head = self.head.load(Ordering::SeqCst);
            Ok((cursor.position + 1..=head).take(limit as usize).map(event).collect::<Vec<_>>().into())
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
    async fn readers_at_the_head_are_lent_the_same_events_not_copies() {
        let log = Log::new(10);
        let tail = SharedTail::new(log.clone(), 100);
        tail.read_after(at(0), 500).await.unwrap();
        log.append(5);
        let (first, second) =
            (tail.read_after(at(10), 500).await.unwrap(), tail.read_after(at(10), 500).await.unwrap());
        assert_eq!(positions(&first), vec![11, 12, 13, 14, 15]);
        assert!(std::ptr::eq(first.as_ptr(), second.as_ptr()), "both readers see the one read's events");
        let later = tail.read_after(at(12), 2).await.unwrap();
        assert!(std::ptr::eq(later.as_ptr(), &first[2]), "a reader further on is lent its part of the same read");
        assert_eq!(log.reads(), 2);
    }

    #[tokio::test]
    async fn a_reader_behind_the_newest_read_gets_the_events_of_several_reads_in_one_batch() {
        let log = Log::new(10);
        let tail = SharedTail::new(log.clone(), 100);
        tail.read_after(at(0), 500).await.unwrap();
        log.append(5);
        tail.read_after(at(10), 500).await.unwrap();
        log.append(5);
        tail.read_after(at(15), 500).await.unwrap();
        assert_eq!(positions(&tail.read_after(at(7), 500).await.unwrap()), (8..=20).collect::<Vec<_>>());
        assert_eq!(positions(&tail.read_after(at(9), 4).await.unwrap()), vec![10, 11, 12, 13]);
        assert_eq!(log.reads(), 3, "all from memory");
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
    async fn the_oldest_reads_go_first_once_the_run_holds_more_than_its_capacity() {
        let log = Log::new(0);
        let tail = SharedTail::new(log.clone(), 4);
        tail.read_after(at(0), 500).await.unwrap();
        log.append(3);
        tail.read_after(at(0), 500).await.unwrap(); // 1..=3
        log.append(3);
        tail.read_after(at(3), 500).await.unwrap(); // 4..=6: seven held, 1..=3 go
        assert_eq!(positions(&tail.read_after(at(3), 500).await.unwrap()), vec![4, 5, 6]);
        assert_eq!(log.reads(), 3);
        assert_eq!(positions(&tail.read_after(at(2), 500).await.unwrap()), vec![3, 4, 5, 6]);
        assert_eq!(log.reads(), 4, "3 went with its read");
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
