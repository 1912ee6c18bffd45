//! AST walks shared by the planner: finding table references and features (window functions, subqueries,
//! aggregates), normalising literals, and rewriting table names for partitions (unqualified) and for the gather
//! scratch database (`"db"."table"`). No planning decisions are made here.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, SetExpr, TableFactor,
    UnaryOperator, Value as AstValue, ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut,
};

use crate::value::Value;

/// Turns MySQL double-quoted strings into single-quoted ones: SQLite would read `"x"` as an identifier first.
pub(super) fn normalize_literals<T: VisitMut>(node: &mut T) {
    struct Normalize;
    impl VisitorMut for Normalize {
        type Break = ();
        fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
            if let AstValue::DoubleQuotedString(s) = &value.value {
                value.value = AstValue::SingleQuotedString(s.clone());
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Normalize);
}

/// What the aggregator's session knows that partitions and the gather scratch do not: MySQL's session functions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Session<'a> {
    /// The session's database (`USE db`).
    pub db: Option<&'a str>,
    /// CONNECTION_ID().
    pub connection_id: Option<u32>,
    /// VERSION().
    pub version: Option<&'a str>,
}

/// Replaces `DATABASE()` and `SCHEMA()` by the session's database as a string literal (NULL without one), and
/// `CONNECTION_ID()` and `VERSION()` by the session's values where it has them: the values are the aggregator's to
/// give, since partitions and the gather scratch know no session. Plans are reused only for the database they were
/// made in (and per connection), so the literals stay right.
pub(super) fn bind_session_functions<T: VisitMut>(node: &mut T, session: Session<'_>) {
    struct Bind<'a>(Session<'a>);
    impl VisitorMut for Bind<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr
                && function_has_no_arguments(f)
            {
                let value = match function_name(f).as_deref() {
                    Some("database" | "schema") => match self.0.db {
                        Some(db) => AstValue::SingleQuotedString(db.to_string()),
                        None => AstValue::Null,
                    },
                    Some("connection_id") => match self.0.connection_id {
                        Some(id) => AstValue::Number(id.to_string(), false),
                        None => return ControlFlow::Continue(()),
                    },
                    Some("version") => match self.0.version {
                        Some(version) => AstValue::SingleQuotedString(version.to_string()),
                        None => return ControlFlow::Continue(()),
                    },
                    _ => return ControlFlow::Continue(()),
                };
                *expr = Expr::value(value);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Bind(session));
}

fn function_has_no_arguments(f: &Function) -> bool {
    match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(list) => list.args.is_empty(),
        FunctionArguments::Subquery(_) => false,
    }
}

/// Drops MySQL's SELECT modifiers that are only hints (`SQL_NO_CACHE`, `HIGH_PRIORITY`, `STRAIGHT_JOIN`,
/// `SQL_SMALL_RESULT`, ...): they mean nothing to the leaves' engine, which would read them as column names. True
/// when some SELECT asks for `SQL_CALC_FOUND_ROWS`, which is not a hint (FOUND_ROWS() would depend on it); the
/// planner refuses that.
pub(super) fn strip_select_hints<T: VisitMut>(node: &mut T) -> bool {
    fn strip(body: &mut SetExpr, found_rows: &mut bool) {
        match body {
            SetExpr::Select(select) => {
                if let Some(modifiers) = select.select_modifiers.take() {
                    *found_rows |= modifiers.sql_calc_found_rows;
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                strip(left, found_rows);
                strip(right, found_rows);
            }
            _ => {}
        }
    }
    struct Strip(bool);
    impl VisitorMut for Strip {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            strip(&mut query.body, &mut self.0);
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Strip(false);
    let _ = node.visit(&mut visitor);
    visitor.0
}

/// Names of all common table expressions defined anywhere in `node`, lower case.
pub(super) fn cte_names<T: Visit>(node: &T) -> Vec<String> {
    struct Ctes(Vec<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.0.extend(with.cte_tables.iter().map(|c| c.alias.name.value.to_lowercase()));
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Ctes(Vec::new());
    let _ = node.visit(&mut v);
    v.0
}

/// Whether `name` is an unqualified reference to one of `ctes`.
pub(super) fn is_cte(name: &ObjectName, ctes: &[String]) -> bool {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => ctes.contains(&i.value.to_lowercase()),
        _ => false,
    }
}

/// Every table named in a FROM clause anywhere in `node` (subqueries included), CTE references excluded.
/// Table-valued functions (`FROM f(...)`) are not tables and are skipped.
pub(super) fn relations<T: Visit>(node: &T, ctes: &[String]) -> Vec<ObjectName> {
    struct Relations<'a>(Vec<ObjectName>, &'a [String]);
    impl Visitor for Relations<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args: None, .. } = factor
                && !is_cte(name, self.1)
            {
                self.0.push(name.clone());
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Relations(Vec::new(), ctes);
    let _ = node.visit(&mut v);
    v.0
}

/// Features of a query that decide between scatter and gather.
#[derive(Debug, Default)]
pub(super) struct Features {
    pub window: bool,
    pub collate: bool,
    pub subquery: bool,
    /// A function at the outer level (not inside a subquery) that is neither a known scalar function nor a
    /// supported aggregate: it might be an aggregate the merge cannot combine.
    pub unknown_function: bool,
    /// An aggregate call at the outer level.
    pub aggregate: bool,
}

/// Scans expressions (and any subqueries inside them) for [`Features`].
pub(super) fn features<T: Visit>(node: &T) -> Features {
    struct Scan {
        f: Features,
        depth: usize,
    }
    impl Visitor for Scan {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.f.subquery = true;
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Collate { .. } => self.f.collate = true,
                Expr::Function(f) => {
                    if f.over.is_some() {
                        self.f.window = true;
                    }
                    if matches!(f.args, FunctionArguments::Subquery(_)) {
                        self.f.subquery = true;
                    }
                    if self.depth == 0 {
                        match function_class(f) {
                            FunctionClass::Aggregate => self.f.aggregate = true,
                            FunctionClass::Scalar => {}
                            FunctionClass::Unknown => self.f.unknown_function = true,
                        }
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Scan { f: Features::default(), depth: 0 };
    let _ = node.visit(&mut v);
    v.f
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum FunctionClass {
    /// COUNT, SUM, TOTAL, AVG, MIN/MAX with one argument: the aggregates a merge can combine (when not DISTINCT).
    Aggregate,
    /// A function SQLite evaluates per row.
    Scalar,
    /// Anything else, including GROUP_CONCAT and other aggregates.
    Unknown,
}

/// Scalar functions known to be evaluated per row (not aggregates). Anything not listed is treated as possibly an
/// aggregate, which sends the query to gather.
const SCALAR_FUNCTIONS: &[&str] = &[
    "abs",
    "coalesce",
    "ifnull",
    "nullif",
    "iif",
    "if",
    "length",
    "lower",
    "upper",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "round",
    "instr",
    "typeof",
    "hex",
    "quote",
    "char",
    "unicode",
    "printf",
    "format",
    "concat",
    "concat_ws",
    "sign",
    "likely",
    "unlikely",
    "random",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "octet_length",
    "unhex",
    "ceil",
    "ceiling",
    "floor",
    "sqrt",
    "power",
    "pow",
    "exp",
    "ln",
    "log",
    "mod",
    "pi",
];

pub(super) fn function_name(f: &Function) -> Option<String> {
    match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => Some(i.value.to_lowercase()),
        _ => None,
    }
}

pub(super) fn function_args(f: &Function) -> usize {
    match &f.args {
        FunctionArguments::List(list) => list.args.len(),
        _ => 0,
    }
}

pub(super) fn function_class(f: &Function) -> FunctionClass {
    let Some(name) = function_name(f) else {
        return FunctionClass::Unknown;
    };
    let args = function_args(f);
    match name.as_str() {
        "min" | "max" if args >= 2 => FunctionClass::Scalar,
        "count" | "sum" | "total" | "avg" | "min" | "max" => FunctionClass::Aggregate,
        n if SCALAR_FUNCTIONS.contains(&n) || crate::functions::SCALAR_FUNCTIONS.contains(&n) => FunctionClass::Scalar,
        _ => FunctionClass::Unknown,
    }
}

/// Removes database qualifiers for SQL sent to partitions: `db.t` becomes `t`, `db.t.c` becomes `t.c`.
/// Callers ensure every table belongs to the partition's database.
pub(super) fn strip_qualifiers<T: VisitMut>(node: &mut T, ctes: &[String]) {
    struct Strip<'a>(&'a [String]);
    impl VisitorMut for Strip<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args: None, .. } = factor
                && name.0.len() == 2
                && !is_cte(name, self.0)
            {
                name.0.remove(0);
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = expr
                && parts.len() == 3
            {
                parts.remove(0);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Strip(ctes));
}

/// Rewrites every table reference to the gather scratch database's `"schema"."table"` form; `target` maps a
/// reference to its schema and table (None for CTE references, which stay as they are).
pub(super) fn qualify_tables<T: VisitMut>(
    node: &mut T,
    target: &mut dyn FnMut(&ObjectName) -> Option<(String, String)>,
) {
    struct Qualify<'a>(&'a mut dyn FnMut(&ObjectName) -> Option<(String, String)>);
    impl VisitorMut for Qualify<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args: None, .. } = factor
                && let Some((schema, table)) = (self.0)(name)
            {
                *name = ObjectName::from(vec![Ident::with_quote('"', schema), Ident::with_quote('"', table)]);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Qualify(target));
}

/// The top-level AND-conjuncts of a WHERE clause.
pub(super) fn conjuncts(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            let mut out = conjuncts(left);
            out.extend(conjuncts(right));
            out
        }
        Expr::Nested(inner) => conjuncts(inner),
        other => vec![other],
    }
}

/// The value of a literal or of a numbered placeholder (`?N`, taken from `params`), or None when `expr` is neither
/// (or names a parameter that was not sent).
pub(super) fn bound_value(expr: &Expr, params: &[Value]) -> Option<Value> {
    match expr {
        Expr::Value(ValueWithSpan { value: AstValue::Placeholder(p), .. }) => {
            params.get(placeholder_number(p)?.checked_sub(1)?).cloned()
        }
        Expr::Nested(inner) => bound_value(inner, params),
        other => literal_value(other),
    }
}

/// The first placeholder in `node` that names no value: `?` without a number, or `?N` with N above `count`.
pub(super) fn unbound_placeholder<T: Visit>(node: &T, count: usize) -> Option<String> {
    struct Find(usize, Option<String>);
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
            if let AstValue::Placeholder(p) = &value.value
                && !placeholder_number(p).is_some_and(|n| (1..=self.0).contains(&n))
            {
                self.1 = Some(p.clone());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(count, None);
    let _ = node.visit(&mut find);
    find.1
}

/// N of a `?N` placeholder (`?` alone has no number).
pub(super) fn placeholder_number(p: &str) -> Option<usize> {
    p.strip_prefix('?')?.parse().ok()
}

/// Replaces every `?N` placeholder in `node` by the literal of `params[N-1]`; a placeholder without a value becomes
/// NULL, as an unbound SQLite parameter reads. A parameter is a constant wherever it stands, so an integer bound as
/// a whole ORDER BY or GROUP BY term is written `CAST(n AS INTEGER)`: a bare `n` there would mean "column n".
pub fn bind_placeholders<T: VisitMut>(node: &mut T, params: &[Value]) {
    struct Bind<'a>(&'a [Value]);
    impl Bind<'_> {
        /// A bare placeholder bound to an integer, as a constant that SQLite cannot take for a column position.
        fn protect_position(&self, expr: &mut Expr) {
            let inner = match &*expr {
                Expr::Nested(inner) => inner.as_ref(),
                other => other,
            };
            if let Expr::Value(ValueWithSpan { value: AstValue::Placeholder(p), .. }) = inner
                && let Some(&Value::Integer(i)) = placeholder_number(p).and_then(|n| self.0.get(n.checked_sub(1)?))
            {
                *expr = Expr::Cast {
                    kind: sqlparser::ast::CastKind::Cast,
                    expr: Box::new(Expr::value(AstValue::Number(i.to_string(), false))),
                    data_type: sqlparser::ast::DataType::Integer(None),
                    format: None,
                };
            }
        }

        /// GROUP BY terms of every SELECT of a (possibly compound) query body; nested queries are visited on their own.
        fn protect_group_by(&self, body: &mut sqlparser::ast::SetExpr) {
            match body {
                sqlparser::ast::SetExpr::Select(select) => {
                    if let sqlparser::ast::GroupByExpr::Expressions(terms, _) = &mut select.group_by {
                        for term in terms {
                            self.protect_position(term);
                        }
                    }
                }
                sqlparser::ast::SetExpr::SetOperation { left, right, .. } => {
                    self.protect_group_by(left);
                    self.protect_group_by(right);
                }
                _ => {}
            }
        }
    }
    impl VisitorMut for Bind<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let Some(sqlparser::ast::OrderBy { kind: sqlparser::ast::OrderByKind::Expressions(terms), .. }) =
                &mut query.order_by
            {
                for term in terms {
                    self.protect_position(&mut term.expr);
                }
            }
            self.protect_group_by(query.body.as_mut());
            ControlFlow::Continue(())
        }
        fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
            if let AstValue::Placeholder(p) = &value.value {
                let bound = placeholder_number(p).and_then(|n| self.0.get(n.checked_sub(1)?));
                value.value = match bound {
                    None | Some(Value::Null) => AstValue::Null,
                    Some(Value::Integer(i)) => AstValue::Number(i.to_string(), false),
                    // `to_sql_literal` keeps a real's exact digits with an exponent, so it reads back as REAL.
                    Some(v @ Value::Real(_)) => AstValue::Number(v.to_sql_literal(), false),
                    Some(Value::Blob(b)) => {
                        AstValue::HexStringLiteral(b.iter().map(|byte| format!("{byte:02X}")).collect())
                    }
                    Some(Value::Text(s)) => AstValue::SingleQuotedString(s.clone()),
                };
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Bind(params));
}

/// Whether SQL text contains a parameter placeholder outside string literals, quoted names and comments.
pub(super) fn mentions_placeholder(sql: &str) -> bool {
    use sqlparser::tokenizer::{Token, Tokenizer};
    match Tokenizer::new(&sqlparser::dialect::SQLiteDialect {}, sql).tokenize() {
        Ok(tokens) => tokens.iter().any(|t| matches!(t, Token::Placeholder(_))),
        // Text that does not tokenize: assume the worst.
        Err(_) => sql.contains('?'),
    }
}

/// The value of a literal expression as SQLite reads it, or None if `expr` is not a plain literal.
pub(crate) fn literal_value(expr: &Expr) -> Option<Value> {
    match expr {
        Expr::Nested(inner) => literal_value(inner),
        Expr::Value(v) => ast_value(&v.value, false),
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match expr.as_ref() {
            Expr::Value(v) => ast_value(&v.value, true),
            _ => None,
        },
        Expr::UnaryOp { op: UnaryOperator::Plus, expr } => match expr.as_ref() {
            Expr::Value(v @ ValueWithSpan { value: AstValue::Number(..), .. }) => ast_value(&v.value, false),
            _ => None,
        },
        _ => None,
    }
}

fn ast_value(v: &AstValue, negate: bool) -> Option<Value> {
    match v {
        AstValue::Number(s, false) => {
            let text = if negate { format!("-{s}") } else { s.clone() };
            if !s.contains(['.', 'e', 'E', 'x', 'X'])
                && let Ok(i) = text.parse::<i64>()
            {
                return Some(Value::Integer(i));
            }
            if s.contains(['x', 'X']) {
                return None;
            }
            text.parse::<f64>().ok().map(Value::Real)
        }
        _ if negate => None,
        AstValue::SingleQuotedString(s) | AstValue::DoubleQuotedString(s) => Some(Value::Text(s.clone())),
        AstValue::Null => Some(Value::Null),
        AstValue::Boolean(b) => Some(Value::Integer(i64::from(*b))),
        _ => None,
    }
}

/// Parses one expression in the MySQL dialect (used for fragments the planner writes itself).
pub(super) fn parse_expr(sql: &str) -> Result<Expr, crate::error::SqlError> {
    use sqlparser::dialect::MySqlDialect;
    use sqlparser::parser::Parser;
    Parser::new(&MySqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| crate::error::SqlError::Parse(e.to_string()))
}
