//! Delivery analytics: what became of the notifications committed in each hour, per type and
//! channel.
//!
//! The figures come from two places. Live rows (notifications, their outbox rows and their
//! escalation steps) are read as they are; rows the purge deletes are first folded, in the
//! same transaction as their deletion, into hourly rollups keyed by (hour, type, channel). A
//! row is therefore counted either live or in a rollup, never both, and the figures outlive
//! retention. Rollups keep counters, and the read delays as a histogram of fixed buckets
//! ([`READ_DELAY_BOUNDS`]): percentiles of a bucket that holds rolled-up reads are read from
//! the histogram, so they are approximate (the upper bound of the histogram bucket the rank
//! falls in), where live reads alone give exact ones.
//!
//! Every row belongs to the hour its notification was committed in: a delivery, a read or an
//! escalation step that came later is counted there too. A delivery row's read figures are its
//! notification's, as they stood when the delivery was last seen (live, or when it was folded).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// The in-app channel: its rows count the notifications themselves.
pub const IN_APP: &str = "websocket";

/// The upper bounds (inclusive), in seconds, of the read-delay histogram the rollups keep.
pub const READ_DELAY_BOUNDS: [i64; 16] = [
    1, 5, 10, 30, 60, 120, 300, 600, 1_800, 3_600, 7_200, 14_400, 43_200, 86_400, 172_800, 604_800,
];

/// The histogram bucket of reads slower than the last bound.
pub const SLOWER: i64 = -1;

/// Read "within 5 minutes", "within an hour", "within a day" of the commit: at most this many
/// seconds after it.
pub const WITHIN: [f64; 3] = [300.0, 3_600.0, 86_400.0];

/// The histogram bucket a read delay (seconds) falls in.
pub fn bound_of(delay: f64) -> i64 {
    READ_DELAY_BOUNDS
        .iter()
        .copied()
        .find(|b| delay <= *b as f64)
        .unwrap_or(SLOWER)
}

/// The grain of an answer's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// One row per hour (UTC).
    Hour,
    /// One row per day (UTC).
    Day,
}

impl Bucket {
    /// Its name in requests: `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// Reads `hour` or `day`.
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Bucket::Hour => 3_600,
            Bucket::Day => 86_400,
        }
    }

    /// The start of the bucket `t` falls in.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let s = self.seconds();
        DateTime::from_timestamp(t.timestamp().div_euclid(s) * s, 0).unwrap_or(t)
    }

    /// The start of the first bucket at or after `t`.
    pub fn ceil(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let start = self.floor(t);
        if start == t {
            t
        } else {
            start + chrono::Duration::seconds(self.seconds())
        }
    }
}

/// The hour (UTC) `t` falls in: the rollups' key.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    Bucket::Hour.floor(t)
}

/// What an analytics request asks for: the notifications committed in `[from, to)` (whole
/// hours), of one type and on one channel if given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyticsQuery {
    /// The first hour.
    pub from: DateTime<Utc>,
    /// The end (exclusive).
    pub to: DateTime<Utc>,
    /// Only this notification type.
    pub notification_type: Option<String>,
    /// Only this channel (`websocket` for the in-app rows).
    pub channel: Option<String>,
}

impl AnalyticsQuery {
    /// Whether the in-app rows (notifications, escalation steps) are asked for.
    pub fn wants_in_app(&self) -> bool {
        self.channel.as_deref().is_none_or(|c| c == IN_APP)
    }

    /// Whether outbound rows (deliveries) are asked for.
    pub fn wants_outbound(&self) -> bool {
        self.channel.as_deref() != Some(IN_APP)
    }
}

/// The counters of one hour, type and channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Notifications committed (in-app), or outbox rows (outbound).
    pub committed: i64,
    /// Written to at least one socket (in-app), or attempted at least once (outbound).
    pub pushed: i64,
    /// Acknowledged by a client (in-app), or sent (outbound).
    pub delivered: i64,
    /// Failed for good (outbound).
    pub failed: i64,
    /// Held back because the notification was seen in time (push carriers).
    pub suppressed: i64,
    /// Escalation steps that fired (in-app rows).
    pub escalations: i64,
    /// Outbox rows sent inside another's message: a batch's later updates (outbound).
    pub batched: i64,
    /// Notifications summed up in the digests sent (on the `digest` type's email row).
    pub digested: i64,
    /// Read.
    pub reads: i64,
    /// Read within 5 minutes, an hour and a day of the commit (see [`WITHIN`]).
    pub reads_within: [i64; 3],
    /// The read delays of live rows, exact, in seconds.
    pub delays: Vec<f64>,
    /// The read delays of rolled-up rows: how many fell in each histogram bucket, by its bound
    /// ([`SLOWER`] past the last).
    pub histogram: BTreeMap<i64, i64>,
}

impl Tally {
    /// Counts a read `delay` seconds after the commit.
    pub fn read_after(&mut self, delay: f64) {
        let delay = delay.max(0.0);
        self.reads += 1;
        for (n, limit) in self.reads_within.iter_mut().zip(WITHIN) {
            if delay <= limit {
                *n += 1;
            }
        }
        self.delays.push(delay);
    }

    /// Adds another tally of the same key.
    pub fn merge(&mut self, other: Tally) {
        self.committed += other.committed;
        self.pushed += other.pushed;
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.suppressed += other.suppressed;
        self.escalations += other.escalations;
        self.batched += other.batched;
        self.digested += other.digested;
        self.reads += other.reads;
        for (a, b) in self.reads_within.iter_mut().zip(other.reads_within) {
            *a += b;
        }
        self.delays.extend(other.delays);
        for (bound, n) in other.histogram {
            *self.histogram.entry(bound).or_default() += n;
        }
    }

    /// Every read delay as histogram counts: the rolled-up ones and the live ones binned.
    pub fn binned(&self) -> BTreeMap<i64, i64> {
        let mut out = self.histogram.clone();
        for d in &self.delays {
            *out.entry(bound_of(*d)).or_default() += 1;
        }
        out.retain(|_, n| *n != 0);
        out
    }

    /// Whether its percentiles are read from the histogram (some reads were rolled up).
    pub fn approximate(&self) -> bool {
        self.histogram.values().any(|n| *n > 0)
    }

    /// The `p`-th quantile (0 < p ≤ 1) of the read delays, in seconds, by nearest rank: exact
    /// over live reads alone, the upper bound of the histogram bucket the rank falls in once
    /// some are rolled up (the last bound for the slowest bucket). `None` without reads.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let rolled: i64 = self.histogram.values().sum();
        let n = self.delays.len() as i64 + rolled;
        if n <= 0 {
            return None;
        }
        let rank = ((p * n as f64).ceil() as i64).clamp(1, n);
        if rolled == 0 {
            let mut sorted = self.delays.clone();
            sorted.sort_by(f64::total_cmp);
            return sorted.get(rank as usize - 1).copied();
        }
        let mut buckets: Vec<(i64, i64)> = self.binned().into_iter().collect();
        buckets.sort_by_key(|(bound, _)| if *bound == SLOWER { i64::MAX } else { *bound });
        let last = READ_DELAY_BOUNDS[READ_DELAY_BOUNDS.len() - 1];
        let mut seen = 0;
        for (bound, count) in buckets {
            seen += count;
            if seen >= rank {
                return Some(if bound == SLOWER { last } else { bound } as f64);
            }
        }
        Some(last as f64)
    }
}

/// A notification, as analytics counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationFacts {
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// Its type.
    pub notification_type: String,
    /// When it was read.
    pub read_at: Option<DateTime<Utc>>,
    /// Whether a socket of its user was written its seq (or a later one).
    pub pushed: bool,
    /// Whether a client of its user acknowledged its seq.
    pub acked: bool,
}

/// An outbox row, with its notification's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryFacts {
    /// When its notification was committed.
    pub created_at: DateTime<Utc>,
    /// Its notification's type.
    pub notification_type: String,
    /// When its notification was read.
    pub read_at: Option<DateTime<Utc>>,
    /// Its channel, as stored (`email`, `webpush`, …).
    pub channel: String,
    /// `QUEUED`, `SENDING`, `SENT`, `FAILED` or `SUPPRESSED`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// It went, or goes, inside another row's message (a batch).
    pub batched: bool,
}

/// An escalation step that fired, by its notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationFacts {
    /// When its notification was committed.
    pub created_at: DateTime<Utc>,
    /// Its notification's type.
    pub notification_type: String,
}

/// The key of a tally: the hour, the notification type, the channel.
pub type TallyKey = (DateTime<Utc>, String, String);

/// Tallies by hour, type and channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tallies(pub BTreeMap<TallyKey, Tally>);

fn delay(created_at: DateTime<Utc>, read_at: DateTime<Utc>) -> f64 {
    (read_at - created_at)
        .num_microseconds()
        .map_or(f64::MAX, |us| us as f64 / 1e6)
}

impl Tallies {
    fn entry(&mut self, at: DateTime<Utc>, kind: &str, channel: &str) -> &mut Tally {
        self.0
            .entry((hour_of(at), kind.to_owned(), channel.to_owned()))
            .or_default()
    }

    /// Counts a notification on its in-app row.
    pub fn notification(&mut self, n: &NotificationFacts) {
        let t = self.entry(n.created_at, &n.notification_type, IN_APP);
        t.committed += 1;
        t.pushed += i64::from(n.pushed);
        t.delivered += i64::from(n.acked);
        if let Some(read_at) = n.read_at {
            t.read_after(delay(n.created_at, read_at));
        }
    }

    /// Counts an outbox row on its channel's row.
    pub fn delivery(&mut self, d: &DeliveryFacts) {
        let t = self.entry(d.created_at, &d.notification_type, &d.channel);
        t.committed += 1;
        let settled = matches!(d.status.as_str(), "SENT" | "FAILED" | "SUPPRESSED");
        t.pushed += i64::from(d.attempts > 0 || (d.batched && settled));
        match d.status.as_str() {
            "SENT" => t.delivered += 1,
            "FAILED" => t.failed += 1,
            "SUPPRESSED" => t.suppressed += 1,
            _ => {}
        }
        t.batched += i64::from(d.batched && d.status == "SENT");
        if let Some(read_at) = d.read_at {
            t.read_after(delay(d.created_at, read_at));
        }
    }

    /// Counts a digest sent at `sent_at` that summed up `notifications`, on the email row of
    /// the type `digest`.
    pub fn digest(&mut self, sent_at: DateTime<Utc>, notifications: i64) {
        let t = self.entry(sent_at, DIGEST, "email");
        t.committed += 1;
        t.pushed += 1;
        t.delivered += 1;
        t.digested += notifications;
    }

    /// Counts a fired escalation step on its notification's in-app row.
    pub fn escalation(&mut self, e: &EscalationFacts) {
        self.entry(e.created_at, &e.notification_type, IN_APP)
            .escalations += 1;
    }

    /// Adds a tally (a rollup's, say) to its key's.
    pub fn add(&mut self, key: TallyKey, tally: Tally) {
        self.0.entry(key).or_default().merge(tally);
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The answer's rows: the hours merged into `bucket`s, ordered by bucket, type, then the
    /// in-app row before the outbound ones by name.
    pub fn rows(self, bucket: Bucket) -> Vec<AnalyticsRow> {
        let mut merged: BTreeMap<(DateTime<Utc>, String, bool, String), Tally> = BTreeMap::new();
        for ((hour, kind, channel), tally) in self.0 {
            let outbound = channel != IN_APP;
            merged
                .entry((bucket.floor(hour), kind, outbound, channel))
                .or_default()
                .merge(tally);
        }
        merged
            .into_iter()
            .map(|((start, kind, _, channel), t)| {
                let round = |v: f64, places: i32| {
                    let f = 10f64.powi(places);
                    (v * f).round() / f
                };
                let escalations_per_100 = if channel == IN_APP && t.committed > 0 {
                    round(t.escalations as f64 * 100.0 / t.committed as f64, 2)
                } else {
                    0.0
                };
                AnalyticsRow {
                    bucket: start,
                    committed: t.committed,
                    pushed: t.pushed,
                    delivered: t.delivered,
                    failed: t.failed,
                    read: t.reads,
                    read_5m: t.reads_within[0],
                    read_1h: t.reads_within[1],
                    read_1d: t.reads_within[2],
                    time_to_read_p50_s: t.percentile(0.5).map(|v| round(v, 3)),
                    time_to_read_p90_s: t.percentile(0.9).map(|v| round(v, 3)),
                    approximate: t.approximate(),
                    escalations_per_100,
                    push_suppressed: t.suppressed,
                    batched: t.batched,
                    digested: t.digested,
                    notification_type: kind,
                    channel,
                }
            })
            .collect()
    }
}

/// One row of an answer: a bucket, a type and a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalyticsRow {
    /// The bucket's start.
    pub bucket: DateTime<Utc>,
    /// The notification type.
    pub notification_type: String,
    /// The channel.
    pub channel: String,
    /// See [`Tally::committed`].
    pub committed: i64,
    /// See [`Tally::pushed`].
    pub pushed: i64,
    /// See [`Tally::delivered`].
    pub delivered: i64,
    /// See [`Tally::failed`].
    pub failed: i64,
    /// Read.
    pub read: i64,
    /// Read within 5 minutes of the commit.
    pub read_5m: i64,
    /// Read within an hour.
    pub read_1h: i64,
    /// Read within a day.
    pub read_1d: i64,
    /// The median read delay, in seconds.
    pub time_to_read_p50_s: Option<f64>,
    /// The 90th percentile.
    pub time_to_read_p90_s: Option<f64>,
    /// Whether the percentiles come from the rollups' histogram.
    pub approximate: bool,
    /// Escalation steps fired per 100 notifications (in-app rows; 0 on the others).
    pub escalations_per_100: f64,
    /// See [`Tally::suppressed`].
    pub push_suppressed: i64,
    /// See [`Tally::batched`].
    pub batched: i64,
    /// See [`Tally::digested`].
    pub digested: i64,
}

/// The type digests are counted under.
pub const DIGEST: &str = "digest";

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn note(created: &str, kind: &str, read_after: Option<i64>) -> NotificationFacts {
        let created_at = at(created);
        NotificationFacts {
            created_at,
            notification_type: kind.into(),
            read_at: read_after.map(|s| created_at + chrono::Duration::seconds(s)),
            pushed: true,
            acked: read_after.is_some(),
        }
    }

    #[test]
    fn buckets_floor_and_ceil_to_whole_hours_and_days() {
        let t = at("2024-03-05T10:30:00Z");
        assert_eq!(Bucket::Hour.floor(t), at("2024-03-05T10:00:00Z"));
        assert_eq!(Bucket::Hour.ceil(t), at("2024-03-05T11:00:00Z"));
        assert_eq!(Bucket::Day.floor(t), at("2024-03-05T00:00:00Z"));
        assert_eq!(Bucket::Day.ceil(t), at("2024-03-06T00:00:00Z"));
        let whole = at("2024-03-05T00:00:00Z");
        assert_eq!(Bucket::Day.ceil(whole), whole);
        assert_eq!(Bucket::parse("week"), None);
        assert_eq!(Bucket::parse("hour"), Some(Bucket::Hour));
    }

    #[test]
    fn reads_are_counted_within_each_limit_and_percentiles_are_exact_while_live() {
        let mut t = Tallies::default();
        for (i, s) in [60, 300, 3_600, 7_200, 172_800].into_iter().enumerate() {
            t.notification(&note("2024-03-05T10:00:00Z", "outage", Some(s)));
            if i == 0 {
                t.notification(&note("2024-03-05T10:59:00Z", "outage", None));
            }
        }
        t.escalation(&EscalationFacts {
            created_at: at("2024-03-05T10:10:00Z"),
            notification_type: "outage".into(),
        });
        let rows = t.rows(Bucket::Hour);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.committed, r.read, r.delivered), (6, 5, 5));
        assert_eq!((r.read_5m, r.read_1h, r.read_1d), (2, 3, 4));
        assert_eq!(r.time_to_read_p50_s, Some(3_600.0));
        assert_eq!(r.time_to_read_p90_s, Some(172_800.0));
        assert!(!r.approximate);
        assert_eq!(r.escalations_per_100, 16.67);
    }

    #[test]
    fn rolled_up_delays_give_the_bound_of_their_bucket() {
        let mut live = Tally::default();
        for s in [60.0, 300.0, 3_600.0] {
            live.read_after(s);
        }
        // The same reads folded into a rollup, then read back beside one live read.
        let mut rolled = Tally {
            histogram: live.binned(),
            ..Tally::default()
        };
        assert_eq!(rolled.percentile(0.5), live.percentile(0.5));
        assert_eq!(rolled.percentile(0.9), Some(3_600.0));
        rolled.read_after(45.0);
        assert!(rolled.approximate());
        assert_eq!(rolled.percentile(0.5), Some(60.0));
        // Slower than the last bound: the last bound, as a floor.
        let mut slow = Tally::default();
        slow.histogram.insert(SLOWER, 2);
        assert_eq!(slow.percentile(0.5), Some(604_800.0));
        assert_eq!(Tally::default().percentile(0.5), None);
        assert_eq!(bound_of(0.0), 1);
        assert_eq!(bound_of(61.0), 120);
        assert_eq!(bound_of(1e9), SLOWER);
    }

    #[test]
    fn deliveries_count_on_their_channel_and_days_merge_hours() {
        let mut t = Tallies::default();
        let d = |created: &str, channel: &str, status: &str, attempts| DeliveryFacts {
            created_at: at(created),
            notification_type: "general".into(),
            read_at: None,
            channel: channel.into(),
            status: status.into(),
            attempts,
            batched: false,
        };
        t.delivery(&d("2024-03-05T01:00:00Z", "email", "SENT", 1));
        t.delivery(&d("2024-03-05T23:00:00Z", "email", "FAILED", 3));
        t.delivery(&d("2024-03-05T23:00:00Z", "email", "QUEUED", 0));
        t.delivery(&d("2024-03-05T02:00:00Z", "webpush", "SUPPRESSED", 0));
        t.delivery(&d("2024-03-05T02:00:00Z", "sms", "SENT", 2));
        t.notification(&note("2024-03-05T02:00:00Z", "general", None));
        let rows = t.rows(Bucket::Day);
        let channels: Vec<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
        assert_eq!(channels, [IN_APP, "email", "sms", "webpush"]);
        let email = &rows[1];
        assert_eq!(
            (email.committed, email.pushed, email.delivered, email.failed),
            (3, 2, 1, 1)
        );
        assert_eq!(rows[3].push_suppressed, 1);
        assert_eq!(rows[3].pushed, 0);
        assert_eq!(email.time_to_read_p50_s, None);
        assert_eq!(email.escalations_per_100, 0.0);
        assert_eq!(rows[0].bucket, at("2024-03-05T00:00:00Z"));
    }

    #[test]
    fn batched_rows_and_digests_are_counted_as_sent() {
        let mut t = Tallies::default();
        let d = |status: &str, attempts, batched| DeliveryFacts {
            created_at: at("2024-03-05T01:00:00Z"),
            notification_type: "work_started".into(),
            read_at: None,
            channel: "email".into(),
            status: status.into(),
            attempts,
            batched,
        };
        t.delivery(&d("SENT", 1, false));
        t.delivery(&d("SENT", 0, true));
        t.delivery(&d("QUEUED", 0, true));
        t.digest(at("2024-03-05T08:00:00Z"), 4);
        t.digest(at("2024-03-05T09:00:00Z"), 2);
        let rows = t.rows(Bucket::Day);
        let email = rows
            .iter()
            .find(|r| r.notification_type == "work_started")
            .unwrap();
        assert_eq!(
            (
                email.committed,
                email.pushed,
                email.delivered,
                email.batched
            ),
            (3, 2, 2, 1)
        );
        let digests = rows.iter().find(|r| r.notification_type == DIGEST).unwrap();
        assert_eq!(
            (
                digests.channel.as_str(),
                digests.delivered,
                digests.digested
            ),
            ("email", 2, 6)
        );
    }
}
