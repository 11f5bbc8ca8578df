//! Each rule of the book-rental flow over HTTP, rejections included: the right status and code,
//! and nothing stored for a refused command.

use reqwest::StatusCode;
use serde_json::json;
use storming_api::auth::Role;
use storming_api::ServeOptions;

use crate::on_both_backends;
use crate::support::{config, TestApp, TestDb};

on_both_backends!(a_book_cannot_be_rented_before_the_shelf_policy_ran);

async fn a_book_cannot_be_rented_before_the_shelf_policy_ran(db: TestDb) {
    // Without workers, nothing shelves the registered book.
    let app = TestApp::start_with(config(&db, &[]), ServeOptions { workers: false }).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let registered = app
        .post(Some(&manager), "/commands/book-rental/books", Some(json!({"title": "Dune", "rental_fee": 900})))
        .await;
    assert_eq!(registered.status, StatusCode::CREATED);
    let book_id = registered.id();

    let early = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!((early.status, early.code()), (StatusCode::NOT_FOUND, "book-not-found"), "{}", early.body);
    app.stop().await;

    // Once the policy has run, the same request succeeds.
    let app = TestApp::start(&db).await;
    app.eventually("the shelf policy shelved the book", || async {
        let book = app.get(&kim, &format!("/queries/book-rental/books/{book_id}")).await;
        (book.body["on_shelf"] == true).then_some(())
    })
    .await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    app.stop().await;
}

on_both_backends!(the_edge_refuses_what_it_must);

async fn the_edge_refuses_what_it_must(db: TestDb) {
    let app = TestApp::start(&db).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1000).await;
    let rent = json!({"book_id": book_id});

    let anonymous = app.post(None, "/commands/book-rental/rentals", Some(rent.clone())).await;
    assert_eq!((anonymous.status, anonymous.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    assert_eq!(anonymous.headers["content-type"], "application/problem+json");
    let forged = app.post(Some("not.a.token"), "/commands/book-rental/rentals", Some(rent.clone())).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let anonymous_query = app.get("", "/queries/book-rental/books").await;
    assert_eq!(anonymous_query.status, StatusCode::UNAUTHORIZED);

    let as_manager = app.post(Some(&manager), "/commands/book-rental/rentals", Some(rent.clone())).await;
    assert_eq!((as_manager.status, as_manager.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let customer_registers_book =
        app.post(Some(&kim), "/commands/book-rental/books", Some(json!({"title": "X", "rental_fee": 1}))).await;
    assert_eq!(customer_registers_book.status, StatusCode::FORBIDDEN);
    let customer_audits = app.get(&kim, "/audit/events").await;
    assert_eq!(customer_audits.status, StatusCode::FORBIDDEN);

    for fee in [0, -5] {
        let free = app
            .post(Some(&manager), "/commands/book-rental/books", Some(json!({"title": "Free", "rental_fee": fee})))
            .await;
        assert_eq!(
            (free.status, free.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation-failed"),
            "{}",
            free.body
        );
        assert_eq!(free.body["field"], "rental_fee");
    }
    let untitled =
        app.post(Some(&manager), "/commands/book-rental/books", Some(json!({"title": "  ", "rental_fee": 10}))).await;
    assert_eq!((untitled.status, untitled.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("title")));

    let malformed =
        app.post_raw(&kim, "/commands/book-rental/rentals", Some("application/json"), "{\"book_id\": ").await;
    assert_eq!((malformed.status, malformed.code()), (StatusCode::BAD_REQUEST, "malformed-json"));
    let unknown_field =
        app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id, "price": 0}))).await;
    assert_eq!((unknown_field.status, unknown_field.code()), (StatusCode::BAD_REQUEST, "invalid-body"));
    let wrong_type = app
        .post(Some(&manager), "/commands/book-rental/books", Some(json!({"title": "Dune", "rental_fee": "cheap"})))
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    let not_json = app.post_raw(&kim, "/commands/book-rental/rentals", Some("text/plain"), "book please").await;
    assert_eq!((not_json.status, not_json.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type"));
    let huge = app
        .post_raw(
            &kim,
            "/commands/book-rental/rentals",
            Some("application/json"),
            format!("{{\"book_id\": \"{}\"}}", "x".repeat(100_000)),
        )
        .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    let not_a_book = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": "dune"}))).await;
    assert_eq!(
        (not_a_book.status, not_a_book.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("book_id"))
    );
    let unknown_book =
        app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": uuid::Uuid::now_v7()}))).await;
    assert_eq!((unknown_book.status, unknown_book.code()), (StatusCode::NOT_FOUND, "book-not-found"));
    let bad_limit = app.get(&kim, "/queries/book-rental/books?limit=0").await;
    assert_eq!((bad_limit.status, bad_limit.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));

    // None of that stored anything: the log holds the registration and the shelving only.
    assert_eq!(app.log_types().await, ["BookRegistered", "BookShelved"]);
    app.stop().await;
}

on_both_backends!(rentals_follow_the_rules_of_the_shelf);

async fn rentals_follow_the_rules_of_the_shelf(db: TestDb) {
    // A cancel window of zero: any cancellation comes too late.
    let app = TestApp::start_with(
        config(&db, &[("STORMING_RENTAL_CANCEL_WINDOW_MINUTES", "0")]),
        ServeOptions { workers: true },
    )
    .await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let lee = app.token("lee", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1000).await;

    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED);
    let rental_id = rented.id();

    let taken = app.post(Some(&lee), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!((taken.status, taken.code()), (StatusCode::CONFLICT, "book-not-available"));

    let strangers_cancel =
        app.post(Some(&lee), &format!("/commands/book-rental/rentals/{rental_id}/cancel"), None).await;
    assert_eq!(strangers_cancel.status, StatusCode::FORBIDDEN);
    let strangers_return =
        app.post(Some(&lee), &format!("/commands/book-rental/rentals/{rental_id}/return"), None).await;
    assert_eq!(strangers_return.status, StatusCode::FORBIDDEN);
    let strangers_view =
        app.get(&lee, &format!("/queries/book-rental/rentals/{rental_id}?min_position={}", rented.position())).await;
    assert_eq!(strangers_view.status, StatusCode::FORBIDDEN);
    let strangers_list = app.get(&lee, "/queries/book-rental/rentals?customer_id=kim").await;
    assert_eq!(strangers_list.status, StatusCode::FORBIDDEN);

    let late_cancel = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{rental_id}/cancel"), None).await;
    assert_eq!((late_cancel.status, late_cancel.code()), (StatusCode::CONFLICT, "cancel-window-closed"));

    let returned = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{rental_id}/return"), None).await;
    assert_eq!(returned.status, StatusCode::OK);
    let cancel_after_return =
        app.post(Some(&kim), &format!("/commands/book-rental/rentals/{rental_id}/cancel"), None).await;
    assert_eq!((cancel_after_return.status, cancel_after_return.code()), (StatusCode::CONFLICT, "invalid-transition"));
    let return_again = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{rental_id}/return"), None).await;
    assert_eq!((return_again.status, return_again.code()), (StatusCode::CONFLICT, "invalid-transition"));
    let unknown =
        app.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/return", uuid::Uuid::now_v7()), None).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "rental-not-found"));

    // Lists: a customer sees only their own; a book manager sees all, filtered.
    let again = app.post(Some(&lee), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(again.status, StatusCode::CREATED);
    let kims = app.get(&kim, &format!("/queries/book-rental/rentals?min_position={}", again.position())).await;
    let ids: Vec<&str> = kims.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [rental_id.as_str()]);
    let all = app
        .get(&manager, &format!("/queries/book-rental/rentals?book_id={book_id}&min_position={}", again.position()))
        .await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    let rented_now = app.get(&manager, "/queries/book-rental/rentals?status=RENTED").await;
    assert_eq!(rented_now.body["items"][0]["customer_id"], "lee");
    let first_page = app.get(&manager, "/queries/book-rental/rentals?limit=1").await;
    let cursor = first_page.body["next"].as_str().expect("a second page").to_string();
    let second_page = app.get(&manager, &format!("/queries/book-rental/rentals?limit=1&after={cursor}")).await;
    assert_eq!(second_page.body["items"].as_array().unwrap().len(), 1);
    assert_ne!(second_page.body["items"][0]["id"], first_page.body["items"][0]["id"]);
    assert!(second_page.body["next"].is_null());
    app.stop().await;
}

on_both_backends!(a_customer_registers_once);

async fn a_customer_registers_once(db: TestDb) {
    let app = TestApp::start(&db).await;
    let kim = app.token("kim", &[Role::Customer]);
    let first =
        app.post(Some(&kim), "/commands/customers", Some(json!({"name": "Kim Minji", "phone": "010-1234-5678"}))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = app.post(Some(&kim), "/commands/customers", Some(json!({"name": "Kim"}))).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "customer-already-registered"));
    let me = app.get(&kim, &format!("/queries/customers/me?min_position={}", first.position())).await;
    assert_eq!(me.body["name"], "Kim Minji");
    let page = app.get(&kim, "/queries/my-page").await;
    assert_eq!(page.body["profile"]["phone"], "010-1234-5678");
    assert_eq!(
        (&page.body["profile"]["name"], &page.body["items"]),
        (&json!("Kim Minji"), &json!([])),
        "a profile alone"
    );
    app.stop().await;
}

on_both_backends!(lists_keep_their_order_text_nulls_and_pages);

/// The lists' pages are read from the view's rows (on SQLite stepped in place, ADR 28; on
/// PostgreSQL a row each, as they arrive): their order, text of any kind, missing values, empty
/// lists and the cursor between pages are as the rows are.
async fn lists_keep_their_order_text_nulls_and_pages(db: TestDb) {
    let app = TestApp::start(&db).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let titles = ["Plain", "Quote \" and back\\slash", "한국어 / emoji 📚 / tab\there"];
    let mut rentals = Vec::new();
    let mut last = 0;
    for title in titles {
        let book_id = app.shelved_book(&manager, title, 1000).await;
        let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
        assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
        rentals.push(rented.id());
        last = rented.position();
    }
    let returned = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/return", rentals[0]), None).await;
    assert_eq!(returned.status, StatusCode::OK);
    last = last.max(returned.position());

    let list = app.get(&kim, &format!("/queries/book-rental/rentals?min_position={last}")).await;
    let items = list.body["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|item| item["id"].as_str().unwrap()).collect();
    assert_eq!(ids, rentals.iter().map(String::as_str).collect::<Vec<_>>(), "oldest first");
    let shown: Vec<&str> = items.iter().map(|item| item["title"].as_str().unwrap()).collect();
    assert_eq!(shown, titles);
    assert!(items[0]["returned_at"].is_string() && items[1]["returned_at"].is_null());
    assert!(items.iter().all(|item| item["cancelled_at"].is_null() && item["fee"] == 1000 && item["overdue"] == false));

    let first = app.get(&kim, &format!("/queries/my-page?limit=2&min_position={last}")).await;
    let newest: Vec<&str> = first.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(newest, [rentals[2].as_str(), rentals[1].as_str()], "newest first");
    assert!(first.body["profile"].is_null(), "kim rents without a profile: {}", first.body);
    assert_eq!(first.body["items"][0]["title"], titles[2]);
    let cursor = first.body["next"].as_str().expect("a second page");
    let second = app.get(&kim, &format!("/queries/my-page?limit=2&after={cursor}")).await;
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        (second.body["items"][0]["id"].as_str(), &second.body["items"][0]["status"]),
        (Some(rentals[0].as_str()), &json!("RETURNED"))
    );
    assert!(second.body["next"].is_null());

    // Registered, kim's pages carry the profile beside the same rows.
    let registered = app.post(Some(&kim), "/commands/customers", Some(json!({"name": "Kim", "phone": null}))).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    let page =
        app.get(&kim, &format!("/queries/my-page?limit=2&after={cursor}&min_position={}", registered.position())).await;
    assert_eq!((&page.body["profile"]["name"], &page.body["profile"]["phone"]), (&json!("Kim"), &json!(null)));
    assert_eq!(page.body["items"], second.body["items"]);

    let lee = app.token("lee", &[Role::Customer]);
    let empty = app.get(&lee, &format!("/queries/my-page?min_position={last}")).await;
    assert_eq!((empty.status, &empty.body["items"]), (StatusCode::OK, &json!([])));
    let none = app.get(&lee, &format!("/queries/book-rental/rentals?min_position={last}")).await;
    assert_eq!((none.status, &none.body["items"], &none.body["next"]), (StatusCode::OK, &json!([]), &json!(null)));
    let unknown = app.get(&kim, &format!("/queries/book-rental/rentals/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.stop().await;
}
