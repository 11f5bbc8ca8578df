//! A view's batch reaches its table with every value as written, on both backends: on PostgreSQL
//! its rows travel as the text of an array per column (ADR 42), which must quote what it holds.

use sqlx::Row;
use storming_infra::db::Database;
use storming_projections::rental_status::{self, RentalStatusView};
use storming_projections::runtime::batch::{Value, Writes};
use storming_projections::runtime::generations;

use crate::on_both_backends;
use crate::support::TestDb;

on_both_backends!(a_batch_writes_quotes_backslashes_braces_and_nulls_as_they_are);

/// Titles an array's text must quote: its delimiters, its quote and escape, its NULL, the empty
/// text, spaces at the ends, and more than ASCII.
const TITLES: [&str; 6] = [r#"say "hi", {twice}"#, r#"back\slash \\ and \""#, "NULL", "", "  spaced  ", "ümlaut — 雪"];

async fn a_batch_writes_quotes_backslashes_braces_and_nulls_as_they_are(db: TestDb) {
    // Arrange
    let database = Database::connect(&db.url, 2).await.unwrap();
    generations::ensure(&database.read_side, &RentalStatusView).await.unwrap();
    let mut rents = Writes::default();
    for (n, title) in TITLES.iter().enumerate() {
        let text = |value: &str| Value::from(value);
        let values = vec![
            text(&format!("rental-{n}")),
            text("book"),
            text(title),
            text("customer"),
            text("RENTED"),
            Value::Int(0),
            text(&format!("payment-{n}")),
            text("PAID"),
            Value::Int(-(n as i64) * 1_000_000_007),
            text("r"),
            text("d"),
            text("u"),
        ];
        rents.insert("rental_status_g1", rental_status::RENTED, &["rental_id"], values);
    }
    // A second batch ends them: an update run, with a title-like text and a NULL among its values.
    let mut returns = Writes::default();
    for (n, title) in TITLES.iter().enumerate() {
        let returned_at = if n % 2 == 0 { Value::MaybeText(None) } else { Value::MaybeText(Some(title.to_string())) };
        let values = vec![Value::from(format!("rental-{n}").as_str()), Value::from("RETURNED"), returned_at];
        returns.update("rental_status_g1", &["rental_id"], &["status", "returned_at"], values);
    }

    // Act
    for writes in [rents, returns] {
        let mut tx = database.read_side.begin().await.unwrap();
        writes.flush(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
    }

    // Assert
    let rows =
        sqlx::query("SELECT rental_id, title, fee, status, returned_at FROM rental_status_g1 ORDER BY rental_id")
            .fetch_all(&database.read_side)
            .await
            .unwrap();
    assert_eq!(rows.len(), TITLES.len());
    for (n, (row, title)) in rows.iter().zip(TITLES).enumerate() {
        assert_eq!(row.get::<String, _>("rental_id"), format!("rental-{n}"));
        assert_eq!(row.get::<String, _>("title"), title);
        assert_eq!(row.get::<i64, _>("fee"), -(n as i64) * 1_000_000_007);
        assert_eq!(row.get::<String, _>("status"), "RETURNED");
        let returned_at = (n % 2 == 1).then(|| title.to_string());
        assert_eq!(row.get::<Option<String>, _>("returned_at"), returned_at, "row {n}");
    }
    database.close().await;
}
