//! The front end driven by a real MySQL client library (mysql_async): authentication, text and binary result sets,
//! prepared statements, errors, multi-statement text, and the statements the front end answers itself.

mod common;

use common::{Harness, server_error};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value as MyValue};

#[tokio::test]
async fn empty_password_login_and_connect_time_queries() {
    // mysql_async runs `SELECT @@max_allowed_packet,@@wait_timeout` while connecting; the front end must answer it
    // without the backend.
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    assert_eq!(conn.server_version(), (5, 7, 32));
    let comment: Option<String> = conn.query_first("SELECT @@version_comment LIMIT 1").await.unwrap();
    assert_eq!(comment.as_deref(), Some("Canopy"));
    let packet: Option<u64> = conn.query_first("SELECT @@max_allowed_packet").await.unwrap();
    assert_eq!(packet, Some(64 * 1024 * 1024));
    conn.ping().await.unwrap();
    conn.disconnect().await.unwrap();
    assert!(harness.seen().is_empty(), "the backend saw {:?}", harness.seen());
}

#[tokio::test]
async fn configured_password_right_and_wrong() {
    let harness = Harness::start_default().await;
    let mut conn = Conn::new(harness.opts("alice", Some("secret"))).await.unwrap();
    conn.ping().await.unwrap();
    conn.disconnect().await.unwrap();

    let wrong = server_error(Conn::new(harness.opts("alice", Some("nope"))).await.unwrap_err());
    assert_eq!((wrong.code, wrong.state.as_str()), (1045, "28000"));
    assert_eq!(wrong.message, "Access denied for user 'alice'@'127.0.0.1' (using password: YES)");

    let missing = server_error(Conn::new(harness.opts("alice", None)).await.unwrap_err());
    assert!(missing.message.ends_with("(using password: NO)"), "{}", missing.message);

    let unknown = server_error(Conn::new(harness.opts("mallory", None)).await.unwrap_err());
    assert_eq!((unknown.code, unknown.state.as_str()), (1045, "28000"));
}

#[tokio::test]
async fn text_result_set_with_every_kind_of_column() {
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    let rows: Vec<Row> = conn.query("SELECT kinds").await.unwrap();
    assert_eq!(rows.len(), 3);
    let types: Vec<ColumnType> = rows[0].columns_ref().iter().map(|c| c.column_type()).collect();
    assert_eq!(
        types,
        vec![
            ColumnType::MYSQL_TYPE_LONGLONG,   // INTEGER
            ColumnType::MYSQL_TYPE_DOUBLE,     // REAL
            ColumnType::MYSQL_TYPE_VAR_STRING, // TEXT
            ColumnType::MYSQL_TYPE_BLOB,       // BLOB
            ColumnType::MYSQL_TYPE_DOUBLE,     // no declared type, Integer and Real mixed
            ColumnType::MYSQL_TYPE_LONGLONG,   // NUMERIC holding integers
            ColumnType::MYSQL_TYPE_VAR_STRING, // INTEGER holding text falls back to string
        ]
    );
    let names: Vec<String> = rows[0].columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
    assert_eq!(names, ["id", "price", "name", "data", "expr", "amount", "loose"]);

    type Kinds = (Option<i64>, Option<f64>, Option<String>, Option<Vec<u8>>, Option<f64>, Option<i64>, String);
    let decoded: Vec<Kinds> = rows.into_iter().map(mysql_async::from_row).collect();
    assert_eq!(
        decoded,
        vec![
            (Some(1), Some(9.5), Some("apple".into()), Some(vec![0, 1, 255]), Some(1.0), Some(10), "5".into()),
            (None, None, None, None, Some(2.5), None, "five".into()),
            (Some(i64::MIN), Some(1e300), Some("päron 'q'".into()), Some(vec![]), None, Some(20), "6".into()),
        ]
    );
}

#[tokio::test]
async fn prepared_statement_parameters_become_literals_and_rows_come_back_binary() {
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    let params = (-5i64, 1u64 << 40, 2.5f64, "it's".to_string(), vec![0u8, 255], None::<i64>);
    let rows: Vec<Row> = conn.exec("SELECT ?, ?, ?, ?, ?, ?", params).await.unwrap();
    assert_eq!(harness.seen(), ["SELECT -5, 1099511627776, 2.5e0, 'it''s', X'00FF', NULL"]);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    // Binary protocol: numbers arrive as native integers and doubles, not as text.
    assert_eq!(row.as_ref(0), Some(&MyValue::Int(-5)));
    assert_eq!(row.as_ref(1), Some(&MyValue::Int(1 << 40)));
    assert_eq!(row.as_ref(2), Some(&MyValue::Double(2.5)));
    assert_eq!(row.as_ref(3), Some(&MyValue::Bytes(b"it's".to_vec())));
    assert_eq!(row.as_ref(4), Some(&MyValue::Bytes(vec![0, 255])));
    assert_eq!(row.as_ref(5), Some(&MyValue::NULL));
    assert_eq!(row.columns_ref()[4].column_type(), ColumnType::MYSQL_TYPE_BLOB);

    // The statement is cached and executed again with new values.
    type Echo = (i64, u64, f64, String, Vec<u8>, Option<i64>);
    let again: Vec<Echo> =
        conn.exec("SELECT ?, ?, ?, ?, ?, ?", (7i64, 8u64, -0.5f64, "é", vec![1u8], Some(9i64))).await.unwrap();
    assert_eq!(again, vec![(7, 8, -0.5, "é".to_string(), vec![1], Some(9))]);
    // Bytes that are valid UTF-8 arrive as text (mysql_async sends Vec<u8> as a string type); others as a blob.
    assert_eq!(harness.seen()[1], "SELECT 7, 8, -5e-1, 'é', '\u{1}', 9");
}

#[tokio::test]
async fn prepared_statements_for_writes_and_local_answers() {
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    conn.exec_drop("INSERT INTO t VALUES (?, ?)", (1i64, "a")).await.unwrap();
    assert_eq!(conn.affected_rows(), 3);
    assert_eq!(conn.last_insert_id(), Some(42));
    assert_eq!(harness.seen(), ["INSERT INTO t VALUES (1, 'a')"]);
    // A prepared variable select is answered locally, in the binary protocol.
    let comment: Option<String> = conn.exec_first("SELECT @@version_comment", ()).await.unwrap();
    assert_eq!(comment.as_deref(), Some("Canopy"));
    let unsigned_max: Vec<Row> = conn.exec("SELECT ?", (u64::MAX,)).await.unwrap();
    assert_eq!(unsigned_max.len(), 1);
    // SQLite has no unsigned 64-bit integer; the value travels as the real SQLite would make of it.
    assert_eq!(harness.seen()[1], "SELECT 1.8446744073709552e19");
    let error = server_error(conn.exec_drop("SELECT * FROM missing", ()).await.unwrap_err());
    assert_eq!((error.code, error.state.as_str()), (1146, "42S02"));
}

#[tokio::test]
async fn error_packets_carry_code_and_sqlstate() {
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    let error = server_error(conn.query_drop("SELECT * FROM missing").await.unwrap_err());
    assert_eq!(
        (error.code, error.state.as_str(), error.message.as_str()),
        (1146, "42S02", "Table 'shop.missing' doesn't exist")
    );
    let unknown = server_error(conn.query_drop("SELECT @@no_such_variable").await.unwrap_err());
    assert_eq!((unknown.code, unknown.state.as_str()), (1193, "HY000"));
    assert_eq!(unknown.message, "Unknown system variable 'no_such_variable'");
    let empty = server_error(conn.query_drop("   ").await.unwrap_err());
    assert_eq!(empty.code, 1065);
    // The connection is still usable after errors.
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test]
async fn databases_from_the_handshake_and_from_use() {
    let harness = Harness::start_default().await;
    let mut conn = Conn::new(harness.opts("root", None).db_name(Some("shop"))).await.unwrap();
    let db: Option<Option<String>> = conn.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db, Some(Some("shop".into())));
    conn.query_drop("USE test").await.unwrap();
    let db: Option<String> = conn.query_first("SELECT DATABASE() AS db").await.unwrap();
    assert_eq!(db.as_deref(), Some("test"));
    let bad = server_error(conn.query_drop("USE nowhere").await.unwrap_err());
    assert_eq!(bad.code, 1049);

    let refused = server_error(Conn::new(harness.opts("root", None).db_name(Some("nowhere"))).await.unwrap_err());
    assert_eq!((refused.code, refused.message.as_str()), (1049, "Unknown database 'nowhere'"));
    assert!(harness.seen().is_empty(), "USE and DATABASE() must not reach query(): {:?}", harness.seen());
}

#[tokio::test]
async fn session_sets_are_answered_locally_and_global_ones_forwarded() {
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    conn.query_drop("SET NAMES utf8mb4").await.unwrap();
    conn.query_drop("SET autocommit = 0, @@session.sql_mode = 'ANSI'").await.unwrap();
    let (autocommit, mode, role): (i64, String, String) =
        conn.query_first("SELECT @@autocommit, @@SESSION.sql_mode AS m, @@canopy_role").await.unwrap().unwrap();
    assert_eq!((autocommit, mode.as_str(), role.as_str()), (0, "ANSI", "aggregator"));
    let bad = server_error(conn.query_drop("SET autocommit = 'maybe'").await.unwrap_err());
    assert_eq!((bad.code, bad.state.as_str()), (1231, "42000"));
    conn.query_drop("SET GLOBAL max_connections = 5").await.unwrap();
    let id: Option<u32> = conn.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(id, Some(conn.id()));
    assert_eq!(harness.seen(), ["SET GLOBAL max_connections = 5"]);
    // COM_RESET_CONNECTION forgets session settings.
    assert!(conn.reset().await.unwrap());
    let autocommit: Option<i64> = conn.query_first("SELECT @@autocommit").await.unwrap();
    assert_eq!(autocommit, Some(1));
}

#[tokio::test]
async fn multi_statement_text_returns_every_result_and_stops_at_the_first_error() {
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    let mut results = conn.query_iter("SELECT 1; SELECT 'two;three'; INSERT INTO t VALUES (1);").await.unwrap();
    let first: Vec<i64> = results.collect().await.unwrap();
    let second: Vec<String> = results.collect().await.unwrap();
    let third: Vec<Row> = results.collect().await.unwrap();
    assert_eq!((first, second, third.len()), (vec![1], vec!["two;three".to_string()], 0));
    assert_eq!(results.affected_rows(), 3);
    assert_eq!(results.info(), "Records: 3");
    drop(results);

    let mut results = conn.query_iter("SELECT 1; SELECT * FROM missing; SELECT 2").await.unwrap();
    let first: Vec<i64> = results.collect().await.unwrap();
    assert_eq!(first, vec![1]);
    let error = server_error(results.collect::<Row>().await.unwrap_err());
    assert_eq!(error.code, 1146);
    drop(results);
    assert!(!harness.seen().contains(&"SELECT 2".to_string()), "ran past the error: {:?}", harness.seen());
    conn.ping().await.unwrap();
}

#[tokio::test]
async fn too_many_connections_are_refused_with_1040() {
    let harness = Harness::start(canopy_mysql::Limits { max_connections: 1, ..Default::default() }).await;
    let mut first = harness.connect().await;
    let refused = server_error(Conn::new(harness.opts("root", None)).await.unwrap_err());
    assert_eq!((refused.code, refused.message.as_str()), (1040, "Too many connections"));
    first.ping().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_serve_returns() {
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    conn.ping().await.unwrap();
    harness.stop().await.unwrap();
    assert!(conn.ping().await.is_err());
}

/// History: a statement raises a note and a warning; the OK packet counts them, SHOW WARNINGS lists them (twice: it
/// does not clear them), SHOW ERRORS lists none, SHOW COUNT(*) WARNINGS and @@warning_count count them (the select
/// then clears them, raising none), a result set carries its warning count in the packet that ends it, and a
/// failed statement leaves only its error. `SET sql_notes = 0` keeps notes out.
#[tokio::test]
async fn warnings_are_counted_listed_and_cleared() {
    let harness = Harness::start_default().await;
    let mut conn = harness.connect().await;
    type Condition = (String, u32, String);
    let note = ("Note".to_string(), 1051, "Unknown table 'shop.gone'".to_string());
    let warning = ("Warning".to_string(), 1266, "Using storage engine Canopy for table 'engine'".to_string());

    conn.query_drop("DROP TABLE IF EXISTS gone, engine").await.unwrap();
    assert_eq!(conn.get_warnings(), 2);
    for _ in 0..2 {
        let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(shown, [note.clone(), warning.clone()]);
    }
    let limited: Vec<Condition> = conn.query("SHOW WARNINGS LIMIT 1, 1").await.unwrap();
    assert_eq!(limited, std::slice::from_ref(&warning));
    let errors: Vec<Condition> = conn.query("SHOW ERRORS").await.unwrap();
    assert!(errors.is_empty());
    let count: Option<u64> = conn.query_first("SHOW COUNT(*) WARNINGS").await.unwrap();
    assert_eq!(count, Some(2));
    let counts: Option<(u64, u64)> = conn.query_first("SELECT @@warning_count, @@error_count").await.unwrap();
    assert_eq!(counts, Some((2, 0)));
    let cleared: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert!(cleared.is_empty(), "the SELECT raised nothing, so it cleared them: {cleared:?}");

    // Rows: the end-of-rows packet carries the count (text and binary protocol alike).
    let mut result = conn.query_iter("SELECT warned").await.unwrap();
    let rows: Vec<Row> = result.collect().await.unwrap();
    assert_eq!((rows.len(), result.warnings()), (1, 1));
    drop(result);
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(shown, [("Warning".to_string(), 1365, "Division by 0".to_string())]);
    let _: Vec<Row> = conn.exec("SELECT warned", ()).await.unwrap();
    assert_eq!(conn.get_warnings(), 1);

    // An error replaces them; a statement without conditions clears them.
    conn.query_drop("DROP TABLE IF EXISTS gone, engine").await.unwrap();
    server_error(conn.query_drop("SELECT * FROM missing").await.unwrap_err());
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(shown, [("Error".to_string(), 1146, "Table 'shop.missing' doesn't exist".to_string())]);
    let count: Option<u64> = conn.query_first("SHOW COUNT(*) ERRORS").await.unwrap();
    assert_eq!(count, Some(1));
    conn.query_drop("SELECT 1").await.unwrap();
    assert_eq!(conn.get_warnings(), 0);
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert!(shown.is_empty());

    // sql_notes = 0 (what a dump sets while it loads): the note is not recorded, the warning is.
    conn.query_drop("SET sql_notes = 0").await.unwrap();
    conn.query_drop("DROP TABLE IF EXISTS gone, engine").await.unwrap();
    assert_eq!(conn.get_warnings(), 1);
    let shown: Vec<Condition> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(shown, [warning]);
}
