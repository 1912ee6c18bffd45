//! One SQLite database file opened the way Canopy needs it (WAL, synchronous commits, busy timeout), and the
//! statement runner shared by partitions and reference copies: reads return rows; writes run in their own
//! transaction together with the change-log hook, which records the transaction's row changes (a session
//! changeset) or DDL text in `_canopy_log` in that same transaction, so the log and the data never disagree after a
//! crash. What the log holds and how it is read and applied is `crate::log`.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use canopy_sql::functions::Host;
use canopy_sql::{ResultSet, Value};
use rusqlite::{Connection, OpenFlags};

use crate::StorageError;
use crate::ffi::Session;
use crate::log::{self, Change, LogEntry};

/// What one statement did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Rows(ResultSet),
    Affected { rows: u64, last_insert_id: i64 },
}

/// Rows returned by one statement are bounded so one query cannot exhaust a leaf's memory (bytes too:
/// `canopy_sql::value::RESULT_BYTES_MAX`).
pub const RESULT_ROWS_MAX: usize = canopy_sql::value::RESULT_ROWS_MAX;

/// How long one statement may run (on a partition, a reference copy, the aggregator's merge and scratch engines)
/// before it is interrupted with MySQL's error 3024, by default. MySQL's `max_execution_time` is unlimited; a
/// bound here keeps a runaway query (a recursive CTE without an end, a cross join) from holding a thread forever.
pub const QUERY_TIME_MS_MAX: u64 = 60_000;

/// The statement time limit of this process in milliseconds (`QUERY_TIME_MS_MAX` unless the node was started
/// with another, see [`set_query_time_ms_max`]).
static QUERY_TIME_MS: AtomicU64 = AtomicU64::new(QUERY_TIME_MS_MAX);

thread_local! {
    /// When the statement running on this thread must stop, set by [`with_deadline`].
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The cancellation flag of the statement running on this thread, set by [`with_cancel`].
    static CANCEL: std::cell::RefCell<Option<Arc<AtomicBool>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (SQLite work on this thread) so that setting `flag` interrupts it as the time limit does; the
/// statement then fails with [`StorageError::Cancelled`] instead of a timeout.
pub fn with_cancel<T>(flag: Arc<AtomicBool>, f: impl FnOnce() -> T) -> T {
    let outer = CANCEL.with(|c| c.replace(Some(flag)));
    let out = f();
    CANCEL.with(|c| *c.borrow_mut() = outer);
    out
}

/// Whether the statement running on this thread was cancelled (see [`with_cancel`]).
pub fn cancelled() -> bool {
    CANCEL.with(|c| c.borrow().as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed)))
}

/// The error an interrupted statement ends with: cancelled by its sender, or out of time.
fn interrupted() -> StorageError {
    if cancelled() { StorageError::Cancelled } else { StorageError::QueryTimeout }
}

/// Sets this process's statement time limit (`canopy server --query-time-max-ms`).
pub fn set_query_time_ms_max(ms: u64) {
    QUERY_TIME_MS.store(ms.max(1), Ordering::Relaxed);
}

/// Runs `f` (SQLite work on this thread) under the statement time limit: statements on connections made
/// [`canopy_sql::value::interruptible`] stop with an "interrupted" error once it has passed. Nested calls keep the
/// outer deadline.
pub fn with_deadline<T>(f: impl FnOnce() -> T) -> T {
    let limit = Duration::from_millis(QUERY_TIME_MS.load(Ordering::Relaxed));
    let outer = DEADLINE.with(|d| d.get());
    let deadline = outer.unwrap_or_else(|| Instant::now() + limit);
    DEADLINE.with(|d| d.set(Some(deadline)));
    let out = canopy_sql::value::with_interrupt_check(deadline_passed, f);
    DEADLINE.with(|d| d.set(outer));
    out
}

fn deadline_passed() -> bool {
    DEADLINE.with(|d| d.get()).is_some_and(|deadline| Instant::now() >= deadline) || cancelled()
}

/// The process's clock and random numbers for MySQL's functions (`canopy_sql::functions`) on every SQLite
/// connection of this node: partitions, reference copies, and the aggregator's merge and scratch engines.
pub fn system_host() -> Arc<dyn Host> {
    static HOST: std::sync::OnceLock<Arc<dyn Host>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| Arc::new(SystemHost)).clone()
}

struct SystemHost;

/// How often a SLEEP() looks at the statement's deadline.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

impl Host for SystemHost {
    fn now_micros(&self) -> i64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
    }

    fn random(&self) -> u64 {
        rand::random()
    }

    /// Sleeps in slices so that the statement time limit ([`with_deadline`]) still interrupts it: MySQL's SLEEP
    /// answers 1 when it is interrupted, and so does this.
    fn sleep(&self, seconds: f64) -> bool {
        let end = Instant::now() + Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX / 2);
        loop {
            if deadline_passed() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep(SLEEP_SLICE.min(end - now));
        }
    }
}

/// How long a statement waits for another writer on the same file before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Mode of database files: SQLite gives its WAL and shared-memory files the database file's mode.
const FILE_MODE: u32 = 0o600;

pub fn open(path: &Path) -> Result<Connection, StorageError> {
    use std::os::unix::fs::PermissionsExt;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    canopy_sql::value::interruptible(&mut conn);
    canopy_sql::functions::register(&conn, system_host())?;
    // WAL lets readers on other connections (the attached reference copy) proceed during writes; FULL makes every
    // acknowledged commit durable even across power loss, not just across a process kill.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    apply_stored_durability(&conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    // New files and files from before the change log existed get the log tables.
    conn.execute_batch(log::LOG_DDL)?;
    Ok(conn)
}

/// Functions a statement on a leaf may never call: loading native code (disabled in this build as well; denied
/// here so that stays true whatever the build).
const DENIED_FUNCTIONS: [&str; 1] = ["load_extension"];

/// Makes `conn` refuse statements that reach outside its own file: `ATTACH`/`DETACH` (a file anywhere the process
/// can write), `VACUUM` (whose `INTO` writes a copy anywhere; SQLite runs it through an internal ATTACH, which this
/// denies too) and [`DENIED_FUNCTIONS`]. Installed on every partition and reference connection after the store's
/// own ATTACH of the reference copy, so statement text sent by peers or typed on a leaf can never name another file.
pub fn deny_escapes(conn: &mut Connection) -> Result<(), StorageError> {
    use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
    conn.authorizer(Some(|context: AuthContext<'_>| match context.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Function { function_name }
            if DENIED_FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }))?;
    Ok(())
}

/// The change-log hook, called inside the write transaction of every committed write: appends what the
/// transaction changed to `_canopy_log` and advances the position (see [`crate::log`]). Being in the same SQLite
/// transaction as the data is what makes log and data agree after a crash.
pub fn record_commit(conn: &Connection, change: Change<'_>) -> Result<Option<LogEntry>, StorageError> {
    log::append(conn, change)
}

/// What a partition commit does with its log entry before COMMIT (`LeafStore` hands the replicator's ship here):
/// returning an error rolls the transaction back. Ship first, then commit: no reader on this copy can see a write
/// its replica does not hold.
pub type Ship<'a> = &'a dyn Fn(&LogEntry) -> Result<(), StorageError>;

/// A `Ship` for copies without replicas (reference copies, redundancy 1).
pub fn no_ship(_: &LogEntry) -> Result<(), StorageError> {
    Ok(())
}

/// The user tables of the `main` database (Canopy's `_canopy_*` and SQLite's own left out), lower-cased and sorted.
pub fn user_tables(conn: &Connection) -> Result<Vec<String>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT lower(name) FROM main.sqlite_master WHERE type = 'table'
         AND name NOT LIKE '\\_canopy\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY 1",
    )?;
    let tables = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(tables)
}

/// (term, log_index, commits) of this database.
pub fn log_position(conn: &Connection) -> Result<(canopy_types::Term, u64, u64), StorageError> {
    let (position, commits) = log::position(conn)?;
    Ok((position.term, position.index, commits))
}

/// Runs one SQL statement with its parameters (`?NNN` placeholders, bound by number from `params`; a statement
/// using `?3` needs at least three). Statements are prepared through the connection's statement cache, so a
/// parameterized statement is compiled once per connection. A statement that writes runs in its own transaction,
/// recorded by a session whose changeset goes to the change log in that same transaction.
pub fn execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<Outcome, StorageError> {
    execute_timed(conn, sql, params, &no_ship, CommitSync::InCommit).map(|(outcome, _)| outcome)
}

/// When the COMMIT of a write on a `synchronous=FULL` connection (sync durability) reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommitSync {
    /// In the COMMIT itself (SQLite's FULL).
    InCommit,
    /// Later, through the leaf's flusher (`crate::flush`, group commit): the COMMIT only writes the WAL.
    Deferred,
}

/// A client statement on a partition: `execute` whose commit's log entry goes through `ship` before COMMIT and
/// whose COMMIT, on a sync-durability connection, writes the WAL without syncing it. Returns the outcome and
/// whether the caller must have the WAL synced (`Flusher::enqueue`, `wait`) before acknowledging: true only when
/// such a COMMIT wrote something. The connection is FULL again afterwards, so every other write on it (terms,
/// schema, copies) keeps syncing in its own COMMIT.
pub fn execute_shipped(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    ship: Ship<'_>,
) -> Result<(Outcome, bool), StorageError> {
    execute_timed(conn, sql, params, ship, CommitSync::Deferred)
}

fn execute_timed(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    ship: Ship<'_>,
    sync: CommitSync,
) -> Result<(Outcome, bool), StorageError> {
    with_deadline(|| execute_now(conn, sql, params, ship, sync)).map_err(|e| match e {
        StorageError::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {
            interrupted()
        }
        other => other,
    })
}

fn execute_now(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    ship: Ship<'_>,
    sync: CommitSync,
) -> Result<(Outcome, bool), StorageError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let wanted = stmt.parameter_count();
    if wanted > params.len() {
        return Err(StorageError::Internal(format!("statement takes {wanted} parameters, {} were sent", params.len())));
    }
    canopy_sql::value::bind_params(&mut stmt, params)?;
    if stmt.readonly() {
        return read_rows(&mut stmt).map(|rows| (Outcome::Rows(rows), false));
    }
    let deferred = sync == CommitSync::Deferred && synchronous_level(conn)? == 2;
    if deferred {
        conn.prepare_cached("PRAGMA main.synchronous = NORMAL")?.execute([])?;
    }
    let changes = conn.total_changes();
    let written = log::in_transaction(conn, || {
        let session = Session::start(conn)?;
        let outcome = if stmt.column_count() > 0 {
            // A write that returns rows (RETURNING): keep them.
            Outcome::Rows(read_rows(&mut stmt)?)
        } else {
            let rows = stmt.raw_execute()? as u64;
            Outcome::Affected { rows, last_insert_id: conn.last_insert_rowid() }
        };
        let changeset = session.changeset()?;
        drop(session);
        if let Some(entry) = record_commit(conn, Change::Rows(&changeset))? {
            ship(&entry)?;
        }
        Ok(outcome)
    });
    if deferred {
        // Never left NORMAL unnoticed: a later COMMIT of a term or a copy would not be synced.
        conn.prepare_cached("PRAGMA main.synchronous = FULL")
            .and_then(|mut stmt| stmt.execute([]))
            .expect("PRAGMA synchronous on an open connection outside a transaction");
    }
    let flush = deferred && written.is_ok() && conn.total_changes() != changes;
    written.map(|outcome| (outcome, flush))
}

/// Runs one statement that only reads (SQLite's own judgement, `sqlite3_stmt_readonly`); a statement that would
/// write is refused with `NotReadOnly` before it runs.
pub fn query(conn: &Connection, sql: &str) -> Result<Outcome, StorageError> {
    let mut stmt = conn.prepare_cached(sql)?;
    if !stmt.readonly() {
        return Err(StorageError::NotReadOnly);
    }
    read_rows(&mut stmt).map(Outcome::Rows)
}

/// Runs DDL statements in one transaction (SQLite DDL is transactional), logged as their text.
pub fn execute_ddl(conn: &Connection, statements: &[String]) -> Result<(), StorageError> {
    execute_ddl_shipped(conn, statements, &no_ship)
}

/// `execute_ddl` whose log entry goes through `ship` before COMMIT.
pub fn execute_ddl_shipped(conn: &Connection, statements: &[String], ship: Ship<'_>) -> Result<(), StorageError> {
    log::in_transaction(conn, || {
        if let Some(entry) = run_ddl(conn, statements)? {
            ship(&entry)?;
        }
        Ok(())
    })
}

/// Creates a new partition's identity row and its schema in one transaction, so a file with an identity always has
/// its schema. The identity is not logged (a copy gets its own); the schema is the log's first entry, so replaying
/// the whole log on an empty partition rebuilds it.
/// When a commit is acknowledged: `Sync` after the WAL is fsynced (survives power loss, SQLite's
/// `synchronous=FULL`), `Async` once the WAL write reached the operating system (survives a process kill but not a
/// power loss, `synchronous=NORMAL`; the WAL is synced at checkpoints). Chosen per database with
/// `CREATE DATABASE ... WITH {SYNC|ASYNC} DURABILITY`, stored in the file (`_canopy_settings`) so a restart and a
/// copy keep it.
/// (`Durability` itself is `canopy_types::Durability`, the one type the metadata and the messages use too.)
pub use canopy_types::Durability;

/// SQLite's `synchronous` setting for a durability.
fn pragma(durability: Durability) -> &'static str {
    match durability {
        Durability::Sync => "FULL",
        Durability::Async => "NORMAL",
    }
}

/// Records `durability` in the file and applies it to `conn`.
pub fn set_durability(conn: &Connection, durability: Durability) -> Result<(), StorageError> {
    set_setting(conn, "durability", durability.as_str())?;
    conn.pragma_update(None, "synchronous", pragma(durability))?;
    Ok(())
}

/// Records which incarnation of the database this file belongs to (the metadata's database id): a database
/// dropped and re-created under the same name gets a new id, so a stale file is never taken for the new one.
pub fn set_database_id(conn: &Connection, id: canopy_types::DatabaseId) -> Result<(), StorageError> {
    set_setting(conn, "database_id", &id.0.to_string())
}

/// The database id recorded in the file, if any (files from before ids were recorded have none).
pub fn database_id(conn: &Connection) -> Result<Option<canopy_types::DatabaseId>, StorageError> {
    Ok(setting(conn, "database_id")?.and_then(|v| v.parse().ok()).map(canopy_types::DatabaseId))
}

/// Records which cluster this file belongs to (its cluster id): database ids start at 1 in every cluster, so
/// without it another cluster's `test` would pass for this one's.
pub fn set_cluster_id(conn: &Connection, cluster_id: &str) -> Result<(), StorageError> {
    set_setting(conn, "cluster_id", cluster_id)
}

/// The cluster id recorded in the file, if any (files from before it was recorded have none).
pub fn cluster_id(conn: &Connection) -> Result<Option<String>, StorageError> {
    setting(conn, "cluster_id")
}

fn set_setting(conn: &Connection, key: &str, value: &str) -> Result<(), StorageError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS _canopy_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")?;
    conn.execute(
        "INSERT INTO _canopy_settings VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

fn setting(conn: &Connection, key: &str) -> Result<Option<String>, StorageError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_canopy_settings')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    Ok(conn.query_row("SELECT value FROM _canopy_settings WHERE key = ?1", [key], |r| r.get(0)).ok())
}

/// Applies the durability recorded in the file, if any (files without one are `Sync`).
pub(crate) fn apply_stored_durability(conn: &Connection) -> Result<(), StorageError> {
    if setting(conn, "durability")?.as_deref() == Some("async") {
        conn.pragma_update(None, "synchronous", pragma(Durability::Async))?;
    }
    Ok(())
}

/// The synchronous level SQLite applies on `conn` (2 = FULL, 1 = NORMAL), for tests and diagnostics.
pub fn synchronous_level(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn.prepare_cached("PRAGMA main.synchronous")?.query_row([], |r| r.get(0))?)
}

pub fn create_partition(conn: &Connection, db: &str, ordinal: u32, schema: &[String]) -> Result<(), StorageError> {
    log::in_transaction(conn, || {
        conn.execute_batch("CREATE TABLE _canopy_partition (db TEXT NOT NULL, ordinal INTEGER NOT NULL)")?;
        conn.execute("INSERT INTO _canopy_partition VALUES (?1, ?2)", rusqlite::params![db, ordinal])?;
        run_ddl(conn, schema).map(|_| ())
    })
}

fn run_ddl(conn: &Connection, statements: &[String]) -> Result<Option<LogEntry>, StorageError> {
    for s in statements {
        conn.execute_batch(s)?;
    }
    record_commit(conn, Change::Ddl(statements))
}

fn read_rows(stmt: &mut rusqlite::CachedStatement<'_>) -> Result<ResultSet, StorageError> {
    use canopy_sql::value::{ReadError, ReadLimits, read_result_set};
    read_result_set(stmt, ReadLimits::RESULT).map_err(|e| match e {
        ReadError::Sqlite(e) => StorageError::Sqlite(e),
        ReadError::TooLarge(limits) => {
            StorageError::ResultTooLarge { rows_max: limits.rows_max, bytes_max: limits.bytes_max }
        }
        ReadError::Interrupted => interrupted(),
    })
}
