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
    fn ship(&self, db: &str, ordinal: u32, entry: &LogEntry) -> Result<(), StorageError> {
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
