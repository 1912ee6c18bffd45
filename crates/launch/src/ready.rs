//! Waiting for a spawned node to answer `SELECT 1` over MySQL, and the log tail that explains why it did not.

use std::process::Child;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::NodeSpec;

/// How long a node may take from spawn to answering `SELECT 1`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// One connection attempt during readiness polling; a node that accepts TCP but never answers must not stall us.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

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
