//! A Canopy node: every node runs the same server (MySQL front end + inter-node RPC); its role comes from the
//! cluster. The master aggregator owns the metadata, plans and runs distributed statements and measures leaf
//! health; a leaf stores partition instances and runs the pieces it is sent.

pub mod attach;
pub mod cluster;
pub mod config;
pub mod copy;
pub mod error;
pub mod exec;
pub mod failure;
pub mod heartbeat;
pub mod leaf;
pub mod moves;
pub mod node;
pub mod ops;
pub mod persist;
pub mod session;
pub mod views;

use std::future::Future;
use std::sync::Arc;

pub use config::{NodeConfig, RPC_PORT_OFFSET, default_rpc_port};
pub use node::Node;

/// Runs a node until `shutdown` completes, then stops accepting connections and returns. Committed data is already
/// durable (each commit is synced), so stopping needs no flush.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    use anyhow::Context;
    let mysql_addr = format!("{}:{}", config.bind, config.port);
    let rpc_addr = format!("{}:{}", config.bind, config.rpc_port);
    let node = Node::open(config).context("opening the data directory")?;
    let mysql_listener =
        tokio::net::TcpListener::bind(&mysql_addr).await.with_context(|| format!("binding MySQL port {mysql_addr}"))?;
    let rpc_listener =
        tokio::net::TcpListener::bind(&rpc_addr).await.with_context(|| format!("binding RPC port {rpc_addr}"))?;
    tracing::info!(mysql = %mysql_addr, rpc = %rpc_addr, role = ?node.role(), "node started");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let rpc = tokio::spawn(canopy_rpc::serve(
        rpc_listener,
        Arc::new(leaf::RpcHandler { node: node.clone() }),
        stopped(stop_rx.clone()),
    ));
    let heartbeat = tokio::spawn(heartbeat::run(node.clone()));
    let limits = canopy_mysql::Limits::default();
    let mysql = tokio::spawn(canopy_mysql::serve(
        mysql_listener,
        Arc::new(session::Backend { node: node.clone() }),
        limits,
        stopped(stop_rx.clone()),
    ));
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    heartbeat.abort();
    let _ = rpc.await;
    let _ = mysql.await;
    Ok(())
}
