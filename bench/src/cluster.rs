//! A throw-away Canopy cluster for one benchmark run: a master aggregator and N leaves, each a `canopy server`
//! process (started through `canopy-launch`) with its own data directory and free loopback ports, formed over MySQL
//! (`BOOTSTRAP AGGREGATOR`, `ADD LEAF`). Dropping the [`Cluster`] stops every node (SIGTERM, then SIGKILL after a
//! deadline), also on error or panic; each node also gets SIGTERM from the kernel when the benchmark dies
//! (`PR_SET_PDEATHSIG`), so nothing outlives a killed run. It does not remove data directories (the caller's scratch
//! directory does) and knows nothing about the workloads. For the lifecycle benchmark it can also signal, kill and
//! restart one leaf (same data directory and port; a restarted node appends to its log).

use std::path::Path;

use anyhow::Context;
use canopy_launch::{Lifetime, Node, NodeSpec, Stopped};
use mysql_async::prelude::Queryable;

pub const HOST: &str = "127.0.0.1";

/// The running nodes; `nodes[0]` is the master aggregator.
pub struct Cluster {
    nodes: Vec<(String, Node)>,
}

impl Cluster {
    /// Starts the master aggregator and `leaves` leaves under `dir`. It does not wait for them: see [`Cluster::form`].
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
        let mut cluster = Cluster { nodes: Vec::with_capacity(ports.len()) };
        for (i, port) in ports.into_iter().enumerate() {
            let name = if i == 0 { "master".to_string() } else { format!("leaf-{i}") };
            let spec = NodeSpec::new(dir.join(&name), HOST, port);
            // Pushed one by one, so that a failure part-way still stops the nodes already started (Drop).
            cluster.nodes.push((name, Node::start(binary, spec, Lifetime::TiedToParent)?));
        }
        Ok(cluster)
    }

    /// Waits until every node answers, then bootstraps the master aggregator and adds the leaves.
    pub async fn form(&mut self) -> anyhow::Result<()> {
        for (name, node) in &mut self.nodes {
            node.wait_ready().await.with_context(|| format!("{name} is not ready"))?;
        }
        let mut conn = mysql_async::Conn::new(self.master_opts()).await.context("cannot connect to the master")?;
        conn.query_drop(format!("BOOTSTRAP AGGREGATOR '{HOST}'")).await.context("BOOTSTRAP AGGREGATOR failed")?;
        for (name, leaf) in &self.nodes[1..] {
            conn.query_drop(format!("ADD LEAF root@'{HOST}':{}", leaf.port()))
                .await
                .with_context(|| format!("ADD LEAF for {name} (port {}) failed", leaf.port()))?;
        }
        conn.disconnect().await.context("cannot disconnect from the master")?;
        Ok(())
    }

    /// Client options for user root on the master aggregator.
    pub fn master_opts(&self) -> mysql_async::Opts {
        self.nodes[0].1.spec().client_opts()
    }

    /// Number of leaves; leaves are numbered `1..=leaves()` (0 is the master aggregator).
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
