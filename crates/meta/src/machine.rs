//! The metadata state machine: `ClusterMeta::apply(command) -> outcome`. Deterministic and free of IO: ids, terms
//! and placement are computed from the current state alone, so replaying the same commands gives the same metadata.
//! The master aggregator persists the result and then acts on it; nothing here talks to a leaf.

use canopy_sql::{TableDef, Value};
use serde::{Deserialize, Serialize};

use crate::MetaError;
use crate::model::{Aggregator, ClusterMeta, Database, Instance, InstanceRole, Leaf, LeafState, NodeAddr};
use crate::operation::{Step, StepStatus};
use crate::variables::Variables;
use canopy_types::{DatabaseId, Durability, InstanceId, NodeId, Term};

/// Partitions per database are bounded so a typo cannot create millions of files on every leaf.
pub const PARTITIONS_MAX: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    AddLeaf {
        addr: NodeAddr,
        user: String,
        password: String,
        group: Option<u8>,
    },
    /// A new database whose ordinal k goes where `placement[k]` says (decided by `canopy-control`'s placement; the
    /// state machine only checks it: an online master leaf per ordinal and, in redundancy 2, a replica on its pair).
    CreateDatabase {
        name: String,
        partitions: u32,
        durability: Durability,
        placement: Vec<Placed>,
    },
    DropDatabase {
        name: String,
    },
    /// The database's replication mode (`CREATE DATABASE ... WITH ASYNC REPLICATION`, with its creation).
    SetReplication {
        db: String,
        mode: crate::Replication,
    },
    CreateTable {
        db: String,
        def: TableDef,
    },
    DropTable {
        db: String,
        table: String,
    },
    AddIndex {
        db: String,
        table: String,
        index_sql: String,
    },
    SetVariable {
        name: String,
        value: Value,
    },
    /// Reserve `count` AUTO_INCREMENT values of `db.table`.
    ReserveAutoIncrement {
        db: String,
        table: String,
        count: u64,
    },
    /// A leaf changes state (failure detected, attach, detach), following the spec's transition table.
    SetLeafState {
        leaf: NodeId,
        state: LeafState,
    },
    /// REMOVE LEAF: forget a leaf. Without `force` it must hold no instances; with `force` its instances are
    /// forgotten too (their partitions become unmapped; the files stay on the leaf as orphans).
    RemoveLeaf {
        leaf: NodeId,
        force: bool,
    },
    /// Register an instance of `db:ordinal` on `node` (ATTACH PARTITION, COPY PARTITION). A master gets a new term.
    AddInstance {
        db: String,
        ordinal: u32,
        node: NodeId,
        role: InstanceRole,
    },
    /// Forget an instance (DROP PARTITION, DETACH PARTITION).
    RemoveInstance {
        db: String,
        instance: InstanceId,
    },
    /// Make `instance` the master of its partition with a new term; the old master is dropped from the metadata
    /// (PROMOTE PARTITION WITH DROP).
    PromoteWithDrop {
        db: String,
        instance: InstanceId,
    },
    /// Make the in-sync replica `instance` the master of its partition in a new term (a replica not in sync is
    /// refused: it may lack acknowledged writes); the old master, if any, stays as a replica that is not in sync (FAILOVER of a dead leaf's masters, PROMOTE PARTITION, the pair rebalance).
    Promote {
        db: String,
        instance: InstanceId,
    },
    /// Record whether replica `instance` is in its master's commit path (`Instance::sync`).
    SetReplicaSync {
        db: String,
        instance: InstanceId,
        sync: bool,
    },
    /// Start the record of a new HA operation on `db`, replacing the previous one.
    RecordOperation {
        db: String,
        steps: Vec<Step>,
    },
    /// Update one step of the current operation on `db`.
    UpdateStep {
        db: String,
        index: u32,
        status: StepStatus,
        running_ms: Option<u64>,
        error: Option<String>,
    },
    /// The master aggregator (re)started: steps of earlier operations that were still running read as failed, and
    /// those not started as cancelled (no executor is left to finish them; a rerun plans afresh).
    InterruptOperations,
    /// An account change (CREATE/DROP/ALTER USER, SET PASSWORD, GRANT, REVOKE): `users.rs`.
    User(crate::users::UserCommand),
}

impl Command {
    /// Whether the command only records how an operation is going (a step's status, running time, error): it
    /// changes nothing a statement plan reads, so it does not bump `ClusterMeta::version`, and the metadata store
    /// publishes it without a write of its own.
    pub fn is_progress(&self) -> bool {
        matches!(self, Command::UpdateStep { .. } | Command::InterruptOperations)
    }
}

/// Where one partition of a new database goes: its master's leaf and, in redundancy 2, its replica's (the
/// master's pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub master: NodeId,
    pub replica: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    LeafAdded(NodeId),
    /// The new database's instances in ordinal order (each ordinal's master, then its replica).
    DatabaseCreated(Vec<Instance>),
    /// The dropped database, so the caller can remove its instances from the leaves.
    DatabaseDropped(Database),
    AutoIncrementReserved {
        first: i64,
    },
    InstanceAdded(Instance),
    /// The promoted instance's new term (PROMOTE PARTITION WITH DROP).
    Promoted {
        term: Term,
    },
}

impl ClusterMeta {
    /// A new cluster whose master aggregator is `master` (BOOTSTRAP AGGREGATOR).
    pub fn bootstrap(cluster_id: String, master: NodeAddr) -> ClusterMeta {
        let id = NodeId(1);
        let mut aggregators = std::collections::BTreeMap::new();
        aggregators.insert(id, Aggregator { id, addr: master, is_master: true });
        ClusterMeta {
            cluster_id,
            version: 1,
            aggregators,
            leaves: Default::default(),
            databases: Default::default(),
            variables: Variables::default(),
            users: Default::default(),
            next_node_id: 2,
            next_instance_id: 1,
            next_term: 1,
            next_database_id: 1,
        }
    }

    /// Leaves in leaf order (the order they were added), which placement follows.
    pub fn leaves_in_order(&self) -> impl Iterator<Item = &Leaf> {
        self.leaves.values()
    }

    pub fn online_leaves(&self) -> Vec<&Leaf> {
        self.leaves.values().filter(|l| l.state == LeafState::Online).collect()
    }

    pub fn leaf_at(&self, host: &str, port: u16) -> Option<&Leaf> {
        self.leaves.values().find(|l| l.addr.same_endpoint(host, port))
    }

    pub fn master_aggregator(&self) -> Option<&Aggregator> {
        self.aggregators.values().find(|a| a.is_master)
    }

    pub fn apply(&mut self, command: Command) -> Result<Outcome, MetaError> {
        let progress = command.is_progress();
        let outcome = match command {
            Command::AddLeaf { addr, user, password, group } => self.add_leaf(addr, user, password, group)?,
            Command::CreateDatabase { name, partitions, durability, placement } => {
                self.create_database(name, partitions, durability, placement)?
            }
            Command::SetReplication { db, mode } => {
                self.database_mut(&db)?.replication = mode;
                Outcome::Done
            }
            Command::DropDatabase { name } => {
                let db = self.databases.remove(&name).ok_or(MetaError::UnknownDatabase(name))?;
                Outcome::DatabaseDropped(db)
            }
            Command::CreateTable { db, def } => {
                let database = self.database_mut(&db)?;
                let key = def.name.to_ascii_lowercase();
                if database.tables.contains_key(&key) {
                    return Err(MetaError::TableExists { db, table: def.name });
                }
                database.tables.insert(key, def);
                Outcome::Done
            }
            Command::DropTable { db, table } => {
                let database = self.database_mut(&db)?;
                let key = table.to_ascii_lowercase();
                database.tables.remove(&key).ok_or(MetaError::UnknownTable { db: db.clone(), table })?;
                database.auto_increment.remove(&key);
                Outcome::Done
            }
            Command::AddIndex { db, table, index_sql } => {
                let database = self.database_mut(&db)?;
                let def = database
                    .tables
                    .get_mut(&table.to_ascii_lowercase())
                    .ok_or(MetaError::UnknownTable { db: db.clone(), table })?;
                def.index_sql.push(index_sql);
                Outcome::Done
            }
            Command::SetVariable { name, value } => {
                let mut variables = self.variables.clone();
                variables.set(&name, &value)?;
                if variables.redundancy_level != self.variables.redundancy_level && !self.databases.is_empty() {
                    return Err(MetaError::RedundancyWithDatabases { databases: self.databases.len() });
                }
                self.variables = variables;
                Outcome::Done
            }
            Command::ReserveAutoIncrement { db, table, count } => {
                let database = self.database_mut(&db)?;
                let key = table.to_ascii_lowercase();
                if !database.tables.contains_key(&key) {
                    return Err(MetaError::UnknownTable { db, table });
                }
                let next = database.auto_increment.entry(key).or_insert(1);
                let first = *next;
                let count = i64::try_from(count).map_err(|_| MetaError::AutoIncrementExhausted)?;
                *next = first.checked_add(count).ok_or(MetaError::AutoIncrementExhausted)?;
                Outcome::AutoIncrementReserved { first }
            }
            Command::SetLeafState { leaf, state } => {
                let entry = self.leaves.get_mut(&leaf).ok_or(MetaError::UnknownLeaf(leaf))?;
                if entry.state != state && !leaf_transition_allowed(entry.state, state) {
                    return Err(MetaError::BadLeafTransition { leaf, from: entry.state.as_str(), to: state.as_str() });
                }
                entry.state = state;
                Outcome::Done
            }
            Command::RemoveLeaf { leaf, force } => {
                if !self.leaves.contains_key(&leaf) {
                    return Err(MetaError::UnknownLeaf(leaf));
                }
                let holds = self.databases.values().any(|d| d.instances.iter().any(|i| i.node == leaf));
                if holds && !force {
                    return Err(MetaError::LeafNotEmpty(leaf));
                }
                for db in self.databases.values_mut() {
                    db.instances.retain(|i| i.node != leaf);
                }
                if let Some(pair) = self.leaves.remove(&leaf).and_then(|l| l.pair)
                    && let Some(pair) = self.leaves.get_mut(&pair)
                {
                    pair.pair = None;
                }
                Outcome::Done
            }
            Command::AddInstance { db, ordinal, node, role } => {
                if !self.leaves.contains_key(&node) {
                    return Err(MetaError::UnknownLeaf(node));
                }
                let id = InstanceId(self.next_instance_id);
                let database = self.databases.get(&db).ok_or_else(|| MetaError::UnknownDatabase(db.clone()))?;
                if ordinal >= database.partitions {
                    return Err(MetaError::UnknownInstance { db, ordinal, instance: id });
                }
                if database.instances.iter().any(|i| i.ordinal == ordinal && i.node == node) {
                    return Err(MetaError::InstanceExists { db, ordinal, leaf: node });
                }
                if role == InstanceRole::Master && database.master(ordinal).is_some() {
                    return Err(MetaError::InstanceExists { db, ordinal, leaf: node });
                }
                // Everything is checked: only now take a term, so a refused command changes nothing.
                let term = if role == InstanceRole::Master { self.take_term() } else { Term(0) };
                let database = self.database_mut(&db)?;
                let instance = Instance { id, ordinal, node, role, term, locked: false, sync: false };
                database.instances.push(instance.clone());
                self.next_instance_id += 1;
                Outcome::InstanceAdded(instance)
            }
            Command::RemoveInstance { db, instance } => {
                let database = self.database_mut(&db)?;
                let before = database.instances.len();
                database.instances.retain(|i| i.id != instance);
                if database.instances.len() == before {
                    return Err(MetaError::UnknownInstance { db, ordinal: 0, instance });
                }
                Outcome::Done
            }
            Command::PromoteWithDrop { db, instance } => {
                let term = Term(self.next_term);
                let database = self.database_mut(&db)?;
                let ordinal = database
                    .instances
                    .iter()
                    .find(|i| i.id == instance)
                    .map(|i| i.ordinal)
                    .ok_or_else(|| MetaError::UnknownInstance { db: db.clone(), ordinal: 0, instance })?;
                database
                    .instances
                    .retain(|i| !(i.ordinal == ordinal && i.role == InstanceRole::Master && i.id != instance));
                for i in database.instances.iter_mut().filter(|i| i.id == instance) {
                    i.role = InstanceRole::Master;
                    i.term = term;
                    i.sync = false;
                }
                self.next_term += 1;
                Outcome::Promoted { term }
            }
            Command::Promote { db, instance } => {
                let database = self.databases.get(&db).ok_or_else(|| MetaError::UnknownDatabase(db.clone()))?;
                let promoted = database.instance(instance).ok_or_else(|| MetaError::UnknownInstance {
                    db: db.clone(),
                    ordinal: 0,
                    instance,
                })?;
                if promoted.role != InstanceRole::Replica {
                    return Err(MetaError::NotAReplica { db, ordinal: promoted.ordinal, instance });
                }
                // Only a replica in its master's commit path holds every acknowledged write.
                if !promoted.sync {
                    return Err(MetaError::ReplicaNotInSync { db, ordinal: promoted.ordinal, instance });
                }
                let ordinal = promoted.ordinal;
                let term = self.take_term();
                let database = self.database_mut(&db)?;
                for i in database.instances.iter_mut().filter(|i| i.ordinal == ordinal) {
                    if i.id == instance {
                        i.role = InstanceRole::Master;
                        i.term = term;
                    } else if i.role == InstanceRole::Master {
                        i.role = InstanceRole::Replica;
                        i.term = Term(0);
                    }
                    i.sync = false;
                }
                Outcome::Promoted { term }
            }
            Command::SetReplicaSync { db, instance, sync } => {
                let database = self.database_mut(&db)?;
                let replica = database
                    .instances
                    .iter_mut()
                    .find(|i| i.id == instance)
                    .ok_or_else(|| MetaError::UnknownInstance { db: db.clone(), ordinal: 0, instance })?;
                if replica.role != InstanceRole::Replica {
                    return Err(MetaError::NotAReplica { db, ordinal: replica.ordinal, instance });
                }
                replica.sync = sync;
                Outcome::Done
            }
            Command::RecordOperation { db, steps } => {
                self.database_mut(&db)?.operation = steps;
                Outcome::Done
            }
            Command::UpdateStep { db, index, status, running_ms, error } => {
                let database = self.database_mut(&db)?;
                let step = database
                    .operation
                    .get_mut(index as usize)
                    .ok_or_else(|| MetaError::UnknownStep { db: db.clone(), index })?;
                step.status = status;
                step.running_ms = running_ms;
                step.error = error;
                if status == StepStatus::Success {
                    step.estimated_ms = 0;
                }
                Outcome::Done
            }
            Command::User(command) => {
                self.users.apply(command)?;
                Outcome::Done
            }
            Command::InterruptOperations => {
                for step in self.databases.values_mut().flat_map(|d| d.operation.iter_mut()) {
                    match step.status {
                        StepStatus::Running => {
                            step.status = StepStatus::Failed;
                            step.error = Some("interrupted: the master aggregator restarted".to_string());
                        }
                        StepStatus::Scheduled => step.status = StepStatus::Cancelled,
                        StepStatus::Success | StepStatus::Failed | StepStatus::Cancelled => {}
                    }
                }
                Outcome::Done
            }
        };
        if !progress {
            self.version += 1;
        }
        Ok(outcome)
    }

    fn take_term(&mut self) -> Term {
        let term = Term(self.next_term);
        self.next_term += 1;
        term
    }

    fn database_mut(&mut self, name: &str) -> Result<&mut Database, MetaError> {
        self.databases.get_mut(name).ok_or_else(|| MetaError::UnknownDatabase(name.to_string()))
    }

    fn add_leaf(
        &mut self,
        addr: NodeAddr,
        user: String,
        password: String,
        group: Option<u8>,
    ) -> Result<Outcome, MetaError> {
        if self.leaf_at(&addr.host, addr.port).is_some()
            || self.aggregators.values().any(|a| a.addr.same_endpoint(&addr.host, addr.port))
        {
            return Err(MetaError::NodeExists { host: addr.host, port: addr.port });
        }
        let group = match group {
            Some(group) => group,
            None => self.smaller_group(),
        };
        if group == 0 || group > self.variables.redundancy_level {
            return Err(MetaError::BadAvailabilityGroup(group));
        }
        let id = NodeId(self.next_node_id);
        self.next_node_id += 1;
        // Paired fan-out: the new leaf pairs with the earliest unpaired leaf of the other group, if there is one.
        let pair = (self.variables.redundancy_level == 2)
            .then(|| self.leaves.values().find(|l| l.availability_group != group && l.pair.is_none()).map(|l| l.id))
            .flatten();
        if let Some(pair) = pair.and_then(|p| self.leaves.get_mut(&p)) {
            pair.pair = Some(id);
        }
        self.leaves
            .insert(id, Leaf { id, addr, availability_group: group, pair, state: LeafState::Online, user, password });
        Ok(Outcome::LeafAdded(id))
    }

    /// The availability group a leaf added without `INTO GROUP` joins: the one with fewer leaves (group 1 on a
    /// tie, and always in redundancy 1).
    fn smaller_group(&self) -> u8 {
        if self.variables.redundancy_level < 2 {
            return 1;
        }
        let in_group = |g: u8| self.leaves.values().filter(|l| l.availability_group == g).count();
        if in_group(2) < in_group(1) { 2 } else { 1 }
    }

    fn create_database(
        &mut self,
        name: String,
        partitions: u32,
        durability: Durability,
        placement: Vec<Placed>,
    ) -> Result<Outcome, MetaError> {
        if self.databases.contains_key(&name) {
            return Err(MetaError::DatabaseExists(name));
        }
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(MetaError::BadPartitionCount(partitions));
        }
        if self.online_leaves().is_empty() {
            return Err(MetaError::NoOnlineLeaves);
        }
        if placement.is_empty() && self.variables.redundancy_level == 2 {
            return Err(MetaError::NoOnlinePairs);
        }
        if placement.len() != partitions as usize {
            return Err(MetaError::BadPlacement(format!("{} leaves for {partitions} partitions", placement.len())));
        }
        let online = |n: &NodeId| self.leaves.get(n).is_some_and(|l| l.state == LeafState::Online);
        let two = self.variables.redundancy_level == 2;
        for placed in &placement {
            if !online(&placed.master) {
                return Err(MetaError::BadPlacement(format!("leaf {} is not an online leaf", placed.master)));
            }
            match placed.replica {
                None if two => {
                    return Err(MetaError::BadPlacement("redundancy 2 needs a replica per partition".into()));
                }
                Some(_) if !two => return Err(MetaError::BadPlacement("redundancy 1 has no replicas".into())),
                Some(replica) if self.leaves[&placed.master].pair != Some(replica) || !online(&replica) => {
                    return Err(MetaError::BadPlacement(format!(
                        "leaf {replica} is not the online pair of leaf {}",
                        placed.master
                    )));
                }
                _ => {}
            }
        }
        let mut instances = Vec::with_capacity(placement.len() * 2);
        for (ordinal, placed) in (0..partitions).zip(placement) {
            instances.push(Instance {
                id: InstanceId(self.next_instance_id),
                ordinal,
                node: placed.master,
                role: InstanceRole::Master,
                term: Term(self.next_term),
                locked: false,
                sync: false,
            });
            self.next_instance_id += 1;
            self.next_term += 1;
            if let Some(replica) = placed.replica {
                // Created empty beside an empty master: in sync from the start (the master leaf is told it before
                // this command commits).
                instances.push(Instance {
                    id: InstanceId(self.next_instance_id),
                    ordinal,
                    node: replica,
                    role: InstanceRole::Replica,
                    term: Term(0),
                    locked: false,
                    sync: true,
                });
                self.next_instance_id += 1;
            }
        }
        let id = DatabaseId(self.next_database_id);
        self.next_database_id += 1;
        self.databases.insert(
            name.clone(),
            Database {
                id,
                name,
                partitions,
                durability,
                replication: crate::Replication::Sync,
                tables: Default::default(),
                instances: instances.clone(),
                auto_increment: Default::default(),
                operation: Vec::new(),
            },
        );
        Ok(Outcome::DatabaseCreated(instances))
    }

    /// Checks the invariants every reachable state must satisfy; a violation is a bug, never an operating error.
    pub fn check_invariants(&self) -> Result<(), String> {
        for db in self.databases.values() {
            for ordinal in 0..db.partitions {
                let masters = db.instances.iter().filter(|i| i.ordinal == ordinal && i.role == InstanceRole::Master);
                if masters.count() > 1 {
                    return Err(format!("{}:{ordinal} has more than one master", db.name));
                }
            }
            for inst in &db.instances {
                if db.instances.iter().any(|o| o.id != inst.id && o.ordinal == inst.ordinal && o.node == inst.node) {
                    return Err(format!("{}:{} has two instances on node {}", db.name, inst.ordinal, inst.node));
                }
                if inst.ordinal >= db.partitions {
                    return Err(format!("{} instance {} has ordinal {} out of range", db.name, inst.id, inst.ordinal));
                }
                if !self.leaves.contains_key(&inst.node) {
                    return Err(format!("{} instance {} is on unknown node {}", db.name, inst.id, inst.node));
                }
                if inst.term.0 >= self.next_term {
                    return Err(format!("{} instance {} has a term from the future", db.name, inst.id));
                }
            }
        }
        Ok(())
    }
}

/// The leaf state transitions of the spec (section 2.6), plus `attaching -> offline` (the leaf died while being
/// attached) and `attaching -> detached` (the attach failed and waits for an operator).
pub fn leaf_transition_allowed(from: LeafState, to: LeafState) -> bool {
    use LeafState::*;
    matches!(
        (from, to),
        (Online, Offline)
            | (Online, Detached)
            | (Offline, Attaching)
            | (Offline, Detached)
            | (Detached, Attaching)
            | (Detached, Online)
            | (Attaching, Online)
            | (Attaching, Offline)
            | (Attaching, Detached)
            | (Detached, Offline)
            | (_, Recovering)
            | (Recovering, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> NodeAddr {
        NodeAddr { host: host.into(), port, rpc_port: port + 10000 }
    }

    fn cluster_with_leaves(n: u16) -> ClusterMeta {
        let mut m = ClusterMeta::bootstrap("c1".into(), addr("ma", 3306));
        for i in 1..=n {
            m.apply(Command::AddLeaf {
                addr: addr(&format!("leaf-{i}"), 3306),
                user: "root".into(),
                password: String::new(),
                group: None,
            })
            .unwrap();
        }
        m
    }

    /// CREATE DATABASE `name` with ordinal k on the k-th online leaf modulo their count (`canopy-control`'s
    /// placement, which this crate cannot call); in redundancy 2 over the online pairs, replicas on the pair.
    fn create(name: &str, m: &ClusterMeta, partitions: u32) -> Command {
        let online: Vec<&Leaf> =
            m.online_leaves().into_iter().filter(|l| m.variables.redundancy_level == 1 || l.pair.is_some()).collect();
        let placement = (0..partitions as usize)
            .filter_map(|k| online.get(k % online.len().max(1)))
            .map(|l| Placed { master: l.id, replica: l.pair.filter(|_| m.variables.redundancy_level == 2) })
            .collect();
        Command::CreateDatabase { name: name.into(), partitions, durability: Durability::Sync, placement }
    }

    fn level(n: i64) -> Command {
        Command::SetVariable { name: "redundancy_level".into(), value: canopy_sql::Value::Integer(n) }
    }

    /// Property: the level never changes under existing databases.
    #[test]
    fn redundancy_changes_only_without_databases() {
        let mut m = cluster_with_leaves(2);
        m.apply(create("d", &m, 2)).unwrap();
        assert_eq!(m.apply(level(2)), Err(MetaError::RedundancyWithDatabases { databases: 1 }));
        assert_eq!(m.variables.redundancy_level, 1, "a refused change changes nothing");
        m.apply(Command::DropDatabase { name: "d".into() }).unwrap();
        m.apply(level(2)).unwrap();
        m.apply(Command::SetVariable { name: "auto_attach".into(), value: canopy_sql::Value::Integer(0) }).unwrap();
    }

    /// Redundancy 2: leaves without a group go to the smaller group, each pairs with the earliest unpaired leaf of
    /// the other group, and a database places a replica on the master's pair; removing a leaf unpairs its pair.
    #[test]
    fn redundancy_two_pairs_leaves_and_places_replicas_on_the_pair() {
        let mut m = ClusterMeta::bootstrap("c1".into(), addr("ma", 3306));
        m.apply(level(2)).unwrap();
        for i in 1..=4 {
            let add = Command::AddLeaf {
                addr: addr(&format!("leaf-{i}"), 3306),
                user: "root".into(),
                password: String::new(),
                group: None,
            };
            m.apply(add).unwrap();
        }
        let groups: Vec<u8> = m.leaves.values().map(|l| l.availability_group).collect();
        assert_eq!(groups, [1, 2, 1, 2]);
        let pairs: Vec<Option<u32>> = m.leaves.values().map(|l| l.pair.map(|p| p.0)).collect();
        assert_eq!(pairs, [Some(3), Some(2), Some(5), Some(4)]);
        let bad = Command::AddLeaf {
            addr: addr("leaf-9", 3306),
            user: "root".into(),
            password: String::new(),
            group: Some(3),
        };
        assert_eq!(m.apply(bad), Err(MetaError::BadAvailabilityGroup(3)));
        let Outcome::DatabaseCreated(instances) = m.apply(create("d", &m, 4)).unwrap() else { panic!() };
        assert_eq!(instances.len(), 8);
        for k in 0..4 {
            let master = m.databases["d"].master(k).unwrap();
            let replicas: Vec<&Instance> = m.databases["d"].replicas(k).collect();
            assert_eq!(replicas.len(), 1);
            assert_eq!(m.leaves[&master.node].pair, Some(replicas[0].node));
            assert!(replicas[0].sync && replicas[0].term == Term(0));
        }
        let unpaired_replica = Command::CreateDatabase {
            name: "e".into(),
            partitions: 1,
            durability: Durability::Sync,
            placement: vec![Placed { master: NodeId(2), replica: Some(NodeId(4)) }],
        };
        assert!(matches!(m.apply(unpaired_replica), Err(MetaError::BadPlacement(_))), "replica not on the pair");
        let no_replica = Command::CreateDatabase {
            name: "e".into(),
            partitions: 1,
            durability: Durability::Sync,
            placement: vec![Placed { master: NodeId(2), replica: None }],
        };
        assert!(matches!(m.apply(no_replica), Err(MetaError::BadPlacement(_))), "redundancy 2 needs replicas");
        m.check_invariants().unwrap();
        m.apply(Command::RemoveLeaf { leaf: NodeId(2), force: true }).unwrap();
        assert_eq!(m.leaves[&NodeId(3)].pair, None);
    }

    /// A promotion makes a replica the master in a new, larger term and leaves the old master as a replica that is
    /// not in sync; only replicas can be promoted.
    #[test]
    fn promote_swaps_roles_in_a_new_term() {
        let mut m = ClusterMeta::bootstrap("c1".into(), addr("ma", 3306));
        m.apply(level(2)).unwrap();
        for i in 1..=2 {
            let add = Command::AddLeaf {
                addr: addr(&format!("leaf-{i}"), 3306),
                user: "root".into(),
                password: String::new(),
                group: None,
            };
            m.apply(add).unwrap();
        }
        m.apply(create("d", &m, 1)).unwrap();
        let old = m.databases["d"].master(0).unwrap().clone();
        let replica = m.databases["d"].replicas(0).next().unwrap().clone();
        assert_eq!(
            m.apply(Command::Promote { db: "d".into(), instance: old.id }),
            Err(MetaError::NotAReplica { db: "d".into(), ordinal: 0, instance: old.id })
        );
        let Outcome::Promoted { term } = m.apply(Command::Promote { db: "d".into(), instance: replica.id }).unwrap()
        else {
            panic!()
        };
        assert!(term > old.term);
        let db = &m.databases["d"];
        assert_eq!(db.master(0).unwrap().id, replica.id);
        assert_eq!(db.master(0).unwrap().term, term);
        let demoted = db.instance(old.id).unwrap();
        assert_eq!((demoted.role, demoted.term, demoted.sync), (InstanceRole::Replica, Term(0), false));
        assert_eq!(
            m.apply(Command::Promote { db: "d".into(), instance: old.id }),
            Err(MetaError::ReplicaNotInSync { db: "d".into(), ordinal: 0, instance: old.id }),
            "a replica not in sync may lack acknowledged writes: never promoted"
        );
        m.apply(Command::SetReplicaSync { db: "d".into(), instance: old.id, sync: true }).unwrap();
        assert!(m.databases["d"].instance(old.id).unwrap().sync);
        m.check_invariants().unwrap();
    }

    #[test]
    fn placements_the_state_cannot_take_are_refused() {
        let mut m = cluster_with_leaves(2);
        let leaf = m.online_leaves()[0].id;
        let command = |leaves: Vec<NodeId>| Command::CreateDatabase {
            name: "d".into(),
            partitions: 2,
            durability: Durability::Sync,
            placement: leaves.into_iter().map(|master| Placed { master, replica: None }).collect(),
        };
        assert!(matches!(m.apply(command(vec![leaf])), Err(MetaError::BadPlacement(_))), "too few");
        assert!(matches!(m.apply(command(vec![leaf, NodeId(99)])), Err(MetaError::BadPlacement(_))), "unknown leaf");
        m.apply(Command::SetLeafState { leaf, state: LeafState::Offline }).unwrap();
        assert!(matches!(m.apply(command(vec![leaf, leaf])), Err(MetaError::BadPlacement(_))), "offline leaf");
        assert!(m.databases.is_empty());
    }

    #[test]
    fn instances_follow_the_placement() {
        let mut m = cluster_with_leaves(4);
        let Outcome::DatabaseCreated(instances) = m.apply(create("test", &m, 8)).unwrap() else {
            panic!("expected DatabaseCreated")
        };
        let hosts: Vec<String> = instances.iter().map(|i| m.leaves[&i.node].addr.host.clone()).collect();
        assert_eq!(hosts, ["leaf-1", "leaf-2", "leaf-3", "leaf-4", "leaf-1", "leaf-2", "leaf-3", "leaf-4"]);
        assert!(instances.iter().all(|i| i.role == InstanceRole::Master));
        m.check_invariants().unwrap();
    }

    #[test]
    fn duplicate_leaf_and_database_are_errors() {
        let mut m = cluster_with_leaves(1);
        let dup =
            Command::AddLeaf { addr: addr("LEAF-1", 3306), user: "root".into(), password: String::new(), group: None };
        assert!(matches!(m.apply(dup), Err(MetaError::NodeExists { .. })));
        m.apply(create("d", &m, 2)).unwrap();
        assert!(matches!(m.apply(create("d", &m, 2)), Err(MetaError::DatabaseExists(_))));
    }

    #[test]
    fn creating_a_database_needs_an_online_leaf_and_a_sane_partition_count() {
        let mut m = cluster_with_leaves(0);
        assert_eq!(m.apply(create("d", &m, 2)), Err(MetaError::NoOnlineLeaves));
        let mut m = cluster_with_leaves(1);
        assert_eq!(m.apply(create("d", &m, 0)), Err(MetaError::BadPartitionCount(0)));
    }

    #[test]
    fn auto_increment_reservations_do_not_overlap() {
        let mut m = cluster_with_leaves(1);
        m.apply(create("d", &m, 1)).unwrap();
        let def = TableDef {
            name: "T".into(),
            kind: canopy_sql::TableKind::Distributed,
            columns: vec![],
            primary_key: vec![],
            shard_key: vec![],
            create_sql: String::new(),
            index_sql: vec![],
        };
        m.apply(Command::CreateTable { db: "d".into(), def }).unwrap();
        let reserve = |m: &mut ClusterMeta, n| match m
            .apply(Command::ReserveAutoIncrement { db: "d".into(), table: "t".into(), count: n })
            .unwrap()
        {
            Outcome::AutoIncrementReserved { first } => first,
            other => panic!("{other:?}"),
        };
        assert_eq!(reserve(&mut m, 10), 1);
        assert_eq!(reserve(&mut m, 5), 11);
        assert_eq!(reserve(&mut m, 1), 16);
    }

    #[test]
    fn leaf_states_follow_the_spec_transitions() {
        let mut m = cluster_with_leaves(1);
        let leaf = NodeId(2);
        let set = |m: &mut ClusterMeta, state| m.apply(Command::SetLeafState { leaf, state });
        assert!(set(&mut m, LeafState::Attaching).is_err(), "online leaves are not attached");
        set(&mut m, LeafState::Offline).unwrap();
        set(&mut m, LeafState::Attaching).unwrap();
        set(&mut m, LeafState::Online).unwrap();
        set(&mut m, LeafState::Detached).unwrap();
        assert!(set(&mut m, LeafState::Offline).is_ok());
        assert!(matches!(
            m.apply(Command::SetLeafState { leaf: NodeId(99), state: LeafState::Online }),
            Err(MetaError::UnknownLeaf(_))
        ));
    }

    #[test]
    fn promote_with_drop_gives_a_new_term_and_keeps_one_master() {
        let mut m = cluster_with_leaves(2);
        m.apply(create("d", &m, 2)).unwrap();
        let old = m.databases["d"].master(0).unwrap().clone();
        let Outcome::InstanceAdded(copy) = m
            .apply(Command::AddInstance { db: "d".into(), ordinal: 0, node: NodeId(3), role: InstanceRole::Replica })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(copy.term, Term(0));
        m.check_invariants().unwrap();
        m.apply(Command::PromoteWithDrop { db: "d".into(), instance: copy.id }).unwrap();
        let new = m.databases["d"].master(0).unwrap();
        assert_eq!((new.id, new.node), (copy.id, NodeId(3)));
        assert!(new.term > old.term);
        assert_eq!(m.databases["d"].instances.iter().filter(|i| i.ordinal == 0).count(), 1);
        m.check_invariants().unwrap();
    }

    #[test]
    fn removing_a_leaf_needs_it_empty_or_force() {
        let mut m = cluster_with_leaves(2);
        m.apply(create("d", &m, 2)).unwrap();
        assert_eq!(
            m.apply(Command::RemoveLeaf { leaf: NodeId(3), force: false }),
            Err(MetaError::LeafNotEmpty(NodeId(3)))
        );
        m.apply(Command::RemoveLeaf { leaf: NodeId(3), force: true }).unwrap();
        assert!(m.databases["d"].master(1).is_none(), "partition 1 is unmapped");
        assert!(m.databases["d"].master(0).is_some());
        m.check_invariants().unwrap();
    }

    #[test]
    fn terms_and_instance_ids_only_grow() {
        let mut m = cluster_with_leaves(2);
        m.apply(create("a", &m, 3)).unwrap();
        m.apply(Command::DropDatabase { name: "a".into() }).unwrap();
        let Outcome::DatabaseCreated(instances) = m.apply(create("a", &m, 3)).unwrap() else { panic!() };
        assert!(instances.iter().all(|i| i.id.0 > 3 && i.term.0 > 3));
        m.check_invariants().unwrap();
    }
}
