//! Insert throughput with and without the change log, printed as rows/s. "Without" is the write path as it was
//! before the log: the same transaction per statement and a position counter update, but no session and no log row.
//! Run: `cargo run -p canopy-storage --release --example log_throughput`

use std::path::Path;
use std::time::Instant;

use canopy_storage::engine;
use rusqlite::Connection;

const SCHEMA: &str = "CREATE TABLE t (id INTEGER NOT NULL, v TEXT, n REAL, PRIMARY KEY (id))";

/// One statement inserting `rows` rows with ids from `first`.
fn insert(first: u64, rows: u64) -> String {
    let values: Vec<String> = (first..first + rows).map(|i| format!("({i}, 'value {i}', {i}.5)")).collect();
    format!("INSERT INTO t VALUES {}", values.join(", "))
}

/// The pre-log write path: BEGIN IMMEDIATE, the statement, the counter, COMMIT.
fn write_without_log(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    conn.prepare_cached(sql)?.execute([])?;
    conn.execute("UPDATE _canopy_log_position SET log_index = log_index + 1, commits = commits + 1", [])?;
    conn.execute_batch("COMMIT")
}

fn run(dir: &Path, name: &str, with_log: bool, statements: u64, rows_per_statement: u64) -> anyhow::Result<f64> {
    let path = dir.join(format!("{name}.sqlite"));
    let conn = engine::open(&path)?;
    conn.execute_batch(SCHEMA)?;
    let texts: Vec<String> = (0..statements).map(|s| insert(s * rows_per_statement, rows_per_statement)).collect();
    let start = Instant::now();
    for sql in &texts {
        if with_log {
            engine::execute(&conn, sql, &[])?;
        } else {
            write_without_log(&conn, sql)?;
        }
    }
    let rows_per_s = (statements * rows_per_statement) as f64 / start.elapsed().as_secs_f64();
    let (_, index, _) = engine::log_position(&conn)?;
    let log_bytes: i64 =
        conn.query_row("SELECT coalesce(sum(length(payload)), 0) FROM _canopy_log", [], |r| r.get(0))?;
    println!(
        "{name:<28} {:>9} rows/s  ({statements} statements x {rows_per_statement} rows, log index {index}, log {} KiB)",
        rows_per_s.round(),
        log_bytes / 1024
    );
    Ok(rows_per_s)
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("canopy-log-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!("synchronous=FULL, WAL, one transaction per statement; temp dir {}", dir.display());
    for (label, statements, rows) in [("1000-row", 200, 1000), ("single-row", 2000, 1)] {
        let without = run(&dir, &format!("{label} without log"), false, statements, rows)?;
        let with = run(&dir, &format!("{label} with log"), true, statements, rows)?;
        println!("{label}: with log = {:.0}% of without\n", 100.0 * with / without);
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
