//! The short chaos run (the long one is `canopy-chaos` in `bench/`; both are `canopy-chaos`'s one implementation).
//!
//! History: a redundancy-2 cluster of 2 pairs; `leaf_failure_timeout_ms` 1500; 4 writers insert unique ids through
//! the master aggregator while a nemesis runs 8 episodes, each one fault on a random leaf (SIGKILL then restart,
//! SIGSTOP past detection then SIGCONT, a brief SIGSTOP below detection, SIGTERM then restart), waiting for the
//! cluster to be healthy (every leaf online, every partition with an in-sync replica) before the next one.
//! Property: the cluster recovers from every episode within the deadline and the writers get acknowledgements again;
//! afterwards every acknowledged id is present exactly once, no id that was never attempted is present, no
//! statement hung, and both copies of every partition hold the same log position and the same ids.
//! The seed is random (printed); `CHAOS_SEED` replays a sequence of faults.

use std::time::{SystemTime, UNIX_EPOCH};

use canopy_chaos::{Cluster, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_nemesis_of_kills_and_freezes() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    let dir = std::env::temp_dir().join(format!("canopy-test-chaos-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_canopy"));
    let mut cluster = Cluster::start(binary, &dir, 2, canopy_launch::Lifetime::Owned, &[]).await.expect("cluster");
    let settings = Settings::short(seed);
    let report = canopy_chaos::run(&mut cluster, &settings).await.expect("the chaos run sets up");
    eprintln!("{report}");
    assert!(report.passed(), "seed {seed}: {report}");
    assert!(!report.episodes.is_empty() && report.acked > 0, "the run did something: {report}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
