//! The checks after the nemesis, on a healthy cluster with the writers stopped:
//! - through the master aggregator: every acknowledged id is present exactly once, no id appears twice, no id that
//!   was never attempted appears (`rows`, pure);
//! - on the leaves themselves: both copies of every partition hold the same log position (SHOW DATABASES EXTENDED)
//!   and the same ids (`copies`, pure). A leaf serves only its online (master) copies for inspection, so the
//!   replica copies are read by failing each availability group over in turn: its leaves are killed (one leaf per
//!   pair, as the nemesis does), the other group's replicas are promoted and read, and the group is restarted. No
//!   write runs meanwhile, so what is read is what the replicas held when the nemesis ended.

use std::collections::BTreeMap;

use crate::workload::Outcome;

/// What the row check found, besides violations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    /// "Maybe" writes that turned out present, and absent.
    pub maybe_present: u64,
    pub maybe_absent: u64,
    /// Acknowledged ids that are missing, and ids present more than once (also in `violations`).
    pub lost: Vec<i64>,
    pub duplicated: Vec<i64>,
    pub violations: Vec<String>,
}

/// At most this many ids are named in one violation line.
const IDS_SHOWN_MAX: usize = 20;

fn sample(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(IDS_SHOWN_MAX).map(|i| i.to_string()).collect();
    let more =
        if ids.len() > IDS_SHOWN_MAX { format!(" and {} more", ids.len() - IDS_SHOWN_MAX) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Compares the ledger (`outcomes[id - 1]`) with every row the cluster returned (`found`, one entry per row, so a
/// duplicate appears twice).
pub fn rows(outcomes: &[Outcome], found: &[i64]) -> Rows {
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    for id in found {
        *counts.entry(*id).or_default() += 1;
    }
    let mut out = Rows::default();
    let unattempted: Vec<i64> =
        counts.keys().copied().filter(|id| *id < 1 || *id as u64 > outcomes.len() as u64).collect();
    if !unattempted.is_empty() {
        out.violations.push(format!(
            "{} ids that were never attempted are present: {}",
            unattempted.len(),
            sample(&unattempted)
        ));
    }
    let duplicated: Vec<i64> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
    if !duplicated.is_empty() {
        out.violations.push(format!("{} ids are present more than once: {}", duplicated.len(), sample(&duplicated)));
    }
    let mut lost = Vec::new();
    let mut unresolved = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        let id = i as i64 + 1;
        let present = counts.contains_key(&id);
        match outcome {
            Outcome::Acked if !present => lost.push(id),
            Outcome::Acked => {}
            Outcome::Maybe if present => out.maybe_present += 1,
            Outcome::Maybe => out.maybe_absent += 1,
            Outcome::InFlight => unresolved.push(id),
        }
    }
    if !lost.is_empty() {
        out.violations.push(format!("{} acknowledged ids are missing: {}", lost.len(), sample(&lost)));
    }
    out.lost = lost;
    out.duplicated = duplicated;
    if !unresolved.is_empty() {
        out.violations.push(format!(
            "{} ids were still in flight at the check: {}",
            unresolved.len(),
            sample(&unresolved)
        ));
    }
    out
}

/// One copy of one partition as its leaf shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// SHOW DATABASES EXTENDED's `Position` (`term:index`).
    pub position: String,
    /// The ids it holds, sorted; `None` when they were not read.
    pub ids: Option<Vec<i64>>,
}

/// Compares the master copy and the replica copy of every partition: the same log position, the same ids.
pub fn copies(masters: &BTreeMap<u32, Copy>, replicas: &BTreeMap<u32, Copy>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, master) in masters {
        let Some(replica) = replicas.get(k) else {
            out.push(format!("partition {k}: no replica copy found"));
            continue;
        };
        if master.position != replica.position {
            out.push(format!(
                "partition {k}: the master copy is at log position {}, the replica copy at {}",
                master.position, replica.position
            ));
        }
        if let (Some(m), Some(r)) = (&master.ids, &replica.ids)
            && m != r
        {
            let only_master: Vec<i64> = m.iter().copied().filter(|id| r.binary_search(id).is_err()).collect();
            let only_replica: Vec<i64> = r.iter().copied().filter(|id| m.binary_search(id).is_err()).collect();
            out.push(format!(
                "partition {k}: the copies differ: {} ids only on the master copy ({}), {} only on the replica copy ({})",
                only_master.len(),
                sample(&only_master),
                only_replica.len(),
                sample(&only_replica)
            ));
        }
    }
    for k in replicas.keys().filter(|k| !masters.contains_key(k)) {
        out.push(format!("partition {k}: a replica copy but no master copy"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[test]
    fn acknowledged_ids_present_once_and_maybes_either_way_pass() {
        let r = rows(&[Acked, Maybe, Maybe, Acked], &[1, 3, 4]);
        assert_eq!(r, Rows { maybe_present: 1, maybe_absent: 1, ..Rows::default() });
    }

    #[test]
    fn lost_duplicated_unattempted_and_unresolved_ids_are_violations() {
        let r = rows(&[Acked, Acked, Maybe, InFlight], &[2, 2, 3, 9, 0]);
        assert_eq!(
            r.violations,
            [
                "2 ids that were never attempted are present: 0, 9",
                "1 ids are present more than once: 2",
                "1 acknowledged ids are missing: 1",
                "1 ids were still in flight at the check: 4",
            ]
        );
        assert_eq!((r.lost, r.duplicated), (vec![1], vec![2]));
    }

    fn copy(position: &str, ids: &[i64]) -> Copy {
        Copy { position: position.into(), ids: Some(ids.to_vec()) }
    }

    #[test]
    fn copies_must_agree_on_position_and_ids() {
        let masters = BTreeMap::from([(0, copy("2:10", &[1, 2])), (1, copy("1:5", &[3])), (2, copy("1:1", &[]))]);
        let replicas = BTreeMap::from([(0, copy("2:10", &[1, 2])), (1, copy("1:6", &[3, 4])), (3, copy("1:1", &[]))]);
        assert_eq!(
            copies(&masters, &replicas),
            [
                "partition 1: the master copy is at log position 1:5, the replica copy at 1:6",
                "partition 1: the copies differ: 0 ids only on the master copy (), 1 only on the replica copy (4)",
                "partition 2: no replica copy found",
                "partition 3: a replica copy but no master copy",
            ]
        );
    }
}
