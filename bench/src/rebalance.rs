//! `canopy-rebalance`: how fast `REBALANCE PARTITIONS` moves data onto new leaves, and what it costs the clients.
//! One run on a throw-away cluster of real processes (master aggregator + `--leaves` leaves, `--new-leaves` more
//! started but not added): a database of `--partitions` partitions is loaded with `--gigabytes` GB of rows
//! (multi-row INSERTs from `--loaders` connections); the new leaves are added (`ADD LEAF` does not rebalance); a
//! fixed client workload (`--readers` connections of prepared point selects, `--writers` of prepared one-row
//! INSERTs, every statement's latency recorded) runs `--baseline-s` seconds without a move, then again for exactly
//! as long as `REBALANCE PARTITIONS ON bench` takes. It prints the REBALANCE's wall time, the bytes of the
//! partitions it moved (`page_count × page_size`, read on the leaves just before) and MB/s, the workload's
//! throughput, p50/p99/max and failed statements in both windows, each step's Running_Time, and the checks
//! afterwards: every acknowledged insert present, no row that was never attempted, COUNT(*) right, EXPLAIN
//! REBALANCE empty, every step `success`, every partition with exactly one master (and in redundancy 2 exactly one
//! replica, on another leaf, `sync` in INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS). It measures and prints; a failed
//! check is printed loudly and makes the exit code 1.
//!
//! `--redundancy 2` puts the leaves into alternating availability groups, so that they pair in order (1-2, 3-4...),
//! and the new ones one per group: 4 + 2 leaves are 2 pairs and a third one. A move then copies a partition onto both
//! leaves of the receiving pair, promotes the copy on one of them and drops the old replica.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use canopy_bench::cluster::Cluster;
use canopy_bench::facts;
use canopy_bench::latency::Percentiles;
use canopy_bench::program::{self, Bench};
use clap::Parser;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

const DB: &str = "bench";
/// Bytes of one multi-row INSERT of the load, about (rows of `--row-bytes` each).
const LOAD_STATEMENT_BYTES: u64 = 512 * 1024;
/// A workload statement without an answer after this long counts as failed (and its connection is replaced).
const STATEMENT_LIMIT: Duration = Duration::from_secs(60);
/// Slowest statements listed per window.
const SLOWEST_LISTED: usize = 5;

#[derive(Parser, Debug)]
#[command(
    name = "canopy-rebalance",
    about = "REBALANCE PARTITIONS onto new leaves: wall time, MB/s, and client latency during the move against none"
)]
struct Args {
    /// GB (10^9 bytes) of row data to load (`--row-bytes` per row).
    #[arg(long, default_value_t = 1.0, value_parser = gigabytes)]
    gigabytes: f64,
    /// Bytes of each row's `pad` column.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    row_bytes: u64,
    /// Partitions of the database.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    partitions: u32,
    /// Leaves holding the database before the move.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    leaves: u16,
    /// Leaves added before the REBALANCE.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    new_leaves: u16,
    /// `redundancy_level` of the cluster (2: leaves in alternating availability groups).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    redundancy: u8,
    /// Connections loading the data.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    loaders: u32,
    /// Workload connections running prepared point selects.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=64))]
    readers: u32,
    /// Workload connections running prepared one-row INSERTs of new ids.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=64))]
    writers: u32,
    /// Seconds of the workload without a move.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    baseline_s: u64,
    #[command(flatten)]
    flags: program::Flags,
}

fn gigabytes(s: &str) -> Result<f64, String> {
    let gb: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0001..=100.0).contains(&gb) { Ok(gb) } else { Err("between 0.0001 and 100".into()) }
}

impl Args {
    fn rows(&self) -> u64 {
        ((self.gigabytes * 1e9) / self.row_bytes as f64).round().max(1.0) as u64
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match program::run("canopy-rebalance", run(&args)) {
        Some(true) => ExitCode::SUCCESS,
        Some(false) => ExitCode::from(1),
        None => ExitCode::from(2),
    }
}

/// A partition whose master moved to a leaf that held no copy of it (a move; in redundancy 2 between pairs).
struct Moved {
    ordinal: u32,
    from_port: u16,
    to_port: u16,
    /// Its bytes just before the REBALANCE (`page_count × page_size` on the source).
    bytes: u64,
}

/// Everything one run measured.
struct Figures {
    cluster: String,
    rows: u64,
    load: Duration,
    /// Bytes of every partition right after the load.
    loaded_bytes: u64,
    add_leaf: Vec<Duration>,
    explain: Vec<Step>,
    baseline: Window,
    during: Window,
    rebalance: Duration,
    rebalance_info: String,
    /// `/proc/loadavg` when the REBALANCE ended.
    load_average: String,
    /// Each partition whose master moved.
    moved: Vec<Moved>,
    steps: Vec<Step>,
    /// Partitions whose master changed to a leaf that already held a replica (in-pair promotions).
    promoted: Vec<u32>,
    /// Ordinal -> the port of its master's leaf before the move.
    placement_before: BTreeMap<u32, u16>,
    /// (masters, replicas) per leaf port, before and after.
    per_leaf_before: BTreeMap<u16, (usize, usize)>,
    per_leaf_after: BTreeMap<u16, (usize, usize)>,
    /// Bytes the new leaves hold afterwards.
    new_leaf_bytes: u64,
    checks: Vec<String>,
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let bench = Bench::prepare(&args.flags)?;
    let rows = args.rows();
    let (leaves, new_leaves) = (usize::from(args.leaves), usize::from(args.new_leaves));
    progress(format!(
        "starting a master aggregator + {leaves} leaves (+ {new_leaves} to add), redundancy {}",
        args.redundancy
    ));
    let mut cluster = bench.spawn(args.leaves + args.new_leaves)?;
    cluster.form(leaves, args.redundancy).await?;
    let figures = measure(&cluster, args, rows).await?;
    progress("stopping the cluster");
    drop(cluster);
    print(&bench, args, &figures);
    Ok(figures.checks.is_empty())
}

async fn measure(cluster: &Cluster, args: &Args, rows: u64) -> anyhow::Result<Figures> {
    let opts = cluster.master_opts();
    let mut conn = cluster.connect().await?;
    conn.query_drop(format!("CREATE DATABASE {DB} PARTITIONS {}", args.partitions)).await.context("CREATE DATABASE")?;
    conn.query_drop(format!("CREATE TABLE {DB}.t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, pad TEXT NOT NULL)"))
        .await
        .context("CREATE TABLE")?;

    progress(format!(
        "loading {rows} rows of {} bytes ({} GB) from {} connections",
        args.row_bytes, args.gigabytes, args.loaders
    ));
    let load = load(&opts, rows, args.row_bytes, args.loaders).await?;
    let loaded_bytes: u64 = sizes(cluster).await?.values().map(|(_, b)| b).sum();
    progress(format!("loaded in {:.1} s; {:.1} MB in the partitions", load.as_secs_f64(), loaded_bytes as f64 / 1e6));
    let mut checks = Vec::new();
    let count = count(&mut conn).await?;
    if count != rows {
        checks.push(format!("after the load COUNT(*) = {count}, expected {rows}"));
    }

    let mut add_leaf = Vec::new();
    for leaf in usize::from(args.leaves) + 1..=cluster.leaves() {
        progress(format!("ADD LEAF :{}", cluster.leaf_port(leaf)));
        add_leaf.push(cluster.add_leaf(leaf).await?);
    }
    let explain =
        steps_of(&conn.query(format!("EXPLAIN REBALANCE PARTITIONS ON {DB}")).await.context("EXPLAIN REBALANCE")?)?;
    progress(format!("EXPLAIN REBALANCE: {} steps", explain.len()));

    let next_id = Arc::new(AtomicU64::new(rows + 1));
    let workload = Workload {
        opts: opts.clone(),
        rows,
        row_bytes: args.row_bytes,
        partitions: args.partitions,
        readers: args.readers,
        writers: args.writers,
    };
    progress(format!("workload without a move for {} s", args.baseline_s));
    let running = workload.start(&next_id, 1).await?;
    tokio::time::sleep(Duration::from_secs(args.baseline_s)).await;
    let baseline = running.stop().await?;

    let copies_before = copies(&mut conn).await?;
    let placement_before = masters(&copies_before);
    let sizes_before = sizes(cluster).await?;
    progress("REBALANCE PARTITIONS with the workload running");
    let running = workload.start(&next_id, 2).await?;
    let t = Instant::now();
    let rebalanced = conn.query_drop(format!("REBALANCE PARTITIONS ON {DB}")).await;
    let rebalance = t.elapsed();
    let load_average = facts::load_average();
    let during = running.stop().await?;
    let rebalance_info = match rebalanced {
        Ok(()) => conn.info().into_owned(),
        Err(e) => {
            checks.push(format!("REBALANCE PARTITIONS failed: {e}"));
            String::new()
        }
    };
    progress(format!("REBALANCE took {:.2} s: {rebalance_info}", rebalance.as_secs_f64()));

    let steps =
        steps_of(&conn.query(format!("SHOW REBALANCE STATUS ON {DB}")).await.context("SHOW REBALANCE STATUS")?)?;
    let copies_after = copies(&mut conn).await?;
    let placement_after = masters(&copies_after);
    let held_before: BTreeSet<(u32, u16)> = copies_before.iter().map(|c| (c.ordinal, c.port)).collect();
    let changed: Vec<(u32, u16, u16)> = placement_before
        .iter()
        .filter_map(|(&ordinal, &from_port)| {
            let to_port = *placement_after.get(&ordinal)?;
            (to_port != from_port).then_some((ordinal, from_port, to_port))
        })
        .collect();
    let (promotions, moves): (Vec<_>, Vec<_>) =
        changed.into_iter().partition(|&(ordinal, _, to_port)| held_before.contains(&(ordinal, to_port)));
    let promoted = promotions.iter().map(|&(ordinal, _, _)| ordinal).collect();
    let moved: Vec<Moved> = moves
        .into_iter()
        .map(|(ordinal, from_port, to_port)| {
            let bytes = sizes_before.get(&ordinal).map_or(0, |(_, b)| *b);
            Moved { ordinal, from_port, to_port, bytes }
        })
        .collect();
    check_copies(&copies_after, args.partitions, args.redundancy, &mut checks);
    let new_ports: BTreeSet<u16> =
        (usize::from(args.leaves) + 1..=cluster.leaves()).map(|l| cluster.leaf_port(l)).collect();
    let sizes_after = sizes(cluster).await?;
    let new_leaf_bytes = sizes_after.values().filter(|(port, _)| new_ports.contains(port)).map(|(_, b)| b).sum();

    let pending: Vec<Row> = conn.query(format!("EXPLAIN REBALANCE PARTITIONS ON {DB}")).await.context("EXPLAIN")?;
    if !pending.is_empty() {
        checks.push(format!("EXPLAIN REBALANCE after the move still shows {} steps", pending.len()));
    }
    for s in steps.iter().filter(|s| s.status.as_deref() != Some("success")) {
        checks.push(format!(
            "step {} of partition {} to :{} is {}",
            s.action,
            s.ordinal,
            s.target_port,
            s.status.as_deref().unwrap_or("?")
        ));
    }
    if !steps.is_empty() && moved.is_empty() {
        checks.push("no partition's master moved".into());
    }
    for (name, window) in [("without a move", &baseline), ("during the move", &during)] {
        if !window.failures.is_empty() {
            checks.push(format!("{} failed statements {name}; first: {}", window.failures.len(), window.failures[0].1));
        }
        if window.missing > 0 {
            checks.push(format!("{} point selects {name} found no row for an existing id", window.missing));
        }
    }
    check_rows(&mut conn, rows, &[&baseline, &during], &mut checks).await?;
    conn.disconnect().await.context("disconnect")?;
    Ok(Figures {
        cluster: cluster.describe(),
        rows,
        load,
        loaded_bytes,
        add_leaf,
        explain,
        baseline,
        during,
        rebalance,
        rebalance_info,
        load_average,
        moved,
        steps,
        promoted,
        per_leaf_before: per_leaf(&copies_before),
        placement_before,
        per_leaf_after: per_leaf(&copies_after),
        new_leaf_bytes,
        checks,
    })
}

/// Every acknowledged insert present, no id present that was never attempted, COUNT(*) = loaded + inserted.
async fn check_rows(conn: &mut Conn, rows: u64, windows: &[&Window], checks: &mut Vec<String>) -> anyhow::Result<()> {
    let acked: BTreeSet<u64> = windows.iter().flat_map(|w| w.acked.iter().copied()).collect();
    let maybe: BTreeSet<u64> = windows.iter().flat_map(|w| w.failures.iter().filter_map(|f| f.0)).collect();
    let present: Vec<u64> =
        conn.query(format!("SELECT id FROM {DB}.t WHERE id > {rows}")).await.context("reading the inserted ids")?;
    let present: BTreeSet<u64> = present.into_iter().collect();
    let missing: Vec<&u64> = acked.difference(&present).collect();
    if !missing.is_empty() {
        checks.push(format!(
            "{} acknowledged inserts missing, e.g. ids {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    let unexpected: Vec<&u64> = present.iter().filter(|id| !acked.contains(id) && !maybe.contains(id)).collect();
    if !unexpected.is_empty() {
        checks.push(format!(
            "{} ids present that were never acknowledged or attempted, e.g. {:?}",
            unexpected.len(),
            &unexpected[..unexpected.len().min(10)]
        ));
    }
    let count = count(conn).await?;
    if count != rows + present.len() as u64 {
        checks.push(format!("COUNT(*) = {count}, but {rows} loaded + {} inserted ids are present", present.len()));
    }
    Ok(())
}

/// Loads ids `1..=rows`: `loaders` connections, each taking the next batch of ids from a shared counter and sending
/// it as one multi-row INSERT of about [`LOAD_STATEMENT_BYTES`].
async fn load(opts: &Opts, rows: u64, row_bytes: u64, loaders: u32) -> anyhow::Result<Duration> {
    let batch = (LOAD_STATEMENT_BYTES / (row_bytes + 32)).max(1);
    let next = Arc::new(AtomicU64::new(1));
    let mut conns = Vec::new();
    for _ in 0..loaders {
        conns.push(Conn::new(opts.clone()).await.context("cannot connect to the master aggregator")?);
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let next = next.clone();
        tasks.spawn(async move {
            let mut sql = String::new();
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first > rows {
                    break;
                }
                let last = (first + batch - 1).min(rows);
                sql.clear();
                sql.push_str("INSERT INTO bench.t (id, k, pad) VALUES ");
                for id in first..=last {
                    let sep = if id == first { "" } else { "," };
                    // The pad is lowercase letters only: no escaping needed.
                    write!(sql, "{sep}({id}, {}, '{}')", key(id), pad(id, row_bytes)).expect("writing to a String");
                }
                conn.query_drop(&sql).await.with_context(|| format!("INSERT of ids {first}..={last}"))?;
            }
            conn.disconnect().await.context("disconnect")?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a loader panicked")??;
    }
    Ok(started.elapsed())
}

/// The `k` column of row `id`.
fn key(id: u64) -> u64 {
    splitmix64(id) % 1_000_000
}

/// Row `id`'s pad: `bytes` lowercase letters from a generator seeded by the id, so rows differ (nothing on the way
/// compresses, but a repeated pad would look unlike real data).
fn pad(id: u64, bytes: u64) -> String {
    let mut state = splitmix64(id ^ 0x5EED);
    let mut out = String::with_capacity(bytes as usize);
    while (out.len() as u64) < bytes {
        state = splitmix64(state);
        for b in state.to_le_bytes() {
            if (out.len() as u64) < bytes {
                out.push((b'a' + b % 26) as char);
            }
        }
    }
    out
}

/// The partition of the row with this id, as the master aggregator routes it.
fn partition_of(id: u64, partitions: u32) -> u32 {
    let id = i64::try_from(id).expect("ids stay far below i64::MAX");
    canopy_sql::shard::partition_of(&[canopy_sql::Value::Integer(id)], partitions)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn count(conn: &mut Conn) -> anyhow::Result<u64> {
    conn.query_first(format!("SELECT COUNT(*) FROM {DB}.t")).await.context("COUNT(*)")?.context("COUNT(*): no row")
}

/// One instance (copy) of a partition, as INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS shows it.
struct Copy {
    ordinal: u32,
    port: u16,
    master: bool,
    /// STATE: `sync` for a replica in its master's commit path (redundancy 2).
    state: String,
}

/// Every instance of the database's partitions (INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS).
async fn copies(conn: &mut Conn) -> anyhow::Result<Vec<Copy>> {
    let sql = format!("SELECT * FROM INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = '{DB}'");
    let rows: Vec<Row> = conn.query(sql).await.context("DISTRIBUTED_PARTITIONS")?;
    rows.iter()
        .map(|row| {
            Ok(Copy {
                ordinal: text(row, "ORDINAL")
                    .and_then(|t| t.parse().ok())
                    .context("DISTRIBUTED_PARTITIONS: ORDINAL")?,
                port: text(row, "PORT").and_then(|t| t.parse().ok()).context("DISTRIBUTED_PARTITIONS: PORT")?,
                master: text(row, "ROLE").context("DISTRIBUTED_PARTITIONS: ROLE")? == "Master",
                state: text(row, "STATE").context("DISTRIBUTED_PARTITIONS: STATE")?,
            })
        })
        .collect()
}

/// Ordinal -> the port of the leaf holding its master.
fn masters(copies: &[Copy]) -> BTreeMap<u32, u16> {
    copies.iter().filter(|c| c.master).map(|c| (c.ordinal, c.port)).collect()
}

/// (masters, replicas) per leaf port.
fn per_leaf(copies: &[Copy]) -> BTreeMap<u16, (usize, usize)> {
    let mut out: BTreeMap<u16, (usize, usize)> = BTreeMap::new();
    for c in copies {
        let entry = out.entry(c.port).or_default();
        if c.master { entry.0 += 1 } else { entry.1 += 1 }
    }
    out
}

/// Every partition has exactly one master, and in redundancy 2 exactly one replica besides, on another leaf and in
/// sync; in redundancy 1 nothing besides.
fn check_copies(copies: &[Copy], partitions: u32, redundancy: u8, checks: &mut Vec<String>) {
    for ordinal in 0..partitions {
        let of: Vec<&Copy> = copies.iter().filter(|c| c.ordinal == ordinal).collect();
        let masters: Vec<&&Copy> = of.iter().filter(|c| c.master).collect();
        let replicas: Vec<&&Copy> = of.iter().filter(|c| !c.master).collect();
        let describe = || {
            of.iter()
                .map(|c| format!(":{} {} {:?}", c.port, if c.master { "master" } else { "replica" }, c.state))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if masters.len() != 1 {
            checks.push(format!("partition {ordinal} has {} masters afterwards: {}", masters.len(), describe()));
            continue;
        }
        let wanted = usize::from(redundancy) - 1;
        let in_sync = |r: &&&Copy| r.state == "sync" && r.port != masters[0].port;
        if replicas.len() != wanted || (redundancy == 2 && !replicas.iter().all(in_sync)) {
            checks.push(format!(
                "partition {ordinal} afterwards is not one master and {wanted} in-sync replica(s) on other leaves: {}",
                describe()
            ));
        }
    }
}

/// Ordinal -> (leaf port, bytes) of every partition copy the leaves serve, asked of each leaf node (those not in
/// the cluster yet serve none).
async fn sizes(cluster: &Cluster) -> anyhow::Result<BTreeMap<u32, (u16, u64)>> {
    let mut out = BTreeMap::new();
    for leaf in 1..=cluster.leaves() {
        for (k, bytes) in cluster.partition_sizes(leaf, DB).await? {
            out.insert(k, (cluster.leaf_port(leaf), bytes));
        }
    }
    Ok(out)
}

/// A row of EXPLAIN REBALANCE or SHOW REBALANCE STATUS.
struct Step {
    action: String,
    ordinal: String,
    target_port: String,
    phase: String,
    /// SHOW REBALANCE STATUS only.
    status: Option<String>,
    running_ms: Option<String>,
    estimate_ms: Option<String>,
}

fn steps_of(rows: &[Row]) -> anyhow::Result<Vec<Step>> {
    rows.iter()
        .map(|r| {
            Ok(Step {
                action: text(r, "Action").context("no Action")?,
                ordinal: text(r, "Ordinal").context("no Ordinal")?,
                target_port: text(r, "Target_Port").context("no Target_Port")?,
                phase: text(r, "Phase").context("no Phase")?,
                status: text(r, "Status"),
                running_ms: text(r, "Running_Time"),
                estimate_ms: text(r, "Estimated_Time_Remaining_Ms"),
            })
        })
        .collect()
}

/// Column `name` as text, whatever protocol type it came in (`None`: no such column).
fn text(row: &Row, name: &str) -> Option<String> {
    let idx = row.columns_ref().iter().position(|c| c.name_str() == name)?;
    Some(match row.as_ref(idx)? {
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        mysql_async::Value::Int(i) => i.to_string(),
        mysql_async::Value::UInt(i) => i.to_string(),
        mysql_async::Value::NULL => "NULL".into(),
        other => format!("{other:?}"),
    })
}

/// The client workload: `readers` connections of prepared point selects of random loaded ids, `writers` of prepared
/// one-row INSERTs of new ids, each statement waited for before the next (closed loop).
#[derive(Clone)]
struct Workload {
    opts: Opts,
    rows: u64,
    row_bytes: u64,
    partitions: u32,
    readers: u32,
    writers: u32,
}

/// What a window of the workload saw.
#[derive(Default)]
struct Window {
    elapsed: Duration,
    selects: Vec<Sample>,
    inserts: Vec<Sample>,
    /// Ids whose INSERT was acknowledged.
    acked: Vec<u64>,
    /// (the id of a failed INSERT, the error) of each failed statement.
    failures: Vec<(Option<u64>, String)>,
    /// Point selects that found no row (every id they ask exists).
    missing: u64,
}

/// One statement: when it was sent (since the window's start) and how long it took.
#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    took: Duration,
    /// The partition of the row the statement reads or writes (the shard hash of its id).
    ordinal: u32,
}

impl Window {
    fn percentiles(samples: &[Sample]) -> Percentiles {
        let mut took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
        Percentiles::of(&mut took)
    }

    fn per_s(&self, samples: &[Sample]) -> f64 {
        samples.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The slowest statements: (kind, sent at, took).
    fn slowest(&self) -> Vec<(&'static str, Sample)> {
        let mut all: Vec<(&'static str, Sample)> =
            self.selects.iter().map(|s| ("select", *s)).chain(self.inserts.iter().map(|s| ("insert", *s))).collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.1.took));
        all.truncate(SLOWEST_LISTED);
        all
    }
}

/// A running workload; [`Running::stop`] ends it.
struct Running {
    started: Instant,
    stop: Arc<AtomicBool>,
    clients: JoinSet<anyhow::Result<Window>>,
}

impl Workload {
    /// Connects every client (and prepares its statement), then starts them all. `seed` varies the ids read.
    async fn start(&self, next_id: &Arc<AtomicU64>, seed: u64) -> anyhow::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut ready = Vec::new();
        for i in 0..self.readers + self.writers {
            let kind = if i < self.writers { Kind::Insert } else { Kind::PointSelect };
            ready.push(Client::connect(self, kind).await?);
        }
        let started = Instant::now();
        let mut clients = JoinSet::new();
        for (i, client) in ready.into_iter().enumerate() {
            let (stop, next_id) = (stop.clone(), next_id.clone());
            let rng = StdRng::seed_from_u64(seed * 1000 + i as u64);
            clients.spawn(async move { client.run(started, stop, next_id, rng).await });
        }
        Ok(Running { started, stop, clients })
    }
}

impl Running {
    async fn stop(mut self) -> anyhow::Result<Window> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        let mut window = Window { elapsed, ..Window::default() };
        while let Some(done) = self.clients.join_next().await {
            let w = done.context("a workload client panicked")??;
            window.selects.extend(w.selects);
            window.inserts.extend(w.inserts);
            window.acked.extend(w.acked);
            window.failures.extend(w.failures);
            window.missing += w.missing;
        }
        Ok(window)
    }
}

/// Where a statement's row was during the move (for the report's split of the latencies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Moved,
    SourceLeaf,
    Untouched,
}

/// What a workload connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PointSelect,
    Insert,
}

/// One workload connection with its prepared statement.
struct Client {
    conn: Conn,
    stmt: mysql_async::Statement,
    kind: Kind,
    workload: Workload,
}

impl Client {
    async fn connect(workload: &Workload, kind: Kind) -> anyhow::Result<Client> {
        let mut conn = Conn::new(workload.opts.clone()).await.context("cannot connect to the master aggregator")?;
        let sql = match kind {
            Kind::Insert => format!("INSERT INTO {DB}.t (id, k, pad) VALUES (?, ?, ?)"),
            Kind::PointSelect => format!("SELECT k, pad FROM {DB}.t WHERE id = ?"),
        };
        let stmt = conn.prep(sql).await.context("PREPARE")?;
        Ok(Client { conn, stmt, kind, workload: workload.clone() })
    }

    /// Runs statements until `stop`; `started` is the window's start, `next_id` the next id to insert.
    async fn run(
        mut self,
        started: Instant,
        stop: Arc<AtomicBool>,
        next_id: Arc<AtomicU64>,
        mut rng: StdRng,
    ) -> anyhow::Result<Window> {
        let (rows, row_bytes) = (self.workload.rows, self.workload.row_bytes);
        let mut window = Window::default();
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let (id, outcome) = match self.kind {
                Kind::Insert => {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let insert = self.conn.exec_drop(&self.stmt, (id, key(id), pad(id, row_bytes)));
                    (id, tokio::time::timeout(STATEMENT_LIMIT, insert).await.map(|r| r.map(|()| true)))
                }
                Kind::PointSelect => {
                    let id = rng.random_range(1..=rows);
                    let select = self.conn.exec_first::<Row, _, _>(&self.stmt, (id,));
                    (id, tokio::time::timeout(STATEMENT_LIMIT, select).await.map(|r| r.map(|row| row.is_some())))
                }
            };
            let ordinal = partition_of(id, self.workload.partitions);
            let sample = Sample { at: sent - started, took: sent.elapsed(), ordinal };
            match outcome {
                Ok(Ok(found)) => match self.kind {
                    Kind::Insert => {
                        window.inserts.push(sample);
                        window.acked.push(id);
                    }
                    Kind::PointSelect => {
                        window.selects.push(sample);
                        window.missing += u64::from(!found);
                    }
                },
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} s", STATEMENT_LIMIT.as_secs()),
                    };
                    let inserted = (self.kind == Kind::Insert).then_some(id);
                    window.failures.push((inserted, error));
                    // The connection may be broken or mid-statement: replace it (bounded: the stop flag ends it).
                    loop {
                        match Client::connect(&self.workload, self.kind).await {
                            Ok(fresh) => {
                                self = fresh;
                                break;
                            }
                            Err(_) if !stop.load(Ordering::Relaxed) => {
                                tokio::time::sleep(Duration::from_millis(100)).await
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        let _ = self.conn.disconnect().await;
        Ok(window)
    }
}

fn progress(what: impl std::fmt::Display) {
    eprintln!("canopy-rebalance: {what}");
}

fn print(bench: &Bench, args: &Args, f: &Figures) {
    let mb = |b: u64| b as f64 / 1e6;
    let moved_bytes: u64 = f.moved.iter().map(|m| m.bytes).sum();
    println!("## canopy-rebalance, {}", bench.facts.date_utc);
    println!();
    println!("{}", bench.facts.markdown());
    println!("- load average when the REBALANCE ended: {}", f.load_average);
    println!(
        "- cluster: {} (master aggregator + {} leaves, {} added before the REBALANCE), redundancy {}",
        f.cluster, args.leaves, args.new_leaves, args.redundancy
    );
    println!(
        "- database `{DB}` of {} partitions, table `t (id BIGINT PRIMARY KEY, k BIGINT, pad TEXT)`, pad of {} bytes",
        args.partitions, args.row_bytes
    );
    println!(
        "- workload: {} connections of prepared `SELECT k, pad FROM t WHERE id = ?` (random loaded ids), {} of \
         prepared one-row `INSERT` of new ids, closed loop, latency per statement in the client",
        args.readers, args.writers
    );
    println!();
    println!("| rebalance | figure |");
    println!("|---|---|");
    println!(
        "| load | {} rows, {:.1} MB of row data in {:.1} s ({:.1} MB/s), {} connections of multi-row INSERTs |",
        f.rows,
        mb(f.rows * args.row_bytes),
        f.load.as_secs_f64(),
        mb(f.rows * args.row_bytes) / f.load.as_secs_f64(),
        args.loaders
    );
    println!(
        "| bytes in the partitions after the load (page_count × page_size, masters) | {:.1} MB |",
        mb(f.loaded_bytes)
    );
    let adds: Vec<String> = f.add_leaf.iter().map(|d| format!("{} ms", d.as_millis())).collect();
    println!("| ADD LEAF | {} |", adds.join(", "));
    let copies = f.explain.iter().filter(|s| s.action.starts_with("COPY")).count();
    println!("| EXPLAIN REBALANCE | {} steps ({copies} copies) |", f.explain.len());
    println!("| REBALANCE PARTITIONS wall time | {:.2} s ({}) |", f.rebalance.as_secs_f64(), f.rebalance_info);
    let ordinals: Vec<String> =
        f.moved.iter().map(|m| format!("{} (:{} → :{})", m.ordinal, m.from_port, m.to_port)).collect();
    println!("| partitions moved | {} : {} |", f.moved.len(), ordinals.join(", "));
    if args.redundancy == 2 {
        let promoted: Vec<String> = f.promoted.iter().map(u32::to_string).collect();
        let promoted = if promoted.is_empty() { String::new() } else { format!(": {}", promoted.join(", ")) };
        println!("| masters switched within their pair | {}{promoted} |", f.promoted.len());
    }
    println!("| MB moved (their page_count × page_size just before) | {:.1} MB |", mb(moved_bytes));
    println!("| throughput | {:.1} MB/s |", mb(moved_bytes) / f.rebalance.as_secs_f64());
    if args.redundancy == 2 {
        // Each move copies the partition onto both leaves of the receiving pair.
        let copied = moved_bytes * u64::from(args.redundancy);
        println!(
            "| MB copied (2 copies per move) | {:.1} MB, {:.1} MB/s |",
            mb(copied),
            mb(copied) / f.rebalance.as_secs_f64()
        );
    }
    println!("| MB of masters on the new leaves afterwards | {:.1} MB |", mb(f.new_leaf_bytes));
    let spread = |m: &BTreeMap<u16, (usize, usize)>| {
        let leaf = |(p, (masters, replicas)): (&u16, &(usize, usize))| match args.redundancy {
            2 => format!(":{p} {masters}+{replicas}"),
            _ => format!(":{p} {masters}"),
        };
        m.iter().map(leaf).collect::<Vec<_>>().join(", ")
    };
    let what = if args.redundancy == 2 { "masters+replicas" } else { "partitions" };
    println!("| {what} per leaf before | {} |", spread(&f.per_leaf_before));
    println!("| {what} per leaf after | {} |", spread(&f.per_leaf_after));
    println!();

    println!("| workload | without a move | during REBALANCE |");
    println!("|---|---|---|");
    let (b, d) = (&f.baseline, &f.during);
    println!("| window (s) | {:.1} | {:.1} |", b.elapsed.as_secs_f64(), d.elapsed.as_secs_f64());
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    for (name, pick) in [("point select", 0), ("insert", 1)] {
        let samples = |w: &Window| if pick == 0 { w.selects.clone() } else { w.inserts.clone() };
        let (sb, sd) = (samples(b), samples(d));
        println!("| {name}s/s | {:.0} | {:.0} |", b.per_s(&sb), d.per_s(&sd));
        let (pb, pd) = (Window::percentiles(&sb), Window::percentiles(&sd));
        println!(
            "| {name} p50 / p99 / max (ms) | {:.2} / {:.2} / {:.1} | {:.2} / {:.2} / {:.1} |",
            ms(pb.p50),
            ms(pb.p99),
            ms(pb.max),
            ms(pd.p50),
            ms(pd.p99),
            ms(pd.max)
        );
    }
    let all = |w: &Window| -> Vec<Sample> { w.selects.iter().chain(&w.inserts).copied().collect() };
    let (ab, ad) = (Window::percentiles(&all(b)), Window::percentiles(&all(d)));
    println!(
        "| all statements p50 / p99 / max (ms) | {:.2} / {:.2} / {:.1} | {:.2} / {:.2} / {:.1} |",
        ms(ab.p50),
        ms(ab.p99),
        ms(ab.max),
        ms(ad.p50),
        ms(ad.p99),
        ms(ad.max)
    );
    let moved: BTreeSet<u32> = f.moved.iter().map(|m| m.ordinal).collect();
    let sources: BTreeSet<u16> = f.moved.iter().map(|m| m.from_port).collect();
    // Where a statement's row lives: on a moved partition, on another partition of a leaf a move copies from, or
    // on a leaf no move touches (empty when every old leaf is a source).
    let group = |s: &Sample| -> Group {
        if moved.contains(&s.ordinal) {
            Group::Moved
        } else if f.placement_before.get(&s.ordinal).is_some_and(|port| sources.contains(port)) {
            Group::SourceLeaf
        } else {
            Group::Untouched
        }
    };
    for (name, which) in [
        ("the moved partitions", Group::Moved),
        ("the other partitions of the source leaves", Group::SourceLeaf),
        ("the leaves no move touches", Group::Untouched),
    ] {
        let split = |w: &Window| -> String {
            let mut took: Vec<Duration> = all(w).iter().filter(|s| group(s) == which).map(|s| s.took).collect();
            let p = Percentiles::of(&mut took);
            if took.is_empty() { "-".into() } else { format!("{}, {:.2} / {:.1}", took.len(), ms(p.p99), ms(p.max)) }
        };
        println!("| statements on {name}: count, p99 / max (ms) | {} | {} |", split(b), split(d));
    }
    println!("| failed statements | {} | {} |", b.failures.len(), d.failures.len());
    println!();

    println!(
        "| step (SHOW REBALANCE STATUS) | ordinal | target | phase | status | Running_Time (ms) | EXPLAIN's estimate (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for s in &f.steps {
        let estimate = f
            .explain
            .iter()
            .find(|e| e.action == s.action && e.ordinal == s.ordinal && e.target_port == s.target_port)
            .and_then(|e| e.estimate_ms.clone())
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | :{} | {} | {} | {} | {estimate} |",
            s.action,
            s.ordinal,
            s.target_port,
            s.phase,
            s.status.as_deref().unwrap_or("-"),
            s.running_ms.as_deref().unwrap_or("-")
        );
    }
    println!();
    let slowest: Vec<String> = d
        .slowest()
        .iter()
        .map(|(kind, s)| {
            let which = if moved.contains(&s.ordinal) { "moved" } else { "not moved" };
            let port = f.placement_before.get(&s.ordinal).copied().unwrap_or(0);
            let role = if sources.contains(&port) { "a source" } else { "not a source" };
            format!(
                "{kind} of partition {} ({which}; on :{port}, {role}) at +{:.2} s took {:.1} ms",
                s.ordinal,
                s.at.as_secs_f64(),
                ms(s.took)
            )
        })
        .collect();
    println!("Slowest statements during the move (time since the REBALANCE began): {}.", slowest.join("; "));
    println!();
    // The REBALANCE plans again when it runs; under the workload's inserts the partitions' sizes change, and with
    // them which partitions a leaf gives away (the smallest).
    let unplanned: Vec<String> = f
        .explain
        .iter()
        .filter(|e| {
            !f.steps.iter().any(|s| s.action == e.action && s.ordinal == e.ordinal && s.target_port == e.target_port)
        })
        .map(|e| format!("{} {} to :{}", e.action, e.ordinal, e.target_port))
        .collect();
    if unplanned.is_empty() {
        println!("Every step of the EXPLAIN before the workload ran.");
    } else {
        println!("Steps of the EXPLAIN before the workload that did not run: {}.", unplanned.join("; "));
    }
    println!();
    if f.checks.is_empty() {
        println!(
            "Check: 0 failed statements; all {} acknowledged inserts present, no other new row; COUNT(*) right; \
             EXPLAIN REBALANCE empty afterwards; every step success; every partition {}.",
            b.acked.len() + d.acked.len(),
            if args.redundancy == 2 { "one master and one replica in sync on another leaf" } else { "one master" }
        );
    } else {
        println!("!!! CHECK FAILED !!!");
        for c in &f.checks {
            println!("!!!   {c}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_have_the_length_asked_and_differ() {
        assert_eq!(pad(1, 1000).len(), 1000);
        assert_eq!(pad(1, 13).len(), 13);
        assert_ne!(pad(1, 64), pad(2, 64));
        assert!(pad(7, 100).bytes().all(|b| b.is_ascii_lowercase()));
    }
}
