//! The client statements whose requests run on this leaf, so that `Cancel` can stop them: a flag per statement id,
//! set by `Cancel` and read by SQLite's progress handler on the thread running the statement
//! (`canopy_storage::engine::with_cancel`). A `Cancel` may overtake its statement's `Execute` on another
//! connection, so recently cancelled ids are remembered and a late `Execute` of one starts cancelled.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Cancelled statement ids remembered for late requests.
const CANCELLED_REMEMBERED: usize = 1024;

#[derive(Default)]
pub struct Running {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Running statements: their flag and how many requests of each run now.
    flags: HashMap<u64, (Arc<AtomicBool>, usize)>,
    cancelled: HashSet<u64>,
    order: VecDeque<u64>,
}

/// One request of a statement running; dropping it ends the request.
pub struct Run<'a> {
    running: &'a Running,
    id: u64,
    pub flag: Arc<AtomicBool>,
}

impl Running {
    /// Registers a request of statement `id` (None for 0: not cancellable). Its flag is already set when the
    /// statement was cancelled before the request arrived.
    pub fn start(&self, id: u64) -> Option<Run<'_>> {
        if id == 0 {
            return None;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let cancelled = inner.cancelled.contains(&id);
        let entry = inner.flags.entry(id).or_insert_with(|| (Arc::new(AtomicBool::new(cancelled)), 0));
        entry.1 += 1;
        Some(Run { running: self, id, flag: entry.0.clone() })
    }

    /// Cancels statement `id`: its running requests stop at SQLite's next progress check, later ones start
    /// cancelled.
    pub fn cancel(&self, id: u64) {
        if id == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((flag, _)) = inner.flags.get(&id) {
            flag.store(true, Ordering::Relaxed);
        }
        if inner.cancelled.insert(id) {
            inner.order.push_back(id);
            if inner.order.len() > CANCELLED_REMEMBERED
                && let Some(oldest) = inner.order.pop_front()
            {
                inner.cancelled.remove(&oldest);
            }
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        let mut inner = self.running.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = inner.flags.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                inner.flags.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_running_and_later_requests_of_its_statement_only() {
        let running = Running::default();
        assert!(running.start(0).is_none(), "statement 0 is not cancellable");
        let first = running.start(7).unwrap();
        let other = running.start(8).unwrap();
        running.cancel(7);
        assert!(first.flag.load(Ordering::Relaxed));
        assert!(!other.flag.load(Ordering::Relaxed));
        drop(first);
        assert!(running.start(7).unwrap().flag.load(Ordering::Relaxed), "a late request starts cancelled");
        running.cancel(9);
        assert!(running.start(9).unwrap().flag.load(Ordering::Relaxed), "a cancel may overtake its request");
        for id in 100..100 + CANCELLED_REMEMBERED as u64 {
            running.cancel(id);
        }
        assert!(!running.start(9).unwrap().flag.load(Ordering::Relaxed), "old cancels are forgotten");
        drop(other);
        assert!(running.inner.lock().unwrap().flags.is_empty(), "finished requests leave nothing behind");
    }
}
