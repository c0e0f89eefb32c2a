//! Acknowledgements, written in batches off the user actors.
//!
//! An `ack` moves the user's `acked_seq`, records when it moved (for timelines) and cancels the
//! escalations it satisfies: one write transaction. Done inside the user actor, every ack held
//! that user's live pushes behind a database write. The user actors hand their acks to this
//! recorder instead and go on; it writes every ack waiting, from any number of users, in one
//! transaction (the group commit of acks), then answers each one. A user's acks in one batch
//! are folded into the highest.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::domain::UserId;
use crate::ports::Store;

/// The most acks written in one transaction.
const BATCH: usize = 1_000;

/// Hears the acknowledged seq once it is durable, or why it is not.
pub type Reply = Box<dyn FnOnce(Result<i64, String>) + Send>;

/// The batching writer of acks.
#[derive(Clone)]
pub struct AckRecorder {
    queue: mpsc::UnboundedSender<(UserId, i64, Reply)>,
}

impl std::fmt::Debug for AckRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckRecorder").finish_non_exhaustive()
    }
}

impl AckRecorder {
    /// Starts the recorder's task, which ends once every handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(Self::run(store, rx));
        Self { queue }
    }

    /// Records the ack with the next batch; `reply` hears the acknowledged seq once it is
    /// durable.
    pub fn ack(&self, user: UserId, seq: i64, reply: Reply) {
        if let Err(mpsc::error::SendError((_, _, reply))) = self.queue.send((user, seq, reply)) {
            reply(Err("the hub is shutting down".into()));
        }
    }

    async fn run(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<(UserId, i64, Reply)>) {
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let mut highest: HashMap<UserId, i64> = HashMap::with_capacity(batch.len());
            for (user, seq, _) in &batch {
                let entry = highest.entry(*user).or_insert(*seq);
                *entry = (*entry).max(*seq);
            }
            let acks: Vec<(UserId, i64)> = highest.into_iter().collect();
            metrics::histogram!("tickethub_ack_batch_size").record(acks.len() as f64);
            match store.ack_many(&acks).await {
                Ok(acked) => {
                    let acked: HashMap<UserId, i64> = acked.into_iter().collect();
                    for (user, _, reply) in batch.drain(..) {
                        reply(match acked.get(&user) {
                            Some(seq) => Ok(*seq),
                            None => Err(format!("user {user} not found")),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, acks = acks.len(), "cannot record acks");
                    let e = e.to_string();
                    for (_, _, reply) in batch.drain(..) {
                        reply(Err(e.clone()));
                    }
                }
            }
        }
    }
}
