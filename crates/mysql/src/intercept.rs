//! Recognises the statements the front end answers itself, so that connectors and tools can connect and set up
//! sessions without the backend ever seeing MySQL-specific chatter: `SET NAMES`, `SET CHARACTER SET`, session-scoped
//! `SET` of ordinary variables, `SET [SESSION] TRANSACTION ...`, and `SELECT` lists made only of `@@variables`,
//! `DATABASE()`, `CONNECTION_ID()`, `USER()`, `VERSION()`, `LAST_INSERT_ID()`, `ROW_COUNT()` and `FOUND_ROWS()`. This file only classifies (it is pure); the command loop
//! evaluates the result against the connection's state. Anything not recognised exactly is forwarded unchanged.

use canopy_sql::Value;

use crate::diagnostics::{Limit, Shown};
use crate::split::{Token, TokenKind, tokens};
use crate::sysvars::is_session_variable;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Local {
    /// The backend runs this statement.
    Forward,
    /// A session `SET` the front end acknowledges with OK; the assignments it remembers (none for `SET NAMES`).
    Set(Vec<Assignment>),
    /// `USE db`: the same as COM_INIT_DB, so it goes to `Session::init_db` rather than to `Session::query`.
    Use(String),
    /// A `SELECT` the front end answers with one row (or none under `LIMIT 0`).
    Select { items: Vec<SelectItem>, limit: Option<u64> },
    /// `SHOW WARNINGS|ERRORS [LIMIT ...]` and `SHOW COUNT(*) WARNINGS|ERRORS`: the conditions the previous
    /// statement raised, which only the front end sees all of.
    Diagnostics { shown: Shown, form: DiagnosticsForm },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiagnosticsForm {
    /// The `Level`, `Code`, `Message` rows, optionally `LIMIT [offset,] count`.
    List(Option<Limit>),
    /// `SHOW COUNT(*) ...`: how many.
    Count,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Assignment {
    /// Lowercase, without scope.
    pub name: String,
    pub value: AssignedValue,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AssignedValue {
    /// `= DEFAULT`: back to the built-in value.
    Default,
    /// A literal (number, string, or a bare word such as `ON` kept as text).
    Literal(Value),
    /// Anything else (`CONCAT(@@sql_mode, ...)`): acknowledged but not evaluated; the text as written.
    Expression(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SelectItem {
    /// The column name the client sees: the alias, or the item as written.
    pub column: String,
    pub source: ItemSource,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemSource {
    /// `@@name`; `global` when written `@@global.name`. `name` is lowercase without scope.
    Variable {
        name: String,
        global: bool,
    },
    Database,
    ConnectionId,
    /// `USER()`, `SESSION_USER()`, `SYSTEM_USER()`: the user and the host the client connected from.
    User,
    /// `CURRENT_USER()`: the account the server authenticated the client as (`root@%`, as SHOW GRANTS names it).
    CurrentUser,
    Version,
    LastInsertId,
    RowCount,
    FoundRows,
}

pub(crate) fn classify(sql: &str) -> Local {
    let toks = tokens(sql);
    match toks.first() {
        Some(t) if t.is_word("SET") => classify_set(sql, &toks[1..]),
        Some(t) if t.is_word("SELECT") => classify_select(sql, &toks[1..]),
        Some(t) if t.is_word("SHOW") => classify_show(&toks[1..]),
        Some(t) if t.is_word("USE") => match &toks[1..] {
            [Token { kind: TokenKind::Word(db) | TokenKind::Quoted(db), .. }] => Local::Use(db.clone()),
            _ => Local::Forward,
        },
        _ => Local::Forward,
    }
}

fn classify_show(toks: &[Token]) -> Local {
    let kind = |t: Option<&Token>| match t {
        Some(t) if t.is_word("WARNINGS") => Some(Shown::All),
        Some(t) if t.is_word("ERRORS") => Some(Shown::Errors),
        _ => None,
    };
    if let Some(shown) = kind(toks.first()) {
        let number = |t: &Token| match &t.kind {
            TokenKind::Word(n) => n.parse::<u64>().ok(),
            _ => None,
        };
        // `LIMIT [offset,] count`; anything else after the keyword is not ours.
        let limit = match &toks[1..] {
            [] => Ok(None),
            [l, rest @ ..] if l.is_word("LIMIT") => match rest {
                [n] => number(n).map(|count| Some(Limit { offset: 0, count })).ok_or(()),
                [o, Token { kind: TokenKind::Punct(","), .. }, n] => match (number(o), number(n)) {
                    (Some(offset), Some(count)) => Ok(Some(Limit { offset, count })),
                    _ => Err(()),
                },
                _ => Err(()),
            },
            _ => Err(()),
        };
        return match limit {
            Ok(limit) => Local::Diagnostics { shown, form: DiagnosticsForm::List(limit) },
            Err(()) => Local::Forward,
        };
    }
    let count_star = toks.len() == 5
        && toks[0].is_word("COUNT")
        && matches!(toks[1].kind, TokenKind::Punct("("))
        && matches!(toks[2].kind, TokenKind::Other('*'))
        && matches!(toks[3].kind, TokenKind::Punct(")"));
    match kind(toks.get(4)) {
        Some(shown) if count_star => Local::Diagnostics { shown, form: DiagnosticsForm::Count },
        _ => Local::Forward,
    }
}

fn classify_set(sql: &str, toks: &[Token]) -> Local {
    let word = |i: usize, w: &str| toks.get(i).is_some_and(|t| t.is_word(w));
    if word(0, "NAMES") || word(0, "CHARSET") || (word(0, "CHARACTER") && word(1, "SET")) {
        return Local::Set(vec![]);
    }
    if word(0, "TRANSACTION") || ((word(0, "SESSION") || word(0, "LOCAL")) && word(1, "TRANSACTION")) {
        return Local::Set(vec![]);
    }
    let mut assignments = Vec::new();
    for part in split_top_level_commas(toks) {
        match classify_assignment(sql, part) {
            Some(a) => assignments.push(a),
            None => return Local::Forward,
        }
    }
    if assignments.is_empty() { Local::Forward } else { Local::Set(assignments) }
}

/// One `[SESSION|LOCAL] name = value` or `@@[session.|local.]name = value`; None for anything the backend must see
/// (GLOBAL/PERSIST scope, user variables, variables not on the session list, syntax we do not know).
fn classify_assignment(sql: &str, toks: &[Token]) -> Option<Assignment> {
    let (name, rest) = match toks {
        [scope, name_token, rest @ ..] if scope.is_word("SESSION") || scope.is_word("LOCAL") => {
            (word_text(name_token)?, rest)
        }
        [Token { kind: TokenKind::SystemVariable(v), .. }, rest @ ..] => match split_scope(v) {
            (name, false) => (name, rest),
            (_, true) => return None,
        },
        [name_token, rest @ ..] => (word_text(name_token)?, rest),
        [] => return None,
    };
    let name = name.to_ascii_lowercase();
    if !is_session_variable(&name) {
        return None;
    }
    let value_toks = match rest {
        [Token { kind: TokenKind::Punct("=" | ":="), .. }, value @ ..] if !value.is_empty() => value,
        _ => return None,
    };
    Some(Assignment { name, value: assigned_value(sql, value_toks) })
}

fn word_text(token: &Token) -> Option<String> {
    match &token.kind {
        TokenKind::Word(w) => Some(w.clone()),
        _ => None,
    }
}

fn assigned_value(sql: &str, toks: &[Token]) -> AssignedValue {
    match toks {
        [t] if t.is_word("DEFAULT") => AssignedValue::Default,
        [Token { kind: TokenKind::Word(w), .. }] => {
            AssignedValue::Literal(number(w, false).unwrap_or_else(|| Value::Text(w.clone())))
        }
        [Token { kind: TokenKind::Other('-'), .. }, Token { kind: TokenKind::Word(w), .. }]
            if number(w, true).is_some() =>
        {
            AssignedValue::Literal(number(w, true).unwrap_or(Value::Null))
        }
        [Token { kind: TokenKind::Quoted(s), .. }] => AssignedValue::Literal(Value::Text(s.clone())),
        _ => {
            let start = toks.first().map_or(0, |t| t.range.start);
            let end = toks.last().map_or(0, |t| t.range.end);
            AssignedValue::Expression(sql[start..end].to_string())
        }
    }
}

fn number(word: &str, negative: bool) -> Option<Value> {
    let signed = if negative { format!("-{word}") } else { word.to_string() };
    if let Ok(i) = signed.parse::<i64>() {
        return Some(Value::Integer(i));
    }
    let starts_numeric = word.starts_with(|c: char| c.is_ascii_digit());
    signed.parse::<f64>().ok().filter(|r| starts_numeric && r.is_finite()).map(Value::Real)
}

/// `session.x` / `local.x` / `x` → (x, false); `global.x` / `persist.x` / `persist_only.x` → (x, true).
fn split_scope(variable: &str) -> (String, bool) {
    let lower = variable.to_ascii_lowercase();
    match lower.split_once('.') {
        Some(("session" | "local", name)) => (name.to_string(), false),
        Some(("global" | "persist" | "persist_only", name)) => (name.to_string(), true),
        _ => (lower, false),
    }
}

fn split_top_level_commas(toks: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            TokenKind::Punct("(") => depth += 1,
            TokenKind::Punct(")") => depth = depth.saturating_sub(1),
            TokenKind::Punct(",") if depth == 0 => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts
}

fn classify_select(sql: &str, toks: &[Token]) -> Local {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        let Some((source, used)) = select_source(&toks[i..]) else { return Local::Forward };
        let written = &sql[toks[i].range.start..toks[i + used - 1].range.end];
        i += used;
        let mut column = written.to_string();
        match toks.get(i) {
            Some(t) if t.is_word("AS") => match toks.get(i + 1).map(|t| &t.kind) {
                Some(TokenKind::Word(alias) | TokenKind::Quoted(alias)) => {
                    column = alias.clone();
                    i += 2;
                }
                _ => return Local::Forward,
            },
            Some(t) if t.is_word("LIMIT") => {}
            Some(Token { kind: TokenKind::Word(alias) | TokenKind::Quoted(alias), .. }) => {
                column = alias.clone();
                i += 1;
            }
            _ => {}
        }
        items.push(SelectItem { column, source });
        match toks.get(i) {
            None => return Local::Select { items, limit: None },
            Some(Token { kind: TokenKind::Punct(","), .. }) => i += 1,
            Some(t) if t.is_word("LIMIT") => {
                return match &toks[i + 1..] {
                    [Token { kind: TokenKind::Word(n), .. }] => match n.parse::<u64>() {
                        Ok(limit) => Local::Select { items, limit: Some(limit) },
                        Err(_) => Local::Forward,
                    },
                    _ => Local::Forward,
                };
            }
            Some(_) => return Local::Forward,
        }
    }
}

/// The item at the start of `toks` and how many tokens it spans, if it is one the front end answers.
fn select_source(toks: &[Token]) -> Option<(ItemSource, usize)> {
    match toks {
        [Token { kind: TokenKind::SystemVariable(v), .. }, ..] => {
            let (name, global) = split_scope(v);
            Some((ItemSource::Variable { name, global }, 1))
        }
        [
            Token { kind: TokenKind::Word(f), .. },
            Token { kind: TokenKind::Punct("("), .. },
            Token { kind: TokenKind::Punct(")"), .. },
            ..,
        ] => {
            let source = match f.to_ascii_uppercase().as_str() {
                "DATABASE" | "SCHEMA" => ItemSource::Database,
                "CONNECTION_ID" => ItemSource::ConnectionId,
                "USER" | "SESSION_USER" | "SYSTEM_USER" => ItemSource::User,
                "CURRENT_USER" => ItemSource::CurrentUser,
                "VERSION" => ItemSource::Version,
                "LAST_INSERT_ID" => ItemSource::LastInsertId,
                "ROW_COUNT" => ItemSource::RowCount,
                "FOUND_ROWS" => ItemSource::FoundRows,
                _ => return None,
            };
            Some((source, 3))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str) -> ItemSource {
        ItemSource::Variable { name: name.into(), global: false }
    }

    fn item(column: &str, source: ItemSource) -> SelectItem {
        SelectItem { column: column.into(), source }
    }

    fn set(name: &str, value: AssignedValue) -> Assignment {
        Assignment { name: name.into(), value }
    }

    #[test]
    fn variable_selects_are_answered_locally() {
        assert_eq!(
            classify("SELECT @@version_comment LIMIT 1"),
            Local::Select { items: vec![item("@@version_comment", var("version_comment"))], limit: Some(1) }
        );
        assert_eq!(
            classify("select @@max_allowed_packet,@@wait_timeout"),
            Local::Select {
                items: vec![
                    item("@@max_allowed_packet", var("max_allowed_packet")),
                    item("@@wait_timeout", var("wait_timeout"))
                ],
                limit: None
            }
        );
        assert_eq!(
            classify("SELECT @@SESSION.auto_increment_increment AS auto_increment_increment, @@global.sql_mode m"),
            Local::Select {
                items: vec![
                    item("auto_increment_increment", var("auto_increment_increment")),
                    item("m", ItemSource::Variable { name: "sql_mode".into(), global: true }),
                ],
                limit: None
            }
        );
        assert_eq!(
            classify("SELECT DATABASE(), connection_id() AS `id`"),
            Local::Select {
                items: vec![item("DATABASE()", ItemSource::Database), item("id", ItemSource::ConnectionId)],
                limit: None
            }
        );
        assert_eq!(
            classify("SELECT LAST_INSERT_ID(), row_count(), FOUND_ROWS()"),
            Local::Select {
                items: vec![
                    item("LAST_INSERT_ID()", ItemSource::LastInsertId),
                    item("row_count()", ItemSource::RowCount),
                    item("FOUND_ROWS()", ItemSource::FoundRows)
                ],
                limit: None
            }
        );
        assert_eq!(
            classify("SELECT current_user(), USER()"),
            Local::Select {
                items: vec![item("current_user()", ItemSource::CurrentUser), item("USER()", ItemSource::User)],
                limit: None
            }
        );
    }

    #[test]
    fn other_selects_are_forwarded() {
        for sql in [
            "SELECT 1",
            "SELECT @@version, 1",
            "SELECT @@version FROM t",
            "SELECT @@version LIMIT 1, 2",
            "SELECT @a",
            "SELECT NOW()",
            "SELECT * FROM t",
            "SELECT @@x AS",
        ] {
            assert_eq!(classify(sql), Local::Forward, "{sql}");
        }
    }

    #[test]
    fn session_sets_are_answered_locally() {
        assert_eq!(classify("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci"), Local::Set(vec![]));
        assert_eq!(classify("set character set utf8"), Local::Set(vec![]));
        assert_eq!(classify("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"), Local::Set(vec![]));
        assert_eq!(
            classify("SET autocommit=0"),
            Local::Set(vec![set("autocommit", AssignedValue::Literal(Value::Integer(0)))])
        );
        assert_eq!(
            classify("SET @@session.sql_mode = 'ANSI', SESSION wait_timeout = DEFAULT, net_write_timeout := -5"),
            Local::Set(vec![
                set("sql_mode", AssignedValue::Literal(Value::Text("ANSI".into()))),
                set("wait_timeout", AssignedValue::Default),
                set("net_write_timeout", AssignedValue::Literal(Value::Integer(-5))),
            ])
        );
        assert_eq!(
            classify("SET sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES'), @@autocommit = ON"),
            Local::Set(vec![
                set("sql_mode", AssignedValue::Expression("CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')".into())),
                set("autocommit", AssignedValue::Literal(Value::Text("ON".into()))),
            ])
        );
    }

    #[test]
    fn diagnostics_are_answered_locally() {
        let list = |shown, limit| Local::Diagnostics { shown, form: DiagnosticsForm::List(limit) };
        let count = |shown| Local::Diagnostics { shown, form: DiagnosticsForm::Count };
        assert_eq!(classify("SHOW WARNINGS"), list(Shown::All, None));
        assert_eq!(classify("show errors limit 5"), list(Shown::Errors, Some(Limit { offset: 0, count: 5 })));
        assert_eq!(classify("SHOW WARNINGS LIMIT 2, 10"), list(Shown::All, Some(Limit { offset: 2, count: 10 })));
        assert_eq!(classify("SHOW COUNT(*) WARNINGS"), count(Shown::All));
        assert_eq!(classify("SHOW COUNT(*) ERRORS"), count(Shown::Errors));
        assert_eq!(classify("SHOW WARNINGS LIMIT x"), Local::Forward);
        assert_eq!(classify("SHOW WARNINGS LIMIT 1, x"), Local::Forward);
        assert_eq!(classify("SHOW TABLES"), Local::Forward);
    }

    #[test]
    fn use_goes_to_init_db() {
        assert_eq!(classify("USE shop"), Local::Use("shop".into()));
        assert_eq!(classify("use `my db`"), Local::Use("my db".into()));
        assert_eq!(classify("USE a b"), Local::Forward);
    }

    #[test]
    fn global_user_and_unknown_sets_are_forwarded() {
        for sql in [
            "SET GLOBAL max_connections = 10",
            "SET @@GLOBAL.sql_mode = ''",
            "SET @@global.autocommit = 1",
            "SET PERSIST wait_timeout = 1",
            "SET @x = 1",
            "SET autocommit = 1, @x = 2",
            "SET rebalance_mode = 'fast'",
            "SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET autocommit",
            "SET",
        ] {
            assert_eq!(classify(sql), Local::Forward, "{sql}");
        }
    }
}
