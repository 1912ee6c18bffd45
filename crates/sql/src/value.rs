//! The SQL data model shared by every layer: a value is one of SQLite's five storage classes, and a result set is
//! named columns over rows of values. Canopy follows its leaves' engine (SQLite) for the meaning of values, so these
//! types carry exactly what SQLite returns and nothing MySQL-specific; the front end decides how to show them.

use serde::{Deserialize, Serialize};

/// One SQL value, exactly as SQLite stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Renders the value as an SQL literal that SQLite reads back as the same value and storage class.
    pub fn to_sql_literal(&self) -> String {
        match self {
            Value::Null => "NULL".to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Real(r) => real_literal(*r),
            Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Blob(b) => {
                let mut out = String::with_capacity(3 + b.len() * 2);
                out.push_str("X'");
                for byte in b {
                    out.push_str(&format!("{byte:02X}"));
                }
                out.push('\'');
                out
            }
        }
    }
}

/// A real as an SQL literal that stays a real when read back (SQLite reads `1e0` as REAL, `1` as INTEGER).
fn real_literal(r: f64) -> String {
    if r.is_nan() {
        return "NULL".to_string();
    }
    if r.is_infinite() {
        return if r > 0.0 { "9e999".to_string() } else { "-9e999".to_string() };
    }
    // `{:e}` prints the shortest representation that round-trips, always with an exponent, so it parses as REAL.
    format!("{r:e}")
}

impl From<rusqlite::types::Value> for Value {
    fn from(v: rusqlite::types::Value) -> Self {
        match v {
            rusqlite::types::Value::Null => Value::Null,
            rusqlite::types::Value::Integer(i) => Value::Integer(i),
            rusqlite::types::Value::Real(r) => Value::Real(r),
            rusqlite::types::Value::Text(s) => Value::Text(s),
            rusqlite::types::Value::Blob(b) => Value::Blob(b),
        }
    }
}

impl From<rusqlite::types::ValueRef<'_>> for Value {
    fn from(v: rusqlite::types::ValueRef<'_>) -> Self {
        match v {
            rusqlite::types::ValueRef::Null => Value::Null,
            rusqlite::types::ValueRef::Integer(i) => Value::Integer(i),
            rusqlite::types::ValueRef::Real(r) => Value::Real(r),
            rusqlite::types::ValueRef::Text(s) => Value::Text(String::from_utf8_lossy(s).into_owned()),
            rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// One result column: its name as the client sees it, and the declared type of the table column it comes from when
/// SQLite knows it (`None` for expressions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub decl_type: Option<String>,
}

impl Column {
    pub fn new(name: impl Into<String>) -> Self {
        Column { name: name.into(), decl_type: None }
    }
}

/// Rows returned by a query.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// Why reading a result set stopped.
#[derive(Debug)]
pub enum ReadError {
    Sqlite(rusqlite::Error),
    /// More rows than the caller allows.
    TooManyRows,
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        ReadError::Sqlite(e)
    }
}

/// Runs a prepared statement and reads every row, with column names and declared types, up to `rows_max` rows.
/// The one place where SQLite rows become a [`ResultSet`] (leaves, merge, the aggregator's scratch engine).
pub fn read_result_set(stmt: &mut rusqlite::Statement<'_>, rows_max: usize) -> Result<ResultSet, ReadError> {
    let columns: Vec<Column> = stmt
        .columns()
        .map(|c| Column { name: c.name().to_string(), decl_type: c.decl_type().map(str::to_string) })
        .collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next()? {
        if rows.len() >= rows_max {
            return Err(ReadError::TooManyRows);
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(Value::from(row.get_ref(i)?));
        }
        rows.push(values);
    }
    Ok(ResultSet { columns, rows })
}

/// Prepares and runs `sql` on `conn` and reads all its rows (for in-memory calculators, not for storage).
pub fn query(conn: &rusqlite::Connection, sql: &str) -> Result<ResultSet, rusqlite::Error> {
    query_with(conn, sql, &[])
}

/// Binds `params` to a prepared statement's numbered placeholders (`?1` takes the first value); values beyond the
/// statement's highest placeholder number are ignored, missing ones stay NULL.
pub fn bind_params(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<(), rusqlite::Error> {
    for (index, value) in params.iter().take(stmt.parameter_count()).enumerate() {
        stmt.raw_bind_parameter(index + 1, value)?;
    }
    Ok(())
}

/// [`query`] with `params` bound to the statement's `?NNN` placeholders (extra values are ignored).
pub fn query_with(conn: &rusqlite::Connection, sql: &str, params: &[Value]) -> Result<ResultSet, rusqlite::Error> {
    let mut stmt = conn.prepare(sql)?;
    bind_params(&mut stmt, params)?;
    match read_result_set(&mut stmt, usize::MAX) {
        Ok(rs) => Ok(rs),
        Err(ReadError::Sqlite(e)) => Err(e),
        Err(ReadError::TooManyRows) => unreachable!("no row limit was set"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: Value) {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let sql = format!("SELECT {}", v.to_sql_literal());
        let back: rusqlite::types::Value = conn.query_row(&sql, [], |r| r.get(0)).unwrap();
        assert_eq!(Value::from(back), v, "{sql}");
    }

    #[test]
    fn literals_read_back_as_the_same_value() {
        roundtrip(Value::Null);
        roundtrip(Value::Integer(i64::MIN));
        roundtrip(Value::Integer(42));
        roundtrip(Value::Real(1.0));
        roundtrip(Value::Real(-0.1));
        roundtrip(Value::Real(1.7976931348623157e308));
        roundtrip(Value::Real(5e-324));
        roundtrip(Value::Text("it's".into()));
        roundtrip(Value::Text(String::new()));
        roundtrip(Value::Blob(vec![0, 1, 255]));
    }
}
