//! MySQL comment syntax through real processes: executable comments as dump files write them, and `-- `, `#` and
//! `/* */` comments wherever a statement may have them, for Canopy's own statements as well as plain SQL.

mod support;

use mysql_async::prelude::Queryable;
use support::TestCluster;

/// History: a cluster of one leaf; statements with every comment style, as mysqldump and hand-written scripts send
/// them (one statement per COM_QUERY, and several in one with CLIENT_MULTI_STATEMENTS).
/// Property: every statement runs as if its plain comments were not there; `/*!NNNNN ... */` runs its body when the
/// server's version (5.7.32) is at least NNNNN and is skipped otherwise; the rows written are all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_are_comments_and_executable_comments_execute() {
    let cluster = TestCluster::start("comments", 1).await;
    let mut conn = cluster.conn().await;
    for sql in [
        "/*!40100 SET @@SQL_MODE='' */",
        "/*!40101 SET NAMES utf8mb4 */",
        "/* leading */ CREATE DATABASE cm PARTITIONS 2",
        "-- a line comment\nUSE cm",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10)) /* trailing */",
        "# hash comment\nINSERT INTO t VALUES (1, 'a')",
        "INSERT INTO t VALUES (2, 'b') -- trailing",
        "INSERT /* inside */ INTO t VALUES (3, 'c') # trailing",
        "/*!80000 THIS IS NOT FOR 5.7 */ INSERT INTO t VALUES (4, 'd')",
        "INSERT INTO t VALUES (5, /*!40000 'e' */)",
        "SHOW /* inline */ TABLES",
    ] {
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    }
    let ids: Vec<(i64, String)> = conn.query("SELECT id, v FROM t ORDER BY id -- done").await.unwrap();
    assert_eq!(ids, [(1, "a".into()), (2, "b".into()), (3, "c".into()), (4, "d".into()), (5, "e".into())]);
    let literal: String = conn.query_first("SELECT '/*!40100 not a comment */'").await.unwrap().unwrap();
    assert_eq!(literal, "/*!40100 not a comment */");
    let only_comment = conn.query_drop("/*!80000 SELECT 1 */").await.unwrap_err();
    assert!(matches!(&only_comment, mysql_async::Error::Server(e) if e.code == 1065), "{only_comment:?}");
}
