//! What each user's sockets were sent, recorded in batches.
//!
//! Every user actor reports the highest seq its sockets were written (`sent_seq`) on its
//! heartbeat and whenever it runs [`crate::user::SENT_FLUSH_EVERY`] ahead of the database. Written one
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

/// The longest a closing actor waits for its report to be written.
pub const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The batching writer of `sent_seq`.
pub struct SentRecorder {
    pending: Mutex<Pending>,
    wake: Notify,
    /// The number of the last batch written (or given up on).
    written: watch::Sender<u64>,
}

#[derive(Default)]
struct Pending {
    seqs: HashMap<UserId, i64>,
    /// The number of the last batch taken for writing.
    taken: u64,
}

impl SentRecorder {
    /// Starts the recorder: reports are written at least every `interval`.
    pub fn start(store: Arc<dyn Store>, interval: Duration) -> Arc<Self> {
        let recorder = Arc::new(Self {
            pending: Mutex::default(),
            wake: Notify::new(),
            written: watch::Sender::new(0),
        });
        tokio::spawn(Self::run(Arc::downgrade(&recorder), store, interval));
        recorder
    }

    /// Records `seq` for `user` with the next batch.
    pub fn note(&self, user: UserId, seq: i64) -> u64 {
        let mut pending = self.pending.lock().expect("sent recorder poisoned");
        let entry = pending.seqs.entry(user).or_insert(seq);
        *entry = (*entry).max(seq);
        pending.taken + 1
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
        let mut written = self.written.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(FLUSH_WAIT, written.wait_for(|w| *w >= batch)).await;
    }

    /// Writes batches until the recorder is dropped.
    async fn run(recorder: std::sync::Weak<Self>, store: Arc<dyn Store>, interval: Duration) {
        while let Some(this) = recorder.upgrade() {
            this.write_next(&*store, interval).await;
        }
    }

    async fn write_next(&self, store: &dyn Store, interval: Duration) {
        {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
            let (batch, number) = {
                let mut pending = self.pending.lock().expect("sent recorder poisoned");
                pending.taken += 1;
                (std::mem::take(&mut pending.seqs), pending.taken)
            };
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
