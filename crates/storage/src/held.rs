//! A replica's deferred apply. A replica acknowledges its master's entries once it holds them, in order, in this
//! process (`Copy::hold`), and applies them a little later, many at a time, in one transaction per partition with
//! their changesets combined (`log::apply`): a commit arrives alone, and applying it alone costs a transaction and a
//! set of prepared statements for a few rows (see `examples/replica_apply.rs`: 66 µs an entry one at a time,
//! 5 µs in batches of 64).
//!
//! Held entries are applied before anything else uses the copy: every lock of a copy's connection (`lock_conn`)
//! applies them first, so a promotion, a log read (a returning copy's prefix test, a catch-up it serves), a
//! snapshot or a checkpoint sees every entry the copy acknowledged. Otherwise the [`Applier`] applies them
//! `APPLY_DELAY` after the first of them arrived, and a replicate request applies them at once when they reach
//! `HELD_ENTRIES_MAX` or `HELD_BYTES_MAX`.
//!
//! What an acknowledgement promises: the entry is in this process's hands. Before, it was in the copy's WAL as well
//! (unsynced); now a kill of the replica's process takes the held entries with it. That loses nothing acknowledged:
//! the master holds every entry fsynced, and a replica that restarts comes back through the attach, whose prefix
//! test and catch-up start from what its file holds; a killed master's replica is alive and applies what it holds
//! before it is promoted. Both leaves of a pair failing at once is beyond redundancy 2 either way.
//!
//! An apply that fails (a conflict: the copy diverged; an I/O error) keeps the entries held and fails every later
//! use of the copy, promotion included, and every later replicate request: a copy missing entries it acknowledged
//! must never serve, nor pretend to be in sync. Dropping or replacing the copy discards them.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StorageError;
use crate::log::{self, LogEntry, LogPosition};

/// How long an acknowledged entry may wait to be applied: long enough that a busy partition's commits share a
/// transaction, short enough that a promotion's final apply stays small.
pub const APPLY_DELAY: Duration = Duration::from_millis(100);
/// Held entries (and payload bytes) past which a replicate request applies them at once.
pub const HELD_ENTRIES_MAX: usize = 256;
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
}

pub type Shared = Arc<Mutex<Copy>>;

pub fn shared(conn: Connection) -> Shared {
    Arc::new(Mutex::new(Copy { conn, held: Vec::new(), held_bytes: 0, held_end: None, failed: None }))
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
        copy.apply_held().map_err(|e| StorageError::Replication(format!("{why}; again: {e}")))?;
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
    let first_held = copy.held.is_empty();
    copy.held.extend(entries.iter().cloned());
    copy.held_bytes += entries.iter().map(|e| e.payload_bytes() as usize).sum::<usize>();
    copy.held_end = Some(next);
    if copy.held.len() >= HELD_ENTRIES_MAX || copy.held_bytes >= HELD_BYTES_MAX {
        copy.apply_held()?;
        return Ok((next, false));
    }
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
                Err(StorageError::Replication(why))
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
