//! Partition moves end to end on real SQLite files: change log, snapshot while writes continue, install elsewhere,
//! catch up from the log, and the crash, idempotence, gap, state and corruption cases around them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use canopy_storage::{
    Durability, LeafStore, LogEntry, LogPayload, LogPosition, Outcome, PartitionSnapshot, PartitionState, StorageError,
};
use canopy_types::{DatabaseId, Term};
use proptest::prelude::*;
use rusqlite::{Connection, OpenFlags};

const DB: &str = "d";
const CATCH_UP_BYTES: u64 = 16 << 10;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canopy-storage-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn schema() -> Vec<String> {
    vec![
        "CREATE TABLE t (id INTEGER NOT NULL, v TEXT, PRIMARY KEY (id))".to_string(),
        "CREATE TABLE nokey (a INTEGER, b TEXT)".to_string(),
    ]
}

/// A leaf with partition `d:0` (Online) and `d`'s reference copy.
fn source(dir: &Path) -> LeafStore {
    let store = LeafStore::open(dir).unwrap();
    store.create_partitions(DB, &[0], &schema(), &[], Durability::Sync, DatabaseId(1)).unwrap();
    store
}

/// A leaf holding only `d`'s reference copy, ready to receive a partition.
fn target(dir: &Path) -> LeafStore {
    let store = LeafStore::open(dir).unwrap();
    store.create_partitions(DB, &[], &[], &[], Durability::Sync, DatabaseId(1)).unwrap();
    store
}

/// The integers 1..=n as a subquery with one column, `value`.
fn series(n: u32) -> String {
    format!(
        "(WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < {n}) SELECT value FROM s)"
    )
}

fn exec(store: &LeafStore, sql: &str) -> Outcome {
    store.execute_on_partition(DB, 0, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every user table and index definition and every row (with rowids where they are the key), read straight from the file so any state
/// can be inspected.
fn dump(root: &Path, ordinal: u32) -> Vec<String> {
    let path = root.join("partitions").join(format!("{DB}_{ordinal}.sqlite"));
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut out = Vec::new();
    let objects: Vec<(String, String, Option<String>)> = conn
        .prepare(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '\\_canopy\\_%' ESCAPE '\\' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (kind, name, sql) in objects {
        out.push(format!("{kind} {name}: {sql:?}"));
        if kind == "table" && !name.starts_with("sqlite_") {
            // A table without a primary key is keyed by its rowid (changesets carry it), so rowids must match;
            // a keyed table's hidden rowid is not data and may differ between copies.
            let keyed: bool = conn
                .query_row(&format!("SELECT count(*) > 0 FROM pragma_table_info('{name}') WHERE pk > 0"), [], |r| {
                    r.get(0)
                })
                .unwrap();
            let sql = if keyed {
                format!("SELECT * FROM \"{name}\" ORDER BY 1, 2")
            } else {
                format!("SELECT rowid, * FROM \"{name}\" ORDER BY rowid")
            };
            let mut stmt = conn.prepare(&sql).unwrap();
            let width = stmt.column_count();
            let rows: Vec<String> = stmt
                .query_map([], |r| {
                    let values: Vec<String> = (0..width).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect();
                    Ok(format!("  {name}: {}", values.join(", ")))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            out.extend(rows);
        }
    }
    out
}

/// Panics with only the lines that differ (a full dump is too long to read).
fn assert_same(copy: &[String], source: &[String]) {
    if copy != source {
        let only_copy: Vec<&String> = copy.iter().filter(|l| !source.contains(l)).take(10).collect();
        let only_source: Vec<&String> = source.iter().filter(|l| !copy.contains(l)).take(10).collect();
        panic!("copy differs from source\nonly in copy: {only_copy:#?}\nonly in source: {only_source:#?}");
    }
}

/// Sends snapshot `snap` from `from` to `to` in chunks of `chunk_bytes`, as a move would over RPC.
fn transfer(from: &LeafStore, to: &LeafStore, snap: &PartitionSnapshot, chunk_bytes: u32) -> LogPosition {
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    loop {
        let chunk = from.read_snapshot_chunk(snap.id, offset, chunk_bytes).unwrap();
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        chunks.push(chunk);
    }
    assert_eq!(offset, snap.size_bytes);
    from.release_snapshot(snap.id).unwrap();
    to.install_partition(&snap.db, snap.ordinal, chunks).unwrap()
}

/// Applies the source's log after `position` to the copy in bounded batches until both positions agree.
fn catch_up(from: &LeafStore, to: &LeafStore, mut position: LogPosition) -> LogPosition {
    loop {
        let entries = from.log_since(DB, 0, position.index, CATCH_UP_BYTES).unwrap();
        if entries.is_empty() {
            return position;
        }
        position = to.apply_log(DB, 0, &entries).unwrap();
    }
}

fn wait_for_index(store: &LeafStore, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.log_position(DB, 0).unwrap().index < index {
        assert!(Instant::now() < deadline, "writer made no progress");
        std::thread::yield_now();
    }
}

/// One step of the background writer: a mix of multi-row inserts, updates and deletes on both tables.
fn write_step(store: &LeafStore, i: i64) {
    let sql = match i % 4 {
        0 => format!("INSERT INTO t VALUES ({}, 'w{i}'), ({}, 'x{i}')", 1000 + 2 * i, 1001 + 2 * i),
        1 => format!("UPDATE t SET v = v || '+' WHERE id % 7 = {}", i % 7),
        2 => format!("INSERT INTO nokey VALUES ({i}, 'n{i}')"),
        _ => format!("DELETE FROM nokey WHERE a = {}", i - 5),
    };
    exec(store, &sql);
}

/// History: rows on A; a writer thread keeps writing while A is snapshotted; more writes, then DDL (an index, a new
/// table with rows); the snapshot is installed as a replica on leaf B and caught up from A's log in small batches.
/// Property: B's tables, indexes and rows equal A's exactly, the positions are equal, and B's log holds the same
/// entries after the snapshot, so B can itself be a source.
#[test]
fn snapshot_during_writes_then_catch_up_reproduces_the_source() {
    let (dir_a, dir_b) = (temp_dir("move-a"), temp_dir("move-b"));
    let a = Arc::new(source(&dir_a));
    let b = target(&dir_b);
    exec(&a, &format!("INSERT INTO t SELECT value, 'v' || value FROM {}", series(500)));
    exec(&a, &format!("INSERT INTO nokey SELECT value, 'n' || value FROM {}", series(100)));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                write_step(&a, i);
                i += 1;
            }
        })
    };
    let start = a.log_position(DB, 0).unwrap().index;
    wait_for_index(&a, start + 20);
    let snap = a.snapshot_partition(DB, 0).unwrap();
    wait_for_index(&a, snap.position.index + 20);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(snap.position.index >= start + 20, "the snapshot was taken while the writer ran");

    a.ddl_on_partition(DB, 0, &["CREATE INDEX t_v ON t (v)".to_string()]).unwrap();
    a.ddl_on_partition(DB, 0, &["CREATE TABLE u (k TEXT NOT NULL PRIMARY KEY, n REAL) -- trailing".to_string()])
        .unwrap();
    exec(&a, "INSERT INTO u VALUES ('a', 1.5), ('b', NULL)");
    exec(&a, "DELETE FROM t WHERE id < 50");

    let installed = transfer(&a, &b, &snap, 64 << 10);
    assert_eq!(installed, snap.position);
    assert_eq!(b.list().unwrap().iter().find(|d| d.ordinal == Some(0)).unwrap().state, PartitionState::Replica);
    let caught_up = catch_up(&a, &b, snap.position);

    assert_eq!(caught_up, a.log_position(DB, 0).unwrap());
    assert_eq!(b.log_position(DB, 0).unwrap(), caught_up);
    assert_same(&dump(&dir_b, 0), &dump(&dir_a, 0));
    let a_log = a.log_since(DB, 0, snap.position.index, u64::MAX).unwrap();
    assert_eq!(b.log_since(DB, 0, snap.position.index, u64::MAX).unwrap(), a_log);
    assert!(a_log.iter().any(|e| matches!(&e.payload, LogPayload::Ddl(t) if t.contains("CREATE INDEX"))));

    // At the switch the copy goes online and serves.
    b.set_partition_state(DB, 0, PartitionState::Online).unwrap();
    assert_eq!(
        b.execute_on_partition(DB, 0, "SELECT n FROM u WHERE k = 'a'").unwrap(),
        a.execute_on_partition(DB, 0, "SELECT n FROM u WHERE k = 'a'").unwrap()
    );
    for dir in [dir_a, dir_b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// History: A has entries 1..n after a snapshot position p; B is installed at p. Property: applying a prefix, then
/// the whole batch again, skips what is applied (same result as once); a batch starting past B's position is a gap;
/// only a replica takes entries; a diverged replica aborts on the conflicting changeset and applies nothing of the
/// batch.
#[test]
fn apply_log_is_idempotent_refuses_gaps_and_aborts_on_conflicts() {
    let (dir_a, dir_b) = (temp_dir("idem-a"), temp_dir("idem-b"));
    let (a, b) = (source(&dir_a), target(&dir_b));
    exec(&a, "INSERT INTO t VALUES (1, 'one')");
    let snap = a.snapshot_partition(DB, 0).unwrap();
    for i in 2..=6 {
        exec(&a, &format!("INSERT INTO t VALUES ({i}, 'v{i}')"));
    }
    let p = transfer(&a, &b, &snap, 4 << 20);
    let entries = a.log_since(DB, 0, p.index, u64::MAX).unwrap();
    assert_eq!(entries.len(), 5);

    let gap = b.apply_log(DB, 0, &entries[1..]).unwrap_err();
    assert!(matches!(gap, StorageError::LogGap { expected, found } if expected == p.index + 1 && found == p.index + 2));
    assert_eq!(b.apply_log(DB, 0, &entries[..2]).unwrap().index, p.index + 2);
    assert_eq!(b.apply_log(DB, 0, &entries).unwrap(), a.log_position(DB, 0).unwrap());
    assert_eq!(b.apply_log(DB, 0, &entries).unwrap(), a.log_position(DB, 0).unwrap(), "a replayed batch is a no-op");
    assert_same(&dump(&dir_b, 0), &dump(&dir_a, 0));

    let online = a.apply_log(DB, 0, &entries).unwrap_err();
    assert!(matches!(online, StorageError::NotReplica { state: PartitionState::Online, .. }), "{online}");

    // Diverge B, then send it an insert of the same key.
    b.set_partition_state(DB, 0, PartitionState::Online).unwrap();
    exec(&b, "INSERT INTO t VALUES (7, 'diverged')");
    b.set_partition_state(DB, 0, PartitionState::Replica).unwrap();
    let before = b.log_position(DB, 0).unwrap();
    exec(&a, "INSERT INTO t VALUES (8, 'fine')");
    exec(&a, "INSERT INTO t VALUES (7, 'seven')");
    let more = a.log_since(DB, 0, before.index - 1, u64::MAX).unwrap();
    let more: Vec<LogEntry> = more.into_iter().filter(|e| e.index > before.index).collect();
    let err = b.apply_log(DB, 0, &more).unwrap_err();
    assert!(matches!(err, StorageError::ApplyConflict(_)), "{err}");
    assert_eq!(b.log_position(DB, 0).unwrap(), before, "the failed batch left nothing behind");
    for dir in [dir_a, dir_b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// History: a partition is Online, then set Replica, then Pending. Property: only Online serves reads, writes and
/// DDL; the refusal names the state; list() shows the state; a dropped partition is gone, and dropping twice is
/// harmless.
#[test]
fn only_online_partitions_serve() {
    let dir = temp_dir("states");
    let a = source(&dir);
    exec(&a, "SELECT 1");
    for state in [PartitionState::Replica, PartitionState::Pending] {
        a.set_partition_state(DB, 0, state).unwrap();
        for sql in ["SELECT * FROM t", "INSERT INTO t VALUES (1, 'x')"] {
            let err = a.execute_on_partition(DB, 0, sql).unwrap_err();
            assert!(matches!(err, StorageError::NotOnline { state: s, .. } if s == state), "{err}");
        }
        assert!(a.ddl_on_partition(DB, 0, &["CREATE TABLE z (a INTEGER)".into()]).is_err());
        let listed = a.list().unwrap().into_iter().find(|d| d.ordinal == Some(0)).unwrap();
        assert_eq!(listed.state, state);
    }
    assert_eq!(PartitionState::Replica.as_str(), "replicating");
    assert!(matches!(
        a.set_partition_state(DB, 9, PartitionState::Online),
        Err(StorageError::NoSuchPartition { ordinal: 9, .. })
    ));
    a.drop_partition(DB, 0).unwrap();
    a.drop_partition(DB, 0).unwrap();
    assert!(matches!(a.execute_on_partition(DB, 0, "SELECT 1"), Err(StorageError::NoSuchPartition { .. })));
    assert!(!dir.join("partitions").join(format!("{DB}_0.sqlite")).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// History: a snapshot of d:0 is installed truncated, with a damaged page, under the wrong ordinal, and as garbage;
/// then an interrupted install is simulated by leaving a complete copy under the temporary name. Property: every
/// install fails with BadSnapshot, no partition appears (not in list(), not after reopen), and the temporary file is
/// gone after reopen.
#[test]
fn bad_snapshots_are_refused_and_leave_nothing_live() {
    let (dir_a, dir_b) = (temp_dir("bad-a"), temp_dir("bad-b"));
    let a = source(&dir_a);
    exec(&a, &format!("INSERT INTO t SELECT value, hex(randomblob(200)) FROM {}", series(2000)));
    let snap = a.snapshot_partition(DB, 0).unwrap();
    let bytes = a.read_snapshot_chunk(snap.id, 0, 4 << 20).unwrap();
    assert_eq!(bytes.len() as u64, snap.size_bytes, "the whole copy fits one chunk here");
    assert!(a.read_snapshot_chunk(snap.id, 0, u32::MAX).unwrap().len() <= 4 << 20, "chunks are bounded");
    let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));

    let b = target(&dir_b);
    let truncated = &bytes[..bytes.len() - page_size];
    let mut damaged = bytes.clone();
    damaged[page_size..2 * page_size].fill(0xA5);
    for (what, ordinal, data) in [
        ("truncated", 0, truncated.to_vec()),
        ("damaged", 0, damaged),
        ("wrong ordinal", 1, bytes.clone()),
        ("garbage", 0, vec![7u8; 8192]),
        ("empty", 0, Vec::new()),
    ] {
        let err = b.install_partition(DB, ordinal, [data]).unwrap_err();
        assert!(matches!(err, StorageError::BadSnapshot(_)), "{what}: {err}");
        assert!(b.list().unwrap().iter().all(|d| d.ordinal.is_none()), "{what}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir_b.join("partitions")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A crash after writing the temporary file but before the rename.
    std::fs::write(dir_b.join("partitions").join(format!("{DB}_0.sqlite.installing")), &bytes).unwrap();
    drop(b);
    let b = LeafStore::open(&dir_b).unwrap();
    assert!(b.list().unwrap().iter().all(|d| d.ordinal.is_none()));
    assert_eq!(std::fs::read_dir(dir_b.join("partitions")).unwrap().count(), 0);

    // The intact copy installs, and installing it twice is refused.
    assert_eq!(b.install_partition(DB, 0, [&bytes]).unwrap(), snap.position);
    assert!(matches!(b.install_partition(DB, 0, [&bytes]), Err(StorageError::PartitionExists { .. })));
    assert_same(&dump(&dir_b, 0), &dump(&dir_a, 0));
    a.release_snapshot(snap.id).unwrap();
    assert!(matches!(a.read_snapshot_chunk(snap.id, 0, 10), Err(StorageError::NoSuchSnapshot(_))));
    for dir in [dir_a, dir_b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// History: writes in term 0, set_term(3), more writes, checkpoint keeping entries after index k. Property: entries
/// carry their term, terms never go back, the log before k+1 is gone (a copy that old must take a new snapshot) while
/// the position and the later entries remain, and a constraint failure appends nothing.
#[test]
fn terms_checkpoints_and_failed_writes() {
    let dir = temp_dir("terms");
    let a = source(&dir);
    exec(&a, "INSERT INTO t VALUES (1, 'a')");
    a.set_term(DB, 0, Term(3)).unwrap();
    assert!(matches!(
        a.set_term(DB, 0, Term(2)),
        Err(StorageError::StaleTerm { current: Term(3), requested: Term(2) })
    ));
    exec(&a, "INSERT INTO t VALUES (2, 'b')");
    let before = a.log_position(DB, 0).unwrap();
    assert_eq!(before, LogPosition { term: Term(3), index: 3 }, "schema, two inserts");
    assert!(a.execute_on_partition(DB, 0, "INSERT INTO t VALUES (3, 'c'), (1, 'dup')").unwrap_err().is_constraint());
    exec(&a, "UPDATE t SET v = 'none' WHERE id = 99");
    assert_eq!(a.log_position(DB, 0).unwrap(), before, "failed or empty writes append nothing");
    let terms: Vec<u64> = a.log_since(DB, 0, 0, u64::MAX).unwrap().iter().map(|e| e.term.0).collect();
    assert_eq!(terms, [0, 0, 3]);

    a.checkpoint_partition(DB, 0, 2).unwrap();
    assert!(matches!(a.log_since(DB, 0, 1, u64::MAX), Err(StorageError::LogTruncated { first_available: 3, .. })));
    assert_eq!(a.log_since(DB, 0, 2, u64::MAX).unwrap().len(), 1);
    assert!(a.log_since(DB, 0, 3, u64::MAX).unwrap().is_empty());
    assert_eq!(a.log_position(DB, 0).unwrap(), before);
    let wal = std::fs::metadata(dir.join("partitions").join(format!("{DB}_0.sqlite-wal"))).unwrap();
    assert_eq!(wal.len(), 0, "the WAL was truncated");
    let _ = std::fs::remove_dir_all(&dir);
}

/// History: a partition is created, given term 5, and the leaf restarts. Property: a request is accepted only in the
/// copy's own term, before and after the restart (the term is read back from the file), and a refusal names both.
#[test]
fn requests_are_checked_against_the_copys_term() {
    let dir = temp_dir("check-term");
    let a = source(&dir);
    a.check_term(DB, 0, Term(0)).unwrap();
    a.set_term(DB, 0, Term(5)).unwrap();
    a.check_term(DB, 0, Term(5)).unwrap();
    for other in [Term(4), Term(6), Term(0)] {
        assert!(matches!(
            a.check_term(DB, 0, other),
            Err(StorageError::StaleTerm { current: Term(5), requested }) if requested == other
        ));
    }
    assert!(matches!(a.check_term(DB, 9, Term(5)), Err(StorageError::NoSuchPartition { .. })));
    drop(a);
    let reopened = LeafStore::open(&dir).unwrap();
    reopened.check_term(DB, 0, Term(5)).unwrap();
    assert!(reopened.check_term(DB, 0, Term(4)).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// History: a child process (this test binary, re-run) writes mixed DML and DDL to a partition as fast as it can and
/// is killed with SIGKILL mid-stream. Property: after reopening, the log and the data agree: replaying the whole log
/// on an empty partition reproduces the data exactly.
#[test]
fn log_and_data_agree_after_sigkill() {
    const CHILD_ENV: &str = "CANOPY_STORAGE_CRASH_CHILD_DIR";
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let store = source(Path::new(&dir));
        for i in 0.. {
            write_step(&store, i);
            if i % 50 == 0 {
                store.ddl_on_partition(DB, 0, &[format!("CREATE INDEX i{i} ON t (v)")]).unwrap();
            }
        }
        return;
    }
    let (dir, dir_copy) = (temp_dir("crash"), temp_dir("crash-copy"));
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "log_and_data_agree_after_sigkill", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, &dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let file = dir.join("partitions").join(format!("{DB}_0.sqlite"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let index = Connection::open_with_flags(&file, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("SELECT log_index FROM _canopy_log_position", [], |r| r.get::<_, i64>(0)));
        if matches!(index, Ok(i) if i >= 200) {
            break;
        }
        assert!(Instant::now() < deadline, "child made no progress: {index:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let a = LeafStore::open(&dir).unwrap();
    let copy = LeafStore::open(&dir_copy).unwrap();
    copy.create_partitions(DB, &[0], &[], &[], Durability::Sync, DatabaseId(1)).unwrap();
    copy.set_partition_state(DB, 0, PartitionState::Replica).unwrap();
    let mut position = LogPosition { term: Term(0), index: 0 };
    loop {
        let entries = a.log_since(DB, 0, position.index, CATCH_UP_BYTES).unwrap();
        if entries.is_empty() {
            break;
        }
        position = copy.apply_log(DB, 0, &entries).unwrap();
    }
    assert!(position.index >= 200);
    assert_eq!(position, a.log_position(DB, 0).unwrap());
    assert_same(&dump(&dir_copy, 0), &dump(&dir, 0));
    for dir in [dir, dir_copy] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(i64, String),
    Upsert(i64, String),
    Update(i64, String),
    Delete(i64),
    DeleteRange(i64, i64),
    InsertNoKey(i64),
    UpdateNoKey(i64),
    DeleteNoKey(i64),
    Snapshot,
}

impl Op {
    fn sql(&self) -> Option<String> {
        Some(match self {
            Op::Insert(k, v) => format!("INSERT INTO t VALUES ({k}, '{v}'), ({}, '{v}2')", k + 100),
            Op::Upsert(k, v) => format!("INSERT OR REPLACE INTO t VALUES ({k}, '{v}')"),
            Op::Update(k, v) => format!("UPDATE t SET v = '{v}', id = id + 1000 WHERE id = {k}"),
            Op::Delete(k) => format!("DELETE FROM t WHERE id = {k}"),
            Op::DeleteRange(lo, n) => format!("DELETE FROM t WHERE id BETWEEN {lo} AND {}", lo + n),
            Op::InsertNoKey(a) => format!("INSERT INTO nokey VALUES ({a}, NULL)"),
            Op::UpdateNoKey(a) => format!("UPDATE nokey SET b = coalesce(b, '') || 'u' WHERE a = {a}"),
            Op::DeleteNoKey(a) => format!("DELETE FROM nokey WHERE a = {a}"),
            Op::Snapshot => return None,
        })
    }
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0i64..20;
    let text = "[a-z]{0,6}";
    prop_oneof![
        (key.clone(), text).prop_map(|(k, v)| Op::Insert(k, v)),
        (key.clone(), text).prop_map(|(k, v)| Op::Upsert(k, v)),
        (key.clone(), text).prop_map(|(k, v)| Op::Update(k, v)),
        key.clone().prop_map(Op::Delete),
        (key.clone(), 0i64..10).prop_map(|(lo, n)| Op::DeleteRange(lo, n)),
        key.clone().prop_map(Op::InsertNoKey),
        key.clone().prop_map(Op::UpdateNoKey),
        key.prop_map(Op::DeleteNoKey),
        Just(Op::Snapshot),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// History: a random sequence of inserts (some failing on duplicate keys), upserts, key-changing updates and
    /// deletes on a keyed table and a table without a key; the partition is snapshotted at the first `Snapshot` op
    /// (or at the start). Property: the snapshot installed elsewhere plus the log after it ends equal to the source.
    #[test]
    fn snapshot_plus_log_equals_source(ops in proptest::collection::vec(op(), 1..40)) {
        let (dir_a, dir_b) = (temp_dir("prop-a"), temp_dir("prop-b"));
        let (a, b) = (source(&dir_a), target(&dir_b));
        let mut snap = None;
        for op in &ops {
            match op.sql() {
                Some(sql) => {
                    if let Err(e) = a.execute_on_partition(DB, 0, &sql) {
                        prop_assert!(e.is_constraint(), "{sql}: {e}");
                    }
                }
                None if snap.is_none() => snap = Some(a.snapshot_partition(DB, 0).unwrap()),
                None => {}
            }
        }
        let snap = match snap {
            Some(s) => s,
            None => a.snapshot_partition(DB, 0).unwrap(),
        };
        let position = catch_up(&a, &b, transfer(&a, &b, &snap, 8192));
        prop_assert_eq!(position, a.log_position(DB, 0).unwrap());
        prop_assert_eq!(dump(&dir_b, 0), dump(&dir_a, 0));
        for dir in [dir_a, dir_b] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
