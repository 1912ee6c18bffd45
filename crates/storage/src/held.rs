//! A replica's deferred apply. A replica acknowledges its master's entries once it holds them, in order, in this
//! process (`Copy::hold`), and applies them a little later, many at a time, in one transaction per partition with
//! their changesets combined (`log::apply`): a commit arrives alone, and applying it alone costs a transaction and a
//! set of prepared statements for a few rows (see `examples/replica_apply.rs`: 73 µs an entry one at a time,
//! 5 µs in batches of 64).
//!
//! Held entries are applied before anything else uses the copy: every lock of a copy's connection (`lock_conn`)
//! applies them first, so a promotion, a log read (a returning copy's prefix test, a catch-up it serves), a
//! snapshot or a checkpoint sees every entry the copy acknowledged. Otherwise the [`Applier`] applies them
//! `APPLY_DELAY` after the first of them arrived, and a replicate request applies them at once when they reach
//! `HELD_ENTRIES_MAX` or `HELD_BYTES_MAX`.
//!
//! What an acknowledgement promises is unchanged: the entry survives a kill of the replica's process. Each
//! accepted batch is appended to the copy's journal, `<file>-held`, with one `write` (no fsync: the operating
//! system has it, which is what the copy's WAL gave before, `synchronous=NORMAL`), and the journal is emptied once
//! its entries are applied. A leaf that restarts applies each copy's journal before the copy is used
//! ([`partition`]), so a replica that restarted between two heartbeats, unnoticed, still holds everything it
//! acknowledged when it is promoted.
//!
//! An apply that fails (a conflict: the copy diverged; an I/O error) keeps the entries held and fails every later
//! use of the copy, promotion included, and every later replicate request, with `HeldUnapplied` (answered as
//! diverged: the copy must be copied afresh): a copy missing entries it acknowledged must never serve, nor pretend
//! to be in sync. Only the leaf's listing shows it, as its file stands ([`lock_for_listing`]). Dropping or
//! replacing the copy discards what it held. Entries are held only once accepted: when the held ones must be
//! applied first (the limits), a failure refuses the new ones, which the master then rolls back.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StorageError;
use crate::log::{self, LogEntry, LogPayload, LogPosition};

/// How long an acknowledged entry may wait to be applied: long enough that a busy partition's commits share a
/// transaction, and that the B-tree pages they change are written once for many of them (a sysbench insert run in
/// redundancy 2: the apply thread's CPU per insert 31 µs with 100 ms, 7 µs with 1 s); short enough that a
/// promotion's final apply stays small (at most `HELD_ENTRIES_MAX` entries: 20-30 ms at the rates
/// `examples/replica_apply.rs` measures for batches).
pub const APPLY_DELAY: Duration = Duration::from_millis(1000);
/// Held entries (and payload bytes) past which a replicate request applies them at once.
pub const HELD_ENTRIES_MAX: usize = 4096;
pub const HELD_BYTES_MAX: usize = 4 << 20;

/// One SQLite file's connection, with the log entries its replica role acknowledged and has not applied yet
/// (always none on a master or a reference copy).
pub struct Copy {
    conn: Connection,
    held: Vec<LogEntry>,
    held_bytes: usize,
    /// The copy's position once the held entries are applied (None when nothing is held).
    held_end: Option<LogPosition>,
    /// Why the last apply of the held entries failed; they stay held.
    failed: Option<String>,
    /// Where a partition copy's held entries are written as well (None for a reference copy, which holds nothing).
    journal: Option<Journal>,
}

pub type Shared = Arc<Mutex<Copy>>;

/// A reference copy's connection: it never holds entries.
pub fn shared(conn: Connection) -> Shared {
    Arc::new(Mutex::new(Copy { conn, held: Vec::new(), held_bytes: 0, held_end: None, failed: None, journal: None }))
}

/// A partition copy's connection, `file` its SQLite file, with its journal beside it (`<file>-held`). What the
/// journal holds (a replica's acknowledged entries when its process stopped; nothing for a new copy, whose old
/// files were removed) is applied first: entries the copy has already are checked and skipped, as `log::apply`
/// does. Entries that cannot be applied (the copy diverged, the disk failed) stay held and the copy fails every
/// use. A frame cut short at the end (the journal is written without fsync: a power loss can cut it) ends the
/// journal.
pub fn partition(conn: Connection, file: &Path) -> Result<Shared, StorageError> {
    let mut journal = std::fs::OpenOptions::new().create(true).read(true).append(true).open(journal_path(file))?;
    let mut bytes = Vec::new();
    journal.read_to_end(&mut bytes)?;
    let (held, valid) = decode_frames(&bytes);
    journal.set_len(valid)?;
    let held_bytes = held.iter().map(|e| e.payload_bytes() as usize).sum();
    let held_end = held.last().map(LogEntry::position);
    let mut copy =
        Copy { conn, held, held_bytes, held_end, failed: None, journal: Some(Journal { file: journal, len: valid }) };
    // A failure is logged and kept by the copy.
    let _ = copy.apply_held();
    Ok(Arc::new(Mutex::new(copy)))
}

/// The journal of a copy's held entries: frames appended with one `write` per accepted batch, emptied after an
/// apply. A frame is `term u64, index u64, kind u8 (0 changeset, 1 DDL), length u32, payload`, little-endian.
struct Journal {
    file: std::fs::File,
    /// Bytes written since it was last emptied: a failed write is cut back to this.
    len: u64,
}

impl Journal {
    fn append(&mut self, entries: &[LogEntry]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut frames = Vec::with_capacity(entries.iter().map(|e| 21 + e.payload_bytes() as usize).sum());
        for entry in entries {
            let (kind, payload) = match &entry.payload {
                LogPayload::Changeset(bytes) => (0u8, bytes.as_slice()),
                LogPayload::Ddl(text) => (1u8, text.as_bytes()),
            };
            let length = u32::try_from(payload.len())
                .map_err(|_| StorageError::Internal(format!("log entry {} is too large to hold", entry.index)))?;
            frames.extend_from_slice(&entry.term.0.to_le_bytes());
            frames.extend_from_slice(&entry.index.to_le_bytes());
            frames.push(kind);
            frames.extend_from_slice(&length.to_le_bytes());
            frames.extend_from_slice(payload);
        }
        if let Err(e) = self.file.write_all(&frames) {
            // Nothing half-written may stay: a later frame after it would be unreadable.
            let _ = self.file.set_len(self.len);
            return Err(e.into());
        }
        self.len += frames.len() as u64;
        Ok(())
    }

    fn clear(&mut self) -> Result<(), StorageError> {
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }
}

/// The journal of held entries next to the SQLite file at `path`.
fn journal_path(path: &Path) -> PathBuf {
    crate::suffixed(path, JOURNAL_SUFFIX)
}

/// What a partition file's journal adds to its name (the store removes it with the file).
pub const JOURNAL_SUFFIX: &str = "-held";

/// The entries of a journal's bytes, and how many bytes their frames take.
fn decode_frames(all: &[u8]) -> (Vec<LogEntry>, u64) {
    let mut bytes = all;
    let mut entries = Vec::new();
    while bytes.len() >= 21 {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let (term, index, kind) = (u64_at(0), u64_at(8), bytes[16]);
        let length = u32::from_le_bytes(bytes[17..21].try_into().expect("4 bytes")) as usize;
        let Some(payload) = bytes.get(21..21 + length) else { break };
        let payload = match kind {
            0 => LogPayload::Changeset(payload.to_vec()),
            1 => match String::from_utf8(payload.to_vec()) {
                Ok(text) => LogPayload::Ddl(text),
                Err(_) => break,
            },
            _ => break,
        };
        entries.push(LogEntry { term: canopy_types::Term(term), index, payload });
        bytes = &bytes[21 + length..];
    }
    (entries, (all.len() - bytes.len()) as u64)
}

/// A locked copy whose held entries are applied: its connection as the copy stands.
pub struct CopyGuard<'a>(MutexGuard<'a, Copy>);

impl std::ops::Deref for CopyGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl std::ops::DerefMut for CopyGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.conn
    }
}

fn lock_raw(copy: &Shared) -> Result<MutexGuard<'_, Copy>, StorageError> {
    copy.lock().map_err(|_| StorageError::Internal("database connection lock poisoned".into()))
}

/// Locks a copy's connection as it stands for a listing: its held entries applied if they can be, and otherwise
/// as its file is (a copy that cannot apply what it holds must not hide the leaf's other copies).
pub fn lock_for_listing(copy: &Shared) -> Result<CopyGuard<'_>, StorageError> {
    let mut guard = lock_raw(copy)?;
    let _ = guard.apply_held();
    Ok(CopyGuard(guard))
}

/// Locks a copy's connection, applying its held entries first (an error if they cannot be applied).
pub fn lock_conn(copy: &Shared) -> Result<CopyGuard<'_>, StorageError> {
    let mut guard = lock_raw(copy)?;
    guard.apply_held()?;
    Ok(CopyGuard(guard))
}

/// Takes `entries` (of the master's term, checked by the caller) into a replica copy: held when they continue it,
/// applied at once with the held ones when there are enough of those. Entries it already holds (a retried request)
/// are checked against what it holds after an apply of the held ones (`log::apply` skips them, or finds the
/// copies diverged); a gap is refused. Returns the copy's position once everything it holds is applied, and
/// whether it now holds entries for the [`Applier`] to apply.
pub fn hold(copy: &Shared, entries: &[LogEntry]) -> Result<(LogPosition, bool), StorageError> {
    let mut guard = lock_raw(copy)?;
    let copy = &mut *guard;
    if let Some(why) = &copy.failed {
        // Retry once per request: an I/O error may have passed. A diverged copy fails again.
        let why = why.clone();
        copy.apply_held().map_err(|e| StorageError::HeldUnapplied(format!("{why}; again: {e}")))?;
    }
    let end = match copy.held_end {
        Some(end) => end,
        None => log::position(&copy.conn)?.0,
    };
    let Some(first) = entries.first() else { return Ok((end, false)) };
    if first.index <= end.index {
        copy.apply_held()?;
        return Ok((log::apply(&copy.conn, entries)?, false));
    }
    let mut next = end;
    for entry in entries {
        if entry.index != next.index + 1 {
            return Err(StorageError::LogGap { expected: next.index + 1, found: entry.index });
        }
        next = LogPosition { term: next.term.max(entry.term), index: entry.index };
    }
    let bytes: usize = entries.iter().map(|e| e.payload_bytes() as usize).sum();
    if copy.held.len() + entries.len() > HELD_ENTRIES_MAX || copy.held_bytes + bytes > HELD_BYTES_MAX {
        // Applied before the new ones are taken: entries are only ever held once accepted, so a failed apply
        // refuses these (the master rolls them back) and leaves nothing of them behind.
        copy.apply_held()?;
    }
    if let Some(journal) = &mut copy.journal {
        journal.append(entries)?;
    }
    let first_held = copy.held.is_empty();
    copy.held.extend(entries.iter().cloned());
    copy.held_bytes += bytes;
    copy.held_end = Some(next);
    Ok((next, first_held))
}

impl Copy {
    /// Applies the held entries in one transaction; on failure they stay held and the copy is marked failed.
    fn apply_held(&mut self) -> Result<(), StorageError> {
        if self.held.is_empty() {
            return Ok(());
        }
        match log::apply(&self.conn, &self.held) {
            Ok(_) => {
                self.held.clear();
                self.held_bytes = 0;
                self.held_end = None;
                self.failed = None;
                if let Some(journal) = &mut self.journal {
                    // Applied and committed: a journal that could not be emptied would only be replayed over
                    // entries the copy has (checked and skipped), so this cannot lose or fork anything.
                    if let Err(e) = journal.clear() {
                        tracing::warn!("cannot empty a replica's journal of held entries: {e}");
                    }
                }
                Ok(())
            }
            Err(e) => {
                let why = format!(
                    "this replica acknowledged log entries {}..={} and cannot apply them: {e}",
                    self.held.first().map(|e| e.index).unwrap_or_default(),
                    self.held.last().map(|e| e.index).unwrap_or_default()
                );
                if self.failed.is_none() {
                    tracing::error!("{why}");
                }
                self.failed = Some(why.clone());
                Err(StorageError::HeldUnapplied(why))
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    due: VecDeque<(Instant, Weak<Mutex<Copy>>)>,
    stopping: bool,
}

/// Applies held entries `APPLY_DELAY` after the first of them arrived, on its own thread (one per leaf store).
pub struct Applier {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Applier {
    pub fn start() -> Applier {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("replica-apply".into())
            .spawn(move || run(&q))
            .expect("spawn the replica apply thread");
        Applier { queue, thread: Some(thread) }
    }

    /// `copy` began holding entries now.
    pub fn schedule(&self, copy: &Shared) {
        let (queue, wake) = &*self.queue;
        let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.due.push_back((Instant::now() + APPLY_DELAY, Arc::downgrade(copy)));
        wake.notify_one();
    }
}

fn run(queue: &(Mutex<Queue>, Condvar)) {
    let (lock, wake) = queue;
    let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if q.stopping {
            return;
        }
        let Some((due, _)) = q.due.front() else {
            q = wake.wait(q).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        let now = Instant::now();
        if *due > now {
            let wait = *due - now;
            q = wake.wait_timeout(q, wait).unwrap_or_else(|p| p.into_inner()).0;
            continue;
        }
        let (_, copy) = q.due.pop_front().expect("front exists");
        drop(q);
        if let Some(copy) = copy.upgrade()
            && let Ok(mut copy) = lock_raw(&copy)
        {
            // A failure is logged once and kept by the copy; its next use reports it.
            let _ = copy.apply_held();
        }
        q = lock.lock().unwrap_or_else(|p| p.into_inner());
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        {
            let (queue, wake) = &*self.queue;
            queue.lock().unwrap_or_else(|p| p.into_inner()).stopping = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
