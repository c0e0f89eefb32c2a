//! The Redis bus (fred): fan-out of committed notifications between hub processes.
//!
//! A node publishes `<node>|<user>:<seq>,<user>:<seq>…` on `<prefix>:notifications` after each
//! commit. Every other node hands each pair to its local user actor, which reads what it has
//! not pushed yet from the database (the database stays the only copy of a notification, so a
//! lost bus message delays a push until the next one, and replay on reconnect never depends on
//! the bus). A single node runs without Redis.

use std::sync::Arc;

use fred::prelude::*;
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::Bus;
use tokio::sync::mpsc;

use crate::config::{redact_url, ConfigError};

/// The Redis bus of one hub process.
pub struct RedisBus {
    node: String,
    outbox: mpsc::UnboundedSender<String>,
    publisher: Client,
    subscriber: fred::clients::SubscriberClient,
    resubscriber: tokio::task::JoinHandle<()>,
}

/// Notifications committed by other nodes: recipient and seq.
pub type Remote = mpsc::UnboundedReceiver<Vec<(UserId, i64)>>;

const SETTING: &str = "--redis-url (REDIS_URL)";

impl RedisBus {
    /// Connects, subscribes, and starts the publishing and receiving tasks.
    pub async fn connect(url: &str, prefix: &str) -> Result<(Arc<RedisBus>, Remote), ConfigError> {
        let config = Config::from_url(url)
            .map_err(|e| ConfigError::new(SETTING, format!("`{}`: {e}", redact_url(url))))?;
        let builder = Builder::from_config(config);
        let publisher = builder
            .build()
            .map_err(|e| ConfigError::new(SETTING, e.to_string()))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| ConfigError::new(SETTING, e.to_string()))?;
        publisher.init().await.map_err(|e| {
            ConfigError::new(
                SETTING,
                format!("cannot connect to {}: {e}", redact_url(url)),
            )
        })?;
        subscriber.init().await.map_err(|e| {
            ConfigError::new(
                SETTING,
                format!("cannot connect to {}: {e}", redact_url(url)),
            )
        })?;
        let channel = format!("{prefix}:notifications");
        // Resubscribe after reconnects; the task ends with the client.
        let resubscriber = subscriber.manage_subscriptions();
        subscriber
            .subscribe(channel.clone())
            .await
            .map_err(|e| ConfigError::new(SETTING, format!("cannot subscribe: {e}")))?;
        let node = format!("{:016x}", rand::random::<u64>());

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let sender = publisher.clone();
        let out_channel = channel.clone();
        tokio::spawn(async move {
            while let Some(payload) = out_rx.recv().await {
                if let Err(e) = sender
                    .publish::<i64, _, _>(out_channel.as_str(), payload)
                    .await
                {
                    tracing::warn!(error = %e, "cannot publish to the bus");
                }
            }
        });

        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let mut messages = subscriber.message_rx();
        let own = node.clone();
        tokio::spawn(async move {
            while let Ok(message) = messages.recv().await {
                let Some(text) = message.value.as_string() else {
                    continue;
                };
                if let Some(events) = decode(&text, &own) {
                    if in_tx.send(events).is_err() {
                        break;
                    }
                }
            }
        });

        Ok((
            Arc::new(RedisBus {
                node,
                outbox: out_tx,
                publisher,
                subscriber,
                resubscriber,
            }),
            in_rx,
        ))
    }

    /// Closes both connections.
    pub async fn close(&self) {
        self.resubscriber.abort();
        let _ = self.subscriber.quit().await;
        let _ = self.publisher.quit().await;
    }
}

impl Bus for RedisBus {
    fn publish(&self, events: &[(UserId, i64)]) {
        if !events.is_empty() {
            let _ = self.outbox.send(encode(&self.node, events));
        }
    }

    fn is_connected(&self) -> bool {
        self.publisher.is_connected() && self.subscriber.is_connected()
    }
}

/// `<node>|<user>:<seq>,…`
fn encode(node: &str, events: &[(UserId, i64)]) -> String {
    let pairs: Vec<String> = events.iter().map(|(u, s)| format!("{}:{s}", u.0)).collect();
    format!("{node}|{}", pairs.join(","))
}

/// The events of another node's message; `None` for this node's own or a malformed one.
fn decode(text: &str, own: &str) -> Option<Vec<(UserId, i64)>> {
    let (node, pairs) = text.split_once('|')?;
    if node == own {
        return None;
    }
    pairs
        .split(',')
        .map(|p| {
            let (u, s) = p.split_once(':')?;
            Some((UserId(u.parse().ok()?), s.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_skip_their_own_node() {
        let text = encode("a", &[(UserId(1), 5), (UserId(22), 7)]);
        assert_eq!(text, "a|1:5,22:7");
        assert_eq!(
            decode(&text, "b"),
            Some(vec![(UserId(1), 5), (UserId(22), 7)])
        );
        assert_eq!(decode(&text, "a"), None);
        assert_eq!(decode("b|x:1", "a"), None);
        assert_eq!(decode("garbage", "a"), None);
    }
}
