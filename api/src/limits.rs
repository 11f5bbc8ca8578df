//! Rate limiting per caller: a token bucket for each JWT `sub` (or, without a valid token, each
//! peer address). A caller over its rate gets 429 `rate-limited` with `Retry-After`. Health,
//! metrics and the docs are not limited.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::AppState;

/// Buckets idle this long are forgotten (a full bucket is the same as no bucket).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Past this many buckets the idle ones are looked for, at most once per [`SWEEP_EVERY`]: the
/// search walks every bucket under the lock, and with this many callers active it would otherwise
/// run on every request and find nothing.
const SWEEP_PAST: usize = 10_000;
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const UNLIMITED_PREFIXES: [&str; 5] = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"];

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    by_caller: HashMap<String, Bucket>,
    swept: Option<Instant>,
}

impl Buckets {
    fn sweep_due(&self, now: Instant) -> bool {
        self.by_caller.len() > SWEEP_PAST && self.swept.is_none_or(|swept| now.duration_since(swept) >= SWEEP_EVERY)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` requests on average, `burst` at once; `None` when `per_second` is 0 (off).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        })
    }

    /// Takes one token for `caller`, or tells how long until one is there.
    pub fn take(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.sweep_due(now) {
            buckets.by_caller.retain(|_, bucket| now.duration_since(bucket.at) < FORGET_AFTER);
            buckets.swept = Some(now);
        }
        let bucket = buckets.by_caller.entry(caller.to_string()).or_insert(Bucket { tokens: self.burst, at: now });
        let refilled = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.per_second).min(self.burst);
        *bucket = Bucket { tokens: refilled, at: now };
        if refilled >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
        }
    }
}

/// The middleware. A caller it verified goes on with the request ([`Verified`]), so that the
/// handler's [`crate::auth::Caller`] does not check the same token's signature a second time.
pub async fn limit(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(limiter) = app.rate_limiter.as_deref() else { return next.run(request).await };
    if UNLIMITED_PREFIXES.iter().any(|prefix| request.uri().path().starts_with(prefix)) {
        return next.run(request).await;
    }
    let verified = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| app.tokens.verify(token.trim()).ok());
    let key = match &verified {
        Some(caller) => format!("sub:{}", caller.id),
        None => match request.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => format!("ip:{}", peer.ip()),
            None => "anonymous".to_string(),
        },
    };
    match limiter.take(&key, Instant::now()) {
        Ok(()) => {
            if let Some(caller) = verified {
                request.extensions_mut().insert(Verified(caller));
            }
            next.run(request).await
        }
        Err(retry_after) => ApiError::RateLimited { retry_after }.into_response(),
    }
}

/// The caller of a request whose bearer token this process has verified already; only the rate
/// limiter puts one there (a request's extensions are the server's, not the client's).
#[derive(Debug, Clone)]
pub struct Verified(pub Caller);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_allow_a_burst_then_refuse_until_a_token_is_back() {
        let limiter = RateLimiter::new(10, 3).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take("kim", start).is_ok());
        }
        let wait = limiter.take("kim", start).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter.take("kim", start + Duration::from_millis(100)).is_ok(), "one token back after 100 ms");
    }

    #[test]
    fn it_should_count_each_caller_apart() {
        let limiter = RateLimiter::new(1, 1).unwrap();
        let now = Instant::now();
        assert!(limiter.take("kim", now).is_ok());
        assert!(limiter.take("kim", now).is_err());
        assert!(limiter.take("lee", now).is_ok());
    }

    #[test]
    fn it_should_forget_idle_callers_past_ten_thousand_at_most_once_a_second() {
        let limiter = RateLimiter::new(1, 1).unwrap();
        let start = Instant::now();
        for n in 0..=SWEEP_PAST {
            assert!(limiter.take(&format!("caller {n}"), start).is_ok());
        }
        let later = start + FORGET_AFTER;
        assert!(limiter.take("kim", later).is_ok());
        let buckets = limiter.buckets.lock().unwrap();
        assert_eq!(buckets.by_caller.len(), 1, "the idle callers were forgotten, kim kept");
        assert_eq!(buckets.swept, Some(later));
        drop(buckets);

        // As many callers active at once: a sweep would find nothing to forget, so it waits.
        for n in 0..=SWEEP_PAST {
            assert!(limiter.take(&format!("active {n}"), later).is_ok());
        }
        let buckets = limiter.buckets.lock().unwrap();
        assert!(!buckets.sweep_due(later + SWEEP_EVERY - Duration::from_millis(1)));
        assert!(buckets.sweep_due(later + SWEEP_EVERY));
    }

    #[test]
    fn it_should_be_off_at_zero_per_second() {
        assert!(RateLimiter::new(0, 10).is_none());
    }
}
