//! The hub: the root supervisor and the handle the adapters hold.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::connection::ConnHandle;
use crate::directory::{DirectoryMsg, DirectoryStats, UserDirectory, UserMap};
use crate::domain::UserId;
use crate::user::{Attached, UserMsg};

/// Settings of the actor system.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// How often every socket is sent a protocol ping.
    pub ping_interval: Duration,
    /// A socket silent for longer than this is closed.
    pub idle_timeout: Duration,
    /// How long a call into an actor may take before it counts as failed.
    pub call_timeout: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a socket could not be handed to its user actor.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The hub is shutting down or its directory is unavailable.
    #[error("the hub is not accepting connections")]
    Unavailable,
}

/// A cheap, cloneable handle to the running hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    root: ActorRef<RootMsg>,
    directory: Arc<RwLock<ActorRef<DirectoryMsg>>>,
    users: UserMap,
    root_handle: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Hub {
    /// Starts the actor system.
    pub async fn start(config: HubConfig) -> Result<Hub, ractor::SpawnErr> {
        let users: UserMap = Arc::default();
        let directory_spec = UserDirectory {
            users: users.clone(),
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
        };
        let (root, root_handle) = Actor::spawn(
            None,
            HubRoot {
                directory_spec: directory_spec.clone(),
            },
            (),
        )
        .await?;
        let directory = ractor::call_t!(root, RootMsg::Directory, 5_000)
            .map_err(|e| ractor::SpawnErr::StartupFailed(e.to_string().into()))?;
        Ok(Hub {
            inner: Arc::new(HubInner {
                config,
                root,
                directory,
                users,
                root_handle: tokio::sync::Mutex::new(Some(root_handle)),
            }),
        })
    }

    /// Hands a socket to its user's actor, starting the actor if needed.
    pub async fn attach(&self, user_id: UserId, conn: ConnHandle) -> Result<Attached, AttachError> {
        // A user actor that is stopping as the socket arrives drops the request; retrying
        // reaches the fresh actor the directory spawns instead.
        for _ in 0..3 {
            let directory = self.directory();
            let conn = conn.clone();
            let res = directory
                .call(
                    |reply| DirectoryMsg::Attach {
                        user_id,
                        conn,
                        reply,
                    },
                    Some(self.inner.config.call_timeout),
                )
                .await;
            match res {
                Ok(ractor::rpc::CallResult::Success(attached)) => return Ok(attached),
                Ok(_) => continue,
                Err(_) => return Err(AttachError::Unavailable),
            }
        }
        Err(AttachError::Unavailable)
    }

    /// The live actor of a user, if the user is connected to this hub.
    pub fn user(&self, user_id: UserId) -> Option<ActorRef<UserMsg>> {
        self.inner
            .users
            .read()
            .expect("user map poisoned")
            .get(&user_id)
            .cloned()
    }

    /// The directory's counters.
    pub async fn user_stats(&self) -> Option<DirectoryStats> {
        ractor::call_t!(self.directory(), DirectoryMsg::Stats, 5_000).ok()
    }

    /// Tells every socket that the hub is going away; returns how many user actors were told.
    pub async fn disconnect_all(&self) -> usize {
        ractor::call_t!(self.directory(), DirectoryMsg::Shutdown, 5_000).unwrap_or(0)
    }

    /// Closes every socket and stops the actor system.
    pub async fn shutdown(&self) {
        self.disconnect_all().await;
        self.inner.root.stop(Some("hub shutdown".into()));
        if let Some(handle) = self.inner.root_handle.lock().await.take() {
            let _ = handle.await;
        }
    }

    fn directory(&self) -> ActorRef<DirectoryMsg> {
        self.inner
            .directory
            .read()
            .expect("directory ref poisoned")
            .clone()
    }
}

/// The root supervisor.
struct HubRoot {
    directory_spec: UserDirectory,
}

struct RootState {
    directory: Arc<RwLock<ActorRef<DirectoryMsg>>>,
    restarts: u64,
}

#[derive(Debug)]
enum RootMsg {
    Directory(ractor::RpcReplyPort<Arc<RwLock<ActorRef<DirectoryMsg>>>>),
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
        let (directory, _) =
            Actor::spawn_linked(None, self.directory_spec.clone(), (), myself.get_cell()).await?;
        Ok(RootState {
            directory: Arc::new(RwLock::new(directory)),
            restarts: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Directory(reply) => {
                let _ = reply.send(state.directory.clone());
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
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            tracing::error!(actor = ?cell.get_name(), error = %err, "directory failed; restarting");
            state.restarts += 1;
            let (directory, _) =
                Actor::spawn_linked(None, self.directory_spec.clone(), (), myself.get_cell())
                    .await?;
            *state.directory.write().expect("directory ref poisoned") = directory;
        }
        Ok(())
    }
}
