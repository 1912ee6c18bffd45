//! Runs distributed plans: sends each piece to the leaf holding the master instance of its partition, all pieces
//! concurrently, then finishes the plan on this aggregator (merge, gather) and returns one answer. Knows leaves only
//! through `Cluster::call`; knows nothing of MySQL bytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use canopy_meta::{ClusterMeta, Leaf, LeafState};
use canopy_rpc::{PartitionTerm, Request, Response, Target};
use canopy_sql::plan::{GatherSource, Plan};
use canopy_sql::{ResultSet, Value, merge};

use crate::answer::Answer;
use crate::error::{Error, Result};
use crate::master::cluster::Cluster;
use crate::master::reference;

/// The client statement a task is running, so that KILL QUERY or a time limit can stop it: its requests carry
/// `id` (the leaves stop them on `Request::Cancel`), and the aggregator's own merge work watches `cancel`.
#[derive(Debug, Clone)]
pub struct StatementCtl {
    pub id: u64,
    pub cancel: Arc<std::sync::atomic::AtomicBool>,
}

impl StatementCtl {
    /// A new statement, with an id unique to this process (random high bits, so ids of different aggregators
    /// practically never meet on a leaf).
    pub fn fresh() -> StatementCtl {
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let prefix = *PREFIX.get_or_init(|| u64::from(rand::random::<u32>() | 1) << 32);
        let id = prefix | (NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff_ffff);
        StatementCtl { id, cancel: Default::default() }
    }

    /// Runs `work` as this statement: every request it sends names it.
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        STATEMENT.scope(self, work).await
    }

    /// Stops the statement: its merge work on this aggregator, and its requests on every online leaf (best effort,
    /// in the background; a leaf that misses the cancel stops at its own time limit).
    pub fn cancel(&self, cluster: &Arc<Cluster>) {
        self.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        let leaves: Vec<(Leaf, Request)> = cluster
            .meta()
            .leaves
            .values()
            .filter(|l| l.state == LeafState::Online)
            .map(|l| (l.clone(), Request::Cancel { statement: self.id }))
            .collect();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster.call_all(leaves).await {
                tracing::debug!("cancelling a statement on the leaves: {e}");
            }
        });
    }
}

tokio::task_local! {
    static STATEMENT: StatementCtl;
}

/// The id the current task's requests carry (0 outside a client statement).
fn statement_id() -> u64 {
    STATEMENT.try_with(|s| s.id).unwrap_or(0)
}

/// The cancellation flag of the current task's statement, if it runs one.
fn statement_cancel() -> Option<Arc<std::sync::atomic::AtomicBool>> {
    STATEMENT.try_with(|s| s.cancel.clone()).ok()
}

/// The leaf holding the master instance of `db:ordinal`, or error 1777 when the partition has none that can serve.
pub fn master_leaf<'m>(meta: &'m ClusterMeta, db: &str, ordinal: u32) -> Result<&'m Leaf> {
    master_at(meta, db, ordinal).map(|(leaf, _)| leaf)
}

/// The online leaf holding the master of `db:ordinal`, and the partition as a request addresses it there (with the
/// master's term, which the leaf checks).
pub fn master_at<'m>(meta: &'m ClusterMeta, db: &str, ordinal: u32) -> Result<(&'m Leaf, PartitionTerm)> {
    let no_master = || Error::NoMasterInstance { db: db.to_string(), ordinal };
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let instance = database.master(ordinal).ok_or_else(no_master)?;
    let leaf = meta.leaves.get(&instance.node).ok_or_else(no_master)?;
    if leaf.state != LeafState::Online {
        return Err(no_master());
    }
    Ok((leaf, PartitionTerm { ordinal, term: instance.term }))
}

/// The leaf that answers reads of `db`'s reference tables: the reference primary (every served copy is identical,
/// see `reference.rs`; the primary has every acknowledged write first).
pub fn reference_leaf<'m>(meta: &'m ClusterMeta, db: &str) -> Result<&'m Leaf> {
    reference::online_holders(meta, db)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoMasterInstance { db: db.to_string(), ordinal: 0 })
}

/// Runs one statement on each of `ordinals` of `db`: one request per leaf naming all of its partitions (the leaf
/// runs them in turn and combines their answers), leaves concurrently. One response per leaf, combining its
/// partitions' rows (concatenated) or affected rows (summed), so callers must only combine responses.
pub async fn on_partitions(
    cluster: &Arc<Cluster>,
    db: &str,
    ordinals: &[u32],
    sql: &str,
    params: &[Value],
) -> Result<Vec<Response>> {
    let mut ordinals = ordinals.to_vec();
    ordinals.sort_unstable();
    ordinals.dedup();
    let _gates = enter_gates(cluster, db, &ordinals).await;
    let meta = cluster.meta();
    let statement = statement_id();
    let mut by_leaf: BTreeMap<canopy_meta::NodeId, (Leaf, Vec<PartitionTerm>)> = BTreeMap::new();
    for ordinal in ordinals {
        let (leaf, partition) = master_at(&meta, db, ordinal)?;
        by_leaf.entry(leaf.id).or_insert_with(|| (leaf.clone(), Vec::new())).1.push(partition);
    }
    let requests: Vec<(Leaf, Request)> = by_leaf
        .into_values()
        .map(|(leaf, partitions)| {
            let target = Target::Partitions(partitions);
            let request = Request::Execute {
                db: db.to_string(),
                target,
                sql: sql.to_string(),
                params: params.to_vec(),
                statement,
            };
            (leaf, request)
        })
        .collect();
    cluster.call_all(requests).await
}

/// Enters the gates of `ordinals` (sorted, so statements never wait on each other in a cycle) for shared use.
async fn enter_gates(cluster: &Arc<Cluster>, db: &str, ordinals: &[u32]) -> Vec<tokio::sync::OwnedRwLockReadGuard<()>> {
    let mut gates = Vec::with_capacity(ordinals.len());
    for &ordinal in ordinals {
        gates.push(cluster.gate(db, ordinal).read_owned().await);
    }
    gates
}

/// Runs a possibly different statement per partition (with its parameters), concurrently; responses in input
/// order.
pub async fn on_partitions_each(
    cluster: &Arc<Cluster>,
    db: &str,
    pieces: Vec<(u32, String, Vec<Value>)>,
) -> Result<Vec<Response>> {
    // Enter each partition's gate, then resolve masters from the metadata as it is now: a move may have switched a
    // master since the plan was made.
    let mut ordinals: Vec<u32> = pieces.iter().map(|(o, _, _)| *o).collect();
    ordinals.sort_unstable();
    ordinals.dedup();
    let _gates = enter_gates(cluster, db, &ordinals).await;
    let meta = cluster.meta();
    let mut requests = Vec::with_capacity(pieces.len());
    for (ordinal, sql, params) in pieces {
        let (leaf, partition) = master_at(&meta, db, ordinal)?;
        let target = Target::Partitions(vec![partition]);
        let request = Request::Execute { db: db.to_string(), target, sql, params, statement: statement_id() };
        requests.push((leaf.clone(), request));
    }
    cluster.call_all(requests).await
}

fn rows(response: Response) -> Result<ResultSet> {
    match response {
        Response::Rows(rs) => Ok(rs),
        Response::Affected { .. } => Ok(ResultSet::default()),
        other => Err(Error::Internal(format!("expected rows, got {other:?}"))),
    }
}

fn affected(response: &Response) -> (u64, i64) {
    match response {
        Response::Affected { rows, last_insert_id } => (*rows, *last_insert_id),
        _ => (0, 0),
    }
}

fn concat(results: Vec<ResultSet>) -> ResultSet {
    let mut iter = results.into_iter();
    let mut first = iter.next().unwrap_or_default();
    for mut rs in iter {
        if first.columns.is_empty() {
            first.columns = rs.columns;
        }
        first.rows.append(&mut rs.rows);
    }
    first
}

fn single_answer(response: Response) -> Answer {
    match response {
        Response::Rows(rs) => Answer::Rows(rs),
        Response::Affected { rows, last_insert_id } => {
            let last_insert_id = last_insert_id.max(0) as u64;
            Answer::Done { affected_rows: rows, last_insert_id, info: String::new(), notices: Vec::new() }
        }
        _ => Answer::done(),
    }
}

/// What one statement may gather onto this aggregator from its leaves (partial results of a scatter, the tables
/// of a gather), in total; each piece is bounded on its leaf by `canopy_sql::value::RESULT_BYTES_MAX`.
pub const GATHER_BYTES_MAX: usize = 1024 * 1024 * 1024;

/// Refuses a statement whose gathered rows exceed [`GATHER_BYTES_MAX`].
fn check_gathered(results: &[ResultSet]) -> Result<()> {
    let bytes = results.iter().fold(0usize, |sum, rs| sum.saturating_add(rs.size_bytes()));
    if bytes > GATHER_BYTES_MAX {
        let rows_max = canopy_sql::value::RESULT_ROWS_MAX;
        return Err(Error::Sql(canopy_sql::SqlError::ResultTooLarge { rows_max, bytes_max: GATHER_BYTES_MAX }));
    }
    Ok(())
}

/// Runs CPU-bound merge work off the async threads, under the statement time limit.
async fn compute<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, canopy_sql::SqlError> + Send + 'static,
) -> Result<T> {
    let cancel = statement_cancel();
    tokio::task::spawn_blocking(move || {
        let bounded = || canopy_storage::engine::with_deadline(f);
        match cancel {
            Some(cancel) => canopy_storage::engine::with_cancel(cancel, bounded),
            None => bounded(),
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("merge task failed: {e}")))?
    .map_err(Error::Sql)
}

/// Where a gather finds the tables that show the cluster's own state (INFORMATION_SCHEMA, the SHOW tables): the
/// front end provides them, so query execution knows nothing of how they are built.
pub trait VirtualTables: Sync {
    fn fetch(&self, schema: &str, table: &str) -> impl std::future::Future<Output = Result<ResultSet>> + Send;
}

/// Runs `plan`; `params` are the values of the placeholders left in its SQL (empty for a plan without any), sent to
/// the leaves with each statement.
pub async fn execute(
    cluster: &Arc<Cluster>,
    meta: &ClusterMeta,
    plan: Plan,
    params: &[Value],
    scratch: &Arc<Mutex<rusqlite::Connection>>,
    virtual_tables: &impl VirtualTables,
) -> Result<Answer> {
    match plan {
        Plan::Single { db, ordinal, sql } => {
            let mut responses = on_partitions(cluster, &db, &[ordinal], &sql, params).await?;
            Ok(single_answer(responses.pop().ok_or_else(|| Error::Internal("no response".into()))?))
        }
        Plan::Scatter { db, ordinals, partial_sql, merge: spec } => {
            let responses = on_partitions(cluster, &db, &ordinals, &partial_sql, params).await?;
            let partials = responses.into_iter().map(rows).collect::<Result<Vec<_>>>()?;
            check_gathered(&partials)?;
            let rs =
                compute(move || merge::finish_scatter(&spec, partials, &canopy_storage::engine::system_host())).await?;
            Ok(Answer::Rows(rs))
        }
        Plan::Gather(spec) => {
            let mut fetched = Vec::with_capacity(spec.sources.len());
            for source in &spec.sources {
                fetched.push(fetch_source(cluster, meta, source, virtual_tables).await?);
                check_gathered(&fetched)?;
            }
            let rs =
                compute(move || merge::finish_gather(&spec, fetched, &canopy_storage::engine::system_host())).await?;
            Ok(Answer::Rows(rs))
        }
        Plan::Reference { db: Some(db), sql } => {
            let leaf = reference_leaf(meta, &db)?;
            let target = Target::Reference;
            let request =
                Request::Execute { db: db.clone(), target, sql, params: params.to_vec(), statement: statement_id() };
            Ok(single_answer(cluster.call(leaf, &request).await?))
        }
        Plan::Reference { db: None, sql } => {
            // No table involved (`SELECT 1 + 1`): the aggregator's own scratch engine answers.
            Ok(Answer::Rows(scratch_rows(scratch, sql).await?))
        }
        Plan::Insert { db, per_partition, first_auto_increment, .. } => {
            let responses = on_partitions_each(cluster, &db, per_partition).await?;
            let total: u64 = responses.iter().map(|r| affected(r).0).sum();
            Ok(Answer::Done {
                affected_rows: total,
                last_insert_id: first_auto_increment.unwrap_or(0).max(0) as u64,
                info: String::new(),
                notices: Vec::new(),
            })
        }
        Plan::Write { db, ordinals, sql } => {
            let responses = on_partitions(cluster, &db, &ordinals, &sql, params).await?;
            if responses.iter().any(|r| matches!(r, Response::Rows(_))) {
                return Ok(Answer::Rows(concat(responses.into_iter().map(rows).collect::<Result<Vec<_>>>()?)));
            }
            Ok(Answer::affected(responses.iter().map(|r| affected(r).0).sum()))
        }
        Plan::ReferenceWrite { db, sql, first_auto_increment } => {
            // One ordered write path: run on the reference primary, shipped to every other copy as row changes. Never
            // cancelled: a reference write must reach every copy once it ran on the primary.
            let target = Target::Reference;
            let request = Request::Execute { db: db.clone(), target, sql, params: params.to_vec(), statement: 0 };
            Ok(match reference::write(cluster, &db, request).await? {
                // LAST_INSERT_ID is the first value the planner allocated (the leaf's last rowid is not it).
                Response::Affected { rows, .. } => Answer::Done {
                    affected_rows: rows,
                    last_insert_id: first_auto_increment.unwrap_or(0).max(0) as u64,
                    info: String::new(),
                    notices: Vec::new(),
                },
                other => single_answer(other),
            })
        }
    }
}

async fn fetch_source(
    cluster: &Arc<Cluster>,
    meta: &ClusterMeta,
    source: &GatherSource,
    virtual_tables: &impl VirtualTables,
) -> Result<ResultSet> {
    match source {
        GatherSource::Distributed { db, fetch_sql, .. } => {
            let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.clone()))?;
            // One request per partition: a whole table's rows, so each frame holds one partition's share.
            let pieces = (0..database.partitions).map(|o| (o, fetch_sql.clone(), Vec::new())).collect();
            let responses = on_partitions_each(cluster, db, pieces).await?;
            Ok(concat(responses.into_iter().map(rows).collect::<Result<Vec<_>>>()?))
        }
        GatherSource::Reference { db, fetch_sql, .. } => {
            let leaf = reference_leaf(meta, db)?;
            let (target, sql, statement) = (Target::Reference, fetch_sql.clone(), statement_id());
            let request = Request::Execute { db: db.clone(), target, sql, params: vec![], statement };
            rows(cluster.call(leaf, &request).await?)
        }
        GatherSource::Virtual { schema, table } => virtual_tables.fetch(schema, table).await,
    }
}

/// Runs a query with no tables on a session's in-memory engine, on the blocking pool (a query without tables can
/// still run long: a recursive CTE without an end), within the statement time limit and
/// `canopy_sql::value::ReadLimits::RESULT`.
pub async fn scratch_rows(scratch: &Arc<Mutex<rusqlite::Connection>>, sql: String) -> Result<ResultSet> {
    let scratch = scratch.clone();
    tokio::task::spawn_blocking(move || {
        let conn = scratch.lock().map_err(|_| Error::Internal("scratch lock poisoned".into()))?;
        scratch_query_with(&conn, &sql, &[])
    })
    .await
    .map_err(|e| Error::Internal(format!("scratch task failed: {e}")))?
}

/// Runs `sql` (with `params` bound to its `?NNN` placeholders) on a scratch engine made
/// `canopy_sql::value::interruptible`, here on this thread, bounded like every statement.
pub fn scratch_query_with(scratch: &rusqlite::Connection, sql: &str, params: &[Value]) -> Result<ResultSet> {
    let limits = canopy_sql::value::ReadLimits::RESULT;
    let read = canopy_storage::engine::with_deadline(|| canopy_sql::value::query_within(scratch, sql, params, limits));
    Ok(read.map_err(canopy_sql::SqlError::from)?)
}
