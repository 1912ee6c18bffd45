//! The account statements: `CREATE USER`, `DROP USER`, `ALTER USER`, `SET PASSWORD`, `GRANT` and `REVOKE`, and the
//! privileges they name. Accounts are `'user'@'host'` as MySQL writes them; Canopy keeps one account per user name
//! and does not tell hosts apart, so the host part is accepted and dropped here. Passwords arrive in clear text and
//! leave this module that way: hashing them is the front end's (`canopy-mysql`'s `auth`), before any metadata sees
//! them.

use serde::{Deserialize, Serialize};

use crate::error::SqlError;
use crate::lexer::{Cursor, TokenKind};

/// A privilege a grant can name. Global-only privileges (`CLUSTER`, `CREATE USER`) exist only at `*.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    /// CREATE DATABASE, CREATE TABLE and CREATE INDEX (MySQL has a separate INDEX privilege; Canopy folds it in).
    Create,
    /// DROP DATABASE and DROP TABLE.
    Drop,
    /// Account administration: CREATE/DROP/ALTER USER, SET PASSWORD FOR another account.
    CreateUser,
    /// SingleStore's cluster administration privilege: every cluster command (ADD/REMOVE/ATTACH/DETACH LEAF,
    /// REBALANCE, SHOW LEAVES...), SET GLOBAL, KILL of another user's connection, other users' processes.
    Cluster,
    /// May grant and revoke the privileges it holds at the same level (`WITH GRANT OPTION`).
    GrantOption,
}

impl Privilege {
    /// Every privilege, in the order SHOW GRANTS lists them.
    pub const EVERY: [Privilege; 9] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Create,
        Privilege::Drop,
        Privilege::CreateUser,
        Privilege::Cluster,
        Privilege::GrantOption,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Create => "CREATE",
            Privilege::Drop => "DROP",
            Privilege::CreateUser => "CREATE USER",
            Privilege::Cluster => "CLUSTER",
            Privilege::GrantOption => "GRANT OPTION",
        }
    }

    /// Whether the privilege exists only at the global level (`*.*`).
    pub fn is_global_only(self) -> bool {
        matches!(self, Privilege::CreateUser | Privilege::Cluster)
    }

    /// What `ALL [PRIVILEGES]` means at a level: every privilege of the level except GRANT OPTION (which only
    /// `WITH GRANT OPTION` gives, as in MySQL).
    pub fn all_at(level: &GrantLevel) -> Vec<Privilege> {
        Privilege::EVERY
            .into_iter()
            .filter(|p| *p != Privilege::GrantOption)
            .filter(|p| matches!(level, GrantLevel::Global) || !p.is_global_only())
            .collect()
    }
}

/// Where a grant applies, once `ON *` is resolved against the session's database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GrantLevel {
    /// `*.*`
    Global,
    /// `db.*`
    Database(String),
}

/// `ON ...` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOn {
    Level(GrantLevel),
    /// `ON *`: the session's database (an error without one, as in MySQL).
    CurrentDatabase,
}

impl GrantOn {
    /// The level `ON ...` names for a session whose database is `db`; `None` for `ON *` without a database.
    pub fn resolve(&self, db: Option<&str>) -> Option<GrantLevel> {
        match self {
            GrantOn::Level(level) => Some(level.clone()),
            GrantOn::CurrentDatabase => db.map(|d| GrantLevel::Database(d.to_string())),
        }
    }
}

/// The privileges a GRANT or REVOKE names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeList {
    /// `ALL [PRIVILEGES]`
    All,
    /// `SELECT, INSERT, ...` (`USAGE` names none).
    Some(Vec<Privilege>),
}

/// The authentication plugins Canopy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AuthPlugin {
    /// MySQL 8's default: fast authentication with a SHA-256 scramble.
    #[default]
    #[serde(rename = "caching_sha2_password")]
    CachingSha2Password,
    #[serde(rename = "mysql_native_password")]
    MysqlNativePassword,
}

impl AuthPlugin {
    pub fn name(self) -> &'static str {
        match self {
            AuthPlugin::CachingSha2Password => "caching_sha2_password",
            AuthPlugin::MysqlNativePassword => "mysql_native_password",
        }
    }
}

/// `IDENTIFIED [WITH plugin] BY 'password'` (the password in clear text, as the client sent it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    pub plugin: Option<AuthPlugin>,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatement {
    /// `CREATE USER [IF NOT EXISTS] 'u'@'h' [IDENTIFIED [WITH plugin] BY 'p'] [, ...]`
    CreateUser { if_not_exists: bool, users: Vec<(String, Option<Identified>)> },
    /// `DROP USER [IF EXISTS] 'u'@'h' [, ...]`
    DropUser { if_exists: bool, users: Vec<String> },
    /// `ALTER USER [IF EXISTS] 'u'@'h' IDENTIFIED [WITH plugin] BY 'p' [, ...]`
    AlterUser { if_exists: bool, users: Vec<(String, Identified)> },
    /// `SET PASSWORD [FOR 'u'@'h'] = 'p'` (`None`: the session's own account).
    SetPassword { user: Option<String>, password: String },
    /// `GRANT privileges ON level TO 'u'@'h' [, ...] [WITH GRANT OPTION]`
    Grant { privileges: PrivilegeList, on: GrantOn, users: Vec<String>, grant_option: bool },
    /// `REVOKE [GRANT OPTION,] privileges ON level FROM 'u'@'h' [, ...]`; `on: None` is
    /// `REVOKE ALL [PRIVILEGES], GRANT OPTION FROM ...` (every privilege at every level).
    Revoke { privileges: PrivilegeList, grant_option: bool, on: Option<GrantOn>, users: Vec<String> },
    /// `FLUSH PRIVILEGES`: accounts take effect when they change, so there is nothing to reload.
    FlushPrivileges,
}

/// `Ok(None)` when the statement is not an account statement (the cursor is then untouched).
pub(super) fn parse(cur: &mut Cursor) -> Result<Option<AccountStatement>, SqlError> {
    let statement = if cur.peek_words(&["CREATE", "USER"]) {
        cur.set_context("CREATE USER");
        cur.advance();
        cur.advance();
        let if_not_exists = cur.eat_words(&["IF", "NOT", "EXISTS"]);
        let users = list(cur, |cur| {
            let user = account(cur)?;
            let identified = if cur.peek_words(&["IDENTIFIED"]) { Some(identified(cur)?) } else { None };
            Ok((user, identified))
        })?;
        AccountStatement::CreateUser { if_not_exists, users }
    } else if cur.peek_words(&["DROP", "USER"]) {
        cur.set_context("DROP USER");
        cur.advance();
        cur.advance();
        let if_exists = cur.eat_words(&["IF", "EXISTS"]);
        AccountStatement::DropUser { if_exists, users: list(cur, account)? }
    } else if cur.peek_words(&["ALTER", "USER"]) {
        cur.set_context("ALTER USER");
        cur.advance();
        cur.advance();
        let if_exists = cur.eat_words(&["IF", "EXISTS"]);
        let users = list(cur, |cur| Ok((account(cur)?, identified(cur)?)))?;
        AccountStatement::AlterUser { if_exists, users }
    } else if cur.peek_words(&["SET", "PASSWORD"]) {
        cur.set_context("SET PASSWORD");
        cur.advance();
        cur.advance();
        let user = if cur.eat_word("FOR") { Some(account(cur)?) } else { None };
        cur.expect_punct('=')?;
        if cur.peek_words(&["PASSWORD"]) {
            return Err(SqlError::Unsupported("SET PASSWORD = PASSWORD('...'); write SET PASSWORD = '...'".into()));
        }
        let password = cur.expect_string("a quoted password")?;
        AccountStatement::SetPassword { user, password }
    } else if cur.peek_words(&["GRANT"]) {
        cur.set_context("GRANT");
        cur.advance();
        let privileges = privilege_list(cur)?;
        cur.expect_word("ON")?;
        let on = grant_on(cur)?;
        cur.expect_word("TO")?;
        let users = list_until(cur, account, |cur| cur.peek_words(&["WITH"]))?;
        let grant_option = cur.eat_words(&["WITH", "GRANT", "OPTION"]);
        if !grant_option && cur.peek_words(&["WITH"]) {
            return Err(cur.error("GRANT OPTION after WITH"));
        }
        AccountStatement::Grant { privileges, on, users, grant_option }
    } else if cur.peek_words(&["REVOKE"]) {
        cur.set_context("REVOKE");
        cur.advance();
        // REVOKE ALL [PRIVILEGES], GRANT OPTION FROM ...: everything, everywhere.
        let comma_at = if cur.peek_words(&["ALL", "PRIVILEGES"]) { 2 } else { 1 };
        let everything = cur.peek_words(&["ALL"])
            && cur.peek_at(comma_at).is_some_and(|t| t.is_punct(','))
            && cur.peek_at(comma_at + 1).is_some_and(|t| t.is_word("GRANT"));
        if everything {
            cur.advance();
            cur.eat_word("PRIVILEGES");
            cur.expect_punct(',')?;
            cur.expect_word("GRANT")?;
            cur.expect_word("OPTION")?;
            cur.expect_word("FROM")?;
            let users = list(cur, account)?;
            return Ok(Some(AccountStatement::Revoke {
                privileges: PrivilegeList::All,
                grant_option: true,
                on: None,
                users,
            }));
        }
        let (privileges, grant_option) = revoked(cur)?;
        cur.expect_word("ON")?;
        let on = grant_on(cur)?;
        cur.expect_word("FROM")?;
        let users = list(cur, account)?;
        AccountStatement::Revoke { privileges, grant_option, on: Some(on), users }
    } else if cur.peek_words(&["FLUSH", "PRIVILEGES"]) {
        cur.set_context("FLUSH PRIVILEGES");
        cur.advance();
        cur.advance();
        AccountStatement::FlushPrivileges
    } else {
        return Ok(None);
    };
    cur.expect_end()?;
    Ok(Some(statement))
}

/// Items separated by commas up to the end of the statement.
fn list<T>(cur: &mut Cursor, item: impl Fn(&mut Cursor) -> Result<T, SqlError>) -> Result<Vec<T>, SqlError> {
    list_until(cur, item, |_| false)
}

fn list_until<T>(
    cur: &mut Cursor,
    item: impl Fn(&mut Cursor) -> Result<T, SqlError>,
    stop: impl Fn(&Cursor) -> bool,
) -> Result<Vec<T>, SqlError> {
    let mut items = vec![item(cur)?];
    while cur.eat_punct(',') {
        items.push(item(cur)?);
    }
    if !cur.is_end() && !stop(cur) {
        return Err(cur.error("',' or end of statement"));
    }
    Ok(items)
}

/// `'user'[@'host']`, `user[@host]` or `` `user`@`host` ``; the host is accepted and dropped (module doc).
pub(super) fn account(cur: &mut Cursor) -> Result<String, SqlError> {
    let name = |cur: &Cursor| match cur.peek().map(|t| &t.kind) {
        Some(TokenKind::Word(u) | TokenKind::QuotedIdent(u) | TokenKind::Str(u)) => Some(u.clone()),
        _ => None,
    };
    let user = name(cur).ok_or_else(|| cur.error("an account name such as 'user'@'%'"))?;
    cur.advance();
    if cur.eat_punct('@') {
        name(cur).ok_or_else(|| cur.error("a host name after '@'"))?;
        cur.advance();
    }
    if user.is_empty() {
        return Err(SqlError::Unsupported("anonymous accounts ('')".into()));
    }
    Ok(user)
}

/// `IDENTIFIED [WITH plugin] BY 'password'`
fn identified(cur: &mut Cursor) -> Result<Identified, SqlError> {
    cur.expect_word("IDENTIFIED")?;
    let plugin = if cur.eat_word("WITH") {
        let name = match cur.advance().map(|t| t.kind) {
            Some(TokenKind::Word(w) | TokenKind::Str(w) | TokenKind::QuotedIdent(w)) => w,
            _ => return Err(cur.error("an authentication plugin name")),
        };
        Some(match name.to_ascii_lowercase().as_str() {
            "caching_sha2_password" => AuthPlugin::CachingSha2Password,
            "mysql_native_password" => AuthPlugin::MysqlNativePassword,
            other => return Err(SqlError::Unsupported(format!("authentication plugin '{other}'"))),
        })
    } else {
        None
    };
    if cur.peek_words(&["BY", "PASSWORD"]) || cur.peek_words(&["AS"]) {
        return Err(SqlError::Unsupported("accounts given a password hash (IDENTIFIED BY PASSWORD / AS)".into()));
    }
    cur.expect_word("BY")?;
    let password = cur.expect_string("a quoted password")?;
    Ok(Identified { plugin, password })
}

/// One privilege name (`CREATE USER` and `GRANT OPTION` are two words), or `None` for `USAGE`.
fn privilege(cur: &mut Cursor) -> Result<Option<Privilege>, SqlError> {
    let words: [(&[&str], Option<Privilege>); 10] = [
        (&["CREATE", "USER"], Some(Privilege::CreateUser)),
        (&["GRANT", "OPTION"], Some(Privilege::GrantOption)),
        (&["SELECT"], Some(Privilege::Select)),
        (&["INSERT"], Some(Privilege::Insert)),
        (&["UPDATE"], Some(Privilege::Update)),
        (&["DELETE"], Some(Privilege::Delete)),
        (&["CREATE"], Some(Privilege::Create)),
        (&["DROP"], Some(Privilege::Drop)),
        (&["CLUSTER"], Some(Privilege::Cluster)),
        (&["USAGE"], None),
    ];
    for (keywords, privilege) in words {
        if cur.eat_words(keywords) {
            return Ok(privilege);
        }
    }
    match cur.peek().map(|t| &t.kind) {
        Some(TokenKind::Word(w)) => Err(SqlError::Unsupported(format!(
            "privilege {} (Canopy grants SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, CREATE USER, CLUSTER, GRANT OPTION)",
            w.to_ascii_uppercase()
        ))),
        _ => Err(cur.error("a privilege name")),
    }
}

/// `ALL [PRIVILEGES]` or a comma-separated list of privileges.
fn privilege_list(cur: &mut Cursor) -> Result<PrivilegeList, SqlError> {
    if cur.eat_word("ALL") {
        cur.eat_word("PRIVILEGES");
        return Ok(PrivilegeList::All);
    }
    let mut privileges = Vec::new();
    loop {
        privileges.extend(privilege(cur)?);
        if cur.peek().is_some_and(|t| t.is_punct('(')) {
            return Err(SqlError::Unsupported("column-level privileges".into()));
        }
        if !cur.eat_punct(',') {
            break;
        }
    }
    Ok(PrivilegeList::Some(privileges))
}

/// REVOKE's list, where `GRANT OPTION` may stand among the privileges: (the others, whether GRANT OPTION was named).
fn revoked(cur: &mut Cursor) -> Result<(PrivilegeList, bool), SqlError> {
    match privilege_list(cur)? {
        PrivilegeList::All => Ok((PrivilegeList::All, false)),
        PrivilegeList::Some(mut list) => {
            let grant_option = list.contains(&Privilege::GrantOption);
            list.retain(|p| *p != Privilege::GrantOption);
            Ok((PrivilegeList::Some(list), grant_option))
        }
    }
}

/// `*.*`, `db.*`, `*`; a table (`db.t`, `t`) is refused: Canopy grants at the global and database levels only.
fn grant_on(cur: &mut Cursor) -> Result<GrantOn, SqlError> {
    cur.eat_word("TABLE");
    if cur.eat_punct('*') {
        if cur.eat_punct('.') {
            cur.expect_punct('*')?;
            return Ok(GrantOn::Level(GrantLevel::Global));
        }
        return Ok(GrantOn::CurrentDatabase);
    }
    let db = cur.expect_ident("*.*, db.* or *")?;
    if cur.eat_punct('.') && cur.eat_punct('*') {
        return Ok(GrantOn::Level(GrantLevel::Database(db)));
    }
    Err(SqlError::Unsupported("table-level privileges (grant ON db.* or *.*)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Statement, parse_statement};

    fn check(sql: &str, expected: AccountStatement) {
        assert_eq!(parse_statement(sql), Ok(Statement::Account(expected)), "{sql}");
    }

    fn by(password: &str) -> Identified {
        Identified { plugin: None, password: password.into() }
    }

    fn db(name: &str) -> GrantOn {
        GrantOn::Level(GrantLevel::Database(name.into()))
    }

    #[test]
    fn account_statements_parse() {
        use AccountStatement::*;
        check(
            "CREATE USER 'app'@'%' IDENTIFIED BY 's3cret'",
            CreateUser { if_not_exists: false, users: vec![("app".into(), Some(by("s3cret")))] },
        );
        check(
            "create user if not exists app@localhost, `b` identified with mysql_native_password by 'x'",
            CreateUser {
                if_not_exists: true,
                users: vec![
                    ("app".into(), None),
                    (
                        "b".into(),
                        Some(Identified { plugin: Some(AuthPlugin::MysqlNativePassword), password: "x".into() }),
                    ),
                ],
            },
        );
        check("DROP USER IF EXISTS 'a'@'%', b", DropUser { if_exists: true, users: vec!["a".into(), "b".into()] });
        check("ALTER USER 'a' IDENTIFIED BY 'n'", AlterUser { if_exists: false, users: vec![("a".into(), by("n"))] });
        check("SET PASSWORD = 'p'", SetPassword { user: None, password: "p".into() });
        check("SET PASSWORD FOR 'a'@'%' = 'p'", SetPassword { user: Some("a".into()), password: "p".into() });
        check("flush privileges", FlushPrivileges);
    }

    #[test]
    fn grants_parse() {
        use AccountStatement::*;
        use Privilege::*;
        check(
            "GRANT SELECT, INSERT ON shop.* TO 'app'@'%'",
            Grant {
                privileges: PrivilegeList::Some(vec![Select, Insert]),
                on: db("shop"),
                users: vec!["app".into()],
                grant_option: false,
            },
        );
        check(
            "grant all privileges on *.* to a, b with grant option",
            Grant {
                privileges: PrivilegeList::All,
                on: GrantOn::Level(GrantLevel::Global),
                users: vec!["a".into(), "b".into()],
                grant_option: true,
            },
        );
        check(
            "GRANT CLUSTER, CREATE USER, USAGE ON * TO a",
            Grant {
                privileges: PrivilegeList::Some(vec![Cluster, CreateUser]),
                on: GrantOn::CurrentDatabase,
                users: vec!["a".into()],
                grant_option: false,
            },
        );
        check(
            "REVOKE DELETE, GRANT OPTION ON `shop`.* FROM 'app'@'%'",
            Revoke {
                privileges: PrivilegeList::Some(vec![Delete]),
                grant_option: true,
                on: Some(db("shop")),
                users: vec!["app".into()],
            },
        );
        check(
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM a",
            Revoke { privileges: PrivilegeList::All, grant_option: true, on: None, users: vec!["a".into()] },
        );
        check(
            "REVOKE ALL ON *.* FROM a",
            Revoke {
                privileges: PrivilegeList::All,
                grant_option: false,
                on: Some(GrantOn::Level(GrantLevel::Global)),
                users: vec!["a".into()],
            },
        );
    }

    #[test]
    fn what_canopy_does_not_grant_is_refused_by_name() {
        let unsupported = |sql: &str| match parse_statement(sql) {
            Err(SqlError::Unsupported(what)) => what,
            other => panic!("{sql}: {other:?}"),
        };
        assert!(unsupported("GRANT SELECT ON shop.t TO a").contains("table-level"));
        assert!(unsupported("GRANT SELECT (c) ON shop.* TO a").contains("column-level"));
        assert!(unsupported("GRANT ALTER ON *.* TO a").contains("ALTER"));
        assert!(unsupported("CREATE USER a IDENTIFIED WITH auth_socket BY 'x'").contains("auth_socket"));
        assert!(unsupported("CREATE USER a IDENTIFIED BY PASSWORD '*AB'").contains("hash"));
        for bad in
            ["CREATE USER", "GRANT SELECT ON *.* a", "DROP USER a b", "SET PASSWORD FOR a 'x'", "GRANT SELECT TO a"]
        {
            assert!(matches!(parse_statement(bad), Err(SqlError::Parse(_))), "{bad} should not parse");
        }
    }

    #[test]
    fn all_means_the_level_s_privileges_without_grant_option() {
        use Privilege::*;
        assert_eq!(
            Privilege::all_at(&GrantLevel::Global),
            [Select, Insert, Update, Delete, Create, Drop, CreateUser, Cluster]
        );
        assert_eq!(
            Privilege::all_at(&GrantLevel::Database("d".into())),
            [Select, Insert, Update, Delete, Create, Drop]
        );
        assert_eq!(GrantOn::CurrentDatabase.resolve(Some("d")), Some(GrantLevel::Database("d".into())));
        assert_eq!(GrantOn::CurrentDatabase.resolve(None), None);
    }
}
