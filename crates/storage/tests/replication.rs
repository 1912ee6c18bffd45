//! Replication's storage side on real SQLite files: a master's commits go through the `Replicator` before COMMIT
//! (a refusal rolls them back), a replica applies entries only in its master's term and refuses a fork, a deposed
//! master stops serving, and a returning copy counts as a prefix only with the master's last entry.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use canopy_storage::{Durability, LeafStore, LogEntry, Outcome, PartitionState, Replicator, StorageError};
use canopy_types::{DatabaseId, Term};

const DB: &str = "d";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canopy-storage-repl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn leaf(dir: &Path) -> Arc<LeafStore> {
    let store = LeafStore::open(dir).unwrap();
    let schema = vec!["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)".to_string()];
    store.create_partitions(DB, &[0], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
    Arc::new(store)
}

/// Ships every entry straight into another store's replica copy (what the server does over RPC), remembering them.
struct Direct {
    replica: Arc<LeafStore>,
    shipped: Mutex<Vec<LogEntry>>,
}

impl Replicator for Direct {
    fn ship(&self, db: &str, ordinal: u32, _: &rusqlite::Connection, entry: &LogEntry) -> Result<(), StorageError> {
        self.replica.apply_replicated(db, ordinal, entry.term, std::slice::from_ref(entry), true)?;
        self.shipped.lock().unwrap().push(entry.clone());
        Ok(())
    }
}

fn rows(store: &LeafStore) -> i64 {
    match store.inspect_partition(DB, 0, "SELECT COUNT(*) FROM t").unwrap() {
        Outcome::Rows(rs) => match rs.rows[0][0] {
            canopy_sql::Value::Integer(n) => n,
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// History: a master in term 5 with a replica in term 5; writes; the replica is promoted to term 6 (the old master
/// not told); the old master writes again; a forked entry is offered to the replica.
/// Property: every acknowledged write is on the replica before the master commits; the old master's write after
/// the promotion is refused and rolled back (it stays at its last acknowledged row count); an entry at an index
/// the replica holds with other contents is `Diverged`; a returning copy continues the master's log only with the
/// same last entry; truncation keeps the last entry.
#[test]
fn ship_then_commit_fences_a_deposed_master_and_refuses_forks() {
    let (a, b) = (temp_dir("master"), temp_dir("replica"));
    let master = leaf(&a);
    let replica = leaf(&b);
    master.set_term(DB, 0, Term(5)).unwrap();
    master.set_partition_state(DB, 0, PartitionState::Online).unwrap();
    replica.make_replica(DB, 0, Term(5)).unwrap();
    let direct = Arc::new(Direct { replica: replica.clone(), shipped: Mutex::new(Vec::new()) });
    master.set_replicator(direct.clone());
    let write = |id: i64| {
        master.execute_on_partition_in_term(DB, 0, Term(5), &format!("INSERT INTO t VALUES ({id}, 'x')"), &[])
    };
    for id in 1..=3 {
        write(id).unwrap();
    }
    assert_eq!(direct.shipped.lock().unwrap().len(), 3);
    assert_eq!(rows(&master), 3);
    assert!(
        matches!(replica.execute_on_partition(DB, 0, "SELECT 1"), Err(StorageError::NotOnline { .. })),
        "a replica serves nothing"
    );

    // The returning-copy test: the replica's last entry is the master's.
    let (last, _) = replica.log_end(DB, 0).unwrap();
    assert!(master.continues(DB, 0, last).unwrap());
    let forged = last.map(|(p, digest)| (p, digest ^ 1));
    assert!(!master.continues(DB, 0, forged).unwrap(), "same position, other contents: not a prefix");

    // A retried entry is skipped; the same index with other contents is a fork.
    let shipped = direct.shipped.lock().unwrap().clone();
    replica.apply_replicated(DB, 0, Term(5), &shipped, false).unwrap();
    let mut fork = shipped[2].clone();
    fork.payload = canopy_storage::LogPayload::Ddl("-- another entry".into());
    let index = fork.index;
    let forked = replica.apply_replicated(DB, 0, Term(5), &[fork], false);
    assert!(matches!(forked, Err(StorageError::Diverged { index: i, .. }) if i == index), "{forked:?}");

    // Promotion: the replica takes term 6; the old master's next commit is refused and rolled back.
    replica.promote(DB, 0, Term(6)).unwrap();
    let refused = write(4).unwrap_err();
    assert!(matches!(refused, StorageError::StaleTerm { .. }), "{refused}");
    assert_eq!(rows(&master), 3, "the refused write was rolled back on the old master");
    assert_eq!(rows(&replica), 3, "and never reached the new master");
    assert!(
        matches!(replica.apply_replicated(DB, 0, Term(5), &shipped, false), Err(StorageError::StaleTerm { .. })),
        "the new master takes no entries of the old term"
    );
    master.depose(DB, 0, Term(5)).unwrap();
    assert_eq!(master.partition_term(DB, 0).unwrap().1, PartitionState::Pending, "a deposed master serves nothing");

    // Truncation keeps the last entry (what a returning copy is compared by).
    replica.execute_on_partition_in_term(DB, 0, Term(6), "INSERT INTO t VALUES (10, 'y')", &[]).unwrap();
    let position = replica.log_position(DB, 0).unwrap();
    replica.checkpoint_partition(DB, 0, position.index).unwrap();
    let (last, end) = replica.log_end(DB, 0).unwrap();
    assert_eq!(last.map(|(p, _)| p), Some(position));
    assert_eq!(end, position);
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// The SQLite file of `d:0` under a leaf's directory.
fn partition_file(dir: &Path) -> PathBuf {
    dir.join("partitions").join(format!("{DB}_0.sqlite"))
}

/// Rows of `t` read straight from the replica's file on a connection of its own: what the copy has applied, not
/// what it holds.
fn applied_rows(dir: &Path) -> i64 {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(partition_file(dir), flags).unwrap();
    conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap()
}

/// Runs `sql` on the replica's file behind the log's back (the copy then differs from its master).
fn behind_the_log(dir: &Path, sql: &str) {
    rusqlite::Connection::open(partition_file(dir)).unwrap().execute(sql, []).unwrap();
}

/// The held-entry histories: a master (in `<name>-master`) whose `writes` inserts are collected, not shipped, and a
/// replica copy of it in term 3 (in `<name>-replica`) that has applied none of them.
fn master_and_replica(name: &str, writes: i64) -> (PathBuf, PathBuf, Vec<LogEntry>, Arc<LeafStore>) {
    let (a, b) = (temp_dir(&format!("{name}-master")), temp_dir(&format!("{name}-replica")));
    let entries = master_entries(&a, writes);
    let replica = leaf(&b);
    replica.make_replica(DB, 0, Term(3)).unwrap();
    (a, b, entries, replica)
}

/// A master in term 3 (its writes collected, not shipped) and a replica copy in term 3 that has applied nothing.
fn master_entries(dir: &Path, writes: i64) -> Vec<LogEntry> {
    let master = leaf(dir);
    master.set_term(DB, 0, Term(3)).unwrap();
    master.set_partition_state(DB, 0, PartitionState::Online).unwrap();
    let before = master.log_position(DB, 0).unwrap().index;
    for id in 1..=writes {
        master.execute_on_partition(DB, 0, &format!("INSERT INTO t VALUES ({id}, 'x')")).unwrap();
    }
    let mut entries = Vec::new();
    while entries.len() < writes as usize {
        let after = entries.last().map(|e: &LogEntry| e.index).unwrap_or(before);
        entries.extend(master.log_since(DB, 0, after, 1 << 20).unwrap());
    }
    entries
}

/// A replica acknowledges entries it holds and applies them later, together: nothing is in its file right after
/// the acknowledgement; the applier puts them there by itself within a deadline; and anything that uses the copy
/// (its log end, a promotion) sees every acknowledged entry even when the applier has not run yet.
#[test]
fn a_replica_holds_acknowledged_entries_and_applies_them_before_any_use() {
    let (a, b, entries, replica) = master_and_replica("held", 10);
    let base = replica.log_position(DB, 0).unwrap().index;
    assert_eq!(entries[0].index, base + 1, "the replica starts where the master's writes start");
    for entry in &entries[..5] {
        let position = replica.apply_replicated(DB, 0, Term(3), std::slice::from_ref(entry), true).unwrap();
        assert_eq!(position.index, entry.index, "acknowledged up to the entry");
    }
    assert_eq!(applied_rows(&b), 0, "held, not applied yet");
    // The applier applies them by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while applied_rows(&b) < 5 {
        assert!(std::time::Instant::now() < deadline, "the held entries were never applied");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The rest are held again; the log end and the promotion see them.
    replica.apply_replicated(DB, 0, Term(3), &entries[5..], true).unwrap();
    let (last, position) = replica.log_end(DB, 0).unwrap();
    assert_eq!(position.index, entries[9].index);
    assert_eq!(last.map(|(p, _)| p.index), Some(entries[9].index));
    replica.promote(DB, 0, Term(4)).unwrap();
    assert_eq!(rows(&replica), 10, "the promoted copy serves every acknowledged write");
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// Held entries keep the log's rules: a retried batch is skipped (the same entries) or refused as diverged (other
/// contents), a gap after what is held is refused, and an entry of another master's term is refused.
#[test]
fn held_entries_keep_order_retries_and_terms() {
    let (a, b, entries, replica) = master_and_replica("rules", 6);
    replica.apply_replicated(DB, 0, Term(3), &entries[..3], true).unwrap();
    // A retry of what is held: skipped.
    let position = replica.apply_replicated(DB, 0, Term(3), &entries[1..3], true).unwrap();
    assert_eq!(position.index, entries[2].index);
    // A gap after the held entries.
    let gap = replica.apply_replicated(DB, 0, Term(3), &entries[4..5], true).unwrap_err();
    assert!(
        matches!(gap, StorageError::LogGap { expected, found } if expected == entries[3].index && found == entries[4].index),
        "{gap:?}"
    );
    replica.apply_replicated(DB, 0, Term(3), &entries[3..5], true).unwrap();
    // Another payload at a held index: the copies diverged.
    let mut forked = entries[4].clone();
    forked.payload = canopy_storage::LogPayload::Ddl("CREATE TABLE forked (a INTEGER)".to_string());
    let diverged = replica.apply_replicated(DB, 0, Term(3), std::slice::from_ref(&forked), true).unwrap_err();
    assert!(matches!(diverged, StorageError::Diverged { .. }), "{diverged:?}");
    // A master of another term.
    let stale = replica.apply_replicated(DB, 0, Term(2), &entries[5..], true).unwrap_err();
    assert!(matches!(stale, StorageError::StaleTerm { .. }), "{stale:?}");
    replica.apply_replicated(DB, 0, Term(3), &entries[5..], true).unwrap();
    replica.promote(DB, 0, Term(4)).unwrap();
    assert_eq!(rows(&replica), 6);
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// A held entry that cannot be applied (the copy was changed behind the log's back: it diverged) fails every later
/// use of the copy, its promotion and further entries included: a copy missing an entry it acknowledged never
/// serves. Entries refused meanwhile are never held. Dropping the copy discards what it held.
#[test]
fn a_held_entry_that_cannot_be_applied_fails_the_copy_until_it_is_replaced() {
    let (a, b, entries, replica) = master_and_replica("broken", 3);
    // Row 2 exists on the replica already, outside the log: the master's insert of row 2 conflicts.
    behind_the_log(&b, "INSERT INTO t VALUES (2, 'planted')");
    replica.apply_replicated(DB, 0, Term(3), &entries[..2], true).unwrap();
    let promote = replica.promote(DB, 0, Term(4)).unwrap_err();
    assert!(matches!(promote, StorageError::HeldUnapplied(_)), "{promote:?}");
    assert!(replica.log_end(DB, 0).is_err(), "the log end of a copy missing acknowledged entries");
    let more = replica.apply_replicated(DB, 0, Term(3), &entries[2..], true).unwrap_err();
    assert!(matches!(more, StorageError::HeldUnapplied(_)), "{more:?}");
    // The leaf's listing still shows it, as its file stands.
    let listed = replica.list().unwrap();
    assert!(listed.iter().any(|d| d.ordinal == Some(0)), "{listed:?}");
    assert_eq!(applied_rows(&b), 1, "only the planted row");
    // Once the obstacle is gone the held entries apply, and only those: the refused entry was never held (its
    // master rolled it back), so it must not appear now.
    behind_the_log(&b, "DELETE FROM t WHERE id = 2");
    let (_, position) = replica.log_end(DB, 0).unwrap();
    assert_eq!(position.index, entries[1].index, "the held entries applied, the refused one not");
    assert_eq!(applied_rows(&b), 2);
    replica.drop_partition(DB, 0).unwrap();
    assert!(matches!(replica.log_end(DB, 0), Err(StorageError::NoSuchPartition { .. })));
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// A process kill while a replica holds acknowledged entries: the leaf's files as they are at that moment (copied
/// while the entries are held and not applied) are opened again.
/// Property: the reopened copy holds every acknowledged entry (its journal of held entries is replayed at open),
/// and its promotion serves them all.
#[test]
fn held_entries_survive_a_process_kill() {
    let (a, b, entries, replica) = master_and_replica("kill", 12);
    let copied = temp_dir("kill-copied");
    // Hold entries and copy the files before the applier runs (it waits 100 ms; retried if this was slower).
    let mut held_in_copy = false;
    for chunk in entries.chunks(3) {
        replica.apply_replicated(DB, 0, Term(3), chunk, true).unwrap();
        let _ = std::fs::remove_dir_all(&copied);
        std::fs::create_dir_all(copied.join("partitions")).unwrap();
        std::fs::create_dir_all(copied.join("reference")).unwrap();
        for dir in ["partitions", "reference"] {
            for file in std::fs::read_dir(b.join(dir)).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, copied.join(dir).join(file.file_name().unwrap())).unwrap();
            }
        }
        if applied_rows(&copied) == 0 {
            held_in_copy = true;
            break;
        }
        // The applier was quicker: everything so far is applied; hold the next entries.
    }
    assert!(held_in_copy, "entries were never caught held (the applier ran before every copy)");
    let journal = copied.join("partitions").join(format!("{DB}_0.sqlite-held"));
    assert!(std::fs::metadata(&journal).unwrap().len() > 0, "the held entries are in the journal");
    let acknowledged = replica.log_position(DB, 0).unwrap().index;
    drop(replica);
    let reopened = LeafStore::open(&copied).unwrap();
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0, "the journal is applied and emptied at open");
    assert_eq!(reopened.log_position(DB, 0).unwrap().index, acknowledged, "every acknowledged entry is there");
    reopened.make_replica(DB, 0, Term(3)).unwrap();
    reopened.promote(DB, 0, Term(4)).unwrap();
    assert_eq!(rows(&reopened), (acknowledged - entries[0].index + 1) as i64);
    for dir in [&a, &b, &copied] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
