//! Scheduled sends in SQL.

use crate::store::{backend_error, db, SqlStore};

use tickethub_actors::domain::{Role, UserId};
use tickethub_actors::notification::{Announcement, Recipients};
use tickethub_actors::ports::{ScheduledSend, StoreError};
use tickethub_actors::routing::Channel;

/// A `scheduled_sends` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ScheduledRow {
    id: i64,
    created_by: i64,
    user_ids: Option<String>,
    role: Option<String>,
    oncall: Option<String>,
    notification_type: String,
    title: String,
    message: String,
    data: String,
    link: Option<String>,
    channels: String,
    send_at: chrono::DateTime<chrono::Utc>,
    status: String,
    fired_at: Option<chrono::DateTime<chrono::Utc>>,
    notified: Option<i64>,
    detail: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    api_key_id: Option<i64>,
}

/// The columns of [`ScheduledRow`].
pub(crate) const SCHEDULED_COLUMNS: &str =
    "id, created_by, user_ids, role, oncall, notification_type, \
     title, message, data, link, channels, send_at, status, fired_at, notified, detail, \
     created_at, updated_at, api_key_id";

/// Whose pending sends a loss of power cancels.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owned {
    /// Those a person made with their own token (a demotion).
    Person(tickethub_actors::domain::UserId),
    /// Every send made as this user, with their token or a key acting as them (a
    /// deactivation or an erasure: such a key is refused from then on).
    User(tickethub_actors::domain::UserId),
    /// Those a key made (its revocation).
    Key(i64),
}

/// The condition that picks a sender's sends, with its one bind (`$n`): by key, or by a
/// person without a key.
pub(crate) fn sender_clause(
    sender: Option<tickethub_actors::ports::Sender>,
    n: usize,
) -> (String, Option<i64>) {
    use tickethub_actors::ports::Sender;
    match sender {
        None => (format!("(${n} IS NULL OR 1 = 1)"), None),
        Some(Sender::Key(key)) => (format!("api_key_id = ${n}"), Some(key)),
        Some(Sender::Person(user)) => (
            format!("created_by = ${n} AND api_key_id IS NULL"),
            Some(user.0),
        ),
    }
}

fn corrupt(what: String) -> StoreError {
    StoreError::Backend(what.into())
}

impl ScheduledRow {
    pub(crate) fn into_send(self) -> Result<ScheduledSend, StoreError> {
        let to = match (self.user_ids, self.role, self.oncall) {
            (None, None, Some(target)) => Recipients::OnCall(
                tickethub_actors::oncall::Target::parse(&target)
                    .map_err(|e| corrupt(format!("scheduled send {}: {e}", self.id)))?,
            ),
            (Some(ids), None, None) => Recipients::Users(
                serde_json::from_str::<Vec<i64>>(&ids)
                    .map_err(|e| corrupt(format!("scheduled send {}: user_ids: {e}", self.id)))?
                    .into_iter()
                    .map(UserId)
                    .collect(),
            ),
            (None, Some(role), None) => Recipients::Role(
                role.parse::<Role>()
                    .map_err(|e| corrupt(format!("scheduled send {}: {e}", self.id)))?,
            ),
            _ => {
                return Err(corrupt(format!(
                    "scheduled send {} names no recipients",
                    self.id
                )))
            }
        };
        let channels = self
            .channels
            .split(',')
            .filter(|c| !c.is_empty())
            .map(|c| {
                Channel::stored(c)
                    .ok_or_else(|| corrupt(format!("scheduled send {}: channel `{c}`", self.id)))
            })
            .collect::<Result<_, _>>()?;
        Ok(ScheduledSend {
            id: self.id,
            announcement: Announcement {
                to,
                notification_type: self.notification_type,
                title: self.title,
                message: self.message,
                data: self.data,
                link: self.link,
                channels,
                sent_by: Some(UserId(self.created_by)),
                idempotency: None,
            },
            send_at: self.send_at,
            status: self.status,
            fired_at: self.fired_at,
            notified: self.notified,
            detail: self.detail,
            created_at: self.created_at,
            api_key: self.api_key_id,
            updated_at: self.updated_at,
        })
    }
}

/// A send's data with `scheduled_send`: `{id, send_at, fired_at, late_seconds}`.
pub(crate) fn with_schedule(send: &mut ScheduledSend, now: chrono::DateTime<chrono::Utc>) {
    let mut value: serde_json::Value =
        serde_json::from_str(&send.announcement.data).unwrap_or_else(|_| serde_json::json!({}));
    let late = (now - send.send_at).num_milliseconds().max(0) as f64 / 1000.0;
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "scheduled_send".to_owned(),
            serde_json::json!({
                "id": send.id,
                "send_at": crate::wire::timestamp(send.send_at),
                "fired_at": crate::wire::timestamp(now),
                "late_seconds": late,
            }),
        );
    }
    send.announcement.data = value.to_string();
}

impl SqlStore {
    /// Why `sender`, scheduling as `user`, may no longer send, if so; with `lock`, its
    /// rows (the key's and the user's) are held until `conn`'s transaction ends, so that
    /// a revocation or a change of role waits for it, then sees what it stored.
    async fn why_no_power<'e>(
        on: impl Into<db::On<'e>>,
        sender: tickethub_actors::ports::Sender,
        user: tickethub_actors::domain::UserId,
        lock: &str,
    ) -> Result<Option<String>, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Sender;
        match sender {
            Sender::Key(key) => {
                let row: Option<(String, Option<chrono::DateTime<chrono::Utc>>, bool)> =
                    db::query_as(&format!(
                        "SELECT k.name, k.revoked_at, u.is_active FROM api_keys k \
                         JOIN users u ON u.id = k.user_id WHERE k.id = $1 {lock}"
                    ))
                    .bind(key)
                    .fetch_optional(on)
                    .await
                    .map_err(backend_error)?;
                Ok(match row {
                    None => Some("the API key that scheduled it is gone".to_owned()),
                    Some((name, Some(_), _)) => Some(format!(
                        "the API key `{name}` that scheduled it was revoked"
                    )),
                    Some((name, None, false)) => Some(format!(
                        "the user the API key `{name}` acts as was deactivated"
                    )),
                    Some(_) => None,
                })
            }
            Sender::Person(_) => {
                let row: Option<(String, bool, Option<chrono::DateTime<chrono::Utc>>)> =
                    db::query_as(&format!(
                        "SELECT role, is_active, erased_at FROM users WHERE id = $1 {lock}"
                    ))
                    .bind(user.0)
                    .fetch_optional(on)
                    .await
                    .map_err(backend_error)?;
                Ok(match row {
                    None => Some("the user who scheduled it is gone".to_owned()),
                    Some((_, _, Some(_))) => {
                        Some("the user who scheduled it was erased".to_owned())
                    }
                    Some((_, false, None)) => {
                        Some("the user who scheduled it was deactivated".to_owned())
                    }
                    Some((role, true, None)) if role != "admin" => {
                        Some("the admin who scheduled it is no longer an admin".to_owned())
                    }
                    Some(_) => None,
                })
            }
        }
    }

    async fn scheduled_rows(
        &self,
        ids: &[i64],
    ) -> Result<Vec<tickethub_actors::ports::ScheduledSend>, tickethub_actors::ports::StoreError>
    {
        let mut q = db::Builder::new(format!(
            "SELECT {} FROM scheduled_sends WHERE id",
            crate::store::schedule::SCHEDULED_COLUMNS
        ));
        q.push_in(ids.to_vec());
        q.push(" ORDER BY send_at, id");
        q.build_query_as::<crate::store::schedule::ScheduledRow>()
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(crate::store::schedule::ScheduledRow::into_send)
            .collect()
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::ScheduleStore for SqlStore {
    async fn schedule_send(
        &self,
        send: tickethub_actors::ports::NewScheduledSend,
        cap: i64,
        mark: Option<&tickethub_actors::ports::IdempotencyMark>,
    ) -> Result<tickethub_actors::ports::Scheduled, tickethub_actors::ports::StoreError> {
        use tickethub_actors::notification::Recipients;
        use tickethub_actors::ports::{Scheduled, StoreError};
        let a = &send.announcement;
        let owner = a
            .sent_by
            .ok_or_else(|| StoreError::Backend("a scheduled send needs its sender".into()))?;
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let sender = match send.api_key {
            Some(key) => tickethub_actors::ports::Sender::Key(key),
            None => tickethub_actors::ports::Sender::Person(owner),
        };
        // The sender's power, held for the transaction: a revocation or a demotion that
        // comes now waits, then cancels this send with the others.
        if let Some(why) =
            Self::why_no_power(&mut tx, sender, owner, self.kind().row_lock()).await?
        {
            return Ok(Scheduled::Refused(why));
        }
        let (mine, bind) = crate::store::schedule::sender_clause(Some(sender), 1);
        let (pending,): (i64,) = db::query_as(&format!(
            "SELECT COUNT(*) FROM scheduled_sends WHERE {mine} AND status IN ('PENDING', 'FIRING')"
        ))
        .bind(bind)
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        if pending >= cap {
            return Ok(Scheduled::Full { cap });
        }
        let (user_ids, role, oncall) = match &a.to {
            Recipients::Users(ids) => (
                Some(
                    serde_json::to_string(&ids.iter().map(|u| u.0).collect::<Vec<_>>())
                        .expect("ids serialize"),
                ),
                None,
                None,
            ),
            Recipients::Role(role) => (None, Some(role.as_str()), None),
            Recipients::OnCall(target) => (None, None, Some(target.name())),
        };
        let channels: Vec<&str> = a.channels.iter().map(|c| c.as_str()).collect();
        let (id,): (i64,) = db::query_as(
            "INSERT INTO scheduled_sends (created_by, user_ids, role, notification_type, title, message, \
             data, link, channels, send_at, status, created_at, updated_at, api_key_id, oncall) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'PENDING', $11, $11, $12, $13) RETURNING id",
        )
        .bind(owner.0)
        .bind(user_ids)
        .bind(role)
        .bind(&a.notification_type)
        .bind(&a.title)
        .bind(&a.message)
        .bind(&a.data)
        .bind(&a.link)
        .bind(channels.join(","))
        .bind(send.send_at)
        .bind(now)
        .bind(send.api_key)
        .bind(oncall)
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        if let Some(mark) = mark {
            Self::mark_committed(&mut tx, mark, id).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        let stored = self
            .scheduled_rows(&[id])
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("scheduled send {id}")))?;
        Ok(Scheduled::Stored(Box::new(stored)))
    }

    async fn scheduled_send(
        &self,
        id: i64,
    ) -> Result<Option<tickethub_actors::ports::ScheduledSend>, tickethub_actors::ports::StoreError>
    {
        Ok(self.scheduled_rows(&[id]).await?.pop())
    }

    async fn pending_sends(
        &self,
        owner: Option<tickethub_actors::ports::Sender>,
        offset: i64,
        limit: i64,
    ) -> Result<
        (i64, Vec<tickethub_actors::ports::ScheduledSend>),
        tickethub_actors::ports::StoreError,
    > {
        let (mine, bind) = crate::store::schedule::sender_clause(owner, 1);
        let (count,): (i64,) = db::query_as(&format!(
            "SELECT COUNT(*) FROM scheduled_sends WHERE status IN ('PENDING', 'FIRING') AND {mine}"
        ))
        .bind(bind)
        .fetch_one(self.reader())
        .await
        .map_err(backend_error)?;
        let rows: Vec<crate::store::schedule::ScheduledRow> = db::query_as(&format!(
            "SELECT {} FROM scheduled_sends WHERE status IN ('PENDING', 'FIRING') \
             AND {mine} ORDER BY send_at, id LIMIT $2 OFFSET $3",
            crate::store::schedule::SCHEDULED_COLUMNS
        ))
        .bind(bind)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        let sends = rows
            .into_iter()
            .map(crate::store::schedule::ScheduledRow::into_send)
            .collect::<Result<_, _>>()?;
        Ok((count, sends))
    }

    async fn cancel_send(
        &self,
        owner: Option<tickethub_actors::ports::Sender>,
        id: i64,
        actor: &str,
    ) -> Result<tickethub_actors::ports::Cancelled, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Cancelled;
        let (mine, bind) = crate::store::schedule::sender_clause(owner, 2);
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let done = db::query(&format!(
            "UPDATE scheduled_sends SET status = 'CANCELLED', detail = 'cancelled', updated_at = $3 \
             WHERE id = $1 AND status = 'PENDING' AND {mine}"
        ))
        .bind(id)
        .bind(bind)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 1 {
            let event = tickethub_actors::ports::NewAuditEvent::new(
                actor,
                "scheduled_send.cancelled",
                format!("scheduled_send:{id}"),
                serde_json::json!({ "reason": "cancelled by its sender or an admin" }).to_string(),
            );
            Self::audit(&mut tx, &event, now).await?;
            tx.commit().await.map_err(backend_error)?;
            return Ok(Cancelled::Cancelled);
        }
        let status: Option<(String,)> = db::query_as(&format!(
            "SELECT status FROM scheduled_sends WHERE id = $1 AND {mine}"
        ))
        .bind(id)
        .bind(bind)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        Ok(match status {
            None => Cancelled::NotFound,
            Some((status,)) => Cancelled::Settled(status),
        })
    }

    async fn claim_sends(
        &self,
        node: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<tickethub_actors::ports::ScheduledSend>, tickethub_actors::ports::StoreError>
    {
        let ids = self
            .claim_due("scheduled_sends", "send_at", node, now, lease_until, limit)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sends = self.scheduled_rows(&ids).await?;
        for send in &mut sends {
            crate::store::schedule::with_schedule(send, now);
        }
        Ok(sends)
    }

    async fn power_lost(
        &self,
        send: &tickethub_actors::ports::ScheduledSend,
    ) -> Result<Option<String>, tickethub_actors::ports::StoreError> {
        let (Some(sender), Some(user)) = (send.sender(), send.owner()) else {
            return Ok(Some("it names no sender".to_owned()));
        };
        let mut conn = self.writer().acquire().await.map_err(backend_error)?;
        Self::why_no_power(&mut conn, sender, user, "").await
    }

    async fn finish_send(
        &self,
        id: i64,
        node: &str,
        outcome: tickethub_actors::ports::Fired,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Fired;
        let (status, fired_at, notified, detail, cancelled) = match outcome {
            Fired::Fired {
                notified,
                at,
                detail,
            } => ("FIRED", Some(at), Some(notified), detail, None),
            Fired::Failed(why) => ("FAILED", None, None, why, None),
            Fired::Cancelled(why) => (
                "CANCELLED",
                None,
                None,
                format!("cancelled: {why}"),
                Some(why),
            ),
        };
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let done = db::query(
            "UPDATE scheduled_sends SET status = $1, fired_at = $2, notified = $3, detail = $4, \
             claimed_by = NULL, claimed_until = NULL, updated_at = $5 \
             WHERE id = $6 AND status = 'FIRING' AND claimed_by = $7",
        )
        .bind(status)
        .bind(fired_at)
        .bind(notified)
        .bind(detail)
        .bind(now)
        .bind(id)
        .bind(node)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        let settled = done.rows_affected() == 1;
        if let (true, Some(why)) = (settled, cancelled) {
            let event = tickethub_actors::ports::NewAuditEvent::new(
                "hub",
                "scheduled_send.cancelled",
                format!("scheduled_send:{id}"),
                serde_json::json!({ "reason": why }).to_string(),
            );
            Self::audit(&mut tx, &event, now).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(settled)
    }

    async fn release_sends(
        &self,
        ids: &[i64],
        node: &str,
        due: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Due again at `due` (never earlier than it was): a lease that ran out takes it
        // back anyway. On PostgreSQL `due` is taken as a wait from the store's `now`, which
        // it was reckoned from, and the row is due by the database's clock after it.
        let mut q =
            db::Builder::new("UPDATE scheduled_sends SET status = 'FIRING', claimed_until = ");
        match self.kind() {
            db::Kind::Sqlite => {
                q.push_bind(due);
            }
            db::Kind::Postgres => {
                let wait = (due - tickethub_actors::ports::Store::now(self)).num_milliseconds();
                q.push("statement_timestamp() + ");
                q.push_bind(wait.max(0));
                q.push(" * interval '1 millisecond'");
            }
        }
        q.push(" WHERE status = 'FIRING' AND claimed_by = ");
        q.push_bind(node);
        q.push(" AND id");
        q.push_in(ids.to_vec());
        q.build()
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn schedule_outlook(
        &self,
    ) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), tickethub_actors::ports::StoreError>
    {
        let (pending,): (i64,) = db::query_as(
            "SELECT COUNT(*) FROM scheduled_sends WHERE status IN ('PENDING', 'FIRING')",
        )
        .fetch_one(self.reader())
        .await
        .map_err(backend_error)?;
        if pending == 0 {
            return Ok((0, None));
        }
        // The next pending send, or the next claim to run out (a node that died firing).
        let next_due: Option<(chrono::DateTime<chrono::Utc>,)> = db::query_as(
            "SELECT send_at FROM scheduled_sends WHERE status = 'PENDING' ORDER BY send_at LIMIT 1",
        )
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        let next_lapse: Option<(chrono::DateTime<chrono::Utc>,)> = db::query_as(
            "SELECT claimed_until FROM scheduled_sends WHERE status = 'FIRING' \
             AND claimed_until IS NOT NULL ORDER BY claimed_until LIMIT 1",
        )
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        let next = match (next_due, next_lapse) {
            (Some((a,)), Some((b,))) => Some(a.min(b)),
            (a, b) => a.or(b).map(|(t,)| t),
        };
        Ok((pending, next))
    }
}
