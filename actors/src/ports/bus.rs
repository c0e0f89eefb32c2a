//! What crosses between hub processes: the bus and its events, the topics a node hears, and
//! presence held across nodes.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::UserId;
use crate::ticket_domain::TicketId;

/// What crosses the bus between hub processes. Content crosses only in `Notified`, a commit's
/// notifications to a few users: for the rest, a node that hears of a change reads what it
/// needs from the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusEvent {
    /// Notifications were committed: recipient and seq.
    Committed(Vec<(UserId, i64)>),
    /// Notifications were committed, carried whole: the bus sends those of a few users as they
    /// are (a node pushes them without reading them) and the others as `Committed` pairs.
    Notified(Vec<std::sync::Arc<crate::notification::Notification>>),
    /// A user changed their inbox (read, unread, delete, mark all read, delete all).
    Inbox(UserId, crate::notification::Update),
    /// A ticket was committed at this version.
    Ticket(TicketId, i64),
    /// A ticket of a project changed or got a comment: nodes with the project's room read it
    /// and push it to the board.
    Board {
        /// The project.
        project: crate::domain::ProjectId,
        /// The ticket.
        ticket: TicketId,
        /// What happened.
        notice: BoardNotice,
    },
    /// A presence change in a project's room on another node (joined, left, viewing, typing),
    /// relayed to this node's presence sockets of the project.
    Presence(crate::domain::ProjectId, crate::board::PresenceChange),
    /// Users were removed from a project: their sockets in its room close, on every node.
    Revoked(crate::domain::ProjectId, Vec<UserId>),
    /// A user's tokens were ended (deactivated, another role, a new password): every socket of
    /// theirs closes with 4001.
    SessionsEnded(UserId),
    /// A user's row was written (profile, role, activation, password, erasure): every node
    /// drops what it holds of them in its user cache.
    UserChanged(UserId),
    /// Messages may have been lost (a node reconnected, or its publishes failed) for about
    /// this long, as far as the node that noticed knows: every node catches its connected
    /// users up from the database, their inboxes' changes of that while too.
    Resync(std::time::Duration),
    /// This node now hears the channels of these users and projects, which it did not when
    /// their actors started: what was committed for them before then is read from the database
    /// (never crosses the bus; told by this node's own bus, not by another node).
    Heard {
        /// Users to catch up.
        users: Vec<UserId>,
        /// Projects whose rooms resync their view of the other nodes.
        projects: Vec<crate::domain::ProjectId>,
    },
}

/// What a node may be interested in on the bus: messages for a user (their notifications and
/// inbox changes) and for a project (its board and presence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A user whose actor runs on this node.
    User(UserId),
    /// A project whose room runs on this node.
    Project(crate::domain::ProjectId),
}

/// Presence held across hub processes: per project, one lease per (user, node), refreshed by
/// the node while the user has a presence socket there. A node that dies stops refreshing, and
/// its leases run out.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// This node has these users in the project now; answers, in one atomic step, those of
    /// them that no other node held a live lease for (they joined the cluster).
    async fn enter(
        &self,
        project: crate::domain::ProjectId,
        entries: &[crate::board::PresenceEntry],
    ) -> Result<Vec<UserId>, StoreError>;
    /// This node no longer has these users; answers, in one atomic step, those of them that no
    /// node holds a live lease for any more (they left the cluster).
    async fn exit(
        &self,
        project: crate::domain::ProjectId,
        users: &[UserId],
    ) -> Result<Vec<UserId>, StoreError>;
    /// Renews this node's leases for these users.
    async fn refresh(
        &self,
        project: crate::domain::ProjectId,
        entries: &[crate::board::PresenceEntry],
    ) -> Result<(), StoreError>;
    /// The users other nodes hold live leases for, and (with `reap`) the users whose leases ran
    /// out: those are removed here, and a user is returned only to the one node that removed
    /// their last lease, so that `left` is said once for the cluster.
    async fn others(
        &self,
        project: crate::domain::ProjectId,
        reap: bool,
    ) -> Result<(Vec<crate::board::PresenceEntry>, Vec<(UserId, String)>), StoreError>;
}

/// What a board notice on the bus says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardNotice {
    /// The ticket was created or changed.
    Update(crate::board::BoardAction),
    /// A comment with this id was added.
    Comment(i64),
    /// The ticket's files changed.
    Attachments,
}

/// Fan-out between hub processes: each node announces what it committed, and every other node
/// hands it to its local actors.
pub trait Bus: Send + Sync {
    /// Announces an event to the other nodes. Never waits and never fails the caller: a lost
    /// message is made up by the next resync.
    fn publish(&self, event: BusEvent);
    /// Whether the bus is connected, for readiness checks.
    fn is_connected(&self) -> bool;
    /// This node holds (`true`) or no longer holds (`false`) an actor for `topic`: a bus that
    /// routes by interest hears its messages from then on, and tells [`BusEvent::Heard`] once
    /// it does. Never waits. A bus that hears everything ignores it.
    fn interest(&self, _topic: Topic, _held: bool) {}
    /// The faults a test may inject into this bus, if it has any.
    fn faults(&self) -> Option<&BusFaults> {
        None
    }
}

/// Faults a test injects into a bus.
pub struct BusFaults {
    /// While `true`, the bus's new subscriptions wait, as a slow `SUBSCRIBE` would.
    pub hold_subscriptions: tokio::sync::watch::Sender<bool>,
    /// While `true`, the bus drops what it hears without a sign, as a message lost on its way
    /// would be: only the periodic reconciliation heals it.
    pub drop_received: tokio::sync::watch::Sender<bool>,
    /// While `true`, the bus's subscriber hears nothing at all, its own probes included, as
    /// one left on a demoted Redis would, until it reconnects (which sets this back).
    pub deaf: tokio::sync::watch::Sender<bool>,
}

impl Default for BusFaults {
    fn default() -> Self {
        Self {
            hold_subscriptions: tokio::sync::watch::Sender::new(false),
            drop_received: tokio::sync::watch::Sender::new(false),
            deaf: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// Tells the bus, if there is one, that this node holds or no longer holds `topic`.
pub fn interest(bus: &Option<std::sync::Arc<dyn Bus>>, topic: Topic, held: bool) {
    if let Some(bus) = bus {
        bus.interest(topic, held);
    }
}

/// Announces `event` to the other nodes, if there are any.
pub fn publish(bus: &Option<std::sync::Arc<dyn Bus>>, event: BusEvent) {
    if let Some(bus) = bus {
        bus.publish(event);
    }
}
