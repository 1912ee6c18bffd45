//! `canopy server` child processes as the tooling sees them: spawning one (tied to this process, or detached into its
//! own session), waiting until it answers `SELECT 1`, stopping it (SIGTERM, then SIGKILL after a deadline), telling
//! whether a pid still is the node of a given data directory, and finding free ports. It knows nothing of clusters:
//! `demo` and `cluster` decide which nodes run and in which order.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::prelude::Queryable;

/// How long a node may take from spawn to answering `SELECT 1`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after SIGKILL before we give up waiting for the process to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// One connection attempt during readiness polling; a node that accepts TCP but never answers must not stall us.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The server derives its RPC port from the MySQL port by this offset (`canopy server --help`).
pub const RPC_PORT_OFFSET: u16 = 10000;
/// The node's log file, inside its data directory.
pub const LOG_FILE: &str = "node.log";

/// Everything needed to run and reach one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Absolute, so that it reads the same in `/proc/<pid>/cmdline` whatever the current directory.
    pub data_dir: PathBuf,
    pub host: String,
    pub port: u16,
    /// `None`: the server's default, port + [`RPC_PORT_OFFSET`].
    pub rpc_port: Option<u16>,
    pub root_password: String,
}

impl NodeSpec {
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The MySQL client options for user root on this node.
    pub fn client_opts(&self) -> mysql_async::Opts {
        let pass = (!self.root_password.is_empty()).then(|| self.root_password.clone());
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some("root"))
            .pass(pass)
            .prefer_socket(false)
            .into()
    }
}

/// What happens to a spawned node when the process that spawned it goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// The node gets SIGTERM when this process dies (Linux), and sits in its own process group so that a Ctrl-C in
    /// the terminal reaches only us and we can stop the nodes in the safe order.
    TiedToParent,
    /// The node starts its own session and outlives us (`canopy cluster up` exits while the nodes keep running).
    Detached,
}

/// Starts `binary server ...` for `spec`, stdout and stderr appended to `<data_dir>/node.log`. The root password goes
/// through the environment, not the command line, so that `ps` does not show it.
pub fn spawn(binary: &Path, spec: &NodeSpec, lifetime: Lifetime) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&spec.data_dir).with_context(|| format!("cannot create {}", spec.data_dir.display()))?;
    let log_path = spec.log_path();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_err = log.try_clone().context("cannot duplicate the log file handle")?;
    let mut command = Command::new(binary);
    command
        .arg("server")
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .args(["--host", &spec.host, "--port", &spec.port.to_string()])
        .env("CANOPY_ROOT_PASSWORD", &spec.root_password)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    if let Some(rpc_port) = spec.rpc_port {
        command.args(["--rpc-port", &rpc_port.to_string()]);
    }
    match lifetime {
        Lifetime::TiedToParent => {
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions.
            unsafe {
                command.pre_exec(move || {
                    if libc::setpgid(0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    #[cfg(target_os = "linux")]
                    {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        // The parent may have died before prctl took effect; then nobody would ever signal us.
                        if libc::getppid() != parent {
                            return Err(std::io::Error::other("parent exited during spawn"));
                        }
                    }
                    #[cfg(not(target_os = "linux"))]
                    let _ = parent;
                    Ok(())
                })
            };
        }
        Lifetime::Detached => {
            // SAFETY: as above; setsid is async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
    }
    command.spawn().with_context(|| format!("cannot start {} server", binary.display()))
}

/// Polls until the node answers `SELECT 1` over MySQL, [`READY_TIMEOUT`] passes, or `exited` reports that the
/// process is gone (then waiting longer is pointless). Errors carry the end of the node's log.
pub async fn wait_ready(spec: &NodeSpec, mut exited: impl FnMut() -> Option<String>) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let opts = spec.client_opts();
    loop {
        if let Some(how) = exited() {
            anyhow::bail!("node {} {how} before it was ready{}", spec.addr(), log_tail(spec));
        }
        let last_error = match tokio::time::timeout(CONNECT_ATTEMPT_TIMEOUT, select_one(opts.clone())).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connection attempt timed out".to_string(),
        };
        if Instant::now() >= deadline {
            anyhow::bail!(
                "node {} did not answer SELECT 1 within {}s (last error: {last_error}){}",
                spec.addr(),
                READY_TIMEOUT.as_secs(),
                log_tail(spec)
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn select_one(opts: mysql_async::Opts) -> Result<(), mysql_async::Error> {
    let mut conn = mysql_async::Conn::new(opts).await?;
    let one: Option<i64> = conn.query_first("SELECT 1").await?;
    let _ = conn.disconnect().await;
    match one {
        Some(1) => Ok(()),
        _ => Err(mysql_async::Error::Other("SELECT 1 did not return 1".into())),
    }
}

/// The last lines of the node's log, formatted to follow an error message (empty if there is no log).
pub fn log_tail(spec: &NodeSpec) -> String {
    let path = spec.log_path();
    let Ok(text) = std::fs::read_to_string(&path) else { return String::new() };
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
    if tail.is_empty() { String::new() } else { format!("\nlast lines of {}:\n  {tail}", path.display()) }
}

/// `exited` for [`wait_ready`] on a child of this process.
pub fn child_exited(child: &mut Child) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) => Some(format!("exited ({status})")),
        Ok(None) => None,
        Err(e) => Some(format!("cannot be waited for ({e})")),
    }
}

/// How a stop went.
#[derive(Debug)]
pub enum Stopped {
    /// Exited after SIGTERM.
    Clean,
    /// Did not exit within the deadline and was killed.
    Killed,
    /// Survived even SIGKILL for [`KILL_TIMEOUT`] (stuck in the kernel, or not ours to reap).
    Stuck,
}

/// SIGTERM, wait up to `STOP_TIMEOUT`, then SIGKILL. Reaps the child.
pub fn stop_child(child: &mut Child) -> Stopped {
    if let Ok(Some(_)) = child.try_wait() {
        return Stopped::Clean;
    }
    send_signal(child.id() as libc::pid_t, libc::SIGTERM);
    if poll_until(STOP_TIMEOUT, || child.try_wait().ok().flatten()).is_some() {
        return Stopped::Clean;
    }
    let _ = child.kill();
    match poll_until(KILL_TIMEOUT, || child.try_wait().ok().flatten()) {
        Some(_) => Stopped::Killed,
        None => Stopped::Stuck,
    }
}

/// Like [`stop_child`] for a node that is not our child (started by an earlier `canopy cluster`): the process is
/// watched through `/proc`, and it counts as gone once it no longer serves `data_dir` (exited, or a zombie).
pub fn stop_pid(pid: libc::pid_t, data_dir: &Path) -> Stopped {
    let gone = || (!serves_data_dir(pid, data_dir)).then_some(());
    if gone().is_some() {
        return Stopped::Clean;
    }
    send_signal(pid, libc::SIGTERM);
    if poll_until(STOP_TIMEOUT, gone).is_some() {
        return Stopped::Clean;
    }
    send_signal(pid, libc::SIGKILL);
    match poll_until(KILL_TIMEOUT, gone) {
        Some(()) => Stopped::Killed,
        None => Stopped::Stuck,
    }
}

fn send_signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid yields ESRCH, which we ignore.
    unsafe { libc::kill(pid, signal) };
}

fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when `pid` is a live (not zombie) `canopy server` whose `--data-dir` is exactly `data_dir`. A pid file that
/// outlived its process may name an unrelated process by now; this is what keeps us from signalling it.
pub fn serves_data_dir(pid: libc::pid_t, data_dir: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    cmdline_serves(&cmdline, data_dir)
}

/// The check behind [`serves_data_dir`] on a raw NUL-separated `/proc/<pid>/cmdline` (empty for zombies).
pub fn cmdline_serves(cmdline: &[u8], data_dir: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let want = data_dir.as_os_str().as_encoded_bytes();
    let is_server = args.iter().skip(1).take(1).any(|a| *a == b"server");
    let has_dir = args.windows(2).any(|w| w[0] == b"--data-dir" && w[1] == want);
    is_server && has_dir
}

/// True when `port` and its default RPC port (`port + 10000`) can both be bound on `host` right now.
pub fn port_usable(host: &str, port: u16) -> bool {
    let Some(rpc) = port.checked_add(RPC_PORT_OFFSET) else { return false };
    port != 0 && TcpListener::bind((host, port)).is_ok() && TcpListener::bind((host, rpc)).is_ok()
}

/// The first usable port at or above `from` that is not in `taken` and whose RPC port does not collide with a taken
/// port either.
pub fn next_usable_port(host: &str, from: u16, taken: &[u16]) -> Option<u16> {
    let last = u16::MAX - RPC_PORT_OFFSET;
    (from.max(1)..=last).find(|&p| {
        let clashes = taken
            .iter()
            .any(|&t| t == p || Some(t) == p.checked_add(RPC_PORT_OFFSET) || t.checked_add(RPC_PORT_OFFSET) == Some(p));
        !clashes && port_usable(host, p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_must_be_a_server_for_exactly_that_data_dir() {
        let dir = Path::new("/tmp/c/leaf-1");
        assert!(cmdline_serves(b"/bin/canopy\0server\0--data-dir\0/tmp/c/leaf-1\0--port\x003307\0", dir));
        assert!(!cmdline_serves(b"/bin/canopy\0server\0--data-dir\0/tmp/c/leaf-10\0", dir));
        assert!(!cmdline_serves(b"/bin/vim\0--data-dir\0/tmp/c/leaf-1\0", dir));
        assert!(!cmdline_serves(b"", dir));
    }

    #[test]
    fn next_usable_port_skips_taken_ports_and_their_rpc_ports() {
        let p = next_usable_port("127.0.0.1", 40000, &[]).expect("some port is free");
        let q = next_usable_port("127.0.0.1", p, &[p]).expect("another port is free");
        assert!(q > p);
        assert_ne!(Some(q), p.checked_add(RPC_PORT_OFFSET));
    }
}
