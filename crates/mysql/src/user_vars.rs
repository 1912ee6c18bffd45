//! User variables (`@name`), kept per connection by the front end as MySQL keeps them per session: `SET @a = expr`
//! stores a value (the expression is evaluated once, at the SET), and every later statement reads it: the front end
//! replaces each `@name` it reads by the value as a literal before the statement goes anywhere, so the backend,
//! the planner and the leaves see plain SQL and every partition sees the same value. An unset variable reads as
//! NULL, as in MySQL. Names are case-insensitive. This file is pure text work; the connection evaluates.
//!
//! Dump files rely on it: `SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='...'` at the top, `SET SQL_MODE=@OLD_SQL_MODE`
//! at the bottom.

use std::borrow::Cow;
use std::collections::HashMap;

use canopy_sql::Value;

use crate::split::{SegmentKind, segments};

/// How many user variables one connection may hold, and how large a value may be: a client cannot grow the
/// front end's memory without bound through SET.
pub(crate) const USER_VARIABLES_MAX: usize = 1024;
pub(crate) const USER_VARIABLE_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, Default)]
pub(crate) struct UserVariables {
    values: HashMap<String, Value>,
}

/// One assignment of a `SET` that names at least one user variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetTarget {
    /// `@name = expr`: the name (lower case) and the expression text, user variables already read.
    User { name: String, expr: String },
    /// Anything else (`sql_mode = ...`, `@@session.x = ...`): the whole assignment text, user variables read.
    Other(String),
}

impl UserVariables {
    pub(crate) fn get(&self, name: &str) -> Value {
        self.values.get(&name.to_ascii_lowercase()).cloned().unwrap_or(Value::Null)
    }

    /// Stores `value` under `name`; refused beyond the limits (the variable keeps its old value).
    pub(crate) fn set(&mut self, name: &str, value: Value) -> Result<(), String> {
        let bytes = match &value {
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
            _ => 8,
        };
        if bytes > USER_VARIABLE_BYTES_MAX {
            return Err(format!("the value of @{name} is larger than {USER_VARIABLE_BYTES_MAX} bytes"));
        }
        let key = name.to_ascii_lowercase();
        if !self.values.contains_key(&key) && self.values.len() >= USER_VARIABLES_MAX {
            return Err(format!("more than {USER_VARIABLES_MAX} user variables in one session"));
        }
        self.values.insert(key, value);
        Ok(())
    }

    /// `sql` with every user variable it reads replaced by its value's literal (NULL when unset). Text without
    /// any comes back borrowed.
    pub(crate) fn substitute<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        let reads = variable_reads(sql);
        if reads.is_empty() {
            return Cow::Borrowed(sql);
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut at = 0;
        for (range, name) in reads {
            out.push_str(&sql[at..range.start]);
            out.push_str(&self.get(&name).to_mysql_literal());
            at = range.end;
        }
        out.push_str(&sql[at..]);
        Cow::Owned(out)
    }
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// Every `@name` read in `sql` (outside strings, comments and quoted identifiers): its byte range and name. `@@x`
/// (system variables), `user@host` and `'user'@'host'` (accounts) are not user variables.
fn variable_reads(sql: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let bytes = sql.as_bytes();
    let mut reads = Vec::new();
    for segment in segments(sql).into_iter().filter(|s| s.kind == SegmentKind::Code) {
        let mut i = segment.range.start;
        while i < segment.range.end {
            if bytes[i] != b'@' {
                i += 1;
                continue;
            }
            let after_name_or_quote =
                i > 0 && (is_name_byte(bytes[i - 1]) || matches!(bytes[i - 1], b'\'' | b'"' | b'`'));
            if bytes.get(i + 1) == Some(&b'@') {
                // A system variable: skip `@@` and its name.
                i += 2;
                while i < segment.range.end && (is_name_byte(bytes[i]) || bytes[i] == b'.') {
                    i += 1;
                }
                continue;
            }
            let start = i;
            let mut end = i + 1;
            while end < segment.range.end && is_name_byte(bytes[end]) {
                end += 1;
            }
            if end > start + 1 && !after_name_or_quote {
                reads.push((start..end, sql[start + 1..end].to_string()));
            }
            i = end;
        }
    }
    reads
}

/// The assignments of a `SET` statement that assigns at least one user variable, each with the user variables it
/// reads already replaced; `None` for any other statement (which then goes its usual way, after [`substitute`]).
///
/// [`substitute`]: UserVariables::substitute
pub(crate) fn set_targets(sql: &str, vars: &UserVariables) -> Option<Vec<SetTarget>> {
    let trimmed = without_leading_comments(sql);
    let word_end = trimmed.bytes().position(|c| !c.is_ascii_alphabetic()).unwrap_or(trimmed.len());
    if !trimmed[..word_end].eq_ignore_ascii_case("SET") {
        return None;
    }
    let body = &trimmed[word_end..];
    let mut targets = Vec::new();
    let mut any_user = false;
    for part in split_assignments(body) {
        let part = part.trim();
        let target = match user_target(part) {
            Some((name, expr)) => {
                any_user = true;
                SetTarget::User { name, expr: vars.substitute(expr).into_owned() }
            }
            None => SetTarget::Other(vars.substitute(part).into_owned()),
        };
        targets.push(target);
    }
    any_user.then_some(targets)
}

/// `sql` from its first byte that is neither whitespace nor part of a comment.
fn without_leading_comments(sql: &str) -> &str {
    for segment in segments(sql) {
        let blank = segment.kind == SegmentKind::Comment
            || (segment.kind == SegmentKind::Code && sql[segment.range.clone()].trim().is_empty());
        if !blank {
            return sql[segment.range.start..].trim_start();
        }
    }
    ""
}

/// `@name = expr` or `@name := expr` → (lower-case name, expr).
fn user_target(part: &str) -> Option<(String, &str)> {
    let rest = part.strip_prefix('@')?;
    if rest.starts_with('@') {
        return None;
    }
    let end = rest.bytes().position(|c| !is_name_byte(c)).unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let (name, after) = rest.split_at(end);
    let after = after.trim_start();
    let expr = after.strip_prefix(":=").or_else(|| after.strip_prefix('='))?;
    Some((name.to_ascii_lowercase(), expr.trim()))
}

/// `a = 1, b = f(2, 3)` → `["a = 1", " b = f(2, 3)"]`: commas outside parentheses, strings and comments.
fn split_assignments(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for segment in segments(body).into_iter().filter(|s| s.kind == SegmentKind::Code) {
        for (offset, c) in body[segment.range.clone()].bytes().enumerate() {
            match c {
                b'(' => depth += 1,
                b')' => depth -= 1,
                b',' if depth == 0 => {
                    let at = segment.range.start + offset;
                    parts.push(&body[start..at]);
                    start = at + 1;
                }
                _ => {}
            }
        }
    }
    parts.push(&body[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, Value)]) -> UserVariables {
        let mut v = UserVariables::default();
        for (name, value) in pairs {
            v.set(name, value.clone()).unwrap();
        }
        v
    }

    #[test]
    fn reads_are_replaced_by_literals_and_unset_ones_by_null() {
        let v = vars(&[("a", Value::Integer(7)), ("Name", Value::Text("it's a \\ test".into()))]);
        let check = |sql: &str, expected: &str| assert_eq!(v.substitute(sql), expected, "{sql}");
        check("SELECT @a, @A + 1, @name", "SELECT 7, 7 + 1, 'it''s a \\\\ test'");
        check("SELECT @unset", "SELECT NULL");
        check("SELECT @@sql_mode, @@session.time_zone", "SELECT @@sql_mode, @@session.time_zone");
        check("SELECT '@a', `@a`, \"@a\" -- @a", "SELECT '@a', `@a`, \"@a\" -- @a");
        check("ADD LEAF root@'127.0.0.1':3307", "ADD LEAF root@'127.0.0.1':3307");
        check("SHOW GRANTS FOR 'root'@'%'", "SHOW GRANTS FOR 'root'@'%'");
        check("SELECT @", "SELECT @");
        assert!(matches!(v.substitute("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn set_statements_with_user_targets_are_taken_apart() {
        let v = vars(&[("old", Value::Text("x".into()))]);
        assert_eq!(
            set_targets("SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO'", &v),
            Some(vec![
                SetTarget::User { name: "old_sql_mode".into(), expr: "@@SQL_MODE".into() },
                SetTarget::Other("SQL_MODE='NO_AUTO_VALUE_ON_ZERO'".into()),
            ])
        );
        assert_eq!(
            set_targets("set @a := concat(@old, ','), @b = 2", &v),
            Some(vec![
                SetTarget::User { name: "a".into(), expr: "concat('x', ',')".into() },
                SetTarget::User { name: "b".into(), expr: "2".into() },
            ])
        );
        assert_eq!(set_targets("SET SQL_MODE=@old", &v), None, "no user target: the usual path");
        assert_eq!(
            set_targets("/*M!999999 sandbox */ \n-- dump\n  SET @a = 1", &v),
            Some(vec![SetTarget::User { name: "a".into(), expr: "1".into() }]),
            "comments before SET"
        );
        assert_eq!(set_targets("SELECT @a = 1", &v), None);
        assert_eq!(set_targets("SET @@session.sql_mode = ''", &v), None);
    }

    #[test]
    fn limits_hold() {
        let mut v = UserVariables::default();
        assert!(v.set("big", Value::Text("x".repeat(USER_VARIABLE_BYTES_MAX + 1))).is_err());
        for i in 0..USER_VARIABLES_MAX {
            v.set(&format!("v{i}"), Value::Integer(1)).unwrap();
        }
        assert!(v.set("one_more", Value::Integer(1)).is_err());
        assert!(v.set("v0", Value::Integer(2)).is_ok(), "an existing variable can still change");
    }
}
