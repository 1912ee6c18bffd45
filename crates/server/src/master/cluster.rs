//! The master aggregator's view of the cluster: the metadata store (`store.rs`), RPC clients for the leaves, their measured health, and the AUTO_INCREMENT ranges
//! reserved by this aggregator. Multi-step operations (DDL, ADD LEAF) hold `operation_lock` for their whole run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canopy_meta::{ClusterMeta, Command, Leaf, NodeId, Outcome};
use canopy_rpc::{Client, Credentials, Request, Response};

use crate::error::{Error, Result};
use crate::master::store::MetaStore;

/// How long one request to a leaf may take (large scans included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// AUTO_INCREMENT values reserved from the metadata at a time; unique and increasing per aggregator, not
/// consecutive across aggregators (as in SingleStore).
const AUTO_INCREMENT_BATCH: u64 = 1000;

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
    /// The metadata, and the one place that changes it.
    store: Arc<MetaStore>,
    /// This node's RPC credentials, presented to every leaf.
    credentials: Arc<Credentials>,
    /// Serialises multi-step cluster operations (DDL, ADD LEAF, CREATE/DROP DATABASE).
    pub operation_lock: tokio::sync::Mutex<()>,
    /// Held by a `Prediction` from its dry run to its commit, so no other term-taking command falls in between (the
    /// steps of one plan run in parallel under one operation lock).
    term_lock: tokio::sync::Mutex<()>,
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
            store: Arc::new(MetaStore::new(data_dir, meta)),
            credentials,
            operation_lock: tokio::sync::Mutex::new(()),
            term_lock: tokio::sync::Mutex::new(()),
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
        self.store.meta()
    }

    /// What `command` would do to the current metadata, without doing it.
    pub fn dry_run(&self, command: Command) -> Result<Outcome> {
        self.store.dry_run(command)
    }

    /// What `commands` will do, for telling leaves before the metadata commits them (the terms of new or promoted
    /// instances): the outcomes of a dry run, held true until `Prediction::commit` applies the commands.
    pub async fn predict(&self, commands: Vec<Command>) -> Result<Prediction<'_>> {
        let guard = self.term_lock.lock().await;
        let outcomes = self.store.dry_run_all(commands.clone())?;
        Ok(Prediction { cluster: self, _guard: guard, commands, outcomes })
    }

    /// Applies `command` through the metadata store (`MetaStore::apply`).
    pub async fn apply(&self, command: Command) -> Result<Outcome> {
        self.store.apply(command).await
    }

    /// Publishes an operation's progress through the metadata store (`MetaStore::record_progress`), off the async
    /// workers: it waits for a metadata write in progress to finish.
    pub async fn record_progress(&self, command: Command) -> Result<Outcome> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.record_progress(command))
            .await
            .map_err(|e| Error::Internal(format!("progress task failed: {e}")))?
    }

    /// At start-up: steps of operations a restart cut short read as interrupted (`Command::InterruptOperations`).
    pub fn interrupt_operations(&self) -> Result<()> {
        self.store.record_progress(Command::InterruptOperations).map(|_| ())
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

    /// Lets calls to `leaf` use the local RPC socket it reported (None: TCP only), when the leaf is on this host
    /// (`Client::set_local_socket`). The client falls back to TCP if the socket cannot be reached.
    pub fn use_local_socket(&self, leaf: &Leaf, path: Option<&str>) {
        if let Ok(client) = self.client(leaf) {
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

    /// Takes `count` consecutive AUTO_INCREMENT values of `db.table` from the range this aggregator holds, and
    /// returns the first; None when the range holds fewer (then `reserve_auto_increment` and try again). Values come
    /// from ranges reserved in the metadata, so they are unique across the cluster.
    pub fn take_auto_increment(&self, db: &str, table: &str, count: u64) -> Option<i64> {
        let key = (db.to_string(), table.to_ascii_lowercase());
        let mut ranges = self.auto_increment.lock().ok()?;
        let wanted = i64::try_from(count).ok()?;
        let (next, end) = ranges.get_mut(&key)?;
        if *end - *next < wanted {
            return None;
        }
        let first = *next;
        *next += wanted;
        Some(first)
    }

    /// Reserves a new range of at least `count` AUTO_INCREMENT values of `db.table` in the metadata and makes it
    /// the one this aggregator takes from. Values left in the older range are abandoned: values must stay increasing
    /// per aggregator.
    pub async fn reserve_auto_increment(&self, db: &str, table: &str, count: u64) -> Result<()> {
        let batch = count.max(AUTO_INCREMENT_BATCH);
        let command = Command::ReserveAutoIncrement { db: db.to_string(), table: table.to_string(), count: batch };
        let Outcome::AutoIncrementReserved { first } = self.apply(command).await? else {
            return Err(Error::Internal("unexpected outcome of ReserveAutoIncrement".into()));
        };
        let end = i64::try_from(batch).ok().and_then(|b| first.checked_add(b));
        let end = end.ok_or_else(|| Error::Internal("AUTO_INCREMENT range overflows".into()))?;
        let mut ranges = self.auto_increment.lock().map_err(|_| Error::Internal("auto_increment poisoned".into()))?;
        ranges.insert((db.to_string(), table.to_ascii_lowercase()), (first, end));
        Ok(())
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

/// Metadata commands whose outcomes (from a dry run) were told to leaves before they are applied
/// (`Cluster::predict`); no other term-taking command can apply until it is committed or dropped.
pub struct Prediction<'a> {
    cluster: &'a Cluster,
    _guard: tokio::sync::MutexGuard<'a, ()>,
    commands: Vec<Command>,
    outcomes: Vec<Outcome>,
}

impl Prediction<'_> {
    /// What each command will do, in order.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// Applies the commands in order, as one metadata change (`MetaStore::apply_all`). An outcome other than
    /// predicted is a bug (the lock keeps the state still) and an error, after the change.
    pub async fn commit(self) -> Result<Vec<Outcome>> {
        let applied = self.cluster.store.apply_all(self.commands).await?;
        if applied != self.outcomes {
            return Err(Error::Internal(format!("committed {applied:?}, predicted {:?}", self.outcomes)));
        }
        Ok(applied)
    }

    /// Keeps only the first `n` commands (the later ones are given up; the earlier ones' outcomes do not depend on
    /// them).
    pub fn keep_first(mut self, n: usize) -> Self {
        self.commands.truncate(n);
        self.outcomes.truncate(n);
        self
    }
}
