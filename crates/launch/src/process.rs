//! Spawning a `canopy server` child and stopping it (by handle or by pid), and telling whether a pid still is the
//! node of a data directory, so that a stale pid file never makes us signal an unrelated process.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::NodeSpec;

/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after SIGKILL before we give up waiting for the process to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// What happens to a spawned node when the process that spawned it goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// The node gets SIGTERM when this process dies (Linux), and sits in its own process group so that a Ctrl-C in
    /// the terminal reaches only us and we can stop the nodes in the safe order.
    TiedToParent,
    /// The node starts its own session and outlives us (`canopy cluster up` exits while the nodes keep running).
    Detached,
    /// The node sits in its own process group and lives until its owner kills it (the [`crate::Node`] handle does
    /// on drop). For callers that spawn from threads that may end first (test harnesses, runtime workers):
    /// `PR_SET_PDEATHSIG` fires when the spawning *thread* exits, not the process.
    Owned,
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
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .args(&spec.args)
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
        Lifetime::Owned => {
            // SAFETY: as above; setpgid is async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    if libc::setpgid(0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
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
    // A node frozen with SIGSTOP would not act on SIGTERM until continued.
    send_signal(child.id() as libc::pid_t, libc::SIGCONT);
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
    send_signal(pid, libc::SIGCONT);
    if poll_until(STOP_TIMEOUT, gone).is_some() {
        return Stopped::Clean;
    }
    send_signal(pid, libc::SIGKILL);
    match poll_until(KILL_TIMEOUT, gone) {
        Some(()) => Stopped::Killed,
        None => Stopped::Stuck,
    }
}

/// Sends `signal` to `pid`; a stale pid is ignored.
pub fn send_signal(pid: libc::pid_t, signal: libc::c_int) {
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
}
