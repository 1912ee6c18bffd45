//! The master's side of replication on a leaf: every commit on a partition that has a sync replica is shipped to the
//! replica's leaf, inside the write transaction and before COMMIT, and the commit waits for the replica's answer
//! ("ship, then commit": no reader on this copy can see a write its replica does not hold). Also bringing a replica
//! up to date and into the commit path (`set_replica`), which the master aggregator asks for.
//!
//! What a commit does when the replica does not answer: it waits, retrying the same entry (the replica skips what
//! it holds, checking it is the same entry), until one of three things happens:
//! - the replica answers: the commit goes ahead;
//! - the master aggregator takes the replica out of the commit path (it recorded it async in the metadata first):
//!   the commit goes ahead without it;
//! - the replica answers with a newer term: it was promoted, this copy is deposed; the commit is rolled back, the
//!   statement fails, and the copy stops serving (`LeafStore::depose`) until the master aggregator makes it a
//!   replica.
//!
//! A commit is never rolled back while its entry may have reached the replica unless the replica's term proves the
//! entry cannot count (a deposed master's), so the two copies never fork. A replica that definitely refused an
//! entry (it did not apply it) fails the statement; nothing was committed anywhere.
//!
//! The committing thread sends its entry itself, in blocking style (`Client::call_blocking`), and the kernel wakes
//! it when the answer arrives: on two shared cores the thread switches of handing each commit to a runtime thread
//! and back cost more than the shared requests of a queue saved. The replica acknowledges once it holds the entry
//! and applies many of them per transaction later (`canopy_storage`'s held entries), which is where its commits are
//! grouped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use canopy_rpc::client::{CONNECT_TIMEOUT, resolve};
use canopy_rpc::{
    Client, Credentials, LogRecord, PartitionTerm, RemoteError, RemoteErrorKind, ReplicaTarget, ReplicateBatch,
    Request, Response,
};
use canopy_storage::{LeafStore, LogEntry, StorageError, log};
use canopy_types::Term;
use tokio::runtime::Handle;

use crate::leaf::{CHUNK_BYTES, remote_error, to_record};

/// How long a commit waits for one answer before it asks again (and looks whether its replica changed).
const ATTEMPT: Duration = Duration::from_millis(500);
/// Pause between attempts after a failed exchange.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How long one request of a catch-up or a pump may take before it is sent again on a fresh connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Catch-up rounds pushed before the final round under the partition lock; a round that finds fewer entries than
/// this is close enough to the end to finish under the lock.
const CATCH_UP_ROUNDS_MAX: usize = 64;
const CATCH_UP_CLOSE_ENTRIES: usize = 64;

type Key = (String, u32);

/// An asynchronous replica's pump: its generation, and the signal a commit gives it.
struct Pump {
    generation: u64,
    wake: Arc<tokio::sync::Notify>,
    /// The last log index the replica took: a checkpoint keeps every entry after it.
    acked: Arc<std::sync::atomic::AtomicU64>,
}

/// How long an idle pump waits before it looks at the log again without being woken. A commit wakes it from
/// inside its transaction, holding the partition's connection, so the read that follows waits for the COMMIT and
/// sees the entry; the timeout is only a safety net.
const PUMP_IDLE: Duration = Duration::from_secs(1);
/// How long a woken pump lets commits gather before it reads: one round trip then carries several of them.
const PUMP_GATHER: Duration = Duration::from_millis(2);
/// Pause after a failed push before the pump tries the same entries again.
const PUMP_RETRY: Duration = Duration::from_millis(200);

pub struct Replication {
    /// The sync replica of each partition this leaf masters, as the master aggregator set it.
    targets: Mutex<HashMap<Key, ReplicaTarget>>,
    /// Partitions whose role changed (made a replica, fenced for a switch, dropped) since they last served: a
    /// commit on one fails instead of committing without its replica. Only the master aggregator's word that the
    /// copy serves alone (`SetReplica { replica: None }`, an attach, a promotion) or a new replica clears it. A commit
    /// that was waiting for its replica when the role changed must never take the missing target for that word.
    fenced: Mutex<std::collections::HashSet<Key>>,
    /// The asynchronous replicas' pumps (`WITH ASYNC REPLICATION`), by partition: a pump runs while its generation
    /// is the partition's and its target is registered.
    pumps: Mutex<HashMap<Key, Pump>>,
    next_pump: std::sync::atomic::AtomicU64,
    clients: Mutex<HashMap<(String, u16), Arc<Client>>>,
    credentials: Arc<Credentials>,
    runtime: Handle,
    store: Weak<LeafStore>,
}

fn remote_of(e: &StorageError) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Internal, e.to_string())
}

impl Replication {
    /// Created inside the node's runtime (its handle runs the links).
    pub fn new(store: &Arc<LeafStore>, credentials: Arc<Credentials>) -> Arc<Replication> {
        Arc::new(Replication {
            targets: Mutex::new(HashMap::new()),
            pumps: Mutex::new(HashMap::new()),
            next_pump: std::sync::atomic::AtomicU64::new(1),
            fenced: Mutex::new(std::collections::HashSet::new()),
            clients: Mutex::new(HashMap::new()),
            credentials,
            runtime: Handle::current(),
            store: Arc::downgrade(store),
        })
    }

    fn target(&self, key: &Key) -> Option<ReplicaTarget> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// The partition's role changed (it became a replica, was fenced for a switch, or dropped): it ships to no one,
    /// and a commit on it, also one waiting for its replica right now, fails.
    pub fn fence(&self, db: &str, ordinal: u32) {
        let key = (db.to_string(), ordinal);
        self.fenced.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone());
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }

    /// The master aggregator says the partition serves without a replica (`SetReplica { replica: None }`, an
    /// attach as master, a promotion): commits go ahead alone.
    pub fn serve_alone(&self, db: &str, ordinal: u32) {
        let key = (db.to_string(), ordinal);
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        self.fenced.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }

    /// Every partition of `db` stops shipping (the database was dropped here).
    pub fn forget_database(&self, db: &str) {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).retain(|(d, _), _| d != db);
        self.fenced.lock().unwrap_or_else(|p| p.into_inner()).retain(|(d, _)| d != db);
    }

    /// Where a commit on `key` goes: to its replica, alone (Ok(None)), or nowhere (its role changed).
    fn route(&self, key: &Key) -> Result<Option<ReplicaTarget>, StorageError> {
        if let Some(target) = self.target(key) {
            return Ok(Some(target));
        }
        if self.fenced.lock().unwrap_or_else(|p| p.into_inner()).contains(key) {
            return Err(StorageError::Replication(format!(
                "Partition {}:{} changed role (a new master was chosen, or it is being moved); this write was not committed",
                key.0, key.1
            )));
        }
        Ok(None)
    }

    fn client(&self, target: &ReplicaTarget) -> Result<Arc<Client>, String> {
        let key = (target.host.clone(), target.rpc_port);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let addr = resolve(&target.host, target.rpc_port).map_err(|e| format!("cannot resolve replica leaf: {e}"))?;
        let client = Arc::new(Client::new(addr, CONNECT_TIMEOUT, self.credentials.clone()));
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Brings `target` up to date with this leaf's copy of `db:partition` and puts it in the partition's commit
    /// path (`Request::SetReplica`); `None` takes the current replica out of it.
    pub async fn set_replica(
        self: &Arc<Self>,
        db: &str,
        partition: PartitionTerm,
        replica: Option<ReplicaTarget>,
    ) -> Result<(), RemoteError> {
        let store = self.store.upgrade().ok_or_else(|| RemoteError::new(RemoteErrorKind::Internal, "no store"))?;
        let ordinal = partition.ordinal;
        store.check_term(db, ordinal, partition.term).map_err(|e| remote_error(&e))?;
        let Some(target) = replica else {
            self.serve_alone(db, ordinal);
            return Ok(());
        };
        let client = self.client(&target).map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e))?;
        use_local_socket(&client).await;
        let end = call_fresh(&client, &Request::LogEnd { db: db.to_string(), ordinal }).await?;
        let (last, position) = match end {
            Response::LogEnd { last, position } => (last, position),
            Response::Error(e) => return Err(e),
            other => return Err(RemoteError::new(RemoteErrorKind::Internal, format!("unexpected answer {other:?}"))),
        };
        let (db_owned, s) = (db.to_string(), store.clone());
        let continues = tokio::task::spawn_blocking(move || s.continues(&db_owned, ordinal, last))
            .await
            .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))?
            .map_err(|e| remote_of(&e))?;
        if !continues {
            return Err(RemoteError::new(
                RemoteErrorKind::Diverged,
                format!(
                    "the replica's log (last entry {last:?}) is not a prefix of the master's copy of {db}:{ordinal}"
                ),
            ));
        }
        // Push while commits go on, then finish under the partition lock.
        let mut after = position.index;
        for _ in 0..CATCH_UP_ROUNDS_MAX {
            let (db_owned, s) = (db.to_string(), store.clone());
            let entries =
                tokio::task::spawn_blocking(move || s.log_since(&db_owned, ordinal, after, u64::from(CHUNK_BYTES)))
                    .await
                    .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))?
                    .map_err(|e| remote_error(&e))?;
            let Some(last) = entries.last().map(|e| e.index) else { break };
            let close = entries.len() < CATCH_UP_CLOSE_ENTRIES;
            push(&client, db, partition, entries, false).await?;
            after = last;
            if close {
                break;
            }
        }
        let this = self.clone();
        let db_owned = db.to_string();
        tokio::task::spawn_blocking(move || {
            store.with_partition_locked(&db_owned, ordinal, |conn| {
                let (term, _) = store.partition_term(&db_owned, ordinal)?;
                if term != partition.term {
                    return Err(StorageError::StaleTerm { current: term, requested: partition.term });
                }
                // The last batch (empty when nothing was left) marks the replica as in the commit path.
                loop {
                    let entries = log::since(conn, after, u64::from(CHUNK_BYTES))?;
                    let last = entries.last().map(|e| e.index);
                    this.runtime
                        .block_on(push(&client, &db_owned, partition, entries, true))
                        .map_err(|e| StorageError::Replication(e.message))?;
                    match last {
                        Some(last) => after = last,
                        None => break,
                    }
                }
                let key = (db_owned.clone(), ordinal);
                this.targets.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), target.clone());
                this.fenced.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                if target.asynchronous {
                    this.start_pump(key, target, partition, client, after);
                } else {
                    this.pumps.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))?
        .map_err(|e| remote_error(&e))
    }

    /// Starts the pump of an asynchronous replica that holds every entry up to `after` (a pump of an earlier
    /// registration stops at its next look).
    fn start_pump(
        self: &Arc<Self>,
        key: Key,
        target: ReplicaTarget,
        partition: PartitionTerm,
        client: Arc<Client>,
        after: u64,
    ) {
        let generation = self.next_pump.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wake = Arc::new(tokio::sync::Notify::new());
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(after));
        let pump = Pump { generation, wake: wake.clone(), acked: acked.clone() };
        self.pumps.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), pump);
        let run = self.clone().run_pump(key, target, partition, client, generation, wake, acked);
        self.runtime.spawn(run);
    }

    /// The last log index `db:ordinal`'s asynchronous replica took, if it has one: the log must keep every entry
    /// after it (a checkpoint that removed them would leave the replica nothing to continue from).
    pub fn async_replica_position(&self, db: &str, ordinal: u32) -> Option<u64> {
        let key = (db.to_string(), ordinal);
        self.target(&key)?;
        let pumps = self.pumps.lock().unwrap_or_else(|p| p.into_inner());
        pumps.get(&key).map(|p| p.acked.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Whether the pump of `generation` still serves `key`'s registered replica `target`.
    fn pump_current(&self, key: &Key, generation: u64, target: &ReplicaTarget) -> bool {
        let current = self.pumps.lock().unwrap_or_else(|p| p.into_inner()).get(key).map(|p| p.generation);
        current == Some(generation) && self.target(key).as_ref() == Some(target)
    }

    /// An asynchronous replica's pump: sends the partition's committed log entries after `after`, in order, as
    /// they appear; a failed push is retried with the same entries (the replica skips what it holds). It stops when
    /// the replica leaves the commit path (the master aggregator's word, a role change) or when the replica answers
    /// with a newer term (this copy is deposed, as a sync commit would find).
    #[allow(clippy::too_many_arguments)]
    async fn run_pump(
        self: Arc<Self>,
        key: Key,
        target: ReplicaTarget,
        partition: PartitionTerm,
        client: Arc<Client>,
        generation: u64,
        wake: Arc<tokio::sync::Notify>,
        acked: Arc<std::sync::atomic::AtomicU64>,
    ) {
        let (db, ordinal) = (key.0.clone(), key.1);
        let mut after = acked.load(std::sync::atomic::Ordering::Acquire);
        let mut logged = false;
        loop {
            if tokio::time::timeout(PUMP_IDLE, wake.notified()).await.is_ok() {
                tokio::time::sleep(PUMP_GATHER).await;
            }
            if !self.pump_current(&key, generation, &target) {
                return;
            }
            let Some(store) = self.store.upgrade() else { return };
            let (db_owned, client) = (db.clone(), client.clone());
            // Read and send on one blocking thread: the read waits for the partition's connection, the send for the
            // replica's answer.
            let round = tokio::task::spawn_blocking(move || {
                let entries = store.log_since(&db_owned, ordinal, after, u64::from(CHUNK_BYTES))?;
                let Some(last) = entries.last().map(|e| e.index) else { return Ok(Ok(None)) };
                let capped = entries.len() >= log::LOG_BATCH_ENTRIES_MAX
                    || entries.iter().map(|e| e.payload_bytes()).sum::<u64>() >= u64::from(CHUNK_BYTES);
                let entries = entries.into_iter().map(to_record).collect();
                let batch = ReplicateBatch { db: db_owned, partition, entries, sync: false };
                let pushed = match client.call_blocking(&Request::Replicate { batches: vec![batch] }, REQUEST_TIMEOUT) {
                    Ok(response) => batch_answer(response)
                        .unwrap_or_else(|other| Err(unexpected(&other)))
                        .map(|_| Some((last, capped))),
                    Err(e) => {
                        client.flush();
                        Err(RemoteError::new(RemoteErrorKind::Internal, format!("replica leaf unreachable: {e}")))
                    }
                };
                Ok::<_, StorageError>(pushed)
            })
            .await;
            let pushed = match round {
                Ok(Ok(pushed)) => pushed,
                Ok(Err(e)) => {
                    if !logged {
                        tracing::warn!("{db}:{ordinal}: the asynchronous replica's pump cannot read the log: {e}");
                        logged = true;
                    }
                    tokio::time::sleep(PUMP_RETRY).await;
                    continue;
                }
                Err(_) => return,
            };
            match pushed {
                Ok(None) => {}
                Ok(Some((last, capped))) => {
                    after = last;
                    acked.store(last, std::sync::atomic::Ordering::Release);
                    logged = false;
                    // A capped read left entries behind: look again at once. Commits meanwhile left their wake-up.
                    if capped {
                        wake.notify_one();
                    }
                }
                Err(e) => {
                    if let RemoteErrorKind::LogGap { expected } = e.kind
                        && expected > 0
                        && expected <= after
                    {
                        // The replica restarted without some of what it had taken: send from where it stands.
                        tracing::info!("{db}:{ordinal}: the asynchronous replica continues from entry {expected}");
                        after = expected - 1;
                        acked.store(after, std::sync::atomic::Ordering::Release);
                        wake.notify_one();
                        continue;
                    }
                    if let RemoteErrorKind::StaleTerm { expected, .. } = e.kind
                        && expected > partition.term
                    {
                        tracing::warn!(
                            "{db}:{ordinal}: the replica is in term {expected}, this master in {}: deposed",
                            partition.term
                        );
                        self.fence(&db, ordinal);
                        if let Some(store) = self.store.upgrade() {
                            let _ = store.depose(&db, ordinal, partition.term);
                        }
                        return;
                    }
                    if !logged {
                        tracing::warn!("{db}:{ordinal}: the asynchronous replica did not take entries ({e}); retrying");
                        logged = true;
                    }
                    tokio::time::sleep(PUMP_RETRY).await;
                }
            }
        }
    }
}

/// Lets `client` reach its replica leaf over the local socket the leaf reports, when the leaf is on this host
/// (`Client::set_local_socket`): a commit's round trip then skips the TCP/IP stack on both ends. The client falls
/// back to TCP when the socket cannot be reached; a failed ping changes nothing.
async fn use_local_socket(client: &Client) {
    if !client.addr().ip().is_loopback() {
        // Not on this host: no ping for a socket that would not be used.
        return;
    }
    if let Ok(Response::Pong(status)) = client.call(&Request::Ping, REQUEST_TIMEOUT).await {
        client.set_local_socket(status.local_socket.map(std::path::PathBuf::from));
    }
}

/// One request to a replica leaf; a broken pooled connection (the leaf restarted since) is dropped and the request
/// sent once more on a fresh one (every request here is idempotent).
async fn call_fresh(client: &Client, request: &Request) -> Result<Response, RemoteError> {
    let mut attempt = 0;
    loop {
        match client.call(request, REQUEST_TIMEOUT).await {
            Ok(response) => return Ok(response),
            Err(e) => {
                client.flush();
                attempt += 1;
                if attempt >= 2 {
                    return Err(RemoteError::new(RemoteErrorKind::Internal, format!("replica leaf unreachable: {e}")));
                }
            }
        }
    }
}

/// Sends `entries` of one partition to the replica as one batch and waits for it to apply them.
async fn push(
    client: &Client,
    db: &str,
    partition: PartitionTerm,
    entries: Vec<LogEntry>,
    sync: bool,
) -> Result<(), RemoteError> {
    let entries = entries.into_iter().map(to_record).collect();
    let batch = ReplicateBatch { db: db.to_string(), partition, entries, sync };
    let response = call_fresh(client, &Request::Replicate { batches: vec![batch] }).await?;
    batch_answer(response).unwrap_or_else(|other| Err(unexpected(&other))).map(|_| ())
}

/// The replica's answer for the one batch of a `Replicate` request (its position, or why it refused), or (Err) a
/// response of another kind.
fn batch_answer(response: Response) -> Result<Result<u64, RemoteError>, Response> {
    match response {
        Response::Replicated(mut results) if results.len() == 1 => Ok(results.pop().expect("one result")),
        Response::Error(e) => Ok(Err(e)),
        other => Err(other),
    }
}

fn unexpected(response: &Response) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Internal, format!("unexpected answer {response:?}"))
}

impl canopy_storage::Replicator for Replication {
    fn ship(&self, db: &str, ordinal: u32, conn: &rusqlite::Connection, entry: &LogEntry) -> Result<(), StorageError> {
        let key = (db.to_string(), ordinal);
        match self.route(&key)? {
            None => return Ok(()),
            Some(target) if target.asynchronous => {
                // WITH ASYNC REPLICATION: the commit does not wait; the pump sends the entry once it is committed.
                if let Some(pump) = self.pumps.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
                    pump.wake.notify_one();
                }
                return Ok(());
            }
            Some(_) => {}
        }
        let term: Term = entry.term;
        let record = to_record(entry.clone());
        // What the next attempt sends instead of the entry alone: the entries the replica said it lacks, up to it.
        let mut gap: Option<Vec<LogRecord>> = None;
        let mut logged = false;
        loop {
            // Looked up on every attempt: the master aggregator may have taken the replica out meanwhile (then the
            // commit goes ahead alone), or the partition's role changed (then it fails: `route`).
            let Some(target) = self.route(&key)? else { return Ok(()) };
            let client = self.client(&target).map_err(StorageError::Replication)?;
            let batch = ReplicateBatch {
                db: db.to_string(),
                partition: PartitionTerm { ordinal, term },
                entries: gap.take().unwrap_or_else(|| vec![record.clone()]),
                sync: true,
            };
            let through = batch.entries.last().map(|r| r.index);
            let answer = match client.call_blocking(&Request::Replicate { batches: vec![batch] }, ATTEMPT) {
                Ok(response) => match batch_answer(response) {
                    Ok(result) => result.map_err(Some),
                    Err(other) => {
                        tracing::warn!("{db}:{ordinal}: unexpected answer from the replica leaf: {other:?}");
                        Err(None)
                    }
                },
                Err(e) => {
                    client.flush();
                    if !logged {
                        tracing::warn!(
                            "{db}:{ordinal}: waiting for replica leaf {}:{} ({e})",
                            target.host,
                            target.rpc_port
                        );
                        logged = true;
                    }
                    Err(None)
                }
            };
            match answer {
                Ok(_) if through == Some(record.index) => return Ok(()),
                // The gap is filled up to a capped read; the entry goes next (after the rest of the gap).
                Ok(_) => {}
                Err(Some(e)) => match e.kind {
                    // The replica's log ends before this entry: it lost the entries it held and had not applied
                    // (its process restarted) and was made a replica again. Send it what it lacks from this copy's
                    // log, which this transaction holds open (this entry included).
                    RemoteErrorKind::LogGap { expected } if expected > 0 && expected <= record.index => {
                        tracing::info!(
                            "{db}:{ordinal}: the replica lacks entries {expected}..{}; sending them from this copy's log",
                            record.index
                        );
                        gap = Some(
                            log::since(conn, expected - 1, u64::from(CHUNK_BYTES))?
                                .into_iter()
                                .take_while(|e| e.index <= record.index)
                                .map(to_record)
                                .collect(),
                        );
                    }
                    RemoteErrorKind::StaleTerm { expected, .. } if expected > term => {
                        tracing::warn!(
                            "{db}:{ordinal}: the replica is in term {expected}, this master in {term}: deposed"
                        );
                        self.fence(db, ordinal);
                        if let Some(store) = self.store.upgrade() {
                            let _ = store.depose(db, ordinal, term);
                        }
                        return Err(StorageError::Replication(format!(
                            "Partition {db}:{ordinal} has a new master (term {expected}); this write was not committed"
                        )));
                    }
                    // The replica's copy is not ready to take entries (it restarted and waits to be attached, or
                    // it has not been told this term yet): it still counts as in sync until the master aggregator
                    // says otherwise, so wait for it like for a replica that does not answer.
                    RemoteErrorKind::NotReplica
                    | RemoteErrorKind::NoSuchPartition
                    | RemoteErrorKind::StaleTerm { .. } => {
                        if !logged {
                            tracing::warn!("{db}:{ordinal}: the replica cannot take entries yet ({e}); waiting");
                            logged = true;
                        }
                        std::thread::sleep(RETRY_PAUSE);
                    }
                    _ => {
                        // The replica did not apply the entry (each batch is its own transaction), so rolling back
                        // leaves both copies equal.
                        tracing::error!("{db}:{ordinal}: the replica refused log entry {}: {e}", record.index);
                        return Err(StorageError::Replication(format!(
                            "Partition {db}:{ordinal}: the replica refused the write ({e}); it was not committed"
                        )));
                    }
                },
                Err(None) => {
                    // No answer or a broken exchange: the entry may or may not be there. Ask again (never roll back
                    // now), until the replica answers or the master aggregator takes it out of the commit path.
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }
}
