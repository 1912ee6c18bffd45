//! Cluster views with SingleStore's column names: SHOW LEAVES, SHOW AGGREGATORS, SHOW PARTITIONS, SHOW CLUSTER
//! STATUS, SHOW DATABASES EXTENDED, and the INFORMATION_SCHEMA tables built from the same rows. Rows come from the
//! metadata snapshot plus what the heartbeat measured; only SHOW CLUSTER STATUS asks the leaves.

use std::sync::Arc;

use canopy_meta::{ClusterMeta, LeafState};
use canopy_rpc::{Request, Response};
use canopy_sql::{ResultSet, SqlError, Value};
use canopy_storage::LocalDb;

use crate::error::{Error, Result};
use crate::master::cluster::Cluster;
use crate::master::rebalance::LiveStep;

fn latency(ms: Option<f64>) -> Value {
    ms.map(|ms| Value::Real((ms * 1000.0).round() / 1000.0)).unwrap_or(Value::Null)
}

pub fn show_leaves(cluster: &Cluster, meta: &ClusterMeta, upper: bool) -> ResultSet {
    let rows = meta
        .leaves_in_order()
        .map(|leaf| {
            let pair = leaf.pair.and_then(|p| meta.leaves.get(&p));
            let online = leaf.state != LeafState::Offline;
            let health = cluster.health(leaf.id);
            vec![
                Value::text(leaf.addr.host.clone()),
                Value::int(leaf.addr.port),
                Value::int(leaf.availability_group),
                pair.map(|p| Value::text(p.addr.host.clone())).unwrap_or(Value::Null),
                pair.map(|p| Value::int(p.addr.port)).unwrap_or(Value::Null),
                Value::text(leaf.state.as_str()),
                Value::int(if online { cluster.open_connections(leaf.id) as i64 } else { 0 }),
                if online { latency(health.latency_ms) } else { Value::Null },
                Value::int(leaf.id.0),
                Value::Null,
            ]
        })
        .collect();
    let columns: &[&str] = if upper {
        &[
            "HOST",
            "PORT",
            "AVAILABILITY_GROUP",
            "PAIR_HOST",
            "PAIR_PORT",
            "STATE",
            "OPENED_CONNECTIONS",
            "AVERAGE_ROUNDTRIP_LATENCY_MS",
            "NODE_ID",
            "GRACE_PERIOD_IN_SECONDS",
        ]
    } else {
        &[
            "Host",
            "Port",
            "Availability_Group",
            "Pair_Host",
            "Pair_Port",
            "State",
            "Opened_Connections",
            "Average_Roundtrip_Latency_ms",
            "NodeId",
            "Grace_Period_in_Seconds",
        ]
    };
    ResultSet::named(columns, rows)
}

pub fn show_aggregators(meta: &ClusterMeta, upper: bool) -> ResultSet {
    let rows = meta
        .aggregators
        .values()
        .map(|a| {
            vec![
                Value::text(a.addr.host.clone()),
                Value::int(a.addr.port),
                Value::text("online"),
                Value::int(0),
                Value::Null,
                Value::int(i64::from(a.is_master)),
                Value::text(if a.is_master { "leader" } else { "follower" }),
                Value::int(a.id.0),
            ]
        })
        .collect();
    let columns: &[&str] = if upper {
        &[
            "HOST",
            "PORT",
            "STATE",
            "OPENED_CONNECTIONS",
            "AVERAGE_ROUNDTRIP_LATENCY",
            "MASTER_AGGREGATOR",
            "ROLE",
            "NODE_ID",
        ]
    } else {
        &[
            "Host",
            "Port",
            "State",
            "Opened_Connections",
            "Average_Roundtrip_Latency_ms",
            "Master_Aggregator",
            "Role",
            "NodeID",
        ]
    };
    ResultSet::named(columns, rows)
}

/// SHOW PARTITIONS ON db: one row per instance on an online leaf; an ordinal with none shows NULL host and role.
pub fn show_partitions(meta: &ClusterMeta, db: &str) -> Result<ResultSet> {
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let mut rows = Vec::new();
    for ordinal in 0..database.partitions {
        let mut any = false;
        for inst in database.instances.iter().filter(|i| i.ordinal == ordinal) {
            let Some(leaf) = meta.leaves.get(&inst.node).filter(|l| l.state != LeafState::Offline) else { continue };
            any = true;
            rows.push(vec![
                Value::int(ordinal),
                Value::text(leaf.addr.host.clone()),
                Value::int(leaf.addr.port),
                Value::text(inst.role.as_str()),
                Value::int(i64::from(inst.locked)),
            ]);
        }
        if !any {
            rows.push(vec![Value::int(ordinal), Value::Null, Value::Null, Value::Null, Value::int(0)]);
        }
    }
    Ok(ResultSet::named(&["Ordinal", "Host", "Port", "Role", "Locked"], rows))
}

/// INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS, in the column order of the spec's example (DATABASE_ID last).
pub fn distributed_partitions(meta: &ClusterMeta) -> ResultSet {
    // Redundancy 2 replicates synchronously unless the database says WITH ASYNC REPLICATION (SYNC_DESIRED);
    // redundancy 1 has nothing to replicate to.
    let two = meta.variables.redundancy_level == 2;
    let mut rows = Vec::new();
    for database in meta.databases.values() {
        let mut instances: Vec<_> = database.instances.iter().collect();
        instances.sort_by_key(|i| (i.ordinal, i.role != canopy_meta::InstanceRole::Master, i.id));
        let sync_desired = two && database.replication == canopy_meta::Replication::Sync;
        for inst in instances {
            let Some(leaf) = meta.leaves.get(&inst.node) else { continue };
            rows.push(vec![
                Value::text(database.name.clone()),
                Value::int(inst.ordinal),
                Value::text(leaf.addr.host.clone()),
                Value::int(leaf.addr.port),
                Value::text(inst.role.as_str()),
                Value::int(i64::from(inst.locked)),
                Value::int(leaf.id.0),
                Value::int(i64::from(leaf.state == LeafState::Offline)),
                Value::int(i64::from(sync_desired)),
                Value::text(replication_state(inst, two, database.replication)),
                Value::int(inst.term.0 as i64),
                Value::int(inst.id.0 as i64),
                Value::int(database.id.0 as i64),
            ]);
        }
    }
    ResultSet::named(
        &[
            "DATABASE_NAME",
            "ORDINAL",
            "HOST",
            "PORT",
            "ROLE",
            "LOCKED",
            "NODE_ID",
            "IS_OFFLINE",
            "SYNC_DESIRED",
            "STATE",
            "TERM",
            "INSTANCE_ID",
            "DATABASE_ID",
        ],
        rows,
    )
}

/// The STATE column of DISTRIBUTED_PARTITIONS: empty for a master in redundancy 2 (as the spec's column reference
/// says), `sync` for a replica in its master's commit path, `replicating` for one its master streams to without
/// waiting (`WITH ASYNC REPLICATION`), `async` for one that is not (being brought back, or its leaf away);
/// redundancy 1 shows `async` as the seed does.
fn replication_state(inst: &canopy_meta::Instance, two: bool, mode: canopy_meta::Replication) -> &'static str {
    match inst.role {
        canopy_meta::InstanceRole::Master if two => "",
        canopy_meta::InstanceRole::Master => "async",
        canopy_meta::InstanceRole::Replica if inst.sync && mode == canopy_meta::Replication::Async => "replicating",
        canopy_meta::InstanceRole::Replica if inst.sync => "sync",
        canopy_meta::InstanceRole::Replica => "async",
    }
}

pub fn distributed_databases(meta: &ClusterMeta) -> ResultSet {
    let two = meta.variables.redundancy_level == 2;
    let rows = meta
        .databases
        .values()
        .map(|d| {
            vec![
                Value::int(d.id.0 as i64),
                Value::text(d.name.clone()),
                Value::int(d.partitions),
                Value::int(i64::from(two && d.replication == canopy_meta::Replication::Sync)),
                Value::int(i64::from(d.durability == canopy_meta::Durability::Sync)),
            ]
        })
        .collect();
    ResultSet::named(&["DATABASE_ID", "DATABASE_NAME", "NUM_PARTITIONS", "IS_SYNC", "IS_SYNC_DURABILITY"], rows)
}

/// EXPLAIN RESTORE REDUNDANCY ON db: a `COPY PARTITION FORCE` per partition that lacks a replica on its master's
/// online pair (redundancy 2; empty in redundancy 1), with EXPLAIN REBALANCE's columns.
pub fn explain_restore_redundancy(meta: &ClusterMeta, db: &str) -> Result<ResultSet> {
    if !meta.databases.contains_key(db) {
        return Err(Error::UnknownDatabase(db.to_string()));
    }
    let rows = canopy_control::failover::missing_replicas(meta, Some(db))
        .into_iter()
        .map(|m| {
            let leaf = &meta.leaves[&m.target];
            vec![
                Value::text(canopy_meta::Action::CopyPartitionForce.as_str()),
                Value::int(m.ordinal),
                Value::text(leaf.addr.host.clone()),
                Value::int(leaf.addr.port),
                Value::int(1),
                Value::int(1000),
            ]
        })
        .collect();
    Ok(ResultSet::named(
        &["Action", "Ordinal", "Target_Host", "Target_Port", "Phase", "Estimated_Time_Remaining_Ms"],
        rows,
    ))
}

/// Rows of INFORMATION_SCHEMA tables that the planner asks for by name.
pub async fn virtual_table(cluster: &Arc<Cluster>, meta: &ClusterMeta, schema: &str, name: &str) -> Result<ResultSet> {
    match name.to_ascii_uppercase().as_str() {
        "DISTRIBUTED_PARTITIONS" => Ok(distributed_partitions(meta)),
        "LEAVES" => Ok(show_leaves(cluster, meta, true)),
        "AGGREGATORS" => Ok(show_aggregators(meta, true)),
        "DISTRIBUTED_DATABASES" => Ok(distributed_databases(meta)),
        "MV_CLUSTER_STATUS" => cluster_status(cluster, meta).await,
        upper @ ("USER_PRIVILEGES" | "SCHEMA_PRIVILEGES") => {
            Ok(crate::front::accounts::privilege_table(&meta.users, upper).expect("a privilege table"))
        }
        upper => crate::front::schema_tables::table(meta, upper, &|db, t| cluster.next_auto_increment(meta, db, t))
            .ok_or_else(|| Error::Sql(SqlError::UnknownTable { db: schema.to_string(), table: name.to_string() })),
    }
}

/// Every INFORMATION_SCHEMA table a query can read (MySQL's that Canopy provides and the cluster's own), in name
/// order: what SHOW TABLES FROM information_schema lists.
pub const INFORMATION_SCHEMA_TABLES: &[&str] = &[
    "AGGREGATORS",
    "CHARACTER_SETS",
    "COLLATIONS",
    "COLUMNS",
    "DISTRIBUTED_DATABASES",
    "DISTRIBUTED_PARTITIONS",
    "ENGINES",
    "EVENTS",
    "FILES",
    "GLOBAL_STATUS",
    "GLOBAL_VARIABLES",
    "KEY_COLUMN_USAGE",
    "LEAVES",
    "MV_CLUSTER_STATUS",
    "PARTITIONS",
    "PROCESSLIST",
    "REFERENTIAL_CONSTRAINTS",
    "ROUTINES",
    "SCHEMATA",
    "SCHEMA_PRIVILEGES",
    "SESSION_STATUS",
    "SESSION_VARIABLES",
    "STATISTICS",
    "TABLES",
    "TABLE_CONSTRAINTS",
    "TRIGGERS",
    "USER_PRIVILEGES",
    "VIEWS",
];

/// The rows of a SHOW answer for which `condition` (SQLite text naming SHOW's columns, from `SHOW ... WHERE`)
/// holds, evaluated by the session's scratch engine over a temporary copy of the rows. The copy's columns compare
/// text without regard to letter case, as MySQL's SHOW columns do (`WHERE Variable_name = 'VERSION'` matches).
pub async fn filter_shown(
    scratch: &Arc<std::sync::Mutex<rusqlite::Connection>>,
    shown: ResultSet,
    condition: String,
) -> Result<ResultSet> {
    let scratch = scratch.clone();
    tokio::task::spawn_blocking(move || {
        let conn = scratch.lock().map_err(|_| Error::Internal("scratch lock poisoned".into()))?;
        let table = "temp._canopy_shown";
        let columns: Vec<String> =
            shown.columns.iter().map(|c| format!("{} COLLATE NOCASE", canopy_sql::quote::ident(&c.name))).collect();
        let engine = |e: rusqlite::Error| Error::Sql(SqlError::Engine(e.to_string()));
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({});", columns.join(", ")))
            .map_err(engine)?;
        let filtered = (|| {
            let marks = vec!["?"; shown.columns.len()].join(", ");
            let mut insert = conn.prepare(&format!("INSERT INTO {table} VALUES ({marks})")).map_err(engine)?;
            for row in &shown.rows {
                insert.execute(rusqlite::params_from_iter(row.iter())).map_err(engine)?;
            }
            crate::query::exec::scratch_query_with(&conn, &format!("SELECT * FROM {table} WHERE {condition}"), &[])
        })();
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}")).map_err(engine)?;
        let mut filtered = filtered?;
        filtered.columns = shown.columns;
        Ok(filtered)
    })
    .await
    .map_err(|e| Error::Internal(format!("scratch task failed: {e}")))?
}

/// The virtual tables of one statement, as of its metadata snapshot, for query execution's gathers.
pub struct ClusterViews<'a> {
    pub cluster: &'a Arc<Cluster>,
    pub meta: &'a ClusterMeta,
    pub processes: &'a crate::front::processlist::Processes,
    pub limits: &'a canopy_mysql::Limits,
    /// The session's account: each table shows the rows it may see (`accounts::visible_rows`).
    pub user: &'a str,
}

impl crate::query::exec::VirtualTables for ClusterViews<'_> {
    async fn fetch(&self, schema: &str, table: &str) -> Result<ResultSet> {
        let rows = match table.to_ascii_uppercase().as_str() {
            "PROCESSLIST" => self.processes.information_schema(),
            "GLOBAL_VARIABLES" | "SESSION_VARIABLES" => information_schema_variables(self.meta, self.limits),
            "GLOBAL_STATUS" | "SESSION_STATUS" => self.processes.information_schema_status(),
            _ => virtual_table(self.cluster, self.meta, schema, table).await?,
        };
        Ok(crate::front::accounts::visible_rows(&self.meta.users, self.user, table, rows))
    }
}

/// SHOW CLUSTER STATUS: every database instance on every reachable leaf, with its role by the metadata.
pub async fn cluster_status(cluster: &Arc<Cluster>, meta: &ClusterMeta) -> Result<ResultSet> {
    let mut rows = Vec::new();
    for leaf in meta.leaves_in_order() {
        if leaf.state == LeafState::Offline {
            continue;
        }
        let Ok(Response::Databases(dbs)) =
            cluster.call_with_timeout(leaf, &Request::ListDatabases, std::time::Duration::from_secs(5)).await
        else {
            continue;
        };
        for local in dbs {
            let database = meta.databases.get(&local.db);
            let metadata_master =
                local.ordinal.and_then(|o| database.and_then(|d| d.master(o))).and_then(|m| meta.leaves.get(&m.node));
            let role = match (local.ordinal, database) {
                (None, Some(_)) => "Reference",
                (Some(o), Some(d)) => match d.instances.iter().find(|i| i.ordinal == o && i.node == leaf.id) {
                    Some(i) => i.role.as_str(),
                    None => "Orphan",
                },
                _ => "Orphan",
            };
            rows.push(vec![
                Value::int(leaf.id.0),
                Value::text(leaf.addr.host.clone()),
                Value::int(leaf.addr.port),
                Value::text(local.name.clone()),
                Value::text(role),
                Value::text(local.state.as_str()),
                Value::text(format!("{}:{}", local.term, local.log_index)),
                Value::Null,
                Value::Null,
                metadata_master.map(|l| Value::int(l.id.0)).unwrap_or(Value::Null),
                metadata_master.map(|l| Value::text(l.addr.host.clone())).unwrap_or(Value::Null),
                metadata_master.map(|l| Value::int(l.addr.port)).unwrap_or(Value::Null),
                Value::text(role),
                Value::text(""),
            ]);
        }
    }
    Ok(ResultSet::named(
        &[
            "NODE_ID",
            "HOST",
            "PORT",
            "DATABASE_NAME",
            "ROLE",
            "STATE",
            "POSITION",
            "MASTER_HOST",
            "MASTER_PORT",
            "METADATA_MASTER_NODE_ID",
            "METADATA_MASTER_HOST",
            "METADATA_MASTER_PORT",
            "METADATA_ROLE",
            "DETAILS",
        ],
        rows,
    ))
}

/// SHOW REBALANCE STATUS ON db: the steps of the last HA operation on the database.
/// The columns of SHOW REBALANCE STATUS; SHOW REBALANCE ALL DATABASES STATUS adds `Database` first.
const REBALANCE_STATUS_COLUMNS: [&str; 8] = [
    "Action",
    "Ordinal",
    "Target_Host",
    "Target_Port",
    "Phase",
    "Status",
    "Running_Time",
    "Estimated_Time_Remaining_Ms",
];

/// SHOW REBALANCE STATUS ON db: the steps of the database's last HA operation. `live` holds, for a plan running now,
/// each running step's time so far and what is left of it (`master::rebalance::live`; NULL: no live estimate); a
/// finished step shows 0 remaining, a scheduled one its estimate.
pub fn rebalance_status(meta: &ClusterMeta, db: &str, live: &[LiveStep]) -> Result<ResultSet> {
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    Ok(ResultSet::named(&REBALANCE_STATUS_COLUMNS, status_rows(meta, database, live, false)))
}

/// SHOW REBALANCE ALL DATABASES STATUS: every database's last operation, databases in name order.
pub fn rebalance_status_all(meta: &ClusterMeta, live: impl Fn(&str) -> Vec<LiveStep>) -> ResultSet {
    let rows = meta.databases.values().flat_map(|d| status_rows(meta, d, &live(&d.name), true)).collect();
    let mut columns = vec!["Database"];
    columns.extend(REBALANCE_STATUS_COLUMNS);
    ResultSet::named(&columns, rows)
}

fn status_rows(
    meta: &ClusterMeta,
    database: &canopy_meta::Database,
    live: &[LiveStep],
    with_database: bool,
) -> Vec<Vec<Value>> {
    use canopy_meta::StepStatus;
    database
        .operation
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let target = meta.leaves.get(&step.target);
            let now = live.get(index).filter(|l| step.status == StepStatus::Running && l.running_ms.is_some());
            let running_ms = now.map_or(step.running_ms, |l| l.running_ms);
            let remaining = match step.status {
                StepStatus::Scheduled => Some(step.estimated_ms),
                StepStatus::Running => match now {
                    Some(l) => l.remaining_ms,
                    None => step.estimated_ms.checked_sub(running_ms.unwrap_or(0)),
                },
                StepStatus::Success | StepStatus::Failed | StepStatus::Cancelled => Some(0),
            };
            let mut row = Vec::with_capacity(9);
            if with_database {
                row.push(Value::text(database.name.clone()));
            }
            row.extend([
                Value::text(step.action.as_str()),
                Value::int(step.ordinal),
                target.map(|l| Value::text(l.addr.host.clone())).unwrap_or(Value::Null),
                target.map(|l| Value::int(l.addr.port)).unwrap_or(Value::Null),
                Value::int(step.phase),
                Value::text(step.status.as_str()),
                running_ms.map(|ms| Value::int(ms as i64)).unwrap_or(Value::Null),
                remaining.map(|ms| Value::int(ms as i64)).unwrap_or(Value::Null),
            ]);
            row
        })
        .collect()
}

/// SHOW DATABASES EXTENDED on a leaf: its own partition instances and reference copies.
pub fn databases_extended(local: &[LocalDb]) -> ResultSet {
    let rows = local
        .iter()
        .map(|d| {
            let position = Value::text(format!("{}:{}", d.term, d.log_index));
            vec![
                Value::text(d.name()),
                Value::int(d.commits as i64),
                Value::text(match (d.ordinal, d.state) {
                    (None, _) => "reference",
                    (Some(_), canopy_storage::PartitionState::Replica) if d.replica_sync => "sync replica",
                    (Some(_), canopy_storage::PartitionState::Replica) => "async replica",
                    (Some(_), _) => "master",
                }),
                Value::text(d.state.as_str()),
                position.clone(),
                Value::text(""),
                Value::int(0),
                Value::int(0),
                Value::int(0),
                position.clone(),
                position.clone(),
                position,
                Value::int(d.term.0 as i64),
                Value::int(d.term.0 as i64),
                Value::Null,
                Value::int(0),
            ]
        })
        .collect();
    ResultSet::named(
        &[
            "Database",
            "Commits",
            "Role",
            "State",
            "Position",
            "Details",
            "AsyncSlaves",
            "SyncSlaves",
            "ConsensusSlaves",
            "CommittedPosition",
            "HardenedPosition",
            "ReplayPosition",
            "Term",
            "LastPageTerm",
            "Memory (MBs)",
            "Pending IOs",
        ],
        rows,
    )
}

/// Rows of `SHOW VARIABLES [LIKE]`: Canopy's cluster variables.
pub fn show_variables(meta: Option<&ClusterMeta>, limits: &canopy_mysql::Limits, like: Option<&str>) -> ResultSet {
    let rows = variables(meta, limits)
        .into_iter()
        .filter(|(n, _)| like.is_none_or(|p| like_match(p, n)))
        .map(|(n, v)| vec![Value::Text(n), shown_value(v)])
        .collect();
    ResultSet::named(&["Variable_name", "Value"], rows)
}

/// A variable's value as SHOW VARIABLES and INFORMATION_SCHEMA show it: MySQL's `Value` column is a NOT NULL string
/// (`'0'`, never the number; an unset variable is `''`), and clients read it as one.
fn shown_value(value: Value) -> Value {
    match value {
        Value::Integer(i) => Value::Text(i.to_string()),
        Value::Real(r) => Value::Text(r.to_string()),
        Value::Null => Value::Text(String::new()),
        other => other,
    }
}

/// Every system variable in name order: MySQL's built-in ones as this node reports them, then the cluster's own
/// (from the metadata, or their defaults before the node joins a cluster).
fn variables(meta: Option<&ClusterMeta>, limits: &canopy_mysql::Limits) -> Vec<(String, Value)> {
    let defaults = canopy_meta::Variables::default();
    let vars = meta.map(|m| &m.variables).unwrap_or(&defaults);
    let mut all: std::collections::BTreeMap<String, Value> =
        canopy_mysql::builtin_variables(limits).into_iter().map(|(n, v)| (n.to_string(), v)).collect();
    all.extend(canopy_meta::variables::NAMES.iter().filter_map(|n| vars.get(n).map(|v| (n.to_string(), v))));
    all.into_iter().collect()
}

/// INFORMATION_SCHEMA.GLOBAL_VARIABLES / SESSION_VARIABLES: the rows of SHOW VARIABLES under MySQL's column names,
/// names upper case as MySQL's INFORMATION_SCHEMA has them.
fn information_schema_variables(meta: &ClusterMeta, limits: &canopy_mysql::Limits) -> ResultSet {
    let rows = variables(Some(meta), limits)
        .into_iter()
        .map(|(n, v)| vec![Value::Text(n.to_ascii_uppercase()), shown_value(v)])
        .collect();
    ResultSet::named(&["VARIABLE_NAME", "VARIABLE_VALUE"], rows)
}

/// SQL LIKE with `%` and `_`, case-insensitive (MySQL's default collation behaviour for SHOW ... LIKE).
pub fn like_match(pattern: &str, s: &str) -> bool {
    // Tokens: Some(c) a literal, None for `_`, and `%` handled as a star; dynamic programming keeps it O(p*s).
    enum Tok {
        Lit(char),
        One,
        Any,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars().flat_map(char::to_lowercase).peekable();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let s: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
    // matched[j]: the tokens so far match the first j characters.
    let mut matched = vec![false; s.len() + 1];
    matched[0] = true;
    for tok in &toks {
        let mut next = vec![false; s.len() + 1];
        for j in 0..=s.len() {
            next[j] = match tok {
                Tok::Any => matched[j] || (j > 0 && next[j - 1]),
                Tok::One => j > 0 && matched[j - 1],
                Tok::Lit(c) => j > 0 && matched[j - 1] && s[j - 1] == *c,
            };
        }
        matched = next;
    }
    matched[s.len()]
}

#[cfg(test)]
mod tests {
    use super::like_match;

    #[test]
    fn like_patterns() {
        assert!(like_match("auto%", "auto_attach"));
        assert!(like_match("%DETECTION", "leaf_failure_detection"));
        assert!(like_match("t_st", "test"));
        assert!(!like_match("t_st", "tests"));
        assert!(like_match("a\\_b", "a_b"));
        assert!(!like_match("a\\_b", "axb"));
    }
}

#[cfg(test)]
mod rebalance_status_tests {
    use super::*;
    use canopy_meta::{Action, Command, NodeAddr, NodeId, Step, StepStatus};

    /// A database whose operation has four steps of 1000 ms estimated, in the states given.
    fn meta(states: &[(StepStatus, Option<u64>)]) -> ClusterMeta {
        let mut m = ClusterMeta::bootstrap("c".into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
        let addr = NodeAddr { host: "leaf-1".into(), port: 3307, rpc_port: 13307 };
        m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        m.apply(canopy_control::placement::create_database(&m, "test", 4, canopy_meta::Durability::Sync)).unwrap();
        let steps =
            (0..states.len() as u32).map(|o| Step::scheduled(Action::CopyPartition, o, NodeId(2), 1, 1000)).collect();
        m.apply(Command::RecordOperation { db: "test".into(), steps }).unwrap();
        for (index, &(status, running_ms)) in states.iter().enumerate() {
            let update =
                Command::UpdateStep { db: "test".into(), index: index as u32, status, running_ms, error: None };
            m.apply(update).unwrap();
        }
        m
    }

    /// `(Status, Running_Time, Estimated_Time_Remaining_Ms)` of every row.
    fn check(meta: &ClusterMeta, live: &[LiveStep], expect: &[(&str, Value, Value)]) {
        let rows = rebalance_status(meta, "test", live).unwrap().rows;
        let got: Vec<(String, Value, Value)> = rows
            .into_iter()
            .map(|r| {
                let Value::Text(status) = &r[5] else { panic!("status is text") };
                (status.clone(), r[6].clone(), r[7].clone())
            })
            .collect();
        let expect: Vec<(String, Value, Value)> =
            expect.iter().map(|(s, a, b)| (s.to_string(), a.clone(), b.clone())).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn running_steps_show_their_live_time_and_what_is_left() {
        let m = meta(&[
            (StepStatus::Success, Some(900)),
            (StepStatus::Running, Some(0)),
            (StepStatus::Running, Some(0)),
            (StepStatus::Scheduled, None),
        ]);
        let at = |ms: u64, left: Option<u64>| LiveStep { running_ms: Some(ms), remaining_ms: left };
        let live = [LiveStep::default(), at(300, Some(700)), at(1500, None), LiveStep::default()];
        check(
            &m,
            &live,
            &[
                ("success", Value::int(900), Value::int(0)),
                ("running", Value::int(300), Value::int(700)),
                ("running", Value::int(1500), Value::Null),
                ("scheduled", Value::Null, Value::int(1000)),
            ],
        );
        // Without a live plan (after a restart) a running step shows what was recorded.
        check(
            &m,
            &[],
            &[
                ("success", Value::int(900), Value::int(0)),
                ("running", Value::int(0), Value::int(1000)),
                ("running", Value::int(0), Value::int(1000)),
                ("scheduled", Value::Null, Value::int(1000)),
            ],
        );
    }
}
