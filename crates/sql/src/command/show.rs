//! The grammar of MySQL's catalog SHOW statements that tools send (SHOW INDEX, SHOW TABLE STATUS, SHOW FULL COLUMNS,
//! SHOW CREATE DATABASE, SHOW ENGINES, SHOW CHARACTER SET, SHOW COLLATION, SHOW PLUGINS, SHOW PRIVILEGES, SHOW GRANTS, SHOW
//! MASTER|SLAVE|REPLICA STATUS, SHOW FUNCTION|PROCEDURE STATUS, SHOW TRIGGERS, SHOW EVENTS, SHOW PROCESSLIST,
//! SHOW STATUS). It recognises them by their leading keywords; the server answers them from the
//! metadata. SHOW DATABASES / TABLES / COLUMNS / CREATE TABLE / VARIABLES are `command.rs`'s own.

use super::{ObjectKind, ShowCatalog};
use crate::error::SqlError;
use crate::lexer::{Cursor, TokenKind};

/// `Ok(None)` when the statement is no catalog SHOW of this module (the cursor is then untouched).
pub(super) fn parse(cur: &mut Cursor) -> Result<Option<ShowCatalog>, SqlError> {
    let is = |cur: &Cursor, words: &[&str]| {
        let mut all = vec!["SHOW"];
        all.extend_from_slice(words);
        cur.peek_words(&all)
    };
    let show = if ["INDEX", "INDEXES", "KEYS"].iter().any(|w| is(cur, &[w]) || is(cur, &["EXTENDED", w])) {
        cur.set_context("SHOW INDEX");
        cur.advance();
        cur.eat_word("EXTENDED");
        cur.advance();
        let (db, table) = from_table(cur)?;
        cur.expect_end()?;
        ShowCatalog::Index { db, table }
    } else if ["COLUMNS", "FIELDS"].iter().any(|w| is(cur, &["FULL", w]) || is(cur, &["EXTENDED", "FULL", w])) {
        cur.set_context("SHOW FULL COLUMNS");
        cur.advance();
        cur.eat_word("EXTENDED");
        cur.advance();
        cur.advance();
        let (db, table) = from_table(cur)?;
        let like = optional_like(cur)?;
        ShowCatalog::FullColumns { db, table, like }
    } else if is(cur, &["TABLE", "STATUS"]) {
        cur.set_context("SHOW TABLE STATUS");
        for _ in 0..3 {
            cur.advance();
        }
        let db =
            if cur.eat_word("FROM") || cur.eat_word("IN") { Some(cur.expect_ident("a database name")?) } else { None };
        ShowCatalog::TableStatus { db, like: optional_like(cur)? }
    } else if is(cur, &["CREATE", "DATABASE"]) || is(cur, &["CREATE", "SCHEMA"]) {
        cur.set_context("SHOW CREATE DATABASE");
        for _ in 0..3 {
            cur.advance();
        }
        let if_not_exists = cur.eat_words(&["IF", "NOT", "EXISTS"]);
        let name = cur.expect_ident("a database name")?;
        cur.expect_end()?;
        ShowCatalog::CreateDatabase { name, if_not_exists }
    } else if is(cur, &["ENGINES"]) || is(cur, &["STORAGE", "ENGINES"]) {
        cur.set_context("SHOW ENGINES");
        cur.advance();
        cur.eat_word("STORAGE");
        cur.advance();
        cur.expect_end()?;
        ShowCatalog::Engines
    } else if is(cur, &["CHARACTER", "SET"]) || is(cur, &["CHARSET"]) {
        cur.set_context("SHOW CHARACTER SET");
        cur.advance();
        if !cur.eat_word("CHARSET") {
            cur.advance();
            cur.advance();
        }
        ShowCatalog::CharacterSet { like: optional_like(cur)? }
    } else if is(cur, &["COLLATION"]) {
        cur.set_context("SHOW COLLATION");
        cur.advance();
        cur.advance();
        ShowCatalog::Collation { like: optional_like(cur)? }
    } else if is(cur, &["PLUGINS"]) {
        cur.set_context("SHOW PLUGINS");
        cur.advance();
        cur.advance();
        cur.expect_end()?;
        ShowCatalog::Plugins
    } else if is(cur, &["PRIVILEGES"]) {
        cur.set_context("SHOW PRIVILEGES");
        cur.advance();
        cur.advance();
        cur.expect_end()?;
        ShowCatalog::Privileges
    } else if is(cur, &["GRANTS"]) {
        cur.set_context("SHOW GRANTS");
        cur.advance();
        cur.advance();
        let user = if cur.eat_word("FOR") { Some(user_name(cur)?) } else { None };
        cur.expect_end()?;
        ShowCatalog::Grants { user }
    } else if is(cur, &["FUNCTION", "STATUS"]) || is(cur, &["PROCEDURE", "STATUS"]) {
        cur.set_context("SHOW FUNCTION STATUS");
        for _ in 0..3 {
            cur.advance();
        }
        skip_filter(cur)?;
        ShowCatalog::NoObjects(ObjectKind::Routines)
    } else if is(cur, &["TRIGGERS"]) || is(cur, &["EVENTS"]) {
        let kind = if is(cur, &["TRIGGERS"]) { ObjectKind::Triggers } else { ObjectKind::Events };
        cur.set_context("SHOW TRIGGERS");
        cur.advance();
        cur.advance();
        if cur.eat_word("FROM") || cur.eat_word("IN") {
            cur.expect_ident("a database name")?;
        }
        skip_filter(cur)?;
        ShowCatalog::NoObjects(kind)
    } else if ["MASTER", "SLAVE", "REPLICA", "BINARY"].iter().any(|w| is(cur, &[w, "STATUS"]) || is(cur, &[w, "LOGS"]))
    {
        cur.set_context("SHOW REPLICATION STATUS");
        cur.advance();
        cur.advance();
        cur.advance();
        cur.expect_end()?;
        ShowCatalog::ReplicationStatus
    } else if is(cur, &["PROCESSLIST"]) || is(cur, &["FULL", "PROCESSLIST"]) {
        cur.set_context("SHOW PROCESSLIST");
        cur.advance();
        let full = cur.eat_word("FULL");
        cur.advance();
        cur.expect_end()?;
        ShowCatalog::Processlist { full }
    } else if ["GLOBAL", "SESSION", "LOCAL"].iter().any(|w| is(cur, &[w, "STATUS"])) || is(cur, &["STATUS"]) {
        cur.set_context("SHOW STATUS");
        cur.advance();
        let _ = cur.eat_word("GLOBAL") || cur.eat_word("SESSION") || cur.eat_word("LOCAL");
        cur.advance();
        ShowCatalog::Status { like: optional_like(cur)? }
    } else {
        return Ok(None);
    };
    Ok(Some(show))
}

/// `{FROM|IN} [db.]t [{FROM|IN} db]`.
fn from_table(cur: &mut Cursor) -> Result<(Option<String>, String), SqlError> {
    if !(cur.eat_word("FROM") || cur.eat_word("IN")) {
        return Err(cur.error("FROM or IN"));
    }
    let (mut db, table) = cur.expect_qualified_name("a table name")?;
    if cur.eat_word("FROM") || cur.eat_word("IN") {
        db = Some(cur.expect_ident("a database name")?);
    }
    Ok((db, table))
}

/// `[LIKE 'p']` for a list that is always empty: the pattern cannot change the answer. (A `WHERE` filter wraps the
/// statement before this grammar sees it: `Statement::ShowWhere`.)
fn skip_filter(cur: &mut Cursor) -> Result<(), SqlError> {
    optional_like(cur).map(|_| ())
}

fn optional_like(cur: &mut Cursor) -> Result<Option<String>, SqlError> {
    let like = if cur.eat_word("LIKE") { Some(cur.expect_string("a quoted pattern after LIKE")?) } else { None };
    cur.expect_end()?;
    Ok(like)
}

/// `user`, `'user'`, `'user'@'host'`, `CURRENT_USER[()]`: the user name (the host part is not kept).
fn user_name(cur: &mut Cursor) -> Result<String, SqlError> {
    if cur.eat_word("CURRENT_USER") {
        if cur.eat_punct('(') {
            cur.expect_punct(')')?;
        }
        return Ok("CURRENT_USER".to_string());
    }
    let name = |cur: &Cursor| match cur.peek().map(|t| &t.kind) {
        Some(TokenKind::Word(u) | TokenKind::QuotedIdent(u) | TokenKind::Str(u)) => Some(u.clone()),
        _ => None,
    };
    let user = name(cur).ok_or_else(|| cur.error("a user name"))?;
    cur.advance();
    if cur.eat_punct('@') {
        name(cur).ok_or_else(|| cur.error("a host name after '@'"))?;
        cur.advance();
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use crate::command::{ObjectKind, ShowCatalog, Statement, parse_statement};

    fn check(sql: &str, expected: ShowCatalog) {
        assert_eq!(parse_statement(sql), Ok(Statement::ShowCatalog(expected)), "{sql}");
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn catalog_shows_parse() {
        check("SHOW INDEX FROM t", ShowCatalog::Index { db: None, table: "t".into() });
        check("show keys in d.t", ShowCatalog::Index { db: some("d"), table: "t".into() });
        check("SHOW INDEXES FROM `t` FROM d", ShowCatalog::Index { db: some("d"), table: "t".into() });
        check(
            "SHOW FULL COLUMNS FROM t LIKE 'a%'",
            ShowCatalog::FullColumns { db: None, table: "t".into(), like: some("a%") },
        );
        check("SHOW TABLE STATUS", ShowCatalog::TableStatus { db: None, like: None });
        check("SHOW TABLE STATUS FROM d LIKE 'x'", ShowCatalog::TableStatus { db: some("d"), like: some("x") });
        check(
            "SHOW CREATE DATABASE IF NOT EXISTS d",
            ShowCatalog::CreateDatabase { name: "d".into(), if_not_exists: true },
        );
        check("SHOW CREATE SCHEMA d", ShowCatalog::CreateDatabase { name: "d".into(), if_not_exists: false });
        check("SHOW STORAGE ENGINES", ShowCatalog::Engines);
        check("SHOW CHARSET", ShowCatalog::CharacterSet { like: None });
        check("SHOW CHARACTER SET LIKE 'utf8%'", ShowCatalog::CharacterSet { like: some("utf8%") });
        check("SHOW COLLATION", ShowCatalog::Collation { like: None });
        check("SHOW PLUGINS", ShowCatalog::Plugins);
        check("show privileges", ShowCatalog::Privileges);
        check("SHOW GRANTS", ShowCatalog::Grants { user: None });
        check("SHOW GRANTS FOR 'root'@'%'", ShowCatalog::Grants { user: some("root") });
        check("SHOW GRANTS FOR CURRENT_USER()", ShowCatalog::Grants { user: some("CURRENT_USER") });
        check("SHOW SLAVE STATUS", ShowCatalog::ReplicationStatus);
        check("SHOW MASTER STATUS", ShowCatalog::ReplicationStatus);
        check("SHOW BINARY LOGS", ShowCatalog::ReplicationStatus);
        assert_eq!(
            parse_statement("SHOW FUNCTION STATUS WHERE Db = 'app'"),
            Ok(Statement::ShowWhere {
                show: Box::new(Statement::ShowCatalog(ShowCatalog::NoObjects(ObjectKind::Routines))),
                condition: "Db = 'app'".to_string()
            })
        );
        check("SHOW PROCEDURE STATUS LIKE 'x'", ShowCatalog::NoObjects(ObjectKind::Routines));
        check("SHOW TRIGGERS FROM app LIKE 't'", ShowCatalog::NoObjects(ObjectKind::Triggers));
        check("SHOW EVENTS", ShowCatalog::NoObjects(ObjectKind::Events));
        check("SHOW PROCESSLIST", ShowCatalog::Processlist { full: false });
        check("show full processlist", ShowCatalog::Processlist { full: true });
        check("SHOW STATUS", ShowCatalog::Status { like: None });
        check("SHOW GLOBAL STATUS LIKE 'Com_%'", ShowCatalog::Status { like: some("Com_%") });
        check("SHOW SESSION STATUS", ShowCatalog::Status { like: None });
    }

    #[test]
    fn malformed_catalog_shows_are_errors() {
        for sql in [
            "SHOW INDEX t",
            "SHOW INDEX FROM",
            "SHOW TABLE STATUS LIKE",
            "SHOW GRANTS FOR",
            "SHOW ENGINES x",
            "SHOW TRIGGERS WHERE",
            "SHOW PROCESSLIST x",
            "SHOW STATUS LIKE",
        ] {
            assert!(parse_statement(sql).is_err(), "{sql} should not parse");
        }
    }
}
