//! Rebalance plans as data: the low-level steps (COPY / PROMOTE / DROP / ATTACH PARTITION) a planner proposes, each
//! with its partition, the leaf it acts on, its phase and an estimated time. A plan only proposes: EXPLAIN prints it,
//! the executor runs it phase by phase, and the metadata changes only through `ClusterMeta::apply`.
//!
//! `apply_step` plays one step on a metadata value through the state machine itself, so a plan can be checked (the
//! property tests), chained (`REBALANCE ALL DATABASES` plans each database against the previous ones' result) and
//! compared with what the executor did, without touching a leaf.

use canopy_meta::{ClusterMeta, Command, InstanceId, InstanceRole, LeafState, MetaError, NodeId};
use thiserror::Error;

/// One low-level action, in the spec's spelling (section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Provision a replica of the partition on the target from its master (snapshot + log catch-up).
    CopyPartition,
    /// The same, to restore redundancy (a partition left with one instance).
    CopyPartitionForce,
    /// Make the target's replica the master in a new term; `with_drop`: the old master is dropped (a move, in both
    /// redundancies), otherwise it becomes the replica (redundancy 2's planned promotion within a pair).
    PromotePartition { with_drop: bool },
    /// Drop the target's instance (metadata and file).
    DropPartition,
    /// Adopt a copy the target already holds as the partition's master.
    AttachPartition,
    /// Create the partition empty on the target, as its master (`REBALANCE ... FORCE`, for a partition without any
    /// reachable copy: whatever copy an unreachable leaf holds becomes an orphan, its rows are given up).
    CreatePartition,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CopyPartition => "COPY PARTITION",
            Action::CopyPartitionForce => "COPY PARTITION FORCE",
            Action::PromotePartition { with_drop: false } => "PROMOTE PARTITION",
            Action::PromotePartition { with_drop: true } => "PROMOTE PARTITION WITH DROP",
            Action::DropPartition => "DROP PARTITION",
            Action::AttachPartition => "ATTACH PARTITION",
            Action::CreatePartition => "CREATE PARTITION",
        }
    }

    /// The action as the operation record (SHOW REBALANCE STATUS) stores it.
    pub fn record(self) -> canopy_meta::Action {
        match self {
            Action::CopyPartition => canopy_meta::Action::CopyPartition,
            Action::CopyPartitionForce => canopy_meta::Action::CopyPartitionForce,
            Action::PromotePartition { with_drop: false } => canopy_meta::Action::PromotePartition,
            Action::PromotePartition { with_drop: true } => canopy_meta::Action::PromotePartitionWithDrop,
            Action::DropPartition => canopy_meta::Action::DropPartition,
            Action::AttachPartition => canopy_meta::Action::AttachPartition,
            Action::CreatePartition => canopy_meta::Action::CreatePartition,
        }
    }

    /// Whether the step adds a copy of its partition (and so needs a source to copy from).
    pub fn copies(self) -> bool {
        matches!(self, Action::CopyPartition | Action::CopyPartitionForce)
    }
}

/// One step of a plan: `action` on partition `db:ordinal` at leaf `target`, in `phase`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub db: String,
    pub ordinal: u32,
    /// The leaf the step acts on: the destination of a copy, the new master of a promotion, the leaf of a drop or
    /// an attach.
    pub target: NodeId,
    /// Phases run in increasing order; the steps of one phase may run together.
    pub phase: u32,
    pub estimated_ms: u64,
}

/// The plan for one database: its steps in phase order (and, within a phase, in the order they were planned).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub db: String,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The indexes of the steps of each phase, phases in increasing order.
    pub fn phases(&self) -> Vec<(u32, Vec<usize>)> {
        let mut phases: Vec<(u32, Vec<usize>)> = Vec::new();
        let mut order: Vec<usize> = (0..self.steps.len()).collect();
        order.sort_by_key(|&i| (self.steps[i].phase, i));
        for i in order {
            let phase = self.steps[i].phase;
            match phases.last_mut() {
                Some((p, steps)) if *p == phase => steps.push(i),
                _ => phases.push((phase, vec![i])),
            }
        }
        phases
    }

    /// How many partition copies the plan makes (what a move costs: bytes over the network).
    pub fn copies(&self) -> usize {
        self.steps.iter().filter(|s| s.action.copies()).count()
    }

    /// The plan as the operation record of SHOW REBALANCE STATUS: every step scheduled.
    pub fn record(&self) -> Vec<canopy_meta::Step> {
        self.steps
            .iter()
            .map(|s| canopy_meta::Step::scheduled(s.action.record(), s.ordinal, s.target, s.phase, s.estimated_ms))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum StepError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("partition {db}:{ordinal} has no instance to copy from")]
    NoSource { db: String, ordinal: u32 },
    #[error("partition {db}:{ordinal} has no instance on leaf {leaf}")]
    NoInstance { db: String, ordinal: u32, leaf: NodeId },
    #[error("PROMOTE PARTITION without DROP needs redundancy 2")]
    PromoteWithoutDrop,
    #[error("partition {db}:{ordinal} has a reachable copy on leaf {leaf}: it is not created empty")]
    Reachable { db: String, ordinal: u32, leaf: NodeId },
}

/// Plays `step` on `meta` through the state machine, as the executor's metadata commits would. In redundancy 2 a
/// step is the executor's commands together: a COPY first forgets a leftover copy on its target (never in a commit
/// path), a restoring COPY FORCE ends with its replica in sync, the switch of PROMOTE WITH DROP takes the old
/// replicas out of sync and records the new master's copy on its pair in sync, and a planned PROMOTE records the old
/// master, now the replica, in sync.
pub fn apply_step(meta: &mut ClusterMeta, step: &Step) -> Result<(), StepError> {
    let db = step.db.clone();
    let paired = meta.variables.redundancy_level == 2;
    let database = meta.databases.get(&db).ok_or_else(|| MetaError::UnknownDatabase(db.clone()))?;
    let on_target = database.instances.iter().find(|i| i.ordinal == step.ordinal && i.node == step.target).cloned();
    let no_instance = || StepError::NoInstance { db: db.clone(), ordinal: step.ordinal, leaf: step.target };
    let mut commands = Vec::new();
    match step.action {
        Action::CopyPartition | Action::CopyPartitionForce => {
            if !database.instances.iter().any(|i| i.ordinal == step.ordinal) {
                return Err(StepError::NoSource { db, ordinal: step.ordinal });
            }
            if paired && let Some(leftover) = on_target.filter(|i| i.role == InstanceRole::Replica && !i.sync) {
                commands.push(Command::RemoveInstance { db: db.clone(), instance: leftover.id });
            }
            let role = InstanceRole::Replica;
            commands.push(Command::AddInstance { db: db.clone(), ordinal: step.ordinal, node: step.target, role });
            if paired && step.action == Action::CopyPartitionForce {
                commands.push(Command::SetReplicaSync { db, instance: InstanceId(meta.next_instance_id), sync: true });
            }
        }
        Action::PromotePartition { with_drop: true } => {
            let instance = on_target.ok_or_else(no_instance)?;
            if paired {
                let follower = meta.leaves.get(&step.target).and_then(|l| l.pair);
                let replicas = database.replicas(step.ordinal).filter(|r| r.id != instance.id);
                let (follower, old): (Vec<_>, Vec<_>) = replicas.partition(|r| Some(r.node) == follower);
                for old in old.into_iter().filter(|r| r.sync) {
                    commands.push(Command::SetReplicaSync { db: db.clone(), instance: old.id, sync: false });
                }
                commands.push(Command::PromoteWithDrop { db: db.clone(), instance: instance.id });
                for follower in follower {
                    commands.push(Command::SetReplicaSync { db: db.clone(), instance: follower.id, sync: true });
                }
            } else {
                commands.push(Command::PromoteWithDrop { db, instance: instance.id });
            }
        }
        Action::PromotePartition { with_drop: false } => {
            if !paired {
                return Err(StepError::PromoteWithoutDrop);
            }
            let instance = on_target.ok_or_else(no_instance)?;
            commands.push(Command::Promote { db: db.clone(), instance: instance.id });
            if let Some(old) = database.master(step.ordinal) {
                commands.push(Command::SetReplicaSync { db, instance: old.id, sync: true });
            }
        }
        Action::DropPartition => {
            let instance = on_target.ok_or_else(no_instance)?;
            commands.push(Command::RemoveInstance { db, instance: instance.id });
        }
        Action::AttachPartition => {
            commands.push(Command::AddInstance {
                db,
                ordinal: step.ordinal,
                node: step.target,
                role: InstanceRole::Master,
            });
        }
        Action::CreatePartition => {
            // Every instance the metadata lists for the partition is on a leaf that is not online: forget them (their
            // copies become orphans), then register the empty one.
            let listed: Vec<_> = database.instances.iter().filter(|i| i.ordinal == step.ordinal).cloned().collect();
            if let Some(reachable) =
                listed.iter().find(|i| meta.leaves.get(&i.node).is_some_and(|l| l.state == LeafState::Online))
            {
                return Err(StepError::Reachable { db, ordinal: step.ordinal, leaf: reachable.node });
            }
            for instance in listed {
                commands.push(Command::RemoveInstance { db: db.clone(), instance: instance.id });
            }
            let role = InstanceRole::Master;
            commands.push(Command::AddInstance { db, ordinal: step.ordinal, node: step.target, role });
        }
    }
    for command in commands {
        meta.apply(command)?;
    }
    Ok(())
}

/// Plays every step of `plan` on `meta`, phase by phase.
pub fn apply_plan(meta: &mut ClusterMeta, plan: &Plan) -> Result<(), StepError> {
    for (_, steps) in plan.phases() {
        for i in steps {
            apply_step(meta, &plan.steps[i])?;
        }
    }
    Ok(())
}
