//! The error a MySQL client sees, and the one table of the errors the front end raises itself (code, SQLSTATE,
//! message). Backends map their own errors to `MysqlError` before returning them; this file does not know them.

/// An error as sent in an ERR packet: `ERROR code (sqlstate): message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERROR {code} ({sqlstate}): {message}")]
pub struct MysqlError {
    pub code: u16,
    /// Five characters; anything else is sent as `HY000`.
    pub sqlstate: String,
    pub message: String,
}

impl MysqlError {
    pub fn new(code: u16, sqlstate: &str, message: impl Into<String>) -> Self {
        MysqlError { code, sqlstate: sqlstate.to_string(), message: message.into() }
    }

    pub(crate) fn access_denied(user: &str, host: &str, used_password: bool) -> Self {
        let yes_no = if used_password { "YES" } else { "NO" };
        Self::new(1045, "28000", format!("Access denied for user '{user}'@'{host}' (using password: {yes_no})"))
    }

    pub(crate) fn too_many_connections() -> Self {
        Self::new(1040, "08004", "Too many connections")
    }

    pub(crate) fn packet_too_large() -> Self {
        Self::new(1153, "08S01", "Got a packet bigger than 'max_allowed_packet' bytes")
    }

    pub(crate) fn unknown_command() -> Self {
        Self::new(1047, "08S01", "Unknown command")
    }

    pub(crate) fn empty_query() -> Self {
        Self::new(1065, "42000", "Query was empty")
    }

    pub(crate) fn multi_statements_disabled() -> Self {
        Self::new(
            1064,
            "42000",
            "You have an error in your SQL syntax; multiple statements need CLIENT_MULTI_STATEMENTS",
        )
    }

    pub(crate) fn invalid_utf8() -> Self {
        Self::new(1300, "HY000", "Invalid utf8mb4 character string")
    }

    pub(crate) fn unknown_system_variable(name: &str) -> Self {
        Self::new(1193, "HY000", format!("Unknown system variable '{name}'"))
    }

    pub(crate) fn wrong_value_for_variable(name: &str, value: &str) -> Self {
        Self::new(1231, "42000", format!("Variable '{name}' can't be set to the value of '{value}'"))
    }

    pub(crate) fn unknown_statement(stmt_id: u32) -> Self {
        Self::new(1243, "HY000", format!("Unknown prepared statement handler ({stmt_id}) given to mysqld_stmt_execute"))
    }

    pub(crate) fn too_many_statements(max: usize) -> Self {
        Self::new(
            1461,
            "42000",
            format!("Can't create more than max_prepared_stmt_count statements (current value: {max})"),
        )
    }

    pub(crate) fn wrong_arguments() -> Self {
        Self::new(1210, "HY000", "Incorrect arguments to mysqld_stmt_execute")
    }

    /// The SQLSTATE as sent on the wire: exactly five bytes.
    pub(crate) fn wire_sqlstate(&self) -> &str {
        if self.sqlstate.len() == 5 && self.sqlstate.is_ascii() { &self.sqlstate } else { "HY000" }
    }
}
