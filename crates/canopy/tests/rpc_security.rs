//! Security of the inter-node port and of a leaf's own ports, with real processes: frames from a peer without the
//! cluster secret are never answered, a leaf's MySQL port refuses writes and SQLite's file escapes, secrets and
//! metadata are private files, and a master never adopts another cluster's node at its leaf's address.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use canopy_rpc::{Request, Response, Target};
use mysql_async::prelude::Queryable;
use support::TestCluster;

/// The default RPC port of a node whose MySQL port is `port`.
fn rpc_port(port: u16) -> u16 {
    port + 10000
}

/// Sends `request` as a bare frame (length + postcard, no handshake) and returns every frame the peer sends back
/// until it closes the connection or 10 s pass, decoded as responses where they decode.
fn send_raw(port: u16, request: &Request) -> Vec<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", rpc_port(port))).expect("connect to the RPC port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let body = postcard::to_stdvec(request).expect("encode");
    stream.write_all(&(body.len() as u32).to_be_bytes()).expect("write length");
    stream.write_all(&body).expect("write body");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut responses = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let Some(frame) = rest.get(4..4 + len) else { break };
        if let Ok(response) = postcard::from_bytes::<Response>(frame) {
            responses.push(response);
        }
        rest = &rest[4 + len..];
    }
    responses
}

async fn count(conn: &mut mysql_async::Conn, sql: &str) -> Option<i64> {
    conn.query_first::<i64, _>(sql).await.ok().flatten()
}

/// History: a cluster with one leaf holding `test.x` (8 rows). A stranger connects to the leaf's RPC port and sends
/// `Execute SELECT` as a bare frame, then `LeaveCluster` on another connection. Property: neither is answered (no
/// rows, no Done), and the leaf keeps serving its partitions to the master.
#[tokio::test]
async fn frames_without_the_cluster_secret_are_refused_and_the_leaf_keeps_serving() {
    let cluster = TestCluster::start("rpc-unauth", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE test PARTITIONS 2").await.expect("create database");
    conn.query_drop("USE test").await.expect("use");
    conn.query_drop("CREATE TABLE x (id INT PRIMARY KEY, v TEXT)").await.expect("create table");
    conn.query_drop("INSERT INTO x VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e'),(6,'f'),(7,'g'),(8,'h')")
        .await
        .expect("insert");
    let leaf = cluster.leaves[0].port;

    let select = Request::Execute {
        db: "test".into(),
        target: Target::Partitions(vec![0, 1]),
        sql: "SELECT id, v FROM x".into(),
        params: vec![],
    };
    let answered = send_raw(leaf, &select);
    assert!(
        !answered.iter().any(|r| matches!(r, Response::Rows(_) | Response::Affected { .. })),
        "an unauthenticated Execute was answered: {answered:?}"
    );
    let answered = send_raw(leaf, &Request::LeaveCluster);
    assert!(!answered.contains(&Response::Done), "an unauthenticated LeaveCluster was obeyed: {answered:?}");

    assert_eq!(count(&mut conn, "SELECT count(*) FROM x").await, Some(8), "the leaf still serves its partitions");
    let mut leaf_conn = cluster.leaves[0].connect().await;
    let role: Option<String> = leaf_conn.query_first("SELECT @@canopy_role").await.expect("role");
    assert_eq!(role.as_deref(), Some("Leaf"), "the leaf is still a leaf");
}
