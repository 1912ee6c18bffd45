//! The `canopy` binary: `server` runs one node; `demo` starts a local cluster with sample data; `cluster` manages
//! the nodes of a cluster described by a TOML file on this host.

mod cluster;
mod demo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "canopy", version, about = "Canopy: a distributed SQL database operated like SingleStore")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node. Its role (master aggregator, leaf) comes from the cluster: BOOTSTRAP AGGREGATOR or ADD LEAF.
    Server(ServerArgs),
    /// Start a master aggregator and 4 leaves on loopback with a sample database; Ctrl-C stops them all.
    Demo(demo::DemoArgs),
    /// Manage the nodes of a cluster described by a TOML file (up, down, list-nodes, stop-node, start-node).
    Cluster(cluster::ClusterArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Directory holding the node's identity, metadata and partition files (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// The address other nodes and clients use to reach this node.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The MySQL port; it is also the node's identity (`ADD LEAF root@'host':port`).
    #[arg(long, default_value_t = 3306)]
    port: u16,
    /// Internal RPC port [default: --port + 10000].
    #[arg(long)]
    rpc_port: Option<u16>,
    /// Address to bind [default: --host].
    #[arg(long)]
    bind: Option<String>,
    /// Password of user `root` [default: none]. Also read from CANOPY_ROOT_PASSWORD.
    #[arg(long, env = "CANOPY_ROOT_PASSWORD", default_value = "", hide_env_values = true)]
    root_password: String,
    /// Start even though root has no password and the node listens beyond loopback (anyone who reaches the port
    /// is root). Without it such a node refuses to start.
    #[arg(long)]
    allow_empty_root_password: bool,
    /// How long one statement may run before it is interrupted with error 3024, in milliseconds.
    #[arg(long, default_value_t = canopy_server::QUERY_TIME_MS_MAX)]
    query_time_max_ms: u64,
    /// Log filter (tracing syntax), e.g. `info` or `canopy_server=debug`.
    #[arg(long, env = "CANOPY_LOG", default_value = "info")]
    log: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Server(args) => run_server(args),
        Cmd::Demo(args) => demo::run(args),
        Cmd::Cluster(args) => cluster::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("canopy: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let rpc_port = match args.rpc_port {
        Some(p) => p,
        None => canopy_server::default_rpc_port(args.port).ok_or_else(|| {
            anyhow::anyhow!("--port {} leaves no room for the default RPC port; pass --rpc-port", args.port)
        })?,
    };
    let bind = args.bind.unwrap_or_else(|| args.host.clone());
    let bind_addrs = resolve(&bind);
    canopy_server::check_root_password(&bind, &bind_addrs, &args.root_password, args.allow_empty_root_password)?;
    let config = canopy_server::NodeConfig {
        data_dir: args.data_dir,
        bind,
        host: args.host,
        port: args.port,
        rpc_port,
        root_password: args.root_password,
        query_time_ms_max: args.query_time_max_ms,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(canopy_server::run(config, shutdown_signal()))
}

/// The addresses `host` resolves to (none when it does not resolve: then binding fails anyway).
fn resolve(host: &str) -> Vec<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    (host, 0).to_socket_addrs().map(|addrs| addrs.map(|a| a.ip()).collect()).unwrap_or_default()
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
