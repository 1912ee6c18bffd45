//! The rebalance planner, pure: a metadata snapshot (+ options, + partition sizes for the estimates) -> a `Plan`.
//!
//! Redundancy 1 (spec 5.1): a database is balanced when every online leaf holds the same number of its partitions,
//! or, when the count does not divide, numbers that differ by at most one. Only partitions whose master is on an
//! online leaf can move (a partition whose only copy is on an offline or detached leaf has nothing to copy from), so
//! those are the ones counted and spread.
//!
//! The plan moves the fewest partitions that reach balance: with `n` movable partitions over `L` online leaves each
//! leaf's target is `n / L`, and the `n % L` leaves that may hold one more are those already holding the most (so the
//! moves are exactly the lower bound, the sum of every leaf's excess over its target). Ties go to the leaves holding
//! the fewest partitions of the other databases (free: the same moves), then to the earliest in leaf order. With
//! `FULL` (and in `REBALANCE ALL DATABASES`) the other databases' load comes first, so the cluster as a whole evens
//! out, which can cost moves a per-database plan would not make. A leaf gives away its smallest partitions (fewest
//! bytes to copy) and each one goes to the leaf still missing the most (then the least loaded, then leaf order), so
//! copies spread over the receiving leaves.
//!
//! With `FORCE`, every partition without any copy on an online leaf is created empty (`CREATE PARTITION`, phase 1)
//! on a leaf chosen as for a move, and counts in the balance; its copies on unreachable leaves become orphans.
//!
//! A redundancy-1 move is two steps: `COPY PARTITION` to the target (phase 1, all moves in parallel) and `PROMOTE
//! PARTITION WITH DROP` on the target (phase 2), which switches the master and drops the old copy. At no point does a
//! partition have fewer copies than before, nor two masters. The one exception is a replica: in redundancy 1 it can
//! only be the registered copy of a move a master aggregator restart cut off, and the plan drops it (phase 3).

use std::collections::{BTreeMap, BTreeSet};

use canopy_meta::{ClusterMeta, Database, InstanceRole, LeafState, NodeId};
use thiserror::Error;

use crate::plan::{Action, Plan, Step, apply_plan};

mod paired;

/// Phases of a redundancy-1 plan.
pub const PHASE_COPY: u32 = 1;
pub const PHASE_PROMOTE: u32 = 2;
pub const PHASE_DROP: u32 = 3;

/// What the estimates assume. The defaults are round figures from `canopy-bench lifecycle` on a loopback cluster
/// (release build: an 11 MB partition copied in about 200 ms, a promotion in under 20 ms), not a model of the
/// machine the cluster runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimates {
    /// Time of a copy besides its bytes (snapshot, install, catch-up, registration).
    pub copy_fixed_ms: u64,
    /// Bytes a copy moves per millisecond.
    pub copy_bytes_per_ms: u64,
    /// A promotion: fence, final catch-up, switch, drop of the old copy.
    pub promote_ms: u64,
    pub drop_ms: u64,
}

impl Default for Estimates {
    fn default() -> Self {
        Estimates { copy_fixed_ms: 100, copy_bytes_per_ms: 50_000, promote_ms: 50, drop_ms: 20 }
    }
}

impl Estimates {
    /// A copy of `bytes` (unknown: the fixed part only).
    pub fn copy_ms(&self, bytes: Option<u64>) -> u64 {
        self.copy_fixed_ms + bytes.unwrap_or(0) / self.copy_bytes_per_ms.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Place the uneven remainder by the whole cluster's load (`REBALANCE PARTITIONS ... FULL`).
    pub full: bool,
    /// Create empty partitions for the partitions without any copy on an online leaf (`REBALANCE ... FORCE`).
    pub force: bool,
    /// A leaf being emptied (DETACH LEAF, REMOVE LEAF): it takes nothing and its partitions move to the others (in
    /// redundancy 2 its whole pair is emptied: a partition keeps two copies only on a pair).
    pub exclude: Option<NodeId>,
    pub estimates: Estimates,
}

/// Bytes of each partition of a database, by ordinal, where known.
pub type Sizes = BTreeMap<u32, u64>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RebalanceError {
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    #[error("There are no online leaves in the cluster")]
    NoOnlineLeaves,
    #[error("There are no online pairs of leaves in the cluster")]
    NoOnlinePairs,
}

/// The plan that balances `db`.
pub fn plan(meta: &ClusterMeta, db: &str, options: &Options, sizes: &Sizes) -> Result<Plan, RebalanceError> {
    plan_with_load(meta, db, options, sizes, &load(meta))
}

/// Instances per leaf over every database: what "the rest of the cluster" weighs on each leaf.
type Load = BTreeMap<NodeId, usize>;

fn load(meta: &ClusterMeta) -> Load {
    let mut load = Load::new();
    for database in meta.databases.values() {
        add_load(&mut load, database, 1);
    }
    load
}

/// Adds (`sign` 1) or takes away (-1) `database`'s instances from `load`.
fn add_load(load: &mut Load, database: &Database, sign: isize) {
    for instance in &database.instances {
        let count = load.entry(instance.node).or_default();
        *count = count.saturating_add_signed(sign);
    }
}

fn plan_with_load(
    meta: &ClusterMeta,
    db: &str,
    options: &Options,
    sizes: &Sizes,
    load: &Load,
) -> Result<Plan, RebalanceError> {
    let database = meta.databases.get(db).ok_or_else(|| RebalanceError::UnknownDatabase(db.to_string()))?;
    if meta.variables.redundancy_level == 2 {
        return paired::plan(meta, database, options, sizes, load);
    }
    let mut online = online_leaves(meta);
    let leaving_leaf = options.exclude.filter(|x| online.contains(x));
    online.retain(|l| Some(*l) != options.exclude);
    if online.is_empty() {
        return Err(RebalanceError::NoOnlineLeaves);
    }
    let held = masters_by_leaf(database, &online);
    // The masters on the leaf being emptied need a leaf just as created partitions do.
    let homeless: Vec<u32> = database
        .instances
        .iter()
        .filter(|i| Some(i.node) == leaving_leaf && i.role == InstanceRole::Master)
        .map(|i| i.ordinal)
        .collect();
    let mut own = Load::new();
    add_load(&mut own, database, 1);
    let elsewhere: Vec<usize> = online
        .iter()
        .map(|l| load.get(l).copied().unwrap_or(0).saturating_sub(own.get(l).copied().unwrap_or(0)))
        .collect();
    let created = if options.force { unreachable(meta, database) } else { Vec::new() };
    let targets = targets(&online, &held, created.len() + homeless.len(), &elsewhere, options.full);
    let view = View { online, held, created, homeless, elsewhere, emptied: leaving_leaf };
    Ok(moves_plan(database, &view, &targets, options, sizes))
}

/// The plans of `REBALANCE ALL DATABASES`: every database in alphabetical order, each planned with `FULL` against
/// the metadata as the previous plans leave it. `sizes` by database name.
pub fn plan_all(
    meta: &ClusterMeta,
    options: &Options,
    sizes: &BTreeMap<String, Sizes>,
) -> Result<Vec<Plan>, RebalanceError> {
    let options = Options { full: true, ..*options };
    let mut after = meta.clone();
    let mut load = load(meta);
    let mut plans = Vec::with_capacity(meta.databases.len());
    let empty = Sizes::new();
    for db in meta.databases.keys() {
        let plan = plan_with_load(&after, db, &options, sizes.get(db).unwrap_or(&empty), &load)?;
        add_load(&mut load, &after.databases[db], -1);
        apply_plan(&mut after, &plan).expect("a plan applies to the metadata it was made from");
        add_load(&mut load, &after.databases[db], 1);
        plans.push(plan);
    }
    Ok(plans)
}

/// Whether `db` is balanced: in redundancy 1 the movable partitions' counts on the online leaves differ by at most
/// one; in redundancy 2 as `paired::is_balanced` says (pairs even, masters even within each pair, every partition
/// with its replica on its pair).
pub fn is_balanced(meta: &ClusterMeta, db: &str) -> bool {
    is_balanced_without(meta, db, None)
}

/// `is_balanced` with leaf `exclude` being emptied (in redundancy 2, its pair): it must hold none of the movable
/// partitions.
pub fn is_balanced_without(meta: &ClusterMeta, db: &str, exclude: Option<NodeId>) -> bool {
    let Some(database) = meta.databases.get(db) else { return true };
    if meta.variables.redundancy_level == 2 {
        return paired::is_balanced(meta, database, exclude);
    }
    let mut online = online_leaves(meta);
    if exclude.is_some_and(|x| online.contains(&x) && masters_by_leaf(database, &[x]).contains_key(&x)) {
        return false;
    }
    online.retain(|l| Some(*l) != exclude);
    let held = masters_by_leaf(database, &online);
    let counts = online.iter().map(|l| held.get(l).map_or(0, Vec::len));
    let (min, max) = counts.fold((usize::MAX, 0), |(lo, hi), c| (lo.min(c), hi.max(c)));
    online.is_empty() || max - min <= 1
}

/// The fewest partition moves that balance `db`. Redundancy 1: the sum of the leaves' excess over their targets
/// when the leaves holding the most keep the remainder (a move is a copy and a promotion with drop). Redundancy 2:
/// moves between pairs only (each copies onto both leaves of the receiving pair), as `paired::moves_lower_bound`
/// says; the promotions within a pair and the copies that restore a missing replica are not moves and not counted.
pub fn moves_lower_bound(meta: &ClusterMeta, db: &str) -> usize {
    let Some(database) = meta.databases.get(db) else { return 0 };
    if meta.variables.redundancy_level == 2 {
        return paired::moves_lower_bound(meta, database);
    }
    let online = online_leaves(meta);
    if online.is_empty() {
        return 0;
    }
    let held = masters_by_leaf(database, &online);
    let counts: Vec<usize> = online.iter().map(|l| held.get(l).map_or(0, Vec::len)).collect();
    excess_over_shares(counts, 0)
}

/// The sum of the units' excess over their shares of `counts`' total plus `placed` more, when the units holding
/// the most keep the remainder: the fewest partitions that must leave some unit (leaf or pair) for every unit to
/// hold its share.
fn excess_over_shares(mut counts: Vec<usize>, placed: usize) -> usize {
    if counts.is_empty() {
        return 0;
    }
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let total: usize = counts.iter().sum::<usize>() + placed;
    let (base, extra) = (total / counts.len(), total % counts.len());
    counts.iter().enumerate().map(|(i, &c)| c.saturating_sub(base + usize::from(i < extra))).sum()
}

fn online_leaves(meta: &ClusterMeta) -> Vec<NodeId> {
    meta.leaves_in_order().filter(|l| l.state == LeafState::Online).map(|l| l.id).collect()
}

/// The ordinals whose master is on each online leaf (leaves holding none are absent).
fn masters_by_leaf(database: &Database, online: &[NodeId]) -> BTreeMap<NodeId, Vec<u32>> {
    let online: BTreeSet<NodeId> = online.iter().copied().collect();
    let mut held: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
    for instance in database.instances.iter().filter(|i| i.role == InstanceRole::Master && online.contains(&i.node)) {
        held.entry(instance.node).or_default().push(instance.ordinal);
    }
    held
}

/// The ordinals of `database` without any instance on an online leaf (nothing to copy from).
fn unreachable(meta: &ClusterMeta, database: &Database) -> Vec<u32> {
    let online = |node: &NodeId| meta.leaves.get(node).is_some_and(|l| l.state == LeafState::Online);
    let reachable: BTreeSet<u32> = database.instances.iter().filter(|i| online(&i.node)).map(|i| i.ordinal).collect();
    (0..database.partitions).filter(|o| !reachable.contains(o)).collect()
}

/// How many partitions each online leaf (or, in redundancy 2, each pair) should hold, in order, once `created` more
/// are placed too. `elsewhere`: partitions of the other databases on each.
fn targets(
    online: &[NodeId],
    held: &BTreeMap<NodeId, Vec<u32>>,
    created: usize,
    elsewhere: &[usize],
    full: bool,
) -> Vec<usize> {
    let total: usize = held.values().map(Vec::len).sum::<usize>() + created;
    let (base, extra) = (total / online.len(), total % online.len());
    let count = |i: usize| held.get(&online[i]).map_or(0, Vec::len);
    // Who keeps the remainder. Without FULL: the leaves holding the most of this database (no move), then the
    // least loaded by the other databases (free: the same moves), then leaf order. With FULL the load comes first.
    let mut order: Vec<usize> = (0..online.len()).collect();
    if full {
        order.sort_by_key(|&i| (elsewhere[i], std::cmp::Reverse(count(i)), i));
    } else {
        order.sort_by_key(|&i| (std::cmp::Reverse(count(i)), elsewhere[i], i));
    }
    let mut targets = vec![base; online.len()];
    for &i in order.iter().take(extra) {
        targets[i] += 1;
    }
    targets
}

/// What the planner sees of one database: the online leaves in leaf order (without the leaf being emptied), the
/// masters each holds, the partitions to create empty, those to move off the leaf being emptied, and each online
/// leaf's partitions of the other databases.
struct View {
    online: Vec<NodeId>,
    held: BTreeMap<NodeId, Vec<u32>>,
    created: Vec<u32>,
    homeless: Vec<u32>,
    elsewhere: Vec<usize>,
    emptied: Option<NodeId>,
}

/// The steps that bring every online leaf to its target.
fn moves_plan(database: &Database, view: &View, targets: &[usize], options: &Options, sizes: &Sizes) -> Plan {
    let View { online, held, created, homeless, elsewhere, emptied } = view;
    let size = |ordinal: u32| sizes.get(&ordinal).copied();
    // The partitions leaving each leaf with excess: its smallest first (unknown sizes count as zero), then by ordinal.
    let mut leaving: Vec<u32> = Vec::new();
    for (leaf, &target) in online.iter().zip(targets) {
        let mut mine = held.get(leaf).cloned().unwrap_or_default();
        if mine.len() > target {
            mine.sort_by_key(|&o| (size(o).unwrap_or(0), o));
            leaving.extend_from_slice(&mine[..mine.len() - target]);
        }
    }
    let mut missing: Vec<usize> =
        online.iter().zip(targets).map(|(leaf, &t)| t.saturating_sub(held.get(leaf).map_or(0, Vec::len))).collect();
    let mut receiving: Vec<usize> = (0..online.len()).filter(|&i| missing[i] > 0).collect();
    let copies: BTreeSet<(u32, NodeId)> = database.instances.iter().map(|i| (i.ordinal, i.node)).collect();
    // Partitions created empty need a leaf just as the ones leaving do; they go first, then those of the leaf being
    // emptied.
    let placing: Vec<u32> = created.iter().chain(homeless).copied().chain(leaving).collect();
    let mut moves: Vec<(u32, NodeId)> = Vec::with_capacity(placing.len());
    for ordinal in placing {
        // The leaf missing the most, preferring one without a (leftover) copy of this partition, then the least
        // loaded by the other databases, then leaf order.
        let has_copy = |i: usize| copies.contains(&(ordinal, online[i]));
        let (at, &to) = receiving
            .iter()
            .enumerate()
            .max_by_key(|&(_, &i)| (!has_copy(i), missing[i], std::cmp::Reverse((elsewhere[i], i))))
            .expect("the leaves missing partitions take exactly the partitions leaving");
        missing[to] -= 1;
        if missing[to] == 0 {
            receiving.swap_remove(at);
        }
        moves.push((ordinal, online[to]));
    }
    let estimates = &options.estimates;
    let step = |action, ordinal, target, phase, estimated_ms| Step {
        action,
        db: database.name.clone(),
        ordinal,
        target,
        phase,
        estimated_ms,
    };
    let (creates, moves) = moves.split_at(created.len());
    let mut steps = Vec::with_capacity(creates.len() + moves.len() * 2);
    for &(ordinal, target) in creates {
        steps.push(step(Action::CreatePartition, ordinal, target, PHASE_COPY, estimates.copy_fixed_ms));
    }
    for &(ordinal, target) in moves {
        steps.push(step(Action::CopyPartition, ordinal, target, PHASE_COPY, estimates.copy_ms(size(ordinal))));
    }
    for &(ordinal, target) in moves {
        let promote = Action::PromotePartition { with_drop: true };
        steps.push(step(promote, ordinal, target, PHASE_PROMOTE, estimates.promote_ms));
    }
    // A replica in redundancy 1 is the registered copy of a move cut off by a master aggregator restart: drop it
    // (its master holds everything). A partition that moves anyway needs no drop: its copy step discards it first.
    let moved: BTreeSet<u32> = moves.iter().chain(creates).map(|&(ordinal, _)| ordinal).collect();
    let leftovers = database
        .instances
        .iter()
        .filter(|i| i.role == InstanceRole::Replica && !moved.contains(&i.ordinal))
        .filter(|i| online.contains(&i.node) || Some(i.node) == *emptied);
    for leftover in leftovers {
        let drop = step(Action::DropPartition, leftover.ordinal, leftover.node, PHASE_DROP, estimates.drop_ms);
        steps.push(drop);
    }
    Plan { db: database.name.clone(), steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_meta::{Command, NodeAddr};

    fn cluster(leaves: u16) -> ClusterMeta {
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
        for i in 1..=leaves {
            let addr = NodeAddr { host: format!("leaf-{i}"), port: 3306, rpc_port: 13306 };
            m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        }
        m
    }

    fn create(m: &mut ClusterMeta, db: &str, partitions: u32) {
        m.apply(crate::placement::create_database(m, db, partitions, canopy_meta::Durability::Sync)).unwrap();
    }

    fn add_leaves(m: &mut ClusterMeta, from: u16, to: u16) {
        for i in from..=to {
            let addr = NodeAddr { host: format!("leaf-{i}"), port: 3306, rpc_port: 13306 };
            m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        }
    }

    /// `(action, ordinal, target host, phase)` of every step of `plan`, for comparing with an expected plan.
    pub(super) fn step_rows<'m>(m: &'m ClusterMeta, plan: &Plan) -> Vec<(&'static str, u32, &'m str, u32)> {
        plan.steps
            .iter()
            .map(|s| (s.action.as_str(), s.ordinal, m.leaves[&s.target].addr.host.as_str(), s.phase))
            .collect()
    }

    fn check(m: &ClusterMeta, db: &str, full: bool, expect: &[(&str, u32, &str, u32)]) {
        let plan = plan(m, db, &Options { full, ..Options::default() }, &Sizes::new()).unwrap();
        assert_eq!(step_rows(m, &plan), expect);
    }

    #[test]
    fn a_balanced_database_needs_no_steps() {
        let mut m = cluster(4);
        create(&mut m, "test", 8);
        check(&m, "test", false, &[]);
        check(&m, "test", true, &[]);
    }

    #[test]
    fn two_new_leaves_take_one_partition_from_each_of_two_leaves() {
        // The spec's 4 leaves with 8 partitions, then two more leaves: 8 over 6 is 2,2,1,1,1,1 (first leaves keep 2).
        let mut m = cluster(4);
        create(&mut m, "test", 8);
        add_leaves(&mut m, 5, 6);
        check(
            &m,
            "test",
            false,
            &[
                ("COPY PARTITION", 2, "leaf-5", 1),
                ("COPY PARTITION", 3, "leaf-6", 1),
                ("PROMOTE PARTITION WITH DROP", 2, "leaf-5", 2),
                ("PROMOTE PARTITION WITH DROP", 3, "leaf-6", 2),
            ],
        );
        assert_eq!(moves_lower_bound(&m, "test"), 2);
    }

    #[test]
    fn the_smallest_partitions_move() {
        let mut m = cluster(1);
        create(&mut m, "test", 4);
        add_leaves(&mut m, 2, 2);
        let sizes: Sizes = [(0, 900_000), (1, 10), (2, 800_000), (3, 20)].into_iter().collect();
        let plan = plan(&m, "test", &Options::default(), &sizes).unwrap();
        let moved: Vec<u32> = plan.steps.iter().filter(|s| s.action.copies()).map(|s| s.ordinal).collect();
        assert_eq!(moved, [1, 3]);
        assert_eq!(plan.steps[0].estimated_ms, Estimates::default().copy_ms(Some(10)));
    }

    #[test]
    fn full_evens_the_remainder_across_databases() {
        // Two one-partition databases on leaf-1 of two leaves: each alone is balanced, the cluster is not.
        let mut m = cluster(1);
        create(&mut m, "a", 1);
        create(&mut m, "b", 1);
        add_leaves(&mut m, 2, 2);
        check(&m, "b", false, &[]);
        check(&m, "b", true, &[("COPY PARTITION", 0, "leaf-2", 1), ("PROMOTE PARTITION WITH DROP", 0, "leaf-2", 2)]);
        let plans = plan_all(&m, &Options::default(), &BTreeMap::new()).unwrap();
        let copies: Vec<(String, usize)> = plans.iter().map(|p| (p.db.clone(), p.copies())).collect();
        assert_eq!(copies, [("a".to_string(), 1), ("b".to_string(), 0)], "a moves; then b is already even");
    }

    #[test]
    fn partitions_without_an_online_master_stay_put() {
        let mut m = cluster(3);
        create(&mut m, "test", 6);
        m.apply(Command::SetLeafState { leaf: NodeId(4), state: LeafState::Offline }).unwrap();
        // leaf-1 and leaf-2 hold two each; leaf-3's two cannot move.
        check(&m, "test", false, &[]);
        assert!(is_balanced(&m, "test"));
    }

    #[test]
    fn the_leftover_copy_of_an_interrupted_move_is_dropped() {
        let mut m = cluster(2);
        create(&mut m, "test", 2);
        let role = InstanceRole::Replica;
        m.apply(Command::AddInstance { db: "test".into(), ordinal: 0, node: NodeId(3), role }).unwrap();
        assert!(is_balanced(&m, "test"), "replicas do not count");
        check(&m, "test", false, &[("DROP PARTITION", 0, "leaf-2", 3)]);
        let plan = plan(&m, "test", &Options::default(), &Sizes::new()).unwrap();
        apply_plan(&mut m, &plan).unwrap();
        check(&m, "test", false, &[]);
        assert_eq!(m.databases["test"].instances.len(), 2);
    }

    #[test]
    fn force_creates_the_partitions_without_a_reachable_copy() {
        let mut m = cluster(3);
        create(&mut m, "test", 6);
        m.apply(Command::SetLeafState { leaf: NodeId(4), state: LeafState::Offline }).unwrap();
        let force = |m: &ClusterMeta| plan(m, "test", &Options { force: true, ..Options::default() }, &Sizes::new());
        let plan = force(&m).unwrap();
        let got: Vec<(&str, u32, NodeId, u32)> =
            plan.steps.iter().map(|s| (s.action.as_str(), s.ordinal, s.target, s.phase)).collect();
        assert_eq!(got, [("CREATE PARTITION", 2, NodeId(2), 1), ("CREATE PARTITION", 5, NodeId(3), 1)]);
        apply_plan(&mut m, &plan).unwrap();
        assert!(m.databases["test"].instances.iter().all(|i| i.node != NodeId(4)), "the lost copies are forgotten");
        assert!(force(&m).unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut m = cluster(0);
        assert_eq!(
            plan(&m, "nope", &Options::default(), &Sizes::new()),
            Err(RebalanceError::UnknownDatabase("nope".into()))
        );
        add_leaves(&mut m, 1, 1);
        create(&mut m, "test", 2);
        m.apply(Command::SetLeafState { leaf: NodeId(2), state: LeafState::Detached }).unwrap();
        assert_eq!(plan(&m, "test", &Options::default(), &Sizes::new()), Err(RebalanceError::NoOnlineLeaves));
    }
}
