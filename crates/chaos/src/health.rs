//! What the master aggregator says about the cluster (SHOW LEAVES, INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS), and
//! the rule for "healthy" the nemesis waits for between episodes: every leaf online, and every partition of the
//! database with one master and one in-sync replica, neither on an offline leaf. `problems` is pure; the rest reads.

use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::Row;
use mysql_async::prelude::Queryable;

/// One row of SHOW LEAVES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRow {
    pub port: u16,
    pub state: String,
}

/// One row of INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    pub ordinal: u32,
    pub port: u16,
    pub role: String,
    pub offline: bool,
    pub state: String,
    pub term: u64,
}

impl InstanceRow {
    pub fn is_master(&self) -> bool {
        self.role == "Master"
    }
}

/// The cluster as the master aggregator shows it at one moment.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub leaves: Vec<LeafRow>,
    pub instances: Vec<InstanceRow>,
}

impl View {
    /// The master instance of `ordinal`, if any.
    pub fn master(&self, ordinal: u32) -> Option<&InstanceRow> {
        self.instances.iter().find(|i| i.ordinal == ordinal && i.is_master())
    }

    /// The ordinals whose master is on the leaf at `port`.
    pub fn masters_on(&self, port: u16) -> Vec<u32> {
        self.instances.iter().filter(|i| i.is_master() && i.port == port).map(|i| i.ordinal).collect()
    }

    pub fn leaf_state(&self, port: u16) -> Option<&str> {
        self.leaves.iter().find(|l| l.port == port).map(|l| l.state.as_str())
    }
}

/// Column `name` of `row` as text, whatever protocol type it came in.
pub fn text(row: &Row, name: &str) -> anyhow::Result<String> {
    let idx = row.columns_ref().iter().position(|c| c.name_str() == name).with_context(|| format!("no {name}"))?;
    Ok(match row.as_ref(idx) {
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(mysql_async::Value::Int(i)) => i.to_string(),
        Some(mysql_async::Value::UInt(i)) => i.to_string(),
        Some(mysql_async::Value::NULL) | None => "NULL".into(),
        Some(other) => format!("{other:?}"),
    })
}

fn number<T: std::str::FromStr>(row: &Row, name: &str) -> anyhow::Result<T> {
    let t = text(row, name)?;
    t.parse().map_err(|_| anyhow::anyhow!("{name} is not a number: {t}"))
}

/// Reads SHOW LEAVES and the instances of `db`, each statement bounded by `timeout`.
pub async fn view(conn: &mut mysql_async::Conn, db: &str, timeout: Duration) -> anyhow::Result<View> {
    let leaves: Vec<Row> = tokio::time::timeout(timeout, conn.query("SHOW LEAVES")).await.context("SHOW LEAVES")??;
    let sql = format!("SELECT * FROM INFORMATION_SCHEMA.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = '{db}'");
    let instances: Vec<Row> =
        tokio::time::timeout(timeout, conn.query(sql)).await.context("DISTRIBUTED_PARTITIONS")??;
    let leaves = leaves
        .iter()
        .map(|r| Ok(LeafRow { port: number(r, "Port")?, state: text(r, "State")? }))
        .collect::<anyhow::Result<_>>()?;
    let instances = instances
        .iter()
        .map(|r| {
            Ok(InstanceRow {
                ordinal: number(r, "ORDINAL")?,
                port: number(r, "PORT")?,
                role: text(r, "ROLE")?,
                offline: text(r, "IS_OFFLINE")? == "1",
                state: text(r, "STATE")?,
                term: number(r, "TERM")?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(View { leaves, instances })
}

/// Why the cluster is not healthy for `partitions` partitions (empty: healthy). See the module doc.
pub fn problems(view: &View, partitions: u32) -> Vec<String> {
    let mut out = Vec::new();
    for leaf in view.leaves.iter().filter(|l| l.state != "online") {
        out.push(format!("leaf :{} is {}", leaf.port, leaf.state));
    }
    for k in 0..partitions {
        let copies: Vec<&InstanceRow> = view.instances.iter().filter(|i| i.ordinal == k).collect();
        let masters: Vec<_> = copies.iter().filter(|i| i.is_master()).collect();
        let replicas: Vec<_> = copies.iter().filter(|i| !i.is_master()).collect();
        match masters.as_slice() {
            [m] if m.offline => out.push(format!("partition {k}: master on offline leaf :{}", m.port)),
            [_] => {}
            [] => out.push(format!("partition {k}: no master")),
            many => out.push(format!("partition {k}: {} masters", many.len())),
        }
        match replicas.as_slice() {
            [r] if r.offline || r.state != "sync" => out.push(format!(
                "partition {k}: replica on :{} is {}",
                r.port,
                if r.offline { "offline" } else { &r.state }
            )),
            [_] => {}
            other => out.push(format!("partition {k}: {} replicas", other.len())),
        }
    }
    out
}

/// How long [`problems`] must stay empty before the cluster counts as healthy.
pub const STABLE: Duration = Duration::from_millis(400);

/// Polls [`view`] every `poll` until [`problems`] has stayed empty for [`STABLE`], or `deadline` passes (then the last problems, or the
/// last error, as the error).
pub async fn wait_healthy(
    opts: &mysql_async::Opts,
    db: &str,
    partitions: u32,
    deadline: Duration,
    poll: Duration,
) -> anyhow::Result<View> {
    let started = Instant::now();
    let mut conn: Option<mysql_async::Conn> = None;
    // Healthy means healthy for a while: a returning leaf goes online and then has its pair rebalanced (planned
    // promotions, each leaving its partition without an in-sync replica for a moment), so one healthy poll right
    // after the return can fall before the rebalance, and the next fault would then land in the middle of it.
    let mut healthy_since: Option<Instant> = None;
    loop {
        let last = match conn.as_mut() {
            Some(c) => match view(c, db, Duration::from_secs(10)).await {
                Ok(v) => {
                    let p = problems(&v, partitions);
                    if p.is_empty() {
                        let since = *healthy_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= STABLE {
                            return Ok(v);
                        }
                        tokio::time::sleep(poll).await;
                        continue;
                    }
                    healthy_since = None;
                    p.join("; ")
                }
                Err(e) => {
                    conn = None;
                    format!("{e:#}")
                }
            },
            None => match crate::cluster::connect(opts.clone()).await {
                Ok(c) => {
                    conn = Some(c);
                    continue;
                }
                Err(e) => format!("{e:#}"),
            },
        };
        if started.elapsed() >= deadline {
            anyhow::bail!("not healthy after {} ms: {last}", deadline.as_millis());
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(port: u16, state: &str) -> LeafRow {
        LeafRow { port, state: state.into() }
    }

    fn copy(ordinal: u32, port: u16, role: &str, offline: bool, state: &str) -> InstanceRow {
        InstanceRow { ordinal, port, role: role.into(), offline, state: state.into(), term: 1 }
    }

    fn healthy_pair() -> View {
        View {
            leaves: vec![leaf(1, "online"), leaf(2, "online")],
            instances: vec![
                copy(0, 1, "Master", false, ""),
                copy(0, 2, "Replica", false, "sync"),
                copy(1, 2, "Master", false, ""),
                copy(1, 1, "Replica", false, "sync"),
            ],
        }
    }

    #[test]
    fn a_pair_with_every_replica_in_sync_is_healthy() {
        assert_eq!(problems(&healthy_pair(), 2), Vec::<String>::new());
    }

    #[test]
    fn a_leaf_not_online_an_async_replica_or_a_missing_master_is_not() {
        let mut v = healthy_pair();
        v.leaves[1].state = "attaching".into();
        assert_eq!(problems(&v, 2), ["leaf :2 is attaching"]);
        let mut v = healthy_pair();
        v.instances[1].state = "async".into();
        assert_eq!(problems(&v, 2), ["partition 0: replica on :2 is async"]);
        let mut v = healthy_pair();
        v.instances.remove(2);
        assert_eq!(problems(&v, 2), ["partition 1: no master"]);
        let mut v = healthy_pair();
        v.instances[0].offline = true;
        assert_eq!(problems(&v, 2), ["partition 0: master on offline leaf :1"]);
        assert_eq!(problems(&healthy_pair(), 3), ["partition 2: no master", "partition 2: 0 replicas"]);
    }
}
