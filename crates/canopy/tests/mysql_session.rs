//! Connection-level MySQL statements through real processes: SHOW PROCESSLIST, INFORMATION_SCHEMA.PROCESSLIST and
//! SHOW STATUS, as monitoring tools and GUI clients send them.

mod support;

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::TestCluster;

/// The value of one SHOW STATUS counter, as a number.
async fn status(conn: &mut mysql_async::Conn, name: &str) -> i64 {
    let rows: Vec<(String, String)> = conn.query(format!("SHOW GLOBAL STATUS LIKE '{name}'")).await.unwrap();
    assert_eq!(rows.len(), 1, "one row for {name}: {rows:?}");
    rows[0].1.parse().expect("a counter is a number")
}

/// History: two client connections on the master aggregator; one selects a database and stays idle, the other asks
/// SHOW PROCESSLIST, reads INFORMATION_SCHEMA.PROCESSLIST and SHOW STATUS, runs statements, and a third connection
/// opens and closes.
/// Property: every open connection is listed once under the id CONNECTION_ID() gives it, with its user, its
/// database and Sleep/Query truthfully; a closed connection disappears; Questions and Com_select count the
/// statements run; Threads_connected is the number of open connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processlist_and_status_show_the_connections_and_their_statements() {
    let cluster = TestCluster::start("mysql-session", 1).await;
    let mut idle = cluster.conn().await;
    idle.query_drop("CREATE DATABASE shop PARTITIONS 2").await.unwrap();
    idle.query_drop("USE shop").await.unwrap();
    let idle_id: u32 = idle.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    let mut watcher = cluster.conn().await;
    let watcher_id: u32 = watcher.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    assert_ne!(idle_id, watcher_id);

    let list: Vec<Row> = watcher.query("SHOW PROCESSLIST").await.unwrap();
    let ids: Vec<u32> = list.iter().map(|r| r.get::<u32, _>("Id").unwrap()).collect();
    assert!(ids.contains(&idle_id) && ids.contains(&watcher_id), "both connections in {ids:?}");
    let row = |id: u32| list.iter().find(|r| r.get::<u32, _>("Id") == Some(id)).expect("listed").clone();
    let idle_row = row(idle_id);
    assert_eq!(idle_row.get::<String, _>("User").unwrap(), "root");
    assert_eq!(idle_row.get::<Option<String>, _>("db").unwrap().as_deref(), Some("shop"));
    assert_eq!(idle_row.get::<String, _>("Command").unwrap(), "Sleep");
    assert_eq!(idle_row.get::<Option<String>, _>("Info").unwrap(), None);
    let own = row(watcher_id);
    assert_eq!(own.get::<String, _>("Command").unwrap(), "Query");
    assert_eq!(own.get::<Option<String>, _>("Info").unwrap().as_deref(), Some("SHOW PROCESSLIST"));

    let from_schema: Vec<(String, Option<String>, String)> = watcher
        .query(format!("SELECT USER, DB, COMMAND FROM information_schema.PROCESSLIST WHERE ID = {idle_id}"))
        .await
        .unwrap();
    assert_eq!(from_schema, [("root".to_string(), Some("shop".to_string()), "Sleep".to_string())]);

    let questions = status(&mut watcher, "Questions").await;
    let selects = status(&mut watcher, "Com_select").await;
    for _ in 0..3 {
        let _: Option<i64> = watcher.query_first("SELECT 1").await.unwrap();
    }
    // Three SELECTs plus the SHOW STATUS that reads Questions (counted when it starts).
    assert_eq!(status(&mut watcher, "Com_select").await, selects + 3);
    assert!(status(&mut watcher, "Questions").await >= questions + 5);
    assert!(status(&mut watcher, "Uptime").await >= 0);

    let connected = status(&mut watcher, "Threads_connected").await;
    // A session is registered before the handshake's OK, so a connected client is already listed.
    let extra = cluster.conn().await;
    let extra_id = extra.id();
    assert_eq!(status(&mut watcher, "Threads_connected").await, connected + 1);
    extra.disconnect().await.unwrap();
    // The server drops the session after the client's COM_QUIT: poll, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ids: Vec<u32> = watcher.query("SELECT ID FROM information_schema.PROCESSLIST").await.unwrap();
        if !ids.contains(&extra_id) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "connection {extra_id} still listed: {ids:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status(&mut watcher, "Threads_connected").await, connected);
}

/// History: a client on the master aggregator asks SHOW VARIABLES (all, LIKE, GLOBAL), reads
/// INFORMATION_SCHEMA.GLOBAL_VARIABLES / SESSION_VARIABLES / GLOBAL_STATUS, and selects `@@` variables.
/// Property: MySQL's built-in variables and the cluster's own are listed together, once each, in name order; the
/// values agree with `SELECT @@name` and with INFORMATION_SCHEMA.COLLATIONS' collation; the INFORMATION_SCHEMA
/// tables carry the same rows under upper-case names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_variables_lists_builtin_and_cluster_variables() {
    let cluster = TestCluster::start("mysql-variables", 1).await;
    let mut conn = cluster.conn().await;
    let all: Vec<(String, Option<String>)> = conn.query("SHOW VARIABLES").await.unwrap();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "SHOW VARIABLES is in name order without duplicates");
    for name in ["version", "max_allowed_packet", "sql_mode", "redundancy_level", "leaf_failure_detection"] {
        assert!(names.contains(&name), "{name} is listed: {names:?}");
    }
    let value = |name: &str| all.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.clone()).unwrap();
    let version: String = conn.query_first("SELECT @@version").await.unwrap().unwrap();
    assert_eq!(value("version"), version);
    let packet: i64 = conn.query_first("SELECT @@max_allowed_packet").await.unwrap().unwrap();
    assert_eq!(value("max_allowed_packet"), packet.to_string());
    let port: u16 = conn.query_first("SELECT @@port").await.unwrap().unwrap();
    assert_eq!(port, cluster.master.port, "@@port is the port the node serves");
    assert_eq!(value("port"), port.to_string());

    let like: Vec<(String, String)> = conn.query("SHOW GLOBAL VARIABLES LIKE 'collation%'").await.unwrap();
    assert_eq!(like.len(), 3, "{like:?}");
    let collation: String =
        conn.query_first("SELECT COLLATION_NAME FROM information_schema.COLLATIONS").await.unwrap().unwrap();
    assert!(like.iter().all(|(_, v)| *v == collation), "{like:?} against {collation}");
    let connection_collation: String = conn.query_first("SELECT @@collation_connection").await.unwrap().unwrap();
    assert_eq!(connection_collation, collation);

    for table in ["GLOBAL_VARIABLES", "SESSION_VARIABLES"] {
        let rows: Vec<(String, Option<String>)> =
            conn.query(format!("SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.{table}")).await.unwrap();
        assert_eq!(rows.len(), all.len(), "{table} has the rows of SHOW VARIABLES");
        let redundancy: String = conn
            .query_first(format!(
                "SELECT VARIABLE_VALUE FROM information_schema.{table} WHERE VARIABLE_NAME = 'REDUNDANCY_LEVEL'"
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(redundancy, value("redundancy_level"));
    }
    let questions: String = conn
        .query_first("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'QUESTIONS'")
        .await
        .unwrap()
        .unwrap();
    assert!(questions.parse::<i64>().unwrap() >= 6, "questions so far: {questions}");
}

/// The MySQL error code of a failed statement.
fn error_code(result: Result<Vec<Row>, mysql_async::Error>) -> u16 {
    match result {
        Err(mysql_async::Error::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// History: connection A runs a read that sleeps 20 s on one partition; B sees it in SHOW PROCESSLIST and sends
/// KILL QUERY; then B reads that partition with a 10 s limit, A runs another statement, B kills idle connection C
/// and an id nobody has, and A and a new connection D run the long read under `max_execution_time` (session,
/// hint, global).
/// Property: the killed read fails with 1317 and the leaf stops it too (the partition answers B at once, where a
/// leaf still sleeping would hold it past B's limit); A stays usable; C is closed and leaves the list; an unknown
/// id is 1094; every time limit ends the read with 3024, and a session starts with the global limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_max_execution_time_stop_reads_on_the_leaves_too() {
    let cluster = TestCluster::start("mysql-kill", 1).await;
    let mut a = cluster.conn().await;
    a.query_drop("CREATE DATABASE k PARTITIONS 2").await.unwrap();
    a.query_drop("CREATE TABLE k.t (id INT PRIMARY KEY)").await.unwrap();
    a.query_drop("INSERT INTO k.t VALUES (1), (2), (3), (4)").await.unwrap();
    let a_id: u32 = a.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    let mut b = cluster.conn().await;

    let long = "SELECT SLEEP(20) FROM k.t WHERE id = 1";
    let victim = tokio::spawn(async move {
        let result = a.query::<Row, _>(long).await;
        (a, result)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let running: Option<String> = b
            .query_first(format!("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = {a_id}"))
            .await
            .unwrap()
            .flatten();
        if running.as_deref() == Some(long) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "A's read never showed as running: {running:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    b.query_drop(format!("KILL QUERY {a_id}")).await.unwrap();
    let (mut a, result) = victim.await.unwrap();
    assert_eq!(error_code(result), 1317, "the killed read is interrupted");
    let count: i64 = b
        .query_first("SELECT /*+ MAX_EXECUTION_TIME(10000) */ COUNT(*) FROM k.t WHERE id = 1")
        .await
        .expect("the leaf stopped the killed read, so its partition answers")
        .unwrap();
    assert_eq!(count, 1);
    let one: i64 = a.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1, "KILL QUERY leaves the connection open");

    let mut c = cluster.conn().await;
    let c_id: u32 = c.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    b.query_drop(format!("KILL QUERY {c_id}")).await.unwrap();
    let one: i64 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1, "a KILL QUERY of an idle connection stops nothing later");
    b.query_drop(format!("KILL {c_id}")).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ids: Vec<u32> = b.query("SELECT ID FROM information_schema.PROCESSLIST").await.unwrap();
        if !ids.contains(&c_id) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "killed connection {c_id} still listed: {ids:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(c.query_drop("SELECT 1").await.is_err(), "a killed connection is closed");
    assert_eq!(error_code(b.query("KILL 4000000").await), 1094);

    a.query_drop("SET SESSION max_execution_time = 300").await.unwrap();
    assert_eq!(error_code(a.query(long).await), 3024);
    a.query_drop("SET max_execution_time = 0").await.unwrap();
    let hinted = "SELECT /*+ MAX_EXECUTION_TIME(300) */ SLEEP(20) FROM k.t WHERE id = 2";
    assert_eq!(error_code(a.query(hinted).await), 3024);
    b.query_drop("SET GLOBAL max_execution_time = 300").await.unwrap();
    let mut d = cluster.conn().await;
    let limit: i64 = d.query_first("SELECT @@max_execution_time").await.unwrap().unwrap();
    assert_eq!(limit, 300, "a new session starts with the global limit");
    assert_eq!(error_code(d.query(long).await), 3024);
    b.query_drop("SET GLOBAL max_execution_time = 0").await.unwrap();
    assert_eq!(error_code(b.query("SET GLOBAL max_execution_time = -5").await), 1231, "a negative limit is refused");
    d.query_drop("INSERT INTO k.t VALUES (5)").await.unwrap();
}
