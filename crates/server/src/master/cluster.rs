//! The master aggregator's view of the cluster: the current metadata (a shared immutable snapshot, replaced on every
//! change after it is persisted), RPC clients for the leaves, their measured health, and the AUTO_INCREMENT ranges
//! reserved by this aggregator. Multi-step operations (DDL, ADD LEAF) hold `operation_lock` for their whole run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use canopy_meta::{ClusterMeta, Command, Leaf, NodeId, Outcome};
use canopy_rpc::{Client, Credentials, Request, Response};

use crate::error::{Error, Result};
use crate::persist;

/// How long one request to a leaf may take (large scans included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// AUTO_INCREMENT values reserved from the metadata at a time; unique and increasing per aggregator, not
/// consecutive across aggregators (as in SingleStore).
const AUTO_INCREMENT_BATCH: u64 = 1000;

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

/// A partition's gate (see `Cluster::gates`).
pub type Gate = Arc<tokio::sync::RwLock<()>>;

/// What the heartbeat measured about one leaf.
#[derive(Debug, Clone, Default)]
pub struct LeafHealth {
    /// Exponentially weighted round-trip time of pings, in milliseconds.
    pub latency_ms: Option<f64>,
    pub reachable: bool,
}

pub struct Cluster {
    data_dir: PathBuf,
    /// This node's RPC credentials, presented to every leaf.
    credentials: Arc<Credentials>,
    meta: RwLock<Arc<ClusterMeta>>,
    /// Serialises metadata writes (persist, then publish); holds the test-only write fault.
    write: Mutex<WriteFault>,
    /// Serialises multi-step cluster operations (DDL, ADD LEAF, CREATE/DROP DATABASE).
    pub operation_lock: tokio::sync::Mutex<()>,
    clients: Mutex<HashMap<NodeId, Arc<Client>>>,
    health: Mutex<HashMap<NodeId, LeafHealth>>,
    auto_increment: Mutex<HashMap<(String, String), (i64, i64)>>,
    /// One gate per partition: statements hold it shared while they run on the partition; a move's switch holds it
    /// exclusively, so no statement runs on either copy while the master changes.
    gates: Mutex<HashMap<(String, u32), Gate>>,
    /// One lock per database, held across a whole reference write, reference DDL, or the catch-up that makes a leaf a
    /// serving reference holder, so every copy receives the same entries in the same order (`reference.rs`).
    reference_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The rebalances running, by database (`rebalance.rs`).
    pub rebalances: crate::master::rebalance::Running,
}

impl Cluster {
    pub fn new(data_dir: PathBuf, meta: ClusterMeta, credentials: Arc<Credentials>) -> Arc<Cluster> {
        Arc::new(Cluster {
            data_dir,
            credentials,
            meta: RwLock::new(Arc::new(meta)),
            write: Mutex::new(WriteFault::from_env()),
            operation_lock: tokio::sync::Mutex::new(()),
            clients: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            auto_increment: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            reference_locks: Mutex::new(HashMap::new()),
            rebalances: Default::default(),
        })
    }

    /// This node's RPC credentials (the cluster secret ADD LEAF hands over).
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    /// The current metadata; cheap, and never changes under the caller.
    pub fn meta(&self) -> Arc<ClusterMeta> {
        self.meta.read().map(|m| m.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// What `command` would do to the current metadata, without doing it.
    pub fn dry_run(&self, command: Command) -> Result<Outcome> {
        let mut copy = (*self.meta()).clone();
        Ok(copy.apply(command)?)
    }

    /// Applies `command`, persists the new metadata, then publishes it.
    pub fn apply(&self, command: Command) -> Result<Outcome> {
        self.apply_with(command, persist::sync_parent)
    }

    /// `apply`, with the directory sync that follows the file's replacement passed in (tests make it fail).
    fn apply_with(&self, command: Command, sync_parent: impl Fn(&Path) -> Result<()>) -> Result<Outcome> {
        let mut fault = self.write.lock().map_err(|_| Error::Internal("metadata write lock poisoned".into()))?;
        if fault.fails_now() {
            return Err(Error::Internal(format!("metadata write failed ({FAIL_WRITE_AFTER_ENV})")));
        }
        let mut next = (*self.meta()).clone();
        let kind = fault.after.is_some().then(|| command.clone());
        let outcome = next.apply(command)?;
        if let Err(broken) = next.check_invariants() {
            // A command that breaks an invariant is a bug: refuse to persist or serve that state.
            return Err(Error::Internal(format!("metadata invariant violated: {broken}")));
        }
        let path = persist::meta_path(&self.data_dir);
        persist::replace(&path, &next)?;
        // From the rename on, the new state is what a restart reads: publish it, whatever the directory sync says,
        // so memory and disk never disagree. A failed sync only leaves the rename exposed to a power loss; it is
        // retried here and by every later write.
        if let Some(command) = kind {
            fault.persisted(&command);
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
        Ok(outcome)
    }

    pub fn client(&self, leaf: &Leaf) -> Result<Arc<Client>> {
        let mut clients = self.clients.lock().map_err(|_| Error::Internal("client map poisoned".into()))?;
        if let Some(c) = clients.get(&leaf.id) {
            return Ok(c.clone());
        }
        let addr = canopy_rpc::client::resolve(&leaf.addr.host, leaf.addr.rpc_port)
            .map_err(|e| Error::LeafUnreachable { host: leaf.addr.host.clone(), port: leaf.addr.port, source: e })?;
        let client = Arc::new(Client::new(addr, canopy_rpc::client::CONNECT_TIMEOUT, self.credentials.clone()));
        clients.insert(leaf.id, client.clone());
        Ok(client)
    }

    /// Lets calls to `leaf` use the local RPC socket it reported (None: TCP only), when the leaf's address is a
    /// loopback address, i.e. certainly on this host. The client falls back to TCP if the socket cannot be reached.
    pub fn use_local_socket(&self, leaf: &Leaf, path: Option<&str>) {
        if let Ok(client) = self.client(leaf)
            && client.addr().ip().is_loopback()
        {
            client.set_local_socket(path.map(std::path::PathBuf::from));
        }
    }

    /// Sends `request` to `leaf`; a remote error comes back as `Error::Remote`.
    pub async fn call(&self, leaf: &Leaf, request: &Request) -> Result<Response> {
        self.call_with_timeout(leaf, request, REQUEST_TIMEOUT).await
    }

    pub async fn call_with_timeout(&self, leaf: &Leaf, request: &Request, timeout: Duration) -> Result<Response> {
        let client = self.client(leaf)?;
        match client.call(request, timeout).await {
            Ok(Response::Error(e)) => Err(Error::Remote(e)),
            Ok(r) => Ok(r),
            Err(source) => {
                client.flush();
                Err(Error::LeafUnreachable { host: leaf.addr.host.clone(), port: leaf.addr.port, source })
            }
        }
    }

    /// The one fan-out: sends every request concurrently (one request needs no task) and waits for all of them,
    /// so no request is still running when the caller acts on the outcome (an undo, a retry). Responses in input
    /// order; on failure the error of the first failed request in input order.
    pub async fn call_all(self: &Arc<Self>, mut requests: Vec<(Leaf, Request)>) -> Result<Vec<Response>> {
        if requests.len() == 1 {
            let (leaf, request) = requests.remove(0);
            return Ok(vec![self.call(&leaf, &request).await?]);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (leaf, request)) in requests.into_iter().enumerate() {
            let cluster = self.clone();
            tasks.spawn(async move { (index, cluster.call(&leaf, &request).await) });
        }
        let mut results: Vec<Option<Result<Response>>> = (0..tasks.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (index, result) = joined.map_err(|e| Error::Internal(format!("leaf request task failed: {e}")))?;
            results[index] = Some(result);
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::Internal("missing leaf response".into())))).collect()
    }

    /// The gate of `db:ordinal` (see the field's doc).
    pub fn gate(&self, db: &str, ordinal: u32) -> Gate {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.entry((db.to_string(), ordinal)).or_default().clone()
    }

    /// The reference lock of `db` (see the field's doc).
    pub fn reference_lock(&self, db: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.reference_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(db.to_string()).or_default().clone()
    }

    pub fn open_connections(&self, leaf: NodeId) -> usize {
        self.clients.lock().ok().and_then(|c| c.get(&leaf).map(|c| c.idle_connections())).unwrap_or(0)
    }

    pub fn health(&self, leaf: NodeId) -> LeafHealth {
        self.health.lock().ok().and_then(|h| h.get(&leaf).cloned()).unwrap_or_default()
    }

    pub fn record_ping(&self, leaf: NodeId, rtt: Option<Duration>) {
        if let Ok(mut health) = self.health.lock() {
            let h = health.entry(leaf).or_default();
            match rtt {
                Some(rtt) => {
                    let ms = rtt.as_secs_f64() * 1000.0;
                    h.latency_ms = Some(match h.latency_ms {
                        Some(avg) => avg * 0.8 + ms * 0.2,
                        None => ms,
                    });
                    h.reachable = true;
                }
                None => {
                    h.latency_ms = None;
                    h.reachable = false;
                }
            }
        }
    }

    /// Reserves `count` consecutive AUTO_INCREMENT values for `db.table` and returns the first. Values come from
    /// ranges this aggregator reserved in the metadata, so they are unique across the cluster.
    pub fn allocate_auto_increment(&self, db: &str, table: &str, count: u64) -> Result<i64> {
        let key = (db.to_string(), table.to_ascii_lowercase());
        let mut ranges = self.auto_increment.lock().map_err(|_| Error::Internal("auto_increment poisoned".into()))?;
        let wanted = i64::try_from(count).map_err(|_| Error::Internal("auto_increment count too large".into()))?;
        if let Some((next, end)) = ranges.get_mut(&key)
            && *end - *next >= wanted
        {
            let first = *next;
            *next += wanted;
            return Ok(first);
        }
        let batch = count.max(AUTO_INCREMENT_BATCH);
        let Outcome::AutoIncrementReserved { first } =
            self.apply(Command::ReserveAutoIncrement { db: db.to_string(), table: table.to_string(), count: batch })?
        else {
            return Err(Error::Internal("unexpected outcome of ReserveAutoIncrement".into()));
        };
        // Values left in an older range are abandoned: reservations must stay increasing per aggregator.
        ranges.insert(key, (first + wanted, first + batch as i64));
        Ok(first)
    }

    /// Forgets cached AUTO_INCREMENT ranges of a dropped table or database.
    /// The next AUTO_INCREMENT value `db.table` would give: the head of this aggregator's reserved range, or the
    /// metadata's next unreserved value when no range is held (INFORMATION_SCHEMA.TABLES.AUTO_INCREMENT).
    pub fn next_auto_increment(&self, meta: &ClusterMeta, db: &str, table: &str) -> i64 {
        let key = (db.to_string(), table.to_ascii_lowercase());
        let held = self.auto_increment.lock().ok().and_then(|ranges| ranges.get(&key).map(|(next, _)| *next));
        let reserved = meta.databases.get(db).and_then(|d| d.auto_increment.get(&key.1).copied()).unwrap_or(1);
        held.unwrap_or(reserved)
    }

    pub fn forget_auto_increment(&self, db: &str, table: Option<&str>) {
        if let Ok(mut ranges) = self.auto_increment.lock() {
            ranges.retain(|(d, t), _| !(d == db && table.is_none_or(|table| t.eq_ignore_ascii_case(table))));
        }
    }
}

/// Reads the master aggregator's metadata (`cluster.json`) and checks its invariants: a file that breaks one is
/// refused, never served.
pub fn load_meta(data_dir: &Path) -> Result<ClusterMeta> {
    let path = persist::meta_path(data_dir);
    let meta: ClusterMeta =
        persist::load(&path)?.ok_or_else(|| Error::Internal("master aggregator without cluster.json".into()))?;
    meta.check_invariants()
        .map_err(|broken| Error::Internal(format!("{} breaks a metadata invariant: {broken}", path.display())))?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_meta::NodeAddr;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("canopy-cluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn bootstrap(dir: &Path) -> Arc<Cluster> {
        let meta = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
        persist::store(&persist::meta_path(dir), &meta).unwrap();
        Cluster::new(dir.to_path_buf(), meta, Arc::new(canopy_rpc::Credentials::new("ma:1", None)))
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
        let cluster = bootstrap(&dir);
        let failing = |_: &Path| Err(Error::Internal("injected: directory fsync failed".into()));
        let outcome = cluster.apply_with(add_leaf(10), failing);
        assert!(matches!(outcome, Ok(Outcome::LeafAdded(_))), "{outcome:?}");
        assert_eq!(*cluster.meta(), load_meta(&dir).unwrap(), "memory and disk agree");
        assert_eq!(cluster.meta().leaves.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The file cannot be written at all (its directory is gone). Property: the change is refused and nothing
    /// is published.
    #[test]
    fn a_failed_write_refuses_the_change() {
        let dir = temp_dir("nowrite");
        let cluster = bootstrap(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(cluster.apply(add_leaf(10)).is_err());
        assert!(cluster.meta().leaves.is_empty());
    }

    /// A cluster.json whose instance sits on a leaf the metadata does not list is refused at load.
    #[test]
    fn loading_metadata_that_breaks_an_invariant_is_refused() {
        let dir = temp_dir("badload");
        let cluster = bootstrap(&dir);
        cluster.apply(add_leaf(10)).unwrap();
        cluster.apply(Command::CreateDatabase { name: "d".into(), partitions: 2, sync_durability: true }).unwrap();
        assert!(load_meta(&dir).is_ok());
        let mut broken = (*cluster.meta()).clone();
        broken.leaves.clear();
        persist::store(&persist::meta_path(&dir), &broken).unwrap();
        let err = load_meta(&dir).unwrap_err();
        assert!(err.to_string().contains("invariant"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
