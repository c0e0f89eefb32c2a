//! Delivery analytics in SQL: the live rows of a range of hours, the hourly rollups the purge
//! folds deleted rows into, and the fold itself.
//!
//! The purge deletes notifications (with their outbox rows and escalation steps), finished
//! outbox rows and finished escalation steps in batches. Each batch's rows are read, tallied by
//! the hour their notification was committed in, its type and the channel, and added to
//! `analytics_rollups` (and their read delays to `analytics_read_delays`), in the transaction
//! that deletes them: a row is counted live until the commit that deletes it, and rolled up
//! from then on. The tallying is [`tickethub_actors::analytics`], the same for both backends.

use crate::store::{backend_error, db, SqlStore};

use chrono::{DateTime, Utc};
use tickethub_actors::analytics::{DeliveryFacts, EscalationFacts, NotificationFacts};

/// How far beyond an analytics range the search for its notifications' ids reaches: a
/// commit's clock reading and its id may come in a different order by this much (on
/// PostgreSQL, between committers and between nodes).
const LIVE_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// A notification's figures: `notifications n JOIN users u`. Pushed and acknowledged are read
/// from the user's stream cursors (`sent_seq`, `acked_seq`), which outlive the purge of
/// `stream_events`.
pub(crate) const NOTIFICATION_FACTS: &str = "SELECT n.notification_type, n.created_at, n.read_at, \
     n.seq <= u.sent_seq AS pushed, n.seq <= u.acked_seq AS acked \
     FROM notifications n JOIN users u ON u.id = n.user_id";

/// An outbox row's figures, with its notification's: `deliveries d JOIN notifications n`.
/// Attempts are the row's own count, which outlives the purge of `delivery_attempts`.
pub(crate) const DELIVERY_FACTS: &str =
    "SELECT n.notification_type, n.created_at, n.read_at, d.channel, d.status, d.attempts, \
     d.batch_of IS NOT NULL AS batched FROM deliveries d JOIN notifications n ON n.id = d.notification_id";

/// An escalation step's status, with its notification's figures: `escalations e JOIN
/// notifications n`.
pub(crate) const ESCALATION_FACTS: &str = "SELECT n.notification_type, n.created_at, e.status \
     FROM escalations e JOIN notifications n ON n.id = e.notification_id";

/// The counters of a rollup, in the order [`rollup_tally`] reads them.
pub(crate) const ROLLUP_COLUMNS: &str = "hour, notification_type, channel, committed, pushed, \
     delivered, failed, suppressed, escalations, reads, reads_5m, reads_1h, reads_1d, batched";

/// A rollup's counters after its key (hour, type, channel), in [`ROLLUP_COLUMNS`]' order.
pub(crate) fn rollup_counts(t: &tickethub_actors::analytics::Tally) -> [i64; 11] {
    [
        t.committed,
        t.pushed,
        t.delivered,
        t.failed,
        t.suppressed,
        t.escalations,
        t.reads,
        t.reads_within[0],
        t.reads_within[1],
        t.reads_within[2],
        t.batched,
    ]
}

/// What adds a rollup's row to the one of its key already there.
pub(crate) const ROLLUP_UPSERT: &str =
    " ON CONFLICT (hour, notification_type, channel) DO UPDATE SET \
     committed = analytics_rollups.committed + excluded.committed, \
     pushed = analytics_rollups.pushed + excluded.pushed, \
     delivered = analytics_rollups.delivered + excluded.delivered, \
     failed = analytics_rollups.failed + excluded.failed, \
     suppressed = analytics_rollups.suppressed + excluded.suppressed, \
     escalations = analytics_rollups.escalations + excluded.escalations, \
     reads = analytics_rollups.reads + excluded.reads, \
     reads_5m = analytics_rollups.reads_5m + excluded.reads_5m, \
     reads_1h = analytics_rollups.reads_1h + excluded.reads_1h, \
     reads_1d = analytics_rollups.reads_1d + excluded.reads_1d, \
     batched = analytics_rollups.batched + excluded.batched";

/// The columns of a rolled-up read delay's bin.
pub(crate) const READ_DELAY_COLUMNS: &str = "hour, notification_type, channel, le_seconds, reads";

/// What adds a read delay's bin to the one of its key already there.
pub(crate) const READ_DELAYS_UPSERT: &str =
    " ON CONFLICT (hour, notification_type, channel, le_seconds) DO UPDATE SET \
     reads = analytics_read_delays.reads + excluded.reads";

pub(crate) type NotificationRow = (String, DateTime<Utc>, Option<DateTime<Utc>>, bool, bool);
pub(crate) type DeliveryRow = (
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    String,
    String,
    i64,
    bool,
);
pub(crate) type EscalationRow = (String, DateTime<Utc>, String);
pub(crate) type RollupRow = (
    DateTime<Utc>,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

pub(crate) fn notification_facts(
    (notification_type, created_at, read_at, pushed, acked): NotificationRow,
) -> NotificationFacts {
    NotificationFacts {
        created_at,
        notification_type,
        read_at,
        pushed,
        acked,
    }
}

pub(crate) fn delivery_facts(
    (notification_type, created_at, read_at, channel, status, attempts, batched): DeliveryRow,
) -> DeliveryFacts {
    DeliveryFacts {
        created_at,
        notification_type,
        read_at,
        channel,
        status,
        attempts,
        batched,
    }
}

/// A fired step's figures; `None` for a step that did not fire.
pub(crate) fn escalation_facts(
    (notification_type, created_at, status): EscalationRow,
) -> Option<EscalationFacts> {
    (status == "FIRED").then_some(EscalationFacts {
        created_at,
        notification_type,
    })
}

/// A rollup row as a tally and its key.
pub(crate) fn rollup_tally(
    row: RollupRow,
) -> (
    tickethub_actors::analytics::TallyKey,
    tickethub_actors::analytics::Tally,
) {
    let (hour, kind, channel, committed, pushed, delivered, failed, suppressed, escalations) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8,
    );
    (
        (hour, kind, channel),
        tickethub_actors::analytics::Tally {
            committed,
            pushed,
            delivered,
            failed,
            suppressed,
            escalations,
            reads: row.9,
            reads_within: [row.10, row.11, row.12],
            batched: row.13,
            ..Default::default()
        },
    )
}

/// What a batch of the purge deletes, as analytics folds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Notifications, with their outbox rows and escalation steps (deleted by the cascade).
    Notifications,
    /// Outbox rows.
    Deliveries,
    /// Escalation steps.
    Escalations,
}

/// How a batch of `what` is folded into the rollups before it is deleted; `None` for rows
/// analytics does not count (stream events, attempts, tokens, …).
pub(crate) fn fold_of(what: tickethub_actors::ports::Purgeable) -> Option<Fold> {
    use tickethub_actors::ports::Purgeable::*;
    match what {
        ReadNotifications | DeletedNotifications | UnreadNotifications => Some(Fold::Notifications),
        FinishedDeliveries => Some(Fold::Deliveries),
        Escalations => Some(Fold::Escalations),
        _ => None,
    }
}

impl SqlStore {
    /// Adds `tallies` to the rollups.
    async fn store_rollups(
        tx: &mut db::Tx,
        tallies: tickethub_actors::analytics::Tallies,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        let entries: Vec<_> = tallies.0.into_iter().collect();
        for chunk in entries.chunks(100) {
            let mut q = db::Builder::new(format!(
                "INSERT INTO analytics_rollups ({}) ",
                crate::store::analytics::ROLLUP_COLUMNS
            ));
            q.push_values(chunk, |mut row, ((hour, kind, channel), t)| {
                row.push_bind(*hour)
                    .push_bind(kind.clone())
                    .push_bind(channel.clone());
                for count in rollup_counts(t) {
                    row.push_bind(count);
                }
            });
            q.push(ROLLUP_UPSERT);
            q.build().execute(&mut *tx).await.map_err(backend_error)?;
        }
        let delays: Vec<_> = entries
            .iter()
            .flat_map(|(key, t)| {
                t.binned()
                    .into_iter()
                    .map(move |(bound, n)| (key, bound, n))
            })
            .collect();
        for chunk in delays.chunks(100) {
            let mut q = db::Builder::new(format!(
                "INSERT INTO analytics_read_delays ({READ_DELAY_COLUMNS}) "
            ));
            q.push_values(chunk, |mut row, ((hour, kind, channel), bound, n)| {
                row.push_bind(*hour)
                    .push_bind(kind.clone())
                    .push_bind(channel.clone())
                    .push_bind(*bound)
                    .push_bind(*n);
            });
            q.push(READ_DELAYS_UPSERT);
            q.build().execute(&mut *tx).await.map_err(backend_error)?;
        }
        Ok(())
    }

    /// Folds the rows `ids` name (of the kind `fold` says) into the rollups, inside
    /// the transaction that deletes them next: for notifications, with their outbox
    /// rows and fired escalation steps, which their deletion takes along.
    pub(crate) async fn fold_into_rollups(
        tx: &mut db::Tx,
        fold: crate::store::analytics::Fold,
        ids: &[i64],
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        use crate::store::analytics::{self as sql, Fold};
        if ids.is_empty() {
            return Ok(());
        }
        // The outbox rows and steps taken along are locked until the deletion, so
        // that none changes between what is counted and what is deleted.
        let (lock_d, lock_e) = if tx.kind() == db::Kind::Sqlite {
            ("", "")
        } else {
            (" FOR UPDATE OF d", " FOR UPDATE OF e")
        };
        let mut tallies = tickethub_actors::analytics::Tallies::default();
        if fold == Fold::Notifications {
            let mut q = db::Builder::new(sql::NOTIFICATION_FACTS);
            q.push(" WHERE n.id");
            q.push_in(ids.to_vec());
            for row in q
                .build_query_as::<sql::NotificationRow>()
                .fetch_all(&mut *tx)
                .await
                .map_err(backend_error)?
            {
                tallies.notification(&sql::notification_facts(row));
            }
        }
        if fold != Fold::Escalations {
            let mut q = db::Builder::new(sql::DELIVERY_FACTS);
            q.push(if fold == Fold::Notifications {
                " WHERE d.notification_id"
            } else {
                " WHERE d.id"
            });
            q.push_in(ids.to_vec());
            q.push(lock_d);
            for row in q
                .build_query_as::<sql::DeliveryRow>()
                .fetch_all(&mut *tx)
                .await
                .map_err(backend_error)?
            {
                tallies.delivery(&sql::delivery_facts(row));
            }
        }
        if fold != Fold::Deliveries {
            let mut q = db::Builder::new(sql::ESCALATION_FACTS);
            q.push(if fold == Fold::Notifications {
                " WHERE e.notification_id"
            } else {
                " WHERE e.id"
            });
            q.push_in(ids.to_vec());
            q.push(lock_e);
            for row in q
                .build_query_as::<sql::EscalationRow>()
                .fetch_all(&mut *tx)
                .await
                .map_err(backend_error)?
            {
                if let Some(fired) = sql::escalation_facts(row) {
                    tallies.escalation(&fired);
                }
            }
        }
        if tallies.is_empty() {
            return Ok(());
        }
        Self::store_rollups(tx, tallies).await
    }

    /// The ids of the notifications committed in `[from, to)`, as a range `[lo, hi)` that
    /// holds them: notifications have no index on `created_at` (on SQLite it cost every
    /// commit a page of the log, on PostgreSQL an index entry per recipient). Ids grow with
    /// the commit time (a commit reads the clock and takes its ids within milliseconds), so
    /// each end is found by a binary search over the ids, widened by [`LIVE_SLACK`] for
    /// commits that read the clock and took their ids in a different order. The statements
    /// still compare `created_at` itself.
    async fn live_ids(
        tx: &mut db::Tx,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(i64, i64), tickethub_actors::ports::StoreError> {
        let (min, max): (Option<i64>, Option<i64>) =
            db::query_as("SELECT MIN(id), MAX(id) FROM notifications")
                .fetch_one(&mut *tx)
                .await
                .map_err(backend_error)?;
        let (Some(min), Some(max)) = (min, max) else {
            return Ok((0, 0));
        };
        let mut ends = [0; 2];
        for (end, at) in ends.iter_mut().zip([from - LIVE_SLACK, to + LIVE_SLACK]) {
            // The least id from which every id was committed at or after `at` (`max + 1`
            // when none was): `hi` is always one such, `lo` never above the least.
            let (mut lo, mut hi) = (min, max + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let (id, created_at): (i64, DateTime<Utc>) = db::query_as(
                    "SELECT id, created_at FROM notifications WHERE id >= $1 ORDER BY id LIMIT 1",
                )
                .bind(mid)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend_error)?;
                if created_at >= at {
                    // No id between `mid` and `id`: from `mid` on, every one is young enough.
                    hi = mid;
                } else {
                    lo = id + 1;
                }
            }
            *end = lo;
        }
        Ok((ends[0], ends[1]))
    }

    /// The `WHERE` of an analytics statement: `time_column` in the query's range (and the
    /// notification in `ids`, where the range was found as ids), and the query's type and
    /// (where the statement has one) channel.
    fn analytics_where(
        q: &mut db::Builder<'_>,
        query: &tickethub_actors::analytics::AnalyticsQuery,
        time_column: &str,
        type_column: &str,
        channel_column: Option<&str>,
        ids: Option<(i64, i64)>,
    ) {
        q.push(format!(" WHERE {time_column} >= "))
            .push_bind(query.from)
            .push(format!(" AND {time_column} < "))
            .push_bind(query.to);
        if let Some((lo, hi)) = ids {
            q.push(" AND n.id >= ")
                .push_bind(lo)
                .push(" AND n.id < ")
                .push_bind(hi);
        }
        if let Some(kind) = &query.notification_type {
            q.push(format!(" AND {type_column} = "))
                .push_bind(kind.clone());
        }
        if let (Some(column), Some(channel)) = (channel_column, &query.channel) {
            q.push(format!(" AND {column} = "))
                .push_bind(channel.clone());
        }
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::AnalyticsStore for SqlStore {
    async fn analytics(
        &self,
        query: &tickethub_actors::analytics::AnalyticsQuery,
    ) -> Result<tickethub_actors::analytics::Tallies, tickethub_actors::ports::StoreError> {
        use crate::store::analytics as sql;
        let mut tallies = tickethub_actors::analytics::Tallies::default();
        // One snapshot for the rollups and the live rows: a purge batch that commits
        // meanwhile is seen either before or after, so nothing is counted twice.
        let mut tx = self.reader().begin_read().await.map_err(backend_error)?;
        if self.kind() == db::Kind::Postgres {
            db::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
        }
        let mut q = db::Builder::new(format!(
            "SELECT {} FROM analytics_rollups",
            sql::ROLLUP_COLUMNS
        ));
        Self::analytics_where(
            &mut q,
            query,
            "hour",
            "notification_type",
            Some("channel"),
            None,
        );
        for row in q
            .build_query_as::<sql::RollupRow>()
            .fetch_all(&mut tx)
            .await
            .map_err(backend_error)?
        {
            let (key, tally) = sql::rollup_tally(row);
            tallies.add(key, tally);
        }
        let mut q = db::Builder::new(
            "SELECT hour, notification_type, channel, le_seconds, reads FROM analytics_read_delays",
        );
        Self::analytics_where(
            &mut q,
            query,
            "hour",
            "notification_type",
            Some("channel"),
            None,
        );
        #[allow(clippy::type_complexity)]
        let delays: Vec<(chrono::DateTime<chrono::Utc>, String, String, i64, i64)> = q
            .build_query_as()
            .fetch_all(&mut tx)
            .await
            .map_err(backend_error)?;
        for (hour, kind, channel, bound, n) in delays {
            let mut tally = tickethub_actors::analytics::Tally::default();
            tally.histogram.insert(bound, n);
            tallies.add((hour, kind, channel), tally);
        }

        // The live rows, streamed: a long range is never held in memory as rows.
        let ids = if query.wants_in_app() || query.wants_outbound() {
            Some(Self::live_ids(&mut tx, query.from, query.to).await?)
        } else {
            None
        };
        if query.wants_in_app() {
            let mut q = db::Builder::new(sql::NOTIFICATION_FACTS);
            Self::analytics_where(
                &mut q,
                query,
                "n.created_at",
                "n.notification_type",
                None,
                ids,
            );
            q.build_query_as::<sql::NotificationRow>()
                .for_each(&mut tx, |row| {
                    tallies.notification(&sql::notification_facts(row))
                })
                .await
                .map_err(backend_error)?;
            let mut q = db::Builder::new(sql::ESCALATION_FACTS);
            Self::analytics_where(
                &mut q,
                query,
                "n.created_at",
                "n.notification_type",
                None,
                ids,
            );
            q.push(" AND e.status = 'FIRED'");
            q.build_query_as::<sql::EscalationRow>()
                .for_each(&mut tx, |row| {
                    if let Some(fired) = sql::escalation_facts(row) {
                        tallies.escalation(&fired);
                    }
                })
                .await
                .map_err(backend_error)?;
        }
        if query.wants_outbound() {
            let mut q = db::Builder::new(sql::DELIVERY_FACTS);
            Self::analytics_where(
                &mut q,
                query,
                "n.created_at",
                "n.notification_type",
                Some("d.channel"),
                ids,
            );
            q.build_query_as::<sql::DeliveryRow>()
                .for_each(&mut tx, |row| tallies.delivery(&sql::delivery_facts(row)))
                .await
                .map_err(backend_error)?;
        }
        // Digests are counted when they were sent, on the email row of `digest`.
        let wants_digests = query
            .notification_type
            .as_deref()
            .is_none_or(|t| t == tickethub_actors::analytics::DIGEST)
            && query.channel.as_deref().is_none_or(|c| c == "email");
        if wants_digests {
            let sent: Vec<(DateTime<Utc>, i64)> = db::query_as(
                "SELECT sent_at, notifications FROM digest_sends WHERE sent_at >= $1 AND sent_at < $2",
            )
            .bind(query.from)
            .bind(query.to)
            .fetch_all(&mut tx)
            .await
            .map_err(backend_error)?;
            for (at, n) in sent {
                tallies.digest(at, n);
            }
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(tallies)
    }
}
