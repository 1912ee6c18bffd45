//! A throw-away Canopy cluster for one benchmark run: a master aggregator and N leaves, each a `canopy server`
//! process with its own data directory and free loopback ports, formed over MySQL (`BOOTSTRAP AGGREGATOR`, `ADD
//! LEAF`). Dropping the [`Cluster`] stops every node (SIGTERM, then SIGKILL after a deadline), also on error or
//! panic; each node also gets SIGKILL from the kernel when the benchmark dies (`PR_SET_PDEATHSIG`), so nothing
//! outlives a killed run. It does not remove data directories (the caller's scratch directory does) and knows
//! nothing about the workloads. For the lifecycle benchmark it can also signal, kill and restart one leaf (same data
//! directory and port; a restarted node appends to its log).

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::prelude::Queryable;

pub const HOST: &str = "127.0.0.1";
/// The server's RPC port is its MySQL port plus this (`canopy server --help`).
const RPC_PORT_OFFSET: u16 = 10000;
/// Where the search for free ports starts; offset by our pid so that concurrent runs rarely race for one port.
const PORT_SEARCH_FROM: u16 = 30000;
const PORT_SEARCH_SPREAD: u16 = 20000;
/// How long a node may take from spawn to answering `SELECT 1`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long nodes may take to exit after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The node's stdout and stderr, inside its data directory.
const LOG_FILE: &str = "node.log";

/// The running nodes; `nodes[0]` is the master aggregator.
pub struct Cluster {
    binary: PathBuf,
    nodes: Vec<Node>,
}

struct Node {
    name: String,
    port: u16,
    data_dir: PathBuf,
    child: Child,
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
        let ports = pick_ports(usize::from(leaves) + 1)?;
        let mut cluster = Cluster { binary: binary.to_path_buf(), nodes: Vec::with_capacity(ports.len()) };
        for (i, port) in ports.into_iter().enumerate() {
            let name = if i == 0 { "master".to_string() } else { format!("leaf-{i}") };
            let data_dir = dir.join(&name);
            // Pushed one by one, so that a failure part-way still stops the nodes already started (Drop).
            let child = spawn_node(binary, &data_dir, port)?;
            cluster.nodes.push(Node { name, port, data_dir, child });
        }
        Ok(cluster)
    }

    /// Waits until every node answers, then bootstraps the master aggregator and adds the leaves.
    pub async fn form(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.wait_ready().await?;
        }
        let mut conn = mysql_async::Conn::new(self.master_opts()).await.context("cannot connect to the master")?;
        conn.query_drop(format!("BOOTSTRAP AGGREGATOR '{HOST}'")).await.context("BOOTSTRAP AGGREGATOR failed")?;
        for leaf in &self.nodes[1..] {
            conn.query_drop(format!("ADD LEAF root@'{HOST}':{}", leaf.port))
                .await
                .with_context(|| format!("ADD LEAF for {} (port {}) failed", leaf.name, leaf.port))?;
        }
        conn.disconnect().await.context("cannot disconnect from the master")?;
        Ok(())
    }

    /// Client options for user root on the master aggregator.
    pub fn master_opts(&self) -> mysql_async::Opts {
        opts(self.nodes[0].port)
    }

    /// Number of leaves; leaves are numbered `1..=leaves()` (0 is the master aggregator).
    pub fn leaves(&self) -> usize {
        self.nodes.len() - 1
    }

    /// The MySQL port of leaf `leaf` (its identity in SHOW LEAVES, DETACH LEAF...).
    pub fn leaf_port(&self, leaf: usize) -> u16 {
        self.nodes[leaf].port
    }

    /// Client options for user root on leaf `leaf` itself.
    pub fn leaf_opts(&self, leaf: usize) -> mysql_async::Opts {
        opts(self.nodes[leaf].port)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) to leaf `leaf`'s process.
    pub fn signal_leaf(&self, leaf: usize, signal: libc::c_int) -> anyhow::Result<()> {
        let node = &self.nodes[leaf];
        // SAFETY: kill(2) has no memory-safety preconditions; the child is unreaped, so the pid is ours.
        if unsafe { libc::kill(node.child.id() as libc::pid_t, signal) } != 0 {
            anyhow::bail!("cannot signal {}: {}", node.name, std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGKILLs leaf `leaf` and reaps it.
    pub fn kill_leaf(&mut self, leaf: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[leaf];
        node.child.kill().with_context(|| format!("cannot kill {}", node.name))?;
        node.child.wait().with_context(|| format!("cannot reap {}", node.name))?;
        Ok(())
    }

    /// Starts leaf `leaf` again (after [`Cluster::kill_leaf`]) on its data directory and port; does not wait.
    /// Call it from the thread that called [`Cluster::spawn`] (see there).
    pub fn restart_leaf(&mut self, leaf: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[leaf];
        if let Ok(None) = node.child.try_wait() {
            anyhow::bail!("{} is still running", node.name);
        }
        node.child = spawn_node(&self.binary, &node.data_dir, node.port)?;
        Ok(())
    }

    /// The master aggregator's log so far (empty when unreadable).
    pub fn master_log(&self) -> String {
        std::fs::read_to_string(self.nodes[0].data_dir.join(LOG_FILE)).unwrap_or_default()
    }

    /// One line per node, for the report.
    pub fn describe(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("{} :{}", n.name, n.port)).collect();
        nodes.join(", ")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Ok(None) = node.child.try_wait() {
                // SAFETY: kill(2) has no memory-safety preconditions; the child is unreaped, so the pid is ours.
                unsafe { libc::kill(node.child.id() as libc::pid_t, libc::SIGTERM) };
                // A leaf frozen by the lifecycle benchmark (SIGSTOP) would not act on SIGTERM until continued.
                // SAFETY: as above.
                unsafe { libc::kill(node.child.id() as libc::pid_t, libc::SIGCONT) };
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for node in &mut self.nodes {
            while matches!(node.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL_INTERVAL);
            }
            if let Ok(None) = node.child.try_wait() {
                eprintln!("warning: {} did not stop within {}s; killing it", node.name, STOP_TIMEOUT.as_secs());
                let _ = node.child.kill();
                let _ = node.child.wait();
            }
        }
    }
}

impl Node {
    /// Polls `SELECT 1` until it answers, the node exits, or [`READY_TIMEOUT`] passes.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!("{} exited ({status}) before it was ready{}", self.name, self.log_tail());
            }
            let attempt = tokio::time::timeout(Duration::from_secs(5), select_one(opts(self.port))).await;
            let last_error = match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connection attempt timed out".to_string(),
            };
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} (port {}) did not answer within {}s (last error: {last_error}){}",
                    self.name,
                    self.port,
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The end of the node's log, to follow an error message.
    fn log_tail(&self) -> String {
        let path = self.data_dir.join(LOG_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else { return String::new() };
        let lines: Vec<&str> = text.lines().collect();
        format!("\nlast lines of {}:\n  {}", path.display(), lines[lines.len().saturating_sub(10)..].join("\n  "))
    }
}

fn opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname(HOST)
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into()
}

async fn select_one(opts: mysql_async::Opts) -> Result<(), mysql_async::Error> {
    let mut conn = mysql_async::Conn::new(opts).await?;
    let one: Option<i64> = conn.query_first("SELECT 1").await?;
    conn.disconnect().await?;
    match one {
        Some(1) => Ok(()),
        _ => Err(mysql_async::Error::Other("SELECT 1 did not return 1".into())),
    }
}

/// Starts `binary server` for one node, output appended to `<data_dir>/node.log` (created if missing).
fn spawn_node(binary: &Path, data_dir: &Path, port: u16) -> anyhow::Result<Child> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log_path = data_dir.join(LOG_FILE);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_err = log.try_clone().context("cannot duplicate the log file handle")?;
    let mut command = Command::new(binary);
    command
        .arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--host", HOST, "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions (setpgid, prctl,
    // getppid) and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Own process group: a Ctrl-C in the terminal reaches only the benchmark, which then stops the nodes.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The benchmark may have died before prctl took effect; then no signal would ever come.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the benchmark exited during spawn"));
            }
            Ok(())
        })
    };
    command.spawn().with_context(|| format!("cannot start {} server", binary.display()))
}

/// `count` distinct MySQL ports on loopback, each usable together with its RPC port (`port + 10000`), and no
/// port equal to another's RPC port.
fn pick_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let from = PORT_SEARCH_FROM + (std::process::id() % u32::from(PORT_SEARCH_SPREAD)) as u16;
    let last = u16::MAX - RPC_PORT_OFFSET;
    let mut ports: Vec<u16> = Vec::with_capacity(count);
    for port in (from..=last).chain(1024..from) {
        if ports.len() == count {
            break;
        }
        let clashes = ports.iter().any(|&p| p.abs_diff(port) == RPC_PORT_OFFSET);
        if !clashes && usable(port) {
            ports.push(port);
        }
    }
    if ports.len() < count {
        anyhow::bail!("found only {} of {count} free port pairs (P and P+{RPC_PORT_OFFSET}) on {HOST}", ports.len());
    }
    Ok(ports)
}

/// True when `port` and `port + 10000` can both be bound right now (the node binds them a moment later; a race with
/// another program shows up as a node that exits before it is ready, with its log).
fn usable(port: u16) -> bool {
    TcpListener::bind((HOST, port)).is_ok() && TcpListener::bind((HOST, port + RPC_PORT_OFFSET)).is_ok()
}
