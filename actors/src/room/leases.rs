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

    /// Reads the other nodes' leases: reaps the run-out ones, and brings the room's view of
    /// who is present elsewhere in step with them.
    pub(super) async fn read_leases(&self, state: &mut RoomState) {
        let Some(store) = self.presence.clone() else {
            return;
        };
        match store.others(state.project).await {
            Ok((others, gone)) => {
                self.reap(state, gone);
                Self::reconcile(state, others);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read presence"),
        }
    }

    /// Brings the view of who is present on other nodes in step with their live leases, for
    /// this node's sockets only (each node does its own): a user the bus did not announce (a
    /// gap) is `joined` here now; one missing from two lease reads in a row (a lease is renewed
    /// every third of its life, so a live one is never missed twice) is `left`.
    pub(super) fn reconcile(state: &mut RoomState, others: Vec<PresenceEntry>) {
        let seen: std::collections::HashSet<UserId> = others.iter().map(|e| e.user_id).collect();
        for entry in others {
            match state.remote.get_mut(&entry.user_id) {
                Some(known) => *known = (entry, 0),
                None if state.members.contains_key(&entry.user_id) => {}
                None => {
                    state.remote.insert(entry.user_id, (entry.clone(), 0));
                    state.queue(Skip::Nobody, PresenceChange::Joined(entry).event());
                }
            }
        }
        let mut gone = Vec::new();
        for (user, (_, missed)) in state.remote.iter_mut() {
            if !seen.contains(user) {
                *missed += 1;
                if *missed >= 2 {
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
