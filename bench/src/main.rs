//! `storming-bench`: measures storming against the database's own ceiling, in the same run.
//!
//! Every group starts on a fresh database after `sync` (and `CHECKPOINT` on PostgreSQL), with the
//! disk's fsync speed recorded; every point is a warm-up and then `--repeats` runs of `--seconds`,
//! reported as median and min–max, with latencies from full histograms. Loopback only; every loop
//! is bounded in time. `--smoke` runs each workload for a moment (CI keeps the harness alive with
//! it; its figures mean nothing). See BENCHMARKS.md for the figures and how to reproduce them.

mod report;
mod server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use server::{CpuTicks, FreshDb, Server, JWT_SECRET};
use storming_api::auth::{Role, TokenKeys};
use storming_infra::config::Secret;
use storming_infra::db::{Database, StorePool, SQLITE_BUSY_TIMEOUT};
use storming_infra::event_store::open_append_connection;
use tokio::task::JoinHandle;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmarks of storming and of its database's ceiling, in one run")]
struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// PostgreSQL server (a database per group is created there and dropped after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// The `storming` binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    #[arg(long, default_value_t = 3)]
    repeats: u32,
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    clients: Vec<usize>,
    /// Events in the log for the catch-up and rebuild group.
    #[arg(long, default_value_t = 1_000_000)]
    catchup_events: i64,
    /// The order of that log's events: `interleaved`, each event of a book drawn at random (as a
    /// live log interleaves its customers), or `rounds`, every book's next event in turn (so a
    /// thousand events of one type follow each other; the log of the sessions before the twelfth).
    #[arg(long, value_enum, default_value_t = LogOrder::Interleaved)]
    catchup_order: LogOrder,
    /// Commands per second (all four command clients together) while the queries group reads:
    /// a fixed load, so that a faster command path does not take CPU from the queries it measures.
    /// The lag group's load too, when the commands group did not run (else half its highest rate).
    #[arg(long, default_value_t = 250.0)]
    command_rate: f64,
    /// A moment per workload: proves the harness works, measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Where to write the results as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these groups: commands, ceiling, contended, queries, lag, catchup.
    #[arg(long, value_delimiter = ',', default_value = "commands,ceiling,contended,queries,lag,catchup")]
    groups: Vec<String>,
    /// Run nothing: print the issue's targets checked against these result files (written by
    /// `--out`), as Markdown.
    #[arg(long, num_args = 1..)]
    report: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum LogOrder {
    Interleaved,
    Rounds,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct Run {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    conflicts_per_second: f64,
    errors: u64,
}

/// A point: the runs and their median with min–max.
#[derive(Debug, Clone, Serialize)]
struct Point {
    workload: String,
    clients: usize,
    runs: Vec<Run>,
    median_per_second: f64,
    min_per_second: f64,
    max_per_second: f64,
    median_p50_ms: f64,
    median_p99_ms: f64,
}

impl Point {
    fn new(workload: &str, clients: usize, runs: Vec<Run>) -> Self {
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let rates: Vec<f64> = runs.iter().map(|run| run.per_second).collect();
        Self {
            workload: workload.to_string(),
            clients,
            median_per_second: median(rates.clone()),
            min_per_second: rates.iter().copied().fold(f64::INFINITY, f64::min),
            max_per_second: rates.iter().copied().fold(0.0, f64::max),
            median_p50_ms: median(runs.iter().map(|run| run.p50_ms).collect()),
            median_p99_ms: median(runs.iter().map(|run| run.p99_ms).collect()),
            runs,
        }
    }
}

/// What one client did in one run.
struct Tally {
    latencies: Histogram<u64>,
    ok: u64,
    conflicts: u64,
    errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            ok: 0,
            conflicts: 0,
            errors: 0,
        }
    }

    fn record(&mut self, started: Instant, status: u16, ok: u16) {
        let _ = self.latencies.record(started.elapsed().as_micros().max(1) as u64);
        match status {
            s if s == ok => self.ok += 1,
            409 => self.conflicts += 1,
            _ => self.errors += 1,
        }
    }
}

fn summarize(tallies: Vec<Tally>, elapsed: Duration) -> Run {
    let mut all = Tally::new();
    for tally in tallies {
        let _ = all.latencies.add(&tally.latencies);
        all.ok += tally.ok;
        all.conflicts += tally.conflicts;
        all.errors += tally.errors;
    }
    let seconds = elapsed.as_secs_f64();
    Run {
        per_second: all.ok as f64 / seconds,
        p50_ms: all.latencies.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.latencies.value_at_quantile(0.99) as f64 / 1000.0,
        conflicts_per_second: all.conflicts as f64 / seconds,
        errors: all.errors,
    }
}

/// An HTTP client of the server under test.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    tokens: TokenKeys,
}

impl Api {
    fn token(&self, sub: &str, role: Role) -> String {
        self.tokens.issue(sub, &[role], Duration::from_secs(3600))
    }

    async fn post(&self, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(answer) => (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    async fn get(&self, token: &str, path: &str) -> u16 {
        status_of(self.http.get(format!("{}{path}", self.base)).bearer_auth(token)).await
    }

    /// How far the server's views are behind the log's head (`GET /admin/projections`): the most
    /// events and the most milliseconds of any projection. A load the views do not keep up with
    /// shows here, not in the commands' own figures, and holds memory: a projection that is
    /// behind reads in catch-up batches. (A policy's stored checkpoint trails what it has done
    /// by up to a lease renewal, so policies are left out.)
    async fn views_behind(&self) -> Option<(i64, i64)> {
        let admin = self.token("bench-admin", Role::Admin);
        let answer = self.http.get(format!("{}/admin/projections", self.base)).bearer_auth(admin).send().await.ok()?;
        let page: Value = answer.json().await.ok()?;
        let views = page["items"].as_array()?.iter().filter(|worker| worker["kind"] == "projection");
        let most = |field: &str| views.clone().filter_map(|view| view[field].as_i64()).max().unwrap_or(0);
        Some((most("lag_events"), most("lag_ms")))
    }

    /// How many queries the server has answered with a kept answer and how many it read since it
    /// started (`storming_query_answers_total` in `GET /metrics`, ADR 39); `None` from a server that
    /// does not count them.
    async fn query_answers(&self) -> Option<(u64, u64)> {
        let text = self.metrics().await?;
        Some((
            counter(&text, "storming_query_answers_total{from=\"kept\"}")?,
            counter(&text, "storming_query_answers_total{from=\"read\"}")?,
        ))
    }

    /// How many turns of the writer the server has taken since it started, and how many of them
    /// its request's own thread stored (`storming_event_store_turns_total` and
    /// `storming_event_store_turns_on_request_thread_total` in `GET /metrics`, ADR 41); `None` from
    /// a server that does not count them.
    async fn turns(&self) -> Option<(u64, u64)> {
        let text = self.metrics().await?;
        Some((
            counter(&text, "storming_event_store_turns_total")?,
            counter(&text, "storming_event_store_turns_on_request_thread_total")?,
        ))
    }

    /// How many charges the server has refunded since it started because their command's events
    /// were not stored (`storming_payment_unrecorded_charges_total{outcome="refunded"}` in
    /// `GET /metrics`); `None` from a server that does not count them.
    async fn unrecorded_charges_refunded(&self) -> Option<u64> {
        let text = self.metrics().await?;
        counter(&text, "storming_payment_unrecorded_charges_total{outcome=\"refunded\"}")
    }

    async fn healthz(&self) -> u16 {
        status_of(self.http.get(format!("{}/healthz", self.base))).await
    }

    async fn metrics(&self) -> Option<String> {
        self.http.get(format!("{}/metrics", self.base)).send().await.ok()?.text().await.ok()
    }

    /// Registers `count` books and waits until the shelf policy has shelved them all.
    async fn shelved_books(&self, count: usize, tag: &str) -> anyhow::Result<Vec<String>> {
        let manager = self.token("bench-librarian", Role::BookManager);
        let mut ids = Vec::new();
        for n in 0..count {
            let (status, body) = self
                .post(
                    &manager,
                    "/commands/book-rental/books",
                    Some(json!({"title": format!("{tag} {n}"), "rental_fee": 1000})),
                )
                .await;
            if status != 201 {
                bail!("registering a book answered {status}: {body}");
            }
            ids.push(body["id"].as_str().context("a book id")?.to_string());
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for id in &ids {
            loop {
                let answer = self
                    .http
                    .get(format!("{}/queries/book-rental/books/{id}", self.base))
                    .bearer_auth(&manager)
                    .send()
                    .await?;
                let book: Value = answer.json().await.unwrap_or(Value::Null);
                if book["on_shelf"] == true {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("book {id} was never shelved");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(ids)
    }
}

/// The status of `request`'s answer, read to its end (0 when none came).
async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    match request.send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let _ = answer.bytes().await;
            status
        }
        Err(_) => 0,
    }
}

/// A customer renting and returning one book, again and again.
struct Renter {
    token: String,
    book_id: String,
    rental: Option<String>,
}

impl Renter {
    /// One command: rent if not renting, else return.
    async fn step(&mut self, api: &Api, tally: &mut Tally) -> Option<i64> {
        let started = Instant::now();
        match self.rental.take() {
            None => {
                let (status, body) = api
                    .post(&self.token, "/commands/book-rental/rentals", Some(json!({"book_id": self.book_id})))
                    .await;
                tally.record(started, status, 201);
                if status == 201 {
                    self.rental = body["id"].as_str().map(String::from);
                }
                body["position"].as_i64()
            }
            Some(rental) => {
                let (status, body) =
                    api.post(&self.token, &format!("/commands/book-rental/rentals/{rental}/return"), None).await;
                tally.record(started, status, 200);
                if status != 200 {
                    self.rental = Some(rental);
                }
                body["position"].as_i64()
            }
        }
    }
}

/// Runs `renters` concurrently for `length`, each as fast as it is answered or, with `pace`, at
/// most one command per `pace`; returns them (with their state) and the run.
async fn drive(api: &Api, renters: Vec<Renter>, length: Duration, pace: Option<Duration>) -> (Vec<Renter>, Run) {
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let tasks: Vec<_> = renters
        .into_iter()
        .map(|mut renter| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut ticks = pace.map(|pace| {
                    let mut ticks = tokio::time::interval(pace);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticks
                });
                while Instant::now() < deadline {
                    if let Some(ticks) = &mut ticks {
                        ticks.tick().await;
                    }
                    renter.step(&api, &mut tally).await;
                }
                (renter, tally)
            })
        })
        .collect();
    let mut renters = Vec::new();
    let mut tallies = Vec::new();
    for task in tasks {
        let (renter, tally) = task.await.expect("a renter task");
        renters.push(renter);
        tallies.push(tally);
    }
    (renters, summarize(tallies, started.elapsed()))
}

/// The lag probe: a customer renting and returning its own book until `deadline`, reading each
/// command's effect on my-page with `min_position`; the tally times those reads (commit →
/// visible in the view).
async fn probe_lag(api: &Api, mut renter: Renter, deadline: Instant) -> (Renter, Tally) {
    let mut lag = Tally::new();
    let mut ignored = Tally::new();
    while Instant::now() < deadline {
        if let Some(position) = renter.step(api, &mut ignored).await {
            let begun = Instant::now();
            let status = api.get(&renter.token, &format!("/queries/my-page?min_position={position}")).await;
            lag.record(begun, status, 200);
        }
    }
    // The probe's own failed commands count as its errors, so that a probe that measured
    // nothing says why.
    lag.errors += ignored.errors;
    lag.conflicts += ignored.conflicts;
    (renter, lag)
}

/// The HTTP floor: one client asking `GET /healthz` (no body, no token, no database) as fast as
/// it is answered, for `length`. What an exchange with the server costs on this machine with this
/// client, before any command's work: the part of a one-client command that no change to the
/// command path can remove.
async fn drive_floor(api: &Api, length: Duration) -> Run {
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let mut tally = Tally::new();
    while Instant::now() < deadline {
        let asked = Instant::now();
        let status = api.healthz().await;
        tally.record(asked, status, 200);
    }
    summarize(vec![tally], started.elapsed())
}

/// Warm-up, then the repeats.
async fn measure(api: &Api, mut renters: Vec<Renter>, args: &Args) -> (Vec<Renter>, Vec<Run>) {
    if args.warmup > 0 {
        renters = drive(api, renters, Duration::from_secs(args.warmup), None).await.0;
    }
    let mut runs = Vec::new();
    for _ in 0..args.repeats {
        let (back, run) = drive(api, renters, Duration::from_secs(args.seconds), None).await;
        renters = back;
        runs.push(run);
    }
    (renters, runs)
}

struct Bench {
    args: Args,
    binary: PathBuf,
    groups: usize,
    results: Vec<Value>,
    /// The highest command rate the commands group reached in this run: full load.
    full_load: Option<f64>,
}

impl Bench {
    async fn fresh(&mut self) -> anyhow::Result<FreshDb> {
        self.groups += 1;
        server::sync();
        FreshDb::create(&self.args.backend, &self.args.postgres, self.groups).await
    }

    fn fsync(&self) -> f64 {
        server::fsync_per_second(&std::env::temp_dir()).unwrap_or(0.0)
    }

    async fn start(&self, db: &FreshDb) -> anyhow::Result<(Server, Duration, Api)> {
        let port = 30_000 + (std::process::id() % 10_000) as u16 + self.groups as u16;
        let (server, startup) = Server::start(&self.binary, &db.url, port, &[]).await?;
        let api = Api {
            http: reqwest::Client::new(),
            base: server.base.clone(),
            tokens: TokenKeys::new(&Secret::new(JWT_SECRET)),
        };
        Ok((server, startup, api))
    }

    /// Commands in the background for the whole group (warm-up and repeats): a client per book,
    /// `rate` per second in all; the task returns the run.
    fn command_load(&self, api: &Api, books: &[String], rate: f64) -> JoinHandle<(Vec<Renter>, Run)> {
        let background: Vec<Renter> = books
            .iter()
            .enumerate()
            .map(|(n, book_id)| Renter {
                token: api.token(&format!("bench-customer-{n}"), Role::Customer),
                book_id: book_id.clone(),
                rental: None,
            })
            .collect();
        let length = Duration::from_secs(self.args.warmup + u64::from(self.args.repeats) * self.args.seconds);
        let pace = Duration::from_secs_f64(background.len() as f64 / rate);
        let api = api.clone();
        tokio::spawn(async move { drive(&api, background, length, Some(pace)).await })
    }

    /// The rent → return cycle over HTTP at each concurrency, each client on its own book.
    async fn commands(&mut self) -> anyhow::Result<()> {
        for &clients in &self.args.clients.clone() {
            let db = self.fresh().await?;
            let fsync = self.fsync();
            let (server, startup, api) = self.start(&db).await?;
            let idle_rss = server.rss_kib();
            let books = api.shelved_books(clients, "cycle").await?;
            let renters = books
                .into_iter()
                .enumerate()
                .map(|(n, book_id)| Renter {
                    token: api.token(&format!("bench-customer-{n}"), Role::Customer),
                    book_id,
                    rental: None,
                })
                .collect();
            let turns_before = api.turns().await;
            let (cpu, started) = (CpuTicks::now(), Instant::now());
            let (_, runs) = measure(&api, renters, &self.args).await;
            let machine = CpuTicks::now().since(cpu, started.elapsed());
            let (loaded_rss, peak_rss) = (server.rss_kib(), server.peak_rss_kib());
            let (behind_events, behind_ms) = api.views_behind().await.unwrap_or_default();
            // The share of the writer's turns (warm-up included) that their request's own thread
            // stored (ADR 41).
            let on_request = match (turns_before, api.turns().await) {
                (Some((turns, on_request)), Some((turns_after, on_request_after))) if turns_after > turns => {
                    Some((on_request_after - on_request) as f64 / (turns_after - turns) as f64)
                }
                _ => None,
            };
            let on_request_line = on_request
                .map(|share| format!("  {:.0}% of turns on the request's thread", share * 100.0))
                .unwrap_or_default();
            let point = Point::new("commands", clients, runs);
            self.full_load = Some(self.full_load.unwrap_or(0.0).max(point.median_per_second));
            println!(
                "{} commands  {clients:>2} clients: {:>8.0}/s ({:.0}–{:.0})  p50 {:.2} ms  p99 {:.2} ms  RSS {} MB (peak {})  views behind at the end {behind_events} events, {behind_ms} ms{on_request_line}  [fsync {fsync:.0}/s; {}]",
                self.args.backend, point.median_per_second, point.min_per_second, point.max_per_second, point.median_p50_ms, point.median_p99_ms,
                loaded_rss / 1024, peak_rss / 1024, machine.describe(point.median_per_second)
            );
            self.results.push(
                json!({"group": "commands", "fsync_per_second": fsync, "startup_ms": startup.as_millis(),
                "rss_idle_kib": idle_rss, "rss_loaded_kib": loaded_rss, "rss_peak_kib": peak_rss,
                "views_behind_events": behind_events, "views_behind_ms": behind_ms,
                "turns_on_request_thread_share": on_request, "machine": machine, "point": point}),
            );
            if clients == 1 {
                self.floor(&api, fsync).await;
            }
            server.stop()?;
            db.drop().await;
        }
        Ok(())
    }

    /// The HTTP floor ([`drive_floor`]) on the server of the one-client commands point, after them:
    /// warm-up and repeats as theirs.
    async fn floor(&mut self, api: &Api, fsync: f64) {
        if self.args.warmup > 0 {
            drive_floor(api, Duration::from_secs(self.args.warmup)).await;
        }
        let (cpu, started) = (CpuTicks::now(), Instant::now());
        let mut runs = Vec::new();
        for _ in 0..self.args.repeats {
            runs.push(drive_floor(api, Duration::from_secs(self.args.seconds)).await);
        }
        let machine = CpuTicks::now().since(cpu, started.elapsed());
        let point = Point::new("healthz", 1, runs);
        println!(
            "{} http floor  1 client:  {:>8.0}/s ({:.0}–{:.0})  p50 {:.2} ms  p99 {:.2} ms  (GET /healthz, the same client and server)  [{}]",
            self.args.backend, point.median_per_second, point.min_per_second, point.max_per_second, point.median_p50_ms,
            point.median_p99_ms, machine.describe(point.median_per_second)
        );
        self.results.push(json!({"group": "floor", "fsync_per_second": fsync, "machine": machine, "point": point}));
    }

    /// Many clients, few books: conflicts (409) are counted apart from errors.
    async fn contended(&mut self) -> anyhow::Result<()> {
        let clients = if self.args.smoke { 4 } else { 64 };
        let db = self.fresh().await?;
        let fsync = self.fsync();
        let (server, _, api) = self.start(&db).await?;
        let books = api.shelved_books(4, "contended").await?;
        let renters = (0..clients)
            .map(|n| Renter {
                token: api.token(&format!("bench-contender-{n}"), Role::Customer),
                book_id: books[n % 4].clone(),
                rental: None,
            })
            .collect();
        let (_, runs) = measure(&api, renters, &self.args).await;
        // Warm-up included: a charge refunded because its rental lost a race at the store.
        let refunded = api.unrecorded_charges_refunded().await;
        let point = Point::new("contended", clients, runs);
        let conflicts: Vec<f64> = point.runs.iter().map(|run| run.conflicts_per_second).collect();
        let errors: u64 = point.runs.iter().map(|run| run.errors).sum();
        let refunded_line = refunded.map(|count| format!(", charged and refunded {count}")).unwrap_or_default();
        println!(
            "{} contended {clients} clients on 4 books: {:.0} commands/s, conflicts/s {conflicts:.0?}, errors {errors}{refunded_line}",
            self.args.backend, point.median_per_second
        );
        self.results.push(json!({"group": "contended", "fsync_per_second": fsync,
            "charged_and_refunded": refunded, "point": point}));
        server.stop()?;
        db.drop().await;
        Ok(())
    }

    /// Queries (rental status list, my-page) at 16 clients while 4 clients run commands at a fixed
    /// total rate (`--command-rate`); and the projection lag: a command, then its view read with
    /// `min_position`.
    async fn queries_and_lag(&mut self) -> anyhow::Result<()> {
        let db = self.fresh().await?;
        let fsync = self.fsync();
        let (server, _, api) = self.start(&db).await?;
        let books = api.shelved_books(5, "queried").await?;
        let load = self.command_load(&api, &books[..4], self.args.command_rate);
        let readers = if self.args.smoke { 2 } else { 16 };
        let mut runs = Vec::new();
        let mut lag_runs = Vec::new();
        let mut prober =
            Some(Renter { token: api.token("bench-prober", Role::Customer), book_id: books[4].clone(), rental: None });
        tokio::time::sleep(Duration::from_secs(self.args.warmup)).await;
        let answers_before = api.query_answers().await;
        for _ in 0..self.args.repeats {
            let deadline = Instant::now() + Duration::from_secs(self.args.seconds);
            let started = Instant::now();
            let tasks: Vec<_> = (0..readers)
                .map(|n| {
                    let api = api.clone();
                    let token = api.token(&format!("bench-customer-{}", n % 4), Role::Customer);
                    tokio::spawn(async move {
                        let mut tally = Tally::new();
                        let mut flip = false;
                        while Instant::now() < deadline {
                            flip = !flip;
                            let path = if flip {
                                "/queries/book-rental/rentals?limit=10"
                            } else {
                                "/queries/my-page?limit=10"
                            };
                            let begun = Instant::now();
                            let status = api.get(&token, path).await;
                            tally.record(begun, status, 200);
                        }
                        tally
                    })
                })
                .collect();
            // The prober is kept from run to run: a run that ends with its book rented must
            // return it first in the next (a fresh prober would be refused its rent forever).
            let probe = {
                let api = api.clone();
                let renter = prober.take().expect("the prober is back from the last run");
                tokio::spawn(async move { probe_lag(&api, renter, deadline).await })
            };
            let mut tallies = Vec::new();
            for task in tasks {
                tallies.push(task.await.expect("a reader"));
            }
            let elapsed = started.elapsed();
            runs.push(summarize(tallies, elapsed));
            let (renter, lag) = probe.await.expect("the probe");
            prober = Some(renter);
            lag_runs.push(summarize(vec![lag], elapsed));
        }
        let answers = match (answers_before, api.query_answers().await) {
            (Some((kept_before, read_before)), Some((kept, read))) => {
                let (kept, read) = (kept - kept_before, read - read_before);
                println!(
                    "{} queries answered with a kept answer (ADR 39): {kept} of {} ({:.1}%)",
                    self.args.backend,
                    kept + read,
                    100.0 * kept as f64 / (kept + read).max(1) as f64
                );
                json!({"kept": kept, "read": read})
            }
            _ => Value::Null,
        };
        let (_, load) = load.await.expect("the command load");
        let queries = Point::new("queries", readers, runs);
        let lag = Point::new("lag", 1, lag_runs);
        println!(
            "{} queries {readers} clients under load: {:.0}/s  p50 {:.2} ms  p99 {:.2} ms;  commit→visible p50 {:.2} ms  p99 {:.2} ms",
            self.args.backend, queries.median_per_second, queries.median_p50_ms, queries.median_p99_ms, lag.median_p50_ms, lag.median_p99_ms
        );
        if lag.runs.iter().any(|run| run.per_second == 0.0) {
            println!(
                "{} lag probe: a run measured nothing ({} errors)",
                self.args.backend,
                lag.runs.iter().map(|run| run.errors).sum::<u64>()
            );
        }
        println!(
            "{} queries' command load: {:.0}/s (asked {:.0}/s), {} errors",
            self.args.backend, load.per_second, self.args.command_rate, load.errors
        );
        self.results.push(json!({"group": "queries", "fsync_per_second": fsync, "point": queries,
            "command_load": {"asked_per_second": self.args.command_rate, "run": load}, "answers": answers}));
        self.results.push(json!({"group": "lag", "fsync_per_second": fsync, "point": lag}));
        server.stop()?;
        db.drop().await;
        Ok(())
    }

    /// The projection lag at half load: 4 clients run commands at half the highest rate the
    /// commands group reached in this run (`--command-rate` when it did not run), and the lag probe
    /// alone reads its view, with no readers beside it. The machine's use is recorded with it.
    async fn lag_at_half_load(&mut self) -> anyhow::Result<()> {
        let (rate, basis) = match self.full_load {
            Some(full) => (full / 2.0, "half the commands group's highest rate"),
            None => (self.args.command_rate, "--command-rate (the commands group did not run)"),
        };
        let db = self.fresh().await?;
        let fsync = self.fsync();
        let (server, _, api) = self.start(&db).await?;
        let books = api.shelved_books(5, "half-load").await?;
        let load = self.command_load(&api, &books[..4], rate);
        let mut prober =
            Renter { token: api.token("bench-prober", Role::Customer), book_id: books[4].clone(), rental: None };
        tokio::time::sleep(Duration::from_secs(self.args.warmup)).await;
        let (cpu, started) = (CpuTicks::now(), Instant::now());
        let mut runs = Vec::new();
        for _ in 0..self.args.repeats {
            let begun = Instant::now();
            let (back, lag) = probe_lag(&api, prober, begun + Duration::from_secs(self.args.seconds)).await;
            prober = back;
            runs.push(summarize(vec![lag], begun.elapsed()));
        }
        let machine = CpuTicks::now().since(cpu, started.elapsed());
        let (_, load) = load.await.expect("the command load");
        let lag = Point::new("lag_at_half_load", 1, runs);
        println!(
            "{} lag at half load: commit→visible p50 {:.2} ms  p99 {:.2} ms  beside {:.0} commands/s (asked {rate:.0}/s: {basis}), {} errors  [{:.2} cores busy, steal {:.0}%]",
            self.args.backend, lag.median_p50_ms, lag.median_p99_ms, load.per_second, load.errors,
            machine.busy_cores, machine.steal_share * 100.0
        );
        self.results
            .push(json!({"group": "lag_at_half_load", "fsync_per_second": fsync, "point": lag, "machine": machine,
            "command_load": {"asked_per_second": rate, "basis": basis, "run": load}}));
        server.stop()?;
        db.drop().await;
        Ok(())
    }

    /// The database's own ceiling: what a command does to it (read a stream's new events, append one,
    /// in one transaction), driven directly at the same concurrency.
    async fn ceiling(&mut self) -> anyhow::Result<()> {
        for &clients in &self.args.clients.clone() {
            let db = self.fresh().await?;
            let fsync = self.fsync();
            let database = Database::connect(&db.url, clients.max(1) as u32).await?;
            let (cpu, measuring) = (CpuTicks::now(), Instant::now());
            let runs = self
                .phases(clients, |n, deadline| {
                    let store = database.store.clone();
                    let gate = database.write_gate.clone();
                    tokio::spawn(async move {
                        let mut tally = Tally::new();
                        let stream = format!("ceiling-{n}");
                        let mut known = 0;
                        while Instant::now() < deadline {
                            let begun = Instant::now();
                            // SQLite's writers queue as the server's do (no busy-handler sleeps).
                            let turn = match &gate {
                                Some(gate) => Some(gate.lock().await),
                                None => None,
                            };
                            let ok = read_and_append(&store, &stream, &mut known).await.is_ok();
                            drop(turn);
                            tally.record(begun, if ok { 200 } else { 500 }, 200);
                        }
                        tally
                    })
                })
                .await;
            self.ceiling_point("ceiling", clients, runs, fsync, CpuTicks::now().since(cpu, measuring.elapsed()));
            if let Some(file) = database.sqlite_file.clone() {
                self.direct_ceiling(&file, clients).await?;
            }
            database.close().await;
            db.drop().await;
        }
        Ok(())
    }

    /// SQLite: the same transaction on plain connections (rusqlite, as the server's appends since
    /// ADR 21), each client on a blocking thread of its own, queued on one lock as the server's
    /// writers are: what the database itself does, without sqlx's thread hand-offs. Its rows
    /// follow the sqlx ceiling's in the same file, on streams of their own.
    async fn direct_ceiling(&mut self, file: &std::path::Path, clients: usize) -> anyhow::Result<()> {
        let fsync = self.fsync();
        let gate = std::sync::Arc::new(std::sync::Mutex::new(()));
        let (cpu, measuring) = (CpuTicks::now(), Instant::now());
        let runs = self
            .phases(clients, |n, deadline| {
                let (file, gate) = (file.to_path_buf(), gate.clone());
                tokio::task::spawn_blocking(move || {
                    let mut tally = Tally::new();
                    let stream = format!("direct-{n}");
                    let (mut known, connection) = (0, open_append_connection(&file, SQLITE_BUSY_TIMEOUT));
                    while Instant::now() < deadline {
                        let begun = Instant::now();
                        let turn = gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        let ok = match &connection {
                            Ok(connection) => read_and_append_direct(connection, &stream, &mut known).is_ok(),
                            Err(_) => false,
                        };
                        drop(turn);
                        tally.record(begun, if ok { 200 } else { 500 }, 200);
                    }
                    tally
                })
            })
            .await;
        self.ceiling_point("ceiling-direct", clients, runs, fsync, CpuTicks::now().since(cpu, measuring.elapsed()));
        Ok(())
    }

    /// The warm-up and then `--repeats` runs of `--seconds`, each with `clients` clients started
    /// by `client` (its number, the run's deadline); the measured runs.
    async fn phases(
        &self,
        clients: usize,
        client: impl Fn(usize, Instant) -> tokio::task::JoinHandle<Tally>,
    ) -> Vec<Run> {
        let mut runs = Vec::new();
        let phases: Vec<u64> =
            std::iter::once(self.args.warmup).chain((0..self.args.repeats).map(|_| self.args.seconds)).collect();
        for (phase, seconds) in phases.into_iter().enumerate() {
            if seconds == 0 {
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let tasks: Vec<_> = (0..clients).map(|n| client(n, deadline)).collect();
            let mut tallies = Vec::new();
            for task in tasks {
                tallies.push(task.await.expect("a ceiling client"));
            }
            let run = summarize(tallies, started.elapsed());
            if phase > 0 || self.args.warmup == 0 {
                runs.push(run);
            }
        }
        runs
    }

    fn ceiling_point(&mut self, group: &str, clients: usize, runs: Vec<Run>, fsync: f64, machine: server::MachineUse) {
        let point = Point::new(group, clients, runs);
        let label = if group == "ceiling" { "ceiling" } else { "ceiling, direct" };
        println!(
            "{} {label}   {clients:>2} clients: {:>8.0}/s ({:.0}–{:.0})  p50 {:.2} ms  p99 {:.2} ms  [fsync {fsync:.0}/s; {}]",
            self.args.backend, point.median_per_second, point.min_per_second, point.max_per_second, point.median_p50_ms, point.median_p99_ms,
            machine.describe(point.median_per_second)
        );
        self.results.push(json!({"group": group, "fsync_per_second": fsync, "machine": machine, "point": point}));
    }

    /// Catch-up of fresh projections over a long log, and a full rebuild.
    async fn catchup(&mut self) -> anyhow::Result<()> {
        let db = self.fresh().await?;
        let events = self.args.catchup_events;
        let database = Database::connect(&db.url, 4).await?;
        let loading = Instant::now();
        let order = self.args.catchup_order;
        load_log(&database, events, order).await?;
        println!(
            "{} loaded {events} events ({order:?}) in {:.1} s",
            self.args.backend,
            loading.elapsed().as_secs_f64()
        );
        let head: i64 = sqlx::query_scalar(if db.url.starts_with("sqlite") {
            "SELECT MAX(position) FROM events"
        } else {
            "SELECT MAX(global_position) FROM events"
        })
        .fetch_one(&database.read_side)
        .await?;
        for name in ["rental_status", "my_page"] {
            // A fresh projection: a worker process for it alone, timed until it reaches the head
            // and has built the indexes its queries use.
            let indexes = query_index_names(name, 1)?;
            let started = Instant::now();
            let mut worker = std::process::Command::new(&self.binary)
                .args(["work", "--only", name])
                .env("STORMING_DATABASE_URL", &db.url)
                .env("STORMING_JWT_SECRET", JWT_SECRET)
                .env("STORMING_LOG", "warn,sqlx=error")
                .spawn()?;
            let key = format!("{name}@g1");
            loop {
                let position: Option<i64> = sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = $1")
                    .bind(&key)
                    .fetch_optional(&database.read_side)
                    .await?;
                if position == Some(head) && indexes_exist(&database, &indexes).await? {
                    break;
                }
                if started.elapsed() > Duration::from_secs(600) {
                    bail!("{name} did not catch up within 10 minutes");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let caught_up = started.elapsed();
            std::process::Command::new("kill").arg("-TERM").arg(worker.id().to_string()).status()?;
            worker.wait()?;
            // A full rebuild: `storming replay` builds generation 2 beside the live one.
            let started = Instant::now();
            let status = std::process::Command::new(&self.binary)
                .args(["replay", name])
                .env("STORMING_DATABASE_URL", &db.url)
                .env("STORMING_JWT_SECRET", JWT_SECRET)
                .env("STORMING_LOG", "warn,sqlx=error")
                .status()?;
            if !status.success() {
                bail!("storming replay {name} failed");
            }
            let rebuilt = started.elapsed();
            println!(
                "{} {name}: catch-up of {events} events in {:.1} s ({:.0} events/s); full rebuild in {:.1} s ({:.0} events/s)",
                self.args.backend,
                caught_up.as_secs_f64(),
                events as f64 / caught_up.as_secs_f64(),
                rebuilt.as_secs_f64(),
                events as f64 / rebuilt.as_secs_f64()
            );
            self.results.push(json!({"group": "catchup", "projection": name, "events": events, "order": order,
                "catchup_seconds": caught_up.as_secs_f64(), "rebuild_seconds": rebuilt.as_secs_f64()}));
        }
        database.close().await;
        db.drop().await;
        Ok(())
    }
}

/// The names of the indexes that projection `name`'s queries use, in `generation`.
fn query_index_names(name: &str, generation: i64) -> anyhow::Result<Vec<String>> {
    let projection = storming_api::workers::projections()
        .into_iter()
        .find(|projection| projection.name() == name)
        .with_context(|| format!("no projection is named {name}"))?;
    let statements = storming_projections::runtime::generations::ddl_statements(projection.query_indexes(), generation);
    let names: Vec<String> = statements
        .iter()
        .filter_map(|statement| statement.split_once("IF NOT EXISTS"))
        .filter_map(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        .collect();
    // A name not found would make the catch-up stop waiting for its index, silently.
    if names.len() != statements.len() {
        bail!("cannot name every query index of {name} (expected `CREATE INDEX IF NOT EXISTS <name> …`)");
    }
    Ok(names)
}

async fn indexes_exist(database: &Database, names: &[String]) -> anyhow::Result<bool> {
    let sql = match &database.store {
        StorePool::Sqlite(_) => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = $1",
        StorePool::Postgres(_) => "SELECT COUNT(*) FROM pg_indexes WHERE indexname = $1",
    };
    for name in names {
        let count: i64 = sqlx::query_scalar(sql).bind(name).fetch_one(&database.read_side).await?;
        if count == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The value of the counter `name` (with its labels) in Prometheus text.
fn counter(text: &str, name: &str) -> Option<u64> {
    let prefix = format!("{name} ");
    text.lines().find_map(|line| line.strip_prefix(prefix.as_str())?.trim().parse().ok())
}

/// The ceiling's read: a stream's events after the last one known.
const CEILING_READ: &str = "SELECT sequence, payload FROM events WHERE aggregate_type = 'bench.ceiling' \
                            AND aggregate_id = $1 AND sequence > $2 ORDER BY sequence";
/// The ceiling's append on SQLite (its parameters appear in the order of their numbers, so a
/// plain connection binds them by position too).
const CEILING_APPEND_SQLITE: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata) VALUES ('bench.ceiling', $1, $2, 'Appended', '1.0', '{}', '{}')";

/// One command's worth of SQL on its own: read the stream's events after the last one known (a
/// command's aggregate is cached, so it reads only those — usually none), append the next event,
/// commit. A rent or a return is one such transaction (a rent's payment rides in it, ADR 18, 21).
async fn read_and_append(store: &StorePool, stream: &str, known: &mut i64) -> anyhow::Result<()> {
    macro_rules! transaction {
        ($pool:expr, $insert:expr) => {{
            let mut tx = $pool.begin().await?;
            let rows = sqlx::query(CEILING_READ).bind(stream).bind(*known).fetch_all(&mut *tx).await?;
            let last = *known + rows.len() as i64;
            sqlx::query($insert).bind(stream).bind(last + 1).execute(&mut *tx).await?;
            tx.commit().await?;
            *known = last + 1;
        }};
    }
    match store {
        StorePool::Sqlite(pool) => transaction!(pool, CEILING_APPEND_SQLITE),
        StorePool::Postgres(pool) => transaction!(
            pool,
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('bench.ceiling', $1, $2, 'Appended', '1.0', '{}'::jsonb, '{}'::jsonb)"
        ),
    }
    Ok(())
}

/// [`read_and_append`] on a plain SQLite connection.
fn read_and_append_direct(connection: &rusqlite::Connection, stream: &str, known: &mut i64) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let appended = (|| {
        let mut read = connection.prepare_cached(CEILING_READ)?;
        let mut rows = read.query(rusqlite::params![stream, *known])?;
        let mut last = *known;
        while let Some(row) = rows.next()? {
            let _payload: String = row.get(1)?;
            last += 1;
        }
        connection.prepare_cached(CEILING_APPEND_SQLITE)?.execute(rusqlite::params![stream, last + 1])?;
        connection.execute_batch("COMMIT")?;
        Ok(last + 1)
    })();
    match appended {
        Ok(last) => {
            *known = last;
            Ok(())
        }
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Fills the log with `count` real rental events: 1,000 books, each shelved once and then rented
/// and returned by its own customer, over and over; the books take turns in `order`.
async fn load_log(database: &Database, count: i64, order: LogOrder) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    use storming_domain::rental::RentalEvent;
    use storming_domain::shared::{EventMetadata, Krw};
    let books: Vec<uuid::Uuid> = (0..1000).map(|_| uuid::Uuid::now_v7()).collect();
    let fee = Krw::positive("fee", 1000)?;
    let now = chrono::Utc::now();
    let mut batch: Vec<(String, i64, String, String, String)> = Vec::new();
    let mut open: Vec<Option<uuid::Uuid>> = vec![None; books.len()];
    let mut sequence = vec![0i64; books.len()];
    let mut random = rand::rngs::StdRng::seed_from_u64(12);
    for n in 0..count {
        let at = match order {
            LogOrder::Rounds => (n as usize) % books.len(),
            LogOrder::Interleaved => random.gen_range(0..books.len()),
        };
        let book_id = books[at];
        sequence[at] += 1;
        let (event, correlation) = if sequence[at] == 1 {
            (RentalEvent::BookShelved { book_id, title: format!("Book {at}"), rental_fee: fee }, book_id)
        } else if let Some(rental_id) = open[at].take() {
            (
                RentalEvent::BookReturned {
                    rental_id,
                    book_id,
                    customer_id: format!("customer-{at}"),
                    returned_at: now,
                    overdue: false,
                },
                rental_id,
            )
        } else {
            let rental_id = uuid::Uuid::now_v7();
            open[at] = Some(rental_id);
            let rented = RentalEvent::BookRented {
                rental_id,
                book_id,
                title: format!("Book {at}"),
                customer_id: format!("customer-{at}"),
                fee,
                payment_id: uuid::Uuid::now_v7(),
                rented_at: now,
                due_at: now + chrono::TimeDelta::days(14),
            };
            (rented, rental_id)
        };
        let event_type = match &event {
            RentalEvent::BookShelved { .. } => "BookShelved",
            RentalEvent::BookRented { .. } => "BookRented",
            RentalEvent::RentalCancelled { .. } => "RentalCancelled",
            RentalEvent::BookReturned { .. } => "BookReturned",
        };
        let metadata = EventMetadata {
            correlation_id: correlation.to_string(),
            actor: "bench".into(),
            ..EventMetadata::default()
        };
        batch.push((
            book_id.to_string(),
            sequence[at],
            event_type.to_string(),
            serde_json::to_string(&event)?,
            serde_json::to_string(&metadata)?,
        ));
        if batch.len() == 1000 || n == count - 1 {
            insert_batch(database, &std::mem::take(&mut batch)).await?;
        }
    }
    Ok(())
}

async fn insert_batch(database: &Database, rows: &[(String, i64, String, String, String)]) -> anyhow::Result<()> {
    let cast = if matches!(database.store, StorePool::Postgres(_)) { "::jsonb" } else { "" };
    let values: Vec<String> = (0..rows.len())
        .map(|n| {
            let b = n * 5;
            format!(
                "('rental.book_copy', ${}, ${}, ${}, '1.0', ${}{cast}, ${}{cast})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES {}",
        values.join(", ")
    );
    macro_rules! insert {
        ($pool:expr) => {{
            let mut query = sqlx::query(&sql);
            for (aggregate_id, sequence, event_type, payload, metadata) in rows {
                query = query.bind(aggregate_id).bind(sequence).bind(event_type).bind(payload).bind(metadata);
            }
            query.execute($pool).await?;
        }};
    }
    match &database.store {
        StorePool::Sqlite(pool) => insert!(pool),
        StorePool::Postgres(pool) => insert!(pool),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if !args.report.is_empty() {
        for file in &args.report {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let results: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
            println!("{}", report::markdown(&results));
        }
        return Ok(());
    }
    if args.smoke {
        args.seconds = 1;
        args.warmup = 0;
        args.repeats = 1;
        args.clients = vec![1, 2];
        args.catchup_events = 3000;
    }
    let binary = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("storming"),
    };
    if !binary.exists() {
        bail!("no storming binary at {} (build it: cargo build --release -p storming-api)", binary.display());
    }
    let mut bench = Bench { args: args.clone(), binary, groups: 0, results: Vec::new(), full_load: None };
    let started = Instant::now();
    let wanted = |group: &str| args.groups.iter().any(|name| name == group);
    if wanted("commands") {
        bench.commands().await?;
    }
    if wanted("ceiling") {
        bench.ceiling().await?;
    }
    if wanted("contended") {
        bench.contended().await?;
    }
    if wanted("queries") {
        bench.queries_and_lag().await?;
    }
    if wanted("lag") {
        bench.lag_at_half_load().await?;
    }
    if wanted("catchup") {
        bench.catchup().await?;
    }
    let report = json!({
        "backend": args.backend,
        "smoke": args.smoke,
        "seconds": args.seconds, "warmup": args.warmup, "repeats": args.repeats,
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "took_seconds": started.elapsed().as_secs_f64(),
        "results": bench.results,
    });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    }
    println!("bench: 1 passed, 0 failed");
    Ok(())
}
