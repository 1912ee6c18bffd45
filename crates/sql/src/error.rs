//! Errors of the SQL layer, as values the server maps to MySQL error codes in one place
//! (`canopy-server`'s error table). Variants name what went wrong, not how it is shown.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum SqlError {
    /// The statement does not parse. The string is a human-readable reason.
    #[error("You have an error in your SQL syntax: {0}")]
    Parse(String),
    #[error("No database selected")]
    NoDatabaseSelected,
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    #[error("Table '{db}.{table}' doesn't exist")]
    UnknownTable { db: String, table: String },
    #[error("Unknown column '{column}' in '{table}'")]
    UnknownColumn { table: String, column: String },
    #[error("Column count doesn't match value count at row {row}")]
    WrongValueCount { row: u64 },
    /// A shard key column cannot be changed by UPDATE (the row would belong to another partition).
    #[error("Updating the shard key column '{column}' is not supported")]
    ShardKeyUpdate { column: String },
    /// A PRIMARY or UNIQUE key of a distributed table must contain every shard key column.
    #[error("The unique key '{key}' must contain all columns of the shard key")]
    UniqueKeyWithoutShardKey { key: String },
    /// A table name in Canopy's reserved namespace ([`crate::ddl::INTERNAL_TABLE_PREFIX`]).
    #[error("Incorrect table name '{name}': names starting with '_canopy_' are reserved for Canopy's internal tables")]
    ReservedTableName { name: String },
    /// A result larger than one statement may return ([`crate::value::ReadLimits`]).
    #[error("Result too large: a statement may return at most {rows_max} rows and {bytes_max} bytes")]
    ResultTooLarge { rows_max: usize, bytes_max: usize },
    /// The statement ran past its deadline and was interrupted.
    #[error("Query execution was interrupted, maximum statement execution time exceeded")]
    QueryTimeout,
    /// The plan needs `count` AUTO_INCREMENT values of `db.table` that the context does not hold yet: the caller
    /// reserves them (a metadata write, which the planner never makes) and plans again.
    #[error("AUTO_INCREMENT values of '{db}.{table}' are not reserved yet")]
    AutoIncrementNeeded { db: String, table: String, count: u64 },
    /// Valid SQL that Canopy does not support (yet). The string names the feature.
    #[error("Feature not supported: {0}")]
    Unsupported(String),
    /// An error raised by the SQLite engine while evaluating (merging, evaluating constants).
    #[error("{0}")]
    Engine(String),
}

impl SqlError {
    /// sqlparser's message without its "sql parser error: " prefix (our error type adds its own).
    pub(crate) fn from_sqlparser(e: &sqlparser::parser::ParserError) -> SqlError {
        let text = e.to_string();
        SqlError::Parse(text.strip_prefix("sql parser error: ").unwrap_or(&text).to_string())
    }
}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        SqlError::Engine(e.to_string())
    }
}

pub type SqlResult<T> = Result<T, SqlError>;
