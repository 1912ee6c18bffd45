//! MySQL's own INFORMATION_SCHEMA tables (SCHEMATA, TABLES, COLUMNS, STATISTICS, KEY_COLUMN_USAGE,
//! TABLE_CONSTRAINTS, ...), built from the cluster metadata with MySQL 8's column names, so that GUI clients, ORM
//! reflection and mysqldump can see the schema. Pure: metadata in, rows out; the planner gathers them like any other
//! virtual table, so they filter and join. Tables Canopy has nothing for (views, routines, triggers, foreign keys)
//! exist with their columns and no rows. The cluster's own views (DISTRIBUTED_PARTITIONS...) live in `views`.

use canopy_meta::{ClusterMeta, Database};
use canopy_sql::command::{ObjectKind, ShowCatalog};
use canopy_sql::{Column, ResultSet, SqlError, TableDef, TableKind, Value};

use crate::error::{Error, Result};

/// What `TABLE_CATALOG` and friends always say in MySQL.
const CATALOG: &str = "def";
/// The engine name Canopy reports for its tables (SHOW ENGINES lists it).
pub const ENGINE: &str = canopy_sql::ddl::ENGINE;
pub const CHARSET: &str = "utf8mb4";
/// Canopy compares text as its leaves' engine does: bytewise (docs/sql.md); `utf8mb4_bin` says so.
pub const COLLATION: &str = "utf8mb4_bin";

/// The next AUTO_INCREMENT value of a table (`db`, `table`): the runtime knows the ranges it holds.
pub type NextAutoIncrement<'a> = &'a dyn Fn(&str, &str) -> i64;

/// The INFORMATION_SCHEMA table `name` (upper case), or None when it is not one of MySQL's that Canopy provides.
pub fn table(meta: &ClusterMeta, name: &str, next_id: NextAutoIncrement<'_>) -> Option<ResultSet> {
    Some(match name {
        "SCHEMATA" => schemata(meta),
        "TABLES" => tables(meta, next_id),
        "COLUMNS" => columns(meta),
        "STATISTICS" => statistics(meta),
        "KEY_COLUMN_USAGE" => key_column_usage(meta),
        "TABLE_CONSTRAINTS" => table_constraints(meta),
        "PARTITIONS" => partitions(meta),
        "ENGINES" => engines(),
        "CHARACTER_SETS" => character_sets(),
        "COLLATIONS" => collations(),
        "REFERENTIAL_CONSTRAINTS" => empty(REFERENTIAL_CONSTRAINTS),
        "VIEWS" => empty(VIEWS),
        "ROUTINES" => empty(ROUTINES),
        "TRIGGERS" => empty(TRIGGERS),
        "FILES" => empty(FILES),
        "EVENTS" => empty(EVENTS),
        _ => return None,
    })
}

/// Answers a catalog SHOW statement from the same rows as the INFORMATION_SCHEMA tables (SHOW INDEX is STATISTICS
/// under SHOW's column names, and so on). `current_db` is the session's database.
pub fn show(
    meta: &ClusterMeta,
    current_db: Option<&str>,
    show: &ShowCatalog,
    next_id: NextAutoIncrement<'_>,
) -> Result<ResultSet> {
    let database = |db: &Option<String>| -> Result<&Database> {
        let name = db.as_deref().or(current_db).ok_or(Error::Sql(SqlError::NoDatabaseSelected))?;
        meta.databases.get(name).ok_or_else(|| Error::UnknownDatabase(name.to_string()))
    };
    let table_of = |db: &Option<String>, table: &str| -> Result<(String, String)> {
        let database = database(db)?;
        let def = database.table(table).ok_or_else(|| {
            Error::Sql(SqlError::UnknownTable { db: database.name.clone(), table: table.to_string() })
        })?;
        Ok((database.name.clone(), def.name.clone()))
    };
    let like = |pattern: &Option<String>, name: &Value| match (pattern, name) {
        (None, _) => true,
        (Some(p), Value::Text(n)) => crate::front::views::like_match(p, n),
        _ => false,
    };
    Ok(match show {
        ShowCatalog::Index { db, table } => {
            let (db, table) = table_of(db, table)?;
            let rows = rows_of(&statistics(meta), 1, &db, 2, &table);
            project(&rows, SHOW_INDEX)
        }
        ShowCatalog::FullColumns { db, table, like: pattern } => {
            let (db, table) = table_of(db, table)?;
            let mut rows = rows_of(&columns(meta), 1, &db, 2, &table);
            rows.rows.retain(|r| like(pattern, &r[3]));
            project(&rows, SHOW_FULL_COLUMNS)
        }
        ShowCatalog::TableStatus { db, like: pattern } => {
            let name = database(db)?.name.clone();
            let mut rows = tables(meta, next_id);
            rows.rows.retain(|r| r[1] == Value::Text(name.clone()) && like(pattern, &r[2]));
            project(&rows, SHOW_TABLE_STATUS)
        }
        ShowCatalog::CreateDatabase { name, if_not_exists } => {
            let database = database(&Some(name.clone()))?;
            let mut create = format!(
                "CREATE DATABASE {}`{}` PARTITIONS {}",
                if *if_not_exists { "IF NOT EXISTS " } else { "" },
                database.name.replace('`', "``"),
                database.partitions
            );
            match (database.durability, database.replication) {
                (canopy_meta::Durability::Async, canopy_meta::Replication::Async) => {
                    create.push_str(" WITH ASYNC DURABILITY ASYNC REPLICATION")
                }
                (canopy_meta::Durability::Async, _) => create.push_str(" WITH ASYNC DURABILITY"),
                (_, canopy_meta::Replication::Async) => create.push_str(" WITH ASYNC REPLICATION"),
                _ => {}
            }
            ResultSet::named(
                &["Database", "Create Database"],
                vec![vec![Value::text(database.name.clone()), Value::text(create)]],
            )
        }
        ShowCatalog::Engines => engines_as_shown(),
        ShowCatalog::CharacterSet { like: pattern } => {
            let mut rows = project(
                &character_sets(),
                &[("Charset", 0), ("Description", 2), ("Default collation", 1), ("Maxlen", 3)],
            );
            rows.rows.retain(|r| like(pattern, &r[0]));
            rows
        }
        ShowCatalog::Collation { like: pattern } => {
            let shown = [
                ("Collation", 0),
                ("Charset", 1),
                ("Id", 2),
                ("Default", 3),
                ("Compiled", 4),
                ("Sortlen", 5),
                ("Pad_attribute", 6),
            ];
            let mut rows = project(&collations(), &shown);
            rows.rows.retain(|r| like(pattern, &r[0]));
            rows
        }
        ShowCatalog::Plugins => ResultSet::named(&["Name", "Status", "Type", "Library", "License"], Vec::new()),
        ShowCatalog::Privileges => {
            let rows = PRIVILEGES.iter().map(|row| row.iter().map(|c| Value::text(*c)).collect()).collect();
            ResultSet::named(&["Privilege", "Context", "Comment"], rows)
        }
        ShowCatalog::NoObjects(ObjectKind::Routines) => empty(SHOW_ROUTINES),
        ShowCatalog::NoObjects(ObjectKind::Triggers) => empty(SHOW_TRIGGERS),
        ShowCatalog::NoObjects(ObjectKind::Events) => empty(SHOW_EVENTS),
        // Connection state, not metadata: the session answers these (`front::processlist`, `front::accounts`).
        ShowCatalog::Processlist { .. } | ShowCatalog::Status { .. } | ShowCatalog::Grants { .. } => {
            return Err(Error::Internal("SHOW PROCESSLIST / STATUS / GRANTS are answered by the session".into()));
        }
        ShowCatalog::ReplicationStatus => {
            ResultSet::named(&["File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB", "Executed_Gtid_Set"], Vec::new())
        }
    })
}

/// The rows of `all` whose column `a` is `va` and column `b` is `vb` (text).
fn rows_of(all: &ResultSet, a: usize, va: &str, b: usize, vb: &str) -> ResultSet {
    let (va, vb) = (Value::Text(va.to_string()), Value::Text(vb.to_string()));
    let rows = all.rows.iter().filter(|r| r[a] == va && r[b] == vb).cloned().collect();
    ResultSet { columns: all.columns.clone(), rows }
}

/// `shown` columns of `all`, each under its SHOW name, taken from the given index.
fn project(all: &ResultSet, shown: &[(&str, usize)]) -> ResultSet {
    let rows = all.rows.iter().map(|r| shown.iter().map(|(_, i)| r[*i].clone()).collect()).collect();
    ResultSet { columns: shown.iter().map(|(name, _)| Column::new(*name)).collect(), rows }
}

/// SHOW PRIVILEGES: MySQL's privileges for the objects Canopy has (root holds them all: SHOW GRANTS).
const PRIVILEGES: &[[&str; 3]] = &[
    ["Alter", "Tables", "To alter the table"],
    ["Create", "Databases,Tables,Indexes", "To create new databases and tables"],
    ["Delete", "Tables", "To delete existing rows"],
    ["Drop", "Databases,Tables", "To drop databases, tables, and views"],
    ["Grant option", "Databases,Tables,Functions,Procedures", "To give to other users those privileges you possess"],
    ["Index", "Tables", "To create or drop indexes"],
    ["Insert", "Tables", "To insert data into tables"],
    ["Lock tables", "Databases", "To use LOCK TABLES (together with SELECT privilege)"],
    ["Process", "Server Admin", "To view the plain text of currently executing queries"],
    ["Reload", "Server Admin", "To reload or refresh tables, logs and privileges"],
    ["Select", "Tables", "To retrieve rows from table"],
    ["Show databases", "Server Admin", "To see all databases with SHOW DATABASES"],
    ["Super", "Server Admin", "To use KILL thread, SET GLOBAL, CHANGE MASTER, etc."],
    ["Update", "Tables", "To update existing rows"],
    ["Usage", "Server Admin", "No privileges - allow connect only"],
];

const SHOW_ROUTINES: &[&str] = &[
    "Db",
    "Name",
    "Type",
    "Definer",
    "Modified",
    "Created",
    "Security_type",
    "Comment",
    "character_set_client",
    "collation_connection",
    "Database Collation",
];

const SHOW_TRIGGERS: &[&str] = &[
    "Trigger",
    "Event",
    "Table",
    "Statement",
    "Timing",
    "Created",
    "sql_mode",
    "Definer",
    "character_set_client",
    "collation_connection",
    "Database Collation",
];

const SHOW_EVENTS: &[&str] = &[
    "Db",
    "Name",
    "Definer",
    "Time zone",
    "Type",
    "Execute at",
    "Interval value",
    "Interval field",
    "Starts",
    "Ends",
    "Status",
    "Originator",
    "character_set_client",
    "collation_connection",
    "Database Collation",
];

/// SHOW INDEX: STATISTICS columns under SHOW's names.
const SHOW_INDEX: &[(&str, usize)] = &[
    ("Table", 2),
    ("Non_unique", 3),
    ("Key_name", 5),
    ("Seq_in_index", 6),
    ("Column_name", 7),
    ("Collation", 8),
    ("Cardinality", 9),
    ("Sub_part", 10),
    ("Packed", 11),
    ("Null", 12),
    ("Index_type", 13),
    ("Comment", 14),
    ("Index_comment", 15),
    ("Visible", 16),
    ("Expression", 17),
];

/// SHOW FULL COLUMNS: COLUMNS columns under SHOW's names.
const SHOW_FULL_COLUMNS: &[(&str, usize)] = &[
    ("Field", 3),
    ("Type", 15),
    ("Collation", 14),
    ("Null", 6),
    ("Key", 16),
    ("Default", 5),
    ("Extra", 17),
    ("Privileges", 18),
    ("Comment", 19),
];

/// SHOW TABLE STATUS: TABLES columns under SHOW's names.
const SHOW_TABLE_STATUS: &[(&str, usize)] = &[
    ("Name", 2),
    ("Engine", 4),
    ("Version", 5),
    ("Row_format", 6),
    ("Rows", 7),
    ("Avg_row_length", 8),
    ("Data_length", 9),
    ("Max_data_length", 10),
    ("Index_length", 11),
    ("Data_free", 12),
    ("Auto_increment", 13),
    ("Create_time", 14),
    ("Update_time", 15),
    ("Check_time", 16),
    ("Collation", 17),
    ("Checksum", 18),
    ("Create_options", 19),
    ("Comment", 20),
];

fn engines_as_shown() -> ResultSet {
    let shown = [("Engine", 0), ("Support", 1), ("Comment", 2), ("Transactions", 3), ("XA", 4), ("Savepoints", 5)];
    project(&engines(), &shown)
}

fn empty(columns: &[&str]) -> ResultSet {
    ResultSet::named(columns, Vec::new())
}

/// Every table of every database, in name order.
fn each_table(meta: &ClusterMeta) -> impl Iterator<Item = (&Database, &TableDef)> {
    meta.databases.values().flat_map(|db| db.tables.values().map(move |t| (db, t)))
}

fn schemata(meta: &ClusterMeta) -> ResultSet {
    let mut names: Vec<&str> = vec!["information_schema"];
    names.extend(meta.databases.keys().map(String::as_str));
    let rows = names
        .into_iter()
        .map(|name| {
            vec![
                Value::text(CATALOG),
                Value::text(name),
                Value::text(CHARSET),
                Value::text(COLLATION),
                Value::Null,
                Value::text("NO"),
            ]
        })
        .collect();
    ResultSet::named(
        &[
            "CATALOG_NAME",
            "SCHEMA_NAME",
            "DEFAULT_CHARACTER_SET_NAME",
            "DEFAULT_COLLATION_NAME",
            "SQL_PATH",
            "DEFAULT_ENCRYPTION",
        ],
        rows,
    )
}

/// How the table is spread, in the words of SHOW CREATE TABLE (CREATE_OPTIONS).
fn create_options(def: &TableDef) -> String {
    match def.kind {
        TableKind::Reference => "reference".to_string(),
        TableKind::Distributed if def.shard_key.is_empty() => "shard key ()".to_string(),
        TableKind::Distributed => format!("shard key ({})", def.shard_key.join(", ")),
    }
}

fn tables(meta: &ClusterMeta, next_id: NextAutoIncrement<'_>) -> ResultSet {
    let rows = each_table(meta)
        .map(|(db, def)| {
            let next_id =
                def.auto_increment_column().map(|_| Value::int(next_id(&db.name, &def.name))).unwrap_or(Value::Null);
            vec![
                Value::text(CATALOG),
                Value::text(db.name.clone()),
                Value::text(def.name.clone()),
                Value::text("BASE TABLE"),
                Value::text(ENGINE),
                Value::int(10),
                Value::text("Dynamic"),
                // Row counts live on the leaves; MySQL's own figure is an estimate too, and NULL is allowed.
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                next_id,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::text(COLLATION),
                Value::Null,
                Value::text(create_options(def)),
                Value::text(""),
            ]
        })
        .collect();
    ResultSet::named(
        &[
            "TABLE_CATALOG",
            "TABLE_SCHEMA",
            "TABLE_NAME",
            "TABLE_TYPE",
            "ENGINE",
            "VERSION",
            "ROW_FORMAT",
            "TABLE_ROWS",
            "AVG_ROW_LENGTH",
            "DATA_LENGTH",
            "MAX_DATA_LENGTH",
            "INDEX_LENGTH",
            "DATA_FREE",
            "AUTO_INCREMENT",
            "CREATE_TIME",
            "UPDATE_TIME",
            "CHECK_TIME",
            "TABLE_COLLATION",
            "CHECKSUM",
            "CREATE_OPTIONS",
            "TABLE_COMMENT",
        ],
        rows,
    )
}

/// A MySQL column type (`varchar(20)`, `Value::int(11) unsigned`, `decimal(10,2)`) taken apart the way
/// INFORMATION_SCHEMA.COLUMNS shows it.
#[derive(Debug, Clone, PartialEq)]
struct ColumnType {
    /// `DATA_TYPE`: the bare type name, lower case.
    data_type: String,
    /// The numbers in parentheses, if any.
    args: Vec<i64>,
}

impl ColumnType {
    fn parse(mysql_type: &str) -> ColumnType {
        let lower = mysql_type.trim().to_ascii_lowercase();
        let end = lower.find(|c: char| c == '(' || c.is_whitespace()).unwrap_or(lower.len());
        let data_type = lower[..end].to_string();
        let args = match (lower.find('('), lower.find(')')) {
            (Some(open), Some(close)) if close > open => {
                lower[open + 1..close].split(',').filter_map(|a| a.trim().parse().ok()).collect()
            }
            _ => Vec::new(),
        };
        ColumnType { data_type, args }
    }

    fn is_text(&self) -> bool {
        matches!(
            self.data_type.as_str(),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        )
    }

    /// CHARACTER_MAXIMUM_LENGTH.
    fn max_length(&self) -> Option<i64> {
        match self.data_type.as_str() {
            "char" | "varchar" | "binary" | "varbinary" => Some(self.args.first().copied().unwrap_or(1)),
            "tinytext" | "tinyblob" => Some(255),
            "text" | "blob" => Some(65_535),
            "mediumtext" | "mediumblob" => Some(16_777_215),
            "longtext" | "longblob" => Some(4_294_967_295),
            _ => None,
        }
    }

    /// (NUMERIC_PRECISION, NUMERIC_SCALE).
    fn precision(&self) -> (Option<i64>, Option<i64>) {
        match self.data_type.as_str() {
            "tinyint" => (Some(3), Some(0)),
            "smallint" => (Some(5), Some(0)),
            "mediumint" => (Some(7), Some(0)),
            "int" | "integer" => (Some(10), Some(0)),
            "bigint" => (Some(19), Some(0)),
            "decimal" | "numeric" => {
                (Some(self.args.first().copied().unwrap_or(10)), Some(self.args.get(1).copied().unwrap_or(0)))
            }
            "float" => (Some(12), None),
            "double" | "real" => (Some(22), None),
            _ => (None, None),
        }
    }
}

fn opt(v: Option<i64>) -> Value {
    v.map(Value::Integer).unwrap_or(Value::Null)
}

fn columns(meta: &ClusterMeta) -> ResultSet {
    let mut rows = Vec::new();
    for (db, def) in each_table(meta) {
        // DESCRIBE's rows carry the key marks (PRI/UNI/MUL), the default as shown and the extra, computed once.
        let described = canopy_sql::ddl::describe_rows(def);
        for (position, (column, shown)) in def.columns.iter().zip(described).enumerate() {
            let ty = ColumnType::parse(&column.mysql_type);
            let (precision, scale) = ty.precision();
            let max_length = ty.max_length();
            let octets = max_length.map(|n| if ty.is_text() { n.saturating_mul(4) } else { n });
            let (charset, collation) =
                if ty.is_text() { (Value::text(CHARSET), Value::text(COLLATION)) } else { (Value::Null, Value::Null) };
            rows.push(vec![
                Value::text(CATALOG),
                Value::text(db.name.clone()),
                Value::text(def.name.clone()),
                Value::text(column.name.clone()),
                Value::int(position as i64 + 1),
                shown[4].clone(),
                Value::text(if column.nullable { "YES" } else { "NO" }),
                Value::text(ty.data_type.clone()),
                opt(max_length),
                opt(octets),
                opt(precision),
                opt(scale),
                Value::Null,
                charset,
                collation,
                Value::text(column.mysql_type.clone()),
                shown[3].clone(),
                shown[5].clone(),
                Value::text("select,insert,update,references"),
                Value::text(""),
                Value::text(""),
                Value::Null,
            ]);
        }
    }
    ResultSet::named(
        &[
            "TABLE_CATALOG",
            "TABLE_SCHEMA",
            "TABLE_NAME",
            "COLUMN_NAME",
            "ORDINAL_POSITION",
            "COLUMN_DEFAULT",
            "IS_NULLABLE",
            "DATA_TYPE",
            "CHARACTER_MAXIMUM_LENGTH",
            "CHARACTER_OCTET_LENGTH",
            "NUMERIC_PRECISION",
            "NUMERIC_SCALE",
            "DATETIME_PRECISION",
            "CHARACTER_SET_NAME",
            "COLLATION_NAME",
            "COLUMN_TYPE",
            "COLUMN_KEY",
            "EXTRA",
            "PRIVILEGES",
            "COLUMN_COMMENT",
            "GENERATION_EXPRESSION",
            "SRS_ID",
        ],
        rows,
    )
}

/// One index of a table as INFORMATION_SCHEMA shows it: the primary key is the index named `PRIMARY`.
struct Index {
    name: String,
    unique: bool,
    columns: Vec<String>,
}

fn indexes(def: &TableDef) -> Vec<Index> {
    let mut all = Vec::new();
    if !def.primary_key.is_empty() {
        all.push(Index { name: "PRIMARY".to_string(), unique: true, columns: def.primary_key.clone() });
    }
    all.extend(canopy_sql::ddl::index_keys(def).into_iter().map(|k| Index {
        name: k.name,
        unique: k.unique,
        columns: k.columns,
    }));
    all
}

fn statistics(meta: &ClusterMeta) -> ResultSet {
    let mut rows = Vec::new();
    for (db, def) in each_table(meta) {
        for index in indexes(def) {
            for (seq, column) in index.columns.iter().enumerate() {
                let nullable = def.column(column).is_some_and(|c| c.nullable);
                rows.push(vec![
                    Value::text(CATALOG),
                    Value::text(db.name.clone()),
                    Value::text(def.name.clone()),
                    Value::int(i64::from(!index.unique)),
                    Value::text(db.name.clone()),
                    Value::text(index.name.clone()),
                    Value::int(seq as i64 + 1),
                    Value::text(column.clone()),
                    Value::text("A"),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::text(if nullable { "YES" } else { "" }),
                    Value::text("BTREE"),
                    Value::text(""),
                    Value::text(""),
                    Value::text("YES"),
                    Value::Null,
                ]);
            }
        }
    }
    ResultSet::named(
        &[
            "TABLE_CATALOG",
            "TABLE_SCHEMA",
            "TABLE_NAME",
            "NON_UNIQUE",
            "INDEX_SCHEMA",
            "INDEX_NAME",
            "SEQ_IN_INDEX",
            "COLUMN_NAME",
            "COLLATION",
            "CARDINALITY",
            "SUB_PART",
            "PACKED",
            "NULLABLE",
            "INDEX_TYPE",
            "COMMENT",
            "INDEX_COMMENT",
            "IS_VISIBLE",
            "EXPRESSION",
        ],
        rows,
    )
}

fn key_column_usage(meta: &ClusterMeta) -> ResultSet {
    let mut rows = Vec::new();
    for (db, def) in each_table(meta) {
        for index in indexes(def).into_iter().filter(|i| i.unique) {
            for (position, column) in index.columns.iter().enumerate() {
                rows.push(vec![
                    Value::text(CATALOG),
                    Value::text(db.name.clone()),
                    Value::text(index.name.clone()),
                    Value::text(CATALOG),
                    Value::text(db.name.clone()),
                    Value::text(def.name.clone()),
                    Value::text(column.clone()),
                    Value::int(position as i64 + 1),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ]);
            }
        }
    }
    ResultSet::named(
        &[
            "CONSTRAINT_CATALOG",
            "CONSTRAINT_SCHEMA",
            "CONSTRAINT_NAME",
            "TABLE_CATALOG",
            "TABLE_SCHEMA",
            "TABLE_NAME",
            "COLUMN_NAME",
            "ORDINAL_POSITION",
            "POSITION_IN_UNIQUE_CONSTRAINT",
            "REFERENCED_TABLE_SCHEMA",
            "REFERENCED_TABLE_NAME",
            "REFERENCED_COLUMN_NAME",
        ],
        rows,
    )
}

fn table_constraints(meta: &ClusterMeta) -> ResultSet {
    let mut rows = Vec::new();
    for (db, def) in each_table(meta) {
        for index in indexes(def).into_iter().filter(|i| i.unique) {
            let kind = if index.name == "PRIMARY" { "PRIMARY KEY" } else { "UNIQUE" };
            rows.push(vec![
                Value::text(CATALOG),
                Value::text(db.name.clone()),
                Value::text(index.name),
                Value::text(db.name.clone()),
                Value::text(def.name.clone()),
                Value::text(kind),
                Value::text("YES"),
            ]);
        }
    }
    ResultSet::named(
        &[
            "CONSTRAINT_CATALOG",
            "CONSTRAINT_SCHEMA",
            "CONSTRAINT_NAME",
            "TABLE_SCHEMA",
            "TABLE_NAME",
            "CONSTRAINT_TYPE",
            "ENFORCED",
        ],
        rows,
    )
}

/// MySQL lists one row per table with NULL partition fields for tables without MySQL partitioning; Canopy's
/// partitions are the cluster's (INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS), not MySQL table partitions.
fn partitions(meta: &ClusterMeta) -> ResultSet {
    let rows = each_table(meta)
        .map(|(db, def)| {
            let mut row = vec![Value::text(CATALOG), Value::text(db.name.clone()), Value::text(def.name.clone())];
            row.extend(std::iter::repeat_n(Value::Null, PARTITIONS.len() - 3));
            row
        })
        .collect();
    ResultSet::named(PARTITIONS, rows)
}

fn engines() -> ResultSet {
    let rows = vec![vec![
        Value::text(ENGINE),
        Value::text("DEFAULT"),
        Value::text("Distributed tables over SQLite partitions"),
        Value::text("NO"),
        Value::text("NO"),
        Value::text("NO"),
    ]];
    ResultSet::named(&["ENGINE", "SUPPORT", "COMMENT", "TRANSACTIONS", "XA", "SAVEPOINTS"], rows)
}

fn character_sets() -> ResultSet {
    let rows = vec![vec![Value::text(CHARSET), Value::text(COLLATION), Value::text("UTF-8 Unicode"), Value::int(4)]];
    ResultSet::named(&["CHARACTER_SET_NAME", "DEFAULT_COLLATE_NAME", "DESCRIPTION", "MAXLEN"], rows)
}

fn collations() -> ResultSet {
    let rows = vec![vec![
        Value::text(COLLATION),
        Value::text(CHARSET),
        Value::int(46),
        Value::text("Yes"),
        Value::text("Yes"),
        Value::int(1),
        Value::text("NO PAD"),
    ]];
    ResultSet::named(
        &["COLLATION_NAME", "CHARACTER_SET_NAME", "ID", "IS_DEFAULT", "IS_COMPILED", "SORTLEN", "PAD_ATTRIBUTE"],
        rows,
    )
}

const PARTITIONS: &[&str] = &[
    "TABLE_CATALOG",
    "TABLE_SCHEMA",
    "TABLE_NAME",
    "PARTITION_NAME",
    "SUBPARTITION_NAME",
    "PARTITION_ORDINAL_POSITION",
    "SUBPARTITION_ORDINAL_POSITION",
    "PARTITION_METHOD",
    "SUBPARTITION_METHOD",
    "PARTITION_EXPRESSION",
    "SUBPARTITION_EXPRESSION",
    "PARTITION_DESCRIPTION",
    "TABLE_ROWS",
    "AVG_ROW_LENGTH",
    "DATA_LENGTH",
    "MAX_DATA_LENGTH",
    "INDEX_LENGTH",
    "DATA_FREE",
    "CREATE_TIME",
    "UPDATE_TIME",
    "CHECK_TIME",
    "CHECKSUM",
    "PARTITION_COMMENT",
    "NODEGROUP",
    "TABLESPACE_NAME",
];

/// Tablespace files: Canopy's files are the leaves' partition files, not MySQL tablespaces.
const FILES: &[&str] = &[
    "FILE_ID",
    "FILE_NAME",
    "FILE_TYPE",
    "TABLESPACE_NAME",
    "TABLE_CATALOG",
    "TABLE_SCHEMA",
    "TABLE_NAME",
    "LOGFILE_GROUP_NAME",
    "LOGFILE_GROUP_NUMBER",
    "ENGINE",
    "FULLTEXT_KEYS",
    "DELETED_ROWS",
    "UPDATE_COUNT",
    "FREE_EXTENTS",
    "TOTAL_EXTENTS",
    "EXTENT_SIZE",
    "INITIAL_SIZE",
    "MAXIMUM_SIZE",
    "AUTOEXTEND_SIZE",
    "CREATION_TIME",
    "LAST_UPDATE_TIME",
    "LAST_ACCESS_TIME",
    "RECOVER_TIME",
    "TRANSACTION_COUNTER",
    "VERSION",
    "ROW_FORMAT",
    "TABLE_ROWS",
    "AVG_ROW_LENGTH",
    "DATA_LENGTH",
    "MAX_DATA_LENGTH",
    "INDEX_LENGTH",
    "DATA_FREE",
    "CREATE_TIME",
    "UPDATE_TIME",
    "CHECK_TIME",
    "CHECKSUM",
    "STATUS",
    "EXTRA",
];

const EVENTS: &[&str] = &[
    "EVENT_CATALOG",
    "EVENT_SCHEMA",
    "EVENT_NAME",
    "DEFINER",
    "TIME_ZONE",
    "EVENT_BODY",
    "EVENT_DEFINITION",
    "EVENT_TYPE",
    "EXECUTE_AT",
    "INTERVAL_VALUE",
    "INTERVAL_FIELD",
    "SQL_MODE",
    "STARTS",
    "ENDS",
    "STATUS",
    "ON_COMPLETION",
    "CREATED",
    "LAST_ALTERED",
    "LAST_EXECUTED",
    "EVENT_COMMENT",
    "ORIGINATOR",
    "CHARACTER_SET_CLIENT",
    "COLLATION_CONNECTION",
    "DATABASE_COLLATION",
];

const REFERENTIAL_CONSTRAINTS: &[&str] = &[
    "CONSTRAINT_CATALOG",
    "CONSTRAINT_SCHEMA",
    "CONSTRAINT_NAME",
    "UNIQUE_CONSTRAINT_CATALOG",
    "UNIQUE_CONSTRAINT_SCHEMA",
    "UNIQUE_CONSTRAINT_NAME",
    "MATCH_OPTION",
    "UPDATE_RULE",
    "DELETE_RULE",
    "TABLE_NAME",
    "REFERENCED_TABLE_NAME",
];

const VIEWS: &[&str] = &[
    "TABLE_CATALOG",
    "TABLE_SCHEMA",
    "TABLE_NAME",
    "VIEW_DEFINITION",
    "CHECK_OPTION",
    "IS_UPDATABLE",
    "DEFINER",
    "SECURITY_TYPE",
    "CHARACTER_SET_CLIENT",
    "COLLATION_CONNECTION",
];

const ROUTINES: &[&str] = &[
    "SPECIFIC_NAME",
    "ROUTINE_CATALOG",
    "ROUTINE_SCHEMA",
    "ROUTINE_NAME",
    "ROUTINE_TYPE",
    "DATA_TYPE",
    "CHARACTER_MAXIMUM_LENGTH",
    "CHARACTER_OCTET_LENGTH",
    "NUMERIC_PRECISION",
    "NUMERIC_SCALE",
    "DATETIME_PRECISION",
    "CHARACTER_SET_NAME",
    "COLLATION_NAME",
    "DTD_IDENTIFIER",
    "ROUTINE_BODY",
    "ROUTINE_DEFINITION",
    "EXTERNAL_NAME",
    "EXTERNAL_LANGUAGE",
    "PARAMETER_STYLE",
    "IS_DETERMINISTIC",
    "SQL_DATA_ACCESS",
    "SQL_PATH",
    "SECURITY_TYPE",
    "CREATED",
    "LAST_ALTERED",
    "SQL_MODE",
    "ROUTINE_COMMENT",
    "DEFINER",
    "CHARACTER_SET_CLIENT",
    "COLLATION_CONNECTION",
    "DATABASE_COLLATION",
];

const TRIGGERS: &[&str] = &[
    "TRIGGER_CATALOG",
    "TRIGGER_SCHEMA",
    "TRIGGER_NAME",
    "EVENT_MANIPULATION",
    "EVENT_OBJECT_CATALOG",
    "EVENT_OBJECT_SCHEMA",
    "EVENT_OBJECT_TABLE",
    "ACTION_ORDER",
    "ACTION_CONDITION",
    "ACTION_STATEMENT",
    "ACTION_ORIENTATION",
    "ACTION_TIMING",
    "ACTION_REFERENCE_OLD_TABLE",
    "ACTION_REFERENCE_NEW_TABLE",
    "ACTION_REFERENCE_OLD_ROW",
    "ACTION_REFERENCE_NEW_ROW",
    "CREATED",
    "SQL_MODE",
    "DEFINER",
    "CHARACTER_SET_CLIENT",
    "COLLATION_CONNECTION",
    "DATABASE_COLLATION",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_come_apart_as_mysql_shows_them() {
        let check = |t: &str, data_type: &str, max: Option<i64>, precision: (Option<i64>, Option<i64>)| {
            let ty = ColumnType::parse(t);
            assert_eq!(ty.data_type, data_type, "{t}");
            assert_eq!(ty.max_length(), max, "{t}");
            assert_eq!(ty.precision(), precision, "{t}");
        };
        check("int(11)", "int", None, (Some(10), Some(0)));
        check("bigint unsigned", "bigint", None, (Some(19), Some(0)));
        check("varchar(20)", "varchar", Some(20), (None, None));
        check("DECIMAL(10, 2)", "decimal", None, (Some(10), Some(2)));
        check("text", "text", Some(65_535), (None, None));
        check("datetime", "datetime", None, (None, None));
    }
}
