//! A throw-away Canopy cluster for one benchmark run: a master aggregator and N leaf nodes, each a `canopy server`
//! process (started through `canopy-launch`) with its own data directory and free loopback ports, formed over MySQL
//! (`BOOTSTRAP AGGREGATOR`, `SET GLOBAL redundancy_level`, `ADD LEAF`). Nodes may be kept out of the cluster at first
//! and added later ([`Cluster::add_leaf`]), as a cluster grown before a rebalance. Dropping the [`Cluster`] stops
//! every node (SIGTERM, then SIGKILL after a deadline), also on error or panic; each node also gets SIGTERM from the
//! kernel when the benchmark dies (`PR_SET_PDEATHSIG`), so nothing outlives a killed run. It does not remove data
//! directories (the caller's scratch directory does) and knows nothing about the workloads. For the lifecycle
//! benchmark it can also signal, kill and restart one leaf (same data directory and port; a restarted node appends
//! to its log).
//!
//! The redundancy-2 benchmarks with faults run on `canopy_chaos::Cluster` instead (pairs, restarts on ports below the
//! ephemeral range); this one's redundancy 2 only puts leaves into alternating availability groups.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use canopy_launch::{Lifetime, Node, NodeSpec, Stopped};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

pub const HOST: &str = "127.0.0.1";

/// The running nodes; `nodes[0]` is the master aggregator.
pub struct Cluster {
    nodes: Vec<(String, Node)>,
    redundancy: u8,
}

impl Cluster {
    /// Starts the master aggregator and `leaves` leaf nodes under `dir`. It does not wait for them: see
    /// [`Cluster::form`].
    ///
    /// Call it from the thread that lives for the whole run: `PR_SET_PDEATHSIG` fires when the *thread* that spawned
    /// the child exits, so spawning from a runtime worker could kill nodes mid-run.
    pub fn spawn(binary: &Path, leaves: u16, dir: &Path) -> anyhow::Result<Cluster> {
        if !binary.is_file() {
            anyhow::bail!(
                "no canopy binary at {} (build it with `cargo build --release -p canopy`, or pass --canopy)",
                binary.display()
            );
        }
        let ports = canopy_launch::free_ports(HOST, usize::from(leaves) + 1)?;
        let mut cluster = Cluster { nodes: Vec::with_capacity(ports.len()), redundancy: 1 };
        for (i, port) in ports.into_iter().enumerate() {
            let name = if i == 0 { "master".to_string() } else { format!("leaf-{i}") };
            let spec = NodeSpec::new(dir.join(&name), HOST, port);
            // Pushed one by one, so that a failure part-way still stops the nodes already started (Drop).
            cluster.nodes.push((name, Node::start(binary, spec, Lifetime::TiedToParent)?));
        }
        Ok(cluster)
    }

    /// Waits until every node answers, then bootstraps the master aggregator with `redundancy_level = redundancy`
    /// and adds leaf nodes `1..=leaves` (the others stay out until [`Cluster::add_leaf`]).
    pub async fn form(&mut self, leaves: usize, redundancy: u8) -> anyhow::Result<()> {
        anyhow::ensure!(leaves <= self.leaves(), "{leaves} leaves asked of {} nodes", self.leaves());
        anyhow::ensure!(matches!(redundancy, 1 | 2), "redundancy {redundancy}: only 1 or 2");
        for (name, node) in &mut self.nodes {
            node.wait_ready().await.with_context(|| format!("{name} is not ready"))?;
        }
        let mut conn = self.connect().await?;
        conn.query_drop(format!("BOOTSTRAP AGGREGATOR '{HOST}'")).await.context("BOOTSTRAP AGGREGATOR failed")?;
        if redundancy != 1 {
            conn.query_drop(format!("SET GLOBAL redundancy_level = {redundancy}"))
                .await
                .context("SET GLOBAL redundancy_level failed")?;
        }
        self.redundancy = redundancy;
        for leaf in 1..=leaves {
            self.add_leaf_on(&mut conn, leaf).await?;
        }
        conn.disconnect().await.context("cannot disconnect from the master")?;
        Ok(())
    }

    /// `ADD LEAF` of leaf node `leaf` (started by [`Cluster::spawn`], left out by [`Cluster::form`]); in
    /// redundancy 2 into group 1 for odd numbers, 2 for even ones. Returns the statement's time.
    pub async fn add_leaf(&self, leaf: usize) -> anyhow::Result<Duration> {
        let mut conn = self.connect().await?;
        let took = self.add_leaf_on(&mut conn, leaf).await?;
        conn.disconnect().await.context("cannot disconnect from the master")?;
        Ok(took)
    }

    async fn add_leaf_on(&self, conn: &mut Conn, leaf: usize) -> anyhow::Result<Duration> {
        let (name, node) = &self.nodes[leaf];
        let group = match self.redundancy {
            1 => String::new(),
            _ => format!(" INTO GROUP {}", 2 - leaf % 2),
        };
        let t = Instant::now();
        conn.query_drop(format!("ADD LEAF root@'{HOST}':{}{group}", node.port()))
            .await
            .with_context(|| format!("ADD LEAF for {name} (port {}) failed", node.port()))?;
        Ok(t.elapsed())
    }

    /// Client options for user root on the master aggregator.
    pub fn master_opts(&self) -> mysql_async::Opts {
        self.nodes[0].1.spec().client_opts()
    }

    /// A new connection to the master aggregator.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        Conn::new(self.master_opts()).await.context("cannot connect to the master aggregator")
    }

    /// Number of leaf nodes (in the cluster or not yet); they are numbered `1..=leaves()` (0 is the master
    /// aggregator).
    pub fn leaves(&self) -> usize {
        self.nodes.len() - 1
    }

    /// The MySQL port of leaf `leaf` (its identity in SHOW LEAVES, DETACH LEAF...).
    pub fn leaf_port(&self, leaf: usize) -> u16 {
        self.nodes[leaf].1.port()
    }

    /// Client options for user root on leaf `leaf` itself.
    pub fn leaf_opts(&self, leaf: usize) -> mysql_async::Opts {
        self.nodes[leaf].1.spec().client_opts()
    }

    /// The bytes of each partition of `db` that leaf `leaf` serves (its `online` copies: masters; `page_count ×
    /// page_size` of the file, asked of the leaf itself), by ordinal.
    pub async fn partition_sizes(&self, leaf: usize, db: &str) -> anyhow::Result<Vec<(u32, u64)>> {
        let mut conn = Conn::new(self.leaf_opts(leaf)).await.context("cannot connect to the leaf")?;
        let rows: Vec<Row> = conn.query("SHOW DATABASES EXTENDED").await.context("SHOW DATABASES EXTENDED failed")?;
        let prefix = format!("{db}_");
        let mut ordinals = Vec::new();
        for row in &rows {
            let name = row.get_opt::<String, _>("Database").and_then(Result::ok).context("no Database column")?;
            // Only a serving copy answers a statement (a replica, pending or replicating one refuses). A node not
            // in the cluster yet answers a plain list, without State.
            let state = row.get_opt::<String, _>("State").and_then(Result::ok);
            if state.as_deref() != Some("online") {
                continue;
            }
            if let Some(k) = name.strip_prefix(&prefix).and_then(|k| k.parse::<u32>().ok()) {
                ordinals.push(k);
            }
        }
        let mut sizes = Vec::new();
        for k in ordinals {
            conn.query_drop(format!("USE {prefix}{k}"))
                .await
                .with_context(|| format!("USE {prefix}{k} on the leaf"))?;
            let bytes: Option<u64> = conn
                .query_first("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
                .await
                .with_context(|| format!("size of {prefix}{k}"))?;
            sizes.push((k, bytes.context("no size returned")?));
        }
        conn.disconnect().await.context("disconnect failed")?;
        Ok(sizes)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) to leaf `leaf`'s process.
    pub fn signal_leaf(&self, leaf: usize, signal: libc::c_int) -> anyhow::Result<()> {
        let (name, node) = &self.nodes[leaf];
        node.signal(signal).with_context(|| format!("cannot signal {name}"))
    }

    /// SIGKILLs leaf `leaf` and reaps it.
    pub fn kill_leaf(&mut self, leaf: usize) -> anyhow::Result<()> {
        self.nodes[leaf].1.kill();
        Ok(())
    }

    /// Starts leaf `leaf` again (after [`Cluster::kill_leaf`]) on its data directory and port; does not wait.
    /// Call it from the thread that called [`Cluster::spawn`] (see there).
    pub fn restart_leaf(&mut self, leaf: usize) -> anyhow::Result<()> {
        let (name, node) = &mut self.nodes[leaf];
        node.restart().with_context(|| format!("cannot restart {name}"))
    }

    /// The master aggregator's log so far (empty when unreadable).
    pub fn master_log(&self) -> String {
        self.nodes[0].1.log()
    }

    /// One line per node, for the report.
    pub fn describe(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|(name, n)| format!("{name} :{}", n.port())).collect();
        nodes.join(", ")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (name, node) in &mut self.nodes {
            if let Stopped::Killed | Stopped::Stuck = node.stop() {
                eprintln!("warning: {name} did not stop after SIGTERM; it was killed");
            }
        }
    }
}
