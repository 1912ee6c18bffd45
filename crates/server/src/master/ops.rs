//! Cluster operations run by the master aggregator: ADD LEAF, CREATE/DROP DATABASE, and DDL on tables. Each one
//! holds the cluster's operation lock, does the leaf work first, and commits the metadata last, so the metadata
//! never names partitions or tables the leaves do not have.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use canopy_meta::{ClusterMeta, Command, InstanceRole, Leaf, NodeAddr, NodeId, Outcome};
use canopy_rpc::{PartitionTerm, Request, Target};
use canopy_sql::ddl::{CreateIndex, CreateTable};
use canopy_sql::{SqlError, TableKind};
use mysql_async::prelude::Queryable;

use crate::answer::Answer;
use crate::error::{Error, Notice, Result};
use crate::master::cluster::Cluster;
use crate::master::{reference, replication};

const ADD_LEAF_TIMEOUT: Duration = Duration::from_secs(10);

/// ADD LEAF user[:'password']@'host':port [INTO GROUP n]: log in to the node over MySQL as the given user (which
/// proves the credentials and tells its RPC port and cluster), make it join, then record it.
pub async fn add_leaf(
    cluster: &Arc<Cluster>,
    user: String,
    password: String,
    host: String,
    port: u16,
    group: Option<u8>,
) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    if meta.leaf_at(&host, port).is_some() || meta.aggregators.values().any(|a| a.addr.same_endpoint(&host, port)) {
        return Err(Error::CannotAddNode { host, port, reason: "it is already part of this cluster".into() });
    }
    let cannot = |reason: String| Error::CannotAddNode { host: host.clone(), port, reason };
    let probe = probe_node(&user, &password, &host, port).await.map_err(cannot)?;
    let (rpc_port, cluster_id) = (probe.rpc_port, probe.cluster_id);
    match cluster_id {
        // A node of this cluster that the metadata no longer lists was removed while unreachable: it may rejoin.
        Some(id) if id == meta.cluster_id => {}
        Some(_) => return Err(cannot("it belongs to another cluster".into())),
        None => {}
    }
    let addr = NodeAddr { host: host.clone(), port, rpc_port };
    let command = Command::AddLeaf { addr, user, password, group };
    let Outcome::LeafAdded(id) = cluster.dry_run(command.clone())? else {
        return Err(Error::Internal("AddLeaf did not add a leaf".into()));
    };
    let probe_leaf = Leaf {
        id,
        addr: NodeAddr { host: host.clone(), port, rpc_port },
        availability_group: 1,
        pair: None,
        state: canopy_meta::LeafState::Online,
        user: String::new(),
        password: String::new(),
    };
    // The secret travels in JoinCluster, on the RPC connection, only to the node whose MySQL login just proved the
    // credentials: it sends back the join token that login showed (a node already in this cluster authenticates
    // instead). Neither channel is encrypted (docs/operations.md).
    let secret = cluster.credentials().secret().ok_or_else(|| Error::Internal("master holds no secret".into()))?;
    let join = Request::JoinCluster {
        cluster_id: meta.cluster_id.clone(),
        node_id: id,
        secret,
        join_token: probe.join_token.unwrap_or_default(),
    };
    cluster.call_with_timeout(&probe_leaf, &join, ADD_LEAF_TIMEOUT).await.map_err(|e| cannot(e.to_string()))?;
    match cluster.apply(command).await? {
        Outcome::LeafAdded(added) if added == id => Ok(Answer::done()),
        other => Err(Error::Internal(format!("ADD LEAF committed {other:?}, expected leaf {id}"))),
    }
}

/// What ADD LEAF's login learns about a node.
struct Probe {
    rpc_port: u16,
    cluster_id: Option<String>,
    /// The node's join token (None once it belongs to a cluster).
    join_token: Option<String>,
}

/// Logs in to `host:port` over MySQL and reads the node's RPC port, cluster id and join token.
async fn probe_node(user: &str, password: &str, host: &str, port: u16) -> std::result::Result<Probe, String> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(user.to_string()))
        .pass(Some(password.to_string()))
        .prefer_socket(false);
    let work = async {
        let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| format!("cannot connect: {e}"))?;
        let row: Option<(Option<i64>, Option<String>, Option<String>)> = conn
            .query_first("SELECT @@canopy_rpc_port, @@canopy_cluster_id, @@canopy_join_token")
            .await
            .map_err(|e| format!("it does not answer as a Canopy node: {e}"))?;
        let _ = conn.disconnect().await;
        let (rpc_port, cluster_id, join_token) = row.ok_or("it does not answer as a Canopy node")?;
        let rpc_port = rpc_port.and_then(|p| u16::try_from(p).ok()).ok_or("it reports no RPC port")?;
        Ok(Probe { rpc_port, cluster_id: cluster_id.filter(|c| !c.is_empty()), join_token })
    };
    tokio::time::timeout(ADD_LEAF_TIMEOUT, work).await.map_err(|_| "timed out connecting".to_string())?
}

/// Partition ordinals of `db` by the leaf that holds their master instance.
fn masters_by_leaf(meta: &ClusterMeta, db: &str) -> Result<BTreeMap<NodeId, (Leaf, Vec<PartitionTerm>)>> {
    let database = meta.databases.get(db).ok_or_else(|| Error::UnknownDatabase(db.to_string()))?;
    let mut by_leaf: BTreeMap<NodeId, (Leaf, Vec<PartitionTerm>)> = BTreeMap::new();
    for inst in database.instances.iter().filter(|i| i.role == canopy_meta::InstanceRole::Master) {
        let leaf = meta.leaves.get(&inst.node).ok_or_else(|| Error::Internal("instance on unknown leaf".into()))?;
        let partition = PartitionTerm { ordinal: inst.ordinal, term: inst.term };
        by_leaf.entry(leaf.id).or_insert_with(|| (leaf.clone(), Vec::new())).1.push(partition);
    }
    Ok(by_leaf)
}

pub async fn create_database(
    cluster: &Arc<Cluster>,
    name: String,
    if_not_exists: bool,
    partitions: Option<u32>,
    durability: canopy_meta::Durability,
    replication: canopy_meta::Replication,
) -> Result<Answer> {
    canopy_storage::check_name(&name).map_err(|_| {
        Error::Sql(SqlError::Parse(format!(
            "invalid database name '{name}' (use letters, digits, '_', '$' or '-', at most 64)"
        )))
    })?;
    if name.eq_ignore_ascii_case("information_schema") {
        return Err(Error::Meta(canopy_meta::MetaError::DatabaseExists(name)));
    }
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    if meta.databases.contains_key(&name) {
        return if if_not_exists {
            Ok(Answer::noted(vec![Notice::DatabaseExists(name)]))
        } else {
            Err(canopy_meta::MetaError::DatabaseExists(name).into())
        };
    }
    let online = meta.online_leaves().len() as u32;
    let partitions = partitions.unwrap_or(online.max(1) * meta.variables.default_partitions_per_leaf);
    let mut commands = vec![canopy_control::placement::create_database(&meta, &name, partitions, durability)];
    if replication != canopy_meta::Replication::Sync {
        commands.push(Command::SetReplication { db: name.clone(), mode: replication });
    }
    // The leaves learn their partitions' terms before the commit that gives them.
    let prediction = cluster.predict(commands).await?;
    let Some(Outcome::DatabaseCreated(planned)) = prediction.outcomes().first().cloned() else {
        return Err(Error::Internal("CreateDatabase did not create".into()));
    };
    // The id the new database will get: metadata changes that could take ids are serialised by the operation lock.
    let database_id = canopy_meta::DatabaseId(meta.next_database_id);
    // Each partition is created in the term its master instance will have (the instances are the planned ones,
    // checked against the committed ones below).
    // A replica is created in its master's term and then made a replica (redundancy 2).
    let master_term =
        |ordinal: u32| planned.iter().find(|i| i.ordinal == ordinal && i.role == InstanceRole::Master).map(|i| i.term);
    let mut by_leaf: BTreeMap<NodeId, Vec<PartitionTerm>> = BTreeMap::new();
    for inst in &planned {
        let term = master_term(inst.ordinal).unwrap_or(inst.term);
        by_leaf.entry(inst.node).or_default().push(PartitionTerm { ordinal: inst.ordinal, term });
    }
    let requests: Vec<(Leaf, Request)> = by_leaf
        .iter()
        .map(|(node, partitions)| {
            let request = Request::CreatePartitions {
                db: name.clone(),
                partitions: partitions.clone(),
                schema: vec![],
                reference_schema: vec![],
                durability,
                database_id,
            };
            (meta.leaves[node].clone(), request)
        })
        .collect();
    let leaves: Vec<Leaf> = requests.iter().map(|(l, _)| l.clone()).collect();
    if let Err(e) = cluster.call_all(requests).await {
        drop_on_leaves(cluster, &name, &leaves).await;
        return Err(e);
    }
    // Every replica starts in its master's commit path, before the metadata says it is in sync.
    for replica in planned.iter().filter(|i| i.role == InstanceRole::Replica) {
        let master = planned.iter().find(|i| i.ordinal == replica.ordinal && i.role == InstanceRole::Master);
        let Some(master) = master else { continue };
        if let Err(e) = replication::start_replica_in_mode(
            cluster,
            &meta,
            &name,
            master,
            replica,
            crate::master::cluster::REQUEST_TIMEOUT,
            replication,
        )
        .await
        {
            drop_on_leaves(cluster, &name, &leaves).await;
            return Err(e);
        }
    }
    prediction.commit().await?;
    if cluster.meta().databases.get(&name).is_none_or(|d| d.id != database_id) {
        return Err(Error::Internal(format!("CREATE DATABASE {name} committed under another id than {database_id}")));
    }
    Ok(Answer::affected(1))
}

/// Best effort: a leaf that cannot be reached keeps its files, which show as orphans later.
async fn drop_on_leaves(cluster: &Arc<Cluster>, db: &str, leaves: &[Leaf]) {
    for leaf in leaves {
        if let Err(e) = cluster.call(leaf, &Request::DropDatabase { db: db.to_string() }).await {
            tracing::warn!("dropping {db} on leaf {}:{} failed: {e}", leaf.addr.host, leaf.addr.port);
        }
    }
}

pub async fn drop_database(cluster: &Arc<Cluster>, name: String, if_exists: bool) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    // A reference write in flight finishes first: its catch-ups must not find the copies gone.
    let _reference = reference::lock(cluster, &name).await;
    let meta = cluster.meta();
    let Some(database) = meta.databases.get(&name) else {
        return if if_exists {
            Ok(Answer::noted(vec![Notice::UnknownDatabase(name)]))
        } else {
            Err(Error::UnknownDatabase(name))
        };
    };
    let holders: Vec<Leaf> =
        meta.leaves.values().filter(|l| database.instances.iter().any(|i| i.node == l.id)).cloned().collect();
    cluster.apply(Command::DropDatabase { name: name.clone() }).await?;
    cluster.forget_auto_increment(&name, None);
    drop_on_leaves(cluster, &name, &holders).await;
    Ok(Answer::affected(0))
}

/// The DDL requests that reach every partition of a distributed table.
fn table_targets(meta: &ClusterMeta, db: &str, statements: Vec<String>) -> Result<Vec<(Leaf, Request)>> {
    Ok(masters_by_leaf(meta, db)?
        .into_values()
        .map(|(leaf, partitions)| {
            let target = Target::Partitions(partitions);
            (leaf, Request::Ddl { db: db.to_string(), target, statements: statements.clone() })
        })
        .collect())
}

/// Runs DDL on every copy of a table: each partition of a distributed table, or the reference copies through the
/// ordered reference write path (the primary runs it, every other holder applies it from the primary's log).
async fn ddl_everywhere(
    cluster: &Arc<Cluster>,
    meta: &ClusterMeta,
    db: &str,
    kind: TableKind,
    statements: Vec<String>,
) -> Result<()> {
    match kind {
        TableKind::Distributed => cluster.call_all(table_targets(meta, db, statements)?).await.map(|_| ()),
        TableKind::Reference => reference::ddl(cluster, db, statements).await,
    }
}

pub async fn create_table(cluster: &Arc<Cluster>, db: String, create: CreateTable) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let database = meta.databases.get(&db).ok_or_else(|| Error::UnknownDatabase(db.clone()))?;
    if database.table(&create.def.name).is_some() {
        return if create.if_not_exists {
            Ok(Answer::noted(vec![Notice::TableExists { table: create.def.name }]))
        } else {
            Err(canopy_meta::MetaError::TableExists { db, table: create.def.name }.into())
        };
    }
    let (def, first_id) = (create.def, create.auto_increment);
    let notices =
        create.ignored.into_iter().map(|clause| Notice::Ignored { table: def.name.clone(), clause }).collect();
    let mut statements = vec![def.create_sql.clone()];
    statements.extend(def.index_sql.iter().cloned());
    if let Err(e) = ddl_everywhere(cluster, &meta, &db, def.kind, statements).await {
        let undo = vec![format!("DROP TABLE IF EXISTS {}", canopy_sql::quote::ident(&def.name))];
        let _ = ddl_everywhere(cluster, &meta, &db, def.kind, undo).await;
        return Err(e);
    }
    let table = def.name.clone();
    cluster.apply(Command::CreateTable { db: db.clone(), def }).await?;
    if let Some(first) = first_id.filter(|n| *n > 1) {
        // `AUTO_INCREMENT=n`: the values below n are reserved for no aggregator, so n is the next one given.
        let count = u64::try_from(first - 1).expect("first > 1");
        cluster.apply(Command::ReserveAutoIncrement { db, table, count }).await?;
    }
    Ok(Answer::noted(notices))
}

pub async fn drop_tables(cluster: &Arc<Cluster>, tables: Vec<(String, String)>, if_exists: bool) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let mut notices = Vec::new();
    for (db, table) in tables {
        let meta = cluster.meta();
        let Some(database) = meta.databases.get(&db) else {
            if if_exists {
                notices.push(Notice::UnknownTable { db, table });
                continue;
            }
            return Err(Error::UnknownDatabase(db));
        };
        let Some(def) = database.table(&table) else {
            if if_exists {
                notices.push(Notice::UnknownTable { db, table });
                continue;
            }
            return Err(Error::Sql(SqlError::UnknownTable { db, table }));
        };
        let kind = def.kind;
        let name = def.name.clone();
        cluster.apply(Command::DropTable { db: db.clone(), table: name.clone() }).await?;
        cluster.forget_auto_increment(&db, Some(&name));
        let statements = vec![format!("DROP TABLE IF EXISTS {}", canopy_sql::quote::ident(&name))];
        ddl_everywhere(cluster, &meta, &db, kind, statements).await?;
    }
    Ok(Answer::noted(notices))
}

pub async fn create_index(cluster: &Arc<Cluster>, db: String, index: CreateIndex) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let database = meta.databases.get(&db).ok_or_else(|| Error::UnknownDatabase(db.clone()))?;
    let def = database
        .table(&index.table)
        .ok_or_else(|| Error::Sql(SqlError::UnknownTable { db: db.clone(), table: index.table.clone() }))?;
    let resolved = index.resolve(def)?;
    let sql = resolved.index_sql();
    // The metadata has no index of this name, so one found on a leaf is what an earlier failed attempt left: drop it
    // first (in the same transaction) so a retry succeeds.
    let statements = vec![resolved.drop_index_sql(), sql.clone()];
    let table = def.name.clone();
    let created = match ddl_everywhere(cluster, &meta, &db, def.kind, statements).await {
        Ok(_) => cluster.apply(Command::AddIndex { db: db.clone(), table, index_sql: sql }).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = created {
        // Some partitions may have built the index (a UNIQUE one would then be enforced there only, outside the
        // metadata): remove it everywhere. If this fails too, the next attempt clears it.
        let undo = vec![resolved.drop_index_sql()];
        let _ = ddl_everywhere(cluster, &meta, &db, def.kind, undo).await;
        return Err(e);
    }
    let table = def.name.clone();
    Ok(Answer::noted(
        resolved.ignored.into_iter().map(|clause| Notice::Ignored { table: table.clone(), clause }).collect(),
    ))
}

/// SNAPSHOT DATABASE db: every partition checkpoints its WAL into the main file and truncates its change log up to
/// its current position, so a restart replays nothing. It holds the operation lock, so no partition move (whose
/// catch-up reads the log) runs at the same time; in redundancy 1 no other copy needs older entries.
pub async fn snapshot_database(cluster: &Arc<Cluster>, db: String) -> Result<Answer> {
    let _op = cluster.operation_lock.lock().await;
    let meta = cluster.meta();
    let requests: Vec<(Leaf, Request)> = masters_by_leaf(&meta, &db)?
        .into_values()
        .map(|(leaf, partitions)| (leaf, Request::Checkpoint { db: db.clone(), partitions }))
        .collect();
    cluster.call_all(requests).await.map(|_| ())?;
    Ok(Answer::done())
}
