//! `canopy-chaos`: the long chaos run of redundancy 2 (the test suite runs a short one, `crates/canopy/tests/chaos.rs`;
//! both are `canopy-chaos`'s one implementation). Writers insert unique ids while a nemesis kills, freezes, stops and
//! restarts random leaves, one at a time; afterwards every acknowledged id must be present exactly once, no
//! unattempted id present, and both copies of every partition equal. Prints the figures (episodes, acknowledged,
//! failed and "maybe" writes, writes/s, detection, failover and recovery times) and every violation; exits 1 on a
//! violation, 2 when the run could not be set up.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canopy_bench::program::{self, Bench};
use canopy_chaos::Settings;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "canopy-chaos", about = "Redundancy-2 chaos: writers, a nemesis of process faults, then the checks")]
struct Args {
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    episodes: u32,
    /// Pairs of leaves (leaves = 2 * pairs).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=8))]
    pairs: u64,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    writers: u32,
    /// Partitions of the database [default: 4 per pair].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    partitions: Option<u32>,
    /// The nemesis's random seed [default: from the clock; printed].
    #[arg(long)]
    seed: Option<u64>,
    /// `leaf_failure_timeout_ms` during the run.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u64).range(200..=60_000))]
    failure_timeout_ms: u64,
    /// Stop starting episodes after this many seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    time_max_s: u64,
    #[command(flatten)]
    flags: program::Flags,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match program::run("canopy-chaos", run(&args)) {
        Some(true) => ExitCode::SUCCESS,
        Some(false) => ExitCode::from(1),
        None => ExitCode::from(2),
    }
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let bench = Bench::prepare(&args.flags)?;
    let seed =
        args.seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    let pairs = args.pairs as usize;
    let settings = Settings {
        episodes: args.episodes,
        nemesis_time_max: Duration::from_secs(args.time_max_s),
        writers: args.writers,
        partitions: args.partitions.unwrap_or(4 * pairs as u32),
        seed,
        failure_timeout: Duration::from_millis(args.failure_timeout_ms),
        deadline: Duration::from_secs(90),
        statement_limit: Duration::from_secs(60),
        liveness_acks: 100,
        liveness_time: Duration::from_secs(30),
    };
    eprintln!("canopy-chaos: starting a redundancy-2 cluster of {pairs} pairs, seed {seed}");
    let mut cluster = bench.start_pairs(pairs).await?;
    let report = canopy_chaos::run(&mut cluster, &settings).await?;
    drop(cluster);
    println!("{}", bench.facts.markdown());
    println!();
    println!("{report}");
    Ok(report.passed())
}
