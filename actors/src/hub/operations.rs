//! What operators and tests see of the hub: the supervision tree's listings and snapshots,
//! channel status, readiness, and fault injection.

use super::*;

impl Hub {
    /// A page of the live rooms.
    pub async fn list_rooms(
        &self,
        filter: crate::directory::ListFilter<ProjectId>,
    ) -> Option<crate::directory::Listing<ProjectId, RoomMsg>> {
        ractor::call_t!(self.refs().rooms, |r| DirectoryMsg::List(filter, r), 5_000).ok()
    }

    /// Whether the supervision tree is whole: the root answers, and none of its children
    /// waits for a restart.
    pub async fn tree_healthy(&self) -> bool {
        ractor::call_t!(self.inner.root, RootMsg::Healthy, 500).unwrap_or(false)
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

    /// What the scheduler holds; `None` if it did not answer in time.
    pub async fn scheduler_snapshot(&self) -> Option<crate::scheduler::SchedulerSnapshot> {
        ractor::call_t!(
            self.refs().scheduler,
            crate::scheduler::SchedulerMsg::Snapshot,
            500
        )
        .ok()
    }

    /// Asks the scheduler to look for due sends now (a send was scheduled here).
    pub fn scheduler_tick(&self) {
        let _ = self
            .refs()
            .scheduler
            .send_message(crate::scheduler::SchedulerMsg::Tick);
    }

    /// What the purge actor holds; `None` if it did not answer in time.
    pub async fn purge_snapshot(&self) -> Option<crate::purge::PurgeSnapshot> {
        ractor::call_t!(self.refs().purge, crate::purge::PurgeMsg::Snapshot, 500).ok()
    }

    /// Asks the purge actor to sweep now (once the running sweep ends, if one runs).
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
        let restarts = ractor::call_t!(self.inner.root, RootMsg::Restarts, 5_000)
            .map(|by_child| by_child.values().sum())
            .unwrap_or(0);
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
}

/// What fault-injection tests do to the tree: built with the `testing` feature only.
#[cfg(feature = "testing")]
impl Hub {
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
            RootChild::Scheduler => refs
                .scheduler
                .send_message(crate::scheduler::SchedulerMsg::InjectFault)
                .is_ok(),
            RootChild::Purge => refs
                .purge
                .send_message(crate::purge::PurgeMsg::InjectFault)
                .is_ok(),
        };
    }
}
