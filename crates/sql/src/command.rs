//! Statement classification: one SQL string in, one [`Statement`] out. Canopy's own grammar (see `lexer.rs`)
//! claims the statements sqlparser cannot represent or that the server handles itself: cluster commands
//! (`command/cluster.rs`), database and table catalog statements, `SET`, `SHOW`, transactions and `CREATE TABLE`
//! (whose SingleStore clauses `ddl` strips). Everything else goes to sqlparser with `MySqlDialect`.
//!
//! It does not check anything against the catalog or the cluster state (does the table exist, is this node the
//! master aggregator): that is the server's job. Decisions worth knowing:
//! - Once the leading keywords identify one of our statements (`REMOVE LEAF`, `SHOW TABLES`, `SET GLOBAL`...), a
//!   malformed remainder is a [`SqlError::Parse`] naming what was expected and where; it never falls through to
//!   sqlparser. The exceptions are session `SET`s with expression values and `ROLLBACK TO ...`, which sqlparser gets.
//! - Variable names are lower-cased (MySQL's are case-insensitive). Values: `ON`/`TRUE` → `Integer(1)`,
//!   `OFF`/`FALSE` → `Integer(0)` (MySQL stores boolean variables as 1/0 and shows them as ON/OFF), numbers →
//!   `Integer` or `Real`, quoted strings and other bare words → `Text` as written, `NULL` → `Null`.
//! - Ports default to 3306 wherever a `'host'` may omit `:port`.

pub mod access;
mod cluster;
mod show;
mod tools;
pub mod users;

use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::ddl::{self, CreateIndex, CreateTable};
use crate::error::SqlError;
use crate::lexer::{self, Cursor, TokenKind};
use crate::value::Value;

/// One classified statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Cluster(ClusterCommand),
    /// CREATE/DROP/ALTER USER, SET PASSWORD, GRANT, REVOKE (see `command/users.rs`).
    Account(users::AccountStatement),
    /// `CREATE DATABASE|SCHEMA [IF NOT EXISTS] db [WITH {SYNC|ASYNC} {DURABILITY|REPLICATION} ...]
    /// [PARTITIONS [=] n] [[DEFAULT] CHARACTER SET|CHARSET [=] x] [[DEFAULT] COLLATE [=] x]` (options in any
    /// order; character set and collation are accepted and ignored).
    CreateDatabase {
        name: String,
        if_not_exists: bool,
        partitions: Option<u32>,
        /// `WITH {SYNC|ASYNC} DURABILITY`; `None` when not given.
        durability: Option<SyncMode>,
        /// `WITH {SYNC|ASYNC} REPLICATION`; `None` when not given (SingleStore's default is SYNC).
        replication: Option<SyncMode>,
    },
    /// `DROP DATABASE|SCHEMA [IF EXISTS] db`
    DropDatabase {
        name: String,
        if_exists: bool,
    },
    /// `USE db`
    Use {
        db: String,
    },
    /// `KILL [CONNECTION|QUERY] id`: stop connection `id`'s running statement (`QUERY`), or the statement and the
    /// connection (`CONNECTION`, the default).
    Kill {
        id: u64,
        query_only: bool,
    },
    /// `SHOW DATABASES|SCHEMAS [EXTENDED] [LIKE 'pattern']`
    ShowDatabases {
        extended: bool,
        like: Option<String>,
    },
    /// `SHOW [FULL] TABLES [FROM|IN db] [LIKE 'pattern']`
    ShowTables {
        db: Option<String>,
        like: Option<String>,
        full: bool,
    },
    /// `DESCRIBE t`, `DESC t`, `EXPLAIN t` (only a bare table name), `SHOW [FULL] COLUMNS|FIELDS FROM|IN t
    /// [FROM|IN db]`; `t` may be `db.t`.
    Describe {
        db: Option<String>,
        table: String,
    },
    /// `SHOW CREATE TABLE [db.]t`
    ShowCreateTable {
        db: Option<String>,
        table: String,
    },
    /// MySQL's catalog SHOW statements answered from the metadata (see `command/show.rs`).
    ShowCatalog(ShowCatalog),
    /// `SHOW ... WHERE condition`: any SHOW of this grammar, its rows kept where `condition` holds. The condition
    /// names SHOW's own columns (`Tables_in_db`, `Table_type`, `Variable_name`...) and is rendered for SQLite.
    ShowWhere {
        show: Box<Statement>,
        condition: String,
    },
    /// What dump and admin tools send that Canopy accepts without effect (see `command/tools.rs`).
    NoEffect(NoEffect),
    /// `CREATE [ROWSTORE] [REFERENCE] TABLE ...`, see [`crate::ddl::create_table`].
    CreateTable(CreateTable),
    /// `CREATE [UNIQUE] INDEX name ON [db.]t (cols)` or `ALTER TABLE [db.]t ADD [UNIQUE] INDEX|KEY [name] (cols)`.
    CreateIndex(CreateIndex),
    /// `DROP TABLE [IF EXISTS] [db.]t [, ...]`
    DropTable {
        tables: Vec<(Option<String>, String)>,
        if_exists: bool,
    },
    /// `SET GLOBAL x = v`, `SET @@GLOBAL.x = v` (one variable per statement).
    SetGlobal {
        name: String,
        value: Value,
    },
    /// `SET [SESSION|LOCAL] x = v [, ...]`, `SET @@[SESSION.|LOCAL.]x = v` with literal values. Clients send these
    /// on connect (`SET autocommit=1`); the server decides which it honours.
    SetSession {
        assignments: Vec<(String, Value)>,
    },
    /// `SET NAMES charset [COLLATE collation]`
    SetNames {
        charset: String,
        collation: Option<String>,
    },
    /// `SHOW [GLOBAL|SESSION] VARIABLES [LIKE 'pattern']`
    ShowVariables {
        global: bool,
        like: Option<String>,
    },
    /// `BEGIN [WORK]`, `START TRANSACTION [READ ONLY|READ WRITE|WITH CONSISTENT SNAPSHOT, ...]`
    Begin,
    /// `COMMIT [WORK]`
    Commit,
    /// `ROLLBACK [WORK]`
    Rollback,
    /// `SAVEPOINT x`, `ROLLBACK [WORK] TO [SAVEPOINT] x`, `RELEASE SAVEPOINT x`
    Savepoint(Savepoint),
    /// SELECT (also under WITH), INSERT, REPLACE, UPDATE, DELETE and EXPLAIN of those: the distributed planner's
    /// input. A write nested inside a query (`WITH ... DELETE`, a DML body of a CTE) is refused as unsupported.
    Query(Box<sqlparser::ast::Statement>),
    /// Any other statement sqlparser understands (`SET @v = 1`, `CREATE VIEW`, `SHOW STATUS`, `ALTER TABLE ... DROP
    /// ...`): the server supports what it can and rejects the rest.
    Other(Box<sqlparser::ast::Statement>),
}

/// The savepoint statements of a transaction (mysqldump --single-transaction sends them around each table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Savepoint {
    Set(String),
    RollbackTo(String),
    Release(String),
}

/// Statements accepted without effect, because Canopy has nothing they would act on (see `command/tools.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoEffect {
    /// `LOCK TABLES t {READ [LOCAL]|[LOW_PRIORITY] WRITE} [, ...]`: Canopy has no table locks.
    LockTables,
    /// `UNLOCK TABLES`
    UnlockTables,
    /// `ALTER TABLE [db.]t {DISABLE|ENABLE} KEYS`: indexes are always maintained (the table must exist).
    ToggleKeys { db: Option<String>, table: String },
}

/// The catalog SHOW statements tools send; `db` is `None` for the session's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShowCatalog {
    /// `SHOW [EXTENDED] {INDEX|INDEXES|KEYS} {FROM|IN} [db.]t [{FROM|IN} db]`
    Index { db: Option<String>, table: String },
    /// `SHOW [EXTENDED] FULL {COLUMNS|FIELDS} {FROM|IN} [db.]t [{FROM|IN} db] [LIKE 'p']`
    FullColumns { db: Option<String>, table: String, like: Option<String> },
    /// `SHOW TABLE STATUS [{FROM|IN} db] [LIKE 'p']`
    TableStatus { db: Option<String>, like: Option<String> },
    /// `SHOW CREATE {DATABASE|SCHEMA} [IF NOT EXISTS] db`
    CreateDatabase { name: String, if_not_exists: bool },
    /// `SHOW [STORAGE] ENGINES`
    Engines,
    /// `SHOW {CHARACTER SET|CHARSET} [LIKE 'p']`
    CharacterSet { like: Option<String> },
    /// `SHOW COLLATION [LIKE 'p']`
    Collation { like: Option<String> },
    /// `SHOW PLUGINS`
    Plugins,
    /// `SHOW PRIVILEGES`: the privileges a grant can name.
    Privileges,
    /// `SHOW GRANTS [FOR user[@host] | FOR CURRENT_USER[()]]`
    Grants { user: Option<String> },
    /// `SHOW {MASTER|SLAVE|REPLICA} STATUS`, `SHOW {BINARY|MASTER} LOGS`: Canopy has no MySQL replication.
    ReplicationStatus,
    /// `SHOW {FUNCTION|PROCEDURE} STATUS`, `SHOW TRIGGERS`, `SHOW EVENTS` (with any LIKE; a WHERE wraps them in `ShowWhere`): Canopy has
    /// none of these objects, so the list is empty.
    NoObjects(ObjectKind),
    /// `SHOW [FULL] PROCESSLIST`: this aggregator's connections (answered by the front end, not from metadata).
    Processlist { full: bool },
    /// `SHOW [GLOBAL|SESSION|LOCAL] STATUS [LIKE 'p']`: this node's counters.
    Status { like: Option<String> },
}

/// Kinds of schema objects Canopy does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Routines,
    Triggers,
    Events,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Sync,
    Async,
}

/// The SingleStore clustering commands (spec sections 1-7).
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterCommand {
    /// `BOOTSTRAP AGGREGATOR 'host' [PORT n | :n]`
    BootstrapAggregator { host: String, port: Option<u16> },
    /// `ADD LEAF user[:'password']@'host'[:port] [INTO GROUP {1|2}]` (port defaults to 3306). The user may be bare,
    /// 'quoted' or `backquoted`.
    AddLeaf { user: String, password: Option<String>, host: String, port: u16, group: Option<u8> },
    /// `ADD AGGREGATOR user[:'password']@'host'[:port]`
    AddAggregator { user: String, password: Option<String>, host: String, port: u16 },
    /// `REMOVE AGGREGATOR 'host':port`
    RemoveAggregator { host: String, port: u16 },
    /// `REMOVE LEAF 'host':port [FORCE] [KILL] [ENSURE_PARTITION_SAFETY]` (flags in any order)
    RemoveLeaf { host: String, port: u16, force: bool, kill: bool, ensure_partition_safety: bool },
    /// `ATTACH LEAF 'host':port | ALL [FORCE] [NO REBALANCE]`
    AttachLeaf { target: LeafTarget, force: bool, no_rebalance: bool },
    /// `DETACH LEAF 'host':port [KILL] [ENSURE_PARTITION_SAFETY]`
    DetachLeaf { host: String, port: u16, kill: bool, ensure_partition_safety: bool },
    /// `DETACH LEAVES ('host':port, ...) [KILL] [ENSURE_PARTITION_SAFETY]` (all or nothing)
    DetachLeaves { leaves: Vec<(String, u16)>, kill: bool, ensure_partition_safety: bool },
    /// `SHOW LEAVES`
    ShowLeaves,
    /// `SHOW AGGREGATORS [EXTENDED]`
    ShowAggregators { extended: bool },
    /// `SHOW PARTITIONS [EXTENDED] [ON db]` (`None`: the current database)
    ShowPartitions { db: Option<String>, extended: bool },
    /// `SHOW CLUSTER STATUS`
    ShowClusterStatus,
    /// `REBALANCE PARTITIONS [ON db] [FULL] [FORCE] [KILL] [ENSURE_ONLINE_NODES]` (`None`: the current database)
    RebalancePartitions { db: Option<String>, options: RebalanceOptions },
    /// `EXPLAIN REBALANCE PARTITIONS [ON db] [FULL] [FORCE] [KILL] [ENSURE_ONLINE_NODES]`
    ExplainRebalancePartitions { db: Option<String>, options: RebalanceOptions },
    /// `SHOW REBALANCE STATUS [ON db]`
    ShowRebalanceStatus { db: Option<String> },
    /// `REBALANCE PARTITIONS [ON db] CANCEL`: stop the running plan of the database between steps.
    CancelRebalancePartitions { db: Option<String> },
    /// `REBALANCE ALL DATABASES [KILL] [ENSURE_ONLINE_NODES]`
    RebalanceAllDatabases { kill: bool, ensure_online_nodes: bool },
    /// `REBALANCE ALL DATABASES CANCEL`: stop every running plan between steps.
    CancelRebalanceAllDatabases,
    /// `EXPLAIN REBALANCE ALL DATABASES`
    ExplainRebalanceAllDatabases,
    /// `SHOW REBALANCE ALL DATABASES STATUS`
    ShowRebalanceAllDatabasesStatus,
    /// `RESTORE REDUNDANCY ON db`
    RestoreRedundancy { db: String },
    /// `EXPLAIN RESTORE REDUNDANCY ON db`
    ExplainRestoreRedundancy { db: String },
    /// `SNAPSHOT [DATABASE] db`
    SnapshotDatabase { db: String },
    /// `_SYNC_SNAPSHOT db`
    SyncSnapshot { db: String },
    /// Low-level partition commands (spec section 6).
    Partition(PartitionCommand),
    /// `[EXPLAIN] CLEAR ORPHAN DATABASES`
    ClearOrphanDatabases { explain: bool },
    /// `AGGREGATOR SET AS MASTER`
    AggregatorSetAsMaster,
    /// `PROMOTE AGGREGATOR 'host':port TO MASTER`
    PromoteAggregatorToMaster { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafTarget {
    One { host: String, port: u16 },
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RebalanceOptions {
    pub full: bool,
    pub force: bool,
    pub kill: bool,
    pub ensure_online_nodes: bool,
}

/// `<VERB> PARTITION db:ordinal {ON|TO} 'host':port [flags]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCommand {
    pub action: PartitionAction,
    pub db: String,
    pub ordinal: u32,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionAction {
    /// `CREATE PARTITION db:ord ON 'h':p`
    Create,
    /// `COPY PARTITION db:ord {TO|ON} 'h':p [FORCE]`
    Copy { force: bool },
    /// `PROMOTE PARTITION db:ord ON 'h':p [WITH DROP] [FORCE] [WITH REPOINT]`
    Promote { with_drop: bool, force: bool, with_repoint: bool },
    /// `DROP PARTITION db:ord ON 'h':p`
    Drop,
    /// `ATTACH PARTITION db:ord ON 'h':p`
    Attach,
    /// `DETACH PARTITION db:ord ON 'h':p`
    Detach,
}

/// Classifies one statement (no trailing `;` needed; whitespace and comments around it are fine).
pub fn parse_statement(sql: &str) -> Result<Statement, SqlError> {
    // The hot path: plain DML goes straight to sqlparser, skipping our own tokenizer (no cluster command or
    // statement of our own grammar starts with these words).
    if starts_with_dml_keyword(sql) {
        return parse_with_sqlparser(sql);
    }
    let mut cur = Cursor::new(sql)?;
    if cur.is_end() {
        return Err(SqlError::Parse("empty statement".to_string()));
    }
    if let Some(command) = cluster::parse(&mut cur)? {
        return Ok(Statement::Cluster(command));
    }
    if let Some(statement) = parse_own(&mut cur, sql)? {
        return Ok(statement);
    }
    parse_with_sqlparser(sql)
}

/// True when the first word of `sql` (after whitespace) is SELECT, INSERT, UPDATE, DELETE or REPLACE. Text that
/// starts with a comment takes the general path.
fn starts_with_dml_keyword(sql: &str) -> bool {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase();
    let rest = &sql.trim_start()[word.len()..];
    let boundary = rest.chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'));
    boundary && matches!(word.as_str(), "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "REPLACE")
}

/// The non-cluster statements Canopy parses itself. `Ok(None)` leaves the statement to sqlparser.
fn parse_own(cur: &mut Cursor, sql: &str) -> Result<Option<Statement>, SqlError> {
    if let Some(no_effect) = tools::parse(cur)? {
        return Ok(Some(Statement::NoEffect(no_effect)));
    }
    if let Some(account) = users::parse(cur)? {
        return Ok(Some(Statement::Account(account)));
    }
    let statement = if cur.peek_words(&["CREATE", "DATABASE"]) || cur.peek_words(&["CREATE", "SCHEMA"]) {
        create_database(cur)?
    } else if is_create_table(cur) {
        Statement::CreateTable(ddl::create_table(sql)?)
    } else if cur.peek_words(&["CREATE", "INDEX"]) || cur.peek_words(&["CREATE", "UNIQUE"]) {
        Statement::CreateIndex(create_index(cur)?)
    } else if is_alter_table_add_index(cur) {
        Statement::CreateIndex(alter_table_add_index(cur)?)
    } else if cur.peek_words(&["DROP", "DATABASE"]) || cur.peek_words(&["DROP", "SCHEMA"]) {
        cur.set_context("DROP DATABASE");
        cur.advance();
        cur.advance();
        let if_exists = cur.eat_words(&["IF", "EXISTS"]);
        let name = cur.expect_ident("a database name")?;
        cur.expect_end()?;
        Statement::DropDatabase { name, if_exists }
    } else if cur.peek_words(&["DROP", "TABLE"]) || cur.peek_words(&["DROP", "TABLES"]) {
        drop_table(cur)?
    } else if cur.peek_words(&["KILL"]) {
        cur.set_context("KILL");
        cur.advance();
        let query_only = cur.eat_word("QUERY");
        if !query_only {
            cur.eat_word("CONNECTION");
        }
        let id = cur.expect_integer("a connection id")?;
        cur.expect_end()?;
        Statement::Kill { id, query_only }
    } else if cur.peek_words(&["USE"]) {
        cur.set_context("USE");
        cur.advance();
        let db = cur.expect_ident("a database name")?;
        cur.expect_end()?;
        Statement::Use { db }
    } else if cur.peek_words(&["SHOW"]) {
        if let Some(filtered) = show_where(cur, sql)? {
            return Ok(Some(filtered));
        }
        match show(cur)? {
            Some(statement) => statement,
            None => return Ok(None),
        }
    } else if cur.peek_words(&["DESCRIBE"]) || cur.peek_words(&["DESC"]) || cur.peek_words(&["EXPLAIN"]) {
        match describe(cur) {
            Some(statement) => statement,
            None => return Ok(None),
        }
    } else if cur.peek_words(&["SET"]) {
        return set(cur);
    } else {
        return transaction(cur);
    };
    Ok(Some(statement))
}

fn is_create_table(cur: &Cursor) -> bool {
    if !cur.peek_words(&["CREATE"]) {
        return false;
    }
    // CREATE [ROWSTORE] [REFERENCE] [GLOBAL] [TEMPORARY] TABLE: claim it so SHARD KEY never reaches sqlparser.
    let mut i = 1;
    while let Some(t) = cur.peek_at(i) {
        if t.is_word("TABLE") {
            return true;
        }
        let prefix = ["ROWSTORE", "REFERENCE", "GLOBAL", "TEMPORARY", "COLUMNSTORE"];
        if !prefix.iter().any(|k| t.is_word(k)) {
            return false;
        }
        i += 1;
    }
    false
}

fn create_database(cur: &mut Cursor) -> Result<Statement, SqlError> {
    cur.set_context("CREATE DATABASE");
    cur.advance();
    cur.advance();
    let if_not_exists = cur.eat_words(&["IF", "NOT", "EXISTS"]);
    let name = cur.expect_ident("a database name")?;
    let (mut partitions, mut durability, mut replication) = (None, None, None);
    loop {
        if cur.eat_word("WITH") {
            // WITH {SYNC|ASYNC} {DURABILITY|REPLICATION} [{SYNC|ASYNC} {DURABILITY|REPLICATION}]
            let mut any = false;
            loop {
                let mode = if cur.eat_word("SYNC") {
                    SyncMode::Sync
                } else if cur.eat_word("ASYNC") {
                    SyncMode::Async
                } else if any {
                    break;
                } else {
                    return Err(cur.error("SYNC or ASYNC after WITH"));
                };
                if cur.eat_word("DURABILITY") {
                    durability = Some(mode);
                } else if cur.eat_word("REPLICATION") {
                    replication = Some(mode);
                } else {
                    return Err(cur.error("DURABILITY or REPLICATION"));
                }
                any = true;
            }
        } else if cur.eat_word("PARTITIONS") {
            cur.eat_punct('=');
            let n = cur.expect_u32("a partition count")?;
            if n == 0 {
                return Err(SqlError::Parse("CREATE DATABASE: PARTITIONS must be at least 1".to_string()));
            }
            partitions = Some(n);
        } else if cur.eat_word("DEFAULT") || cur.peek_words(&["CHARACTER"]) || cur.peek_words(&["CHARSET"]) {
            if cur.eat_words(&["CHARACTER", "SET"]) || cur.eat_word("CHARSET") || cur.eat_word("COLLATE") {
                cur.eat_punct('=');
                cur.expect_ident("a character set or collation name")?;
            } else {
                return Err(cur.error("CHARACTER SET or COLLATE"));
            }
        } else if cur.eat_word("COLLATE") {
            cur.eat_punct('=');
            cur.expect_ident("a collation name")?;
        } else if cur.is_end() {
            break;
        } else {
            return Err(cur.error("WITH, PARTITIONS, CHARACTER SET, COLLATE or end of statement"));
        }
    }
    Ok(Statement::CreateDatabase { name, if_not_exists, partitions, durability, replication })
}

/// `(col [ASC|DESC] [, ...])`; sort order is not kept (SQLite uses an index in either direction), so a `DESC` is
/// listed in `ignored`, as CREATE TABLE lists it (`ddl::Ignored`).
fn index_columns(cur: &mut Cursor, key: &str, ignored: &mut Vec<ddl::Ignored>) -> Result<Vec<String>, SqlError> {
    cur.expect_punct('(')?;
    let mut columns = Vec::new();
    let mut descending = false;
    loop {
        columns.push(cur.expect_ident("a column name")?);
        if cur.peek().is_some_and(|t| t.is_punct('(')) {
            return Err(SqlError::Unsupported("index prefix lengths such as col(10)".to_string()));
        }
        descending |= !cur.eat_word("ASC") && cur.eat_word("DESC");
        if !cur.eat_punct(',') {
            break;
        }
    }
    cur.expect_punct(')')?;
    if descending {
        ignored.push(ddl::Ignored::Clause(format!("DESC on key '{key}'")));
    }
    Ok(columns)
}

/// `USING {BTREE|HASH}` and `COMMENT 'x'`, accepted; `USING HASH` (every index is a B-tree) and the comment are
/// listed in `ignored`.
fn skip_index_options(cur: &mut Cursor, key: &str, ignored: &mut Vec<ddl::Ignored>) -> Result<(), SqlError> {
    loop {
        if cur.eat_word("USING") {
            if cur.eat_word("HASH") {
                ignored.push(ddl::Ignored::Clause(format!("USING HASH on key '{key}'")));
            } else if !cur.eat_word("BTREE") {
                return Err(cur.error("BTREE or HASH after USING"));
            }
        } else if cur.eat_word("COMMENT") {
            cur.expect_string("a quoted comment")?;
            ignored.push(ddl::Ignored::Clause(format!("COMMENT on key '{key}'")));
        } else {
            return Ok(());
        }
    }
}

fn create_index(cur: &mut Cursor) -> Result<CreateIndex, SqlError> {
    cur.set_context("CREATE INDEX");
    cur.advance();
    let unique = cur.eat_word("UNIQUE");
    cur.expect_word("INDEX")?;
    if cur.peek().is_some_and(|t| t.is_word("ON")) {
        return Err(cur.error("an index name"));
    }
    let name = cur.expect_ident("an index name")?;
    let mut ignored = Vec::new();
    skip_index_options(cur, &name, &mut ignored)?;
    cur.expect_word("ON")?;
    let (db, table) = cur.expect_qualified_name("a table name")?;
    ddl::check_table_name(&table)?;
    let columns = index_columns(cur, &name, &mut ignored)?;
    skip_index_options(cur, &name, &mut ignored)?;
    cur.expect_end()?;
    Ok(CreateIndex { db, table, name, unique, columns, ignored })
}

fn is_alter_table_add_index(cur: &Cursor) -> bool {
    if !cur.peek_words(&["ALTER", "TABLE"]) {
        return false;
    }
    // ALTER TABLE name [. name] ADD {UNIQUE|INDEX|KEY}
    let mut i = 3;
    if cur.peek_at(i).is_some_and(|t| t.is_punct('.')) {
        i += 2;
    }
    let add = cur.peek_at(i).is_some_and(|t| t.is_word("ADD"));
    let next = cur.peek_at(i + 1);
    add && next.is_some_and(|t| t.is_word("UNIQUE") || t.is_word("INDEX") || t.is_word("KEY"))
}

fn alter_table_add_index(cur: &mut Cursor) -> Result<CreateIndex, SqlError> {
    cur.set_context("ALTER TABLE ... ADD INDEX");
    cur.advance();
    cur.advance();
    let (db, table) = cur.expect_qualified_name("a table name")?;
    ddl::check_table_name(&table)?;
    cur.expect_word("ADD")?;
    let unique = cur.eat_word("UNIQUE");
    let keyword = cur.eat_word("INDEX") || cur.eat_word("KEY");
    if !unique && !keyword {
        return Err(cur.error("INDEX or KEY"));
    }
    let name = match cur.peek().map(|t| &t.kind) {
        Some(TokenKind::Word(w)) if !w.eq_ignore_ascii_case("USING") => Some(cur.expect_ident("an index name")?),
        Some(TokenKind::QuotedIdent(_)) => Some(cur.expect_ident("an index name")?),
        _ => None,
    };
    // The key's name in warnings: the name given, else MySQL's (its first column, known only once read).
    let shown = name.clone().unwrap_or_default();
    let mut ignored = Vec::new();
    skip_index_options(cur, &shown, &mut ignored)?;
    let columns = index_columns(cur, &shown, &mut ignored)?;
    skip_index_options(cur, &shown, &mut ignored)?;
    if cur.peek().is_some_and(|t| t.is_punct(',')) {
        return Err(SqlError::Unsupported("more than one change in one ALTER TABLE ... ADD INDEX".to_string()));
    }
    cur.expect_end()?;
    // MySQL names an unnamed index after its first column.
    let name = name.unwrap_or_else(|| columns[0].clone());
    if shown.is_empty() {
        let unnamed = "on key ''".to_string();
        for clause in &mut ignored {
            if let ddl::Ignored::Clause(text) = clause {
                *text = text.replace(&unnamed, &format!("on key '{name}'"));
            }
        }
    }
    Ok(CreateIndex { db, table, name, unique, columns, ignored })
}

fn drop_table(cur: &mut Cursor) -> Result<Statement, SqlError> {
    cur.set_context("DROP TABLE");
    cur.advance();
    cur.advance();
    let if_exists = cur.eat_words(&["IF", "EXISTS"]);
    let mut tables = Vec::new();
    loop {
        tables.push(cur.expect_qualified_name("a table name")?);
        if !cur.eat_punct(',') {
            break;
        }
    }
    let _ = cur.eat_word("RESTRICT") || cur.eat_word("CASCADE");
    cur.expect_end()?;
    Ok(Statement::DropTable { tables, if_exists })
}

/// `[LIKE 'pattern']` then the end of the statement.
fn optional_like(cur: &mut Cursor) -> Result<Option<String>, SqlError> {
    let like = if cur.eat_word("LIKE") { Some(cur.expect_string("a quoted pattern after LIKE")?) } else { None };
    cur.expect_end()?;
    Ok(like)
}

fn show(cur: &mut Cursor) -> Result<Option<Statement>, SqlError> {
    if let Some(catalog) = show::parse(cur)? {
        return Ok(Some(Statement::ShowCatalog(catalog)));
    }
    let is = |cur: &Cursor, words: &[&str]| {
        let mut all = vec!["SHOW"];
        all.extend_from_slice(words);
        cur.peek_words(&all)
    };
    let statement = if is(cur, &["DATABASES"]) || is(cur, &["SCHEMAS"]) {
        cur.set_context("SHOW DATABASES");
        cur.advance();
        cur.advance();
        let extended = cur.eat_word("EXTENDED");
        Statement::ShowDatabases { extended, like: optional_like(cur)? }
    } else if is(cur, &["TABLES"]) || is(cur, &["FULL", "TABLES"]) {
        cur.set_context("SHOW TABLES");
        cur.advance();
        let full = cur.eat_word("FULL");
        cur.advance();
        let db =
            if cur.eat_word("FROM") || cur.eat_word("IN") { Some(cur.expect_ident("a database name")?) } else { None };
        Statement::ShowTables { db, like: optional_like(cur)?, full }
    } else if ["COLUMNS", "FIELDS"].iter().any(|w| is(cur, &[w]) || is(cur, &["FULL", w])) {
        cur.set_context("SHOW COLUMNS");
        cur.advance();
        cur.eat_word("FULL");
        cur.advance();
        if !(cur.eat_word("FROM") || cur.eat_word("IN")) {
            return Err(cur.error("FROM or IN"));
        }
        let (mut db, table) = cur.expect_qualified_name("a table name")?;
        if cur.eat_word("FROM") || cur.eat_word("IN") {
            db = Some(cur.expect_ident("a database name")?);
        }
        cur.expect_end()?;
        Statement::Describe { db, table }
    } else if is(cur, &["CREATE", "TABLE"]) {
        cur.set_context("SHOW CREATE TABLE");
        cur.advance();
        cur.advance();
        cur.advance();
        let (db, table) = cur.expect_qualified_name("a table name")?;
        cur.expect_end()?;
        Statement::ShowCreateTable { db, table }
    } else if ["VARIABLES", "GLOBAL VARIABLES", "SESSION VARIABLES", "LOCAL VARIABLES"]
        .iter()
        .any(|w| is(cur, &w.split(' ').collect::<Vec<_>>()))
    {
        cur.set_context("SHOW VARIABLES");
        cur.advance();
        let global = cur.eat_word("GLOBAL");
        let _ = cur.eat_word("SESSION") || cur.eat_word("LOCAL");
        cur.advance();
        Statement::ShowVariables { global, like: optional_like(cur)? }
    } else {
        return Ok(None);
    };
    Ok(Some(statement))
}

/// `SHOW ... WHERE condition` (MySQL allows a WHERE on every listing SHOW): the SHOW before the first `WHERE` word
/// parsed as usual, the condition parsed as an expression and rendered for SQLite. `Ok(None)` without a WHERE, or
/// when the part before it is no SHOW of this grammar (the cursor is then untouched).
fn show_where(cur: &Cursor, sql: &str) -> Result<Option<Statement>, SqlError> {
    // An unquoted WHERE is always the keyword: a database or pattern named "where" is quoted or a string.
    let Some(at) = (0..).map_while(|i| cur.peek_at(i)).find(|t| t.is_word("WHERE")).map(|t| (t.start, t.end)) else {
        return Ok(None);
    };
    let mut before = Cursor::new(&sql[..at.0])?;
    let Some(show) = show(&mut before)? else { return Ok(None) };
    let text = sql[at.1..].trim().trim_end_matches(';');
    if text.trim().is_empty() {
        return Err(SqlError::Parse("SHOW ... WHERE: expected a condition after WHERE".to_string()));
    }
    let mut parser = Parser::new(&MySqlDialect {}).try_with_sql(text).map_err(|e| SqlError::from_sqlparser(&e))?;
    let condition = parser.parse_expr().map_err(|e| SqlError::from_sqlparser(&e))?;
    if parser.peek_token().token != sqlparser::tokenizer::Token::EOF {
        return Err(SqlError::Parse(format!("SHOW ... WHERE: unexpected text after the condition: {text}")));
    }
    Ok(Some(Statement::ShowWhere { show: Box::new(show), condition: crate::plan::render(&condition) }))
}

/// `DESCRIBE|DESC|EXPLAIN [db.]t` and nothing else; anything longer (`EXPLAIN SELECT ...`) is sqlparser's.
fn describe(cur: &mut Cursor) -> Option<Statement> {
    cur.advance();
    let name =
        |t: Option<&lexer::Token>| matches!(t.map(|t| &t.kind), Some(TokenKind::Word(_) | TokenKind::QuotedIdent(_)));
    let one = name(cur.peek()) && cur.peek_at(1).is_none();
    let two = name(cur.peek())
        && cur.peek_at(1).is_some_and(|t| t.is_punct('.'))
        && name(cur.peek_at(2))
        && cur.peek_at(3).is_none();
    if !(one || two) {
        return None;
    }
    let (db, table) = cur.expect_qualified_name("a table name").ok()?;
    Some(Statement::Describe { db, table })
}

/// A literal variable value (see the module doc), or `None` if the value is an expression.
fn set_value(cur: &mut Cursor) -> Option<Value> {
    let negative = cur.eat_punct('-');
    let token = cur.advance()?;
    let value = match token.kind {
        TokenKind::Number(n) => match n.parse::<i64>() {
            Ok(i) => Value::Integer(if negative { -i } else { i }),
            Err(_) => {
                let r: f64 = n.parse().ok()?;
                Value::Real(if negative { -r } else { r })
            }
        },
        _ if negative => return None,
        TokenKind::Str(s) | TokenKind::QuotedIdent(s) => Value::Text(s),
        TokenKind::Word(w) => match w.to_ascii_uppercase().as_str() {
            "ON" | "TRUE" => Value::Integer(1),
            "OFF" | "FALSE" => Value::Integer(0),
            "NULL" => Value::Null,
            "DEFAULT" => return None,
            _ => Value::Text(w),
        },
        TokenKind::Punct(_) => return None,
    };
    Some(value)
}

#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Global,
    Session,
}

/// One `[scope] name = value` of a SET; `Ok(None)` when it is not a plain system-variable assignment.
fn set_assignment(cur: &mut Cursor, scope: &mut Scope) -> Result<Option<(String, Value)>, SqlError> {
    if cur.eat_punct('@') {
        if !cur.eat_punct('@') {
            return Ok(None); // a user variable: sqlparser's
        }
        if cur.peek_at(1).is_some_and(|t| t.is_punct('.')) {
            if cur.eat_word("GLOBAL") {
                *scope = Scope::Global;
            } else if cur.eat_word("SESSION") || cur.eat_word("LOCAL") {
                *scope = Scope::Session;
            } else {
                return Err(cur.error("GLOBAL, SESSION or LOCAL before '.'"));
            }
            cur.advance();
        }
    } else if cur.eat_word("GLOBAL") {
        *scope = Scope::Global;
    } else if cur.eat_word("SESSION") || cur.eat_word("LOCAL") {
        *scope = Scope::Session;
    }
    let name = match cur.peek().map(|t| &t.kind) {
        Some(TokenKind::Word(_) | TokenKind::QuotedIdent(_)) => cur.expect_ident("a variable name")?,
        _ if *scope == Scope::Global => return Err(cur.error("a variable name")),
        _ => return Ok(None),
    };
    let assign = cur.eat_punct('=') || (cur.eat_punct(':') && cur.eat_punct('='));
    if !assign {
        if *scope == Scope::Global {
            return Err(cur.error("'='"));
        } else {
            return Ok(None);
        }
    }
    match set_value(cur) {
        Some(value) if cur.is_end() || cur.peek().is_some_and(|t| t.is_punct(',')) => {
            Ok(Some((name.to_ascii_lowercase(), value)))
        }
        _ if *scope == Scope::Global => Err(SqlError::Parse(format!(
            "SET GLOBAL: expected a literal value (number, quoted string, ON/OFF/TRUE/FALSE) for '{name}'"
        ))),
        _ => Ok(None),
    }
}

fn set(cur: &mut Cursor) -> Result<Option<Statement>, SqlError> {
    cur.set_context("SET");
    cur.advance();
    if cur.eat_word("NAMES") {
        let charset = match cur.advance().map(|t| t.kind) {
            Some(TokenKind::Word(w) | TokenKind::Str(w) | TokenKind::QuotedIdent(w)) => w,
            _ => return Err(cur.error("a character set name after SET NAMES")),
        };
        let collation = if cur.eat_word("COLLATE") {
            match cur.advance().map(|t| t.kind) {
                Some(TokenKind::Word(w) | TokenKind::Str(w) | TokenKind::QuotedIdent(w)) => Some(w),
                _ => return Err(cur.error("a collation name after COLLATE")),
            }
        } else {
            None
        };
        cur.expect_end()?;
        return Ok(Some(Statement::SetNames { charset, collation }));
    }
    if cur.peek_words(&["TRANSACTION"]) || cur.peek_words(&["CHARACTER"]) || cur.peek_words(&["PASSWORD"]) {
        return Ok(None);
    }
    let mut scope = Scope::Session;
    let mut assignments = Vec::new();
    let mut any_global = false;
    loop {
        let Some(assignment) = set_assignment(cur, &mut scope)? else { return Ok(None) };
        any_global |= scope == Scope::Global;
        assignments.push((assignment, scope));
        if !cur.eat_punct(',') {
            break;
        }
    }
    cur.expect_end()?;
    if any_global {
        if assignments.len() != 1 {
            return Err(SqlError::Unsupported("more than one variable in a SET GLOBAL statement".to_string()));
        }
        let ((name, value), _) = assignments.remove(0);
        return Ok(Some(Statement::SetGlobal { name, value }));
    }
    Ok(Some(Statement::SetSession { assignments: assignments.into_iter().map(|(a, _)| a).collect() }))
}

fn transaction(cur: &mut Cursor) -> Result<Option<Statement>, SqlError> {
    let statement = if cur.peek_words(&["BEGIN"]) {
        cur.set_context("BEGIN");
        cur.advance();
        cur.eat_word("WORK");
        Statement::Begin
    } else if cur.peek_words(&["START", "TRANSACTION"]) {
        cur.set_context("START TRANSACTION");
        cur.advance();
        cur.advance();
        if !cur.is_end() {
            loop {
                let mode = cur.eat_words(&["READ", "ONLY"])
                    || cur.eat_words(&["READ", "WRITE"])
                    || cur.eat_words(&["WITH", "CONSISTENT", "SNAPSHOT"]);
                if !mode {
                    return Err(cur.error("READ ONLY, READ WRITE or WITH CONSISTENT SNAPSHOT"));
                }
                if !cur.eat_punct(',') {
                    break;
                }
            }
        }
        Statement::Begin
    } else if cur.peek_words(&["COMMIT"]) {
        cur.set_context("COMMIT");
        cur.advance();
        cur.eat_word("WORK");
        Statement::Commit
    } else if cur.peek_words(&["ROLLBACK"]) {
        cur.set_context("ROLLBACK");
        cur.advance();
        cur.eat_word("WORK");
        if cur.eat_word("TO") {
            cur.eat_word("SAVEPOINT");
            Statement::Savepoint(Savepoint::RollbackTo(cur.expect_ident("a savepoint name")?))
        } else {
            Statement::Rollback
        }
    } else if cur.peek_words(&["SAVEPOINT"]) {
        cur.set_context("SAVEPOINT");
        cur.advance();
        Statement::Savepoint(Savepoint::Set(cur.expect_ident("a savepoint name")?))
    } else if cur.peek_words(&["RELEASE", "SAVEPOINT"]) {
        cur.set_context("RELEASE SAVEPOINT");
        cur.advance();
        cur.advance();
        Statement::Savepoint(Savepoint::Release(cur.expect_ident("a savepoint name")?))
    } else {
        return Ok(None);
    };
    cur.expect_end()?;
    Ok(Some(statement))
}

fn parse_with_sqlparser(sql: &str) -> Result<Statement, SqlError> {
    use sqlparser::ast::Statement as Ast;
    let mut statements = Parser::parse_sql(&MySqlDialect {}, sql).map_err(|e| SqlError::from_sqlparser(&e))?;
    if statements.len() != 1 {
        return Err(SqlError::Parse(format!("expected exactly one statement, found {}", statements.len())));
    }
    let statement = statements.remove(0);
    let is_query = |s: &Ast| matches!(s, Ast::Query(_) | Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_));
    let query = match &statement {
        Ast::Explain { statement: inner, .. } => is_query(inner),
        other => is_query(other),
    };
    if !query {
        check_renamed_tables(&statement)?;
        return Ok(Statement::Other(Box::new(statement)));
    }
    if let Some(kind) = statement_inside_query(&statement) {
        // sqlparser reads `WITH c AS (...) DELETE ...` as a query whose body is a DELETE; the planner would run it
        // on a scratch copy (or one reference copy) and report success without changing the table.
        return Err(SqlError::Unsupported(format!("WITH ... {kind} (a {kind} inside a query)")));
    }
    Ok(Statement::Query(Box::new(statement)))
}

/// Refuses a rename (`RENAME TABLE a TO b`, `ALTER TABLE a RENAME [TO|AS] b`) into the reserved table namespace, so
/// the refusal stays clear whenever renames become supported.
fn check_renamed_tables(statement: &sqlparser::ast::Statement) -> Result<(), SqlError> {
    use sqlparser::ast::{AlterTableOperation, ObjectName, RenameTableNameKind, Statement as Ast};
    let check = |name: &ObjectName| match name.0.last().and_then(|part| part.as_ident()) {
        Some(ident) => ddl::check_table_name(&ident.value),
        None => Ok(()),
    };
    match statement {
        Ast::RenameTable(renames) => renames.iter().try_for_each(|r| check(&r.new_name)),
        Ast::AlterTable(alter) => alter.operations.iter().try_for_each(|op| match op {
            AlterTableOperation::RenameTable {
                table_name: RenameTableNameKind::As(name) | RenameTableNameKind::To(name),
            } => check(name),
            _ => Ok(()),
        }),
        _ => Ok(()),
    }
}

/// The kind (`DELETE`, `UPDATE`, `INSERT`, `MERGE`...) of the first statement nested inside a query of `statement`:
/// the body of a WITH, a set operation's side or a subquery. A query only reads; Canopy plans such a body as a read.
pub(crate) fn statement_inside_query(statement: &sqlparser::ast::Statement) -> Option<&'static str> {
    use sqlparser::ast::{Query, Statement as Ast, Visit, Visitor};
    use std::ops::ControlFlow;
    /// Counts the queries being visited, so a statement met while the count is positive is inside one.
    struct Inside {
        depth: usize,
    }
    impl Visitor for Inside {
        type Break = &'static str;
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<&'static str> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<&'static str> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_statement(&mut self, statement: &Ast) -> ControlFlow<&'static str> {
            if self.depth == 0 || matches!(statement, Ast::Query(_)) {
                return ControlFlow::Continue(());
            }
            ControlFlow::Break(match statement {
                Ast::Insert(_) => "INSERT",
                Ast::Update(_) => "UPDATE",
                Ast::Delete(_) => "DELETE",
                Ast::Merge(_) => "MERGE",
                _ => "statement",
            })
        }
    }
    match statement.visit(&mut Inside { depth: 0 }) {
        ControlFlow::Break(kind) => Some(kind),
        ControlFlow::Continue(()) => None,
    }
}
