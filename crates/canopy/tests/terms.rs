//! Terms reach the leaves, through real processes: every partition copy holds the term the metadata gives its
//! master instance, every request names the term the aggregator believes in, and a leaf refuses any other with a
//! typed error. Fencing in redundancy 2 builds on this.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use canopy_rpc::{Client, Credentials, PartitionTerm, RemoteErrorKind, Request, Response, Target};
use canopy_types::Term;
use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::{TestCluster, eventually, leaf_state, text};

/// `db:ordinal` → (leaf port, term) of every master instance, from the master aggregator's metadata.
async fn metadata_terms(conn: &mut mysql_async::Conn) -> BTreeMap<u32, (u16, u64)> {
    let rows: Vec<(u32, u16, u64)> = conn
        .query(
            "SELECT ORDINAL, PORT, TERM FROM information_schema.DISTRIBUTED_PARTITIONS \
             WHERE DATABASE_NAME = 'test' AND ROLE = 'Master'",
        )
        .await
        .unwrap();
    rows.into_iter().map(|(ordinal, port, term)| (ordinal, (port, term))).collect()
}

/// The term each partition copy of `test` holds on the leaf at `port` (its own SHOW DATABASES EXTENDED).
async fn leaf_terms(cluster: &TestCluster, port: u16) -> BTreeMap<u32, u64> {
    let leaf = cluster.leaves.iter().find(|l| l.port == port).expect("a leaf of the cluster");
    let mut conn = leaf.connect().await;
    let rows: Vec<Row> = conn.query("SHOW DATABASES EXTENDED").await.unwrap();
    rows.iter()
        .filter_map(|r| {
            let ordinal = text(r, "Database").strip_prefix("test_")?.parse().ok()?;
            Some((ordinal, text(r, "Term").parse().unwrap()))
        })
        .collect()
}

/// An RPC client to the leaf at MySQL port `port` holding the cluster's secret, as the master aggregator's is.
fn leaf_client(cluster: &TestCluster, port: u16) -> Client {
    let secret = canopy_server::persist::load_secret(&canopy_server::persist::secret_path(&cluster.master.data_dir))
        .unwrap()
        .expect("the master aggregator holds the cluster secret");
    let addr = format!("127.0.0.1:{}", port + 10_000).parse().unwrap();
    Client::new(addr, Duration::from_secs(5), Arc::new(Credentials::new("terms-test", Some(secret))))
}

fn select(ordinal: u32, term: u64) -> Request {
    let target = Target::Partitions(vec![PartitionTerm { ordinal, term: Term(term) }]);
    Request::Execute { db: "test".into(), target, sql: "SELECT count(*) FROM x".into(), params: vec![], statement: 0 }
}

/// History: a database of 4 partitions on 2 leaves; a peer holding the cluster secret sends a statement to a
/// partition in its own term, in an older and in a newer one; DETACH LEAF moves the first leaf's partitions to the
/// second; the second leaf restarts.
/// Property: each leaf's copies hold exactly the metadata's terms, before and after the moves (a move gives the new
/// master a larger term) and across the restart; a statement in any other term than the copy's is refused with
/// `StaleTerm` naming both terms, one in the right term is answered; SQL through the aggregator keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_hold_the_metadata_terms_and_refuse_others() {
    let mut cluster = TestCluster::start("terms", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE test.x (id INT PRIMARY KEY)").await.unwrap();
    let values: Vec<String> = (1..=40).map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO test.x VALUES {}", values.join(","))).await.unwrap();

    let terms = metadata_terms(&mut conn).await;
    assert_eq!(terms.len(), 4);
    assert!(terms.values().all(|&(_, term)| term > 0), "every master has a term: {terms:?}");
    for leaf in &cluster.leaves {
        let expected: BTreeMap<u32, u64> =
            terms.iter().filter(|(_, (port, _))| *port == leaf.port).map(|(o, (_, t))| (*o, *t)).collect();
        assert_eq!(leaf_terms(&cluster, leaf.port).await, expected, "leaf {} holds the metadata's terms", leaf.port);
    }

    let (port, term) = terms[&0];
    let client = leaf_client(&cluster, port);
    let timeout = Duration::from_secs(10);
    assert!(matches!(client.call(&select(0, term), timeout).await.unwrap(), Response::Rows(_)));
    for other in [term - 1, term + 1] {
        match client.call(&select(0, other), timeout).await.unwrap() {
            Response::Error(e) => {
                assert_eq!(e.kind, RemoteErrorKind::StaleTerm { expected: Term(term), got: Term(other) }, "{e:?}")
            }
            answered => panic!("a statement in term {other} (the copy is in {term}) was answered: {answered:?}"),
        }
    }

    let first = cluster.leaves[0].port;
    conn.query_drop(format!("DETACH LEAF '127.0.0.1':{first}")).await.unwrap();
    let moved = metadata_terms(&mut conn).await;
    let second = cluster.leaves[1].port;
    assert!(moved.values().all(|&(port, _)| port == second), "every master moved: {moved:?}");
    for (ordinal, (port, term)) in &terms {
        if *port == first {
            assert!(moved[ordinal].1 > *term, "a moved partition has a larger term: {terms:?} -> {moved:?}");
        }
    }
    let expected: BTreeMap<u32, u64> = moved.iter().map(|(o, (_, t))| (*o, *t)).collect();
    assert_eq!(leaf_terms(&cluster, second).await, expected);
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, 40);

    cluster.leaves[1].kill();
    eventually("the second leaf offline", || async {
        (leaf_state(&cluster, 1).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    cluster.leaves[1].spawn();
    eventually("the second leaf online", || async {
        (leaf_state(&cluster, 1).await.as_deref() == Some("online")).then_some(())
    })
    .await;
    assert_eq!(leaf_terms(&cluster, second).await, expected, "terms survive a restart");
    conn.query_drop("INSERT INTO test.x VALUES (41)").await.unwrap();
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM test.x").await.unwrap().unwrap();
    assert_eq!(count, 41);
}
