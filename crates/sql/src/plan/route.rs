//! Routing by shard key: which partitions can hold the rows a WHERE clause selects. Only top-level AND-conjuncts of
//! the form `key = literal`, `literal = key` and `key IN (literals)` (a placeholder counts as a literal) narrow the set; anything else means "all".

use sqlparser::ast::{BinaryOperator, Expr};

use super::rewrite::{bound_value, conjuncts, placeholder_number};
use crate::catalog::{Affinity, TableDef};
use crate::shard::{apply_affinity, partition_of, real_text_is_exact};
use crate::value::Value;

/// Upper bound on key combinations a WHERE clause may expand to before routing gives up and scans all partitions.
const COMBINATIONS_MAX: usize = 256;

/// The distributed table a statement reads or writes, and the names a column qualifier may use for it.
pub(super) struct Target<'a> {
    pub def: &'a TableDef,
    /// Lower-case qualifiers that denote this table: its alias if it has one, else its name (and `db.name`).
    pub qualifiers: Vec<Vec<String>>,
}

/// The sorted partitions that can hold rows matching `selection`, or None when every partition can. Placeholders
/// count as literals of their value in `params`.
pub(super) fn route(selection: Option<&Expr>, target: &Target, partitions: u32, params: &[Value]) -> Option<Vec<u32>> {
    let def = target.def;
    if def.shard_key.is_empty() || super::has_collation(def) {
        return None;
    }
    let mut candidates: Vec<Option<Vec<Value>>> = vec![None; def.shard_key.len()];
    for conjunct in conjuncts(selection?) {
        let Some((index, values)) = key_constraint(conjunct, target, params) else {
            continue;
        };
        // Two constraints on one column: keep the narrower (both hold, so either is a correct superset).
        let slot = &mut candidates[index];
        if slot.as_ref().is_none_or(|old| values.len() < old.len()) {
            *slot = Some(values);
        }
    }
    let mut combinations: Vec<Vec<Value>> = vec![Vec::new()];
    for column in candidates {
        let values = column?;
        if combinations.len() * values.len() > COMBINATIONS_MAX {
            return None;
        }
        combinations = combinations
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut key = prefix.clone();
                    key.push(v.clone());
                    key
                })
            })
            .collect();
    }
    let mut ordinals: Vec<u32> = combinations.iter().map(|key| partition_of(key, partitions)).collect();
    ordinals.sort_unstable();
    ordinals.dedup();
    Some(ordinals)
}

/// `key = lit`, `lit = key` or `key IN (lits)`: the shard key column index and the values it may take.
fn key_constraint(expr: &Expr, target: &Target, params: &[Value]) -> Option<(usize, Vec<Value>)> {
    let (index, exprs) = key_terms(expr, target)?;
    let values = exprs.into_iter().map(|e| key_value(e, target, index, params)).collect::<Option<Vec<_>>>()?;
    (!values.is_empty()).then_some((index, values))
}

/// `key = e`, `e = key` or `key IN (e, ...)`: the shard key column index and the expressions it is compared with.
fn key_terms<'e>(expr: &'e Expr, target: &Target) -> Option<(usize, Vec<&'e Expr>)> {
    match expr {
        Expr::BinaryOp { left, op: BinaryOperator::Eq, right } => {
            match (key_index(left, target), key_index(right, target)) {
                (Some(i), None) => Some((i, vec![right.as_ref()])),
                (None, Some(i)) => Some((i, vec![left.as_ref()])),
                _ => None,
            }
        }
        Expr::InList { expr, list, negated: false } => Some((key_index(expr, target)?, list.iter().collect())),
        Expr::Nested(inner) => key_terms(inner, target),
        _ => None,
    }
}

/// How a prepared statement's partitions follow from its parameters, when they follow from nothing else: a plan
/// made for one set of values can then be reused for others.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamRoute {
    /// No condition names a shard key column: [`route`] reads every partition whatever the values.
    Everywhere,
    /// Each shard key column is fixed by exactly one `key = ?N` conjunct and constrained by nothing else, so
    /// [`route`] picks one partition for any values, the partition of those values ([`ParamRoute::ordinal`]).
    Keys {
        partitions: u32,
        /// Per shard key column: the 0-based parameter index and the column's affinity.
        keys: Vec<(usize, Affinity)>,
    },
}

impl ParamRoute {
    /// For [`ParamRoute::Keys`], the partition `params` select, or None when it cannot be computed here (then plan
    /// afresh); None for [`ParamRoute::Everywhere`].
    pub fn ordinal(&self, params: &[Value]) -> Option<u32> {
        let ParamRoute::Keys { partitions, keys } = self else { return None };
        let key = keys
            .iter()
            .map(|&(index, affinity)| value_for_column(params.get(index)?.clone(), affinity))
            .collect::<Option<Vec<_>>>()?;
        Some(partition_of(&key, *partitions))
    }
}

/// The [`ParamRoute`] of a WHERE clause over `target`, if it has one.
pub(super) fn param_route(selection: Option<&Expr>, target: &Target, partitions: u32) -> Option<ParamRoute> {
    let def = target.def;
    let Some(selection) = selection else { return Some(ParamRoute::Everywhere) };
    if def.shard_key.is_empty() || super::has_collation(def) {
        return Some(ParamRoute::Everywhere);
    }
    let mut keys: Vec<Option<(usize, Affinity)>> = vec![None; def.shard_key.len()];
    let mut constrained = false;
    for conjunct in conjuncts(selection) {
        let Some((index, exprs)) = key_terms(conjunct, target) else { continue };
        constrained = true;
        let ([only], None) = (exprs.as_slice(), keys[index]) else {
            return None; // an IN list, or a second constraint on the same column
        };
        let number = placeholder_index(only)?;
        let column = def.column(&def.shard_key[index])?;
        keys[index] = Some((number, column.affinity));
    }
    if !constrained {
        return Some(ParamRoute::Everywhere);
    }
    Some(ParamRoute::Keys { partitions, keys: keys.into_iter().collect::<Option<Vec<_>>>()? })
}

/// The 0-based parameter index of a `?N` placeholder (possibly parenthesized).
fn placeholder_index(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Nested(inner) => placeholder_index(inner),
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::Placeholder(p) => placeholder_number(p)?.checked_sub(1),
            _ => None,
        },
        _ => None,
    }
}

/// The literal as the shard key column stores it (the column's affinity applied), if it can be known exactly.
fn key_value(expr: &Expr, target: &Target, index: usize, params: &[Value]) -> Option<Value> {
    let column = target.def.column(&target.def.shard_key[index])?;
    value_for_column(bound_value(expr, params)?, column.affinity)
}

/// `v` converted by `affinity`, or None when the conversion cannot be computed exactly here (a real whose text
/// SQLite renders with 17 digits).
pub(super) fn value_for_column(v: Value, affinity: Affinity) -> Option<Value> {
    if let (Value::Real(r), Affinity::Text) = (&v, affinity)
        && !real_text_is_exact(*r)
    {
        return None;
    }
    Some(apply_affinity(v, affinity))
}

/// The shard key index `expr` names, if it is a reference to a shard key column of the target table.
pub(super) fn key_index(expr: &Expr, target: &Target) -> Option<usize> {
    let (qualifier, column) = match expr {
        Expr::Identifier(i) => (Vec::new(), &i.value),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let (column, qualifier) = parts.split_last()?;
            (qualifier.iter().map(|i| i.value.to_lowercase()).collect(), &column.value)
        }
        Expr::Nested(inner) => return key_index(inner, target),
        _ => return None,
    };
    if !qualifier.is_empty() && !target.qualifiers.contains(&qualifier) {
        return None;
    }
    target.def.shard_key.iter().position(|k| k.eq_ignore_ascii_case(column))
}
