//! `storming-bench --report FILE…`: issue #6's targets checked against result files (`--out`),
//! printed as a Markdown table per file. Nothing is run: the table is what the files hold, so the
//! figures in BENCHMARKS.md can be rebuilt from the raw results by anyone.
//!
//! A ratio "of the ceiling" is to the direct ceiling where the file has one (SQLite since the
//! seventeenth session: the database without sqlx, as the server's appends run), else to the
//! ceiling (PostgreSQL). A target whose point is not in the file (a run of some groups only, a
//! smoke run's clients) is reported as not run.

use std::fmt::Write as _;

use serde_json::Value;

/// How one target came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// The file has no point for it.
    NotRun,
    /// A figure the issue asks to be measured, with no target.
    Measured,
}

impl Verdict {
    fn of(met: bool) -> Self {
        if met {
            Self::Met
        } else {
            Self::Missed
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "**missed**",
            Self::NotRun => "not run",
            Self::Measured => "",
        }
    }
}

/// One row of the report: what is measured, what the issue asks, what the file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub figure: String,
    pub asked: String,
    pub measured: String,
    pub verdict: Verdict,
}

impl Check {
    fn new(figure: impl Into<String>, asked: impl Into<String>) -> Self {
        Self { figure: figure.into(), asked: asked.into(), measured: String::new(), verdict: Verdict::NotRun }
    }

    fn judged(mut self, measured: String, verdict: Verdict) -> Self {
        self.measured = measured;
        self.verdict = verdict;
        self
    }
}

/// A result file's entry for `group` at `clients`, if it holds a rate (an entry without one is
/// not a measured point, and is reported as not run).
fn point<'a>(results: &'a Value, group: &str, clients: u64) -> Option<&'a Value> {
    results["results"].as_array()?.iter().find(|entry| {
        entry["group"] == group
            && entry["point"]["clients"].as_u64() == Some(clients)
            && entry["point"]["median_per_second"].is_number()
    })
}

/// The point's median rate ([`point`] found only entries that have one).
fn rate(entry: &Value) -> f64 {
    entry["point"]["median_per_second"].as_f64().unwrap_or(0.0)
}

/// `part`'s rate as a share of `whole`'s; none when `whole` measured nothing, which judges nothing.
fn share(part: &Value, whole: &Value) -> Option<f64> {
    (rate(whole) > 0.0).then(|| rate(part) / rate(whole))
}

fn p99(entry: &Value) -> f64 {
    entry["point"]["median_p99_ms"].as_f64().unwrap_or(f64::NAN)
}

/// A rate with the runs' range: `1,694/s (1,601–1,801)`.
fn rate_text(entry: &Value) -> String {
    let at = |key: &str| entry["point"][key].as_f64().unwrap_or(0.0);
    format!(
        "{}/s ({}–{})",
        thousands(at("median_per_second")),
        thousands(at("min_per_second")),
        thousands(at("max_per_second"))
    )
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (n, digit) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The ceiling the commands at `clients` are a ratio of.
fn ceiling(results: &Value, clients: u64) -> Option<&Value> {
    point(results, "ceiling-direct", clients).or_else(|| point(results, "ceiling", clients))
}

/// Commands at `clients` as a share of the same run's ceiling at `clients`.
fn of_ceiling(results: &Value, clients: u64) -> Check {
    let check = Check::new(format!("Commands at {clients} clients, of the ceiling"), "≥ 0.70");
    let (Some(commands), Some(ceiling)) = (point(results, "commands", clients), ceiling(results, clients)) else {
        return check;
    };
    let Some(ratio) = share(commands, ceiling) else {
        return check.judged("the ceiling measured nothing".into(), Verdict::NotRun);
    };
    let measured = format!("{ratio:.2}: {} against {}/s", rate_text(commands), thousands(rate(ceiling)));
    check.judged(measured, Verdict::of(ratio >= 0.70))
}

fn p50(entry: &Value) -> f64 {
    entry["point"]["median_p50_ms"].as_f64().unwrap_or(f64::NAN)
}

/// The HTTP floor at one client (`GET /healthz`, no target) and what it leaves of the one-client
/// commands' median round trip: the floor's and the ceiling's medians are the parts of it that
/// the command path cannot remove (the exchange itself; the database's read, append and sync).
fn floor(results: &Value) -> Check {
    let check = Check::new("HTTP floor at 1 client (`GET /healthz`)", "");
    let Some(floor) = point(results, "floor", 1) else { return check };
    let mut measured = format!("{}, p50 {:.2} ms", rate_text(floor), p50(floor));
    if let (Some(commands), Some(ceiling)) = (point(results, "commands", 1), ceiling(results, 1)) {
        let left = p50(commands) - p50(floor) - p50(ceiling);
        let _ = write!(
            measured,
            "; of the commands' p50 {:.2} ms, this and the ceiling's {:.2}",
            p50(commands),
            p50(ceiling)
        );
        // The ceiling's transaction can take longer than a command's whole path to the database:
        // on PostgreSQL it makes four round trips, a command two (a return one).
        let _ = if left >= 0.0 {
            write!(measured, " leave {left:.2}")
        } else {
            write!(measured, " are {:.2} ms more than it", -left)
        };
    }
    check.judged(measured, Verdict::Measured)
}

/// Every target of the issue that `results` (one backend's file) can answer, in the order.
pub fn checks(results: &Value) -> Vec<Check> {
    let sqlite = results["backend"] == "sqlite";
    let mut checks = Vec::new();

    let one = Check::new("Commands at 1 client", if sqlite { "≥ 3,000/s" } else { "" });
    checks.push(match point(results, "commands", 1) {
        Some(entry) => {
            let mut measured = rate_text(entry);
            if let Some(ratio) = ceiling(results, 1).and_then(|ceiling| share(entry, ceiling)) {
                let _ = write!(measured, ", {ratio:.2} of the ceiling");
            }
            let verdict = if sqlite { Verdict::of(rate(entry) >= 3000.0) } else { Verdict::Measured };
            one.judged(measured, verdict)
        }
        None => one,
    });
    checks.push(floor(results));
    checks.push(of_ceiling(results, 4));
    checks.push(of_ceiling(results, 16));

    let tail = Check::new("Commands' p99 at 16 clients", "< 10 ms");
    checks.push(match point(results, "commands", 16) {
        Some(entry) => tail.judged(format!("{:.2} ms", p99(entry)), Verdict::of(p99(entry) < 10.0)),
        None => tail,
    });

    let wide = Check::new("Commands at 64 clients, of the 16-client rate", "≥ 0.90");
    checks.push(match (point(results, "commands", 64), point(results, "commands", 16)) {
        (Some(at64), Some(at16)) => match share(at64, at16) {
            Some(ratio) => {
                let measured = format!("{ratio:.2}: {} against {}/s", rate_text(at64), thousands(rate(at16)));
                wide.judged(measured, Verdict::of(ratio >= 0.90))
            }
            None => wide.judged("16 clients measured nothing".into(), Verdict::NotRun),
        },
        _ => wide,
    });

    let contended = Check::new("Contended: many clients on 4 books", "conflicts apart from errors");
    let entry =
        results["results"].as_array().and_then(|entries| entries.iter().find(|entry| entry["group"] == "contended"));
    checks.push(match entry {
        Some(entry) => {
            let runs = entry["point"]["runs"].as_array().map(Vec::as_slice).unwrap_or_default();
            let conflicts: Vec<String> =
                runs.iter().map(|run| thousands(run["conflicts_per_second"].as_f64().unwrap_or(0.0))).collect();
            let errors: u64 = runs.iter().filter_map(|run| run["errors"].as_u64()).sum();
            // Files written before the server counted them have none.
            let refunded = entry["charged_and_refunded"]
                .as_u64()
                .map(|count| format!(", charged and refunded {}", thousands(count as f64)))
                .unwrap_or_default();
            let measured = format!(
                "{} clients: {} commands/s, conflicts/s {}, errors {errors}{refunded}",
                entry["point"]["clients"],
                thousands(rate(entry)),
                conflicts.join(" / ")
            );
            contended.judged(measured, Verdict::Measured)
        }
        None => contended,
    });

    let queries = point(results, "queries", 16);
    let (rate_check, tail_check) =
        (Check::new("Queries at 16 clients", "≥ 20,000/s"), Check::new("Queries' p99", "< 3 ms"));
    match queries {
        Some(entry) => {
            // The share answered with a kept answer (ADR 39), from files that count it.
            let answers = &entry["answers"];
            let kept = match (answers["kept"].as_f64(), answers["read"].as_f64()) {
                (Some(kept), Some(read)) => {
                    format!(", {:.0}% with a kept answer", 100.0 * kept / (kept + read).max(1.0))
                }
                _ => String::new(),
            };
            let measured = format!("{}{kept}", rate_text(entry));
            checks.push(rate_check.judged(measured, Verdict::of(rate(entry) >= 20_000.0)));
            checks.push(tail_check.judged(format!("{:.2} ms", p99(entry)), Verdict::of(p99(entry) < 3.0)));
        }
        None => checks.extend([rate_check, tail_check]),
    }

    let lag = Check::new("Projection lag at half load, p99", "< 100 ms");
    checks.push(match point(results, "lag_at_half_load", 1) {
        Some(entry) => lag.judged(format!("{:.2} ms", p99(entry)), Verdict::of(p99(entry) < 100.0)),
        None => lag,
    });

    let (floor, floor_text) =
        if sqlite { (100_000.0, "≥ 100,000 events/s") } else { (50_000.0, "≥ 50,000 events/s") };
    for projection in ["rental_status", "my_page"] {
        let catchup = Check::new(format!("Catch-up, `{projection}`"), floor_text);
        let rebuild = Check::new(format!("Rebuild of 1,000,000 events, `{projection}`"), "< 20 s");
        let entry = results["results"].as_array().and_then(|entries| {
            entries.iter().find(|entry| entry["group"] == "catchup" && entry["projection"] == projection)
        });
        let Some(entry) = entry else {
            checks.extend([catchup, rebuild]);
            continue;
        };
        let events = entry["events"].as_f64().unwrap_or(0.0);
        let seconds = |key: &str| entry[key].as_f64().unwrap_or(f64::INFINITY);
        let per_second = events / seconds("catchup_seconds");
        let measured = format!("{} events/s ({} events)", thousands(per_second), thousands(events));
        checks.push(catchup.judged(measured, Verdict::of(per_second >= floor)));
        let rebuilt = format!("{:.1} s ({} events)", seconds("rebuild_seconds"), thousands(events));
        let verdict =
            if events >= 1_000_000.0 { Verdict::of(seconds("rebuild_seconds") < 20.0) } else { Verdict::NotRun };
        checks.push(rebuild.judged(rebuilt, verdict));
    }

    let commands: Vec<&Value> = results["results"]
        .as_array()
        .map(|entries| entries.iter().filter(|entry| entry["group"] == "commands").collect())
        .unwrap_or_default();
    let most = |key: &str| {
        commands
            .iter()
            .filter_map(|entry| entry[key].as_f64())
            .fold(None, |most: Option<f64>, v| Some(most.map_or(v, |most| most.max(v))))
    };
    let rss = Check::new("RSS under load (the most any commands point held)", "< 50 MB");
    checks.push(match most("rss_peak_kib").or_else(|| most("rss_loaded_kib")) {
        Some(kib) => rss.judged(format!("{:.0} MB", kib / 1024.0), Verdict::of(kib / 1024.0 < 50.0)),
        None => rss,
    });
    let idle = Check::new("RSS idle", "");
    checks.push(match most("rss_idle_kib") {
        Some(kib) => idle.judged(format!("{:.0} MB", kib / 1024.0), Verdict::Measured),
        None => idle,
    });
    let startup = Check::new("Start-up to `/readyz` (the slowest of the commands points)", "");
    checks.push(match most("startup_ms") {
        Some(ms) => startup.judged(format!("{ms:.0} ms"), Verdict::Measured),
        None => startup,
    });
    checks
}

/// The report of one result file: a heading with how it was measured, then its checks.
pub fn markdown(results: &Value) -> String {
    let mut out = String::new();
    let backend = results["backend"].as_str().unwrap_or("?");
    let finished = results["finished_at"].as_str().unwrap_or("?");
    let _ = writeln!(
        out,
        "{backend}, finished {finished}: {} × {} s per point after a {} s warm-up",
        results["repeats"], results["seconds"], results["warmup"]
    );
    if results["smoke"] == true {
        let _ = writeln!(out, "\n(a smoke run: its figures mean nothing)");
    }
    let _ = writeln!(out, "\n| Figure | Asked | Measured (median, runs' range) | |\n|---|---|---|---|");
    for check in checks(results) {
        let _ = writeln!(out, "| {} | {} | {} | {} |", check.figure, check.asked, check.measured, check.verdict.word());
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn commands(clients: u64, per_second: f64, p99_ms: f64) -> Value {
        json!({"group": "commands", "rss_peak_kib": 40_000 + clients * 100, "rss_idle_kib": 17_000, "startup_ms": 30,
            "point": {"clients": clients, "median_per_second": per_second, "min_per_second": per_second - 10.0,
                "max_per_second": per_second + 10.0, "median_p50_ms": 1000.0 / per_second, "median_p99_ms": p99_ms}})
    }

    fn ceiling(group: &str, clients: u64, per_second: f64) -> Value {
        json!({"group": group, "point": {"clients": clients, "median_per_second": per_second, "min_per_second": per_second,
            "max_per_second": per_second, "median_p50_ms": 1000.0 / per_second, "median_p99_ms": 1.0}})
    }

    fn verdict(checks: &[Check], figure: &str) -> (Verdict, String) {
        let check = checks.iter().find(|check| check.figure == figure).unwrap_or_else(|| panic!("no row {figure}"));
        (check.verdict, check.measured.clone())
    }

    #[test]
    fn a_command_quicker_than_the_floor_and_the_ceiling_together_is_not_said_to_leave_a_negative_share() {
        let results = json!({"backend": "postgres", "results": [
            commands(1, 1_500.0, 1.0), ceiling("ceiling", 1, 1_600.0), ceiling("floor", 1, 10_000.0),
        ]});

        let (_, measured) = verdict(&checks(&results), "HTTP floor at 1 client (`GET /healthz`)");

        assert!(measured.ends_with("this and the ceiling's 0.62 are 0.06 ms more than it"), "{measured}");
    }

    #[test]
    fn each_target_is_judged_against_its_own_point() {
        let results = json!({"backend": "sqlite", "results": [
            commands(1, 1_700.0, 1.0), commands(4, 3_700.0, 3.0), commands(16, 7_000.0, 10.5), commands(64, 6_200.0, 30.0),
            // The direct ceiling is the one a ratio is of, where there is one.
            ceiling("ceiling-direct", 1, 5_000.0), ceiling("floor", 1, 10_000.0),
            ceiling("ceiling", 4, 2_000.0), ceiling("ceiling-direct", 4, 5_000.0),
            ceiling("ceiling-direct", 16, 5_000.0),
            {"group": "queries", "point": {"clients": 16, "median_per_second": 21_000.0, "min_per_second": 20_000.0,
                "max_per_second": 22_000.0, "median_p99_ms": 3.2}, "answers": {"kept": 930, "read": 70}},
            {"group": "lag_at_half_load", "point": {"clients": 1, "median_per_second": 300.0, "median_p99_ms": 1.5}},
            {"group": "catchup", "projection": "rental_status", "events": 1_000_000, "catchup_seconds": 5.0, "rebuild_seconds": 21.0},
        ]});

        let checks = checks(&results);

        assert_eq!(
            verdict(&checks, "Commands at 1 client"),
            (Verdict::Missed, "1,700/s (1,690–1,710), 0.34 of the ceiling".into())
        );
        assert_eq!(
            verdict(&checks, "HTTP floor at 1 client (`GET /healthz`)"),
            (
                Verdict::Measured,
                "10,000/s (10,000–10,000), p50 0.10 ms; of the commands' p50 0.59 ms, this and the ceiling's 0.20 \
                 leave 0.29"
                    .into()
            )
        );
        assert_eq!(verdict(&checks, "Commands at 4 clients, of the ceiling").0, Verdict::Met, "3,700 of 5,000 direct");
        assert!(verdict(&checks, "Commands at 4 clients, of the ceiling").1.starts_with("0.74: 3,700/s"));
        assert_eq!(verdict(&checks, "Commands at 16 clients, of the ceiling").0, Verdict::Met);
        assert_eq!(verdict(&checks, "Commands' p99 at 16 clients"), (Verdict::Missed, "10.50 ms".into()));
        assert_eq!(
            verdict(&checks, "Commands at 64 clients, of the 16-client rate").0,
            Verdict::Missed,
            "6,200 of 7,000"
        );
        assert_eq!(
            verdict(&checks, "Queries at 16 clients"),
            (Verdict::Met, "21,000/s (20,000–22,000), 93% with a kept answer".into())
        );
        assert_eq!(verdict(&checks, "Queries' p99").0, Verdict::Missed);
        assert_eq!(verdict(&checks, "Projection lag at half load, p99").0, Verdict::Met);
        assert_eq!(
            verdict(&checks, "Catch-up, `rental_status`"),
            (Verdict::Met, "200,000 events/s (1,000,000 events)".into())
        );
        assert_eq!(verdict(&checks, "Rebuild of 1,000,000 events, `rental_status`").0, Verdict::Missed);
        assert_eq!(verdict(&checks, "Catch-up, `my_page`").0, Verdict::NotRun, "no entry for it");
        assert_eq!(
            verdict(&checks, "RSS under load (the most any commands point held)"),
            (Verdict::Met, "45 MB".into())
        );
    }

    #[test]
    fn a_run_without_a_point_reports_it_not_run() {
        // A smoke run's clients (1 and 2), no ceiling, a small catch-up.
        let results = json!({"backend": "postgres", "smoke": true, "results": [
            commands(1, 100.0, 5.0), commands(2, 150.0, 5.0),
            {"group": "catchup", "projection": "my_page", "events": 3_000, "catchup_seconds": 0.1, "rebuild_seconds": 0.2},
            {"group": "contended", "charged_and_refunded": 1_398, "point": {"clients": 4, "median_per_second": 80.0, "runs": [
                {"per_second": 80.0, "conflicts_per_second": 12.4, "errors": 0}]}},
        ]});

        let checks = checks(&results);

        assert_eq!(verdict(&checks, "Commands at 1 client").0, Verdict::Measured, "no target on PostgreSQL");
        assert_eq!(verdict(&checks, "HTTP floor at 1 client (`GET /healthz`)").0, Verdict::NotRun);
        assert_eq!(verdict(&checks, "Commands at 4 clients, of the ceiling").0, Verdict::NotRun);
        assert_eq!(verdict(&checks, "Commands at 64 clients, of the 16-client rate").0, Verdict::NotRun);
        assert_eq!(verdict(&checks, "Queries at 16 clients").0, Verdict::NotRun);
        assert_eq!(verdict(&checks, "Catch-up, `my_page`").0, Verdict::Missed, "30,000 events/s");
        assert_eq!(verdict(&checks, "Rebuild of 1,000,000 events, `my_page`").0, Verdict::NotRun, "3,000 events only");
        assert_eq!(
            verdict(&checks, "Contended: many clients on 4 books"),
            (
                Verdict::Measured,
                "4 clients: 80 commands/s, conflicts/s 12, errors 0, charged and refunded 1,398".into()
            )
        );
        assert!(markdown(&results).contains("a smoke run"));
    }

    #[test]
    fn a_ceiling_that_measured_nothing_judges_nothing() {
        // A ceiling point without its rate (a damaged file), and one that measured zero.
        let results = json!({"backend": "sqlite", "results": [
            commands(4, 3_000.0, 2.0), {"group": "ceiling-direct", "point": {"clients": 4}},
            commands(16, 5_000.0, 8.0), ceiling("ceiling-direct", 16, 0.0),
        ]});

        let checks = checks(&results);

        assert_eq!(verdict(&checks, "Commands at 4 clients, of the ceiling"), (Verdict::NotRun, String::new()));
        assert_eq!(
            verdict(&checks, "Commands at 16 clients, of the ceiling"),
            (Verdict::NotRun, "the ceiling measured nothing".into())
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }
}
