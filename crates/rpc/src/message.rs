//! The inter-node messages: what an aggregator asks a leaf and what the leaf answers. Plain serde types; the wire
//! encoding is `frame.rs`'s business.

use canopy_sql::{ResultSet, Value};
use serde::{Deserialize, Serialize};

/// Identifies one partition instance on a leaf by database name and ordinal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionRef {
    pub db: String,
    pub ordinal: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Heartbeat; also tells the aggregator who the node thinks it is.
    Ping,
    /// Make this node a leaf of cluster `cluster_id` under `node_id` (ADD LEAF).
    JoinCluster { cluster_id: String, node_id: u32 },
    /// Create (idempotently) the listed partition instances and the reference copy of `db`, running `schema` (the
    /// DDL of every existing table) in each partition and `reference_schema` in the reference copy.
    CreatePartitions { db: String, ordinals: Vec<u32>, schema: Vec<String>, reference_schema: Vec<String> },
    /// Remove every partition instance and the reference copy of `db` from this leaf.
    DropDatabase { db: String },
    /// Run DDL statements on the listed partitions (distributed tables) or on the reference copy.
    Ddl { db: String, target: Target, statements: Vec<String> },
    /// Run one statement on one partition or on the reference copy.
    Execute { db: String, target: Target, sql: String },
    /// The leaf's local view of its databases (SHOW DATABASES EXTENDED).
    ListDatabases,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Target {
    Partitions(Vec<u32>),
    Reference,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Pong(NodeStatus),
    Done,
    Rows(ResultSet),
    Affected { rows: u64, last_insert_id: i64 },
    Databases(Vec<LocalDatabase>),
    Error(RemoteError),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub cluster_id: Option<String>,
    pub node_id: Option<u32>,
}

/// One database as the leaf sees it: a partition instance (`ordinal` set) or a reference copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalDatabase {
    pub name: String,
    pub db: String,
    pub ordinal: Option<u32>,
    pub role: String,
    pub state: String,
    pub commits: u64,
    pub term: u64,
    pub log_index: u64,
}

/// An error raised on the remote node, kept as a kind the caller can act on plus the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteErrorKind {
    /// The SQL engine rejected the statement (syntax, constraint, type...). The message is SQLite's.
    Sql,
    /// A constraint (UNIQUE / PRIMARY KEY / NOT NULL) failed.
    Constraint,
    /// The partition or database is not on this leaf.
    NoSuchPartition,
    /// This node belongs to another cluster.
    OtherCluster,
    /// The request does not fit the node's role or state.
    BadRequest,
    Internal,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A convenience for parameter-free calls that carry values (kept for symmetry with MySQL's text protocol).
pub type Row = Vec<Value>;
