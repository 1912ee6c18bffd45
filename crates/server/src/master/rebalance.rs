//! REBALANCE PARTITIONS, REBALANCE ALL DATABASES and their EXPLAIN: the plan comes from `canopy-control`
//! (`rebalance::plan`, with the partitions' sizes asked of the leaves for the estimates), this module prints it or
//! runs it.
//!
//! Running a plan: under the operation lock the plan is computed again from the current metadata (what EXPLAIN
//! showed is a prediction), recorded as the database's operation (SHOW REBALANCE STATUS), and run phase by phase;
//! the steps of a phase run together, at most `max_concurrent_moves` (a global variable, read at each phase) at a
//! time on any one leaf (as source or target) and `RECEIVING_PER_LEAF_MAX` copies onto it.
//! A redundancy-1 move is the online move of `moves.rs` cut at its phases: every COPY first, then every PROMOTE
//! PARTITION WITH DROP; `CREATE PARTITION` (FORCE) creates an empty partition and registers it as the master, `DROP
//! PARTITION` forgets and drops the leftover copy of an interrupted move. In redundancy 2 a move copies onto both
//! leaves of the new pair and its PROMOTE WITH DROP takes both copies (the one on its target's pair leaf becomes the
//! new master's replica at the switch, `moves::Follower`); `COPY PARTITION FORCE` is `replication::restore_replica`,
//! a `PROMOTE PARTITION` within a pair `replication::promote_planned`, and `DROP PARTITION` drops an old replica
//! that is out of every commit path (on a leaf that is not online only the metadata forgets it). DETACH LEAF and
//! REMOVE LEAF run the same plans with the leaf excluded (`empty_leaf`). Each step checks that the cluster is still
//! as the plan expects (its leaves online, the partition's master where it was) and fails otherwise. When a step fails the rest of its phase finishes, every
//! later step is marked `cancelled`, and the copies whose promotion will not run are forgotten and dropped, so the
//! metadata is as before for every partition that did not move, and a rerun plans what is left.
//!
//! One rebalance per database at a time: a second one on the same database is refused at once rather than queued
//! behind the operation lock (`Running`), which also keeps each running step's start for the live Running_Time.
//!
//! Cancelling (`REBALANCE ... CANCEL`, or KILL QUERY of the connection running the REBALANCE) stops a plan between
//! steps: a step checks the flag when it may start (its leaves' permits held), so running steps finish and every
//! step not started is `cancelled`; then the plan ends as after a failed step (the copies whose promotion will not
//! run are forgotten and dropped) and the REBALANCE answers 1317. The plan is never dropped mid-step: a step is cut
//! only where the move machinery can be (a failed step's cleanup), so cancelling leaves nothing a failure would not.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canopy_control::plan::{Action, Plan, Step};
use canopy_control::rebalance::{self, Options, Sizes};
use canopy_meta::{
    ClusterMeta, Command, Database, InstanceId, InstanceRole, Leaf, LeafState, NodeId, Outcome, StepStatus,
};
use canopy_rpc::{PartitionTerm, Request, Response, Target};
use canopy_sql::command::RebalanceOptions;
use canopy_sql::{ResultSet, TableKind, Value};
use tokio::sync::Semaphore;

use crate::answer::Answer;
use crate::error::{Error, Result};
use crate::master::cluster::Cluster;
use crate::master::{attach, moves, reference, replication};

/// Copies (and creations) of one database a leaf receives at once: one, since each brings the leaf's reference
/// copy of the database up to date first, and two of those on one copy must not overlap.
pub const RECEIVING_PER_LEAF_MAX: usize = 1;

/// The rebalances running on this master aggregator, by database.
#[derive(Default)]
pub struct Running(Mutex<BTreeMap<String, Entry>>);

/// One running rebalance: the start of each running step, and whether it was asked to stop (CANCEL, KILL QUERY).
#[derive(Default)]
struct Entry {
    starts: Vec<Option<Instant>>,
    cancelled: bool,
}

/// A database's slot in `Running`, released when dropped.
struct Slot<'r> {
    running: &'r Running,
    db: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.running.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.db);
    }
}

impl Running {
    /// Takes the slots of `dbs`, all or none; refused if a rebalance runs on any of them.
    fn begin(&self, dbs: &[String]) -> Result<Vec<Slot<'_>>> {
        let mut running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(busy) = dbs.iter().find(|db| running.contains_key(*db)) {
            return Err(Error::RebalanceRunning(busy.clone()));
        }
        for db in dbs {
            running.insert(db.clone(), Entry::default());
        }
        Ok(dbs.iter().map(|db| Slot { running: self, db: db.clone() }).collect())
    }

    fn started(&self, db: &str, index: usize) {
        let mut running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = running.get_mut(db) {
            if entry.starts.len() <= index {
                entry.starts.resize(index + 1, None);
            }
            entry.starts[index] = Some(Instant::now());
        }
    }

    /// Milliseconds each step of `db`'s running plan has been running (None: not started, or no plan running).
    pub fn elapsed_ms(&self, db: &str) -> Vec<Option<u64>> {
        let running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        running.get(db).map_or_else(Vec::new, |entry| {
            entry.starts.iter().map(|s| s.map(|s| s.elapsed().as_millis() as u64)).collect()
        })
    }

    /// Asks the running plans of `dbs` (all, for None) to stop between steps; returns how many were asked.
    fn cancel(&self, dbs: Option<&[String]>) -> usize {
        let mut running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut asked = 0;
        for (_, entry) in running.iter_mut().filter(|(db, _)| dbs.is_none_or(|dbs| dbs.contains(db))) {
            entry.cancelled = true;
            asked += 1;
        }
        asked
    }

    /// Whether the running plan of `db` was asked to stop.
    fn cancelled(&self, db: &str) -> bool {
        let running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        running.get(db).is_some_and(|entry| entry.cancelled)
    }
}

/// REBALANCE PARTITIONS ON db CANCEL (`Some`) or REBALANCE ALL DATABASES CANCEL (`None`): asks the running plans to
/// stop between steps and answers at once, as KILL QUERY does; the REBALANCE statement answers 1317 when its
/// running steps have finished. Affected rows: the databases whose plan was asked to stop.
pub fn cancel(cluster: &Cluster, db: Option<&str>) -> Result<Answer> {
    let named = db.map(|db| vec![db.to_string()]);
    match cluster.rebalances.cancel(named.as_deref()) {
        0 => Err(Error::NoRebalanceRunning(db.map(str::to_string))),
        asked => Ok(Answer::affected(asked as u64)),
    }
}

/// Runs a REBALANCE statement's work; when `killed` fires first (KILL QUERY of its connection), its plans are asked
/// to stop between steps and the work still runs to its end, which is then the cancelled plan's error.
async fn until_killed(
    cluster: &Cluster,
    dbs: &[String],
    killed: impl Future<Output = ()>,
    work: impl Future<Output = Result<Answer>>,
) -> Result<Answer> {
    let mut work = std::pin::pin!(work);
    tokio::select! {
        answer = &mut work => return answer,
        () = killed => {
            cluster.rebalances.cancel(Some(dbs));
        }
    }
    work.await
}

/// What SHOW REBALANCE STATUS shows of a running step beyond its record: how long it has run, and what is left of
/// it (None: no live estimate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStep {
    pub running_ms: Option<u64>,
    pub remaining_ms: Option<u64>,
}

/// How long a running COPY's target may take to say how far it is, per SHOW REBALANCE STATUS.
const PROGRESS_TIMEOUT: Duration = Duration::from_millis(500);

/// The live view of `db`'s running plan, by step (empty when none runs on this master aggregator). A running step's
/// remaining time is its estimate minus the time so far, except for a COPY whose target reports the bytes of its
/// snapshot received: the rest of the bytes at the rate so far (once every byte is in, the catch-up's remaining
/// time is the estimate's).
pub async fn live(cluster: &Cluster, meta: &ClusterMeta, db: &str) -> Vec<LiveStep> {
    let elapsed = cluster.rebalances.elapsed_ms(db);
    let Some(database) = meta.databases.get(db) else { return Vec::new() };
    let mut live = Vec::with_capacity(elapsed.len());
    for (index, started) in elapsed.into_iter().enumerate() {
        let step = database.operation.get(index).filter(|s| s.status == StepStatus::Running);
        let (Some(step), Some(ms)) = (step, started) else {
            live.push(LiveStep::default());
            continue;
        };
        let mut remaining_ms = step.estimated_ms.checked_sub(ms);
        if step.action == canopy_meta::Action::CopyPartition
            && let Some(target) = meta.leaves.get(&step.target)
        {
            let ask = Request::CopyProgress { db: db.to_string(), ordinal: step.ordinal };
            if let Ok(Response::CopyProgress { copied_bytes, total_bytes }) =
                cluster.call_with_timeout(target, &ask, PROGRESS_TIMEOUT).await
            {
                remaining_ms = copy_remaining_ms(copied_bytes, total_bytes, ms).or(remaining_ms);
            }
        }
        live.push(LiveStep { running_ms: Some(ms), remaining_ms });
    }
    live
}

/// The time a copy that received `copied` of `total` snapshot bytes in `ms` needs for the rest at the same rate;
/// None before the first byte and once every byte is in (the catch-up follows, which bytes do not measure).
fn copy_remaining_ms(copied: u64, total: u64, ms: u64) -> Option<u64> {
    (copied > 0 && copied < total).then(|| (total - copied).saturating_mul(ms) / copied)
}

fn options(given: RebalanceOptions) -> Options {
    Options { full: given.full, force: given.force, ..Options::default() }
}

/// Refuses options that cannot hold (ENSURE_ONLINE_NODES with a leaf not online), before anything changes.
fn check_options(meta: &ClusterMeta, given: &RebalanceOptions) -> Result<()> {
    if given.ensure_online_nodes
        && let Some(leaf) = meta.leaves_in_order().find(|l| l.state != LeafState::Online)
    {
        return Err(Error::Unsupported(format!(
            "ENSURE_ONLINE_NODES: leaf '{}':{} is {}",
            leaf.addr.host,
            leaf.addr.port,
            leaf.state.as_str()
        )));
    }
    Ok(())
}

/// The columns of a plan's row; EXPLAIN ... ALL DATABASES adds `Database` first.
const EXPLAIN_COLUMNS: [&str; 6] =
    ["Action", "Ordinal", "Target_Host", "Target_Port", "Phase", "Estimated_Time_Remaining_Ms"];

fn plan_rows(meta: &ClusterMeta, plan: &Plan, with_database: bool) -> Vec<Vec<Value>> {
    plan.steps
        .iter()
        .map(|step| {
            let target = meta.leaves.get(&step.target);
            let mut row = Vec::with_capacity(7);
            if with_database {
                row.push(Value::text(step.db.clone()));
            }
            row.extend([
                Value::text(step.action.as_str()),
                Value::int(step.ordinal),
                target.map_or(Value::Null, |l| Value::text(l.addr.host.clone())),
                target.map_or(Value::Null, |l| Value::int(l.addr.port)),
                Value::int(step.phase),
                Value::int(step.estimated_ms as i64),
            ]);
            row
        })
        .collect()
}

/// How long asking the leaves for partition sizes may take; past it the estimates go without sizes.
const SIZES_TIMEOUT: Duration = Duration::from_secs(2);

/// The bytes of `db`'s partitions whose master is on an online leaf (`page_count × page_size` of each file), for
/// the estimates. Best-effort and bounded: a partition that does not answer in time has no size.
async fn sizes(cluster: &Arc<Cluster>, meta: &ClusterMeta, db: &str) -> Sizes {
    sizes_of(cluster, meta, &[db]).await.remove(db).unwrap_or_default()
}

/// `sizes` of several databases, asked together within one `SIZES_TIMEOUT`.
async fn sizes_of(cluster: &Arc<Cluster>, meta: &ClusterMeta, dbs: &[&str]) -> BTreeMap<String, Sizes> {
    let sql = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()";
    let mut asked = Vec::new();
    let mut requests = Vec::new();
    for database in dbs.iter().filter_map(|db| meta.databases.get(*db)) {
        for master in database.instances.iter().filter(|i| i.role == InstanceRole::Master) {
            if let Some(leaf) = meta.leaves.get(&master.node).filter(|l| l.state == LeafState::Online) {
                let target = Target::Partitions(vec![PartitionTerm { ordinal: master.ordinal, term: master.term }]);
                let db = database.name.clone();
                let request =
                    Request::Execute { db: db.clone(), target, sql: sql.into(), params: Vec::new(), statement: 0 };
                asked.push((db, master.ordinal));
                requests.push((leaf.clone(), request));
            }
        }
    }
    let mut sizes: BTreeMap<String, Sizes> = BTreeMap::new();
    let answers = match tokio::time::timeout(SIZES_TIMEOUT, cluster.call_all(requests)).await {
        Ok(Ok(answers)) => answers,
        _ => return sizes,
    };
    for ((db, ordinal), answer) in asked.into_iter().zip(answers) {
        if let Response::Rows(rows) = answer
            && let Some(Value::Integer(bytes)) = rows.rows.first().and_then(|r| r.first())
            && let Ok(bytes) = u64::try_from(*bytes)
        {
            sizes.entry(db).or_default().insert(ordinal, bytes);
        }
    }
    sizes
}

/// EXPLAIN REBALANCE PARTITIONS ON db: the plan REBALANCE would run now (empty when balanced).
pub async fn explain(cluster: &Arc<Cluster>, db: &str, given: RebalanceOptions) -> Result<Answer> {
    let meta = cluster.meta();
    check_options(&meta, &given)?;
    let sizes = sizes(cluster, &meta, db).await;
    let plan = rebalance::plan(&meta, db, &options(given), &sizes)?;
    Ok(Answer::Rows(ResultSet::named(&EXPLAIN_COLUMNS, plan_rows(&meta, &plan, false))))
}

/// EXPLAIN REBALANCE ALL DATABASES: every database's plan, in name order, each against the previous ones' result.
pub async fn explain_all(cluster: &Arc<Cluster>) -> Result<Answer> {
    let meta = cluster.meta();
    let dbs: Vec<&str> = meta.databases.keys().map(String::as_str).collect();
    let all = sizes_of(cluster, &meta, &dbs).await;
    let plans = rebalance::plan_all(&meta, &Options::default(), &all)?;
    let rows = plans.iter().flat_map(|p| plan_rows(&meta, p, true)).collect();
    let mut columns = vec!["Database"];
    columns.extend(EXPLAIN_COLUMNS);
    Ok(Answer::Rows(ResultSet::named(&columns, rows)))
}

/// REBALANCE PARTITIONS ON db: plans again and runs the plan; answers the partitions moved (and, with FORCE,
/// created), saying which in the info text. `killed` is the statement's KILL QUERY (see `until_killed`).
pub async fn rebalance_database(
    cluster: &Arc<Cluster>,
    db: &str,
    given: RebalanceOptions,
    killed: impl Future<Output = ()>,
) -> Result<Answer> {
    if !cluster.meta().databases.contains_key(db) {
        return Err(Error::UnknownDatabase(db.to_string()));
    }
    let dbs = [db.to_string()];
    let _slot = cluster.rebalances.begin(&dbs)?;
    until_killed(cluster, &dbs, killed, async {
        let _op = cluster.operation_lock.lock().await;
        check_options(&cluster.meta(), &given)?;
        let done = run(cluster, db, &options(given)).await?;
        Ok(answer(&done))
    })
    .await
}

/// REBALANCE ALL DATABASES: `REBALANCE PARTITIONS ... FULL` on every database in name order, under one operation
/// lock; stops at the first database whose plan fails (or is cancelled).
pub async fn rebalance_all(
    cluster: &Arc<Cluster>,
    given: RebalanceOptions,
    killed: impl Future<Output = ()>,
) -> Result<Answer> {
    let dbs: Vec<String> = cluster.meta().databases.keys().cloned().collect();
    let _slots = cluster.rebalances.begin(&dbs)?;
    until_killed(cluster, &dbs, killed, async {
        let _op = cluster.operation_lock.lock().await;
        check_options(&cluster.meta(), &given)?;
        let options = Options { full: true, ..options(given) };
        let mut total = Phase { promoted: 0, created: 0 };
        for db in &dbs {
            if cluster.meta().databases.contains_key(db) {
                let done = run(cluster, db, &options).await?;
                total.promoted += done.promoted;
                total.created += done.created;
            }
        }
        Ok(answer(&total))
    })
    .await
}

fn answer(done: &Phase) -> Answer {
    let info = format!("{} partitions moved, {} empty partitions created", done.promoted, done.created);
    Answer::Done { affected_rows: done.promoted + done.created, last_insert_id: 0, info, notices: Vec::new() }
}

/// Empties `leaf` (DETACH LEAF, REMOVE LEAF): every database's plan with the leaf excluded, in name order, each
/// recorded as that database's operation (SHOW REBALANCE STATUS). In redundancy 1 its partitions move to the other
/// online leaves; in redundancy 2 the partitions of its pair move to the other online pairs, each keeping a master
/// and a replica on a pair. The caller holds the operation lock; a database whose plan is empty records nothing.
/// Fails with `RebalanceError::NoOnlineLeaves` / `NoOnlinePairs` (nothing changed) when nothing can take them.
/// Returns how many partitions moved.
pub async fn empty_leaf(cluster: &Arc<Cluster>, leaf: NodeId) -> Result<u64> {
    let options = Options { exclude: Some(leaf), ..Options::default() };
    let meta = cluster.meta();
    let holding: Vec<String> = meta
        .databases
        .values()
        .filter(|d| {
            let pair = meta.leaves.get(&leaf).and_then(|l| l.pair);
            d.instances.iter().any(|i| i.node == leaf || (meta.variables.redundancy_level == 2 && Some(i.node) == pair))
        })
        .map(|d| d.name.clone())
        .collect();
    let mut moved = 0;
    for db in &holding {
        // Refused (nothing changed) when nothing can take the partitions, before any database moves.
        match rebalance::plan(&meta, db, &options, &Sizes::new()) {
            Err(rebalance::RebalanceError::NoOnlineLeaves) => {
                return Err(Error::Unsupported("no other online leaf can take the partitions".into()));
            }
            planned => drop(planned?),
        }
    }
    for db in holding {
        let _slot = cluster.rebalances.begin(std::slice::from_ref(&db))?;
        moved += run(cluster, &db, &options).await?.promoted;
    }
    Ok(moved)
}

/// Plans `db` from the current metadata and runs the plan (the caller holds the operation lock and the slot). An
/// empty plan records nothing, so SHOW REBALANCE STATUS keeps the last operation.
async fn run(cluster: &Arc<Cluster>, db: &str, options: &Options) -> Result<Phase> {
    if cluster.rebalances.cancelled(db) {
        // Cancelled before it planned: nothing to record or undo.
        return Err(Error::RebalanceCancelled(db.to_string()));
    }
    let meta = cluster.meta();
    let sizes = sizes(cluster, &meta, db).await;
    let plan = rebalance::plan(&meta, db, options, &sizes)?;
    if plan.is_empty() {
        return Ok(Phase { promoted: 0, created: 0 });
    }
    cluster.apply(Command::RecordOperation { db: db.to_string(), steps: plan.record() }).await?;
    let mut copies: Copies = HashMap::new();
    let phases = plan.phases();
    let (mut moved, mut created) = (0, 0);
    for (n, (_, indexes)) in phases.iter().enumerate() {
        match run_phase(cluster, &plan, indexes, &mut copies).await {
            Ok(phase) => {
                moved += phase.promoted;
                created += phase.created;
            }
            Err(e) => {
                for &index in phases[n + 1..].iter().flat_map(|(_, later)| later) {
                    mark(cluster, db, index, StepStatus::Cancelled, None).await;
                }
                for ((ordinal, target), copy) in copies {
                    Pending { copy: Some(copy), follower: None }.abandon(cluster, db, ordinal, target).await;
                }
                return Err(e);
            }
        }
    }
    Ok(Phase { promoted: moved, created })
}

/// A finished COPY waiting for its promotion: the registered replica and the master it was copied from.
#[derive(Clone, Copy)]
struct Copy {
    replica: InstanceId,
    source: NodeId,
}

/// What a PROMOTE WITH DROP takes over: its copy, and in redundancy 2 the follower's (its target's pair leaf).
#[derive(Clone, Copy, Default)]
struct Pending {
    copy: Option<Copy>,
    follower: Option<(NodeId, Copy)>,
}

impl Pending {
    /// Forgets and drops both copies (the promotion will not run).
    async fn abandon(self, cluster: &Cluster, db: &str, ordinal: u32, target: NodeId) {
        let meta = cluster.meta();
        let copies = self.copy.map(|c| (target, c)).into_iter().chain(self.follower);
        for (leaf, copy) in copies {
            if let Some(leaf) = meta.leaves.get(&leaf) {
                moves::abandon_copy(cluster, db, ordinal, leaf, copy.replica).await;
            }
        }
    }
}

/// Finished copies by (ordinal, target).
type Copies = HashMap<(u32, NodeId), Copy>;

/// What a step left behind for the steps after it.
enum Done {
    Copied {
        ordinal: u32,
        target: NodeId,
        copy: Copy,
    },
    /// A partition moved (PROMOTE WITH DROP).
    Promoted,
    /// A master changed leaf within its pair (PROMOTE, redundancy 2).
    Switched,
    /// A replica restored on the master's pair (COPY FORCE, redundancy 2).
    Restored,
    Dropped,
    Created,
}

/// Runs the steps `indexes` of `plan` together, at most `max_concurrent_moves` per leaf; returns what they did, or
/// the first error once every step of the phase has finished (a step's failure before a cancellation).
async fn run_phase(cluster: &Arc<Cluster>, plan: &Plan, indexes: &[usize], copies: &mut Copies) -> Result<Phase> {
    let per_leaf = cluster.meta().variables.max_concurrent_moves.max(1) as usize;
    // Per leaf: the steps using it (as source or target), and the copies (or creations) it receives.
    let mut limits: HashMap<(NodeId, bool), Arc<Semaphore>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for &index in indexes {
        let step = plan.steps[index].clone();
        // A promotion takes its copies over: it either switches to them or forgets them, whatever happens.
        let pending = match step.action {
            Action::PromotePartition { with_drop: true } => {
                let pair = cluster.meta().leaves.get(&step.target).and_then(|l| l.pair);
                let follower = pair.and_then(|p| copies.remove(&(step.ordinal, p)).map(|c| (p, c)));
                Pending { copy: copies.remove(&(step.ordinal, step.target)), follower }
            }
            _ => Pending::default(),
        };
        let receives =
            matches!(step.action, Action::CopyPartition | Action::CopyPartitionForce | Action::CreatePartition);
        let mut keys = vec![(step.target, false)];
        keys.extend(source_of(&cluster.meta(), &step, pending).map(|source| (source, false)));
        if receives {
            keys.push((step.target, true));
        }
        keys.sort();
        keys.dedup();
        let permits: Vec<Arc<Semaphore>> = keys
            .iter()
            .map(|&(leaf, receiving)| {
                let permits = if receiving { RECEIVING_PER_LEAF_MAX } else { per_leaf };
                limits.entry((leaf, receiving)).or_insert_with(|| Arc::new(Semaphore::new(permits))).clone()
            })
            .collect();
        let cluster = cluster.clone();
        tasks.spawn(async move {
            // Permits in one order (leaf, then kind), so two steps sharing leaves never wait on each other.
            let mut held = Vec::with_capacity(permits.len());
            for permit in permits {
                held.push(permit.acquire_owned().await.expect("the phase's semaphores are never closed"));
            }
            if cluster.rebalances.cancelled(&step.db) {
                // Not started: a promotion's copies are forgotten and dropped here, since nothing else holds them now.
                pending.abandon(&cluster, &step.db, step.ordinal, step.target).await;
                mark(&cluster, &step.db, index, StepStatus::Cancelled, None).await;
                return Err(Error::RebalanceCancelled(step.db.clone()));
            }
            let done = run_step(&cluster, &step, index, pending).await;
            if let Err(e) = &done {
                // A step that failed before the move machinery recorded it is recorded here.
                mark(&cluster, &step.db, index, StepStatus::Failed, Some(e.to_string())).await;
            }
            done
        });
    }
    let mut first_error = None;
    let (mut promoted, mut created) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| Error::Internal(format!("a rebalance step panicked: {e}"))) {
            Ok(Ok(Done::Copied { ordinal, target, copy })) => {
                copies.insert((ordinal, target), copy);
            }
            Ok(Ok(Done::Promoted)) => promoted += 1,
            Ok(Ok(Done::Dropped | Done::Restored | Done::Switched)) => {}
            Ok(Ok(Done::Created)) => created += 1,
            Ok(Err(e)) | Err(e) => {
                // A real failure says more than the cancellation of the steps around it.
                if first_error.as_ref().is_none_or(|f| matches!(f, Error::RebalanceCancelled(_))) {
                    first_error = Some(e);
                }
            }
        }
    }
    first_error.map_or(Ok(Phase { promoted, created }), Err)
}

/// What a phase did.
struct Phase {
    promoted: u64,
    created: u64,
}

/// CREATE PARTITION: the target creates the partition empty (with the database's distributed tables) and gets a
/// current reference copy; then, under the reference lock, the unreachable instances are forgotten (their copies
/// become orphans) and the new one is registered as the master. Never over a copy the target already holds: that
/// may be the partition's last rows (ATTACH PARTITION adopts it).
async fn create_empty(cluster: &Cluster, database: &Database, ordinal: u32, target: &Leaf) -> Result<()> {
    let db = database.name.as_str();
    let local = match cluster.call(target, &Request::ListDatabases).await? {
        Response::Databases(local) => local,
        other => return Err(Error::Internal(format!("ListDatabases answered {other:?}"))),
    };
    if local.iter().any(|d| d.db == db && d.ordinal == Some(ordinal)) {
        return Err(Error::PlanOutdated {
            db: db.to_string(),
            ordinal,
            reason: format!(
                "leaf '{}':{} holds a copy of it; ATTACH PARTITION {db}:{ordinal} ON '{}':{} adopts that copy",
                target.addr.host, target.addr.port, target.addr.host, target.addr.port
            ),
        });
    }
    let mut schema = Vec::new();
    for table in database.tables.values().filter(|t| t.kind == TableKind::Distributed) {
        schema.push(table.create_sql.clone());
        schema.extend(table.index_sql.iter().cloned());
    }
    // The lost instances are forgotten and the new one registered as master; the new copy is created in the term
    // that registration gives it.
    let mut commands: Vec<Command> = database
        .instances
        .iter()
        .filter(|i| i.ordinal == ordinal)
        .map(|i| Command::RemoveInstance { db: db.to_string(), instance: i.id })
        .collect();
    commands.push(Command::AddInstance { db: db.to_string(), ordinal, node: target.id, role: InstanceRole::Master });
    let prediction = cluster.predict(commands).await?;
    let Some(Outcome::InstanceAdded(instance)) = prediction.outcomes().last().cloned() else {
        return Err(Error::Internal("AddInstance would add no instance".into()));
    };
    let create = Request::CreatePartitions {
        db: db.to_string(),
        partitions: vec![PartitionTerm { ordinal, term: instance.term }],
        schema,
        reference_schema: Vec::new(),
        durability: database.durability,
        database_id: database.id,
    };
    cluster.call(target, &create).await?;
    let _reference = reference::lock(cluster, db).await;
    reference::provide(cluster, db, target).await?;
    prediction.commit().await.map(|_| ())
}

/// The leaf a step reads from: a copy's current master, a promotion's old master.
fn source_of(meta: &ClusterMeta, step: &Step, pending: Pending) -> Option<NodeId> {
    let master = || meta.databases.get(&step.db).and_then(|d| d.master(step.ordinal)).map(|m| m.node);
    match step.action {
        Action::CopyPartition | Action::CopyPartitionForce | Action::PromotePartition { with_drop: false } => master(),
        Action::PromotePartition { with_drop: true } => pending.copy.map(|c| c.source),
        Action::DropPartition | Action::AttachPartition | Action::CreatePartition => None,
    }
}

/// Runs one step after checking the cluster is still as the plan expects.
async fn run_step(cluster: &Arc<Cluster>, step: &Step, index: usize, pending: Pending) -> Result<Done> {
    let meta = cluster.meta();
    let (db, ordinal) = (step.db.as_str(), step.ordinal);
    let outdated = |reason: String| Error::PlanOutdated { db: db.to_string(), ordinal, reason };
    let online = |id: NodeId| match meta.leaves.get(&id) {
        Some(leaf) if leaf.state == LeafState::Online => Ok(leaf.clone()),
        Some(leaf) => Err(outdated(format!("leaf '{}':{} is {}", leaf.addr.host, leaf.addr.port, leaf.state.as_str()))),
        None => Err(outdated(format!("leaf {id} is no longer in the cluster"))),
    };
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let master = database.master(ordinal).map(|m| m.node);
    let on_target = database.instances.iter().find(|i| i.ordinal == ordinal && i.node == step.target).cloned();
    let pair_of = |leaf: NodeId| meta.leaves.get(&leaf).and_then(|l| l.pair);
    if step.action == Action::DropPartition {
        // Only a replica out of its master's commit path is dropped (a moved partition's old replica, a move's
        // leftover copy): never a master, never a replica in sync. On a leaf that is not online only the metadata
        // forgets it (its file is an orphan when the leaf returns).
        let Some(instance) = on_target else {
            // Already gone (a copy step of this plan discarded it).
            attach::run_step(cluster, db, index as u32, async { Ok(()) }).await?;
            return Ok(Done::Dropped);
        };
        if instance.role == InstanceRole::Master {
            return Err(outdated("the instance to drop is the master".into()));
        }
        if instance.sync {
            return Err(outdated("the replica to drop is in its master's commit path".into()));
        }
        cluster.rebalances.started(db, index);
        attach::run_step(cluster, db, index as u32, async {
            match online(step.target) {
                Ok(target) => moves::abandon_copy(cluster, db, ordinal, &target, instance.id).await,
                Err(_) => {
                    cluster.apply(Command::RemoveInstance { db: db.to_string(), instance: instance.id }).await?;
                }
            }
            Ok(())
        })
        .await?;
        return Ok(Done::Dropped);
    }
    let target = online(step.target)?;
    match step.action {
        Action::CopyPartition => {
            let source = online(master.ok_or_else(|| outdated("the partition has no master".into()))?)?;
            cluster.rebalances.started(db, index);
            let replica = moves::copy_phase(cluster, db, ordinal, &source, &target, index as u32).await?;
            Ok(Done::Copied { ordinal, target: target.id, copy: Copy { replica, source: source.id } })
        }
        Action::CopyPartitionForce => {
            // Restoring redundancy: a replica on the master's pair leaf, brought in sync.
            let source = online(master.ok_or_else(|| outdated("the partition has no master".into()))?)?;
            if pair_of(source.id) != Some(target.id) {
                return Err(outdated("the target is not its master's pair".into()));
            }
            if on_target.is_some() {
                return Err(outdated("the target holds a copy of it now".into()));
            }
            cluster.rebalances.started(db, index);
            attach::run_step(cluster, db, index as u32, replication::restore_replica(cluster, db, ordinal, target.id))
                .await?;
            Ok(Done::Restored)
        }
        Action::PromotePartition { with_drop: true } => {
            let copy = match pending.copy {
                Some(copy) => copy,
                None => {
                    pending.abandon(cluster, db, ordinal, target.id).await;
                    return Err(outdated("its copy did not finish".into()));
                }
            };
            let paired = meta.variables.redundancy_level == 2;
            let checked = if master != Some(copy.source) {
                Err(outdated("its master moved since the copy".into()))
            } else if paired && pending.follower.is_none() {
                Err(outdated("the copy on its new master's pair did not finish".into()))
            } else {
                online(copy.source).and_then(|s| Ok((s, pending.follower.map(|(l, _)| online(l)).transpose()?)))
            };
            let (source, follower_leaf) = match checked {
                Ok(leaves) => leaves,
                Err(e) => {
                    pending.abandon(cluster, db, ordinal, target.id).await;
                    return Err(e);
                }
            };
            let follower = follower_leaf
                .zip(pending.follower)
                .map(|(leaf, (_, copy))| moves::Follower { leaf, replica: copy.replica });
            cluster.rebalances.started(db, index);
            moves::pre_catch_up(cluster, db, ordinal, &source, &target).await;
            if let Some(follower) = &follower {
                moves::pre_catch_up(cluster, db, ordinal, &source, &follower.leaf).await;
            }
            let replica = copy.replica;
            moves::promote_with_drop(cluster, db, ordinal, &source, &target, replica, follower.as_ref(), index as u32)
                .await?;
            Ok(Done::Promoted)
        }
        Action::PromotePartition { with_drop: false } => {
            // A planned promotion within the pair (redundancy 2): the old master becomes the replica.
            let replica = on_target.filter(|i| i.role == InstanceRole::Replica && i.sync);
            let replica = replica.ok_or_else(|| outdated("its replica on the target is not in sync".into()))?;
            online(master.ok_or_else(|| outdated("the partition has no master".into()))?)?;
            cluster.rebalances.started(db, index);
            let promoted = async { replication::promote_planned(cluster, db, replica.id).await.map(|_| ()) };
            attach::run_step(cluster, db, index as u32, promoted).await?;
            Ok(Done::Switched)
        }
        Action::CreatePartition => {
            if let Some(copy) = database.instances.iter().find(|i| i.ordinal == ordinal && online(i.node).is_ok()) {
                return Err(outdated(format!("it has a copy on leaf {} now", copy.node)));
            }
            cluster.rebalances.started(db, index);
            attach::run_step(cluster, db, index as u32, create_empty(cluster, database, ordinal, &target)).await?;
            Ok(Done::Created)
        }
        other => Err(Error::Unsupported(format!("{} in a rebalance plan", other.as_str()))),
    }
}

/// One low-level partition command (`COPY / PROMOTE ... WITH DROP / DROP / CREATE PARTITION`) run as a plan of
/// one step: recorded as the database's operation (SHOW REBALANCE STATUS shows it), refused while a rebalance runs
/// on the database, checked against the cluster like any plan step. A `PROMOTE PARTITION ... WITH DROP` takes over
/// the replica a `COPY PARTITION` left on its target, copied from the partition's current master. The caller holds
/// the operation lock and has refused what would lose a copy or make two masters.
pub async fn run_single_step(cluster: &Arc<Cluster>, step: Step) -> Result<()> {
    let dbs = [step.db.clone()];
    let _slot = cluster.rebalances.begin(&dbs)?;
    let meta = cluster.meta();
    let database = meta.databases.get(&step.db).ok_or_else(|| Error::UnknownDatabase(step.db.clone()))?;
    let copy = match step.action {
        Action::PromotePartition { .. } => database
            .replicas(step.ordinal)
            .find(|r| r.node == step.target)
            .zip(database.master(step.ordinal))
            .map(|(replica, master)| Copy { replica: replica.id, source: master.node }),
        _ => None,
    };
    let pending = Pending { copy, follower: None };
    let plan = Plan { db: step.db.clone(), steps: vec![step.clone()] };
    cluster.apply(Command::RecordOperation { db: step.db.clone(), steps: plan.record() }).await?;
    match run_step(cluster, &step, 0, pending).await {
        Ok(_) => Ok(()),
        Err(e) => {
            mark(cluster, &step.db, 0, StepStatus::Failed, Some(e.to_string())).await;
            Err(e)
        }
    }
}

/// Records a step's end when the move machinery did not (a check failed first, or it was cancelled). Best-effort:
/// the record is for SHOW REBALANCE STATUS only.
async fn mark(cluster: &Cluster, db: &str, index: usize, status: StepStatus, error: Option<String>) {
    let meta = cluster.meta();
    let recorded = meta.databases.get(db).and_then(|d| d.operation.get(index)).map(|s| s.status);
    if matches!(recorded, Some(StepStatus::Failed | StepStatus::Success)) {
        return;
    }
    let running_ms = cluster.rebalances.elapsed_ms(db).get(index).copied().flatten();
    let update = Command::UpdateStep { db: db.to_string(), index: index as u32, status, running_ms, error };
    if let Err(e) = cluster.apply(update).await {
        tracing::warn!("recording step {index} of the rebalance of {db} failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_s_remaining_time_follows_its_rate_so_far() {
        assert_eq!(copy_remaining_ms(0, 1000, 50), None, "nothing received yet");
        assert_eq!(copy_remaining_ms(250, 1000, 100), Some(300));
        assert_eq!(copy_remaining_ms(1000, 1000, 400), None, "catching up");
    }

    #[test]
    fn one_rebalance_per_database_all_or_nothing() {
        let running = Running::default();
        let a = running.begin(&["a".to_string()]).unwrap();
        assert!(matches!(running.begin(&["a".to_string()]), Err(Error::RebalanceRunning(db)) if db == "a"));
        // REBALANCE ALL DATABASES takes every database or none.
        assert!(running.begin(&["a".to_string(), "b".to_string()]).is_err());
        let b = running.begin(&["b".to_string()]).expect("b was not taken by the refused attempt");
        running.started("a", 2);
        assert_eq!(running.elapsed_ms("a").len(), 3);
        assert_eq!(running.elapsed_ms("a")[..2], [None, None]);
        drop((a, b));
        assert!(running.elapsed_ms("a").is_empty(), "a finished plan shows its record only");
        running.begin(&["a".to_string(), "b".to_string()]).expect("both free again");
    }

    #[test]
    fn cancel_flags_the_named_running_plans_only() {
        let running = Running::default();
        let slots = running.begin(&["a".to_string(), "b".to_string()]).unwrap();
        assert_eq!(running.cancel(Some(&["c".to_string()])), 0, "no plan runs on c");
        assert!(!running.cancelled("a"));
        assert_eq!(running.cancel(Some(&["a".to_string()])), 1);
        assert!(running.cancelled("a") && !running.cancelled("b"));
        assert_eq!(running.cancel(None), 2, "ALL DATABASES asks every running plan");
        assert!(running.cancelled("b"));
        drop(slots);
        assert!(!running.cancelled("a"), "a rerun starts uncancelled");
        let _again = running.begin(&["a".to_string()]).unwrap();
        assert!(!running.cancelled("a"));
    }
}
