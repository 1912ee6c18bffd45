//! Leaf lifecycle operations of the master aggregator in redundancy 1: ATTACH LEAF (also run automatically when an
//! offline leaf answers again), ATTACH PARTITION, REMOVE LEAF FORCE, and DETACH/REMOVE of leaves that hold nothing.
//! Each attach records its ATTACH PARTITION steps per database, so SHOW REBALANCE STATUS shows what was done.
//!
//! Per partition found on a returning leaf (spec 2.7 / 13.3, redundancy 1): an instance the metadata places on
//! this leaf is re-attached; a partition whose database is unknown (dropped while the leaf was away) is a conflict,
//! an error without FORCE and left as an orphan with it; a copy of a partition the metadata places elsewhere is left
//! as an orphan. Nothing is ever deleted here: orphans stay on disk until CLEAR ORPHAN DATABASES.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use canopy_meta::{Action, Command, InstanceRole, LeafState, NodeId, Step, StepStatus};
use canopy_rpc::{LocalDatabase, Request, Response};

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::exec::Answer;

/// The ATTACH LEAF decision for one local partition instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The metadata places this instance on this leaf: re-attach it.
    Attach,
    /// Another instance serves the partition, or none is recorded here: leave the copy as an orphan.
    Orphan,
    /// The database no longer exists (or was re-created): a conflict that needs FORCE.
    Conflict,
}

/// Decides, for every partition instance a leaf holds, what ATTACH LEAF does with it. Pure.
pub fn decide(meta: &canopy_meta::ClusterMeta, leaf: NodeId, local: &[LocalDatabase]) -> Vec<(String, u32, Decision)> {
    local
        .iter()
        .filter_map(|d| d.ordinal.map(|o| (d, o)))
        .map(|(d, ordinal)| {
            let decision = match meta.databases.get(&d.db) {
                None => Decision::Conflict,
                // A copy of an earlier database with the same name (dropped and re-created while the leaf was away).
                Some(db) if d.database_id.is_some_and(|id| id != db.id.0) => Decision::Conflict,
                Some(db) if db.instances.iter().any(|i| i.ordinal == ordinal && i.node == leaf) => Decision::Attach,
                Some(_) => Decision::Orphan,
            };
            (d.db.clone(), ordinal, decision)
        })
        .collect()
}

/// ATTACH LEAF for `leaf_id`. `force` turns conflicts into orphans instead of an error.
pub async fn attach_leaf(cluster: &Arc<Cluster>, leaf_id: NodeId, force: bool) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    attach_leaf_locked(cluster, leaf_id, force).await
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
        cluster.apply(Command::SetLeafState { leaf: leaf_id, state: LeafState::Attaching })?;
    }
    let result = attach_partitions_of(cluster, &leaf, force).await;
    match &result {
        Ok(_) => {
            if previous != LeafState::Online {
                cluster.apply(Command::SetLeafState { leaf: leaf_id, state: LeafState::Online })?;
            }
        }
        Err(_) if previous != LeafState::Online => {
            // Back where it was: an offline leaf stays offline (the heartbeat retries), a detached one detached.
            let back = if previous == LeafState::Offline { LeafState::Offline } else { LeafState::Detached };
            let _ = cluster.apply(Command::SetLeafState { leaf: leaf_id, state: back });
        }
        Err(_) => {}
    }
    result
}

async fn attach_partitions_of(cluster: &Arc<Cluster>, leaf: &canopy_meta::Leaf, force: bool) -> Result<Answer> {
    let local = match cluster.call(leaf, &Request::ListDatabases).await? {
        Response::Databases(dbs) => dbs,
        other => return Err(Error::Internal(format!("ListDatabases answered {other:?}"))),
    };
    let meta = cluster.meta();
    let decisions = decide(&meta, leaf.id, &local);
    let conflicts: Vec<String> =
        decisions.iter().filter(|d| d.2 == Decision::Conflict).map(|(db, o, _)| format!("{db}_{o}")).collect();
    if !conflicts.is_empty() && !force {
        return Err(Error::AttachConflict { databases: conflicts.join(", ") });
    }
    let mut by_db: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (db, ordinal, decision) in decisions {
        if decision == Decision::Attach {
            by_db.entry(db).or_default().push(ordinal);
        }
    }
    let mut attached = 0u64;
    for (db, ordinals) in by_db {
        let steps: Vec<Step> =
            ordinals.iter().map(|&o| Step::scheduled(Action::AttachPartition, o, leaf.id, 1, 10)).collect();
        cluster.apply(Command::RecordOperation { db: db.clone(), steps })?;
        for (index, &ordinal) in ordinals.iter().enumerate() {
            run_step(cluster, &db, index as u32, async {
                let request = Request::AttachPartitions { db: db.clone(), ordinals: vec![ordinal] };
                cluster.call(leaf, &request).await.map(|_| ())
            })
            .await?;
            attached += 1;
        }
    }
    Ok(Answer::affected(attached))
}

/// Runs one recorded step: marks it running, runs `work`, records success or failure with its running time. Once
/// `work` succeeded its effects stand: failing to record that is logged, never reported as the step failing (the
/// caller would otherwise undo work that is already committed).
pub async fn run_step(
    cluster: &Cluster,
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
    cluster.apply(update(StepStatus::Running, None))?;
    match work.await {
        Ok(()) => {
            if let Err(e) = cluster.apply(update(StepStatus::Success, None)) {
                tracing::warn!("step {index} of {db} succeeded, but recording it failed: {e}");
            }
            Ok(())
        }
        Err(e) => {
            let _ = cluster.apply(update(StepStatus::Failed, Some(e.to_string())));
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
    if !local.iter().any(|d| d.db == db && d.ordinal == Some(ordinal)) {
        return Err(Error::Unsupported(format!("leaf holds no copy of partition {db}:{ordinal}")));
    }
    let steps = vec![Step::scheduled(Action::AttachPartition, ordinal, leaf_id, 1, 10)];
    cluster.apply(Command::RecordOperation { db: db.clone(), steps })?;
    run_step(cluster, &db, 0, async {
        cluster.call(&leaf, &Request::AttachPartitions { db: db.clone(), ordinals: vec![ordinal] }).await?;
        if database.master(ordinal).is_none() {
            cluster.apply(Command::AddInstance {
                db: db.clone(),
                ordinal,
                node: leaf_id,
                role: InstanceRole::Master,
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(Answer::affected(1))
}

/// REMOVE LEAF: forget the leaf. With FORCE its partitions become unmapped and their files stay on the leaf (as
/// orphans once it returns); without FORCE the leaf must hold no partition instances.
pub async fn remove_leaf(cluster: &Arc<Cluster>, leaf_id: NodeId, force: bool) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let leaf = meta.leaves.get(&leaf_id).cloned().ok_or(Error::Meta(canopy_meta::MetaError::UnknownLeaf(leaf_id)))?;
    cluster.apply(Command::RemoveLeaf { leaf: leaf_id, force })?;
    // Tell the node it is no longer part of the cluster, so it can be added again; a dead node learns it when it is
    // re-added (ADD LEAF accepts a node of this cluster that the metadata no longer lists).
    if let Err(e) = cluster.call_with_timeout(&leaf, &Request::LeaveCluster, std::time::Duration::from_secs(3)).await {
        tracing::info!("removed leaf {}:{} was not told: {e}", leaf.addr.host, leaf.addr.port);
    }
    Ok(Answer::affected(1))
}

/// DETACH LEAF of a leaf that holds no partition instances: it stays listed, `detached`.
pub async fn detach_empty_leaf(cluster: &Arc<Cluster>, leaf_id: NodeId) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    cluster.apply(Command::SetLeafState { leaf: leaf_id, state: LeafState::Detached })?;
    Ok(Answer::affected(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_meta::{ClusterMeta, NodeAddr};

    fn local(db: &str, ordinal: u32) -> LocalDatabase {
        LocalDatabase {
            name: format!("{db}_{ordinal}"),
            db: db.into(),
            ordinal: Some(ordinal),
            role: "master".into(),
            state: "pending".into(),
            commits: 0,
            term: 0,
            log_index: 0,
            database_id: None,
        }
    }

    #[test]
    fn returning_leaf_partitions_are_attached_orphaned_or_conflicting() {
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
        for p in [10, 20] {
            let addr = NodeAddr { host: "h".into(), port: p, rpc_port: p + 1 };
            m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        }
        m.apply(Command::CreateDatabase { name: "test".into(), partitions: 4, sync_durability: true }).unwrap();
        let leaf = NodeId(3); // holds ordinals 1 and 3
        let mut recreated = local("test", 3);
        recreated.database_id = Some(99); // a copy of an earlier `test`, dropped and re-created meanwhile
        let mut same = local("test", 1);
        same.database_id = Some(m.databases["test"].id.0);
        let got = decide(&m, leaf, &[same, local("test", 2), local("gone", 0), recreated]);
        assert_eq!(
            got,
            vec![
                ("test".to_string(), 1, Decision::Attach),
                ("test".to_string(), 2, Decision::Orphan),
                ("gone".to_string(), 0, Decision::Conflict),
                ("test".to_string(), 3, Decision::Conflict),
            ]
        );
    }
}

/// One orphan partition copy found on a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub leaf: NodeId,
    pub db: String,
    pub ordinal: u32,
    /// False when no master instance of the partition serves anywhere: the orphan may be the last copy and is kept.
    pub droppable: bool,
}

/// Every orphan on every reachable leaf: partition copies the metadata does not list.
pub async fn find_orphans(cluster: &Arc<Cluster>) -> Vec<Orphan> {
    let meta = cluster.meta();
    let mut orphans = Vec::new();
    for leaf in meta.leaves_in_order().filter(|l| l.state == LeafState::Online) {
        let Ok(Response::Databases(local)) = cluster.call(leaf, &Request::ListDatabases).await else { continue };
        for (db, ordinal, decision) in decide(&meta, leaf.id, &local) {
            if decision == Decision::Attach {
                continue;
            }
            let served = meta
                .databases
                .get(&db)
                .and_then(|d| d.master(ordinal))
                .and_then(|m| meta.leaves.get(&m.node))
                .is_some_and(|l| l.state == LeafState::Online);
            orphans.push(Orphan { leaf: leaf.id, db, ordinal, droppable: served });
        }
    }
    orphans
}

/// CLEAR ORPHAN DATABASES: drops orphan copies whose partition has a serving master elsewhere; never the last copy.
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
        let columns = ["Database", "Host", "Port", "Action"].iter().map(|c| canopy_sql::Column::new(*c)).collect();
        return Ok(Answer::Rows(canopy_sql::ResultSet { columns, rows }));
    }
    let mut dropped = 0;
    for orphan in orphans.iter().filter(|o| o.droppable) {
        let Some(leaf) = meta.leaves.get(&orphan.leaf) else { continue };
        cluster.call(leaf, &Request::DropPartition { db: orphan.db.clone(), ordinal: orphan.ordinal }).await?;
        dropped += 1;
    }
    Ok(Answer::affected(dropped))
}
