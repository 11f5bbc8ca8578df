//! `storming-api`: the HTTP edge and the wiring of everything.
//!
//! Commands (`POST /commands/...`) and queries (`GET /queries/...`) live in separate modules and
//! routers; the audit reads the log itself. [`Server::start`] builds the application from a
//! [`Config`] — database, command bus, workers, router — and is what `storming serve` and the
//! end-to-end tests run.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod commands;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod problem;
pub mod queries;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use storming_domain::payment::PaymentProvider;
use storming_domain::rental::RentalTerms;
use storming_infra::bounded::Bounded;
use storming_infra::commands::{CommandBus, LogSignal};
use storming_infra::config::{Config, JwtSecretSource, PaymentProviderKind};
use storming_infra::db::{Backend, Database};
use storming_infra::log::GlobalLog;
use storming_infra::payment::breaker::{CircuitBreaker, GuardedProvider};
use storming_infra::payment::http::HttpProvider;
use storming_infra::payment::SimulatedProvider;
use storming_projections::reader::SqliteReads;
use storming_projections::runtime::Applied;
use storming_projections::WorkerSettings;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::TokenKeys;
use crate::problem::ApiError;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest a request may take; past it the timeout layer answers 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach, in one allocation: axum clones the state for each request's
/// middleware and extractors, and a clone is now one reference count, where copying every field's
/// handles was 3% of the machine's time under queries (BENCHMARKS.md, sixteenth session).
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// The state behind [`AppState`].
pub struct App {
    pub db: Database,
    pub bus: Arc<CommandBus>,
    pub log: GlobalLog,
    pub tokens: TokenKeys,
    pub rental_terms: RentalTerms,
    /// Serializes the requests of one idempotency key in this process.
    pub key_locks: Arc<commands::KeyLocks>,
    pub worker_settings: WorkerSettings,
    /// Requests per caller; `None` when off.
    pub rate_limiter: Option<Arc<limits::RateLimiter>>,
    /// How long a charge may wait for its transaction's events before it is refunded.
    pub reconcile_after: Duration,
    /// The latest reading of each view, for queries that ask for no `min_position`.
    pub views: Arc<queries::RecentViews>,
    /// The queries' answers kept until their view moves (ADR 39).
    pub answers: Arc<queries::KeptAnswers>,
    /// Rung when this process's workers commit a batch of a view (queries waiting for it).
    pub applied: Arc<Applied>,
    /// Which copy holds each rental this process stored or looked up.
    pub rentals: Arc<Bounded<commands::RentalHolder>>,
    /// SQLite: the connections queries read their views on in place (ADR 19); `None` on PostgreSQL.
    pub sqlite_reads: Option<Arc<SqliteReads>>,
}

/// Tells SQLite's group commit which connection each request came over, for as long as it is in
/// flight: while requests come one at a time, an append is stored on its request's own thread
/// (ADR 41).
async fn one_caller(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer);
    let _in_flight = app.db.callers.as_ref().zip(peer).map(|(callers, peer)| callers.arrived(peer));
    next.run(request).await
}

/// Every documented route, and the OpenAPI document that describes them.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::router())
        .merge(commands::router())
        .merge(queries::router())
        .merge(audit::router())
        .merge(admin::router())
        .split_for_parts()
}

/// The whole HTTP surface: the documented routes, `/openapi.json` and the docs at `/docs`.
pub fn router(state: AppState) -> Router {
    let (routes, api) = routes();
    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(|| async { ApiError::not_found("route-not-found", "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), one_caller))
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("a handler panicked").into_response()))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// How to start.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Run every projection and policy worker in this process (`storming serve` without
    /// `--no-workers`).
    pub workers: bool,
}

/// A running storming: the HTTP listener and, unless disabled, the workers.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    /// The workers, unless disabled, and on PostgreSQL the listener to other processes' commits.
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Connects and migrates the database, wires the application and starts listening on
    /// `config.listen`.
    pub async fn start(config: &Config, options: ServeOptions) -> anyhow::Result<Self> {
        let state = build_state(config).await?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = if options.workers { workers::spawn(&state, None, stop.clone())? } else { vec![] };
        tasks.extend(workers::listen_to_other_processes(&state, stop.clone()));
        let mut stop_http = stop;
        let app = router(state.clone());
        let http = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = stop_http.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(%addr, workers = options.workers, "storming is listening");
        Ok(Self { addr, state, shutdown, http, tasks })
    }

    /// Stops accepting, lets in-flight requests and worker batches finish, and closes the
    /// database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.http.await.context("joining the HTTP server")?.context("serving HTTP")?;
        for task in self.tasks {
            task.await.context("joining a worker or the listener")?;
        }
        self.state.db.close().await;
        Ok(())
    }
}

/// A `storming work` process: the selected workers, without the HTTP API.
pub struct WorkerProcess {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    state: AppState,
}

impl WorkerProcess {
    /// Starts the workers named in `only` (every worker when `None`).
    pub async fn start(config: &Config, only: Option<&[String]>) -> anyhow::Result<Self> {
        let state = build_state(config).await?;
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = workers::spawn(&state, only, stop.clone())?;
        tasks.extend(workers::listen_to_other_processes(&state, stop));
        Ok(Self { shutdown, tasks, state })
    }

    /// Stops as a `kill -9` would: batches are cut off uncommitted, leases are not given up, and
    /// the database connections close (which rolls back what was open). For fault-injection tests.
    pub async fn kill(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.state.db.close().await;
    }

    /// Lets every worker finish its batch and give up its lease.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.await.context("joining a worker or the listener")?;
        }
        self.state.db.close().await;
        Ok(())
    }
}

/// `storming replay NAME`: rebuilds view `name` into a new generation from position 0 (or joins a
/// rebuild under way), runs it here until it has caught up and been switched in, and returns the
/// new active generation. Other processes keep answering from the old one meanwhile.
pub async fn replay(config: &Config, name: &str) -> anyhow::Result<i64> {
    use storming_projections::runtime::generations::{self, RebuildError};
    let state = build_state(config).await?;
    let projection = workers::projections()
        .into_iter()
        .find(|projection| projection.name() == name)
        .with_context(|| format!("no projection is named {name}"))?;
    let generation = match generations::start_rebuild(&state.db.read_side, projection.as_ref()).await {
        Ok(generation) | Err(RebuildError::InProgress(generation)) => generation,
        Err(RebuildError::Database(error)) => return Err(error).context("starting the rebuild"),
    };
    tracing::info!(projection = name, generation, "rebuilding");
    let (shutdown, stop) = watch::channel(false);
    let source = Arc::new(workers::LogSource(state.log.clone()));
    let supervisor = storming_projections::Supervisor {
        projection,
        source,
        pool: state.db.read_side.clone(),
        wake: state.bus.signal.subscribe(),
        settings: state.worker_settings,
        write_gate: state.db.views_gate.clone(),
        applied: None,
        appends: workers::appends(&state.db),
        sqlite_batches: workers::sqlite_batches(&state.db),
    };
    let task = tokio::spawn(supervisor.run(stop));
    while generations::active(&state.db.read_side, name).await? < generation {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = shutdown.send(true);
    task.await.context("joining the rebuild")?;
    state.db.close().await;
    Ok(generation)
}

/// Connects, migrates and wires the command side.
pub async fn build_state(config: &Config) -> anyhow::Result<AppState> {
    health::prometheus();
    let (secret, source) = config.resolve_jwt_secret().context("resolving the JWT secret")?;
    match source {
        JwtSecretSource::File { path, created: true } => {
            tracing::warn!(path = %path.display(), "STORMING_JWT_SECRET is not set: generated a secret and saved it next to the database")
        }
        JwtSecretSource::File { path, created: false } => {
            tracing::info!(path = %path.display(), "STORMING_JWT_SECRET is not set: using the secret saved next to the database")
        }
        JwtSecretSource::Environment => {}
    }
    let db = Database::connect(&config.database_url, config.db_pool_size).await.context("opening the database")?;
    let provider: Arc<dyn PaymentProvider> = match &config.payment_provider {
        PaymentProviderKind::Simulated => Arc::new(SimulatedProvider),
        PaymentProviderKind::Http { url } => Arc::new(
            HttpProvider::new(url, config.payment.timeout).context("building the payment provider's HTTP client")?,
        ),
    };
    let breaker = Arc::new(CircuitBreaker::new(config.payment.breaker_failures, config.payment.breaker_cooldown));
    let provider = Arc::new(GuardedProvider::new(provider, breaker, config.payment.timeout));
    let bus = Arc::new(CommandBus::new(&db, provider, LogSignal::new()));
    // Catch-up batches (BENCHMARKS.md, sixth and tenth sessions, 1,000,000 events): on
    // PostgreSQL 4,000 events against 500 made catch-ups and rebuilds 1.1–1.2× faster. On SQLite a
    // batch holds the single writer the commands queue for, and what a commit costs depends on the
    // view (`my_page` writes a page per customer: 105 ms for 2,000 events, `rental_status` 28 ms),
    // so its batches are sized to hold the writer about `catch_up_hold`, up to 8,000 events: with
    // four views catching up together, 16,000 held 253–261 MB at the peak against 193–209, and was
    // no faster (72–73 s to the head against 55–72).
    let (catch_up_batch_size, catch_up_hold) = match db.backend {
        Backend::Sqlite => (8_000, Some(config.catch_up_hold)),
        Backend::Postgres => (4_000, None),
    };
    let defaults = WorkerSettings::default();
    // `WorkerSettings::coalesce` says why its default is what it is (ADR 22, 27).
    let coalesce = config.worker_coalesce.unwrap_or(defaults.coalesce);
    let state = AppState(Arc::new(App {
        log: GlobalLog::new(&db),
        sqlite_reads: db.sqlite_views_file.as_ref().map(|file| Arc::new(SqliteReads::new(file))),
        db,
        bus,
        tokens: TokenKeys::new(&secret),
        rental_terms: config.rental_terms,
        key_locks: Arc::default(),
        reconcile_after: config.payment.reconcile_after,
        views: Arc::default(),
        answers: Arc::default(),
        rentals: Arc::new(Bounded::new(commands::RENTALS_REMEMBERED)),
        applied: Applied::new(workers::projections().iter().map(|projection| projection.name())),
        rate_limiter: limits::RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst).map(Arc::new),
        worker_settings: WorkerSettings {
            lease_ttl: config.worker_lease,
            poll_interval: config.worker_poll,
            coalesce,
            catch_up_batch_size,
            catch_up_hold,
            ..defaults
        },
    }));
    workers::ensure_projections(&state)
        .await
        .map_err(|error| anyhow::anyhow!(error))
        .context("setting the projections up")?;
    Ok(state)
}
