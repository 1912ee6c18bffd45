//! The distributed planner: turns one parsed statement into a [`Plan`] (SQL strings for partitions plus a merge or
//! gather spec). Pure: it reads table definitions through [`PlanContext`] and never runs SQL itself; the server does
//! the IO and [`crate::merge`] finishes scatter and gather plans.
//!
//! Strategy, correct first: a query that names one shard key value runs on one partition ([`Plan::Single`]); a
//! query over one distributed table (reference tables joined in) is pushed down and merged ([`Plan::Scatter`]:
//! union + ORDER BY/LIMIT/DISTINCT, or partial aggregates); everything else ([`Plan::Gather`]) fetches the tables it
//! reads into a scratch SQLite and runs the query there, which is always correct. Writes route by shard key.
//! This module does not parse SQL text (callers pass `sqlparser` statements) and does not know cluster topology
//! beyond partition counts.
//!
//! Deliberately sent to gather: joins of two distributed tables (even co-located), self-joins, subqueries or CTEs
//! reading a distributed table, set operations, window functions (unless routed to one partition), DISTINCT
//! aggregates, GROUP_CONCAT and any function not known to be scalar, bare columns next to aggregates, GROUP BY an
//! alias, subqueries in the select list/HAVING/ORDER BY of an aggregate query, reference tables preserved by an
//! outer join, tables whose DDL declares a COLLATE, non-literal LIMIT/OFFSET. Known gap: a correlated subquery over
//! reference tables whose aggregate reads only outer columns (an outer-level aggregate in SQL terms) is scattered
//! as if per row. Unsupported writes: INSERT ... SELECT, multi-table UPDATE/DELETE, RETURNING, subqueries reading
//! a distributed table inside UPDATE/DELETE, ORDER BY/LIMIT on an UPDATE/DELETE spanning partitions.

mod aggregate;
mod explain;
mod mysql;
mod query;
mod render;
mod rewrite;
mod route;
mod write;

pub use explain::explain;
pub use render::sql as render;
pub use rewrite::bind_placeholders;
/// The value a literal expression stands for, as the planner reads it (None for anything else).
#[cfg(test)]
pub(crate) use rewrite::literal_value as literal_of;
pub use route::ParamRoute;

use sqlparser::ast::{ObjectName, Statement};

use crate::catalog::{Catalog, TableDef};
use crate::error::SqlError;
use crate::merge::MergeSpec;
pub use crate::merge::{GatherSource, GatherSpec};
use crate::value::Value;

/// What the planner needs from the server besides table definitions.
pub trait PlanContext: Catalog {
    /// Evaluate a constant SQL expression (non-literal shard-key values in INSERT, e.g. `1+1`, `lower('A')`).
    fn eval_constant(&mut self, expr_sql: &str) -> Result<Value, SqlError>;
    /// Take `count` consecutive AUTO_INCREMENT values of db.table from those the caller already reserved; returns
    /// the first, or `SqlError::AutoIncrementNeeded` when too few are held (the planner never writes metadata).
    fn allocate_auto_increment(&mut self, db: &str, table: &str, count: u64) -> Result<i64, SqlError>;
    /// Pick a partition for a row of a table with no shard key (rows spread evenly).
    fn spread_ordinal(&mut self, partitions: u32) -> u32;
    /// Values of the statement's numbered placeholders (`?1` is the first), for a prepared statement planned once
    /// with its parameters left in the SQL: routing reads them, the partitions receive them with the SQL.
    /// `eval_constant` must bind them too.
    fn params(&self) -> &[Value] {
        &[]
    }
    /// When the statement runs, in microseconds since the epoch (UTC), read once per statement by the caller:
    /// `NOW()` and its kin become this value (`plan::mysql`), the same on every partition.
    fn statement_time_micros(&self) -> i64;
    /// The client connection's CONNECTION_ID() and the server's VERSION(), when there is a connection.
    fn connection(&self) -> (Option<u32>, Option<&str>) {
        (None, None)
    }
}

/// How to execute one statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Run `sql` on one partition; its result is the answer unchanged.
    Single { db: String, ordinal: u32, sql: String },
    /// Run `partial_sql` on each of `ordinals`, then `merge::finish_scatter(&merge, partial_results)`.
    Scatter { db: String, ordinals: Vec<u32>, partial_sql: String, merge: MergeSpec },
    /// Fetch every listed source's rows, then `merge::finish_gather(&gather, fetched)`.
    Gather(GatherSpec),
    /// Only reference tables (or no tables at all, e.g. `SELECT 1+1`): run `sql` once on any copy of the
    /// database's reference tables (`db` None when no database is involved).
    Reference { db: Option<String>, sql: String },
    /// INSERT: one statement per partition, each holding the rows routed there, with the parameters to bind to its
    /// placeholders (the statement's own parameters, then the literal values the planner lifted out of those rows,
    /// so that partitions see one statement text per row shape). `first_auto_increment` is the first
    /// AUTO_INCREMENT value this statement allocated (MySQL's LAST_INSERT_ID); `rows` counts its rows.
    Insert {
        db: String,
        table: String,
        per_partition: Vec<(u32, String, Vec<Value>)>,
        first_auto_increment: Option<i64>,
        rows: u64,
    },
    /// UPDATE/DELETE on a distributed table: run `sql` on each of `ordinals`, sum affected rows.
    Write { db: String, ordinals: Vec<u32>, sql: String },
    /// Any write to a reference table: run on every copy. `first_auto_increment` as for [`Plan::Insert`] (None
    /// for UPDATE/DELETE and for inserts that gave every id).
    ReferenceWrite { db: String, sql: String, first_auto_increment: Option<i64> },
}

/// Plans one statement. `current_db` is the session's database (`USE db`).
pub fn plan(stmt: &Statement, current_db: Option<&str>, ctx: &mut dyn PlanContext) -> Result<Plan, SqlError> {
    if let Some(bad) = rewrite::unbound_placeholder(stmt, ctx.params().len()) {
        // `?` in a text query, or a number with no value: MySQL calls both a syntax error.
        return Err(SqlError::Parse(format!("near '{bad}': a parameter placeholder without a value")));
    }
    let mut stmt = stmt.clone();
    crate::precedence::fix(&mut stmt);
    rewrite::normalize_literals(&mut stmt);
    let (connection_id, version) = ctx.connection();
    rewrite::bind_session_functions(&mut stmt, rewrite::Session { db: current_db, connection_id, version });
    if rewrite::strip_select_hints(&mut stmt) {
        return Err(SqlError::Unsupported("SQL_CALC_FOUND_ROWS".to_string()));
    }
    mysql::rewrite(&mut stmt, ctx.statement_time_micros());
    match &stmt {
        Statement::Query(q) => query::plan_query(q, current_db, ctx),
        Statement::Insert(insert) => write::plan_insert(insert, current_db, ctx),
        Statement::Update(update) => write::plan_update(update, current_db, ctx),
        Statement::Delete(delete) => write::plan_delete(delete, current_db, ctx),
        other => Err(SqlError::Unsupported(format!("planning {}", statement_kind(other)))),
    }
}

/// Whether `plan` can run with the statement's parameters sent to the leaves beside its SQL (a prepared statement
/// planned with [`PlanContext::params`]): true when nothing the aggregator evaluates itself (an aggregate merge,
/// a gathered query, a table-free query) mentions a placeholder. Otherwise the caller binds the values into the
/// statement ([`bind_placeholders`]) and plans it again.
pub fn runs_with_params(plan: &Plan) -> bool {
    match plan {
        Plan::Single { .. }
        | Plan::Insert { .. }
        | Plan::Write { .. }
        | Plan::ReferenceWrite { .. }
        | Plan::Reference { db: Some(_), .. }
        | Plan::Scatter { merge: MergeSpec::Rows { .. }, .. } => true,
        Plan::Scatter { merge: MergeSpec::Aggregate { sql, .. }, .. } => !rewrite::mentions_placeholder(sql),
        Plan::Gather(_) | Plan::Reference { db: None, .. } => false,
    }
}

/// For a prepared statement (placeholders numbered `?N`) that reads or writes one distributed table whose shard key
/// columns are each fixed by one `key = ?N` condition: how its partition follows from the parameter values. The
/// caller may then reuse a [`Plan::Single`] or single-partition [`Plan::Write`] made for one set of values for
/// another, with the partition [`ParamRoute::ordinal`] gives, as long as the metadata is unchanged; it must check
/// that the route agrees with the plan it made. None when the statement has another shape.
pub fn reusable_route(stmt: &Statement, current_db: Option<&str>, ctx: &dyn Catalog) -> Option<ParamRoute> {
    if mysql::mentions_statement_time(stmt) {
        // The plan's SQL holds this execution's NOW() as a literal.
        return None;
    }
    let (name, selection, alias, select) = match stmt {
        Statement::Query(q) => {
            let sqlparser::ast::SetExpr::Select(select) = q.body.as_ref() else { return None };
            let sqlparser::ast::TableFactor::Table { name, .. } = &select.from.first()?.relation else { return None };
            (name, select.selection.as_ref(), None, Some(select.as_ref()))
        }
        Statement::Update(u) => {
            let (name, alias) = write::single_table(&u.table).ok()?;
            (name, u.selection.as_ref(), alias, None)
        }
        Statement::Delete(d) => {
            let from = match &d.from {
                sqlparser::ast::FromTable::WithFromKeyword(f) | sqlparser::ast::FromTable::WithoutKeyword(f) => f,
            };
            let (name, alias) = write::single_table(from.first()?).ok()?;
            (name, d.selection.as_ref(), alias, None)
        }
        _ => return None,
    };
    let Resolved::Table { db, def } = resolve(name, current_db, ctx).ok()? else { return None };
    if def.kind != crate::catalog::TableKind::Distributed {
        return None;
    }
    let n = ctx.partition_count(&db)?;
    let target = match select {
        Some(select) => query::find_target(select, &db, &def)?,
        None => route::Target {
            def: &def,
            qualifiers: match alias {
                Some(a) => vec![vec![a.value.to_lowercase()]],
                None => vec![vec![def.name.to_lowercase()], vec![db.to_lowercase(), def.name.to_lowercase()]],
            },
        },
    };
    route::param_route(selection, &target, n)
}

/// The statement as one SQLite database holding every table would run it: the MySQL rewrites the planner applies
/// (`DATABASE()`, hints, `plan::mysql` with `now_micros` as the statement's time), without distribution. What the
/// differential tests' oracle runs, so that it means what the cluster means.
pub fn translate<T>(stmt: &T, current_db: Option<&str>, now_micros: i64) -> String
where
    T: sqlparser::ast::VisitMut + std::fmt::Display + Clone,
{
    let mut stmt = stmt.clone();
    crate::precedence::fix(&mut stmt);
    rewrite::normalize_literals(&mut stmt);
    rewrite::bind_session_functions(&mut stmt, rewrite::Session { db: current_db, ..rewrite::Session::default() });
    let _ = rewrite::strip_select_hints(&mut stmt);
    mysql::rewrite(&mut stmt, now_micros);
    render::sql(&stmt)
}

fn statement_kind(stmt: &Statement) -> String {
    let text = stmt.to_string();
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The schema of virtual system tables.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// A table reference resolved against the catalog.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    Table { db: String, def: TableDef },
    Virtual { table: String },
}

/// Resolves `name` (`t` or `db.t`) against the catalog.
pub(crate) fn resolve(name: &ObjectName, current_db: Option<&str>, ctx: &dyn Catalog) -> Result<Resolved, SqlError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.clone()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| SqlError::Unsupported(format!("table name {name}")))?;
    let (db, table) = match parts.as_slice() {
        [table] => (current_db.ok_or(SqlError::NoDatabaseSelected)?.to_string(), table.clone()),
        [db, table] => (db.clone(), table.clone()),
        _ => return Err(SqlError::Unsupported(format!("table name {name}"))),
    };
    if db.eq_ignore_ascii_case(INFORMATION_SCHEMA) {
        return Ok(Resolved::Virtual { table });
    }
    if ctx.partition_count(&db).is_none() {
        return Err(SqlError::UnknownDatabase(db));
    }
    match ctx.table(&db, &table) {
        Some(def) => Ok(Resolved::Table { db, def: def.clone() }),
        None => Err(SqlError::UnknownTable { db, table }),
    }
}

fn partitions(ctx: &dyn PlanContext, db: &str) -> Result<u32, SqlError> {
    ctx.partition_count(db).ok_or_else(|| SqlError::UnknownDatabase(db.to_string()))
}

/// Whether a table's DDL declares a collation: comparisons on its text columns then differ from the binary
/// comparisons the hash and the merge table use, so the planner neither routes by its values nor merges over it.
fn has_collation(def: &TableDef) -> bool {
    def.create_sql.to_ascii_uppercase().contains("COLLATE")
}

#[cfg(test)]
mod tests;
