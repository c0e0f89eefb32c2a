//! The user directory: get-or-spawn of user actors, and their supervisor.
//!
//! The directory is the only writer of the shared [`UserMap`]; anyone may read it to find a
//! user's actor without a message round trip. It prunes an actor from the map when it stops or
//! fails, counts failures, and drives every user actor's heartbeat from one timer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::connection::ConnHandle;
use crate::domain::UserId;
use crate::user::{Attached, UserActor, UserMsg};

/// The live user actors by user id, readable by everyone.
pub type UserMap = Arc<RwLock<HashMap<UserId, ActorRef<UserMsg>>>>;

/// The directory actor.
#[derive(Clone, Debug)]
pub struct UserDirectory {
    /// The map this directory maintains.
    pub users: UserMap,
    /// How often every socket is pinged.
    pub ping_interval: Duration,
    /// A socket silent for longer than this is closed.
    pub idle_timeout: Duration,
}

/// Counters the directory keeps about its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryStats {
    /// User actors alive now.
    pub actors: usize,
    /// User actors that failed (panicked or returned an error) since the hub started.
    pub failures: u64,
    /// The last failure's message, if any.
    pub last_failure: Option<String>,
}

/// The directory's state.
pub struct DirectoryState {
    by_actor: HashMap<ActorId, UserId>,
    stats: DirectoryStats,
    heartbeat: Option<JoinHandle<()>>,
}

/// Messages the directory handles.
#[derive(Debug)]
pub enum DirectoryMsg {
    /// Hand a new socket to its user's actor, starting the actor if needed.
    Attach {
        /// Whose socket it is.
        user_id: UserId,
        /// The socket's handle.
        conn: ConnHandle,
        /// Answered by the user actor once it owns the socket.
        reply: RpcReplyPort<Attached>,
    },
    /// Tick every user actor's heartbeat.
    Heartbeat,
    /// Close every socket for shutdown; answers once every user actor was told.
    Shutdown(RpcReplyPort<usize>),
    /// Report the counters.
    Stats(RpcReplyPort<DirectoryStats>),
}

impl Actor for UserDirectory {
    type Msg = DirectoryMsg;
    type State = DirectoryState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        // A restarted directory starts from an empty map: the previous one's children are gone.
        self.users.write().expect("user map poisoned").clear();
        let heartbeat = myself.send_interval(self.ping_interval, || DirectoryMsg::Heartbeat);
        Ok(DirectoryState {
            by_actor: HashMap::new(),
            stats: DirectoryStats::default(),
            heartbeat: Some(heartbeat),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(h) = state.heartbeat.take() {
            h.abort();
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
            DirectoryMsg::Attach {
                user_id,
                conn,
                reply,
            } => {
                let existing = self
                    .users
                    .read()
                    .expect("user map poisoned")
                    .get(&user_id)
                    .cloned();
                let actor = match existing {
                    Some(actor) if ractor::ACTIVE_STATES.contains(&actor.get_status()) => actor,
                    _ => {
                        let (actor, _) = Actor::spawn_linked(
                            None,
                            UserActor {
                                idle_timeout: self.idle_timeout,
                            },
                            user_id,
                            myself.get_cell(),
                        )
                        .await?;
                        state.by_actor.insert(actor.get_id(), user_id);
                        self.users
                            .write()
                            .expect("user map poisoned")
                            .insert(user_id, actor.clone());
                        actor
                    }
                };
                // If the actor stops before it reads this, the reply port is dropped and the
                // caller retries against a fresh actor.
                let _ = actor.send_message(UserMsg::Attach { conn, reply });
            }
            DirectoryMsg::Heartbeat => {
                let users = self.users.read().expect("user map poisoned");
                for actor in users.values() {
                    let _ = actor.send_message(UserMsg::Heartbeat);
                }
            }
            DirectoryMsg::Shutdown(reply) => {
                let actors: Vec<_> = self
                    .users
                    .read()
                    .expect("user map poisoned")
                    .values()
                    .cloned()
                    .collect();
                for actor in &actors {
                    let _ = actor.send_message(UserMsg::Shutdown);
                }
                let _ = reply.send(actors.len());
            }
            DirectoryMsg::Stats(reply) => {
                let mut stats = state.stats.clone();
                stats.actors = state.by_actor.len();
                let _ = reply.send(stats);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Unlike ractor's default, a child's exit never stops the directory.
        let (cell, failure) = match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            _ => return Ok(()),
        };
        if let Some(user_id) = state.by_actor.remove(&cell.get_id()) {
            let mut users = self.users.write().expect("user map poisoned");
            if users.get(&user_id).map(|a| a.get_id()) == Some(cell.get_id()) {
                users.remove(&user_id);
            }
            if let Some(err) = failure {
                tracing::warn!(user_id = user_id.0, error = %err, "user actor failed; removed");
                state.stats.failures += 1;
                state.stats.last_failure = Some(err);
            }
        }
        Ok(())
    }
}
