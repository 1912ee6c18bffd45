//! Planning writes: INSERT/REPLACE rows routed by shard key (AUTO_INCREMENT values allocated here), UPDATE and
//! DELETE routed by their WHERE clause, and every write to a reference table broadcast to all copies.
//! INSERT ... SELECT and multi-table UPDATE/DELETE are not supported.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, Delete, Expr, FromTable, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    Insert, ObjectName, OnInsert, SetExpr, SqliteOnConflict, TableFactor, TableObject, TableWithJoins, Update,
    VisitMut, VisitorMut,
};

use super::rewrite::{bound_value, cte_names, literal_value, relations, strip_qualifiers};
use super::route::{Target, route, value_for_column};
use super::{Plan, PlanContext, Resolved, partitions, render, resolve};
use crate::catalog::{ColumnDef, TableDef, TableKind};
use crate::error::SqlError;
use crate::quote::ident as quote_ident;
use crate::shard::partition_of;
use crate::value::Value;

/// The table a write targets.
fn target_table(
    name: &ObjectName,
    current_db: Option<&str>,
    ctx: &dyn PlanContext,
) -> Result<(String, TableDef), SqlError> {
    match resolve(name, current_db, ctx)? {
        Resolved::Table { db, def } => Ok((db, def)),
        Resolved::Virtual { table } => Err(SqlError::Unsupported(format!("writing to information_schema.{table}"))),
    }
}

pub(super) fn plan_insert(
    insert: &Insert,
    current_db: Option<&str>,
    ctx: &mut dyn PlanContext,
) -> Result<Plan, SqlError> {
    let TableObject::TableName(name) = &insert.table else {
        return Err(SqlError::Unsupported("INSERT into a table function".to_string()));
    };
    let (db, def) = target_table(name, current_db, &*ctx)?;
    if insert.returning.is_some() || insert.partitioned.is_some() || !insert.after_columns.is_empty() {
        return Err(SqlError::Unsupported("INSERT with RETURNING or PARTITION".to_string()));
    }
    // Column list: as written, or every column in table order.
    let (mut columns, rows): (Vec<&ColumnDef>, Vec<Vec<Expr>>) = if !insert.assignments.is_empty() {
        let mut cols = Vec::new();
        let mut row = Vec::new();
        for a in &insert.assignments {
            let AssignmentTarget::ColumnName(c) = &a.target else {
                return Err(SqlError::Unsupported("INSERT ... SET with a tuple".to_string()));
            };
            cols.push(column_of(&def, c)?);
            row.push(a.value.clone());
        }
        (cols, vec![row])
    } else {
        let cols = if insert.columns.is_empty() {
            def.columns.iter().collect()
        } else {
            insert.columns.iter().map(|c| column_of(&def, c)).collect::<Result<Vec<_>, _>>()?
        };
        let Some(source) = &insert.source else {
            return Err(SqlError::Unsupported("INSERT without VALUES".to_string()));
        };
        let SetExpr::Values(values) = source.body.as_ref() else {
            return Err(SqlError::Unsupported("INSERT ... SELECT (use INSERT ... VALUES)".to_string()));
        };
        if source.with.is_some() || source.order_by.is_some() || source.limit_clause.is_some() {
            return Err(SqlError::Unsupported("INSERT with a query source".to_string()));
        }
        (cols, values.rows.iter().map(|r| r.content.clone()).collect())
    };
    for (i, row) in rows.iter().enumerate() {
        if row.len() != columns.len() {
            return Err(SqlError::WrongValueCount { row: i as u64 + 1 });
        }
    }
    let mut rows = rows;

    // AUTO_INCREMENT: missing, NULL or 0 values get consecutive values from one reservation.
    let mut first_auto_increment = None;
    if let Some(ai) = def.auto_increment_column() {
        let at = match columns.iter().position(|c| c.name == ai.name) {
            Some(at) => at,
            None => {
                columns.push(ai);
                for row in &mut rows {
                    row.push(Expr::value(sqlparser::ast::Value::Null));
                }
                columns.len() - 1
            }
        };
        let needs: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| {
                matches!(bound_value(&row[at], ctx.params()), Some(Value::Null) | Some(Value::Integer(0)))
            })
            .map(|(i, _)| i)
            .collect();
        if !needs.is_empty() {
            let first = ctx.allocate_auto_increment(&db, &def.name, needs.len() as u64)?;
            first_auto_increment = Some(first);
            for (k, i) in needs.into_iter().enumerate() {
                let value = first + k as i64;
                rows[i][at] = Expr::value(sqlparser::ast::Value::Number(value.to_string(), false));
            }
        }
    }

    let verb = insert_verb(insert)?;
    let on_conflict = match &insert.on {
        None => String::new(),
        Some(OnInsert::DuplicateKeyUpdate(assignments)) => on_duplicate_key(assignments, &def)?,
        Some(_) => return Err(SqlError::Unsupported("INSERT ... ON CONFLICT".to_string())),
    };
    let column_list: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let head = format!("{verb} INTO {} ({}) VALUES ", quote_ident(&def.name), column_list.join(", "));

    if def.kind == TableKind::Reference {
        let values: Vec<String> = rows.iter().map(|r| render_row(r)).collect();
        let sql = format!("{head}{}{on_conflict}", values.join(", "));
        return Ok(Plan::ReferenceWrite { db, sql, first_auto_increment });
    }
    let n = partitions(&*ctx, &db)?;
    // Per partition: the rows routed there, and their parameters. Literal values are sent as parameters numbered
    // after the caller's, so the partitions see the same statement text for every row of the same shape and their
    // statement caches hit.
    let mut per_partition: BTreeMap<u32, (Vec<String>, Vec<Value>)> = BTreeMap::new();
    for row in &mut rows {
        let ordinal = if def.shard_key.is_empty() {
            ctx.spread_ordinal(n)
        } else {
            let mut key = Vec::with_capacity(def.shard_key.len());
            for k in &def.shard_key {
                let column = def
                    .column(k)
                    .ok_or_else(|| SqlError::UnknownColumn { table: def.name.clone(), column: k.clone() })?;
                let value = match columns.iter().position(|c| c.name == column.name) {
                    Some(at) => {
                        let (value, literal) = row_value(&row[at], column, ctx)?;
                        // Write the evaluated value so the stored row is exactly what was hashed.
                        row[at] = literal;
                        value
                    }
                    None => default_value(column, ctx)?,
                };
                key.push(value);
            }
            partition_of(&key, n)
        };
        let (values, params) = per_partition.entry(ordinal).or_insert_with(|| (Vec::new(), ctx.params().to_vec()));
        values.push(render_row_lifted(row, params));
    }
    let rows_count = rows.len() as u64;
    let per_partition = per_partition
        .into_iter()
        .map(|(ordinal, (values, params))| (ordinal, format!("{head}{}{on_conflict}", values.join(", ")), params))
        .collect();
    Ok(Plan::Insert { db, table: def.name.clone(), per_partition, first_auto_increment, rows: rows_count })
}

/// Parameters one partition statement may carry, its own and lifted ones (SQLite allows 32,766).
const LIFTED_PARAMS_MAX: usize = 30_000;

/// A VALUES row with each integer, text and NULL literal replaced by a new numbered placeholder whose value is
/// appended to `params` (what SQLite would read from the literal); other expressions, and every literal once
/// `params` is full, are rendered as they are.
fn render_row_lifted(row: &[Expr], params: &mut Vec<Value>) -> String {
    let values: Vec<String> = row
        .iter()
        .map(|e| match literal_value(e) {
            Some(v @ (Value::Integer(_) | Value::Text(_) | Value::Null)) if params.len() < LIFTED_PARAMS_MAX => {
                params.push(v);
                format!("?{}", params.len())
            }
            _ => render::sql(e),
        })
        .collect();
    format!("({})", values.join(", "))
}

fn column_of<'a>(def: &'a TableDef, name: &ObjectName) -> Result<&'a ColumnDef, SqlError> {
    let column = name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.clone()).unwrap_or_else(|| name.to_string());
    def.column(&column).ok_or(SqlError::UnknownColumn { table: def.name.clone(), column })
}

fn insert_verb(insert: &Insert) -> Result<&'static str, SqlError> {
    Ok(match (insert.replace_into, insert.ignore, &insert.or) {
        (true, false, None) => "INSERT OR REPLACE",
        (false, true, None) => "INSERT OR IGNORE",
        (false, false, None) => "INSERT",
        (false, false, Some(SqliteOnConflict::Replace)) => "INSERT OR REPLACE",
        (false, false, Some(SqliteOnConflict::Ignore)) => "INSERT OR IGNORE",
        _ => return Err(SqlError::Unsupported("this INSERT conflict clause".to_string())),
    })
}

/// `ON DUPLICATE KEY UPDATE c = expr` as SQLite's `ON CONFLICT DO UPDATE SET c = expr`, with `VALUES(c)` read as
/// `excluded.c`. Changing a shard key column is refused.
fn on_duplicate_key(assignments: &[sqlparser::ast::Assignment], def: &TableDef) -> Result<String, SqlError> {
    struct Excluded;
    impl VisitorMut for Excluded {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Function(Function { name, args: FunctionArguments::List(list), .. }) = expr {
                let is_values = name.0.len() == 1 && name.to_string().eq_ignore_ascii_case("values");
                if let (true, [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(column)))]) =
                    (is_values, list.args.as_slice())
                {
                    *expr = Expr::CompoundIdentifier(vec![Ident::new("excluded"), column.clone()]);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut sets = Vec::new();
    for a in assignments {
        let AssignmentTarget::ColumnName(c) = &a.target else {
            return Err(SqlError::Unsupported("ON DUPLICATE KEY UPDATE with a tuple".to_string()));
        };
        let column = column_of(def, c)?;
        if def.shard_key.iter().any(|k| k.eq_ignore_ascii_case(&column.name)) {
            return Err(SqlError::ShardKeyUpdate { column: column.name.clone() });
        }
        let mut value = a.value.clone();
        let _ = value.visit(&mut Excluded);
        sets.push(format!("{} = {}", quote_ident(&column.name), render::sql(&value)));
    }
    Ok(format!(" ON CONFLICT DO UPDATE SET {}", sets.join(", ")))
}

fn render_row(row: &[Expr]) -> String {
    let values: Vec<String> = row.iter().map(render::sql).collect();
    format!("({})", values.join(", "))
}

/// The stored value of one shard key cell (the column's affinity applied) and the literal to write for it.
fn row_value(expr: &Expr, column: &ColumnDef, ctx: &mut dyn PlanContext) -> Result<(Value, Expr), SqlError> {
    let raw = match bound_value(expr, ctx.params()) {
        Some(v) => v,
        None => ctx.eval_constant(&render::sql(expr))?,
    };
    let stored = match value_for_column(raw.clone(), column.affinity) {
        Some(v) => v,
        // A real whose text form needs 17 digits: let SQLite render it.
        None => ctx.eval_constant(&format!("CAST({} AS TEXT)", raw.to_sql_literal()))?,
    };
    let literal = literal_expr(&stored)?;
    Ok((stored, literal))
}

/// The literal expression of `value`: what parsing its MySQL literal gives, built directly for the common kinds (a
/// shard key is rewritten this way on every inserted row).
fn literal_expr(value: &Value) -> Result<Expr, SqlError> {
    use sqlparser::ast::Value as AstValue;
    Ok(match value {
        Value::Null => Expr::value(AstValue::Null),
        Value::Integer(i) => Expr::value(AstValue::Number(i.to_string(), false)),
        Value::Text(s) => Expr::value(AstValue::SingleQuotedString(s.clone())),
        // parse_expr reads MySQL, where a backslash in a string escapes the next character.
        other => super::rewrite::parse_expr(&other.to_mysql_literal())?,
    })
}

fn default_value(column: &ColumnDef, ctx: &mut dyn PlanContext) -> Result<Value, SqlError> {
    let raw = match &column.default {
        Some(sql) => ctx.eval_constant(sql)?,
        None => Value::Null,
    };
    match value_for_column(raw.clone(), column.affinity) {
        Some(v) => Ok(v),
        None => ctx.eval_constant(&format!("CAST({} AS TEXT)", raw.to_sql_literal())),
    }
}

pub(super) fn plan_update(
    update: &Update,
    current_db: Option<&str>,
    ctx: &mut dyn PlanContext,
) -> Result<Plan, SqlError> {
    if update.from.is_some() || !update.table.joins.is_empty() {
        return Err(SqlError::Unsupported("multi-table UPDATE".to_string()));
    }
    if update.returning.is_some() || update.output.is_some() {
        return Err(SqlError::Unsupported("UPDATE ... RETURNING".to_string()));
    }
    let (name, alias) = single_table(&update.table)?;
    let (db, def) = target_table(name, current_db, &*ctx)?;
    for a in &update.assignments {
        let targets: Vec<&ObjectName> = match &a.target {
            AssignmentTarget::ColumnName(c) => vec![c],
            AssignmentTarget::Tuple(cs) => cs.iter().collect(),
        };
        for t in targets {
            let column = column_of(&def, t)?;
            if def.kind == TableKind::Distributed && def.shard_key.iter().any(|k| k.eq_ignore_ascii_case(&column.name))
            {
                return Err(SqlError::ShardKeyUpdate { column: column.name.clone() });
            }
        }
    }
    let limited = !update.order_by.is_empty() || update.limit.is_some();
    let mut stmt = sqlparser::ast::Statement::Update(update.clone());
    plan_write(&mut stmt, db, &def, alias, update.selection.as_ref(), limited, current_db, ctx)
}

pub(super) fn plan_delete(
    delete: &Delete,
    current_db: Option<&str>,
    ctx: &mut dyn PlanContext,
) -> Result<Plan, SqlError> {
    let from = match &delete.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    if !delete.tables.is_empty() || delete.using.is_some() || from.len() != 1 || !from[0].joins.is_empty() {
        return Err(SqlError::Unsupported("multi-table DELETE".to_string()));
    }
    if delete.returning.is_some() || delete.output.is_some() {
        return Err(SqlError::Unsupported("DELETE ... RETURNING".to_string()));
    }
    let (name, alias) = single_table(&from[0])?;
    let (db, def) = target_table(name, current_db, &*ctx)?;
    let limited = !delete.order_by.is_empty() || delete.limit.is_some();
    let mut stmt = sqlparser::ast::Statement::Delete(delete.clone());
    plan_write(&mut stmt, db, &def, alias, delete.selection.as_ref(), limited, current_db, ctx)
}

pub(super) fn single_table(t: &TableWithJoins) -> Result<(&ObjectName, Option<&Ident>), SqlError> {
    match &t.relation {
        TableFactor::Table { name, alias, args: None, .. } => Ok((name, alias.as_ref().map(|a| &a.name))),
        _ => Err(SqlError::Unsupported("writing to something other than a table".to_string())),
    }
}

/// Routes an UPDATE or DELETE whose target is `def`. Subqueries may read reference tables only: a subquery over a
/// distributed table would see one partition's rows on each partition.
#[allow(clippy::too_many_arguments)]
fn plan_write(
    stmt: &mut sqlparser::ast::Statement,
    db: String,
    def: &TableDef,
    alias: Option<&Ident>,
    selection: Option<&Expr>,
    limited: bool,
    current_db: Option<&str>,
    ctx: &mut dyn PlanContext,
) -> Result<Plan, SqlError> {
    let ctes = cte_names(&*stmt);
    let names = relations(&*stmt, &ctes);
    // The first relation is the target itself; the rest come from subqueries.
    for name in names.iter().skip(1) {
        match resolve(name, current_db, &*ctx)? {
            Resolved::Table { db: other_db, def: other } => {
                if other.kind == TableKind::Distributed {
                    return Err(SqlError::Unsupported(format!(
                        "UPDATE/DELETE with a subquery reading distributed table {other_db}.{}",
                        other.name
                    )));
                }
                if other_db != db {
                    return Err(SqlError::Unsupported("UPDATE/DELETE reading another database".to_string()));
                }
            }
            Resolved::Virtual { .. } => {
                return Err(SqlError::Unsupported("UPDATE/DELETE reading information_schema".to_string()));
            }
        }
    }
    strip_qualifiers(stmt, &ctes);
    let sql = render::sql(&*stmt);
    if def.kind == TableKind::Reference {
        return Ok(Plan::ReferenceWrite { db, sql, first_auto_increment: None });
    }
    let n = partitions(&*ctx, &db)?;
    let qualifiers = match alias {
        Some(a) => vec![vec![a.value.to_lowercase()]],
        None => vec![vec![def.name.to_lowercase()], vec![db.to_lowercase(), def.name.to_lowercase()]],
    };
    let target = Target { def, qualifiers };
    let ordinals = match route(selection, &target, n, ctx.params()) {
        Some(o) => o,
        None => (0..n).collect(),
    };
    if limited && ordinals.len() > 1 {
        return Err(SqlError::Unsupported("ORDER BY or LIMIT on an UPDATE/DELETE that spans partitions".to_string()));
    }
    Ok(Plan::Write { db, ordinals, sql })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_is_what_its_mysql_text_reads_as() {
        for value in [
            Value::Null,
            Value::Integer(0),
            Value::Integer(-42),
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Text(String::new()),
            Value::Text("it's a \\ back\\slash, \"quoted\" and ünï\n".into()),
            Value::Real(1.5),
        ] {
            let direct = literal_expr(&value).unwrap();
            let parsed = super::super::rewrite::parse_expr(&value.to_mysql_literal()).unwrap();
            // The same value read back, and the same SQL rendered for the partitions.
            assert_eq!(literal_value(&direct), literal_value(&parsed), "{value:?}");
            assert_eq!(render::sql(&direct), render::sql(&parsed), "{value:?}");
        }
    }
}
