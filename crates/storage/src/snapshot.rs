//! Consistent copies of a partition file and their installation elsewhere; the file side of an online partition
//! move. It does not know who asked for a copy or how chunks travel (RPC frames of at most
//! [`SNAPSHOT_CHUNK_BYTES_MAX`]).
//!
//! A snapshot is a file under `<leaf>/snapshots/`, not bytes in memory: a partition can be far larger than a
//! leaf's memory, and a file lets the sender serve chunks at any offset (a retried chunk is just read again) while
//! holding only one chunk in memory. The copy is made with SQLite's online backup API in a single step from its own
//! read-only connection, so it is one read transaction: consistent, and writers on the partition continue (WAL). Its
//! log position is read from the copy itself, so position and contents cannot disagree. Installing writes the
//! received bytes to a temporary name, checks them, and only then renames the file into place.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::StorageError;
use crate::log::{self, LogPosition};

/// The largest chunk one `read_snapshot_chunk` call returns: a chunk must fit one RPC frame.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u32 = 4 << 20;

/// How often a backup that finds the source busy is retried, and how long it waits between tries.
const BACKUP_BUSY_RETRIES_MAX: u32 = 1_000;
const BACKUP_BUSY_WAIT: Duration = Duration::from_millis(10);

/// A consistent copy of one partition, kept on the leaf that made it until it is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    /// Names the copy on the leaf that made it (for `read_snapshot_chunk` / `release_snapshot`).
    pub id: u64,
    pub db: String,
    pub ordinal: u32,
    /// The log position the copy contains: catch up with the entries after `position.index`.
    pub position: LogPosition,
    pub size_bytes: u64,
}

/// Copies the live database file at `source` into the new file `target` and returns the position in the copy.
pub fn copy_live(source: &Path, target: &Path) -> Result<LogPosition, StorageError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let from = Connection::open_with_flags(source, flags)?;
    let mut to = Connection::open(target)?;
    {
        let backup = Backup::new(&from, &mut to)?;
        let mut busy_retries = 0;
        // One step of all pages (-1) is one read transaction on the source: a consistent copy however many writes
        // commit meanwhile. Stepping page by page would restart on every write from another connection.
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy, Locked, and whatever later rusqlite versions add: wait and retry, boundedly.
                _ => {
                    busy_retries += 1;
                    if busy_retries > BACKUP_BUSY_RETRIES_MAX {
                        return Err(StorageError::Internal(format!(
                            "snapshot of {}: source stayed busy",
                            source.display()
                        )));
                    }
                    std::thread::sleep(BACKUP_BUSY_WAIT);
                }
            }
        }
    }
    let (position, _) = log::position(&to)?;
    Ok(position)
}

/// Up to `len` (at most `SNAPSHOT_CHUNK_BYTES_MAX`) bytes of `path` from `offset`; fewer at the end, none past it.
pub fn read_chunk(path: &Path, offset: u64, len: u32) -> Result<Vec<u8>, StorageError> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut chunk = Vec::new();
    file.take(u64::from(len.min(SNAPSHOT_CHUNK_BYTES_MAX))).read_to_end(&mut chunk)?;
    Ok(chunk)
}

/// Writes the chunks, in order and as they come (each is dropped once written, so only one is held at a time), to
/// the new file `path` and syncs it. The first failed chunk stops the write with its error. Returns the number of
/// bytes written.
pub fn write_chunks<I, C>(path: &Path, chunks: I) -> Result<u64, StorageError>
where
    I: IntoIterator<Item = Result<C, StorageError>>,
    C: AsRef<[u8]>,
{
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    let mut written = 0u64;
    for chunk in chunks {
        let chunk = chunk?;
        let chunk = chunk.as_ref();
        file.write_all(chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_all()?;
    Ok(written)
}

/// Checks that `path` is a whole, sound copy of partition `db`:`ordinal` and returns its position: the SQLite
/// header matches the file length (catches truncation), `PRAGMA quick_check` passes, and the identity row names
/// this partition.
pub fn verify(path: &Path, db: &str, ordinal: u32) -> Result<LogPosition, StorageError> {
    let conn = open_sound(path)?;
    let bad = |e: rusqlite::Error| StorageError::BadSnapshot(e.to_string());
    let identity: (String, u32) =
        conn.query_row("SELECT db, ordinal FROM _canopy_partition", [], |r| Ok((r.get(0)?, r.get(1)?))).map_err(bad)?;
    if identity != (db.to_string(), ordinal) {
        return Err(StorageError::BadSnapshot(format!(
            "the copy is partition {}:{}, not {db}:{ordinal}",
            identity.0, identity.1
        )));
    }
    let (position, _) = log::position(&conn).map_err(|e| StorageError::BadSnapshot(e.to_string()))?;
    Ok(position)
}

/// Checks that `path` is a whole, sound copy of a reference copy of database incarnation `database_id` (header,
/// `quick_check`, the id recorded in `_canopy_settings`) and returns its position.
pub fn verify_reference(path: &Path, database_id: canopy_types::DatabaseId) -> Result<LogPosition, StorageError> {
    let conn = open_sound(path)?;
    let found = crate::engine::database_id(&conn).map_err(|e| StorageError::BadSnapshot(e.to_string()))?;
    if found != Some(database_id) {
        return Err(StorageError::BadSnapshot(format!(
            "the copy belongs to database incarnation {found:?}, not {database_id}"
        )));
    }
    let (position, _) = log::position(&conn).map_err(|e| StorageError::BadSnapshot(e.to_string()))?;
    Ok(position)
}

/// Opens `path` after checking that its header accounts for its length and that `PRAGMA quick_check` passes.
fn open_sound(path: &Path) -> Result<Connection, StorageError> {
    check_header(path)?;
    let bad = |e: rusqlite::Error| StorageError::BadSnapshot(e.to_string());
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(bad)?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(bad)?;
    if problems != ["ok"] {
        return Err(StorageError::BadSnapshot(format!("quick_check: {}", problems.join("; "))));
    }
    Ok(conn)
}

/// Replaces the whole contents of the live database behind `target` with the file at `source`, in one write
/// transaction of `target` (SQLite's backup API writing through `target`'s pager). Other connections that attach the
/// same file keep working and see either the old or the new contents, never a mix, so a reference copy can be
/// replaced under the partitions that join against it without detaching it from them.
pub fn replace_contents(source: &Path, target: &mut Connection) -> Result<(), StorageError> {
    // Read-write: `source` is a private file that may be in WAL mode without its -shm file, which a read-only
    // connection could not create.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let from = Connection::open_with_flags(source, flags)?;
    let backup = Backup::new(&from, target)?;
    let mut busy_retries = 0;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            _ => {
                busy_retries += 1;
                if busy_retries > BACKUP_BUSY_RETRIES_MAX {
                    return Err(StorageError::Internal("replacing a reference copy: it stayed busy".into()));
                }
                std::thread::sleep(BACKUP_BUSY_WAIT);
            }
        }
    }
}

/// The database header's page size and page count must account for the file's length exactly.
fn check_header(path: &Path) -> Result<(), StorageError> {
    let len = std::fs::metadata(path)?.len();
    let mut header = [0u8; 100];
    let mut file = std::fs::File::open(path)?;
    if len < header.len() as u64 {
        return Err(StorageError::BadSnapshot(format!("{len} bytes is too short for a SQLite database")));
    }
    file.read_exact(&mut header)?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(StorageError::BadSnapshot("not a SQLite database".into()));
    }
    let be32 = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let pages = u64::from(be32(28));
    // The in-header page count is valid when the change counter matches "version valid for" (always the case for
    // files written by SQLite 3.7 and later, which includes every backup copy).
    let count_valid = be32(24) == be32(92);
    if !count_valid || page_size < 512 || pages * page_size != len {
        return Err(StorageError::BadSnapshot(format!(
            "header says {pages} pages of {page_size} bytes, file has {len} bytes (truncated or damaged)"
        )));
    }
    Ok(())
}
