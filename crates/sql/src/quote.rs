//! Quoting of names and strings in the SQL text Canopy builds: one implementation for every crate. SQLite reads
//! double-quoted identifiers and single-quoted strings; MySQL reads backquoted identifiers. (Values with their types
//! are rendered by `Value::to_sql_literal` / `Value::to_mysql_literal`.)

/// An identifier in SQLite's (and standard SQL's) double quotes, embedded quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal in single quotes for SQLite, embedded quotes doubled.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// An identifier in MySQL's backquotes, embedded backquotes doubled.
pub fn backquote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_are_doubled_inside() {
        assert_eq!(super::ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(super::literal("it's"), "'it''s'");
        assert_eq!(super::backquote("a`b"), "`a``b`");
    }

    /// What SQLite reads back is the name or string that went in.
    #[test]
    fn sqlite_reads_back_what_was_quoted() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for name in ["plain", "with \"quotes\"", "semi;colon", "it's"] {
            conn.execute_batch(&format!("CREATE TABLE {} (x)", super::ident(name))).unwrap();
            let got: String = conn
                .query_row(&format!("SELECT name FROM sqlite_master WHERE name = {}", super::literal(name)), [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(got, name);
        }
    }
}
