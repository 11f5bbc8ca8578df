//! The pools hand out connections without pinging each one first (a round trip per statement),
//! yet a PostgreSQL connection that died while idle (the database restarted) never reaches a
//! caller. The read side's commits do not wait for the disk; the store's, which acknowledge
//! commands, do.

use sqlx::{Connection, PgConnection};
use storming_infra::db::{Database, StorePool, PING_WHEN_IDLE_FOR};

use crate::support::TestDb;

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
