//! Where partition instances go. A new database (CREATE DATABASE): in redundancy 1, ordinal k's master on the k-th
//! online leaf modulo their count, in leaf order, as in SingleStore's example; in redundancy 2, ordinal k on the
//! k-th online pair modulo their count (pairs in the order of their group-1 leaf), its master alternating between
//! the two leaves of the pair from one round to the next (so masters are balanced within each pair) and its replica
//! on the other leaf. A leaf without an online pair holds nothing. The state machine only checks the placement it is
//! given. The rebalance planner (`rebalance`) decides every move, also those that empty a leaf (DETACH LEAF, REMOVE
//! LEAF).

use canopy_meta::{ClusterMeta, Command, Durability, LeafState, NodeId, Placed};

/// Where each ordinal of a new database of `partitions` partitions goes (empty when no leaf, or in redundancy 2 no
/// pair, is online; the state machine then refuses the database).
pub fn new_database(meta: &ClusterMeta, partitions: u32) -> Vec<Placed> {
    if meta.variables.redundancy_level == 2 {
        let pairs = online_pairs(meta);
        if pairs.is_empty() {
            return Vec::new();
        }
        return (0..partitions as usize)
            .map(|k| {
                let (a, b) = pairs[k % pairs.len()];
                let (master, replica) = if (k / pairs.len()).is_multiple_of(2) { (a, b) } else { (b, a) };
                Placed { master, replica: Some(replica) }
            })
            .collect();
    }
    let online: Vec<NodeId> = meta.leaves_in_order().filter(|l| l.state == LeafState::Online).map(|l| l.id).collect();
    if online.is_empty() {
        return Vec::new();
    }
    (0..partitions as usize).map(|k| Placed { master: online[k % online.len()], replica: None }).collect()
}

/// The pairs whose two leaves are online, as (group-1 leaf, group-2 leaf), in the group-1 leaf's order.
pub fn online_pairs(meta: &ClusterMeta) -> Vec<(NodeId, NodeId)> {
    let online = |id: NodeId| meta.leaves.get(&id).is_some_and(|l| l.state == LeafState::Online);
    meta.leaves_in_order()
        .filter(|l| l.availability_group == 1 && online(l.id))
        .filter_map(|l| l.pair.filter(|p| online(*p)).map(|p| (l.id, p)))
        .collect()
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
        assert!(placement.iter().all(|p| p.master != second), "no partition on an offline leaf: {placement:?}");
        assert!(new_database(&cluster(0), 4).is_empty());
    }

    fn cluster_two(leaves: u16) -> ClusterMeta {
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 3306, rpc_port: 13306 });
        m.apply(Command::SetVariable { name: "redundancy_level".into(), value: canopy_sql::Value::Integer(2) })
            .unwrap();
        for i in 1..=leaves {
            let addr = NodeAddr { host: format!("leaf-{i}"), port: 3306, rpc_port: 13306 };
            m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        }
        m
    }

    /// Redundancy 2: every partition has its replica on the master's pair, each pair holds its share, masters are
    /// split evenly within each pair, and an unpaired leaf (the fifth) or a pair with an offline leaf holds none.
    #[test]
    fn redundancy_two_places_replicas_on_the_pair_with_masters_balanced() {
        let mut m = cluster_two(5);
        let placement = new_database(&m, 8);
        let unpaired = m.leaves.values().find(|l| l.pair.is_none()).unwrap().id;
        for p in &placement {
            assert_eq!(m.leaves[&p.master].pair, p.replica, "{p:?}");
            assert!(p.master != unpaired && p.replica != Some(unpaired));
        }
        for (a, b) in online_pairs(&m) {
            let masters_a = placement.iter().filter(|p| p.master == a).count();
            let masters_b = placement.iter().filter(|p| p.master == b).count();
            assert_eq!((masters_a, masters_b), (2, 2), "pair ({a}, {b})");
        }
        m.apply(create_database(&m, "d", 8, Durability::Sync)).unwrap();
        let first_pair = online_pairs(&m)[0];
        m.apply(Command::SetLeafState { leaf: first_pair.1, state: LeafState::Offline }).unwrap();
        assert!(new_database(&m, 4).iter().all(|p| p.master != first_pair.0 && p.master != first_pair.1));
        assert!(new_database(&cluster_two(1), 4).is_empty(), "no pair, no placement");
    }
}
