//! The user actor: one per connected user, owning all of that user's sockets.
//!
//! Several tabs of one user are one actor. The actor checks the heartbeat of each socket when
//! its directory ticks, and stops itself once its last socket is gone.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::connection::{now_ms, ConnHandle, ConnId, ConnectionMsg, Disconnect};
use crate::domain::UserId;

/// The user actor. Its configuration is the heartbeat's idle timeout.
#[derive(Clone, Debug)]
pub struct UserActor {
    /// A socket silent for longer than this is closed.
    pub idle_timeout: Duration,
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
                    actor: myself,
                    connections: state.conns.len(),
                });
            }
            UserMsg::Detach(id) => {
                state.conns.retain(|c| c.id != id);
                if state.conns.is_empty() {
                    myself.stop(Some("last socket closed".into()));
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
                if state.conns.is_empty() {
                    myself.stop(Some("no live sockets".into()));
                }
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
        Ok(())
    }
}
