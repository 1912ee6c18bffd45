//! What the master aggregator does about each leaf after a round of heartbeats, pure: the table from (leaf state,
//! failure verdict, what the last ping showed, variables, whether an attach already runs) to an action, and the
//! `Monitor` that keeps the detector's memory of every leaf and the set of attaches in progress. The heartbeat
//! loop feeds it probes and executes the actions it returns; time comes in as milliseconds on a monotonic clock.

use std::collections::{HashMap, HashSet};

use canopy_meta::{ClusterMeta, LeafState, NodeId, Variables};

use crate::failure::{LeafWatch, Probe, Thresholds, Verdict};

/// What the last answered ping of a leaf showed (None in `decide`'s map: no answer this round).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer {
    /// The leaf reports pending copies that the metadata places on it (`attach::any_attachable`).
    pub attachable_pending: bool,
}

/// An action for the runtime to execute on one leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafAction {
    /// The leaf failed: set it `offline` (its partitions have no serving master until it returns).
    MarkOffline,
    /// Attach the leaf (ATTACH LEAF's work), seen in state `seen`; skipped by the runtime if it left that state.
    Attach { seen: LeafState },
    /// An offline leaf answers but `auto_attach` is OFF: set it `detached` until an operator attaches it.
    Detach,
    /// The leaf is `attaching` with no attach running here (a master aggregator crashed mid-attach): finish it.
    ResumeAttach,
}

/// The decision table for one leaf. `answer` is the leaf's answered ping this round, if any; `attach_running`
/// whether an attach (or detach) started earlier for it has not finished yet.
pub fn next_action(
    state: LeafState,
    verdict: Verdict,
    answer: Option<Answer>,
    variables: &Variables,
    attach_running: bool,
) -> Option<LeafAction> {
    match state {
        LeafState::Online if verdict == Verdict::Failed && variables.leaf_failure_detection => {
            Some(LeafAction::MarkOffline)
        }
        _ if attach_running => None,
        LeafState::Offline if answer.is_some() => Some(if variables.auto_attach {
            LeafAction::Attach { seen: LeafState::Offline }
        } else {
            LeafAction::Detach
        }),
        // Left `attaching` by a master aggregator that crashed mid-attach (or attached right now by ATTACH LEAF,
        // which the resume waits for and then leaves alone).
        LeafState::Attaching if answer.is_some() => Some(LeafAction::ResumeAttach),
        // An online leaf that restarted between two heartbeats (or while the master aggregator was down) reports
        // copies pending attach: attach them, without any failover. Pending orphans start nothing.
        LeafState::Online if answer.is_some_and(|a| a.attachable_pending) => {
            Some(LeafAction::Attach { seen: LeafState::Online })
        }
        _ => None,
    }
}

/// The failure detector's memory of every leaf plus the attaches in progress.
#[derive(Debug, Default)]
pub struct Monitor {
    watches: HashMap<NodeId, LeafWatch>,
    attaching: HashSet<NodeId>,
}

impl Monitor {
    pub fn new() -> Monitor {
        Monitor::default()
    }

    /// Records one heartbeat's result for `leaf`.
    pub fn observe(&mut self, leaf: NodeId, probe: Probe, now_ms: u64) {
        self.watches.entry(leaf).or_insert_with(|| LeafWatch::new(now_ms)).observe(probe, now_ms);
    }

    /// An attach (or detach) started by a `LeafAction` finished, successfully or not: the leaf may get another.
    pub fn attach_finished(&mut self, leaf: NodeId) {
        self.attaching.remove(&leaf);
    }

    /// Milliseconds since `leaf` last answered (for logs).
    pub fn silent_ms(&self, leaf: NodeId, now_ms: u64) -> u64 {
        self.watches.get(&leaf).map_or(0, |w| w.silent_ms(now_ms))
    }

    /// The actions for this round, in leaf order. `answers` holds the leaves that answered a ping since the last
    /// round. Leaves unknown to the metadata are forgotten; a leaf seen for the first time starts its silence clock
    /// now. Starting an attach marks it running until `attach_finished`.
    pub fn decide(
        &mut self,
        meta: &ClusterMeta,
        answers: &HashMap<NodeId, Answer>,
        now_ms: u64,
    ) -> Vec<(NodeId, LeafAction)> {
        let thresholds = Thresholds {
            refused_count: meta.variables.leaf_failure_refused_count,
            timeout_ms: meta.variables.leaf_failure_timeout_ms,
        };
        self.watches.retain(|id, _| meta.leaves.contains_key(id));
        self.attaching.retain(|id| meta.leaves.contains_key(id));
        let mut actions = Vec::new();
        for leaf in meta.leaves_in_order() {
            let watch = self.watches.entry(leaf.id).or_insert_with(|| LeafWatch::new(now_ms));
            let verdict = watch.verdict(now_ms, thresholds);
            let running = self.attaching.contains(&leaf.id);
            let Some(action) =
                next_action(leaf.state, verdict, answers.get(&leaf.id).copied(), &meta.variables, running)
            else {
                continue;
            };
            if action != LeafAction::MarkOffline {
                self.attaching.insert(leaf.id);
            }
            actions.push((leaf.id, action));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(detection: bool, auto_attach: bool) -> Variables {
        Variables { leaf_failure_detection: detection, auto_attach, ..Variables::default() }
    }

    const ANSWERED: Option<Answer> = Some(Answer { attachable_pending: false });
    const WITH_PENDING: Option<Answer> = Some(Answer { attachable_pending: true });

    /// The whole table, row by row.
    #[test]
    fn the_decision_table() {
        use LeafState::*;
        use Verdict::*;
        let on = vars(true, true);
        type Row = (LeafState, Verdict, Option<Answer>, Variables, bool, Option<LeafAction>);
        let rows: &[Row] = &[
            (Online, Failed, None, on.clone(), false, Some(LeafAction::MarkOffline)),
            (Online, Failed, None, vars(false, true), false, None),
            (Online, Failed, None, on.clone(), true, Some(LeafAction::MarkOffline)),
            (Online, Healthy, ANSWERED, on.clone(), false, None),
            (Online, Healthy, WITH_PENDING, on.clone(), false, Some(LeafAction::Attach { seen: Online })),
            (Online, Healthy, WITH_PENDING, vars(true, false), false, Some(LeafAction::Attach { seen: Online })),
            (Online, Healthy, WITH_PENDING, on.clone(), true, None),
            (Offline, Failed, None, on.clone(), false, None),
            (Offline, Healthy, ANSWERED, on.clone(), false, Some(LeafAction::Attach { seen: Offline })),
            (Offline, Healthy, ANSWERED, vars(true, false), false, Some(LeafAction::Detach)),
            (Offline, Healthy, ANSWERED, on.clone(), true, None),
            (Attaching, Healthy, ANSWERED, on.clone(), false, Some(LeafAction::ResumeAttach)),
            (Attaching, Failed, None, on.clone(), false, None),
            (Attaching, Healthy, ANSWERED, on.clone(), true, None),
            (Detached, Healthy, WITH_PENDING, on.clone(), false, None),
            (Detached, Failed, None, on.clone(), false, None),
            (Recovering, Healthy, ANSWERED, on.clone(), false, None),
        ];
        for (state, verdict, answer, variables, running, expected) in rows {
            assert_eq!(
                next_action(*state, *verdict, *answer, variables, *running),
                *expected,
                "{state:?} {verdict:?} {answer:?} running={running}"
            );
        }
    }

    fn one_leaf(state: LeafState) -> ClusterMeta {
        use canopy_meta::{Command, NodeAddr};
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
        let addr = NodeAddr { host: "h".into(), port: 10, rpc_port: 11 };
        m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        if state != LeafState::Online {
            m.apply(Command::SetLeafState { leaf: NodeId(2), state: LeafState::Offline }).unwrap();
        }
        m
    }

    #[test]
    fn an_attach_is_started_once_until_it_finishes() {
        let meta = one_leaf(LeafState::Offline);
        let mut monitor = Monitor::new();
        let answers = HashMap::from([(NodeId(2), Answer::default())]);
        monitor.observe(NodeId(2), Probe::Answered, 0);
        let first = monitor.decide(&meta, &answers, 0);
        assert_eq!(first, vec![(NodeId(2), LeafAction::Attach { seen: LeafState::Offline })]);
        assert!(monitor.decide(&meta, &answers, 200).is_empty(), "the attach still runs");
        monitor.attach_finished(NodeId(2));
        assert_eq!(monitor.decide(&meta, &answers, 400), first, "a failed attach is tried again");
    }

    #[test]
    fn a_dead_leaf_is_marked_offline_after_the_refusals_in_a_row() {
        let meta = one_leaf(LeafState::Online);
        let refused = meta.variables.leaf_failure_refused_count as u64;
        let mut monitor = Monitor::new();
        for k in 1..refused {
            monitor.observe(NodeId(2), Probe::Refused, k * 100);
            assert!(monitor.decide(&meta, &HashMap::new(), k * 100).is_empty(), "after {k} refusals");
        }
        monitor.observe(NodeId(2), Probe::Refused, refused * 100);
        assert_eq!(monitor.decide(&meta, &HashMap::new(), refused * 100), vec![(NodeId(2), LeafAction::MarkOffline)]);
    }
}
