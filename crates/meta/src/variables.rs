//! Cluster-wide global variables (`SET GLOBAL name = value`), with their types, defaults and validation in one
//! table. Values are kept typed; the SQL layer hands in `canopy_sql::Value`s and this module says what they mean.

use canopy_sql::Value;
use serde::{Deserialize, Serialize};

use crate::MetaError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Variables {
    /// Partitions per online leaf for `CREATE DATABASE` without `PARTITIONS n`.
    pub default_partitions_per_leaf: u32,
    /// Reachable-again leaves are attached automatically (issue: leaf lifecycle).
    pub auto_attach: bool,
    /// The master aggregator marks unreachable leaves offline.
    pub leaf_failure_detection: bool,
    /// Number of availability groups (1 or 2).
    pub redundancy_level: u8,
    /// How often the master aggregator pings each leaf.
    pub heartbeat_interval_ms: u64,
    /// A leaf that answered nothing for this long is declared offline (a frozen process, a cut link).
    pub leaf_failure_timeout_ms: u64,
    /// A leaf whose connections were refused this many heartbeats in a row is declared offline (a dead process).
    pub leaf_failure_refused_count: u32,
    /// Steps of a rebalance phase (copies, promotions) running at once on one leaf, as a copy's source or target.
    pub max_concurrent_moves: u32,
}

impl Default for Variables {
    fn default() -> Self {
        Variables {
            default_partitions_per_leaf: 2,
            auto_attach: true,
            leaf_failure_detection: true,
            redundancy_level: 1,
            heartbeat_interval_ms: 200,
            leaf_failure_timeout_ms: 5000,
            leaf_failure_refused_count: 3,
            max_concurrent_moves: 2,
        }
    }
}

/// The names `SHOW VARIABLES` lists, in order.
pub const NAMES: &[&str] = &[
    "auto_attach",
    "default_partitions_per_leaf",
    "heartbeat_interval_ms",
    "leaf_failover_fanout",
    "leaf_failure_detection",
    "leaf_failure_refused_count",
    "leaf_failure_timeout_ms",
    "max_concurrent_moves",
    "redundancy_level",
];

impl Variables {
    /// The value of `name` as shown by `SHOW VARIABLES` / `SELECT @@name`, or `None` if Canopy has no such variable.
    pub fn get(&self, name: &str) -> Option<Value> {
        let on_off = |b: bool| Value::Text(if b { "ON" } else { "OFF" }.to_string());
        Some(match name.to_ascii_lowercase().as_str() {
            "default_partitions_per_leaf" => Value::Integer(i64::from(self.default_partitions_per_leaf)),
            "auto_attach" => on_off(self.auto_attach),
            "leaf_failure_detection" => on_off(self.leaf_failure_detection),
            "leaf_failover_fanout" => Value::Text(LEAF_FAILOVER_FANOUT.to_string()),
            "redundancy_level" => Value::Integer(i64::from(self.redundancy_level)),
            "heartbeat_interval_ms" => Value::Integer(self.heartbeat_interval_ms as i64),
            "leaf_failure_timeout_ms" => Value::Integer(self.leaf_failure_timeout_ms as i64),
            "leaf_failure_refused_count" => Value::Integer(i64::from(self.leaf_failure_refused_count)),
            "max_concurrent_moves" => Value::Integer(i64::from(self.max_concurrent_moves)),
            _ => return None,
        })
    }

    /// Sets `name` to `value`, validating type and range.
    pub fn set(&mut self, name: &str, value: &Value) -> Result<(), MetaError> {
        let bad = || MetaError::BadVariableValue { name: name.to_string(), value: format!("{value:?}") };
        match name.to_ascii_lowercase().as_str() {
            "default_partitions_per_leaf" => {
                let n = as_integer(value).filter(|n| (1..=1024).contains(n)).ok_or_else(bad)?;
                self.default_partitions_per_leaf = u32::try_from(n).map_err(|_| bad())?;
            }
            "auto_attach" => self.auto_attach = as_bool(value).ok_or_else(bad)?,
            "leaf_failure_detection" => self.leaf_failure_detection = as_bool(value).ok_or_else(bad)?,
            "leaf_failover_fanout" => match value {
                Value::Text(t) if t.eq_ignore_ascii_case(LEAF_FAILOVER_FANOUT) => {}
                Value::Text(t) if t.eq_ignore_ascii_case("load_balanced") => {
                    return Err(MetaError::VariableValueNotSupported {
                        name: "leaf_failover_fanout".to_string(),
                        value: t.clone(),
                        supported: "each leaf fails over to its pair in the other availability group ('paired')",
                    });
                }
                _ => return Err(bad()),
            },
            "redundancy_level" => {
                let n = as_integer(value).filter(|n| *n == 1 || *n == 2).ok_or_else(bad)?;
                self.redundancy_level = u8::try_from(n).map_err(|_| bad())?;
            }
            "heartbeat_interval_ms" => {
                let n = as_integer(value).filter(|n| (10..=10_000).contains(n)).ok_or_else(bad)?;
                self.heartbeat_interval_ms = n as u64;
            }
            "leaf_failure_timeout_ms" => {
                let n = as_integer(value).filter(|n| (100..=3_600_000).contains(n)).ok_or_else(bad)?;
                self.leaf_failure_timeout_ms = n as u64;
            }
            "leaf_failure_refused_count" => {
                let n = as_integer(value).filter(|n| (1..=1000).contains(n)).ok_or_else(bad)?;
                self.leaf_failure_refused_count = n as u32;
            }
            "max_concurrent_moves" => {
                let n = as_integer(value).filter(|n| (1..=MAX_CONCURRENT_MOVES_MAX).contains(n)).ok_or_else(bad)?;
                self.max_concurrent_moves = n as u32;
            }
            _ => return Err(MetaError::UnknownVariable(name.to_string())),
        }
        Ok(())
    }
}

/// How a leaf's partitions fail over: to its pair, the one leaf of the other availability group it is paired with
/// (SingleStore's `paired`, the default; its `load_balanced`, spreading a leaf's replicas over the other group, is
/// not supported).
pub const LEAF_FAILOVER_FANOUT: &str = "paired";

/// The largest `max_concurrent_moves`: more copies at once on one leaf only share its disk and network thinner.
pub const MAX_CONCURRENT_MOVES_MAX: i64 = 64;

fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Integer(1) => Some(true),
        Value::Integer(0) => Some(false),
        Value::Text(s) => match s.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" => Some(true),
            "off" | "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_get_round_trip() {
        let mut v = Variables::default();
        v.set("AUTO_ATTACH", &Value::Text("Off".into())).unwrap();
        assert_eq!(v.get("auto_attach"), Some(Value::Text("OFF".into())));
        v.set("default_partitions_per_leaf", &Value::Integer(4)).unwrap();
        assert_eq!(v.get("default_partitions_per_leaf"), Some(Value::Integer(4)));
        assert_eq!(v.get("max_concurrent_moves"), Some(Value::Integer(2)), "the executor's limit before the variable");
        v.set("max_concurrent_moves", &Value::Text("1".into())).unwrap();
        assert_eq!(v.max_concurrent_moves, 1);
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut v = Variables::default();
        assert!(v.set("redundancy_level", &Value::Integer(3)).is_err());
        assert!(v.set("auto_attach", &Value::Text("maybe".into())).is_err());
        assert!(v.set("default_partitions_per_leaf", &Value::Integer(0)).is_err());
        assert!(v.set("max_concurrent_moves", &Value::Integer(0)).is_err());
        assert!(v.set("max_concurrent_moves", &Value::Integer(65)).is_err());
        assert!(matches!(v.set("no_such", &Value::Integer(1)), Err(MetaError::UnknownVariable(_))));
    }

    /// `leaf_failover_fanout` is `paired` and stays so: setting it to `paired` is accepted, `load_balanced` is
    /// refused as not supported (not as a bad value), anything else as a bad value.
    #[test]
    fn leaf_failover_fanout_is_paired() {
        let mut v = Variables::default();
        assert_eq!(v.get("LEAF_FAILOVER_FANOUT"), Some(Value::Text("paired".into())));
        v.set("leaf_failover_fanout", &Value::Text("PAIRED".into())).unwrap();
        let refused = v.set("leaf_failover_fanout", &Value::Text("load_balanced".into())).unwrap_err();
        assert!(matches!(refused, MetaError::VariableValueNotSupported { .. }), "{refused:?}");
        assert!(refused.to_string().contains("'paired'"), "{refused}");
        assert!(matches!(v.set("leaf_failover_fanout", &Value::Integer(1)), Err(MetaError::BadVariableValue { .. })));
        assert_eq!(v.get("leaf_failover_fanout"), Some(Value::Text("paired".into())));
        assert!(NAMES.contains(&"leaf_failover_fanout"), "SHOW VARIABLES lists it");
    }
}
