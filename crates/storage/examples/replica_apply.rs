//! The replica's cost of applying its master's log: sysbench-like single-row inserts are committed on a master
//! copy, and their log entries applied to a replica copy in batches of 1 to 64 entries per transaction
//! (`apply_log`, changesets combined), then taken one entry per request as a master ships them (`apply_replicated`:
//! held, applied together later). Prints entries/s and µs per entry for each.
//! `cargo run --release -p canopy-storage --example replica_apply -- [entries]`
use std::time::Instant;

use canopy_storage::LeafStore;
use canopy_storage::engine::Durability;
use canopy_types::{DatabaseId, Term};

const SCHEMA: &str = "CREATE TABLE sbtest1 (id INTEGER NOT NULL, k INTEGER NOT NULL DEFAULT 0, \
    c TEXT NOT NULL DEFAULT '', pad TEXT NOT NULL DEFAULT '', PRIMARY KEY (id))";

fn main() {
    let entries: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(4000);
    let dir = std::env::temp_dir().join(format!("replica-apply-{}", std::process::id()));
    let master = LeafStore::open(&dir.join("master")).unwrap();
    let schema = vec![SCHEMA.to_string()];
    master.create_partitions("db", &[0], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
    for i in 0..entries {
        let c = format!("{:0>119}", i);
        master
            .execute_on_partition(
                "db",
                0,
                &format!("INSERT INTO sbtest1 (id, k, c, pad) VALUES ({i}, {}, '{c}', '{:0>59}')", i * 7 % 1000, i),
            )
            .unwrap();
    }
    let mut log = Vec::new();
    while (log.len() as u64) < entries {
        let after = log.last().map(|e: &canopy_storage::LogEntry| e.index).unwrap_or(0);
        log.extend(master.log_since("db", 0, after, 1 << 20).unwrap());
    }
    let term = log.last().unwrap().term.max(Term(1));
    // Some(n): n entries per transaction (`apply_log`); None: one per request, held (`apply_replicated`).
    for batch in [Some(1usize), Some(4), Some(16), Some(64), None] {
        let root = dir.join(format!("replica-{batch:?}"));
        let replica = LeafStore::open(&root).unwrap();
        replica.create_partitions("db", &[0], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
        replica.make_replica("db", 0, term).unwrap();
        let t = Instant::now();
        match batch {
            Some(batch) => {
                for chunk in log.chunks(batch) {
                    replica.apply_log("db", 0, chunk).unwrap();
                }
            }
            None => {
                for entry in &log {
                    replica.apply_replicated("db", 0, term, std::slice::from_ref(entry), true).unwrap();
                }
            }
        }
        // Reading the position applies whatever is still held.
        let position = replica.log_position("db", 0).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let n = log.len() as f64;
        let what = batch.map_or("held, one per request".to_string(), |b| format!("batches of {b}"));
        println!("{what:>22}: {:>8.0} entries/s, {:>6.1} µs per entry", n / secs, secs * 1e6 / n);
        assert_eq!(position.index, master.log_position("db", 0).unwrap().index);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
