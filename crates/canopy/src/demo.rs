//! `canopy demo`: the first thing a new user runs. Starts a master aggregator and N leaves as real processes on
//! loopback, forms the cluster, loads a small sample database (`demo.orders` sharded by id, `demo.customers` and
//! `demo.regions` as reference tables), prints how to connect and what to try, and on Ctrl-C or SIGTERM stops every
//! node in the safe order (master first) and removes its temporary data directory.
//!
//! The nodes are tied to this process (they get SIGTERM if it dies), so a killed demo leaves nothing behind. This is
//! not a way to run a real cluster: see `canopy cluster`.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use mysql_async::prelude::Queryable;

use canopy_launch::{self as launch, Lifetime, NodeSpec, Stopped};

const HOST: &str = "127.0.0.1";
/// How often the demo checks that its nodes are still running.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Rows per multi-row INSERT.
const INSERT_BATCH_ROWS: usize = 500;
const REGIONS: [&str; 5] = ["North", "South", "East", "West", "Central"];
const STATUSES: [&str; 4] = ["new", "paid", "shipped", "returned"];
const FIRST_NAMES: [&str; 8] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"];
const LAST_NAMES: [&str; 6] = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth"];

#[derive(clap::Args)]
pub struct DemoArgs {
    /// MySQL port of the master aggregator; leaves take the next free ports. If it (or port + 10000) is busy, free
    /// ports are picked automatically.
    #[arg(long, default_value_t = 3306)]
    port: u16,
    /// Number of leaves.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    leaves: u16,
    /// Rows in `demo.orders`.
    #[arg(long, default_value_t = 5000)]
    rows: u32,
    /// 2: every partition has a replica on a second leaf (the leaves are split into two availability groups and
    /// paired) and a dead leaf fails over; 1: one copy of each partition [default: 2, or 1 with a single leaf].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    redundancy: Option<u8>,
    /// Where the nodes keep their data [default: a fresh directory under the system temp dir, removed on exit].
    /// Must be empty or absent.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the data directory on exit.
    #[arg(long)]
    keep: bool,
}

/// One node the demo started.
struct DemoNode {
    name: String,
    spec: NodeSpec,
    child: Child,
}

/// How long the demo waits before starting a leaf that died again (so a failover can be watched, then the return).
const RESTART_AFTER: Duration = Duration::from_secs(5);

pub fn run(mut args: DemoArgs) -> anyhow::Result<()> {
    match args.redundancy {
        Some(2) if args.leaves < 2 => {
            anyhow::bail!("--redundancy 2 needs at least 2 leaves (a pair); use --leaves 2 or more, or --redundancy 1")
        }
        Some(_) => {}
        None => args.redundancy = Some(if args.leaves < 2 { 1 } else { 2 }),
    }
    let (data_dir, temporary) = prepare_data_dir(args.data_dir.as_deref())?;
    let binary = std::env::current_exe().context("cannot find the canopy binary")?;
    // Current-thread: every node is spawned from this thread, which lives as long as the demo. PR_SET_PDEATHSIG
    // fires when the spawning *thread* exits, so spawning from a pool thread could kill nodes early.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let mut nodes: Vec<DemoNode> = Vec::new();
    let outcome = runtime.block_on(async {
        // One set of signal streams for the whole run, created before any node exists: a signal that arrives
        // between start-up and the final wait is then still seen.
        let mut shutdown = Shutdown::listen()?;
        let started = tokio::select! {
            r = start(&args, &binary, &data_dir, temporary, &mut nodes) => r,
            _ = shutdown.recv() => {
                println!("Interrupted during start-up; stopping what was started.");
                return Ok(());
            }
        };
        started?;
        watch(&mut nodes, &binary, &mut shutdown).await;
        println!();
        println!("Stopping the cluster: master aggregator first, then the leaves.");
        anyhow::Ok(())
    });
    stop_all(&mut nodes);
    if temporary && !args.keep {
        match std::fs::remove_dir_all(&data_dir) {
            Ok(()) => println!("Removed {}", data_dir.display()),
            Err(e) => eprintln!("warning: cannot remove {}: {e}", data_dir.display()),
        }
    } else {
        println!("Data kept in {}", data_dir.display());
    }
    outcome
}

/// SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal went away).
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn listen() -> anyhow::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        Ok(Shutdown { term, int, hup })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
            _ = self.hup.recv() => {},
        }
    }
}

/// Waits for a shutdown signal; meanwhile reports (once) any node that exits on its own, so that a user whose
/// queries start failing knows why and where the log is, and starts a leaf that died again after `RESTART_AFTER`
/// (the master aggregator attaches it: watch SHOW LEAVES).
async fn watch(nodes: &mut [DemoNode], binary: &std::path::Path, shutdown: &mut Shutdown) {
    let mut died: Vec<Option<std::time::Instant>> = vec![None; nodes.len()];
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
        for (index, (node, died)) in nodes.iter_mut().zip(&mut died).enumerate() {
            match died {
                None => {
                    if let Some(how) = launch::child_exited(&mut node.child) {
                        eprintln!(
                            "warning: {} ({}) {how}; see {}",
                            node.name,
                            node.spec.addr(),
                            node.spec.log_path().display()
                        );
                        if index > 0 {
                            println!("  {} starts again in {} s.", node.name, RESTART_AFTER.as_secs());
                        }
                        *died = Some(std::time::Instant::now());
                    }
                }
                Some(when) if index > 0 && when.elapsed() >= RESTART_AFTER => {
                    match launch::spawn(binary, &node.spec, Lifetime::TiedToParent) {
                        Ok(child) => {
                            node.child = child;
                            *died = None;
                            println!(
                                "  started {} again (pid {}); SHOW LEAVES shows it attaching, then online.",
                                node.name,
                                node.child.id()
                            );
                        }
                        Err(e) => {
                            eprintln!("warning: cannot start {} again: {e}", node.name);
                            *died = Some(std::time::Instant::now());
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// The data directory and whether the demo created it as a temporary one.
fn prepare_data_dir(given: Option<&std::path::Path>) -> anyhow::Result<(PathBuf, bool)> {
    match given {
        Some(dir) => {
            let dir = std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
            if dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(false) {
                anyhow::bail!("--data-dir {} is not empty; the demo needs a fresh directory", dir.display());
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            Ok((dir, false))
        }
        None => {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let dir = std::env::temp_dir().join(format!("canopy-demo-{}-{nanos:09}", std::process::id()));
            std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            Ok((dir, true))
        }
    }
}

/// Picks ports, starts the nodes (pushing each onto `nodes` as soon as it exists, so that the caller can stop it
/// whatever happens next), forms the cluster, loads the data and prints the welcome text.
async fn start(
    args: &DemoArgs,
    binary: &std::path::Path,
    data_dir: &std::path::Path,
    temporary: bool,
    nodes: &mut Vec<DemoNode>,
) -> anyhow::Result<()> {
    let ports = pick_ports(args.port, usize::from(args.leaves))?;
    let names = std::iter::once(("ma".to_string(), "master aggregator".to_string()))
        .chain((1..=args.leaves).map(|i| (format!("leaf-{i}"), format!("leaf {i}"))));
    for ((dir, name), port) in names.zip(&ports) {
        let spec = NodeSpec::new(data_dir.join(dir), HOST, *port);
        let child = launch::spawn(binary, &spec, Lifetime::TiedToParent)?;
        nodes.push(DemoNode { name, spec, child });
    }
    println!("Starting {} nodes in {} ...", nodes.len(), data_dir.display());
    for node in nodes.iter_mut() {
        launch::wait_ready(&node.spec, || launch::child_exited(&mut node.child)).await?;
    }

    let master = &nodes[0].spec;
    let mut conn = mysql_async::Conn::new(master.client_opts()).await.context("cannot connect to the master")?;
    conn.query_drop(format!("BOOTSTRAP AGGREGATOR '{HOST}'")).await.context("BOOTSTRAP AGGREGATOR failed")?;
    let redundancy = args.redundancy.unwrap_or(1);
    if redundancy == 2 {
        conn.query_drop("SET GLOBAL redundancy_level = 2").await.context("SET GLOBAL redundancy_level failed")?;
    }
    // Redundancy 2: the first half of the leaves in group 1, the rest in group 2, so leaf k pairs with leaf
    // k + leaves/2 (an odd last leaf stays unpaired and holds nothing).
    let first_group = usize::from(args.leaves).div_ceil(2);
    for (i, leaf) in nodes[1..].iter().enumerate() {
        let group = match redundancy {
            2 if i < first_group => " INTO GROUP 1",
            2 => " INTO GROUP 2",
            _ => "",
        };
        conn.query_drop(format!("ADD LEAF root@'{HOST}':{}{group}", leaf.spec.port))
            .await
            .with_context(|| format!("ADD LEAF {} failed", leaf.spec.addr()))?;
    }
    let partitions = u32::from(args.leaves) * 2;
    load_sample(&mut conn, partitions, args.rows).await?;
    let _ = conn.disconnect().await;

    print_welcome(nodes, data_dir, temporary && !args.keep, partitions, args.rows, redundancy);
    Ok(())
}

/// The master's port (the requested one if usable) and one per leaf, each usable with its RPC port.
fn pick_ports(requested: u16, leaves: usize) -> anyhow::Result<Vec<u16>> {
    let no_port = || anyhow::anyhow!("no free ports found on {HOST}");
    let master = if launch::port_usable(HOST, requested) {
        requested
    } else {
        let p = launch::next_usable_port(HOST, requested.saturating_add(1), &[]).ok_or_else(no_port)?;
        println!(
            "Port {requested} (or its RPC port {}) is in use; the master aggregator uses port {p} instead.",
            u32::from(requested) + u32::from(launch::RPC_PORT_OFFSET)
        );
        p
    };
    let mut ports = vec![master];
    for _ in 0..leaves {
        let from = ports.last().map_or(master, |p| p.saturating_add(1));
        ports.push(launch::next_usable_port(HOST, from, &ports).ok_or_else(no_port)?);
    }
    Ok(ports)
}

/// Creates `demo` with `partitions` partitions and fills it deterministically.
async fn load_sample(conn: &mut mysql_async::Conn, partitions: u32, rows: u32) -> anyhow::Result<()> {
    let customers = rows.clamp(1, 200);
    let ddl = [
        format!("CREATE DATABASE demo PARTITIONS {partitions}"),
        "USE demo".to_string(),
        "CREATE REFERENCE TABLE regions (id INT PRIMARY KEY, name VARCHAR(32) NOT NULL)".to_string(),
        "CREATE REFERENCE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, region_id INT NOT NULL)"
            .to_string(),
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(10,2) NOT NULL, \
         status VARCHAR(16) NOT NULL, created DATE NOT NULL, SHARD KEY (id))"
            .to_string(),
    ];
    for sql in ddl {
        conn.query_drop(&sql).await.with_context(|| format!("sample data: {sql} failed"))?;
    }
    let regions: Vec<String> = REGIONS.iter().enumerate().map(|(i, name)| format!("({}, '{name}')", i + 1)).collect();
    insert(conn, "regions (id, name)", &regions).await?;
    let customer_rows: Vec<String> = (1..=customers)
        .map(|i| {
            let i = i as usize;
            let name = format!("{} {}", FIRST_NAMES[i % FIRST_NAMES.len()], LAST_NAMES[(i / 8) % LAST_NAMES.len()]);
            format!("({i}, '{name}', {})", i % REGIONS.len() + 1)
        })
        .collect();
    insert(conn, "customers (id, name, region_id)", &customer_rows).await?;
    let order_rows: Vec<String> = (1..=u64::from(rows))
        .map(|id| {
            let customer = id * 7919 % u64::from(customers) + 1;
            let cents = id * 4093 % 50_000 + 100;
            let status = STATUSES[(id % 4) as usize];
            let (month, day) = (id % 12 + 1, id % 28 + 1);
            format!("({id}, {customer}, {}.{:02}, '{status}', '2024-{month:02}-{day:02}')", cents / 100, cents % 100)
        })
        .collect();
    insert(conn, "orders (id, customer_id, amount, status, created)", &order_rows).await?;
    Ok(())
}

async fn insert(conn: &mut mysql_async::Conn, target: &str, rows: &[String]) -> anyhow::Result<()> {
    for batch in rows.chunks(INSERT_BATCH_ROWS) {
        conn.query_drop(format!("INSERT INTO {target} VALUES {}", batch.join(", ")))
            .await
            .with_context(|| format!("sample data: INSERT INTO {target} failed"))?;
    }
    Ok(())
}

fn print_welcome(
    nodes: &[DemoNode],
    data_dir: &std::path::Path,
    removed: bool,
    partitions: u32,
    rows: u32,
    redundancy: u8,
) {
    let port = nodes[0].spec.port;
    let leaf_port = nodes.get(1).map_or(port, |n| n.spec.port);
    println!();
    let copies =
        if redundancy == 2 { "redundancy 2: a master and a replica of every partition" } else { "redundancy 1" };
    println!("Canopy demo cluster is running ({} leaves, {copies}).", nodes.len() - 1);
    println!();
    println!("  {:<18} {:<16} {:<8} log", "node", "address", "pid");
    for node in nodes {
        println!(
            "  {:<18} {:<16} {:<8} {}",
            node.name,
            node.spec.addr(),
            node.child.id(),
            node.spec.log_path().display()
        );
    }
    println!();
    let fate = if removed { "removed on exit; --keep keeps it" } else { "kept on exit" };
    println!("Data directory: {} ({fate})", data_dir.display());
    println!(
        "Database `demo`: orders ({rows} rows, sharded by id over {partitions} partitions), customers and regions \
         (reference tables, a copy on every leaf)."
    );
    println!();
    println!("Connect to the master aggregator with either client:");
    println!("  mariadb -h {HOST} -P {port} -u root demo");
    println!("  mysql -h {HOST} -P {port} -u root demo");
    println!();
    println!("Queries to try:");
    println!("  SHOW LEAVES;");
    println!("  SHOW PARTITIONS ON demo;");
    println!("  SELECT COUNT(*) FROM orders;");
    println!("  SELECT status, COUNT(*), ROUND(SUM(amount), 2) FROM orders GROUP BY status ORDER BY status;");
    println!("  SELECT r.name, COUNT(*) AS orders, ROUND(SUM(o.amount), 2) AS revenue");
    println!("    FROM orders o JOIN customers c ON c.id = o.customer_id JOIN regions r ON r.id = c.region_id");
    println!("    GROUP BY r.name ORDER BY revenue DESC;");
    println!(
        "  SELECT * FROM information_schema.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'demo' AND PORT = {leaf_port};"
    );
    println!();
    if redundancy == 2 && nodes.len() > 2 {
        let victim = &nodes[1];
        println!(
            "Watch a failover: kill -9 {} ({}), then SHOW PARTITIONS ON demo: its partitions are served by its pair \
             within about a second; the demo starts it again after {} s and it returns as replicas, then half of them \
             are masters again.",
            victim.child.id(),
            victim.name,
            RESTART_AFTER.as_secs()
        );
        println!();
    }
    println!("Press Ctrl-C to stop the cluster.");
}

/// Master first, then the leaves (spec §9.2), one line per node.
fn stop_all(nodes: &mut [DemoNode]) {
    for node in nodes.iter_mut() {
        let pid = node.child.id();
        match launch::stop_child(&mut node.child) {
            Stopped::Clean => println!("  stopped {} ({}, pid {pid})", node.name, node.spec.addr()),
            Stopped::Killed => eprintln!(
                "  warning: {} ({}, pid {pid}) did not exit within {}s of SIGTERM; killed it",
                node.name,
                node.spec.addr(),
                launch::STOP_TIMEOUT.as_secs()
            ),
            Stopped::Stuck => eprintln!("  warning: {} (pid {pid}) survived SIGKILL", node.name),
        }
    }
}
