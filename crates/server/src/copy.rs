//! The target side of a partition copy, run on the leaf that receives it: pull a consistent snapshot from the
//! source leaf in chunks, install it (verified, under a temporary name until complete), then apply the source's
//! change log until nothing is left. The source keeps serving throughout; only the final catch-up of a move runs
//! after the source was fenced.

use std::sync::Arc;
use std::time::Duration;

use canopy_rpc::{Client, Request, Response};
use canopy_storage::LeafStore;

use crate::cluster::resolve;
use crate::leaf::{CHUNK_BYTES, blocking, from_record};

const SOURCE_TIMEOUT: Duration = Duration::from_secs(60);
/// A catch-up that still finds new entries after this many rounds gives up with an error (never reports success
/// without having reached the source's end of log): writers outpace it, and the move must be retried later.
const CATCH_UP_ROUNDS_MAX: u32 = 1000;
/// Test-only: overrides `CATCH_UP_ROUNDS_MAX` (read once, at the first catch-up), so end-to-end tests can make a
/// catch-up fall short on purpose. Not a tuning knob; production never sets it.
const CATCH_UP_ROUNDS_ENV: &str = "CANOPY_TEST_CATCH_UP_ROUNDS_MAX";
/// Test-only: overrides the payload bytes asked for per catch-up round (`CHUNK_BYTES`); `1` makes every round one
/// entry. Read once, like `CATCH_UP_ROUNDS_ENV`.
const CATCH_UP_BATCH_BYTES_ENV: &str = "CANOPY_TEST_CATCH_UP_BATCH_BYTES";

async fn call(source: &Client, request: &Request) -> Result<Response, String> {
    match source.call(request, SOURCE_TIMEOUT).await {
        Ok(Response::Error(e)) => Err(format!("source leaf: {e}")),
        Ok(r) => Ok(r),
        Err(e) => Err(format!("source leaf unreachable: {e}")),
    }
}

fn client(host: &str, rpc_port: u16) -> Result<Client, String> {
    let addr = resolve(host, rpc_port).map_err(|e| format!("cannot resolve source leaf: {e}"))?;
    Ok(Client::new(addr, Duration::from_secs(3)))
}

/// COPY PARTITION on the target leaf; returns the copy's log index.
pub async fn copy_partition(
    store: &Arc<LeafStore>,
    db: &str,
    ordinal: u32,
    host: &str,
    rpc_port: u16,
) -> Result<u64, String> {
    let source = client(host, rpc_port)?;
    let Response::Snapshot { id, bytes, .. } =
        call(&source, &Request::SnapshotPartition { db: db.to_string(), ordinal }).await?
    else {
        return Err("source leaf answered a snapshot request with something else".into());
    };
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    let fetched: Result<(), String> = async {
        while offset < bytes {
            let len = (bytes - offset).min(u64::from(CHUNK_BYTES)) as u32;
            let Response::Chunk(chunk) = call(&source, &Request::SnapshotChunk { id, offset, len }).await? else {
                return Err("source leaf answered a chunk request with something else".into());
            };
            if chunk.is_empty() {
                return Err("source snapshot ended early".into());
            }
            offset += chunk.len() as u64;
            chunks.push(chunk);
        }
        Ok(())
    }
    .await;
    let _ = call(&source, &Request::ReleaseSnapshot { id }).await;
    fetched?;
    let (db_owned, store_owned) = (db.to_string(), store.clone());
    blocking(&store_owned, move |s| s.install_partition(&db_owned, ordinal, chunks))
        .await
        .map_err(|e| format!("installing the copy failed: {e}"))?;
    catch_up_with(store, &source, db, ordinal).await
}

/// Applies the source's change log to the local copy until the source has nothing newer; returns the log index.
pub async fn catch_up(
    store: &Arc<LeafStore>,
    db: &str,
    ordinal: u32,
    host: &str,
    rpc_port: u16,
) -> Result<u64, String> {
    let source = client(host, rpc_port)?;
    catch_up_with(store, &source, db, ordinal).await
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
async fn catch_up_with(store: &Arc<LeafStore>, source: &Client, db: &str, ordinal: u32) -> Result<u64, String> {
    let (name, st) = (db.to_string(), store.clone());
    let mut position = blocking(&st, move |s| s.log_position(&name, ordinal)).await.map_err(|e| e.to_string())?;
    let (rounds_max, max_bytes) = catch_up_limits();
    for _ in 0..rounds_max {
        let request = Request::LogSince { db: db.to_string(), ordinal, after_index: position.index, max_bytes };
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
