//! The port through which actors push to a socket.
//!
//! A socket session lives in the adapter. It hands its user actor a [`ConnHandle`]: the sending
//! end of the socket's bounded outbound queue plus a small [`ConnShared`] block that both sides
//! read. The queue is where back-pressure is applied: when it is full the socket is a slow
//! consumer and is kicked; nothing upstream ever waits on a socket.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify};

/// A hub-unique connection id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Why the hub ends a connection. The adapter maps each reason to a close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Disconnect {
    /// The hub is shutting down; the client should reconnect and replay.
    Shutdown = 1,
    /// The socket did not keep up with its outbound queue.
    SlowConsumer = 2,
    /// Nothing was heard from the client within the idle timeout.
    Idle = 3,
    /// The user's actor failed and was removed; the client should reconnect.
    ActorRestart = 4,
}

impl Disconnect {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Disconnect::Shutdown),
            2 => Some(Disconnect::SlowConsumer),
            3 => Some(Disconnect::Idle),
            4 => Some(Disconnect::ActorRestart),
            _ => None,
        }
    }
}

/// A change another socket (or the REST API) made to the user's inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// A notification was marked read or unread.
    Read {
        /// The notification.
        id: i64,
        /// Its new state.
        is_read: bool,
    },
    /// A notification was deleted.
    Deleted {
        /// The notification.
        id: i64,
    },
    /// Every notification was deleted.
    AllDeleted {
        /// How many.
        count: i64,
    },
}

/// What an actor asks a socket session to do.
#[derive(Debug)]
pub enum ConnectionMsg {
    /// Send a protocol-level ping.
    Ping,
    /// Close the socket for this reason.
    Close(Disconnect),
    /// Send a live notification.
    Notification(std::sync::Arc<crate::notification::Notification>),
    /// Tell the client that its inbox changed elsewhere.
    Updated(Update),
}

/// State shared between a socket session and its user actor.
#[derive(Debug, Default)]
pub struct ConnShared {
    last_seen_ms: AtomicU64,
    kicked: AtomicU8,
    kick: Notify,
}

impl ConnShared {
    /// A new block, seen now.
    pub fn new() -> Arc<Self> {
        let shared = Arc::new(Self::default());
        shared.touch();
        shared
    }

    /// Records that the client was heard from just now.
    pub fn touch(&self) {
        self.last_seen_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// When the client was last heard from, in milliseconds since the Unix epoch.
    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    /// Asks the session to close at once, without going through its (possibly full) queue.
    pub fn kick(&self, reason: Disconnect) {
        // The first reason wins; later kicks only wake the session again.
        let _ = self
            .kicked
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.kick.notify_one();
    }

    /// Why the session was kicked, if it was.
    pub fn kicked(&self) -> Option<Disconnect> {
        Disconnect::from_u8(self.kicked.load(Ordering::Acquire))
    }

    /// Resolves once [`ConnShared::kick`] has been called.
    pub async fn until_kicked(&self) -> Disconnect {
        loop {
            if let Some(reason) = self.kicked() {
                return reason;
            }
            self.kick.notified().await;
        }
    }
}

/// What the user actor holds for one socket.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    /// The connection's id.
    pub id: ConnId,
    /// The sending end of the socket's bounded outbound queue.
    pub tx: mpsc::Sender<ConnectionMsg>,
    /// State shared with the session.
    pub shared: Arc<ConnShared>,
}

/// Why a push to a socket did not enqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue is full: the socket is a slow consumer and has been kicked.
    Full,
    /// The session has ended.
    Closed,
}

impl ConnHandle {
    /// Enqueues a message without waiting. A full queue kicks the socket as a slow consumer.
    pub fn push(&self, msg: ConnectionMsg) -> Result<(), PushError> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.kick(Disconnect::SlowConsumer);
                Err(PushError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PushError::Closed),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_kicks_the_socket_as_a_slow_consumer() {
        let (tx, _rx) = mpsc::channel(1);
        let conn = ConnHandle {
            id: ConnId(1),
            tx,
            shared: ConnShared::new(),
        };
        assert_eq!(conn.push(ConnectionMsg::Ping), Ok(()));
        assert_eq!(conn.push(ConnectionMsg::Ping), Err(PushError::Full));
        assert_eq!(conn.shared.until_kicked().await, Disconnect::SlowConsumer);
    }

    #[tokio::test]
    async fn the_first_kick_reason_wins() {
        let shared = ConnShared::new();
        shared.kick(Disconnect::Idle);
        shared.kick(Disconnect::Shutdown);
        assert_eq!(shared.kicked(), Some(Disconnect::Idle));
    }
}
