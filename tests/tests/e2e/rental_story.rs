//! The whole book-rental story, as the issue tells it.

use reqwest::StatusCode;
use serde_json::json;
use storming_api::auth::Role;

use crate::on_both_backends;
use crate::support::{TestApp, TestDb};

on_both_backends!(the_rental_story_runs_end_to_end);

async fn the_rental_story_runs_end_to_end(db: TestDb) {
    let app = TestApp::start(&db).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let admin = app.token("auditor", &[Role::Admin]);

    // A book manager registers a book; it appears in the catalog once the shelf policy ran.
    let registered = app
        .post(
            Some(&manager),
            "/commands/book-rental/books",
            Some(json!({"title": "Dune", "author": "Frank Herbert", "rental_fee": 1500})),
        )
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    let book_id = registered.id();
    assert_eq!(registered.headers["location"], format!("/queries/book-rental/books/{book_id}").as_str());
    let catalog = app
        .eventually("the book is rentable", || async {
            let page = app.get(&kim, "/queries/book-rental/books?available=true").await;
            page.body["items"].as_array().filter(|items| !items.is_empty()).map(|items| items[0].clone())
        })
        .await;
    assert_eq!(catalog["id"], book_id.as_str());
    assert_eq!(catalog["title"], "Dune");
    assert_eq!(catalog["rental_fee"], 1500);
    assert_eq!(catalog["availability"], "AVAILABLE");

    // The customer rents it: RENTED and PAID at once (read-your-writes), and a my-page row.
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    let rental_id = rented.id();
    let status =
        app.get(&kim, &format!("/queries/book-rental/rentals/{rental_id}?min_position={}", rented.position())).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    let view_position: i64 = status.headers["x-projection-position"].to_str().unwrap().parse().unwrap();
    assert!(view_position >= rented.position());
    assert_eq!(status.body["status"], "RENTED");
    assert_eq!(status.body["payment_status"], "PAID");
    assert_eq!(status.body["fee"], 1500);
    assert_eq!(status.body["customer_id"], "kim");
    assert_eq!(status.body["title"], "Dune");
    assert_eq!(status.body["overdue"], false);
    let rented_at = chrono::DateTime::parse_from_rfc3339(status.body["rented_at"].as_str().unwrap()).unwrap();
    let due_at = chrono::DateTime::parse_from_rfc3339(status.body["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(due_at - rented_at, chrono::TimeDelta::days(14));

    let my_page = app.get(&kim, &format!("/queries/my-page?min_position={}", rented.position())).await;
    assert_eq!(my_page.body["items"][0]["flow"], "book-rental");
    assert_eq!(my_page.body["items"][0]["id"], rental_id.as_str());
    assert_eq!(my_page.body["items"][0]["status"], "RENTED");
    assert_eq!(my_page.body["items"][0]["payment_status"], "PAID");
    assert_eq!(my_page.body["items"][0]["amount"], 1500);
    let book = app.get(&kim, &format!("/queries/book-rental/books/{book_id}?min_position={}", rented.position())).await;
    assert_eq!(book.body["availability"], "RENTED");
    assert_eq!(book.body["current_rental_id"], rental_id.as_str());

    // The customer returns it.
    let returned = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{rental_id}/return"), None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);
    let status =
        app.get(&kim, &format!("/queries/book-rental/rentals/{rental_id}?min_position={}", returned.position())).await;
    assert_eq!(status.body["status"], "RETURNED");
    assert!(status.body["returned_at"].is_string());

    // Another rental, cancelled: CANCELLED, and the refund policy makes it REFUNDED.
    let second = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let second_id = second.id();
    let cancelled = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{second_id}/cancel"), None).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let status =
        app.get(&kim, &format!("/queries/book-rental/rentals/{second_id}?min_position={}", cancelled.position())).await;
    assert_eq!(status.body["status"], "CANCELLED");
    app.eventually("the cancelled rental is refunded", || async {
        let status = app.get(&kim, &format!("/queries/book-rental/rentals/{second_id}")).await;
        (status.body["payment_status"] == "REFUNDED").then_some(())
    })
    .await;
    let row = app
        .eventually("my-page shows the refund", || async {
            let page = app.get(&kim, "/queries/my-page").await;
            let items = page.body["items"].as_array()?.clone();
            items.into_iter().find(|item| item["id"] == second_id.as_str() && item["payment_status"] == "REFUNDED")
        })
        .await;
    assert_eq!(row["status"], "CANCELLED");
    let payment = app
        .eventually("the payments view shows the refund", || async {
            let payments = app.get(&kim, &format!("/queries/payments?reference_id={second_id}")).await;
            (payments.body["items"][0]["status"] == "REFUNDED").then(|| payments.body["items"][0].clone())
        })
        .await;
    assert_eq!(payment["reference"]["flow"], "book-rental");
    assert_eq!(payment["amount"], 1500);

    // The audit of each rental's correlation id lists every event of its story, in order.
    let audit = app.get(&admin, &format!("/audit/correlations/{second_id}")).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let events = audit.body["items"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|event| event["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["PaymentApproved", "BookRented", "RentalCancelled", "PaymentRefunded"]);
    let positions: Vec<i64> = events.iter().map(|event| event["position"].as_i64().unwrap()).collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "in log order: {positions:?}");
    for event in events {
        assert_eq!(event["metadata"]["correlation_id"], second_id.as_str());
        assert!(!event["metadata"]["request_id"].as_str().unwrap().is_empty(), "{event}");
        assert!(!event["recorded_at"].as_str().unwrap().is_empty());
    }
    assert_eq!(events[1]["metadata"]["actor"], "kim");
    assert_eq!(events[3]["metadata"]["actor"], "policy/payment.refund_policy");
    let cancellation_id = format!("rental.book_copy/{book_id}/{}", events[2]["sequence"]);
    assert_eq!(
        events[3]["metadata"]["causation_id"],
        cancellation_id.as_str(),
        "the refund was caused by the cancellation"
    );

    let first_audit = app.get(&admin, &format!("/audit/correlations/{rental_id}")).await;
    let types: Vec<&str> = first_audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["PaymentApproved", "BookRented", "BookReturned"]);

    // The copy's state can be rebuilt at any version: after BookShelved and BookRented it is rented.
    let state = app.get(&admin, &format!("/audit/streams/rental.book_copy/{book_id}/state?version=2")).await;
    assert_eq!(state.body["state"]["Rented"]["rental"]["rental_id"], rental_id.as_str(), "{}", state.body);
    let stream = app.get(&admin, &format!("/audit/streams/rental.book_copy/{book_id}")).await;
    let types: Vec<&str> =
        stream.body["items"].as_array().unwrap().iter().map(|event| event["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["BookShelved", "BookRented", "BookReturned", "BookRented", "RentalCancelled"]);

    app.stop().await;
}
