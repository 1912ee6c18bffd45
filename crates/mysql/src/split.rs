//! Lexical scanning of MySQL statement text, just deep enough for the front end's own jobs: splitting multi-statement
//! text at top-level `;`, counting and substituting `?` placeholders, and turning a statement into tokens for the
//! statements the front end answers itself. It does not parse SQL: anything it does not need to understand stays
//! opaque text for the backend.
//!
//! The rules follow MySQL's lexer: `'...'` and `"..."` are strings with backslash escapes and doubled quotes,
//! `` `...` `` is an identifier, and `-- ` (dash dash followed by whitespace or end of text), `#` and `/* */` are
//! comments. Unterminated strings and comments run to the end of the text; the backend reports the syntax error.

use std::ops::Range;

/// What a stretch of statement text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentKind {
    /// Ordinary SQL: keywords, names, numbers, operators, whitespace.
    Code,
    /// A quoted string including its quotes; `quote` is `'` or `"`.
    Str { quote: u8 },
    /// A backquoted identifier including its backquotes.
    Ident,
    /// A comment of any style, including its delimiters.
    Comment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub kind: SegmentKind,
    pub range: Range<usize>,
}

/// Cuts `sql` into consecutive segments covering all of it. Segment boundaries always fall on ASCII bytes, so every
/// range is a valid `str` slice.
pub(crate) fn segments(sql: &str) -> Vec<Segment> {
    segments_of_bytes(sql.as_bytes())
}

/// [`segments`] of raw statement bytes, which need not be UTF-8 (a dump's string literals may hold any bytes).
pub(crate) fn segments_of_bytes(bytes: &[u8]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut code_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (kind, end) = match bytes[i] {
            quote @ (b'\'' | b'"') => (SegmentKind::Str { quote }, quoted_end(bytes, i, quote, true)),
            b'`' => (SegmentKind::Ident, quoted_end(bytes, i, b'`', false)),
            b'#' => (SegmentKind::Comment, line_end(bytes, i)),
            b'-' if bytes.get(i + 1) == Some(&b'-')
                && bytes.get(i + 2).is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                (SegmentKind::Comment, line_end(bytes, i))
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => (SegmentKind::Comment, block_comment_end(bytes, i)),
            _ => {
                i += 1;
                continue;
            }
        };
        if code_start < i {
            out.push(Segment { kind: SegmentKind::Code, range: code_start..i });
        }
        out.push(Segment { kind, range: i..end });
        i = end;
        code_start = end;
    }
    if code_start < bytes.len() {
        out.push(Segment { kind: SegmentKind::Code, range: code_start..bytes.len() });
    }
    out
}

/// End (exclusive) of a quoted run starting at `start`. A doubled quote continues the run; so does a backslash
/// escape in strings (MySQL's default, without NO_BACKSLASH_ESCAPES).
fn quoted_end(bytes: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        let c = bytes[i];
        if backslash && c == b'\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn line_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..].iter().position(|&c| c == b'\n').map_or(bytes.len(), |p| start + p + 1)
}

fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    bytes[start + 2..].windows(2).position(|w| w == b"*/").map_or(bytes.len(), |p| start + 2 + p + 2)
}

/// MySQL's executable comments: `/*! body */` and `/*!NNNNN body */` become ` body ` when the server's version
/// number (see [`version_number`]) is at least NNNNN (five or six digits), and vanish otherwise, as MySQL does;
/// every other comment (including MariaDB's `/*M! */` and optimizer hints `/*+ */`) stays as it is. Dump files
/// start with such comments (`/*!40101 SET NAMES utf8mb4 */;`).
pub(crate) fn expand_executable_comments(sql: &str, version: u32) -> std::borrow::Cow<'_, str> {
    let executable = |s: &Segment| s.kind == SegmentKind::Comment && sql[s.range.clone()].starts_with("/*!");
    let all = segments(sql);
    if !all.iter().any(executable) {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    for segment in &all {
        let text = &sql[segment.range.clone()];
        if !executable(segment) {
            out.push_str(text);
            continue;
        }
        let inner = text[3..].strip_suffix("*/").unwrap_or(&text[3..]);
        let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
        let (wanted, body) = match digits {
            5 | 6 => (inner[..digits].parse::<u32>().unwrap_or(u32::MAX), &inner[digits..]),
            _ => (0, inner),
        };
        out.push(' ');
        if wanted <= version {
            out.push_str(body);
        }
        out.push(' ');
    }
    std::borrow::Cow::Owned(out)
}

/// `5.7.32-Canopy-0.1.0` → 50732, the number executable comments compare with (major × 10000 + minor × 100 +
/// patch); 0 when the text does not start with a version.
pub(crate) fn version_number(server_version: &str) -> u32 {
    let mut parts = server_version.split(|c: char| !c.is_ascii_digit()).take(3).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major.saturating_mul(10_000).saturating_add(minor.min(99) * 100).saturating_add(patch.min(99))
}

/// Statement bytes as text: MySQL string literals may hold any bytes (mysqldump writes BLOB values as raw bytes
/// unless `--hex-blob`), but the rest of Canopy works on UTF-8 text. A string literal whose bytes, once its escapes
/// are read, are not UTF-8 becomes the hexadecimal literal `X'...'` of those bytes (a BLOB value, which is what such
/// bytes are); everything else is kept as it is. `None` when bytes outside string literals are not UTF-8.
///
/// Trailing NUL bytes are not part of the statement: C clients such as `mariadb-slap` send their string's terminator
/// with it, and MySQL's lexer ends the statement at that byte.
pub(crate) fn text_of_statement_bytes(body: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let body = &body[..body.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1)];
    if let Ok(text) = std::str::from_utf8(body) {
        return Some(std::borrow::Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(body.len() * 2);
    for segment in segments_of_bytes(body) {
        let raw = &body[segment.range.clone()];
        match (segment.kind, std::str::from_utf8(raw)) {
            (_, Ok(text)) => out.push_str(text),
            (SegmentKind::Str { quote }, Err(_)) => {
                out.push_str("X'");
                for byte in unescape_string_literal(raw, quote) {
                    out.push_str(&format!("{byte:02X}"));
                }
                out.push('\'');
            }
            _ => return None,
        }
    }
    Some(std::borrow::Cow::Owned(out))
}

/// The bytes a MySQL string literal (with its quotes) stands for: backslash escapes and doubled quotes read as
/// MySQL reads them (`\%` and `\_` keep their backslash, an unknown escape is the character itself).
fn unescape_string_literal(raw: &[u8], quote: u8) -> Vec<u8> {
    let inner = raw.strip_prefix(&[quote]).unwrap_or(raw);
    let inner = inner.strip_suffix(&[quote]).unwrap_or(inner);
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c == b'\\' && i + 1 < inner.len() {
            let next = inner[i + 1];
            match next {
                b'0' => out.push(0),
                b'b' => out.push(8),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'Z' => out.push(26),
                b'%' | b'_' => out.extend_from_slice(&[b'\\', next]),
                other => out.push(other),
            }
            i += 2;
        } else if c == quote && inner.get(i + 1) == Some(&quote) {
            out.push(quote);
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Splits statement text at top-level `;` into statements, trimmed, without their `;`. Pieces holding only
/// whitespace and comments are dropped (so a trailing `;` or `;;` is harmless); an empty result means the text held
/// no statement at all.
pub(crate) fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_content = false;
    for segment in segments(sql) {
        match segment.kind {
            SegmentKind::Comment => {}
            SegmentKind::Str { .. } | SegmentKind::Ident => has_content = true,
            SegmentKind::Code => {
                for (offset, c) in sql[segment.range.clone()].bytes().enumerate() {
                    if c == b';' {
                        let end = segment.range.start + offset;
                        if has_content {
                            out.push(sql[start..end].trim());
                        }
                        start = end + 1;
                        has_content = false;
                    } else if !c.is_ascii_whitespace() {
                        has_content = true;
                    }
                }
            }
        }
    }
    if has_content {
        out.push(sql[start..].trim());
    }
    out
}

/// Number of `?` placeholders outside strings, identifiers and comments.
pub(crate) fn count_placeholders(sql: &str) -> usize {
    segments(sql)
        .iter()
        .filter(|s| s.kind == SegmentKind::Code)
        .map(|s| sql[s.range.clone()].bytes().filter(|&c| c == b'?').count())
        .sum()
}

/// Replaces the placeholders in order with `literals`; placeholders beyond the list stay as they are (the caller
/// checks the count first).
pub(crate) fn substitute_placeholders(sql: &str, literals: &[String]) -> String {
    let mut out = String::with_capacity(sql.len() + literals.iter().map(String::len).sum::<usize>());
    let mut next = literals.iter();
    for segment in segments(sql) {
        let text = &sql[segment.range.clone()];
        if segment.kind != SegmentKind::Code {
            out.push_str(text);
            continue;
        }
        for c in text.chars() {
            match (c, c == '?') {
                (_, true) => match next.next() {
                    Some(literal) => out.push_str(literal),
                    None => out.push('?'),
                },
                (c, false) => out.push(c),
            }
        }
    }
    out
}

/// One token of a statement, for recognising the statements the front end answers itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// A keyword, name or number: a run of letters, digits, `_` and `$` (and `.` inside numbers).
    Word(String),
    /// `@@name` or `@@scope.name`, the text after `@@`.
    SystemVariable(String),
    /// `@name`: a user variable.
    UserVariable(String),
    /// A quoted string or identifier with quotes removed and escapes resolved.
    Quoted(String),
    /// Any other character (`,`, `=`, `(`, ...); `:=` is one token.
    Punct(&'static str),
    Other(char),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub range: Range<usize>,
}

impl Token {
    /// True when the token is the word `keyword`, compared case-insensitively.
    pub(crate) fn is_word(&self, keyword: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Tokens of one statement, comments dropped.
pub(crate) fn tokens(sql: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for segment in segments(sql) {
        let range = segment.range.clone();
        match segment.kind {
            SegmentKind::Comment => {}
            SegmentKind::Str { quote } => {
                out.push(Token { kind: TokenKind::Quoted(unquote(&sql[range.clone()], quote as char)), range })
            }
            SegmentKind::Ident => out.push(Token { kind: TokenKind::Quoted(unquote(&sql[range.clone()], '`')), range }),
            SegmentKind::Code => code_tokens(sql, range, &mut out),
        }
    }
    out
}

fn code_tokens(sql: &str, range: Range<usize>, out: &mut Vec<Token>) {
    let text = &sql[range.clone()];
    let base = range.start;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        // The end of the run of word characters (and dots) that starts at `start`, consuming it.
        let take_run = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, start: usize, dots: bool| {
            let mut end = start;
            while let Some(&(j, d)) = chars.peek() {
                if is_word_char(d) || (dots && d == '.') {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            end
        };
        // A variable needs a name: `@@` or `@` before anything else is plain punctuation (`Other('@')`).
        let (kind, end) = if c == '@' && text[i..].starts_with("@@") && text[i + 2..].starts_with(is_word_char) {
            chars.next();
            let end = take_run(&mut chars, i + 2, true);
            (TokenKind::SystemVariable(text[i + 2..end].to_string()), end)
        } else if c == '@' && text[i + 1..].starts_with(is_word_char) {
            let end = take_run(&mut chars, i + 1, false);
            (TokenKind::UserVariable(text[i + 1..end].to_string()), end)
        } else if is_word_char(c) {
            let end = take_run(&mut chars, i + c.len_utf8(), c.is_ascii_digit());
            (TokenKind::Word(text[i..end].to_string()), end)
        } else if c == ':' && text[i..].starts_with(":=") {
            chars.next();
            (TokenKind::Punct(":="), i + 2)
        } else {
            let punct = match c {
                ',' => TokenKind::Punct(","),
                '=' => TokenKind::Punct("="),
                '(' => TokenKind::Punct("("),
                ')' => TokenKind::Punct(")"),
                other => TokenKind::Other(other),
            };
            (punct, i + c.len_utf8())
        };
        out.push(Token { kind, range: base + i..base + end });
    }
}

/// The content of a quoted run: quotes removed, doubled quotes and backslash escapes resolved.
fn unquote(text: &str, quote: char) -> String {
    let inner = text.strip_prefix(quote).unwrap_or(text);
    let inner = inner.strip_suffix(quote).unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && quote != '`' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('Z') => out.push('\x1a'),
                Some('b') => out.push('\x08'),
                Some(other) => out.push(other),
                None => {}
            }
        } else if c == quote && chars.peek() == Some(&quote) {
            chars.next();
            out.push(quote);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(sql: &str, expected: &[&str]) {
        assert_eq!(split_statements(sql), expected, "splitting {sql:?}");
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        check_split("SELECT 1", &["SELECT 1"]);
        check_split("SELECT 1;", &["SELECT 1"]);
        check_split("SELECT 1; SELECT 2;;", &["SELECT 1", "SELECT 2"]);
        check_split("SELECT 'a;b'; SELECT \"c;d\"", &["SELECT 'a;b'", "SELECT \"c;d\""]);
        check_split("SELECT `x;y` FROM t", &["SELECT `x;y` FROM t"]);
        check_split("SELECT 'it\\';s'; SELECT 2", &["SELECT 'it\\';s'", "SELECT 2"]);
        check_split("SELECT 'it'';s'; SELECT 2", &["SELECT 'it'';s'", "SELECT 2"]);
        check_split("SELECT 1 -- a;b\n; SELECT 2", &["SELECT 1 -- a;b", "SELECT 2"]);
        check_split("SELECT 1 # a;b\n; SELECT 2", &["SELECT 1 # a;b", "SELECT 2"]);
        check_split("SELECT 1 /* a;b */; SELECT 2", &["SELECT 1 /* a;b */", "SELECT 2"]);
        // `--` without a following space is an operator pair in MySQL, not a comment.
        check_split("SELECT 1--1; SELECT 2", &["SELECT 1--1", "SELECT 2"]);
        check_split("  ; /* only a comment */ ;", &[]);
        check_split("SELECT 'unterminated; SELECT 2", &["SELECT 'unterminated; SELECT 2"]);
        check_split("SELECT 'é;'; SELECT 'ü'", &["SELECT 'é;'", "SELECT 'ü'"]);
    }

    #[test]
    fn counts_placeholders_outside_quotes_and_comments() {
        assert_eq!(count_placeholders("SELECT ?"), 1);
        assert_eq!(count_placeholders("INSERT INTO t VALUES (?, ?, '?', \"?\", `?`) -- ?\n"), 2);
        assert_eq!(count_placeholders("SELECT ? /* ? */ # ?"), 1);
        assert_eq!(count_placeholders("SELECT 'a\\'?' , ?"), 1);
        assert_eq!(count_placeholders("SELECT 1"), 0);
    }

    #[test]
    fn substitutes_placeholders_in_order() {
        let literals = vec!["1".to_string(), "'x'".to_string()];
        assert_eq!(substitute_placeholders("SELECT ?, '?', ?", &literals), "SELECT 1, '?', 'x'");
        assert_eq!(substitute_placeholders("SELECT ?,?,?", &literals), "SELECT 1,'x',?");
    }

    #[test]
    fn tokens_recognise_variables_words_and_quotes() {
        let kinds: Vec<TokenKind> =
            tokens("SELECT @@session.sql_mode AS `m`, @u:='it''s' LIMIT 1").into_iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TokenKind::Word("SELECT".into()),
                TokenKind::SystemVariable("session.sql_mode".into()),
                TokenKind::Word("AS".into()),
                TokenKind::Quoted("m".into()),
                TokenKind::Punct(","),
                TokenKind::UserVariable("u".into()),
                TokenKind::Punct(":="),
                TokenKind::Quoted("it's".into()),
                TokenKind::Word("LIMIT".into()),
                TokenKind::Word("1".into()),
            ]
        );
    }

    /// `@@` and `@` without a name (at the end of the text or before punctuation) used to slice the text backwards
    /// and panic the connection task; they are punctuation, and the statement goes on to the backend's parser.
    #[test]
    fn variable_signs_without_a_name_are_punctuation() {
        let kinds = |sql: &str| tokens(sql).into_iter().map(|t| t.kind).collect::<Vec<_>>();
        let select = TokenKind::Word("SELECT".into());
        let at = TokenKind::Other('@');
        assert_eq!(kinds("SELECT @@"), vec![select.clone(), at.clone(), at.clone()]);
        assert_eq!(kinds("SELECT @"), vec![select.clone(), at.clone()]);
        assert_eq!(
            kinds("SELECT 1 WHERE @@ = 1")[3..],
            [at.clone(), at.clone(), TokenKind::Punct("="), TokenKind::Word("1".into())]
        );
        assert_eq!(
            kinds("SELECT @@.x")[1..],
            [at.clone(), at.clone(), TokenKind::Other('.'), TokenKind::Word("x".into())]
        );
        assert_eq!(
            kinds("SELECT @@é, @ü"),
            vec![
                select,
                TokenKind::SystemVariable("é".into()),
                TokenKind::Punct(","),
                TokenKind::UserVariable("ü".into())
            ]
        );
    }

    #[test]
    fn token_ranges_point_into_the_text() {
        let sql = "SELECT  @@version_comment  LIMIT 1";
        let toks = tokens(sql);
        assert_eq!(&sql[toks[1].range.clone()], "@@version_comment");
    }

    #[test]
    fn executable_comments_run_for_this_version_only() {
        let v = version_number("5.7.32-Canopy-0.1.0");
        assert_eq!(v, 50732);
        // Whitespace around an expanded comment does not matter; compare words.
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let check =
            |sql: &str, expected: &str| assert_eq!(words(&expand_executable_comments(sql, v)), expected, "{sql}");
        check("/*!40100 SET @@SQL_MODE='' */", "SET @@SQL_MODE=''");
        check("/*!80000 SET x=1 */ SELECT 1", "SELECT 1");
        check("SELECT /*! 1 + */ 1", "SELECT 1 + 1");
        check("SELECT 1/*!+1*/", "SELECT 1 +1");
        check("/*!50503 SET NAMES utf8mb4 */;", "SET NAMES utf8mb4 ;");
        check("SELECT '/*!40100 no */' /* plain */ -- x", "SELECT '/*!40100 no */' /* plain */ -- x");
        check("/*M!100401 SET x=1 */ SELECT 1", "/*M!100401 SET x=1 */ SELECT 1");
        check("/*!40101 unterminated", "unterminated");
        assert!(matches!(expand_executable_comments("SELECT 1 /* x */", v), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            split_statements(&expand_executable_comments("/*!40100 SET @@SQL_MODE='' */", v)),
            ["SET @@SQL_MODE=''"]
        );
        assert_eq!(version_number("8.0.36"), 80036);
        assert_eq!(version_number("garbage"), 0);
    }

    #[test]
    fn string_literals_that_are_not_utf8_become_hex_literals() {
        let text = |bytes: &[u8]| text_of_statement_bytes(bytes).map(|t| t.into_owned());
        assert_eq!(text(b"SELECT 'a'").as_deref(), Some("SELECT 'a'"));
        assert_eq!(
            text(b"INSERT INTO t VALUES (1,'\\0\xff','ok')").as_deref(),
            Some("INSERT INTO t VALUES (1,X'00FF','ok')")
        );
        assert_eq!(text(b"SELECT \"\xfe\\\"\"\"\"").as_deref(), Some("SELECT X'FE2222'"));
        assert_eq!(text(b"SELECT 'it''s \xc3' -- \xc3\xa9").as_deref(), Some("SELECT X'6974277320C3' -- \u{e9}"));
        assert_eq!(text(b"SELECT \xff"), None, "invalid bytes outside a string");
    }

    #[test]
    fn trailing_nul_bytes_end_the_statement() {
        let text = |bytes: &[u8]| text_of_statement_bytes(bytes).map(|t| t.into_owned());
        assert_eq!(text(b"CREATE TABLE t1 (a INT)\0").as_deref(), Some("CREATE TABLE t1 (a INT)"));
        assert_eq!(text(b"SELECT '\xff'\0\0").as_deref(), Some("SELECT X'FF'"));
        assert_eq!(text(b"SELECT 'a\0b'").as_deref(), Some("SELECT 'a\0b'"), "a NUL inside a literal stays");
        assert_eq!(text(b"\0").as_deref(), Some(""));
    }
}
