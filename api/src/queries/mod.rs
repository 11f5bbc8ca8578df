//! The query side of the API: `GET /queries/...` only, answered from the views.
//!
//! Every answer carries `X-Projection-Position`, the position the answering view has reached (at
//! least: the rows are read after it, and without `min_position` the reading may be up to
//! [`RECENT_FOR`] old).
//! `?min_position=N` (from a command's answer) waits, up to 5 s, until the view has applied the
//! event at N — read-your-writes — or answers 503 `projection-behind`.
//! A query asked again while its view has not moved is answered with the answer kept from the
//! first time ([`answers`], ADR 39).

mod answers;
mod book_rental;
mod customers;
mod payments;
mod turns;

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::Any;
use storming_domain::recorded::LogCursor;
use storming_domain::shared::ValidationError;
use storming_infra::kept::Lent;
use storming_projections::page::{DEFAULT_LIMIT, MAX_LIMIT};
use storming_projections::reader::{SqliteRead, ViewReader};
use storming_projections::runtime::applied::next_ring;
use storming_projections::runtime::generations;
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;

use crate::problem::ApiError;
use crate::AppState;

pub use answers::{Answer, Kept, KeptAnswers};

/// The connection a query reads its view on: on SQLite one of the process's own, read in place
/// (`AppState::sqlite_reads`, ADR 19); else one of the queries' kept `Any` connections.
pub enum QueryConnection<'a> {
    Kept(Lent<'a, Any>),
    Sqlite(SqliteRead<'a>),
}

impl QueryConnection<'_> {
    pub async fn lend(app: &AppState) -> Result<QueryConnection<'_>, sqlx::Error> {
        match &app.sqlite_reads {
            Some(reads) => Ok(QueryConnection::Sqlite(reads.lend()?)),
            None => Ok(QueryConnection::Kept(app.db.queries.lend().await?)),
        }
    }

    pub fn reader(&mut self) -> ViewReader<'_> {
        match self {
            Self::Kept(connection) => ViewReader::Any(connection),
            Self::Sqlite(connection) => connection.reader(),
        }
    }

    /// The reads finished: the connection is kept for the next query (see
    /// [`storming_infra::kept`]; dropped without this, a kept connection goes back through sqlx).
    pub fn keep(self) {
        match self {
            Self::Kept(connection) => connection.keep(),
            Self::Sqlite(connection) => drop(connection),
        }
    }
}

/// The longest a query waits for `min_position`.
const MAX_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(customers::router()).merge(book_rental::router()).merge(payments::router())
}

/// Query-string parameters, with every rejection answered as problem+json (400).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Params(value))
    }
}

/// `?min_position=`, for queries that take nothing else.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// Wait (up to 5 s) until the view has applied the event at this position.
    #[param(minimum = 0)]
    pub min_position: Option<i64>,
}

/// A list's `?limit=`, checked: 1 to 500, 50 when absent.
pub fn limit(requested: Option<i64>) -> Result<i64, ValidationError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        Some(_) => Err(ValidationError::new("limit", format!("must be between 1 and {MAX_LIMIT}"))),
    }
}

/// The generation of a view that answers a query, and the position it has reached.
#[derive(Debug, Clone, Copy)]
pub struct ViewAt {
    pub generation: i64,
    pub position: i64,
}

/// How long a reading of a view (its active generation and how far it has applied the log) answers
/// the queries that ask for no `min_position`, instead of one more statement each: about the
/// workers' own coalescing window, so such a query's `X-Projection-Position` is at most that much
/// older than the view (it is a lower bound either way: the rows are read after it). A rebuild's
/// switch reaches these queries within it, long before the retired tables are dropped
/// ([`generations::RETIRED_GRACE`]). A query with `min_position` always reads the view afresh.
pub const RECENT_FOR: Duration = Duration::from_millis(10);

/// The latest reading of each view in this process (see [`RECENT_FOR`]), and each view's turn to
/// read it anew: the queries that find a view's reading too old while another query reads it wait
/// for that reading instead of each reading the view too (ADR 44).
#[derive(Debug, Default)]
pub struct RecentViews {
    readings: std::sync::Mutex<HashMap<String, Reading>>,
    turns: turns::ReadTurns,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    generation: i64,
    reached: LogCursor,
}

impl RecentViews {
    /// The reading of view `name` that answers a query that arrived at `arrived`: one begun at
    /// most [`RECENT_FOR`] before.
    fn recent(&self, name: &str, arrived: Instant) -> Option<ViewAt> {
        let readings = self.readings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let reading =
            readings.get(name).filter(|reading| arrived.saturating_duration_since(reading.at) < RECENT_FOR)?;
        Some(ViewAt { generation: reading.generation, position: reading.reached.position })
    }

    /// Keeps `reading` unless one of the same generation that is further along is already kept
    /// (concurrent readings may finish out of order).
    fn remember(&self, name: &str, reading: Reading) {
        let mut readings = self.readings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match readings.get_mut(name) {
            Some(kept) if kept.generation == reading.generation && kept.reached > reading.reached => {}
            Some(kept) => *kept = reading,
            None => {
                readings.insert(name.to_string(), reading);
            }
        }
    }

    /// View `name`'s turn to be read anew.
    async fn turn(&self, name: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.turns.of(name).await
    }
}

/// The active generation of view `name`, once it has applied the event at `min_position`.
pub async fn view_position(app: &AppState, name: &str, min_position: Option<i64>) -> Result<ViewAt, ApiError> {
    let deadline = Instant::now() + MAX_WAIT;
    if min_position.is_some_and(|position| position < 0) {
        return Err(ValidationError::new("min_position", "must not be negative").into());
    }
    let wanted = min_position.filter(|position| *position > 0);
    // Held while this query reads the view, for the queries that find the reading too old meanwhile.
    let _turn = match wanted {
        None => {
            let arrived = Instant::now();
            if let Some(view) = app.views.recent(name, arrived) {
                return Ok(view);
            }
            let turn = app.views.turn(name).await;
            // Read by the query that had the turn while this one waited.
            if let Some(view) = app.views.recent(name, arrived) {
                return Ok(view);
            }
            Some(turn)
        }
        Some(_) => None,
    };
    let mut target = None;
    // Subscribed before the first reading, so that no batch committed after it goes unnoticed
    // (only by a query that may wait: one without `min_position` answers after that reading).
    let mut applied = wanted.and_then(|_| app.applied.subscribe(name));
    loop {
        let at = Instant::now();
        let mut connection = QueryConnection::lend(app).await?;
        let (generation, reached) = generations::active_and_reached(&mut connection.reader(), name).await?;
        connection.keep();
        app.views.remember(name, Reading { at, generation, reached });
        let view = ViewAt { generation, position: reached.position };
        let Some(position) = wanted else { return Ok(view) };
        if target.is_none() {
            // A position no command gave out: there is nothing to wait for.
            target = Some(
                app.log
                    .cursor_of(position)
                    .await?
                    .ok_or_else(|| ValidationError::new("min_position", "is not the position of a stored event"))?,
            );
        }
        if target.is_some_and(|target| reached >= target) {
            return Ok(view);
        }
        if Instant::now() >= deadline {
            return Err(ApiError::ProjectionBehind(position));
        }
        // Its workers here read at once instead of letting more events gather first.
        app.applied.hurry(name);
        // This process's workers ring when they commit a batch of the view; the poll covers workers
        // in other processes.
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = next_ring(&mut applied) => {}
        }
    }
}

/// The answer to query `key` of view `name` at reading `view`: the one kept for it (ADR 39), else
/// the one `read` reads on a query connection, which is then kept. `A` is [`Answer`] for a page,
/// which a read always answers (an empty page is an answer), and `Option<Answer>` for a lookup,
/// whose `None` (nothing found) is kept as [`Kept::Nothing`].
pub async fn kept_or_read<A: Readable>(
    app: &AppState,
    name: &'static str,
    view: ViewAt,
    key: String,
    read: impl AsyncFnOnce(&mut ViewReader<'_>) -> Result<A, sqlx::Error>,
) -> Result<A, ApiError> {
    let kept = || app.answers.get(name, view, &key, Utc::now()).and_then(A::from_kept);
    if let Some(answer) = kept() {
        app.answers.count(true);
        return Ok(answer);
    }
    let _turn = app.answers.read_turn(name, &key).await;
    // Read and kept by the query that had the turn while this one waited.
    if let Some(answer) = kept() {
        app.answers.count(true);
        return Ok(answer);
    }
    app.answers.count(false);
    let mut connection = QueryConnection::lend(app).await?;
    let answer = read(&mut connection.reader()).await?;
    connection.keep();
    app.answers.keep(name, view, key, answer.to_kept());
    Ok(answer)
}

/// What a query's read answers: an [`Answer`], or maybe one ([`kept_or_read`]).
pub trait Readable: Sized {
    /// What to keep of it.
    fn to_kept(&self) -> Kept;
    /// It again, from what was kept for its key (`None`: not an answer of this kind).
    fn from_kept(kept: Kept) -> Option<Self>;
}

impl Readable for Answer {
    fn to_kept(&self) -> Kept {
        Kept::Answer(self.clone())
    }

    fn from_kept(kept: Kept) -> Option<Self> {
        match kept {
            Kept::Answer(answer) => Some(answer),
            Kept::Nothing => None,
        }
    }
}

impl Readable for Option<Answer> {
    fn to_kept(&self) -> Kept {
        self.clone().map_or(Kept::Nothing, Kept::Answer)
    }

    fn from_kept(kept: Kept) -> Option<Self> {
        Some(Answer::from_kept(kept))
    }
}

/// The key of a query among its view's kept answers: its route and every parameter that changes
/// the answer (the caller's id where the answer is the caller's), as a JSON array.
pub fn answer_key(route_and_parameters: impl Serialize) -> String {
    serde_json::to_string(&route_and_parameters).expect("strings, numbers and options serialize")
}

/// A view's answer as JSON (written by a [`storming_projections::page::PageWriter`], a row's view
/// serialized while its row was read, or kept from an earlier query), with the position it was read
/// at.
pub fn answer_json(view: ViewAt, json: Bytes) -> Response {
    let mut response = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response();
    response.headers_mut().insert("x-projection-position", HeaderValue::from(view.position));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(generation: i64, position: i64) -> Reading {
        Reading { at: Instant::now(), generation, reached: LogCursor { transaction_id: 0, position } }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_answers_for_its_window_and_no_longer() {
        let views = RecentViews::default();
        assert!(views.recent("my_page", Instant::now()).is_none(), "nothing read yet");
        views.remember("my_page", reading(1, 7));

        tokio::time::advance(RECENT_FOR - Duration::from_millis(1)).await;
        let view = views.recent("my_page", Instant::now()).expect("still recent");
        assert_eq!((view.generation, view.position), (1, 7));
        assert!(views.recent("rental_status", Instant::now()).is_none(), "readings are per view");

        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(views.recent("my_page", Instant::now()).is_none(), "too old to answer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_query_that_waited_for_the_turn_takes_a_reading_begun_after_it_arrived() {
        let views = RecentViews::default();
        views.remember("my_page", reading(1, 7));
        tokio::time::advance(RECENT_FOR).await;
        let arrived = Instant::now();
        assert!(views.recent("my_page", arrived).is_none(), "too old when the query arrived");

        // Another query held the turn and read the view; this one gets the turn late.
        tokio::time::advance(Duration::from_millis(1)).await;
        views.remember("my_page", reading(1, 8));
        tokio::time::advance(RECENT_FOR * 3).await;
        assert_eq!(views.recent("my_page", arrived).map(|view| view.position), Some(8));
        assert!(views.recent("my_page", Instant::now()).is_none(), "a query arriving now reads anew");
    }

    #[tokio::test]
    async fn a_view_is_read_anew_by_one_query_at_a_time() {
        let views = RecentViews::default();
        let turn = views.turn("my_page").await;
        let other_view = tokio::time::timeout(Duration::from_secs(1), views.turn("rental_status")).await;
        assert!(other_view.is_ok(), "each view has its own turn");
        let same_view = tokio::time::timeout(Duration::from_millis(50), views.turn("my_page")).await;
        assert!(same_view.is_err(), "the second query waits while the first reads");
        drop(turn);
        let after = tokio::time::timeout(Duration::from_secs(1), views.turn("my_page")).await;
        assert!(after.is_ok(), "the turn is free once the first query has read");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_behind_the_kept_one_of_the_same_generation_is_dropped() {
        let views = RecentViews::default();
        views.remember("my_page", reading(1, 9));
        views.remember("my_page", reading(1, 8));
        assert_eq!(views.recent("my_page", Instant::now()).map(|view| view.position), Some(9));

        // A switched generation starts over from its own position.
        views.remember("my_page", reading(2, 3));
        let view = views.recent("my_page", Instant::now()).expect("recent");
        assert_eq!((view.generation, view.position), (2, 3));
    }
}
