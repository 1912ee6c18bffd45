//! Canopy's SQL layer: the data model, the cluster-command grammar, MySQL-to-SQLite type mapping, shard hashing and
//! the distributed planner. Pure: no sockets, no files, no clocks. The only engine it touches is an in-memory SQLite
//! used as a calculator (merging partial results), never storage.

pub mod catalog;
pub mod command;
pub mod ddl;
pub mod error;
pub mod functions;
pub mod hints;
pub(crate) mod lexer;
pub mod merge;
pub mod plan;
pub mod precedence;
pub mod quote;
pub mod shard;
pub mod template;
pub mod types;
pub mod value;

pub use catalog::{Affinity, Catalog, ColumnDef, TableDef, TableKind};
pub use error::{SqlError, SqlResult};
pub use value::{Column, ResultSet, Value};
