//! How a node is configured: its data directory, address and ports, and the root password. The MySQL port is the
//! node's identity; the internal RPC port defaults to the MySQL port + `RPC_PORT_OFFSET`.

use std::path::PathBuf;

/// The documented default: the RPC port is the MySQL port plus this offset (3306 → 13306).
pub const RPC_PORT_OFFSET: u16 = 10000;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// The address other nodes and clients use to reach this node.
    pub host: String,
    /// The address the node's sockets bind to (defaults to `host`).
    pub bind: String,
    pub port: u16,
    pub rpc_port: u16,
    /// The password of user `root`; empty means no password.
    pub root_password: String,
    /// How long one statement may run on this node before it is interrupted (error 3024);
    /// `canopy_storage::engine::QUERY_TIME_MS_MAX` by default.
    pub query_time_ms_max: u64,
}

/// The RPC port derived from a MySQL port, or `None` if the sum does not fit (then `--rpc-port` is required).
pub fn default_rpc_port(port: u16) -> Option<u16> {
    port.checked_add(RPC_PORT_OFFSET)
}
