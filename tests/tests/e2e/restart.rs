//! Restarting the server loses nothing: views and checkpoints resume where they were.

use reqwest::StatusCode;
use serde_json::json;
use storming_api::auth::Role;
use storming_api::workers;
use storming_projections::runtime::checkpoint;
use storming_projections::runtime::generations::worker_key;

use crate::on_both_backends;
use crate::support::{TestApp, TestDb};

on_both_backends!(a_restart_resumes_every_worker_where_it_stopped);

async fn a_restart_resumes_every_worker_where_it_stopped(db: TestDb) {
    let app = TestApp::start(&db).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1000).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED);
    let rental_id = rented.id();
    let before =
        app.get(&kim, &format!("/queries/book-rental/rentals/{rental_id}?min_position={}", rented.position())).await;
    let head = app.state().log.head().await.unwrap();
    let names: Vec<&str> = workers::projections().iter().map(|projection| projection.name()).collect();
    for name in &names {
        app.eventually("every view reached the head", || async {
            (checkpoint(&app.state().db.read_side, &worker_key(name, 1)).await.unwrap().cursor.position == head)
                .then_some(())
        })
        .await;
    }
    app.stop().await;

    let app = TestApp::start(&db).await;
    // Before anything new happens: the same checkpoints, the same view.
    for name in &names {
        assert_eq!(
            checkpoint(&app.state().db.read_side, &worker_key(name, 1)).await.unwrap().cursor.position,
            head,
            "{name} resumed"
        );
    }
    let after = app.get(&kim, &format!("/queries/book-rental/rentals/{rental_id}")).await;
    assert_eq!(after.body, before.body);

    // The workers go on from there, and nothing is applied twice.
    let returned = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{rental_id}/return"), None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);
    let status =
        app.get(&kim, &format!("/queries/book-rental/rentals/{rental_id}?min_position={}", returned.position())).await;
    assert_eq!(status.body["status"], "RETURNED");
    let page = app.get(&kim, &format!("/queries/my-page?min_position={}", returned.position())).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1, "{}", page.body);
    assert_eq!(page.body["items"][0]["status"], "RETURNED");
    app.stop().await;
}
