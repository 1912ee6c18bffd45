//! The baseline: the same three workloads against ONE plain SQLite file with the durability Canopy's leaves use
//! (WAL, `synchronous=FULL`) and the table definition a leaf gets for `bench.t`. Loading is one connection with
//! [`data::BATCH_ROWS`]-row transactions (SQLite has one writer anyway); point selects run from one thread per
//! client, each with its own connection. Blocking code: call it from a blocking thread.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, params};

use crate::data::{self, Group, Load, Point, SCAN_RUNS, Scan};

/// What `canopy-sql` generates on a leaf for `CREATE TABLE bench.t (id BIGINT PRIMARY KEY, k INT, grp INT, v
/// DOUBLE, pad VARCHAR(60))`: every integer type becomes `INTEGER`, so `id` is the rowid alias, as on the leaves.
const CREATE_TABLE: &str =
    "CREATE TABLE t (id INTEGER NOT NULL, k INTEGER, grp INTEGER, v REAL, pad TEXT, PRIMARY KEY (id))";
const INSERT: &str = "INSERT INTO t (id, k, grp, v, pad) VALUES (?1, ?2, ?3, ?4, ?5)";
const POINT_SELECT: &str = "SELECT pad FROM t WHERE id = ?1";
const GROUP_BY: &str = "SELECT grp, COUNT(*), SUM(v), MIN(k), MAX(k) FROM t GROUP BY grp";
const TOTAL: &str = "SELECT COUNT(*), SUM(v) FROM t";

fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL").context("cannot switch to WAL")?;
    conn.pragma_update(None, "synchronous", "FULL").context("cannot set synchronous=FULL")?;
    Ok(conn)
}

/// Creates the table in a new file at `path` and loads ids `1..=rows` in transactions of [`data::BATCH_ROWS`] rows
/// (one prepared single-row INSERT executed per row), one connection. The clock covers only the inserts.
pub fn load(path: &Path, rows: u64) -> anyhow::Result<Load> {
    let mut conn = open(path)?;
    conn.execute_batch(CREATE_TABLE).context("CREATE TABLE failed")?;
    let started = Instant::now();
    for batch in data::batches(1..=rows) {
        insert_batch(&mut conn, batch.clone()).with_context(|| format!("INSERT of ids {batch:?} failed"))?;
    }
    Ok(Load { rows, elapsed: started.elapsed() })
}

fn insert_batch(conn: &mut Connection, ids: RangeInclusive<u64>) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for id in ids {
            let r = data::row(id);
            insert.execute(params![r.id, r.k, r.grp, r.v, r.pad])?;
        }
    }
    tx.commit()
}

/// `clients` threads, each with its own connection, running the prepared point select with the same random ids as
/// the Canopy run for `duration`.
pub fn point_select(path: &Path, rows: u64, clients: u32, duration: Duration) -> anyhow::Result<Point> {
    let conns = (0..clients).map(|_| open(path)).collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let deadline = started + duration;
    let per_client = std::thread::scope(|scope| {
        let threads: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, conn)| scope.spawn(move || point_client(&conn, data::POINT_SEED + i as u64, rows, deadline)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().map_err(|_| anyhow::anyhow!("a point-select thread panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    Ok(Point::from_clients(per_client, started.elapsed()))
}

fn point_client(conn: &Connection, seed: u64, rows: u64, deadline: Instant) -> anyhow::Result<(Vec<Duration>, u64)> {
    let mut stmt = conn.prepare(POINT_SELECT).context("cannot prepare the point select")?;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut samples, mut missing) = (Vec::new(), 0);
    while Instant::now() < deadline {
        let id = rng.random_range(1..=rows) as i64;
        let t = Instant::now();
        let mut found = stmt.query([id]).with_context(|| format!("point select of {id}"))?;
        let pad: Option<String> = match found.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        };
        samples.push(t.elapsed());
        missing += u64::from(pad.is_none());
    }
    Ok((samples, missing))
}

/// Each full-scan query [`SCAN_RUNS`] times on one connection; the best times and the answers.
pub fn scan(path: &Path) -> anyhow::Result<Scan> {
    let conn = open(path)?;
    let (mut group_by, mut total) = (Duration::MAX, Duration::MAX);
    let mut groups = Vec::new();
    let mut totals = (0, 0.0);
    for _ in 0..SCAN_RUNS {
        let t = Instant::now();
        let mut stmt = conn.prepare(GROUP_BY)?;
        groups = stmt
            .query_map([], |r| {
                Ok(Group { grp: r.get(0)?, count: r.get(1)?, sum_v: r.get(2)?, min_k: r.get(3)?, max_k: r.get(4)? })
            })?
            .collect::<rusqlite::Result<Vec<Group>>>()
            .context("GROUP BY scan failed")?;
        group_by = group_by.min(t.elapsed());

        let t = Instant::now();
        totals = conn.query_row(TOTAL, [], |r| Ok((r.get(0)?, r.get(1)?))).context("COUNT/SUM scan failed")?;
        total = total.min(t.elapsed());
    }
    groups.sort_by_key(|g| g.grp);
    Ok(Scan { group_by, total, groups, count: totals.0, sum_v: totals.1 })
}
