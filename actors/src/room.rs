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
    /// A presence frame was refused; the socket stays open.
    Error {
        /// A stable machine-readable code.
        code: &'static str,
        /// A human explanation.
        message: String,
    },
    /// The board socket is subscribed: everything committed from now on reaches it.
    Subscribed,
}

/// A presence change that crosses the bus between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceChange {
    /// The user is present in the cluster now (their first tab anywhere).
    Joined {
        /// The user.
        user_id: UserId,
        /// Their username.
        username: String,
    },
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
            PresenceChange::Joined { user_id, .. }
            | PresenceChange::Left { user_id, .. }
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

/// One event as a socket message.
fn one(event: RoomEvent) -> Arc<[Arc<RoomEvent>]> {
    Arc::from([Arc::new(event)])
}

/// How long presence events gather before they are written to the sockets.
const PRESENCE_BATCH: Duration = Duration::from_millis(20);

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

/// The live state of a room.
pub struct RoomState {
    project: ProjectId,
    board: Vec<ConnHandle>,
    presence: Vec<(ConnHandle, UserId)>,
    members: BTreeMap<UserId, Member>,
    /// Which tickets belong to the project (a ticket never moves between projects).
    tickets: HashMap<TicketId, bool>,
    /// Users whose last tab here just went (however it went); their grace timers start once
    /// the current message is handled.
    orphaned: Vec<UserId>,
    /// Presence events not yet written, per socket.
    pending: HashMap<ConnId, Vec<Arc<RoomEvent>>>,
    /// Whether a flush of `pending` is due.
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

impl RoomState {
    fn new(project: ProjectId) -> Self {
        RoomState {
            project,
            board: Vec::new(),
            presence: Vec::new(),
            members: BTreeMap::new(),
            tickets: HashMap::new(),
            orphaned: Vec::new(),
            pending: HashMap::new(),
            flush_scheduled: false,
            board_versions: HashMap::new(),
            lease_timer: None,
        }
    }

    fn push_board(&mut self, event: &RoomEvent) {
        if let RoomEvent::TicketUpdate { ticket, .. } = event {
            let newest = self.board_versions.entry(ticket.id).or_insert(0);
            if ticket.version <= *newest {
                return;
            }
            *newest = ticket.version;
        }
        let batch = one(event.clone());
        self.board
            .retain(|c| c.push(ConnectionMsg::Room(batch.clone())).is_ok());
    }

    /// Pushes to every presence socket but `except`.
    fn push_presence(&mut self, except: Option<ConnId>, event: RoomEvent) {
        self.push_presence_where(|conn, _| Some(conn) != except, event);
    }

    /// Queues an event for the presence sockets `to` selects. Presence events are written in
    /// batches (see [`RoomState::flush`]): a storm of joins or leaves is a few queue slots per
    /// socket, not one per user, so no socket is closed as a slow consumer for it.
    fn push_presence_where(&mut self, to: impl Fn(ConnId, UserId) -> bool, event: RoomEvent) {
        let event = Arc::new(event);
        for (conn, user) in &self.presence {
            if to(conn.id, *user) {
                self.pending.entry(conn.id).or_default().push(event.clone());
            }
        }
    }

    /// Writes the queued presence events, one queue slot per socket.
    fn flush(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        let mut gone = Vec::new();
        for (conn, _) in &self.presence {
            if let Some(events) = pending.remove(&conn.id) {
                if conn.push(ConnectionMsg::Room(events.into())).is_err() {
                    gone.push(conn.id);
                }
            }
        }
        for id in gone {
            self.drop_presence(id);
        }
    }

    fn send_to(&self, conn: ConnId, event: RoomEvent) {
        if let Some((c, _)) = self.presence.iter().find(|(c, _)| c.id == conn) {
            let _ = c.push(ConnectionMsg::Room(one(event)));
        }
    }

    /// Removes a presence socket; returns its user if that was their last tab here.
    fn drop_presence(&mut self, id: ConnId) -> Option<UserId> {
        let pos = self.presence.iter().position(|(c, _)| c.id == id)?;
        let (_, user) = self.presence.remove(pos);
        self.pending.remove(&id);
        let member = self.members.get_mut(&user)?;
        member.tabs.retain(|(c, _)| *c != id);
        if member.tabs.is_empty() && member.gone_since.is_none() {
            member.gone_since = Some(Instant::now());
            self.orphaned.push(user);
            return Some(user);
        }
        None
    }

    fn entries(&self) -> Vec<PresenceEntry> {
        self.members
            .iter()
            .map(|(id, m)| PresenceEntry {
                user_id: *id,
                username: m.username.clone(),
                display_name: m.display_name.clone(),
                viewing: m.viewing,
            })
            .collect()
    }

    /// Every socket of the room, board and presence.
    fn sockets(&self) -> impl Iterator<Item = &ConnHandle> {
        self.board
            .iter()
            .chain(self.presence.iter().map(|(c, _)| c))
    }

    /// Takes every socket out of the room.
    fn drain_sockets(&mut self) -> Vec<ConnHandle> {
        let mut all: Vec<ConnHandle> = self.board.drain(..).collect();
        all.extend(self.presence.drain(..).map(|(c, _)| c));
        self.pending.clear();
        all
    }

    fn is_empty(&self) -> bool {
        self.board.is_empty() && self.presence.is_empty() && self.members.is_empty()
    }
}

impl RoomActor {
    /// Whether a ticket belongs to the room's project (cached: tickets never move).
    async fn in_project(&self, state: &mut RoomState, ticket: TicketId) -> bool {
        if let Some(known) = state.tickets.get(&ticket) {
            return *known;
        }
        match self.deps.store.ticket(ticket).await {
            Ok(Some(t)) => {
                let ours = t.project_id == state.project;
                if state.tickets.len() < 100_000 {
                    state.tickets.insert(ticket, ours);
                }
                ours
            }
            // Not there (yet): ticket ids are handed out in order, so it may exist later.
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a ticket's project");
                false
            }
        }
    }

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
            .find(|(c, _)| c.id == conn)
            .map(|(_, u)| *u)
        else {
            return;
        };
        let ticket = match cmd {
            PresenceCommand::Viewing(t) => t,
            PresenceCommand::Typing { ticket_id, .. } => Some(ticket_id),
        };
        if let Some(t) = ticket {
            if !self.in_project(state, t).await {
                state.send_to(
                    conn,
                    RoomEvent::Error {
                        code: "not_found",
                        message: format!("Ticket {t} is not in this project."),
                    },
                );
                return;
            }
        }
        let Some(member) = state.members.get_mut(&user) else {
            return;
        };
        match cmd {
            PresenceCommand::Viewing(ticket_id) => {
                if let Some(tab) = member.tabs.iter_mut().find(|(c, _)| *c == conn) {
                    tab.1 = ticket_id;
                }
                member.viewing = ticket_id;
                if let (Some(store), Some(entry)) = (&self.deps.presence, Self::entry(state, user))
                {
                    if let Err(e) = store.enter(state.project, &entry).await {
                        tracing::warn!(error = %e, "cannot record presence");
                    }
                }
                self.announce(
                    state,
                    Some(conn),
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
                        Some(conn),
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

    /// Tells this node's presence sockets (but `except`) and the other nodes of a change.
    fn announce(&self, state: &mut RoomState, except: Option<ConnId>, change: PresenceChange) {
        self.deps.publish(crate::ports::BusEvent::Presence(
            state.project,
            change.clone(),
        ));
        state.push_presence(except, change.event());
    }

    /// Users whose last lease (on a dead node) this node found run out and removed: gone from
    /// the cluster, unless they are here.
    fn reap(&self, state: &mut RoomState, gone: Vec<(UserId, String)>) {
        for (user_id, username) in gone {
            if !state.members.contains_key(&user_id) {
                self.announce(state, None, PresenceChange::Left { user_id, username });
            }
        }
    }

    fn entry(state: &RoomState, user: UserId) -> Option<PresenceEntry> {
        state.members.get(&user).map(|m| PresenceEntry {
            user_id: user,
            username: m.username.clone(),
            display_name: m.display_name.clone(),
            viewing: m.viewing,
        })
    }

    /// A user's last tab left: after the grace period, unless a tab came back, they leave.
    fn schedule_grace(&self, myself: &ActorRef<RoomMsg>, user: UserId) {
        myself.send_after(self.config.grace, move || RoomMsg::GraceCheck(user));
    }

    fn leave(&self, state: &mut RoomState, conn: ConnId) {
        state.board.retain(|c| c.id != conn);
        state.drop_presence(conn);
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
                conn,
                reply,
            } => match kind {
                RoomSocket::Board => {
                    let _ = conn.push(ConnectionMsg::Room(one(RoomEvent::Subscribed)));
                    state.board.push(conn);
                    let _ = reply.send(myself.clone());
                }
                RoomSocket::Presence => {
                    let id = conn.id;
                    let member = state.members.entry(user.id).or_insert_with(|| Member {
                        username: user.username.clone(),
                        display_name: user.name().to_owned(),
                        tabs: Vec::new(),
                        viewing: None,
                        typing: HashMap::new(),
                        gone_since: None,
                    });
                    // A user already here, or back within the grace period, did not join.
                    let joined = member.tabs.is_empty() && member.gone_since.is_none();
                    member.gone_since = None;
                    member.tabs.push((id, None));
                    let mut entries = state.entries();
                    let mut elsewhere = false;
                    if let Some(store) = &self.deps.presence {
                        if joined {
                            let entry = Self::entry(state, user.id).expect("just added");
                            elsewhere =
                                store
                                    .enter(state.project, &entry)
                                    .await
                                    .unwrap_or_else(|e| {
                                        tracing::warn!(error = %e, "cannot record presence");
                                        false
                                    });
                        }
                        // Users present only on other nodes.
                        match store.others(state.project).await {
                            Ok((others, gone)) => {
                                for o in others {
                                    if !entries.iter().any(|e| e.user_id == o.user_id) {
                                        entries.push(o);
                                    }
                                }
                                entries.sort_by_key(|e| e.user_id);
                                self.reap(state, gone);
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot read presence"),
                        }
                    }
                    let _ = conn.push(ConnectionMsg::Room(one(RoomEvent::PresenceState(entries))));
                    state.presence.push((conn, user.id));
                    if joined && !elsewhere {
                        self.announce(
                            state,
                            Some(id),
                            PresenceChange::Joined {
                                user_id: user.id,
                                username: user.username.clone(),
                            },
                        );
                    }
                    let _ = reply.send(myself.clone());
                }
            },
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
                    let member = state.members.remove(&user).expect("checked above");
                    for (ticket_id, _) in member.typing.iter().filter(|(_, t)| t.active) {
                        self.announce(
                            state,
                            None,
                            PresenceChange::Typing {
                                user_id: user,
                                ticket_id: *ticket_id,
                                is_typing: false,
                            },
                        );
                    }
                    // Still present on another node: not gone from the project.
                    let elsewhere = match &self.deps.presence {
                        Some(store) => store.exit(state.project, user).await.unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "cannot record presence");
                            false
                        }),
                        None => false,
                    };
                    if !elsewhere {
                        self.announce(
                            state,
                            None,
                            PresenceChange::Left {
                                user_id: user,
                                username: member.username,
                            },
                        );
                    }
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
                    let change = PresenceChange::Typing {
                        user_id: user,
                        ticket_id,
                        is_typing: false,
                    };
                    self.deps.publish(crate::ports::BusEvent::Presence(
                        state.project,
                        change.clone(),
                    ));
                    state.push_presence_where(|_, to| to != user, change.event());
                }
            }
            RoomMsg::Flush => {
                state.flush_scheduled = false;
                state.flush();
            }
            RoomMsg::PresenceTick => {
                if let Some(store) = self.deps.presence.clone() {
                    let mine: Vec<PresenceEntry> = state.entries();
                    if let Err(e) = store.refresh(state.project, &mine).await {
                        tracing::warn!(error = %e, "cannot renew presence leases");
                    }
                    match store.others(state.project).await {
                        Ok((_, gone)) => self.reap(state, gone),
                        Err(e) => tracing::warn!(error = %e, "cannot read presence"),
                    }
                }
            }
            RoomMsg::Remote(change) => {
                // A local member's own changes are said here already.
                let local = state
                    .members
                    .get(&change.user())
                    .is_some_and(|m| !m.tabs.is_empty());
                if !local
                    || matches!(
                        change,
                        PresenceChange::Viewing { .. } | PresenceChange::Typing { .. }
                    )
                {
                    state.push_presence_where(|_, to| to != change.user(), change.event());
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
        if !state.pending.is_empty() && !state.flush_scheduled {
            state.flush_scheduled = true;
            myself.send_after(PRESENCE_BATCH, || RoomMsg::Flush);
        }
        if state.is_empty() {
            myself.stop(Some("room empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnShared;
    use crate::ticket_domain::{sample_ticket, TicketStatus};
    use tokio::sync::mpsc;

    fn socket(id: u64) -> (ConnHandle, mpsc::Receiver<ConnectionMsg>) {
        let (tx, rx) = mpsc::channel(16);
        let conn = ConnHandle {
            id: ConnId(id),
            tx,
            shared: ConnShared::new(),
            max_queued_bytes: 1 << 20,
        };
        (conn, rx)
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
        let versions = |rx: &mut mpsc::Receiver<ConnectionMsg>| {
            let mut out = Vec::new();
            while let Ok(ConnectionMsg::Room(batch)) = rx.try_recv() {
                for e in batch.iter() {
                    if let RoomEvent::TicketUpdate { ticket, .. } = e.as_ref() {
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
        let (Ok(ConnectionMsg::Room(x)), Ok(ConnectionMsg::Room(y))) =
            (rc.try_recv(), rd.try_recv())
        else {
            panic!("both sockets get the update");
        };
        assert!(Arc::ptr_eq(&x, &y));
    }

    #[test]
    fn presence_events_wait_for_the_flush_and_go_in_one_slot() {
        let mut state = RoomState::new(ProjectId(1));
        let (a, mut ra) = socket(1);
        state.presence.push((a, UserId(7)));
        for user in 0..100 {
            state.push_presence(
                None,
                PresenceChange::Joined {
                    user_id: UserId(user),
                    username: format!("u{user}"),
                }
                .event(),
            );
        }
        assert!(
            ra.try_recv().is_err(),
            "nothing is written before the flush"
        );
        state.flush();
        let Ok(ConnectionMsg::Room(batch)) = ra.try_recv() else {
            panic!("one message");
        };
        assert_eq!(batch.len(), 100);
        assert!(ra.try_recv().is_err());
    }
}
