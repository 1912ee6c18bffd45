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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Term(pub u64);

/// A distributed database, unique for the cluster's lifetime (a re-created database gets a new id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DatabaseId(pub u64);

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
