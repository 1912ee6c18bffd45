//! The calling side: a bounded pool of connections to one node, one request in flight per connection.
//! A connection that failed in any way is dropped, never reused, so a half-read frame cannot poison later calls.
//!
//! Connections go over TCP, or over the node's local (Unix domain) socket once the caller has learnt its path
//! ([`Client::set_local_socket`]; only for a node on this host). A local socket skips the TCP/IP stack on both
//! ends, which is most of the cost of a small request on one machine. If the local socket cannot be reached the
//! client falls back to TCP, so reachability (and the failure detector's view of it) is always TCP's.
//!
//! Every new connection runs the handshake of `auth.rs` before its first request; a node that cannot prove the
//! cluster secret is never sent a request, and one without any secret (unconfigured) only `JoinCluster`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;

use crate::RpcError;
use crate::auth::{self, Credentials, Standing, UNAUTHENTICATED_FRAME_BYTES_MAX};
use crate::frame::{read_frame, read_frame_max, read_frame_sync, read_frame_sync_max, write_frame, write_frame_sync};
use crate::message::{Request, Response};
use crate::wait::{self, PolledReads};

/// How long opening a connection to another node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The first socket address of `host:port`.
pub fn resolve(host: &str, port: u16) -> std::result::Result<SocketAddr, RpcError> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| RpcError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, "host has no address")))
}

/// Idle connections kept per node; more may be open while calls are in flight.
const IDLE_CONNECTIONS_MAX: usize = 64;
/// Calls in flight to one node at a time (each holds one connection); more callers wait for a turn. Well below the
/// server's `CONNECTION_THREADS_MAX`, so one aggregator alone never fills a leaf. Pings do not wait (see `call`).
pub const CONNECTIONS_PER_NODE_MAX: usize = 256;
/// A pooled connection idle longer than this is closed instead of reused: well under the server's
/// `IDLE_TIMEOUT_MS`, so a call never picks a connection the server is about to close.
const POOLED_IDLE_MS_MAX: u64 = 60_000;

pub struct Client {
    addr: SocketAddr,
    connect_timeout: Duration,
    credentials: Arc<Credentials>,
    local: Mutex<Option<PathBuf>>,
    /// Pooled connections with the time each went idle.
    idle: Mutex<Vec<(Stream, Instant)>>,
    /// Pooled connections of [`Client::call_blocking`].
    idle_blocking: Mutex<Vec<(BlockingStream, Instant)>>,
    /// Turns for calls in flight (`CONNECTIONS_PER_NODE_MAX`).
    turns: Semaphore,
}

impl Client {
    /// A client presenting `credentials` on every connection; `connect_timeout` bounds connecting and the handshake.
    pub fn new(addr: SocketAddr, connect_timeout: Duration, credentials: Arc<Credentials>) -> Client {
        Client {
            addr,
            connect_timeout,
            credentials,
            local: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            idle_blocking: Mutex::new(Vec::new()),
            turns: Semaphore::new(CONNECTIONS_PER_NODE_MAX),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Uses the node's local socket at `path` for new connections (None: TCP only), from the path the node itself
    /// reported; only when the node's address is a loopback one, i.e. certainly on this host (otherwise nothing
    /// changes). A change drops the idle connections, so the next calls connect the new way instead of reusing the
    /// old connections indefinitely.
    pub fn set_local_socket(&self, path: Option<PathBuf>) {
        if !self.addr.ip().is_loopback() {
            return;
        }
        if let Ok(mut local) = self.local.lock()
            && *local != path
        {
            *local = path;
            self.flush();
        }
    }

    /// The local socket new connections use, if any.
    pub fn local_socket(&self) -> Option<PathBuf> {
        self.local.lock().ok().and_then(|l| l.clone())
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
        if let Ok(mut idle) = self.idle_blocking.lock() {
            idle.clear();
        }
    }

    /// [`Client::call`] on the calling thread, in blocking style, for a thread that must wait for the answer anyway
    /// (a commit waiting for its replica): the kernel wakes it when the answer arrives, where an async call would
    /// hand the request to a runtime thread and the answer back (two more thread switches). Its connections are
    /// pooled apart from the async ones; `timeout` bounds the exchange once connected (a connection that timed out is
    /// dropped). Never for `JoinCluster` (an unkeyed node is refused).
    pub fn call_blocking(&self, request: &Request, timeout: Duration) -> Result<Response, RpcError> {
        let pooled = self.idle_blocking.lock().ok().and_then(|mut idle| {
            let max = Duration::from_millis(POOLED_IDLE_MS_MAX);
            idle.retain(|(_, since)| since.elapsed() < max);
            idle.pop().map(|(stream, _)| stream)
        });
        let mut stream = match pooled {
            Some(stream) => stream,
            None => self.connect_blocking(timeout.min(self.connect_timeout))?,
        };
        stream.set_timeouts(Some(timeout))?;
        write_frame_sync(&mut stream, request)?;
        let response = read_frame_sync::<_, Response>(&mut stream).map_err(timed_out)?.ok_or(RpcError::Closed)?;
        if let Ok(mut idle) = self.idle_blocking.lock()
            && idle.len() < IDLE_CONNECTIONS_MAX
        {
            idle.push((stream, Instant::now()));
        }
        Ok(response)
    }

    /// A new blocking connection, authenticated by the handshake within `timeout` (an unkeyed node is an error).
    /// The call's own timeout bounds it too: a frozen node accepts connections (the kernel queues them) and never
    /// answers, and a commit must look again at whether it still waits for that node at its usual pace.
    fn connect_blocking(&self, timeout: Duration) -> Result<BlockingStream, RpcError> {
        let local = self.local_socket().and_then(|path| connect_local_blocking(&path, timeout).ok());
        let mut stream = match local {
            Some(stream) => BlockingStream::new(BlockingSocket::Local(stream)),
            None => {
                let stream = std::net::TcpStream::connect_timeout(&self.addr, timeout)?;
                stream.set_nodelay(true)?;
                BlockingStream::new(BlockingSocket::Tcp(stream))
            }
        };
        stream.set_timeouts(Some(timeout))?;
        let hello = read_frame_sync_max(&mut stream, UNAUTHENTICATED_FRAME_BYTES_MAX).map_err(timed_out)?;
        let (answer, expect) = auth::answer(&self.credentials, hello.ok_or(RpcError::Closed)?)?;
        write_frame_sync(&mut stream, &answer)?;
        let verdict = read_frame_sync_max(&mut stream, UNAUTHENTICATED_FRAME_BYTES_MAX).map_err(timed_out)?;
        match expect.check(verdict.ok_or(RpcError::Closed)?)? {
            Standing::Authenticated => Ok(stream),
            Standing::Unkeyed => Err(RpcError::PeerUnkeyed),
        }
    }

    /// Sends `request` and waits for the response, for at most `timeout` once connected. Waits first for one of
    /// the node's `CONNECTIONS_PER_NODE_MAX` turns (within `timeout`), except for a ping: the heartbeat keeps at
    /// most one in flight per node, and it must not queue behind statements or the node would look silent.
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, RpcError> {
        let _turn = match request {
            Request::Ping => None,
            _ => Some(
                tokio::time::timeout(timeout, self.turns.acquire())
                    .await
                    .map_err(|_| RpcError::Timeout)?
                    .map_err(|_| RpcError::Closed)?,
            ),
        };
        self.call_now(request, timeout).await
    }

    async fn call_now(&self, request: &Request, timeout: Duration) -> Result<Response, RpcError> {
        let pooled = self.pooled();
        let (mut stream, standing) = match pooled {
            Some(s) => (s, Standing::Authenticated),
            None => self.connect().await?,
        };
        if standing == Standing::Unkeyed && !matches!(request, Request::JoinCluster { .. }) {
            // Nothing but joining is asked of a node outside any cluster, and none of its answers is trusted.
            return Err(RpcError::PeerUnkeyed);
        }
        let exchange = async {
            write_frame(&mut stream, request).await?;
            read_frame::<_, Response>(&mut stream).await?.ok_or(RpcError::Closed)
        };
        let response = tokio::time::timeout(timeout, exchange).await.map_err(|_| RpcError::Timeout)??;
        if standing == Standing::Authenticated
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_CONNECTIONS_MAX
        {
            idle.push((stream, Instant::now()));
        }
        Ok(response)
    }

    /// The most recently used pooled connection that has not been idle too long (older ones are closed).
    fn pooled(&self) -> Option<Stream> {
        let mut idle = self.idle.lock().ok()?;
        let max = Duration::from_millis(POOLED_IDLE_MS_MAX);
        idle.retain(|(_, since)| since.elapsed() < max);
        idle.pop().map(|(stream, _)| stream)
    }

    /// A new connection, authenticated (or found unkeyed) by the handshake.
    async fn connect(&self) -> Result<(Stream, Standing), RpcError> {
        if let Some(path) = self.local_socket()
            && let Ok(stream) = self.connect_local(&path).await
        {
            return self.handshake(stream).await;
        }
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| RpcError::Timeout)??;
        stream.set_nodelay(true)?;
        self.handshake(Stream::Tcp(stream)).await
    }

    /// The client side of the handshake (`auth.rs`), within the connect timeout.
    async fn handshake(&self, mut stream: Stream) -> Result<(Stream, Standing), RpcError> {
        let exchange = async {
            let hello = read_frame_max(&mut stream, UNAUTHENTICATED_FRAME_BYTES_MAX).await?.ok_or(RpcError::Closed)?;
            let (answer, expect) = auth::answer(&self.credentials, hello)?;
            write_frame(&mut stream, &answer).await?;
            let verdict =
                read_frame_max(&mut stream, UNAUTHENTICATED_FRAME_BYTES_MAX).await?.ok_or(RpcError::Closed)?;
            expect.check(verdict)
        };
        let standing = tokio::time::timeout(self.connect_timeout, exchange).await.map_err(|_| RpcError::Timeout)??;
        Ok((stream, standing))
    }

    async fn connect_local(&self, path: &Path) -> Result<Stream, RpcError> {
        let stream = tokio::time::timeout(self.connect_timeout, UnixStream::connect(path))
            .await
            .map_err(|_| RpcError::Timeout)??;
        Ok(Stream::Local(stream))
    }
}

/// A blocking connection to a local socket within `timeout`: a frozen node's full listen queue must not hold the
/// caller (std's `UnixStream::connect` has no timeout; a full queue fails the non-blocking connect at once, and
/// the caller falls back to TCP, whose connect is bounded).
fn connect_local_blocking(path: &Path, timeout: Duration) -> std::io::Result<std::os::unix::net::UnixStream> {
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.connect_timeout(&socket2::SockAddr::unix(path)?, timeout)?;
    Ok(socket.into())
}

/// A read that hit its socket timeout is the call's timeout.
fn timed_out(e: RpcError) -> RpcError {
    match e {
        RpcError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            RpcError::Timeout
        }
        other => other,
    }
}

/// One pooled connection of [`Client::call_blocking`]: the socket, read through a buffer (a small answer's header
/// and body in one `read`) after waiting for input with `poll` for at most the call's timeout (`wait.rs`: one
/// wake-up per answer on a local socket). Writes are bounded by the socket's `SO_SNDTIMEO`, set only when a call
/// wants another timeout than the last one.
struct BlockingStream {
    reader: std::io::BufReader<PolledReads<BlockingSocket>>,
}

enum BlockingSocket {
    Tcp(std::net::TcpStream),
    Local(std::os::unix::net::UnixStream),
}

impl BlockingStream {
    fn new(socket: BlockingSocket) -> BlockingStream {
        BlockingStream { reader: wait::buffered(socket, None) }
    }

    fn set_timeouts(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        let polled = self.reader.get_mut();
        if polled.timeout() == timeout && timeout.is_some() {
            return Ok(());
        }
        match polled.get_ref() {
            BlockingSocket::Tcp(s) => s.set_write_timeout(timeout),
            BlockingSocket::Local(s) => s.set_write_timeout(timeout),
        }?;
        polled.set_timeout(timeout);
        Ok(())
    }
}

impl std::io::Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl std::io::Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.reader.get_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.reader.get_mut().flush()
    }
}

impl std::os::fd::AsFd for BlockingSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            BlockingSocket::Tcp(s) => s.as_fd(),
            BlockingSocket::Local(s) => s.as_fd(),
        }
    }
}

impl std::io::Read for BlockingSocket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BlockingSocket::Tcp(s) => s.read(buf),
            BlockingSocket::Local(s) => s.read(buf),
        }
    }
}

impl std::io::Write for BlockingSocket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            BlockingSocket::Tcp(s) => s.write(buf),
            BlockingSocket::Local(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            BlockingSocket::Tcp(s) => s.flush(),
            BlockingSocket::Local(s) => s.flush(),
        }
    }
}

/// One pooled connection: TCP or the node's local socket.
enum Stream {
    Tcp(TcpStream),
    Local(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Local(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Local(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Local(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Local(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
