//! Online partition moves: COPY PARTITION then PROMOTE PARTITION WITH DROP, the two halves a rebalance plan
//! (`rebalance.rs`: REBALANCE, and DETACH/REMOVE LEAF emptying a leaf) runs as separate phases (`copy_phase`,
//! `promote_with_drop`), while clients keep reading and writing.
//!
//! In redundancy 2 a partition moves to another pair: it is copied onto both leaves of the pair, and the switch
//! also makes the copy on the new master's pair leaf (the follower) its replica in the commit path, under the same
//! closed gate, before the metadata commit: the old master's replicas are recorded out of sync, the new master
//! promoted and the follower recorded in sync in one prediction, so no statement ever reaches a master whose
//! acknowledged writes are on one copy only. The old replica is dropped by a later step of the plan.
//!
//! A move of `db:k` from leaf S to leaf T:
//! 1. COPY: T pulls a consistent snapshot of the partition from S (SQLite online backup), installs it as a
//!    non-serving copy, and catches up from S's change log; the copy is registered as a replica instance.
//! 2. PROMOTE WITH DROP: the aggregator closes the partition's gate (new statements wait, running ones finish), S
//!    stops serving the partition (fenced) and reports its final log position, T catches up to exactly that
//!    position, T starts serving, the metadata makes T's instance the master in a new term and forgets S's (the
//!    commit point), the gate opens, and S drops its copy. The gate stays closed at most `SWITCH_DEADLINE_MS`.
//!
//! Every step is recorded for SHOW REBALANCE STATUS. A failure before the metadata switch undoes the move (S serves
//! again, T's copy is dropped); nothing after it is undone (a failure there only logs, and leaves S's copy as an
//! orphan at worst). A crash leaves T's copy pending and unregistered, i.e. an orphan, never a live instance, and
//! the move can simply be run again.

use std::sync::Arc;
use std::time::Duration;

use canopy_meta::{Command, InstanceId, InstanceRole, Leaf, LeafState, NodeId, Outcome};
use canopy_rpc::{PartitionTerm, Request, Response};

use crate::answer::Answer;
use crate::error::{Error, MoveAbort, Result};
use crate::master::attach::run_step;
use crate::master::cluster::Cluster;
use crate::master::{rebalance, reference, replication};

/// How long a move waits for the statements running on the partition to finish before it gives up.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the switch may hold the partition's gate closed (fence, final catch-up, target attach). On expiry the
/// move gives up: the source serves again and the gate opens, so a frozen leaf stalls statements this long at most.
const SWITCH_DEADLINE_MS: u64 = 10_000;
/// How long un-fencing the source may take when a switch is abandoned (still under the gate).
const UNFENCE_TIMEOUT_MS: u64 = 5_000;
/// How long dropping a copy may take; a drop that does not finish leaves an orphan, never a live instance.
const DROP_COPY_TIMEOUT_MS: u64 = 30_000;
/// A COPY gives up when its target answers no ping for this long. Nothing bounds the copy's total time: the target
/// bounds it by progress (each request to the source has its own timeout, catch-up rounds are limited), so a
/// target that answers always finishes or fails the copy, however large the partition.
const COPY_SILENCE_MS: u64 = 60_000;
/// How often the target of a running COPY is pinged, and how long each ping may take.
const COPY_PING_INTERVAL_MS: u64 = 1_000;
const COPY_PING_TIMEOUT_MS: u64 = 5_000;
/// The CopyPartition call itself: far beyond any copy (the pings decide), but finite.
const COPY_CALL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// DETACH LEAF / REMOVE LEAF (not FORCE) in redundancy 1: a plan per database with the leaf excluded moves every
/// partition off it (`rebalance::empty_leaf`); with `detach` the leaf is then marked detached. The operation lock is
/// held from the first move to the state change, so no CREATE DATABASE can place partitions on the leaf in between.
pub async fn move_partitions_off(cluster: &Arc<Cluster>, leaf: NodeId) -> Result<u64> {
    let _op = cluster.operation_lock.lock().await;
    rebalance::empty_leaf(cluster, leaf).await
}

/// DETACH LEAF of a leaf holding partitions (redundancy 1): its partitions move away, then it is detached.
pub async fn detach_leaf(cluster: &Arc<Cluster>, leaf: NodeId) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let moved = rebalance::empty_leaf(cluster, leaf).await?;
    if cluster.meta().databases.values().any(|d| d.instances.iter().any(|i| i.node == leaf)) {
        // A partition whose master is on a leaf that is not online cannot move; detaching now would take its
        // instances out of service.
        return Err(Error::Unsupported(
            "the leaf still holds partition instances that could not move (their master is not online)".into(),
        ));
    }
    cluster.apply(Command::SetLeafState { leaf, state: LeafState::Detached }).await?;
    Ok(Answer::affected(moved))
}

/// The registered copy on the new master's pair leaf of a redundancy-2 move: it becomes the new master's replica.
#[derive(Debug, Clone)]
pub(crate) struct Follower {
    pub leaf: Leaf,
    pub replica: InstanceId,
}

/// PROMOTE PARTITION WITH DROP of the registered copy `replica` on `target` (the step `promote_step` of the
/// operation record): the switch, then the old copy on `source` is dropped. A switch that fails before its commit
/// forgets and drops the target's copy and the follower's (the source serves on); after the commit nothing is
/// undone.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn promote_with_drop(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinal: u32,
    source: &Leaf,
    target: &Leaf,
    replica: InstanceId,
    follower: Option<&Follower>,
    promote_step: u32,
) -> Result<()> {
    if let Err(e) = switch_phase(cluster, db, ordinal, source, target, replica, follower, promote_step).await {
        forget_copy(cluster, db, ordinal, target, Some(replica)).await;
        reference::release_if_unheld(cluster, db, target).await;
        if let Some(follower) = follower {
            abandon_copy(cluster, db, ordinal, &follower.leaf, follower.replica).await;
        }
        return Err(e);
    }
    // Cleanup: the old copy is garbage now; a failure to drop it leaves an orphan, never a live instance. A source
    // left without any partition of the database drops its reference copy.
    drop_copy(cluster, source, db, ordinal).await;
    reference::release_if_unheld(cluster, db, source).await;
    Ok(())
}

/// Undoes a finished COPY whose promotion will not run (a later step of its plan failed): the replica instance is
/// forgotten, its file dropped, and the target's reference copy released if it no longer holds the database.
pub(crate) async fn abandon_copy(cluster: &Cluster, db: &str, ordinal: u32, target: &Leaf, replica: InstanceId) {
    forget_copy(cluster, db, ordinal, target, Some(replica)).await;
    reference::release_if_unheld(cluster, db, target).await;
}

/// Brings a registered copy closer to its source before a switch, outside the gate, so the catch-up under the
/// closed gate has little left to apply. Best-effort: the switch checks the final position itself.
pub(crate) async fn pre_catch_up(cluster: &Cluster, db: &str, ordinal: u32, source: &Leaf, target: &Leaf) {
    let source_partition = match source_partition(cluster, db, ordinal, source) {
        Ok(partition) => partition,
        Err(e) => {
            tracing::info!("{db}:{ordinal}: no catch-up before the switch ({e}); the switch checks itself");
            return;
        }
    };
    let catch_up = Request::CatchUp {
        db: db.to_string(),
        source: source_partition,
        source_host: source.addr.host.clone(),
        source_rpc_port: source.addr.rpc_port,
    };
    if let Err(e) = cluster.call(target, &catch_up).await {
        tracing::info!("{db}:{ordinal}: catch-up before the switch failed ({e}); the switch catches up itself");
    }
}

/// COPY: the target pulls a snapshot and catches up, then its copy is registered as a replica instance, whose id
/// is returned. On failure the target's copy is forgotten and dropped.
pub(crate) async fn copy_phase(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinal: u32,
    source: &Leaf,
    target: &Leaf,
    copy_step: u32,
) -> Result<InstanceId> {
    discard_unfinished_copies(cluster, db, ordinal, target.id).await?;
    // The metadata lists no instance of this partition on the target, so any copy there is an orphan left by an
    // interrupted move: replace it.
    if cluster
        .meta()
        .databases
        .get(db)
        .is_some_and(|d| d.instances.iter().any(|i| i.ordinal == ordinal && i.node == target.id))
    {
        return Err(Error::Internal(format!("{db}:{ordinal} already has an instance on the move's target")));
    }
    drop_copy(cluster, target, db, ordinal).await;
    let copy = Request::CopyPartition {
        db: db.to_string(),
        source: source_partition(cluster, db, ordinal, source)?,
        source_host: source.addr.host.clone(),
        source_rpc_port: source.addr.rpc_port,
    };
    let mut replica = None;
    let copied = run_step(cluster, db, copy_step, async {
        // The copy joins against the target's reference copy: give the target a current one first. Everything the
        // target does here is bounded by its answering pings, not by a total time.
        let attempt = || {
            while_target_answers(cluster, db, ordinal, target, async {
                reference::provide(cluster, db, target).await?;
                cluster.call_with_timeout(target, &copy, COPY_CALL_TIMEOUT).await.map(|_| ())
            })
        };
        match attempt().await {
            // The target's pooled connection to the source broke (the source restarted since the target last used
            // it): the target dropped it, so one more attempt connects afresh.
            Err(e) if source_connection_broke(&e) => {
                tracing::info!("{db}:{ordinal}: the copy's source connection broke ({e}); trying once more");
                attempt().await?
            }
            done => done?,
        }
        // Registering the copy makes the target a reference holder: a last catch-up under the reference lock, so no
        // reference write falls between the two.
        let _reference = reference::lock(cluster, db).await;
        while_target_answers(cluster, db, ordinal, target, reference::provide(cluster, db, target)).await?;
        let added = cluster
            .apply(Command::AddInstance { db: db.to_string(), ordinal, node: target.id, role: InstanceRole::Replica })
            .await?;
        if let Outcome::InstanceAdded(instance) = added {
            replica = Some(instance.id);
        }
        Ok(())
    })
    .await;
    match (copied, replica) {
        (Ok(()), Some(replica)) => Ok(replica),
        (copied, replica) => {
            forget_copy(cluster, db, ordinal, target, replica).await;
            reference::release_if_unheld(cluster, db, target).await;
            Err(copied.err().unwrap_or_else(|| Error::Internal("copy registered no instance".into())))
        }
    }
}

/// Whether a copy failed because the target's connection to its source broke (the leaf reports it as "source leaf
/// unreachable" and drops its pooled connection, `leaf::source::call`).
fn source_connection_broke(e: &Error) -> bool {
    matches!(e, Error::Remote(r) if r.message.starts_with("source leaf unreachable"))
}

/// Runs `work` (requests to the target) for as long as it takes, while the target keeps answering pings; a target
/// silent for `COPY_SILENCE_MS` abandons it.
async fn while_target_answers<T>(
    cluster: &Cluster,
    db: &str,
    ordinal: u32,
    target: &Leaf,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let watch = async {
        let mut answered = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(COPY_PING_INTERVAL_MS)).await;
            let ping = Duration::from_millis(COPY_PING_TIMEOUT_MS);
            if cluster.call_with_timeout(target, &Request::Ping, ping).await.is_ok() {
                answered = tokio::time::Instant::now();
            } else if answered.elapsed() > Duration::from_millis(COPY_SILENCE_MS) {
                return Error::MoveAbandoned {
                    db: db.to_string(),
                    ordinal,
                    reason: MoveAbort::TargetSilent { silence_ms: COPY_SILENCE_MS },
                };
            }
        }
    };
    tokio::select! {
        done = work => done,
        silent = watch => Err(silent),
    }
}

/// SWITCH (PROMOTE WITH DROP): under the partition's closed gate, fence the source, let the target (and the
/// follower) apply the source's whole log, put the follower in the target's commit path, and commit the switch in
/// the metadata. `Ok` once committed, whatever happens afterwards (the step's status is recorded best-effort); on an
/// error before the commit the source serves again (its in-sync replicas recorded out of sync first, then brought
/// back by `replication::resync`).
#[allow(clippy::too_many_arguments)]
async fn switch_phase(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinal: u32,
    source: &Leaf,
    target: &Leaf,
    replica: InstanceId,
    follower: Option<&Follower>,
    promote_step: u32,
) -> Result<()> {
    let mut committed = false;
    let mut out_of_sync: Vec<InstanceId> = Vec::new();
    let switched = run_step(cluster, db, promote_step, async {
        let gate = cluster.gate(db, ordinal);
        let _closed = tokio::time::timeout(SWITCH_TIMEOUT, gate.write())
            .await
            .map_err(|_| Error::Internal(format!("statements on {db}:{ordinal} did not finish in time")))?;
        // The old master's replicas in sync leave it with it: recorded out of sync in the same prediction, before
        // the promotion, so none stays a failover candidate once the old master is gone. The follower is recorded
        // in sync after the promotion, once it is in the new master's commit path.
        let meta = cluster.meta();
        let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
        out_of_sync = database
            .replicas(ordinal)
            .filter(|r| r.sync && r.id != replica && follower.is_none_or(|f| f.replica != r.id))
            .map(|r| r.id)
            .collect();
        let mut commands: Vec<Command> = out_of_sync
            .iter()
            .map(|&instance| Command::SetReplicaSync { db: db.to_string(), instance, sync: false })
            .collect();
        commands.push(Command::PromoteWithDrop { db: db.to_string(), instance: replica });
        if let Some(follower) = follower {
            commands.push(Command::SetReplicaSync { db: db.to_string(), instance: follower.replica, sync: true });
        }
        // The target learns the term the promotion will give it before the promotion commits.
        let prediction = cluster.predict(commands).await?;
        let Some(term) = prediction.outcomes().iter().find_map(|o| match o {
            Outcome::Promoted { term } => Some(*term),
            _ => None,
        }) else {
            return Err(Error::Internal("PromoteWithDrop would not promote".into()));
        };
        let deadline = Duration::from_millis(SWITCH_DEADLINE_MS);
        let under_gate = switch_under_gate(cluster, db, ordinal, term, source, target, replica, follower);
        let prepared = match tokio::time::timeout(deadline, under_gate).await {
            Ok(prepared) => prepared,
            Err(_) => Err(Error::MoveAbandoned {
                db: db.to_string(),
                ordinal,
                reason: MoveAbort::SwitchDeadline { deadline_ms: SWITCH_DEADLINE_MS },
            }),
        };
        // The commit point: once the promotion is persisted the target is the master, in the term the target was
        // attached with.
        let finished = match prepared {
            Ok(()) => prediction.commit().await.map(|_| ()),
            Err(e) => {
                drop(prediction);
                Err(e)
            }
        };
        if finished.is_err() && !promoted(cluster, db, replica) {
            // Not switched: the source serves again, alone (a source that does not answer stays fenced, i.e.
            // pending, and is re-attached by the heartbeat like any pending partition). Serving alone is allowed
            // only once its replicas in sync are recorded out of sync.
            for &instance in &out_of_sync {
                replication::record_async(cluster, db, instance).await?;
            }
            let partitions = vec![source_partition(cluster, db, ordinal, source)?];
            let attach = Request::AttachPartitions { db: db.to_string(), partitions };
            let unfence = cluster.call_with_timeout(source, &attach, Duration::from_millis(UNFENCE_TIMEOUT_MS)).await;
            if let Err(e) = unfence {
                tracing::warn!("{db}:{ordinal}: the source did not resume serving after an abandoned switch: {e}");
            }
        }
        committed = promoted(cluster, db, replica);
        finished
    })
    .await;
    if !committed {
        // The source's replicas back in its commit path (healing retries what fails here).
        for &instance in &out_of_sync {
            if let Err(e) = replication::resync(cluster, db, instance).await {
                tracing::warn!("{db}:{ordinal}: the replica is not back in sync after an abandoned switch: {e}");
            }
        }
    }
    match switched {
        Err(e) if committed => {
            // Past the commit point an error must never undo the switch: the target is the master now.
            tracing::warn!("{db}:{ordinal} switched to its new master, but recording the step failed: {e}");
            Ok(())
        }
        other => other,
    }
}

/// The source's master instance of `db:ordinal` as requests address it (its term from the metadata).
fn source_partition(cluster: &Cluster, db: &str, ordinal: u32, source: &Leaf) -> Result<PartitionTerm> {
    let meta = cluster.meta();
    let master = meta.databases.get(db).and_then(|d| d.master(ordinal)).filter(|m| m.node == source.id);
    let master = master.ok_or_else(|| Error::Internal(format!("{db}:{ordinal} has no master on the move's source")))?;
    Ok(PartitionTerm { ordinal, term: master.term })
}

/// Whether `instance` is its partition's master in the metadata (the switch committed).
fn promoted(cluster: &Cluster, db: &str, instance: InstanceId) -> bool {
    let meta = cluster.meta();
    meta.databases
        .get(db)
        .is_some_and(|d| d.instances.iter().any(|i| i.id == instance && i.role == InstanceRole::Master))
}

/// The leaf work of the switch, run while no statement can reach either copy: fence the source, bring the target
/// (and the follower) to the source's final position, make the target serve in `term`, the one the promotion will
/// give it, and put the follower in its commit path. The commit follows.
#[allow(clippy::too_many_arguments)]
async fn switch_under_gate(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinal: u32,
    term: canopy_meta::Term,
    source: &Leaf,
    target: &Leaf,
    replica: InstanceId,
    follower: Option<&Follower>,
) -> Result<()> {
    let source_partition = source_partition(cluster, db, ordinal, source)?;
    let catch_up = Request::CatchUp {
        db: db.to_string(),
        source: source_partition,
        source_host: source.addr.host.clone(),
        source_rpc_port: source.addr.rpc_port,
    };
    let fence = Request::FencePartition { db: db.to_string(), partition: source_partition };
    let fenced = cluster.call(source, &fence).await?;
    let source_index = position(fenced, "FencePartition")?;
    let mut copies = vec![target];
    copies.extend(follower.map(|f| &f.leaf));
    for copy in copies {
        let target_index = position(cluster.call(copy, &catch_up).await?, "CatchUp")?;
        if target_index != source_index {
            // Promoting now would drop the entries the copy lacks with the source.
            return Err(Error::MoveAbandoned {
                db: db.to_string(),
                ordinal,
                reason: MoveAbort::NotCaughtUp { source_index, target_index },
            });
        }
    }
    let attach = Request::AttachPartitions { db: db.to_string(), partitions: vec![PartitionTerm { ordinal, term }] };
    cluster.call(target, &attach).await?;
    let Some(follower) = follower else { return Ok(()) };
    // The follower becomes the replica of the new master in its new term and enters its commit path before any
    // statement reaches the new master.
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let instance = |id: InstanceId| {
        database.instance(id).cloned().ok_or_else(|| Error::Internal(format!("{db}:{ordinal}: no instance {id}")))
    };
    let master = canopy_meta::Instance { role: InstanceRole::Master, term, ..instance(replica)? };
    // It reached the fenced master's final position: nothing to catch up, so the short timeout of a role change.
    let follower = instance(follower.replica)?;
    replication::start_replica(cluster, &meta, db, &master, &follower, replication::ROLE_CHANGE_TIMEOUT).await
}

/// Undoes a copy that never became the master: forgets its replica instance (if registered) and drops its file.
pub(crate) async fn forget_copy(cluster: &Cluster, db: &str, ordinal: u32, target: &Leaf, replica: Option<InstanceId>) {
    if let Some(instance) = replica
        && let Err(e) = cluster.apply(Command::RemoveInstance { db: db.to_string(), instance }).await
    {
        tracing::warn!("forgetting the unfinished copy of {db}:{ordinal} failed: {e}");
    }
    drop_copy(cluster, target, db, ordinal).await;
}

/// The log index in a leaf's `Position` answer to `request`.
fn position(response: Response, request: &str) -> Result<u64> {
    match response {
        Response::Position { log_index } => Ok(log_index),
        other => Err(Error::Internal(format!("{request} answered {other:?} instead of a log position"))),
    }
}

/// A move interrupted by a master aggregator crash can leave a registered, never-promoted replica instance: forget
/// it and drop its file before starting again, so the move can simply be rerun. In redundancy 1 every replica is
/// such a leftover; in redundancy 2 only one on the copy's target that is out of sync (the partition's real replica,
/// and the other copy of the same move, stay).
async fn discard_unfinished_copies(cluster: &Cluster, db: &str, ordinal: u32, target: NodeId) -> Result<()> {
    let meta = cluster.meta();
    let Some(database) = meta.databases.get(db) else { return Ok(()) };
    let paired = meta.variables.redundancy_level == 2;
    let stale = |i: &&canopy_meta::Instance| {
        i.ordinal == ordinal && i.role == InstanceRole::Replica && (!paired || (i.node == target && !i.sync))
    };
    for stale in database.instances.iter().filter(stale) {
        cluster.apply(Command::RemoveInstance { db: db.to_string(), instance: stale.id }).await?;
        if let Some(leaf) = meta.leaves.get(&stale.node) {
            drop_copy(cluster, leaf, db, ordinal).await;
        }
    }
    Ok(())
}

async fn drop_copy(cluster: &Cluster, leaf: &Leaf, db: &str, ordinal: u32) {
    let drop = Request::DropPartition { db: db.to_string(), ordinal };
    if let Err(e) = cluster.call_with_timeout(leaf, &drop, Duration::from_millis(DROP_COPY_TIMEOUT_MS)).await {
        tracing::warn!("dropping {db}:{ordinal} on {}:{} failed: {e}", leaf.addr.host, leaf.addr.port);
    }
}
