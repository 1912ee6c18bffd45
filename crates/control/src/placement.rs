//! Where partition instances go when a leaf is emptied (DETACH LEAF, REMOVE LEAF): each of the leaf's partitions of
//! a database goes to the online leaf holding the fewest partitions of that database at that moment, ties going
//! to the earliest leaf in leaf order. The rebalance planner (`rebalance`) decides the other moves. (Placement of a
//! new database's partitions stays in `ClusterMeta::create_database`: the state machine computes it from the state
//! alone, and `canopy-meta` cannot depend on this crate.)

use canopy_meta::{ClusterMeta, NodeId};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlacementError {
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    #[error("no other online leaf can take the partitions of '{db}'")]
    NoTarget { db: String },
}

/// The moves that empty `leaf` of its instances of `db`: `(ordinal, target)` in instance order. Empty when the leaf
/// holds none.
pub fn drain_targets(meta: &ClusterMeta, db: &str, leaf: NodeId) -> Result<Vec<(u32, NodeId)>, PlacementError> {
    let database = meta.databases.get(db).ok_or_else(|| PlacementError::UnknownDatabase(db.to_string()))?;
    let ordinals: Vec<u32> = database.instances.iter().filter(|i| i.node == leaf).map(|i| i.ordinal).collect();
    if ordinals.is_empty() {
        return Ok(Vec::new());
    }
    // (partitions of the database held, leaf order, leaf): the smallest first.
    let mut load: Vec<(usize, usize, NodeId)> = meta
        .leaves_in_order()
        .enumerate()
        .filter(|(_, l)| l.id != leaf && l.state == canopy_meta::LeafState::Online)
        .map(|(order, l)| (database.instances.iter().filter(|i| i.node == l.id).count(), order, l.id))
        .collect();
    if load.is_empty() {
        return Err(PlacementError::NoTarget { db: db.to_string() });
    }
    let mut moves = Vec::with_capacity(ordinals.len());
    for ordinal in ordinals {
        let least = load.iter_mut().min().expect("load is not empty");
        least.0 += 1;
        moves.push((ordinal, least.2));
    }
    Ok(moves)
}
