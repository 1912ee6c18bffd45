//! The target side of a partition copy, run on the leaf that receives it: pull a consistent snapshot from the
//! source leaf in chunks, streamed into its install (verified, under a temporary name until complete; one chunk in
//! memory at a time), then apply the source's change log until nothing is left. The source keeps serving
//! throughout; only the final catch-up of a move runs after the source was fenced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use canopy_rpc::{Client, Credentials, PartitionTerm, Request, Response};
use canopy_storage::{LeafStore, StorageError};

use crate::leaf::source::{call, client};
use crate::leaf::{CHUNK_BYTES, blocking, from_record};

/// A catch-up that still finds new entries after this many rounds gives up with an error (never reports success
/// without having reached the source's end of log): writers outpace it, and the move must be retried later.
const CATCH_UP_ROUNDS_MAX: u32 = 1000;
/// Test-only: overrides `CATCH_UP_ROUNDS_MAX` (read once, at the first catch-up), so end-to-end tests can make a
/// catch-up fall short on purpose. Not a tuning knob; production never sets it.
const CATCH_UP_ROUNDS_ENV: &str = "CANOPY_TEST_CATCH_UP_ROUNDS_MAX";
/// Test-only: overrides the payload bytes asked for per catch-up round (`CHUNK_BYTES`); `1` makes every round one
/// entry. Read once, like `CATCH_UP_ROUNDS_ENV`.
const CATCH_UP_BATCH_BYTES_ENV: &str = "CANOPY_TEST_CATCH_UP_BATCH_BYTES";

/// Running copies on this leaf: snapshot bytes received so far and in all, by partition (`CopyProgress`, which the
/// master aggregator turns into SHOW REBALANCE STATUS's live estimate).
type Progress = HashMap<(String, u32), (u64, u64)>;

fn progress_map() -> std::sync::MutexGuard<'static, Progress> {
    static PROGRESS: OnceLock<Mutex<Progress>> = OnceLock::new();
    PROGRESS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// `(bytes received, bytes in all)` of the running copy of `db:ordinal`; zeros when none runs.
pub fn progress(db: &str, ordinal: u32) -> (u64, u64) {
    progress_map().get(&(db.to_string(), ordinal)).copied().unwrap_or((0, 0))
}

/// A copy's entry in the progress map, removed when the copy ends however it ends.
struct Tracked((String, u32));

impl Tracked {
    fn start(db: &str, ordinal: u32, total: u64) -> Tracked {
        let key = (db.to_string(), ordinal);
        progress_map().insert(key.clone(), (0, total));
        Tracked(key)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        progress_map().remove(&self.0);
    }
}

/// COPY PARTITION on the target leaf; returns the copy's log index. The snapshot streams into the installing file
/// chunk by chunk (one chunk in memory at a time, whatever the partition's size), and every request to the source
/// has its own timeout, so the copy is bounded by its progress, not by its total time.
pub async fn copy_partition(
    store: &Arc<LeafStore>,
    db: &str,
    source_partition: PartitionTerm,
    host: &str,
    rpc_port: u16,
    credentials: &Arc<Credentials>,
) -> Result<u64, String> {
    let source = client(host, rpc_port, credentials)?;
    let ordinal = source_partition.ordinal;
    let Response::Snapshot { id, bytes, .. } =
        call(&source, &Request::SnapshotPartition { db: db.to_string(), partition: source_partition }).await?
    else {
        return Err("source leaf answered a snapshot request with something else".into());
    };
    let tracked = Tracked::start(db, ordinal, bytes);
    // The install runs on the blocking pool and pulls each chunk when it is ready for it.
    let (runtime, fetcher, key) = (tokio::runtime::Handle::current(), source.clone(), tracked.0.clone());
    let fetch =
        move |offset, len| match runtime.block_on(call(&fetcher, &Request::SnapshotChunk { id, offset, len }))? {
            Response::Chunk(chunk) => {
                if let Some(entry) = progress_map().get_mut(&key) {
                    entry.0 = offset + chunk.len() as u64;
                }
                Ok(chunk)
            }
            _ => Err("source leaf answered a chunk request with something else".to_string()),
        };
    let db_owned = db.to_string();
    let installed = blocking(store, move |s| {
        s.install_partition_streamed(&db_owned, ordinal, snapshot_chunks(bytes, CHUNK_BYTES, fetch))
    })
    .await;
    let _ = call(&source, &Request::ReleaseSnapshot { id }).await;
    installed.map_err(|e| format!("installing the copy failed: {e}"))?;
    let caught_up = catch_up_with(store, &source, db, source_partition).await;
    drop(tracked);
    caught_up
}

/// The chunks of a snapshot of `bytes` bytes, each fetched (`fetch(offset, len)`, at most `chunk_bytes`) only when
/// the consumer asks for it. A failed or empty fetch ends the stream with an error.
fn snapshot_chunks<C: AsRef<[u8]>>(
    bytes: u64,
    chunk_bytes: u32,
    mut fetch: impl FnMut(u64, u32) -> Result<C, String>,
) -> impl Iterator<Item = Result<C, StorageError>> {
    let (mut offset, mut failed) = (0u64, false);
    std::iter::from_fn(move || {
        if failed || offset >= bytes {
            return None;
        }
        let len = (bytes - offset).min(u64::from(chunk_bytes)) as u32;
        match fetch(offset, len) {
            Ok(chunk) if !chunk.as_ref().is_empty() => {
                offset += chunk.as_ref().len() as u64;
                Some(Ok(chunk))
            }
            fetched => {
                failed = true;
                let reason = fetched.err().unwrap_or_else(|| "source snapshot ended early".into());
                Some(Err(StorageError::ChunkSource(reason)))
            }
        }
    })
}

/// Applies the source's change log to the local copy until the source has nothing newer; returns the log index.
pub async fn catch_up(
    store: &Arc<LeafStore>,
    db: &str,
    source_partition: PartitionTerm,
    host: &str,
    rpc_port: u16,
    credentials: &Arc<Credentials>,
) -> Result<u64, String> {
    let source = client(host, rpc_port, credentials)?;
    catch_up_with(store, &source, db, source_partition).await
}

/// The catch-up limits: `(rounds, bytes per round)`, from the test-only overrides when set.
fn catch_up_limits() -> (u32, u64) {
    static LIMITS: std::sync::OnceLock<(u32, u64)> = std::sync::OnceLock::new();
    *LIMITS.get_or_init(|| {
        let read = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let rounds = read(CATCH_UP_ROUNDS_ENV).map_or(CATCH_UP_ROUNDS_MAX, |r| r.clamp(1, u64::from(u32::MAX)) as u32);
        let bytes = read(CATCH_UP_BATCH_BYTES_ENV).map_or(u64::from(CHUNK_BYTES), |b| b.max(1));
        (rounds, bytes)
    })
}

/// Applies the source's log until a round finds nothing newer, and returns the index reached then. Falling short
/// after the round limit is an error: the caller must never take a copy for caught up when it is not.
async fn catch_up_with(
    store: &Arc<LeafStore>,
    source: &Client,
    db: &str,
    source_partition: PartitionTerm,
) -> Result<u64, String> {
    let ordinal = source_partition.ordinal;
    let (name, st) = (db.to_string(), store.clone());
    let mut position = blocking(&st, move |s| s.log_position(&name, ordinal)).await.map_err(|e| e.to_string())?;
    let (rounds_max, max_bytes) = catch_up_limits();
    for _ in 0..rounds_max {
        let request = Request::LogSince {
            db: db.to_string(),
            partition: source_partition,
            after_index: position.index,
            max_bytes,
        };
        let Response::Log(records) = call(source, &request).await? else {
            return Err("source leaf answered a log request with something else".into());
        };
        if records.is_empty() {
            return Ok(position.index);
        }
        let entries = records.into_iter().map(from_record).collect::<Result<Vec<_>, _>>()?;
        let name = db.to_string();
        position = blocking(store, move |s| s.apply_log(&name, ordinal, &entries))
            .await
            .map_err(|e| format!("applying the source's log failed: {e}"))?;
    }
    Err(format!(
        "the copy is still behind the source after {rounds_max} catch-up rounds (at log index {})",
        position.index
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_storage::{Durability, Outcome, PartitionState};
    use canopy_types::DatabaseId;
    use std::cell::Cell;
    use std::rc::Rc;

    const CHUNK: u32 = 64 << 10;

    #[test]
    fn a_copy_s_progress_is_listed_while_it_runs() {
        let tracked = super::Tracked::start("progressdb", 7, 100);
        assert_eq!(progress("progressdb", 7), (0, 100));
        progress_map().get_mut(&("progressdb".to_string(), 7)).expect("listed").0 = 40;
        assert_eq!(progress("progressdb", 7), (40, 100));
        drop(tracked);
        assert_eq!(progress("progressdb", 7), (0, 0), "gone once the copy ends");
    }

    /// A received chunk that counts itself in `live` until it is dropped.
    struct Tracked {
        bytes: Vec<u8>,
        live: Rc<Cell<u64>>,
    }

    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.bytes
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.live.set(self.live.get() - self.bytes.len() as u64);
        }
    }

    /// A source leaf's store holding `d:0` with 2000 rows of 500 bytes (several chunks), and a target's store
    /// holding only `d`'s reference copy.
    fn stores(name: &str) -> (std::path::PathBuf, LeafStore, LeafStore) {
        let dir = std::env::temp_dir().join(format!("canopy-copy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (source, target) =
            (LeafStore::open(&dir.join("source")).unwrap(), LeafStore::open(&dir.join("target")).unwrap());
        let schema = ["CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT)".to_string()];
        source.create_partitions("d", &[0], &schema, &[], Durability::Async, DatabaseId(1)).unwrap();
        target.create_partitions("d", &[], &schema, &[], Durability::Async, DatabaseId(1)).unwrap();
        let fill = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 2000) \
                    INSERT INTO t SELECT n, printf('%0500d', n) FROM c";
        source.execute_on_partition("d", 0, fill).unwrap();
        (dir, source, target)
    }

    /// History: a partition several chunks large is installed through `snapshot_chunks`, each chunk counted while
    /// it is alive. Property: the copy is whole (position and rows), and at most one chunk was held at any time.
    #[test]
    fn a_snapshot_streams_into_the_install_one_chunk_at_a_time() {
        let (dir, source, target) = stores("stream");
        let snap = source.snapshot_partition("d", 0).unwrap();
        assert!(snap.size_bytes > 8 * u64::from(CHUNK), "the partition spans many chunks ({} bytes)", snap.size_bytes);
        let (live, peak) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
        let fetch = |offset, len| {
            let bytes = source.read_snapshot_chunk(snap.id, offset, len).map_err(|e| e.to_string())?;
            live.set(live.get() + bytes.len() as u64);
            peak.set(peak.get().max(live.get()));
            Ok(Tracked { bytes, live: live.clone() })
        };
        let position =
            target.install_partition_streamed("d", 0, snapshot_chunks(snap.size_bytes, CHUNK, fetch)).unwrap();
        assert_eq!(position, snap.position);
        assert!(peak.get() <= u64::from(CHUNK), "{} bytes were buffered at once", peak.get());
        target.set_partition_state("d", 0, PartitionState::Online).unwrap();
        let Outcome::Rows(rs) = target.execute_on_partition("d", 0, "SELECT count(*) FROM t").unwrap() else {
            panic!()
        };
        assert_eq!(rs.rows, vec![vec![canopy_sql::Value::Integer(2000)]]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// History: the source fails on the third chunk. Property: the install fails with the source's error, leaves
    /// no partition and no temporary file behind, and a retry succeeds.
    #[test]
    fn a_failed_chunk_aborts_the_install_cleanly() {
        let (dir, source, target) = stores("failedchunk");
        let snap = source.snapshot_partition("d", 0).unwrap();
        let mut calls = 0;
        let failing = |offset, len| {
            calls += 1;
            if calls == 3 {
                Err("connection reset".to_string())
            } else {
                source.read_snapshot_chunk(snap.id, offset, len).map_err(|e| e.to_string())
            }
        };
        let err =
            target.install_partition_streamed("d", 0, snapshot_chunks(snap.size_bytes, CHUNK, failing)).unwrap_err();
        assert!(matches!(&err, StorageError::ChunkSource(m) if m == "connection reset"), "{err}");
        assert!(target.list().unwrap().iter().all(|d| d.ordinal.is_none()), "no partition was installed");
        let left = std::fs::read_dir(dir.join("target/partitions")).unwrap().count();
        assert_eq!(left, 0, "no temporary file is left");
        let fetch = |offset, len| source.read_snapshot_chunk(snap.id, offset, len).map_err(|e| e.to_string());
        let position =
            target.install_partition_streamed("d", 0, snapshot_chunks(snap.size_bytes, CHUNK, fetch)).unwrap();
        assert_eq!(position, snap.position);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
