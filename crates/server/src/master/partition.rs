//! The low-level partition commands for operators, in the spec's spelling (section 6): `CREATE / COPY / PROMOTE /
//! DROP / ATTACH / DETACH PARTITION db:ordinal {ON|TO} 'host':port`. Each refuses, changing nothing, what would lose
//! the last copy of a partition or give it two masters; what is left runs through the machinery the plans use (a
//! one-step plan, shown by SHOW REBALANCE STATUS), so there is one implementation of each step.
//!
//! Redundancy 1 (here): a partition has one serving copy, its master. `COPY PARTITION` provisions a replica on
//! another leaf (snapshot and log, as a move's first phase: the replica is not kept in sync after that);
//! `PROMOTE PARTITION ... WITH DROP` on the leaf holding it switches the master there (final catch-up under the
//! partition's gate, no statement fails) and drops the old copy; `DROP PARTITION` and `DETACH PARTITION` take such
//! a replica away (dropping its file, or leaving it as an orphan); `CREATE PARTITION` makes an empty master for a
//! partition without any copy on an online leaf (its rows are given up, as `REBALANCE ... FORCE` does). A PROMOTE
//! without WITH DROP would leave two copies of which only one is written: refused. Redundancy 2 has its own rules
//! (`replication::partition_command`).

use std::sync::Arc;

use canopy_control::plan::{Action, Step};
use canopy_meta::{InstanceRole, LeafState, NodeId};
use canopy_sql::command::PartitionAction;

use crate::answer::Answer;
use crate::error::{Error, Result};
use crate::master::cluster::Cluster;
use crate::master::{attach, rebalance, replication};

/// Runs `action` on partition `db:ordinal` at `leaf`.
pub async fn run(
    cluster: &Arc<Cluster>,
    action: PartitionAction,
    db: String,
    ordinal: u32,
    leaf: NodeId,
) -> Result<Answer> {
    match action {
        PartitionAction::Attach => attach::attach_partition(cluster, db, ordinal, leaf).await,
        PartitionAction::Create => one_step(cluster, Action::CreatePartition, &db, ordinal, leaf).await,
        _ if cluster.meta().variables.redundancy_level == 2 => {
            replication::partition_command(cluster, action, &db, ordinal, leaf).await
        }
        PartitionAction::Copy { .. } => one_step(cluster, Action::CopyPartition, &db, ordinal, leaf).await,
        PartitionAction::Promote { with_drop: true, .. } => {
            one_step(cluster, Action::PromotePartition { with_drop: true }, &db, ordinal, leaf).await
        }
        PartitionAction::Promote { with_drop: false, .. } => Err(refused(
            &db,
            ordinal,
            "PROMOTE PARTITION without WITH DROP needs redundancy 2: in redundancy 1 the old master would stay a \
             copy that nothing keeps up to date; use PROMOTE PARTITION ... WITH DROP",
        )),
        PartitionAction::Drop => one_step(cluster, Action::DropPartition, &db, ordinal, leaf).await,
        PartitionAction::Detach => detach(cluster, &db, ordinal, leaf).await,
    }
}

fn refused(db: &str, ordinal: u32, why: &str) -> Error {
    Error::Unsupported(format!("{db}:{ordinal}: {why}"))
}

/// Checks `action` against the metadata under the operation lock and runs it as a one-step plan.
async fn one_step(cluster: &Arc<Cluster>, action: Action, db: &str, ordinal: u32, leaf: NodeId) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    check(cluster, action, db, ordinal, leaf)?;
    let step = Step { action, db: db.to_string(), ordinal, target: leaf, phase: 1, estimated_ms: 0 };
    rebalance::run_single_step(cluster, step).await?;
    Ok(Answer::affected(1))
}

/// What each command refuses (redundancy 1; CREATE in both).
fn check(cluster: &Cluster, action: Action, db: &str, ordinal: u32, leaf: NodeId) -> Result<()> {
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    if ordinal >= database.partitions {
        return Err(refused(db, ordinal, &format!("the database has {} partitions", database.partitions)));
    }
    let here = database.instances.iter().find(|i| i.ordinal == ordinal && i.node == leaf);
    let online = |node: NodeId| meta.leaves.get(&node).is_some_and(|l| l.state == LeafState::Online);
    match action {
        Action::CreatePartition => {
            if let Some(copy) = database.instances.iter().find(|i| i.ordinal == ordinal && online(i.node)) {
                let role = if copy.role == InstanceRole::Master { "master" } else { "replica" };
                return Err(refused(
                    db,
                    ordinal,
                    &format!(
                        "it has a {role} on online leaf {}; CREATE PARTITION is for a partition without any copy \
                         on an online leaf (it gives up the rows of copies on unreachable leaves)",
                        copy.node
                    ),
                ));
            }
        }
        Action::CopyPartition => {
            if database.master(ordinal).is_none() {
                return Err(refused(db, ordinal, "it has no master to copy from"));
            }
            if here.is_some() {
                return Err(refused(db, ordinal, "the leaf already holds a copy"));
            }
        }
        Action::PromotePartition { .. } => {
            if !here.is_some_and(|i| i.role == InstanceRole::Replica) {
                return Err(refused(db, ordinal, "the leaf holds no replica of it (COPY PARTITION makes one)"));
            }
        }
        Action::DropPartition => match here {
            None => return Err(refused(db, ordinal, "the leaf holds no instance of it")),
            Some(i) if i.role == InstanceRole::Master => {
                return Err(refused(db, ordinal, "the instance is the master, the partition's only serving copy"));
            }
            Some(_) => {}
        },
        Action::CopyPartitionForce | Action::AttachPartition => {}
    }
    Ok(())
}

/// DETACH PARTITION in redundancy 1: a replica leaves the metadata and its copy stays on the leaf as an orphan
/// (CLEAR ORPHAN DATABASES or ATTACH PARTITION later). The master is refused: it is the partition's only copy.
async fn detach(cluster: &Arc<Cluster>, db: &str, ordinal: u32, leaf: NodeId) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let here = database.instances.iter().find(|i| i.ordinal == ordinal && i.node == leaf);
    match here {
        None => Err(refused(db, ordinal, "the leaf holds no instance of it")),
        Some(i) if i.role == InstanceRole::Master => Err(refused(
            db,
            ordinal,
            "the instance is the master, the partition's only serving copy: detaching it would take the partition offline",
        )),
        Some(i) => {
            let command = canopy_meta::Command::RemoveInstance { db: db.to_string(), instance: i.id };
            cluster.apply(command).await?;
            Ok(Answer::affected(1))
        }
    }
}
