//! What other nodes tell this one: commits, inbox changes, board events (read here one after
//! the other, in the order they came), presence, revocations and ended sessions.

use super::*;
use crate::user::CatchUp;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The committed seq of each connected user as the last catch-up of a run of them read it
/// (the passes while a node's bus is away): that pass told each actor to reach it, so the next
/// asks only the actors of users whose seq moved since.
pub type Seen = HashMap<UserId, i64>;

/// A remote board event: the room, the ticket and what happened to it.
pub(super) type BoardRead = (
    ActorRef<RoomMsg>,
    crate::ticket_domain::TicketId,
    crate::ports::BoardNotice,
);

/// Remote board events that may wait for their reads; past it, one is dropped (and counted):
/// a board is a live view, and its clients fetch the list again when they reconnect.
pub(super) const BOARD_READS_WAITING: usize = 4096;

/// Reads the content of other nodes' board events one after the other, so that a room hears
/// them in the order they came (two comments on one ticket stay in order), and tells the room.
pub(super) async fn read_board_events(
    store: Arc<dyn crate::ports::Store>,
    mut events: tokio::sync::mpsc::Receiver<BoardRead>,
) {
    while let Some((room, ticket, notice)) = events.recv().await {
        let read = async {
            if crate::ports::StoreFaults::take(&store.faults().failed_board_reads) {
                return Err(StoreError::Backend(
                    "injected: the board read failed".into(),
                ));
            }
            let ticket = store
                .ticket(ticket)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("ticket {ticket}")))?;
            let ticket = Arc::new(ticket);
            Ok::<_, StoreError>(match notice {
                crate::ports::BoardNotice::Update(action) => {
                    RoomEvent::TicketUpdate { action, ticket }
                }
                crate::ports::BoardNotice::Attachments => RoomEvent::AttachmentsChanged { ticket },
                crate::ports::BoardNotice::Comment(id) => RoomEvent::CommentAdded {
                    ticket,
                    comment: Arc::new(
                        store
                            .comment(id)
                            .await?
                            .ok_or_else(|| StoreError::NotFound(format!("comment {id}")))?,
                    ),
                },
            })
        };
        match read.await {
            Ok(event) => {
                let _ = room.send_message(RoomMsg::Board(event));
            }
            Err(e) => {
                tracing::warn!(error = %e, "board: cannot read a remote event's content; it is dropped");
                metrics::counter!("tickethub_board_remote_read_failures_total").increment(1);
            }
        }
    }
}

/// How far back before a gap on the bus began a node looks for the inbox changes its sockets
/// may have missed: a message in flight when the link broke, a break noticed late. A change
/// told again is harmless.
pub const INBOX_LOOKBACK: Duration = Duration::from_secs(60);

/// How many times, a second apart, a node tries to tell newly heard users their inboxes'
/// changes (the database may be away for a moment).
const INBOX_TRIES: usize = 30;

/// How long [`Hub::ended_since`] remembers an ending: longer than any handshake can take
/// between reading its user and attaching its socket.
pub(super) const ENDINGS_KEPT: Duration = Duration::from_secs(300);

impl Hub {
    /// Another hub process committed notifications for `user` up to `seq`: if the user is
    /// connected here, their actor catches up from the database.
    pub fn remote_committed(&self, user: UserId, seq: i64) {
        self.inner.deps.notices.news(user);
        if let Some(actor) = self.user(user) {
            let _ = actor.send_message(UserMsg::CatchUp(seq));
        }
    }

    /// Hands an event another hub process published to the local actors it concerns.
    /// [`BusEvent::Resync`] is the caller's to act on (see [`Hub::catch_up_all`]).
    pub fn remote(&self, event: BusEvent) {
        match event {
            BusEvent::Committed(events) => self.remote_commit(events),
            BusEvent::Notified(notifications) => {
                for n in &notifications {
                    self.inner.deps.notices.news(n.user_id);
                }
                let users = self.inner.deps.users.read().expect("user map poisoned");
                for n in notifications {
                    if let Some(actor) = users.get(&n.user_id) {
                        let _ = actor.send_message(UserMsg::Notify(n));
                    }
                }
            }
            BusEvent::Inbox(user, update) => {
                let actor = self.user(user);
                tracing::debug!(user_id = user.0, change = ?update, here = actor.is_some(), "inbox change heard on the bus");
                if let Some(actor) = actor {
                    let _ = actor.send_message(UserMsg::Changed(update));
                }
            }
            BusEvent::Ticket(id, version) => {
                if let Some(actor) = self.ticket(id) {
                    let _ = actor.send_message(TicketMsg::Changed(version));
                }
            }
            BusEvent::Board {
                project,
                ticket,
                notice,
            } => {
                let Some(room) = self.room(project) else {
                    return;
                };
                // Content never crosses the bus: one reader reads the ticket (and comment) of
                // each event here, in the order they came, and hands them to the room.
                if self
                    .inner
                    .board_reads
                    .try_send((room, ticket, notice))
                    .is_err()
                {
                    tracing::warn!(
                        project = project.0,
                        "board: too many remote events waiting to be read; one is dropped"
                    );
                    metrics::counter!("tickethub_board_remote_dropped_total").increment(1);
                }
            }
            BusEvent::Presence(project, change) => {
                if let Some(room) = self.room(project) {
                    let _ = room.send_message(RoomMsg::Remote(change));
                }
            }
            BusEvent::Revoked(project, users) => {
                if let Some(room) = self.room(project) {
                    let _ = room.send_message(RoomMsg::Revoke(users, Disconnect::Forbidden));
                }
            }
            BusEvent::SessionsEnded(user) => {
                self.forget_user(user);
                self.end_sessions_here(user);
            }
            BusEvent::UserChanged(user) => self.forget_user(user),
            BusEvent::Heard { users, projects } => {
                for project in projects {
                    if let Some(room) = self.room(project) {
                        let _ = room.send_message(RoomMsg::Resync);
                    }
                }
                if !users.is_empty() {
                    let hub = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = hub.catch_up(users.clone()).await {
                            // The periodic reconciliation catches them up.
                            tracing::warn!(error = %e, "cannot catch newly heard users up");
                        }
                        // Their inboxes' changes from before this node heard them, too: no
                        // periodic pass tells those, so a failed read is tried again.
                        let lookback =
                            chrono::Duration::from_std(INBOX_LOOKBACK).unwrap_or_default();
                        let since = hub.inner.deps.store.now() - lookback;
                        for _ in 0..INBOX_TRIES {
                            match hub.catch_up_inboxes_of(&users, since, CatchUp::Heard).await {
                                Ok(_) => break,
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot tell newly heard users their inboxes' changes; trying again");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                        }
                    });
                }
            }
            BusEvent::Resync(_) => {}
        }
    }

    /// These users were removed from the project: their board and presence sockets close with
    /// 4003, on every node.
    pub fn revoke(&self, project: ProjectId, users: Vec<UserId>) {
        if users.is_empty() {
            return;
        }
        self.inner
            .deps
            .publish(BusEvent::Revoked(project, users.clone()));
        if let Some(room) = self.room(project) {
            let _ = room.send_message(RoomMsg::Revoke(users, Disconnect::Forbidden));
        }
    }

    /// A file was attached to `ticket` or deleted: its project's board sockets hear it, on
    /// every node.
    pub fn attachments_changed(&self, ticket: crate::ticket_domain::Ticket) {
        self.inner
            .deps
            .board(crate::room::RoomEvent::AttachmentsChanged {
                ticket: std::sync::Arc::new(ticket),
            });
    }

    /// This user's tokens were ended (a deactivation, another role, a new password): every
    /// socket of theirs (notifications, boards, presence) closes with 4001, on every node.
    pub fn sessions_ended(&self, user: UserId) {
        self.inner.deps.publish(BusEvent::SessionsEnded(user));
        self.end_sessions_here(user);
    }

    /// Whether this user's sessions ended after `authenticated`, the moment a socket began
    /// reading its user. A socket asks once it is attached: either the ending was recorded by
    /// then and the socket sees it here, or the socket was attached before the ending told
    /// the user's actor and rooms to close their sockets, and is closed with them.
    pub fn ended_since(&self, user: UserId, authenticated: std::time::Instant) -> bool {
        self.inner
            .ended
            .lock()
            .expect("endings poisoned")
            .get(&user)
            .is_some_and(|ended| *ended >= authenticated)
    }

    /// Drops another node's changed user from this node's user cache.
    fn forget_user(&self, user: UserId) {
        if let Some(cache) = self.inner.deps.store.user_cache() {
            cache.forget(user);
        }
    }

    /// Records the ending, then closes the user's sockets on this node.
    pub(super) fn end_sessions_here(&self, user: UserId) {
        {
            let now = std::time::Instant::now();
            let mut ended = self.inner.ended.lock().expect("endings poisoned");
            ended.retain(|_, at| now.duration_since(*at) < ENDINGS_KEPT);
            ended.insert(user, now);
        }
        if let Some(actor) = self.user(user) {
            let _ = actor.send_message(UserMsg::Close(Disconnect::Deactivated));
        }
        self.tell_rooms(|| RoomMsg::Revoke(vec![user], Disconnect::Deactivated));
    }

    /// Sends every live room on this hub a message.
    pub(super) fn tell_rooms(&self, msg: impl Fn() -> RoomMsg) {
        let rooms: Vec<ActorRef<RoomMsg>> = self
            .inner
            .deps
            .rooms
            .read()
            .expect("room map poisoned")
            .values()
            .cloned()
            .collect();
        for room in rooms {
            let _ = room.send_message(msg());
        }
    }

    /// After a gap on the bus, other nodes' joins and leaves may have been missed: every room
    /// sends its presence sockets a fresh `presence_state` with its next batch.
    pub fn resync_rooms(&self) {
        self.tell_rooms(|| RoomMsg::Resync);
    }

    /// Another hub process committed these notifications. A single recipient connected here
    /// catches up on its own; several are read in one batched query and pushed as live
    /// notifications (the user actors keep them in seq order and fill any gap), so that a
    /// fan-out to thousands costs this node a few queries rather than one per user.
    pub(super) fn remote_commit(&self, events: Vec<(UserId, i64)>) {
        for (user, _) in &events {
            self.inner.deps.notices.news(*user);
        }
        let local: Vec<(UserId, i64, ActorRef<UserMsg>)> = {
            let users = self.inner.deps.users.read().expect("user map poisoned");
            events
                .into_iter()
                .filter_map(|(u, s)| users.get(&u).map(|a| (u, s, a.clone())))
                .collect()
        };
        if local.len() <= 1 {
            for (_, seq, actor) in local {
                let _ = actor.send_message(UserMsg::CatchUp(seq));
            }
            return;
        }
        let store = self.inner.deps.store.clone();
        tokio::spawn(async move {
            let keys: Vec<(UserId, i64)> = local.iter().map(|(u, s, _)| (*u, *s)).collect();
            let found = match store.notifications_at(&keys).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read remote notifications; catching up one by one");
                    Vec::new()
                }
            };
            let mut found: std::collections::HashMap<(UserId, i64), Notification> =
                found.into_iter().map(|n| ((n.user_id, n.seq), n)).collect();
            for (user, seq, actor) in local {
                let msg = match found.remove(&(user, seq)) {
                    Some(n) => UserMsg::Notify(Arc::new(n)),
                    // Deleted meanwhile, or the read failed: the actor reads what it lacks.
                    None => UserMsg::CatchUp(seq),
                };
                let _ = actor.send_message(msg);
            }
        });
    }

    /// Catches every user connected to this hub up from the database: one batched read of
    /// their committed seqs, then each actor reads what it has not pushed yet (an actor that is
    /// current does nothing). Run after any gap on the bus and periodically. Returns how many
    /// users were checked.
    ///
    /// With `seen`, the seqs the last pass of a run found (see [`Seen`]): only the actors of
    /// users whose committed seq moved since are asked where they are, and only they are
    /// counted.
    pub async fn catch_up_all(&self, seen: Option<&mut Seen>) -> Result<usize, StoreError> {
        // An actor that starts after the list below is taken reads its own cursor.
        self.inner.deps.notices.news_for_everyone();
        self.catch_up_moved(self.connected(), seen).await
    }

    /// The users whose actors run here.
    fn connected(&self) -> Vec<UserId> {
        let users = self.inner.deps.users.read().expect("user map poisoned");
        users.keys().copied().collect()
    }

    /// Tells the sockets of every user connected here the changes to their inboxes made at or
    /// after `since` (by the store's clock), as each notification stands now: after a gap on
    /// the bus, the changes made on other nodes may not have reached them. Each actor tells
    /// only what it has not told, and counts what its sockets missed by `why`. Returns how many
    /// changes were read.
    pub async fn catch_up_inboxes(
        &self,
        since: DateTime<Utc>,
        why: CatchUp,
    ) -> Result<usize, StoreError> {
        self.catch_up_inboxes_of(&self.connected(), since, why)
            .await
    }

    /// [`Hub::catch_up_inboxes`] for these users only.
    pub async fn catch_up_inboxes_of(
        &self,
        users: &[UserId],
        since: DateTime<Utc>,
        why: CatchUp,
    ) -> Result<usize, StoreError> {
        if users.is_empty() {
            return Ok(0);
        }
        let changes = self.inner.deps.store.inbox_changes(users, since).await?;
        let told = changes.len();
        tracing::debug!(users = users.len(), %since, told, why = why.as_str(), "telling inbox changes again");
        // Ordered by user: one message per user.
        let mut changes = changes.into_iter().peekable();
        while let Some(change) = changes.next() {
            let user = change.user;
            let mut all = vec![change];
            while let Some(more) = changes.next_if(|c| c.user == user) {
                all.push(more);
            }
            if let Some(actor) = self.user(user) {
                let _ = actor.send_message(UserMsg::ChangedMany(all, why));
            }
        }
        Ok(told)
    }

    /// Catches these users, where connected here, up from the database: one batched read of
    /// their committed seqs; each actor behind tells where it is, and what it lacks is read in
    /// batched reads (a thousand users a statement) and pushed to it as live notifications,
    /// which it orders and gap-fills as any. Returns how many users were checked.
    pub async fn catch_up(&self, ids: Vec<UserId>) -> Result<usize, StoreError> {
        self.catch_up_moved(ids, None).await
    }

    /// [`Hub::catch_up`], asking only the actors of users whose committed seq differs from
    /// `seen`'s (which then holds the seqs read now).
    async fn catch_up_moved(
        &self,
        ids: Vec<UserId>,
        seen: Option<&mut Seen>,
    ) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        // An actor that has not read its cursor is left out below, trusted to read it: so it
        // must not take a handshake's read from before this instead.
        for id in &ids {
            self.inner.deps.notices.news(*id);
        }
        let store = self.inner.deps.store.clone();
        let mut seqs = store.last_seqs(&ids).await?;
        if let Some(seen) = seen {
            let last = std::mem::replace(seen, HashMap::with_capacity(seqs.len()));
            seen.extend(seqs.iter().copied());
            // The last pass told each of these actors to reach the seq it read; unmoved, they
            // have nothing new.
            seqs.retain(|(user, seq)| last.get(user) != Some(seq));
        }
        let checked = seqs.len();
        let local: Vec<(UserId, i64, ActorRef<UserMsg>)> = {
            let users = self.inner.deps.users.read().expect("user map poisoned");
            seqs.into_iter()
                .filter_map(|(u, s)| users.get(&u).map(|a| (u, s, a.clone())))
                .collect()
        };
        // Where each actor is; one that does not answer in time, or has not read its cursor
        // yet, reads what it lacks itself.
        let asked =
            futures::future::join_all(local.into_iter().map(|(user, seq, actor)| async move {
                let delivered = actor
                    .call(UserMsg::Delivered, Some(Duration::from_secs(2)))
                    .await;
                (user, seq, actor, delivered)
            }))
            .await;
        let mut behind: HashMap<UserId, (i64, ActorRef<UserMsg>)> = HashMap::new();
        let mut ranges = Vec::new();
        for (user, seq, actor, delivered) in asked {
            match delivered {
                Ok(ractor::rpc::CallResult::Success(Some(delivered))) => {
                    if seq > delivered {
                        ranges.push((user, delivered, seq + 1));
                        behind.insert(user, (seq, actor));
                    }
                }
                Ok(ractor::rpc::CallResult::Success(None)) => {}
                _ => {
                    let _ = actor.send_message(UserMsg::CatchUp(seq));
                }
            }
        }
        if ranges.is_empty() {
            return Ok(checked);
        }
        match store.seq_ranges(&ranges).await {
            Ok(found) => {
                metrics::counter!("tickethub_catch_up_read_total").increment(found.len() as u64);
                for n in found {
                    if let Some((_, actor)) = behind.get(&n.user_id) {
                        let _ = actor.send_message(UserMsg::Notify(Arc::new(n)));
                    }
                }
                // Whatever the read did not hold (deleted meanwhile) the actor reads itself;
                // an actor that is current does nothing.
                for (seq, actor) in behind.into_values() {
                    let _ = actor.send_message(UserMsg::CatchUp(seq));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read what connected users lack; they read it one by one");
                for (seq, actor) in behind.into_values() {
                    let _ = actor.send_message(UserMsg::CatchUp(seq));
                }
            }
        }
        Ok(checked)
    }

    /// Whether the bus to other hub processes is connected (`None` without one).
    pub fn bus_connected(&self) -> Option<bool> {
        self.inner.deps.bus.as_ref().map(|b| b.is_connected())
    }

    /// The faults a test may inject into the bus, if there is one that has them.
    pub fn bus_faults(&self) -> Option<&crate::ports::BusFaults> {
        self.inner.deps.bus.as_ref().and_then(|b| b.faults())
    }
}
