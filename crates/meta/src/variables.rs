//! Cluster-wide global variables (`SET GLOBAL name = value`), with their types, defaults and validation in one
//! table. Values are kept typed; the SQL layer hands in `canopy_sql::Value`s and this module says what they mean.

use canopy_sql::Value;
use serde::{Deserialize, Serialize};

use crate::MetaError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variables {
    /// Partitions per online leaf for `CREATE DATABASE` without `PARTITIONS n`.
    pub default_partitions_per_leaf: u32,
    /// Reachable-again leaves are attached automatically (issue: leaf lifecycle).
    pub auto_attach: bool,
    /// The master aggregator marks unreachable leaves offline.
    pub leaf_failure_detection: bool,
    /// Number of availability groups (1 or 2).
    pub redundancy_level: u8,
}

impl Default for Variables {
    fn default() -> Self {
        Variables {
            default_partitions_per_leaf: 2,
            auto_attach: true,
            leaf_failure_detection: true,
            redundancy_level: 1,
        }
    }
}

/// The names `SHOW VARIABLES` lists, in order.
pub const NAMES: &[&str] =
    &["auto_attach", "default_partitions_per_leaf", "leaf_failure_detection", "redundancy_level"];

impl Variables {
    /// The value of `name` as shown by `SHOW VARIABLES` / `SELECT @@name`, or `None` if Canopy has no such variable.
    pub fn get(&self, name: &str) -> Option<Value> {
        let on_off = |b: bool| Value::Text(if b { "ON" } else { "OFF" }.to_string());
        Some(match name.to_ascii_lowercase().as_str() {
            "default_partitions_per_leaf" => Value::Integer(i64::from(self.default_partitions_per_leaf)),
            "auto_attach" => on_off(self.auto_attach),
            "leaf_failure_detection" => on_off(self.leaf_failure_detection),
            "redundancy_level" => Value::Integer(i64::from(self.redundancy_level)),
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
            "redundancy_level" => {
                let n = as_integer(value).filter(|n| *n == 1 || *n == 2).ok_or_else(bad)?;
                self.redundancy_level = u8::try_from(n).map_err(|_| bad())?;
            }
            _ => return Err(MetaError::UnknownVariable(name.to_string())),
        }
        Ok(())
    }
}

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
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut v = Variables::default();
        assert!(v.set("redundancy_level", &Value::Integer(3)).is_err());
        assert!(v.set("auto_attach", &Value::Text("maybe".into())).is_err());
        assert!(v.set("default_partitions_per_leaf", &Value::Integer(0)).is_err());
        assert!(matches!(v.set("no_such", &Value::Integer(1)), Err(MetaError::UnknownVariable(_))));
    }
}
