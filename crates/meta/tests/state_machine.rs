//! Property tests of the metadata state machine: random command sequences over a small universe of leaves,
//! databases and instances, with the invariants checked after every command.
//!
//! History: a bootstrapped cluster receives a random sequence of commands (leaves added, removed and moved between
//! states; databases created and dropped; instances added, removed and promoted); most are refused.
//! Property: after every applied command the metadata satisfies its invariants (at most one master per partition,
//! never two masters in one term, instances only on known leaves, ordinals in range), the version grows by exactly
//! one, terms and ids only grow (also per surviving instance); a refused command changes nothing at all.

use std::collections::BTreeMap;

use canopy_meta::{ClusterMeta, Command, Durability, InstanceId, InstanceRole, LeafState, NodeAddr, NodeId, Placed};
use canopy_sql::{TableDef, TableKind};
use proptest::prelude::*;

const DATABASES: [&str; 3] = ["a", "b", "c"];
const LEAF_IDS_MAX: u32 = 8;
const INSTANCE_IDS_MAX: u64 = 48;

fn addr(n: u8) -> NodeAddr {
    NodeAddr { host: format!("leaf-{n}"), port: 3306, rpc_port: 13306 }
}

fn table(name: &str) -> TableDef {
    TableDef {
        name: name.into(),
        kind: TableKind::Distributed,
        columns: vec![],
        primary_key: vec![],
        shard_key: vec![],
        create_sql: String::new(),
        index_sql: vec![],
    }
}

fn state() -> impl Strategy<Value = LeafState> {
    prop_oneof![
        Just(LeafState::Online),
        Just(LeafState::Offline),
        Just(LeafState::Attaching),
        Just(LeafState::Detached),
        Just(LeafState::Recovering),
    ]
}

fn role() -> impl Strategy<Value = InstanceRole> {
    prop_oneof![Just(InstanceRole::Master), Just(InstanceRole::Replica)]
}

fn db() -> impl Strategy<Value = String> {
    prop::sample::select(&DATABASES[..]).prop_map(str::to_string)
}

fn command() -> impl Strategy<Value = Command> {
    let leaf = || (2..=LEAF_IDS_MAX).prop_map(NodeId);
    let instance = || (1..=INSTANCE_IDS_MAX).prop_map(InstanceId);
    prop_oneof![
        3 => (0u8..6).prop_map(|n| Command::AddLeaf {
            addr: addr(n),
            user: "root".into(),
            password: String::new(),
            group: None
        }),
        // Placements of any leaf ids, known or not, online or not: the state machine must refuse those it
        // cannot take and keep its invariants either way.
        3 => (db(), prop::collection::vec((leaf(), prop::option::of(leaf())), 1..6)).prop_map(|(name, placement)| {
            Command::CreateDatabase {
                name,
                partitions: placement.len() as u32,
                durability: Durability::Sync,
                placement: placement.into_iter().map(|(master, replica)| Placed { master, replica }).collect(),
            }
        }),
        1 => db().prop_map(|name| Command::DropDatabase { name }),
        1 => (db(), prop::sample::select(&["t", "u"][..])).prop_map(|(db, t)| Command::CreateTable { db, def: table(t) }),
        4 => (leaf(), state()).prop_map(|(leaf, state)| Command::SetLeafState { leaf, state }),
        1 => (leaf(), any::<bool>()).prop_map(|(leaf, force)| Command::RemoveLeaf { leaf, force }),
        4 => (db(), 0u32..6, leaf(), role()).prop_map(|(db, ordinal, node, role)| Command::AddInstance {
            db,
            ordinal,
            node,
            role
        }),
        2 => (db(), instance()).prop_map(|(db, instance)| Command::RemoveInstance { db, instance }),
        3 => (db(), instance()).prop_map(|(db, instance)| Command::PromoteWithDrop { db, instance }),
        3 => (db(), instance()).prop_map(|(db, instance)| Command::Promote { db, instance }),
        2 => (db(), instance(), any::<bool>()).prop_map(|(db, instance, sync)| Command::SetReplicaSync { db, instance, sync }),
        1 => (1i64..=2).prop_map(|n| Command::SetVariable { name: "redundancy_level".into(), value: canopy_sql::Value::Integer(n) }),
    ]
}

/// Every instance of the cluster by id, with its term.
fn terms_by_instance(meta: &ClusterMeta) -> BTreeMap<InstanceId, u64> {
    meta.databases.values().flat_map(|d| d.instances.iter().map(|i| (i.id, i.term.0))).collect()
}

/// The invariants every state the machine accepts must satisfy, beyond `check_invariants` itself.
fn check(before: &ClusterMeta, after: &ClusterMeta) -> Result<(), TestCaseError> {
    after.check_invariants().map_err(TestCaseError::fail)?;
    prop_assert_eq!(after.version, before.version + 1, "every applied command bumps the version by one");
    prop_assert!(after.next_term >= before.next_term, "terms only grow");
    prop_assert!(after.next_instance_id >= before.next_instance_id, "instance ids only grow");
    prop_assert!(after.next_node_id >= before.next_node_id, "node ids only grow");
    prop_assert!(after.next_database_id >= before.next_database_id, "database ids only grow");
    let old_terms = terms_by_instance(before);
    for (id, term) in terms_by_instance(after) {
        if let Some(old) = old_terms.get(&id) {
            prop_assert!(term >= *old || term == 0, "instance {id} went back from term {old} to {term}");
        } else {
            prop_assert!(id.0 >= before.next_instance_id, "instance {id} is new but reuses an old id");
        }
    }
    // Never two masters in one term: every master's term is unique in the cluster.
    let mut master_terms = BTreeMap::new();
    for database in after.databases.values() {
        for instance in database.instances.iter().filter(|i| i.role == InstanceRole::Master) {
            prop_assert!(instance.term.0 > 0, "a master has a real term");
            let clash = master_terms.insert(instance.term.0, (database.name.clone(), instance.ordinal));
            prop_assert!(clash.is_none(), "term {} has two masters: {:?} and {}", instance.term.0, clash, instance.id);
        }
    }
    for database in after.databases.values() {
        for instance in &database.instances {
            let leaf = &after.leaves[&instance.node];
            prop_assert_eq!(leaf.id, instance.node);
            prop_assert!(!(instance.sync && instance.role == InstanceRole::Master), "a master is never a sync replica");
        }
    }
    for leaf in after.leaves.values() {
        if let Some(pair) = leaf.pair {
            let other = after.leaves.get(&pair);
            prop_assert!(
                other.is_some_and(|o| o.pair == Some(leaf.id) && o.availability_group != leaf.availability_group),
                "pairs are mutual and span both groups: {:?}",
                leaf
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_command(commands in prop::collection::vec(command(), 1..80)) {
        let mut meta = ClusterMeta::bootstrap("c1".into(), NodeAddr { host: "ma".into(), port: 3306, rpc_port: 13306 });
        let mut applied = 0;
        for command in commands {
            let before = meta.clone();
            match meta.apply(command.clone()) {
                Ok(_) => {
                    applied += 1;
                    check(&before, &meta)?;
                }
                Err(error) => {
                    prop_assert_eq!(&meta, &before, "refused command {:?} ({}) changed the metadata", command, error);
                }
            }
        }
        prop_assert!(applied > 0 || meta.version == 1);
    }
}
