//! MySQL warnings from real `canopy` processes through a real client: what Canopy ignores or changes in DDL raises
//! MySQL's notes and warnings, counted in the OK packet (`Conn::get_warnings`), listed by SHOW WARNINGS, and
//! cleared by the next statement that raises none.

mod support;

use mysql_async::prelude::Queryable;
use support::TestCluster;

type Condition = (String, u32, String);

fn condition(level: &str, code: u32, message: &str) -> Condition {
    (level.to_string(), code, message.to_string())
}

/// History: on a one-leaf cluster, CREATE TABLE with `ENGINE=InnoDB` and options Canopy drops, a CREATE INDEX
/// with clauses it drops, then DDL with what Canopy does anyway; CREATE ... IF NOT EXISTS of an existing database and table; DROP ... IF EXISTS of missing
/// ones (a table of a missing database too); SHOW WARNINGS twice, SHOW COUNT(*) WARNINGS, @@warning_count, then a
/// plain statement; a failing statement; a dump's `SET sql_notes = 0`.
/// Property: each statement's warning count is what SHOW WARNINGS then lists, with MySQL's levels, codes and
/// wording; the diagnostics statements leave the list in place, any other statement replaces it (a statement
/// raising none clears it); the tables were created all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_raises_mysql_notes_and_warnings() {
    let cluster = TestCluster::start("warnings", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE shop PARTITIONS 2").await.unwrap();
    assert_eq!(conn.get_warnings(), 0);
    conn.query_drop("USE shop").await.unwrap();

    conn.query_drop(
        "CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(20) COLLATE utf8mb4_general_ci) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 ROW_FORMAT=COMPRESSED",
    )
    .await
    .unwrap();
    assert_eq!(conn.get_warnings(), 3);
    let expected = [
        condition("Warning", 1266, "Using storage engine Canopy for table 'orders'"),
        condition("Warning", 1478, "Canopy: ignoring ROW_FORMAT=COMPRESSED"),
        condition("Warning", 1478, "Canopy: ignoring COLLATE utf8mb4_general_ci on column 'note'"),
    ];
    for _ in 0..2 {
        let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(shown, expected, "SHOW WARNINGS lists them and leaves them in place");
    }
    let count: Option<u64> = conn.query_first("SHOW COUNT(*) WARNINGS").await.unwrap();
    assert_eq!(count, Some(3));
    let errors: Vec<Condition> = conn.query("SHOW ERRORS").await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let counts: Option<(u64, u64)> = conn.query_first("SELECT @@warning_count, @@error_count").await.unwrap();
    assert_eq!(counts, Some((3, 0)));
    let cleared: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert!(cleared.is_empty(), "the SELECT raised none and replaced them: {cleared:?}");

    conn.query_drop("INSERT INTO orders VALUES (1, 'a')").await.unwrap();
    assert_eq!(conn.get_warnings(), 0, "the table was created all the same");
    conn.query_drop("CREATE INDEX by_note USING HASH ON orders (note DESC)").await.unwrap();
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(
        shown,
        [
            condition("Warning", 1478, "Canopy: ignoring USING HASH on key 'by_note'"),
            condition("Warning", 1478, "Canopy: ignoring DESC on key 'by_note'"),
        ]
    );
    conn.query_drop("ALTER TABLE orders ADD KEY (id)").await.unwrap();
    assert_eq!(conn.get_warnings(), 0);

    // What Canopy does anyway raises nothing.
    conn.query_drop(
        "CREATE TABLE plain (id INT PRIMARY KEY, n VARCHAR(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin) \
         ENGINE=Canopy DEFAULT CHARSET=utf8mb4",
    )
    .await
    .unwrap();
    assert_eq!(conn.get_warnings(), 0);

    // IF [NOT] EXISTS on objects that are there, or are not: MySQL's notes.
    conn.query_drop("CREATE DATABASE IF NOT EXISTS shop").await.unwrap();
    assert_eq!(conn.get_warnings(), 1);
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(shown, [condition("Note", 1007, "Can't create database 'shop'; database exists")]);
    conn.query_drop("CREATE TABLE IF NOT EXISTS orders (id INT PRIMARY KEY) ENGINE=MyISAM").await.unwrap();
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(shown, [condition("Note", 1050, "Table 'orders' already exists")], "nothing was created");
    conn.query_drop("DROP TABLE IF EXISTS plain, gone, nowhere.t").await.unwrap();
    assert_eq!(conn.get_warnings(), 2);
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(
        shown,
        [condition("Note", 1051, "Unknown table 'shop.gone'"), condition("Note", 1051, "Unknown table 'nowhere.t'")]
    );
    let tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    assert_eq!(tables, ["orders"], "the existing table was dropped");
    conn.query_drop("DROP DATABASE IF EXISTS nowhere").await.unwrap();
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(shown, [condition("Note", 1008, "Can't drop database 'nowhere'; database doesn't exist")]);

    // A failed statement leaves only its error; a plain one clears everything.
    assert!(conn.query_drop("SELECT * FROM no_such_table").await.is_err());
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!((shown.len(), shown[0].0.as_str(), shown[0].1), (1, "Error", 1146));
    let count: i64 = conn.query_first("SELECT COUNT(*) FROM orders").await.unwrap().unwrap();
    assert_eq!((count, conn.get_warnings()), (1, 0));
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert!(shown.is_empty(), "{shown:?}");

    // A dump sets `sql_notes = 0` while it loads: notes are not recorded, warnings are.
    conn.query_drop("SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0").await.unwrap();
    conn.query_drop("DROP TABLE IF EXISTS gone").await.unwrap();
    assert_eq!(conn.get_warnings(), 0);
    conn.query_drop("CREATE TABLE dumped (id INT PRIMARY KEY) ENGINE=InnoDB").await.unwrap();
    assert_eq!(conn.get_warnings(), 1);
    conn.query_drop("SET SQL_NOTES=@OLD_SQL_NOTES").await.unwrap();
    conn.query_drop("DROP TABLE IF EXISTS gone").await.unwrap();
    assert_eq!(conn.get_warnings(), 1);
}
