//! The metadata store: the master aggregator's current metadata (a shared immutable snapshot, replaced on every
//! change after it is persisted to `store.json`) and the only caller of `ClusterMeta::apply`. This is the seam
//! where a replicated log (Raft) plugs in: nothing else applies commands.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use canopy_meta::{ClusterMeta, Command, Outcome};

use crate::error::{Error, Result};
use crate::persist;

/// Attempts at fsyncing the data directory after the metadata file was replaced.
const DIR_SYNC_ATTEMPTS: u32 = 3;

/// Test-only fault injection: with this set to a command kind (`PromoteWithDrop`, the name of a `Command`
/// variant), the first metadata write after a write of that kind fails once, as a full or failing disk would. Read
/// once at start-up; production never sets it.
const FAIL_WRITE_AFTER_ENV: &str = "CANOPY_TEST_FAIL_METADATA_WRITE_AFTER";

/// The state of the `FAIL_WRITE_AFTER_ENV` fault: the kind to wait for, whether it was seen, whether it fired.
#[derive(Default)]
struct WriteFault {
    after: Option<String>,
    armed: bool,
    fired: bool,
}

impl WriteFault {
    fn from_env() -> WriteFault {
        WriteFault { after: std::env::var(FAIL_WRITE_AFTER_ENV).ok().filter(|k| !k.is_empty()), ..Default::default() }
    }

    /// Whether this write must fail; then the fault is spent.
    fn fails_now(&mut self) -> bool {
        let fail = self.armed && !self.fired;
        self.fired |= fail;
        fail
    }

    /// Notes a persisted command; the next write fails if it is of the awaited kind.
    fn persisted(&mut self, command: &Command) {
        if let Some(kind) = &self.after
            && !self.fired
            && format!("{command:?}").split([' ', '{', '(']).next() == Some(kind.as_str())
        {
            self.armed = true;
        }
    }
}

pub struct MetaStore {
    data_dir: PathBuf,
    meta: RwLock<Arc<ClusterMeta>>,
    /// Serialises metadata changes (persist, then publish); holds the test-only write fault.
    write: Mutex<WriteFault>,
}

impl MetaStore {
    pub fn new(data_dir: PathBuf, meta: ClusterMeta) -> MetaStore {
        MetaStore { data_dir, meta: RwLock::new(Arc::new(meta)), write: Mutex::new(WriteFault::from_env()) }
    }

    /// The current metadata; cheap, and never changes under the caller.
    pub fn meta(&self) -> Arc<ClusterMeta> {
        self.meta.read().map(|m| m.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// What `command` would do to the current metadata, without doing it.
    pub fn dry_run(&self, command: Command) -> Result<Outcome> {
        Ok(self.dry_run_all(vec![command])?.pop().expect("one outcome per command"))
    }

    /// What `commands`, applied in order, would do to the current metadata, without doing it: one outcome each.
    pub fn dry_run_all(&self, commands: Vec<Command>) -> Result<Vec<Outcome>> {
        let mut copy = (*self.meta()).clone();
        commands.into_iter().map(|command| Ok(copy.apply(command)?)).collect()
    }

    /// Applies `command`, persists the new metadata, then publishes it. The metadata store is the one place that
    /// applies commands (a Raft log plugs in here later); the write and its fsyncs run on a blocking thread, never on
    /// an async worker, and writes are applied in the order they take the write lock.
    pub async fn apply(self: &Arc<Self>, command: Command) -> Result<Outcome> {
        Ok(self.apply_all(vec![command]).await?.pop().expect("one outcome per command"))
    }

    /// Applies `commands` in order as one change: persisted and published together (no reader sees the state
    /// between two of them, and a restart finds all or none), or, when one is refused, none of them.
    pub async fn apply_all(self: &Arc<Self>, commands: Vec<Command>) -> Result<Vec<Outcome>> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.apply_with(commands, persist::sync_parent))
            .await
            .map_err(|e| Error::Internal(format!("metadata write task failed: {e}")))?
    }

    /// Records the progress of an operation's step (status, running time, error): applied and published at once,
    /// but neither persisted on its own nor counted as a metadata version (prepared plans stay valid). It reaches
    /// `store.json` with the next durable write; after a restart, steps that were still running read as
    /// interrupted (`load_meta`).
    pub fn record_progress(&self, command: Command) -> Result<Outcome> {
        if !command.is_progress() {
            return Err(Error::Internal(format!("not a progress record: {command:?}")));
        }
        // The write lock orders progress with durable writes, so neither overwrites the other.
        let _write = self.write.lock().map_err(|_| Error::Internal("metadata write lock poisoned".into()))?;
        let mut next = (*self.meta()).clone();
        let outcome = next.apply(command)?;
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(outcome)
    }

    /// `apply_all`, with the directory sync that follows the file's replacement passed in (tests make it fail).
    /// Blocking: it writes and fsyncs.
    fn apply_with(&self, commands: Vec<Command>, sync_parent: impl Fn(&Path) -> Result<()>) -> Result<Vec<Outcome>> {
        let mut fault = self.write.lock().map_err(|_| Error::Internal("metadata write lock poisoned".into()))?;
        if fault.fails_now() {
            return Err(Error::Internal(format!("metadata write failed ({FAIL_WRITE_AFTER_ENV})")));
        }
        let mut next = (*self.meta()).clone();
        let kinds = if fault.after.is_some() { commands.clone() } else { Vec::new() };
        let outcomes =
            commands.into_iter().map(|command| next.apply(command)).collect::<std::result::Result<Vec<_>, _>>()?;
        if let Err(broken) = next.check_invariants() {
            // A command that breaks an invariant is a bug: refuse to persist or serve that state.
            return Err(Error::Internal(format!("metadata invariant violated: {broken}")));
        }
        let path = persist::meta_path(&self.data_dir);
        persist::replace(&path, &next)?;
        // From the rename on, the new state is what a restart reads: publish it, whatever the directory sync says,
        // so memory and disk never disagree. A failed sync only leaves the rename exposed to a power loss; it is
        // retried here and by every later write.
        for command in &kinds {
            fault.persisted(command);
        }
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        let mut synced = sync_parent(&path);
        for _ in 1..DIR_SYNC_ATTEMPTS {
            if synced.is_ok() {
                break;
            }
            synced = sync_parent(&path);
        }
        if let Err(e) = synced {
            tracing::error!("metadata change applied, but not yet durable against a power loss: {e}");
        }
        Ok(outcomes)
    }
}

/// Reads the master aggregator's metadata (`store.json`) and checks its invariants: a file that breaks one is
/// refused, never served.
pub fn load_meta(data_dir: &Path) -> Result<ClusterMeta> {
    let path = persist::meta_path(data_dir);
    let meta: ClusterMeta =
        persist::load(&path)?.ok_or_else(|| Error::Internal("master aggregator without store.json".into()))?;
    meta.check_invariants()
        .map_err(|broken| Error::Internal(format!("{} breaks a metadata invariant: {broken}", path.display())))?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_meta::{Durability, NodeAddr};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("canopy-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn bootstrap(dir: &Path) -> Arc<MetaStore> {
        let meta = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
        persist::store(&persist::meta_path(dir), &meta).unwrap();
        Arc::new(MetaStore::new(dir.to_path_buf(), meta))
    }

    fn add_leaf(port: u16) -> Command {
        let addr = NodeAddr { host: "h".into(), port, rpc_port: port + 1 };
        Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }
    }

    /// The directory sync after the metadata file's rename fails. Property: the change is not reported refused,
    /// and what the aggregator serves is what a restart would load.
    #[test]
    fn a_failed_directory_sync_after_the_rename_still_publishes_the_new_state() {
        let dir = temp_dir("dirsync");
        let store = bootstrap(&dir);
        let failing = |_: &Path| Err(Error::Internal("injected: directory fsync failed".into()));
        let outcome = store.apply_with(vec![add_leaf(10)], failing);
        assert!(matches!(outcome.as_deref(), Ok([Outcome::LeafAdded(_)])), "{outcome:?}");
        assert_eq!(*store.meta(), load_meta(&dir).unwrap(), "memory and disk agree");
        assert_eq!(store.meta().leaves.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two commands applied as one change, the second refused (the same address twice). Property: neither is
    /// published nor written; two that are accepted are published and loaded together.
    #[tokio::test]
    async fn commands_applied_together_apply_all_or_none() {
        let dir = temp_dir("all-or-none");
        let store = bootstrap(&dir);
        assert!(store.apply_all(vec![add_leaf(10), add_leaf(10)]).await.is_err());
        assert!(store.meta().leaves.is_empty(), "the first command is not published alone");
        assert!(load_meta(&dir).unwrap().leaves.is_empty(), "nor written");
        let outcomes = store.apply_all(vec![add_leaf(10), add_leaf(20)]).await.unwrap();
        assert_eq!(outcomes.len(), 2);
        assert_eq!(load_meta(&dir).unwrap().leaves.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The file cannot be written at all (its directory is gone). Property: the change is refused and nothing
    /// is published.
    #[tokio::test]
    async fn a_failed_write_refuses_the_change() {
        let dir = temp_dir("nowrite");
        let store = bootstrap(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(store.apply(add_leaf(10)).await.is_err());
        assert!(store.meta().leaves.is_empty());
    }

    /// A store.json whose instance sits on a leaf the metadata does not list is refused at load.
    #[tokio::test]
    async fn loading_metadata_that_breaks_an_invariant_is_refused() {
        let dir = temp_dir("badload");
        let store = bootstrap(&dir);
        store.apply(add_leaf(10)).await.unwrap();
        store.apply(canopy_control::placement::create_database(&store.meta(), "d", 2, Durability::Sync)).await.unwrap();
        assert!(load_meta(&dir).is_ok());
        let mut broken = (*store.meta()).clone();
        broken.leaves.clear();
        persist::store(&persist::meta_path(&dir), &broken).unwrap();
        let err = load_meta(&dir).unwrap_err();
        assert!(err.to_string().contains("invariant"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An operation of two steps runs: the steps' progress is recorded, then the second ends with a durable write.
    /// Property: progress is served at once but neither changes the version prepared plans are keyed on nor is
    /// written on its own; the durable write carries it to disk; a restart reads unfinished steps as interrupted.
    #[tokio::test]
    async fn progress_is_published_without_a_write_or_a_new_version() {
        use canopy_meta::{Action, NodeId, Step, StepStatus};
        let dir = temp_dir("progress");
        let store = bootstrap(&dir);
        store.apply(add_leaf(10)).await.unwrap();
        store.apply(canopy_control::placement::create_database(&store.meta(), "d", 2, Durability::Sync)).await.unwrap();
        let steps = (0..2).map(|o| Step::scheduled(Action::CopyPartition, o, NodeId(2), 1, 10)).collect();
        store.apply(Command::RecordOperation { db: "d".into(), steps }).await.unwrap();
        let version = store.meta().version;
        let update =
            |index, status| Command::UpdateStep { db: "d".into(), index, status, running_ms: Some(5), error: None };

        store.record_progress(update(0, StepStatus::Running)).unwrap();
        assert_eq!(store.meta().databases["d"].operation[0].status, StepStatus::Running, "served at once");
        assert_eq!(store.meta().version, version, "progress is no new version");
        assert_eq!(load_meta(&dir).unwrap().databases["d"].operation[0].status, StepStatus::Scheduled, "not written");
        assert!(store.record_progress(add_leaf(20)).is_err(), "only progress goes without a write");

        store.apply(update(1, StepStatus::Success)).await.unwrap();
        assert_eq!(store.meta().version, version, "a step's end is no new version either");
        let on_disk = load_meta(&dir).unwrap();
        assert_eq!(on_disk, *store.meta(), "the durable write carries the progress before it");

        let restarted = Arc::new(MetaStore::new(dir.clone(), on_disk));
        restarted.record_progress(Command::InterruptOperations).unwrap();
        let operation = &restarted.meta().databases["d"].operation;
        assert_eq!(operation[0].status, StepStatus::Failed);
        assert!(operation[0].error.as_deref().unwrap().contains("restarted"), "{:?}", operation[0].error);
        assert_eq!(operation[1].status, StepStatus::Success, "a finished step stays as it ended");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
