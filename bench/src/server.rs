//! The system under test: the release `storming` binary as a child process on a fresh database,
//! and the probes around it (readiness, RSS, fsync speed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub const JWT_SECRET: &str = "storming-bench-secret";

/// A fresh database for one workload group.
pub struct FreshDb {
    pub url: String,
    dir: Option<PathBuf>,
    postgres: Option<(String, String)>,
}

impl FreshDb {
    pub async fn create(backend: &str, admin_url: &str, n: usize) -> anyhow::Result<Self> {
        if backend == "sqlite" {
            let dir = std::env::temp_dir().join(format!("storming-bench-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            return Ok(Self { url: format!("sqlite://{}/bench.db", dir.display()), dir: Some(dir), postgres: None });
        }
        let name = format!("storming_bench_{}_{n}", std::process::id());
        let admin = sqlx::PgPool::connect(admin_url).await.context("connecting to PostgreSQL")?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
        // Start every group from the same state: dirty pages written out.
        sqlx::query("CHECKPOINT").execute(&admin).await?;
        admin.close().await;
        // postgres://HOST/DB?OPTIONS: the group's database replaces DB; the options stay.
        let (address, options) = admin_url.split_once('?').map_or((admin_url, ""), |(a, o)| (a, o));
        let (base, _) = address.rsplit_once('/').context("a database URL ends in /NAME")?;
        let options = if options.is_empty() { String::new() } else { format!("?{options}") };
        Ok(Self { url: format!("{base}/{name}{options}"), dir: None, postgres: Some((admin_url.to_string(), name)) })
    }

    pub async fn drop(self) {
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin_url, name)) = self.postgres {
            if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
            }
        }
    }
}

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts `storming serve` and returns once `/readyz` answers, with the time that took.
    pub async fn start(
        binary: &Path,
        db_url: &str,
        port: u16,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(Self, Duration)> {
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env("STORMING_DATABASE_URL", db_url)
            .env("STORMING_LISTEN", format!("127.0.0.1:{port}"))
            .env("STORMING_JWT_SECRET", JWT_SECRET)
            .env("STORMING_RATE_LIMIT_PER_SECOND", "0")
            .env("STORMING_LOG", "warn,sqlx=error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (name, value) in extra {
            command.env(name, value);
        }
        let child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let server = Self { child, base };
        let client = reqwest::Client::new();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(answer) = client.get(format!("{}/readyz", server.base)).send().await {
                if answer.status().is_success() {
                    return Ok((server, started.elapsed()));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        bail!("the server was not ready within 60 s")
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// The most resident memory the server has held since it started (the kernel's high-water
    /// mark): what a reading at the end of a run cannot show if memory was given back before it.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.child.id(), "VmHWM:")
    }

    /// SIGTERM, then wait.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        self.child.wait()?;
        Ok(())
    }
}

/// Resident memory of process `pid`, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// One of the kiB figures of `/proc/PID/status` (`field` with its colon), 0 if unreadable.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// How many 8 KiB write + fdatasync rounds the disk does per second right now (the figure that
/// bounds single-client commits), measured for one second in `dir`.
pub fn fsync_per_second(dir: &Path) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = dir.join(format!("fsync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = [0u8; 8192];
    let started = Instant::now();
    let mut rounds = 0u32;
    while started.elapsed() < Duration::from_secs(1) {
        file.write_all(&block)?;
        file.sync_data()?;
        rounds += 1;
    }
    let rate = f64::from(rounds) / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(rate)
}

/// `sync`: write the OS's unwritten data out before a group, so groups start alike.
pub fn sync() {
    let _ = Command::new("sync").status();
}

/// The whole machine's CPU time so far (`/proc/stat`, in clock ticks): busy, stolen by the
/// hypervisor, and all. These VMs lose a varying share of their cores to the host; recording it
/// with each point says how much of a difference between runs is the machine's.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTicks {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTicks {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .find(|line| line.starts_with("cpu "))
            .map(|line| line.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect())
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal …
        let field = |n: usize| fields.get(n).copied().unwrap_or(0);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        let total = busy + field(3) + field(4) + field(7);
        Self { busy, steal: field(7), total }
    }

    /// Since `earlier`: cores kept busy on average (of the machine's), and the share of all CPU
    /// time the hypervisor took.
    pub fn since(self, earlier: Self, elapsed: Duration) -> MachineUse {
        let ticks_per_second = 100.0; // USER_HZ on Linux
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        MachineUse {
            busy_cores: self.busy.saturating_sub(earlier.busy) as f64 / ticks_per_second / elapsed.as_secs_f64(),
            steal_share: self.steal.saturating_sub(earlier.steal) as f64 / total,
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MachineUse {
    pub busy_cores: f64,
    pub steal_share: f64,
}

impl MachineUse {
    /// For a point that ran at `per_second`: the machine's CPU per operation (server, database and
    /// load generator together), a figure the host's noise moves less than the rate.
    pub fn describe(&self, per_second: f64) -> String {
        let cpu_ms = self.busy_cores * 1000.0 / per_second.max(1.0);
        format!("{:.2} cores busy, {cpu_ms:.2} ms CPU/op, steal {:.0}%", self.busy_cores, self.steal_share * 100.0)
    }
}
