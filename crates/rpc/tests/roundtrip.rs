//! A real server on loopback answering real clients: requests round-trip between nodes holding the cluster secret,
//! a peer without it gets nothing answered, and a peer sending a hostile length or garbage loses only its own
//! connection.

use std::sync::Arc;
use std::time::Duration;

use canopy_rpc::{Client, ClusterSecret, Credentials, Handler, Request, Response, RpcError, Target, serve};
use canopy_sql::{Column, ResultSet, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Echo;

impl Handler for Echo {
    async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Execute { sql, .. } => Response::Rows(ResultSet {
                columns: vec![Column::new("sql")],
                rows: vec![vec![Value::Text(sql)], vec![Value::Real(1.5)], vec![Value::Blob(vec![0, 255])]],
            }),
            _ => Response::Done,
        }
    }

    fn handle_unauthenticated(&self, request: Request) -> Response {
        match request {
            Request::JoinCluster { .. } => Response::Done,
            _ => Response::Error(canopy_rpc::RemoteError {
                kind: canopy_rpc::RemoteErrorKind::BadRequest,
                message: "not authenticated".into(),
            }),
        }
    }
}

async fn start_with(secret: Option<ClusterSecret>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let credentials = Arc::new(Credentials::new("server", secret));
    tokio::spawn(serve(listener, Arc::new(Echo), credentials, std::future::pending()));
    addr
}

fn client(addr: std::net::SocketAddr, secret: Option<ClusterSecret>) -> Client {
    Client::new(addr, Duration::from_secs(2), Arc::new(Credentials::new("client", secret)))
}

fn execute() -> Request {
    Request::Execute { db: "d".into(), target: Target::Partitions(vec![3]), sql: "SELECT 1".into(), params: vec![] }
}

/// Everything the server sends on `raw` until it closes (or 5 s pass: then the test fails on the caller's check).
async fn read_until_closed(raw: &mut tokio::net::TcpStream) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut all)).await.is_ok();
    (all, closed)
}

#[tokio::test]
async fn requests_round_trip_and_bad_peers_do_not_hurt_others() {
    let secret = ClusterSecret::generate();
    let addr = start_with(Some(secret.clone())).await;
    let client = client(addr, Some(secret));
    let Response::Rows(rs) = client.call(&execute(), Duration::from_secs(5)).await.unwrap() else { panic!() };
    assert_eq!(rs.rows[0][0], Value::Text("SELECT 1".into()));
    assert_eq!(rs.rows[1][0], Value::Real(1.5));
    assert_eq!(client.idle_connections(), 1, "a healthy connection goes back to the pool");

    // A hostile peer: a length far beyond the frame limit, then garbage. The server must close on it.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    raw.write_all(b"garbage").await.unwrap();
    assert!(read_until_closed(&mut raw).await.1, "server closes a connection that sent an oversized frame");

    // A well-formed length with an undecodable body.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&5u32.to_be_bytes()).await.unwrap();
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    assert!(read_until_closed(&mut raw).await.1, "server closes a connection that sent garbage");

    // The pooled client still works.
    assert_eq!(client.call(&Request::Ping, Duration::from_secs(5)).await.unwrap(), Response::Done);
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_fast() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(addr, Some(ClusterSecret::generate()));
    assert!(client.call(&Request::Ping, Duration::from_secs(2)).await.is_err());
}

/// A node holding another secret, or none, gets no request answered by a keyed server, and a raw peer sending a
/// request frame in place of the handshake answer is closed on without an answer.
#[tokio::test]
async fn peers_without_the_cluster_secret_are_refused() {
    let addr = start_with(Some(ClusterSecret::generate())).await;
    for secret in [Some(ClusterSecret::generate()), None] {
        let stranger = client(addr, secret);
        let refused = stranger.call(&execute(), Duration::from_secs(5)).await;
        assert!(matches!(refused, Err(RpcError::Unauthenticated(_))), "{refused:?}");
    }
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = postcard::to_stdvec(&execute()).unwrap();
    raw.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
    raw.write_all(&body).await.unwrap();
    let (bytes, closed) = read_until_closed(&mut raw).await;
    assert!(closed, "the server closes a connection that skipped the handshake");
    assert!(!bytes.windows(8).any(|w| w == b"SELECT 1"), "the server answered an unauthenticated request");
}

/// A server without a secret (an unconfigured node) takes only joining, and only as small frames; a client never
/// asks it anything else.
#[tokio::test]
async fn an_unkeyed_server_takes_only_joining() {
    let addr = start_with(None).await;
    let master = client(addr, Some(ClusterSecret::generate()));
    let asked = master.call(&execute(), Duration::from_secs(5)).await;
    assert!(matches!(asked, Err(RpcError::PeerUnkeyed)), "{asked:?}");
    let join = Request::JoinCluster {
        cluster_id: "c".into(),
        node_id: 2,
        secret: ClusterSecret::generate(),
        join_token: "t".into(),
    };
    assert_eq!(master.call(&join, Duration::from_secs(5)).await.unwrap(), Response::Done);
    assert_eq!(master.idle_connections(), 0, "an unauthenticated connection is never pooled");
}
