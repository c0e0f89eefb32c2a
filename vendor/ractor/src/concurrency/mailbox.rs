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
    pub(crate) async fn recv(&mut self) -> Option<T> {
        self.0.next().await
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
