//! The user actor: one per connected user, owning all of that user's sockets.
//!
//! Several tabs of one user are one actor. The actor pushes the user's notifications to every
//! socket, applies the user's changes to their inbox (so that every other socket hears of
//! them), checks each socket's heartbeat when its directory ticks, and stops itself once its
//! last socket is gone.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::connection::{now_ms, ConnHandle, ConnId, ConnectionMsg, Disconnect, Update};
use crate::directory::Keyed;
use crate::domain::UserId;
use crate::notification::Notification;
use crate::notifier::Deps;
use crate::ports::{NotificationFilter, Store, StoreError};

/// The user actor.
#[derive(Clone, Debug)]
pub struct UserActor {
    /// A socket silent for longer than this is closed.
    pub idle_timeout: Duration,
    /// Shared dependencies.
    pub deps: Arc<Deps>,
}

/// The live state of one user actor.
#[derive(Debug)]
pub struct UserState {
    user_id: UserId,
    conns: Vec<ConnHandle>,
}

/// What the user actor answers when a socket attaches.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The actor that now owns the socket; the session sends it its commands.
    pub actor: ActorRef<UserMsg>,
    /// How many sockets the user has now, this one included.
    pub connections: usize,
}

/// A point-in-time view of a user actor, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSnapshot {
    /// Whose actor this is.
    pub user_id: UserId,
    /// The ids of the sockets it owns.
    pub connections: Vec<ConnId>,
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
    /// How many were deleted.
    AllDeleted(i64),
}

/// Messages a user actor handles.
#[derive(Debug)]
pub enum UserMsg {
    /// A new socket of this user.
    Attach {
        /// The socket's handle.
        conn: ConnHandle,
        /// Answered once the socket is owned by this actor.
        reply: RpcReplyPort<Attached>,
    },
    /// A socket of this user ended.
    Detach(ConnId),
    /// A committed notification for this user.
    Notify(Arc<Notification>),
    /// Apply a change to the user's inbox and tell the user's other sockets.
    Command {
        /// The socket it came from (not told of its own change), if any.
        from: Option<ConnId>,
        /// The change.
        cmd: UserCommand,
        /// The result.
        reply: RpcReplyPort<Result<CommandOutcome, String>>,
    },
    /// Ping every socket and close those silent for longer than the idle timeout.
    Heartbeat,
    /// The hub is stopping: close every socket with [`Disconnect::Shutdown`], then stop.
    Shutdown,
    /// Describe the actor.
    Snapshot(RpcReplyPort<UserSnapshot>),
    /// Panic inside the handler. Used by fault-injection tests and chaos drills to prove that
    /// a failing user actor takes nobody else down.
    InjectFault,
}

impl Keyed for UserActor {
    type Key = UserId;
    const KIND: &'static str = "user";

    fn arguments(&self, key: UserId) -> UserId {
        key
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
    })
}

impl UserState {
    /// Pushes to every socket but `except`, dropping the sockets that are gone or kicked.
    fn push_all(&mut self, except: Option<ConnId>, make: impl Fn() -> ConnectionMsg) {
        self.conns
            .retain(|conn| Some(conn.id) == except || conn.push(make()).is_ok());
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
        Ok(UserState {
            user_id,
            conns: Vec::with_capacity(1),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Sockets still attached when the actor stops without a shutdown are told to reconnect.
        for conn in state.conns.drain(..) {
            conn.shared.kick(Disconnect::ActorRestart);
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
            UserMsg::Attach { conn, reply } => {
                state.conns.push(conn);
                let _ = reply.send(Attached {
                    actor: myself.clone(),
                    connections: state.conns.len(),
                });
            }
            UserMsg::Detach(id) => {
                state.conns.retain(|c| c.id != id);
            }
            UserMsg::Notify(n) => {
                state.push_all(None, || ConnectionMsg::Notification(n.clone()));
            }
            UserMsg::Command { from, cmd, reply } => {
                match execute(self.deps.store.as_ref(), state.user_id, &cmd).await {
                    Ok(outcome) => {
                        match &outcome {
                            CommandOutcome::SetRead {
                                id,
                                read,
                                notification: Some(_),
                            } => state.push_all(from, || {
                                ConnectionMsg::Updated(Update::Read {
                                    id: *id,
                                    is_read: *read,
                                })
                            }),
                            CommandOutcome::AllRead(ids) => {
                                for id in ids {
                                    state.push_all(from, || {
                                        ConnectionMsg::Updated(Update::Read {
                                            id: *id,
                                            is_read: true,
                                        })
                                    });
                                }
                            }
                            CommandOutcome::Deleted { id, success: true } => state
                                .push_all(from, || {
                                    ConnectionMsg::Updated(Update::Deleted { id: *id })
                                }),
                            CommandOutcome::AllDeleted(count) => state.push_all(from, || {
                                ConnectionMsg::Updated(Update::AllDeleted { count: *count })
                            }),
                            _ => {}
                        }
                        let _ = reply.send(Ok(outcome));
                    }
                    Err(e) => {
                        tracing::warn!(user_id = state.user_id.0, error = %e, "inbox command failed");
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            UserMsg::Heartbeat => {
                let deadline = now_ms().saturating_sub(self.idle_timeout.as_millis() as u64);
                state.conns.retain(|conn| {
                    if conn.shared.last_seen_ms() < deadline {
                        conn.shared.kick(Disconnect::Idle);
                        return false;
                    }
                    conn.push(ConnectionMsg::Ping).is_ok()
                });
            }
            UserMsg::Shutdown => {
                for conn in state.conns.drain(..) {
                    if conn
                        .push(ConnectionMsg::Close(Disconnect::Shutdown))
                        .is_err()
                    {
                        conn.shared.kick(Disconnect::Shutdown);
                    }
                }
                myself.stop(Some("hub shutdown".into()));
                return Ok(());
            }
            UserMsg::Snapshot(reply) => {
                let _ = reply.send(UserSnapshot {
                    user_id: state.user_id,
                    connections: state.conns.iter().map(|c| c.id).collect(),
                });
            }
            UserMsg::InjectFault => {
                panic!("injected fault in the actor of user {}", state.user_id);
            }
        }
        if state.conns.is_empty() {
            myself.stop(Some("no sockets left".into()));
        }
        Ok(())
    }
}
