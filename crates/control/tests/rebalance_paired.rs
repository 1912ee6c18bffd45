//! Properties of the redundancy-2 rebalance planner over clusters reached through the state machine: pairs created
//! with a database, masters moved within pairs (planned promotions), replicas lost (to restore), a leaf failed over,
//! new pairs and an unpaired leaf added, a leaf being emptied (DETACH/REMOVE LEAF). Each plan is played step by step
//! through `plan::apply_step`, with the invariants checked after every step.

use canopy_control::plan::{apply_plan, apply_step};
use canopy_control::rebalance::{self, Options, RebalanceError, Sizes};
use canopy_meta::{ClusterMeta, Command, InstanceRole, LeafState, NodeAddr, NodeId};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Shape {
    pairs: usize,
    partitions: Vec<u32>,
    /// Ordinals (modulo the count) whose master moves to its pair leaf.
    flips: Vec<u32>,
    /// Ordinals (modulo the count) whose replica is forgotten.
    lost: Vec<u32>,
    /// A leaf (index modulo the leaves) that fails: its masters fail over, its replicas go out of sync.
    failed: Option<usize>,
    new_pairs: usize,
    unpaired: bool,
    /// A leaf (index modulo the leaves) being emptied.
    exclude: Option<usize>,
    full: bool,
    force: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        1usize..=3,
        prop::collection::vec(1u32..=20, 1..=2),
        prop::collection::vec(0u32..20, 0..6),
        prop::collection::vec(0u32..20, 0..4),
        prop::option::weighted(0.2, 0usize..16),
        0usize..=2,
        any::<bool>(),
        prop::option::weighted(0.3, 0usize..16),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(pairs, partitions, flips, lost, failed, new_pairs, unpaired, exclude, full, force)| Shape {
            pairs,
            partitions,
            flips,
            lost,
            failed,
            new_pairs,
            unpaired,
            exclude,
            full,
            force,
        })
}

fn add_leaf(m: &mut ClusterMeta, name: String) {
    let addr = NodeAddr { host: name, port: 3306, rpc_port: 13306 };
    m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
}

/// Promotes the in-sync replica of `db:ordinal` as a planned promotion does (the old master becomes its replica,
/// in sync).
fn flip(m: &mut ClusterMeta, db: &str, ordinal: u32) {
    let d = &m.databases[db];
    let (Some(master), Some(replica)) = (d.master(ordinal).cloned(), d.replicas(ordinal).find(|r| r.sync).cloned())
    else {
        return;
    };
    m.apply(Command::Promote { db: db.into(), instance: replica.id }).unwrap();
    m.apply(Command::SetReplicaSync { db: db.into(), instance: master.id, sync: true }).unwrap();
}

fn build(shape: &Shape) -> (ClusterMeta, Option<NodeId>) {
    let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
    m.apply(Command::SetVariable { name: "redundancy_level".into(), value: canopy_sql::Value::Integer(2) }).unwrap();
    for i in 0..shape.pairs * 2 {
        add_leaf(&mut m, format!("leaf-{i}"));
    }
    for (d, &partitions) in shape.partitions.iter().enumerate() {
        let db = format!("db{d}");
        m.apply(canopy_control::placement::create_database(&m, &db, partitions, canopy_meta::Durability::Sync))
            .unwrap();
        for &k in &shape.flips {
            flip(&mut m, &db, k % partitions);
        }
        for &k in &shape.lost {
            let replica = m.databases[&db].replicas(k % partitions).next().map(|r| r.id);
            if let Some(instance) = replica {
                m.apply(Command::RemoveInstance { db: db.clone(), instance }).unwrap();
            }
        }
    }
    if let Some(failed) = shape.failed {
        let leaves: Vec<NodeId> = m.leaves.keys().copied().collect();
        let leaf = leaves[failed % leaves.len()];
        m.apply(Command::SetLeafState { leaf, state: LeafState::Offline }).unwrap();
        let actions = canopy_control::failover::actions(&m);
        for (db, instance) in actions.promote {
            m.apply(Command::Promote { db, instance }).unwrap();
        }
        for (db, instance) in actions.demote {
            m.apply(Command::SetReplicaSync { db, instance, sync: false }).unwrap();
        }
    }
    for i in 0..shape.new_pairs * 2 + usize::from(shape.unpaired) {
        add_leaf(&mut m, format!("new-{i}"));
    }
    let leaves: Vec<NodeId> = m.leaves.keys().copied().collect();
    let exclude = shape.exclude.map(|x| leaves[x % leaves.len()]);
    (m, exclude)
}

fn online(m: &ClusterMeta, n: NodeId) -> bool {
    m.leaves[&n].state == LeafState::Online
}

/// Copies of each partition, and their masters.
fn copies(m: &ClusterMeta, db: &str) -> Vec<(usize, usize)> {
    let d = &m.databases[db];
    (0..d.partitions)
        .map(|o| {
            let of = d.instances.iter().filter(|i| i.ordinal == o);
            (of.clone().count(), of.filter(|i| i.role == InstanceRole::Master).count())
        })
        .collect()
}

/// Every replica recorded in sync is on its master's pair leaf: only those can be in its commit path.
fn in_sync_on_pair(m: &ClusterMeta, db: &str) -> Result<(), String> {
    let d = &m.databases[db];
    for r in d.instances.iter().filter(|i| i.role == InstanceRole::Replica && i.sync) {
        let master = d.master(r.ordinal).ok_or(format!("{db}:{} has a replica in sync and no master", r.ordinal))?;
        if m.leaves[&master.node].pair != Some(r.node) {
            return Err(format!("{db}:{} has a replica in sync off its master's pair", r.ordinal));
        }
    }
    Ok(())
}

/// The usable pairs (both online, neither being emptied), independently of the planner.
fn pairs(m: &ClusterMeta, exclude: Option<NodeId>) -> Vec<(NodeId, NodeId)> {
    m.leaves
        .values()
        .filter(|l| l.availability_group == 1 && online(m, l.id))
        .filter_map(|l| l.pair.filter(|&p| online(m, p)).map(|p| (l.id, p)))
        .filter(|&(a, b)| Some(a) != exclude && Some(b) != exclude)
        .collect()
}

/// The fewest moves: partitions mastered on an online leaf outside the usable pairs, plus every pair's excess over
/// its share when the pairs holding the most keep the remainder.
fn lower_bound(m: &ClusterMeta, db: &str, exclude: Option<NodeId>) -> usize {
    let d = &m.databases[db];
    let pairs = pairs(m, exclude);
    let movable: Vec<NodeId> =
        (0..d.partitions).filter_map(|o| d.master(o)).map(|i| i.node).filter(|&n| online(m, n)).collect();
    let mut counts: Vec<usize> =
        pairs.iter().map(|&(a, b)| movable.iter().filter(|&&n| n == a || n == b).count()).collect();
    let homeless = movable.len() - counts.iter().sum::<usize>();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let (base, extra) = (movable.len() / pairs.len(), movable.len() % pairs.len());
    homeless + counts.iter().enumerate().map(|(i, &c)| c.saturating_sub(base + usize::from(i < extra))).sum::<usize>()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Every plan, played step by step: at most one master per partition, never fewer copies than before, every
    /// replica in sync on its master's pair; at the end the database is balanced (pairs even, masters even within
    /// each pair, every moved or restored partition with exactly a master and its replica on one usable pair, the
    /// emptied pair holding nothing), with the fewest moves between pairs without FULL (the test's own bound, and
    /// `rebalance::moves_lower_bound` when no leaf is emptied), and planning again gives nothing.
    #[test]
    fn every_paired_plan_reaches_balance_safely(shape in shape()) {
        let (meta, exclude) = build(&shape);
        let options = Options { full: shape.full, force: shape.force, exclude, ..Options::default() };
        let usable = pairs(&meta, exclude);
        for db in meta.databases.keys() {
            let planned = rebalance::plan(&meta, db, &options, &Sizes::new());
            if usable.is_empty() {
                prop_assert_eq!(planned, Err(RebalanceError::NoOnlinePairs));
                continue;
            }
            let plan = planned.unwrap();
            let mut after = meta.clone();
            let before = copies(&meta, db);
            for step in &plan.steps {
                apply_step(&mut after, step).map_err(|e| TestCaseError::fail(format!("{step:?}: {e}")))?;
                after.check_invariants().map_err(TestCaseError::fail)?;
                in_sync_on_pair(&after, db).map_err(TestCaseError::fail)?;
                for (ordinal, (b, n)) in before.iter().zip(copies(&after, db)).enumerate() {
                    prop_assert!(n.0 >= b.0, "{}:{} lost a copy at {:?}", db, ordinal, step);
                    prop_assert!(n.1 <= 1 && n.1 >= b.1, "{}:{} masters {} -> {} at {:?}", db, ordinal, b.1, n.1, step);
                }
            }
            prop_assert!(rebalance::is_balanced_without(&after, db, exclude), "{:?}", plan);
            let d = &after.databases[db];
            for ordinal in 0..d.partitions {
                let Some(master) = d.master(ordinal).filter(|m| online(&after, m.node)) else { continue };
                let pair = usable.iter().find(|&&(a, b)| master.node == a || master.node == b);
                prop_assert!(pair.is_some(), "{}:{} is served off the usable pairs", db, ordinal);
                let mate = after.leaves[&master.node].pair.unwrap();
                let of: Vec<_> = d.instances.iter().filter(|i| i.ordinal == ordinal).collect();
                prop_assert_eq!(of.len(), 2, "{}:{} has exactly its master and replica: {:?}", db, ordinal, of);
                prop_assert!(of.iter().any(|i| i.node == mate && i.role == InstanceRole::Replica && i.sync));
            }
            if shape.force {
                let served = (0..d.partitions).filter(|&o| d.master(o).is_some_and(|m| online(&after, m.node))).count();
                prop_assert_eq!(served as u32, d.partitions, "FORCE gives every partition a master");
            }
            let moves = plan.steps.iter().filter(|s| s.action.as_str() == "PROMOTE PARTITION WITH DROP").count();
            prop_assert_eq!(plan.copies(), 2 * moves + plan.steps.iter().filter(|s| s.action.as_str() == "COPY PARTITION FORCE").count());
            if !shape.full && !shape.force {
                prop_assert_eq!(moves, lower_bound(&meta, db, exclude));
                if exclude.is_none() {
                    prop_assert_eq!(moves, rebalance::moves_lower_bound(&meta, db));
                }
            }
            let again = rebalance::plan(&after, db, &options, &Sizes::new()).unwrap();
            prop_assert!(again.is_empty(), "planning a balanced database again: {:?}", again);
        }
    }

    /// REBALANCE ALL DATABASES in redundancy 2: the plans, played in order, balance every database.
    #[test]
    fn all_paired_plans_balance_every_database(shape in shape()) {
        let (meta, _) = build(&shape);
        prop_assume!(!pairs(&meta, None).is_empty());
        let plans = rebalance::plan_all(&meta, &Options::default(), &Default::default()).unwrap();
        let mut after = meta.clone();
        for plan in &plans {
            apply_plan(&mut after, plan).unwrap();
            after.check_invariants().unwrap();
        }
        for db in meta.databases.keys() {
            prop_assert!(rebalance::is_balanced(&after, db));
        }
        let again = rebalance::plan_all(&after, &Options::default(), &Default::default()).unwrap();
        prop_assert!(again.iter().all(|p| p.is_empty()), "{:?}", again);
    }
}
