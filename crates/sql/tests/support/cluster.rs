//! An in-process cluster for differential tests: P in-memory SQLite partitions (each with its own copy of the
//! reference tables) and one oracle SQLite holding every row under schema `test`. Statements are planned with
//! `canopy_sql::plan::plan` and the plans executed exactly as a server would. Owns the test catalog (built from
//! querygen's MySQL-flavoured DDL by a small parser that only understands that schema); does not compare results.

#![allow(dead_code)]

use std::collections::BTreeMap;

use canopy_sql::merge::{finish_gather, finish_scatter};
use canopy_sql::plan::{GatherSource, Plan, PlanContext, plan};
use canopy_sql::{Affinity, Catalog, ColumnDef, ResultSet, SqlError, TableDef, TableKind, Value};
use rusqlite::Connection;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

pub const DB: &str = "test";

/// Table definitions, partition count and the AUTO_INCREMENT / spread counters a server would keep.
pub struct TestCatalog {
    pub tables: BTreeMap<String, TableDef>,
    pub partitions: u32,
    next_auto_increment: BTreeMap<String, i64>,
    next_spread: u32,
}

impl Catalog for TestCatalog {
    fn table(&self, db: &str, table: &str) -> Option<&TableDef> {
        if db != DB {
            return None;
        }
        self.tables.get(&table.to_lowercase())
    }
    fn partition_count(&self, db: &str) -> Option<u32> {
        (db == DB).then_some(self.partitions)
    }
}

/// The time of every statement in these tests (2024-03-05 14:07:09.123456 UTC): planner and oracle agree on NOW().
pub const STATEMENT_TIME_MICROS: i64 = 1_709_647_629_123_456;

/// An in-memory SQLite with MySQL's functions, as every Canopy engine has them.
pub fn engine() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    canopy_sql::functions::register(&conn, host()).unwrap();
    conn
}

pub fn host() -> std::sync::Arc<dyn canopy_sql::functions::Host> {
    canopy_sql::functions::SeededHost::shared(STATEMENT_TIME_MICROS, 7)
}

impl PlanContext for TestCatalog {
    fn statement_time_micros(&self) -> i64 {
        STATEMENT_TIME_MICROS
    }
    fn eval_constant(&mut self, expr_sql: &str) -> Result<Value, SqlError> {
        let conn = engine();
        let v: rusqlite::types::Value = conn.query_row(&format!("SELECT {expr_sql}"), [], |r| r.get(0))?;
        Ok(Value::from(v))
    }
    fn allocate_auto_increment(&mut self, _db: &str, table: &str, count: u64) -> Result<i64, SqlError> {
        let next = self.next_auto_increment.entry(table.to_lowercase()).or_insert(100_000);
        let first = *next;
        *next += count as i64;
        Ok(first)
    }
    fn spread_ordinal(&mut self, partitions: u32) -> u32 {
        self.next_spread = self.next_spread.wrapping_add(1);
        self.next_spread % partitions
    }
}

/// Parses querygen's CREATE TABLE statements: `CREATE [REFERENCE] TABLE name (col TYPE [NOT NULL]
/// [AUTO_INCREMENT], ..., PRIMARY KEY (..), SHARD KEY (..))`. The default shard key is the primary key.
pub fn table_def(ddl: &str) -> TableDef {
    let reference = ddl.contains("REFERENCE TABLE");
    let after = ddl.split("TABLE ").nth(1).expect("CREATE TABLE");
    let name = after.split_whitespace().next().expect("table name").to_string();
    let body = &after[after.find('(').expect("(") + 1..after.rfind(')').expect(")")];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(body[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(body[start..].trim());
    let list = |p: &str| -> Vec<String> {
        p[p.find('(').unwrap() + 1..p.rfind(')').unwrap()].split(',').map(|s| s.trim().to_string()).collect()
    };
    let (mut columns, mut primary_key, mut shard_key) = (Vec::new(), Vec::new(), None);
    for p in parts {
        if p.starts_with("PRIMARY KEY") {
            primary_key = list(p);
        } else if p.starts_with("SHARD KEY") {
            shard_key = Some(list(p));
        } else {
            let mut words = p.split_whitespace();
            let col = words.next().unwrap().to_string();
            let mysql_type = words.next().unwrap().to_string();
            let upper = mysql_type.to_uppercase();
            let decl_type = if upper.contains("INT") {
                "INTEGER"
            } else if upper.contains("DOUBLE") {
                "REAL"
            } else {
                "TEXT"
            };
            columns.push(ColumnDef {
                name: col,
                decl_type: decl_type.to_string(),
                mysql_type,
                affinity: Affinity::of_decl_type(decl_type),
                nullable: !p.contains("NOT NULL"),
                auto_increment: p.contains("AUTO_INCREMENT"),
                default: None,
            });
        }
    }
    let shard_key = if reference { Vec::new() } else { shard_key.unwrap_or_else(|| primary_key.clone()) };
    let mut defs: Vec<String> = columns
        .iter()
        .map(|c| format!("\"{}\" {}{}", c.name, c.decl_type, if c.nullable { "" } else { " NOT NULL" }))
        .collect();
    if !primary_key.is_empty() {
        defs.push(format!("PRIMARY KEY ({})", primary_key.join(", ")));
    }
    TableDef {
        create_sql: format!("CREATE TABLE \"{name}\" ({})", defs.join(", ")),
        name,
        kind: if reference { TableKind::Reference } else { TableKind::Distributed },
        columns,
        primary_key,
        shard_key,
        index_sql: Vec::new(),
    }
}

/// What executing one statement produced.
#[derive(Debug)]
pub enum Outcome {
    Rows(ResultSet),
    Affected(u64),
}

pub struct Cluster {
    pub partitions: Vec<Connection>,
    pub oracle: Connection,
    pub catalog: TestCatalog,
    /// How many statements each plan kind handled, for the test's summary.
    pub plan_counts: BTreeMap<&'static str, u64>,
}

impl Cluster {
    pub fn new(partitions: u32, schema: &[String]) -> Cluster {
        let tables: BTreeMap<String, TableDef> =
            schema.iter().map(|ddl| table_def(ddl)).map(|d| (d.name.to_lowercase(), d)).collect();
        let parts: Vec<Connection> = (0..partitions).map(|_| engine()).collect();
        let oracle = engine();
        oracle.execute_batch(&format!("ATTACH DATABASE ':memory:' AS {DB}")).unwrap();
        for def in tables.values() {
            for p in &parts {
                p.execute_batch(&def.create_sql).unwrap();
            }
            let qualified = def.create_sql.replacen("CREATE TABLE ", &format!("CREATE TABLE {DB}."), 1);
            oracle.execute_batch(&qualified).unwrap();
        }
        let catalog = TestCatalog { tables, partitions, next_auto_increment: BTreeMap::new(), next_spread: 0 };
        Cluster { partitions: parts, oracle, catalog, plan_counts: BTreeMap::new() }
    }

    pub fn plan(&mut self, sql: &str) -> Result<Plan, SqlError> {
        let stmts = Parser::parse_sql(&MySqlDialect {}, sql).map_err(|e| SqlError::Parse(e.to_string()))?;
        assert_eq!(stmts.len(), 1, "{sql}");
        plan(&stmts[0], Some(DB), &mut self.catalog)
    }

    /// Plans and executes `sql` on the partitions. For [`Plan::Insert`] the oracle runs the same per-partition
    /// statements (so that allocated AUTO_INCREMENT values agree) and for [`Plan::ReferenceWrite`] the same translated
    /// statement; other plans leave the oracle alone.
    pub fn execute(&mut self, sql: &str) -> Result<(&'static str, Outcome), SqlError> {
        let plan = self.plan(sql)?;
        let kind = match &plan {
            Plan::Single { .. } => "single",
            Plan::Scatter { .. } => "scatter",
            Plan::Gather(_) => "gather",
            Plan::Reference { .. } => "reference",
            Plan::Insert { .. } => "insert",
            Plan::Write { .. } => "write",
            Plan::ReferenceWrite { .. } => "reference_write",
        };
        *self.plan_counts.entry(kind).or_default() += 1;
        Ok((kind, self.run(&plan)?))
    }

    pub fn run(&mut self, plan: &Plan) -> Result<Outcome, SqlError> {
        Ok(match plan {
            Plan::Single { ordinal, sql, .. } => Outcome::Rows(query(&self.partitions[*ordinal as usize], sql)?),
            Plan::Scatter { ordinals, partial_sql, merge, .. } => {
                let partials = ordinals
                    .iter()
                    .map(|o| query(&self.partitions[*o as usize], partial_sql))
                    .collect::<Result<Vec<_>, _>>()?;
                Outcome::Rows(finish_scatter(merge, partials, &host())?)
            }
            Plan::Gather(spec) => {
                let mut fetched = Vec::new();
                for source in &spec.sources {
                    fetched.push(match source {
                        GatherSource::Distributed { fetch_sql, .. } => {
                            let mut all = ResultSet::default();
                            for p in &self.partitions {
                                let part = query(p, fetch_sql)?;
                                all.columns = part.columns;
                                all.rows.extend(part.rows);
                            }
                            all
                        }
                        GatherSource::Reference { fetch_sql, .. } => query(&self.partitions[0], fetch_sql)?,
                        GatherSource::Virtual { .. } => panic!("no virtual tables in this test"),
                    });
                }
                Outcome::Rows(finish_gather(spec, fetched, &host())?)
            }
            Plan::Reference { sql, .. } => Outcome::Rows(query(&self.partitions[0], sql)?),
            Plan::Insert { per_partition, rows, .. } => {
                for (ordinal, sql, params) in per_partition {
                    execute_with(&self.partitions[*ordinal as usize], sql, params)?;
                    execute_with(&self.oracle, sql, params)?;
                }
                Outcome::Affected(*rows)
            }
            Plan::Write { ordinals, sql, .. } => {
                let mut affected = 0;
                for o in ordinals {
                    affected += self.partitions[*o as usize].execute(sql, [])? as u64;
                }
                Outcome::Affected(affected)
            }
            Plan::ReferenceWrite { sql, .. } => {
                let mut affected = 0;
                for p in &self.partitions {
                    affected = p.execute(sql, [])? as u64;
                }
                self.oracle.execute(sql, [])?;
                Outcome::Affected(affected)
            }
        })
    }

    /// Every row of `table` as the cluster holds it (all partitions for a distributed table; for a reference
    /// table, every copy must agree and one is returned).
    pub fn contents(&self, table: &str) -> Vec<Vec<Value>> {
        let def = &self.catalog.tables[table];
        let sql = format!("SELECT * FROM \"{}\"", def.name);
        match def.kind {
            TableKind::Distributed => self.partitions.iter().flat_map(|p| query(p, &sql).unwrap().rows).collect(),
            TableKind::Reference => {
                let first = sorted(query(&self.partitions[0], &sql).unwrap().rows);
                for p in &self.partitions[1..] {
                    assert_eq!(sorted(query(p, &sql).unwrap().rows), first, "reference copies of {table} differ");
                }
                first
            }
        }
    }

    /// Checks that every row of every distributed table sits in the partition `partition_of` names.
    pub fn check_placement(&self) {
        for def in self.catalog.tables.values() {
            if def.kind != TableKind::Distributed || def.shard_key.is_empty() {
                continue;
            }
            let keys: Vec<String> = def.shard_key.iter().map(|k| format!("\"{k}\"")).collect();
            let sql = format!("SELECT {} FROM \"{}\"", keys.join(", "), def.name);
            for (ordinal, p) in self.partitions.iter().enumerate() {
                for key in query(p, &sql).unwrap().rows {
                    let expected = canopy_sql::shard::partition_of(&key, self.catalog.partitions);
                    assert_eq!(expected as usize, ordinal, "row {key:?} of {} is in the wrong partition", def.name);
                }
            }
        }
    }
}

/// Runs a query and returns its rows with column names and declared types.
pub fn query(conn: &Connection, sql: &str) -> Result<ResultSet, SqlError> {
    Ok(canopy_sql::value::query(conn, sql)?)
}

/// A total order on values for sorting result rows: SQLite's storage class order, then value; an INTEGER sorts
/// before an equal REAL so that sorting is canonical (1 and 1.0 are different answers).
pub fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn class(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 1,
            Value::Text(_) => 2,
            Value::Blob(_) => 3,
        }
    }
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Integer(x), Value::Real(y)) => {
            (*x as f64).partial_cmp(y).unwrap_or(Ordering::Equal).then(Ordering::Less)
        }
        (Value::Real(x), Value::Integer(y)) => {
            x.partial_cmp(&(*y as f64)).unwrap_or(Ordering::Equal).then(Ordering::Greater)
        }
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => class(a).cmp(&class(b)),
    }
}

pub fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by(|a, b| {
        a.iter().zip(b.iter()).map(|(x, y)| compare_values(x, y)).find(|o| o.is_ne()).unwrap_or(a.len().cmp(&b.len()))
    });
    rows
}

/// Runs one statement with `params` bound to its numbered placeholders (as a leaf does).
fn execute_with(conn: &Connection, sql: &str, params: &[Value]) -> Result<usize, rusqlite::Error> {
    let mut stmt = conn.prepare(sql)?;
    canopy_sql::value::bind_params(&mut stmt, params)?;
    stmt.raw_execute()
}
