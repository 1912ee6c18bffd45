//! The states and modes of data on a leaf, as the metadata, the leaf's store and the RPC messages name them.

use serde::{Deserialize, Serialize};

/// When a commit is acknowledged: after it is synced to disk (`WITH SYNC DURABILITY`, the default) or once it is
/// in the operating system's hands (`WITH ASYNC DURABILITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Durability {
    Sync,
    Async,
}

/// When a commit on a master partition is acknowledged in redundancy 2: after its replica holds the log entry
/// (`WITH SYNC REPLICATION`, the default) or without waiting for it (`WITH ASYNC REPLICATION`: the entry follows
/// a moment later, and a failover may lose the newest acknowledged writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Replication {
    #[default]
    Sync,
    Async,
}

impl Replication {
    /// The word SHOW CREATE DATABASE and the views print.
    pub fn as_str(self) -> &'static str {
        match self {
            Replication::Sync => "sync",
            Replication::Async => "async",
        }
    }
}

impl Durability {
    /// The word SHOW CREATE DATABASE and the views print.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Async => "async",
        }
    }
}

/// Whether one copy on a leaf serves. A leaf's own view: the metadata says which copy should be master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PartitionState {
    /// Serving reads and writes.
    Online,
    /// Found on disk at startup and not yet attached by the master aggregator: serves nothing.
    Pending,
    /// A copy receiving log entries: serves nothing until switched to `Online`.
    Replica,
}

impl PartitionState {
    /// The word SHOW DATABASES EXTENDED shows.
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionState::Online => "online",
            PartitionState::Pending => "pending",
            PartitionState::Replica => "replicating",
        }
    }
}

/// What one copy on a leaf is, as SHOW DATABASES EXTENDED names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CopyRole {
    /// A partition instance that serves (or will serve once attached) as its partition's master.
    Master,
    /// A partition instance receiving its master's log.
    Replica,
    /// The database's reference copy on this leaf.
    Reference,
}

impl CopyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyRole::Master => "master",
            CopyRole::Replica => "replica",
            CopyRole::Reference => "reference",
        }
    }
}
