//! `canopy-failover`: how long writes to a partition are unavailable when the leaf holding its master fails, in a
//! redundancy-2 cluster. One trial: a probe writes (`UPDATE ... WHERE id = k`, `k` a key of a partition the victim
//! masters) every `--probe-ms` from fresh or pooled connections, each probe abandoned after `--probe-timeout-ms`
//! (a probe stuck on a frozen leaf must not hold up the next); the fault hits the victim; the figure is the time
//! from the fault to the first successful probe sent after it. Then the leaf comes back (restart, or SIGCONT) and
//! the cluster is waited for until healthy (every replica in sync) before the next trial. Faults: SIGKILL, and
//! SIGSTOP with the default `leaf_failure_timeout_ms` and with a lower one. Prints min/median/p99/max per fault,
//! with the time SHOW LEAVES took to call the leaf offline. It measures; it asserts nothing.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use canopy_bench::program::{self, Bench};
use canopy_chaos::health::{self, View};
use canopy_chaos::{Cluster, spread};
use clap::Parser;
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;

const DB: &str = "fo";
const POLL: Duration = Duration::from_millis(10);
const WAIT_LIMIT: Duration = Duration::from_secs(90);
/// The server's default `leaf_failure_timeout_ms`.
const DEFAULT_FAILURE_TIMEOUT_MS: u64 = 5000;

#[derive(Parser, Debug)]
#[command(
    name = "canopy-failover",
    about = "Redundancy-2 failover time: from a leaf's SIGKILL or SIGSTOP to the first write"
)]
struct Args {
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    trials: u32,
    /// Pairs of leaves (leaves = 2 * pairs).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=8))]
    pairs: u64,
    /// The lower `leaf_failure_timeout_ms` of the second SIGSTOP series.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u64).range(200..=60_000))]
    low_timeout_ms: u64,
    /// One probe write every this many milliseconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    probe_ms: u64,
    /// A probe without an answer after this long is abandoned (its connection dropped).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    probe_timeout_ms: u64,
    /// Run only these series (kill, stop, stop-low), comma-separated [default: all three].
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[command(flatten)]
    flags: program::Flags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Stop,
}

/// One series of trials.
struct Series {
    name: &'static str,
    fault: Fault,
    failure_timeout_ms: u64,
}

#[derive(Default)]
struct Trial {
    write: Option<Duration>,
    offline: Option<Duration>,
    recovered: Option<Duration>,
    failed_probes: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match program::run("canopy-failover", run(&args)) {
        Some(()) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let bench = Bench::prepare(&args.flags)?;
    let pairs = args.pairs as usize;
    let partitions = 4 * pairs as u32;
    eprintln!("canopy-failover: starting a redundancy-2 cluster of {pairs} pairs");
    let mut cluster = bench.start_pairs(pairs).await?;
    let mut conn = cluster.connect().await?;
    conn.query_drop(format!("CREATE DATABASE {DB} PARTITIONS {partitions}")).await?;
    conn.query_drop(format!("CREATE TABLE {DB}.t (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")).await?;
    let values: Vec<String> = (1..=1000).map(|i| format!("({i}, 0)")).collect();
    conn.query_drop(format!("INSERT INTO {DB}.t VALUES {}", values.join(","))).await?;
    let keys = keys_by_partition(&cluster).await?;

    let all = [
        Series { name: "kill", fault: Fault::Kill, failure_timeout_ms: DEFAULT_FAILURE_TIMEOUT_MS },
        Series { name: "stop", fault: Fault::Stop, failure_timeout_ms: DEFAULT_FAILURE_TIMEOUT_MS },
        Series { name: "stop-low", fault: Fault::Stop, failure_timeout_ms: args.low_timeout_ms },
    ];
    let mut results: Vec<(&Series, Vec<Trial>)> = Vec::new();
    // A trial that cannot finish (the cluster did not recover) ends the run; the figures so far are still printed.
    let mut stopped: Option<String> = None;
    'series: for series in all.iter().filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s.name)) {
        conn.query_drop(format!("SET GLOBAL leaf_failure_timeout_ms = {}", series.failure_timeout_ms)).await?;
        let mut trials = Vec::new();
        for number in 0..args.trials {
            let trial = match trial(&mut cluster, args, series, number, partitions, &keys).await {
                Ok(trial) => trial,
                Err(e) => {
                    eprintln!("canopy-failover: {e:#}");
                    stopped = Some(format!(
                        "{} trial {}: {}",
                        series.name,
                        number + 1,
                        format!("{e:#}").lines().next().unwrap_or("")
                    ));
                    results.push((series, trials));
                    break 'series;
                }
            };
            eprintln!(
                "canopy-failover: {} trial {}: first write after {}, offline after {}, healthy {} after the return",
                series.name,
                number + 1,
                ms(trial.write),
                ms(trial.offline),
                ms(trial.recovered)
            );
            trials.push(trial);
        }
        results.push((series, trials));
    }
    let description = cluster.describe();
    drop(cluster);

    println!("## canopy-failover");
    println!();
    println!("{}", bench.facts.markdown());
    println!("- cluster: {description}; database with {partitions} partitions, redundancy 2");
    println!(
        "- probe: `UPDATE {DB}.t SET n = n + 1 WHERE id = k` (k on a partition the victim masters) every {} ms, \
         each abandoned after {} ms",
        args.probe_ms, args.probe_timeout_ms
    );
    println!();
    println!(
        "| fault | leaf_failure_timeout_ms | trials | first write after the fault: min / median / p99 / max (ms) | SHOW LEAVES offline after: median (ms) | healthy after the return: median (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for (series, trials) in &results {
        let writes: Vec<Duration> = trials.iter().filter_map(|t| t.write).collect();
        let offline: Vec<Duration> = trials.iter().filter_map(|t| t.offline).collect();
        let recovered: Vec<Duration> = trials.iter().filter_map(|t| t.recovered).collect();
        let four = spread(&writes).map_or("-".into(), |s| s.map(|d| d.as_millis().to_string()).join(" / "));
        let median = |v: &[Duration]| spread(v).map_or("-".into(), |s| s[1].as_millis().to_string());
        let fault = match series.fault {
            Fault::Kill => "SIGKILL",
            Fault::Stop => "SIGSTOP",
        };
        println!(
            "| {fault} | {} | {} | {four} | {} | {} |",
            series.failure_timeout_ms,
            trials.len(),
            median(&offline),
            median(&recovered)
        );
    }
    if let Some(why) = stopped {
        println!();
        println!("RUN STOPPED EARLY: {why}");
    }
    Ok(())
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{} ms", d.as_millis()))
}

/// Which keys each partition holds, read on the leaves' own ports (each master copy, `SELECT id FROM t`).
async fn keys_by_partition(cluster: &Cluster) -> anyhow::Result<BTreeMap<u32, Vec<i64>>> {
    let mut conn = cluster.connect().await?;
    let view = health::view(&mut conn, DB, Duration::from_secs(10)).await?;
    let mut keys = BTreeMap::new();
    for instance in view.instances.iter().filter(|i| i.is_master()) {
        let leaf = cluster.leaf_index(instance.port).context("an instance on an unknown leaf")?;
        let mut direct = canopy_chaos::cluster::connect(cluster.leaf_opts(leaf)).await?;
        direct.query_drop(format!("USE {DB}_{}", instance.ordinal)).await?;
        let ids: Vec<i64> = direct.query("SELECT id FROM t ORDER BY id").await?;
        keys.insert(instance.ordinal, ids);
    }
    Ok(keys)
}

async fn trial(
    cluster: &mut Cluster,
    args: &Args,
    series: &Series,
    number: u32,
    partitions: u32,
    keys: &BTreeMap<u32, Vec<i64>>,
) -> anyhow::Result<Trial> {
    let opts = cluster.master_opts();
    let view = health::wait_healthy(&opts, DB, partitions, WAIT_LIMIT, POLL).await?;
    // The victims take turns among the leaves that master something.
    let candidates: Vec<usize> =
        (0..cluster.leaves()).filter(|l| !view.masters_on(cluster.leaf_port(*l)).is_empty()).collect();
    anyhow::ensure!(!candidates.is_empty(), "no leaf masters anything");
    let victim = candidates[number as usize % candidates.len()];
    let port = cluster.leaf_port(victim);
    let ordinal = view.masters_on(port)[0];
    let key = *keys.get(&ordinal).and_then(|k| k.first()).context("a partition without keys")?;

    let prober = Prober::start(
        opts.clone(),
        key,
        Duration::from_millis(args.probe_ms),
        Duration::from_millis(args.probe_timeout_ms),
    );
    prober
        .wait_first_success(Instant::now(), WAIT_LIMIT)
        .await
        .context("the probe never succeeded before the fault")?;
    let t0 = Instant::now();
    match series.fault {
        Fault::Kill => cluster.kill(victim),
        Fault::Stop => cluster.freeze(victim)?,
    }
    let mut out = Trial::default();
    let offline = watch_offline(opts.clone(), port, t0);
    out.write = prober.wait_first_success(t0, WAIT_LIMIT).await.map(|at| at - t0);
    out.failed_probes = prober.failures();
    prober.stop();
    out.offline = offline.await.ok().flatten();
    let back = Instant::now();
    match series.fault {
        Fault::Kill => cluster.restart(victim).await?,
        Fault::Stop => cluster.thaw(victim)?,
    }
    if let Err(e) = health::wait_healthy(&opts, DB, partitions, WAIT_LIMIT, POLL).await {
        let excerpt = canopy_chaos::excerpt(&cluster.master_log()).join("\n  ");
        let victim_log = cluster.leaf_log(victim);
        let tail: Vec<&str> = victim_log.lines().rev().take(30).collect();
        let tail: Vec<String> = tail.into_iter().rev().map(canopy_chaos::plain).collect();
        anyhow::bail!(
            "{} trial {}: leaf-{} did not come back: {e:#}\nmaster aggregator log:\n  {excerpt}\nleaf-{} log:\n  {}",
            series.name,
            number + 1,
            victim + 1,
            victim + 1,
            tail.join("\n  ")
        );
    }
    out.recovered = Some(back.elapsed());
    Ok(out)
}

/// Polls SHOW LEAVES until the leaf on `port` is offline: the time from `t0`.
fn watch_offline(opts: mysql_async::Opts, port: u16, t0: Instant) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let mut conn = canopy_chaos::cluster::connect(opts).await.ok()?;
        while t0.elapsed() < WAIT_LIMIT {
            if let Ok(view) = health::view(&mut conn, DB, Duration::from_secs(10)).await
                && is_offline(&view, port)
            {
                return Some(t0.elapsed());
            }
            tokio::time::sleep(POLL).await;
        }
        None
    })
}

fn is_offline(view: &View, port: u16) -> bool {
    view.leaf_state(port) == Some("offline")
}

/// Probe writes on one key: one every `every`, each on an idle pooled connection or a new one, abandoned after
/// `timeout`; successes are reported with the instant they were sent.
struct Prober {
    /// (sent, answered) of each successful probe.
    successes: Mutex<mpsc::UnboundedReceiver<(Instant, Instant)>>,
    failures: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Probes in flight at most (with `timeout` / `every` probes started per timeout, this is never the limit on a
/// healthy machine).
const PROBES_IN_FLIGHT_MAX: usize = 512;

impl Prober {
    fn start(opts: mysql_async::Opts, key: i64, every: Duration, timeout: Duration) -> Prober {
        let (tx, rx) = mpsc::unbounded_channel();
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = failures.clone();
        let task = tokio::spawn(async move {
            let pool: Arc<Mutex<Vec<mysql_async::Conn>>> = Arc::new(Mutex::new(Vec::new()));
            let in_flight = Arc::new(tokio::sync::Semaphore::new(PROBES_IN_FLIGHT_MAX));
            let sql = format!("UPDATE {DB}.t SET n = n + 1 WHERE id = {key}");
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else { continue };
                let (pool, tx, failed, opts, sql) =
                    (pool.clone(), tx.clone(), failed.clone(), opts.clone(), sql.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let sent = Instant::now();
                    let conn = pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let attempt = async move {
                        let mut conn = match conn {
                            Some(c) => c,
                            None => mysql_async::Conn::new(opts).await?,
                        };
                        conn.query_drop(&sql).await?;
                        Ok::<_, mysql_async::Error>(conn)
                    };
                    match tokio::time::timeout(timeout, attempt).await {
                        Ok(Ok(conn)) => {
                            pool.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
                            let _ = tx.send((sent, Instant::now()));
                        }
                        _ => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        Prober { successes: Mutex::new(rx), failures, task }
    }

    /// When the answer came to the first successful probe sent at or after `after`.
    async fn wait_first_success(&self, after: Instant, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let next = {
                let mut rx = self.successes.lock().unwrap_or_else(|p| p.into_inner());
                rx.try_recv()
            };
            match next {
                Ok((sent, answered)) if sent >= after => return Some(answered),
                Ok(_) => continue,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if Instant::now() > deadline {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        }
    }

    fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn stop(self) {
        self.task.abort();
    }
}
