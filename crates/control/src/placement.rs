//! Where partition instances go. A new database (CREATE DATABASE): ordinal k's master on the k-th online leaf
//! modulo their count, in leaf order, as in SingleStore's example; the state machine only checks the placement it is
//! given. A leaf being emptied (DETACH LEAF, REMOVE LEAF): each of the leaf's partitions of a database goes to the
//! online leaf holding the fewest partitions of that database at that moment, ties going to the earliest leaf in
//! leaf order. The rebalance planner (`rebalance`) decides the other moves.

use canopy_meta::{ClusterMeta, Command, Durability, NodeId};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlacementError {
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    #[error("no other online leaf can take the partitions of '{db}'")]
    NoTarget { db: String },
}

/// The leaf of each ordinal's master for a new database of `partitions` partitions (empty when no leaf is online;
/// the state machine then refuses the database).
pub fn new_database(meta: &ClusterMeta, partitions: u32) -> Vec<NodeId> {
    let online: Vec<NodeId> =
        meta.leaves_in_order().filter(|l| l.state == canopy_meta::LeafState::Online).map(|l| l.id).collect();
    if online.is_empty() {
        return Vec::new();
    }
    (0..partitions as usize).map(|k| online[k % online.len()]).collect()
}

/// The command that creates database `name` placed by `new_database`.
pub fn create_database(meta: &ClusterMeta, name: &str, partitions: u32, durability: Durability) -> Command {
    Command::CreateDatabase {
        name: name.to_string(),
        partitions,
        durability,
        placement: new_database(meta, partitions),
    }
}

/// The moves that empty `leaf` of its instances of `db`: `(ordinal, target)` in instance order. Empty when the leaf
/// holds none.
pub fn drain_targets(meta: &ClusterMeta, db: &str, leaf: NodeId) -> Result<Vec<(u32, NodeId)>, PlacementError> {
    let database = meta.databases.get(db).ok_or_else(|| PlacementError::UnknownDatabase(db.to_string()))?;
    let ordinals: Vec<u32> = database.instances.iter().filter(|i| i.node == leaf).map(|i| i.ordinal).collect();
    if ordinals.is_empty() {
        return Ok(Vec::new());
    }
    // (partitions of the database held, leaf order, leaf): the smallest first.
    let mut load: Vec<(usize, usize, NodeId)> = meta
        .leaves_in_order()
        .enumerate()
        .filter(|(_, l)| l.id != leaf && l.state == canopy_meta::LeafState::Online)
        .map(|(order, l)| (database.instances.iter().filter(|i| i.node == l.id).count(), order, l.id))
        .collect();
    if load.is_empty() {
        return Err(PlacementError::NoTarget { db: db.to_string() });
    }
    let mut moves = Vec::with_capacity(ordinals.len());
    for ordinal in ordinals {
        let least = load.iter_mut().min().expect("load is not empty");
        least.0 += 1;
        moves.push((ordinal, least.2));
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_meta::{LeafState, NodeAddr, Outcome};

    fn cluster(leaves: u16) -> ClusterMeta {
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 3306, rpc_port: 13306 });
        for i in 1..=leaves {
            let addr = NodeAddr { host: format!("leaf-{i}"), port: 3306, rpc_port: 13306 };
            m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        }
        m
    }

    /// Eight partitions on four leaves go round robin in leaf order (the spec's example); offline leaves get none.
    #[test]
    fn a_new_database_goes_round_robin_over_online_leaves() {
        let mut m = cluster(4);
        let Outcome::DatabaseCreated(instances) = m.apply(create_database(&m, "test", 8, Durability::Sync)).unwrap()
        else {
            panic!("expected DatabaseCreated")
        };
        let hosts: Vec<String> = instances.iter().map(|i| m.leaves[&i.node].addr.host.clone()).collect();
        assert_eq!(hosts, ["leaf-1", "leaf-2", "leaf-3", "leaf-4", "leaf-1", "leaf-2", "leaf-3", "leaf-4"]);
        let second = m.leaves_in_order().nth(1).unwrap().id;
        m.apply(Command::SetLeafState { leaf: second, state: LeafState::Offline }).unwrap();
        let placement = new_database(&m, 6);
        assert_eq!(placement.len(), 6);
        assert!(!placement.contains(&second), "no partition on an offline leaf: {placement:?}");
        assert!(new_database(&cluster(0), 4).is_empty());
    }
}
