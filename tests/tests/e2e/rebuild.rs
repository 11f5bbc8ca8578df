//! Zero-downtime rebuilds: a view rebuilt from the log into a new generation is identical, row
//! for row, to the one built incrementally; queries answer throughout; policies do not act again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;
use storming_api::auth::Role;
use storming_api::{workers, ServeOptions};
use storming_infra::db::Database;
use storming_projections::my_page::MyPage;
use storming_projections::runtime::generations::{self, table};
use storming_projections::{Step, Worker, WorkerSettings};

use crate::on_both_backends;
use crate::support::{config, TestApp, TestDb};

/// Books, customers and rentals in every state, so that every view has rows to rebuild.
async fn a_busy_shop(app: &TestApp) -> Vec<String> {
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let lee = app.token("lee", &[Role::Customer]);
    app.post(Some(&kim), "/commands/customers", Some(json!({"name": "Kim"}))).await;
    let mut rentals = Vec::new();
    for (title, fee) in [("Dune", 1500), ("Emma", 900), ("Ulysses", 2100)] {
        let book_id = app.shelved_book(&manager, title, fee).await;
        let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
        rentals.push(rented.id());
        let action = if title == "Emma" { "cancel" } else { "return" };
        app.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/{action}", rented.id()), None).await;
        let again = app.post(Some(&lee), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
        rentals.push(again.id());
    }
    rentals
}

async fn caught_up(app: &TestApp) {
    let admin = app.token("auditor", &[Role::Admin]);
    app.eventually("every worker caught up and no rebuild under way", || async {
        let views = app.get(&admin, "/admin/projections").await.body;
        let items = views["items"].as_array()?.clone();
        items.iter().all(|view| view["lag_events"] == 0 && view["rebuilding"].is_null()).then_some(())
    })
    .await;
}

/// What the views answer, through the API.
async fn answers(app: &TestApp, rentals: &[String]) -> Vec<Value> {
    let manager = app.token("librarian", &[Role::BookManager]);
    let admin = app.token("auditor", &[Role::Admin]);
    let mut answers = vec![
        app.get(&manager, "/queries/book-rental/books?limit=500").await.body,
        app.get(&manager, "/queries/book-rental/rentals?limit=500").await.body,
        app.get(&app.token("kim", &[Role::Customer]), "/queries/my-page").await.body,
        app.get(&app.token("lee", &[Role::Customer]), "/queries/my-page").await.body,
    ];
    for rental in rentals {
        answers.push(app.get(&admin, &format!("/queries/payments?reference_id={rental}")).await.body);
    }
    answers
}

on_both_backends!(a_rebuilt_view_equals_the_incremental_one_and_queries_answer_throughout);

async fn a_rebuilt_view_equals_the_incremental_one_and_queries_answer_throughout(db: TestDb) {
    let app = TestApp::start(&db).await;
    let admin = app.token("auditor", &[Role::Admin]);
    let rentals = a_busy_shop(&app).await;
    caught_up(&app).await;
    let before = answers(&app, &rentals).await;
    let head = app.state().log.head().await.unwrap();

    // Queries keep coming while the views are rebuilt.
    let done = Arc::new(AtomicBool::new(false));
    let (asked, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (base, done, asked, failed) = (app.base.clone(), done.clone(), asked.clone(), failed.clone());
        let token = app.token("librarian", &[Role::BookManager]);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !done.load(Ordering::SeqCst) {
                for path in ["/queries/book-rental/books", "/queries/book-rental/rentals"] {
                    let status =
                        client.get(format!("{base}{path}")).bearer_auth(&token).send().await.map(|r| r.status());
                    asked.fetch_add(1, Ordering::SeqCst);
                    if status.ok() != Some(StatusCode::OK) {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };

    let names: Vec<&str> = workers::projections().iter().map(|projection| projection.name()).collect();
    for name in &names {
        let started = app.post(Some(&admin), &format!("/admin/projections/{name}/rebuild"), None).await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
        assert_eq!(started.body["generation"], 2);
    }
    app.eventually("every view switched to its rebuilt generation", || async {
        let views = app.get(&admin, "/admin/projections").await.body;
        let items = views["items"].as_array()?.clone();
        let projections = items.iter().filter(|view| view["kind"] == "projection");
        projections
            .clone()
            .all(|view| view["generation"].as_i64() >= Some(2) && view["rebuilding"].is_null())
            .then_some(())
    })
    .await;
    caught_up(&app).await;
    done.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert!(asked.load(Ordering::SeqCst) > 0);
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no query failed during the rebuild");

    // Row for row: generation 1 (kept for a grace period) equals generation 2.
    let pool = &app.state().db.read_side;
    for projection in workers::projections() {
        for base in projection.tables() {
            let (old, new) = (table(base, 1), table(base, 2));
            for (left, right) in [(&old, &new), (&new, &old)] {
                let sql = format!(
                    "SELECT COUNT(*) AS differing FROM (SELECT * FROM {left} EXCEPT SELECT * FROM {right}) AS diff"
                );
                let differing: i64 = sqlx::query(&sql).fetch_one(pool).await.unwrap().try_get("differing").unwrap();
                assert_eq!(differing, 0, "{left} and {right} differ");
            }
            let count = |name: String| async move {
                sqlx::query(&format!("SELECT COUNT(*) AS n FROM {name}"))
                    .fetch_one(pool)
                    .await
                    .unwrap()
                    .try_get::<i64, _>("n")
                    .unwrap()
            };
            let rows = count(new.clone()).await;
            assert!(rows > 0, "{new} has rows");
            assert_eq!(count(old.clone()).await, rows);
        }
    }
    assert_eq!(answers(&app, &rentals).await, before, "the API answers as before");
    assert_eq!(app.state().log.head().await.unwrap(), head, "no policy acted again: not one event was written");

    // Once switched, another rebuild is accepted; asked again while that one builds, refused. (It
    // cannot switch while generation 1 is kept for its grace period, so the second ask always
    // finds it building. Asked during the first rebuild, the answer depended on how fast it was,
    // and an accepted third generation waited for generation 1 to be dropped, which the
    // comparison above reads.)
    let third = app.post(Some(&admin), "/admin/projections/rental_status/rebuild", None).await;
    assert_eq!(third.status, StatusCode::ACCEPTED, "{}", third.body);
    assert_eq!(third.body["generation"], 3);
    let again = app.post(Some(&admin), "/admin/projections/rental_status/rebuild", None).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    app.stop().await;
}

on_both_backends!(a_new_version_of_a_view_is_rebuilt_on_start);

async fn a_new_version_of_a_view_is_rebuilt_on_start(db: TestDb) {
    let app = TestApp::start(&db).await;
    let rentals = a_busy_shop(&app).await;
    caught_up(&app).await;
    let before = answers(&app, &rentals).await;
    // As if generation 1 had been built by an older version of the code.
    sqlx::query("UPDATE projection_generations SET active_version = 0 WHERE name = 'rental_status'")
        .execute(&app.state().db.read_side)
        .await
        .unwrap();
    app.stop().await;

    let app = TestApp::start(&db).await;
    let admin = app.token("auditor", &[Role::Admin]);
    app.eventually("rental_status is rebuilt at version 1", || async {
        let views = app.get(&admin, "/admin/projections").await.body;
        let items = views["items"].as_array()?.clone();
        let rentals = items.into_iter().find(|view| view["name"] == "rental_status")?;
        (rentals["generation"] == 2 && rentals["version"] == 1 && rentals["rebuilding"].is_null()).then_some(())
    })
    .await;
    caught_up(&app).await;
    assert_eq!(answers(&app, &rentals).await, before);
    app.stop().await;
}

on_both_backends!(a_process_leaves_a_generation_built_by_another_version_alone);

async fn a_process_leaves_a_generation_built_by_another_version_alone(db: TestDb) {
    // Arrange: my_page being rebuilt by a process of another version (a release rolling out), whose
    // tables this code's writes need not fit.
    let app = TestApp::start(&db).await;
    a_busy_shop(&app).await;
    caught_up(&app).await;
    app.stop().await;
    let database = Database::connect(&db.url, 2).await.unwrap();
    assert_eq!(generations::start_rebuild(&database.read_side, &MyPage).await.unwrap(), 2);
    sqlx::query("UPDATE projection_generations SET building_version = 99 WHERE name = 'my_page'")
        .execute(&database.read_side)
        .await
        .unwrap();

    // Act: this process starts and takes a command.
    let app = TestApp::start(&db).await;
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&app.token("librarian", &[Role::BookManager]), "Middlemarch", 1200).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;

    // Assert: it keeps its own generation up, and never worked on the other version's.
    let page = app.get(&kim, &format!("/queries/my-page?min_position={}", rented.position())).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["items"][0]["id"], rented.id().as_str());
    let pool = &database.read_side;
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM my_page_items_g2").fetch_one(pool).await.unwrap().get("n");
    assert_eq!(rows, 0, "no row written into the other version's tables");
    let checkpoint = sqlx::query("SELECT position FROM checkpoints WHERE name = 'my_page@g2'");
    assert!(checkpoint.fetch_optional(pool).await.unwrap().is_none(), "no checkpoint of a worker on them");
    app.stop().await;
    database.close().await;
}

on_both_backends!(storming_replay_rebuilds_a_view_and_returns_once_it_is_active);

async fn storming_replay_rebuilds_a_view_and_returns_once_it_is_active(db: TestDb) {
    let app = TestApp::start(&db).await;
    let rentals = a_busy_shop(&app).await;
    caught_up(&app).await;
    let before = answers(&app, &rentals).await;
    app.stop().await;

    // Queries are served by an API without workers; `replay` runs the rebuild itself.
    let api = TestApp::start_with(config(&db, &[]), ServeOptions { workers: false }).await;
    let generation = storming_api::replay(&config(&db, &[]), "my_page").await.unwrap();
    assert_eq!(generation, 2);
    assert_eq!(answers(&api, &rentals).await, before);
    api.stop().await;
}

on_both_backends!(a_view_gets_its_query_indexes_once_caught_up_and_a_rebuilt_one_goes_live_with_them);

async fn a_view_gets_its_query_indexes_once_caught_up_and_a_rebuilt_one_goes_live_with_them(db: TestDb) {
    let app = TestApp::start(&db).await;
    let admin = app.token("auditor", &[Role::Admin]);
    a_busy_shop(&app).await;
    caught_up(&app).await;
    let pool = &app.state().db.read_side;
    let wanted = |generation: i64| {
        vec![format!("rental_status_g{generation}_book"), format!("rental_status_g{generation}_customer")]
    };
    app.eventually("generation 1 has its query indexes", || async {
        let names = query_indexes_of(&db, pool, "rental_status_g1").await;
        (names == wanted(1)).then_some(())
    })
    .await;

    let started = app.post(Some(&admin), "/admin/projections/rental_status/rebuild", None).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    app.eventually("rental_status switched to generation 2", || async {
        let active: i64 = sqlx::query("SELECT active FROM projection_generations WHERE name = 'rental_status'")
            .fetch_one(pool)
            .await
            .ok()?
            .try_get("active")
            .ok()?;
        (active == 2).then_some(())
    })
    .await;
    assert_eq!(query_indexes_of(&db, pool, "rental_status_g2").await, wanted(2), "live only with its indexes");
    app.stop().await;
}

/// The names of `table`'s indexes that are not its primary key or another constraint's, sorted.
async fn query_indexes_of(db: &TestDb, pool: &sqlx::AnyPool, table: &str) -> Vec<String> {
    let sql = if db.is_postgres() {
        "SELECT indexname::text AS name FROM pg_indexes WHERE tablename = $1 AND indexname NOT LIKE '%_pkey'"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL"
    };
    let rows = sqlx::query(sql).bind(table).fetch_all(pool).await.unwrap();
    let mut names: Vec<String> = rows.iter().map(|row| row.try_get("name").unwrap()).collect();
    names.retain(|name| !name.ends_with("_payment")); // the one its own writes need, made with the table
    names.sort();
    names
}

/// Every row of `table`, as text, sorted by all its columns (rows that tie on the first columns
/// come back from the database in the order they were last written, which batches may change).
async fn rows_of(pool: &sqlx::AnyPool, table: &str) -> Vec<Vec<String>> {
    let rows = sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(pool).await.unwrap();
    let mut rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|column| match row.try_get::<Option<String>, _>(column) {
                    Ok(text) => format!("{text:?}"),
                    Err(_) => format!("{:?}", row.try_get::<Option<i64>, _>(column).unwrap()),
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

on_both_backends!(a_view_applies_a_batch_as_it_applies_its_events_one_by_one);

/// Views that send a batch's writes together (`runtime::batch::Writes`) must end where event by
/// event would: every view is built twice from the same log, in batches of 1 and of 500.
async fn a_view_applies_a_batch_as_it_applies_its_events_one_by_one(db: TestDb) {
    let app = TestApp::start(&db).await;
    a_busy_shop(&app).await;
    caught_up(&app).await;
    let state = app.state();
    let pool = &state.db.read_side;
    for projection in workers::projections() {
        let mut built = Vec::new();
        for (generation, batch_size) in [(901, 1), (902, 500)] {
            sqlx::raw_sql(&projection.schema().replace("{g}", &generation.to_string())).execute(pool).await.unwrap();
            let source = Arc::new(workers::LogSource(state.log.clone()));
            let settings = WorkerSettings { batch_size, catch_up_batch_size: batch_size, ..WorkerSettings::default() };
            let (_, wake) = tokio::sync::watch::channel(0);
            let mut worker =
                Worker::projection_generation(projection.clone(), generation, source, pool.clone(), wake, settings);
            while worker.step().await.unwrap() != Step::CaughtUp {}
            let mut rows = Vec::new();
            for base in projection.tables() {
                rows.push(rows_of(pool, &table(base, generation)).await);
            }
            built.push(rows);
        }
        assert!(built[0].iter().any(|rows| !rows.is_empty()), "{} has rows", projection.name());
        assert_eq!(built[0], built[1], "{}: batches of 1 and of 500 differ", projection.name());
    }
    let rentals = rows_of(pool, "rental_status_g902").await;
    for wanted in ["\"RETURNED\"", "\"CANCELLED\"", "\"REFUNDED\""] {
        assert!(rentals.iter().flatten().any(|value| value.contains(wanted)), "a rental with {wanted}: {rentals:?}");
    }
    app.stop().await;
}
