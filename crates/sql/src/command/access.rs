//! What a statement needs from the account that runs it: [`required`] maps a classified statement to the privileges
//! it needs, and where. It decides nothing about who holds them (that is `canopy-meta`'s `users`) and reads no
//! catalog: a table the statement names counts for its database whether or not it exists.

use sqlparser::ast::{self, Visit, Visitor};
use std::collections::BTreeSet;
use std::ops::ControlFlow;

use super::users::{AccountStatement, GrantLevel, GrantOn, Privilege, PrivilegeList};
use super::{ClusterCommand, NoEffect, ShowCatalog, Statement};

/// One thing a statement needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// `privilege` on database `db` (a grant on `db.*` or on `*.*` gives it); `table` names what the statement
    /// touches, for the error (MySQL's 1142 names the table; without one, 1044 names the database).
    On { privilege: Privilege, db: String, table: Option<String> },
    /// Some privilege on `db`, whichever (USE, SHOW TABLES, DESCRIBE: MySQL's rule for seeing a database).
    Any { db: String, table: Option<String> },
    /// A privilege granted on `*.*` (MySQL's 1227).
    Global(Privilege),
}

/// The needs of `statement` run by `user` in a session whose database is `db`. A table named without a database in
/// a session without one needs nothing here: the statement fails with "No database selected" anyway.
pub fn required(statement: &Statement, db: Option<&str>, user: &str) -> Vec<Need> {
    let on = |privilege, named: &Option<String>, table: Option<&str>| {
        named.as_deref().or(db).map(|d| Need::On { privilege, db: d.to_string(), table: table.map(str::to_string) })
    };
    let any = |named: &Option<String>, table: Option<&str>| {
        named.as_deref().or(db).map(|d| Need::Any { db: d.to_string(), table: table.map(str::to_string) })
    };
    let needs: Vec<Need> = match statement {
        Statement::Cluster(ClusterCommand::BootstrapAggregator { .. }) => vec![],
        Statement::Cluster(_) | Statement::SetGlobal { .. } => vec![Need::Global(Privilege::Cluster)],
        Statement::CreateDatabase { name, .. } => {
            vec![Need::On { privilege: Privilege::Create, db: name.clone(), table: None }]
        }
        Statement::DropDatabase { name, .. } => {
            vec![Need::On { privilege: Privilege::Drop, db: name.clone(), table: None }]
        }
        Statement::Use { db } => vec![Need::Any { db: db.clone(), table: None }],
        Statement::ShowTables { db: named, .. } => any(named, None).into_iter().collect(),
        Statement::Describe { db: named, table } | Statement::ShowCreateTable { db: named, table } => {
            any(named, Some(table)).into_iter().collect()
        }
        Statement::NoEffect(NoEffect::ToggleKeys { db: named, table }) => any(named, Some(table)).into_iter().collect(),
        Statement::ShowCatalog(show) => match show {
            ShowCatalog::Index { db: named, table } | ShowCatalog::FullColumns { db: named, table, .. } => {
                any(named, Some(table)).into_iter().collect()
            }
            ShowCatalog::TableStatus { db: named, .. } => any(named, None).into_iter().collect(),
            ShowCatalog::CreateDatabase { name, .. } => vec![Need::Any { db: name.clone(), table: None }],
            // Another account's grants are the `mysql` schema's rows in MySQL: global SELECT reads them.
            ShowCatalog::Grants { user: Some(other) } if other != "CURRENT_USER" && other != user => {
                vec![Need::Global(Privilege::Select)]
            }
            // The session filters PROCESSLIST to the account's own connections (without CLUSTER).
            ShowCatalog::Grants { .. }
            | ShowCatalog::Engines
            | ShowCatalog::CharacterSet { .. }
            | ShowCatalog::Collation { .. }
            | ShowCatalog::Plugins
            | ShowCatalog::Privileges
            | ShowCatalog::ReplicationStatus
            | ShowCatalog::NoObjects(_)
            | ShowCatalog::Processlist { .. }
            | ShowCatalog::Status { .. } => vec![],
        },
        Statement::ShowWhere { show, .. } => required(show, db, user),
        Statement::CreateTable(create) => {
            on(Privilege::Create, &create.db, Some(&create.def.name)).into_iter().collect()
        }
        Statement::CreateIndex(index) => on(Privilege::Create, &index.db, Some(&index.table)).into_iter().collect(),
        Statement::DropTable { tables, .. } => {
            tables.iter().filter_map(|(named, table)| on(Privilege::Drop, named, Some(table))).collect()
        }
        Statement::Query(query) => self::query(query, db),
        Statement::Account(account) => account_needs(account, db, user),
        Statement::ShowDatabases { .. }
        | Statement::Kill { .. }
        | Statement::SetSession { .. }
        | Statement::SetNames { .. }
        | Statement::ShowVariables { .. }
        | Statement::NoEffect(_)
        | Statement::Begin
        | Statement::Commit
        | Statement::Rollback
        | Statement::Savepoint(_)
        | Statement::Other(_) => vec![],
    };
    // INFORMATION_SCHEMA is readable by every account, as in MySQL.
    let needs: BTreeSet<Need> = needs.into_iter().filter(|n| !is_information_schema(n)).collect();
    needs.into_iter().collect()
}

fn account_needs(statement: &AccountStatement, db: Option<&str>, user: &str) -> Vec<Need> {
    let at = |privilege: Privilege, level: &GrantLevel| match level {
        GrantLevel::Global => Need::Global(privilege),
        GrantLevel::Database(d) => Need::On { privilege, db: d.clone(), table: None },
    };
    // GRANT and REVOKE need GRANT OPTION and every privilege they name, at their level (MySQL's rule).
    let granting = |privileges: &PrivilegeList, on: &GrantOn| {
        let Some(level) = on.resolve(db) else { return vec![] };
        let mut named = match privileges {
            PrivilegeList::All => Privilege::all_at(&level),
            PrivilegeList::Some(list) => list.clone(),
        };
        named.push(Privilege::GrantOption);
        named.iter().map(|p| at(*p, &level)).collect()
    };
    match statement {
        AccountStatement::CreateUser { .. } | AccountStatement::DropUser { .. } => {
            vec![Need::Global(Privilege::CreateUser)]
        }
        // Changing one's own password needs nothing.
        AccountStatement::AlterUser { users, .. } if users.iter().all(|(u, _)| u == user) => vec![],
        AccountStatement::AlterUser { .. } => vec![Need::Global(Privilege::CreateUser)],
        AccountStatement::SetPassword { user: None, .. } => vec![],
        AccountStatement::SetPassword { user: Some(u), .. } if u == user => vec![],
        AccountStatement::SetPassword { .. } => vec![Need::Global(Privilege::CreateUser)],
        AccountStatement::Grant { privileges, on, .. } => granting(privileges, on),
        AccountStatement::Revoke { on: None, .. } => vec![Need::Global(Privilege::CreateUser)],
        AccountStatement::FlushPrivileges => vec![],
        AccountStatement::Revoke { privileges, on: Some(on), .. } => granting(privileges, on),
    }
}

/// The needs of a query or DML statement (also a prepared one, parsed once): the written table's database needs
/// the write's privilege (REPLACE: INSERT and DELETE), every other table read needs SELECT. CTE names are not
/// tables; INFORMATION_SCHEMA needs nothing.
pub fn query(statement: &ast::Statement, db: Option<&str>) -> Vec<Need> {
    let statement = match statement {
        ast::Statement::Explain { statement, .. } => statement.as_ref(),
        other => other,
    };
    let (written, privileges): (Vec<&ast::ObjectName>, Vec<Privilege>) = match statement {
        ast::Statement::Insert(insert) => {
            let target = match &insert.table {
                ast::TableObject::TableName(name) => vec![name],
                ast::TableObject::TableFunction(_) | ast::TableObject::TableQuery(_) => vec![],
            };
            let privileges =
                if insert.replace_into { vec![Privilege::Insert, Privilege::Delete] } else { vec![Privilege::Insert] };
            (target, privileges)
        }
        ast::Statement::Update(update) => {
            (relation_name(&update.table.relation).into_iter().collect(), vec![Privilege::Update])
        }
        ast::Statement::Delete(delete) => {
            let from = match &delete.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            let targets: Vec<&ast::ObjectName> = if delete.tables.is_empty() {
                from.iter().filter_map(|t| relation_name(&t.relation)).collect()
            } else {
                delete.tables.iter().collect()
            };
            (targets, vec![Privilege::Delete])
        }
        _ => (vec![], vec![]),
    };
    let mut tables = Tables::default();
    let _ = statement.visit(&mut tables);
    let mut read = tables.relations;
    let mut needs = BTreeSet::new();
    for name in &written {
        if let Some(at) = read.iter().position(|r| r == *name) {
            read.remove(at);
        }
        if let Some((d, t)) = qualify(name, db) {
            needs.extend(privileges.iter().map(|p| Need::On { privilege: *p, db: d.clone(), table: Some(t.clone()) }));
        }
    }
    for name in &read {
        let is_cte = name.0.len() == 1 && name_part(name, 0).is_some_and(|n| tables.ctes.contains(&n));
        if is_cte {
            continue;
        }
        if let Some((d, t)) = qualify(name, db) {
            needs.insert(Need::On { privilege: Privilege::Select, db: d, table: Some(t) });
        }
    }
    needs.into_iter().filter(|n| !is_information_schema(n)).collect()
}

fn is_information_schema(need: &Need) -> bool {
    match need {
        Need::On { db, .. } | Need::Any { db, .. } => db.eq_ignore_ascii_case("information_schema"),
        Need::Global(_) => false,
    }
}

fn relation_name(relation: &ast::TableFactor) -> Option<&ast::ObjectName> {
    match relation {
        ast::TableFactor::Table { name, .. } => Some(name),
        _ => None,
    }
}

fn name_part(name: &ast::ObjectName, i: usize) -> Option<String> {
    name.0.get(i).and_then(|p| p.as_ident()).map(|id| id.value.clone())
}

/// (database, table) of a table name: `db.t`, or `t` in the session's database (a longer name counts by its last
/// two parts, so no spelling of a table escapes its database's check).
fn qualify(name: &ast::ObjectName, db: Option<&str>) -> Option<(String, String)> {
    match name.0.len() {
        0 => None,
        1 => Some((db?.to_string(), name_part(name, 0)?)),
        n => Some((name_part(name, n - 2)?, name_part(name, n - 1)?)),
    }
}

/// Every table relation a statement names, and the names its WITH clauses define.
#[derive(Default)]
struct Tables {
    relations: Vec<ast::ObjectName>,
    ctes: Vec<String>,
}

impl Visitor for Tables {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ast::ObjectName) -> ControlFlow<()> {
        self.relations.push(relation.clone());
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(with.cte_tables.iter().map(|c| c.alias.name.value.clone()));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse_statement;
    use Privilege::*;

    fn needs(sql: &str, db: Option<&str>) -> Vec<Need> {
        required(&parse_statement(sql).unwrap_or_else(|e| panic!("{sql}: {e}")), db, "app")
    }

    fn on(privilege: Privilege, db: &str, table: Option<&str>) -> Need {
        Need::On { privilege, db: db.into(), table: table.map(Into::into) }
    }

    #[test]
    fn queries_need_select_and_writes_their_privilege() {
        let d = Some("shop");
        assert_eq!(needs("SELECT 1", d), []);
        assert_eq!(needs("SELECT * FROM t", d), [on(Select, "shop", Some("t"))]);
        assert_eq!(needs("SELECT * FROM t", None), [], "no database: the statement fails on its own");
        assert_eq!(
            needs("SELECT * FROM t JOIN other.u ON t.id = u.id", d),
            [on(Select, "other", Some("u")), on(Select, "shop", Some("t"))]
        );
        assert_eq!(needs("INSERT INTO t VALUES (1)", d), [on(Insert, "shop", Some("t"))]);
        assert_eq!(
            needs("INSERT INTO t SELECT * FROM other.u", d),
            [on(Select, "other", Some("u")), on(Insert, "shop", Some("t"))]
        );
        assert_eq!(
            needs("REPLACE INTO t VALUES (1)", d),
            [on(Insert, "shop", Some("t")), on(Delete, "shop", Some("t"))]
        );
        assert_eq!(needs("UPDATE t SET a = 1 WHERE id = 2", d), [on(Update, "shop", Some("t"))]);
        assert_eq!(needs("DELETE FROM other.t WHERE id = 2", d), [on(Delete, "other", Some("t"))]);
        assert_eq!(needs("EXPLAIN SELECT * FROM t", d), [on(Select, "shop", Some("t"))]);
        assert_eq!(needs("WITH c AS (SELECT * FROM t) SELECT * FROM c", d), [on(Select, "shop", Some("t"))]);
        assert_eq!(needs("SELECT * FROM information_schema.TABLES", d), []);
    }

    #[test]
    fn ddl_and_catalog_statements_need_their_database() {
        let d = Some("shop");
        assert_eq!(needs("CREATE DATABASE x", d), [on(Create, "x", None)]);
        assert_eq!(needs("DROP DATABASE x", d), [on(Drop, "x", None)]);
        assert_eq!(needs("CREATE TABLE t (id INT PRIMARY KEY)", d), [on(Create, "shop", Some("t"))]);
        assert_eq!(needs("CREATE INDEX i ON t (a)", d), [on(Create, "shop", Some("t"))]);
        assert_eq!(needs("DROP TABLE t, x.u", d), [on(Drop, "shop", Some("t")), on(Drop, "x", Some("u"))]);
        assert_eq!(needs("USE x", d), [Need::Any { db: "x".into(), table: None }]);
        assert_eq!(needs("SHOW TABLES", d), [Need::Any { db: "shop".into(), table: None }]);
        assert_eq!(needs("DESCRIBE t", d), [Need::Any { db: "shop".into(), table: Some("t".into()) }]);
        assert_eq!(needs("SHOW DATABASES", d), []);
        assert_eq!(needs("SHOW TABLES WHERE 1", d), [Need::Any { db: "shop".into(), table: None }]);
    }

    #[test]
    fn cluster_commands_and_globals_need_cluster() {
        for sql in
            ["SHOW LEAVES", "ADD LEAF root@'h':1", "REBALANCE PARTITIONS ON d", "SET GLOBAL x = 1", "DETACH LEAF 'h':1"]
        {
            assert_eq!(needs(sql, None), [Need::Global(Cluster)], "{sql}");
        }
        assert_eq!(needs("KILL 3", None), [], "the session checks the connection's owner");
    }

    #[test]
    fn account_statements_need_create_user_or_grant_option() {
        assert_eq!(needs("CREATE USER b IDENTIFIED BY 'x'", None), [Need::Global(CreateUser)]);
        assert_eq!(needs("DROP USER b", None), [Need::Global(CreateUser)]);
        assert_eq!(needs("SET PASSWORD = 'x'", None), []);
        assert_eq!(needs("SET PASSWORD FOR app = 'x'", None), [], "one's own account");
        assert_eq!(needs("ALTER USER app IDENTIFIED BY 'x'", None), []);
        assert_eq!(needs("SET PASSWORD FOR b = 'x'", None), [Need::Global(CreateUser)]);
        assert_eq!(
            needs("GRANT SELECT ON shop.* TO b", None),
            [on(Select, "shop", None), on(GrantOption, "shop", None)]
        );
        assert_eq!(needs("GRANT CLUSTER ON *.* TO b", None), [Need::Global(Cluster), Need::Global(GrantOption)]);
        assert_eq!(needs("REVOKE INSERT ON * FROM b", Some("d")), [on(Insert, "d", None), on(GrantOption, "d", None)]);
        assert_eq!(needs("SHOW GRANTS", None), []);
        assert_eq!(needs("SHOW GRANTS FOR app", None), []);
        assert_eq!(needs("SHOW GRANTS FOR b", None), [Need::Global(Select)]);
    }
}
