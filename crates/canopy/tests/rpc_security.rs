//! Security of the inter-node port and of a leaf's own ports, with real processes: frames from a peer without the
//! cluster secret are never answered, a leaf's MySQL port refuses writes and SQLite's file escapes, secrets and
//! metadata are private files, and a master never adopts another cluster's node at its leaf's address.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use canopy_rpc::{PartitionTerm, Request, Response, Target};
use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{NodeProc, TestCluster, eventually};

/// The default RPC port of a node whose MySQL port is `port`.
fn rpc_port(port: u16) -> u16 {
    port + 10000
}

/// Sends `request` as a bare frame (length + postcard, no handshake) and returns every frame the peer sends back
/// until it closes the connection or 10 s pass, decoded as responses where they decode.
fn send_raw(port: u16, request: &Request) -> Vec<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", rpc_port(port))).expect("connect to the RPC port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let body = postcard::to_stdvec(request).expect("encode");
    stream.write_all(&(body.len() as u32).to_be_bytes()).expect("write length");
    stream.write_all(&body).expect("write body");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut responses = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let Some(frame) = rest.get(4..4 + len) else { break };
        if let Ok(response) = postcard::from_bytes::<Response>(frame) {
            responses.push(response);
        }
        rest = &rest[4 + len..];
    }
    responses
}

async fn count(conn: &mut mysql_async::Conn, sql: &str) -> Option<i64> {
    conn.query_first::<i64, _>(sql).await.ok().flatten()
}

fn text(row: &Row, column: &str) -> String {
    match row.get::<mysql_async::Value, _>(column) {
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
        Some(mysql_async::Value::Int(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// The state SHOW LEAVES gives the leaf at MySQL port `port`.
async fn leaf_state(master: &NodeProc, port: u16) -> Option<String> {
    let mut conn = mysql_async::Conn::new(master.opts()).await.ok()?;
    let rows: Vec<Row> = conn.query("SHOW LEAVES").await.ok()?;
    rows.iter().find(|r| text(r, "Port") == port.to_string()).map(|r| text(r, "State"))
}

async fn wait_state(master: &NodeProc, port: u16, state: &str) {
    eventually(&format!("leaf {port} {state}"), || async {
        (leaf_state(master, port).await.as_deref() == Some(state)).then_some(())
    })
    .await
}

/// Waits until the master decides about the node now at leaf address `port`: its log calls it not its leaf, or
/// the leaf is online again (adopted).
async fn wait_verdict(master: &NodeProc, port: u16) {
    let address = format!("127.0.0.1:{port} is not our leaf");
    eventually(&format!("the master decides about the node at {port}"), || async {
        let online = leaf_state(master, port).await.as_deref() == Some("online");
        (online || master.log().contains(&address)).then_some(())
    })
    .await
}

/// A cluster with `test.x` holding `rows` (1..=rows, v = `tag`).
async fn with_rows(cluster: &TestCluster, rows: i64, tag: &str) {
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.expect("create database");
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v TEXT)").await.expect("create table");
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, '{tag}')")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.expect("insert");
}

/// History: a cluster with one leaf holding `test.x` (8 rows). A stranger connects to the leaf's RPC port and sends
/// `Execute SELECT` as a bare frame, then `LeaveCluster` on another connection. Property: neither is answered (no
/// rows, no Done), and the leaf keeps serving its partitions to the master.
#[tokio::test]
async fn frames_without_the_cluster_secret_are_refused_and_the_leaf_keeps_serving() {
    let cluster = TestCluster::start("rpc-unauth", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.expect("create database");
    conn.query_drop("USE test").await.expect("use");
    conn.query_drop("CREATE TABLE x (id INT PRIMARY KEY, v TEXT)").await.expect("create table");
    conn.query_drop("INSERT INTO x VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e'),(6,'f'),(7,'g'),(8,'h')")
        .await
        .expect("insert");
    let leaf = cluster.leaves[0].port;

    let select = Request::Execute {
        db: "test".into(),
        // The terms the metadata gave the two partitions (a stranger could guess them: only the secret protects).
        target: Target::Partitions(vec![
            PartitionTerm { ordinal: 0, term: canopy_types::Term(1) },
            PartitionTerm { ordinal: 1, term: canopy_types::Term(2) },
        ]),
        sql: "SELECT id, v FROM x".into(),
        params: vec![],
        statement: 0,
    };
    let answered = send_raw(leaf, &select);
    assert!(
        !answered.iter().any(|r| matches!(r, Response::Rows(_) | Response::Affected { .. })),
        "an unauthenticated Execute was answered: {answered:?}"
    );
    let answered = send_raw(leaf, &Request::LeaveCluster);
    assert!(!answered.contains(&Response::Done), "an unauthenticated LeaveCluster was obeyed: {answered:?}");

    assert_eq!(count(&mut conn, "SELECT count(*) FROM x").await, Some(8), "the leaf still serves its partitions");
    let mut leaf_conn = cluster.leaves[0].connect().await;
    let role: Option<String> = leaf_conn.query_first("SELECT @@canopy_role").await.expect("role");
    assert_eq!(role.as_deref(), Some("Leaf"), "the leaf is still a leaf");
}

/// History: clusters A and B on loopback, each with `test.x` (database id 1 in both). A's leaf 1 is killed and goes
/// offline; cluster B's new leaf then takes over its host and ports. Property: A never adopts that node (its
/// handshake cannot prove A's secret): it stays offline in A's SHOW LEAVES, and A never serves B's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_node_at_a_dead_leafs_address_is_never_attached() {
    let mut a = TestCluster::start("rpc-cluster-a", 2).await;
    with_rows(&a, 40, "a").await;
    let b = TestCluster::start("rpc-cluster-b", 1).await;
    let port = a.leaves[0].port;
    a.leaves[0].kill();
    wait_state(&a.master, port, "offline").await;

    let impostor = NodeProc::start(&b.dir.join("leaf-takeover"), port);
    drop(impostor.connect().await);
    let mut b_conn = b.conn().await;
    b_conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{port}")).await.expect("B adds the node");
    drop(b_conn);
    with_rows(&b, 40, "b").await;

    wait_verdict(&a.master, port).await;
    assert_eq!(leaf_state(&a.master, port).await.as_deref(), Some("offline"), "A attached B's node");
    let mut a_conn = a.master.connect().await;
    let b_rows = a_conn.query_first::<i64, _>("SELECT count(*) FROM test.x WHERE v = 'b'").await;
    assert!(!matches!(b_rows, Ok(Some(n)) if n > 0), "cluster A served cluster B's rows: {b_rows:?}");
}

/// History: a cluster with two leaves; leaf 1 is killed and goes offline; a node holding this cluster's secret but
/// leaf 2's identity (node.json and cluster.secret copied, no data) starts at leaf 1's address. Property: its Pong
/// names another node id, so the master calls it not its leaf and never attaches it (defence in depth behind the
/// handshake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pong_with_another_node_id_is_not_our_leaf() {
    let mut cluster = TestCluster::start("rpc-pong-id", 2).await;
    with_rows(&cluster, 20, "a").await;
    let port = cluster.leaves[0].port;
    cluster.leaves[0].kill();
    wait_state(&cluster.master, port, "offline").await;
    let twin = cluster.dir.join("twin");
    std::fs::create_dir_all(&twin).expect("twin dir");
    for file in ["node.json", "cluster.secret"] {
        if let Ok(bytes) = std::fs::read(cluster.leaves[1].data_dir.join(file)) {
            std::fs::write(twin.join(file), bytes).expect("copy identity");
        }
    }
    let impostor = NodeProc::start(&twin, port);
    drop(impostor.connect().await);
    wait_verdict(&cluster.master, port).await;
    assert_eq!(leaf_state(&cluster.master, port).await.as_deref(), Some("offline"), "the twin was attached");
    assert!(cluster.master.log().contains("reports node id"), "{}", cluster.master.log());
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// History: a cluster with one leaf and a database. Property: the secret, the metadata and the identity are 0600,
/// data directories 0700 and partition files 0600, whatever the umask.
#[tokio::test]
async fn secrets_metadata_and_data_are_private_files() {
    let cluster = TestCluster::start("rpc-modes", 1).await;
    with_rows(&cluster, 4, "a").await;
    let (master, leaf) = (&cluster.master.data_dir, &cluster.leaves[0].data_dir);
    for file in [master.join("cluster.json"), master.join("cluster.secret"), master.join("node.json")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    for file in [leaf.join("cluster.secret"), leaf.join("node.json"), leaf.join("leaf/partitions/test_0.sqlite")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    for dir in [master.clone(), leaf.clone(), leaf.join("leaf/partitions"), leaf.join("leaf/reference")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
}

/// History: a cluster with one leaf holding `test.x`. A client logs in to the leaf's own MySQL port and, inside
/// a partition database, reads, then tries to write, change the schema and ATTACH a file. Property: reads work;
/// writes and DDL get error 1290 and change nothing; ATTACH is refused and creates no file.
#[tokio::test]
async fn a_leafs_own_mysql_port_only_reads() {
    let cluster = TestCluster::start("rpc-leaf-port", 1).await;
    with_rows(&cluster, 8, "a").await;
    let mut leaf = cluster.leaves[0].connect().await;
    leaf.query_drop("USE test_0").await.expect("use a partition database");
    let before = count(&mut leaf, "SELECT count(*) FROM x").await.expect("a leaf port reads");
    for write in ["INSERT INTO x VALUES (100, 'z')", "DELETE FROM x", "CREATE TABLE y (a INT)", "DROP TABLE x"] {
        let refused = leaf.query_drop(write).await;
        let Err(mysql_async::Error::Server(e)) = refused else { panic!("{write} was not refused: {refused:?}") };
        assert_eq!(e.code, 1290, "{write}: {e:?}");
    }
    let outside = cluster.dir.join("outside.sqlite");
    let attach = leaf.query_drop(format!("ATTACH DATABASE '{}' AS evil", outside.display())).await;
    assert!(attach.is_err(), "ATTACH ran on a leaf");
    assert!(!outside.exists(), "ATTACH created a file");
    assert_eq!(count(&mut leaf, "SELECT count(*) FROM x").await, Some(before), "a refused write changed rows");
    let mut conn = cluster.conn().await;
    assert_eq!(count(&mut conn, "SELECT count(*) FROM test.x").await, Some(8));
}

/// A node told to listen beyond loopback (`--bind 0.0.0.0`) with no root password refuses to start, before it
/// binds anything, and says which flag would insist.
#[test]
fn a_node_beyond_loopback_without_a_root_password_refuses_to_start() {
    let dir = support::temp_dir("rpc-exposed");
    let port = support::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["server", "--host", "127.0.0.1", "--bind", "0.0.0.0", "--port", &port.to_string(), "--data-dir"])
        .arg(&dir)
        .env_remove("CANOPY_ROOT_PASSWORD")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn canopy");
    let deadline = std::time::Instant::now() + support::DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline || TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = status.unwrap_or_else(|| panic!("the node started listening beyond loopback:\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--allow-empty-root-password"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// How often a node's log says its RPC server was at its connection limit.
fn full_server_lines(node: &NodeProc) -> usize {
    node.log().matches("too many connections").count()
}

/// A stranger keeping a node's RPC listeners full, its TCP port and its local socket (an aggregator on the same
/// host uses the socket once it learnt it): a thread opens idle connections (none authenticates) and keeps every one
/// of them, faster than the server's handshake timeout closes them (`BATCH` of each kind per 20 ms, about five times
/// 1024 per 5 s), up to `OPEN_MAX` of each kind, until stopped.
struct Flood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Flood {
    const OPEN_MAX: usize = 6000;
    const BATCH: usize = 20;

    fn start(port: u16, socket: std::path::PathBuf) -> Flood {
        use std::os::unix::net::UnixStream;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut tcp, mut local) = (Vec::new(), Vec::new());
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                for _ in 0..Flood::BATCH {
                    if tcp.len() < Flood::OPEN_MAX
                        && let Ok(s) = TcpStream::connect(("127.0.0.1", port))
                    {
                        tcp.push(s);
                    }
                    if local.len() < Flood::OPEN_MAX
                        && let Ok(s) = UnixStream::connect(&socket)
                    {
                        local.push(s);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            tcp.len()
        });
        Flood { stop, thread: Some(thread) }
    }

    /// Stops the flood and closes its connections; returns how many TCP connections it opened.
    fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().map(|t| t.join().expect("flood thread")).unwrap_or(0)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// History: a cluster with one leaf; the master stops; a stranger floods the leaf's RPC port and local socket with
/// idle connections (more than its 1024 connection threads each, topped up faster than the handshake timeout closes
/// them) until the leaf's log says it is full; the master restarts, so its pool is empty and it must connect to a
/// full leaf. The flood goes on for `FLOOD_AFTER_RESTART` (longer than `leaf_failure_timeout_ms`, thirty
/// heartbeats). Property: the leaf never goes offline (the master finds it busy or wins a freed thread, never
/// "refused"), and it serves again once the flood stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_limit_do_not_make_a_leaf_offline() {
    const FLOOD_AFTER_RESTART: Duration = Duration::from_secs(6);
    let mut cluster = TestCluster::start("rpc-full", 1).await;
    with_rows(&cluster, 8, "a").await;
    let port = cluster.leaves[0].port;
    cluster.master.terminate();
    let before = full_server_lines(&cluster.leaves[0]);
    let flood = Flood::start(rpc_port(port), cluster.leaves[0].data_dir.join("rpc.sock"));
    let leaf = &cluster.leaves[0];
    eventually("the leaf is full", || async { (full_server_lines(leaf) > before).then_some(()) }).await;
    cluster.master.spawn();
    drop(cluster.master.connect().await);
    let master = &cluster.master;
    // A scenario length, not a synchronisation: the property is that nothing happens during it.
    tokio::time::sleep(FLOOD_AFTER_RESTART).await;
    assert_eq!(leaf_state(master, port).await.as_deref(), Some("online"), "a full leaf went offline");
    assert!(flood.stop() > 1024, "the flood did not fill the leaf");
    let rows = eventually("the leaf serves again", || async {
        let mut conn = mysql_async::Conn::new(master.opts()).await.ok()?;
        count(&mut conn, "SELECT count(*) FROM test.x").await
    })
    .await;
    assert_eq!(rows, 8);
    assert_eq!(leaf_state(master, port).await.as_deref(), Some("online"));
    assert!(!master.log().contains("marking it offline"), "the leaf went offline:\n{}", master.log());
}
