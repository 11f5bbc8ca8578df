//! The pools hand out connections without pinging each one first (a round trip per statement),
//! yet a PostgreSQL connection that died while idle (the database restarted) never reaches a
//! caller. The queries' kept connections are lent again as they are, with no ping on their return,
//! but never after their work failed or was cancelled, nor past the pool's maximum lifetime. The
//! read side's commits do not wait for the disk; the store's, which acknowledge commands, do.

use std::time::Duration;

use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Connection, PgConnection};
use storming_infra::db::{Database, StorePool, PING_WHEN_IDLE_FOR};
use storming_infra::kept::KeptConnections;

use reqwest::StatusCode;
use serde_json::json;
use storming_api::auth::Role;

use crate::on_both_backends;
use crate::support::{TestApp, TestDb};

const ONE: &str = "SELECT 1";
const BACKEND: &str = "SELECT CAST(pg_backend_pid() AS bigint)";

async fn terminate(db: &TestDb, backend: i64) {
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let terminated: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1::int)").bind(backend).fetch_one(&mut admin).await.unwrap();
    assert!(terminated, "backend {backend} terminated");
    admin.close().await.unwrap();
}

on_both_backends!(the_queries_connections_are_kept_between_uses_and_no_more_are_lent_than_the_pool_holds);

async fn the_queries_connections_are_kept_between_uses_and_no_more_are_lent_than_the_pool_holds(db: TestDb) {
    let database = Database::connect(&db.url, 2).await.unwrap();
    let queries = &database.queries;
    let mut first = queries.lend().await.unwrap();
    let second = queries.lend().await.unwrap();
    sqlx::query(ONE).execute(&mut *first).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), queries.lend()).await.is_err(),
        "a third borrower waits while both connections are lent"
    );
    first.keep();
    assert_eq!(queries.idle_count(), 1, "a connection whose work finished is kept");
    let mut third = tokio::time::timeout(Duration::from_secs(5), queries.lend())
        .await
        .expect("the kept connection is lent to the next borrower")
        .unwrap();
    assert_eq!(queries.idle_count(), 0);
    sqlx::query(ONE).execute(&mut *third).await.unwrap();
    third.keep();
    drop(second);
    assert_eq!(queries.idle_count(), 1, "a connection dropped without keep goes back through sqlx's pool");
    database.close().await;
}

on_both_backends!(closing_the_kept_connections_waits_for_the_lent_ones_and_they_are_given_back);

async fn closing_the_kept_connections_waits_for_the_lent_ones_and_they_are_given_back(db: TestDb) {
    let database = Database::connect(&db.url, 2).await.unwrap();
    let mut idle = database.queries.lend().await.unwrap();
    sqlx::query(ONE).execute(&mut *idle).await.unwrap();
    idle.keep();
    let mut lent = database.queries.lend().await.unwrap();
    let queries = database.queries.clone();
    let closing = tokio::spawn(async move { queries.close().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!closing.is_finished(), "a lent connection is still out");
    sqlx::query(ONE).execute(&mut *lent).await.unwrap();
    lent.keep();
    tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .expect("kept after the close began, the connection went back to the pool, which closed")
        .unwrap();
    assert!(database.queries.lend().await.is_err(), "nothing is lent once closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_that_outlived_the_pools_lifetime_is_handed_back_not_kept() {
    let db = TestDb::sqlite();
    Database::connect(&db.url, 1).await.unwrap().close().await;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .max_lifetime(Duration::from_secs(1))
        .connect(&db.url)
        .await
        .unwrap();
    let kept = KeptConnections::new(pool);
    // A temporary table exists on its own connection only: it tells the connections apart.
    let marked = "SELECT COUNT(*) FROM sqlite_temp_master WHERE name = 'marker'";
    let mut connection = kept.lend().await.unwrap();
    sqlx::query("CREATE TEMP TABLE marker (x)").execute(&mut *connection).await.unwrap();
    connection.keep();
    let mut connection = kept.lend().await.unwrap();
    assert_eq!(sqlx::query_scalar::<_, i64>(marked).fetch_one(&mut *connection).await.unwrap(), 1, "young: kept");
    connection.keep();

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut connection = kept.lend().await.unwrap();
    sqlx::query(ONE).execute(&mut *connection).await.unwrap();
    connection.keep();
    let mut connection = kept.lend().await.unwrap();
    assert_eq!(
        sqlx::query_scalar::<_, i64>(marked).fetch_one(&mut *connection).await.unwrap(),
        0,
        "past the pool's lifetime the connection was handed back, and the pool closed it"
    );
    connection.keep();
    kept.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_is_not_lent_again_after_its_work_failed_or_was_cancelled() {
    let Some(db) = TestDb::postgres().await else { return };
    let database = Database::connect(&db.url, 2).await.unwrap();
    let queries = &database.queries;
    let mut connection = queries.lend().await.unwrap();
    let first: i64 = sqlx::query_scalar(BACKEND).fetch_one(&mut *connection).await.unwrap();
    connection.keep();
    let mut connection = queries.lend().await.unwrap();
    let again: i64 = sqlx::query_scalar(BACKEND).fetch_one(&mut *connection).await.unwrap();
    assert_eq!(again, first, "the same connection, kept");

    // Its backend dies while it is lent: the work fails, and `?` drops the connection unkept.
    terminate(&db, first).await;
    assert!(sqlx::query(ONE).execute(&mut *connection).await.is_err(), "a terminated backend answers nothing");
    drop(connection);
    let mut connection = queries.lend().await.unwrap();
    let replaced: i64 = sqlx::query_scalar(BACKEND).fetch_one(&mut *connection).await.unwrap();
    assert_ne!(replaced, first, "the broken connection was not lent again");

    // A statement cancelled halfway (its future dropped): the connection is not kept either.
    let cancelled =
        tokio::time::timeout(Duration::from_millis(100), sqlx::query("SELECT pg_sleep(1)").execute(&mut *connection));
    assert!(cancelled.await.is_err(), "cancelled");
    drop(connection);
    assert_eq!(queries.idle_count(), 0);
    let mut connection = queries.lend().await.unwrap();
    let answered: i64 = sqlx::query_scalar("SELECT CAST(7 AS bigint)").fetch_one(&mut *connection).await.unwrap();
    assert_eq!(answered, 7, "the next borrower reads its own answer, not the cancelled statement's");
    connection.keep();
    database.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_closed_while_idle_is_replaced_before_a_borrower_gets_it() {
    let Some(db) = TestDb::postgres().await else { return };
    let database = Database::connect(&db.url, 2).await.unwrap();
    let mut connection = database.queries.lend().await.unwrap();
    let first: i64 = sqlx::query_scalar(BACKEND).fetch_one(&mut *connection).await.unwrap();
    connection.keep();
    terminate(&db, first).await;
    tokio::time::sleep(PING_WHEN_IDLE_FOR + PING_WHEN_IDLE_FOR / 4).await;

    let mut connection = database.queries.lend().await.unwrap();
    let replaced: i64 = sqlx::query_scalar(BACKEND).fetch_one(&mut *connection).await.unwrap();
    assert_ne!(replaced, first);
    connection.keep();
    database.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_connection_closed_while_idle_is_replaced_before_a_caller_gets_it() {
    let Some(db) = TestDb::postgres().await else { return };
    let database = Database::connect(&db.url, 2).await.unwrap();
    let StorePool::Postgres(store) = &database.store else { unreachable!("a PostgreSQL URL") };
    let one = "SELECT 1::bigint";
    sqlx::query_scalar::<_, i64>(one).fetch_one(store).await.unwrap();
    sqlx::query_scalar::<_, i64>(one).fetch_one(&database.read_side).await.unwrap();

    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let terminated: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS killed",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(terminated >= 2, "the pools' idle connections were closed: {terminated}");
    admin.close().await.unwrap();
    tokio::time::sleep(PING_WHEN_IDLE_FOR + PING_WHEN_IDLE_FOR / 4).await;

    assert_eq!(sqlx::query_scalar::<_, i64>(one).fetch_one(store).await.unwrap(), 1);
    assert_eq!(sqlx::query_scalar::<_, i64>(one).fetch_one(&database.read_side).await.unwrap(), 1);
}

#[tokio::test]
async fn on_postgres_only_the_read_side_commits_without_waiting_for_the_disk() {
    let Some(db) = TestDb::postgres().await else { return };
    let database = Database::connect(&db.url, 2).await.unwrap();
    let StorePool::Postgres(store) = &database.store else { unreachable!("a PostgreSQL URL") };
    let setting = "SELECT current_setting('synchronous_commit')";
    assert_eq!(sqlx::query_scalar::<_, String>(setting).fetch_one(store).await.unwrap(), "on");
    assert_eq!(sqlx::query_scalar::<_, String>(setting).fetch_one(&database.read_side).await.unwrap(), "off");
}

#[tokio::test]
async fn on_sqlite_only_the_read_side_commits_without_waiting_for_the_disk() {
    let db = TestDb::sqlite();
    let database = Database::connect(&db.url, 2).await.unwrap();
    let StorePool::Sqlite(store) = &database.store else { unreachable!("a SQLite URL") };
    // 2 = FULL, 1 = NORMAL
    assert_eq!(sqlx::query_scalar::<_, i64>("PRAGMA synchronous").fetch_one(store).await.unwrap(), 2);
    assert_eq!(sqlx::query_scalar::<_, i64>("PRAGMA synchronous").fetch_one(&database.read_side).await.unwrap(), 1);
}

on_both_backends!(on_sqlite_queries_read_the_file_in_place_on_postgres_a_kept_connection);

/// On SQLite a query reads its view on a connection of the process's own, stepped on the request's
/// thread (ADR 19), and sees a command's effect once its view has: the same answers as on
/// PostgreSQL, where the queries' kept connections serve.
async fn on_sqlite_queries_read_the_file_in_place_on_postgres_a_kept_connection(db: TestDb) {
    let app = TestApp::start(&db).await;
    let kim = app.token("kim", &[Role::Customer]);
    let registered = app.post(Some(&kim), "/commands/customers", Some(json!({"name": "Kim Minji"}))).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    let page = app.get(&kim, &format!("/queries/my-page?min_position={}", registered.position())).await;
    assert_eq!((page.status, &page.body["profile"]["name"]), (StatusCode::OK, &json!("Kim Minji")));
    let state = app.state();
    match &state.sqlite_reads {
        Some(reads) => {
            assert!(!db.is_postgres());
            assert_eq!(reads.idle_count(), 1, "the query's connection is kept for the next one");
            assert_eq!(state.db.queries.idle_count(), 0, "no query took a connection of the Any pool");
        }
        None => {
            assert!(db.is_postgres(), "a SQLite file is read in place");
            assert!(state.db.queries.idle_count() >= 1);
        }
    }
    app.stop().await;
}
