//! The shelf is the consistency boundary: customers racing for one copy end with one rental, and
//! nobody pays for the rentals they did not get.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use storming_api::auth::Role;
use storming_api::ServeOptions;

use crate::on_both_backends;
use crate::support::{config, count_of, Answer, TestApp, TestDb};

on_both_backends!(twenty_customers_racing_for_one_book_get_one_rental);

async fn twenty_customers_racing_for_one_book_get_one_rental(db: TestDb) {
    let app = TestApp::start(&db).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let admin = app.token("auditor", &[Role::Admin]);
    let book_id = app.shelved_book(&manager, "The last copy", 2000).await;

    let tokens: Vec<String> = (0..20).map(|i| app.token(&format!("customer-{i}"), &[Role::Customer])).collect();
    let attempts = tokens
        .iter()
        .map(|token| app.post(Some(token), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))));
    let answers = join_all(attempts).await;

    let created = answers.iter().filter(|answer| answer.status == StatusCode::CREATED).count();
    let refused: Vec<_> = answers.iter().filter(|answer| answer.status != StatusCode::CREATED).collect();
    assert_eq!(created, 1, "exactly one rental");
    assert_eq!(refused.len(), 19);
    for answer in &refused {
        assert_eq!((answer.status, answer.code()), (StatusCode::CONFLICT, "book-not-available"), "{}", answer.body);
    }

    // One BookRented in the log for the copy.
    let stream = app.get(&admin, &format!("/audit/streams/rental.book_copy/{book_id}")).await;
    let rentals =
        stream.body["items"].as_array().unwrap().iter().filter(|event| event["event_type"] == "BookRented").count();
    assert_eq!(rentals, 1);

    // In one process the rents of a copy take turns (ADR 47): each loser is refused on the
    // winner's rental before anything is charged, so no one is charged and then refunded.
    let types = app.log_types().await;
    let (approved, refunded) = (count_of(&types, "PaymentApproved"), count_of(&types, "PaymentRefunded"));
    assert_eq!((approved, refunded), (1, 0), "only the winner is charged ({approved} charged, {refunded} refunded)");
    app.stop().await;
}

on_both_backends!(a_process_sees_the_commands_another_process_stored);

/// Each process keeps aggregates in memory (`CachedStore`); a command must still decide on the
/// events another process stored since. Rent on A, return on B, rent again on A: A's cached copy
/// still says "rented", and only reading the events after it lets the second rental through.
async fn a_process_sees_the_commands_another_process_stored(db: TestDb) {
    let (a, b, book_id) = two_processes(&db).await;
    let reader = a.token("reader", &[Role::Customer]);
    let other = a.token("other-reader", &[Role::Customer]);

    let rented = rent(&a, &reader, &book_id).await;
    // B has never loaded the copy; A has it cached as rented.
    let returned = b.post(Some(&reader), &give_back(&rented), None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);

    let again = a.post(Some(&other), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(again.status, StatusCode::CREATED, "A decided on a stale copy: {}", again.body);
    // And B, whose cache now says "returned", must see A's second rental.
    let refused = b.post(Some(&reader), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "book-not-available"), "{}", refused.body);
    b.stop().await;
    a.stop().await;
}

on_both_backends!(a_return_decided_on_a_stale_copy_is_decided_again_on_what_another_process_stored);

/// A return is decided on the process's cached copy without reading the events stored after it
/// (ADR 46); when another process stored some, the return's append meets them and it is decided
/// again on a read. A has the copy cached as rented; B returns the rental; A's return of it then
/// gets the answer B gives, and the copy holds one return.
async fn a_return_decided_on_a_stale_copy_is_decided_again_on_what_another_process_stored(db: TestDb) {
    let (a, b, book_id) = two_processes(&db).await;
    let admin = a.token("auditor", &[Role::Admin]);
    let reader = a.token("reader", &[Role::Customer]);
    let give_back = give_back(&rent(&a, &reader, &book_id).await);

    let returned = b.post(Some(&reader), &give_back, None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);
    let on_a = a.post(Some(&reader), &give_back, None).await;
    let on_b = b.post(Some(&reader), &give_back, None).await;

    assert_eq!((on_a.status, on_a.code()), (on_b.status, on_b.code()), "A: {}, B: {}", on_a.body, on_b.body);
    assert_eq!(on_a.status, StatusCode::CONFLICT, "{}", on_a.body);
    let stream = a.get(&admin, &format!("/audit/streams/rental.book_copy/{book_id}")).await;
    let returns =
        stream.body["items"].as_array().unwrap().iter().filter(|event| event["event_type"] == "BookReturned").count();
    assert_eq!(returns, 1);
    b.stop().await;
    a.stop().await;
}

on_both_backends!(a_refusal_on_a_stale_copy_is_checked_against_what_another_process_stored);

/// A refusal decided on a cached copy is decided again on a read before it is answered (ADR 46).
/// A has the copy cached as available (rented and returned there); B rents it out again; the
/// return of B's rental sent to A, whose cached copy has never heard of it, is accepted.
async fn a_refusal_on_a_stale_copy_is_checked_against_what_another_process_stored(db: TestDb) {
    let (a, b, book_id) = two_processes(&db).await;
    let reader = a.token("reader", &[Role::Customer]);
    let other = a.token("other-reader", &[Role::Customer]);
    let returned = a.post(Some(&reader), &give_back(&rent(&a, &reader, &book_id).await), None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);

    let again = rent(&b, &other, &book_id).await;
    let returned = a.post(Some(&other), &give_back(&again), None).await;

    assert_eq!(returned.status, StatusCode::OK, "A refused on a stale copy: {}", returned.body);
    b.stop().await;
    a.stop().await;
}

/// Two servers on one database, A with every worker and B without any, and a book shelved
/// through A.
async fn two_processes(db: &TestDb) -> (TestApp, TestApp, String) {
    let a = TestApp::start(db).await;
    let b = TestApp::start_with(config(db, &[]), ServeOptions { workers: false }).await;
    let manager = a.token("librarian", &[Role::BookManager]);
    let book_id = a.shelved_book(&manager, "Two processes", 1000).await;
    (a, b, book_id)
}

/// The rental of `book_id` by `token`'s customer, through `app`.
async fn rent(app: &TestApp, token: &str, book_id: &str) -> Answer {
    let rented = app.post(Some(token), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    rented
}

/// The path that returns `rented`'s rental.
fn give_back(rented: &Answer) -> String {
    format!("/commands/book-rental/rentals/{}/return", rented.id())
}
