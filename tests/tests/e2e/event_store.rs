//! The write side's store: an append returns the global position of its last event, a stored
//! sequence is a conflict that stores nothing, and a keyed command's events complete its key in
//! the same transaction — on both backends.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use serde_json::json;
use storming_domain::recorded::LogCursor;
use storming_infra::db::{Database, StorePool};
use storming_infra::event_store::EventRepository;
use storming_infra::idempotency::{self, IdempotencyKey, Reservation, CALLER_ENTRY, KEY_ENTRY};
use storming_infra::log::{GlobalLog, LogFilter};
use tokio::time::Instant;

use crate::on_both_backends;
use crate::support::{TestApp, TestDb};

fn event(stream: &str, sequence: usize, metadata: serde_json::Value) -> SerializedEvent {
    SerializedEvent::new(
        stream.to_string(),
        sequence,
        "test.stream".to_string(),
        "Appended".to_string(),
        "1.0".to_string(),
        json!({ "n": sequence }),
        metadata,
    )
}

fn plain(stream: &str, sequence: usize) -> SerializedEvent {
    event(stream, sequence, json!({ "correlation_id": stream }))
}

/// The log's `count` events, as (stream, sequence, position), in log order. PostgreSQL's reader
/// shows a transaction once every older one in the cluster has ended (other tests run beside this
/// one), hence the wait.
async fn log_of(database: &Database, count: usize) -> Vec<(String, i64, i64)> {
    let log = GlobalLog::new(database);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = log.read_after(LogCursor::START, 1_000, &LogFilter::default()).await.unwrap();
        if events.len() >= count || Instant::now() > deadline {
            return events.into_iter().map(|event| (event.aggregate_id, event.sequence, event.position)).collect();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

on_both_backends!(an_append_returns_the_log_position_of_its_last_event);

async fn an_append_returns_the_log_position_of_its_last_event(db: TestDb) {
    let database = Database::connect(&db.url, 2).await.unwrap();
    let store = EventRepository::new(&database);

    let first = store.append(&[plain("a", 1)]).await.unwrap();
    let batch = store.append(&[plain("b", 1), plain("b", 2), plain("b", 3)]).await.unwrap();
    let next = store.append(&[plain("a", 2)]).await.unwrap();

    let log = log_of(&database, 5).await;
    let position_of = |stream: &str, sequence: i64| {
        log.iter().find(|(id, seq, _)| id == stream && *seq == sequence).map(|(_, _, position)| *position).unwrap()
    };
    assert_eq!(first, position_of("a", 1));
    assert_eq!(batch, position_of("b", 3), "a batch answers with its last event");
    assert_eq!(next, position_of("a", 2));
    assert!(first < position_of("b", 1) && position_of("b", 1) < batch && batch < next, "{log:?}");
    assert_eq!(log.len(), 5);
}

on_both_backends!(a_stored_sequence_is_a_conflict_and_the_whole_append_is_refused);

async fn a_stored_sequence_is_a_conflict_and_the_whole_append_is_refused(db: TestDb) {
    let database = Database::connect(&db.url, 2).await.unwrap();
    let store = EventRepository::new(&database);
    store.append(&[plain("a", 1), plain("a", 2)]).await.unwrap();

    let single = store.append(&[plain("a", 2)]).await;
    assert!(matches!(single, Err(PersistenceError::OptimisticLockError)), "{single:?}");
    // The batch's first event is new, its second is not: neither is stored.
    let batch = store.append(&[plain("b", 1), plain("a", 1)]).await;
    assert!(matches!(batch, Err(PersistenceError::OptimisticLockError)), "{batch:?}");

    let log = log_of(&database, 2).await;
    assert_eq!(log.iter().map(|(id, seq, _)| (id.as_str(), *seq)).collect::<Vec<_>>(), vec![("a", 1), ("a", 2)]);
    // The log goes on after the refused appends; on SQLite without a gap (PostgreSQL's identity
    // column spends a number on every row it tried to insert).
    let after = store.append(&[plain("b", 1)]).await.unwrap();
    assert!(after > log[1].2);
    if !db.is_postgres() {
        assert_eq!(after, log[1].2 + 1);
    }
}

on_both_backends!(a_keyed_commands_events_complete_its_key_with_their_position);

async fn a_keyed_commands_events_complete_its_key_with_their_position(db: TestDb) {
    let database = Database::connect(&db.url, 2).await.unwrap();
    let store = EventRepository::new(&database);
    let key = IdempotencyKey { caller: "customer-1".into(), key: "rent-once".into() };
    idempotency::reserve(&database.read_side, &key, &reservation()).await.unwrap();
    let keyed = json!({ "correlation_id": "a", CALLER_ENTRY: key.caller, KEY_ENTRY: key.key });

    store.append(&[plain("other", 1)]).await.unwrap();
    let position = store.append(&[event("a", 1, keyed)]).await.unwrap();

    let completed = idempotency::load(&database.read_side, &key).await.unwrap().unwrap();
    assert_eq!(completed.position, Some(position));
    assert_eq!(log_of(&database, 2).await.last().unwrap(), &("a".to_string(), 1, position));
}

on_both_backends!(rows_other_writers_insert_without_a_position_are_numbered_in_order);

/// Other writers (the bench's log loader, a binary from before the write side numbered its own
/// rows) insert without a position; SQLite numbers them as the log's next, the position being its
/// table's row id (ADR 37; a trigger did before).
async fn rows_other_writers_insert_without_a_position_are_numbered_in_order(db: TestDb) {
    let database = Database::connect(&db.url, 2).await.unwrap();
    let store = EventRepository::new(&database);
    let insert =
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('test.stream', 'raw', $1, 'Appended', '1.0', '{}', '{}')";
    let pool = &database.store;
    let insert_raw = |sequence: i64| async move {
        match pool {
            StorePool::Sqlite(pool) => sqlx::query(insert).bind(sequence).execute(pool).await.map(drop),
            StorePool::Postgres(pool) => sqlx::query(insert).bind(sequence).execute(pool).await.map(drop),
        }
        .unwrap()
    };

    store.append(&[plain("a", 1)]).await.unwrap();
    insert_raw(1).await;
    let appended = store.append(&[plain("a", 2)]).await.unwrap();
    insert_raw(2).await;

    let positions: Vec<i64> = log_of(&database, 4).await.into_iter().map(|(_, _, position)| position).collect();
    assert_eq!(positions.len(), 4);
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{positions:?}");
    assert_eq!(positions[2], appended);
}

on_both_backends!(appends_waiting_for_the_writer_are_committed_together_and_decided_one_by_one);

/// Appends queued behind the writer's turn, as under concurrent commands: the first to get it
/// stores the whole queue in one transaction (on PostgreSQL one INSERT); each append is still
/// refused or stored alone, and an append's events keep their order in the log.
async fn appends_waiting_for_the_writer_are_committed_together_and_decided_one_by_one(db: TestDb) {
    let database = Database::connect(&db.url, 4).await.unwrap();
    let store = EventRepository::new(&database);
    store.append(&[plain("taken", 1)]).await.unwrap();
    store.append(&[plain("partly", 2)]).await.unwrap();
    let key = IdempotencyKey { caller: "customer-1".into(), key: "k".into() };
    idempotency::reserve(&database.read_side, &key, &reservation()).await.unwrap();
    let keyed = json!({ "correlation_id": "k", CALLER_ENTRY: key.caller, KEY_ENTRY: key.key });

    let mut appends: Vec<Vec<SerializedEvent>> = (0..20).map(|n| vec![plain(&format!("s{n}"), 1)]).collect();
    appends.push(vec![plain("taken", 1)]); // a conflict
    appends.push(vec![plain("partly", 1), plain("partly", 2)]); // a conflict on its second event
    appends.push(vec![event("k", 1, keyed.clone()), event("k", 2, keyed)]);
    let (answers, commits) = append_behind_the_writer(&database, appends).await;

    assert_eq!(commits, 1, "one transaction for the whole queue");
    assert!(answers[..20].iter().all(Result::is_ok), "{answers:?}");
    assert!(matches!(answers[20], Err(PersistenceError::OptimisticLockError)), "{:?}", answers[20]);
    assert!(matches!(answers[21], Err(PersistenceError::OptimisticLockError)), "{:?}", answers[21]);
    let log = log_of(&database, 24).await;
    assert_eq!(log.len(), 24, "taken, partly 2, s0..s19, k1, k2: {log:?}");
    let partly: Vec<i64> =
        log.iter().filter(|(stream, ..)| stream == "partly").map(|(_, sequence, _)| *sequence).collect();
    assert_eq!(partly, vec![2], "none of a refused append is stored: {log:?}");
    let positions: Vec<i64> = log.iter().map(|(_, _, position)| *position).collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{positions:?}");
    if !db.is_postgres() {
        // PostgreSQL's identity column spends a number on every row it tried to insert.
        assert_eq!(positions, (1..=24).collect::<Vec<i64>>());
    }
    for (n, answer) in answers[..20].iter().enumerate() {
        let stored = log.iter().find(|(stream, ..)| *stream == format!("s{n}")).unwrap();
        assert_eq!(answer.as_ref().unwrap(), &stored.2);
    }
    let k: Vec<&(String, i64, i64)> = log.iter().filter(|(stream, ..)| stream == "k").collect();
    assert_eq!(k.iter().map(|(_, sequence, _)| *sequence).collect::<Vec<_>>(), vec![1, 2], "in order: {log:?}");
    assert_eq!(answers[22].as_ref().unwrap(), &k[1].2);
    let completed = idempotency::load(&database.read_side, &key).await.unwrap().unwrap();
    assert_eq!(completed.position, Some(k[1].2));
}

on_both_backends!(two_queued_appends_to_one_stream_store_one_and_refuse_the_other);

/// Two commands decided on the same state of one stream and queued together: one is stored, the
/// other is a conflict. PostgreSQL answers the second with the group that stores the first
/// (without sending it), and stores the next sequence of that stream in the group after.
async fn two_queued_appends_to_one_stream_store_one_and_refuse_the_other(db: TestDb) {
    let database = Database::connect(&db.url, 4).await.unwrap();
    let appends = vec![vec![plain("x", 1)], vec![plain("y", 1)], vec![plain("x", 1)], vec![plain("x", 2)]];
    let (answers, commits) = append_behind_the_writer(&database, appends).await;

    assert_eq!(commits, if db.is_postgres() { 2 } else { 1 }, "{answers:?}");
    assert!(answers[0].is_ok() && answers[1].is_ok(), "{answers:?}");
    assert!(matches!(answers[2], Err(PersistenceError::OptimisticLockError)), "{:?}", answers[2]);
    assert!(answers[3].is_ok(), "{answers:?}");
    let log = log_of(&database, 3).await;
    let streams: Vec<(&str, i64)> = log.iter().map(|(stream, sequence, _)| (stream.as_str(), *sequence)).collect();
    assert_eq!(streams.len(), 3, "{log:?}");
    assert!(streams.contains(&("x", 1)) && streams.contains(&("x", 2)) && streams.contains(&("y", 1)), "{log:?}");
}

on_both_backends!(a_group_with_a_failing_append_stores_none_of_it);

/// A failure that is not a conflict (here a CHECK constraint) fails every append of its group:
/// none of them is stored, and the next appends go on.
async fn a_group_with_a_failing_append_stores_none_of_it(db: TestDb) {
    let database = Database::connect(&db.url, 4).await.unwrap();
    let mut appends: Vec<Vec<SerializedEvent>> = (0..5).map(|n| vec![plain(&format!("s{n}"), 1)]).collect();
    appends.push(vec![plain("broken", usize::MAX)]); // stored as sequence -1: refused by CHECK
    let (answers, commits) = append_behind_the_writer(&database, appends).await;
    assert_eq!(commits, 0);
    for answer in answers {
        assert!(matches!(answer, Err(PersistenceError::UnknownError(_))), "{answer:?}");
    }

    let store = EventRepository::new(&database);
    let after = store.append(&[plain("after", 1)]).await.unwrap();
    assert_eq!(log_of(&database, 1).await, vec![("after".to_string(), 1, after)]);
}

fn reservation() -> Reservation {
    Reservation {
        request: "POST /commands/test".into(),
        reserved_ids: vec![],
        status: 201,
        response_id: "k".into(),
        location: None,
        position: None,
    }
}

/// Runs `appends` concurrently while this test holds the writer's turn, and lets it go once all
/// of them wait in the group commit's queue. Their answers, in `appends`' order, and how many
/// transactions they committed.
async fn append_behind_the_writer(
    database: &Database,
    appends: Vec<Vec<SerializedEvent>>,
) -> (Vec<Result<i64, PersistenceError>>, u64) {
    chains_behind_the_writer(database, appends.into_iter().map(|append| vec![append]).collect()).await
}

/// As [`append_behind_the_writer`], for chains of appends ([`EventRepository::append_chain`]):
/// the answers of every chain's appends, one chain after the other.
async fn chains_behind_the_writer(
    database: &Database,
    chains: Vec<Vec<Vec<SerializedEvent>>>,
) -> (Vec<Result<i64, PersistenceError>>, u64) {
    let group = database.group_commit.clone();
    let queued: usize = chains.iter().map(Vec::len).sum();
    let turn = group.hold().await;
    let mut tasks = Vec::new();
    for chain in chains {
        // One at a time into the queue, so that its order is `chains`' order.
        let store = EventRepository::new(database);
        let waiting = group.waiting();
        tasks.push(tokio::spawn(async move {
            let chain: Vec<Arc<[SerializedEvent]>> = chain.into_iter().map(Into::into).collect();
            store.append_chain(&chain).await
        }));
        wait_until(|| group.waiting() > waiting).await;
    }
    assert_eq!(group.waiting(), queued);
    let commits = group.commits();
    drop(turn);
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    (answers, group.commits() - commits)
}

on_both_backends!(the_groups_that_queue_while_one_is_stored_are_stored_in_the_same_turn);

/// ADR 38: whoever holds the writer's turn stores the appends that queued while its group was
/// stored as the next group, in the same turn: none of their requests has to take the turn to
/// lead them. Another writer (another process, say) holds up the first append: on SQLite it holds
/// the file's write lock, on PostgreSQL an uncommitted row under the append's own key.
async fn the_groups_that_queue_while_one_is_stored_are_stored_in_the_same_turn(db: TestDb) {
    let database = Database::connect(&db.url, 4).await.unwrap();
    let group = database.group_commit.clone();
    let mut sqlite_lock = None;
    let mut postgres_row = None;
    match &database.store {
        StorePool::Sqlite(pool) => {
            let mut other = pool.acquire().await.unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *other).await.unwrap();
            sqlite_lock = Some(other);
        }
        StorePool::Postgres(pool) => {
            let mut other = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ('test.stream', 'a', 1, 'Appended', '1.0', '{}', '{}')",
            )
            .execute(&mut *other)
            .await
            .unwrap();
            postgres_row = Some(other);
        }
    }
    let (turns, commits) = (group.turns(), group.commits());
    let append = |stream: &'static str| {
        let store = EventRepository::new(&database);
        tokio::spawn(async move { store.append(&[plain(stream, 1)]).await })
    };

    let first = append("a");
    wait_until(|| group.turns() == turns + 1 && group.waiting() == 0).await;
    let behind = [append("b"), append("c")];
    wait_until(|| group.waiting() == 2).await;
    if let Some(mut other) = sqlite_lock {
        sqlx::query("COMMIT").execute(&mut *other).await.unwrap();
    }
    if let Some(other) = postgres_row {
        other.rollback().await.unwrap();
    }

    let a = first.await.unwrap().unwrap();
    for task in behind {
        assert!(task.await.unwrap().unwrap() > a);
    }
    assert_eq!(group.commits() - commits, 2, "the first append alone, then the two behind it together");
    assert_eq!(group.turns() - turns, 1, "one turn stored both groups");
}

on_both_backends!(an_append_is_never_committed_before_the_one_it_rides_behind);

/// A chain's second append (a rent's rental) goes in the group of its first (the payment), or, when
/// the first must wait for the next group (here, behind an append to its stream on PostgreSQL),
/// waits with it, though its own stream is free: never stored without it. On SQLite the whole
/// queue is one group.
async fn an_append_is_never_committed_before_the_one_it_rides_behind(db: TestDb) {
    let database = Database::connect(&db.url, 4).await.unwrap();
    let chains = vec![vec![vec![plain("p", 1)]], vec![vec![plain("p", 2)], vec![plain("y", 1)]]];
    let (answers, commits) = chains_behind_the_writer(&database, chains).await;

    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(commits, if db.is_postgres() { 2 } else { 1 }, "{answers:?}");
    let (p2, y1) = (answers[1].as_ref().unwrap(), answers[2].as_ref().unwrap());
    assert!(p2 < y1, "the rider is in the log first: {answers:?}");
    assert_eq!(log_of(&database, 3).await.len(), 3);
}

on_both_backends!(a_rider_is_stored_though_the_append_it_rides_with_is_refused);

/// Each append of a chain is still decided alone: a payment is stored though the rental it paid
/// for lost its race, so that it can be refunded.
async fn a_rider_is_stored_though_the_append_it_rides_with_is_refused(db: TestDb) {
    let database = Database::connect(&db.url, 4).await.unwrap();
    EventRepository::new(&database).append(&[plain("taken", 1)]).await.unwrap();
    let chains = vec![vec![vec![plain("paid", 1)], vec![plain("taken", 1)]], vec![vec![plain("z", 1)]]];
    let (answers, commits) = chains_behind_the_writer(&database, chains).await;

    assert_eq!(commits, 1, "{answers:?}");
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(matches!(answers[1], Err(PersistenceError::OptimisticLockError)), "{:?}", answers[1]);
    let streams: Vec<String> = log_of(&database, 3).await.into_iter().map(|(stream, ..)| stream).collect();
    assert_eq!(streams.len(), 3, "{streams:?}");
    assert!(streams.contains(&"paid".to_string()), "{streams:?}");
}

async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

on_both_backends!(an_id_said_to_be_minted_whose_stream_exists_is_decided_on_its_stream);

/// A first load of a minted id reads nothing; should the id's stream exist after all (here,
/// another process registered the book), the append meets the stored sequence and the command is
/// decided again on the stream: no second registration.
async fn an_id_said_to_be_minted_whose_stream_exists_is_decided_on_its_stream(db: TestDb) {
    use cqrs_es::Aggregate;
    use storming_domain::library::{Book, LibraryCommand, LibraryError};
    use storming_domain::shared::{EventMetadata, Krw};
    use storming_infra::commands::{CommandError, Executor, LogSignal};

    let database = Database::connect(&db.url, 2).await.unwrap();
    let book_id = uuid::Uuid::now_v7();
    let register = LibraryCommand::RegisterBook {
        book_id,
        title: "Dune".into(),
        author: None,
        rental_fee: Krw::positive("rental_fee", 1500).unwrap(),
    };
    let metadata = EventMetadata::default();
    let elsewhere: Executor<Book> = Executor::new(&database, (), LogSignal::new(), 10);
    elsewhere.execute(&book_id.to_string(), register.clone(), &metadata).await.expect("registered");

    let here: Executor<Book> = Executor::new(&database, (), LogSignal::new(), 10);
    here.minted(&book_id.to_string());
    let again = here.execute(&book_id.to_string(), register, &metadata).await;
    assert!(matches!(again, Err(CommandError::Rejected(LibraryError::AlreadyRegistered))), "{again:?}");
    let stream = GlobalLog::new(&database).stream(Book::TYPE, &book_id.to_string()).await.unwrap();
    assert_eq!(stream.len(), 1, "one registration stored");
    database.close().await;
}

/// On PostgreSQL a process's cached aggregate is known current, and loaded without a read of its
/// stream, from the epoch it was read in until another writer's commit is heard or the listening
/// connection ends (ADR 48). The process's own commits do not end the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_cached_aggregate_is_loaded_without_a_read_until_another_writer_commits() {
    use storming_domain::library::Book;
    use storming_infra::commands::LogSignal;
    use storming_infra::event_store::{CachedStore, Load};
    use storming_infra::foreign;
    use tokio::sync::watch;

    let Some(db) = TestDb::postgres().await else { return };
    let here = Database::connect(&db.url, 2).await.unwrap();
    let elsewhere = Database::connect(&db.url, 2).await.unwrap();
    let StorePool::Postgres(pool) = here.store.clone() else { unreachable!("a PostgreSQL database") };
    let (stop, stopped) = watch::channel(false);
    let listener = tokio::spawn(foreign::listen(pool, here.foreign.clone(), LogSignal::new(), stopped));
    let foreign = here.foreign.clone();
    TestApp::eventually_without_app("listening", || async { foreign.listening().then_some(()) }).await;
    let store: CachedStore<Book> = CachedStore::new(&here, 10);
    let store = &store;
    let unread = |load| async move { store.load("a-book", load).await.unwrap().unread };

    assert!(!unread(Load::Current).await, "the first load reads the stream");
    assert!(unread(Load::Current).await, "then the cached state is known current");
    assert!(!unread(Load::Read).await, "a read is a read");
    EventRepository::new(&here).append(&[plain("mine", 1)]).await.unwrap();
    EventRepository::new(&elsewhere).append(&[plain("theirs", 1)]).await.unwrap();
    TestApp::eventually_without_app("another writer's commit heard", || async { (foreign.heard() > 0).then_some(()) })
        .await;
    assert_eq!(foreign.heard(), 1, "the process's own commit, notified first, is not another writer's");
    assert!(!unread(Load::Current).await, "after another writer's commit the stream is read");
    assert!(unread(Load::Current).await, "and known current again");

    stop.send(true).unwrap();
    listener.await.unwrap();
    assert!(!foreign.listening());
    assert!(!unread(Load::Current).await, "not listening, nothing is known current");
    here.close().await;
    elsewhere.close().await;
}
