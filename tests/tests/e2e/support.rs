//! The harness: a fresh database per test (a temp SQLite file, or a new PostgreSQL database that
//! is dropped afterwards), the real server on a real loopback listener, and an HTTP client.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;
use storming_api::auth::{Role, TokenKeys};
use storming_api::{ServeOptions, Server};
use storming_infra::config::{Config, Secret};
use storming_infra::db::{Database, StorePool};
use tokio::time::Instant;

const JWT_SECRET: &str = "end-to-end-test-secret";
/// How long a test waits for an eventually consistent view before it fails.
const EVENTUALLY: Duration = Duration::from_secs(60);

/// Runs a scenario `async fn(TestDb)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$scenario($crate::support::TestDb::sqlite()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                if let Some(db) = $crate::support::TestDb::postgres().await {
                    super::$scenario(db).await
                }
            }
        }
    };
}

/// A database that lives as long as the test.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Directory(PathBuf),
    Database { admin_url: String, name: String },
}

impl TestDb {
    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Database { .. })
    }

    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("storming-e2e-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        Self { url: format!("sqlite://{}/storming.db", dir.display()), cleanup: Cleanup::Directory(dir) }
    }

    /// A new database on the test server; `None` (and a loud SKIPPED) when there is none, unless
    /// `STORMING_REQUIRE_POSTGRES=1`, which turns that into a failure.
    pub async fn postgres() -> Option<Self> {
        let admin_url = std::env::var("STORMING_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let required = std::env::var("STORMING_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
        let admin = match sqlx::PgPool::connect(&admin_url).await {
            Ok(pool) => pool,
            Err(error) if required => {
                panic!("STORMING_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable at {admin_url}: {error}")
            }
            Err(error) => {
                eprintln!(
                    "SKIPPED: PostgreSQL is unreachable at {admin_url} ({error}); set STORMING_TEST_DATABASE_URL"
                );
                return None;
            }
        };
        let name = format!("storming_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("creating the test database");
        admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').expect("a database URL ends in /NAME");
        Some(Self { url: format!("{base}/{name}"), cleanup: Cleanup::Database { admin_url, name } })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Directory(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime, so the async cleanup gets its own thread.
                let _ = std::thread::spawn(move || {
                    let runtime =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                    runtime.block_on(async {
                        if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&admin)
                                .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// The real server, listening on a free loopback port.
pub struct TestApp {
    server: Server,
    pub base: String,
    http: reqwest::Client,
    tokens: TokenKeys,
}

/// What an HTTP exchange returned.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    /// The `position` of a command's answer.
    pub fn position(&self) -> i64 {
        self.body["position"].as_i64().unwrap_or_else(|| panic!("no position in {}", self.body))
    }

    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_else(|| panic!("no id in {}", self.body)).to_string()
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub fn config(db: &TestDb, overrides: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = HashMap::from([
        ("STORMING_DATABASE_URL".into(), db.url.clone()),
        ("STORMING_LISTEN".into(), "127.0.0.1:0".into()),
        ("STORMING_JWT_SECRET".into(), JWT_SECRET.into()),
        ("STORMING_DB_POOL_SIZE".into(), "4".into()),
        // Tests send bursts from one caller on purpose; the limiter is tested on its own (edges.rs).
        ("STORMING_RATE_LIMIT_PER_SECOND".into(), "0".into()),
    ]);
    env.extend(overrides.iter().map(|(name, value)| (name.to_string(), value.to_string())));
    Config::from_lookup(|name| env.get(name).cloned()).expect("a valid test configuration")
}

impl TestApp {
    /// Starts the server with every worker.
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(config(db, &[]), ServeOptions { workers: true }).await
    }

    pub async fn start_with(config: Config, options: ServeOptions) -> Self {
        let server = Server::start(&config, options).await.expect("starting the server");
        let base = format!("http://{}", server.addr);
        Self { server, base, http: reqwest::Client::new(), tokens: TokenKeys::new(&Secret::new(JWT_SECRET)) }
    }

    pub fn state(&self) -> &storming_api::AppState {
        &self.server.state
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(self) {
        self.server.shutdown().await.expect("a clean shutdown");
    }

    pub fn token(&self, sub: &str, roles: &[Role]) -> String {
        self.tokens.issue(sub, roles, Duration::from_secs(600))
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: Option<Value>) -> Answer {
        self.post_keyed(token, path, body, None).await
    }

    /// A command with an `Idempotency-Key`.
    pub async fn post_keyed(&self, token: Option<&str>, path: &str, body: Option<Value>, key: Option<&str>) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.expect("a response")).await
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        answer(self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.expect("a response")).await
    }

    /// Sends a raw request body with a content type, for the edge's rejections.
    pub async fn post_raw(
        &self,
        token: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<String>,
    ) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.base)).bearer_auth(token).body(body.into());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        answer(request.send().await.expect("a response")).await
    }

    /// Polls `probe` until it yields a value, failing the test after a deadline.
    pub async fn eventually<T, F, Fut>(&self, what: &str, probe: F) -> T
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        Self::eventually_without_app(what, probe).await
    }

    /// [`TestApp::eventually`], for tests without a server.
    pub async fn eventually_without_app<T, F, Fut>(what: &str, probe: F) -> T
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// On PostgreSQL, waits until the server listens to other processes' commits, from when its
    /// cached aggregates can be known current (ADR 48); SQLite's servers never listen.
    pub async fn until_listening(&self) {
        let foreign = self.state().db.foreign.clone();
        if self.state().db.backend == storming_infra::db::Backend::Postgres {
            self.eventually("listening to other processes", || async { foreign.listening().then_some(()) }).await;
        }
    }

    /// Every event of the log, read through `/audit/events` once it has reached the log's head.
    /// (On PostgreSQL the audit, like the workers, shows a transaction only once no older one is
    /// still running anywhere in the cluster — parallel tests included.)
    pub async fn log_events(&self) -> Vec<Value> {
        let admin = self.token("auditor", &[Role::Admin]);
        let head = self.state().log.head().await.expect("the log's head");
        self.eventually("the audit reaches the head of the log", || async {
            let page = self.get(&admin, "/audit/events?limit=500").await;
            let events = page.body["items"].as_array()?.clone();
            let reached = events.last().and_then(|event| event["position"].as_i64()).unwrap_or(0);
            (reached == head).then_some(events)
        })
        .await
    }

    /// The event types of the log, in order.
    pub async fn log_types(&self) -> Vec<String> {
        self.log_events()
            .await
            .iter()
            .map(|event| event["event_type"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Registers a book as `manager` and waits until the shelf policy has shelved it.
    pub async fn shelved_book(&self, manager: &str, title: &str, fee: i64) -> String {
        let registered = self
            .post(
                Some(manager),
                "/commands/book-rental/books",
                Some(serde_json::json!({"title": title, "rental_fee": fee})),
            )
            .await;
        assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
        let book_id = registered.id();
        self.eventually("the book is on the shelf", || async {
            let book = self.get(manager, &format!("/queries/book-rental/books/{book_id}")).await;
            (book.status == StatusCode::OK && book.body["on_shelf"] == true).then_some(())
        })
        .await;
        book_id
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Answer { status, body, headers }
}

/// The plan of `sql` as the server runs it, as text: on SQLite on a read side's connection (the
/// views' file, the log's attached); on PostgreSQL the generic plan of the prepared statement
/// (parameters of `parameter_types`, values unknown), which it may keep for good.
pub async fn plan(database: &Database, sql: &str, parameter_types: &[&str]) -> String {
    match &database.store {
        StorePool::Sqlite(_) => {
            let pool = &database.read_side;
            let explain_sql = format!("EXPLAIN QUERY PLAN {sql}");
            let mut explain = sqlx::query(&explain_sql);
            for _ in parameter_types {
                explain = explain.bind("x");
            }
            let rows = explain.fetch_all(pool).await.unwrap();
            rows.iter().map(|row| row.try_get::<String, _>("detail").unwrap()).collect::<Vec<_>>().join("\n")
        }
        StorePool::Postgres(pool) => {
            let mut connection = pool.acquire().await.unwrap();
            sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut *connection).await.unwrap();
            let types = parameter_types.join(", ");
            sqlx::query(&format!("PREPARE listing({types}) AS {sql}")).execute(&mut *connection).await.unwrap();
            let arguments = parameter_types.iter().map(|_| "NULL").collect::<Vec<_>>().join(", ");
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE listing({arguments})"))
                .fetch_all(&mut *connection)
                .await
                .unwrap();
            // The connection goes back to the pool, and may serve the next call.
            sqlx::query("DEALLOCATE listing").execute(&mut *connection).await.unwrap();
            sqlx::query("RESET plan_cache_mode").execute(&mut *connection).await.unwrap();
            plan.join("\n")
        }
    }
}

/// How many of `types` (the log's event types, [`TestApp::log_types`]) are `event_type`.
pub fn count_of(types: &[String], event_type: &str) -> usize {
    types.iter().filter(|logged| *logged == event_type).count()
}
