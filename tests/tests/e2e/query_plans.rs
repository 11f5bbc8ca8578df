//! The views' list queries walk their indexes from the cursor and stop at the limit, on both
//! backends, however many rows the view holds. Checked on the plans themselves: the bench's views
//! are too small for a slow plan to show in its figures. On PostgreSQL the statements are checked
//! as the prepared statements they run as, with the generic plan (parameters unknown).

use storming_infra::db::Database;
use storming_projections::my_page::{self, MyPage};
use storming_projections::rental_status::{self, RentalFilter, RentalStatusView};
use storming_projections::runtime::batch::{self, Value, Writes};
use storming_projections::runtime::generations;
use storming_projections::Projection;

use crate::on_both_backends;
use crate::support::{plan, TestDb};

on_both_backends!(a_customers_or_a_books_rentals_are_read_through_their_index);

async fn a_customers_or_a_books_rentals_are_read_through_their_index(db: TestDb) {
    // Arrange
    let database = views_with_indexes(&db, &RentalStatusView).await;
    fill_rentals(&database).await;

    // Act
    let by_customer = RentalFilter { customer_id: Some("customer-7".into()), ..RentalFilter::default() };
    let customer_plan = plan(&database, &rental_status::list_sql(1, &by_customer), &["text", "text", "bigint"]).await;
    let by_book = RentalFilter { book_id: Some("book-7".into()), ..RentalFilter::default() };
    let book_plan = plan(&database, &rental_status::list_sql(1, &by_book), &["text", "text", "bigint"]).await;

    // Assert
    assert!(customer_plan.contains("rental_status_g1_customer"), "a customer's list uses its index:\n{customer_plan}");
    assert!(book_plan.contains("rental_status_g1_book"), "a book's list uses its index:\n{book_plan}");
    database.close().await;
}

on_both_backends!(a_later_page_of_my_page_enters_the_index_at_its_cursor);

async fn a_later_page_of_my_page_enters_the_index_at_its_cursor(db: TestDb) {
    // Arrange: 20,000 rows of 100 customers.
    let database = views_with_indexes(&db, &MyPage).await;
    fill(
        &database,
        "INSERT INTO my_page_items_g1 (customer_id, flow, item_id, title, status, payment_status, amount, updated_at) \
         SELECT 'customer-' || (x % 100), 'book-rental', 'rental-' || x, 'A title', 'RETURNED', 'PAID', 1000, \
         '2026-01-02T00:00:00Z' FROM n",
    )
    .await;

    // Act
    let plan = plan(&database, &my_page::items_sql(1, true), &["text", "text", "bigint"]).await;

    // Assert: the cursor bounds the index scan (SQLite names it in the search, PostgreSQL in the
    // index condition), rather than filtering the rows a scan from the newest one returns.
    if db.is_postgres() {
        assert!(plan.contains("Index Cond: ((customer_id = $1) AND (item_id < $2))"), "entered at the cursor:\n{plan}");
        assert!(!plan.contains("Filter"), "no row is read and thrown away:\n{plan}");
    } else {
        assert!(plan.contains("(customer_id=? AND item_id<?)"), "entered at the cursor:\n{plan}");
    }
    database.close().await;
}

/// A projection's batch updates its rows through one `UPDATE … FROM unnest(…)`, the same statement
/// for every batch, kept prepared. Planned for a batch's arrays, PostgreSQL would hash the whole
/// view (at every size this test could afford); the batch makes it probe the key instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_batch_of_updates_probes_the_views_key_instead_of_hashing_the_view() {
    let Some(db) = TestDb::postgres().await else { return };
    // Arrange: a view of 20,000 rentals, analyzed.
    let database = views_with_indexes(&db, &RentalStatusView).await;
    fill_rentals(&database).await;
    const ROWS: usize = 500;
    const SET: &[&str] = &["status", "updated_at"];

    // Act: a batch returns 500 of them, in the transaction a worker would use.
    let mut tx = database.read_side.begin().await.unwrap();
    let rows: Vec<Vec<Value>> = (0..ROWS)
        .map(|n| vec![format!("rental-{}", n * 37).into(), "RETURNED".into(), "2026-01-03T00:00:00Z".into()])
        .collect();
    let mut writes = Writes::default();
    for values in rows.clone() {
        writes.update("rental_status_g1", &["rental_id"], SET, values);
    }
    writes.flush(&mut tx).await.unwrap();
    let returned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rental_status_g1 WHERE status = 'RETURNED'")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let statement = batch::postgres_text_update_sql("rental_status_g1", &["rental_id"], SET);
    // Planned for the batch's own arrays, as its first executions are: PostgreSQL then knows it
    // holds 500 rows (a generic plan guesses 10, which a nested loop wins anyway).
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *tx).await.unwrap();
    let types = vec!["text[]"; 1 + SET.len()].join(", ");
    sqlx::query(&format!("PREPARE returns({types}) AS {statement}")).execute(&mut *tx).await.unwrap();
    // The arrays the batch sent, as literals (its values hold no `'`).
    let arrays: Vec<String> = batch::column_arrays(&rows)
        .into_iter()
        .map(|array| match array {
            Value::Text(text) => format!("'{text}'"),
            other => panic!("an array is text: {other:?}"),
        })
        .collect();
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE returns({})", arrays.join(", ")))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let plan = plan.join("\n");

    // Assert
    assert_eq!(returned, ROWS as i64, "the batch was applied");
    assert!(plan.contains("Nested Loop") && plan.contains("rental_status_g1_pkey"), "probes the key:\n{plan}");
    assert!(!plan.contains("Hash"), "hashes nothing:\n{plan}");
    tx.rollback().await.unwrap();
    database.close().await;
}

/// A fresh database with generation 1 of `projection`, its query indexes built.
async fn views_with_indexes(db: &TestDb, projection: &dyn Projection) -> Database {
    let database = Database::connect(&db.url, 2).await.unwrap();
    generations::ensure(&database.read_side, projection).await.unwrap();
    generations::create_query_indexes(&database.read_side, projection, 1, None).await.unwrap();
    database
}

/// Runs `insert` (an `INSERT … SELECT … FROM n`) over `n.x` = 0..19,999, then has the database
/// gather statistics, as it would on its own for a view of that size.
async fn fill(database: &Database, insert: &str) {
    sqlx::query(&format!("WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 19999) {insert}"))
        .execute(&database.read_side)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&database.read_side).await.unwrap();
}

/// 20,000 rentals (`rental-0`…) of 1,000 customers and 500 books, all still rented.
async fn fill_rentals(database: &Database) {
    fill(
        database,
        "INSERT INTO rental_status_g1 (rental_id, book_id, title, customer_id, status, overdue, payment_id, \
         payment_status, fee, rented_at, due_at, updated_at) \
         SELECT 'rental-' || x, 'book-' || (x % 500), 'A title', 'customer-' || (x % 1000), 'RENTED', 0, \
         'payment-' || x, 'PAID', 1000, '2026-01-01T00:00:00Z', '2026-01-15T00:00:00Z', '2026-01-02T00:00:00Z' FROM n",
    )
    .await;
}
