//! Payment never takes money for nothing, against a fake provider started by each test: a down,
//! declining or slow provider records nothing; the breaker answers at once once open; refunds
//! happen exactly once through failures and restarts; an idempotency key charges once.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use storming_api::auth::Role;
use storming_api::health::{FOREIGN_COMMITS_HEARD, LISTENING_TO_OTHER_WRITERS};
use storming_api::ServeOptions;

use crate::fake_provider::{FakeProvider, Mode};
use crate::on_both_backends;
use crate::support::{config, count_of, TestApp, TestDb};

/// How many charges of commands whose events were not stored the process has refunded
/// (`GET /metrics`; 0 before the first). The recorder is one per test process, shared by the
/// servers and the tests running at once: a test reads how it moved.
async fn unrecorded_charges_refunded(app: &TestApp) -> u64 {
    use storming_infra::commands::UNRECORDED_CHARGES;

    let series = format!("{UNRECORDED_CHARGES}{{outcome=\"refunded\"}}");
    metric(app, &series).await.map_or(0, |refunded| refunded as u64)
}

/// A series of `GET /metrics` as `app` renders it. The recorder is shared by every server of the
/// test process, and a series set at scrape time shows the last scraping server's value: a test
/// waits for the value it expects rather than reading it once.
async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    let text = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(prefix.as_str())?.trim().parse().ok())
}

async fn app_with_provider(db: &TestDb, provider: &FakeProvider, extra: &[(&str, &str)]) -> TestApp {
    server_with_provider(db, provider, extra, ServeOptions { workers: true }).await
}

async fn server_with_provider(
    db: &TestDb,
    provider: &FakeProvider,
    extra: &[(&str, &str)],
    options: ServeOptions,
) -> TestApp {
    let mut settings = vec![("STORMING_PAYMENT_PROVIDER", "http"), ("STORMING_PAYMENT_URL", provider.url.as_str())];
    settings.extend_from_slice(extra);
    TestApp::start_with(config(db, &settings), options).await
}

on_both_backends!(a_provider_that_is_down_records_nothing_and_a_retry_succeeds_once_it_is_back);

async fn a_provider_that_is_down_records_nothing_and_a_retry_succeeds_once_it_is_back(db: TestDb) {
    let provider = FakeProvider::start(Mode::Fail).await;
    let app = app_with_provider(&db, &provider, &[]).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;
    let rent = json!({"book_id": book_id});

    let refused =
        app.post_keyed(Some(&kim), "/commands/book-rental/rentals", Some(rent.clone()), Some("rent-dune-1")).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "payment-unavailable"),
        "{}",
        refused.body
    );
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(app.log_types().await, ["BookRegistered", "BookShelved"], "no rental, payment or other event");
    let rentals = app.get(&kim, "/queries/book-rental/rentals").await;
    assert_eq!(rentals.body["items"].as_array().unwrap().len(), 0);

    // The same request, with the same key, once the provider is back.
    provider.set_mode(Mode::Approve);
    let rented = app.post_keyed(Some(&kim), "/commands/book-rental/rentals", Some(rent), Some("rent-dune-1")).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    assert_eq!(provider.charges(), 1);
    assert_eq!(app.log_types().await, ["BookRegistered", "BookShelved", "PaymentApproved", "BookRented"]);
    app.stop().await;
}

on_both_backends!(a_declined_payment_is_402_and_records_nothing);

async fn a_declined_payment_is_402_and_records_nothing(db: TestDb) {
    let provider = FakeProvider::start(Mode::Decline).await;
    let app = app_with_provider(&db, &provider, &[]).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    // On PostgreSQL the copy is then known current, and the rent decides on it without a read
    // (ADR 48): a refusal after the provider's answer is not decided again, which would ask twice.
    app.until_listening().await;
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;

    let declined = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(
        (declined.status, declined.code()),
        (StatusCode::PAYMENT_REQUIRED, "payment-declined"),
        "{}",
        declined.body
    );
    assert_eq!(app.log_types().await, ["BookRegistered", "BookShelved"]);
    assert_eq!(provider.authorization_calls(), 1, "the provider was asked once");
    let book = app.get(&kim, &format!("/queries/book-rental/books/{book_id}")).await;
    assert_eq!(book.body["availability"], "AVAILABLE");
    app.stop().await;
}

on_both_backends!(a_rental_the_store_refuses_after_its_charge_is_refunded_before_the_answer);

/// On PostgreSQL a rent's payment is stored in the rental's commit (ADR 18). When that commit fails
/// for a reason other than a lost race (here a trigger refuses the rental's row), the payment is
/// stored alone, so the charge has its record and is refunded before the 500. (On SQLite the
/// payment commits first, alone, and the same must hold.)
async fn a_rental_the_store_refuses_after_its_charge_is_refunded_before_the_answer(db: TestDb) {
    use storming_infra::db::StorePool;

    let provider = FakeProvider::start(Mode::Approve).await;
    let app = app_with_provider(&db, &provider, &[]).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;
    match &app.state().db.store {
        StorePool::Sqlite(pool) => {
            let refuse = "CREATE TRIGGER refuse_rentals BEFORE INSERT ON events \
                          WHEN NEW.aggregate_type = 'rental.book_copy' BEGIN SELECT RAISE(ABORT, 'refused'); END";
            sqlx::query(refuse).execute(pool).await.unwrap();
        }
        StorePool::Postgres(pool) => {
            let function = "CREATE FUNCTION refuse_rentals() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                            IF NEW.aggregate_type = 'rental.book_copy' THEN RAISE EXCEPTION 'refused'; END IF; \
                            RETURN NEW; END $$";
            sqlx::query(function).execute(pool).await.unwrap();
            let trigger = "CREATE TRIGGER refuse_rentals BEFORE INSERT ON events \
                           FOR EACH ROW EXECUTE FUNCTION refuse_rentals()";
            sqlx::query(trigger).execute(pool).await.unwrap();
        }
    }

    let refunded_before = unrecorded_charges_refunded(&app).await;

    let failed = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(
        (failed.status, failed.code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal-error"),
        "{}",
        failed.body
    );
    assert_eq!((provider.charges(), provider.refunds()), (1, 1), "charged, then refunded");
    // Tests running at once share the process's recorder: this one's refund is at least one more.
    assert!(unrecorded_charges_refunded(&app).await > refunded_before, "the refund is counted in /metrics");
    assert_eq!(app.log_types().await, ["BookRegistered", "BookShelved", "PaymentApproved", "PaymentRefunded"]);
    app.stop().await;
}

on_both_backends!(a_slow_provider_opens_the_breaker_which_then_answers_at_once_and_closes_again);

async fn a_slow_provider_opens_the_breaker_which_then_answers_at_once_and_closes_again(db: TestDb) {
    const TIMEOUT_MS: u64 = 1000;
    let provider = FakeProvider::start(Mode::Slow(Duration::from_secs(3))).await;
    let settings = [
        ("STORMING_PAYMENT_TIMEOUT_MS", "1000"),
        ("STORMING_PAYMENT_BREAKER_FAILURES", "3"),
        ("STORMING_PAYMENT_BREAKER_COOLDOWN_MS", "1500"),
    ];
    let app = app_with_provider(&db, &provider, &settings).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;
    let rent = || app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id})));

    // Concurrent requests wait for the timeout and fail; enough of them open the breaker.
    let slow = join_all((0..4).map(|_| rent())).await;
    assert!(slow.iter().all(|answer| answer.status == StatusCode::SERVICE_UNAVAILABLE));
    let calls_when_open = provider.authorization_calls();

    // Open: answered at once, without calling the provider, with a Retry-After.
    for _ in 0..5 {
        let started = Instant::now();
        let fast = rent().await;
        let elapsed = started.elapsed();
        assert_eq!((fast.status, fast.code()), (StatusCode::SERVICE_UNAVAILABLE, "payment-unavailable"));
        assert!(elapsed < Duration::from_millis(TIMEOUT_MS / 4), "answered in {elapsed:?} with the breaker open");
        let retry_after: u64 = fast.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    }
    assert_eq!(provider.authorization_calls(), calls_when_open, "an open breaker does not call the provider");
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    // The recorder is one per process (tests share it), so look at the monotonic counter.
    assert!(metrics.contains("storming_payment_breaker_transitions_total{to=\"open\"}"), "{metrics}");

    // Healthy again: after the cool-down a trial call goes through and closes the breaker.
    provider.set_mode(Mode::Approve);
    let rented = app
        .eventually("a trial call after the cool-down succeeds", || async {
            let answer = rent().await;
            (answer.status == StatusCode::CREATED).then_some(answer)
        })
        .await;
    assert_eq!(rented.status, StatusCode::CREATED);
    let other_book = app.shelved_book(&manager, "Emma", 900).await;
    let closed = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": other_book}))).await;
    assert_eq!(closed.status, StatusCode::CREATED, "the breaker is closed again");
    app.stop().await;
}

on_both_backends!(a_cancelled_rental_is_refunded_exactly_once_through_provider_failures_and_a_restart);

async fn a_cancelled_rental_is_refunded_exactly_once_through_provider_failures_and_a_restart(db: TestDb) {
    let provider = FakeProvider::start(Mode::Approve).await;
    let app = app_with_provider(&db, &provider, &[]).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    let rental_id = rented.id();

    provider.fail_next_refunds(4);
    let cancelled = app.post(Some(&kim), &format!("/commands/book-rental/rentals/{rental_id}/cancel"), None).await;
    assert_eq!(cancelled.status, StatusCode::OK);
    app.eventually("the refund policy has tried and failed twice", || async {
        (provider.refund_calls() >= 2).then_some(())
    })
    .await;
    app.stop().await;

    // A new process picks the refund up from its checkpoint and retries until confirmed.
    let app = app_with_provider(&db, &provider, &[]).await;
    app.eventually("the rental is refunded", || async {
        let status = app.get(&kim, &format!("/queries/book-rental/rentals/{rental_id}")).await;
        (status.body["payment_status"] == "REFUNDED").then_some(())
    })
    .await;
    assert!(provider.refund_calls() >= 5, "four failures, then the refund");
    assert_eq!(provider.refunds(), 1, "refunded once at the provider");
    assert_eq!(count_of(&app.log_types().await, "PaymentRefunded"), 1, "one PaymentRefunded");
    app.stop().await;
}

on_both_backends!(customers_racing_for_a_copy_behind_a_slow_provider_are_refused_before_they_are_charged);

/// While the first rent of a copy waits for its charge, the others wait for the copy's turn
/// (ADR 47) instead of deciding on a copy still free, charging, losing at the store and refunding.
async fn customers_racing_for_a_copy_behind_a_slow_provider_are_refused_before_they_are_charged(db: TestDb) {
    let provider = FakeProvider::start(Mode::Slow(Duration::from_millis(200))).await;
    let app = app_with_provider(&db, &provider, &[]).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;
    let tokens: Vec<String> = (0..5).map(|i| app.token(&format!("customer-{i}"), &[Role::Customer])).collect();

    let rent = json!({"book_id": book_id});
    let answers =
        join_all(tokens.iter().map(|token| app.post(Some(token), "/commands/book-rental/rentals", Some(rent.clone()))))
            .await;

    let mut statuses: Vec<(StatusCode, String)> =
        answers.iter().map(|answer| (answer.status, answer.code().to_string())).collect();
    statuses.sort();
    let refused = (StatusCode::CONFLICT, "book-not-available".to_string());
    let rented = (StatusCode::CREATED, String::new());
    assert_eq!(statuses, [rented, refused.clone(), refused.clone(), refused.clone(), refused]);
    assert_eq!((provider.authorization_calls(), provider.refund_calls()), (1, 0), "only the winner was charged");
    let types = app.log_types().await;
    assert_eq!(count_of(&types, "PaymentApproved"), 1);
    assert_eq!(count_of(&types, "PaymentRefunded"), 0);
    app.stop().await;
}

on_both_backends!(a_rent_that_loses_its_copy_to_another_process_after_its_charge_is_refunded_and_counted);

/// Commands take turns on an aggregate within a process only (ADR 47). Two processes on one
/// database each rent the same copy while the provider takes a second to approve: both find
/// the copy free and charge; the store's key gives the copy to one, and the other's rent is
/// refused, its charge refunded before it is answered, and counted in `/metrics`.
async fn a_rent_that_loses_its_copy_to_another_process_after_its_charge_is_refunded_and_counted(db: TestDb) {
    // A second, under the calls' 2 s timeout: long enough for both rents to read the copy first.
    let provider = FakeProvider::start(Mode::Slow(Duration::from_millis(1000))).await;
    let a = app_with_provider(&db, &provider, &[]).await;
    let b = server_with_provider(&db, &provider, &[], ServeOptions { workers: false }).await;
    let manager = a.token("librarian", &[Role::BookManager]);
    let book_id = a.shelved_book(&manager, "Dune", 1500).await;
    let (kim, lee) = (a.token("kim", &[Role::Customer]), a.token("lee", &[Role::Customer]));
    let refunded_before = unrecorded_charges_refunded(&a).await;

    let rent = json!({"book_id": book_id});
    let (on_a, on_b) = tokio::join!(
        a.post(Some(&kim), "/commands/book-rental/rentals", Some(rent.clone())),
        b.post(Some(&lee), "/commands/book-rental/rentals", Some(rent.clone())),
    );

    let mut statuses = [(on_a.status, on_a.code().to_string()), (on_b.status, on_b.code().to_string())];
    statuses.sort();
    assert_eq!(
        statuses,
        [(StatusCode::CREATED, String::new()), (StatusCode::CONFLICT, "book-not-available".to_string())],
        "{} / {}",
        on_a.body,
        on_b.body
    );
    assert_eq!((provider.charges(), provider.refunds()), (2, 1), "both charged, the loser refunded");
    let types = a.log_types().await;
    assert_eq!(count_of(&types, "PaymentApproved"), 2);
    assert_eq!(count_of(&types, "PaymentRefunded"), 1);
    assert!(unrecorded_charges_refunded(&a).await > refunded_before, "the refund is counted in /metrics");
    b.stop().await;
    a.stop().await;
}

on_both_backends!(a_process_that_heard_another_process_rent_a_copy_refuses_it_before_charging);

/// A process decides on its cached aggregates without reading their streams while it has heard no
/// other process's commit since it read or stored them (on PostgreSQL; ADR 48). Once A has heard
/// B rent the copy A holds as free, A's rent of it reads and is refused before it charges: with
/// the cached copy taken as current, A would charge, lose at the store's key, and refund.
async fn a_process_that_heard_another_process_rent_a_copy_refuses_it_before_charging(db: TestDb) {
    let ReturnedOnA { provider, a, b, rent, kim, lee } = returned_on_a(&db).await;
    // B runs no workers, and listens all the same: every process with commands does.
    b.until_listening().await;
    let heard_before = heard(&a);

    let on_b = b.post(Some(&lee), "/commands/book-rental/rentals", Some(rent.clone())).await;
    assert_eq!(on_b.status, StatusCode::CREATED, "{}", on_b.body);
    if db.is_postgres() {
        a.eventually("A hears B's rental", || async { (heard(&a) > heard_before).then_some(()) }).await;
        assert_eq!(heard(&a), heard_before + 1, "A heard B's one commit");
        let counted = heard(&a) as f64;
        a.eventually("A's /metrics counts it", || async {
            (metric(&a, FOREIGN_COMMITS_HEARD).await == Some(counted)).then_some(())
        })
        .await;
    }
    let on_a = a.post(Some(&kim), "/commands/book-rental/rentals", Some(rent)).await;

    assert_eq!((on_a.status, on_a.code()), (StatusCode::CONFLICT, "book-not-available"), "{}", on_a.body);
    assert_eq!((provider.charges(), provider.refunds()), (2, 0), "kim's first rental and lee's, nothing refunded");
    b.stop().await;
    a.stop().await;
}

/// A PostgreSQL-only scenario: SQLite's processes hear nothing of each other, and always read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_process_that_lost_its_listening_connection_trusts_nothing_it_cached_before() {
    let Some(db) = TestDb::postgres().await else { return };
    let ReturnedOnA { provider, a, b, rent, kim, lee } = returned_on_a(&db).await;
    let foreign = a.state().db.foreign.clone();

    // Both processes' listening connections are cut; B rents the copy while A is not listening
    // (it connects again after a second), so A never hears that commit.
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .execute(&admin)
    .await
    .unwrap();
    a.eventually("A notices", || async { (!foreign.listening()).then_some(()) }).await;
    let on_b = b.post(Some(&lee), "/commands/book-rental/rentals", Some(rent.clone())).await;
    assert_eq!(on_b.status, StatusCode::CREATED, "{}", on_b.body);
    assert!(!foreign.listening(), "A listened again before B's rental was stored");
    // (Read again while A does not listen, in case another test's server scraped in between.)
    let mut shown = metric(&a, LISTENING_TO_OTHER_WRITERS).await;
    while shown != Some(0.0) && !foreign.listening() {
        shown = metric(&a, LISTENING_TO_OTHER_WRITERS).await;
    }
    assert_eq!(shown, Some(0.0), "A's /metrics says it does not listen");
    a.until_listening().await;
    a.eventually("A's /metrics says it listens again", || async {
        (metric(&a, LISTENING_TO_OTHER_WRITERS).await == Some(1.0)).then_some(())
    })
    .await;
    let on_a = a.post(Some(&kim), "/commands/book-rental/rentals", Some(rent)).await;

    assert_eq!((on_a.status, on_a.code()), (StatusCode::CONFLICT, "book-not-available"), "{}", on_a.body);
    assert_eq!((provider.charges(), provider.refunds()), (2, 0), "A read the copy before it charged");
    admin.close().await;
    b.stop().await;
    a.stop().await;
}

/// Two servers on one database behind one approving provider, A with every worker and B without
/// any, and a copy that kim rented and returned through A once A listened: A holds it as free,
/// and on PostgreSQL knows it current (ADR 48). `rent` rents it.
struct ReturnedOnA {
    provider: FakeProvider,
    a: TestApp,
    b: TestApp,
    rent: serde_json::Value,
    kim: String,
    lee: String,
}

async fn returned_on_a(db: &TestDb) -> ReturnedOnA {
    let provider = FakeProvider::start(Mode::Approve).await;
    let a = app_with_provider(db, &provider, &[]).await;
    let b = server_with_provider(db, &provider, &[], ServeOptions { workers: false }).await;
    let manager = a.token("librarian", &[Role::BookManager]);
    let book_id = a.shelved_book(&manager, "Dune", 1500).await;
    let (kim, lee) = (a.token("kim", &[Role::Customer]), a.token("lee", &[Role::Customer]));
    let rent = json!({"book_id": book_id});
    a.until_listening().await;
    let rented = a.post(Some(&kim), "/commands/book-rental/rentals", Some(rent.clone())).await;
    assert_eq!(rented.status, StatusCode::CREATED, "{}", rented.body);
    let returned = a.post(Some(&kim), &format!("/commands/book-rental/rentals/{}/return", rented.id()), None).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);
    ReturnedOnA { provider, a, b, rent, kim, lee }
}

/// How many other processes' commits `app` has heard (ADR 48; none on SQLite).
fn heard(app: &TestApp) -> u64 {
    app.state().db.foreign.heard()
}

on_both_backends!(the_same_idempotency_key_ten_times_at_once_rents_and_charges_once);

async fn the_same_idempotency_key_ten_times_at_once_rents_and_charges_once(db: TestDb) {
    let provider = FakeProvider::start(Mode::Approve).await;
    let app = app_with_provider(&db, &provider, &[]).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;
    let rent = json!({"book_id": book_id});

    let answers = join_all((0..10).map(|_| {
        app.post_keyed(Some(&kim), "/commands/book-rental/rentals", Some(rent.clone()), Some("kim-rents-dune"))
    }))
    .await;
    let first = &answers[0];
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    for answer in &answers {
        assert_eq!((answer.status, &answer.body), (first.status, &first.body), "identical answers");
        assert_eq!(answer.headers.get("location"), first.headers.get("location"));
    }
    assert_eq!(provider.authorization_calls(), 1, "one call to the provider");
    assert_eq!(provider.charges(), 1, "one charge");
    let types = app.log_types().await;
    assert_eq!(count_of(&types, "BookRented"), 1, "one rental");
    assert_eq!(count_of(&types, "PaymentApproved"), 1, "one payment");

    // Later, the same key and body: the first answer again, nothing written.
    let again = app.post_keyed(Some(&kim), "/commands/book-rental/rentals", Some(rent), Some("kim-rents-dune")).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert_eq!(app.log_types().await, types);

    // The same key for another request is refused.
    let other = app.shelved_book(&manager, "Emma", 900).await;
    let reused = app
        .post_keyed(
            Some(&kim),
            "/commands/book-rental/rentals",
            Some(json!({"book_id": other})),
            Some("kim-rents-dune"),
        )
        .await;
    assert_eq!((reused.status, reused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"));

    // Keys belong to their caller: another customer's same key is a request of its own.
    let lee = app.token("lee", &[Role::Customer]);
    let lees = app
        .post_keyed(
            Some(&lee),
            "/commands/book-rental/rentals",
            Some(json!({"book_id": other})),
            Some("kim-rents-dune"),
        )
        .await;
    assert_eq!(lees.status, StatusCode::CREATED, "{}", lees.body);
    app.stop().await;
}

on_both_backends!(a_charge_whose_rental_was_never_recorded_is_refunded_and_a_recorded_one_stands);

async fn a_charge_whose_rental_was_never_recorded_is_refunded_and_a_recorded_one_stands(db: TestDb) {
    use storming_domain::payment::{PaymentCommand, PaymentReference};
    use storming_domain::shared::{EventMetadata, Krw};

    let provider = FakeProvider::start(Mode::Approve).await;
    let app = app_with_provider(&db, &provider, &[("STORMING_PAYMENT_RECONCILE_AFTER_MS", "500")]).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let admin = app.token("auditor", &[Role::Admin]);
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED);

    // The crash, reproduced: the payment context approved a charge for a rental whose own event
    // was never stored (the process died in between).
    let (orphan, payment_id) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let authorize = PaymentCommand::AuthorizePayment {
        payment_id,
        reference: PaymentReference { flow: "book-rental".into(), kind: "rental".into(), id: orphan },
        customer_id: "kim".into(),
        amount: Krw::positive("amount", 1500).unwrap(),
    };
    let metadata =
        EventMetadata { correlation_id: orphan.to_string(), actor: "kim".into(), ..EventMetadata::default() };
    app.state().bus.payments.execute(&payment_id.to_string(), authorize, &metadata).await.unwrap();
    assert_eq!(provider.charges(), 2);

    app.eventually("the unrecorded charge is refunded", || async {
        let payments = app.get(&admin, &format!("/queries/payments?reference_id={orphan}")).await;
        (payments.body["items"][0]["status"] == "REFUNDED").then_some(())
    })
    .await;
    app.eventually("the reconciliation policy has looked at every approval", || async {
        let views = app.get(&admin, "/admin/projections").await.body;
        let policy =
            views["items"].as_array()?.iter().find(|view| view["name"] == "payment.reconciliation_policy")?.clone();
        (policy["lag_events"] == 0).then_some(())
    })
    .await;
    let kept = app.get(&admin, &format!("/queries/payments?reference_id={}", rented.id())).await;
    assert_eq!(kept.body["items"][0]["status"], "APPROVED", "the recorded rental keeps its charge");
    assert_eq!(provider.refunds(), 1, "one refund, for the unrecorded charge only");
    app.stop().await;
}

on_both_backends!(the_reconciliation_policy_reads_the_log_only_when_its_batch_lacks_the_transaction);

/// The reconciliation policy decides from the batch when the approval's transaction follows it
/// there, and reads the log otherwise. Its log here is a closed database, so a read fails.
async fn the_reconciliation_policy_reads_the_log_only_when_its_batch_lacks_the_transaction(db: TestDb) {
    use std::sync::Arc;
    use storming_api::workers::ReconciliationPolicy;
    use storming_domain::recorded::LogCursor;
    use storming_infra::commands::{CommandBus, LogSignal};
    use storming_infra::db::Database;
    use storming_infra::log::LogFilter;
    use storming_infra::payment::SimulatedProvider;
    use storming_projections::Policy;

    let app = TestApp::start(&db).await;
    let manager = app.token("librarian", &[Role::BookManager]);
    let kim = app.token("kim", &[Role::Customer]);
    let book_id = app.shelved_book(&manager, "Dune", 1500).await;
    let rented = app.post(Some(&kim), "/commands/book-rental/rentals", Some(json!({"book_id": book_id}))).await;
    assert_eq!(rented.status, StatusCode::CREATED);
    // The log shows a commit once every older transaction has ended (other tests run beside it).
    let events = app
        .eventually("the rental is in the log", || async {
            let events = app.state().log.read_after(LogCursor::START, 1000, &LogFilter::default()).await.ok()?;
            events.iter().any(|event| event.event_type == "BookRented").then_some(events)
        })
        .await;
    let approved = events.iter().position(|event| event.event_type == "PaymentApproved").expect("the approval");
    let (approval, after) = (&events[approved], &events[approved + 1..]);
    assert!(after.iter().any(|event| event.event_type == "BookRented"), "the rental follows its approval");

    let closed = Database::connect(&db.url, 2).await.unwrap();
    closed.close().await;
    let bus = Arc::new(CommandBus::new(&closed, Arc::new(SimulatedProvider), LogSignal::new()));
    let policy = ReconciliationPolicy { bus, grace: Duration::from_secs(60) };

    policy.react(approval, after).await.expect("decided from the batch, without reading the log");
    let others: Vec<_> = after.iter().filter(|event| event.event_type != "BookRented").cloned().collect();
    assert!(policy.react(approval, &others).await.is_err(), "without its rental in the batch, it reads the log");
    assert!(policy.react(approval, &[]).await.is_err(), "nothing after it in the batch: it reads the log");
    app.stop().await;
}
