//! The leaf side of inter-node RPC: answers pings, joins a cluster, and runs partition and reference-copy requests
//! on the local `LeafStore`. SQLite work runs on the blocking pool so it never stalls the node's async threads.

use std::sync::Arc;

use canopy_rpc::{LocalDatabase, NodeStatus, RemoteError, RemoteErrorKind, Request, Response, Target};
use canopy_storage::{LeafStore, Outcome, StorageError};

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
        StorageError::NoSuchPartition { .. } | StorageError::NoSuchReference(_) => RemoteErrorKind::NoSuchPartition,
        _ if e.is_constraint() => RemoteErrorKind::Constraint,
        StorageError::Sqlite(_) | StorageError::TooManyRows | StorageError::BadName(_) => RemoteErrorKind::Sql,
        _ => RemoteErrorKind::Internal,
    };
    remote(kind, e.to_string())
}

fn outcome(o: Outcome) -> Response {
    match o {
        Outcome::Rows(rs) => Response::Rows(rs),
        Outcome::Affected { rows, last_insert_id } => Response::Affected { rows, last_insert_id },
    }
}

/// Runs blocking storage work off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<LeafStore>,
    f: impl FnOnce(&LeafStore) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap_or_else(|e| Err(StorageError::Internal(format!("storage task failed: {e}"))))
}

impl canopy_rpc::Handler for RpcHandler {
    async fn handle(&self, request: Request) -> Response {
        let identity = self.node.identity();
        let status = NodeStatus { cluster_id: identity.cluster_id.clone(), node_id: identity.node_id };
        match request {
            Request::Ping => return Response::Pong(status),
            Request::JoinCluster { cluster_id, node_id } => {
                return match self.node.join_cluster(cluster_id, node_id) {
                    Ok(()) => Response::Done,
                    Err(e) => remote(RemoteErrorKind::OtherCluster, e.to_string()),
                };
            }
            _ => {}
        }
        if identity.role != NodeRole::Leaf {
            return remote(RemoteErrorKind::BadRequest, "this node is not a leaf");
        }
        let store = &self.node.store;
        let result = match request {
            Request::CreatePartitions { db, ordinals, schema, reference_schema } => {
                blocking(store, move |s| s.create_partitions(&db, &ordinals, &schema, &reference_schema))
                    .await
                    .map(|()| Response::Done)
            }
            Request::DropDatabase { db } => blocking(store, move |s| s.drop_database(&db)).await.map(|()| Response::Done),
            Request::Ddl { db, target, statements } => blocking(store, move |s| match target {
                Target::Reference => s.ddl_on_reference(&db, &statements),
                Target::Partitions(ordinals) => {
                    ordinals.iter().try_for_each(|&o| s.ddl_on_partition(&db, o, &statements))
                }
            })
            .await
            .map(|()| Response::Done),
            Request::Execute { db, target, sql } => blocking(store, move |s| match target {
                Target::Reference => s.execute_on_reference(&db, &sql),
                Target::Partitions(ordinals) => match ordinals.as_slice() {
                    [ordinal] => s.execute_on_partition(&db, *ordinal, &sql),
                    _ => Err(StorageError::Internal("Execute takes exactly one partition".into())),
                },
            })
            .await
            .map(outcome),
            Request::ListDatabases => blocking(store, |s| s.list()).await.map(|dbs| {
                Response::Databases(
                    dbs.into_iter()
                        .map(|d| LocalDatabase {
                            name: d.name(),
                            role: if d.ordinal.is_some() { "master" } else { "reference" }.to_string(),
                            state: "online".to_string(),
                            db: d.db,
                            ordinal: d.ordinal,
                            commits: d.commits,
                            term: d.term,
                            log_index: d.log_index,
                        })
                        .collect(),
                )
            }),
            Request::Ping | Request::JoinCluster { .. } => unreachable!("answered above"),
        };
        result.unwrap_or_else(storage_error)
    }
}
