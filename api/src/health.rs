//! Liveness, readiness and metrics. None of them says anything about the configuration or the
//! business data.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use storming_infra::db::Backend;

use crate::problem::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// Other writers' commits this process has heard (PostgreSQL, ADR 48).
pub const FOREIGN_COMMITS_HEARD: &str = "storming_event_store_foreign_commits_heard_total";

/// 1 while this process listens to other writers' commits, 0 while it does not (PostgreSQL,
/// ADR 48): not listening, it trusts no cached aggregate.
pub const LISTENING_TO_OTHER_WRITERS: &str = "storming_event_store_listening_to_other_writers";

/// How often the recorder's histograms are drained into their summaries when no scrape does it.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder, installed on first use (before anything records).
///
/// A histogram's samples (the event store's group sizes, one per group) are held one by one until
/// a scrape or an upkeep drains them; built by `build_recorder`, the recorder runs no upkeep of its
/// own, and a process nobody scraped held every sample since it started (about 24 bytes a group,
/// without bound). A thread of its own drains them.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only this one's");
        }
        // Shown as 0 from the start, so that a scrape tells "none" from "not counted".
        for outcome in ["refunded", "refund_failed"] {
            metrics::counter!(storming_infra::commands::UNRECORDED_CHARGES, "outcome" => outcome).increment(0);
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no metrics upkeep thread: histograms are drained only by scrapes");
        }
        handle
    })
}

#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 503, body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
/// Prometheus text: every worker's position and lag (read at scrape time, whichever process runs
/// the workers), the payment circuit breaker's state and transitions, this process's queries
/// answered with a kept answer or read (ADR 39), its group commit's sizes and turns, the turns
/// its requests' own threads stored (SQLite, ADR 41), the paid commands whose events were not
/// stored, by what their refund did (0 until there is one), and on PostgreSQL whether the process
/// listens to other writers' commits and how many it has heard (ADR 48).
async fn metrics(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    metrics::counter!("storming_query_answers_total", "from" => "kept").absolute(app.answers.given());
    metrics::counter!("storming_query_answers_total", "from" => "read").absolute(app.answers.missed());
    let group = &app.db.group_commit;
    metrics::counter!("storming_event_store_turns_total").absolute(group.turns());
    metrics::counter!("storming_event_store_turns_on_request_thread_total").absolute(group.stored_on_request());
    if app.db.backend == Backend::Postgres {
        // Another process writing to the store shows here, and so does a lost listening
        // connection, during which every command reads its stream before deciding.
        let foreign = &app.db.foreign;
        metrics::counter!(FOREIGN_COMMITS_HEARD).absolute(foreign.heard());
        metrics::gauge!(LISTENING_TO_OTHER_WRITERS).set(if foreign.listening() { 1.0 } else { 0.0 });
    }
    for worker in crate::admin::worker_views(&app).await? {
        let name = worker.name;
        metrics::gauge!("storming_worker_position", "worker" => name.clone()).set(worker.position as f64);
        metrics::gauge!("storming_worker_lag_events", "worker" => name.clone()).set(worker.lag_events as f64);
        metrics::gauge!("storming_worker_lag_ms", "worker" => name.clone()).set(worker.lag_ms as f64);
        metrics::gauge!("storming_worker_running", "worker" => name).set(if worker.status == "RUNNING" {
            1.0
        } else {
            0.0
        });
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], prometheus().render()))
}

#[derive(Debug, Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database answers and is migrated to this build's schema.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = crate::openapi::Problem, content_type = "application/problem+json"))
)]
async fn readyz(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    if app.db.is_ready().await {
        Ok(Json(Health { status: "ready" }))
    } else {
        Err(ApiError::Unavailable("the database is unreachable or not migrated".into()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_recorder_should_be_drained_by_a_thread_of_its_own() {
        super::prometheus();
        // A thread takes its name once it runs: looked for until a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
                .expect("Linux's /proc")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .collect();
            if threads.iter().any(|name| name.trim() == "metrics-upkeep") {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no upkeep thread among {threads:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
