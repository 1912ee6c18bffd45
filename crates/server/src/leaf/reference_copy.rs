//! The holder side of a reference copy, run on a leaf: make the local reference copy of a database equal to the
//! reference primary's (on another leaf). A copy whose log is a prefix of the primary's catches up from it; any other
//! copy (missing, of another database incarnation, diverged, ahead of the primary, or one that cannot be checked) is
//! first replaced by a snapshot of the primary's. The master aggregator decides when this runs and serialises it with
//! reference writes (`master/reference.rs`); this side only compares logs and moves entries and bytes.

use std::sync::Arc;

use canopy_rpc::{Client, Credentials, Request, Response};
use canopy_storage::{LeafStore, LogEntry};

use crate::leaf::source::{call, client};
use crate::leaf::{CHUNK_BYTES, blocking, from_record};

/// Catch-up rounds of one sync. The master aggregator holds the database's reference lock meanwhile, so the
/// primary's log does not grow and a round fetches up to `CHUNK_BYTES` of the backlog.
const CATCH_UP_ROUNDS_MAX: u32 = 10_000;

/// SyncReference on the holder; returns the copy's log index, equal to the source's.
pub async fn sync(
    store: &Arc<LeafStore>,
    db: &str,
    database_id: canopy_types::DatabaseId,
    host: &str,
    rpc_port: u16,
    credentials: &Arc<Credentials>,
) -> Result<u64, String> {
    let source = client(host, rpc_port, credentials)?;
    if let Some(backlog) = verified_backlog(store, &source, db, database_id).await {
        match catch_up(store, &source, db, backlog).await {
            Ok(index) => return Ok(index),
            // A copy that passed the check but cannot take the entries is not what it seemed: replace it.
            Err(e) => tracing::warn!("catching up the reference copy of {db} failed ({e}); replacing it"),
        }
    }
    install(store, &source, db, database_id).await?;
    catch_up(store, &source, db, Vec::new()).await
}

/// The source's first entries after the local position, when the local copy belongs to incarnation `database_id`
/// and its last log entry is the source's entry at the same index; None otherwise (the copy must be replaced).
/// Copies only ever apply the primary's entries in order and logs are never rewritten, so an equal last entry means
/// the whole local log is a prefix of the source's; a copy that took an entry the others never got (a write whose
/// outcome was unknown, or one made on the leaf directly) has a last entry the source lacks or holds differently.
async fn verified_backlog(
    store: &Arc<LeafStore>,
    source: &Client,
    db: &str,
    database_id: canopy_types::DatabaseId,
) -> Option<Vec<LogEntry>> {
    let name = db.to_string();
    let local = blocking(store, move |s| {
        let Some((id, position)) = s.reference_state(&name)? else { return Ok(None) };
        let last = match position.index {
            0 => None,
            index => Some(s.reference_log_since(&name, index - 1, 0)?.into_iter().next().ok_or_else(|| {
                canopy_storage::StorageError::Internal(format!("the reference log of {name} lacks entry {index}"))
            })?),
        };
        Ok(Some((id, position, last)))
    })
    .await;
    let Ok(Some((Some(id), position, last))) = local else { return None };
    if id != database_id {
        return None;
    }
    // From the local last entry on (from the start for an empty log, a prefix of any log).
    let after_index = position.index.saturating_sub(1);
    let request = Request::ReferenceLogSince { db: db.to_string(), after_index, max_bytes: u64::from(CHUNK_BYTES) };
    let Ok(Response::Log(records)) = call(source, &request).await else { return None };
    let entries = records.into_iter().map(from_record).collect::<Result<Vec<_>, _>>().ok()?;
    backlog_after(last.as_ref(), entries)
}

/// Given the local copy's last entry (None for an empty log) and the source's entries from that entry's index on
/// (from the start for an empty log): the source's entries after it when the local log is a prefix of the source's,
/// None when the local copy must be replaced. Pure.
fn backlog_after(last: Option<&LogEntry>, mut source: Vec<LogEntry>) -> Option<Vec<LogEntry>> {
    match last {
        None => Some(source),
        Some(last) if source.first() == Some(last) => {
            source.remove(0);
            Some(source)
        }
        Some(_) => None,
    }
}

/// Replaces the local copy with a snapshot of the source's. The snapshot is held in memory while it arrives:
/// reference tables are copied to every leaf of their database, so they are small by design.
async fn install(
    store: &Arc<LeafStore>,
    source: &Client,
    db: &str,
    database_id: canopy_types::DatabaseId,
) -> Result<(), String> {
    let Response::Snapshot { id, bytes, .. } = call(source, &Request::SnapshotReference { db: db.to_string() }).await?
    else {
        return Err("source leaf answered a snapshot request with something else".into());
    };
    let fetched = fetch_chunks(source, id, bytes).await;
    let _ = call(source, &Request::ReleaseSnapshot { id }).await;
    let chunks = fetched?;
    let name = db.to_string();
    blocking(store, move |s| s.install_reference(&name, database_id, chunks))
        .await
        .map(|_| ())
        .map_err(|e| format!("installing the reference copy failed: {e}"))
}

async fn fetch_chunks(source: &Client, id: u64, bytes: u64) -> Result<Vec<Vec<u8>>, String> {
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    while offset < bytes {
        let len = (bytes - offset).min(u64::from(CHUNK_BYTES)) as u32;
        let Response::Chunk(chunk) = call(source, &Request::SnapshotChunk { id, offset, len }).await? else {
            return Err("source leaf answered a chunk request with something else".into());
        };
        if chunk.is_empty() {
            return Err("source snapshot ended early".into());
        }
        offset += chunk.len() as u64;
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// Applies `backlog` (entries already fetched), then the source's log entries after the local position until the
/// source has nothing newer.
async fn catch_up(store: &Arc<LeafStore>, source: &Client, db: &str, backlog: Vec<LogEntry>) -> Result<u64, String> {
    let name = db.to_string();
    let mut position = blocking(store, move |s| s.reference_state(&name))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no reference copy of {db} on this leaf"))?
        .1;
    let mut entries = backlog;
    for _ in 0..CATCH_UP_ROUNDS_MAX {
        if !entries.is_empty() {
            let name = db.to_string();
            position = blocking(store, move |s| s.apply_reference_log(&name, &entries))
                .await
                .map_err(|e| format!("applying the primary's reference log failed: {e}"))?;
        }
        let request = Request::ReferenceLogSince {
            db: db.to_string(),
            after_index: position.index,
            max_bytes: u64::from(CHUNK_BYTES),
        };
        let Response::Log(records) = call(source, &request).await? else {
            return Err("source leaf answered a log request with something else".into());
        };
        if records.is_empty() {
            return Ok(position.index);
        }
        entries = records.into_iter().map(from_record).collect::<Result<Vec<_>, _>>()?;
    }
    Err(format!("the reference log of {db} kept growing during a catch-up"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_storage::LogPayload;

    fn entry(index: u64, payload: &[u8]) -> LogEntry {
        LogEntry { term: canopy_types::Term(0), index, payload: LogPayload::Changeset(payload.to_vec()) }
    }

    #[test]
    fn only_a_copy_whose_last_entry_the_source_holds_identically_catches_up() {
        let source = vec![entry(3, b"c"), entry(4, b"d"), entry(5, b"e")];
        let check = |last: Option<LogEntry>, source: &[LogEntry]| backlog_after(last.as_ref(), source.to_vec());
        // Behind by two entries: the two are the backlog.
        assert_eq!(check(Some(entry(3, b"c")), &source), Some(vec![entry(4, b"d"), entry(5, b"e")]));
        // Level with the source: nothing to apply.
        assert_eq!(check(Some(entry(5, b"e")), &source[2..]), Some(vec![]));
        // An empty log is a prefix of any log.
        assert_eq!(check(None, &source), Some(source.clone()));
        // The copy took an entry 3 the source holds differently (a write whose outcome was unknown).
        assert_eq!(check(Some(entry(3, b"x")), &source), None);
        // The copy is ahead of the source: the source has nothing from the copy's last index on.
        assert_eq!(check(Some(entry(6, b"f")), &[]), None);
        // DDL and row changes with the same bytes are different entries.
        let ddl = LogEntry { term: canopy_types::Term(0), index: 3, payload: LogPayload::Ddl("c".into()) };
        assert_eq!(check(Some(ddl), &source), None);
    }
}
