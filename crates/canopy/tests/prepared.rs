//! Prepared statements executed many times with different values, as applications run them: the aggregator plans a
//! statement once and, when its partition follows from the parameters alone, re-hashes the values of later
//! executions instead of planning again. These tests check that every execution still answers for its own values,
//! and that a schema change in between is seen (the reused plan belongs to the metadata it was made with).

mod support;

use mysql_async::prelude::Queryable;
use support::TestCluster;

const ROWS: i64 = 300;

async fn value_of(conn: &mut mysql_async::Conn, select: &mysql_async::Statement, id: i64) -> Option<String> {
    conn.exec_first(select, (id,)).await.unwrap()
}

/// History: a table sharded by id with rows 1..300; one prepared point select executed for every id (and for ids
/// that do not exist), prepared UPDATE and DELETE by id, then the table dropped and re-created sharded by another
/// column, reloaded, and the same prepared select executed again on the same connection.
/// Property: every execution answers for its own parameter values, before and after the schema change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_answers_for_each_execution_values() {
    let cluster = TestCluster::start("prepared", 3).await;
    let mut admin = cluster.conn().await;
    admin.query_drop("CREATE DATABASE p PARTITIONS 8").await.unwrap();
    let opts = mysql_async::OptsBuilder::from_opts(cluster.master.opts()).db_name(Some("p"));
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, 'v{i}')")).collect();
    conn.query_drop(format!("INSERT INTO t VALUES {}", rows.join(", "))).await.unwrap();

    let select = conn.prep("SELECT v FROM t WHERE id = ?").await.unwrap();
    for id in 1..=ROWS {
        assert_eq!(value_of(&mut conn, &select, id).await, Some(format!("v{id}")), "id {id}");
    }
    for id in [0, -1, ROWS + 1, 1_000_000] {
        assert_eq!(value_of(&mut conn, &select, id).await, None, "id {id}");
    }
    // A text parameter for the integer key finds the row, as the literal '7' would.
    let found: Option<String> = conn.exec_first(&select, ("7",)).await.unwrap();
    assert_eq!(found.as_deref(), Some("v7"));

    let update = conn.prep("UPDATE t SET v = ? WHERE id = ?").await.unwrap();
    let delete = conn.prep("DELETE FROM t WHERE id = ?").await.unwrap();
    for id in (1..=ROWS).step_by(3) {
        conn.exec_drop(&update, (format!("u{id}"), id)).await.unwrap();
        assert_eq!(conn.affected_rows(), 1, "update id {id}");
    }
    for id in (2..=ROWS).step_by(3) {
        conn.exec_drop(&delete, (id,)).await.unwrap();
        assert_eq!(conn.affected_rows(), 1, "delete id {id}");
    }
    for id in 1..=ROWS {
        let expected = match id % 3 {
            1 => Some(format!("u{id}")),
            2 => None,
            _ => Some(format!("v{id}")),
        };
        assert_eq!(value_of(&mut conn, &select, id).await, expected, "id {id}");
    }

    // A statement over every partition (no condition on the shard key) reused with other values.
    let range = conn.prep("SELECT COUNT(*), SUM(id) FROM t WHERE id BETWEEN ? AND ?").await.unwrap();
    for (low, high) in [(1, ROWS), (10, 20), (50, 49), (290, 400)] {
        let kept: Vec<i64> = (low..=high.min(ROWS)).filter(|id| id % 3 != 2).collect();
        let (count, sum): (i64, Option<i64>) = conn.exec_first(&range, (low, high)).await.unwrap().unwrap();
        assert_eq!(count, kept.len() as i64, "{low}..{high}");
        assert_eq!(sum, (!kept.is_empty()).then(|| kept.iter().sum::<i64>()), "{low}..{high}");
    }

    // The same table name, now sharded by v: rows with a given id live wherever their v hashes, so a plan reused
    // from before (routing by the hash of id) would look in the wrong partition.
    conn.query_drop("DROP TABLE t").await.unwrap();
    conn.query_drop("CREATE TABLE t (id INT, v VARCHAR(20), SHARD KEY (v))").await.unwrap();
    conn.query_drop(format!("INSERT INTO t VALUES {}", rows.join(", "))).await.unwrap();
    for id in 1..=ROWS {
        assert_eq!(value_of(&mut conn, &select, id).await, Some(format!("v{id}")), "after re-creation, id {id}");
    }
}
