//! Presence across nodes: announcing a change to this node's sockets and the others, and
//! reconciling this node's view with the leases other nodes hold in the presence store.

use super::*;

impl RoomActor {
    /// Tells this node's presence sockets (but those `skip` spares) and the other nodes of a
    /// change.
    pub(super) fn announce(&self, state: &mut RoomState, skip: Skip, change: PresenceChange) {
        crate::ports::publish(
            &self.bus,
            crate::ports::BusEvent::Presence(state.project, change.clone()),
        );
        state.queue(skip, change.event());
    }

    /// Users whose last lease (on a dead node) this node found run out and removed: gone from
    /// the cluster, unless they are here. The other nodes hear of it; this node's sockets only
    /// if they were told the user was present.
    pub(super) fn reap(&self, state: &mut RoomState, gone: Vec<(UserId, String)>) {
        for (user_id, username) in gone {
            if state.members.contains_key(&user_id) {
                continue;
            }
            let change = PresenceChange::Left { user_id, username };
            crate::ports::publish(
                &self.bus,
                crate::ports::BusEvent::Presence(state.project, change.clone()),
            );
            if state.remote.remove(&user_id).is_some() {
                state.queue(Skip::Nobody, change.event());
            }
        }
    }

    /// Renews this node's leases, then reads the other nodes'.
    pub(super) async fn renew_leases(&self, state: &mut RoomState) {
        let Some(store) = self.presence.clone() else {
            return;
        };
        let mine: Vec<PresenceEntry> = state.entries();
        if let Err(e) = store.refresh(state.project, &mine).await {
            state.store_failed(&e);
        }
        self.read_leases(state).await;
    }

    /// Reads the other nodes' leases: reaps the run-out ones, and brings the room's view of
    /// who is present elsewhere in step with them. While leases are spared (see
    /// `RoomState::spare_until`), nothing is reaped and no missing lease counts.
    pub(super) async fn read_leases(&self, state: &mut RoomState) {
        let Some(store) = self.presence.clone() else {
            return;
        };
        let now = Instant::now();
        let spared = state.sparing(now);
        match store.others(state.project, !spared).await {
            Ok((others, gone)) => {
                state.store_answered(now, self.config.presence_lease);
                self.reap(state, gone);
                let patience = (!spared).then_some(self.config.presence_lease / 2);
                Self::reconcile(state, others, now, patience);
            }
            Err(e) => state.store_failed(&e),
        }
    }

    /// Brings the view of who is present on other nodes in step with their live leases, for
    /// this node's sockets only (each node does its own): a user the bus did not announce (a
    /// gap) is `joined` here now; one whose lease reads have missed for `patience` is `left`
    /// (a live lease is renewed every third of its life, so half of it is past any renewal;
    /// it is time, not a count of reads, since a resync reads at any moment). Without
    /// `patience`, no miss counts.
    pub(super) fn reconcile(
        state: &mut RoomState,
        others: Vec<PresenceEntry>,
        now: Instant,
        patience: Option<std::time::Duration>,
    ) {
        let seen: std::collections::HashSet<UserId> = others.iter().map(|e| e.user_id).collect();
        for entry in others {
            match state.remote.get_mut(&entry.user_id) {
                Some(known) => *known = (entry, None),
                None if state.members.contains_key(&entry.user_id) => {}
                None => {
                    state.remote.insert(entry.user_id, (entry.clone(), None));
                    state.queue(Skip::Nobody, PresenceChange::Joined(entry).event());
                }
            }
        }
        let Some(patience) = patience else {
            return;
        };
        let mut gone = Vec::new();
        for (user, (_, missed)) in state.remote.iter_mut() {
            if !seen.contains(user) {
                let since = *missed.get_or_insert(now);
                if now.duration_since(since) >= patience {
                    gone.push(*user);
                }
            }
        }
        for user in gone {
            let (entry, _) = state.remote.remove(&user).expect("listed above");
            if !state.members.contains_key(&user) {
                let change = PresenceChange::Left {
                    user_id: user,
                    username: entry.username,
                };
                state.queue(Skip::Nobody, change.event());
            }
        }
    }
}
