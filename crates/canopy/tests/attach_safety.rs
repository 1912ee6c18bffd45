//! Attach safety and leaf liveness through real processes: a heartbeat ping never waits for a long statement on
//! the leaf, ATTACH PARTITION refuses copies it cannot trust, an attach interrupted by a master crash is resumed,
//! and copies of dropped databases neither loop the heartbeat nor resist CLEAR ORPHAN DATABASES.

mod support;

use std::time::{Duration, Instant};

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{TestCluster, eventually, text};

/// Every leaf's state by port, as SHOW LEAVES shows it.
async fn leaf_states(cluster: &TestCluster) -> Option<Vec<(String, String)>> {
    let mut conn = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
    let rows: Vec<Row> = conn.query("SHOW LEAVES").await.ok()?;
    Some(rows.iter().map(|r| (text(r, "Port"), text(r, "State"))).collect())
}

async fn leaf_state(cluster: &TestCluster, leaf: usize) -> Option<String> {
    let port = cluster.leaves[leaf].port.to_string();
    leaf_states(cluster).await?.into_iter().find(|(p, _)| *p == port).map(|(_, s)| s)
}

async fn wait_state(cluster: &TestCluster, leaf: usize, state: &str) {
    eventually(&format!("leaf {} {state}", leaf + 1), || async {
        (leaf_state(cluster, leaf).await.as_deref() == Some(state)).then_some(())
    })
    .await
}

/// History: a reference table of 3,000 rows; one client runs a three-way cross join of it (minutes of work on the
/// one leaf that runs it) while the failure timeout is lowered to 2 s. Property: for three failure timeouts no leaf
/// is ever reported offline (the leaf's pings are answered while the statement holds its reference connection), and
/// a query over every partition keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_statement_never_makes_its_leaf_offline() {
    const FAILURE_TIMEOUT_MS: u64 = 2000;
    let cluster = TestCluster::start("longstmt", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE test.r (id INT PRIMARY KEY)").await.unwrap();
    let values: Vec<String> = (1..=3000).map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO test.r VALUES {}", values.join(","))).await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    insert_x(&mut conn, 1..=100).await;
    conn.query_drop(format!("SET GLOBAL leaf_failure_timeout_ms = {FAILURE_TIMEOUT_MS}")).await.unwrap();

    // The statement never finishes within the test; the leaves are killed when the cluster drops.
    let opts = cluster.master.opts();
    let long = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.expect("connect");
        c.query_first::<i64, _>("SELECT COUNT(*) FROM test.r a, test.r b, test.r c").await
    });
    let watch_until = Instant::now() + Duration::from_millis(3 * FAILURE_TIMEOUT_MS);
    while Instant::now() < watch_until {
        let states = leaf_states(&cluster).await.expect("SHOW LEAVES answers");
        assert!(states.iter().all(|(_, s)| s == "online"), "a leaf went offline during a long statement: {states:?}");
        assert_eq!(count_x(&mut conn).await.expect("every partition answers"), 100);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!long.is_finished(), "the long statement was still running while the leaves were watched");
    long.abort();
}

async fn count_x(conn: &mut mysql_async::Conn) -> Result<i64, mysql_async::Error> {
    conn.query_first("SELECT COUNT(*) FROM test.x").await.map(|r| r.expect("a row"))
}

async fn insert_x(conn: &mut mysql_async::Conn, ids: std::ops::RangeInclusive<i64>) {
    let values: Vec<String> = ids.map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
}

/// History: `test` (2 partitions, one per leaf) is dropped while leaf 2 is down and created again on leaf 1 alone;
/// leaf 2 returns holding its copy of the old `test_1`. Leaf 1 is then removed with FORCE (both partitions unmapped,
/// its files kept) and added back; table `y` is created while partition 0 has no master.
/// Property: ATTACH PARTITION refuses the old incarnation's copy on leaf 2 and partition 0's copy that lacks `y`,
/// each with an error saying why, and adopts leaf 1's faithful copy of partition 1; the old rows never come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_partition_refuses_copies_it_cannot_trust() {
    let mut cluster = TestCluster::start("attachpart", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    insert_x(&mut conn, 1001..=1100).await;
    cluster.leaves[1].kill();
    wait_state(&cluster, 1, "offline").await;
    conn.query_drop("DROP DATABASE test").await.unwrap();
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    insert_x(&mut conn, 1..=100).await;
    cluster.leaves[1].spawn();
    wait_state(&cluster, 1, "online").await;

    let (port1, port2) = (cluster.leaves[0].port, cluster.leaves[1].port);
    conn.query_drop(format!("REMOVE LEAF '127.0.0.1':{port1} FORCE")).await.unwrap();
    conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{port1}")).await.unwrap();
    let refused = conn.query_drop(format!("ATTACH PARTITION test:1 ON '127.0.0.1':{port2}")).await.unwrap_err();
    assert!(refused.to_string().contains("another incarnation"), "{refused}");
    // The faithful copy of partition 1 is adopted; then `y` is created while partition 0 alone has no master.
    conn.query_drop(format!("ATTACH PARTITION test:1 ON '127.0.0.1':{port1}")).await.unwrap();
    conn.query_drop("CREATE TABLE test.y (id INT PRIMARY KEY)").await.unwrap();
    let refused = conn.query_drop(format!("ATTACH PARTITION test:0 ON '127.0.0.1':{port1}")).await.unwrap_err();
    assert!(refused.to_string().contains("missing: y"), "{refused}");

    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    let hosts: Vec<(String, String)> = partitions.iter().map(|r| (text(r, "Ordinal"), text(r, "Port"))).collect();
    assert_eq!(hosts, [("0".to_string(), "NULL".to_string()), ("1".to_string(), port1.to_string())]);
    let mut direct = cluster.leaves[0].connect().await;
    direct.query_drop("USE test_1").await.unwrap();
    let (n, max): (i64, i64) = direct.query_first("SELECT COUNT(*), MAX(id) FROM x").await.unwrap().unwrap();
    assert!(n > 0 && max <= 100, "partition 1 serves the new database's rows only ({n} rows, max id {max})");
    assert!(count_x(&mut conn).await.is_err(), "partition 0 is still unmapped");
}

/// History: the master aggregator runs with the test-only attach pause, so an attach stops right after the leaf is
/// marked `attaching`. Leaf 2 is killed, goes offline, restarts, and is seen `attaching`; it is frozen (SIGSTOP), the
/// master is SIGKILLed and restarted without the pause, and the leaf is thawed (SIGCONT). Property: the restarted
/// master finishes the attach on its own once the leaf answers: the leaf is online within the deadline and every
/// row answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attach_interrupted_by_a_master_crash_is_finished_after_restart() {
    let mut cluster = TestCluster::start("attachcrash", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    insert_x(&mut conn, 1..=100).await;
    drop(conn);
    cluster.master.kill();
    cluster.master.env.push(("CANOPY_TEST_ATTACH_PAUSE_MS".into(), "600000".into()));
    cluster.master.spawn();
    wait_state(&cluster, 1, "online").await;

    cluster.leaves[1].kill();
    wait_state(&cluster, 1, "offline").await;
    cluster.leaves[1].spawn();
    wait_state(&cluster, 1, "attaching").await;
    cluster.leaves[1].signal(libc::SIGSTOP);
    cluster.master.kill();
    cluster.master.env.clear();
    cluster.master.spawn();
    // A frozen leaf answers nothing, so nothing can attach it yet.
    drop(cluster.master.connect().await);
    assert_eq!(leaf_state(&cluster, 1).await.as_deref(), Some("attaching"));
    cluster.leaves[1].signal(libc::SIGCONT);
    wait_state(&cluster, 1, "online").await;
    let n = eventually("every row answers", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        count_x(&mut c).await.ok()
    })
    .await;
    assert_eq!(n, 100);
}

/// Lines of the master aggregator's log that record an attach of a leaf.
fn attach_lines(cluster: &TestCluster) -> usize {
    cluster.master.log().lines().filter(|l| l.contains("attach of leaf")).count()
}

/// History: database `gone` (a distributed and a reference table) is dropped while leaf 2 is down; leaf 2 restarts
/// holding its copies, which are orphans, pending. Property: the leaf comes online and stays online, the heartbeat
/// starts no further attach for the orphans (the master logs no new attach over many heartbeats), and CLEAR ORPHAN
/// DATABASES removes their files, reference copy included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_dropped_database_start_no_attach_and_can_be_cleared() {
    let mut cluster = TestCluster::start("droppedorphans", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE gone PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE gone.x (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE gone.r (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("INSERT INTO gone.x VALUES (1), (2), (3), (4), (5), (6), (7), (8)").await.unwrap();
    cluster.leaves[1].kill();
    wait_state(&cluster, 1, "offline").await;
    conn.query_drop("DROP DATABASE gone").await.unwrap();
    cluster.leaves[1].spawn();
    wait_state(&cluster, 1, "online").await;

    let files = cluster.leaves[1].data_dir.join("leaf");
    let (p1, p3, r) = (
        files.join("partitions/gone_1.sqlite"),
        files.join("partitions/gone_3.sqlite"),
        files.join("reference/gone.sqlite"),
    );
    assert!(p1.exists() && p3.exists() && r.exists(), "the dropped database's copies are still on leaf 2");
    let attaches = attach_lines(&cluster);
    assert!(attaches >= 1, "the returning leaf was attached once");
    // Twenty heartbeats (200 ms each): an attach loop would log an attach at each.
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        assert_eq!(leaf_state(&cluster, 1).await.as_deref(), Some("online"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(attach_lines(&cluster), attaches, "pending orphans started an attach");

    let plan: Vec<Row> = conn.query("EXPLAIN CLEAR ORPHAN DATABASES").await.unwrap();
    let actions: Vec<(String, String)> = plan.iter().map(|r| (text(r, "Database"), text(r, "Action"))).collect();
    assert_eq!(actions, [("gone_1".to_string(), "drop".to_string()), ("gone_3".to_string(), "drop".to_string())]);
    conn.query_drop("CLEAR ORPHAN DATABASES").await.unwrap();
    assert!(!p1.exists() && !p3.exists() && !r.exists(), "CLEAR ORPHAN DATABASES removed the files");
    let plan: Vec<Row> = conn.query("EXPLAIN CLEAR ORPHAN DATABASES").await.unwrap();
    assert!(plan.is_empty(), "no orphan is left");
    assert_eq!(leaf_state(&cluster, 1).await.as_deref(), Some("online"));
}

/// History: both leaves are killed and leaf 2's file of partition 1 is copied into leaf 1's data directory (as a
/// failed drop after a move would leave it); both restart, so leaf 1 holds an orphan copy of `test_1`. More rows
/// are written (partition 1 advances on leaf 2), then leaf 2 is removed with FORCE and added back.
/// Property: ATTACH PARTITION refuses leaf 1's older copy, naming leaf 2's newer one, and adopts leaf 2's copy;
/// every row answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_partition_refuses_a_copy_behind_another() {
    let mut cluster = TestCluster::start("attachbehind", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    insert_x(&mut conn, 1..=100).await;
    cluster.leaves[0].kill();
    cluster.leaves[1].kill();
    let partitions = |leaf: usize| cluster.leaves[leaf].data_dir.join("leaf").join("partitions");
    for suffix in ["", "-wal"] {
        let from = partitions(1).join(format!("test_1.sqlite{suffix}"));
        if from.exists() {
            std::fs::copy(&from, partitions(0).join(format!("test_1.sqlite{suffix}"))).unwrap();
        }
    }
    cluster.leaves[0].spawn();
    cluster.leaves[1].spawn();
    wait_state(&cluster, 0, "online").await;
    wait_state(&cluster, 1, "online").await;
    let mut conn = cluster.conn().await;
    let n = eventually("every partition serves", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        count_x(&mut c).await.ok()
    })
    .await;
    assert_eq!(n, 100);
    insert_x(&mut conn, 101..=200).await;

    let (port1, port2) = (cluster.leaves[0].port, cluster.leaves[1].port);
    conn.query_drop(format!("REMOVE LEAF '127.0.0.1':{port2} FORCE")).await.unwrap();
    conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{port2}")).await.unwrap();
    let refused = conn.query_drop(format!("ATTACH PARTITION test:1 ON '127.0.0.1':{port1}")).await.unwrap_err();
    assert!(refused.to_string().contains(&format!("'127.0.0.1':{port2} holds a newer copy")), "{refused}");
    conn.query_drop(format!("ATTACH PARTITION test:1 ON '127.0.0.1':{port2}")).await.unwrap();
    assert_eq!(count_x(&mut conn).await.unwrap(), 200);
}
