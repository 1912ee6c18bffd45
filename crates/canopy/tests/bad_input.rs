//! Bad input through real processes: malformed SQL, unknown names, wrong column counts, protocol garbage, an
//! oversized packet and a client vanishing mid-query. Each gets a MySQL error or a closed connection; the node keeps
//! serving its other connections and its data.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use support::TestCluster;

async fn error_code(conn: &mut mysql_async::Conn, sql: &str) -> u16 {
    match conn.query_drop(sql).await {
        Err(mysql_async::Error::Server(e)) => e.code,
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

/// History: a cluster with a table; a stream of bad statements on one connection.
/// Property: each gets the MySQL error a client expects, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_statements_get_mysql_errors() {
    let cluster = TestCluster::start("badsql", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE d PARTITIONS 4").await.unwrap();
    conn.query_drop("USE d").await.unwrap();
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await.unwrap();
    conn.query_drop("INSERT INTO t VALUES (1, 10), (2, 20)").await.unwrap();

    assert_eq!(error_code(&mut conn, "SELEC * FROM t").await, 1064);
    assert_eq!(error_code(&mut conn, "SELECT * FROM nope").await, 1146);
    assert_eq!(error_code(&mut conn, "SELECT * FROM nodb.t").await, 1049);
    assert_eq!(error_code(&mut conn, "USE nodb").await, 1049);
    assert_eq!(error_code(&mut conn, "INSERT INTO t VALUES (3)").await, 1136);
    assert_eq!(error_code(&mut conn, "INSERT INTO t (id, nope) VALUES (3, 1)").await, 1054);
    assert_eq!(error_code(&mut conn, "INSERT INTO t VALUES (1, 11)").await, 1062);
    assert_eq!(error_code(&mut conn, "INSERT INTO t VALUES (4, NULL)").await, 1048);
    assert_eq!(error_code(&mut conn, "CREATE DATABASE d").await, 1007);
    assert_eq!(error_code(&mut conn, "CREATE TABLE t (id INT PRIMARY KEY)").await, 1050);
    assert_eq!(error_code(&mut conn, "UPDATE t SET id = 5 WHERE id = 1").await, 1706);
    assert_eq!(error_code(&mut conn, "SET GLOBAL no_such_variable = 1").await, 1193);
    assert_eq!(error_code(&mut conn, "SET GLOBAL default_partitions_per_leaf = 0").await, 1231);
    // A parameter placeholder in a plain text query has no value: a syntax error, as in MySQL.
    assert_eq!(error_code(&mut conn, "SELECT v FROM t WHERE id = ?").await, 1064);
    assert_eq!(error_code(&mut conn, "INSERT INTO t VALUES (?, 1)").await, 1064);

    // The failed multi-row insert of a duplicate left nothing behind, and the connection still works.
    let rows: Vec<(i64, i64)> = conn.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    assert_eq!(rows, vec![(1, 10), (2, 20)]);

    // A prepared statement with the wrong number of parameters is refused (mysql_async checks the count the server
    // announced at PREPARE, then drops its connection, as it does after any driver-side error).
    assert!(conn.exec_drop("SELECT v FROM t WHERE id = ?", (1, 2)).await.is_err());
    let mut conn = cluster.conn().await;
    let v: Option<i64> = conn.exec_first("SELECT v FROM d.t WHERE id = ?", (2,)).await.unwrap();
    assert_eq!(v, Some(20));
}

/// History: raw TCP clients send garbage, an oversized packet header, or vanish mid-query while a good client works.
/// Property: the node closes the bad connections and keeps serving the good one with correct data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_garbage_and_vanishing_clients_do_not_hurt_the_node() {
    let cluster = TestCluster::start("garbage", 1).await;
    let mut good = cluster.conn().await;
    good.query_drop("CREATE DATABASE d PARTITIONS 2").await.unwrap();
    good.query_drop("CREATE TABLE d.t (id INT PRIMARY KEY)").await.unwrap();
    let values: Vec<String> = (1..=2000).map(|i| format!("({i})")).collect();
    good.query_drop(format!("INSERT INTO d.t VALUES {}", values.join(","))).await.unwrap();

    let port = cluster.master.port;
    let read_to_close = |mut s: std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        // Read until the server closes (0) or errors; a hang would trip the timeout and fail the test.
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(e) => panic!("server neither answered nor closed: {e}"),
            }
        }
    };
    for garbage in [
        vec![0xffu8; 64],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 0xff, 0x01, 0x03], // a packet header announcing 16 MiB, then nothing useful
        vec![0x05, 0x00, 0x00, 0x01, 0x03, 0x53, 0x45], // a truncated packet
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(&garbage);
        let _ = s.shutdown(std::net::Shutdown::Write);
        assert!(read_to_close(s));
    }

    // A client that starts a large query and disappears without reading the answer.
    for _ in 0..5 {
        let mut conn = cluster.conn().await;
        let query = conn.query_iter("SELECT a.id FROM d.t a, d.t b WHERE a.id < 300 AND b.id < 300");
        let _ = tokio::time::timeout(Duration::from_millis(5), query).await;
        drop(conn);
    }

    let n: i64 = good.query_first("SELECT COUNT(*) FROM d.t").await.unwrap().unwrap();
    assert_eq!(n, 2000);
    let fresh: i64 =
        cluster.conn().await.query_first("SELECT COUNT(*) FROM d.t WHERE id > 1000").await.unwrap().unwrap();
    assert_eq!(fresh, 1000);
}

/// Property: an oversized packet from an authenticated client gets error 1153 (or a closed connection), never a
/// crash, and the node keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_query_is_refused() {
    let cluster = TestCluster::start("oversized", 1).await;
    let mut conn = cluster.conn().await;
    let huge = format!("SELECT '{}'", "x".repeat(70 << 20));
    match conn.query_drop(huge).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1153),
        Err(_) => {} // the server closed the connection after the error packet
        Ok(()) => panic!("a 70 MiB packet must be refused"),
    }
    let mut other = cluster.conn().await;
    let one: i64 = other.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

/// History: a one-leaf cluster goes to redundancy_level 2 and tries CREATE DATABASE (its only leaf has no pair);
/// a leaf is added into a group that does not exist, redundancy 3 and the `load_balanced` fanout are asked for; it goes back to 1, creates a
/// database, and tries redundancy 2 again.
/// Property: no database is created without a pair to hold its two copies, a bad group or level is refused, and the
/// level cannot change under an existing database; each gets a clear error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_needs_pairs_and_changes_only_without_databases() {
    let cluster = TestCluster::start("bad-redundancy", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("SET GLOBAL redundancy_level = 2").await.unwrap();
    let refused = conn.query_drop("CREATE DATABASE r2").await.unwrap_err();
    assert!(refused.to_string().contains("no pair of online leaves"), "{refused}");
    let databases: Vec<String> = conn.query("SHOW DATABASES").await.unwrap();
    assert!(!databases.contains(&"r2".to_string()), "{databases:?}");
    let group = conn.query_drop("ADD LEAF root@'127.0.0.1':1 INTO GROUP 3").await.unwrap_err();
    assert!(group.to_string().contains("availability group"), "{group}");
    assert_eq!(error_code(&mut conn, "SET GLOBAL redundancy_level = 3").await, 1231);
    // Failover goes to the pair; SingleStore's other fanout is refused as not supported, anything else as bad.
    let fanout: String = conn.query_first("SELECT @@leaf_failover_fanout").await.unwrap().unwrap();
    assert_eq!(fanout, "paired");
    conn.query_drop("SET GLOBAL leaf_failover_fanout = 'paired'").await.unwrap();
    let refused = conn.query_drop("SET GLOBAL leaf_failover_fanout = 'load_balanced'").await.unwrap_err();
    assert!(matches!(&refused, mysql_async::Error::Server(e) if e.code == 1235), "{refused}");
    assert!(refused.to_string().contains("'paired'"), "{refused}");
    assert_eq!(error_code(&mut conn, "SET GLOBAL leaf_failover_fanout = 'spread'").await, 1231);
    let refused = conn.query_drop("CREATE DATABASE a WITH ASYNC REPLICATION").await.unwrap_err();
    assert!(refused.to_string().contains("no pair of online leaves"), "asynchronous needs a pair as well: {refused}");
    conn.query_drop("SET GLOBAL redundancy_level = 1").await.unwrap();
    conn.query_drop("CREATE DATABASE r1").await.unwrap();
    let refused = conn.query_drop("SET GLOBAL redundancy_level = 2").await.unwrap_err();
    assert!(refused.to_string().contains("no database exists"), "{refused}");
    let level: i64 = conn.query_first("SELECT @@redundancy_level").await.unwrap().unwrap();
    assert_eq!(level, 1);
}
