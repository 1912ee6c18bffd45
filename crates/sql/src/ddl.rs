//! MySQL/SingleStore `CREATE TABLE` and `CREATE INDEX` turned into a [`TableDef`]: SQLite DDL for the leaves, the
//! shard key, and the MySQL-looking views of the table (`DESCRIBE`, `SHOW CREATE TABLE`). It owns the shard-key rules
//! and the DDL text; the type mapping itself is `types`, and it touches no catalog (whether the table or database
//! exists is the server's question).
//!
//! How a `CREATE TABLE` is read:
//! 1. The SingleStore-only clauses are cut out with Canopy's tokenizer, because sqlparser cannot represent them (it
//!    reads `SHARD KEY (id)` as a column named SHARD): `REFERENCE`/`ROWSTORE` after CREATE, `SHARD [KEY] [name]
//!    (cols)` (`SHARD KEY ()` means keyless), `SORT KEY (...)`, `KEY (...) USING CLUSTERED COLUMNSTORE`, and the
//!    `SIGNED`/`ZEROFILL` type modifiers.
//! 2. sqlparser (`MySqlDialect`) parses the rest.
//! 3. The definition is checked and the SQLite text generated.
//!
//! `AUTO_INCREMENT=n` is kept (`CreateTable::auto_increment`: the first value to generate, which a dump carries).
//! Accepted and dropped without effect, out of MySQL habit: every other table option (`ENGINE=`, `[DEFAULT] CHARSET`,
//! `CHARACTER SET`, `COLLATE`, `COMMENT`, `ROW_FORMAT`...), column `CHARACTER SET`/`COLLATE`/
//! `COMMENT`, `ON UPDATE ...`, `UNSIGNED`/`ZEROFILL`, display widths, index `USING BTREE|HASH`, index column
//! `ASC`/`DESC`, index `COMMENT`, SingleStore's `SORT KEY` and columnstore keys. Each of them that changes what the
//! table does or shows is listed in `CreateTable::ignored` (the server raises a warning for each): an engine other
//! than Canopy's, a character set other than UTF-8, a collation other than the binary one text compares with, a
//! comment, `ON UPDATE`, `ZEROFILL`, `USING HASH`, `DESC` key parts, and every other table option. What Canopy does
//! anyway is not listed: `CHARSET=utf8mb4`, `COLLATE utf8mb4_bin`, `USING BTREE`, `ROWSTORE`, `UNSIGNED` (kept in
//! the type as written; its range is not enforced, as docs/sql.md says) and display widths. Rejected as `Unsupported`: `FOREIGN KEY`/`REFERENCES`, `CHECK`, generated columns, `FULLTEXT`/`SPATIAL`
//! keys, index prefix lengths, temporary tables, `CREATE TABLE ... LIKE` and `... AS SELECT`, defaults other than
//! literals and the current date/time.
//!
//! Shard-key rules (SingleStore's): the shard key is the `SHARD KEY` columns, else the primary key, else the first
//! UNIQUE key whose columns are all NOT NULL (the key InnoDB takes as the primary key of such a table), else empty
//! (rows spread evenly). In a distributed table every PRIMARY KEY and UNIQUE key must contain all shard-key columns, and a
//! table with an empty shard key can have no unique key at all, since uniqueness is only enforced inside a partition.
//! Reference tables have no shard key and may not declare one.
//!
//! Generated SQLite: identifiers in double quotes; primary key as a table constraint (so a one-column integer key
//! is declared `INTEGER` and becomes the rowid alias); never `AUTOINCREMENT` (the aggregator assigns auto-increment
//! values); every other key, UNIQUE ones included, as `CREATE [UNIQUE] INDEX "<table>__<key>"` in `index_sql`, since
//! SQLite index names are per database. Unnamed keys get MySQL's name: the first column, then `_2`, `_3`...

use sqlparser::ast::{self as ast, ColumnOption, Expr, TableConstraint, UnaryOperator};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::catalog::{Affinity, ColumnDef, TableDef, TableKind};
use crate::error::SqlError;
use crate::lexer::{Cursor, Token, TokenKind, tokenize};
use crate::types::sqlite_decl_type;
use crate::value::Value;

/// The prefix of Canopy's own tables inside every partition file (`_canopy_log`, `_canopy_settings`...). Their rows
/// are never written to the change log, so a user table with this prefix would lose its writes in a partition move:
/// no user table may be named so (compared case-insensitively, as SQLite compares table names).
pub const INTERNAL_TABLE_PREFIX: &str = "_canopy_";

/// Refuses a user table name in Canopy's reserved namespace.
pub fn check_table_name(name: &str) -> Result<(), SqlError> {
    let prefix = INTERNAL_TABLE_PREFIX.len();
    let reserved = name.len() >= prefix
        && name.is_char_boundary(prefix)
        && name[..prefix].eq_ignore_ascii_case(INTERNAL_TABLE_PREFIX);
    if reserved { Err(SqlError::ReservedTableName { name: name.to_string() }) } else { Ok(()) }
}

/// A parsed `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    /// The database qualifier (`db.t`), if written.
    pub db: Option<String>,
    pub if_not_exists: bool,
    pub def: TableDef,
    /// The table option `AUTO_INCREMENT=n` of a table with an AUTO_INCREMENT column: the first value to generate
    /// (a dump's CREATE TABLE carries its source's next value, so loaded rows are never generated again).
    pub auto_increment: Option<i64>,
    /// What the statement wrote that Canopy accepts and does not act on: the SingleStore clauses and type
    /// modifiers cut before parsing, then table options, then column and key clauses.
    pub ignored: Vec<Ignored>,
}

/// One clause of a CREATE TABLE that Canopy accepted and dropped. The server turns each into a MySQL warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// `ENGINE=name` naming another engine than Canopy's: every table is SQLite partitions.
    Engine(String),
    /// Any other clause, as it reads in the warning: `ROW_FORMAT=COMPRESSED`, `COLLATE utf8mb4_general_ci on
    /// column 'name'`, `SORT KEY`...
    Clause(String),
}

/// The engine name Canopy's tables have (SHOW ENGINES, INFORMATION_SCHEMA.TABLES); `ENGINE=Canopy` is no warning.
pub const ENGINE: &str = "Canopy";

/// A parsed `CREATE [UNIQUE] INDEX` or `ALTER TABLE ... ADD [UNIQUE] INDEX|KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateIndex {
    pub db: Option<String>,
    pub table: String,
    /// The index name as the user knows it (MySQL's first-column name when unnamed; not de-duplicated against the
    /// table's existing keys).
    pub name: String,
    pub unique: bool,
    pub columns: Vec<String>,
    /// The clauses Canopy accepted and dropped (`USING HASH`, `COMMENT`, `DESC`), as for CREATE TABLE.
    pub ignored: Vec<Ignored>,
}

impl CreateIndex {
    /// The SQLite statement, in the same form as [`TableDef::index_sql`] entries.
    pub fn index_sql(&self) -> String {
        index_statement(&self.table, &self.name, self.unique, &self.columns)
    }

    /// The SQLite statement that removes this index where it exists (undoing a CREATE INDEX that failed on some
    /// partitions, or clearing what such a failure left before a retry).
    pub fn drop_index_sql(&self) -> String {
        format!("DROP INDEX IF EXISTS {}", crate::quote::ident(&format!("{}__{}", self.table, self.name)))
    }

    /// Checks the index against the table: the columns exist (canonical names are returned in a copy) and a unique
    /// index obeys the shard-key rule.
    pub fn resolve(&self, def: &TableDef) -> Result<CreateIndex, SqlError> {
        let columns =
            self.columns.iter().map(|c| canonical_column(def, c)).collect::<Result<Vec<String>, SqlError>>()?;
        let existing = index_keys(def);
        if existing.iter().any(|k| k.name.eq_ignore_ascii_case(&self.name)) || self.name.eq_ignore_ascii_case("PRIMARY")
        {
            return Err(SqlError::Parse(format!("Duplicate key name '{}'", self.name)));
        }
        if self.unique {
            check_unique_key(def.kind, &def.shard_key, &self.name, &columns)?;
        }
        Ok(CreateIndex { columns, ..self.clone() })
    }
}

/// One key of a table while it is being built.
/// A secondary key of a table (an index): its name as the user gave it, uniqueness and columns in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub unique: bool,
    pub columns: Vec<String>,
}

/// What step 1 (the tokenizer pass) found and cut out.
struct Stripped {
    sql: String,
    reference: bool,
    /// `Some(vec![])` for `SHARD KEY ()`.
    shard_key: Option<Vec<String>>,
    /// The SingleStore-only clauses cut out that Canopy does not act on.
    ignored: Vec<Ignored>,
}

/// Parses `CREATE [ROWSTORE] [REFERENCE] TABLE [IF NOT EXISTS] [db.]t (...) [options]`.
pub fn create_table(sql: &str) -> Result<CreateTable, SqlError> {
    let stripped = strip_singlestore_clauses(sql)?;
    let mut statements =
        Parser::parse_sql(&MySqlDialect {}, &stripped.sql).map_err(|e| SqlError::from_sqlparser(&e))?;
    if statements.len() != 1 {
        return Err(SqlError::Parse("expected exactly one CREATE TABLE statement".to_string()));
    }
    let ast::Statement::CreateTable(ct) = statements.remove(0) else {
        return Err(SqlError::Parse("expected CREATE TABLE".to_string()));
    };
    if ct.query.is_some() {
        return Err(SqlError::Unsupported("CREATE TABLE ... AS SELECT".to_string()));
    }
    if ct.like.is_some() || ct.clone.is_some() {
        return Err(SqlError::Unsupported("CREATE TABLE ... LIKE".to_string()));
    }
    if ct.temporary || ct.global.is_some() {
        return Err(SqlError::Unsupported("temporary tables".to_string()));
    }
    if ct.columns.is_empty() {
        return Err(SqlError::Parse("a table must have at least one column".to_string()));
    }
    let (db, name) = split_name(&ct.name)?;
    check_table_name(&name)?;
    let kind = if stripped.reference { TableKind::Reference } else { TableKind::Distributed };
    let mut ignored = stripped.ignored;
    ignored.extend(ignored_table_options(&ct.table_options));

    let mut columns: Vec<ColumnDef> = Vec::with_capacity(ct.columns.len());
    let mut primary_key: Option<Vec<String>> = None;
    let mut keys: Vec<(Option<String>, Key)> = Vec::new();
    for column in &ct.columns {
        let (def, column_keys) = column_def(column, &mut ignored)?;
        if columns.iter().any(|c| c.name.eq_ignore_ascii_case(&def.name)) {
            return Err(SqlError::Parse(format!("Duplicate column name '{}'", def.name)));
        }
        for (primary, unique) in column_keys {
            if primary {
                set_primary_key(&mut primary_key, vec![def.name.clone()])?;
            } else if unique {
                keys.push((None, Key { name: String::new(), unique: true, columns: vec![def.name.clone()] }));
            }
        }
        columns.push(def);
    }
    for constraint in &ct.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                note_index_clauses("PRIMARY", pk.index_type.as_ref(), &pk.index_options, &pk.columns, &mut ignored);
                let cols = index_column_names(&pk.columns)?;
                set_primary_key(&mut primary_key, cols)?;
            }
            TableConstraint::Unique(u) => {
                let explicit = u.index_name.as_ref().or(u.name.as_ref()).map(|i| i.value.clone());
                let shown = explicit.clone().unwrap_or_else(|| first_column_name(&u.columns));
                note_index_clauses(&shown, u.index_type.as_ref(), &u.index_options, &u.columns, &mut ignored);
                keys.push((
                    explicit,
                    Key { name: String::new(), unique: true, columns: index_column_names(&u.columns)? },
                ));
            }
            TableConstraint::Index(i) => {
                let explicit = i.name.as_ref().map(|i| i.value.clone());
                let shown = explicit.clone().unwrap_or_else(|| first_column_name(&i.columns));
                note_index_clauses(&shown, i.index_type.as_ref(), &i.index_options, &i.columns, &mut ignored);
                keys.push((
                    explicit,
                    Key { name: String::new(), unique: false, columns: index_column_names(&i.columns)? },
                ));
            }
            TableConstraint::ForeignKey(_) => return Err(SqlError::Unsupported("FOREIGN KEY constraints".to_string())),
            TableConstraint::Check(_) => return Err(SqlError::Unsupported("CHECK constraints".to_string())),
            TableConstraint::FulltextOrSpatial(_) => {
                return Err(SqlError::Unsupported("FULLTEXT and SPATIAL keys".to_string()));
            }
            other => return Err(SqlError::Unsupported(format!("table constraint `{other}`"))),
        }
    }

    let table_probe = TableDef {
        name: name.clone(),
        kind,
        columns,
        primary_key: Vec::new(),
        shard_key: Vec::new(),
        create_sql: String::new(),
        index_sql: Vec::new(),
    };
    let canonical =
        |cols: &[String]| cols.iter().map(|c| canonical_column(&table_probe, c)).collect::<Result<Vec<_>, _>>();
    let primary_key = canonical(&primary_key.unwrap_or_default())?;
    let mut named: Vec<Key> = Vec::new();
    for (explicit, key) in keys {
        let columns = canonical(&key.columns)?;
        let name = match explicit {
            Some(n) => {
                if n.eq_ignore_ascii_case("PRIMARY") || named.iter().any(|k| k.name.eq_ignore_ascii_case(&n)) {
                    return Err(SqlError::Parse(format!("Duplicate key name '{n}'")));
                }
                n
            }
            None => generated_key_name(&named, &columns[0]),
        };
        named.push(Key { name, unique: key.unique, columns });
    }

    let shard_key = match (kind, stripped.shard_key) {
        (TableKind::Reference, Some(_)) => {
            return Err(SqlError::Parse("a REFERENCE table cannot have a SHARD KEY".to_string()));
        }
        (TableKind::Reference, None) => Vec::new(),
        (TableKind::Distributed, Some(cols)) => canonical(&cols)?,
        (TableKind::Distributed, None) if !primary_key.is_empty() => primary_key.clone(),
        (TableKind::Distributed, None) => {
            let not_null = |c: &String| table_probe.columns.iter().any(|d| &d.name == c && !d.nullable);
            let implicit = named.iter().find(|k| k.unique && k.columns.iter().all(not_null));
            implicit.map(|k| k.columns.clone()).unwrap_or_default()
        }
    };
    if !primary_key.is_empty() {
        check_unique_key(kind, &shard_key, "PRIMARY", &primary_key)?;
    }
    for key in named.iter().filter(|k| k.unique) {
        check_unique_key(kind, &shard_key, &key.name, &key.columns)?;
    }

    let mut columns = table_probe.columns;
    for column in &mut columns {
        // MySQL makes primary-key columns NOT NULL; SQLite would otherwise allow NULL in a non-integer key.
        if primary_key.iter().any(|k| k == &column.name) {
            column.nullable = false;
        }
    }
    let create_sql = create_statement(&name, &columns, &primary_key);
    let index_sql = named.iter().map(|k| index_statement(&name, &k.name, k.unique, &k.columns)).collect();
    let def = TableDef { name, kind, columns, primary_key, shard_key, create_sql, index_sql };
    let auto_increment = def.auto_increment_column().and(auto_increment_option(&ct.table_options));
    Ok(CreateTable { db, if_not_exists: ct.if_not_exists, def, auto_increment, ignored })
}

/// The table options Canopy does not act on: everything but `AUTO_INCREMENT`, `ENGINE=Canopy` and UTF-8 with the
/// binary collation.
fn ignored_table_options(options: &ast::CreateTableOptions) -> Vec<Ignored> {
    use ast::CreateTableOptions as O;
    let (O::Plain(list) | O::With(list) | O::Options(list) | O::TableProperties(list)) = options else {
        return Vec::new();
    };
    let mut ignored = Vec::new();
    for option in list {
        match option {
            ast::SqlOption::NamedParenthesizedList(engine) if engine.key.value.eq_ignore_ascii_case("ENGINE") => {
                let name = engine.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
                if !name.eq_ignore_ascii_case(ENGINE) {
                    ignored.push(Ignored::Engine(name));
                }
            }
            ast::SqlOption::KeyValue { key, value } => {
                let key = key.value.to_ascii_uppercase();
                let value = option_value(value);
                let honoured = match key.as_str() {
                    "AUTO_INCREMENT" => true,
                    "CHARSET" | "DEFAULT CHARSET" | "CHARACTER SET" | "DEFAULT CHARACTER SET" => is_utf8(&value),
                    "COLLATE" | "DEFAULT COLLATE" => is_binary_collation(&value),
                    _ => false,
                };
                if !honoured {
                    ignored.push(Ignored::Clause(format!("{key}={value}")));
                }
            }
            ast::SqlOption::Comment(_) => ignored.push(Ignored::Clause("COMMENT".to_string())),
            other => ignored.push(Ignored::Clause(other.to_string())),
        }
    }
    ignored
}

/// An option's value as written, without the quotes of a string.
fn option_value(value: &Expr) -> String {
    match value {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// A character set or collation name as written (unquoted).
fn object_name(name: &ast::ObjectName) -> String {
    name.0.iter().map(|p| p.as_ident().map_or_else(|| p.to_string(), |i| i.value.clone())).collect::<Vec<_>>().join(".")
}

/// Text is stored as UTF-8, so these character sets are what Canopy does.
fn is_utf8(charset: &str) -> bool {
    ["utf8mb4", "utf8", "utf8mb3"].iter().any(|c| charset.eq_ignore_ascii_case(c))
}

/// Text compares bytewise (docs/sql.md, "Collation"): these collations are what Canopy does.
fn is_binary_collation(collation: &str) -> bool {
    ["utf8mb4_bin", "utf8_bin", "utf8mb3_bin", "binary"].iter().any(|c| collation.eq_ignore_ascii_case(c))
}

/// The clauses of a key that Canopy drops: `USING HASH` (every index is a B-tree), `COMMENT`, `DESC` key parts
/// (keys are stored ascending).
fn note_index_clauses(
    key: &str,
    index_type: Option<&ast::IndexType>,
    options: &[ast::IndexOption],
    columns: &[ast::IndexColumn],
    ignored: &mut Vec<Ignored>,
) {
    let types = index_type.into_iter().chain(options.iter().filter_map(|o| match o {
        ast::IndexOption::Using(t) => Some(t),
        ast::IndexOption::Comment(_) => None,
    }));
    for t in types {
        if !matches!(t, ast::IndexType::BTree) {
            ignored.push(Ignored::Clause(format!("USING {t} on key '{key}'")));
        }
    }
    if options.iter().any(|o| matches!(o, ast::IndexOption::Comment(_))) {
        ignored.push(Ignored::Clause(format!("COMMENT on key '{key}'")));
    }
    if columns.iter().any(|c| matches!(c.column.options.sort, Some(ast::OrderBySort::Desc))) {
        ignored.push(Ignored::Clause(format!("DESC on key '{key}'")));
    }
}

/// The first column of a key as written (MySQL names an unnamed key after it).
fn first_column_name(columns: &[ast::IndexColumn]) -> String {
    match columns.first().map(|c| &c.column.expr) {
        Some(Expr::Identifier(ident)) => ident.value.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The value of the table option `AUTO_INCREMENT [=] n`, when it is a positive integer.
fn auto_increment_option(options: &ast::CreateTableOptions) -> Option<i64> {
    use ast::CreateTableOptions as O;
    let (O::Plain(list) | O::With(list) | O::Options(list) | O::TableProperties(list)) = options else { return None };
    list.iter().find_map(|option| match option {
        ast::SqlOption::KeyValue { key, value } if key.value.eq_ignore_ascii_case("AUTO_INCREMENT") => {
            value.to_string().parse::<i64>().ok().filter(|n| *n > 0)
        }
        _ => None,
    })
}

fn set_primary_key(slot: &mut Option<Vec<String>>, columns: Vec<String>) -> Result<(), SqlError> {
    if slot.is_some() {
        return Err(SqlError::Parse("Multiple primary key defined".to_string()));
    }
    *slot = Some(columns);
    Ok(())
}

/// MySQL's name for an unnamed key: its first column, then `_2`, `_3`... until unused.
fn generated_key_name(existing: &[Key], first_column: &str) -> String {
    let taken = |n: &str| n.eq_ignore_ascii_case("PRIMARY") || existing.iter().any(|k| k.name.eq_ignore_ascii_case(n));
    if !taken(first_column) {
        return first_column.to_string();
    }
    (2..).map(|i| format!("{first_column}_{i}")).find(|n| !taken(n)).expect("an unbounded range always finds a name")
}

/// A PRIMARY or UNIQUE key of a distributed table must contain every shard-key column; with no shard key, no unique
/// key can be enforced.
fn check_unique_key(kind: TableKind, shard_key: &[String], key: &str, columns: &[String]) -> Result<(), SqlError> {
    if kind == TableKind::Reference {
        return Ok(());
    }
    let covered = !shard_key.is_empty() && shard_key.iter().all(|s| columns.iter().any(|c| c.eq_ignore_ascii_case(s)));
    if covered { Ok(()) } else { Err(SqlError::UniqueKeyWithoutShardKey { key: key.to_string() }) }
}

fn canonical_column(def: &TableDef, name: &str) -> Result<String, SqlError> {
    def.column(name)
        .map(|c| c.name.clone())
        .ok_or_else(|| SqlError::UnknownColumn { table: def.name.clone(), column: name.to_string() })
}

fn split_name(name: &ast::ObjectName) -> Result<(Option<String>, String), SqlError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.clone()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| SqlError::Parse(format!("invalid table name {name}")))?;
    match parts.as_slice() {
        [table] => Ok((None, table.clone())),
        [db, table] => Ok((Some(db.clone()), table.clone())),
        _ => Err(SqlError::Parse(format!("invalid table name {name}"))),
    }
}

fn index_column_names(columns: &[ast::IndexColumn]) -> Result<Vec<String>, SqlError> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            Expr::Identifier(ident) => Ok(ident.value.clone()),
            other => Err(SqlError::Unsupported(format!("index on `{other}` (only plain columns can be indexed)"))),
        })
        .collect()
}

/// One column and its inline keys as `(primary, unique)` flags; the column options Canopy drops go to `ignored`.
fn column_def(column: &ast::ColumnDef, ignored: &mut Vec<Ignored>) -> Result<(ColumnDef, Vec<(bool, bool)>), SqlError> {
    let name = column.name.value.clone();
    let mut mysql_type = lower_outside_quotes(&column.data_type.to_string());
    // MySQL's SERIAL is shorthand for BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE.
    let serial = mysql_type == "serial";
    if serial {
        mysql_type = "bigint unsigned".to_string();
    }
    let decl_type = sqlite_decl_type(&mysql_type)?.to_string();
    let affinity = Affinity::of_decl_type(&decl_type);
    let mut def =
        ColumnDef { name, decl_type, mysql_type, affinity, nullable: !serial, auto_increment: serial, default: None };
    let mut keys = if serial { vec![(false, true)] } else { Vec::new() };
    for option in &column.options {
        match &option.option {
            ColumnOption::Null => def.nullable = true,
            ColumnOption::NotNull => def.nullable = false,
            ColumnOption::Default(expr) => def.default = default_sql(expr)?,
            ColumnOption::PrimaryKey(_) => keys.push((true, false)),
            ColumnOption::Unique(_) => keys.push((false, true)),
            ColumnOption::DialectSpecific(tokens)
                if tokens.iter().any(|t| t.to_string().eq_ignore_ascii_case("AUTO_INCREMENT")) =>
            {
                def.auto_increment = true;
            }
            ColumnOption::CharacterSet(charset) if !is_utf8(&object_name(charset)) => ignored
                .push(Ignored::Clause(format!("CHARACTER SET {} on column '{}'", object_name(charset), def.name))),
            ColumnOption::Collation(collation) if !is_binary_collation(&object_name(collation)) => {
                ignored.push(Ignored::Clause(format!("COLLATE {} on column '{}'", object_name(collation), def.name)))
            }
            ColumnOption::CharacterSet(_) | ColumnOption::Collation(_) => {}
            ColumnOption::Comment(_) => ignored.push(Ignored::Clause(format!("COMMENT on column '{}'", def.name))),
            ColumnOption::OnUpdate(expr) => {
                ignored.push(Ignored::Clause(format!("ON UPDATE {expr} on column '{}'", def.name)))
            }
            ColumnOption::ForeignKey(_) => {
                return Err(SqlError::Unsupported("FOREIGN KEY constraints (REFERENCES)".to_string()));
            }
            ColumnOption::Check(_) => return Err(SqlError::Unsupported("CHECK constraints".to_string())),
            ColumnOption::Generated { .. }
            | ColumnOption::Materialized(_)
            | ColumnOption::Alias(_)
            | ColumnOption::Ephemeral(_) => {
                return Err(SqlError::Unsupported(format!("generated column '{}'", def.name)));
            }
            other => return Err(SqlError::Unsupported(format!("column option `{other}` on '{}'", def.name))),
        }
    }
    Ok((def, keys))
}

/// A DEFAULT as SQLite SQL; `None` for `DEFAULT NULL` (the same as no default).
fn default_sql(expr: &Expr) -> Result<Option<String>, SqlError> {
    let unsupported = || SqlError::Unsupported(format!("DEFAULT {expr} (only literals and the current date/time)"));
    let sql = match expr {
        Expr::Nested(inner) => return default_sql(inner),
        Expr::Value(v) => match &v.value {
            ast::Value::Null => return Ok(None),
            ast::Value::Number(n, _) => n.clone(),
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => crate::quote::literal(s),
            ast::Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
            ast::Value::HexStringLiteral(h) => format!("X'{h}'"),
            _ => return Err(unsupported()),
        },
        Expr::UnaryOp { op, expr: inner } => match (op, inner.as_ref()) {
            (UnaryOperator::Minus, Expr::Value(v)) => match &v.value {
                ast::Value::Number(n, _) => format!("-{n}"),
                _ => return Err(unsupported()),
            },
            (UnaryOperator::Plus, Expr::Value(v)) => match &v.value {
                ast::Value::Number(n, _) => n.clone(),
                _ => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        },
        Expr::Function(f) => current_time_default(&f.name.to_string()).ok_or_else(unsupported)?,
        Expr::Identifier(i) => current_time_default(&i.value).ok_or_else(unsupported)?,
        _ => return Err(unsupported()),
    };
    Ok(Some(sql))
}

/// MySQL's current-time functions as SQLite's keywords (SQLite's are UTC; fractional-second precision is dropped).
fn current_time_default(name: &str) -> Option<String> {
    let keyword = match name.to_ascii_uppercase().as_str() {
        "CURRENT_TIMESTAMP" | "NOW" | "LOCALTIME" | "LOCALTIMESTAMP" => "CURRENT_TIMESTAMP",
        "CURRENT_DATE" | "CURDATE" => "CURRENT_DATE",
        "CURRENT_TIME" | "CURTIME" => "CURRENT_TIME",
        _ => return None,
    };
    Some(keyword.to_string())
}

fn lower_outside_quotes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {
                out.push(c.to_ascii_lowercase());
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn create_statement(table: &str, columns: &[ColumnDef], primary_key: &[String]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut s = format!("{} {}", crate::quote::ident(&c.name), c.decl_type);
            if !c.nullable {
                s.push_str(" NOT NULL");
            }
            if let Some(d) = &c.default {
                s.push_str(" DEFAULT ");
                s.push_str(d);
            }
            s
        })
        .collect();
    if !primary_key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", quoted_list(primary_key)));
    }
    format!("CREATE TABLE {} ({})", crate::quote::ident(table), parts.join(", "))
}

fn quoted_list(columns: &[String]) -> String {
    columns.iter().map(|c| crate::quote::ident(c)).collect::<Vec<_>>().join(", ")
}

fn index_statement(table: &str, name: &str, unique: bool, columns: &[String]) -> String {
    format!(
        "CREATE {}INDEX {} ON {} ({})",
        if unique { "UNIQUE " } else { "" },
        crate::quote::ident(&format!("{table}__{name}")),
        crate::quote::ident(table),
        quoted_list(columns)
    )
}

/// The secondary keys of a table (not its primary key), read back from its `index_sql` (which this module wrote).
pub fn index_keys(def: &TableDef) -> Vec<Key> {
    def.index_sql.iter().filter_map(|sql| parse_index_statement(&def.name, sql)).collect()
}

fn parse_index_statement(table: &str, sql: &str) -> Option<Key> {
    let tokens = tokenize(sql).ok()?;
    let mut it = tokens.iter().peekable();
    it.next().filter(|t| t.is_word("CREATE"))?;
    let unique = it.next_if(|t| t.is_word("UNIQUE")).is_some();
    it.next().filter(|t| t.is_word("INDEX"))?;
    let full_name = match &it.next()?.kind {
        TokenKind::Str(s) => s.clone(),
        _ => return None,
    };
    let prefix = format!("{table}__");
    let name = full_name.strip_prefix(&prefix).unwrap_or(&full_name).to_string();
    let columns = it
        .filter_map(|t| match &t.kind {
            TokenKind::Str(s) => Some(s.clone()),
            _ => None,
        })
        .skip(1) // the table name
        .collect();
    Some(Key { name, unique, columns })
}

/// MySQL `DESCRIBE` rows: Field, Type, Null (YES/NO), Key (PRI/UNI/MUL/''), Default, Extra.
pub fn describe_rows(def: &TableDef) -> Vec<Vec<Value>> {
    let keys = index_keys(def);
    def.columns
        .iter()
        .map(|c| {
            let first_of = |unique: Option<bool>, single: Option<bool>| {
                keys.iter().any(|k| {
                    k.columns.first() == Some(&c.name)
                        && unique.is_none_or(|u| k.unique == u)
                        && single.is_none_or(|s| (k.columns.len() == 1) == s)
                })
            };
            let key = if def.primary_key.contains(&c.name) {
                "PRI"
            } else if first_of(Some(true), Some(true)) {
                "UNI"
            } else if first_of(None, None) {
                "MUL"
            } else {
                ""
            };
            let default = match &c.default {
                None => Value::Null,
                Some(d) => Value::Text(unquote_literal(d)),
            };
            vec![
                Value::Text(c.name.clone()),
                Value::Text(c.mysql_type.clone()),
                Value::Text(if c.nullable { "YES" } else { "NO" }.to_string()),
                Value::Text(key.to_string()),
                default,
                Value::Text(if c.auto_increment { "auto_increment" } else { "" }.to_string()),
            ]
        })
        .collect()
}

/// `'it''s'` → `it's`; anything else unchanged.
fn unquote_literal(sql: &str) -> String {
    match sql.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => sql.to_string(),
    }
}

/// MySQL-looking `SHOW CREATE TABLE` text, with SingleStore's `REFERENCE` or `SHARD KEY (...)`. It parses back with
/// [`create_table`] into the same definition.
pub fn show_create_table(def: &TableDef) -> String {
    let mut lines: Vec<String> = def
        .columns
        .iter()
        .map(|c| {
            let mut s = format!("  {} {}", crate::quote::backquote(&c.name), c.mysql_type);
            s.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
            match &c.default {
                Some(d) => s.push_str(&format!(" DEFAULT {d}")),
                None if c.nullable => s.push_str(" DEFAULT NULL"),
                None => {}
            }
            if c.auto_increment {
                s.push_str(" AUTO_INCREMENT");
            }
            s
        })
        .collect();
    let list = |cols: &[String]| cols.iter().map(|c| crate::quote::backquote(c)).collect::<Vec<_>>().join(",");
    if !def.primary_key.is_empty() {
        lines.push(format!("  PRIMARY KEY ({})", list(&def.primary_key)));
    }
    for key in index_keys(def) {
        let kind = if key.unique { "UNIQUE KEY" } else { "KEY" };
        lines.push(format!("  {kind} {} ({})", crate::quote::backquote(&key.name), list(&key.columns)));
    }
    let kind = match def.kind {
        TableKind::Reference => "REFERENCE TABLE",
        TableKind::Distributed => {
            lines.push(format!("  SHARD KEY ({})", list(&def.shard_key)));
            "TABLE"
        }
    };
    format!("CREATE {kind} {} (\n{}\n)", crate::quote::backquote(&def.name), lines.join(",\n"))
}

/// Step 1: cut the SingleStore-only clauses out of the statement text (see the module doc).
fn strip_singlestore_clauses(sql: &str) -> Result<Stripped, SqlError> {
    let tokens = tokenize(sql)?;
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut reference = false;
    let mut i = 0;
    if !tokens.first().is_some_and(|t| t.is_word("CREATE")) {
        return Err(SqlError::Parse("expected CREATE TABLE".to_string()));
    }
    i += 1;
    while let Some(t) = tokens.get(i) {
        if t.is_word("REFERENCE") {
            reference = true;
        } else if t.is_word("TEMPORARY") || t.is_word("GLOBAL") {
            return Err(SqlError::Unsupported("temporary tables".to_string()));
        } else if !t.is_word("ROWSTORE") {
            break;
        }
        cut.push((t.start, t.end));
        i += 1;
    }
    if !tokens.get(i).is_some_and(|t| t.is_word("TABLE")) {
        return Err(SqlError::Parse("expected TABLE after CREATE [ROWSTORE] [REFERENCE]".to_string()));
    }
    let mut shard_key = None;
    let mut ignored = Vec::new();
    // The column list starts at the first '(' after the table name.
    let Some(open) = tokens.iter().skip(i).position(|t| t.is_punct('(')).map(|p| p + i) else {
        return Ok(Stripped { sql: sql.to_string(), reference, shard_key, ignored });
    };
    let elements = split_elements(&tokens, open);
    let mut removed = vec![false; elements.len()];
    for (index, element) in elements.iter().enumerate() {
        let (first, last) = (&tokens[element.start], &tokens[element.end - 1]);
        let text = &sql[first.start..last.end];
        let second = tokens.get(element.start + 1);
        if first.is_word("SHARD") && second.is_some_and(|t| t.is_word("KEY") || t.is_punct('(')) {
            if shard_key.is_some() {
                return Err(SqlError::Parse("more than one SHARD KEY".to_string()));
            }
            shard_key = Some(parse_shard_key(text)?);
            removed[index] = true;
        } else if first.is_word("SORT") && second.is_some_and(|t| t.is_word("KEY")) {
            ignored.push(Ignored::Clause("SORT KEY".to_string()));
            removed[index] = true;
        } else if is_columnstore_key(&tokens[element.start..element.end]) {
            ignored.push(Ignored::Clause("KEY ... USING CLUSTERED COLUMNSTORE".to_string()));
            removed[index] = true;
        } else {
            // Type modifiers sqlparser does not know; never the first token (that is the column name).
            for t in &tokens[element.start + 1..element.end] {
                if t.is_word("ZEROFILL") || t.is_word("SIGNED") {
                    cut.push((t.start, t.end));
                }
                if t.is_word("ZEROFILL") {
                    let column = sql[first.start..first.end].trim_matches('`');
                    ignored.push(Ignored::Clause(format!("ZEROFILL on column '{column}'")));
                }
            }
        }
    }
    for (index, element) in elements.iter().enumerate() {
        if removed[index] {
            let kept_after = removed[index + 1..].iter().any(|r| !r);
            cut.push(element_cut(&tokens, element, kept_after));
        }
    }
    cut.sort_unstable();
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (start, end) in cut {
        out.push_str(&sql[at..start]);
        out.push(' ');
        at = end;
    }
    out.push_str(&sql[at..]);
    Ok(Stripped { sql: out, reference, shard_key, ignored })
}

/// A table element: token indexes `start..end`, and the index of the comma before it (if any) and after it.
struct Element {
    start: usize,
    end: usize,
    comma_before: Option<usize>,
    comma_after: Option<usize>,
}

/// The comma-separated elements of the parenthesised list opening at token `open`.
fn split_elements(tokens: &[Token], open: usize) -> Vec<Element> {
    let mut elements = Vec::new();
    let mut depth = 0usize;
    let mut start = open + 1;
    let mut comma_before = None;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if t.is_punct('(') {
            depth += 1;
        } else if t.is_punct(')') {
            depth -= 1;
            if depth == 0 {
                if start < i {
                    elements.push(Element { start, end: i, comma_before, comma_after: None });
                }
                break;
            }
        } else if t.is_punct(',') && depth == 1 {
            if start < i {
                elements.push(Element { start, end: i, comma_before, comma_after: Some(i) });
            }
            comma_before = Some(i);
            start = i + 1;
        }
    }
    elements
}

/// The byte range that removes an element and one separating comma: the one after it while a kept element
/// follows, else the one before it (so removing a trailing run leaves no dangling comma).
fn element_cut(tokens: &[Token], element: &Element, kept_after: bool) -> (usize, usize) {
    let start = tokens[element.start].start;
    let end = tokens[element.end - 1].end;
    match (kept_after, element.comma_after, element.comma_before) {
        (true, Some(after), _) => (start, tokens[after].end),
        (false, _, Some(before)) => (tokens[before].start, end),
        _ => (start, end),
    }
}

fn is_columnstore_key(tokens: &[Token]) -> bool {
    let n = tokens.len();
    n >= 3
        && (tokens[0].is_word("KEY") || tokens[0].is_word("INDEX"))
        && tokens[n - 3].is_word("USING")
        && tokens[n - 2].is_word("CLUSTERED")
        && tokens[n - 1].is_word("COLUMNSTORE")
}

/// `SHARD [KEY] [name] ([col [, col]...])`
fn parse_shard_key(text: &str) -> Result<Vec<String>, SqlError> {
    let mut cur = Cursor::new(text)?;
    cur.set_context("SHARD KEY");
    cur.expect_word("SHARD")?;
    cur.eat_word("KEY");
    if !cur.peek().is_some_and(|t| t.is_punct('(')) {
        cur.expect_ident("a key name or '('")?;
    }
    cur.expect_punct('(')?;
    let mut columns = Vec::new();
    if !cur.eat_punct(')') {
        loop {
            columns.push(cur.expect_ident("a column name")?);
            if !cur.eat_punct(',') {
                break;
            }
        }
        cur.expect_punct(')')?;
    }
    cur.expect_end()?;
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, expected: &str) {
        let s = strip_singlestore_clauses(sql).unwrap();
        let got = s.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(got, expected, "{sql}");
    }

    #[test]
    fn stripping() {
        check("CREATE TABLE t (a INT, SHARD KEY (a))", "CREATE TABLE t (a INT )");
        check("CREATE TABLE t (SHARD KEY (a), a INT)", "CREATE TABLE t ( a INT)");
        check("CREATE REFERENCE TABLE t (a INT)", "CREATE TABLE t (a INT)");
        check("CREATE TABLE t (SHARD KEY (a), SORT KEY (a), a INT)", "CREATE TABLE t ( a INT)");
        check("CREATE TABLE t (a INT, SHARD KEY (a), SORT KEY (a))", "CREATE TABLE t (a INT )");
        check("CREATE TABLE t (SHARD KEY (a), a INT, SORT KEY (a))", "CREATE TABLE t ( a INT )");
        check("CREATE TABLE t (shard INT, sort INT)", "CREATE TABLE t (shard INT, sort INT)");
        check(
            "CREATE TABLE t (a INT ZEROFILL, SORT KEY (a), KEY (a) USING CLUSTERED COLUMNSTORE)",
            "CREATE TABLE t (a INT )",
        );
    }
}
