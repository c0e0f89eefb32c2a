//! What every actor that raises notifications shares: the store, the routing table, and the
//! fan-out to user actors.

use std::collections::HashMap;
use std::sync::Arc;

use crate::directory::Map;
use crate::domain::{Role, User, UserId};
use crate::notification::{Draft, Notification, TicketSummary};
use crate::ports::{Store, StoreError};
use crate::routing::{
    channels_for, recipients, Channel, EventType, Parties, Preferences, Route, RoutingTable,
};
use crate::user::UserMsg;

mod paging;
pub use paging::{resolve, Unpaged};

/// Shared dependencies of the actors.
pub struct Deps {
    /// Batches the users' `sent_seq` writes.
    pub sent: Arc<crate::sent::SentRecorder>,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Who hears about what.
    pub routing: RoutingTable,
    /// The live user actors, for fan-out.
    pub users: Map<UserId, UserMsg>,
    /// The live project rooms, for board events.
    pub rooms: Map<crate::domain::ProjectId, crate::room::RoomMsg>,
    /// The live channel actors, to wake after a commit.
    pub channels: crate::delivery::ChannelMap,
    /// The outbound channels this hub has a transport for; others get no outbox rows.
    pub outbound: Vec<Channel>,
    /// Where every notification is also delivered, on the deployment's channels that are on.
    pub destinations: Vec<(Channel, String)>,
    /// Fan-out to other hub processes, if there are any.
    pub bus: Option<Arc<dyn crate::ports::Bus>>,
    /// Presence held across hub processes, if there are several.
    pub presence: Option<Arc<dyn crate::ports::PresenceStore>>,
    /// Counts each user's news before their actor is looked up (see [`crate::notices`]).
    pub notices: Arc<crate::notices::Notices>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

/// The people an event may reach, loaded once before drafting.
#[derive(Debug, Default)]
pub struct Audience {
    route: Option<Route>,
    admins: Vec<UserId>,
    super_admins: Vec<UserId>,
    users: HashMap<UserId, User>,
    /// Set instead of `users` when nobody is reached beyond the app: the active users among
    /// the candidates, in id order.
    in_app_only: Option<Vec<UserId>>,
    prefs: HashMap<UserId, Preferences>,
    outbound: Vec<Channel>,
    webhooks: Vec<(Channel, String)>,
    policies: Vec<crate::policy::Policy>,
}

/// Channels, each with an address (or a reason it was not used).
pub type Addressed = Vec<(Channel, String)>;

/// One event's content, the same for every recipient.
#[derive(Debug, Clone)]
pub struct Content {
    /// The type.
    pub event: EventType,
    /// The title.
    pub title: String,
    /// The sentence.
    pub message: String,
    /// The ticket it is about.
    pub ticket: Option<TicketSummary>,
    /// Extra data (a JSON object as text).
    pub data: String,
    /// Where a click should lead.
    pub action_url: Option<String>,
    /// The action behind it and who took it.
    pub cause: crate::notification::Cause,
}

impl Deps {
    /// Loads what drafting `event` needs: admins if the route names them, and the addresses
    /// and preferences of `candidates` and those admins.
    pub async fn audience(
        &self,
        event: &EventType,
        candidates: &[UserId],
    ) -> Result<Audience, StoreError> {
        self.audience_with(event, candidates, true).await
    }

    /// [`Deps::audience`], for drafts on channels some of which this hub sends on only if
    /// `outbound`. Drafting for channels none of which it sends on needs no preferences (in-app
    /// notifications are stored whatever they say), and, unless the webhooks need the
    /// recipients' names, no user rows either: only which candidates are active. An
    /// announcement to 10,000 users saves those reads.
    pub async fn audience_with(
        &self,
        event: &EventType,
        candidates: &[UserId],
        outbound: bool,
    ) -> Result<Audience, StoreError> {
        let webhooks: Vec<(Channel, String)> = self
            .destinations
            .iter()
            .filter(|(c, _)| self.outbound.contains(c))
            .cloned()
            .collect();
        let route = self.routing.route(event).cloned();
        let admins_routed = route.as_ref().is_some_and(|r| {
            r.audiences.iter().any(|a| {
                matches!(
                    a,
                    crate::routing::Audience::Admins | crate::routing::Audience::SuperAdmins
                )
            })
        });
        if !outbound && webhooks.is_empty() && !admins_routed {
            let mut ids = candidates.to_vec();
            ids.sort();
            ids.dedup();
            return Ok(Audience {
                route,
                in_app_only: Some(self.store.active_user_ids(&ids).await?),
                outbound: self.outbound.clone(),
                policies: self.routing.escalations().to_vec(),
                ..Audience::default()
            });
        }
        let mut ids: Vec<UserId> = candidates.to_vec();
        let mut admins = Vec::new();
        let mut super_admins = Vec::new();
        if admins_routed {
            for admin in self.store.users_with_role(Role::Admin).await? {
                admins.push(admin.id);
                if admin.is_superuser {
                    super_admins.push(admin.id);
                }
                ids.push(admin.id);
            }
        }
        ids.sort();
        ids.dedup();
        let users = self
            .store
            .users_by_ids(&ids)
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        let prefs = if outbound {
            self.store.preferences(&ids).await?
        } else {
            HashMap::new()
        };
        Ok(Audience {
            route,
            admins,
            super_admins,
            users,
            in_app_only: None,
            prefs,
            outbound: self.outbound.clone(),
            webhooks,
            policies: self.routing.escalations().to_vec(),
        })
    }

    /// Pushes a committed board event to the project's room here and announces it to the other
    /// nodes. Never waits.
    pub fn board(&self, event: crate::room::RoomEvent) {
        use crate::room::RoomEvent;
        let (ticket, notice) = match &event {
            RoomEvent::TicketUpdate { action, ticket } => {
                (ticket, crate::ports::BoardNotice::Update(*action))
            }
            RoomEvent::CommentAdded { ticket, comment } => {
                (ticket, crate::ports::BoardNotice::Comment(comment.id))
            }
            RoomEvent::AttachmentsChanged { ticket } => {
                (ticket, crate::ports::BoardNotice::Attachments)
            }
            _ => return,
        };
        let project = ticket.project_id;
        self.publish(crate::ports::BusEvent::Board {
            project,
            ticket: ticket.id,
            notice,
        });
        let room = self
            .rooms
            .read()
            .expect("room map poisoned")
            .get(&project)
            .cloned();
        if let Some(room) = room {
            let _ = room.send_message(crate::room::RoomMsg::Board(event));
        }
    }

    /// Announces an event to the other hub processes, if there is a bus. Never waits.
    pub fn publish(&self, event: crate::ports::BusEvent) {
        if let Some(bus) = &self.bus {
            bus.publish(event);
        }
    }

    /// Resolves an on-call send to whoever its target names now (by the store's clock): the
    /// send goes to them, and its `data.oncall` says who was chosen and why. Any other send is
    /// as it was.
    pub fn page(
        &self,
        a: crate::notification::Announcement,
    ) -> impl std::future::Future<
        Output = Result<crate::notification::Announcement, crate::notifier::Unpaged>,
    > + Send
           + '_ {
        use futures::future::{ready, Either};
        let target = match &a.to {
            crate::notification::Recipients::OnCall(target) => target.clone(),
            // Most sends: ready at once, and no bigger than the send itself.
            _ => return Either::Left(ready(Ok(a))),
        };
        Either::Right(Box::pin(async move {
            let mut a = a;
            let paged =
                crate::notifier::resolve(self.store.as_ref(), &target, self.store.now()).await?;
            tracing::debug!(why = %paged.why(), "on-call send resolved");
            let mut data: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&a.data).unwrap_or_default();
            data.insert("oncall".into(), paged.json());
            a.data = serde_json::Value::Object(data).to_string();
            a.to = crate::notification::Recipients::Users(vec![paged.user]);
            Ok(a)
        }))
    }

    /// Commits an admin's notification (now, or as its schedule fires): its recipients are
    /// resolved here (a role's active users, ids of active users), and its deliveries queued
    /// and woken.
    ///
    /// A large announcement commits in parts, in recipient order, each fanned out as soon as
    /// it is durable: the first part is [`FIRST_PART`] recipients, each next one twice the
    /// last. With an idempotency mark, the parts commit one after another, each recording in
    /// its transaction how far the call got, and a retry with the same key notifies only the
    /// recipients after that (see [`crate::ports::Progress`]). Without one, the parts after
    /// the first are handed to the store at once (where it commits on several connections,
    /// they are written side by side); a call that fails has reached the recipients of the
    /// parts that committed, and a retry notifies everyone again.
    pub async fn announce(
        &self,
        a: crate::notification::Announcement,
    ) -> Result<Announced, StoreError> {
        let a = match self.page(a).await {
            Ok(a) => a,
            Err(crate::notifier::Unpaged::Store(e)) => return Err(e),
            Err(e) => return Err(StoreError::NotFound(e.to_string())),
        };
        let deps = self;
        let mut ids: Vec<UserId> = match &a.to {
            crate::notification::Recipients::Users(ids) => ids.clone(),
            crate::notification::Recipients::OnCall(target) => {
                return Err(StoreError::NotFound(format!(
                    "{} was not resolved",
                    target.name()
                )))
            }
            crate::notification::Recipients::Role(role) => deps
                .store
                .users_with_role(*role)
                .await?
                .into_iter()
                .map(|u| u.id)
                .collect(),
        };
        // One announcement reaches a user once, however often the request names them.
        ids.sort();
        ids.dedup();
        let mut earlier = 0;
        if let Some(mark) = &a.idempotency {
            let progress = deps.store.idempotency_progress(mark).await?;
            if let Some(after) = progress.after {
                ids.retain(|id| *id > after);
                earlier = progress.committed;
            }
        }
        let event: EventType = a.notification_type.parse().expect("infallible");
        let outbound = a.channels.iter().any(|c| deps.outbound.contains(c));
        let audience = deps.audience_with(&event, &ids, outbound).await?;
        let mut drafts = audience.drafts_for(
            &ids,
            &a.channels,
            &Content {
                event,
                title: a.title,
                message: a.message,
                ticket: None,
                data: a.data,
                action_url: a.link,
                cause: crate::notification::Cause {
                    action: "send",
                    actor: a.sent_by,
                },
            },
        );
        drafts.sort_by_key(|d| d.recipient);
        let mut parts = Vec::new();
        let mut part = FIRST_PART;
        loop {
            let rest = drafts.split_off(part.min(drafts.len()));
            parts.push(std::mem::replace(&mut drafts, rest));
            if drafts.is_empty() {
                break;
            }
            part = part.saturating_mul(2);
        }
        let mut committed = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        let mark = a.idempotency.as_ref();
        let count = parts.len();
        let mut parts = parts.into_iter();
        let outcome: Result<(), StoreError> = async {
            // The first part alone, so that its recipients hear first.
            let first = parts.next().expect("one part at least");
            committed.extend(deps.commit_part(first, mark, count == 1).await?);
            if mark.is_some() {
                for (i, this) in parts.enumerate() {
                    let last = i + 2 == count;
                    committed.extend(deps.commit_part(this, mark, last).await?);
                }
                return Ok(());
            }
            // Then the others at once, each delivered as it lands.
            let mut pending: futures::stream::FuturesUnordered<_> = parts
                .map(|this| deps.commit_part(this, None, false))
                .collect();
            let mut failed = None;
            while let Some(landed) = futures::StreamExt::next(&mut pending).await {
                match landed {
                    Ok(ids) => committed.extend(ids),
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            failed.map_or(Ok(()), Err)
        }
        .await;
        if let Err(e) = outcome {
            if !committed.is_empty() {
                metrics::counter!("tickethub_announcements_failed_partway_total").increment(1);
                tracing::warn!(error = %e, notified = committed.len(), "an announcement failed part-way");
            }
            return Err(e);
        }
        Ok(Announced {
            count: earlier + committed.len() as i64,
            ids: committed,
        })
    }

    /// Commits one part of an announcement and delivers it; answers the ids it committed.
    async fn commit_part(
        &self,
        this: Vec<Draft>,
        mark: Option<&crate::domain::IdempotencyMark>,
        last: bool,
    ) -> Result<Vec<i64>, StoreError> {
        let queued = Deps::queued_channels(&this);
        let notifications = self
            .store
            .commit_notifications_part(this, mark, last)
            .await?;
        let ids = notifications.iter().map(|n| n.id).collect();
        self.deliver_queued(notifications, &queued);
        Ok(ids)
    }

    /// Sends committed notifications to their recipients' live actors and wakes the channel
    /// actors. Never waits on a socket or a provider.
    pub fn deliver(&self, notifications: Vec<Notification>) {
        self.deliver_queued(notifications, &Channel::outbound());
    }

    /// The outbound channels some of these drafts queue a delivery on.
    pub fn queued_channels(drafts: &[Draft]) -> Vec<Channel> {
        let mut channels: Vec<Channel> = drafts
            .iter()
            .flat_map(|d| d.deliveries.iter().flat_map(|(c, _)| c.queues()))
            .collect();
        channels.sort_by_key(|c| c.as_str());
        channels.dedup();
        channels
    }

    /// [`Deps::deliver`], waking only the channel actors of `queued` (each wake is a claim
    /// query, so a commit that queued nothing on a channel does not wake it).
    pub fn deliver_queued(&self, notifications: Vec<Notification>, queued: &[Channel]) {
        if notifications.is_empty() {
            return;
        }
        metrics::counter!("tickethub_notifications_committed_total")
            .increment(notifications.len() as u64);
        let notifications: Vec<Arc<Notification>> =
            notifications.into_iter().map(Arc::new).collect();
        if let Some(bus) = &self.bus {
            bus.publish(crate::ports::BusEvent::Notified(notifications.clone()));
        }
        {
            for n in &notifications {
                self.notices.news(n.user_id);
            }
            let users = self.users.read().expect("user map poisoned");
            for n in notifications {
                if let Some(actor) = users.get(&n.user_id) {
                    let _ = actor.send_message(UserMsg::Notify(n));
                }
            }
        }
        self.wake(queued);
    }

    /// Wakes the channel actors of `channels` to claim what was queued for them.
    pub fn wake(&self, channels: &[Channel]) {
        let actors = self.channels.read().expect("channel map poisoned");
        for channel in channels {
            if let Some(actor) = actors.get(channel) {
                let _ = actor.send_message(crate::delivery::ChannelMsg::Wake);
            }
        }
    }
}

/// The recipients of an announcement's first part; each next part is twice the last.
pub const FIRST_PART: usize = 500;

/// What an announcement committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announced {
    /// The ids of the notifications this call committed.
    pub ids: Vec<i64>,
    /// The notifications committed for it in all, with an idempotency key's earlier tries.
    pub count: i64,
}

/// Makes the `push` deliveries of `drafts` wait `wait` for their notification to be seen.
pub fn hold_pushes(drafts: &mut [Draft], wait: std::time::Duration) {
    for draft in drafts {
        for (channel, address) in &mut draft.deliveries {
            if *channel == Channel::Push {
                *address = crate::routing::push_held(address, wait);
            }
        }
    }
}

impl Audience {
    /// A `push` delivery's address narrowed to the carriers this hub sends on (only their
    /// devices get a row: nothing waits for a carrier no node drains); another channel's, as is.
    fn carried(&self, channel: Channel, address: String) -> String {
        if channel != Channel::Push {
            return address;
        }
        let carriers: Vec<Channel> = crate::routing::push_carriers(&address)
            .into_iter()
            .filter(|c| self.outbound.contains(c))
            .collect();
        crate::routing::push_address(Some(crate::routing::push_wait(&address)), &carriers)
    }

    /// A user loaded for this event.
    pub fn user(&self, id: UserId) -> Option<&User> {
        self.users.get(&id)
    }

    /// The outbound channels among `channels` that reach `user` for `event`, with the
    /// address of each, and why each of the others does not.
    pub fn reach(
        &self,
        user: &User,
        channels: &[Channel],
        event: &EventType,
    ) -> (Addressed, Addressed) {
        let none = Preferences::default();
        let prefs = self.prefs.get(&user.id).unwrap_or(&none);
        let mut reached = Vec::new();
        let mut missed = Vec::new();
        for channel in channels {
            if !self.outbound.contains(channel) {
                missed.push((*channel, "this hub has no transport for it".to_owned()));
                continue;
            }
            match crate::routing::reach(*channel, event, user, prefs) {
                Ok(address) => reached.push((*channel, self.carried(*channel, address))),
                Err(why) => missed.push((*channel, why.explain(*channel))),
            }
        }
        (reached, missed)
    }

    /// The drafts of a routed event: the route's audiences among `parties`, active users only,
    /// each with the outbound channels their addresses and preferences allow.
    pub fn drafts(&self, parties: Parties<'_>, content: &Content) -> Vec<Draft> {
        let Some(route) = &self.route else {
            return Vec::new();
        };
        let parties = Parties {
            admins: &self.admins,
            super_admins: &self.super_admins,
            ..parties
        };
        let ids = recipients(route, &parties);
        let mut drafts = self.drafts_for(&ids, &route.channels, content);
        if let Some(wait) = route.push_unless_seen {
            hold_pushes(&mut drafts, wait);
        }
        drafts
    }

    /// The drafts of an event sent to explicit recipients on explicit channels. The event is
    /// posted once to each webhook URL, for all its recipients: the first draft carries those
    /// deliveries.
    pub fn drafts_for(
        &self,
        ids: &[UserId],
        channels: &[Channel],
        content: &Content,
    ) -> Vec<Draft> {
        let none = Preferences::default();
        let escalations =
            crate::policy::plan(&self.policies, &content.event, content.ticket.as_ref());
        let reached: Vec<(UserId, Addressed)> = match &self.in_app_only {
            Some(active) => ids
                .iter()
                .filter(|id| active.binary_search(id).is_ok())
                .map(|id| (*id, Vec::new()))
                .collect(),
            None => ids
                .iter()
                .filter_map(|id| self.users.get(id))
                .filter(|u| u.is_active)
                .map(|user| {
                    let prefs = self.prefs.get(&user.id).unwrap_or(&none);
                    let addressed = channels_for(channels, &content.event, user, prefs)
                        .into_iter()
                        .filter(|(c, _)| self.outbound.contains(c))
                        .map(|(c, a)| (c, self.carried(c, a)))
                        .collect();
                    (user.id, addressed)
                })
                .collect(),
        };
        let mut drafts: Vec<Draft> = reached
            .into_iter()
            .map(|(recipient, deliveries)| Draft {
                recipient,
                notification_type: content.event.clone(),
                title: content.title.clone(),
                message: content.message.clone(),
                ticket: content.ticket.clone(),
                data: content.data.clone(),
                action_url: content.action_url.clone(),
                deliveries,
                webhook_recipients: Vec::new(),
                cause: content.cause,
                escalations: escalations.clone(),
            })
            .collect();
        if let Some(first) = drafts.first_mut().filter(|_| !self.webhooks.is_empty()) {
            first.deliveries.extend(self.webhooks.iter().cloned());
        }
        if !self.webhooks.is_empty() && drafts.len() > 1 {
            let recipients = drafts
                .iter()
                .filter_map(|d| self.users.get(&d.recipient))
                .map(|u| crate::notification::Recipient {
                    user_id: u.id,
                    username: u.username.clone(),
                    display_name: u.display_name.clone(),
                })
                .collect();
            drafts[0].webhook_recipients = recipients;
        }
        drafts
    }
}

#[cfg(test)]
mod tests;
