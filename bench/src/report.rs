//! The printed result: machine facts, the command line, and one Markdown table of SQLite against Canopy, ready to
//! paste into a note. It formats figures; it measures nothing and judges nothing except the scan cross-check,
//! which it prints loudly when the two systems disagree.

use std::time::Duration;

use crate::data::{self, Load, Point, Scan};
pub use canopy_bench::facts::Facts;

/// What one system produced; `point` and `scan` are absent when `--only` skipped them.
pub struct Figures {
    pub load: Load,
    pub point: Option<Point>,
    pub scan: Option<Scan>,
}

/// The run's settings as the report states them.
pub struct Setup {
    pub rows: u64,
    pub clients: u32,
    pub duration_s: u64,
    pub leaves: u16,
    pub partitions: u32,
    pub cluster: String,
}

/// Prints everything to stdout.
pub fn print(facts: &Facts, setup: &Setup, sqlite: &Figures, canopy: &Figures) {
    println!();
    println!("## canopy-bench, {}", facts.date_utc);
    println!();
    println!("{}", facts.markdown());
    println!(
        "- Canopy: 1 master aggregator + {} leaves on this machine ({}), database with {} partitions",
        setup.leaves, setup.cluster, setup.partitions
    );
    println!("- SQLite: one file, WAL, synchronous=FULL, the table definition a leaf gets");
    println!("- {} rows, {} clients, point selects for {} s", setup.rows, setup.clients, setup.duration_s);
    println!();
    println!("| workload | SQLite | Canopy | Canopy speed vs SQLite |");
    println!("|---|---|---|---|");
    row_throughput("bulk insert (rows/s)", sqlite.load.rows_per_s(), canopy.load.rows_per_s());
    if let (Some(s), Some(c)) = (&sqlite.point, &canopy.point) {
        row_throughput("point select (queries/s)", s.queries_per_s(), c.queries_per_s());
        row_time("point select p50 (µs)", s.latency.p50, c.latency.p50, 1e6);
        row_time("point select p95 (µs)", s.latency.p95, c.latency.p95, 1e6);
        row_time("point select p99 (µs)", s.latency.p99, c.latency.p99, 1e6);
    }
    if let (Some(s), Some(c)) = (&sqlite.scan, &canopy.scan) {
        row_time("GROUP BY grp scan, 100 groups (s, best of 3)", s.group_by, c.group_by, 1.0);
        row_time("COUNT(*), SUM(v) scan (s, best of 3)", s.total, c.total, 1.0);
    }
    println!();
    println!("Speed vs SQLite: Canopy's throughput divided by SQLite's, or SQLite's time divided by Canopy's;");
    println!("above 1 means Canopy is faster.");
    println!();
    println!("- bulk insert: SQLite loads with one connection in {}-row transactions", data::BATCH_ROWS);
    println!(
        "  (a prepared one-row INSERT per row); Canopy with {} connections, each its own id range, in {}-row",
        setup.clients,
        data::BATCH_ROWS
    );
    println!("  multi-row INSERTs through the master aggregator.");
    println!(
        "- point select: `SELECT pad FROM t WHERE id = ?`, prepared, random existing ids, {} clients",
        setup.clients
    );
    println!("  (SQLite: one thread and connection each); latency measured in the client, per query.");
    for (name, figures) in [("SQLite", sqlite), ("Canopy", canopy)] {
        if let Some(p) = &figures.point {
            println!("  {name}: {} queries in {:.1} s", p.queries, p.elapsed.as_secs_f64());
            if p.missing > 0 {
                println!("  !!! MISMATCH: {name} found no row for {} of {} existing ids !!!", p.missing, p.queries);
            }
        }
    }
    if let (Some(s), Some(c)) = (&sqlite.scan, &canopy.scan) {
        let mismatches = data::compare_scans(s, c);
        if mismatches.is_empty() {
            println!(
                "- check: both return COUNT(*) = {} and the same {} groups (count, MIN, MAX equal; SUM within 1e-9)",
                c.count,
                c.groups.len()
            );
        } else {
            println!();
            println!("!!! MISMATCH between SQLite and Canopy scan results !!!");
            for m in mismatches.iter().take(20) {
                println!("!!!   {m}");
            }
            if mismatches.len() > 20 {
                println!("!!!   ... and {} more", mismatches.len() - 20);
            }
        }
    }
}

fn row_throughput(name: &str, sqlite: f64, canopy: f64) {
    println!("| {name} | {} | {} | {} |", thousands(sqlite), thousands(canopy), ratio(canopy / sqlite));
}

/// A row of times shown in `unit`s per second (1e6 for µs, 1 for s); faster is a smaller time.
fn row_time(name: &str, sqlite: Duration, canopy: Duration, per_s: f64) {
    let (s, c) = (sqlite.as_secs_f64(), canopy.as_secs_f64());
    let digits = if per_s > 1.0 { 1 } else { 3 };
    println!("| {name} | {:.digits$} | {:.digits$} | {} |", s * per_s, c * per_s, ratio(s / c));
}

fn ratio(r: f64) -> String {
    if !r.is_finite() {
        "n/a".to_string()
    } else if r >= 10.0 {
        format!("{r:.0}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.4}× (1/{:.0})", 1.0 / r)
    }
}

/// `1234567.8` → `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
    }
}
