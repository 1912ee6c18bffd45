//! The record of the last HA operation on a database (ATTACH LEAF, DETACH LEAF, REMOVE LEAF, REBALANCE...): its
//! low-level steps with phase, status and timing, which `SHOW REBALANCE STATUS` prints. Kept in the metadata so a
//! master aggregator restart still shows what was done, and so a step interrupted by a crash is visibly `running`.

use serde::{Deserialize, Serialize};

use canopy_types::NodeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    AttachPartition,
    CopyPartition,
    PromotePartitionWithDrop,
    DropPartition,
    CopyPartitionForce,
    PromotePartition,
    CreatePartition,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::AttachPartition => "ATTACH PARTITION",
            Action::CopyPartition => "COPY PARTITION",
            Action::PromotePartitionWithDrop => "PROMOTE PARTITION WITH DROP",
            Action::DropPartition => "DROP PARTITION",
            Action::CopyPartitionForce => "COPY PARTITION FORCE",
            Action::PromotePartition => "PROMOTE PARTITION",
            Action::CreatePartition => "CREATE PARTITION",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepStatus {
    Scheduled,
    Running,
    Success,
    Failed,
    Cancelled,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Scheduled => "scheduled",
            StepStatus::Running => "running",
            StepStatus::Success => "success",
            StepStatus::Failed => "failed",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

/// One low-level step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub action: Action,
    pub ordinal: u32,
    /// The leaf the step acts on (the destination of a copy, the leaf of an attach or drop).
    pub target: NodeId,
    pub phase: u32,
    pub status: StepStatus,
    /// Milliseconds spent running (None while scheduled).
    pub running_ms: Option<u64>,
    pub estimated_ms: u64,
    /// Why the step failed, when it did.
    pub error: Option<String>,
}

impl Step {
    pub fn scheduled(action: Action, ordinal: u32, target: NodeId, phase: u32, estimated_ms: u64) -> Step {
        Step {
            action,
            ordinal,
            target,
            phase,
            status: StepStatus::Scheduled,
            running_ms: None,
            estimated_ms,
            error: None,
        }
    }
}
