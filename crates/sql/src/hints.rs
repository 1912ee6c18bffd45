//! MySQL optimizer hints Canopy acts on: `SELECT /*+ MAX_EXECUTION_TIME(n) */ ...`, the time limit in milliseconds
//! of one read. A hint comment must follow the statement's first keyword (as in MySQL); other hints are ignored.

/// The `MAX_EXECUTION_TIME(n)` of a SELECT's hint comment, or None when the statement has none.
pub fn max_execution_time(sql: &str) -> Option<u64> {
    let rest = sql.trim_start();
    let keyword_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
    if !rest[..keyword_len].eq_ignore_ascii_case("SELECT") {
        return None;
    }
    let rest = rest[keyword_len..].trim_start().strip_prefix("/*+")?;
    let hint = &rest[..rest.find("*/")?];
    let upper = hint.to_ascii_uppercase();
    let at = upper.find("MAX_EXECUTION_TIME")?;
    let args = upper[at + "MAX_EXECUTION_TIME".len()..].trim_start().strip_prefix('(')?;
    let close = args.find(')')?;
    args[..close].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::max_execution_time as hint;

    #[test]
    fn the_hint_is_read_only_where_mysql_reads_it() {
        assert_eq!(hint("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t"), Some(1000));
        assert_eq!(hint("  select /*+ BKA(t) max_execution_time( 25 ) */ 1"), Some(25));
        assert_eq!(hint("SELECT * FROM t /*+ MAX_EXECUTION_TIME(5) */"), None, "not after the keyword");
        assert_eq!(hint("SELECT /* MAX_EXECUTION_TIME(5) */ 1"), None, "a plain comment is no hint");
        assert_eq!(hint("UPDATE /*+ MAX_EXECUTION_TIME(5) */ t SET a = 1"), None, "reads only");
        assert_eq!(hint("SELECT /*+ MAX_EXECUTION_TIME(x) */ 1"), None);
        assert_eq!(hint("SELECT /*+ MAX_EXECUTION_TIME(5) 1"), None, "an unclosed comment");
        assert_eq!(hint("SELECTED"), None);
    }
}
