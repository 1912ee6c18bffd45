//! A node owned by this process: spawned, waited for, signalled, killed, stopped and restarted through one handle,
//! on the same data directory and port each time (a restarted node appends to its log). Dropping the handle kills a
//! node that is still running, also after a failed assertion, so nothing outlives its owner.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::process::{Lifetime, Stopped, send_signal, spawn, stop_child};
use crate::{NodeSpec, ready};

pub struct Node {
    binary: PathBuf,
    spec: NodeSpec,
    lifetime: Lifetime,
    child: Option<Child>,
}

impl Node {
    /// Spawns `binary server` for `spec`; does not wait for it (see [`Node::wait_ready`]). `lifetime` must not be
    /// [`Lifetime::Detached`]: a handle owns its node.
    pub fn start(binary: &Path, spec: NodeSpec, lifetime: Lifetime) -> anyhow::Result<Node> {
        anyhow::ensure!(
            lifetime != Lifetime::Detached,
            "a Node handle owns its process; spawn detached nodes directly"
        );
        let mut node = Node { binary: binary.to_path_buf(), spec, lifetime, child: None };
        node.restart()?;
        Ok(node)
    }

    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    pub fn port(&self) -> u16 {
        self.spec.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// The extra environment of the next start (see [`Node::restart`]).
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.spec.env = env;
    }

    /// The pid while the node runs (or has exited but is not yet reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// How the node ended, if it has (`None` while it runs or after it was reaped by [`Node::kill`]).
    pub fn exited(&mut self) -> Option<String> {
        self.child.as_mut().and_then(ready::child_exited)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// Polls until the node answers `SELECT 1`, it exits, or [`crate::READY_TIMEOUT`] passes.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let Node { spec, child, .. } = self;
        let child = child.as_mut().context("node is not running")?;
        ready::wait_ready(spec, || ready::child_exited(child)).await
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) to the node; an error if it is not running.
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self.pid().with_context(|| format!("node {} is not running", self.spec.addr()))?;
        send_signal(pid as libc::pid_t, signal);
        Ok(())
    }

    /// SIGKILL and reap; nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (and SIGCONT, in case it is frozen), wait up to [`crate::STOP_TIMEOUT`], then SIGKILL; reaps it.
    pub fn stop(&mut self) -> Stopped {
        match self.child.take() {
            Some(mut child) => stop_child(&mut child),
            None => Stopped::Clean,
        }
    }

    /// SIGTERM and wait up to `timeout` for the exit status, without escalating (a test checks a clean stop
    /// this way). `None` if the node is still running after `timeout` (it stays owned and is killed on drop).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        send_signal(child.id() as libc::pid_t, libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again on its data directory and port; an error if it still runs.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            anyhow::bail!("node {} is still running", self.spec.addr());
        }
        self.child = None;
        self.child = Some(spawn(&self.binary, &self.spec, self.lifetime)?);
        Ok(())
    }

    /// The node's log so far (empty when unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.spec.log_path()).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
