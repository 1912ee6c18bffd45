//! Cluster metadata for Canopy: the model (leaves, aggregators, databases, partition instances, variables) and the
//! deterministic state machine that changes it. Pure: no IO, no clocks, no randomness; callers pass everything in.

pub mod machine;
pub mod model;
pub mod operation;
pub mod users;
pub mod variables;

pub use canopy_types::{DatabaseId, Durability, InstanceId, NodeId, Ordinal, Replication, Term};
pub use machine::{Command, Outcome, Placed};
pub use model::{Aggregator, ClusterMeta, Database, Instance, InstanceRole, Leaf, LeafState, NodeAddr};
pub use operation::{Action, Step, StepStatus};
pub use variables::Variables;

use thiserror::Error;

/// Operating errors of metadata commands (the caller's request cannot be applied to the current state).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetaError {
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    #[error("Can't create database '{0}'; database exists")]
    DatabaseExists(String),
    #[error("Table '{db}.{table}' doesn't exist")]
    UnknownTable { db: String, table: String },
    #[error("Table '{table}' already exists")]
    TableExists { db: String, table: String },
    #[error("Node {host}:{port} is already part of the cluster")]
    NodeExists { host: String, port: u16 },
    /// A CREATE DATABASE placement the state cannot take (its author is `canopy-control`: a bug if it happens).
    #[error("invalid partition placement: {0}")]
    BadPlacement(String),
    #[error("Availability group {0} does not exist at the current redundancy_level")]
    BadAvailabilityGroup(u8),
    #[error("The number of partitions must be between 1 and 4096, got {0}")]
    BadPartitionCount(u32),
    #[error("There are no online leaves in the cluster")]
    NoOnlineLeaves,
    /// Redundancy 2 places each partition on a pair of online leaves (one per availability group).
    #[error(
        "redundancy_level is 2 and no pair of online leaves exists (add a leaf INTO GROUP 2 for each leaf of group 1)"
    )]
    NoOnlinePairs,
    #[error("Unknown system variable '{0}'")]
    UnknownVariable(String),
    #[error("Variable '{name}' can't be set to the value of '{value}'")]
    BadVariableValue { name: String, value: String },
    #[error("Canopy does not support {name} = '{value}' yet; {supported}")]
    VariableValueNotSupported { name: String, value: String, supported: &'static str },
    #[error("AUTO_INCREMENT values are exhausted")]
    AutoIncrementExhausted,
    #[error("Leaf {0} is not part of the cluster")]
    UnknownLeaf(NodeId),
    #[error("Leaf {leaf} cannot go from {from} to {to}")]
    BadLeafTransition { leaf: NodeId, from: &'static str, to: &'static str },
    #[error("Partition {db}:{ordinal} has no instance {instance}")]
    UnknownInstance { db: String, ordinal: u32, instance: InstanceId },
    #[error("Partition {db}:{ordinal} already has an instance on leaf {leaf}")]
    InstanceExists { db: String, ordinal: u32, leaf: NodeId },
    #[error("Leaf {0} still holds partition instances")]
    LeafNotEmpty(NodeId),
    #[error("No such step {index} in the operation on '{db}'")]
    UnknownStep { db: String, index: u32 },
    /// `redundancy_level` changes only while no database exists: existing partitions would keep the copies of the
    /// old level.
    #[error("redundancy_level can change only while no database exists ({databases} exist)")]
    RedundancyWithDatabases { databases: usize },
    #[error("Partition {db}:{ordinal}: instance {instance} is not a replica")]
    NotAReplica { db: String, ordinal: u32, instance: InstanceId },
    #[error("Partition {db}:{ordinal}: replica {instance} is not in sync with its master")]
    ReplicaNotInSync { db: String, ordinal: u32, instance: InstanceId },
    #[error(transparent)]
    User(#[from] users::UserError),
}
