//! The redundancy-2 chaos run, one implementation for the test suite (`crates/canopy/tests/chaos.rs`, a short run)
//! and the benchmark program (`canopy-chaos` in `bench/`, a long one that prints figures): writers insert unique ids
//! through the master aggregator while a nemesis kills, freezes, stops and restarts random leaves, one at a time and
//! never both of a pair (`nemesis`); then, on a healthy cluster, the writers must make progress again (liveness),
//! and the checks run (`check`, `verify`): every acknowledged id present exactly once, no id that was never
//! attempted, both copies of every partition equal. Violations are collected in the [`Report`], never panicked on,
//! with the master aggregator's log lines around them; the caller decides (the test asserts there are none, the
//! program exits non-zero).
//!
//! It runs real processes on loopback only, bounded: a fixed number of episodes, a deadline on every wait.

pub mod check;
pub mod cluster;
pub mod health;
pub mod nemesis;
pub mod verify;
pub mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use mysql_async::prelude::Queryable;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use cluster::Cluster;
use nemesis::{Fault, Record};
use workload::{Ledger, Writer};

/// The database the run writes to.
pub const DB: &str = "chaos";

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Settings {
    pub episodes: u32,
    /// Stop starting episodes after this long (the run stays bounded on a slow machine); the report says how many
    /// ran.
    pub nemesis_time_max: Duration,
    pub writers: u32,
    pub partitions: u32,
    pub seed: u64,
    /// `leaf_failure_timeout_ms` for the run (a frozen leaf is declared offline after this).
    pub failure_timeout: Duration,
    /// Every wait of an episode (failover, back to healthy) and of the checks.
    pub deadline: Duration,
    /// A statement without an answer for this long is a stall (a hang: a violation).
    pub statement_limit: Duration,
    /// After the nemesis, on the healthy cluster: the writers must get this many acknowledgements...
    pub liveness_acks: u64,
    /// ...within this long.
    pub liveness_time: Duration,
}

impl Settings {
    /// The short run of the test suite.
    pub fn short(seed: u64) -> Settings {
        Settings {
            episodes: 8,
            nemesis_time_max: Duration::from_secs(45),
            writers: 4,
            partitions: 8,
            seed,
            failure_timeout: Duration::from_millis(1500),
            deadline: Duration::from_secs(45),
            statement_limit: Duration::from_secs(30),
            liveness_acks: 100,
            liveness_time: Duration::from_secs(20),
        }
    }
}

/// What a run saw.
#[derive(Debug, Clone)]
pub struct Report {
    pub settings: Settings,
    pub cluster: String,
    pub started_utc: SystemTime,
    pub episodes: Vec<Record>,
    pub attempted: u64,
    pub acked: u64,
    pub maybe: u64,
    pub maybe_present: u64,
    pub maybe_absent: u64,
    pub errors: BTreeMap<String, (u64, String)>,
    pub write_time: Duration,
    pub ack_gap_max: Duration,
    pub rows_found: u64,
    pub copies_compared: usize,
    pub verify_time: Duration,
    pub violations: Vec<String>,
    /// The master aggregator's log lines about faults and failovers, when there are violations.
    pub log_excerpt: Vec<String>,
}

fn fatal(violations: &mut Vec<String>, what: &str, e: &anyhow::Error) {
    violations.push(format!("{what}: {e:#}"));
}

/// Runs the chaos workload on `cluster` (a fresh redundancy-2 cluster: the database is created here).
pub async fn run(cluster: &mut Cluster, settings: &Settings) -> anyhow::Result<Report> {
    let poll = Duration::from_millis(20);
    let mut conn = cluster.connect().await?;
    let setup = [
        format!("SET GLOBAL leaf_failure_timeout_ms = {}", settings.failure_timeout.as_millis()),
        format!("CREATE DATABASE {DB} PARTITIONS {}", settings.partitions),
        format!("CREATE TABLE {DB}.{} (id BIGINT PRIMARY KEY, writer INT NOT NULL)", workload::TABLE),
    ];
    for sql in &setup {
        conn.query_drop(sql).await.with_context(|| sql.clone())?;
    }
    drop(conn);
    health::wait_healthy(&cluster.master_opts(), DB, settings.partitions, settings.deadline, poll).await?;

    let ledger = Arc::new(Ledger::new());
    // The ledger's time zero: the "+N ms" of the report and of `explain_lost` count from here.
    let started_utc = SystemTime::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for number in 0..settings.writers {
        let writer = Writer {
            opts: cluster.master_opts(),
            db: DB.to_string(),
            number,
            statement_limit: settings.statement_limit,
            pause: Duration::ZERO,
        };
        writers.spawn(workload::write(writer, ledger.clone(), stop.clone()));
    }
    let writing = Instant::now();
    let mut violations = Vec::new();
    let limits = nemesis::Limits { deadline: settings.deadline, poll };
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut episodes = Vec::new();
    for number in 1..=settings.episodes {
        if writing.elapsed() > settings.nemesis_time_max {
            break;
        }
        let episode = nemesis::plan(&mut rng, cluster.leaves(), settings.failure_timeout);
        let started_ms = ledger.epoch().elapsed().as_millis() as u64;
        let record = nemesis::carry_out(cluster, DB, settings.partitions, number, episode, started_ms, &limits).await;
        eprintln!("chaos: {}", describe(&record));
        let failed = record.failure.clone();
        episodes.push(record);
        if let Some(why) = failed {
            violations.push(format!("episode {number}: {why}"));
            break;
        }
    }

    // Liveness: on the healthy cluster the writers get acknowledgements again.
    if violations.is_empty() {
        let from = ledger.acked();
        let since = Instant::now();
        while ledger.acked() < from + settings.liveness_acks {
            if since.elapsed() > settings.liveness_time {
                violations.push(format!(
                    "liveness: {} acknowledgements in {} ms after the cluster was healthy again (wanted {})",
                    ledger.acked() - from,
                    settings.liveness_time.as_millis(),
                    settings.liveness_acks
                ));
                break;
            }
            tokio::time::sleep(poll).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let write_time = writing.elapsed();
    let drain = tokio::time::timeout(settings.statement_limit + Duration::from_secs(15), async {
        while writers.join_next().await.is_some() {}
    })
    .await;
    if drain.is_err() {
        violations.push("the writers did not stop within the statement limit".into());
        writers.abort_all();
    }
    for stall in ledger.stalls() {
        violations.push(format!("stall: {stall}"));
    }

    let verifying = Instant::now();
    let mut rows_found = 0;
    let mut copies_compared = 0;
    let mut maybe = (0, 0);
    let mut lost = Vec::new();
    match health::wait_healthy(&cluster.master_opts(), DB, settings.partitions, settings.deadline, poll).await {
        Err(e) => fatal(&mut violations, "before the checks", &e),
        Ok(_) => {
            match verify::all_rows(cluster, DB).await {
                Ok((found, duplicates)) => {
                    rows_found = found.len() as u64;
                    let rows = check::rows(&ledger.outcomes(), &found);
                    maybe = (rows.maybe_present, rows.maybe_absent);
                    violations.extend(rows.violations);
                    lost = rows.lost;
                    if !duplicates.is_empty() {
                        violations.push(format!("GROUP BY id HAVING COUNT(*) > 1 returned {duplicates:?}"));
                    }
                }
                Err(e) => fatal(&mut violations, "reading the rows", &e),
            }
            match verify::copies(cluster, DB, settings.partitions, settings.deadline, poll).await {
                Ok((masters, replicas)) => {
                    copies_compared = masters.len().min(replicas.len());
                    violations.extend(check::copies(&masters, &replicas));
                }
                Err(e) => fatal(&mut violations, "comparing the copies", &e),
            }
        }
    }
    for id in lost.iter().take(5) {
        violations.push(explain_lost(&ledger, &episodes, *id as u64, started_utc));
    }
    let log_excerpt = if violations.is_empty() { Vec::new() } else { excerpt(&cluster.master_log()) };
    Ok(Report {
        settings: settings.clone(),
        cluster: cluster.describe(),
        started_utc,
        episodes,
        attempted: ledger.attempted(),
        acked: ledger.acked(),
        maybe: ledger.maybe_count(),
        maybe_present: maybe.0,
        maybe_absent: maybe.1,
        errors: ledger.errors(),
        write_time,
        ack_gap_max: ledger.ack_gap_max(),
        rows_found,
        copies_compared,
        verify_time: verifying.elapsed(),
        violations,
        log_excerpt,
    })
}

/// When a lost id was sent and acknowledged, by whom, and during which episode.
fn explain_lost(ledger: &Ledger, episodes: &[Record], id: u64, epoch: SystemTime) -> String {
    let Some(entry) = ledger.entry(id) else { return format!("lost id {id}: not in the ledger") };
    let during = episodes
        .iter()
        .rev()
        .find(|r| r.started_ms <= entry.sent_ms)
        .map_or("before the first episode".to_string(), |r| format!("after the start of {}", describe(r)));
    let at = |ms: u64| utc(epoch + Duration::from_millis(ms));
    format!(
        "lost id {id}: writer {}, sent at +{} ms ({}), acknowledged at +{} ms ({}), {during}",
        entry.writer,
        entry.sent_ms,
        at(entry.sent_ms),
        entry.answered_ms.unwrap_or(0),
        at(entry.answered_ms.unwrap_or(0)),
    )
}

/// One line about an episode.
pub fn describe(r: &Record) -> String {
    let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
    let pause = r.episode.pause.as_millis();
    let mut line = format!(
        "episode {} at +{} ms: {} leaf-{} ({} masters, pause {pause} ms): offline after {}, failover after {}, healthy {} after its return",
        r.number,
        r.started_ms,
        r.episode.fault.name(),
        r.episode.leaf + 1,
        r.masters,
        ms(r.detected),
        ms(r.failover),
        ms(r.recovered),
    );
    if let Some(why) = &r.failure {
        line.push_str(&format!("; FAILED: {why}"));
    }
    line
}

/// Removes ANSI colour sequences (the server's log may carry them).
pub fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The master aggregator's lines about faults, failovers and replication (warnings and errors), the last 80.
pub fn excerpt(log: &str) -> Vec<String> {
    let lines: Vec<String> = log
        .lines()
        .map(plain)
        .filter(|l| {
            l.contains("WARN")
                || l.contains("ERROR")
                || l.contains("failover")
                || l.contains("in sync")
                || l.contains("pair rebalance")
        })
        .collect();
    lines[lines.len().saturating_sub(80)..].to_vec()
}

/// `t` as `HH:MM:SS.mmm` UTC.
pub fn utc(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let s = since.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03} UTC", s / 3600, s / 60 % 60, s % 60, since.subsec_millis())
}

/// Minimum, median, 99th percentile and maximum of `samples` (nearest rank), or `None` when empty.
pub fn spread(samples: &[Duration]) -> Option<[Duration; 4]> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort();
    let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    Some([s[0], rank(0.5), rank(0.99), s[s.len() - 1]])
}

fn spread_line(what: &str, samples: &[Duration]) -> String {
    match spread(samples) {
        None => format!("{what}: no samples"),
        Some([min, median, p99, max]) => format!(
            "{what} ({} samples): min {} ms, median {} ms, p99 {} ms, max {} ms",
            samples.len(),
            min.as_millis(),
            median.as_millis(),
            p99.as_millis(),
            max.as_millis()
        ),
    }
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    fn samples(&self, fault: Fault, of: impl Fn(&Record) -> Option<Duration>) -> Vec<Duration> {
        self.episodes.iter().filter(|r| r.episode.fault == fault).filter_map(of).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        writeln!(f, "# canopy chaos run (redundancy 2)")?;
        writeln!(f, "started {}, seed {}", utc(self.started_utc), s.seed)?;
        writeln!(f, "cluster: {}", self.cluster)?;
        writeln!(
            f,
            "settings: {} episodes planned, {} writers, {} partitions, leaf_failure_timeout_ms {}",
            s.episodes,
            s.writers,
            s.partitions,
            s.failure_timeout.as_millis()
        )?;
        let mut by_fault: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.episodes {
            *by_fault.entry(r.episode.fault.name()).or_default() += 1;
        }
        let faults: Vec<String> = by_fault.iter().map(|(k, n)| format!("{n} {k}")).collect();
        writeln!(f, "episodes run: {} ({})", self.episodes.len(), faults.join(", "))?;
        let secs = self.write_time.as_secs_f64().max(0.001);
        writeln!(
            f,
            "writes: {} attempted, {} acknowledged, {} failed or unanswered (\"maybe\": {} present, {} absent), {:.0} acknowledged writes/s over {:.1} s",
            self.attempted,
            self.acked,
            self.maybe,
            self.maybe_present,
            self.maybe_absent,
            self.acked as f64 / secs,
            secs
        )?;
        writeln!(f, "longest time without an acknowledgement: {} ms", self.ack_gap_max.as_millis())?;
        for (kind, (n, first)) in &self.errors {
            writeln!(f, "  errors {kind}: {n} (first: {first})")?;
        }
        for fault in [Fault::Kill, Fault::Stop, Fault::Freeze] {
            writeln!(
                f,
                "{}",
                spread_line(&format!("{}: offline after", fault.name()), &self.samples(fault, |r| r.detected))
            )?;
            writeln!(
                f,
                "{}",
                spread_line(&format!("{}: failover after", fault.name()), &self.samples(fault, |r| r.failover))
            )?;
        }
        for fault in [Fault::Kill, Fault::Stop, Fault::Freeze, Fault::BriefFreeze] {
            let recovered = self.samples(fault, |r| r.recovered);
            writeln!(f, "{}", spread_line(&format!("{}: healthy after the return", fault.name()), &recovered))?;
        }
        writeln!(
            f,
            "checks: {} rows read through the master aggregator, {} partitions' two copies compared, {:.1} s",
            self.rows_found,
            self.copies_compared,
            self.verify_time.as_secs_f64()
        )?;
        if self.violations.is_empty() {
            writeln!(f, "violations: none")?;
        } else {
            writeln!(f, "VIOLATIONS ({}):", self.violations.len())?;
            for v in &self.violations {
                writeln!(f, "  - {v}")?;
            }
            writeln!(f, "master aggregator log (warnings, errors, failovers; last {}):", self.log_excerpt.len())?;
            for line in &self.log_excerpt {
                writeln!(f, "  {line}")?;
            }
            writeln!(f, "episodes:")?;
            for r in &self.episodes {
                writeln!(f, "  {}", describe(r))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_nearest_ranks() {
        let ms = |v: &[u64]| v.iter().map(|m| Duration::from_millis(*m)).collect::<Vec<_>>();
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&ms(&[5])), Some([Duration::from_millis(5); 4]));
        let s = spread(&ms(&[30, 10, 20, 40])).unwrap();
        assert_eq!(s.map(|d| d.as_millis()), [10, 20, 40, 40]);
    }

    #[test]
    fn log_lines_lose_their_colours() {
        assert_eq!(
            plain("\u{1b}[2m2026-12-03T14:00:00Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x"),
            "2026-12-03T14:00:00Z  WARN x"
        );
        assert_eq!(utc(SystemTime::UNIX_EPOCH + Duration::from_millis(3_723_004)), "01:02:03.004 UTC");
    }
}
