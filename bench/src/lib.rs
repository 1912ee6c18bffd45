//! The parts the benchmark programs share: a throw-away cluster of real processes (`cluster`), the setting and
//! runtime of a run (`program`: flags, canopy binary, scratch directory, machine facts, Ctrl-C), the facts printed
//! with every figure (`facts`), the scratch directory (`scratch`) and latency percentiles (`latency`). The programs
//! themselves are the binaries: `canopy-bench` (`main.rs`), `canopy-plan-bench` (`plan.rs`), `canopy-rebalance`
//! (`rebalance.rs`) and the redundancy-2 ones in `redundancy2/`. Nothing here asserts anything about speed.

pub mod cluster;
pub mod facts;
pub mod latency;
pub mod program;
pub mod scratch;
