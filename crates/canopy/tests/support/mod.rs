//! Test support: real `canopy server` processes on loopback ports in their own temp directories, formed into a
//! cluster over the MySQL protocol, and torn down (SIGKILL) when the handle drops, even after a failed assertion.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// A port P such that P and P+10000 (the default RPC port) are both free right now. Ports are handed out from a
/// per-process counter starting at a pid-dependent offset so parallel tests and test binaries rarely collide.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ =
        NEXT.compare_exchange(0, 20000 + (std::process::id() % 500) as u16 * 50, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = if p >= 45000 {
            NEXT.store(20000, Ordering::SeqCst);
            20000
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

/// One `canopy server` process.
pub struct NodeProc {
    pub port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
    /// Extra `canopy server` arguments (e.g. `--query-time-max-ms 2000`).
    args: Vec<String>,
}

impl NodeProc {
    pub fn start(data_dir: &Path, port: u16) -> NodeProc {
        NodeProc::start_with_args(data_dir, port, &[])
    }

    pub fn start_with_args(data_dir: &Path, port: u16, args: &[&str]) -> NodeProc {
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut node = NodeProc { port, data_dir: data_dir.to_path_buf(), child: None, args };
        node.spawn();
        node
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node already running");
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("node.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_canopy"))
            .args(["server", "--host", "127.0.0.1", "--port", &self.port.to_string(), "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn canopy");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "node {} did not stop after SIGTERM", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default()
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

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
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
        TestCluster::start_with_args(name, leaves, &[]).await
    }

    /// [`TestCluster::start`] with extra `canopy server` arguments for every node.
    pub async fn start_with_args(name: &str, leaves: usize, args: &[&str]) -> TestCluster {
        let dir = temp_dir(name);
        let master = NodeProc::start_with_args(&dir.join("ma"), free_port(), args);
        let leaves: Vec<NodeProc> = (1..=leaves)
            .map(|i| NodeProc::start_with_args(&dir.join(format!("leaf-{i}")), free_port(), args))
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

    pub async fn conn(&self) -> mysql_async::Conn {
        self.master.connect().await
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
