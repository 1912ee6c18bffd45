//! `canopy cluster`: the nodes of a cluster described by a TOML file on this host, managed like SingleStore's
//! toolbox does — `up` and `down` in the safe order of spec §9.2, `list-nodes`, `stop-node`, `start-node`.
//!
//! Nodes run detached (their own session) and outlive the command; a node's state is its pid file
//! `<data_dir>/<id>/canopy.pid` confirmed against `/proc/<pid>/cmdline`, so a stale pid file never gets a stranger
//! signalled. This module reads and validates the file, orders the work and forms the cluster over MySQL
//! (`BOOTSTRAP AGGREGATOR`, `ADD LEAF`); spawning and stopping processes is `canopy-launch`'s job.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use mysql_async::prelude::Queryable;
use serde::Deserialize;

use canopy_launch::{self as launch, Lifetime, NodeSpec, Stopped};

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// The TOML file describing the cluster (see examples/cluster.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Start the leaves, then the master aggregator and other aggregators; bootstrap and add missing leaves.
    Up,
    /// Stop every node: master aggregator first, then the other aggregators, then the leaves.
    Down,
    /// One line per node with its process state.
    ListNodes,
    /// Stop one node (SIGTERM; SIGKILL if it does not exit in time).
    StopNode {
        /// The node's `id` in the config file.
        id: String,
    },
    /// Start one node and wait until it answers `SELECT 1`.
    StartNode {
        /// The node's `id` in the config file.
        id: String,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let cluster = load(&args.config)?;
    match args.action {
        Action::Up => runtime()?.block_on(up(&cluster)),
        Action::Down => {
            down(&cluster);
            Ok(())
        }
        Action::ListNodes => {
            print!("{}", list_nodes(&cluster));
            Ok(())
        }
        Action::StopNode { id } => {
            stop(cluster.node(&id)?);
            Ok(())
        }
        Action::StartNode { id } => {
            let node = cluster.node(&id)?;
            runtime()?.block_on(async {
                let mut launched = start(&cluster.binary, node)?;
                wait_ready(node, &mut launched).await
            })
        }
    }
}

/// A current-thread runtime: the MySQL client is async, everything else here is sequential.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

// ---------------------------------------------------------------------------------------------------------------
// The config file.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    cluster: ClusterSection,
    #[serde(default)]
    node: Vec<NodeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    data_dir: PathBuf,
    #[serde(default = "default_host")]
    host: String,
    #[serde(default)]
    root_password: String,
    /// 1 (one copy of each partition) or 2 (a master and a replica on a pair of leaves, one per availability
    /// group); set when the cluster is bootstrapped.
    #[serde(default = "default_redundancy")]
    redundancy_level: u8,
}

fn default_redundancy() -> u8 {
    1
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    id: toml::Spanned<String>,
    role: Role,
    port: toml::Spanned<u16>,
    rpc_port: Option<toml::Spanned<u16>>,
    /// A leaf's availability group (1 or 2) in redundancy 2; without it the leaf joins the smaller group.
    group: Option<toml::Spanned<u8>>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Aggregator,
    Leaf,
}

impl Role {
    fn title(self) -> &'static str {
        match self {
            Role::Master => "Master",
            Role::Aggregator => "Aggregator",
            Role::Leaf => "Leaf",
        }
    }
}

/// A validated cluster description.
#[derive(Debug)]
pub struct Cluster {
    /// The `canopy` binary that runs the nodes: this one.
    binary: PathBuf,
    host: String,
    redundancy_level: u8,
    nodes: Vec<Node>,
}

#[derive(Debug)]
pub struct Node {
    id: String,
    role: Role,
    spec: NodeSpec,
    group: Option<u8>,
}

impl Node {
    fn pid_file(&self) -> PathBuf {
        self.spec.data_dir.join("canopy.pid")
    }

    fn describe(&self) -> String {
        format!("{} ({}, {})", self.id, self.role.title().to_lowercase(), self.spec.addr())
    }

    /// The pid of this node's process, if it is running.
    fn running_pid(&self) -> Option<libc::pid_t> {
        let text = std::fs::read_to_string(self.pid_file()).ok()?;
        let pid: libc::pid_t = text.trim().parse().ok()?;
        launch::serves_data_dir(pid, &self.spec.data_dir).then_some(pid)
    }
}

impl Cluster {
    fn node(&self, id: &str) -> anyhow::Result<&Node> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            let ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
            anyhow::anyhow!("no node `{id}` in the config (nodes: {})", ids.join(", "))
        })
    }

    fn with_role(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    fn master(&self) -> &Node {
        self.with_role(Role::Master).next().expect("validation guarantees exactly one master")
    }
}

fn load(path: &Path) -> anyhow::Result<Cluster> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let binary = std::env::current_exe().context("cannot find the canopy binary")?;
    parse(&text, base, binary).map_err(|e| anyhow::anyhow!("invalid cluster config {}: {e}", path.display()))
}

/// Parses and validates a config; a relative `data_dir` is taken relative to `base` (the config file's directory).
fn parse(text: &str, base: &Path, binary: PathBuf) -> Result<Cluster, String> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    let line = |span: std::ops::Range<usize>| {
        text.as_bytes()[..span.start.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
    };
    let data_dir = std::path::absolute(base.join(&file.cluster.data_dir))
        .map_err(|e| format!("cannot resolve data_dir {}: {e}", file.cluster.data_dir.display()))?;
    if file.cluster.host.trim().is_empty() {
        return Err("[cluster] host must not be empty".to_string());
    }
    if file.node.is_empty() {
        return Err("no [[node]] entries".to_string());
    }
    let redundancy_level = file.cluster.redundancy_level;
    if !(1..=2).contains(&redundancy_level) {
        return Err(format!("[cluster] redundancy_level must be 1 or 2, not {redundancy_level}"));
    }

    let mut ids: HashMap<&str, usize> = HashMap::new();
    // Every port a node binds (MySQL and RPC), and who binds it.
    let mut ports: HashMap<u16, (String, usize)> = HashMap::new();
    let mut nodes = Vec::new();
    for entry in &file.node {
        let id = entry.id.get_ref();
        let id_line = line(entry.id.span());
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || id.starts_with('.') {
            return Err(format!(
                "line {id_line}: node id `{id}` must be letters, digits, '-', '_' or '.' (it names the node's directory)"
            ));
        }
        if let Some(first) = ids.insert(id, id_line) {
            return Err(format!("line {id_line}: duplicate node id `{id}` (first at line {first})"));
        }
        let port = *entry.port.get_ref();
        let port_line = line(entry.port.span());
        let rpc_port = match &entry.rpc_port {
            Some(r) => *r.get_ref(),
            None => port.checked_add(launch::RPC_PORT_OFFSET).ok_or_else(|| {
                format!(
                    "line {port_line}: port {port} leaves no room for the default RPC port (port + 10000); set rpc_port"
                )
            })?,
        };
        if port == 0 || rpc_port == 0 {
            return Err(format!("line {port_line}: node `{id}` needs a non-zero port"));
        }
        for (p, what) in [(port, "port"), (rpc_port, "RPC port")] {
            if let Some((other, other_line)) = ports.get(&p) {
                return Err(format!(
                    "line {port_line}: duplicate port {p}: it is the {what} of node `{id}` and also used by node `{other}` (line {other_line})"
                ));
            }
        }
        if port == rpc_port {
            return Err(format!("line {port_line}: node `{id}` has the same MySQL and RPC port {port}"));
        }
        ports.insert(port, (id.clone(), port_line));
        ports.insert(rpc_port, (id.clone(), port_line));
        let group = match &entry.group {
            None => None,
            Some(g) => {
                let group_line = line(g.span());
                let g = *g.get_ref();
                if entry.role != Role::Leaf {
                    return Err(format!("line {group_line}: node `{id}` is not a leaf; only leaves have a group"));
                }
                if redundancy_level != 2 || !(1..=2).contains(&g) {
                    return Err(format!(
                        "line {group_line}: group {g} of node `{id}`: groups are 1 and 2, with redundancy_level = 2"
                    ));
                }
                Some(g)
            }
        };
        nodes.push(Node {
            id: id.clone(),
            role: entry.role,
            group,
            spec: NodeSpec {
                data_dir: data_dir.join(id),
                host: file.cluster.host.clone(),
                port,
                rpc_port: entry.rpc_port.as_ref().map(|r| *r.get_ref()),
                root_password: file.cluster.root_password.clone(),
                env: Vec::new(),
                args: Vec::new(),
            },
        });
    }
    match nodes.iter().filter(|n| n.role == Role::Master).count() {
        0 => return Err("no node has role = \"master\"; exactly one must".to_string()),
        1 => {}
        n => return Err(format!("{n} nodes have role = \"master\"; exactly one must")),
    }
    Ok(Cluster { binary, host: file.cluster.host, redundancy_level, nodes })
}

// ---------------------------------------------------------------------------------------------------------------
// Actions.

/// A node we made sure is running: `child` is set when this invocation started it.
struct Launched {
    pid: libc::pid_t,
    child: Option<std::process::Child>,
}

impl Launched {
    fn exited(&mut self, node: &Node) -> Option<String> {
        match &mut self.child {
            Some(child) => launch::child_exited(child),
            None => (!launch::serves_data_dir(self.pid, &node.spec.data_dir)).then(|| "exited".to_string()),
        }
    }
}

/// Starts `node` unless it already runs; records its pid. Does not wait for readiness.
fn start(binary: &Path, node: &Node) -> anyhow::Result<Launched> {
    if let Some(pid) = node.running_pid() {
        println!("{}: already running (pid {pid})", node.describe());
        return Ok(Launched { pid, child: None });
    }
    let rpc_port = node.spec.rpc_port.or_else(|| node.spec.port.checked_add(launch::RPC_PORT_OFFSET));
    for port in [Some(node.spec.port), rpc_port].into_iter().flatten() {
        match std::net::TcpListener::bind((node.spec.host.as_str(), port)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
                "cannot start {}: port {port} on {} is in use by another process",
                node.describe(),
                node.spec.host
            ),
            Err(e) => anyhow::bail!("cannot start {}: cannot bind {}:{port}: {e}", node.describe(), node.spec.host),
        }
    }
    let child = launch::spawn(binary, &node.spec, Lifetime::Detached)?;
    let pid = child.id() as libc::pid_t;
    std::fs::write(node.pid_file(), format!("{pid}\n"))
        .with_context(|| format!("cannot write {}", node.pid_file().display()))?;
    println!("{}: started (pid {pid}, log {})", node.describe(), node.spec.log_path().display());
    Ok(Launched { pid, child: Some(child) })
}

async fn wait_ready(node: &Node, launched: &mut Launched) -> anyhow::Result<()> {
    launch::wait_ready(&node.spec, || launched.exited(node)).await?;
    println!("{}: answers SELECT 1", node.describe());
    Ok(())
}

/// Spec §9.2's start order: all leaves, each verified with `SELECT 1`; then the master aggregator; then the other
/// aggregators. Then the cluster is formed (first time) or completed (leaves missing from `SHOW LEAVES`).
async fn up(cluster: &Cluster) -> anyhow::Result<()> {
    for group in [Role::Leaf, Role::Master, Role::Aggregator] {
        let mut launched = Vec::new();
        for node in cluster.with_role(group) {
            launched.push((node, start(&cluster.binary, node)?));
        }
        for (node, l) in &mut launched {
            wait_ready(node, l).await?;
        }
    }
    form(cluster).await?;
    let aggregators: Vec<&str> = cluster.with_role(Role::Aggregator).map(|n| n.id.as_str()).collect();
    if !aggregators.is_empty() {
        println!(
            "note: child aggregators ({}) are running but not part of the cluster: ADD AGGREGATOR is not supported yet",
            aggregators.join(", ")
        );
    }
    println!("cluster is up: connect with `mysql -h {} -P {} -u root`", cluster.host, cluster.master().spec.port);
    Ok(())
}

/// Bootstraps the master if it has no cluster yet and adds every leaf that `SHOW LEAVES` does not list.
async fn form(cluster: &Cluster) -> anyhow::Result<()> {
    let master = cluster.master();
    let mut conn = mysql_async::Conn::new(master.spec.client_opts())
        .await
        .with_context(|| format!("cannot connect to the master aggregator {}", master.spec.addr()))?;
    let cluster_id: Option<Option<String>> =
        conn.query_first("SELECT @@canopy_cluster_id").await.context("cannot read @@canopy_cluster_id")?;
    let present: BTreeSet<(String, u16)> = match cluster_id.flatten().filter(|id| !id.is_empty()) {
        None => {
            conn.query_drop(format!("BOOTSTRAP AGGREGATOR {}", quote(&cluster.host)))
                .await
                .with_context(|| format!("BOOTSTRAP AGGREGATOR on {} failed", master.spec.addr()))?;
            println!("{}: bootstrapped as master aggregator", master.describe());
            if cluster.redundancy_level != 1 {
                conn.query_drop(format!("SET GLOBAL redundancy_level = {}", cluster.redundancy_level))
                    .await
                    .context("SET GLOBAL redundancy_level failed")?;
            }
            BTreeSet::new()
        }
        Some(_) => {
            let rows: Vec<mysql_async::Row> = conn.query("SHOW LEAVES").await.context("SHOW LEAVES failed")?;
            rows.iter()
                .filter_map(|r| Some((r.get_opt::<String, _>("Host")?.ok()?, r.get_opt("Port")?.ok()?)))
                .collect()
        }
    };
    for leaf in cluster.with_role(Role::Leaf) {
        if present.contains(&(leaf.spec.host.clone(), leaf.spec.port)) {
            continue;
        }
        let user = match leaf.spec.root_password.as_str() {
            "" => "root".to_string(),
            pw => format!("root:{}", quote(pw)),
        };
        let group = leaf.group.map(|g| format!(" INTO GROUP {g}")).unwrap_or_default();
        conn.query_drop(format!("ADD LEAF {user}@{}:{}{group}", quote(&leaf.spec.host), leaf.spec.port))
            .await
            .with_context(|| format!("ADD LEAF {} failed", leaf.spec.addr()))?;
        println!("{}: added to the cluster", leaf.describe());
    }
    let _ = conn.disconnect().await;
    Ok(())
}

/// A MySQL string literal, quotes included.
fn quote(s: &str) -> String {
    canopy_sql::Value::text(s).to_mysql_literal()
}

/// Spec §9.2's stop order: the master aggregator first (it is the failure detector; stopping it freezes the
/// metadata), then the other aggregators, then the leaves.
fn down(cluster: &Cluster) {
    for role in [Role::Master, Role::Aggregator, Role::Leaf] {
        for node in cluster.with_role(role) {
            stop(node);
        }
    }
}

fn stop(node: &Node) {
    let Some(pid) = node.running_pid() else {
        let _ = std::fs::remove_file(node.pid_file());
        println!("{}: already stopped", node.describe());
        return;
    };
    match launch::stop_pid(pid, &node.spec.data_dir) {
        Stopped::Clean => println!("{}: stopped (pid {pid})", node.describe()),
        Stopped::Killed => eprintln!(
            "warning: {} did not exit within {}s of SIGTERM; killed it (SIGKILL, pid {pid})",
            node.describe(),
            launch::STOP_TIMEOUT.as_secs()
        ),
        Stopped::Stuck => {
            eprintln!("warning: {} (pid {pid}) survived SIGKILL; its pid file is kept", node.describe());
            return;
        }
    }
    let _ = std::fs::remove_file(node.pid_file());
}

fn list_nodes(cluster: &Cluster) -> String {
    let header = ["ID", "Role", "Host", "Port", "Process State", "PID", "Data Dir"].map(String::from).to_vec();
    let mut rows = vec![header];
    for node in &cluster.nodes {
        let pid = node.running_pid();
        rows.push(vec![
            node.id.clone(),
            node.role.title().to_string(),
            node.spec.host.clone(),
            node.spec.port.to_string(),
            if pid.is_some() { "Running" } else { "Stopped" }.to_string(),
            pid.map(|p| p.to_string()).unwrap_or_else(|| "-".to_string()),
            node.spec.data_dir.display().to_string(),
        ]);
    }
    render_table(&rows)
}

/// `sdb-admin`-style box table; the first row is the header.
fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let rule = format!("+{}+\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let line = |row: &Vec<String>| {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!(" {cell:<w$} ")).collect();
        format!("|{}|\n", cells.join("|"))
    };
    let mut out = rule.clone();
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&line(row));
        if i == 0 {
            out.push_str(&rule);
        }
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[cluster]\ndata_dir = \"/tmp/c\"\n";

    fn check(nodes: &str, expect: Result<&[(&str, Role, u16)], &str>) {
        let text = format!("{HEAD}{nodes}");
        match (parse(&text, Path::new("/etc"), PathBuf::from("canopy")), expect) {
            (Ok(cluster), Ok(want)) => {
                let got: Vec<(&str, Role, u16)> =
                    cluster.nodes.iter().map(|n| (n.id.as_str(), n.role, n.spec.port)).collect();
                assert_eq!(got, want);
            }
            (Err(e), Err(want)) => assert!(e.contains(want), "error {e:?} does not contain {want:?}"),
            (Ok(_), Err(want)) => panic!("accepted, expected an error containing {want:?}"),
            (Err(e), Ok(_)) => panic!("rejected: {e}"),
        }
    }

    const MA: &str = "[[node]]\nid = \"ma\"\nrole = \"master\"\nport = 3306\n";

    #[test]
    fn valid() {
        check(
            &format!("{MA}[[node]]\nid = \"leaf-1\"\nrole = \"leaf\"\nport = 3307\n"),
            Ok(&[("ma", Role::Master, 3306), ("leaf-1", Role::Leaf, 3307)]),
        );
    }

    #[test]
    fn errors_name_the_problem_and_the_line() {
        check(&format!("{MA}[[node]]\nid = \"x\"\nrole = \"lef\"\nport = 3307\n"), Err("line 9"));
        check(&format!("{MA}[[node]]\nid = \"x\"\nrole = \"lef\"\nport = 3307\n"), Err("unknown variant `lef`"));
        check(
            &format!("{MA}[[node]]\nid = \"x\"\nrole = \"leaf\"\nport = 3306\n"),
            Err("line 10: duplicate port 3306"),
        );
        check(&format!("{MA}[[node]]\nid = \"x\"\nrole = \"leaf\"\nport = 13306\n"), Err("duplicate port 13306"));
        check(&format!("{MA}[[node]]\nid = \"ma\"\nrole = \"leaf\"\nport = 3307\n"), Err("duplicate node id `ma`"));
        check("[[node]]\nid = \"x\"\nrole = \"leaf\"\nport = 3307\n", Err("no node has role = \"master\""));
        check(&format!("{MA}{}", MA.replace("\"ma\"", "\"mb\"").replace("3306", "3307")), Err("2 nodes have role"));
        check("", Err("no [[node]] entries"));
        check(&format!("{MA}[[node]]\nid = \"../x\"\nrole = \"leaf\"\nport = 3307\n"), Err("must be letters"));
        check(&format!("{MA}[[node]]\nid = \"x\"\nrole = \"leaf\"\nport = 70000\n"), Err("line 10"));
        check(&format!("{MA}[[node]]\nid = \"x\"\nrole = \"leaf\"\nprot = 3307\n"), Err("unknown field `prot`"));
        check(&format!("{MA}[[node]\n"), Err("line 7"));
    }

    /// Redundancy 2 takes leaf groups; a group without redundancy 2, on a non-leaf, or other than 1 and 2 is an
    /// error naming its line, as is a redundancy level other than 1 and 2.
    #[test]
    fn groups_need_redundancy_two_and_leaves() {
        let leaf = |g: u8| format!("[[node]]\nid = \"l{g}\"\nrole = \"leaf\"\nport = 330{g}\ngroup = {g}\n");
        let two = "[cluster]\ndata_dir = \"/tmp/c\"\nredundancy_level = 2\n";
        let cluster = parse(&format!("{two}{MA}{}{}", leaf(1), leaf(2)), Path::new("/"), PathBuf::from("c")).unwrap();
        assert_eq!(cluster.redundancy_level, 2);
        let groups: Vec<Option<u8>> = cluster.nodes.iter().map(|n| n.group).collect();
        assert_eq!(groups, [None, Some(1), Some(2)]);
        check(
            &format!("{MA}{}", leaf(1)),
            Err("line 11: group 1 of node `l1`: groups are 1 and 2, with redundancy_level = 2"),
        );
        let three = format!("{two}{MA}{}", leaf(3));
        assert!(parse(&three, Path::new("/"), PathBuf::from("c")).unwrap_err().contains("group 3"));
        let on_master = format!("{two}{}group = 1\n", MA);
        assert!(
            parse(&on_master, Path::new("/"), PathBuf::from("c")).unwrap_err().contains("only leaves have a group")
        );
        let bad = "[cluster]\ndata_dir = \"/tmp/c\"\nredundancy_level = 3\n".to_string() + MA;
        assert!(
            parse(&bad, Path::new("/"), PathBuf::from("c")).unwrap_err().contains("redundancy_level must be 1 or 2")
        );
    }

    #[test]
    fn relative_data_dir_is_relative_to_the_config_file() {
        let text = format!("[cluster]\ndata_dir = \"data\"\n{MA}");
        let cluster = parse(&text, Path::new("/etc/canopy"), PathBuf::from("canopy")).expect("valid");
        assert_eq!(cluster.nodes[0].spec.data_dir, Path::new("/etc/canopy/data/ma"));
    }

    #[test]
    fn table_columns_line_up() {
        let rows = vec![vec!["ID".to_string(), "Port".to_string()], vec!["leaf-1".to_string(), "3307".to_string()]];
        let expect = "+--------+------+\n| ID     | Port |\n+--------+------+\n| leaf-1 | 3307 |\n+--------+------+\n";
        assert_eq!(render_table(&rows), expect);
    }
}
