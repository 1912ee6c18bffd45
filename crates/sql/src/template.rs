//! Text statements as templates: an `INSERT ... VALUES` sent as plain text (as most clients and every ORM's
//! non-prepared path send it) is split into the statement with numbered placeholders in place of its literal
//! values and the values themselves, so that an aggregator parses each shape of insert once per session and plans
//! later ones from the parsed template, as it does a prepared statement. Pure and conservative: anything beyond the
//! plainest literals (expressions, escapes, comments, hex or charset-introduced strings, `ON DUPLICATE KEY`,
//! more than [`LIFTED_VALUES_MAX`] values) leaves the statement to the ordinary parse.

use crate::Value;
use crate::lexer::{Token, TokenKind, tokenize};

/// Values one template may lift; a larger multi-row insert is parsed as it is (its parse is paid per row anyway,
/// and every partition of the insert is sent all of the statement's parameters).
pub const LIFTED_VALUES_MAX: usize = 64;

/// A statement with its literal values lifted out.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifted {
    /// The statement with `?1`, `?2`, ... where the values were: the template's key and its text to parse.
    pub numbered: String,
    /// The values, in placeholder order: what the planner reads from the literals they replace.
    pub params: Vec<Value>,
}

/// `INSERT [IGNORE] INTO name [(columns)] VALUES (v, ...), ...` whose every value is an integer, a negative
/// integer, a single-quoted string without escapes, or NULL: the template and its values. None for anything else.
pub fn insert_values(sql: &str) -> Option<Lifted> {
    // Cheap refusals before tokenizing: not an insert, or placeholders already (a prepared text).
    let head = sql.trim_start().get(..6)?;
    if !head.eq_ignore_ascii_case("insert") || sql.contains('?') {
        return None;
    }
    let tokens = tokenize(sql).ok()?;
    if !only_whitespace_between(sql, &tokens) {
        return None;
    }
    let mut at = 0;
    let word = |at: usize, w: &str| tokens.get(at).is_some_and(|t| t.is_word(w));
    let punct = |at: usize, c: char| tokens.get(at).is_some_and(|t| t.is_punct(c));
    // INSERT [IGNORE] INTO
    if !word(at, "insert") {
        return None;
    }
    at += 1;
    if word(at, "ignore") {
        at += 1;
    }
    if !word(at, "into") {
        return None;
    }
    at += 1;
    // name or db.name
    at = name(&tokens, at)?;
    if punct(at, '.') {
        at = name(&tokens, at + 1)?;
    }
    // The items of a parenthesized list, the `(` at `from` already read: each read by `item` (its end, or None),
    // separated by commas; the position after the `)`.
    let list = |from: usize, item: &mut dyn FnMut(usize) -> Option<usize>| -> Option<usize> {
        let mut at = from;
        loop {
            at = item(at)?;
            if punct(at, ',') {
                at += 1;
            } else if punct(at, ')') {
                return Some(at + 1);
            } else {
                return None;
            }
        }
    };
    // [(column, ...)]
    if punct(at, '(') {
        at = list(at + 1, &mut |at| name(&tokens, at))?;
    }
    if !word(at, "values") {
        return None;
    }
    at += 1;
    // (value, ...), ...: each value's span and what it stands for.
    let mut lifted: Vec<(usize, usize, Value)> = Vec::new();
    loop {
        if !punct(at, '(') {
            return None;
        }
        at = list(at + 1, &mut |at| {
            let (next, value) = literal(sql, &tokens, at)?;
            lifted.push((tokens[at].start, tokens[next - 1].end, value));
            (lifted.len() <= LIFTED_VALUES_MAX).then_some(next)
        })?;
        if punct(at, ',') {
            at += 1;
        } else {
            break;
        }
    }
    if punct(at, ';') {
        at += 1;
    }
    if at != tokens.len() {
        return None;
    }
    let mut numbered = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut params = Vec::with_capacity(lifted.len());
    for (n, (start, end, value)) in lifted.into_iter().enumerate() {
        numbered.push_str(&sql[copied..start]);
        numbered.push('?');
        numbered.push_str(&(n + 1).to_string());
        copied = end;
        params.push(value);
    }
    numbered.push_str(&sql[copied..]);
    Some(Lifted { numbered, params })
}

/// True when nothing but whitespace separates the tokens (the lexer skips comments; a comment may be a hint or
/// an executable comment, which the ordinary path reads).
fn only_whitespace_between(sql: &str, tokens: &[Token]) -> bool {
    let mut previous_end = 0;
    for t in tokens {
        if !sql[previous_end..t.start].bytes().all(|b| b.is_ascii_whitespace()) {
            return false;
        }
        previous_end = t.end;
    }
    sql[previous_end..].bytes().all(|b| b.is_ascii_whitespace())
}

/// A table or column name at `at` (a word that is not a keyword of this grammar, or a backquoted name): the
/// position after it.
fn name(tokens: &[Token], at: usize) -> Option<usize> {
    match &tokens.get(at)?.kind {
        TokenKind::Word(w)
            if !["values", "value", "select", "set", "partition"].iter().any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            Some(at + 1)
        }
        TokenKind::QuotedIdent(_) => Some(at + 1),
        _ => None,
    }
}

/// A liftable value starting at token `at`: the position after it and its value.
fn literal(sql: &str, tokens: &[Token], at: usize) -> Option<(usize, Value)> {
    let token = tokens.get(at)?;
    match &token.kind {
        TokenKind::Number(digits) => Some((at + 1, Value::Integer(integer(digits, false)?))),
        TokenKind::Punct('-') => match &tokens.get(at + 1)?.kind {
            TokenKind::Number(digits) => Some((at + 2, Value::Integer(integer(digits, true)?))),
            _ => None,
        },
        TokenKind::Str(text) => {
            let raw = &sql[token.start..token.end];
            // Single quotes only ("..." may be an identifier under ANSI_QUOTES), no escapes of either kind: the
            // unescaped text is then exactly what is written.
            let inner = raw.strip_prefix('\'')?.strip_suffix('\'')?;
            if inner.contains(['\\', '\'']) {
                return None;
            }
            Some((at + 1, Value::Text(text.clone())))
        }
        TokenKind::Word(w) if w.eq_ignore_ascii_case("null") => Some((at + 1, Value::Null)),
        _ => None,
    }
}

/// Plain decimal digits as an i64 (negated when `negative`); None for fractions, exponents, overflow and `-0`
/// (left to the ordinary path, which reads it as an expression).
fn integer(digits: &str, negative: bool) -> Option<i64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = if negative { format!("-{digits}").parse::<i64>().ok()? } else { digits.parse::<i64>().ok()? };
    if negative && value == 0 {
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lift(sql: &str) -> Option<(String, Vec<Value>)> {
        insert_values(sql).map(|l| (l.numbered, l.params))
    }

    #[test]
    fn lifts_the_values_of_a_plain_insert() {
        let (numbered, params) =
            lift("INSERT INTO sbtest1 (id, k, c, pad) VALUES (0, 5012, '68487932199-96439406143', 'x y')").unwrap();
        assert_eq!(numbered, "INSERT INTO sbtest1 (id, k, c, pad) VALUES (?1, ?2, ?3, ?4)");
        assert_eq!(
            params,
            vec![
                Value::Integer(0),
                Value::Integer(5012),
                Value::Text("68487932199-96439406143".into()),
                Value::Text("x y".into())
            ]
        );
        let (numbered, params) = lift("insert ignore into `db`.`t` values (-7, NULL, ''), (1,2,'a');").unwrap();
        assert_eq!(numbered, "insert ignore into `db`.`t` values (?1, ?2, ?3), (?4,?5,?6);");
        assert_eq!(params[0], Value::Integer(-7));
        assert_eq!(params[1], Value::Null);
        assert_eq!(params[2], Value::Text(String::new()));
        assert_eq!(params.len(), 6);
    }

    #[test]
    fn leaves_everything_else_to_the_parser() {
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1.5)",
            "INSERT INTO t VALUES (2e3)",
            "INSERT INTO t VALUES (1 + 2)",
            "INSERT INTO t VALUES (-0)",
            "INSERT INTO t VALUES (- -1)",
            "INSERT INTO t VALUES ('it''s')",
            "INSERT INTO t VALUES ('a\\'b')",
            "INSERT INTO t VALUES (\"double\")",
            "INSERT INTO t VALUES (x'0a')",
            "INSERT INTO t VALUES (0x0a)",
            "INSERT INTO t VALUES (_utf8mb4'a')",
            "INSERT INTO t VALUES (TRUE)",
            "INSERT INTO t VALUES (NOW())",
            "INSERT INTO t VALUES (?)",
            "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2",
            "INSERT INTO t SET a = 1",
            "INSERT INTO t SELECT 1",
            "INSERT INTO t VALUE (1)",
            "INSERT INTO t VALUES (1) /* note */",
            "INSERT /*+ hint */ INTO t VALUES (1)",
            "INSERT INTO t VALUES (1) -- trailing",
            "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
            "INSERT INTO t VALUES (99999999999999999999)",
            "INSERT INTO t PARTITION (p0) VALUES (1)",
            "INSERT INTO t VALUES ()",
            "INSERT INTO t VALUES (1",
            "INSERT INTO t (a, VALUES (1)",
            "INSERT INTO t VALUES ('unterminated)",
            "REPLACE INTO t VALUES (1)",
        ] {
            assert_eq!(lift(sql), None, "{sql}");
        }
    }

    #[test]
    fn a_large_insert_stays_text() {
        let rows: Vec<String> = (0..=LIFTED_VALUES_MAX).map(|i| format!("({i})")).collect();
        assert_eq!(lift(&format!("INSERT INTO t VALUES {}", rows.join(", "))), None);
        let rows: Vec<String> = (0..LIFTED_VALUES_MAX).map(|i| format!("({i})")).collect();
        assert_eq!(lift(&format!("INSERT INTO t VALUES {}", rows.join(", "))).unwrap().1.len(), LIFTED_VALUES_MAX);
    }

    #[test]
    fn the_values_are_what_the_parser_reads_from_the_literals() {
        // The planner reads literals through `literal_value`; a lifted value must be exactly that, so planning the
        // template with its values and planning the text are the same.
        let sql = "INSERT INTO t (a, b, c, d) VALUES (42, -42, 'text with spaces, commas (and) -- dashes', NULL), \
                   (9223372036854775807, -9223372036854775808, 'ünï', null)";
        let (_, params) = lift(sql).unwrap();
        let parsed = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::MySqlDialect {}, sql).unwrap();
        let sqlparser::ast::Statement::Insert(insert) = &parsed[0] else { panic!("an insert") };
        let sqlparser::ast::SetExpr::Values(values) = insert.source.as_ref().unwrap().body.as_ref() else {
            panic!("values")
        };
        let read: Vec<Value> = values
            .rows
            .iter()
            .flat_map(|r| r.content.iter())
            .map(|e| crate::plan::literal_of(e).expect("a literal"))
            .collect();
        assert_eq!(params, read);
    }
}
