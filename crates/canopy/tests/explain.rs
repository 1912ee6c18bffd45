//! EXPLAIN through real processes: the distributed plan of a statement, as lines of text, without running it.

mod support;

use mysql_async::prelude::Queryable;
use support::TestCluster;

async fn explain(conn: &mut mysql_async::Conn, sql: &str) -> Vec<String> {
    conn.query(format!("EXPLAIN {sql}")).await.unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"))
}

/// History: a database of 4 partitions with a sharded table and a reference table; EXPLAIN of a point read, an
/// aggregate, a join of distributed tables, a reference read, an INSERT, a DELETE and EXPLAIN ANALYZE.
/// Property: each prints the plan kind the planner chose (single partition, scatter + merge, gather, reference
/// copy, insert per partition, write) with the SQL the leaves would get, and nothing runs: the rows stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_prints_the_distributed_plan_and_runs_nothing() {
    let cluster = TestCluster::start("explain", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE e PARTITIONS 4").await.unwrap();
    conn.query_drop("USE e").await.unwrap();
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, k INT)").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE r (id INT PRIMARY KEY, name TEXT)").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)").await.unwrap();

    let point = explain(&mut conn, "SELECT k FROM t WHERE id = 2").await;
    assert!(point[0].starts_with("Single partition e:"), "{point:?}");
    assert!(point[1].contains("SELECT") && point[1].contains("FROM"), "{point:?}");

    let count = explain(&mut conn, "SELECT COUNT(*) FROM t").await;
    assert_eq!(count[0], "Scatter to 4 partitions of e: 0,1,2,3", "{count:?}");
    assert!(count.iter().any(|l| l.starts_with("Merge on the aggregator")), "{count:?}");

    let join = explain(&mut conn, "SELECT a.id FROM t a JOIN t b ON a.k = b.id").await;
    assert!(join[0].starts_with("Gather"), "{join:?}");
    assert!(join.iter().any(|l| l.contains("from every partition")), "{join:?}");
    assert!(join.last().unwrap().starts_with("Run on the aggregator:"), "{join:?}");

    let reference = explain(&mut conn, "SELECT name FROM r").await;
    assert_eq!(reference[0], "Reference tables of e: one copy", "{reference:?}");

    let insert = explain(&mut conn, "INSERT INTO t VALUES (4, 40)").await;
    assert!(insert[0].starts_with("Insert 1 rows into e.t: 1 partitions"), "{insert:?}");
    let delete = explain(&mut conn, "DELETE FROM t").await;
    assert!(delete[0].starts_with("Write on 4 partitions of e"), "{delete:?}");

    let rows: i64 = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap().unwrap();
    assert_eq!(rows, 3, "EXPLAIN ran neither the INSERT nor the DELETE");
    let analyze = conn.query_drop("EXPLAIN ANALYZE SELECT * FROM t").await.unwrap_err();
    assert!(analyze.to_string().contains("EXPLAIN ANALYZE"), "{analyze}");
}
