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
            _ => Response::Error(canopy_rpc::RemoteError::new(
                canopy_rpc::RemoteErrorKind::BadRequest,
                "not authenticated",
            )),
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
    Request::Execute {
        db: "d".into(),
        target: Target::Partitions(vec![canopy_rpc::PartitionTerm { ordinal: 3, term: canopy_types::Term(1) }]),
        sql: "SELECT 1".into(),
        params: vec![],
        statement: 0,
    }
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
        node_id: canopy_types::NodeId(2),
        secret: ClusterSecret::generate(),
        join_token: "t".into(),
    };
    assert_eq!(master.call(&join, Duration::from_secs(5)).await.unwrap(), Response::Done);
    assert_eq!(master.idle_connections(), 0, "an unauthenticated connection is never pooled");
}

/// A server at its connection limit tells a new connection it is busy: the client reports `Busy`, which is not a
/// refusal (the failure detector must not read a full leaf as a dead one).
#[tokio::test]
async fn a_full_server_answers_busy_not_refused() {
    let secret = ClusterSecret::generate();
    let addr = start_with(Some(secret.clone())).await;
    let mut held = Vec::new();
    for _ in 0..canopy_rpc::server::CONNECTION_THREADS_MAX {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let busy = client(addr, Some(secret)).call(&Request::Ping, Duration::from_secs(5)).await;
    assert!(matches!(busy, Err(RpcError::Busy)), "{busy:?}");
    assert!(!busy.unwrap_err().is_refusal());
    drop(held);
}

/// Counts requests in flight on the server and remembers the most seen at once.
#[derive(Default)]
struct Slow {
    active: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Handler for Slow {
    async fn handle(&self, _request: Request) -> Response {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.active.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.active.fetch_sub(1, SeqCst);
        Response::Done
    }
}

/// More concurrent callers than `CONNECTIONS_PER_NODE_MAX` wait for a turn instead of opening more connections:
/// the server never sees more at once, and every call completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_to_one_node_are_bounded() {
    let secret = ClusterSecret::generate();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slow = Arc::new(Slow::default());
    let credentials = Arc::new(Credentials::new("server", Some(secret.clone())));
    tokio::spawn(serve(listener, slow.clone(), credentials, std::future::pending()));
    let client = Arc::new(client(addr, Some(secret)));
    let calls = canopy_rpc::client::CONNECTIONS_PER_NODE_MAX + 64;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..calls {
        let client = client.clone();
        tasks.spawn(async move { client.call(&execute(), Duration::from_secs(60)).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.unwrap().unwrap(), Response::Done);
    }
    let most = slow.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= canopy_rpc::client::CONNECTIONS_PER_NODE_MAX, "{most} requests at once");
}

/// The blocking call (a commit waiting for its replica) runs the same handshake: it round-trips with the cluster
/// secret over TCP and over the node's local socket, reuses its connection, is refused without the secret or by an unkeyed node, and a silent server (one
/// that accepts connections and never answers, as a frozen node does) costs it no more than its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_call_authenticates_and_times_out() {
    let secret = ClusterSecret::generate();
    let addr = start_with(Some(secret.clone())).await;
    let stranger_addr = start_with(Some(ClusterSecret::generate())).await;
    let unkeyed_addr = start_with(None).await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let local_dir = std::env::temp_dir().join(format!("canopy-rpc-local-{}", std::process::id()));
    std::fs::create_dir_all(&local_dir).unwrap();
    let local_path = local_dir.join("rpc.sock");
    let _ = std::fs::remove_file(&local_path);
    let local = tokio::net::UnixListener::bind(&local_path).unwrap();
    let credentials = Arc::new(Credentials::new("server", Some(secret.clone())));
    tokio::spawn(canopy_rpc::serve_local(local, Arc::new(Echo), credentials, std::future::pending()));
    tokio::task::spawn_blocking(move || {
        let ours = client(addr, Some(secret.clone()));
        for _ in 0..3 {
            let Response::Rows(rs) = ours.call_blocking(&execute(), Duration::from_secs(5)).unwrap() else { panic!() };
            assert_eq!(rs.rows[0][0], Value::Text("SELECT 1".into()));
        }
        let refused = client(stranger_addr, Some(secret.clone())).call_blocking(&execute(), Duration::from_secs(5));
        assert!(matches!(refused, Err(RpcError::Unauthenticated(_))), "{refused:?}");
        let unkeyed = client(unkeyed_addr, Some(secret.clone())).call_blocking(&execute(), Duration::from_secs(5));
        assert!(matches!(unkeyed, Err(RpcError::PeerUnkeyed)), "{unkeyed:?}");
        // Over the node's local socket when it has one (its TCP port here is closed: only the socket answers).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let local_only = client(closed, Some(secret.clone()));
        assert!(local_only.call_blocking(&Request::Ping, Duration::from_secs(5)).is_err(), "nothing on TCP");
        local_only.set_local_socket(Some(local_path.clone()));
        let Response::Rows(_) = local_only.call_blocking(&execute(), Duration::from_secs(5)).unwrap() else { panic!() };
        // A connect timeout of a minute: the call's own 300 ms must bound the handshake instead.
        let patient = Client::new(silent_addr, Duration::from_secs(60), Arc::new(Credentials::new("c", Some(secret))));
        let started = std::time::Instant::now();
        let timed_out = patient.call_blocking(&Request::Ping, Duration::from_millis(300));
        assert!(matches!(timed_out, Err(RpcError::Timeout)), "{timed_out:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "the handshake waited {:?}", started.elapsed());
        drop(silent);
    })
    .await
    .unwrap();
}
