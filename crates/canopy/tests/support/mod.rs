//! Test support: real `canopy server` processes on loopback ports in their own temp directories, formed into a
//! cluster over the MySQL protocol, and torn down (SIGKILL) when the handle drops, even after a failed assertion.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// The range P is taken from: P and P + 10000 stay below Linux's ephemeral ports (32768 and up), so a node restarted
/// on its ports never finds one taken by some outgoing connection (a test holding a thousand sockets made that
/// happen).
const PORT_FIRST: u16 = 10000;
const PORT_END: u16 = 22700;

/// A port P such that P and P+10000 (the default RPC port) are both free right now. Ports are handed out from a
/// per-process counter starting at a pid-dependent offset so parallel tests and test binaries rarely collide.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = PORT_FIRST + (std::process::id() % 250) as u16 * 50;
    let _ = NEXT.compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = if p >= PORT_END {
            NEXT.store(PORT_FIRST, Ordering::SeqCst);
            PORT_FIRST
        } else {
            p
        };
        let ok = TcpListener::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok();
        if ok {
            return p;
        }
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canopy-test-{name}-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// One `canopy server` process, started through `canopy-launch` (the launcher `canopy demo`, `canopy cluster` and
/// the benchmarks use), killed when the handle drops.
pub struct NodeProc {
    pub port: u16,
    pub data_dir: PathBuf,
    /// Extra environment variables for the next `spawn`.
    pub env: Vec<(String, String)>,
    node: Option<canopy_launch::Node>,
    /// Extra `canopy server` arguments (e.g. `--query-time-max-ms 2000`).
    pub args: Vec<String>,
}

impl NodeProc {
    pub fn start(data_dir: &Path, port: u16) -> NodeProc {
        NodeProc::start_with(data_dir, port, &[], &[])
    }

    pub fn start_with_env(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> NodeProc {
        NodeProc::start_with(data_dir, port, env, &[])
    }

    pub fn start_with_args(data_dir: &Path, port: u16, args: &[&str]) -> NodeProc {
        NodeProc::start_with(data_dir, port, &[], args)
    }

    /// A node with extra environment variables and `canopy server` arguments.
    pub fn start_with(data_dir: &Path, port: u16, env: &[(&str, &str)], args: &[&str]) -> NodeProc {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut node = NodeProc { port, data_dir: data_dir.to_path_buf(), env, args, node: None };
        node.spawn();
        node
    }

    /// Starts the node (again) on its data directory and port; a restarted node appends to its log.
    pub fn spawn(&mut self) {
        match &mut self.node {
            Some(node) => {
                assert!(!node.is_running(), "node already running");
                node.set_env(self.env.clone());
                node.restart().expect("restart canopy");
            }
            None => {
                let mut spec = canopy_launch::NodeSpec::new(&self.data_dir, "127.0.0.1", self.port);
                spec.env = self.env.clone();
                spec.args = self.args.clone();
                let binary = Path::new(env!("CARGO_BIN_EXE_canopy"));
                let node = canopy_launch::Node::start(binary, spec, canopy_launch::Lifetime::Owned);
                self.node = Some(node.expect("spawn canopy"));
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.node.as_ref().and_then(|n| n.pid())
    }

    pub fn signal(&self, signal: i32) {
        if let Some(node) = &self.node {
            let _ = node.signal(signal);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(node) = &mut self.node {
            node.kill();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let node = self.node.as_mut().expect("node running");
        node.terminate(DEADLINE).unwrap_or_else(|| panic!("node {} did not stop after SIGTERM", self.port))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join(canopy_launch::LOG_FILE)).unwrap_or_default()
    }

    pub fn opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some("root"))
            .prefer_socket(false)
            .into()
    }

    /// Connects, retrying until the node accepts connections (it may still be starting).
    pub async fn connect(&self) -> mysql_async::Conn {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match mysql_async::Conn::new(self.opts()).await {
                Ok(c) => return c,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "node {} never accepted connections: {e}\n{}",
                        self.port,
                        self.log()
                    );
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
    }
}

/// A master aggregator and `n` leaves, formed into a cluster.
pub struct TestCluster {
    pub dir: PathBuf,
    pub master: NodeProc,
    pub leaves: Vec<NodeProc>,
}

impl TestCluster {
    pub async fn start(name: &str, leaves: usize) -> TestCluster {
        TestCluster::start_with(name, leaves, &[], &[]).await
    }

    /// Like `start`, with `env` set in every node's process.
    pub async fn start_with_env(name: &str, leaves: usize, env: &[(&str, &str)]) -> TestCluster {
        TestCluster::start_with(name, leaves, env, &[]).await
    }

    /// [`TestCluster::start`] with extra `canopy server` arguments for every node.
    pub async fn start_with_args(name: &str, leaves: usize, args: &[&str]) -> TestCluster {
        TestCluster::start_with(name, leaves, &[], args).await
    }

    /// A cluster whose every node gets `env` and the extra `canopy server` arguments `args`.
    pub async fn start_with(name: &str, leaves: usize, env: &[(&str, &str)], args: &[&str]) -> TestCluster {
        let dir = temp_dir(name);
        let master = NodeProc::start_with(&dir.join("ma"), free_port(), env, args);
        let leaves: Vec<NodeProc> = (1..=leaves)
            .map(|i| NodeProc::start_with(&dir.join(format!("leaf-{i}")), free_port(), env, args))
            .collect();
        let cluster = TestCluster { dir, master, leaves };
        let mut conn = cluster.master.connect().await;
        conn.query_drop("BOOTSTRAP AGGREGATOR '127.0.0.1'").await.expect("bootstrap");
        for leaf in &cluster.leaves {
            drop(leaf.connect().await);
            conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{}", leaf.port)).await.expect("add leaf");
        }
        cluster
    }

    /// A redundancy-2 cluster of `2 * pairs` leaves: leaves `1..=pairs` in availability group 1, then the same
    /// number in group 2, so leaf k is paired with leaf k + pairs (the spec's example layout).
    pub async fn start_paired(name: &str, pairs: usize, env: &[(&str, &str)]) -> TestCluster {
        let dir = temp_dir(name);
        let master = NodeProc::start_with(&dir.join("ma"), free_port(), env, &[]);
        let leaves: Vec<NodeProc> = (1..=2 * pairs)
            .map(|i| NodeProc::start_with(&dir.join(format!("leaf-{i}")), free_port(), env, &[]))
            .collect();
        let cluster = TestCluster { dir, master, leaves };
        let mut conn = cluster.master.connect().await;
        conn.query_drop("BOOTSTRAP AGGREGATOR '127.0.0.1'").await.expect("bootstrap");
        conn.query_drop("SET GLOBAL redundancy_level = 2").await.expect("redundancy 2");
        for (i, leaf) in cluster.leaves.iter().enumerate() {
            drop(leaf.connect().await);
            let group = if i < pairs { 1 } else { 2 };
            conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{} INTO GROUP {group}", leaf.port))
                .await
                .expect("add leaf");
        }
        cluster
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        self.master.connect().await
    }

    /// The index in `leaves` of the leaf listening on `port`.
    pub fn leaf_index(&self, port: u16) -> usize {
        self.leaves.iter().position(|l| l.port == port).unwrap_or_else(|| panic!("no leaf on port {port}"))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.master.kill();
        for leaf in &mut self.leaves {
            leaf.kill();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Column `name` of `row` as text (`NULL` for NULL), whatever protocol type it came in.
pub fn text(row: &mysql_async::Row, name: &str) -> String {
    let idx = row.columns_ref().iter().position(|c| c.name_str() == name).expect("column");
    match row.as_ref(idx).expect("value") {
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        mysql_async::Value::Int(i) => i.to_string(),
        mysql_async::Value::NULL => "NULL".into(),
        other => format!("{other:?}"),
    }
}

/// The state SHOW LEAVES gives `cluster.leaves[leaf]` (None while the master aggregator does not answer).
pub async fn leaf_state(cluster: &TestCluster, leaf: usize) -> Option<String> {
    let mut conn = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
    let rows: Vec<mysql_async::Row> = conn.query("SHOW LEAVES").await.ok()?;
    let port = cluster.leaves[leaf].port.to_string();
    rows.iter().find(|r| text(r, "Port") == port).map(|r| text(r, "State"))
}
