//! Where sqlparser's operator precedence differs from MySQL's, the planner sets the tree right first (`plan::plan`,
//! `plan::translate`), before anything reads it. sqlparser parses the operand of a prefix `~` as far as an operator binding tighter than binary `+`
//! (PostgreSQL's rule), so `~a * 2` and `~a || b` come out as `~(a * 2)` and `~(a || b)`; MySQL's `~` binds
//! tighter than every binary operator: `(~a) * 2`. A prefix `-` or `+` around such a `~` (`- ~a || b`) then holds
//! the binary operation too, which sqlparser never does on its own (it stops a sign's operand at `*`). Written
//! parentheses are kept apart (`Expr::Nested`), so a binary operation directly under a prefix `~`, `-` or `+` can
//! only be such a misreading: it is turned into the binary operation of the prefixed leftmost operand.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, UnaryOperator, VisitMut, VisitorMut};

/// Sets every prefix `~` (and a sign around one) in `node` to bind to its nearest operand.
pub fn fix<T: VisitMut>(node: &mut T) {
    let _ = node.visit(&mut Fix);
}

struct Fix;

impl VisitorMut for Fix {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::UnaryOp {
            op: op @ (UnaryOperator::BitwiseNot | UnaryOperator::Minus | UnaryOperator::Plus),
            expr: operand,
        } = expr
            && matches!(operand.as_ref(), Expr::BinaryOp { .. })
        {
            let op = *op;
            let operand = std::mem::replace(operand.as_mut(), Expr::value(sqlparser::ast::Value::Null));
            *expr = prefix_leftmost(op, operand);
        }
        ControlFlow::Continue(())
    }
}

/// `prefix` applied to the leftmost operand of `expr`'s chain of binary operations.
fn prefix_leftmost(prefix: UnaryOperator, expr: Expr) -> Expr {
    match expr {
        Expr::BinaryOp { left, op, right } => {
            Expr::BinaryOp { left: Box::new(prefix_leftmost(prefix, *left)), op, right }
        }
        operand => Expr::UnaryOp { op: prefix, expr: Box::new(operand) },
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::ast::{BinaryOperator, Expr, SelectItem, SetExpr, Statement, UnaryOperator};
    use sqlparser::dialect::MySqlDialect;
    use sqlparser::parser::Parser;

    fn items(sql: &str) -> Vec<Expr> {
        let mut statement = Parser::parse_sql(&MySqlDialect {}, sql).unwrap().remove(0);
        super::fix(&mut statement);
        let Statement::Query(query) = statement else { panic!() };
        let SetExpr::Select(select) = *query.body else { panic!() };
        select.projection.into_iter().map(|i| if let SelectItem::UnnamedExpr(e) = i { e } else { panic!() }).collect()
    }

    fn not_of(e: &Expr) -> Option<&Expr> {
        match e {
            Expr::UnaryOp { op: UnaryOperator::BitwiseNot, expr } => Some(expr),
            _ => None,
        }
    }

    #[test]
    fn tilde_binds_tighter_than_any_binary_operator() {
        let e = items("SELECT ~a * 2, ~a || b, ~a * b * c, ~(a * 2), - -~a || a, ~ ~a DIV 2, -a * b, -(a * b)");
        // `~a * 2` is `(~a) * 2`.
        let Expr::BinaryOp { left, op: BinaryOperator::Multiply, .. } = &e[0] else { panic!("{:?}", e[0]) };
        assert!(not_of(left).is_some_and(|a| matches!(a, Expr::Identifier(_))), "{left:?}");
        let Expr::BinaryOp { left, op: BinaryOperator::StringConcat, .. } = &e[1] else { panic!("{:?}", e[1]) };
        assert!(not_of(left).is_some(), "{left:?}");
        // A chain: `((~a) * b) * c`.
        let Expr::BinaryOp { left, .. } = &e[2] else { panic!("{:?}", e[2]) };
        let Expr::BinaryOp { left, .. } = left.as_ref() else { panic!("{left:?}") };
        assert!(not_of(left).is_some(), "{left:?}");
        // Written parentheses stay: `~(a * 2)`.
        assert!(not_of(&e[3]).is_some_and(|n| matches!(n, Expr::Nested(_))), "{:?}", e[3]);
        // Under unary minus: `(-(-(~a))) || a`.
        let Expr::BinaryOp { left, op: BinaryOperator::StringConcat, .. } = &e[4] else { panic!("{:?}", e[4]) };
        assert!(matches!(left.as_ref(), Expr::UnaryOp { op: UnaryOperator::Minus, .. }), "{left:?}");
        // `~ ~a DIV 2` is `(~(~a)) DIV 2`.
        let Expr::BinaryOp { left, .. } = &e[5] else { panic!("{:?}", e[5]) };
        assert!(not_of(left).and_then(not_of).is_some(), "{left:?}");
        // Signs alone are as sqlparser reads them: `(-a) * b`, and `-(a * b)` as written.
        let Expr::BinaryOp { left, op: BinaryOperator::Multiply, .. } = &e[6] else { panic!("{:?}", e[6]) };
        assert!(matches!(left.as_ref(), Expr::UnaryOp { op: UnaryOperator::Minus, .. }), "{left:?}");
        let Expr::UnaryOp { op: UnaryOperator::Minus, expr } = &e[7] else { panic!("{:?}", e[7]) };
        assert!(matches!(expr.as_ref(), Expr::Nested(_)), "{expr:?}");
    }
}
