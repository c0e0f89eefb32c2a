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
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use crate::connection::{now_ms, ConnHandle, ConnId, ConnectionMsg, Disconnect};
use crate::directory::Keyed;
use crate::domain::{ProjectId, UserId};
use crate::notifier::Deps;
use crate::ticket_domain::{Comment, Ticket, TicketId};

/// What a board event says happened to a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardAction {
    /// The ticket was created.
    Created,
    /// Its status moved.
    StatusChanged,
    /// Something else changed (assignees).
    Updated,
}

impl BoardAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BoardAction::Created => "created",
            BoardAction::StatusChanged => "status_changed",
            BoardAction::Updated => "updated",
        }
    }

    /// The action by its wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(BoardAction::Created),
            "status_changed" => Some(BoardAction::StatusChanged),
            "updated" => Some(BoardAction::Updated),
            _ => None,
        }
    }
}

/// One present user, as `presence_state` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The user.
    pub user_id: UserId,
    /// Their username.
    pub username: String,
    /// Their display name.
    pub display_name: String,
    /// The ticket their most recent tab looks at.
    pub viewing: Option<TicketId>,
}

/// What a room pushes to its sockets; the adapter renders the JSON.
#[derive(Clone, Debug)]
pub enum RoomEvent {
    /// A ticket of the project was created or changed (board sockets).
    TicketUpdate {
        /// What happened.
        action: BoardAction,
        /// The ticket after the change.
        ticket: Arc<Ticket>,
    },
    /// A comment was added to a ticket of the project (board sockets).
    CommentAdded {
        /// The ticket.
        ticket: Arc<Ticket>,
        /// The comment.
        comment: Arc<Comment>,
    },
    /// Who is present, sent to a presence socket when it joins.
    PresenceState(Vec<PresenceEntry>),
    /// A user joined or left, looks at a ticket, or types (presence sockets).
    Presence(PresenceChange),
    /// The joins and leaves of one batch in one frame, for presence sockets that asked for
    /// diffs (`?presence=diff`): a storm of arrivals is one frame per batch, not one per user.
    PresenceDiff {
        /// Users who joined.
        joins: Vec<PresenceEntry>,
        /// Users who left: (id, username).
        leaves: Vec<(UserId, String)>,
    },
    /// The board socket is subscribed: everything committed from now on reaches it.
    Subscribed,
}

/// A room event on its way to sockets, with its text once the first socket rendered it: every
/// socket that gets the same frame shares the one rendering.
#[derive(Debug)]
pub struct RoomFrame {
    event: RoomEvent,
    text: OnceLock<Box<[u8]>>,
}

impl RoomFrame {
    /// A frame for `event`, not rendered yet.
    pub fn new(event: RoomEvent) -> Arc<Self> {
        Arc::new(RoomFrame {
            event,
            text: OnceLock::new(),
        })
    }

    /// The event.
    pub fn event(&self) -> &RoomEvent {
        &self.event
    }

    /// The frame's text, rendered by `render` on first use.
    pub fn text(&self, render: impl FnOnce(&RoomEvent) -> Vec<u8>) -> &[u8] {
        self.text
            .get_or_init(|| render(&self.event).into_boxed_slice())
    }

    /// A cheap estimate of the frame's size on the wire.
    pub fn estimated_bytes(&self) -> usize {
        if let Some(t) = self.text.get() {
            return t.len();
        }
        match &self.event {
            RoomEvent::PresenceState(users) => 64 + 96 * users.len(),
            RoomEvent::PresenceDiff { joins, leaves } => 64 + 96 * (joins.len() + leaves.len()),
            _ => 256,
        }
    }
}

/// A presence change that crosses the bus between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceChange {
    /// The user is present in the cluster now (their first tab anywhere).
    Joined(PresenceEntry),
    /// The user's last tab anywhere is gone, and the grace period passed.
    Left {
        /// The user.
        user_id: UserId,
        /// Their username.
        username: String,
    },
    /// The user looks at a ticket, or at none.
    Viewing {
        /// The user.
        user_id: UserId,
        /// The ticket.
        ticket_id: Option<TicketId>,
    },
    /// The user types under a ticket's comments, or stopped.
    Typing {
        /// The user.
        user_id: UserId,
        /// The ticket.
        ticket_id: TicketId,
        /// Typing or stopped.
        is_typing: bool,
    },
}

impl PresenceChange {
    /// The frame the change becomes on a presence socket.
    pub fn event(&self) -> RoomEvent {
        RoomEvent::Presence(self.clone())
    }

    /// The user it is about.
    pub fn user(&self) -> UserId {
        match self {
            PresenceChange::Joined(entry) => entry.user_id,
            PresenceChange::Left { user_id, .. }
            | PresenceChange::Viewing { user_id, .. }
            | PresenceChange::Typing { user_id, .. } => *user_id,
        }
    }
}

/// Which of a project's sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomSocket {
    /// `/ws/projects/{id}/tickets/`.
    Board,
    /// `/ws/projects/{id}/presence/`.
    Presence,
}

/// What a presence socket's client says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceCommand {
    /// `{"type":"ticket_viewing","ticket_id":T|null}`.
    Viewing(Option<TicketId>),
    /// `{"type":"user_typing","ticket_id":T,"is_typing":bool}`.
    Typing {
        /// The ticket.
        ticket_id: TicketId,
        /// Typing or stopped.
        is_typing: bool,
    },
}

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
    /// Shared dependencies.
    pub deps: Arc<Deps>,
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
    /// The users present on other nodes only, as this room's sockets were told, each with the
    /// number of lease reads in a row that missed them. Kept in step with the bus and, as a
    /// backstop for what a gap on the bus lost, with the leases themselves.
    remote: BTreeMap<UserId, (PresenceEntry, u8)>,
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

/// The joins and leaves among `events` as one diff frame (a user who joined and left within
/// the batch, or left and came back, is in neither), followed by the other events in order.
fn with_diff<'a>(events: impl Iterator<Item = &'a Arc<RoomFrame>>) -> Vec<Arc<RoomFrame>> {
    let mut net: BTreeMap<UserId, (bool, bool, Option<PresenceEntry>, String)> = BTreeMap::new();
    let mut rest = Vec::new();
    for frame in events {
        match frame.event() {
            RoomEvent::Presence(PresenceChange::Joined(entry)) => {
                let e = net
                    .entry(entry.user_id)
                    .or_insert((true, true, None, String::new()));
                e.1 = true;
                e.2 = Some(entry.clone());
            }
            RoomEvent::Presence(PresenceChange::Left { user_id, username }) => {
                let e = net
                    .entry(*user_id)
                    .or_insert((false, false, None, String::new()));
                e.1 = false;
                e.3.clone_from(username);
            }
            _ => rest.push(frame.clone()),
        }
    }
    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    for (user, (first_joined, last_joined, entry, username)) in net {
        match (first_joined, last_joined, entry) {
            (true, true, Some(entry)) => joins.push(entry),
            (false, false, _) => leaves.push((user, username)),
            _ => {}
        }
    }
    if !joins.is_empty() || !leaves.is_empty() {
        rest.insert(0, RoomFrame::new(RoomEvent::PresenceDiff { joins, leaves }));
    }
    rest
}

impl RoomState {
    fn new(project: ProjectId) -> Self {
        RoomState {
            project,
            board: Vec::new(),
            board_users: HashMap::new(),
            presence: Vec::new(),
            members: BTreeMap::new(),
            orphaned: Vec::new(),
            pending: Vec::new(),
            entering: Vec::new(),
            leaving: Vec::new(),
            remote: BTreeMap::new(),
            touched: Vec::new(),
            flush_scheduled: false,
            board_versions: HashMap::new(),
            lease_timer: None,
        }
    }

    fn push_board(&mut self, event: &RoomEvent) {
        if let RoomEvent::TicketUpdate { ticket, .. } = event {
            // The newest version seen of each ticket keeps a late, older update off the
            // board. Bounded: past the cap the map starts over (a board may then show one
            // update out of order, which the next one corrects).
            if self.board_versions.len() >= BOARD_VERSIONS_KEPT
                && !self.board_versions.contains_key(&ticket.id)
            {
                self.board_versions.clear();
            }
            let newest = self.board_versions.entry(ticket.id).or_insert(0);
            if ticket.version <= *newest {
                return;
            }
            *newest = ticket.version;
        }
        let batch = one(event.clone());
        let users = &mut self.board_users;
        self.board.retain(|c| {
            let ok = c.push(ConnectionMsg::Room(batch.clone())).is_ok();
            if !ok {
                users.remove(&c.id);
            }
            ok
        });
    }

    /// Queues a presence event for every presence socket but those `skip` spares. Presence
    /// events are written in batches (see [`RoomActor::flush`]).
    fn queue(&mut self, skip: Skip, event: RoomEvent) {
        self.pending.push((RoomFrame::new(event), skip));
    }

    /// Whether anything waits for a flush.
    fn flush_due(&self) -> bool {
        !self.pending.is_empty()
            || !self.entering.is_empty()
            || !self.leaving.is_empty()
            || !self.touched.is_empty()
            || self.presence.iter().any(|s| s.fresh)
    }

    /// How long presence events gather: longer in a bigger room.
    fn batch_interval(&self) -> Duration {
        (Duration::from_micros(20) * self.presence.len() as u32)
            .clamp(PRESENCE_BATCH, PRESENCE_BATCH_MAX)
    }

    /// What each presence socket gets from the queued events: a socket that just joined gets
    /// `state` (which already says who joined, left and looks at what) and the typing relays;
    /// the others get the events, with joins and leaves as one diff frame if they asked for
    /// it. Sockets in the same situation share one message.
    fn batches(&mut self, state: Option<Arc<RoomFrame>>) -> Vec<(usize, Batch)> {
        let pending = std::mem::take(&mut self.pending);
        let for_fresh = |frame: &Arc<RoomFrame>| {
            matches!(
                frame.event(),
                RoomEvent::Presence(PresenceChange::Typing { .. })
            )
        };
        let build = |socket: Option<&PresenceSocket>, fresh: bool, diff: bool| -> Batch {
            let events = pending
                .iter()
                .filter(|(_, skip)| socket.is_none_or(|s| !skip.spares(s)))
                .map(|(frame, _)| frame);
            let mut out: Vec<Arc<RoomFrame>> = Vec::new();
            if fresh {
                out.extend(state.iter().cloned());
                out.extend(events.filter(|f| for_fresh(f)).cloned());
            } else if diff {
                out = with_diff(events);
            } else {
                out.extend(events.cloned());
            }
            out.into()
        };
        let mut shared: HashMap<(bool, bool), Batch> = HashMap::new();
        let mut out = Vec::new();
        for (i, socket) in self.presence.iter_mut().enumerate() {
            let (fresh, diff) = (std::mem::take(&mut socket.fresh), socket.diff);
            let spared = pending.iter().any(|(_, skip)| skip.spares(socket));
            let batch = if spared {
                build(Some(socket), fresh, diff)
            } else {
                shared
                    .entry((fresh, diff))
                    .or_insert_with(|| build(None, fresh, diff))
                    .clone()
            };
            if !batch.is_empty() {
                out.push((i, batch));
            }
        }
        out
    }

    /// Removes a presence socket; returns its user if that was their last tab here.
    fn drop_presence(&mut self, id: ConnId) -> Option<UserId> {
        let pos = self.presence.iter().position(|s| s.conn.id == id)?;
        let user = self.presence.remove(pos).user;
        let member = self.members.get_mut(&user)?;
        member.tabs.retain(|(c, _)| *c != id);
        if member.tabs.is_empty() && member.gone_since.is_none() {
            member.gone_since = Some(Instant::now());
            self.orphaned.push(user);
            return Some(user);
        }
        None
    }

    fn entry(&self, user: UserId) -> Option<PresenceEntry> {
        self.members.get(&user).map(|m| PresenceEntry {
            user_id: user,
            username: m.username.clone(),
            display_name: m.display_name.clone(),
            viewing: m.viewing,
        })
    }

    fn entries(&self) -> Vec<PresenceEntry> {
        self.members
            .keys()
            .filter_map(|id| self.entry(*id))
            .collect()
    }

    /// Every socket of the room, board and presence.
    fn sockets(&self) -> impl Iterator<Item = &ConnHandle> {
        self.board
            .iter()
            .chain(self.presence.iter().map(|s| &s.conn))
    }

    /// Forgets typing entries that stopped and whose throttle ran out: they only held back a
    /// relay that can no longer come too soon.
    fn forget_stopped_typing(&mut self, throttle: Duration) {
        for member in self.members.values_mut() {
            member
                .typing
                .retain(|_, t| t.active || t.relayed.elapsed() < throttle);
        }
    }

    /// Takes every socket out of the room.
    fn drain_sockets(&mut self) -> Vec<ConnHandle> {
        self.board_users.clear();
        let mut all: Vec<ConnHandle> = self.board.drain(..).collect();
        all.extend(self.presence.drain(..).map(|s| s.conn));
        self.pending.clear();
        all
    }

    fn is_empty(&self) -> bool {
        self.board.is_empty()
            && self.presence.is_empty()
            && self.members.is_empty()
            && self.leaving.is_empty()
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

    /// Tells this node's presence sockets (but those `skip` spares) and the other nodes of a
    /// change.
    fn announce(&self, state: &mut RoomState, skip: Skip, change: PresenceChange) {
        self.deps.publish(crate::ports::BusEvent::Presence(
            state.project,
            change.clone(),
        ));
        state.queue(skip, change.event());
    }

    /// Users whose last lease (on a dead node) this node found run out and removed: gone from
    /// the cluster, unless they are here. The other nodes hear of it; this node's sockets only
    /// if they were told the user was present.
    fn reap(&self, state: &mut RoomState, gone: Vec<(UserId, String)>) {
        for (user_id, username) in gone {
            if state.members.contains_key(&user_id) {
                continue;
            }
            let change = PresenceChange::Left { user_id, username };
            self.deps.publish(crate::ports::BusEvent::Presence(
                state.project,
                change.clone(),
            ));
            if state.remote.remove(&user_id).is_some() {
                state.queue(Skip::Nobody, change.event());
            }
        }
    }

    /// Reads the other nodes' leases: reaps the run-out ones, and brings the room's view of
    /// who is present elsewhere in step with them.
    async fn read_leases(&self, state: &mut RoomState) {
        let Some(store) = self.deps.presence.clone() else {
            return;
        };
        match store.others(state.project).await {
            Ok((others, gone)) => {
                self.reap(state, gone);
                Self::reconcile(state, others);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read presence"),
        }
    }

    /// Brings the view of who is present on other nodes in step with their live leases, for
    /// this node's sockets only (each node does its own): a user the bus did not announce (a
    /// gap) is `joined` here now; one missing from two lease reads in a row (a lease is renewed
    /// every third of its life, so a live one is never missed twice) is `left`.
    fn reconcile(state: &mut RoomState, others: Vec<PresenceEntry>) {
        let seen: std::collections::HashSet<UserId> = others.iter().map(|e| e.user_id).collect();
        for entry in others {
            match state.remote.get_mut(&entry.user_id) {
                Some(known) => *known = (entry, 0),
                None if state.members.contains_key(&entry.user_id) => {}
                None => {
                    state.remote.insert(entry.user_id, (entry.clone(), 0));
                    state.queue(Skip::Nobody, PresenceChange::Joined(entry).event());
                }
            }
        }
        let mut gone = Vec::new();
        for (user, (_, missed)) in state.remote.iter_mut() {
            if !seen.contains(user) {
                *missed += 1;
                if *missed >= 2 {
                    gone.push(*user);
                }
            }
        }
        for user in gone {
            let (entry, _) = state.remote.remove(&user).expect("listed above");
            if !state.members.contains_key(&user) {
                let change = PresenceChange::Left {
                    user_id: user,
                    username: entry.username,
                };
                state.queue(Skip::Nobody, change.event());
            }
        }
    }

    /// A user's last tab left: after the grace period, unless a tab came back, they leave.
    fn schedule_grace(&self, myself: &ActorRef<RoomMsg>, user: UserId) {
        myself.send_after(self.config.grace, move || RoomMsg::GraceCheck(user));
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
        if let Some(store) = self.deps.presence.clone() {
            let project = state.project;
            // Out first, then in: a user who left and came back within the batch keeps a lease.
            if !leaving_ids.is_empty() {
                match store.exit(project, &leaving_ids).await {
                    Ok(gone) => left = gone,
                    Err(e) => tracing::warn!(error = %e, "cannot record presence"),
                }
            }
            if !entering.is_empty() {
                let entries: Vec<PresenceEntry> =
                    entering.iter().filter_map(|u| state.entry(*u)).collect();
                match store.enter(project, &entries).await {
                    Ok(new) => joined = new,
                    Err(e) => tracing::warn!(error = %e, "cannot record presence"),
                }
            }
            if !touched.is_empty() {
                let entries: Vec<PresenceEntry> =
                    touched.iter().filter_map(|u| state.entry(*u)).collect();
                if let Err(e) = store.refresh(project, &entries).await {
                    tracing::warn!(error = %e, "cannot record presence");
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
                state.remote.entry(entry.user_id).or_insert((entry, 0));
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
        let mut state = RoomState::new(project);
        state.lease_timer = self.deps.presence.as_ref().map(|_| {
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
                    let entry = state.entry(user).expect("checked above");
                    let member = state.members.remove(&user).expect("checked above");
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
                    // `left` goes out with the next flush, unless another node has them.
                    state.leaving.push(entry);
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
            // After a gap on the bus, the same at once: what the gap lost is made up.
            RoomMsg::PresenceTick | RoomMsg::Resync => {
                if let Some(store) = self.deps.presence.clone() {
                    let mine: Vec<PresenceEntry> = state.entries();
                    if let Err(e) = store.refresh(state.project, &mine).await {
                        tracing::warn!(error = %e, "cannot renew presence leases");
                    }
                    self.read_leases(state).await;
                }
            }
            RoomMsg::Remote(change) => {
                // A user present here (a tab, or within the grace period) was never gone for
                // this room's sockets: their joins and leaves elsewhere are not news here.
                let user = change.user();
                let here = state.members.contains_key(&user);
                let news = match &change {
                    PresenceChange::Joined(entry) => {
                        let new = state.remote.insert(user, (entry.clone(), 0)).is_none();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Outbound;
    use crate::ticket_domain::{sample_ticket, TicketStatus};

    fn socket(id: u64) -> (ConnHandle, Outbound) {
        ConnHandle::new(ConnId(id), 16, 1 << 20)
    }

    fn update(version: i64) -> RoomEvent {
        let mut ticket = sample_ticket(TicketStatus::Open);
        ticket.version = version;
        RoomEvent::TicketUpdate {
            action: BoardAction::StatusChanged,
            ticket: Arc::new(ticket),
        }
    }

    #[test]
    fn a_board_update_older_than_one_pushed_is_dropped_and_a_batch_is_shared() {
        let mut state = RoomState::new(ProjectId(1));
        let (a, mut ra) = socket(1);
        let (b, mut rb) = socket(2);
        state.board.extend([a, b]);
        state.push_board(&update(3));
        // Read late from another node: an older version after a newer one.
        state.push_board(&update(2));
        state.push_board(&update(3));
        state.push_board(&update(4));
        let versions = |rx: &mut Outbound| {
            let mut out = Vec::new();
            while let Some(ConnectionMsg::Room(batch)) = rx.try_recv() {
                for e in batch.iter() {
                    if let RoomEvent::TicketUpdate { ticket, .. } = e.event() {
                        out.push(ticket.version);
                    }
                }
            }
            out
        };
        assert_eq!(versions(&mut ra), vec![3, 4]);
        assert_eq!(versions(&mut rb), vec![3, 4]);
        // One allocation for every socket: the batch is shared, not copied.
        let (c, mut rc) = socket(3);
        let (d, mut rd) = socket(4);
        state.board = vec![c, d];
        state.push_board(&update(5));
        let (Some(ConnectionMsg::Room(x)), Some(ConnectionMsg::Room(y))) =
            (rc.try_recv(), rd.try_recv())
        else {
            panic!("both sockets get the update");
        };
        assert!(Arc::ptr_eq(&x, &y));
    }

    #[test]
    fn a_room_remembers_a_bounded_number_of_board_versions() {
        let mut state = RoomState::new(ProjectId(1));
        for id in 0..(BOARD_VERSIONS_KEPT as i64 * 2 + 5) {
            let mut ticket = sample_ticket(TicketStatus::Open);
            ticket.id = crate::ticket_domain::TicketId(id);
            state.push_board(&RoomEvent::TicketUpdate {
                action: BoardAction::Updated,
                ticket: Arc::new(ticket),
            });
            assert!(state.board_versions.len() <= BOARD_VERSIONS_KEPT);
        }
    }

    #[test]
    fn stopped_typers_are_forgotten_once_their_throttle_ran_out() {
        let mut state = RoomState::new(ProjectId(1));
        let long_ago = Instant::now() - Duration::from_secs(60);
        let typing = |active: bool, relayed: Instant| Typing {
            relayed,
            heard: relayed,
            active,
        };
        state.members.insert(
            UserId(1),
            Member {
                username: "u1".into(),
                display_name: String::new(),
                tabs: Vec::new(),
                viewing: None,
                typing: [
                    (crate::ticket_domain::TicketId(1), typing(false, long_ago)),
                    (crate::ticket_domain::TicketId(2), typing(true, long_ago)),
                    (
                        crate::ticket_domain::TicketId(3),
                        typing(false, Instant::now()),
                    ),
                ]
                .into_iter()
                .collect(),
                gone_since: None,
            },
        );
        state.forget_stopped_typing(Duration::from_secs(1));
        let mut left: Vec<i64> = state.members[&UserId(1)]
            .typing
            .keys()
            .map(|t| t.0)
            .collect();
        left.sort();
        assert_eq!(
            left,
            [2, 3],
            "a stopped typer past the throttle is forgotten"
        );
    }

    fn joined(user: i64) -> RoomEvent {
        PresenceChange::Joined(PresenceEntry {
            user_id: UserId(user),
            username: format!("u{user}"),
            display_name: format!("U {user}"),
            viewing: None,
        })
        .event()
    }

    fn left(user: i64) -> RoomEvent {
        PresenceChange::Left {
            user_id: UserId(user),
            username: format!("u{user}"),
        }
        .event()
    }

    fn presence_socket(id: u64, user: i64, diff: bool, fresh: bool) -> PresenceSocket {
        PresenceSocket {
            conn: socket(id).0,
            user: UserId(user),
            diff,
            fresh,
        }
    }

    #[test]
    fn a_batch_is_one_message_per_socket_shared_by_sockets_alike() {
        let mut state = RoomState::new(ProjectId(1));
        state.presence = vec![
            presence_socket(1, 1, false, false),
            presence_socket(2, 2, false, false),
            presence_socket(3, 3, true, false),
            presence_socket(4, 4, true, false),
            presence_socket(5, 5, false, true),
            // The typing user's own socket is spared their relay.
            presence_socket(6, 9, false, false),
        ];
        for user in 100..200 {
            state.queue(Skip::Nobody, joined(user));
        }
        state.queue(
            Skip::User(UserId(9)),
            PresenceChange::Typing {
                user_id: UserId(9),
                ticket_id: TicketId(1),
                is_typing: true,
            }
            .event(),
        );
        let present = RoomFrame::new(RoomEvent::PresenceState(Vec::new()));
        let batches: HashMap<usize, Batch> = state.batches(Some(present)).into_iter().collect();
        assert_eq!(batches.len(), 6);
        // One frame per event for seed clients, the same message for both.
        assert_eq!(batches[&0].len(), 101);
        assert!(Arc::ptr_eq(&batches[&0], &batches[&1]));
        // Diff sockets: one diff frame with the 100 joins, then the typing relay.
        assert_eq!(batches[&2].len(), 2);
        assert!(Arc::ptr_eq(&batches[&2], &batches[&3]));
        let RoomEvent::PresenceDiff { joins, leaves } = batches[&2][0].event() else {
            panic!("a diff first");
        };
        assert_eq!((joins.len(), leaves.len()), (100, 0));
        // A socket that just joined gets the state (which says who joined) and the relay.
        assert!(matches!(
            batches[&4][0].event(),
            RoomEvent::PresenceState(_)
        ));
        assert_eq!(batches[&4].len(), 2);
        // The typing user's socket: the joins only.
        assert_eq!(batches[&5].len(), 100);
        // Nothing is left for the next flush, and nobody is fresh any more.
        assert!(!state.flush_due());
    }

    #[test]
    fn a_diff_nets_out_who_came_and_went_within_the_batch() {
        let frames: Vec<Arc<RoomFrame>> =
            [joined(1), left(1), left(2), joined(2), joined(3), left(4)]
                .into_iter()
                .map(RoomFrame::new)
                .collect();
        let out = with_diff(frames.iter());
        assert_eq!(out.len(), 1);
        let RoomEvent::PresenceDiff { joins, leaves } = out[0].event() else {
            panic!("one diff");
        };
        assert_eq!(
            joins.iter().map(|e| e.user_id.0).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(leaves.iter().map(|(u, _)| u.0).collect::<Vec<_>>(), vec![4]);
        assert!(with_diff([].iter()).is_empty());
    }

    #[test]
    fn a_bigger_room_batches_longer_within_bounds() {
        let mut state = RoomState::new(ProjectId(1));
        assert_eq!(state.batch_interval(), PRESENCE_BATCH);
        state.presence = (0..5_000)
            .map(|i| presence_socket(i, i as i64, false, false))
            .collect();
        assert_eq!(state.batch_interval(), Duration::from_millis(100));
        state.presence = (0..50_000)
            .map(|i| presence_socket(i, i as i64, false, false))
            .collect();
        assert_eq!(state.batch_interval(), PRESENCE_BATCH_MAX);
    }

    fn entry(user: i64) -> PresenceEntry {
        PresenceEntry {
            user_id: UserId(user),
            username: format!("u{user}"),
            display_name: format!("U {user}"),
            viewing: None,
        }
    }

    fn said(state: &mut RoomState) -> Vec<String> {
        std::mem::take(&mut state.pending)
            .iter()
            .map(|(f, _)| match f.event() {
                RoomEvent::Presence(PresenceChange::Joined(e)) => format!("+{}", e.user_id.0),
                RoomEvent::Presence(PresenceChange::Left { user_id, .. }) => {
                    format!("-{}", user_id.0)
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_view_of_other_nodes_follows_their_leases_when_the_bus_missed_it() {
        let mut state = RoomState::new(ProjectId(1));
        state.members.insert(
            UserId(2),
            Member {
                username: "u2".into(),
                display_name: "U 2".into(),
                tabs: vec![(ConnId(1), None)],
                viewing: None,
                typing: HashMap::new(),
                gone_since: None,
            },
        );
        // User 1 is on another node and the bus never said so; user 2 is here as well.
        RoomActor::reconcile(&mut state, vec![entry(1), entry(2)]);
        assert_eq!(said(&mut state), vec!["+1"]);
        RoomActor::reconcile(&mut state, vec![entry(1), entry(2)]);
        assert!(said(&mut state).is_empty(), "said once");
        // One read that misses a user may be a lease between renewals: nothing yet.
        RoomActor::reconcile(&mut state, vec![entry(2)]);
        assert!(said(&mut state).is_empty());
        RoomActor::reconcile(&mut state, vec![entry(1), entry(2)]);
        RoomActor::reconcile(&mut state, vec![]);
        assert!(
            said(&mut state).is_empty(),
            "a miss is forgiven once seen again"
        );
        RoomActor::reconcile(&mut state, vec![]);
        assert_eq!(said(&mut state), vec!["-1"]);
        assert!(state.remote.is_empty());
    }
}
