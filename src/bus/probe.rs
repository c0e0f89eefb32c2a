//! The bus hears itself. Every second a node publishes a probe (`<node>|e|<n>`) on the channel
//! every node hears; a node that does not hear its own probe back within [`DEAF_AFTER`] holds
//! a subscriber that is connected but hears nothing: one left on a Redis that a Sentinel
//! failover demoted (a replica that does not replicate yet), or on a Cluster shard whose
//! master was lost. Nothing else would tell: no error, no reconnect, only silence, healed at
//! the next periodic reconciliation. The node reconnects its subscriber instead, which
//! resubscribes and resyncs from the first probe it missed.
//!
//! On a Redis Cluster the probe tells of the shard of the common channel only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;

use super::{Channels, Owed};

/// The probe's kind on the wire.
const KIND: &str = "e";

/// How often a node probes.
const EVERY: Duration = Duration::from_secs(1);

/// How long a probe may go unheard before the subscriber is taken for deaf.
pub const DEAF_AFTER: Duration = Duration::from_secs(4);

/// The newest of this node's probes that it heard.
#[derive(Default)]
pub(super) struct Echo(AtomicU64);

impl Echo {
    /// Whether `text` is a probe (of any node); this node's own are counted as heard.
    pub(super) fn hears(&self, text: &str, own: &str) -> bool {
        let mut parts = text.splitn(3, '|');
        let (Some(node), Some(KIND), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        if node == own {
            if let Ok(n) = n.parse() {
                self.0.fetch_max(n, Ordering::Relaxed);
            }
        }
        true
    }
}

/// Publishes a probe every second and reconnects the subscriber when the oldest probe not
/// heard back was published [`DEAF_AFTER`] ago (counted in `tickethub_bus_deaf_total`). The
/// resync it owes runs from that probe on.
pub(super) async fn probe(
    publisher: Client,
    subscriber: fred::clients::SubscriberClient,
    channels: Channels,
    (node, echo, broken): (String, Arc<Echo>, Arc<Owed>),
) {
    let fast = publisher.with_options(&channels.publish_options(Duration::from_secs(1)));
    let deaf = metrics::counter!("tickethub_bus_deaf_total");
    let mut unheard: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut n = 0;
    loop {
        ticks.tick().await;
        // A process that was paused or starved has not read what it heard meanwhile either:
        // its probes are timed from now.
        if last.elapsed() > EVERY * 2 {
            let now = Instant::now();
            unheard.iter_mut().for_each(|(_, at)| *at = now);
        }
        last = Instant::now();
        let heard = echo.0.load(Ordering::Relaxed);
        unheard.retain(|(k, _)| *k > heard);
        if let Some(&(_, since)) = unheard.front() {
            if since.elapsed() >= DEAF_AFTER && subscriber.is_connected() {
                deaf.increment(1);
                tracing::warn!(
                    unheard = ?since.elapsed(),
                    "the bus subscriber hears nothing, not even this node's own probe; reconnecting it"
                );
                broken.owe_since(since);
                unheard.clear();
                if let Err(e) = subscriber.force_reconnection().await {
                    tracing::warn!(error = %e, "cannot reconnect the bus subscriber");
                }
                continue;
            }
        }
        n += 1;
        let text = format!("{node}|{KIND}|{n}");
        if channels.send(&fast, &channels.all, text).await.is_ok() {
            unheard.push_back((n, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_counts_its_own_probes_and_passes_over_the_others() {
        let echo = Echo::default();
        assert!(echo.hears("aa|e|3", "aa"));
        assert!(echo.hears("bb|e|9", "aa"));
        assert!(echo.hears("aa|e|2", "aa"));
        assert!(!echo.hears("aa|n|3", "aa"));
        assert!(!echo.hears("aa|e", "aa"));
        assert_eq!(echo.0.load(Ordering::Relaxed), 3);
    }
}
