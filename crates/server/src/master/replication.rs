//! Redundancy 2 on the master aggregator: putting replicas in their masters' commit path, failover, taking a silent
//! replica out of the commit path, healing replicas that are not in sync, and the pair rebalance after a leaf
//! returns. What to do is decided in `canopy_control::failover` (pure); this module does it.
//!
//! The order of every step is what keeps acknowledged writes:
//! - a replica enters the commit path on its master's leaf first (`SetReplica`, which brings it up to date under
//!   the partition's lock), and only then does the metadata call it in sync, a failover candidate;
//! - a replica leaves the commit path in the metadata first (`SetReplicaSync false`), and only then is its master's
//!   leaf told to commit without it: until that record, commits wait for it, so a replica the metadata calls in sync
//!   holds every acknowledged write;
//! - a failover tells the replica its new term before the metadata commits it (`Cluster::predict`); from then on the
//!   replica refuses the old master's entries, so a deposed master that wakes up cannot acknowledge anything.

use std::sync::Arc;
use std::time::Instant;

use canopy_control::failover::{self, Repair};
use canopy_meta::{ClusterMeta, Command, Instance, InstanceId, InstanceRole, Leaf, LeafState, NodeId, Outcome};
use canopy_rpc::{PartitionTerm, RemoteErrorKind, ReplicaTarget, Request};

use crate::error::{Error, Result};
use crate::master::cluster::{Cluster, REQUEST_TIMEOUT};

/// How long a promotion, a demotion or a role change may wait for its leaf: a frozen leaf must not hold the term
/// lock (and the failover pass) for the general request timeout.
pub(crate) const ROLE_CHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a master ships to, for the replica on `leaf`, in the database's replication mode.
pub fn target(leaf: &Leaf, mode: canopy_meta::Replication) -> ReplicaTarget {
    ReplicaTarget {
        node: leaf.id,
        host: leaf.addr.host.clone(),
        rpc_port: leaf.addr.rpc_port,
        asynchronous: mode == canopy_meta::Replication::Async,
    }
}

/// `db`'s replication mode in `meta` (sync for a database `meta` does not hold yet).
fn mode_of(meta: &ClusterMeta, db: &str) -> canopy_meta::Replication {
    meta.databases.get(db).map(|d| d.replication).unwrap_or_default()
}

fn leaf_of(meta: &ClusterMeta, node: NodeId) -> Result<Leaf> {
    meta.leaves.get(&node).cloned().ok_or(Error::Meta(canopy_meta::MetaError::UnknownLeaf(node)))
}

/// Puts `replica` into `master`'s commit path: the replica's leaf becomes a replica in the master's term, then the
/// master's leaf brings it up to date and registers it. The metadata is not changed here (the caller records the
/// replica in sync once this succeeded). A replica whose log is not a prefix of the master's answers
/// `RemoteErrorKind::Diverged` (or `LogTruncated` when the master no longer has what it misses).
/// `catch_up` bounds the master's part (bringing the replica up to date can take long after an absence). The
/// database's replication mode is `meta`'s, or `mode` for a database being created.
pub async fn start_replica(
    cluster: &Arc<Cluster>,
    meta: &ClusterMeta,
    db: &str,
    master: &Instance,
    replica: &Instance,
    catch_up: std::time::Duration,
) -> Result<()> {
    start_replica_in_mode(cluster, meta, db, master, replica, catch_up, mode_of(meta, db)).await
}

/// `start_replica` with the replication mode given (CREATE DATABASE: the metadata does not hold the database yet).
pub async fn start_replica_in_mode(
    cluster: &Arc<Cluster>,
    meta: &ClusterMeta,
    db: &str,
    master: &Instance,
    replica: &Instance,
    catch_up: std::time::Duration,
    mode: canopy_meta::Replication,
) -> Result<()> {
    let master_leaf = leaf_of(meta, master.node)?;
    let replica_leaf = leaf_of(meta, replica.node)?;
    let partition = PartitionTerm { ordinal: master.ordinal, term: master.term };
    let become_replica = Request::BecomeReplica { db: db.to_string(), partition };
    cluster.call_with_timeout(&replica_leaf, &become_replica, ROLE_CHANGE_TIMEOUT).await?;
    let request = Request::SetReplica { db: db.to_string(), partition, replica: Some(target(&replica_leaf, mode)) };
    cluster.call_with_timeout(&master_leaf, &request, catch_up).await?;
    Ok(())
}

/// Whether an error says the replica's copy cannot continue its master's log (it must be copied afresh).
fn needs_new_copy(e: &Error) -> bool {
    matches!(e, Error::Remote(r) if matches!(
        r.kind,
        RemoteErrorKind::Diverged | RemoteErrorKind::LogTruncated { .. } | RemoteErrorKind::NoSuchPartition
    ))
}

/// Brings replica `replica` of `db` back in sync with its master and records it so: caught up when its log is a
/// prefix of the master's, otherwise dropped and copied afresh (snapshot and catch-up) first.
pub async fn resync(cluster: &Arc<Cluster>, db: &str, replica: InstanceId) -> Result<()> {
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let replica =
        database.instance(replica).cloned().ok_or_else(|| Error::Internal(format!("{db}: no instance {replica}")))?;
    // Decided on the metadata as it is now, never on the caller's older view: the instance may have been promoted
    // since (a failover while this waited), and making a master the replica of its deposed predecessor would take
    // the partition's current copy out of service, or copy it over from the stale one.
    if replica.role != canopy_meta::InstanceRole::Replica {
        return Err(Error::Internal(format!(
            "{db}:{}: instance {} is the master now, not a replica",
            replica.ordinal, replica.id
        )));
    }
    let master = database
        .master(replica.ordinal)
        .cloned()
        .ok_or(Error::NoMasterInstance { db: db.to_string(), ordinal: replica.ordinal })?;
    if meta.leaves.get(&master.node).is_none_or(|l| l.state != LeafState::Online) {
        return Err(Error::Internal(format!("{db}:{}: its master's leaf is not online", replica.ordinal)));
    }
    let started = Instant::now();
    match start_replica(cluster, &meta, db, &master, &replica, REQUEST_TIMEOUT).await {
        Ok(()) => {}
        Err(e) if needs_new_copy(&e) => {
            // The calls above can take as long as a frozen leaf stays frozen, and a failover may have promoted this
            // replica meanwhile: copying it afresh now would drop the new master's copy (and its acknowledged
            // writes) and replace it with the deposed master's. Only the roles this decision was made on allow it.
            roles_unchanged(cluster, db, &master, &replica)?;
            tracing::warn!(
                "{db}:{}: the replica cannot continue its master's log ({e}); copying it afresh",
                replica.ordinal
            );
            reprovision(cluster, &meta, db, &master, &replica).await?;
            start_replica(cluster, &meta, db, &master, &replica, REQUEST_TIMEOUT).await?;
        }
        Err(e) => return Err(e),
    }
    cluster.apply(Command::SetReplicaSync { db: db.to_string(), instance: replica.id, sync: true }).await?;
    tracing::info!(
        "{db}:{}: replica on leaf {} in sync ({} ms)",
        replica.ordinal,
        replica.node,
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Whether `master` is still the master of its partition in the same term and `replica` still one of its
/// replicas, in the current metadata; an error (the caller retries with fresh metadata) otherwise.
fn roles_unchanged(cluster: &Arc<Cluster>, db: &str, master: &Instance, replica: &Instance) -> Result<()> {
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let same_master = database.master(replica.ordinal).is_some_and(|m| m.id == master.id && m.term == master.term);
    let still_replica = database.instance(replica.id).is_some_and(|r| r.role == InstanceRole::Replica);
    if same_master && still_replica {
        return Ok(());
    }
    Err(Error::Internal(format!(
        "{db}:{}: the partition's roles changed while its replica was being brought back; retrying",
        replica.ordinal
    )))
}

/// Replaces the replica's copy with a fresh copy of the master's (the move machinery: snapshot, then catch-up).
/// The replica's leaf is told the master's term first: it refuses if its copy holds a newer term (it was
/// promoted since the decision), so a master's copy is never dropped here. A leaf that has no copy at all (lost
/// with its disk, or a previous reprovision dropped it and then failed to copy) has nothing to protect: it gets
/// the copy.
async fn reprovision(
    cluster: &Arc<Cluster>,
    meta: &ClusterMeta,
    db: &str,
    master: &Instance,
    replica: &Instance,
) -> Result<()> {
    let replica_leaf = leaf_of(meta, replica.node)?;
    let partition = PartitionTerm { ordinal: master.ordinal, term: master.term };
    match cluster.call(&replica_leaf, &Request::BecomeReplica { db: db.to_string(), partition }).await {
        Ok(_) => {}
        Err(Error::Remote(e)) if e.kind == RemoteErrorKind::NoSuchPartition => {}
        Err(e) => return Err(e),
    }
    roles_unchanged(cluster, db, master, replica)?;
    reprovision_onto(cluster, meta, db, master, &replica_leaf).await
}

/// Promotes replica `instance` of `db` to master in a new term: its leaf is told the term first, then the
/// metadata commits it. Returns the new term.
pub async fn promote(cluster: &Arc<Cluster>, db: &str, instance: InstanceId) -> Result<canopy_meta::Term> {
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let replica =
        database.instance(instance).cloned().ok_or_else(|| Error::Internal(format!("{db}: no instance {instance}")))?;
    let leaf = leaf_of(&meta, replica.node)?;
    let prediction = cluster.predict(vec![Command::Promote { db: db.to_string(), instance }]).await?;
    let Some(Outcome::Promoted { term }) = prediction.outcomes().first().cloned() else {
        return Err(Error::Internal("Promote did not promote".into()));
    };
    let partition = PartitionTerm { ordinal: replica.ordinal, term };
    let request = Request::PromotePartition { db: db.to_string(), partition };
    cluster.call_with_timeout(&leaf, &request, ROLE_CHANGE_TIMEOUT).await?;
    prediction.commit().await?;
    Ok(term)
}

/// Records replica `instance` out of sync, serialized with promotions (under the term lock of `Cluster::predict`):
/// a promotion decided while the replica was in sync either commits before this record or is refused by the
/// state machine after it, never promotes a replica that was already recorded out of sync.
pub async fn record_async(cluster: &Arc<Cluster>, db: &str, instance: InstanceId) -> Result<()> {
    let prediction =
        cluster.predict(vec![Command::SetReplicaSync { db: db.to_string(), instance, sync: false }]).await?;
    prediction.commit().await.map(|_| ())
}

/// Takes replica `instance` out of its master's commit path: recorded first, then told to the master's leaf (an
/// unreachable master leaf is fine: it is then offline or will be told when it is attached).
pub async fn demote(cluster: &Arc<Cluster>, db: &str, instance: InstanceId) -> Result<()> {
    record_async(cluster, db, instance).await?;
    let meta = cluster.meta();
    let Some(database) = meta.databases.get(db) else { return Ok(()) };
    let Some(replica) = database.instance(instance) else { return Ok(()) };
    let Some(master) = database.master(replica.ordinal) else { return Ok(()) };
    let leaf = leaf_of(&meta, master.node)?;
    let partition = PartitionTerm { ordinal: master.ordinal, term: master.term };
    let request = Request::SetReplica { db: db.to_string(), partition, replica: None };
    if let Err(e) = cluster.call_with_timeout(&leaf, &request, ROLE_CHANGE_TIMEOUT).await {
        tracing::warn!("{db}:{}: telling the master to commit without its replica failed: {e}", master.ordinal);
    }
    Ok(())
}

/// Leaf `leaf` was declared offline: each partition it mastered fails over to its in-sync replica on an online
/// leaf, and each in-sync replica it held leaves its (online) master's commit path. Returns how many partitions
/// failed over.
pub async fn fail_over(cluster: &Arc<Cluster>, leaf: Option<NodeId>) -> usize {
    let started = Instant::now();
    let meta = cluster.meta();
    let actions = failover::actions(&meta);
    // Promotions in parallel: each partition's writes wait for its own.
    let mut promotions = tokio::task::JoinSet::new();
    for (db, instance) in actions.promote.iter().cloned() {
        let cluster = cluster.clone();
        promotions.spawn(async move {
            match promote(&cluster, &db, instance).await {
                Ok(term) => {
                    tracing::info!("failover: {db} instance {instance} promoted in term {term}");
                    true
                }
                Err(e) => {
                    tracing::error!("failover: promoting {db} instance {instance} failed: {e}");
                    false
                }
            }
        });
    }
    let mut promoted = 0;
    while let Some(ok) = promotions.join_next().await {
        promoted += usize::from(ok.unwrap_or(false));
    }
    for (db, instance) in &actions.demote {
        if let Err(e) = demote(cluster, db, *instance).await {
            tracing::error!("failover: taking {db} replica {instance} out of the commit path failed: {e}");
        }
    }
    if !actions.promote.is_empty() || !actions.demote.is_empty() {
        tracing::info!(
            "failover{}: {promoted} of {} partitions promoted, {} replicas made async, {} ms",
            leaf.map(|l| format!(" of leaf {l}")).unwrap_or_default(),
            actions.promote.len(),
            actions.demote.len(),
            started.elapsed().as_millis()
        );
    }
    promoted
}

/// One pass of healing, under the operation lock: every replica that is not in sync while it and its master are on
/// online leaves is brought back in sync (caught up, or copied afresh), and every partition that lacks a replica on
/// its master's online pair gets one. Returns how many were healed.
pub async fn heal(cluster: &Arc<Cluster>) -> usize {
    let meta = cluster.meta();
    let mut healed = 0;
    for Repair { db, replica } in failover::repairs(&meta) {
        match resync(cluster, &db, replica).await {
            Ok(()) => healed += 1,
            Err(e) => tracing::warn!("healing {db} replica {replica} failed: {e}"),
        }
    }
    for failover::MissingReplica { db, ordinal, target } in failover::missing_replicas(&cluster.meta(), None) {
        match restore_replica(cluster, &db, ordinal, target).await {
            Ok(()) => healed += 1,
            Err(e) => tracing::warn!("restoring a replica of {db}:{ordinal} on leaf {target} failed: {e}"),
        }
    }
    healed
}

/// How long a planned promotion waits for statements on the partition to finish before it gives up.
const PLANNED_GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A planned promotion of the in-sync replica `instance` (the pair rebalance, DETACH LEAF, PROMOTE PARTITION).
/// Under the partition's closed gate (new statements wait, running ones finish, so no statement fails): the master
/// is fenced; the replica, which holds everything the master committed, is promoted on its leaf in a new term; the
/// old master becomes its replica and enters its commit path; then the metadata records the promotion and the old
/// master in sync as one change, and only then does the gate open. So no statement ever commits on the new master
/// while the partition lacks a failover candidate. If the old master cannot become the replica in time, the
/// promotion is recorded alone (the old master async; healing brings it back). On an error before the promotion
/// is recorded, the replica is recorded out of sync first and then the old master serves again.
pub async fn promote_planned(cluster: &Arc<Cluster>, db: &str, instance: InstanceId) -> Result<canopy_meta::Term> {
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let replica =
        database.instance(instance).cloned().ok_or_else(|| Error::Internal(format!("{db}: no instance {instance}")))?;
    let old = database
        .master(replica.ordinal)
        .cloned()
        .ok_or(Error::NoMasterInstance { db: db.to_string(), ordinal: replica.ordinal })?;
    if !replica.sync {
        return Err(Error::Internal(format!("{db}:{}: the replica is not in sync", replica.ordinal)));
    }
    let old_leaf = leaf_of(&meta, old.node)?;
    let new_leaf = leaf_of(&meta, replica.node)?;
    let gate = cluster.gate(db, replica.ordinal);
    let _closed = tokio::time::timeout(PLANNED_GATE_TIMEOUT, gate.write())
        .await
        .map_err(|_| Error::Internal(format!("statements on {db}:{} did not finish in time", replica.ordinal)))?;
    // The gate may have taken a while: decide again on the metadata as it is now.
    let now = cluster.meta();
    let still = now.databases.get(db).is_some_and(|d| {
        d.instance(instance).is_some_and(|r| r.sync && r.role == InstanceRole::Replica)
            && d.master(replica.ordinal).is_some_and(|m| m.id == old.id && m.term == old.term)
    });
    if !still {
        return Err(Error::Internal(format!("{db}:{}: the partition changed before its promotion", replica.ordinal)));
    }
    let old_partition = PartitionTerm { ordinal: old.ordinal, term: old.term };
    if mode_of(&now, db) == canopy_meta::Replication::Async {
        // An asynchronous replica may lag its master by a few entries: registering it again brings it up to date
        // under the partition's lock (no statement runs now), so the promotion loses no acknowledged write.
        let target = Some(target(&new_leaf, canopy_meta::Replication::Async));
        let request = Request::SetReplica { db: db.to_string(), partition: old_partition, replica: target };
        cluster.call_with_timeout(&old_leaf, &request, ROLE_CHANGE_TIMEOUT).await?;
    }
    cluster.call(&old_leaf, &Request::FencePartition { db: db.to_string(), partition: old_partition }).await?;
    let commands = vec![
        Command::Promote { db: db.to_string(), instance },
        Command::SetReplicaSync { db: db.to_string(), instance: old.id, sync: true },
    ];
    let promoted = async {
        let prediction = cluster.predict(commands).await?;
        let Some(Outcome::Promoted { term }) = prediction.outcomes().first().cloned() else {
            return Err(Error::Internal("Promote did not promote".into()));
        };
        let partition = PartitionTerm { ordinal: replica.ordinal, term };
        let request = Request::PromotePartition { db: db.to_string(), partition };
        cluster.call_with_timeout(&new_leaf, &request, ROLE_CHANGE_TIMEOUT).await?;
        Ok((prediction, term))
    }
    .await;
    let (prediction, term) = match promoted {
        Ok(promoted) => promoted,
        Err(e) => {
            let _ = record_async(cluster, db, instance).await;
            let attach = Request::AttachPartitions { db: db.to_string(), partitions: vec![old_partition] };
            if let Err(e) = cluster.call(&old_leaf, &attach).await {
                tracing::warn!("{db}:{}: the old master did not resume serving: {e}", old.ordinal);
            }
            return Err(e);
        }
    };
    // The old master holds the same log as the new one: it continues it at once, nothing to copy.
    let new_master = Instance { role: InstanceRole::Master, term, ..replica.clone() };
    let prediction = match start_replica(cluster, &now, db, &new_master, &old, ROLE_CHANGE_TIMEOUT).await {
        Ok(()) => prediction,
        Err(e) => {
            tracing::warn!("{db}:{}: the demoted master is not in sync yet ({e}); healing will retry", old.ordinal);
            prediction.keep_first(1)
        }
    };
    prediction.commit().await?;
    Ok(term)
}

/// The pair rebalance after `leaf` returned: masters split evenly within its pair again, each by a planned
/// promotion. Returns how many partitions moved their master.
pub async fn balance_pair(cluster: &Arc<Cluster>, leaf: NodeId) -> usize {
    let mut moved = 0;
    for (db, instance) in failover::pair_balance(&cluster.meta(), leaf) {
        match promote_planned(cluster, &db, instance).await {
            Ok(term) => {
                tracing::info!("pair rebalance: {db} instance {instance} is master again in term {term}");
                moved += 1;
            }
            Err(e) => tracing::warn!("pair rebalance: promoting {db} instance {instance} failed: {e}"),
        }
    }
    moved
}

/// DETACH LEAF / REMOVE LEAF in redundancy 2 when no other online pair can take the leaf's partitions (or for what
/// the rebalance planner could not move), under the operation lock: every partition `leaf` masters moves to its
/// in-sync replica on the pair by a planned promotion (no statement fails; recorded per database as PROMOTE
/// PARTITION steps for SHOW REBALANCE STATUS), then every replica it holds leaves its master's commit path. Refused before anything changes when a partition it masters has no in-sync replica on
/// an online leaf (taking the leaf out would take the partition offline). Returns how many masters moved.
pub async fn evacuate(cluster: &Arc<Cluster>, leaf: NodeId) -> Result<u64> {
    let meta = cluster.meta();
    let online = |node: NodeId| meta.leaves.get(&node).is_some_and(|l| l.state == LeafState::Online);
    let mut promotions = Vec::new();
    for database in meta.databases.values() {
        for master in
            database.instances.iter().filter(|i| i.node == leaf && i.role == canopy_meta::InstanceRole::Master)
        {
            let candidate = database.replicas(master.ordinal).find(|r| r.sync && r.node != leaf && online(r.node));
            let Some(candidate) = candidate else {
                return Err(Error::Unsupported(format!(
                    "partition {}:{} has no in-sync replica on an online leaf; taking the leaf out would take it offline \
                     (wait until SHOW PARTITIONS / DISTRIBUTED_PARTITIONS show its replica in sync, or use REMOVE LEAF ... FORCE)",
                    database.name, master.ordinal
                )));
            };
            promotions.push((database.name.clone(), master.ordinal, candidate.id, candidate.node));
        }
    }
    // Recorded per database as PROMOTE PARTITION steps, so SHOW REBALANCE STATUS shows what ran.
    let mut moved = 0;
    let mut dbs: Vec<&str> = promotions.iter().map(|(db, ..)| db.as_str()).collect();
    dbs.dedup();
    for db in dbs {
        let mine: Vec<_> = promotions.iter().filter(|(d, ..)| d == db).collect();
        let steps = mine
            .iter()
            .map(|(_, ordinal, _, node)| {
                canopy_meta::Step::scheduled(canopy_meta::Action::PromotePartition, *ordinal, *node, 1, 50)
            })
            .collect();
        cluster.apply(Command::RecordOperation { db: db.to_string(), steps }).await?;
        for (index, (_, _, instance, _)) in mine.into_iter().enumerate() {
            let promoted = async { promote_planned(cluster, db, *instance).await.map(|_| ()) };
            crate::master::attach::run_step(cluster, db, index as u32, promoted).await?;
            moved += 1;
        }
    }
    let meta = cluster.meta();
    for database in meta.databases.values() {
        for replica in database
            .instances
            .iter()
            .filter(|i| i.node == leaf && i.role == canopy_meta::InstanceRole::Replica && i.sync)
        {
            demote(cluster, &database.name, replica.id).await?;
        }
    }
    Ok(moved)
}

/// Gives partition `ordinal` of `db` a new replica on `target` (its master's pair), under the operation lock: the
/// target gets a current reference copy, copies the master's partition (snapshot, then catch-up), is registered as
/// a replica (under the reference lock, so no reference write falls in between), enters the commit path, and is
/// recorded in sync.
pub async fn restore_replica(cluster: &Arc<Cluster>, db: &str, ordinal: u32, target_id: NodeId) -> Result<()> {
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let master = database.master(ordinal).cloned().ok_or(Error::NoMasterInstance { db: db.to_string(), ordinal })?;
    let target = leaf_of(&meta, target_id)?;
    crate::master::reference::provide(cluster, db, &target).await?;
    reprovision_onto(cluster, &meta, db, &master, &target).await?;
    let added = {
        let _reference = crate::master::reference::lock(cluster, db).await;
        crate::master::reference::provide(cluster, db, &target).await?;
        let command = Command::AddInstance {
            db: db.to_string(),
            ordinal,
            node: target_id,
            role: canopy_meta::InstanceRole::Replica,
        };
        cluster.apply(command).await?
    };
    let Outcome::InstanceAdded(replica) = added else {
        return Err(Error::Internal("AddInstance added no instance".into()));
    };
    resync(cluster, db, replica.id).await
}

/// Drops whatever copy `target` has of the master's partition and copies the master's afresh.
async fn reprovision_onto(
    cluster: &Arc<Cluster>,
    meta: &ClusterMeta,
    db: &str,
    master: &Instance,
    target: &Leaf,
) -> Result<()> {
    let master_leaf = leaf_of(meta, master.node)?;
    cluster.call(target, &Request::DropPartition { db: db.to_string(), ordinal: master.ordinal }).await?;
    let request = Request::CopyPartition {
        db: db.to_string(),
        source: PartitionTerm { ordinal: master.ordinal, term: master.term },
        source_host: master_leaf.addr.host.clone(),
        source_rpc_port: master_leaf.addr.rpc_port,
    };
    cluster.call(target, &request).await?;
    Ok(())
}

/// RESTORE REDUNDANCY ON db: a replica on its master's pair for every partition that lacks one (no balancing
/// moves), recorded as `COPY PARTITION FORCE` steps so SHOW REBALANCE STATUS shows them. Answers how many were
/// made.
pub async fn restore_redundancy(cluster: &Arc<Cluster>, db: &str) -> Result<crate::answer::Answer> {
    use canopy_meta::{Action, Step};
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    if !meta.databases.contains_key(db) {
        return Err(Error::UnknownDatabase(db.to_string()));
    }
    let missing = failover::missing_replicas(&meta, Some(db));
    if missing.is_empty() {
        return Ok(crate::answer::Answer::affected(0));
    }
    let steps =
        missing.iter().map(|m| Step::scheduled(Action::CopyPartitionForce, m.ordinal, m.target, 1, 1000)).collect();
    cluster.apply(Command::RecordOperation { db: db.to_string(), steps }).await?;
    for (index, m) in missing.iter().enumerate() {
        crate::master::attach::run_step(cluster, db, index as u32, restore_replica(cluster, db, m.ordinal, m.target))
            .await?;
    }
    Ok(crate::answer::Answer::affected(missing.len() as u64))
}

/// When the master aggregator starts on existing metadata: it may have stopped between recording a replica out of
/// sync and telling the replica's master, whose commits would then wait for that replica forever. Every master
/// whose partition has a replica recorded out of sync on a leaf that is not online is told once more to commit
/// without it (idempotent; a master leaf that does not answer is told when it is attached).
pub async fn reassert_async_replicas(cluster: Arc<Cluster>) {
    // Under the operation lock: an attach (which holds it) registers a returning replica with its master before it
    // records it in sync, and this must not undo that registration in between.
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let online = |node: NodeId| meta.leaves.get(&node).is_some_and(|l| l.state == LeafState::Online);
    for database in meta.databases.values() {
        for replica in database.instances.iter().filter(|i| i.role == canopy_meta::InstanceRole::Replica && !i.sync) {
            let Some(master) = database.master(replica.ordinal).filter(|m| online(m.node)) else { continue };
            // A replica off the master's pair (a rebalance's copy) was never in its commit path: telling the master
            // to commit alone would take the pair's replica out of it.
            let on_pair = meta.leaves.get(&master.node).is_some_and(|l| l.pair == Some(replica.node));
            if !failover::away(&meta, replica.node) || !on_pair {
                continue;
            }
            let Ok(leaf) = leaf_of(&meta, master.node) else { continue };
            let partition = PartitionTerm { ordinal: master.ordinal, term: master.term };
            let request = Request::SetReplica { db: database.name.clone(), partition, replica: None };
            if let Err(e) = cluster.call_with_timeout(&leaf, &request, ROLE_CHANGE_TIMEOUT).await {
                tracing::info!(
                    "{}:{}: telling the master to commit without its replica failed: {e}",
                    database.name,
                    master.ordinal
                );
            }
        }
    }
}

/// The low-level partition commands in redundancy 2 (`COPY / PROMOTE / DROP / DETACH PARTITION db:k ON 'h':p`),
/// under the operation lock. Each refuses, changing nothing, what would lose the last copy, leave a partition
/// without a master, make two masters or put a copy off the master's pair. Answers the instances changed.
pub async fn partition_command(
    cluster: &Arc<Cluster>,
    action: canopy_sql::command::PartitionAction,
    db: &str,
    ordinal: u32,
    leaf: NodeId,
) -> Result<crate::answer::Answer> {
    use canopy_sql::command::PartitionAction;
    let refuse = |why: String| Err(Error::Unsupported(format!("{db}:{ordinal}: {why}")));
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    if ordinal >= database.partitions {
        return refuse(format!("the database has {} partitions", database.partitions));
    }
    let here = database.instances.iter().find(|i| i.ordinal == ordinal && i.node == leaf).cloned();
    let master = database.master(ordinal).cloned();
    match action {
        PartitionAction::Copy { .. } => {
            let Some(master) = master else { return refuse("it has no master to copy from".into()) };
            if here.is_some() {
                return refuse("the leaf already holds a copy".into());
            }
            if meta.leaves.get(&master.node).and_then(|l| l.pair) != Some(leaf) {
                return refuse("in redundancy 2 (paired) a replica goes on the master's pair".into());
            }
            if meta.leaves.get(&leaf).is_none_or(|l| l.state != LeafState::Online) {
                return refuse("the target leaf is not online".into());
            }
            restore_replica(cluster, db, ordinal, leaf).await?;
        }
        PartitionAction::Promote { with_drop: true, .. } => {
            return refuse(
                "PROMOTE PARTITION ... WITH DROP would leave the partition without a replica in \
                redundancy 2; PROMOTE PARTITION without WITH DROP keeps the old master as the replica"
                    .into(),
            );
        }
        PartitionAction::Promote { .. } => {
            let Some(here) = here.filter(|i| i.role == canopy_meta::InstanceRole::Replica) else {
                return refuse("the leaf holds no replica of it".into());
            };
            if !here.sync {
                return refuse("its replica is not in sync (it would lose acknowledged writes)".into());
            }
            promote_planned(cluster, db, here.id).await?;
        }
        PartitionAction::Drop | PartitionAction::Detach => {
            let Some(here) = here else { return refuse("the leaf holds no instance of it".into()) };
            if here.role == canopy_meta::InstanceRole::Master {
                return refuse("the instance is the master; promote its replica first".into());
            }
            if master.is_none() {
                return refuse("the partition has no master: this may be its last copy".into());
            }
            if here.sync {
                demote(cluster, db, here.id).await?;
            }
            cluster.apply(Command::RemoveInstance { db: db.to_string(), instance: here.id }).await?;
            if action == PartitionAction::Drop {
                let target = leaf_of(&meta, leaf)?;
                if let Err(e) = cluster.call(&target, &Request::DropPartition { db: db.to_string(), ordinal }).await {
                    tracing::warn!("{db}:{ordinal}: the dropped copy stays on its leaf as an orphan: {e}");
                }
            }
        }
        // `partition::run` handles these in both redundancies and never sends them here.
        PartitionAction::Create | PartitionAction::Attach => {
            return Err(Error::Internal(format!("{action:?} is not a redundancy-2 partition command")));
        }
    }
    Ok(crate::answer::Answer::affected(1))
}
