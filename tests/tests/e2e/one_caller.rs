//! ADR 41: on SQLite, while the requests come one at a time over one connection, a command's
//! append is stored on its request's own thread; with another request in flight, or another
//! connection's request recent, the writer's thread stores it, as it does when another process
//! holds the log's write lock.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use storming_api::auth::Role;
use storming_infra::callers::RECENT;
use storming_infra::db::StorePool;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{TestApp, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_callers_appends_are_stored_on_its_requests_thread_and_no_one_elses() {
    // Arrange: a shelved book; from here on no policy appends (a rent and a return start none).
    let db = TestDb::sqlite();
    let app = TestApp::start(&db).await;
    let group = app.state().db.group_commit.clone();
    let callers = app.state().db.callers.clone().expect("SQLite tells who calls");
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1000).await;
    tokio::time::sleep(RECENT).await;

    // Act and assert: one caller, one request at a time: each command's append (a rent's payment
    // and rental together) on its request's thread.
    let on_request = group.stored_on_request();
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    let returned = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/return", rented.id()), None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);
    assert_eq!(group.stored_on_request() - on_request, 2);

    // Another connection's request in flight (its body not all sent yet): the next rent's append
    // goes to the writer's thread, and so does the return's a while later, the other request
    // still in flight.
    let mut other = TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /commands/book-rental/rentals HTTP/1.1\r\nhost: storming\r\nauthorization: Bearer {kim}\r\n\
         content-type: application/json\r\ncontent-length: 64\r\n\r\n{{"
    );
    other.write_all(head.as_bytes()).await.unwrap();
    wait_until(|| callers.in_flight() == 1).await;
    let (on_request, turns) = (group.stored_on_request(), group.turns());
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    tokio::time::sleep(RECENT).await;
    let returned = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/return", rented.id()), None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);
    assert_eq!((group.stored_on_request(), group.turns()), (on_request, turns + 2));

    // That request gone, and the other connection's last one long ago: the request's thread again.
    drop(other);
    wait_until(|| callers.in_flight() == 0).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    assert_eq!(group.stored_on_request() - on_request, 1);
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    let counted = format!("storming_event_store_turns_on_request_thread_total {}", group.stored_on_request());
    assert!(metrics.contains(&counted), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_callers_append_waits_for_another_process_write_lock_on_the_writers_thread() {
    // Arrange: one caller, and another connection (another process, say) holding the log's write
    // lock.
    let db = TestDb::sqlite();
    let app = TestApp::start(&db).await;
    let group = app.state().db.group_commit.clone();
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1000).await;
    tokio::time::sleep(RECENT).await;
    let StorePool::Sqlite(pool) = &app.state().db.store else { unreachable!("a SQLite test") };
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *other).await.unwrap();

    // Act: the rent takes the writer's turn and finds the lock taken; then the lock is let go.
    let (on_request, turns) = (group.stored_on_request(), group.turns());
    let rent = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id})));
    let let_go = async {
        wait_until(|| group.turns() == turns + 1).await;
        sqlx::query("COMMIT").execute(&mut *other).await.unwrap();
    };
    let (rented, ()) = tokio::join!(rent, let_go);
    drop(other); // back to its pool, which the server closes when it stops

    // Assert: stored by the writer's thread, which waited for the lock.
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    assert_eq!(group.stored_on_request(), on_request);
    app.stop().await;
}

async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
