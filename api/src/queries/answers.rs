//! Answers kept until their view moves (ADR 39): a query asked again while its view is where it
//! was is answered with the bytes written the first time, without a statement.
//!
//! A view's rows change only in a worker's batch, and a batch moves the view's checkpoint in the
//! same transaction (`runtime::checkpoint::advance`); a query reads the rows after reading that
//! checkpoint ([`super::view_position`]). So an answer read at reading `(generation, position)`
//! shows the view at that position or later, and while a later query's reading is the same, the
//! view has not moved and the answer is still one a fresh read could have given: its
//! `X-Projection-Position` stays a lower bound of what the rows show. So does a lookup that found
//! nothing (a 404): the row cannot appear while the view is where it was, and the nothing is kept
//! too ([`Kept::Nothing`]). Once a reading of the view is further along, every answer kept for it
//! is dropped. An answer that depends on the clock (a rental that becomes overdue at its due time)
//! is kept only until then.
//!
//! Each process keeps its own answers, bounded per view; the readings that tell whether a view
//! has moved come from the database, so a view's workers may run in another process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use chrono::{DateTime, Utc};

use super::turns::ReadTurns;
use super::ViewAt;

/// The most answers kept per view, and the most bytes: a page may hold up to 500 rows.
const MOST_ANSWERS: usize = 4_096;
const MOST_BYTES: usize = 1 << 20;

/// A query's answer as it was written.
#[derive(Debug, Clone)]
pub struct Answer {
    pub json: Bytes,
    /// The customer the answer is about, for a route that checks its caller after the read.
    pub customer_id: Option<String>,
    /// When the answer would change with no event: the earliest due time of a rental it shows as
    /// not yet overdue.
    pub changes_at: Option<DateTime<Utc>>,
}

impl Answer {
    /// An answer anyone it is asked of may be given, that only an event changes.
    pub fn of(json: impl Into<Bytes>) -> Self {
        Self { json: json.into(), customer_id: None, changes_at: None }
    }
}

/// What is kept for a query: its answer, or that its view had nothing for it (a lookup's 404).
#[derive(Debug, Clone)]
pub enum Kept {
    Answer(Answer),
    Nothing,
}

impl Kept {
    /// The bytes it holds.
    fn len(&self) -> usize {
        match self {
            Self::Answer(answer) => answer.json.len(),
            Self::Nothing => 0,
        }
    }

    /// Whether the clock has changed it by `now`.
    fn current_at(&self, now: DateTime<Utc>) -> bool {
        match self {
            Self::Answer(answer) => answer.changes_at.is_none_or(|at| now < at),
            Self::Nothing => true,
        }
    }
}

/// The answers of this process, per view (see the module's documentation).
#[derive(Debug, Default)]
pub struct KeptAnswers {
    views: Mutex<HashMap<&'static str, ViewAnswers>>,
    /// How many queries were answered with a kept answer, and how many found none and were read.
    given: AtomicU64,
    missed: AtomicU64,
    /// The turns to read a query's answer (see [`KeptAnswers::read_turn`]).
    turns: ReadTurns,
}

/// One view's answers, all read at the same reading of it.
#[derive(Debug)]
struct ViewAnswers {
    at: (i64, i64),
    answers: HashMap<String, Kept>,
    bytes: usize,
}

impl KeptAnswers {
    /// What is kept for `key` of `view`, if it was read at reading `at` and the clock has not
    /// changed it since.
    pub fn get(&self, view: &'static str, at: ViewAt, key: &str, now: DateTime<Utc>) -> Option<Kept> {
        let views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        views
            .get(view)
            .filter(|kept| kept.at == (at.generation, at.position))
            .and_then(|kept| kept.answers.get(key))
            .filter(|kept| kept.current_at(now))
            .cloned()
    }

    /// Counts a query answered with a kept answer (`given`), or read.
    pub fn count(&self, given: bool) {
        let counter = if given { &self.given } else { &self.missed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The turn to read the answer to `key` of `view`: a query that finds no kept answer reads it
    /// holding this, and the queries that ask the same meanwhile wait for it and take the answer
    /// it keeps instead of each reading the view too (ADR 44).
    pub async fn read_turn(&self, view: &'static str, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.turns.of((view, key)).await
    }

    /// How many queries were answered with a kept answer since the process started.
    pub fn given(&self) -> u64 {
        self.given.load(Ordering::Relaxed)
    }

    /// How many queries found no kept answer (and were read) since the process started.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Keeps `answer`, read at reading `at`: the view's answers of an earlier reading are dropped
    /// first; an answer of a reading behind the kept ones, or past the bounds, is not kept.
    pub fn keep(&self, view: &'static str, at: ViewAt, key: String, answer: Kept) {
        let at = (at.generation, at.position);
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = views.entry(view).or_insert_with(|| ViewAnswers { at, answers: HashMap::new(), bytes: 0 });
        if at < kept.at {
            return;
        }
        if at > kept.at {
            *kept = ViewAnswers { at, answers: HashMap::new(), bytes: 0 };
        }
        let replaced = kept.answers.get(&key).map(Kept::len);
        let bytes = kept.bytes - replaced.unwrap_or(0) + answer.len();
        let count = kept.answers.len() + usize::from(replaced.is_none());
        if count > MOST_ANSWERS || bytes > MOST_BYTES {
            return;
        }
        kept.answers.insert(key, answer);
        kept.bytes = bytes;
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn at(generation: i64, position: i64) -> ViewAt {
        ViewAt { generation, position }
    }

    fn answer(json: &str) -> Kept {
        Kept::Answer(Answer::of(json.to_owned()))
    }

    fn json(kept: Option<Kept>) -> Option<String> {
        match kept? {
            Kept::Answer(answer) => Some(String::from_utf8(answer.json.to_vec()).unwrap()),
            Kept::Nothing => Some("nothing".to_owned()),
        }
    }

    #[test]
    fn an_answer_should_be_given_again_only_at_the_reading_it_was_read_at() {
        let answers = KeptAnswers::default();
        let now = Utc::now();
        answers.keep("my_page", at(1, 7), "kim".into(), answer("page at 7"));

        assert_eq!(json(answers.get("my_page", at(1, 7), "kim", now)).as_deref(), Some("page at 7"));
        assert!(answers.get("my_page", at(1, 8), "kim", now).is_none(), "the view moved");
        assert!(answers.get("my_page", at(2, 7), "kim", now).is_none(), "another generation");
        assert!(answers.get("my_page", at(1, 7), "lee", now).is_none(), "another query");
        assert!(answers.get("rental_status", at(1, 7), "kim", now).is_none(), "another view");
    }

    #[test]
    fn a_further_reading_should_drop_the_answers_of_the_earlier_one() {
        let answers = KeptAnswers::default();
        let now = Utc::now();
        answers.keep("my_page", at(1, 7), "kim".into(), answer("page at 7"));
        answers.keep("my_page", at(1, 9), "lee".into(), answer("page at 9"));

        assert!(answers.get("my_page", at(1, 7), "kim", now).is_none());
        assert_eq!(json(answers.get("my_page", at(1, 9), "lee", now)).as_deref(), Some("page at 9"));

        // A query whose reading was behind when it finished keeps nothing.
        answers.keep("my_page", at(1, 8), "kim".into(), answer("page at 8"));
        assert!(answers.get("my_page", at(1, 8), "kim", now).is_none());
        assert!(answers.get("my_page", at(1, 9), "kim", now).is_none());
    }

    #[test]
    fn an_answer_should_not_be_given_once_the_clock_has_changed_it() {
        let answers = KeptAnswers::default();
        let now = Utc::now();
        let due = now + TimeDelta::seconds(1);
        let rented = Answer { changes_at: Some(due), ..Answer::of("rented") };
        answers.keep("rental_status", at(1, 7), "kim".into(), Kept::Answer(rented));

        assert!(answers.get("rental_status", at(1, 7), "kim", now).is_some());
        assert!(answers.get("rental_status", at(1, 7), "kim", due).is_none(), "overdue from its due time");
    }

    #[test]
    fn a_lookup_that_found_nothing_should_be_kept_until_its_view_moves() {
        let answers = KeptAnswers::default();
        let now = Utc::now();
        answers.keep("rental_status", at(1, 7), "r-1".into(), Kept::Nothing);

        assert_eq!(json(answers.get("rental_status", at(1, 7), "r-1", now)).as_deref(), Some("nothing"));
        assert!(answers.get("rental_status", at(1, 8), "r-1", now).is_none(), "the view moved: the row may be there");
        answers.keep("rental_status", at(1, 8), "r-2".into(), answer("found"));
        assert!(answers.get("rental_status", at(1, 7), "r-1", now).is_none(), "dropped with its reading");
    }

    #[test]
    fn a_view_should_keep_no_more_than_its_bounds() {
        let answers = KeptAnswers::default();
        let now = Utc::now();
        let page = "x".repeat(MOST_BYTES / 2);
        answers.keep("my_page", at(1, 7), "a".into(), answer(&page));
        answers.keep("my_page", at(1, 7), "a".into(), answer(&page));
        answers.keep("my_page", at(1, 7), "b".into(), answer(&page));
        answers.keep("my_page", at(1, 7), "c".into(), answer(&page));

        assert!(answers.get("my_page", at(1, 7), "a", now).is_some());
        assert!(answers.get("my_page", at(1, 7), "b", now).is_some(), "a replaced answer's bytes are freed");
        assert!(answers.get("my_page", at(1, 7), "c", now).is_none(), "past the view's bytes");

        for n in 0..MOST_ANSWERS {
            answers.keep("rental_status", at(1, 7), n.to_string(), answer("{}"));
        }
        answers.keep("rental_status", at(1, 7), "one more".into(), answer("{}"));
        assert!(answers.get("rental_status", at(1, 7), "one more", now).is_none(), "past the view's count");
    }
}
