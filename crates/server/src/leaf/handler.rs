//! The leaf side of inter-node RPC: answers pings, joins a cluster, and runs partition and reference-copy requests
//! on the local `LeafStore`. SQLite work runs on the blocking pool so it never stalls the node's async threads.

use std::sync::Arc;

use canopy_rpc::{
    LocalDatabase, LogRecord, NodeStatus, PendingPartition, RemoteError, RemoteErrorKind, Request, Response, Target,
};
use canopy_storage::{Durability, LeafStore, LogEntry, LogPayload, Outcome, PartitionState, StorageError};

use crate::leaf::copy;
use crate::leaf::reference_copy;

use crate::node::Node;
use crate::persist::NodeRole;

pub struct RpcHandler {
    pub node: Arc<Node>,
}

fn remote(kind: RemoteErrorKind, message: impl Into<String>) -> Response {
    Response::Error(RemoteError { kind, message: message.into() })
}

fn storage_error(e: StorageError) -> Response {
    let kind = match &e {
        StorageError::NoSuchPartition { .. } | StorageError::NoSuchReference(_) | StorageError::NotOnline { .. } => {
            RemoteErrorKind::NoSuchPartition
        }
        _ if e.is_constraint() => RemoteErrorKind::Constraint,
        StorageError::ResultTooLarge { .. } => RemoteErrorKind::ResultTooLarge,
        StorageError::QueryTimeout => RemoteErrorKind::Timeout,
        StorageError::Sqlite(_) | StorageError::BadName(_) => RemoteErrorKind::Sql,
        _ => RemoteErrorKind::Internal,
    };
    remote(kind, e.to_string())
}

/// Runs one statement on several partitions of this leaf, one after the other (the aggregator sends a scatter's
/// partitions on a leaf in one request): rows concatenated, affected rows summed. Stops at the first error.
fn execute_on_each(
    store: &LeafStore,
    db: &str,
    ordinals: &[u32],
    sql: &str,
    params: &[canopy_sql::Value],
) -> Result<Outcome, StorageError> {
    let mut combined: Option<Outcome> = None;
    let mut bytes = 0usize;
    for &ordinal in ordinals {
        let next = store.execute_on_partition_with(db, ordinal, sql, params)?;
        if let Outcome::Rows(rs) = &next {
            // Each partition's share is bounded; so is what one response to the aggregator holds.
            bytes = bytes.saturating_add(rs.size_bytes());
            let limits = canopy_sql::value::ReadLimits::RESULT;
            if bytes > limits.bytes_max {
                return Err(StorageError::ResultTooLarge { rows_max: limits.rows_max, bytes_max: limits.bytes_max });
            }
        }
        combined = Some(match (combined, next) {
            (None, next) => next,
            (Some(Outcome::Rows(mut all)), Outcome::Rows(more)) => {
                all.rows.extend(more.rows);
                Outcome::Rows(all)
            }
            (Some(Outcome::Affected { rows, .. }), Outcome::Affected { rows: more, last_insert_id }) => {
                Outcome::Affected { rows: rows + more, last_insert_id }
            }
            _ => return Err(StorageError::Internal("partitions answered one statement differently".into())),
        });
    }
    combined.ok_or_else(|| StorageError::Internal("Execute names no partition".into()))
}

fn outcome(o: Outcome) -> Response {
    match o {
        Outcome::Rows(rs) => Response::Rows(rs),
        Outcome::Affected { rows, last_insert_id } => Response::Affected { rows, last_insert_id },
    }
}

/// Runs blocking storage work off the async threads.
pub async fn blocking<T: Send + 'static>(
    store: &Arc<LeafStore>,
    f: impl FnOnce(&LeafStore) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap_or_else(|e| Err(StorageError::Internal(format!("storage task failed: {e}"))))
}

fn join(node: &Node, cluster_id: String, node_id: u32, secret: canopy_rpc::ClusterSecret) -> Response {
    match node.join_cluster(cluster_id, node_id, secret) {
        Ok(()) => Response::Done,
        Err(e) => remote(RemoteErrorKind::OtherCluster, e.to_string()),
    }
}

/// Snapshot chunks and log batches travel in pieces of at most this size.
pub const CHUNK_BYTES: u32 = 4 << 20;

pub fn to_record(entry: LogEntry) -> LogRecord {
    let (kind, payload) = match entry.payload {
        LogPayload::Changeset(bytes) => (0, bytes),
        LogPayload::Ddl(text) => (1, text.into_bytes()),
    };
    LogRecord { term: entry.term, index: entry.index, kind, payload }
}

pub fn from_record(record: LogRecord) -> Result<LogEntry, String> {
    let payload = match record.kind {
        0 => LogPayload::Changeset(record.payload),
        1 => LogPayload::Ddl(String::from_utf8(record.payload).map_err(|_| "DDL log entry is not UTF-8".to_string())?),
        k => return Err(format!("unknown log entry kind {k}")),
    };
    Ok(LogEntry { term: record.term, index: record.index, payload })
}

impl canopy_rpc::Handler for RpcHandler {
    /// Statements and pings run on the connection's own thread: SQLite blocks, and this saves two thread
    /// hand-offs per statement (the hot path of every query).
    fn handle_inline(&self, request: Request) -> Result<Response, Request> {
        match request {
            Request::Ping => {
                let identity = self.node.identity();
                // From the state map only: a ping must never wait for a statement holding a partition's connection
                // (that would make a busy leaf look dead to the failure detector).
                let pending = self.node.store.pending_partitions().unwrap_or_default();
                let pending = pending
                    .into_iter()
                    .map(|p| PendingPartition { db: p.db, ordinal: p.ordinal, database_id: p.database_id })
                    .collect();
                Ok(Response::Pong(NodeStatus {
                    cluster_id: identity.cluster_id,
                    node_id: identity.node_id,
                    pending,
                    local_socket: self.node.local_socket().map(|p| p.display().to_string()),
                }))
            }
            Request::Execute { db, target, sql, params } => {
                if self.node.role() != NodeRole::Leaf {
                    return Ok(remote(RemoteErrorKind::BadRequest, "this node is not a leaf"));
                }
                let store = &self.node.store;
                let result = match target {
                    Target::Reference => store.execute_on_reference_with(&db, &sql, &params),
                    Target::Partitions(ordinals) => match ordinals.as_slice() {
                        [ordinal] => store.execute_on_partition_with(&db, *ordinal, &sql, &params),
                        ordinals => execute_on_each(store, &db, ordinals, &sql, &params),
                    },
                };
                Ok(result.map(outcome).unwrap_or_else(storage_error))
            }
            other => Err(other),
        }
    }

    /// A node outside any cluster takes only `JoinCluster`, and only with its join token (see `Node::join_token`).
    fn handle_unauthenticated(&self, request: Request) -> Response {
        match request {
            Request::JoinCluster { cluster_id, node_id, secret, join_token }
                if self.node.check_join_token(&join_token) =>
            {
                join(&self.node, cluster_id, node_id, secret)
            }
            Request::JoinCluster { .. } => {
                tracing::warn!("rpc: refused JoinCluster without this node's join token");
                remote(RemoteErrorKind::BadRequest, "JoinCluster without this node's join token (use ADD LEAF)")
            }
            _ => remote(RemoteErrorKind::BadRequest, "not authenticated: this node belongs to no cluster"),
        }
    }

    async fn handle(&self, request: Request) -> Response {
        let identity = self.node.identity();
        match request {
            Request::LeaveCluster => {
                return match self.node.leave_cluster() {
                    Ok(()) => Response::Done,
                    Err(e) => remote(RemoteErrorKind::Internal, e.to_string()),
                };
            }
            Request::JoinCluster { cluster_id, node_id, secret, .. } => {
                // An authenticated peer already holds this cluster's secret (a retried ADD LEAF).
                return join(&self.node, cluster_id, node_id, secret);
            }
            _ => {}
        }
        if identity.role != NodeRole::Leaf {
            return remote(RemoteErrorKind::BadRequest, "this node is not a leaf");
        }
        let store = &self.node.store;
        let result = match request {
            Request::CreatePartitions { db, ordinals, schema, reference_schema, sync_durability, database_id } => {
                let durability = if sync_durability { Durability::Sync } else { Durability::Async };
                blocking(store, move |s| {
                    s.create_partitions(&db, &ordinals, &schema, &reference_schema, durability, database_id)
                })
                .await
                .map(|()| Response::Done)
            }
            Request::DropDatabase { db } => {
                blocking(store, move |s| s.drop_database(&db)).await.map(|()| Response::Done)
            }
            Request::Ddl { db, target, statements } => blocking(store, move |s| match target {
                Target::Reference => s.ddl_on_reference(&db, &statements),
                Target::Partitions(ordinals) => {
                    ordinals.iter().try_for_each(|&o| s.ddl_on_partition(&db, o, &statements))
                }
            })
            .await
            .map(|()| Response::Done),
            Request::AttachPartitions { db, ordinals } => blocking(store, move |s| {
                ordinals.iter().try_for_each(|&o| s.set_partition_state(&db, o, PartitionState::Online))
            })
            .await
            .map(|()| Response::Done),
            // The position is read after the fence, through the partition's connection (so after any statement
            // still holding it): nothing can be appended after it, so it is the end a copy must reach.
            Request::FencePartition { db, ordinal } => blocking(store, move |s| {
                s.set_partition_state(&db, ordinal, PartitionState::Pending)?;
                s.log_position(&db, ordinal)
            })
            .await
            .map(|position| Response::Position { log_index: position.index }),
            Request::DropPartition { db, ordinal } => {
                blocking(store, move |s| s.drop_partition(&db, ordinal)).await.map(|()| Response::Done)
            }
            Request::Checkpoint { db, ordinals } => blocking(store, move |s| {
                for &ordinal in &ordinals {
                    let position = s.log_position(&db, ordinal)?;
                    s.checkpoint_partition(&db, ordinal, position.index)?;
                }
                Ok(())
            })
            .await
            .map(|()| Response::Done),
            Request::SnapshotPartition { db, ordinal } => blocking(store, move |s| s.snapshot_partition(&db, ordinal))
                .await
                .map(|snap| Response::Snapshot { id: snap.id, bytes: snap.size_bytes, log_index: snap.position.index }),
            Request::SnapshotChunk { id, offset, len } => {
                blocking(store, move |s| s.read_snapshot_chunk(id, offset, len.min(CHUNK_BYTES)))
                    .await
                    .map(Response::Chunk)
            }
            Request::ReleaseSnapshot { id } => {
                blocking(store, move |s| s.release_snapshot(id)).await.map(|()| Response::Done)
            }
            Request::LogSince { db, ordinal, after_index, max_bytes } => {
                blocking(store, move |s| s.log_since(&db, ordinal, after_index, max_bytes.min(u64::from(CHUNK_BYTES))))
                    .await
                    .map(|entries| Response::Log(entries.into_iter().map(to_record).collect()))
            }
            Request::CopyPartition { db, ordinal, source_host, source_rpc_port } => {
                return copy::copy_partition(
                    store,
                    &db,
                    ordinal,
                    &source_host,
                    source_rpc_port,
                    &self.node.credentials,
                )
                .await
                .map_or_else(|e| remote(RemoteErrorKind::Internal, e), |log_index| Response::Position { log_index });
            }
            Request::CopyProgress { db, ordinal } => {
                let (copied_bytes, total_bytes) = copy::progress(&db, ordinal);
                return Response::CopyProgress { copied_bytes, total_bytes };
            }
            Request::CatchUp { db, ordinal, source_host, source_rpc_port } => {
                return copy::catch_up(store, &db, ordinal, &source_host, source_rpc_port, &self.node.credentials)
                    .await
                    .map_or_else(
                        |e| remote(RemoteErrorKind::Internal, e),
                        |log_index| Response::Position { log_index },
                    );
            }
            Request::ReferenceLogSince { db, after_index, max_bytes } => {
                blocking(store, move |s| s.reference_log_since(&db, after_index, max_bytes.min(u64::from(CHUNK_BYTES))))
                    .await
                    .map(|entries| Response::Log(entries.into_iter().map(to_record).collect()))
            }
            Request::SnapshotReference { db } => blocking(store, move |s| s.snapshot_reference(&db))
                .await
                .map(|(id, position, bytes)| Response::Snapshot { id, bytes, log_index: position.index }),
            Request::SyncReference { db, database_id, source_host, source_rpc_port } => {
                return reference_copy::sync(
                    store,
                    &db,
                    database_id,
                    &source_host,
                    source_rpc_port,
                    &self.node.credentials,
                )
                .await
                .map_or_else(|e| remote(RemoteErrorKind::Internal, e), |log_index| Response::Position { log_index });
            }
            Request::DropReference { db } => {
                blocking(store, move |s| s.drop_reference(&db)).await.map(|_| Response::Done)
            }
            Request::ListDatabases => blocking(store, |s| s.list()).await.map(|dbs| {
                Response::Databases(
                    dbs.into_iter()
                        .map(|d| LocalDatabase {
                            name: d.name(),
                            role: if d.ordinal.is_some() { "master" } else { "reference" }.to_string(),
                            state: d.state.as_str().to_string(),
                            db: d.db,
                            ordinal: d.ordinal,
                            commits: d.commits,
                            term: d.term,
                            log_index: d.log_index,
                            database_id: d.database_id,
                            tables: d.tables,
                            cluster_id: d.cluster_id,
                        })
                        .collect(),
                )
            }),
            Request::Ping | Request::Execute { .. } | Request::JoinCluster { .. } | Request::LeaveCluster => {
                // Ping and Execute are answered inline; the others above.
                return remote(RemoteErrorKind::Internal, "answered elsewhere");
            }
        };
        result.unwrap_or_else(storage_error)
    }
}
