//! A fake payment provider speaking the provider contract of API.md on a loopback port, whose
//! behaviour a test switches at will and whose books a test reads: what was charged and refunded,
//! once per idempotency key, as a real provider would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Approve,
    Decline,
    /// Answers 500 to every call.
    Fail,
    /// Approves, after this long.
    Slow(Duration),
}

#[derive(Debug)]
struct Books {
    mode: Mutex<Mode>,
    refund_failures_left: AtomicU32,
    authorization_calls: AtomicU32,
    refund_calls: AtomicU32,
    /// Approved charges by idempotency key.
    charges: Mutex<HashMap<String, String>>,
    /// Confirmed refunds by idempotency key.
    refunds: Mutex<HashMap<String, String>>,
}

pub struct FakeProvider {
    pub url: String,
    books: Arc<Books>,
}

impl FakeProvider {
    pub async fn start(mode: Mode) -> Self {
        let books = Arc::new(Books {
            mode: Mutex::new(mode),
            refund_failures_left: AtomicU32::new(0),
            authorization_calls: AtomicU32::new(0),
            refund_calls: AtomicU32::new(0),
            charges: Mutex::default(),
            refunds: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/authorizations", post(authorize))
            .route("/v1/authorizations/{authorization_id}/refunds", post(refund))
            .with_state(books.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, books }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.books.mode.lock().unwrap() = mode;
    }

    /// The next `count` refund calls answer 500.
    pub fn fail_next_refunds(&self, count: u32) {
        self.books.refund_failures_left.store(count, Ordering::SeqCst);
    }

    pub fn authorization_calls(&self) -> u32 {
        self.books.authorization_calls.load(Ordering::SeqCst)
    }

    pub fn refund_calls(&self) -> u32 {
        self.books.refund_calls.load(Ordering::SeqCst)
    }

    /// Distinct charges taken.
    pub fn charges(&self) -> usize {
        self.books.charges.lock().unwrap().len()
    }

    /// Distinct refunds made.
    pub fn refunds(&self) -> usize {
        self.books.refunds.lock().unwrap().len()
    }
}

async fn authorize(State(books): State<Arc<Books>>, Json(body): Json<Value>) -> Response {
    books.authorization_calls.fetch_add(1, Ordering::SeqCst);
    let mode = *books.mode.lock().unwrap();
    match mode {
        Mode::Fail => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Decline => return Json(json!({"status": "declined", "reason": "insufficient funds"})).into_response(),
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Approve => {}
    }
    let key = body["idempotency_key"].as_str().unwrap_or_default().to_string();
    let authorization_id =
        books.charges.lock().unwrap().entry(key).or_insert_with(|| format!("au-{}", uuid::Uuid::now_v7())).clone();
    Json(json!({"status": "approved", "authorization_id": authorization_id})).into_response()
}

async fn refund(
    State(books): State<Arc<Books>>,
    Path(_authorization_id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    books.refund_calls.fetch_add(1, Ordering::SeqCst);
    let failing =
        books.refund_failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok();
    if failing || *books.mode.lock().unwrap() == Mode::Fail {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let key = body["idempotency_key"].as_str().unwrap_or_default().to_string();
    let refund_id =
        books.refunds.lock().unwrap().entry(key).or_insert_with(|| format!("rf-{}", uuid::Uuid::now_v7())).clone();
    Json(json!({"status": "refunded", "refund_id": refund_id})).into_response()
}
