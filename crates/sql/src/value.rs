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
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    pub fn int(i: impl Into<i64>) -> Value {
        Value::Integer(i.into())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Renders the value as a literal that MySQL's syntax (Canopy's own parsers, sqlparser's MySQL dialect) reads
    /// back as the same value: as [`Value::to_sql_literal`], with backslashes in text doubled too, since MySQL reads
    /// `\'` as a quote inside the string. It is one literal for SQLite as well, whatever the text holds.
    pub fn to_mysql_literal(&self) -> String {
        match self {
            Value::Text(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
            other => other.to_sql_literal(),
        }
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

/// Rows one statement may return from one SQLite database (a partition, a reference copy, the merge or scratch
/// engine): with [`RESULT_BYTES_MAX`], what keeps one query from exhausting a node's memory.
pub const RESULT_ROWS_MAX: usize = 50_000_000;

/// Bytes one statement may return from one SQLite database, counted as the memory its rows take
/// ([`ResultSet::size_bytes`]).
pub const RESULT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// How many SQLite virtual-machine steps run between two checks of the interrupt check ([`interruptible`]).
const INTERRUPT_CHECK_STEPS: i32 = 10_000;

thread_local! {
    /// The interrupt check of the statement running on this thread, set by [`with_interrupt_check`].
    static INTERRUPT_CHECK: std::cell::Cell<Option<fn() -> bool>> = const { std::cell::Cell::new(None) };
}

/// Makes statements on `conn` stop (with SQLite's "interrupted" error, [`ReadError::Interrupted`]) when the
/// interrupt check of the thread running them says so. SQLite calls its progress handler on the thread that steps
/// the statement, so the check is the one [`with_interrupt_check`] set there; this crate never reads a clock itself.
pub fn interruptible(conn: &mut rusqlite::Connection) {
    let check = || INTERRUPT_CHECK.with(|c| c.get().is_some_and(|check| check()));
    // Registering a progress handler cannot fail; an error here would only mean no interruption.
    let _ = conn.progress_handler(INTERRUPT_CHECK_STEPS, Some(check));
}

/// Runs `f` with `check` as this thread's interrupt check (see [`interruptible`]), restoring the previous one.
pub fn with_interrupt_check<T>(check: fn() -> bool, f: impl FnOnce() -> T) -> T {
    let previous = INTERRUPT_CHECK.with(|c| c.replace(Some(check)));
    let out = f();
    INTERRUPT_CHECK.with(|c| c.set(previous));
    out
}

/// How much one statement may read into a [`ResultSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub rows_max: usize,
    pub bytes_max: usize,
}

impl ReadLimits {
    /// The limits of one statement's result: [`RESULT_ROWS_MAX`] and [`RESULT_BYTES_MAX`].
    pub const RESULT: ReadLimits = ReadLimits { rows_max: RESULT_ROWS_MAX, bytes_max: RESULT_BYTES_MAX };
}

/// Memory a row takes in a [`ResultSet`], the unit of [`ReadLimits::bytes_max`].
pub fn row_bytes(row: &[Value]) -> usize {
    let heap: usize = row
        .iter()
        .map(|v| match v {
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
            _ => 0,
        })
        .sum();
    std::mem::size_of::<Vec<Value>>() + std::mem::size_of_val(row) + heap
}

impl ResultSet {
    /// A result with plainly named columns (no declared types): what views and SHOW statements build.
    pub fn named(columns: &[&str], rows: Vec<Vec<Value>>) -> ResultSet {
        ResultSet { columns: columns.iter().map(|c| Column::new(*c)).collect(), rows }
    }

    /// Memory the rows take, as [`ReadLimits`] counts it.
    pub fn size_bytes(&self) -> usize {
        self.rows.iter().map(|r| row_bytes(r)).sum()
    }
}

/// Why reading a result set stopped.
#[derive(Debug)]
pub enum ReadError {
    Sqlite(rusqlite::Error),
    /// More rows or bytes than the caller allows.
    TooLarge(ReadLimits),
    /// The connection's progress handler interrupted the statement (its deadline passed).
    Interrupted,
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::OperationInterrupted) => ReadError::Interrupted,
            _ => ReadError::Sqlite(e),
        }
    }
}

impl From<ReadError> for crate::error::SqlError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Sqlite(e) => e.into(),
            ReadError::TooLarge(limits) => {
                crate::error::SqlError::ResultTooLarge { rows_max: limits.rows_max, bytes_max: limits.bytes_max }
            }
            ReadError::Interrupted => crate::error::SqlError::QueryTimeout,
        }
    }
}

/// Runs a prepared statement and reads every row, with column names and declared types, within `limits`.
/// The one place where SQLite rows become a [`ResultSet`] (leaves, merge, the aggregator's scratch engine).
pub fn read_result_set(stmt: &mut rusqlite::Statement<'_>, limits: ReadLimits) -> Result<ResultSet, ReadError> {
    let columns: Vec<Column> = stmt
        .columns()
        .map(|c| Column { name: c.name().to_string(), decl_type: c.decl_type().map(str::to_string) })
        .collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(Value::from(row.get_ref(i)?));
        }
        bytes = bytes.saturating_add(row_bytes(&values));
        if rows.len() >= limits.rows_max || bytes > limits.bytes_max {
            return Err(ReadError::TooLarge(limits));
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
    let unlimited = ReadLimits { rows_max: usize::MAX, bytes_max: usize::MAX };
    match query_within(conn, sql, params, unlimited) {
        Ok(rs) => Ok(rs),
        Err(ReadError::Sqlite(e)) => Err(e),
        Err(ReadError::TooLarge(_)) => unreachable!("no limit was set"),
        Err(ReadError::Interrupted) => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERRUPT),
            Some("interrupted".to_string()),
        )),
    }
}

/// [`query_with`] reading at most `limits`; a deadline is the caller's progress handler on `conn`.
pub fn query_within(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Value],
    limits: ReadLimits,
) -> Result<ResultSet, ReadError> {
    let mut stmt = conn.prepare(sql)?;
    bind_params(&mut stmt, params)?;
    read_result_set(&mut stmt, limits)
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

    /// A statement without an end stops at the row limit, at the byte limit, and when the thread's interrupt
    /// check says so; without a check set, an interruptible connection runs normally.
    #[test]
    fn reading_stops_at_the_limits_and_at_the_interrupt_check() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        interruptible(&mut conn);
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
        let rows = ReadLimits { rows_max: 1000, bytes_max: usize::MAX };
        assert!(matches!(query_within(&conn, endless, &[], rows), Err(ReadError::TooLarge(l)) if l == rows));
        let bytes = ReadLimits { rows_max: usize::MAX, bytes_max: 10_000 };
        assert!(matches!(query_within(&conn, endless, &[], bytes), Err(ReadError::TooLarge(l)) if l == bytes));
        let counting = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let stop = || true;
        let interrupted = with_interrupt_check(stop, || query_within(&conn, counting, &[], ReadLimits::RESULT));
        assert!(matches!(interrupted, Err(ReadError::Interrupted)), "{interrupted:?}");
        assert!(matches!(crate::SqlError::from(ReadError::Interrupted), crate::SqlError::QueryTimeout));
        let ten = query_within(&conn, &endless.replace("FROM c", "FROM c LIMIT 10"), &[], ReadLimits::RESULT);
        assert_eq!(ten.unwrap().rows.len(), 10);
    }

    /// A MySQL literal reads back as exactly its value through sqlparser's MySQL dialect and Canopy's own grammar
    /// (`\'` would otherwise end the string early), and stays one literal for SQLite.
    #[test]
    fn mysql_literals_read_back_as_the_same_value() {
        use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement, Value as Ast};
        for text in ["\\'x", "\\", "'", "a\\\\''b", "\\' OR 1=1 -- ", "plain", "%\\_"] {
            let literal = Value::Text(text.to_string()).to_mysql_literal();
            let sql = format!("SELECT {literal}");
            let parsed = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::MySqlDialect {}, &sql).unwrap();
            let [Statement::Query(q)] = parsed.as_slice() else { panic!("{sql}") };
            let SetExpr::Select(s) = q.body.as_ref() else { panic!("{sql}") };
            let [SelectItem::UnnamedExpr(Expr::Value(v))] = s.projection.as_slice() else { panic!("{sql}") };
            assert_eq!(v.value, Ast::SingleQuotedString(text.to_string()), "{sql}");
            let show = crate::command::parse_statement(&format!("SHOW TABLES LIKE {literal}")).unwrap();
            let crate::command::Statement::ShowTables { like, .. } = show else { panic!("{literal}") };
            assert_eq!(like.as_deref(), Some(text), "{literal}");
            let conn = rusqlite::Connection::open_in_memory().unwrap();
            let count: i64 =
                conn.query_row(&format!("SELECT count(*) FROM (SELECT {literal})"), [], |r| r.get(0)).unwrap();
            assert_eq!(count, 1, "{literal} is one SQLite literal");
        }
        assert_eq!(Value::Integer(-3).to_mysql_literal(), "-3");
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
