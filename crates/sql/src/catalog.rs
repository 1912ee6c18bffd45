//! What the planner knows about tables: columns with their SQLite declared types and affinities, the shard key, and
//! whether the table is distributed over partitions or a reference table copied to every leaf. The cluster metadata
//! stores these definitions; the planner reads them through the [`Catalog`] trait.

use serde::{Deserialize, Serialize};

/// SQLite's column affinity (https://sqlite.org/datatype3.html#type_affinity), derived from the declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Affinity {
    Integer,
    Real,
    Numeric,
    Text,
    Blob,
}

impl Affinity {
    /// The affinity SQLite gives a column declared with `decl_type`, by the rules of section 3.1 of its type docs.
    pub fn of_decl_type(decl_type: &str) -> Affinity {
        let t = decl_type.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Integer
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            Affinity::Text
        } else if t.contains("BLOB") || t.trim().is_empty() {
            Affinity::Blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableKind {
    /// Rows are spread over the database's partitions by the shard key.
    Distributed,
    /// A full copy lives on every leaf.
    Reference,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    /// The SQLite declared type written in the leaves' DDL (for example `INTEGER`, `TEXT`, `REAL`, `NUMERIC`).
    pub decl_type: String,
    /// The MySQL type as the user wrote it (for example `int(11)`, `varchar(20)`), shown by DESCRIBE.
    pub mysql_type: String,
    pub affinity: Affinity,
    pub nullable: bool,
    pub auto_increment: bool,
    /// The default as an SQL expression, if any.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub kind: TableKind,
    pub columns: Vec<ColumnDef>,
    /// Primary key columns (empty when the table has none).
    pub primary_key: Vec<String>,
    /// Shard key columns. Empty for a distributed table with neither a SHARD KEY nor a primary key: its rows are
    /// spread evenly and no query can be routed to one partition by value. Always empty for reference tables.
    pub shard_key: Vec<String>,
    /// The `CREATE TABLE` statement every partition instance (or reference copy) runs, in SQLite's dialect.
    pub create_sql: String,
    /// Secondary index statements (`CREATE INDEX ...`) in SQLite's dialect, run after `create_sql`.
    pub index_sql: Vec<String>,
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn auto_increment_column(&self) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.auto_increment)
    }
}

/// Read access to table definitions and partition counts, as the planner needs them.
pub trait Catalog {
    /// The definition of `db.table`, or `None` if there is no such table.
    fn table(&self, db: &str, table: &str) -> Option<&TableDef>;
    /// The number of partitions of `db`, or `None` if there is no such database.
    fn partition_count(&self, db: &str) -> Option<u32>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_follows_sqlite_rules() {
        let check = |t: &str, a: Affinity| assert_eq!(Affinity::of_decl_type(t), a, "{t}");
        check("INTEGER", Affinity::Integer);
        check("BIGINT", Affinity::Integer);
        check("VARCHAR(20)", Affinity::Text);
        check("TEXT", Affinity::Text);
        check("BLOB", Affinity::Blob);
        check("", Affinity::Blob);
        check("REAL", Affinity::Real);
        check("DOUBLE", Affinity::Real);
        check("NUMERIC", Affinity::Numeric);
        check("DECIMAL(10,2)", Affinity::Numeric);
        check("DATETIME", Affinity::Numeric);
    }
}
