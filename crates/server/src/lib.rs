//! A Canopy node: every node runs the same server (MySQL front end + inter-node RPC); its role comes from the
//! cluster. The master aggregator owns the metadata, plans and runs distributed statements and measures leaf
//! health; a leaf stores partition instances and runs the pieces it is sent.

pub mod answer;
pub mod config;
pub mod error;
pub mod front;
pub mod leaf;
pub mod master;
pub mod node;
pub mod persist;
pub mod query;

use std::future::Future;
use std::sync::Arc;

pub use canopy_storage::engine::QUERY_TIME_MS_MAX;
pub use config::{ConfigError, NodeConfig, RPC_PORT_OFFSET, check_root_password, default_rpc_port};
pub use node::Node;

/// Runs a node until `shutdown` completes, then stops accepting connections and returns. Committed data is already
/// durable (each commit is synced), so stopping needs no flush.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    use anyhow::Context;
    let mysql_addr = format!("{}:{}", config.bind, config.port);
    let rpc_addr = format!("{}:{}", config.bind, config.rpc_port);
    let node = Node::open(config).context("opening the data directory")?;
    let master = Arc::new(master::MasterSlot::open(&node).context("loading the cluster metadata")?);
    let mysql_listener =
        tokio::net::TcpListener::bind(&mysql_addr).await.with_context(|| format!("binding MySQL port {mysql_addr}"))?;
    let rpc_listener =
        tokio::net::TcpListener::bind(&rpc_addr).await.with_context(|| format!("binding RPC port {rpc_addr}"))?;
    tracing::info!(mysql = %mysql_addr, rpc = %rpc_addr, role = ?node.role(), "node started");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let replication = leaf::replication::Replication::new(&node.store, node.credentials.clone());
    node.store.set_replicator(replication.clone());
    let handler = Arc::new(leaf::handler::RpcHandler { node: node.clone(), running: Default::default(), replication });
    let credentials = node.credentials.clone();
    let rpc =
        tokio::spawn(canopy_rpc::serve(rpc_listener, handler.clone(), credentials.clone(), stopped(stop_rx.clone())));
    let local_rpc = match bind_local_socket(&node.config.data_dir) {
        Some((path, listener)) => {
            tracing::info!(path = %path.display(), "local RPC socket listening");
            node.set_local_socket(path);
            Some(tokio::spawn(canopy_rpc::serve_local(listener, handler, credentials, stopped(stop_rx.clone()))))
        }
        None => None,
    };
    let heartbeat = tokio::spawn(master::heartbeat::run(master.clone()));
    if let Some(cluster) = master.get() {
        tokio::spawn(master::reference::reconcile(cluster.clone()));
        tokio::spawn(master::replication::reassert_async_replicas(cluster));
    }
    let limits = canopy_mysql::Limits { port: node.config.port, ..Default::default() };
    let backend = front::session::Backend {
        node: node.clone(),
        master,
        processes: Default::default(),
        limits: Arc::new(limits.clone()),
    };
    let mysql = tokio::spawn(canopy_mysql::serve(mysql_listener, Arc::new(backend), limits, stopped(stop_rx.clone())));
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    heartbeat.abort();
    let _ = rpc.await;
    if let Some(local_rpc) = local_rpc {
        let _ = local_rpc.await;
    }
    if let Some(path) = node.local_socket() {
        let _ = std::fs::remove_file(path);
    }
    let _ = mysql.await;
    Ok(())
}

/// Binds the local RPC socket `<data-dir>/rpc.sock` (absolute path, so other processes can use what the node
/// reports), replacing a file left by an earlier run. None, with a warning, when it cannot (a path longer than a
/// Unix socket address allows, for instance): nodes then talk over TCP only. The socket is mode 0600 (its
/// connections authenticate like TCP ones all the same).
fn bind_local_socket(data_dir: &std::path::Path) -> Option<(std::path::PathBuf, tokio::net::UnixListener)> {
    let path = match std::fs::canonicalize(data_dir) {
        Ok(dir) => dir.join("rpc.sock"),
        Err(e) => {
            tracing::warn!("no local RPC socket: {e}");
            return None;
        }
    };
    let _ = std::fs::remove_file(&path);
    use std::os::unix::fs::PermissionsExt;
    let bound = tokio::net::UnixListener::bind(&path).and_then(|listener| {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    });
    match bound {
        Ok(listener) => Some((path, listener)),
        Err(e) => {
            tracing::warn!(path = %path.display(), "no local RPC socket: {e}");
            None
        }
    }
}
