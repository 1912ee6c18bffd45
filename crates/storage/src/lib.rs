//! Partition instances and reference copies on a leaf, each one SQLite file. This crate opens, creates, drops and
//! lists them and runs statements on them; it knows nothing of the network, the cluster metadata or MySQL.
//!
//! Layout under the leaf's data directory:
//! - `partitions/<db>_<ordinal>.sqlite`: one partition instance (the file name shows `db_k` as SingleStore's
//!   partition databases do); its identity (database, ordinal) is also stored inside, in `_canopy_partition`, so a
//!   database name that itself ends in `_<digits>` cannot be misread.
//! - `reference/<db>.sqlite`: the leaf's copy of the database's reference tables, attached to every partition
//!   connection of that database as schema `canopy_ref` so queries see reference tables by their plain names.
//! - `snapshots/<id>.sqlite`: consistent copies of partitions being sent to another leaf (removed at `open`).
//! - `partitions/<db>_<ordinal>.sqlite.installing`: a copy being received; renamed into place only once verified
//!   (removed at `open`).
//! - `partitions/<db>_<ordinal>.sqlite-held`: the journal of a replica copy's held entries, acknowledged and not
//!   yet applied (`held`); applied and emptied at `open`.
//!
//! Every file has a change log (`log`): each committed write transaction appends its row changes (a changeset from
//! SQLite's session extension, `ffi`) or its DDL text in the same transaction. A partition moves to another leaf as
//! a snapshot (`snapshot`) plus the log entries after the snapshot's position, applied on the copy (`apply_log`).
//! Reference copies are kept equal the same way: another leaf's copy applies the primary copy's entries
//! (`apply_reference_log`), or takes its whole contents from a snapshot (`install_reference`).

pub mod engine;
mod ffi;
mod flush;
mod held;
pub mod log;
mod snapshot;
mod store;

pub use engine::{Durability, Outcome};
pub use flush::FlushCounts;
pub use log::{LogEntry, LogPayload, LogPosition};
pub use snapshot::{PartitionSnapshot, SNAPSHOT_CHUNK_BYTES_MAX};
pub use store::{LeafStore, LocalDb, PartitionState, PendingPartition, Replicator, SNAPSHOTS_MAX, check_name};

use thiserror::Error;

/// `path` with `suffix` added to its file name (`x.sqlite` and `-wal` give `x.sqlite-wal`).
pub(crate) fn suffixed(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("partition {db}:{ordinal} is not on this leaf")]
    NoSuchPartition { db: String, ordinal: u32 },
    #[error("database '{0}' has no reference copy on this leaf")]
    NoSuchReference(String),
    #[error("invalid database name '{0}'")]
    BadName(String),
    /// `inspect_*` was given a statement that writes.
    #[error("only statements that read are allowed here")]
    NotReadOnly,
    #[error("Result too large: a statement may return at most {rows_max} rows and {bytes_max} bytes")]
    ResultTooLarge { rows_max: usize, bytes_max: usize },
    #[error("Query execution was interrupted, maximum statement execution time exceeded")]
    QueryTimeout,
    /// The statement was cancelled by its sender (KILL QUERY, or its own time limit on the aggregator).
    #[error("Query execution was interrupted")]
    Cancelled,
    #[error("partition {db}:{ordinal} is {} and does not serve queries", state.as_str())]
    NotOnline { db: String, ordinal: u32, state: PartitionState },
    #[error("partition {db}:{ordinal} is {} and does not take log entries (only a replica does)", state.as_str())]
    NotReplica { db: String, ordinal: u32, state: PartitionState },
    #[error("partition {db}:{ordinal} is already on this leaf")]
    PartitionExists { db: String, ordinal: u32 },
    #[error("log gap: expected entry {expected}, got {found}")]
    LogGap { expected: u64, found: u64 },
    #[error("log entries after {after_index} are no longer kept (first kept: {first_available}); take a new snapshot")]
    LogTruncated { after_index: u64, first_available: u64 },
    /// A copy holds another term than its source at the same log index: the two logs forked.
    #[error("the copy diverged from its master at log entry {index} (term {local} here, {remote} on the master)")]
    Diverged { index: u64, local: canopy_types::Term, remote: canopy_types::Term },
    /// A replicated commit could not reach its sync replica and the master lost its term meanwhile.
    #[error("{0}")]
    Replication(String),
    #[error("changeset conflict on a copy: {0}")]
    ApplyConflict(String),
    /// A replica copy acknowledged log entries it cannot apply (it diverged, or its disk failed): it must be copied
    /// afresh, and serves nothing until then.
    #[error("{0}")]
    HeldUnapplied(String),
    /// The copy's schema cannot take a change (SQLite would skip it silently): the copy diverged.
    #[error("changeset for table '{table}' does not fit the copy's schema: {reason}")]
    SchemaMismatch { table: String, reason: String },
    /// A request named another term than the copy's: older (the sender's metadata is stale, or it is a deposed
    /// master's) or, for a statement, any other.
    #[error("term {requested} refused: the copy is in term {current}")]
    StaleTerm { current: canopy_types::Term, requested: canopy_types::Term },
    #[error("bad snapshot: {0}")]
    BadSnapshot(String),
    #[error("no snapshot {0} on this leaf")]
    NoSuchSnapshot(u64),
    #[error("too many snapshots kept at once on this leaf")]
    TooManySnapshots,
    /// The chunks of a copy being installed stopped coming (the source failed or went away).
    #[error("the copy's source failed: {0}")]
    ChunkSource(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl StorageError {
    /// True when SQLite rejected the statement for a constraint (UNIQUE, PRIMARY KEY, NOT NULL, CHECK).
    /// SQLite's extended result code, when SQLite raised the error (e.g. 2067, a UNIQUE constraint).
    pub fn sqlite_code(&self) -> Option<i32> {
        match self {
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.extended_code),
            _ => None,
        }
    }

    pub fn is_constraint(&self) -> bool {
        matches!(self, StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation)
    }
}
