//! The cluster's user accounts and their privileges, as part of the metadata (`ClusterMeta::users`), the commands
//! that change them (`UserCommand`, applied through `Command::User` like every metadata change) and the pure
//! privilege check (`Users::check`). Passwords are stored only as the hashes the MySQL plugins verify (computed by
//! the front end before a command is built); this module never sees a password in clear text.
//!
//! The node's `root` account is not stored here: it comes from each node's configuration, holds every privilege and
//! cannot be created, dropped, re-passworded or revoked through SQL.

use std::collections::{BTreeMap, BTreeSet};

use canopy_sql::command::access::Need;
use canopy_sql::command::users::{AuthPlugin, GrantLevel, Privilege};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The account every node has from its configuration.
pub const ROOT: &str = "root";

/// What a server needs to check a password, never the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    /// The plugin a client is switched to when it offers one the account cannot use.
    pub plugin: AuthPlugin,
    /// mysql_native_password's `authentication_string`: `*` and the upper-case hex of SHA1(SHA1(password)); empty
    /// for an empty password.
    pub native: String,
    /// caching_sha2_password's fast-authentication digest, hex of SHA256(SHA256(password)) (empty for an empty
    /// password); `None` for accounts identified WITH mysql_native_password, which cannot use that plugin.
    pub sha2: Option<String>,
}

/// One account, `'name'@'%'`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub authentication: Authentication,
    /// Privileges on `*.*`.
    #[serde(default)]
    pub global: BTreeSet<Privilege>,
    /// Privileges on `db.*`, by database name (names are case-sensitive, as databases are).
    #[serde(default)]
    pub databases: BTreeMap<String, BTreeSet<Privilege>>,
}

impl Account {
    /// Whether the account holds `privilege` on `db` (from `db.*` or `*.*`).
    pub fn holds(&self, privilege: Privilege, db: &str) -> bool {
        self.global.contains(&privilege) || self.databases.get(db).is_some_and(|p| p.contains(&privilege))
    }

    /// Whether the account holds some privilege on `db`, which lets it see the database.
    pub fn sees(&self, db: &str) -> bool {
        let real = |p: &BTreeSet<Privilege>| p.iter().any(|p| *p != Privilege::GrantOption);
        real(&self.global) || self.databases.get(db).is_some_and(real)
    }

    fn privileges_mut(&mut self, level: &GrantLevel) -> &mut BTreeSet<Privilege> {
        match level {
            GrantLevel::Global => &mut self.global,
            GrantLevel::Database(db) => self.databases.entry(db.clone()).or_default(),
        }
    }
}

/// The accounts of the cluster, by user name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    pub accounts: BTreeMap<String, Account>,
}

/// A change to the accounts. Every command is all or nothing: a refused one changes no account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserCommand {
    /// CREATE USER; with `if_not_exists` existing accounts are left as they are.
    Create {
        accounts: Vec<(String, Authentication)>,
        if_not_exists: bool,
    },
    /// DROP USER; with `if_exists` unknown names are skipped.
    Drop {
        names: Vec<String>,
        if_exists: bool,
    },
    /// ALTER USER ... IDENTIFIED BY, SET PASSWORD.
    SetAuthentication {
        accounts: Vec<(String, Authentication)>,
        if_exists: bool,
    },
    Grant {
        names: Vec<String>,
        level: GrantLevel,
        privileges: BTreeSet<Privilege>,
    },
    /// `level: None` revokes `privileges` at every level (`REVOKE ALL PRIVILEGES, GRANT OPTION FROM ...`).
    Revoke {
        names: Vec<String>,
        level: Option<GrantLevel>,
        privileges: BTreeSet<Privilege>,
    },
}

/// Why a user command is refused, with MySQL's words.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserError {
    /// MySQL's ER_CANNOT_USER (1396): an account that exists (CREATE), does not (DROP, ALTER), or is root.
    #[error("Operation {operation} failed for {}", quoted(.names))]
    OperationFailed { operation: &'static str, names: Vec<String> },
    /// ER_CANT_CREATE_USER_WITH_GRANT (1410): GRANT names an account that does not exist.
    #[error("You are not allowed to create a user with GRANT")]
    GrantToUnknown(String),
    /// ER_NONEXISTING_GRANT (1141): REVOKE at a level where the account holds nothing.
    #[error("There is no such grant defined for user '{0}' on host '%'")]
    NoSuchGrant(String),
    /// ER_WRONG_USAGE (1221): CLUSTER or CREATE USER on `db.*`.
    #[error("Incorrect usage of DB GRANT and GLOBAL PRIVILEGES")]
    GlobalPrivilegeOnDatabase,
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("'{n}'@'%'")).collect::<Vec<_>>().join(",")
}

/// A statement the account may not run: the first need it lacks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", denial_text(.user, .need))]
pub struct Denied {
    pub user: String,
    pub need: Need,
}

fn denial_text(user: &str, need: &Need) -> String {
    match need {
        Need::On { privilege, table: Some(table), .. } => {
            format!("{} command denied to user '{user}'@'%' for table '{table}'", privilege.name())
        }
        Need::Any { table: Some(table), .. } => {
            format!("SELECT command denied to user '{user}'@'%' for table '{table}'")
        }
        Need::On { db, table: None, .. } | Need::Any { db, table: None } => {
            format!("Access denied for user '{user}'@'%' to database '{db}'")
        }
        Need::Global(privilege) => {
            format!(
                "Access denied; you need (at least one of) the {} privilege(s) for this operation",
                privilege.name()
            )
        }
    }
}

impl Users {
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }

    /// Whether `user` may do everything `needs` lists. Root always may; an unknown user (an account dropped while
    /// its session is open) holds nothing, as in MySQL.
    pub fn check(&self, user: &str, needs: &[Need]) -> Result<(), Denied> {
        if user == ROOT {
            return Ok(());
        }
        let account = self.accounts.get(user);
        let met = |need: &Need| {
            let Some(account) = account else { return false };
            match need {
                Need::On { privilege, db, .. } => account.holds(*privilege, db),
                Need::Any { db, .. } => account.sees(db),
                Need::Global(privilege) => account.global.contains(privilege),
            }
        };
        match needs.iter().find(|n| !met(n)) {
            Some(need) => Err(Denied { user: user.to_string(), need: need.clone() }),
            None => Ok(()),
        }
    }

    /// Whether `user` holds `privilege` globally (root: always).
    pub fn holds_global(&self, user: &str, privilege: Privilege) -> bool {
        self.check(user, &[Need::Global(privilege)]).is_ok()
    }

    /// Whether `user` sees database `db` (SHOW DATABASES lists it, USE may choose it).
    pub fn sees(&self, user: &str, db: &str) -> bool {
        self.check(user, &[Need::Any { db: db.to_string(), table: None }]).is_ok()
    }

    pub fn apply(&mut self, command: UserCommand) -> Result<(), UserError> {
        let failed = |operation, names: Vec<String>| Err(UserError::OperationFailed { operation, names });
        match command {
            UserCommand::Create { accounts, if_not_exists } => {
                let refused = names_where(accounts.iter().map(|(n, _)| n), |n| {
                    n == ROOT || (!if_not_exists && self.accounts.contains_key(n))
                });
                if !refused.is_empty() || has_duplicates(accounts.iter().map(|(n, _)| n)) {
                    return failed("CREATE USER", refused);
                }
                for (name, authentication) in accounts {
                    self.accounts.entry(name.clone()).or_insert_with(|| Account {
                        name,
                        authentication,
                        global: BTreeSet::new(),
                        databases: BTreeMap::new(),
                    });
                }
            }
            UserCommand::Drop { names, if_exists } => {
                let refused = names_where(&names, |n| n == ROOT || (!if_exists && !self.accounts.contains_key(n)));
                if !refused.is_empty() {
                    return failed("DROP USER", refused);
                }
                for name in names {
                    self.accounts.remove(&name);
                }
            }
            UserCommand::SetAuthentication { accounts, if_exists } => {
                let refused = names_where(accounts.iter().map(|(n, _)| n), |n| {
                    n == ROOT || (!if_exists && !self.accounts.contains_key(n))
                });
                if !refused.is_empty() {
                    return failed("ALTER USER", refused);
                }
                for (name, authentication) in accounts {
                    if let Some(account) = self.accounts.get_mut(&name) {
                        account.authentication = authentication;
                    }
                }
            }
            UserCommand::Grant { names, level, privileges } => {
                if matches!(level, GrantLevel::Database(_)) && privileges.iter().any(|p| p.is_global_only()) {
                    return Err(UserError::GlobalPrivilegeOnDatabase);
                }
                if let Some(unknown) = names.iter().find(|n| *n != ROOT && !self.accounts.contains_key(*n)) {
                    return Err(UserError::GrantToUnknown(unknown.clone()));
                }
                // Root already holds everything.
                for name in names.iter().filter(|n| *n != ROOT) {
                    let account = self.accounts.get_mut(name).expect("checked above");
                    account.privileges_mut(&level).extend(privileges.iter().copied());
                }
            }
            UserCommand::Revoke { names, level, privileges } => {
                if names.iter().any(|n| n == ROOT) {
                    return failed("REVOKE", vec![ROOT.to_string()]);
                }
                for name in &names {
                    let Some(account) = self.accounts.get(name) else {
                        return Err(UserError::NoSuchGrant(name.clone()));
                    };
                    let held = match &level {
                        None => true,
                        Some(GrantLevel::Global) => true,
                        Some(GrantLevel::Database(db)) => account.databases.get(db).is_some_and(|p| !p.is_empty()),
                    };
                    if !held {
                        return Err(UserError::NoSuchGrant(name.clone()));
                    }
                }
                for name in &names {
                    let account = self.accounts.get_mut(name).expect("checked above");
                    match &level {
                        None => {
                            account.global.retain(|p| !privileges.contains(p));
                            for held in account.databases.values_mut() {
                                held.retain(|p| !privileges.contains(p));
                            }
                        }
                        Some(level) => account.privileges_mut(level).retain(|p| !privileges.contains(p)),
                    }
                    account.databases.retain(|_, held| !held.is_empty());
                }
            }
        }
        Ok(())
    }
}

fn names_where<'a>(names: impl IntoIterator<Item = &'a String>, refuse: impl Fn(&str) -> bool) -> Vec<String> {
    names.into_iter().filter(|n| refuse(n)).cloned().collect()
}

fn has_duplicates<'a>(names: impl IntoIterator<Item = &'a String>) -> bool {
    let mut seen = BTreeSet::new();
    names.into_iter().any(|n| !seen.insert(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Privilege::*;

    fn auth() -> Authentication {
        Authentication { plugin: AuthPlugin::CachingSha2Password, native: "*AB".into(), sha2: Some("cd".into()) }
    }

    fn users(names: &[&str]) -> Users {
        let mut users = Users::default();
        let accounts = names.iter().map(|n| (n.to_string(), auth())).collect();
        users.apply(UserCommand::Create { accounts, if_not_exists: false }).unwrap();
        users
    }

    fn grant(users: &mut Users, name: &str, level: GrantLevel, privileges: &[Privilege]) -> Result<(), UserError> {
        let privileges = privileges.iter().copied().collect();
        users.apply(UserCommand::Grant { names: vec![name.into()], level, privileges })
    }

    fn db(name: &str) -> GrantLevel {
        GrantLevel::Database(name.into())
    }

    fn on(privilege: Privilege, db: &str) -> Need {
        Need::On { privilege, db: db.into(), table: Some("t".into()) }
    }

    #[test]
    fn a_new_account_holds_nothing_until_granted() {
        let mut u = users(&["app"]);
        let select = [on(Select, "shop")];
        let denied = u.check("app", &select).unwrap_err();
        assert_eq!(denied.to_string(), "SELECT command denied to user 'app'@'%' for table 't'");
        assert!(!u.sees("app", "shop"));
        grant(&mut u, "app", db("shop"), &[Select]).unwrap();
        u.check("app", &select).unwrap();
        assert!(u.sees("app", "shop"));
        assert!(u.check("app", &[on(Select, "other")]).is_err(), "a database grant is only for that database");
        assert!(u.check("app", &[on(Insert, "shop")]).is_err());
        grant(&mut u, "app", GrantLevel::Global, &[Insert]).unwrap();
        u.check("app", &[on(Insert, "shop"), on(Insert, "other")]).unwrap();
    }

    #[test]
    fn root_holds_everything_and_unknown_users_nothing() {
        let u = Users::default();
        u.check(ROOT, &[Need::Global(Cluster), on(Drop, "x")]).unwrap();
        let denied = u.check("gone", &[Need::Global(Cluster)]).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "Access denied; you need (at least one of) the CLUSTER privilege(s) for this operation"
        );
        let denied = u.check("gone", &[Need::Any { db: "d".into(), table: None }]).unwrap_err();
        assert_eq!(denied.to_string(), "Access denied for user 'gone'@'%' to database 'd'");
    }

    #[test]
    fn revoke_removes_and_refuses_what_was_never_granted() {
        let mut u = users(&["app"]);
        grant(&mut u, "app", db("shop"), &[Select, Insert]).unwrap();
        let revoke = |level, privileges: &[Privilege]| UserCommand::Revoke {
            names: vec!["app".into()],
            level,
            privileges: privileges.iter().copied().collect(),
        };
        u.apply(revoke(Some(db("shop")), &[Insert])).unwrap();
        assert!(u.check("app", &[on(Insert, "shop")]).is_err());
        u.check("app", &[on(Select, "shop")]).unwrap();
        assert_eq!(u.apply(revoke(Some(db("other")), &[Select])), Err(UserError::NoSuchGrant("app".into())));
        u.apply(revoke(None, &Privilege::EVERY)).unwrap();
        assert!(u.get("app").unwrap().databases.is_empty(), "empty levels are forgotten");
        assert!(!u.sees("app", "shop"));
    }

    #[test]
    fn account_commands_are_all_or_nothing_and_spare_root() {
        let mut u = users(&["a"]);
        let create = |names: &[&str], if_not_exists| UserCommand::Create {
            accounts: names.iter().map(|n| (n.to_string(), auth())).collect(),
            if_not_exists,
        };
        let e = u.apply(create(&["b", "a"], false)).unwrap_err();
        assert_eq!(e.to_string(), "Operation CREATE USER failed for 'a'@'%'");
        assert!(u.get("b").is_none(), "a refused CREATE USER creates none of its accounts");
        u.apply(create(&["b", "a"], true)).unwrap();
        assert!(u.get("b").is_some());
        assert!(u.apply(create(&["root"], true)).is_err());
        let drop = |names: &[&str], if_exists| UserCommand::Drop {
            names: names.iter().map(|n| n.to_string()).collect(),
            if_exists,
        };
        assert!(u.apply(drop(&["a", "zz"], false)).is_err());
        assert!(u.get("a").is_some());
        assert!(u.apply(drop(&["root"], true)).is_err(), "root cannot be dropped");
        u.apply(drop(&["a", "zz"], true)).unwrap();
        assert!(u.get("a").is_none());
        assert_eq!(grant(&mut u, "zz", GrantLevel::Global, &[Select]), Err(UserError::GrantToUnknown("zz".into())));
        assert_eq!(grant(&mut u, "b", db("d"), &[Cluster]), Err(UserError::GlobalPrivilegeOnDatabase));
        let revoke_root =
            UserCommand::Revoke { names: vec![ROOT.into()], level: None, privileges: [Select].into_iter().collect() };
        assert!(u.apply(revoke_root).is_err());
    }

    /// History: a cluster.json written before accounts existed (no `users`), then one with an account.
    /// Property: the old file loads with no accounts; the new one round-trips.
    #[test]
    fn cluster_files_without_users_still_load() {
        let meta =
            crate::ClusterMeta::bootstrap("c".into(), crate::NodeAddr { host: "h".into(), port: 1, rpc_port: 2 });
        let mut old = serde_json::to_value(&meta).unwrap();
        old.as_object_mut().unwrap().remove("users").expect("users is written");
        let loaded: crate::ClusterMeta = serde_json::from_value(old).unwrap();
        assert_eq!(loaded.users, Users::default());
        let mut meta = meta;
        meta.users = users(&["app"]);
        let text = serde_json::to_string(&meta).unwrap();
        assert!(!text.contains("\"password\""), "no clear password field: {text}");
        assert_eq!(serde_json::from_str::<crate::ClusterMeta>(&text).unwrap(), meta);
    }
}
