//! The cluster metadata as data: leaves, aggregators, databases with their tables, and partition instances.
//! Everything here is plain values that serialize for persistence; behaviour lives in `machine.rs`.

use std::collections::BTreeMap;

use canopy_sql::TableDef;
use serde::{Deserialize, Serialize};

use crate::variables::Variables;
use canopy_types::{DatabaseId, Durability, InstanceId, NodeId, Term};

/// Where a node listens: `port` is its MySQL port and its identity; `rpc_port` carries inter-node messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
    pub rpc_port: u16,
}

impl NodeAddr {
    pub fn same_endpoint(&self, host: &str, port: u16) -> bool {
        self.host.eq_ignore_ascii_case(host) && self.port == port
    }
}

/// Leaf states as SHOW LEAVES prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeafState {
    Online,
    Offline,
    Recovering,
    Detached,
    Attaching,
}

impl LeafState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeafState::Online => "online",
            LeafState::Offline => "offline",
            LeafState::Recovering => "recovering",
            LeafState::Detached => "detached",
            LeafState::Attaching => "attaching",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaf {
    pub id: NodeId,
    pub addr: NodeAddr,
    pub availability_group: u8,
    pub pair: Option<NodeId>,
    pub state: LeafState,
    /// The account aggregators use on this leaf (`ADD LEAF user:'password'@...`).
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregator {
    pub id: NodeId,
    pub addr: NodeAddr,
    pub is_master: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceRole {
    Master,
    Replica,
}

impl InstanceRole {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceRole::Master => "Master",
            InstanceRole::Replica => "Replica",
        }
    }
}

/// One copy of one partition on one leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub ordinal: u32,
    pub node: NodeId,
    pub role: InstanceRole,
    /// The term in which this instance became master (replicas keep 0 as SingleStore shows them).
    pub term: Term,
    pub locked: bool,
    /// For a replica: it is in its master's commit path (every commit waits for it), so it holds every acknowledged
    /// write and may be promoted by a failover. Set only after the master leaf reported the replica caught up and
    /// registered; cleared (recorded here first, then told to the master leaf) when the replica stops answering.
    /// Always false for a master.
    #[serde(default)]
    pub sync: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    pub id: DatabaseId,
    pub name: String,
    pub partitions: u32,
    /// `WITH SYNC DURABILITY` (the default): a commit is acknowledged once it is on disk; `WITH ASYNC DURABILITY`:
    /// once the operating system has it (survives a process kill, not a power loss). Read also from the boolean
    /// `sync_durability` of older `cluster.json` files.
    #[serde(default = "default_durability", alias = "sync_durability", deserialize_with = "durability_or_bool")]
    pub durability: Durability,
    /// `WITH SYNC REPLICATION` (the default) or `WITH ASYNC REPLICATION`: whether a master's commits wait for its
    /// replica (redundancy 2).
    #[serde(default)]
    pub replication: canopy_types::Replication,
    /// Tables by lower-cased name (SQLite and Canopy table names are case-insensitive).
    pub tables: BTreeMap<String, TableDef>,
    pub instances: Vec<Instance>,
    /// Next unreserved AUTO_INCREMENT value per lower-cased table name.
    pub auto_increment: BTreeMap<String, i64>,
    /// The steps of the last HA operation on this database (SHOW REBALANCE STATUS).
    #[serde(default)]
    pub operation: Vec<crate::operation::Step>,
}

impl Database {
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(&name.to_ascii_lowercase())
    }

    /// The master instance of `ordinal`, if it has one.
    pub fn master(&self, ordinal: u32) -> Option<&Instance> {
        self.instances.iter().find(|i| i.ordinal == ordinal && i.role == InstanceRole::Master)
    }

    /// The replica instances of `ordinal`.
    pub fn replicas(&self, ordinal: u32) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(move |i| i.ordinal == ordinal && i.role == InstanceRole::Replica)
    }

    pub fn instance(&self, id: InstanceId) -> Option<&Instance> {
        self.instances.iter().find(|i| i.id == id)
    }
}

/// The whole cluster metadata. Owned by the master aggregator; a pure value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMeta {
    /// A random id chosen at BOOTSTRAP; a leaf that belongs to another cluster carries another id.
    pub cluster_id: String,
    /// Incremented by every applied command except progress records (`Command::is_progress`), so a prepared plan
    /// keyed on it stays valid exactly while nothing it read has changed.
    pub version: u64,
    pub aggregators: BTreeMap<NodeId, Aggregator>,
    pub leaves: BTreeMap<NodeId, Leaf>,
    /// Databases by name (names are case-sensitive, as in SingleStore).
    pub databases: BTreeMap<String, Database>,
    pub variables: Variables,
    /// User accounts and their privileges (`users.rs`); absent from files written before accounts existed.
    #[serde(default)]
    pub users: crate::users::Users,
    pub next_node_id: u32,
    pub next_instance_id: u64,
    pub next_term: u64,
    pub next_database_id: u64,
}

/// The metadata is the planner's catalog: tables and partition counts of every database.
impl canopy_sql::Catalog for ClusterMeta {
    fn table(&self, db: &str, table: &str) -> Option<&TableDef> {
        self.databases.get(db).and_then(|d| d.table(table))
    }

    fn partition_count(&self, db: &str) -> Option<u32> {
        self.databases.get(db).map(|d| d.partitions)
    }
}

fn default_durability() -> Durability {
    Durability::Sync
}

/// A durability as written now, or as the boolean older files hold (`true` = sync).
fn durability_or_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Durability, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Mode(Durability),
        Sync(bool),
    }
    Ok(match Stored::deserialize(deserializer)? {
        Stored::Mode(mode) => mode,
        Stored::Sync(true) => Durability::Sync,
        Stored::Sync(false) => Durability::Async,
    })
}
