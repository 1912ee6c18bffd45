//! The leaf lifecycle benchmark (`canopy-bench lifecycle`): on a throw-away cluster with a loaded database it
//! measures how long the master aggregator takes to declare a killed (SIGKILL) or frozen (SIGSTOP) leaf `offline`,
//! how long a leaf takes to come back (SIGCONT, or a restart of the killed process) until its partitions serve
//! again, how fast `DETACH LEAF` moves a leaf's partitions away (optionally under a concurrent writer), and whether
//! a busy machine (insert workload plus CPU hogs) ever makes a healthy leaf look offline. All timing is observed
//! from outside through the master aggregator, polling `SHOW LEAVES` every [`POLL`]. It measures and prints; the
//! only checks are row counts, printed loudly as MISMATCH when they disagree.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};
use tokio::task::JoinSet;

use crate::report::Facts;
use crate::workloads;
use canopy_bench::cluster::{Cluster, HOST};

/// Partitions of the lifecycle database (2 per leaf with the default 4 leaves).
pub const PARTITIONS: u32 = 8;
/// How often SHOW LEAVES (or the row count) is polled while waiting for a state.
const POLL: Duration = Duration::from_millis(10);
/// The longest any single wait (a state, a count) may take before the run fails.
const WAIT_LIMIT: Duration = Duration::from_secs(90);
const COUNT: &str = "SELECT COUNT(*) FROM bench.t";
/// What the master aggregator logs when its failure detector marks a leaf offline (`crates/server/src/master/heartbeat.rs`).
const OFFLINE_LOG_LINE: &str = "marking it offline";
/// Rows per INSERT of the busy-machine insert workload.
const BUSY_BATCH: u64 = 1000;

/// The run's settings.
pub struct Settings {
    pub rows: u64,
    pub clients: u32,
    pub trials: u32,
    pub with_writer: bool,
    pub busy: Duration,
}

/// Everything measured.
pub struct Results {
    killed_detect: Vec<Duration>,
    frozen_detect: Vec<Duration>,
    frozen_recover: Vec<Duration>,
    frozen_serving: Vec<Duration>,
    restart_online: Vec<Duration>,
    restart_serving: Vec<Duration>,
    load: Duration,
    moved: Move,
    busy: Busy,
    mismatches: Vec<String>,
}

struct Move {
    leaf_port: u16,
    /// (partition, bytes) of the partitions the detached leaf held.
    partitions: Vec<(String, u64)>,
    elapsed: Duration,
    steps: Vec<Step>,
    attach: Duration,
    rows_before: i64,
    rows_after: i64,
    writer: Option<Writer>,
}

struct Step {
    action: String,
    ordinal: i64,
    status: String,
    running_ms: Option<i64>,
}

#[derive(Default)]
struct Writer {
    acked: u64,
    failed: u64,
    first_error: Option<String>,
}

struct Busy {
    elapsed: Duration,
    rows: u64,
    polls: u64,
    hogs: usize,
    false_offline: u64,
    /// Offline verdicts in the master aggregator's log during the check (catches ones too brief for the polls).
    logged_offline: usize,
    /// Every (port, state) other than `online` seen, in order, deduplicated.
    seen: Vec<String>,
    max_poll: Duration,
}

/// Loads the data and runs every measurement. Call it on the thread that spawned `cluster` (leaves are restarted
/// from here; see [`Cluster::spawn`]).
pub async fn run(cluster: &mut Cluster, settings: &Settings) -> anyhow::Result<Results> {
    let opts = cluster.master_opts();
    workloads::create_schema_with(&opts, PARTITIONS).await?;
    progress(format!("loading {} rows from {} connections", settings.rows, settings.clients));
    let load = workloads::load(&opts, settings.rows, settings.clients).await?.elapsed;
    let mut conn = workloads::connect(&opts).await?;
    let mut expected = i64::try_from(settings.rows).context("--rows is too large")?;
    let mut mismatches = Vec::new();
    let leaves = cluster.leaves();

    let (mut killed_detect, mut restart_online, mut restart_serving) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 0..settings.trials as usize {
        let leaf = 1 + trial % leaves;
        let port = cluster.leaf_port(leaf);
        wait_all_online(&mut conn).await?;
        progress(format!("trial {}/{}: SIGKILL leaf :{port}", trial + 1, settings.trials));
        let t = Instant::now();
        cluster.kill_leaf(leaf)?;
        killed_detect.push(wait_state(&mut conn, port, "offline", t).await?);
        let t = Instant::now();
        cluster.restart_leaf(leaf)?;
        restart_online.push(wait_state(&mut conn, port, "online", t).await?);
        let (serving, count) = wait_count(&mut conn, t).await?;
        restart_serving.push(serving);
        check_count(&mut mismatches, &format!("after restarting leaf :{port}"), expected, count);
    }

    let (mut frozen_detect, mut frozen_recover, mut frozen_serving) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 0..settings.trials as usize {
        let leaf = 1 + trial % leaves;
        let port = cluster.leaf_port(leaf);
        wait_all_online(&mut conn).await?;
        progress(format!("trial {}/{}: SIGSTOP leaf :{port}", trial + 1, settings.trials));
        let t = Instant::now();
        cluster.signal_leaf(leaf, libc::SIGSTOP)?;
        let detected = wait_state(&mut conn, port, "offline", t).await;
        let t = Instant::now();
        // Continued whatever happened, so that an error does not leave it frozen.
        cluster.signal_leaf(leaf, libc::SIGCONT)?;
        frozen_detect.push(detected?);
        frozen_recover.push(wait_state(&mut conn, port, "online", t).await?);
        let (serving, count) = wait_count(&mut conn, t).await?;
        frozen_serving.push(serving);
        check_count(&mut mismatches, &format!("after continuing leaf :{port}"), expected, count);
    }

    wait_all_online(&mut conn).await?;
    let next_id = Arc::new(AtomicU64::new(settings.rows + 1));
    let moved = move_leaf(cluster, &mut conn, &next_id, settings.with_writer).await?;
    expected = moved.rows_after;
    let writer_acked = moved.writer.as_ref().map_or(0, |w| w.acked);
    check_count(
        &mut mismatches,
        "after DETACH LEAF (rows before + writer's acknowledged rows)",
        moved.rows_before + i64::try_from(writer_acked).context("writer count out of range")?,
        moved.rows_after,
    );
    let (_, count) = wait_count(&mut conn, Instant::now()).await?;
    check_count(&mut mismatches, "after ATTACH LEAF", expected, count);

    wait_all_online(&mut conn).await?;
    let logged_before = cluster.master_log().matches(OFFLINE_LOG_LINE).count();
    let mut busy = busy_machine(&opts, &mut conn, settings, &next_id).await?;
    busy.logged_offline = cluster.master_log().matches(OFFLINE_LOG_LINE).count().saturating_sub(logged_before);
    conn.disconnect().await.context("disconnect failed")?;
    Ok(Results {
        killed_detect,
        frozen_detect,
        frozen_recover,
        frozen_serving,
        restart_online,
        restart_serving,
        load,
        moved,
        busy,
        mismatches,
    })
}

/// DETACH LEAF of leaf 1 (measuring its partitions' bytes first), optionally under a one-row-INSERT writer, then
/// SHOW REBALANCE STATUS and ATTACH LEAF.
async fn move_leaf(
    cluster: &Cluster,
    conn: &mut Conn,
    next_id: &Arc<AtomicU64>,
    with_writer: bool,
) -> anyhow::Result<Move> {
    let leaf = 1;
    let port = cluster.leaf_port(leaf);
    let partitions: Vec<(String, u64)> = cluster
        .partition_sizes(leaf, "bench")
        .await?
        .into_iter()
        .map(|(k, bytes)| (format!("bench_{k}"), bytes))
        .collect();
    let rows_before = count(conn).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = if with_writer {
        let writer_conn = workloads::connect(&cluster.master_opts()).await?;
        Some(tokio::spawn(write_until(writer_conn, next_id.clone(), stop.clone())))
    } else {
        None
    };
    let bytes: u64 = partitions.iter().map(|(_, b)| b).sum();
    progress(format!("DETACH LEAF :{port} ({} partitions, {bytes} bytes)", partitions.len()));
    let t = Instant::now();
    let detached = conn.query_drop(format!("DETACH LEAF '{HOST}':{port}")).await;
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let writer = match writer {
        Some(task) => Some(task.await.context("the writer panicked")??),
        None => None,
    };
    detached.with_context(|| format!("DETACH LEAF of :{port} failed"))?;
    let status: Vec<Row> =
        conn.query("SHOW REBALANCE STATUS ON bench").await.context("SHOW REBALANCE STATUS failed")?;
    let steps = status.iter().map(step_of).collect::<anyhow::Result<Vec<Step>>>()?;
    let rows_after = count(conn).await?;
    progress(format!("ATTACH LEAF :{port}"));
    let t = Instant::now();
    conn.query_drop(format!("ATTACH LEAF '{HOST}':{port}")).await.with_context(|| format!("ATTACH LEAF :{port}"))?;
    let attach = t.elapsed();
    Ok(Move { leaf_port: port, partitions, elapsed, steps, attach, rows_before, rows_after, writer })
}

/// One-row INSERTs of fresh ids until `stop`; counts acknowledged and failed ones (a failure does not stop it).
async fn write_until(mut conn: Conn, next_id: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> anyhow::Result<Writer> {
    let mut writer = Writer::default();
    let mut sql = String::new();
    while !stop.load(Ordering::Relaxed) {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        workloads::insert_sql(&mut sql, id..=id);
        match conn.query_drop(&sql).await {
            Ok(()) => writer.acked += 1,
            Err(e) => {
                writer.failed += 1;
                writer.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    conn.disconnect().await.context("writer disconnect failed")?;
    Ok(writer)
}

/// For ~`settings.busy`: `settings.clients` connections inserting [`BUSY_BATCH`]-row batches of fresh ids and one
/// spinning thread per core, while SHOW LEAVES is polled every [`POLL`]; counts online → not-online transitions.
async fn busy_machine(
    opts: &Opts,
    conn: &mut Conn,
    settings: &Settings,
    next_id: &Arc<AtomicU64>,
) -> anyhow::Result<Busy> {
    let hogs = std::thread::available_parallelism().map_or(2, |n| n.get());
    progress(format!(
        "busy machine: {} s of inserts from {} connections + {hogs} spinning threads, polling SHOW LEAVES",
        settings.busy.as_secs(),
        settings.clients
    ));
    let mut conns = Vec::new();
    for _ in 0..settings.clients {
        conns.push(workloads::connect(opts).await?);
    }
    // Dropped on every exit from this function, which stops the hogs and the inserters.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    for _ in 0..hogs {
        let stop = stop.0.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..100_000 {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                }
            }
        });
    }
    let mut inserters = JoinSet::new();
    for mut c in conns {
        let (stop, next_id) = (stop.0.clone(), next_id.clone());
        inserters.spawn(async move {
            let (mut sql, mut rows) = (String::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let first = next_id.fetch_add(BUSY_BATCH, Ordering::Relaxed);
                workloads::insert_sql(&mut sql, first..=first + BUSY_BATCH - 1);
                c.query_drop(&sql).await.context("busy-machine INSERT failed")?;
                rows += BUSY_BATCH;
            }
            c.disconnect().await.context("disconnect failed")?;
            anyhow::Ok(rows)
        });
    }
    let started = Instant::now();
    let mut online: std::collections::HashMap<u16, bool> = std::collections::HashMap::new();
    let (mut polls, mut false_offline, mut seen, mut max_poll) = (0, 0, Vec::new(), Duration::ZERO);
    while started.elapsed() < settings.busy {
        let t = Instant::now();
        let states = leaf_states(conn).await?;
        max_poll = max_poll.max(t.elapsed());
        polls += 1;
        for (port, state) in states {
            let is_online = state == "online";
            let was_online = online.insert(port, is_online).unwrap_or(true);
            if was_online && !is_online {
                false_offline += 1;
            }
            let what = format!(":{port} {state}");
            if !is_online && seen.last() != Some(&what) {
                seen.push(what);
            }
        }
        tokio::time::sleep(POLL).await;
    }
    stop.0.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut rows = 0;
    while let Some(joined) = inserters.join_next().await {
        rows += joined.context("an inserter panicked")??;
    }
    Ok(Busy { elapsed, rows, polls, hogs, false_offline, logged_offline: 0, seen, max_poll })
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// (Port, State) of every leaf in SHOW LEAVES.
async fn leaf_states(conn: &mut Conn) -> anyhow::Result<Vec<(u16, String)>> {
    let rows: Vec<Row> = conn.query("SHOW LEAVES").await.context("SHOW LEAVES failed")?;
    rows.iter()
        .map(|r| {
            let port = r.get_opt::<u16, _>("Port").and_then(Result::ok).context("SHOW LEAVES: no Port")?;
            let state = r.get_opt::<String, _>("State").and_then(Result::ok).context("SHOW LEAVES: no State")?;
            Ok((port, state))
        })
        .collect()
}

/// Polls SHOW LEAVES until the leaf on `port` shows `state`; the time since `since`.
async fn wait_state(conn: &mut Conn, port: u16, state: &str, since: Instant) -> anyhow::Result<Duration> {
    loop {
        let states = leaf_states(conn).await?;
        if states.iter().any(|(p, s)| *p == port && s == state) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > WAIT_LIMIT {
            anyhow::bail!("leaf :{port} did not become {state} within {}s: {states:?}", WAIT_LIMIT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every leaf is `online`.
async fn wait_all_online(conn: &mut Conn) -> anyhow::Result<()> {
    let since = Instant::now();
    loop {
        let states = leaf_states(conn).await?;
        if states.iter().all(|(_, s)| s == "online") {
            return Ok(());
        }
        if since.elapsed() > WAIT_LIMIT {
            anyhow::bail!("not every leaf came online within {}s: {states:?}", WAIT_LIMIT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `SELECT COUNT(*)` until it succeeds; the time since `since` and the count.
async fn wait_count(conn: &mut Conn, since: Instant) -> anyhow::Result<(Duration, i64)> {
    loop {
        match conn.query_first::<i64, _>(COUNT).await {
            Ok(Some(n)) => return Ok((since.elapsed(), n)),
            Ok(None) => anyhow::bail!("COUNT(*) returned no row"),
            // The leaf's partitions are not served yet: the server answers with an error; try again.
            Err(mysql_async::Error::Server(_)) if since.elapsed() < WAIT_LIMIT => tokio::time::sleep(POLL).await,
            Err(e) => return Err(e).context("COUNT(*) did not succeed"),
        }
    }
}

async fn count(conn: &mut Conn) -> anyhow::Result<i64> {
    conn.query_first::<i64, _>(COUNT).await.context("COUNT(*) failed")?.context("COUNT(*) returned no row")
}

fn step_of(row: &Row) -> anyhow::Result<Step> {
    let text = |name: &str| -> anyhow::Result<String> {
        row.get_opt::<String, _>(name).and_then(Result::ok).with_context(|| format!("REBALANCE STATUS: no {name}"))
    };
    Ok(Step {
        action: text("Action")?,
        ordinal: row.get_opt::<i64, _>("Ordinal").and_then(Result::ok).context("REBALANCE STATUS: no Ordinal")?,
        status: text("Status")?,
        running_ms: row.get_opt::<Option<i64>, _>("Running_Time").and_then(Result::ok).flatten(),
    })
}

fn check_count(mismatches: &mut Vec<String>, when: &str, expected: i64, got: i64) {
    if expected != got {
        let m = format!("{when}: COUNT(*) = {got}, expected {expected}");
        eprintln!("canopy-bench: !!! MISMATCH {m}");
        mismatches.push(m);
    }
}

fn progress(what: impl std::fmt::Display) {
    eprintln!("canopy-bench: lifecycle: {what}");
}

/// Prints the report to stdout.
pub fn print(facts: &Facts, settings: &Settings, cluster: &str, r: &Results) {
    println!();
    println!("## canopy-bench lifecycle, {}", facts.date_utc);
    println!();
    println!("{}", facts.markdown());
    println!("- Canopy: 1 master aggregator + leaves on this machine ({cluster}), database `bench` with {PARTITIONS}");
    println!(
        "  partitions, {} rows loaded in {:.1} s; SHOW LEAVES polled every {} ms through the master aggregator",
        settings.rows,
        r.load.as_secs_f64(),
        POLL.as_millis()
    );
    println!();
    println!("| measurement (ms) | trials | min | median | max |");
    println!("|---|---|---|---|---|");
    stat_row("detection, killed leaf (SIGKILL → offline)", &r.killed_detect);
    stat_row("recovery, killed leaf restarted (spawn → online)", &r.restart_online);
    stat_row("recovery, killed leaf restarted (spawn → COUNT(*) served)", &r.restart_serving);
    stat_row("detection, frozen leaf (SIGSTOP → offline)", &r.frozen_detect);
    stat_row("recovery, frozen leaf (SIGCONT → online)", &r.frozen_recover);
    stat_row("recovery, frozen leaf (SIGCONT → COUNT(*) served)", &r.frozen_serving);
    println!();

    let m = &r.moved;
    let bytes: u64 = m.partitions.iter().map(|(_, b)| b).sum();
    let mb = bytes as f64 / 1e6;
    println!("| DETACH LEAF :{} | figure |", m.leaf_port);
    println!("|---|---|");
    let names: Vec<&str> = m.partitions.iter().map(|(n, _)| n.as_str()).collect();
    println!("| partitions moved | {} ({}) |", m.partitions.len(), names.join(", "));
    println!("| bytes moved (page_count × page_size) | {mb:.1} MB |");
    println!("| elapsed | {:.2} s |", m.elapsed.as_secs_f64());
    println!("| throughput | {:.1} MB/s |", mb / m.elapsed.as_secs_f64());
    match &m.writer {
        Some(w) => {
            let per_s = w.acked as f64 / m.elapsed.as_secs_f64();
            println!(
                "| concurrent writer (one-row INSERTs) | {} acknowledged ({per_s:.0}/s), {} failed |",
                w.acked, w.failed
            );
        }
        None => println!("| concurrent writer | none (`--with-writer` adds one) |"),
    }
    println!("| rows before → after | {} → {} |", m.rows_before, m.rows_after);
    println!("| ATTACH LEAF back (empty leaf) | {:.0} ms |", m.attach.as_secs_f64() * 1e3);
    if let Some(e) = m.writer.as_ref().and_then(|w| w.first_error.as_ref()) {
        println!();
        println!("First writer error: {e}");
    }
    println!();
    println!("| step (SHOW REBALANCE STATUS) | ordinal | status | Running_Time (ms) |");
    println!("|---|---|---|---|");
    for s in &m.steps {
        let ms = s.running_ms.map_or_else(|| "-".to_string(), |ms| ms.to_string());
        println!("| {} | {} | {} | {ms} |", s.action, s.ordinal, s.status);
    }
    println!();

    let b = &r.busy;
    println!(
        "Busy machine: {:.1} s of {}-row INSERTs from {} connections ({} rows, {:.0} rows/s) plus {} spinning threads;",
        b.elapsed.as_secs_f64(),
        BUSY_BATCH,
        settings.clients,
        b.rows,
        b.rows as f64 / b.elapsed.as_secs_f64(),
        b.hogs
    );
    println!(
        "**false offline events: {}** (SHOW LEAVES, polled {} times, slowest poll {:.0} ms, saw {}; the master",
        b.false_offline.max(b.logged_offline as u64),
        b.polls,
        b.max_poll.as_secs_f64() * 1e3,
        b.false_offline
    );
    println!("aggregator's log has {} \"{OFFLINE_LOG_LINE}\" lines from the check)", b.logged_offline);
    if !b.seen.is_empty() {
        println!("States other than online seen: {}", b.seen.join(", "));
    }
    println!();
    if r.mismatches.is_empty() {
        println!("- check: every COUNT(*) after a recovery or move equals the rows expected");
    } else {
        println!("!!! MISMATCH in row counts !!!");
        for m in &r.mismatches {
            println!("!!!   {m}");
        }
    }
}

fn stat_row(name: &str, samples: &[Duration]) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let (Some(min), Some(max)) = (ms.first(), ms.last()) else {
        println!("| {name} | 0 | - | - | - |");
        return;
    };
    let mid = ms.len() / 2;
    let median = if ms.len() % 2 == 1 { ms[mid] } else { (ms[mid - 1] + ms[mid]) / 2.0 };
    println!("| {name} | {} | {min:.0} | {median:.0} | {max:.0} |", ms.len());
}
