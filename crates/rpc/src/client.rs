//! The calling side: a bounded pool of TCP connections to one node, one request in flight per connection.
//! A connection that failed in any way is dropped, never reused, so a half-read frame cannot poison later calls.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::RpcError;
use crate::frame::{read_frame, write_frame};
use crate::message::{Request, Response};

/// Idle connections kept per node; more may be open while calls are in flight.
const IDLE_CONNECTIONS_MAX: usize = 64;

pub struct Client {
    addr: SocketAddr,
    connect_timeout: Duration,
    idle: Mutex<Vec<TcpStream>>,
}

impl Client {
    pub fn new(addr: SocketAddr, connect_timeout: Duration) -> Client {
        Client { addr, connect_timeout, idle: Mutex::new(Vec::new()) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections currently open and idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Drops every pooled connection (after the node was found dead, for instance).
    pub fn flush(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Sends `request` and waits for the response, for at most `timeout` once connected.
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, RpcError> {
        let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut stream = match pooled {
            Some(s) => s,
            None => self.connect().await?,
        };
        let exchange = async {
            write_frame(&mut stream, request).await?;
            read_frame::<_, Response>(&mut stream).await?.ok_or(RpcError::Closed)
        };
        let response = tokio::time::timeout(timeout, exchange).await.map_err(|_| RpcError::Timeout)??;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_CONNECTIONS_MAX
        {
            idle.push(stream);
        }
        Ok(response)
    }

    async fn connect(&self) -> Result<TcpStream, RpcError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| RpcError::Timeout)??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
