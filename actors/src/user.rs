//! The user actor: one per connected user, owning all of that user's sockets.
//!
//! Several tabs of one user are one actor. The actor replays each new socket's backlog, pushes
//! the user's live notifications to every socket in seq order, applies the user's changes to
//! their inbox (so that every other socket hears of them), checks each socket's heartbeat when
//! its directory ticks, and stops itself once its last socket is gone.
//!
//! # Order, no gaps, no duplicates
//!
//! Seqs are allocated per user under a row lock, so a seq is committed only after every smaller
//! one. Live notifications can still reach the actor out of order (two ticket actors fan out
//! concurrently), so the actor keeps `delivered`, the highest seq it pushed live, and holds back
//! any notification past `delivered + 1` until the missing ones arrive; if they do not arrive
//! within `gap_wait` (committed by another process, say), it reads them from the database.
//! Each socket remembers the highest seq pushed to it (`sent`); a live notification at or below
//! that is skipped, which is what keeps a replay and the live stream from overlapping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::connection::{now_ms, ConnHandle, ConnId, ConnectionMsg, Disconnect, Replay, Update};
use crate::directory::Keyed;
use crate::domain::UserId;
use crate::notification::{InboxChange, Notification, UPDATE_IDS};
use crate::ports::{NotificationFilter, Store, StoreError};

/// The user actor. Every user's actor holds the same settings: cloning it for a new user is
/// one reference count, and the actor's task carries a pointer, not a copy of each handle.
#[derive(Clone)]
pub struct UserActor(Arc<UserSettings>);

impl UserActor {
    /// Tells every socket of the user these inbox changes. A change may be about a
    /// notification committed on another node that has not reached this actor yet: what was
    /// committed is pushed first, so that a socket never hears of a change before the
    /// notification it changes.
    ///
    /// A change of a notification is told once: one that is the state this actor last told of
    /// that notification (heard live, then again in a catch-up) is left out.
    async fn changed(&self, state: &mut UserState, updates: Vec<Update>) {
        let updates: Vec<Update> = updates
            .into_iter()
            .filter(|u| state.told.is_news(u))
            .collect();
        if updates.is_empty() {
            return;
        }
        let caught_up = match self.store.notification_cursor(state.user_id).await {
            Ok(cursor) if cursor.last_seq > state.delivered => {
                self.fill(state, cursor.last_seq + 1).await
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = caught_up {
            tracing::warn!(user_id = state.user_id.0, error = %e, "cannot catch up before an inbox change");
        }
        tracing::debug!(user_id = state.user_id.0, sockets = state.conns.len(), changes = ?updates, "telling the sockets inbox changes");
        for update in updates {
            state.told.remember(&update);
            state.push_all(None, || ConnectionMsg::Updated(Box::new(update.clone())));
        }
    }

    /// The actor of every user, with these settings.
    pub fn new(settings: UserSettings) -> Self {
        Self(Arc::new(settings))
    }
}

impl std::ops::Deref for UserActor {
    type Target = UserSettings;

    fn deref(&self) -> &UserSettings {
        &self.0
    }
}

/// What every user actor is started with.
pub struct UserSettings {
    /// A socket silent for longer than this is closed.
    pub idle_timeout: Duration,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Batches the user's `sent_seq` writes.
    pub sent: Arc<crate::sent::SentRecorder>,
    /// Writes the user's acks in batches, off this actor.
    pub acks: crate::acks::AckRecorder,
    /// Fan-out to other hub processes, if there are any.
    pub bus: Option<Arc<dyn crate::ports::Bus>>,
    /// The most notifications one replay sends; older ones are left to REST.
    pub replay_cap: i64,
    /// How long an out-of-order notification waits for the missing ones before they are read
    /// from the database.
    pub gap_wait: Duration,
    /// Whether the user may have news since a handshake read their cursor.
    pub notices: Arc<crate::notices::Notices>,
}

/// The user's cursor as a socket's handshake read it, with the news counters as they stood
/// before the read.
#[derive(Debug, Clone, Copy)]
pub struct CursorHint {
    /// The cursor read.
    pub cursor: crate::ports::NotificationCursor,
    /// Taken before the read.
    pub stamp: crate::notices::Stamp,
}

/// Where a new socket's replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// After this seq (`?last_seq=S`).
    After(i64),
    /// After what the user's clients acknowledged, or, if they never acknowledged anything,
    /// after what was written to any of the user's sockets.
    Unacknowledged,
}

#[derive(Debug)]
struct Conn {
    handle: ConnHandle,
    /// The highest seq pushed to this socket.
    sent: i64,
}

/// The live state of one user actor.
#[derive(Debug)]
pub struct UserState {
    user_id: UserId,
    conns: Vec<Conn>,
    /// The highest seq pushed live, in order.
    delivered: i64,
    /// Live notifications that arrived ahead of a missing one.
    pending: BTreeMap<i64, Arc<Notification>>,
    gap_check_scheduled: bool,
    /// The `sent_seq` last written to the database.
    flushed_sent: i64,
    /// Records what is written to the sockets, for timelines.
    sent: Arc<crate::sent::SentRecorder>,
    /// Whether `delivered` and `flushed_sent` were read from the database yet. The actor reads
    /// them with its first message, not as it starts, so that its directory, which starts the
    /// actors of every connecting user one after the other, never waits on the database.
    loaded: bool,
    /// The last change told of each notification lately, and since when a socket is here.
    told: told::Told,
}

/// What the user actor answers when a socket attaches.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The actor that now owns the socket; the session sends it its commands.
    pub actor: ActorRef<UserMsg>,
    /// How many sockets the user has now, this one included.
    pub connections: usize,
    /// The user's newest seq when the socket was attached: the greeting's `last_seq`.
    pub last_seq: i64,
}

/// A point-in-time view of a user actor, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSnapshot {
    /// Whose actor this is.
    pub user_id: UserId,
    /// The ids of the sockets it owns.
    pub connections: Vec<ConnId>,
    /// Frames waiting in the sockets' queues, in all.
    pub queued_frames: usize,
    /// Bytes waiting in the sockets' queues, in all.
    pub queued_bytes: usize,
    /// When any socket was last heard from, in milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
    /// The highest seq pushed live.
    pub delivered_seq: i64,
}

/// A change a user makes to their own inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Mark one notification read (`true`) or unread.
    SetRead {
        /// The notification.
        id: i64,
        /// Read or unread.
        read: bool,
    },
    /// Mark every unread notification matching the filter read.
    MarkAllRead(NotificationFilter),
    /// Delete one notification.
    Delete {
        /// The notification.
        id: i64,
    },
    /// Delete every notification.
    DeleteAll,
    /// The user's clients have shown everything up to this seq.
    Ack(i64),
}

/// The result of a [`UserCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// The notification after the change, or `None` if the user has no such notification.
    SetRead {
        /// The notification asked for.
        id: i64,
        /// Read or unread.
        read: bool,
        /// The notification after the change.
        notification: Option<Box<Notification>>,
    },
    /// The ids marked read.
    AllRead(Vec<i64>),
    /// Whether the notification existed and was deleted.
    Deleted {
        /// The notification asked for.
        id: i64,
        /// Whether it was the user's and is gone now.
        success: bool,
    },
    /// The ids deleted.
    AllDeleted(Vec<i64>),
    /// The acknowledged seq now.
    Acked(i64),
}

/// A new socket of a user.
#[derive(Debug)]
pub struct AttachRequest {
    /// The socket's handle.
    pub conn: ConnHandle,
    /// Where its replay starts.
    pub resume: Resume,
    /// The cursor the handshake read, if it read one.
    pub hint: Option<CursorHint>,
    /// Answered once the socket is owned by this actor and its replay is queued.
    pub reply: RpcReplyPort<Attached>,
}

/// A change to a user's inbox, for the other sockets to hear of.
#[derive(Debug)]
pub struct CommandRequest {
    /// The socket it came from (not told of its own change), if any.
    pub from: Option<ConnId>,
    /// The change.
    pub cmd: UserCommand,
    /// The result.
    pub reply: RpcReplyPort<Result<CommandOutcome, String>>,
}

/// Messages a user actor handles. The large ones are boxed: every actor's mailbox allocates
/// its slots at the size of this enum, so its size is paid per connected user.
#[derive(Debug)]
pub enum UserMsg {
    /// A new socket of this user.
    Attach(Box<AttachRequest>),
    /// Fill a gap in the live stream from the database, if it is still open.
    GapCheck,
    /// Another hub process committed notifications for this user up to this seq: read what
    /// this actor has not pushed yet from the database.
    CatchUp(i64),
    /// The highest seq this actor has pushed, or `None` while it has not read its cursor yet
    /// (it reads everything it lacks once it does): for a catch-up of many users in one read.
    Delivered(RpcReplyPort<Option<i64>>),
    /// A socket of this user ended.
    Detach(ConnId),
    /// A committed notification for this user.
    Notify(Arc<Notification>),
    /// The user changed their inbox on another hub process: tell every socket here.
    Changed(Update),
    /// Changes of the inbox read back from the database (after a gap on the bus, when the
    /// node began to hear the user, or at a periodic pass), and why: one catch-up for all.
    ChangedMany(Vec<InboxChange>, CatchUp),
    /// Apply a change to the user's inbox and tell the user's other sockets.
    Command(Box<CommandRequest>),
    /// Ping every socket and close those silent for longer than the idle timeout.
    Heartbeat,
    /// Close every socket of the user with this reason (the account was deactivated).
    Close(Disconnect),
    /// The hub is stopping: close every socket with [`Disconnect::Shutdown`], then stop.
    Shutdown,
    /// Describe the actor.
    Snapshot(RpcReplyPort<UserSnapshot>),
    /// Panic inside the handler. Used by fault-injection tests and chaos drills to prove that
    /// a failing user actor takes nobody else down.
    #[cfg(feature = "testing")]
    InjectFault,
    /// Hold the actor for this long, as a slow database would. Used by fault-injection tests.
    #[cfg(feature = "testing")]
    InjectStall(std::time::Duration),
    /// Hold the actor until the semaphore gives a permit. Used by fault-injection tests that
    /// must decide when the actor is free again.
    #[cfg(feature = "testing")]
    InjectHold(std::sync::Arc<tokio::sync::Semaphore>),
}

impl Keyed for UserActor {
    type Key = UserId;
    const KIND: &'static str = "user";

    fn label(key: UserId) -> String {
        format!("user:{key}")
    }

    fn arguments(&self, key: UserId) -> UserId {
        key
    }
}

impl CommandOutcome {
    /// What the user's other sockets are told of this outcome, if anything changed.
    pub fn update(&self, cmd: &UserCommand) -> Option<Update> {
        match self {
            CommandOutcome::SetRead {
                id,
                read,
                notification: Some(_),
            } => Some(Update::Read {
                id: *id,
                is_read: *read,
            }),
            CommandOutcome::AllRead(ids) if !ids.is_empty() => {
                let UserCommand::MarkAllRead(filter) = cmd else {
                    return None;
                };
                Some(Update::AllRead {
                    count: ids.len() as i64,
                    ids: ids.iter().take(UPDATE_IDS).copied().collect(),
                    notification_type: filter.notification_type.clone(),
                    ticket: filter.ticket.map(|t| t.0),
                })
            }
            CommandOutcome::Deleted { id, success: true } => Some(Update::Deleted { id: *id }),
            CommandOutcome::AllDeleted(ids) if !ids.is_empty() => Some(Update::AllDeleted {
                count: ids.len() as i64,
                ids: ids.iter().take(UPDATE_IDS).copied().collect(),
            }),
            _ => None,
        }
    }
}

/// Applies a command to a user's inbox through the store.
pub async fn execute(
    store: &dyn Store,
    user: UserId,
    cmd: &UserCommand,
) -> Result<CommandOutcome, StoreError> {
    Ok(match cmd {
        UserCommand::SetRead { id, read } => CommandOutcome::SetRead {
            id: *id,
            read: *read,
            notification: store.set_read(user, *id, *read).await?.map(Box::new),
        },
        UserCommand::MarkAllRead(filter) => {
            CommandOutcome::AllRead(store.mark_all_read(user, filter).await?)
        }
        UserCommand::Delete { id } => CommandOutcome::Deleted {
            id: *id,
            success: store.delete_notification(user, *id).await?,
        },
        UserCommand::DeleteAll => {
            CommandOutcome::AllDeleted(store.delete_all_notifications(user).await?)
        }
        UserCommand::Ack(seq) => CommandOutcome::Acked(store.ack(user, *seq).await?),
    })
}

impl UserState {
    /// Pushes to every socket but `except`, dropping the sockets that are gone or kicked.
    fn push_all(&mut self, except: Option<ConnId>, make: impl Fn() -> ConnectionMsg) {
        self.conns
            .retain(|conn| Some(conn.handle.id) == except || conn.handle.push(make()).is_ok());
    }

    /// Pushes one live notification to every socket that has not had it yet.
    fn push_live(&mut self, n: &Arc<Notification>) {
        let mut written = 0;
        self.conns.retain_mut(|conn| {
            if conn.sent >= n.seq {
                return true;
            }
            conn.sent = n.seq;
            let ok = conn
                .handle
                .push(ConnectionMsg::Notification(n.clone()))
                .is_ok();
            written += i64::from(ok);
            ok
        });
        if written > 0 {
            self.sent.pushed(self.user_id, n.seq, n.seq, written, false);
        }
        self.delivered = self.delivered.max(n.seq);
    }

    /// Pushes the held-back notifications that are next in line.
    fn drain(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > self.delivered + 1 {
                break;
            }
            let n = entry.remove();
            if n.seq > self.delivered {
                self.push_live(&n);
            }
        }
    }

    /// The highest seq written to any socket of this actor.
    fn max_sent(&self) -> i64 {
        self.conns
            .iter()
            .map(|c| c.handle.shared.sent_seq())
            .max()
            .unwrap_or(0)
    }
}

pub use crate::sent::SENT_FLUSH_EVERY;

/// How long a user actor waits before it retries a database read that failed.
const RETRY: Duration = Duration::from_secs(2);

impl UserActor {
    /// Pushes the committed notifications with `delivered < seq < until` from the database, in
    /// order, then whatever was held back behind them. Seqs in the range that are not returned
    /// were deleted.
    async fn fill(&self, state: &mut UserState, until: i64) -> Result<(), StoreError> {
        let missing = self
            .store
            .seq_range(state.user_id, state.delivered, until)
            .await?;
        for n in missing {
            state.push_live(&Arc::new(n));
        }
        state.delivered = state.delivered.max(until - 1);
        state.drain();
        Ok(())
    }

    /// Closes every socket of the user, after what is queued for it, with `reason`.
    async fn close_all(&self, state: &mut UserState, reason: Disconnect) {
        self.flush_sent(state, 0).await;
        for conn in state.conns.drain(..) {
            if conn.handle.push(ConnectionMsg::Close(reason)).is_err() {
                conn.handle.shared.kick(reason);
            }
        }
    }

    /// Writes the highest seq written to a socket to the database, when it moved, and waits
    /// for the write (it goes with the recorder's next batch).
    async fn flush_sent(&self, state: &mut UserState, extra: i64) {
        let sent = state.max_sent().max(extra);
        if sent > state.flushed_sent {
            self.sent.flush(state.user_id, sent).await;
            state.flushed_sent = sent;
        }
    }

    /// Hands the highest seq written to a socket to the recorder, when it moved: `soon` for
    /// the next batch at once, otherwise with the periodic one. Never waits.
    fn report_sent(&self, state: &mut UserState, soon: bool) {
        let sent = state.max_sent();
        if sent > state.flushed_sent {
            if soon {
                self.sent.note_soon(state.user_id, sent);
            } else {
                self.sent.note(state.user_id, sent);
            }
            state.flushed_sent = sent;
        }
    }

    /// Takes a new socket: queues its replay, then owns it.
    async fn attach(
        &self,
        myself: ActorRef<UserMsg>,
        state: &mut UserState,
        conn: ConnHandle,
        resume: Resume,
        reply: RpcReplyPort<Attached>,
        cursor: Option<crate::ports::NotificationCursor>,
    ) {
        match self.replay(state, &conn, resume, cursor).await {
            Ok((sent, newest)) => {
                state.conns.push(Conn { handle: conn, sent });
                state.told.attached(self.store.now());
                let _ = reply.send(Attached {
                    actor: myself,
                    connections: state.conns.len(),
                    last_seq: newest.max(state.delivered),
                });
            }
            Err(e) => {
                // Dropping the reply port fails the attach; the session closes and the
                // client reconnects.
                tracing::warn!(user_id = state.user_id.0, error = %e, "cannot replay backlog");
            }
        }
    }

    /// Queues a socket's backlog. Returns the seq the socket has everything up to, and the
    /// user's newest seq as read for it.
    async fn replay(
        &self,
        state: &UserState,
        conn: &ConnHandle,
        resume: Resume,
        cursor: Option<crate::ports::NotificationCursor>,
    ) -> Result<(i64, i64), StoreError> {
        let store = &self.store;
        let cursor = match cursor {
            Some(c) => c,
            None => store.notification_cursor(state.user_id).await?,
        };
        let start = match resume {
            Resume::After(seq) => seq.min(cursor.last_seq),
            Resume::Unacknowledged if cursor.acked_seq > 0 => cursor.acked_seq,
            Resume::Unacknowledged => cursor
                .sent_seq
                .max(state.max_sent())
                .max(state.flushed_sent),
        };
        // Nothing was missed (the usual connect): no backlog to read.
        let (remaining, notifications) = if start >= cursor.last_seq {
            (0, Vec::new())
        } else {
            store.backlog(state.user_id, start, self.replay_cap).await?
        };
        let last_seq = notifications.last().map_or(start, |n| n.seq).max(start);
        if let (Some(first), Some(last)) = (notifications.first(), notifications.last()) {
            self.sent
                .pushed(state.user_id, first.seq, last.seq, 1, true);
        }
        metrics::counter!("tickethub_replays_total").increment(1);
        metrics::counter!("tickethub_replayed_notifications_total")
            .increment(notifications.len() as u64);
        let _ = conn.push(ConnectionMsg::Replay(Box::new(Replay {
            notifications,
            remaining,
            last_seq,
        })));
        Ok((last_seq, cursor.last_seq))
    }
}

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = UserId;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        user_id: UserId,
    ) -> Result<Self::State, ActorProcessingErr> {
        crate::ports::interest(&self.bus, crate::ports::Topic::User(user_id), true);
        Ok(UserState {
            user_id,
            conns: Vec::with_capacity(1),
            delivered: 0,
            pending: BTreeMap::new(),
            gap_check_scheduled: false,
            flushed_sent: 0,
            sent: self.sent.clone(),
            loaded: false,
            told: told::Told::default(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        Box::pin(self.flush_sent(state, 0)).await;
        // This actor's last writes (the sent seq just flushed) may be newer than what a
        // handshake read meanwhile: the actor started next for that socket reads for itself.
        self.notices.news(state.user_id);
        crate::ports::interest(&self.bus, crate::ports::Topic::User(state.user_id), false);
        // Sockets still attached when the actor stops without a shutdown are told to reconnect.
        for conn in state.conns.drain(..) {
            conn.handle.shared.kick(Disconnect::ActorRestart);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // A live notification, the fan-out's message, is handled without awaiting, so it
            // costs no allocation.
            UserMsg::Notify(n) if state.loaded => {
                self.on_notify(&myself, n, state);
                Ok(())
            }
            UserMsg::Delivered(reply) => {
                let _ = reply.send(state.loaded.then_some(state.delivered));
                Ok(())
            }
            // Boxed, as the stop below: the actor's task is as large as its largest handler,
            // and it is held for every connected user; the handler's future lives only while
            // it runs.
            msg => Box::pin(self.on_message(myself, msg, state)).await,
        }
    }
}

impl UserActor {
    /// Pushes a live notification to the sockets, in seq order: one that arrives ahead of a
    /// missing one waits in `pending` until the gap is filled or checked.
    fn on_notify(&self, myself: &ActorRef<UserMsg>, n: Arc<Notification>, state: &mut UserState) {
        if n.seq > state.delivered {
            state.pending.insert(n.seq, n);
            state.drain();
            if state.max_sent() - state.flushed_sent >= SENT_FLUSH_EVERY {
                self.report_sent(state, true);
            }
            if !state.pending.is_empty() && !state.gap_check_scheduled {
                state.gap_check_scheduled = true;
                myself.send_after(self.gap_wait, || UserMsg::GapCheck);
            }
        }
    }

    /// Handles one message (see `Actor::handle`).
    async fn on_message(
        &self,
        myself: ActorRef<UserMsg>,
        msg: UserMsg,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        let mut cursor = None;
        if !state.loaded {
            // The handshake's read stands in for the actor's while nothing reached the user
            // since: any later news finds this actor, now in the directory's map.
            let hint = match &msg {
                UserMsg::Attach(request) => request
                    .hint
                    .filter(|h| self.notices.unchanged(state.user_id, h.stamp))
                    .map(|h| h.cursor),
                _ => None,
            };
            let read = match hint {
                Some(c) => Ok(c),
                None => self.store.notification_cursor(state.user_id).await,
            };
            match read {
                Ok(c) => {
                    state.delivered = c.last_seq;
                    state.flushed_sent = c.sent_seq;
                    state.loaded = true;
                    cursor = Some(c);
                }
                Err(e) => {
                    // No socket is attached yet: stopping loses nothing. An attach waiting in
                    // this message fails and is tried again, with a new actor.
                    tracing::warn!(user_id = state.user_id.0, error = %e, "cannot read where the user's stream stands");
                    myself.stop(Some("cannot read the user's cursor".into()));
                    return Ok(());
                }
            }
        }
        match msg {
            UserMsg::Attach(request) => {
                let AttachRequest {
                    conn,
                    resume,
                    reply,
                    hint: _,
                } = *request;
                match state.conns.iter().find(|c| c.handle.id == conn.id) {
                    // A retried attach (the first was slow to answer) finds its socket here
                    // already: answered again, never replayed twice. Its replay reached `sent`,
                    // which may be past `delivered` (a commit whose notification has yet to
                    // arrive): the greeting must not claim less.
                    Some(attached) => {
                        let _ = reply.send(Attached {
                            actor: myself.clone(),
                            connections: state.conns.len(),
                            last_seq: state.delivered.max(attached.sent),
                        });
                    }
                    None => {
                        self.attach(myself.clone(), state, conn, resume, reply, cursor)
                            .await
                    }
                }
            }
            UserMsg::Detach(id) => {
                let gone = state
                    .conns
                    .iter()
                    .find(|c| c.handle.id == id)
                    .map_or(0, |c| c.handle.shared.sent_seq());
                state.conns.retain(|c| c.handle.id != id);
                self.flush_sent(state, gone).await;
            }
            UserMsg::Notify(n) => self.on_notify(&myself, n, state),
            // Answered by `handle` without loading; here once loaded above.
            UserMsg::Delivered(reply) => {
                let _ = reply.send(Some(state.delivered));
            }
            UserMsg::CatchUp(seq) => {
                if seq > state.delivered {
                    if let Err(e) = self.fill(state, seq + 1).await {
                        // A database hiccup must not drop the user's sockets: try again soon.
                        tracing::warn!(user_id = state.user_id.0, error = %e, "cannot catch up; retrying");
                        myself.send_after(RETRY, move || UserMsg::CatchUp(seq));
                    }
                }
            }
            UserMsg::GapCheck => {
                state.gap_check_scheduled = false;
                if let Some(&first) = state.pending.keys().next() {
                    if first > state.delivered + 1 {
                        if let Err(e) = self.fill(state, first).await {
                            tracing::warn!(user_id = state.user_id.0, error = %e, "cannot fill a gap; retrying");
                            state.gap_check_scheduled = true;
                            myself.send_after(RETRY, || UserMsg::GapCheck);
                        }
                    }
                }
                // Another gap further on waits its turn.
                if !state.pending.is_empty() && !state.gap_check_scheduled {
                    state.gap_check_scheduled = true;
                    myself.send_after(self.gap_wait, || UserMsg::GapCheck);
                }
            }
            UserMsg::Command(request) => {
                let CommandRequest { from, cmd, reply } = *request;
                // An ack changes nothing another socket shows: it is written with others'
                // while this actor goes on pushing.
                if let UserCommand::Ack(seq) = cmd {
                    self.acks.ack(
                        state.user_id,
                        seq,
                        Box::new(move |acked| {
                            let _ = reply.send(acked.map(CommandOutcome::Acked));
                        }),
                    );
                } else {
                    match execute(self.store.as_ref(), state.user_id, &cmd).await {
                        Ok(outcome) => {
                            if let Some(update) = outcome.update(&cmd) {
                                tracing::debug!(user_id = state.user_id.0, sockets = state.conns.len(), change = ?update, "inbox command applied; telling the sockets and the bus");
                                state.told.remember(&update);
                                state.push_all(from, || {
                                    ConnectionMsg::Updated(Box::new(update.clone()))
                                });
                                // The user's sockets on other hub processes hear of it too, from
                                // here: the caller may have stopped waiting.
                                crate::ports::publish(
                                    &self.bus,
                                    crate::ports::BusEvent::Inbox(state.user_id, update),
                                );
                            }
                            let _ = reply.send(Ok(outcome));
                        }
                        Err(e) => {
                            tracing::warn!(user_id = state.user_id.0, error = %e, "inbox command failed");
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
            UserMsg::Changed(update) => self.changed(state, vec![update]).await,
            UserMsg::ChangedMany(changes, why) => {
                let (news, _) = state.told.news(state.user_id, changes, why);
                self.changed(state, news).await
            }
            UserMsg::Heartbeat => {
                let deadline = now_ms().saturating_sub(self.idle_timeout.as_millis() as u64);
                state.conns.retain(|conn| {
                    if conn.handle.shared.last_seen_ms() < deadline {
                        conn.handle.shared.kick(Disconnect::Idle);
                        return false;
                    }
                    conn.handle.push(ConnectionMsg::Ping).is_ok()
                });
                self.report_sent(state, false);
                state.told.settle(std::time::Instant::now());
            }
            UserMsg::Shutdown => {
                self.close_all(state, Disconnect::Shutdown).await;
                myself.stop(Some("hub shutdown".into()));
                return Ok(());
            }
            UserMsg::Close(reason) => self.close_all(state, reason).await,
            UserMsg::Snapshot(reply) => {
                let conns = state.conns.iter().map(|c| &c.handle);
                let _ = reply.send(UserSnapshot {
                    user_id: state.user_id,
                    connections: conns.clone().map(|c| c.id).collect(),
                    queued_frames: conns.clone().map(|c| c.shared.queued_frames()).sum(),
                    queued_bytes: conns.clone().map(|c| c.shared.queued_bytes()).sum(),
                    last_seen_ms: conns.map(|c| c.shared.last_seen_ms()).max().unwrap_or(0),
                    delivered_seq: state.delivered,
                });
            }
            #[cfg(feature = "testing")]
            UserMsg::InjectFault => {
                panic!("injected fault in the actor of user {}", state.user_id);
            }
            #[cfg(feature = "testing")]
            UserMsg::InjectStall(d) => tokio::time::sleep(d).await,
            #[cfg(feature = "testing")]
            UserMsg::InjectHold(gate) => {
                let _ = gate.acquire().await;
            }
        }
        if state.conns.is_empty() {
            myself.stop(Some("no sockets left".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
mod told;

pub use told::CatchUp;
