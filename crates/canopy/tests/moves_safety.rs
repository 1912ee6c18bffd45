//! Safety of online partition moves (DETACH LEAF) through real processes under faults: a catch-up cut short, a
//! metadata write failing right after the switch, a target frozen during the switch, and a CREATE DATABASE racing a
//! DETACH LEAF. Faults come from SIGSTOP or from the test-only `CANOPY_TEST_*` knobs of the server.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{TestCluster, eventually};

fn text(row: &Row, name: &str) -> String {
    let idx = row.columns_ref().iter().position(|c| c.name_str() == name).expect("column");
    match row.as_ref(idx).expect("value") {
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        mysql_async::Value::Int(i) => i.to_string(),
        mysql_async::Value::NULL => "NULL".into(),
        other => format!("{other:?}"),
    }
}

async fn leaf_state(cluster: &TestCluster, leaf: usize) -> Option<String> {
    let mut conn = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
    let rows: Vec<Row> = conn.query("SHOW LEAVES").await.ok()?;
    let port = cluster.leaves[leaf].port.to_string();
    rows.iter().find(|r| text(r, "Port") == port).map(|r| text(r, "State"))
}

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
