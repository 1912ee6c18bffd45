//! Redundancy 2 end to end through real processes: pairs, replica placement, failover to the pair with a larger
//! term, the returning leaf attached as replicas and the masters split evenly again, a deposed master that cannot
//! acknowledge anything, a replica killed mid-stream, both leaves of a pair down, and a diverged copy reprovisioned.

mod support;

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{TestCluster, eventually, text};

/// One row of INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS.
#[derive(Debug, Clone, PartialEq)]
struct Instance {
    ordinal: u32,
    port: u16,
    role: String,
    offline: bool,
    state: String,
    term: u64,
    id: u64,
}

async fn instances(conn: &mut mysql_async::Conn, db: &str) -> Vec<Instance> {
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT * FROM INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = '{db}' ORDER BY ORDINAL, ROLE"
        ))
        .await
        .expect("DISTRIBUTED_PARTITIONS");
    rows.iter()
        .map(|r| Instance {
            ordinal: text(r, "ORDINAL").parse().unwrap(),
            port: text(r, "PORT").parse().unwrap(),
            role: text(r, "ROLE"),
            offline: text(r, "IS_OFFLINE") == "1",
            state: text(r, "STATE"),
            term: text(r, "TERM").parse().unwrap(),
            id: text(r, "INSTANCE_ID").parse().unwrap(),
        })
        .collect()
}

fn master(all: &[Instance], ordinal: u32) -> Option<&Instance> {
    all.iter().find(|i| i.ordinal == ordinal && i.role == "Master")
}

fn replica(all: &[Instance], ordinal: u32) -> Option<&Instance> {
    all.iter().find(|i| i.ordinal == ordinal && i.role == "Replica")
}

async fn count(conn: &mut mysql_async::Conn, table: &str) -> i64 {
    conn.query_first(format!("SELECT COUNT(*) FROM {table}")).await.expect("count").expect("row")
}

async fn insert_range(conn: &mut mysql_async::Conn, table: &str, ids: std::ops::RangeInclusive<i64>) {
    let values: Vec<String> = ids.map(|i| format!("({i}, 'v{i}')")).collect();
    conn.query_drop(format!("INSERT INTO {table} (id, v) VALUES {}", values.join(","))).await.expect("insert");
}

/// Whether, for every pair, both leaves master the same number of partitions of `db` (and every partition has a
/// master and an in-sync replica on the other leaf of its pair).
fn balanced_and_in_sync(cluster: &TestCluster, all: &[Instance], partitions: u32, pairs: usize) -> bool {
    for k in 0..partitions {
        let (Some(m), Some(r)) = (master(all, k), replica(all, k)) else { return false };
        if r.state != "sync" || m.offline || r.offline {
            return false;
        }
        let (a, b) = (cluster.leaf_index(m.port), cluster.leaf_index(r.port));
        if a.abs_diff(b) != pairs {
            return false;
        }
    }
    (0..pairs).all(|p| {
        let masters = |i: usize| all.iter().filter(|x| x.role == "Master" && x.port == cluster.leaves[i].port).count();
        masters(p) == masters(p + pairs)
    })
}

/// History: the spec's redundancy-2 walkthrough. 8 leaves (leaf k paired with leaf k+4), `test` with 16
/// partitions, 100 rows; SIGKILL the leaf holding the master of test:3; read the 100 rows and write 100 more; restart
/// the leaf.
/// Property: SHOW LEAVES shows the pairs; every partition has a master and an in-sync replica on its pair; after the
/// kill test:3's master is on the pair with a larger term and the dead leaf's row stays as an offline replica; no
/// acknowledged row is lost; the returning leaf goes online by itself, its copies become in-sync replicas, the
/// masters are split evenly within each pair again, and all 200 rows are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_walkthrough_failover_and_return() {
    let mut cluster = TestCluster::start_paired("r2-walkthrough", 4, &[]).await;
    let mut conn = cluster.conn().await;
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    for (k, row) in leaves.iter().enumerate() {
        let pair = if k < 4 { k + 4 } else { k - 4 };
        assert_eq!(text(row, "Availability_Group"), if k < 4 { "1" } else { "2" });
        assert_eq!(
            text(row, "Pair_Port"),
            cluster.leaves[pair].port.to_string(),
            "leaf {} pairs with {}",
            k + 1,
            pair + 1
        );
    }
    conn.query_drop("CREATE DATABASE test PARTITIONS 16").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE test.r (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("INSERT INTO test.r VALUES (1), (2)").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=100).await;
    let before = instances(&mut conn, "test").await;
    assert_eq!(before.len(), 32, "a master and a replica per partition: {before:#?}");
    assert!(balanced_and_in_sync(&cluster, &before, 16, 4), "{before:#?}");
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    assert_eq!(partitions.len(), 32);
    let old = master(&before, 3).unwrap().clone();
    let old_replica = replica(&before, 3).unwrap().clone();
    assert_eq!(old_replica.term, 0, "replicas show term 0");

    let dead = cluster.leaf_index(old.port);
    cluster.leaves[dead].kill();
    let after = eventually("test:3 fails over to its pair", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        let moved = master(&all, 3).is_some_and(|m| m.port == old_replica.port);
        moved.then_some(all)
    })
    .await;
    let promoted = master(&after, 3).unwrap();
    assert!(promoted.term > old.term, "a larger term: {} after {}", promoted.term, old.term);
    assert_eq!(promoted.id, old_replica.id, "the same physical copy");
    let demoted = replica(&after, 3).expect("the dead leaf's row stays");
    assert!(demoted.offline && demoted.port == old.port, "{demoted:?}");
    assert_eq!(count(&mut conn, "test.x").await, 100);
    insert_range(&mut conn, "test.x", 101..=200).await;
    assert_eq!(count(&mut conn, "test.x").await, 200);
    assert_eq!(count(&mut conn, "test.r").await, 2);
    conn.query_drop("INSERT INTO test.r VALUES (3)").await.unwrap();

    cluster.leaves[dead].spawn();
    let back = eventually("the leaf returns and the masters are split evenly again", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        let online = support::leaf_state(&cluster, dead).await.as_deref() == Some("online");
        (online && balanced_and_in_sync(&cluster, &all, 16, 4)).then_some(all)
    })
    .await;
    let masters_back = back.iter().filter(|i| i.role == "Master" && i.port == old.port).count();
    assert_eq!(masters_back, 2, "half of the pair's 4 masters are on the returned leaf: {back:#?}");
    assert_eq!(count(&mut conn, "test.x").await, 200);
    let sum: i64 = conn.query_first("SELECT SUM(id) FROM test.x").await.unwrap().unwrap();
    assert_eq!(sum, 200 * 201 / 2);
    assert_eq!(count(&mut conn, "test.r").await, 3);
}
