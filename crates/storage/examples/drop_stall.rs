//! Measures whether dropping a partition stalls statements on the leaf's other partitions: one thread reads
//! partition 0 in a loop while `LeafStore::drop_partition` drops a large partition 1, and the slowest read is
//! printed beside the drop's time. (It did stall, by the whole drop, while the drop closed the connection and
//! unlinked the files under the store's lock.)
//! `cargo run --release -p canopy-storage --example drop_stall -- <MB>`
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use canopy_storage::LeafStore;
use canopy_storage::engine::Durability;
use canopy_types::DatabaseId;

fn main() {
    let mb: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(134);
    let dir = std::env::temp_dir().join(format!("drop-stall-{}", std::process::id()));
    let store = Arc::new(LeafStore::open(&dir).unwrap());
    let schema = vec!["CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT NOT NULL)".to_string()];
    store.create_partitions("db", &[0, 1], &schema, &[], Durability::Sync, DatabaseId(1)).unwrap();
    store.execute_on_partition("db", 0, "INSERT INTO t VALUES (1, 'x')").unwrap();
    // Partition 1: about `mb` MB of rows, 1000 per statement.
    let rows = mb * 1000;
    let mut id = 0;
    while id < rows {
        let values: Vec<String> = (id..id + 1000).map(|i| format!("({i}, printf('%01000d', {i}))")).collect();
        store.execute_on_partition("db", 1, &format!("INSERT INTO t VALUES {}", values.join(","))).unwrap();
        id += 1000;
    }
    let size = std::fs::metadata(dir.join("partitions/db_1.sqlite")).map(|m| m.len()).unwrap_or(0);
    println!("partition 1: {:.1} MB on disk", size as f64 / 1e6);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut worst = (Duration::ZERO, Duration::ZERO);
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                store.execute_on_partition("db", 0, "SELECT pad FROM t WHERE id = 1").unwrap();
                if t.elapsed() > worst.1 {
                    worst = (t - t0, t.elapsed());
                }
            }
            worst
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    store.drop_partition("db", 1).unwrap();
    let drop_ms = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (at, worst) = reader.join().unwrap();
    println!(
        "drop_partition(db, 1) took {:.1} ms; slowest read of partition 0: {:.1} ms, sent {:.0} ms after the start (drop began at 500 ms)",
        drop_ms.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        at.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
