//! MySQL's string functions over Rust strings: positions and lengths count characters (utf8mb4), comparisons are
//! bytewise (Canopy's collation is `utf8mb4_bin`, docs/sql.md), and every function that builds a string refuses to
//! build one longer than [`STRING_BYTES_MAX`] (NULL, as MySQL gives beyond `max_allowed_packet`).

/// The longest string a function may build: MySQL answers NULL past `max_allowed_packet` (64 MiB by default).
pub(crate) const STRING_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The first `n` characters (all of them when there are fewer).
pub(crate) fn left(s: &str, n: i64) -> String {
    let n = usize::try_from(n).unwrap_or(0);
    s.chars().take(n).collect()
}

/// The last `n` characters.
pub(crate) fn right(s: &str, n: i64) -> String {
    let n = usize::try_from(n).unwrap_or(0);
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}

/// LPAD (`left` true) and RPAD: `s` padded with repetitions of `pad` to `len` characters, or cut to `len`. None
/// for a negative length, for padding with an empty pad, or beyond [`STRING_BYTES_MAX`].
pub(crate) fn pad(s: &str, len: i64, pad: &str, left: bool) -> Option<String> {
    let len = usize::try_from(len).ok()?;
    let count = s.chars().count();
    if len <= count {
        return Some(s.chars().take(len).collect());
    }
    let missing = len - count;
    let pad_chars = pad.chars().count();
    if pad_chars == 0 {
        return None;
    }
    if s.len() + missing.checked_mul(pad.len() / pad_chars + 1)? > STRING_BYTES_MAX {
        return None;
    }
    let filler: String = pad.chars().cycle().take(missing).collect();
    Some(if left { filler + s } else { s.to_string() + &filler })
}

/// LOCATE(needle, haystack, start): the 1-based character position of the first `needle` at or after character
/// `start`, 0 when there is none (and for a start below 1).
pub(crate) fn locate(needle: &str, haystack: &str, start: i64) -> i64 {
    if start < 1 {
        return 0;
    }
    let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
    let from = match haystack.char_indices().nth(skip) {
        Some((at, _)) => at,
        None if skip == haystack.chars().count() => haystack.len(),
        None => return 0,
    };
    match haystack[from..].find(needle) {
        Some(at) => (haystack[..from + at].chars().count() + 1) as i64,
        None => 0,
    }
}

/// FIND_IN_SET: the 1-based position of `needle` in the comma-separated `list`, 0 when absent (always 0 for a
/// needle containing a comma).
pub(crate) fn find_in_set(needle: &str, list: &str) -> i64 {
    if needle.contains(',') || list.is_empty() {
        return 0;
    }
    list.split(',').position(|item| item == needle).map_or(0, |i| i as i64 + 1)
}

/// SUBSTRING_INDEX: what precedes the `count`-th `delim` (from the right, and what follows it, for a negative
/// count); the whole string when there are fewer delimiters.
pub(crate) fn substring_index(s: &str, delim: &str, count: i64) -> String {
    if delim.is_empty() || count == 0 {
        return String::new();
    }
    if count > 0 {
        let mut from = 0;
        for _ in 0..count {
            match s[from..].find(delim) {
                Some(at) => from += at + delim.len(),
                None => return s.to_string(),
            }
        }
        s[..from - delim.len()].to_string()
    } else {
        let mut to = s.len();
        for _ in 0..count.unsigned_abs() {
            match s[..to].rfind(delim) {
                Some(at) => to = at,
                None => return s.to_string(),
            }
        }
        s[to + delim.len()..].to_string()
    }
}

/// SPACE and REPEAT: `s` repeated `n` times (empty for n below 1); None beyond [`STRING_BYTES_MAX`].
pub(crate) fn repeat(s: &str, n: i64) -> Option<String> {
    let n = usize::try_from(n).unwrap_or(0);
    if s.len().checked_mul(n)? > STRING_BYTES_MAX {
        return None;
    }
    Some(s.repeat(n))
}

/// FORMAT(number, decimals): rounded half away from zero to `decimals` places (at most 30) in decimal (so
/// `FORMAT(1.005, 2)` is `1.01`, as MySQL computes it on the literal), with `,` between thousands and `.` before
/// the decimals (the `en_US` locale, the only one Canopy has). `digits` is the number as decimal text.
pub(crate) fn format_number(digits: &str, decimals: i64) -> Option<String> {
    let decimals = decimals.clamp(0, 30) as usize;
    let (negative, unsigned) = match digits.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, digits.trim().trim_start_matches('+')),
    };
    let (whole, fraction) = expand_exponent(unsigned)?;
    let (whole, fraction) = round_half_up(&whole, &fraction, decimals);
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let zero = whole.chars().all(|c| c == '0') && fraction.chars().all(|c| c == '0');
    let sign = if negative && !zero { "-" } else { "" };
    Some(if decimals == 0 { format!("{sign}{grouped}") } else { format!("{sign}{grouped}.{fraction}") })
}

/// Decimal text (`12.5`, `1e3`, `.5`) as whole and fraction digit strings without exponent.
fn expand_exponent(text: &str) -> Option<(String, String)> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    if exponent.unsigned_abs() > 400 {
        return None;
    }
    let mut digits = format!("{whole}{fraction}");
    let mut point = whole.len() as i64 + i64::from(exponent);
    if point < 0 {
        digits = "0".repeat(point.unsigned_abs() as usize) + &digits;
        point = 0;
    }
    let point = point as usize;
    if digits.len() < point {
        digits.push_str(&"0".repeat(point - digits.len()));
    }
    let whole = digits[..point].trim_start_matches('0');
    Some((if whole.is_empty() { "0".to_string() } else { whole.to_string() }, digits[point..].to_string()))
}

/// Rounds decimal digits to `decimals` places, half away from zero; the fraction comes back exactly that long.
fn round_half_up(whole: &str, fraction: &str, decimals: usize) -> (String, String) {
    let mut kept: Vec<u8> =
        whole.bytes().chain(fraction.bytes().chain(std::iter::repeat(b'0')).take(decimals)).collect();
    let round_up = fraction.as_bytes().get(decimals).is_some_and(|&d| d >= b'5');
    if round_up {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, b'1');
                break;
            }
            i -= 1;
            if kept[i] == b'9' {
                kept[i] = b'0';
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let split = kept.len() - decimals;
    let text = String::from_utf8(kept).expect("digits are ASCII");
    (text[..split].to_string(), text[split..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Examples from the MySQL reference manual's string function entries.
    #[test]
    fn string_functions_match_the_manual() {
        assert_eq!(left("foobarbar", 5), "fooba");
        assert_eq!(right("foobarbar", 4), "rbar");
        assert_eq!(left("ab", -1), "");
        assert_eq!(right("ab", 5), "ab");
        assert_eq!(left("héllo", 2), "hé");
        assert_eq!(pad("hi", 4, "??", true).as_deref(), Some("??hi"));
        assert_eq!(pad("hi", 1, "??", true).as_deref(), Some("h"));
        assert_eq!(pad("hi", 5, "?", false).as_deref(), Some("hi???"));
        assert_eq!(pad("hi", 1, "?", false).as_deref(), Some("h"));
        assert_eq!(pad("5", 3, "0", true).as_deref(), Some("005"));
        assert_eq!(pad("abc", 7, "xy", true).as_deref(), Some("xyxyabc"));
        assert_eq!(pad("hi", 4, "", true), None);
        assert_eq!(pad("hi", -1, "x", true), None);
        assert_eq!(pad("x", 1 << 40, "y", true), None);
        assert_eq!(locate("bar", "foobarbar", 1), 4);
        assert_eq!(locate("xbar", "foobar", 1), 0);
        assert_eq!(locate("bar", "foobarbar", 5), 7);
        assert_eq!(locate("", "abc", 1), 1);
        assert_eq!(locate("", "abc", 4), 4);
        assert_eq!(locate("", "abc", 5), 0);
        assert_eq!(locate("c", "äbc", 1), 3);
        assert_eq!(locate("a", "abc", 0), 0);
        assert_eq!(locate("B", "abc", 1), 0);
        assert_eq!(find_in_set("b", "a,b,c,d"), 2);
        assert_eq!(find_in_set("e", "a,b,c,d"), 0);
        assert_eq!(find_in_set("a,b", "a,b"), 0);
        assert_eq!(find_in_set("", "a,,b"), 2);
        assert_eq!(substring_index("www.mysql.com", ".", 2), "www.mysql");
        assert_eq!(substring_index("www.mysql.com", ".", -2), "mysql.com");
        assert_eq!(substring_index("www.mysql.com", ".", 5), "www.mysql.com");
        assert_eq!(substring_index("www.mysql.com", ".", -5), "www.mysql.com");
        assert_eq!(substring_index("a::b::c", "::", 1), "a");
        assert_eq!(substring_index("abc", ".", 0), "");
        assert_eq!(repeat("MySQL", 3).as_deref(), Some("MySQLMySQLMySQL"));
        assert_eq!(repeat(" ", 6).as_deref(), Some("      "));
        assert_eq!(repeat("x", -1).as_deref(), Some(""));
        assert_eq!(repeat("x", 1 << 40), None);
    }

    #[test]
    fn format_rounds_in_decimal_and_groups_thousands() {
        let cases = [
            ("12332.123456", 4, "12,332.1235"),
            ("12332.1", 4, "12,332.1000"),
            ("12332.2", 0, "12,332"),
            ("1.005", 2, "1.01"),
            ("-1234567.891", 2, "-1,234,567.89"),
            ("999.5", 0, "1,000"),
            ("-0.001", 2, "0.00"),
            ("0", 3, "0.000"),
            ("1e3", 1, "1,000.0"),
            ("1.5e-3", 4, "0.0015"),
            ("123", -2, "123"),
            ("100000", 0, "100,000"),
        ];
        for (number, decimals, expected) in cases {
            assert_eq!(format_number(number, decimals).as_deref(), Some(expected), "FORMAT({number}, {decimals})");
        }
        assert_eq!(format_number("abc", 2), None);
    }
}
