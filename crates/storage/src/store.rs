//! The set of SQLite files on one leaf: partition instances by (database, ordinal), each with its serving state,
//! and reference copies by database; plus the partition-move operations on them (snapshot, install, catch up from
//! the log, checkpoint). Calls block (SQLite is synchronous); the server runs them off its async threads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use canopy_sql::Value;
use rusqlite::Connection;

use crate::StorageError;
use crate::engine::{self, Outcome};
use crate::flush::{FlushCounts, Flusher};
use crate::log::{self, LogEntry, LogPosition};
use crate::snapshot::{self, PartitionSnapshot};

const REFERENCE_SCHEMA: &str = "canopy_ref";

/// Suffix of a partition file being installed. `open` removes such files: they were never verified.
const INSTALLING_SUFFIX: &str = ".installing";

/// Snapshot files a leaf keeps at once; each can be as large as its partition, so they are bounded.
pub const SNAPSHOTS_MAX: usize = 16;

/// A finished snapshot not read for this long is taken for abandoned (its copy target died or gave up without
/// releasing it) and is deleted when a new snapshot is requested, so dead targets never exhaust `SNAPSHOTS_MAX`.
/// A live copy reads a chunk at least every few seconds.
pub const SNAPSHOT_LEASE_MS: u64 = 120_000;

use crate::held::{self, Shared, lock_conn};

pub use canopy_types::PartitionState;
use canopy_types::{DatabaseId, Term};

/// One database as this leaf holds it, for SHOW DATABASES EXTENDED.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalDb {
    pub db: String,
    /// `None` for the reference copy.
    pub ordinal: Option<u32>,
    pub term: Term,
    pub log_index: u64,
    pub commits: u64,
    /// Always `Online` for a reference copy.
    pub state: PartitionState,
    /// The metadata's id of the database incarnation this copy belongs to (None for files that predate it).
    pub database_id: Option<DatabaseId>,
    /// The user tables of the file (lower-cased, sorted): what ATTACH PARTITION compares with the metadata.
    pub tables: Vec<String>,
    /// The cluster this copy was created in (None for files that predate it).
    pub cluster_id: Option<String>,
    /// A replica copy in its master's commit path, as far as this leaf saw (`sync replica`).
    pub replica_sync: bool,
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

struct Instance {
    conn: Shared,
    state: PartitionState,
    /// The file's database incarnation, read once when the instance is opened (it never changes), so callers that
    /// must not wait on SQLite (the heartbeat's ping) can see it without locking the connection.
    database_id: Option<DatabaseId>,
    /// The term of the copy's log (`_canopy_log_position`), kept here as well so every request's term is checked
    /// without locking the connection; changed only by `set_term`, together with the file.
    term: Term,
    /// A replica copy whose last batch came from its master's commit path (SHOW DATABASES EXTENDED's `sync replica`).
    replica_sync: bool,
}

/// A partition instance recovered from disk and not yet attached, as the state map knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPartition {
    pub db: String,
    pub ordinal: u32,
    pub database_id: Option<DatabaseId>,
}

struct SnapshotFile {
    path: PathBuf,
    size_bytes: u64,
    /// False while the copy is being made (it never expires then).
    ready: bool,
    /// When the snapshot became ready or a chunk of it was last read: the start of its lease.
    last_used: Instant,
}

impl SnapshotFile {
    fn expired(&self, now: Instant) -> bool {
        self.ready && now.saturating_duration_since(self.last_used) > Duration::from_millis(SNAPSHOT_LEASE_MS)
    }
}

#[derive(Default)]
struct Open {
    partitions: BTreeMap<(String, u32), Instance>,
    references: BTreeMap<String, Shared>,
    /// Partitions whose install is under way, so two installs of one partition cannot interleave.
    installing: BTreeSet<(String, u32)>,
    snapshots: BTreeMap<u64, SnapshotFile>,
    next_snapshot_id: u64,
}

/// Where a partition commit's log entry goes before COMMIT: the server's replication (to the partition's sync
/// replica, if it has one). Called on the committing thread, inside the write transaction, with the partition's
/// connection held and passed as `conn` (entries the replica lacks before this one are read from it,
/// `log::since`); an error rolls the commit back.
pub trait Replicator: Send + Sync {
    fn ship(&self, db: &str, ordinal: u32, conn: &Connection, entry: &LogEntry) -> Result<(), StorageError>;
}

pub struct LeafStore {
    root: PathBuf,
    open: Mutex<Open>,
    replicator: std::sync::RwLock<Option<Arc<dyn Replicator>>>,
    /// The cluster this leaf serves (None outside any cluster): new files record it, and files recording another
    /// cluster are stale for `create_partitions`.
    cluster_id: std::sync::RwLock<Option<String>>,
    /// Syncs the WAL of sync-durability partitions once for many client commits (group commit).
    flusher: Flusher,
    /// Applies what replica copies acknowledged and hold (`held`).
    applier: held::Applier,
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
    /// Partitions start `Pending`: the master aggregator decides whether they serve. Leftovers of interrupted
    /// installs and snapshots are removed.
    pub fn open(root: &Path) -> Result<LeafStore, StorageError> {
        for dir in ["partitions", "reference", "snapshots"] {
            create_private_dir(&root.join(dir))?;
        }
        let store = LeafStore {
            root: root.to_path_buf(),
            open: Mutex::new(Open::default()),
            replicator: std::sync::RwLock::new(None),
            cluster_id: std::sync::RwLock::new(None),
            flusher: Flusher::start(),
            applier: held::Applier::start(),
        };
        let mut open = Open::default();
        for entry in std::fs::read_dir(root.join("snapshots"))? {
            std::fs::remove_file(entry?.path())?;
        }
        for entry in std::fs::read_dir(root.join("reference"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "sqlite")
                && let Some(db) = path.file_stem().and_then(|s| s.to_str())
            {
                let mut conn = engine::open(&path)?;
                engine::deny_escapes(&mut conn)?;
                open.references.insert(db.to_string(), held::shared(conn));
            }
        }
        for entry in std::fs::read_dir(root.join("partitions"))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.contains(INSTALLING_SUFFIX) {
                // An install that did not finish: never verified, never live.
                std::fs::remove_file(&path)?;
                continue;
            }
            if path.extension().is_none_or(|e| e != "sqlite") {
                continue;
            }
            let mut conn = engine::open(&path)?;
            let identity: Option<(String, u32)> =
                conn.query_row("SELECT db, ordinal FROM _canopy_partition", [], |r| Ok((r.get(0)?, r.get(1)?))).ok();
            let Some((db, ordinal)) = identity else {
                tracing::warn!("ignoring {}: not a Canopy partition", path.display());
                continue;
            };
            store.attach_reference(&mut conn, &db)?;
            let database_id = engine::database_id(&conn)?;
            // What a replica acknowledged and had not applied when the process stopped is applied here.
            let conn = held::partition(conn, &path)?;
            let term = log::position(&*held::lock_for_listing(&conn)?)?.0.term;
            let instance = Instance { conn, state: PartitionState::Pending, database_id, term, replica_sync: false };
            open.partitions.insert((db, ordinal), instance);
        }
        *store.lock()? = open;
        Ok(store)
    }

    /// Sets where partition commits ship their log entries (once, at start-up).
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) {
        *self.replicator.write().unwrap_or_else(|p| p.into_inner()) = Some(replicator);
    }

    fn replicator(&self) -> Option<Arc<dyn Replicator>> {
        self.replicator.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the cluster this leaf serves (it joined or left one).
    pub fn set_cluster_id(&self, cluster_id: Option<String>) {
        *self.cluster_id.write().unwrap_or_else(|p| p.into_inner()) = cluster_id;
    }

    fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether the file behind `conn` belongs to another incarnation of its database, or to another cluster.
    fn is_stale(&self, conn: &Shared, database_id: DatabaseId) -> Result<bool, StorageError> {
        let conn = lock_conn(conn)?;
        let other_incarnation = engine::database_id(&conn)?.is_some_and(|id| id != database_id);
        let cluster = self.cluster_id();
        let other_cluster = engine::cluster_id(&conn)?.is_some_and(|c| cluster.is_some_and(|ours| c != ours));
        Ok(other_incarnation || other_cluster)
    }

    /// Records the database incarnation and this leaf's cluster in a new file.
    fn stamp(&self, conn: &Connection, database_id: DatabaseId) -> Result<(), StorageError> {
        engine::set_database_id(conn, database_id)?;
        match self.cluster_id() {
            Some(cluster_id) => engine::set_cluster_id(conn, &cluster_id),
            None => Ok(()),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Open>, StorageError> {
        self.open.lock().map_err(|_| StorageError::Internal("leaf store lock poisoned".into()))
    }

    fn partition_path(&self, db: &str, ordinal: u32) -> PathBuf {
        self.root.join("partitions").join(format!("{db}_{ordinal}.sqlite"))
    }

    fn reference_path(&self, db: &str) -> PathBuf {
        self.root.join("reference").join(format!("{db}.sqlite"))
    }

    /// Attaches the reference copy of `db` to a partition connection, then denies every further ATTACH on it
    /// (`engine::deny_escapes`): this is the only file a partition connection ever attaches.
    fn attach_reference(&self, conn: &mut Connection, db: &str) -> Result<(), StorageError> {
        let path = self.reference_path(db);
        let path = path.to_str().ok_or_else(|| StorageError::Internal("non-UTF-8 data directory".into()))?;
        conn.execute("ATTACH DATABASE ?1 AS canopy_ref", [path])?;
        debug_assert_eq!(REFERENCE_SCHEMA, "canopy_ref");
        engine::deny_escapes(conn)
    }

    /// Creates the reference copy of `db` (if missing, running `reference_schema`) and the listed partition
    /// instances (each new one runs `schema`, which becomes its first log entry), `Online`. Existing instances are
    /// left as they are, so a retry is harmless.
    pub fn create_partitions(
        &self,
        db: &str,
        ordinals: &[u32],
        schema: &[String],
        reference_schema: &[String],
        durability: engine::Durability,
        database_id: DatabaseId,
    ) -> Result<(), StorageError> {
        check_name(db)?;
        let mut open = self.lock()?;
        // Copies of an earlier incarnation of a database with this name (dropped while this leaf was away) are
        // stale: they are replaced, never reused.
        let stale_reference = match open.references.get(db) {
            Some(conn) => self.is_stale(conn, database_id)?,
            None => false,
        };
        if stale_reference {
            open.references.remove(db);
            remove_files(&self.reference_path(db))?;
        }
        let mut stale = Vec::new();
        for ((d, ordinal), instance) in open.partitions.iter() {
            if d == db && self.is_stale(&instance.conn, database_id)? {
                stale.push(*ordinal);
            }
        }
        for ordinal in stale {
            open.partitions.remove(&(db.to_string(), ordinal));
            remove_files(&self.partition_path(db, ordinal))?;
        }
        if !open.references.contains_key(db) {
            let mut conn = engine::open(&self.reference_path(db))?;
            engine::set_durability(&conn, durability)?;
            self.stamp(&conn, database_id)?;
            engine::execute_ddl(&conn, reference_schema)?;
            engine::deny_escapes(&mut conn)?;
            open.references.insert(db.to_string(), held::shared(conn));
        }
        for &ordinal in ordinals {
            let key = (db.to_string(), ordinal);
            if open.partitions.contains_key(&key) || open.installing.contains(&key) {
                continue;
            }
            let path = self.partition_path(db, ordinal);
            // A file left by an interrupted earlier attempt has no committed identity; start it afresh.
            remove_files(&path)?;
            let mut conn = engine::open(&path)?;
            engine::set_durability(&conn, durability)?;
            self.stamp(&conn, database_id)?;
            engine::create_partition(&conn, db, ordinal, schema)?;
            self.attach_reference(&mut conn, db)?;
            let instance = Instance {
                conn: held::partition(conn, &path)?,
                state: PartitionState::Online,
                database_id: Some(database_id),
                term: Term(0),
                replica_sync: false,
            };
            open.partitions.insert(key, instance);
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

    /// Removes one partition instance from this leaf, files included (the source side of a finished move). Dropping
    /// an instance that is not here is harmless, so a retried drop succeeds.
    pub fn drop_partition(&self, db: &str, ordinal: u32) -> Result<(), StorageError> {
        check_name(db)?;
        // Out of the map under the store's lock; closed and deleted after it, so statements on the leaf's other
        // partitions (which take that lock to find theirs) do not wait for the close's checkpoint or the unlinks.
        let removed = self.lock()?.partitions.remove(&(db.to_string(), ordinal));
        if let Some(instance) = removed {
            close_when_unused(instance.conn);
        }
        remove_files(&self.partition_path(db, ordinal))
    }

    fn partition(&self, db: &str, ordinal: u32) -> Result<(Shared, PartitionState), StorageError> {
        self.lock()?
            .partitions
            .get(&(db.to_string(), ordinal))
            .map(|i| (i.conn.clone(), i.state))
            .ok_or_else(|| StorageError::NoSuchPartition { db: db.to_string(), ordinal })
    }

    /// The connection of a partition that may serve queries.
    fn online_partition(&self, db: &str, ordinal: u32) -> Result<Shared, StorageError> {
        match self.partition(db, ordinal)? {
            (conn, PartitionState::Online) => Ok(conn),
            (_, state) => Err(StorageError::NotOnline { db: db.to_string(), ordinal, state }),
        }
    }

    fn reference(&self, db: &str) -> Result<Shared, StorageError> {
        self.lock()?.references.get(db).cloned().ok_or_else(|| StorageError::NoSuchReference(db.to_string()))
    }

    /// Runs one statement on an `Online` partition (reads included: a pending or replica copy serves nothing).
    /// Runs a statement without parameters on an `Online` partition.
    pub fn execute_on_partition(&self, db: &str, ordinal: u32, sql: &str) -> Result<Outcome, StorageError> {
        self.execute_on_partition_with(db, ordinal, sql, &[])
    }

    /// Runs a statement on an `Online` partition, binding `params` to its `?NNN` placeholders.
    pub fn execute_on_partition_with(
        &self,
        db: &str,
        ordinal: u32,
        sql: &str,
        params: &[Value],
    ) -> Result<Outcome, StorageError> {
        let conn = self.online_partition(db, ordinal)?;
        engine::execute(&*lock_conn(&conn)?, sql, params)
    }

    /// The connection of `db:ordinal` when its copy holds exactly `term` (`StaleTerm` otherwise) and is in
    /// `state` (`wrong(state)` otherwise), looked up once in the state map.
    fn conn_in_term(
        &self,
        db: &str,
        ordinal: u32,
        term: Term,
        state: PartitionState,
        wrong: impl FnOnce(PartitionState) -> StorageError,
    ) -> Result<Shared, StorageError> {
        let open = self.lock()?;
        let instance = open
            .partitions
            .get(&(db.to_string(), ordinal))
            .ok_or_else(|| StorageError::NoSuchPartition { db: db.to_string(), ordinal })?;
        if instance.term != term {
            return Err(StorageError::StaleTerm { current: instance.term, requested: term });
        }
        if instance.state != state {
            return Err(wrong(instance.state));
        }
        Ok(instance.conn.clone())
    }

    /// Runs a statement on an `Online` partition addressed in `term` (`check_term`), looking the partition up once.
    pub fn execute_on_partition_in_term(
        &self,
        db: &str,
        ordinal: u32,
        term: Term,
        sql: &str,
        params: &[Value],
    ) -> Result<Outcome, StorageError> {
        let conn = self.conn_in_term(db, ordinal, term, PartitionState::Online, |state| StorageError::NotOnline {
            db: db.to_string(),
            ordinal,
            state,
        })?;
        let conn = lock_conn(&conn)?;
        // Group commit: a sync-durability COMMIT writes the WAL unsynced, and a round of the leaf's group commit
        // syncs it once the connection is free again, for every commit that queued meanwhile (`crate::flush`).
        // Shipping is unchanged: inside the transaction, before COMMIT.
        let (outcome, flush) = match self.replicator() {
            Some(r) => engine::execute_shipped(&conn, sql, params, &|entry| r.ship(db, ordinal, &conn, entry)),
            None => engine::execute_shipped(&conn, sql, params, &engine::no_ship),
        }?;
        // Handed in before the connection is released: whoever reads this commit next gets the same round or later.
        let round = flush.then(|| self.flusher.enqueue(&wal_path(&self.partition_path(db, ordinal))));
        drop(conn);
        if let Some(round) = round {
            self.flusher.wait(round);
        }
        Ok(outcome)
    }

    /// What the leaf's flusher did so far (commits released, rounds, fsyncs).
    pub fn flush_counts(&self) -> FlushCounts {
        self.flusher.counts()
    }

    /// Runs a statement without parameters on the reference copy of `db`.
    pub fn execute_on_reference(&self, db: &str, sql: &str) -> Result<Outcome, StorageError> {
        self.execute_on_reference_with(db, sql, &[])
    }

    /// Runs a statement on the reference copy of `db`, binding `params` to its `?NNN` placeholders.
    pub fn execute_on_reference_with(&self, db: &str, sql: &str, params: &[Value]) -> Result<Outcome, StorageError> {
        let conn = self.reference(db)?;
        engine::execute(&*lock_conn(&conn)?, sql, params)
    }

    /// Runs a statement that only reads on an `Online` partition (a leaf's MySQL port, for inspection);
    /// `NotReadOnly` for one that would write.
    pub fn inspect_partition(&self, db: &str, ordinal: u32, sql: &str) -> Result<Outcome, StorageError> {
        let conn = self.online_partition(db, ordinal)?;
        engine::query(&*lock_conn(&conn)?, sql)
    }

    /// Runs a statement that only reads on the reference copy of `db`; `NotReadOnly` for one that would write.
    pub fn inspect_reference(&self, db: &str, sql: &str) -> Result<Outcome, StorageError> {
        let conn = self.reference(db)?;
        engine::query(&*lock_conn(&conn)?, sql)
    }

    /// Runs DDL on an `Online` partition; copies receive it through the log.
    pub fn ddl_on_partition(&self, db: &str, ordinal: u32, statements: &[String]) -> Result<(), StorageError> {
        let conn = self.online_partition(db, ordinal)?;
        let conn = lock_conn(&conn)?;
        match self.replicator() {
            Some(r) => engine::execute_ddl_shipped(&conn, statements, &|entry| r.ship(db, ordinal, &conn, entry)),
            None => engine::execute_ddl(&conn, statements),
        }
    }

    pub fn ddl_on_reference(&self, db: &str, statements: &[String]) -> Result<(), StorageError> {
        let conn = self.reference(db)?;
        engine::execute_ddl(&*lock_conn(&conn)?, statements)
    }

    /// Every database on this leaf with its log position and state, reference copies first, then partitions by
    /// name.
    pub fn list(&self) -> Result<Vec<LocalDb>, StorageError> {
        // Copy the handles out so no connection is locked while the store lock is held.
        type Listed = (String, Option<u32>, Shared, PartitionState, bool);
        let databases: Vec<Listed> = {
            let open = self.lock()?;
            let references =
                open.references.iter().map(|(db, c)| (db.clone(), None, c.clone(), PartitionState::Online, false));
            let partitions = open
                .partitions
                .iter()
                .map(|((db, k), i)| (db.clone(), Some(*k), i.conn.clone(), i.state, i.replica_sync));
            references.chain(partitions).collect()
        };
        let mut out = Vec::with_capacity(databases.len());
        for (db, ordinal, conn, state, replica_sync) in databases {
            let conn = held::lock_for_listing(&conn)?;
            let (term, log_index, commits) = engine::log_position(&conn)?;
            let database_id = engine::database_id(&conn)?;
            let tables = engine::user_tables(&conn)?;
            let cluster_id = engine::cluster_id(&conn)?;
            out.push(LocalDb {
                db,
                ordinal,
                term,
                log_index,
                commits,
                state,
                database_id,
                tables,
                cluster_id,
                replica_sync,
            });
        }
        Ok(out)
    }

    /// The partitions waiting to be attached, from the state map alone: no connection is locked, so the answer never
    /// waits for a statement running on this leaf (a heartbeat ping uses it).
    pub fn pending_partitions(&self) -> Result<Vec<PendingPartition>, StorageError> {
        let open = self.lock()?;
        let pending = open.partitions.iter().filter(|(_, i)| i.state == PartitionState::Pending);
        Ok(pending
            .map(|((db, ordinal), i)| PendingPartition {
                db: db.clone(),
                ordinal: *ordinal,
                database_id: i.database_id,
            })
            .collect())
    }

    /// Sets whether a partition serves (the master aggregator attaches pending partitions, a caught-up copy goes
    /// online at a move's switch).
    pub fn set_partition_state(&self, db: &str, ordinal: u32, state: PartitionState) -> Result<(), StorageError> {
        let mut open = self.lock()?;
        let instance = open
            .partitions
            .get_mut(&(db.to_string(), ordinal))
            .ok_or_else(|| StorageError::NoSuchPartition { db: db.to_string(), ordinal })?;
        instance.state = state;
        Ok(())
    }

    /// The position of a partition's log: `(term, index of the last entry)`.
    /// SQLite's synchronous level on a partition (2 = FULL for sync durability, 1 = NORMAL for async).
    pub fn synchronous_level(&self, db: &str, ordinal: u32) -> Result<i64, StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        engine::synchronous_level(&*lock_conn(&conn)?)
    }

    pub fn log_position(&self, db: &str, ordinal: u32) -> Result<LogPosition, StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        Ok(log::position(&*lock_conn(&conn)?)?.0)
    }

    /// Sets the term in which the partition's next log entries are written; a lower term than the current one is
    /// refused with `StaleTerm`.
    pub fn set_term(&self, db: &str, ordinal: u32, term: Term) -> Result<(), StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        // The file first: a refused (lower) term changes nothing, and memory never claims a term the file lacks.
        log::set_term(&*lock_conn(&conn)?, term)?;
        if let Some(instance) = self.lock()?.partitions.get_mut(&(db.to_string(), ordinal)) {
            instance.term = instance.term.max(term);
        }
        Ok(())
    }

    /// Refuses a request that addresses the partition in another term than its copy holds: the sender's metadata
    /// is behind (or ahead of what this leaf was told), or this copy was deposed. From the state map only.
    pub fn check_term(&self, db: &str, ordinal: u32, term: Term) -> Result<(), StorageError> {
        let open = self.lock()?;
        let instance = open
            .partitions
            .get(&(db.to_string(), ordinal))
            .ok_or_else(|| StorageError::NoSuchPartition { db: db.to_string(), ordinal })?;
        if instance.term != term {
            return Err(StorageError::StaleTerm { current: instance.term, requested: term });
        }
        Ok(())
    }

    /// Takes a consistent copy of a partition (in any state) while writes continue, kept as a file under the leaf's
    /// `snapshots/` directory until `release_snapshot` or until its lease expires. At most `SNAPSHOTS_MAX` are kept
    /// at once.
    pub fn snapshot_partition(&self, db: &str, ordinal: u32) -> Result<PartitionSnapshot, StorageError> {
        self.snapshot_partition_at(db, ordinal, Instant::now())
    }

    /// `snapshot_partition` requested at `now`: snapshots whose lease expired by then (`SNAPSHOT_LEASE_MS` without
    /// a read) are deleted first.
    pub fn snapshot_partition_at(
        &self,
        db: &str,
        ordinal: u32,
        now: Instant,
    ) -> Result<PartitionSnapshot, StorageError> {
        check_name(db)?;
        // The snapshot reads the file itself: a replica's held entries are applied first.
        let (conn, _) = self.partition(db, ordinal)?;
        drop(lock_conn(&conn)?);
        let (id, position, size_bytes) = self.snapshot_file(&self.partition_path(db, ordinal), now)?;
        Ok(PartitionSnapshot { id, db: db.to_string(), ordinal, position, size_bytes })
    }

    /// Takes a consistent copy of the reference copy of `db`, like [`Self::snapshot_partition`]: `(id, position,
    /// size in bytes)`.
    pub fn snapshot_reference(&self, db: &str) -> Result<(u64, LogPosition, u64), StorageError> {
        check_name(db)?;
        self.reference(db)?;
        self.snapshot_file(&self.reference_path(db), Instant::now())
    }

    /// Copies the live file at `source` into a new snapshot file: `(id, position, size in bytes)`. Snapshots whose
    /// lease expired by `now` are deleted first.
    fn snapshot_file(&self, source: &Path, now: Instant) -> Result<(u64, LogPosition, u64), StorageError> {
        let started = Instant::now();
        let (id, expired) = {
            let mut open = self.lock()?;
            let expired: Vec<u64> = open.snapshots.iter().filter(|(_, f)| f.expired(now)).map(|(id, _)| *id).collect();
            let expired: Vec<SnapshotFile> = expired.iter().filter_map(|id| open.snapshots.remove(id)).collect();
            if open.snapshots.len() >= SNAPSHOTS_MAX {
                return Err(StorageError::TooManySnapshots);
            }
            open.next_snapshot_id += 1;
            let id = open.next_snapshot_id;
            // Reserve the id now so the copy itself runs without the store lock.
            let path = self.snapshot_path(id);
            open.snapshots.insert(id, SnapshotFile { path, size_bytes: 0, ready: false, last_used: now });
            (id, expired)
        };
        for file in expired {
            tracing::info!("deleting snapshot {} (not read for {SNAPSHOT_LEASE_MS} ms)", file.path.display());
            remove_files(&file.path)?;
        }
        let path = self.snapshot_path(id);
        let copied =
            snapshot::copy_live(source, &path).and_then(|position| Ok((position, std::fs::metadata(&path)?.len())));
        let mut open = self.lock()?;
        match copied {
            Ok((position, size_bytes)) => {
                // The lease starts when the copy is ready, however long it took to make.
                let last_used = now + started.elapsed();
                open.snapshots.insert(id, SnapshotFile { path, size_bytes, ready: true, last_used });
                Ok((id, position, size_bytes))
            }
            Err(e) => {
                open.snapshots.remove(&id);
                remove_files(&path)?;
                Err(e)
            }
        }
    }

    fn snapshot_path(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(format!("{id}.sqlite"))
    }

    /// Up to `len` bytes (at most `SNAPSHOT_CHUNK_BYTES_MAX`) of snapshot `id` from `offset`; empty past the end.
    pub fn read_snapshot_chunk(&self, id: u64, offset: u64, len: u32) -> Result<Vec<u8>, StorageError> {
        self.read_snapshot_chunk_at(id, offset, len, Instant::now())
    }

    /// `read_snapshot_chunk` at `now`, which renews the snapshot's lease.
    pub fn read_snapshot_chunk_at(
        &self,
        id: u64,
        offset: u64,
        len: u32,
        now: Instant,
    ) -> Result<Vec<u8>, StorageError> {
        let (path, size_bytes) = {
            let mut open = self.lock()?;
            let file = open.snapshots.get_mut(&id).ok_or(StorageError::NoSuchSnapshot(id))?;
            file.last_used = file.last_used.max(now);
            (file.path.clone(), file.size_bytes)
        };
        if offset >= size_bytes {
            return Ok(Vec::new());
        }
        snapshot::read_chunk(&path, offset, len)
    }

    /// Deletes snapshot `id`'s file. Releasing an unknown id is harmless.
    pub fn release_snapshot(&self, id: u64) -> Result<(), StorageError> {
        let file = self.lock()?.snapshots.remove(&id);
        if let Some(file) = file {
            remove_files(&file.path)?;
        }
        Ok(())
    }

    /// Installs a copy of partition `db`:`ordinal` from a snapshot's bytes, in order, as a `Replica`. The bytes go to
    /// a temporary file that is checked (size, `quick_check`, identity) and only then renamed into place, so a
    /// failure or a crash never leaves a file `open` would take for a live partition. The leaf must already hold the
    /// database's reference copy, and must not hold the partition.
    pub fn install_partition<I, C>(&self, db: &str, ordinal: u32, chunks: I) -> Result<LogPosition, StorageError>
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        self.install_partition_streamed(db, ordinal, chunks.into_iter().map(Ok))
    }

    /// `install_partition` from a stream of chunks that may fail (chunks fetched from the source as the install
    /// proceeds): each chunk is written as it arrives and dropped, so only one is in memory at a time, whatever the
    /// partition's size. A failed chunk aborts the install (nothing is left behind).
    pub fn install_partition_streamed<I, C>(
        &self,
        db: &str,
        ordinal: u32,
        chunks: I,
    ) -> Result<LogPosition, StorageError>
    where
        I: IntoIterator<Item = Result<C, StorageError>>,
        C: AsRef<[u8]>,
    {
        check_name(db)?;
        let key = (db.to_string(), ordinal);
        {
            let mut open = self.lock()?;
            if open.partitions.contains_key(&key) || open.installing.contains(&key) {
                return Err(StorageError::PartitionExists { db: db.to_string(), ordinal });
            }
            if !open.references.contains_key(db) {
                return Err(StorageError::NoSuchReference(db.to_string()));
            }
            open.installing.insert(key.clone());
        }
        let result = self.install_file(db, ordinal, chunks).and_then(|(conn, position)| {
            let database_id = engine::database_id(&conn)?;
            Ok((conn, position, database_id))
        });
        let mut open = self.lock()?;
        open.installing.remove(&key);
        let (conn, position, database_id) = result?;
        let instance = Instance {
            conn: held::partition(conn, &self.partition_path(db, ordinal))?,
            state: PartitionState::Replica,
            database_id,
            term: position.term,
            replica_sync: false,
        };
        open.partitions.insert(key, instance);
        Ok(position)
    }

    fn install_file<I, C>(&self, db: &str, ordinal: u32, chunks: I) -> Result<(Connection, LogPosition), StorageError>
    where
        I: IntoIterator<Item = Result<C, StorageError>>,
        C: AsRef<[u8]>,
    {
        let path = self.partition_path(db, ordinal);
        let mut temp = path.as_os_str().to_owned();
        temp.push(INSTALLING_SUFFIX);
        let temp = PathBuf::from(temp);
        remove_files(&temp)?;
        let checked = snapshot::write_chunks(&temp, chunks).and_then(|_| snapshot::verify(&temp, db, ordinal));
        let position = match checked {
            Ok(position) => position,
            Err(e) => {
                remove_files(&temp)?;
                return Err(e);
            }
        };
        // Whatever is at the final name is an orphan (open found no live partition there); replace it.
        remove_files(&path)?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(self.root.join("partitions"))?.sync_all()?;
        let mut conn = engine::open(&path)?;
        self.attach_reference(&mut conn, db)?;
        Ok((conn, position))
    }

    /// Log entries of a partition after `after_index`, oldest first, at most about `max_bytes` of payload (at least
    /// one entry when any exists). `LogTruncated` when a checkpoint already removed the entries needed.
    pub fn log_since(
        &self,
        db: &str,
        ordinal: u32,
        after_index: u64,
        max_bytes: u64,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        log::since(&*lock_conn(&conn)?, after_index, max_bytes)
    }

    /// Applies log entries from the source partition to this `Replica` copy, in one transaction; entries at or below
    /// the current position are skipped, a gap is refused (`LogGap`), and a conflict aborts (`ApplyConflict`).
    /// Returns the new position.
    pub fn apply_log(&self, db: &str, ordinal: u32, entries: &[LogEntry]) -> Result<LogPosition, StorageError> {
        match self.partition(db, ordinal)? {
            (conn, PartitionState::Replica) => log::apply(&*lock_conn(&conn)?, entries),
            (_, state) => Err(StorageError::NotReplica { db: db.to_string(), ordinal, state }),
        }
    }

    /// Makes a partition a replica receiving its master's log in `term` (the master's): it serves nothing, takes
    /// `Replicate` batches only in that term, and commits them without fsync (an acknowledged write is fsynced on
    /// the master and in this process's hands here, which a process kill does not lose).
    pub fn make_replica(&self, db: &str, ordinal: u32, term: Term) -> Result<(), StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        {
            let conn = lock_conn(&conn)?;
            log::set_term(&conn, term)?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let mut open = self.lock()?;
        if let Some(instance) = open.partitions.get_mut(&(db.to_string(), ordinal)) {
            instance.term = instance.term.max(term);
            instance.state = PartitionState::Replica;
            instance.replica_sync = false;
        }
        Ok(())
    }

    /// Makes a partition its partition's master in `term`: its log continues in that term, commits are as durable as
    /// its database asks, and it serves.
    pub fn promote(&self, db: &str, ordinal: u32, term: Term) -> Result<(), StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        {
            let conn = lock_conn(&conn)?;
            log::set_term(&conn, term)?;
            engine::apply_stored_durability(&conn)?;
        }
        let mut open = self.lock()?;
        if let Some(instance) = open.partitions.get_mut(&(db.to_string(), ordinal)) {
            instance.term = instance.term.max(term);
            instance.state = PartitionState::Online;
        }
        Ok(())
    }

    /// A deposed master (its replica answered with a newer term): it stops serving and waits, `pending`, for the
    /// master aggregator to make it a replica. Only if it is still in `term`.
    pub fn depose(&self, db: &str, ordinal: u32, term: Term) -> Result<(), StorageError> {
        let mut open = self.lock()?;
        if let Some(instance) = open.partitions.get_mut(&(db.to_string(), ordinal))
            && instance.term == term
            && instance.state == PartitionState::Online
        {
            instance.state = PartitionState::Pending;
        }
        Ok(())
    }

    /// The replica side of replication: takes `entries` shipped by the master in `term`, holding them to be applied
    /// a little later with others (`held`: every use of the copy applies them first). Refused unless this copy is
    /// a replica in exactly that term (`StaleTerm`: a deposed master's, or a master this copy was not told of);
    /// entries it already holds are checked by term and payload and skipped, a gap is refused.
    pub fn apply_replicated(
        &self,
        db: &str,
        ordinal: u32,
        term: Term,
        entries: &[LogEntry],
        sync: bool,
    ) -> Result<LogPosition, StorageError> {
        let conn = self.conn_in_term(db, ordinal, term, PartitionState::Replica, |state| StorageError::NotReplica {
            db: db.to_string(),
            ordinal,
            state,
        })?;
        if entries.iter().any(|e| e.term > term) {
            return Err(StorageError::StaleTerm {
                current: term,
                requested: entries.iter().map(|e| e.term).max().unwrap_or(term),
            });
        }
        let (position, scheduled) = held::hold(&conn, entries)?;
        if scheduled {
            self.applier.schedule(&conn);
        }
        if let Some(instance) = self.lock()?.partitions.get_mut(&(db.to_string(), ordinal)) {
            instance.replica_sync = sync;
        }
        Ok(position)
    }

    /// Where a copy's log ends, for the prefix test of a returning copy: the last entry it holds (None for none)
    /// with the digest of its payload (`log::digest`), and its position.
    pub fn log_end(&self, db: &str, ordinal: u32) -> Result<(Option<(LogPosition, u64)>, LogPosition), StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        let conn = lock_conn(&conn)?;
        let last = match log::last_entry(&conn)? {
            Some(last) => log::entry_at(&conn, last.index)?.map(|e| (last, log::digest(&e))),
            None => None,
        };
        Ok((last, log::position(&conn)?.0))
    }

    /// Whether this copy's log can continue a copy whose last entry is `last` (position and payload digest): it
    /// holds the same entry at that index, same term and same digest (or `last` is None and it holds the whole log
    /// from the start), and it is not behind it.
    pub fn continues(&self, db: &str, ordinal: u32, last: Option<(LogPosition, u64)>) -> Result<bool, StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        let conn = lock_conn(&conn)?;
        let here = log::position(&conn)?.0;
        Ok(match last {
            None => log::first_index(&conn)?.is_none_or(|first| first <= 1),
            Some((last, _)) if last.index > here.index => false,
            Some((last, digest)) => {
                log::entry_at(&conn, last.index)?.is_some_and(|e| e.term == last.term && log::digest(&e) == digest)
            }
        })
    }

    /// Runs `f` while holding the partition's connection: no commit on the partition starts or ends meanwhile (the
    /// final step of making a replica sync: the last entries shipped and the replica registered under the lock).
    pub fn with_partition_locked<T>(
        &self,
        db: &str,
        ordinal: u32,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        let conn = lock_conn(&conn)?;
        f(&conn)
    }

    /// The term of a partition as the state map holds it, and its state.
    pub fn partition_term(&self, db: &str, ordinal: u32) -> Result<(Term, PartitionState), StorageError> {
        let open = self.lock()?;
        let instance = open
            .partitions
            .get(&(db.to_string(), ordinal))
            .ok_or_else(|| StorageError::NoSuchPartition { db: db.to_string(), ordinal })?;
        Ok((instance.term, instance.state))
    }

    /// The database incarnation and log position of the reference copy of `db`, or None when this leaf has none.
    pub fn reference_state(&self, db: &str) -> Result<Option<(Option<DatabaseId>, LogPosition)>, StorageError> {
        let Some(conn) = self.lock()?.references.get(db).cloned() else { return Ok(None) };
        let conn = lock_conn(&conn)?;
        Ok(Some((engine::database_id(&conn)?, log::position(&conn)?.0)))
    }

    /// Log entries of the reference copy of `db` after `after_index`, bounded as in [`Self::log_since`].
    pub fn reference_log_since(
        &self,
        db: &str,
        after_index: u64,
        max_bytes: u64,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let conn = self.reference(db)?;
        log::since(&*lock_conn(&conn)?, after_index, max_bytes)
    }

    /// Applies another copy's log entries to the reference copy of `db`, as [`Self::apply_log`] does for a partition
    /// (skips entries already applied, refuses a gap, aborts on a conflict). A reference copy has no serving state:
    /// the master aggregator serialises reference writes and sends each copy the primary copy's entries in order.
    pub fn apply_reference_log(&self, db: &str, entries: &[LogEntry]) -> Result<LogPosition, StorageError> {
        let conn = self.reference(db)?;
        log::apply(&*lock_conn(&conn)?, entries)
    }

    /// Replaces (or creates) the reference copy of `db` with a snapshot's bytes, in order. The bytes go to a
    /// temporary file under `snapshots/` (removed by `open`) that must be a sound reference copy of incarnation
    /// `database_id`; its contents then replace the live copy's in one transaction, so the partitions that attach the
    /// copy see the old or the new contents, never a mix, and need no re-attach. Returns the new position.
    pub fn install_reference<I, C>(
        &self,
        db: &str,
        database_id: DatabaseId,
        chunks: I,
    ) -> Result<LogPosition, StorageError>
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        check_name(db)?;
        let temp = self.root.join("snapshots").join(format!("{db}.reference{INSTALLING_SUFFIX}"));
        remove_files(&temp)?;
        let installed = snapshot::write_chunks(&temp, chunks.into_iter().map(Ok))
            .and_then(|_| snapshot::verify_reference(&temp, database_id))
            .and_then(|position| {
                let conn = {
                    let mut open = self.lock()?;
                    match open.references.get(db) {
                        Some(conn) => conn.clone(),
                        None => {
                            let conn: Shared = held::shared(engine::open(&self.reference_path(db))?);
                            open.references.insert(db.to_string(), conn.clone());
                            conn
                        }
                    }
                };
                let mut conn = lock_conn(&conn)?;
                snapshot::replace_contents(&temp, &mut conn)?;
                // A copy created just now runs with the default durability until it knows the database's.
                engine::apply_stored_durability(&conn)?;
                Ok(position)
            });
        remove_files(&temp)?;
        installed
    }

    /// Removes the reference copy of `db`, files included, unless a partition of `db` is still on this leaf (its
    /// connection attaches the copy): a leaf that no longer holds the database keeps no unmaintained copy. Returns
    /// whether the copy was removed; removing a copy that is not here is harmless.
    pub fn drop_reference(&self, db: &str) -> Result<bool, StorageError> {
        check_name(db)?;
        let mut open = self.lock()?;
        if open.partitions.keys().any(|(d, _)| d == db) || open.installing.iter().any(|(d, _)| d == db) {
            return Ok(false);
        }
        open.references.remove(db);
        remove_files(&self.reference_path(db))?;
        Ok(true)
    }

    /// Deletes the log entries with index ≤ `keep_after_index` (the caller picks a point no copy still needs) and
    /// truncates the WAL into the main file.
    pub fn checkpoint_partition(&self, db: &str, ordinal: u32, keep_after_index: u64) -> Result<(), StorageError> {
        let (conn, _) = self.partition(db, ordinal)?;
        let conn = lock_conn(&conn)?;
        log::in_transaction(&conn, || log::truncate(&conn, keep_after_index))?;
        // A reader (a snapshot in progress) can keep the checkpoint from finishing; that is not an error, the next
        // checkpoint completes it.
        let (busy, _, _): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if busy != 0 {
            tracing::debug!("checkpoint of {db}:{ordinal} did not finish: a reader is active");
        }
        Ok(())
    }
}

/// How long a dropped partition's connection may stay in use by statements that already held it.
const DROP_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Closes a partition connection once no statement holds it any more (bounded: after `DROP_CLOSE_WAIT` the last
/// holder closes it). Closing it before its files are deleted matters beyond tidiness: SQLite's close of the last
/// connection in WAL mode deletes the `-wal` file by name, which, done later, could hit the WAL of a new copy of
/// the partition created at the same path meanwhile.
fn close_when_unused(conn: Shared) {
    let deadline = Instant::now() + DROP_CLOSE_WAIT;
    let mut conn = conn;
    loop {
        match Arc::try_unwrap(conn) {
            Ok(only) => {
                drop(only);
                return;
            }
            Err(shared) if Instant::now() < deadline => {
                conn = shared;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => {
                tracing::warn!("a dropped partition's connection is still in use; it closes with its last statement");
                return;
            }
        }
    }
}

/// The write-ahead log next to the SQLite file at `path`.
fn wal_path(path: &Path) -> PathBuf {
    crate::suffixed(path, "-wal")
}

fn remove_files(path: &Path) -> Result<(), StorageError> {
    for suffix in ["", "-wal", "-shm", "-journal", held::JOURNAL_SUFFIX] {
        match std::fs::remove_file(crate::suffixed(path, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Creates `dir` (and its parents) mode 0700: partition files hold user data.
fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Durability;
    use canopy_sql::Value;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("canopy-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Files record the cluster they were created in; CREATE DATABASE on a leaf that now serves another cluster
    /// replaces a same-named copy of the old cluster (same database id, since ids start at 1 everywhere) instead of
    /// adopting its rows.
    #[test]
    fn files_record_their_cluster_and_another_clusters_copy_is_replaced() {
        let dir = temp_dir("cluster-id");
        let store = LeafStore::open(&dir).unwrap();
        let schema = ["CREATE TABLE x (id INTEGER PRIMARY KEY)".to_string()];
        store.set_cluster_id(Some("theirs".into()));
        store.create_partitions("test", &[0], &schema, &[], Durability::Async, DatabaseId(1)).unwrap();
        store.execute_on_partition("test", 0, "INSERT INTO x VALUES (1)").unwrap();
        let listed = store.list().unwrap();
        assert!(listed.iter().all(|l| l.cluster_id.as_deref() == Some("theirs")), "{listed:?}");
        store.set_cluster_id(Some("ours".into()));
        store.create_partitions("test", &[0], &schema, &[], Durability::Async, DatabaseId(1)).unwrap();
        let rows = store.execute_on_partition("test", 0, "SELECT count(*) FROM x").unwrap();
        let Outcome::Rows(rows) = rows else { panic!("rows") };
        assert_eq!(rows.rows[0][0], Value::Integer(0), "the other cluster's rows were adopted");
        assert!(store.list().unwrap().iter().all(|l| l.cluster_id.as_deref() == Some("ours")));
    }

    /// Statement text reaching a leaf (RPC Execute or Ddl, or the leaf's own MySQL port) never opens another file:
    /// ATTACH, DETACH and VACUUM INTO are refused on partitions and reference copies, after a reopen too, while
    /// the store's own attached reference copy keeps working.
    #[test]
    fn statements_cannot_attach_detach_or_vacuum_into_files() {
        let dir = temp_dir("authorizer");
        let outside = dir.join("outside.sqlite");
        let attach = format!("ATTACH DATABASE '{}' AS evil", outside.display());
        let vacuum = format!("VACUUM INTO '{}'", outside.display());
        for reopen in [false, true] {
            let store = LeafStore::open(&dir).unwrap();
            if !reopen {
                let schema = ["CREATE TABLE x (id INTEGER PRIMARY KEY)".to_string()];
                let reference = ["CREATE TABLE r (k INTEGER)".to_string()];
                store.create_partitions("test", &[0], &schema, &reference, Durability::Async, DatabaseId(1)).unwrap();
            }
            store.set_partition_state("test", 0, PartitionState::Online).unwrap();
            for sql in [attach.as_str(), "DETACH DATABASE canopy_ref", vacuum.as_str(), "VACUUM"] {
                assert!(store.execute_on_partition("test", 0, sql).is_err(), "partition ran {sql}");
                assert!(store.execute_on_reference("test", sql).is_err(), "reference ran {sql}");
            }
            assert!(store.ddl_on_partition("test", 0, std::slice::from_ref(&attach)).is_err(), "DDL ran ATTACH");
            assert!(store.ddl_on_reference("test", std::slice::from_ref(&attach)).is_err(), "reference DDL ran ATTACH");
            assert!(store.execute_on_partition("test", 0, "SELECT load_extension('x')").is_err());
            assert!(!outside.exists(), "a statement created a file outside the store");
            let rows = store.execute_on_partition("test", 0, "SELECT count(*) FROM r").unwrap();
            assert!(matches!(rows, Outcome::Rows(_)), "the reference copy stays attached");
        }
    }

    fn count_rows(store: &LeafStore, db: &str, ordinal: u32) -> Value {
        let Outcome::Rows(rs) = store.execute_on_partition(db, ordinal, "SELECT count(*) FROM t").unwrap() else {
            panic!("rows")
        };
        rs.rows[0][0].clone()
    }

    /// Group commit: eight threads commit on two sync-durability partitions while the flusher holds its round
    /// back. None of them returns before the round (an acknowledgement waits for its fsync), every row is visible
    /// to readers once its COMMIT returned, and the one round then costs one fsync per partition, not one per
    /// commit. The connections are FULL again afterwards (only client commits defer their sync), and the rows
    /// survive a reopen.
    #[test]
    fn concurrent_commits_share_one_fsync_per_partition_and_wait_for_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const THREADS: usize = 8;
        let dir = temp_dir("group-commit");
        let schema = ["CREATE TABLE t (id INTEGER PRIMARY KEY)".to_string()];
        {
            let store = Arc::new(LeafStore::open(&dir).unwrap());
            store.create_partitions("g", &[0, 1], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
            let before = store.flush_counts();
            store.flusher.pause();
            let returned = Arc::new(AtomicUsize::new(0));
            let writers: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (store, returned) = (store.clone(), returned.clone());
                    std::thread::spawn(move || {
                        let id = [Value::Integer(i as i64)];
                        let ordinal = (i % 2) as u32;
                        let out =
                            store.execute_on_partition_in_term("g", ordinal, Term(0), "INSERT INTO t VALUES (?1)", &id);
                        returned.fetch_add(1, Ordering::SeqCst);
                        (i, out)
                    })
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while store.flusher.waiting() < THREADS {
                assert!(Instant::now() < deadline, "only {} commits reached the flusher", store.flusher.waiting());
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(returned.load(Ordering::SeqCst), 0, "a commit was acknowledged before its fsync");
            for ordinal in [0, 1] {
                assert_eq!(count_rows(&store, "g", ordinal), Value::Integer(4), "committed rows are visible");
            }
            store.flusher.resume();
            for writer in writers {
                let (i, out) = writer.join().expect("writer thread");
                assert_eq!(out.unwrap(), Outcome::Affected { rows: 1, last_insert_id: i as i64 });
            }
            let after = store.flush_counts();
            assert_eq!(after.commits - before.commits, THREADS as u64);
            assert_eq!(after.rounds - before.rounds, 1, "{before:?} -> {after:?}");
            assert_eq!(after.fsyncs - before.fsyncs, 2, "one fsync per partition: {before:?} -> {after:?}");
            assert_eq!(store.synchronous_level("g", 0).unwrap(), 2, "the connection is FULL again");
            // A read and a write that changes nothing wait for no round.
            store.execute_on_partition_in_term("g", 0, Term(0), "SELECT count(*) FROM t", &[]).unwrap();
            store.execute_on_partition_in_term("g", 0, Term(0), "DELETE FROM t WHERE id = -1", &[]).unwrap();
            assert_eq!(store.flush_counts(), after);
        }
        let store = LeafStore::open(&dir).unwrap();
        for ordinal in [0, 1] {
            store.set_partition_state("g", ordinal, PartitionState::Online).unwrap();
            assert_eq!(count_rows(&store, "g", ordinal), Value::Integer(4), "the rows survive a reopen");
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Async durability: commits are not synced at all (SQLite's NORMAL), so they never wait for the flusher.
    #[test]
    fn async_durability_commits_skip_the_flusher() {
        let dir = temp_dir("group-commit-async");
        let store = LeafStore::open(&dir).unwrap();
        let schema = ["CREATE TABLE t (id INTEGER PRIMARY KEY)".to_string()];
        store.create_partitions("a", &[0], &schema, &[], Durability::Async, DatabaseId(1)).unwrap();
        store.flusher.pause();
        store.execute_on_partition_in_term("a", 0, Term(0), "INSERT INTO t VALUES (1)", &[]).unwrap();
        store.flusher.resume();
        assert_eq!(store.flush_counts().commits, 0);
        assert_eq!(store.synchronous_level("a", 0).unwrap(), 1);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
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
                    Durability::Async,
                    DatabaseId(1),
                )
                .unwrap();
            assert_eq!(store.synchronous_level("test", 4).unwrap(), 1, "async durability is synchronous=NORMAL");
            store.execute_on_reference("test", "INSERT INTO r VALUES (1, 'one')").unwrap();
            let out = store.execute_on_partition("test", 4, "INSERT INTO x VALUES (7), (8)").unwrap();
            assert_eq!(out, Outcome::Affected { rows: 2, last_insert_id: 8 });
        }
        let store = LeafStore::open(&dir).unwrap();
        assert_eq!(store.synchronous_level("test", 0).unwrap(), 1, "the durability survives a reopen");
        // After a restart nothing serves until the master aggregator attaches it.
        let err = store.execute_on_partition("test", 4, "SELECT 1").unwrap_err();
        assert!(matches!(err, StorageError::NotOnline { state: PartitionState::Pending, .. }), "{err}");
        assert!(store.list().unwrap().iter().all(|d| d.ordinal.is_none() || d.state == PartitionState::Pending));
        store.set_partition_state("test", 4, PartitionState::Online).unwrap();
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
        store
            .create_partitions(
                "d",
                &[0],
                &["CREATE TABLE t (id INTEGER PRIMARY KEY)".into()],
                &[],
                Durability::Sync,
                DatabaseId(1),
            )
            .unwrap();
        assert_eq!(store.synchronous_level("d", 0).unwrap(), 2, "sync durability is synchronous=FULL");
        store.execute_on_partition("d", 0, "INSERT INTO t VALUES (1)").unwrap();
        let err = store.execute_on_partition("d", 0, "INSERT INTO t VALUES (2), (1)").unwrap_err();
        assert!(err.is_constraint(), "{err}");
        let Outcome::Rows(rs) = store.execute_on_partition("d", 0, "SELECT count(*) FROM t").unwrap() else { panic!() };
        assert_eq!(rs.rows, vec![vec![Value::Integer(1)]]);
        assert!(store.execute_on_partition("d", 0, "SELEC nonsense").is_err());
        assert!(matches!(
            store.create_partitions("../evil", &[0], &[], &[], Durability::Sync, DatabaseId(1)),
            Err(StorageError::BadName(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_write_that_changes_nothing_writes_nothing() {
        let dir = temp_dir("noop");
        let store = LeafStore::open(&dir).unwrap();
        let schema = ["CREATE TABLE t (id INTEGER PRIMARY KEY)".to_string()];
        store.create_partitions("d", &[0], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
        store.execute_on_partition("d", 0, "INSERT INTO t VALUES (1)").unwrap();
        let wal = dir.join("partitions").join("d_0.sqlite-wal");
        let before = (std::fs::metadata(&wal).unwrap().len(), store.list().unwrap());
        let out = store.execute_on_partition("d", 0, "DELETE FROM t WHERE id = 2").unwrap();
        assert!(matches!(out, Outcome::Affected { rows: 0, .. }), "{out:?}");
        let after = (std::fs::metadata(&wal).unwrap().len(), store.list().unwrap());
        assert_eq!(before, after, "no WAL frame, same position and commit count");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parameters_bind_by_number_and_writes_through_cached_statements_are_logged() {
        let dir = temp_dir("params");
        let store = LeafStore::open(&dir).unwrap();
        let schema = ["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)".to_string()];
        store.create_partitions("d", &[0], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
        let insert = "INSERT INTO t (id, v) VALUES (?1, ?2)";
        for i in 1..=3 {
            let out = store
                .execute_on_partition_with("d", 0, insert, &[Value::Integer(i), Value::Text(format!("v{i}"))])
                .unwrap();
            assert_eq!(out, Outcome::Affected { rows: 1, last_insert_id: i });
        }
        // A statement may use some of the numbers only; unused trailing parameters are ignored.
        let select = "SELECT v FROM t WHERE id = ?2";
        let Outcome::Rows(rs) = store
            .execute_on_partition_with("d", 0, select, &[Value::Integer(9), Value::Integer(2), Value::Null])
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(rs.rows, vec![vec![Value::Text("v2".into())]]);
        let err = store.execute_on_partition_with("d", 0, insert, &[Value::Integer(4)]).unwrap_err();
        assert!(err.to_string().contains("2 parameters"), "{err}");
        // Three logged writes: the cached BEGIN/COMMIT and log statements ran each time.
        let entries = store.log_since("d", 0, 0, u64::MAX).unwrap();
        assert_eq!(entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn rows(store: &LeafStore, db: &str, sql: &str) -> Vec<Vec<Value>> {
        match store.execute_on_reference(db, sql).unwrap() {
            Outcome::Rows(rs) => rs.rows,
            other => panic!("{other:?}"),
        }
    }

    fn whole_snapshot(store: &LeafStore, id: u64, size_bytes: u64) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let mut offset = 0;
        while offset < size_bytes {
            let chunk = store.read_snapshot_chunk(id, offset, 1 << 12).unwrap();
            offset += chunk.len() as u64;
            chunks.push(chunk);
        }
        chunks
    }

    /// History: two leaves hold reference copies of `d`; writes (one non-deterministic) and DDL run on the first
    /// only and its log entries are applied to the second; then the second diverges and is replaced by a snapshot of
    /// the first while a partition attaches it; last, a leaf without a copy installs one. Property: the copies are
    /// equal row for row and position for position, the partition joins against the replaced contents, a snapshot
    /// of another incarnation is refused, and an installed copy keeps the database's durability.
    #[test]
    fn reference_copies_follow_a_primary_log_and_a_snapshot_replaces_a_diverged_copy() {
        let (dir_a, dir_b) = (temp_dir("ref-primary"), temp_dir("ref-holder"));
        let (a, b) = (LeafStore::open(&dir_a).unwrap(), LeafStore::open(&dir_b).unwrap());
        let reference = ["CREATE TABLE r (k INTEGER PRIMARY KEY, v INTEGER)".to_string()];
        let schema = ["CREATE TABLE x (id INTEGER PRIMARY KEY)".to_string()];
        for store in [&a, &b] {
            store.create_partitions("d", &[0], &schema, &reference, Durability::Async, DatabaseId(7)).unwrap();
            store.execute_on_partition("d", 0, "INSERT INTO x VALUES (1)").unwrap();
        }
        a.execute_on_reference("d", "INSERT INTO r VALUES (1, 0), (2, 0)").unwrap();
        a.execute_on_reference("d", "UPDATE r SET v = random()").unwrap();
        a.ddl_on_reference("d", &["CREATE TABLE r2 (k INTEGER PRIMARY KEY)".to_string()]).unwrap();
        let (_, b_before) = b.reference_state("d").unwrap().unwrap();
        let entries = a.reference_log_since("d", b_before.index, u64::MAX).unwrap();
        let applied = b.apply_reference_log("d", &entries).unwrap();
        // Applying the same batch again changes nothing (entries at or below the position are skipped).
        assert_eq!(b.apply_reference_log("d", &entries).unwrap(), applied);
        let all = "SELECT k, v FROM r ORDER BY k";
        assert_eq!(rows(&a, "d", all), rows(&b, "d", all), "the values were computed once, on the primary");
        assert_eq!(a.reference_state("d").unwrap(), b.reference_state("d").unwrap());
        assert_eq!(rows(&b, "d", "SELECT count(*) FROM r2"), vec![vec![Value::Integer(0)]]);

        // The second copy diverges (a write that never went through the primary).
        b.execute_on_reference("d", "UPDATE r SET v = 5").unwrap();
        let (id, position, size_bytes) = a.snapshot_reference("d").unwrap();
        let chunks = whole_snapshot(&a, id, size_bytes);
        let refused = b.install_reference("d", DatabaseId(8), chunks.clone()).unwrap_err();
        assert!(matches!(refused, StorageError::BadSnapshot(_)), "{refused}");
        assert_eq!(b.install_reference("d", DatabaseId(7), chunks).unwrap(), position);
        a.release_snapshot(id).unwrap();
        assert_eq!(rows(&a, "d", all), rows(&b, "d", all));
        assert_eq!(b.reference_state("d").unwrap(), Some((Some(DatabaseId(7)), position)));
        // The partition's attached copy shows the replaced contents without being re-attached.
        let join = "SELECT x.id, r.v FROM x JOIN r ON r.k = 1";
        let on_partition = |s: &LeafStore| match s.execute_on_partition("d", 0, join).unwrap() {
            Outcome::Rows(rs) => rs.rows,
            other => panic!("{other:?}"),
        };
        assert_eq!(on_partition(&a), on_partition(&b));

        // A leaf that still holds a partition keeps its copy; without one, the copy goes.
        assert!(!b.drop_reference("d").unwrap());
        b.drop_partition("d", 0).unwrap();
        assert!(b.drop_reference("d").unwrap());
        assert_eq!(b.reference_state("d").unwrap(), None);
        // A leaf without any copy gets one from a snapshot.
        let (id, position, size_bytes) = a.snapshot_reference("d").unwrap();
        assert_eq!(b.install_reference("d", DatabaseId(7), whole_snapshot(&a, id, size_bytes)).unwrap(), position);
        assert_eq!(rows(&a, "d", all), rows(&b, "d", all));
        let synchronous = rows(&b, "d", "PRAGMA synchronous");
        assert_eq!(synchronous, vec![vec![Value::Integer(1)]], "the new copy keeps the database's async durability");
        drop((a, b));
        let b = LeafStore::open(&dir_b).unwrap();
        assert_eq!(
            b.reference_state("d").unwrap(),
            Some((Some(DatabaseId(7)), position)),
            "the installed copy survives a reopen"
        );
        let _ = std::fs::remove_dir_all(&dir_a);
        let _ = std::fs::remove_dir_all(&dir_b);
    }

    /// History: `SNAPSHOTS_MAX` snapshots are taken and never released (their copy targets died); one of them keeps
    /// being read. Property: while their leases run, a new snapshot is refused; once they expired, the unread ones
    /// are deleted (files included) when a new snapshot is requested, and the one still being read survives.
    #[test]
    fn snapshots_nobody_reads_expire_so_dead_targets_never_exhaust_the_slots() {
        let dir = temp_dir("lease");
        let store = LeafStore::open(&dir).unwrap();
        let schema = ["CREATE TABLE t (id INTEGER PRIMARY KEY)".to_string()];
        store.create_partitions("d", &[0], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
        let t0 = Instant::now();
        let lease = Duration::from_millis(SNAPSHOT_LEASE_MS);
        let snaps: Vec<PartitionSnapshot> =
            (0..SNAPSHOTS_MAX).map(|_| store.snapshot_partition_at("d", 0, t0).unwrap()).collect();
        let refused = store.snapshot_partition_at("d", 0, t0 + lease / 2);
        assert!(matches!(refused, Err(StorageError::TooManySnapshots)), "{refused:?}");
        let read = snaps[0].id;
        assert!(!store.read_snapshot_chunk_at(read, 0, 100, t0 + lease / 2).unwrap().is_empty());
        let fresh = store.snapshot_partition_at("d", 0, t0 + lease + Duration::from_secs(1)).unwrap();
        assert!(!store.read_snapshot_chunk_at(read, 0, 100, t0 + lease).unwrap().is_empty(), "renewed by reads");
        for snap in &snaps[1..] {
            let gone = store.read_snapshot_chunk_at(snap.id, 0, 100, t0 + lease);
            assert!(matches!(gone, Err(StorageError::NoSuchSnapshot(_))), "{gone:?}");
        }
        let files = std::fs::read_dir(dir.join("snapshots")).unwrap().count();
        assert_eq!(files, 2, "only {read} and {} are left on disk", fresh.id);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_recreated_database_never_reuses_stale_copies() {
        let dir = temp_dir("recreate");
        let store = LeafStore::open(&dir).unwrap();
        let schema = ["CREATE TABLE t (id INTEGER PRIMARY KEY)".to_string()];
        store.create_partitions("d", &[0], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
        store.execute_on_partition("d", 0, "INSERT INTO t VALUES (1)").unwrap();
        // Same incarnation: a retry keeps the data.
        store.create_partitions("d", &[0], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
        let count = |s: &LeafStore| match s.execute_on_partition("d", 0, "SELECT count(*) FROM t").unwrap() {
            Outcome::Rows(rs) => rs.rows[0][0].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(count(&store), Value::Integer(1));
        // A new incarnation of `d` (dropped elsewhere while this leaf was away): the stale copy is replaced.
        store.create_partitions("d", &[0], &schema, &[], Durability::Sync, DatabaseId(2)).unwrap();
        assert_eq!(count(&store), Value::Integer(0));
        assert_eq!(
            store.list().unwrap().iter().find(|l| l.ordinal == Some(0)).unwrap().database_id,
            Some(DatabaseId(2))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
