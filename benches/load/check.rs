//! Checking what arrived against what was sent: lost, duplicated, out-of-order and unexpected
//! notifications, and the latency of each delivery.
//!
//! Every notification the bench causes has a key (the title it was sent with, or for ticket
//! events `<ticket id>:<type>`) and the users expected to receive it. Each user's seqs must
//! also grow one by one from the `last_seq` of their greeting, in the order they arrive.

use std::collections::{HashMap, HashSet};

use crate::clients::Rec;

/// One expected notification.
struct Expected {
    sent_us: i64,
    users: Vec<i64>,
}

/// The ledger of one run.
pub struct Tracker {
    key_of: fn(&Rec) -> String,
    expected: HashMap<String, usize>,
    sends: Vec<Expected>,
    counts: HashMap<(usize, i64), u32>,
    watch: HashSet<i64>,
    floor: HashMap<i64, i64>,
    high: HashMap<i64, i64>,
    seen: HashMap<i64, HashSet<i64>>,
    orphans: Vec<Rec>,
    /// Latency of each first delivery, in ms.
    pub latencies_ms: Vec<f64>,
    /// When each of those deliveries was due (its call's send time, µs since the epoch), in
    /// the same order.
    due_us: Vec<i64>,
    /// Seqs that arrived after a larger one.
    pub out_of_order: u64,
    /// Seqs that arrived twice.
    pub seq_duplicates: u64,
    /// Deliveries with a key nobody sent, or to a user the key does not name.
    pub unexpected: u64,
    /// Distinct expected deliveries received.
    pub received: usize,
    /// The latest arrival, µs since the epoch.
    pub last_recv_us: i64,
}

/// The key of a notification sent with a title.
pub fn by_title(r: &Rec) -> String {
    r.title.clone()
}

/// The key of a ticket event.
pub fn by_ticket_event(r: &Rec) -> String {
    format!("{}:{}", r.ticket, r.kind)
}

impl Tracker {
    /// A ledger for the users in `start` (user → `last_seq` of the greeting); deliveries to
    /// anyone else are ignored.
    pub fn new(start: &HashMap<i64, i64>, key_of: fn(&Rec) -> String) -> Self {
        Self::continuing(start, start, key_of)
    }

    /// A ledger that goes on from another's `highs`; seqs at or below `floor` (each user's
    /// greeting) predate the run and are ignored, like the backlog replayed on connect.
    pub fn continuing(
        floor: &HashMap<i64, i64>,
        highs: &HashMap<i64, i64>,
        key_of: fn(&Rec) -> String,
    ) -> Self {
        let start = highs;
        Tracker {
            floor: floor.clone(),
            key_of,
            expected: HashMap::new(),
            sends: Vec::new(),
            counts: HashMap::new(),
            watch: start.keys().copied().collect(),
            high: start.clone(),
            seen: HashMap::new(),
            orphans: Vec::new(),
            latencies_ms: Vec::new(),
            due_us: Vec::new(),
            out_of_order: 0,
            seq_duplicates: 0,
            unexpected: 0,
            received: 0,
            last_recv_us: 0,
        }
    }

    /// Expects `key`, sent at `sent_us`, to reach every watched user in `users`.
    pub fn expect(&mut self, key: String, sent_us: i64, users: Vec<i64>) {
        let users = users
            .into_iter()
            .filter(|u| self.watch.contains(u))
            .collect();
        self.expected.insert(key, self.sends.len());
        self.sends.push(Expected { sent_us, users });
    }

    /// Moves every expectation's send time `by_us` later: a plan written with times from
    /// zero is dated once it is ready to run.
    pub fn shift(&mut self, by_us: i64) {
        for send in &mut self.sends {
            send.sent_us += by_us;
        }
    }

    /// Forgets an expectation (its send failed).
    pub fn cancel(&mut self, key: &str) {
        if let Some(&i) = self.expected.get(key) {
            self.sends[i].users.clear();
        }
    }

    /// How many deliveries are expected in all.
    pub fn expected_total(&self) -> usize {
        self.sends.iter().map(|s| s.users.len()).sum()
    }

    /// Takes in deliveries, in the order each user received them.
    pub fn observe(&mut self, records: Vec<Rec>) {
        for r in records {
            if !self.watch.contains(&r.user)
                || r.seq <= self.floor.get(&r.user).copied().unwrap_or(0)
            {
                continue;
            }
            let high = self.high.entry(r.user).or_insert(0);
            let seen = self.seen.entry(r.user).or_default();
            if !seen.insert(r.seq) {
                self.seq_duplicates += 1;
            } else if r.seq <= *high {
                self.out_of_order += 1;
            } else {
                *high = r.seq;
            }
            self.match_key(r);
        }
    }

    fn match_key(&mut self, r: Rec) {
        let key = (self.key_of)(&r);
        let Some(&i) = self.expected.get(&key) else {
            self.orphans.push(r);
            return;
        };
        let send = &self.sends[i];
        if !send.users.contains(&r.user) {
            self.unexpected += 1;
            return;
        }
        let count = self.counts.entry((i, r.user)).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.received += 1;
            self.latencies_ms
                .push((r.recv_us - send.sent_us) as f64 / 1000.0);
            self.due_us.push(send.sent_us);
            self.last_recv_us = self.last_recv_us.max(r.recv_us);
        }
    }

    /// Matches deliveries that arrived before their expectation was known; those still
    /// unknown are unexpected.
    pub fn settle(&mut self) {
        for r in std::mem::take(&mut self.orphans) {
            if self.expected.contains_key(&(self.key_of)(&r)) {
                self.match_key(r);
            } else {
                self.unexpected += 1;
            }
        }
    }

    /// Expected deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        (self.expected_total() - self.received) as u64
    }

    /// Extra copies of deliveries that arrived more than once.
    pub fn duplicated(&self) -> u64 {
        let by_key: u64 = self
            .counts
            .values()
            .map(|c| u64::from(c.saturating_sub(1)))
            .sum();
        by_key.max(self.seq_duplicates)
    }

    /// Each watched user's highest seq so far, to start the next ledger from.
    pub fn highs(&self) -> HashMap<i64, i64> {
        self.high.clone()
    }

    /// Clears the latencies, so that the next phase is measured on its own.
    pub fn take_latencies(&mut self) -> Vec<f64> {
        self.due_us.clear();
        std::mem::take(&mut self.latencies_ms)
    }

    /// The latencies by the second their calls were due in (from the first call's), each
    /// second's p99 and max in ms; clears them, as [`Tracker::take_latencies`] does. A stall
    /// that comes back every few seconds shows here, where a whole run's percentiles hide it.
    pub fn take_seconds(&mut self) -> (Vec<f64>, Vec<Second>) {
        let due = std::mem::take(&mut self.due_us);
        let latencies = std::mem::take(&mut self.latencies_ms);
        let first = due.iter().copied().min().unwrap_or(0);
        let mut by_second: Vec<Vec<f64>> = Vec::new();
        for (at, ms) in due.iter().zip(&latencies) {
            let second = ((at - first) / 1_000_000) as usize;
            if by_second.len() <= second {
                by_second.resize_with(second + 1, Vec::new);
            }
            by_second[second].push(*ms);
        }
        let seconds = by_second
            .iter()
            .enumerate()
            .map(|(second, ms)| Second {
                second,
                p99_ms: crate::report::percentile_of(ms, 0.99),
                max_ms: crate::report::percentile_of(ms, 1.0),
            })
            .collect();
        (latencies, seconds)
    }
}

/// One second of a run: the p99 and max latency of the deliveries due in it.
#[derive(Clone, Copy, Debug)]
pub struct Second {
    pub second: usize,
    pub p99_ms: f64,
    pub max_ms: f64,
}
