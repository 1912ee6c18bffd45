//! The accept loop: one task per connection, the connection limit, connection ids, and shutdown. It does not look
//! inside connections; `connection.rs` does.
//!
//! Shutdown stops accepting at once, tells every connection to close at its next command boundary (a statement
//! already running finishes and its reply is sent), and returns when all connection tasks have ended.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::connection::{self, Context, Stats};
use crate::packet::Framed;
use crate::{Backend, Limits, MysqlError, response};

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin while the cause persists.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until `shutdown` resolves; each connection is served on its own task. One bad connection never
/// affects others. Returns once every connection has closed.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let limits = Arc::new(limits);
    let stats = Arc::new(Stats::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut last_id: u32 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(finished) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = finished {
                    warn!(%error, "connection task failed");
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(%error, %peer, "set_nodelay failed");
                }
                // Ids start at 1; 0 means "no connection" to some clients.
                last_id = last_id.wrapping_add(1).max(1);
                let Some(slot) = Slot::take(&stats, limits.max_connections) else {
                    debug!(%peer, "too many connections");
                    tasks.spawn(refuse_too_many(stream, limits.max_packet_bytes));
                    continue;
                };
                let context = Context { backend: backend.clone(), limits: limits.clone(), stats: stats.clone(), stop: stop_rx.clone() };
                let connection_id = last_id;
                tasks.spawn(async move {
                    connection::run(stream, peer, connection_id, context).await;
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    // Receivers see the change even if they subscribe between here and their next wait.
    let _ = stop_tx.send(true);
    while let Some(finished) = tasks.join_next().await {
        if let Err(error) = finished {
            warn!(%error, "connection task failed");
        }
    }
    Ok(())
}

/// One of `max_connections` slots; given back when dropped, however the connection task ends.
struct Slot(Arc<Stats>);

impl Slot {
    fn take(stats: &Arc<Stats>, max_connections: u32) -> Option<Slot> {
        let previous = stats.active_connections.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(stats.clone());
        (previous < max_connections).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sends 1040 in place of the handshake, as MySQL does, and closes.
async fn refuse_too_many(stream: TcpStream, max_packet_bytes: u32) {
    let mut framed = Framed::new(stream, max_packet_bytes);
    if framed.write(&response::err_before_handshake(&MysqlError::too_many_connections())).await.is_ok() {
        framed.shutdown().await;
    }
}
