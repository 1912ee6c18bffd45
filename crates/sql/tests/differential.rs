//! Differential test of the distributed planner: an in-process cluster of P SQLite partitions (P in 1, 3, 8)
//! executes plans exactly as a server would, and every answer is compared with one oracle SQLite holding all rows.
//! History per seed: load rows through INSERT plans, then batches of random queries, each batch followed by random
//! writes (UPDATE/DELETE/REPLACE/INSERT IGNORE/ON DUPLICATE KEY UPDATE) and more inserts. Properties: every query's
//! answer equals the oracle's (column names and values; row order too when the query orders totally), every table
//! holds the same rows as the oracle after every batch, and every row sits in the partition `partition_of` names.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/querygen.rs"]
mod querygen;

use canopy_sql::{SqlError, Value};
use cluster::{Cluster, Outcome, query, sorted};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

const SEEDS: &[u64] = &[1, 2, 3, 0xC0FFEE];
const PARTITION_COUNTS: &[u32] = &[1, 3, 8];
const BATCHES: usize = 6;
const QUERIES_PER_BATCH: usize = 100;

/// Reals are compared with a relative tolerance of 1e-9: partitions sum in a different order than the oracle, and
/// floating-point addition is not associative. Everything else (including the storage class) must match exactly.
fn values_match(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Real(x), Value::Real(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

fn rows_match(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(u, v)| values_match(u, v)))
}

/// The statement as the oracle runs it: the planner's MySQL-to-SQLite translation without distribution (MySQL's
/// `/`, `DIV`, INTERVAL arithmetic, ...; the oracle has the same functions), which is also what partitions receive,
/// so that result column names (SQLite names expressions after their text) are comparable.
fn oracle_sql(sql: &str) -> String {
    let stmts = Parser::parse_sql(&MySqlDialect {}, sql).expect("generated SQL parses");
    canopy_sql::plan::translate(&stmts[0], Some(cluster::DB), cluster::STATEMENT_TIME_MICROS)
}

struct Run {
    seed: u64,
    partitions: u32,
    cluster: Cluster,
    compared: u64,
    both_failed: u64,
    unsupported_writes: u64,
}

impl Run {
    fn fail(&self, sql: &str, detail: String) -> ! {
        panic!(
            "seed {} partitions {}: {sql}\n  plan: {:?}\n{detail}",
            self.seed,
            self.partitions,
            self.cluster_plan(sql)
        )
    }

    fn cluster_plan(&self, sql: &str) -> String {
        let mut c = Cluster::new(self.partitions, &querygen::schema());
        format!("{:?}", c.plan(sql))
    }

    fn check_query(&mut self, q: &querygen::GeneratedQuery) {
        let expected = query(&self.cluster.oracle, &oracle_sql(&q.sql));
        let got = self.cluster.execute(&q.sql);
        match (expected, got) {
            (Ok(expected), Ok((_, Outcome::Rows(got)))) => {
                let names = |r: &canopy_sql::ResultSet| r.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
                if names(&expected) != names(&got) {
                    self.fail(&q.sql, format!("  columns: expected {:?}, got {:?}", names(&expected), names(&got)));
                }
                let (e, g) =
                    if q.ordered { (expected.rows, got.rows) } else { (sorted(expected.rows), sorted(got.rows)) };
                if !rows_match(&e, &g) {
                    self.fail(&q.sql, format!("  expected {e:?}\n  got      {g:?}"));
                }
                self.compared += 1;
            }
            (Err(_), Err(_)) => self.both_failed += 1,
            (Ok(_), Err(e)) => self.fail(&q.sql, format!("  oracle answered, cluster failed: {e}")),
            (Err(e), Ok(_)) => self.fail(&q.sql, format!("  cluster answered, oracle failed: {e}")),
            (Ok(_), Ok((kind, other))) => self.fail(&q.sql, format!("  a {kind} plan returned {other:?}")),
        }
    }

    fn apply_write(&mut self, sql: &str) {
        match self.cluster.execute(sql) {
            Ok((kind, Outcome::Affected(n))) => {
                if kind == "write" {
                    let expected = self.cluster.oracle.execute(&oracle_sql(sql), []);
                    match expected {
                        Ok(m) if m as u64 == n => {}
                        other => self.fail(sql, format!("  affected {n}, oracle {other:?}")),
                    }
                }
            }
            Ok((kind, Outcome::Rows(_))) => self.fail(sql, format!("  a write planned as {kind}")),
            Err(SqlError::Unsupported(_)) => self.unsupported_writes += 1,
            Err(e) => {
                if self.cluster.oracle.execute(&oracle_sql(sql), []).is_ok() {
                    self.fail(sql, format!("  cluster failed ({e}), oracle succeeded"));
                }
            }
        }
    }

    fn check_tables(&self) {
        self.cluster.check_placement();
        for table in self.cluster.catalog.tables.keys() {
            let expected =
                sorted(query(&self.cluster.oracle, &format!("SELECT * FROM test.\"{table}\"")).unwrap().rows);
            let got = sorted(self.cluster.contents(table));
            assert!(
                rows_match(&expected, &got),
                "seed {} partitions {}: table {table} differs\n  expected {expected:?}\n  got      {got:?}",
                self.seed,
                self.partitions
            );
        }
    }
}

fn run(seed: u64, partitions: u32) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = Cluster::new(partitions, &querygen::schema());
    let mut r = Run { seed, partitions, cluster, compared: 0, both_failed: 0, unsupported_writes: 0 };
    for sql in querygen::rows(&mut rng, 48, 1) {
        r.apply_write(&sql);
    }
    r.check_tables();
    for batch in 0..BATCHES {
        for _ in 0..QUERIES_PER_BATCH {
            let q = querygen::query(&mut rng);
            r.check_query(&q);
        }
        for _ in 0..8 {
            let sql = querygen::write(&mut rng);
            r.apply_write(&sql);
        }
        for sql in querygen::rows(&mut rng, 6, 200 + 20 * batch as i64) {
            r.apply_write(&sql);
        }
        r.check_tables();
    }
    r
}

#[test]
fn distributed_answers_equal_single_sqlite() {
    let mut total = 0;
    for &seed in SEEDS {
        for &partitions in PARTITION_COUNTS {
            let r = run(seed, partitions);
            eprintln!(
                "seed {seed} partitions {partitions}: {} compared, {} failed on both, {} writes unsupported, plans {:?}",
                r.compared, r.both_failed, r.unsupported_writes, r.cluster.plan_counts
            );
            total += r.compared;
        }
    }
    assert!(total > 6000, "too few queries compared: {total}");
}
