//! The small MySQL-flavoured tokenizer and token cursor behind Canopy's own grammar (cluster commands, session and
//! catalog statements, and the SingleStore clauses stripped from `CREATE TABLE`). Tokens keep their byte span in the
//! source so a caller can cut clauses out of the original text. It does not understand expressions: anything beyond
//! keywords, names, literals and punctuation is sqlparser's job.

use crate::error::SqlError;

/// What a token is. Keywords are plain words; the grammar compares them case-insensitively.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// An unquoted word: keyword or identifier (letters, digits, `_`, `$`; may start with a digit if it holds a letter).
    Word(String),
    /// A `backquoted` identifier, unescaped.
    QuotedIdent(String),
    /// A '...' or "..." string, unescaped.
    Str(String),
    /// An unsigned number as written (`3306`, `1.5`, `2e3`).
    Number(String),
    /// Any other single character (`(`, `,`, `:`, `@`, `=`, `.`, `-`, ...).
    Punct(char),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// Byte range of the token in the source.
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn is_word(&self, keyword: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    pub fn is_punct(&self, c: char) -> bool {
        self.kind == TokenKind::Punct(c)
    }
}

/// Splits `sql` into tokens, skipping whitespace and comments (`-- `, `#`, `/* */`).
pub(crate) fn tokenize(sql: &str) -> Result<Vec<Token>, SqlError> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' || (c == b'-' && bytes.get(i + 1) == Some(&b'-') && is_comment_dash_end(bytes, i + 2)) {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let close =
                sql[i + 2..].find("*/").ok_or_else(|| SqlError::Parse("unterminated /* comment".to_string()))?;
            i += 2 + close + 2;
        } else if c == b'\'' || c == b'"' || c == b'`' {
            let (text, end) = quoted(sql, i)?;
            let kind = if c == b'`' { TokenKind::QuotedIdent(text) } else { TokenKind::Str(text) };
            tokens.push(Token { kind, start: i, end });
            i = end;
        } else if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let end = word_end(bytes, i);
            let text = &sql[i..end];
            if text.bytes().all(|b| b.is_ascii_digit()) {
                let end = number_end(bytes, i);
                tokens.push(Token { kind: TokenKind::Number(sql[i..end].to_string()), start: i, end });
                i = end;
            } else if text.bytes().any(|b| b.is_ascii_alphabetic()) && !looks_like_exponent(text) {
                // MySQL identifiers may start with a digit (`1st_table`).
                tokens.push(Token { kind: TokenKind::Word(text.to_string()), start: i, end });
                i = end;
            } else {
                let end = number_end(bytes, i);
                tokens.push(Token { kind: TokenKind::Number(sql[i..end].to_string()), start: i, end });
                i = end;
            }
        } else if is_word_byte(c) {
            let end = word_end(bytes, i);
            tokens.push(Token { kind: TokenKind::Word(sql[i..end].to_string()), start: i, end });
            i = end;
        } else {
            // Multi-byte UTF-8 characters outside quotes are passed through one char at a time.
            let ch = sql[i..].chars().next().expect("i is on a char boundary inside sql");
            tokens.push(Token { kind: TokenKind::Punct(ch), start: i, end: i + ch.len_utf8() });
            i += ch.len_utf8();
        }
    }
    Ok(tokens)
}

/// MySQL only treats `--` as a comment when followed by whitespace or the end of input.
fn is_comment_dash_end(bytes: &[u8], i: usize) -> bool {
    bytes.get(i).is_none_or(|b| b.is_ascii_whitespace())
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_word_byte(bytes[i]) {
        i += 1;
    }
    i
}

fn looks_like_exponent(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    match lower.split_once('e') {
        Some((mantissa, exp)) => {
            !mantissa.is_empty()
                && mantissa.bytes().all(|b| b.is_ascii_digit())
                && exp.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The end of a number starting at `i`: digits, an optional fraction and an optional exponent.
fn number_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            i = j;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// Reads a quoted token starting at `start` (the opening quote). A doubled quote stands for itself; in strings (not
/// identifiers) a backslash escapes the next character, as in MySQL's default SQL mode.
fn quoted(sql: &str, start: usize) -> Result<(String, usize), SqlError> {
    let quote = sql.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = sql[start + 1..].char_indices().peekable();
    while let Some((offset, ch)) = chars.next() {
        if ch == quote {
            if chars.peek().map(|&(_, next)| next) == Some(quote) {
                out.push(quote);
                chars.next();
                continue;
            }
            return Ok((out, start + 1 + offset + 1));
        }
        if ch == '\\' && quote != '`' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, '0')) => out.push('\0'),
                Some((_, other)) => out.push(other),
                None => break,
            }
            continue;
        }
        out.push(ch);
    }
    let what = if quote == '`' { "identifier" } else { "string" };
    Err(SqlError::Parse(format!("unterminated quoted {what} starting at {}", excerpt(&sql[start..]))))
}

/// The first few characters of `text`, quoted, for error messages.
pub(crate) fn excerpt(text: &str) -> String {
    const EXCERPT_CHARS_MAX: usize = 40;
    let cut: String = text.chars().take(EXCERPT_CHARS_MAX).collect();
    if cut.len() < text.len() { format!("'{cut}...'") } else { format!("'{cut}'") }
}

/// A cursor over tokens with the expect/eat helpers the grammar needs. Errors name the command being parsed, what was
/// expected and the text found there.
pub(crate) struct Cursor<'a> {
    sql: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// The command name used as the prefix of error messages (for example `REMOVE LEAF`).
    context: String,
}

impl<'a> Cursor<'a> {
    pub fn new(sql: &'a str) -> Result<Self, SqlError> {
        let mut tokens = tokenize(sql)?;
        // A trailing ';' is harmless; the front end normally strips it already.
        while tokens.last().is_some_and(|t| t.is_punct(';')) {
            tokens.pop();
        }
        Ok(Cursor { sql, tokens, pos: 0, context: String::new() })
    }

    pub fn set_context(&mut self, context: &str) {
        self.context = context.to_string();
    }

    pub fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    pub fn peek_at(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.pos + ahead)
    }

    pub fn is_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    /// Whether the next tokens are exactly these keywords.
    pub fn peek_words(&self, keywords: &[&str]) -> bool {
        keywords.iter().enumerate().all(|(i, k)| self.peek_at(i).is_some_and(|t| t.is_word(k)))
    }

    pub fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    pub fn eat_word(&mut self, keyword: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(keyword)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Eats the keyword sequence only if all of it is there.
    pub fn eat_words(&mut self, keywords: &[&str]) -> bool {
        if self.peek_words(keywords) {
            self.pos += keywords.len();
            true
        } else {
            false
        }
    }

    pub fn eat_punct(&mut self, c: char) -> bool {
        if self.peek().is_some_and(|t| t.is_punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect_word(&mut self, keyword: &str) -> Result<(), SqlError> {
        if self.eat_word(keyword) { Ok(()) } else { Err(self.error(keyword)) }
    }

    pub fn expect_punct(&mut self, c: char) -> Result<(), SqlError> {
        if self.eat_punct(c) { Ok(()) } else { Err(self.error(&format!("'{c}'"))) }
    }

    /// An identifier: a bare word or a `backquoted` name.
    pub fn expect_ident(&mut self, what: &str) -> Result<String, SqlError> {
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Word(w)) | Some(TokenKind::QuotedIdent(w)) => {
                let name = w.clone();
                self.pos += 1;
                Ok(name)
            }
            _ => Err(self.error(what)),
        }
    }

    /// `name` or `db.name`.
    pub fn expect_qualified_name(&mut self, what: &str) -> Result<(Option<String>, String), SqlError> {
        let first = self.expect_ident(what)?;
        if self.eat_punct('.') {
            let second = self.expect_ident(what)?;
            Ok((Some(first), second))
        } else {
            Ok((None, first))
        }
    }

    /// A '...' or "..." string.
    pub fn expect_string(&mut self, what: &str) -> Result<String, SqlError> {
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.error(what)),
        }
    }

    /// An unsigned integer that fits in `u64`.
    pub fn expect_integer(&mut self, what: &str) -> Result<u64, SqlError> {
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Number(n)) => match n.parse::<u64>() {
                Ok(v) => {
                    self.pos += 1;
                    Ok(v)
                }
                Err(_) => Err(self.error(what)),
            },
            _ => Err(self.error(what)),
        }
    }

    pub fn expect_u32(&mut self, what: &str) -> Result<u32, SqlError> {
        let at = self.pos;
        let v = self.expect_integer(what)?;
        u32::try_from(v).map_err(|_| {
            self.pos = at;
            self.error(what)
        })
    }

    pub fn expect_port(&mut self) -> Result<u16, SqlError> {
        let at = self.pos;
        let v = self.expect_integer("a port number")?;
        match u16::try_from(v) {
            Ok(port) if port != 0 => Ok(port),
            _ => {
                self.pos = at;
                Err(self.error("a port number between 1 and 65535"))
            }
        }
    }

    /// `'host'[:port]` with optional spaces around ':'; the port defaults to `default_port`.
    pub fn expect_host_port(&mut self, default_port: Option<u16>) -> Result<(String, u16), SqlError> {
        let host = self.expect_string("a quoted host such as 'leaf-1'")?;
        if self.eat_punct(':') {
            let port = self.expect_port()?;
            return Ok((host, port));
        }
        match default_port {
            Some(port) => Ok((host, port)),
            None => Err(self.error("':' and a port after the host")),
        }
    }

    /// Eats any of `flags` in any order, each at most once, and returns which were present (in `flags` order). A
    /// flag may be several words (`"NO REBALANCE"`).
    pub fn eat_flags<const N: usize>(&mut self, flags: [&str; N]) -> Result<[bool; N], SqlError> {
        let mut seen = [false; N];
        'outer: loop {
            for (i, flag) in flags.iter().enumerate() {
                let words: Vec<&str> = flag.split(' ').collect();
                if self.peek_words(&words) {
                    if seen[i] {
                        return Err(SqlError::Parse(format!("{}: {flag} given twice", self.context)));
                    }
                    seen[i] = true;
                    self.pos += words.len();
                    continue 'outer;
                }
            }
            return Ok(seen);
        }
    }

    pub fn expect_end(&self) -> Result<(), SqlError> {
        if self.is_end() { Ok(()) } else { Err(self.error("end of statement")) }
    }

    /// "CONTEXT: expected WHAT near 'rest of statement'" (MySQL also quotes the text from the offending token on).
    pub fn error(&self, expected: &str) -> SqlError {
        let found = match self.peek() {
            Some(t) => format!("near {}", excerpt(&self.sql[t.start..])),
            None => "at end of statement".to_string(),
        };
        if self.context.is_empty() {
            SqlError::Parse(format!("expected {expected} {found}"))
        } else {
            SqlError::Parse(format!("{}: expected {expected} {found}", self.context))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, expected: &[TokenKind]) {
        let kinds: Vec<TokenKind> = tokenize(sql).unwrap().into_iter().map(|t| t.kind).collect();
        assert_eq!(kinds, expected, "{sql}");
    }

    fn w(s: &str) -> TokenKind {
        TokenKind::Word(s.into())
    }
    fn p(c: char) -> TokenKind {
        TokenKind::Punct(c)
    }
    fn s(x: &str) -> TokenKind {
        TokenKind::Str(x.into())
    }
    fn n(x: &str) -> TokenKind {
        TokenKind::Number(x.into())
    }

    #[test]
    fn tokens() {
        check("attach leaf 'leaf-4': 3306", &[w("attach"), w("leaf"), s("leaf-4"), p(':'), n("3306")]);
        check("root:'p''w'@\"h\"", &[w("root"), p(':'), s("p'w"), p('@'), s("h")]);
        check("x_test:1", &[w("x_test"), p(':'), n("1")]);
        check("`a``b` 1st 1.5 2e3", &[TokenKind::QuotedIdent("a`b".into()), w("1st"), n("1.5"), n("2e3")]);
        check("a -- c\n b # d\n /* e */ c", &[w("a"), w("b"), w("c")]);
        check("a--b", &[w("a"), p('-'), p('-'), w("b")]);
        check("'it\\'s'", &[s("it's")]);
        check("@@global.x=-1", &[p('@'), p('@'), w("global"), p('.'), w("x"), p('='), p('-'), n("1")]);
    }

    #[test]
    fn unterminated() {
        assert!(tokenize("'abc").is_err());
        assert!(tokenize("/* x").is_err());
    }
}
