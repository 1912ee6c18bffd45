//! Partition instances and reference copies on a leaf, each one SQLite file. This crate opens, creates, drops and
//! lists them and runs statements on them; it knows nothing of the network, the cluster metadata or MySQL.
//!
//! Layout under the leaf's data directory:
//! - `partitions/<db>_<ordinal>.sqlite`: one partition instance (the file name shows `db_k` as SingleStore's
//!   partition databases do); its identity (database, ordinal) is also stored inside, in `_canopy_partition`, so a
//!   database name that itself ends in `_<digits>` cannot be misread.
//! - `reference/<db>.sqlite`: the leaf's copy of the database's reference tables, attached to every partition
//!   connection of that database as schema `canopy_ref` so queries see reference tables by their plain names.

pub mod engine;
mod store;

pub use engine::Outcome;
pub use store::{LeafStore, LocalDb, check_name};

use thiserror::Error;

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
    #[error("result has too many rows")]
    TooManyRows,
    #[error("internal: {0}")]
    Internal(String),
}

impl StorageError {
    /// True when SQLite rejected the statement for a constraint (UNIQUE, PRIMARY KEY, NOT NULL, CHECK).
    pub fn is_constraint(&self) -> bool {
        matches!(self, StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation)
    }
}
