//! `Idempotency-Key` on every command: a retry with the same key and request is answered as the
//! first time and writes nothing; the same key with another request is 422.
//!
//! Before a keyed command runs, its key is reserved together with the ids the command will use
//! (rental id, payment id, ...) and the answer it will give. A concurrent retry finds that
//! reservation and runs the very same command (same ids), which the aggregates treat as done, so
//! retries converge on one rental and one charge even across processes; inside one process they
//! simply wait for the first. The key is completed in the transaction that stores the events.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use storming_infra::idempotency::{self, IdempotencyKey, Reservation};
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::Accepted;
use crate::auth::Caller;
use crate::problem::ApiError;
use crate::AppState;

const HEADER: &str = "idempotency-key";
const MAX_KEY_LENGTH: usize = 255;

/// The `Idempotency-Key` header, as every command's entry in the OpenAPI document describes it.
#[allow(dead_code)] // a description for the document; `once` reads the header itself
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Send again with the same key: answered as the first time, nothing written
    #[param(rename = "Idempotency-Key", pattern = r"^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
}

/// The answer a command will give once its events are stored.
#[derive(Debug, Clone)]
pub struct Planned {
    pub status: StatusCode,
    pub id: String,
    pub location: Option<String>,
}

impl Planned {
    /// `201 Created` with the query resource in `Location`.
    pub fn created(id: impl ToString, location: String) -> Self {
        Self { status: StatusCode::CREATED, id: id.to_string(), location: Some(location) }
    }

    /// `200 OK` for a command on an existing resource.
    pub fn done(id: impl ToString) -> Self {
        Self { status: StatusCode::OK, id: id.to_string(), location: None }
    }

    fn answer(&self, position: i64) -> Response {
        let body = Json(Accepted { id: self.id.clone(), position });
        match &self.location {
            Some(location) => (self.status, [(header::LOCATION, location.clone())], body).into_response(),
            None => (self.status, body).into_response(),
        }
    }

    fn from_reservation(reservation: &Reservation) -> Self {
        Self {
            status: StatusCode::from_u16(reservation.status).unwrap_or(StatusCode::OK),
            id: reservation.response_id.clone(),
            location: reservation.location.clone(),
        }
    }
}

/// Runs a command once per idempotency key. `fresh_ids` are the ids a first request uses; `plan`
/// tells the answer from the ids; `run` executes the command with the ids and key it is given and
/// returns the position of its last event.
pub async fn once<F, Fut>(
    app: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    request: String,
    fresh_ids: Vec<Uuid>,
    plan: impl Fn(&[Uuid]) -> Planned,
    run: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Vec<Uuid>, Option<IdempotencyKey>) -> Fut,
    Fut: Future<Output = Result<i64, ApiError>>,
{
    let Some(key) = idempotency_key(caller, headers)? else {
        let planned = plan(&fresh_ids);
        let position = run(fresh_ids, None).await?;
        return Ok(planned.answer(position));
    };
    let _turn = app.key_locks.lock(&key).await;
    let planned = plan(&fresh_ids);
    let candidate = Reservation {
        request: request.clone(),
        reserved_ids: fresh_ids,
        status: planned.status.as_u16(),
        response_id: planned.id,
        location: planned.location,
        position: None,
    };
    let reservation = idempotency::reserve(&app.db.read_side, &key, &candidate).await?;
    if reservation.request != request {
        return Err(ApiError::IdempotencyKeyReused);
    }
    if let Some(position) = reservation.position {
        return Ok(Planned::from_reservation(&reservation).answer(position));
    }
    let result = run(reservation.reserved_ids.clone(), Some(key.clone())).await;
    match (result, idempotency::load(&app.db.read_side, &key).await?) {
        // Completed with the events, by this request or by a concurrent one in another process.
        (_, Some(stored @ Reservation { position: Some(position), .. })) => {
            Ok(Planned::from_reservation(&stored).answer(position))
        }
        // Succeeded without storing an event: complete the key here.
        (Ok(position), _) => {
            idempotency::complete(&app.db.read_side, &key, position).await?;
            Ok(Planned::from_reservation(&reservation).answer(position))
        }
        (Err(error), _) => {
            idempotency::release(&app.db.read_side, &key).await?;
            Err(error)
        }
    }
}

fn idempotency_key(caller: &Caller, headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_LENGTH && key.chars().all(|c| c.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(IdempotencyKey { caller: caller.id.clone(), key: key.to_string() })),
        None => Err(ApiError::BadRequest {
            code: "invalid-idempotency-key",
            detail: format!("Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"),
        }),
    }
}

/// One turn at a time per key inside this process.
#[derive(Debug, Default)]
pub struct KeyLocks(Mutex<HashMap<IdempotencyKey, Arc<tokio::sync::Mutex<()>>>>);

/// Held while a keyed command runs; forgets the key's lock when nobody else waits for it.
pub struct Turn<'a> {
    locks: &'a KeyLocks,
    key: IdempotencyKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub async fn lock(&self, key: &IdempotencyKey) -> Turn<'_> {
        let lock = self.map().entry(key.clone()).or_default().clone();
        Turn { locks: self, key: key.clone(), guard: Some(lock.lock_owned().await) }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IdempotencyKey, Arc<tokio::sync::Mutex<()>>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        if map.get(&self.key).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            map.remove(&self.key);
        }
    }
}
