//! The target side of a partition copy, run on the leaf that receives it: pull a consistent snapshot from the
//! source leaf in chunks, install it (verified, under a temporary name until complete), then apply the source's
//! change log until nothing is left. The source keeps serving throughout; only the final catch-up of a move runs
//! after the source was fenced.

use std::sync::Arc;
use std::time::Duration;

use canopy_rpc::{Client, Credentials, Request, Response};
use canopy_storage::LeafStore;

use crate::cluster::resolve;
use crate::leaf::{CHUNK_BYTES, blocking, from_record};

const SOURCE_TIMEOUT: Duration = Duration::from_secs(60);
/// A catch-up that keeps finding new entries stops after this many rounds; the caller's final catch-up (with the
/// source fenced) finishes the job.
const CATCH_UP_ROUNDS_MAX: u32 = 1000;

async fn call(source: &Client, request: &Request) -> Result<Response, String> {
    match source.call(request, SOURCE_TIMEOUT).await {
        Ok(Response::Error(e)) => Err(format!("source leaf: {e}")),
        Ok(r) => Ok(r),
        Err(e) => Err(format!("source leaf unreachable: {e}")),
    }
}

/// A client for the source leaf, presenting this leaf's credentials (the source serves only its cluster).
fn client(host: &str, rpc_port: u16, credentials: &Arc<Credentials>) -> Result<Client, String> {
    let addr = resolve(host, rpc_port).map_err(|e| format!("cannot resolve source leaf: {e}"))?;
    Ok(Client::new(addr, Duration::from_secs(3), credentials.clone()))
}

/// COPY PARTITION on the target leaf; returns the copy's log index.
pub async fn copy_partition(
    store: &Arc<LeafStore>,
    db: &str,
    ordinal: u32,
    host: &str,
    rpc_port: u16,
    credentials: &Arc<Credentials>,
) -> Result<u64, String> {
    let source = client(host, rpc_port, credentials)?;
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
    credentials: &Arc<Credentials>,
) -> Result<u64, String> {
    let source = client(host, rpc_port, credentials)?;
    catch_up_with(store, &source, db, ordinal).await
}

async fn catch_up_with(store: &Arc<LeafStore>, source: &Client, db: &str, ordinal: u32) -> Result<u64, String> {
    let (name, st) = (db.to_string(), store.clone());
    let mut position = blocking(&st, move |s| s.log_position(&name, ordinal)).await.map_err(|e| e.to_string())?;
    for _ in 0..CATCH_UP_ROUNDS_MAX {
        let request = Request::LogSince {
            db: db.to_string(),
            ordinal,
            after_index: position.index,
            max_bytes: u64::from(CHUNK_BYTES),
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
    Ok(position.index)
}
