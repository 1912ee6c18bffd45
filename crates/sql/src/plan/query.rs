//! Planning SELECT: single partition when the WHERE fixes the shard key, scatter for one distributed table (rows
//! merged, or partial aggregates via `aggregate`), reference for reference tables only, gather for the rest.

use sqlparser::ast::{
    Distinct, Expr, Ident, JoinOperator, LimitClause, OrderByExpr, OrderByKind, OrderBySort, Query, Select,
    SelectFlavor, SelectItem, SetExpr, TableFactor, Visit,
};

use super::aggregate::plan_aggregate;
use super::rewrite::{cte_names, features, is_cte, parse_expr, qualify_tables, relations, strip_qualifiers};
use super::route::{Target, route};
use super::{GatherSource, GatherSpec, Plan, PlanContext, Resolved, has_collation, partitions, resolve};
use super::{INFORMATION_SCHEMA, render};
use crate::catalog::{TableDef, TableKind};
use crate::error::SqlError;
use crate::merge::{MergeSpec, SortColumn, SortKey};
use crate::quote::ident as quote_ident;

pub(super) fn plan_query(q: &Query, current_db: Option<&str>, ctx: &mut dyn PlanContext) -> Result<Plan, SqlError> {
    let ctes = cte_names(q);
    let names = relations(q, &ctes);
    let resolved = names.iter().map(|n| resolve(n, current_db, &*ctx)).collect::<Result<Vec<_>, _>>()?;
    if resolved.is_empty() {
        return Ok(Plan::Reference { db: None, sql: render::sql(q) });
    }
    let mut dbs: Vec<&str> = Vec::new();
    let mut any_virtual = false;
    for r in &resolved {
        match r {
            Resolved::Table { db, .. } if !dbs.contains(&db.as_str()) => dbs.push(db),
            Resolved::Table { .. } => {}
            Resolved::Virtual { .. } => any_virtual = true,
        }
    }
    if !any_virtual && dbs.len() == 1 {
        let db = dbs[0].to_string();
        let defs: Vec<&TableDef> = resolved
            .iter()
            .filter_map(|r| match r {
                Resolved::Table { def, .. } => Some(def),
                Resolved::Virtual { .. } => None,
            })
            .collect();
        let distributed: Vec<&TableDef> = defs.iter().copied().filter(|d| d.kind == TableKind::Distributed).collect();
        if distributed.is_empty() {
            let mut stripped = q.clone();
            strip_qualifiers(&mut stripped, &ctes);
            return Ok(Plan::Reference { db: Some(db), sql: render::sql(&stripped) });
        }
        if distributed.len() == 1
            && let Some(plan) = plan_one_table(q, &db, distributed[0], &defs, &ctes, ctx)?
        {
            return Ok(plan);
        }
    }
    gather(q, current_db, &ctes, ctx)
}

/// Single or scatter for a query that reads one distributed table once, in its top-level FROM clause; None when the
/// shape needs gather.
fn plan_one_table(
    q: &Query,
    db: &str,
    def: &TableDef,
    defs: &[&TableDef],
    ctes: &[String],
    ctx: &mut dyn PlanContext,
) -> Result<Option<Plan>, SqlError> {
    if !is_plain_query(q) {
        return Ok(None);
    }
    let SetExpr::Select(select) = q.body.as_ref() else {
        return Ok(None);
    };
    if !is_plain_select(select) {
        return Ok(None);
    }
    let Some(target) = find_target(select, db, def) else {
        return Ok(None);
    };
    let n = partitions(&*ctx, db)?;
    let mut stripped = q.clone();
    strip_qualifiers(&mut stripped, ctes);
    let SetExpr::Select(stripped_select) = stripped.body.as_ref() else {
        return Ok(None);
    };
    let ordinals = route(select.selection.as_ref(), &target, n, ctx.params());
    if let Some([ordinal]) = ordinals.as_deref() {
        return Ok(Some(Plan::Single { db: db.to_string(), ordinal: *ordinal, sql: render::sql(&stripped) }));
    }
    if defs.iter().any(|d| has_collation(d)) || !scatter_from_ok(select, def) {
        return Ok(None);
    }
    let mut f = features(&stripped_select.projection);
    for part in [features(&stripped_select.having), features(&stripped.order_by), features(&stripped_select.group_by)] {
        f.window |= part.window;
        f.collate |= part.collate;
        f.subquery |= part.subquery;
        f.unknown_function |= part.unknown_function;
        f.aggregate |= part.aggregate;
    }
    let from = features(&stripped_select.from);
    let filter = features(&stripped_select.selection);
    if f.window || f.collate || f.unknown_function || from.window || from.collate || filter.window || filter.collate {
        return Ok(None);
    }
    // An aggregate in WHERE or ON is an error in SQLite; an unknown function there is evaluated per row.
    let grouped = f.aggregate
        || stripped_select.having.is_some()
        || !matches!(&stripped_select.group_by, sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    let merged = if grouped {
        plan_aggregate(&stripped, stripped_select, f.subquery)?
    } else {
        plan_rows(&stripped, stripped_select)?
    };
    let Some((partial_sql, merge)) = merged else {
        return Ok(None);
    };
    let ordinals = ordinals.unwrap_or_else(|| (0..n).collect());
    Ok(Some(Plan::Scatter { db: db.to_string(), ordinals, partial_sql, merge }))
}

/// A query with nothing but a body, ORDER BY and LIMIT/OFFSET.
fn is_plain_query(q: &Query) -> bool {
    q.with.is_none()
        && q.fetch.is_none()
        && q.locks.is_empty()
        && q.for_clause.is_none()
        && q.settings.is_none()
        && q.format_clause.is_none()
        && q.pipe_operators.is_empty()
}

/// A SELECT without dialect extras the merge does not model.
fn is_plain_select(s: &Select) -> bool {
    s.top.is_none()
        && s.select_modifiers.is_none()
        && s.exclude.is_none()
        && s.into.is_none()
        && s.lateral_views.is_empty()
        && s.prewhere.is_none()
        && s.connect_by.is_empty()
        && s.cluster_by.is_empty()
        && s.distribute_by.is_empty()
        && s.sort_by.is_empty()
        && s.named_window.is_empty()
        && s.qualify.is_none()
        && s.value_table_mode.is_none()
        && matches!(s.flavor, SelectFlavor::Standard)
}

/// The distributed table in the top-level FROM clause with the qualifiers that name it; None if it is not there.
pub(super) fn find_target<'a>(select: &Select, db: &str, def: &'a TableDef) -> Option<Target<'a>> {
    let factors =
        select.from.iter().flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for factor in factors {
        if let TableFactor::Table { name, alias, args: None, .. } = factor {
            let last = name.0.last().and_then(|p| p.as_ident())?;
            if !last.value.eq_ignore_ascii_case(&def.name) {
                continue;
            }
            let qualifiers = match alias {
                Some(a) => vec![vec![a.name.value.to_lowercase()]],
                None => vec![vec![def.name.to_lowercase()], vec![db.to_lowercase(), def.name.to_lowercase()]],
            };
            return Some(Target { def, qualifiers });
        }
    }
    None
}

/// Whether every partition computes its share of the answer independently: the distributed table leads its join
/// chain and is joined only by inner or left joins (so no reference row is preserved once per partition), and no
/// other FROM item is a subquery.
fn scatter_from_ok(select: &Select, def: &TableDef) -> bool {
    let is_target = |f: &TableFactor| match f {
        TableFactor::Table { name, args: None, .. } => {
            name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case(&def.name))
        }
        _ => false,
    };
    let is_table = |f: &TableFactor| matches!(f, TableFactor::Table { args: None, .. });
    for twj in &select.from {
        if !is_table(&twj.relation) || twj.joins.iter().any(|j| !is_table(&j.relation)) {
            return false;
        }
        if twj.joins.iter().any(|j| is_target(&j.relation)) {
            return false;
        }
        if is_target(&twj.relation) {
            let inner_or_left = twj.joins.iter().all(|j| {
                matches!(
                    j.join_operator,
                    JoinOperator::Join(_)
                        | JoinOperator::Inner(_)
                        | JoinOperator::Left(_)
                        | JoinOperator::LeftOuter(_)
                        | JoinOperator::CrossJoin(_)
                )
            });
            if !inner_or_left {
                return false;
            }
        }
    }
    true
}

/// LIMIT and OFFSET as non-negative integer literals: `Some((limit, offset))`; None if they are anything else.
/// What a scatter merge must re-apply over the union of partition rows: DISTINCT, LIMIT/OFFSET and ORDER BY.
pub(super) struct RowShape<'q> {
    pub distinct: bool,
    pub limit: Option<u64>,
    pub offset: u64,
    pub terms: Vec<&'q OrderByExpr>,
}

/// The row shape of a query whose merge the planner can express, or `None` (DISTINCT ON, non-literal LIMIT,
/// ORDER BY forms it does not handle): the caller then gathers instead.
pub(super) fn row_shape<'q>(q: &'q Query, select: &Select) -> Option<RowShape<'q>> {
    let distinct = match &select.distinct {
        None | Some(Distinct::All) => false,
        Some(Distinct::Distinct) => true,
        Some(Distinct::On(_)) => return None,
    };
    let (limit, offset) = limit_offset(q.limit_clause.as_ref())?;
    let terms = order_terms(q)?;
    Some(RowShape { distinct, limit, offset, terms })
}

pub(super) fn limit_offset(clause: Option<&LimitClause>) -> Option<(Option<u64>, u64)> {
    let literal = |e: &Expr| match super::rewrite::literal_value(e) {
        Some(crate::value::Value::Integer(i)) => u64::try_from(i).ok(),
        _ => None,
    };
    match clause {
        None => Some((None, 0)),
        Some(LimitClause::LimitOffset { limit, offset, limit_by }) => {
            if !limit_by.is_empty() {
                return None;
            }
            let limit = match limit {
                Some(e) => Some(literal(e)?),
                None => None,
            };
            let offset = match offset {
                Some(o) => literal(&o.value)?,
                None => 0,
            };
            Some((limit, offset))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => Some((Some(literal(limit)?), literal(offset)?)),
    }
}

/// ORDER BY terms, or None for forms the merge does not model (ORDER BY ALL, WITH FILL, USING).
pub(super) fn order_terms(q: &Query) -> Option<Vec<&OrderByExpr>> {
    match &q.order_by {
        None => Some(Vec::new()),
        Some(ob) if ob.interpolate.is_some() => None,
        Some(ob) => match &ob.kind {
            OrderByKind::Expressions(terms) => {
                let plain = terms
                    .iter()
                    .all(|t| t.with_fill.is_none() && !matches!(t.options.sort, Some(OrderBySort::Using(_))));
                plain.then(|| terms.iter().collect())
            }
            OrderByKind::All(_) => None,
        },
    }
}

/// A 1-based position literal in ORDER BY / GROUP BY.
pub(super) fn position(expr: &Expr) -> Option<usize> {
    match super::rewrite::literal_value(expr) {
        Some(crate::value::Value::Integer(i)) if i >= 1 => usize::try_from(i).ok(),
        _ => None,
    }
}

/// The index of the select item whose alias `expr` (a bare identifier) names.
pub(super) fn alias_index(expr: &Expr, projection: &[SelectItem]) -> Option<usize> {
    let Expr::Identifier(ident) = expr else {
        return None;
    };
    projection.iter().position(|item| match item {
        SelectItem::ExprWithAlias { alias, .. } => alias.value.eq_ignore_ascii_case(&ident.value),
        _ => false,
    })
}

/// Whether `expr` mentions a bare identifier that is also a select alias (SQLite may resolve it either way).
pub(super) fn mentions_alias(expr: &Expr, projection: &[SelectItem]) -> bool {
    struct Mentions<'a>(&'a [SelectItem], bool);
    impl sqlparser::ast::Visitor for Mentions<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> std::ops::ControlFlow<()> {
            if alias_index(e, self.0).is_some() {
                self.1 = true;
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut v = Mentions(projection, false);
    let _ = expr.visit(&mut v);
    v.1
}

/// Scatter without aggregates: partitions run the query (with ORDER BY and LIMIT offset+limit pushed down when
/// there is a LIMIT), the merge applies DISTINCT, ORDER BY and LIMIT/OFFSET over the union.
fn plan_rows(q: &Query, select: &Select) -> Result<Option<(String, MergeSpec)>, SqlError> {
    let Some(RowShape { distinct, limit, offset, terms }) = row_shape(q, select) else {
        return Ok(None);
    };
    let projection = &select.projection;
    let wildcard = projection.iter().any(|i| matches!(i, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)));
    let mut hidden: Vec<Expr> = Vec::new();
    let mut order_by = Vec::new();
    for term in terms {
        let visible = if let Some(p) = position(&term.expr) {
            if !wildcard && p > projection.len() {
                return Ok(None);
            }
            Some(p - 1)
        } else if wildcard {
            None
        } else if let Some(i) = alias_index(&term.expr, projection) {
            Some(i)
        } else {
            let text = term.expr.to_string();
            projection.iter().position(|item| matches!(item, SelectItem::UnnamedExpr(e) if e.to_string() == text))
        };
        let column = match visible {
            Some(i) => SortColumn::Visible(i),
            None => {
                if distinct {
                    return Ok(None);
                }
                let expr = match alias_index(&term.expr, projection) {
                    Some(i) => match &projection[i] {
                        SelectItem::ExprWithAlias { expr, .. } => expr.clone(),
                        _ => return Ok(None),
                    },
                    None if mentions_alias(&term.expr, projection) => return Ok(None),
                    None => term.expr.clone(),
                };
                hidden.push(expr);
                SortColumn::Hidden(hidden.len() - 1)
            }
        };
        order_by.push(SortKey {
            column,
            descending: matches!(term.options.sort, Some(OrderBySort::Desc)),
            nulls_first: term.options.nulls_first,
        });
    }
    let mut partial = q.clone();
    if let SetExpr::Select(s) = partial.body.as_mut() {
        for (k, expr) in hidden.iter().enumerate() {
            s.projection.push(SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::new(format!("__h{k}")) });
        }
    }
    match limit {
        Some(l) => {
            let pushed = l.saturating_add(offset).min(i64::MAX as u64);
            partial.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(parse_expr(&pushed.to_string())?),
                offset: None,
                limit_by: Vec::new(),
            });
        }
        None => {
            partial.limit_clause = None;
            partial.order_by = None;
        }
    }
    let merge = MergeSpec::Rows { hidden_columns: hidden.len(), distinct, order_by, limit, offset };
    Ok(Some((render::sql(&partial), merge)))
}

/// The safety net: fetch every table the query reads into a scratch SQLite and run the query there.
fn gather(q: &Query, current_db: Option<&str>, ctes: &[String], ctx: &mut dyn PlanContext) -> Result<Plan, SqlError> {
    let mut sources: Vec<GatherSource> = Vec::new();
    let mut failure: Option<SqlError> = None;
    let mut qualified = q.clone();
    let catalog: &dyn PlanContext = &*ctx;
    qualify_tables(&mut qualified, &mut |name| {
        if is_cte(name, ctes) {
            return None;
        }
        let resolved = match resolve(name, current_db, catalog) {
            Ok(r) => r,
            Err(e) => {
                failure.get_or_insert(e);
                return None;
            }
        };
        let (schema, table, source) = match resolved {
            Resolved::Virtual { table } => (
                INFORMATION_SCHEMA.to_string(),
                table.clone(),
                GatherSource::Virtual { schema: INFORMATION_SCHEMA.to_string(), table },
            ),
            Resolved::Table { db, def } => {
                let fetch_sql = format!("SELECT * FROM {}", quote_ident(&def.name));
                let source = match def.kind {
                    TableKind::Distributed => GatherSource::Distributed {
                        db: db.clone(),
                        table: def.name.clone(),
                        fetch_sql,
                        create_sql: def.create_sql.clone(),
                    },
                    TableKind::Reference => GatherSource::Reference {
                        db: db.clone(),
                        table: def.name.clone(),
                        fetch_sql,
                        create_sql: def.create_sql.clone(),
                    },
                };
                (db, def.name, source)
            }
        };
        let known = sources.iter().any(|s| {
            let (s_schema, s_table) = match s {
                GatherSource::Distributed { db, table, .. } | GatherSource::Reference { db, table, .. } => (db, table),
                GatherSource::Virtual { schema, table } => (schema, table),
            };
            s_schema.eq_ignore_ascii_case(&schema) && s_table.eq_ignore_ascii_case(&table)
        });
        if !known {
            sources.push(source);
        }
        Some((schema, table))
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Plan::Gather(GatherSpec { sources, sql: render::sql(&qualified) }))
}
