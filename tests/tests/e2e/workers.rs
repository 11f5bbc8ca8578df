//! Workers you can stop, scale out and trust: a core that keeps working while a worker process is
//! dead, catch-up on return, one live owner per worker (with fencing) among replicas, and no
//! partial batch after a crash.
//!
//! "Processes" here are separate `WorkerProcess`es (own pools, own leases) in the test process;
//! `kill` aborts one mid-batch without giving its leases up and closes its connections, which is
//! what the database sees of a `kill -9`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};
use storming_api::auth::Role;
use storming_api::workers::LogSource;
use storming_api::{ServeOptions, WorkerProcess};
use storming_domain::recorded::RecordedEvent;
use storming_infra::db::{Database, StorePool};
use storming_infra::log::GlobalLog;
use storming_projections::runtime::batch::{self, Writes};
use storming_projections::runtime::{lease, AppendCount};
use storming_projections::{BoxError, Projection, Step, Worker, WorkerSettings};
use tokio::sync::watch;

use crate::on_both_backends;
use crate::support::{config, count_of, TestApp, TestDb};

const LEASE_MS: &str = "1000";

fn worker<'a>(views: &'a Value, name: &str) -> &'a Value {
    views["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|view| view["name"] == name)
        .unwrap_or_else(|| panic!("no worker {name}"))
}

on_both_backends!(with_the_worker_process_dead_the_core_keeps_renting_and_every_missed_event_is_applied_on_return);

async fn with_the_worker_process_dead_the_core_keeps_renting_and_every_missed_event_is_applied_on_return(db: TestDb) {
    let settings = [("STORMING_WORKER_LEASE_MS", LEASE_MS)];
    let api = TestApp::start_with(config(&db, &settings), ServeOptions { workers: false }).await;
    let workers = WorkerProcess::start(&config(&db, &settings), None).await.unwrap();
    let manager = api.token("librarian", &[Role::BookManager]);
    let kim = api.token("kim", &[Role::Customer]);
    let admin = api.token("auditor", &[Role::Admin]);
    let dune = api.shelved_book(&manager, "Dune", 1000).await;
    let emma = api.shelved_book(&manager, "Emma", 900).await;

    workers.kill().await;

    // The core goes on taking rentals of shelved books.
    let first = api.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": dune}))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let lag_after_one =
        worker(&api.get(&admin, "/admin/projections").await.body, "rental_status")["lag_events"].as_i64().unwrap();
    let returned = api.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/return", first.id()), None).await;
    assert_eq!(returned.status, StatusCode::OK);
    let second = api.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": emma}))).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let cancelled = api.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/cancel", second.id()), None).await;
    assert_eq!(cancelled.status, StatusCode::OK);

    // ... while the views stand still and the lag rises.
    let status = api.get(&kim, &format!("/queries/book-rental/rentals/{}", first.id())).await;
    assert_eq!(status.status, StatusCode::NOT_FOUND, "the view has not moved");
    let views = api.get(&admin, "/admin/projections").await.body;
    assert!(worker(&views, "rental_status")["lag_events"].as_i64().unwrap() > lag_after_one, "{views}");
    api.eventually("the dead owner's leases expire", || async {
        let views = api.get(&admin, "/admin/projections").await.body;
        (worker(&views, "rental_status")["status"] == "STOPPED").then_some(())
    })
    .await;

    // Back: everything missed is applied, once.
    let workers = WorkerProcess::start(&config(&db, &settings), None).await.unwrap();
    api.eventually("every worker caught up", || async {
        let views = api.get(&admin, "/admin/projections").await.body;
        let items = views["items"].as_array()?.clone();
        items.iter().all(|view| view["lag_events"] == 0 && view["status"] == "RUNNING").then_some(())
    })
    .await;
    let first_status = api.get(&kim, &format!("/queries/book-rental/rentals/{}", first.id())).await;
    assert_eq!(first_status.body["status"], "RETURNED");
    let second_status = api.get(&kim, &format!("/queries/book-rental/rentals/{}", second.id())).await;
    assert_eq!(
        (&second_status.body["status"], &second_status.body["payment_status"]),
        (&json!("CANCELLED"), &json!("REFUNDED"))
    );
    let page = api.get(&kim, "/queries/my-page").await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2, "one row per rental: {}", page.body);
    let types = api.log_types().await;
    assert_eq!(count_of(&types, "PaymentRefunded"), 1, "refunded once");
    let metrics = reqwest::get(format!("{}/metrics", api.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("storming_worker_lag_events{worker=\"rental_status\"} 0"), "{metrics}");
    workers.shutdown().await.unwrap();
    api.stop().await;
}

on_both_backends!(a_killed_worker_process_leaves_no_task_behind);

/// `kill` ends every task the worker process started, the generations' workers its supervisors
/// spawned included: none outlives it to go on reading and writing. (Such a task went unnoticed
/// for as long as its closed pool failed its reads; ADR 29.)
async fn a_killed_worker_process_leaves_no_task_behind(db: TestDb) {
    let projections = storming_api::workers::projections().len();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let workers = WorkerProcess::start(&config(&db, &[]), None).await.unwrap();
    let database = Database::connect(&db.url, 1).await.unwrap();
    TestApp::eventually_without_app("every projection's generation worker holds its lease", || async {
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM worker_leases WHERE name LIKE '%@g%' AND owner <> ''")
            .fetch_one(&database.read_side)
            .await
            .ok()?;
        (held >= projections as i64).then_some(())
    })
    .await;
    database.close().await;
    let running = metrics.num_alive_tasks();
    workers.kill().await;
    TestApp::eventually_without_app("no task of the killed process is left", || async {
        (metrics.num_alive_tasks() <= before).then_some(())
    })
    .await;
    assert!(running > before + projections, "the workers ran as tasks ({running} against {before} before)");
}

/// On PostgreSQL a worker in another process is woken by `NOTIFY` when a command commits: with its
/// poll and lease set to an hour, nothing else could wake it in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_worker_process_is_woken_by_notify() {
    let Some(db) = TestDb::postgres().await else { return };
    let hour = [("STORMING_WORKER_POLL_MS", "3600000"), ("STORMING_WORKER_LEASE_MS", "3600000")];
    let api = TestApp::start_with(config(&db, &hour), ServeOptions { workers: false }).await;
    let workers = WorkerProcess::start(&config(&db, &hour), None).await.unwrap();
    let manager = api.token("librarian", &[Role::BookManager]);
    let admin = api.token("auditor", &[Role::Admin]);
    // Every worker has taken its lease: it read the (empty) log and went to sleep for an hour.
    api.eventually("every worker holds its lease", || async {
        let views = api.get(&admin, "/admin/projections").await.body;
        views["items"].as_array()?.iter().all(|view| view["status"] == "RUNNING").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // from taking the lease to waiting: microseconds
                                                          // Registering (API), then shelving (a policy) and the catalog (a projection), in the worker process.
    api.shelved_book(&manager, "Dune", 1000).await;
    workers.shutdown().await.unwrap();
    api.stop().await;
}

/// Counts how often each event is applied: the proof of exactly-once.
struct Counter {
    /// Fails once, on this position, before the batch commits: a crash mid-batch.
    crash_at: Option<i64>,
    crashed: AtomicBool,
}

impl Counter {
    fn new() -> Arc<Self> {
        Arc::new(Self { crash_at: None, crashed: AtomicBool::new(false) })
    }
}

#[async_trait]
impl Projection for Counter {
    fn name(&self) -> &'static str {
        "test.counter"
    }

    fn schema(&self) -> &'static str {
        "" // the test creates `applied_events` itself
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(&self, tx: &mut AnyConnection, events: &[RecordedEvent], _generation: i64) -> Result<(), BoxError> {
        for event in events {
            sqlx::query(
                "INSERT INTO applied_events (position, times) VALUES ($1, 1) \
                 ON CONFLICT (position) DO UPDATE SET times = applied_events.times + 1",
            )
            .bind(event.position)
            .execute(&mut *tx)
            .await?;
            if self.crash_at == Some(event.position) && !self.crashed.swap(true, Ordering::SeqCst) {
                return Err("crashed before the batch committed".into());
            }
        }
        Ok(())
    }
}

/// A migrated database with `count` events in 100-event streams and the counter's table.
async fn log_with_events(db: &TestDb, count: i64) -> Database {
    let database = Database::connect(&db.url, 4).await.unwrap();
    sqlx::query("CREATE TABLE applied_events (position bigint PRIMARY KEY, times bigint NOT NULL)")
        .execute(&database.read_side)
        .await
        .unwrap();
    let insert = |json: &'static str| {
        format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('test.stream', $1, $2, 'Counted', '1.0', {json}, {json})"
        )
    };
    macro_rules! append {
        ($pool:expr, $sql:expr) => {{
            let mut tx = $pool.begin().await.unwrap();
            for n in 0..count {
                sqlx::query(&$sql)
                    .bind(format!("stream-{}", n / 100))
                    .bind(n % 100 + 1)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }};
    }
    match &database.store {
        StorePool::Sqlite(pool) => append!(pool, insert("'{}'")),
        StorePool::Postgres(pool) => append!(pool, insert("'{}'::jsonb")),
    }
    database
}

async fn times_applied(database: &Database) -> (i64, i64) {
    let row = sqlx::query("SELECT COUNT(*) AS applied, COALESCE(SUM(CASE WHEN times = 1 THEN 0 ELSE 1 END), 0) AS twice FROM applied_events")
        .fetch_one(&database.read_side)
        .await
        .unwrap();
    (row.try_get("applied").unwrap(), row.try_get("twice").unwrap())
}

fn counter_worker(database: &Database, counter: Arc<Counter>, owner: &str, settings: WorkerSettings) -> Worker {
    let source = Arc::new(LogSource(GlobalLog::new(database)));
    let (_, wake) = watch::channel(0);
    Worker::projection_generation(counter, 1, source, database.read_side.clone(), wake, settings).with_owner(owner)
}

/// One step of `worker`, past any wait for the PostgreSQL horizon (another test in the cluster may
/// hold a transaction open for a moment).
async fn step(worker: &mut Worker) -> Result<Step, storming_projections::BoxError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match worker.step().await? {
            Step::Waiting if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            outcome => return Ok(outcome),
        }
    }
}

const TEN_THOUSAND: i64 = 10_000;
/// The counter's checkpoint and lease name (generation 1).
const COUNTER_KEY: &str = "test.counter@g1";

on_both_backends!(two_replicas_apply_every_event_exactly_once_through_the_death_of_the_owner);

async fn two_replicas_apply_every_event_exactly_once_through_the_death_of_the_owner(db: TestDb) {
    let shared = log_with_events(&db, TEN_THOUSAND).await;
    let settings = WorkerSettings {
        batch_size: 20,
        catch_up_batch_size: 20,
        poll_interval: Duration::from_millis(20),
        lease_ttl: Duration::from_millis(1000),
        ..WorkerSettings::default()
    };
    // Each replica has its own pool, as it would in its own process.
    let mut replicas = Vec::new();
    for owner in ["replica-a", "replica-b"] {
        let database = Database::connect(&db.url, 2).await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(counter_worker(&database, Counter::new(), owner, settings).run(stopped));
        replicas.push((owner, database, stop, task));
    }
    TestApp::eventually_without_app("a third of the events applied", || async {
        (times_applied(&shared).await.0 >= TEN_THOUSAND / 3).then_some(())
    })
    .await;

    // kill -9 the owner: its batch is cut off, its lease is not given up.
    let (owner, _) = lease::holder(&shared.read_side, COUNTER_KEY).await.unwrap().expect("an owner");
    let index = replicas.iter().position(|(name, ..)| *name == owner).expect("the owner is a replica");
    let (_, dead, _, task) = replicas.remove(index);
    task.abort();
    let _ = task.await;
    dead.close().await;
    let applied_by_the_dead = times_applied(&shared).await.0;
    assert!(applied_by_the_dead < TEN_THOUSAND, "the owner was killed mid-run ({applied_by_the_dead} applied)");

    TestApp::eventually_without_app("the stand-by applies the rest", || async {
        (times_applied(&shared).await.0 == TEN_THOUSAND).then_some(())
    })
    .await;
    let (applied, twice) = times_applied(&shared).await;
    assert_eq!((applied, twice), (TEN_THOUSAND, 0), "every event applied exactly once");
    let (survivor, ..) = &replicas[0];
    assert_eq!(lease::holder(&shared.read_side, COUNTER_KEY).await.unwrap().unwrap().0, *survivor);
    for (_, database, stop, task) in replicas {
        stop.send(true).unwrap();
        task.await.unwrap();
        database.close().await;
    }
    shared.close().await;
}

/// A view that plans its writes ([`Projection::plan`]), as this crate's views do: on SQLite its
/// batches are written on the process's plain connection (ADR 24), on PostgreSQL through `apply`'s
/// default.
struct Planned {
    /// Plans a row that breaks the table's NOT NULL once, at this position: the batch's
    /// transaction fails after some of its statements ran.
    poison_at: i64,
    poisoned: AtomicBool,
}

#[async_trait]
impl Projection for Planned {
    fn name(&self) -> &'static str {
        "test.planned"
    }

    fn schema(&self) -> &'static str {
        "" // the test creates `planned_events` itself
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn plan(&self, events: &[RecordedEvent], _generation: i64) -> Option<Result<Writes, BoxError>> {
        Some(batch::writes_of(events, |writes, event| {
            let poisoned = event.position == self.poison_at && !self.poisoned.swap(true, Ordering::SeqCst);
            let stream = if poisoned { batch::Value::MaybeText(None) } else { event.aggregate_id.clone().into() };
            writes.insert(
                "planned_events",
                &["position", "stream"],
                &["position"],
                vec![event.position.into(), stream],
            );
            Ok(())
        }))
    }
}

async fn planned_rows(database: &Database) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM planned_events").fetch_one(&database.read_side).await.unwrap().get("n")
}

on_both_backends!(a_planned_batch_is_written_whole_or_not_at_all_and_only_by_its_leases_owner);

async fn a_planned_batch_is_written_whole_or_not_at_all_and_only_by_its_leases_owner(db: TestDb) {
    let database = log_with_events(&db, 300).await;
    sqlx::query("CREATE TABLE planned_events (position bigint PRIMARY KEY, stream text NOT NULL)")
        .execute(&database.read_side)
        .await
        .unwrap();
    let planned = Arc::new(Planned { poison_at: 150, poisoned: AtomicBool::new(false) });
    let settings = WorkerSettings { batch_size: 100, catch_up_batch_size: 100, ..WorkerSettings::default() };
    let source = Arc::new(LogSource(GlobalLog::new(&database)));
    let batches = storming_api::workers::sqlite_batches(&database);
    assert_eq!(batches.is_some(), !db.is_postgres(), "SQLite's batches go on a plain connection");
    let mut worker =
        Worker::projection_generation(planned, 1, source, database.read_side.clone(), watch::channel(0).1, settings)
            .with_owner("planner")
            .with_sqlite_batches(batches);
    let checkpoint =
        || async { storming_projections::runtime::checkpoint(&database.read_side, "test.planned@g1").await.unwrap() };

    assert_eq!(step(&mut worker).await.unwrap(), Step::Applied(100));
    assert_eq!((planned_rows(&database).await, checkpoint().await.cursor.position), (100, 100));

    let failed = step(&mut worker).await;
    assert!(failed.is_err(), "the poisoned row fails the batch: {failed:?}");
    assert_eq!(planned_rows(&database).await, 100, "none of the failed batch's rows");
    assert_eq!(checkpoint().await.cursor.position, 100, "nor its checkpoint");

    assert_eq!(step(&mut worker).await.unwrap(), Step::Applied(100), "the next attempt writes it whole");
    assert_eq!((planned_rows(&database).await, checkpoint().await.cursor.position), (200, 200));

    // Another owner takes the lease over: this one's next batch is fenced out.
    sqlx::query("UPDATE worker_leases SET token = token + 1, owner = 'usurper' WHERE name = 'test.planned@g1'")
        .execute(&database.read_side)
        .await
        .unwrap();
    assert_eq!(step(&mut worker).await.unwrap(), Step::Standby);
    assert_eq!((planned_rows(&database).await, checkpoint().await.cursor.position), (200, 200));
    database.close().await;
}

on_both_backends!(a_paused_owner_cannot_write_a_stale_checkpoint);

async fn a_paused_owner_cannot_write_a_stale_checkpoint(db: TestDb) {
    let database = log_with_events(&db, 500).await;
    let settings = WorkerSettings { batch_size: 100, lease_ttl: Duration::from_secs(60), ..WorkerSettings::default() };
    let mut first = counter_worker(&database, Counter::new(), "first", settings);
    let mut second = counter_worker(&database, Counter::new(), "second", settings);
    assert_eq!(step(&mut first).await.unwrap(), Step::Applied(100));
    assert_eq!(step(&mut second).await.unwrap(), Step::Standby, "one live owner");

    // The first owner stalls past its lease (a long GC pause, a frozen VM): the second takes over.
    sqlx::query("UPDATE worker_leases SET expires_at = 0 WHERE name = 'test.counter@g1'")
        .execute(&database.read_side)
        .await
        .unwrap();
    assert_eq!(step(&mut second).await.unwrap(), Step::Applied(100), "resumes from the first owner's checkpoint");
    assert_eq!(step(&mut first).await.unwrap(), Step::Standby, "the stale owner is fenced out");
    while step(&mut second).await.unwrap() != Step::CaughtUp {}
    assert_eq!(times_applied(&database).await, (500, 0));
    database.close().await;
}

on_both_backends!(a_projection_behind_reads_on_in_catch_up_batches);

/// A full batch means the projection is behind: it reads on in catch-up batches until a read comes
/// back short, and a worker that starts (or follows the head) asks for the small batch first.
async fn a_projection_behind_reads_on_in_catch_up_batches(db: TestDb) {
    let database = log_with_events(&db, 350).await;
    let settings = WorkerSettings { batch_size: 10, catch_up_batch_size: 100, ..WorkerSettings::default() };
    let mut worker = counter_worker(&database, Counter::new(), "only", settings);
    assert_eq!(batches_until_caught_up(&mut worker).await, [10, 100, 100, 100, 40]);
    assert_eq!(times_applied(&database).await, (350, 0));
    database.close().await;
}

/// The sizes of the batches `worker` applies until it reaches the head.
async fn batches_until_caught_up(worker: &mut Worker) -> Vec<usize> {
    let mut steps = Vec::new();
    loop {
        match step(worker).await.unwrap() {
            Step::Applied(count) => steps.push(count),
            outcome => {
                assert_eq!(outcome, Step::CaughtUp);
                return steps;
            }
        }
    }
}

/// The batches of a projection that catches up on `events` events in batches of 10 at first and
/// 100 at most, sized to `hold`; each event applied once.
async fn catch_up_batches_sized_to(db: TestDb, events: i64, hold: Duration) -> Vec<usize> {
    let (batches, pauses) = catch_up_batches_beside(db, events, hold, None).await;
    assert!(pauses.iter().all(|pause| !pause), "no appends, no pause: {pauses:?}");
    batches
}

/// The same, with `appends` as the process's count of appends (see `Worker::with_appends`); and
/// after each batch, whether the worker pauses before its next read.
async fn catch_up_batches_beside(
    db: TestDb,
    events: i64,
    hold: Duration,
    appends: Option<AppendCount>,
) -> (Vec<usize>, Vec<bool>) {
    let database = log_with_events(&db, events).await;
    let settings = WorkerSettings {
        batch_size: 10,
        catch_up_batch_size: 100,
        catch_up_hold: Some(hold),
        ..WorkerSettings::default()
    };
    let mut worker = counter_worker(&database, Counter::new(), "only", settings).with_appends(appends);
    let (mut batches, mut pauses) = (Vec::new(), Vec::new());
    loop {
        match step(&mut worker).await.unwrap() {
            Step::Applied(count) => {
                batches.push(count);
                pauses.push(worker.pause_before_next().is_some());
            }
            outcome => {
                assert_eq!(outcome, Step::CaughtUp);
                break;
            }
        }
    }
    assert_eq!(times_applied(&database).await, (events, 0));
    database.close().await;
    (batches, pauses)
}

on_both_backends!(catch_up_batches_sized_to_a_hold_grow_while_they_fit_it);

/// With a hold no batch comes near, catch-up batches grow fourfold per batch up to the most; the
/// growth shows one batch late, because the batch after the one being applied is already being read.
async fn catch_up_batches_sized_to_a_hold_grow_while_they_fit_it(db: TestDb) {
    let batches = catch_up_batches_sized_to(db, 350, Duration::from_secs(60)).await;
    assert_eq!(batches, [10, 10, 40, 40, 100, 100, 50]);
}

on_both_backends!(a_catch_up_that_yields_to_commands_applies_the_same_batches);

/// Commands appending during every batch (a count that moves whenever it is read): the catch-up
/// pauses after each batch it applied while behind (not after the last, which reached the head),
/// and applies the same batches, each event once.
async fn a_catch_up_that_yields_to_commands_applies_the_same_batches(db: TestDb) {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let appends: AppendCount = Arc::new(move || count.fetch_add(1, Ordering::Relaxed));
    let (batches, pauses) = catch_up_batches_beside(db, 350, Duration::from_secs(60), Some(appends)).await;
    assert_eq!(batches, [10, 10, 40, 40, 100, 100, 50]);
    assert_eq!(pauses, [true, true, true, true, true, true, false]);
}

on_both_backends!(a_query_waiting_for_a_position_cuts_the_views_pause_at_the_head_short);

async fn a_query_waiting_for_a_position_cuts_the_views_pause_at_the_head_short(db: TestDb) {
    // After a batch at the head, a worker lets new events gather for ten minutes here.
    let app =
        TestApp::start_with(config(&db, &[("STORMING_WORKER_COALESCE_MS", "600000")]), ServeOptions { workers: true })
            .await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let admin = app.token("auditor", &[Role::Admin]);
    let book = json!({"title": "Dune", "rental_fee": 1000});
    let registered = app.post(Some(&manager), "/commands/book-rental/books", Some(book)).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    // The first events after a quiet spell are read at once: rental_status has applied a batch,
    // and pauses now (so the shelving that follows is not in its view).
    app.eventually("rental_status applied its first batch", || async {
        let views = app.get(&admin, "/admin/projections").await.body;
        (worker(&views, "rental_status")["position"].as_i64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    let rent = json!({"book_id": registered.id()});
    let rented = app
        .eventually("the shelving policy shelved the copy", || async {
            let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(rent.clone())).await;
            (rented.status == StatusCode::CREATED).then_some(rented)
        })
        .await;
    let unhurried = app.get(&kim, &format!("/queries/book-rental/rentals/{}", rented.id())).await;
    assert_eq!(unhurried.status, StatusCode::NOT_FOUND, "a reader that asks for no position hurries no one");

    // Without the hurry this waits its 5 s and answers 503: the worker would sleep ten minutes.
    let status = app
        .get(&kim, &format!("/queries/book-rental/rentals/{}?min_position={}", rented.id(), rented.position()))
        .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.body["status"], "RENTED");
    app.stop().await;
}

on_both_backends!(catch_up_batches_that_take_longer_than_the_hold_stay_small);

async fn catch_up_batches_that_take_longer_than_the_hold_stay_small(db: TestDb) {
    assert_eq!(catch_up_batches_sized_to(db, 100, Duration::from_nanos(1)).await, [10; 10]);
}

on_both_backends!(a_crash_mid_batch_leaves_nothing_of_the_batch_and_it_is_applied_once_after);

async fn a_crash_mid_batch_leaves_nothing_of_the_batch_and_it_is_applied_once_after(db: TestDb) {
    let database = log_with_events(&db, 300).await;
    let counter = Arc::new(Counter { crash_at: Some(150), crashed: AtomicBool::new(false) });
    let settings = WorkerSettings { batch_size: 100, ..WorkerSettings::default() };
    let mut worker = counter_worker(&database, counter, "only", settings);
    assert_eq!(step(&mut worker).await.unwrap(), Step::Applied(100));
    assert!(step(&mut worker).await.is_err(), "the second batch crashes at position 150");
    assert_eq!(times_applied(&database).await, (100, 0), "nothing of the crashed batch is visible");

    // A new worker (the restarted process) resumes from the checkpoint.
    let mut restarted = counter_worker(
        &database,
        Arc::new(Counter { crash_at: None, crashed: AtomicBool::new(true) }),
        "only",
        settings,
    );
    while step(&mut restarted).await.unwrap() != Step::CaughtUp {}
    assert_eq!(times_applied(&database).await, (300, 0), "the batch applied once after the restart");
    database.close().await;
}

/// A policy that acts on the events of one stream only, and remembers where it acted.
struct OneStreamPolicy {
    stream: &'static str,
    acted: std::sync::Mutex<Vec<i64>>,
}

#[async_trait]
impl storming_projections::Policy for OneStreamPolicy {
    fn name(&self) -> &'static str {
        "test.one_stream_policy"
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        event.aggregate_id == self.stream
    }

    async fn react(&self, event: &RecordedEvent, _later: &[RecordedEvent]) -> Result<(), BoxError> {
        if event.aggregate_id == self.stream {
            self.acted.lock().unwrap().push(event.position);
        }
        Ok(())
    }
}

on_both_backends!(a_policy_stores_its_checkpoint_when_it_acts_and_with_its_lease_otherwise);

/// Batches a policy ignores cost no transaction: the checkpoint moves in memory, is stored with the
/// next lease renewal (here: on the way out), and never ahead of what the policy has done.
async fn a_policy_stores_its_checkpoint_when_it_acts_and_with_its_lease_otherwise(db: TestDb) {
    let database = log_with_events(&db, 500).await;
    let policy = Arc::new(OneStreamPolicy { stream: "stream-2", acted: Default::default() });
    let source = Arc::new(LogSource(GlobalLog::new(&database)));
    let (_, wake) = watch::channel(0);
    let settings = WorkerSettings { batch_size: 100, lease_ttl: Duration::from_secs(60), ..WorkerSettings::default() };
    let mut worker = Worker::policy(policy.clone(), source, database.read_side.clone(), wake, settings);
    let stored = || async {
        storming_projections::runtime::checkpoint(&database.read_side, "test.one_stream_policy")
            .await
            .unwrap()
            .cursor
            .position
    };

    assert_eq!(step(&mut worker).await.unwrap(), Step::Applied(100));
    assert_eq!(step(&mut worker).await.unwrap(), Step::Applied(100));
    assert_eq!(stored().await, 0, "two ignored batches, no checkpoint written");
    assert_eq!(step(&mut worker).await.unwrap(), Step::Applied(100));
    let acted = policy.acted.lock().unwrap().clone();
    assert_eq!(acted.len(), 100, "the policy acted on stream-2");
    assert_eq!(stored().await, *acted.last().unwrap(), "stored at once after acting");
    assert_eq!(step(&mut worker).await.unwrap(), Step::Applied(100));
    assert_eq!(step(&mut worker).await.unwrap(), Step::Applied(100));
    assert_eq!(step(&mut worker).await.unwrap(), Step::CaughtUp);
    assert_eq!(stored().await, *acted.last().unwrap(), "the ignored tail waits for the lease renewal");

    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(worker.run(shutdown));
    stop.send(true).unwrap();
    running.await.unwrap();
    let head = GlobalLog::new(&database).head().await.unwrap();
    assert_eq!(stored().await, head, "stored on the way out");
    assert_eq!(policy.acted.lock().unwrap().len(), 100, "nothing acted on twice");
    database.close().await;
}
