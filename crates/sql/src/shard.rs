//! The stable shard hash: which partition a row belongs to, and SQLite's type affinity so that a literal routes like
//! the value SQLite would store. Owns the hash's definition; does not know tables, plans or SQL text.
//!
//! # The hash (frozen: rows on disk were placed with it, so it must never change)
//!
//! `shard_hash(key)` feeds the canonical encoding of every key value, in key-column order, into FNV-1a 64
//! (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`), then applies the splitmix64 finalizer
//! (`z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31`, wrapping).
//! `partition_of(key, n)` is `shard_hash(key) % n`.
//!
//! Canonical encoding of one value (tag byte, then payload; integers big-endian):
//! - NULL, and a REAL NaN (SQLite stores NaN as NULL): `0x00`.
//! - INTEGER `i`: `0x01`, then `i` as 8 bytes two's complement.
//! - REAL `r` that is integral and within `[-2^63, 2^63)` (so `-0.0` too): encoded exactly as the INTEGER `r as i64`,
//!   because SQLite compares `1 = 1.0` as equal and both must land in one partition.
//! - any other REAL: `0x02`, then the IEEE-754 bits as 8 bytes.
//! - TEXT: `0x03`, the UTF-8 byte length as 8 bytes, then the bytes.
//! - BLOB: `0x04`, the byte length as 8 bytes, then the bytes.
//!
//! Callers apply the shard column's affinity ([`apply_affinity`]) before hashing, both when routing a row for
//! INSERT and when routing a `WHERE key = literal`: `'5'` compared with an INTEGER column means `5`.

use crate::catalog::Affinity;
use crate::value::Value;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// `2^63` as an f64: the first real above every i64.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// The partition (0..partitions) that holds rows with this shard key. `partitions` must be at least 1.
pub fn partition_of(key: &[Value], partitions: u32) -> u32 {
    assert!(partitions > 0, "a database has at least one partition");
    (shard_hash(key) % u64::from(partitions)) as u32
}

/// The 64-bit shard hash of a key (see the module documentation for the exact definition).
pub fn shard_hash(key: &[Value]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    };
    for value in key {
        match value {
            Value::Null => feed(&[0x00]),
            Value::Integer(i) => encode_integer(*i, &mut feed),
            Value::Real(r) if r.is_nan() => feed(&[0x00]),
            Value::Real(r) => match integral_real(*r) {
                Some(i) => encode_integer(i, &mut feed),
                None => {
                    feed(&[0x02]);
                    feed(&r.to_bits().to_be_bytes());
                }
            },
            Value::Text(s) => {
                feed(&[0x03]);
                feed(&(s.len() as u64).to_be_bytes());
                feed(s.as_bytes());
            }
            Value::Blob(b) => {
                feed(&[0x04]);
                feed(&(b.len() as u64).to_be_bytes());
                feed(b);
            }
        }
    }
    splitmix64_finalize(hash)
}

fn encode_integer(i: i64, feed: &mut impl FnMut(&[u8])) {
    feed(&[0x01]);
    feed(&i.to_be_bytes());
}

/// The integer an integral real in `[-2^63, 2^63)` equals, for hashing.
fn integral_real(r: f64) -> Option<i64> {
    if r.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&r) { Some(r as i64) } else { None }
}

fn splitmix64_finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value SQLite stores when `v` is written to (or compared with) a column of affinity `a`
/// (https://sqlite.org/datatype3.html sections 3 and 4.2).
pub fn apply_affinity(v: Value, a: Affinity) -> Value {
    match a {
        Affinity::Blob => v,
        Affinity::Text => match v {
            Value::Integer(i) => Value::Text(i.to_string()),
            Value::Real(r) if r.is_nan() => Value::Null,
            Value::Real(r) => Value::Text(real_to_text(r)),
            other => other,
        },
        Affinity::Numeric | Affinity::Integer => numeric(v),
        Affinity::Real => match numeric(v) {
            Value::Integer(i) => Value::Real(i as f64),
            other => other,
        },
    }
}

/// NUMERIC affinity: well-formed numeric text becomes INTEGER or REAL, integral reals become INTEGER.
fn numeric(v: Value) -> Value {
    match v {
        Value::Text(s) => match parse_numeric_text(&s) {
            Some(n) => numeric(n),
            None => Value::Text(s),
        },
        Value::Real(r) if r.is_nan() => Value::Null,
        Value::Real(r) => match real_as_integer(r) {
            Some(i) => Value::Integer(i),
            None => Value::Real(r),
        },
        other => other,
    }
}

/// SQLite turns a real into an integer under NUMERIC affinity only strictly inside the i64 range
/// (`sqlite3VdbeIntegerAffinity` excludes both `i64::MIN` and `i64::MAX`).
fn real_as_integer(r: f64) -> Option<i64> {
    if r.fract() != 0.0 || !(-TWO_POW_63..TWO_POW_63).contains(&r) {
        return None;
    }
    let i = r as i64;
    (i != i64::MIN && i != i64::MAX).then_some(i)
}

/// Parses text the way SQLite's numeric affinity does: optional surrounding whitespace, an optional sign, digits
/// with an optional decimal point and exponent. Integer literals that fit in i64 stay integers; anything else that
/// is well-formed becomes a real. Hexadecimal text is not numeric here.
fn parse_numeric_text(s: &str) -> Option<Value> {
    let t = s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c'));
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(at) => (&mantissa[..at], Some(&mantissa[at + 1..])),
        None => (mantissa, None),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int_part) || !frac_part.is_none_or(digits) {
        return None;
    }
    if int_part.is_empty() && frac_part.is_none_or(str::is_empty) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !digits(e) {
            return None;
        }
    }
    if frac_part.is_none()
        && exponent.is_none()
        && let Ok(i) = t.parse::<i64>()
    {
        return Some(Value::Integer(i));
    }
    // Rust's float parser accepts exactly this grammar (plus forms rejected above) and rounds correctly.
    let normalized =
        if t.ends_with('.') || t.contains(".e") || t.contains(".E") { t.replace('.', ".0") } else { t.to_string() };
    normalized.parse::<f64>().ok().map(Value::Real)
}

/// A real rendered as SQLite 3.54 renders it as text: the shortest digits that read back as the same real, always
/// with a decimal point, exponent form outside `1e-4 ..= 1e17`. SQLite produces more than 15 significant digits
/// with its own (not always correctly rounded) arithmetic, so for such reals the 17th digit may differ: callers that
/// need the exact text check [`real_text_is_exact`] first.
pub(crate) fn real_to_text(r: f64) -> String {
    if r.is_infinite() {
        return if r > 0.0 { "Inf".to_string() } else { "-Inf".to_string() };
    }
    if r == 0.0 {
        return "0.0".to_string();
    }
    let formatted = if real_text_is_exact(r) { format!("{r:e}") } else { format!("{r:.16e}") };
    let (mantissa, exponent) = formatted.split_once('e').expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a decimal exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..17).contains(&exponent) {
        out.push_str(&digits[..1]);
        out.push('.');
        out.push_str(if digits.len() > 1 { &digits[1..] } else { "0" });
        out.push_str(&format!("e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs()));
    } else if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let point = exponent as usize + 1;
        if digits.len() <= point {
            out.push_str(digits);
            for _ in digits.len()..point {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Whether [`apply_affinity`] with TEXT affinity renders this real exactly as SQLite does: true when the real reads
/// back from at most 15 significant digits (and for NaN and infinities).
pub fn real_text_is_exact(r: f64) -> bool {
    if !r.is_finite() || r == 0.0 {
        return true;
    }
    if r.abs() < f64::MIN_POSITIVE {
        // SQLite prints subnormals with 17 digits.
        return false;
    }
    let shortest = format!("{:e}", r.abs());
    let mantissa = shortest.split('e').next().unwrap_or_default();
    mantissa.chars().filter(|c| c.is_ascii_digit()).count() <= 15
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_hash_values_never_change() {
        // These vectors freeze the placement of rows already on disk (cross-checked against an independent
        // implementation of the documented encoding); a change here is a data-placement bug.
        let check = |key: &[Value], expected: u64| assert_eq!(shard_hash(key), expected, "{key:?}");
        check(&[Value::Integer(1)], 0x12a2_1a09_8321_3f2e);
        check(&[Value::Integer(-5)], 0x7635_cf6f_c627_ecc6);
        check(&[Value::Text("abc".into())], 0x4ab1_9c53_7ef5_497f);
        check(&[Value::Null], 0x25fc_6dd3_6ce0_4b20);
        check(&[Value::Integer(7), Value::Text("x".into())], 0x929f_3f78_eb5d_cb48);
        check(&[Value::Real(0.5)], 0xe2c5_5885_d8b0_6869);
        check(&[Value::Blob(vec![1, 2])], 0x848a_a505_f2b5_edee);
        assert_eq!(shard_hash(&[]), splitmix64_finalize(FNV_OFFSET_BASIS));
        assert_eq!(partition_of(&[Value::Integer(1)], 8), (0x12a2_1a09_8321_3f2eu64 % 8) as u32);
    }

    #[test]
    fn equal_values_hash_equal() {
        assert_eq!(shard_hash(&[Value::Real(5.0)]), shard_hash(&[Value::Integer(5)]));
        assert_eq!(shard_hash(&[Value::Real(-0.0)]), shard_hash(&[Value::Integer(0)]));
        assert_eq!(shard_hash(&[Value::Real(-TWO_POW_63)]), shard_hash(&[Value::Integer(i64::MIN)]));
        assert_ne!(shard_hash(&[Value::Real(5.5)]), shard_hash(&[Value::Integer(5)]));
        assert_ne!(shard_hash(&[Value::Text("5".into())]), shard_hash(&[Value::Integer(5)]));
        assert_eq!(shard_hash(&[Value::Real(f64::NAN)]), shard_hash(&[Value::Null]));
    }

    /// Stores `literal` into a column declared `decl` in SQLite and reads it back with its storage class.
    fn sqlite_stores(decl: &str, literal: &str) -> Value {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("CREATE TABLE t (c {decl}); INSERT INTO t VALUES ({literal});")).unwrap();
        let v: rusqlite::types::Value = conn.query_row("SELECT c FROM t", [], |r| r.get(0)).unwrap();
        Value::from(v)
    }

    fn sqlite_literal(literal: &str) -> Value {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let v: rusqlite::types::Value = conn.query_row(&format!("SELECT {literal}"), [], |r| r.get(0)).unwrap();
        Value::from(v)
    }

    #[test]
    fn affinity_matches_sqlite() {
        let literals = [
            "5",
            "-5",
            "'5'",
            "' 5 '",
            "'5.0'",
            "'5.5'",
            "5.0",
            "5.5",
            "'3.0e+5'",
            "'1e3'",
            "'abc'",
            "''",
            "'0x10'",
            "'9223372036854775807'",
            "'9223372036854775808'",
            "'-9223372036854775808'",
            "9223372036854775807",
            "1e300",
            "0.1",
            "-0.000123",
            "123456789012345.0",
            "1234567890123456.0",
            "1e15",
            "1e14",
            "0.0001",
            "0.00001",
            "100.25",
            "'.5'",
            "'5.'",
            "'+7'",
            "'1e'",
            "'1.2.3'",
            "NULL",
            "X'0102'",
            "'  '",
            "1e20",
            "-1e-7",
            "2.5e-300",
            "'12abc'",
            "-0.0",
            "'-0'",
            "1.0e16",
            "0.3333333333333333",
        ];
        let affinities = [
            ("INTEGER", Affinity::Integer),
            ("TEXT", Affinity::Text),
            ("REAL", Affinity::Real),
            ("NUMERIC", Affinity::Numeric),
            ("BLOB", Affinity::Blob),
        ];
        for (decl, affinity) in affinities {
            for literal in literals {
                let expected = sqlite_stores(decl, literal);
                let given = sqlite_literal(literal);
                if let Value::Real(r) = given
                    && affinity == Affinity::Text
                    && !real_text_is_exact(r)
                {
                    continue;
                }
                let got = apply_affinity(given, affinity);
                assert_eq!(got, expected, "{literal} into {decl}");
            }
        }
    }

    #[test]
    fn real_text_matches_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let reals = [
            1.0,
            0.1,
            1e15,
            1e14,
            1e16,
            1e17,
            123.456,
            -2.5,
            1e-4,
            1e-5,
            1.5e-7,
            1e100,
            1e21,
            1.5e22,
            100.0,
            1e-300,
            1234567.125,
            0.001234,
            0.30000000000000004,
            9007199254740992.0,
            1.2345678901234568e16,
            -0.0,
        ];
        for r in reals {
            let expected: String = conn.query_row("SELECT CAST(? AS TEXT)", [r], |row| row.get(0)).unwrap();
            assert_eq!(real_to_text(r), expected, "{r}");
        }
    }
}
