//! Safety of online partition moves (DETACH LEAF) through real processes under faults: a catch-up cut short, a
//! metadata write failing right after the switch, a target frozen during the switch, and a CREATE DATABASE racing a
//! DETACH LEAF. Faults come from SIGSTOP or from the test-only `CANOPY_TEST_*` knobs of the server.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{TestCluster, eventually, leaf_state, text};

/// Four leaves (every node with `env`), database `test` of 8 partitions, table `x` with ids 1..=`rows`, each row
/// padded so that a partition takes a moment to copy.
async fn setup(name: &str, env: &[(&str, &str)], rows: usize) -> TestCluster {
    let cluster = TestCluster::start_with_env(name, 4, env).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 8").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, pad TEXT)").await.unwrap();
    for start in (1..=rows).step_by(1000) {
        let values: Vec<String> =
            (start..(start + 1000).min(rows + 1)).map(|i| format!("({i}, printf('%0200d', {i}))")).collect();
        conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    }
    cluster
}

/// A writer inserting one row per statement from id 1_000_000 until stopped; returns the acknowledged ids.
fn start_writer(cluster: &TestCluster, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<i64>> {
    let opts = cluster.master.opts();
    tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        let mut acked = Vec::new();
        let mut id = 1_000_000i64;
        while !stop.load(Ordering::Relaxed) {
            if c.query_drop(format!("INSERT INTO test.x VALUES ({id}, 'w')")).await.is_ok() {
                acked.push(id);
            }
            id += 1;
        }
        acked
    })
}

/// The masters of `test`'s partitions: (ordinal, leaf port).
async fn masters(conn: &mut mysql_async::Conn) -> Vec<(String, String)> {
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    partitions.iter().filter(|r| text(r, "Role") == "Master").map(|r| (text(r, "Ordinal"), text(r, "Port"))).collect()
}

/// Every id in `acked` and every preloaded id 1..=`rows` is readable.
async fn assert_rows_present(conn: &mut mysql_async::Conn, rows: usize, acked: &[i64]) {
    let ids: Vec<i64> = conn.query("SELECT id FROM test.x").await.unwrap();
    let ids: BTreeSet<i64> = ids.into_iter().collect();
    let missing: Vec<i64> = (1..=rows as i64).chain(acked.iter().copied()).filter(|id| !ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged rows are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// History: every leaf's catch-up is cut to one round of one log entry (test-only knobs), and leaf 4 is detached
/// while a writer keeps inserting, so each copy falls behind its source. Property: no acknowledged row is lost: the
/// move either completes or fails cleanly (every partition keeps one master, all rows readable); once the writer
/// stops, a rerun completes, and every acknowledged row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_cut_short_never_loses_acknowledged_rows() {
    let env = [("CANOPY_TEST_CATCH_UP_ROUNDS_MAX", "1"), ("CANOPY_TEST_CATCH_UP_BATCH_BYTES", "1")];
    let rows = 20_000;
    let cluster = setup("shortcatchup", &env, rows).await;
    let mut conn = cluster.conn().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&cluster, stop.clone());
    // Let the writer get going so every copy has a backlog.
    eventually("the writer commits", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let n: i64 = c.query_first("SELECT COUNT(*) FROM test.x WHERE id >= 1000000").await.ok()??;
        (n > 20).then_some(())
    })
    .await;
    let leaf4 = cluster.leaves[3].port;
    let first = conn.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await;
    println!("DETACH under a short catch-up: {first:?}");
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(acked.len() > 20, "the writer made progress ({} rows)", acked.len());
    assert_eq!(masters(&mut conn).await.len(), 8, "every partition keeps exactly one master");
    assert_rows_present(&mut conn, rows, &acked).await;
    if first.is_err() {
        assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("online"), "a failed DETACH leaves the leaf online");
        conn.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await.expect("the rerun without writers completes");
    }
    assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("detached"));
    let placed = masters(&mut conn).await;
    assert_eq!(placed.len(), 8);
    assert!(placed.iter().all(|(_, port)| *port != leaf4.to_string()), "{placed:?}");
    assert_rows_present(&mut conn, rows, &acked).await;
}

/// History: the master aggregator's first metadata write after a `PromoteWithDrop` fails (test-only fault: it is
/// the PROMOTE step's status record), while leaf 4 is detached under a writer. Property: nothing is undone after
/// the switch: the DETACH completes, the first moved partition keeps its new master and that master's file, and
/// every acknowledged row is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_write_after_the_switch_keeps_the_new_master() {
    let env = [("CANOPY_TEST_FAIL_METADATA_WRITE_AFTER", "PromoteWithDrop")];
    let rows = 2_000;
    let cluster = setup("statuswrite", &env, rows).await;
    let mut conn = cluster.conn().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&cluster, stop.clone());
    let leaf4 = cluster.leaves[3].port;
    let detached = conn.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    let placed = masters(&mut conn).await;
    assert_eq!(placed.len(), 8, "every partition keeps a master: {placed:?}");
    let (_, port) = placed.iter().find(|(ordinal, _)| ordinal == "3").expect("test:3 has a master").clone();
    assert_ne!(port, leaf4.to_string(), "test:3 was moved first");
    let target = cluster.leaves.iter().find(|l| l.port.to_string() == port).expect("the master is a leaf");
    assert!(target.data_dir.join("leaf/partitions/test_3.sqlite").exists(), "the new master's file is still there");
    assert_rows_present(&mut conn, rows, &acked).await;
    detached.expect("the DETACH completes");
    assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("detached"));
}

/// The smallest and largest ids stored in partition `ordinal` of `test`, asked of leaf `leaf` (which holds it).
async fn ids_in_partition(cluster: &TestCluster, leaf: usize, ordinal: usize) -> (i64, i64) {
    let mut direct = cluster.leaves[leaf].connect().await;
    direct.query_drop(format!("USE test_{ordinal}")).await.unwrap();
    direct.query_first("SELECT MIN(id), MAX(id) FROM x").await.unwrap().expect("partition holds rows")
}

/// The target port of the PROMOTE step of `ordinal` once SHOW REBALANCE STATUS shows it running (polled tightly).
async fn promote_running(conn: &mut mysql_async::Conn, ordinal: &str) -> String {
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        let rows: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
        let running = rows.iter().find(|r| {
            text(r, "Action") == "PROMOTE PARTITION WITH DROP"
                && text(r, "Ordinal") == ordinal
                && text(r, "Status") == "running"
        });
        if let Some(row) = running {
            return text(row, "Target_Port");
        }
        assert!(Instant::now() < deadline, "the PROMOTE of {ordinal} was never seen running: {rows:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A statement holding the gates of the partitions of `absent` and `slow_id` for a few seconds: a scatter over
/// both that is slow only where `slow_id` is (`absent`'s partition holds no matching row, so its connection stays
/// free). Returns what it found and how long it took.
fn spawn_slow_scatter(
    cluster: &TestCluster,
    absent: i64,
    slow_id: i64,
) -> tokio::task::JoinHandle<(Option<i64>, Duration)> {
    let opts = cluster.master.opts();
    tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        let started = Instant::now();
        let sql = format!(
            "SELECT id FROM test.x WHERE id IN ({absent}, {slow_id}) AND (WITH RECURSIVE c(n) AS (SELECT 1 \
             UNION ALL SELECT n + 1 FROM c WHERE n < 20000000) SELECT count(*) FROM c) > 0"
        );
        let found: Option<i64> = c.query_first(sql).await.unwrap();
        (found, started.elapsed())
    })
}

/// History: leaf 4 is detached; its first partition's PROMOTE waits for a slow statement that holds the partition's
/// gate (a scatter over test:3, where it finds nothing, and test:2, where it is slow), and meanwhile the move's
/// target is frozen (SIGSTOP), so the switch then stalls on the target with the gate closed. Property: statements on the partition resume within the switch deadline, far
/// below the 600 s RPC timeout; the DETACH fails cleanly; after SIGCONT a rerun completes with every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_target_holds_the_gate_only_until_the_switch_deadline() {
    let rows = 2_000;
    let cluster = setup("frozentarget", &[], rows).await;
    let mut conn = cluster.conn().await;
    // The frozen leaf stays `online`, so the rerun needs no re-attach.
    conn.query_drop("SET GLOBAL leaf_failure_detection = OFF").await.unwrap();
    let leaf4 = cluster.leaves[3].port;
    // `absent` routes to test:3 but is not there, so test:3's part of the scatter is quick and leaves its
    // connection free for the copy; the slow part runs on test:2 (leaf 3, not the move's target), where `slow_id` is.
    let (absent, id) = ids_in_partition(&cluster, 3, 3).await;
    conn.query_drop(format!("DELETE FROM test.x WHERE id = {absent}")).await.unwrap();
    let (slow_id, _) = ids_in_partition(&cluster, 2, 2).await;
    let slow = spawn_slow_scatter(&cluster, absent, slow_id);
    let detach = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            c.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await
        })
    };
    let mut watcher = cluster.conn().await;
    let target_port = promote_running(&mut watcher, "3").await;
    let target = cluster.leaves.iter().position(|l| l.port.to_string() == target_port).expect("target is a leaf");
    assert_ne!(target, 2, "the move's target is not the leaf running the slow part");
    cluster.leaves[target].signal(libc::SIGSTOP);
    let unfinished = !slow.is_finished();
    let (found, took) = slow.await.unwrap();
    println!("the slow statement took {took:?}");
    assert!(unfinished, "the slow statement still holds the gate when the target freezes");
    assert_eq!(found, Some(slow_id));
    let frozen_at = Instant::now();
    // Each try is bounded: a statement waiting at a closed gate would otherwise wait for the whole switch.
    let back: i64 = eventually("a point SELECT on test:3 answers while the target is frozen", || async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
            c.query_first::<i64, _>(format!("SELECT id FROM test.x WHERE id = {id}")).await.ok()?
        })
        .await
        .ok()?
    })
    .await;
    assert_eq!(back, id);
    println!("statements on test:3 resumed {:?} after the slow statement ended", frozen_at.elapsed());
    cluster.leaves[target].signal(libc::SIGCONT);
    let err = detach.await.unwrap().expect_err("the stalled switch is abandoned");
    // Abandoned by the switch deadline, or earlier when a new connection to the frozen target cannot finish its
    // authentication handshake (RPC handshake timeout): either way before the commit, so the source serves again.
    let text = err.to_string();
    assert!(text.contains("did not finish within") || text.contains("is unreachable"), "{err}");
    assert_eq!(masters(&mut conn).await.len(), 8);
    conn.query_drop(format!("INSERT INTO test.x VALUES ({absent}, 'back')")).await.unwrap();
    assert_rows_present(&mut conn, rows, &[]).await;
    conn.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await.expect("the rerun completes");
    let placed = masters(&mut conn).await;
    assert!(placed.len() == 8 && placed.iter().all(|(_, port)| *port != leaf4.to_string()), "{placed:?}");
    assert_rows_present(&mut conn, rows, &[]).await;
}

/// History: leaf 4 is detached; the PROMOTE of its last partition (test:7) waits for a slow statement holding that
/// partition's gate, and meanwhile a CREATE DATABASE is issued (it queues for the operation lock). Property: the
/// CREATE runs after the DETACH finished, so the detached leaf holds no partition of the new database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_database_during_a_detach_places_nothing_on_the_detached_leaf() {
    let rows = 2_000;
    let cluster = setup("detachcreate", &[], rows).await;
    let mut conn = cluster.conn().await;
    let leaf4 = cluster.leaves[3].port;
    let (absent, _) = ids_in_partition(&cluster, 3, 7).await;
    conn.query_drop(format!("DELETE FROM test.x WHERE id = {absent}")).await.unwrap();
    let (slow_id, _) = ids_in_partition(&cluster, 2, 2).await;
    let slow = spawn_slow_scatter(&cluster, absent, slow_id);
    let detach = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            c.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await
        })
    };
    let mut watcher = cluster.conn().await;
    promote_running(&mut watcher, "7").await;
    let create = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            c.query_drop("CREATE DATABASE other PARTITIONS 8").await
        })
    };
    let unfinished = !slow.is_finished();
    let (found, took) = slow.await.unwrap();
    println!("the slow statement took {took:?}");
    assert!(unfinished, "the slow statement still holds test:7's gate when the CREATE is sent");
    assert_eq!(found, Some(slow_id));
    detach.await.unwrap().expect("the DETACH completes");
    create.await.unwrap().expect("the CREATE DATABASE completes");
    assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("detached"));
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON other").await.unwrap();
    assert_eq!(partitions.len(), 8);
    let on_detached: Vec<String> =
        partitions.iter().filter(|r| text(r, "Port") == leaf4.to_string()).map(|r| text(r, "Ordinal")).collect();
    assert!(on_detached.is_empty(), "partitions of `other` placed on the detached leaf: {on_detached:?}");
}

/// History: leaf 4 is detached with partitions of a few MB; the target of the first COPY is frozen (SIGSTOP) while
/// the copy runs, and thawed once the COPY step has failed. Property: the master aggregator gives the copy up once
/// the target has answered no ping for a minute (not after the 600 s request timeout); the DETACH fails cleanly
/// (every partition keeps its master, every row answers) and, once the target is back, a rerun completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_copy_target_fails_the_copy_once_it_stops_answering() {
    let rows = 60_000;
    let cluster = setup("frozencopy", &[], rows).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("SET GLOBAL leaf_failure_detection = OFF").await.unwrap();
    // One copy at a time off the leaf (the DETACH's plan copies in parallel otherwise), so the frozen target's COPY
    // is the only step running into the freeze and its error is the statement's.
    conn.query_drop("SET GLOBAL max_concurrent_moves = 1").await.unwrap();
    let leaf4 = cluster.leaves[3].port;
    let detach = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            c.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await
        })
    };
    let mut watcher = cluster.conn().await;
    let step = |status: &'static str| {
        move |r: &Row| text(r, "Action") == "COPY PARTITION" && text(r, "Ordinal") == "3" && text(r, "Status") == status
    };
    let deadline = Instant::now() + support::DEADLINE;
    let target_port = loop {
        let rows: Vec<Row> = watcher.query("SHOW REBALANCE STATUS ON test").await.unwrap();
        if let Some(row) = rows.iter().find(|r| step("running")(r)) {
            break text(row, "Target_Port");
        }
        assert!(Instant::now() < deadline, "no COPY PARTITION step was ever seen running");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let target = cluster.leaves.iter().position(|l| l.port.to_string() == target_port).expect("target is a leaf");
    cluster.leaves[target].signal(libc::SIGSTOP);
    let frozen_at = Instant::now();
    // The copy silence bound is 60 s; allow it and the test's own deadline, far below 600 s.
    let failed = tokio::time::timeout(Duration::from_secs(60) + support::DEADLINE, async {
        loop {
            let rows: Vec<Row> = watcher.query("SHOW REBALANCE STATUS ON test").await.unwrap();
            if rows.iter().any(|r| step("failed")(r)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    cluster.leaves[target].signal(libc::SIGCONT);
    failed.expect("the COPY step fails while its target is frozen");
    println!("the COPY failed {:?} after the freeze", frozen_at.elapsed());
    let err = detach.await.unwrap().expect_err("the DETACH fails");
    assert!(err.to_string().contains("answered no ping"), "{err}");
    assert_eq!(masters(&mut conn).await.len(), 8);
    assert_rows_present(&mut conn, rows, &[]).await;
    // The thawed target may still be finishing its abandoned copy (an orphan it then holds): retry until the rerun
    // finds it done.
    eventually("a rerun of the DETACH completes", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        c.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await.ok()
    })
    .await;
    let placed = masters(&mut conn).await;
    assert!(placed.len() == 8 && placed.iter().all(|(_, port)| *port != leaf4.to_string()), "{placed:?}");
    assert_rows_present(&mut conn, rows, &[]).await;
}

/// History: leaf 4 is detached; the switch of its last partition (test:7) is held up for a few seconds (a slow
/// statement holds the gate, then the target is frozen until the fenced source has been seen `pending` by the
/// heartbeat, which queues an automatic attach behind the DETACH), then the target is thawed and the DETACH
/// completes. A CREATE DATABASE issued afterwards queues behind that attach. Property: the leaf stays detached and
/// gets no partition of the new database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_attach_queued_behind_a_detach_does_not_undo_it() {
    let rows = 2_000;
    let cluster = setup("detachattach", &[], rows).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("SET GLOBAL leaf_failure_detection = OFF").await.unwrap();
    let leaf4 = cluster.leaves[3].port;
    let (absent, _) = ids_in_partition(&cluster, 3, 7).await;
    conn.query_drop(format!("DELETE FROM test.x WHERE id = {absent}")).await.unwrap();
    let (slow_id, _) = ids_in_partition(&cluster, 2, 2).await;
    let slow = spawn_slow_scatter(&cluster, absent, slow_id);
    let detach = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            c.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await
        })
    };
    let mut watcher = cluster.conn().await;
    let target_port = promote_running(&mut watcher, "7").await;
    let target = cluster.leaves.iter().position(|l| l.port.to_string() == target_port).expect("target is a leaf");
    assert_ne!(target, 2, "the move's target is not the leaf running the slow part");
    cluster.leaves[target].signal(libc::SIGSTOP);
    let (found, _) = slow.await.unwrap();
    assert_eq!(found, Some(slow_id));
    eventually("the fenced source shows test_7 pending", || async {
        let mut direct = mysql_async::Conn::new(cluster.leaves[3].opts()).await.ok()?;
        let rows: Vec<Row> = direct.query("SHOW DATABASES EXTENDED").await.ok()?;
        rows.iter().any(|r| text(r, "Database") == "test_7" && text(r, "State") == "pending").then_some(())
    })
    .await;
    // Pings go every 200 ms: give the heartbeat several to see the pending partition (well within the switch
    // deadline, so the switch still completes). Without this the test cannot fail, but it cannot wrongly pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.leaves[target].signal(libc::SIGCONT);
    detach.await.unwrap().expect("the DETACH completes");
    conn.query_drop("CREATE DATABASE other PARTITIONS 8").await.unwrap();
    assert_eq!(leaf_state(&cluster, 3).await.as_deref(), Some("detached"));
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON other").await.unwrap();
    assert!(partitions.iter().all(|r| text(r, "Port") != leaf4.to_string()), "`other` placed on the detached leaf");
}
