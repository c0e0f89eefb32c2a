//! A room's state without its actor: board versions, presence members and their tabs, the
//! presence batch and its diff. Pure and unit-tested (`super::tests`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// The joins and leaves among `events` as one diff frame (a user who joined and left within
/// the batch, or left and came back, is in neither), followed by the other events in order.
pub(super) fn with_diff<'a>(
    events: impl Iterator<Item = &'a Arc<RoomFrame>>,
) -> Vec<Arc<RoomFrame>> {
    let mut net: BTreeMap<UserId, (bool, bool, Option<PresenceEntry>, String)> = BTreeMap::new();
    let mut rest = Vec::new();
    for frame in events {
        match frame.event() {
            RoomEvent::Presence(PresenceChange::Joined(entry)) => {
                let e = net
                    .entry(entry.user_id)
                    .or_insert((true, true, None, String::new()));
                e.1 = true;
                e.2 = Some(entry.clone());
            }
            RoomEvent::Presence(PresenceChange::Left { user_id, username }) => {
                let e = net
                    .entry(*user_id)
                    .or_insert((false, false, None, String::new()));
                e.1 = false;
                e.3.clone_from(username);
            }
            _ => rest.push(frame.clone()),
        }
    }
    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    for (user, (first_joined, last_joined, entry, username)) in net {
        match (first_joined, last_joined, entry) {
            (true, true, Some(entry)) => joins.push(entry),
            (false, false, _) => leaves.push((user, username)),
            _ => {}
        }
    }
    if !joins.is_empty() || !leaves.is_empty() {
        rest.insert(0, RoomFrame::new(RoomEvent::PresenceDiff { joins, leaves }));
    }
    rest
}

impl RoomState {
    pub(super) fn new(project: ProjectId) -> Self {
        RoomState {
            project,
            board: Vec::new(),
            board_users: HashMap::new(),
            presence: Vec::new(),
            members: BTreeMap::new(),
            orphaned: Vec::new(),
            pending: Vec::new(),
            entering: Vec::new(),
            leaving: Vec::new(),
            remote: BTreeMap::new(),
            store_failing: false,
            spare_until: None,
            touched: Vec::new(),
            flush_scheduled: false,
            board_versions: HashMap::new(),
            lease_timer: None,
        }
    }

    /// A presence store call failed: leases read once it answers again are spared.
    pub(super) fn store_failed(&mut self, e: &crate::ports::StoreError) {
        tracing::warn!(error = %e, "cannot record presence");
        self.store_failing = true;
    }

    /// Whether leases are spared at `now` (see `spare_until`).
    pub(super) fn sparing(&self, now: Instant) -> bool {
        self.store_failing || self.spare_until.is_some_and(|until| now < until)
    }

    /// The presence store answered at `now`: after a failure, leases are spared for `lease`.
    pub(super) fn store_answered(&mut self, now: Instant, lease: Duration) {
        if std::mem::take(&mut self.store_failing) {
            self.spare_until = Some(now + lease);
        }
    }

    pub(super) fn push_board(&mut self, event: &RoomEvent) {
        if let RoomEvent::TicketUpdate { ticket, .. } = event {
            // The newest version seen of each ticket keeps a late, older update off the
            // board. Bounded: past the cap the map starts over (a board may then show one
            // update out of order, which the next one corrects).
            if self.board_versions.len() >= BOARD_VERSIONS_KEPT
                && !self.board_versions.contains_key(&ticket.id)
            {
                self.board_versions.clear();
            }
            let newest = self.board_versions.entry(ticket.id).or_insert(0);
            if ticket.version <= *newest {
                return;
            }
            *newest = ticket.version;
        }
        let batch = one(event.clone());
        let users = &mut self.board_users;
        self.board.retain(|c| {
            let ok = c.push(ConnectionMsg::Room(batch.clone())).is_ok();
            if !ok {
                users.remove(&c.id);
            }
            ok
        });
    }

    /// Queues a presence event for every presence socket but those `skip` spares. Presence
    /// events are written in batches (see [`RoomActor::flush`]).
    pub(super) fn queue(&mut self, skip: Skip, event: RoomEvent) {
        self.pending.push((RoomFrame::new(event), skip));
    }

    /// Whether anything waits for a flush.
    pub(super) fn flush_due(&self) -> bool {
        !self.pending.is_empty()
            || !self.entering.is_empty()
            || !self.leaving.is_empty()
            || !self.touched.is_empty()
            || self.presence.iter().any(|s| s.fresh)
    }

    /// How long presence events gather: longer in a bigger room.
    pub(super) fn batch_interval(&self) -> Duration {
        (Duration::from_micros(20) * self.presence.len() as u32)
            .clamp(PRESENCE_BATCH, PRESENCE_BATCH_MAX)
    }

    /// What each presence socket gets from the queued events: a socket that just joined gets
    /// `state` (which already says who joined, left and looks at what) and the typing relays;
    /// the others get the events, with joins and leaves as one diff frame if they asked for
    /// it. Sockets in the same situation share one message.
    pub(super) fn batches(&mut self, state: Option<Arc<RoomFrame>>) -> Vec<(usize, Batch)> {
        let pending = std::mem::take(&mut self.pending);
        let for_fresh = |frame: &Arc<RoomFrame>| {
            matches!(
                frame.event(),
                RoomEvent::Presence(PresenceChange::Typing { .. })
            )
        };
        let build = |socket: Option<&PresenceSocket>, fresh: bool, diff: bool| -> Batch {
            let events = pending
                .iter()
                .filter(|(_, skip)| socket.is_none_or(|s| !skip.spares(s)))
                .map(|(frame, _)| frame);
            let mut out: Vec<Arc<RoomFrame>> = Vec::new();
            if fresh {
                out.extend(state.iter().cloned());
                out.extend(events.filter(|f| for_fresh(f)).cloned());
            } else if diff {
                out = with_diff(events);
            } else {
                out.extend(events.cloned());
            }
            out.into()
        };
        let mut shared: HashMap<(bool, bool), Batch> = HashMap::new();
        let mut out = Vec::new();
        for (i, socket) in self.presence.iter_mut().enumerate() {
            let (fresh, diff) = (std::mem::take(&mut socket.fresh), socket.diff);
            let spared = pending.iter().any(|(_, skip)| skip.spares(socket));
            let batch = if spared {
                build(Some(socket), fresh, diff)
            } else {
                shared
                    .entry((fresh, diff))
                    .or_insert_with(|| build(None, fresh, diff))
                    .clone()
            };
            if !batch.is_empty() {
                out.push((i, batch));
            }
        }
        out
    }

    /// Removes a presence socket; returns its user if that was their last tab here.
    pub(super) fn drop_presence(&mut self, id: ConnId) -> Option<UserId> {
        let pos = self.presence.iter().position(|s| s.conn.id == id)?;
        let user = self.presence.remove(pos).user;
        let member = self.members.get_mut(&user)?;
        member.tabs.retain(|(c, _)| *c != id);
        if member.tabs.is_empty() && member.gone_since.is_none() {
            member.gone_since = Some(Instant::now());
            self.orphaned.push(user);
            return Some(user);
        }
        None
    }

    pub(super) fn entry(&self, user: UserId) -> Option<PresenceEntry> {
        self.members.get(&user).map(|m| PresenceEntry {
            user_id: user,
            username: m.username.clone(),
            display_name: m.display_name.clone(),
            viewing: m.viewing,
        })
    }

    pub(super) fn entries(&self) -> Vec<PresenceEntry> {
        self.members
            .keys()
            .filter_map(|id| self.entry(*id))
            .collect()
    }

    /// Every socket of the room, board and presence.
    pub(super) fn sockets(&self) -> impl Iterator<Item = &ConnHandle> {
        self.board
            .iter()
            .chain(self.presence.iter().map(|s| &s.conn))
    }

    /// Forgets typing entries that stopped and whose throttle ran out: they only held back a
    /// relay that can no longer come too soon.
    pub(super) fn forget_stopped_typing(&mut self, throttle: Duration) {
        for member in self.members.values_mut() {
            member
                .typing
                .retain(|_, t| t.active || t.relayed.elapsed() < throttle);
        }
    }

    /// Takes every socket out of the room.
    pub(super) fn drain_sockets(&mut self) -> Vec<ConnHandle> {
        self.board_users.clear();
        let mut all: Vec<ConnHandle> = self.board.drain(..).collect();
        all.extend(self.presence.drain(..).map(|s| s.conn));
        self.pending.clear();
        all
    }

    pub(super) fn is_empty(&self) -> bool {
        self.board.is_empty()
            && self.presence.is_empty()
            && self.members.is_empty()
            && self.leaving.is_empty()
    }
}
