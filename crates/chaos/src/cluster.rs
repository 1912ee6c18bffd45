//! A redundancy-2 cluster of real `canopy server` processes on loopback (a master aggregator and `2 * pairs`
//! leaves, leaf `k` paired with leaf `k + pairs`), started through `canopy-launch` and formed over MySQL, with the
//! faults the nemesis injects into its leaves: SIGKILL, SIGSTOP/SIGCONT, a clean stop, a restart on the same data
//! directory and port. Dropping it kills every node. It never faults the master aggregator and decides nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use canopy_launch::{Lifetime, Node, NodeSpec, Stopped};
use mysql_async::prelude::Queryable;

pub const HOST: &str = "127.0.0.1";

/// Ports are taken from here up: `P` and `P + 10000` both stay below Linux's ephemeral range (32768 and up), so a
/// leaf restarted on its ports never finds one taken by an outgoing connection meanwhile.
const PORT_FIRST: u16 = 10000;
const PORT_SPREAD: u16 = 12000;

/// How long one SQL step of forming the cluster may take.
const FORM_STEP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    master: Node,
    leaves: Vec<Node>,
    pairs: usize,
    dir: PathBuf,
}

/// `count` usable ports (see [`PORT_FIRST`]), searched from a pid-dependent start so concurrent runs rarely meet.
fn ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let mut from = PORT_FIRST + (std::process::id() % 120) as u16 * (PORT_SPREAD / 120);
    let mut taken = Vec::with_capacity(count);
    while taken.len() < count {
        let port = canopy_launch::next_usable_port(HOST, from, &taken)
            .filter(|p| *p < PORT_FIRST + PORT_SPREAD)
            .or_else(|| canopy_launch::next_usable_port(HOST, PORT_FIRST, &taken))
            .filter(|p| *p < PORT_FIRST + PORT_SPREAD)
            .context("no free port pair (P and P+10000) below the ephemeral range")?;
        taken.push(port);
        from = port + 1;
    }
    Ok(taken)
}

impl Cluster {
    /// Starts and forms a redundancy-2 cluster of `pairs` pairs under `dir`. `lifetime` is the nodes' (see
    /// `canopy_launch::Lifetime`: `TiedToParent` needs every spawn, restarts included, from one long-lived thread).
    /// `env` goes to every node's process.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        pairs: usize,
        lifetime: Lifetime,
        env: &[(String, String)],
    ) -> anyhow::Result<Cluster> {
        anyhow::ensure!(pairs >= 1, "a redundancy-2 cluster needs at least one pair");
        anyhow::ensure!(binary.is_file(), "no canopy binary at {}", binary.display());
        let ports = ports(1 + 2 * pairs)?;
        let spec = |name: &str, port: u16| {
            let mut spec = NodeSpec::new(dir.join(name), HOST, port);
            spec.env = env.to_vec();
            spec
        };
        let master = Node::start(binary, spec("ma", ports[0]), lifetime)?;
        let mut cluster = Cluster { master, leaves: Vec::new(), pairs, dir: dir.to_path_buf() };
        for (i, port) in ports[1..].iter().enumerate() {
            cluster.leaves.push(Node::start(binary, spec(&format!("leaf-{}", i + 1), *port), lifetime)?);
        }
        cluster.master.wait_ready().await.context("the master aggregator is not ready")?;
        for (i, leaf) in cluster.leaves.iter_mut().enumerate() {
            leaf.wait_ready().await.with_context(|| format!("leaf {} is not ready", i + 1))?;
        }
        let mut conn = cluster.connect().await?;
        let mut steps = vec![format!("BOOTSTRAP AGGREGATOR '{HOST}'"), "SET GLOBAL redundancy_level = 2".to_string()];
        for (i, leaf) in cluster.leaves.iter().enumerate() {
            let group = if i < pairs { 1 } else { 2 };
            steps.push(format!("ADD LEAF root@'{HOST}':{} INTO GROUP {group}", leaf.port()));
        }
        for step in steps {
            tokio::time::timeout(FORM_STEP_TIMEOUT, conn.query_drop(&step))
                .await
                .with_context(|| format!("{step}: no answer"))?
                .with_context(|| format!("{step} failed"))?;
        }
        let _ = conn.disconnect().await;
        Ok(cluster)
    }

    /// A new connection to the master aggregator.
    pub async fn connect(&self) -> anyhow::Result<mysql_async::Conn> {
        connect(self.master_opts()).await
    }

    pub fn master_opts(&self) -> mysql_async::Opts {
        self.master.spec().client_opts()
    }

    /// Client options for leaf `leaf`'s own MySQL port (read-only inspection of its local copies).
    pub fn leaf_opts(&self, leaf: usize) -> mysql_async::Opts {
        self.leaves[leaf].spec().client_opts()
    }

    pub fn leaves(&self) -> usize {
        self.leaves.len()
    }

    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// The other leaf of `leaf`'s pair.
    pub fn pair_of(&self, leaf: usize) -> usize {
        (leaf + self.pairs) % (2 * self.pairs)
    }

    /// The availability group (1 or 2) of `leaf`.
    pub fn group_of(&self, leaf: usize) -> u8 {
        if leaf < self.pairs { 1 } else { 2 }
    }

    /// The MySQL port of `leaf`: its identity in SHOW LEAVES and DISTRIBUTED_PARTITIONS.
    pub fn leaf_port(&self, leaf: usize) -> u16 {
        self.leaves[leaf].port()
    }

    /// The index of the leaf listening on `port`.
    pub fn leaf_index(&self, port: u16) -> Option<usize> {
        self.leaves.iter().position(|l| l.port() == port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `leaf`'s data directory (its partition files are under `leaf/partitions/`).
    pub fn leaf_data_dir(&self, leaf: usize) -> &Path {
        self.leaves[leaf].data_dir()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, leaf: usize) {
        self.leaves[leaf].kill();
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing answers.
    pub fn freeze(&self, leaf: usize) -> anyhow::Result<()> {
        self.leaves[leaf].signal(libc::SIGSTOP)
    }

    /// SIGCONT after [`Cluster::freeze`].
    pub fn thaw(&self, leaf: usize) -> anyhow::Result<()> {
        self.leaves[leaf].signal(libc::SIGCONT)
    }

    /// SIGTERM and wait for a clean exit (SIGKILL after `canopy_launch::STOP_TIMEOUT`). Blocks this worker thread
    /// meanwhile, so the runtime must be multi-threaded.
    pub fn stop(&mut self, leaf: usize) -> Stopped {
        let node = &mut self.leaves[leaf];
        tokio::task::block_in_place(|| node.stop())
    }

    /// Starts `leaf` again on its data directory and port (it must not be running) and waits until it answers.
    pub async fn restart(&mut self, leaf: usize) -> anyhow::Result<()> {
        let node = &mut self.leaves[leaf];
        node.restart()?;
        node.wait_ready().await
    }

    /// Whether `leaf`'s process runs (a frozen one does).
    pub fn is_running(&mut self, leaf: usize) -> bool {
        self.leaves[leaf].is_running()
    }

    /// The master aggregator's log so far.
    pub fn master_log(&self) -> String {
        self.master.log()
    }

    pub fn leaf_log(&self, leaf: usize) -> String {
        self.leaves[leaf].log()
    }

    /// One line naming every node and its port.
    pub fn describe(&self) -> String {
        let leaves: Vec<String> = (0..self.leaves.len())
            .map(|i| format!("leaf-{} :{} (group {})", i + 1, self.leaf_port(i), self.group_of(i)))
            .collect();
        format!("master aggregator :{}, {}", self.master.port(), leaves.join(", "))
    }
}

/// A connection, bounded in time.
pub async fn connect(opts: mysql_async::Opts) -> anyhow::Result<mysql_async::Conn> {
    let conn = tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts))
        .await
        .context("connecting timed out")??;
    Ok(conn)
}
