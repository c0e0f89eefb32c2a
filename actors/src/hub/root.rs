//! The root supervisor: its children (the directories, the delivery supervisor, the
//! escalation, scheduler and purge actors) and how each is started and started again.

use super::*;

/// How the root builds its children.
#[derive(Clone)]
pub(super) struct RootSpec {
    pub(super) users: UserDirectory,
    pub(super) tickets: TicketDirectory,
    pub(super) rooms: RoomDirectory,
    /// Where the room directory and its rooms run.
    pub(super) rooms_runtime: Option<tokio::runtime::Handle>,
    pub(super) delivery: Arc<crate::delivery::Channels>,
    pub(super) escalation: crate::escalation::EscalationActor,
    pub(super) scheduler: crate::scheduler::SchedulerActor,
    pub(super) purge: crate::purge::PurgeActor,
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
    /// The scheduler of scheduled sends.
    Scheduler,
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
            RootChild::Scheduler => "scheduler",
            RootChild::Purge => "purge",
        }
    }
}

/// The root's children: the directories, the delivery supervisor, the escalation and purge
/// actors. Their current refs are shared with the [`Hub`] (the root writes them as it starts
/// and restarts them).
pub(super) struct RootChildren {
    pub(super) spec: RootSpec,
    pub(super) refs: Arc<RwLock<Option<Refs>>>,
}

/// The root supervisor.
pub(super) type HubRoot = crate::supervision::Supervisor<RootChildren>;

/// Messages of the root supervisor.
pub(super) type RootMsg = crate::supervision::SupervisorMsg<RootChild>;

pub(super) async fn spawn_delivery(
    spec: &Arc<crate::delivery::Channels>,
    supervisor: ActorCell,
) -> Result<ActorRef<crate::delivery::DeliveryMsg>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(
        None,
        crate::supervision::Supervisor(spec.clone()),
        (),
        supervisor,
    )
    .await?
    .0)
}

pub(super) async fn spawn_escalation(
    spec: &crate::escalation::EscalationActor,
    supervisor: ActorCell,
) -> Result<ActorRef<crate::escalation::EscalationMsg>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(None, spec.clone(), (), supervisor)
        .await?
        .0)
}

pub(super) async fn spawn_scheduler(
    spec: &crate::scheduler::SchedulerActor,
    supervisor: ActorCell,
) -> Result<ActorRef<crate::scheduler::SchedulerMsg>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(None, spec.clone(), (), supervisor)
        .await?
        .0)
}

pub(super) async fn spawn_purge(
    spec: &crate::purge::PurgeActor,
    supervisor: ActorCell,
) -> Result<ActorRef<crate::purge::PurgeMsg>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(None, spec.clone(), (), supervisor)
        .await?
        .0)
}

/// Spawns the room directory on the rooms' runtime, if they have one: the actors it starts
/// run there too.
pub(super) async fn spawn_rooms(
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

pub(super) async fn spawn_directory<A: Keyed>(
    spec: &Directory<A>,
    supervisor: ActorCell,
) -> Result<ActorRef<DirectoryMsg<A::Key, A::Msg>>, ractor::SpawnErr> {
    Ok(Actor::spawn_linked(None, spec.clone(), (), supervisor)
        .await?
        .0)
}

impl RootChildren {
    fn update(&self, set: impl FnOnce(&mut Refs)) {
        let mut refs = self.refs.write().expect("refs poisoned");
        set(refs.as_mut().expect("the root started its children"));
    }
}

impl crate::supervision::Children for RootChildren {
    type Key = RootChild;
    const KIND: &'static str = "root_child";

    async fn start_all(&self, supervisor: ActorCell) -> Result<(), ractor::SpawnErr> {
        let spec = &self.spec;
        let refs = Refs {
            users: spawn_directory(&spec.users, supervisor.clone()).await?,
            tickets: spawn_directory(&spec.tickets, supervisor.clone()).await?,
            rooms: spawn_rooms(spec, supervisor.clone()).await?,
            delivery: spawn_delivery(&spec.delivery, supervisor.clone()).await?,
            escalation: spawn_escalation(&spec.escalation, supervisor.clone()).await?,
            scheduler: spawn_scheduler(&spec.scheduler, supervisor.clone()).await?,
            purge: spawn_purge(&spec.purge, supervisor).await?,
        };
        *self.refs.write().expect("refs poisoned") = Some(refs);
        Ok(())
    }

    async fn start(&self, key: RootChild, cell: ActorCell) -> Result<(), ractor::SpawnErr> {
        let spec = &self.spec;
        match key {
            RootChild::Users => {
                let a = spawn_directory(&spec.users, cell).await?;
                self.update(|r| r.users = a);
            }
            RootChild::Tickets => {
                let a = spawn_directory(&spec.tickets, cell).await?;
                self.update(|r| r.tickets = a);
            }
            RootChild::Rooms => {
                let a = spawn_rooms(spec, cell).await?;
                self.update(|r| r.rooms = a);
            }
            RootChild::Delivery => {
                let a = spawn_delivery(&spec.delivery, cell).await?;
                self.update(|r| r.delivery = a);
            }
            RootChild::Escalation => {
                let a = spawn_escalation(&spec.escalation, cell).await?;
                self.update(|r| r.escalation = a);
            }
            RootChild::Scheduler => {
                let a = spawn_scheduler(&spec.scheduler, cell).await?;
                self.update(|r| r.scheduler = a);
            }
            RootChild::Purge => {
                let a = spawn_purge(&spec.purge, cell).await?;
                self.update(|r| r.purge = a);
            }
        }
        Ok(())
    }

    fn which(&self, actor: &ActorCell) -> Option<RootChild> {
        let refs = self.refs.read().expect("refs poisoned");
        let r = refs.as_ref()?;
        let id = actor.get_id();
        [
            (r.users.get_id(), RootChild::Users),
            (r.tickets.get_id(), RootChild::Tickets),
            (r.rooms.get_id(), RootChild::Rooms),
            (r.delivery.get_id(), RootChild::Delivery),
            (r.escalation.get_id(), RootChild::Escalation),
            (r.scheduler.get_id(), RootChild::Scheduler),
            (r.purge.get_id(), RootChild::Purge),
        ]
        .into_iter()
        .find_map(|(child, key)| (child == id).then_some(key))
    }

    fn name(key: RootChild) -> String {
        key.name().to_owned()
    }
}
