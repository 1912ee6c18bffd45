//! The leaf: the RPC handler that runs statements on local partitions and reference copies, and the receiving side
//! of partition copies and reference catch-ups. It never imports `master`, `front` or `query`: a leaf acts only on
//! what a request carries and on its own store.

pub mod copy;
pub mod handler;
pub mod reference_copy;
