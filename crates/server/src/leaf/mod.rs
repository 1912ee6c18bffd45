//! The leaf: the RPC handler that runs statements on local partitions and reference copies, and the receiving side
//! of partition copies and reference catch-ups. It never imports `master`, `front` or `query`: a leaf acts only on
//! what a request carries and on its own store.

pub mod copy;
pub mod handler;
pub mod reference_copy;
pub mod replication;
pub mod running;
pub mod source;

use std::sync::Arc;

use canopy_rpc::{LogRecord, RemoteError, RemoteErrorKind};
use canopy_storage::{LeafStore, LogEntry, LogPayload, PartitionState, StorageError};

/// A storage error as it crosses RPC: a kind the caller acts on, the message, SQLite's code.
pub fn remote_error(e: &StorageError) -> RemoteError {
    let kind = match e {
        StorageError::StaleTerm { current, requested } => {
            RemoteErrorKind::StaleTerm { expected: *current, got: *requested }
        }
        StorageError::LogTruncated { first_available, .. } => {
            RemoteErrorKind::LogTruncated { first_available: *first_available }
        }
        StorageError::Diverged { .. } | StorageError::HeldUnapplied(_) => RemoteErrorKind::Diverged,
        StorageError::LogGap { expected, .. } => RemoteErrorKind::LogGap { expected: *expected },
        StorageError::Replication(_) => RemoteErrorKind::Replication,
        StorageError::NotReplica { .. } => RemoteErrorKind::NotReplica,
        StorageError::NotOnline { state: PartitionState::Replica, .. } => RemoteErrorKind::NotMaster,
        StorageError::NoSuchPartition { .. } | StorageError::NoSuchReference(_) | StorageError::NotOnline { .. } => {
            RemoteErrorKind::NoSuchPartition
        }
        _ if e.is_constraint() => RemoteErrorKind::Constraint,
        StorageError::ResultTooLarge { .. } => RemoteErrorKind::ResultTooLarge,
        StorageError::QueryTimeout => RemoteErrorKind::Timeout,
        StorageError::Cancelled => RemoteErrorKind::Cancelled,
        StorageError::Sqlite(_) | StorageError::BadName(_) => RemoteErrorKind::Sql,
        _ => RemoteErrorKind::Internal,
    };
    RemoteError { kind, message: e.to_string(), sqlite_code: e.sqlite_code() }
}

/// Runs blocking storage work off the async threads.
pub async fn blocking<T: Send + 'static>(
    store: &Arc<LeafStore>,
    f: impl FnOnce(&LeafStore) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap_or_else(|e| Err(StorageError::Internal(format!("storage task failed: {e}"))))
}

/// Snapshot chunks and log batches travel in pieces of at most this size.
pub const CHUNK_BYTES: u32 = 4 << 20;

pub fn to_record(entry: LogEntry) -> LogRecord {
    let (kind, payload) = match entry.payload {
        LogPayload::Changeset(bytes) => (0, bytes),
        LogPayload::Ddl(text) => (1, text.into_bytes()),
    };
    LogRecord { term: entry.term, index: entry.index, kind, payload }
}

pub fn from_record(record: LogRecord) -> Result<LogEntry, String> {
    let payload = match record.kind {
        0 => LogPayload::Changeset(record.payload),
        1 => LogPayload::Ddl(String::from_utf8(record.payload).map_err(|_| "DDL log entry is not UTF-8".to_string())?),
        k => return Err(format!("unknown log entry kind {k}")),
    };
    Ok(LogEntry { term: record.term, index: record.index, payload })
}
