// Copyright (c) Sean Lawlor
//
// This source code is licensed under both the MIT license found in the
// LICENSE-MIT file in the root directory of this source tree.

//! An actor's unbounded mailbox that holds no slots while it is empty.
//!
//! tokio's unbounded channel allocates its first block of 32 slots when it is
//! created and keeps one block for its whole life, so every actor carried two
//! such blocks (its messages and its supervision events) whether or not it
//! ever received anything: about 3 KiB per actor with an 80-byte
//! [crate::SupervisionEvent]. This mailbox is a linked queue
//! (`futures::channel::mpsc::unbounded`): a message costs one node while it
//! is queued, and an empty mailbox costs one node.
//!
//! The API is the subset of tokio's `UnboundedSender`/`UnboundedReceiver` that
//! the actor's ports use, with tokio's error types, so that the ports read
//! the same as before.

use futures::channel::mpsc;
use futures::StreamExt;

pub(crate) use tokio::sync::mpsc::error::{SendError, TryRecvError};

/// The sending half of a [mailbox].
pub(crate) struct MailboxSender<T>(mpsc::UnboundedSender<T>);

/// The receiving half of a [mailbox].
pub(crate) struct MailboxReceiver<T>(mpsc::UnboundedReceiver<T>);

/// A new, empty mailbox.
pub(crate) fn mailbox<T>() -> (MailboxSender<T>, MailboxReceiver<T>) {
    let (tx, rx) = mpsc::unbounded();
    (MailboxSender(tx), MailboxReceiver(rx))
}

impl<T> MailboxSender<T> {
    /// Queues `message`; fails, handing it back, once the receiver is closed or dropped.
    pub(crate) fn send(&self, message: T) -> Result<(), SendError<T>> {
        self.0
            .unbounded_send(message)
            .map_err(|e| SendError(e.into_inner()))
    }
}

impl<T> MailboxReceiver<T> {
    /// The next message, or `None` once every sender is gone (or the mailbox is closed)
    /// and nothing is left. Cancel-safe: a message is only taken when it is returned.
    ///
    /// Like tokio's own channels, a message taken consumes a unit of the task's cooperative
    /// budget, so an actor whose mailbox never runs dry and whose handlers never wait still
    /// yields its worker to other tasks (an actor's loop is a biased `select!` over its ports).
    pub(crate) async fn recv(&mut self) -> Option<T> {
        #[cfg(all(
            feature = "tokio_runtime",
            not(all(target_arch = "wasm32", target_os = "unknown"))
        ))]
        {
            tokio::task::coop::cooperative(self.0.next()).await
        }
        #[cfg(not(all(
            feature = "tokio_runtime",
            not(all(target_arch = "wasm32", target_os = "unknown"))
        )))]
        {
            self.0.next().await
        }
    }

    /// The next message if one is queued.
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map_err(|e| match e {
            mpsc::TryRecvError::Empty => TryRecvError::Empty,
            mpsc::TryRecvError::Closed => TryRecvError::Disconnected,
        })
    }

    /// Refuses further messages; those already queued can still be received.
    pub(crate) fn close(&mut self) {
        self.0.close();
    }
}

#[cfg(all(
    test,
    feature = "tokio_runtime",
    not(all(target_arch = "wasm32", target_os = "unknown"))
))]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use crate::{Actor, ActorProcessingErr, ActorRef};

    /// Counts its messages; its handler never waits.
    struct Busy(Arc<AtomicU64>);

    #[cfg_attr(feature = "async-trait", crate::async_trait)]
    impl Actor for Busy {
        type Msg = ();
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<Self::Msg>,
            _: (),
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<Self::Msg>,
            _: (),
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    /// On a runtime with one worker, an actor flooded with messages whose handler never
    /// waits lets another task run long before its mailbox is empty.
    #[tokio::test(flavor = "current_thread")]
    async fn a_flooded_actor_does_not_starve_another_task_on_its_worker() {
        const FLOOD: u64 = 100_000;
        let handled = Arc::new(AtomicU64::new(0));
        let (busy, handle) = Actor::spawn(None, Busy(handled.clone()), ())
            .await
            .expect("the actor starts");
        for _ in 0..FLOOD {
            busy.send_message(()).expect("the actor takes messages");
        }
        // Queued behind the actor's task on the only worker: how far had the flood got when
        // this task first ran?
        let seen = tokio::spawn({
            let handled = handled.clone();
            async move { handled.load(Ordering::Relaxed) }
        })
        .await
        .expect("the task runs");
        assert!(
            seen < FLOOD / 10,
            "the other task waited for {seen} of {FLOOD} messages"
        );
        busy.stop(None);
        handle.await.expect("the actor stops");
        assert!(handled.load(Ordering::Relaxed) <= FLOOD);
    }
}
