//! Random SQL for differential tests: a fixed MySQL-flavoured schema, INSERT statements that fill it, SELECTs of many
//! shapes, and UPDATE/DELETE/REPLACE statements. Depends only on `std` and `rand` so the end-to-end tests can reuse
//! it through `#[path]`. It does not know how statements are executed or compared.
//!
//! Every generated query has a unique correct answer on one SQLite database: LIMIT only follows an ORDER BY that is a
//! total order on the selected rows, aggregates never read bare columns, scalar subqueries return one row, and
//! DOUBLE values are multiples of 0.25 so sums are exact. `ordered` says whether row order is part of the answer.

#![allow(dead_code)]

use rand::Rng;
use rand::seq::IndexedRandom;

/// One generated SELECT.
#[derive(Debug, Clone)]
pub struct GeneratedQuery {
    pub sql: String,
    /// Whether the answer's row order is determined by the query (ORDER BY a total order).
    pub ordered: bool,
}

/// The tables, in creation order: `t1` (distributed, INT primary key with AUTO_INCREMENT as shard key), `t2`
/// (distributed, composite primary key, explicit composite `SHARD KEY`), `t3` (distributed, no key: rows spread),
/// `r` (reference table).
pub fn schema() -> Vec<String> {
    vec![
        "CREATE TABLE t1 (id INT NOT NULL AUTO_INCREMENT, a INT, b BIGINT, d DOUBLE, s VARCHAR(20), PRIMARY KEY (id))"
            .to_string(),
        "CREATE TABLE t2 (k1 INT NOT NULL, k2 VARCHAR(10) NOT NULL, a INT, d DOUBLE, s VARCHAR(20), \
         PRIMARY KEY (k1, k2), SHARD KEY (k2, k1))"
            .to_string(),
        "CREATE TABLE t3 (a INT, b INT, s VARCHAR(20))".to_string(),
        "CREATE REFERENCE TABLE r (id INT NOT NULL, name VARCHAR(20), w DOUBLE, PRIMARY KEY (id))".to_string(),
    ]
}

const STRINGS: &[&str] = &["", "a", "b", "abc", "B", "x y", "5", "-3", "it''s", "zz"];
const K2: &[&str] = &["a", "b", "c", "5", "x y", "07"];

fn int_or_null<R: Rng>(rng: &mut R, lo: i64, hi: i64) -> String {
    if rng.random_bool(0.15) { "NULL".to_string() } else { rng.random_range(lo..=hi).to_string() }
}

fn double_or_null<R: Rng>(rng: &mut R) -> String {
    if rng.random_bool(0.15) {
        "NULL".to_string()
    } else {
        let quarters: i64 = rng.random_range(-40..=80);
        format!("{}", quarters as f64 / 4.0)
    }
}

fn string_or_null<R: Rng>(rng: &mut R) -> String {
    if rng.random_bool(0.15) { "NULL".to_string() } else { format!("'{}'", STRINGS.choose(rng).unwrap_or(&"")) }
}

fn big<R: Rng>(rng: &mut R) -> String {
    match rng.random_range(0..4) {
        0 => "NULL".to_string(),
        1 => rng.random_range(-3_000_000_000i64..3_000_000_000).to_string(),
        _ => rng.random_range(-20..20).to_string(),
    }
}

/// INSERT statements for about `count` rows per table. `t1` ids start at `id_base` (some rows leave the id to
/// AUTO_INCREMENT); `t2` keys are unique pairs derived from `id_base`.
pub fn rows<R: Rng>(rng: &mut R, count: usize, id_base: i64) -> Vec<String> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    for i in 0..count {
        if rng.random_bool(0.2) {
            // Let AUTO_INCREMENT choose the id (omitted, NULL or 0).
            match rng.random_range(0..3) {
                0 => out.push(format!(
                    "INSERT INTO t1 (a, b, d, s) VALUES ({}, {}, {}, {})",
                    int_or_null(rng, -5, 10),
                    big(rng),
                    double_or_null(rng),
                    string_or_null(rng)
                )),
                1 => out.push(format!(
                    "INSERT INTO t1 VALUES (NULL, {}, {}, {}, {})",
                    int_or_null(rng, -5, 10),
                    big(rng),
                    double_or_null(rng),
                    string_or_null(rng)
                )),
                _ => out.push(format!("INSERT INTO t1 (id, a) VALUES (0, {})", int_or_null(rng, -5, 10))),
            }
            continue;
        }
        let id = id_base + i as i64;
        let id_text = match rng.random_range(0..6) {
            0 => format!("'{id}'"),
            1 => format!("{id} + 0"),
            _ => id.to_string(),
        };
        batch.push(format!(
            "({id_text}, {}, {}, {}, {})",
            int_or_null(rng, -5, 10),
            big(rng),
            double_or_null(rng),
            string_or_null(rng)
        ));
        if batch.len() >= 7 {
            out.push(format!("INSERT INTO t1 (id, a, b, d, s) VALUES {}", batch.join(", ")));
            batch.clear();
        }
    }
    if !batch.is_empty() {
        out.push(format!("INSERT INTO t1 (id, a, b, d, s) VALUES {}", batch.join(", ")));
    }
    for i in 0..count {
        let k1 = id_base / 10 + (i / K2.len()) as i64;
        let k2 = K2[i % K2.len()];
        let k1_text = if rng.random_bool(0.2) { format!("'{k1}'") } else { k1.to_string() };
        let k2_text = if k2 == "5" && rng.random_bool(0.5) { "5".to_string() } else { format!("'{k2}'") };
        out.push(format!(
            "INSERT INTO t2 VALUES ({k1_text}, {k2_text}, {}, {}, {})",
            int_or_null(rng, -5, 10),
            double_or_null(rng),
            string_or_null(rng)
        ));
    }
    let mut t3 = Vec::new();
    for _ in 0..count {
        t3.push(format!("({}, {}, {})", int_or_null(rng, -3, 6), int_or_null(rng, 0, 3), string_or_null(rng)));
    }
    for chunk in t3.chunks(9) {
        out.push(format!("INSERT INTO t3 (a, b, s) VALUES {}", chunk.join(", ")));
    }
    for i in 0..(count / 3).max(4) {
        let id = id_base / 10 + i as i64 - 2;
        out.push(format!("INSERT IGNORE INTO r VALUES ({id}, {}, {})", string_or_null(rng), double_or_null(rng)));
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Int,
    Real,
    Text,
}

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Ty)],
    /// Columns that together order the table's rows totally.
    key: &'static [&'static str],
}

const T1: Table = Table {
    name: "t1",
    columns: &[("id", Ty::Int), ("a", Ty::Int), ("b", Ty::Int), ("d", Ty::Real), ("s", Ty::Text)],
    key: &["id"],
};
const T2: Table = Table {
    name: "t2",
    columns: &[("k1", Ty::Int), ("k2", Ty::Text), ("a", Ty::Int), ("d", Ty::Real), ("s", Ty::Text)],
    key: &["k1", "k2"],
};
const T3: Table =
    Table { name: "t3", columns: &[("a", Ty::Int), ("b", Ty::Int), ("s", Ty::Text)], key: &["a", "b", "s"] };
const R: Table = Table { name: "r", columns: &[("id", Ty::Int), ("name", Ty::Text), ("w", Ty::Real)], key: &["id"] };
const DISTRIBUTED: &[&Table] = &[&T1, &T2, &T3];
const ALL: &[&Table] = &[&T1, &T2, &T3, &R];

fn pick<'a, R: Rng, T>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn column<R: Rng>(rng: &mut R, t: &Table, q: Option<&str>, ty: Option<Ty>) -> String {
    let candidates: Vec<&(&str, Ty)> = t.columns.iter().filter(|(_, c)| ty.is_none_or(|want| want == *c)).collect();
    let (name, _) = if candidates.is_empty() { pick(rng, t.columns) } else { *pick(rng, &candidates) };
    match q {
        Some(q) => format!("{q}.{name}"),
        None => name.to_string(),
    }
}

fn literal<R: Rng>(rng: &mut R, ty: Ty) -> String {
    match ty {
        Ty::Int => match rng.random_range(0..10) {
            0 => "NULL".to_string(),
            1 => format!("'{}'", rng.random_range(-3..8)),
            _ => rng.random_range(-5..12).to_string(),
        },
        Ty::Real => format!("{}", rng.random_range(-8..40) as f64 / 4.0),
        Ty::Text => format!("'{}'", pick(rng, STRINGS)),
    }
}

/// A scalar expression over one table's columns.
fn expr<R: Rng>(rng: &mut R, t: &Table, q: Option<&str>, depth: u32) -> String {
    let leaf = depth == 0 || rng.random_bool(0.4);
    if leaf {
        return if rng.random_bool(0.8) {
            column(rng, t, q, None)
        } else {
            let ty = *pick(rng, &[Ty::Int, Ty::Real, Ty::Text]);
            literal(rng, ty)
        };
    }
    let num = |rng: &mut R| {
        let ty = *pick(rng, &[Ty::Int, Ty::Int, Ty::Real]);
        column(rng, t, q, Some(ty))
    };
    match rng.random_range(0..20) {
        12 => format!("{} DIV {}", num(rng), pick(rng, &["2", "3", "0", "-2", "0.5"])),
        13 => format!("CONCAT({}, '-', {})", column(rng, t, q, None), column(rng, t, q, None)),
        14 => format!("LPAD({}, 4, '*')", column(rng, t, q, None)),
        15 => format!(
            "{}({}, {})",
            pick(rng, &["LEFT", "RIGHT"]),
            column(rng, t, q, Some(Ty::Text)),
            rng.random_range(-1..4)
        ),
        16 => format!("LOCATE('{}', {})", pick(rng, &["a", "b", " ", ""]), column(rng, t, q, Some(Ty::Text))),
        17 => format!(
            "DATE_ADD('2024-01-31', INTERVAL {} {})",
            column(rng, t, q, Some(Ty::Int)),
            pick(rng, &["DAY", "MONTH", "HOUR"])
        ),
        18 => format!("DATE_FORMAT('2024-03-05' + INTERVAL {} DAY, '%a %D %b %Y')", column(rng, t, q, Some(Ty::Int))),
        19 => format!("CHAR_LENGTH(REVERSE({}))", column(rng, t, q, None)),
        0 => format!("{} + {}", num(rng), rng.random_range(-3..5)),
        1 => format!("{} * {}", num(rng), expr(rng, t, q, depth - 1)),
        2 => format!("{} / {}", num(rng), pick(rng, &["2", "3", "0", "-2", "2.0"])),
        3 => format!("{} % {}", column(rng, t, q, Some(Ty::Int)), pick(rng, &["2", "3", "0"])),
        4 => format!("COALESCE({}, {})", column(rng, t, q, None), literal(rng, Ty::Int)),
        5 => format!("IFNULL({}, {})", column(rng, t, q, None), literal(rng, Ty::Text)),
        6 => format!("UPPER({})", column(rng, t, q, Some(Ty::Text))),
        7 => format!("LENGTH({})", column(rng, t, q, None)),
        8 => format!("SUBSTR({}, 1, 2)", column(rng, t, q, Some(Ty::Text))),
        9 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            predicate(rng, t, q, 0),
            expr(rng, t, q, depth - 1),
            expr(rng, t, q, depth - 1)
        ),
        10 => format!("ABS({})", num(rng)),
        _ => format!("({} - {})", num(rng), num(rng)),
    }
}

fn predicate<R: Rng>(rng: &mut R, t: &Table, q: Option<&str>, depth: u32) -> String {
    if depth > 0 && rng.random_bool(0.35) {
        let op = if rng.random_bool(0.6) { "AND" } else { "OR" };
        return format!("({} {op} {})", predicate(rng, t, q, depth - 1), predicate(rng, t, q, depth - 1));
    }
    let (name, ty) = *pick(rng, t.columns);
    let c = match q {
        Some(q) => format!("{q}.{name}"),
        None => name.to_string(),
    };
    match rng.random_range(0..9) {
        0 => format!("{c} IS NULL"),
        1 => format!("{c} IS NOT NULL"),
        2 => format!("{c} BETWEEN {} AND {}", literal(rng, ty), literal(rng, ty)),
        3 => format!("{c} IN ({}, {}, {})", literal(rng, ty), literal(rng, ty), literal(rng, ty)),
        4 if ty == Ty::Text => format!("{c} LIKE '{}%'", pick(rng, &["a", "b", "x", ""])),
        5 => format!("NOT ({c} = {})", literal(rng, ty)),
        _ => format!("{c} {} {}", pick(rng, &["=", "<", ">", "<=", ">=", "<>"]), literal(rng, ty)),
    }
}

fn where_clause<R: Rng>(rng: &mut R, t: &Table, q: Option<&str>) -> String {
    if rng.random_bool(0.3) { String::new() } else { format!(" WHERE {}", predicate(rng, t, q, 2)) }
}

fn select_list<R: Rng>(rng: &mut R, t: &Table, q: Option<&str>) -> String {
    if rng.random_bool(0.2) {
        return "*".to_string();
    }
    let n = rng.random_range(1..=4);
    let mut items = Vec::new();
    for i in 0..n {
        let e = expr(rng, t, q, 2);
        if rng.random_bool(0.3) { items.push(format!("{e} AS c{i}")) } else { items.push(e) }
    }
    items.join(", ")
}

fn key_order(t: &Table, q: Option<&str>) -> String {
    t.key
        .iter()
        .map(|k| match q {
            Some(q) => format!("{q}.{k}"),
            None => k.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn limit<R: Rng>(rng: &mut R) -> String {
    match rng.random_range(0..4) {
        0 => format!(" LIMIT {}", rng.random_range(0..15)),
        1 => format!(" LIMIT {} OFFSET {}", rng.random_range(1..10), rng.random_range(0..20)),
        2 => format!(" LIMIT {}, {}", rng.random_range(0..10), rng.random_range(1..10)),
        _ => String::new(),
    }
}

/// One random SELECT.
pub fn query<R: Rng>(rng: &mut R) -> GeneratedQuery {
    let unordered = |sql: String| GeneratedQuery { sql, ordered: false };
    let ordered = |sql: String| GeneratedQuery { sql, ordered: true };
    match rng.random_range(0..22) {
        // Point lookups by shard key, including quoted numbers and IN lists.
        0 => {
            let id = rng.random_range(1..60);
            let lit = if rng.random_bool(0.3) { format!("'{id}'") } else { id.to_string() };
            let extra =
                if rng.random_bool(0.4) { format!(" AND {}", predicate(rng, &T1, None, 1)) } else { String::new() };
            let items = if rng.random_bool(0.2) {
                "COUNT(*), SUM(a), MAX(s), ROW_NUMBER() OVER (ORDER BY id)".to_string()
            } else {
                select_list(rng, &T1, None)
            };
            unordered(format!("SELECT {items} FROM t1 WHERE id = {lit}{extra}"))
        }
        1 => {
            let k1 = rng.random_range(0..12);
            let k2 = pick(rng, K2);
            let k2 = if *k2 == "5" && rng.random_bool(0.5) { "5".to_string() } else { format!("'{k2}'") };
            let (a, b) = if rng.random_bool(0.5) {
                (format!("k1 = {k1}"), format!("k2 = {k2}"))
            } else {
                (format!("{k2} = t2.k2"), format!("t2.k1 IN ({k1}, {})", k1 + 1))
            };
            unordered(format!("SELECT {} FROM t2 WHERE {a} AND {b}", select_list(rng, &T2, None)))
        }
        2 => {
            let ids: Vec<String> = (0..rng.random_range(1..5)).map(|_| rng.random_range(1..60).to_string()).collect();
            unordered(format!("SELECT * FROM t1 WHERE id IN ({}){}", ids.join(", "), where_and(rng, &T1)))
        }
        // Filters, with and without qualification.
        3 | 4 => {
            let t = *pick(rng, ALL);
            let from = if rng.random_bool(0.2) { format!("test.{}", t.name) } else { t.name.to_string() };
            unordered(format!("SELECT {} FROM {from}{}", select_list(rng, t, None), where_clause(rng, t, None)))
        }
        // ORDER BY a total order, with LIMIT/OFFSET.
        5 | 6 => {
            let t = *pick(rng, DISTRIBUTED);
            let lead = column(rng, t, None, None);
            let dir = if rng.random_bool(0.5) { " DESC" } else { "" };
            let items = select_list(rng, t, None);
            let by = match rng.random_range(0..3) {
                0 if items != "*" => format!("1{dir}, {lead}, {}", key_order(t, None)),
                _ => format!("{lead}{dir}, {}", key_order(t, None)),
            };
            ordered(format!("SELECT {items} FROM {}{} ORDER BY {by}{}", t.name, where_clause(rng, t, None), limit(rng)))
        }
        // DISTINCT.
        7 => {
            let t = *pick(rng, DISTRIBUTED);
            let c = column(rng, t, None, None);
            if rng.random_bool(0.5) {
                ordered(format!(
                    "SELECT DISTINCT {c} FROM {}{} ORDER BY {c}{}",
                    t.name,
                    where_clause(rng, t, None),
                    limit(rng)
                ))
            } else {
                let e = expr(rng, t, None, 1);
                unordered(format!("SELECT DISTINCT {c}, {e} FROM {}{}", t.name, where_clause(rng, t, None)))
            }
        }
        // Aggregates with GROUP BY / HAVING / ORDER BY.
        8..=11 => aggregate(rng),
        // Subqueries.
        12 | 13 => subquery(rng),
        // Joins.
        14..=16 => join(rng),
        17 => {
            let (t, u) = (*pick(rng, ALL), *pick(rng, ALL));
            let op = pick(rng, &["UNION", "UNION ALL", "INTERSECT", "EXCEPT"]);
            let (c, e) = (column(rng, t, None, Some(Ty::Int)), column(rng, u, None, Some(Ty::Int)));
            unordered(format!(
                "SELECT {c} FROM {}{} {op} SELECT {e} FROM {}{}",
                t.name,
                where_clause(rng, t, None),
                u.name,
                where_clause(rng, u, None)
            ))
        }
        18 => {
            let t = *pick(rng, DISTRIBUTED);
            let part = column(rng, t, None, None);
            let f = pick(rng, &["ROW_NUMBER()", "RANK()", "SUM(a)", "COUNT(*)", "MAX(d)"]);
            let f = if t.name == "t3" && *f == "MAX(d)" { "MIN(b)" } else { f };
            ordered(format!(
                "SELECT {}, {part}, {f} OVER (PARTITION BY {part} ORDER BY {}) AS w FROM {} ORDER BY {}",
                key_order(t, None),
                key_order(t, None),
                t.name,
                key_order(t, None)
            ))
        }
        19 => {
            let t = *pick(rng, DISTRIBUTED);
            let g = column(rng, t, None, Some(Ty::Int));
            unordered(format!(
                "WITH c AS (SELECT {g} AS g, COUNT(*) AS n FROM {}{} GROUP BY {g}) SELECT g, n FROM c WHERE n > {}",
                t.name,
                where_clause(rng, t, None),
                rng.random_range(0..3)
            ))
        }
        20 => {
            let e = [
                "1 + 1",
                "7 / 2",
                "-7 / 2",
                "7 % 3",
                "NULL + 1",
                "COALESCE(NULL, 3)",
                "5 / 0",
                "'a' || 'b'",
                "UPPER('x')",
                "7 DIV 2",
                "7.5 % 2",
                "NOW() > '2000-01-01'",
                "DATE_FORMAT('2024-03-05', '%W %D %M')",
                "LPAD('7', 3, '0')",
                "TIMESTAMPDIFF(DAY, '2024-01-01', '2024-03-01')",
                "'2024-01-31' + INTERVAL 1 MONTH",
                "FORMAT(1234567.891, 2)",
                "SUBSTRING_INDEX('www.mysql.com', '.', -2)",
            ];
            unordered(format!("SELECT {}, {}", pick(rng, &e), pick(rng, &e)))
        }
        _ => {
            // Reference table alone.
            unordered(format!("SELECT {} FROM r{}", select_list(rng, &R, None), where_clause(rng, &R, None)))
        }
    }
}

fn where_and<R: Rng>(rng: &mut R, t: &Table) -> String {
    if rng.random_bool(0.5) { format!(" AND {}", predicate(rng, t, None, 1)) } else { String::new() }
}

fn aggregate<R: Rng>(rng: &mut R) -> GeneratedQuery {
    let t = *pick(rng, DISTRIBUTED);
    let num = |rng: &mut R| {
        let ty = *pick(rng, &[Ty::Int, Ty::Real]);
        column(rng, t, None, Some(ty))
    };
    let mut aggs = Vec::new();
    for i in 0..rng.random_range(1..=4) {
        let a = match rng.random_range(0..12) {
            0 => "COUNT(*)".to_string(),
            1 => format!("COUNT({})", column(rng, t, None, None)),
            2 => format!("SUM({})", num(rng)),
            3 => format!("MIN({})", column(rng, t, None, None)),
            4 => format!("MAX({})", column(rng, t, None, None)),
            5 => format!("AVG({})", num(rng)),
            6 => format!("TOTAL({})", num(rng)),
            7 => format!("SUM({} * 2) + COUNT(*)", num(rng)),
            8 => format!("COUNT(DISTINCT {})", column(rng, t, None, None)),
            9 => format!("COALESCE(MAX({}), -1)", num(rng)),
            10 => format!("MAX(LENGTH({}))", column(rng, t, None, Some(Ty::Text))),
            _ => format!("SUM({}) / 2", column(rng, t, None, Some(Ty::Int))),
        };
        aggs.push(if rng.random_bool(0.3) { format!("{a} AS agg{i}") } else { a });
    }
    let filter = where_clause(rng, t, None);
    match rng.random_range(0..4) {
        0 => GeneratedQuery { sql: format!("SELECT {} FROM {}{filter}", aggs.join(", "), t.name), ordered: false },
        _ => {
            let g1 = column(rng, t, None, None);
            let mut groups = vec![g1.clone()];
            if rng.random_bool(0.3) {
                let g2 = column(rng, t, None, None);
                if g2 != g1 {
                    groups.push(g2);
                }
            }
            if rng.random_bool(0.15) {
                groups[0] = format!("{} % 3", column(rng, t, None, Some(Ty::Int)));
            }
            let keys = groups.join(", ");
            let group_by = if rng.random_bool(0.2) {
                (1..=groups.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            } else {
                keys.clone()
            };
            let having = match rng.random_range(0..4) {
                0 => format!(" HAVING COUNT(*) > {}", rng.random_range(0..3)),
                1 => format!(" HAVING SUM({}) IS NOT NULL", num(rng)),
                2 => format!(" HAVING MIN({}) < {}", column(rng, t, None, Some(Ty::Int)), rng.random_range(-2..5)),
                _ => String::new(),
            };
            let sql = format!("SELECT {keys}, {} FROM {}{filter} GROUP BY {group_by}{having}", aggs.join(", "), t.name);
            if rng.random_bool(0.5) {
                let aliased = aggs.iter().find_map(|a| a.split(" AS ").nth(1).map(str::to_string));
                let order = if let (Some(alias), true) = (aliased, rng.random_bool(0.4)) {
                    format!("{alias} DESC, {keys}")
                } else if rng.random_bool(0.5) {
                    (1..=groups.len()).map(|i| format!("{i} DESC")).collect::<Vec<_>>().join(", ")
                } else {
                    keys
                };
                GeneratedQuery { sql: format!("{sql} ORDER BY {order}{}", limit(rng)), ordered: true }
            } else {
                GeneratedQuery { sql, ordered: false }
            }
        }
    }
}

fn subquery<R: Rng>(rng: &mut R) -> GeneratedQuery {
    let sql = match rng.random_range(0..7) {
        0 => format!("SELECT id, a FROM t1 WHERE a IN (SELECT a FROM t2{})", where_clause(rng, &T2, None)),
        1 => format!(
            "SELECT k1, k2 FROM t2 WHERE EXISTS (SELECT 1 FROM t1 WHERE t1.id = t2.k1{})",
            if rng.random_bool(0.5) { " AND t1.a > 0" } else { "" }
        ),
        2 => "SELECT id FROM t1 WHERE NOT EXISTS (SELECT 1 FROM t3 WHERE t3.a = t1.a)".to_string(),
        3 => format!(
            "SELECT id, (SELECT MAX(w) FROM r WHERE r.id = t1.a) AS mw FROM t1{}",
            where_clause(rng, &T1, Some("t1"))
        ),
        4 => "SELECT a, b FROM t3 WHERE a > (SELECT AVG(a) FROM t1)".to_string(),
        5 => format!("SELECT id, s FROM t1 WHERE a IN (SELECT id FROM r){}", where_and(rng, &T1)),
        _ => "SELECT x.a, x.n FROM (SELECT a, COUNT(*) AS n FROM t3 GROUP BY a) AS x WHERE x.n > 1".to_string(),
    };
    GeneratedQuery { sql, ordered: false }
}

fn join<R: Rng>(rng: &mut R) -> GeneratedQuery {
    let sql = match rng.random_range(0..9) {
        0 => format!(
            "SELECT t1.id, t2.k1, t2.k2, t1.a FROM t1 JOIN t2 ON t1.id = t2.k1{}",
            where_clause(rng, &T1, Some("t1"))
        ),
        1 => "SELECT t1.id, t2.k2 FROM t1 JOIN t2 ON t1.a = t2.a".to_string(),
        2 => format!("SELECT t1.id, r.name, r.w FROM t1 JOIN r ON t1.a = r.id{}", where_clause(rng, &T1, Some("t1"))),
        3 => format!("SELECT t1.id, r.name FROM t1 LEFT JOIN r ON t1.a = r.id{}", where_clause(rng, &T1, Some("t1"))),
        4 => "SELECT r.id, t1.id FROM r LEFT JOIN t1 ON r.id = t1.a".to_string(),
        5 => "SELECT t1.id, t2.k2 FROM t1 LEFT JOIN t2 ON t1.id = t2.k1 AND t2.a > 0".to_string(),
        6 => format!(
            "SELECT r.name, COUNT(*), SUM(t1.d) FROM t1 JOIN r ON t1.a = r.id GROUP BY r.name{}",
            if rng.random_bool(0.5) { " HAVING COUNT(*) > 1" } else { "" }
        ),
        7 => "SELECT t3.a, r.name FROM t3, r WHERE t3.a = r.id AND t3.b > 1".to_string(),
        _ => format!(
            "SELECT x.id, y.id FROM t1 AS x JOIN t1 AS y ON x.a = y.id WHERE x.id < {}",
            rng.random_range(5..40)
        ),
    };
    GeneratedQuery { sql, ordered: false }
}

/// One random write: UPDATE, DELETE, REPLACE, INSERT IGNORE or ON DUPLICATE KEY UPDATE.
pub fn write<R: Rng>(rng: &mut R) -> String {
    match rng.random_range(0..10) {
        0 => format!("UPDATE t1 SET a = a + 1, s = 'u'{}", where_clause(rng, &T1, None)),
        1 => format!("UPDATE t1 SET d = d * 2 WHERE id = {}", rng.random_range(1..60)),
        2 => format!("DELETE FROM t3{}", where_clause(rng, &T3, None)),
        3 => format!("DELETE FROM t2 WHERE k1 = {} AND k2 = '{}'", rng.random_range(0..12), pick(rng, K2)),
        4 => format!("UPDATE t2 SET a = NULL WHERE k1 IN ({}, {})", rng.random_range(0..12), rng.random_range(0..12)),
        5 => format!("UPDATE r SET w = w + 1 WHERE id = {}", rng.random_range(0..10)),
        6 => format!(
            "REPLACE INTO t1 (id, a, s) VALUES ({}, {}, 'rep')",
            rng.random_range(1..60),
            rng.random_range(-3..3)
        ),
        7 => format!("INSERT IGNORE INTO t2 (k1, k2, a) VALUES ({}, '{}', 99)", rng.random_range(0..12), pick(rng, K2)),
        8 => format!(
            "INSERT INTO t1 (id, a) VALUES ({}, 5) ON DUPLICATE KEY UPDATE a = a + VALUES(a)",
            rng.random_range(1..60)
        ),
        _ => format!("DELETE FROM t1 WHERE a = {} AND s IS NULL", rng.random_range(-5..10)),
    }
}
