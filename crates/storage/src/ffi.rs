//! The few functions of SQLite's session extension that the change log uses, declared here rather than through
//! rusqlite's `session` feature: that feature needs bindgen and so libclang, a system package a fresh machine lacks.
//! The bundled SQLite is compiled with `SQLITE_ENABLE_SESSION` and `SQLITE_ENABLE_PREUPDATE_HOOK` through
//! `LIBSQLITE3_FLAGS` in `.cargo/config.toml`; without those flags this module fails to link, never silently.
//!
//! Everything unsafe in the crate is in this file, behind two safe items: [`Session`] records the row changes made
//! on one connection's `main` database while it lives, and [`apply_changeset`] applies a changeset to a connection,
//! refusing one whose tables the connection lacks or has in another shape, and aborting on the first conflict. Internal tables (`_canopy_*`) and SQLite's own (`sqlite_*`) are never recorded.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use rusqlite::Connection;
use rusqlite::ffi::{self as sqlite, sqlite3};

use crate::StorageError;

/// SQLite's opaque `sqlite3_session`.
#[repr(C)]
struct RawSession {
    _opaque: [u8; 0],
}

/// SQLite's opaque `sqlite3_changegroup`.
#[repr(C)]
struct RawChangegroup {
    _opaque: [u8; 0],
}

/// SQLite's opaque `sqlite3_changeset_iter`.
#[repr(C)]
struct RawChangesetIter {
    _opaque: [u8; 0],
}

type TableFilter = unsafe extern "C" fn(ctx: *mut c_void, table: *const c_char) -> c_int;
type ConflictHandler = unsafe extern "C" fn(ctx: *mut c_void, conflict: c_int, iter: *mut c_void) -> c_int;

/// From sqlite3.h: tables without an explicit PRIMARY KEY are recorded as if keyed by their rowid.
const SQLITE_SESSION_OBJCONFIG_ROWID: c_int = 2;
/// From sqlite3.h: the conflict handler's answer that aborts the whole apply (it then returns `SQLITE_ABORT`).
const SQLITE_CHANGESET_ABORT: c_int = 2;

// The signatures are those of sqlite3.h (SQLite 3.54, the version libsqlite3-sys bundles).
unsafe extern "C" {
    fn sqlite3session_create(db: *mut sqlite3, db_name: *const c_char, session: *mut *mut RawSession) -> c_int;
    fn sqlite3session_delete(session: *mut RawSession);
    fn sqlite3session_object_config(session: *mut RawSession, op: c_int, arg: *mut c_void) -> c_int;
    fn sqlite3session_attach(session: *mut RawSession, table: *const c_char) -> c_int;
    fn sqlite3session_table_filter(session: *mut RawSession, filter: Option<TableFilter>, ctx: *mut c_void);
    fn sqlite3session_changeset(session: *mut RawSession, size: *mut c_int, changeset: *mut *mut c_void) -> c_int;
    fn sqlite3changeset_apply(
        db: *mut sqlite3,
        size: c_int,
        changeset: *mut c_void,
        filter: Option<TableFilter>,
        conflict: Option<ConflictHandler>,
        ctx: *mut c_void,
    ) -> c_int;
    fn sqlite3changeset_start(iter: *mut *mut RawChangesetIter, size: c_int, changeset: *mut c_void) -> c_int;
    fn sqlite3changeset_next(iter: *mut RawChangesetIter) -> c_int;
    fn sqlite3changeset_op(
        iter: *mut RawChangesetIter,
        table: *mut *const c_char,
        columns: *mut c_int,
        op: *mut c_int,
        indirect: *mut c_int,
    ) -> c_int;
    fn sqlite3changeset_pk(iter: *mut RawChangesetIter, pk: *mut *mut u8, columns: *mut c_int) -> c_int;
    fn sqlite3changeset_finalize(iter: *mut RawChangesetIter) -> c_int;
    fn sqlite3changegroup_new(group: *mut *mut RawChangegroup) -> c_int;
    fn sqlite3changegroup_add(group: *mut RawChangegroup, size: c_int, changeset: *mut c_void) -> c_int;
    fn sqlite3changegroup_output(group: *mut RawChangegroup, size: *mut c_int, changeset: *mut *mut c_void) -> c_int;
    fn sqlite3changegroup_delete(group: *mut RawChangegroup);
}

/// True for a table whose row changes belong in the change log: user tables, not Canopy's bookkeeping
/// (`_canopy_log` would otherwise record itself) nor SQLite's own (`sqlite_sequence` is maintained by each copy).
pub fn is_logged_table(name: &[u8]) -> bool {
    !name.starts_with(canopy_sql::ddl::INTERNAL_TABLE_PREFIX.as_bytes()) && !name.starts_with(b"sqlite_")
}

/// The session table filter: SQLite calls it once per table the first time the table is written in a session.
unsafe extern "C" fn filter_logged_tables(_ctx: *mut c_void, table: *const c_char) -> c_int {
    // SAFETY: SQLite passes the table name as a valid NUL-terminated string that lives for the duration of the call.
    let name = unsafe { CStr::from_ptr(table) };
    c_int::from(is_logged_table(name.to_bytes()))
}

fn failure(code: c_int, what: &str) -> StorageError {
    StorageError::Sqlite(rusqlite::Error::SqliteFailure(sqlite::Error::new(code), Some(what.to_string())))
}

/// A recording session on the `main` database of one connection. It borrows the connection, so it is always deleted
/// before the connection closes, as SQLite requires.
pub struct Session<'c> {
    raw: NonNull<RawSession>,
    _conn: PhantomData<&'c Connection>,
}

impl<'c> Session<'c> {
    /// Starts recording every row change to the logged tables of `main`, tables without a PRIMARY KEY included.
    pub fn start(conn: &'c Connection) -> Result<Session<'c>, StorageError> {
        let mut raw: *mut RawSession = ptr::null_mut();
        // SAFETY: `handle()` is the live database handle of `conn`, which outlives the session (the borrow 'c);
        // "main" is a NUL-terminated literal; `raw` is a valid out-pointer.
        let rc = unsafe { sqlite3session_create(conn.handle(), c"main".as_ptr(), &mut raw) };
        let raw = NonNull::new(raw).ok_or_else(|| failure(rc, "sqlite3session_create"))?;
        // From here on `Drop` deletes the session on every path.
        let session = Session { raw, _conn: PhantomData };
        if rc != sqlite::SQLITE_OK {
            return Err(failure(rc, "sqlite3session_create"));
        }
        let mut enable: c_int = 1;
        // SAFETY: the session is live and no table is attached yet (the option must be set before the first
        // attach); `enable` is a valid `int` for the duration of the call, as the option requires.
        let rc = unsafe {
            sqlite3session_object_config(
                session.raw.as_ptr(),
                SQLITE_SESSION_OBJCONFIG_ROWID,
                (&raw mut enable).cast::<c_void>(),
            )
        };
        if rc != sqlite::SQLITE_OK {
            return Err(failure(rc, "sqlite3session_object_config(ROWID)"));
        }
        // SAFETY: the session is live; the filter is a plain function that ignores its context, so a null context
        // is fine and nothing has to outlive the call.
        unsafe { sqlite3session_table_filter(session.raw.as_ptr(), Some(filter_logged_tables), ptr::null_mut()) };
        // SAFETY: the session is live; a null table name attaches every table (subject to the filter).
        let rc = unsafe { sqlite3session_attach(session.raw.as_ptr(), ptr::null()) };
        if rc != sqlite::SQLITE_OK {
            return Err(failure(rc, "sqlite3session_attach"));
        }
        Ok(session)
    }

    /// The changes recorded so far as a changeset; empty when nothing changed.
    pub fn changeset(&self) -> Result<Vec<u8>, StorageError> {
        let mut size: c_int = 0;
        let mut buffer: *mut c_void = ptr::null_mut();
        // SAFETY: the session is live; `size` and `buffer` are valid out-pointers.
        let rc = unsafe { sqlite3session_changeset(self.raw.as_ptr(), &mut size, &mut buffer) };
        // SAFETY: the out-parameters as the call left them.
        unsafe { take_output(rc, size, buffer, "sqlite3session_changeset") }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // SAFETY: the session was created by sqlite3session_create, is deleted exactly once here, and its connection
        // is still open (the session borrows it).
        unsafe { sqlite3session_delete(self.raw.as_ptr()) };
    }
}

/// The changeset a session or changegroup call returned through its out-parameters (`rc`, `size`, `buffer`), copied
/// into a `Vec` (empty when there was nothing), with the buffer freed.
///
/// # Safety
/// `buffer` is null or a buffer of `size` bytes that SQLite allocated for the caller to free, not used after this.
unsafe fn take_output(rc: c_int, size: c_int, buffer: *mut c_void, what: &str) -> Result<Vec<u8>, StorageError> {
    let bytes = if rc == sqlite::SQLITE_OK && !buffer.is_null() && size > 0 {
        // SAFETY: on success SQLite returns a buffer of exactly `size` bytes, copied before it is freed.
        unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), size as usize) }.to_vec()
    } else {
        Vec::new()
    };
    // SAFETY: the buffer (possibly null, which sqlite3_free accepts) was allocated by SQLite for us to free, once.
    unsafe { sqlite::sqlite3_free(buffer) };
    if rc != sqlite::SQLITE_OK {
        return Err(failure(rc, what));
    }
    Ok(bytes)
}

/// Several changesets, recorded one after another on one copy, as one changeset with the same effect
/// (`sqlite3changegroup`): each table's changes together, and successive changes to one row folded into one (an
/// insert then an update is the insert of the final row; an insert then a delete is nothing). Applying it costs one
/// set of prepared statements per table instead of one per changeset, which is most of a small changeset's cost.
pub fn combine_changesets<'a>(changesets: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, StorageError> {
    let mut raw: *mut RawChangegroup = ptr::null_mut();
    // SAFETY: `raw` is a valid out-pointer.
    let rc = unsafe { sqlite3changegroup_new(&mut raw) };
    if rc != sqlite::SQLITE_OK || raw.is_null() {
        return Err(failure(rc, "sqlite3changegroup_new"));
    }
    let combined = (|| {
        for changeset in changesets.into_iter().filter(|c| !c.is_empty()) {
            let size = c_int::try_from(changeset.len())
                .map_err(|_| StorageError::Internal(format!("changeset of {} bytes is too large", changeset.len())))?;
            // SAFETY: the group is live; SQLite only reads the buffer (copying what it keeps) during the call.
            let rc = unsafe { sqlite3changegroup_add(raw, size, changeset.as_ptr().cast_mut().cast::<c_void>()) };
            if rc != sqlite::SQLITE_OK {
                return Err(failure(rc, "sqlite3changegroup_add"));
            }
        }
        let mut size: c_int = 0;
        let mut buffer: *mut c_void = ptr::null_mut();
        // SAFETY: the group is live; `size` and `buffer` are valid out-pointers.
        let rc = unsafe { sqlite3changegroup_output(raw, &mut size, &mut buffer) };
        // SAFETY: the out-parameters as the call left them.
        unsafe { take_output(rc, size, buffer, "sqlite3changegroup_output") }
    })();
    // SAFETY: the group came from sqlite3changegroup_new and is deleted exactly once, here.
    unsafe { sqlite3changegroup_delete(raw) };
    combined
}

/// Why a changeset could not be applied to a faithful copy; any conflict means the copy diverged.
fn conflict_name(conflict: c_int) -> &'static str {
    match conflict {
        1 => "DATA (row to update or delete has other values)",
        2 => "NOTFOUND (row to update or delete is missing)",
        3 => "CONFLICT (row to insert already exists)",
        4 => "CONSTRAINT",
        5 => "FOREIGN_KEY",
        _ => "unknown",
    }
}

/// The conflict handler: remember the first conflict and abort. On a faithful copy there are no conflicts.
unsafe extern "C" fn abort_on_conflict(ctx: *mut c_void, conflict: c_int, _iter: *mut c_void) -> c_int {
    // SAFETY: `ctx` is the `&Cell<c_int>` that `apply_changeset` passed, alive for the whole apply call.
    let seen = unsafe { &*ctx.cast::<Cell<c_int>>() };
    if seen.get() == 0 {
        seen.set(conflict);
    }
    SQLITE_CHANGESET_ABORT
}

/// The shape of one table as a changeset records it: its name, its column count and, per column, 0 or the
/// column's position in the primary key (a table without one is recorded with the rowid as an extra first column).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableShape {
    name: String,
    pk: Vec<u8>,
}

/// The tables of a changeset with their shapes, in the order the changeset holds them (each once). Each change's
/// table name is read; the key flags only once per table.
fn changeset_tables(changeset: &[u8], size: c_int) -> Result<Vec<TableShape>, StorageError> {
    let mut raw: *mut RawChangesetIter = ptr::null_mut();
    // SAFETY: SQLite only reads the buffer, which outlives the iterator (finalized below, before returning); `raw`
    // is a valid out-pointer.
    let rc = unsafe { sqlite3changeset_start(&mut raw, size, changeset.as_ptr().cast_mut().cast::<c_void>()) };
    if rc != sqlite::SQLITE_OK || raw.is_null() {
        return Err(failure(rc, "sqlite3changeset_start"));
    }
    let mut tables: Vec<TableShape> = Vec::new();
    let walked = loop {
        // SAFETY: `raw` is a live iterator until the finalize below.
        let rc = unsafe { sqlite3changeset_next(raw) };
        if rc == sqlite::SQLITE_DONE {
            break Ok(());
        }
        if rc != sqlite::SQLITE_ROW {
            break Err(failure(rc, "sqlite3changeset_next"));
        }
        let (mut table, mut columns, mut op, mut indirect) = (ptr::null(), 0, 0, 0);
        // SAFETY: the iterator points at a change (SQLITE_ROW) and the out-pointers are valid.
        let rc = unsafe { sqlite3changeset_op(raw, &mut table, &mut columns, &mut op, &mut indirect) };
        if rc != sqlite::SQLITE_OK || table.is_null() {
            break Err(failure(rc, "sqlite3changeset_op"));
        }
        // SAFETY: SQLite returns a NUL-terminated name that lives until the next call on the iterator; it is
        // compared (and copied, for a new table) before that.
        let name = unsafe { CStr::from_ptr(table) };
        // A session changeset holds each table's changes together, so a table is new when the name changes.
        if tables.last().is_some_and(|t| t.name.as_bytes() == name.to_bytes()) {
            continue;
        }
        let mut pk: *mut u8 = ptr::null_mut();
        // SAFETY: as above; the key flags are `columns` bytes living until the next call, copied at once.
        let rc = unsafe { sqlite3changeset_pk(raw, &mut pk, ptr::null_mut()) };
        if rc != sqlite::SQLITE_OK || pk.is_null() {
            break Err(failure(rc, "sqlite3changeset_pk"));
        }
        // SAFETY: see above.
        let pk = unsafe { std::slice::from_raw_parts(pk, columns.max(0) as usize) }.to_vec();
        let name = name.to_string_lossy().into_owned();
        if !tables.iter().any(|t| t.name == name) {
            tables.push(TableShape { name, pk });
        }
    };
    // SAFETY: `raw` came from sqlite3changeset_start and is finalized exactly once, here.
    let rc = unsafe { sqlite3changeset_finalize(raw) };
    walked?;
    if rc != sqlite::SQLITE_OK {
        return Err(failure(rc, "sqlite3changeset_finalize"));
    }
    Ok(tables)
}

/// The shape `table` has in `conn`'s `main` database, the way the session extension sees it (hidden columns left
/// out; a table without a primary key gets the rowid as its first, key column). None when there is no such table.
fn local_shape(conn: &Connection, table: &str) -> Result<Option<Vec<u8>>, StorageError> {
    // Cached: this runs for every applied changeset, on a replica's hot path.
    let mut stmt = conn.prepare_cached("SELECT pk, hidden FROM pragma_table_xinfo(?1, 'main')")?;
    let columns: Vec<(i64, i64)> =
        stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let pk: Vec<u8> = columns.iter().filter(|(_, hidden)| *hidden == 0).map(|(pk, _)| *pk as u8).collect();
    if pk.is_empty() {
        return Ok(None);
    }
    if pk.iter().all(|&k| k == 0) {
        return Ok(Some(std::iter::once(1).chain(pk).collect()));
    }
    Ok(Some(pk))
}

/// Refuses a changeset whose tables the copy lacks or has in another shape. `sqlite3changeset_apply` skips, with
/// no more than a log line, the changes to a table that is missing or has fewer columns or another primary key, and
/// it maps a change onto a table with more columns (or a rowid table onto an INTEGER PRIMARY KEY one) column by
/// column. A copy replays its source's log in order, DDL included, so each change meets exactly the shape it was
/// recorded on; anything else means the copy diverged.
fn check_shapes(conn: &Connection, changeset: &[u8], size: c_int) -> Result<(), StorageError> {
    for shape in changeset_tables(changeset, size)? {
        let mismatch = |reason: String| StorageError::SchemaMismatch { table: shape.name.clone(), reason };
        let Some(local) = local_shape(conn, &shape.name)? else {
            return Err(mismatch("no such table on the copy".into()));
        };
        if local.len() != shape.pk.len() {
            return Err(mismatch(format!("the copy has {} columns, the change {}", local.len(), shape.pk.len())));
        }
        if local != shape.pk {
            return Err(mismatch("the primary key differs".into()));
        }
    }
    Ok(())
}

/// Applies `changeset` to the `main` database of `conn` (inside the caller's transaction, if any). A table the
/// copy lacks or has in another shape refuses the whole changeset (`SchemaMismatch`, nothing applied); the first
/// conflict aborts the apply, leaving the database as it was, and is reported as `ApplyConflict`.
pub fn apply_changeset(conn: &Connection, changeset: &[u8]) -> Result<(), StorageError> {
    if changeset.is_empty() {
        return Ok(());
    }
    let size = c_int::try_from(changeset.len())
        .map_err(|_| StorageError::Internal(format!("changeset of {} bytes is too large", changeset.len())))?;
    check_shapes(conn, changeset, size)?;
    let conflict = Cell::new(0 as c_int);
    // SAFETY: the handle is the live connection's; SQLite only reads the changeset buffer although the parameter is
    // not const, and `changeset` outlives the call; the filter is null (apply every table) and the conflict handler
    // gets `&conflict`, which outlives the call and is only used on this thread.
    let rc = unsafe {
        sqlite3changeset_apply(
            conn.handle(),
            size,
            changeset.as_ptr().cast_mut().cast::<c_void>(),
            None,
            Some(abort_on_conflict),
            (&raw const conflict).cast_mut().cast::<c_void>(),
        )
    };
    match (rc, conflict.get()) {
        (sqlite::SQLITE_OK, 0) => Ok(()),
        (_, 0) => Err(failure(rc, "sqlite3changeset_apply")),
        (_, kind) => Err(StorageError::ApplyConflict(conflict_name(kind).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(conn: &Connection, sql: &str) -> Vec<(i64, String)> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    }

    /// Changes to a keyed table, a table without a primary key and an internal table are recorded on one connection
    /// and applied on another: the user tables end equal, the internal table is not in the changeset.
    #[test]
    fn changesets_move_rows_between_connections() {
        let schema = "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT);
                      CREATE TABLE nokey (a INTEGER, v TEXT);
                      CREATE TABLE _canopy_x (a INTEGER PRIMARY KEY, v TEXT);";
        let source = Connection::open_in_memory().unwrap();
        let copy = Connection::open_in_memory().unwrap();
        source.execute_batch(schema).unwrap();
        copy.execute_batch(schema).unwrap();
        source.execute_batch("INSERT INTO nokey VALUES (1, 'kept'), (2, 'gone')").unwrap();
        copy.execute_batch("INSERT INTO nokey VALUES (1, 'kept'), (2, 'gone')").unwrap();

        let session = Session::start(&source).unwrap();
        assert!(session.changeset().unwrap().is_empty(), "nothing recorded yet");
        source
            .execute_batch(
                "INSERT INTO k VALUES (1, 'a'), (2, 'b'); UPDATE k SET v = 'c' WHERE id = 2;
                 DELETE FROM nokey WHERE a = 2; UPDATE nokey SET v = 'changed' WHERE a = 1;
                 INSERT INTO nokey VALUES (3, 'new'); INSERT INTO _canopy_x VALUES (1, 'internal');",
            )
            .unwrap();
        let changeset = session.changeset().unwrap();
        drop(session);
        assert!(!changeset.is_empty());

        apply_changeset(&copy, &changeset).unwrap();
        for sql in ["SELECT id, v FROM k ORDER BY 1", "SELECT a, v FROM nokey ORDER BY 1"] {
            assert_eq!(query(&source, sql), query(&copy, sql), "{sql}");
        }
        assert!(query(&copy, "SELECT a, v FROM _canopy_x").is_empty(), "internal tables are never recorded");
    }

    /// Applying the same insert twice conflicts: the second apply aborts with a typed error and changes nothing.
    #[test]
    fn conflicts_abort_the_apply() {
        let source = Connection::open_in_memory().unwrap();
        let copy = Connection::open_in_memory().unwrap();
        for c in [&source, &copy] {
            c.execute_batch("CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)").unwrap();
        }
        let session = Session::start(&source).unwrap();
        source.execute_batch("INSERT INTO k VALUES (1, 'a'), (2, 'b')").unwrap();
        let changeset = session.changeset().unwrap();
        drop(session);
        copy.execute_batch("INSERT INTO k VALUES (2, 'other')").unwrap();
        let err = apply_changeset(&copy, &changeset).unwrap_err();
        assert!(matches!(err, StorageError::ApplyConflict(ref k) if k.starts_with("CONFLICT")), "{err}");
        assert_eq!(query(&copy, "SELECT id, v FROM k"), vec![(2, "other".to_string())], "nothing applied");
        assert!(apply_changeset(&copy, &[]).is_ok(), "an empty changeset is a no-op");
        assert!(apply_changeset(&copy, b"garbage").is_err(), "a malformed changeset is refused");
    }

    /// Rows of two tables are recorded on the source; the copy lacks one table, or has it with another column count
    /// or another primary key. Property: the apply fails with `SchemaMismatch` naming the table, and the copy is
    /// unchanged (not even the table it does have received its rows).
    #[test]
    fn a_change_the_copy_schema_cannot_take_is_refused() {
        let source = Connection::open_in_memory().unwrap();
        source
            .execute_batch(
                "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);",
            )
            .unwrap();
        let session = Session::start(&source).unwrap();
        source.execute_batch("INSERT INTO k VALUES (1, 'a'); INSERT INTO t VALUES (2, 'b');").unwrap();
        let changeset = session.changeset().unwrap();
        drop(session);
        for copy_t in [
            "",
            "CREATE TABLE t (id INTEGER PRIMARY KEY);",
            "CREATE TABLE t (id INTEGER, v TEXT);",
            "CREATE TABLE t (id INTEGER, v TEXT, PRIMARY KEY (v, id));",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, w);",
        ] {
            let copy = Connection::open_in_memory().unwrap();
            copy.execute_batch(&format!("CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT); {copy_t}")).unwrap();
            let err = apply_changeset(&copy, &changeset).unwrap_err();
            assert!(matches!(err, StorageError::SchemaMismatch { ref table, .. } if table == "t"), "{copy_t}: {err}");
            assert!(query(&copy, "SELECT id, v FROM k").is_empty(), "{copy_t}: nothing applied");
        }
        // A copy with the same shape takes it.
        let copy = Connection::open_in_memory().unwrap();
        copy.execute_batch(
            "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
        apply_changeset(&copy, &changeset).unwrap();
        assert_eq!(query(&copy, "SELECT id, v FROM t"), vec![(2, "b".to_string())]);
    }

    /// A table without a primary key is recorded by rowid; a copy with the same table takes its changes.
    #[test]
    fn rowid_tables_pass_the_shape_check() {
        let source = Connection::open_in_memory().unwrap();
        let copy = Connection::open_in_memory().unwrap();
        for c in [&source, &copy] {
            c.execute_batch("CREATE TABLE nokey (a INTEGER, v TEXT)").unwrap();
        }
        let session = Session::start(&source).unwrap();
        source.execute_batch("INSERT INTO nokey VALUES (1, 'x')").unwrap();
        let changeset = session.changeset().unwrap();
        drop(session);
        apply_changeset(&copy, &changeset).unwrap();
        assert_eq!(query(&copy, "SELECT a, v FROM nokey"), vec![(1, "x".to_string())]);
        let other = Connection::open_in_memory().unwrap();
        other.execute_batch("CREATE TABLE nokey (a INTEGER PRIMARY KEY, v TEXT)").unwrap();
        assert!(matches!(apply_changeset(&other, &changeset), Err(StorageError::SchemaMismatch { .. })));
    }
}
