//! Properties of the redundancy-1 rebalance planner over arbitrary clusters: leaves in any state, partitions placed
//! anywhere (or nowhere), new empty leaves, a second database. Each plan is played step by step through the
//! metadata state machine (`plan::apply_step`), and the invariants are checked after every step.

use std::collections::BTreeMap;

use canopy_control::plan::{apply_plan, apply_step};
use canopy_control::rebalance::{self, Options, RebalanceError, Sizes};
use canopy_meta::{ClusterMeta, Command, InstanceRole, LeafState, NodeAddr, NodeId};
use proptest::prelude::*;

/// A cluster to plan on: leaves with their states, then the placement of each database's ordinals (an index into
/// the leaves, or None for a partition without any instance).
#[derive(Debug, Clone)]
struct Shape {
    states: Vec<LeafState>,
    databases: Vec<Vec<Option<usize>>>,
    sizes: Vec<u64>,
    full: bool,
    force: bool,
}

fn state() -> impl Strategy<Value = LeafState> {
    prop_oneof![4 => Just(LeafState::Online), 1 => Just(LeafState::Offline), 1 => Just(LeafState::Detached)]
}

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..=9).prop_flat_map(|leaves| {
        let placement = prop::collection::vec(prop::option::weighted(0.9, 0..leaves), 1..=40);
        (
            prop::collection::vec(state(), leaves),
            prop::collection::vec(placement, 1..=2),
            prop::collection::vec(0u64..5_000_000, 40),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(states, databases, sizes, full, force)| Shape {
                states,
                databases,
                sizes,
                full,
                force,
            })
    })
}

/// Builds the metadata through the state machine: every leaf online, each database created and its partitions
/// moved (copy + promote with drop) or dropped to fit the shape, then the leaves set to their states.
fn build(shape: &Shape) -> ClusterMeta {
    let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
    for i in 0..shape.states.len() {
        let addr = NodeAddr { host: format!("leaf-{i}"), port: 3306, rpc_port: 13306 };
        m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
    }
    let leaves: Vec<NodeId> = m.leaves.keys().copied().collect();
    for (d, placement) in shape.databases.iter().enumerate() {
        let db = format!("db{d}");
        let partitions = placement.len() as u32;
        m.apply(canopy_control::placement::create_database(&m, &db, partitions, canopy_meta::Durability::Sync))
            .unwrap();
        for (ordinal, place) in placement.iter().enumerate() {
            let ordinal = ordinal as u32;
            let master = m.databases[&db].master(ordinal).unwrap().clone();
            match place {
                None => {
                    m.apply(Command::RemoveInstance { db: db.clone(), instance: master.id }).unwrap();
                }
                Some(i) if leaves[*i] != master.node => {
                    let role = InstanceRole::Replica;
                    m.apply(Command::AddInstance { db: db.clone(), ordinal, node: leaves[*i], role }).unwrap();
                    let copy = m.databases[&db].instances.iter().find(|x| x.ordinal == ordinal && x.node == leaves[*i]);
                    let instance = copy.unwrap().id;
                    m.apply(Command::PromoteWithDrop { db: db.clone(), instance }).unwrap();
                }
                Some(_) => {}
            }
        }
    }
    for (leaf, &state) in leaves.iter().zip(&shape.states) {
        if state != LeafState::Online {
            m.apply(Command::SetLeafState { leaf: *leaf, state }).unwrap();
        }
    }
    m
}

fn online(m: &ClusterMeta) -> Vec<NodeId> {
    m.leaves.values().filter(|l| l.state == LeafState::Online).map(|l| l.id).collect()
}

/// Masters of `db` on each online leaf.
fn counts(m: &ClusterMeta, db: &str) -> Vec<usize> {
    let database = &m.databases[db];
    online(m)
        .iter()
        .map(|l| database.instances.iter().filter(|i| i.node == *l && i.role == InstanceRole::Master).count())
        .collect()
}

/// The fewest moves that even out `counts`, computed here independently of the planner: the leaves holding the most
/// keep the remainder, every other partition above a leaf's share must move.
fn lower_bound(mut counts: Vec<usize>) -> usize {
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let total: usize = counts.iter().sum();
    let (base, extra) = (total / counts.len(), total % counts.len());
    counts.iter().enumerate().map(|(i, &c)| c.saturating_sub(base + usize::from(i < extra))).sum()
}

/// Copies and masters of every partition of `db`.
fn copies(m: &ClusterMeta, db: &str) -> Vec<(usize, usize)> {
    let database = &m.databases[db];
    (0..database.partitions)
        .map(|o| {
            let of = database.instances.iter().filter(|i| i.ordinal == o);
            let masters = of.clone().filter(|i| i.role == InstanceRole::Master).count();
            (of.count(), masters)
        })
        .collect()
}

/// The ordinals whose master is on an online leaf.
fn served(m: &ClusterMeta, db: &str) -> Vec<u32> {
    let online = online(m);
    let mut ordinals: Vec<u32> = m.databases[db]
        .instances
        .iter()
        .filter(|i| i.role == InstanceRole::Master && online.contains(&i.node))
        .map(|i| i.ordinal)
        .collect();
    ordinals.sort_unstable();
    ordinals
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Every plan, played step by step, keeps at most one master and never fewer copies per partition than it had,
    /// reaches balance with exactly the fewest moves (without FULL or FORCE), keeps every served partition served
    /// (FORCE: serves every partition), and planning the result again gives an empty plan.
    #[test]
    fn every_plan_reaches_balance_safely_with_the_fewest_moves(shape in shape()) {
        let meta = build(&shape);
        let sizes: Sizes = shape.sizes.iter().enumerate().map(|(o, &b)| (o as u32, b)).collect();
        let options = Options { full: shape.full, force: shape.force, ..Options::default() };
        for db in meta.databases.keys() {
            let planned = rebalance::plan(&meta, db, &options, &sizes);
            if online(&meta).is_empty() {
                prop_assert_eq!(planned, Err(RebalanceError::NoOnlineLeaves));
                continue;
            }
            let plan = planned.unwrap();
            let mut after = meta.clone();
            let before = copies(&meta, db);
            for step in &plan.steps {
                apply_step(&mut after, step).unwrap();
                after.check_invariants().unwrap();
                let now = copies(&after, db);
                for (ordinal, (b, n)) in before.iter().zip(&now).enumerate() {
                    prop_assert!(n.0 >= b.0, "{db}:{ordinal} lost a copy at {step:?}");
                    prop_assert!(n.1 <= 1 && n.1 >= b.1, "{db}:{ordinal} masters {} -> {} at {step:?}", b.1, n.1);
                }
            }
            prop_assert!(rebalance::is_balanced(&after, db), "{:?} after {:?}", counts(&after, db), plan);
            let was_served = served(&meta, db);
            if shape.force {
                let every: Vec<u32> = (0..meta.databases[db].partitions).collect();
                prop_assert_eq!(served(&after, db), every, "FORCE gives every partition a master");
            } else {
                prop_assert_eq!(served(&after, db), was_served.clone());
            }
            let (now, then) = (copies(&after, db), copies(&meta, db));
            for &ordinal in &was_served {
                let o = ordinal as usize;
                prop_assert_eq!(now[o], then[o], "every move drops the copy it replaces");
            }
            if !shape.full && !shape.force {
                prop_assert_eq!(plan.copies(), lower_bound(counts(&meta, db)));
                prop_assert_eq!(plan.copies(), rebalance::moves_lower_bound(&meta, db));
            }
            let again = rebalance::plan(&after, db, &options, &sizes).unwrap();
            prop_assert!(again.is_empty(), "planning a balanced database again: {:?}", again);
            let plain = rebalance::plan(&after, db, &Options::default(), &sizes).unwrap();
            prop_assert!(plain.is_empty(), "a balanced database needs no steps: {:?}", plain);
        }
    }

    /// DETACH/REMOVE LEAF: with an online leaf excluded, every plan played step by step keeps the invariants above,
    /// leaves no instance on the excluded leaf, balances the other leaves, and planning again gives nothing.
    #[test]
    fn emptying_a_leaf_moves_everything_off_it_safely(shape in shape(), pick in 0usize..9) {
        let meta = build(&shape);
        let online = online(&meta);
        prop_assume!(online.len() >= 2);
        let leaf = online[pick % online.len()];
        let options = Options { exclude: Some(leaf), ..Options::default() };
        for db in meta.databases.keys() {
            let plan = rebalance::plan(&meta, db, &options, &Sizes::new()).unwrap();
            let mut after = meta.clone();
            let before = copies(&meta, db);
            for step in &plan.steps {
                prop_assert!(step.target != leaf || step.action.as_str() == "DROP PARTITION", "{:?}", step);
                apply_step(&mut after, step).unwrap();
                after.check_invariants().unwrap();
                for (ordinal, (b, n)) in before.iter().zip(copies(&after, db)).enumerate() {
                    prop_assert!(n.0 >= b.0.min(1), "{}:{} lost its copy at {:?}", db, ordinal, step);
                    prop_assert!(n.1 <= 1 && n.1 >= b.1, "{}:{} masters {} -> {} at {:?}", db, ordinal, b.1, n.1, step);
                }
            }
            prop_assert!(after.databases[db].instances.iter().all(|i| i.node != leaf), "{:?}", plan);
            prop_assert!(rebalance::is_balanced_without(&after, db, Some(leaf)));
            let again = rebalance::plan(&after, db, &options, &Sizes::new()).unwrap();
            prop_assert!(again.is_empty(), "{:?}", again);
        }
    }

    /// REBALANCE ALL DATABASES: the plans, played in order, balance every database, and planning all again after
    /// them gives nothing.
    #[test]
    fn all_database_plans_balance_every_database(shape in shape()) {
        let meta = build(&shape);
        prop_assume!(!online(&meta).is_empty());
        let plans = rebalance::plan_all(&meta, &Options::default(), &BTreeMap::new()).unwrap();
        let mut after = meta.clone();
        for plan in &plans {
            apply_plan(&mut after, plan).unwrap();
            after.check_invariants().unwrap();
        }
        for db in meta.databases.keys() {
            prop_assert!(rebalance::is_balanced(&after, db));
        }
        let again = rebalance::plan_all(&after, &Options::default(), &BTreeMap::new()).unwrap();
        prop_assert!(again.iter().all(|p| p.is_empty()), "{:?}", again);
    }
}
