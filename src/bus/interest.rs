//! Interest routing: which channel a bus message goes on, and which channels this node hears.
//!
//! A user's notifications and inbox changes go on the channel of the user's shard,
//! `<prefix>:bus:u:<user mod USER_SHARDS>`; a project's board, presence and revocations on
//! `<prefix>:bus:p:<project>`; everything else (tickets, writes of users, ended sessions,
//! resyncs, confirmations) on `<prefix>:bus`, which every node hears. A node subscribes to the
//! shard of each user whose actor it runs and to the channel of each project whose room it runs,
//! so a message reaches only the nodes that hold one of its recipients. A commit whose
//! recipients span more than [`SPREAD_TO_ALL`] shards (an announcement) goes once on the
//! channel every node hears instead of once per shard.
//!
//! Subscribing never loses a message: the actor of a new user has read its backlog from the
//! database already, and a commit published before the node heard the user's shard is read
//! again once it does (the node is told [`BusEvent::Heard`], subscribe first, then catch up).
//! A channel nobody here needs any more is left after [`LINGER`], so that a user who
//! reconnects at once costs no unsubscribe and subscribe.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use tickethub_actors::domain::{ProjectId, UserId};
use tickethub_actors::notification::Notification;
use tickethub_actors::ports::{BusEvent, BusFaults, Topic};
use tokio::sync::mpsc;

/// How many shards users are spread over: 2^20, so that up to a million users each have a
/// channel of their own and a node with thousands of users hears only their messages (with
/// 4,096 shards, a node holding 14,000 users held a user in nearly every shard, and heard
/// nearly everything: see BENCHMARKS.md, "Interest routing"). A node subscribes to one channel
/// per user it holds. Every node of a deployment must agree on it, so it is not a setting.
pub const USER_SHARDS: i64 = 1 << 20;

/// A commit to recipients in more shards than this goes once to every node.
pub const SPREAD_TO_ALL: usize = 64;

/// The most notifications one message carries whole (see [`carried`]).
pub const CARRIED_MOST: usize = 16;

/// The most bytes of text (titles, messages, data) one message carries whole.
pub const CARRIED_BYTES: usize = 16 * 1024;

/// Whether a shard's part of a commit goes whole, so that the nodes of its users push it
/// without reading it: a few notifications of modest size. The rest go as `(user, seq)` pairs,
/// which a node reads in batches, so a big commit does not load Redis with its content.
pub fn carried(part: &[Arc<Notification>]) -> bool {
    part.len() <= CARRIED_MOST
        && part
            .iter()
            .map(|n| {
                n.title.len()
                    + n.message.len()
                    + n.data.len()
                    + n.action_url.as_ref().map_or(0, String::len)
                    + n.ticket.as_ref().map_or(0, |t| {
                        t.title.len() + t.key.len() + t.created_by.len() + t.project_name.len()
                    })
            })
            .sum::<usize>()
            <= CARRIED_BYTES
}

/// How long a channel nobody here needs is kept before it is left.
pub const LINGER: Duration = Duration::from_secs(10);

/// The bus's channel names, and how they are published and subscribed to.
#[derive(Clone, Debug)]
pub struct Channels {
    /// `<prefix>:bus`, heard by every node.
    pub all: String,
    prefix: String,
    /// On a Redis Cluster: sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`), so that a message goes
    /// only to the master of its channel's slot (and its subscribers), not to every node of the
    /// cluster, and a publish answers how many nodes heard it.
    sharded: bool,
}

impl Channels {
    pub fn new(prefix: &str, sharded: bool) -> Self {
        Self {
            all: format!("{prefix}:bus"),
            prefix: prefix.to_owned(),
            sharded,
        }
    }

    /// How a publish is sent, within `timeout`. To one server: at once or not at all (fail
    /// fast while it is away; the other nodes resync once it is back). To a Redis Cluster:
    /// tried again while fred follows the cluster to a new master (a replica that took over
    /// is found by the retry), still within `timeout`.
    pub fn publish_options(&self, timeout: Duration) -> fred::types::config::Options {
        fred::types::config::Options {
            fail_fast: !self.sharded,
            timeout: Some(timeout),
            max_attempts: Some(if self.sharded { 3 } else { 1 }),
            ..Default::default()
        }
    }

    /// Publishes `payload` on `channel`; answers how many subscribers heard it.
    pub async fn send<C: PubsubInterface + Sync>(
        &self,
        client: &C,
        channel: &str,
        payload: String,
    ) -> Result<i64, Error> {
        if self.sharded {
            client.spublish(channel, payload).await
        } else {
            client.publish(channel, payload).await
        }
    }

    /// Subscribes to `channels`: on a Redis Cluster one `SSUBSCRIBE` per hash slot.
    pub async fn join(
        &self,
        subscriber: &fred::clients::SubscriberClient,
        channels: Vec<String>,
    ) -> Result<(), Error> {
        if !self.sharded {
            return subscriber.subscribe(channels).await;
        }
        for (_, group) in fred::util::group_by_hash_slot(channels)? {
            subscriber.ssubscribe(names(group)).await?;
        }
        Ok(())
    }

    /// Leaves `channels`: on a Redis Cluster one `SUNSUBSCRIBE` per hash slot.
    pub async fn leave(
        &self,
        subscriber: &fred::clients::SubscriberClient,
        channels: Vec<String>,
    ) -> Result<(), Error> {
        if !self.sharded {
            return subscriber.unsubscribe(channels).await;
        }
        for (_, group) in fred::util::group_by_hash_slot(channels)? {
            subscriber.sunsubscribe(names(group)).await?;
        }
        Ok(())
    }

    /// The channel of a user's shard.
    pub fn user(&self, user: UserId) -> String {
        format!("{}:bus:u:{}", self.prefix, shard(user))
    }

    /// The channel of a project.
    pub fn project(&self, project: ProjectId) -> String {
        format!("{}:bus:p:{}", self.prefix, project.0)
    }

    /// The channel of a topic.
    pub fn of(&self, topic: Topic) -> String {
        match topic {
            Topic::User(user) => self.user(user),
            Topic::Project(project) => self.project(project),
        }
    }

    /// Where an event goes: one or more (channel, event) pairs, `None` for the channel every
    /// node hears.
    pub fn route(&self, event: BusEvent) -> Vec<(Option<String>, BusEvent)> {
        match event {
            BusEvent::Committed(events) => {
                let mut by_shard: BTreeMap<i64, Vec<(UserId, i64)>> = BTreeMap::new();
                for (user, seq) in &events {
                    by_shard
                        .entry(shard(*user))
                        .or_default()
                        .push((*user, *seq));
                }
                if by_shard.len() > SPREAD_TO_ALL {
                    return vec![(None, BusEvent::Committed(events))];
                }
                by_shard
                    .into_values()
                    .map(|part| (Some(self.user(part[0].0)), BusEvent::Committed(part)))
                    .collect()
            }
            BusEvent::Notified(notifications) => {
                let pairs = |part: &[Arc<Notification>]| {
                    BusEvent::Committed(part.iter().map(|n| (n.user_id, n.seq)).collect())
                };
                let mut by_shard: BTreeMap<i64, Vec<Arc<Notification>>> = BTreeMap::new();
                for n in &notifications {
                    by_shard
                        .entry(shard(n.user_id))
                        .or_default()
                        .push(n.clone());
                }
                if by_shard.len() > SPREAD_TO_ALL {
                    return vec![(None, pairs(&notifications))];
                }
                by_shard
                    .into_values()
                    .map(|part| {
                        let channel = Some(self.user(part[0].user_id));
                        if carried(&part) {
                            (channel, BusEvent::Notified(part))
                        } else {
                            (channel, pairs(&part))
                        }
                    })
                    .collect()
            }
            BusEvent::Inbox(user, update) => {
                vec![(Some(self.user(user)), BusEvent::Inbox(user, update))]
            }
            BusEvent::Board {
                project,
                ticket,
                notice,
            } => vec![(
                Some(self.project(project)),
                BusEvent::Board {
                    project,
                    ticket,
                    notice,
                },
            )],
            BusEvent::Presence(project, change) => vec![(
                Some(self.project(project)),
                BusEvent::Presence(project, change),
            )],
            BusEvent::Revoked(project, users) => vec![(
                Some(self.project(project)),
                BusEvent::Revoked(project, users),
            )],
            event => vec![(None, event)],
        }
    }
}

/// The channel names of a group of keys.
fn names(keys: impl IntoIterator<Item = fred::types::Key>) -> Vec<String> {
    keys.into_iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect()
}

/// A user's shard.
pub fn shard(user: UserId) -> i64 {
    user.0.rem_euclid(USER_SHARDS)
}

/// Follows this node's interest: counts the topics held on each channel (a topic is held once,
/// however often its actor starts: a directory runs one actor per key, and an actor that failed
/// is started again without having stopped), subscribes (in batches) to
/// the channels that gained their first, tells [`BusEvent::Heard`] for the topics that waited
/// for it, and leaves the channels that have had none for [`LINGER`].
pub async fn follow(
    subscriber: fred::clients::SubscriberClient,
    channels: Channels,
    mut changes: mpsc::UnboundedReceiver<(Topic, bool)>,
    events: mpsc::UnboundedSender<BusEvent>,
    faults: Arc<BusFaults>,
) {
    let mut interest = Interest::default();
    let mut sweep = tokio::time::interval(LINGER / 2);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let gauge = metrics::gauge!("tickethub_bus_subscribed_channels");
    loop {
        let first = tokio::select! {
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
            _ = sweep.tick() => {
                let gone = interest.idle_for(LINGER, Instant::now());
                if !gone.is_empty() {
                    match channels.leave(&subscriber, gone.clone()).await {
                        Ok(()) => interest.left(&gone),
                        // The UNSUBSCRIBE may have applied though its answer never came (a
                        // timeout, a broken link): the channels are no longer counted as
                        // heard, so that a hold subscribes again, and are left again at the
                        // next sweep unless held by then.
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot leave the bus's idle channels");
                            interest.leave_failed(&gone);
                        }
                    }
                }
                gauge.set(interest.heard() as f64);
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < 10_000 {
            match changes.try_recv() {
                Ok(change) => batch.push(change),
                Err(_) => break,
            }
        }
        let (waiting_users, waiting_projects) = interest.apply(&channels, batch, Instant::now());
        let new = interest.unheard();
        if !new.is_empty() {
            let mut release = faults.hold_subscriptions.subscribe();
            let _ = release.wait_for(|hold| !*hold).await;
            let mut delay = Duration::from_millis(100);
            while let Err(e) = channels.join(&subscriber, new.clone()).await {
                tracing::warn!(error = %e, channels = new.len(), "cannot subscribe to the bus's channels; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            metrics::counter!("tickethub_bus_subscribes_total").increment(1);
            interest.joined(new);
            gauge.set(interest.heard() as f64);
        }
        if !waiting_users.is_empty() || !waiting_projects.is_empty() {
            let heard = BusEvent::Heard {
                users: waiting_users,
                projects: waiting_projects,
            };
            if events.send(heard).is_err() {
                return;
            }
        }
    }
}

/// What this node holds and hears: the topics held (each once), how many of them each channel
/// carries, the channels subscribed to, and since when each heard channel has carried none.
#[derive(Debug, Default)]
struct Interest {
    topics: HashSet<Topic>,
    held: HashMap<String, usize>,
    heard: HashSet<String>,
    idle: HashMap<String, Instant>,
    /// Channels whose leaving failed: perhaps still subscribed, perhaps not.
    doubtful: HashSet<String>,
}

impl Interest {
    /// Takes in a batch of holds and releases; answers the users and projects newly held on a
    /// channel not yet heard, which wait for its subscription.
    fn apply(
        &mut self,
        channels: &Channels,
        batch: Vec<(Topic, bool)>,
        now: Instant,
    ) -> (Vec<UserId>, Vec<ProjectId>) {
        let mut waiting_users = Vec::new();
        let mut waiting_projects = Vec::new();
        for (topic, hold) in batch {
            // A repeated hold (an actor restarted after a failure) or a release of what is not
            // held changes nothing.
            let changed = if hold {
                self.topics.insert(topic)
            } else {
                self.topics.remove(&topic)
            };
            if !changed {
                continue;
            }
            let channel = channels.of(topic);
            let count = self.held.entry(channel.clone()).or_default();
            if hold {
                *count += 1;
                self.idle.remove(&channel);
                self.doubtful.remove(&channel);
                if !self.heard.contains(&channel) {
                    match topic {
                        Topic::User(user) => waiting_users.push(user),
                        Topic::Project(project) => waiting_projects.push(project),
                    }
                }
            } else {
                *count -= 1;
                if *count == 0 {
                    self.held.remove(&channel);
                    if self.heard.contains(&channel) {
                        self.idle.insert(channel, now);
                    }
                }
            }
        }
        (waiting_users, waiting_projects)
    }

    /// The held channels not yet subscribed to.
    fn unheard(&self) -> Vec<String> {
        self.held
            .keys()
            .filter(|c| !self.heard.contains(*c))
            .cloned()
            .collect()
    }

    /// Records a subscription.
    fn joined(&mut self, channels: Vec<String>) {
        for channel in &channels {
            self.doubtful.remove(channel);
        }
        self.heard.extend(channels);
    }

    /// The heard channels that have carried no topic for `linger`, and the doubtful ones
    /// nothing holds.
    fn idle_for(&self, linger: Duration, now: Instant) -> Vec<String> {
        self.idle
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= linger)
            .map(|(c, _)| c.clone())
            .chain(
                self.doubtful
                    .iter()
                    .filter(|c| !self.held.contains_key(*c))
                    .cloned(),
            )
            .collect()
    }

    /// Records that `channels` were left.
    fn left(&mut self, channels: &[String]) {
        for channel in channels {
            self.idle.remove(channel);
            self.heard.remove(channel);
            self.doubtful.remove(channel);
        }
    }

    /// Records that leaving `channels` failed: whether they are still subscribed is unknown,
    /// so they no longer count as heard (a hold subscribes again) and are doubtful (left again
    /// at the next sweep, unless held).
    fn leave_failed(&mut self, channels: &[String]) {
        for channel in channels {
            self.idle.remove(channel);
            self.heard.remove(channel);
            self.doubtful.insert(channel.clone());
        }
    }

    /// How many channels are subscribed to.
    fn heard(&self) -> usize {
        self.heard.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_goes_to_its_recipients_shards_and_an_announcement_to_all() {
        let c = Channels::new("th", false);
        let routed = c.route(BusEvent::Committed(vec![
            (UserId(1), 5),
            (UserId(2), 3),
            (UserId(1 + USER_SHARDS), 9),
            (UserId(1), 6),
        ]));
        assert_eq!(
            routed,
            vec![
                (
                    Some("th:bus:u:1".to_owned()),
                    BusEvent::Committed(vec![
                        (UserId(1), 5),
                        (UserId(1 + USER_SHARDS), 9),
                        (UserId(1), 6)
                    ])
                ),
                (
                    Some("th:bus:u:2".to_owned()),
                    BusEvent::Committed(vec![(UserId(2), 3)])
                ),
            ]
        );
        let many: Vec<(UserId, i64)> = (0..=SPREAD_TO_ALL as i64).map(|u| (UserId(u), 1)).collect();
        assert_eq!(
            c.route(BusEvent::Committed(many.clone())),
            vec![(None, BusEvent::Committed(many))]
        );
        let resync = BusEvent::Resync(std::time::Duration::ZERO);
        assert_eq!(c.route(resync.clone()), vec![(None, resync)]);
        assert_eq!(
            c.route(BusEvent::Revoked(ProjectId(7), vec![UserId(1)])),
            vec![(
                Some("th:bus:p:7".to_owned()),
                BusEvent::Revoked(ProjectId(7), vec![UserId(1)])
            )]
        );
        assert_eq!(shard(UserId(-1)), USER_SHARDS - 1);
    }

    fn hold(user: i64) -> (Topic, bool) {
        (Topic::User(UserId(user)), true)
    }

    fn release(user: i64) -> (Topic, bool) {
        (Topic::User(UserId(user)), false)
    }

    #[test]
    fn a_restarted_actor_holds_its_topic_once_and_a_channel_is_left_after_its_last_topic() {
        let c = Channels::new("th", false);
        let t0 = Instant::now();
        let mut i = Interest::default();
        // User 1 and user 1 + USER_SHARDS share a channel; user 1's actor fails and is started
        // again without having stopped: a second hold.
        let (users, projects) = i.apply(&c, vec![hold(1), hold(1 + USER_SHARDS), hold(1)], t0);
        assert_eq!(users, vec![UserId(1), UserId(1 + USER_SHARDS)]);
        assert!(projects.is_empty());
        assert_eq!(i.unheard(), vec!["th:bus:u:1".to_owned()]);
        i.joined(i.unheard());
        assert!(i.unheard().is_empty());
        // Its one stop releases it; the other user still holds the channel.
        i.apply(&c, vec![release(1)], t0);
        assert!(i.idle_for(Duration::ZERO, t0).is_empty());
        // A release of what is not held changes nothing.
        i.apply(&c, vec![release(1)], t0);
        assert!(i.idle_for(Duration::ZERO, t0).is_empty());
        i.apply(&c, vec![release(1 + USER_SHARDS)], t0);
        assert!(i.idle_for(LINGER, t0 + LINGER / 2).is_empty());
        assert_eq!(
            i.idle_for(LINGER, t0 + LINGER),
            vec!["th:bus:u:1".to_owned()]
        );
        // Held again before it was left: still heard, nothing waits, no longer idle.
        let (users, _) = i.apply(&c, vec![hold(1)], t0 + LINGER);
        assert!(users.is_empty());
        assert!(i.unheard().is_empty());
        assert!(i.idle_for(LINGER, t0 + LINGER * 3).is_empty());
        // Released and left: a new hold waits for a new subscription.
        i.apply(&c, vec![release(1)], t0);
        let gone = i.idle_for(LINGER, t0 + LINGER);
        i.left(&gone);
        assert_eq!(i.heard(), 0);
        let (users, _) = i.apply(&c, vec![hold(1)], t0 + LINGER);
        assert_eq!(users, vec![UserId(1)]);
        assert_eq!(i.unheard(), vec!["th:bus:u:1".to_owned()]);
    }

    /// An UNSUBSCRIBE whose answer never came may have applied: a user held again afterwards
    /// waits for a new subscription (without it, the node would never hear their channel),
    /// and a channel still unheld is left again at the next sweep.
    #[test]
    fn a_channel_whose_leaving_failed_is_subscribed_again_when_held() {
        let c = Channels::new("th", false);
        let t0 = Instant::now();
        let mut i = Interest::default();
        i.apply(&c, vec![hold(1), hold(2)], t0);
        i.joined(i.unheard());
        i.apply(&c, vec![release(1), release(2)], t0);
        let mut gone = i.idle_for(LINGER, t0 + LINGER);
        gone.sort();
        assert_eq!(gone, ["th:bus:u:1", "th:bus:u:2"]);
        i.leave_failed(&gone);
        assert_eq!(i.heard(), 0);
        let (users, _) = i.apply(&c, vec![hold(1)], t0 + LINGER);
        assert_eq!(users, vec![UserId(1)], "user 1 waits for a subscription");
        assert_eq!(i.unheard(), vec!["th:bus:u:1".to_owned()]);
        i.joined(i.unheard());
        // User 2's channel, still unheld, is left again; user 1's is not.
        assert_eq!(
            i.idle_for(LINGER, t0 + LINGER),
            vec!["th:bus:u:2".to_owned()]
        );
        i.left(&["th:bus:u:2".to_owned()]);
        assert!(i.idle_for(LINGER, t0 + LINGER * 3).is_empty());
    }

    #[test]
    fn a_project_room_waits_for_its_channel_once() {
        let c = Channels::new("th", false);
        let t0 = Instant::now();
        let mut i = Interest::default();
        let p = (Topic::Project(ProjectId(7)), true);
        let (users, projects) = i.apply(&c, vec![p, p], t0);
        assert!(users.is_empty());
        assert_eq!(projects, vec![ProjectId(7)]);
        assert_eq!(i.unheard(), vec!["th:bus:p:7".to_owned()]);
    }
}
