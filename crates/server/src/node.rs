//! A running node: its configuration, identity, local partition store and, on the master aggregator, the cluster
//! state. `run` starts the MySQL front end and the RPC server and stops both when the shutdown future completes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use canopy_meta::{ClusterMeta, NodeAddr};
use canopy_storage::LeafStore;

use crate::cluster::Cluster;
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::persist::{self, Identity, NodeRole};

pub struct Node {
    pub config: NodeConfig,
    identity: RwLock<Identity>,
    pub store: Arc<LeafStore>,
    cluster: RwLock<Option<Arc<Cluster>>>,
    next_connection_id: AtomicU32,
    /// Where the local RPC socket listens, once it does.
    local_socket: std::sync::OnceLock<std::path::PathBuf>,
}

impl Node {
    /// Opens the data directory: identity, local partitions and, on a master aggregator, the cluster metadata.
    pub fn open(config: NodeConfig) -> Result<Arc<Node>> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", config.data_dir.display())))?;
        let identity: Identity =
            persist::load(&persist::identity_path(&config.data_dir))?.unwrap_or_else(Identity::unconfigured);
        canopy_storage::engine::set_query_time_ms_max(config.query_time_ms_max);
        let store = Arc::new(LeafStore::open(&config.data_dir.join("leaf"))?);
        let cluster = match identity.role {
            NodeRole::MasterAggregator => {
                let meta: ClusterMeta = persist::load(&persist::meta_path(&config.data_dir))?
                    .ok_or_else(|| Error::Internal("master aggregator without cluster.json".into()))?;
                Some(Cluster::new(config.data_dir.clone(), meta))
            }
            _ => None,
        };
        Ok(Arc::new(Node {
            config,
            identity: RwLock::new(identity),
            store,
            cluster: RwLock::new(cluster),
            next_connection_id: AtomicU32::new(1),
            local_socket: std::sync::OnceLock::new(),
        }))
    }

    pub fn identity(&self) -> Identity {
        self.identity.read().map(|i| i.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The node's role, without copying the rest of its identity (read on every statement).
    pub fn role(&self) -> NodeRole {
        self.identity.read().map(|i| i.role).unwrap_or_else(|p| p.into_inner().role)
    }

    fn set_identity(&self, identity: Identity) -> Result<()> {
        persist::store(&persist::identity_path(&self.config.data_dir), &identity)?;
        *self.identity.write().map_err(|_| Error::Internal("identity lock poisoned".into()))? = identity;
        Ok(())
    }

    /// The cluster state, present only on the master aggregator.
    pub fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster.read().ok().and_then(|c| c.clone())
    }

    /// The absolute path of this node's local RPC socket, once it listens on one.
    pub fn local_socket(&self) -> Option<&std::path::Path> {
        self.local_socket.get().map(|p| p.as_path())
    }

    /// Records where the local RPC socket listens (once per process).
    pub fn set_local_socket(&self, path: std::path::PathBuf) {
        let _ = self.local_socket.set(path);
    }

    pub fn next_connection_id(&self) -> u32 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// BOOTSTRAP AGGREGATOR: this unconfigured node becomes the master aggregator of a new cluster.
    pub fn bootstrap(&self, host: String) -> Result<Arc<Cluster>> {
        let identity = self.identity();
        if identity.role != NodeRole::Unconfigured {
            return Err(Error::AlreadyJoined);
        }
        let cluster_id = format!("{:032x}", rand::random::<u128>());
        let addr = NodeAddr { host, port: self.config.port, rpc_port: self.config.rpc_port };
        let meta = ClusterMeta::bootstrap(cluster_id.clone(), addr);
        persist::store(&persist::meta_path(&self.config.data_dir), &meta)?;
        let cluster = Cluster::new(self.config.data_dir.clone(), meta);
        self.set_identity(Identity {
            role: NodeRole::MasterAggregator,
            cluster_id: Some(cluster_id),
            node_id: Some(1),
        })?;
        *self.cluster.write().map_err(|_| Error::Internal("cluster lock poisoned".into()))? = Some(cluster.clone());
        Ok(cluster)
    }

    /// REMOVE LEAF reached this node: it is unconfigured again and can be added to a cluster; its partition files
    /// stay on disk (pending, never served until attached).
    pub fn leave_cluster(&self) -> Result<()> {
        if self.role() != NodeRole::Leaf {
            return Err(Error::NotInCluster);
        }
        for local in self.store.list()? {
            if let Some(ordinal) = local.ordinal {
                self.store.set_partition_state(&local.db, ordinal, canopy_storage::PartitionState::Pending)?;
            }
        }
        self.set_identity(Identity::unconfigured())
    }

    /// ADD LEAF reached this node: it becomes leaf `node_id` of `cluster_id`. Joining the same cluster again under
    /// the same id is accepted (a retried ADD LEAF); any other cluster is refused.
    pub fn join_cluster(&self, cluster_id: String, node_id: u32) -> Result<()> {
        let identity = self.identity();
        match identity.role {
            NodeRole::Unconfigured => {}
            NodeRole::Leaf if identity.cluster_id.as_deref() == Some(&cluster_id) => {}
            _ => return Err(Error::AlreadyJoined),
        }
        self.set_identity(Identity { role: NodeRole::Leaf, cluster_id: Some(cluster_id), node_id: Some(node_id) })
    }
}
