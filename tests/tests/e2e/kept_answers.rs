//! Queries answered from the answers kept until their view moves (ADR 39): given again while the
//! view stands still, never once it has moved, never past the time the clock changes them, and
//! never to a caller the answer's route would refuse.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::json;
use storming_api::auth::Role;
use storming_api::ServeOptions;

use crate::on_both_backends;
use crate::support::{config, TestApp, TestDb};

on_both_backends!(a_kept_answer_is_given_while_its_view_stands_still_and_never_once_it_moved);

async fn a_kept_answer_is_given_while_its_view_stands_still_and_never_once_it_moved(db: TestDb) {
    // Arrange: kim has rented a book, and the view shows it.
    let app = TestApp::start(&db).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let lee = app.token("lee", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1000).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    let rental = format!("/queries/book-rental/rentals/{}", rented.id());
    let first = app.get(&kim, &format!("{rental}?min_position={}", rented.position())).await;
    assert_eq!((first.status, &first.body["status"]), (StatusCode::OK, &json!("RENTED")), "{}", first.body);

    // Act and assert: asked again at the same reading, the answer is the kept one.
    let given = app.state().answers.given();
    let again = app.get(&kim, &format!("{rental}?min_position={}", rented.position())).await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["x-projection-position"], first.headers["x-projection-position"]);
    assert_eq!(app.state().answers.given(), given + 1, "the second answer was the kept one");
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("storming_query_answers_total{from=\"kept\"}"), "{metrics}");

    // A kept answer is still refused to a customer who may not see it, and a page of one's own is
    // kept for its caller only.
    let other = app.get(&lee, &rental).await;
    assert_eq!((other.status, other.code()), (StatusCode::FORBIDDEN, "forbidden"), "{}", other.body);
    let charges = format!("/queries/payments?reference_id={}&min_position={}", rented.id(), rented.position());
    let kims = app.get(&kim, &charges).await;
    assert_eq!(kims.body["items"].as_array().map(Vec::len), Some(1), "{}", kims.body);
    assert_eq!(app.get(&kim, &charges).await.body, kims.body);
    let lees = app.get(&lee, &charges).await;
    assert_eq!(lees.body["items"], json!([]), "{}", lees.body);
    let payment = format!("/queries/payments/{}", kims.body["items"][0]["id"].as_str().unwrap());
    assert_eq!(app.get(&kim, &payment).await.status, StatusCode::OK);
    let given = app.state().answers.given();
    assert_eq!(app.get(&kim, &payment).await.status, StatusCode::OK);
    let refused = app.get(&lee, &payment).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "forbidden"), "{}", refused.body);
    assert_eq!(app.state().answers.given(), given + 2, "both were given the kept answer");

    // Once the view has moved, the kept answer is not given: the return shows at once.
    let returned = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/return", rented.id()), None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);
    let after = app.get(&kim, &format!("{rental}?min_position={}", returned.position())).await;
    assert_eq!(after.body["status"], "RETURNED", "{}", after.body);
    let list = app.get(&kim, &format!("/queries/book-rental/rentals?min_position={}", returned.position())).await;
    assert_eq!(list.body["items"][0]["status"], "RETURNED", "{}", list.body);
    app.stop().await;
}

on_both_backends!(a_kept_rental_turns_overdue_at_its_due_time);

async fn a_kept_rental_turns_overdue_at_its_due_time(db: TestDb) {
    // Arrange: rentals due a second after they begin; kim's is read and kept before it is due.
    let mut config = config(&db, &[]);
    config.rental_terms.rental_period = TimeDelta::seconds(1);
    let app = TestApp::start_with(config, ServeOptions { workers: true }).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1000).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    let rental = format!("/queries/book-rental/rentals/{}?min_position={}", rented.id(), rented.position());
    let list = format!("/queries/book-rental/rentals?min_position={}", rented.position());
    let read = app.get(&kim, &rental).await;
    assert_eq!(read.body["overdue"], false, "{}", read.body);
    assert_eq!(app.get(&kim, &list).await.body["items"][0]["overdue"], false);
    let given = app.state().answers.given();
    assert_eq!(app.get(&kim, &rental).await.body["overdue"], false);
    assert_eq!(app.get(&kim, &list).await.body["items"][0]["overdue"], false);
    assert_eq!(app.state().answers.given(), given + 2, "both were kept");

    // Act and assert: with no event since, both read as overdue once the due time has passed.
    let positions = app
        .eventually("the rental reads as overdue", || async {
            let one = app.get(&kim, &rental).await;
            let page = app.get(&kim, &list).await;
            (one.body["overdue"] == true && page.body["items"][0]["overdue"] == true)
                .then(|| (one.headers["x-projection-position"].clone(), page.headers["x-projection-position"].clone()))
        })
        .await;
    assert_eq!(positions.0, read.headers["x-projection-position"], "the view did not move: the clock changed it");
    app.stop().await;
}

on_both_backends!(a_lookup_that_found_nothing_is_kept_until_its_view_moves);

async fn a_lookup_that_found_nothing_is_kept_until_its_view_moves(db: TestDb) {
    // Arrange: kim has no profile yet, and has been told so once.
    let app = TestApp::start(&db).await;
    let kim = app.token("kim", &[Role::Customer]);
    let first = app.get(&kim, "/queries/customers/me").await;
    assert_eq!((first.status, first.code()), (StatusCode::NOT_FOUND, "customer-not-found"), "{}", first.body);

    // Act and assert: asked again while the view stands still, the nothing is the kept one.
    let given = app.state().answers.given();
    let again = app.get(&kim, "/queries/customers/me").await;
    assert_eq!((again.status, again.code()), (StatusCode::NOT_FOUND, "customer-not-found"), "{}", again.body);
    assert_eq!(app.state().answers.given(), given + 1, "the second 404 was the kept nothing");

    // Once the view has moved, the profile is found.
    let registered = app.post(Some(&kim), "/commands/customers", Some(json!({"name": "Kim Minji"}))).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    let me = app.get(&kim, &format!("/queries/customers/me?min_position={}", registered.position())).await;
    assert_eq!((me.status, &me.body["name"]), (StatusCode::OK, &json!("Kim Minji")), "{}", me.body);
    app.stop().await;
}
