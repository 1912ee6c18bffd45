//! The per-database change log: what it stores, how an entry is appended inside a write transaction, read back in
//! bounded batches, applied on a copy, and truncated. It does not decide when entries may be dropped or who may
//! apply them (the term fencing of replication lives above this crate).
//!
//! Tables (created in every partition and reference file, never themselves recorded in changesets):
//! - `_canopy_log_position(term, log_index, commits)`: one row. `(term, log_index)` is the position: the index of the
//!   last entry appended or applied and the current term; `commits` counts write transactions that changed something
//!   (a write that changed no row writes nothing at all).
//! - `_canopy_log(term, log_index PRIMARY KEY, kind, payload)`: one entry per committed transaction that changed
//!   something; `kind` 0 is a changeset of row changes, 1 is DDL text (sessions do not capture schema changes).
//!   Indexes increase by exactly one, so a copy can detect a gap. Entries at or below a checkpoint may be deleted;
//!   the position row keeps counting.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::{StorageError, ffi};

/// Creates the log tables if missing (new files and files from before the log existed), atomically.
pub const LOG_DDL: &str = "BEGIN IMMEDIATE;
    CREATE TABLE IF NOT EXISTS _canopy_log_position (
        term INTEGER NOT NULL, log_index INTEGER NOT NULL, commits INTEGER NOT NULL);
    INSERT INTO _canopy_log_position SELECT 0, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM _canopy_log_position);
    CREATE TABLE IF NOT EXISTS _canopy_log (
        term INTEGER NOT NULL, log_index INTEGER PRIMARY KEY, kind INTEGER NOT NULL, payload BLOB NOT NULL);
    COMMIT;";

const KIND_CHANGESET: i64 = 0;
const KIND_DDL: i64 = 1;

/// How DDL statements of one transaction are joined into one entry. The newline before the semicolon ends a
/// trailing `--` comment, so the statements re-run exactly as they ran.
const DDL_SEPARATOR: &str = "\n;\n";

/// Entries returned by one `since` call are bounded in count as well as bytes.
pub const LOG_BATCH_ENTRIES_MAX: usize = 10_000;

pub use canopy_types::{LogPosition, Term};

/// What one committed transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogPayload {
    /// A SQLite session changeset of the transaction's row changes.
    Changeset(Vec<u8>),
    /// Schema statements, re-run as they are on a copy.
    Ddl(String),
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub term: Term,
    pub index: u64,
    pub payload: LogPayload,
}

impl LogEntry {
    pub fn position(&self) -> LogPosition {
        LogPosition { term: self.term, index: self.index }
    }

    /// Payload size, the measure the batch bound uses.
    pub fn payload_bytes(&self) -> u64 {
        match &self.payload {
            LogPayload::Changeset(bytes) => bytes.len() as u64,
            LogPayload::Ddl(text) => text.len() as u64,
        }
    }
}

/// What a write transaction changed, borrowed from the write path.
pub enum Change<'a> {
    Rows(&'a [u8]),
    Ddl(&'a [String]),
}

pub fn ddl_text(statements: &[String]) -> String {
    statements.join(DDL_SEPARATOR)
}

/// The position and the commit counter.
pub fn position(conn: &Connection) -> Result<(LogPosition, u64), StorageError> {
    let (term, index, commits) = conn
        .prepare_cached("SELECT term, log_index, commits FROM _canopy_log_position")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
    Ok((LogPosition { term: Term(term as u64), index: index as u64 }, commits as u64))
}

/// Appends `change` as the next entry (if it changed anything) and counts the commit; returns the entry (None for
/// a change of nothing). Must run inside the write transaction that made the change, which is what keeps log and
/// data in agreement.
pub fn append(conn: &Connection, change: Change<'_>) -> Result<Option<LogEntry>, StorageError> {
    // Statements here are cached: this runs once per write, on the leaf's hot path.
    let payload = match change {
        // A write that changed nothing leaves the file untouched: no log entry, no counted commit, and so no page
        // to write or sync (a DELETE matching no row costs no fsync, as in other databases).
        Change::Rows([]) | Change::Ddl([]) => return Ok(None),
        Change::Rows(changeset) => LogPayload::Changeset(changeset.to_vec()),
        Change::Ddl(statements) => LogPayload::Ddl(ddl_text(statements)),
    };
    let (kind, bytes): (i64, &[u8]) = match &payload {
        LogPayload::Changeset(changeset) => (KIND_CHANGESET, changeset),
        LogPayload::Ddl(text) => (KIND_DDL, text.as_bytes()),
    };
    let (position, _) = position(conn)?;
    let entry = LogEntry { term: position.term, index: position.index + 1, payload: LogPayload::Ddl(String::new()) };
    conn.prepare_cached("INSERT INTO _canopy_log (term, log_index, kind, payload) VALUES (?1, ?2, ?3, ?4)")?
        .execute(rusqlite::params![entry.term.0 as i64, entry.index as i64, kind, bytes])?;
    conn.prepare_cached("UPDATE _canopy_log_position SET log_index = log_index + 1, commits = commits + 1")?
        .execute([])?;
    Ok(Some(LogEntry { payload, ..entry }))
}

/// The term of the entry at `index`, if the log still holds it.
pub fn term_at(conn: &Connection, index: u64) -> Result<Option<Term>, StorageError> {
    use rusqlite::OptionalExtension;
    let term = conn
        .prepare_cached("SELECT term FROM _canopy_log WHERE log_index = ?1")?
        .query_row([index as i64], |r| r.get::<_, i64>(0))
        .optional()?;
    Ok(term.map(|t| Term(t as u64)))
}

/// A digest of an entry's payload (FNV-1a 64): what a returning copy's last entry is compared by, beside its term,
/// so a copy whose last entry has the right position but other contents is not taken for a prefix.
pub fn digest(entry: &LogEntry) -> u64 {
    let bytes: &[u8] = match &entry.payload {
        LogPayload::Changeset(bytes) => bytes,
        LogPayload::Ddl(text) => text.as_bytes(),
    };
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The entry at `index`, if the log still holds it.
pub fn entry_at(conn: &Connection, index: u64) -> Result<Option<LogEntry>, StorageError> {
    let mut stmt =
        conn.prepare_cached("SELECT term, log_index, kind, payload FROM _canopy_log WHERE log_index = ?1")?;
    let mut rows = stmt.query([index as i64])?;
    match rows.next()? {
        Some(row) => entry_from_row(row).map(Some),
        None => Ok(None),
    }
}

/// The position of the last entry the log holds (`truncate` always keeps it), or None for a log that never had one.
pub fn last_entry(conn: &Connection) -> Result<Option<LogPosition>, StorageError> {
    use rusqlite::OptionalExtension;
    let last = conn
        .prepare_cached("SELECT term, log_index FROM _canopy_log ORDER BY log_index DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .optional()?;
    Ok(last.map(|(term, index)| LogPosition { term: Term(term as u64), index: index as u64 }))
}

/// The index of the oldest entry the log holds (None when empty).
pub fn first_index(conn: &Connection) -> Result<Option<u64>, StorageError> {
    let first: Option<i64> =
        conn.prepare_cached("SELECT min(log_index) FROM _canopy_log")?.query_row([], |r| r.get(0))?;
    Ok(first.map(|i| i as u64))
}

/// Entries after `after_index`, oldest first, at most `max_bytes` of payload (but always at least one entry when one
/// exists, so a large transaction still makes progress) and at most `LOG_BATCH_ENTRIES_MAX` entries.
pub fn since(conn: &Connection, after_index: u64, max_bytes: u64) -> Result<Vec<LogEntry>, StorageError> {
    let (position, _) = position(conn)?;
    if after_index >= position.index {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT term, log_index, kind, payload FROM _canopy_log WHERE log_index > ?1 ORDER BY log_index",
    )?;
    let mut rows = stmt.query([after_index as i64])?;
    let mut out: Vec<LogEntry> = Vec::new();
    let mut bytes = 0u64;
    while let Some(row) = rows.next()? {
        let entry = entry_from_row(row)?;
        let expected = after_index + 1 + out.len() as u64;
        if entry.index != expected {
            // Only a checkpoint removes entries, and only a prefix: the caller must start from a newer snapshot.
            return Err(StorageError::LogTruncated { after_index, first_available: entry.index });
        }
        bytes += entry.payload_bytes();
        if !out.is_empty() && bytes > max_bytes {
            break;
        }
        out.push(entry);
        if out.len() >= LOG_BATCH_ENTRIES_MAX {
            break;
        }
    }
    if out.is_empty() {
        return Err(StorageError::LogTruncated { after_index, first_available: position.index + 1 });
    }
    Ok(out)
}

fn entry_from_row(row: &rusqlite::Row<'_>) -> Result<LogEntry, StorageError> {
    let term: i64 = row.get(0)?;
    let index: i64 = row.get(1)?;
    let kind: i64 = row.get(2)?;
    let bytes: Vec<u8> = row.get(3)?;
    let payload = match kind {
        KIND_CHANGESET => LogPayload::Changeset(bytes),
        KIND_DDL => LogPayload::Ddl(
            String::from_utf8(bytes)
                .map_err(|_| StorageError::Internal(format!("log entry {index}: DDL not UTF-8")))?,
        ),
        other => return Err(StorageError::Internal(format!("log entry {index}: unknown kind {other}"))),
    };
    Ok(LogEntry { term: Term(term as u64), index: index as u64, payload })
}

/// Applies `entries` in order in one transaction: entries at or below the current position are skipped (so a
/// retried batch is harmless) once their term is checked against the local entry at that index (another term
/// means the copies diverged: `Diverged`), a gap is refused, and each applied entry is recorded in the local log
/// under its own position, so this copy can later serve as a source. Returns the new position.
pub fn apply(conn: &Connection, entries: &[LogEntry]) -> Result<LogPosition, StorageError> {
    in_transaction(conn, || {
        let (mut current, _) = position(conn)?;
        // Consecutive changesets are applied together, combined (`ffi::combine_changesets`): a batch of small
        // commits then costs one set of prepared statements per table. A DDL entry applies what came before it.
        // Combining folds changes to one row (an insert then a delete is nothing), so a copy that diverged on
        // exactly such a row is not caught here; the prefix test by (term, index, payload digest) still compares
        // the logs whenever a copy returns.
        let mut changesets: Vec<&[u8]> = Vec::new();
        let mut applied: i64 = 0;
        let apply_changesets = |changesets: &mut Vec<&[u8]>| -> Result<(), StorageError> {
            match changesets.len() {
                0 => Ok(()),
                1 => ffi::apply_changeset(conn, changesets[0]),
                _ => ffi::apply_changeset(conn, &ffi::combine_changesets(changesets.iter().copied())?),
            }?;
            changesets.clear();
            Ok(())
        };
        for entry in entries {
            if entry.index <= current.index {
                // Held already (a retried batch): the same entry, or the logs forked. Payloads are compared too, so
                // a fork within one term (which fencing should make impossible) is still caught.
                if let Some(local) =
                    entry_at(conn, entry.index)?.filter(|l| l.term != entry.term || l.payload != entry.payload)
                {
                    return Err(StorageError::Diverged { index: entry.index, local: local.term, remote: entry.term });
                }
                continue;
            }
            if entry.index != current.index + 1 {
                return Err(StorageError::LogGap { expected: current.index + 1, found: entry.index });
            }
            let (kind, payload) = match &entry.payload {
                LogPayload::Changeset(changeset) => {
                    changesets.push(changeset);
                    (KIND_CHANGESET, changeset.as_slice())
                }
                LogPayload::Ddl(text) => {
                    apply_changesets(&mut changesets)?;
                    conn.execute_batch(text)?;
                    (KIND_DDL, text.as_bytes())
                }
            };
            // Cached statements: a replica runs this for every entry its master ships.
            conn.prepare_cached("INSERT INTO _canopy_log (term, log_index, kind, payload) VALUES (?1, ?2, ?3, ?4)")?
                .execute(rusqlite::params![entry.term.0 as i64, entry.index as i64, kind, payload])?;
            current = LogPosition { term: current.term.max(entry.term), index: entry.index };
            applied += 1;
        }
        apply_changesets(&mut changesets)?;
        // The position once for the batch: it is in the same transaction as every entry it counts.
        if applied > 0 {
            conn.prepare_cached("UPDATE _canopy_log_position SET term = ?1, log_index = ?2, commits = commits + ?3")?
                .execute([current.term.0 as i64, current.index as i64, applied])?;
        }
        Ok(current)
    })
}

/// Deletes the entries with index ≤ `keep_after_index`, except the last entry, which is always kept: its
/// `(term, index)` is what a returning copy is compared by. The position is unchanged.
pub fn truncate(conn: &Connection, keep_after_index: u64) -> Result<(), StorageError> {
    conn.execute(
        "DELETE FROM _canopy_log WHERE log_index <= ?1 AND log_index < (SELECT max(log_index) FROM _canopy_log)",
        [keep_after_index as i64],
    )?;
    Ok(())
}

/// Sets the term new entries are appended in; terms never go back.
pub fn set_term(conn: &Connection, term: Term) -> Result<(), StorageError> {
    let (current, _) = position(conn)?;
    if term < current.term {
        return Err(StorageError::StaleTerm { current: current.term, requested: term });
    }
    conn.execute("UPDATE _canopy_log_position SET term = ?1", [term.0 as i64])?;
    Ok(())
}

/// Runs `f` in a write transaction, committing on success and rolling back on error.
pub fn in_transaction<T>(conn: &Connection, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
    if !conn.is_autocommit() {
        return Err(StorageError::Internal("a transaction was left open on this connection".into()));
    }
    // Deferred, not IMMEDIATE: BEGIN IMMEDIATE takes the write lock of every attached database, and each
    // partition connection attaches its database's reference copy, so IMMEDIATE would serialize the writes of all
    // partitions of a database on a leaf (waiting in SQLite's sleeping busy handler). A deferred transaction locks
    // only the files it writes; each partition file has a single writing connection, so taking its write lock at
    // the first write cannot fail for another writer.
    conn.prepare_cached("BEGIN")?.execute([])?;
    match f() {
        Ok(value) => match conn.prepare_cached("COMMIT").and_then(|mut commit| commit.execute([])) {
            Ok(_) => Ok(value),
            Err(e) => {
                // A failed COMMIT (disk full, I/O error) leaves the transaction open; end it so the connection
                // stays usable and nothing half-done is kept.
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
