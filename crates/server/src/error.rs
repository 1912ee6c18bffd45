//! Errors of a node and the one table that maps them to MySQL error codes and SQLSTATEs. Every error a client can
//! see passes through `Error::to_mysql`, so codes stay stable and match SingleStore's where it has one. The
//! conditions a statement raises without failing (`Notice`: MySQL's notes and warnings) are mapped here too.

use canopy_meta::MetaError;
use canopy_meta::users::UserError;
use canopy_mysql::{Level, MysqlError, Warning};
use canopy_rpc::{RemoteError, RemoteErrorKind, RpcError};
use canopy_sql::SqlError;
use canopy_sql::command::access::Need;
use canopy_sql::ddl::Ignored;
use canopy_storage::StorageError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A leaf answered with an error.
    #[error("{0}")]
    Remote(RemoteError),
    /// A leaf could not be reached or the exchange broke off.
    #[error("Leaf '{host}':{port} is unreachable: {source}")]
    LeafUnreachable { host: String, port: u16, source: RpcError },
    #[error("Partition {db}:{ordinal} has no master instance.")]
    NoMasterInstance { db: String, ordinal: u32 },
    #[error("This node is not part of a cluster yet; run BOOTSTRAP AGGREGATOR on it or add it as a leaf")]
    NotInCluster,
    #[error("This command must run on the master aggregator")]
    NotMasterAggregator,
    #[error(
        "This node is a leaf; run queries on an aggregator, or USE one of the partition databases listed by SHOW DATABASES"
    )]
    LeafOnly,
    #[error("A leaf's own MySQL port only reads (SELECT, SHOW) for inspection; write through the master aggregator")]
    LeafReadOnly,
    #[error("This node already belongs to a cluster (already joined)")]
    AlreadyJoined,
    #[error("Cannot add '{host}':{port}: {reason}")]
    CannotAddNode { host: String, port: u16, reason: String },
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    /// KILL QUERY (or KILL CONNECTION) stopped the statement.
    #[error("Query execution was interrupted")]
    QueryInterrupted,
    /// The session's account lacks a privilege the statement needs.
    #[error(transparent)]
    Denied(canopy_meta::users::Denied),
    /// KILL of another account's connection without CLUSTER.
    #[error("You are not owner of thread {0}")]
    NotThreadOwner(u64),
    /// KILL named a connection this aggregator does not have.
    #[error("Unknown thread id: {0}")]
    UnknownThread(u64),
    #[error(
        "The leaf holds partitions of databases that conflict with the cluster ({databases}); use ATTACH LEAF ... FORCE to attach it and keep them as orphans"
    )]
    AttachConflict { databases: String },
    /// ATTACH PARTITION found a copy it must not adopt.
    #[error("Cannot attach partition {db}:{ordinal}: {reason}")]
    AttachRefused { db: String, ordinal: u32, reason: AttachRefusal },
    #[error("Leaf '{host}':{port} is not part of the cluster")]
    UnknownLeafAddress { host: String, port: u16 },
    #[error("Feature not supported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("internal error: {0}")]
    Internal(String),
    /// A partition move gave up before switching the master; the source still serves the partition.
    #[error("Moving partition {db}:{ordinal} was abandoned: {reason}")]
    MoveAbandoned { db: String, ordinal: u32, reason: MoveAbort },
    /// The rebalance planner refused (unknown database, no online leaves...).
    #[error(transparent)]
    Rebalance(#[from] RebalanceError),
    #[error("A rebalance is already running on database '{0}'; wait for it (SHOW REBALANCE STATUS ON {0})")]
    RebalanceRunning(String),
    /// REBALANCE ... CANCEL or KILL QUERY stopped the plan of the database between steps.
    #[error(
        "Query execution was interrupted: the rebalance of '{0}' was cancelled; its running steps finished, the others did not run (SHOW REBALANCE STATUS ON {0}); rerun it to plan afresh"
    )]
    RebalanceCancelled(String),
    /// REBALANCE ... CANCEL found no plan running (of the database, or at all).
    #[error("No rebalance is running{}", .0.as_ref().map(|db| format!(" on database '{db}'")).unwrap_or_default())]
    NoRebalanceRunning(Option<String>),
    /// A step of a running plan found the cluster no longer as the plan expects (a leaf failed mid-plan).
    #[error("The cluster changed under the rebalance plan of '{db}' at partition {db}:{ordinal}: {reason}")]
    PlanOutdated { db: String, ordinal: u32, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

pub use canopy_control::attach::AttachRefusal;
use canopy_control::rebalance::RebalanceError;

fn mysql(code: u16, sqlstate: &str, message: impl Into<String>) -> MysqlError {
    MysqlError { code, sqlstate: sqlstate.to_string(), message: message.into() }
}

impl Error {
    /// The one mapping from internal errors to what a MySQL client sees.
    pub fn to_mysql(&self) -> MysqlError {
        let text = self.to_string();
        match self {
            Error::Sql(e) => match e {
                SqlError::Parse(_) => mysql(1064, "42000", text),
                SqlError::NoDatabaseSelected => mysql(1046, "3D000", text),
                SqlError::UnknownDatabase(_) => mysql(1049, "42000", text),
                SqlError::UnknownTable { .. } => mysql(1146, "42S02", text),
                SqlError::UnknownColumn { .. } => mysql(1054, "42S22", text),
                SqlError::ReservedTableName { .. } => mysql(1103, "42000", text),
                SqlError::ResultTooLarge { .. } => result_too_large(&text),
                SqlError::QueryTimeout => query_timeout(),
                SqlError::WrongValueCount { .. } => mysql(1136, "21S01", text),
                SqlError::Unsupported(_)
                | SqlError::ShardKeyUpdate { .. }
                | SqlError::UniqueKeyWithoutShardKey { .. } => mysql(1706, "HY000", text),
                _ => engine_error(None, &text),
            },
            Error::Meta(e) => match e {
                MetaError::UnknownDatabase(_) => mysql(1049, "42000", text),
                MetaError::DatabaseExists(_) => mysql(1007, "HY000", text),
                MetaError::UnknownTable { .. } => mysql(1146, "42S02", text),
                MetaError::TableExists { .. } => mysql(1050, "42S01", text),
                MetaError::UnknownVariable(_) => mysql(1193, "HY000", text),
                MetaError::BadVariableValue { .. } => mysql(1231, "42000", text),
                MetaError::VariableValueNotSupported { .. } => mysql(1235, "42000", text),
                MetaError::RedundancyWithDatabases { .. } | MetaError::NoOnlinePairs => mysql(1706, "HY000", text),
                MetaError::User(e) => match e {
                    UserError::OperationFailed { .. } => mysql(1396, "HY000", text),
                    UserError::GrantToUnknown(_) => mysql(1410, "42000", text),
                    UserError::NoSuchGrant(_) => mysql(1141, "42000", text),
                    UserError::GlobalPrivilegeOnDatabase => mysql(1221, "HY000", text),
                },
                _ => mysql(1105, "HY000", text),
            },
            Error::Remote(r) => match r.kind {
                RemoteErrorKind::Sql | RemoteErrorKind::Constraint => engine_error(r.sqlite_code, &r.message),
                // The leaf does not serve the partition (not attached yet, being moved): no master instance there.
                RemoteErrorKind::NoSuchPartition | RemoteErrorKind::NotMaster => mysql(1777, "HY000", text),
                RemoteErrorKind::ResultTooLarge => result_too_large(&r.message),
                RemoteErrorKind::Timeout => query_timeout(),
                RemoteErrorKind::Cancelled => mysql(1317, "70100", "Query execution was interrupted"),
                _ => mysql(1105, "HY000", text),
            },
            Error::NoMasterInstance { .. } => mysql(1777, "HY000", text),
            Error::LeafUnreachable { .. } => mysql(2004, "HY000", text),
            Error::UnknownDatabase(_) => mysql(1049, "42000", text),
            Error::QueryInterrupted => mysql(1317, "70100", text),
            Error::UnknownThread(_) => mysql(1094, "HY000", text),
            Error::NotThreadOwner(_) => mysql(1095, "HY000", text),
            Error::Denied(denied) => match &denied.need {
                // ER_TABLEACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED_ERROR.
                Need::On { table: Some(_), .. } | Need::Any { table: Some(_), .. } => mysql(1142, "42000", text),
                Need::On { table: None, .. } | Need::Any { table: None, .. } => mysql(1044, "42000", text),
                Need::Global(_) => mysql(1227, "42000", text),
            },
            Error::AttachConflict { .. } | Error::UnknownLeafAddress { .. } | Error::AttachRefused { .. } => {
                mysql(1105, "HY000", text)
            }
            Error::Unsupported(_) => mysql(1706, "HY000", text),
            Error::AlreadyJoined | Error::CannotAddNode { .. } | Error::NotInCluster => mysql(1105, "HY000", text),
            Error::NotMasterAggregator | Error::LeafOnly => mysql(1105, "HY000", text),
            // ER_OPTION_PREVENTS_STATEMENT, what a read-only MySQL server answers to a write.
            Error::LeafReadOnly => mysql(1290, "HY000", text),
            Error::Storage(StorageError::ResultTooLarge { .. }) => result_too_large(&text),
            Error::Storage(StorageError::QueryTimeout) => query_timeout(),
            Error::Storage(StorageError::Cancelled) => mysql(1317, "70100", text),
            Error::Storage(e) => engine_error(e.sqlite_code(), &e.to_string()),
            Error::Internal(_) | Error::MoveAbandoned { .. } => mysql(1105, "HY000", text),
            Error::Rebalance(RebalanceError::UnknownDatabase(_)) => mysql(1049, "42000", text),
            Error::Rebalance(_) | Error::RebalanceRunning(_) | Error::PlanOutdated { .. } => mysql(1105, "HY000", text),
            // ER_QUERY_INTERRUPTED, as for KILL QUERY of any other statement.
            Error::RebalanceCancelled(_) => mysql(1317, "70100", text),
            Error::NoRebalanceRunning(_) => mysql(1105, "HY000", text),
        }
    }
}

/// A condition a statement raised and still succeeded: MySQL's notes (nothing was done because nothing needed
/// doing) and warnings (Canopy did something other than what was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// CREATE TABLE wrote a clause Canopy accepted and dropped (`ENGINE=InnoDB`, `ROW_FORMAT=...`).
    Ignored { table: String, clause: Ignored },
    /// CREATE TABLE IF NOT EXISTS of a table that exists.
    TableExists { table: String },
    /// DROP TABLE IF EXISTS of a table (or database) that does not exist.
    UnknownTable { db: String, table: String },
    /// CREATE DATABASE IF NOT EXISTS of a database that exists.
    DatabaseExists(String),
    /// DROP DATABASE IF EXISTS of a database that does not exist.
    UnknownDatabase(String),
    /// CREATE USER IF NOT EXISTS of an account that exists.
    AccountExists(String),
    /// DROP USER IF EXISTS / ALTER USER IF EXISTS of an account that does not exist.
    UnknownAccount(String),
}

impl Notice {
    /// The one mapping from notices to what SHOW WARNINGS lists: MySQL's level, code and wording.
    pub fn to_mysql(&self) -> Warning {
        match self {
            // ER_WARN_USING_OTHER_HANDLER, what MySQL says when it substitutes an engine.
            Notice::Ignored { table, clause: Ignored::Engine(_) } => Warning::new(
                Level::Warning,
                1266,
                format!("Using storage engine {} for table '{table}'", canopy_sql::ddl::ENGINE),
            ),
            // ER_ILLEGAL_HA_CREATE_OPTION, as InnoDB raises it for an option it ignores ("InnoDB: ignoring ...").
            Notice::Ignored { clause: Ignored::Clause(clause), .. } => {
                Warning::new(Level::Warning, 1478, format!("{}: ignoring {clause}", canopy_sql::ddl::ENGINE))
            }
            Notice::TableExists { table } => Warning::new(Level::Note, 1050, format!("Table '{table}' already exists")),
            Notice::UnknownTable { db, table } => {
                Warning::new(Level::Note, 1051, format!("Unknown table '{db}.{table}'"))
            }
            Notice::DatabaseExists(db) => {
                Warning::new(Level::Note, 1007, format!("Can't create database '{db}'; database exists"))
            }
            Notice::UnknownDatabase(db) => {
                Warning::new(Level::Note, 1008, format!("Can't drop database '{db}'; database doesn't exist"))
            }
            // ER_USER_ALREADY_EXISTS and ER_USER_DOES_NOT_EXIST, MySQL 8's notes for IF [NOT] EXISTS.
            Notice::AccountExists(name) => {
                Warning::new(Level::Note, 3163, format!("Authorization ID '{name}'@'%' already exists."))
            }
            Notice::UnknownAccount(name) => {
                Warning::new(Level::Note, 3162, format!("Authorization ID '{name}'@'%' does not exist."))
            }
        }
    }
}

/// A result over the rows or bytes one statement may return: MySQL's ER_TOO_BIG_SELECT, the error of a SELECT
/// that would examine too many rows.
fn result_too_large(message: &str) -> MysqlError {
    mysql(1104, "42000", message)
}

/// MySQL's ER_QUERY_TIMEOUT (`max_execution_time`), with its text.
fn query_timeout() -> MysqlError {
    mysql(3024, "HY000", "Query execution was interrupted, maximum statement execution time exceeded")
}

/// SQLite's extended result codes (`sqlite3.h`) the MySQL error table distinguishes.
const SQLITE_CONSTRAINT_CHECK: i32 = 275;
const SQLITE_CONSTRAINT_FOREIGNKEY: i32 = 787;
const SQLITE_CONSTRAINT_NOTNULL: i32 = 1299;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;
const SQLITE_TOOBIG: i32 = 18;

/// An error of the SQL engine mapped to the MySQL code clients and ORMs react to: by SQLite's extended result code
/// where it has one; SQLite reports unknown columns, tables and functions and syntax errors all as plain
/// `SQLITE_ERROR`, so those (and errors of the aggregator's own evaluation, which carry no code) are told apart by
/// their message.
fn engine_error(sqlite_code: Option<i32>, message: &str) -> MysqlError {
    let m = message;
    match sqlite_code {
        Some(SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY) => {
            return mysql(1062, "23000", format!("Duplicate entry: {m}"));
        }
        Some(SQLITE_CONSTRAINT_NOTNULL) => return mysql(1048, "23000", m),
        Some(SQLITE_CONSTRAINT_CHECK) => return mysql(3819, "HY000", m),
        Some(SQLITE_CONSTRAINT_FOREIGNKEY) => return mysql(1452, "23000", m),
        Some(SQLITE_TOOBIG) => return mysql(1301, "HY000", m),
        _ => {}
    }
    if m.contains("UNIQUE constraint failed") || m.contains("PRIMARY KEY constraint failed") {
        mysql(1062, "23000", format!("Duplicate entry: {m}"))
    } else if m.contains("NOT NULL constraint failed") {
        mysql(1048, "23000", m)
    } else if m.contains("no such column") {
        mysql(1054, "42S22", m)
    } else if m.contains("no such table") {
        mysql(1146, "42S02", m)
    } else if m.contains("syntax error") || m.contains("incomplete input") || m.contains("unrecognized token") {
        mysql(1064, "42000", m)
    } else if m.contains("no such function") || m.contains("wrong number of arguments") {
        mysql(1305, "42000", m)
    } else if m.contains("integer overflow") {
        mysql(1690, "22003", m)
    } else {
        mysql(1105, "HY000", m)
    }
}

/// Why a move gave up before its switch (the source still serves the partition).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveAbort {
    #[error("the target reached log index {target_index}, the fenced source ends at {source_index}")]
    NotCaughtUp { source_index: u64, target_index: u64 },
    #[error("the switch did not finish within {deadline_ms} ms")]
    SwitchDeadline { deadline_ms: u64 },
    #[error("the copy's target answered no ping for {silence_ms} ms")]
    TargetSilent { silence_ms: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_error_text_for_a_partition_without_master() {
        let e = Error::NoMasterInstance { db: "test".into(), ordinal: 3 }.to_mysql();
        assert_eq!((e.code, e.sqlstate.as_str()), (1777, "HY000"));
        assert_eq!(e.message, "Partition test:3 has no master instance.");
    }

    #[test]
    fn engine_messages_map_to_mysql_codes() {
        let code = |m: &str| engine_error(None, m).code;
        assert_eq!(code("UNIQUE constraint failed: t.id"), 1062);
        assert_eq!(code("NOT NULL constraint failed: t.k"), 1048);
        assert_eq!(code("no such column: zz"), 1054);
        assert_eq!(code("near \"SELEC\": syntax error"), 1064);
        assert_eq!(code("unrecognized token: \"@\""), 1064);
        assert_eq!(code("something else"), 1105);
    }

    /// The leaf's error carries SQLite's extended code: the code decides, whatever the message says.
    #[test]
    fn sqlite_codes_map_to_mysql_codes() {
        let code = |c: i32| engine_error(Some(c), "whatever the text").code;
        assert_eq!(code(SQLITE_CONSTRAINT_UNIQUE), 1062);
        assert_eq!(code(SQLITE_CONSTRAINT_PRIMARYKEY), 1062);
        assert_eq!(code(SQLITE_CONSTRAINT_NOTNULL), 1048);
        assert_eq!(code(SQLITE_CONSTRAINT_CHECK), 3819);
        assert_eq!(code(1), 1105, "plain SQLITE_ERROR falls back to the message");
        assert_eq!(engine_error(Some(1), "no such table: t").code, 1146);
    }
}
