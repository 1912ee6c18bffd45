//! Leaf lifecycle in redundancy 1 through real processes: the spec's walkthrough (SIGKILL a leaf → offline, its
//! partitions unmapped and ERROR 1777; restart → online with its data; with auto_attach OFF → detached, ATTACH LEAF,
//! SHOW REBALANCE STATUS), a frozen leaf (SIGSTOP), leaf_failure_detection OFF, REMOVE LEAF FORCE and orphans, and
//! online moves by DETACH LEAF / REMOVE LEAF while a writer keeps inserting.

mod support;

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{TestCluster, eventually, leaf_state, text};

async fn wait_state(cluster: &TestCluster, leaf: usize, state: &str) {
    eventually(&format!("leaf {} {state}", leaf + 1), || async {
        (leaf_state(cluster, leaf).await.as_deref() == Some(state)).then_some(())
    })
    .await
}

async fn setup(name: &str) -> TestCluster {
    let cluster = TestCluster::start(name, 4).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 8").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    let values: Vec<String> = (1..=100).map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    cluster
}

async fn summary(conn: &mut mysql_async::Conn) -> Result<(i64, i64, i64), mysql_async::Error> {
    conn.query_first("SELECT MIN(id), MAX(id), COUNT(*) FROM test.x").await.map(|r| r.expect("a row"))
}

/// An id stored in partition `ordinal`, found by asking each id's partition through the leaves.
async fn id_in_partition(cluster: &TestCluster, ordinal: usize) -> i64 {
    let mut direct = cluster.leaves[ordinal % 4].connect().await;
    direct.query_drop(format!("USE test_{ordinal}")).await.unwrap();
    direct.query_first("SELECT MIN(id) FROM x").await.unwrap().expect("partition holds rows")
}

/// History: the spec's redundancy-1 walkthrough. Property: the states, unmapped partitions, error text, recovery
/// with data intact, and the ATTACH PARTITION record are as in the spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leaf_goes_offline_and_comes_back_with_its_data() {
    let mut cluster = setup("walkthrough").await;
    let mut conn = cluster.conn().await;
    let alive_id = id_in_partition(&cluster, 0).await;

    cluster.leaves[3].kill();
    wait_state(&cluster, 3, "offline").await;
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    let unmapped: Vec<String> =
        partitions.iter().filter(|r| text(r, "Host") == "NULL").map(|r| text(r, "Ordinal")).collect();
    assert_eq!(unmapped, ["3", "7"]);
    assert!(partitions.iter().filter(|r| text(r, "Host") == "NULL").all(|r| text(r, "Role") == "NULL"));
    let err = summary(&mut conn).await.unwrap_err();
    match err {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1777);
            assert_eq!(e.message, "Partition test:3 has no master instance.");
        }
        other => panic!("{other:?}"),
    }
    // Statements that touch only live partitions keep working.
    let found: Option<i64> = conn.query_first(format!("SELECT id FROM test.x WHERE id = {alive_id}")).await.unwrap();
    assert_eq!(found, Some(alive_id));

    cluster.leaves[3].spawn();
    wait_state(&cluster, 3, "online").await;
    assert_eq!(summary(&mut conn).await.unwrap(), (1, 100, 100));

    // Again with auto_attach OFF: the returning leaf waits, detached, for ATTACH LEAF.
    conn.query_drop("SET GLOBAL auto_attach = OFF").await.unwrap();
    cluster.leaves[3].kill();
    wait_state(&cluster, 3, "offline").await;
    cluster.leaves[3].spawn();
    wait_state(&cluster, 3, "detached").await;
    let mut direct = cluster.leaves[3].connect().await;
    let local: Vec<Row> = direct.query("SHOW DATABASES EXTENDED").await.unwrap();
    let pending: Vec<String> =
        local.iter().filter(|r| text(r, "State") == "pending").map(|r| text(r, "Database")).collect();
    assert_eq!(pending, ["test_3", "test_7"], "recovered partitions wait, pending, for the master aggregator");
    assert!(summary(&mut conn).await.is_err(), "a detached leaf serves nothing");

    conn.query_drop(format!("ATTACH LEAF '127.0.0.1': {}", cluster.leaves[3].port)).await.unwrap();
    assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("online"));
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    let steps: Vec<(String, String, String, String)> =
        status.iter().map(|r| (text(r, "Action"), text(r, "Ordinal"), text(r, "Phase"), text(r, "Status"))).collect();
    assert_eq!(
        steps,
        vec![
            ("ATTACH PARTITION".into(), "3".into(), "1".into(), "success".into()),
            ("ATTACH PARTITION".into(), "7".into(), "1".into(), "success".into()),
        ]
    );
    assert!(status.iter().all(|r| text(r, "Running_Time") != "NULL"));
    assert_eq!(summary(&mut conn).await.unwrap(), (1, 100, 100));
}

/// History: a leaf is frozen with SIGSTOP (its sockets stay open but nothing answers), then thawed.
/// Property: it is declared offline, and comes back online by itself once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leaf_goes_offline_and_returns_after_sigcont() {
    let cluster = setup("frozen").await;
    cluster.leaves[1].signal(libc::SIGSTOP);
    wait_state(&cluster, 1, "offline").await;
    cluster.leaves[1].signal(libc::SIGCONT);
    wait_state(&cluster, 1, "online").await;
    let mut conn = cluster.conn().await;
    assert_eq!(summary(&mut conn).await.unwrap(), (1, 100, 100));
}

/// History: failure detection is turned off, then a leaf is killed. Property: the heartbeat sees the leaf gone (no
/// latency) but the leaf stays `online`, as the spec says; restarting it needs no attach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_off_keeps_a_dead_leaf_online() {
    let mut cluster = setup("nodetect").await;
    let mut conn = cluster.conn().await;
    conn.query_drop("SET GLOBAL leaf_failure_detection = OFF").await.unwrap();
    cluster.leaves[2].kill();
    let port = cluster.leaves[2].port.to_string();
    let row = eventually("heartbeat notices the dead leaf", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let rows: Vec<Row> = c.query("SHOW LEAVES").await.ok()?;
        let row = rows.into_iter().find(|r| text(r, "Port") == port)?;
        (text(&row, "Average_Roundtrip_Latency_ms") == "NULL").then_some(row)
    })
    .await;
    assert_eq!(text(&row, "State"), "online");
    cluster.leaves[2].spawn();
    eventually("data back without an attach", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        summary(&mut c).await.ok().filter(|s| *s == (1, 100, 100))
    })
    .await;
    assert_eq!(leaf_state(&cluster, 2).await.as_deref(), Some("online"));
}

/// History: a leaf is removed with REMOVE LEAF FORCE while it runs, then added again.
/// Property: its partitions become unmapped (nothing dropped), it returns as a leaf whose copies are orphans, and
/// ATTACH PARTITION brings each back with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_leaf_force_then_reattach_partitions() {
    let cluster = setup("removeforce").await;
    let mut conn = cluster.conn().await;
    let port = cluster.leaves[3].port;
    conn.query_drop(format!("REMOVE LEAF '127.0.0.1':{port} FORCE")).await.unwrap();
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    assert_eq!(leaves.len(), 3);
    assert!(summary(&mut conn).await.is_err(), "partitions 3 and 7 are unmapped");

    conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{port}")).await.unwrap();
    let status: Vec<Row> = conn.query("SHOW CLUSTER STATUS").await.unwrap();
    let orphans: Vec<String> = status
        .iter()
        .filter(|r| text(r, "PORT") == port.to_string() && text(r, "ROLE") == "Orphan")
        .map(|r| text(r, "DATABASE_NAME"))
        .collect();
    assert_eq!(orphans, ["test_3", "test_7"]);
    // The orphans are the last copies of partitions 3 and 7: CLEAR ORPHAN DATABASES must keep them.
    let plan: Vec<Row> = conn.query("EXPLAIN CLEAR ORPHAN DATABASES").await.unwrap();
    assert_eq!(plan.len(), 2);
    assert!(plan.iter().all(|r| text(r, "Action").starts_with("keep")));
    conn.query_drop("CLEAR ORPHAN DATABASES").await.unwrap();
    for ordinal in [3, 7] {
        conn.query_drop(format!("ATTACH PARTITION test:{ordinal} ON '127.0.0.1':{port}")).await.unwrap();
    }
    assert_eq!(summary(&mut conn).await.unwrap(), (1, 100, 100));
    let plan: Vec<Row> = conn.query("EXPLAIN CLEAR ORPHAN DATABASES").await.unwrap();
    assert!(plan.is_empty(), "attached partitions are no longer orphans");
}

/// History: a writer inserts rows one statement at a time while leaf 4 is detached (its partitions moved online to
/// the other leaves), attached again, and leaf 3 is removed (partitions moved, then the leaf forgotten).
/// Property: no statement fails, every acknowledged row is there at the end, the moved partitions serve from their
/// new leaves, and SHOW REBALANCE STATUS records the COPY and PROMOTE steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_and_remove_move_partitions_online_without_losing_writes() {
    let cluster = setup("moves").await;
    let mut conn = cluster.conn().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let opts = cluster.master.opts();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut id = 1000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.query_drop(format!("INSERT INTO test.x VALUES ({id})")).await {
                    Ok(()) => acked.push(id),
                    Err(e) => failed.push((id, e.to_string())),
                }
                id += 1;
            }
            (acked, failed)
        })
    };
    let (leaf3, leaf4) = (cluster.leaves[2].port, cluster.leaves[3].port);

    conn.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await.unwrap();
    assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("detached"));
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    assert_eq!(partitions.len(), 8);
    assert!(partitions.iter().all(|r| text(r, "Port") != leaf4.to_string() && text(r, "Role") == "Master"));
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    let steps: Vec<(String, String, String)> =
        status.iter().map(|r| (text(r, "Action"), text(r, "Ordinal"), text(r, "Status"))).collect();
    assert_eq!(
        steps,
        vec![
            ("COPY PARTITION".into(), "3".into(), "success".into()),
            ("COPY PARTITION".into(), "7".into(), "success".into()),
            ("PROMOTE PARTITION WITH DROP".into(), "3".into(), "success".into()),
            ("PROMOTE PARTITION WITH DROP".into(), "7".into(), "success".into()),
        ]
    );
    let mut direct = cluster.leaves[3].connect().await;
    let left: Vec<String> = direct.query("SHOW DATABASES").await.unwrap();
    assert!(!left.iter().any(|d| d.starts_with("test_")), "the old copies were dropped: {left:?}");

    conn.query_drop(format!("ATTACH LEAF '127.0.0.1':{leaf4}")).await.unwrap();
    assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("online"));

    conn.query_drop(format!("REMOVE LEAF '127.0.0.1':{leaf3}")).await.unwrap();
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    assert!(leaves.iter().all(|r| text(r, "Port") != leaf3.to_string()));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "statements failed during the moves: {failed:?}");
    assert!(acked.len() > 10, "the writer made progress ({} rows)", acked.len());
    println!("rows written during the moves: {}", acked.len());
    let (min, max, count) = summary(&mut conn).await.unwrap();
    assert_eq!((min, count), (1, 100 + acked.len() as i64));
    assert_eq!(max, *acked.last().unwrap());
    for id in acked.iter().step_by(7) {
        let found: Option<i64> = conn.query_first(format!("SELECT id FROM test.x WHERE id = {id}")).await.unwrap();
        assert_eq!(found, Some(*id));
    }
}

/// History: rows written, SNAPSHOT DATABASE, more rows, then every leaf restarted.
/// Property: the change logs are truncated by the snapshot (positions stay, every entry but the last goes: a
/// returning copy is compared by its last entry) and every row survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_database_truncates_logs_and_keeps_data() {
    let mut cluster = setup("snapshot").await;
    let mut conn = cluster.conn().await;
    conn.query_drop("SNAPSHOT DATABASE test").await.unwrap();
    let mut direct = cluster.leaves[0].connect().await;
    direct.query_drop("USE test_0").await.unwrap();
    let (entries, last, position): (i64, i64, i64) = direct
        .query_first("SELECT COUNT(*), MAX(log_index), (SELECT log_index FROM _canopy_log_position) FROM _canopy_log")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entries, 1, "the snapshot truncated the log to its last entry");
    assert_eq!(last, position, "the entry kept is the last one");
    let values: Vec<String> = (101..=150).map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    drop(direct);
    for leaf in &mut cluster.leaves {
        leaf.kill();
        leaf.spawn();
    }
    let got = eventually("every partition attached again", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        summary(&mut c).await.ok().filter(|s| *s == (1, 150, 150))
    })
    .await;
    assert_eq!(got, (1, 150, 150));
}

/// Connections on the local RPC socket at `path` (the listener included), from /proc/net/unix.
fn local_socket_users(path: &std::path::Path) -> usize {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let path = path.canonicalize().map(|p| p.display().to_string()).unwrap_or_default();
    table.lines().filter(|l| !path.is_empty() && l.ends_with(&path)).count()
}

/// History: the master aggregator is SIGKILLed and restarted while the leaves keep running; before the restart the
/// local RPC socket of leaf 1 is deleted and leaf 2's is replaced by a plain file, so the restarted master learns
/// socket paths (from the leaves' pings) that it cannot use.
/// Property: nothing fails over: every leaf stays online, no partition moves, and the data answers at once (the
/// master falls back to TCP for leaves 1 and 2 and uses the local socket of the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_aggregator_restart_fails_nothing_over() {
    let mut cluster = setup("marestart").await;
    let socket = |i: usize| cluster.dir.join(format!("leaf-{i}")).join("rpc.sock");
    let (sock1, sock2, sock3) = (socket(1), socket(2), socket(3));
    let used = eventually("the master uses leaf 3's local socket", || async {
        summary(&mut cluster.conn().await).await.ok()?;
        (local_socket_users(&sock3) > 1).then_some(())
    })
    .await;
    assert_eq!(used, ());
    std::fs::remove_file(&sock1).unwrap();
    std::fs::remove_file(&sock2).unwrap();
    std::fs::write(&sock2, b"not a socket").unwrap();
    let before: Vec<Row> = cluster
        .conn()
        .await
        .query("SELECT ORDINAL, PORT, TERM FROM information_schema.DISTRIBUTED_PARTITIONS ORDER BY ORDINAL")
        .await
        .unwrap();
    cluster.master.kill();
    cluster.master.spawn();
    let mut conn = cluster.conn().await;
    assert_eq!(summary(&mut conn).await.unwrap(), (1, 100, 100));
    // Heartbeats have taught the new master every leaf's socket path by now; queries keep working through TCP.
    for _ in 0..20 {
        assert_eq!(summary(&mut conn).await.unwrap(), (1, 100, 100));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    assert!(leaves.iter().all(|r| text(r, "State") == "online"));
    let after: Vec<Row> = conn
        .query("SELECT ORDINAL, PORT, TERM FROM information_schema.DISTRIBUTED_PARTITIONS ORDER BY ORDINAL")
        .await
        .unwrap();
    let flat =
        |rows: &[Row]| rows.iter().map(|r| (text(r, "ORDINAL"), text(r, "PORT"), text(r, "TERM"))).collect::<Vec<_>>();
    assert_eq!(flat(&before), flat(&after), "same placement, same terms");
}

/// History: leaf 4 is detached while its partitions are large enough that copying takes a while; the leaf
/// receiving a copy is SIGKILLed mid-move, restarted, and the DETACH is run again.
/// Property: the interrupted move fails cleanly (no half-copy ever becomes a live instance, every row stays
/// readable once the killed leaf is back), and the rerun completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_interrupted_by_a_crash_is_cleaned_up_and_can_be_rerun() {
    let mut cluster = setup("crashmove").await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE TABLE test.big (id INT PRIMARY KEY, pad TEXT)").await.unwrap();
    for batch in 0..40 {
        let values: Vec<String> = (0..1000).map(|i| format!("({}, printf('%0500d', {i}))", batch * 1000 + i)).collect();
        conn.query_drop(format!("INSERT INTO test.big VALUES {}", values.join(","))).await.unwrap();
    }
    let leaf4 = cluster.leaves[3].port;
    let detach = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            c.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await
        })
    };
    // Kill the first copy's target as soon as the copy is running (polled tightly on one connection: a copy of a
    // few MB can take well under a second on a quiet machine).
    let mut watcher = cluster.conn().await;
    let deadline = std::time::Instant::now() + support::DEADLINE;
    let target_port = loop {
        let rows: Vec<Row> = watcher.query("SHOW REBALANCE STATUS ON test").await.unwrap();
        if let Some(row) = rows.iter().find(|r| text(r, "Action") == "COPY PARTITION" && text(r, "Status") == "running")
        {
            break text(row, "Target_Port");
        }
        assert!(std::time::Instant::now() < deadline, "no COPY PARTITION step was ever seen running");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    };
    let target = cluster.leaves.iter().position(|l| l.port.to_string() == target_port).expect("target is a leaf");
    cluster.leaves[target].kill();
    let outcome = detach.await.unwrap();
    assert!(outcome.is_err(), "the interrupted DETACH reports failure");
    cluster.leaves[target].spawn();
    wait_state(&cluster, target, "online").await;

    // No half-copy is live: every partition has exactly one master, on a leaf that serves it, and all rows answer.
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    let masters = partitions.iter().filter(|r| text(r, "Role") == "Master").count();
    assert_eq!(masters, 8);
    let count = eventually("every row readable", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        c.query_first::<i64, _>("SELECT COUNT(*) FROM test.big").await.ok()?
    })
    .await;
    assert_eq!(count, 40_000);
    assert_eq!(summary(&mut conn).await.unwrap(), (1, 100, 100));

    // The rerun completes and the data is intact.
    if leaf_state(&cluster, 3).await.as_deref() != Some("online") {
        conn.query_drop(format!("ATTACH LEAF '127.0.0.1':{leaf4}")).await.unwrap();
    }
    conn.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await.unwrap();
    assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("detached"));
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.big").await.unwrap().unwrap();
    assert_eq!(count, 40_000);
    assert_eq!(summary(&mut conn).await.unwrap(), (1, 100, 100));
}

/// History: leaf 4 is down while `test` is dropped; it returns (its stale copies of test_3 and test_7 become
/// orphans); `test` is created again with the same name and placement. Property: the new database never reuses the
/// stale copies: it starts empty, and no dropped row comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_database_never_resurrects_dropped_rows() {
    let mut cluster = setup("recreate").await;
    let mut conn = cluster.conn().await;
    cluster.leaves[3].kill();
    wait_state(&cluster, 3, "offline").await;
    conn.query_drop("DROP DATABASE test").await.unwrap();
    cluster.leaves[3].spawn();
    wait_state(&cluster, 3, "online").await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 8").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    let n: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(n, 0, "no row of the dropped database is served by the new one");
    conn.query_drop("INSERT INTO test.x VALUES (3), (7)").await.unwrap();
    assert_eq!(summary(&mut conn).await.unwrap(), (3, 7, 2));
}
