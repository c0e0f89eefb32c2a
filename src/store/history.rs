//! What happened to notifications and tickets (timelines, the trace), and the durable
//! escalation steps, in SQL.

use crate::store::{backend_error, db, SqlStore};

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::escalation::{PlannedStep, Unless};
use tickethub_actors::ports::{EscalationRow, StoreError, TicketEvent};
use tickethub_actors::routing::{Audience, Channel};
use tickethub_actors::ticket_domain::TicketId;

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string().into())
}

/// A list of ids as stored (a JSON array).
pub(crate) fn ids_json(ids: &[UserId]) -> String {
    serde_json::Value::from(ids.iter().map(|u| u.0).collect::<Vec<_>>()).to_string()
}

fn parse_ids(text: &str) -> Result<Vec<UserId>, StoreError> {
    let ids: Vec<i64> = serde_json::from_str(text).map_err(corrupt)?;
    Ok(ids.into_iter().map(UserId).collect())
}

/// A list of names as stored (comma-separated).
pub(crate) fn names<T>(items: &[T], name: impl Fn(&T) -> &'static str) -> String {
    items.iter().map(name).collect::<Vec<_>>().join(",")
}

/// A step's `also` as stored: its audiences, then its on-call targets (`oncall:…`).
fn also_names(s: &tickethub_actors::policy::PlannedStep) -> String {
    s.also
        .iter()
        .map(|a| a.as_str().to_owned())
        .chain(s.oncall.iter().map(|t| t.name()))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_names<T: std::str::FromStr<Err = String>>(text: &str) -> Result<Vec<T>, StoreError> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<T>().map_err(corrupt))
        .collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct TicketEventRow {
    id: i64,
    ticket_id: i64,
    event_type: String,
    action: String,
    actor_id: Option<i64>,
    status: String,
    assignees: String,
    newly_assigned: String,
    created_at: DateTime<Utc>,
    detail: Option<String>,
}

/// What a ticket's history keeps of a change besides its status: an edit's fields before and
/// after, or a rejection's reason, as JSON.
pub(crate) fn event_record(change: &tickethub_actors::ticket_domain::Change) -> Option<String> {
    if !change.edits.is_empty() {
        let changes: Vec<_> = change
            .edits
            .iter()
            .map(|e| serde_json::json!({"field": e.field.as_str(), "before": e.before, "after": e.after}))
            .collect();
        return Some(serde_json::json!({ "changes": changes }).to_string());
    }
    change
        .reason
        .as_ref()
        .map(|r| serde_json::json!({ "reason": r }).to_string())
}

/// [`event_record`]'s JSON, read back.
#[derive(serde::Deserialize, Default)]
struct EventRecord {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    changes: Vec<RecordedChange>,
}

#[derive(serde::Deserialize)]
struct RecordedChange {
    field: String,
    before: String,
    after: String,
}

impl TicketEventRow {
    pub(crate) fn into_event(self) -> Result<TicketEvent, StoreError> {
        let record: EventRecord = match &self.detail {
            Some(json) => serde_json::from_str(json).map_err(corrupt)?,
            None => EventRecord::default(),
        };
        Ok(TicketEvent {
            reason: record.reason,
            changes: record
                .changes
                .into_iter()
                .filter_map(|c| {
                    Some(tickethub_actors::ticket_domain::FieldChange {
                        field: tickethub_actors::ticket_domain::Field::parse(&c.field)?,
                        before: c.before,
                        after: c.after,
                    })
                })
                .collect(),
            id: self.id,
            ticket: TicketId(self.ticket_id),
            event: self.event_type.parse().expect("infallible"),
            action: self.action,
            actor: self.actor_id.map(UserId),
            status: self.status.parse().map_err(corrupt)?,
            assignees: parse_ids(&self.assignees)?,
            newly_assigned: parse_ids(&self.newly_assigned)?,
            at: self.created_at,
        })
    }
}

pub(crate) const TICKET_EVENT_COLUMNS: &str =
    "id, ticket_id, event_type, action, actor_id, status, \
     assignees, newly_assigned, created_at, detail";

#[derive(sqlx::FromRow)]
pub(crate) struct EscalationDbRow {
    id: i64,
    pub(crate) notification_id: i64,
    user_id: i64,
    ticket_id: Option<i64>,
    pub(crate) cause_status: Option<String>,
    policy: String,
    step: i64,
    unless_seen: String,
    channels: String,
    also: String,
    push_wait: Option<i64>,
    due_at: DateTime<Utc>,
    status: String,
    claimed_by: Option<String>,
    detail: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(crate) const ESCALATION_COLUMNS: &str = "id, notification_id, user_id, ticket_id, cause_status, \
     policy, step, unless_seen, channels, also, push_wait, due_at, status, claimed_by, detail, created_at, updated_at";

impl EscalationDbRow {
    pub(crate) fn into_row(self) -> Result<EscalationRow, StoreError> {
        Ok(EscalationRow {
            id: self.id,
            notification_id: self.notification_id,
            user_id: UserId(self.user_id),
            ticket: self.ticket_id.map(TicketId),
            step: PlannedStep {
                policy: self.policy,
                step: self.step,
                after: (self.due_at - self.created_at).to_std().unwrap_or_default(),
                unless: self.unless_seen.parse::<Unless>().map_err(corrupt)?,
                channels: parse_names::<Channel>(&self.channels)?,
                also: parse_names::<Audience>(
                    &self
                        .also
                        .split(',')
                        .filter(|n| !n.starts_with(tickethub_actors::oncall::PREFIX))
                        .collect::<Vec<_>>()
                        .join(","),
                )?,
                oncall: self
                    .also
                    .split(',')
                    .filter(|n| n.starts_with(tickethub_actors::oncall::PREFIX))
                    .map(tickethub_actors::oncall::Target::parse)
                    .collect::<Result<_, _>>()
                    .map_err(corrupt)?,
                push_unless_seen: self
                    .push_wait
                    .map(|s| std::time::Duration::from_secs(s.max(0) as u64)),
            },
            due_at: self.due_at,
            status: self.status,
            detail: self.detail,
            claimed_by: self.claimed_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl SqlStore {
    /// Claims for `node` until `lease_until` the due rows of a table of timed jobs
    /// (`status` PENDING with `<due> <= now`, or FIRING with a lapsed lease), soonest
    /// first, skipping rows another node holds; answers their ids. On PostgreSQL, `now` is the
    /// database's clock ([`db::Kind::now`]) and the lease is as long as asked from it.
    pub(crate) async fn claim_due(
        &self,
        table: &str,
        due: &str,
        node: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<i64>, tickethub_actors::ports::StoreError> {
        let kind = self.kind();
        let sql = format!(
            "UPDATE {table} SET status = 'FIRING', claimed_by = $1, claimed_until = {until}, updated_at = {now} \
             WHERE id IN (SELECT id FROM {table} WHERE status IN ('PENDING', 'FIRING') AND \
             ((status = 'PENDING' AND {due} <= {now}) OR (status = 'FIRING' AND claimed_until < {now})) \
             ORDER BY {due}, id LIMIT $4 {lock}) RETURNING id",
            until = kind.lease_until("$2", "$3"),
            now = kind.now("$3"),
            lock = kind.skip_locked(),
        );
        let claimed: Vec<(i64,)> = db::query_as(&sql)
            .bind(node)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(claimed.into_iter().map(|(id,)| id).collect())
    }

    /// Records a ticket's event (with `record`, what the history shows of it: see
    /// [`event_record`]), and queues it for the project's chats that hear it (with `detail`, a
    /// rejection's reason, a comment's text or an edit's fields) and, a change of status, for the
    /// event webhooks that hear `ticket.status_changed`; answers its id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_ticket_event(
        tx: &mut db::Tx,
        ticket: i64,
        event: &tickethub_actors::routing::EventType,
        action: &str,
        actor: tickethub_actors::domain::UserId,
        status: tickethub_actors::ticket_domain::TicketStatus,
        assignees: &[tickethub_actors::domain::UserId],
        newly_assigned: &[tickethub_actors::domain::UserId],
        detail: Option<&str>,
        record: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64, tickethub_actors::ports::StoreError> {
        let (id,): (i64,) = db::query_as(
            "INSERT INTO ticket_events (ticket_id, event_type, action, actor_id, status, assignees, \
             newly_assigned, created_at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(ticket)
        .bind(event.as_str())
        .bind(action)
        .bind(actor.0)
        .bind(status.as_str())
        .bind(crate::store::history::ids_json(assignees))
        .bind(crate::store::history::ids_json(newly_assigned))
        .bind(now)
        .bind(record)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend_error)?;
        Self::queue_chat_updates(tx, ticket, id, event, actor, detail, now).await?;
        if !matches!(
            event,
            tickethub_actors::routing::EventType::CommentAdded
                | tickethub_actors::routing::EventType::TicketUpdated
        ) {
            let known = serde_json::json!({ "ticket_id": ticket, "status": status.as_str(), "reason": detail });
            Self::queue_webhooks(tx, "ticket.status_changed", &[(id, known.to_string())], now)
                .await?;
        }
        Ok(id)
    }

    /// Schedules the escalation steps of committed notifications: `(notification id,
    /// recipient, seq, draft)`.
    pub(crate) async fn insert_escalations(
        tx: &mut db::Tx,
        rows: &[(i64, i64, i64, &tickethub_actors::notification::Draft)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        let steps: Vec<_> = rows
            .iter()
            .flat_map(|(id, user, seq, d)| {
                d.escalations.iter().map(move |s| (*id, *user, *seq, *d, s))
            })
            .collect();
        for chunk in steps.chunks(500) {
            let mut q = db::Builder::new(
                "INSERT INTO escalations (notification_id, user_id, seq, ticket_id, cause_status, policy, step, \
                 unless_seen, channels, also, push_wait, due_at, status, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut row, (id, user, seq, d, s)| {
                let due = crate::timespan::later(now, s.after);
                row.push_bind(*id)
                    .push_bind(*user)
                    .push_bind(*seq)
                    .push_bind(d.ticket.as_ref().map(|t| t.id.0))
                    .push_bind(d.ticket.as_ref().map(|t| t.status.as_str()))
                    .push_bind(s.policy.clone())
                    .push_bind(s.step)
                    .push_bind(s.unless.as_str())
                    .push_bind(crate::store::history::names(&s.channels, |c| c.as_str()))
                    .push_bind(also_names(s))
                    .push_bind(s.push_unless_seen.map(|w| w.as_secs() as i64))
                    .push_bind(due)
                    .push_bind("PENDING")
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await.map_err(backend_error)?;
        }
        Ok(())
    }

    /// Cancels the open steps of a ticket whose status moved away from the one that
    /// caused them.
    pub(crate) async fn cancel_moved_on(
        tx: &mut db::Tx,
        ticket: i64,
        status: tickethub_actors::ticket_domain::TicketStatus,
        because: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        let done = db::query(
            "UPDATE escalations SET status = 'CANCELLED', claimed_until = NULL, updated_at = $1, \
             detail = 'the ticket moved from ' || cause_status || ' to ' || $2 || $3 \
             WHERE ticket_id = $4 AND status IN ('PENDING', 'FIRING') AND cause_status <> $2",
        )
        .bind(now)
        .bind(status.as_str())
        .bind(because)
        .bind(ticket)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        crate::store::history::count_cancelled(done.rows_affected());
        Ok(())
    }

    /// Cancels a user's open steps whose notification was read (`deleted`: deleted).
    pub(crate) async fn cancel_seen<'e, E>(
        exec: E,
        user: tickethub_actors::domain::UserId,
        deleted: bool,
    ) -> Result<(), tickethub_actors::ports::StoreError>
    where
        E: Into<db::On<'e>>,
    {
        let (reason, seen) = if deleted {
            (
                "the recipient deleted the notification",
                "deleted_at IS NOT NULL",
            )
        } else {
            ("the recipient read the notification", "is_read = TRUE")
        };
        let sql = format!(
            "UPDATE escalations SET status = 'CANCELLED', detail = $1, claimed_until = NULL, updated_at = $2 \
             WHERE user_id = $3 AND status IN ('PENDING', 'FIRING') AND notification_id IN \
             (SELECT id FROM notifications WHERE user_id = $3 AND {seen})"
        );
        let done = db::query(&sql)
            .bind(reason)
            .bind(chrono::Utc::now())
            .bind(user.0)
            .execute(exec)
            .await
            .map_err(backend_error)?;
        crate::store::history::count_cancelled(done.rows_affected());
        Ok(())
    }

    /// Records an attempt of a delivery.
    pub(crate) async fn insert_attempt(
        tx: &mut db::Tx,
        delivery: i64,
        attempt: i64,
        outcome: &str,
        error: Option<&str>,
        node: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, outcome, error, node, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(delivery)
        .bind(attempt)
        .bind(outcome)
        .bind(error)
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn escalation_rows(
        &self,
        ids: &[i64],
    ) -> Result<Vec<crate::store::history::EscalationDbRow>, tickethub_actors::ports::StoreError>
    {
        let mut q = db::Builder::new(format!(
            "SELECT {} FROM escalations WHERE id IN (",
            crate::store::history::ESCALATION_COLUMNS
        ));
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        q.push(") ORDER BY due_at, id");
        q.build_query_as()
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::HistoryStore for SqlStore {
    async fn record_pushes(
        &self,
        node: &str,
        pushes: &[tickethub_actors::ports::Pushed],
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        if let Some(written) = self.record_pushes_directly(node, pushes).await {
            return written;
        }
        for chunk in pushes.chunks(1000) {
            let mut q = db::Builder::new(
                "INSERT INTO stream_events (user_id, kind, first_seq, last_seq, sockets, node, first_at, at) ",
            );
            q.push_values(chunk, |mut row, p| {
                row.push_bind(p.user.0)
                    .push_bind("pushed")
                    .push_bind(p.first_seq)
                    .push_bind(p.last_seq)
                    .push_bind(p.sockets)
                    .push_bind(node.to_owned())
                    .push_bind(p.first_at)
                    .push_bind(p.at);
            });
            q.build()
                .execute(self.writer())
                .await
                .map_err(backend_error)?;
        }
        Ok(())
    }

    async fn timeline(
        &self,
        id: i64,
    ) -> Result<Option<tickethub_actors::ports::TimelineRecord>, tickethub_actors::ports::StoreError>
    {
        use tickethub_actors::ports::{DeliveryAttempt, PushRecord, StoreError};
        let sql = format!(
            "{} WHERE n.id = $1",
            crate::store::notifications::NOTIFICATION_SELECT
        );
        let Some(row) = db::query_as::<crate::store::notifications::NotificationRow>(&sql)
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .map_err(backend_error)?
        else {
            return Ok(None);
        };
        let notification = row.into_notification()?;
        let (deleted_at, event_id, action, actor_id): (
            Option<chrono::DateTime<chrono::Utc>>,
            Option<i64>,
            Option<String>,
            Option<i64>,
        ) = db::query_as(
            "SELECT deleted_at, event_id, action, actor_id FROM notifications WHERE id = $1",
        )
        .bind(id)
        .fetch_one(self.reader())
        .await
        .map_err(backend_error)?;
        let event = match event_id {
            Some(e) => db::query_as::<crate::store::history::TicketEventRow>(&format!(
                "SELECT {} FROM ticket_events WHERE id = $1",
                crate::store::history::TICKET_EVENT_COLUMNS
            ))
            .bind(e)
            .fetch_optional(self.reader())
            .await
            .map_err(backend_error)?
            .map(crate::store::history::TicketEventRow::into_event)
            .transpose()?,
            None => None,
        };
        let user = notification.user_id.0;
        let seq = notification.seq;
        #[allow(clippy::type_complexity)]
        let pushes: Vec<(i64, Option<String>, Option<chrono::DateTime<chrono::Utc>>, chrono::DateTime<chrono::Utc>)> = db::query_as(
            "SELECT sockets, node, first_at, at FROM stream_events WHERE user_id = $1 AND kind = 'pushed' \
             AND first_seq <= $2 AND last_seq >= $2 ORDER BY at, id",
        )
        .bind(user)
        .bind(seq)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        let acked_at: Option<(chrono::DateTime<chrono::Utc>,)> = db::query_as(
            "SELECT at FROM stream_events WHERE user_id = $1 AND kind = 'acked' AND last_seq >= $2 \
             ORDER BY at, id LIMIT 1",
        )
        .bind(user)
        .bind(seq)
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        let deliveries: Vec<crate::store::notifications::DeliveryRow> = db::query_as(
            "SELECT id, notification_id, channel, address, status, attempts, last_error, \
             provider_message_id, next_attempt_at, sent_at \
             FROM deliveries WHERE notification_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        #[allow(clippy::type_complexity)]
        let attempts: Vec<(i64, String, String, i64, String, Option<String>, Option<String>, chrono::DateTime<chrono::Utc>)> =
            db::query_as(
                "SELECT a.delivery_id, d.channel, d.address, a.attempt, a.outcome, a.error, a.node, a.at \
                 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
                 WHERE d.notification_id = $1 ORDER BY a.at, a.id",
            )
            .bind(id)
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        let escalations: Vec<crate::store::history::EscalationDbRow> = db::query_as(&format!(
            "SELECT {} FROM escalations WHERE notification_id = $1 ORDER BY due_at, id",
            crate::store::history::ESCALATION_COLUMNS
        ))
        .bind(id)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok(Some(tickethub_actors::ports::TimelineRecord {
            notification,
            deleted_at,
            event,
            action,
            actor: actor_id.map(tickethub_actors::domain::UserId),
            pushes: pushes
                .into_iter()
                .map(|(sockets, node, first_at, at)| PushRecord {
                    first_at: first_at.unwrap_or(at),
                    sockets,
                    node,
                    at,
                })
                .collect(),
            acked_at: acked_at.map(|(at,)| at),
            deliveries: deliveries
                .into_iter()
                .map(crate::store::notifications::DeliveryRow::into_delivery)
                .collect::<Result<_, _>>()?,
            attempts: attempts
                .into_iter()
                .map(
                    |(delivery_id, channel, address, attempt, outcome, error, node, at)| {
                        Ok(DeliveryAttempt {
                            delivery_id,
                            channel: tickethub_actors::routing::Channel::stored(&channel)
                                .ok_or_else(|| {
                                    StoreError::Backend(
                                        format!("unknown channel `{channel}`").into(),
                                    )
                                })?,
                            address,
                            attempt,
                            outcome,
                            error,
                            node,
                            at,
                        })
                    },
                )
                .collect::<Result<_, StoreError>>()?,
            escalations: escalations
                .into_iter()
                .map(crate::store::history::EscalationDbRow::into_row)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn ticket_events(
        &self,
        ticket: tickethub_actors::ticket_domain::TicketId,
    ) -> Result<Vec<tickethub_actors::ports::TicketEvent>, tickethub_actors::ports::StoreError>
    {
        db::query_as::<crate::store::history::TicketEventRow>(&format!(
            "SELECT {} FROM ticket_events WHERE ticket_id = $1 ORDER BY id",
            crate::store::history::TICKET_EVENT_COLUMNS
        ))
        .bind(ticket.0)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?
        .into_iter()
        .map(crate::store::history::TicketEventRow::into_event)
        .collect()
    }

    async fn ticket_follow_ups(
        &self,
        ticket: tickethub_actors::ticket_domain::TicketId,
    ) -> Result<Vec<tickethub_actors::ports::FollowUp>, tickethub_actors::ports::StoreError> {
        self.follow_ups(ticket).await
    }

    async fn event_notifications(
        &self,
        ticket: tickethub_actors::ticket_domain::TicketId,
        user: tickethub_actors::domain::UserId,
    ) -> Result<Vec<(i64, i64)>, tickethub_actors::ports::StoreError> {
        db::query_as(
            "SELECT n.event_id, n.id FROM notifications n JOIN ticket_events e ON e.id = n.event_id \
             WHERE e.ticket_id = $1 AND n.user_id = $2 ORDER BY n.id",
        )
        .bind(ticket.0)
        .bind(user.0)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::EscalationStore for SqlStore {
    async fn claim_escalations(
        &self,
        node: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<tickethub_actors::escalation::EscalationJob>, tickethub_actors::ports::StoreError>
    {
        use std::collections::HashMap;
        use tickethub_actors::ports::{StoreError, TicketStore};
        let ids = self
            .claim_due("escalations", "due_at", node, now, lease_until, limit)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.escalation_rows(&ids).await?;
        let mut nq = db::Builder::new(crate::store::notifications::NOTIFICATION_SELECT);
        nq.push(" WHERE n.id IN (");
        let mut sep = nq.separated(", ");
        for r in &rows {
            sep.push_bind(r.notification_id);
        }
        nq.push(")");
        let notifications: HashMap<i64, tickethub_actors::notification::Notification> = nq
            .build_query_as::<crate::store::notifications::NotificationRow>()
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|r| r.into_notification().map(|n| (n.id, n)))
            .collect::<Result<_, _>>()?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let cause_status = row
                .cause_status
                .as_deref()
                .map(str::parse::<tickethub_actors::ticket_domain::TicketStatus>)
                .transpose()
                .map_err(|e| StoreError::Backend(e.to_string().into()))?;
            let row = row.into_row()?;
            let Some(notification) = notifications.get(&row.notification_id).cloned() else {
                continue;
            };
            let (deleted, acked_seq): (Option<chrono::DateTime<chrono::Utc>>, i64) = db::query_as(
                "SELECT n.deleted_at, u.acked_seq FROM notifications n JOIN users u ON u.id = n.user_id \
                 WHERE n.id = $1",
            )
            .bind(row.notification_id)
            .fetch_one(self.writer())
            .await
            .map_err(backend_error)?;
            let ticket = match row.ticket {
                Some(t) => self.ticket(t).await?,
                None => None,
            };
            jobs.push(tickethub_actors::escalation::EscalationJob {
                id: row.id,
                step: row.step,
                due_at: row.due_at,
                notification,
                deleted: deleted.is_some(),
                acked_seq,
                cause_status,
                ticket,
            });
        }
        Ok(jobs)
    }

    async fn finish_escalation(
        &self,
        id: i64,
        node: &str,
        finish: tickethub_actors::escalation::Finish,
    ) -> Result<Option<tickethub_actors::ports::Settled>, tickethub_actors::ports::StoreError> {
        use tickethub_actors::escalation::Finish;
        if tickethub_actors::ports::StoreFaults::take(&self.faults.failed_escalation_finishes) {
            return Err(tickethub_actors::ports::StoreError::Backend(
                "injected: settling the step failed".into(),
            ));
        }
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        // A step decided to fire is checked again against its notification, whose row is held
        // until the commit: a read or delete either committed before (and stops the step) or
        // waits for this transaction (and comes after the step fired).
        let finish = match finish {
            Finish::Fired { .. } => {
                let sql = format!(
                    "SELECT is_read, deleted_at IS NOT NULL AS deleted FROM notifications \
                     WHERE id = (SELECT notification_id FROM escalations WHERE id = $1) {}",
                    tx.kind().row_lock()
                );
                let seen: Option<(bool, bool)> = db::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&mut tx)
                    .await
                    .map_err(backend_error)?;
                match seen {
                    Some((_, true)) => {
                        Finish::Cancelled("the recipient deleted the notification".into())
                    }
                    Some((true, false)) => {
                        Finish::Cancelled("the recipient read the notification".into())
                    }
                    _ => finish,
                }
            }
            other => other,
        };
        let (status, outcome, detail) = match &finish {
            Finish::Cancelled(why) => ("CANCELLED", "cancelled", why.clone()),
            Finish::Fired { detail, .. } => ("FIRED", "fired", detail.clone()),
            Finish::Failed(why) => ("FAILED", "failed", why.clone()),
        };
        // When it was settled, by the database's clock on PostgreSQL: the start of this
        // transaction, which is before the check above.
        let settled_at = match tx.kind() {
            db::Kind::Postgres => "transaction_timestamp()",
            db::Kind::Sqlite => "$3",
        };
        let sql = format!(
            "UPDATE escalations SET status = $1, detail = $2, claimed_until = NULL, updated_at = {settled_at} \
             WHERE id = $4 AND status = 'FIRING' AND claimed_by = $5 RETURNING notification_id"
        );
        let held: Option<(i64,)> = db::query_as(&sql)
            .bind(status)
            .bind(&detail)
            .bind(now)
            .bind(id)
            .bind(node)
            .fetch_optional(&mut tx)
            .await
            .map_err(backend_error)?;
        let Some((notification_id,)) = held else {
            return Ok(None);
        };
        let mut committed = Vec::new();
        if let Finish::Fired {
            deliveries, drafts, ..
        } = finish
        {
            for (channel, address) in &deliveries {
                if *channel == tickethub_actors::routing::Channel::Push {
                    Self::insert_pushes(&mut tx, &[(notification_id, address.as_str())], now)
                        .await?;
                    continue;
                }
                db::query(&format!(
                    "{}VALUES ($1, $2, $3, NULL, 'QUEUED', 0, $4, $4, $4)",
                    crate::store::notifications::INSERT_DELIVERIES
                ))
                .bind(notification_id)
                .bind(channel.as_str())
                .bind(address)
                .bind(now)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
            }
            if !drafts.is_empty() {
                committed = Self::insert_drafts(&mut tx, drafts, None).await?;
            }
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(Some(tickethub_actors::ports::Settled {
            outcome,
            notifications: committed,
        }))
    }

    async fn release_escalations(
        &self,
        ids: &[i64],
        node: &str,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut q = db::Builder::new(
            "UPDATE escalations SET status = 'PENDING', claimed_by = NULL, claimed_until = NULL \
             WHERE status = 'FIRING' AND claimed_by = ",
        );
        q.push_bind(node.to_owned()).push(" AND id IN (");
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

    async fn escalation_outlook(
        &self,
    ) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), tickethub_actors::ports::StoreError>
    {
        let (pending,): (i64,) =
            db::query_as("SELECT COUNT(*) FROM escalations WHERE status IN ('PENDING', 'FIRING')")
                .fetch_one(self.reader())
                .await
                .map_err(backend_error)?;
        let next: Option<(chrono::DateTime<chrono::Utc>,)> = db::query_as(
            "SELECT due_at FROM escalations WHERE status IN ('PENDING', 'FIRING') \
             AND status = 'PENDING' ORDER BY due_at LIMIT 1",
        )
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        Ok((pending, next.map(|(d,)| d)))
    }

    async fn list_escalations(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<tickethub_actors::ports::EscalationRow>, tickethub_actors::ports::StoreError>
    {
        let mut q = db::Builder::new(format!(
            "SELECT {} FROM escalations",
            crate::store::history::ESCALATION_COLUMNS
        ));
        if let Some(status) = status {
            q.push(" WHERE status = ").push_bind(status.to_owned());
        }
        q.push(" ORDER BY due_at, id LIMIT ").push_bind(limit);
        q.build_query_as::<crate::store::history::EscalationDbRow>()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(crate::store::history::EscalationDbRow::into_row)
            .collect()
    }
}

/// Counts cancelled steps.
pub(crate) fn count_cancelled(n: u64) {
    if n > 0 {
        metrics::counter!("tickethub_escalation_steps_total", "outcome" => "cancelled")
            .increment(n);
    }
}
