//! The edges: every route × every role (and owner / non-owner) against the access rules of
//! API.md, driven by the OpenAPI document so that a route added without an entry fails the test;
//! rate limiting; tokens that must not pass.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use storming_api::auth::Role;
use storming_api::ServeOptions;

use crate::on_both_backends;
use crate::support::{config, TestApp, TestDb};

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// Anyone, without a token.
    Public,
    /// A token with one of these roles.
    Roles(&'static [Role]),
    /// The owner of the resource (kim, a customer), or a token with one of these roles.
    OwnerOr(&'static [Role]),
}

const ANY_ROLE: &[Role] = &Role::ALL;

/// The access rules of API.md, one entry per route.
const MATRIX: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/metrics", Access::Public),
    ("POST", "/commands/customers", Access::Roles(&[Role::Customer])),
    ("GET", "/queries/customers/me", Access::Roles(&[Role::Customer])),
    ("POST", "/commands/book-rental/books", Access::Roles(&[Role::BookManager])),
    ("GET", "/queries/book-rental/books", Access::Roles(ANY_ROLE)),
    ("GET", "/queries/book-rental/books/{book_id}", Access::Roles(ANY_ROLE)),
    ("POST", "/commands/book-rental/rentals", Access::Roles(&[Role::Customer])),
    ("POST", "/commands/book-rental/rentals/{id}/cancel", Access::OwnerOr(&[])),
    ("POST", "/commands/book-rental/rentals/{id}/return", Access::OwnerOr(&[])),
    ("GET", "/queries/book-rental/rentals/{id}", Access::OwnerOr(&[Role::BookManager])),
    ("GET", "/queries/book-rental/rentals", Access::Roles(&[Role::Customer, Role::BookManager])),
    ("GET", "/queries/my-page", Access::Roles(&[Role::Customer])),
    ("GET", "/queries/payments/{id}", Access::OwnerOr(&[Role::Admin])),
    ("GET", "/queries/payments", Access::Roles(ANY_ROLE)),
    ("GET", "/audit/events", Access::Roles(&[Role::Admin])),
    ("GET", "/audit/streams/{aggregate_type}/{aggregate_id}", Access::Roles(&[Role::Admin])),
    ("GET", "/audit/streams/{aggregate_type}/{aggregate_id}/state", Access::Roles(&[Role::Admin])),
    ("GET", "/audit/correlations/{correlation_id}", Access::Roles(&[Role::Admin])),
    ("GET", "/admin/projections", Access::Roles(&[Role::Admin])),
    ("POST", "/admin/projections/{name}/rebuild", Access::Roles(&[Role::Admin])),
];

#[test]
fn every_documented_route_has_an_access_rule_and_every_rule_a_route() {
    let (_, document) = storming_api::routes();
    let documented: BTreeSet<(String, String)> = document
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            methods
                .into_iter()
                .filter(|(_, present)| *present)
                .map(move |(method, _)| (method.to_string(), path.clone()))
        })
        .collect();
    let ruled: BTreeSet<(String, String)> =
        MATRIX.iter().map(|(method, path, _)| (method.to_string(), path.to_string())).collect();
    let unruled: Vec<_> = documented.difference(&ruled).collect();
    let stale: Vec<_> = ruled.difference(&documented).collect();
    assert!(unruled.is_empty(), "routes without an access rule in MATRIX: {unruled:?}");
    assert!(stale.is_empty(), "rules for routes that do not exist: {stale:?}");
}

on_both_backends!(every_route_answers_every_role_as_its_access_rule_says);

async fn every_route_answers_every_role_as_its_access_rule_says(db: TestDb) {
    let app = TestApp::start(&db).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1000).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    let rental_id = rented.id();
    let payment_id = app
        .get(&kim, &format!("/queries/book-rental/rentals/{rental_id}?min_position={}", rented.position()))
        .await
        .body["payment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let concrete = |path: &str| {
        let id = if path.starts_with("/queries/payments/") { &payment_id } else { &rental_id };
        path.replace("{id}", id)
            .replace("{book_id}", &book_id)
            .replace("{aggregate_type}", "rental.book_copy")
            .replace("{aggregate_id}", &book_id)
            .replace("{correlation_id}", &rental_id)
            .replace("{name}", "payments")
    };
    let body = |path: &str| match path {
        "/commands/customers" => Some(json!({"name": "Someone"})),
        "/commands/book-rental/books" => Some(json!({"title": "Emma", "rental_fee": 900})),
        "/commands/book-rental/rentals" => Some(json!({"book_id": book_id})),
        _ => None,
    };
    let client = &app;
    let call = |method: &'static str, path: String, token: Option<String>| {
        let body = body(&path);
        async move {
            match (method, token) {
                ("GET", Some(token)) => client.get(&token, &path).await.status,
                ("GET", None) => reqwest::get(format!("{}{path}", client.base)).await.unwrap().status(),
                (_, token) => client.post(token.as_deref(), &path, body).await.status,
            }
        }
    };
    let mut wrong = Vec::<Value>::new();
    for (method, template, access) in MATRIX {
        let path = concrete(template);
        let anonymous = call(method, path.clone(), None).await;
        let expected_anonymous_ok = matches!(access, Access::Public);
        if expected_anonymous_ok != (anonymous != StatusCode::UNAUTHORIZED) {
            wrong.push(json!({"route": template, "caller": "no token", "status": anonymous.as_u16()}));
        }
        if let Access::Public = access {
            continue;
        }
        for role in Role::ALL {
            // A caller who is not kim holds only this role.
            let token = app.token(&format!("someone-{}", role.as_str()), &[role]);
            let allowed = match access {
                Access::Roles(roles) | Access::OwnerOr(roles) => roles.contains(&role),
                Access::Public => true,
            };
            let status = call(method, path.clone(), Some(token)).await;
            let refused = status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED;
            if allowed == refused {
                wrong.push(json!({"route": template, "caller": role.as_str(), "status": status.as_u16()}));
            }
        }
        if let Access::OwnerOr(_) = access {
            let status = call(method, path.clone(), Some(kim.clone())).await;
            if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
                wrong.push(json!({"route": template, "caller": "the owner", "status": status.as_u16()}));
            }
        }
    }
    assert!(wrong.is_empty(), "answers that break the access rules: {}", Value::Array(wrong));
    app.stop().await;
}

on_both_backends!(a_caller_over_its_rate_gets_429_with_retry_after);

async fn a_caller_over_its_rate_gets_429_with_retry_after(db: TestDb) {
    let limits = [("STORMING_RATE_LIMIT_PER_SECOND", "1"), ("STORMING_RATE_LIMIT_BURST", "3")];
    let app = TestApp::start_with(config(&db, &limits), ServeOptions { workers: false }).await;
    let kim = app.token("kim", &[Role::Customer]);
    for _ in 0..3 {
        assert_eq!(app.get(&kim, "/queries/book-rental/books").await.status, StatusCode::OK);
    }
    let limited = app.get(&kim, "/queries/book-rental/books").await;
    assert_eq!((limited.status, limited.code()), (StatusCode::TOO_MANY_REQUESTS, "rate-limited"));
    assert_eq!(limited.headers["retry-after"], "1");
    let lee = app.token("lee", &[Role::Customer]);
    assert_eq!(
        app.get(&lee, "/queries/book-rental/books").await.status,
        StatusCode::OK,
        "another caller has its own rate"
    );
    assert_eq!(
        reqwest::get(format!("{}/healthz", app.base)).await.unwrap().status(),
        StatusCode::OK,
        "health is not limited"
    );
    app.stop().await;
}

on_both_backends!(with_the_rate_limiter_on_a_caller_is_still_who_its_token_says);

/// The limiter verifies a token and hands the caller it found to the handler (ADR 28): a token it
/// could not verify must still be refused there, and a verified caller keep its own roles.
async fn with_the_rate_limiter_on_a_caller_is_still_who_its_token_says(db: TestDb) {
    let limits = [("STORMING_RATE_LIMIT_PER_SECOND", "1000"), ("STORMING_RATE_LIMIT_BURST", "1000")];
    let app = TestApp::start_with(config(&db, &limits), ServeOptions { workers: false }).await;
    let kim = app.token("kim", &[Role::Customer]);
    assert_eq!(app.get(&kim, "/queries/book-rental/rentals").await.status, StatusCode::OK);
    let registered =
        app.post(Some(&kim), "/commands/book-rental/books", Some(json!({"title": "Mine", "rental_fee": 1}))).await;
    assert_eq!(registered.status, StatusCode::FORBIDDEN, "a customer is not a book manager: {}", registered.body);
    let other_secret = storming_api::auth::TokenKeys::new(&storming_infra::config::Secret::new("not-the-secret"));
    let forged = other_secret.issue("kim", &[Role::BookManager], std::time::Duration::from_secs(600));
    let refused =
        app.post(Some(&forged), "/commands/book-rental/books", Some(json!({"title": "Forged", "rental_fee": 1}))).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    let manager = app.token("lee", &[Role::BookManager]);
    let registered = app
        .post(Some(&manager), "/commands/book-rental/books", Some(json!({"title": "Shelved", "rental_fee": 1})))
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    app.stop().await;
}

on_both_backends!(tokens_that_are_tampered_expired_wrongly_signed_or_unsigned_get_401);

async fn tokens_that_are_tampered_expired_wrongly_signed_or_unsigned_get_401(db: TestDb) {
    let app = TestApp::start_with(config(&db, &[]), ServeOptions { workers: false }).await;
    let valid = app.token("kim", &[Role::Customer]);
    let mut parts: Vec<String> = valid.split('.').map(String::from).collect();
    // {"sub":"kim","roles":["admin"],"exp":9999999999}
    parts[1] = "eyJzdWIiOiJraW0iLCJyb2xlcyI6WyJhZG1pbiJdLCJleHAiOjk5OTk5OTk5OTl9".into();
    let tampered = parts.join(".");
    let other_secret = storming_api::auth::TokenKeys::new(&storming_infra::config::Secret::new("not-the-secret"));
    let wrongly_signed = other_secret.issue("kim", &[Role::Admin], std::time::Duration::from_secs(600));
    // {"alg":"none","typ":"JWT"} . {"sub":"kim","roles":["admin"],"exp":9999999999} .
    let unsigned =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJraW0iLCJyb2xlcyI6WyJhZG1pbiJdLCJleHAiOjk5OTk5OTk5OTl9."
            .to_string();
    // {"alg":"HS256","typ":"JWT"} . {"sub":"kim","roles":["customer"],"exp":1000} . (any signature)
    let expired = format!(
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJraW0iLCJyb2xlcyI6WyJjdXN0b21lciJdLCJleHAiOjEwMDB9.{}",
        parts[2]
    );
    assert_eq!(app.get(&valid, "/queries/my-page").await.status, StatusCode::OK);
    for (what, token) in
        [("tampered", tampered), ("wrongly signed", wrongly_signed), ("alg none", unsigned), ("expired", expired)]
    {
        let answer = app.get(&token, "/audit/events").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "a {what} token");
        assert!(
            !answer.body.to_string().contains("not-the-secret")
                && !answer.body.to_string().contains("end-to-end-test-secret")
        );
    }
    app.stop().await;
}
