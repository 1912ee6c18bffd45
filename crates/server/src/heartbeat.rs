//! The master aggregator's heartbeat: pings every leaf once per period and records round-trip latency and
//! reachability for SHOW LEAVES. (Marking leaves offline from missed heartbeats is a later layer; this loop only
//! measures.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy_rpc::Request;

use crate::node::Node;

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cluster) = node.cluster() else { continue };
        let meta = cluster.meta();
        let mut pings = tokio::task::JoinSet::new();
        for leaf in meta.leaves_in_order().cloned() {
            let cluster = cluster.clone();
            pings.spawn(async move {
                let started = Instant::now();
                let ok = cluster.call_with_timeout(&leaf, &Request::Ping, PING_TIMEOUT).await.is_ok();
                cluster.record_ping(leaf.id, ok.then(|| started.elapsed()));
            });
        }
        while pings.join_next().await.is_some() {}
    }
}
