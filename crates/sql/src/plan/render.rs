//! SQL text from a syntax tree, for every statement and fragment the planner sends to SQLite (partitions, the merge
//! and gather engines, constant evaluation). sqlparser's `Display` alone can change what a statement means:
//! - a unary operator is written next to its operand, so `- -c` becomes `--c`, which SQLite reads as a comment;
//! - a quote inside a string literal or a quoted identifier is doubled only when it is alone and not after a
//!   backslash, so the value `a''b` is written `'a''b'` (read back as `a'b`) and `a\'b` is written `'a\'b'` (which
//!   ends the string early: SQLite has no backslash escapes).
//!
//! [`sql`] renders a copy of the tree made exact for SQLite: a signed operand of a unary `-`/`+` goes in
//! parentheses, and every quote in a string value or quoted name is doubled beforehand, which sqlparser then
//! prints as it is (it leaves pairs of quotes alone). The tree the planner reads is never changed.

use std::fmt::Display;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Ident, UnaryOperator, Value as AstValue, ValueWithSpan, VisitMut, VisitorMut};

/// The SQL text of `node` as SQLite must read it (see the module doc).
pub fn sql<T: VisitMut + Display + Clone>(node: &T) -> String {
    let mut exact = node.clone();
    let _ = exact.visit(&mut Exact);
    exact.to_string()
}

struct Exact;

impl VisitorMut for Exact {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        match &mut value.value {
            AstValue::SingleQuotedString(s) => double(s, '\''),
            AstValue::DoubleQuotedString(s) => double(s, '"'),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<()> {
        if let Some(quote @ ('"' | '`' | '\'')) = ident.quote_style {
            double(&mut ident.value, quote);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::UnaryOp { op: UnaryOperator::Minus | UnaryOperator::Plus, expr: operand } = expr
            && operand.to_string().starts_with(['-', '+'])
        {
            let inner = std::mem::replace(operand.as_mut(), Expr::value(AstValue::Null));
            **operand = Expr::Nested(Box::new(inner));
        }
        ControlFlow::Continue(())
    }
}

/// Every `quote` in `text` written twice.
fn double(text: &mut String, quote: char) {
    if text.contains(quote) {
        *text = text.replace(quote, &format!("{quote}{quote}"));
    }
}
