//! The global log under concurrent writers: a follower sees every event exactly once, in an order
//! that respects each stream's sequence — where a naive `position > last` reader loses events.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::future::join_all;
use rand::Rng;
use storming_domain::recorded::LogCursor;
use storming_infra::db::{Database, StorePool};
use storming_infra::log::{GlobalLog, LogFilter};
use tokio::time::Instant;

use crate::on_both_backends;
use crate::support::{plan, TestDb};

const WRITERS: usize = 16;
const EVENTS_PER_WRITER: i64 = 40;

/// Appends one event to stream `writer` in its own transaction, holding the transaction open for
/// `hold` after the insert so that commits interleave with other writers' inserts.
async fn append(db: &Database, writer: usize, sequence: i64, hold: Duration) {
    let (aggregate_id, payload) = (format!("writer-{writer}"), format!("{{\"n\": {sequence}}}"));
    match &db.store {
        StorePool::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ('test.stream', $1, $2, 'Appended', '1.0', $3::jsonb, '{}'::jsonb)",
            )
            .bind(&aggregate_id)
            .bind(sequence)
            .bind(&payload)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query("SELECT pg_sleep($1)").bind(hold.as_secs_f64()).execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
        StorePool::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ('test.stream', $1, $2, 'Appended', '1.0', $3, '{}')",
            )
            .bind(&aggregate_id)
            .bind(sequence)
            .bind(&payload)
            .execute(&mut *tx)
            .await
            .unwrap();
            tokio::time::sleep(hold).await;
            tx.commit().await.unwrap();
        }
    }
}

on_both_backends!(a_follower_sees_every_event_once_in_stream_order_under_concurrent_writers);

async fn a_follower_sees_every_event_once_in_stream_order_under_concurrent_writers(db: TestDb) {
    let database = Database::connect(&db.url, (WRITERS + 4) as u32).await.unwrap();
    let log = GlobalLog::new(&database);
    let total = WRITERS * EVENTS_PER_WRITER as usize;

    let writers = join_all((0..WRITERS).map(|writer| {
        let database = database.clone();
        async move {
            for sequence in 1..=EVENTS_PER_WRITER {
                let hold = Duration::from_micros(rand::thread_rng().gen_range(0..3_000));
                append(&database, writer, sequence, hold).await;
            }
        }
    }));
    let follower = async {
        let (mut cursor, mut seen) = (LogCursor::START, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen.len() < total && Instant::now() < deadline {
            let batch = log.read_after(cursor, 50, &LogFilter::default()).await.unwrap();
            if let Some(last) = batch.last() {
                cursor = last.cursor();
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen.extend(batch);
        }
        seen
    };
    let (_, seen) = tokio::join!(writers, follower);

    let positions: HashSet<i64> = seen.iter().map(|event| event.position).collect();
    assert_eq!(positions.len(), seen.len(), "no event seen twice");
    assert_eq!(seen.len(), total, "every event seen");
    let mut last_sequence: HashMap<&str, i64> = HashMap::new();
    for event in &seen {
        let previous = last_sequence.insert(&event.aggregate_id, event.sequence).unwrap_or(0);
        assert_eq!(event.sequence, previous + 1, "stream {} out of order", event.aggregate_id);
    }
    database.close().await;
}

/// The race the reader exists for, made deterministic: an event inserted first but committed last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_late_commit_is_not_skipped_where_a_naive_reader_skips_it() {
    let Some(db) = TestDb::postgres().await else { return };
    let database = Database::connect(&db.url, 4).await.unwrap();
    let StorePool::Postgres(pool) = &database.store else { unreachable!("a PostgreSQL test database") };
    let log = GlobalLog::new(&database);
    let insert =
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('test.stream', $1, 1, 'Appended', '1.0', '{}'::jsonb, '{}'::jsonb)";

    // Transaction A takes position 1 and stays open; B takes position 2 and commits.
    let mut slow = pool.begin().await.unwrap();
    sqlx::query(insert).bind("slow").execute(&mut *slow).await.unwrap();
    sqlx::query(insert).bind("fast").execute(pool).await.unwrap();

    // A naive reader sees position 2 and moves its cursor past 1; ours waits for A.
    let naive: Vec<i64> =
        sqlx::query_scalar("SELECT global_position FROM events WHERE global_position > 0 ORDER BY global_position")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(naive, [2]);
    assert!(log.read_after(LogCursor::START, 10, &LogFilter::default()).await.unwrap().is_empty());

    slow.commit().await.unwrap();
    let naive_after: Vec<i64> =
        sqlx::query_scalar("SELECT global_position FROM events WHERE global_position > 2 ORDER BY global_position")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(naive_after.is_empty(), "the naive reader has lost position 1 for good");
    // The reader stays below the oldest transaction still running anywhere in the cluster, and
    // the other tests run theirs beside this one: it sees both once those have ended too.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let ours = loop {
        let ours: Vec<i64> = log
            .read_after(LogCursor::START, 10, &LogFilter::default())
            .await
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        if ours.len() == 2 || tokio::time::Instant::now() >= deadline {
            break ours;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(ours, [1, 2], "the gap-safe reader sees both, in commit order");
    database.close().await;
}

/// Workers run the follow query prepared, and PostgreSQL switches a prepared statement to a generic
/// plan (parameters unknown). That plan must walk the log-order index and stop at the limit: a
/// sort over everything after the cursor made catch-up a thousand times slower at a million
/// events (an `ORDER BY transaction_id` that named the output column, a cast, not the index's).
/// The check a worker runs after each empty read, whether anything is stored after its cursor,
/// must also stop at its first row: as a `COUNT(*)` of everything after the cursor, planned from
/// a smaller log's statistics, it was a sequential scan of the whole log every few milliseconds
/// per worker, and commands slowed down as the log grew (ADR 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_workers_log_queries_walk_the_index_without_sorting() {
    let Some(db) = TestDb::postgres().await else { return };
    let database = Database::connect(&db.url, 4).await.unwrap();
    let StorePool::Postgres(pool) = &database.store else { unreachable!("a PostgreSQL test database") };
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'test.stream', 'stream-' || (n / 100), n % 100 + 1, 'Appended', '1.0', '{}'::jsonb, '{}'::jsonb \
         FROM generate_series(0, 49999) AS n",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE events").execute(pool).await.unwrap();

    let log = GlobalLog::new(&database);
    let follow = plan(&database, log.follow_sql(), &["bigint", "bigint", "text"]).await;
    let any_after = plan(&database, log.any_after_sql(), &["bigint", "text"]).await;
    for (statement, plan) in [("follow", follow), ("any_after", any_after)] {
        assert!(plan.contains("events_log_order"), "{statement}: the log-order index is used:\n{plan}");
        assert!(!plan.contains("Sort"), "{statement}: no sort:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{statement}: no scan of the whole log:\n{plan}");
        assert!(plan.contains("Limit"), "{statement}: stops at the limit (the first event, for any_after):\n{plan}");
    }
    database.close().await;
}

/// A return finds its rental's book copy by the rental's correlation id. Asked with a second
/// condition (`AND aggregate_type = 'rental.book_copy'`), PostgreSQL without statistics (a young
/// table, before autovacuum's first ANALYZE) intersected the correlation index with the primary
/// key's `aggregate_type` prefix: a bitmap of every event of that type, built for each return
/// (0.4 ms a call at 40,000 events, growing with the log). The query has the one condition: its
/// only way in is the correlation index, with or without statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_correlation_is_found_by_its_index_even_without_statistics() {
    let Some(db) = TestDb::postgres().await else { return };
    let database = Database::connect(&db.url, 4).await.unwrap();
    let StorePool::Postgres(pool) = &database.store else { unreachable!("a PostgreSQL test database") };
    sqlx::query("ALTER TABLE events SET (autovacuum_enabled = false)").execute(pool).await.unwrap();
    // A rental log: each rental's payment, then its copy rented and returned.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT kind, stream, sequence, 'Happened', '1.0', '{}'::jsonb, \
                jsonb_build_object('correlation_id', 'rental-' || n) \
         FROM generate_series(0, 19999) AS n, \
         LATERAL (VALUES ('payment', 'payment-' || n, 1), \
                         ('rental.book_copy', 'copy-' || (n % 16), (n / 16) * 2 + 1), \
                         ('rental.book_copy', 'copy-' || (n % 16), (n / 16) * 2 + 2)) AS event(kind, stream, sequence)",
    )
    .execute(pool)
    .await
    .unwrap();
    let analyzed: Option<i64> = sqlx::query_scalar(
        "SELECT analyze_count + autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'events'",
    )
    .fetch_optional(pool)
    .await
    .unwrap();
    assert_eq!(analyzed.unwrap_or(0), 0, "the log has no statistics");

    let log = GlobalLog::new(&database);
    let plan = plan(&database, log.correlation_sql(), &["text"]).await;
    assert!(plan.contains("events_correlation"), "the correlation index is used:\n{plan}");
    assert!(!plan.contains("BitmapAnd") && !plan.contains("pkey"), "no other index:\n{plan}");
    assert!(!plan.contains("Seq Scan"), "no scan of the whole log:\n{plan}");

    let first = log.first_of_correlation("rental-19000", "rental.book_copy").await.unwrap().expect("found");
    assert_eq!((first.aggregate_id.as_str(), first.sequence), ("copy-8", 2375), "the rent, not the return");
    assert!(log.first_of_correlation("rental-19000", "customer").await.unwrap().is_none());
    database.close().await;
}

on_both_backends!(anything_stored_after_a_cursor_is_seen);

/// The check after an empty read sees what is stored after the cursor, readable or not.
async fn anything_stored_after_a_cursor_is_seen(db: TestDb) {
    let database = Database::connect(&db.url, 4).await.unwrap();
    let log = GlobalLog::new(&database);
    assert!(!log.any_after(LogCursor::START).await.unwrap(), "an empty log");
    append(&database, 0, 1, Duration::ZERO).await;
    let events = log.read_after(LogCursor::START, 10, &LogFilter::default()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(log.any_after(LogCursor::START).await.unwrap());
    assert!(!log.any_after(events[0].cursor()).await.unwrap(), "nothing after the last event");
    database.close().await;
}

on_both_backends!(every_list_of_events_returns_them_as_stored);

/// SQLite's lists of events are stepped in place (rusqlite, ADR 29), PostgreSQL's fetched through
/// sqlx. Either way each reader gives back every column as stored: text that JSON must escape,
/// characters beyond ASCII, numbers JSON cannot hold in a double, in order.
async fn every_list_of_events_returns_them_as_stored(db: TestDb) {
    let database = Database::connect(&db.url, 4).await.unwrap();
    let log = GlobalLog::new(&database);
    let payloads = [
        r#"{"title":"\"Quoted\", back\\slash, tab\t, bell\u0007, line\nbreak"}"#,
        r#"{"title":"Tee für 2 — 緑茶 🍵","price":12345678901234567890,"rate":0.1}"#,
        r#"{"nested":{"list":[1,null,true,"x"]},"empty":""}"#,
    ];
    let metadata = r#"{"correlation_id":"rental-\"7\"","causation_id":"request\\/1","actor":"ünïcode"}"#;
    let insert =
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('test.stream', 'odd \"text\" ü', $1, 'Appended', '1.0', {payload}, {metadata})";
    for (sequence, payload) in (1_i64..).zip(payloads) {
        match &database.store {
            StorePool::Postgres(pool) => {
                let insert = insert.replace("{payload}", "$2::jsonb").replace("{metadata}", "$3::jsonb");
                sqlx::query(&insert).bind(sequence).bind(payload).bind(metadata).execute(pool).await.unwrap();
            }
            StorePool::Sqlite(pool) => {
                let insert = insert.replace("{payload}", "$2").replace("{metadata}", "$3");
                sqlx::query(&insert).bind(sequence).bind(payload).bind(metadata).execute(pool).await.unwrap();
            }
        }
    }

    let followed = log.read_after(LogCursor::START, 10, &LogFilter::default()).await.unwrap();
    let filtered = LogFilter { event_type: Some("Appended".into()), ..LogFilter::default() };
    let audited = log.read_after(LogCursor::START, 10, &filtered).await.unwrap();
    let stream = log.stream("test.stream", "odd \"text\" ü").await.unwrap();
    let transaction = log.correlation("rental-\"7\"").await.unwrap();
    for (reader, events) in [("follow", followed), ("audit", audited), ("stream", stream), ("correlation", transaction)]
    {
        assert_eq!(events.len(), payloads.len(), "{reader}: every event");
        for (index, event) in events.iter().enumerate() {
            assert_eq!(event.sequence, index as i64 + 1, "{reader}: in order");
            assert_eq!(event.aggregate_id, "odd \"text\" ü", "{reader}");
            assert_eq!((event.event_type.as_str(), event.event_version.as_str()), ("Appended", "1.0"), "{reader}");
            assert_eq!(event.recorded_at.len(), "2026-12-03T10:00:00.000Z".len(), "{reader}: {}", event.recorded_at);
            assert_eq!(event.metadata.correlation_id, "rental-\"7\"", "{reader}");
            let stored: serde_json::Value = serde_json::from_str(payloads[index]).unwrap();
            let read: serde_json::Value = serde_json::from_str(event.payload.get()).unwrap();
            assert_eq!(read, stored, "{reader}: the payload's value");
            if matches!(database.store, StorePool::Sqlite(_)) {
                assert_eq!(event.payload.get(), payloads[index], "{reader}: SQLite keeps the payload's text");
            }
        }
    }
    database.close().await;
}

/// A payload that is not JSON (SQLite's text column holds anything) is reported with its position
/// by every reader, not as a list that failed somewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_an_undecodable_payload_is_reported_with_its_position() {
    let db = TestDb::sqlite();
    let database = Database::connect(&db.url, 4).await.unwrap();
    let StorePool::Sqlite(pool) = &database.store else { unreachable!("a SQLite test database") };
    for (sequence, payload) in [(1, "{}"), (2, "{not json")] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('test.stream', 'broken', $1, 'Appended', '1.0', $2, '{\"correlation_id\":\"c\"}')",
        )
        .bind(sequence)
        .bind(payload)
        .execute(pool)
        .await
        .unwrap();
    }
    let log = GlobalLog::new(&database);
    let errors = [
        log.read_after(LogCursor::START, 10, &LogFilter::default()).await.unwrap_err(),
        log.stream("test.stream", "broken").await.unwrap_err(),
        log.correlation("c").await.unwrap_err(),
    ];
    for error in errors {
        assert!(
            matches!(error, storming_infra::log::LogError::Undecodable { position: 2, column: "payload", .. }),
            "{error}"
        );
    }
    database.close().await;
}
