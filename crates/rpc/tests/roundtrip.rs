//! A real server on loopback answering real clients: requests round-trip, and a peer sending a hostile length or
//! garbage loses only its own connection.

use std::sync::Arc;
use std::time::Duration;

use canopy_rpc::{Client, Handler, Request, Response, Target, serve};
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
}

async fn start() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, Arc::new(Echo), std::future::pending()));
    addr
}

#[tokio::test]
async fn requests_round_trip_and_bad_peers_do_not_hurt_others() {
    let addr = start().await;
    let client = Client::new(addr, Duration::from_secs(2));
    let req = Request::Execute {
        db: "d".into(),
        target: Target::Partitions(vec![3]),
        sql: "SELECT 1".into(),
        params: vec![],
    };
    let Response::Rows(rs) = client.call(&req, Duration::from_secs(5)).await.unwrap() else { panic!() };
    assert_eq!(rs.rows[0][0], Value::Text("SELECT 1".into()));
    assert_eq!(rs.rows[1][0], Value::Real(1.5));
    assert_eq!(client.idle_connections(), 1, "a healthy connection goes back to the pool");

    // A hostile peer: a length far beyond the frame limit, then garbage. The server must close on it.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    raw.write_all(b"garbage").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "server closes a connection that sent an oversized frame");

    // A well-formed length with an undecodable body.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&5u32.to_be_bytes()).await.unwrap();
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "server closes a connection that sent garbage");

    // The pooled client still works.
    assert_eq!(client.call(&Request::Ping, Duration::from_secs(5)).await.unwrap(), Response::Done);
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_fast() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(addr, Duration::from_secs(2));
    assert!(client.call(&Request::Ping, Duration::from_secs(2)).await.is_err());
}
