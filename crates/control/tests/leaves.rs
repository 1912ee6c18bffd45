//! Properties of the leaf-health decisions over arbitrary heartbeat histories.

use std::collections::HashMap;

use canopy_control::failure::Probe;
use canopy_control::leaves::{Answer, LeafAction, Monitor};
use canopy_meta::{ClusterMeta, Command, LeafState, NodeAddr, NodeId};
use proptest::prelude::*;

const LEAF: NodeId = NodeId(2);

fn cluster(detection: bool) -> ClusterMeta {
    let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
    let addr = NodeAddr { host: "h".into(), port: 10, rpc_port: 11 };
    m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
    m.variables.leaf_failure_detection = detection;
    m
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![Just(Probe::Answered), Just(Probe::Busy), Just(Probe::NoAnswer), Just(Probe::Refused)]
}

/// Feeds `(gap_ms, probe)` heartbeats to a monitor over an online leaf; the actions of each round.
fn run(meta: &ClusterMeta, history: &[(u64, Probe)]) -> Vec<Vec<(NodeId, LeafAction)>> {
    let mut monitor = Monitor::new();
    let mut now = 0;
    monitor.decide(meta, &HashMap::new(), now);
    history
        .iter()
        .map(|&(gap, probe)| {
            now += gap;
            monitor.observe(LEAF, probe, now);
            let answers: HashMap<NodeId, Answer> =
                (probe == Probe::Answered).then_some((LEAF, Answer::default())).into_iter().collect();
            monitor.decide(meta, &answers, now)
        })
        .collect()
}

/// Turns an arbitrary history into one of a slow-but-alive leaf: where the silence would reach `timeout_ms`, the
/// heartbeat comes just in time and is answered; where refusals would reach `refused_max` in a row, the ping times
/// out instead. Everything else is kept as generated.
fn slow_but_alive(raw: &[(u64, Probe)], timeout_ms: u64, refused_max: u32) -> Vec<(u64, Probe)> {
    let (mut silent, mut refused) = (0u64, 0u32);
    raw.iter()
        .map(|&(gap, probe)| {
            let (gap, probe) = if silent + gap >= timeout_ms {
                (timeout_ms - silent - 1, Probe::Answered)
            } else if probe == Probe::Refused && refused + 1 >= refused_max {
                (gap, Probe::NoAnswer)
            } else {
                (gap, probe)
            };
            silent += gap;
            match probe {
                Probe::Answered | Probe::Busy => (silent, refused) = (0, 0),
                Probe::Refused => refused += 1,
                Probe::NoAnswer => refused = 0,
            }
            (gap, probe)
        })
        .collect()
}

proptest! {
    /// A slow leaf is not a dead one: as long as it answers (or says it is busy) within every
    /// `leaf_failure_timeout_ms` and is never refused `leaf_failure_refused_count` times in a row, no sequence of
    /// heartbeats marks it offline, however late its answers and however many pings time out in between.
    #[test]
    fn no_sequence_of_observations_marks_a_leaf_offline_for_slowness_alone(
        raw in prop::collection::vec((1u64..3000, probe()), 1..200)
    ) {
        let meta = cluster(true);
        let history = slow_but_alive(&raw, meta.variables.leaf_failure_timeout_ms, meta.variables.leaf_failure_refused_count);
        for actions in run(&meta, &history) {
            prop_assert!(!actions.contains(&(LEAF, LeafAction::MarkOffline)), "{history:?}");
        }
    }

    /// With `leaf_failure_detection` OFF nothing ever marks a leaf offline.
    #[test]
    fn with_detection_off_no_leaf_is_ever_marked_offline(
        history in prop::collection::vec((1u64..10_000, probe()), 1..100)
    ) {
        for actions in run(&cluster(false), &history) {
            prop_assert!(!actions.iter().any(|(_, a)| *a == LeafAction::MarkOffline));
        }
    }

    /// A leaf silent for the whole timeout is marked offline at the first round after it.
    #[test]
    fn a_silent_leaf_is_marked_offline_once_the_timeout_passes(gaps in prop::collection::vec(1u64..2000, 1..50)) {
        let meta = cluster(true);
        let timeout = meta.variables.leaf_failure_timeout_ms;
        let history: Vec<(u64, Probe)> = gaps.iter().map(|&g| (g, Probe::NoAnswer)).collect();
        let mut now = 0;
        for (actions, (gap, _)) in run(&meta, &history).iter().zip(&history) {
            now += gap;
            prop_assert_eq!(actions.contains(&(LEAF, LeafAction::MarkOffline)), now >= timeout);
        }
    }
}

#[test]
fn a_returning_leaf_is_attached_or_detached_by_auto_attach() {
    for (auto_attach, expected) in
        [(true, LeafAction::Attach { seen: LeafState::Offline }), (false, LeafAction::Detach)]
    {
        let mut meta = cluster(true);
        meta.variables.auto_attach = auto_attach;
        meta.apply(Command::SetLeafState { leaf: LEAF, state: LeafState::Offline }).unwrap();
        let mut monitor = Monitor::new();
        monitor.observe(LEAF, Probe::Answered, 100);
        let answers = HashMap::from([(LEAF, Answer::default())]);
        assert_eq!(monitor.decide(&meta, &answers, 100), vec![(LEAF, expected)]);
    }
}
