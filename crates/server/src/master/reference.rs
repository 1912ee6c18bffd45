//! Reference copies as the master aggregator keeps them: one per leaf holding an instance of the database (its
//! **holders**), all identical whenever they serve.
//!
//! - One ordered write path: a reference write or reference DDL holds the database's reference lock for its whole
//!   run, runs on one copy only, the **reference primary** (the first online holder in leaf order), and every other
//!   online holder then catches up from the primary's change log (`SyncReference`). Values are computed once, on the
//!   primary, and travel as row changes, so `random()` or `CURRENT_TIMESTAMP` give every copy the same row; writers
//!   are serialised, so every copy applies the same entries in the same order.
//! - A holder that cannot catch up (after a few tries) is taken out of service (`offline` in the metadata) before the
//!   write is answered, and so is a primary whose outcome is unknown (the call failed in transit). The client is told
//!   success once the primary committed and every online holder has the write or is out of service: the write is
//!   durable, and the attach path brings a returning leaf's copies level with the primary (catch-up, or a snapshot
//!   when its copy is not a prefix of the primary's) before its partitions serve again.
//! - A partition that moves to a leaf gets a current reference copy there first, and a leaf that loses its last
//!   instance of a database loses its copy too, so the holders stay exactly the leaves with instances.
//! - A master aggregator that starts on existing metadata brings every online holder level with its primary once
//!   (`reconcile`): a write it was running when it stopped may have reached the primary only.
//! - The primary's statement is awaited for as long as the RPC allows, under the lock: a copy is never caught up
//!   while a statement sent to it might still run, so a late statement cannot land on a copy already level.
//!
//! The leaf side of a catch-up is `leaf/reference_copy.rs`; reads pick the primary (`query::exec::reference_leaf`).

use std::sync::Arc;
use std::time::Duration;

use canopy_meta::{ClusterMeta, Command, Database, DatabaseId, Leaf, LeafState};
use canopy_rpc::{Request, Response, Target};
use tokio::sync::OwnedMutexGuard;

use crate::error::{Error, Result};
use crate::master::cluster::{Cluster, REQUEST_TIMEOUT};

/// How often a holder's catch-up after a write is tried before the holder is taken out of service, how long each
/// try may take, and the wait between tries. Bounded so that a dead holder delays a write by seconds, not minutes.
const WRITE_SYNC_ATTEMPTS_MAX: u32 = 3;
const WRITE_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_SYNC_RETRY_WAIT: Duration = Duration::from_millis(100);

/// Held while a database's reference copies change or a leaf becomes a serving holder.
pub type ReferenceGuard = OwnedMutexGuard<()>;

pub async fn lock(cluster: &Cluster, db: &str) -> ReferenceGuard {
    cluster.reference_lock(db).lock_owned().await
}

fn database<'m>(meta: &'m ClusterMeta, db: &str) -> Result<&'m Database> {
    meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))
}

/// The online holders of `db`'s reference copy in leaf order; the first is the reference primary.
pub fn online_holders<'m>(meta: &'m ClusterMeta, db: &str) -> Result<Vec<&'m Leaf>> {
    let database = database(meta, db)?;
    Ok(meta
        .leaves
        .values()
        .filter(|l| l.state == LeafState::Online && database.instances.iter().any(|i| i.node == l.id))
        .collect())
}

/// Runs a reference write or reference DDL (`request`, aimed at `Target::Reference`) on the primary, then brings every
/// other online holder level with it (see the module doc). Returns the primary's answer.
pub async fn write(cluster: &Arc<Cluster>, db: &str, request: Request) -> Result<Response> {
    let _lock = lock(cluster, db).await;
    let meta = cluster.meta();
    let database_id = database(&meta, db)?.id;
    let online = online_holders(&meta, db)?;
    let Some((primary, others)) = online.split_first() else {
        return Err(Error::NoMasterInstance { db: db.to_string(), ordinal: 0 });
    };
    let response = match cluster.call(primary, &request).await {
        Ok(response) => response,
        Err(e @ Error::LeafUnreachable { .. }) => {
            // The primary may have committed before the answer was lost: its copy may now hold an entry no other copy
            // has, so it serves nothing until the attach path has compared it with the next primary's.
            retire(cluster, primary, &e.to_string()).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    replicate(cluster, db, database_id, primary, others).await?;
    Ok(response)
}

/// Reference DDL through the ordered write path, so it reaches exactly the copies writes reach, in the same order.
pub async fn ddl(cluster: &Arc<Cluster>, db: &str, statements: Vec<String>) -> Result<()> {
    let request = Request::Ddl { db: db.to_string(), target: Target::Reference, statements };
    write(cluster, db, request).await.map(|_| ())
}

/// Every holder in `others` catches up from `primary`, concurrently; one that cannot is taken out of service.
async fn replicate(
    cluster: &Arc<Cluster>,
    db: &str,
    database_id: DatabaseId,
    primary: &Leaf,
    others: &[&Leaf],
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for &holder in others {
        let (cluster, db, primary, holder) = (cluster.clone(), db.to_string(), primary.clone(), holder.clone());
        tasks.spawn(async move {
            let synced = sync_with_retries(&cluster, &db, database_id, &primary, &holder).await;
            (holder, synced)
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (holder, synced) = joined.map_err(|e| Error::Internal(format!("reference catch-up task failed: {e}")))?;
        if let Err(e) = synced
            && let Err(e) = retire(cluster, &holder, &e.to_string()).await
        {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn sync_with_retries(
    cluster: &Cluster,
    db: &str,
    database_id: DatabaseId,
    source: &Leaf,
    holder: &Leaf,
) -> Result<()> {
    let mut attempt = 1;
    loop {
        match sync(cluster, db, database_id, source, holder, WRITE_SYNC_TIMEOUT).await {
            Err(e) if attempt < WRITE_SYNC_ATTEMPTS_MAX => {
                tracing::debug!("reference catch-up of {db} on leaf {} failed (try {attempt}): {e}", holder.id);
                attempt += 1;
                tokio::time::sleep(WRITE_SYNC_RETRY_WAIT).await;
            }
            done => return done,
        }
    }
}

/// `holder` makes its reference copy of `db` equal to `source`'s (see `leaf/reference_copy.rs`).
async fn sync(
    cluster: &Cluster,
    db: &str,
    database_id: DatabaseId,
    source: &Leaf,
    holder: &Leaf,
    timeout: Duration,
) -> Result<()> {
    let request = Request::SyncReference {
        db: db.to_string(),
        database_id,
        source_host: source.addr.host.clone(),
        source_rpc_port: source.addr.rpc_port,
    };
    cluster.call_with_timeout(holder, &request, timeout).await.map(|_| ())
}

/// Takes a holder whose copy may differ from the primary's out of service: `offline` in the metadata, so nothing
/// reads its copy or its partitions until the attach path has caught it up. A holder no longer online needs nothing.
async fn retire(cluster: &Cluster, holder: &Leaf, why: &str) -> Result<()> {
    tracing::warn!(
        "leaf {}:{} missed a reference write ({why}); taking it out of service until it is caught up",
        holder.addr.host,
        holder.addr.port
    );
    if cluster.meta().leaves.get(&holder.id).is_some_and(|l| l.state == LeafState::Online) {
        cluster.apply(Command::SetLeafState { leaf: holder.id, state: LeafState::Offline }).await?;
    }
    if let Ok(client) = cluster.client(holder) {
        client.flush();
    }
    Ok(())
}

/// Before `leaf`'s partitions serve again (ATTACH LEAF, automatic or not): each of its reference copies is made
/// equal to the current one. Returns the reference locks taken, which the caller holds until the leaf is online, so
/// no reference write falls between the catch-up and the leaf serving.
pub async fn catch_up_leaf(cluster: &Cluster, leaf: &Leaf) -> Result<Vec<ReferenceGuard>> {
    let held_dbs: Vec<String> = cluster
        .meta()
        .databases
        .values()
        .filter(|d| d.instances.iter().any(|i| i.node == leaf.id))
        .map(|d| d.name.clone())
        .collect();
    // Databases in name order (a BTreeMap), so two attaches never wait on each other's locks in a cycle.
    let mut held = Vec::with_capacity(held_dbs.len());
    for db in held_dbs {
        held.push(lock(cluster, &db).await);
        provide(cluster, &db, leaf).await?;
    }
    Ok(held)
}

/// Gives `leaf` a current reference copy of `db` (a snapshot of the current copy when it has none or a stale one,
/// else a catch-up): before a partition of `db` is copied or attached there, and before a returning holder serves.
/// The caller holds the reference lock when no write may fall between this and the leaf serving as a holder.
pub async fn provide(cluster: &Cluster, db: &str, leaf: &Leaf) -> Result<()> {
    let database_id = database(&cluster.meta(), db)?.id;
    match current_copy(cluster, db, leaf).await? {
        Some(source) => sync(cluster, db, database_id, &source, leaf, REQUEST_TIMEOUT).await,
        None => Ok(()),
    }
}

/// The leaf whose copy of `db` `leaf` must take: the primary when another holder is online; None when `leaf` is the
/// only online holder (then it is the primary). When no holder is online, the newest copy among all holders is the
/// current one (a holder taken out of service for missing a write is behind the others), so each of them must
/// answer; the most advanced is chosen, and None when that is `leaf`'s own copy (or no other holder exists).
async fn current_copy(cluster: &Cluster, db: &str, leaf: &Leaf) -> Result<Option<Leaf>> {
    let meta = cluster.meta();
    let Some(database) = meta.databases.get(db) else { return Ok(None) };
    let online = online_holders(&meta, db)?;
    if let Some(primary) = online.iter().find(|l| l.id != leaf.id) {
        return Ok(Some((*primary).clone()));
    }
    if online.iter().any(|l| l.id == leaf.id) {
        // The leaf is the only serving holder, i.e. the primary: its copy is the current one.
        return Ok(None);
    }
    let id = database.id;
    let mut newest = (reference_index(cluster, leaf, db, id).await?, None);
    let others = meta.leaves.values().filter(|l| l.id != leaf.id && database.instances.iter().any(|i| i.node == l.id));
    for other in others {
        let index = reference_index(cluster, other, db, id).await?;
        if index > newest.0 {
            newest = (index, Some(other.clone()));
        }
    }
    Ok(newest.1)
}

/// The log index of `leaf`'s reference copy of incarnation `database_id` of `db` (0 when it has none).
async fn reference_index(cluster: &Cluster, leaf: &Leaf, db: &str, database_id: DatabaseId) -> Result<u64> {
    match cluster.call(leaf, &Request::ListDatabases).await? {
        Response::Databases(local) => Ok(local
            .iter()
            .find(|d| d.db == db && d.ordinal.is_none() && d.database_id == Some(database_id))
            .map_or(0, |d| d.log_index)),
        other => Err(Error::Internal(format!("ListDatabases answered {other:?}"))),
    }
}

/// When the master aggregator starts on existing metadata: a reference write it was running when it stopped may
/// have reached the primary only. Every online holder of every database is brought level with its primary once,
/// before any new reference write; a holder that cannot be reached is left to the failure detector (it goes offline
/// and catches up when it is attached again).
pub async fn reconcile(cluster: Arc<Cluster>) {
    let databases: Vec<(String, DatabaseId)> =
        cluster.meta().databases.values().map(|d| (d.name.clone(), d.id)).collect();
    for (db, database_id) in databases {
        let _lock = lock(&cluster, &db).await;
        let meta = cluster.meta();
        let Ok(online) = online_holders(&meta, &db) else { continue };
        let Some((primary, others)) = online.split_first() else { continue };
        for holder in others {
            if let Err(e) = sync_with_retries(&cluster, &db, database_id, primary, holder).await {
                tracing::warn!("reference copy of {db} on leaf {} not checked at startup: {e}", holder.id);
            }
        }
    }
}

/// After `leaf` lost an instance of `db`: once it holds none it is no longer a holder, and its copy, which nothing
/// maintains any more, is removed (best effort: a copy left behind is checked and replaced before any reuse).
pub async fn release_if_unheld(cluster: &Cluster, db: &str, leaf: &Leaf) {
    let _lock = lock(cluster, db).await;
    let holds = cluster.meta().databases.get(db).is_none_or(|d| d.instances.iter().any(|i| i.node == leaf.id));
    if holds {
        return;
    }
    if let Err(e) = cluster.call(leaf, &Request::DropReference { db: db.to_string() }).await {
        tracing::warn!("dropping the reference copy of {db} on {}:{} failed: {e}", leaf.addr.host, leaf.addr.port);
    }
}
