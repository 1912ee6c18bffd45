//! The set of SQLite files on one leaf: partition instances by (database, ordinal) and reference copies by
//! database. Calls block (SQLite is synchronous); the server runs them off its async threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::StorageError;
use crate::engine::{self, Outcome};

const REFERENCE_SCHEMA: &str = "canopy_ref";

type Shared = Arc<Mutex<Connection>>;

/// One database as this leaf holds it, for SHOW DATABASES EXTENDED.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalDb {
    pub db: String,
    /// `None` for the reference copy.
    pub ordinal: Option<u32>,
    pub term: u64,
    pub log_index: u64,
    pub commits: u64,
}

impl LocalDb {
    /// The name SingleStore shows for it: `db_k` for a partition, `db` for the reference copy.
    pub fn name(&self) -> String {
        match self.ordinal {
            Some(k) => format!("{}_{k}", self.db),
            None => self.db.clone(),
        }
    }
}

#[derive(Default)]
struct Open {
    partitions: BTreeMap<(String, u32), Shared>,
    references: BTreeMap<String, Shared>,
}

pub struct LeafStore {
    root: PathBuf,
    open: Mutex<Open>,
}

/// Database names become file names, so they are restricted to a safe alphabet.
pub fn check_name(db: &str) -> Result<(), StorageError> {
    let ok = !db.is_empty()
        && db.len() <= 64
        && db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '-');
    if ok { Ok(()) } else { Err(StorageError::BadName(db.to_string())) }
}

impl LeafStore {
    /// Opens every partition and reference file found under `root` (recovery after a restart is SQLite's own).
    pub fn open(root: &Path) -> Result<LeafStore, StorageError> {
        std::fs::create_dir_all(root.join("partitions"))?;
        std::fs::create_dir_all(root.join("reference"))?;
        let store = LeafStore { root: root.to_path_buf(), open: Mutex::new(Open::default()) };
        let mut open = Open::default();
        for entry in std::fs::read_dir(root.join("reference"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "sqlite")
                && let Some(db) = path.file_stem().and_then(|s| s.to_str())
            {
                let conn = engine::open(&path)?;
                conn.execute_batch(engine::LOG_POSITION_DDL)?;
                open.references.insert(db.to_string(), Arc::new(Mutex::new(conn)));
            }
        }
        for entry in std::fs::read_dir(root.join("partitions"))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "sqlite") {
                continue;
            }
            let conn = engine::open(&path)?;
            let identity: Option<(String, u32)> =
                conn.query_row("SELECT db, ordinal FROM _canopy_partition", [], |r| Ok((r.get(0)?, r.get(1)?))).ok();
            let Some((db, ordinal)) = identity else {
                tracing::warn!("ignoring {}: not a Canopy partition", path.display());
                continue;
            };
            store.attach_reference(&conn, &db)?;
            open.partitions.insert((db, ordinal), Arc::new(Mutex::new(conn)));
        }
        *store.lock()? = open;
        Ok(store)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Open>, StorageError> {
        self.open.lock().map_err(|_| StorageError::Internal("leaf store lock poisoned".into()))
    }

    fn partition_path(&self, db: &str, ordinal: u32) -> PathBuf {
        self.root.join("partitions").join(format!("{db}_{ordinal}.sqlite"))
    }

    fn reference_path(&self, db: &str) -> PathBuf {
        self.root.join("reference").join(format!("{db}.sqlite"))
    }

    fn attach_reference(&self, conn: &Connection, db: &str) -> Result<(), StorageError> {
        let path = self.reference_path(db);
        let path = path.to_str().ok_or_else(|| StorageError::Internal("non-UTF-8 data directory".into()))?;
        conn.execute("ATTACH DATABASE ?1 AS canopy_ref", [path])?;
        debug_assert_eq!(REFERENCE_SCHEMA, "canopy_ref");
        Ok(())
    }

    /// Creates the reference copy of `db` (if missing, running `reference_schema`) and the listed partition
    /// instances (each new one runs `schema`). Existing instances are left as they are, so a retry is harmless.
    pub fn create_partitions(
        &self,
        db: &str,
        ordinals: &[u32],
        schema: &[String],
        reference_schema: &[String],
    ) -> Result<(), StorageError> {
        check_name(db)?;
        let mut open = self.lock()?;
        if !open.references.contains_key(db) {
            let conn = engine::open(&self.reference_path(db))?;
            conn.execute_batch(engine::LOG_POSITION_DDL)?;
            engine::execute_ddl(&conn, reference_schema)?;
            open.references.insert(db.to_string(), Arc::new(Mutex::new(conn)));
        }
        for &ordinal in ordinals {
            if open.partitions.contains_key(&(db.to_string(), ordinal)) {
                continue;
            }
            let path = self.partition_path(db, ordinal);
            // A file left by an interrupted earlier attempt has no committed identity; start it afresh.
            remove_files(&path)?;
            let conn = engine::open(&path)?;
            conn.execute_batch(engine::LOG_POSITION_DDL)?;
            let mut statements = vec![format!(
                "CREATE TABLE _canopy_partition (db TEXT NOT NULL, ordinal INTEGER NOT NULL);
                 INSERT INTO _canopy_partition VALUES ({}, {ordinal});",
                canopy_sql::Value::Text(db.to_string()).to_sql_literal()
            )];
            statements.extend(schema.iter().cloned());
            engine::execute_ddl(&conn, &statements)?;
            self.attach_reference(&conn, db)?;
            open.partitions.insert((db.to_string(), ordinal), Arc::new(Mutex::new(conn)));
        }
        Ok(())
    }

    /// Removes every instance and the reference copy of `db` from this leaf, files included.
    pub fn drop_database(&self, db: &str) -> Result<(), StorageError> {
        check_name(db)?;
        let mut open = self.lock()?;
        let ordinals: Vec<u32> = open.partitions.keys().filter(|(d, _)| d == db).map(|(_, o)| *o).collect();
        for ordinal in ordinals {
            open.partitions.remove(&(db.to_string(), ordinal));
            remove_files(&self.partition_path(db, ordinal))?;
        }
        open.references.remove(db);
        remove_files(&self.reference_path(db))?;
        Ok(())
    }

    fn partition(&self, db: &str, ordinal: u32) -> Result<Shared, StorageError> {
        self.lock()?
            .partitions
            .get(&(db.to_string(), ordinal))
            .cloned()
            .ok_or_else(|| StorageError::NoSuchPartition { db: db.to_string(), ordinal })
    }

    fn reference(&self, db: &str) -> Result<Shared, StorageError> {
        self.lock()?.references.get(db).cloned().ok_or_else(|| StorageError::NoSuchReference(db.to_string()))
    }

    pub fn execute_on_partition(&self, db: &str, ordinal: u32, sql: &str) -> Result<Outcome, StorageError> {
        let conn = self.partition(db, ordinal)?;
        let conn = conn.lock().map_err(|_| StorageError::Internal("partition lock poisoned".into()))?;
        engine::execute(&conn, sql)
    }

    pub fn execute_on_reference(&self, db: &str, sql: &str) -> Result<Outcome, StorageError> {
        let conn = self.reference(db)?;
        let conn = conn.lock().map_err(|_| StorageError::Internal("reference lock poisoned".into()))?;
        engine::execute(&conn, sql)
    }

    pub fn ddl_on_partition(&self, db: &str, ordinal: u32, statements: &[String]) -> Result<(), StorageError> {
        let conn = self.partition(db, ordinal)?;
        let conn = conn.lock().map_err(|_| StorageError::Internal("partition lock poisoned".into()))?;
        engine::execute_ddl(&conn, statements)
    }

    pub fn ddl_on_reference(&self, db: &str, statements: &[String]) -> Result<(), StorageError> {
        let conn = self.reference(db)?;
        let conn = conn.lock().map_err(|_| StorageError::Internal("reference lock poisoned".into()))?;
        engine::execute_ddl(&conn, statements)
    }

    /// Every database on this leaf with its log position, reference copies first, then partitions by name.
    pub fn list(&self) -> Result<Vec<LocalDb>, StorageError> {
        let (references, partitions) = {
            let open = self.lock()?;
            (open.references.clone(), open.partitions.clone())
        };
        let mut out = Vec::new();
        let describe = |conn: &Shared, db: &str, ordinal: Option<u32>| -> Result<LocalDb, StorageError> {
            let conn = conn.lock().map_err(|_| StorageError::Internal("lock poisoned".into()))?;
            let (term, log_index, commits) = engine::log_position(&conn)?;
            Ok(LocalDb { db: db.to_string(), ordinal, term, log_index, commits })
        };
        for (db, conn) in &references {
            out.push(describe(conn, db, None)?);
        }
        for ((db, ordinal), conn) in &partitions {
            out.push(describe(conn, db, Some(*ordinal))?);
        }
        Ok(out)
    }
}

fn remove_files(path: &Path) -> Result<(), StorageError> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_sql::Value;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("canopy-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn partitions_survive_reopen_and_see_reference_tables() {
        let dir = temp_dir("reopen");
        {
            let store = LeafStore::open(&dir).unwrap();
            store
                .create_partitions(
                    "test",
                    &[0, 4],
                    &["CREATE TABLE x (id INTEGER PRIMARY KEY)".to_string()],
                    &["CREATE TABLE r (k INTEGER, v TEXT)".to_string()],
                )
                .unwrap();
            store.execute_on_reference("test", "INSERT INTO r VALUES (1, 'one')").unwrap();
            let out = store.execute_on_partition("test", 4, "INSERT INTO x VALUES (7), (8)").unwrap();
            assert_eq!(out, Outcome::Affected { rows: 2, last_insert_id: 8 });
        }
        let store = LeafStore::open(&dir).unwrap();
        let Outcome::Rows(rs) =
            store.execute_on_partition("test", 4, "SELECT x.id, r.v FROM x JOIN r ON r.k = 1 ORDER BY 1").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            rs.rows,
            vec![
                vec![Value::Integer(7), Value::Text("one".into())],
                vec![Value::Integer(8), Value::Text("one".into())]
            ]
        );
        assert_eq!(rs.columns[0].decl_type.as_deref(), Some("INTEGER"));
        let names: Vec<String> = store.list().unwrap().iter().map(LocalDb::name).collect();
        assert_eq!(names, ["test", "test_0", "test_4"]);
        let p4 = store.list().unwrap().into_iter().find(|d| d.ordinal == Some(4)).unwrap();
        assert_eq!(p4.commits, 2, "schema commit + one write commit");
        store.drop_database("test").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(store.execute_on_partition("test", 4, "SELECT 1"), Err(StorageError::NoSuchPartition { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failed_writes_leave_no_trace_and_constraints_are_recognised() {
        let dir = temp_dir("constraint");
        let store = LeafStore::open(&dir).unwrap();
        store.create_partitions("d", &[0], &["CREATE TABLE t (id INTEGER PRIMARY KEY)".into()], &[]).unwrap();
        store.execute_on_partition("d", 0, "INSERT INTO t VALUES (1)").unwrap();
        let err = store.execute_on_partition("d", 0, "INSERT INTO t VALUES (2), (1)").unwrap_err();
        assert!(err.is_constraint(), "{err}");
        let Outcome::Rows(rs) = store.execute_on_partition("d", 0, "SELECT count(*) FROM t").unwrap() else { panic!() };
        assert_eq!(rs.rows, vec![vec![Value::Integer(1)]]);
        assert!(store.execute_on_partition("d", 0, "SELEC nonsense").is_err());
        assert!(matches!(store.create_partitions("../evil", &[0], &[], &[]), Err(StorageError::BadName(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
