//! Online partition moves (redundancy 1): COPY PARTITION then PROMOTE PARTITION WITH DROP, used by DETACH LEAF and
//! REMOVE LEAF to empty a leaf while clients keep reading and writing, and by REBALANCE (`rebalance.rs`), which runs
//! the two halves as separate plan phases (`copy_phase`, `promote_with_drop`).
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

use canopy_control::placement::{self, PlacementError};
use canopy_meta::{Action, Command, InstanceId, InstanceRole, Leaf, LeafState, NodeId, Outcome, Step};
use canopy_rpc::{PartitionTerm, Request, Response};

use crate::answer::Answer;
use crate::error::{Error, MoveAbort, Result};
use crate::master::attach::run_step;
use crate::master::cluster::Cluster;
use crate::master::reference;

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

/// Moves every partition instance off `leaf`, one at a time, to the online leaf holding the fewest partitions of
/// that database.
pub async fn move_partitions_off(cluster: &Arc<Cluster>, leaf: NodeId) -> Result<u64> {
    let _op = cluster.operation_lock.lock().await;
    move_all_off(cluster, leaf).await
}

/// `move_partitions_off` for a caller that holds the operation lock. The targets are `canopy-control`'s
/// (`placement::drain_targets`).
async fn move_all_off(cluster: &Arc<Cluster>, leaf: NodeId) -> Result<u64> {
    let meta = cluster.meta();
    let mut moved = 0u64;
    for database in meta.databases.values() {
        let plan = placement::drain_targets(&meta, &database.name, leaf).map_err(|e| match e {
            PlacementError::NoTarget { .. } => {
                Error::Unsupported("no other online leaf can take the partitions".into())
            }
            PlacementError::UnknownDatabase(db) => Error::UnknownDatabase(db),
        })?;
        if plan.is_empty() {
            continue;
        }
        let mut steps = Vec::new();
        for &(ordinal, target) in &plan {
            steps.push(Step::scheduled(Action::CopyPartition, ordinal, target, 1, 1000));
        }
        for &(ordinal, target) in &plan {
            steps.push(Step::scheduled(Action::PromotePartitionWithDrop, ordinal, target, 2, 200));
        }
        cluster.apply(Command::RecordOperation { db: database.name.clone(), steps }).await?;
        let count = plan.len() as u32;
        for (index, &(ordinal, target)) in plan.iter().enumerate() {
            move_one(cluster, &database.name, ordinal, leaf, target, index as u32, count + index as u32).await?;
            moved += 1;
        }
    }
    Ok(moved)
}

/// DETACH LEAF of a leaf holding partitions: move them away, then mark it detached. The operation lock is held
/// from the first move to the state change, so no CREATE DATABASE can place partitions on the leaf in between.
pub async fn detach_leaf(cluster: &Arc<Cluster>, leaf: NodeId) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let moved = move_all_off(cluster, leaf).await?;
    if cluster.meta().databases.values().any(|d| d.instances.iter().any(|i| i.node == leaf)) {
        // Cannot happen under the lock; detaching now would take live instances out of service.
        return Err(Error::Internal("the leaf still holds partition instances after its moves".into()));
    }
    cluster.apply(Command::SetLeafState { leaf, state: LeafState::Detached }).await?;
    Ok(Answer::affected(moved))
}

fn leaf_of(cluster: &Cluster, id: NodeId) -> Result<Leaf> {
    cluster.meta().leaves.get(&id).cloned().ok_or(Error::Meta(canopy_meta::MetaError::UnknownLeaf(id)))
}

/// One move in three phases. COPY and SWITCH undo themselves when they fail before the commit point (the
/// `PromoteWithDrop` metadata change): the source serves again and the target's copy is forgotten and dropped.
/// After the commit nothing is ever undone: failures only log, and at worst leave the source's copy as an orphan.
async fn move_one(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinal: u32,
    source_id: NodeId,
    target_id: NodeId,
    copy_step: u32,
    promote_step: u32,
) -> Result<()> {
    let source = leaf_of(cluster, source_id)?;
    let target = leaf_of(cluster, target_id)?;
    let replica = copy_phase(cluster, db, ordinal, &source, &target, copy_step).await?;
    promote_with_drop(cluster, db, ordinal, &source, &target, replica, promote_step).await
}

/// PROMOTE PARTITION WITH DROP of the registered copy `replica` on `target` (the step `promote_step` of the
/// operation record): the switch, then the old copy on `source` is dropped. A switch that fails before its commit
/// forgets and drops the target's copy (the source serves on); after the commit nothing is undone.
pub(crate) async fn promote_with_drop(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinal: u32,
    source: &Leaf,
    target: &Leaf,
    replica: InstanceId,
    promote_step: u32,
) -> Result<()> {
    if let Err(e) = switch_phase(cluster, db, ordinal, source, target, replica, promote_step).await {
        forget_copy(cluster, db, ordinal, target, Some(replica)).await;
        reference::release_if_unheld(cluster, db, target).await;
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
    discard_unfinished_copies(cluster, db, ordinal).await?;
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
        while_target_answers(cluster, db, ordinal, target, async {
            reference::provide(cluster, db, target).await?;
            cluster.call_with_timeout(target, &copy, COPY_CALL_TIMEOUT).await.map(|_| ())
        })
        .await?;
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

/// SWITCH (PROMOTE WITH DROP): under the partition's closed gate, fence the source, let the target apply the
/// source's whole log, and commit the switch in the metadata. `Ok` once committed, whatever happens afterwards
/// (the step's status is recorded best-effort); on an error before the commit the source serves again.
async fn switch_phase(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinal: u32,
    source: &Leaf,
    target: &Leaf,
    replica: InstanceId,
    promote_step: u32,
) -> Result<()> {
    let mut committed = false;
    let switched = run_step(cluster, db, promote_step, async {
        let gate = cluster.gate(db, ordinal);
        let _closed = tokio::time::timeout(SWITCH_TIMEOUT, gate.write())
            .await
            .map_err(|_| Error::Internal(format!("statements on {db}:{ordinal} did not finish in time")))?;
        // The target learns the term the promotion will give it before the promotion commits.
        let prediction =
            cluster.predict(vec![Command::PromoteWithDrop { db: db.to_string(), instance: replica }]).await?;
        let Some(Outcome::Promoted { term }) = prediction.outcomes().first().cloned() else {
            return Err(Error::Internal("PromoteWithDrop would not promote".into()));
        };
        let deadline = Duration::from_millis(SWITCH_DEADLINE_MS);
        let prepared =
            match tokio::time::timeout(deadline, switch_under_gate(cluster, db, ordinal, term, source, target)).await {
                Ok(prepared) => prepared,
                Err(_) => Err(Error::MoveAbandoned {
                    db: db.to_string(),
                    ordinal,
                    reason: MoveAbort::SwitchDeadline { deadline_ms: SWITCH_DEADLINE_MS },
                }),
            };
        // The commit point: once this metadata change is persisted the target is the master, in the term the
        // target was attached with.
        let finished = match prepared {
            Ok(()) => prediction.commit().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if finished.is_err() && !promoted(cluster, db, replica) {
            // Not switched: the source serves again (a source that does not answer stays fenced, i.e. pending, and
            // is re-attached by the heartbeat like any pending partition).
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
/// to the source's final position, and make it serve in `term`, the one the promotion will give it. The commit
/// follows.
async fn switch_under_gate(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinal: u32,
    term: canopy_meta::Term,
    source: &Leaf,
    target: &Leaf,
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
    let target_index = position(cluster.call(target, &catch_up).await?, "CatchUp")?;
    if target_index != source_index {
        // Promoting now would drop the entries the target lacks with the source.
        return Err(Error::MoveAbandoned {
            db: db.to_string(),
            ordinal,
            reason: MoveAbort::NotCaughtUp { source_index, target_index },
        });
    }
    let attach = Request::AttachPartitions { db: db.to_string(), partitions: vec![PartitionTerm { ordinal, term }] };
    cluster.call(target, &attach).await.map(|_| ())
}

/// Undoes a copy that never became the master: forgets its replica instance (if registered) and drops its file.
async fn forget_copy(cluster: &Cluster, db: &str, ordinal: u32, target: &Leaf, replica: Option<InstanceId>) {
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
/// it and drop its file before starting again, so the move can simply be rerun.
async fn discard_unfinished_copies(cluster: &Cluster, db: &str, ordinal: u32) -> Result<()> {
    let meta = cluster.meta();
    let Some(database) = meta.databases.get(db) else { return Ok(()) };
    for stale in database.instances.iter().filter(|i| i.ordinal == ordinal && i.role == InstanceRole::Replica) {
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
