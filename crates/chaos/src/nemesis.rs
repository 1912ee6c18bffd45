//! The nemesis: one fault at a time on a random leaf, then back to healthy before the next, so both leaves of a pair
//! are never down together. Each episode is planned from a seeded random source (`plan`, pure) and carried out on
//! the cluster (`carry_out`), which observes how long the failure detection and the failover took.
//!
//! The faults:
//! - **kill**: SIGKILL; once the master aggregator has failed the leaf's masters over, a pause, then a restart;
//! - **freeze**: SIGSTOP past detection (the leaf is marked offline and its masters fail over while the process
//!   still holds its sockets and its uncommitted transactions), a pause, then SIGCONT: a deposed master wakes up;
//! - **brief freeze**: SIGSTOP for less than half the failure timeout, then SIGCONT: commits stall, nothing fails
//!   over;
//! - **stop**: SIGTERM (a clean exit), then as for kill.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use crate::cluster::Cluster;
use crate::health::{self, View};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill,
    Freeze,
    BriefFreeze,
    Stop,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Freeze => "freeze",
            Fault::BriefFreeze => "brief freeze",
            Fault::Stop => "stop",
        }
    }
}

/// One planned episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub leaf: usize,
    pub fault: Fault,
    /// Kill, freeze, stop: how long the leaf stays down after its masters failed over; brief freeze: how long it
    /// stays frozen.
    pub pause: Duration,
}

/// The next episode for a cluster of `leaves` leaves and failure timeout `failure_timeout`.
pub fn plan(rng: &mut StdRng, leaves: usize, failure_timeout: Duration) -> Episode {
    let leaf = rng.random_range(0..leaves);
    let fault = match rng.random_range(0..100) {
        0..35 => Fault::Kill,
        35..70 => Fault::Freeze,
        70..85 => Fault::BriefFreeze,
        _ => Fault::Stop,
    };
    let pause_ms = match fault {
        Fault::BriefFreeze => rng.random_range(50..=(failure_timeout.as_millis() as u64 / 2).max(51)),
        _ => rng.random_range(0..=1000),
    };
    Episode { leaf, fault, pause: Duration::from_millis(pause_ms) }
}

/// What one episode observed.
#[derive(Debug, Clone)]
pub struct Record {
    pub number: u32,
    pub episode: Episode,
    /// When it started, in milliseconds since the run started.
    pub started_ms: u64,
    /// Masters the leaf held when the fault hit.
    pub masters: usize,
    /// From the fault to SHOW LEAVES calling the leaf offline (not for a brief freeze).
    pub detected: Option<Duration>,
    /// From the fault to every partition the leaf mastered having a master on an online leaf.
    pub failover: Option<Duration>,
    /// From the leaf's return (restart answered, or SIGCONT) to the cluster healthy again.
    pub recovered: Option<Duration>,
    /// What went wrong (a deadline passed): a liveness violation.
    pub failure: Option<String>,
}

/// Deadlines and polling of an episode.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From the fault to the failover, and from the return to healthy.
    pub deadline: Duration,
    pub poll: Duration,
}

/// Polls the view until `done` holds (returning the time from `since`), or the deadline passes.
async fn until(
    conn: &mut mysql_async::Conn,
    db: &str,
    since: Instant,
    limits: &Limits,
    what: &str,
    done: impl Fn(&View) -> bool,
) -> Result<Duration, String> {
    loop {
        if let Ok(view) = health::view(conn, db, Duration::from_secs(10)).await
            && done(&view)
        {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limits.deadline {
            return Err(format!("{what}: not after {} ms", limits.deadline.as_millis()));
        }
        tokio::time::sleep(limits.poll).await;
    }
}

/// Carries out `episode` on `cluster` and waits until it is healthy again.
pub async fn carry_out(
    cluster: &mut Cluster,
    db: &str,
    partitions: u32,
    number: u32,
    episode: Episode,
    started_ms: u64,
    limits: &Limits,
) -> Record {
    let mut record = Record {
        number,
        episode: episode.clone(),
        started_ms,
        masters: 0,
        detected: None,
        failover: None,
        recovered: None,
        failure: None,
    };
    if let Err(e) = fault(cluster, db, partitions, &episode, limits, &mut record).await {
        record.failure = Some(e);
    }
    record
}

async fn fault(
    cluster: &mut Cluster,
    db: &str,
    partitions: u32,
    episode: &Episode,
    limits: &Limits,
    record: &mut Record,
) -> Result<(), String> {
    let leaf = episode.leaf;
    let port = cluster.leaf_port(leaf);
    let mut conn = cluster.connect().await.map_err(|e| format!("{e:#}"))?;
    let before = health::view(&mut conn, db, Duration::from_secs(10)).await.map_err(|e| format!("{e:#}"))?;
    let mastered = before.masters_on(port);
    record.masters = mastered.len();
    let t0 = Instant::now();
    match episode.fault {
        Fault::Kill => cluster.kill(leaf),
        Fault::Freeze | Fault::BriefFreeze => cluster.freeze(leaf).map_err(|e| format!("{e:#}"))?,
        Fault::Stop => {
            cluster.stop(leaf);
        }
    }
    if episode.fault == Fault::BriefFreeze {
        tokio::time::sleep(episode.pause).await;
        cluster.thaw(leaf).map_err(|e| format!("{e:#}"))?;
    } else {
        let offline = |v: &View| v.leaf_state(port) == Some("offline");
        record.detected = Some(until(&mut conn, db, t0, limits, "the leaf marked offline", offline).await?);
        let failed_over =
            |v: &View| mastered.iter().all(|k| v.master(*k).is_some_and(|m| m.port != port && !m.offline));
        let took = until(&mut conn, db, t0, limits, "its masters failed over", failed_over).await?;
        if !mastered.is_empty() {
            record.failover = Some(took);
        }
        tokio::time::sleep(episode.pause).await;
        match episode.fault {
            Fault::Freeze => cluster.thaw(leaf).map_err(|e| format!("{e:#}"))?,
            _ => cluster.restart(leaf).await.map_err(|e| format!("restart: {e:#}"))?,
        }
    }
    let back = Instant::now();
    health::wait_healthy(&cluster.master_opts(), db, partitions, limits.deadline, limits.poll)
        .await
        .map_err(|e| format!("{e:#}"))?;
    record.recovered = Some(back.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn plans_are_reproducible_from_the_seed_and_cover_every_fault() {
        let timeout = Duration::from_millis(1500);
        let plans = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..200).map(|_| plan(&mut rng, 4, timeout)).collect::<Vec<_>>()
        };
        assert_eq!(plans(7), plans(7));
        let all = plans(7);
        for fault in [Fault::Kill, Fault::Freeze, Fault::BriefFreeze, Fault::Stop] {
            assert!(all.iter().any(|e| e.fault == fault), "{fault:?} never planned");
        }
        assert!(all.iter().all(|e| e.leaf < 4));
        assert!(
            all.iter().filter(|e| e.fault == Fault::BriefFreeze).all(|e| e.pause <= timeout / 2),
            "a brief freeze stays below detection"
        );
    }
}
