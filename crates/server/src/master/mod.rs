//! The master aggregator: the metadata store (the only caller of `ClusterMeta::apply`), the fleet of leaf clients
//! and their health, the heartbeat (ping, then act on `canopy-control`'s verdicts), and the cluster operations
//! (ADD LEAF, databases and DDL, ATTACH/DETACH/REMOVE LEAF, partition moves, rebalance plans, reference copies)
//! under the operation lock.

pub mod attach;
pub mod cluster;
pub mod heartbeat;
pub mod moves;
pub mod ops;
pub mod partition;
pub mod rebalance;
pub mod reference;
pub mod replication;
pub mod store;

use std::sync::{Arc, RwLock};

use canopy_meta::{ClusterMeta, NodeAddr};
use canopy_rpc::ClusterSecret;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::persist::{self, Identity, NodeRole};
use cluster::Cluster;

/// The master aggregator's state on this node: present from the start on a master aggregator, from BOOTSTRAP
/// AGGREGATOR on an unconfigured node, never on a leaf.
pub struct MasterSlot(RwLock<Option<Arc<Cluster>>>);

impl MasterSlot {
    /// Loads the metadata when `node` is the master aggregator (an empty slot otherwise).
    pub fn open(node: &Node) -> Result<MasterSlot> {
        let cluster = match node.role() {
            NodeRole::MasterAggregator => {
                let meta = store::load_meta(&node.config.data_dir)?;
                let cluster = Cluster::new(node.config.data_dir.clone(), meta, node.credentials.clone());
                // No operation survives a restart: say so in SHOW REBALANCE STATUS rather than show it running.
                cluster.interrupt_operations()?;
                Some(cluster)
            }
            _ => None,
        };
        Ok(MasterSlot(RwLock::new(cluster)))
    }

    /// The cluster state, present only on the master aggregator.
    pub fn get(&self) -> Option<Arc<Cluster>> {
        self.0.read().ok().and_then(|c| c.clone())
    }

    /// BOOTSTRAP AGGREGATOR: the unconfigured `node` becomes the master aggregator of a new cluster.
    pub fn bootstrap(&self, node: &Node, host: String) -> Result<Arc<Cluster>> {
        if node.role() != NodeRole::Unconfigured {
            return Err(Error::AlreadyJoined);
        }
        let data_dir = &node.config.data_dir;
        let cluster_id = format!("{:032x}", rand::random::<u128>());
        let addr = NodeAddr { host, port: node.config.port, rpc_port: node.config.rpc_port };
        let meta = ClusterMeta::bootstrap(cluster_id.clone(), addr);
        let secret = ClusterSecret::generate();
        persist::store_secret(&persist::secret_path(data_dir), &secret)?;
        persist::store(&persist::meta_path(data_dir), &meta)?;
        node.credentials.set_secret(Some(secret));
        let cluster = Cluster::new(data_dir.clone(), meta, node.credentials.clone());
        node.set_identity(Identity {
            role: NodeRole::MasterAggregator,
            cluster_id: Some(cluster_id),
            node_id: Some(canopy_meta::NodeId(1)),
        })?;
        *self.0.write().map_err(|_| Error::Internal("master slot lock poisoned".into()))? = Some(cluster.clone());
        Ok(cluster)
    }
}
