//! The leaf side of inter-node RPC: answers pings, joins a cluster, and runs partition and reference-copy requests
//! on the local `LeafStore`. SQLite work runs on the blocking pool so it never stalls the node's async threads.

use std::sync::Arc;

use canopy_rpc::{
    LocalDatabase, NodeStatus, PartitionTerm, PendingPartition, RemoteError, RemoteErrorKind, Request, Response, Target,
};
use canopy_storage::{LeafStore, Outcome, PartitionState, StorageError};
use canopy_types::CopyRole;

use crate::leaf::reference_copy;
use crate::leaf::{CHUNK_BYTES, blocking, copy, remote_error, to_record};

use crate::node::Node;
use crate::persist::NodeRole;

pub struct RpcHandler {
    pub node: Arc<Node>,
    /// Client statements running here, for `Cancel`.
    pub running: crate::leaf::running::Running,
    /// Where commits of the partitions this leaf masters are shipped (their sync replicas).
    pub replication: Arc<crate::leaf::replication::Replication>,
}

/// The replica side of `Replicate`: each batch applied in its own transaction, in the batch's term only.
fn replicate(store: &LeafStore, batches: Vec<canopy_rpc::ReplicateBatch>) -> Response {
    let results = batches
        .into_iter()
        .map(|batch| {
            let entries = batch
                .entries
                .into_iter()
                .map(crate::leaf::from_record)
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| RemoteError::new(RemoteErrorKind::BadRequest, e))?;
            store
                .apply_replicated(&batch.db, batch.partition.ordinal, batch.partition.term, &entries, batch.sync)
                .map(|position| position.index)
                .map_err(|e| remote_error(&e))
        })
        .collect();
    Response::Replicated(results)
}

fn remote(kind: RemoteErrorKind, message: impl Into<String>) -> Response {
    Response::Error(RemoteError::new(kind, message))
}

fn storage_error(e: StorageError) -> Response {
    Response::Error(remote_error(&e))
}

/// Runs one statement on several partitions of this leaf, one after the other (the aggregator sends a scatter's
/// partitions on a leaf in one request): rows concatenated, affected rows summed. Stops at the first error.
fn execute_on_each(
    store: &LeafStore,
    db: &str,
    partitions: &[PartitionTerm],
    sql: &str,
    params: &[canopy_sql::Value],
) -> Result<Outcome, StorageError> {
    let mut combined: Option<Outcome> = None;
    let mut bytes = 0usize;
    for partition in partitions {
        let next = store.execute_on_partition_in_term(db, partition.ordinal, partition.term, sql, params)?;
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

fn join(node: &Node, cluster_id: String, node_id: canopy_types::NodeId, secret: canopy_rpc::ClusterSecret) -> Response {
    match node.join_cluster(cluster_id, node_id, secret) {
        Ok(()) => Response::Done,
        Err(e) => remote(RemoteErrorKind::OtherCluster, e.to_string()),
    }
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
            Request::Cancel { statement } => {
                self.running.cancel(statement);
                Ok(Response::Done)
            }
            Request::Replicate { batches } => {
                if self.node.role() != NodeRole::Leaf {
                    return Ok(remote(RemoteErrorKind::BadRequest, "this node is not a leaf"));
                }
                Ok(replicate(&self.node.store, batches))
            }
            Request::Execute { db, target, sql, params, statement } => {
                if self.node.role() != NodeRole::Leaf {
                    return Ok(remote(RemoteErrorKind::BadRequest, "this node is not a leaf"));
                }
                let store = &self.node.store;
                let run = self.running.start(statement);
                let execute = || match target {
                    Target::Reference => store.execute_on_reference_with(&db, &sql, &params),
                    Target::Partitions(partitions) => match partitions.as_slice() {
                        [partition] => {
                            store.execute_on_partition_in_term(&db, partition.ordinal, partition.term, &sql, &params)
                        }
                        partitions => execute_on_each(store, &db, partitions, &sql, &params),
                    },
                };
                let result = match &run {
                    Some(run) if run.flag.load(std::sync::atomic::Ordering::Relaxed) => Err(StorageError::Cancelled),
                    Some(run) => canopy_storage::engine::with_cancel(run.flag.clone(), execute),
                    None => execute(),
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
            Request::CreatePartitions { db, partitions, schema, reference_schema, durability, database_id } => {
                for p in &partitions {
                    self.replication.serve_alone(&db, p.ordinal);
                }
                blocking(store, move |s| {
                    let ordinals: Vec<u32> = partitions.iter().map(|p| p.ordinal).collect();
                    s.create_partitions(&db, &ordinals, &schema, &reference_schema, durability, database_id)?;
                    partitions.iter().try_for_each(|p| s.set_term(&db, p.ordinal, p.term))
                })
                .await
                .map(|()| Response::Done)
            }
            Request::DropDatabase { db } => {
                self.replication.forget_database(&db);
                blocking(store, move |s| s.drop_database(&db)).await.map(|()| Response::Done)
            }
            Request::BecomeReplica { db, partition } => {
                self.replication.fence(&db, partition.ordinal);
                blocking(store, move |s| s.make_replica(&db, partition.ordinal, partition.term))
                    .await
                    .map(|()| Response::Done)
            }
            Request::PromotePartition { db, partition } => {
                self.replication.serve_alone(&db, partition.ordinal);
                blocking(store, move |s| s.promote(&db, partition.ordinal, partition.term))
                    .await
                    .map(|()| Response::Done)
            }
            Request::SetReplica { db, partition, replica } => {
                return match self.replication.set_replica(&db, partition, replica).await {
                    Ok(()) => Response::Done,
                    Err(e) => Response::Error(e),
                };
            }
            Request::LogEnd { db, ordinal } => blocking(store, move |s| s.log_end(&db, ordinal))
                .await
                .map(|(last, position)| Response::LogEnd { last, position }),
            Request::Ddl { db, target, statements } => blocking(store, move |s| match target {
                Target::Reference => s.ddl_on_reference(&db, &statements),
                Target::Partitions(partitions) => partitions.iter().try_for_each(|p| {
                    s.check_term(&db, p.ordinal, p.term)?;
                    s.ddl_on_partition(&db, p.ordinal, &statements)
                }),
            })
            .await
            .map(|()| Response::Done),
            Request::AttachPartitions { db, partitions } => {
                for p in &partitions {
                    self.replication.serve_alone(&db, p.ordinal);
                }
                blocking(store, move |s| {
                    partitions.iter().try_for_each(|p| {
                        s.set_term(&db, p.ordinal, p.term)?;
                        s.set_partition_state(&db, p.ordinal, PartitionState::Online)
                    })
                })
                .await
                .map(|()| Response::Done)
            }
            // The position is read after the fence, through the partition's connection (so after any statement
            // still holding it): nothing can be appended after it, so it is the end a copy must reach.
            Request::FencePartition { db, partition } => {
                self.replication.fence(&db, partition.ordinal);
                blocking(store, move |s| {
                    s.check_term(&db, partition.ordinal, partition.term)?;
                    s.set_partition_state(&db, partition.ordinal, PartitionState::Pending)?;
                    s.log_position(&db, partition.ordinal)
                })
                .await
                .map(|position| Response::Position { log_index: position.index })
            }
            Request::DropPartition { db, ordinal } => {
                self.replication.fence(&db, ordinal);
                blocking(store, move |s| s.drop_partition(&db, ordinal)).await.map(|()| Response::Done)
            }
            Request::Checkpoint { db, partitions } => {
                // An asynchronous replica may not have taken the newest entries yet: they stay in the log.
                let keep: Vec<Option<u64>> =
                    partitions.iter().map(|p| self.replication.async_replica_position(&db, p.ordinal)).collect();
                blocking(store, move |s| {
                    for (partition, replica_at) in partitions.iter().zip(keep) {
                        s.check_term(&db, partition.ordinal, partition.term)?;
                        let position = s.log_position(&db, partition.ordinal)?;
                        let keep_after = replica_at.map_or(position.index, |at| at.min(position.index));
                        s.checkpoint_partition(&db, partition.ordinal, keep_after)?;
                    }
                    Ok(())
                })
                .await
                .map(|()| Response::Done)
            }
            Request::SnapshotPartition { db, partition } => blocking(store, move |s| {
                s.check_term(&db, partition.ordinal, partition.term)?;
                s.snapshot_partition(&db, partition.ordinal)
            })
            .await
            .map(|snap| Response::Snapshot {
                id: snap.id,
                bytes: snap.size_bytes,
                log_index: snap.position.index,
            }),
            Request::SnapshotChunk { id, offset, len } => {
                blocking(store, move |s| s.read_snapshot_chunk(id, offset, len.min(CHUNK_BYTES)))
                    .await
                    .map(Response::Chunk)
            }
            Request::ReleaseSnapshot { id } => {
                blocking(store, move |s| s.release_snapshot(id)).await.map(|()| Response::Done)
            }
            Request::LogSince { db, partition, after_index, max_bytes } => blocking(store, move |s| {
                s.check_term(&db, partition.ordinal, partition.term)?;
                s.log_since(&db, partition.ordinal, after_index, max_bytes.min(u64::from(CHUNK_BYTES)))
            })
            .await
            .map(|entries| Response::Log(entries.into_iter().map(to_record).collect())),
            Request::CopyPartition { db, source, source_host, source_rpc_port } => {
                return copy::copy_partition(store, &db, source, &source_host, source_rpc_port, &self.node.credentials)
                    .await
                    .map_or_else(
                        |e| remote(RemoteErrorKind::Internal, e),
                        |log_index| Response::Position { log_index },
                    );
            }
            Request::CopyProgress { db, ordinal } => {
                let (copied_bytes, total_bytes) = copy::progress(&db, ordinal);
                return Response::CopyProgress { copied_bytes, total_bytes };
            }
            Request::CatchUp { db, source, source_host, source_rpc_port } => {
                return copy::catch_up(store, &db, source, &source_host, source_rpc_port, &self.node.credentials)
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
                            role: match (d.ordinal, d.state) {
                                (None, _) => CopyRole::Reference,
                                (Some(_), PartitionState::Replica) => CopyRole::Replica,
                                (Some(_), _) => CopyRole::Master,
                            },
                            state: d.state,
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
            Request::Ping
            | Request::Execute { .. }
            | Request::Replicate { .. }
            | Request::Cancel { .. }
            | Request::JoinCluster { .. }
            | Request::LeaveCluster => {
                // Ping and Execute are answered inline; the others above.
                return remote(RemoteErrorKind::Internal, "answered elsewhere");
            }
        };
        result.unwrap_or_else(storage_error)
    }
}
