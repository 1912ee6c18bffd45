//! Reading what the checks compare (see `check`): every row through the master aggregator, and each leaf's own
//! copies through its MySQL port, the replica copies by failing each availability group over in turn.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::Row;
use mysql_async::prelude::Queryable;

use crate::check::Copy;
use crate::cluster::Cluster;
use crate::health::{self, View, text};
use crate::workload::TABLE;

const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Every id of the table, one entry per row, read through the master aggregator; and the ids the literal
/// duplicate query (`GROUP BY id HAVING COUNT(*) > 1`) returns.
pub async fn all_rows(cluster: &Cluster, db: &str) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let mut conn = cluster.connect().await?;
    let rows: Vec<i64> =
        tokio::time::timeout(STATEMENT_TIMEOUT, conn.query(format!("SELECT id FROM {db}.{TABLE}"))).await??;
    let duplicates: Vec<(i64, i64)> = tokio::time::timeout(
        STATEMENT_TIMEOUT,
        conn.query(format!("SELECT id, COUNT(*) FROM {db}.{TABLE} GROUP BY id HAVING COUNT(*) > 1")),
    )
    .await??;
    Ok((rows, duplicates.into_iter().map(|(id, _)| id).collect()))
}

/// The log position of every partition copy on `leaf` (SHOW DATABASES EXTENDED on the leaf), by ordinal.
async fn positions(cluster: &Cluster, leaf: usize, db: &str) -> anyhow::Result<BTreeMap<u32, String>> {
    let mut conn = crate::cluster::connect(cluster.leaf_opts(leaf)).await?;
    let rows: Vec<Row> = tokio::time::timeout(STATEMENT_TIMEOUT, conn.query("SHOW DATABASES EXTENDED")).await??;
    let prefix = format!("{db}_");
    let mut out = BTreeMap::new();
    for row in rows {
        let name = text(&row, "Database")?;
        if let Some(k) = name.strip_prefix(&prefix).and_then(|k| k.parse::<u32>().ok()) {
            out.insert(k, text(&row, "Position")?);
        }
    }
    Ok(out)
}

/// The sorted ids of `leaf`'s online copy of `db:ordinal`.
async fn ids(cluster: &Cluster, leaf: usize, db: &str, ordinal: u32) -> anyhow::Result<Vec<i64>> {
    let mut conn = crate::cluster::connect(cluster.leaf_opts(leaf)).await?;
    conn.query_drop(format!("USE {db}_{ordinal}")).await?;
    let ids: Vec<i64> =
        tokio::time::timeout(STATEMENT_TIMEOUT, conn.query(format!("SELECT id FROM {TABLE} ORDER BY id")))
            .await
            .with_context(|| format!("reading {db}_{ordinal} on leaf {}", leaf + 1))??;
    Ok(ids)
}

/// The copies of every partition: `(masters, replicas)` by ordinal. Starts from a healthy cluster and leaves it
/// healthy. `limits_deadline` bounds each wait (failover, return to healthy).
pub async fn copies(
    cluster: &mut Cluster,
    db: &str,
    partitions: u32,
    deadline: Duration,
    poll: Duration,
) -> anyhow::Result<(BTreeMap<u32, Copy>, BTreeMap<u32, Copy>)> {
    let opts = cluster.master_opts();
    let start = health::wait_healthy(&opts, db, partitions, deadline, poll).await?;
    let mut position_of: Vec<BTreeMap<u32, String>> = Vec::new();
    for leaf in 0..cluster.leaves() {
        position_of.push(positions(cluster, leaf, db).await?);
    }
    let mut masters = BTreeMap::new();
    let mut replicas = BTreeMap::new();
    for instance in &start.instances {
        let leaf = leaf_of(cluster, instance.port)?;
        let position = position_of[leaf].get(&instance.ordinal).cloned().unwrap_or_else(|| "(no copy)".into());
        let copy = Copy { position, ids: None };
        if instance.is_master() {
            masters
                .insert(instance.ordinal, Copy { ids: Some(ids(cluster, leaf, db, instance.ordinal).await?), ..copy });
        } else {
            replicas.insert(instance.ordinal, copy);
        }
    }
    // The replica copies, one availability group's at a time: kill the leaves holding the masters of that group's
    // partitions, read the promoted copies on their pairs, bring the killed leaves back.
    for group in [1u8, 2] {
        let down: Vec<usize> = (0..cluster.leaves()).filter(|l| cluster.group_of(*l) == group).collect();
        let down_ports: Vec<u16> = down.iter().map(|l| cluster.leaf_port(*l)).collect();
        let ordinals: Vec<u32> = start
            .instances
            .iter()
            .filter(|i| i.is_master() && down_ports.contains(&i.port))
            .map(|i| i.ordinal)
            .collect();
        for leaf in &down {
            cluster.kill(*leaf);
        }
        let failed_over = |v: &View| {
            ordinals.iter().all(|k| v.master(*k).is_some_and(|m| !down_ports.contains(&m.port) && !m.offline))
        };
        wait_view(cluster, db, deadline, poll, "the killed group's masters failed over", failed_over).await?;
        let view = health::view(&mut cluster.connect().await?, db, STATEMENT_TIMEOUT).await?;
        for k in &ordinals {
            let master = view.master(*k).context("no master")?;
            let leaf = leaf_of(cluster, master.port)?;
            if let Some(copy) = replicas.get_mut(k) {
                copy.ids = Some(ids(cluster, leaf, db, *k).await?);
            }
        }
        for leaf in &down {
            cluster.restart(*leaf).await?;
        }
        health::wait_healthy(&opts, db, partitions, deadline, poll).await?;
    }
    Ok((masters, replicas))
}

fn leaf_of(cluster: &Cluster, port: u16) -> anyhow::Result<usize> {
    cluster.leaf_index(port).with_context(|| format!("no leaf on port {port}"))
}

async fn wait_view(
    cluster: &Cluster,
    db: &str,
    deadline: Duration,
    poll: Duration,
    what: &str,
    done: impl Fn(&View) -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = cluster.connect().await?;
    loop {
        if let Ok(view) = health::view(&mut conn, db, STATEMENT_TIMEOUT).await
            && done(&view)
        {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < deadline, "{what}: not after {} ms", deadline.as_millis());
        tokio::time::sleep(poll).await;
    }
}
