//! Table-driven tests of statement classification, the cluster-command grammar, the MySQL-to-SQLite type mapping and
//! CREATE TABLE translation, through the public API only.

use canopy_sql::command::{
    ClusterCommand as C, LeafTarget, PartitionAction as PA, PartitionCommand, RebalanceOptions, Statement as S,
    SyncMode, parse_statement,
};
use canopy_sql::ddl::{CreateIndex, CreateTable, create_table, describe_rows, show_create_table};
use canopy_sql::{Affinity, SqlError, TableDef, TableKind, Value};

fn s(x: &str) -> String {
    x.to_string()
}

mod command {
    use super::*;

    fn check(sql: &str, expected: S) {
        assert_eq!(parse_statement(sql), Ok(expected), "{sql}");
    }

    fn cluster(sql: &str, expected: C) {
        check(sql, S::Cluster(expected));
    }

    fn check_err(sql: &str, expected: &str) {
        match parse_statement(sql) {
            Err(SqlError::Parse(msg)) => assert_eq!(msg, expected, "{sql}"),
            other => panic!("{sql}: expected a parse error, got {other:?}"),
        }
    }

    fn leaf(host: &str, port: u16) -> LeafTarget {
        LeafTarget::One { host: s(host), port }
    }

    fn part(action: PA, db: &str, ordinal: u32, host: &str, port: u16) -> C {
        C::Partition(PartitionCommand { action, db: s(db), ordinal, host: s(host), port })
    }

    fn opts(full: bool, force: bool, kill: bool, ensure_online_nodes: bool) -> RebalanceOptions {
        RebalanceOptions { full, force, kill, ensure_online_nodes }
    }

    #[test]
    fn aggregators() {
        cluster("BOOTSTRAP AGGREGATOR 'agg-1'", C::BootstrapAggregator { host: s("agg-1"), port: None });
        cluster(
            "bootstrap aggregator \"10.0.0.1\" PORT 3307",
            C::BootstrapAggregator { host: s("10.0.0.1"), port: Some(3307) },
        );
        cluster(
            "BOOTSTRAP AGGREGATOR '10.0.0.1':3307;",
            C::BootstrapAggregator { host: s("10.0.0.1"), port: Some(3307) },
        );
        cluster(
            "ADD AGGREGATOR root:'pw'@'agg-2':3306",
            C::AddAggregator { user: s("root"), password: Some(s("pw")), host: s("agg-2"), port: 3306 },
        );
        cluster(
            "ADD AGGREGATOR root@'agg-2'",
            C::AddAggregator { user: s("root"), password: None, host: s("agg-2"), port: 3306 },
        );
        cluster("REMOVE AGGREGATOR 'agg-2':3306", C::RemoveAggregator { host: s("agg-2"), port: 3306 });
        cluster("remove aggregator 'agg-2' : 3307", C::RemoveAggregator { host: s("agg-2"), port: 3307 });
        cluster("SHOW AGGREGATORS", C::ShowAggregators { extended: false });
        cluster("show aggregators extended", C::ShowAggregators { extended: true });
        cluster("AGGREGATOR SET AS MASTER", C::AggregatorSetAsMaster);
        cluster(
            "PROMOTE AGGREGATOR 'agg-2':3306 TO MASTER",
            C::PromoteAggregatorToMaster { host: s("agg-2"), port: 3306 },
        );
    }

    #[test]
    fn leaves() {
        let add = |user: &str, password: Option<&str>, host: &str, port: u16, group: Option<u8>| C::AddLeaf {
            user: s(user),
            password: password.map(s),
            host: s(host),
            port,
            group,
        };
        cluster("ADD LEAF root@'leaf-1':3306", add("root", None, "leaf-1", 3306, None));
        cluster("ADD LEAF root@'leaf-1'", add("root", None, "leaf-1", 3306, None));
        cluster(
            "add leaf root:'s3cr''t'@\"leaf-1\":3307 INTO GROUP 2",
            add("root", Some("s3cr't"), "leaf-1", 3307, Some(2)),
        );
        cluster(
            "ADD LEAF `root` : 'pw' @ 'leaf-1' : 3306 into group 1",
            add("root", Some("pw"), "leaf-1", 3306, Some(1)),
        );
        cluster("ADD LEAF 'root'@'leaf-1':3306", add("root", None, "leaf-1", 3306, None));
        cluster(
            "REMOVE LEAF 'leaf-1':3306",
            C::RemoveLeaf { host: s("leaf-1"), port: 3306, force: false, kill: false, ensure_partition_safety: false },
        );
        cluster(
            "REMOVE LEAF 'leaf-1':3306 ENSURE_PARTITION_SAFETY KILL FORCE",
            C::RemoveLeaf { host: s("leaf-1"), port: 3306, force: true, kill: true, ensure_partition_safety: true },
        );
        cluster(
            "attach leaf 'leaf-4': 3306",
            C::AttachLeaf { target: leaf("leaf-4", 3306), force: false, no_rebalance: false },
        );
        cluster(
            "ATTACH LEAF 'leaf-4':3306 FORCE NO REBALANCE",
            C::AttachLeaf { target: leaf("leaf-4", 3306), force: true, no_rebalance: true },
        );
        cluster("ATTACH LEAF ALL", C::AttachLeaf { target: LeafTarget::All, force: false, no_rebalance: false });
        cluster(
            "ATTACH LEAF ALL NO REBALANCE",
            C::AttachLeaf { target: LeafTarget::All, force: false, no_rebalance: true },
        );
        cluster(
            "DETACH LEAF 'leaf-1':3306",
            C::DetachLeaf { host: s("leaf-1"), port: 3306, kill: false, ensure_partition_safety: false },
        );
        cluster(
            "DETACH LEAF 'leaf-1' :3306 KILL ENSURE_PARTITION_SAFETY",
            C::DetachLeaf { host: s("leaf-1"), port: 3306, kill: true, ensure_partition_safety: true },
        );
        cluster(
            "DETACH LEAVES ('a':1, 'b' : 2) ENSURE_PARTITION_SAFETY",
            C::DetachLeaves { leaves: vec![(s("a"), 1), (s("b"), 2)], kill: false, ensure_partition_safety: true },
        );
        cluster("SHOW LEAVES", C::ShowLeaves);
        cluster("  /* hi */ show leaves -- trailing\n", C::ShowLeaves);
    }

    #[test]
    fn databases_and_rebalancing() {
        cluster("SHOW PARTITIONS", C::ShowPartitions { db: None, extended: false });
        cluster("SHOW PARTITIONS EXTENDED ON x_test", C::ShowPartitions { db: Some(s("x_test")), extended: true });
        cluster("SHOW PARTITIONS ON `x-test`", C::ShowPartitions { db: Some(s("x-test")), extended: false });
        cluster("SHOW CLUSTER STATUS", C::ShowClusterStatus);
        cluster(
            "REBALANCE PARTITIONS ON db",
            C::RebalancePartitions { db: Some(s("db")), options: opts(false, false, false, false) },
        );
        cluster(
            "REBALANCE PARTITIONS ON db FULL FORCE KILL ENSURE_ONLINE_NODES",
            C::RebalancePartitions { db: Some(s("db")), options: opts(true, true, true, true) },
        );
        cluster(
            "EXPLAIN REBALANCE PARTITIONS ON db",
            C::ExplainRebalancePartitions { db: Some(s("db")), options: opts(false, false, false, false) },
        );
        cluster(
            "EXPLAIN REBALANCE PARTITIONS ON db FULL",
            C::ExplainRebalancePartitions { db: Some(s("db")), options: opts(true, false, false, false) },
        );
        cluster(
            "EXPLAIN REBALANCE PARTITIONS FULL",
            C::ExplainRebalancePartitions { db: None, options: opts(true, false, false, false) },
        );
        cluster("REBALANCE PARTITIONS", C::RebalancePartitions { db: None, options: opts(false, false, false, false) });
        cluster("SHOW REBALANCE STATUS ON db", C::ShowRebalanceStatus { db: Some(s("db")) });
        cluster("SHOW REBALANCE STATUS", C::ShowRebalanceStatus { db: None });
        cluster("REBALANCE ALL DATABASES", C::RebalanceAllDatabases { kill: false, ensure_online_nodes: false });
        cluster(
            "REBALANCE ALL DATABASES KILL ENSURE_ONLINE_NODES",
            C::RebalanceAllDatabases { kill: true, ensure_online_nodes: true },
        );
        cluster("REBALANCE PARTITIONS ON db CANCEL", C::CancelRebalancePartitions { db: Some(s("db")) });
        cluster("rebalance partitions cancel", C::CancelRebalancePartitions { db: None });
        cluster("REBALANCE ALL DATABASES CANCEL", C::CancelRebalanceAllDatabases);
        cluster("EXPLAIN REBALANCE ALL DATABASES", C::ExplainRebalanceAllDatabases);
        cluster("SHOW REBALANCE ALL DATABASES STATUS", C::ShowRebalanceAllDatabasesStatus);
        cluster("RESTORE REDUNDANCY ON db", C::RestoreRedundancy { db: s("db") });
        cluster("EXPLAIN RESTORE REDUNDANCY ON db", C::ExplainRestoreRedundancy { db: s("db") });
        cluster("SNAPSHOT DATABASE db", C::SnapshotDatabase { db: s("db") });
        cluster("SNAPSHOT db", C::SnapshotDatabase { db: s("db") });
        cluster("_SYNC_SNAPSHOT db", C::SyncSnapshot { db: s("db") });
        cluster("CLEAR ORPHAN DATABASES", C::ClearOrphanDatabases { explain: false });
        cluster("EXPLAIN CLEAR ORPHAN DATABASES", C::ClearOrphanDatabases { explain: true });
    }

    #[test]
    fn partitions() {
        cluster("ATTACH PARTITION x_test:1 ON '127.0.0.1':10002", part(PA::Attach, "x_test", 1, "127.0.0.1", 10002));
        cluster("DETACH PARTITION x_test:1 ON 'h':1", part(PA::Detach, "x_test", 1, "h", 1));
        cluster("CREATE PARTITION db:0 ON 'h':1", part(PA::Create, "db", 0, "h", 1));
        cluster("DROP PARTITION db : 7 ON 'h' : 1", part(PA::Drop, "db", 7, "h", 1));
        cluster("COPY PARTITION db:3 TO 'h':1", part(PA::Copy { force: false }, "db", 3, "h", 1));
        cluster("COPY PARTITION db:3 ON 'h':1 FORCE", part(PA::Copy { force: true }, "db", 3, "h", 1));
        cluster(
            "PROMOTE PARTITION db:3 ON 'h':1",
            part(PA::Promote { with_drop: false, force: false, with_repoint: false }, "db", 3, "h", 1),
        );
        cluster(
            "PROMOTE PARTITION db:3 ON 'h':1 WITH DROP FORCE",
            part(PA::Promote { with_drop: true, force: true, with_repoint: false }, "db", 3, "h", 1),
        );
        cluster(
            "PROMOTE PARTITION db:3 ON 'h':1 WITH REPOINT",
            part(PA::Promote { with_drop: false, force: false, with_repoint: true }, "db", 3, "h", 1),
        );
    }

    #[test]
    fn malformed_cluster_commands() {
        check_err("REMOVE LEAF leaf1:3306", "REMOVE LEAF: expected a quoted host such as 'leaf-1' near 'leaf1:3306'");
        check_err("REMOVE LEAF 'leaf1':", "REMOVE LEAF: expected a port number at end of statement");
        check_err("REMOVE LEAF 'leaf1':99999", "REMOVE LEAF: expected a port number between 1 and 65535 near '99999'");
        check_err("REMOVE LEAF 'leaf1':3306 NOW", "REMOVE LEAF: expected end of statement near 'NOW'");
        check_err("REMOVE LEAF 'l':1 FORCE FORCE", "REMOVE LEAF: FORCE given twice");
        check_err("REMOVE NODE 'l'", "REMOVE: expected LEAF or AGGREGATOR near 'NODE 'l''");
        check_err("ADD LEAF root@leaf1", "ADD LEAF: expected a quoted host such as 'leaf-1' near 'leaf1'");
        check_err("ADD LEAF root 'leaf1'", "ADD LEAF: expected '@' near ''leaf1''");
        check_err("ADD LEAF root:pw@'leaf1'", "ADD LEAF: expected a quoted password after ':' near 'pw@'leaf1''");
        check_err("ADD LEAF root@'l':1 INTO GROUP 3", "ADD LEAF: expected availability group 1 or 2 near '3'");
        check_err("ADD LEAF root@'l':1 INTO 2", "ADD LEAF: expected GROUP near '2'");
        check_err("ADD", "ADD: expected LEAF or AGGREGATOR at end of statement");
        check_err("ATTACH LEAF", "ATTACH LEAF: expected a quoted host or ALL at end of statement");
        check_err("ATTACH LEAF ALL NO", "ATTACH LEAF: expected end of statement near 'NO'");
        check_err("DETACH LEAVES 'a':1", "DETACH LEAVES: expected '(' near ''a':1'");
        check_err("REBALANCE PARTITIONS db", "REBALANCE PARTITIONS: expected ON near 'db'");
        check_err("REBALANCE PARTITIONS ON", "REBALANCE PARTITIONS: expected a database name at end of statement");
        check_err("REBALANCE", "REBALANCE: expected PARTITIONS or ALL DATABASES at end of statement");
        check_err(
            "REBALANCE PARTITIONS ON db CANCEL FULL",
            "REBALANCE PARTITIONS: expected end of statement near 'FULL'",
        );
        check_err(
            "REBALANCE PARTITIONS ON db FULL CANCEL",
            "REBALANCE PARTITIONS: expected end of statement near 'CANCEL'",
        );
        check_err(
            "REBALANCE ALL DATABASES CANCEL KILL",
            "REBALANCE ALL DATABASES: expected end of statement near 'KILL'",
        );
        check_err("SHOW CLUSTER", "SHOW CLUSTER STATUS: expected STATUS at end of statement");
        check_err(
            "BOOTSTRAP AGGREGATOR agg1",
            "BOOTSTRAP AGGREGATOR: expected a quoted host such as 'agg-1' near 'agg1'",
        );
        check_err(
            "COPY PARTITION db ON 'h':1",
            "COPY PARTITION: expected ':' and the ordinal (db:ordinal) near 'ON 'h':1'",
        );
        check_err("COPY PARTITION db:x TO 'h':1", "COPY PARTITION: expected a partition ordinal near 'x TO 'h':1'");
        check_err("ATTACH PARTITION db:1 TO 'h':1", "ATTACH PARTITION: expected ON near 'TO 'h':1'");
        check_err("PROMOTE AGGREGATOR 'a':1", "PROMOTE AGGREGATOR: expected TO at end of statement");
        check_err("AGGREGATOR SET MASTER", "AGGREGATOR SET AS MASTER: expected AS near 'MASTER'");
        check_err("CLEAR ORPHANS", "CLEAR ORPHAN DATABASES: expected ORPHAN near 'ORPHANS'");
        check_err("RESTORE DATABASE x", "RESTORE REDUNDANCY: expected REDUNDANCY near 'DATABASE x'");
        check_err("REMOVE LEAF 'unterminated", "unterminated quoted string starting at ''unterminated'");
    }

    #[test]
    fn catalog_statements() {
        let create = |name: &str, if_not_exists: bool, partitions: Option<u32>| S::CreateDatabase {
            name: s(name),
            if_not_exists,
            partitions,
            durability: None,
            replication: None,
        };
        check("CREATE DATABASE db", create("db", false, None));
        check("create schema if not exists `db`", create("db", true, None));
        check("CREATE DATABASE db PARTITIONS 8", create("db", false, Some(8)));
        check("CREATE DATABASE db PARTITIONS=8", create("db", false, Some(8)));
        check(
            "CREATE DATABASE db PARTITIONS = 8 DEFAULT CHARACTER SET = utf8mb4 COLLATE utf8mb4_bin",
            create("db", false, Some(8)),
        );
        check("CREATE DATABASE db CHARSET utf8", create("db", false, None));
        check(
            "CREATE DATABASE db WITH SYNC DURABILITY ASYNC REPLICATION PARTITIONS 4",
            S::CreateDatabase {
                name: s("db"),
                if_not_exists: false,
                partitions: Some(4),
                durability: Some(SyncMode::Sync),
                replication: Some(SyncMode::Async),
            },
        );
        check_err("CREATE DATABASE db PARTITIONS", "CREATE DATABASE: expected a partition count at end of statement");
        check_err("CREATE DATABASE db PARTITIONS 0", "CREATE DATABASE: PARTITIONS must be at least 1");
        check_err(
            "CREATE DATABASE db WITH REPLICATION",
            "CREATE DATABASE: expected SYNC or ASYNC after WITH near 'REPLICATION'",
        );
        check_err(
            "CREATE DATABASE db SHARDS 4",
            "CREATE DATABASE: expected WITH, PARTITIONS, CHARACTER SET, COLLATE or end of statement near 'SHARDS 4'",
        );
        check("DROP DATABASE db", S::DropDatabase { name: s("db"), if_exists: false });
        check("DROP SCHEMA IF EXISTS db", S::DropDatabase { name: s("db"), if_exists: true });
        check("USE db", S::Use { db: s("db") });
        check("use `my db`;", S::Use { db: s("my db") });
        check("KILL 12", S::Kill { id: 12, query_only: false });
        check("KILL CONNECTION 12", S::Kill { id: 12, query_only: false });
        check("kill query 7;", S::Kill { id: 7, query_only: true });
        check_err("KILL QUERY", "KILL: expected a connection id at end of statement");
        check_err("KILL 12 13", "KILL: expected end of statement near '13'");
        check("SHOW DATABASES", S::ShowDatabases { extended: false, like: None });
        check("SHOW DATABASES EXTENDED LIKE 'x%'", S::ShowDatabases { extended: true, like: Some(s("x%")) });
        check("SHOW SCHEMAS", S::ShowDatabases { extended: false, like: None });
        check("SHOW TABLES", S::ShowTables { db: None, like: None, full: false });
        check(
            "SHOW FULL TABLES FROM db LIKE 't%'",
            S::ShowTables { db: Some(s("db")), like: Some(s("t%")), full: true },
        );
        check("SHOW TABLES IN db", S::ShowTables { db: Some(s("db")), like: None, full: false });
        check("DESCRIBE t", S::Describe { db: None, table: s("t") });
        check("DESC db.t", S::Describe { db: Some(s("db")), table: s("t") });
        check("EXPLAIN `t`", S::Describe { db: None, table: s("t") });
        check("SHOW COLUMNS FROM t", S::Describe { db: None, table: s("t") });
        // FULL adds Collation, Privileges and Comment, as in MySQL.
        check(
            "SHOW FULL COLUMNS FROM t FROM db",
            S::ShowCatalog(canopy_sql::command::ShowCatalog::FullColumns {
                db: Some(s("db")),
                table: s("t"),
                like: None,
            }),
        );
        check("SHOW FIELDS IN db.t", S::Describe { db: Some(s("db")), table: s("t") });
        check("SHOW CREATE TABLE db.t", S::ShowCreateTable { db: Some(s("db")), table: s("t") });
        check("DROP TABLE t", S::DropTable { tables: vec![(None, s("t"))], if_exists: false });
        check(
            "DROP TABLE IF EXISTS t, db.u",
            S::DropTable { tables: vec![(None, s("t")), (Some(s("db")), s("u"))], if_exists: true },
        );
        check_err("DROP TABLE", "DROP TABLE: expected a table name at end of statement");
        check_err("SHOW TABLES LIKE x", "SHOW TABLES: expected a quoted pattern after LIKE near 'x'");
        check_err("USE", "USE: expected a database name at end of statement");
    }

    #[test]
    fn indexes() {
        let index = |db: Option<&str>, table: &str, name: &str, unique: bool, columns: &[&str]| {
            S::CreateIndex(CreateIndex {
                db: db.map(s),
                table: s(table),
                name: s(name),
                unique,
                columns: columns.iter().map(|c| s(c)).collect(),
                ignored: vec![],
            })
        };
        check("CREATE INDEX k ON t (a)", index(None, "t", "k", false, &["a"]));
        check("CREATE UNIQUE INDEX k ON db.t (a ASC, b) USING BTREE", index(Some("db"), "t", "k", true, &["a", "b"]));
        // What the index drops is listed for the server's warnings, under the name MySQL gives the key.
        let ignored = |sql: &str| match parse_statement(sql) {
            Ok(S::CreateIndex(index)) => index.ignored,
            other => panic!("{sql}: {other:?}"),
        };
        let clause = |c: &str| canopy_sql::ddl::Ignored::Clause(s(c));
        assert_eq!(
            ignored("CREATE INDEX k USING HASH ON t (a DESC, b) COMMENT 'c'"),
            [clause("USING HASH on key 'k'"), clause("DESC on key 'k'"), clause("COMMENT on key 'k'")]
        );
        assert_eq!(ignored("ALTER TABLE t ADD KEY (b DESC)"), [clause("DESC on key 'b'")]);
        check("ALTER TABLE t ADD INDEX k (a)", index(None, "t", "k", false, &["a"]));
        check("ALTER TABLE db.t ADD UNIQUE KEY `k` (a, b)", index(Some("db"), "t", "k", true, &["a", "b"]));
        check("ALTER TABLE t ADD KEY (b, a)", index(None, "t", "b", false, &["b", "a"]));
        check("ALTER TABLE t ADD UNIQUE (a)", index(None, "t", "a", true, &["a"]));
        check_err("CREATE INDEX ON t (a)", "CREATE INDEX: expected an index name near 'ON t (a)'");
        check_err("CREATE INDEX k ON t", "CREATE INDEX: expected '(' at end of statement");
        assert!(matches!(parse_statement("ALTER TABLE t ADD COLUMN c INT"), Ok(S::Other(_))));
    }

    #[test]
    fn variables_and_transactions() {
        let global = |name: &str, value: Value| S::SetGlobal { name: s(name), value };
        check("SET GLOBAL redundancy_level = 2", global("redundancy_level", Value::Integer(2)));
        check("SET @@GLOBAL.redundancy_level = 2", global("redundancy_level", Value::Integer(2)));
        check(
            "set @@global.Leaf_Failover_Fanout='load_balanced'",
            global("leaf_failover_fanout", Value::Text(s("load_balanced"))),
        );
        check("SET GLOBAL auto_attach = ON", global("auto_attach", Value::Integer(1)));
        check("SET GLOBAL auto_attach = off", global("auto_attach", Value::Integer(0)));
        check("SET GLOBAL x = TRUE", global("x", Value::Integer(1)));
        check("SET GLOBAL x = -1.5", global("x", Value::Real(-1.5)));
        check("SET GLOBAL x = paired", global("x", Value::Text(s("paired"))));
        check("SET GLOBAL x := NULL", global("x", Value::Null));
        check_err("SET GLOBAL x", "SET: expected '=' at end of statement");
        check_err("SET GLOBAL = 1", "SET: expected a variable name near '= 1'");
        check_err(
            "SET GLOBAL x = 1 + 1",
            "SET GLOBAL: expected a literal value (number, quoted string, ON/OFF/TRUE/FALSE) for 'x'",
        );
        check_err("SET @@nope.x = 1", "SET: expected GLOBAL, SESSION or LOCAL before '.' near 'nope.x = 1'");
        assert_eq!(
            parse_statement("SET GLOBAL a = 1, b = 2"),
            Err(SqlError::Unsupported(s("more than one variable in a SET GLOBAL statement")))
        );
        check(
            "SET autocommit=1, SESSION sql_mode = 'ANSI', @@session.x = 2",
            S::SetSession {
                assignments: vec![
                    (s("autocommit"), Value::Integer(1)),
                    (s("sql_mode"), Value::Text(s("ANSI"))),
                    (s("x"), Value::Integer(2)),
                ],
            },
        );
        check("SET NAMES utf8mb4", S::SetNames { charset: s("utf8mb4"), collation: None });
        check(
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'",
            S::SetNames { charset: s("utf8mb4"), collation: Some(s("utf8mb4_bin")) },
        );
        assert!(matches!(parse_statement("SET @v = 1"), Ok(S::Other(_))));
        assert!(matches!(parse_statement("SET sql_mode = CONCAT(@@sql_mode, ',X')"), Ok(S::Other(_))));
        check("SHOW VARIABLES", S::ShowVariables { global: false, like: None });
        check(
            "SHOW GLOBAL VARIABLES LIKE 'redundancy%'",
            S::ShowVariables { global: true, like: Some(s("redundancy%")) },
        );
        check("SHOW SESSION VARIABLES", S::ShowVariables { global: false, like: None });
        check("BEGIN", S::Begin);
        check("begin work", S::Begin);
        check("START TRANSACTION", S::Begin);
        check("START TRANSACTION READ ONLY", S::Begin);
        check("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE", S::Begin);
        check("COMMIT", S::Commit);
        check("COMMIT WORK", S::Commit);
        check("ROLLBACK", S::Rollback);
        check("ROLLBACK WORK;", S::Rollback);
        check_err(
            "START TRANSACTION NOW",
            "START TRANSACTION: expected READ ONLY, READ WRITE or WITH CONSISTENT SNAPSHOT near 'NOW'",
        );
        check_err("COMMIT NOW", "COMMIT: expected end of statement near 'NOW'");
    }

    /// MySQL Workbench and DBeaver filter SHOW listings with WHERE on SHOW's own columns.
    #[test]
    fn show_where_wraps_the_show_and_renders_the_condition() {
        let show_where = |show: S, condition: &str| S::ShowWhere { show: Box::new(show), condition: s(condition) };
        check(
            "SHOW FULL TABLES FROM `shop` WHERE `Tables_in_shop` = 'orders' AND Table_type != 'VIEW'",
            show_where(
                S::ShowTables { db: Some(s("shop")), like: None, full: true },
                "`Tables_in_shop` = 'orders' AND Table_type <> 'VIEW'",
            ),
        );
        check(
            "show variables where Variable_name in ('version', 'it''s');",
            show_where(S::ShowVariables { global: false, like: None }, "Variable_name IN ('version', 'it''s')"),
        );
        check(
            "SHOW DATABASES WHERE `Database` LIKE 's%'",
            show_where(S::ShowDatabases { extended: false, like: None }, "`Database` LIKE 's%'"),
        );
        check_err("SHOW TABLES WHERE", "SHOW ... WHERE: expected a condition after WHERE");
        assert!(matches!(parse_statement("SHOW TABLES WHERE a = 1 b"), Err(SqlError::Parse(_))));
        assert!(matches!(parse_statement("SHOW TABLES FROM `where`"), Ok(S::ShowTables { .. })));
    }

    #[test]
    fn queries_go_to_sqlparser() {
        for sql in [
            "SELECT 1",
            "select * from t where id = 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "INSERT INTO t VALUES (1, 'a')",
            "REPLACE INTO t VALUES (1)",
            "UPDATE t SET a = 1 WHERE id = 2",
            "DELETE FROM t WHERE id = 2",
            "EXPLAIN SELECT * FROM t",
            "DESCRIBE SELECT * FROM t",
        ] {
            assert!(matches!(parse_statement(sql), Ok(S::Query(_))), "{sql}: {:?}", parse_statement(sql));
        }
        for sql in ["CREATE VIEW v AS SELECT 1", "TRUNCATE TABLE t", "ALTER VIEW v AS SELECT 2"] {
            assert!(matches!(parse_statement(sql), Ok(S::Other(_))), "{sql}: {:?}", parse_statement(sql));
        }
        assert!(matches!(parse_statement("SELEC 1"), Err(SqlError::Parse(_))));
        assert!(matches!(parse_statement("SELECT 1; SELECT 2"), Err(SqlError::Parse(_))));
        check_err("   ", "empty statement");
        check_err("-- only a comment", "empty statement");
    }

    /// A query only reads: a write that sqlparser nests inside one (`WITH ... DELETE`, a DML body of a CTE or of a
    /// set operation) is refused at classification, so the planner never runs it on a scratch or a single copy.
    #[test]
    fn writes_inside_a_query_are_refused() {
        for (sql, kind) in [
            ("WITH d AS (SELECT 3 AS id) DELETE FROM t WHERE id IN (SELECT id FROM d)", "DELETE"),
            ("with d as (select 3 as id) update t set v = 1 where id in (select id from d)", "UPDATE"),
            ("WITH a AS (SELECT 1), b AS (SELECT 2) DELETE FROM t", "DELETE"),
            ("EXPLAIN WITH d AS (SELECT 1) DELETE FROM t", "DELETE"),
            ("WITH c AS (DELETE FROM t) SELECT 1", "DELETE"),
            ("WITH c AS (INSERT INTO t VALUES (1)) SELECT 1", "INSERT"),
            ("WITH c AS (UPDATE t SET v = 1) SELECT * FROM c", "UPDATE"),
        ] {
            match parse_statement(sql) {
                Err(SqlError::Unsupported(what)) => {
                    assert!(what.starts_with(&format!("WITH ... {kind}")), "{sql}: {what}")
                }
                other => panic!("{sql}: expected a refusal naming {kind}, got {other:?}"),
            }
        }
        for sql in [
            "WITH x AS (SELECT 1) SELECT * FROM x UNION SELECT 2",
            "INSERT INTO t WITH c AS (SELECT 1) SELECT * FROM c",
            "EXPLAIN DELETE FROM t WHERE id IN (SELECT id FROM u)",
            "UPDATE t SET v = (SELECT max(v) FROM u) WHERE id = 1",
        ] {
            assert!(matches!(parse_statement(sql), Ok(S::Query(_))), "{sql}: {:?}", parse_statement(sql));
        }
    }

    /// Tables named `_canopy_*` are never written to the change log (they are Canopy's own), so no user table may
    /// get such a name: not by CREATE TABLE, nor as the table of an index, nor by a rename; in any letter case and
    /// quoted or not. Names that only look alike stay allowed.
    #[test]
    fn reserved_table_names_are_refused() {
        for (sql, name) in [
            ("CREATE TABLE _canopy_orders (id INT PRIMARY KEY)", "_canopy_orders"),
            ("CREATE REFERENCE TABLE d._CANOPY_x (id INT PRIMARY KEY)", "_CANOPY_x"),
            ("CREATE TABLE IF NOT EXISTS `_Canopy_log` (id INT)", "_Canopy_log"),
            ("CREATE TABLE \"_canopy_\" (id INT)", "_canopy_"),
            ("CREATE UNIQUE INDEX i ON _canopy_t (a)", "_canopy_t"),
            ("ALTER TABLE d._canopy_t ADD INDEX (a)", "_canopy_t"),
            ("RENAME TABLE t TO _canopy_t", "_canopy_t"),
            ("RENAME TABLE a TO b, t TO d._CANOPY_T", "_CANOPY_T"),
            ("ALTER TABLE t RENAME TO _canopy_t", "_canopy_t"),
            ("ALTER TABLE t RENAME AS `_canopy_t`", "_canopy_t"),
        ] {
            assert_eq!(parse_statement(sql), Err(SqlError::ReservedTableName { name: s(name) }), "{sql}");
        }
        for sql in [
            "CREATE TABLE canopy_x (id INT PRIMARY KEY)",
            "CREATE TABLE _canopyx (id INT PRIMARY KEY)",
            "CREATE TABLE x_canopy_ (id INT PRIMARY KEY)",
            "CREATE INDEX _canopy_i ON t (a)",
        ] {
            assert!(parse_statement(sql).is_ok(), "{sql}: {:?}", parse_statement(sql));
        }
        assert!(matches!(parse_statement("RENAME TABLE t TO u"), Ok(S::Other(_))));
    }

    #[test]
    fn create_table_is_ours() {
        let Ok(S::CreateTable(ct)) = parse_statement("CREATE TABLE x (id INT, SHARD KEY (id))") else {
            panic!("expected CreateTable");
        };
        assert_eq!(ct.def.shard_key, vec![s("id")]);
        assert_eq!(ct.def.columns.len(), 1, "SHARD must not become a column");
        let Ok(S::CreateTable(ct)) = parse_statement("CREATE ROWSTORE REFERENCE TABLE r (id INT PRIMARY KEY)") else {
            panic!("expected CreateTable");
        };
        assert_eq!(ct.def.kind, TableKind::Reference);
    }
}

mod ddl {
    use super::*;

    const SBTEST: &str = "CREATE TABLE sbtest1(id INTEGER NOT NULL AUTO_INCREMENT, k INTEGER DEFAULT '0' NOT NULL, \
        c CHAR(120) DEFAULT '' NOT NULL, pad CHAR(60) DEFAULT '' NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB";

    /// Parses, checks the generated SQL actually runs in SQLite, and returns the definition.
    fn table(sql: &str) -> CreateTable {
        let ct = create_table(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute(&ct.def.create_sql, []).unwrap_or_else(|e| panic!("{}: {e}", ct.def.create_sql));
        for index in &ct.def.index_sql {
            conn.execute(index, []).unwrap_or_else(|e| panic!("{index}: {e}"));
        }
        ct
    }

    /// One line per expectation: create_sql, then index_sql, then "shard: a,b", "pk: a,b".
    fn check(sql: &str, expected: &[&str]) {
        let def = table(sql).def;
        let mut got = vec![def.create_sql.clone()];
        got.extend(def.index_sql.iter().cloned());
        got.push(format!("pk: {}", def.primary_key.join(",")));
        got.push(format!("shard: {}", def.shard_key.join(",")));
        assert_eq!(got, expected, "{sql}");
    }

    fn check_err(sql: &str, expected: SqlError) {
        assert_eq!(create_table(sql), Err(expected), "{sql}");
    }

    fn unsupported(what: &str) -> SqlError {
        SqlError::Unsupported(s(what))
    }

    #[test]
    fn sysbench() {
        let expected = [
            r#"CREATE TABLE "sbtest1" ("id" INTEGER NOT NULL, "k" INTEGER NOT NULL DEFAULT '0', "c" TEXT NOT NULL DEFAULT '', "pad" TEXT NOT NULL DEFAULT '', PRIMARY KEY ("id"))"#,
            "pk: id",
            "shard: id",
        ];
        check(SBTEST, &expected);
        check(&SBTEST.replace("ENGINE=InnoDB", "ENGINE = innodb DEFAULT CHARSET=utf8mb4"), &expected);
        check(&SBTEST.replace("ENGINE=InnoDB", "ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=latin1 COLLATE=latin1_bin ROW_FORMAT=DYNAMIC COMMENT='x'"), &expected);
        check(&format!("{SBTEST};"), &expected);
        let def = table(SBTEST).def;
        let id = def.column("id").unwrap();
        assert!(id.auto_increment && !id.nullable);
        assert_eq!(
            (id.mysql_type.as_str(), id.decl_type.as_str(), id.affinity),
            ("integer", "INTEGER", Affinity::Integer)
        );
        assert_eq!(def.column("c").unwrap().mysql_type, "char(120)");
        assert_eq!(def.column("k").unwrap().default.as_deref(), Some("'0'"));
        assert_eq!(def.auto_increment_column().map(|c| c.name.as_str()), Some("id"));
        assert_eq!(def.kind, TableKind::Distributed);
    }

    #[test]
    fn keys_and_sharding() {
        check("CREATE TABLE x (id INT, SHARD KEY (id))", &[r#"CREATE TABLE "x" ("id" INTEGER)"#, "pk: ", "shard: id"]);
        check(
            "CREATE TABLE x (id INT, v TEXT, SHARD KEY named_key (id), KEY (v), KEY (v))",
            &[
                r#"CREATE TABLE "x" ("id" INTEGER, "v" TEXT)"#,
                r#"CREATE INDEX "x__v" ON "x" ("v")"#,
                r#"CREATE INDEX "x__v_2" ON "x" ("v")"#,
                "pk: ",
                "shard: id",
            ],
        );
        check(
            "CREATE TABLE keyless (a INT, b TEXT)",
            &[r#"CREATE TABLE "keyless" ("a" INTEGER, "b" TEXT)"#, "pk: ", "shard: "],
        );
        check("CREATE TABLE k (a INT, SHARD KEY ())", &[r#"CREATE TABLE "k" ("a" INTEGER)"#, "pk: ", "shard: "]);
        check(
            "CREATE TABLE c (a INT, b VARCHAR(10), c INT, PRIMARY KEY (a, b), UNIQUE KEY u (c, a), INDEX (c), SHARD KEY (a))",
            &[
                r#"CREATE TABLE "c" ("a" INTEGER NOT NULL, "b" TEXT NOT NULL, "c" INTEGER, PRIMARY KEY ("a", "b"))"#,
                r#"CREATE UNIQUE INDEX "c__u" ON "c" ("c", "a")"#,
                r#"CREATE INDEX "c__c" ON "c" ("c")"#,
                "pk: a,b",
                "shard: a",
            ],
        );
        check(
            "CREATE TABLE c (a INT, b INT, PRIMARY KEY (a, b))",
            &[
                r#"CREATE TABLE "c" ("a" INTEGER NOT NULL, "b" INTEGER NOT NULL, PRIMARY KEY ("a", "b"))"#,
                "pk: a,b",
                "shard: a,b",
            ],
        );
        check(
            "CREATE TABLE p (id BIGINT PRIMARY KEY, e VARCHAR(20), UNIQUE KEY (e, id), SHARD KEY (id))",
            &[
                r#"CREATE TABLE "p" ("id" INTEGER NOT NULL, "e" TEXT, PRIMARY KEY ("id"))"#,
                r#"CREATE UNIQUE INDEX "p__e" ON "p" ("e", "id")"#,
                "pk: id",
                "shard: id",
            ],
        );
        check(
            "CREATE REFERENCE TABLE r (id INT PRIMARY KEY, e VARCHAR(20) UNIQUE, KEY k (e))",
            &[
                r#"CREATE TABLE "r" ("id" INTEGER NOT NULL, "e" TEXT, PRIMARY KEY ("id"))"#,
                r#"CREATE UNIQUE INDEX "r__e" ON "r" ("e")"#,
                r#"CREATE INDEX "r__k" ON "r" ("e")"#,
                "pk: id",
                "shard: ",
            ],
        );
        check(
            "CREATE TABLE `we\"ird` (`col``1` INT, `sel ect` TEXT, KEY `my key` (`sel ect`) USING HASH, SORT KEY (`col``1`), KEY (`col``1`) USING CLUSTERED COLUMNSTORE)",
            &[
                r#"CREATE TABLE "we""ird" ("col`1" INTEGER, "sel ect" TEXT)"#,
                r#"CREATE INDEX "we""ird__my key" ON "we""ird" ("sel ect")"#,
                "pk: ",
                "shard: ",
            ],
        );
        let ct = table(
            "CREATE TABLE IF NOT EXISTS db.t (a INT(11) UNSIGNED NOT NULL, b INT UNSIGNED ZEROFILL, c TINYINT SIGNED)",
        );
        assert_eq!((ct.db.as_deref(), ct.if_not_exists, ct.def.name.as_str()), (Some("db"), true, "t"));
        assert_eq!(ct.def.column("a").unwrap().mysql_type, "int(11) unsigned");
        assert!(!ct.def.column("a").unwrap().nullable);
        assert_eq!(ct.def.column("b").unwrap().mysql_type, "int unsigned");
        assert_eq!(ct.def.create_sql, r#"CREATE TABLE "t" ("a" INTEGER NOT NULL, "b" INTEGER, "c" INTEGER)"#);
    }

    /// Without a primary key, the first NOT NULL unique key is the shard key (InnoDB's implicit primary key), so
    /// `SERIAL` (BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE), as mariadb-slap declares it, makes a table.
    #[test]
    fn a_not_null_unique_key_is_the_shard_key_of_a_table_without_primary_key() {
        let def = table("CREATE TABLE t1 (id serial, intcol1 INT(32), charcol1 VARCHAR(128))").def;
        assert_eq!(def.shard_key, [s("id")]);
        assert!(def.primary_key.is_empty());
        let id = &def.columns[0];
        assert_eq!((id.mysql_type.as_str(), id.nullable, id.auto_increment), ("bigint unsigned", false, true));
        assert_eq!(def.index_sql, [r#"CREATE UNIQUE INDEX "t1__id" ON "t1" ("id")"#]);
        let def = table("CREATE TABLE t (a INT, b INT NOT NULL, UNIQUE KEY ua (a, b), UNIQUE KEY ub (b))").def;
        assert_eq!(def.shard_key, [s("b")], "the first unique key whose columns are all NOT NULL");
        let def = table("CREATE TABLE t (a INT NOT NULL, UNIQUE KEY u (a), SHARD KEY (a))").def;
        assert_eq!(def.shard_key, [s("a")]);
        let def = table("CREATE TABLE t (a INT NOT NULL, b INT, KEY (a))").def;
        assert!(def.shard_key.is_empty(), "a plain key is no shard key");
    }

    /// What CREATE TABLE drops is listed (the clauses Canopy's tokenizer cuts, then table options, columns, keys) so the server can warn about each; what Canopy does
    /// anyway (UTF-8, the binary collation, B-tree keys, `ENGINE=Canopy`, AUTO_INCREMENT=n) is not.
    #[test]
    fn ignored_clauses_are_listed() {
        use canopy_sql::ddl::Ignored;
        let ignored = |sql: &str| table(sql).ignored;
        let clause = |c: &str| Ignored::Clause(s(c));
        assert_eq!(ignored(SBTEST), [Ignored::Engine(s("InnoDB"))]);
        assert_eq!(
            ignored(&SBTEST.replace(
                "ENGINE=InnoDB",
                "ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=latin1 COLLATE=latin1_bin ROW_FORMAT=DYNAMIC COMMENT='x'"
            )),
            [
                Ignored::Engine(s("InnoDB")),
                clause("DEFAULT CHARSET=latin1"),
                clause("COLLATE=latin1_bin"),
                clause("ROW_FORMAT=DYNAMIC"),
                clause("COMMENT"),
            ]
        );
        for honoured in [
            "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=Canopy DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            "CREATE TABLE t (id INT PRIMARY KEY, n VARCHAR(9) CHARACTER SET utf8 COLLATE utf8_bin, KEY k (n) USING BTREE)",
            "CREATE TABLE t (id INT UNSIGNED PRIMARY KEY, n INT(11)) AUTO_INCREMENT=3",
            "CREATE ROWSTORE TABLE t (id INT, KEY (id ASC))",
        ] {
            assert_eq!(ignored(honoured), [], "{honoured}");
        }
        assert_eq!(
            ignored(
                "CREATE TABLE t (id INT PRIMARY KEY COMMENT 'key', n VARCHAR(9) CHARACTER SET latin1 COLLATE \
                 utf8mb4_general_ci, u TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, \
                 z INT(4) ZEROFILL, KEY (n) USING HASH, KEY kd (u DESC) COMMENT 'c', SORT KEY (u))"
            ),
            [
                clause("ZEROFILL on column 'z'"),
                clause("SORT KEY"),
                clause("COMMENT on column 'id'"),
                clause("CHARACTER SET latin1 on column 'n'"),
                clause("COLLATE utf8mb4_general_ci on column 'n'"),
                clause("ON UPDATE CURRENT_TIMESTAMP on column 'u'"),
                clause("USING HASH on key 'n'"),
                clause("COMMENT on key 'kd'"),
                clause("DESC on key 'kd'"),
            ]
        );
    }

    /// A dump's `AUTO_INCREMENT=n` is kept for a table with an AUTO_INCREMENT column and ignored otherwise.
    #[test]
    fn auto_increment_table_option() {
        let first = |sql: &str| table(sql).auto_increment;
        assert_eq!(first("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB AUTO_INCREMENT=5"), Some(5));
        assert_eq!(first("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY) AUTO_INCREMENT 7 CHARSET=utf8"), Some(7));
        assert_eq!(first("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY)"), None);
        assert_eq!(first("CREATE TABLE t (id INT PRIMARY KEY) AUTO_INCREMENT=5"), None, "no AUTO_INCREMENT column");
    }

    #[test]
    fn shard_key_rules() {
        let rule = |key: &str| SqlError::UniqueKeyWithoutShardKey { key: s(key) };
        check_err("CREATE TABLE t (a INT, b INT, PRIMARY KEY (a), SHARD KEY (b))", rule("PRIMARY"));
        check_err("CREATE TABLE t (a INT PRIMARY KEY, b INT UNIQUE)", rule("b"));
        check_err("CREATE TABLE t (a INT, b INT, PRIMARY KEY (a, b), UNIQUE KEY u (b))", rule("u"));
        check_err("CREATE TABLE t (a INT, b INT, UNIQUE KEY u (a))", rule("u"));
        check_err("CREATE TABLE t (a INT NOT NULL, b INT, UNIQUE KEY u (a), UNIQUE KEY v (b))", rule("v"));
        check_err("CREATE TABLE t (a INT PRIMARY KEY, SHARD KEY ())", rule("PRIMARY"));
        check_err(
            "CREATE TABLE t (a INT, SHARD KEY (nope))",
            SqlError::UnknownColumn { table: s("t"), column: s("nope") },
        );
        check_err("CREATE TABLE t (a INT, KEY (b))", SqlError::UnknownColumn { table: s("t"), column: s("b") });
        check_err(
            "CREATE REFERENCE TABLE t (a INT, SHARD KEY (a))",
            SqlError::Parse(s("a REFERENCE table cannot have a SHARD KEY")),
        );
        check_err(
            "CREATE TABLE t (a INT, SHARD KEY (a), SHARD KEY (a))",
            SqlError::Parse(s("more than one SHARD KEY")),
        );
        check_err(
            "CREATE TABLE t (a INT PRIMARY KEY, b INT, PRIMARY KEY (b))",
            SqlError::Parse(s("Multiple primary key defined")),
        );
        check_err("CREATE TABLE t (a INT, A INT)", SqlError::Parse(s("Duplicate column name 'A'")));
        check_err("CREATE TABLE t (a INT, KEY k (a), KEY k (a))", SqlError::Parse(s("Duplicate key name 'k'")));
        check_err(
            "CREATE TABLE t (a INT, SHARD KEY a)",
            SqlError::Parse(s("SHARD KEY: expected '(' at end of statement")),
        );
    }

    #[test]
    fn unsupported_features() {
        check_err("CREATE TABLE t (a INT, FOREIGN KEY (a) REFERENCES u (id))", unsupported("FOREIGN KEY constraints"));
        check_err("CREATE TABLE t (a INT REFERENCES u (id))", unsupported("FOREIGN KEY constraints (REFERENCES)"));
        check_err("CREATE TABLE t (a INT, CHECK (a > 0))", unsupported("CHECK constraints"));
        check_err("CREATE TABLE t (a INT CHECK (a > 0))", unsupported("CHECK constraints"));
        check_err("CREATE TABLE t (a INT, b INT AS (a + 1))", unsupported("generated column 'b'"));
        check_err(
            "CREATE TABLE t (a INT, b INT GENERATED ALWAYS AS (a + 1) STORED)",
            unsupported("generated column 'b'"),
        );
        check_err("CREATE TABLE t (g GEOMETRY)", unsupported("column type 'geometry'"));
        check_err("CREATE TEMPORARY TABLE t (a INT)", unsupported("temporary tables"));
        check_err("CREATE TABLE t LIKE u", unsupported("CREATE TABLE ... LIKE"));
        check_err("CREATE TABLE t AS SELECT 1", unsupported("CREATE TABLE ... AS SELECT"));
        check_err(
            "CREATE TABLE t (a INT DEFAULT (1 + 1))",
            unsupported("DEFAULT 1 + 1 (only literals and the current date/time)"),
        );
    }

    #[test]
    fn every_type_in_the_mapping() {
        let cases = [
            ("TINYINT", "INTEGER"),
            ("TINYINT(1)", "INTEGER"),
            ("SMALLINT UNSIGNED", "INTEGER"),
            ("MEDIUMINT", "INTEGER"),
            ("INT", "INTEGER"),
            ("INT(11) UNSIGNED ZEROFILL", "INTEGER"),
            ("INTEGER", "INTEGER"),
            ("BIGINT(20)", "INTEGER"),
            ("BOOL", "INTEGER"),
            ("BOOLEAN", "INTEGER"),
            ("BIT(1)", "INTEGER"),
            ("FLOAT", "REAL"),
            ("FLOAT(7,4)", "REAL"),
            ("DOUBLE", "REAL"),
            ("DOUBLE PRECISION", "REAL"),
            ("REAL", "REAL"),
            ("DECIMAL(10,2)", "NUMERIC"),
            ("NUMERIC(5)", "NUMERIC"),
            ("DEC(4,1)", "NUMERIC"),
            ("FIXED(4,1)", "NUMERIC"),
            ("CHAR(10)", "TEXT"),
            ("VARCHAR(255)", "TEXT"),
            ("TINYTEXT", "TEXT"),
            ("TEXT", "TEXT"),
            ("MEDIUMTEXT", "TEXT"),
            ("LONGTEXT", "TEXT"),
            ("ENUM('a','B')", "TEXT"),
            ("SET('x','y')", "TEXT"),
            ("JSON", "TEXT"),
            ("DATE", "TEXT"),
            ("DATETIME", "TEXT"),
            ("DATETIME(6)", "TEXT"),
            ("TIMESTAMP", "TEXT"),
            ("TIME", "TEXT"),
            ("YEAR", "TEXT"),
            ("BINARY(16)", "BLOB"),
            ("VARBINARY(16)", "BLOB"),
            ("TINYBLOB", "BLOB"),
            ("BLOB", "BLOB"),
            ("MEDIUMBLOB", "BLOB"),
            ("LONGBLOB", "BLOB"),
        ];
        for (mysql, sqlite) in cases {
            let def = table(&format!("CREATE TABLE t (c {mysql} CHARACTER SET utf8 COLLATE utf8_bin COMMENT 'x')")).def;
            let column = def.column("c").unwrap();
            assert_eq!(column.decl_type, sqlite, "{mysql}");
            assert_eq!(column.affinity, Affinity::of_decl_type(sqlite), "{mysql}");
            assert!(
                !column.mysql_type.chars().any(|c| c.is_ascii_uppercase() && !mysql.contains("'B'")),
                "{mysql}: {}",
                column.mysql_type
            );
        }
    }

    #[test]
    fn defaults() {
        let default = |decl: &str| table(&format!("CREATE TABLE t (c {decl})")).def.columns[0].default.clone();
        assert_eq!(default("INT DEFAULT 5"), Some(s("5")));
        assert_eq!(default("INT DEFAULT -5"), Some(s("-5")));
        assert_eq!(default("DOUBLE DEFAULT 1.5"), Some(s("1.5")));
        assert_eq!(default("VARCHAR(5) DEFAULT 'it''s'"), Some(s("'it''s'")));
        assert_eq!(default("VARCHAR(5) DEFAULT \"dq\""), Some(s("'dq'")));
        assert_eq!(default("INT DEFAULT NULL"), None);
        assert_eq!(default("BOOL DEFAULT TRUE"), Some(s("1")));
        assert_eq!(
            default("TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"),
            Some(s("CURRENT_TIMESTAMP"))
        );
        assert_eq!(default("DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)"), Some(s("CURRENT_TIMESTAMP")));
        assert_eq!(default("DATETIME DEFAULT NOW()"), Some(s("CURRENT_TIMESTAMP")));
        assert_eq!(default("BLOB DEFAULT X'00FF'"), Some(s("X'00FF'")));
    }

    /// A single-column integer primary key must be SQLite's rowid alias: its value is the rowid.
    #[test]
    fn integer_primary_key_is_the_rowid() {
        let def = table("CREATE TABLE t (id BIGINT(20) UNSIGNED NOT NULL, v TEXT, PRIMARY KEY (id))").def;
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute(&def.create_sql, []).unwrap();
        conn.execute("INSERT INTO t (id, v) VALUES (42, 'x')", []).unwrap();
        let rowid: i64 = conn.query_row("SELECT rowid FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rowid, 42);
    }

    #[test]
    fn describe_and_show_create() {
        let def = table(
            "CREATE TABLE t (id INT NOT NULL AUTO_INCREMENT, k INT DEFAULT '0' NOT NULL, u VARCHAR(10), \
             m INT, n INT, PRIMARY KEY (id), UNIQUE KEY uu (u, id), KEY (m), UNIQUE (n, id), SHARD KEY (id))",
        )
        .def;
        let t = |x: &str| Value::Text(s(x));
        assert_eq!(
            describe_rows(&def),
            vec![
                vec![t("id"), t("int"), t("NO"), t("PRI"), Value::Null, t("auto_increment")],
                vec![t("k"), t("int"), t("NO"), t(""), t("0"), t("")],
                vec![t("u"), t("varchar(10)"), t("YES"), t("MUL"), Value::Null, t("")],
                vec![t("m"), t("int"), t("YES"), t("MUL"), Value::Null, t("")],
                vec![t("n"), t("int"), t("YES"), t("MUL"), Value::Null, t("")],
            ]
        );
        let reference = table("CREATE REFERENCE TABLE r (id INT PRIMARY KEY, e CHAR(3) UNIQUE)").def;
        assert_eq!(describe_rows(&reference)[1][3], t("UNI"));
        assert_eq!(
            show_create_table(&def),
            "CREATE TABLE `t` (\n  `id` int NOT NULL AUTO_INCREMENT,\n  `k` int NOT NULL DEFAULT '0',\n  \
             `u` varchar(10) NULL DEFAULT NULL,\n  `m` int NULL DEFAULT NULL,\n  `n` int NULL DEFAULT NULL,\n  \
             PRIMARY KEY (`id`),\n  UNIQUE KEY `uu` (`u`,`id`),\n  KEY `m` (`m`),\n  UNIQUE KEY `n` (`n`,`id`),\n  \
             SHARD KEY (`id`)\n)"
        );
        assert!(show_create_table(&reference).starts_with("CREATE REFERENCE TABLE `r` (\n"));
    }

    /// SHOW CREATE TABLE output parses back into the same definition.
    #[test]
    fn show_create_round_trips() {
        for sql in [
            SBTEST,
            "CREATE TABLE k (a INT, b TEXT)",
            "CREATE TABLE k (a INT, b TEXT, SHARD KEY (b), KEY (a))",
            "CREATE REFERENCE TABLE r (id INT PRIMARY KEY, e CHAR(3) UNIQUE, ts TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
            "CREATE TABLE `a b` (`x``y` DECIMAL(10,2) NOT NULL DEFAULT 1.5, z ENUM('A','b'), PRIMARY KEY (`x``y`))",
        ] {
            let def: TableDef = table(sql).def;
            let again = table(&show_create_table(&def)).def;
            assert_eq!(again, def, "{sql}\n{}", show_create_table(&def));
        }
    }

    #[test]
    fn create_index_against_a_table() {
        let def = table("CREATE TABLE t (a INT, b INT, PRIMARY KEY (a), KEY k (b))").def;
        let index = |sql: &str| match parse_statement(sql) {
            Ok(S::CreateIndex(i)) => i,
            other => panic!("{sql}: {other:?}"),
        };
        let ok = index("CREATE INDEX kb ON t (B)").resolve(&def).unwrap();
        assert_eq!(ok.columns, vec![s("b")]);
        assert_eq!(ok.index_sql(), r#"CREATE INDEX "t__kb" ON "t" ("b")"#);
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute(&def.create_sql, []).unwrap();
        conn.execute(&ok.index_sql(), []).unwrap();
        assert_eq!(
            index("CREATE UNIQUE INDEX u ON t (b)").resolve(&def),
            Err(SqlError::UniqueKeyWithoutShardKey { key: s("u") })
        );
        assert!(index("CREATE UNIQUE INDEX u ON t (b, a)").resolve(&def).is_ok());
        assert_eq!(index("CREATE INDEX k ON t (a)").resolve(&def), Err(SqlError::Parse(s("Duplicate key name 'k'"))));
        assert_eq!(
            index("CREATE INDEX z ON t (c)").resolve(&def),
            Err(SqlError::UnknownColumn { table: s("t"), column: s("c") })
        );
    }
}
