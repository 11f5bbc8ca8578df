//! Authentication and roles: HS256 bearer tokens with `sub`, `roles` and `exp`.
//!
//! Only HS256 is accepted (`alg: none` and every other algorithm fail), `exp` is required, and the
//! clock skew allowed is bounded. A missing or bad token is 401; a valid one without the role, or
//! not the owner of what it touches, is 403.
//!
//! A token verified once is remembered until it expires (ADR 31): a client sends the same token
//! with every request, and checking its signature and parsing its claims again each time cost a
//! twentieth of the server's CPU under the queries' load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use storming_infra::config::Secret;

use crate::limits::Verified;
use crate::problem::ApiError;
use crate::AppState;

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECONDS: u64 = 30;

/// The roles of DOMAIN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Customer,
    BookManager,
    Seller,
    StoreOwner,
    Rider,
    HotelManager,
    SpaceManager,
    Admin,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Customer,
        Role::BookManager,
        Role::Seller,
        Role::StoreOwner,
        Role::Rider,
        Role::HotelManager,
        Role::SpaceManager,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::BookManager => "book_manager",
            Role::Seller => "seller",
            Role::StoreOwner => "store_owner",
            Role::Rider => "rider",
            Role::HotelManager => "hotel_manager",
            Role::SpaceManager => "space_manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

/// Signs and verifies tokens with the one HS256 secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    verified: Arc<Mutex<HashMap<Box<str>, Remembered>>>,
}

/// The most tokens remembered at once; past it the remembered are forgotten together (a token
/// forgotten is verified again the next time it comes, and remembered again).
const REMEMBERED_TOKENS: usize = 1024;

/// A token's verified caller, and its `exp`.
struct Remembered {
    caller: Caller,
    exp: u64,
}

/// Whether a token with `exp` is still accepted at `now` (seconds since the epoch): as
/// `jsonwebtoken` checks it, with the leeway.
fn unexpired(exp: u64, now: u64) -> bool {
    exp.saturating_add(LEEWAY_SECONDS) >= now
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl TokenKeys {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `exp` is checked here, against the same clock for a token verified now and one
        // remembered (`unexpired`).
        validation.validate_exp = false;
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            verified: Arc::default(),
        }
    }

    /// A signed token for `sub` with `roles`, valid for `ttl`.
    pub fn issue(&self, sub: &str, roles: &[Role], ttl: Duration) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = Claims {
            sub: sub.to_string(),
            roles: roles.iter().map(|role| role.as_str().to_string()).collect(),
            exp: (now + ttl).as_secs(),
            iat: Some(now.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The caller `token` speaks for, if it is signed with this secret and unexpired.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        self.verify_at(token, now_seconds())
    }

    /// [`TokenKeys::verify`] at `now`: a token verified before is answered from memory while it
    /// is unexpired at `now`; otherwise it is verified (signature, algorithm, claims) and
    /// remembered. Only a token that passes is remembered, so a bad one costs its full check
    /// every time, and only what the signature covers is trusted from memory.
    fn verify_at(&self, token: &str, now: u64) -> Result<Caller, ApiError> {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(remembered) = verified.get(token) {
            if unexpired(remembered.exp, now) {
                return Ok(remembered.caller.clone());
            }
            verified.remove(token);
        }
        drop(verified);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| ApiError::Unauthorized(format!("invalid token: {error}")))?
            .claims;
        if !unexpired(claims.exp, now) {
            return Err(ApiError::Unauthorized("invalid token: ExpiredSignature".into()));
        }
        if claims.sub.trim().is_empty() {
            return Err(ApiError::Unauthorized("invalid token: empty sub".into()));
        }
        // Roles this build does not know grant nothing.
        let roles = claims.roles.iter().filter_map(|name| Role::parse(name)).collect();
        let caller = Caller { id: claims.sub, roles };
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= REMEMBERED_TOKENS {
            verified.clear();
        }
        verified.insert(token.into(), Remembered { caller: caller.clone(), exp: claims.exp });
        Ok(caller)
    }
}

/// Who is calling: the verified `sub` and roles of the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub roles: Vec<Role>,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller holds `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        self.require_any(&[role])
    }

    /// 403 unless the caller holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|role| self.has(*role)) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        Err(ApiError::forbidden(format!("this needs the role {}", names.join(" or "))))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(Verified(caller)) = parts.extensions.remove::<Verified>() {
            return Ok(caller);
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
        state.tokens.verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&Secret::new("test-secret"))
    }

    #[test]
    fn it_should_accept_its_own_token() {
        let token = keys().issue("kim", &[Role::Customer], Duration::from_secs(60));
        assert_eq!(keys().verify(&token).unwrap(), Caller { id: "kim".into(), roles: vec![Role::Customer] });
    }

    #[test]
    fn it_should_reject_a_token_signed_with_another_secret() {
        let token = TokenKeys::new(&Secret::new("other")).issue("kim", &[Role::Admin], Duration::from_secs(60));
        assert!(matches!(keys().verify(&token), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn it_should_reject_an_expired_token() {
        let claims = Claims { sub: "kim".into(), roles: vec!["customer".into()], exp: 1_000, iat: None };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"test-secret"))
                .unwrap();
        assert!(matches!(keys().verify(&token), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn it_should_reject_an_unsigned_token() {
        // {"alg":"none","typ":"JWT"} . {"sub":"kim","roles":["admin"],"exp":9999999999} . (no signature)
        let token =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJraW0iLCJyb2xlcyI6WyJhZG1pbiJdLCJleHAiOjk5OTk5OTk5OTl9.";
        assert!(matches!(keys().verify(token), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn it_should_reject_a_tampered_token() {
        let token = keys().issue("kim", &[Role::Customer], Duration::from_secs(60));
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        // {"sub":"kim","roles":["admin"],"exp":9999999999}
        parts[1] = "eyJzdWIiOiJraW0iLCJyb2xlcyI6WyJhZG1pbiJdLCJleHAiOjk5OTk5OTk5OTl9".into();
        assert!(matches!(keys().verify(&parts.join(".")), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn it_should_remember_a_verified_token_until_it_expires_and_never_a_bad_one() {
        let keys = keys();
        let now = now_seconds();
        let token = keys.issue("kim", &[Role::Customer], Duration::from_secs(60));
        let kim = Caller { id: "kim".into(), roles: vec![Role::Customer] };
        assert_eq!(keys.verify_at(&token, now).unwrap(), kim);
        assert!(keys.verified.lock().unwrap().contains_key(token.as_str()), "remembered");
        assert_eq!(keys.verify_at(&token, now + 60 + LEEWAY_SECONDS).unwrap(), kim, "unexpired, with the leeway");
        let late = keys.verify_at(&token, now + 61 + LEEWAY_SECONDS);
        assert!(matches!(late, Err(ApiError::Unauthorized(ref message)) if message.contains("Expired")), "{late:?}");
        assert!(keys.verified.lock().unwrap().is_empty(), "an expired token is forgotten");

        let forged = TokenKeys::new(&Secret::new("other")).issue("kim", &[Role::Admin], Duration::from_secs(60));
        assert!(matches!(keys.verify_at(&forged, now), Err(ApiError::Unauthorized(_))));
        assert!(keys.verified.lock().unwrap().is_empty(), "a bad token is never remembered");
    }

    #[test]
    fn it_should_remember_a_bounded_number_of_tokens() {
        let keys = keys();
        for n in 0..=REMEMBERED_TOKENS {
            keys.verify(&keys.issue(&format!("c{n}"), &[Role::Customer], Duration::from_secs(60))).unwrap();
        }
        assert_eq!(keys.verified.lock().unwrap().len(), 1, "forgotten together at the bound, then the last");
    }

    #[test]
    fn it_should_grant_nothing_for_unknown_roles() {
        let claims = Claims { sub: "kim".into(), roles: vec!["emperor".into()], exp: u64::MAX / 2, iat: None };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"test-secret"))
                .unwrap();
        assert_eq!(keys().verify(&token).unwrap().roles, vec![]);
    }
}
