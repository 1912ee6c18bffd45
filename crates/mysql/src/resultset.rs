//! How a `canopy_sql::ResultSet` looks to a MySQL client: the MySQL type of each column, column definition packets,
//! and rows in the text protocol (COM_QUERY) and the binary protocol (COM_STMT_EXECUTE). It produces payloads only;
//! the command loop frames and sends them.
//!
//! Values keep SQLite's meaning. The one decision made here is which MySQL type a column claims, and that claim must
//! hold for every value in the column: when a value does not fit (SQLite lets an INTEGER column hold text), the column
//! is shown as a string, never as a number that the value is not.

use std::borrow::Cow;

use canopy_sql::{Column, ResultSet, Value};
use mysql_common::constants::{ColumnFlags, ColumnType};

use crate::wire::{put_lenenc_bytes, put_u16, put_u32};

/// utf8_general_ci: the character set announced for text columns.
pub(crate) const CHARSET_UTF8: u16 = 33;
/// binary: the character set of numbers and blobs.
pub(crate) const CHARSET_BINARY: u16 = 63;
/// "Not a fixed number of decimals", what MySQL announces for DOUBLE expressions.
const DECIMALS_NOT_FIXED: u8 = 31;

/// The MySQL type a result column is shown with.
///
/// 1. The SQLite declared type, when present and non-empty, picks a candidate by SQLite's affinity rules, checked in
///    SQLite's order: contains `INT` → LONGLONG; contains `CHAR`, `CLOB` or `TEXT` → VAR_STRING; contains `BLOB` →
///    BLOB; contains `REAL`, `FLOA` or `DOUB` → DOUBLE; anything else (NUMERIC, DECIMAL, BOOLEAN, DATE, ...) has
///    numeric affinity and is decided by the values as in step 2.
/// 2. Without a declared type the values decide: all non-NULL values Integer → LONGLONG; Integer and Real mixed, or
///    all Real → DOUBLE; all Blob → BLOB; anything else, and a column of only NULLs → VAR_STRING.
/// 3. The candidate must fit every value, else the column falls back to VAR_STRING (which can show anything):
///    LONGLONG holds NULL and Integer; DOUBLE holds NULL, Real and Integer exactly representable as a double
///    (|i| ≤ 2^53, so no digit is ever lost); BLOB holds NULL and Blob.
pub fn mysql_column_type<'a>(
    decl_type: Option<&str>,
    values: impl IntoIterator<Item = &'a Value> + Clone,
) -> ColumnType {
    let declared = decl_type.map(str::to_ascii_uppercase).filter(|d| !d.trim().is_empty());
    let candidate = match declared.as_deref() {
        Some(d) if d.contains("INT") => ColumnType::MYSQL_TYPE_LONGLONG,
        Some(d) if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") => ColumnType::MYSQL_TYPE_VAR_STRING,
        Some(d) if d.contains("BLOB") => ColumnType::MYSQL_TYPE_BLOB,
        Some(d) if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") => ColumnType::MYSQL_TYPE_DOUBLE,
        _ => type_from_values(values.clone()),
    };
    if values.into_iter().all(|v| fits(candidate, v)) { candidate } else { ColumnType::MYSQL_TYPE_VAR_STRING }
}

fn type_from_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> ColumnType {
    let (mut integers, mut reals, mut blobs, mut others) = (0usize, 0usize, 0usize, 0usize);
    for value in values {
        match value {
            Value::Null => {}
            Value::Integer(_) => integers += 1,
            Value::Real(_) => reals += 1,
            Value::Blob(_) => blobs += 1,
            Value::Text(_) => others += 1,
        }
    }
    match (integers, reals, blobs, others) {
        (1.., 0, 0, 0) => ColumnType::MYSQL_TYPE_LONGLONG,
        (_, 1.., 0, 0) => ColumnType::MYSQL_TYPE_DOUBLE,
        (0, 0, 1.., 0) => ColumnType::MYSQL_TYPE_BLOB,
        _ => ColumnType::MYSQL_TYPE_VAR_STRING,
    }
}

/// Largest magnitude up to which every integer is exactly a double.
const EXACT_DOUBLE_INT: i64 = 1 << 53;

fn fits(column_type: ColumnType, value: &Value) -> bool {
    match (column_type, value) {
        (_, Value::Null) => true,
        (ColumnType::MYSQL_TYPE_LONGLONG, Value::Integer(_)) => true,
        (ColumnType::MYSQL_TYPE_DOUBLE, Value::Real(_)) => true,
        (ColumnType::MYSQL_TYPE_DOUBLE, Value::Integer(i)) => (-EXACT_DOUBLE_INT..=EXACT_DOUBLE_INT).contains(i),
        (ColumnType::MYSQL_TYPE_BLOB, Value::Blob(_)) => true,
        (ColumnType::MYSQL_TYPE_VAR_STRING, _) => true,
        _ => false,
    }
}

/// Everything a column definition announces besides the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColumnSpec {
    pub column_type: ColumnType,
    pub charset: u16,
    pub flags: ColumnFlags,
    pub decimals: u8,
    /// Display length in bytes; clients use it for sizing, not for truncation.
    pub length: u32,
}

impl ColumnSpec {
    fn new<'a>(decl_type: Option<&str>, values: impl IntoIterator<Item = &'a Value> + Clone) -> Self {
        let column_type = mysql_column_type(decl_type, values.clone());
        let numeric = ColumnFlags::NUM_FLAG | ColumnFlags::BINARY_FLAG;
        let (charset, flags, decimals, min_length) = match column_type {
            ColumnType::MYSQL_TYPE_LONGLONG => (CHARSET_BINARY, numeric, 0, 20),
            ColumnType::MYSQL_TYPE_DOUBLE => (CHARSET_BINARY, numeric, DECIMALS_NOT_FIXED, 22),
            ColumnType::MYSQL_TYPE_BLOB => (CHARSET_BINARY, ColumnFlags::BLOB_FLAG | ColumnFlags::BINARY_FLAG, 0, 0),
            // A string column that carries blobs is VARBINARY: it must not claim the bytes are UTF-8.
            _ if values.clone().into_iter().any(|v| matches!(v, Value::Blob(_))) => {
                (CHARSET_BINARY, ColumnFlags::BINARY_FLAG, 0, 0)
            }
            _ => (CHARSET_UTF8, ColumnFlags::empty(), 0, 0),
        };
        let longest = values.into_iter().map(|v| text_form(v).map_or(0, |t| t.len())).max().unwrap_or(0);
        let length = u32::try_from(longest).unwrap_or(u32::MAX).max(min_length);
        ColumnSpec { column_type, charset, flags, decimals, length }
    }
}

/// Column specs for a result set, each decided from its declared type and its values.
pub(crate) fn column_specs(result: &ResultSet) -> Vec<ColumnSpec> {
    (0..result.columns.len())
        .map(|i| {
            ColumnSpec::new(result.columns[i].decl_type.as_deref(), result.rows.iter().filter_map(move |r| r.get(i)))
        })
        .collect()
}

/// Column specs known before any row exists (COM_STMT_PREPARE): the declared type alone decides.
pub(crate) fn declared_column_specs(columns: &[Column]) -> Vec<ColumnSpec> {
    columns.iter().map(|c| ColumnSpec::new(c.decl_type.as_deref(), std::iter::empty())).collect()
}

/// Whether every row has exactly one value per column; a result set that breaks this is a backend bug and is never
/// encoded.
pub(crate) fn is_well_formed(result: &ResultSet) -> bool {
    result.rows.iter().all(|r| r.len() == result.columns.len())
}

/// A ColumnDefinition41 payload.
pub(crate) fn column_definition(name: &str, spec: &ColumnSpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + name.len() * 2);
    put_lenenc_bytes(&mut out, b"def"); // catalog
    put_lenenc_bytes(&mut out, b""); // schema
    put_lenenc_bytes(&mut out, b""); // table
    put_lenenc_bytes(&mut out, b""); // org_table
    put_lenenc_bytes(&mut out, name.as_bytes());
    put_lenenc_bytes(&mut out, name.as_bytes()); // org_name
    out.push(0x0C); // length of the fixed-size fields that follow
    put_u16(&mut out, spec.charset);
    put_u32(&mut out, spec.length);
    out.push(spec.column_type as u8);
    put_u16(&mut out, spec.flags.bits());
    out.push(spec.decimals);
    put_u16(&mut out, 0); // filler
    out
}

/// A value's text-protocol form; None for NULL.
fn text_form(value: &Value) -> Option<Cow<'_, [u8]>> {
    match value {
        Value::Null => None,
        Value::Integer(i) => Some(Cow::Owned(i.to_string().into_bytes())),
        Value::Real(r) => Some(Cow::Owned(format_real(*r).into_bytes())),
        Value::Text(s) => Some(Cow::Borrowed(s.as_bytes())),
        Value::Blob(b) => Some(Cow::Borrowed(b)),
    }
}

/// The text form of a double: the shortest digits that read back as the same double. Integral values print without
/// a fraction (`2`, as MySQL prints a DOUBLE 2), and very large or very small magnitudes use an exponent (`1e300`,
/// `1.5e-7`) instead of hundreds of zeros. Infinities print as `inf`/`-inf` (SQLite can hold them, MySQL cannot).
pub(crate) fn format_real(r: f64) -> String {
    let magnitude = r.abs();
    if magnitude != 0.0 && magnitude.is_finite() && !(1e-5..1e15).contains(&magnitude) {
        format!("{r:e}")
    } else {
        format!("{r}")
    }
}

/// A text-protocol row.
pub(crate) fn text_row(row: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in row {
        match text_form(value) {
            None => out.push(0xFB),
            Some(text) => put_lenenc_bytes(&mut out, &text),
        }
    }
    out
}

/// A binary-protocol row: header, NULL bitmap (offset 2, as the protocol requires for result rows), then the
/// non-NULL values in the encoding their column's type announces.
pub(crate) fn binary_row(row: &[Value], specs: &[ColumnSpec]) -> Vec<u8> {
    let mut out = vec![0x00];
    let bitmap_start = out.len();
    out.resize(bitmap_start + (row.len() + 7 + 2) / 8, 0);
    for (i, (value, spec)) in row.iter().zip(specs).enumerate() {
        let bit = i + 2;
        match (value, spec.column_type) {
            (Value::Null, _) => out[bitmap_start + bit / 8] |= 1 << (bit % 8),
            (Value::Integer(v), ColumnType::MYSQL_TYPE_LONGLONG) => out.extend_from_slice(&v.to_le_bytes()),
            (Value::Integer(v), ColumnType::MYSQL_TYPE_DOUBLE) => out.extend_from_slice(&(*v as f64).to_le_bytes()),
            (Value::Real(v), ColumnType::MYSQL_TYPE_DOUBLE) => out.extend_from_slice(&v.to_le_bytes()),
            (value, _) => put_lenenc_bytes(&mut out, &text_form(value).unwrap_or_default()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::*;
    use Value::*;

    fn check(decl: Option<&str>, values: &[Value], expected: ColumnType) {
        assert_eq!(mysql_column_type(decl, values), expected, "{decl:?} {values:?}");
    }

    #[test]
    fn declared_types_follow_sqlite_affinity() {
        check(Some("INTEGER"), &[Integer(1), Null], MYSQL_TYPE_LONGLONG);
        check(Some("bigint unsigned"), &[], MYSQL_TYPE_LONGLONG);
        check(Some("VARCHAR(10)"), &[Integer(1)], MYSQL_TYPE_VAR_STRING);
        check(Some("TEXT"), &[], MYSQL_TYPE_VAR_STRING);
        check(Some("BLOB"), &[Blob(vec![1])], MYSQL_TYPE_BLOB);
        check(Some("DOUBLE PRECISION"), &[Real(1.5), Integer(2)], MYSQL_TYPE_DOUBLE);
        check(Some("FLOAT"), &[], MYSQL_TYPE_DOUBLE);
        // "POINT" contains INT: SQLite gives it integer affinity, so do we.
        check(Some("POINT"), &[Integer(1)], MYSQL_TYPE_LONGLONG);
    }

    #[test]
    fn numeric_and_missing_declared_types_are_decided_by_values() {
        check(Some("NUMERIC"), &[Integer(1), Null], MYSQL_TYPE_LONGLONG);
        check(Some("DECIMAL(10,2)"), &[Integer(1), Real(2.5)], MYSQL_TYPE_DOUBLE);
        check(Some(""), &[Blob(vec![])], MYSQL_TYPE_BLOB);
        check(None, &[Real(0.5)], MYSQL_TYPE_DOUBLE);
        check(None, &[Text("a".into()), Integer(1)], MYSQL_TYPE_VAR_STRING);
        check(None, &[Blob(vec![]), Integer(1)], MYSQL_TYPE_VAR_STRING);
        check(None, &[Null, Null], MYSQL_TYPE_VAR_STRING);
        check(None, &[], MYSQL_TYPE_VAR_STRING);
    }

    #[test]
    fn values_that_do_not_fit_the_declared_type_fall_back_to_string() {
        check(Some("INTEGER"), &[Integer(1), Text("one".into())], MYSQL_TYPE_VAR_STRING);
        check(Some("INTEGER"), &[Real(1.5)], MYSQL_TYPE_VAR_STRING);
        check(Some("REAL"), &[Text("x".into())], MYSQL_TYPE_VAR_STRING);
        check(Some("BLOB"), &[Text("x".into())], MYSQL_TYPE_VAR_STRING);
        // 2^53 + 1 is not a double; showing it as one would change it.
        check(None, &[Real(0.5), Integer((1 << 53) + 1)], MYSQL_TYPE_VAR_STRING);
        check(Some("REAL"), &[Integer(1 << 53)], MYSQL_TYPE_DOUBLE);
    }

    #[test]
    fn reals_print_shortest_round_trip() {
        assert_eq!(format_real(2.0), "2");
        assert_eq!(format_real(-0.1), "-0.1");
        assert_eq!(format_real(1e300), "1e300");
        assert_eq!(format_real(1.5e-7), "1.5e-7");
        assert_eq!(format_real(123456.789), "123456.789");
        for r in [0.1, 1.0 / 3.0, 1e-300, f64::MAX, 5e-324] {
            assert_eq!(format_real(r).parse::<f64>().unwrap(), r);
        }
    }

    #[test]
    fn text_rows_mark_null_with_0xfb() {
        assert_eq!(text_row(&[Null, Integer(-5), Text("ab".into())]), b"\xFB\x02-5\x02ab");
    }

    #[test]
    fn binary_rows_use_the_null_bitmap_and_native_encodings() {
        let result = ResultSet {
            columns: vec![Column::new("i"), Column::new("r"), Column::new("n"), Column::new("s")],
            rows: vec![vec![Integer(1), Real(0.5), Null, Text("x".into())]],
        };
        let specs = column_specs(&result);
        let row = binary_row(&result.rows[0], &specs);
        let mut expected = vec![0x00, 0b0001_0000];
        expected.extend_from_slice(&1i64.to_le_bytes());
        expected.extend_from_slice(&0.5f64.to_le_bytes());
        expected.extend_from_slice(b"\x01x");
        assert_eq!(row, expected);
    }

    #[test]
    fn string_columns_holding_blobs_announce_the_binary_charset() {
        let result = ResultSet {
            columns: vec![Column::new("mixed"), Column::new("text")],
            rows: vec![vec![Blob(vec![0xFF]), Text("a".into())], vec![Text("b".into()), Text("c".into())]],
        };
        let specs = column_specs(&result);
        assert_eq!((specs[0].column_type, specs[0].charset), (MYSQL_TYPE_VAR_STRING, CHARSET_BINARY));
        assert_eq!((specs[1].column_type, specs[1].charset), (MYSQL_TYPE_VAR_STRING, CHARSET_UTF8));
    }
}
