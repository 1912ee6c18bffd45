//! Leaf lifecycle operations of the master aggregator in redundancy 1: ATTACH LEAF (also run automatically when an
//! offline leaf answers again), ATTACH PARTITION, REMOVE LEAF FORCE, and DETACH/REMOVE of leaves that hold nothing.
//! Each attach records its ATTACH PARTITION steps per database, so SHOW REBALANCE STATUS shows what was done.
//!
//! Per partition found on a returning leaf (spec 2.7 / 13.3, redundancy 1): an instance the metadata places on
//! this leaf is re-attached; a partition whose database is unknown (dropped while the leaf was away) is a conflict,
//! an error without FORCE and left as an orphan with it; a copy of a partition the metadata places elsewhere is left
//! as an orphan. Nothing is ever deleted here: orphans stay on disk until CLEAR ORPHAN DATABASES.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use canopy_control::attach::{CopyFacts, Decision, check_copy, decide};
use canopy_meta::{Action, Command, InstanceRole, LeafState, NodeId, Outcome, Step, StepStatus};
use canopy_rpc::{LocalDatabase, PartitionTerm, Request, Response};

use crate::answer::Answer;
use crate::error::{AttachRefusal, Error, Result};
use crate::master::cluster::Cluster;
use crate::master::{reference, replication};

/// The facts the pure attach decisions need about a copy a leaf reports.
pub fn facts(local: &LocalDatabase) -> CopyFacts {
    CopyFacts {
        name: local.name.clone(),
        db: local.db.clone(),
        ordinal: local.ordinal,
        database_id: local.database_id,
        cluster_id: local.cluster_id.clone(),
        tables: local.tables.clone(),
        state: local.state,
        term: local.term,
    }
}

/// Test-only: milliseconds the master aggregator waits after marking a leaf `attaching` and before the leaf work, so
/// an end-to-end test can crash it in the middle of an attach. Never set it in production.
pub const TEST_ATTACH_PAUSE_ENV: &str = "CANOPY_TEST_ATTACH_PAUSE_MS";

/// ATTACH LEAF for `leaf_id`. `force` turns conflicts into orphans instead of an error.
pub async fn attach_leaf(cluster: &Arc<Cluster>, leaf_id: NodeId, force: bool) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    attach_leaf_locked(cluster, leaf_id, force).await
}

/// Finishes an attach that no one runs any more: a leaf found `attaching` while the operation lock is free was left
/// so by a master aggregator that crashed during the attach (every attach holds the lock from marking the leaf
/// `attaching` until it is online or back where it was). A leaf in any other state is left alone (None).
pub async fn resume_attach(cluster: &Arc<Cluster>, leaf_id: NodeId) -> Result<Option<Answer>> {
    let _op = cluster.operation_lock.lock().await;
    let state = cluster.meta().leaves.get(&leaf_id).map(|l| l.state);
    if state != Some(LeafState::Attaching) {
        return Ok(None);
    }
    tracing::info!("leaf {leaf_id} was left attaching; attaching it again");
    // FORCE, as the heartbeat's own attach: conflicts stay on the leaf as orphans, nothing is deleted.
    attach_leaf_locked(cluster, leaf_id, true).await.map(Some)
}

/// The heartbeat's ATTACH LEAF ... FORCE of a leaf it saw in state `seen`: skipped when the leaf is in another state
/// once the operation lock is held. A DETACH LEAF holds that lock while it fences partitions (which pings then see
/// as pending); re-attaching the leaf after the DETACH finished would put it back online.
pub async fn auto_attach_leaf(cluster: &Arc<Cluster>, leaf_id: NodeId, seen: LeafState) -> Result<()> {
    let _op = cluster.operation_lock.lock().await;
    if cluster.meta().leaves.get(&leaf_id).map(|l| l.state) != Some(seen) {
        return Ok(());
    }
    attach_leaf_locked(cluster, leaf_id, true).await.map(|_| ())
}

async fn attach_leaf_locked(cluster: &Arc<Cluster>, leaf_id: NodeId, force: bool) -> Result<Answer> {
    let meta = cluster.meta();
    let leaf = meta.leaves.get(&leaf_id).cloned().ok_or(Error::Meta(canopy_meta::MetaError::UnknownLeaf(leaf_id)))?;
    let previous = leaf.state;
    if previous != LeafState::Online {
        cluster.apply(Command::SetLeafState { leaf: leaf_id, state: LeafState::Attaching }).await?;
        test_pause().await;
    }
    // Reference copies first, under reference locks held until the leaf is online: its partitions join against
    // them, so they must not miss a write on the way.
    let (result, _references) = match reference::catch_up_leaf(cluster, &leaf).await {
        Ok(held) => (attach_partitions_of(cluster, &leaf, force).await, held),
        Err(e) => (Err(e), Vec::new()),
    };
    match &result {
        Ok(_) => {
            if previous != LeafState::Online {
                cluster.apply(Command::SetLeafState { leaf: leaf_id, state: LeafState::Online }).await?;
            }
            if cluster.meta().variables.redundancy_level == 2 {
                // Masters split evenly within the pair again (spec 2.7: half of the replicas on the returning leaf
                // are promoted back), once the leaf is online.
                let moved = replication::balance_pair(cluster, leaf_id).await;
                if moved > 0 {
                    tracing::info!("attach of leaf {}:{}: {moved} masters moved back", leaf.addr.host, leaf.addr.port);
                }
            }
        }
        Err(_) if previous != LeafState::Online => {
            // Back where it was: a detached leaf stays detached; an offline one (or one whose interrupted attach
            // was resumed) goes offline, and the heartbeat retries when it answers.
            let back = if previous == LeafState::Detached { LeafState::Detached } else { LeafState::Offline };
            let _ = cluster.apply(Command::SetLeafState { leaf: leaf_id, state: back }).await;
        }
        Err(_) => {}
    }
    result
}

async fn test_pause() {
    if let Some(ms) = std::env::var(TEST_ATTACH_PAUSE_ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
        tracing::warn!("{TEST_ATTACH_PAUSE_ENV} is set: pausing the attach for {ms} ms (test only)");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

async fn attach_partitions_of(cluster: &Arc<Cluster>, leaf: &canopy_meta::Leaf, force: bool) -> Result<Answer> {
    let local = match cluster.call(leaf, &Request::ListDatabases).await? {
        Response::Databases(dbs) => dbs,
        other => return Err(Error::Internal(format!("ListDatabases answered {other:?}"))),
    };
    let meta = cluster.meta();
    let decisions = decide(&meta, leaf.id, &local.iter().map(facts).collect::<Vec<_>>());
    let conflicts: Vec<String> =
        decisions.iter().filter(|d| d.2 == Decision::Conflict).map(|(db, o, _)| format!("{db}_{o}")).collect();
    if !conflicts.is_empty() && !force {
        return Err(Error::AttachConflict { databases: conflicts.join(", ") });
    }
    let attach_count = decisions.iter().filter(|d| d.2 == Decision::Attach).count();
    tracing::info!(
        "attach of leaf {}:{}: {attach_count} partitions to attach, {} orphans",
        leaf.addr.host,
        leaf.addr.port,
        decisions.len() - attach_count
    );
    let mut by_db: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (db, ordinal, decision) in decisions {
        let in_place = || {
            local
                .iter()
                .find(|c| c.db == db && c.ordinal == Some(ordinal))
                .is_some_and(|c| canopy_control::attach::in_place(&meta, leaf.id, &facts(c)))
        };
        if decision == Decision::Attach && !in_place() {
            by_db.entry(db).or_default().push(ordinal);
        }
    }
    let mut attached = 0u64;
    for (db, ordinals) in by_db {
        let steps: Vec<Step> =
            ordinals.iter().map(|&o| Step::scheduled(Action::AttachPartition, o, leaf.id, 1, 10)).collect();
        cluster.apply(Command::RecordOperation { db: db.clone(), steps }).await?;
        for (index, &ordinal) in ordinals.iter().enumerate() {
            run_step(cluster, &db, index as u32, attach_copy(cluster, &db, ordinal, leaf)).await?;
            attached += 1;
        }
    }
    Ok(Answer::affected(attached))
}

/// Attaches one copy the metadata places on `leaf`. A master copy whose partition has an in-sync replica on an
/// online leaf is not served again: that replica is promoted (it holds every acknowledged write, possibly more than
/// the returning copy) and the copy becomes its replica. A master copy without one serves again in its term after
/// its replicas are recorded out of sync (it commits alone until healing brings them back). A replica copy is
/// brought back in sync with its master (caught up, or copied afresh), unless it is off its master's pair (a cut-off
/// move's copy: dropped).
async fn attach_copy(cluster: &Arc<Cluster>, db: &str, ordinal: u32, leaf: &canopy_meta::Leaf) -> Result<()> {
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let here = database
        .instances
        .iter()
        .find(|i| i.ordinal == ordinal && i.node == leaf.id)
        .cloned()
        .ok_or_else(|| Error::Internal(format!("{db}:{ordinal} has no instance on leaf {} to attach", leaf.id)))?;
    let online = |node| meta.leaves.get(&node).is_some_and(|l| l.state == LeafState::Online);
    if here.role == InstanceRole::Master {
        let candidate = database.replicas(ordinal).find(|r| r.sync && r.node != leaf.id && online(r.node)).cloned();
        if let Some(candidate) = candidate {
            let term = replication::promote(cluster, db, candidate.id).await?;
            tracing::info!("{db}:{ordinal}: the returning master's in-sync replica was promoted (term {term})");
            return replication::resync(cluster, db, here.id).await;
        }
        for replica in database.replicas(ordinal).filter(|r| r.sync) {
            replication::record_async(cluster, db, replica.id).await?;
        }
        // The copy serves in the term the metadata gives its master instance on this leaf.
        let partitions = vec![PartitionTerm { ordinal, term: here.term }];
        let request = Request::AttachPartitions { db: db.to_string(), partitions };
        return cluster.call(leaf, &request).await.map(|_| ());
    }
    // A replica off its master's pair (every replica in redundancy 1) is a rebalance's copy that a master aggregator
    // restart cut off: never in a commit path, needed by no one. Bringing it into its master's commit path would
    // take the pair's replica out of it; it is forgotten and dropped (the attach holds the operation lock, so no plan
    // is using it). Its reference copy stays: the attach holds the database's reference lock (taking it again here
    // would wait for ever), and the leaf may hold other partitions of the database.
    let pair_of_master = database.master(ordinal).and_then(|m| meta.leaves.get(&m.node)).and_then(|l| l.pair);
    if database.master(ordinal).is_some() && pair_of_master != Some(leaf.id) {
        tracing::info!("{db}:{ordinal}: the copy on leaf {} is a cut-off move's; dropping it", leaf.id);
        crate::master::moves::forget_copy(cluster, db, ordinal, leaf, Some(here.id)).await;
        return Ok(());
    }
    if database.master(ordinal).is_some_and(|m| online(m.node)) {
        return replication::resync(cluster, db, here.id).await;
    }
    // Its master is away: the copy waits as a replica of it (promoted by the failover pass if it is in sync).
    let Some(master) = database.master(ordinal) else { return Ok(()) };
    let partition = PartitionTerm { ordinal, term: master.term };
    cluster.call(leaf, &Request::BecomeReplica { db: db.to_string(), partition }).await.map(|_| ())
}

/// Runs one recorded step: marks it running, runs `work`, records success or failure with its running time. Once
/// `work` succeeded its effects stand: failing to record that is logged, never reported as the step failing (the
/// caller would otherwise undo work that is already committed).
pub async fn run_step(
    cluster: &Arc<Cluster>,
    db: &str,
    index: u32,
    work: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let started = Instant::now();
    let update = |status, error| Command::UpdateStep {
        db: db.to_string(),
        index,
        status,
        running_ms: Some(started.elapsed().as_millis() as u64),
        error,
    };
    // That a step runs is progress (published, not written); how it ended is written, so the summary survives a
    // restart.
    cluster.record_progress(update(StepStatus::Running, None)).await?;
    match work.await {
        Ok(()) => {
            if let Err(e) = cluster.apply(update(StepStatus::Success, None)).await {
                tracing::warn!("step {index} of {db} succeeded, but recording it failed: {e}");
            }
            Ok(())
        }
        Err(e) => {
            let _ = cluster.apply(update(StepStatus::Failed, Some(e.to_string()))).await;
            Err(e)
        }
    }
}

/// ATTACH PARTITION db:ordinal ON leaf: adopt a local copy (an orphan, or an instance left unmapped) as the
/// partition's master. Refused while another master serves the partition.
pub async fn attach_partition(cluster: &Arc<Cluster>, db: String, ordinal: u32, leaf_id: NodeId) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let leaf = meta.leaves.get(&leaf_id).cloned().ok_or(Error::Meta(canopy_meta::MetaError::UnknownLeaf(leaf_id)))?;
    let database = meta.databases.get(&db).ok_or_else(|| Error::UnknownDatabase(db.clone()))?;
    if let Some(master) = database.master(ordinal)
        && master.node != leaf_id
    {
        return Err(Error::Unsupported(format!(
            "partition {db}:{ordinal} already has a master on another leaf; drop it first"
        )));
    }
    let local = match cluster.call(&leaf, &Request::ListDatabases).await? {
        Response::Databases(dbs) => dbs,
        other => return Err(Error::Internal(format!("ListDatabases answered {other:?}"))),
    };
    let Some(copy) = local.iter().find(|d| d.db == db && d.ordinal == Some(ordinal)) else {
        return Err(Error::Unsupported(format!("leaf holds no copy of partition {db}:{ordinal}")));
    };
    let reference = local.iter().find(|d| d.db == db && d.ordinal.is_none());
    check_copy(database, &facts(copy), reference.map(facts).as_ref()).map_err(|reason| Error::AttachRefused {
        db: db.clone(),
        ordinal,
        reason,
    })?;
    if let Some(reason) = newer_copy(cluster, database, ordinal, leaf_id, copy.log_index).await {
        return Err(Error::AttachRefused { db: db.clone(), ordinal, reason });
    }
    let steps = vec![Step::scheduled(Action::AttachPartition, ordinal, leaf_id, 1, 10)];
    cluster.apply(Command::RecordOperation { db: db.clone(), steps }).await?;
    run_step(cluster, &db, 0, async {
        // The partition joins against the leaf's reference copy, and the leaf becomes a holder if it was not one.
        let _reference = reference::lock(cluster, &db).await;
        reference::provide(cluster, &db, &leaf).await?;
        // The copy serves in its master instance's term: the existing one's, or the one registering it will give.
        let registration = match database.master(ordinal) {
            Some(_) => Vec::new(),
            None => vec![Command::AddInstance { db: db.clone(), ordinal, node: leaf_id, role: InstanceRole::Master }],
        };
        let prediction = cluster.predict(registration).await?;
        let term = match (database.master(ordinal), prediction.outcomes().first()) {
            (Some(master), _) => master.term,
            (None, Some(Outcome::InstanceAdded(instance))) => instance.term,
            (None, other) => return Err(Error::Internal(format!("AddInstance would give {other:?}"))),
        };
        let partitions = vec![PartitionTerm { ordinal, term }];
        cluster.call(&leaf, &Request::AttachPartitions { db: db.clone(), partitions }).await?;
        prediction.commit().await.map(|_| ())
    })
    .await?;
    Ok(Answer::affected(1))
}

/// How long ATTACH PARTITION waits for each other leaf's list of copies.
const LIST_COPIES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A copy of `database`:`ordinal` (same incarnation) on another online leaf whose log is further than `log_index`.
/// Copies of one incarnation share one history (one master at a time; a copy starts from its source's log), so such
/// a copy proves the candidate is behind. The metadata records no positions, so the copies the online leaves hold
/// are all there is to compare with; a leaf that does not answer is skipped (logged).
async fn newer_copy(
    cluster: &Arc<Cluster>,
    database: &canopy_meta::Database,
    ordinal: u32,
    candidate: NodeId,
    log_index: u64,
) -> Option<AttachRefusal> {
    let meta = cluster.meta();
    for leaf in meta.leaves_in_order().filter(|l| l.id != candidate && l.state == LeafState::Online) {
        let local = match cluster.call_with_timeout(leaf, &Request::ListDatabases, LIST_COPIES_TIMEOUT).await {
            Ok(Response::Databases(local)) => local,
            other => {
                tracing::warn!(
                    "ATTACH PARTITION: leaf {}:{} did not list its copies: {other:?}",
                    leaf.addr.host,
                    leaf.addr.port
                );
                continue;
            }
        };
        let newer = local.iter().find(|d| {
            d.db == database.name
                && d.ordinal == Some(ordinal)
                && d.database_id == Some(database.id)
                && d.log_index > log_index
        });
        if let Some(newer) = newer {
            return Some(AttachRefusal::NewerCopy {
                host: leaf.addr.host.clone(),
                port: leaf.addr.port,
                log_index: newer.log_index,
                copy_index: log_index,
            });
        }
    }
    None
}

/// REMOVE LEAF: forget the leaf. With FORCE its partitions become unmapped and their files stay on the leaf (as
/// orphans once it returns); without FORCE the leaf must hold no partition instances.
pub async fn remove_leaf(cluster: &Arc<Cluster>, leaf_id: NodeId, force: bool) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let leaf = meta.leaves.get(&leaf_id).cloned().ok_or(Error::Meta(canopy_meta::MetaError::UnknownLeaf(leaf_id)))?;
    cluster.apply(Command::RemoveLeaf { leaf: leaf_id, force }).await?;
    // Tell the node it is no longer part of the cluster, so it can be added again; a dead node learns it when it is
    // re-added (ADD LEAF accepts a node of this cluster that the metadata no longer lists).
    if let Err(e) = cluster.call_with_timeout(&leaf, &Request::LeaveCluster, std::time::Duration::from_secs(3)).await {
        tracing::info!("removed leaf {}:{} was not told: {e}", leaf.addr.host, leaf.addr.port);
    }
    Ok(Answer::affected(1))
}

/// DETACH LEAF in redundancy 2: the partitions of the leaf's pair move to the other online pairs, each keeping a
/// master and a replica on a pair (`empty_paired`), then the leaf is `detached`.
pub async fn detach_leaf_paired(cluster: &Arc<Cluster>, leaf_id: NodeId) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let moved = empty_paired(cluster, leaf_id).await?;
    cluster.apply(Command::SetLeafState { leaf: leaf_id, state: LeafState::Detached }).await?;
    Ok(Answer::affected(moved))
}

/// REMOVE LEAF in redundancy 2: as DETACH LEAF (unless FORCE), then the leaf and its instances are forgotten; its
/// pair is left unpaired, holding nothing after the moves (with FORCE, or when there was no other pair, it serves
/// its partitions alone until a leaf is added into the removed leaf's group: a replica is then made on the new pair
/// by healing).
pub async fn remove_leaf_paired(cluster: &Arc<Cluster>, leaf_id: NodeId, force: bool) -> Result<Answer> {
    if !force {
        let _op = cluster.operation_lock.lock().await;
        empty_paired(cluster, leaf_id).await?;
    }
    remove_leaf(cluster, leaf_id, true).await
}

/// Empties `leaf` in redundancy 2 (the caller holds the operation lock): the rebalance planner with the leaf
/// excluded moves its pair's partitions to the other online pairs (`rebalance::empty_leaf`). Only when there is no
/// other online pair does it fall back to promotions within the pair (`replication::evacuate`): the leaf's masters
/// move to their replicas on the pair, its replicas leave the commit path, and those partitions keep one copy until
/// the leaf returns. Whatever the plan could not move (a partition whose master is not online) is evacuated too.
/// Returns how many partitions moved or changed master.
async fn empty_paired(cluster: &Arc<Cluster>, leaf: NodeId) -> Result<u64> {
    let moved = match crate::master::rebalance::empty_leaf(cluster, leaf).await {
        Ok(moved) => moved,
        Err(Error::Rebalance(canopy_control::rebalance::RebalanceError::NoOnlinePairs)) => {
            tracing::warn!(
                "no other online pair can take the partitions of leaf {leaf}: promoting within its pair instead \
                 (its partitions keep one copy until it returns)"
            );
            0
        }
        Err(e) => return Err(e),
    };
    Ok(moved + replication::evacuate(cluster, leaf).await?)
}

/// DETACH LEAF of a leaf that holds no partition instances: it stays listed, `detached`.
pub async fn detach_empty_leaf(cluster: &Arc<Cluster>, leaf_id: NodeId) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    cluster.apply(Command::SetLeafState { leaf: leaf_id, state: LeafState::Detached }).await?;
    Ok(Answer::affected(1))
}

/// One orphan partition copy found on a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub leaf: NodeId,
    pub db: String,
    pub ordinal: u32,
    /// False when the orphan may be the last copy of a partition the metadata lists (no master serves it
    /// anywhere): it is kept. True for copies served elsewhere and for copies of dropped databases.
    pub droppable: bool,
}

/// Every orphan on every reachable leaf: partition copies the metadata does not list.
pub async fn find_orphans(cluster: &Arc<Cluster>) -> Vec<Orphan> {
    let meta = cluster.meta();
    let mut orphans = Vec::new();
    for leaf in meta.leaves_in_order().filter(|l| l.state == LeafState::Online) {
        let Ok(Response::Databases(local)) = cluster.call(leaf, &Request::ListDatabases).await else { continue };
        for (db, ordinal, decision) in decide(&meta, leaf.id, &local.iter().map(facts).collect::<Vec<_>>()) {
            let database = meta.databases.get(&db);
            let droppable = match decision {
                Decision::Attach => continue,
                // A copy of a dropped database, or of an earlier incarnation of this one: it is no copy of any
                // partition the metadata knows, so it cannot be the last one. (One where the metadata places the
                // partition on this leaf is kept: that instance has no other file.)
                Decision::Conflict => {
                    database.is_none_or(|d| !d.instances.iter().any(|i| i.ordinal == ordinal && i.node == leaf.id))
                }
                Decision::Orphan => database
                    .and_then(|d| d.master(ordinal))
                    .and_then(|m| meta.leaves.get(&m.node))
                    .is_some_and(|l| l.state == LeafState::Online),
            };
            orphans.push(Orphan { leaf: leaf.id, db, ordinal, droppable });
        }
    }
    orphans
}

/// CLEAR ORPHAN DATABASES: drops orphan copies whose partition has a serving master elsewhere, and copies of
/// dropped databases or of earlier incarnations; never the last copy of a partition the metadata lists.
pub async fn clear_orphans(cluster: &Arc<Cluster>, explain: bool) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let orphans = find_orphans(cluster).await;
    let meta = cluster.meta();
    if explain {
        let rows = orphans
            .iter()
            .filter_map(|o| {
                let leaf = meta.leaves.get(&o.leaf)?;
                Some(vec![
                    canopy_sql::Value::Text(format!("{}_{}", o.db, o.ordinal)),
                    canopy_sql::Value::Text(leaf.addr.host.clone()),
                    canopy_sql::Value::Integer(i64::from(leaf.addr.port)),
                    canopy_sql::Value::Text(
                        if o.droppable { "drop" } else { "keep: no master serves this partition" }.into(),
                    ),
                ])
            })
            .collect();
        return Ok(Answer::Rows(canopy_sql::ResultSet::named(&["Database", "Host", "Port", "Action"], rows)));
    }
    let mut dropped = 0;
    // Databases the metadata no longer lists go as a whole on each leaf, reference copy included.
    let mut gone: BTreeSet<(NodeId, String)> = BTreeSet::new();
    for orphan in orphans.iter().filter(|o| o.droppable) {
        let Some(leaf) = meta.leaves.get(&orphan.leaf) else { continue };
        dropped += 1;
        if !meta.databases.contains_key(&orphan.db) {
            if gone.insert((leaf.id, orphan.db.clone())) {
                cluster.call(leaf, &Request::DropDatabase { db: orphan.db.clone() }).await?;
            }
            continue;
        }
        cluster.call(leaf, &Request::DropPartition { db: orphan.db.clone(), ordinal: orphan.ordinal }).await?;
    }
    Ok(Answer::affected(dropped))
}
