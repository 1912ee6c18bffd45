//! Account statements on the master aggregator (CREATE/DROP/ALTER USER, SET PASSWORD, GRANT, REVOKE) and SHOW
//! GRANTS. Passwords are hashed here, as the MySQL plugins verify them (`canopy_mysql::auth`), before the metadata
//! command is built: no clear password reaches the metadata, its file or a log. What may change is decided by
//! `canopy_meta::users` (through `Cluster::apply`); who may run the statement was checked by the session before.

use std::collections::BTreeSet;

use canopy_meta::users::{Account, Authentication, ROOT, UserCommand, Users};
use canopy_meta::{ClusterMeta, Command, MetaError};
use canopy_mysql::auth::{native_authentication_string, sha2_digest};
use canopy_sql::command::users::{AccountStatement, AuthPlugin, GrantLevel, Identified, Privilege, PrivilegeList};
use canopy_sql::{ResultSet, SqlError, Value};

use crate::answer::Answer;
use crate::error::{Error, Notice, Result};
use crate::master::cluster::Cluster;

/// Runs `statement` for the session of `user` whose database is `db`.
pub async fn run(cluster: &Cluster, user: &str, db: Option<&str>, statement: AccountStatement) -> Result<Answer> {
    let meta = cluster.meta();
    // IF [NOT] EXISTS notes, from the snapshot the statement was checked against.
    let exists = |name: &String| meta.users.get(name).is_some();
    let mut notices = Vec::new();
    let command = match statement {
        AccountStatement::FlushPrivileges => return Ok(Answer::done()),
        AccountStatement::CreateUser { if_not_exists, users } => {
            if if_not_exists {
                notices.extend(users.iter().filter(|(n, _)| exists(n)).map(|(n, _)| Notice::AccountExists(n.clone())));
            }
            let accounts = users
                .into_iter()
                .map(|(name, identified)| {
                    let identified = identified.unwrap_or(Identified { plugin: None, password: String::new() });
                    (name, authentication(&identified, AuthPlugin::default()))
                })
                .collect();
            UserCommand::Create { accounts, if_not_exists }
        }
        AccountStatement::DropUser { if_exists, users } => {
            if if_exists {
                notices.extend(users.iter().filter(|n| !exists(n)).map(|n| Notice::UnknownAccount(n.clone())));
            }
            UserCommand::Drop { names: users, if_exists }
        }
        AccountStatement::AlterUser { if_exists, users } => {
            if if_exists {
                notices
                    .extend(users.iter().filter(|(n, _)| !exists(n)).map(|(n, _)| Notice::UnknownAccount(n.clone())));
            }
            let accounts = users
                .into_iter()
                .map(|(name, identified)| {
                    let current = current_plugin(&meta, &name);
                    (name, authentication(&identified, current))
                })
                .collect();
            UserCommand::SetAuthentication { accounts, if_exists }
        }
        AccountStatement::SetPassword { user: target, password } => {
            let name = target.unwrap_or_else(|| user.to_string());
            let identified = Identified { plugin: None, password };
            let current = current_plugin(&meta, &name);
            UserCommand::SetAuthentication {
                accounts: vec![(name.clone(), authentication(&identified, current))],
                if_exists: false,
            }
        }
        AccountStatement::Grant { privileges, on, users, grant_option } => {
            let level = on.resolve(db).ok_or(Error::Sql(SqlError::NoDatabaseSelected))?;
            let mut named = named_privileges(&privileges, &level);
            if grant_option {
                named.insert(Privilege::GrantOption);
            }
            UserCommand::Grant { names: users, level, privileges: named }
        }
        AccountStatement::Revoke { privileges, grant_option, on: None, users } => {
            debug_assert!(privileges == PrivilegeList::All && grant_option);
            UserCommand::Revoke { names: users, level: None, privileges: Privilege::EVERY.into_iter().collect() }
        }
        AccountStatement::Revoke { privileges, grant_option, on: Some(on), users } => {
            let level = on.resolve(db).ok_or(Error::Sql(SqlError::NoDatabaseSelected))?;
            let mut named = named_privileges(&privileges, &level);
            if grant_option {
                named.insert(Privilege::GrantOption);
            }
            UserCommand::Revoke { names: users, level: Some(level), privileges: named }
        }
    };
    cluster.apply(Command::User(command)).await?;
    Ok(Answer::noted(notices))
}

/// A statement's text as SHOW PROCESSLIST may show it: the statements that carry a password show only their
/// leading words, as MySQL rewrites them, so no other session reads the password while the statement runs.
pub fn shown_text(sql: &str) -> std::borrow::Cow<'_, str> {
    let words: Vec<String> = sql.split_whitespace().take(2).map(|w| w.to_ascii_uppercase()).collect();
    let secret = match words.as_slice() {
        [first, second] => {
            ((first == "CREATE" || first == "ALTER") && second == "USER")
                || (first == "SET" && second.starts_with("PASSWORD"))
        }
        _ => false,
    };
    if !secret {
        return sql.into();
    }
    let object = if words[0] == "SET" { "PASSWORD" } else { "USER" };
    format!("{} {object} <secret>", words[0]).into()
}

/// The hashes an account keeps for `identified`: both plugins' for caching_sha2_password accounts (so clients
/// that only speak mysql_native_password still log in), only the native one for accounts identified WITH
/// mysql_native_password, as MySQL does.
fn authentication(identified: &Identified, default: AuthPlugin) -> Authentication {
    let plugin = identified.plugin.unwrap_or(default);
    let password = &identified.password;
    let sha2 = match plugin {
        AuthPlugin::CachingSha2Password => Some(sha2_digest(password)),
        AuthPlugin::MysqlNativePassword => None,
    };
    Authentication { plugin, native: native_authentication_string(password), sha2 }
}

/// ALTER USER and SET PASSWORD keep an account's plugin unless they name another (MySQL's rule).
fn current_plugin(meta: &ClusterMeta, name: &str) -> AuthPlugin {
    meta.users.get(name).map(|a| a.authentication.plugin).unwrap_or_default()
}

fn named_privileges(privileges: &PrivilegeList, level: &GrantLevel) -> BTreeSet<Privilege> {
    match privileges {
        PrivilegeList::All => Privilege::all_at(level).into_iter().collect(),
        PrivilegeList::Some(list) => list.iter().copied().collect(),
    }
}

/// The rows of INFORMATION_SCHEMA table `table` that `user` may see, as MySQL filters them: rows of databases the
/// account holds no privilege on are left out, PROCESSLIST shows only its own connections and the cluster's tables
/// (LEAVES, AGGREGATORS, MV_CLUSTER_STATUS) nothing, unless it holds CLUSTER; the privilege tables show only the
/// account's own grants unless it holds global SELECT.
pub fn visible_rows(users: &Users, user: &str, table: &str, mut rows: ResultSet) -> ResultSet {
    let table = table.to_ascii_uppercase();
    // Other accounts' grants are the `mysql` schema's rows in MySQL: global SELECT reads them.
    if matches!(table.as_str(), "USER_PRIVILEGES" | "SCHEMA_PRIVILEGES") && !users.holds_global(user, Privilege::Select)
    {
        let own = Value::Text(grantee(user));
        rows.rows.retain(|row| row.first() == Some(&own));
        return rows;
    }
    if users.holds_global(user, Privilege::Cluster) {
        return rows;
    }
    if matches!(table.as_str(), "LEAVES" | "AGGREGATORS" | "MV_CLUSTER_STATUS") {
        rows.rows.clear();
        return rows;
    }
    let column =
        |names: &[&str]| rows.columns.iter().position(|c| names.iter().any(|n| c.name.eq_ignore_ascii_case(n)));
    if table == "PROCESSLIST" {
        if let Some(at) = column(&["USER"]) {
            let own = Value::Text(user.to_string());
            rows.rows.retain(|row| row.get(at) == Some(&own));
        }
        return rows;
    }
    const SCHEMA_COLUMNS: [&str; 6] =
        ["TABLE_SCHEMA", "SCHEMA_NAME", "CONSTRAINT_SCHEMA", "ROUTINE_SCHEMA", "TRIGGER_SCHEMA", "DATABASE_NAME"];
    if let Some(at) = column(&SCHEMA_COLUMNS) {
        rows.rows.retain(|row| match row.get(at) {
            Some(Value::Text(db)) => db.eq_ignore_ascii_case("information_schema") || users.sees(user, db),
            _ => true,
        });
    }
    rows
}

/// INFORMATION_SCHEMA.USER_PRIVILEGES (global grants) and SCHEMA_PRIVILEGES (database grants), one row per account
/// and privilege as MySQL lists them (`GRANTEE` is `'name'@'%'`; GRANT OPTION shows as `IS_GRANTABLE`). Root's
/// privileges come first. `None` for any other table name.
pub fn privilege_table(users: &Users, table: &str) -> Option<ResultSet> {
    let text = |s: &str| Value::Text(s.to_string());
    let grantable =
        |held: &BTreeSet<Privilege>| text(if held.contains(&Privilege::GrantOption) { "YES" } else { "NO" });
    let named =
        |held: &BTreeSet<Privilege>| held.iter().filter(|p| **p != Privilege::GrantOption).copied().collect::<Vec<_>>();
    let root: BTreeSet<Privilege> = Privilege::EVERY.into_iter().collect();
    match table.to_ascii_uppercase().as_str() {
        "USER_PRIVILEGES" => {
            let accounts =
                std::iter::once((ROOT, &root)).chain(users.accounts.values().map(|a| (a.name.as_str(), &a.global)));
            let mut rows = Vec::new();
            for (name, held) in accounts {
                let privileges = named(held);
                let shown: Vec<&str> =
                    if privileges.is_empty() { vec!["USAGE"] } else { privileges.iter().map(|p| p.name()).collect() };
                for privilege in shown {
                    rows.push(vec![text(&grantee(name)), text("def"), text(privilege), grantable(held)]);
                }
            }
            Some(ResultSet::named(&["GRANTEE", "TABLE_CATALOG", "PRIVILEGE_TYPE", "IS_GRANTABLE"], rows))
        }
        "SCHEMA_PRIVILEGES" => {
            let mut rows = Vec::new();
            for account in users.accounts.values() {
                for (db, held) in &account.databases {
                    for privilege in named(held) {
                        let row = vec![
                            text(&grantee(&account.name)),
                            text("def"),
                            text(db),
                            text(privilege.name()),
                            grantable(held),
                        ];
                        rows.push(row);
                    }
                }
            }
            let columns = ["GRANTEE", "TABLE_CATALOG", "TABLE_SCHEMA", "PRIVILEGE_TYPE", "IS_GRANTABLE"];
            Some(ResultSet::named(&columns, rows))
        }
        _ => None,
    }
}

fn grantee(name: &str) -> String {
    format!("'{}'@'%'", name.replace('\'', "''"))
}

/// SHOW GRANTS [FOR name]: the session's account without a name (or with CURRENT_USER).
pub fn show_grants(meta: &ClusterMeta, session_user: &str, named: Option<&str>) -> Result<ResultSet> {
    let user = named.filter(|u| *u != "CURRENT_USER").unwrap_or(session_user);
    let lines = if user == ROOT {
        vec![format!("GRANT ALL PRIVILEGES ON *.* TO '{ROOT}'@'%' WITH GRANT OPTION")]
    } else {
        let account = meta.users.get(user).ok_or_else(|| {
            Error::Meta(MetaError::User(canopy_meta::users::UserError::NoSuchGrant(user.to_string())))
        })?;
        grant_statements(account)
    };
    let rows = lines.into_iter().map(|l| vec![Value::Text(l)]).collect();
    Ok(ResultSet::named(&[&format!("Grants for {user}@%")], rows))
}

/// The GRANT statements that recreate an account's privileges, as MySQL's SHOW GRANTS prints them: the global
/// level first (USAGE when it holds nothing), then each database.
fn grant_statements(account: &Account) -> Vec<String> {
    let line = |held: &BTreeSet<Privilege>, level: &GrantLevel| {
        let shown: Vec<Privilege> = held.iter().copied().filter(|p| *p != Privilege::GrantOption).collect();
        let list = if shown.is_empty() {
            "USAGE".to_string()
        } else if shown == Privilege::all_at(level) {
            "ALL PRIVILEGES".to_string()
        } else {
            shown.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
        };
        let on = match level {
            GrantLevel::Global => "*.*".to_string(),
            GrantLevel::Database(db) => format!("`{}`.*", db.replace('`', "``")),
        };
        let option = if held.contains(&Privilege::GrantOption) { " WITH GRANT OPTION" } else { "" };
        format!("GRANT {list} ON {on} TO '{}'@'%'{option}", account.name.replace('\'', "''"))
    };
    let mut lines = vec![line(&account.global, &GrantLevel::Global)];
    for (db, held) in &account.databases {
        lines.push(line(held, &GrantLevel::Database(db.clone())));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use Privilege::*;

    fn account(global: &[Privilege], databases: &[(&str, &[Privilege])]) -> Account {
        Account {
            name: "app".into(),
            authentication: authentication(&Identified { plugin: None, password: "p".into() }, AuthPlugin::default()),
            global: global.iter().copied().collect(),
            databases: databases.iter().map(|(d, p)| (d.to_string(), p.iter().copied().collect())).collect(),
        }
    }

    #[test]
    fn grants_print_as_mysql_prints_them() {
        assert_eq!(grant_statements(&account(&[], &[])), ["GRANT USAGE ON *.* TO 'app'@'%'"]);
        assert_eq!(
            grant_statements(&account(&[Cluster], &[("shop", &[Select, Insert]), ("x", &[GrantOption])])),
            [
                "GRANT CLUSTER ON *.* TO 'app'@'%'",
                "GRANT SELECT, INSERT ON `shop`.* TO 'app'@'%'",
                "GRANT USAGE ON `x`.* TO 'app'@'%' WITH GRANT OPTION",
            ]
        );
        let all_global = Privilege::all_at(&GrantLevel::Global);
        let all_db = Privilege::all_at(&GrantLevel::Database("d".into()));
        assert_eq!(
            grant_statements(&account(&[all_global.as_slice(), &[GrantOption]].concat(), &[("d", &all_db)])),
            [
                "GRANT ALL PRIVILEGES ON *.* TO 'app'@'%' WITH GRANT OPTION",
                "GRANT ALL PRIVILEGES ON `d`.* TO 'app'@'%'"
            ]
        );
    }

    /// History: an account granted SELECT on `shop` reads INFORMATION_SCHEMA tables listing `shop` and `other`, the
    /// process list and the leaves. Property: it sees `shop`'s rows and its own connection only, no leaves; root
    /// sees everything.
    #[test]
    fn information_schema_shows_an_account_what_it_may_see() {
        let mut users = Users::default();
        let app = account(&[], &[("shop", &[Select])]);
        let auth = app.authentication.clone();
        users.apply(UserCommand::Create { accounts: vec![("app".into(), auth)], if_not_exists: false }).unwrap();
        let level = GrantLevel::Database("shop".into());
        let privileges = [Select].into_iter().collect();
        users.apply(UserCommand::Grant { names: vec!["app".into()], level, privileges }).unwrap();
        let text = |v: &str| Value::Text(v.into());
        let tables = ResultSet::named(
            &["TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME"],
            ["shop", "other", "information_schema"].iter().map(|d| vec![text("def"), text(d), text("t")]).collect(),
        );
        let seen =
            |user, table, rows: &ResultSet| -> Vec<Vec<Value>> { visible_rows(&users, user, table, rows.clone()).rows };
        assert_eq!(seen("app", "TABLES", &tables), [tables.rows[0].clone(), tables.rows[2].clone()]);
        assert_eq!(seen(ROOT, "TABLES", &tables), tables.rows);
        let processes = ResultSet::named(
            &["ID", "USER"],
            vec![vec![Value::Integer(1), text("root")], vec![Value::Integer(2), text("app")]],
        );
        assert_eq!(seen("app", "PROCESSLIST", &processes), [processes.rows[1].clone()]);
        let leaves = ResultSet::named(&["HOST"], vec![vec![text("h")]]);
        assert!(seen("app", "LEAVES", &leaves).is_empty());
        let schema = privilege_table(&users, "SCHEMA_PRIVILEGES").unwrap();
        assert_eq!(schema.rows, [vec![text("'app'@'%'"), text("def"), text("shop"), text("SELECT"), text("NO")]]);
        let global = privilege_table(&users, "USER_PRIVILEGES").unwrap();
        assert_eq!(global.rows.len(), 9, "root's eight privileges and app's USAGE: {:?}", global.rows);
        assert_eq!(
            seen("app", "USER_PRIVILEGES", &global),
            [vec![text("'app'@'%'"), text("def"), text("USAGE"), text("NO")]]
        );
    }

    #[test]
    fn statements_with_passwords_are_shown_without_them() {
        assert_eq!(shown_text("create user a identified by 'pw'"), "CREATE USER <secret>");
        assert_eq!(shown_text("SET PASSWORD = 'pw'"), "SET PASSWORD <secret>");
        assert_eq!(shown_text("set password='pw'"), "SET PASSWORD <secret>");
        assert_eq!(shown_text("SELECT 'pw'"), "SELECT 'pw'");
    }

    #[test]
    fn accounts_keep_hashes_never_the_password() {
        let sha2 = authentication(&Identified { plugin: None, password: "s3cret".into() }, AuthPlugin::default());
        assert_eq!(sha2.plugin, AuthPlugin::CachingSha2Password);
        assert!(sha2.native.starts_with('*') && sha2.sha2.as_ref().is_some_and(|d| d.len() == 64));
        assert!(!format!("{sha2:?}").contains("s3cret"));
        let native = authentication(
            &Identified { plugin: Some(AuthPlugin::MysqlNativePassword), password: "s3cret".into() },
            AuthPlugin::default(),
        );
        assert_eq!((native.plugin, native.sha2), (AuthPlugin::MysqlNativePassword, None));
        let kept = authentication(&Identified { plugin: None, password: "n".into() }, AuthPlugin::MysqlNativePassword);
        assert_eq!(kept.plugin, AuthPlugin::MysqlNativePassword, "ALTER USER keeps the account's plugin");
    }
}
