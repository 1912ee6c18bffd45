//! MySQL's functions and operators through real processes: a master aggregator and two leaves, a distributed table
//! spread over 8 partitions, queried through the MySQL protocol. Values are the ones the MySQL reference manual
//! documents (or follow from it by hand); NOW() is one value per statement across partitions, and `/` and `DIV` are
//! MySQL's on the leaves and in the aggregator's merges.

mod support;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use support::TestCluster;

const PARTITIONS: u32 = 8;

async fn rows<T: mysql_async::prelude::FromRow + Send + 'static>(conn: &mut Conn, sql: &str) -> Vec<T> {
    conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn one<T: mysql_async::prelude::FromRow + Send + 'static>(conn: &mut Conn, sql: &str) -> T {
    conn.query_first(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).unwrap_or_else(|| panic!("{sql}: no row"))
}

/// History: a table of four rows with dates, strings and numbers, spread over partitions. Property: date and time,
/// string and arithmetic functions evaluated on the leaves (per row) and in the aggregator's merge (aggregates,
/// GROUP BY a function) give MySQL's values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_over_a_distributed_table() {
    let cluster = TestCluster::start_with_args("functions", 2, &["--query-time-max-ms", "2000"]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop(format!("CREATE DATABASE fx PARTITIONS {PARTITIONS}")).await.unwrap();
    conn.query_drop("USE fx").await.unwrap();
    conn.query_drop(
        "CREATE TABLE ev (id INT PRIMARY KEY, d DATETIME, name VARCHAR(20), email VARCHAR(40), tags VARCHAR(20), \
         qty INT, amount DECIMAL(10,2))",
    )
    .await
    .unwrap();
    conn.query_drop(
        "INSERT INTO ev VALUES (1, '2024-01-31 08:15:00', 'ann', 'ann@example.com', 'a,b', 5, 1234.5), \
         (2, '2024-02-29 23:59:59', 'bob', 'bob@mail.org', 'b,c', 2, 10), \
         (3, '2023-12-25 00:00:00', 'cy', 'cy@example.com', 'c', 7, 0.25), \
         (4, '2024-03-05 12:00:00', 'dee', 'dee@x.io', NULL, 1, -99.75)",
    )
    .await
    .unwrap();
    let ordinals: std::collections::BTreeSet<u32> =
        (1..=4).map(|id| canopy_sql::shard::partition_of(&[canopy_sql::Value::Integer(id)], PARTITIONS)).collect();
    assert!(ordinals.len() > 1, "the rows sit in several partitions: {ordinals:?}");

    let dates: Vec<(i64, String, String, String, i64, String)> = rows(
        &mut conn,
        "SELECT id, DATE_FORMAT(d, '%W %D %M %Y %H:%i'), DATE_ADD(d, INTERVAL 1 MONTH), d - INTERVAL 1 DAY, \
         DATEDIFF(d, '2024-01-01'), LAST_DAY(d) FROM ev ORDER BY id",
    )
    .await;
    let s = |v: &str| v.to_string();
    assert_eq!(
        dates,
        [
            (
                1,
                s("Wednesday 31st January 2024 08:15"),
                s("2024-02-29 08:15:00"),
                s("2024-01-30 08:15:00"),
                30,
                s("2024-01-31")
            ),
            (
                2,
                s("Thursday 29th February 2024 23:59"),
                s("2024-03-29 23:59:59"),
                s("2024-02-28 23:59:59"),
                59,
                s("2024-02-29")
            ),
            (
                3,
                s("Monday 25th December 2023 00:00"),
                s("2024-01-25 00:00:00"),
                s("2023-12-24 00:00:00"),
                -7,
                s("2023-12-31")
            ),
            (
                4,
                s("Tuesday 5th March 2024 12:00"),
                s("2024-04-05 12:00:00"),
                s("2024-03-04 12:00:00"),
                64,
                s("2024-03-31")
            ),
        ]
    );
    type Parts = (i64, i64, i64, i64, i64, i64, i64, i64);
    let parts: Vec<Parts> = rows(
        &mut conn,
        "SELECT id, YEAR(d), MONTH(d), DAY(d), HOUR(d), DAYOFWEEK(d), WEEKDAY(d), DAYOFYEAR(d) FROM ev ORDER BY id",
    )
    .await;
    assert_eq!(
        parts,
        [
            (1, 2024, 1, 31, 8, 4, 2, 31),
            (2, 2024, 2, 29, 23, 5, 3, 60),
            (3, 2023, 12, 25, 0, 2, 0, 359),
            (4, 2024, 3, 5, 12, 3, 1, 65)
        ]
    );

    type Strings = (i64, String, String, String, String, String, Option<i64>, i64, String, String, String, i64);
    let strings: Vec<Strings> = rows(
        &mut conn,
        "SELECT id, LPAD(name, 5, '*'), RPAD(name, 5, '.'), CONCAT(name, '#', id), CONCAT_WS('/', name, tags), \
         SUBSTRING_INDEX(email, '@', -1), FIND_IN_SET('b', tags), LOCATE('e', email), LEFT(email, 3), \
         RIGHT(email, 3), REVERSE(name), CHAR_LENGTH(email) FROM ev ORDER BY id",
    )
    .await;
    assert_eq!(
        strings,
        [
            (
                1,
                s("**ann"),
                s("ann.."),
                s("ann#1"),
                s("ann/a,b"),
                s("example.com"),
                Some(2),
                5,
                s("ann"),
                s("com"),
                s("nna"),
                15
            ),
            (
                2,
                s("**bob"),
                s("bob.."),
                s("bob#2"),
                s("bob/b,c"),
                s("mail.org"),
                Some(1),
                0,
                s("bob"),
                s("org"),
                s("bob"),
                12
            ),
            (
                3,
                s("***cy"),
                s("cy..."),
                s("cy#3"),
                s("cy/c"),
                s("example.com"),
                Some(0),
                4,
                s("cy@"),
                s("com"),
                s("yc"),
                14
            ),
            (4, s("**dee"), s("dee.."), s("dee#4"), s("dee"), s("x.io"), None, 2, s("dee"), s(".io"), s("eed"), 8),
        ]
    );

    let numbers: Vec<(i64, String, f64, i64, i64, Option<f64>)> =
        rows(&mut conn, "SELECT id, FORMAT(amount, 2), amount / 4, qty DIV 2, qty % 3, qty / 0 FROM ev ORDER BY id")
            .await;
    assert_eq!(
        numbers,
        [
            (1, s("1,234.50"), 308.625, 2, 2, None),
            (2, s("10.00"), 2.5, 1, 2, None),
            (3, s("0.25"), 0.0625, 3, 1, None),
            (4, s("-99.75"), -24.9375, 0, 1, None),
        ]
    );

    // Aggregates merged on the aggregator: `/` is decimal there too, and AVG is unchanged.
    let merged: (f64, f64, i64, Option<f64>) =
        one(&mut conn, "SELECT SUM(qty) / COUNT(*), AVG(qty), SUM(qty) DIV COUNT(*), COUNT(*) / 0 FROM ev").await;
    assert_eq!(merged, (3.75, 3.75, 3, None));
    let by_year: Vec<(i64, i64, i64)> =
        rows(&mut conn, "SELECT YEAR(d), COUNT(*), SUM(qty) FROM ev GROUP BY YEAR(d) ORDER BY 1").await;
    assert_eq!(by_year, [(2023, 1, 7), (2024, 3, 8)]);
    let filtered: Vec<i64> = rows(
        &mut conn,
        "SELECT id FROM ev WHERE d >= '2024-03-05' - INTERVAL 7 DAY OR DATE_FORMAT(d, '%m') = '12' ORDER BY id",
    )
    .await;
    assert_eq!(filtered, [2, 3, 4]);

    // Table-free statements run on the aggregator's scratch engine.
    let operators: (f64, i64, i64, Option<f64>, f64, i64) =
        one(&mut conn, "SELECT 5 / 2, 5 DIV 2, 7 % 3, 5 / 0, 7.5 % 2, -7 DIV 2").await;
    assert_eq!(operators, (2.5, 2, 1, None, 1.5, -3));
    let named: Row = one(&mut conn, "SELECT 5 / 2, 5 DIV 2").await;
    let columns: Vec<String> = named.columns_ref().iter().map(|c| c.name_str().to_string()).collect();
    assert_eq!(columns, ["5 / 2", "5 DIV 2"]);
    let constants: (i64, String, String, i64, String, String, i64) = one(
        &mut conn,
        "SELECT TIMESTAMPDIFF(MONTH, '2003-02-01', '2003-05-01'), STR_TO_DATE('May 1, 2013', '%M %d,%Y'), \
         FROM_UNIXTIME(1447430881), UNIX_TIMESTAMP('2015-11-13 10:20:19'), '2024-01-31' + INTERVAL 1 MONTH, \
         DATE_SUB('2024-03-01', INTERVAL 1 DAY), EXTRACT(YEAR FROM '2019-07-02')",
    )
    .await;
    assert_eq!(
        constants,
        (3, s("2013-05-01"), s("2015-11-13 16:08:01"), 1_447_410_019, s("2024-02-29"), s("2024-02-29"), 2019)
    );
    let random: (f64, i64, i64) = one(&mut conn, "SELECT RAND(3), RAND() BETWEEN 0 AND 1, SLEEP(0.05)").await;
    assert_eq!(random, (0.9057697559760601, 1, 0));
    // SLEEP is bounded by the statement time limit (2 s here) and answers 1 when cut short, as MySQL does.
    let interrupted: i64 = one(&mut conn, "SELECT SLEEP(30)").await;
    assert_eq!(interrupted, 1);
    // Binary collation: comparisons are case-sensitive (docs/sql.md).
    let binary: (i64, i64) = one(&mut conn, "SELECT 'abc' = 'ABC', STRCMP('a', 'B')").await;
    assert_eq!(binary, (0, 1));
}

/// History: one INSERT of 32 rows (every partition of the table gets some) and one UPDATE of all of them, each
/// with NOW(6); a prepared query reading NOW(6) executed repeatedly. Property: one statement sees one NOW()
/// wherever its rows are (MySQL evaluates it once per statement), that value is the current UTC time, and a
/// prepared statement's later executions read the clock again rather than reusing the first plan's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_is_one_value_per_statement_across_partitions() {
    let cluster = TestCluster::start("functions-now", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop(format!("CREATE DATABASE nw PARTITIONS {PARTITIONS}")).await.unwrap();
    conn.query_drop("USE nw").await.unwrap();
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, at VARCHAR(30), up VARCHAR(30), day VARCHAR(10))")
        .await
        .unwrap();
    let values: Vec<String> = (1..=32).map(|i| format!("({i}, NOW(6), NULL, CURDATE())")).collect();
    conn.query_drop(format!("INSERT INTO t VALUES {}", values.join(", "))).await.unwrap();
    let ordinals: std::collections::BTreeSet<u32> =
        (1..=32).map(|id| canopy_sql::shard::partition_of(&[canopy_sql::Value::Integer(id)], PARTITIONS)).collect();
    assert_eq!(ordinals.len(), PARTITIONS as usize, "every partition holds rows");

    let (times, days): (i64, i64) = one(&mut conn, "SELECT COUNT(DISTINCT at), COUNT(DISTINCT day) FROM t").await;
    assert_eq!((times, days), (1, 1), "one NOW() and one CURDATE() for the whole INSERT");
    let at: String = one(&mut conn, "SELECT at FROM t WHERE id = 1").await;
    let unix: f64 = one(&mut conn, &format!("SELECT UNIX_TIMESTAMP('{at}')")).await;
    let client = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((client - unix).abs() < 3600.0, "NOW() is UTC: {at} is {unix}, the client's clock says {client}");

    conn.query_drop("UPDATE t SET up = NOW(6)").await.unwrap();
    let (updated, later): (i64, i64) = one(&mut conn, "SELECT COUNT(DISTINCT up), MIN(up >= at) FROM t").await;
    assert_eq!((updated, later), (1, 1), "one NOW() for the UPDATE on every partition, not before the INSERT's");
    let distinct: Vec<String> = rows(&mut conn, "SELECT DISTINCT NOW(6) FROM t").await;
    assert_eq!(distinct.len(), 1, "a scatter's partitions agree on NOW(): {distinct:?}");

    // Prepared and executed again: the plan is not reused with the first execution's time baked in.
    let stmt = conn.prep("SELECT NOW(6) FROM t WHERE id = ?").await.unwrap();
    let first: String = conn.exec_first(&stmt, (1,)).await.unwrap().unwrap();
    let mut moved = false;
    for _ in 0..1000 {
        let next: String = conn.exec_first(&stmt, (1,)).await.unwrap().unwrap();
        if next != first {
            assert!(next > first, "{next} after {first}");
            moved = true;
            break;
        }
    }
    assert!(moved, "NOW(6) of a prepared statement never changed from {first}");
}

/// History: UUID() as the shard key of a multi-row INSERT, AUTO_INCREMENT ids, an UPDATE and a SELECT. Property:
/// each UUID() is its own value and the row sits where its value routes (a point lookup finds it); CONNECTION_ID(),
/// DATABASE(), VERSION(), LAST_INSERT_ID(), ROW_COUNT() and FOUND_ROWS() answer as MySQL does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uuids_route_and_session_functions_answer() {
    let cluster = TestCluster::start("functions-session", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop(format!("CREATE DATABASE ss PARTITIONS {PARTITIONS}")).await.unwrap();
    conn.query_drop("USE ss").await.unwrap();
    conn.query_drop("CREATE TABLE u (id VARCHAR(36) PRIMARY KEY, v INT)").await.unwrap();
    conn.query_drop("INSERT INTO u VALUES (UUID(), 1), (UUID(), 2), (UUID(), 3)").await.unwrap();
    let ids: Vec<(String, i64)> = rows(&mut conn, "SELECT id, v FROM u ORDER BY v").await;
    assert_eq!(ids.len(), 3);
    let distinct: std::collections::BTreeSet<&String> = ids.iter().map(|(id, _)| id).collect();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    for (id, v) in &ids {
        assert_eq!(id.len(), 36, "{id}");
        let found: Option<i64> = conn.query_first(format!("SELECT v FROM u WHERE id = '{id}'")).await.unwrap();
        assert_eq!(found, Some(*v), "the row of {id} is in the partition its id routes to");
    }

    let (id, db, version): (u32, String, String) =
        one(&mut conn, "SELECT CONNECTION_ID(), DATABASE(), VERSION()").await;
    assert_eq!((id, db.as_str()), (conn.id(), "ss"));
    assert!(version.starts_with("5.7"), "{version}");
    let inside: (String, i64, String) =
        one(&mut conn, "SELECT CONCAT(DATABASE(), '!'), CONNECTION_ID() + 0, VERSION() FROM u LIMIT 1").await;
    assert_eq!(inside, ("ss!".to_string(), i64::from(conn.id()), version));
    match conn.query_drop("SELECT NO_SUCH_FUNCTION(1)").await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1305, "{e:?}"),
        other => panic!("an unknown function is error 1305, got {other:?}"),
    }

    conn.query_drop("CREATE TABLE a (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)").await.unwrap();
    conn.query_drop("INSERT INTO a (v) VALUES (10), (20)").await.unwrap();
    let first = conn.last_insert_id().expect("an id was assigned");
    let last_insert_id: u64 = one(&mut conn, "SELECT LAST_INSERT_ID()").await;
    assert_eq!(last_insert_id, first);
    conn.query_drop("UPDATE a SET v = v + 1").await.unwrap();
    let row_count: i64 = one(&mut conn, "SELECT ROW_COUNT()").await;
    assert_eq!(row_count, 2);
    let after_select: i64 = one(&mut conn, "SELECT ROW_COUNT()").await;
    assert_eq!(after_select, -1, "a statement that returned rows leaves -1");
    let _: Vec<(String, i64)> = rows(&mut conn, "SELECT id, v FROM u").await;
    let found_rows: i64 = one(&mut conn, "SELECT FOUND_ROWS()").await;
    assert_eq!(found_rows, 3);
    let still: u64 = one(&mut conn, "SELECT LAST_INSERT_ID()").await;
    assert_eq!(still, first, "statements that generate no id leave LAST_INSERT_ID alone");
}
