//! The three workloads against Canopy, through the master aggregator over the MySQL protocol: bulk insert with
//! multi-row INSERTs from concurrent connections, prepared point selects with latency samples, and the two
//! full-scan aggregates. It measures and returns figures; it starts no processes and prints nothing but progress.

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

use crate::data::{self, Group, Load, Point, SCAN_RUNS, Scan};

/// Partitions of the benchmark database (SingleStore's usual: a few per leaf core).
pub const PARTITIONS: u32 = 16;
const CREATE_TABLE: &str = "CREATE TABLE bench.t (id BIGINT PRIMARY KEY, k INT, grp INT, v DOUBLE, pad VARCHAR(60))";
const POINT_SELECT: &str = "SELECT pad FROM bench.t WHERE id = ?";
const GROUP_BY: &str = "SELECT grp, COUNT(*), SUM(v), MIN(k), MAX(k) FROM bench.t GROUP BY grp";
const TOTAL: &str = "SELECT COUNT(*), SUM(v) FROM bench.t";

/// Creates `bench` (with [`PARTITIONS`] partitions) and `bench.t`.
pub async fn create_schema(opts: &Opts) -> anyhow::Result<()> {
    create_schema_with(opts, PARTITIONS).await
}

/// Creates `bench` with `partitions` partitions and `bench.t`.
pub async fn create_schema_with(opts: &Opts, partitions: u32) -> anyhow::Result<()> {
    let mut conn = connect(opts).await?;
    conn.query_drop(format!("CREATE DATABASE bench PARTITIONS {partitions}"))
        .await
        .context("CREATE DATABASE failed")?;
    conn.query_drop(CREATE_TABLE).await.context("CREATE TABLE failed")?;
    conn.disconnect().await.context("disconnect failed")?;
    Ok(())
}

/// Loads ids `1..=rows`, each of `clients` connections inserting its own contiguous range in multi-row INSERTs of
/// [`data::BATCH_ROWS`] rows. The clock runs from the first INSERT to the last acknowledgement.
pub async fn load(opts: &Opts, rows: u64, clients: u32) -> anyhow::Result<Load> {
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(connect(opts).await?);
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (conn, range) in conns.into_iter().zip(data::id_ranges(rows, clients)) {
        tasks.spawn(load_range(conn, range));
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a loading client panicked")??;
    }
    Ok(Load { rows, elapsed: started.elapsed() })
}

async fn load_range(mut conn: Conn, range: RangeInclusive<u64>) -> anyhow::Result<()> {
    let mut sql = String::new();
    for batch in data::batches(range) {
        insert_sql(&mut sql, batch.clone());
        conn.query_drop(&sql).await.with_context(|| format!("INSERT of ids {batch:?} failed"))?;
    }
    conn.disconnect().await.context("disconnect failed")?;
    Ok(())
}

/// `INSERT INTO bench.t VALUES (...),(...)` for the rows of `ids`, written into `sql` (reused across batches).
pub(crate) fn insert_sql(sql: &mut String, ids: RangeInclusive<u64>) {
    sql.clear();
    sql.push_str("INSERT INTO bench.t (id, k, grp, v, pad) VALUES ");
    for (i, id) in ids.enumerate() {
        let r = data::row(id);
        let sep = if i == 0 { "" } else { "," };
        // The pad is hex digits and dashes only, so it needs no escaping.
        write!(sql, "{sep}({}, {}, {}, {}, '{}')", r.id, r.k, r.grp, r.v, r.pad)
            .expect("writing to a String cannot fail");
    }
}

/// `clients` connections, each preparing [`POINT_SELECT`] once and then running it with uniformly random ids in
/// `1..=rows` for `duration`, recording every query's latency.
pub async fn point_select(opts: &Opts, rows: u64, clients: u32, duration: Duration) -> anyhow::Result<Point> {
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(connect(opts).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for (i, conn) in conns.into_iter().enumerate() {
        tasks.spawn(point_client(conn, data::POINT_SEED + i as u64, rows, deadline));
    }
    let mut per_client = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        per_client.push(joined.context("a point-select client panicked")??);
    }
    Ok(Point::from_clients(per_client, started.elapsed()))
}

/// One client's latency samples and count of ids not found.
async fn point_client(mut conn: Conn, seed: u64, rows: u64, deadline: Instant) -> anyhow::Result<(Vec<Duration>, u64)> {
    let stmt = conn.prep(POINT_SELECT).await.context("PREPARE of the point select failed")?;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut samples, mut missing) = (Vec::new(), 0);
    while Instant::now() < deadline {
        let id = rng.random_range(1..=rows);
        let t = Instant::now();
        let pad: Option<String> =
            conn.exec_first(&stmt, (id,)).await.with_context(|| format!("point select of {id}"))?;
        samples.push(t.elapsed());
        missing += u64::from(pad.is_none());
    }
    conn.close(stmt).await.context("closing the prepared statement failed")?;
    conn.disconnect().await.context("disconnect failed")?;
    Ok((samples, missing))
}

/// Each full-scan query [`SCAN_RUNS`] times on one connection; the best times and the (last) answers.
pub async fn scan(opts: &Opts) -> anyhow::Result<Scan> {
    let mut conn = connect(opts).await?;
    let (mut group_by, mut total) = (Duration::MAX, Duration::MAX);
    let mut groups = Vec::new();
    let mut totals = (0, 0.0);
    for _ in 0..SCAN_RUNS {
        let t = Instant::now();
        let rows: Vec<mysql_async::Row> = conn.query(GROUP_BY).await.context("GROUP BY scan failed")?;
        group_by = group_by.min(t.elapsed());
        groups = rows.into_iter().map(group_of).collect::<anyhow::Result<Vec<Group>>>()?;

        let t = Instant::now();
        let rows: Vec<mysql_async::Row> = conn.query(TOTAL).await.context("COUNT/SUM scan failed")?;
        total = total.min(t.elapsed());
        let row = rows.into_iter().next().context("COUNT/SUM scan returned no row")?;
        totals = (int(&row, 0)?, float(&row, 1)?);
    }
    conn.disconnect().await.context("disconnect failed")?;
    groups.sort_by_key(|g| g.grp);
    Ok(Scan { group_by, total, groups, count: totals.0, sum_v: totals.1 })
}

fn group_of(row: mysql_async::Row) -> anyhow::Result<Group> {
    Ok(Group {
        grp: int(&row, 0)?,
        count: int(&row, 1)?,
        sum_v: float(&row, 2)?,
        min_k: int(&row, 3)?,
        max_k: int(&row, 4)?,
    })
}

/// Column `i` as an integer, whichever way the server encoded it (text protocol: decimal text).
pub(crate) fn int(row: &mysql_async::Row, i: usize) -> anyhow::Result<i64> {
    match row.as_ref(i) {
        Some(Value::Int(v)) => Ok(*v),
        Some(Value::UInt(v)) => i64::try_from(*v).context("integer out of range"),
        Some(Value::Bytes(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("column {i} is not an integer: {b:?}")),
        other => anyhow::bail!("column {i} is not an integer: {other:?}"),
    }
}

/// Column `i` as a double, whichever way the server encoded it.
fn float(row: &mysql_async::Row, i: usize) -> anyhow::Result<f64> {
    match row.as_ref(i) {
        Some(Value::Double(v)) => Ok(*v),
        Some(Value::Float(v)) => Ok(f64::from(*v)),
        Some(Value::Int(v)) => Ok(*v as f64),
        Some(Value::Bytes(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("column {i} is not a number: {b:?}")),
        other => anyhow::bail!("column {i} is not a number: {other:?}"),
    }
}

pub(crate) async fn connect(opts: &Opts) -> anyhow::Result<Conn> {
    Conn::new(opts.clone()).await.context("cannot connect to the master aggregator")
}
