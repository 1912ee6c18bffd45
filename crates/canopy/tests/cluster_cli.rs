//! End to end through the real binary: `canopy cluster` (up, down, list-nodes, stop-node, start-node, config
//! validation) and `canopy demo`, with real node processes on loopback driven over the MySQL protocol. Each test has
//! its own temp directory and free ports; guards stop every process a test started, even after a failed assertion.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

const DEADLINE: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_canopy");

// ---------------------------------------------------------------------------------------------------------------
// Helpers.

/// The first of `n` consecutive ports P such that every P and P+10000 (the default RPC port) bind right now. Blocks
/// come from a per-process counter at a pid-dependent offset, so parallel tests never get overlapping blocks.
fn free_ports(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ =
        NEXT.compare_exchange(0, 21000 + (std::process::id() % 300) as u16 * 30, Ordering::SeqCst, Ordering::SeqCst);
    let usable =
        |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok();
    loop {
        let base = NEXT.fetch_add(n, Ordering::SeqCst);
        if base > 30000 {
            NEXT.store(21000, Ordering::SeqCst);
            continue;
        }
        if (base..base + n).all(usable) {
            return base;
        }
    }
}

/// A fresh directory, removed on drop unless the test failed (then its node logs are worth reading).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("canopy-cli-{name}-{}-{}", std::process::id(), free_ports(1)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Live processes whose command line names `dir` or a path below it (zombies have an empty command line).
fn pids_under(dir: &Path) -> Vec<i32> {
    let want = dir.to_str().expect("utf-8 path").as_bytes();
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|arg| arg.starts_with(want)))
                .unwrap_or(false)
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn kill_all_under(dir: &Path) {
    for pid in pids_under(dir) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

fn opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into()
}

/// Polls `check` until it returns `Some`, failing with `what` and the last error after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what} (last error: {last})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn query<T: mysql_async::prelude::FromRow + Send + 'static>(port: u16, sql: &str) -> Result<Vec<T>, String> {
    let mut conn = mysql_async::Conn::new(opts(port)).await.map_err(|e| e.to_string())?;
    let rows = conn.query(sql).await.map_err(|e| e.to_string());
    let _ = conn.disconnect().await;
    rows
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn describe(out: &Output) -> String {
    format!("{}\nstdout:\n{}\nstderr:\n{}", out.status, stdout(out), String::from_utf8_lossy(&out.stderr))
}

// ---------------------------------------------------------------------------------------------------------------
// `canopy cluster`.

/// A cluster described by a generated TOML file; dropping it runs `down` and then SIGKILLs anything left under its
/// data directory.
struct ClusterFixture {
    dir: TempDir,
    config: PathBuf,
    data_dir: PathBuf,
}

impl ClusterFixture {
    fn new(name: &str, nodes: &[(&str, &str, u16)]) -> ClusterFixture {
        let dir = TempDir::new(name);
        let data_dir = dir.0.join("data");
        let mut toml = format!("[cluster]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n", data_dir.display());
        for (id, role, port) in nodes {
            toml.push_str(&format!("\n[[node]]\nid = \"{id}\"\nrole = \"{role}\"\nport = {port}\n"));
        }
        let config = dir.0.join("cluster.toml");
        std::fs::write(&config, toml).expect("write config");
        ClusterFixture { dir, config, data_dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN).arg("cluster").arg("--config").arg(&self.config).args(args).output().expect("run canopy")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "canopy cluster {args:?} failed: {}", describe(&out));
        stdout(&out)
    }

    /// `list-nodes` as (id, process state) pairs.
    fn states(&self) -> Vec<(String, String)> {
        self.ok(&["list-nodes"])
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| ID "))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].to_string(), cells[5].to_string())
            })
            .collect()
    }

    fn pid(&self, id: &str) -> i32 {
        let text = std::fs::read_to_string(self.data_dir.join(id).join("canopy.pid")).expect("pid file");
        text.trim().parse().expect("pid")
    }
}

impl Drop for ClusterFixture {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
        kill_all_under(&self.dir.0);
    }
}

fn all(states: &[(&str, &str)]) -> Vec<(String, String)> {
    states.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

async fn leaves(master: u16) -> Result<Option<Vec<(u16, String)>>, String> {
    let rows: Vec<mysql_async::Row> = query(master, "SHOW LEAVES").await?;
    Ok(Some(rows.iter().map(|r| (r.get("Port").expect("Port"), r.get("State").expect("State"))).collect()))
}

/// History: `up` a master and 2 leaves; create `t.x` and insert ids 1..=50; `down`; `up`; `up` again; `stop-node
/// leaf-2`; `start-node leaf-2`.
/// Property: `up` forms the cluster (2 online leaves); `down` stops the master before the leaves and leaves no
/// process behind; a second `up` brings the same data back without adding a leaf twice; a third `up` starts nothing;
/// `list-nodes` tracks every transition, including a single node stopped and started.
#[test]
fn up_down_up_keeps_data_and_is_idempotent() {
    let base = free_ports(3);
    let (ma, l1, l2) = (base, base + 1, base + 2);
    let cluster =
        ClusterFixture::new("updown", &[("ma", "master", ma), ("leaf-1", "leaf", l1), ("leaf-2", "leaf", l2)]);

    let out = cluster.ok(&["up"]);
    assert!(out.contains("bootstrapped as master aggregator"), "{out}");
    assert_eq!(cluster.states(), all(&[("ma", "Running"), ("leaf-1", "Running"), ("leaf-2", "Running")]));
    block_on(async {
        let online = vec![(l1, "online".to_string()), (l2, "online".to_string())];
        eventually("both leaves online", || async { Ok(leaves(ma).await?.filter(|got| *got == online)) }).await;
        let mut conn = mysql_async::Conn::new(opts(ma)).await.expect("connect");
        conn.query_drop("CREATE DATABASE t PARTITIONS 4").await.expect("create database");
        conn.query_drop("CREATE TABLE t.x (id INT PRIMARY KEY, v VARCHAR(20))").await.expect("create table");
        let values: Vec<String> = (1..=50).map(|i| format!("({i}, 'v{i}')")).collect();
        conn.query_drop(format!("INSERT INTO t.x VALUES {}", values.join(","))).await.expect("insert");
    });

    let pids: Vec<i32> = ["ma", "leaf-1", "leaf-2"].map(|id| cluster.pid(id)).to_vec();
    let out = cluster.ok(&["down"]);
    let at = |id: &str| out.find(&format!("{id} (")).unwrap_or_else(|| panic!("no line for {id}: {out}"));
    assert!(at("ma") < at("leaf-1") && at("ma") < at("leaf-2"), "master must stop first: {out}");
    assert_eq!(cluster.states(), all(&[("ma", "Stopped"), ("leaf-1", "Stopped"), ("leaf-2", "Stopped")]));
    assert_eq!(pids_under(&cluster.data_dir), Vec::<i32>::new(), "node processes left after down (were {pids:?})");

    let out = cluster.ok(&["up"]);
    assert!(!out.contains("bootstrapped") && !out.contains("added to the cluster"), "{out}");
    block_on(async {
        let online = vec![(l1, "online".to_string()), (l2, "online".to_string())];
        eventually("both leaves online again", || async { Ok(leaves(ma).await?.filter(|got| *got == online)) }).await;
        let answer: (i64, i64) = eventually("the rows after restart", || async {
            Ok(query::<(i64, i64)>(ma, "SELECT COUNT(*), SUM(id) FROM t.x").await?.into_iter().next())
        })
        .await;
        assert_eq!(answer, (50, 1275));
    });

    let out = cluster.ok(&["up"]);
    assert_eq!(out.matches("already running").count(), 3, "{out}");
    assert!(!out.contains("started"), "{out}");

    let leaf2 = cluster.pid("leaf-2");
    let out = cluster.ok(&["stop-node", "leaf-2"]);
    assert!(out.contains("leaf-2 (leaf, 127.0.0.1:") && out.contains("stopped"), "{out}");
    assert_eq!(cluster.states(), all(&[("ma", "Running"), ("leaf-1", "Running"), ("leaf-2", "Stopped")]));
    assert!(!pids_under(&cluster.data_dir).contains(&leaf2));
    assert!(cluster.ok(&["stop-node", "leaf-2"]).contains("already stopped"));

    let out = cluster.ok(&["start-node", "leaf-2"]);
    assert!(out.contains("answers SELECT 1"), "{out}");
    assert_eq!(cluster.states(), all(&[("ma", "Running"), ("leaf-1", "Running"), ("leaf-2", "Running")]));
    let one: Vec<i64> = block_on(query(l2, "SELECT 1")).expect("leaf-2 answers");
    assert_eq!(one, [1]);
}

/// History: a stale pid file naming this test process (alive, but not a canopy server), then `list-nodes`,
/// `stop-node` and `up` of that node.
/// Property: a pid file alone never makes a node "running", and `stop-node` never signals a stranger.
#[test]
fn stale_pid_file_never_signals_a_stranger() {
    let base = free_ports(1);
    let cluster = ClusterFixture::new("stale", &[("ma", "master", base)]);
    std::fs::create_dir_all(cluster.data_dir.join("ma")).expect("node dir");
    std::fs::write(cluster.data_dir.join("ma").join("canopy.pid"), format!("{}\n", std::process::id())).expect("pid");
    assert_eq!(cluster.states(), all(&[("ma", "Stopped")]));
    assert!(cluster.ok(&["stop-node", "ma"]).contains("already stopped"));
    let out = cluster.ok(&["up"]);
    assert!(out.contains("bootstrapped"), "{out}");
    assert_eq!(cluster.states(), all(&[("ma", "Running")]));
}

/// History: `canopy cluster list-nodes` on broken configs (one defect each).
/// Property: a non-zero exit, a message naming the defect (and its line where the file has one), and no node
/// started (no data directory created).
#[test]
fn invalid_configs_are_rejected_with_clear_messages() {
    let dir = TempDir::new("invalid");
    let data_dir = dir.0.join("data");
    let head = format!("[cluster]\ndata_dir = \"{}\"\n", data_dir.display());
    let ma = "[[node]]\nid = \"ma\"\nrole = \"master\"\nport = 3306\n";
    let cases = [
        (
            format!("{head}{ma}[[node]]\nid = \"l1\"\nrole = \"leaf\"\nport = 3306\n"),
            vec!["line 10", "duplicate port 3306"],
        ),
        (
            format!("{head}{ma}[[node]]\nid = \"l1\"\nrole = \"boss\"\nport = 3307\n"),
            vec!["line 9", "unknown variant `boss`"],
        ),
        (format!("{head}{ma}[[node]]\nid = \"ma\"\nrole = \"leaf\"\nport = 3307\n"), vec!["duplicate node id `ma`"]),
        (format!("{head}[[node]]\nid = \"l1\"\nrole = \"leaf\"\nport = 3307\n"), vec!["no node has role = \"master\""]),
        (format!("{head}{ma}port = \n"), vec!["line 7"]),
    ];
    for (i, (toml, expect)) in cases.iter().enumerate() {
        let config = dir.0.join(format!("bad-{i}.toml"));
        std::fs::write(&config, toml).expect("write config");
        for action in [&["list-nodes"][..], &["up"]] {
            let out = Command::new(BIN).arg("cluster").arg("--config").arg(&config).args(action).output().expect("run");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "case {i} {action:?} accepted: {}", describe(&out));
            assert!(stderr.contains(&format!("invalid cluster config {}", config.display())), "case {i}: {stderr}");
            for want in expect {
                assert!(stderr.contains(want), "case {i}: {want:?} not in {stderr}");
            }
        }
    }
    let out = Command::new(BIN)
        .args(["cluster", "--config"])
        .arg(dir.0.join("missing.toml"))
        .arg("up")
        .output()
        .expect("run");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot read"),
        "{}",
        describe(&out)
    );
    assert!(!data_dir.exists(), "a rejected config must not start anything");
}

// ---------------------------------------------------------------------------------------------------------------
// `canopy demo`.

/// A running `canopy demo` whose output lines arrive on a channel; dropping it SIGKILLs the demo and its nodes.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    data_dir: Option<PathBuf>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(BIN)
            .arg("demo")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn demo");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
        std::thread::spawn(move || {
            BufReader::new(err).lines().map_while(Result::ok).for_each(|l| drop(tx2.send(format!("stderr: {l}"))))
        });
        Demo { child, lines, seen: Vec::new(), data_dir: None }
    }

    /// Collects output until a line satisfies `done`.
    fn read_until(&mut self, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let stop = done(&line);
                    if let Some(rest) = line.strip_prefix("Data directory: ") {
                        self.data_dir = rest.split(" (").next().map(PathBuf::from);
                    }
                    self.seen.push(line);
                    if stop {
                        return;
                    }
                }
                Err(_) => panic!("demo output ended or stalled; so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "demo did not exit after SIGTERM:\n{}", self.seen.join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data_dir {
            kill_all_under(dir);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The suggested queries from the demo's welcome text (continuation lines joined).
fn suggested_queries(lines: &[String]) -> Vec<String> {
    let start = lines.iter().position(|l| l == "Queries to try:").expect("queries section") + 1;
    let mut queries: Vec<String> = Vec::new();
    for line in lines[start..].iter().take_while(|l| !l.is_empty()) {
        match line.strip_prefix("    ") {
            Some(more) => queries.last_mut().expect("a query to continue").push_str(&format!(" {more}")),
            None => queries.push(line.trim().to_string()),
        }
    }
    queries
}

/// History: `canopy demo --leaves 2 --rows 1234` on a free port; query it; SIGTERM.
/// Property: the demo prints a connect line for a port that serves the sample data (`COUNT(*)` = `--rows`), every
/// query it suggests runs, and on SIGTERM it stops its 3 nodes master first, exits 0, leaves no process behind and
/// removes its temporary data directory.
#[test]
fn demo_serves_sample_data_and_cleans_up_on_sigterm() {
    let base = free_ports(3);
    let mut demo = Demo::start(&["--port", &base.to_string(), "--leaves", "2", "--rows", "1234"]);
    demo.read_until(|l| l.starts_with("Press Ctrl-C"));
    let connect = demo.seen.iter().find_map(|l| l.trim().strip_prefix("mysql -h 127.0.0.1 -P ")).expect("connect line");
    let port: u16 = connect.split(' ').next().and_then(|p| p.parse().ok()).expect("port in connect line");
    assert_eq!(port, base, "the requested port was free");
    let data_dir = demo.data_dir.clone().expect("data directory line");
    assert_eq!(pids_under(&data_dir).len(), 3, "master and 2 leaves running");

    block_on(async {
        let count: Vec<i64> = query(port, "SELECT COUNT(*) FROM demo.orders").await.expect("count");
        assert_eq!(count, [1234]);
        let mut conn = mysql_async::Conn::new(opts(port)).await.expect("connect");
        conn.query_drop("USE demo").await.expect("use");
        let queries = suggested_queries(&demo.seen);
        assert_eq!(queries.len(), 6, "{queries:?}");
        for q in &queries {
            let rows: Vec<mysql_async::Row> = conn.query(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
            assert!(!rows.is_empty(), "{q} returned no rows");
        }
    });

    // The demo runs redundancy 2 and says how to watch a failover: do it.
    let hint = demo.seen.iter().find_map(|l| l.strip_prefix("Watch a failover: kill -9 ")).expect("failover hint");
    let pid: i32 = hint.split(' ').next().and_then(|p| p.parse().ok()).expect("pid in the hint");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    block_on(async {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(count) = query::<i64>(port, "SELECT COUNT(*) FROM demo.orders").await
                && count == [1234]
            {
                break;
            }
            assert!(Instant::now() < deadline, "the orders never became readable again after the leaf died");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    demo.read_until(|l| l.contains("again (pid"));
    block_on(async {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let states: Vec<String> =
                query(port, "SELECT STATE FROM information_schema.LEAVES").await.unwrap_or_default();
            if states.len() == 2 && states.iter().all(|s| s == "online") {
                break;
            }
            assert!(Instant::now() < deadline, "the restarted leaf never came back online: {states:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    unsafe { libc::kill(demo.child.id() as i32, libc::SIGTERM) };
    let status = demo.wait_exit();
    demo.read_until(|l| l.starts_with("Removed "));
    assert!(status.success(), "demo exit status {status}:\n{}", demo.seen.join("\n"));
    let stopped: Vec<&String> = demo.seen.iter().filter(|l| l.trim().starts_with("stopped ")).collect();
    assert_eq!(stopped.len(), 3, "{stopped:?}");
    assert!(stopped[0].contains("master aggregator"), "master first: {stopped:?}");
    assert_eq!(pids_under(&data_dir), Vec::<i32>::new(), "node processes outlived the demo");
    assert!(!data_dir.exists(), "temporary data directory not removed");
}

/// History: something listens on port P; `canopy demo --port P --leaves 1 --rows 10`; SIGTERM.
/// Property: a busy port is not an error: the demo says so, picks another port, and serves there.
#[test]
fn demo_moves_off_a_busy_port() {
    // The busy port is one the system handed out, held from the start: a port found free and bound later can be
    // taken meanwhile by a test running beside this one.
    let busy = TcpListener::bind(("127.0.0.1", 0)).expect("occupy a port");
    let base = busy.local_addr().expect("its address").port();
    let mut demo = Demo::start(&["--port", &base.to_string(), "--leaves", "1", "--rows", "10"]);
    demo.read_until(|l| l.starts_with("Press Ctrl-C"));
    assert!(demo.seen.iter().any(|l| l.starts_with(&format!("Port {base} (or its RPC port"))), "{:?}", demo.seen);
    let connect = demo.seen.iter().find_map(|l| l.trim().strip_prefix("mysql -h 127.0.0.1 -P ")).expect("connect line");
    let port: u16 = connect.split(' ').next().and_then(|p| p.parse().ok()).expect("port");
    assert_ne!(port, base);
    let count: Vec<i64> = block_on(query(port, "SELECT COUNT(*) FROM demo.orders")).expect("count");
    assert_eq!(count, [10]);
    unsafe { libc::kill(demo.child.id() as i32, libc::SIGTERM) };
    assert!(demo.wait_exit().success());
}
