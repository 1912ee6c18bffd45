//! The redundancy-2 planner (paired fan-out), pure. Balanced (spec 5.1): every online pair (both leaves online)
//! holds the same number of the database's partitions, or numbers that differ by at most one, every one of them
//! with its master on one leaf of the pair and a replica on the other, and within a pair each leaf holds as many
//! masters as replicas (differing by one when the pair's count is odd). A leaf without a pair, or whose pair is not
//! online, holds nothing: its partitions move to an online pair.
//!
//! The plan, in four phases:
//! 1. `COPY PARTITION FORCE` (restore redundancy, spec 5.4): a partition that stays on its pair but has no copy on
//!    its master's pair leaf gets one there (a replica, brought in sync).
//! 2. `COPY PARTITION` onto both leaves of the pair a partition moves to (two copies per move, in parallel).
//! 3. `PROMOTE PARTITION WITH DROP` on the moved partition's new master: the switch under the partition's gate
//!    (the old master fenced and dropped, the new master's replica on its pair in its commit path before a
//!    statement reaches it), and `PROMOTE PARTITION` (a planned promotion within a pair, the old master becoming
//!    the replica) for the in-pair balance.
//! 4. `DROP PARTITION` of the moved partition's old replica, and of registered copies off their master's pair (the
//!    leftovers of a move a master aggregator restart cut off; never in a commit path).
//!
//! With `FORCE`, every partition without any copy on an online leaf is created empty (`CREATE PARTITION` on the
//! chosen leaf, phase 1, then `COPY PARTITION FORCE` onto its pair leaf, phase 2), placed and counted like a moved
//! partition; its copies on unreachable leaves become orphans.
//!
//! Fewest moves: the pairs are the units of the redundancy-1 rule (`super::targets`: with `n` partitions over `P`
//! pairs each pair's share is `n / P`, the remainder staying with the pairs holding the most), so only the excess
//! moves. A pair gives away first the partitions mastered on its leaf with more masters, a moved partition's new
//! master is the receiving pair's leaf with fewer masters, and only then are masters evened within a pair by the
//! fewest promotions (each moves one master from the leaf with more to the leaf with fewer). Only partitions whose
//! master is on an online leaf move or count: one whose master is away stays as it is (failover's business).

use std::collections::{BTreeMap, BTreeSet};

use canopy_meta::{ClusterMeta, Database, Instance, InstanceRole, LeafState, NodeId};

use super::{Load, Options, RebalanceError, Sizes, excess_over_shares, targets, unreachable};
use crate::placement::online_pairs;
use crate::plan::{Action, Plan, Step};

/// Phases of a redundancy-2 plan.
pub const PHASE_RESTORE: u32 = 1;
pub const PHASE_COPY: u32 = 2;
pub const PHASE_PROMOTE: u32 = 3;
pub const PHASE_DROP: u32 = 4;

/// The pairs a plan may place partitions on: both leaves online, neither being emptied; as (leaf with the first
/// master, its pair) in the group-1 leaf's order.
fn usable_pairs(meta: &ClusterMeta, exclude: Option<NodeId>) -> Vec<(NodeId, NodeId)> {
    online_pairs(meta).into_iter().filter(|&(a, b)| Some(a) != exclude && Some(b) != exclude).collect()
}

/// One partition of the database as the planner sees it.
#[derive(Debug, Clone)]
struct Held {
    ordinal: u32,
    /// The leaf of its master (online).
    master: NodeId,
    /// Its copy on the master's pair leaf: absent (to restore), in sync (a promotion candidate), or not.
    mate: Mate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mate {
    Missing,
    InSync,
    NotInSync,
}

/// What the planner reads of a database: the partitions each usable pair holds, and those whose master is on an
/// online leaf outside every usable pair (they must move).
struct View {
    pairs: Vec<(NodeId, NodeId)>,
    held: Vec<Vec<Held>>,
    homeless: Vec<u32>,
}

fn view(meta: &ClusterMeta, database: &Database, exclude: Option<NodeId>) -> View {
    let pairs = usable_pairs(meta, exclude);
    let online = |n: NodeId| meta.leaves.get(&n).is_some_and(|l| l.state == LeafState::Online);
    let mut held = vec![Vec::new(); pairs.len()];
    let mut homeless = Vec::new();
    for ordinal in 0..database.partitions {
        let Some(master) = database.master(ordinal).filter(|m| online(m.node)) else { continue };
        let Some((p, mate)) = pairs
            .iter()
            .enumerate()
            .find_map(|(p, &(a, b))| (master.node == a).then_some((p, b)).or((master.node == b).then_some((p, a))))
        else {
            homeless.push(ordinal);
            continue;
        };
        let mate = match database.instances.iter().find(|i| i.ordinal == ordinal && i.node == mate) {
            None => Mate::Missing,
            Some(i) if i.sync => Mate::InSync,
            Some(_) => Mate::NotInSync,
        };
        held[p].push(Held { ordinal, master: master.node, mate });
    }
    View { pairs, held, homeless }
}

/// Whether `database` is balanced (see the module's rule), with `exclude`'s pair emptied.
pub(super) fn is_balanced(meta: &ClusterMeta, database: &Database, exclude: Option<NodeId>) -> bool {
    let View { pairs, held, homeless } = view(meta, database, exclude);
    if pairs.is_empty() {
        return true;
    }
    let counts: Vec<usize> = held.iter().map(Vec::len).collect();
    let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
    let even_within = pairs.iter().zip(&held).all(|(&(a, _), held)| {
        let on_a = held.iter().filter(|h| h.master == a).count();
        on_a.abs_diff(held.len() - on_a) <= 1
    });
    homeless.is_empty() && max - min <= 1 && even_within && held.iter().flatten().all(|h| h.mate != Mate::Missing)
}

/// The fewest partition moves between pairs that balance `database` (no leaf being emptied): every partition
/// mastered on an online leaf outside the usable pairs, plus the sum of the pairs' excess over their shares when the
/// pairs holding the most keep the remainder (`super::targets`' rule, which the planner follows). Promotions within
/// a pair and restoring copies move no partition off its pair and are not counted; nor are created (FORCE) ones.
pub(super) fn moves_lower_bound(meta: &ClusterMeta, database: &Database) -> usize {
    let View { pairs, held, homeless } = view(meta, database, None);
    if pairs.is_empty() {
        return 0;
    }
    homeless.len() + excess_over_shares(held.iter().map(Vec::len).collect(), homeless.len())
}

/// A partition's new place: the leaf of the receiving pair that becomes its master, and the other one (its replica).
#[derive(Debug, Clone, Copy)]
struct Move {
    ordinal: u32,
    master: NodeId,
    replica: NodeId,
}

/// The plan that balances `database` over the usable pairs (see the module's rules); `load`: instances per leaf over
/// every database (what FULL weighs).
pub(super) fn plan(
    meta: &ClusterMeta,
    database: &Database,
    options: &Options,
    sizes: &Sizes,
    load: &Load,
) -> Result<Plan, RebalanceError> {
    let View { pairs, mut held, homeless } = view(meta, database, options.exclude);
    if pairs.is_empty() {
        return Err(RebalanceError::NoOnlinePairs);
    }
    let size = |ordinal: u32| sizes.get(&ordinal).copied().unwrap_or(0);
    let own = |leaf: NodeId| database.instances.iter().filter(|i| i.node == leaf).count();
    let load_of = |leaf: NodeId| load.get(&leaf).copied().unwrap_or(0).saturating_sub(own(leaf));
    let elsewhere: Vec<usize> = pairs.iter().map(|&(a, b)| load_of(a) + load_of(b)).collect();
    // The pairs as the redundancy-1 rule's units, each named by its first leaf.
    let units: Vec<NodeId> = pairs.iter().map(|&(a, _)| a).collect();
    let counts: BTreeMap<NodeId, Vec<u32>> =
        units.iter().zip(&held).map(|(&u, h)| (u, h.iter().map(|h| h.ordinal).collect())).collect();
    let created = if options.force { unreachable(meta, database) } else { Vec::new() };
    let targets = targets(&units, &counts, homeless.len() + created.len(), &elsewhere, options.full);
    // Masters per leaf among the partitions that stay, updated as partitions leave and arrive.
    let mut masters: BTreeMap<NodeId, usize> = BTreeMap::new();
    for h in held.iter().flatten() {
        *masters.entry(h.master).or_default() += 1;
    }
    // Each pair with excess gives away partitions mastered on its leaf with more masters (fewer promotions later),
    // a partition still lacking its replica first (moving it makes the restoring copy unnecessary), then the
    // smallest, then by ordinal.
    let mut leaving: Vec<u32> = Vec::new();
    for (p, &target) in targets.iter().enumerate() {
        while held[p].len() > target {
            let (a, b) = pairs[p];
            let heavier =
                if masters.get(&a).copied().unwrap_or(0) >= masters.get(&b).copied().unwrap_or(0) { a } else { b };
            let pick = held[p]
                .iter()
                .enumerate()
                .min_by_key(|(_, h)| (h.master != heavier, h.mate != Mate::Missing, size(h.ordinal), h.ordinal))
                .map(|(i, _)| i)
                .expect("a pair above its target holds partitions");
            let gone = held[p].swap_remove(pick);
            *masters.entry(gone.master).or_default() -= 1;
            leaving.push(gone.ordinal);
        }
    }
    // Each partition to place goes to the pair missing the most (preferring one without any copy of it, then the
    // least loaded by the other databases, then pair order), its master on the pair's leaf with fewer masters.
    let mut missing: Vec<usize> = targets.iter().zip(&held).map(|(&t, h)| t.saturating_sub(h.len())).collect();
    let copies: BTreeSet<(u32, NodeId)> = database.instances.iter().map(|i| (i.ordinal, i.node)).collect();
    let mut moves: Vec<Move> = Vec::new();
    for ordinal in created.iter().chain(&homeless).copied().chain(leaving) {
        let has_copy = |p: usize| copies.contains(&(ordinal, pairs[p].0)) || copies.contains(&(ordinal, pairs[p].1));
        let to = (0..pairs.len())
            .filter(|&p| missing[p] > 0)
            .max_by_key(|&p| (!has_copy(p), missing[p], std::cmp::Reverse((elsewhere[p], p))))
            .expect("the pairs missing partitions take exactly the partitions placed");
        missing[to] -= 1;
        let (a, b) = pairs[to];
        let (master, replica) =
            if masters.get(&b).copied().unwrap_or(0) < masters.get(&a).copied().unwrap_or(0) { (b, a) } else { (a, b) };
        *masters.entry(master).or_default() += 1;
        moves.push(Move { ordinal, master, replica });
    }
    // Masters evened within each pair: promotions of the staying partitions' replicas (in sync, or restored in
    // phase 1) on the leaf with fewer masters.
    let mut promotions: Vec<(u32, NodeId)> = Vec::new();
    for (&(a, b), held) in pairs.iter().zip(&held) {
        let mut candidates: Vec<&Held> = held.iter().filter(|h| h.mate != Mate::NotInSync).collect();
        candidates.sort_by_key(|h| h.ordinal);
        loop {
            let (on_a, on_b) = (masters.get(&a).copied().unwrap_or(0), masters.get(&b).copied().unwrap_or(0));
            let (from, to) = match on_a.cmp(&on_b) {
                std::cmp::Ordering::Greater if on_a > on_b + 1 => (a, b),
                std::cmp::Ordering::Less if on_b > on_a + 1 => (b, a),
                _ => break,
            };
            let Some(at) = candidates.iter().position(|h| h.master == from) else { break };
            let flipped = candidates.remove(at);
            *masters.entry(from).or_default() -= 1;
            *masters.entry(to).or_default() += 1;
            promotions.push((flipped.ordinal, to));
        }
    }
    let (creates, moves) = moves.split_at(created.len());
    Ok(steps(database, &pairs, &held, Placed { creates, moves, promotions: &promotions }, options, sizes))
}

/// Where the planner put partitions: created empty, moved, promoted within their pair.
struct Placed<'p> {
    creates: &'p [Move],
    moves: &'p [Move],
    promotions: &'p [(u32, NodeId)],
}

/// The plan's steps from the planner's decisions.
fn steps(
    database: &Database,
    pairs: &[(NodeId, NodeId)],
    held: &[Vec<Held>],
    placed: Placed,
    options: &Options,
    sizes: &Sizes,
) -> Plan {
    let Placed { creates, moves, promotions } = placed;
    let estimates = &options.estimates;
    let db = database.name.clone();
    let step = |action, ordinal, target, phase, estimated_ms| Step {
        action,
        db: db.clone(),
        ordinal,
        target,
        phase,
        estimated_ms,
    };
    let copy_ms = |ordinal: u32| estimates.copy_ms(sizes.get(&ordinal).copied());
    let mut steps = Vec::new();
    let mate_of = |leaf: NodeId| pairs.iter().find_map(|&(a, b)| (a == leaf).then_some(b).or((b == leaf).then_some(a)));
    for h in held.iter().flatten().filter(|h| h.mate == Mate::Missing) {
        let mate = mate_of(h.master).expect("a held partition's master is in a pair");
        steps.push(step(Action::CopyPartitionForce, h.ordinal, mate, PHASE_RESTORE, copy_ms(h.ordinal)));
    }
    for c in creates {
        steps.push(step(Action::CreatePartition, c.ordinal, c.master, PHASE_RESTORE, estimates.copy_fixed_ms));
        steps.push(step(Action::CopyPartitionForce, c.ordinal, c.replica, PHASE_COPY, estimates.copy_fixed_ms));
    }
    for m in moves {
        steps.push(step(Action::CopyPartition, m.ordinal, m.master, PHASE_COPY, copy_ms(m.ordinal)));
        steps.push(step(Action::CopyPartition, m.ordinal, m.replica, PHASE_COPY, copy_ms(m.ordinal)));
    }
    for m in moves {
        let promote = Action::PromotePartition { with_drop: true };
        steps.push(step(promote, m.ordinal, m.master, PHASE_PROMOTE, estimates.promote_ms));
    }
    for &(ordinal, target) in promotions {
        let promote = Action::PromotePartition { with_drop: false };
        steps.push(step(promote, ordinal, target, PHASE_PROMOTE, estimates.promote_ms));
    }
    // Drops: a moved partition's every copy but its master (dropped by the promotion) and the two new ones (a
    // leftover on a new leaf is replaced by the copy step); a staying partition's copies off its pair.
    let moved: BTreeMap<u32, &Move> = moves.iter().map(|m| (m.ordinal, m)).collect();
    let staying: BTreeMap<u32, NodeId> = held.iter().flatten().map(|h| (h.ordinal, h.master)).collect();
    let drop = |i: &Instance| -> bool {
        if i.role == InstanceRole::Master {
            return false;
        }
        if let Some(m) = moved.get(&i.ordinal) {
            return i.node != m.master && i.node != m.replica;
        }
        staying.get(&i.ordinal).is_some_and(|&master| mate_of(master) != Some(i.node))
    };
    for i in database.instances.iter().filter(|i| drop(i)) {
        steps.push(step(Action::DropPartition, i.ordinal, i.node, PHASE_DROP, estimates.drop_ms));
    }
    Plan { db: database.name.clone(), steps }
}

#[cfg(test)]
mod tests {
    use super::super::plan as plan_db;
    use super::*;
    use crate::plan::apply_plan;
    use canopy_meta::{Command, NodeAddr};

    fn cluster(leaves: u16) -> ClusterMeta {
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
        m.apply(Command::SetVariable { name: "redundancy_level".into(), value: canopy_sql::Value::Integer(2) })
            .unwrap();
        add_leaves(&mut m, 1, leaves);
        m
    }

    fn add_leaves(m: &mut ClusterMeta, from: u16, to: u16) {
        for i in from..=to {
            let addr = NodeAddr { host: format!("leaf-{i}"), port: 3306, rpc_port: 13306 };
            m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        }
    }

    fn check(m: &ClusterMeta, options: &Options, expect: &[(&str, u32, &str, u32)]) {
        let plan = plan_db(m, "test", options, &Sizes::new()).unwrap();
        assert_eq!(super::super::tests::step_rows(m, &plan), expect);
    }

    /// Leaves in the group each joins: leaf-1, 3, 5 in group 1 and leaf-2, 4, 6 in group 2, paired 1-2, 3-4, 5-6.
    /// Eight partitions on two pairs, then a third pair: 8 over 3 pairs is 3, 3, 2; one partition leaves each of the
    /// first two pairs, copied onto both new leaves, mastered one on each new leaf.
    #[test]
    fn a_third_pair_takes_one_partition_from_each_pair() {
        let mut m = cluster(4);
        m.apply(crate::placement::create_database(&m, "test", 8, canopy_meta::Durability::Sync)).unwrap();
        check(&m, &Options::default(), &[]);
        add_leaves(&mut m, 5, 6);
        check(
            &m,
            &Options::default(),
            &[
                ("COPY PARTITION", 0, "leaf-5", 2),
                ("COPY PARTITION", 0, "leaf-6", 2),
                ("COPY PARTITION", 1, "leaf-6", 2),
                ("COPY PARTITION", 1, "leaf-5", 2),
                ("PROMOTE PARTITION WITH DROP", 0, "leaf-5", 3),
                ("PROMOTE PARTITION WITH DROP", 1, "leaf-6", 3),
                ("DROP PARTITION", 0, "leaf-2", 4),
                ("DROP PARTITION", 1, "leaf-4", 4),
            ],
        );
        assert_eq!(super::super::moves_lower_bound(&m, "test"), 2, "one move per old pair");
        let plan = plan_db(&m, "test", &Options::default(), &Sizes::new()).unwrap();
        apply_plan(&mut m, &plan).unwrap();
        assert!(super::super::is_balanced(&m, "test"));
        assert_eq!(super::super::moves_lower_bound(&m, "test"), 0);
        check(&m, &Options::default(), &[]);
    }

    /// Masters all on one leaf of the pair (a failover): half are promoted back, no data moves.
    #[test]
    fn masters_even_out_within_a_pair_by_promotions() {
        let mut m = cluster(2);
        m.apply(crate::placement::create_database(&m, "test", 4, canopy_meta::Durability::Sync)).unwrap();
        for k in 0..4 {
            let d = &m.databases["test"];
            if d.master(k).unwrap().node == NodeId(2) {
                let replica = d.replicas(k).next().unwrap().clone();
                let old = d.master(k).unwrap().id;
                m.apply(Command::Promote { db: "test".into(), instance: replica.id }).unwrap();
                m.apply(Command::SetReplicaSync { db: "test".into(), instance: old, sync: true }).unwrap();
            }
        }
        check(&m, &Options::default(), &[("PROMOTE PARTITION", 0, "leaf-1", 3), ("PROMOTE PARTITION", 1, "leaf-1", 3)]);
        assert_eq!(super::super::moves_lower_bound(&m, "test"), 0, "promotions within a pair are not moves");
    }

    /// DETACH of a leaf of one of two pairs: every partition of that pair moves to the other one.
    #[test]
    fn emptying_a_leaf_moves_its_pair_s_partitions() {
        let mut m = cluster(4);
        m.apply(crate::placement::create_database(&m, "test", 4, canopy_meta::Durability::Sync)).unwrap();
        let options = Options { exclude: Some(NodeId(4)), ..Options::default() };
        let plan = plan_db(&m, "test", &options, &Sizes::new()).unwrap();
        assert_eq!(plan.copies(), 4, "two partitions, two copies each");
        apply_plan(&mut m, &plan).unwrap();
        let d = &m.databases["test"];
        assert!(d.instances.iter().all(|i| i.node == NodeId(2) || i.node == NodeId(3)));
        assert_eq!(d.instances.len(), 8);
        assert!(is_balanced(&m, d, Some(NodeId(4))));
        let one_pair = cluster(2);
        let mut one = one_pair.clone();
        one.apply(crate::placement::create_database(&one, "test", 2, canopy_meta::Durability::Sync)).unwrap();
        let options = Options { exclude: Some(NodeId(2)), ..Options::default() };
        assert_eq!(plan_db(&one, "test", &options, &Sizes::new()), Err(RebalanceError::NoOnlinePairs));
    }
}
