//! Accounts and privileges through real processes and a real MySQL client: CREATE USER, logging in with
//! caching_sha2_password (mysql_async's choice when the server offers it) and with mysql_native_password (an
//! account identified WITH it: the server switches the client), GRANT / REVOKE / SHOW GRANTS, the error codes of
//! what an account may not do, INFORMATION_SCHEMA and SHOW PROCESSLIST filtered per account, COM_CHANGE_USER, SET
//! PASSWORD / ALTER USER, KILL of another account's connection, accounts surviving a restart of the master
//! aggregator, and DROP USER.

mod support;

use std::time::Instant;

use mysql_async::prelude::Queryable;
use support::{DEADLINE, NodeProc, TestCluster};

fn opts(node: &NodeProc, user: &str, password: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(node.port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .into()
}

async fn login(node: &NodeProc, user: &str, password: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
    mysql_async::Conn::new(opts(node, user, password)).await
}

/// The MySQL error code of a failed call (panics on success or on a non-server error).
fn code<T: std::fmt::Debug>(result: Result<T, mysql_async::Error>) -> u16 {
    match result {
        Err(mysql_async::Error::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

async fn grants(conn: &mut mysql_async::Conn, sql: &str) -> Vec<String> {
    conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// History: root creates a database with a table, an account `app` (caching_sha2_password, the default) and an
/// account `old` identified WITH mysql_native_password. Both log in. `app` is refused everything until root grants
/// it SELECT on the database; then it reads, through text and prepared statements, but cannot write; REVOKE takes
/// the read away again, on the open connection. Cluster commands need CLUSTER, account statements CREATE USER, and
/// KILL of root's connection is refused. A root connection changes user (COM_CHANGE_USER) to each account and holds
/// that account's privileges; a leaf refuses the accounts (it knows only root). Property: each refusal carries MySQL's error code (1142, 1044, 1227, 1095,
/// 1141, 1045), and SHOW GRANTS lists exactly what was granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_log_in_and_are_held_to_their_grants() {
    let cluster = TestCluster::start("users-grants", 1).await;
    let mut root = cluster.conn().await;
    root.query_drop("CREATE DATABASE shop PARTITIONS 2").await.unwrap();
    root.query_drop("CREATE TABLE shop.t (id INT PRIMARY KEY, v INT)").await.unwrap();
    root.query_drop("INSERT INTO shop.t VALUES (1, 10), (2, 20)").await.unwrap();
    root.query_drop("CREATE USER 'app'@'%' IDENTIFIED BY 's3cret'").await.unwrap();
    root.query_drop("CREATE USER 'old'@'localhost' IDENTIFIED WITH mysql_native_password BY 'n4tive'").await.unwrap();
    assert_eq!(code(root.query_drop("CREATE USER app IDENTIFIED BY 'x'").await), 1396);
    root.query_drop("CREATE USER IF NOT EXISTS app IDENTIFIED BY 'x'").await.unwrap();
    let notes: Vec<(String, u32, String)> = root.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(notes, [("Note".to_string(), 3163, "Authorization ID 'app'@'%' already exists.".to_string())]);

    let mut old = login(&cluster.master, "old", "n4tive").await.expect("native-password account logs in");
    let current: String = old.query_first("SELECT CURRENT_USER()").await.unwrap().unwrap();
    assert_eq!(current, "old@%");
    assert_eq!(code(login(&cluster.master, "app", "wrong").await), 1045);
    assert_eq!(code(login(&cluster.master, "app", "").await), 1045, "no password, even after the plugin switch");
    assert_eq!(code(login(&cluster.master, "old", "").await), 1045);
    assert_eq!(code(login(&cluster.master, "nobody", "s3cret").await), 1045);
    assert_eq!(code(login(&cluster.master, "old", "s3cret").await), 1045);
    let mut app = login(&cluster.master, "app", "s3cret").await.expect("caching_sha2_password account logs in");

    // Nothing granted: USAGE only.
    assert_eq!(grants(&mut app, "SHOW GRANTS").await, ["GRANT USAGE ON *.* TO 'app'@'%'"]);
    assert_eq!(code(app.query_drop("SELECT * FROM shop.t").await), 1142);
    assert_eq!(code(app.query_drop("USE shop").await), 1044);
    app.query_drop("USE information_schema").await.expect("INFORMATION_SCHEMA is every account's");
    let databases: Vec<String> = app.query("SHOW DATABASES").await.unwrap();
    assert_eq!(databases, ["information_schema"], "an account sees only databases it holds privileges on");
    assert_eq!(code(app.query_drop("CREATE DATABASE mine").await), 1044);
    assert_eq!(code(app.query_drop("SHOW LEAVES").await), 1227);
    assert_eq!(code(app.query_drop("SET GLOBAL auto_attach = 0").await), 1227);
    assert_eq!(code(app.query_drop("CREATE USER z IDENTIFIED BY 'z'").await), 1227);
    assert_eq!(code(app.query_drop("GRANT SELECT ON shop.* TO app").await), 1044, "no GRANT OPTION");
    assert_eq!(code(app.query_drop("SHOW GRANTS FOR old").await), 1227);
    let root_id: u32 = root.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    assert_eq!(code(app.query_drop(format!("KILL {root_id}")).await), 1095);
    let processes: Vec<mysql_async::Row> = app.query("SHOW PROCESSLIST").await.unwrap();
    let users: Vec<String> = processes.iter().map(|r| r.get::<String, _>(1).unwrap()).collect();
    assert_eq!(users, ["app"], "without CLUSTER an account sees only its own connections");
    let one: i64 = app.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1, "statements without tables need nothing");

    let listed = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'";
    let tables: Vec<String> = app.query(listed).await.unwrap();
    assert!(tables.is_empty(), "INFORMATION_SCHEMA hides databases the account holds nothing on: {tables:?}");
    root.query_drop("GRANT SELECT ON shop.* TO 'app'@'%'").await.unwrap();
    let tables: Vec<String> = app.query(listed).await.unwrap();
    assert_eq!(tables, ["t"]);
    let privileges: Vec<(String, String, String)> = app
        .query("SELECT GRANTEE, TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES")
        .await
        .unwrap();
    assert_eq!(privileges, [("'app'@'%'".to_string(), "shop".to_string(), "SELECT".to_string())]);
    app.query_drop("USE shop").await.expect("a grant takes effect on open connections");
    let sum: i64 = app.query_first("SELECT SUM(v) FROM t").await.unwrap().unwrap();
    assert_eq!(sum, 30);
    let v: i64 = app.exec_first("SELECT v FROM t WHERE id = ?", (2,)).await.unwrap().unwrap();
    assert_eq!(v, 20);
    assert_eq!(code(app.query_drop("INSERT INTO t VALUES (3, 30)").await), 1142);
    assert_eq!(code(app.query_drop("DROP TABLE t").await), 1142);
    let expected = ["GRANT USAGE ON *.* TO 'app'@'%'", "GRANT SELECT ON `shop`.* TO 'app'@'%'"];
    assert_eq!(grants(&mut app, "SHOW GRANTS").await, expected);
    assert_eq!(grants(&mut root, "SHOW GRANTS FOR 'app'@'%'").await, expected);

    root.query_drop("GRANT INSERT, CLUSTER ON *.* TO app").await.unwrap();
    app.query_drop("INSERT INTO t VALUES (3, 30)").await.expect("global INSERT covers every database");
    let leaves: Vec<mysql_async::Row> = app.query("SHOW LEAVES").await.expect("CLUSTER allows cluster commands");
    assert_eq!(leaves.len(), 1);
    assert_eq!(
        grants(&mut root, "SHOW GRANTS FOR app").await,
        ["GRANT INSERT, CLUSTER ON *.* TO 'app'@'%'", "GRANT SELECT ON `shop`.* TO 'app'@'%'"]
    );

    // COM_CHANGE_USER authenticates again (caching_sha2_password, the plugin of the connection), and the new
    // session holds the new account's privileges, not root's.
    let mut changed = cluster.conn().await;
    let to_app = mysql_async::ChangeUserOpts::default().with_user(Some("app".into())).with_pass(Some("s3cret".into()));
    changed.change_user(to_app.with_db_name(Some("shop".into()))).await.expect("change to app");
    let current: String = changed.query_first("SELECT CURRENT_USER()").await.unwrap().unwrap();
    assert_eq!(current, "app@%");
    assert_eq!(code(changed.query_drop("DROP TABLE t").await), 1142);
    let to_old = mysql_async::ChangeUserOpts::default().with_user(Some("old".into())).with_pass(Some("n4tive".into()));
    changed.change_user(to_old.with_db_name(None)).await.expect("change to the native-password account");
    assert_eq!(code(changed.query_drop("SELECT * FROM shop.t").await), 1142);
    // A leaf accepts only root, the account ADD LEAF names.
    assert_eq!(code(login(&cluster.leaves[0], "app", "s3cret").await), 1045);

    root.query_drop("REVOKE SELECT ON shop.* FROM app").await.unwrap();
    assert_eq!(code(app.query_drop("SELECT * FROM t").await), 1142, "REVOKE takes effect on open connections");
    assert_eq!(code(app.exec_first::<i64, _, _>("SELECT v FROM t WHERE id = ?", (2,)).await), 1142);
    assert_eq!(code(root.query_drop("REVOKE SELECT ON shop.* FROM app").await), 1141);
    assert_eq!(code(root.query_drop("GRANT CLUSTER ON shop.* TO app").await), 1221);
    assert_eq!(code(root.query_drop("GRANT SELECT ON *.* TO nobody").await), 1410);
    assert_eq!(code(root.query_drop("GRANT SELECT ON shop.t TO app").await), 1706, "table-level grants");
    drop(old);
}

/// History: an account changes its own password (SET PASSWORD), root changes another's (ALTER USER, which keeps
/// the account's mysql_native_password plugin), the master aggregator restarts, then root drops an account.
/// Property: only the newest password logs in; accounts and grants survive the restart; cluster.json holds hashes,
/// never a password; a dropped account cannot log in; root can be neither dropped nor re-passworded through SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_change_accounts_survive_a_restart_and_drop_user_ends_logins() {
    let mut cluster = TestCluster::start("users-restart", 1).await;
    let mut root = cluster.conn().await;
    root.query_drop("CREATE DATABASE d").await.unwrap();
    root.query_drop("CREATE USER app IDENTIFIED BY 'first', old IDENTIFIED WITH mysql_native_password BY 'n1'")
        .await
        .unwrap();
    root.query_drop("GRANT ALL PRIVILEGES ON d.* TO app WITH GRANT OPTION").await.unwrap();

    let mut app = login(&cluster.master, "app", "first").await.unwrap();
    app.query_drop("SET PASSWORD = 'second'").await.unwrap();
    assert_eq!(code(app.query_drop("SET PASSWORD FOR old = 'x'").await), 1227, "another account needs CREATE USER");
    app.query_drop("GRANT SELECT ON d.* TO old").await.expect("GRANT OPTION on d.* grants what app holds there");
    assert_eq!(code(login(&cluster.master, "app", "first").await), 1045);
    drop(login(&cluster.master, "app", "second").await.expect("the new password"));
    root.query_drop("ALTER USER old IDENTIFIED BY 'n2'").await.unwrap();
    drop(login(&cluster.master, "old", "n2").await.expect("native account with its new password"));
    assert_eq!(code(root.query_drop("DROP USER root").await), 1396);
    assert_eq!(code(root.query_drop("SET PASSWORD = 'x'").await), 1396, "root's password is the node's configuration");
    root.query_drop("FLUSH PRIVILEGES").await.unwrap();

    let metadata = std::fs::read_to_string(cluster.master.data_dir.join("cluster.json")).unwrap();
    for password in ["first", "second", "n1", "n2"] {
        assert!(!metadata.contains(&format!("\"{password}\"")), "cluster.json holds the password {password}");
    }
    assert!(
        metadata.contains("\"caching_sha2_password\"") && metadata.contains("\"mysql_native_password\""),
        "{metadata}"
    );

    drop((root, app));
    cluster.master.terminate();
    cluster.master.spawn();
    let deadline = Instant::now() + DEADLINE;
    let mut app = loop {
        match login(&cluster.master, "app", "second").await {
            Ok(conn) => break conn,
            Err(e) => {
                assert!(Instant::now() < deadline, "app never logged in after the restart: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(
        grants(&mut app, "SHOW GRANTS").await,
        ["GRANT USAGE ON *.* TO 'app'@'%'", "GRANT ALL PRIVILEGES ON `d`.* TO 'app'@'%' WITH GRANT OPTION"]
    );
    drop(login(&cluster.master, "old", "n2").await.expect("the native account survives the restart"));

    let mut root = cluster.conn().await;
    root.query_drop("DROP USER app, 'old'@'%'").await.unwrap();
    assert_eq!(code(login(&cluster.master, "app", "second").await), 1045);
    assert_eq!(code(login(&cluster.master, "old", "n2").await), 1045);
    assert_eq!(code(root.query_drop("DROP USER app").await), 1396);
    root.query_drop("DROP USER IF EXISTS app").await.unwrap();
    let notes: Vec<(String, u32, String)> = root.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(notes, [("Note".to_string(), 3162, "Authorization ID 'app'@'%' does not exist.".to_string())]);
    assert_eq!(code(app.query_drop("USE d").await), 1044, "a dropped account's open session holds nothing");
}
