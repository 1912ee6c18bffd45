//! Query execution on the aggregator: running a distributed plan on the leaves (fan-out behind the per-partition
//! gates), merging what comes back, and the scratch engine for statements without tables.

pub mod exec;
