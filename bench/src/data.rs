//! The data set both systems load and the figures both produce: the deterministic row for an id, the split of the id
//! space among clients, latency percentiles, and the scan results with the cross-check between the two systems.
//! It does no IO; `workloads` (Canopy over MySQL) and `sqlite_baseline` (plain SQLite) do.

use std::ops::RangeInclusive;
use std::time::Duration;

pub use canopy_bench::latency::Percentiles;

/// Rows per multi-row INSERT (Canopy) and per transaction (SQLite).
pub const BATCH_ROWS: u64 = 1000;
/// Distinct values of `grp`; the GROUP BY scan returns this many rows.
pub const GROUPS: u64 = 100;
/// Seed of the point-select id generators (client `i` uses `POINT_SEED + i`), so both systems see the same ids.
pub const POINT_SEED: u64 = 0x00C0_FFEE;
/// Timed repetitions of each scan; the best one is reported.
pub const SCAN_RUNS: usize = 3;

/// One row of `t (id, k, grp, v, pad)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub k: i32,
    pub grp: i32,
    pub v: f64,
    pub pad: String,
}

/// The row stored under `id`: every column derives from a hash of the id, so both systems hold the same data
/// without sharing a generator's state, and groups differ in size (the per-group counts check something).
pub fn row(id: u64) -> Row {
    let h = splitmix64(id);
    Row {
        id: i64::try_from(id).expect("ids are at most --rows, far below i64::MAX"),
        k: i32::try_from(h % 1_000_000).expect("below one million"),
        grp: i32::try_from((h >> 20) % GROUPS).expect("below GROUPS"),
        // Two decimals: Rust prints the shortest text that parses back to the same f64, so the SQL literal the
        // Canopy loader writes and the f64 the SQLite loader binds are the same number.
        v: ((h >> 40) % 100_000) as f64 / 100.0,
        pad: format!("pad-{h:016x}-{:016x}-{id:010}", !h),
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Ids `1..=rows` cut into `clients` contiguous ranges of nearly equal size (empty ranges dropped).
pub fn id_ranges(rows: u64, clients: u32) -> Vec<RangeInclusive<u64>> {
    let clients = u64::from(clients.max(1));
    let per_client = rows.div_ceil(clients);
    (0..clients).map(|i| (i * per_client + 1)..=((i + 1) * per_client).min(rows)).filter(|r| !r.is_empty()).collect()
}

/// `range` cut into batches of at most [`BATCH_ROWS`] ids.
pub fn batches(range: RangeInclusive<u64>) -> impl Iterator<Item = RangeInclusive<u64>> {
    let (start, end) = (*range.start(), *range.end());
    (start..=end).step_by(BATCH_ROWS as usize).map(move |first| first..=(first + BATCH_ROWS - 1).min(end))
}

/// The bulk-insert workload's figure.
#[derive(Debug, Clone)]
pub struct Load {
    pub rows: u64,
    pub elapsed: Duration,
}

impl Load {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// The point-select workload's figures.
#[derive(Debug, Clone)]
pub struct Point {
    pub queries: u64,
    pub elapsed: Duration,
    pub latency: Percentiles,
    /// Queries that found no row although the id exists: a correctness problem, reported loudly.
    pub missing: u64,
}

impl Point {
    pub fn queries_per_s(&self) -> f64 {
        self.queries as f64 / self.elapsed.as_secs_f64()
    }

    /// Merges the per-client latency samples (each client's `Vec` of single-query durations).
    pub fn from_clients(per_client: Vec<(Vec<Duration>, u64)>, elapsed: Duration) -> Point {
        let missing = per_client.iter().map(|(_, m)| m).sum();
        let mut all: Vec<Duration> = per_client.into_iter().flat_map(|(samples, _)| samples).collect();
        let queries = all.len() as u64;
        Point { queries, elapsed, latency: Percentiles::of(&mut all), missing }
    }
}

/// One row of `SELECT grp, COUNT(*), SUM(v), MIN(k), MAX(k) FROM t GROUP BY grp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub grp: i64,
    pub count: i64,
    pub sum_v: f64,
    pub min_k: i64,
    pub max_k: i64,
}

/// The full-scan workload's figures and answers.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Best of [`SCAN_RUNS`] for the GROUP BY query.
    pub group_by: Duration,
    /// Best of [`SCAN_RUNS`] for `SELECT COUNT(*), SUM(v) FROM t`.
    pub total: Duration,
    /// The GROUP BY answer, sorted by `grp`.
    pub groups: Vec<Group>,
    pub count: i64,
    pub sum_v: f64,
}

/// Differences between the two systems' scan answers, as sentences (empty when they agree). Counts, MIN and MAX must
/// be equal; sums of doubles may differ in the last bits because the partitions add in a different order.
pub fn compare_scans(sqlite: &Scan, canopy: &Scan) -> Vec<String> {
    let mut out = Vec::new();
    if sqlite.count != canopy.count {
        out.push(format!("COUNT(*): SQLite {} vs Canopy {}", sqlite.count, canopy.count));
    }
    if !sums_agree(sqlite.sum_v, canopy.sum_v) {
        out.push(format!("SUM(v): SQLite {} vs Canopy {}", sqlite.sum_v, canopy.sum_v));
    }
    if sqlite.groups.len() != canopy.groups.len() {
        out.push(format!("GROUP BY rows: SQLite {} vs Canopy {}", sqlite.groups.len(), canopy.groups.len()));
    }
    for (s, c) in sqlite.groups.iter().zip(&canopy.groups) {
        let same = s.grp == c.grp
            && s.count == c.count
            && s.min_k == c.min_k
            && s.max_k == c.max_k
            && sums_agree(s.sum_v, c.sum_v);
        if !same {
            out.push(format!("group row: SQLite {s:?} vs Canopy {c:?}"));
        }
    }
    out
}

fn sums_agree(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_cover_every_id_once() {
        let ranges = id_ranges(10_001, 8);
        let ids: Vec<u64> = ranges.into_iter().flatten().collect();
        assert_eq!(ids, (1..=10_001).collect::<Vec<_>>());
        assert_eq!(id_ranges(3, 8).len(), 3);
    }

    #[test]
    fn batches_are_at_most_batch_rows() {
        let b: Vec<_> = batches(1..=2500).collect();
        assert_eq!(b, vec![1..=1000, 1001..=2000, 2001..=2500]);
    }

    #[test]
    fn rows_fit_the_schema() {
        for id in [1, 2, 999_999, 10_000_000] {
            let r = row(id);
            assert!(r.pad.len() <= 60, "{}", r.pad);
            assert!((0..GROUPS as i32).contains(&r.grp));
            assert_eq!(r.v.to_string().parse::<f64>().expect("prints a number"), r.v);
        }
    }
}
