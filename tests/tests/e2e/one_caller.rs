//! ADR 41: on SQLite, while the requests come one at a time over one connection, a command's
//! append is stored on its request's own thread; with another request in flight, or another
//! connection's request recent, the writer's thread stores it, as it does when another process
//! holds the log's write lock.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use storming_api::auth::Role;
use storming_infra::callers::RECENT;
use storming_infra::db::StorePool;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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
    // The caller's connection is seen at its first request, and a connection's first request
    // after another's makes the requests shared for a while.
    let mut lone = LoneCaller::connect(&app.base, &kim).await;
    assert_eq!(lone.send("GET", "/healthz", None).await.0, StatusCode::OK);
    tokio::time::sleep(RECENT).await;

    // Act and assert: one caller, one request at a time: each command's append (a rent's payment
    // and rental together) on its request's thread.
    let on_request = group.stored_on_request();
    let (status, rented) = lone.send("POST", "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(status, StatusCode::CREATED, "{rented}");
    let (status, returned) = lone
        .send("POST", &format!("/commands/book-rental/rentals/{}/return", rented["id"].as_str().unwrap()), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{returned}");
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
    let (status, rented) = lone.send("POST", "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(status, StatusCode::CREATED, "{rented}");
    tokio::time::sleep(RECENT).await;
    let (status, returned) = lone
        .send("POST", &format!("/commands/book-rental/rentals/{}/return", rented["id"].as_str().unwrap()), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{returned}");
    assert_eq!((group.stored_on_request(), group.turns()), (on_request, turns + 2));

    // That request gone, and the other connection's last one long ago: the request's thread again.
    drop(other);
    wait_until(|| callers.in_flight() == 0).await;
    let (status, rented) = lone.send("POST", "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(status, StatusCode::CREATED, "{rented}");
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

/// A lone caller: one kept-alive HTTP/1.1 connection, its requests sent one after another. (The
/// test app's client pools its connections, and a request sent before the last one's connection
/// is back in the pool goes over a new one, which the server rightly takes for another caller.)
struct LoneCaller {
    connection: BufReader<TcpStream>,
    token: String,
}

impl LoneCaller {
    async fn connect(base: &str, token: &str) -> Self {
        let stream = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
        Self { connection: BufReader::new(stream), token: token.to_string() }
    }

    /// The answer's status and JSON body (`Null` when it has none).
    async fn send(&mut self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let content_type = if body.is_empty() { "" } else { "content-type: application/json\r\n" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: storming\r\nauthorization: Bearer {}\r\n{content_type}content-length: {}\r\n\r\n{body}",
            self.token,
            body.len()
        );
        self.connection.get_mut().write_all(request.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.connection.read_line(&mut line).await.unwrap();
        let status = line.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
        let mut length = None;
        loop {
            line.clear();
            self.connection.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok();
                }
            }
        }
        let mut answer = vec![0; length.expect("an answer with a content-length")];
        self.connection.read_exact(&mut answer).await.unwrap();
        (StatusCode::from_u16(status).unwrap(), serde_json::from_slice(&answer).unwrap_or(Value::Null))
    }
}

async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
