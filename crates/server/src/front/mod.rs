//! The front end: MySQL sessions and their dispatch, prepared statements, the views (SHOW ..., the virtual tables
//! of INFORMATION_SCHEMA). It turns statements into plans and cluster operations; it holds no cluster state.

pub mod accounts;
pub mod prepared;
pub mod processlist;
pub mod schema_tables;
pub mod session;
pub mod views;
