//! Partial aggregation for scatter: each partition groups by the GROUP BY expressions and computes partial
//! aggregates; the merge query over `_partial` combines them (COUNT -> SUM of counts, SUM -> SUM, TOTAL -> TOTAL,
//! MIN/MAX -> MIN/MAX, AVG -> TOTAL/COUNT) and applies HAVING, ORDER BY, LIMIT/OFFSET and DISTINCT.
//! Returns None (gather) for anything it cannot combine exactly: DISTINCT aggregates, GROUP_CONCAT and unknown
//! functions, bare columns that are neither grouped nor aggregated, subqueries outside WHERE.

use std::ops::ControlFlow;

use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    OrderBySort, Query, Select, SelectItem, VisitMut, VisitorMut,
};

use super::query::{RowShape, alias_index, position, row_shape};
use super::render;
use super::rewrite::{FunctionClass, function_class, function_name};
use crate::error::SqlError;
use crate::merge::{MergeSpec, OutputColumn, OutputName, partial_column};

/// The partial query and the merge for a grouped or aggregating query over one distributed table, or None.
/// `subquery` says whether the select list, HAVING or ORDER BY contains a subquery.
pub(super) fn plan_aggregate(
    q: &Query,
    select: &Select,
    subquery: bool,
) -> Result<Option<(String, MergeSpec)>, SqlError> {
    if subquery {
        return Ok(None);
    }
    let Some(RowShape { distinct, limit, offset, terms }) = row_shape(q, select) else {
        return Ok(None);
    };
    let mut items: Vec<(&Expr, Option<&Ident>)> = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(e) => items.push((e, None)),
            SelectItem::ExprWithAlias { expr, alias } => items.push((expr, Some(alias))),
            _ => return Ok(None),
        }
    }
    let GroupByExpr::Expressions(group_exprs, modifiers) = &select.group_by else {
        return Ok(None);
    };
    if !modifiers.is_empty() {
        return Ok(None);
    }
    let mut groups: Vec<Expr> = Vec::new();
    for g in group_exprs {
        if let Some(p) = position(g) {
            match items.get(p - 1) {
                Some((e, _)) => groups.push((*e).clone()),
                None => return Ok(None),
            }
        } else if alias_index(g, &select.projection).is_some() {
            return Ok(None);
        } else {
            groups.push(g.clone());
        }
    }
    let mut combiner = Combiner {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        partials: groups.iter().map(render::sql).collect(),
        finals: Vec::new(),
        failed: false,
    };
    let mut outputs = Vec::new();
    let mut select_list = Vec::new();
    for (i, (expr, alias)) in items.iter().enumerate() {
        let Some(sql) = combiner.finish(expr) else {
            return Ok(None);
        };
        let column_ref = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        let decl_type_from = column_ref.then(|| combiner.partial(render::sql(*expr)));
        let name = match (alias, decl_type_from) {
            (Some(a), _) => OutputName::Fixed(a.value.clone()),
            (None, Some(j)) => OutputName::FromPartial(j),
            (None, None) => OutputName::Fixed(render::sql(*expr)),
        };
        outputs.push(OutputColumn { name, decl_type_from });
        select_list.push(format!("{sql} AS {}", output_column(i)));
    }
    let having = match &select.having {
        Some(h) => match combiner.finish(h) {
            Some(sql) => Some(sql),
            None => return Ok(None),
        },
        None => None,
    };
    let mut order = Vec::new();
    for term in terms {
        let key = if let Some(p) = position(&term.expr) {
            if p > items.len() {
                return Ok(None);
            }
            output_column(p - 1)
        } else if let Some(i) = alias_index(&term.expr, &select.projection) {
            output_column(i)
        } else {
            match combiner.finish(&term.expr) {
                Some(sql) => sql,
                None => return Ok(None),
            }
        };
        let mut key = key;
        if matches!(term.options.sort, Some(OrderBySort::Desc)) {
            key.push_str(" DESC");
        }
        match term.options.nulls_first {
            Some(true) => key.push_str(" NULLS FIRST"),
            Some(false) => key.push_str(" NULLS LAST"),
            None => {}
        }
        order.push(key);
    }

    let mut partial = format!("SELECT {}", combiner.partials.join(", "));
    if !select.from.is_empty() {
        let from: Vec<String> = select.from.iter().map(render::sql).collect();
        partial.push_str(&format!(" FROM {}", from.join(", ")));
    }
    if let Some(w) = &select.selection {
        partial.push_str(&format!(" WHERE {}", render::sql(w)));
    }
    if !groups.is_empty() {
        // Group `i` is partial column `i`: the first partials are the groups' SQL.
        partial.push_str(&format!(" GROUP BY {}", combiner.partials[..groups.len()].join(", ")));
    }

    let mut sql = format!("SELECT {}{} FROM _partial", if distinct { "DISTINCT " } else { "" }, select_list.join(", "));
    if !groups.is_empty() {
        let keys: Vec<String> = (0..groups.len()).map(partial_column).collect();
        sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
    }
    if let Some(h) = having {
        sql.push_str(&format!(" HAVING {h}"));
    }
    if !order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    if limit.is_some() || offset > 0 {
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        sql.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
    }
    Ok(Some((partial, MergeSpec::Aggregate { sql, columns: outputs })))
}

fn output_column(i: usize) -> String {
    format!("__o{i}")
}

/// Rewrites final-level expressions over the partial columns, collecting the partial columns they need.
struct Combiner {
    /// GROUP BY expressions as sqlparser writes them, to recognise them in other expressions; group `i` is partial
    /// column `i`.
    groups: Vec<String>,
    /// Partial select list (SQL text), deduplicated; it starts with the groups.
    partials: Vec<String>,
    /// Final SQL of aggregate placeholders `__f{j}__`.
    finals: Vec<String>,
    failed: bool,
}

impl Combiner {
    /// The partial column computing `sql`, added if new.
    fn partial(&mut self, sql: String) -> usize {
        match self.partials.iter().position(|p| *p == sql) {
            Some(i) => i,
            None => {
                self.partials.push(sql);
                self.partials.len() - 1
            }
        }
    }

    /// `expr` rewritten for the merge query, or None if it cannot be computed from partials.
    fn finish(&mut self, expr: &Expr) -> Option<String> {
        let mut rewritten = expr.clone();
        self.failed = false;
        let first_final = self.finals.len();
        let _ = rewritten.visit(self);
        if self.failed {
            return None;
        }
        let mut sql = render::sql(&rewritten);
        for j in (first_final..self.finals.len()).rev() {
            sql = sql.replace(&format!("__f{j}__"), &format!("({})", self.finals[j]));
        }
        Some(sql)
    }

    /// The merge expression of one aggregate call, adding its partial columns.
    fn combine(&mut self, f: &Function) -> Option<String> {
        if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
            return None;
        }
        let FunctionArguments::List(list) = &f.args else {
            return None;
        };
        if !list.clauses.is_empty() || matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)) {
            return None;
        }
        let arg = match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => render::sql(e),
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => "*".to_string(),
            _ => return None,
        };
        let name = function_name(f)?;
        if arg == "*" && name != "count" {
            return None;
        }
        let p = |c: &mut Self, sql: String| partial_column(c.partial(sql));
        Some(match name.as_str() {
            "count" => format!("COALESCE(SUM({}), 0)", p(self, format!("COUNT({arg})"))),
            "sum" => format!("SUM({})", p(self, format!("SUM({arg})"))),
            "total" => format!("TOTAL({})", p(self, format!("TOTAL({arg})"))),
            "min" => format!("MIN({})", p(self, format!("MIN({arg})"))),
            "max" => format!("MAX({})", p(self, format!("MAX({arg})"))),
            "avg" => {
                let sum = p(self, format!("TOTAL({arg})"));
                let count = p(self, format!("COUNT({arg})"));
                format!("CASE WHEN SUM({count}) > 0 THEN TOTAL({sum}) / SUM({count}) END")
            }
            _ => return None,
        })
    }
}

impl VisitorMut for Combiner {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let text = expr.to_string();
        if let Some(i) = self.groups.iter().position(|g| *g == text) {
            *expr = Expr::Identifier(Ident::new(partial_column(i)));
            return ControlFlow::Continue(());
        }
        match expr {
            Expr::Function(f) => match function_class(f) {
                FunctionClass::Aggregate => match self.combine(f) {
                    Some(sql) => {
                        *expr = Expr::Identifier(Ident::new(format!("__f{}__", self.finals.len())));
                        self.finals.push(sql);
                        ControlFlow::Continue(())
                    }
                    None => self.fail(),
                },
                FunctionClass::Scalar if f.over.is_none() => ControlFlow::Continue(()),
                _ => self.fail(),
            },
            // A column that is neither grouped nor inside an aggregate: SQLite's bare-column semantics.
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => self.fail(),
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => self.fail(),
            _ => ControlFlow::Continue(()),
        }
    }
}

impl Combiner {
    fn fail(&mut self) -> ControlFlow<()> {
        self.failed = true;
        ControlFlow::Break(())
    }
}
