//! Reference-table copies through real processes: every leaf holding a database keeps an identical copy of its
//! reference tables whatever happens to the writes (non-deterministic values, concurrent writers, a leaf killed in
//! the middle of a write) and to the leaves (detached, attached, removed, added), read back from each leaf's own
//! MySQL port, where `USE test` selects the leaf's reference copy.

mod support;

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{NodeProc, TestCluster, eventually, free_port};

fn text(value: mysql_async::Value) -> String {
    match value {
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        mysql_async::Value::Int(i) => i.to_string(),
        mysql_async::Value::UInt(i) => i.to_string(),
        other => other.as_sql(false),
    }
}

fn strings(row: Row) -> Vec<String> {
    row.unwrap().into_iter().map(text).collect()
}

/// The rows `sql` returns on `leaf`'s own reference copy of `test`.
async fn copy_on(leaf: &NodeProc, sql: &str) -> Vec<Vec<String>> {
    let mut direct = leaf.connect().await;
    direct.query_drop("USE test").await.unwrap_or_else(|e| panic!("leaf {} has no copy of test: {e}", leaf.port));
    let rows: Vec<Row> = direct.query(sql).await.unwrap_or_else(|e| panic!("{sql} on leaf {}: {e}", leaf.port));
    rows.into_iter().map(strings).collect()
}

/// Every leaf's copy (`leaves` are indexes into the cluster's leaves) answers `sql` with the same rows; returns them.
async fn same_on_every_copy(cluster: &TestCluster, leaves: &[usize], sql: &str) -> Vec<Vec<String>> {
    let first = copy_on(&cluster.leaves[leaves[0]], sql).await;
    for &leaf in &leaves[1..] {
        let other = copy_on(&cluster.leaves[leaf], sql).await;
        assert_eq!(other, first, "leaf {} answers {sql} differently from leaf {}", leaf + 1, leaves[0] + 1);
    }
    first
}

async fn query(conn: &mut mysql_async::Conn, sql: &str) -> Vec<Vec<String>> {
    let rows: Vec<Row> = conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(strings).collect()
}

async fn leaf_state(cluster: &TestCluster, port: u16) -> Option<String> {
    let mut conn = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
    let rows: Vec<Row> = conn.query("SHOW LEAVES").await.ok()?;
    let column = |row: &Row, name: &str| {
        let index = row.columns_ref().iter().position(|c| c.name_str() == name).expect("SHOW LEAVES column");
        row.as_ref(index).cloned().map(text)
    };
    rows.iter().find(|r| column(r, "Port").as_deref() == Some(&port.to_string())).and_then(|r| column(r, "State"))
}

/// Waits until the leaf at `cluster.leaves[leaf]` is online in the metadata and serves every partition it holds
/// (none is pending attach), i.e. the master aggregator has attached it again.
async fn wait_serving(cluster: &TestCluster, leaf: usize) {
    let node = &cluster.leaves[leaf];
    eventually(&format!("leaf {} online and attached", leaf + 1), || async {
        let online = leaf_state(cluster, node.port).await.as_deref() == Some("online");
        let mut direct = mysql_async::Conn::new(node.opts()).await.ok()?;
        let local: Vec<Row> = direct.query("SHOW DATABASES EXTENDED").await.ok()?;
        let pending = local.into_iter().map(strings).any(|r| r.iter().any(|v| v == "pending"));
        (online && !pending).then_some(())
    })
    .await
}

async fn setup(name: &str) -> TestCluster {
    let cluster = TestCluster::start(name, 4).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 8").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE test.r (k INT PRIMARY KEY, v BIGINT)").await.unwrap();
    conn.query_drop("INSERT INTO test.r VALUES (1, 0)").await.unwrap();
    cluster
}

const ALL_LEAVES: [usize; 4] = [0, 1, 2, 3];

/// History: `UPDATE r SET v = random()`, and inserts into a table whose column defaults to CURRENT_TIMESTAMP (which
/// differs between copies only when evaluating it on each copy crosses a second). Property: every leaf's copy holds
/// the same values (they were computed once, on the primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_deterministic_values_are_the_same_on_every_copy() {
    let cluster = setup("ref-random").await;
    let mut conn = cluster.conn().await;
    conn.query_drop("UPDATE test.r SET v = random()").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE test.stamped (k INT PRIMARY KEY, at DATETIME DEFAULT CURRENT_TIMESTAMP)")
        .await
        .unwrap();
    for k in 1..=3 {
        conn.query_drop(format!("INSERT INTO test.stamped (k) VALUES ({k})")).await.unwrap();
    }
    let copies = same_on_every_copy(&cluster, &ALL_LEAVES, "SELECT k, v FROM r ORDER BY k").await;
    assert_eq!(copies.len(), 1);
    same_on_every_copy(&cluster, &ALL_LEAVES, "SELECT k, at FROM stamped ORDER BY k").await;
    let through_aggregator = query(&mut conn, "SELECT k, v FROM test.r ORDER BY k").await;
    assert_eq!(through_aggregator, copies);
}

/// History: four sessions write the same row at the same time, two doing `v = v * 2`, two `v = v + 1` (modulo a
/// prime, so the value never overflows), a bounded number of times each. The two updates do not commute, so copies
/// that applied them in different orders differ. Property: every copy ends with the same value, and it is what the
/// aggregator answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_leave_every_copy_equal() {
    const WRITES_PER_WRITER: usize = 100;
    let cluster = setup("ref-writers").await;
    let updates =
        ["UPDATE test.r SET v = (v * 2) % 1000003 WHERE k = 1", "UPDATE test.r SET v = (v + 1) % 1000003 WHERE k = 1"];
    let mut writers = Vec::new();
    for update in updates.into_iter().cycle().take(4) {
        let opts = cluster.master.opts();
        writers.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            for _ in 0..WRITES_PER_WRITER {
                c.query_drop(update).await.unwrap_or_else(|e| panic!("{update}: {e}"));
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let copies = same_on_every_copy(&cluster, &ALL_LEAVES, "SELECT k, v FROM r").await;
    let mut conn = cluster.conn().await;
    assert_eq!(query(&mut conn, "SELECT k, v FROM test.r").await, copies);
    assert_ne!(copies[0][1], "0", "the writes happened");
}

/// History: leaf 2 is SIGKILLed and a row is inserted at once (before the failure detector can notice), then leaf 2
/// restarts; then the same with leaf 1, the reference primary. Property: once the leaf serves again every copy is
/// equal; an acknowledged insert is on every copy; a failed one is on every copy or on none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_killed_during_a_write_comes_back_with_an_equal_copy() {
    let mut cluster = setup("ref-kill").await;
    let mut conn = cluster.conn().await;
    for (leaf, k) in [(1usize, 2), (0, 3)] {
        cluster.leaves[leaf].kill();
        let written = conn.query_drop(format!("INSERT INTO test.r VALUES ({k}, {k})")).await;
        println!("insert of {k} with leaf {} killed: {written:?}", leaf + 1);
        cluster.leaves[leaf].spawn();
        wait_serving(&cluster, leaf).await;
        let copies = same_on_every_copy(&cluster, &ALL_LEAVES, "SELECT k, v FROM r ORDER BY k").await;
        let present = copies.iter().any(|r| r[0] == k.to_string());
        if written.is_ok() {
            assert!(present, "acknowledged insert of {k} is missing: {copies:?}");
        }
        assert_eq!(query(&mut conn, "SELECT k, v FROM test.r ORDER BY k").await, copies);
    }
    // The copies still take writes together.
    conn.query_drop("UPDATE test.r SET v = v + 10").await.unwrap();
    same_on_every_copy(&cluster, &ALL_LEAVES, "SELECT k, v FROM r ORDER BY k").await;
}

/// The join of every row of `x` with `r`, and with `r2`, as the partitions answer them (each partition joins against
/// its own leaf's copy).
async fn joins(conn: &mut mysql_async::Conn) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let with_r = query(conn, "SELECT x.id, r.v FROM test.x x JOIN test.r r ON r.k = x.k ORDER BY x.id").await;
    let with_r2 = query(conn, "SELECT x.id FROM test.x x JOIN test.r2 s ON s.k = x.k ORDER BY x.id").await;
    (with_r, with_r2)
}

/// History: leaf 4 is detached (its partitions move away) and attached again, empty; the reference table is
/// updated and a second one created; leaf 3 is removed (its partitions move, onto leaf 4 first). Then a fifth leaf
/// is added and leaf 1 removed (its partitions move onto the new leaf, which never held the database).
/// Property: every move succeeds; the joins of the distributed table with both reference tables answer as the
/// data says on every partition; every holder's copies are equal, the new leaf's included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_partitions_join_against_current_copies_on_old_and_new_leaves() {
    let mut cluster = setup("ref-moves").await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, k INT)").await.unwrap();
    let rows: Vec<String> = (1..=40).map(|i| format!("({i}, {})", i % 4)).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", rows.join(","))).await.unwrap();
    conn.query_drop("INSERT INTO test.r VALUES (0, 100), (2, 200), (3, 300)").await.unwrap();
    let (leaf1, leaf3, leaf4) = (cluster.leaves[0].port, cluster.leaves[2].port, cluster.leaves[3].port);

    conn.query_drop(format!("DETACH LEAF '127.0.0.1':{leaf4}")).await.unwrap();
    conn.query_drop(format!("ATTACH LEAF '127.0.0.1':{leaf4}")).await.unwrap();
    conn.query_drop("UPDATE test.r SET v = 111 WHERE k = 1").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE test.r2 (k INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("INSERT INTO test.r2 VALUES (1), (2)").await.unwrap();
    let expected = {
        let v = |k: i64| match k {
            0 => 100,
            1 => 111,
            other => other * 100,
        };
        let with_r: Vec<Vec<String>> = (1..=40).map(|i| vec![i.to_string(), v(i % 4).to_string()]).collect();
        let with_r2: Vec<Vec<String>> =
            (1..=40).filter(|i| [1, 2].contains(&(i % 4))).map(|i| vec![i.to_string()]).collect();
        (with_r, with_r2)
    };
    assert_eq!(joins(&mut conn).await, expected);

    conn.query_drop(format!("REMOVE LEAF '127.0.0.1':{leaf3}")).await.unwrap();
    let on_leaf4: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    let leaf4_masters = on_leaf4.into_iter().map(strings).filter(|r| r.contains(&leaf4.to_string())).count();
    assert!(leaf4_masters > 0, "leaf 3's partitions moved onto the empty leaf 4");
    assert_eq!(joins(&mut conn).await, expected, "after REMOVE LEAF of leaf 3");
    let holders = [0, 1, 3];
    let r = same_on_every_copy(&cluster, &holders, "SELECT k, v FROM r ORDER BY k").await;
    same_on_every_copy(&cluster, &holders, "SELECT k FROM r2 ORDER BY k").await;

    let fifth = NodeProc::start(&cluster.dir.join("leaf-5"), free_port());
    drop(fifth.connect().await);
    conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{}", fifth.port)).await.unwrap();
    cluster.leaves.push(fifth);
    conn.query_drop(format!("REMOVE LEAF '127.0.0.1':{leaf1}")).await.unwrap();
    assert_eq!(joins(&mut conn).await, expected, "after REMOVE LEAF of leaf 1");
    let holders = [1, 3, 4];
    assert_eq!(same_on_every_copy(&cluster, &holders, "SELECT k, v FROM r ORDER BY k").await, r);
    same_on_every_copy(&cluster, &holders, "SELECT k FROM r2 ORDER BY k").await;
    // The copies keep taking writes together.
    conn.query_drop("UPDATE test.r SET v = v + 1").await.unwrap();
    same_on_every_copy(&cluster, &holders, "SELECT k, v FROM r ORDER BY k").await;
}

/// Lines of the master aggregator's log that report a failed attach.
fn failed_attaches(cluster: &TestCluster) -> usize {
    cluster.master.log().lines().filter(|l| l.contains("attaching leaf") && l.contains("failed")).count()
}

/// History: two leaves, both holding the database. Leaf 2 is SIGKILLed and a row inserted (acknowledged: leaf 1
/// has it, leaf 2 is taken out of service); then leaf 1 is killed too, and leaf 2 restarts first, while leaf 1, the
/// only holder of the newest copy, is still down; then leaf 1 restarts. Property: leaf 2 does not serve its older
/// copy while the newest is unreachable, and once both serve, the acknowledged row is on both copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_leaf_never_replaces_a_newer_copy_that_is_still_down() {
    let mut cluster = TestCluster::start("ref-newest", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE test.r (k INT PRIMARY KEY, v BIGINT)").await.unwrap();
    conn.query_drop("INSERT INTO test.r VALUES (1, 0)").await.unwrap();
    cluster.leaves[1].kill();
    conn.query_drop("INSERT INTO test.r VALUES (2, 2)").await.expect("the primary commits; leaf 2 is taken out");
    eventually("leaf 2 offline", || async {
        (leaf_state(&cluster, cluster.leaves[1].port).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    cluster.leaves[0].kill();
    eventually("leaf 1 offline", || async {
        (leaf_state(&cluster, cluster.leaves[0].port).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    let failed_before = failed_attaches(&cluster);
    cluster.leaves[1].spawn();
    eventually("leaf 2 attached, or its attach refused", || async {
        let online = leaf_state(&cluster, cluster.leaves[1].port).await.as_deref() == Some("online");
        (online || failed_attaches(&cluster) > failed_before).then_some(())
    })
    .await;
    cluster.leaves[0].spawn();
    wait_serving(&cluster, 0).await;
    wait_serving(&cluster, 1).await;
    let copies = same_on_every_copy(&cluster, &[0, 1], "SELECT k, v FROM r ORDER BY k").await;
    assert_eq!(copies, vec![vec!["1".to_string(), "0".into()], vec!["2".into(), "2".into()]]);
    assert_eq!(query(&mut conn, "SELECT k, v FROM test.r ORDER BY k").await, copies);
}

/// Commits `sql` to the reference copy of `test` in the stopped leaf's files, through the leaves' own storage engine
/// (so the copy's change log records it, as it would a write that reached this copy only). Writes through a leaf's
/// MySQL port are refused, and the leaf must be stopped so the file has one writer.
fn commit_behind_the_cluster(leaf: &support::NodeProc, sql: &str) {
    let store = canopy_storage::LeafStore::open(&leaf.data_dir.join("leaf")).expect("open the stopped leaf's store");
    store.execute_on_reference("test", sql).expect("commit on the reference copy");
}

/// History: leaf 3 is stopped, its reference copy gets a commit behind the master aggregator's back (its log has an
/// entry the primary's lacks), the leaf restarts and a write goes through the aggregator. Property: the diverged copy
/// is replaced by the primary's before the leaf serves again or at that write, so every copy is equal again and
/// holds only the aggregator's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_copy_is_replaced_at_the_next_write() {
    let mut cluster = setup("ref-diverged").await;
    cluster.leaves[2].kill();
    commit_behind_the_cluster(&cluster.leaves[2], "INSERT INTO r VALUES (9, 9)");
    cluster.leaves[2].spawn();
    wait_serving(&cluster, 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("UPDATE test.r SET v = 5 WHERE k = 1").await.unwrap();
    let copies = same_on_every_copy(&cluster, &ALL_LEAVES, "SELECT k, v FROM r ORDER BY k").await;
    assert_eq!(copies, vec![vec!["1".to_string(), "5".into()]]);
}

/// History: the reference primary's copy (leaf 1) holds a commit the other copies lack, which is what a master
/// aggregator crash between the primary's commit and the catch-ups leaves behind: the master aggregator is
/// SIGKILLed, leaf 1 is stopped, its copy gets the commit in its files, leaf 1 restarts, then the master aggregator
/// restarts (so it never saw leaf 1 away). Property: the restarted master aggregator brings every copy level with the
/// primary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_aggregator_brings_every_copy_level_with_the_primary() {
    let mut cluster = setup("ref-marestart").await;
    cluster.master.kill();
    cluster.leaves[0].kill();
    commit_behind_the_cluster(&cluster.leaves[0], "INSERT INTO r VALUES (2, 2)");
    cluster.leaves[0].spawn();
    cluster.master.spawn();
    let expected = vec![vec!["1".to_string(), "0".into()], vec!["2".into(), "2".into()]];
    eventually("every copy has the primary's last commit", || async {
        for leaf in &cluster.leaves {
            if copy_on(leaf, "SELECT k, v FROM r ORDER BY k").await != expected {
                return None;
            }
        }
        Some(())
    })
    .await;
    let mut conn = cluster.conn().await;
    assert_eq!(query(&mut conn, "SELECT k, v FROM test.r ORDER BY k").await, expected);
}
