//! Statements that must never be answered with a lie, through real processes: writes hidden inside a query, a
//! ROLLBACK that cannot undo, names Canopy reserves, texts that panic a tokenizer, re-rendered statements that change
//! meaning, queries without bounds, values that escape their literal, and a CREATE INDEX that fails half-way.

mod support;

use mysql_async::prelude::Queryable;
use support::TestCluster;

/// The server error a statement gets, or a panic naming what came back instead.
async fn error_of(conn: &mut mysql_async::Conn, sql: &str) -> mysql_async::ServerError {
    match conn.query_drop(sql).await {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

async fn count(conn: &mut mysql_async::Conn, sql: &str) -> i64 {
    conn.query_first(sql).await.unwrap().expect("a COUNT row")
}

/// History: a distributed table and a reference table with ids 1..10 each; `WITH ... DELETE` and `WITH ... UPDATE`
/// on both. Property: each is refused with a clear error and changes nothing: every partition's and every
/// reference copy's rows stay as they were, so no copy diverges and the client was not told a write happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_with_are_refused_and_change_nothing() {
    let cluster = TestCluster::start("withdml", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE d PARTITIONS 4").await.unwrap();
    conn.query_drop("USE d").await.unwrap();
    conn.query_drop("CREATE TABLE x (id INT PRIMARY KEY, v INT)").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE r (id INT PRIMARY KEY, v INT)").await.unwrap();
    let values: Vec<String> = (1..=10).map(|i| format!("({i}, 0)")).collect();
    conn.query_drop(format!("INSERT INTO x VALUES {}", values.join(","))).await.unwrap();
    conn.query_drop(format!("INSERT INTO r VALUES {}", values.join(","))).await.unwrap();

    for table in ["x", "r"] {
        for sql in [
            format!("WITH dd AS (SELECT 3 AS id) DELETE FROM {table} WHERE id IN (SELECT id FROM dd)"),
            format!("WITH dd AS (SELECT 3 AS id) UPDATE {table} SET v = 1 WHERE id IN (SELECT id FROM dd)"),
            format!("WITH dd AS (DELETE FROM {table} WHERE id = 3) SELECT 1"),
        ] {
            let e = error_of(&mut conn, &sql).await;
            assert_eq!(e.code, 1706, "{sql}: {e:?}");
            assert!(e.message.contains("WITH ..."), "{sql}: {}", e.message);
            // A prepared statement takes the same classification.
            assert!(conn.exec_drop(&sql, ()).await.is_err(), "{sql} prepared");
        }
        assert_eq!(count(&mut conn, &format!("SELECT COUNT(*) FROM {table}")).await, 10, "{table}");
        assert_eq!(count(&mut conn, &format!("SELECT COUNT(*) FROM {table} WHERE v = 0")).await, 10, "{table}");
    }
    // Every reference copy still has all ten rows untouched, and so do the partitions taken together.
    let mut partition_rows = 0;
    for leaf in &cluster.leaves {
        let mut direct = leaf.connect().await;
        let dbs: Vec<String> = direct.query("SHOW DATABASES").await.unwrap();
        for db in dbs.iter().filter(|d| d.starts_with("d_")) {
            direct.query_drop(format!("USE {db}")).await.unwrap();
            partition_rows += count(&mut direct, "SELECT COUNT(*) FROM x WHERE v = 0").await;
        }
        direct.query_drop("USE d").await.unwrap();
        assert_eq!(count(&mut direct, "SELECT COUNT(*) FROM r WHERE v = 0").await, 10, "copy on {}", leaf.port);
    }
    assert_eq!(partition_rows, 10);
}
