//! The differential test through real processes: random tables and thousands of generated queries (aggregates with
//! GROUP BY/HAVING, subqueries, IN/EXISTS, joins, ORDER BY/LIMIT, NULLs, CASE, arithmetic, UNION, window functions)
//! run through a master aggregator with 3 leaves over the MySQL binary protocol, and against one plain SQLite
//! database holding the same rows. Answers must be equal: column names and values, in order when the query orders
//! totally. Writes (UPDATE, DELETE, REPLACE, INSERT IGNORE, ON DUPLICATE KEY UPDATE) run on both between query
//! batches, and then every table must hold the same rows.
//!
//! The generator is shared with the in-process differential test of `canopy-sql` (`crates/sql/tests/support`).

#[path = "../../sql/tests/support/querygen.rs"]
mod querygen;
mod support;

use mysql_async::prelude::Queryable;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rusqlite::types::Value as Sql;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use support::TestCluster;

const SEEDS: &[u64] = &[7, 2024];
const BATCHES: usize = 6;
const QUERIES_PER_BATCH: usize = 120;
const WRITES_PER_BATCH: usize = 10;

/// A generated INSERT that leaves `t1.id` to AUTO_INCREMENT: the cluster and the oracle would pick different ids
/// (Canopy's are unique per aggregator, not consecutive), so those rows are checked by a dedicated test instead.
fn uses_auto_increment(sql: &str) -> bool {
    sql.starts_with("INSERT INTO t1 (a,")
        || sql.starts_with("INSERT INTO t1 (a ")
        || sql.contains("VALUES (NULL,")
        || sql.contains("VALUES (0,")
}

/// The oracle: one SQLite database with every table under schema `test`, as the cluster's user sees them.
fn oracle() -> rusqlite::Connection {
    let conn = engine();
    conn.execute_batch("ATTACH ':memory:' AS test").unwrap();
    for ddl in querygen::schema() {
        let def = canopy_sql::ddl::create_table(&ddl).expect("querygen DDL translates").def;
        conn.execute_batch(&def.create_sql.replacen("CREATE TABLE ", "CREATE TABLE test.", 1)).unwrap();
        for index in &def.index_sql {
            let index = index.replacen("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX test.", 1).replacen(
                "CREATE INDEX ",
                "CREATE INDEX test.",
                1,
            );
            conn.execute_batch(&index).unwrap();
        }
    }
    conn
}

/// An in-memory SQLite with MySQL's functions, as the cluster's engines have them.
fn engine() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    canopy_sql::functions::register(&conn, canopy_sql::functions::SeededHost::shared(now_micros(), 1)).unwrap();
    conn
}

fn now_micros() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    since.as_micros() as i64
}

/// The statement as the oracle runs it: the planner's MySQL-to-SQLite translation without distribution (MySQL's
/// `/`, `DIV`, INTERVAL arithmetic...), which is also what the cluster executes, so result column names (SQLite
/// names expressions after their text) are comparable.
fn rendered(sql: &str) -> String {
    let stmt = &Parser::parse_sql(&MySqlDialect {}, sql).expect("generated SQL parses")[0];
    canopy_sql::plan::translate(stmt, Some("test"), now_micros())
}

#[derive(Debug, Clone)]
struct Answer {
    columns: Vec<String>,
    rows: Vec<Vec<Sql>>,
}

fn oracle_query(conn: &rusqlite::Connection, sql: &str) -> Result<Answer, String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let width = columns.len();
    let rows = stmt
        .query_map([], |r| (0..width).map(|i| r.get::<_, Sql>(i)).collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(Answer { columns, rows })
}

/// A cell from the binary protocol, in SQLite's terms. A column that mixes storage classes arrives as text (MySQL
/// needs one type per column); `cell_matches` compares such text with the oracle's number by value.
fn from_mysql(v: mysql_async::Value) -> Sql {
    match v {
        mysql_async::Value::NULL => Sql::Null,
        mysql_async::Value::Int(i) => Sql::Integer(i),
        mysql_async::Value::UInt(u) => Sql::Integer(u as i64),
        mysql_async::Value::Double(d) => Sql::Real(d),
        mysql_async::Value::Float(f) => Sql::Real(f64::from(f)),
        mysql_async::Value::Bytes(b) => match String::from_utf8(b) {
            Ok(s) => Sql::Text(s),
            Err(e) => Sql::Blob(e.into_bytes()),
        },
        other => panic!("unexpected value from the server: {other:?}"),
    }
}

/// Reals compare with a relative tolerance of 1e-9: partitions add in a different order than the oracle.
fn reals_match(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
}

fn cell_matches(expected: &Sql, got: &Sql) -> bool {
    match (expected, got) {
        (Sql::Real(x), Sql::Real(y)) => reals_match(*x, *y),
        // A column mixing INTEGER and REAL values is declared DOUBLE (MySQL has one type per column, and MySQL
        // itself types COALESCE(double, int) as DOUBLE): the integer arrives as the same number in a double.
        (Sql::Integer(i), Sql::Real(r)) => *r == *i as f64,
        // An integer in a mixed column arrives in its canonical text: `07` is a text value, not the number 7.
        (Sql::Integer(i), Sql::Text(t)) => *t == i.to_string(),
        (Sql::Real(x), Sql::Text(t)) => t.parse::<f64>().is_ok_and(|v| reals_match(*x, v)),
        (Sql::Blob(b), Sql::Text(t)) => b == t.as_bytes(),
        (a, b) => a == b,
    }
}

fn sort_key(row: &[Sql]) -> String {
    format!("{row:?}")
}

fn answers_match(expected: &Answer, got: &Answer, ordered: bool) -> bool {
    if expected.columns != got.columns || expected.rows.len() != got.rows.len() {
        return false;
    }
    let (mut e, mut g) = (expected.rows.clone(), got.rows.clone());
    if !ordered {
        // Sort both by their rendering; this lines rows up unless a column mixes storage classes.
        e.sort_by_key(|r| sort_key(r));
        g.sort_by_key(|r| sort_key(r));
        if e.iter().zip(&g).all(|(a, b)| a.iter().zip(b).all(|(x, y)| cell_matches(x, y))) {
            return true;
        }
        // Mixed-class columns (numbers shown as text) sort differently; fall back to a matching by search.
        let mut remaining: Vec<Vec<Sql>> = got.rows.clone();
        for row in &expected.rows {
            let Some(pos) = remaining
                .iter()
                .position(|r| r.len() == row.len() && row.iter().zip(r).all(|(x, y)| cell_matches(x, y)))
            else {
                return false;
            };
            remaining.swap_remove(pos);
        }
        return true;
    }
    e.iter().zip(&g).all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| cell_matches(x, y)))
}

async fn cluster_query(conn: &mut mysql_async::Conn, sql: &str) -> Result<Answer, String> {
    cluster_query_with(conn, sql, mysql_async::Params::Empty).await
}

async fn cluster_query_with(
    conn: &mut mysql_async::Conn,
    sql: &str,
    params: mysql_async::Params,
) -> Result<Answer, String> {
    let mut result = conn.exec_iter(sql, params).await.map_err(|e| e.to_string())?;
    let columns: Vec<String> = result.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
    let rows: Vec<mysql_async::Row> = result.collect().await.map_err(|e| e.to_string())?;
    let rows = rows.into_iter().map(|r| r.unwrap().into_iter().map(from_mysql).collect()).collect();
    Ok(Answer { columns, rows })
}

/// The query as an application would prepare it: every number or string literal compared with `=`, `<>`, `<`,
/// `<=`, `>` or `>=` becomes a `?` placeholder and its value a parameter. None when the query has no such literal.
/// (Literals elsewhere stay: `ORDER BY 1` means a column, `ORDER BY ?` a constant.)
fn parameterize(sql: &str) -> Option<(String, Vec<mysql_async::Value>)> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&MySqlDialect {}, sql).tokenize().ok()?;
    let mut text = String::with_capacity(sql.len());
    let mut params = Vec::new();
    let mut previous: Option<&Token> = None;
    for token in &tokens {
        let compared = matches!(
            previous,
            Some(Token::Eq | Token::Neq | Token::Lt | Token::LtEq | Token::Gt | Token::GtEq | Token::DoubleEq)
        );
        let value = match token {
            Token::Number(n, false) if compared => {
                if n.contains(['.', 'e', 'E']) {
                    n.parse::<f64>().ok().map(mysql_async::Value::Double)
                } else {
                    n.parse::<i64>().ok().map(mysql_async::Value::Int)
                }
            }
            Token::SingleQuotedString(s) if compared => Some(mysql_async::Value::Bytes(s.clone().into_bytes())),
            _ => None,
        };
        match value {
            Some(v) => {
                text.push('?');
                params.push(v);
            }
            // sqlparser prints a string token without doubling its quotes.
            None if matches!(token, Token::SingleQuotedString(_)) => {
                let Token::SingleQuotedString(s) = token else { unreachable!() };
                text.push_str(&format!("'{}'", s.replace('\'', "''")));
            }
            None => text.push_str(&token.to_string()),
        }
        if !matches!(token, Token::Whitespace(_)) {
            previous = Some(token);
        }
    }
    (!params.is_empty()).then_some((text, params))
}

/// What the oracle needs to translate MySQL-dialect inserts (`INSERT IGNORE`, `ON DUPLICATE KEY UPDATE`) into
/// SQLite's: the planner's INSERT rendering, whose per-partition statements the oracle runs one after the other.
/// Only syntax is borrowed; placement is irrelevant to the oracle.
struct Dialect {
    tables: std::collections::BTreeMap<String, canopy_sql::TableDef>,
    scratch: rusqlite::Connection,
}

impl Dialect {
    fn new() -> Dialect {
        let tables = querygen::schema()
            .iter()
            .map(|ddl| canopy_sql::ddl::create_table(ddl).unwrap().def)
            .map(|def| (def.name.to_ascii_lowercase(), def))
            .collect();
        Dialect { tables, scratch: engine() }
    }

    /// The SQLite statements (with their parameters) the oracle runs for one MySQL write.
    fn sqlite_statements(&mut self, sql: &str) -> Vec<(String, Vec<canopy_sql::Value>)> {
        let stmt = Parser::parse_sql(&MySqlDialect {}, sql).expect("parses").remove(0);
        match canopy_sql::plan::plan(&stmt, Some("test"), self) {
            Ok(canopy_sql::plan::Plan::Insert { per_partition, .. }) => {
                per_partition.into_iter().map(|(_, s, params)| (s, params)).collect()
            }
            Ok(canopy_sql::plan::Plan::ReferenceWrite { sql, .. }) => vec![(sql, Vec::new())],
            _ => vec![(rendered(sql), Vec::new())],
        }
    }
}

impl canopy_sql::Catalog for Dialect {
    fn table(&self, db: &str, table: &str) -> Option<&canopy_sql::TableDef> {
        (db == "test").then(|| self.tables.get(&table.to_ascii_lowercase())).flatten()
    }
    fn partition_count(&self, db: &str) -> Option<u32> {
        (db == "test").then_some(8)
    }
}

impl canopy_sql::plan::PlanContext for Dialect {
    fn eval_constant(&mut self, expr_sql: &str) -> Result<canopy_sql::Value, canopy_sql::SqlError> {
        let v: Sql = self.scratch.query_row(&format!("SELECT {expr_sql}"), [], |r| r.get(0))?;
        Ok(v.into())
    }
    fn allocate_auto_increment(&mut self, _: &str, _: &str, _: u64) -> Result<i64, canopy_sql::SqlError> {
        panic!("statements that need AUTO_INCREMENT are filtered out of this test")
    }
    fn spread_ordinal(&mut self, _: u32) -> u32 {
        0
    }
    fn statement_time_micros(&self) -> i64 {
        now_micros()
    }
}

fn oracle_write(oracle: &rusqlite::Connection, dialect: &mut Dialect, sql: &str) -> Result<usize, rusqlite::Error> {
    let mut affected = 0;
    for (statement, params) in dialect.sqlite_statements(sql) {
        let mut stmt = oracle.prepare(&statement)?;
        canopy_sql::value::bind_params(&mut stmt, &params)?;
        affected += stmt.raw_execute()?;
    }
    Ok(affected)
}

async fn apply_write(
    conn: &mut mysql_async::Conn,
    oracle: &rusqlite::Connection,
    dialect: &mut Dialect,
    sql: &str,
    seed: u64,
) {
    let cluster = conn.query_iter(sql).await.map(|r| r.affected_rows());
    let expected = oracle_write(oracle, dialect, sql);
    match (cluster, expected) {
        (Ok(n), Ok(m)) => assert_eq!(n, m as u64, "seed {seed}: affected rows differ for {sql}"),
        (Err(mysql_async::Error::Server(e)), _) if e.code == 1706 => {} // documented as unsupported
        (Err(_), Err(_)) => {}
        (c, o) => panic!("seed {seed}: {sql}\n  cluster {c:?}\n  oracle {o:?}"),
    }
}

async fn check_tables(conn: &mut mysql_async::Conn, oracle: &rusqlite::Connection, seed: u64) {
    for table in ["t1", "t2", "t3", "r"] {
        let sql = format!("SELECT * FROM {table}");
        let expected = oracle_query(oracle, &format!("SELECT * FROM test.{table}")).unwrap();
        let got = cluster_query(conn, &sql).await.unwrap();
        assert!(answers_match(&expected, &got, false), "seed {seed}: table {table} differs\n{expected:?}\n{got:?}");
    }
}

/// History: per seed, a database with 8 partitions on 3 leaves, the generated schema and rows, then batches of
/// queries and writes. Property: every answer and every table equals the single-SQLite oracle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_answers_equal_single_sqlite() {
    let cluster = TestCluster::start("differential", 3).await;
    let mut admin = cluster.conn().await;
    let mut compared = 0usize;
    let mut parameterized = 0usize;
    for &seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        admin.query_drop("DROP DATABASE IF EXISTS test").await.unwrap();
        admin.query_drop("CREATE DATABASE test PARTITIONS 8").await.unwrap();
        let mut conn = cluster.conn().await;
        conn.query_drop("USE test").await.unwrap();
        let oracle = oracle();
        let mut dialect = Dialect::new();
        for ddl in querygen::schema() {
            conn.query_drop(&ddl).await.unwrap();
        }
        for sql in querygen::rows(&mut rng, 60, 1).into_iter().filter(|s| !uses_auto_increment(s)) {
            apply_write(&mut conn, &oracle, &mut dialect, &sql, seed).await;
        }
        check_tables(&mut conn, &oracle, seed).await;
        for batch in 0..BATCHES {
            for _ in 0..QUERIES_PER_BATCH {
                let q = querygen::query(&mut rng);
                let expected = oracle_query(&oracle, &rendered(&q.sql));
                let got = cluster_query(&mut conn, &q.sql).await;
                match (&expected, &got) {
                    (Ok(e), Ok(g)) => assert!(
                        answers_match(e, g, q.ordered),
                        "seed {seed}: {}\n  expected {e:?}\n  got      {g:?}",
                        q.sql
                    ),
                    (Err(_), Err(_)) => {}
                    _ => panic!("seed {seed}: {}\n  oracle {expected:?}\n  cluster {got:?}", q.sql),
                }
                compared += 1;
                // The same query prepared with placeholders: planned with the parameters left in, routed by their
                // values, or bound back in where the aggregator evaluates them (merges, gathers).
                if let Some((template, params)) = parameterize(&q.sql) {
                    let got = cluster_query_with(&mut conn, &template, mysql_async::Params::Positional(params))
                        .await
                        .map(|mut g| {
                            // An expression's column name shows the placeholder, not the value: compare values.
                            if let Ok(e) = &expected
                                && e.columns.len() == g.columns.len()
                            {
                                g.columns = e.columns.clone();
                            }
                            g
                        });
                    match (&expected, &got) {
                        (Ok(e), Ok(g)) => assert!(
                            answers_match(e, g, q.ordered),
                            "seed {seed}: {template} (from {})\n  expected {e:?}\n  got      {g:?}",
                            q.sql
                        ),
                        (Err(_), Err(_)) => {}
                        _ => {
                            panic!("seed {seed}: {template} (from {})\n  oracle {expected:?}\n  cluster {got:?}", q.sql)
                        }
                    }
                    parameterized += 1;
                }
            }
            for _ in 0..WRITES_PER_BATCH {
                let sql = querygen::write(&mut rng);
                apply_write(&mut conn, &oracle, &mut dialect, &sql, seed).await;
            }
            for sql in
                querygen::rows(&mut rng, 8, 300 + 30 * batch as i64).into_iter().filter(|s| !uses_auto_increment(s))
            {
                apply_write(&mut conn, &oracle, &mut dialect, &sql, seed).await;
            }
            check_tables(&mut conn, &oracle, seed).await;
        }
    }
    assert_eq!(compared, SEEDS.len() * BATCHES * QUERIES_PER_BATCH);
    assert!(parameterized * 4 > compared, "only {parameterized} of {compared} queries had a literal to parameterize");
}

/// History: rows inserted without ids into an AUTO_INCREMENT table from two connections.
/// Property: every id is unique across the distributed table, LAST_INSERT_ID is the first id of the statement, and
/// ids increase per aggregator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_increment_ids_are_unique_and_increasing() {
    let cluster = TestCluster::start("autoinc", 2).await;
    let mut a = cluster.conn().await;
    a.query_drop("CREATE DATABASE d PARTITIONS 4").await.unwrap();
    a.query_drop("CREATE TABLE d.t (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, v INT)").await.unwrap();
    let mut b = cluster.conn().await;
    let mut last = 0u64;
    for i in 0..50 {
        let conn = if i % 2 == 0 { &mut a } else { &mut b };
        let result = conn.query_iter(format!("INSERT INTO d.t (v) VALUES ({i}), ({i}), ({i})")).await.unwrap();
        let first = result.last_insert_id().expect("LAST_INSERT_ID");
        drop(result);
        assert!(first > last, "ids increase: {first} after {last}");
        last = first + 2;
        let ids: Vec<u64> = conn.query(format!("SELECT id FROM d.t WHERE v = {i} ORDER BY id")).await.unwrap();
        assert_eq!(ids, vec![first, first + 1, first + 2]);
    }
    let (n, distinct): (i64, i64) =
        a.query_first("SELECT COUNT(*), COUNT(DISTINCT id) FROM d.t").await.unwrap().unwrap();
    assert_eq!((n, distinct), (150, 150));
    // An explicit id is kept as given.
    a.query_drop("INSERT INTO d.t (id, v) VALUES (1000000, -1)").await.unwrap();
    let v: Option<i64> = a.query_first("SELECT v FROM d.t WHERE id = 1000000").await.unwrap();
    assert_eq!(v, Some(-1));
}
