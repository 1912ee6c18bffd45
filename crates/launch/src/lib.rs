//! Launching `canopy server` processes, the one implementation used by `canopy demo`, `canopy cluster`, the
//! benchmarks and the end-to-end tests: spawn a node (tied to this process, owned by a handle, or detached into its
//! own session), wait until it answers `SELECT 1`, signal it (SIGSTOP, SIGCONT...), stop it (SIGTERM, then SIGKILL
//! after a deadline), restart it on the same data directory and port, tell whether a pid still is the node of a
//! data directory, and find free ports. It knows nothing of clusters: callers decide which nodes run and in which
//! order, and form them into a cluster over SQL.

mod node;
mod ports;
mod process;
mod ready;

pub use node::Node;
pub use ports::{RPC_PORT_OFFSET, free_ports, next_usable_port, port_usable};
pub use process::{
    Lifetime, STOP_TIMEOUT, Stopped, cmdline_serves, send_signal, serves_data_dir, spawn, stop_child, stop_pid,
};
pub use ready::{READY_TIMEOUT, child_exited, log_tail, wait_ready};

use std::path::PathBuf;

/// The node's log file (stdout and stderr), inside its data directory.
pub const LOG_FILE: &str = "node.log";

/// Everything needed to run and reach one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Absolute, so that it reads the same in `/proc/<pid>/cmdline` whatever the current directory.
    pub data_dir: PathBuf,
    pub host: String,
    pub port: u16,
    /// `None`: the server's default, port + [`RPC_PORT_OFFSET`].
    pub rpc_port: Option<u16>,
    pub root_password: String,
    /// Extra environment variables for the process (test-only knobs, for instance).
    pub env: Vec<(String, String)>,
    /// Extra `canopy server` arguments.
    pub args: Vec<String>,
}

impl NodeSpec {
    /// A node on `host:port` with the default RPC port and an empty root password.
    pub fn new(data_dir: impl Into<PathBuf>, host: &str, port: u16) -> NodeSpec {
        NodeSpec {
            data_dir: data_dir.into(),
            host: host.to_string(),
            port,
            rpc_port: None,
            root_password: String::new(),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The MySQL client options for user root on this node.
    pub fn client_opts(&self) -> mysql_async::Opts {
        let pass = (!self.root_password.is_empty()).then(|| self.root_password.clone());
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some("root"))
            .pass(pass)
            .prefer_socket(false)
            .into()
    }
}
