//! The master aggregator's heartbeat and failure detection: pings every leaf each `heartbeat_interval_ms`, feeds
//! the answers to the pure detector (`failure.rs`), and acts on its verdicts:
//! - an online leaf that failed goes `offline` (when `leaf_failure_detection` is ON); its partitions are unmapped;
//! - an offline leaf that answers again is attached (`auto_attach` ON: `attaching` → `online`) or goes `detached`;
//! - an online leaf that reports partitions pending attach (it restarted between two heartbeats, or while this
//!   aggregator was down) gets them attached, without any failover.
//!
//! It also measures the round-trip latency shown by SHOW LEAVES.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy_meta::{Command, LeafState, NodeId};
use canopy_rpc::{Request, Response, RpcError};
use tokio::sync::mpsc;

use crate::attach;
use crate::cluster::Cluster;
use crate::error::Error;
use crate::failure::{LeafWatch, Probe, Thresholds, Verdict};
use crate::node::Node;

/// A ping that takes longer than this counts as unanswered (the silence timeout then decides).
const PING_TIMEOUT: Duration = Duration::from_secs(1);

struct PingResult {
    leaf: NodeId,
    probe: Probe,
    rtt: Duration,
    pending_partitions: u32,
}

fn classify(error: &Error) -> Probe {
    match error {
        Error::LeafUnreachable { source: RpcError::Io(e), .. }
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Probe::Refused
        }
        Error::LeafUnreachable { source: RpcError::Closed, .. } => Probe::Refused,
        _ => Probe::NoAnswer,
    }
}

pub async fn run(node: Arc<Node>) {
    let origin = Instant::now();
    let now_ms = move || origin.elapsed().as_millis() as u64;
    let mut watches: HashMap<NodeId, LeafWatch> = HashMap::new();
    let mut in_flight: HashSet<NodeId> = HashSet::new();
    let mut attaching: HashSet<NodeId> = HashSet::new();
    let (results_tx, mut results_rx) = mpsc::channel::<PingResult>(1024);
    let (attached_tx, mut attached_rx) = mpsc::channel::<NodeId>(64);
    loop {
        let interval = node
            .cluster()
            .map(|c| Duration::from_millis(c.meta().variables.heartbeat_interval_ms))
            .unwrap_or(Duration::from_millis(200));
        tokio::time::sleep(interval).await;
        let Some(cluster) = node.cluster() else { continue };
        while let Ok(leaf) = attached_rx.try_recv() {
            attaching.remove(&leaf);
        }
        let mut last_probe: HashMap<NodeId, PingResult> = HashMap::new();
        while let Ok(result) = results_rx.try_recv() {
            in_flight.remove(&result.leaf);
            let watch = watches.entry(result.leaf).or_insert_with(|| LeafWatch::new(now_ms()));
            watch.observe(result.probe, now_ms());
            cluster.record_ping(result.leaf, (result.probe == Probe::Answered).then_some(result.rtt));
            last_probe.insert(result.leaf, result);
        }
        let meta = cluster.meta();
        let thresholds = Thresholds {
            refused_count: meta.variables.leaf_failure_refused_count,
            timeout_ms: meta.variables.leaf_failure_timeout_ms,
        };
        watches.retain(|id, _| meta.leaves.contains_key(id));
        for leaf in meta.leaves_in_order() {
            let watch = watches.entry(leaf.id).or_insert_with(|| LeafWatch::new(now_ms()));
            let verdict = watch.verdict(now_ms(), thresholds);
            let answered = last_probe.get(&leaf.id).filter(|p| p.probe == Probe::Answered);
            match leaf.state {
                LeafState::Online if verdict == Verdict::Failed && meta.variables.leaf_failure_detection => {
                    tracing::warn!(
                        "leaf {}:{} failed (silent {} ms); marking it offline",
                        leaf.addr.host,
                        leaf.addr.port,
                        watch.silent_ms(now_ms())
                    );
                    if let Err(e) = cluster.apply(Command::SetLeafState { leaf: leaf.id, state: LeafState::Offline }) {
                        tracing::error!("marking leaf offline failed: {e}");
                    }
                    if let Ok(client) = cluster.client(leaf) {
                        client.flush();
                    }
                }
                LeafState::Offline if answered.is_some() && !attaching.contains(&leaf.id) => {
                    attaching.insert(leaf.id);
                    let auto = meta.variables.auto_attach;
                    spawn_attach(cluster.clone(), leaf.id, LeafState::Offline, auto, attached_tx.clone());
                }
                LeafState::Online
                    if answered.is_some_and(|p| p.pending_partitions > 0) && !attaching.contains(&leaf.id) =>
                {
                    attaching.insert(leaf.id);
                    spawn_attach(cluster.clone(), leaf.id, LeafState::Online, true, attached_tx.clone());
                }
                _ => {}
            }
            if in_flight.insert(leaf.id) {
                let cluster = cluster.clone();
                let leaf = leaf.clone();
                let results = results_tx.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let outcome = cluster.call_with_timeout(&leaf, &Request::Ping, PING_TIMEOUT).await;
                    let (probe, pending_partitions) = match outcome {
                        Ok(Response::Pong(status)) => {
                            cluster.use_local_socket(&leaf, status.local_socket.as_deref());
                            (Probe::Answered, status.pending_partitions)
                        }
                        Ok(_) => (Probe::Answered, 0),
                        Err(e) => (classify(&e), 0),
                    };
                    let _ = results
                        .send(PingResult { leaf: leaf.id, probe, rtt: started.elapsed(), pending_partitions })
                        .await;
                });
            }
        }
    }
}

/// A leaf is reachable again (or reports pending partitions): attach it, or with `auto_attach` OFF mark it detached.
/// `seen` is the state that prompted this; the attach is skipped if the leaf left it meanwhile.
fn spawn_attach(cluster: Arc<Cluster>, leaf: NodeId, seen: LeafState, auto_attach: bool, done: mpsc::Sender<NodeId>) {
    tokio::spawn(async move {
        let result = if auto_attach {
            attach::auto_attach_leaf(&cluster, leaf, seen).await
        } else {
            cluster.apply(Command::SetLeafState { leaf, state: LeafState::Detached }).map(|_| ())
        };
        if let Err(e) = result {
            tracing::warn!("attaching leaf {leaf} failed: {e}");
        }
        let _ = done.send(leaf).await;
    });
}
