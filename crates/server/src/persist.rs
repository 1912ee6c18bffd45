//! Small durable files of a node: its identity (`node.json`) and, on the master aggregator, the cluster metadata
//! (`cluster.json`). Written atomically (temp file, fsync, rename, fsync of the directory) so a crash leaves either
//! the old or the new version, never a torn one.

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
    pub node_id: Option<u32>,
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

/// Replaces `path` with `value` atomically (temp file, fsync, rename). Once this returns, a restart reads the new
/// version, unless a power loss undoes the rename before the directory is synced (`sync_parent`).
pub fn replace<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Internal(format!("cannot write {}: {e}", path.display()));
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
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
