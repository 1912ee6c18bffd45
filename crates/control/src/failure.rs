//! The failure detector's decision logic, pure: what the heartbeat observed about one leaf, and whether that means
//! the leaf has failed. Time is passed in as milliseconds on a monotonic clock, so the rules are tested without
//! sleeping. Two signals, as in SingleStore:
//! - refused connections (nothing listens: the process is dead) fail a leaf after `refused_count` heartbeats in a
//!   row — about `refused_count × heartbeat_interval`, well under a second by default;
//! - silence (connections accepted but nothing answers: a frozen process or a cut link) fails a leaf after
//!   `timeout_ms` without an answer. A slow answer is still an answer, so a busy machine never fails a leaf unless
//!   it stalls for the whole timeout.

/// What one heartbeat got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The leaf answered the ping.
    Answered,
    /// The connection was refused or reset: nothing is listening.
    Refused,
    /// The ping timed out or the link failed in another way.
    NoAnswer,
    /// The leaf's RPC server said it is at its connection limit: the process is alive (it answered), only busy,
    /// so this counts as an answer for liveness (never as a refusal), though not as a ping answered.
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub refused_count: u32,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Failed,
}

/// The detector's memory of one leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafWatch {
    /// When the leaf last answered, or when watching started if it never did.
    last_answer_ms: u64,
    refused_in_a_row: u32,
}

impl LeafWatch {
    pub fn new(now_ms: u64) -> LeafWatch {
        LeafWatch { last_answer_ms: now_ms, refused_in_a_row: 0 }
    }

    pub fn observe(&mut self, probe: Probe, now_ms: u64) {
        match probe {
            Probe::Answered | Probe::Busy => {
                self.last_answer_ms = self.last_answer_ms.max(now_ms);
                self.refused_in_a_row = 0;
            }
            Probe::Refused => self.refused_in_a_row = self.refused_in_a_row.saturating_add(1),
            Probe::NoAnswer => self.refused_in_a_row = 0,
        }
    }

    pub fn verdict(&self, now_ms: u64, t: Thresholds) -> Verdict {
        let silent_ms = now_ms.saturating_sub(self.last_answer_ms);
        if self.refused_in_a_row >= t.refused_count || silent_ms >= t.timeout_ms {
            Verdict::Failed
        } else {
            Verdict::Healthy
        }
    }

    /// Milliseconds since the last answer (for diagnostics).
    pub fn silent_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_answer_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { refused_count: 3, timeout_ms: 5000 };

    fn run(history: &[(u64, Probe)]) -> Vec<Verdict> {
        let mut w = LeafWatch::new(0);
        history
            .iter()
            .map(|&(at, probe)| {
                w.observe(probe, at);
                w.verdict(at, T)
            })
            .collect()
    }

    #[test]
    fn a_dead_process_fails_after_three_refusals() {
        use Probe::*;
        use Verdict::*;
        let v = run(&[(0, Answered), (200, Refused), (400, Refused), (600, Refused)]);
        assert_eq!(v, [Healthy, Healthy, Healthy, Failed]);
    }

    #[test]
    fn an_answer_resets_the_refusal_count() {
        use Probe::*;
        let v = run(&[(200, Refused), (400, Refused), (600, Answered), (800, Refused), (1000, Refused)]);
        assert!(v.iter().all(|v| *v == Verdict::Healthy));
    }

    #[test]
    fn a_frozen_process_fails_after_the_timeout_of_silence() {
        use Probe::*;
        let mut w = LeafWatch::new(0);
        w.observe(Answered, 1000);
        for at in (1200..6000).step_by(200) {
            w.observe(NoAnswer, at);
            assert_eq!(w.verdict(at, T), Verdict::Healthy, "at {at}");
        }
        w.observe(NoAnswer, 6000);
        assert_eq!(w.verdict(6000, T), Verdict::Failed);
    }

    #[test]
    fn slow_answers_on_a_busy_machine_keep_a_leaf_healthy() {
        use Probe::*;
        // Answers arrive 4.9 s apart: late, but never 5 s of silence.
        let mut w = LeafWatch::new(0);
        for k in 1..20u64 {
            let at = k * 4900;
            assert_eq!(w.verdict(at - 1, T), Verdict::Healthy);
            w.observe(Answered, at);
        }
    }

    #[test]
    fn timeouts_interleaved_with_refusals_do_not_add_up_to_three() {
        use Probe::*;
        let v = run(&[(200, Refused), (400, NoAnswer), (600, Refused), (800, NoAnswer), (1000, Refused)]);
        assert!(v.iter().all(|v| *v == Verdict::Healthy));
    }

    #[test]
    fn a_leaf_at_its_connection_limit_is_busy_not_failed() {
        use Probe::*;
        // Ten seconds of "busy" answers (twice the timeout), then answers again: never failed, never refused.
        let history: Vec<(u64, Probe)> = (1..=50).map(|k| (k * 200, Busy)).chain([(10_200, Answered)]).collect();
        assert!(run(&history).iter().all(|v| *v == Verdict::Healthy));
    }
}
