//! What each user's sockets were sent, recorded in batches.
//!
//! Every user actor reports the highest seq its sockets were written (`sent_seq`) on its
//! heartbeat and whenever it runs [`SENT_FLUSH_EVERY`] ahead of the database. Written one
//! transaction per user, the heartbeats of thousands of users would land on the database in
//! the same instant, every heartbeat, ahead of the commits of new notifications. The recorder
//! gathers the reports and writes them all in one transaction: heartbeat reports on its own
//! interval, urgent ones as soon as it can, and an actor that closes its sockets waits for its
//! report to be written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::domain::UserId;
use crate::ports::Store;

/// How far what was written to a user's sockets may run ahead of the `sent_seq` recorded in
/// the database. A client that neither acks nor sends `last_seq` is sent again, after a crash,
/// what was written but not recorded: with this, fewer than this many notifications plus one
/// socket queue.
pub const SENT_FLUSH_EVERY: i64 = 64;

/// How often the socket-write records of timelines are written: runs of live seqs grow for
/// this long (one row per user and interval, whatever the rate), and a closing actor's flush
/// writes them sooner.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(5);

/// The longest a closing actor waits for its report to be written.
pub const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The batching writer of `sent_seq`.
pub struct SentRecorder {
    pending: Mutex<Pending>,
    wake: Notify,
    /// The number of the last batch written (or given up on).
    written: watch::Sender<u64>,
}

impl std::fmt::Debug for SentRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentRecorder").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Pending {
    seqs: HashMap<UserId, i64>,
    /// Runs of seqs written to sockets, for timelines.
    pushes: Vec<crate::ports::Pushed>,
    /// The index in `pushes` of each user's last run.
    last_run: HashMap<UserId, usize>,
    /// The number of the last batch taken for writing.
    taken: u64,
    /// When the socket-write records were last taken for writing.
    pushes_taken: Option<tokio::time::Instant>,
    /// A closing actor asked for everything to be written now.
    flush_all: bool,
}

impl SentRecorder {
    /// Starts the recorder: reports are written at least every `interval`.
    pub fn start(store: Arc<dyn Store>, interval: Duration, node: Arc<str>) -> Arc<Self> {
        let recorder = Arc::new(Self {
            pending: Mutex::default(),
            wake: Notify::new(),
            written: watch::Sender::new(0),
        });
        tokio::spawn(Self::run(Arc::downgrade(&recorder), store, interval, node));
        recorder
    }

    /// Records `seq` for `user` with the next batch.
    pub fn note(&self, user: UserId, seq: i64) -> u64 {
        let mut pending = self.pending.lock().expect("sent recorder poisoned");
        let entry = pending.seqs.entry(user).or_insert(seq);
        *entry = (*entry).max(seq);
        pending.taken + 1
    }

    /// Records that `user`'s seqs `first..=last` were written to `sockets` sockets now.
    /// Consecutive live seqs written to as many sockets make one run (one row), so a user
    /// receiving a stream costs a row per [`PUSH_INTERVAL`], not per notification. A replay
    /// (`replay`: old seqs written at once on a reconnect) always starts a run of its own, so
    /// that a run's live seqs were each written as they were committed.
    pub fn pushed(&self, user: UserId, first: i64, last: i64, sockets: i64, replay: bool) {
        let now = chrono::Utc::now();
        let mut pending = self.pending.lock().expect("sent recorder poisoned");
        let pending = &mut *pending;
        if let Some(run) = pending
            .last_run
            .get(&user)
            .and_then(|i| pending.pushes.get_mut(*i))
            .filter(|run| !replay && run.last_seq + 1 == first && run.sockets == sockets)
        {
            run.last_seq = last;
            run.at = now;
            return;
        }
        pending.last_run.insert(user, pending.pushes.len());
        pending.pushes.push(crate::ports::Pushed {
            user,
            first_seq: first,
            last_seq: last,
            sockets,
            first_at: now,
            at: now,
        });
    }

    /// Records `seq` for `user` as soon as the recorder can, without waiting.
    pub fn note_soon(&self, user: UserId, seq: i64) {
        self.note(user, seq);
        self.wake.notify_one();
    }

    /// Records `seq` for `user` now and waits until it is written (or the write failed; it is
    /// then retried with the next batch), at most [`FLUSH_WAIT`]: a database that hangs never
    /// holds a closing actor.
    pub async fn flush(&self, user: UserId, seq: i64) {
        let batch = self.note(user, seq);
        self.pending
            .lock()
            .expect("sent recorder poisoned")
            .flush_all = true;
        let mut written = self.written.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(FLUSH_WAIT, written.wait_for(|w| *w >= batch)).await;
    }

    /// Writes batches until the recorder is dropped.
    async fn run(
        recorder: std::sync::Weak<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        node: Arc<str>,
    ) {
        while let Some(this) = recorder.upgrade() {
            this.write_next(&*store, interval, &node).await;
        }
    }

    async fn write_next(&self, store: &dyn Store, interval: Duration, node: &str) {
        {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
            let (batch, pushes, number) = {
                let mut pending = self.pending.lock().expect("sent recorder poisoned");
                pending.taken += 1;
                let due = pending
                    .pushes_taken
                    .is_none_or(|t| t.elapsed() >= PUSH_INTERVAL);
                let pushes = if due || std::mem::take(&mut pending.flush_all) {
                    pending.pushes_taken = Some(tokio::time::Instant::now());
                    pending.last_run.clear();
                    std::mem::take(&mut pending.pushes)
                } else {
                    Vec::new()
                };
                (std::mem::take(&mut pending.seqs), pushes, pending.taken)
            };
            if !pushes.is_empty() {
                // History only: a failed write is logged, not retried.
                if let Err(e) = store.record_pushes(node, &pushes).await {
                    tracing::warn!(error = %e, runs = pushes.len(), "cannot record socket writes for timelines");
                }
            }
            if !batch.is_empty() {
                let seqs: Vec<(UserId, i64)> = batch.into_iter().collect();
                if let Err(e) = store.record_sent(&seqs).await {
                    tracing::warn!(error = %e, users = seqs.len(), "cannot record sent seqs; retrying with the next batch");
                    let mut pending = self.pending.lock().expect("sent recorder poisoned");
                    for (user, seq) in seqs {
                        let entry = pending.seqs.entry(user).or_insert(seq);
                        *entry = (*entry).max(seq);
                    }
                }
            }
            self.written.send_replace(number);
        }
    }
}
