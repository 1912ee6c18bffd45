//! Small durable files of a node: its identity (`node.json`) and, on the master aggregator, the cluster metadata
//! (`cluster.json`). Written atomically (temp file, fsync, rename, fsync of the directory) so a crash leaves either
//! the old or the new version, never a torn one. The cluster secret (`cluster.secret`, 32 raw bytes) is written the
//! same way. Every file here is created mode 0600: cluster.json holds the leaves' passwords.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRole {
    /// Not yet part of a cluster.
    Unconfigured,
    MasterAggregator,
    Leaf,
}

/// What a node knows about itself across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub role: NodeRole,
    pub cluster_id: Option<String>,
    pub node_id: Option<canopy_types::NodeId>,
}

impl Identity {
    pub fn unconfigured() -> Identity {
        Identity { role: NodeRole::Unconfigured, cluster_id: None, node_id: None }
    }
}

pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join("node.json")
}

pub fn meta_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.json")
}

pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.secret")
}

/// The cluster secret stored in `path`, if there is one.
pub fn load_secret(path: &Path) -> Result<Option<canopy_rpc::ClusterSecret>> {
    match std::fs::read(path) {
        Ok(bytes) => canopy_rpc::ClusterSecret::from_bytes(&bytes)
            .map(Some)
            .ok_or_else(|| Error::Internal(format!("{} is corrupt: not a cluster secret", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Internal(format!("cannot read {}: {e}", path.display()))),
    }
}

pub fn store_secret(path: &Path, secret: &canopy_rpc::ClusterSecret) -> Result<()> {
    write_atomically(path, secret.as_bytes())?;
    sync_parent(path)
}

/// Removes the cluster secret (the node left its cluster).
pub fn remove_secret(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Internal(format!("cannot remove {}: {e}", path.display()))),
    }
}

pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Internal(format!("{} is corrupt: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Internal(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Writes `value` to `path` durably and atomically: `replace`, then `sync_parent`.
pub fn store<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    replace(path, value)?;
    sync_parent(path)
}

/// Replaces `path` with `value` atomically (temp file mode 0600, fsync, rename). Once this returns, a restart reads
/// the new version, unless a power loss undoes the rename before the directory is synced (`sync_parent`).
pub fn replace<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomically(path, &bytes)
}

/// Replaces `path` by `bytes` (temp file mode 0600, fsync, rename); the caller syncs the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| Error::Internal(format!("cannot write {}: {e}", path.display()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Fsyncs the directory holding `path`, which makes a rename into it durable.
pub fn sync_parent(path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else { return Ok(()) };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Internal(format!("cannot sync directory {}: {e}", dir.display())))
}

/// The master aggregator's cluster secret; a cluster bootstrapped before secrets existed gets one now (its leaves
/// then need re-adding, since they cannot hold it).
pub fn master_secret(data_dir: &std::path::Path) -> Result<canopy_rpc::ClusterSecret> {
    let path = secret_path(data_dir);
    if let Some(secret) = load_secret(&path)? {
        return Ok(secret);
    }
    tracing::warn!("no cluster secret in {}: creating one; leaves added before must be re-added", path.display());
    let secret = canopy_rpc::ClusterSecret::generate();
    store_secret(&path, &secret)?;
    Ok(secret)
}
