//! The serving side: accepts connections and answers each request frame with the handler's response, one request
//! at a time per connection (clients open more connections for concurrency).
//!
//! Each connection is served on its own OS thread, in blocking style: a leaf's work is SQLite, which blocks, and
//! running it on the thread that read the request saves the two thread hand-offs an async task would need (measured:
//! sysbench point selects +59% on 2 cores). Requests the handler cannot answer inline run on the tokio runtime
//! (`Handle::block_on`). Connection threads are bounded by `CONNECTION_THREADS_MAX` per listener. The same loop
//! serves TCP and the node's local (Unix domain) socket.
//!
//! Every connection first runs the handshake of `auth.rs` (bounded in time and frame size); a peer that does not
//! prove the cluster secret gets no request answered. A connection beyond the limit is told `Busy`, then closed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::io::{Read, Write};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Handle;

use crate::auth::{self, Answer, Credentials, HANDSHAKE_TIMEOUT_MS, Hello, Standing, UNAUTHENTICATED_FRAME_BYTES_MAX};
use crate::frame::{read_frame_sync, read_frame_sync_max, write_frame_sync};
use crate::message::{RemoteError, RemoteErrorKind, Request, Response};
use crate::wait;

/// More simultaneous connections than this are told `Busy` and closed at once.
pub const CONNECTION_THREADS_MAX: usize = 1024;
/// An authenticated connection that sends no request for this long is closed (clients drop pooled connections
/// much sooner, `client::POOLED_IDLE_MS_MAX`), so forgotten connections do not hold threads forever.
pub const IDLE_TIMEOUT_MS: u64 = 300_000;

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;

    /// Answers a request on the connection's own thread, where blocking work (a SQLite statement) is cheapest;
    /// `Err(request)` hands it to [`Handler::handle`] instead. The default answers nothing inline.
    fn handle_inline(&self, request: Request) -> Result<Response, Request> {
        Err(request)
    }

    /// Answers a request that arrived on a connection to this node while it holds no cluster secret (it belongs to
    /// no cluster): only what joining needs. The default refuses everything.
    fn handle_unauthenticated(&self, request: Request) -> Response {
        let _ = request;
        Response::Error(RemoteError::new(
            RemoteErrorKind::BadRequest,
            "not authenticated: this node belongs to no cluster",
        ))
    }
}

/// Read and write timeouts on a blocking connection (the handshake's deadline, the idle timeout).
pub trait Deadlines {
    fn set_read_deadline(&self, timeout: Option<Duration>) -> std::io::Result<()>;
    fn set_write_deadline(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl Deadlines for std::net::TcpStream {
    fn set_read_deadline(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(timeout)
    }
    fn set_write_deadline(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.set_write_timeout(timeout)
    }
}

impl Deadlines for std::os::unix::net::UnixStream {
    fn set_read_deadline(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(timeout)
    }
    fn set_write_deadline(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.set_write_timeout(timeout)
    }
}

/// Serves TCP connections until `shutdown` completes. Errors on one connection end that connection only.
/// Connections already open when `shutdown` completes are served until their peer closes them (or the process
/// exits).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    credentials: Arc<Credentials>,
    shutdown: impl Future<Output = ()>,
) {
    accept_loop(handler, credentials, shutdown, || async {
        let (stream, _) = listener.accept().await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    })
    .await
}

/// Serves connections on a local (Unix domain) socket until `shutdown` completes, exactly as [`serve`] does TCP.
pub async fn serve_local<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    credentials: Arc<Credentials>,
    shutdown: impl Future<Output = ()>,
) {
    accept_loop(handler, credentials, shutdown, || async {
        let (stream, _) = listener.accept().await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
    .await
}

async fn accept_loop<H, S, F, A>(
    handler: Arc<H>,
    credentials: Arc<Credentials>,
    shutdown: impl Future<Output = ()>,
    mut accept: A,
) where
    H: Handler,
    S: Read + Write + Deadlines + std::os::fd::AsFd + Send + 'static,
    F: Future<Output = std::io::Result<S>>,
    A: FnMut() -> F,
{
    tokio::pin!(shutdown);
    let active = Arc::new(AtomicUsize::new(0));
    let mut busy = BusyLog::default();
    let runtime = Handle::current();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = accept() => match accepted {
                Ok(mut stream) => {
                    if active.load(Ordering::Relaxed) >= CONNECTION_THREADS_MAX {
                        busy.note();
                        // A fresh socket's send buffer is empty, so this small write does not block; the deadline
                        // bounds it anyway.
                        let _ = stream.set_write_deadline(Some(BUSY_WRITE_TIMEOUT));
                        let _ = write_frame_sync(&mut stream, &Hello::Busy);
                        continue;
                    }
                    let (handler, runtime, active) = (handler.clone(), runtime.clone(), active.clone());
                    let credentials = credentials.clone();
                    active.fetch_add(1, Ordering::Relaxed);
                    let spawned = std::thread::Builder::new().name("canopy-rpc".into()).spawn(move || {
                        match handshake(&mut stream, &credentials) {
                            Ok(standing) => serve_connection(stream, handler, runtime, standing),
                            Err(e) => tracing::debug!("rpc handshake failed: {e}"),
                        }
                        active.fetch_sub(1, Ordering::Relaxed);
                    });
                    if let Err(e) = spawned {
                        tracing::warn!("rpc: cannot start a connection thread: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!("rpc accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Connections told `Busy`, logged at most once per `BUSY_LOG_INTERVAL` (a flood must not flood the log too).
#[derive(Default)]
struct BusyLog {
    since_logged: u64,
    logged_at: Option<std::time::Instant>,
}

const BUSY_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl BusyLog {
    fn note(&mut self) {
        self.since_logged += 1;
        if self.logged_at.is_none_or(|at| at.elapsed() >= BUSY_LOG_INTERVAL) {
            tracing::warn!("rpc: too many connections; answered {} busy", self.since_logged);
            self.since_logged = 0;
            self.logged_at = Some(std::time::Instant::now());
        }
    }
}

/// How long the server tries to tell a connection beyond the limit that it is busy.
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// Runs the server side of the handshake (`auth.rs`) within `HANDSHAKE_TIMEOUT_MS`.
fn handshake<S: Read + Write + Deadlines>(
    stream: &mut S,
    credentials: &Credentials,
) -> Result<Standing, crate::RpcError> {
    let deadline = Some(Duration::from_millis(HANDSHAKE_TIMEOUT_MS));
    stream.set_read_deadline(deadline)?;
    stream.set_write_deadline(deadline)?;
    let nonce = auth::nonce();
    let keyed = credentials.secret().is_some();
    write_frame_sync(stream, &Hello::Challenge { nonce, name: credentials.name().to_string(), keyed })?;
    let answer: Answer =
        read_frame_sync_max(stream, UNAUTHENTICATED_FRAME_BYTES_MAX)?.ok_or(crate::RpcError::Closed)?;
    let verdict = auth::judge(credentials, &nonce, &answer);
    let standing = match verdict {
        auth::Verdict::Accepted { .. } => Standing::Authenticated,
        auth::Verdict::Unkeyed => Standing::Unkeyed,
        auth::Verdict::Refused => {
            tracing::warn!(peer = %answer.name, "rpc: refused a connection that did not prove the cluster secret");
            let _ = write_frame_sync(stream, &verdict);
            return Err(crate::RpcError::Unauthenticated(format!("{} did not prove the cluster secret", answer.name)));
        }
    };
    write_frame_sync(stream, &verdict)?;
    // From now on only idleness between requests is bounded (a long statement runs between reads: the polled
    // reads of `serve_connection`), and writes are not: a response may be large and the peer slow.
    stream.set_write_deadline(None)?;
    Ok(standing)
}

/// How long a connection may stay idle between requests.
fn idle_timeout(standing: Standing) -> Duration {
    match standing {
        Standing::Authenticated => Duration::from_millis(IDLE_TIMEOUT_MS),
        Standing::Unkeyed => Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
    }
}

fn serve_connection<H: Handler, S: Read + Write + std::os::fd::AsFd>(
    stream: S,
    handler: Arc<H>,
    runtime: Handle,
    standing: Standing,
) {
    // Reads through a buffer (a small request's header and body come in one `read`, not two), each after waiting
    // for input with `poll` (`wait.rs`: not woken when the peer reads this end's answer).
    let mut stream = wait::buffered(stream, Some(idle_timeout(standing)));
    loop {
        let read = match standing {
            Standing::Authenticated => read_frame_sync::<_, Request>(&mut stream),
            Standing::Unkeyed => read_frame_sync_max::<_, Request>(&mut stream, UNAUTHENTICATED_FRAME_BYTES_MAX),
        };
        let request = match read {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("rpc connection closed: {e}");
                return;
            }
        };
        let response: Response = match standing {
            Standing::Unkeyed => handler.handle_unauthenticated(request),
            Standing::Authenticated => match handler.handle_inline(request) {
                Ok(response) => response,
                Err(request) => runtime.block_on(handler.handle(request)),
            },
        };
        if let Err(e) = write_frame_sync(stream.get_mut(), &response) {
            tracing::debug!("rpc write failed: {e}");
            return;
        }
    }
}
