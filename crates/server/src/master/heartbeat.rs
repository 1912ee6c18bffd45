//! The master aggregator's heartbeat: pings every leaf each `heartbeat_interval_ms`, feeds the answers to the pure
//! `canopy_control::leaves::Monitor` (failure detector + decision table), and executes the actions it returns:
//! - an online leaf that failed goes `offline` (when `leaf_failure_detection` is ON); its partitions are unmapped;
//! - an offline leaf that answers again is attached (`auto_attach` ON: `attaching` → `online`) or goes `detached`;
//! - a leaf left `attaching` by a master aggregator that crashed mid-attach is attached again once it answers;
//! - an online leaf that reports partitions pending attach (it restarted between two heartbeats, or while this
//!   aggregator was down) gets them attached, without any failover; pending orphans start no attach.
//!
//! It also measures the round-trip latency shown by SHOW LEAVES.
//!
//! Only this cluster's leaf counts as an answer: a node at the leaf's address that cannot prove the cluster secret,
//! or whose `Pong` names another cluster or node id, is "not our leaf" (logged, never answered, never attached).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy_meta::{Command, Leaf, LeafState, NodeId};
use canopy_rpc::{NodeStatus, PendingPartition, Request, Response, RpcError};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::master::MasterSlot;
use crate::master::cluster::Cluster;
use crate::master::{attach, replication};
use canopy_control::failure::Probe;
use canopy_control::leaves::{self, LeafAction, Monitor};

/// A ping that takes longer than this counts as unanswered (the silence timeout then decides).
const PING_TIMEOUT: Duration = Duration::from_secs(1);

struct PingResult {
    leaf: NodeId,
    probe: Probe,
    rtt: Duration,
    pending: Vec<PendingPartition>,
    /// Why the node at the leaf's address is not this cluster's leaf, if it is not.
    stranger: Option<String>,
}

/// Whether a `Pong` comes from leaf `node_id` of cluster `cluster_id`; the reason it does not otherwise.
pub fn check_identity(cluster_id: &str, node_id: NodeId, status: &NodeStatus) -> Result<(), String> {
    if status.cluster_id.as_deref() != Some(cluster_id) {
        return Err(format!("it reports cluster {:?}, not {cluster_id}", status.cluster_id));
    }
    if status.node_id != Some(node_id) {
        return Err(format!("it reports node id {:?}, not {}", status.node_id, node_id.0));
    }
    Ok(())
}

/// The reason a failed ping shows the node is not this cluster's (it cannot prove the secret), if so.
fn stranger(error: &Error) -> Option<String> {
    match error {
        Error::LeafUnreachable { source: e @ (RpcError::Unauthenticated(_) | RpcError::PeerUnkeyed), .. } => {
            Some(e.to_string())
        }
        _ => None,
    }
}

/// What a failed ping says about the leaf: nothing listening (refused), alive but at its connection limit (busy),
/// or no answer at all. The transport's classification is `canopy-rpc`'s (`RpcError::is_refusal`).
fn classify(error: &Error) -> Probe {
    match error {
        Error::LeafUnreachable { source: RpcError::Busy, .. } => Probe::Busy,
        Error::LeafUnreachable { source, .. } if source.is_refusal() => Probe::Refused,
        _ => Probe::NoAnswer,
    }
}

pub async fn run(master: Arc<MasterSlot>) {
    let origin = Instant::now();
    let now_ms = move || origin.elapsed().as_millis() as u64;
    let mut monitor = Monitor::new();
    let mut in_flight: HashSet<NodeId> = HashSet::new();
    let mut strangers: HashSet<NodeId> = HashSet::new();
    let mut busy: HashSet<NodeId> = HashSet::new();
    let (results_tx, mut results_rx) = mpsc::channel::<PingResult>(1024);
    let (attached_tx, mut attached_rx) = mpsc::channel::<NodeId>(64);
    let redundancy = Redundancy::default();
    loop {
        let interval = master
            .get()
            .map(|c| Duration::from_millis(c.meta().variables.heartbeat_interval_ms))
            .unwrap_or(Duration::from_millis(200));
        tokio::time::sleep(interval).await;
        let Some(cluster) = master.get() else { continue };
        while let Ok(leaf) = attached_rx.try_recv() {
            monitor.attach_finished(leaf);
        }
        let meta = cluster.meta();
        let mut answers: HashMap<NodeId, leaves::Answer> = HashMap::new();
        while let Ok(result) = results_rx.try_recv() {
            in_flight.remove(&result.leaf);
            note_stranger(&cluster, &mut strangers, &result);
            note_busy(&mut busy, &result);
            monitor.observe(result.leaf, result.probe, now_ms());
            cluster.record_ping(result.leaf, (result.probe == Probe::Answered).then_some(result.rtt));
            if result.probe == Probe::Answered {
                // Only copies the metadata places on this leaf are attached; pending orphans (copies of dropped
                // databases, of partitions served elsewhere) stay pending until CLEAR ORPHAN DATABASES.
                // A copy a move's switch fenced is pending until the switch commits or unfences it, and the switch
                // holds the partition's gate closed until then: such a copy is no restart's. The metadata is read
                // after the gates, so a switch that opened its gate again has committed in it.
                let pending: Vec<_> = result
                    .pending
                    .iter()
                    .filter(|p| cluster.gate(&p.db, p.ordinal).try_read().is_ok())
                    .map(|p| (p.db.as_str(), p.ordinal, p.database_id))
                    .collect();
                let attachable_pending = canopy_control::attach::any_attachable(&cluster.meta(), result.leaf, pending);
                answers.insert(result.leaf, leaves::Answer { attachable_pending });
            }
        }
        for (leaf, action) in monitor.decide(&meta, &answers, now_ms()) {
            let Some(leaf) = meta.leaves.get(&leaf) else { continue };
            execute(&cluster, leaf, action, monitor.silent_ms(leaf.id, now_ms()), &attached_tx).await;
        }
        redundancy.tend(&cluster);
        for leaf in meta.leaves_in_order() {
            if in_flight.insert(leaf.id) {
                spawn_ping(cluster.clone(), leaf.clone(), meta.cluster_id.clone(), results_tx.clone());
            }
        }
    }
}

/// Redundancy 2's background work, at most one pass of each kind at a time: failovers the metadata still calls for
/// (one that failed, a replica whose leaf returned before its master's), and healing replicas that are not in sync.
#[derive(Default)]
struct Redundancy {
    failing_over: Arc<std::sync::atomic::AtomicBool>,
    healing: Arc<std::sync::atomic::AtomicBool>,
    /// When masters were last told again to commit without their out-of-sync replicas (a master that missed the
    /// first word, being slow then, would wait for its replica forever).
    reasserted: std::sync::Mutex<Option<Instant>>,
}

/// How often the heartbeat repeats `replication::reassert_async_replicas` while some replica is out of sync on a
/// leaf that is not online.
const REASSERT_INTERVAL: Duration = Duration::from_secs(5);

impl Redundancy {
    fn tend(&self, cluster: &Arc<Cluster>) {
        use std::sync::atomic::Ordering;
        let meta = cluster.meta();
        if meta.variables.redundancy_level < 2 || !meta.variables.leaf_failure_detection {
            return;
        }
        let actions = canopy_control::failover::actions(&meta);
        if (!actions.promote.is_empty() || !actions.demote.is_empty())
            && !self.failing_over.swap(true, Ordering::AcqRel)
        {
            let (cluster, busy) = (cluster.clone(), self.failing_over.clone());
            tokio::spawn(async move {
                replication::fail_over(&cluster, None).await;
                busy.store(false, Ordering::Release);
            });
        }
        let away = meta.databases.values().any(|d| {
            d.instances.iter().any(|i| {
                i.role == canopy_meta::InstanceRole::Replica && !i.sync && canopy_control::failover::away(&meta, i.node)
            })
        });
        let mut reasserted = self.reasserted.lock().unwrap_or_else(|p| p.into_inner());
        if away && reasserted.is_none_or(|at| at.elapsed() >= REASSERT_INTERVAL) {
            *reasserted = Some(Instant::now());
            tokio::spawn(replication::reassert_async_replicas(cluster.clone()));
        }
        drop(reasserted);
        let needs_healing = !canopy_control::failover::repairs(&meta).is_empty()
            || !canopy_control::failover::missing_replicas(&meta, None).is_empty();
        if needs_healing && !self.healing.swap(true, Ordering::AcqRel) {
            let (cluster, busy) = (cluster.clone(), self.healing.clone());
            tokio::spawn(async move {
                // Behind any running operation (an attach heals its own leaf's replicas).
                let _op = cluster.operation_lock.lock().await;
                replication::heal(&cluster).await;
                busy.store(false, Ordering::Release);
            });
        }
    }
}

/// Carries out one of the monitor's actions; attaches run in the background and report to `done` when finished.
async fn execute(cluster: &Arc<Cluster>, leaf: &Leaf, action: LeafAction, silent_ms: u64, done: &mpsc::Sender<NodeId>) {
    match action {
        LeafAction::MarkOffline => {
            tracing::warn!(
                "leaf {}:{} failed (silent {silent_ms} ms); marking it offline",
                leaf.addr.host,
                leaf.addr.port
            );
            if let Err(e) = cluster.apply(Command::SetLeafState { leaf: leaf.id, state: LeafState::Offline }).await {
                tracing::error!("marking leaf offline failed: {e}");
            }
            if let Ok(client) = cluster.client(leaf) {
                client.flush();
            }
            // Redundancy 2: its masters fail over to their pairs, its replicas leave the commit path.
            replication::fail_over(cluster, Some(leaf.id)).await;
        }
        LeafAction::Attach { seen } => spawn_attach(cluster.clone(), leaf.id, seen, true, done.clone()),
        LeafAction::Detach => spawn_attach(cluster.clone(), leaf.id, LeafState::Offline, false, done.clone()),
        LeafAction::ResumeAttach => spawn_resume(cluster.clone(), leaf.id, done.clone()),
    }
}

/// Pings `leaf` in the background and reports what came back (or did not) to `results`.
fn spawn_ping(cluster: Arc<Cluster>, leaf: Leaf, cluster_id: String, results: mpsc::Sender<PingResult>) {
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = cluster.call_with_timeout(&leaf, &Request::Ping, PING_TIMEOUT).await;
        let (probe, pending, stranger) = match outcome {
            Ok(Response::Pong(status)) => match check_identity(&cluster_id, leaf.id, &status) {
                Ok(()) => {
                    cluster.use_local_socket(&leaf, status.local_socket.as_deref());
                    (Probe::Answered, status.pending, None)
                }
                Err(why) => (Probe::NoAnswer, Vec::new(), Some(why)),
            },
            Ok(other) => (Probe::NoAnswer, Vec::new(), Some(format!("it answered a ping with {other:?}"))),
            Err(e) => match stranger(&e) {
                Some(why) => (Probe::NoAnswer, Vec::new(), Some(why)),
                None => (classify(&e), Vec::new(), None),
            },
        };
        let rtt = started.elapsed();
        let _ = results.send(PingResult { leaf: leaf.id, probe, rtt, pending, stranger }).await;
    });
}

/// A leaf is found `attaching` with no attach running here: finish the attach.
fn spawn_resume(cluster: Arc<Cluster>, leaf: NodeId, done: mpsc::Sender<NodeId>) {
    tokio::spawn(async move {
        if let Err(e) = attach::resume_attach(&cluster, leaf).await {
            tracing::warn!("resuming the attach of leaf {leaf} failed: {e}");
        }
        let _ = done.send(leaf).await;
    });
}

/// Logs when the node at a leaf's address starts or stops being a stranger (not this cluster's leaf).
fn note_stranger(cluster: &Cluster, strangers: &mut HashSet<NodeId>, result: &PingResult) {
    match &result.stranger {
        Some(why) if strangers.insert(result.leaf) => {
            let addr = cluster.meta().leaves.get(&result.leaf).map(|l| format!("{}:{}", l.addr.host, l.addr.port));
            tracing::warn!(
                "the node at leaf {}'s address {} is not our leaf ({why}); it is neither answered nor attached",
                result.leaf,
                addr.unwrap_or_default()
            );
        }
        Some(_) => {}
        None if result.probe == Probe::Answered && strangers.remove(&result.leaf) => {
            tracing::info!("leaf {} answers as our leaf again", result.leaf);
        }
        None => {}
    }
}

/// Logs when a leaf starts or stops answering pings with "busy" (its RPC server at its connection limit).
fn note_busy(busy: &mut HashSet<NodeId>, result: &PingResult) {
    match result.probe {
        Probe::Busy if busy.insert(result.leaf) => {
            tracing::warn!("leaf {} is at its RPC connection limit (busy); it counts as alive", result.leaf);
        }
        Probe::Answered if busy.remove(&result.leaf) => tracing::info!("leaf {} is no longer busy", result.leaf),
        _ => {}
    }
}

/// A leaf is reachable again (or reports pending partitions): attach it, or with `auto_attach` OFF mark it detached.
/// `seen` is the state that prompted this; the attach is skipped if the leaf left it meanwhile.
fn spawn_attach(cluster: Arc<Cluster>, leaf: NodeId, seen: LeafState, auto_attach: bool, done: mpsc::Sender<NodeId>) {
    tokio::spawn(async move {
        let result = if auto_attach {
            attach::auto_attach_leaf(&cluster, leaf, seen).await
        } else {
            cluster.apply(Command::SetLeafState { leaf, state: LeafState::Detached }).await.map(|_| ())
        };
        if let Err(e) = result {
            tracing::warn!("attaching leaf {leaf} failed: {e}");
        }
        let _ = done.send(leaf).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(cluster_id: Option<&str>, node_id: Option<u32>) -> NodeStatus {
        NodeStatus {
            cluster_id: cluster_id.map(String::from),
            node_id: node_id.map(NodeId),
            pending: Vec::new(),
            local_socket: None,
        }
    }

    #[test]
    fn only_our_cluster_and_node_id_count_as_our_leaf() {
        assert!(check_identity("a", NodeId(4), &status(Some("a"), Some(4))).is_ok());
        assert!(check_identity("a", NodeId(4), &status(Some("b"), Some(4))).is_err(), "another cluster");
        assert!(check_identity("a", NodeId(4), &status(Some("a"), Some(5))).is_err(), "another leaf of ours");
        assert!(check_identity("a", NodeId(4), &status(None, None)).is_err(), "an unconfigured node");
    }
}
