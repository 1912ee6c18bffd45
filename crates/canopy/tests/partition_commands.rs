//! The low-level partition commands in redundancy 1 through real processes: COPY PARTITION then PROMOTE PARTITION
//! ... WITH DROP moves a partition online, DROP and DETACH PARTITION take a replica away, CREATE PARTITION replaces
//! a partition lost with its leaf, and every command that would lose the last copy or make two masters is refused.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{TestCluster, eventually, text};

/// (ordinal, port, role) of every instance of `test`, from SHOW PARTITIONS.
async fn partitions(conn: &mut mysql_async::Conn) -> Vec<(u32, u16, String)> {
    let rows: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.expect("SHOW PARTITIONS");
    let mut all: Vec<(u32, u16, String)> = rows
        .iter()
        .map(|r| (text(r, "Ordinal").parse().unwrap(), text(r, "Port").parse().unwrap(), text(r, "Role")))
        .collect();
    all.sort();
    all
}

fn master_port(all: &[(u32, u16, String)], ordinal: u32) -> Option<u16> {
    all.iter().find(|(o, _, role)| *o == ordinal && role == "Master").map(|(_, p, _)| *p)
}

/// Database `test` of 2 partitions, table `x` with ids 1..=rows.
async fn create_test(conn: &mut mysql_async::Conn, rows: i64) {
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, 'v')")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
}

async fn count(conn: &mut mysql_async::Conn) -> i64 {
    conn.query_first("SELECT COUNT(*) FROM test.x").await.expect("count").expect("a row")
}

/// History: 2 leaves, `test` with 2 partitions and 200 rows, a writer inserting throughout; COPY PARTITION test:0
/// to the other leaf, then PROMOTE PARTITION test:0 ON it WITH DROP; the refusals; COPY test:1 then DROP PARTITION
/// of that replica, COPY again and DETACH PARTITION of it.
/// Property: COPY adds a replica and leaves the master serving; PROMOTE ... WITH DROP moves the master there and
/// drops the old copy with no failed statement and no lost row; SHOW REBALANCE STATUS shows the step; each refusal
/// names the partition and changes nothing; DROP and DETACH remove only the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_then_promote_with_drop_moves_a_partition_online() {
    let cluster = TestCluster::start("partition-commands", 2).await;
    let mut conn = cluster.conn().await;
    create_test(&mut conn, 200).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, mut conn) = (stop.clone(), cluster.conn().await);
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0i64, Vec::new());
            let mut id = 1000;
            while !stop.load(Ordering::Relaxed) && failed.len() < 20 {
                match conn.query_drop(format!("INSERT INTO test.x VALUES ({id}, 'w')")).await {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                id += 1;
            }
            (ok, failed)
        })
    };

    let before = partitions(&mut conn).await;
    let from = master_port(&before, 0).unwrap();
    let to = cluster.leaves.iter().map(|l| l.port).find(|p| *p != from).unwrap();
    conn.query_drop(format!("COPY PARTITION test:0 TO '127.0.0.1':{to}")).await.unwrap();
    let copied = partitions(&mut conn).await;
    assert!(copied.contains(&(0, to, "Replica".to_string())), "a replica on the target: {copied:?}");
    assert_eq!(master_port(&copied, 0), Some(from), "the master still serves");
    conn.query_drop(format!("PROMOTE PARTITION test:0 ON '127.0.0.1':{to} WITH DROP")).await.unwrap();
    let promoted = partitions(&mut conn).await;
    assert_eq!(master_port(&promoted, 0), Some(to));
    assert_eq!(promoted.iter().filter(|(o, _, _)| *o == 0).count(), 1, "the old copy is dropped: {promoted:?}");
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    assert_eq!(status.len(), 1, "the last command's step");
    assert_eq!(text(&status[0], "Action"), "PROMOTE PARTITION WITH DROP");
    assert_eq!(text(&status[0], "Status"), "success");

    let master1 = master_port(&promoted, 1).unwrap();
    let other1 = cluster.leaves.iter().map(|l| l.port).find(|p| *p != master1).unwrap();
    let refused = [
        format!("PROMOTE PARTITION test:0 ON '127.0.0.1':{from}"),
        format!("PROMOTE PARTITION test:0 ON '127.0.0.1':{from} WITH DROP"),
        format!("DROP PARTITION test:0 ON '127.0.0.1':{to}"),
        format!("DETACH PARTITION test:0 ON '127.0.0.1':{to}"),
        format!("DROP PARTITION test:0 ON '127.0.0.1':{from}"),
        format!("COPY PARTITION test:0 TO '127.0.0.1':{to}"),
        format!("CREATE PARTITION test:0 ON '127.0.0.1':{from}"),
        format!("COPY PARTITION test:7 TO '127.0.0.1':{from}"),
    ];
    for sql in &refused {
        let e = conn.query_drop(sql).await.expect_err(sql);
        assert!(e.to_string().contains("test:"), "{sql}: {e}");
    }
    assert_eq!(partitions(&mut conn).await, promoted, "the refusals changed nothing");

    conn.query_drop(format!("COPY PARTITION test:1 TO '127.0.0.1':{other1}")).await.unwrap();
    conn.query_drop(format!("DROP PARTITION test:1 ON '127.0.0.1':{other1}")).await.unwrap();
    assert_eq!(partitions(&mut conn).await, promoted, "the replica is dropped");
    conn.query_drop(format!("COPY PARTITION test:1 TO '127.0.0.1':{other1}")).await.unwrap();
    conn.query_drop(format!("DETACH PARTITION test:1 ON '127.0.0.1':{other1}")).await.unwrap();
    assert_eq!(partitions(&mut conn).await, promoted, "the replica is forgotten");

    stop.store(true, Ordering::Relaxed);
    let (written, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "no statement fails during the commands: {failed:?}");
    assert!(written > 0);
    assert_eq!(count(&mut conn).await, 200 + written, "every acknowledged row is there");
}

/// History: 2 leaves, `test` with 2 partitions, 100 rows; with failure detection on, the leaf holding test:1's
/// master is killed; CREATE PARTITION test:1 on the survivor.
/// Property: while test:1 has no copy on an online leaf, reads of the whole table fail with 1777; CREATE PARTITION
/// makes an empty master on the survivor, after which the table reads again with test:0's rows only and takes
/// writes to test:1; the same CREATE is refused once the partition has a master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partition_replaces_a_partition_lost_with_its_leaf() {
    let mut cluster = TestCluster::start("partition-create", 2).await;
    let mut conn = cluster.conn().await;
    create_test(&mut conn, 100).await;
    let all = partitions(&mut conn).await;
    let (lost, survivor) = (master_port(&all, 1).unwrap(), master_port(&all, 0).unwrap());
    assert_ne!(lost, survivor, "one partition per leaf");
    // test:0's rows, counted in the survivor's own copy of the partition.
    let mut direct = cluster.leaves[cluster.leaf_index(survivor)].connect().await;
    direct.query_drop("USE test_0").await.unwrap();
    let on_survivor: i64 = direct.query_first("SELECT COUNT(*) FROM x").await.unwrap().unwrap();
    drop(direct);
    let lost_leaf = cluster.leaf_index(lost);
    cluster.leaves[lost_leaf].kill();
    eventually("the lost leaf is offline", || async {
        let mut conn = cluster.conn().await;
        let rows: Vec<Row> = conn.query("SHOW LEAVES").await.ok()?;
        rows.iter().any(|r| text(r, "Port") == lost.to_string() && text(r, "State") == "offline").then_some(())
    })
    .await;
    let e = conn.query_drop("SELECT COUNT(*) FROM test.x").await.expect_err("test:1 is offline");
    assert!(e.to_string().contains("1777"), "{e}");
    conn.query_drop(format!("CREATE PARTITION test:1 ON '127.0.0.1':{survivor}")).await.unwrap();
    assert_eq!(count(&mut conn).await, on_survivor, "test:1 is empty now, test:0 keeps its rows");
    let e = conn
        .query_drop(format!("CREATE PARTITION test:1 ON '127.0.0.1':{survivor}"))
        .await
        .expect_err("a second master");
    assert!(e.to_string().contains("test:1"), "{e}");
    let values: Vec<String> = (1001..=1100).map(|i| format!("({i}, 'n')")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    assert_eq!(count(&mut conn).await, on_survivor + 100);
}

/// History: 2 leaves, `test` with 2 partitions; COPY PARTITION test:0 to the other leaf and DROP PARTITION of that
/// copy (the target now has a pooled connection to the source leaf); the source leaf is killed and restarted; once
/// it is online again, COPY PARTITION test:0 to the other leaf once more.
/// Property: the second copy succeeds: a pooled connection to a source that restarted since is replaced, not
/// reported as the source being unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_a_restarted_source_succeeds_at_once() {
    let mut cluster = TestCluster::start("partition-copy-restart", 2).await;
    let mut conn = cluster.conn().await;
    create_test(&mut conn, 100).await;
    let all = partitions(&mut conn).await;
    let from = master_port(&all, 0).unwrap();
    let to = cluster.leaves.iter().map(|l| l.port).find(|p| *p != from).unwrap();
    conn.query_drop(format!("COPY PARTITION test:0 TO '127.0.0.1':{to}")).await.unwrap();
    conn.query_drop(format!("DROP PARTITION test:0 ON '127.0.0.1':{to}")).await.unwrap();
    let source = cluster.leaf_index(from);
    cluster.leaves[source].kill();
    cluster.leaves[source].spawn();
    eventually("the restarted source leaf serves test:0 again", || async {
        let mut conn = cluster.conn().await;
        let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM test.x").await.ok()?;
        (n == Some(100)).then_some(())
    })
    .await;
    conn.query_drop(format!("COPY PARTITION test:0 TO '127.0.0.1':{to}")).await.expect("the copy succeeds");
    let copied = partitions(&mut conn).await;
    assert!(copied.contains(&(0, to, "Replica".to_string())), "{copied:?}");
}
