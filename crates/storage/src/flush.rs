//! Group commit: one flusher thread per leaf store makes the commits of sync-durability partitions durable, many
//! at a time. A commit writes its WAL frames without syncing them (`synchronous=NORMAL` for that COMMIT only), hands
//! the partition's `-wal` file to the flusher while it still holds the partition's connection (`enqueue`), releases
//! the connection and waits for its round (`wait`); the flusher takes every file handed in since its previous
//! round, `fdatasync`s each once (in parallel when there are several), and then releases every commit waiting for
//! that round. One fsync so covers all commits of a partition that queued while the previous round ran, and the
//! next commit on the partition does not wait behind the fsync.
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

/// Files one round syncs on parallel threads at most (the rest wait for a thread of the same round).
const PARALLEL_SYNCS_MAX: usize = 8;

#[derive(Default)]
struct State {
    /// `-wal` files written by commits that wait for the next round.
    dirty: BTreeSet<PathBuf>,
    /// The round that takes `dirty` next; a commit handed in now is durable once `completed` reaches it.
    next_round: u64,
    /// Rounds finished: every file handed in before round `completed` began is synced.
    completed: u64,
    /// Commits in `wait` now.
    waiting: usize,
    /// Tests hold rounds back to see commits wait for them.
    paused: bool,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The flusher thread waits here for work.
    work: Condvar,
    /// Commits wait here for their round.
    done: Condvar,
    fsyncs: AtomicU64,
    rounds: AtomicU64,
    commits: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The leaf's flusher: [`Flusher::enqueue`] hands in a file just committed to, [`Flusher::wait`] blocks until the
/// round that syncs it finished.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The flusher round that makes a commit durable ([`Flusher::enqueue`]); rounds finish in order.
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
            work: Condvar::new(),
            done: Condvar::new(),
            fsyncs: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        });
        let thread = std::thread::Builder::new()
            .name("canopy-flusher".into())
            .spawn({
                let shared = shared.clone();
                move || run(&shared)
            })
            .expect("the flusher thread starts (the process can create threads)");
        Flusher { shared, thread: Some(thread) }
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
        self.shared.work.notify_one();
        Round(state.next_round)
    }

    /// Blocks until `round` finished: every write to the files handed in for it is on disk. Call it after releasing
    /// the connection, so that other commits go on meanwhile.
    pub fn wait(&self, round: Round) {
        let mut state = self.shared.lock();
        state.waiting += 1;
        while state.completed < round.0 {
            state = self.shared.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.waiting -= 1;
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Holds rounds back until [`Flusher::resume`] (tests: commits must wait for their round).
    #[cfg(test)]
    pub(crate) fn pause(&self) {
        self.shared.lock().paused = true;
    }

    #[cfg(test)]
    pub(crate) fn resume(&self) {
        self.shared.lock().paused = false;
        self.shared.work.notify_one();
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
        self.shared.lock().stopping = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let (files, round) = {
            let mut state = shared.lock();
            while (state.dirty.is_empty() || state.paused) && !state.stopping {
                state = shared.work.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.dirty.is_empty() {
                return;
            }
            let round = state.next_round;
            state.next_round += 1;
            (std::mem::take(&mut state.dirty), round)
        };
        sync_all(shared, files.into_iter().collect());
        shared.rounds.fetch_add(1, Ordering::Relaxed);
        shared.lock().completed = round;
        shared.done.notify_all();
    }
}

/// Syncs `files`, one thread each (up to `PARALLEL_SYNCS_MAX`): a disk takes several flushes at once about as fast
/// as one.
fn sync_all(shared: &Shared, files: Vec<PathBuf>) {
    if let [file] = files.as_slice() {
        sync_wal(shared, file);
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..files.len().min(PARALLEL_SYNCS_MAX) {
            scope.spawn(|| {
                while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    sync_wal(shared, file);
                }
            });
        }
    });
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
