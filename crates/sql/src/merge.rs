//! Finishing distributed plans: combining per-partition partial results ([`finish_scatter`]) and answering gathered
//! queries ([`finish_gather`]). Both compute in a private in-memory SQLite used as a calculator, so the final step
//! has exactly SQLite's semantics. Owns [`MergeSpec`]; does no IO (no files, no network) and never decides what to
//! run on partitions (that is `plan`'s job).

use std::sync::Arc;

use rusqlite::Connection;

use crate::error::SqlError;
use crate::functions::Host;
use crate::value::{Column, ResultSet, Value};

/// A gathered query: load `sources` into a scratch SQLite (each table under a schema named after its database),
/// then run `sql` there. `sql` names every table as `"db"."table"`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatherSpec {
    pub sources: Vec<GatherSource>,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GatherSource {
    /// All rows of a distributed table: run `fetch_sql` on every partition of db and concatenate.
    /// `create_sql` is the table's DDL (unqualified; merge creates it under schema `db`).
    Distributed { db: String, table: String, fetch_sql: String, create_sql: String },
    /// A reference table: fetched from any one copy.
    Reference { db: String, table: String, fetch_sql: String, create_sql: String },
    /// A virtual system table (schema INFORMATION_SCHEMA, case-insensitive): the server supplies its rows and
    /// columns. `schema` is always lower case `information_schema`.
    Virtual { schema: String, table: String },
}

/// How to combine the partial results of a [`crate::plan::Plan::Scatter`].
#[derive(Debug, Clone, PartialEq)]
pub enum MergeSpec {
    /// The answer is the union of the partial rows, then optionally DISTINCT, ORDER BY and LIMIT/OFFSET over it.
    /// The last `hidden_columns` partial columns only carry sort keys and are dropped from the answer.
    Rows { hidden_columns: usize, distinct: bool, order_by: Vec<SortKey>, limit: Option<u64>, offset: u64 },
    /// The partial rows are loaded into a temporary table `_partial` with untyped columns `__p0, __p1, ...` and
    /// `sql` runs over it; its result columns are renamed after `columns`.
    Aggregate { sql: String, columns: Vec<OutputColumn> },
}

/// One ORDER BY key of a [`MergeSpec::Rows`] merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub column: SortColumn,
    pub descending: bool,
    /// `None`: SQLite's default (NULLs first ascending, last descending).
    pub nulls_first: Option<bool>,
}

/// A sort key column: the i-th visible column, or the i-th hidden column (after all visible ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Visible(usize),
    Hidden(usize),
}

/// Name and declared type of one result column of an aggregate merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: OutputName,
    /// The partial column whose declared type the result column reports (a grouped table column).
    pub decl_type_from: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputName {
    /// The name is known at plan time (an alias, or the expression text).
    Fixed(String),
    /// The name is whatever SQLite named this partial column on the partitions (a plain column reference).
    FromPartial(usize),
}

/// Combines the partial results of a scatter. `partials` holds one result per partition, in any order; `host`
/// serves the MySQL functions of the merge engine (`crate::functions`).
pub fn finish_scatter(spec: &MergeSpec, partials: Vec<ResultSet>, host: &Arc<dyn Host>) -> Result<ResultSet, SqlError> {
    let columns = partials.first().map(|p| p.columns.clone()).unwrap_or_default();
    let rows: Vec<Vec<Value>> = partials.into_iter().flat_map(|p| p.rows).collect();
    match spec {
        MergeSpec::Rows { hidden_columns, distinct, order_by, limit, offset } => {
            let visible = columns
                .len()
                .checked_sub(*hidden_columns)
                .ok_or_else(|| SqlError::Engine("partial result has fewer columns than its sort keys".to_string()))?;
            let mut out_columns = columns;
            out_columns.truncate(visible);
            if !distinct && order_by.is_empty() && limit.is_none() && *offset == 0 {
                let rows = rows.into_iter().map(|mut r| {
                    r.truncate(visible);
                    r
                });
                return Ok(ResultSet { columns: out_columns, rows: rows.collect() });
            }
            let conn = scratch(host)?;
            load_partial(&conn, visible + hidden_columns, &rows)?;
            let select: Vec<String> = (0..visible).map(partial_column).collect();
            let mut sql =
                format!("SELECT {}{} FROM _partial", if *distinct { "DISTINCT " } else { "" }, select.join(", "));
            if !order_by.is_empty() {
                let keys: Vec<String> = order_by
                    .iter()
                    .map(|k| {
                        let mut key = partial_column(match k.column {
                            SortColumn::Visible(i) => i,
                            SortColumn::Hidden(i) => visible + i,
                        });
                        if k.descending {
                            key.push_str(" DESC");
                        }
                        match k.nulls_first {
                            Some(true) => key.push_str(" NULLS FIRST"),
                            Some(false) => key.push_str(" NULLS LAST"),
                            None => {}
                        }
                        key
                    })
                    .collect();
                sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
            }
            if limit.is_some() || *offset > 0 {
                let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
                sql.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
            }
            let mut result = query(&conn, &sql)?;
            result.columns = out_columns;
            Ok(result)
        }
        MergeSpec::Aggregate { sql, columns: outputs } => {
            let conn = scratch(host)?;
            load_partial(&conn, columns.len(), &rows)?;
            let mut result = query(&conn, sql)?;
            if result.columns.len() != outputs.len() {
                return Err(SqlError::Engine("merge query returned an unexpected column count".to_string()));
            }
            result.columns = outputs
                .iter()
                .map(|out| {
                    let name = match &out.name {
                        OutputName::Fixed(name) => name.clone(),
                        OutputName::FromPartial(i) => columns.get(*i).map(|c| c.name.clone()).unwrap_or_default(),
                    };
                    let decl_type = out.decl_type_from.and_then(|i| columns.get(i)).and_then(|c| c.decl_type.clone());
                    Column { name, decl_type }
                })
                .collect();
            Ok(result)
        }
    }
}

/// The name of partial column `i` in the merge table.
pub fn partial_column(i: usize) -> String {
    format!("__p{i}")
}

/// Answers a gathered query: loads every source into a scratch SQLite under its schema, then runs `spec.sql`.
/// `fetched` holds one result per source, in order; a distributed source's result concatenates all partitions.
pub fn finish_gather(spec: &GatherSpec, fetched: Vec<ResultSet>, host: &Arc<dyn Host>) -> Result<ResultSet, SqlError> {
    if fetched.len() != spec.sources.len() {
        return Err(SqlError::Engine(format!(
            "gather expected {} fetched results, got {}",
            spec.sources.len(),
            fetched.len()
        )));
    }
    let conn = scratch(host)?;
    let mut attached: Vec<String> = Vec::new();
    for (source, result) in spec.sources.iter().zip(fetched) {
        let (schema, table, create) = match source {
            GatherSource::Distributed { db, table, create_sql, .. }
            | GatherSource::Reference { db, table, create_sql, .. } => {
                (db.as_str(), table.as_str(), qualify_create_sql(create_sql, db)?)
            }
            GatherSource::Virtual { schema, table } => {
                let columns: Vec<String> = result.columns.iter().map(|c| crate::quote::ident(&c.name)).collect();
                let create = format!(
                    "CREATE TABLE {}.{} ({})",
                    crate::quote::ident(schema),
                    crate::quote::ident(table),
                    columns.join(", ")
                );
                (schema.as_str(), table.as_str(), create)
            }
        };
        if !schema.eq_ignore_ascii_case("main") && !attached.iter().any(|a| a.eq_ignore_ascii_case(schema)) {
            conn.execute_batch(&format!("ATTACH DATABASE ':memory:' AS {}", crate::quote::ident(schema)))?;
            attached.push(schema.to_string());
        }
        conn.execute_batch(&create)?;
        let target = format!("{}.{}", crate::quote::ident(schema), crate::quote::ident(table));
        insert_rows(&conn, &target, result.columns.len(), &result.rows)?;
    }
    query(&conn, &spec.sql)
}

/// The merge engine: an in-memory SQLite with MySQL's functions, interruptible by the statement's time limit.
fn scratch(host: &Arc<dyn Host>) -> Result<Connection, SqlError> {
    let mut conn = Connection::open_in_memory()?;
    crate::value::interruptible(&mut conn);
    crate::functions::register(&conn, host.clone())?;
    Ok(conn)
}

fn load_partial(conn: &Connection, width: usize, rows: &[Vec<Value>]) -> Result<(), SqlError> {
    let columns: Vec<String> = (0..width).map(partial_column).collect();
    conn.execute_batch(&format!("CREATE TEMP TABLE _partial ({})", columns.join(", ")))?;
    insert_rows(conn, "temp._partial", width, rows)
}

/// Loads rows with one prepared INSERT inside one transaction.
fn insert_rows(conn: &Connection, target: &str, width: usize, rows: &[Vec<Value>]) -> Result<(), SqlError> {
    if rows.is_empty() {
        return Ok(());
    }
    let params: Vec<&str> = (0..width).map(|_| "?").collect();
    conn.execute_batch("BEGIN")?;
    let load = || -> Result<(), SqlError> {
        let mut stmt = conn.prepare(&format!("INSERT INTO {target} VALUES ({})", params.join(", ")))?;
        for row in rows {
            if row.len() != width {
                return Err(SqlError::Engine(format!("row has {} values, expected {width}", row.len())));
            }
            stmt.execute(rusqlite::params_from_iter(row.iter()))?;
        }
        Ok(())
    };
    match load() {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            conn.execute_batch("ROLLBACK")?;
            Err(e)
        }
    }
}

/// Runs a query and returns its rows with column names and declared types.
pub(crate) fn query(conn: &Connection, sql: &str) -> Result<ResultSet, SqlError> {
    Ok(crate::value::query_within(conn, sql, &[], crate::value::ReadLimits::RESULT)?)
}

/// Rewrites `CREATE TABLE name ...` (SQLite dialect) to create the table in `schema`: the table name is the first
/// identifier after `CREATE [TEMP|TEMPORARY] TABLE [IF NOT EXISTS]`, found with the tokenizer so that quoting and
/// comments cannot confuse it.
fn qualify_create_sql(create_sql: &str, schema: &str) -> Result<String, SqlError> {
    use sqlparser::dialect::SQLiteDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&SQLiteDialect {}, create_sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::Engine(format!("cannot read table DDL: {e}")))?;
    let mut seen_table = false;
    let mut out = String::new();
    let mut iter = tokens.iter().peekable();
    while let Some(tok) = iter.next() {
        if !seen_table
            && let Token::Word(w) = &tok.token
            && w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case("table")
        {
            seen_table = true;
            out.push_str(&tok.token.to_string());
            // Copy IF NOT EXISTS and whitespace, then qualify the next word.
            for next in iter.by_ref() {
                match &next.token {
                    Token::Word(w)
                        if w.quote_style.is_none()
                            && ["if", "not", "exists"].iter().any(|k| w.value.eq_ignore_ascii_case(k)) =>
                    {
                        out.push_str(&next.token.to_string());
                    }
                    Token::Word(w) => {
                        out.push_str(&format!("{}.{}", crate::quote::ident(schema), crate::quote::ident(&w.value)));
                        break;
                    }
                    Token::Whitespace(_) => out.push_str(&next.token.to_string()),
                    other => {
                        return Err(SqlError::Engine(format!("unexpected token {other} in table DDL")));
                    }
                }
            }
            continue;
        }
        out.push_str(&tok.token.to_string());
    }
    if !seen_table {
        return Err(SqlError::Engine(format!("not a CREATE TABLE statement: {create_sql}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sql_is_qualified() {
        let check = |sql: &str, expected: &str| assert_eq!(qualify_create_sql(sql, "db").unwrap(), expected);
        check("CREATE TABLE x (a INTEGER)", "CREATE TABLE \"db\".\"x\" (a INTEGER)");
        check("CREATE TABLE IF NOT EXISTS \"x y\" (a)", "CREATE TABLE IF NOT EXISTS \"db\".\"x y\" (a)");
        check("create table `t`(a TEXT, 'b' INT)", "create table \"db\".\"t\"(a TEXT, 'b' INT)");
    }

    fn rs(columns: &[&str], rows: Vec<Vec<Value>>) -> ResultSet {
        ResultSet::named(columns, rows)
    }

    #[test]
    fn rows_merge_orders_limits_and_drops_hidden_columns() {
        let spec = MergeSpec::Rows {
            hidden_columns: 1,
            distinct: false,
            order_by: vec![SortKey { column: SortColumn::Hidden(0), descending: true, nulls_first: None }],
            limit: Some(2),
            offset: 1,
        };
        let p1 = rs(&["a", "__h"], vec![vec![Value::Integer(1), Value::Integer(10)]]);
        let p2 = rs(&["a", "__h"], vec![vec![Value::Integer(2), Value::Integer(20)], vec![Value::Null, Value::Null]]);
        let out = finish_scatter(&spec, vec![p1, p2], &crate::functions::SeededHost::shared(0, 0)).unwrap();
        assert_eq!(out.columns, vec![Column::new("a")]);
        assert_eq!(out.rows, vec![vec![Value::Integer(1)], vec![Value::Null]]);
    }
}
