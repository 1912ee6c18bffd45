//! The one mapping from MySQL column types to the SQLite declared types the leaves use. It owns only the type name;
//! nullability, defaults and keys are `ddl`'s business, and it does not convert values (SQLite's affinity rules do
//! that on insert).
//!
//! | MySQL type (any width, `UNSIGNED`, `ZEROFILL`)                                     | SQLite type |
//! |------------------------------------------------------------------------------------|-------------|
//! | `TINYINT` `SMALLINT` `MEDIUMINT` `INT` `INTEGER` `BIGINT` (`INT1`..`INT8`, `MIDDLEINT`), `BOOL` `BOOLEAN`, `BIT` | `INTEGER`   |
//! | `FLOAT` `DOUBLE` `DOUBLE PRECISION` `REAL` (`FLOAT4`, `FLOAT8`)                     | `REAL`      |
//! | `DECIMAL` `NUMERIC` `DEC` `FIXED`                                                  | `NUMERIC`   |
//! | `CHAR` `VARCHAR` `CHARACTER` `NCHAR` `NVARCHAR` `TINYTEXT` `TEXT` `MEDIUMTEXT` `LONGTEXT` `ENUM` `SET` `JSON` | `TEXT` |
//! | `DATE` `DATETIME` `TIMESTAMP` `TIME` `YEAR`                                         | `TEXT` (ISO-8601 strings compare and sort in time order) |
//! | `BINARY` `VARBINARY` `TINYBLOB` `BLOB` `MEDIUMBLOB` `LONGBLOB`                       | `BLOB`      |
//! | anything else                                                                      | `SqlError::Unsupported` naming the type |
//!
//! Every integer width maps to exactly `INTEGER` (not `BIGINT`) so that a single-column integer primary key becomes
//! SQLite's rowid alias. `DECIMAL` loses exactness beyond 15 significant digits (SQLite's NUMERIC stores REAL or
//! INTEGER); `UNSIGNED` ranges and display widths are not enforced.

use crate::error::SqlError;

/// The SQLite declared type for a MySQL column type as written (`int(11) unsigned`, `varchar(20)`, `double
/// precision`, `enum('a','b')`; case-insensitive).
pub fn sqlite_decl_type(mysql_type: &str) -> Result<&'static str, SqlError> {
    let base = base_name(mysql_type);
    let decl = match base.as_str() {
        "tinyint" | "smallint" | "mediumint" | "middleint" | "int" | "integer" | "bigint" | "int1" | "int2"
        | "int3" | "int4" | "int8" | "bool" | "boolean" | "bit" => "INTEGER",
        "float" | "double" | "real" | "float4" | "float8" => "REAL",
        "decimal" | "numeric" | "dec" | "fixed" => "NUMERIC",
        "char" | "varchar" | "character" | "nchar" | "nvarchar" | "tinytext" | "text" | "mediumtext" | "longtext"
        | "enum" | "set" | "json" => "TEXT",
        "date" | "datetime" | "timestamp" | "time" | "year" => "TEXT",
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => "BLOB",
        _ => return Err(SqlError::Unsupported(format!("column type '{}'", mysql_type.trim().to_ascii_lowercase()))),
    };
    Ok(decl)
}

/// The type's name without width, modifiers or value list: `int(11) unsigned` → `int`.
fn base_name(mysql_type: &str) -> String {
    mysql_type.trim().split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or("").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mysql_type: &str, expected: Result<&str, &str>) {
        let got = sqlite_decl_type(mysql_type).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "{mysql_type}");
    }

    #[test]
    fn base_names() {
        check("INT(11) UNSIGNED ZEROFILL", Ok("INTEGER"));
        check("  double precision", Ok("REAL"));
        check("enum('a','b')", Ok("TEXT"));
        check("GEOMETRY", Err("Feature not supported: column type 'geometry'"));
    }
}
