//! MySQL's INFORMATION_SCHEMA tables through real processes, as GUI clients and ORM reflection query them.

mod support;

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::TestCluster;

type Text = Option<String>;

/// History: a database with a distributed table (composite primary key, shard key, unique and plain indexes,
/// AUTO_INCREMENT, DECIMAL, VARCHAR with a default) and a reference table, on 2 leaves.
/// Property: SCHEMATA, TABLES, COLUMNS, STATISTICS, KEY_COLUMN_USAGE and TABLE_CONSTRAINTS describe exactly that
/// schema with MySQL's columns and values; they filter and join like tables; the tables Canopy has nothing for
/// (VIEWS, ROUTINES, TRIGGERS, REFERENTIAL_CONSTRAINTS) answer with no rows; an unknown one is error 1146. The
/// catalog SHOW statements (INDEX, TABLE STATUS, FULL COLUMNS, CREATE DATABASE, GRANTS, ENGINES...) agree with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn information_schema_describes_the_schema() {
    let cluster = TestCluster::start("information-schema", 2).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE app PARTITIONS 4").await.unwrap();
    conn.query_drop("USE app").await.unwrap();
    conn.query_drop(
        "CREATE TABLE orders (id BIGINT NOT NULL AUTO_INCREMENT, customer INT(11) NOT NULL, \
         amount DECIMAL(10,2) DEFAULT '0', note VARCHAR(40) DEFAULT 'none', PRIMARY KEY (id, customer), \
         UNIQUE KEY by_ref (customer, id), KEY by_note (note), SHARD KEY (customer))",
    )
    .await
    .unwrap();
    conn.query_drop("CREATE REFERENCE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20))").await.unwrap();
    conn.query_drop("INSERT INTO orders (customer, amount) VALUES (1, 2.5), (2, 3.5)").await.unwrap();

    let schemata: Vec<String> =
        conn.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME").await.unwrap();
    assert_eq!(schemata, ["app", "information_schema"]);

    let tables: Vec<(String, String, String, String, Option<i64>)> = conn
        .query(
            "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, CREATE_OPTIONS, AUTO_INCREMENT FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = 'app' ORDER BY TABLE_NAME",
        )
        .await
        .unwrap();
    assert_eq!(
        tables,
        [
            ("customers".into(), "BASE TABLE".into(), "Canopy".into(), "reference".into(), None),
            ("orders".into(), "BASE TABLE".into(), "Canopy".into(), "shard key (customer)".into(), Some(3)),
        ]
    );

    let columns: Vec<Row> = conn
        .query(
            "SELECT COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, \
             NUMERIC_PRECISION, NUMERIC_SCALE, COLUMN_TYPE, COLUMN_KEY, EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'orders' ORDER BY ORDINAL_POSITION",
        )
        .await
        .unwrap();
    let shown: Vec<Vec<Text>> =
        columns.into_iter().map(|r| r.unwrap().into_iter().map(mysql_async::from_value::<Text>).collect()).collect();
    let row = |cells: &[Option<&str>]| cells.iter().map(|c| c.map(str::to_string)).collect::<Vec<Text>>();
    assert_eq!(
        shown,
        [
            row(&[
                Some("id"),
                Some("1"),
                None,
                Some("NO"),
                Some("bigint"),
                None,
                Some("19"),
                Some("0"),
                Some("bigint"),
                Some("PRI"),
                Some("auto_increment")
            ]),
            row(&[
                Some("customer"),
                Some("2"),
                None,
                Some("NO"),
                Some("int"),
                None,
                Some("10"),
                Some("0"),
                Some("int(11)"),
                Some("PRI"),
                Some("")
            ]),
            row(&[
                Some("amount"),
                Some("3"),
                Some("0"),
                Some("YES"),
                Some("decimal"),
                None,
                Some("10"),
                Some("2"),
                Some("decimal(10,2)"),
                Some(""),
                Some("")
            ]),
            row(&[
                Some("note"),
                Some("4"),
                Some("none"),
                Some("YES"),
                Some("varchar"),
                Some("40"),
                None,
                None,
                Some("varchar(40)"),
                Some("MUL"),
                Some("")
            ]),
        ]
    );

    let statistics: Vec<(String, i64, i64, String)> = conn
        .query(
            "SELECT INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'orders' ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        )
        .await
        .unwrap();
    assert_eq!(
        statistics,
        [
            ("PRIMARY".into(), 0, 1, "id".into()),
            ("PRIMARY".into(), 0, 2, "customer".into()),
            ("by_note".into(), 1, 1, "note".into()),
            ("by_ref".into(), 0, 1, "customer".into()),
            ("by_ref".into(), 0, 2, "id".into()),
        ]
    );

    let constraints: Vec<(String, String, String)> = conn
        .query(
            "SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = 'app' ORDER BY TABLE_NAME, CONSTRAINT_NAME",
        )
        .await
        .unwrap();
    assert_eq!(
        constraints,
        [
            ("customers".into(), "PRIMARY".into(), "PRIMARY KEY".into()),
            ("orders".into(), "PRIMARY".into(), "PRIMARY KEY".into()),
            ("orders".into(), "by_ref".into(), "UNIQUE".into()),
        ]
    );
    let primary: Vec<(String, i64)> = conn
        .query(
            "SELECT COLUMN_NAME, ORDINAL_POSITION FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'orders' AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
        )
        .await
        .unwrap();
    assert_eq!(primary, [("id".into(), 1), ("customer".into(), 2)]);

    // They join like tables: columns per table.
    let per_table: Vec<(String, i64)> = conn
        .query(
            "SELECT t.TABLE_NAME, COUNT(c.COLUMN_NAME) FROM information_schema.TABLES t \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME \
             WHERE t.TABLE_SCHEMA = 'app' GROUP BY t.TABLE_NAME ORDER BY t.TABLE_NAME",
        )
        .await
        .unwrap();
    assert_eq!(per_table, [("customers".into(), 2), ("orders".into(), 4)]);

    for empty in ["VIEWS", "ROUTINES", "TRIGGERS", "REFERENTIAL_CONSTRAINTS"] {
        let rows: Vec<Row> = conn.query(format!("SELECT * FROM information_schema.{empty}")).await.unwrap();
        assert!(rows.is_empty(), "{empty} has rows");
    }
    let routines: Vec<Text> =
        conn.query("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'app'").await.unwrap();
    assert!(routines.is_empty());
    let engines: Vec<(String, String)> =
        conn.query("SELECT ENGINE, SUPPORT FROM information_schema.ENGINES").await.unwrap();
    assert_eq!(engines, [("Canopy".into(), "DEFAULT".into())]);

    // The catalog SHOW statements answer from the same rows, under SHOW's column names.
    let index: Vec<Row> = conn.query("SHOW INDEX FROM orders").await.unwrap();
    let keys: Vec<(String, String, i64, String)> = index
        .iter()
        .map(|r| {
            (
                r.get("Table").unwrap(),
                r.get("Key_name").unwrap(),
                r.get("Seq_in_index").unwrap(),
                r.get("Column_name").unwrap(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 5);
    assert_eq!(keys[0], ("orders".into(), "PRIMARY".into(), 1, "id".into()));
    let status: Vec<Row> = conn.query("SHOW TABLE STATUS FROM app LIKE 'ord%'").await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].get::<String, _>("Name").unwrap(), "orders");
    assert_eq!(status[0].get::<String, _>("Engine").unwrap(), "Canopy");
    assert_eq!(status[0].get::<i64, _>("Auto_increment").unwrap(), 3);
    let full: Vec<Row> = conn.query("SHOW FULL COLUMNS FROM app.orders LIKE 'n%'").await.unwrap();
    assert_eq!(full.len(), 1);
    assert_eq!(full[0].get::<String, _>("Field").unwrap(), "note");
    assert_eq!(full[0].get::<String, _>("Collation").unwrap(), "utf8mb4_bin");
    let create: (String, String) = conn.query_first("SHOW CREATE DATABASE app").await.unwrap().unwrap();
    assert_eq!(create, ("app".into(), "CREATE DATABASE `app` PARTITIONS 4".into()));
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap();
    assert_eq!(grants, ["GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION"]);
    for empty in ["SHOW SLAVE STATUS", "SHOW MASTER STATUS", "SHOW PLUGINS"] {
        let rows: Vec<Row> = conn.query(empty).await.unwrap();
        assert!(rows.is_empty(), "{empty}");
    }
    let engines: Vec<Row> = conn.query("SHOW ENGINES").await.unwrap();
    assert_eq!(engines[0].get::<String, _>("Engine").unwrap(), "Canopy");
    let missing = conn.query_drop("SHOW INDEX FROM nope").await.unwrap_err();
    assert!(matches!(&missing, mysql_async::Error::Server(e) if e.code == 1146), "{missing:?}");

    let unknown = conn.query_drop("SELECT * FROM information_schema.NO_SUCH_TABLE").await.unwrap_err();
    match unknown {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1146, "{e:?}"),
        other => panic!("expected a server error, got {other:?}"),
    }
}
