//! Throwaway probe (thirty-eighth session, ADR 48): how long after another process's append
//! returns does this process hear its commit? Two `Database`s on a fresh PostgreSQL database,
//! `here` listening (infra::foreign::listen), `elsewhere` appending one event at a time.
use std::time::{Duration, Instant};

use cqrs_es::persist::SerializedEvent;
use hdrhistogram::Histogram;
use storming_infra::commands::LogSignal;
use storming_infra::db::{Database, StorePool};
use storming_infra::event_store::EventRepository;
use storming_infra::foreign;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
    let name = format!("storming_notify_probe_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let here = Database::connect(&url, 4).await?;
    let elsewhere = Database::connect(&url, 4).await?;
    let StorePool::Postgres(pool) = here.store.clone() else { unreachable!() };
    let signal = LogSignal::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn(foreign::listen(pool, here.foreign.clone(), signal.clone(), stopped));
    while !here.foreign.listening() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let repo = EventRepository::new(&elsewhere);
    let (mut after_return, mut after_start) =
        (Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?, Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?);
    let mut before_return = 0;
    let count = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    for n in 1..=count {
        let mut heard = signal.subscribe();
        heard.borrow_and_update();
        let event = SerializedEvent::new(
            "probe".into(),
            n,
            "probe.stream".into(),
            "Probed".into(),
            "1".into(),
            serde_json::json!({}),
            serde_json::json!({}),
        );
        let started = Instant::now();
        repo.append(&[event]).await?;
        let returned = Instant::now();
        if heard.has_changed()? {
            before_return += 1;
        }
        heard.changed().await?;
        let at = Instant::now();
        after_return.record(at.duration_since(returned).as_micros().max(1) as u64)?;
        after_start.record(at.duration_since(started).as_micros().max(1) as u64)?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{count} commits heard: after the append returned p50 {:.3} ms p99 {:.3} ms max {:.3} ms; \
         after it began p50 {:.3} ms p99 {:.3} ms; heard before it returned: {before_return}; heard in all {}",
        ms(&after_return, 0.5),
        ms(&after_return, 0.99),
        ms(&after_return, 1.0),
        ms(&after_start, 0.5),
        ms(&after_start, 0.99),
        here.foreign.heard()
    );
    stop.send(true)?;
    listener.await?;
    here.close().await;
    elsewhere.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&admin).await?;
    Ok(())
}
