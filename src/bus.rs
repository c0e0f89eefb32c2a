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
//! | `r` | `<ms>` | the sender may have lost messages for this long: everyone resyncs |
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
//! node to resync once it is back). A node that starts asks every node to resync too: its
//! earlier process may have been killed between answering a change and publishing it. A slow
//! periodic reconciliation catches any notification and inbox change missed otherwise.
//! Publishing never waits: messages go through a bounded queue to one task, and fail fast
//! while Redis is away rather than pile up; a message that finds the queue full is dropped,
//! which counts as a gap (the other nodes resync once publishing works again).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use std::collections::HashMap;
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::{Bus, BusEvent, BusFaults, Topic};
use tokio::sync::{mpsc, oneshot};

use crate::config::{redact_url, ConfigError};

mod encoding;
mod interest;
mod probe;

pub use interest::{shard, Channels, USER_SHARDS};

use encoding::{decode, encode};

/// A message to publish: its channel (`None`: the one every node hears) and its text.
type Outgoing = (Option<String>, String);

/// The Redis bus of one hub process.
pub struct RedisBus {
    node: String,
    outbox: mpsc::Sender<Outgoing>,
    /// Set when a message could not be published (or queued): the other nodes are asked to
    /// resync once publishing works again.
    lost: Arc<Owed>,
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

/// Reconnect attempts start at 100 ms and double up to 500 ms, forever: a node is back on the
/// bus within half a second of Redis (an attempt against a server that is down is one refused
/// connection).
fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 500, 2)
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
        // A node that starts may be one that was killed: between answering a change and
        // publishing it, its earlier process may have died. The other nodes resync first thing,
        // which tells their sockets the changes of the last minute from the database.
        let _ = out_tx.try_send((None, encode(&node, &BusEvent::Resync(Duration::ZERO))));
        // Set when a publish failed: once the publisher is back, every node is asked to resync.
        let lost = Arc::new(Owed::default());
        let lost_marker = lost.clone();
        let health = Health::default();
        let broken = Arc::new(Owed::default());
        let confirms = Arc::new(Confirms::default());
        let faults = Arc::new(BusFaults::default());
        let echo = Arc::new(probe::Echo::default());
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();

        let tasks = vec![
            tokio::spawn(watch_errors(
                subscriber.clone(),
                health.clone(),
                broken.clone(),
            )),
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
                node.clone(),
            )),
            tokio::spawn(receive_loop(
                subscriber.clone(),
                node.clone(),
                in_tx.clone(),
                (confirms.clone(), faults.clone(), echo.clone()),
                out_tx.clone(),
            )),
            tokio::spawn(probe::probe(
                publisher.clone(),
                subscriber.clone(),
                channels.clone(),
                (node.clone(), echo, broken.clone()),
            )),
            tokio::spawn(heal_subscriber(
                subscriber.clone(),
                in_tx,
                out_tx.clone(),
                node.clone(),
                lost.clone(),
                (health.clone(), broken, faults.clone()),
            )),
            tokio::spawn(heal_publisher(
                publisher.clone(),
                out_tx.clone(),
                node.clone(),
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
                if self.lost.owe() {
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
    lost: Arc<Owed>,
    node: String,
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
            lost.is_owed()
        } else {
            let mut ok = true;
            for sent in futures::future::join_all(batch.drain(..).map(publish)).await {
                match sent {
                    Ok(_) => published.increment(1),
                    Err(e) => {
                        failures.increment(1);
                        ok = false;
                        if lost.owe() {
                            tracing::warn!(error = %e, "cannot publish to the bus; the other nodes will resync once it is back");
                        }
                    }
                }
            }
            ok
        };
        if !ok {
            continue;
        }
        if let Some(since) = lost.take() {
            let resync = encode(&node, &BusEvent::Resync(since.elapsed()));
            if publish((None, resync)).await.is_ok() {
                tracing::info!("bus publishing is back; asked every node to resync");
            } else {
                lost.owe_since(since);
            }
        }
    }
}

/// A resync owed since a moment: messages may have been lost from then on.
#[derive(Default)]
struct Owed(std::sync::Mutex<Option<std::time::Instant>>);

impl Owed {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<std::time::Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Owes a resync from now on, unless one is owed already; answers whether it is new.
    fn owe(&self) -> bool {
        let mut held = self.held();
        let new = held.is_none();
        held.get_or_insert_with(std::time::Instant::now);
        new
    }

    /// Owes a resync from `since` on (or from earlier, if one was owed already).
    fn owe_since(&self, since: std::time::Instant) {
        let mut held = self.held();
        *held = Some(held.map_or(since, |owed| owed.min(since)));
    }

    fn is_owed(&self) -> bool {
        self.held().is_some()
    }

    /// Since when a resync is owed, if it is.
    fn since(&self) -> Option<std::time::Instant> {
        *self.held()
    }

    /// Since when a resync is owed, if it is; it is no longer.
    fn take(&self) -> Option<std::time::Instant> {
        self.held().take()
    }
}

/// A broken subscriber connection is told at once, before fred reconnects, and when it broke
/// is kept for the resync once it is back.
async fn watch_errors(
    subscriber: fred::clients::SubscriberClient,
    health: Health,
    broken: Arc<Owed>,
) {
    let mut errors = subscriber.error_rx();
    loop {
        match errors.recv().await {
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        broken.owe();
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
    (confirms, faults, echo): (Arc<Confirms>, Arc<BusFaults>, Arc<probe::Echo>),
    outbox: mpsc::Sender<Outgoing>,
) {
    let mut messages = subscriber.message_rx();
    let heard = Heard::new();
    loop {
        let event = match messages.recv().await {
            Ok(_) if *faults.deaf.borrow() => continue,
            Ok(message) => {
                let Some(text) = message.value.as_string() else {
                    continue;
                };
                heard.count(&text);
                if echo.hears(&text, &own) || *faults.drop_received.borrow() {
                    continue;
                }
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
                BusEvent::Resync(Duration::ZERO)
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
            kinds: ["n", "m", "i", "t", "b", "p", "v", "x", "u", "k", "r", "e"]
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
    node: String,
    lost: Arc<Owed>,
    (health, broken, faults): (Health, Arc<Owed>, Arc<BusFaults>),
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
        faults.deaf.send_replace(false);
        if let Some(on) = health.get() {
            on(true);
        }
        let since = broken.take().unwrap_or_else(std::time::Instant::now);
        if events.send(BusEvent::Resync(since.elapsed())).is_err() {
            return;
        }
        let resync = encode(&node, &BusEvent::Resync(since.elapsed()));
        if outbox.try_send((None, resync)).is_err() {
            lost.owe_since(since);
        }
    }
}

/// After the publisher reconnects: if a publish failed meanwhile, queue a resync for every node
/// (the publish loop also pays it after its next success).
async fn heal_publisher(
    publisher: Client,
    outbox: mpsc::Sender<Outgoing>,
    node: String,
    lost: Arc<Owed>,
) {
    let mut reconnects = publisher.reconnect_rx();
    loop {
        match reconnects.recv().await {
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        metrics::counter!("tickethub_bus_reconnects_total", "connection" => "publisher")
            .increment(1);
        // Still owed: the publish loop pays it again after its next success.
        if let Some(since) = lost.since() {
            let resync = encode(&node, &BusEvent::Resync(since.elapsed()));
            let _ = outbox.try_send((None, resync));
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
                if self.lost.owe() {
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

#[cfg(test)]
mod tests;
