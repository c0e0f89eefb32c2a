//! The hub: the root supervisor and the handle the adapters hold.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::connection::{ConnHandle, ConnId, Disconnect};
use crate::directory::{Directory, DirectoryMsg, DirectoryStats, Keyed, Map};
use crate::domain::{ProjectId, Role, User, UserId};
use crate::notification::{ticket_wording, EventDetails, Notification, TicketSummary};
use crate::notifier::{Content, Deps};
use crate::ports::{BusEvent, NewTicket, Store, StoreError};
use crate::room::{BoardAction, RoomActor, RoomEvent, RoomMsg, RoomSocket};
use crate::routing::{Channel, EventType, Parties, RoutingTable};
use crate::ticket::{Applied, TicketActor, TicketError, TicketMsg};
use crate::ticket_domain::{Action, Principal, Ticket, TicketId};
use crate::user::{execute, Attached, CommandOutcome, Resume, UserActor, UserCommand, UserMsg};

/// Settings of the actor system.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// How often every socket is sent a protocol ping.
    pub ping_interval: Duration,
    /// A socket silent for longer than this is closed.
    pub idle_timeout: Duration,
    /// How long a call into an actor may take before it counts as failed.
    pub call_timeout: Duration,
    /// How long a ticket actor lives without messages.
    pub ticket_idle: Duration,
    /// The most notifications one replay sends.
    pub replay_cap: i64,
    /// How long an out-of-order live notification waits before the gap is read from the
    /// database.
    pub gap_wait: Duration,
    /// Project rooms: presence grace period and typing timings.
    pub rooms: crate::room::RoomConfig,
    /// Where the room actors run: a runtime of their own, whose threads run at a lower CPU
    /// priority, so that a presence storm yields the CPU to notifications. `None`: the
    /// runtime that starts the hub.
    pub rooms_runtime: Option<tokio::runtime::Handle>,
    /// Sign-up emails to super admins are coalesced over this window (zero: one per sign-up).
    pub signup_notice_interval: Duration,
    /// How often the escalation actor looks for steps due (other nodes schedule them too).
    pub escalation_poll: Duration,
    /// How long a node's claim on a firing escalation step holds before another node may take
    /// it over (a node that died while firing).
    pub escalation_lease: Duration,
    /// What the purge actor keeps, and for how long.
    pub retention: crate::purge::RetentionPolicy,
}

/// How often the users' heartbeat reports of what their sockets were sent are written, in one
/// transaction for all of them.
const SENT_BATCH_INTERVAL: Duration = Duration::from_secs(1);

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(10),
            ticket_idle: Duration::from_secs(60),
            replay_cap: 1000,
            gap_wait: Duration::from_millis(50),
            rooms: crate::room::RoomConfig::default(),
            rooms_runtime: None,
            signup_notice_interval: Duration::from_secs(300),
            escalation_poll: Duration::from_secs(1),
            escalation_lease: Duration::from_secs(60),
            retention: crate::purge::RetentionPolicy::default(),
        }
    }
}

/// What a command answers when the user's actor did not answer in time: it still runs, once.
pub const USER_ACTOR_BUSY: &str =
    "The hub is busy; the change will still be applied once, shortly.";

/// How often a socket's attach (or a room join) is tried before it gives up.
const ATTACH_TRIES: u32 = 5;
/// The wait before the second try; each later one waits longer by as much.
const ATTACH_RETRY_WAIT: Duration = Duration::from_millis(10);

/// Why a socket could not be handed to its user actor.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The hub is shutting down or its directory is unavailable.
    #[error("the hub is not accepting connections")]
    Unavailable,
}

/// Who an admin's notification goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// These users.
    Users(Vec<UserId>),
    /// Every active user of a role.
    Role(Role),
}

/// An admin's own notification.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// Who receives it.
    pub to: Recipients,
    /// Its type (any name).
    pub notification_type: String,
    /// Its title.
    pub title: String,
    /// Its sentence.
    pub message: String,
    /// Extra data, a JSON object as text.
    pub data: String,
    /// Where a click should lead.
    pub link: Option<String>,
    /// Outbound channels besides the in-app record.
    pub channels: Vec<Channel>,
    /// The admin who sends it, for the timeline.
    pub sent_by: Option<UserId>,
}

/// The outbound channels a hub runs.
#[derive(Clone, Default)]
pub struct DeliveryConfig {
    /// A transport per outbound channel; channels without one are off (no outbox rows).
    pub transports: Vec<(Channel, Arc<dyn crate::ports::Transport>)>,
    /// Where every notification is also posted (with a webhook transport).
    pub webhook_urls: Vec<String>,
    /// How channels retry.
    pub policy: crate::delivery::RetryPolicy,
}

/// Everything a hub needs besides its settings.
pub struct HubDeps {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Who hears about what.
    pub routing: RoutingTable,
    /// The outbound channels.
    pub delivery: DeliveryConfig,
    /// Fan-out to other hub processes, if any.
    pub bus: Option<Arc<dyn crate::ports::Bus>>,
    /// Presence across hub processes, if any.
    pub presence: Option<Arc<dyn crate::ports::PresenceStore>>,
}

type UserDirectory = Directory<UserActor>;
type TicketDirectory = Directory<TicketActor>;
type RoomDirectory = Directory<RoomActor>;

/// A cheap, cloneable handle to the running hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    started: std::time::Instant,
    node: Arc<str>,
    config: HubConfig,
    deps: Arc<Deps>,
    root: ActorRef<RootMsg>,
    refs: Arc<RwLock<Refs>>,
    tickets: Map<TicketId, TicketMsg>,
    root_handle: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    signups: Arc<crate::signups::Signups>,
    /// When this node learned that each user's sessions ended (see [`Hub::sessions_ended`]).
    ended: std::sync::Mutex<std::collections::HashMap<UserId, std::time::Instant>>,
    /// Other nodes' board events waiting for their content to be read, in order.
    board_reads: tokio::sync::mpsc::Sender<BoardRead>,
    /// Attach (and room join) tries after a first one failed, since the hub started.
    attach_retries: std::sync::atomic::AtomicU64,
}

/// A remote board event: the room, the ticket and what happened to it.
type BoardRead = (
    ActorRef<RoomMsg>,
    crate::ticket_domain::TicketId,
    crate::ports::BoardNotice,
);

/// Remote board events that may wait for their reads; past it, one is dropped (and counted):
/// a board is a live view, and its clients fetch the list again when they reconnect.
const BOARD_READS_WAITING: usize = 4096;

/// Reads the content of other nodes' board events one after the other, so that a room hears
/// them in the order they came (two comments on one ticket stay in order), and tells the room.
async fn read_board_events(
    store: Arc<dyn crate::ports::Store>,
    mut events: tokio::sync::mpsc::Receiver<BoardRead>,
) {
    while let Some((room, ticket, notice)) = events.recv().await {
        let read = async {
            let ticket = store
                .ticket(ticket)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("ticket {ticket}")))?;
            let ticket = Arc::new(ticket);
            Ok::<_, StoreError>(match notice {
                crate::ports::BoardNotice::Update(action) => {
                    RoomEvent::TicketUpdate { action, ticket }
                }
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

/// How long [`Hub::ended_since`] remembers an ending: longer than any handshake can take
/// between reading its user and attaching its socket.
const ENDINGS_KEPT: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Refs {
    users: ActorRef<DirectoryMsg<UserId, UserMsg>>,
    tickets: ActorRef<DirectoryMsg<TicketId, TicketMsg>>,
    rooms: ActorRef<DirectoryMsg<ProjectId, RoomMsg>>,
    delivery: ActorRef<crate::delivery::DeliveryMsg>,
    escalation: ActorRef<crate::escalation::EscalationMsg>,
    purge: ActorRef<crate::purge::PurgeMsg>,
}

impl Hub {
    /// Starts the actor system.
    pub async fn start(config: HubConfig, hub_deps: HubDeps) -> Result<Hub, ractor::SpawnErr> {
        let HubDeps {
            store,
            routing,
            delivery,
            bus,
            presence,
        } = hub_deps;
        let channels: crate::delivery::ChannelMap = Arc::default();
        let node: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
        let deps = Arc::new(Deps {
            store: store.clone(),
            routing,
            users: Map::default(),
            rooms: Map::default(),
            channels: channels.clone(),
            outbound: delivery.transports.iter().map(|(c, _)| *c).collect(),
            webhook_urls: delivery.webhook_urls.clone(),
            bus,
            presence,
            sent: crate::sent::SentRecorder::start(
                store.clone(),
                SENT_BATCH_INTERVAL,
                node.clone(),
            ),
        });
        let delivery_spec = Arc::new(crate::delivery::DeliverySupervisor {
            channels: delivery
                .transports
                .iter()
                .map(|(channel, transport)| crate::delivery::ChannelActor {
                    channel: *channel,
                    store: store.clone(),
                    transport: transport.clone(),
                    policy: delivery.policy.clone(),
                    node: node.clone(),
                    sending: Default::default(),
                })
                .collect(),
            map: channels,
        });
        let tickets: Map<TicketId, TicketMsg> = Map::default();
        let spec = RootSpec {
            users: Directory {
                spec: UserActor {
                    idle_timeout: config.idle_timeout,
                    deps: deps.clone(),
                    replay_cap: config.replay_cap,
                    gap_wait: config.gap_wait,
                },
                map: deps.users.clone(),
                tick: Some((config.ping_interval, || UserMsg::Heartbeat)),
            },
            tickets: Directory {
                spec: TicketActor {
                    deps: deps.clone(),
                    idle: config.ticket_idle,
                },
                map: tickets.clone(),
                tick: None,
            },
            rooms: Directory {
                spec: RoomActor {
                    deps: deps.clone(),
                    config: crate::room::RoomConfig {
                        idle_timeout: config.idle_timeout,
                        ..config.rooms.clone()
                    },
                },
                map: deps.rooms.clone(),
                tick: Some((config.ping_interval, || RoomMsg::Heartbeat)),
            },
            rooms_runtime: config.rooms_runtime.clone(),
            delivery: delivery_spec,
            escalation: crate::escalation::EscalationActor {
                deps: deps.clone(),
                node: node.clone(),
                poll: config.escalation_poll,
                lease: config.escalation_lease,
            },
            purge: crate::purge::PurgeActor {
                store: deps.store.clone(),
                policy: config.retention.clone(),
            },
        };
        let (root, root_handle) = Actor::spawn(None, HubRoot { spec }, ()).await?;
        let (board_reads, board_events) = tokio::sync::mpsc::channel(BOARD_READS_WAITING);
        tokio::spawn(read_board_events(deps.store.clone(), board_events));
        let refs = ractor::call_t!(root, RootMsg::Refs, 5_000)
            .map_err(|e| ractor::SpawnErr::StartupFailed(e.to_string().into()))?;
        let signups = crate::signups::Signups::new(config.signup_notice_interval);
        Ok(Hub {
            inner: Arc::new(HubInner {
                started: std::time::Instant::now(),
                node: node.clone(),
                config,
                deps,
                root,
                refs,
                tickets,
                root_handle: tokio::sync::Mutex::new(Some(root_handle)),
                signups,
                ended: Default::default(),
                board_reads,
                attach_retries: Default::default(),
            }),
        })
    }

    fn refs(&self) -> Refs {
        self.inner.refs.read().expect("refs poisoned").clone()
    }

    /// Sends `msg` (built around a reply port) to the keyed actor through its directory and
    /// waits for the answer; `None` if the actor could not start or answer in time.
    async fn forward<K, M, T>(
        &self,
        directory: &ActorRef<DirectoryMsg<K, M>>,
        key: K,
        msg: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
    ) -> Option<T>
    where
        K: Send + 'static,
        M: Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = ractor::concurrency::oneshot();
        directory
            .send_message(DirectoryMsg::Forward {
                key,
                msg: msg(tx.into()),
            })
            .ok()?;
        tokio::time::timeout(self.inner.config.call_timeout, rx)
            .await
            .ok()?
            .ok()
    }

    /// Hands a socket to its user's actor, starting the actor if needed; the actor queues the
    /// socket's replay (from `resume`) before anything live.
    pub async fn attach(
        &self,
        user_id: UserId,
        conn: ConnHandle,
        resume: Resume,
    ) -> Result<Attached, AttachError> {
        // A user actor that is stopping as the socket arrives drops the request; retrying
        // reaches the fresh actor the directory spawns instead, once it has let go of the old
        // one (a moment, hence the short waits).
        for attempt in 0..ATTACH_TRIES {
            if attempt > 0 {
                self.retrying_attach();
                tokio::time::sleep(ATTACH_RETRY_WAIT * attempt).await;
            }
            let conn = conn.clone();
            let directory = self.refs().users;
            if let Some(attached) = self
                .forward(&directory, user_id, |reply| {
                    UserMsg::Attach(Box::new(crate::user::AttachRequest {
                        conn,
                        resume,
                        reply,
                    }))
                })
                .await
            {
                return Ok(attached);
            }
        }
        Err(AttachError::Unavailable)
    }

    /// Counts a retried attach or join.
    fn retrying_attach(&self) {
        metrics::counter!("tickethub_attach_retries_total").increment(1);
        self.inner
            .attach_retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Attach (and room join) tries after a first one failed, since the hub started.
    pub fn attach_retries(&self) -> u64 {
        self.inner
            .attach_retries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The live actor of a user, if the user is connected to this hub.
    pub fn user(&self, user_id: UserId) -> Option<ActorRef<UserMsg>> {
        self.inner
            .deps
            .users
            .read()
            .expect("user map poisoned")
            .get(&user_id)
            .cloned()
    }

    /// Another hub process committed notifications for `user` up to `seq`: if the user is
    /// connected here, their actor catches up from the database.
    pub fn remote_committed(&self, user: UserId, seq: i64) {
        if let Some(actor) = self.user(user) {
            let _ = actor.send_message(UserMsg::CatchUp(seq));
        }
    }

    /// Hands an event another hub process published to the local actors it concerns.
    /// [`BusEvent::Resync`] is the caller's to act on (see [`Hub::catch_up_all`]).
    pub fn remote(&self, event: BusEvent) {
        match event {
            BusEvent::Committed(events) => self.remote_commit(events),
            BusEvent::Inbox(user, update) => {
                if let Some(actor) = self.user(user) {
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
            BusEvent::SessionsEnded(user) => self.end_sessions_here(user),
            BusEvent::Resync => {}
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

    /// Records the ending, then closes the user's sockets on this node.
    fn end_sessions_here(&self, user: UserId) {
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
    fn tell_rooms(&self, msg: impl Fn() -> RoomMsg) {
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

    /// The live room of a project, if it has sockets on this hub.
    pub fn room(&self, project: ProjectId) -> Option<ActorRef<RoomMsg>> {
        self.inner
            .deps
            .rooms
            .read()
            .expect("room map poisoned")
            .get(&project)
            .cloned()
    }

    /// After a gap on the bus, other nodes' joins and leaves may have been missed: every room
    /// sends its presence sockets a fresh `presence_state` with its next batch.
    pub fn resync_rooms(&self) {
        self.tell_rooms(|| RoomMsg::Resync);
    }

    /// Hands a board or presence socket to its project's room, starting the room if needed.
    /// The caller has checked that the user may see the project. A presence socket with `diff`
    /// takes joins and leaves as `presence_diff` frames.
    pub async fn join_room(
        &self,
        project: ProjectId,
        user: &User,
        kind: RoomSocket,
        diff: bool,
        conn: ConnHandle,
    ) -> Result<ActorRef<RoomMsg>, AttachError> {
        // A room that is stopping as the socket arrives drops the request; the retry reaches
        // the fresh one.
        for attempt in 0..ATTACH_TRIES {
            if attempt > 0 {
                self.retrying_attach();
                tokio::time::sleep(ATTACH_RETRY_WAIT * attempt).await;
            }
            let conn = conn.clone();
            let directory = self.refs().rooms;
            let user = user.clone();
            if let Some(room) = self
                .forward(&directory, project, |reply| RoomMsg::Join {
                    user,
                    kind,
                    diff,
                    conn,
                    reply,
                })
                .await
            {
                return Ok(room);
            }
        }
        Err(AttachError::Unavailable)
    }

    /// A page of the live rooms.
    pub async fn list_rooms(
        &self,
        filter: crate::directory::ListFilter<ProjectId>,
    ) -> Option<crate::directory::Listing<ProjectId, RoomMsg>> {
        ractor::call_t!(self.refs().rooms, |r| DirectoryMsg::List(filter, r), 5_000).ok()
    }

    /// Another hub process committed these notifications. A single recipient connected here
    /// catches up on its own; several are read in one batched query and pushed as live
    /// notifications (the user actors keep them in seq order and fill any gap), so that a
    /// fan-out to thousands costs this node a few queries rather than one per user.
    fn remote_commit(&self, events: Vec<(UserId, i64)>) {
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
    pub async fn catch_up_all(&self) -> Result<usize, StoreError> {
        let ids: Vec<UserId> = self
            .inner
            .deps
            .users
            .read()
            .expect("user map poisoned")
            .keys()
            .copied()
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let seqs = self.inner.deps.store.last_seqs(&ids).await?;
        for (user, seq) in &seqs {
            self.remote_committed(*user, *seq);
        }
        Ok(seqs.len())
    }

    /// Whether the bus to other hub processes is connected (`None` without one).
    pub fn bus_connected(&self) -> Option<bool> {
        self.inner.deps.bus.as_ref().map(|b| b.is_connected())
    }

    /// The live actor of a ticket, if it is active.
    pub fn ticket(&self, id: TicketId) -> Option<ActorRef<TicketMsg>> {
        self.inner
            .tickets
            .read()
            .expect("ticket map poisoned")
            .get(&id)
            .cloned()
    }

    /// Whether the supervision tree is whole: the root answers, and none of its children
    /// waits for a restart.
    pub async fn tree_healthy(&self) -> bool {
        ractor::call_t!(self.inner.root, RootMsg::Healthy, 500).unwrap_or(false)
    }

    /// Makes one of the root's children panic. Used by fault-injection tests of the tree.
    #[doc(hidden)]
    pub fn inject_fault(&self, child: RootChild) {
        let refs = self.refs();
        let _ = match child {
            RootChild::Users => refs.users.send_message(DirectoryMsg::InjectFault).is_ok(),
            RootChild::Tickets => refs.tickets.send_message(DirectoryMsg::InjectFault).is_ok(),
            RootChild::Rooms => refs.rooms.send_message(DirectoryMsg::InjectFault).is_ok(),
            RootChild::Delivery => refs
                .delivery
                .send_message(crate::delivery::DeliveryMsg::InjectFault)
                .is_ok(),
            RootChild::Escalation => refs
                .escalation
                .send_message(crate::escalation::EscalationMsg::InjectFault)
                .is_ok(),
            RootChild::Purge => refs
                .purge
                .send_message(crate::purge::PurgeMsg::InjectFault)
                .is_ok(),
        };
    }

    /// What the escalation actor holds; `None` if it did not answer in time.
    pub async fn escalation_snapshot(&self) -> Option<crate::escalation::EscalationSnapshot> {
        ractor::call_t!(
            self.refs().escalation,
            crate::escalation::EscalationMsg::Snapshot,
            500
        )
        .ok()
    }

    /// What the purge actor holds; `None` if it did not answer in time.
    pub async fn purge_snapshot(&self) -> Option<crate::purge::PurgeSnapshot> {
        ractor::call_t!(self.refs().purge, crate::purge::PurgeMsg::Snapshot, 500).ok()
    }

    /// Asks the purge actor to sweep now (unless a sweep runs).
    pub fn purge_now(&self) {
        let _ = self
            .refs()
            .purge
            .send_message(crate::purge::PurgeMsg::Sweep);
    }

    /// Asks the escalation actor to look for due steps now.
    pub fn escalation_tick(&self) {
        let _ = self
            .refs()
            .escalation
            .send_message(crate::escalation::EscalationMsg::Tick);
    }

    /// How long the hub has run, and how often the root restarted a child.
    pub async fn root_info(&self) -> (Duration, u64) {
        let restarts = ractor::call_t!(self.inner.root, RootMsg::Restarts, 5_000).unwrap_or(0);
        (self.inner.started.elapsed(), restarts)
    }

    /// A page of the live user actors.
    pub async fn list_users(
        &self,
        filter: crate::directory::ListFilter<UserId>,
    ) -> Option<crate::directory::Listing<UserId, UserMsg>> {
        ractor::call_t!(self.refs().users, |r| DirectoryMsg::List(filter, r), 5_000).ok()
    }

    /// A page of the live ticket actors.
    pub async fn list_tickets(
        &self,
        filter: crate::directory::ListFilter<TicketId>,
    ) -> Option<crate::directory::Listing<TicketId, TicketMsg>> {
        ractor::call_t!(
            self.refs().tickets,
            |r| DirectoryMsg::List(filter, r),
            5_000
        )
        .ok()
    }

    /// This hub process's id: it names the node in claims, timelines and the tree.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Who hears about what, and the escalation policies.
    pub fn routing(&self) -> &RoutingTable {
        &self.inner.deps.routing
    }

    /// The outbound channels this hub runs.
    pub fn channels(&self) -> Vec<Channel> {
        let mut v: Vec<Channel> = self
            .inner
            .deps
            .channels
            .read()
            .expect("channel map poisoned")
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }

    /// The database.
    pub fn store(&self) -> Arc<dyn Store> {
        self.inner.deps.store.clone()
    }

    /// The user directory's counters.
    pub async fn user_stats(&self) -> Option<DirectoryStats> {
        ractor::call_t!(self.refs().users, DirectoryMsg::Stats, 5_000).ok()
    }

    /// The ticket directory's counters.
    pub async fn ticket_stats(&self) -> Option<DirectoryStats> {
        ractor::call_t!(self.refs().tickets, DirectoryMsg::Stats, 5_000).ok()
    }

    /// Applies an action to a ticket through its actor.
    pub async fn apply(
        &self,
        ticket: TicketId,
        by: &User,
        action: Action,
    ) -> Result<Applied, TicketError> {
        let principal = Principal {
            id: by.id,
            role: by.role,
        };
        let by_name = by.name().to_owned();
        let directory = self.refs().tickets;
        self.forward(&directory, ticket, |reply| TicketMsg::Apply {
            by: principal,
            by_name,
            action,
            reply,
        })
        .await
        .unwrap_or(Err(TicketError::Unavailable))
    }

    /// Creates a ticket and notifies (per the routing table) in the same transaction.
    pub async fn create_ticket(&self, by: &User, new: NewTicket) -> Result<Ticket, TicketError> {
        let deps = &self.inner.deps;
        let event = EventType::TicketCreated;
        let audience = deps.audience(&event, &[by.id]).await?;
        let actor_name = by.name().to_owned();
        let plan = |ticket: &Ticket| {
            let (title, message) = ticket_wording(
                &event,
                ticket,
                &EventDetails {
                    actor_name: &actor_name,
                    ..EventDetails::default()
                },
            );
            audience.drafts(
                Parties {
                    actor: Some(by.id),
                    creator: Some(ticket.created_by),
                    ..Parties::default()
                },
                &Content {
                    event: event.clone(),
                    title,
                    message,
                    ticket: Some(TicketSummary::from(ticket)),
                    data: "{}".into(),
                    action_url: Some(format!("/tickets/{}/", ticket.id)),
                    cause: crate::notification::Cause {
                        action: "create",
                        actor: Some(by.id),
                    },
                },
            )
        };
        let (ticket, notifications) = deps.store.create_ticket(new, &plan).await?;
        deps.deliver(notifications);
        deps.board(RoomEvent::TicketUpdate {
            action: BoardAction::Created,
            ticket: Arc::new(ticket.clone()),
        });
        Ok(ticket)
    }

    /// Tells the super admins that a client registered: in their inboxes at once, by email
    /// coalesced (see [`crate::signups`]). Returns how many were told.
    pub async fn user_registered(&self, user: &User, data: String) -> Result<usize, StoreError> {
        self.inner
            .signups
            .registered(&self.inner.deps, user, data)
            .await
    }

    /// Sends an admin's own notification; returns the ids of the notifications stored, one per
    /// user who received it. Unknown or inactive users are left out.
    pub async fn announce(&self, a: Announcement) -> Result<Vec<i64>, StoreError> {
        let deps = &self.inner.deps;
        let mut ids: Vec<UserId> = match &a.to {
            Recipients::Users(ids) => ids.clone(),
            Recipients::Role(role) => deps
                .store
                .users_with_role(*role)
                .await?
                .into_iter()
                .map(|u| u.id)
                .collect(),
        };
        // One announcement reaches a user once, however often the request names them.
        ids.sort();
        ids.dedup();
        let event: EventType = a.notification_type.parse().expect("infallible");
        let outbound = a.channels.iter().any(|c| deps.outbound.contains(c));
        let audience = deps.audience_with(&event, &ids, outbound).await?;
        let drafts = audience.drafts_for(
            &ids,
            &a.channels,
            &Content {
                event,
                title: a.title,
                message: a.message,
                ticket: None,
                data: a.data,
                action_url: a.link,
                cause: crate::notification::Cause {
                    action: "send",
                    actor: a.sent_by,
                },
            },
        );
        let queued = Deps::queued_channels(&drafts);
        let notifications = deps.store.commit_notifications(drafts).await?;
        let ids = notifications.iter().map(|n| n.id).collect();
        deps.deliver_queued(notifications, &queued);
        Ok(ids)
    }

    /// Applies a change to a user's inbox: through the user's actor when they are connected
    /// (so their other sockets hear of it), directly otherwise.
    pub async fn user_command(
        &self,
        user: UserId,
        from: Option<ConnId>,
        cmd: UserCommand,
    ) -> Result<CommandOutcome, String> {
        // Through the user's actor when they are connected here, so that their other tabs hear
        // of it in order; straight against the store only when there is no actor to take it.
        // A call that times out is not run again here: its message is still in the actor's
        // mailbox and runs once, when the actor gets to it.
        let mut outcome = None;
        if let Some(actor) = self.user(user) {
            let sent = cmd.clone();
            let res = actor
                .call(
                    |reply| {
                        UserMsg::Command(Box::new(crate::user::CommandRequest {
                            from,
                            cmd: sent,
                            reply,
                        }))
                    },
                    Some(self.inner.config.call_timeout),
                )
                .await;
            match res {
                Ok(ractor::rpc::CallResult::Success(result)) => outcome = Some(result),
                Ok(ractor::rpc::CallResult::Timeout) => {
                    metrics::counter!("tickethub_user_command_timeouts_total").increment(1);
                    return Err(USER_ACTOR_BUSY.to_owned());
                }
                // The actor stopped before it answered (its mailbox was dropped with the
                // message): nothing ran, so the store takes it.
                Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {}
            }
        }
        let outcome = match outcome {
            // The actor told the other hub processes itself.
            Some(result) => result?,
            None => {
                let outcome = execute(self.inner.deps.store.as_ref(), user, &cmd)
                    .await
                    .map_err(|e| e.to_string())?;
                // The user's sockets on other hub processes hear of it too.
                if let Some(update) = outcome.update(&cmd) {
                    self.inner.deps.publish(BusEvent::Inbox(user, update));
                }
                outcome
            }
        };
        Ok(outcome)
    }

    /// The status of an outbound channel, if this hub runs it.
    pub async fn channel_status(&self, channel: Channel) -> Option<crate::delivery::ChannelStatus> {
        let actor = self
            .inner
            .deps
            .channels
            .read()
            .expect("channel map poisoned")
            .get(&channel)
            .cloned()?;
        ractor::call_t!(actor, crate::delivery::ChannelMsg::Status, 5_000).ok()
    }

    /// The live actor of an outbound channel, if this hub runs it.
    pub fn channel(&self, channel: Channel) -> Option<ActorRef<crate::delivery::ChannelMsg>> {
        self.inner
            .deps
            .channels
            .read()
            .expect("channel map poisoned")
            .get(&channel)
            .cloned()
    }

    /// How often each channel actor was restarted.
    pub async fn channel_restarts(&self) -> std::collections::HashMap<Channel, u64> {
        ractor::call_t!(
            self.refs().delivery,
            crate::delivery::DeliveryMsg::Restarts,
            5_000
        )
        .unwrap_or_default()
    }

    /// Tells every socket that the hub is going away; returns how many user actors were told.
    pub async fn disconnect_all(&self) -> usize {
        let _ = ractor::call_t!(
            self.refs().rooms,
            |reply| DirectoryMsg::Broadcast(|| RoomMsg::Shutdown, reply),
            5_000
        );
        ractor::call_t!(
            self.refs().users,
            |reply| DirectoryMsg::Broadcast(|| UserMsg::Shutdown, reply),
            5_000
        )
        .unwrap_or(0)
    }

    /// Closes every socket and stops the actor system, leaves first: a supervisor's stop does
    /// not stop its children, and a channel actor's stop is where its sends in flight finish
    /// and record their outcome (else a mail that went out could be sent again after the
    /// restart, once its claim ran out). Each level waits at most [`SHUTDOWN_WAIT`].
    pub async fn shutdown(&self) {
        self.disconnect_all().await;
        let refs = self.refs();
        let reason = || Some("hub shutdown".to_owned());
        let supervisors = [
            refs.delivery.get_cell(),
            refs.users.get_cell(),
            refs.tickets.get_cell(),
            refs.rooms.get_cell(),
        ];
        futures::future::join_all(
            supervisors
                .iter()
                .map(|s| s.stop_children_and_wait(reason(), Some(SHUTDOWN_WAIT))),
        )
        .await;
        self.inner
            .root
            .stop_children_and_wait(reason(), Some(SHUTDOWN_WAIT))
            .await;
        self.inner.root.stop(reason());
        if let Some(handle) = self.inner.root_handle.lock().await.take() {
            let _ = handle.await;
        }
    }
}

/// How long shutdown waits for each level of the tree to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);

/// How the root builds its children.
#[derive(Clone)]
struct RootSpec {
    users: UserDirectory,
    tickets: TicketDirectory,
    rooms: RoomDirectory,
    /// Where the room directory and its rooms run.
    rooms_runtime: Option<tokio::runtime::Handle>,
    delivery: Arc<crate::delivery::DeliverySupervisor>,
    escalation: crate::escalation::EscalationActor,
    purge: crate::purge::PurgeActor,
}

/// The root supervisor.
struct HubRoot {
    spec: RootSpec,
}

/// A child of the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootChild {
    /// The user directory.
    Users,
    /// The ticket directory.
    Tickets,
    /// The room directory.
    Rooms,
    /// The delivery supervisor.
    Delivery,
    /// The escalation actor.
    Escalation,
    /// The purge actor.
    Purge,
}

impl RootChild {
    fn name(self) -> &'static str {
        match self {
            RootChild::Users => "user directory",
            RootChild::Tickets => "ticket directory",
            RootChild::Rooms => "room directory",
            RootChild::Delivery => "delivery supervisor",
            RootChild::Escalation => "escalation",
            RootChild::Purge => "purge",
        }
    }
}

/// A restart budget: the first failure of a child is restarted at once; each further failure
/// within [`RestartBudget::WINDOW`] doubles the wait before the restart (from 100 ms up to
/// 10 s), so that a child failing in a loop never spins the node. A restart that fails is
/// tried again the same way; the supervisor itself never stops because a child failed.
#[derive(Debug)]
pub struct RestartBudget<K> {
    failures: Vec<(K, std::time::Instant)>,
}

impl<K> Default for RestartBudget<K> {
    fn default() -> Self {
        Self {
            failures: Vec::new(),
        }
    }
}

impl<K: PartialEq + Copy> RestartBudget<K> {
    /// Failures count against the budget this long.
    pub const WINDOW: Duration = Duration::from_secs(60);

    /// Records a failure of `child` and answers how long to wait before restarting it.
    pub fn failed(&mut self, child: K) -> Duration {
        let now = std::time::Instant::now();
        self.failures
            .retain(|(_, at)| now.duration_since(*at) < Self::WINDOW);
        self.failures.push((child, now));
        let recent = self.failures.iter().filter(|(c, _)| *c == child).count() as u32;
        match recent {
            0 | 1 => Duration::ZERO,
            n => (Duration::from_millis(100) * 2u32.saturating_pow((n - 2).min(7)))
                .min(Duration::from_secs(10)),
        }
    }
}

struct RootState {
    refs: Arc<RwLock<Refs>>,
    restarts: u64,
    budget: RestartBudget<RootChild>,
    /// Children that failed and wait for their restart.
    down: std::collections::HashSet<RootChild>,
}

enum RootMsg {
    Refs(ractor::RpcReplyPort<Arc<RwLock<Refs>>>),
    Restarts(ractor::RpcReplyPort<u64>),
    /// Start a failed child again.
    Restart(RootChild),
    /// Whether every child is up.
    Healthy(ractor::RpcReplyPort<bool>),
}

async fn spawn_delivery(
    spec: &Arc<crate::delivery::DeliverySupervisor>,
    supervisor: ActorCell,
) -> Result<ActorRef<crate::delivery::DeliveryMsg>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(
        None,
        crate::delivery::DeliverySupervisor::clone(spec),
        (),
        supervisor,
    )
    .await?
    .0)
}

async fn spawn_escalation(
    spec: &crate::escalation::EscalationActor,
    supervisor: ActorCell,
) -> Result<ActorRef<crate::escalation::EscalationMsg>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(None, spec.clone(), (), supervisor)
        .await?
        .0)
}

async fn spawn_purge(
    spec: &crate::purge::PurgeActor,
    supervisor: ActorCell,
) -> Result<ActorRef<crate::purge::PurgeMsg>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(None, spec.clone(), (), supervisor)
        .await?
        .0)
}

/// Spawns the room directory on the rooms' runtime, if they have one: the actors it starts
/// run there too.
async fn spawn_rooms(
    spec: &RootSpec,
    supervisor: ActorCell,
) -> Result<ActorRef<DirectoryMsg<ProjectId, RoomMsg>>, ractor::SpawnErr> {
    match &spec.rooms_runtime {
        None => spawn_directory(&spec.rooms, supervisor).await,
        Some(runtime) => {
            let rooms = spec.rooms.clone();
            runtime
                .spawn(async move { spawn_directory(&rooms, supervisor).await })
                .await
                .map_err(|e| ractor::SpawnErr::StartupFailed(Box::new(e)))?
        }
    }
}

async fn spawn_directory<A: Keyed>(
    spec: &Directory<A>,
    supervisor: ActorCell,
) -> Result<ActorRef<DirectoryMsg<A::Key, A::Msg>>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(None, spec.clone(), (), supervisor)
        .await?
        .0)
}

impl Actor for HubRoot {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let refs = Refs {
            users: spawn_directory(&self.spec.users, myself.get_cell()).await?,
            tickets: spawn_directory(&self.spec.tickets, myself.get_cell()).await?,
            rooms: spawn_rooms(&self.spec, myself.get_cell()).await?,
            delivery: spawn_delivery(&self.spec.delivery, myself.get_cell()).await?,
            escalation: spawn_escalation(&self.spec.escalation, myself.get_cell()).await?,
            purge: spawn_purge(&self.spec.purge, myself.get_cell()).await?,
        };
        Ok(RootState {
            refs: Arc::new(RwLock::new(refs)),
            restarts: 0,
            budget: RestartBudget::default(),
            down: Default::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Refs(reply) => {
                let _ = reply.send(state.refs.clone());
            }
            RootMsg::Restarts(reply) => {
                let _ = reply.send(state.restarts);
            }
            RootMsg::Healthy(reply) => {
                let _ = reply.send(state.down.is_empty());
            }
            RootMsg::Restart(child) => {
                let cell = myself.get_cell();
                let started = match child {
                    RootChild::Users => spawn_directory(&self.spec.users, cell)
                        .await
                        .map(|a| state.refs.write().expect("refs poisoned").users = a),
                    RootChild::Tickets => spawn_directory(&self.spec.tickets, cell)
                        .await
                        .map(|a| state.refs.write().expect("refs poisoned").tickets = a),
                    RootChild::Rooms => spawn_rooms(&self.spec, cell)
                        .await
                        .map(|a| state.refs.write().expect("refs poisoned").rooms = a),
                    RootChild::Delivery => spawn_delivery(&self.spec.delivery, cell)
                        .await
                        .map(|a| state.refs.write().expect("refs poisoned").delivery = a),
                    RootChild::Escalation => spawn_escalation(&self.spec.escalation, cell)
                        .await
                        .map(|a| state.refs.write().expect("refs poisoned").escalation = a),
                    RootChild::Purge => spawn_purge(&self.spec.purge, cell)
                        .await
                        .map(|a| state.refs.write().expect("refs poisoned").purge = a),
                };
                match started {
                    Ok(()) => {
                        state.down.remove(&child);
                    }
                    Err(e) => {
                        // Never `?`: a failed restart is tried again, the root stays.
                        let wait = state.budget.failed(child).max(Duration::from_millis(100));
                        tracing::error!(child = child.name(), error = %e, ?wait, "restart failed; trying again");
                        myself.send_after(wait, move || RootMsg::Restart(child));
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A failed child is restarted alone, within its restart budget; the root never stops
        // because a child ended.
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            let current = state.refs.read().expect("refs poisoned").clone();
            let child = if cell.get_id() == current.users.get_id() {
                RootChild::Users
            } else if cell.get_id() == current.tickets.get_id() {
                RootChild::Tickets
            } else if cell.get_id() == current.rooms.get_id() {
                RootChild::Rooms
            } else if cell.get_id() == current.delivery.get_id() {
                RootChild::Delivery
            } else if cell.get_id() == current.escalation.get_id() {
                RootChild::Escalation
            } else if cell.get_id() == current.purge.get_id() {
                RootChild::Purge
            } else {
                return Ok(());
            };
            state.restarts += 1;
            state.down.insert(child);
            let wait = state.budget.failed(child);
            tracing::error!(child = child.name(), error = %err, ?wait, "failed; restarting");
            if wait.is_zero() {
                let _ = myself.send_message(RootMsg::Restart(child));
            } else {
                myself.send_after(wait, move || RootMsg::Restart(child));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_budget_waits_longer_for_each_failure_in_its_window() {
        let mut budget = RestartBudget::default();
        let waits: Vec<u128> = (0..10)
            .map(|_| budget.failed(RootChild::Users).as_millis())
            .collect();
        assert_eq!(
            waits,
            vec![0, 100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000]
        );
        // Each child has its own count.
        assert_eq!(budget.failed(RootChild::Rooms), Duration::ZERO);
    }
}
