//! `canopy-plan-bench`: how long the rebalance planner (`canopy_control::rebalance`) takes on a large cluster, and
//! how many moves its plans make against the lower bound. Pure computation on a metadata value built through the
//! state machine; no processes. It prints figures and asserts nothing about speed.
//!
//! The cluster: `--first-leaves` leaves hold `--databases` databases of `--partitions` partitions each (placed as
//! CREATE DATABASE places them), then leaves are added up to `--leaves`, as after a large expansion. With
//! `--redundancy 2` the leaves join alternating availability groups (paired in order, so the leaf counts must be
//! even) and every partition has a master and a replica on a pair. Measured:
//! - every database planned on its own (`REBALANCE PARTITIONS ON db`, each against the starting metadata): time,
//!   moves (a move is a `PROMOTE PARTITION WITH DROP`: in redundancy 1 one copy, in redundancy 2 two, one onto each
//!   leaf of the receiving pair), and the lower bound (`rebalance::moves_lower_bound`: the sum of every leaf's, or
//!   pair's, excess over its share); in redundancy 2 also the copies, restoring copies and in-pair promotions;
//! - `REBALANCE ALL DATABASES` (every database with FULL, each against the previous plans' result): time, moves,
//!   and the spread of partitions per leaf (per pair) over the whole cluster afterwards against its own lower bound.

use std::time::Instant;

use canopy_control::plan::{Action, Plan, apply_plan};
use canopy_control::rebalance::{self, Options, Sizes};
use canopy_meta::{ClusterMeta, Command, InstanceRole, NodeAddr, NodeId};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "canopy-plan-bench", about = "Rebalance planning time and moves versus the lower bound")]
struct Args {
    /// Leaves after the expansion.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    leaves: u32,
    /// Leaves that hold the databases before the expansion.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    first_leaves: u32,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    databases: u32,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    partitions: u32,
    /// Repetitions of each measurement; the fastest and the slowest are printed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// `redundancy_level` of the cluster (2: leaves paired in alternating availability groups).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    redundancy: u8,
}

fn add_leaf(meta: &mut ClusterMeta, i: u32) {
    let addr = NodeAddr { host: format!("leaf-{i}"), port: 3306, rpc_port: 13306 };
    meta.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None })
        .expect("a new leaf address");
}

fn cluster(args: &Args) -> ClusterMeta {
    let mut meta = ClusterMeta::bootstrap("bench".into(), NodeAddr { host: "ma".into(), port: 3306, rpc_port: 13306 });
    if args.redundancy == 2 {
        let value = canopy_sql::Value::Integer(2);
        meta.apply(Command::SetVariable { name: "redundancy_level".into(), value }).expect("redundancy 2");
    }
    let first = args.first_leaves.min(args.leaves);
    for i in 0..first {
        add_leaf(&mut meta, i);
    }
    for d in 0..args.databases {
        let command = canopy_control::placement::create_database(
            &meta,
            &format!("db{d:04}"),
            args.partitions,
            canopy_meta::Durability::Sync,
        );
        meta.apply(command).expect("a new database");
    }
    for i in first..args.leaves {
        add_leaf(&mut meta, i);
    }
    meta
}

/// Partitions per leaf (redundancy 2: per pair, each partition counted once) over the whole cluster: (min, max, the
/// fewest moves that bring every leaf or pair within one of the others, ignoring per-database balance).
fn spread(meta: &ClusterMeta) -> (usize, usize, usize) {
    // The unit a leaf counts in: itself, or in redundancy 2 its pair (named by the leaf of group 1).
    let unit = |leaf: NodeId| match meta.variables.redundancy_level {
        2 => meta.leaves[&leaf].pair.filter(|_| meta.leaves[&leaf].availability_group == 2).unwrap_or(leaf),
        _ => leaf,
    };
    let mut per_leaf: std::collections::BTreeMap<_, usize> = meta.leaves.keys().map(|&l| (unit(l), 0)).collect();
    for db in meta.databases.values() {
        for instance in db.instances.iter().filter(|i| i.role == InstanceRole::Master) {
            *per_leaf.entry(unit(instance.node)).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = per_leaf.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let total: usize = counts.iter().sum();
    let (base, extra) = (total / counts.len(), total % counts.len());
    let bound = counts.iter().enumerate().map(|(i, &c)| c.saturating_sub(base + usize::from(i < extra))).sum();
    (counts.last().copied().unwrap_or(0), counts.first().copied().unwrap_or(0), bound)
}

/// Runs `f` `runs` times: (fastest ms, slowest ms, the last result).
fn measure<T>(runs: u32, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let (mut fastest, mut slowest, mut last) = (f64::MAX, 0f64, None);
    for _ in 0..runs {
        let started = Instant::now();
        let result = f();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        fastest = fastest.min(ms);
        slowest = slowest.max(ms);
        last = Some(result);
    }
    (fastest, slowest, last.expect("runs >= 1"))
}

/// What a set of plans does: (moves, copies, restoring copies, in-pair promotions). A move is a `PROMOTE PARTITION
/// WITH DROP` (the partition's master changes leaf, redundancy 1, or pair, redundancy 2).
fn tally(plans: &[Plan]) -> (usize, usize, usize, usize) {
    let count = |action: Action| plans.iter().flat_map(|p| &p.steps).filter(|s| s.action == action).count();
    let copies = plans.iter().map(Plan::copies).sum();
    (
        count(Action::PromotePartition { with_drop: true }),
        copies,
        count(Action::CopyPartitionForce),
        count(Action::PromotePartition { with_drop: false }),
    )
}

fn main() {
    let args = Args::parse();
    if args.redundancy == 2 && (args.leaves % 2 != 0 || args.first_leaves.min(args.leaves) % 2 != 0) {
        eprintln!("canopy-plan-bench: redundancy 2 pairs the leaves: --leaves and --first-leaves must be even");
        std::process::exit(2);
    }
    let built = Instant::now();
    let meta = cluster(&args);
    let instances: usize = meta.databases.values().map(|d| d.instances.len()).sum();
    let unit = if args.redundancy == 2 { "pair" } else { "leaf" };
    println!(
        "cluster: redundancy {}, {} leaves ({} before the expansion), {} databases x {} partitions = {} partitions, {instances} instances (built in {:.0} ms)",
        args.redundancy,
        args.leaves,
        args.first_leaves.min(args.leaves),
        args.databases,
        args.partitions,
        u64::from(args.databases) * u64::from(args.partitions),
        built.elapsed().as_secs_f64() * 1000.0
    );
    let sizes = Sizes::new();

    let (fast, slow, plans) = measure(args.runs, || {
        meta.databases
            .keys()
            .map(|db| rebalance::plan(&meta, db, &Options::default(), &sizes).expect("a plan"))
            .collect::<Vec<_>>()
    });
    let (moves, copies, restores, promotions) = tally(&plans);
    let bound: usize = meta.databases.keys().map(|db| rebalance::moves_lower_bound(&meta, db)).sum();
    let mut after = meta.clone();
    for plan in &plans {
        apply_plan(&mut after, plan).expect("a plan applies");
    }
    let balanced = meta.databases.keys().filter(|db| rebalance::is_balanced(&after, db)).count();
    println!(
        "per database (REBALANCE PARTITIONS ON each): {fast:.1} ms (slowest {slow:.1} ms) for all {}; moves {moves}, lower bound {bound}; {balanced}/{} balanced after",
        plans.len(),
        meta.databases.len()
    );
    println!("  copies {copies} (restoring {restores}), in-pair promotions {promotions}");
    let (min, max, _) = spread(&after);
    println!("  partitions per {unit} after: {min}..{max}");

    let (fast, slow, plans) =
        measure(args.runs, || rebalance::plan_all(&meta, &Options::default(), &Default::default()).expect("plans"));
    let (moves, copies, restores, promotions) = tally(&plans);
    let mut after = meta.clone();
    for plan in &plans {
        apply_plan(&mut after, plan).expect("a plan applies");
    }
    let balanced = meta.databases.keys().filter(|db| rebalance::is_balanced(&after, db)).count();
    let (_, _, cluster_bound) = spread(&meta);
    let (min, max, _) = spread(&after);
    println!(
        "all databases (REBALANCE ALL DATABASES, FULL): {fast:.1} ms (slowest {slow:.1} ms); moves {moves}, cluster-wide lower bound {cluster_bound}; {balanced}/{} balanced after",
        meta.databases.len()
    );
    println!("  copies {copies} (restoring {restores}), in-pair promotions {promotions}");
    println!("  partitions per {unit} after: {min}..{max}");
}
