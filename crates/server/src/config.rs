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

/// Why a node refuses to start, from its configuration alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "refusing to listen on {bind} (beyond loopback) with an empty root password: set --root-password (or \
         CANOPY_ROOT_PASSWORD), bind to 127.0.0.1, or pass --allow-empty-root-password"
    )]
    EmptyRootPasswordBeyondLoopback { bind: String },
}

/// A node reachable beyond loopback must not accept `root` without a password, unless the operator insists
/// (`allow_empty_root_password`). `bind_addrs` are the addresses the bind address resolves to. Pure.
pub fn check_root_password(
    bind: &str,
    bind_addrs: &[std::net::IpAddr],
    root_password: &str,
    allow_empty_root_password: bool,
) -> Result<(), ConfigError> {
    let beyond_loopback = bind_addrs.is_empty() || bind_addrs.iter().any(|a| !a.is_loopback());
    if beyond_loopback && root_password.is_empty() && !allow_empty_root_password {
        return Err(ConfigError::EmptyRootPasswordBeyondLoopback { bind: bind.to_string() });
    }
    Ok(())
}

/// The RPC port derived from a MySQL port, or `None` if the sum does not fit (then `--rpc-port` is required).
pub fn default_rpc_port(port: u16) -> Option<u16> {
    port.checked_add(RPC_PORT_OFFSET)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bind: &str, password: &str, allow: bool) -> Result<(), ConfigError> {
        let addrs: Vec<std::net::IpAddr> = bind.parse().into_iter().collect();
        check_root_password(bind, &addrs, password, allow)
    }

    #[test]
    fn an_empty_root_password_is_refused_beyond_loopback_only() {
        assert!(check("127.0.0.1", "", false).is_ok());
        assert!(check("127.0.0.2", "", false).is_ok(), "all of 127/8 is loopback");
        assert!(check("::1", "", false).is_ok());
        assert!(check("0.0.0.0", "", false).is_err(), "every interface");
        assert!(check("10.1.2.3", "", false).is_err());
        assert!(check("::", "", false).is_err());
        assert!(check("10.1.2.3", "secret", false).is_ok());
        assert!(check("10.1.2.3", "", true).is_ok(), "the operator insisted");
        assert!(check_root_password("db.example", &[], "", false).is_err(), "an address that resolves to nothing");
    }
}
