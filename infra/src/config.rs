//! Configuration from the environment (names in API.md), with the defaults of a dev start.

use std::path::PathBuf;
use std::time::Duration;

use chrono::TimeDelta;
use rand::RngCore;
use storming_domain::rental::RentalTerms;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("could not read or write the JWT secret file {path}: {source}")]
    SecretFile { path: PathBuf, source: std::io::Error },
}

/// A value that must never reach a log line or an error body.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentProviderKind {
    /// Approves every charge and refund at once; the default for a dev start.
    Simulated,
    /// The provider contract of API.md at this base URL.
    Http { url: String },
}

/// How the provider is called: the timeout of one call and the circuit breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentSettings {
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// How long an approved charge may wait for its transaction's own events before the
    /// reconciliation policy refunds it (the core command crashed in between).
    pub reconcile_after: Duration,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(2000),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_millis(10_000),
            reconcile_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: String,
    pub jwt_secret: Option<Secret>,
    pub payment_provider: PaymentProviderKind,
    pub payment: PaymentSettings,
    pub rental_terms: RentalTerms,
    /// Largest database pool per process (each backend pool and the read-side pool).
    pub db_pool_size: u32,
    /// How long a worker's lease lasts unrenewed: a dead owner is replaced after this.
    pub worker_lease: Duration,
    /// How often an idle worker looks at the log when nothing woke it.
    pub worker_poll: Duration,
    /// How long a worker at the head lets new events gather before its next batch; `None`: the
    /// backend's default (`storming-api` chooses it, ADR 22).
    pub worker_coalesce: Option<Duration>,
    /// SQLite: how long one batch of a projection that is catching up may hold the single writer
    /// the commands queue for (its batches are sized to it).
    pub catch_up_hold: Duration,
    /// Requests per second per caller (0: no limit), and the burst allowed above it.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// The async runtime's threads; `None`: [`Config::runtime_threads`] chooses by the backend.
    pub runtime_threads: Option<usize>,
}

impl Config {
    pub const DEFAULT_DATABASE_URL: &'static str = "sqlite://storming.db";
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8088";

    /// Reads `STORMING_*` from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let payment_provider = match get("STORMING_PAYMENT_PROVIDER").as_deref() {
            None | Some("simulated") => PaymentProviderKind::Simulated,
            Some("http") => match get("STORMING_PAYMENT_URL") {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    PaymentProviderKind::Http { url }
                }
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "STORMING_PAYMENT_URL",
                        reason: "must be an http:// or https:// URL when STORMING_PAYMENT_PROVIDER=http".into(),
                    })
                }
            },
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "STORMING_PAYMENT_PROVIDER",
                    reason: format!("`{other}` is not a provider (`simulated` or `http`)"),
                })
            }
        };
        let milliseconds = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                Some(value) => Ok(Duration::from_millis(parse_number(name, &value, 1)? as u64)),
                None => Ok(default),
            }
        };
        let payment_defaults = PaymentSettings::default();
        let payment = PaymentSettings {
            timeout: milliseconds("STORMING_PAYMENT_TIMEOUT_MS", payment_defaults.timeout)?,
            breaker_failures: match get("STORMING_PAYMENT_BREAKER_FAILURES") {
                Some(value) => parse_number("STORMING_PAYMENT_BREAKER_FAILURES", &value, 1)? as u32,
                None => payment_defaults.breaker_failures,
            },
            breaker_cooldown: milliseconds("STORMING_PAYMENT_BREAKER_COOLDOWN_MS", payment_defaults.breaker_cooldown)?,
            reconcile_after: milliseconds("STORMING_PAYMENT_RECONCILE_AFTER_MS", payment_defaults.reconcile_after)?,
        };
        let defaults = RentalTerms::default();
        let rental_terms = RentalTerms {
            rental_period: match get("STORMING_RENTAL_PERIOD_DAYS") {
                Some(days) => TimeDelta::days(parse_number("STORMING_RENTAL_PERIOD_DAYS", &days, 1)?),
                None => defaults.rental_period,
            },
            cancel_window: match get("STORMING_RENTAL_CANCEL_WINDOW_MINUTES") {
                Some(minutes) => {
                    TimeDelta::minutes(parse_number("STORMING_RENTAL_CANCEL_WINDOW_MINUTES", &minutes, 0)?)
                }
                None => defaults.cancel_window,
            },
        };
        let db_pool_size = match get("STORMING_DB_POOL_SIZE") {
            Some(size) => parse_number("STORMING_DB_POOL_SIZE", &size, 1)? as u32,
            None => 8,
        };
        Ok(Self {
            database_url: get("STORMING_DATABASE_URL").unwrap_or_else(|| Self::DEFAULT_DATABASE_URL.into()),
            listen: get("STORMING_LISTEN").unwrap_or_else(|| Self::DEFAULT_LISTEN.into()),
            jwt_secret: get("STORMING_JWT_SECRET").map(Secret::new),
            payment_provider,
            payment,
            worker_lease: milliseconds("STORMING_WORKER_LEASE_MS", Duration::from_secs(5))?,
            worker_poll: milliseconds("STORMING_WORKER_POLL_MS", Duration::from_millis(500))?,
            worker_coalesce: get("STORMING_WORKER_COALESCE_MS")
                .map(|value| parse_number("STORMING_WORKER_COALESCE_MS", &value, 0))
                .transpose()?
                .map(|ms| Duration::from_millis(ms as u64)),
            catch_up_hold: milliseconds("STORMING_CATCH_UP_HOLD_MS", Duration::from_millis(200))?,
            rate_limit_per_second: match get("STORMING_RATE_LIMIT_PER_SECOND") {
                Some(value) => parse_number("STORMING_RATE_LIMIT_PER_SECOND", &value, 0)? as u32,
                None => 100,
            },
            rate_limit_burst: match get("STORMING_RATE_LIMIT_BURST") {
                Some(value) => parse_number("STORMING_RATE_LIMIT_BURST", &value, 1)? as u32,
                None => 200,
            },
            runtime_threads: get("STORMING_RUNTIME_THREADS")
                .map(|value| parse_number("STORMING_RUNTIME_THREADS", &value, 1))
                .transpose()?
                .map(|threads| threads as usize),
            rental_terms,
            db_pool_size,
        })
    }

    /// How many threads the async runtime runs on a machine of `cores` cores: the requests' HTTP,
    /// their decisions and the workers' own logic run there. `STORMING_RUNTIME_THREADS` when set;
    /// else one per core on PostgreSQL, and on SQLite one less (at least one), because there the
    /// database's own work (the appends and their syncs, the views' batches, the reads in place)
    /// runs on the process's blocking threads, and a runtime thread per core only competes with it
    /// (ADR 40).
    pub fn runtime_threads(&self, cores: usize) -> usize {
        match self.runtime_threads {
            Some(threads) => threads,
            None if self.database_url.starts_with("sqlite:") => cores.saturating_sub(1).max(1),
            None => cores.max(1),
        }
    }

    /// The SQLite file behind `database_url`, if the store is SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite://").or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The JWT secret: from `STORMING_JWT_SECRET`, or else (SQLite dev start) the one persisted
    /// next to the database file, generated on first use. Returns where it came from.
    pub fn resolve_jwt_secret(&self) -> Result<(Secret, JwtSecretSource), ConfigError> {
        if let Some(secret) = &self.jwt_secret {
            return Ok((secret.clone(), JwtSecretSource::Environment));
        }
        let Some(db_path) = self.sqlite_path() else {
            return Err(ConfigError::Invalid {
                name: "STORMING_JWT_SECRET",
                reason: "must be set when the database is not a local SQLite file".into(),
            });
        };
        let path = PathBuf::from(format!("{}.jwt-secret", db_path.display()));
        let io = |source| ConfigError::SecretFile { path: path.clone(), source };
        match std::fs::read_to_string(&path) {
            Ok(existing) if !existing.trim().is_empty() => {
                return Ok((Secret::new(existing.trim()), JwtSecretSource::File { path, created: false }));
            }
            Ok(_) => {} // an empty file: write a fresh secret into it
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, &secret).map_err(io)?;
        Ok((Secret::new(secret), JwtSecretSource::File { path, created: true }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtSecretSource {
    Environment,
    File { path: PathBuf, created: bool },
}

fn parse_number(name: &'static str, value: &str, min: i64) -> Result<i64, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(number) if number >= min => Ok(number),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("expected a whole number of at least {min}, got `{value}`"),
        }),
    }
}

fn write_private(path: &PathBuf, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn it_should_default_to_the_embedded_sqlite_store() {
        let config = config(&[]).unwrap();
        assert_eq!(config.database_url, "sqlite://storming.db");
        assert_eq!(config.sqlite_path(), Some(PathBuf::from("storming.db")));
        assert_eq!(config.rental_terms, RentalTerms::default());
        assert_eq!(config.worker_coalesce, None, "the backend's own default");
    }

    #[test]
    fn the_runtime_should_leave_sqlite_a_core_unless_told() {
        let sqlite = config(&[]).unwrap();
        assert_eq!((sqlite.runtime_threads(2), sqlite.runtime_threads(8), sqlite.runtime_threads(1)), (1, 7, 1));
        let postgres = config(&[("STORMING_DATABASE_URL", "postgres://db/storming")]).unwrap();
        assert_eq!((postgres.runtime_threads(2), postgres.runtime_threads(8)), (2, 8));
        let told = config(&[("STORMING_RUNTIME_THREADS", "3")]).unwrap();
        assert_eq!(told.runtime_threads(2), 3);
        assert!(config(&[("STORMING_RUNTIME_THREADS", "0")]).is_err());
    }

    #[test]
    fn a_coalesce_given_is_kept_whatever_the_backend() {
        let given = config(&[("STORMING_WORKER_COALESCE_MS", "0")]).unwrap();
        assert_eq!(given.worker_coalesce, Some(Duration::ZERO));
        assert!(config(&[("STORMING_WORKER_COALESCE_MS", "soon")]).is_err());
    }

    #[test]
    fn it_should_reject_a_provider_it_does_not_have() {
        assert!(matches!(config(&[("STORMING_PAYMENT_PROVIDER", "bitcoin")]), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn it_should_need_a_url_for_the_http_provider() {
        assert!(config(&[("STORMING_PAYMENT_PROVIDER", "http")]).is_err());
        let config = config(&[
            ("STORMING_PAYMENT_PROVIDER", "http"),
            ("STORMING_PAYMENT_URL", "http://127.0.0.1:9999"),
            ("STORMING_PAYMENT_TIMEOUT_MS", "300"),
            ("STORMING_PAYMENT_BREAKER_FAILURES", "2"),
        ])
        .unwrap();
        assert_eq!(config.payment_provider, PaymentProviderKind::Http { url: "http://127.0.0.1:9999".into() });
        assert_eq!(config.payment.timeout, Duration::from_millis(300));
        assert_eq!(config.payment.breaker_failures, 2);
        assert_eq!(config.payment.breaker_cooldown, Duration::from_secs(10));
    }

    #[test]
    fn it_should_persist_a_generated_secret_next_to_the_sqlite_file() {
        let dir = std::env::temp_dir().join(format!("storming-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/app.db", dir.display());
        let config = config(&[("STORMING_DATABASE_URL", &url)]).unwrap();
        let (first, source) = config.resolve_jwt_secret().unwrap();
        assert!(matches!(source, JwtSecretSource::File { created: true, .. }));
        let (again, source) = config.resolve_jwt_secret().unwrap();
        assert!(matches!(source, JwtSecretSource::File { created: false, .. }));
        assert_eq!(first, again, "serve and token must agree on the secret");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn it_should_require_a_secret_for_postgres() {
        let config = config(&[("STORMING_DATABASE_URL", "postgres://postgres@127.0.0.1/x")]).unwrap();
        assert!(config.resolve_jwt_secret().is_err());
    }

    #[test]
    fn it_should_never_print_a_secret() {
        let config = config(&[("STORMING_JWT_SECRET", "hunter2")]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
