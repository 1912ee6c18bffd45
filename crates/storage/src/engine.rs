//! One SQLite database file opened the way Canopy needs it (WAL, synchronous commits, busy timeout), and the
//! statement runner shared by partitions and reference copies: reads return rows; writes run in their own
//! transaction together with the change-log hook, so the log position and the data never disagree after a crash.

use std::path::Path;
use std::time::Duration;

use canopy_sql::{Column, ResultSet, Value};
use rusqlite::{Connection, OpenFlags};

use crate::StorageError;

/// What one statement did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Rows(ResultSet),
    Affected { rows: u64, last_insert_id: i64 },
}

/// Rows returned by one statement are bounded so one query cannot exhaust a leaf's memory.
pub const RESULT_ROWS_MAX: usize = 50_000_000;

/// How long a statement waits for another writer on the same file before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn open(path: &Path) -> Result<Connection, StorageError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers on other connections (the attached reference copy) proceed during writes; FULL makes every
    // acknowledged commit durable even across power loss, not just across a process kill.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The per-database change-log hook: called inside the write transaction of every committed write.
/// Today it advances the commit counter and log index kept in `_canopy_log_position`; replication replaces the body
/// with row changesets without changing the call site.
pub fn record_commit(conn: &Connection) -> Result<(), StorageError> {
    conn.execute("UPDATE _canopy_log_position SET log_index = log_index + 1, commits = commits + 1", [])?;
    Ok(())
}

pub const LOG_POSITION_DDL: &str = "CREATE TABLE IF NOT EXISTS _canopy_log_position (
    term INTEGER NOT NULL, log_index INTEGER NOT NULL, commits INTEGER NOT NULL);
    INSERT INTO _canopy_log_position SELECT 0, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM _canopy_log_position);";

/// (term, log_index, commits) of this database.
pub fn log_position(conn: &Connection) -> Result<(u64, u64, u64), StorageError> {
    let row = conn.query_row("SELECT term, log_index, commits FROM _canopy_log_position", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })?;
    Ok((row.0 as u64, row.1 as u64, row.2 as u64))
}

/// Runs one SQL statement. A statement that writes is wrapped in its own transaction with the change-log hook.
pub fn execute(conn: &Connection, sql: &str) -> Result<Outcome, StorageError> {
    let mut stmt = conn.prepare_cached(sql)?;
    if stmt.readonly() {
        return read_rows(&mut stmt).map(Outcome::Rows);
    }
    if !conn.is_autocommit() {
        return Err(StorageError::Internal("a transaction was left open on this connection".into()));
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let outcome = if stmt.column_count() > 0 {
            // A write that returns rows (RETURNING): keep them.
            Outcome::Rows(read_rows(&mut stmt)?)
        } else {
            let rows = stmt.execute([])? as u64;
            Outcome::Affected { rows, last_insert_id: conn.last_insert_rowid() }
        };
        record_commit(conn)?;
        Ok(outcome)
    })();
    match result {
        Ok(outcome) => {
            conn.execute_batch("COMMIT")?;
            Ok(outcome)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Runs DDL statements in one transaction (SQLite DDL is transactional).
pub fn execute_ddl(conn: &Connection, statements: &[String]) -> Result<(), StorageError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        for s in statements {
            conn.execute_batch(s)?;
        }
        record_commit(conn)
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn read_rows(stmt: &mut rusqlite::CachedStatement<'_>) -> Result<ResultSet, StorageError> {
    let columns: Vec<Column> = stmt
        .columns()
        .map(|c| Column { name: c.name().to_string(), decl_type: c.decl_type().map(str::to_string) })
        .collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next()? {
        if rows.len() >= RESULT_ROWS_MAX {
            return Err(StorageError::TooManyRows);
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(Value::from(row.get_ref(i)?));
        }
        rows.push(values);
    }
    Ok(ResultSet { columns, rows })
}
