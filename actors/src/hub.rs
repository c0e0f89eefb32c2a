//! The hub: the handle the adapters hold, and how it starts, attaches sockets, applies
//! commands and shuts down. Its root supervisor is in `root.rs`, its settings and command
//! shapes in `config.rs`, what other nodes tell it in `remote.rs`, and what operators see in
//! `operations.rs`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorCell, ActorRef};

use crate::connection::{ConnHandle, ConnId, Disconnect};
use crate::directory::{Directory, DirectoryMsg, DirectoryStats, Keyed, Map};
use crate::domain::{ProjectId, User, UserId};
use crate::notification::{ticket_wording, EventDetails, Notification, TicketSummary};
use crate::notifier::{Content, Deps};
use crate::ports::{BusEvent, NewTicket, Store, StoreError};
use crate::room::{BoardAction, RoomActor, RoomEvent, RoomMsg, RoomSocket};
use crate::routing::{Channel, EventType, Parties, RoutingTable};
use crate::ticket::{Applied, TicketActor, TicketError, TicketMsg};
use crate::ticket_domain::{Action, Principal, Ticket, TicketId};
use crate::user::{execute, Attached, CommandOutcome, Resume, UserActor, UserCommand, UserMsg};

mod config;
mod operations;
mod remote;
pub use remote::{Seen, INBOX_LOOKBACK};
mod root;

pub use crate::notification::{Announcement, Recipients};
use config::*;
pub use config::{AttachError, DeliveryConfig, HubConfig, HubDeps, USER_ACTOR_BUSY};
use remote::*;
pub use root::RootChild;
use root::*;

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
    /// The root's children as the root last started them.
    refs: Arc<RwLock<Option<Refs>>>,
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

#[derive(Clone)]
struct Refs {
    users: ActorRef<DirectoryMsg<UserId, UserMsg>>,
    tickets: ActorRef<DirectoryMsg<TicketId, TicketMsg>>,
    rooms: ActorRef<DirectoryMsg<ProjectId, RoomMsg>>,
    delivery: ActorRef<crate::delivery::DeliveryMsg>,
    escalation: ActorRef<crate::escalation::EscalationMsg>,
    scheduler: ActorRef<crate::scheduler::SchedulerMsg>,
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
            outbound: {
                let mut outbound: Vec<Channel> =
                    delivery.transports.iter().map(|(c, _)| *c).collect();
                // `push` is routed while any of its carriers has a transport.
                if outbound.iter().any(|c| Channel::CARRIERS.contains(c)) {
                    outbound.push(Channel::Push);
                }
                outbound
            },
            destinations: delivery.destinations.clone(),
            bus,
            presence,
            notices: Arc::default(),
            sent: crate::sent::SentRecorder::start(
                store.clone(),
                SENT_BATCH_INTERVAL,
                node.clone(),
            ),
        });
        let delivery_spec = Arc::new(crate::delivery::Channels {
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
                spec: UserActor::new(crate::user::UserSettings {
                    idle_timeout: config.idle_timeout,
                    store: deps.store.clone(),
                    sent: deps.sent.clone(),
                    acks: crate::acks::AckRecorder::start(deps.store.clone()),
                    bus: deps.bus.clone(),
                    replay_cap: config.replay_cap,
                    gap_wait: config.gap_wait,
                    notices: deps.notices.clone(),
                }),
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
                    bus: deps.bus.clone(),
                    presence: deps.presence.clone(),
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
            scheduler: crate::scheduler::SchedulerActor {
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
        let refs: Arc<RwLock<Option<Refs>>> = Arc::default();
        let (root, root_handle) = Actor::spawn(
            None,
            HubRoot::new(RootChildren {
                spec,
                refs: refs.clone(),
            }),
            (),
        )
        .await?;
        let (board_reads, board_events) = tokio::sync::mpsc::channel(BOARD_READS_WAITING);
        tokio::spawn(read_board_events(deps.store.clone(), board_events));
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
        self.inner
            .refs
            .read()
            .expect("refs poisoned")
            .clone()
            .expect("the root started its children")
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

    /// Where the news counters of `user` stand: taken before a read of the user's cursor that
    /// the user's actor may use instead of its own (see [`crate::notices`]).
    pub fn notice_stamp(&self, user: UserId) -> crate::notices::Stamp {
        self.inner.deps.notices.stamp(user)
    }

    /// [`Hub::notice_stamp`] of every user at once, taken before a read of many users' cursors.
    pub fn notice_snapshot(&self) -> crate::notices::Snapshot {
        self.inner.deps.notices.snapshot()
    }

    /// Hands a socket to its user's actor, starting the actor if needed; the actor queues the
    /// socket's replay (from `resume`) before anything live. `hint` is the user's cursor as
    /// the handshake read it, which a starting actor uses instead of reading it again when
    /// nothing reached the user since.
    pub async fn attach(
        &self,
        user_id: UserId,
        conn: ConnHandle,
        resume: Resume,
        hint: Option<crate::user::CursorHint>,
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
                        hint,
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

    /// The live actor of a ticket, if it is active.
    pub fn ticket(&self, id: TicketId) -> Option<ActorRef<TicketMsg>> {
        self.inner
            .tickets
            .read()
            .expect("ticket map poisoned")
            .get(&id)
            .cloned()
    }

    /// Applies an action to a ticket through its actor.
    pub async fn apply(
        &self,
        ticket: TicketId,
        by: &User,
        action: Action,
    ) -> Result<Applied, TicketError> {
        self.apply_marked(ticket, by, action, None).await
    }

    /// [`Hub::apply`] for an idempotent request: `mark` is committed with the change.
    pub async fn apply_marked(
        &self,
        ticket: TicketId,
        by: &User,
        action: Action,
        mark: Option<crate::domain::IdempotencyMark>,
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
            mark,
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
    /// user who received it, and their count with an idempotency key's earlier tries. Unknown
    /// or inactive users are left out. See [`crate::notifier::Deps::announce`] for the parts
    /// a large one commits in.
    pub fn announce(
        &self,
        a: Announcement,
    ) -> impl std::future::Future<Output = Result<crate::notifier::Announced, StoreError>> + Send + '_
    {
        // Not an `async fn`: a wrapper's future would hold `a` beside the inner future.
        self.inner.deps.announce(a)
    }

    /// Resolves an on-call send to whoever is on call now (see
    /// [`crate::notifier::Deps::page`]); any other send is returned as it was.
    pub fn page(
        &self,
        a: Announcement,
    ) -> impl std::future::Future<Output = Result<Announcement, crate::notifier::Unpaged>> + Send + '_
    {
        self.inner.deps.page(a)
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
                    tracing::debug!(user_id = user.0, change = ?update, "inbox command applied without the user's actor; telling the bus");
                    self.inner.deps.publish(BusEvent::Inbox(user, update));
                }
                outcome
            }
        };
        Ok(outcome)
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
