//! Group commit: the commits of sync-durability partitions on a leaf are made durable many at a time. A commit
//! writes its WAL frames without syncing them (`synchronous=NORMAL` for that COMMIT only), hands the partition's
//! `-wal` file in while it still holds the partition's connection (`enqueue`), releases the connection and waits
//! for its round (`wait`). The first waiting commit that finds no round running leads the next one (as InnoDB's and
//! PostgreSQL's group commits do; no thread hop for the common case of one commit at a time): it takes every file
//! handed in since the previous round, `fdatasync`s each once (in parallel with the helper threads when there are
//! several), and releases every commit of the round. One fsync so covers all commits of a partition that queued
//! while the previous round ran, and the next commit on the partition does not wait behind the fsync.
//!
//! What it does not change: a commit is still acknowledged only after its WAL frames are on disk (the round that
//! releases it started after its COMMIT returned). Rounds finish in order and a round releases its waiters only
//! after the fsyncs of every file in it; a commit is handed in before anyone can read it (reads go through the same
//! connection), so a commit that read another one on this leaf gets the same round or a later one and is never
//! released before what it read is durable. Readers may see a commit before its fsync (as with any group commit
//! that releases locks at COMMIT); a power loss can then take back a commit someone read but nobody was told was
//! committed. A process kill loses nothing: the frames are in the operating system's hands once COMMIT returns.
//!
//! A failed fsync stops the process (as PostgreSQL does since 2018): after one, the kernel may have dropped the
//! dirty pages, so neither retrying nor going on could be trusted, and commits other connections already read
//! would be lost silently. A restart recovers from what is on disk; in redundancy 2 the replica takes over.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Threads that sync a round's files beside its leader (started once: a thread per round would cost more than the
/// sync of a small WAL append).
const SYNC_HELPERS: usize = 3;

#[derive(Default)]
struct State {
    /// `-wal` files written by commits that wait for the next round.
    dirty: BTreeSet<PathBuf>,
    /// The round that takes `dirty` next; a commit handed in now is durable once `completed` reaches it.
    next_round: u64,
    /// Rounds finished: every file handed in before round `completed` began is synced.
    completed: u64,
    /// A leader is syncing a round now.
    flushing: bool,
    /// Commits in `wait` now.
    waiting: usize,
    /// Tests hold rounds back to see commits wait for them.
    paused: bool,
}

/// Files of the current round waiting for a syncing thread, and how many of the round are not synced yet.
#[derive(Default)]
struct Jobs {
    files: Vec<PathBuf>,
    outstanding: usize,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Commits wait here for their round (or for the running one to end, to lead the next).
    done: Condvar,
    jobs: Mutex<Jobs>,
    /// Helpers wait here for files to sync.
    job: Condvar,
    /// A leader waits here for the helpers to finish its round's files.
    jobs_done: Condvar,
    fsyncs: AtomicU64,
    rounds: AtomicU64,
    commits: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One file of the round is synced.
    fn finish_job(&self) {
        let mut jobs = self.lock_jobs();
        jobs.outstanding -= 1;
        if jobs.outstanding == 0 {
            self.jobs_done.notify_all();
        }
    }
}

/// The leaf's group commit: [`Flusher::enqueue`] hands in a file just committed to, [`Flusher::wait`] blocks until
/// the round that syncs it finished (leading it, when no other commit does).
pub struct Flusher {
    shared: Arc<Shared>,
    helpers: Vec<std::thread::JoinHandle<()>>,
}

/// The round that makes a commit durable ([`Flusher::enqueue`]); rounds finish in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Round(u64);

/// What a flusher did so far, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushCounts {
    /// Commits released by a round.
    pub commits: u64,
    /// Rounds run.
    pub rounds: u64,
    /// `fdatasync` calls made.
    pub fsyncs: u64,
}

impl Flusher {
    pub fn start() -> Flusher {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { next_round: 1, ..State::default() }),
            done: Condvar::new(),
            jobs: Mutex::new(Jobs::default()),
            job: Condvar::new(),
            jobs_done: Condvar::new(),
            fsyncs: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        });
        let helpers = (0..SYNC_HELPERS)
            .map(|_| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name("canopy-fsync".into())
                    .spawn(move || help(&shared))
                    .expect("the fsync helpers start (the process can create threads)")
            })
            .collect();
        Flusher { shared, helpers }
    }

    /// Hands in the `-wal` file at `wal`, just written by a COMMIT: the returned round syncs it. Call it while still
    /// holding the connection, so that whoever reads this commit afterwards (through the same connection) and
    /// commits on another partition gets the same round or a later one: a released commit never depends on an
    /// unsynced one of this leaf.
    pub fn enqueue(&self, wal: &Path) -> Round {
        let mut state = self.shared.lock();
        if !state.dirty.contains(wal) {
            state.dirty.insert(wal.to_path_buf());
        }
        Round(state.next_round)
    }

    /// Blocks until `round` finished: every write to the files handed in for it is on disk. Call it after releasing
    /// the connection, so that other commits go on meanwhile. The caller leads a round itself when none is running.
    pub fn wait(&self, round: Round) {
        let shared = &self.shared;
        let mut state = shared.lock();
        state.waiting += 1;
        while state.completed < round.0 {
            if state.flushing || state.paused {
                state = shared.done.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead the next round: it takes every file handed in so far, this commit's included.
            state.flushing = true;
            let led = state.next_round;
            state.next_round += 1;
            let files = std::mem::take(&mut state.dirty);
            drop(state);
            sync_all(shared, files.into_iter().collect());
            shared.rounds.fetch_add(1, Ordering::Relaxed);
            state = shared.lock();
            state.completed = led;
            state.flushing = false;
            shared.done.notify_all();
        }
        state.waiting -= 1;
        shared.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Holds rounds back until [`Flusher::resume`] (tests: commits must wait for their round).
    #[cfg(test)]
    pub(crate) fn pause(&self) {
        self.shared.lock().paused = true;
    }

    #[cfg(test)]
    pub(crate) fn resume(&self) {
        self.shared.lock().paused = false;
        self.shared.done.notify_all();
    }

    /// Commits waiting for a round now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.shared.lock().waiting
    }

    pub fn counts(&self) -> FlushCounts {
        FlushCounts {
            commits: self.shared.commits.load(Ordering::Relaxed),
            rounds: self.shared.rounds.load(Ordering::Relaxed),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock_jobs().stopping = true;
        self.shared.job.notify_all();
        for helper in self.helpers.drain(..) {
            let _ = helper.join();
        }
    }
}

/// Syncs `files` on this thread and the helpers at once: a disk takes several flushes at once about as fast as one.
fn sync_all(shared: &Shared, mut files: Vec<PathBuf>) {
    let Some(own) = files.pop() else { return };
    if !files.is_empty() {
        let mut jobs = shared.lock_jobs();
        jobs.outstanding += files.len();
        jobs.files.append(&mut files);
        shared.job.notify_all();
    }
    sync_wal(shared, &own);
    let mut jobs = shared.lock_jobs();
    loop {
        if let Some(file) = jobs.files.pop() {
            drop(jobs);
            sync_wal(shared, &file);
            shared.finish_job();
            jobs = shared.lock_jobs();
        } else if jobs.outstanding > 0 {
            jobs = shared.jobs_done.wait(jobs).unwrap_or_else(|p| p.into_inner());
        } else {
            return;
        }
    }
}

/// A helper thread: syncs files of the current round as the flusher hands them out.
fn help(shared: &Shared) {
    let mut jobs = shared.lock_jobs();
    loop {
        if let Some(file) = jobs.files.pop() {
            drop(jobs);
            sync_wal(shared, &file);
            shared.finish_job();
            jobs = shared.lock_jobs();
        } else if jobs.stopping {
            return;
        } else {
            jobs = shared.job.wait(jobs).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// `fdatasync` of one `-wal` file through a descriptor of our own (Linux syncs the file's pages whichever descriptor
/// wrote them). A missing file is fine: SQLite deletes the WAL only after checkpointing it into the database file
/// with syncs of its own (the last connection closed: the partition was dropped or replaced).
fn sync_wal(shared: &Shared, wal: &Path) {
    let synced = match std::fs::File::open(wal) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => Err(e),
    };
    shared.fsyncs.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = synced {
        tracing::error!("fsync of {} failed: {e}; stopping (acknowledged commits may not be on disk)", wal.display());
        eprintln!("canopy: fsync of {} failed: {e}; stopping", wal.display());
        std::process::abort();
    }
}
