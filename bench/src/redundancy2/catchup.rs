//! `canopy-catchup`: how fast a returning replica is brought back in sync, in MB/s, in a redundancy-2 cluster of one
//! pair. One run: the group-2 leaf is killed (its masters fail over to its pair), `--mb` MB of rows are loaded
//! through the master aggregator while it is down, the leaf is restarted, and the time until every replica is in
//! sync again is measured. Two modes: **catch-up** (the replica's log is a prefix of the master's: the missing
//! entries are shipped) and **reprovision** (`SNAPSHOT DATABASE` truncated the master's log after the load, so the
//! replica cannot continue it and is copied afresh: snapshot + catch-up). Prints the figures, with the per-partition
//! times the master aggregator logs; it measures, it asserts nothing.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use canopy_bench::program::{self, Bench};
use canopy_chaos::Cluster;
use canopy_chaos::health::{self, View};
use clap::Parser;
use mysql_async::prelude::Queryable;

const POLL: Duration = Duration::from_millis(20);
const WAIT_LIMIT: Duration = Duration::from_secs(600);
const ROWS_PER_INSERT: u64 = 100;
const LOADERS: u64 = 4;
const PARTITIONS: u32 = 4;

#[derive(Parser, Debug)]
#[command(name = "canopy-catchup", about = "Redundancy-2 replica catch-up and reprovision throughput (MB/s)")]
struct Args {
    /// MB of row data loaded while the replica's leaf is down.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    mb: u64,
    /// Bytes of the `pad` column of each row.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    row_bytes: u64,
    /// Run only these modes (catch-up, reprovision), comma-separated [default: both].
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[command(flatten)]
    flags: program::Flags,
}

struct Figures {
    mode: &'static str,
    loaded_bytes: u64,
    load: Duration,
    master_file_bytes: u64,
    in_sync: Duration,
    reprovisioned: usize,
    log_lines: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match program::run("canopy-catchup", run(&args)) {
        Some(()) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let bench = Bench::prepare(&args.flags)?;
    eprintln!("canopy-catchup: starting a redundancy-2 cluster of one pair");
    let mut cluster = bench.start_pairs(1).await?;
    let mut results = Vec::new();
    for mode in ["catch-up", "reprovision"] {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == mode) {
            continue;
        }
        results.push(measure(&mut cluster, args, mode).await?);
    }
    let description = cluster.describe();
    drop(cluster);

    println!("## canopy-catchup");
    println!();
    println!("{}", bench.facts.markdown());
    println!("- cluster: {description}; a database of {PARTITIONS} partitions, redundancy 2");
    println!(
        "- load: {} MB of rows (`pad` of {} bytes) in {ROWS_PER_INSERT}-row INSERTs from {LOADERS} connections while \
         leaf-2 is down",
        args.mb, args.row_bytes
    );
    println!();
    println!(
        "| mode | loaded MB | load MB/s (replica down) | master files MB | restart to all in sync (s) | MB/s (loaded MB / time) | copies reprovisioned |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mb = |b: u64| b as f64 / 1e6;
    for f in &results {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {} |",
            f.mode,
            mb(f.loaded_bytes),
            mb(f.loaded_bytes) / f.load.as_secs_f64(),
            mb(f.master_file_bytes),
            f.in_sync.as_secs_f64(),
            mb(f.loaded_bytes) / f.in_sync.as_secs_f64(),
            f.reprovisioned
        );
    }
    for f in &results {
        println!();
        println!("{}: the master aggregator's log after the restart:", f.mode);
        for line in &f.log_lines {
            println!("    {line}");
        }
    }
    Ok(())
}

async fn measure(cluster: &mut Cluster, args: &Args, mode: &'static str) -> anyhow::Result<Figures> {
    let db = format!("cu_{}", mode.replace('-', "_"));
    let opts = cluster.master_opts();
    let mut conn = cluster.connect().await?;
    conn.query_drop(format!("CREATE DATABASE {db} PARTITIONS {PARTITIONS}")).await?;
    conn.query_drop(format!("CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, pad TEXT NOT NULL)")).await?;
    health::wait_healthy(&opts, &db, PARTITIONS, WAIT_LIMIT, POLL).await?;

    eprintln!("canopy-catchup: {mode}: killing leaf-2");
    let (survivor, victim) = (0, 1);
    let victim_port = cluster.leaf_port(victim);
    cluster.kill(victim);
    wait_view(&mut conn, &db, "every master on leaf-1", |v| {
        v.leaf_state(victim_port) == Some("offline")
            && (0..PARTITIONS).all(|k| v.master(k).is_some_and(|m| m.port != victim_port))
    })
    .await?;

    eprintln!("canopy-catchup: {mode}: loading {} MB", args.mb);
    let rows = args.mb * 1_000_000 / args.row_bytes;
    let loading = Instant::now();
    let mut loaders = tokio::task::JoinSet::new();
    for loader in 0..LOADERS {
        let (opts, db, row_bytes) = (opts.clone(), db.clone(), args.row_bytes);
        loaders.spawn(async move {
            let mut conn = canopy_chaos::cluster::connect(opts).await?;
            let mut id = 1 + loader * ROWS_PER_INSERT;
            while id <= rows {
                let values: Vec<String> = (id..(id + ROWS_PER_INSERT).min(rows + 1))
                    .map(|i| format!("({i}, '{}')", pad(i, row_bytes)))
                    .collect();
                conn.query_drop(format!("INSERT INTO {db}.t VALUES {}", values.join(","))).await?;
                id += LOADERS * ROWS_PER_INSERT;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = loaders.join_next().await {
        done??;
    }
    let load = loading.elapsed();
    if mode == "reprovision" {
        conn.query_drop(format!("SNAPSHOT DATABASE {db}")).await?;
    }
    let master_file_bytes = partition_bytes(cluster, survivor, &db);

    eprintln!("canopy-catchup: {mode}: restarting leaf-2");
    let log_before = cluster.master_log().len();
    let started = Instant::now();
    cluster.restart(victim).await?;
    health::wait_healthy(&opts, &db, PARTITIONS, WAIT_LIMIT, POLL).await?;
    let in_sync = started.elapsed();
    let log = cluster.master_log();
    let after = log.get(log_before..).unwrap_or_default();
    let log_lines: Vec<String> = after
        .lines()
        .map(canopy_chaos::plain)
        .filter(|l| l.contains(&db) && (l.contains("in sync") || l.contains("afresh") || l.contains("promoted")))
        .collect();
    let reprovisioned = log_lines.iter().filter(|l| l.contains("afresh")).count();
    conn.query_drop(format!("DROP DATABASE {db}")).await?;
    Ok(Figures {
        mode,
        loaded_bytes: rows * args.row_bytes,
        load,
        master_file_bytes,
        in_sync,
        reprovisioned,
        log_lines,
    })
}

/// A row's pad: `row_bytes` letters that differ from row to row.
fn pad(id: u64, row_bytes: u64) -> String {
    let seed = (id % 26) as u8;
    (0..row_bytes).map(|i| (b'a' + ((seed as u64 + i) % 26) as u8) as char).collect()
}

/// The bytes of `db`'s partition files (with their WAL) on `leaf`.
fn partition_bytes(cluster: &Cluster, leaf: usize, db: &str) -> u64 {
    let dir = cluster.leaf_data_dir(leaf).join("leaf").join("partitions");
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{db}_")))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

async fn wait_view(
    conn: &mut mysql_async::Conn,
    db: &str,
    what: &str,
    done: impl Fn(&View) -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(view) = health::view(conn, db, Duration::from_secs(10)).await
            && done(&view)
        {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < WAIT_LIMIT, "{what}: not after {} s", WAIT_LIMIT.as_secs());
        tokio::time::sleep(POLL).await;
    }
}
