//! Event webhooks in SQL: subscriptions, the events queued for them in the transactions of
//! what they tell, and their claims by the nodes' posters.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::{
    NewWebhook, StoreError, Webhook, WebhookDelivery, WebhookFailed, WebhookJob, WebhookStore,
    WEBHOOK_TEST_EVENT,
};

use crate::store::{backend_error, db, SqlStore};

type WebhookRow = (
    i64,
    String,
    String,
    String,
    String,
    bool,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<i64>,
    DateTime<Utc>,
);

const WEBHOOK: &str = "SELECT id, url, events, secret, description, enabled, disabled_reason, \
     failing_since, created_by, created_at FROM webhook_subscriptions";

fn webhook(row: WebhookRow) -> Webhook {
    let (id, url, events, secret, description, enabled, reason, failing, by, at) = row;
    Webhook {
        id,
        url,
        events: serde_json::from_str(&events).unwrap_or_default(),
        secret,
        description,
        enabled,
        disabled_reason: reason,
        failing_since: failing,
        created_by: by.map(UserId),
        created_at: at,
    }
}

type DeliveryRow = (
    i64,
    i64,
    String,
    i64,
    String,
    String,
    i64,
    DateTime<Utc>,
    Option<i64>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// A ticket event: its ticket, type, action, status, actor and time.
type TicketEventRow = (i64, String, String, String, Option<i64>, DateTime<Utc>);

const DELIVERY_COLUMNS: &str = "id, subscription_id, event_type, subject_id, detail, status, \
     attempts, next_attempt_at, response_status, last_error, created_at, delivered_at";

fn delivery(row: DeliveryRow) -> WebhookDelivery {
    let (
        id,
        subscription,
        event_type,
        subject,
        detail,
        status,
        attempts,
        next,
        code,
        error,
        at,
        done,
    ) = row;
    WebhookDelivery {
        id,
        subscription,
        event_type,
        subject,
        detail,
        status,
        attempts,
        next_attempt_at: next,
        response_status: code,
        last_error: error,
        created_at: at,
        delivered_at: done,
    }
}

impl SqlStore {
    /// Queues an event of `event_type` for each subject (its id, and what the event knows of
    /// it, a JSON object) for every subscription on that hears it, in the event's
    /// transaction. Nothing is written when none does.
    pub(crate) async fn queue_webhooks(
        tx: &mut db::Tx,
        event_type: &str,
        subjects: &[(i64, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if subjects.is_empty() {
            return Ok(());
        }
        let hearing: Vec<(i64,)> = db::query_as(
            "SELECT id FROM webhook_subscriptions WHERE enabled = TRUE AND events LIKE $1",
        )
        .bind(format!("%\"{event_type}\"%"))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_error)?;
        if hearing.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, &(i64, String))> = hearing
            .iter()
            .flat_map(|(s,)| subjects.iter().map(move |subject| (*s, subject)))
            .collect();
        for chunk in rows.chunks(500) {
            let mut q = db::Builder::new(
                "INSERT INTO webhook_deliveries (subscription_id, event_type, subject_id, detail, \
                 status, attempts, next_attempt_at, created_at) ",
            );
            q.push_values(chunk.iter(), |mut b, (s, (subject, detail))| {
                b.push_bind(*s)
                    .push_bind(event_type.to_owned())
                    .push_bind(*subject)
                    .push_bind(detail.clone())
                    .push_bind("PENDING")
                    .push_bind(0i64)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await.map_err(backend_error)?;
        }
        Ok(())
    }

    /// What the database says of an event's subject, added to what the event knew.
    async fn event_data(&self, d: &WebhookDelivery) -> Result<serde_json::Value, StoreError> {
        let mut data: serde_json::Value =
            serde_json::from_str(&d.detail).unwrap_or_else(|_| serde_json::json!({}));
        let more = match d.event_type.as_str() {
            "ticket.status_changed" => {
                let row: Option<TicketEventRow> = db::query_as(
                    "SELECT ticket_id, event_type, action, status, actor_id, created_at \
                         FROM ticket_events WHERE id = $1",
                )
                .bind(d.subject)
                .fetch_optional(self.reader())
                .await
                .map_err(backend_error)?;
                row.map(|(ticket, event, action, status, actor, at)| {
                    serde_json::json!({
                        "ticket_id": ticket, "ticket_event_id": d.subject, "event": event,
                        "action": action, "status": status, "actor_id": actor,
                        "at": crate::wire::timestamp(at),
                    })
                })
            }
            "notification.delivered" | "delivery.failed" => {
                let row: Option<(i64, String, i64, String, String)> = db::query_as(
                    "SELECT d.notification_id, d.channel, n.user_id, n.notification_type, d.status \
                     FROM deliveries d JOIN notifications n ON n.id = d.notification_id WHERE d.id = $1",
                )
                .bind(d.subject)
                .fetch_optional(self.reader())
                .await
                .map_err(backend_error)?;
                row.map(|(notification, channel, user, kind, status)| {
                    serde_json::json!({
                        "delivery_id": d.subject, "notification_id": notification,
                        "channel": channel, "user_id": user, "notification_type": kind,
                        "delivery_status": status,
                    })
                })
            }
            _ => None,
        };
        if let (Some(obj), Some(serde_json::Value::Object(more))) = (data.as_object_mut(), more) {
            for (k, v) in more {
                obj.entry(k).or_insert(v);
            }
        }
        Ok(data)
    }
}

#[async_trait::async_trait]
impl WebhookStore for SqlStore {
    async fn add_webhook(&self, w: NewWebhook) -> Result<Webhook, StoreError> {
        let row: WebhookRow = db::query_as(&format!(
            "INSERT INTO webhook_subscriptions (url, events, secret, description, enabled, \
             created_by, created_at) VALUES ($1, $2, $3, $4, TRUE, $5, $6) RETURNING {}",
            WEBHOOK
                .trim_start_matches("SELECT ")
                .split(" FROM ")
                .next()
                .unwrap_or_default()
        ))
        .bind(&w.url)
        .bind(serde_json::to_string(&w.events).unwrap_or_else(|_| "[]".into()))
        .bind(&w.secret)
        .bind(&w.description)
        .bind(w.created_by.0)
        .bind(Utc::now())
        .fetch_one(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(webhook(row))
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        Ok(
            db::query_as::<WebhookRow>(&format!("{WEBHOOK} ORDER BY id"))
                .fetch_all(self.reader())
                .await
                .map_err(backend_error)?
                .into_iter()
                .map(webhook)
                .collect(),
        )
    }

    async fn webhook(&self, id: i64) -> Result<Option<Webhook>, StoreError> {
        Ok(
            db::query_as::<WebhookRow>(&format!("{WEBHOOK} WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.writer())
                .await
                .map_err(backend_error)?
                .map(webhook),
        )
    }

    async fn set_webhook_enabled(
        &self,
        id: i64,
        enabled: bool,
    ) -> Result<Option<Webhook>, StoreError> {
        db::query(
            "UPDATE webhook_subscriptions SET enabled = $1, disabled_reason = NULL, \
             failing_since = NULL WHERE id = $2",
        )
        .bind(enabled)
        .bind(id)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        self.webhook(id).await
    }

    async fn delete_webhook(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        db::query("DELETE FROM webhook_deliveries WHERE subscription_id = $1")
            .bind(id)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        let done = db::query("DELETE FROM webhook_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn webhook_deliveries(
        &self,
        subscription: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<WebhookDelivery>), StoreError> {
        let (count,): (i64,) =
            db::query_as("SELECT COUNT(*) FROM webhook_deliveries WHERE subscription_id = $1")
                .bind(subscription)
                .fetch_one(self.reader())
                .await
                .map_err(backend_error)?;
        let rows: Vec<DeliveryRow> = db::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = $1 \
             ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(subscription)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok((count, rows.into_iter().map(delivery).collect()))
    }

    async fn queue_webhook_test(
        &self,
        subscription: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let row: Option<DeliveryRow> = db::query_as(&format!(
            "INSERT INTO webhook_deliveries (subscription_id, event_type, subject_id, detail, \
             status, attempts, next_attempt_at, created_at) \
             SELECT id, $1, 0, $2, 'PENDING', 0, $3, $3 FROM webhook_subscriptions WHERE id = $4 \
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(WEBHOOK_TEST_EVENT)
        .bind(serde_json::json!({"message": "A test event from tickethub."}).to_string())
        .bind(at)
        .bind(subscription)
        .fetch_optional(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(row.map(delivery))
    }

    async fn claim_webhook_deliveries(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        let kind = self.kind();
        // A subscription that is off keeps what waits for it until it is on again.
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'SENDING', claimed_until = {until}, \
             claimed_by = $4 WHERE id IN (SELECT d.id FROM webhook_deliveries d \
             JOIN webhook_subscriptions s ON s.id = d.subscription_id \
             WHERE ((d.status = 'PENDING' AND d.next_attempt_at <= {now}) \
             OR (d.status = 'SENDING' AND d.claimed_until < {now})) \
             AND (s.enabled = TRUE OR d.event_type = $5) ORDER BY d.id LIMIT $3 {lock}) \
             AND (status = 'PENDING' OR claimed_until < {now}) RETURNING {DELIVERY_COLUMNS}",
            until = kind.lease_until("$1", "$2"),
            now = kind.now("$2"),
            lock = kind.skip_locked(),
        );
        let mut rows: Vec<DeliveryRow> = db::query_as(&sql)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .bind(node)
            .bind(WEBHOOK_TEST_EVENT)
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?;
        rows.sort_by_key(|r| r.0);
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let d = delivery(row);
            let Some(sub) = self.webhook(d.subscription).await? else {
                continue;
            };
            let data = self.event_data(&d).await?;
            jobs.push(WebhookJob {
                delivery: d,
                url: sub.url,
                secret: sub.secret,
                data,
            });
        }
        Ok(jobs)
    }

    async fn webhook_delivered(
        &self,
        id: i64,
        node: &str,
        status: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        // A late answer to a claim another node has taken over changes nothing.
        let held = db::query(
            "UPDATE webhook_deliveries SET status = 'DELIVERED', attempts = attempts + 1, \
             response_status = $1, last_error = NULL, delivered_at = $2, claimed_until = NULL \
             WHERE id = $3 AND status = 'SENDING' AND claimed_by = $4",
        )
        .bind(status)
        .bind(at)
        .bind(id)
        .bind(node)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?
        .rows_affected()
            == 1;
        if !held {
            return Ok(());
        }
        db::query(
            "UPDATE webhook_subscriptions SET failing_since = NULL WHERE id = \
             (SELECT subscription_id FROM webhook_deliveries WHERE id = $1)",
        )
        .bind(id)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)
    }

    async fn webhook_failed(
        &self,
        id: i64,
        node: &str,
        status: Option<i64>,
        error: &str,
        due: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
        disable_before: DateTime<Utc>,
    ) -> Result<WebhookFailed, StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let (state, next) = match due {
            Some(due) => ("PENDING", due),
            None => ("FAILED", at),
        };
        let found: Option<(i64,)> = db::query_as(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
             response_status = $2, last_error = $3, next_attempt_at = $4, claimed_until = NULL \
             WHERE id = $5 AND status = 'SENDING' AND claimed_by = $6 RETURNING subscription_id",
        )
        .bind(state)
        .bind(status)
        .bind(error)
        .bind(next)
        .bind(id)
        .bind(node)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some((subscription,)) = found else {
            return Ok(WebhookFailed::Noted);
        };
        db::query(
            "UPDATE webhook_subscriptions SET failing_since = $1 \
             WHERE id = $2 AND failing_since IS NULL",
        )
        .bind(at)
        .bind(subscription)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        let reason = format!("every post has failed for too long; the last: {error}");
        let turned_off = db::query(
            "UPDATE webhook_subscriptions SET enabled = FALSE, disabled_reason = $1 \
             WHERE id = $2 AND enabled = TRUE AND failing_since <= $3",
        )
        .bind(&reason)
        .bind(subscription)
        .bind(disable_before)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?
        .rows_affected()
            == 1;
        if turned_off {
            // What was still to go to it is kept as failed, with why.
            db::query(
                "UPDATE webhook_deliveries SET status = 'FAILED', last_error = $1 \
                 WHERE subscription_id = $2 AND status = 'PENDING'",
            )
            .bind("the subscription was turned off")
            .bind(subscription)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)?;
        if turned_off {
            if let Some(w) = self.webhook(subscription).await? {
                return Ok(WebhookFailed::Disabled(w));
            }
        }
        Ok(WebhookFailed::Noted)
    }
}
