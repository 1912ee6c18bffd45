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

/// The status flags of the last OK packet: (autocommit, in a transaction).
fn flags(conn: &mysql_async::Conn) -> (bool, bool) {
    use mysql_async::consts::StatusFlags;
    let status = conn.last_ok_packet().expect("an OK packet").status_flags();
    (status.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT), status.contains(StatusFlags::SERVER_STATUS_IN_TRANS))
}

/// History: a client turns autocommit off (what Python DB-API drivers and JDBC frameworks do), writes, and rolls
/// back; then the same after COMMIT, with a prepared write, with autocommit back on, and after an explicit BEGIN.
/// Property: Canopy never reports a rollback it did not do: ROLLBACK after writes in an implicit or explicit
/// transaction fails with the same error (the writes stay, as docs/sql.md says), ROLLBACK with nothing to undo
/// succeeds, and `@@autocommit` and the OK packets' AUTOCOMMIT and IN_TRANS flags tell the truth throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_under_autocommit_off_is_refused_like_after_begin() {
    let cluster = TestCluster::start("autocommit", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    assert_eq!(flags(&conn), (true, false));

    conn.query_drop("SET autocommit=0").await.unwrap();
    assert_eq!(flags(&conn), (false, false), "no statement has opened a transaction yet");
    let autocommit: Option<i64> = conn.query_first("SELECT @@autocommit").await.unwrap();
    assert_eq!(autocommit, Some(0));
    conn.query_drop("INSERT INTO test.x VALUES (999)").await.unwrap();
    assert_eq!(flags(&conn), (false, true), "the write opened a transaction implicitly");
    let refused = error_of(&mut conn, "ROLLBACK").await;
    assert_eq!(refused.code, 1706, "{refused:?}");
    assert!(refused.message.contains("ROLLBACK of writes"), "{}", refused.message);
    // The write was committed when it ran, as the error says.
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM test.x WHERE id = 999").await, 1);
    conn.query_drop("ROLLBACK").await.expect("nothing written since the refused ROLLBACK");

    conn.query_drop("INSERT INTO test.x VALUES (1000)").await.unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(flags(&conn), (false, false));
    conn.query_drop("ROLLBACK").await.expect("nothing written since COMMIT");

    conn.exec_drop("INSERT INTO test.x VALUES (?)", (1001,)).await.unwrap();
    assert_eq!(error_of(&mut conn, "ROLLBACK").await.code, 1706, "a prepared write counts too");

    conn.query_drop("INSERT INTO test.x VALUES (1002)").await.unwrap();
    conn.query_drop("SET autocommit=1").await.unwrap();
    assert_eq!(flags(&conn), (true, false), "switching autocommit on commits the open transaction");
    conn.query_drop("INSERT INTO test.x VALUES (1003)").await.unwrap();
    assert_eq!(flags(&conn), (true, false));
    conn.query_drop("ROLLBACK").await.expect("autocommit: every statement was its own transaction");

    conn.query_drop("BEGIN").await.unwrap();
    assert_eq!(flags(&conn), (true, true));
    conn.query_drop("INSERT INTO test.x VALUES (1004)").await.unwrap();
    let after_begin = error_of(&mut conn, "ROLLBACK").await;
    assert_eq!((after_begin.code, after_begin.message), (refused.code, refused.message));

    // A SET the front end cannot answer alone must not swallow autocommit=0 silently.
    let mixed = error_of(&mut conn, "SET autocommit=0, sort_buffer_size=1").await;
    assert_eq!(mixed.code, 1706, "{mixed:?}");
    let autocommit: Option<i64> = conn.query_first("SELECT @@autocommit").await.unwrap();
    assert_eq!(autocommit, Some(1));
}

/// History: a client tries to create, index and rename tables into Canopy's internal namespace (`_canopy_*`, whose
/// rows the change log never records, so a partition move would lose their writes), in several letter cases.
/// Property: each gets error 1103 naming the table, nothing is created on the cluster or on a leaf, and ordinary
/// names that merely contain the word still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canopy_table_names_are_reserved() {
    let cluster = TestCluster::start("reserved", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE d PARTITIONS 2").await.unwrap();
    conn.query_drop("USE d").await.unwrap();
    for sql in [
        "CREATE TABLE _canopy_orders (id INT PRIMARY KEY)",
        "CREATE REFERENCE TABLE `_CANOPY_ref` (id INT PRIMARY KEY)",
        "CREATE INDEX i ON _Canopy_orders (id)",
        "RENAME TABLE t TO _canopy_t",
        "ALTER TABLE t RENAME TO _canopy_t",
    ] {
        let e = error_of(&mut conn, sql).await;
        assert_eq!(e.code, 1103, "{sql}: {e:?}");
        assert!(e.message.contains("reserved"), "{sql}: {}", e.message);
    }
    assert!(conn.exec_drop("CREATE TABLE _canopy_p (id INT PRIMARY KEY)", ()).await.is_err(), "prepared");
    conn.query_drop("CREATE TABLE canopy_orders (id INT PRIMARY KEY)").await.unwrap();
    let tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    assert_eq!(tables, ["canopy_orders"]);
    let mut direct = cluster.leaves[0].connect().await;
    direct.query_drop("USE d_0").await.unwrap();
    let on_leaf: Vec<String> = direct
        .query("SELECT name FROM sqlite_master WHERE type = 'table' AND lower(name) LIKE '%orders'")
        .await
        .unwrap();
    assert_eq!(on_leaf, ["canopy_orders"]);
}

/// History: texts with `@@` or `@` and no variable name after them, as text queries and as prepared statements.
/// Property: each gets an error packet (they used to panic the connection task, dropping the connection), and the
/// same connection keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variable_signs_without_a_name_get_an_error_not_a_dropped_connection() {
    let cluster = TestCluster::start("atsign", 1).await;
    let mut conn = cluster.conn().await;
    for sql in ["SELECT @@", "SELECT 1 WHERE @@ = 1", "SELECT @", "SET @@ = 1", "SELECT @@.x"] {
        let e = error_of(&mut conn, sql).await;
        assert!(e.code == 1064 || e.code == 1193, "{sql}: {e:?}");
        assert!(conn.exec_drop(sql, ()).await.is_err(), "{sql} prepared");
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1), "the connection survived {sql}");
    }
}

/// History: statements whose SQL Canopy renders back from the syntax tree before sending it: a double unary minus
/// on one partition, on all of them and in a gather; a negative parameter after a minus, bound into a table-free
/// query on the aggregator; a string whose value holds a backslash before a quote.
/// Property: each means what the client sent (sqlparser alone wrote `- -a` as the comment `--a`, and `a\'b` as a
/// literal that ended early).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_rendered_statements_keep_their_meaning() {
    let cluster = TestCluster::start("rendering", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE d PARTITIONS 2").await.unwrap();
    conn.query_drop("USE d").await.unwrap();
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, col0 INT, s TEXT)").await.unwrap();
    conn.query_drop(r"INSERT INTO t VALUES (1, 5, 'a\\\'b'), (2, -7, 'x')").await.unwrap();
    let one: Vec<i64> = conn.query("SELECT - - col0 FROM t WHERE id = 1").await.unwrap();
    assert_eq!(one, [5]);
    let all: Vec<i64> = conn.query("SELECT - - col0 FROM t ORDER BY 1").await.unwrap();
    assert_eq!(all, [-7, 5]);
    let gathered: Vec<i64> = conn.query("SELECT - - col0 FROM t UNION SELECT - - 1 ORDER BY 1").await.unwrap();
    assert_eq!(gathered, [-7, 1, 5]);
    let negated: Option<i64> = conn.exec_first("SELECT - ?", (-5,)).await.unwrap();
    assert_eq!(negated, Some(5));
    let quoted: Vec<i64> = conn.query(r"SELECT id FROM t WHERE s = 'a\\\'b' UNION SELECT 0").await.unwrap();
    assert_eq!(quoted, [0, 1]);
}

/// Statements in the bounds test may run this long before they are interrupted.
const QUERY_TIME_MS_TEST: &str = "3000";

/// History: a cluster whose statements may run 3 s; two connections (one per core of the test machine) run a
/// recursive CTE without an end, which no table is involved in (the aggregator's own engine answers it), while a
/// third keeps running `SELECT 1`; then cross joins: on a leaf's reference copy (counting, and returning too many
/// rows) and of a distributed table with itself (gathered onto the aggregator).
/// Property: every runaway statement ends with a clear error (1104 result too large, or 3024 interrupted by the
/// time limit) instead of pinning a thread and growing until the node is killed; `SELECT 1` keeps answering
/// throughout, and the node serves normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_statements_are_bounded() {
    let cluster = TestCluster::start_with_args("bounds", 1, &["--query-time-max-ms", QUERY_TIME_MS_TEST]).await;
    let mut conn = cluster.conn().await;
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c";
    let mut runaways = Vec::new();
    for _ in 0..2 {
        let mut runaway = cluster.conn().await;
        runaways.push(tokio::spawn(async move { runaway.query_drop(endless).await }));
    }
    let mut answered = 0;
    loop {
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        answered += 1;
        if runaways.iter().all(|r| r.is_finished()) {
            break;
        }
    }
    assert!(answered >= 1);
    for runaway in runaways {
        match runaway.await.unwrap() {
            Err(mysql_async::Error::Server(e)) => assert!(e.code == 1104 || e.code == 3024, "{e:?}"),
            other => panic!("the endless CTE must fail, got {other:?}"),
        }
    }

    conn.query_drop("CREATE DATABASE d PARTITIONS 2").await.unwrap();
    conn.query_drop("USE d").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE r (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("CREATE TABLE x (id INT PRIMARY KEY)").await.unwrap();
    let values: Vec<String> = (1..=300).map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO r VALUES {}", values.join(","))).await.unwrap();
    conn.query_drop(format!("INSERT INTO x VALUES {}", values.join(","))).await.unwrap();
    let on_leaf = error_of(&mut conn, "SELECT COUNT(*) FROM r a, r b, r c, r d").await;
    assert_eq!(on_leaf.code, 3024, "{on_leaf:?}");
    assert!(on_leaf.message.contains("maximum statement execution time exceeded"), "{}", on_leaf.message);
    let rows_on_leaf = error_of(&mut conn, "SELECT a.id, b.id FROM r a, r b, r c").await;
    assert!(rows_on_leaf.code == 1104 || rows_on_leaf.code == 3024, "{rows_on_leaf:?}");
    let gathered = error_of(&mut conn, "SELECT COUNT(*) FROM x a, x b, x c, x d").await;
    assert_eq!(gathered.code, 3024, "{gathered:?}");
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM x a, r b WHERE a.id = b.id").await, 300);
}

/// History: a prepared `SHOW TABLES LIKE ?` (a statement the aggregator runs as text with the value written in)
/// executed with values holding backslashes and quotes; rows whose shard key is text with a backslash.
/// Property: a value is always one literal with its exact value: `\'x` matches no table rather than ending the
/// string early, `\' OR 1=1 -- ` changes nothing, a pattern with an escaped `_` matches what MySQL would, and a
/// backslash in a shard key is stored and found as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_values_stay_one_literal() {
    let cluster = TestCluster::start("literals", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE d PARTITIONS 2").await.unwrap();
    conn.query_drop("USE d").await.unwrap();
    conn.query_drop("CREATE TABLE t1 (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("CREATE TABLE k (name VARCHAR(20) PRIMARY KEY, v INT)").await.unwrap();
    for pattern in [r"\'x", r"\' OR 1=1 -- ", r"\", r"t\_"] {
        let tables: Vec<String> = conn.exec("SHOW TABLES LIKE ?", (pattern,)).await.unwrap();
        assert!(tables.is_empty(), "{pattern}: {tables:?}");
    }
    let tables: Vec<String> = conn.exec("SHOW TABLES LIKE ?", ("t%",)).await.unwrap();
    assert_eq!(tables, ["t1"]);
    for (i, name) in [r"a\b", r"\'", r"x\\y"].iter().enumerate() {
        conn.exec_drop("INSERT INTO k VALUES (?, ?)", (name, i)).await.unwrap();
        let v: Option<i64> = conn.exec_first("SELECT v FROM k WHERE name = ?", (name,)).await.unwrap();
        assert_eq!(v, Some(i as i64), "{name}");
    }
    conn.query_drop(r"INSERT INTO k VALUES ('text\\key', 9)").await.unwrap();
    let names: Vec<String> = conn.query("SELECT name FROM k ORDER BY name").await.unwrap();
    assert_eq!(names, [r"\'", r"a\b", r"text\key", r"x\\y"]);
}

/// The names of the indexes on table `u` in every partition of `d`, read on the leaves themselves.
async fn indexes_on_partitions(cluster: &TestCluster) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for leaf in &cluster.leaves {
        let mut direct = leaf.connect().await;
        let dbs: Vec<String> = direct.query("SHOW DATABASES").await.unwrap();
        for db in dbs.iter().filter(|d| d.starts_with("d_")) {
            direct.query_drop(format!("USE {db}")).await.unwrap();
            let names: Vec<String> = direct
                .query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'u' ORDER BY name")
                .await
                .unwrap();
            all.push(names);
        }
    }
    all
}

/// History: a distributed table whose rows share a shard key value twice, so a UNIQUE index fails on the one
/// partition holding them and succeeds on the others; then the duplicate goes and the same CREATE INDEX is retried.
/// Property: the failed CREATE INDEX leaves the index on no partition (it is never enforced on some partitions
/// only, outside the metadata), and the retry succeeds and enforces it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_create_index_is_undone_and_can_be_retried() {
    let cluster = TestCluster::start("index", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE d PARTITIONS 4").await.unwrap();
    conn.query_drop("USE d").await.unwrap();
    conn.query_drop("CREATE TABLE u (a INT, b INT, SHARD KEY (a))").await.unwrap();
    let values: Vec<String> = (1..=40).map(|i| format!("({i}, {i})")).collect();
    conn.query_drop(format!("INSERT INTO u VALUES {}, (7, 7)", values.join(","))).await.unwrap();
    let before = indexes_on_partitions(&cluster).await;
    assert_eq!(before.len(), 4);

    let e = error_of(&mut conn, "CREATE UNIQUE INDEX ab ON u (a, b)").await;
    assert_eq!(e.code, 1062, "{e:?}");
    assert_eq!(indexes_on_partitions(&cluster).await, before, "no partition keeps the failed index");
    let create: (String, String) = conn.query_first("SHOW CREATE TABLE u").await.unwrap().unwrap();
    assert!(!create.1.contains("ab"), "{}", create.1);

    conn.query_drop("DELETE FROM u WHERE a = 7").await.unwrap();
    conn.query_drop("INSERT INTO u VALUES (7, 7)").await.unwrap();
    conn.query_drop("CREATE UNIQUE INDEX ab ON u (a, b)").await.unwrap();
    let after = indexes_on_partitions(&cluster).await;
    assert!(after.iter().all(|names| names.iter().any(|n| n == "u__ab")), "{after:?}");
    assert_eq!(error_of(&mut conn, "INSERT INTO u VALUES (7, 7)").await.code, 1062);
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM u").await, 40);
}
