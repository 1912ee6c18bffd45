//! Attach safety and leaf liveness through real processes: a heartbeat ping never waits for a long statement on
//! the leaf, ATTACH PARTITION refuses copies it cannot trust, an attach interrupted by a master crash is resumed,
//! and copies of dropped databases neither loop the heartbeat nor resist CLEAR ORPHAN DATABASES.

mod support;

use std::time::{Duration, Instant};

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
/// is ever reported offline: the leaf's pings are answered while the statement holds its reference connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_statement_never_makes_its_leaf_offline() {
    const FAILURE_TIMEOUT_MS: u64 = 2000;
    let cluster = TestCluster::start("longstmt", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE test.r (id INT PRIMARY KEY)").await.unwrap();
    let values: Vec<String> = (1..=3000).map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO test.r VALUES {}", values.join(","))).await.unwrap();
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!long.is_finished(), "the long statement was still running while the leaves were watched");
    long.abort();
}
