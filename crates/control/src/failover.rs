//! Redundancy 2's decisions, pure: which replicas a failover promotes, which leave their master's commit path, which
//! need bringing back in sync, and which masters the pair rebalance moves back after a leaf returns.
//!
//! - **Promote**: a partition whose master is on a leaf that is not online (offline, attaching after a restart,
//!   detached) gets its in-sync replica promoted, if that replica's leaf is online. Only an in-sync replica holds
//!   every acknowledged write; a partition without one stays without a master (ERROR 1777) until a copy returns.
//! - **Demote**: an in-sync replica on a leaf that is away (not online, not being attached), whose master is on an
//!   online leaf, leaves the commit path (recorded async), so the master's commits stop waiting for it. While the master is not online
//!   either, the replica stays in sync: it is then that partition's failover candidate.
//! - **Repair**: a replica that is not in sync, on an online leaf, whose master is on an online leaf, is brought back
//!   in sync (caught up or copied afresh), if it is on its master's pair leaf: a replica elsewhere is a rebalance's
//!   copy (a move's new copies before their switch, a moved partition's old replica before its drop, or the leftover
//!   of a move cut off by a restart), which the rebalance switches or drops; bringing it into the commit path would
//!   take the pair's replica out of it.
//! - **Pair balance**: after a leaf returns, the masters of each database are split evenly within its pair again by
//!   promoting in-sync replicas on the leaf that has fewer masters.

use canopy_meta::{ClusterMeta, InstanceId, InstanceRole, LeafState, NodeId};

/// What a failover pass does: `(database, instance)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Replicas to promote to master.
    pub promote: Vec<(String, InstanceId)>,
    /// In-sync replicas to take out of their master's commit path.
    pub demote: Vec<(String, InstanceId)>,
}

/// A replica to bring back in sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub db: String,
    pub replica: InstanceId,
}

fn online(meta: &ClusterMeta, node: NodeId) -> bool {
    meta.leaves.get(&node).is_some_and(|l| l.state == LeafState::Online)
}

/// A leaf that is away: not online and not being attached (an attach brings its own replicas back in sync, and a
/// demotion racing with it could undo the attach's registration after the attach recorded it).
pub fn away(meta: &ClusterMeta, node: NodeId) -> bool {
    meta.leaves.get(&node).is_none_or(|l| !matches!(l.state, LeafState::Online | LeafState::Attaching))
}

/// The promotions and demotions the current metadata calls for (see the module's rules).
pub fn actions(meta: &ClusterMeta) -> Actions {
    let mut actions = Actions::default();
    if meta.variables.redundancy_level < 2 {
        return actions;
    }
    for database in meta.databases.values() {
        for ordinal in 0..database.partitions {
            let master = database.master(ordinal);
            let master_online = master.is_some_and(|m| online(meta, m.node));
            for replica in database.replicas(ordinal).filter(|r| r.sync) {
                let replica_online = online(meta, replica.node);
                if !master_online && replica_online && master.is_some() {
                    actions.promote.push((database.name.clone(), replica.id));
                    break;
                }
                if master_online && away(meta, replica.node) {
                    actions.demote.push((database.name.clone(), replica.id));
                }
            }
        }
    }
    actions
}

/// The replicas to bring back in sync (see the module's rules).
pub fn repairs(meta: &ClusterMeta) -> Vec<Repair> {
    let mut repairs = Vec::new();
    for database in meta.databases.values() {
        for replica in database.instances.iter().filter(|i| i.role == InstanceRole::Replica && !i.sync) {
            let Some(master) = database.master(replica.ordinal) else { continue };
            let on_pair = meta.leaves.get(&master.node).is_some_and(|l| l.pair == Some(replica.node));
            if on_pair && online(meta, master.node) && online(meta, replica.node) {
                repairs.push(Repair { db: database.name.clone(), replica: replica.id });
            }
        }
    }
    repairs
}

/// A replica to create: partition `ordinal` of `db` gets a copy on `target` (its master's pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingReplica {
    pub db: String,
    pub ordinal: u32,
    pub target: NodeId,
}

/// The replicas redundancy 2 lacks (RESTORE REDUNDANCY, and healing after a leaf was removed and a new one paired):
/// every partition whose master is on an online leaf with an online pair, when the pair holds no copy of it and no
/// replica of it is in sync anywhere. `db` restricts the answer to one database.
pub fn missing_replicas(meta: &ClusterMeta, db: Option<&str>) -> Vec<MissingReplica> {
    let mut missing = Vec::new();
    if meta.variables.redundancy_level < 2 {
        return missing;
    }
    for database in meta.databases.values().filter(|d| db.is_none_or(|name| d.name == name)) {
        for ordinal in 0..database.partitions {
            let Some(master) = database.master(ordinal).filter(|m| online(meta, m.node)) else { continue };
            let Some(pair) = meta.leaves[&master.node].pair.filter(|p| online(meta, *p)) else { continue };
            let on_pair = database.instances.iter().any(|i| i.ordinal == ordinal && i.node == pair);
            if !on_pair && !database.replicas(ordinal).any(|r| r.sync) {
                missing.push(MissingReplica { db: database.name.clone(), ordinal, target: pair });
            }
        }
    }
    missing
}

/// The in-sync replicas on `leaf` to promote so that, for each database, the masters of the partitions `leaf` and
/// its pair share are split evenly between them (the leaf with fewer masters gets the difference halved).
pub fn pair_balance(meta: &ClusterMeta, leaf: NodeId) -> Vec<(String, InstanceId)> {
    let Some(pair) = meta.leaves.get(&leaf).and_then(|l| l.pair) else { return Vec::new() };
    if !online(meta, leaf) || !online(meta, pair) {
        return Vec::new();
    }
    let mut promote = Vec::new();
    for database in meta.databases.values() {
        let masters_on = |node: NodeId| {
            database.instances.iter().filter(|i| i.node == node && i.role == InstanceRole::Master).count()
        };
        let (here, there) = (masters_on(leaf), masters_on(pair));
        if there <= here + 1 {
            continue;
        }
        let wanted = (there - here) / 2;
        let candidates = database.instances.iter().filter(|i| {
            i.node == leaf
                && i.role == InstanceRole::Replica
                && i.sync
                && database.master(i.ordinal).is_some_and(|m| m.node == pair)
        });
        promote.extend(candidates.take(wanted).map(|i| (database.name.clone(), i.id)));
    }
    promote
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_meta::{Command, Durability, NodeAddr, Placed};

    fn cluster(leaves: u16, partitions: u32) -> ClusterMeta {
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 3306, rpc_port: 13306 });
        m.apply(Command::SetVariable { name: "redundancy_level".into(), value: canopy_sql::Value::Integer(2) })
            .unwrap();
        for i in 1..=leaves {
            let addr = NodeAddr { host: format!("leaf-{i}"), port: 3306, rpc_port: 13306 };
            m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        }
        m.apply(crate::placement::create_database(&m, "d", partitions, Durability::Sync)).unwrap();
        m
    }

    fn state(m: &mut ClusterMeta, leaf: u32, state: LeafState) {
        m.apply(Command::SetLeafState { leaf: NodeId(leaf), state }).unwrap();
    }

    fn apply(m: &mut ClusterMeta, a: &Actions) {
        for (db, instance) in &a.promote {
            m.apply(Command::Promote { db: db.clone(), instance: *instance }).unwrap();
        }
        for (db, instance) in &a.demote {
            m.apply(Command::SetReplicaSync { db: db.clone(), instance: *instance, sync: false }).unwrap();
        }
    }

    /// A leaf dies: every partition it mastered is promoted on its pair, every replica it held leaves the commit
    /// path; afterwards nothing more is to do, and a healthy cluster calls for nothing.
    #[test]
    fn a_dead_leaf_fails_over_to_its_pair_and_its_replicas_go_async() {
        let mut m = cluster(2, 4);
        assert_eq!(actions(&m), Actions::default(), "a healthy cluster needs nothing");
        let _: Vec<Placed> = Vec::new();
        state(&mut m, 2, LeafState::Offline);
        let a = actions(&m);
        assert_eq!(a.promote.len(), 2, "leaf 2 mastered half of the 4 partitions: {a:?}");
        assert_eq!(a.demote.len(), 2, "and held the replicas of the other half: {a:?}");
        apply(&mut m, &a);
        let d = &m.databases["d"];
        for k in 0..4 {
            assert_eq!(d.master(k).unwrap().node, NodeId(3), "every master on the surviving leaf");
        }
        assert_eq!(actions(&m), Actions::default(), "nothing left to do");
        assert!(repairs(&m).is_empty(), "replicas on an offline leaf are not repaired");
        // It returns: its four replicas are repaired, then the pair is balanced by promoting two back.
        state(&mut m, 2, LeafState::Attaching);
        state(&mut m, 2, LeafState::Online);
        let r = repairs(&m);
        assert_eq!(r.len(), 4);
        for Repair { db, replica } in r {
            m.apply(Command::SetReplicaSync { db, instance: replica, sync: true }).unwrap();
        }
        let back = pair_balance(&m, NodeId(2));
        assert_eq!(back.len(), 2);
        for (db, instance) in back {
            m.apply(Command::Promote { db, instance }).unwrap();
        }
        let masters = |n| {
            m.databases["d"].instances.iter().filter(|i| i.node == NodeId(n) && i.role == InstanceRole::Master).count()
        };
        assert_eq!((masters(2), masters(3)), (2, 2));
        assert!(pair_balance(&m, NodeId(2)).is_empty(), "balanced");
    }

    /// Both leaves of a pair down: nothing can be promoted; the replica stays in sync (a candidate), and when its
    /// leaf returns first it is promoted. A replica that is not in sync is never promoted.
    #[test]
    fn both_leaves_of_a_pair_down_keeps_the_replica_a_candidate() {
        let mut m = cluster(2, 2);
        state(&mut m, 2, LeafState::Offline);
        state(&mut m, 3, LeafState::Offline);
        assert_eq!(actions(&m), Actions::default(), "no online replica, no master online: nothing");
        state(&mut m, 3, LeafState::Attaching);
        state(&mut m, 3, LeafState::Online);
        let a = actions(&m);
        assert_eq!(a.promote.len(), 1, "leaf 3's in-sync replica of leaf 2's partition: {a:?}");
        let mut async_replica = cluster(2, 2);
        let replica = async_replica.databases["d"].replicas(0).next().unwrap().id;
        async_replica.apply(Command::SetReplicaSync { db: "d".into(), instance: replica, sync: false }).unwrap();
        let master = async_replica.databases["d"].master(0).unwrap().node;
        state(&mut async_replica, master.0, LeafState::Offline);
        assert!(
            actions(&async_replica).promote.iter().all(|(_, i)| *i != replica),
            "an async replica is never promoted"
        );
    }

    /// A leaf removed for good leaves its pair unpaired; a new leaf added into the removed leaf's group pairs with
    /// it, and every partition mastered there lacks a replica on the new pair until one is made.
    #[test]
    fn a_new_pair_lacks_the_replicas_of_its_partner() {
        let mut m = cluster(2, 4);
        assert!(missing_replicas(&m, None).is_empty());
        state(&mut m, 2, LeafState::Offline);
        let a = actions(&m);
        apply(&mut m, &a);
        m.apply(Command::RemoveLeaf { leaf: NodeId(2), force: true }).unwrap();
        assert!(missing_replicas(&m, None).is_empty(), "no pair to put them on");
        let addr = NodeAddr { host: "leaf-new".into(), port: 3306, rpc_port: 13306 };
        m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        let new = m.leaves.values().find(|l| l.addr.host == "leaf-new").unwrap();
        assert_eq!((new.availability_group, new.pair), (1, Some(NodeId(3))), "joins the smaller group, pairs");
        let missing = missing_replicas(&m, Some("d"));
        assert_eq!(missing.len(), 4);
        assert!(missing.iter().all(|r| r.target == new.id));
        assert!(missing_replicas(&m, Some("other")).is_empty());
    }

    /// Redundancy 1 has no replicas to act on.
    #[test]
    fn redundancy_one_calls_for_nothing() {
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 3306, rpc_port: 13306 });
        let addr = NodeAddr { host: "leaf-1".into(), port: 3306, rpc_port: 13306 };
        m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        m.apply(crate::placement::create_database(&m, "d", 2, Durability::Sync)).unwrap();
        state(&mut m, 2, LeafState::Offline);
        assert_eq!(actions(&m), Actions::default());
    }
}
