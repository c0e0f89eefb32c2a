//! The outbox in SQL: claiming due deliveries and recording their outcomes.

use crate::store::{backend_error, db, SqlStore};

impl SqlStore {
    /// Commits an attempt's outcome with its history row, if the claim was still held
    /// (`updated` rows); answers whether it was.
    #[allow(clippy::too_many_arguments)]
    async fn settle_attempt(
        mut tx: db::Tx,
        updated: u64,
        id: i64,
        attempt: i64,
        outcome: &str,
        error: Option<&str>,
        node: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        if updated != 1 {
            return Ok(false);
        }
        Self::insert_attempt(&mut tx, id, attempt, outcome, error, node, now).await?;
        let (event, status) = match outcome {
            "sent" => (Some("notification.delivered"), Some("SENT")),
            "failed" => (Some("delivery.failed"), Some("FAILED")),
            "suppressed" => (None, Some("SUPPRESSED")),
            _ => (None, None),
        };
        // The deliveries it carried in a batch end as it did.
        let mut settled = vec![id];
        if let Some(status) = status {
            let members: Vec<(i64,)> = db::query_as(
                "UPDATE deliveries SET status = $2, last_error = $3, updated_at = $4, held = NULL, \
                 sent_at = CASE WHEN $2 = 'SENT' THEN $4 ELSE sent_at END \
                 WHERE batch_of = $1 AND status IN ('QUEUED', 'SENDING') RETURNING id",
            )
            .bind(id)
            .bind(status)
            .bind(error)
            .bind(now)
            .fetch_all(&mut tx)
            .await
            .map_err(backend_error)?;
            settled.extend(members.into_iter().map(|(m,)| m));
        }
        if let Some(event) = event {
            let known = serde_json::json!({ "attempt": attempt, "error": error }).to_string();
            let subjects: Vec<(i64, String)> =
                settled.into_iter().map(|d| (d, known.clone())).collect();
            Self::queue_webhooks(&mut tx, event, &subjects, now).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }

    /// Whether delivery `id` is still `node`'s to send and in no other's batch.
    async fn leads_alone(
        &self,
        id: i64,
        node: &str,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let held: Option<(Option<i64>,)> = db::query_as(
            "SELECT batch_of FROM deliveries WHERE id = $1 AND status = 'SENDING' AND claimed_by = $2",
        )
        .bind(id)
        .bind(node)
        .fetch_optional(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(matches!(held, Some((None,))))
    }

    /// Notifications by id, as the writer sees them.
    pub(crate) async fn notifications_by_id(
        &self,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<
        std::collections::HashMap<i64, tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        let mut nq = db::Builder::new(crate::store::notifications::NOTIFICATION_SELECT);
        nq.push(" WHERE n.id IN (");
        let mut sep = nq.separated(", ");
        let mut any = false;
        for id in ids {
            sep.push_bind(id);
            any = true;
        }
        if !any {
            return Ok(std::collections::HashMap::new());
        }
        nq.push(")");
        nq.build_query_as::<crate::store::notifications::NotificationRow>()
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|r| r.into_notification().map(|n| (n.id, n)))
            .collect()
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::OutboxStore for SqlStore {
    async fn claim(
        &self,
        channel: tickethub_actors::routing::Channel,
        node: &str,
        limit: i64,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<tickethub_actors::ports::DeliveryJob>, tickethub_actors::ports::StoreError>
    {
        use tickethub_actors::ports::StoreError;
        let claimed: Vec<(i64,)> = db::query_as(claim_sql(self.kind()))
            .bind(lease_until)
            .bind(node)
            .bind(now)
            .bind(channel.as_str())
            .bind(limit)
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = db::Builder::new(
            "SELECT d.id, d.notification_id, d.channel, d.address, d.status, d.attempts, d.last_error, \
             d.sent_at, COALESCE(NULLIF(u.display_name, ''), u.username) AS recipient_name, \
             d.recipients, u.username, u.display_name, \
             (d.unless_seen AND (n.is_read OR u.acked_seq >= n.seq OR n.deleted_at IS NOT NULL)) AS seen, \
             (SELECT s.reason FROM suppressions s \
              WHERE s.channel = d.channel AND s.address = LOWER(TRIM(d.address))) AS suppressed, \
             q.locale, q.time_zone \
             FROM deliveries d JOIN notifications n ON n.id = d.notification_id \
             JOIN users u ON u.id = n.user_id LEFT JOIN user_quiet q ON q.user_id = n.user_id \
             WHERE d.id IN (",
        );
        let mut sep = q.separated(", ");
        for (id,) in &claimed {
            sep.push_bind(*id);
        }
        q.push(") ORDER BY d.id");
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            i64,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<chrono::DateTime<chrono::Utc>>,
            String,
            Option<String>,
            String,
            String,
            bool,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = q
            .build_query_as()
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?;
        let notifications = self.notifications_by_id(rows.iter().map(|r| r.1)).await?;
        let devices = if tickethub_actors::routing::Channel::CARRIERS.contains(&channel) {
            let ids: Vec<i64> = rows.iter().filter_map(|r| r.3.parse().ok()).collect();
            self.devices_by_id(&ids).await?
        } else {
            std::collections::HashMap::new()
        };
        rows.into_iter()
            .map(
                |(
                    id,
                    notification_id,
                    channel,
                    address,
                    _,
                    attempts,
                    _,
                    _,
                    recipient_name,
                    recipients,
                    username,
                    display_name,
                    seen,
                    suppressed,
                    locale,
                    time_zone,
                )| {
                    let notification =
                        notifications
                            .get(&notification_id)
                            .cloned()
                            .ok_or_else(|| {
                                StoreError::NotFound(format!("notification {notification_id}"))
                            })?;
                    let recipients = match recipients {
                        Some(text) => crate::store::notifications::parse_recipients(&text)?,
                        None => vec![tickethub_actors::notification::Recipient {
                            user_id: notification.user_id,
                            username,
                            display_name,
                        }],
                    };
                    Ok(tickethub_actors::ports::DeliveryJob {
                        id,
                        channel: tickethub_actors::routing::Channel::stored(&channel).ok_or_else(
                            || StoreError::Backend(format!("unknown channel `{channel}`").into()),
                        )?,
                        attempts,
                        device: address
                            .parse()
                            .ok()
                            .and_then(|d: i64| devices.get(&d).cloned()),
                        address,
                        notification,
                        recipient_name,
                        recipients,
                        seen,
                        suppressed,
                        locale,
                        time_zone,
                        batch: Vec::new(),
                    })
                },
            )
            .collect()
    }

    async fn delivery_sent(
        &self,
        id: i64,
        node: &str,
        attempts: i64,
        provider_id: Option<&str>,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let now = chrono::Utc::now();
        if tickethub_actors::ports::StoreFaults::take(&self.faults.failed_outcome_writes) {
            return Err(tickethub_actors::ports::StoreError::Backend(
                "injected: the outcome write failed".into(),
            ));
        }
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let done = db::query(
            "UPDATE deliveries SET status = 'SENT', attempts = $2, provider_message_id = $3, sent_at = $4, \
             last_error = NULL, claimed_until = NULL, claimed_by = NULL, updated_at = $4 \
             WHERE id = $1 AND status = 'SENDING' AND claimed_by = $5",
        )
        .bind(id)
        .bind(attempts)
        .bind(provider_id)
        .bind(now)
        .bind(node)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        Self::settle_attempt(
            tx,
            done.rows_affected(),
            id,
            attempts,
            "sent",
            None,
            node,
            now,
        )
        .await
    }

    async fn delivery_failed(
        &self,
        id: i64,
        node: &str,
        attempts: i64,
        error: &str,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let now = chrono::Utc::now();
        if tickethub_actors::ports::StoreFaults::take(&self.faults.failed_outcome_writes) {
            return Err(tickethub_actors::ports::StoreError::Backend(
                "injected: the outcome write failed".into(),
            ));
        }
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let done = db::query(
            "UPDATE deliveries SET status = 'FAILED', attempts = $2, last_error = $3, \
             claimed_until = NULL, claimed_by = NULL, updated_at = $4 \
             WHERE id = $1 AND status = 'SENDING' AND claimed_by = $5",
        )
        .bind(id)
        .bind(attempts)
        .bind(error)
        .bind(now)
        .bind(node)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        Self::settle_attempt(
            tx,
            done.rows_affected(),
            id,
            attempts,
            "failed",
            Some(error),
            node,
            now,
        )
        .await
    }

    async fn delivery_retry(
        &self,
        id: i64,
        node: &str,
        attempts: i64,
        next_attempt_at: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let now = chrono::Utc::now();
        if tickethub_actors::ports::StoreFaults::take(&self.faults.failed_outcome_writes) {
            return Err(tickethub_actors::ports::StoreError::Backend(
                "injected: the outcome write failed".into(),
            ));
        }
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let done = db::query(
            "UPDATE deliveries SET status = 'QUEUED', attempts = $2, next_attempt_at = $3, last_error = $4, \
             claimed_until = NULL, claimed_by = NULL, updated_at = $5 \
             WHERE id = $1 AND status = 'SENDING' AND claimed_by = $6",
        )
        .bind(id)
        .bind(attempts)
        .bind(next_attempt_at)
        .bind(error)
        .bind(now)
        .bind(node)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        Self::settle_attempt(
            tx,
            done.rows_affected(),
            id,
            attempts,
            "retry",
            Some(error),
            node,
            now,
        )
        .await
    }

    async fn delivery_suppressed(
        &self,
        id: i64,
        node: &str,
        why: &str,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let done = db::query(
            "UPDATE deliveries SET status = 'SUPPRESSED', last_error = $2, \
             claimed_until = NULL, claimed_by = NULL, updated_at = $3 \
             WHERE id = $1 AND status = 'SENDING' AND claimed_by = $4",
        )
        .bind(id)
        .bind(why)
        .bind(now)
        .bind(node)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        Self::settle_attempt(
            tx,
            done.rows_affected(),
            id,
            0,
            "suppressed",
            Some(why),
            node,
            now,
        )
        .await
    }

    async fn delivery_release(
        &self,
        ids: &[i64],
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        if tickethub_actors::ports::StoreFaults::take(&self.faults.failed_releases) {
            return Err(tickethub_actors::ports::StoreError::Backend(
                "injected: the release failed".into(),
            ));
        }
        let mut q = db::Builder::new(
            "UPDATE deliveries SET status = 'QUEUED', claimed_until = NULL, claimed_by = NULL \
             WHERE status = 'SENDING' AND id IN (",
        );
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        q.push(")");
        q.build()
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn delivery_reclaim(
        &self,
        channel: tickethub_actors::routing::Channel,
        node: &str,
        sending: &[i64],
    ) -> Result<u64, tickethub_actors::ports::StoreError> {
        let mut q = db::Builder::new(
            "UPDATE deliveries SET status = 'QUEUED', claimed_until = NULL, claimed_by = NULL \
             WHERE status = 'SENDING' AND channel = ",
        );
        q.push_bind(channel.as_str());
        q.push(" AND claimed_by = ");
        q.push_bind(node);
        if !sending.is_empty() {
            q.push(" AND id NOT IN (");
            let mut sep = q.separated(", ");
            for id in sending {
                sep.push_bind(*id);
            }
            q.push(")");
        }
        let done = q
            .build()
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(done.rows_affected())
    }

    async fn gather_batch(
        &self,
        id: i64,
        node: &str,
        joins: &(dyn for<'n> Fn(&'n tickethub_actors::notification::Notification) -> bool + Sync),
    ) -> Result<
        Option<Vec<tickethub_actors::notification::Notification>>,
        tickethub_actors::ports::StoreError,
    > {
        // A delivery another gathered meanwhile goes with that one.
        if !self.leads_alone(id, node).await? {
            return Ok(None);
        }
        // What is untried and in no batch, for the same person, ticket, channel and address,
        // and whether each carries others itself (a claim let go: it is never gathered).
        let candidates: Vec<(i64, i64, bool)> = db::query_as(
            "SELECT d.id, d.notification_id, \
             EXISTS (SELECT 1 FROM deliveries m WHERE m.batch_of = d.id) AS leads \
             FROM deliveries l \
             JOIN notifications ln ON ln.id = l.notification_id \
             JOIN notifications n ON n.user_id = ln.user_id AND n.ticket_id = ln.ticket_id \
             JOIN deliveries d ON d.notification_id = n.id \
             WHERE l.id = $1 AND d.id <> l.id AND d.channel = l.channel AND d.address = l.address \
             AND d.status IN ('QUEUED', 'SENDING') AND d.batch_of IS NULL AND d.attempts = 0 \
             ORDER BY d.id",
        )
        .bind(id)
        .fetch_all(self.writer())
        .await
        .map_err(backend_error)?;
        if !candidates.is_empty() {
            let notes = self
                .notifications_by_id(candidates.iter().map(|(_, n, _)| *n))
                .await?;
            let batched: Vec<&(i64, i64, bool)> = candidates
                .iter()
                .filter(|(_, n, _)| notes.get(n).is_some_and(joins))
                .collect();
            // The oldest leads: a younger one tried meanwhile finds this one and waits for it.
            if batched.iter().any(|(d, _, _)| *d < id) {
                return Ok(None);
            }
            // Read again now that no older one is left: one that gathered this one before it
            // was sent is no longer left either, and this one must not go alone.
            if !self.leads_alone(id, node).await? {
                return Ok(None);
            }
            let joining: Vec<i64> = batched
                .iter()
                .filter(|(_, _, leads)| !leads)
                .map(|(d, _, _)| *d)
                .collect();
            if !joining.is_empty() {
                let mut q = db::Builder::new("UPDATE deliveries SET batch_of = ");
                q.push_bind(id);
                q.push(
                    ", held = NULL WHERE status IN ('QUEUED', 'SENDING') AND batch_of IS NULL \
                     AND attempts = 0 AND id IN (",
                );
                let mut sep = q.separated(", ");
                for d in &joining {
                    sep.push_bind(*d);
                }
                q.push(")");
                q.build()
                    .execute(self.writer())
                    .await
                    .map_err(backend_error)?;
            }
        }
        let carried: Vec<(i64,)> = db::query_as(
            "SELECT notification_id FROM deliveries WHERE batch_of = $1 ORDER BY notification_id",
        )
        .bind(id)
        .fetch_all(self.writer())
        .await
        .map_err(backend_error)?;
        let notes = self
            .notifications_by_id(carried.iter().map(|(n,)| *n))
            .await?;
        Ok(Some(
            carried
                .into_iter()
                .filter_map(|(n,)| notes.get(&n).cloned())
                .collect(),
        ))
    }

    async fn outbox_depth(
        &self,
        channel: tickethub_actors::routing::Channel,
    ) -> Result<i64, tickethub_actors::ports::StoreError> {
        let (n,): (i64,) = db::query_as(
            "SELECT COUNT(*) FROM deliveries WHERE channel = $1 AND status IN ('QUEUED', 'SENDING')",
        )
        .bind(channel.as_str())
        .fetch_one(self.reader())
        .await
        .map_err(backend_error)?;
        Ok(n)
    }

    async fn deliveries(
        &self,
        user: tickethub_actors::domain::UserId,
        id: i64,
    ) -> Result<Option<Vec<tickethub_actors::ports::Delivery>>, tickethub_actors::ports::StoreError>
    {
        let owned: Option<(i64,)> = db::query_as(
            "SELECT id FROM notifications WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(user.0)
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        if owned.is_none() {
            return Ok(None);
        }
        let rows: Vec<crate::store::notifications::DeliveryRow> = db::query_as(
            "SELECT id, notification_id, channel, address, status, attempts, last_error, \
             provider_message_id, next_attempt_at, sent_at \
             FROM deliveries WHERE notification_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        rows.into_iter()
            .map(crate::store::notifications::DeliveryRow::into_delivery)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn delivery_summaries(
        &self,
        ids: &[i64],
    ) -> Result<
        std::collections::HashMap<i64, tickethub_actors::ports::DeliverySummary>,
        tickethub_actors::ports::StoreError,
    > {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(1000) {
            // A delivery on a deployment channel (a webhook's) is the event's, not
            // the recipient's. A push held back and then suppressed was not needed:
            // the notification was seen in the app.
            let mut q = db::Builder::new(
                "SELECT notification_id, COUNT(*), \
                 SUM(CASE WHEN status IN ('SENT', 'SUPPRESSED') THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN status = 'FAILED' THEN 1 ELSE 0 END), MIN(sent_at) \
                 FROM deliveries WHERE channel NOT IN (",
            );
            let mut names = q.separated(", ");
            for (channel, reach) in tickethub_actors::routing::Channel::registered() {
                if reach == tickethub_actors::routing::Reach::Deployment {
                    names.push_bind(channel.as_str());
                }
            }
            q.push(") AND notification_id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(") GROUP BY notification_id");
            let rows: Vec<(i64, i64, i64, i64, Option<chrono::DateTime<chrono::Utc>>)> = q
                .build_query_as()
                .fetch_all(self.reader())
                .await
                .map_err(backend_error)?;
            for (id, total, sent, failed, first_sent_at) in rows {
                out.insert(
                    id,
                    tickethub_actors::ports::DeliverySummary {
                        total,
                        sent,
                        failed,
                        first_sent_at,
                    },
                );
            }
        }
        Ok(out)
    }
}

/// The claim of due deliveries, with `kind`'s row locks and clock: its text made once per
/// backend.
fn claim_sql(kind: db::Kind) -> &'static str {
    fn text(kind: db::Kind) -> String {
        format!(
            "UPDATE deliveries SET status = 'SENDING', claimed_until = {until}, claimed_by = $2, updated_at = {now} \
             WHERE id IN (SELECT id FROM deliveries WHERE channel = $4 AND \
             status IN ('QUEUED', 'SENDING') AND batch_of IS NULL AND \
             ((status = 'QUEUED' AND next_attempt_at <= {now}) OR (status = 'SENDING' AND claimed_until < {now})) \
             ORDER BY next_attempt_at, id LIMIT $5 {lock}) RETURNING id",
            until = kind.lease_until("$1", "$3"),
            now = kind.now("$3"),
            lock = kind.skip_locked()
        )
    }
    static SQLITE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| text(db::Kind::Sqlite));
    static POSTGRES: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| text(db::Kind::Postgres));
    match kind {
        db::Kind::Sqlite => &SQLITE,
        db::Kind::Postgres => &POSTGRES,
    }
}
