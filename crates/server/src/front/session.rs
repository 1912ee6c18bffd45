//! One client connection's session: the current database, transaction bookkeeping, a scratch engine for constant
//! expressions, and the dispatch of each statement to the right layer (cluster operation, view, or the distributed
//! planner and executor). What a node accepts depends on its role: the master aggregator runs everything, a leaf
//! answers about and inside its own partitions, an unconfigured node waits for BOOTSTRAP AGGREGATOR.

use std::collections::HashMap;
use std::sync::Arc;

use canopy_meta::users::ROOT;
use canopy_meta::{ClusterMeta, Command};
use canopy_mysql::auth::Credentials;
use canopy_mysql::{MysqlError, Reply};
use canopy_sql::command::access::{self, Need};
use canopy_sql::command::users::Privilege;
use canopy_sql::command::{
    ClusterCommand, LeafTarget, NoEffect, PartitionCommand, RebalanceOptions, Savepoint, ShowCatalog, Statement,
    parse_statement,
};
use canopy_sql::plan::{self, PlanContext};
use canopy_sql::{Catalog, Column, ResultSet, SqlError, TableDef, Value};

use crate::answer::Answer;
use crate::error::{Error, Result};
use crate::front::accounts;
use crate::front::prepared::{Reuse, Template};
use crate::front::processlist::{Processes, Registration};
use crate::front::views;
use crate::master::MasterSlot;
use crate::master::attach;
use crate::master::cluster::Cluster;
use crate::master::moves;
use crate::master::ops;
use crate::master::partition;
use crate::master::rebalance;
use crate::master::replication;
use crate::node::Node;
use crate::persist::NodeRole;
use crate::query::exec;

pub struct Backend {
    pub node: Arc<Node>,
    pub master: Arc<MasterSlot>,
    pub processes: Arc<Processes>,
    /// What the MySQL listener enforces; the built-in system variables report it.
    pub limits: Arc<canopy_mysql::Limits>,
}

impl canopy_mysql::Backend for Backend {
    type Session = Session;

    /// Root's password comes from the node's configuration, on every node; other accounts exist only in the
    /// cluster metadata, so only the master aggregator knows them (a leaf accepts only root: ADD LEAF's account).
    fn credentials(&self, user: &str) -> Option<Credentials> {
        if user == ROOT {
            return Some(Credentials::from_password(&self.node.config.root_password));
        }
        if self.node.role() != NodeRole::MasterAggregator {
            return None;
        }
        let meta = self.master.get()?.meta();
        let authentication = &meta.users.get(user)?.authentication;
        Credentials::from_stored(&authentication.native, authentication.sha2.as_deref())
    }

    async fn open_session(&self, info: canopy_mysql::ConnectionInfo) -> std::result::Result<Session, MysqlError> {
        let process = self.processes.register(info.connection_id, &info.user, info.peer);
        let mut session = Session::new(self.node.clone(), self.master.clone(), process, self.limits.clone());
        session.max_execution_ms = self.processes.max_execution_ms();
        session.user = info.user.clone();
        if let Some(db) = info.database.filter(|d| !d.is_empty()) {
            session.use_database(&db).map_err(|e| e.to_mysql())?;
        }
        Ok(session)
    }
}

pub struct Session {
    node: Arc<Node>,
    master: Arc<MasterSlot>,
    /// This connection in SHOW PROCESSLIST (removed when the session drops).
    process: Registration,
    limits: Arc<canopy_mysql::Limits>,
    /// The account the connection authenticated as; every statement is checked against its privileges.
    user: String,
    db: Option<String>,
    /// An in-memory SQLite for constant expressions and table-free queries; behind a mutex only so that `&Session`
    /// can cross an await (a connection is `Send` but not `Sync`).
    scratch: Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// The client's `autocommit` (the front end owns the variable and tells us when it changes).
    autocommit: bool,
    /// A transaction is open: after BEGIN, or after any statement while autocommit is off (MySQL opens one
    /// implicitly). Every statement still commits when it runs (docs/sql.md); this only keeps ROLLBACK honest.
    in_transaction: bool,
    /// A write ran (or was attempted) inside the open transaction, so a ROLLBACK would have to undo it.
    wrote_in_transaction: bool,
    spread: u32,
    /// Prepared statements by numbered text, parsed once.
    templates: HashMap<String, Template>,
    /// `max_execution_time` of this session in milliseconds (0: none), from `SET GLOBAL` when it opened.
    max_execution_ms: u64,
    /// The `MAX_EXECUTION_TIME(n)` hint of the statement running now.
    hint_ms: Option<u64>,
}

/// Parsed prepared statements kept per session; the cache starts over when full (clients prepare a fixed set).
const TEMPLATES_MAX: usize = 256;

/// What the planner sees: the metadata snapshot of this statement, plus the session's scratch engine and the
/// cluster's AUTO_INCREMENT ranges.
struct Context<'a> {
    meta: &'a ClusterMeta,
    cluster: &'a Cluster,
    scratch: &'a rusqlite::Connection,
    spread: &'a mut u32,
    /// Values of a prepared statement's placeholders (empty for plain text).
    params: &'a [Value],
    /// When the statement runs (microseconds since the epoch, UTC): its NOW().
    now_micros: i64,
    /// CONNECTION_ID() and VERSION().
    connection: (u32, &'a str),
}

impl Catalog for Context<'_> {
    fn table(&self, db: &str, table: &str) -> Option<&TableDef> {
        self.meta.table(db, table)
    }

    fn partition_count(&self, db: &str) -> Option<u32> {
        self.meta.partition_count(db)
    }
}

impl PlanContext for Context<'_> {
    fn eval_constant(&mut self, expr_sql: &str) -> std::result::Result<Value, SqlError> {
        let rs = exec::scratch_query_with(self.scratch, &format!("SELECT {expr_sql}"), self.params).map_err(
            |e| match e {
                Error::Sql(e) => e,
                other => SqlError::Engine(other.to_string()),
            },
        )?;
        Ok(rs.rows.into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or(Value::Null))
    }

    fn allocate_auto_increment(&mut self, db: &str, table: &str, count: u64) -> std::result::Result<i64, SqlError> {
        self.cluster.take_auto_increment(db, table, count).ok_or_else(|| SqlError::AutoIncrementNeeded {
            db: db.to_string(),
            table: table.to_string(),
            count,
        })
    }

    fn spread_ordinal(&mut self, partitions: u32) -> u32 {
        *self.spread = self.spread.wrapping_add(1);
        *self.spread % partitions.max(1)
    }

    fn params(&self) -> &[Value] {
        self.params
    }

    fn statement_time_micros(&self) -> i64 {
        self.now_micros
    }

    fn connection(&self) -> (Option<u32>, Option<&str>) {
        (Some(self.connection.0), Some(self.connection.1))
    }
}

fn rows(columns: &[&str], rows: Vec<Vec<Value>>) -> Answer {
    Answer::Rows(ResultSet::named(columns, rows))
}

impl Session {
    pub fn new(
        node: Arc<Node>,
        master: Arc<MasterSlot>,
        process: Registration,
        limits: Arc<canopy_mysql::Limits>,
    ) -> Session {
        let mut scratch = rusqlite::Connection::open_in_memory().expect("an in-memory SQLite always opens");
        canopy_sql::value::interruptible(&mut scratch);
        canopy_sql::functions::register(&scratch, canopy_storage::engine::system_host())
            .expect("registering functions on an in-memory SQLite cannot fail");
        let scratch = Arc::new(std::sync::Mutex::new(scratch));
        // Each connection starts its round-robin at a different partition so keyless tables fill evenly.
        let spread = node.next_connection_id().wrapping_mul(7919);
        Session {
            node,
            master,
            process,
            limits,
            user: ROOT.to_string(),
            db: None,
            scratch,
            autocommit: true,
            in_transaction: false,
            wrote_in_transaction: false,
            spread,
            templates: HashMap::new(),
            max_execution_ms: 0,
            hint_ms: None,
        }
    }

    fn master(&self) -> Result<Arc<Cluster>> {
        match self.node.role() {
            NodeRole::MasterAggregator => self.master.get().ok_or(Error::NotInCluster),
            NodeRole::Leaf => Err(Error::NotMasterAggregator),
            NodeRole::Unconfigured => Err(Error::NotInCluster),
        }
    }

    fn processes(&self) -> &Processes {
        self.process.processes()
    }

    fn use_database(&mut self, db: &str) -> Result<()> {
        let known = match self.node.role() {
            NodeRole::MasterAggregator => {
                let meta = self.master()?.meta();
                let information_schema = db.eq_ignore_ascii_case("information_schema");
                if !information_schema {
                    self.authorize(&meta, &[Need::Any { db: db.to_string(), table: None }])?;
                }
                information_schema || meta.databases.contains_key(db)
            }
            NodeRole::Leaf => self.node.store.list()?.iter().any(|d| d.name() == db),
            NodeRole::Unconfigured => false,
        };
        if !known {
            return Err(Error::UnknownDatabase(db.to_string()));
        }
        self.db = Some(db.to_string());
        self.process.set_db(Some(db));
        Ok(())
    }

    /// Refuses the statement unless the session's account holds everything `needs` lists (MySQL's error for the
    /// first need it lacks). Only the master aggregator runs statements of accounts other than root.
    fn authorize(&self, meta: &ClusterMeta, needs: &[Need]) -> Result<()> {
        meta.users.check(&self.user, needs).map_err(Error::Denied)
    }

    /// `authorize` with what `needs` computes, computed only for accounts other than root (which holds everything):
    /// root's statements, the benchmarks' among them, pay nothing for the check.
    fn authorize_with(&self, meta: &ClusterMeta, needs: impl FnOnce() -> Vec<Need>) -> Result<()> {
        if self.user == ROOT {
            return Ok(());
        }
        self.authorize(meta, &needs())
    }

    fn holds_cluster(&self, meta: &ClusterMeta) -> bool {
        meta.users.holds_global(&self.user, Privilege::Cluster)
    }

    fn database(&self, explicit: Option<String>) -> Result<String> {
        explicit.or_else(|| self.db.clone()).ok_or(Error::Sql(SqlError::NoDatabaseSelected))
    }

    pub async fn run(&mut self, sql: &str) -> Result<Answer> {
        self.hint_ms = canopy_sql::hints::max_execution_time(sql);
        let role = self.node.role();
        if role == NodeRole::Leaf {
            return self.run_on_leaf(sql).await;
        }
        if role == NodeRole::MasterAggregator
            && let Some(lifted) = canopy_sql::template::insert_values(sql)
        {
            // A text insert of plain values runs as its template would if prepared: parsed once per session.
            return self.run_template(&lifted.numbered, lifted.params, |_| sql.to_string()).await;
        }
        self.run_parsed(sql, role).await
    }

    /// `run` of text that is parsed as it is (no template).
    async fn run_parsed(&mut self, sql: &str, role: NodeRole) -> Result<Answer> {
        let statement = parse_statement(sql)?;
        if role == NodeRole::Unconfigured {
            return self.run_unconfigured(statement).await;
        }
        self.run_on_master(statement).await
    }

    /// One execution of a prepared statement. On the master aggregator a query or DML statement is parsed once per
    /// session and planned with its placeholders; anything else runs as text with the values written in.
    async fn run_prepared(&mut self, prepared: canopy_mysql::Prepared<'_>) -> Result<Answer> {
        if self.node.role() != NodeRole::MasterAggregator {
            return self.run(&prepared.literal_text()).await;
        }
        self.hint_ms = canopy_sql::hints::max_execution_time(prepared.numbered);
        let canopy_mysql::Prepared { text, numbered, params } = prepared;
        let literal =
            |params: &[Value]| canopy_mysql::Prepared { text, numbered, params: params.to_vec() }.literal_text();
        self.run_template(numbered, params, literal).await
    }

    /// A statement with numbered placeholders and their values, on the master aggregator: a query or DML
    /// statement is parsed once per session (`templates`) and planned with its placeholders; anything else runs
    /// as the text `literal` gives (the values written in).
    async fn run_template(
        &mut self,
        numbered: &str,
        params: Vec<Value>,
        literal: impl FnOnce(&[Value]) -> String,
    ) -> Result<Answer> {
        let cluster = self.master()?;
        let meta = cluster.meta();
        let (statement, reused) = match self.templates.get(numbered) {
            Some(template) => (
                template.statement.clone(),
                template.reuse.as_ref().and_then(|r| r.plan_for(&meta, self.db.as_deref(), &params)),
            ),
            None => {
                let statement = match parse_statement(numbered) {
                    Ok(Statement::Query(query)) => Some(Arc::new(*query)),
                    _ => None,
                };
                if self.templates.len() >= TEMPLATES_MAX {
                    self.templates.clear();
                }
                let template = Template { statement: statement.clone(), reuse: None };
                self.templates.insert(numbered.to_string(), template);
                (statement, None)
            }
        };
        let Some(statement) = statement else {
            return self.run_parsed(&literal(&params), NodeRole::MasterAggregator).await;
        };
        self.authorize_with(&meta, || access::query(&statement, self.db.as_deref()))?;
        if let Some(plan) = reused {
            return self.run_plan(&cluster, &meta, plan, params).await;
        }
        let (plan, params) = self.plan_statement(&cluster, &meta, &statement, params).await?;
        if !params.is_empty()
            && let Some(reuse) = Reuse::of(&statement, &plan, &params, &meta, self.db.as_deref())
            && let Some(template) = self.templates.get_mut(numbered)
        {
            template.reuse = Some(reuse);
        }
        self.run_plan(&cluster, &meta, plan, params).await
    }

    async fn run_unconfigured(&mut self, statement: Statement) -> Result<Answer> {
        match statement {
            Statement::Cluster(ClusterCommand::BootstrapAggregator { host, .. }) => {
                self.master.bootstrap(&self.node, host)?;
                Ok(Answer::done())
            }
            Statement::ShowDatabases { .. } => {
                Ok(rows(&["Database"], vec![vec![Value::Text("information_schema".into())]]))
            }
            Statement::SetSession { .. } | Statement::SetNames { .. } => Ok(Answer::done()),
            Statement::Begin | Statement::Commit | Statement::Rollback => Ok(Answer::done()),
            Statement::ShowVariables { like, .. } => {
                Ok(Answer::Rows(views::show_variables(None, &self.limits, like.as_deref())))
            }
            Statement::Query(q) => {
                let now_micros = canopy_storage::engine::system_host().now_micros();
                self.scratch_only(plan::translate(&*q, None, now_micros)).await
            }
            _ => Err(Error::NotInCluster),
        }
    }

    /// A statement with no tables, answered by the scratch engine (`SELECT 1`).
    async fn scratch_only(&self, sql: String) -> Result<Answer> {
        Ok(Answer::Rows(exec::scratch_rows(&self.scratch, sql).await?))
    }

    async fn run_on_leaf(&mut self, sql: &str) -> Result<Answer> {
        match parse_statement(sql) {
            Ok(Statement::Cluster(ClusterCommand::BootstrapAggregator { .. })) => Err(Error::AlreadyJoined),
            Ok(Statement::Cluster(_)) => Err(Error::NotMasterAggregator),
            Ok(Statement::ShowDatabases { extended, like }) => {
                let local = self.node.store.list()?;
                let local: Vec<_> = local
                    .into_iter()
                    .filter(|d| like.as_deref().is_none_or(|p| views::like_match(p, &d.name())))
                    .collect();
                if extended {
                    return Ok(Answer::Rows(views::databases_extended(&local)));
                }
                let mut names = vec![vec![Value::Text("information_schema".into())]];
                names.extend(local.iter().map(|d| vec![Value::Text(d.name())]));
                Ok(rows(&["Database"], names))
            }
            Ok(Statement::Use { db }) => self.use_database(&db).map(|()| Answer::done()),
            Ok(Statement::SetSession { .. } | Statement::SetNames { .. }) => Ok(Answer::done()),
            Ok(Statement::Begin | Statement::Commit | Statement::Rollback) => Ok(Answer::done()),
            _ => {
                // Inside a partition database a leaf runs SQLite's SQL as is, for inspection only: a write here
                // would bypass the master's gates (and, for DDL, the metadata), so it is refused.
                let Some(name) = self.db.clone() else { return self.scratch_only(sql.to_string()).await };
                let local = self.node.store.list()?;
                let target = local.into_iter().find(|d| d.name() == name).ok_or(Error::UnknownDatabase(name))?;
                let store = self.node.store.clone();
                let sql = sql.to_string();
                let outcome = tokio::task::spawn_blocking(move || match target.ordinal {
                    Some(o) => store.inspect_partition(&target.db, o, &sql),
                    None => store.inspect_reference(&target.db, &sql),
                })
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|e| match e {
                    canopy_storage::StorageError::NotReadOnly => Error::LeafReadOnly,
                    e => Error::Storage(e),
                })?;
                Ok(match outcome {
                    canopy_storage::Outcome::Rows(rs) => Answer::Rows(rs),
                    canopy_storage::Outcome::Affected { rows, last_insert_id } => Answer::Done {
                        affected_rows: rows,
                        last_insert_id: last_insert_id.max(0) as u64,
                        info: String::new(),
                        notices: Vec::new(),
                    },
                })
            }
        }
    }

    async fn run_on_master(&mut self, statement: Statement) -> Result<Answer> {
        let cluster = self.master()?;
        let meta = cluster.meta();
        self.authorize_with(&meta, || access::required(&statement, self.db.as_deref(), &self.user))?;
        match statement {
            Statement::Account(account) => accounts::run(&cluster, &self.user, self.db.as_deref(), account).await,
            Statement::ShowCatalog(ShowCatalog::Grants { user }) => {
                Ok(Answer::Rows(accounts::show_grants(&meta, &self.user, user.as_deref())?))
            }
            Statement::Cluster(command) => self.cluster_command(&cluster, command).await,
            Statement::CreateDatabase { name, if_not_exists, partitions, durability, replication } => {
                let durability = match durability {
                    Some(canopy_sql::command::SyncMode::Async) => canopy_meta::Durability::Async,
                    _ => canopy_meta::Durability::Sync,
                };
                let replication = match replication {
                    Some(canopy_sql::command::SyncMode::Async) => canopy_meta::Replication::Async,
                    _ => canopy_meta::Replication::Sync,
                };
                ops::create_database(&cluster, name, if_not_exists, partitions, durability, replication).await
            }
            Statement::DropDatabase { name, if_exists } => {
                let answer = ops::drop_database(&cluster, name.clone(), if_exists).await?;
                if self.db.as_deref() == Some(name.as_str()) {
                    self.db = None;
                    self.process.set_db(None);
                }
                Ok(answer)
            }
            Statement::Use { db } => self.use_database(&db).map(|()| Answer::done()),
            Statement::ShowDatabases { like, .. } => {
                // As MySQL, an account sees the databases it holds some privilege on.
                let names = std::iter::once("information_schema".to_string())
                    .chain(meta.databases.keys().filter(|d| meta.users.sees(&self.user, d)).cloned())
                    .filter(|n| like.as_deref().is_none_or(|p| views::like_match(p, n)))
                    .map(|n| vec![Value::Text(n)])
                    .collect();
                Ok(rows(&["Database"], names))
            }
            Statement::ShowWhere { show, condition } => match Box::pin(self.run_on_master(*show)).await? {
                Answer::Rows(shown) => Ok(Answer::Rows(views::filter_shown(&self.scratch, shown, condition).await?)),
                done => Ok(done),
            },
            Statement::ShowTables { db, like, full } => {
                let db = self.database(db)?;
                let meta = cluster.meta();
                // MySQL lists its INFORMATION_SCHEMA tables as system views; GUI clients browse them like a database.
                let (names, kind): (Vec<String>, &str) = if db.eq_ignore_ascii_case("information_schema") {
                    (views::INFORMATION_SCHEMA_TABLES.iter().map(|t| t.to_string()).collect(), "SYSTEM VIEW")
                } else {
                    let database = meta.databases.get(&db).ok_or_else(|| Error::UnknownDatabase(db.clone()))?;
                    (database.tables.values().map(|t| t.name.clone()).collect(), "BASE TABLE")
                };
                let header = format!("Tables_in_{db}");
                let list = names
                    .into_iter()
                    .filter(|name| like.as_deref().is_none_or(|p| views::like_match(p, name)))
                    .map(|name| {
                        let mut row = vec![Value::Text(name)];
                        if full {
                            row.push(Value::text(kind));
                        }
                        row
                    })
                    .collect();
                let columns: Vec<&str> = if full { vec![&header, "Table_type"] } else { vec![&header] };
                Ok(rows(&columns, list))
            }
            Statement::Describe { db, table } => {
                let def = self.table_def(&cluster, db, &table)?;
                Ok(rows(&["Field", "Type", "Null", "Key", "Default", "Extra"], canopy_sql::ddl::describe_rows(&def)))
            }
            Statement::NoEffect(NoEffect::ToggleKeys { db, table }) => {
                self.table_def(&cluster, db, &table)?;
                Ok(Answer::done())
            }
            Statement::NoEffect(NoEffect::LockTables | NoEffect::UnlockTables) => Ok(Answer::done()),
            Statement::ShowCatalog(ShowCatalog::Processlist { full }) => {
                let mut list = self.processes().list(full);
                // Without CLUSTER (MySQL: PROCESS) an account sees only its own connections.
                if !self.holds_cluster(&meta) {
                    let own = Value::Text(self.user.clone());
                    list.rows.retain(|row| row.get(1) == Some(&own));
                }
                Ok(Answer::Rows(list))
            }
            Statement::ShowCatalog(ShowCatalog::Status { like }) => {
                Ok(Answer::Rows(self.processes().status(like.as_deref())))
            }
            Statement::ShowCatalog(show) => {
                let meta = cluster.meta();
                let next_id = |db: &str, t: &str| cluster.next_auto_increment(&meta, db, t);
                Ok(Answer::Rows(crate::front::schema_tables::show(&meta, self.db.as_deref(), &show, &next_id)?))
            }
            Statement::ShowCreateTable { db, table } => {
                let db = self.database(db)?;
                let def = self.table_def(&cluster, Some(db.clone()), &table)?;
                let mut text = canopy_sql::ddl::show_create_table(&def);
                // As MySQL, the next AUTO_INCREMENT value once one was given or reserved: a dump then recreates a
                // table that does not generate its loaded ids again.
                let next = cluster.next_auto_increment(&cluster.meta(), &db, &def.name);
                if def.auto_increment_column().is_some() && next > 1 {
                    text.push_str(&format!(" AUTO_INCREMENT={next}"));
                }
                Ok(rows(&["Table", "Create Table"], vec![vec![Value::Text(def.name), Value::Text(text)]]))
            }
            Statement::CreateTable(create) => {
                let db = self.database(create.db.clone())?;
                ops::create_table(&cluster, db, create).await
            }
            Statement::CreateIndex(index) => {
                let db = self.database(index.db.clone())?;
                ops::create_index(&cluster, db, index).await
            }
            Statement::DropTable { tables, if_exists } => {
                let tables =
                    tables.into_iter().map(|(db, t)| Ok((self.database(db)?, t))).collect::<Result<Vec<_>>>()?;
                ops::drop_tables(&cluster, tables, if_exists).await
            }
            // MySQL's own global, kept per aggregator as MySQL keeps it per server.
            Statement::SetGlobal { name, value } if name == "max_execution_time" => {
                self.processes().set_max_execution_ms(execution_ms(&value)?);
                Ok(Answer::done())
            }
            Statement::SetGlobal { name, value } => {
                cluster.apply(Command::SetVariable { name, value }).await?;
                Ok(Answer::done())
            }
            Statement::Kill { id, query_only } => {
                let owner = self.processes().user_of(id).ok_or(Error::UnknownThread(id))?;
                if owner != self.user && !self.holds_cluster(&meta) {
                    return Err(Error::NotThreadOwner(id));
                }
                self.processes().kill(id, query_only).map_err(|unknown| Error::UnknownThread(unknown.0))?;
                Ok(Answer::done())
            }
            Statement::SetSession { assignments } if assignments.iter().any(|(name, _)| name == "autocommit") => {
                // The front end handles `SET autocommit` unless the statement also sets a variable it does not
                // know; acknowledging it here would leave `@@autocommit` and the transaction state wrong.
                Err(Error::Unsupported("SET autocommit together with other variables; set it on its own".into()))
            }
            Statement::SetSession { .. } | Statement::SetNames { .. } => Ok(Answer::done()),
            Statement::ShowVariables { like, .. } => {
                Ok(Answer::Rows(views::show_variables(Some(&cluster.meta()), &self.limits, like.as_deref())))
            }
            Statement::Begin => {
                self.in_transaction = true;
                self.wrote_in_transaction = false;
                Ok(Answer::done())
            }
            Statement::Commit => {
                self.in_transaction = false;
                self.wrote_in_transaction = false;
                Ok(Answer::done())
            }
            Statement::Rollback => {
                let wrote = self.wrote_in_transaction;
                self.in_transaction = false;
                self.wrote_in_transaction = false;
                if wrote {
                    // Every statement commits on its own (see docs/sql.md); saying the rollback worked would lie.
                    return Err(Error::Unsupported(
                        "ROLLBACK of writes: each statement was committed when it ran".into(),
                    ));
                }
                Ok(Answer::done())
            }
            // Statements commit as they run, so a savepoint marks nothing: rolling back to one is truthful only
            // when the transaction has written nothing (a read-only dump's savepoints).
            Statement::Savepoint(Savepoint::RollbackTo(_)) if self.wrote_in_transaction => Err(Error::Unsupported(
                "ROLLBACK TO SAVEPOINT after writes: each statement was committed when it ran".into(),
            )),
            Statement::Savepoint(_) => Ok(Answer::done()),
            Statement::Query(query) => self.query(&cluster, &query, Vec::new()).await,
            Statement::Other(other) => Err(Error::Unsupported(format!("statement `{other}`"))),
        }
    }

    fn table_def(&self, cluster: &Cluster, db: Option<String>, table: &str) -> Result<TableDef> {
        let db = self.database(db)?;
        let meta = cluster.meta();
        let database = meta.databases.get(&db).ok_or_else(|| Error::UnknownDatabase(db.clone()))?;
        database
            .table(table)
            .cloned()
            .ok_or_else(|| Error::Sql(SqlError::UnknownTable { db, table: table.to_string() }))
    }

    /// Plans and runs a query or DML statement. `params` are the values of its numbered placeholders when it comes
    /// from a prepared statement: they stay placeholders in the SQL sent to the leaves (so the leaves' statement
    /// caches hit) unless the plan evaluates one on this aggregator, in which case they are bound in as literals.
    async fn query(
        &mut self,
        cluster: &Arc<Cluster>,
        query: &sqlparser::ast::Statement,
        params: Vec<Value>,
    ) -> Result<Answer> {
        let meta = cluster.meta();
        if let sqlparser::ast::Statement::Explain { statement, analyze, .. } = query {
            // EXPLAIN prints the distributed plan; it runs nothing.
            if *analyze {
                return Err(Error::Unsupported("EXPLAIN ANALYZE".into()));
            }
            let (plan, _) = self.plan_statement(cluster, &meta, statement, params).await?;
            let lines = plan::explain(&plan).into_iter().map(|line| vec![Value::Text(line)]).collect();
            return Ok(rows(&["EXPLAIN"], lines));
        }
        let (plan, params) = self.plan_statement(cluster, &meta, query, params).await?;
        self.run_plan(cluster, &meta, plan, params).await
    }

    /// Plans `query` with its parameters; returns the plan and the parameters to send with it (none when they had
    /// to be bound into the statement as literals). AUTO_INCREMENT values the plan needs and this aggregator does
    /// not hold are reserved here, outside the planner, and the statement is planned again.
    async fn plan_statement(
        &mut self,
        cluster: &Arc<Cluster>,
        meta: &ClusterMeta,
        query: &sqlparser::ast::Statement,
        params: Vec<Value>,
    ) -> Result<(plan::Plan, Vec<Value>)> {
        // Other sessions may take the new range's values first; a few rounds settle it.
        const RESERVE_ROUNDS: usize = 5;
        for _ in 0..RESERVE_ROUNDS {
            match self.plan_once(cluster, meta, query, params.clone()) {
                Err(Error::Sql(SqlError::AutoIncrementNeeded { db, table, count })) => {
                    cluster.reserve_auto_increment(&db, &table, count).await?;
                }
                other => return other,
            }
        }
        Err(Error::Internal(format!("AUTO_INCREMENT values stayed short after {RESERVE_ROUNDS} reservations")))
    }

    fn plan_once(
        &mut self,
        cluster: &Arc<Cluster>,
        meta: &ClusterMeta,
        query: &sqlparser::ast::Statement,
        params: Vec<Value>,
    ) -> Result<(plan::Plan, Vec<Value>)> {
        let scratch = self.scratch.lock().map_err(|_| Error::Internal("scratch lock poisoned".into()))?;
        let db = self.db.as_deref();
        // One time for the whole statement, however often it is planned: every partition sees one NOW().
        let now_micros = canopy_storage::engine::system_host().now_micros();
        let connection = (self.process.id(), self.limits.server_version.as_str());
        let mut context = Context {
            meta,
            cluster,
            scratch: &scratch,
            spread: &mut self.spread,
            params: &params,
            now_micros,
            connection,
        };
        let plan = plan::plan(query, db, &mut context)?;
        if params.is_empty() || plan::runs_with_params(&plan) {
            return Ok((plan, params));
        }
        let mut bound = query.clone();
        plan::bind_placeholders(&mut bound, &params);
        let mut context =
            Context { meta, cluster, scratch: &scratch, spread: &mut self.spread, params: &[], now_micros, connection };
        Ok((plan::plan(&bound, db, &mut context)?, Vec::new()))
    }

    async fn run_plan(
        &mut self,
        cluster: &Arc<Cluster>,
        meta: &ClusterMeta,
        plan: plan::Plan,
        params: Vec<Value>,
    ) -> Result<Answer> {
        let writes =
            matches!(plan, plan::Plan::Insert { .. } | plan::Plan::Write { .. } | plan::Plan::ReferenceWrite { .. });
        self.note_statement(writes);
        let views =
            views::ClusterViews { cluster, meta, processes: self.processes(), limits: &self.limits, user: &self.user };
        let work = exec::execute(cluster, meta, plan, &params, &self.scratch, &views);
        if writes {
            // A write is never cut short: each statement commits as it runs, so there is nothing to roll back, and
            // a client told "interrupted" would be told something false. KILL takes effect when it ends.
            return work.await;
        }
        // A read stops at KILL QUERY or at its time limit (the hint, else the session's max_execution_time), on
        // this aggregator and on the leaves.
        let statement = exec::StatementCtl::fresh();
        let mut kills = self.process.query_kills();
        kills.mark_unchanged();
        let limit = self.hint_ms.unwrap_or(self.max_execution_ms);
        let time_limit = async {
            if limit == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(limit)).await;
        };
        tokio::select! {
            answer = statement.clone().scope(work) => answer,
            _ = kills.changed() => {
                statement.cancel(cluster);
                Err(Error::QueryInterrupted)
            }
            () = time_limit => {
                statement.cancel(cluster);
                Err(Error::Sql(SqlError::QueryTimeout))
            }
        }
    }

    /// Resolves at the first KILL QUERY (or KILL CONNECTION) of this connection from now on.
    fn query_killed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut kills = self.process.query_kills();
        kills.mark_unchanged();
        async move {
            if kills.changed().await.is_err() {
                // The process list dropped the connection's entry: nothing can kill it any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Transaction bookkeeping before a planned statement runs. A write counts even if it then fails: a statement
    /// spanning partitions may have committed on some of them.
    fn note_statement(&mut self, writes: bool) {
        if !self.autocommit {
            self.in_transaction = true;
        }
        if writes && self.in_transaction {
            self.wrote_in_transaction = true;
        }
    }

    async fn cluster_command(&mut self, cluster: &Arc<Cluster>, command: ClusterCommand) -> Result<Answer> {
        let meta = cluster.meta();
        match command {
            ClusterCommand::BootstrapAggregator { .. } => Err(Error::AlreadyJoined),
            ClusterCommand::AddLeaf { user, password, host, port, group } => {
                ops::add_leaf(cluster, user, password.unwrap_or_default(), host, port, group).await
            }
            ClusterCommand::ShowLeaves => Ok(Answer::Rows(views::show_leaves(cluster, &meta, false))),
            ClusterCommand::ShowAggregators { .. } => Ok(Answer::Rows(views::show_aggregators(&meta, false))),
            ClusterCommand::ShowPartitions { db, .. } => {
                let db = self.database(db)?;
                Ok(Answer::Rows(views::show_partitions(&meta, &db)?))
            }
            ClusterCommand::ShowClusterStatus => Ok(Answer::Rows(views::cluster_status(cluster, &meta).await?)),
            ClusterCommand::ClearOrphanDatabases { explain } => attach::clear_orphans(cluster, explain).await,
            ClusterCommand::SnapshotDatabase { db } => ops::snapshot_database(cluster, db).await,
            ClusterCommand::ShowRebalanceStatus { db } => {
                let db = self.database(db)?;
                let live = rebalance::live(cluster, &meta, &db).await;
                Ok(Answer::Rows(views::rebalance_status(&meta, &db, &live)?))
            }
            ClusterCommand::ShowRebalanceAllDatabasesStatus => {
                let mut live = HashMap::new();
                for db in meta.databases.keys() {
                    live.insert(db.clone(), rebalance::live(cluster, &meta, db).await);
                }
                let live_of = |db: &str| live.get(db).cloned().unwrap_or_default();
                Ok(Answer::Rows(views::rebalance_status_all(&meta, live_of)))
            }
            ClusterCommand::ExplainRebalancePartitions { db, options } => {
                rebalance::explain(cluster, &self.database(db)?, options).await
            }
            ClusterCommand::RebalancePartitions { db, options } => {
                rebalance::rebalance_database(cluster, &self.database(db)?, options, self.query_killed()).await
            }
            ClusterCommand::ExplainRebalanceAllDatabases => rebalance::explain_all(cluster).await,
            ClusterCommand::RebalanceAllDatabases { kill, ensure_online_nodes } => {
                let options = RebalanceOptions { full: true, force: false, kill, ensure_online_nodes };
                rebalance::rebalance_all(cluster, options, self.query_killed()).await
            }
            ClusterCommand::CancelRebalancePartitions { db } => rebalance::cancel(cluster, Some(&self.database(db)?)),
            ClusterCommand::CancelRebalanceAllDatabases => rebalance::cancel(cluster, None),
            ClusterCommand::AttachLeaf { target: LeafTarget::One { host, port }, force, .. } => {
                let leaf = leaf_id(&meta, &host, port)?;
                if meta.leaves[&leaf].state == canopy_meta::LeafState::Online {
                    return Err(Error::Unsupported(format!("leaf '{host}':{port} is already online")));
                }
                attach::attach_leaf(cluster, leaf, force).await
            }
            ClusterCommand::AttachLeaf { target: LeafTarget::All, force, .. } => {
                let detached: Vec<_> = meta
                    .leaves_in_order()
                    .filter(|l| l.state == canopy_meta::LeafState::Detached)
                    .map(|l| l.id)
                    .collect();
                let mut attached = 0;
                for leaf in detached {
                    attach::attach_leaf(cluster, leaf, force).await?;
                    attached += 1;
                }
                Ok(Answer::affected(attached))
            }
            ClusterCommand::DetachLeaf { host, port, .. } => {
                let leaf = leaf_id(&meta, &host, port)?;
                if meta.variables.redundancy_level == 2 {
                    return attach::detach_leaf_paired(cluster, leaf).await;
                }
                if holds_instances(&meta, leaf) {
                    return moves::detach_leaf(cluster, leaf).await;
                }
                attach::detach_empty_leaf(cluster, leaf).await
            }
            ClusterCommand::RemoveLeaf { host, port, force, .. } => {
                let leaf = leaf_id(&meta, &host, port)?;
                if meta.variables.redundancy_level == 2 {
                    return attach::remove_leaf_paired(cluster, leaf, force).await;
                }
                if holds_instances(&meta, leaf) && !force {
                    moves::move_partitions_off(cluster, leaf).await?;
                }
                attach::remove_leaf(cluster, leaf, force).await
            }
            ClusterCommand::Partition(PartitionCommand { action, db, ordinal, host, port }) => {
                let leaf = leaf_id(&meta, &host, port)?;
                partition::run(cluster, action, db, ordinal, leaf).await
            }
            ClusterCommand::RestoreRedundancy { db } => replication::restore_redundancy(cluster, &db).await,
            ClusterCommand::ExplainRestoreRedundancy { db } => {
                Ok(Answer::Rows(views::explain_restore_redundancy(&meta, &db)?))
            }
            other => Err(Error::Unsupported(format!("{other:?} is not available yet"))),
        }
    }
}

fn leaf_id(meta: &ClusterMeta, host: &str, port: u16) -> Result<canopy_meta::NodeId> {
    meta.leaf_at(host, port).map(|l| l.id).ok_or_else(|| Error::UnknownLeafAddress { host: host.to_string(), port })
}

fn holds_instances(meta: &ClusterMeta, leaf: canopy_meta::NodeId) -> bool {
    meta.databases.values().any(|d| d.instances.iter().any(|i| i.node == leaf))
}

fn answer_to_reply(result: Result<Answer>) -> Reply {
    match result {
        Ok(Answer::Rows(rs)) => Reply::rows(rs),
        Ok(Answer::Done { affected_rows, last_insert_id, info, notices }) => {
            let warnings = notices.iter().map(|n| n.to_mysql()).collect();
            Reply::Ok { affected_rows, last_insert_id, info, warnings }
        }
        Err(e) => Reply::Error(e.to_mysql()),
    }
}

/// A `max_execution_time` value: milliseconds, 0 for none.
fn execution_ms(value: &Value) -> Result<u64> {
    match value {
        Value::Integer(ms) if *ms >= 0 => Ok(*ms as u64),
        other => Err(Error::Meta(canopy_meta::MetaError::BadVariableValue {
            name: "max_execution_time".into(),
            value: other.to_mysql_literal(),
        })),
    }
}

impl canopy_mysql::Session for Session {
    async fn query(&mut self, sql: &str) -> Reply {
        self.process.statement_started(&accounts::shown_text(sql));
        let answer = self.run(sql).await;
        self.process.statement_finished();
        answer_to_reply(answer)
    }

    async fn execute<'a>(&'a mut self, prepared: canopy_mysql::Prepared<'a>) -> Reply {
        self.process.statement_started(prepared.numbered);
        let answer = self.run_prepared(prepared).await;
        self.process.statement_finished();
        answer_to_reply(answer)
    }

    async fn init_db(&mut self, db: &str) -> std::result::Result<(), MysqlError> {
        self.use_database(db).map_err(|e| e.to_mysql())
    }

    fn current_database(&self) -> Option<String> {
        self.db.clone()
    }

    fn set_autocommit(&mut self, on: bool) {
        if on && !self.autocommit {
            // MySQL commits the open transaction here; every statement was committed already.
            self.in_transaction = false;
            self.wrote_in_transaction = false;
        }
        self.autocommit = on;
    }

    fn reset_transaction(&mut self) {
        self.autocommit = true;
        self.in_transaction = false;
        self.wrote_in_transaction = false;
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn session_variable_set(&mut self, name: &str, value: Option<&Value>) {
        if name == "max_execution_time" {
            // The front end keeps the value it shows for @@max_execution_time; a value that is not a number of
            // milliseconds counts as none, as DEFAULT does.
            self.max_execution_ms = value.map_or(Ok(0), execution_ms).unwrap_or(0);
        }
    }

    fn closed(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.process.killed())
    }

    fn system_variable(&self, name: &str) -> Option<Value> {
        match name.to_ascii_lowercase().as_str() {
            "canopy_rpc_port" => Some(Value::Integer(i64::from(self.node.config.rpc_port))),
            "canopy_cluster_id" => Some(self.node.identity().cluster_id.map(Value::Text).unwrap_or(Value::Null)),
            // Shown only to a logged-in user of an unconfigured node: ADD LEAF proves its login with it.
            "canopy_join_token" => Some(self.node.join_token().map(|t| Value::Text(t.into())).unwrap_or(Value::Null)),
            "canopy_role" => Some(Value::Text(format!("{:?}", self.node.role()))),
            "max_execution_time" => Some(Value::Integer(i64::try_from(self.max_execution_ms).unwrap_or(i64::MAX))),
            _ => self.master.get().and_then(|c| c.meta().variables.get(name)),
        }
    }

    async fn describe(&mut self, sql: &str) -> std::result::Result<Vec<Column>, MysqlError> {
        match self.run(sql).await {
            Ok(Answer::Rows(rs)) => Ok(rs.columns),
            Ok(Answer::Done { .. }) => Ok(vec![]),
            Err(e) => Err(e.to_mysql()),
        }
    }
}
