//! The connections of this node's MySQL front end and its status counters: what SHOW PROCESSLIST,
//! INFORMATION_SCHEMA.PROCESSLIST and SHOW STATUS print. Each session registers itself when it opens and is
//! removed when it closes (`Registration` drops); a running statement is recorded with its start time. KILL reaches
//! a connection through its entry: a count of KILL QUERYs its running statement watches, and a flag its connection
//! loop watches for KILL CONNECTION. The node-wide `max_execution_time` (SET GLOBAL) lives here too.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use canopy_sql::{ResultSet, Value};

/// One connection as SHOW PROCESSLIST shows it.
#[derive(Debug, Clone)]
struct Process {
    /// Which registration made this entry: a connection that changes user (COM_CHANGE_USER) registers its new session
    /// before the old one drops, under the same id, and the old one must not remove the new entry.
    registration: u64,
    user: String,
    host: String,
    db: Option<String>,
    connected: Instant,
    /// The statement running now and when it started.
    running: Option<(String, Instant)>,
    /// KILL QUERYs (and KILL CONNECTIONs) received; a running statement stops when this grows.
    query_kills: tokio::sync::watch::Sender<u64>,
    /// Set by KILL CONNECTION: the connection closes.
    killed: tokio::sync::watch::Sender<bool>,
}

/// Statement kinds counted as `Com_<kind>`, by the statement's first keyword.
const COUNTED_COMMANDS: &[&str] =
    &["select", "insert", "update", "delete", "replace", "create", "drop", "alter", "set", "show", "begin", "commit"];

/// Characters of a statement's text SHOW PROCESSLIST prints in its `Info` column (FULL prints all of it).
const INFO_CHARS_MAX: usize = 100;

/// Every connection of this node and the counters of SHOW STATUS.
pub struct Processes {
    started: Instant,
    processes: Mutex<BTreeMap<u32, Process>>,
    connections: AtomicU64,
    questions: AtomicU64,
    commands: [AtomicU64; COUNTED_COMMANDS.len()],
    /// `SET GLOBAL max_execution_time` (milliseconds, 0 for none): where new sessions start.
    max_execution_ms: AtomicU64,
}

/// KILL of a connection this node does not have (MySQL's ER_NO_SUCH_THREAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownThread(pub u64);

impl Default for Processes {
    fn default() -> Self {
        Processes {
            started: Instant::now(),
            processes: Mutex::new(BTreeMap::new()),
            connections: AtomicU64::new(0),
            questions: AtomicU64::new(0),
            commands: std::array::from_fn(|_| AtomicU64::new(0)),
            max_execution_ms: AtomicU64::new(0),
        }
    }
}

/// A session's place in the list; dropping it removes the connection.
pub struct Registration {
    processes: std::sync::Arc<Processes>,
    id: u32,
    registration: u64,
    /// This entry's kill signals, subscribed once when it registered (a statement or a command reads them without
    /// taking the list's lock).
    query_kills: tokio::sync::watch::Receiver<u64>,
    killed: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.processes.with(|p| {
            if p.get(&self.id).is_some_and(|process| process.registration == self.registration) {
                p.remove(&self.id);
            }
        });
    }
}

impl Registration {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The list this connection is in.
    pub fn processes(&self) -> &Processes {
        &self.processes
    }

    /// A statement starts (counted in Questions and its `Com_` counter).
    pub fn statement_started(&self, sql: &str) {
        self.processes.questions.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = command_index(sql) {
            self.processes.commands[k].fetch_add(1, Ordering::Relaxed);
        }
        self.processes.with(|p| {
            if let Some(process) = p.get_mut(&self.id) {
                process.running = Some((sql.to_string(), Instant::now()));
            }
        });
    }

    pub fn statement_finished(&self) {
        self.processes.with(|p| {
            if let Some(process) = p.get_mut(&self.id) {
                process.running = None;
            }
        });
    }

    /// KILL QUERYs received so far; the receiver sees every later one (a running statement waits for a change).
    pub fn query_kills(&self) -> tokio::sync::watch::Receiver<u64> {
        self.query_kills.clone()
    }

    /// Becomes true when a KILL CONNECTION names this connection.
    pub fn killed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.killed.clone()
    }

    /// The session's current database changed.
    pub fn set_db(&self, db: Option<&str>) {
        self.processes.with(|p| {
            if let Some(process) = p.get_mut(&self.id) {
                process.db = db.map(str::to_string);
            }
        });
    }
}

/// Which `COUNTED_COMMANDS` entry `sql` counts for (by its first keyword; `START TRANSACTION` counts as begin).
fn command_index(sql: &str) -> Option<usize> {
    let word: String = sql.trim_start().chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let word = match word.to_ascii_lowercase().as_str() {
        "start" => "begin".to_string(),
        other => other.to_string(),
    };
    COUNTED_COMMANDS.iter().position(|c| *c == word)
}

impl Processes {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<u32, Process>) -> T) -> T {
        f(&mut self.processes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Adds connection `id` (as the MySQL handshake numbered it).
    pub fn register(self: &std::sync::Arc<Self>, id: u32, user: &str, peer: std::net::SocketAddr) -> Registration {
        let registration = self.connections.fetch_add(1, Ordering::Relaxed);
        let process = Process {
            registration,
            user: user.to_string(),
            host: peer.to_string(),
            db: None,
            connected: Instant::now(),
            running: None,
            query_kills: tokio::sync::watch::channel(0).0,
            killed: tokio::sync::watch::channel(false).0,
        };
        let (query_kills, killed) = (process.query_kills.subscribe(), process.killed.subscribe());
        self.with(|p| p.insert(id, process));
        Registration { processes: self.clone(), id, registration, query_kills, killed }
    }

    /// The account connection `id` runs as (for KILL: only its owner, or an account with CLUSTER, may stop it).
    pub fn user_of(&self, id: u64) -> Option<String> {
        let key = u32::try_from(id).ok()?;
        self.with(|p| p.get(&key).map(|process| process.user.clone()))
    }

    /// KILL [QUERY|CONNECTION] `id`: the connection's running read stops (writes finish: each statement commits
    /// as it runs, so there is nothing to roll back); without `query_only` the connection closes too.
    pub fn kill(&self, id: u64, query_only: bool) -> Result<(), UnknownThread> {
        let key = u32::try_from(id).map_err(|_| UnknownThread(id))?;
        self.with(|p| {
            let process = p.get(&key).ok_or(UnknownThread(id))?;
            process.query_kills.send_modify(|kills| *kills += 1);
            if !query_only {
                process.killed.send_replace(true);
            }
            Ok(())
        })
    }

    /// The node-wide `max_execution_time` in milliseconds (0: none).
    pub fn max_execution_ms(&self) -> u64 {
        self.max_execution_ms.load(Ordering::Relaxed)
    }

    pub fn set_max_execution_ms(&self, ms: u64) {
        self.max_execution_ms.store(ms, Ordering::Relaxed);
    }

    /// The rows of SHOW [FULL] PROCESSLIST and INFORMATION_SCHEMA.PROCESSLIST (`full`: the whole statement text).
    pub fn list(&self, full: bool) -> ResultSet {
        let now = Instant::now();
        let rows = self.with(|p| {
            p.iter()
                .map(|(id, process)| {
                    let (command, time, state, info) = match &process.running {
                        Some((sql, since)) => {
                            let info = if full { sql.clone() } else { sql.chars().take(INFO_CHARS_MAX).collect() };
                            ("Query", now.duration_since(*since), "executing", Value::text(info))
                        }
                        None => ("Sleep", now.duration_since(process.connected), "", Value::Null),
                    };
                    vec![
                        Value::int(*id),
                        Value::text(process.user.clone()),
                        Value::text(process.host.clone()),
                        process.db.clone().map_or(Value::Null, Value::Text),
                        Value::text(command),
                        Value::Integer(time.as_secs() as i64),
                        Value::text(state),
                        info,
                    ]
                })
                .collect()
        });
        ResultSet::named(&["Id", "User", "Host", "db", "Command", "Time", "State", "Info"], rows)
    }

    /// INFORMATION_SCHEMA.PROCESSLIST: the rows of SHOW FULL PROCESSLIST under MySQL's upper-case column names.
    pub fn information_schema(&self) -> ResultSet {
        let mut rs = self.list(true);
        for column in &mut rs.columns {
            column.name = column.name.to_ascii_uppercase();
        }
        rs
    }

    /// INFORMATION_SCHEMA.GLOBAL_STATUS / SESSION_STATUS: the rows of SHOW STATUS under MySQL's column names, names
    /// upper case.
    pub fn information_schema_status(&self) -> ResultSet {
        let rows = self
            .status(None)
            .rows
            .into_iter()
            .map(|mut row| {
                if let Value::Text(name) = &mut row[0] {
                    name.make_ascii_uppercase();
                }
                row
            })
            .collect();
        ResultSet::named(&["VARIABLE_NAME", "VARIABLE_VALUE"], rows)
    }

    /// The rows of SHOW [GLOBAL|SESSION] STATUS: real counters of this node since it started.
    pub fn status(&self, like: Option<&str>) -> ResultSet {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as i64;
        let threads_running = self.with(|p| p.values().filter(|p| p.running.is_some()).count());
        let mut rows: Vec<(String, i64)> = vec![
            ("Uptime".into(), self.started.elapsed().as_secs() as i64),
            ("Threads_connected".into(), self.with(|p| p.len()) as i64),
            ("Threads_running".into(), threads_running as i64),
            ("Connections".into(), load(&self.connections)),
            ("Questions".into(), load(&self.questions)),
            ("Queries".into(), load(&self.questions)),
        ];
        rows.extend(COUNTED_COMMANDS.iter().zip(&self.commands).map(|(c, n)| (format!("Com_{c}"), load(n))));
        rows.sort();
        let rows = rows
            .into_iter()
            .filter(|(name, _)| like.is_none_or(|p| crate::front::views::like_match(p, name)))
            .map(|(name, value)| vec![Value::Text(name), Value::Text(value.to_string())])
            .collect();
        ResultSet::named(&["Variable_name", "Value"], rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn connections_come_and_go_and_statements_are_counted() {
        let processes = Arc::new(Processes::default());
        let peer = "127.0.0.1:5000".parse().unwrap();
        let a = processes.register(7, "root", peer);
        let b = processes.register(9, "app", peer);
        a.statement_started("SELECT * FROM t");
        a.set_db(Some("shop"));
        let list = processes.list(false);
        assert_eq!(list.rows.len(), 2);
        assert_eq!(list.rows[0][0], Value::Integer(7));
        assert_eq!(list.rows[0][3], Value::text("shop"));
        assert_eq!(list.rows[0][4], Value::text("Query"));
        assert_eq!(list.rows[0][7], Value::text("SELECT * FROM t"));
        assert_eq!(list.rows[1][4], Value::text("Sleep"));
        a.statement_finished();
        b.statement_started("insert into t values (1)");
        drop(b);
        let status = processes.status(None);
        let value = |name: &str| {
            status.rows.iter().find(|r| r[0] == Value::text(name)).map(|r| r[1].clone()).expect("a counter")
        };
        assert_eq!(value("Threads_connected"), Value::text("1"));
        assert_eq!(value("Questions"), Value::text("2"));
        assert_eq!(value("Com_select"), Value::text("1"));
        assert_eq!(value("Com_insert"), Value::text("1"));
        assert_eq!(value("Connections"), Value::text("2"));
        assert_eq!(processes.status(Some("Com_sel%")).rows.len(), 1);
    }

    #[test]
    fn info_is_cut_unless_full() {
        let processes = Arc::new(Processes::default());
        let a = processes.register(1, "root", "127.0.0.1:1".parse().unwrap());
        let long = format!("SELECT '{}'", "x".repeat(500));
        a.statement_started(&long);
        assert_eq!(processes.list(false).rows[0][7], Value::text(long[..INFO_CHARS_MAX].to_string()));
        assert_eq!(processes.list(true).rows[0][7], Value::text(long.clone()));
    }
}
