//! `canopy-bench`: loads the same data into one plain SQLite file and into a throw-away Canopy cluster started for
//! the run, measures bulk insert, prepared point selects and full-scan aggregates on both, and prints one table of
//! figures with the machine facts and the command line. It is a measuring tool, not a test: it asserts nothing
//! about speed, only cross-checks that both systems return the same answers.
//!
//! `canopy-bench lifecycle` (or `--only lifecycle`) runs the leaf lifecycle benchmark instead: failure detection,
//! recovery, DETACH LEAF throughput and a busy-machine check, on Canopy alone.
//!
//! Modules: `workloads` (Canopy over MySQL), `sqlite_baseline`, `data` (rows and figures shared by both), `report`
//! (printing), `lifecycle` (the lifecycle benchmark and its report); the cluster, the run's setting and the machine
//! facts come from the crate's library (`canopy_bench`).

mod data;
mod lifecycle;
mod report;
mod sqlite_baseline;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use canopy_bench::program::{self, Bench};
use clap::{Parser, ValueEnum};

use crate::report::{Figures, Setup};

#[derive(Parser, Debug)]
#[command(name = "canopy-bench", about = "Canopy against one SQLite file: bulk insert, point select, full scan")]
struct Args {
    /// `lifecycle`: leaf failure detection, recovery, DETACH LEAF throughput and a busy-machine check, instead of
    /// the SQLite comparison (same as `--only lifecycle`).
    #[arg(value_enum)]
    mode: Option<Mode>,
    /// Rows to load (ids 1..=rows) [default: 1000000; 500000 for lifecycle].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    rows: Option<u64>,
    /// Concurrent connections for the insert and point-select workloads.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    clients: u32,
    /// How long each system runs point selects.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_s: u64,
    /// Leaves in the Canopy cluster (plus one master aggregator).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    leaves: u16,
    /// Measure only this workload (the load always runs, since the others need the data).
    #[arg(long, value_enum)]
    only: Option<Only>,
    #[command(flatten)]
    flags: program::Flags,
    /// Lifecycle: trials of each failure-detection measurement.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    trials: u32,
    /// Lifecycle: keep a writer inserting rows through the master aggregator during DETACH LEAF.
    #[arg(long)]
    with_writer: bool,
    /// Lifecycle: seconds of the busy-machine check.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    busy_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Lifecycle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Insert,
    Point,
    Scan,
    Lifecycle,
}

const DEFAULT_ROWS: u64 = 1_000_000;
const DEFAULT_LIFECYCLE_ROWS: u64 = 500_000;

impl Args {
    fn lifecycle(&self) -> bool {
        self.mode == Some(Mode::Lifecycle) || self.only == Some(Only::Lifecycle)
    }

    fn rows(&self) -> u64 {
        let default = if self.lifecycle() { DEFAULT_LIFECYCLE_ROWS } else { DEFAULT_ROWS };
        self.rows.unwrap_or(default)
    }

    fn runs_point(&self) -> bool {
        matches!(self.only, None | Some(Only::Point))
    }

    fn runs_scan(&self) -> bool {
        matches!(self.only, None | Some(Only::Scan))
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_s)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match program::run("canopy-bench", run(&args)) {
        Some(()) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let bench = Bench::prepare(&args.flags)?;
    if args.lifecycle() {
        return run_lifecycle(args, &bench).await;
    }

    let sqlite = run_sqlite(args, bench.scratch.path().join("baseline.sqlite")).await?;

    progress(format!("starting Canopy: 1 master aggregator + {} leaves", args.leaves));
    let mut cluster = bench.spawn(args.leaves)?;
    cluster.form(usize::from(args.leaves), 1).await?;
    let canopy = run_canopy(args, &cluster.master_opts()).await?;
    let setup = Setup {
        rows: args.rows(),
        clients: args.clients,
        duration_s: args.duration_s,
        leaves: args.leaves,
        partitions: workloads::PARTITIONS,
        cluster: cluster.describe(),
    };
    progress("stopping Canopy");
    drop(cluster);

    report::print(&bench.facts, &setup, &sqlite, &canopy);
    Ok(())
}

/// The lifecycle benchmark: Canopy alone, its own report.
async fn run_lifecycle(args: &Args, bench: &Bench) -> anyhow::Result<()> {
    progress(format!("starting Canopy: 1 master aggregator + {} leaves", args.leaves));
    let mut cluster = bench.spawn(args.leaves)?;
    cluster.form(usize::from(args.leaves), 1).await?;
    let settings = lifecycle::Settings {
        rows: args.rows(),
        clients: args.clients,
        trials: args.trials,
        with_writer: args.with_writer,
        busy: Duration::from_secs(args.busy_s),
    };
    let results = lifecycle::run(&mut cluster, &settings).await?;
    let described = cluster.describe();
    progress("stopping Canopy");
    drop(cluster);
    lifecycle::print(&bench.facts, &settings, &described, &results);
    Ok(())
}

/// The SQLite side, on blocking threads so that the runtime (and Ctrl-C) stays responsive.
async fn run_sqlite(args: &Args, path: PathBuf) -> anyhow::Result<Figures> {
    let (rows, clients, duration) = (args.rows(), args.clients, args.duration());
    let (runs_point, runs_scan) = (args.runs_point(), args.runs_scan());
    tokio::task::spawn_blocking(move || {
        progress(format!("SQLite: loading {rows} rows"));
        let load = sqlite_baseline::load(&path, rows)?;
        let point = if runs_point {
            progress(format!("SQLite: point selects for {} s", duration.as_secs()));
            Some(sqlite_baseline::point_select(&path, rows, clients, duration)?)
        } else {
            None
        };
        let scan = if runs_scan {
            progress("SQLite: full scans");
            Some(sqlite_baseline::scan(&path)?)
        } else {
            None
        };
        Ok(Figures { load, point, scan })
    })
    .await
    .context("the SQLite phase panicked")?
}

async fn run_canopy(args: &Args, opts: &mysql_async::Opts) -> anyhow::Result<Figures> {
    workloads::create_schema(opts).await?;
    progress(format!("Canopy: loading {} rows from {} connections", args.rows(), args.clients));
    let load = workloads::load(opts, args.rows(), args.clients).await?;
    let point = if args.runs_point() {
        progress(format!("Canopy: point selects for {} s", args.duration_s));
        Some(workloads::point_select(opts, args.rows(), args.clients, args.duration()).await?)
    } else {
        None
    };
    let scan = if args.runs_scan() {
        progress("Canopy: full scans");
        Some(workloads::scan(opts).await?)
    } else {
        None
    };
    Ok(Figures { load, point, scan })
}

/// Progress goes to stderr so that stdout holds only the report.
fn progress(what: impl std::fmt::Display) {
    eprintln!("canopy-bench: {what}");
}
