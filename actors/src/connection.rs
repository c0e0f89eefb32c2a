//! The port through which actors push to a socket.
//!
//! A socket session lives in the adapter. It hands its user actor a [`ConnHandle`]: the sending
//! end of the socket's bounded outbound queue plus a small [`ConnShared`] block that both sides
//! read. The queue is where back-pressure is applied: when it is full the socket is a slow
//! consumer and is kicked; nothing upstream ever waits on a socket. The queue is a linked one
//! bounded by counts in [`ConnShared`], so an idle socket holds no slots.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::mpsc;
use futures::StreamExt;
use tokio::sync::Notify;

pub use crate::notification::Update;

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
    /// The user may no longer see what the socket shows (removed from the project).
    Forbidden = 5,
    /// The user's account was deactivated: their tokens no longer count.
    Deactivated = 6,
}

impl Disconnect {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Disconnect::Shutdown),
            2 => Some(Disconnect::SlowConsumer),
            3 => Some(Disconnect::Idle),
            4 => Some(Disconnect::ActorRestart),
            5 => Some(Disconnect::Forbidden),
            6 => Some(Disconnect::Deactivated),
            _ => None,
        }
    }
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
    /// Send a replayed backlog (oldest first), then `replay_complete`. One queue slot, however
    /// long the backlog.
    Replay(Box<Replay>),
    /// Tell the client that its inbox changed elsewhere.
    Updated(Box<Update>),
    /// A project room's events (board or presence), one frame each, in one queue slot. Shared:
    /// a board update is one allocation however many sockets it goes to.
    Room(std::sync::Arc<[std::sync::Arc<crate::board::RoomFrame>]>),
}

/// A replayed backlog, queued as one message.
#[derive(Debug)]
pub struct Replay {
    /// The notifications, oldest first.
    pub notifications: Vec<crate::notification::Notification>,
    /// How many older ones the replay cap left out (`replay_truncated`).
    pub remaining: i64,
    /// The seq the client has seen everything up to once this is written.
    pub last_seq: i64,
}

/// State shared between a socket session and its user actor.
#[derive(Debug, Default)]
pub struct ConnShared {
    last_seen_ms: AtomicU64,
    kicked: AtomicU8,
    kick: Notify,
    sent_seq: AtomicI64,
    queued_bytes: AtomicUsize,
    queued_frames: AtomicUsize,
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
        let first = self
            .kicked
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first && reason == Disconnect::SlowConsumer {
            metrics::counter!("tickethub_slow_consumer_closes_total").increment(1);
        }
        self.kick.notify_one();
    }

    /// Why the session was kicked, if it was.
    pub fn kicked(&self) -> Option<Disconnect> {
        Disconnect::from_u8(self.kicked.load(Ordering::Acquire))
    }

    /// Records that the notification with `seq` was written to the socket.
    pub fn mark_sent(&self, seq: i64) {
        self.sent_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// The highest seq written to the socket.
    pub fn sent_seq(&self) -> i64 {
        self.sent_seq.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// Messages queued and not yet taken by the session.
    pub fn queued_frames(&self) -> usize {
        self.queued_frames.load(Ordering::Acquire)
    }

    /// Records that `bytes` of queued frames were written.
    pub fn written(&self, bytes: usize) {
        let _ = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(bytes))
            });
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
    /// The sending end of the socket's outbound queue.
    tx: mpsc::UnboundedSender<ConnectionMsg>,
    /// State shared with the session.
    pub shared: Arc<ConnShared>,
    /// The most messages that may wait in the queue.
    max_queued_frames: usize,
    /// The most bytes that may wait in the queue.
    max_queued_bytes: usize,
}

/// The session's end of a socket's outbound queue.
#[derive(Debug)]
pub struct Outbound {
    rx: mpsc::UnboundedReceiver<ConnectionMsg>,
    shared: Arc<ConnShared>,
}

impl Outbound {
    /// The next queued message; `None` once every [`ConnHandle`] of the socket is gone.
    /// Cancel-safe: a message is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<ConnectionMsg> {
        let msg = self.rx.next().await;
        self.took(msg)
    }

    /// The next queued message, if one is waiting.
    pub fn try_recv(&mut self) -> Option<ConnectionMsg> {
        let msg = self.rx.try_recv().ok();
        self.took(msg)
    }

    fn took(&self, msg: Option<ConnectionMsg>) -> Option<ConnectionMsg> {
        if msg.is_some() {
            self.shared.queued_frames.fetch_sub(1, Ordering::AcqRel);
        }
        msg
    }
}

/// Why a push to a socket did not enqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue is full: the socket is a slow consumer and has been kicked.
    Full,
    /// The session has ended.
    Closed,
}

impl ConnectionMsg {
    /// How many frames this message is written as.
    pub fn frames(&self) -> usize {
        match self {
            // `replay_truncated`, the backlog, `replay_complete`.
            ConnectionMsg::Replay(r) => r.notifications.len() + 2,
            ConnectionMsg::Room(frames) => frames.len(),
            _ => 1,
        }
    }

    /// A cheap estimate of the bytes this message becomes on the wire.
    pub fn estimated_bytes(&self) -> usize {
        fn one(n: &crate::notification::Notification) -> usize {
            320 + n.title.len()
                + n.message.len()
                + n.data.len()
                + n.ticket.as_ref().map_or(0, |t| {
                    t.title.len() + t.project_name.len() + t.created_by.len()
                })
        }
        match self {
            ConnectionMsg::Notification(n) => one(n),
            ConnectionMsg::Replay(r) => 64 + r.notifications.iter().map(one).sum::<usize>(),
            ConnectionMsg::Updated(_) => 64,
            ConnectionMsg::Room(frames) => frames.iter().map(|f| f.estimated_bytes()).sum(),
            ConnectionMsg::Ping | ConnectionMsg::Close(_) => 8,
        }
    }
}

impl ConnHandle {
    /// A new socket's queue, which holds at most `max_frames` messages and `max_bytes` bytes
    /// (by [`ConnectionMsg::estimated_bytes`]): the handle the actors push to, and the end the
    /// session reads.
    pub fn new(id: ConnId, max_frames: usize, max_bytes: usize) -> (Self, Outbound) {
        let (tx, rx) = mpsc::unbounded();
        let shared = ConnShared::new();
        let outbound = Outbound {
            rx,
            shared: shared.clone(),
        };
        let handle = Self {
            id,
            tx,
            shared,
            max_queued_frames: max_frames,
            max_queued_bytes: max_bytes,
        };
        (handle, outbound)
    }

    /// Enqueues a message without waiting. A full queue (in frames or in bytes) kicks the
    /// socket as a slow consumer.
    pub fn push(&self, msg: ConnectionMsg) -> Result<(), PushError> {
        let bytes = msg.estimated_bytes();
        let queued = self.shared.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        let frames = self.shared.queued_frames.fetch_add(1, Ordering::AcqRel);
        let undo = || {
            self.shared.written(bytes);
            self.shared.queued_frames.fetch_sub(1, Ordering::AcqRel);
        };
        // A single message larger than the bound (a long replay) may still go to an empty queue.
        if frames >= self.max_queued_frames
            || (queued > 0 && queued + bytes > self.max_queued_bytes)
        {
            undo();
            self.shared.kick(Disconnect::SlowConsumer);
            return Err(PushError::Full);
        }
        self.tx.unbounded_send(msg).map_err(|_| {
            undo();
            PushError::Closed
        })
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
        let (conn, mut rx) = ConnHandle::new(ConnId(1), 1, 1 << 20);
        assert_eq!(conn.push(ConnectionMsg::Ping), Ok(()));
        assert_eq!(conn.shared.queued_frames(), 1);
        assert_eq!(conn.push(ConnectionMsg::Ping), Err(PushError::Full));
        assert_eq!(conn.shared.queued_frames(), 1);
        assert_eq!(conn.shared.until_kicked().await, Disconnect::SlowConsumer);
        // Taking the message frees its place.
        assert!(matches!(rx.recv().await, Some(ConnectionMsg::Ping)));
        assert_eq!(conn.shared.queued_frames(), 0);
        assert_eq!(conn.push(ConnectionMsg::Ping), Ok(()));
    }

    #[tokio::test]
    async fn too_many_queued_bytes_kick_the_socket_too() {
        let (conn, _rx) = ConnHandle::new(ConnId(1), 100, 20);
        assert_eq!(conn.push(ConnectionMsg::Ping), Ok(()));
        assert_eq!(conn.push(ConnectionMsg::Ping), Ok(()));
        assert_eq!(conn.shared.queued_bytes(), 16);
        assert_eq!(conn.push(ConnectionMsg::Ping), Err(PushError::Full));
        assert_eq!(conn.shared.kicked(), Some(Disconnect::SlowConsumer));
        conn.shared.written(8);
        assert_eq!(conn.shared.queued_bytes(), 8);
    }

    #[test]
    fn a_queued_message_stays_small() {
        // Each queued message is a node of this size (a live notification is one per socket
        // it goes to): the large, rare messages are boxed.
        assert!(std::mem::size_of::<ConnectionMsg>() <= 24);
    }

    #[tokio::test]
    async fn a_push_to_an_ended_session_is_refused_and_leaves_no_count() {
        let (conn, rx) = ConnHandle::new(ConnId(1), 4, 1 << 20);
        drop(rx);
        assert_eq!(conn.push(ConnectionMsg::Ping), Err(PushError::Closed));
        assert_eq!(conn.shared.queued_frames(), 0);
        assert_eq!(conn.shared.queued_bytes(), 0);
        assert_eq!(conn.shared.kicked(), None);
    }

    #[tokio::test]
    async fn messages_come_out_in_order_and_the_end_is_seen() {
        let (conn, mut rx) = ConnHandle::new(ConnId(1), 4, 1 << 20);
        conn.push(ConnectionMsg::Ping).unwrap();
        conn.push(ConnectionMsg::Close(Disconnect::Idle)).unwrap();
        assert!(matches!(rx.try_recv(), Some(ConnectionMsg::Ping)));
        assert!(matches!(
            rx.recv().await,
            Some(ConnectionMsg::Close(Disconnect::Idle))
        ));
        assert!(rx.try_recv().is_none());
        drop(conn);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn the_first_kick_reason_wins() {
        let shared = ConnShared::new();
        shared.kick(Disconnect::Idle);
        shared.kick(Disconnect::Shutdown);
        assert_eq!(shared.kicked(), Some(Disconnect::Idle));
    }
}
