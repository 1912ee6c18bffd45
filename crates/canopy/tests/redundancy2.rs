//! Redundancy 2 end to end through real processes: pairs, replica placement, failover to the pair with a larger
//! term, the returning leaf attached as replicas and the masters split evenly again, a deposed master that cannot
//! acknowledge anything, a replica killed mid-stream, both leaves of a pair down, and a diverged copy reprovisioned.

mod support;

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{TestCluster, eventually, text};

/// One row of INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS.
#[derive(Debug, Clone, PartialEq)]
struct Instance {
    ordinal: u32,
    port: u16,
    role: String,
    offline: bool,
    state: String,
    term: u64,
    id: u64,
}

async fn instances(conn: &mut mysql_async::Conn, db: &str) -> Vec<Instance> {
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT * FROM INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = '{db}' ORDER BY ORDINAL, ROLE"
        ))
        .await
        .expect("DISTRIBUTED_PARTITIONS");
    rows.iter()
        .map(|r| Instance {
            ordinal: text(r, "ORDINAL").parse().unwrap(),
            port: text(r, "PORT").parse().unwrap(),
            role: text(r, "ROLE"),
            offline: text(r, "IS_OFFLINE") == "1",
            state: text(r, "STATE"),
            term: text(r, "TERM").parse().unwrap(),
            id: text(r, "INSTANCE_ID").parse().unwrap(),
        })
        .collect()
}

fn master(all: &[Instance], ordinal: u32) -> Option<&Instance> {
    all.iter().find(|i| i.ordinal == ordinal && i.role == "Master")
}

fn replica(all: &[Instance], ordinal: u32) -> Option<&Instance> {
    all.iter().find(|i| i.ordinal == ordinal && i.role == "Replica")
}

async fn count(conn: &mut mysql_async::Conn, table: &str) -> i64 {
    conn.query_first(format!("SELECT COUNT(*) FROM {table}")).await.expect("count").expect("row")
}

async fn insert_range(conn: &mut mysql_async::Conn, table: &str, ids: std::ops::RangeInclusive<i64>) {
    let values: Vec<String> = ids.map(|i| format!("({i}, 'v{i}')")).collect();
    conn.query_drop(format!("INSERT INTO {table} (id, v) VALUES {}", values.join(","))).await.expect("insert");
}

/// Whether, for every pair, both leaves master the same number of partitions of `db` (and every partition has a
/// master and an in-sync replica on the other leaf of its pair).
fn balanced_and_in_sync(cluster: &TestCluster, all: &[Instance], partitions: u32, pairs: usize) -> bool {
    for k in 0..partitions {
        let (Some(m), Some(r)) = (master(all, k), replica(all, k)) else { return false };
        if r.state != "sync" || m.offline || r.offline {
            return false;
        }
        let (a, b) = (cluster.leaf_index(m.port), cluster.leaf_index(r.port));
        if a.abs_diff(b) != pairs {
            return false;
        }
    }
    (0..pairs).all(|p| {
        let masters = |i: usize| all.iter().filter(|x| x.role == "Master" && x.port == cluster.leaves[i].port).count();
        masters(p) == masters(p + pairs)
    })
}

/// History: the spec's redundancy-2 walkthrough. 8 leaves (leaf k paired with leaf k+4), `test` with 16
/// partitions, 100 rows; SIGKILL the leaf holding the master of test:3; read the 100 rows and write 100 more; restart
/// the leaf.
/// Property: SHOW LEAVES shows the pairs; every partition has a master and an in-sync replica on its pair; after the
/// kill test:3's master is on the pair with a larger term and the dead leaf's row stays as an offline replica; no
/// acknowledged row is lost; the returning leaf goes online by itself, its copies become in-sync replicas, the
/// masters are split evenly within each pair again, and all 200 rows are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_walkthrough_failover_and_return() {
    let mut cluster = TestCluster::start_paired("r2-walkthrough", 4, &[]).await;
    let mut conn = cluster.conn().await;
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    for (k, row) in leaves.iter().enumerate() {
        let pair = if k < 4 { k + 4 } else { k - 4 };
        assert_eq!(text(row, "Availability_Group"), if k < 4 { "1" } else { "2" });
        assert_eq!(
            text(row, "Pair_Port"),
            cluster.leaves[pair].port.to_string(),
            "leaf {} pairs with {}",
            k + 1,
            pair + 1
        );
    }
    conn.query_drop("CREATE DATABASE test PARTITIONS 16").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    conn.query_drop("CREATE REFERENCE TABLE test.r (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("INSERT INTO test.r VALUES (1), (2)").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=100).await;
    let before = instances(&mut conn, "test").await;
    assert_eq!(before.len(), 32, "a master and a replica per partition: {before:#?}");
    assert!(balanced_and_in_sync(&cluster, &before, 16, 4), "{before:#?}");
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    assert_eq!(partitions.len(), 32);
    let old = master(&before, 3).unwrap().clone();
    let old_replica = replica(&before, 3).unwrap().clone();
    assert_eq!(old_replica.term, 0, "replicas show term 0");

    let dead = cluster.leaf_index(old.port);
    cluster.leaves[dead].kill();
    // Every partition the dead leaf mastered fails over (test:3 and the other one, each in its own promotion).
    let after = eventually("test:3 and the dead leaf's other partition fail over to the pair", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        let moved = master(&all, 3).is_some_and(|m| m.port == old_replica.port);
        let none_left = (0..16).all(|k| master(&all, k).is_some_and(|m| m.port != old.port));
        (moved && none_left).then_some(all)
    })
    .await;
    let promoted = master(&after, 3).unwrap();
    assert!(promoted.term > old.term, "a larger term: {} after {}", promoted.term, old.term);
    assert_eq!(promoted.id, old_replica.id, "the same physical copy");
    let demoted = replica(&after, 3).expect("the dead leaf's row stays");
    assert!(demoted.offline && demoted.port == old.port, "{demoted:?}");
    assert_eq!(count(&mut conn, "test.x").await, 100);
    insert_range(&mut conn, "test.x", 101..=200).await;
    assert_eq!(count(&mut conn, "test.x").await, 200);
    assert_eq!(count(&mut conn, "test.r").await, 2);
    conn.query_drop("INSERT INTO test.r VALUES (3)").await.unwrap();

    cluster.leaves[dead].spawn();
    let back = eventually("the leaf returns and the masters are split evenly again", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        let online = support::leaf_state(&cluster, dead).await.as_deref() == Some("online");
        (online && balanced_and_in_sync(&cluster, &all, 16, 4)).then_some(all)
    })
    .await;
    let masters_back = back.iter().filter(|i| i.role == "Master" && i.port == old.port).count();
    assert_eq!(masters_back, 2, "half of the pair's 4 masters are on the returned leaf: {back:#?}");
    let mut direct = cluster.leaves[dead].connect().await;
    let local: Vec<Row> = direct.query("SHOW DATABASES EXTENDED").await.unwrap();
    let roles: Vec<(String, String)> = local
        .iter()
        .filter(|r| text(r, "Database").starts_with("test_"))
        .map(|r| (text(r, "Role"), text(r, "State")))
        .collect();
    let replicas = roles.iter().filter(|(role, state)| role == "sync replica" && state == "replicating").count();
    let masters = roles.iter().filter(|(role, state)| role == "master" && state == "online").count();
    assert_eq!((masters, replicas), (2, 2), "the leaf's own view: {roles:?}");
    assert_eq!(count(&mut conn, "test.x").await, 200);
    let sum: i64 = conn.query_first("SELECT SUM(id) FROM test.x").await.unwrap().unwrap();
    assert_eq!(sum, 200 * 201 / 2);
    assert_eq!(count(&mut conn, "test.r").await, 3);
}

/// The ordinal of `test`'s partition holding id `id`, by asking the planner (EXPLAIN names the single partition a
/// point query goes to).
async fn ordinal_of(conn: &mut mysql_async::Conn, table: &str, id: i64) -> u32 {
    let lines: Vec<String> =
        conn.query(format!("EXPLAIN SELECT * FROM {table} WHERE id = {id}")).await.expect("explain");
    let first = lines.first().expect("a plan");
    let rest = first.strip_prefix("Single partition ").unwrap_or_else(|| panic!("not a point read: {first}"));
    let after = &rest[rest.find(':').expect("db:ordinal") + 1..];
    after.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

/// Ids (from `from` on) whose rows live in partition `ordinal` of `table`.
async fn ids_in(conn: &mut mysql_async::Conn, table: &str, ordinal: u32, from: i64, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut id = from;
    while ids.len() < n {
        if ordinal_of(conn, table, id).await == ordinal {
            ids.push(id);
        }
        id += 1;
    }
    ids
}

async fn has_row(conn: &mut mysql_async::Conn, table: &str, id: i64) -> bool {
    let n: i64 = conn.query_first(format!("SELECT COUNT(*) FROM {table} WHERE id = {id}")).await.unwrap().unwrap();
    n == 1
}

/// Waits until every partition of `db` has a master and an in-sync replica and every leaf is online.
async fn healthy(cluster: &TestCluster, db: &str, partitions: u32) -> Vec<Instance> {
    eventually("every partition has an in-sync replica again", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, db).await;
        let rows: Vec<Row> = conn.query("SHOW LEAVES").await.ok()?;
        let online = rows.iter().all(|r| text(r, "State") == "online");
        let in_sync = (0..partitions).all(|k| {
            master(&all, k).is_some_and(|m| !m.offline) && replica(&all, k).is_some_and(|r| r.state == "sync")
        });
        (online && in_sync).then_some(all)
    })
    .await
}

/// History: 2 pairs, `leaf_failure_timeout_ms` 1500; the master leaf of test:0 is frozen with SIGSTOP; an INSERT
/// routed to test:0 is sent while it is frozen; the failover promotes the replica; then the frozen leaf resumes
/// (SIGCONT) and works through what it was sent.
/// Property: the deposed master acknowledges nothing after the promotion: the INSERT sent to it either failed and
/// its row is nowhere, or succeeded and its row is there (never an acknowledged write that is lost); writes to
/// test:0 succeed on the new master; the resumed leaf learns it is deposed and returns as an in-sync replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_is_deposed_and_acknowledges_nothing() {
    let cluster = TestCluster::start_paired("r2-deposed", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("SET GLOBAL leaf_failure_timeout_ms = 1500").await.unwrap();
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=40).await;
    let before = instances(&mut conn, "test").await;
    let old = master(&before, 0).unwrap().clone();
    let ids = ids_in(&mut conn, "test.x", 0, 1000, 3).await;
    let frozen = cluster.leaf_index(old.port);
    cluster.leaves[frozen].signal(libc_sigstop());
    let mut writer = cluster.conn().await;
    let in_flight = tokio::spawn({
        let id = ids[0];
        async move { writer.query_drop(format!("INSERT INTO test.x VALUES ({id}, 'frozen')")).await }
    });
    eventually("test:0 fails over while its master is frozen", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        master(&all, 0).filter(|m| m.port != old.port).map(|_| ())
    })
    .await;
    conn.query_drop(format!("INSERT INTO test.x VALUES ({}, 'after')", ids[1]))
        .await
        .expect("writes go to the new master");
    cluster.leaves[frozen].signal(libc_sigcont());
    let outcome =
        tokio::time::timeout(std::time::Duration::from_secs(60), in_flight).await.expect("the INSERT ends").unwrap();
    let present = has_row(&mut conn, "test.x", ids[0]).await;
    match &outcome {
        Ok(()) => assert!(present, "an acknowledged write is never lost"),
        Err(e) => assert!(!present, "a write that failed ({e}) is not there"),
    }
    healthy(&cluster, "test", 4).await;
    conn.query_drop(format!("INSERT INTO test.x VALUES ({}, 'healed')", ids[2])).await.unwrap();
    let expected = 40 + 2 + i64::from(present);
    assert_eq!(count(&mut conn, "test.x").await, expected);
    let log = cluster.leaves[frozen].log();
    assert!(log.contains("deposed"), "the resumed master learns it was deposed:\n{log}");
}

fn libc_sigstop() -> i32 {
    19
}

fn libc_sigcont() -> i32 {
    18
}

/// History: 2 pairs; a writer inserts continuously into test:0 while the leaf holding test:0's replica is
/// SIGKILLed and, a moment later, restarted (that leaf also masters other partitions, which fail over).
/// Property: not one write to test:0 fails (its commits wait for the dead replica only until the master
/// aggregator records it out of sync, then go on), the restarted leaf catches up and is in sync again, and every
/// acknowledged row is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_fails_no_write_and_catches_up() {
    let mut cluster = TestCluster::start_paired("r2-replica-kill", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    let all = instances(&mut conn, "test").await;
    let victim = cluster.leaf_index(replica(&all, 0).unwrap().port);
    let ids = ids_in(&mut conn, "test.x", 0, 1, 1500).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer_of(cluster.conn().await, ids, stop.clone());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    cluster.leaves[victim].kill();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    cluster.leaves[victim].spawn();
    healthy(&cluster, "test", 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "no write fails when a replica dies: {failed:?}");
    assert!(ok.len() > 20, "the writer kept writing: {}", ok.len());
    assert_eq!(count(&mut conn, "test.x").await, ok.len() as i64);
    let dups: Vec<Row> = conn.query("SELECT id FROM test.x GROUP BY id HAVING COUNT(*) > 1").await.unwrap();
    assert!(dups.is_empty());
}

/// History: 2 pairs, refused pings never taken for a dead leaf (`leaf_failure_refused_count` 1000); a writer inserts
/// continuously into test:0 while the leaf holding test:0's replica is SIGKILLed, its journal of held entries
/// (acknowledged, not yet applied) is deleted while it is down, as if lost, and it is restarted at once, so the
/// master aggregator never sees it offline: the restarted leaf reports its copies pending and they are attached in
/// place. (Retried, up to 5 times, until the kill finds entries held.)
/// Property: the commit that waited across the restart gets the missing entries to the replica from its master's
/// log (the master leaf logs it) and succeeds; not one write fails, every acknowledged row is there exactly once,
/// and the replica is in sync again holding the master's position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_what_it_held_gets_it_from_the_waiting_commit() {
    let mut cluster = TestCluster::start_paired("r2-replica-lost-held", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("SET GLOBAL leaf_failure_refused_count = 1000").await.unwrap();
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    let all = instances(&mut conn, "test").await;
    let victim = cluster.leaf_index(replica(&all, 0).unwrap().port);
    let master_leaf = cluster.leaf_index(master(&all, 0).unwrap().port);
    let ids = ids_in(&mut conn, "test.x", 0, 1, 3000).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer_of(cluster.conn().await, ids, stop.clone());
    let journal = cluster.leaves[victim].data_dir.join("leaf/partitions/test_0.sqlite-held");
    let mut lost = false;
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        cluster.leaves[victim].kill();
        lost = std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0);
        let _ = std::fs::remove_file(&journal);
        cluster.leaves[victim].spawn();
        healthy(&cluster, "test", 4).await;
        if lost {
            break;
        }
    }
    assert!(lost, "no kill found entries held");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "no write fails when a replica restarts: {failed:?}");
    let log = cluster.leaves[master_leaf].log();
    assert!(log.contains("the replica lacks entries"), "the waiting commit filled the replica's gap:\n{log}");
    // The restarted leaf's own masters serve once the master aggregator has attached them in place.
    let rows: i64 = eventually("every partition serves again", || async {
        let mut conn = cluster.conn().await;
        conn.query_first::<i64, _>("SELECT COUNT(*) FROM test.x").await.ok().flatten()
    })
    .await;
    assert_eq!(rows, ok.len() as i64);
    let dups: Vec<Row> = conn.query("SELECT id FROM test.x GROUP BY id HAVING COUNT(*) > 1").await.unwrap();
    assert!(dups.is_empty());
    let expected = position_on(&cluster, master_leaf, "test_0").await;
    eventually("the replica holds the master's position", || async {
        (position_on(&cluster, victim, "test_0").await == expected).then_some(())
    })
    .await;
}

/// History: 2 pairs; both leaves of one pair are SIGKILLed; later both restart.
/// Property: the other pair's partitions keep answering; a partition whose two copies are gone answers ERROR 1777
/// (as in redundancy 1); when the pair returns every row is there and every partition has an in-sync replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_leaves_of_a_pair_down_take_only_their_partitions_offline() {
    let mut cluster = TestCluster::start_paired("r2-pair-down", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=100).await;
    let all = instances(&mut conn, "test").await;
    let (a, b) =
        (cluster.leaf_index(master(&all, 0).unwrap().port), cluster.leaf_index(replica(&all, 0).unwrap().port));
    let survivor =
        (0..4u32).find(|&k| master(&all, k).is_some_and(|m| ![a, b].contains(&cluster.leaf_index(m.port)))).unwrap();
    cluster.leaves[a].kill();
    cluster.leaves[b].kill();
    let lost_id = ids_in(&mut conn, "test.x", 0, 1, 1).await[0];
    let kept_id = ids_in(&mut conn, "test.x", survivor, 1, 1).await[0];
    let code = eventually("test:0 has no master", || async {
        let mut conn = cluster.conn().await;
        match conn.query_drop(format!("SELECT * FROM test.x WHERE id = {lost_id}")).await {
            Err(mysql_async::Error::Server(e)) if e.code == 1777 => Some(e.code),
            _ => None,
        }
    })
    .await;
    assert_eq!(code, 1777);
    assert!(has_row(&mut conn, "test.x", kept_id).await, "the other pair still answers");
    conn.query_drop("INSERT INTO test.x VALUES (100001, 'x')").await.ok();
    cluster.leaves[a].spawn();
    cluster.leaves[b].spawn();
    healthy(&cluster, "test", 4).await;
    assert!(count(&mut conn, "test.x").await >= 100);
    for id in 1..=100 {
        assert!(has_row(&mut conn, "test.x", id).await, "row {id} survived");
    }
}

/// History: 2 pairs; the replica leaf of test:0 is stopped; its copy of test:0 is tampered with on disk (a row and
/// a log entry the master never wrote, at the index the master writes next, in the same term); the master takes
/// more writes; the leaf restarts.
/// Property: the fork is detected (same index and term, another entry), the copy is dropped and copied afresh
/// from the master, and once it is promoted (its master killed) it holds exactly the acknowledged rows: the
/// tampered row is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_copy_is_reprovisioned() {
    let (cluster, mut conn) = replica_damaged_while_down("r2-diverged", |file| {
        let db = rusqlite::Connection::open(file).unwrap();
        let (term, index): (i64, i64) = db
            .query_row("SELECT term, log_index FROM _canopy_log_position", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        db.execute_batch(&format!(
            "BEGIN; INSERT INTO x VALUES (-1, 'forked');
             INSERT INTO _canopy_log (term, log_index, kind, payload) VALUES ({term}, {}, 1, CAST('-- forked' AS BLOB));
             UPDATE _canopy_log_position SET log_index = log_index + 1; COMMIT;",
            index + 1
        ))
        .unwrap();
    })
    .await;
    let log = cluster.master.log();
    assert!(log.contains("copying it afresh"), "the fork was detected and the copy replaced:\n{log}");
    assert!(!has_row(&mut conn, "test.x", -1).await, "the forked row is gone");
}

/// The shared history of the damaged-replica tests: 2 pairs, `test` with 4 partitions and 50 rows; the leaf holding
/// test:0's replica is killed, and once its masters failed over `damage` gets its file of test:0; 30 more rows; the
/// leaf restarts and every partition is healthy again; then test:0's master leaf is killed. Asserts that test:0 fails
/// over to the repaired copy (and every other partition of the dead leaf fails over) with exactly the 80 rows.
async fn replica_damaged_while_down(
    name: &str,
    damage: impl FnOnce(&std::path::Path),
) -> (TestCluster, mysql_async::Conn) {
    let mut cluster = TestCluster::start_paired(name, 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=50).await;
    let all = instances(&mut conn, "test").await;
    let victim = cluster.leaf_index(replica(&all, 0).unwrap().port);
    let master_leaf = cluster.leaf_index(master(&all, 0).unwrap().port);
    // A replica applies the entries it holds a moment later, or when its copy is used: reading its positions makes
    // its file hold the 50 rows, so `damage` finds the table (a kill before that would only lose held entries,
    // which the returning copy gets again from its master).
    let name = "test_0";
    let expected = position_on(&cluster, cluster.leaf_index(master(&all, 0).unwrap().port), name).await;
    assert_eq!(position_on(&cluster, victim, name).await, expected, "the replica holds the master's position");
    cluster.leaves[victim].kill();
    eventually("the stopped leaf's masters fail over", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        let port = cluster.leaves[victim].port;
        (0..4).all(|k| master(&all, k).is_some_and(|m| m.port != port)).then_some(())
    })
    .await;
    damage(&cluster.leaves[victim].data_dir.join("leaf/partitions/test_0.sqlite"));
    insert_range(&mut conn, "test.x", 51..=80).await;
    cluster.leaves[victim].spawn();
    healthy(&cluster, "test", 4).await;
    cluster.leaves[master_leaf].kill();
    eventually("test:0 fails over to the repaired copy, and every other partition of the dead leaf", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        let dead = cluster.leaves[master_leaf].port;
        let moved = master(&all, 0).is_some_and(|m| cluster.leaf_index(m.port) == victim);
        (moved && (0..4).all(|k| master(&all, k).is_some_and(|m| m.port != dead))).then_some(())
    })
    .await;
    assert_eq!(count(&mut conn, "test.x").await, 80);
    (cluster, conn)
}

/// What a writer did: the ids acknowledged, and the ids that failed with their errors.
type Written = (Vec<i64>, Vec<(i64, String)>);

/// Runs `insert` writers into test.x from `first` on until `stop`, returning (acknowledged, failed) ids.
fn spawn_writer(
    conn: mysql_async::Conn,
    first: i64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Written> {
    spawn_writer_of(conn, first.., stop)
}

/// Inserts the ids of `ids` into test.x, one statement each, until they run out or `stop`, returning (acknowledged,
/// failed) ids.
fn spawn_writer_of(
    conn: mysql_async::Conn,
    ids: impl IntoIterator<Item = i64, IntoIter: Send> + 'static,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Written> {
    let mut conn = conn;
    let ids = ids.into_iter();
    tokio::spawn(async move {
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for id in ids {
            // Bounded: a writer that keeps failing (a dead master aggregator) stops instead of growing without end.
            if stop.load(std::sync::atomic::Ordering::Relaxed) || failed.len() >= 100 {
                break;
            }
            match conn.query_drop(format!("INSERT INTO test.x VALUES ({id}, 'w')")).await {
                Ok(()) => ok.push(id),
                Err(e) => failed.push((id, e.to_string())),
            }
        }
        (ok, failed)
    })
}

fn masters_on(all: &[Instance], port: u16) -> usize {
    all.iter().filter(|i| i.role == "Master" && i.port == port).count()
}

/// History: 2 pairs, a writer running throughout: DETACH LEAF of leaf 1, ATTACH LEAF, REBALANCE PARTITIONS; with
/// auto_attach OFF leaf 2 is killed and restarted, then attached by hand; with failure detection OFF (no healing in
/// the background) leaf 2 is removed, a new leaf added into its group, REBALANCE PARTITIONS, a replica dropped by
/// hand, EXPLAIN RESTORE REDUNDANCY and RESTORE REDUNDANCY.
/// Property: DETACH moves the partitions of the leaf's pair to the other pair, each keeping a master and an in-sync
/// replica, and no statement fails; ATTACH brings the leaf back and the rebalance gives its pair its share again,
/// masters split; a returning leaf waits `detached` with auto_attach OFF; REMOVE LEAF keeps two copies of every
/// partition the same way; the new leaf pairs with the survivor and the rebalance fills the pair; EXPLAIN RESTORE
/// REDUNDANCY shows a COPY PARTITION FORCE for the partition without a replica and RESTORE REDUNDANCY makes it; every
/// acknowledged row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_attach_remove_and_restore_redundancy() {
    let mut cluster = TestCluster::start_paired("r2-detach", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=100).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer(cluster.conn().await, 1000, stop.clone());
    let (p1, p2) = (cluster.leaves[0].port, cluster.leaves[1].port);

    conn.query_drop(format!("DETACH LEAF '127.0.0.1':{p1}")).await.unwrap();
    let all = instances(&mut conn, "test").await;
    let p1_pair = cluster.leaves[2].port;
    assert!(all.iter().all(|i| i.port != p1 && i.port != p1_pair), "its pair's partitions moved: {all:#?}");
    assert_eq!(all.len(), 8, "every partition keeps two copies: {all:#?}");
    assert!((0..4).all(|k| replica(&all, k).is_some_and(|r| r.state == "sync")), "{all:#?}");
    assert_eq!(support::leaf_state(&cluster, 0).await.as_deref(), Some("detached"));
    conn.query_drop(format!("ATTACH LEAF '127.0.0.1':{p1}")).await.unwrap();
    healthy(&cluster, "test", 4).await;
    conn.query_drop("REBALANCE PARTITIONS ON test").await.unwrap();
    let all = healthy(&cluster, "test", 4).await;
    assert_eq!(masters_on(&all, p1), 1, "the pair has its two partitions again, masters split: {all:#?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "no statement fails during DETACH or ATTACH: {failed:?}");
    let mut acknowledged = ok.len() as i64;

    // A kill fails the statements running on the dead leaf: no writer here.
    conn.query_drop("SET GLOBAL auto_attach = OFF").await.unwrap();
    cluster.leaves[1].kill();
    eventually("leaf 2 is offline", || async {
        (support::leaf_state(&cluster, 1).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    cluster.leaves[1].spawn();
    eventually("leaf 2 returns detached", || async {
        (support::leaf_state(&cluster, 1).await.as_deref() == Some("detached")).then_some(())
    })
    .await;
    conn.query_drop(format!("ATTACH LEAF '127.0.0.1':{p2}")).await.unwrap();
    healthy(&cluster, "test", 4).await;
    conn.query_drop("SET GLOBAL auto_attach = ON").await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer(cluster.conn().await, 100_000, stop.clone());
    conn.query_drop("SET GLOBAL leaf_failure_detection = OFF").await.unwrap();
    conn.query_drop(format!("REMOVE LEAF '127.0.0.1':{p2}")).await.unwrap();
    let all = instances(&mut conn, "test").await;
    let p2_pair = cluster.leaves[3].port;
    assert!(all.iter().all(|i| i.port != p2 && i.port != p2_pair), "its pair's partitions moved: {all:#?}");
    assert_eq!(all.len(), 8, "every partition keeps two copies: {all:#?}");
    let new = support::NodeProc::start(&cluster.dir.join("leaf-new"), support::free_port());
    drop(new.connect().await);
    conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{}", new.port)).await.unwrap();
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    let added = leaves.iter().find(|r| text(r, "Port") == new.port.to_string()).unwrap();
    assert_eq!(text(added, "Availability_Group"), "1", "it joins the smaller group");
    assert_eq!(text(added, "Pair_Port"), cluster.leaves[3].port.to_string(), "and pairs with the survivor");
    conn.query_drop("REBALANCE PARTITIONS ON test").await.unwrap();
    let all = instances(&mut conn, "test").await;
    assert_eq!(masters_on(&all, new.port) + masters_on(&all, p2_pair), 2, "the new pair's share: {all:#?}");
    let lone = all.iter().find(|i| i.role == "Replica" && (i.port == new.port || i.port == p2_pair)).unwrap().clone();
    conn.query_drop(format!("DROP PARTITION test:{} ON '127.0.0.1':{}", lone.ordinal, lone.port)).await.unwrap();
    let plan: Vec<Row> = conn.query("EXPLAIN RESTORE REDUNDANCY ON test").await.unwrap();
    assert_eq!(plan.len(), 1, "a replica for the partition left with one copy");
    assert!(
        plan.iter()
            .all(|r| text(r, "Action") == "COPY PARTITION FORCE" && text(r, "Target_Port") == lone.port.to_string())
    );
    let made: Vec<Row> = conn.query("RESTORE REDUNDANCY ON test").await.unwrap();
    drop(made);
    let plan: Vec<Row> = conn.query("EXPLAIN RESTORE REDUNDANCY ON test").await.unwrap();
    assert!(plan.is_empty(), "nothing left to restore");
    conn.query_drop("SET GLOBAL leaf_failure_detection = ON").await.unwrap();
    let all = eventually("every partition has an in-sync replica", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        (0..4).all(|k| replica(&all, k).is_some_and(|r| r.state == "sync")).then_some(all)
    })
    .await;
    assert_eq!(all.len(), 8);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "no statement fails during REMOVE or RESTORE: {failed:?}");
    acknowledged += ok.len() as i64;
    assert_eq!(count(&mut conn, "test.x").await, 100 + acknowledged);
    drop(new);
}

/// History: 2 pairs; PROMOTE PARTITION of test:0's replica; then the refusals: PROMOTE ... WITH DROP, DROP and
/// DETACH of the master, COPY to a leaf that is not the master's pair, COPY onto a leaf holding a copy; with
/// healing off, DROP PARTITION of the replica, then COPY PARTITION back onto the pair.
/// Property: the promotion swaps the roles in a larger term with no row lost; every refusal is a clear error that
/// changes nothing; the dropped replica is gone from the metadata and the copy makes an in-sync replica again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_commands_keep_two_copies_and_one_master() {
    let cluster = TestCluster::start_paired("r2-partition-commands", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=50).await;
    let before = instances(&mut conn, "test").await;
    let (old, rep) = (master(&before, 0).unwrap().clone(), replica(&before, 0).unwrap().clone());
    conn.query_drop(format!("PROMOTE PARTITION test:0 ON '127.0.0.1':{}", rep.port)).await.unwrap();
    let after = instances(&mut conn, "test").await;
    let promoted = master(&after, 0).unwrap();
    assert_eq!(promoted.port, rep.port);
    assert!(promoted.term > old.term);
    let all = healthy(&cluster, "test", 2).await;
    assert_eq!(replica(&all, 0).unwrap().port, old.port, "the old master is the replica now");
    assert_eq!(count(&mut conn, "test.x").await, 50);

    let other_pair = cluster.leaves.iter().map(|l| l.port).find(|p| *p != old.port && *p != rep.port).unwrap();
    let refused = [
        format!("PROMOTE PARTITION test:0 ON '127.0.0.1':{} WITH DROP", old.port),
        format!("DROP PARTITION test:0 ON '127.0.0.1':{}", rep.port),
        format!("DETACH PARTITION test:0 ON '127.0.0.1':{}", rep.port),
        format!("COPY PARTITION test:0 TO '127.0.0.1':{other_pair}"),
        format!("COPY PARTITION test:0 TO '127.0.0.1':{}", old.port),
        format!("DROP PARTITION test:0 ON '127.0.0.1':{other_pair}"),
    ];
    for sql in &refused {
        let e = conn.query_drop(sql).await.expect_err(sql);
        assert!(e.to_string().contains("test:0"), "{sql}: {e}");
    }
    assert_eq!(instances(&mut conn, "test").await, all, "the refusals changed nothing");

    conn.query_drop("SET GLOBAL leaf_failure_detection = OFF").await.unwrap();
    conn.query_drop(format!("DROP PARTITION test:0 ON '127.0.0.1':{}", old.port)).await.unwrap();
    let dropped = instances(&mut conn, "test").await;
    assert_eq!(dropped.len(), 3);
    assert!(replica(&dropped, 0).is_none());
    insert_range(&mut conn, "test.x", 51..=60).await;
    conn.query_drop(format!("COPY PARTITION test:0 TO '127.0.0.1':{}", old.port)).await.unwrap();
    let copied = instances(&mut conn, "test").await;
    assert_eq!(replica(&copied, 0).map(|r| (r.port, r.state.as_str())), Some((old.port, "sync")));
    conn.query_drop("SET GLOBAL leaf_failure_detection = ON").await.unwrap();
    assert_eq!(count(&mut conn, "test.x").await, 60);
}

/// History: 2 pairs, a writer into test:0 and a monitor reading DISTRIBUTED_PARTITIONS in a loop, while test:0's
/// master is moved back and forth between the pair's leaves by PROMOTE PARTITION six times (planned promotions, as
/// the pair rebalance and DETACH LEAF make them).
/// Property: at every moment the monitor looks, test:0 has one master and an in-sync replica: a planned promotion
/// never leaves the partition without a failover candidate (the old master enters the new master's commit path
/// before the gate opens, and the metadata records both together); no statement fails and no row is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_promotions_keep_an_in_sync_replica_at_every_moment() {
    let cluster = TestCluster::start_paired("r2-planned", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=20).await;
    healthy(&cluster, "test", 2).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_writer(cluster.conn().await, 1000, stop.clone());
    let monitor = {
        let (stop, mut conn) = (stop.clone(), cluster.conn().await);
        tokio::spawn(async move {
            let (mut looks, mut gaps) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && gaps.len() < 10 {
                let all = instances(&mut conn, "test").await;
                let ok = master(&all, 0).is_some_and(|m| !m.offline)
                    && replica(&all, 0).is_some_and(|r| r.state == "sync" && !r.offline);
                if !ok {
                    gaps.push(all);
                }
                looks += 1;
            }
            (looks, gaps)
        })
    };
    for _ in 0..6 {
        let all = instances(&mut conn, "test").await;
        let to = replica(&all, 0).expect("a replica").port;
        conn.query_drop(format!("PROMOTE PARTITION test:0 ON '127.0.0.1':{to}")).await.unwrap();
        assert_eq!(master(&instances(&mut conn, "test").await, 0).map(|m| m.port), Some(to));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (looks, gaps) = monitor.await.unwrap();
    let (ok, failed) = writer.await.unwrap();
    assert!(looks >= 6, "the monitor looked throughout ({looks} looks)");
    assert!(gaps.is_empty(), "test:0 without an in-sync replica, seen {} times: {:#?}", gaps.len(), gaps.first());
    assert!(failed.is_empty(), "no statement fails during planned promotions: {failed:?}");
    assert_eq!(count(&mut conn, "test.x").await, 20 + ok.len() as i64);
}

/// History: 2 pairs, 50 rows; the leaf holding test:0's replica is killed and its copy of test:0 deleted from
/// disk (a lost disk, or a reprovision that dropped the copy and then failed to copy); 30 more rows; the leaf
/// restarts; then the master's leaf of test:0 is killed.
/// Property: the replica without a file is copied afresh and brought in sync by itself (healing does not stop at
/// "no such partition"), so test:0 fails over to it with all 80 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_copy_is_gone_is_copied_afresh() {
    replica_damaged_while_down("r2-lost-copy", |file| {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = file.as_os_str().to_owned();
            path.push(suffix);
            if std::path::Path::new(&path).exists() {
                std::fs::remove_file(&path).unwrap();
            }
        }
    })
    .await;
}

/// History: 2 pairs, `test` with 4 partitions and 100 rows; leaf 1 is killed and its partitions fail over to its
/// pair; with healing off, REMOVE LEAF ... FORCE of the dead leaf; a new leaf is added (it pairs with the survivor);
/// EXPLAIN RESTORE REDUNDANCY, RESTORE REDUNDANCY; 50 more rows.
/// Property: after the FORCE removal the survivor's partitions have one copy each and EXPLAIN RESTORE REDUNDANCY
/// shows a COPY PARTITION FORCE onto the new leaf for each of them, nothing for the other pair; RESTORE REDUNDANCY
/// makes every one an in-sync replica there, EXPLAIN is empty afterwards, and no row is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_redundancy_after_remove_leaf_force() {
    let mut cluster = TestCluster::start_paired("r2-remove-force", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    insert_range(&mut conn, "test.x", 1..=100).await;
    healthy(&cluster, "test", 4).await;
    let (dead, survivor) = (cluster.leaves[0].port, cluster.leaves[2].port);
    cluster.leaves[0].kill();
    eventually("the dead leaf's partitions fail over to its pair", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "test").await;
        (0..4).all(|k| master(&all, k).is_some_and(|m| m.port != dead)).then_some(())
    })
    .await;
    conn.query_drop("SET GLOBAL leaf_failure_detection = OFF").await.unwrap();
    conn.query_drop(format!("REMOVE LEAF '127.0.0.1':{dead} FORCE")).await.unwrap();
    let all = instances(&mut conn, "test").await;
    assert!(all.iter().all(|i| i.port != dead), "the dead leaf's copies are forgotten: {all:#?}");
    let alone: Vec<u32> = (0..4).filter(|&k| replica(&all, k).is_none()).collect();
    assert_eq!(alone.len(), 2, "the survivor's two partitions have one copy each: {all:#?}");
    assert!(alone.iter().all(|&k| master(&all, k).is_some_and(|m| m.port == survivor)));

    let new = support::NodeProc::start(&cluster.dir.join("leaf-new"), support::free_port());
    drop(new.connect().await);
    conn.query_drop(format!("ADD LEAF root@'127.0.0.1':{}", new.port)).await.unwrap();
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    let added = leaves.iter().find(|r| text(r, "Port") == new.port.to_string()).unwrap();
    assert_eq!(text(added, "Pair_Port"), survivor.to_string(), "the new leaf pairs with the survivor");
    let plan: Vec<Row> = conn.query("EXPLAIN RESTORE REDUNDANCY ON test").await.unwrap();
    let mut planned: Vec<u32> = plan.iter().map(|r| text(r, "Ordinal").parse().unwrap()).collect();
    planned.sort();
    assert_eq!(planned, alone, "a replica for each partition left with one copy");
    assert!(
        plan.iter()
            .all(|r| text(r, "Action") == "COPY PARTITION FORCE" && text(r, "Target_Port") == new.port.to_string())
    );
    conn.query_drop("RESTORE REDUNDANCY ON test").await.unwrap();
    let plan: Vec<Row> = conn.query("EXPLAIN RESTORE REDUNDANCY ON test").await.unwrap();
    assert!(plan.is_empty(), "nothing left to restore");
    let all = instances(&mut conn, "test").await;
    for k in &alone {
        assert_eq!(replica(&all, *k).map(|r| (r.port, r.state.as_str())), Some((new.port, "sync")), "{all:#?}");
    }
    conn.query_drop("SET GLOBAL leaf_failure_detection = ON").await.unwrap();
    insert_range(&mut conn, "test.x", 101..=150).await;
    assert_eq!(count(&mut conn, "test.x").await, 150);
    drop(new);
}

/// The `Position` SHOW DATABASES EXTENDED shows for copy `name` on leaf `leaf`.
async fn position_on(cluster: &TestCluster, leaf: usize, name: &str) -> Option<String> {
    let mut direct = cluster.leaves[leaf].connect().await;
    let rows: Vec<Row> = direct.query("SHOW DATABASES EXTENDED").await.ok()?;
    rows.iter().find(|r| text(r, "Database") == name).map(|r| text(r, "Position"))
}

/// History: 2 pairs, `a` created WITH ASYNC REPLICATION (2 partitions); with failure detection OFF the replica leaf
/// of a:0 is frozen (SIGSTOP) while 20 rows are inserted and SNAPSHOT DATABASE a runs, then resumed; once the replica's log position equals the
/// master's, detection is turned on and a:0's master leaf is killed. Then, with a writer running, a:1's master is
/// moved to its replica and back by PROMOTE PARTITION.
/// Property: SHOW CREATE DATABASE and DISTRIBUTED_PARTITIONS say asynchronous (SYNC_DESIRED 0, replicas
/// `replicating`); inserts complete while the replica is frozen (a sync database's would wait for it); the entries
/// follow to the replica (the snapshot kept the ones it had not taken), so the failover loses nothing here; a planned promotion brings the replica up to date
/// first, so it loses no acknowledged row either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_replication_does_not_wait_for_the_replica_and_its_entries_follow() {
    let mut cluster = TestCluster::start_paired("r2-async", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE a PARTITIONS 2 WITH ASYNC REPLICATION").await.unwrap();
    conn.query_drop("CREATE TABLE a.x (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    let created: Vec<Row> = conn.query("SHOW CREATE DATABASE a").await.unwrap();
    assert!(text(&created[0], "Create Database").contains("WITH ASYNC REPLICATION"), "{created:?}");
    let rows: Vec<Row> =
        conn.query("SELECT SYNC_DESIRED, STATE, ROLE FROM INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS").await.unwrap();
    assert!(rows.iter().all(|r| text(r, "SYNC_DESIRED") == "0"), "asynchronous");
    assert!(rows.iter().filter(|r| text(r, "ROLE") == "Replica").all(|r| text(r, "STATE") == "replicating"));

    conn.query_drop("SET GLOBAL leaf_failure_detection = OFF").await.unwrap();
    let all = instances(&mut conn, "a").await;
    let replica_leaf = cluster.leaf_index(replica(&all, 0).unwrap().port);
    let master_leaf = cluster.leaf_index(master(&all, 0).unwrap().port);
    cluster.leaves[replica_leaf].signal(libc_sigstop());
    let inserts = async {
        for id in 1..=20 {
            conn.query_drop(format!("INSERT INTO a.x VALUES ({id}, 'v')")).await.unwrap();
        }
    };
    let finished = tokio::time::timeout(support::DEADLINE, inserts).await;
    // A checkpoint on the master while the replica lags keeps the entries the replica has not taken.
    let snapshot = conn.query_drop("SNAPSHOT DATABASE a").await;
    cluster.leaves[replica_leaf].signal(libc_sigcont());
    assert!(finished.is_ok(), "the inserts completed while the replica was frozen");
    snapshot.unwrap();
    eventually("the replica's log reaches the master's position", || async {
        let on_master = position_on(&cluster, master_leaf, "a_0").await?;
        (position_on(&cluster, replica_leaf, "a_0").await? == on_master).then_some(())
    })
    .await;
    conn.query_drop("SET GLOBAL leaf_failure_detection = ON").await.unwrap();
    cluster.leaves[master_leaf].kill();
    eventually("a:0 fails over to its replica", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "a").await;
        master(&all, 0).is_some_and(|m| cluster.leaf_index(m.port) == replica_leaf).then_some(())
    })
    .await;
    let n: i64 = conn.query_first("SELECT COUNT(*) FROM a.x").await.unwrap().unwrap();
    assert_eq!(n, 20, "every row reached the replica before the failover");
    cluster.leaves[master_leaf].spawn();
    eventually("the returned leaf's copies stream from their masters again", || async {
        let mut conn = cluster.conn().await;
        let all = instances(&mut conn, "a").await;
        (0..2)
            .all(|k| {
                master(&all, k).is_some_and(|m| !m.offline)
                    && replica(&all, k).is_some_and(|r| r.state == "replicating" && !r.offline)
            })
            .then_some(())
    })
    .await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut conn) = (stop.clone(), cluster.conn().await);
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0i64, Vec::new());
            let mut id = 1000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && failed.len() < 20 {
                match conn.query_drop(format!("INSERT INTO a.x VALUES ({id}, 'w')")).await {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                id += 1;
            }
            (ok, failed)
        })
    };
    for _ in 0..2 {
        let all = instances(&mut conn, "a").await;
        let to = replica(&all, 1).expect("a replica").port;
        conn.query_drop(format!("PROMOTE PARTITION a:1 ON '127.0.0.1':{to}")).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "no statement fails during planned promotions: {failed:?}");
    let n: i64 = conn.query_first("SELECT COUNT(*) FROM a.x").await.unwrap().unwrap();
    assert_eq!(n, 20 + ok, "a planned promotion loses no acknowledged row");
}
