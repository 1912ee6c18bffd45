//! The writers and their ledger. Each writer is a task with its own MySQL connection to the master aggregator; it
//! inserts one new id per statement (ids come from one counter, so each id is attempted exactly once, never retried)
//! and records what the server said: acknowledged (OK), or "maybe" (an error or no answer: the write may or may not
//! have happened, so the checks allow either). A statement that takes longer than the statement limit counts as a
//! stall: a hang the checks report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// The table the writers fill.
pub const TABLE: &str = "w";

/// What the ledger knows about one attempted id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent, no answer yet.
    InFlight,
    /// The server said OK: the row must be there, exactly once.
    Acked,
    /// An error or no answer: the row may be there (once) or not.
    Maybe,
}

/// One attempted id: its outcome, who sent it, and when (milliseconds since the ledger was made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub outcome: Outcome,
    pub writer: u32,
    pub sent_ms: u64,
    pub answered_ms: Option<u64>,
}

/// Every attempted id (ids are `1..=attempted`) and its outcome, plus figures about the errors.
#[derive(Default)]
pub struct Ledger {
    entries: Mutex<Vec<Entry>>,
    /// Error kinds (`1777`, `io`, `timeout`...) with their count and first message.
    errors: Mutex<BTreeMap<String, (u64, String)>>,
    acked: AtomicU64,
    maybe: AtomicU64,
    stalls: Mutex<Vec<String>>,
    /// Milliseconds since `epoch` of the last acknowledgement, and the longest gap between two.
    last_ack_ms: AtomicU64,
    ack_gap_ms_max: AtomicU64,
    epoch: Mutex<Option<Instant>>,
}

impl Ledger {
    pub fn new() -> Ledger {
        let ledger = Ledger::default();
        *ledger.epoch.lock().expect("fresh lock") = Some(Instant::now());
        ledger
    }

    fn now_ms(&self) -> u64 {
        self.epoch.lock().unwrap_or_else(|p| p.into_inner()).map_or(0, |e| e.elapsed().as_millis() as u64)
    }

    /// A new id for `writer`, recorded as attempted before it is sent.
    pub fn attempt(&self, writer: u32) -> u64 {
        let sent_ms = self.now_ms();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.push(Entry { outcome: Outcome::InFlight, writer, sent_ms, answered_ms: None });
        entries.len() as u64
    }

    pub fn ack(&self, id: u64) {
        self.set(id, Outcome::Acked);
        self.acked.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let last = self.last_ack_ms.swap(now, Ordering::Relaxed);
        self.ack_gap_ms_max.fetch_max(now.saturating_sub(last), Ordering::Relaxed);
    }

    /// `id` failed with an error of `kind` (its outcome is unknown).
    pub fn maybe(&self, id: u64, kind: &str, message: &str) {
        self.set(id, Outcome::Maybe);
        self.maybe.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let entry = errors.entry(kind.to_string()).or_insert_with(|| (0, message.to_string()));
        entry.0 += 1;
    }

    pub fn stall(&self, what: String) {
        self.stalls.lock().unwrap_or_else(|p| p.into_inner()).push(what);
    }

    fn set(&self, id: u64, outcome: Outcome) {
        let now = self.now_ms();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = &mut entries[(id - 1) as usize];
        entry.outcome = outcome;
        entry.answered_ms = Some(now);
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    pub fn maybe_count(&self) -> u64 {
        self.maybe.load(Ordering::Relaxed)
    }

    /// The outcome of every attempted id, `outcomes()[id - 1]`.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|e| e.outcome).collect()
    }

    /// What the ledger knows about `id`.
    pub fn entry(&self, id: u64) -> Option<Entry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        id.checked_sub(1).and_then(|i| entries.get(i as usize)).copied()
    }

    pub fn attempted(&self) -> u64 {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }

    /// When the ledger was made: the run's time zero.
    pub fn epoch(&self) -> Instant {
        self.epoch.lock().unwrap_or_else(|p| p.into_inner()).expect("set by Ledger::new")
    }

    pub fn errors(&self) -> BTreeMap<String, (u64, String)> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn stalls(&self) -> Vec<String> {
        self.stalls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The longest time between two acknowledgements (from the start: the first one counts too).
    pub fn ack_gap_max(&self) -> Duration {
        Duration::from_millis(self.ack_gap_ms_max.load(Ordering::Relaxed))
    }
}

/// The kind of an error, for the figures: the MySQL error code, or what went wrong on the client side.
fn kind(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => s.code.to_string(),
        mysql_async::Error::Io(_) => "io".into(),
        mysql_async::Error::Driver(_) => "driver".into(),
        _ => "other".into(),
    }
}

/// Whether the connection can go on after `e` (the server answered with an error packet) or must be replaced.
fn connection_survives(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(_))
}

/// How one writer runs.
#[derive(Debug, Clone)]
pub struct Writer {
    pub opts: mysql_async::Opts,
    pub db: String,
    pub number: u32,
    /// The longest a statement may take; past it, it counts as a stall and the connection is replaced.
    pub statement_limit: Duration,
    /// A pause after each statement (zero: as fast as the cluster answers).
    pub pause: Duration,
}

/// Inserts until `stop` is set. Returns the number of statements it sent.
pub async fn write(writer: Writer, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) -> u64 {
    let sql = format!("INSERT INTO {}.{TABLE} (id, writer) VALUES (?, ?)", writer.db);
    let mut conn: Option<mysql_async::Conn> = None;
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = conn.as_mut() else {
            match crate::cluster::connect(writer.opts.clone()).await {
                Ok(c) => conn = Some(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            continue;
        };
        let id = ledger.attempt(writer.number);
        sent += 1;
        let started = Instant::now();
        match tokio::time::timeout(writer.statement_limit, c.exec_drop(&sql, (id, writer.number))).await {
            Ok(Ok(())) => ledger.ack(id),
            Ok(Err(e)) => {
                ledger.maybe(id, &kind(&e), &e.to_string());
                if !connection_survives(&e) {
                    conn = None;
                }
                // Do not spin on an error the cluster answers at once (no master yet).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                ledger.maybe(id, "timeout", "no answer within the statement limit");
                ledger.stall(format!(
                    "writer {}: INSERT of id {id} had no answer after {} ms",
                    writer.number,
                    started.elapsed().as_millis()
                ));
                conn = None;
            }
        }
        if !writer.pause.is_zero() {
            tokio::time::sleep(writer.pause).await;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_numbers_attempts_from_one_and_keeps_outcomes() {
        let ledger = Ledger::new();
        let (a, b, c) = (ledger.attempt(0), ledger.attempt(1), ledger.attempt(0));
        assert_eq!((a, b, c), (1, 2, 3));
        ledger.ack(a);
        ledger.maybe(c, "1777", "no master");
        ledger.maybe(b, "1777", "another message");
        assert_eq!(ledger.outcomes(), [Outcome::Acked, Outcome::Maybe, Outcome::Maybe]);
        assert_eq!((ledger.acked(), ledger.maybe_count()), (1, 2));
        assert_eq!(ledger.errors()["1777"], (2, "no master".to_string()), "counted, first message kept");
        assert_eq!(ledger.entry(2).map(|e| e.writer), Some(1));
        assert!(ledger.entry(1).is_some_and(|e| e.answered_ms.is_some()));
        assert_eq!(ledger.entry(4), None);
    }
}
