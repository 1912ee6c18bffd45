//! End to end through real processes: the spec's redundancy-1 example, the cluster views, durability across SIGKILL
//! and a full restart, and clear errors for bad cluster commands.

mod support;

use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use support::{NodeProc, TestCluster, free_port, temp_dir};

fn s(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::NULL => "NULL".into(),
        other => format!("{other:?}"),
    }
}

fn col(row: &Row, name: &str) -> String {
    let idx = row.columns_ref().iter().position(|c| c.name_str() == name).unwrap_or_else(|| panic!("no column {name}"));
    s(row.as_ref(idx).expect("value"))
}

async fn insert_ids(conn: &mut mysql_async::Conn, ids: std::ops::RangeInclusive<i64>) {
    let values: Vec<String> = ids.map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO test.x (id) VALUES {}", values.join(","))).await.expect("insert");
}

async fn min_max_count(conn: &mut mysql_async::Conn) -> (i64, i64, i64) {
    conn.query_first("SELECT MIN(id), MAX(id), COUNT(*) FROM test.x").await.expect("select").expect("one row")
}

/// History: 4 leaves, `test` with 8 partitions, ids 1..100 inserted through the master aggregator.
/// Property: the spec's example outputs — placement round-robin in leaf order, correct aggregate, the views — and
/// every row stored in exactly one partition on the leaf the metadata names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_example_placement_views_and_answers() {
    let cluster = TestCluster::start("spec", 4).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 8").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    insert_ids(&mut conn, 1..=100).await;
    assert_eq!(min_max_count(&mut conn).await, (1, 100, 100));

    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    assert_eq!(partitions.len(), 8);
    for (k, row) in partitions.iter().enumerate() {
        assert_eq!(col(row, "Ordinal"), k.to_string());
        assert_eq!(col(row, "Host"), "127.0.0.1");
        assert_eq!(col(row, "Port"), cluster.leaves[k % 4].port.to_string(), "ordinal {k} on leaf {}", k % 4 + 1);
        assert_eq!(col(row, "Role"), "Master");
        assert_eq!(col(row, "Locked"), "0");
    }

    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    assert_eq!(leaves.len(), 4);
    for (leaf, row) in cluster.leaves.iter().zip(&leaves) {
        assert_eq!(col(row, "Port"), leaf.port.to_string());
        assert_eq!(col(row, "State"), "online");
        assert_eq!(col(row, "Availability_Group"), "1");
        assert_eq!(col(row, "Pair_Host"), "NULL");
    }
    let aggregators: Vec<Row> = conn.query("SHOW AGGREGATORS").await.unwrap();
    assert_eq!(aggregators.len(), 1);
    assert_eq!(col(&aggregators[0], "Master_Aggregator"), "1");

    let leaf4 = cluster.leaves[3].port;
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT * FROM INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME='test' AND PORT={leaf4} ORDER BY ORDINAL"
        ))
        .await
        .unwrap();
    let ordinals: Vec<String> = rows.iter().map(|r| col(r, "ORDINAL")).collect();
    assert_eq!(ordinals, ["3", "7"]);
    assert!(rows.iter().all(|r| col(r, "ROLE") == "Master" && col(r, "IS_OFFLINE") == "0"));

    // Every leaf holds its partitions as `test_k` databases, and the rows of each sit where the hash says.
    let mut total = 0i64;
    for (i, leaf) in cluster.leaves.iter().enumerate() {
        let mut direct = leaf.connect().await;
        let dbs: Vec<Row> = direct.query("SHOW DATABASES EXTENDED").await.unwrap();
        let names: Vec<String> = dbs.iter().map(|r| col(r, "Database")).collect();
        assert_eq!(names, ["test".to_string(), format!("test_{i}"), format!("test_{}", i + 4)], "leaf {}", i + 1);
        for k in [i, i + 4] {
            direct.query_drop(format!("USE test_{k}")).await.unwrap();
            let n: i64 = direct.query_first("SELECT COUNT(*) FROM x").await.unwrap().unwrap();
            total += n;
            let ids: Vec<i64> = direct.query("SELECT id FROM x").await.unwrap();
            for id in ids {
                // A point query through the aggregator must find the row (it is routed by the same hash).
                let found: Option<i64> =
                    conn.query_first(format!("SELECT id FROM test.x WHERE id = {id}")).await.unwrap();
                assert_eq!(found, Some(id));
            }
        }
    }
    assert_eq!(total, 100, "every row is stored exactly once");

    let status: Vec<Row> = conn.query("SHOW CLUSTER STATUS").await.unwrap();
    let masters = status.iter().filter(|r| col(r, "ROLE") == "Master").count();
    let references = status.iter().filter(|r| col(r, "ROLE") == "Reference").count();
    assert_eq!((masters, references), (8, 4));
}

/// History: rows written and acknowledged, then the leaf holding some of them is SIGKILLed and restarted; later the
/// whole cluster is stopped and started again.
/// Property: no acknowledged row is lost, and the master aggregator remembers every leaf, database and table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_full_restart() {
    let mut cluster = TestCluster::start("durable", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id BIGINT PRIMARY KEY, v TEXT)").await.unwrap();
    insert_ids(&mut conn, 1..=50).await;
    for i in 51..=60 {
        conn.exec_drop("INSERT INTO test.x (id, v) VALUES (?, ?)", (i, format!("v{i}"))).await.unwrap();
    }
    drop(conn);

    cluster.leaves[1].kill();
    cluster.leaves[1].spawn();
    let mut conn = cluster.conn().await;
    let got = support::eventually("leaf back with its rows", || {
        let opts = cluster.master.opts();
        async move {
            let mut c = mysql_async::Conn::new(opts).await.ok()?;
            let r: Option<(i64, i64, i64)> =
                c.query_first("SELECT MIN(id), MAX(id), COUNT(*) FROM test.x").await.ok()?;
            r
        }
    })
    .await;
    assert_eq!(got, (1, 60, 60));
    let v: Option<String> = conn.query_first("SELECT v FROM test.x WHERE id = 55").await.unwrap();
    assert_eq!(v.as_deref(), Some("v55"));
    drop(conn);

    // Full restart: every process, master first (the safe order).
    cluster.master.terminate();
    for leaf in &mut cluster.leaves {
        leaf.terminate();
    }
    for leaf in &mut cluster.leaves {
        leaf.spawn();
    }
    cluster.master.spawn();
    let mut conn = cluster.conn().await;
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    assert_eq!(leaves.len(), 2);
    // Restarted leaves hold their partitions pending until the master aggregator attaches them (next heartbeat).
    let got = support::eventually("partitions attached after the restart", || {
        let opts = cluster.master.opts();
        async move {
            let mut c = mysql_async::Conn::new(opts).await.ok()?;
            c.query_first::<(i64, i64, i64), _>("SELECT MIN(id), MAX(id), COUNT(*) FROM test.x").await.ok()?
        }
    })
    .await;
    assert_eq!(got, (1, 60, 60));
    let states: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    assert!(states.iter().all(|r| col(r, "State") == "online"), "a restart in the safe order fails nothing over");
    let tables: Vec<String> = conn.query("SHOW TABLES FROM test").await.unwrap();
    assert_eq!(tables, ["x"]);
    // AUTO_INCREMENT-free inserts keep working after the restart.
    insert_ids(&mut conn, 61..=70).await;
    assert_eq!(min_max_count(&mut conn).await, (1, 70, 70));
}

/// Property: a node that shuts down on SIGTERM exits cleanly (status 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly() {
    let dir = temp_dir("sigterm");
    let mut node = NodeProc::start(&dir, free_port());
    drop(node.connect().await);
    assert!(node.terminate().success(), "{}", node.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// History: a cluster with one leaf; ADD LEAF is tried against a closed port, the same leaf again, a node of another
/// cluster, and BOOTSTRAP on the running master. Property: each gets a clear error and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cluster_commands_get_clear_errors() {
    let cluster = TestCluster::start("badcmd", 1).await;
    let mut conn = cluster.conn().await;

    let closed = free_port();
    let err = conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{closed}")).await.unwrap_err().to_string();
    assert!(err.contains("Cannot add") && err.contains("connect"), "{err}");

    let again = cluster.leaves[0].port;
    let err = conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{again}")).await.unwrap_err().to_string();
    assert!(err.contains("already part of this cluster"), "{err}");

    // A second cluster's master cannot be added as a leaf here.
    let other = TestCluster::start("badcmd-other", 0).await;
    let err =
        conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{}", other.master.port)).await.unwrap_err().to_string();
    assert!(err.contains("another cluster"), "{err}");

    let err = conn.query_drop("BOOTSTRAP AGGREGATOR '127.0.0.1'").await.unwrap_err().to_string();
    assert!(err.contains("already"), "{err}");

    let err = conn.query_drop("ADD LEAF root@'127.0.0.1'::").await.unwrap_err();
    assert!(err.to_string().contains("1064") || err.to_string().contains("syntax"), "{err}");

    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    assert_eq!(leaves.len(), 1);
}

/// History: a database created WITH ASYNC DURABILITY, rows acknowledged, the leaf holding them SIGKILLed and
/// restarted. Property: its partitions commit without waiting for fsync (synchronous=NORMAL, shown on the leaf and in
/// DISTRIBUTED_DATABASES), and acknowledged rows survive a process kill (not a power loss; see docs/sql.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_durability_survives_a_process_kill() {
    let mut cluster = TestCluster::start("asyncdur", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE fast WITH ASYNC DURABILITY PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE DATABASE safe PARTITIONS 2").await.unwrap();
    let flags: Vec<(String, i64)> = conn
        .query("SELECT DATABASE_NAME, IS_SYNC_DURABILITY FROM information_schema.DISTRIBUTED_DATABASES ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(flags, vec![("fast".to_string(), 0), ("safe".to_string(), 1)]);
    conn.query_drop("CREATE TABLE fast.t (id INT PRIMARY KEY)").await.unwrap();
    for i in 1..=50 {
        conn.query_drop(format!("INSERT INTO fast.t VALUES ({i})")).await.unwrap();
    }
    let mut direct = cluster.leaves[0].connect().await;
    for (db, level) in [("fast_0", 1), ("safe_1", 2)] {
        direct.query_drop(format!("USE {db}")).await.unwrap();
        let got: i64 = direct.query_first("PRAGMA synchronous").await.unwrap().unwrap();
        assert_eq!(got, level, "{db}");
    }
    drop(direct);
    cluster.leaves[0].kill();
    cluster.leaves[0].spawn();
    let n = support::eventually("rows back after the kill", || {
        let opts = cluster.master.opts();
        async move {
            let mut c = mysql_async::Conn::new(opts).await.ok()?;
            c.query_first::<i64, _>("SELECT COUNT(*) FROM fast.t").await.ok()?
        }
    })
    .await;
    assert_eq!(n, 50);
}
