//! The room actor: one per project with live project sockets (seed 002's live ticket board and
//! presence).
//!
//! A room owns its project's board sockets (`/ws/projects/{id}/tickets/`) and presence sockets
//! (`/ws/projects/{id}/presence/`). Board events reach it after their commit; it pushes them to
//! every board socket. Presence counts users, not sockets: one entry per user however many
//! tabs they have, `joined` when the first tab arrives and `left` only once the last one is gone
//! and a grace period has passed, so that a page reload does not flap. Typing relays are
//! throttled per user and ticket, and an `is_typing: false` follows by itself after a silence.
//! The room stops once it has no sockets and nobody is inside a grace period.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

pub use crate::board::{
    BoardAction, PresenceChange, PresenceCommand, PresenceEntry, RoomEvent, RoomFrame, RoomSocket,
};
use crate::connection::{now_ms, ConnHandle, ConnId, ConnectionMsg, Disconnect};
use crate::directory::Keyed;
use crate::domain::{ProjectId, UserId};
use crate::ticket_domain::TicketId;

/// Frames as one socket message.
type Batch = Arc<[Arc<RoomFrame>]>;

/// One event as a socket message.
fn one(event: RoomEvent) -> Batch {
    Arc::from([RoomFrame::new(event)])
}

/// The shortest time presence events gather before they are written to the sockets.
const PRESENCE_BATCH: Duration = Duration::from_millis(20);
/// The longest: a big room batches for longer (20 µs per presence socket), so that the share
/// of the hub a presence storm takes stays bounded however many sockets hear it.
const PRESENCE_BATCH_MAX: Duration = Duration::from_millis(250);
/// Sockets written between two yields of a flush, so that other work (notifications) never
/// waits behind a whole room's writes.
const FLUSH_CHUNK: usize = 256;

/// Settings of the room actors.
#[derive(Clone, Debug)]
pub struct RoomConfig {
    /// How long a user whose last tab closed stays present.
    pub grace: Duration,
    /// The least time between two typing relays of one user about one ticket.
    pub typing_throttle: Duration,
    /// The silence after which a typing user is relayed as stopped.
    pub typing_idle: Duration,
    /// A socket silent for longer than this is closed.
    pub idle_timeout: Duration,
    /// How long a node's presence lease lasts unless renewed (a third of it apart): a node that
    /// dies without a word has its users leave within about this long.
    pub presence_lease: Duration,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            typing_throttle: Duration::from_secs(1),
            typing_idle: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            presence_lease: Duration::from_secs(15),
        }
    }
}

/// The room actor.
#[derive(Clone)]
pub struct RoomActor {
    /// Fan-out to other hub processes, if there are any.
    pub bus: Option<Arc<dyn crate::ports::Bus>>,
    /// Presence held across hub processes, if there are several.
    pub presence: Option<Arc<dyn crate::ports::PresenceStore>>,
    /// Timings.
    pub config: RoomConfig,
}

/// The most tickets whose newest board version a room remembers.
const BOARD_VERSIONS_KEPT: usize = 10_000;

/// One user's typing under one ticket.
#[derive(Debug, Clone, Copy)]
struct Typing {
    /// When `is_typing: true` was last relayed; kept after a stop, so that true/false/true…
    /// cannot beat the throttle.
    relayed: Instant,
    /// When the client last said it types.
    heard: Instant,
    /// Whether the others were last told that the user types.
    active: bool,
}

#[derive(Debug)]
struct Member {
    username: String,
    display_name: String,
    /// The user's presence sockets here, with what each looks at.
    tabs: Vec<(ConnId, Option<TicketId>)>,
    /// The ticket the most recent tab said it looks at.
    viewing: Option<TicketId>,
    /// Typing state per ticket.
    typing: HashMap<TicketId, Typing>,
    /// When the last tab left (the grace period runs from here).
    gone_since: Option<Instant>,
}

/// A presence socket of the room.
struct PresenceSocket {
    conn: ConnHandle,
    user: UserId,
    /// Joins and leaves as one `presence_diff` frame per batch.
    diff: bool,
    /// Joined since the last flush: its `presence_state` is still to come.
    fresh: bool,
}

/// Whom a queued presence event is not for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    Nobody,
    /// The socket it came from.
    Conn(ConnId),
    /// Every socket of the user it is about.
    User(UserId),
}

impl Skip {
    fn spares(self, socket: &PresenceSocket) -> bool {
        match self {
            Skip::Nobody => false,
            Skip::Conn(c) => socket.conn.id == c,
            Skip::User(u) => socket.user == u,
        }
    }
}

/// The live state of a room.
pub struct RoomState {
    project: ProjectId,
    board: Vec<ConnHandle>,
    /// Whose each board socket is.
    board_users: HashMap<ConnId, UserId>,
    presence: Vec<PresenceSocket>,
    members: BTreeMap<UserId, Member>,
    /// Users whose last tab here just went (however it went); their grace timers start once
    /// the current message is handled.
    orphaned: Vec<UserId>,
    /// Presence events not yet written, in order, with whom each is not for.
    pending: Vec<(Arc<RoomFrame>, Skip)>,
    /// Users whose first tab here arrived since the last flush: joined, unless another node
    /// has them.
    entering: Vec<UserId>,
    /// Users whose grace period ran out since the last flush: left, unless another node has
    /// them.
    leaving: Vec<PresenceEntry>,
    /// The users present on other nodes only, as this room's sockets were told, each with when
    /// the lease reads began to miss them. Kept in step with the bus and, as a backstop for
    /// what a gap on the bus lost, with the leases themselves.
    remote: BTreeMap<UserId, (PresenceEntry, Option<Instant>)>,
    /// A call to the presence store failed since its last answer.
    store_failing: bool,
    /// Until then no lease is reaped and no missing one counted: after a gap on the bus, or
    /// once the presence store answers again after failing (a failover, a restart), every node
    /// first renews its own leases, which may have run out or been lost meanwhile.
    spare_until: Option<Instant>,
    /// Users whose lease must be rewritten (what they look at changed).
    touched: Vec<UserId>,
    /// Whether a flush is due.
    flush_scheduled: bool,
    /// The newest version pushed to the board per ticket: an older update (from another node,
    /// read late) is dropped.
    board_versions: HashMap<TicketId, i64>,
    /// Renews this node's presence leases, when presence crosses nodes.
    lease_timer: Option<ractor::concurrency::JoinHandle<()>>,
}

/// A point-in-time view of a room, for operators.
#[derive(Clone, Debug)]
pub struct RoomSnapshot {
    /// The project.
    pub project: ProjectId,
    /// Board sockets.
    pub board_sockets: usize,
    /// Presence sockets.
    pub presence_sockets: usize,
    /// Present users (one per user), with their presence socket counts.
    pub members: Vec<(UserId, String, usize)>,
}

/// Messages a room handles.
pub enum RoomMsg {
    /// A new socket of the project; answered once it is owned by the room.
    Join {
        /// The user.
        user: crate::domain::User,
        /// Board or presence.
        kind: RoomSocket,
        /// A presence socket that takes joins and leaves as `presence_diff` frames.
        diff: bool,
        /// The socket's handle.
        conn: ConnHandle,
        /// Answered with the room.
        reply: RpcReplyPort<ActorRef<RoomMsg>>,
    },
    /// A socket ended.
    Leave(ConnId),
    /// A presence socket's client said something.
    Presence {
        /// The socket.
        conn: ConnId,
        /// What.
        cmd: PresenceCommand,
    },
    /// A committed change to one of the project's tickets.
    Board(RoomEvent),
    /// A user's grace period may be over.
    GraceCheck(UserId),
    /// Write the queued presence events.
    Flush,
    /// Renew this node's presence leases and reap the ones that ran out.
    PresenceTick,
    /// A presence change on another node.
    Remote(PresenceChange),
    /// A typing user may have gone quiet.
    TypingCheck(UserId, TicketId),
    /// The bus had a gap: renew the leases and bring the view of other nodes in step now.
    Resync,
    /// These users may no longer be here (removed from the project: `Forbidden`, 4003;
    /// deactivated: `Deactivated`, 4001): their sockets close.
    Revoke(Vec<UserId>, Disconnect),
    /// Ping every socket and close the silent ones.
    Heartbeat,
    /// Describe the room.
    Snapshot(RpcReplyPort<RoomSnapshot>),
    /// The hub is stopping.
    Shutdown,
    /// Panic inside the handler, for fault-injection tests.
    #[cfg(feature = "testing")]
    InjectFault,
}

impl Keyed for RoomActor {
    type Key = ProjectId;
    const KIND: &'static str = "room";

    fn label(key: ProjectId) -> String {
        format!("room:{key}")
    }

    fn arguments(&self, key: ProjectId) -> ProjectId {
        key
    }
}

impl RoomActor {
    async fn on_presence(
        &self,
        myself: &ActorRef<RoomMsg>,
        state: &mut RoomState,
        conn: ConnId,
        cmd: PresenceCommand,
    ) {
        let Some(user) = state
            .presence
            .iter()
            .find(|s| s.conn.id == conn)
            .map(|s| s.user)
        else {
            return;
        };
        // The socket checked that the ticket is in this project before it sent the command:
        // the room never waits on the database for a member's frames.
        let Some(member) = state.members.get_mut(&user) else {
            return;
        };
        match cmd {
            PresenceCommand::Viewing(ticket_id) => {
                if let Some(tab) = member.tabs.iter_mut().find(|(c, _)| *c == conn) {
                    tab.1 = ticket_id;
                }
                member.viewing = ticket_id;
                state.touched.push(user);
                self.announce(
                    state,
                    Skip::Conn(conn),
                    PresenceChange::Viewing {
                        user_id: user,
                        ticket_id,
                    },
                );
            }
            PresenceCommand::Typing {
                ticket_id,
                is_typing,
            } => {
                let now = Instant::now();
                let throttle = self.config.typing_throttle;
                let relay = match (member.typing.get_mut(&ticket_id), is_typing) {
                    (None, true) => {
                        member.typing.insert(
                            ticket_id,
                            Typing {
                                relayed: now,
                                heard: now,
                                active: true,
                            },
                        );
                        true
                    }
                    (None, false) => false,
                    (Some(t), true) => {
                        t.heard = now;
                        if now.duration_since(t.relayed) >= throttle {
                            t.relayed = now;
                            t.active = true;
                            true
                        } else {
                            metrics::counter!("tickethub_typing_throttled_total").increment(1);
                            false
                        }
                    }
                    // A stop is relayed at once, but only after a start the others heard.
                    (Some(t), false) => std::mem::replace(&mut t.active, false),
                };
                if is_typing {
                    myself.send_after(self.config.typing_idle, move || {
                        RoomMsg::TypingCheck(user, ticket_id)
                    });
                }
                if relay {
                    self.announce(
                        state,
                        Skip::Conn(conn),
                        PresenceChange::Typing {
                            user_id: user,
                            ticket_id,
                            is_typing,
                        },
                    );
                }
            }
        }
    }

    /// A user's last tab left: after the grace period, unless a tab came back, they leave.
    fn schedule_grace(&self, myself: &ActorRef<RoomMsg>, user: UserId) {
        myself.send_after(self.config.grace, move || RoomMsg::GraceCheck(user));
    }

    /// A user with no tab left here leaves the room: whatever they were typing stops, and
    /// `left` goes out with the next flush, unless another node has them.
    fn depart(&self, state: &mut RoomState, user: UserId) {
        let Some(entry) = state.entry(user) else {
            return;
        };
        let member = state.members.remove(&user).expect("entry found above");
        for (ticket_id, _) in member.typing.iter().filter(|(_, t)| t.active) {
            self.announce(
                state,
                Skip::Nobody,
                PresenceChange::Typing {
                    user_id: user,
                    ticket_id: *ticket_id,
                    is_typing: false,
                },
            );
        }
        // Arrived within this batch, so nobody was told: the arrival is called off, and nothing
        // is said. (Were it kept as a leave, a tab that came, went and came again within one
        // batch would net out to nothing while the user is here, and their next leave would be
        // a `left` nobody saw join.)
        if state.entering.contains(&user) {
            state.entering.retain(|u| *u != user);
            return;
        }
        state.leaving.push(entry);
    }

    fn leave(&self, state: &mut RoomState, conn: ConnId) {
        state.board.retain(|c| c.id != conn);
        state.board_users.remove(&conn);
        state.drop_presence(conn);
    }

    /// Settles the batch's arrivals and departures with the other nodes, then writes the
    /// queued presence events: one message per socket, sockets in the same situation sharing
    /// it, a yield every [`FLUSH_CHUNK`] sockets.
    ///
    /// Whether a user joined or left the cluster is decided in one atomic step per batch
    /// ([`crate::ports::PresenceStore::enter`] and `exit`), so that `joined` and `left` are said
    /// once for the whole cluster.
    async fn flush(&self, state: &mut RoomState) {
        let mut leaving = std::mem::take(&mut state.leaving);
        let mut entering = std::mem::take(&mut state.entering);
        // Came and went within the batch (a grace period shorter than it): neither joined nor
        // left, for anyone.
        let unseen: Vec<UserId> = entering
            .iter()
            .filter(|u| !state.members.contains_key(u))
            .copied()
            .collect();
        leaving.retain(|e| !unseen.contains(&e.user_id));
        entering.retain(|u| state.members.contains_key(u));
        entering.dedup();
        let mut touched = std::mem::take(&mut state.touched);
        touched.retain(|u| state.members.contains_key(u) && !entering.contains(u));
        touched.sort();
        touched.dedup();
        let fresh = state.presence.iter().any(|s| s.fresh);
        let leaving_ids: Vec<UserId> = leaving.iter().map(|e| e.user_id).collect();
        let mut left: Vec<UserId> = leaving_ids.clone();
        let mut joined: Vec<UserId> = entering.clone();
        if let Some(store) = self.presence.clone() {
            let project = state.project;
            // Out first, then in: a user who left and came back within the batch keeps a lease.
            if !leaving_ids.is_empty() {
                match store.exit(project, &leaving_ids).await {
                    Ok(gone) => left = gone,
                    Err(e) => state.store_failed(&e),
                }
            }
            if !entering.is_empty() {
                let entries: Vec<PresenceEntry> =
                    entering.iter().filter_map(|u| state.entry(*u)).collect();
                match store.enter(project, &entries).await {
                    Ok(new) => joined = new,
                    Err(e) => state.store_failed(&e),
                }
            }
            if !touched.is_empty() {
                let entries: Vec<PresenceEntry> =
                    touched.iter().filter_map(|u| state.entry(*u)).collect();
                if let Err(e) = store.refresh(project, &entries).await {
                    state.store_failed(&e);
                }
            }
            if fresh {
                self.read_leases(state).await;
            }
        }
        // Left and back within one batch: neither.
        let both: Vec<UserId> = joined
            .iter()
            .filter(|u| left.contains(u))
            .copied()
            .collect();
        for entry in leaving {
            if both.contains(&entry.user_id) {
                continue;
            }
            if left.contains(&entry.user_id) {
                let change = PresenceChange::Left {
                    user_id: entry.user_id,
                    username: entry.username,
                };
                self.announce(state, Skip::Nobody, change);
            } else {
                // Still present on another node: from here on, a remote user.
                state.remote.entry(entry.user_id).or_insert((entry, None));
            }
        }
        for user in joined.iter().filter(|u| !both.contains(u)) {
            if let Some(entry) = state.entry(*user) {
                self.announce(state, Skip::Nobody, PresenceChange::Joined(entry));
            }
        }
        let snapshot = fresh.then(|| {
            let mut entries = state.entries();
            entries.extend(
                state
                    .remote
                    .iter()
                    .filter(|(u, _)| !state.members.contains_key(u))
                    .map(|(_, (e, _))| e.clone()),
            );
            entries.sort_by_key(|e| e.user_id);
            RoomFrame::new(RoomEvent::PresenceState(entries))
        });
        let batches = state.batches(snapshot);
        let mut gone = Vec::new();
        for (n, (i, batch)) in batches.into_iter().enumerate() {
            let conn = &state.presence[i].conn;
            if conn.push(ConnectionMsg::Room(batch)).is_err() {
                gone.push(conn.id);
            }
            if n % FLUSH_CHUNK == FLUSH_CHUNK - 1 {
                tokio::task::yield_now().await;
            }
        }
        for id in gone {
            state.drop_presence(id);
        }
    }
}

impl Actor for RoomActor {
    type Msg = RoomMsg;
    type State = RoomState;
    type Arguments = ProjectId;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        project: ProjectId,
    ) -> Result<Self::State, ActorProcessingErr> {
        crate::ports::interest(&self.bus, crate::ports::Topic::Project(project), true);
        let mut state = RoomState::new(project);
        state.lease_timer = self.presence.as_ref().map(|_| {
            myself.send_interval(self.config.presence_lease / 3, || RoomMsg::PresenceTick)
        });
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.lease_timer.take() {
            t.abort();
        }
        crate::ports::interest(
            &self.bus,
            crate::ports::Topic::Project(state.project),
            false,
        );
        for c in state.drain_sockets() {
            c.shared.kick(Disconnect::ActorRestart);
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
            RoomMsg::Join {
                user,
                kind,
                diff,
                conn,
                reply,
            } => {
                match kind {
                    RoomSocket::Board => {
                        let _ = conn.push(ConnectionMsg::Room(one(RoomEvent::Subscribed)));
                        state.board_users.insert(conn.id, user.id);
                        state.board.push(conn);
                    }
                    RoomSocket::Presence => {
                        let member = state.members.entry(user.id).or_insert_with(|| Member {
                            username: user.username.clone(),
                            display_name: user.name().to_owned(),
                            tabs: Vec::new(),
                            viewing: None,
                            typing: HashMap::new(),
                            gone_since: None,
                        });
                        // A user already here, or back within the grace period, did not join.
                        if member.tabs.is_empty() && member.gone_since.is_none() {
                            state.entering.push(user.id);
                        }
                        member.gone_since = None;
                        member.tabs.push((conn.id, None));
                        // Its `presence_state` goes out with the next flush.
                        state.presence.push(PresenceSocket {
                            conn,
                            user: user.id,
                            diff,
                            fresh: true,
                        });
                    }
                }
                let _ = reply.send(myself.clone());
            }
            RoomMsg::Leave(conn) => self.leave(state, conn),
            RoomMsg::Presence { conn, cmd } => self.on_presence(&myself, state, conn, cmd).await,
            RoomMsg::Board(event) => state.push_board(&event),
            RoomMsg::GraceCheck(user) => {
                let over = state.members.get(&user).is_some_and(|m| {
                    m.tabs.is_empty()
                        && m.gone_since.is_some_and(|t| {
                            t.elapsed() + Duration::from_millis(5) >= self.config.grace
                        })
                });
                if over {
                    self.depart(state, user);
                }
            }
            RoomMsg::TypingCheck(user, ticket_id) => {
                let quiet = state
                    .members
                    .get(&user)
                    .and_then(|m| m.typing.get(&ticket_id))
                    .is_some_and(|t| {
                        t.active
                            && t.heard.elapsed() + Duration::from_millis(5)
                                >= self.config.typing_idle
                    });
                if quiet {
                    if let Some(t) = state
                        .members
                        .get_mut(&user)
                        .and_then(|m| m.typing.get_mut(&ticket_id))
                    {
                        t.active = false;
                    }
                    self.announce(
                        state,
                        Skip::User(user),
                        PresenceChange::Typing {
                            user_id: user,
                            ticket_id,
                            is_typing: false,
                        },
                    );
                }
            }
            RoomMsg::Flush => {
                state.flush_scheduled = false;
                self.flush(state).await;
            }
            RoomMsg::PresenceTick => self.renew_leases(state).await,
            // After a gap on the bus, the same at once: what the gap lost is made up, though
            // nothing is reaped until every node had the time to renew its leases.
            RoomMsg::Resync => {
                state.spare_until = Some(Instant::now() + self.config.presence_lease);
                self.renew_leases(state).await;
            }
            RoomMsg::Remote(change) => {
                // A user present here (a tab, or within the grace period) was never gone for
                // this room's sockets: their joins and leaves elsewhere are not news here.
                let user = change.user();
                let here = state.members.contains_key(&user);
                let news = match &change {
                    PresenceChange::Joined(entry) => {
                        let new = state.remote.insert(user, (entry.clone(), None)).is_none();
                        new && !here
                    }
                    PresenceChange::Left { .. } => state.remote.remove(&user).is_some() && !here,
                    PresenceChange::Viewing { ticket_id, .. } => {
                        if let Some((entry, _)) = state.remote.get_mut(&user) {
                            entry.viewing = *ticket_id;
                        }
                        true
                    }
                    PresenceChange::Typing { .. } => true,
                };
                if news {
                    state.queue(Skip::User(user), change.event());
                }
            }
            RoomMsg::Revoke(users, reason) => {
                let mut out: Vec<ConnId> = state
                    .presence
                    .iter()
                    .filter(|s| users.contains(&s.user))
                    .map(|s| s.conn.id)
                    .collect();
                out.extend(
                    state
                        .board_users
                        .iter()
                        .filter(|(_, u)| users.contains(u))
                        .map(|(c, _)| *c),
                );
                for id in out {
                    if let Some(c) = state.sockets().find(|c| c.id == id) {
                        if c.push(ConnectionMsg::Close(reason)).is_err() {
                            c.shared.kick(reason);
                        }
                    }
                    self.leave(state, id);
                }
                // No grace for someone who may no longer be here: they leave at once (the
                // grace period is for a reloading tab, and they cannot come back).
                for user in users {
                    if state.members.get(&user).is_some_and(|m| m.tabs.is_empty()) {
                        self.depart(state, user);
                    }
                }
            }
            RoomMsg::Heartbeat => {
                let deadline = now_ms().saturating_sub(self.config.idle_timeout.as_millis() as u64);
                let mut silent = Vec::new();
                for c in state.sockets() {
                    if c.shared.last_seen_ms() < deadline {
                        c.shared.kick(Disconnect::Idle);
                        silent.push(c.id);
                    } else if c.push(ConnectionMsg::Ping).is_err() {
                        silent.push(c.id);
                    }
                }
                for id in silent {
                    self.leave(state, id);
                }
                state.forget_stopped_typing(self.config.typing_throttle);
            }
            RoomMsg::Snapshot(reply) => {
                let _ = reply.send(RoomSnapshot {
                    project: state.project,
                    board_sockets: state.board.len(),
                    presence_sockets: state.presence.len(),
                    members: state
                        .members
                        .iter()
                        .map(|(id, m)| (*id, m.username.clone(), m.tabs.len()))
                        .collect(),
                });
            }
            RoomMsg::Shutdown => {
                for c in state.drain_sockets() {
                    if c.push(ConnectionMsg::Close(Disconnect::Shutdown)).is_err() {
                        c.shared.kick(Disconnect::Shutdown);
                    }
                }
                state.members.clear();
                state.leaving.clear();
                myself.stop(Some("hub shutdown".into()));
                return Ok(());
            }
            #[cfg(feature = "testing")]
            RoomMsg::InjectFault => {
                panic!("injected fault in the room of project {}", state.project)
            }
        }
        for user in std::mem::take(&mut state.orphaned) {
            self.schedule_grace(&myself, user);
        }
        if state.flush_due() && !state.flush_scheduled {
            state.flush_scheduled = true;
            myself.send_after(state.batch_interval(), || RoomMsg::Flush);
        }
        if state.is_empty() && !state.flush_scheduled {
            myself.stop(Some("room empty".into()));
        }
        Ok(())
    }
}

mod leases;
mod state;

#[cfg(test)]
use state::with_diff;

#[cfg(test)]
mod tests;
