//! REBALANCE PARTITIONS through real processes: a cluster grown by ADD LEAF is balanced online, the plan EXPLAIN
//! shows is the one run, SHOW REBALANCE STATUS records every step, and bad requests get clear errors; in redundancy
//! 2, partitions move between pairs online and DETACH LEAF keeps two copies of every partition.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{NodeProc, TestCluster, eventually, free_port, text};

const ROWS: usize = 10_000;

/// Four leaves, database `test` of 8 partitions (two per leaf), table `x` with ids 1..=ROWS padded so a partition
/// copy takes a moment.
async fn setup(name: &str) -> TestCluster {
    let cluster = TestCluster::start(name, 4).await;
    fill(&cluster).await;
    cluster
}

/// Database `test` of 8 partitions, table `x` with ids 1..=ROWS padded so a partition copy takes a moment.
async fn fill(cluster: &TestCluster) {
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 8").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, pad TEXT)").await.unwrap();
    for start in (1..=ROWS).step_by(1000) {
        let values: Vec<String> =
            (start..(start + 1000).min(ROWS + 1)).map(|i| format!("({i}, printf('%0200d', {i}))")).collect();
        conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    }
}

/// Starts a new node and adds it as a leaf; it joins `cluster.leaves` (so it is killed with the cluster).
async fn add_leaf(cluster: &mut TestCluster) -> u16 {
    add_leaf_into(cluster, "").await
}

/// `add_leaf` with a clause after the address (`INTO GROUP n`).
async fn add_leaf_into(cluster: &mut TestCluster, clause: &str) -> u16 {
    let n = cluster.leaves.len() + 1;
    let node = NodeProc::start(&cluster.dir.join(format!("leaf-{n}")), free_port());
    drop(node.connect().await);
    let port = node.port;
    cluster.leaves.push(node);
    cluster.conn().await.query_drop(format!("ADD LEAF root@'127.0.0.1':{port} {clause}")).await.expect("add leaf");
    port
}

/// `(Action, Ordinal, Target_Port)` of every row.
fn steps(rows: &[Row]) -> Vec<(String, String, String)> {
    rows.iter().map(|r| (text(r, "Action"), text(r, "Ordinal"), text(r, "Target_Port"))).collect()
}

/// `(Action, Target_Port, Phase)` of every row, and whether every PROMOTE follows a COPY of the same partition to
/// the same leaf: the shape of a plan, whichever partitions it picked (it moves the smallest, and writers change
/// sizes between an EXPLAIN and the run).
fn shape(rows: &[Row]) -> (Vec<(String, String, String)>, bool) {
    let copies: BTreeSet<(String, String)> = rows
        .iter()
        .filter(|r| text(r, "Action") == "COPY PARTITION")
        .map(|r| (text(r, "Ordinal"), text(r, "Target_Port")))
        .collect();
    let paired = rows
        .iter()
        .filter(|r| text(r, "Action").starts_with("PROMOTE"))
        .all(|r| copies.contains(&(text(r, "Ordinal"), text(r, "Target_Port"))));
    (rows.iter().map(|r| (text(r, "Action"), text(r, "Target_Port"), text(r, "Phase"))).collect(), paired)
}

/// Leaf port -> masters of `test` it holds.
async fn masters_per_leaf(conn: &mut mysql_async::Conn) -> BTreeMap<String, usize> {
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    let mut per_leaf = BTreeMap::new();
    for row in partitions.iter().filter(|r| text(r, "Role") == "Master") {
        *per_leaf.entry(text(row, "Port")).or_insert(0) += 1;
    }
    per_leaf
}

/// History: 4 leaves hold `test`'s 8 partitions; two leaves are added (they stay empty: ADD LEAF does not
/// rebalance); EXPLAIN REBALANCE shows one move onto each new leaf; REBALANCE PARTITIONS runs while a writer inserts
/// one row per statement and a reader counts rows. One new leaf is frozen (SIGSTOP) while the plan starts, so the
/// plan is certainly still running when a second REBALANCE on the same database arrives, then thawed.
/// Property: the second REBALANCE is refused at once; the first finishes; no client statement failed, the count
/// never went down, every acknowledged row is present; the 8 partitions are spread 2,2,1,1,1,1 over the 6 leaves;
/// EXPLAIN is empty afterwards and SHOW REBALANCE STATUS shows every step as success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_after_add_leaf_spreads_partitions_online() {
    let mut cluster = setup("rebalance").await;
    let new_leaves = [add_leaf(&mut cluster).await, add_leaf(&mut cluster).await];
    let mut conn = cluster.conn().await;
    assert_eq!(masters_per_leaf(&mut conn).await.len(), 4, "ADD LEAF moves nothing");

    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    let columns: Vec<String> = explained[0].columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
    assert_eq!(columns, ["Action", "Ordinal", "Target_Host", "Target_Port", "Phase", "Estimated_Time_Remaining_Ms"]);
    let plan = steps(&explained);
    let actions: Vec<&str> = plan.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["COPY PARTITION", "COPY PARTITION", "PROMOTE PARTITION WITH DROP", "PROMOTE PARTITION WITH DROP"]
    );
    let targets: BTreeSet<String> = plan.iter().map(|(_, _, port)| port.clone()).collect();
    let expected: BTreeSet<String> = new_leaves.iter().map(|p| p.to_string()).collect();
    assert_eq!(targets, expected, "one move onto each new leaf: {plan:?}");
    let phases: Vec<String> = explained.iter().map(|r| text(r, "Phase")).collect();
    assert_eq!(phases, ["1", "1", "2", "2"]);
    let estimates: Vec<String> = explained.iter().map(|r| text(r, "Estimated_Time_Remaining_Ms")).collect();
    println!("EXPLAIN: {plan:?}, estimates {estimates:?} ms");
    let planned = shape(&explained);
    assert!(planned.1, "each promotion follows its copy: {plan:?}");
    let all: Vec<Row> = conn.query("EXPLAIN REBALANCE ALL DATABASES").await.unwrap();
    assert_eq!(steps(&all), plan, "the only database's plan");
    assert!(all.iter().all(|r| text(r, "Database") == "test"));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (opts, stop) = (cluster.master.opts(), stop.clone());
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut id = 1_000_000i64;
            while !stop.load(Ordering::Relaxed) {
                match c.query_drop(format!("INSERT INTO test.x VALUES ({id}, 'w')")).await {
                    Ok(()) => acked.push(id),
                    Err(e) => failed.push((id, e.to_string())),
                }
                id += 1;
            }
            (acked, failed)
        })
    };
    let reader = {
        let (opts, stop) = (cluster.master.opts(), stop.clone());
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let (mut counts, mut failed) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match c.query_first::<i64, _>("SELECT COUNT(*) FROM test.x").await {
                    Ok(Some(n)) => counts.push(n),
                    Ok(None) => failed.push("no row".to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (counts, failed)
        })
    };

    // Freeze the first new leaf, start the rebalance, and wait until its plan is recorded: its COPY onto the frozen
    // leaf cannot finish, so the plan is running for as long as the leaf stays frozen.
    let frozen = cluster.leaves.len() - 2;
    cluster.leaves[frozen].signal(libc::SIGSTOP);
    let first = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            c.query_drop("REBALANCE PARTITIONS ON test").await
        })
    };
    eventually("the rebalance records its plan", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let rows: Vec<Row> = c.query("SHOW REBALANCE STATUS ON test").await.ok()?;
        (shape(&rows) == planned).then_some(())
    })
    .await;
    let second = conn.query_drop("REBALANCE PARTITIONS ON test").await;
    let third = conn.query_drop("REBALANCE ALL DATABASES").await;
    cluster.leaves[frozen].signal(libc::SIGCONT);
    let second = second.expect_err("a second REBALANCE on the same database is refused");
    assert!(second.to_string().contains("already running"), "{second}");
    assert!(third.expect_err("so is REBALANCE ALL DATABASES").to_string().contains("already running"));

    first.await.unwrap().expect("the rebalance completes");
    stop.store(true, Ordering::Relaxed);
    let (acked, write_failures) = writer.await.unwrap();
    let (counts, read_failures) = reader.await.unwrap();
    assert!(write_failures.is_empty(), "failed writes: {:?}", &write_failures[..write_failures.len().min(5)]);
    assert!(read_failures.is_empty(), "failed reads: {:?}", &read_failures[..read_failures.len().min(5)]);
    println!("during the rebalance: {} rows written, {} counts read", acked.len(), counts.len());
    assert!(!acked.is_empty() && !counts.is_empty(), "the clients made progress");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "the count never goes down");
    assert!(counts[0] >= ROWS as i64);

    let ids: Vec<i64> = conn.query("SELECT id FROM test.x").await.unwrap();
    let ids: BTreeSet<i64> = ids.into_iter().collect();
    let missing: Vec<i64> = (1..=ROWS as i64).chain(acked.iter().copied()).filter(|id| !ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged rows are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    let per_leaf = masters_per_leaf(&mut conn).await;
    let mut spread: Vec<usize> = per_leaf.values().copied().collect();
    spread.sort_unstable();
    assert_eq!(spread, [1, 1, 1, 1, 2, 2], "8 partitions over 6 leaves: {per_leaf:?}");
    for port in &new_leaves {
        assert_eq!(per_leaf.get(&port.to_string()), Some(&1), "{port} took one partition: {per_leaf:?}");
    }
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "balanced: {:?}", steps(&explained));
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    assert_eq!(shape(&status), planned, "the plan run has the shape explained (partitions may differ by size)");
    for row in &status {
        assert_eq!((text(row, "Status"), text(row, "Estimated_Time_Remaining_Ms")), ("success".into(), "0".into()));
        assert_ne!(text(row, "Running_Time"), "NULL");
    }
    let took: Vec<String> = status.iter().map(|r| text(r, "Running_Time")).collect();
    println!("SHOW REBALANCE STATUS: Running_Time {took:?} ms");
    let all: Vec<Row> = conn.query("SHOW REBALANCE ALL DATABASES STATUS").await.unwrap();
    assert_eq!(steps(&all), steps(&status));
    assert!(all.iter().all(|r| text(r, "Database") == "test" && text(r, "Status") == "success"));

    // A rerun has nothing to do and keeps the last operation's record.
    conn.query_drop("REBALANCE PARTITIONS ON test").await.unwrap();
    let again: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    assert_eq!(steps(&again), steps(&status));
}

/// History: bad rebalance requests on a small cluster. Property: each gets a clear error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rebalance_requests_get_clear_errors() {
    let cluster = TestCluster::start("rebalancebad", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    let err = |r: Result<(), mysql_async::Error>| r.expect_err("refused").to_string();

    let unknown = err(conn.query_drop("EXPLAIN REBALANCE PARTITIONS ON nope").await);
    assert!(unknown.contains("Unknown database 'nope'"), "{unknown}");
    let unknown = err(conn.query_drop("REBALANCE PARTITIONS ON nope").await);
    assert!(unknown.contains("Unknown database 'nope'"), "{unknown}");
    let none = err(conn.query_drop("REBALANCE PARTITIONS").await);
    assert!(none.contains("No database selected"), "{none}");

    // With no database named, the current one is meant; a balanced database has an empty plan.
    conn.query_drop("USE test").await.unwrap();
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS").await.unwrap();
    assert!(explained.is_empty());
    conn.query_drop("REBALANCE PARTITIONS FULL").await.unwrap();
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS").await.unwrap();
    assert!(status.is_empty(), "nothing ran, nothing recorded");
}

/// Starts `REBALANCE PARTITIONS ON test` with the leaf `frozen` stopped (SIGSTOP), and returns once the plan is
/// recorded: its COPY onto the frozen leaf cannot finish, so the plan is certainly mid-run.
async fn start_frozen_rebalance(
    cluster: &TestCluster,
    frozen: usize,
) -> tokio::task::JoinHandle<Result<(), mysql_async::Error>> {
    cluster.leaves[frozen].signal(libc::SIGSTOP);
    let opts = cluster.master.opts();
    let first = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await?;
        c.query_drop("REBALANCE PARTITIONS ON test").await
    });
    eventually("the rebalance records its plan", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let rows: Vec<Row> = c.query("SHOW REBALANCE STATUS ON test").await.ok()?;
        (rows.len() == 4).then_some(())
    })
    .await;
    first
}

/// Every partition has exactly one instance, its master; all preloaded rows are readable.
async fn assert_one_master_each_and_rows(conn: &mut mysql_async::Conn) {
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    let roles: Vec<(String, String)> = partitions.iter().map(|r| (text(r, "Ordinal"), text(r, "Role"))).collect();
    assert_eq!(roles.len(), 8, "one instance per partition: {roles:?}");
    assert!(roles.iter().all(|(_, role)| role == "Master"), "{roles:?}");
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, ROWS as i64);
}

/// Once the plan is balanced over all six leaves: spread 2,2,1,1,1,1, EXPLAIN empty, every step of the last run
/// a success.
async fn assert_balanced_over_six(conn: &mut mysql_async::Conn) {
    let mut spread: Vec<usize> = masters_per_leaf(conn).await.into_values().collect();
    spread.sort_unstable();
    assert_eq!(spread, [1, 1, 1, 1, 2, 2]);
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "{:?}", steps(&explained));
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    assert!(!status.is_empty() && status.iter().all(|r| text(r, "Status") == "success"), "{:?}", steps(&status));
}

/// History: a rebalance onto two new leaves starts; the target of one COPY is killed (SIGKILL) mid-plan; once the
/// master aggregator marks it offline the rebalance is run again; then the leaf restarts, is attached again, and the
/// rebalance runs a third time.
/// Property: the interrupted plan stops cleanly (its copy failed, the promotions cancelled, every partition keeps
/// exactly its one master and every row); the rerun balances over the leaves that are online; the third run
/// balances over all six.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_leaf_killed_mid_plan_stops_it_cleanly_and_a_rerun_finishes() {
    let mut cluster = setup("rebalancekill").await;
    let new_leaves = [add_leaf(&mut cluster).await, add_leaf(&mut cluster).await];
    let mut conn = cluster.conn().await;
    let victim = cluster.leaves.len() - 2;
    let first = start_frozen_rebalance(&cluster, victim).await;
    cluster.leaves[victim].kill();
    let err = first.await.unwrap().expect_err("the plan fails with its target");
    println!("interrupted plan: {err}");
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    let victim_port = new_leaves[0].to_string();
    let rows: Vec<(String, String, String)> =
        status.iter().map(|r| (text(r, "Action"), text(r, "Target_Port"), text(r, "Status"))).collect();
    assert!(rows.contains(&("COPY PARTITION".into(), victim_port.clone(), "failed".into())), "{rows:?}");
    for (action, _, state) in &rows {
        if action.starts_with("PROMOTE") {
            assert_eq!(state, "cancelled", "{rows:?}");
        }
    }
    assert_one_master_each_and_rows(&mut conn).await;

    eventually("the killed leaf is offline", || async {
        (support::leaf_state(&cluster, victim).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    conn.query_drop("REBALANCE PARTITIONS ON test").await.expect("the rerun balances over the online leaves");
    let per_leaf = masters_per_leaf(&mut conn).await;
    let mut spread: Vec<usize> = per_leaf.values().copied().collect();
    spread.sort_unstable();
    assert_eq!(spread, [1, 1, 2, 2, 2], "8 partitions over 5 online leaves: {per_leaf:?}");
    assert!(!per_leaf.contains_key(&victim_port));
    assert_one_master_each_and_rows(&mut conn).await;

    cluster.leaves[victim].spawn();
    eventually("the restarted leaf is attached again", || async {
        (support::leaf_state(&cluster, victim).await.as_deref() == Some("online")).then_some(())
    })
    .await;
    conn.query_drop("REBALANCE PARTITIONS ON test").await.expect("the third run balances over six leaves");
    assert_balanced_over_six(&mut conn).await;
    assert_one_master_each_and_rows(&mut conn).await;
}

/// History: a rebalance onto two new leaves starts with one target frozen; the COPY onto the other finishes (a
/// registered copy waiting for its promotion); the master aggregator is killed (SIGKILL), the frozen leaf thawed,
/// and the master aggregator restarted.
/// Property: after the restart every partition still has its master and every row; a rerun of REBALANCE (retried
/// while the thawed leaf may still finish its abandoned copy) completes, leaves no extra instance, and balances the
/// database over the six leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_aggregator_killed_mid_plan_restarts_consistent_and_a_rerun_finishes() {
    let mut cluster = setup("rebalancemakill").await;
    let new_leaves = [add_leaf(&mut cluster).await, add_leaf(&mut cluster).await];
    let frozen = cluster.leaves.len() - 2;
    let first = start_frozen_rebalance(&cluster, frozen).await;
    let other = new_leaves[1].to_string();
    eventually("the COPY onto the other new leaf finishes", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let rows: Vec<Row> = c.query("SHOW REBALANCE STATUS ON test").await.ok()?;
        rows.iter()
            .any(|r| {
                text(r, "Action") == "COPY PARTITION"
                    && text(r, "Target_Port") == other
                    && text(r, "Status") == "success"
            })
            .then_some(())
    })
    .await;
    cluster.master.kill();
    cluster.leaves[frozen].signal(libc::SIGCONT);
    let _ = first.await.unwrap();
    cluster.master.spawn();
    let mut conn = cluster.conn().await;
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    let masters = partitions.iter().filter(|r| text(r, "Role") == "Master").count();
    assert_eq!(masters, 8, "every partition keeps its master across the restart");
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    println!("after the restart: {} instances; plan {:?}", partitions.len(), steps(&explained));
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, ROWS as i64);

    eventually("a rerun of the rebalance completes", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        match c.query_drop("REBALANCE PARTITIONS ON test").await {
            Ok(()) => Some(()),
            Err(e) => {
                println!("rerun: {e}");
                None
            }
        }
    })
    .await;
    assert_balanced_over_six(&mut conn).await;
    assert_one_master_each_and_rows(&mut conn).await;
}

/// History: leaf 3 of 3 dies for good (SIGKILL) holding partitions 2 and 5 of `test`; their data is given up with
/// REBALANCE PARTITIONS ... FORCE; then the leaf comes back anyway and the database is rebalanced onto it.
/// Property: ENSURE_ONLINE_NODES refuses to run while the leaf is offline; without FORCE the plan is empty (nothing reachable to move) and the partitions stay unmapped; FORCE
/// creates exactly the two missing partitions empty, says so, and the database serves reads and writes again; the
/// returning leaf's old copies stay orphans (nothing resurrects), and a plain REBALANCE spreads 2,2,2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_creates_empty_partitions_for_a_lost_leaf() {
    let mut cluster = TestCluster::start("rebalanceforce", 3).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 6").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, pad TEXT)").await.unwrap();
    let values: Vec<String> = (1..=600).map(|i| format!("({i}, 'p')")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    cluster.leaves[2].kill();
    eventually("leaf 3 is offline", || async {
        (support::leaf_state(&cluster, 2).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    let strict = conn.query_drop("REBALANCE PARTITIONS ON test FORCE ENSURE_ONLINE_NODES").await;
    let strict = strict.expect_err("a leaf is offline").to_string();
    assert!(strict.contains("ENSURE_ONLINE_NODES") && strict.contains("offline"), "{strict}");
    let lost = conn.query_drop("SELECT COUNT(*) FROM test.x").await.expect_err("partitions 2 and 5 have no master");
    assert!(lost.to_string().contains("has no master instance"), "{lost}");

    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "nothing reachable moves: {:?}", steps(&explained));
    let forced: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test FORCE").await.unwrap();
    let plan: Vec<(String, String)> = forced.iter().map(|r| (text(r, "Action"), text(r, "Ordinal"))).collect();
    assert_eq!(plan, [("CREATE PARTITION".into(), "2".into()), ("CREATE PARTITION".into(), "5".into())]);
    conn.query_drop("REBALANCE PARTITIONS ON test FORCE").await.unwrap();
    assert_eq!(conn.affected_rows(), 2);
    assert_eq!(conn.info().as_ref(), "0 partitions moved, 2 empty partitions created");

    let left: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert!(left > 0 && left < 600, "the rows of partitions 2 and 5 are gone, the others stay: {left}");
    let values: Vec<String> = (10_001..=10_100).map(|i| format!("({i}, 'n')")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.expect("every partition writes");
    let mut spread: Vec<usize> = masters_per_leaf(&mut conn).await.into_values().collect();
    spread.sort_unstable();
    assert_eq!(spread, [3, 3]);

    cluster.leaves[2].spawn();
    eventually("leaf 3 is attached again", || async {
        (support::leaf_state(&cluster, 2).await.as_deref() == Some("online")).then_some(())
    })
    .await;
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, left + 100, "the returning leaf's old copies are orphans, not masters");
    conn.query_drop("REBALANCE PARTITIONS ON test").await.unwrap();
    let mut spread: Vec<usize> = masters_per_leaf(&mut conn).await.into_values().collect();
    spread.sort_unstable();
    assert_eq!(spread, [2, 2, 2]);
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, left + 100);
}

/// History: two leaves hold databases `a` (8 partitions) and `b` (4), each with a distributed table joined to a
/// reference table; a third leaf is added and REBALANCE ALL DATABASES runs (several copies onto the one new leaf).
/// Property: EXPLAIN REBALANCE ALL DATABASES names both databases; afterwards each database is balanced, the whole
/// cluster too (partitions per leaf within one), EXPLAIN ALL is empty, every step of both is a success, joins with
/// the reference tables give the same answers, and a reference write after the move reaches the new leaf's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_all_databases_evens_the_cluster_with_reference_tables() {
    let mut cluster = TestCluster::start("rebalanceall", 2).await;
    let mut conn = cluster.conn().await;
    for (db, partitions) in [("a", 8), ("b", 4)] {
        conn.query_drop(format!("CREATE DATABASE {db} PARTITIONS {partitions}")).await.unwrap();
        conn.query_drop(format!("CREATE TABLE {db}.x (id INT PRIMARY KEY, k INT)")).await.unwrap();
        conn.query_drop(format!("CREATE REFERENCE TABLE {db}.r (k INT PRIMARY KEY, name TEXT)")).await.unwrap();
        let rows: Vec<String> = (1..=400).map(|i| format!("({i}, {})", i % 10)).collect();
        conn.query_drop(format!("INSERT INTO {db}.x VALUES {}", rows.join(","))).await.unwrap();
        let names: Vec<String> = (0..5).map(|k| format!("({k}, 'n{k}')")).collect();
        conn.query_drop(format!("INSERT INTO {db}.r VALUES {}", names.join(","))).await.unwrap();
    }
    let joined = "SELECT COUNT(*) FROM a.x JOIN a.r ON x.k = r.k";
    let before: i64 = conn.query_first(joined).await.unwrap().unwrap();
    assert_eq!(before, 200);
    add_leaf(&mut cluster).await;

    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE ALL DATABASES").await.unwrap();
    let dbs: BTreeSet<String> = explained.iter().map(|r| text(r, "Database")).collect();
    assert_eq!(dbs, BTreeSet::from(["a".to_string(), "b".to_string()]), "{:?}", steps(&explained));
    conn.query_drop("REBALANCE ALL DATABASES").await.unwrap();

    let mut per_leaf_total: BTreeMap<String, usize> = BTreeMap::new();
    for db in ["a", "b"] {
        let partitions: Vec<Row> = conn.query(format!("SHOW PARTITIONS ON {db}")).await.unwrap();
        let mut per_leaf: BTreeMap<String, usize> = cluster.leaves.iter().map(|l| (l.port.to_string(), 0)).collect();
        for row in partitions.iter().filter(|r| text(r, "Role") == "Master") {
            *per_leaf.get_mut(&text(row, "Port")).unwrap() += 1;
            *per_leaf_total.entry(text(row, "Port")).or_default() += 1;
        }
        let (min, max) = (per_leaf.values().min().unwrap(), per_leaf.values().max().unwrap());
        assert!(max - min <= 1, "{db} is balanced: {per_leaf:?}");
    }
    let (min, max) = (per_leaf_total.values().min().unwrap(), per_leaf_total.values().max().unwrap());
    assert!(per_leaf_total.len() == 3 && max - min <= 1, "the cluster is even: {per_leaf_total:?}");
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE ALL DATABASES").await.unwrap();
    assert!(explained.is_empty(), "{:?}", steps(&explained));
    let status: Vec<Row> = conn.query("SHOW REBALANCE ALL DATABASES STATUS").await.unwrap();
    assert!(!status.is_empty() && status.iter().all(|r| text(r, "Status") == "success"));

    let after: i64 = conn.query_first(joined).await.unwrap().unwrap();
    assert_eq!(after, before, "joins with the reference table answer the same");
    conn.query_drop("INSERT INTO a.r VALUES (5, 'n5'), (6, 'n6')").await.unwrap();
    let grown: i64 = conn.query_first(joined).await.unwrap().unwrap();
    assert_eq!(grown, 280, "the reference write reaches every holder, the new leaf's copy included");
}

/// History: the only leaf of a cluster dies (SIGKILL) and is marked offline. Property: EXPLAIN and REBALANCE say
/// there is no online leaf, and nothing is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_online_leaves_has_no_plan() {
    let mut cluster = TestCluster::start("rebalancenoleaf", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.unwrap();
    cluster.leaves[0].kill();
    eventually("the leaf is offline", || async {
        (support::leaf_state(&cluster, 0).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    for statement in ["EXPLAIN REBALANCE PARTITIONS ON test", "REBALANCE PARTITIONS ON test", "REBALANCE ALL DATABASES"]
    {
        let err = conn.query_drop(statement).await.expect_err(statement).to_string();
        assert!(err.contains("no online leaves"), "{statement}: {err}");
    }
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    assert!(status.is_empty());
}

/// The statuses of `test`'s last operation as (Action, Ordinal, Target_Port, Status), in plan order.
async fn statuses(conn: &mut mysql_async::Conn) -> Vec<(String, String, String, String)> {
    let rows: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    rows.iter().map(|r| (text(r, "Action"), text(r, "Ordinal"), text(r, "Target_Port"), text(r, "Status"))).collect()
}

/// Starts `REBALANCE PARTITIONS ON test` on its own connection and returns once a COPY runs while another is still
/// scheduled (the plan is mid-run), with the connection's id and the running COPY's (Ordinal, Target_Port).
async fn start_rebalance_mid_plan(
    cluster: &TestCluster,
) -> (u32, (String, String), tokio::task::JoinHandle<Result<(), mysql_async::Error>>) {
    let mut c = mysql_async::Conn::new(cluster.master.opts()).await.unwrap();
    let id = c.id();
    let running = tokio::spawn(async move { c.query_drop("REBALANCE PARTITIONS ON test").await });
    let copying = eventually("a COPY runs while another waits", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let shown = statuses(&mut c).await;
        let copy = |status: &str| shown.iter().find(|(a, _, _, s)| a == "COPY PARTITION" && s == status);
        let (Some(running), Some(_)) = (copy("running"), copy("scheduled")) else { return None };
        Some((running.1.clone(), running.2.clone()))
    })
    .await;
    (id, copying, running)
}

/// History: 4 leaves hold `test`'s 16 partitions (four each) and 10,000 rows; four leaves are added and
/// `max_concurrent_moves` set to 1, so the plan copies two partitions onto each new leaf, one step at a time per
/// leaf, then promotes the eight copies; a writer inserts throughout. A first REBALANCE is stopped mid-plan (a COPY
/// running, another scheduled) with `REBALANCE PARTITIONS ON test CANCEL`; a second one the same way with KILL
/// QUERY of its connection; a third runs to its end.
/// Property: CANCEL answers at once (with nothing running, a clear error); each stopped REBALANCE answers 1317 once
/// its running steps finished: the COPY seen running is `success`, every promotion (and any copy not started) is
/// `cancelled`, nothing is left scheduled or running or failed; after each stop every partition has exactly one
/// instance, its master (the finished copies were dropped), on the old leaves; the third run plans afresh, puts 2
/// partitions on each of the 8 leaves and leaves EXPLAIN empty; no client statement failed and every preloaded and
/// acknowledged row is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_killed_rebalance_stops_between_steps_and_a_rerun_finishes() {
    let mut cluster = TestCluster::start("rebalancecancel", 4).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 16").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, pad TEXT)").await.unwrap();
    for start in (1..=ROWS).step_by(1000) {
        let values: Vec<String> =
            (start..(start + 1000).min(ROWS + 1)).map(|i| format!("({i}, printf('%01000d', {i}))")).collect();
        conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    }
    for _ in 0..4 {
        add_leaf(&mut cluster).await;
    }
    let mut conn = cluster.conn().await;
    conn.query_drop("SET GLOBAL max_concurrent_moves = 1").await.unwrap();
    let limit: Option<i64> = conn.query_first("SELECT @@max_concurrent_moves").await.unwrap();
    assert_eq!(limit, Some(1));
    let refused = conn.query_drop("SET GLOBAL max_concurrent_moves = 0").await.unwrap_err();
    assert!(matches!(&refused, mysql_async::Error::Server(e) if e.code == 1231), "{refused}");
    let none = conn.query_drop("REBALANCE PARTITIONS ON test CANCEL").await.unwrap_err();
    assert!(
        matches!(&none, mysql_async::Error::Server(e) if e.code == 1105 && e.message.contains("No rebalance is running")),
        "{none}"
    );
    let old_leaves = masters_per_leaf(&mut conn).await;
    assert_eq!(old_leaves.len(), 4);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (opts, stop) = (cluster.master.opts(), stop.clone());
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut id = 1_000_000i64;
            while !stop.load(Ordering::Relaxed) {
                match c.query_drop(format!("INSERT INTO test.x VALUES ({id}, 'w')")).await {
                    Ok(()) => acked.push(id),
                    Err(e) => failed.push((id, e.to_string())),
                }
                id += 1;
            }
            (acked, failed)
        })
    };

    for stopper in ["CANCEL", "KILL QUERY"] {
        let (id, copying, running) = start_rebalance_mid_plan(&cluster).await;
        let statement = match stopper {
            "CANCEL" => "REBALANCE PARTITIONS ON test CANCEL".to_string(),
            _ => format!("KILL QUERY {id}"),
        };
        conn.query_drop(&statement).await.unwrap();
        let stopped = running.await.unwrap().unwrap_err();
        assert!(
            matches!(&stopped, mysql_async::Error::Server(e) if e.code == 1317 && e.message.contains("cancelled")),
            "{stopper}: {stopped}"
        );
        let shown = statuses(&mut conn).await;
        println!("after {stopper}: {shown:?}");
        assert!(shown.iter().all(|(.., s)| s == "success" || s == "cancelled"), "{stopper}: {shown:?}");
        let seen_running =
            shown.iter().find(|(a, o, p, _)| a == "COPY PARTITION" && (o, p) == (&copying.0, &copying.1));
        assert_eq!(seen_running.map(|r| r.3.as_str()), Some("success"), "{stopper}: the running COPY finished");
        assert!(
            shown.iter().filter(|(a, ..)| a.starts_with("PROMOTE")).all(|(.., s)| s == "cancelled"),
            "{stopper}: no promotion ran: {shown:?}"
        );
        let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
        let roles: Vec<String> = partitions.iter().map(|r| text(r, "Role")).collect();
        assert_eq!(roles.len(), 16, "{stopper}: the finished copies were dropped: {roles:?}");
        assert!(roles.iter().all(|r| r == "Master"), "{stopper}: {roles:?}");
        assert_eq!(masters_per_leaf(&mut conn).await, old_leaves, "{stopper}: nothing moved");
    }

    conn.query_drop("REBALANCE PARTITIONS ON test").await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "statements failed during the rebalances: {failed:?}");
    let spread: Vec<usize> = masters_per_leaf(&mut conn).await.into_values().collect();
    assert_eq!(spread, [2; 8], "two partitions on each of the eight leaves");
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "{:?}", steps(&explained));
    let shown = statuses(&mut conn).await;
    assert!(shown.iter().all(|(.., s)| s == "success"), "{shown:?}");
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, (ROWS + acked.len()) as i64, "every preloaded and acknowledged row, once");
    let distinct: i64 = conn.query_first("SELECT COUNT(DISTINCT id) FROM test.x").await.unwrap().unwrap();
    assert_eq!(distinct, count);
}

/// With a writer inserting from id 1,000,000 (reconnecting when the master aggregator is gone), runs REBALANCE
/// PARTITIONS ON test and SIGKILLs the master aggregator once some PROMOTE PARTITION WITH DROP steps succeeded and
/// others wait, then restarts it. Returns the writer: (acknowledged ids, ids whose answer was lost) once `stop` is set.
async fn kill_master_aggregator_mid_promotions(
    cluster: &mut TestCluster,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<i64>, Vec<i64>)> {
    let writer = {
        let (opts, stop) = (cluster.master.opts(), stop.clone());
        tokio::spawn(async move {
            // An insert whose answer was lost with the master aggregator may or may not have committed.
            let (mut acked, mut uncertain) = (Vec::new(), Vec::new());
            let mut id = 1_000_000i64;
            let mut conn: Option<mysql_async::Conn> = None;
            while !stop.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match mysql_async::Conn::new(opts.clone()).await {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        }
                    },
                };
                match c.query_drop(format!("INSERT INTO test.x VALUES ({id}, 'w')")).await {
                    Ok(()) => acked.push(id),
                    Err(_) => {
                        uncertain.push(id);
                        conn = None;
                    }
                }
                id += 1;
            }
            (acked, uncertain)
        })
    };

    let opts = cluster.master.opts();
    let rebalance = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await?;
        c.query_drop("REBALANCE PARTITIONS ON test").await
    });
    let mut watcher = cluster.conn().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown = statuses(&mut watcher).await;
        let promotions =
            |status: &str| shown.iter().filter(|(a, .., s)| a.starts_with("PROMOTE") && s == status).count();
        if promotions("success") > 0 && promotions("scheduled") > 0 {
            println!("killing the master aggregator at {shown:?}");
            break;
        }
        assert!(!rebalance.is_finished(), "the plan ended before its promotion phase was caught: {shown:?}");
        assert!(std::time::Instant::now() < deadline, "no promotion phase seen: {shown:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cluster.master.kill();
    assert!(rebalance.await.unwrap().is_err(), "the REBALANCE's connection died with the master aggregator");
    cluster.master.spawn();
    writer
}

/// History: 4 leaves hold `test`'s 32 partitions (eight each) and 10,000 rows; four leaves are added and
/// `max_concurrent_moves` set to 1, so the plan copies 16 partitions and then promotes them, one step at a time per
/// leaf; a writer inserts throughout (reconnecting while the master aggregator is down). The REBALANCE is watched
/// until, in its promotion phase, one promotion is done while another is still scheduled, and the master aggregator
/// is killed (SIGKILL) there, then restarted.
/// Property: after the restart every partition has exactly one master (promoted moves stay promoted, the others keep
/// their old master; a move cut off leaves at most a replica), and every partition serves again once the heartbeat
/// has re-attached a source the cut-off switch had fenced; a rerun of REBALANCE (retried while copies the
/// killed plan left may still be finishing) completes: 4 partitions on each of the 8 leaves, one instance each,
/// EXPLAIN empty; every preloaded and acknowledged row is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_aggregator_killed_while_promoting_restarts_consistent_and_a_rerun_finishes() {
    const PARTITIONS: usize = 32;
    let mut cluster = TestCluster::start("rebalancepromotekill", 4).await;
    let mut conn = cluster.conn().await;
    conn.query_drop(format!("CREATE DATABASE test PARTITIONS {PARTITIONS}")).await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, pad TEXT)").await.unwrap();
    for start in (1..=ROWS).step_by(1000) {
        let values: Vec<String> =
            (start..(start + 1000).min(ROWS + 1)).map(|i| format!("({i}, printf('%01000d', {i}))")).collect();
        conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    }
    for _ in 0..4 {
        add_leaf(&mut cluster).await;
    }
    let mut conn = cluster.conn().await;
    conn.query_drop("SET GLOBAL max_concurrent_moves = 1").await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = kill_master_aggregator_mid_promotions(&mut cluster, stop.clone()).await;

    let mut conn = cluster.conn().await;
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    let mut masters: BTreeMap<String, usize> = BTreeMap::new();
    for row in partitions.iter().filter(|r| text(r, "Role") == "Master") {
        *masters.entry(text(row, "Ordinal")).or_insert(0) += 1;
    }
    assert_eq!(masters.len(), PARTITIONS, "every partition has a master after the restart: {masters:?}");
    assert!(masters.values().all(|n| *n == 1), "never two masters: {masters:?}");
    let shown = statuses(&mut conn).await;
    println!("after the restart: {shown:?}");
    assert!(shown.iter().all(|(.., s)| s != "scheduled" && s != "running"), "the restart closed the plan: {shown:?}");
    // A switch cut off after fencing its source leaves that copy pending on its leaf (the metadata still names it
    // the master): the heartbeat re-attaches it, and until then a statement on that partition fails (1777).
    let settled = std::time::Instant::now();
    eventually("every partition serves again", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let leaves: Vec<Row> = c.query("SHOW LEAVES").await.ok()?;
        let online = leaves.iter().all(|r| text(r, "State") == "online");
        let count: Option<i64> = c.query_first("SELECT COUNT(*) FROM test.x").await.ok()?;
        (online && count.is_some()).then_some(())
    })
    .await;
    println!("every partition served again {} ms after the restart", settled.elapsed().as_millis());

    eventually("a rerun of the rebalance completes", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        match c.query_drop("REBALANCE PARTITIONS ON test").await {
            Ok(()) => Some(()),
            Err(e) => {
                println!("rerun: {e}");
                None
            }
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (acked, uncertain) = writer.await.unwrap();
    let spread: Vec<usize> = masters_per_leaf(&mut conn).await.into_values().collect();
    assert_eq!(spread, [4; 8], "four partitions on each of the eight leaves");
    let partitions: Vec<Row> = conn.query("SHOW PARTITIONS ON test").await.unwrap();
    assert_eq!(partitions.len(), PARTITIONS, "one instance per partition");
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "{:?}", steps(&explained));
    // The rerun answered OK, so every step of its plan succeeded. Its record may since have been replaced by a
    // heartbeat re-attach of an online leaf (ATTACH PARTITION steps only): a ping that listed the fenced copy
    // before the first re-attach finished starts a second one once the rerun frees the operation lock (a known
    // race of the heartbeat; it changes no instance).
    let shown = statuses(&mut conn).await;
    let reattach = shown.iter().all(|(a, ..)| a == "ATTACH PARTITION");
    assert!(reattach || shown.iter().all(|(.., s)| s == "success"), "{shown:?}");

    let preloaded: i64 = conn.query_first("SELECT COUNT(*) FROM test.x WHERE id <= 10000").await.unwrap().unwrap();
    assert_eq!(preloaded, ROWS as i64);
    let written: Vec<i64> = conn.query("SELECT id FROM test.x WHERE id >= 1000000 ORDER BY id").await.unwrap();
    let written_set: BTreeSet<i64> = written.iter().copied().collect();
    assert_eq!(written_set.len(), written.len(), "no row twice");
    assert!(acked.iter().all(|id| written_set.contains(id)), "an acknowledged row is missing");
    let unknown: BTreeSet<i64> = uncertain.into_iter().collect();
    assert!(written_set.iter().all(|id| acked.binary_search(id).is_ok() || unknown.contains(id)), "a row nobody wrote");
    println!("{} rows acknowledged during the rebalances, {} uncertain", acked.len(), unknown.len());
}

/// One row of INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS for `test`: (ordinal, port, role, state).
async fn instances(conn: &mut mysql_async::Conn) -> Vec<(u32, u16, String, String)> {
    let sql =
        "SELECT * FROM INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'test' ORDER BY ORDINAL, ROLE";
    let rows: Vec<Row> = conn.query(sql).await.expect("DISTRIBUTED_PARTITIONS");
    rows.iter()
        .map(|r| {
            (text(r, "ORDINAL").parse().unwrap(), text(r, "PORT").parse().unwrap(), text(r, "ROLE"), text(r, "STATE"))
        })
        .collect()
}

/// Leaf port -> its pair's port, from SHOW LEAVES.
async fn pairs(conn: &mut mysql_async::Conn) -> BTreeMap<u16, u16> {
    let leaves: Vec<Row> = conn.query("SHOW LEAVES").await.unwrap();
    leaves
        .iter()
        .filter(|r| text(r, "Pair_Port") != "NULL")
        .map(|r| (text(r, "Port").parse().unwrap(), text(r, "Pair_Port").parse().unwrap()))
        .collect()
}

/// Partitions per pair (by its lower port) when every one of the 8 partitions has exactly a master and an in-sync
/// replica on the master's pair and the masters are even within each pair; None otherwise.
fn paired_spread(all: &[(u32, u16, String, String)], pairs: &BTreeMap<u16, u16>) -> Option<BTreeMap<u16, usize>> {
    paired_spread_of(all, pairs, 8)
}

/// `paired_spread` for a database of `partitions` partitions.
fn paired_spread_of(
    all: &[(u32, u16, String, String)],
    pairs: &BTreeMap<u16, u16>,
    partitions: u32,
) -> Option<BTreeMap<u16, usize>> {
    let mut per_pair: BTreeMap<u16, usize> = BTreeMap::new();
    let mut masters: BTreeMap<u16, usize> = BTreeMap::new();
    for k in 0..partitions {
        let of: Vec<_> = all.iter().filter(|i| i.0 == k).collect();
        let master = of.iter().find(|i| i.2 == "Master")?;
        let replica = of.iter().find(|i| i.2 == "Replica")?;
        if of.len() != 2 || replica.3 != "sync" || pairs.get(&master.1) != Some(&replica.1) {
            return None;
        }
        *per_pair.entry(master.1.min(replica.1)).or_default() += 1;
        *masters.entry(master.1).or_default() += 1;
    }
    let even = per_pair.keys().all(|&low| {
        let high = pairs[&low];
        masters.get(&low).copied().unwrap_or(0).abs_diff(masters.get(&high).copied().unwrap_or(0)) <= 1
    });
    even.then_some(per_pair)
}

/// What the clients did while an operation ran: acknowledged ids, failed writes, counts read, failed reads.
struct Clients {
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<(Vec<i64>, Vec<String>)>>,
    reader: tokio::task::JoinHandle<(Vec<i64>, Vec<String>)>,
}

/// Two writers inserting one row per statement (ids from `first`) and a reader counting rows, until stopped; each
/// gives up after 100 failures, so a broken cluster cannot keep them going.
fn start_clients(cluster: &TestCluster, first: i64) -> Clients {
    let stop = Arc::new(AtomicBool::new(false));
    let writers = (0..2)
        .map(|w| {
            let (opts, stop) = (cluster.master.opts(), stop.clone());
            tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(opts).await.unwrap();
                let (mut acked, mut failed) = (Vec::new(), Vec::new());
                let mut id = first + w * 10_000_000;
                while !stop.load(Ordering::Relaxed) && failed.len() < 100 {
                    match c.query_drop(format!("INSERT INTO test.x VALUES ({id}, 'w')")).await {
                        Ok(()) => acked.push(id),
                        Err(e) => failed.push(format!("{id}: {e}")),
                    }
                    id += 1;
                }
                (acked, failed)
            })
        })
        .collect();
    let reader = {
        let (opts, stop) = (cluster.master.opts(), stop.clone());
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let (mut counts, mut failed) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) && failed.len() < 100 {
                match c.query_first::<i64, _>("SELECT COUNT(*) FROM test.x").await {
                    Ok(Some(n)) => counts.push(n),
                    Ok(None) => failed.push("no row".to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (counts, failed)
        })
    };
    Clients { stop, writers, reader }
}

impl Clients {
    /// Waits until the writers have acknowledged rows, so the operation that follows runs under writes.
    async fn writing(&self, cluster: &TestCluster) {
        eventually("the writers are writing", || async {
            let mut c = cluster.conn().await;
            let n: i64 = c.query_first("SELECT COUNT(*) FROM test.x").await.ok()??;
            (n > ROWS as i64 + 10 && self.writers.iter().all(|w| !w.is_finished())).then_some(())
        })
        .await;
    }

    /// Stops the clients and checks them: no statement failed, the count never went down, and every acknowledged
    /// row (and every preloaded one) is present. Returns the acknowledged ids.
    async fn finish(self, conn: &mut mysql_async::Conn) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for writer in self.writers {
            let (ok, failed) = writer.await.unwrap();
            assert!(failed.is_empty(), "failed writes: {:?}", &failed[..failed.len().min(5)]);
            acked.extend(ok);
        }
        let (counts, failed) = self.reader.await.unwrap();
        assert!(failed.is_empty(), "failed reads: {:?}", &failed[..failed.len().min(5)]);
        assert!(!acked.is_empty() && !counts.is_empty(), "the clients made progress");
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "the count never goes down");
        let ids: Vec<i64> = conn.query("SELECT id FROM test.x").await.unwrap();
        let ids: BTreeSet<i64> = ids.into_iter().collect();
        let missing: Vec<i64> = (1..=ROWS as i64).chain(acked.iter().copied()).filter(|id| !ids.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged rows are missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        println!("{} rows written, {} counts read", acked.len(), counts.len());
        acked
    }
}

/// History: redundancy 2, two pairs holding `test`'s 8 partitions (ROWS rows); ADD LEAF into group 1 and into group
/// 2 makes a third pair, which stays empty; EXPLAIN REBALANCE PARTITIONS shows the moves; REBALANCE PARTITIONS runs
/// while two writers insert and a reader counts; then DETACH LEAF of a leaf of the first pair, with the clients
/// running again.
/// Property: each move is a COPY onto both new leaves, a PROMOTE WITH DROP on one of them and a DROP of the old
/// replica, in phases; no client statement fails, the count never goes down and every acknowledged row is present;
/// afterwards the partitions are spread 3, 3, 2 over the pairs, every partition has exactly a master and an in-sync
/// replica on its pair, masters are even within every pair, EXPLAIN is empty and every step of SHOW REBALANCE STATUS
/// is a success. After DETACH LEAF every partition still has a master and an in-sync replica on a pair, none on the
/// detached leaf or its pair (spread 4, 4), and the operation ran is recorded; a join with a reference table answers
/// as before and a reference write reaches the new holders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_rebalance_moves_between_pairs_online_and_detach_keeps_two_copies() {
    let mut cluster = TestCluster::start_paired("rebalance-r2", 2, &[]).await;
    fill(&cluster).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE REFERENCE TABLE test.r (k INT PRIMARY KEY)").await.unwrap();
    let keys: Vec<String> = (1..=100).map(|k| format!("({k})")).collect();
    conn.query_drop(format!("INSERT INTO test.r VALUES {}", keys.join(","))).await.unwrap();
    let joined = "SELECT COUNT(*) FROM test.x JOIN test.r ON x.id = r.k";
    let joined_before: i64 = conn.query_first(joined).await.unwrap().unwrap();
    assert_eq!(joined_before, 100);
    let new_leaves =
        [add_leaf_into(&mut cluster, "INTO GROUP 1").await, add_leaf_into(&mut cluster, "INTO GROUP 2").await];
    let mut conn = cluster.conn().await;
    let pairs = pairs(&mut conn).await;
    assert_eq!(pairs.get(&new_leaves[0]), Some(&new_leaves[1]), "the new leaves pair: {pairs:?}");
    let before = paired_spread(&instances(&mut conn).await, &pairs).expect("placed on the two first pairs");
    assert_eq!(before.values().copied().collect::<Vec<_>>(), [4, 4], "ADD LEAF moves nothing: {before:?}");

    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    let plan: Vec<(String, String, String)> =
        explained.iter().map(|r| (text(r, "Action"), text(r, "Target_Port"), text(r, "Phase"))).collect();
    println!("EXPLAIN: {plan:?}");
    let new: BTreeSet<String> = new_leaves.iter().map(|p| p.to_string()).collect();
    let of = |action: &str| plan.iter().filter(|(a, _, _)| a == action).collect::<Vec<_>>();
    let copies = of("COPY PARTITION");
    assert_eq!(copies.len(), 4, "two moves, each copied onto both new leaves: {plan:?}");
    assert!(copies.iter().all(|(_, port, phase)| new.contains(port) && phase == "2"), "{plan:?}");
    let promotions = of("PROMOTE PARTITION WITH DROP");
    let masters: BTreeSet<String> = promotions.iter().map(|(_, port, _)| port.clone()).collect();
    assert_eq!(masters, new, "one new master on each new leaf: {plan:?}");
    assert!(promotions.iter().all(|(_, _, phase)| phase == "3"));
    let drops = of("DROP PARTITION");
    assert_eq!(drops.len(), 2, "each moved partition's old replica: {plan:?}");
    assert!(drops.iter().all(|(_, port, phase)| !new.contains(port) && phase == "4"));
    assert_eq!(plan.len(), 8, "nothing else: {plan:?}");

    let clients = start_clients(&cluster, 1_000_000);
    clients.writing(&cluster).await;
    conn.query_drop("REBALANCE PARTITIONS ON test").await.expect("the rebalance completes");
    clients.finish(&mut conn).await;
    let spread = eventually("every partition on a pair with its replica in sync", || async {
        let mut c = cluster.conn().await;
        paired_spread(&instances(&mut c).await, &pairs)
    })
    .await;
    let mut counts: Vec<usize> = spread.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [2, 3, 3], "8 partitions over 3 pairs: {spread:?}");
    assert_eq!(spread.get(&new_leaves[0].min(new_leaves[1])), Some(&2), "the new pair took two: {spread:?}");
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "balanced: {:?}", steps(&explained));
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    assert_eq!(status.len(), plan.len());
    for row in &status {
        assert_eq!(text(row, "Status"), "success", "{:?}", steps(&status));
    }

    // DETACH LEAF of the first leaf: its pair's partitions move to the other two pairs.
    let (gone, mate) = (cluster.leaves[0].port, pairs[&cluster.leaves[0].port]);
    let clients = start_clients(&cluster, 30_000_000);
    clients.writing(&cluster).await;
    conn.query_drop(format!("DETACH LEAF '127.0.0.1':{gone}")).await.expect("detach");
    clients.finish(&mut conn).await;
    assert_eq!(support::leaf_state(&cluster, 0).await.as_deref(), Some("detached"));
    let all = instances(&mut conn).await;
    assert!(all.iter().all(|i| i.1 != gone && i.1 != mate), "nothing on the detached leaf or its pair: {all:?}");
    let spread = paired_spread(&all, &pairs).unwrap_or_else(|| panic!("two copies on a pair each: {all:?}"));
    assert_eq!(spread.values().copied().collect::<Vec<_>>(), [4, 4], "{spread:?}");
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    assert!(status.iter().any(|r| text(r, "Action") == "PROMOTE PARTITION WITH DROP"), "{:?}", steps(&status));
    assert!(status.iter().all(|r| text(r, "Status") == "success"), "{:?}", steps(&status));
    // The moved partitions join against current reference copies on their new leaves, and a reference write
    // reaches them.
    let after: i64 = conn.query_first(joined).await.unwrap().unwrap();
    assert_eq!(after, joined_before, "joins with the reference table answer the same");
    let more: Vec<String> = (101..=120).map(|k| format!("({k})")).collect();
    conn.query_drop(format!("INSERT INTO test.r VALUES {}", more.join(","))).await.unwrap();
    let grown: i64 = conn.query_first(joined).await.unwrap().unwrap();
    assert_eq!(grown, 120, "the reference write reaches every holder");
}

/// History: redundancy 2, two pairs holding `test`, a third pair added; REBALANCE PARTITIONS starts with one new
/// leaf frozen (SIGSTOP), which is then killed (SIGKILL) mid-plan; once it is offline, EXPLAIN; then it restarts, is
/// attached again, and the rebalance runs again.
/// Property: the interrupted plan fails cleanly: a COPY onto the killed leaf failed, every promotion is cancelled,
/// the copies already made on the other new leaf are forgotten and dropped, and every partition has exactly its
/// master and in-sync replica on its first pair with every row; with the new pair incomplete there is nothing to
/// plan; the rerun after the restart spreads the partitions 3, 3, 2 with masters even within every pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_plan_interrupted_by_a_killed_target_cleans_up_and_a_rerun_finishes() {
    let mut cluster = TestCluster::start_paired("rebalance-r2-kill", 2, &[]).await;
    fill(&cluster).await;
    add_leaf_into(&mut cluster, "INTO GROUP 1").await;
    add_leaf_into(&mut cluster, "INTO GROUP 2").await;
    let mut conn = cluster.conn().await;
    let pairs = pairs(&mut conn).await;
    let victim = cluster.leaves.len() - 1;
    cluster.leaves[victim].signal(libc::SIGSTOP);
    let first = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            c.query_drop("REBALANCE PARTITIONS ON test").await
        })
    };
    eventually("the rebalance records its plan", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let rows: Vec<Row> = c.query("SHOW REBALANCE STATUS ON test").await.ok()?;
        (rows.len() == 8).then_some(())
    })
    .await;
    cluster.leaves[victim].kill();
    let err = first.await.unwrap().expect_err("the plan fails with its target");
    println!("interrupted plan: {err}");
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    let rows: Vec<(String, String, String)> =
        status.iter().map(|r| (text(r, "Action"), text(r, "Target_Port"), text(r, "Status"))).collect();
    let victim_port = cluster.leaves[victim].port.to_string();
    assert!(rows.iter().any(|(a, p, s)| a == "COPY PARTITION" && *p == victim_port && s == "failed"), "{rows:?}");
    assert!(rows.iter().filter(|(a, _, _)| a.starts_with("PROMOTE")).all(|(_, _, s)| s == "cancelled"), "{rows:?}");
    let all = instances(&mut conn).await;
    let spread = paired_spread(&all, &pairs).unwrap_or_else(|| panic!("as before the plan: {all:?}"));
    assert_eq!(spread.values().copied().collect::<Vec<_>>(), [4, 4], "{spread:?}");
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, ROWS as i64);

    eventually("the killed leaf is offline", || async {
        (support::leaf_state(&cluster, victim).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "the new pair is not online: {:?}", steps(&explained));
    cluster.leaves[victim].spawn();
    eventually("the restarted leaf is attached again", || async {
        (support::leaf_state(&cluster, victim).await.as_deref() == Some("online")).then_some(())
    })
    .await;
    conn.query_drop("REBALANCE PARTITIONS ON test").await.expect("the rerun finishes the job");
    let spread = eventually("every partition on a pair with its replica in sync", || async {
        let mut c = cluster.conn().await;
        paired_spread(&instances(&mut c).await, &pairs)
    })
    .await;
    let mut counts: Vec<usize> = spread.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [2, 3, 3], "{spread:?}");
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, ROWS as i64);
}

/// History: redundancy 2, a third pair added; REBALANCE PARTITIONS starts with one new leaf frozen, and once a COPY
/// onto the other new leaf has finished the master aggregator is killed (SIGKILL), the leaf thawed and the master
/// aggregator restarted; the rebalance is run again until it completes.
/// Property: after the restart every partition keeps its master and an in-sync replica on its first pair (the
/// registered copy of the cut-off move is a replica off the pair, out of every commit path) with every row; the
/// rerun drops or replaces that copy and ends with every partition holding exactly a master and an in-sync replica
/// on a pair, spread 3, 3, 2 with masters even within every pair, and EXPLAIN empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_plan_cut_by_a_master_aggregator_kill_restarts_consistent_and_a_rerun_finishes() {
    let mut cluster = TestCluster::start_paired("rebalance-r2-makill", 2, &[]).await;
    fill(&cluster).await;
    let other = add_leaf_into(&mut cluster, "INTO GROUP 1").await.to_string();
    add_leaf_into(&mut cluster, "INTO GROUP 2").await;
    let mut conn = cluster.conn().await;
    let pairs = pairs(&mut conn).await;
    let frozen = cluster.leaves.len() - 1;
    cluster.leaves[frozen].signal(libc::SIGSTOP);
    let first = {
        let opts = cluster.master.opts();
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            c.query_drop("REBALANCE PARTITIONS ON test").await
        })
    };
    eventually("a COPY onto the other new leaf finishes", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let rows: Vec<Row> = c.query("SHOW REBALANCE STATUS ON test").await.ok()?;
        rows.iter()
            .any(|r| {
                text(r, "Action") == "COPY PARTITION"
                    && text(r, "Target_Port") == other
                    && text(r, "Status") == "success"
            })
            .then_some(())
    })
    .await;
    cluster.master.kill();
    cluster.leaves[frozen].signal(libc::SIGCONT);
    let _ = first.await.unwrap();
    cluster.master.spawn();
    let mut conn = cluster.conn().await;
    let all = instances(&mut conn).await;
    println!("after the restart: {all:?}");
    for k in 0..8 {
        let master = all.iter().find(|i| i.0 == k && i.2 == "Master").unwrap_or_else(|| panic!("{k}: {all:?}"));
        let on_pair =
            all.iter().any(|i| i.0 == k && i.2 == "Replica" && i.3 == "sync" && pairs.get(&master.1) == Some(&i.1));
        assert!(on_pair, "test:{k} keeps an in-sync replica on its pair: {all:?}");
        assert!(all.iter().filter(|i| i.0 == k && i.3 == "sync").all(|i| pairs.get(&master.1) == Some(&i.1)));
    }
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, ROWS as i64);

    eventually("a rerun of the rebalance completes", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        match c.query_drop("REBALANCE PARTITIONS ON test").await {
            Ok(()) => Some(()),
            Err(e) => {
                println!("rerun: {e}");
                None
            }
        }
    })
    .await;
    let spread = eventually("every partition on a pair with its replica in sync", || async {
        let mut c = cluster.conn().await;
        paired_spread(&instances(&mut c).await, &pairs)
    })
    .await;
    let mut counts: Vec<usize> = spread.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [2, 3, 3], "{spread:?}");
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "balanced: {:?}", steps(&explained));
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, ROWS as i64);
}

/// History: redundancy 2 with a single pair holding `test`; DETACH LEAF of one leaf while the clients run; ATTACH
/// LEAF.
/// Property: with no other online pair the DETACH falls back to promotions within the pair: every master ends on the
/// other leaf, no client statement fails and every acknowledged row is present, SHOW REBALANCE STATUS shows the
/// PROMOTE PARTITION steps that ran, all successful; ATTACH LEAF brings the leaf back as in-sync replicas and splits
/// the masters again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_detach_without_another_pair_promotes_within_the_pair() {
    let cluster = TestCluster::start_paired("rebalance-r2-onepair", 1, &[]).await;
    fill(&cluster).await;
    let mut conn = cluster.conn().await;
    let (gone, mate) = (cluster.leaves[0].port, cluster.leaves[1].port);
    let clients = start_clients(&cluster, 1_000_000);
    clients.writing(&cluster).await;
    conn.query_drop(format!("DETACH LEAF '127.0.0.1':{gone}")).await.expect("detach");
    clients.finish(&mut conn).await;
    let all = instances(&mut conn).await;
    assert!(all.iter().filter(|i| i.2 == "Master").all(|i| i.1 == mate), "every master on the pair: {all:?}");
    assert_eq!(all.iter().filter(|i| i.2 == "Master").count(), 8);
    let status: Vec<Row> = conn.query("SHOW REBALANCE STATUS ON test").await.unwrap();
    assert_eq!(status.len(), 4, "the four masters of the detached leaf: {:?}", steps(&status));
    for row in &status {
        assert_eq!((text(row, "Action"), text(row, "Status")), ("PROMOTE PARTITION".into(), "success".into()));
        assert_eq!(text(row, "Target_Port"), mate.to_string());
    }
    conn.query_drop(format!("ATTACH LEAF '127.0.0.1':{gone}")).await.expect("attach");
    let pairs = pairs(&mut conn).await;
    let spread = eventually("the leaf is back as in-sync replicas, masters split", || async {
        let mut c = cluster.conn().await;
        paired_spread(&instances(&mut c).await, &pairs)
    })
    .await;
    assert_eq!(spread.values().copied().collect::<Vec<_>>(), [8]);
}

/// History: redundancy 2, two pairs holding `test` with 16 partitions of padded rows, two more pairs added, one move
/// at a time (`max_concurrent_moves = 1`), a writer inserting throughout (reconnecting when the master aggregator is
/// gone); REBALANCE PARTITIONS runs and the master aggregator is killed (SIGKILL) once some PROMOTE PARTITION WITH
/// DROP steps succeeded and others wait; it restarts, and the rebalance is run again until it completes.
/// Property: after the restart every partition has exactly one master and the plan's record is closed; every
/// partition serves again and has an in-sync replica on its master's pair (a cut-off switch leaves its old master's
/// replica to be promoted or its new replica to be healed, never a master without its acknowledged writes); the
/// rerun ends with 4 partitions on each pair, each with exactly a master and an in-sync replica on its pair, masters
/// even within every pair; every acknowledged row is present, no row twice, and no row nobody wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundancy_two_master_aggregator_killed_while_switching_restarts_consistent_and_a_rerun_finishes() {
    const PARTITIONS: u32 = 16;
    let mut cluster = TestCluster::start_paired("rebalance-r2-switchkill", 2, &[]).await;
    let mut conn = cluster.conn().await;
    conn.query_drop(format!("CREATE DATABASE test PARTITIONS {PARTITIONS}")).await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY, pad TEXT)").await.unwrap();
    for start in (1..=ROWS).step_by(1000) {
        let values: Vec<String> =
            (start..(start + 1000).min(ROWS + 1)).map(|i| format!("({i}, printf('%01000d', {i}))")).collect();
        conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();
    }
    for group in [1, 2, 1, 2] {
        add_leaf_into(&mut cluster, &format!("INTO GROUP {group}")).await;
    }
    let mut conn = cluster.conn().await;
    let pairs = pairs(&mut conn).await;
    conn.query_drop("SET GLOBAL max_concurrent_moves = 1").await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = kill_master_aggregator_mid_promotions(&mut cluster, stop.clone()).await;

    let mut conn = cluster.conn().await;
    let all = instances(&mut conn).await;
    for k in 0..PARTITIONS {
        let masters = all.iter().filter(|i| i.0 == k && i.2 == "Master").count();
        assert_eq!(masters, 1, "test:{k} has exactly one master after the restart: {all:?}");
    }
    let shown = statuses(&mut conn).await;
    assert!(shown.iter().all(|(.., s)| s != "scheduled" && s != "running"), "the restart closed the plan: {shown:?}");
    eventually("every partition serves with an in-sync replica on its pair", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        let count: Option<i64> = c.query_first("SELECT COUNT(*) FROM test.x").await.ok()?;
        count?;
        let all = instances(&mut c).await;
        (0..PARTITIONS)
            .all(|k| {
                let Some(master) = all.iter().find(|i| i.0 == k && i.2 == "Master") else { return false };
                all.iter().any(|i| i.0 == k && i.2 == "Replica" && i.3 == "sync" && pairs.get(&master.1) == Some(&i.1))
            })
            .then_some(())
    })
    .await;

    eventually("a rerun of the rebalance completes", || async {
        let mut c = mysql_async::Conn::new(cluster.master.opts()).await.ok()?;
        match c.query_drop("REBALANCE PARTITIONS ON test").await {
            Ok(()) => Some(()),
            Err(e) => {
                println!("rerun: {e}");
                None
            }
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (acked, uncertain) = writer.await.unwrap();
    let spread = eventually("every partition on a pair with its replica in sync", || async {
        let mut c = cluster.conn().await;
        paired_spread_of(&instances(&mut c).await, &pairs, PARTITIONS)
    })
    .await;
    assert_eq!(spread.values().copied().collect::<Vec<_>>(), [4; 4], "four partitions on each pair: {spread:?}");
    let explained: Vec<Row> = conn.query("EXPLAIN REBALANCE PARTITIONS ON test").await.unwrap();
    assert!(explained.is_empty(), "{:?}", steps(&explained));

    let preloaded: i64 = conn.query_first("SELECT COUNT(*) FROM test.x WHERE id <= 10000").await.unwrap().unwrap();
    assert_eq!(preloaded, ROWS as i64);
    let written: Vec<i64> = conn.query("SELECT id FROM test.x WHERE id >= 1000000 ORDER BY id").await.unwrap();
    let written_set: BTreeSet<i64> = written.iter().copied().collect();
    assert_eq!(written_set.len(), written.len(), "no row twice");
    let missing: Vec<&i64> = acked.iter().filter(|id| !written_set.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged rows are missing: {missing:?}");
    let unknown: BTreeSet<i64> = uncertain.into_iter().collect();
    assert!(written_set.iter().all(|id| acked.binary_search(id).is_ok() || unknown.contains(id)), "a row nobody wrote");
    println!("{} rows acknowledged during the rebalances, {} uncertain", acked.len(), unknown.len());
}
