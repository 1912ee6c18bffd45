//! The MySQL wire-protocol front end: accepts client connections on tokio, runs the handshake and
//! `caching_sha2_password` / `mysql_native_password` authentication, serves commands, and encodes results. It owns every MySQL byte and the
//! MySQL-specific session chatter (`SET NAMES`, `SELECT @@version_comment`, prepared statements); the backend only ever
//! sees SQL text and returns `Reply` values built from `canopy_sql` types, with the warnings each statement raised. No TLS, no compression.
//!
//! Code map: `server` accepts and limits connections; `connection` is the per-connection command loop; `handshake`
//! the connection phase; `auth` the password hashes and the plugins' checks; `packet` framing; `wire` primitive encodings; `response` OK/EOF/ERR; `diagnostics` the previous statement's conditions (SHOW WARNINGS); `resultset` column types
//! and rows; `prepared` prepared statements; `split` statement text scanning; `intercept` and `sysvars` the statements
//! and variables the front end answers itself; `error` the error table.

use std::future::Future;
use std::net::SocketAddr;

pub mod auth;
mod connection;
mod diagnostics;
mod error;
mod handshake;
mod intercept;
mod packet;
mod prepared;
mod response;
mod resultset;
mod server;
mod split;
mod sysvars;
mod user_vars;
mod wire;

pub use error::MysqlError;
pub use resultset::mysql_column_type;
pub use server::serve;
pub use sysvars::builtins as builtin_variables;

/// What the backend answers to one statement, with the conditions (notes, warnings) it raised. The front end
/// sends their count in the OK or end-of-rows packet and lists them for the next `SHOW WARNINGS`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A statement without a result set; `info` is the optional human-readable message (e.g. "Rows matched: 1").
    Ok { affected_rows: u64, last_insert_id: u64, info: String, warnings: Vec<Warning> },
    /// A result set. A result set with no columns is sent as a plain OK.
    Rows { result: canopy_sql::ResultSet, warnings: Vec<Warning> },
    /// The statement failed: the error is its only condition.
    Error(MysqlError),
}

impl Reply {
    /// An OK without affected rows, message or warnings.
    pub fn ok() -> Self {
        Reply::Ok { affected_rows: 0, last_insert_id: 0, info: String::new(), warnings: Vec::new() }
    }

    /// A result set without warnings.
    pub fn rows(result: canopy_sql::ResultSet) -> Self {
        Reply::Rows { result, warnings: Vec::new() }
    }

    /// The conditions the statement raised, as `SHOW WARNINGS` lists them: the error of a failed statement,
    /// else its notes and warnings.
    pub fn conditions(&self) -> Vec<Warning> {
        match self {
            Reply::Ok { warnings, .. } | Reply::Rows { warnings, .. } => warnings.clone(),
            Reply::Error(error) => vec![Warning::new(Level::Error, error.code, error.message.clone())],
        }
    }
}

/// How serious a condition is, as `SHOW WARNINGS` prints it in its `Level` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something worth knowing that changed nothing the user asked for (`DROP TABLE IF EXISTS` of a missing table).
    Note,
    /// The statement did something other than what was written (an ignored `ENGINE=` clause).
    Warning,
    Error,
}

impl Level {
    /// The word MySQL prints.
    pub fn name(self) -> &'static str {
        match self {
            Level::Note => "Note",
            Level::Warning => "Warning",
            Level::Error => "Error",
        }
    }
}

/// One condition a statement raised: MySQL's `Level`, `Code`, `Message` row of `SHOW WARNINGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub level: Level,
    pub code: u16,
    pub message: String,
}

impl Warning {
    pub fn new(level: Level, code: u16, message: impl Into<String>) -> Self {
        Warning { level, code, message: message.into() }
    }
}

/// Who connected, given to the backend when it opens the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub connection_id: u32,
    pub user: String,
    /// The database the client named in the handshake, if any.
    pub database: Option<String>,
    pub peer: SocketAddr,
}

/// The engine behind the front end: users and sessions.
pub trait Backend: Send + Sync + 'static {
    type Session: Session;

    /// What the server knows of `user`'s password (`auth::Credentials`), or None if the user does not exist.
    fn credentials(&self, user: &str) -> Option<auth::Credentials>;

    /// Called after successful authentication. If the client named a database in the handshake it is in
    /// `info.database`; the backend validates it (an error, e.g. 1049 Unknown database, is sent to the client and the
    /// connection closed).
    fn open_session(&self, info: ConnectionInfo) -> impl Future<Output = Result<Self::Session, MysqlError>> + Send;
}

/// One client's session with the backend. Dropped when the connection ends, whichever way it ends.
pub trait Session: Send + 'static {
    /// Runs one statement (the front end has already split multi-statement text and stripped the trailing ';').
    fn query(&mut self, sql: &str) -> impl Future<Output = Reply> + Send;

    /// COM_INIT_DB / USE: change the current database.
    fn init_db(&mut self, db: &str) -> impl Future<Output = Result<(), MysqlError>> + Send;

    /// The current database, for `SELECT DATABASE()` answered by the front end.
    fn current_database(&self) -> Option<String>;

    /// A system variable the backend owns (for `SELECT @@name`; `name` is lowercase without scope), or None to fall
    /// back to the front end's built-in table.
    fn system_variable(&self, _name: &str) -> Option<canopy_sql::Value> {
        None
    }

    /// Runs one execution of a prepared statement that the front end does not answer itself. The default runs
    /// the text with the values written in as literals; a backend that keeps placeholders (plans once, binds per
    /// execution) overrides it.
    fn execute<'a>(&'a mut self, prepared: Prepared<'a>) -> impl Future<Output = Reply> + Send + 'a
    where
        Self: Sized,
    {
        async move {
            let sql = prepared.literal_text();
            self.query(&sql).await
        }
    }

    /// The client changed `autocommit` (`SET autocommit = ...`); `on` is the new value. The front end owns the
    /// variable (it answers `@@autocommit`), the backend owns transactions: with autocommit off MySQL opens a
    /// transaction implicitly at the next statement, and switching it on commits the open one.
    fn set_autocommit(&mut self, _on: bool) {}

    /// COM_RESET_CONNECTION: autocommit is on again and no transaction is open.
    fn reset_transaction(&mut self) {}

    /// A session variable was set (`SET [SESSION] name = value`; `None` for DEFAULT or a value the front end does
    /// not evaluate). The front end answers `@@name` itself; a backend listens for the ones it acts on
    /// (`max_execution_time`).
    fn session_variable_set(&mut self, _name: &str, _value: Option<&canopy_sql::Value>) {}

    /// Becomes true when the connection must close (KILL CONNECTION): the command loop closes it when idle, and after
    /// the command running now.
    fn closed(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }

    /// Whether a transaction is open, for the `SERVER_STATUS_IN_TRANS` flag of every OK and EOF packet.
    fn in_transaction(&self) -> bool {
        false
    }

    /// Result columns of a statement, for the COM_STMT_PREPARE response. `sql` has every `?` replaced by NULL.
    /// Default: none known (0 columns); clients take the real columns from the execute response.
    fn describe(&mut self, _sql: &str) -> impl Future<Output = Result<Vec<canopy_sql::Column>, MysqlError>> + Send {
        async { Ok(vec![]) }
    }
}

/// One execution of a prepared statement, as the backend receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared<'a> {
    /// The statement as the client prepared it, with `?` placeholders.
    pub text: &'a str,
    /// The same text with the placeholders numbered in order: `?1`, `?2`, ...
    pub numbered: &'a str,
    /// The values the client sent for this execution, in placeholder order.
    pub params: Vec<canopy_sql::Value>,
}

impl Prepared<'_> {
    /// The statement with every placeholder replaced by the MySQL literal of its value (`Value::to_mysql_literal`).
    pub fn literal_text(&self) -> String {
        prepared::literal_text(self.text, &self.params)
    }
}

/// Bounds and identity of the front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet accepted from a client (and announced as `@@max_allowed_packet`).
    pub max_packet_bytes: u32,
    /// Connections served at once; more are refused with error 1040.
    pub max_connections: u32,
    /// Announced in the handshake and as `@@version`.
    pub server_version: String,
    /// The MySQL port the listener serves, announced as `@@port`.
    pub port: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_bytes: 64 * 1024 * 1024,
            max_connections: 1000,
            server_version: "5.7.32-Canopy-0.1.0".to_string(),
            port: 3306,
        }
    }
}
