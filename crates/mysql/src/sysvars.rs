//! The front end's own system variables: the built-in values clients and tools read at connect time
//! (`@@version_comment`, `@@max_allowed_packet`, ...), and the list of ordinary session variables whose `SET` the front
//! end acknowledges itself. Backends can override any value through `Session::system_variable`; this table is the
//! fallback, not the source of truth for cluster settings.

use canopy_sql::Value;

use crate::Limits;

/// Session variables a client may set without the backend hearing about it: they only shape how this front end talks
/// to the client, or are settings tools set out of habit and Canopy does not act on. Matched case-insensitively.
const SESSION_VARIABLES: &[&str] = &[
    "autocommit",
    "big_tables",
    "character_set_client",
    "character_set_connection",
    "character_set_database",
    "character_set_results",
    "character_set_server",
    "collation_connection",
    "collation_database",
    "collation_server",
    "completion_type",
    "default_storage_engine",
    "div_precision_increment",
    "explicit_defaults_for_timestamp",
    "foreign_key_checks",
    "group_concat_max_len",
    "innodb_lock_wait_timeout",
    "interactive_timeout",
    "lc_messages",
    "lc_time_names",
    "lock_wait_timeout",
    "long_query_time",
    "max_execution_time",
    "names",
    "net_buffer_length",
    "net_read_timeout",
    "net_retry_count",
    "net_write_timeout",
    "profiling",
    "query_cache_type",
    "session_track_gtids",
    "session_track_schema",
    "session_track_state_change",
    "session_track_system_variables",
    "session_track_transaction_info",
    "sql_auto_is_null",
    "sql_big_selects",
    "sql_buffer_result",
    "sql_log_bin",
    "sql_mode",
    "sql_notes",
    "sql_quote_show_create",
    "sql_safe_updates",
    "sql_select_limit",
    "sql_warnings",
    "time_zone",
    "transaction_isolation",
    "transaction_read_only",
    "tx_isolation",
    "tx_read_only",
    "unique_checks",
    "wait_timeout",
];

pub(crate) fn is_session_variable(name: &str) -> bool {
    SESSION_VARIABLES.iter().any(|v| v.eq_ignore_ascii_case(name))
}

const SQL_MODE: &str = "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION";

/// Every built-in system variable with its value, in name order: names lowercase, without scope. SHOW VARIABLES
/// and INFORMATION_SCHEMA.GLOBAL_VARIABLES list these beside the cluster's own variables.
pub fn builtins(limits: &Limits) -> Vec<(&'static str, Value)> {
    let text = |s: &str| Value::Text(s.to_string());
    let groups: Vec<(&'static [&'static str], Value)> = vec![
        (&["version"], text(&limits.server_version)),
        (&["version_comment"], text("Canopy")),
        // The plugin the handshake offers (`auth`); `authentication_policy` is MySQL 8.0.27's name for the choice.
        (&["default_authentication_plugin"], text(crate::auth::CACHING_SHA2_PASSWORD)),
        (&["authentication_policy"], text("*,,")),
        (&["version_compile_os"], text("Linux")),
        (&["version_compile_machine"], text(std::env::consts::ARCH)),
        (&["max_allowed_packet"], Value::Integer(i64::from(limits.max_packet_bytes))),
        (&["max_connections"], Value::Integer(i64::from(limits.max_connections))),
        (&["wait_timeout", "interactive_timeout"], Value::Integer(28800)),
        (&["net_write_timeout"], Value::Integer(60)),
        (&["net_read_timeout"], Value::Integer(30)),
        (&["net_buffer_length"], Value::Integer(16384)),
        (&["connect_timeout"], Value::Integer(10)),
        (&["autocommit"], Value::Integer(1)),
        (&["sql_mode"], text(SQL_MODE)),
        (
            &[
                "character_set_client",
                "character_set_connection",
                "character_set_results",
                "character_set_server",
                "character_set_database",
                "character_set_system",
            ],
            text("utf8mb4"),
        ),
        (&["collation_connection", "collation_server", "collation_database"], text("utf8mb4_bin")),
        (&["time_zone"], text("SYSTEM")),
        (&["system_time_zone"], text("UTC")),
        (&["lower_case_table_names"], Value::Integer(0)),
        (&["transaction_isolation", "tx_isolation"], text("READ-COMMITTED")),
        (&["transaction_read_only", "tx_read_only", "read_only", "super_read_only"], Value::Integer(0)),
        (&["socket"], Value::Null),
        (&["license"], text("Apache-2.0")),
        (&["performance_schema"], Value::Integer(0)),
        (&["init_connect"], text("")),
        (&["query_cache_type"], text("OFF")),
        (&["query_cache_size"], Value::Integer(0)),
        (&["have_ssl", "have_openssl"], text("DISABLED")),
        (&["sql_select_limit"], Value::Integer(i64::MAX)),
        (&["sql_auto_is_null", "sql_safe_updates"], Value::Integer(0)),
        (
            &["foreign_key_checks", "unique_checks", "sql_notes", "sql_warnings", "sql_quote_show_create"],
            Value::Integer(1),
        ),
        (&["auto_increment_increment", "auto_increment_offset"], Value::Integer(1)),
        (&["default_storage_engine", "storage_engine"], text("Canopy")),
        (&["lc_time_names"], text("en_US")),
        (&["lc_messages"], text("en_US")),
        (&["group_concat_max_len"], Value::Integer(1024)),
        (&["max_execution_time"], Value::Integer(0)),
        (&["div_precision_increment"], Value::Integer(4)),
        (&["explicit_defaults_for_timestamp"], Value::Integer(1)),
        (&["port"], Value::Integer(i64::from(limits.port))),
        (&["hostname"], text("canopy")),
        (&["protocol_version"], Value::Integer(10)),
        (&["warning_count", "error_count"], Value::Integer(0)),
        (&["last_insert_id", "identity"], Value::Integer(0)),
        (&["session_track_schema", "session_track_state_change"], Value::Integer(0)),
        (&["session_track_gtids"], text("OFF")),
        (&["session_track_system_variables"], text("")),
        (&["session_track_transaction_info"], text("OFF")),
        (&["profiling"], Value::Integer(0)),
        (&["long_query_time"], Value::Real(10.0)),
        (&["lock_wait_timeout"], Value::Integer(31536000)),
        (&["innodb_lock_wait_timeout"], Value::Integer(50)),
        (&["net_retry_count"], Value::Integer(10)),
        (&["completion_type"], text("NO_CHAIN")),
        (&["big_tables", "sql_big_selects", "sql_buffer_result", "sql_log_bin"], Value::Integer(0)),
    ];
    let mut all: Vec<(&'static str, Value)> =
        groups.into_iter().flat_map(|(names, value)| names.iter().map(move |n| (*n, value.clone()))).collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    all
}

/// The built-in value of a system variable; `name` is lowercase without scope.
pub(crate) fn builtin(name: &str, limits: &Limits) -> Option<Value> {
    builtins(limits).into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_settable_session_variable_has_a_builtin_value() {
        let limits = Limits::default();
        for name in SESSION_VARIABLES.iter().filter(|n| **n != "names") {
            assert!(builtin(name, &limits).is_some(), "{name}");
        }
    }

    #[test]
    fn version_and_packet_size_come_from_the_limits() {
        let limits = Limits { max_packet_bytes: 1234, ..Limits::default() };
        assert_eq!(builtin("max_allowed_packet", &limits), Some(Value::Integer(1234)));
        assert_eq!(builtin("version", &limits), Some(Value::Text(limits.server_version.clone())));
        let plugin = builtin("default_authentication_plugin", &limits);
        assert_eq!(plugin, Some(Value::Text("caching_sha2_password".into())), "what the handshake offers");
        assert_eq!(builtin("no_such_thing", &limits), None);
    }
}
