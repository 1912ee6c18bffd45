//! Statements that dump and admin tools send around their real work, which Canopy accepts without effect because it
//! has nothing they would act on: `LOCK TABLES ...` / `UNLOCK TABLES` (Canopy has no table locks: a dump taken while
//! writers run is not one snapshot; `SNAPSHOT DATABASE` is the consistent copy) and `ALTER TABLE t
//! {DISABLE|ENABLE} KEYS` (indexes are always maintained). The table named by ALTER TABLE must still exist.

use super::NoEffect;
use crate::error::SqlError;
use crate::lexer::Cursor;

/// `Ok(None)` when the statement is none of these (the cursor is then untouched).
pub(super) fn parse(cur: &mut Cursor) -> Result<Option<NoEffect>, SqlError> {
    if cur.peek_words(&["LOCK", "TABLES"]) || cur.peek_words(&["LOCK", "TABLE"]) {
        cur.set_context("LOCK TABLES");
        cur.advance();
        cur.advance();
        loop {
            cur.expect_qualified_name("a table name")?;
            let _ = cur.eat_word("AS") && cur.expect_ident("an alias").is_ok();
            let lock = cur.eat_words(&["READ", "LOCAL"])
                || cur.eat_word("READ")
                || cur.eat_words(&["LOW_PRIORITY", "WRITE"])
                || cur.eat_word("WRITE");
            if !lock {
                return Err(cur.error("READ [LOCAL] or [LOW_PRIORITY] WRITE"));
            }
            if !cur.eat_punct(',') {
                break;
            }
        }
        cur.expect_end()?;
        return Ok(Some(NoEffect::LockTables));
    }
    if cur.peek_words(&["UNLOCK", "TABLES"]) || cur.peek_words(&["UNLOCK", "TABLE"]) {
        cur.set_context("UNLOCK TABLES");
        cur.advance();
        cur.advance();
        cur.expect_end()?;
        return Ok(Some(NoEffect::UnlockTables));
    }
    if cur.peek_words(&["ALTER", "TABLE"]) {
        // ALTER TABLE [db.]t {DISABLE|ENABLE} KEYS
        let mut i = 3;
        if cur.peek_at(i).is_some_and(|t| t.is_punct('.')) {
            i += 2;
        }
        let toggles = cur.peek_at(i).is_some_and(|t| t.is_word("DISABLE") || t.is_word("ENABLE"))
            && cur.peek_at(i + 1).is_some_and(|t| t.is_word("KEYS"));
        if !toggles {
            return Ok(None);
        }
        cur.set_context("ALTER TABLE ... KEYS");
        cur.advance();
        cur.advance();
        let (db, table) = cur.expect_qualified_name("a table name")?;
        cur.advance();
        cur.advance();
        cur.expect_end()?;
        return Ok(Some(NoEffect::ToggleKeys { db, table }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use crate::command::{NoEffect, Statement, parse_statement};

    fn check(sql: &str, expected: NoEffect) {
        assert_eq!(parse_statement(sql), Ok(Statement::NoEffect(expected)), "{sql}");
    }

    #[test]
    fn tool_statements_parse() {
        check("LOCK TABLES `t` WRITE", NoEffect::LockTables);
        check("LOCK TABLES `r` READ LOCAL, `t` READ LOCAL", NoEffect::LockTables);
        check("lock table d.t as x low_priority write", NoEffect::LockTables);
        check("UNLOCK TABLES", NoEffect::UnlockTables);
        check("ALTER TABLE `t` DISABLE KEYS", NoEffect::ToggleKeys { db: None, table: "t".into() });
        check("ALTER TABLE d.t ENABLE KEYS", NoEffect::ToggleKeys { db: Some("d".into()), table: "t".into() });
        for bad in ["LOCK TABLES t", "LOCK TABLES t SHARED", "UNLOCK TABLES t", "ALTER TABLE t DISABLE KEYS x"] {
            assert!(parse_statement(bad).is_err(), "{bad} should not parse");
        }
    }
}
