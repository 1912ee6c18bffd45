//! The inter-node messages: what an aggregator asks a leaf and what the leaf answers. Plain serde types; the wire
//! encoding is `frame.rs`'s business.

use canopy_sql::{ResultSet, Value};
use canopy_types::{CopyRole, DatabaseId, Durability, LogPosition, NodeId, PartitionState, Term};
use serde::{Deserialize, Serialize};

/// A partition as the sender addresses it: its ordinal and the term the metadata gives the instance there. A leaf
/// serves a request only when its copy holds exactly that term (`RemoteErrorKind::StaleTerm` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionTerm {
    pub ordinal: u32,
    pub term: Term,
}

/// The leaf a master ships its partition's log to (its sync replica's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaTarget {
    pub node: NodeId,
    pub host: String,
    pub rpc_port: u16,
    /// The database replicates asynchronously (`WITH ASYNC REPLICATION`): commits do not wait for this replica;
    /// their entries follow in log order.
    pub asynchronous: bool,
}

/// Log entries of one partition shipped by its master in `partition.term`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicateBatch {
    pub db: String,
    pub partition: PartitionTerm,
    pub entries: Vec<LogRecord>,
    /// Sent by a commit of a master that has the replica in its commit path (or the batch that registers it there),
    /// not by a catch-up: what the replica shows as `sync replica` in SHOW DATABASES EXTENDED.
    pub sync: bool,
}

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
    /// Make this node a leaf of cluster `cluster_id` under `node_id` (ADD LEAF), holding the cluster's `secret`
    /// from now on. A node outside any cluster takes it only on an unauthenticated connection and only with the
    /// `join_token` it shows to a MySQL login (`@@canopy_join_token`), which proves the sender passed ADD LEAF's
    /// login with the node's credentials.
    JoinCluster { cluster_id: String, node_id: NodeId, secret: crate::ClusterSecret, join_token: String },
    /// REMOVE LEAF: this node is no longer part of the cluster (its data stays on disk).
    LeaveCluster,
    /// Create (idempotently) the listed partition instances, each in its term, and the reference copy of `db`,
    /// running `schema` (the DDL of every existing table) in each partition and `reference_schema` in the reference
    /// copy.
    CreatePartitions {
        db: String,
        partitions: Vec<PartitionTerm>,
        schema: Vec<String>,
        reference_schema: Vec<String>,
        durability: Durability,
        /// The metadata's id of this incarnation of the database; copies of another incarnation are replaced.
        database_id: DatabaseId,
    },
    /// Remove every partition instance and the reference copy of `db` from this leaf.
    DropDatabase { db: String },
    /// Run DDL statements on the listed partitions (distributed tables) or on the reference copy.
    Ddl { db: String, target: Target, statements: Vec<String> },
    /// Run one statement on one partition or on the reference copy; `params` bind its `?NNN` placeholders
    /// (`?1` is the first; a statement may use only some of them).
    /// `statement` names the client statement it belongs to (unique per aggregator process, 0 for none) so that
    /// `Cancel` can stop it.
    Execute { db: String, target: Target, sql: String, params: Vec<Value>, statement: u64 },
    /// Stop the `Execute` requests of `statement` running on this leaf, and refuse those that arrive later (KILL
    /// QUERY, an aggregator-side time limit). Answers `Done` whether or not one was running.
    Cancel { statement: u64 },
    /// The leaf's local view of its databases (SHOW DATABASES EXTENDED).
    ListDatabases,
    /// ATTACH PARTITION: the master aggregator adopted these local instances as masters in the given terms; they
    /// take the term (a lower one than the copy's is refused) and start serving.
    AttachPartitions { db: String, partitions: Vec<PartitionTerm> },
    /// COPY PARTITION, run on the target leaf: pull a snapshot of `db:ordinal` from the source leaf, install it as a
    /// non-serving copy, and catch up from the source's change log. Answers `Position`.
    /// `term` is the source master's: the source refuses the copy when its copy is in another.
    CopyPartition { db: String, source: PartitionTerm, source_host: String, source_rpc_port: u16 },
    /// Run on the target leaf of a move: apply the source's change log until nothing is left. Answers `Position`.
    CatchUp { db: String, source: PartitionTerm, source_host: String, source_rpc_port: u16 },
    /// How far the target leaf's running COPY of `db:ordinal` is. Answers `CopyProgress` (all zero when none runs).
    CopyProgress { db: String, ordinal: u32 },
    /// Stop serving `db:ordinal` (it is being switched to another leaf); its data and log stay readable for copies.
    /// Answers `Position`: the partition's final log position, which the new master must have reached.
    FencePartition { db: String, partition: PartitionTerm },
    /// Drop one partition instance and its file.
    DropPartition { db: String, ordinal: u32 },
    /// SNAPSHOT DATABASE: checkpoint the listed partitions (WAL into the main file) and truncate their change logs
    /// up to their current position.
    Checkpoint { db: String, partitions: Vec<PartitionTerm> },
    /// Source side of a copy: take a consistent snapshot of `db:ordinal`. Answers `Snapshot`.
    SnapshotPartition { db: String, partition: PartitionTerm },
    /// Source side of a copy: `len` bytes of snapshot `id` from `offset`. Answers `Chunk`.
    SnapshotChunk { id: u64, offset: u64, len: u32 },
    /// Source side of a copy: forget snapshot `id`.
    ReleaseSnapshot { id: u64 },
    /// Source side of a catch-up: change-log entries after `after_index`, at most about `max_bytes`. Answers `Log`.
    LogSince { db: String, partition: PartitionTerm, after_index: u64, max_bytes: u64 },
    /// Source side of a reference catch-up: the reference copy's change-log entries after `after_index`, bounded as
    /// `LogSince`. Answers `Log`.
    ReferenceLogSince { db: String, after_index: u64, max_bytes: u64 },
    /// Source side of a reference copy: take a consistent snapshot of the reference copy of `db` (chunks and release
    /// as for a partition snapshot). Answers `Snapshot`.
    SnapshotReference { db: String },
    /// Run on a holder of `db`: make its reference copy equal to the one on the source leaf (the reference primary):
    /// catch up from the source's log when the local copy is a prefix of it, otherwise (missing, another incarnation
    /// than `database_id`, diverged, ahead) replace it with a snapshot first. Answers `Position`.
    SyncReference { db: String, database_id: DatabaseId, source_host: String, source_rpc_port: u16 },
    /// Master leaf to replica leaf: apply these entries of the listed partitions, each batch in its own
    /// transaction and refused unless the copy is a replica in the batch's term (a deposed master gets `StaleTerm`).
    /// One request may carry the commits of many partitions (group commit). Answers `Replicated`, one result per
    /// batch in order.
    Replicate { batches: Vec<ReplicateBatch> },
    /// Master aggregator to a replica's leaf: this copy is a replica of the master in `partition.term`; it stops
    /// serving and takes `Replicate` batches in that term only.
    BecomeReplica { db: String, partition: PartitionTerm },
    /// Master aggregator to a replica's leaf: this copy is the partition's master from `partition.term` on (a
    /// failover or a planned promotion); it serves and commits without a replica until told one.
    PromotePartition { db: String, partition: PartitionTerm },
    /// Master aggregator to a master's leaf: ship every commit of the partition to `replica` before committing
    /// (None: commit without a replica). Setting a replica first brings it up to date (the replica's log must be
    /// a prefix of this copy's, `Diverged` or `LogTruncated` otherwise) and registers it while holding the
    /// partition, so no commit is missed. Answers `Done` once the replica is in the commit path.
    SetReplica { db: String, partition: PartitionTerm, replica: Option<ReplicaTarget> },
    /// Where a copy's log ends: its last entry and its position. Answers `LogEnd`.
    LogEnd { db: String, ordinal: u32 },
    /// The leaf no longer holds an instance of `db`: remove its reference copy (kept while a partition file of `db`
    /// is still open on the leaf).
    DropReference { db: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Target {
    Partitions(Vec<PartitionTerm>),
    Reference,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Pong(NodeStatus),
    Done,
    Rows(ResultSet),
    Affected {
        rows: u64,
        last_insert_id: i64,
    },
    Databases(Vec<LocalDatabase>),
    /// A partition's change-log position after a copy or catch-up.
    Position {
        log_index: u64,
    },
    Snapshot {
        id: u64,
        bytes: u64,
        log_index: u64,
    },
    Chunk(Vec<u8>),
    /// A running copy's snapshot: bytes received so far and in all.
    CopyProgress {
        copied_bytes: u64,
        total_bytes: u64,
    },
    Log(Vec<LogRecord>),
    /// One result per `ReplicateBatch`: the replica's log index after it, or why it was refused.
    Replicated(Vec<Result<u64, RemoteError>>),
    /// The copy's last entry (position and payload digest) and its log position.
    LogEnd {
        last: Option<(LogPosition, u64)>,
        position: LogPosition,
    },
    Error(RemoteError),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub cluster_id: Option<String>,
    pub node_id: Option<NodeId>,
    /// Partition instances recovered from disk and waiting to be attached by the master aggregator (orphans among
    /// them included: only the master aggregator can tell them apart).
    pub pending: Vec<PendingPartition>,
    /// The absolute path of the node's local (Unix domain) RPC socket, if it listens on one: a caller on the same
    /// host may use it instead of TCP.
    pub local_socket: Option<String>,
}

/// A partition instance a leaf holds `pending` (not attached), with the database incarnation its file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPartition {
    pub db: String,
    pub ordinal: u32,
    pub database_id: Option<DatabaseId>,
}

/// One database as the leaf sees it: a partition instance (`ordinal` set) or a reference copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalDatabase {
    pub name: String,
    pub db: String,
    pub ordinal: Option<u32>,
    pub role: CopyRole,
    pub state: PartitionState,
    pub commits: u64,
    pub term: Term,
    pub log_index: u64,
    /// The database incarnation the copy belongs to (None for copies that predate ids).
    pub database_id: Option<DatabaseId>,
    /// The copy's user tables, lower-cased and sorted.
    pub tables: Vec<String>,
    /// The cluster the copy was created in (None for copies that predate it).
    pub cluster_id: Option<String>,
}

/// One change-log entry of a partition as it travels between leaves: position, kind (0 row changeset, 1 DDL text)
/// and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub term: Term,
    pub index: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// An error raised on the remote node, kept as a kind the caller can act on plus the message. Errors of the SQL
/// engine carry SQLite's extended result code, so the caller maps them by code, not by message text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    pub message: String,
    /// SQLite's extended result code (e.g. 2067 for a UNIQUE constraint) when the engine raised the error.
    pub sqlite_code: Option<i32>,
}

impl RemoteError {
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> RemoteError {
        RemoteError { kind, message: message.into(), sqlite_code: None }
    }
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
    /// The statement's result exceeded the rows or bytes one statement may return.
    ResultTooLarge,
    /// The statement ran past its time limit and was interrupted.
    Timeout,
    /// The request named a term other than the one the leaf's copy holds: the sender's metadata is stale, or the
    /// copy was deposed.
    StaleTerm {
        expected: Term,
        got: Term,
    },
    /// The copy asked to run a statement is a replica receiving its master's log, not the master.
    NotMaster,
    /// The statement was cancelled by its sender (`Request::Cancel`).
    Cancelled,
    /// The change-log entries asked for were already truncated from the source's log.
    LogTruncated {
        first_available: u64,
    },
    /// A replica's log is not a prefix of its master's: it must be copied afresh.
    Diverged,
    /// The copy asked to apply replicated entries is not a replica (yet): e.g. it restarted and waits, pending, for
    /// the master aggregator.
    NotReplica,
    /// A commit could not be replicated (its master was deposed, or its replica refused it); it was not committed.
    Replication,
    /// The replica's log ends before the entries sent: it needs the entries from `expected` on first.
    LogGap {
        expected: u64,
    },
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A convenience for parameter-free calls that carry values (kept for symmetry with MySQL's text protocol).
pub type Row = Vec<Value>;
