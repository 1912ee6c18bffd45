//! A running node, whatever its role: configuration, identity, the local partition store, the credentials it
//! presents to other nodes, and joining or leaving a cluster as a leaf. The master aggregator's state is not here
//! (`master::MasterSlot`), so the leaf side never reaches it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use canopy_rpc::{ClusterSecret, Credentials};
use canopy_storage::LeafStore;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::persist::{self, Identity, NodeRole};

pub struct Node {
    pub config: NodeConfig,
    identity: RwLock<Identity>,
    pub store: Arc<LeafStore>,
    next_connection_id: AtomicU32,
    /// Where the local RPC socket listens, once it does.
    local_socket: std::sync::OnceLock<std::path::PathBuf>,
    /// What this node presents on RPC connections, served and opened: its name and the cluster secret (none while
    /// unconfigured).
    pub credentials: Arc<Credentials>,
    /// Shown to MySQL logins while the node is unconfigured (`@@canopy_join_token`): ADD LEAF's login reads it and
    /// sends it back in `JoinCluster`, which proves the joining master passed that login. Random per process.
    join_token: String,
}

impl Node {
    /// Opens the data directory: identity, local partitions and the cluster secret.
    pub fn open(config: NodeConfig) -> Result<Arc<Node>> {
        // Mode 0700, also when it existed: the directory holds the cluster secret, the metadata and the data.
        let private = |dir: &std::path::Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        };
        private(&config.data_dir)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", config.data_dir.display())))?;
        let identity: Identity =
            persist::load(&persist::identity_path(&config.data_dir))?.unwrap_or_else(Identity::unconfigured);
        canopy_storage::engine::set_query_time_ms_max(config.query_time_ms_max);
        let store = Arc::new(LeafStore::open(&config.data_dir.join("leaf"))?);
        let secret = match identity.role {
            NodeRole::Unconfigured => None,
            NodeRole::Leaf => persist::load_secret(&persist::secret_path(&config.data_dir))?,
            NodeRole::MasterAggregator => Some(persist::master_secret(&config.data_dir)?),
        };
        if identity.role == NodeRole::Leaf && secret.is_none() {
            tracing::warn!("this leaf holds no cluster secret (added by an older version): re-add it to its cluster");
        }
        let credentials = Arc::new(Credentials::new(format!("{}:{}", config.host, config.port), secret));
        if identity.role == NodeRole::Leaf {
            store.set_cluster_id(identity.cluster_id.clone());
        }
        Ok(Arc::new(Node {
            config,
            identity: RwLock::new(identity),
            store,
            next_connection_id: AtomicU32::new(1),
            local_socket: std::sync::OnceLock::new(),
            credentials,
            join_token: format!("{:032x}", rand::random::<u128>()),
        }))
    }

    /// The join token while this node is unconfigured (see the field), None once it belongs to a cluster.
    pub fn join_token(&self) -> Option<&str> {
        (self.role() == NodeRole::Unconfigured).then_some(self.join_token.as_str())
    }

    /// Whether `token` is this unconfigured node's join token (compared in constant time).
    pub fn check_join_token(&self, token: &str) -> bool {
        self.join_token().is_some_and(|t| canopy_rpc::auth::constant_time_eq(t.as_bytes(), token.as_bytes()))
    }

    pub fn identity(&self) -> Identity {
        self.identity.read().map(|i| i.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The node's role, without copying the rest of its identity (read on every statement).
    pub fn role(&self) -> NodeRole {
        self.identity.read().map(|i| i.role).unwrap_or_else(|p| p.into_inner().role)
    }

    pub(crate) fn set_identity(&self, identity: Identity) -> Result<()> {
        persist::store(&persist::identity_path(&self.config.data_dir), &identity)?;
        *self.identity.write().map_err(|_| Error::Internal("identity lock poisoned".into()))? = identity;
        Ok(())
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
        self.set_identity(Identity::unconfigured())?;
        // The secret goes with the membership: a node outside the cluster must not authenticate as one of it.
        self.credentials.set_secret(None);
        self.store.set_cluster_id(None);
        persist::remove_secret(&persist::secret_path(&self.config.data_dir))
    }

    /// ADD LEAF reached this node: it becomes leaf `node_id` of `cluster_id` and keeps the cluster's `secret`
    /// (stored before the identity, so a leaf never lacks it). Joining the same cluster again under the same id is
    /// accepted (a retried ADD LEAF); any other cluster is refused.
    pub fn join_cluster(&self, cluster_id: String, node_id: canopy_types::NodeId, secret: ClusterSecret) -> Result<()> {
        let identity = self.identity();
        match identity.role {
            NodeRole::Unconfigured => {}
            NodeRole::Leaf if identity.cluster_id.as_deref() == Some(&cluster_id) => {}
            _ => return Err(Error::AlreadyJoined),
        }
        persist::store_secret(&persist::secret_path(&self.config.data_dir), &secret)?;
        self.credentials.set_secret(Some(secret));
        self.store.set_cluster_id(Some(cluster_id.clone()));
        self.set_identity(Identity { role: NodeRole::Leaf, cluster_id: Some(cluster_id), node_id: Some(node_id) })
    }
}
