//! Tables through real processes: CREATE TABLE with and without SHARD KEY, reference tables, keyless tables,
//! CREATE INDEX, SHOW TABLES, DESCRIBE, SHOW CREATE TABLE, DROP TABLE and DROP DATABASE.

mod support;

use mysql_async::Row;
use mysql_async::prelude::Queryable;
use support::TestCluster;

/// History: a database on 3 leaves with a sharded table, a reference table and a keyless table.
/// Property: the catalog commands show what was created, reference rows are visible next to every partition (a
/// join answers from all of them), keyless rows spread over several partitions, and drops remove everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_indexes_and_drops() {
    let cluster = TestCluster::start("ddl", 3).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE shop PARTITIONS 6").await.unwrap();
    conn.query_drop("USE shop").await.unwrap();
    conn.query_drop(
        "CREATE TABLE orders (id BIGINT NOT NULL AUTO_INCREMENT, customer INT(11) UNSIGNED NOT NULL, \
         amount DECIMAL(10,2) DEFAULT '0', note VARCHAR(40), PRIMARY KEY (id, customer), SHARD KEY (customer)) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )
    .await
    .unwrap();
    conn.query_drop("CREATE REFERENCE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20))").await.unwrap();
    conn.query_drop("CREATE TABLE events (kind VARCHAR(10), at DATETIME)").await.unwrap();
    conn.query_drop("CREATE INDEX by_note ON orders (note)").await.unwrap();
    conn.query_drop("CREATE TABLE IF NOT EXISTS customers (id INT PRIMARY KEY)").await.unwrap();

    let tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    assert_eq!(tables, ["customers", "events", "orders"]);
    let describe: Vec<Row> = conn.query("DESCRIBE orders").await.unwrap();
    let fields: Vec<(String, String)> =
        describe.iter().map(|r| (r.get::<String, _>("Field").unwrap(), r.get::<String, _>("Key").unwrap())).collect();
    assert_eq!(fields[0], ("id".to_string(), "PRI".to_string()));
    assert_eq!(fields[3], ("note".to_string(), "MUL".to_string()));
    let create: Row = conn.query_first("SHOW CREATE TABLE orders").await.unwrap().unwrap();
    let text: String = create.get(1).unwrap();
    assert!(text.contains("SHARD KEY") && text.contains("customer"), "{text}");

    conn.query_drop("INSERT INTO customers VALUES (1, 'ann'), (2, 'bob'), (3, 'cy')").await.unwrap();
    // LAST_INSERT_ID of a reference table insert is the AUTO_INCREMENT value given, not a leaf's internal rowid;
    // an UPDATE reports none.
    conn.query_drop("CREATE REFERENCE TABLE tags (id INT AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(10))").await.unwrap();
    conn.query_drop("INSERT INTO tags (tag) VALUES ('red'), ('blue')").await.unwrap();
    let first = conn.last_insert_id().expect("an id was assigned");
    let red: u64 = conn.query_first("SELECT id FROM tags WHERE tag = 'red'").await.unwrap().unwrap();
    assert_eq!(first, red);
    conn.query_drop("UPDATE tags SET tag = 'green' WHERE tag = 'blue'").await.unwrap();
    assert_eq!((conn.affected_rows(), conn.last_insert_id()), (1, None));
    conn.query_drop("DROP TABLE tags").await.unwrap();
    for c in 1..=3 {
        for i in 0..10 {
            conn.query_drop(format!("INSERT INTO orders (customer, amount, note) VALUES ({c}, {i}.5, 'n{i}')"))
                .await
                .unwrap();
        }
    }
    let joined: Vec<(String, i64, f64)> = conn
        .query(
            "SELECT c.name, COUNT(*), SUM(o.amount) FROM orders o JOIN customers c ON c.id = o.customer \
             GROUP BY c.name ORDER BY c.name",
        )
        .await
        .unwrap();
    assert_eq!(joined, vec![("ann".into(), 10, 50.0), ("bob".into(), 10, 50.0), ("cy".into(), 10, 50.0)]);
    let by_note: i64 = conn.query_first("SELECT COUNT(*) FROM orders WHERE note = 'n3'").await.unwrap().unwrap();
    assert_eq!(by_note, 3);

    let values: Vec<String> =
        (0..60).map(|i| format!("('k{}', '2026-01-{:02} 10:00:00')", i % 4, i % 28 + 1)).collect();
    conn.query_drop(format!("INSERT INTO events VALUES {}", values.join(","))).await.unwrap();
    let n: i64 = conn.query_first("SELECT COUNT(*) FROM events WHERE at >= '2026-01-15'").await.unwrap().unwrap();
    assert_eq!(n, (0..60).filter(|i| i % 28 + 1 >= 15).count() as i64);
    // Keyless rows are spread: more than one partition holds some.
    let mut holding = 0;
    for leaf in &cluster.leaves {
        let mut direct = leaf.connect().await;
        let names: Vec<String> = direct.query("SHOW DATABASES").await.unwrap();
        for name in names.into_iter().filter(|n| n.starts_with("shop_")) {
            direct.query_drop(format!("USE {name}")).await.unwrap();
            let k: i64 = direct.query_first("SELECT COUNT(*) FROM events").await.unwrap().unwrap();
            holding += usize::from(k > 0);
        }
    }
    assert!(holding > 1, "keyless rows landed in {holding} partition(s)");

    conn.query_drop("DROP TABLE events, customers").await.unwrap();
    let tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    assert_eq!(tables, ["orders"]);
    assert!(conn.query_drop("SELECT * FROM customers").await.is_err());
    conn.query_drop("DROP TABLE IF EXISTS customers").await.unwrap();
    conn.query_drop("DROP DATABASE shop").await.unwrap();
    let dbs: Vec<String> = conn.query("SHOW DATABASES").await.unwrap();
    assert_eq!(dbs, ["information_schema"]);
    let mut direct = cluster.leaves[0].connect().await;
    let dbs: Vec<String> = direct.query("SHOW DATABASES").await.unwrap();
    assert_eq!(dbs, ["information_schema"], "the leaf dropped its partitions");
}

/// History: two connections insert into one AUTO_INCREMENT table at once, single rows and batches, past several
/// of the aggregator's reserved ranges (1,000 values each); then one INSERT of 2,500 rows, more than a range holds.
/// Property: every row gets a value, no value is given twice, each connection's values increase, and
/// LAST_INSERT_ID is the first value of the last statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_increment_values_stay_unique_across_reserved_ranges() {
    let cluster = TestCluster::start("ddl-auto-increment", 1).await;
    let mut conn = cluster.conn().await;
    conn.query_drop("CREATE DATABASE ai PARTITIONS 4").await.unwrap();
    conn.query_drop("CREATE TABLE ai.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, writer INT, n INT)").await.unwrap();
    let mut writers = Vec::new();
    for writer in 0..2 {
        let mut conn = cluster.conn().await;
        writers.push(tokio::spawn(async move {
            let mut firsts = Vec::new();
            for round in 0..30 {
                let rows: Vec<String> = (0..(1 + round % 3) * 25).map(|n| format!("({writer}, {n})")).collect();
                conn.query_drop(format!("INSERT INTO ai.t (writer, n) VALUES {}", rows.join(", "))).await.unwrap();
                firsts.push(conn.last_insert_id().expect("a value was assigned"));
            }
            firsts
        }));
    }
    for writer in writers {
        let firsts = writer.await.unwrap();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "values increase per connection: {firsts:?}");
    }
    let rows: Vec<String> = (0..2500).map(|n| format!("(9, {n})")).collect();
    conn.query_drop(format!("INSERT INTO ai.t (writer, n) VALUES {}", rows.join(", "))).await.unwrap();
    let first = conn.last_insert_id().unwrap();
    let (count, distinct): (i64, i64) =
        conn.query_first("SELECT COUNT(*), COUNT(DISTINCT id) FROM ai.t").await.unwrap().unwrap();
    assert_eq!(count, 2 * (10 * (25 + 50 + 75)) + 2500);
    assert_eq!(distinct, count, "no AUTO_INCREMENT value given twice");
    let (low, high): (u64, u64) =
        conn.query_first("SELECT MIN(id), MAX(id) FROM ai.t WHERE writer = 9").await.unwrap().unwrap();
    assert_eq!((low, high), (first, first + 2499), "one statement's values are consecutive");
}
