//! What every benchmark program that runs a cluster does around its measurement, in one place: the flags naming the
//! canopy binary and the scratch directory ([`Flags`]), the run's setting ([`Bench`]: the binary found, a fresh
//! scratch directory, the machine facts gathered before anything runs, and the clusters started in that directory),
//! and the runtime that drives it ([`run`]: nodes spawned from the main thread, Ctrl-C stopping the run, an error
//! printed under the program's name). It measures nothing.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;

use crate::cluster::Cluster;
use crate::facts::Facts;
use crate::scratch::ScratchDir;

/// The flags every cluster benchmark takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Flags {
    /// The canopy binary [default: `canopy` next to this program, i.e. target/release/canopy].
    #[arg(long)]
    pub canopy: Option<PathBuf>,
    /// Where the scratch directory (node data, SQLite files) is created [default: the system temp dir]. It is
    /// removed at the end (`CANOPY_BENCH_KEEP=1` keeps it, with every node's `node.log`).
    #[arg(long)]
    pub scratch_in: Option<PathBuf>,
}

/// One run's setting. Drop the clusters it started before it (declare them after it): its scratch directory is
/// removed when it is dropped.
pub struct Bench {
    pub binary: PathBuf,
    pub scratch: ScratchDir,
    pub facts: Facts,
}

impl Bench {
    /// Finds the canopy binary, makes the scratch directory and gathers the machine facts (with the command line).
    pub fn prepare(flags: &Flags) -> anyhow::Result<Bench> {
        let binary = match &flags.canopy {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("cannot locate this program")?.with_file_name("canopy"),
        };
        let scratch = ScratchDir::create(flags.scratch_in.as_deref())?;
        let facts = Facts::gather(scratch.path());
        Ok(Bench { binary, scratch, facts })
    }

    /// Where the cluster's node directories go.
    pub fn cluster_dir(&self) -> PathBuf {
        self.scratch.path().join("cluster")
    }

    /// Spawns a master aggregator and `leaves` leaf nodes (see [`Cluster::spawn`]; form it with
    /// [`Cluster::form`]). Call it on the main thread (inside [`run`]).
    pub fn spawn(&self, leaves: u16) -> anyhow::Result<Cluster> {
        Cluster::spawn(&self.binary, leaves, &self.cluster_dir())
    }

    /// Starts and forms a redundancy-2 cluster of `pairs` pairs (`canopy_chaos::Cluster`, which also injects the
    /// faults). Call it on the main thread (inside [`run`]).
    pub async fn start_pairs(&self, pairs: usize) -> anyhow::Result<canopy_chaos::Cluster> {
        canopy_chaos::Cluster::start(
            &self.binary,
            &self.cluster_dir(),
            pairs,
            canopy_launch::Lifetime::TiedToParent,
            &[],
        )
        .await
    }
}

/// Runs `body` on a multi-threaded runtime until it ends or Ctrl-C; `None` (with the error printed as
/// `name: error`) if it failed or was interrupted.
///
/// `block_on` polls `body` on this (the main) thread for the whole run, so every node is spawned (and restarted) from
/// it: `PR_SET_PDEATHSIG` is tied to the spawning thread. On Ctrl-C the future is dropped, and with it the clusters
/// (nodes stopped) and the scratch directory (removed).
pub fn run<T>(name: &str, body: impl Future<Output = anyhow::Result<T>>) -> Option<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = body => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Blocking threads still running (an interrupted SQLite phase) must not delay the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(value) => Some(value),
        Err(e) => {
            eprintln!("{name}: {e:#}");
            None
        }
    }
}
