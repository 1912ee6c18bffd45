//! The types that cross crate, process and disk boundaries: ids and counters with explicit widths, log positions,
//! the states of a leaf's copies, durability. Deliberately plain data: no behaviour beyond naming and formatting,
//! no dependencies but serde, so the metadata, the storage engine and the RPC messages share one type per concept.

mod ids;
mod states;

pub use ids::{DatabaseId, InstanceId, LogPosition, NodeId, Ordinal, Term};
pub use states::{CopyRole, Durability, PartitionState, Replication};
