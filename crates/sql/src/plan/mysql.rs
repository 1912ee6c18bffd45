//! MySQL's meaning for syntax that SQLite reads differently or not at all, rewritten on the statement before it is
//! planned, so partitions, the merge and gather engines and the oracle of the differential tests all run the same
//! SQLite text:
//! - `a / b` is decimal division (`5 / 2` is 2.5, not SQLite's 2): `CAST(a AS REAL) / b`; a zero divisor gives
//!   NULL in both engines;
//! - `a DIV b` is `canopy_div(a, b)`, `a % b` is `mod(a, b)` (a real remainder keeps its fraction);
//! - `d + INTERVAL n unit`, `d - INTERVAL ...`, `DATE_ADD/DATE_SUB/ADDDATE/SUBDATE(d, INTERVAL n unit)` and
//!   `TIMESTAMPADD(unit, n, d)` are `date_add(d, n, 'UNIT')` / `date_sub(...)`; `TIMESTAMPDIFF(unit, a, b)` and
//!   `EXTRACT(unit FROM d)` get their unit as a string; `POSITION(a IN b)` is `locate(a, b)`; `GREATEST`/`LEAST`
//!   are SQLite's multi-argument `max`/`min`; `CAST(x AS SIGNED|UNSIGNED)` casts to INTEGER;
//! - `NOW()`, `CURRENT_TIMESTAMP`, `CURDATE()`, `CURTIME()`, `UTC_TIMESTAMP()`, `UNIX_TIMESTAMP()` and their kin
//!   become literals of the statement's time, taken once on the aggregator, so every partition (and a multi-row
//!   INSERT's every row) sees one value, as MySQL evaluates them once per statement. `SYSDATE()`, `RAND()` and
//!   `UUID()` stay calls: MySQL evaluates them per call and per row, and writes reach copies as row changes.
//!
//! A select-list item whose text changes keeps the column name the client would have seen (`5 / 2`, `NOW()`)
//! through an alias. The functions called here are `crate::functions`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, DateTimeField, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Select, SelectItem, Value as AstValue, Visit, VisitMut,
    Visitor, VisitorMut,
};

use super::render;
use super::rewrite::{function_name, literal_value};
use crate::functions::{Clock, clock_value};
use crate::value::Value;

/// Rewrites `node` to MySQL's meaning (see the module doc); `now_micros` is the statement's time (microseconds
/// since the epoch, UTC).
pub(super) fn rewrite<T: VisitMut>(node: &mut T, now_micros: i64) {
    let _ = node.visit(&mut Alias);
    let _ = node.visit(&mut Rewrite { now_micros, changed: false });
}

/// Whether `node` reads the statement's time (NOW() and its kin): its SQL then holds that time as a literal, so a
/// plan made for it must not serve a later execution.
pub(super) fn mentions_statement_time<T: Visit>(node: &T) -> bool {
    struct Find(bool);
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr
                && clock_call(f).is_some()
            {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(false);
    let _ = node.visit(&mut find);
    find.0
}

/// Names the unnamed select-list items that the rewrite will change after their text as written.
struct Alias;

impl VisitorMut for Alias {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        for item in &mut select.projection {
            let SelectItem::UnnamedExpr(expr) = item else { continue };
            let mut probe = Rewrite { now_micros: 0, changed: false };
            let _ = VisitMut::visit(&mut expr.clone(), &mut probe);
            if probe.changed {
                let alias = Ident::with_quote('"', render::sql(expr));
                let expr = std::mem::replace(expr, Expr::value(AstValue::Null));
                *item = SelectItem::ExprWithAlias { expr, alias };
            }
        }
        ControlFlow::Continue(())
    }
}

struct Rewrite {
    now_micros: i64,
    changed: bool,
}

impl VisitorMut for Rewrite {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(replacement) = replacement(expr, self.now_micros) {
            *expr = replacement;
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// The binary operators rewritten, by the form of their operands.
enum Form {
    Divide,
    IntegerDivide,
    Modulo,
    /// `d + INTERVAL ...`
    AddRight,
    /// `INTERVAL ... + d`
    AddLeft,
    /// `d - INTERVAL ...`
    SubtractRight,
}

/// The SQLite form of one node, None when it stays as it is. Children are already rewritten.
fn replacement(expr: &mut Expr, now_micros: i64) -> Option<Expr> {
    match expr {
        Expr::BinaryOp { left, op, right } => {
            let form = match (&*op, left.as_ref(), right.as_ref()) {
                (BinaryOperator::Divide, _, _) => Form::Divide,
                (BinaryOperator::MyIntegerDivide, _, _) => Form::IntegerDivide,
                (BinaryOperator::Modulo, _, _) => Form::Modulo,
                (BinaryOperator::Plus, _, Expr::Interval(i)) if interval_unit(i).is_some() => Form::AddRight,
                (BinaryOperator::Plus, Expr::Interval(i), _) if interval_unit(i).is_some() => Form::AddLeft,
                (BinaryOperator::Minus, _, Expr::Interval(i)) if interval_unit(i).is_some() => Form::SubtractRight,
                _ => return None,
            };
            let (l, r) = (take(left), take(right));
            let shift = |name: &str, d: Expr, interval: Expr| {
                let Expr::Interval(i) = interval else { unreachable!("the form says this is an interval") };
                let unit = interval_unit(&i).expect("the form checked the unit");
                call(name, vec![d, *i.value, unit])
            };
            Some(match form {
                Form::Divide => Expr::Nested(Box::new(Expr::BinaryOp {
                    left: Box::new(Expr::Cast {
                        kind: CastKind::Cast,
                        expr: Box::new(l),
                        data_type: DataType::Real,
                        format: None,
                    }),
                    op: BinaryOperator::Divide,
                    right: Box::new(r),
                })),
                Form::IntegerDivide => call("canopy_div", vec![l, r]),
                Form::Modulo => call("mod", vec![l, r]),
                Form::AddRight => shift("date_add", l, r),
                Form::AddLeft => shift("date_add", r, l),
                Form::SubtractRight => shift("date_sub", l, r),
            })
        }
        Expr::Function(f) => function_replacement(f, now_micros),
        Expr::Extract { field, expr: inner, .. } => {
            let unit = unit_literal(field)?;
            Some(call("extract", vec![unit, take(inner)]))
        }
        Expr::Position { expr: needle, r#in } => Some(call("locate", vec![take(needle), take(r#in)])),
        Expr::Cast { data_type, .. }
            if matches!(
                data_type,
                DataType::Signed | DataType::SignedInteger | DataType::Unsigned | DataType::UnsignedInteger
            ) =>
        {
            *data_type = DataType::Integer(None);
            Some(expr.clone())
        }
        _ => None,
    }
}

fn function_replacement(f: &mut Function, now_micros: i64) -> Option<Expr> {
    if let Some((clock, fsp)) = clock_call(f) {
        let value = match clock {
            Some(kind) => clock_value(now_micros, kind, fsp),
            None => Value::Integer(now_micros.div_euclid(1_000_000)),
        };
        return Some(literal(value));
    }
    let name = function_name(f)?;
    if f.over.is_some() || f.filter.is_some() {
        return None;
    }
    let args = plain_args(f)?;
    match (name.as_str(), args.as_slice()) {
        ("date_add" | "adddate", [d, Expr::Interval(i)]) => {
            let unit = interval_unit(i)?;
            Some(call("date_add", vec![(*d).clone(), (*i.value).clone(), unit]))
        }
        ("date_sub" | "subdate", [d, Expr::Interval(i)]) => {
            let unit = interval_unit(i)?;
            Some(call("date_sub", vec![(*d).clone(), (*i.value).clone(), unit]))
        }
        ("timestampdiff", [Expr::Identifier(unit), a, b]) => {
            Some(call("timestampdiff", vec![unit_name(&unit.value), (*a).clone(), (*b).clone()]))
        }
        ("timestampadd", [Expr::Identifier(unit), n, d]) => {
            Some(call("date_add", vec![(*d).clone(), (*n).clone(), unit_name(&unit.value)]))
        }
        ("greatest", [_, _, ..]) => Some(call("max", args.iter().map(|a| (*a).clone()).collect())),
        ("least", [_, _, ..]) => Some(call("min", args.iter().map(|a| (*a).clone()).collect())),
        _ => None,
    }
}

/// A clock function the statement's time replaces: (the kind of value, or None for UNIX_TIMESTAMP(); fractional
/// digits). None for anything else, including a precision that is not a literal 0..=6.
fn clock_call(f: &Function) -> Option<(Option<Clock>, u32)> {
    let name = function_name(f)?;
    let args: Vec<&Expr> = match &f.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::List(_) => plain_args(f)?,
        FunctionArguments::Subquery(_) => return None,
    };
    let kind = match name.as_str() {
        "now" | "current_timestamp" | "localtime" | "localtimestamp" | "utc_timestamp" => Some(Clock::DateTime),
        "curdate" | "current_date" | "utc_date" => Some(Clock::Date),
        "curtime" | "current_time" | "utc_time" => Some(Clock::Time),
        "unix_timestamp" if args.is_empty() => None,
        _ => return None,
    };
    let fsp = match args.as_slice() {
        [] => 0,
        [precision] if kind.is_some_and(|k| k != Clock::Date) => match literal_value(precision) {
            Some(Value::Integer(p @ 0..=6)) => p as u32,
            _ => return None,
        },
        _ => return None,
    };
    Some((kind, fsp))
}

/// The arguments of a plain call (no DISTINCT, no clauses, no named arguments).
fn plain_args(f: &Function) -> Option<Vec<&Expr>> {
    let FunctionArguments::List(FunctionArgumentList { duplicate_treatment: None, args, clauses }) = &f.args else {
        return None;
    };
    if !clauses.is_empty() {
        return None;
    }
    args.iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// The unit of a MySQL `INTERVAL n unit` as a string literal; None for ranges and units the functions lack.
fn interval_unit(i: &sqlparser::ast::Interval) -> Option<Expr> {
    if i.last_field.is_some() {
        return None;
    }
    unit_literal(i.leading_field.as_ref()?)
}

fn unit_literal(field: &DateTimeField) -> Option<Expr> {
    let name = match field {
        DateTimeField::Year | DateTimeField::Years => "YEAR",
        DateTimeField::Quarter => "QUARTER",
        DateTimeField::Month | DateTimeField::Months => "MONTH",
        DateTimeField::Week(None) | DateTimeField::Weeks => "WEEK",
        DateTimeField::Day | DateTimeField::Days => "DAY",
        DateTimeField::Hour | DateTimeField::Hours => "HOUR",
        DateTimeField::Minute | DateTimeField::Minutes => "MINUTE",
        DateTimeField::Second | DateTimeField::Seconds => "SECOND",
        DateTimeField::Microsecond | DateTimeField::Microseconds => "MICROSECOND",
        _ => return None,
    };
    Some(unit_name(name))
}

fn unit_name(name: &str) -> Expr {
    literal(Value::Text(name.to_ascii_uppercase()))
}

fn literal(value: Value) -> Expr {
    Expr::value(match value {
        Value::Integer(i) => AstValue::Number(i.to_string(), false),
        Value::Text(s) => AstValue::SingleQuotedString(s),
        _ => AstValue::Null,
    })
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// Moves a child out of its box, leaving NULL behind (the caller replaces the parent).
fn take(child: &mut Box<Expr>) -> Expr {
    std::mem::replace(child.as_mut(), Expr::value(AstValue::Null))
}
