//! What the tools MySQL users bring (ci/tools.py: mariadb-slap, MySQL Workbench, DBeaver, Node's mysql2) need from
//! the front end beyond plain queries, through real processes: a statement ending in its C string's NUL byte,
//! `SHOW ... WHERE`, SHOW TABLES FROM information_schema, SHOW VARIABLES values typed as strings, CURRENT_USER(),
//! COM_CHANGE_USER, SHOW WARNINGS / SHOW ERRORS, SHOW PRIVILEGES, and a dump's `AUTO_INCREMENT=n`.

mod support;

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{ChangeUserOpts, Row};
use support::TestCluster;

/// History: a database `shop` with tables `orders` and `customers`; a client sends CREATE TABLE and INSERT with a
/// trailing NUL byte (as mariadb-slap does), Workbench's and DBeaver's filtered SHOWs, lists and reads
/// information_schema, reads SHOW VARIABLES' column types and CURRENT_USER().
/// Property: the NUL ends the statement; WHERE keeps exactly the rows its condition names (SHOW's columns compare
/// text without regard to case, as in MySQL) and a bad condition is a syntax error; every table SHOW TABLES FROM
/// information_schema lists can be read; SHOW VARIABLES' Value column is a string column; CURRENT_USER() is the
/// account SHOW GRANTS names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_statements_answer_as_in_mysql() {
    let cluster = TestCluster::start("tools-protocol", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE shop PARTITIONS 2").await.unwrap();
    conn.query_drop("USE shop").await.unwrap();
    conn.query_drop("CREATE TABLE orders (id INT PRIMARY KEY, note TEXT)\0").await.unwrap();
    conn.query_drop("INSERT INTO orders VALUES (1, 'a')\0").await.unwrap();
    conn.query_drop("CREATE TABLE customers (id INT PRIMARY KEY)").await.unwrap();
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM orders\0\0").await.unwrap().unwrap();
    assert_eq!(count, 1);

    let tables: Vec<(String, String)> = conn
        .query("SHOW FULL TABLES FROM `shop` WHERE `Tables_in_shop` = 'orders' AND Table_type != 'VIEW'")
        .await
        .unwrap();
    assert_eq!(tables, [("orders".to_string(), "BASE TABLE".to_string())]);
    let views: Vec<(String, String)> = conn.query("SHOW FULL TABLES WHERE Table_type = 'VIEW'").await.unwrap();
    assert!(views.is_empty(), "{views:?}");
    let versions: Vec<(String, String)> =
        conn.query("SHOW VARIABLES WHERE Variable_name IN ('VERSION', 'version_comment')").await.unwrap();
    assert_eq!(versions.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["version", "version_comment"]);
    let databases: Vec<String> = conn.query("SHOW DATABASES WHERE `Database` LIKE 'sh%'").await.unwrap();
    assert_eq!(databases, ["shop"]);
    let error = conn.query_drop("SHOW TABLES WHERE Tables_in_shop = ").await.unwrap_err();
    assert!(matches!(&error, mysql_async::Error::Server(e) if e.code == 1064), "{error}");
    let error = conn.query_drop("SHOW TABLES WHERE no_such_column = 1").await.unwrap_err();
    assert!(matches!(&error, mysql_async::Error::Server(_)), "{error}");

    let system: Vec<(String, String)> = conn.query("SHOW FULL TABLES FROM information_schema").await.unwrap();
    assert!(system.len() >= 20 && system.iter().all(|(_, kind)| kind == "SYSTEM VIEW"), "{system:?}");
    for (table, _) in &system {
        conn.query_drop(format!("SELECT * FROM information_schema.{table} LIMIT 0"))
            .await
            .unwrap_or_else(|e| panic!("information_schema.{table} is listed but cannot be read: {e}"));
    }
    let like: Vec<String> = conn.query("SHOW TABLES FROM information_schema LIKE 'key%'").await.unwrap();
    assert_eq!(like, ["KEY_COLUMN_USAGE"]);

    let mut result = conn.query_iter("SHOW VARIABLES LIKE 'lower_case_table_names'").await.unwrap();
    let types: Vec<ColumnType> = result.columns().unwrap().iter().map(|c| c.column_type()).collect();
    let rows: Vec<Row> = result.collect().await.unwrap();
    assert_eq!(types, [ColumnType::MYSQL_TYPE_VAR_STRING, ColumnType::MYSQL_TYPE_VAR_STRING]);
    assert_eq!(rows.len(), 1);

    let users: (String, String) = conn.query_first("SELECT CURRENT_USER(), USER()").await.unwrap().unwrap();
    assert_eq!(users, ("root@%".to_string(), "root@127.0.0.1".to_string()));
    let grants: String = conn.query_first("SHOW GRANTS").await.unwrap().unwrap();
    assert!(grants.contains("'root'@'%'"), "{grants}");
    let privileges: Vec<(String, String, String)> = conn.query("SHOW PRIVILEGES").await.unwrap();
    assert!(privileges.iter().any(|(p, _, _)| p == "Select"), "{privileges:?}");
}

/// History: a client sets a session variable and a user variable and prepares a statement, then changes user
/// (COM_CHANGE_USER, what mysql2's changeUser and connection pools send) into database `shop`, and once more with a
/// wrong password.
/// Property: the changed connection is a fresh session of that user in `shop` (variables and prepared statements
/// gone, still listed once in the process list); a wrong password is refused with 1045 and ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_starts_a_fresh_session() {
    let cluster = TestCluster::start("tools-change-user", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE shop PARTITIONS 2").await.unwrap();
    conn.query_drop("SET @x = 5, sql_mode = 'ANSI'").await.unwrap();
    let id: u32 = conn.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();

    conn.change_user(ChangeUserOpts::default().with_db_name(Some("shop".into()))).await.unwrap();
    let db: Option<String> = conn.query_first("SELECT DATABASE()").await.unwrap().unwrap();
    assert_eq!(db.as_deref(), Some("shop"));
    let x: Option<i64> = conn.query_first("SELECT @x").await.unwrap().unwrap();
    assert_eq!(x, None, "user variables belong to the old session");
    let mode: String = conn.query_first("SELECT @@sql_mode").await.unwrap().unwrap();
    assert_ne!(mode, "ANSI", "session variables belong to the old session");
    let same: u32 = conn.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    assert_eq!(same, id, "the connection stays the same");
    let listed: Vec<Row> =
        conn.query(format!("SELECT * FROM information_schema.PROCESSLIST WHERE ID = {id}")).await.unwrap();
    assert_eq!(listed.len(), 1, "the changed connection is listed once");
    conn.query_drop("CREATE TABLE t (a INT PRIMARY KEY)").await.unwrap();

    let error = conn.change_user(ChangeUserOpts::default().with_pass(Some("wrong".into()))).await.unwrap_err();
    assert!(matches!(&error, mysql_async::Error::Server(e) if e.code == 1045), "{error}");
    assert!(conn.query_drop("SELECT 1").await.is_err(), "a refused change ends the connection");
}

/// History: a statement fails, then SHOW WARNINGS, SHOW ERRORS and SHOW COUNT(*) ERRORS, then a statement succeeds
/// and SHOW WARNINGS again; the same through a prepared statement's error.
/// Property: the diagnostics list the previous statement's error (level, code, message) and do not clear it
/// themselves; a successful statement clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_warnings_lists_the_previous_error() {
    let cluster = TestCluster::start("tools-warnings", 1).await;
    let mut conn = cluster.conn().await;
    assert!(conn.query_drop("SELECT * FROM information_schema.NO_SUCH").await.is_err());
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!((warnings[0].0.as_str(), warnings[0].1), ("Error", 1146));
    let errors: Vec<(String, u32, String)> = conn.query("SHOW ERRORS LIMIT 10").await.unwrap();
    assert_eq!(errors, warnings, "SHOW WARNINGS did not clear the error");
    let count: i64 = conn.query_first("SHOW COUNT(*) ERRORS").await.unwrap().unwrap();
    assert_eq!(count, 1);
    let error_count: i64 = conn.query_first("SELECT @@error_count").await.unwrap().unwrap();
    assert_eq!(error_count, 1);

    conn.query_drop("SELECT 1").await.unwrap();
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");

    assert!(conn.exec_drop("SELECT * FROM nowhere.t WHERE a = ?", (1,)).await.is_err());
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "a prepared statement's error is listed too: {warnings:?}");
}

/// History: a table created as a MySQL dump creates it (`AUTO_INCREMENT=5`, rows 1 to 4 inserted with their ids),
/// then a row without an id; SHOW CREATE TABLE of it and of a fresh table.
/// Property: the generated id is 5, never one of the loaded ones; SHOW CREATE TABLE prints the next value as MySQL
/// does (so Canopy's own dump recreates it), and nothing for a table that has given no value yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dumped_auto_increment_continues_after_the_loaded_rows() {
    let cluster = TestCluster::start("tools-auto-increment", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE shop PARTITIONS 2").await.unwrap();
    conn.query_drop("USE shop").await.unwrap();
    conn.query_drop(
        "CREATE TABLE products (id INT NOT NULL AUTO_INCREMENT, sku VARCHAR(20), PRIMARY KEY (id)) \
         ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=utf8mb4",
    )
    .await
    .unwrap();
    conn.query_drop("INSERT INTO products VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d')").await.unwrap();
    conn.query_drop("INSERT INTO products (sku) VALUES ('e')").await.unwrap();
    assert_eq!(conn.last_insert_id(), Some(5));
    let create: (String, String) = conn.query_first("SHOW CREATE TABLE products").await.unwrap().unwrap();
    assert!(create.1.ends_with(") AUTO_INCREMENT=6"), "{}", create.1);

    conn.query_drop("CREATE TABLE fresh (id INT AUTO_INCREMENT PRIMARY KEY)").await.unwrap();
    let create: (String, String) = conn.query_first("SHOW CREATE TABLE fresh").await.unwrap().unwrap();
    assert!(!create.1.contains("AUTO_INCREMENT="), "{}", create.1);
}
