//! The `storming` binary: `serve`, `work`, `replay`, `migrate`, `token`, `events`.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use storming_api::auth::{Role, TokenKeys};
use storming_api::{ServeOptions, Server, WorkerProcess};
use storming_domain::recorded::LogCursor;
use storming_infra::config::Config;
use storming_infra::db::Database;
use storming_infra::log::{GlobalLog, LogFilter};
use tracing_subscriber::EnvFilter;

/// storming: five Event-Storming businesses on one event-sourced backbone.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API on STORMING_LISTEN, with every worker in-process.
    Serve {
        /// Run the API only; workers run elsewhere.
        #[arg(long)]
        no_workers: bool,
    },
    /// Run workers without the HTTP API (one process per supporting context, or replicas).
    Work {
        /// Only these workers, comma-separated (see `GET /admin/projections` for the names).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
    },
    /// Rebuild a view from the log into a new generation while the current one keeps answering,
    /// and switch to it once it has caught up.
    Replay {
        /// The projection: book_catalog, rental_status, payments or my_page.
        name: String,
    },
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
    /// Print a signed JWT for trying the API.
    Token {
        /// The user id (`sub`): a customer's id, or any staff name.
        #[arg(long)]
        sub: String,
        /// Roles, comma-separated: customer, book_manager, seller, store_owner, rider,
        /// hotel_manager, space_manager, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        role: Vec<String>,
        /// Hours until the token expires.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
    },
    /// Print events of the global log as JSON lines, in the order workers apply them.
    Events {
        /// Only events of this business transaction.
        #[arg(long)]
        correlation_id: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

fn main() -> anyhow::Result<()> {
    bound_the_heap();
    let cli = Cli::parse();
    let config = Config::from_env().context("reading the configuration")?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime_threads(cores))
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(cli, config))
}

/// glibc's allocator, set before any thread starts. Left to itself on this process, glibc gives
/// each thread (the runtime's workers, a dozen SQLite connection threads) a heap of its own, up to
/// 8 per core, and raises its threshold for serving a block by `mmap` each time a large one is
/// freed, after which large buffers (a batch of the log, a page of rows) stay in those heaps. Four
/// heaps and a fixed 128 KiB threshold: at 64 clients on SQLite the server held 43–46 MB (peaks
/// 43–49) instead of 55–56 (57–58), for 3–4% of the commands' rate at 16 clients and 8–9% at 64
/// (BENCHMARKS.md, thirteenth session). glibc's own `MALLOC_ARENA_MAX` and
/// `MALLOC_MMAP_THRESHOLD_`, when set, win.
fn bound_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none();
        // SAFETY: mallopt only changes glibc's allocation parameters; no thread has started yet.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 4);
            }
            if unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            }
        }
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("STORMING_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match cli.command {
        Command::Serve { no_workers } => serve(&config, ServeOptions { workers: !no_workers }).await,
        Command::Work { only } => {
            let workers = WorkerProcess::start(&config, only.as_deref()).await?;
            tracing::info!("workers running; SIGTERM or Ctrl-C stops them");
            shutdown_signal().await;
            workers.shutdown().await
        }
        Command::Replay { name } => {
            let generation = storming_api::replay(&config, &name).await?;
            tracing::info!(projection = %name, generation, "rebuilt; the new generation is active");
            Ok(())
        }
        Command::Migrate => {
            Database::connect(&config.database_url, 1).await.context("migrating the database")?.close().await;
            tracing::info!("the database is migrated");
            Ok(())
        }
        Command::Token { sub, role, ttl_hours } => {
            let roles = role
                .iter()
                .map(|name| Role::parse(name.trim()).with_context(|| format!("unknown role `{name}`")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if sub.trim().is_empty() {
                bail!("--sub must not be empty");
            }
            let (secret, _) = config.resolve_jwt_secret().context("resolving the JWT secret")?;
            println!("{}", TokenKeys::new(&secret).issue(&sub, &roles, Duration::from_secs(ttl_hours * 3600)));
            Ok(())
        }
        Command::Events { correlation_id, limit } => {
            let db = Database::connect(&config.database_url, 1).await.context("opening the database")?;
            let filter = LogFilter { correlation_id, ..LogFilter::default() };
            for event in GlobalLog::new(&db).read_after(LogCursor::START, limit, &filter).await? {
                println!("{}", serde_json::to_string(&event)?);
            }
            db.close().await;
            Ok(())
        }
    }
}

async fn serve(config: &Config, options: ServeOptions) -> anyhow::Result<()> {
    let server = Server::start(config, options).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests and worker batches");
    server.shutdown().await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
