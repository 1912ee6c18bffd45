//! Plan snapshots: each test plans one statement against a small catalog (database `test`, 4 partitions:
//! `t(id INTEGER PK, a, s TEXT)` sharded by id, `u(k1, k2 TEXT, v)` sharded by (k1, k2), keyless `k(a)`, reference
//! `r(id, name)`) and checks the plan's kind and SQL, rendered on one line.

use std::collections::BTreeMap;

use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::*;
use crate::catalog::{Affinity, ColumnDef, TableKind};
use crate::shard::partition_of;

struct TestContext {
    tables: BTreeMap<String, TableDef>,
    next_auto_increment: i64,
    params: Vec<Value>,
}

fn column(name: &str, decl_type: &str) -> ColumnDef {
    ColumnDef {
        name: name.to_string(),
        decl_type: decl_type.to_string(),
        mysql_type: decl_type.to_string(),
        affinity: Affinity::of_decl_type(decl_type),
        nullable: true,
        auto_increment: false,
        default: None,
    }
}

fn table(name: &str, kind: TableKind, columns: Vec<ColumnDef>, shard_key: &[&str]) -> TableDef {
    let cols: Vec<String> = columns.iter().map(|c| format!("{} {}", c.name, c.decl_type)).collect();
    TableDef {
        name: name.to_string(),
        kind,
        create_sql: format!("CREATE TABLE {name} ({})", cols.join(", ")),
        columns,
        primary_key: Vec::new(),
        shard_key: shard_key.iter().map(|s| s.to_string()).collect(),
        index_sql: Vec::new(),
    }
}

impl TestContext {
    fn new() -> Self {
        let mut id = column("id", "INTEGER");
        id.auto_increment = true;
        let tables = [
            table("t", TableKind::Distributed, vec![id, column("a", "INTEGER"), column("s", "TEXT")], &["id"]),
            table(
                "u",
                TableKind::Distributed,
                vec![column("k1", "INTEGER"), column("k2", "TEXT"), column("v", "REAL")],
                &["k1", "k2"],
            ),
            table("k", TableKind::Distributed, vec![column("a", "INTEGER")], &[]),
            table("r", TableKind::Reference, vec![column("id", "INTEGER"), column("name", "TEXT")], &[]),
        ];
        TestContext {
            tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
            next_auto_increment: 100,
            params: Vec::new(),
        }
    }
}

impl Catalog for TestContext {
    fn table(&self, db: &str, table: &str) -> Option<&TableDef> {
        (db == "test").then(|| self.tables.get(table)).flatten()
    }
    fn partition_count(&self, db: &str) -> Option<u32> {
        (db == "test").then_some(4)
    }
}

impl PlanContext for TestContext {
    fn eval_constant(&mut self, expr_sql: &str) -> Result<Value, SqlError> {
        let conn = rusqlite::Connection::open_in_memory()?;
        let mut stmt = conn.prepare(&format!("SELECT {expr_sql}"))?;
        crate::value::bind_params(&mut stmt, &self.params)?;
        let v: rusqlite::types::Value = stmt.raw_query().next()?.expect("one row").get(0)?;
        Ok(Value::from(v))
    }
    fn allocate_auto_increment(&mut self, _db: &str, _table: &str, count: u64) -> Result<i64, SqlError> {
        let first = self.next_auto_increment;
        self.next_auto_increment += count as i64;
        Ok(first)
    }
    fn spread_ordinal(&mut self, _partitions: u32) -> u32 {
        2
    }
    fn params(&self) -> &[Value] {
        &self.params
    }
    fn statement_time_micros(&self) -> i64 {
        STATEMENT_TIME_MICROS
    }
}

/// 2024-03-05 14:07:09.123456 UTC, the time of every planned statement here.
const STATEMENT_TIME_MICROS: i64 = 1_709_647_629_123_456;

fn render(plan: &Result<Plan, SqlError>) -> String {
    match plan {
        Err(e) => format!("error: {e}"),
        Ok(Plan::Single { ordinal, sql, .. }) => format!("single {ordinal}: {sql}"),
        Ok(Plan::Scatter { ordinals, partial_sql, merge, .. }) => {
            let merge = match merge {
                MergeSpec::Rows { hidden_columns, distinct, order_by, limit, offset } => format!(
                    "rows hidden={hidden_columns} distinct={distinct} order={} limit={limit:?} offset={offset}",
                    order_by.len()
                ),
                MergeSpec::Aggregate { sql, .. } => sql.clone(),
            };
            format!("scatter {ordinals:?}: {partial_sql} | {merge}")
        }
        Ok(Plan::Gather(spec)) => {
            let sources: Vec<String> = spec
                .sources
                .iter()
                .map(|s| match s {
                    GatherSource::Distributed { db, table, .. } => format!("dist {db}.{table}"),
                    GatherSource::Reference { db, table, .. } => format!("ref {db}.{table}"),
                    GatherSource::Virtual { schema, table } => format!("virtual {schema}.{table}"),
                })
                .collect();
            format!("gather [{}]: {}", sources.join(", "), spec.sql)
        }
        Ok(Plan::Reference { db, sql }) => format!("reference {db:?}: {sql}"),
        Ok(Plan::Insert { per_partition, first_auto_increment, rows, .. }) => {
            // Lifted literals are shown in place (`?N` above the statement's own parameters) to keep snapshots
            // readable; `insert_literals_become_parameters` checks the lifting itself.
            let parts: Vec<String> =
                per_partition.iter().map(|(o, sql, params)| format!("{o}: {}", inline_lifted(sql, params))).collect();
            format!("insert rows={rows} ai={first_auto_increment:?} {}", parts.join(" ; "))
        }
        Ok(Plan::Write { ordinals, sql, .. }) => format!("write {ordinals:?}: {sql}"),
        Ok(Plan::ReferenceWrite { sql, .. }) => format!("reference write: {sql}"),
    }
}

fn plan_sql(sql: &str, db: Option<&str>) -> String {
    let stmts = Parser::parse_sql(&MySqlDialect {}, sql).unwrap();
    render(&plan(&stmts[0], db, &mut TestContext::new()))
}

fn check(sql: &str, expected: &str) {
    assert_eq!(plan_sql(sql, Some("test")), expected, "{sql}");
}

fn p(key: &[Value]) -> u32 {
    partition_of(key, 4)
}

#[test]
fn point_lookups_go_to_one_partition() {
    let five = p(&[Value::Integer(5)]);
    check("SELECT * FROM t WHERE id = 5", &format!("single {five}: SELECT * FROM t WHERE id = 5"));
    check(
        "SELECT a FROM test.t WHERE '5' = id AND a > 1",
        &format!("single {five}: SELECT a FROM t WHERE '5' = id AND a > 1"),
    );
    check(
        "SELECT COUNT(*) FROM t AS x WHERE x.id = 5.0",
        &format!("single {five}: SELECT COUNT(*) FROM t AS x WHERE x.id = 5.0"),
    );
    let key = p(&[Value::Integer(3), Value::Text("5".into())]);
    check("SELECT v FROM u WHERE k2 = 5 AND k1 = 3", &format!("single {key}: SELECT v FROM u WHERE k2 = 5 AND k1 = 3"));
}

#[test]
fn partial_keys_and_disjunctions_scatter() {
    check(
        "SELECT v FROM u WHERE k1 = 3",
        "scatter [0, 1, 2, 3]: SELECT v FROM u WHERE k1 = 3 | rows hidden=0 distinct=false order=0 limit=None offset=0",
    );
    check(
        "SELECT * FROM t WHERE id = 5 OR id = 6",
        "scatter [0, 1, 2, 3]: SELECT * FROM t WHERE id = 5 OR id = 6 | rows hidden=0 distinct=false order=0 limit=None offset=0",
    );
}

#[test]
fn in_lists_prune_partitions() {
    let mut ordinals: Vec<u32> = [1, 2, 3].iter().map(|i| p(&[Value::Integer(*i)])).collect();
    ordinals.sort_unstable();
    ordinals.dedup();
    let plan = plan_sql("SELECT * FROM t WHERE id IN (1, 2, 3)", Some("test"));
    assert!(plan.starts_with(&format!("scatter {ordinals:?}")) || ordinals.len() == 1, "{plan}");
}

#[test]
fn order_by_and_limit_are_pushed_down() {
    check(
        "SELECT a FROM t ORDER BY s DESC, id LIMIT 5 OFFSET 10",
        "scatter [0, 1, 2, 3]: SELECT a, s AS __h0, id AS __h1 FROM t ORDER BY s DESC, id LIMIT 15 | rows hidden=2 distinct=false order=2 limit=Some(5) offset=10",
    );
    check(
        "SELECT DISTINCT a FROM t ORDER BY 1 LIMIT 3, 2",
        "scatter [0, 1, 2, 3]: SELECT DISTINCT a FROM t ORDER BY 1 LIMIT 5 | rows hidden=0 distinct=true order=1 limit=Some(2) offset=3",
    );
}

#[test]
fn aggregates_become_partials() {
    check(
        "SELECT a, COUNT(*), AVG(id) AS m FROM t GROUP BY a HAVING SUM(id) > 2 ORDER BY m DESC LIMIT 3",
        "scatter [0, 1, 2, 3]: SELECT a, COUNT(*), TOTAL(id), COUNT(id), SUM(id) FROM t GROUP BY a | \
         SELECT __p0 AS __o0, (COALESCE(SUM(__p1), 0)) AS __o1, (CASE WHEN SUM(__p3) > 0 THEN TOTAL(__p2) / SUM(__p3) END) AS __o2 \
         FROM _partial GROUP BY __p0 HAVING (SUM(__p4)) > 2 ORDER BY __o2 DESC LIMIT 3 OFFSET 0",
    );
    check(
        "SELECT MIN(s), MAX(s), TOTAL(a) FROM t JOIN r ON t.a = r.id",
        "scatter [0, 1, 2, 3]: SELECT MIN(s), MAX(s), TOTAL(a) FROM t JOIN r ON t.a = r.id | \
         SELECT (MIN(__p0)) AS __o0, (MAX(__p1)) AS __o1, (TOTAL(__p2)) AS __o2 FROM _partial",
    );
}

#[test]
fn unmergeable_shapes_gather() {
    let g = "gather [dist test.t]";
    check("SELECT COUNT(DISTINCT a) FROM t", &format!("{g}: SELECT COUNT(DISTINCT a) FROM \"test\".\"t\""));
    check(
        "SELECT a, s, COUNT(*) FROM t GROUP BY a",
        &format!("{g}: SELECT a, s, COUNT(*) FROM \"test\".\"t\" GROUP BY a"),
    );
    check("SELECT GROUP_CONCAT(s) FROM t", &format!("{g}: SELECT GROUP_CONCAT(s) FROM \"test\".\"t\""));
    check(
        "SELECT id, ROW_NUMBER() OVER (ORDER BY id) FROM t",
        &format!("{g}: SELECT id, ROW_NUMBER() OVER (ORDER BY id) FROM \"test\".\"t\""),
    );
    check(
        "SELECT * FROM t JOIN u ON t.id = u.k1",
        "gather [dist test.t, dist test.u]: SELECT * FROM \"test\".\"t\" JOIN \"test\".\"u\" ON t.id = u.k1",
    );
    check(
        "SELECT * FROM r LEFT JOIN t ON r.id = t.a",
        "gather [ref test.r, dist test.t]: SELECT * FROM \"test\".\"r\" LEFT JOIN \"test\".\"t\" ON r.id = t.a",
    );
    check(
        "WITH c AS (SELECT a FROM t) SELECT * FROM c",
        &format!("{g}: WITH c AS (SELECT a FROM \"test\".\"t\") SELECT * FROM c"),
    );
    check(
        "SELECT a FROM t UNION SELECT a FROM k",
        "gather [dist test.t, dist test.k]: SELECT a FROM \"test\".\"t\" UNION SELECT a FROM \"test\".\"k\"",
    );
    check(
        "SELECT * FROM information_schema.TABLES",
        "gather [virtual information_schema.TABLES]: SELECT * FROM \"information_schema\".\"TABLES\"",
    );
}

#[test]
fn reference_and_constant_queries() {
    check("SELECT 1 + 1", "reference None: SELECT 1 + 1");
    check("SELECT name FROM test.r WHERE id = 1", "reference Some(\"test\"): SELECT name FROM r WHERE id = 1");
    assert_eq!(plan_sql("SELECT 1", None), "reference None: SELECT 1");
}

#[test]
fn resolution_errors() {
    check("SELECT * FROM nope", "error: Table 'test.nope' doesn't exist");
    check("SELECT * FROM other.t", "error: Unknown database 'other'");
    assert_eq!(plan_sql("SELECT * FROM t", None), "error: No database selected");
}

#[test]
fn inserts_route_rows_and_allocate_auto_increment() {
    let (p1, p2) = (p(&[Value::Integer(1)]), p(&[Value::Integer(100)]));
    let plan = plan_sql("INSERT INTO t (id, a) VALUES ('1', 2), (NULL, 3)", Some("test"));
    let mut parts = vec![
        (p1, "INSERT INTO \"t\" (\"id\", \"a\") VALUES (1, 2)".to_string()),
        (p2, "INSERT INTO \"t\" (\"id\", \"a\") VALUES (100, 3)".to_string()),
    ];
    parts.sort();
    if p1 == p2 {
        parts = vec![(p1, "INSERT INTO \"t\" (\"id\", \"a\") VALUES (1, 2), (100, 3)".to_string())];
    }
    let parts: Vec<String> = parts.iter().map(|(o, s)| format!("{o}: {s}")).collect();
    assert_eq!(plan, format!("insert rows=2 ai=Some(100) {}", parts.join(" ; ")));
    check("INSERT INTO k VALUES (1)", "insert rows=1 ai=None 2: INSERT INTO \"k\" (\"a\") VALUES (1)");
    let p3 = p(&[Value::Integer(3), Value::Text("x".into())]);
    check(
        "REPLACE INTO u VALUES (1 + 2, 'x', 1.5)",
        &format!(
            "insert rows=1 ai=None {p3}: INSERT OR REPLACE INTO \"u\" (\"k1\", \"k2\", \"v\") VALUES (3, 'x', 1.5)"
        ),
    );
    check("INSERT INTO t (id, a) VALUES (1)", "error: Column count doesn't match value count at row 1");
    check("INSERT INTO t (id, zz) VALUES (1, 2)", "error: Unknown column 'zz' in 't'");
    check("INSERT INTO r VALUES (1, 'a')", "reference write: INSERT INTO \"r\" (\"id\", \"name\") VALUES (1, 'a')");
    check(
        "INSERT INTO t (id, a) VALUES (1, 2) ON DUPLICATE KEY UPDATE a = a + VALUES(a)",
        &format!(
            "insert rows=1 ai=None {p1}: INSERT INTO \"t\" (\"id\", \"a\") VALUES (1, 2) ON CONFLICT DO UPDATE SET \"a\" = a + excluded.a"
        ),
    );
    check("INSERT INTO t SELECT * FROM t", "error: Feature not supported: INSERT ... SELECT (use INSERT ... VALUES)");
}

#[test]
fn updates_and_deletes_route_by_where() {
    let five = p(&[Value::Integer(5)]);
    check("UPDATE t SET a = 1 WHERE id = 5", &format!("write [{five}]: UPDATE t SET a = 1 WHERE id = 5"));
    check("DELETE FROM test.t WHERE a = 1", "write [0, 1, 2, 3]: DELETE FROM t WHERE a = 1");
    check("UPDATE t SET id = 1", "error: Updating the shard key column 'id' is not supported");
    check("UPDATE r SET name = 'x'", "reference write: UPDATE r SET name = 'x'");
    check(
        "DELETE FROM t WHERE a IN (SELECT k1 FROM u)",
        "error: Feature not supported: UPDATE/DELETE with a subquery reading distributed table test.u",
    );
    check(
        "DELETE FROM t WHERE a = 1 LIMIT 2",
        "error: Feature not supported: ORDER BY or LIMIT on an UPDATE/DELETE that spans partitions",
    );
}

/// `sql` with `?N` replaced by the literal of `params[N-1]` for every N above the statement's own parameters
/// (those the test passes in start with `?` too, but the caller's own ones are written as `?1`.. and kept when
/// `own` says so).
fn inline_lifted(sql: &str, params: &[Value]) -> String {
    let own = OWN_PARAMS.with(|o| o.get());
    let mut out = sql.to_string();
    for n in (own + 1..=params.len()).rev() {
        out = out.replace(&format!("?{n}"), &params[n - 1].to_sql_literal());
    }
    out
}

thread_local! {
    /// How many parameters the statement under test came with (set by `plan_with`).
    static OWN_PARAMS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[test]
fn insert_literals_become_parameters() {
    let p = plan_with("INSERT INTO t (id, a, s) VALUES (7, ?1, 'x'), (0, 2, NULL)", vec![Value::Integer(5)]).unwrap();
    let Plan::Insert { mut per_partition, .. } = p else { panic!("{p:?}") };
    assert_eq!(per_partition.len(), 1, "both rows land in one partition here: {per_partition:?}");
    let (_, text, params) = per_partition.remove(0);
    let texts = [text.as_str()];
    // Row order across partitions follows partition order; each row's literals got the next numbers.
    let mut all = texts.join(" ; ");
    all = all.replace('"', "");
    assert!(all.contains("(?2, ?1, ?3)"), "{all}");
    assert!(all.contains("(?4, ?5, ?6)"), "{all}");
    assert_eq!(
        params,
        vec![
            Value::Integer(5),
            Value::Integer(7),
            Value::Text("x".into()),
            Value::Integer(100),
            Value::Integer(2),
            Value::Null
        ]
    );
}

fn plan_with(sql: &str, params: Vec<Value>) -> Result<Plan, SqlError> {
    OWN_PARAMS.with(|o| o.set(params.len()));
    let stmt = Parser::parse_sql(&MySqlDialect {}, sql).unwrap().remove(0);
    let mut ctx = TestContext::new();
    ctx.params = params;
    plan(&stmt, Some("test"), &mut ctx)
}

#[test]
fn placeholders_route_by_their_values_and_stay_in_the_partition_sql() {
    let p = plan_with("SELECT s FROM t WHERE id = ?1", vec![Value::Integer(5)]);
    assert_eq!(render(&p), format!("single {}: SELECT s FROM t WHERE id = ?1", partition_of(&[Value::Integer(5)], 4)));
    assert!(runs_with_params(p.as_ref().unwrap()));
    // Text for an INTEGER key routes like the integer, as SQLite's affinity stores it.
    let p = plan_with("SELECT s FROM t WHERE id = ?1", vec![Value::Text("5".into())]);
    assert_eq!(render(&p), format!("single {}: SELECT s FROM t WHERE id = ?1", partition_of(&[Value::Integer(5)], 4)));
    let p = plan_with(
        "UPDATE t SET a = ?1 WHERE id IN (?2, ?3)",
        vec![Value::Integer(0), Value::Integer(1), Value::Integer(2)],
    );
    let mut both = vec![partition_of(&[Value::Integer(1)], 4), partition_of(&[Value::Integer(2)], 4)];
    both.sort_unstable();
    both.dedup();
    assert_eq!(render(&p), format!("write {both:?}: UPDATE t SET a = ?1 WHERE id IN (?2, ?3)"));
    // A placeholder without a value (or without a number, as in a text query) is refused, as MySQL does.
    let p = plan_with("DELETE FROM t WHERE id = ?4", vec![Value::Integer(1)]);
    assert_eq!(
        render(&p),
        "error: You have an error in your SQL syntax: near '?4': a parameter placeholder without a value"
    );
    let p = plan_with("INSERT INTO t (id, a) VALUES (?, 1)", vec![]);
    assert!(render(&p).starts_with("error: You have an error in your SQL syntax: near '?'"), "{}", render(&p));
}

#[test]
fn placeholder_inserts_take_auto_increment_and_evaluate_key_expressions_with_the_values() {
    let p = plan_with(
        "INSERT INTO t (id, a, s) VALUES (?1, ?2, ?3)",
        vec![Value::Integer(0), Value::Integer(7), Value::Text("x".into())],
    );
    let at = partition_of(&[Value::Integer(100)], 4);
    assert_eq!(
        render(&p),
        format!("insert rows=1 ai=Some(100) {at}: INSERT INTO \"t\" (\"id\", \"a\", \"s\") VALUES (100, ?2, ?3)")
    );
    let p = plan_with("INSERT INTO t (id, a) VALUES (?1 + 1, ?2)", vec![Value::Integer(41), Value::Integer(7)]);
    let at = partition_of(&[Value::Integer(42)], 4);
    assert_eq!(render(&p), format!("insert rows=1 ai=None {at}: INSERT INTO \"t\" (\"id\", \"a\") VALUES (42, ?2)"));
}

#[test]
fn plans_whose_merge_reads_a_placeholder_need_bound_literals() {
    let p = plan_with(
        "SELECT a, count(*) FROM t WHERE s = ?1 GROUP BY a HAVING count(*) > ?2",
        vec![Value::Text("x".into()), Value::Integer(1)],
    );
    assert!(!runs_with_params(p.as_ref().unwrap()), "{}", render(&p));
    let p = plan_with("SELECT sum(a) FROM t WHERE id BETWEEN ?1 AND ?2", vec![Value::Integer(1), Value::Integer(9)]);
    assert!(runs_with_params(p.as_ref().unwrap()), "{}", render(&p));
    let p = plan_with(
        "SELECT DISTINCT s FROM t WHERE id BETWEEN ?1 AND ?2 ORDER BY s",
        vec![Value::Integer(1), Value::Integer(9)],
    );
    assert!(runs_with_params(p.as_ref().unwrap()), "{}", render(&p));
    let p = plan_with("SELECT t.s FROM t JOIN t AS t2 ON t.id = t2.a WHERE t.a = ?1", vec![Value::Integer(1)]);
    assert!(!runs_with_params(p.as_ref().unwrap()), "{}", render(&p));

    let mut stmt = Parser::parse_sql(&MySqlDialect {}, "SELECT ?1, ?2, ?3, ?4, ?5, ?6").unwrap().remove(0);
    bind_placeholders(
        &mut stmt,
        &[Value::Integer(1), Value::Real(0.5), Value::Text("it's".into()), Value::Blob(vec![0, 255]), Value::Null],
    );
    assert_eq!(stmt.to_string(), "SELECT 1, 5e-1, 'it''s', X'00FF', NULL, NULL");
}

#[test]
fn bound_integers_never_become_column_positions() {
    let sql = "SELECT a, count(*) FROM t GROUP BY ?1 UNION SELECT 1, 2 FROM t GROUP BY ?1 ORDER BY (?2), ?3";
    let mut stmt = Parser::parse_sql(&MySqlDialect {}, sql).unwrap().remove(0);
    bind_placeholders(&mut stmt, &[Value::Integer(1), Value::Integer(2), Value::Text("x".into())]);
    assert_eq!(
        stmt.to_string(),
        "SELECT a, count(*) FROM t GROUP BY CAST(1 AS INTEGER) UNION SELECT 1, 2 FROM t GROUP BY CAST(1 AS INTEGER) \
         ORDER BY CAST(2 AS INTEGER), 'x'"
    );
}

#[test]
fn lifting_stops_below_sqlites_parameter_limit() {
    // 12,000 rows of three values into one partition: the rows past 30,000 parameters keep their literals.
    let rows: Vec<String> = (0..12_000).map(|i| format!("(5, {i}, 'v{i}')")).collect();
    let p = plan_with(&format!("INSERT INTO t (id, a, s) VALUES {}", rows.join(", ")), vec![]).unwrap();
    let Plan::Insert { per_partition, .. } = p else { panic!() };
    let (_, text, params) = &per_partition[0];
    assert_eq!(params.len(), 30_000);
    assert!(text.contains("(?29998, ?29999, ?30000), (5, 10000, 'v10000')"), "{}", &text[text.len() - 200..]);
}

fn route_of(sql: &str) -> Option<ParamRoute> {
    let stmt = Parser::parse_sql(&MySqlDialect {}, sql).unwrap().remove(0);
    reusable_route(&stmt, Some("test"), &TestContext::new())
}

#[test]
fn reusable_routes_are_keys_fixed_by_one_placeholder_each() {
    for sql in [
        "SELECT s FROM t WHERE id = ?1",
        "SELECT s FROM t AS x WHERE (x.id = ?1) AND s > 'a'",
        "UPDATE t SET a = a + 1 WHERE ?1 = id",
        "DELETE FROM t WHERE id = ?1 AND a = 3",
        "SELECT v FROM u WHERE k2 = ?1 AND k1 = ?2",
    ] {
        assert!(matches!(route_of(sql), Some(ParamRoute::Keys { .. })), "{sql}");
    }
    for sql in [
        "SELECT s FROM t WHERE a = ?1",
        "SELECT c, sum(a) FROM t WHERE id BETWEEN ?1 AND ?2 GROUP BY c",
        "SELECT a FROM k WHERE a = ?1",
        "UPDATE t SET a = ?1 WHERE s = ?2",
        "SELECT s FROM t",
        // An OR is not a conjunct naming the key: every partition, whatever the values.
        "SELECT s FROM t WHERE id = ?1 OR a = 1",
    ] {
        assert_eq!(route_of(sql), Some(ParamRoute::Everywhere), "{sql}");
    }
    for sql in [
        "SELECT s FROM t WHERE id = 5",
        "SELECT s FROM t WHERE id IN (?1, ?2)",
        "SELECT s FROM t WHERE id = ?1 AND id = ?2",
        "SELECT v FROM u WHERE k1 = ?1",
        "SELECT name FROM r WHERE id = ?1",
        "SELECT s FROM t WHERE id = ?1 + 1",
    ] {
        assert!(route_of(sql).is_none(), "{sql}");
    }
}

#[test]
fn a_reusable_route_picks_the_partition_the_planner_picks() {
    let single = route_of("SELECT s FROM t WHERE id = ?1").unwrap();
    let pair = route_of("SELECT v FROM u WHERE k2 = ?1 AND k1 = ?2").unwrap();
    let values = (-300..300)
        .map(Value::Integer)
        .chain((0..100).map(|i| Value::Text(format!("{i}"))))
        .chain((0..100).map(|i| Value::Text(format!("key {i}"))))
        .chain([Value::Null, Value::Real(2.0), Value::Real(2.5)]);
    for v in values {
        let planned = plan_with("SELECT s FROM t WHERE id = ?1", vec![v.clone()]).unwrap();
        let Plan::Single { ordinal, .. } = planned else { panic!("{planned:?}") };
        assert_eq!(single.ordinal(std::slice::from_ref(&v)), Some(ordinal), "{v:?}");
        let params = vec![v.clone(), Value::Integer(7)];
        let planned = plan_with("SELECT v FROM u WHERE k2 = ?1 AND k1 = ?2", params.clone()).unwrap();
        match planned {
            Plan::Single { ordinal, .. } => assert_eq!(pair.ordinal(&params), Some(ordinal), "{v:?}"),
            other => assert_eq!(pair.ordinal(&params), None, "{v:?} planned {other:?}"),
        }
    }
}

/// MySQL's operators and functions reach every SQLite in SQLite's syntax, with the column names MySQL shows, and the
/// statement's time is one literal wherever the statement runs (`plan::mysql`).
#[test]
fn mysql_semantics_are_rewritten_for_sqlite() {
    let five = p(&[Value::Integer(5)]);
    check(
        "SELECT a / 2, a DIV 2, a % 2, a / 2 AS half FROM t WHERE id = 5",
        &format!(
            "single {five}: SELECT (CAST(a AS REAL) / 2) AS \"a / 2\", canopy_div(a, 2) AS \"a DIV 2\", \
             mod(a, 2) AS \"a % 2\", (CAST(a AS REAL) / 2) AS half FROM t WHERE id = 5"
        ),
    );
    check(
        "SELECT s + INTERVAL 1 DAY, INTERVAL 2 HOUR + s, DATE_SUB(s, INTERVAL '1.5' SECOND), TIMESTAMPDIFF(MONTH, s, '2024-01-01'), \
         EXTRACT(YEAR FROM s), POSITION('x' IN s), GREATEST(a, 2) FROM t WHERE id = 5",
        &format!(
            "single {five}: SELECT date_add(s, 1, 'DAY') AS \"s + INTERVAL 1 DAY\", date_add(s, 2, 'HOUR') AS \"INTERVAL 2 HOUR + s\", \
             date_sub(s, '1.5', 'SECOND') AS \"DATE_SUB(s, INTERVAL '1.5' SECOND)\", \
             timestampdiff('MONTH', s, '2024-01-01') AS \"TIMESTAMPDIFF(MONTH, s, '2024-01-01')\", \
             extract('YEAR', s) AS \"EXTRACT(YEAR FROM s)\", locate('x', s) AS \"POSITION('x' IN s)\", \
             max(a, 2) AS \"GREATEST(a, 2)\" FROM t WHERE id = 5"
        ),
    );
    check(
        "SELECT id FROM t WHERE s < NOW() - INTERVAL 1 DAY AND a = UNIX_TIMESTAMP() ORDER BY id",
        "scatter [0, 1, 2, 3]: SELECT id FROM t WHERE s < date_sub('2024-03-05 14:07:09', 1, 'DAY') AND a = 1709647629 \
         | rows hidden=0 distinct=false order=1 limit=None offset=0",
    );
    check(
        "SELECT NOW(), NOW(6), CURRENT_TIMESTAMP, CURDATE(), CURTIME(3), UTC_TIMESTAMP(), SYSDATE(), RAND(), UUID()",
        "reference None: SELECT '2024-03-05 14:07:09' AS \"NOW()\", '2024-03-05 14:07:09.123456' AS \"NOW(6)\", \
         '2024-03-05 14:07:09' AS \"CURRENT_TIMESTAMP\", '2024-03-05' AS \"CURDATE()\", '14:07:09.123' AS \"CURTIME(3)\", \
         '2024-03-05 14:07:09' AS \"UTC_TIMESTAMP()\", SYSDATE(), RAND(), UUID()",
    );
    // MySQL's functions are per-row functions: the aggregate still merges on the aggregator, and its merge SQL
    // (AVG as TOTAL / COUNT) is the planner's own, untouched by the rewrite.
    check(
        "SELECT DATE_FORMAT(s, '%Y'), COUNT(*), AVG(a), SUM(a) / COUNT(*) FROM t GROUP BY DATE_FORMAT(s, '%Y')",
        "scatter [0, 1, 2, 3]: SELECT DATE_FORMAT(s, '%Y'), COUNT(*), TOTAL(a), COUNT(a), SUM(a) FROM t GROUP BY DATE_FORMAT(s, '%Y') | \
         SELECT __p0 AS __o0, (COALESCE(SUM(__p1), 0)) AS __o1, (CASE WHEN SUM(__p3) > 0 THEN TOTAL(__p2) / SUM(__p3) END) AS __o2, \
         (CAST((SUM(__p4)) AS REAL) / (COALESCE(SUM(__p1), 0))) AS __o3 FROM _partial GROUP BY __p0",
    );
    check(
        "UPDATE t SET s = NOW() WHERE id = 5",
        &format!("write [{five}]: UPDATE t SET s = '2024-03-05 14:07:09' WHERE id = 5"),
    );
    // Every row of a multi-row INSERT gets the statement's one NOW(), wherever it is routed.
    let (one, two) = (p(&[Value::Integer(1)]), p(&[Value::Integer(2)]));
    let plan = plan_sql("INSERT INTO t (id, s) VALUES (1, NOW()), (2, NOW())", Some("test"));
    assert_eq!(plan.matches("'2024-03-05 14:07:09'").count(), 2, "{plan}");
    assert!(plan.contains(&format!("{one}: ")) && plan.contains(&format!("{two}: ")), "{plan}");
}

#[test]
fn statements_reading_the_clock_are_not_reused() {
    assert!(route_of("SELECT s FROM t WHERE id = ?1 AND s < NOW()").is_none());
    assert!(route_of("UPDATE t SET s = CURRENT_TIMESTAMP WHERE id = ?1").is_none());
    assert!(matches!(route_of("SELECT s FROM t WHERE id = ?1 AND s < SYSDATE()"), Some(ParamRoute::Keys { .. })));
}
