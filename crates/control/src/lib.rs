//! Every decision of the master aggregator, pure: `fn(view, observations, now) -> actions or a plan`. No IO, no
//! clock, no randomness: time and observations come in as arguments, so each rule is tested without processes and
//! without sleeping. The runtime (`canopy-server`'s master part) only executes what these functions return.

pub mod attach;
pub mod failover;
pub mod failure;
pub mod leaves;
pub mod placement;
pub mod plan;
pub mod rebalance;
