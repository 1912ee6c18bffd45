//! The statements sysbench's OLTP workloads send, exactly as it sends them (prepared statements over the binary
//! protocol, BEGIN/COMMIT around reads, MySQL-only table options), through a real cluster, with their answers
//! checked against what the loaded data says they must be.

mod support;

use mysql_async::prelude::Queryable;
use support::TestCluster;

const TABLE_SIZE: i64 = 2000;

/// sysbench's oltp_common.lua `create_table` for `--auto-inc=on` (the default), with its versioned comment.
const CREATE: &str = "CREATE TABLE sbtest1(
  id INTEGER NOT NULL AUTO_INCREMENT,
  k INTEGER DEFAULT '0' NOT NULL,
  c CHAR(120) DEFAULT '' NOT NULL,
  pad CHAR(60) DEFAULT '' NOT NULL,
  PRIMARY KEY (id)
) /*! ENGINE = innodb */ ";

fn c_value(id: i64) -> String {
    format!("{:011}-{:011}-{:011}", id * 7 % 1000, id * 13 % 1000, id % 100)
}

/// History: prepare (table, bulk insert without ids, secondary index), then every query shape of oltp_read_only,
/// oltp_point_select, oltp_update_index/non_index, oltp_delete and oltp_insert, then cleanup.
/// Property: each runs without error and answers what the data says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_statements_work_and_answer_correctly() {
    let cluster = TestCluster::start("sysbench", 3).await;
    let mut admin = cluster.conn().await;
    admin.query_drop("CREATE DATABASE sbtest").await.unwrap();
    let opts = mysql_async::OptsBuilder::from_opts(cluster.master.opts()).db_name(Some("sbtest"));
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();

    // prepare
    conn.query_drop(CREATE).await.unwrap();
    let mut k_of = vec![0i64; TABLE_SIZE as usize + 1];
    for chunk in (1..=TABLE_SIZE).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|&i| {
                let k = i * 31 % 1000;
                format!("({k}, '{}', '{:011}')", c_value(i), i)
            })
            .collect();
        conn.query_drop(format!("INSERT INTO sbtest1(k, c, pad) VALUES{}", values.join(","))).await.unwrap();
    }
    conn.query_drop("CREATE INDEX k_1 ON sbtest1(k)").await.unwrap();
    // AUTO_INCREMENT ids are unique and increasing per aggregator: one aggregator, one connection, so 1..=N.
    let ids: Vec<i64> = conn.query("SELECT id FROM sbtest1 ORDER BY id").await.unwrap();
    assert_eq!(ids, (1..=TABLE_SIZE).collect::<Vec<_>>());
    for i in 1..=TABLE_SIZE {
        k_of[i as usize] = i * 31 % 1000;
    }

    // oltp_point_select / oltp_read_only, inside BEGIN ... COMMIT as sysbench sends them.
    conn.query_drop("BEGIN").await.unwrap();
    for id in [1, 17, 999, TABLE_SIZE] {
        let c: Option<String> = conn.exec_first("SELECT c FROM sbtest1 WHERE id=?", (id,)).await.unwrap();
        assert_eq!(c, Some(c_value(id)));
    }
    let (lo, hi) = (100i64, 199i64);
    let simple: Vec<String> = conn.exec("SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?", (lo, hi)).await.unwrap();
    assert_eq!(simple.len(), 100);
    let sum: Option<i64> =
        conn.exec_first("SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ? AND ?", (lo, hi)).await.unwrap();
    assert_eq!(sum, Some((lo..=hi).map(|i| k_of[i as usize]).sum()));
    let ordered: Vec<String> =
        conn.exec("SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c", (lo, hi)).await.unwrap();
    let mut expected: Vec<String> = (lo..=hi).map(c_value).collect();
    expected.sort();
    assert_eq!(ordered, expected);
    let distinct: Vec<String> =
        conn.exec("SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c", (lo, hi)).await.unwrap();
    expected.dedup();
    assert_eq!(distinct, expected);
    conn.query_drop("COMMIT").await.unwrap();

    // oltp_update_index, oltp_update_non_index
    conn.exec_drop("UPDATE sbtest1 SET k=k+1 WHERE id=?", (5,)).await.unwrap();
    let k: Option<i64> = conn.exec_first("SELECT k FROM sbtest1 WHERE id=?", (5,)).await.unwrap();
    assert_eq!(k, Some(k_of[5] + 1));
    let by_index: Vec<i64> = conn.exec("SELECT id FROM sbtest1 WHERE k=? ORDER BY id", (k_of[5] + 1,)).await.unwrap();
    assert!(by_index.contains(&5));
    conn.exec_drop("UPDATE sbtest1 SET c=? WHERE id=?", ("changed", 6)).await.unwrap();
    let c: Option<String> = conn.exec_first("SELECT c FROM sbtest1 WHERE id=?", (6,)).await.unwrap();
    assert_eq!(c.as_deref(), Some("changed"));

    // oltp_delete: delete a row, then insert it back with the same id.
    conn.exec_drop("DELETE FROM sbtest1 WHERE id=?", (7,)).await.unwrap();
    let gone: Option<String> = conn.exec_first("SELECT c FROM sbtest1 WHERE id=?", (7,)).await.unwrap();
    assert_eq!(gone, None);
    conn.exec_drop("INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)", (7, 70, "c7", "p7")).await.unwrap();
    // oltp_insert: explicit id 0 means "assign one" with AUTO_INCREMENT, as in MySQL's default sql_mode.
    let result =
        conn.exec_iter("INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)", (0, 1, "x", "y")).await.unwrap();
    let new_id = result.last_insert_id().expect("an id was assigned");
    drop(result);
    assert!(new_id as i64 > TABLE_SIZE);
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM sbtest1").await.unwrap().unwrap();
    assert_eq!(count, TABLE_SIZE + 1);

    // cleanup
    conn.query_drop("DROP TABLE IF EXISTS sbtest1").await.unwrap();
    let tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    assert!(tables.is_empty());
}
