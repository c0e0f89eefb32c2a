//! The audit trail in SQL: events written in the transaction of the change they record.

use crate::store::{backend_error, db, SqlStore};

/// An `audit_events` row.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: chrono::DateTime<chrono::Utc>,
    actor: String,
    action: String,
    subject: String,
    detail: String,
}

impl AuditRow {
    pub(crate) fn into_event(self) -> tickethub_actors::ports::AuditEvent {
        tickethub_actors::ports::AuditEvent {
            id: self.id,
            at: self.at,
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            detail: self.detail,
        }
    }
}

impl SqlStore {
    /// Records `event` in `tx`, at `at`.
    pub(crate) async fn audit(
        tx: &mut db::Tx,
        event: &tickethub_actors::ports::NewAuditEvent,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query(
            "INSERT INTO audit_events (at, actor, action, subject, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.subject)
        .bind(&event.detail)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    /// Cancels pending scheduled sends in `tx`: those of `created_by` (only those made
    /// without a key, with `persons_only`), or those made with `api_key`, saying `why`
    /// in their `detail` and on the audit trail. Answers their ids.
    pub(crate) async fn cancel_owned_sends(
        tx: &mut db::Tx,
        owner: crate::store::schedule::Owned,
        why: &str,
        actor: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<i64>, tickethub_actors::ports::StoreError> {
        use crate::store::schedule::Owned;
        let detail = format!("cancelled: {why}");
        let mut q = db::Builder::new("UPDATE scheduled_sends SET status = 'CANCELLED', detail = ");
        q.push_bind(&detail);
        q.push(", updated_at = ");
        q.push_bind(at);
        q.push(" WHERE status = 'PENDING' AND ");
        match owner {
            Owned::Person(user) => {
                q.push("created_by = ")
                    .push_bind(user.0)
                    .push(" AND api_key_id IS NULL");
            }
            Owned::User(user) => {
                q.push("created_by = ").push_bind(user.0);
            }
            Owned::Key(key) => {
                q.push("api_key_id = ").push_bind(key);
            }
        }
        q.push(" RETURNING id");
        let ids: Vec<(i64,)> = q
            .build_query_as()
            .fetch_all(&mut *tx)
            .await
            .map_err(backend_error)?;
        for (id,) in &ids {
            let event = tickethub_actors::ports::NewAuditEvent::new(
                actor,
                "scheduled_send.cancelled",
                format!("scheduled_send:{id}"),
                serde_json::json!({ "reason": why }).to_string(),
            );
            Self::audit(tx, &event, at).await?;
        }
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::AuditStore for SqlStore {
    async fn record_audit(
        &self,
        event: tickethub_actors::ports::NewAuditEvent,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        Self::audit(&mut tx, &event, chrono::Utc::now()).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn audit_events(
        &self,
        filter: &tickethub_actors::ports::AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<tickethub_actors::ports::AuditEvent>), tickethub_actors::ports::StoreError>
    {
        let filtered = |select: &str| {
            let mut q = db::Builder::new(select);
            q.push(" FROM audit_events WHERE 1 = 1");
            if let Some(subject) = &filter.subject {
                q.push(" AND subject = ").push_bind(subject.clone());
            }
            if let Some(action) = &filter.action {
                q.push(" AND action = ").push_bind(action.clone());
            }
            if let Some(actor) = &filter.actor {
                q.push(" AND actor = ").push_bind(actor.clone());
            }
            q
        };
        let (count,): (i64,) = filtered("SELECT COUNT(*)")
            .build_query_as()
            .fetch_one(self.reader())
            .await
            .map_err(backend_error)?;
        let mut q = filtered("SELECT id, at, actor, action, subject, detail");
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        q.push(" OFFSET ").push_bind(offset);
        let rows: Vec<crate::store::audit::AuditRow> = q
            .build_query_as()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        Ok((
            count,
            rows.into_iter()
                .map(crate::store::audit::AuditRow::into_event)
                .collect(),
        ))
    }
}
