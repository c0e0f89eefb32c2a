//! The Redis bus (fred): what one hub process tells the others.
//!
//! Every message is `<node>|<kind>|<payload>`, on the channel of its recipients (see
//! [`interest`]: a user's shard `<prefix>:bus:u:<n>` for `n` and `i`, a project's
//! `<prefix>:bus:p:<id>` for `b`, `p` and `v`) or on `<prefix>:bus`, which every node hears:
//!
//! | kind | payload | sent when |
//! |---|---|---|
//! | `n` | `<user>:<seq>,<user>:<seq>…` | notifications were committed (many, or large) |
//! | `m` | `<JSON array of notifications>` | notifications were committed to a few users: carried whole |
//! | `i` | `<user>|<JSON of the change>` | a user changed their inbox |
//! | `t` | `<ticket>:<version>` | a ticket was committed |
//! | `b` | `<project>:<ticket>:u:<action>` or `…:c:<comment>` | a project's board changed |
//! | `p` | `<project>|<JSON of the change>` | a presence change (joined, left, viewing, typing) |
//! | `v` | `<project>|<user>,<user>…` | users were removed from a project |
//! | `x` | `<user>` | a user's tokens were ended: their sockets close |
//! | `u` | `<user>:<origin node>:<nonce>` | a user's row was written: every node drops them from its user cache, then confirms |
//! | `k` | `<origin node>:<nonce>` | a node dropped the user of `nonce`: the writer answers its call once every node confirmed |
//! | `r` | (empty) | the sender may have lost messages: everyone resyncs |
//!
//! The database stays the only copy of anything. A commit's notifications to a few users
//! cross whole (`m`, at most [`interest::CARRIED_MOST`] and [`interest::CARRIED_BYTES`] of text
//! per message), so the node of their recipients pushes them without a read; a bigger commit
//! crosses as pairs (`n`), which the node reads in batches. So a lost message only delays a
//! push, and every gap heals the same way: the node catches all of its connected users up from the database in one batched
//! read ([`tickethub_actors::Hub::catch_up_all`]).
//!
//! Gaps are noticed where they happen: a reconnect of either connection (fred reconnects with
//! exponential backoff and the subscriber resubscribes before anything else), a subscriber
//! that lagged behind its message buffer, or a publish that failed (the node then asks every
//! node to resync once it is back). A slow periodic reconciliation catches anything else.
//! Publishing never waits: messages go through a bounded queue to one task, and fail fast
//! while Redis is away rather than pile up; a message that finds the queue full is dropped,
//! which counts as a gap (the other nodes resync once publishing works again).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tickethub_actors::connection::Update;
use tickethub_actors::domain::ProjectId;
use tickethub_actors::domain::UserId;
use tickethub_actors::notification::{Notification, TicketSummary};
use tickethub_actors::ports::{BoardNotice, Bus, BusEvent, BusFaults, Topic};
use tickethub_actors::room::{BoardAction, PresenceChange, PresenceEntry};
use tickethub_actors::ticket_domain::TicketId;
use tokio::sync::{mpsc, oneshot};

use crate::config::{redact_url, ConfigError};

mod interest;

pub use interest::{shard, Channels, USER_SHARDS};

/// A message to publish: its channel (`None`: the one every node hears) and its text.
type Outgoing = (Option<String>, String);

/// The Redis bus of one hub process.
pub struct RedisBus {
    node: String,
    outbox: mpsc::Sender<Outgoing>,
    /// Set when a message could not be published (or queued): the other nodes are asked to
    /// resync once publishing works again.
    lost: Arc<AtomicBool>,
    publisher: Client,
    subscriber: fred::clients::SubscriberClient,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    health: Health,
    confirms: Arc<Confirms>,
    /// Where messages go.
    channels: Channels,
    /// This node's interest, followed by [`interest::follow`].
    interest: mpsc::UnboundedSender<(Topic, bool)>,
    faults: Arc<BusFaults>,
}

/// How long a write of a user waits for the other nodes to confirm they dropped the user from
/// their caches. A node that does not answer within it is stuck or cut off; the write answers
/// all the same.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// This node's writes of users waiting for the other nodes' confirmations, and what a node
/// does when it hears of another node's write.
/// A write's confirmations: how many were heard, how many are expected (once the publish
/// said how many heard it), and who waits.
type Waiting = (i64, Option<i64>, Option<oneshot::Sender<()>>);

#[derive(Default)]
struct Confirms {
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<HashMap<u64, Waiting>>,
    /// Drops a user from this node's cache.
    forget: std::sync::OnceLock<Box<dyn Fn(UserId) + Send + Sync>>,
}

impl Confirms {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one confirmation (`expected: None`) or learns how many to expect; tells the
    /// waiter once all have come.
    fn count(&self, nonce: u64, heard: i64, expected: Option<i64>) {
        let mut waiting = self.waiting();
        let Some(entry) = waiting.get_mut(&nonce) else {
            return;
        };
        entry.0 += heard;
        if expected.is_some() {
            entry.1 = expected;
        }
        if entry.1.is_some_and(|expected| entry.0 >= expected) {
            if let Some(done) = entry.2.take() {
                let _ = done.send(());
            }
        }
    }
}

/// Told `false` when the subscriber's connection breaks (this node may miss other nodes'
/// messages from then on) and `true` once it is subscribed again.
type Health = Arc<std::sync::OnceLock<Box<dyn Fn(bool) + Send + Sync>>>;

/// What the bus hands this node: other nodes' events, and [`BusEvent::Resync`] after any gap.
pub type Remote = mpsc::UnboundedReceiver<BusEvent>;

const SETTING: &str = "--redis-url (REDIS_URL)";

/// Reconnect attempts start at 100 ms and double up to 2 s, forever.
fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 2_000, 2)
}

/// Tells every hub on the bus of one event, from a process that is not a hub (the command
/// line), and waits until Redis took it.
pub async fn announce(url: &str, prefix: &str, event: &BusEvent) -> Result<(), String> {
    let config = Config::from_url(url).map_err(|e| format!("`{}`: {e}", redact_url(url)))?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| c.connection_timeout = Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    client
        .init()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", redact_url(url)))?;
    let node = format!("{:016x}", rand::random::<u64>());
    let channels = Channels::new(prefix, client.is_clustered());
    let sent = channels
        .send(&client, &channels.all, encode(&node, event))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = client.quit().await;
    sent
}

impl RedisBus {
    /// Connects (the first connection must succeed), subscribes, and starts the publishing,
    /// receiving and healing tasks.
    pub async fn connect(
        url: &str,
        prefix: &str,
        queue: usize,
    ) -> Result<(Arc<RedisBus>, Remote), ConfigError> {
        let config = Config::from_url(url)
            .map_err(|e| ConfigError::new(SETTING, format!("`{}`: {e}", redact_url(url))))?;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(reconnect_policy())
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
            })
            .with_performance_config(|p| {
                // The subscriber's message buffer: a burst larger than this is a lag, which
                // is healed by a resync.
                p.broadcast_channel_capacity = 16_384;
            });
        let publisher = builder
            .build()
            .map_err(|e| ConfigError::new(SETTING, e.to_string()))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| ConfigError::new(SETTING, e.to_string()))?;
        publisher.init().await.map_err(|e| cannot_connect(url, e))?;
        subscriber
            .init()
            .await
            .map_err(|e| cannot_connect(url, e))?;
        let channels = Channels::new(prefix, subscriber.is_clustered());
        channels
            .join(&subscriber, vec![channels.all.clone()])
            .await
            .map_err(|e| ConfigError::new(SETTING, format!("cannot subscribe: {e}")))?;
        let node = format!("{:016x}", rand::random::<u64>());
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        // Bounded: a Redis that is connected but slow cannot grow the queue without end. A
        // message that finds it full is dropped and counted, and the other nodes resync.
        let (out_tx, out_rx) = mpsc::channel::<Outgoing>(queue.max(1));
        // Set when a publish failed: once the publisher is back, every node is asked to resync.
        let lost = Arc::new(AtomicBool::new(false));
        let lost_marker = lost.clone();
        let resync = encode(&node, &BusEvent::Resync);
        let health = Health::default();
        let confirms = Arc::new(Confirms::default());
        let faults = Arc::new(BusFaults::default());
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();

        let tasks = vec![
            tokio::spawn(watch_errors(subscriber.clone(), health.clone())),
            tokio::spawn(interest::follow(
                subscriber.clone(),
                channels.clone(),
                interest_rx,
                in_tx.clone(),
                faults.clone(),
            )),
            tokio::spawn(publish_loop(
                publisher.clone(),
                channels.clone(),
                out_rx,
                lost.clone(),
                resync.clone(),
            )),
            tokio::spawn(receive_loop(
                subscriber.clone(),
                node.clone(),
                in_tx.clone(),
                confirms.clone(),
                out_tx.clone(),
            )),
            tokio::spawn(heal_subscriber(
                subscriber.clone(),
                in_tx,
                out_tx.clone(),
                resync.clone(),
                lost.clone(),
                health.clone(),
            )),
            tokio::spawn(heal_publisher(
                publisher.clone(),
                out_tx.clone(),
                resync,
                lost,
            )),
        ];
        Ok((
            Arc::new(RedisBus {
                node,
                outbox: out_tx,
                lost: lost_marker,
                publisher,
                subscriber,
                tasks,
                health,
                confirms,
                channels,
                interest: interest_tx,
                faults,
            }),
            in_rx,
        ))
    }

    /// Presence leases on this bus's Redis, for this node.
    pub fn presence(
        &self,
        prefix: &str,
        lease: std::time::Duration,
    ) -> crate::presence::RedisPresence {
        crate::presence::RedisPresence::new(
            self.publisher.clone(),
            self.node.clone(),
            prefix,
            lease,
        )
    }

    /// Whether this node hears the other nodes now (its subscriber is connected), as a probe
    /// that can be kept.
    pub fn listening(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let subscriber = self.subscriber.clone();
        move || subscriber.is_connected()
    }

    /// Tells every node that this user's row was written, and waits (at most
    /// [`CONFIRM_WAIT`]) until each node that heard it has dropped the user from its cache. A
    /// node that did not hear it (its subscriber is down) reads users from the database until
    /// it has resubscribed.
    pub async fn user_changed(&self, user: UserId) {
        let nonce = self.confirms.next.fetch_add(1, Ordering::Relaxed);
        let (done, heard) = oneshot::channel();
        self.confirms.waiting().insert(nonce, (0, None, Some(done)));
        let payload = format!("{}|u|{}:{}:{nonce}", self.node, user.0, self.node);
        let fast = self
            .publisher
            .with_options(&self.channels.publish_options(CONFIRM_WAIT));
        match self
            .channels
            .send(&fast, self.channels.all.as_str(), payload)
            .await
        {
            // Every subscriber heard it, this node's own among them.
            Ok(receivers) => {
                self.confirms.count(nonce, 0, Some((receivers - 1).max(0)));
                if tokio::time::timeout(CONFIRM_WAIT, heard).await.is_err() {
                    metrics::counter!("tickethub_bus_confirm_timeouts_total").increment(1);
                    tracing::warn!(
                        user = user.0,
                        "a node did not confirm a user's change in time"
                    );
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell the other nodes of a user's change");
                if !self.lost.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "cannot publish to the bus; the other nodes will resync once it is back");
                }
            }
        }
        self.confirms.waiting().remove(&nonce);
    }

    /// What this node does when another node wrote a user: drop them from its cache (set
    /// once). The confirmation is sent after it.
    pub fn on_user_changed(&self, forget: impl Fn(UserId) + Send + Sync + 'static) {
        let _ = self.confirms.forget.set(Box::new(forget));
    }

    /// Calls `on` with `false` when the subscriber's connection breaks and `true` once it has
    /// resubscribed (set once).
    pub fn on_health(&self, on: impl Fn(bool) + Send + Sync + 'static) {
        let _ = self.health.set(Box::new(on));
    }

    /// Closes both connections.
    pub async fn close(&self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.subscriber.quit().await;
        let _ = self.publisher.quit().await;
    }
}

fn cannot_connect(url: &str, e: Error) -> ConfigError {
    ConfigError::new(
        SETTING,
        format!("cannot connect to {}: {e}", redact_url(url)),
    )
}

/// Sends queued messages, those queued together at once (pipelined on the one connection, so
/// in the order they were queued); while Redis is away each fails at once (or at its timeout)
/// and is counted. Once a publish fails, the node owes the others a resync: it is sent after
/// the next publish that succeeds, and retried every second until it is through, whatever
/// fred's reconnect notices say.
async fn publish_loop(
    publisher: Client,
    channels: Channels,
    mut queue: mpsc::Receiver<Outgoing>,
    lost: Arc<AtomicBool>,
    resync: String,
) {
    let fast = publisher.with_options(&channels.publish_options(Duration::from_secs(2)));
    let publish = |(channel, payload): Outgoing| {
        let fast = &fast;
        let channels = &channels;
        async move {
            let channel = channel.as_deref().unwrap_or(channels.all.as_str());
            channels.send(fast, channel, payload).await
        }
    };
    let published = metrics::counter!("tickethub_bus_published_total");
    let failures = metrics::counter!("tickethub_bus_publish_failures_total");
    let mut batch = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(1), queue.recv()).await;
        match next {
            Ok(Some(first)) => batch.push(first),
            Ok(None) => return,
            // Quiet: a good moment to pay a resync still owed.
            Err(_) => {}
        };
        while batch.len() < 256 {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let ok = if batch.is_empty() {
            lost.load(Ordering::SeqCst)
        } else {
            let mut ok = true;
            for sent in futures::future::join_all(batch.drain(..).map(publish)).await {
                match sent {
                    Ok(_) => published.increment(1),
                    Err(e) => {
                        failures.increment(1);
                        ok = false;
                        if !lost.swap(true, Ordering::SeqCst) {
                            tracing::warn!(error = %e, "cannot publish to the bus; the other nodes will resync once it is back");
                        }
                    }
                }
            }
            ok
        };
        if ok && lost.swap(false, Ordering::SeqCst) {
            if publish((None, resync.clone())).await.is_ok() {
                tracing::info!("bus publishing is back; asked every node to resync");
            } else {
                lost.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// A broken subscriber connection is told at once, before fred reconnects.
async fn watch_errors(subscriber: fred::clients::SubscriberClient, health: Health) {
    let mut errors = subscriber.error_rx();
    loop {
        match errors.recv().await {
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        if let Some(on) = health.get() {
            on(false);
        }
    }
}

/// Decodes other nodes' messages; a lagging receiver is a gap.
async fn receive_loop(
    subscriber: fred::clients::SubscriberClient,
    own: String,
    events: mpsc::UnboundedSender<BusEvent>,
    confirms: Arc<Confirms>,
    outbox: mpsc::Sender<Outgoing>,
) {
    let mut messages = subscriber.message_rx();
    let heard = Heard::new();
    loop {
        let event = match messages.recv().await {
            Ok(message) => {
                let Some(text) = message.value.as_string() else {
                    continue;
                };
                heard.count(&text);
                if confirm_traffic(&text, &own, &confirms, &outbox) {
                    continue;
                }
                match decode(&text, &own) {
                    Some(event) => event,
                    None => continue,
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                metrics::counter!("tickethub_bus_lagged_total").increment(missed);
                tracing::warn!(missed, "the bus receiver lagged; resyncing");
                BusEvent::Resync
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// What this node hears on the bus, its own messages included: messages by kind and their
/// bytes (`tickethub_bus_received_total{kind}`, `tickethub_bus_received_bytes_total`).
struct Heard {
    kinds: Vec<(&'static str, metrics::Counter)>,
    other: metrics::Counter,
    bytes: metrics::Counter,
}

impl Heard {
    fn new() -> Self {
        let counter =
            |kind: &'static str| metrics::counter!("tickethub_bus_received_total", "kind" => kind);
        Self {
            kinds: ["n", "m", "i", "t", "b", "p", "v", "x", "u", "k", "r"]
                .into_iter()
                .map(|kind| (kind, counter(kind)))
                .collect(),
            other: counter("other"),
            bytes: metrics::counter!("tickethub_bus_received_bytes_total"),
        }
    }

    fn count(&self, text: &str) {
        self.bytes.increment(text.len() as u64);
        let kind = text.split('|').nth(1).unwrap_or_default();
        match self.kinds.iter().find(|(k, _)| *k == kind) {
            Some((_, counter)) => counter.increment(1),
            None => self.other.increment(1),
        }
    }
}

/// Another node's write of a user (`u|<user>:<origin>:<nonce>`): drop the user here, then
/// confirm (`k|<origin>:<nonce>`); a confirmation of this node's own write: count it. Answers
/// whether the message was one of these.
fn confirm_traffic(
    text: &str,
    own: &str,
    confirms: &Confirms,
    outbox: &mpsc::Sender<Outgoing>,
) -> bool {
    let mut parts = text.splitn(3, '|');
    let (Some(node), Some(kind), Some(payload)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    match kind {
        "u" => {
            let mut fields = payload.split(':');
            let (Some(user), Some(origin), Some(nonce)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return false;
            };
            if node == own {
                return true;
            }
            let Ok(user) = user.parse() else {
                return true;
            };
            if let Some(forget) = confirms.forget.get() {
                forget(UserId(user));
            }
            // Through the publish queue: never waits. A confirmation that cannot be sent
            // only makes the writer wait its time out.
            let _ = outbox.try_send((None, format!("{own}|k|{origin}:{nonce}")));
            true
        }
        "k" => {
            if let Some((origin, nonce)) = payload.split_once(':') {
                if origin == own {
                    if let Ok(nonce) = nonce.parse() {
                        confirms.count(nonce, 1, None);
                    }
                }
            }
            true
        }
        _ => false,
    }
}

/// Subscribes again to every channel the subscriber holds. Unlike fred's `resubscribe_all`,
/// it sends no `SUBSCRIBE` without channels, which Redis refuses (on a Redis Cluster every
/// channel is a shard channel, so the plain set is empty), and one `SSUBSCRIBE` per hash slot.
async fn resubscribe(subscriber: &fred::clients::SubscriberClient) -> Result<(), Error> {
    let channels = subscriber.tracked_channels();
    if !channels.is_empty() {
        subscriber
            .subscribe(channels.into_iter().collect::<Vec<_>>())
            .await?;
    }
    let shard_channels: Vec<fred::types::Key> = subscriber
        .tracked_shard_channels()
        .into_iter()
        .map(Into::into)
        .collect();
    for (_, group) in fred::util::group_by_hash_slot(shard_channels)? {
        subscriber.ssubscribe(group).await?;
    }
    Ok(())
}

/// After the subscriber reconnects: resubscribe first (retrying until it holds), then resync
/// this node and ask the others to resync (they may have missed what this node published
/// meanwhile).
async fn heal_subscriber(
    subscriber: fred::clients::SubscriberClient,
    events: mpsc::UnboundedSender<BusEvent>,
    outbox: mpsc::Sender<Outgoing>,
    resync: String,
    lost: Arc<AtomicBool>,
    health: Health,
) {
    let mut reconnects = subscriber.reconnect_rx();
    loop {
        match reconnects.recv().await {
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        metrics::counter!("tickethub_bus_reconnects_total", "connection" => "subscriber")
            .increment(1);
        let mut delay = Duration::from_millis(100);
        while let Err(e) = resubscribe(&subscriber).await {
            tracing::warn!(error = %e, "cannot resubscribe to the bus; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        tracing::info!("bus subscriber reconnected; resyncing");
        if let Some(on) = health.get() {
            on(true);
        }
        if events.send(BusEvent::Resync).is_err() {
            return;
        }
        if outbox.try_send((None, resync.clone())).is_err() {
            lost.store(true, Ordering::SeqCst);
        }
    }
}

/// After the publisher reconnects: if a publish failed meanwhile, queue a resync for every node
/// (the publish loop also pays it after its next success).
async fn heal_publisher(
    publisher: Client,
    outbox: mpsc::Sender<Outgoing>,
    resync: String,
    lost: Arc<AtomicBool>,
) {
    let mut reconnects = publisher.reconnect_rx();
    loop {
        match reconnects.recv().await {
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        metrics::counter!("tickethub_bus_reconnects_total", "connection" => "publisher")
            .increment(1);
        if lost.load(Ordering::SeqCst) {
            let _ = outbox.try_send((None, resync.clone()));
        }
    }
}

impl Bus for RedisBus {
    fn publish(&self, event: BusEvent) {
        if matches!(&event, BusEvent::Committed(e) if e.is_empty())
            || matches!(&event, BusEvent::Notified(n) if n.is_empty())
            || matches!(&event, BusEvent::Heard { .. })
        {
            return;
        }
        for (channel, event) in self.channels.route(event) {
            let text = encode(&self.node, &event);
            if self.outbox.try_send((channel, text)).is_err() {
                metrics::counter!("tickethub_bus_publish_dropped_total").increment(1);
                if !self.lost.swap(true, Ordering::SeqCst) {
                    tracing::warn!("the bus's publish queue is full; the other nodes will resync");
                }
            }
        }
    }

    fn interest(&self, topic: Topic, held: bool) {
        let _ = self.interest.send((topic, held));
    }

    fn faults(&self) -> Option<&BusFaults> {
        Some(&self.faults)
    }

    fn is_connected(&self) -> bool {
        self.publisher.is_connected() && self.subscriber.is_connected()
    }
}

/// The wire form of a notification carried whole (times in nanoseconds since the epoch).
#[derive(Serialize, Deserialize)]
struct NotificationWire {
    id: i64,
    user: i64,
    seq: i64,
    #[serde(rename = "type")]
    kind: String,
    title: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ticket: Option<TicketWire>,
    data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    read: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_at: Option<i64>,
    at: i64,
}

/// The ticket of a carried notification.
#[derive(Serialize, Deserialize)]
struct TicketWire {
    id: i64,
    key: String,
    title: String,
    priority: String,
    category: String,
    status: String,
    by: String,
    project: String,
    at: i64,
}

fn nanos(at: &chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl From<&Notification> for NotificationWire {
    fn from(n: &Notification) -> Self {
        NotificationWire {
            id: n.id,
            user: n.user_id.0,
            seq: n.seq,
            kind: n.notification_type.as_str().to_owned(),
            title: n.title.clone(),
            message: n.message.clone(),
            ticket: n.ticket.as_ref().map(|t| TicketWire {
                id: t.id.0,
                key: t.key.clone(),
                title: t.title.clone(),
                priority: t.priority.as_str().to_owned(),
                category: t.category.as_str().to_owned(),
                status: t.status.as_str().to_owned(),
                by: t.created_by.clone(),
                project: t.project_name.clone(),
                at: nanos(&t.created_at),
            }),
            data: n.data.clone(),
            url: n.action_url.clone(),
            read: n.is_read,
            read_at: n.read_at.as_ref().map(nanos),
            at: nanos(&n.created_at),
        }
    }
}

impl NotificationWire {
    /// The notification; `None` for a value the hub would not have written.
    fn into_notification(self) -> Option<Notification> {
        let at = chrono::DateTime::from_timestamp_nanos;
        let ticket = match self.ticket {
            Some(t) => Some(TicketSummary {
                id: TicketId(t.id),
                key: t.key,
                title: t.title,
                priority: t.priority.parse().ok()?,
                category: t.category.parse().ok()?,
                status: t.status.parse().ok()?,
                created_by: t.by,
                project_name: t.project,
                created_at: at(t.at),
            }),
            None => None,
        };
        Some(Notification {
            id: self.id,
            user_id: UserId(self.user),
            seq: self.seq,
            notification_type: self.kind.parse().ok()?,
            title: self.title,
            message: self.message,
            ticket,
            data: self.data,
            action_url: self.url,
            is_read: self.read,
            read_at: self.read_at.map(at),
            created_at: at(self.at),
        })
    }
}

/// The wire form of an inbox change.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum InboxWire {
    Read {
        id: i64,
        is_read: bool,
    },
    Deleted {
        id: i64,
    },
    AllDeleted {
        count: i64,
    },
    AllRead {
        count: i64,
        notification_type: Option<String>,
        ticket: Option<i64>,
    },
}

impl From<&Update> for InboxWire {
    fn from(u: &Update) -> Self {
        match u.clone() {
            Update::Read { id, is_read } => InboxWire::Read { id, is_read },
            Update::Deleted { id } => InboxWire::Deleted { id },
            Update::AllDeleted { count } => InboxWire::AllDeleted { count },
            Update::AllRead {
                count,
                notification_type,
                ticket,
            } => InboxWire::AllRead {
                count,
                notification_type,
                ticket,
            },
        }
    }
}

impl From<InboxWire> for Update {
    fn from(w: InboxWire) -> Self {
        match w {
            InboxWire::Read { id, is_read } => Update::Read { id, is_read },
            InboxWire::Deleted { id } => Update::Deleted { id },
            InboxWire::AllDeleted { count } => Update::AllDeleted { count },
            InboxWire::AllRead {
                count,
                notification_type,
                ticket,
            } => Update::AllRead {
                count,
                notification_type,
                ticket,
            },
        }
    }
}

/// The wire form of a presence change.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PresenceWire {
    Joined {
        user: i64,
        username: String,
        #[serde(default)]
        display_name: String,
        #[serde(default)]
        viewing: Option<i64>,
    },
    Left {
        user: i64,
        username: String,
    },
    Viewing {
        user: i64,
        ticket: Option<i64>,
    },
    Typing {
        user: i64,
        ticket: i64,
        is_typing: bool,
    },
}

impl From<&PresenceChange> for PresenceWire {
    fn from(c: &PresenceChange) -> Self {
        match c.clone() {
            PresenceChange::Joined(entry) => PresenceWire::Joined {
                user: entry.user_id.0,
                username: entry.username,
                display_name: entry.display_name,
                viewing: entry.viewing.map(|t| t.0),
            },
            PresenceChange::Left { user_id, username } => PresenceWire::Left {
                user: user_id.0,
                username,
            },
            PresenceChange::Viewing { user_id, ticket_id } => PresenceWire::Viewing {
                user: user_id.0,
                ticket: ticket_id.map(|t| t.0),
            },
            PresenceChange::Typing {
                user_id,
                ticket_id,
                is_typing,
            } => PresenceWire::Typing {
                user: user_id.0,
                ticket: ticket_id.0,
                is_typing,
            },
        }
    }
}

impl From<PresenceWire> for PresenceChange {
    fn from(w: PresenceWire) -> Self {
        match w {
            PresenceWire::Joined {
                user,
                username,
                display_name,
                viewing,
            } => PresenceChange::Joined(PresenceEntry {
                user_id: UserId(user),
                display_name: if display_name.is_empty() {
                    username.clone()
                } else {
                    display_name
                },
                username,
                viewing: viewing.map(TicketId),
            }),
            PresenceWire::Left { user, username } => PresenceChange::Left {
                user_id: UserId(user),
                username,
            },
            PresenceWire::Viewing { user, ticket } => PresenceChange::Viewing {
                user_id: UserId(user),
                ticket_id: ticket.map(TicketId),
            },
            PresenceWire::Typing {
                user,
                ticket,
                is_typing,
            } => PresenceChange::Typing {
                user_id: UserId(user),
                ticket_id: TicketId(ticket),
                is_typing,
            },
        }
    }
}

/// `<node>|<kind>|<payload>`
fn encode(node: &str, event: &BusEvent) -> String {
    match event {
        BusEvent::Committed(events) => {
            let pairs: Vec<String> = events.iter().map(|(u, s)| format!("{}:{s}", u.0)).collect();
            format!("{node}|n|{}", pairs.join(","))
        }
        BusEvent::Notified(notifications) => {
            let wire: Vec<NotificationWire> = notifications
                .iter()
                .map(|n| NotificationWire::from(&**n))
                .collect();
            format!(
                "{node}|m|{}",
                serde_json::to_string(&wire).expect("notifications serialize")
            )
        }
        BusEvent::Inbox(user, update) => format!(
            "{node}|i|{}|{}",
            user.0,
            serde_json::to_string(&InboxWire::from(update)).expect("inbox changes serialize")
        ),
        BusEvent::Ticket(id, version) => format!("{node}|t|{}:{version}", id.0),
        BusEvent::Board {
            project,
            ticket,
            notice,
        } => {
            let notice = match notice {
                BoardNotice::Update(action) => format!("u:{}", action.as_str()),
                BoardNotice::Comment(id) => format!("c:{id}"),
            };
            format!("{node}|b|{}:{}:{notice}", project.0, ticket.0)
        }
        BusEvent::Presence(project, change) => format!(
            "{node}|p|{}|{}",
            project.0,
            serde_json::to_string(&PresenceWire::from(change)).expect("presence changes serialize")
        ),
        BusEvent::Revoked(project, users) => format!(
            "{node}|v|{}|{}",
            project.0,
            users
                .iter()
                .map(|u| u.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        BusEvent::SessionsEnded(user) => format!("{node}|x|{}", user.0),
        BusEvent::UserChanged(user) => format!("{node}|u|{}", user.0),
        BusEvent::Resync => format!("{node}|r|"),
        // Told by this node's bus to itself, never published.
        BusEvent::Heard { .. } => format!("{node}|h|"),
    }
}

/// The event of another node's message; `None` for this node's own or a malformed one.
fn decode(text: &str, own: &str) -> Option<BusEvent> {
    let (node, rest) = text.split_once('|')?;
    if node == own {
        return None;
    }
    let (kind, payload) = rest.split_once('|')?;
    match kind {
        "n" => payload
            .split(',')
            .map(|p| {
                let (u, s) = p.split_once(':')?;
                Some((UserId(u.parse().ok()?), s.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()
            .map(BusEvent::Committed),
        "m" => {
            let wire: Vec<NotificationWire> = serde_json::from_str(payload).ok()?;
            wire.into_iter()
                .map(|n| n.into_notification().map(Arc::new))
                .collect::<Option<Vec<_>>>()
                .map(BusEvent::Notified)
        }
        "i" => {
            let (user, json) = payload.split_once('|')?;
            let wire: InboxWire = serde_json::from_str(json).ok()?;
            Some(BusEvent::Inbox(UserId(user.parse().ok()?), wire.into()))
        }
        "t" => {
            let (id, version) = payload.split_once(':')?;
            Some(BusEvent::Ticket(
                TicketId(id.parse().ok()?),
                version.parse().ok()?,
            ))
        }
        "b" => {
            let mut parts = payload.splitn(4, ':');
            let project = ProjectId(parts.next()?.parse().ok()?);
            let ticket = TicketId(parts.next()?.parse().ok()?);
            let notice = match (parts.next()?, parts.next()?) {
                ("u", action) => BoardNotice::Update(BoardAction::parse(action)?),
                ("c", id) => BoardNotice::Comment(id.parse().ok()?),
                _ => return None,
            };
            Some(BusEvent::Board {
                project,
                ticket,
                notice,
            })
        }
        "p" => {
            let (project, json) = payload.split_once('|')?;
            let wire: PresenceWire = serde_json::from_str(json).ok()?;
            Some(BusEvent::Presence(
                ProjectId(project.parse().ok()?),
                wire.into(),
            ))
        }
        "v" => {
            let (project, users) = payload.split_once('|')?;
            let users = users
                .split(',')
                .map(|u| u.parse().ok().map(UserId))
                .collect::<Option<Vec<_>>>()?;
            Some(BusEvent::Revoked(ProjectId(project.parse().ok()?), users))
        }
        "x" => Some(BusEvent::SessionsEnded(UserId(payload.parse().ok()?))),
        "u" => Some(BusEvent::UserChanged(UserId(payload.parse().ok()?))),
        "r" => Some(BusEvent::Resync),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_skip_their_own_node() {
        let events = [
            BusEvent::Committed(vec![(UserId(1), 5), (UserId(22), 7)]),
            BusEvent::Inbox(
                UserId(3),
                Update::Read {
                    id: 9,
                    is_read: true,
                },
            ),
            BusEvent::Inbox(UserId(3), Update::Deleted { id: 9 }),
            BusEvent::Inbox(UserId(3), Update::AllDeleted { count: 4 }),
            BusEvent::Inbox(
                UserId(3),
                Update::AllRead {
                    count: 600,
                    notification_type: Some("a|b".into()),
                    ticket: Some(2),
                },
            ),
            BusEvent::Ticket(TicketId(12), 4),
            BusEvent::Board {
                project: ProjectId(3),
                ticket: TicketId(12),
                notice: BoardNotice::Update(BoardAction::StatusChanged),
            },
            BusEvent::Board {
                project: ProjectId(3),
                ticket: TicketId(12),
                notice: BoardNotice::Comment(77),
            },
            BusEvent::Presence(
                ProjectId(3),
                PresenceChange::Typing {
                    user_id: UserId(4),
                    ticket_id: TicketId(5),
                    is_typing: true,
                },
            ),
            BusEvent::Presence(
                ProjectId(3),
                PresenceChange::Left {
                    user_id: UserId(4),
                    username: "a|b".into(),
                },
            ),
            BusEvent::Presence(
                ProjectId(3),
                PresenceChange::Joined(PresenceEntry {
                    user_id: UserId(4),
                    username: "a|b".into(),
                    display_name: "A, B".into(),
                    viewing: Some(TicketId(9)),
                }),
            ),
            BusEvent::Revoked(ProjectId(3), vec![UserId(4), UserId(5)]),
            BusEvent::SessionsEnded(UserId(6)),
            BusEvent::UserChanged(UserId(7)),
            BusEvent::Resync,
        ];
        for event in events {
            let text = encode("a", &event);
            assert_eq!(decode(&text, "b"), Some(event), "{text}");
            assert_eq!(decode(&text, "a"), None);
        }
        assert_eq!(
            encode(
                "a",
                &BusEvent::Committed(vec![(UserId(1), 5), (UserId(22), 7)])
            ),
            "a|n|1:5,22:7"
        );
    }

    /// A notification with every field set, its times to the nanosecond.
    fn notification(user: i64, seq: i64, ticket: bool) -> Arc<Notification> {
        use chrono::TimeZone;
        let at = chrono::Utc
            .timestamp_opt(1_764_000_000, 123_456_789)
            .unwrap();
        Arc::new(Notification {
            id: 40 + seq,
            user_id: UserId(user),
            seq,
            notification_type: if ticket {
                tickethub_actors::event::EventType::TicketAssigned
            } else {
                tickethub_actors::event::EventType::Custom("deploy|done".into())
            },
            title: "Assigned \"WEB-5\" | now".into(),
            message: "Ticket WEB-5 → you, ünïcode".into(),
            ticket: ticket.then(|| TicketSummary {
                id: TicketId(5),
                key: "WEB-5".into(),
                title: "Login fails".into(),
                priority: tickethub_actors::ticket_domain::Priority::High,
                category: tickethub_actors::ticket_domain::Category::Bug,
                status: tickethub_actors::ticket_domain::TicketStatus::InProgress,
                created_by: "Ada L.".into(),
                project_name: "Web".into(),
                created_at: at,
            }),
            data: r#"{"k":[1,"|"]}"#.into(),
            action_url: ticket.then(|| "/tickets/5".into()),
            is_read: !ticket,
            read_at: (!ticket).then_some(at),
            created_at: at,
        })
    }

    #[test]
    fn carried_notifications_round_trip_whole() {
        let event = BusEvent::Notified(vec![notification(1, 5, true), notification(22, 7, false)]);
        let text = encode("a", &event);
        assert!(text.starts_with("a|m|["), "{text}");
        assert_eq!(decode(&text, "b"), Some(event));
        assert_eq!(decode(&text, "a"), None);
        // A value the hub would not write is dropped whole.
        let bad = text.replace("\"HIGH\"", "\"URGENT!\"");
        assert_ne!(bad, text);
        assert_eq!(decode(&bad, "b"), None);
    }

    #[test]
    fn a_few_notifications_go_whole_and_many_or_large_ones_as_pairs() {
        let c = interest::Channels::new("th", false);
        let few = vec![notification(1, 5, true), notification(1, 6, false)];
        assert_eq!(
            c.route(BusEvent::Notified(few.clone())),
            vec![(Some("th:bus:u:1".to_owned()), BusEvent::Notified(few))]
        );
        let many: Vec<Arc<Notification>> = (1..=interest::CARRIED_MOST as i64 + 1)
            .map(|seq| notification(2, seq, false))
            .collect();
        let pairs: Vec<(UserId, i64)> = many.iter().map(|n| (n.user_id, n.seq)).collect();
        assert_eq!(
            c.route(BusEvent::Notified(many)),
            vec![(Some("th:bus:u:2".to_owned()), BusEvent::Committed(pairs))]
        );
        let mut large = (*notification(3, 1, false)).clone();
        large.message = "x".repeat(interest::CARRIED_BYTES);
        assert_eq!(
            c.route(BusEvent::Notified(vec![Arc::new(large)])),
            vec![(
                Some("th:bus:u:3".to_owned()),
                BusEvent::Committed(vec![(UserId(3), 1)])
            )]
        );
        // An announcement goes once to every node, as pairs, in the commit's order.
        let everyone: Vec<Arc<Notification>> = (0..=interest::SPREAD_TO_ALL as i64)
            .rev()
            .map(|user| notification(user, 1, false))
            .collect();
        let pairs: Vec<(UserId, i64)> = everyone.iter().map(|n| (n.user_id, n.seq)).collect();
        assert_eq!(
            c.route(BusEvent::Notified(everyone)),
            vec![(None, BusEvent::Committed(pairs))]
        );
    }

    #[test]
    fn malformed_messages_are_ignored() {
        for text in [
            "garbage",
            "b|m|[{}]",
            "b|m|{",
            "b|x:1",
            "b|n|x:1",
            "b|t|1",
            "b|i|1|{}",
            "b|z|",
            "b|i|x|{\"kind\":\"deleted\",\"id\":1}",
        ] {
            assert_eq!(decode(text, "a"), None, "{text}");
        }
    }
}
