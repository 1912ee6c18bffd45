//! Newtypes for identifiers and counters, with explicit widths because they are persisted and sent between nodes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node of the cluster (aggregator or leaf), unique for the cluster's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

/// One physical copy of a partition; stable for the life of that copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(pub u64);

/// A period during which one instance is the master of a partition. Every promotion starts a new, larger term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Term(pub u64);

/// A distributed database, unique for the cluster's lifetime (a re-created database gets a new id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DatabaseId(pub u64);

/// A partition's number within its database, `0..partitions`. A plain `u32`, not a newtype: the planner computes
/// with it (shard hash modulo the count) and it never stands beside another id of the same width at a call site.
pub type Ordinal = u32;

/// A place in a change log: the term of the master that wrote the entry, and the entry's index (1 is the first;
/// 0 is the empty log). Entries of one partition are totally ordered by index; terms never decrease along it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct LogPosition {
    pub term: Term,
    pub index: u64,
}

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_inner!(NodeId, InstanceId, Term, DatabaseId);
