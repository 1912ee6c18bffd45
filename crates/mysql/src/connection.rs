//! One client connection from accept to close: the connection phase, opening the backend session, then the command
//! loop (COM_QUERY, COM_STMT_*, COM_INIT_DB, ...). It decides what runs where: statements the front end answers
//! itself (`intercept`) never reach the backend, and everything else goes to `Session::query` as text. It owns the
//! connection's session state (autocommit, variables set by `SET`, prepared statements) and nothing shared between
//! connections except the counters in `Stats`.
//!
//! Any protocol violation ends only this connection: errors are logged at debug level and the task returns.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use canopy_sql::{Column, ResultSet, Value};
use mysql_common::constants::{CapabilityFlags, Command, StatusFlags};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::debug;

use crate::Prepared;
use crate::diagnostics::{Diagnostics, Shown};
use crate::handshake::{self, HandshakeFailure};
use crate::intercept::{AssignedValue, Assignment, DiagnosticsForm, ItemSource, Local, SelectItem, classify};
use crate::packet::{Framed, ReadError};
use crate::prepared::{self, Statements};
use crate::resultset::{self, ColumnSpec};
use crate::split::{
    expand_executable_comments, split_statements, substitute_placeholders, text_of_statement_bytes, tokens,
    version_number,
};
use crate::user_vars::{self, SetTarget, UserVariables};
use crate::wire::put_lenenc_int;
use crate::{Backend, ConnectionInfo, Limits, MysqlError, Reply, Session, response, sysvars};

/// How long a client has to complete the connection phase, so idle sockets cannot hold connection slots forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters shared by all connections of one `serve`, for COM_STATISTICS and the connection limit.
#[derive(Debug)]
pub(crate) struct Stats {
    pub started: Instant,
    pub active_connections: AtomicU32,
    pub questions: AtomicU64,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats { started: Instant::now(), active_connections: AtomicU32::new(0), questions: AtomicU64::new(0) }
    }
}

/// Everything a connection task needs from its server.
pub(crate) struct Context<B> {
    pub backend: Arc<B>,
    pub limits: Arc<Limits>,
    pub stats: Arc<Stats>,
    pub stop: watch::Receiver<bool>,
}

/// Whether the command loop goes on after a command.
enum Flow {
    Continue,
    Close,
}

/// How rows are encoded: text for COM_QUERY, binary for COM_STMT_EXECUTE.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowFormat {
    Text,
    Binary,
}

/// Serves one accepted connection until it closes.
pub(crate) async fn run<S, B>(stream: S, peer: SocketAddr, connection_id: u32, context: Context<B>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    let mut framed = Framed::new(stream, context.limits.max_packet_bytes);
    let salt = handshake::new_salt();
    let host = peer.ip().to_string();
    let greeting = handshake::initial_handshake(
        &context.limits.server_version,
        connection_id,
        &salt,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
    );
    if framed.write(&greeting).await.is_err() || framed.flush().await.is_err() {
        return;
    }
    let authenticated =
        tokio::time::timeout(CONNECT_TIMEOUT, handshake::authenticate(&mut framed, &*context.backend, &salt, &host))
            .await;
    let response = match authenticated {
        Ok(Ok(response)) => response,
        Ok(Err(HandshakeFailure::Refuse(error))) => {
            debug!(connection_id, %peer, %error, "connection refused");
            refuse(&mut framed, &error).await;
            return;
        }
        Ok(Err(HandshakeFailure::Drop(reason))) => {
            debug!(connection_id, %peer, reason, "connection dropped during handshake");
            return;
        }
        Err(_) => {
            debug!(connection_id, %peer, "handshake timed out");
            return;
        }
    };
    let info = ConnectionInfo { connection_id, user: response.user.clone(), database: response.database.clone(), peer };
    let session = match context.backend.open_session(info).await {
        Ok(session) => session,
        Err(error) => {
            refuse(&mut framed, &error).await;
            return;
        }
    };
    let caps = response.capabilities;
    let mut connection = Connection {
        framed,
        caps,
        session,
        backend: context.backend,
        salt,
        peer,
        connection_id,
        user: response.user,
        host,
        autocommit: true,
        multi_statements: caps.contains(CapabilityFlags::CLIENT_MULTI_STATEMENTS),
        variables: HashMap::new(),
        user_variables: UserVariables::default(),
        statements: Statements::default(),
        diagnostics: Diagnostics::default(),
        limits: context.limits,
        stats: context.stats,
        outcome: LastOutcome::default(),
    };
    let ok = response::ok(0, 0, connection.status(false), 0, "");
    if connection.framed.write(&ok).await.is_err() || connection.framed.flush().await.is_err() {
        return;
    }
    connection.serve_commands(context.stop).await;
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(framed: &mut Framed<S>, error: &MysqlError) {
    let _ = framed.write(&response::err(error)).await;
    framed.shutdown().await;
}

struct Connection<S, B: Backend> {
    framed: Framed<S>,
    caps: CapabilityFlags,
    session: B::Session,
    /// Kept for COM_CHANGE_USER, which authenticates again and opens a new session.
    backend: Arc<B>,
    /// The salt of the initial handshake: COM_CHANGE_USER's scramble is computed with it.
    salt: [u8; handshake::SALT_LEN],
    peer: SocketAddr,
    connection_id: u32,
    user: String,
    host: String,
    autocommit: bool,
    multi_statements: bool,
    /// Session variables set with `SET` and answered locally; they shadow the backend's and built-in values.
    variables: HashMap<String, Value>,
    /// `@name` variables of this session (MySQL's user-defined variables).
    user_variables: UserVariables,
    statements: Statements,
    /// The conditions the previous statement raised, for SHOW WARNINGS / SHOW ERRORS and `@@warning_count`.
    diagnostics: Diagnostics,
    limits: Arc<Limits>,
    stats: Arc<Stats>,
    /// What LAST_INSERT_ID(), ROW_COUNT() and FOUND_ROWS() answer.
    outcome: LastOutcome,
}

/// What the previous statements left for MySQL's LAST_INSERT_ID(), ROW_COUNT() and FOUND_ROWS(), which the front
/// end answers from the replies it sent.
#[derive(Debug, Default)]
struct LastOutcome {
    /// The first AUTO_INCREMENT value of the latest statement that generated one (kept across other statements).
    last_insert_id: u64,
    /// Affected rows of the previous statement; -1 after one that returned rows or failed.
    row_count: i64,
    /// Rows the latest statement returning rows sent.
    found_rows: u64,
}

impl LastOutcome {
    fn record(&mut self, reply: &Reply) {
        match reply {
            Reply::Ok { affected_rows, last_insert_id, .. } => {
                self.row_count = i64::try_from(*affected_rows).unwrap_or(i64::MAX);
                if *last_insert_id != 0 {
                    self.last_insert_id = *last_insert_id;
                }
            }
            Reply::Rows { result, .. } if result.columns.is_empty() => self.row_count = 0,
            Reply::Rows { result, .. } => {
                self.row_count = -1;
                self.found_rows = result.rows.len() as u64;
            }
            Reply::Error(_) => self.row_count = -1,
        }
    }
}

impl<S, B> Connection<S, B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    async fn serve_commands(&mut self, mut stop: watch::Receiver<bool>) {
        // A session that cannot be killed waits on a channel that never changes.
        let (_never, unkillable) = watch::channel(false);
        loop {
            self.framed.reset_sequence();
            // Asked each time: COM_CHANGE_USER replaces the session.
            let mut closed = self.session.closed().unwrap_or_else(|| unkillable.clone());
            if *closed.borrow() {
                debug!(connection_id = self.connection_id, "connection killed");
                self.framed.shutdown().await;
                return;
            }
            let read = tokio::select! {
                read = self.framed.read() => Some(read),
                // The guard `wait_for` returns is not Send: drop it at once.
                _ = stop.wait_for(|stopped| *stopped) => None,
                _ = closed.wait_for(|killed| *killed) => None,
            };
            let Some(read) = read else {
                self.framed.shutdown().await;
                return;
            };
            let payload = match read {
                Ok(payload) => payload,
                Err(ReadError::TooLarge { declared_bytes }) => {
                    debug!(connection_id = self.connection_id, declared_bytes, "packet too large");
                    refuse(&mut self.framed, &MysqlError::packet_too_large()).await;
                    return;
                }
                Err(ReadError::Closed) => return,
                Err(error) => {
                    debug!(connection_id = self.connection_id, %error, "closing connection");
                    return;
                }
            };
            let flow = match self.command(&payload).await {
                Ok(flow) => flow,
                Err(error) => {
                    debug!(connection_id = self.connection_id, %error, "write failed");
                    return;
                }
            };
            if self.framed.flush().await.is_err() {
                return;
            }
            if let Flow::Close = flow {
                self.framed.shutdown().await;
                return;
            }
        }
    }

    async fn command(&mut self, payload: &[u8]) -> std::io::Result<Flow> {
        let Some((&code, body)) = payload.split_first() else {
            debug!(connection_id = self.connection_id, "empty command packet");
            return Ok(Flow::Close);
        };
        const QUIT: u8 = Command::COM_QUIT as u8;
        const INIT_DB: u8 = Command::COM_INIT_DB as u8;
        const QUERY: u8 = Command::COM_QUERY as u8;
        const FIELD_LIST: u8 = Command::COM_FIELD_LIST as u8;
        const STATISTICS: u8 = Command::COM_STATISTICS as u8;
        const PING: u8 = Command::COM_PING as u8;
        const STMT_PREPARE: u8 = Command::COM_STMT_PREPARE as u8;
        const STMT_EXECUTE: u8 = Command::COM_STMT_EXECUTE as u8;
        const STMT_SEND_LONG_DATA: u8 = Command::COM_STMT_SEND_LONG_DATA as u8;
        const STMT_CLOSE: u8 = Command::COM_STMT_CLOSE as u8;
        const STMT_RESET: u8 = Command::COM_STMT_RESET as u8;
        const SET_OPTION: u8 = Command::COM_SET_OPTION as u8;
        const RESET_CONNECTION: u8 = Command::COM_RESET_CONNECTION as u8;
        const CHANGE_USER: u8 = Command::COM_CHANGE_USER as u8;
        match code {
            QUIT => return Ok(Flow::Close),
            QUERY => self.query(body).await?,
            INIT_DB => {
                let db = String::from_utf8_lossy(body);
                match self.session.init_db(db.trim()).await {
                    Ok(()) => self.send_ok().await?,
                    Err(error) => self.send_error(&error).await?,
                }
            }
            PING => self.send_ok().await?,
            FIELD_LIST => {
                // No table metadata at this layer: an empty column list.
                let end = response::end_of_rows(self.caps, self.status(false), 0);
                self.framed.write(&end).await?;
            }
            STATISTICS => {
                let text = format!(
                    "Uptime: {}  Threads: {}  Questions: {}  Slow queries: 0  Opens: 0  Flush tables: 0  Open tables: 0  Queries per second avg: 0.000",
                    self.stats.started.elapsed().as_secs(),
                    self.stats.active_connections.load(Ordering::Relaxed),
                    self.stats.questions.load(Ordering::Relaxed),
                );
                self.framed.write(text.as_bytes()).await?;
            }
            STMT_PREPARE => self.prepare(body).await?,
            STMT_EXECUTE => self.execute(body).await?,
            STMT_SEND_LONG_DATA => {
                prepared::append_long_data(&mut self.statements, body, self.limits.max_packet_bytes as usize)
            }
            STMT_CLOSE => {
                if let Ok(id) = prepared::execute_statement_id(body) {
                    self.statements.close(id);
                }
            }
            STMT_RESET => {
                // A packet too short for an id names no statement; report it as id 0.
                let id = prepared::execute_statement_id(body).unwrap_or(0);
                match self.statements.get_mut(id) {
                    Some(statement) => {
                        statement.reset();
                        self.send_ok().await?;
                    }
                    None => self.send_error(&MysqlError::unknown_statement(id)).await?,
                }
            }
            SET_OPTION => match body {
                [0, 0] | [1, 0] => {
                    self.multi_statements = body[0] == 0;
                    let end = response::end_of_rows(self.caps, self.status(false), 0);
                    self.framed.write(&end).await?;
                }
                _ => self.send_error(&MysqlError::unknown_command()).await?,
            },
            RESET_CONNECTION => {
                self.reset_state();
                self.session.reset_transaction();
                self.send_ok().await?;
            }
            CHANGE_USER => return self.change_user(body).await,
            _ => self.send_error(&MysqlError::unknown_command()).await?,
        }
        Ok(Flow::Continue)
    }

    /// What COM_RESET_CONNECTION and COM_CHANGE_USER forget: prepared statements, `SET` and `@` variables,
    /// autocommit, the multi-statement option and the previous statement's conditions.
    fn reset_state(&mut self) {
        self.statements.clear();
        self.diagnostics = Diagnostics::default();
        self.variables.clear();
        self.user_variables = UserVariables::default();
        self.autocommit = true;
        self.multi_statements = self.caps.contains(CapabilityFlags::CLIENT_MULTI_STATEMENTS);
    }

    /// COM_CHANGE_USER: authenticate the named user again (with the connection's salt), then start over as a new
    /// session of that user in the named database, as if it had just connected. A wrong password or an unknown
    /// database ends the connection after the error, so it never goes on half-changed.
    async fn change_user(&mut self, body: &[u8]) -> std::io::Result<Flow> {
        let mut change = match handshake::parse_change_user(body, self.caps) {
            Ok(change) => change,
            Err(error) => {
                debug!(connection_id = self.connection_id, %error, "malformed COM_CHANGE_USER");
                return Ok(Flow::Close);
            }
        };
        if !handshake::authenticate_change(&mut self.framed, &*self.backend, &self.salt, &mut change).await? {
            let used_password = !change.auth_response.is_empty();
            self.send_error(&MysqlError::access_denied(&change.user, &self.host, used_password)).await?;
            return Ok(Flow::Close);
        }
        let info = ConnectionInfo {
            connection_id: self.connection_id,
            user: change.user.clone(),
            database: change.database,
            peer: self.peer,
        };
        match self.backend.open_session(info).await {
            Ok(session) => {
                // The new session registered itself before the old one drops: the process list tells the two
                // apart, so the connection stays listed throughout.
                drop(std::mem::replace(&mut self.session, session));
                self.user = change.user;
                self.reset_state();
                self.send_ok().await?;
                Ok(Flow::Continue)
            }
            Err(error) => {
                self.send_error(&error).await?;
                Ok(Flow::Close)
            }
        }
    }

    /// COM_QUERY: split, run each statement, stop at the first error.
    async fn query(&mut self, body: &[u8]) -> std::io::Result<()> {
        let Some(text) = text_of_statement_bytes(body) else {
            return self.send_error(&MysqlError::invalid_utf8()).await;
        };
        let text = expand_executable_comments(&text, version_number(&self.limits.server_version)).into_owned();
        let statements = split_statements(&text);
        if statements.is_empty() {
            return self.send_error(&MysqlError::empty_query()).await;
        }
        if statements.len() > 1 && !self.multi_statements {
            return self.send_error(&MysqlError::multi_statements_disabled()).await;
        }
        for (i, sql) in statements.iter().enumerate() {
            let more = i + 1 < statements.len();
            let reply = self.run_statement(sql).await;
            let failed = matches!(reply, Reply::Error(_));
            self.send_reply(reply, more && !failed, RowFormat::Text).await?;
            if failed {
                break;
            }
        }
        Ok(())
    }

    /// Runs one statement wherever it belongs: answered here, or by the backend. User variables are the front
    /// end's: a SET of one is evaluated here, and every other statement reads them as literals (`user_vars`).
    async fn run_statement(&mut self, sql: &str) -> Reply {
        self.stats.questions.fetch_add(1, Ordering::Relaxed);
        let reply = if let Some(targets) = user_vars::set_targets(sql, &self.user_variables) {
            self.set_user_variables(targets).await
        } else {
            let sql = self.user_variables.substitute(sql).into_owned();
            self.run_classified(&sql).await
        };
        // Diagnostics statements show the conditions of the statement before them and leave them in place.
        if is_diagnostics(sql) {
            return reply;
        }
        self.note_outcome(&reply);
        reply
    }

    /// The conditions of the statement just run replace the previous ones (also when it raised none).
    fn note_outcome(&mut self, reply: &Reply) {
        self.diagnostics = Diagnostics::of(reply.conditions(), self.notes_enabled());
    }

    /// `sql_notes`: whether notes are recorded (dumps switch them off while they load).
    fn notes_enabled(&self) -> bool {
        match self.variables.get("sql_notes") {
            Some(Value::Integer(0)) => false,
            Some(Value::Text(t)) => !(t.eq_ignore_ascii_case("OFF") || t == "0" || t.eq_ignore_ascii_case("FALSE")),
            _ => true,
        }
    }

    /// SHOW WARNINGS / SHOW ERRORS (and their COUNT(*) forms): the previous statement's conditions as MySQL lists
    /// them.
    fn answer_diagnostics(&self, shown: Shown, form: DiagnosticsForm) -> Reply {
        Reply::rows(match form {
            DiagnosticsForm::List(limit) => self.diagnostics.show(shown, limit),
            DiagnosticsForm::Count => self.diagnostics.show_count(shown),
        })
    }

    /// `SET @a = expr, ..., other = ...`: every user value is evaluated first (so a failing SET changes nothing, as
    /// in MySQL), then the other assignments run as one SET, then the user variables take their values.
    async fn set_user_variables(&mut self, targets: Vec<SetTarget>) -> Reply {
        let mut values = Vec::new();
        let mut others = Vec::new();
        for target in targets {
            match target {
                SetTarget::User { name, expr } => match self.evaluate(&expr).await {
                    Ok(value) => values.push((name, value)),
                    Err(error) => return Reply::Error(error),
                },
                SetTarget::Other(text) => others.push(text),
            }
        }
        if !others.is_empty() {
            let reply = self.run_classified(&format!("SET {}", others.join(", "))).await;
            if matches!(reply, Reply::Error(_)) {
                return reply;
            }
        }
        for (name, value) in values {
            if let Err(reason) = self.user_variables.set(&name, value) {
                return Reply::Error(MysqlError::new(1105, "HY000", reason));
            }
        }
        Reply::ok()
    }

    /// The value of one expression, as `SELECT expr` answers it (here for system variables, else the backend).
    async fn evaluate(&mut self, expr: &str) -> Result<Value, MysqlError> {
        let select = format!("SELECT {expr}");
        let reply = match classify(&select) {
            Local::Select { items, limit } => self.answer_select(&items, limit),
            _ => self.session.query(&select).await,
        };
        match reply {
            Reply::Rows { result: mut rs, .. } if rs.columns.len() == 1 && rs.rows.len() == 1 => {
                Ok(rs.rows.pop().and_then(|mut row| row.pop()).unwrap_or(Value::Null))
            }
            Reply::Error(error) => Err(error),
            _ => {
                Err(MysqlError::new(1242, "21000", "A user variable takes one value: the expression must give one row"))
            }
        }
    }

    async fn run_classified(&mut self, sql: &str) -> Reply {
        match classify(sql) {
            Local::Forward => self.session.query(sql).await,
            Local::Set(assignments) => self.apply_set(&assignments),
            Local::Select { items, limit } => self.answer_select(&items, limit),
            Local::Diagnostics { shown, form } => self.answer_diagnostics(shown, form),
            Local::Use(db) => match self.session.init_db(&db).await {
                Ok(()) => Reply::ok(),
                Err(error) => Reply::Error(error),
            },
        }
    }

    fn apply_set(&mut self, assignments: &[Assignment]) -> Reply {
        // Validate everything first so a failing SET changes nothing, as in MySQL.
        let mut autocommit = self.autocommit;
        for assignment in assignments.iter().filter(|a| a.name == "autocommit") {
            autocommit = match &assignment.value {
                AssignedValue::Default => true,
                AssignedValue::Literal(Value::Integer(1)) => true,
                AssignedValue::Literal(Value::Integer(0)) => false,
                AssignedValue::Literal(Value::Text(t))
                    if t.eq_ignore_ascii_case("ON") || t.eq_ignore_ascii_case("TRUE") =>
                {
                    true
                }
                AssignedValue::Literal(Value::Text(t))
                    if t.eq_ignore_ascii_case("OFF") || t.eq_ignore_ascii_case("FALSE") =>
                {
                    false
                }
                AssignedValue::Literal(v) => {
                    return Reply::Error(MysqlError::wrong_value_for_variable("autocommit", &display(v)));
                }
                AssignedValue::Expression(e) => {
                    return Reply::Error(MysqlError::wrong_value_for_variable("autocommit", e));
                }
            };
        }
        if assignments.iter().any(|a| a.name == "autocommit") {
            self.autocommit = autocommit;
            self.session.set_autocommit(autocommit);
        }
        for assignment in assignments.iter().filter(|a| a.name != "autocommit") {
            match &assignment.value {
                AssignedValue::Literal(value) => {
                    self.variables.insert(assignment.name.clone(), value.clone());
                    self.session.session_variable_set(&assignment.name, Some(value));
                }
                // An expression is not evaluated here; forgetting the old value is more honest than keeping it.
                AssignedValue::Default | AssignedValue::Expression(_) => {
                    self.variables.remove(&assignment.name);
                    self.session.session_variable_set(&assignment.name, None);
                }
            }
        }
        Reply::ok()
    }

    fn answer_select(&self, items: &[SelectItem], limit: Option<u64>) -> Reply {
        let mut row = Vec::with_capacity(items.len());
        for item in items {
            let value = match &item.source {
                ItemSource::Variable { name, global } => match self.variable(name, *global) {
                    Some(value) => value,
                    None => return Reply::Error(MysqlError::unknown_system_variable(name)),
                },
                ItemSource::Database => self.session.current_database().map_or(Value::Null, Value::Text),
                ItemSource::ConnectionId => Value::Integer(i64::from(self.connection_id)),
                ItemSource::User => Value::Text(format!("{}@{}", self.user, self.host)),
                // Accounts are `user@%` (SHOW GRANTS): the server does not tell users apart by host.
                ItemSource::CurrentUser => Value::Text(format!("{}@%", self.user)),
                ItemSource::Version => Value::Text(self.limits.server_version.clone()),
                ItemSource::LastInsertId => Value::Integer(i64::try_from(self.outcome.last_insert_id).unwrap_or(0)),
                ItemSource::RowCount => Value::Integer(self.outcome.row_count),
                ItemSource::FoundRows => Value::Integer(i64::try_from(self.outcome.found_rows).unwrap_or(i64::MAX)),
            };
            row.push(value);
        }
        let columns = items.iter().map(|i| Column::new(i.column.clone())).collect();
        let rows = if limit == Some(0) { vec![] } else { vec![row] };
        Reply::rows(ResultSet { columns, rows })
    }

    /// A system variable's value: this session's `SET` first (session scope only), then the backend, then the
    /// built-in table.
    fn variable(&self, name: &str, global: bool) -> Option<Value> {
        if name == "autocommit" && !global {
            return Some(Value::Integer(i64::from(self.autocommit)));
        }
        let count = |shown| Some(Value::Integer(i64::try_from(self.diagnostics.count(shown)).unwrap_or(i64::MAX)));
        match name {
            "warning_count" => return count(Shown::All),
            "error_count" => return count(Shown::Errors),
            "max_error_count" => return Some(Value::Integer(crate::diagnostics::CONDITIONS_MAX as i64)),
            _ => {}
        }
        let local = if global { None } else { self.variables.get(name).cloned() };
        local.or_else(|| self.session.system_variable(name)).or_else(|| sysvars::builtin(name, &self.limits))
    }

    /// COM_STMT_PREPARE: register the text, describe its result columns when it has any.
    async fn prepare(&mut self, body: &[u8]) -> std::io::Result<()> {
        let Some(text) = text_of_statement_bytes(body) else {
            return self.send_error(&MysqlError::invalid_utf8()).await;
        };
        let text = expand_executable_comments(&text, version_number(&self.limits.server_version)).into_owned();
        let sql = match split_statements(&text).as_slice() {
            [] => return self.send_error(&MysqlError::empty_query()).await,
            [one] => one.to_string(),
            _ => return self.send_error(&MysqlError::multi_statements_disabled()).await,
        };
        let placeholders = crate::split::count_placeholders(&sql);
        let described = substitute_placeholders(&sql, &vec!["NULL".to_string(); placeholders]);
        let local = classify(&described);
        let forward = matches!(local, Local::Forward);
        let columns: Vec<(String, ColumnSpec)> = match local {
            Local::Select { items, limit } => match self.answer_select(&items, limit) {
                Reply::Rows { result, .. } => {
                    result.columns.iter().map(|c| c.name.clone()).zip(resultset::column_specs(&result)).collect()
                }
                Reply::Error(error) => return self.send_error(&error).await,
                Reply::Ok { .. } => vec![],
            },
            Local::Diagnostics { shown, form } => match self.answer_diagnostics(shown, form) {
                Reply::Rows { result, .. } => {
                    result.columns.iter().map(|c| c.name.clone()).zip(resultset::column_specs(&result)).collect()
                }
                _ => vec![],
            },
            Local::Set(_) | Local::Use(_) => vec![],
            Local::Forward if returns_rows(&sql) => match self.session.describe(&described).await {
                Ok(columns) => {
                    let specs = resultset::declared_column_specs(&columns);
                    columns.into_iter().map(|c| c.name).zip(specs).collect()
                }
                // NULL in place of a parameter is not valid everywhere (`SHOW TABLES LIKE ?`): columns unknown, as
                // the protocol allows; the execution reports any real error.
                Err(_) if placeholders > 0 => vec![],
                Err(error) => return self.send_error(&error).await,
            },
            Local::Forward => vec![],
        };
        let (id, param_count) = match self.statements.prepare(&sql) {
            Ok((id, statement)) => {
                statement.forward = forward;
                (id, statement.param_count)
            }
            Err(error) => return self.send_error(&error).await,
        };
        let column_count = u16::try_from(columns.len()).unwrap_or(u16::MAX);
        let mut ok = vec![0x00];
        ok.extend_from_slice(&id.to_le_bytes());
        ok.extend_from_slice(&column_count.to_le_bytes());
        ok.extend_from_slice(&param_count.to_le_bytes());
        ok.push(0); // reserved
        ok.extend_from_slice(&0u16.to_le_bytes()); // warnings
        self.framed.write(&ok).await?;
        let deprecate_eof = self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        if param_count > 0 {
            let param_spec = resultset::declared_column_specs(&[Column::new("?")])[0];
            for _ in 0..param_count {
                self.framed.write(&resultset::column_definition("?", &param_spec)).await?;
            }
            if !deprecate_eof {
                self.framed.write(&response::eof(self.status(false), 0)).await?;
            }
        }
        if !columns.is_empty() {
            for (name, spec) in columns.iter().take(usize::from(column_count)) {
                self.framed.write(&resultset::column_definition(name, spec)).await?;
            }
            if !deprecate_eof {
                self.framed.write(&response::eof(self.status(false), 0)).await?;
            }
        }
        Ok(())
    }

    /// COM_STMT_EXECUTE: bind the parameters into the text and run it like a query, answering in the binary protocol.
    async fn execute(&mut self, body: &[u8]) -> std::io::Result<()> {
        let id = match prepared::execute_statement_id(body) {
            Ok(id) => id,
            Err(_) => return self.send_error(&MysqlError::wrong_arguments()).await,
        };
        let Some(statement) = self.statements.get_mut(id) else {
            return self.send_error(&MysqlError::unknown_statement(id)).await;
        };
        if statement.forward {
            // The backend gets the numbered text and the values, so it can plan the statement once and bind later.
            let params = match prepared::bind_values(statement, body) {
                Ok(params) => params,
                Err(error) => return self.send_error(&error).await,
            };
            self.stats.questions.fetch_add(1, Ordering::Relaxed);
            let prepared = Prepared { text: &statement.sql, numbered: &statement.numbered, params };
            let reply = self.session.execute(prepared).await;
            self.note_outcome(&reply);
            return self.send_reply(reply, false, RowFormat::Binary).await;
        }
        let sql = match prepared::bind(statement, body) {
            Ok(sql) => sql,
            Err(error) => return self.send_error(&error).await,
        };
        let reply = self.run_statement(&sql).await;
        self.send_reply(reply, false, RowFormat::Binary).await
    }

    fn status(&self, more_results: bool) -> StatusFlags {
        let mut status = StatusFlags::empty();
        if self.autocommit {
            status |= StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        }
        if self.session.in_transaction() {
            status |= StatusFlags::SERVER_STATUS_IN_TRANS;
        }
        if more_results {
            status |= StatusFlags::SERVER_MORE_RESULTS_EXISTS;
        }
        status
    }

    async fn send_ok(&mut self) -> std::io::Result<()> {
        let ok = response::ok(0, 0, self.status(false), 0, "");
        self.framed.write(&ok).await
    }

    async fn send_error(&mut self, error: &MysqlError) -> std::io::Result<()> {
        self.framed.write(&response::err(error)).await
    }

    /// Sends one statement's reply; its warning count goes in the OK packet or the packets that end its rows.
    async fn send_reply(&mut self, reply: Reply, more: bool, format: RowFormat) -> std::io::Result<()> {
        let status = self.status(more);
        self.outcome.record(&reply);
        // Counted as SHOW WARNINGS will list them (without notes under `sql_notes = 0`).
        let warnings = Diagnostics::of(reply.conditions(), self.notes_enabled()).packet_count();
        match reply {
            Reply::Ok { affected_rows, last_insert_id, info, .. } => {
                self.framed.write(&response::ok(affected_rows, last_insert_id, status, warnings, &info)).await
            }
            Reply::Error(error) => self.send_error(&error).await,
            Reply::Rows { result, .. } if result.columns.is_empty() => {
                self.framed.write(&response::ok(0, 0, status, warnings, "")).await
            }
            Reply::Rows { result, .. } if !resultset::is_well_formed(&result) => {
                tracing::error!(
                    connection_id = self.connection_id,
                    "backend returned rows that do not match their columns"
                );
                self.send_error(&MysqlError::new(1105, "HY000", "internal error: malformed result set")).await
            }
            Reply::Rows { result, .. } => self.send_rows(&result, status, warnings, format).await,
        }
    }

    async fn send_rows(
        &mut self,
        result: &ResultSet,
        status: StatusFlags,
        warnings: u16,
        format: RowFormat,
    ) -> std::io::Result<()> {
        let specs = resultset::column_specs(result);
        let mut count = Vec::new();
        put_lenenc_int(&mut count, result.columns.len() as u64);
        self.framed.write(&count).await?;
        for (column, spec) in result.columns.iter().zip(&specs) {
            self.framed.write(&resultset::column_definition(&column.name, spec)).await?;
        }
        if !self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
            self.framed.write(&response::eof(status, warnings)).await?;
        }
        for row in &result.rows {
            let encoded = match format {
                RowFormat::Text => resultset::text_row(row),
                RowFormat::Binary => resultset::binary_row(row, &specs),
            };
            self.framed.write(&encoded).await?;
        }
        self.framed.write(&response::end_of_rows(self.caps, status, warnings)).await
    }
}

/// Whether `sql` is SHOW WARNINGS / SHOW ERRORS (checked by its first word before the tokenizer runs: every
/// statement passes here).
fn is_diagnostics(sql: &str) -> bool {
    sql.trim_start().get(..4).is_some_and(|w| w.eq_ignore_ascii_case("SHOW"))
        && matches!(classify(sql), Local::Diagnostics { .. })
}

/// Whether a statement can return rows, so COM_STMT_PREPARE asks the backend to describe it.
fn returns_rows(sql: &str) -> bool {
    tokens(sql)
        .first()
        .is_some_and(|t| ["SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "WITH"].iter().any(|k| t.is_word(k)))
}

fn display(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => resultset::format_real(*r),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}
