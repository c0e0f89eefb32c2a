//! A user's inbox changes in SQL: read, unread, delete, delete all.

use crate::store::{backend_error, db, SqlStore};
use tickethub_actors::ports::Store as _;

#[async_trait::async_trait]
impl tickethub_actors::ports::InboxStore for SqlStore {
    async fn set_read(
        &self,
        user: tickethub_actors::domain::UserId,
        id: i64,
        read: bool,
    ) -> Result<
        Option<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        let read_at = read.then(chrono::Utc::now);
        // Only a change is written: marking a read notification read again keeps
        // when it was first read (what time-to-read figures are made of).
        let sql = format!(
            "UPDATE notifications SET is_read = $1, read_at = $2, inbox_changed_at = {} \
             WHERE id = $3 AND user_id = $4 AND deleted_at IS NULL AND is_read <> $1",
            self.kind().now("$5")
        );
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let done = db::query(&sql)
            .bind(read)
            .bind(read_at)
            .bind(id)
            .bind(user.0)
            .bind(self.now())
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        if read && done.rows_affected() > 0 {
            let known = serde_json::json!({ "notification_id": id, "user_id": user.0 });
            Self::queue_webhooks(
                &mut tx,
                "notification.read",
                &[(id, known.to_string())],
                chrono::Utc::now(),
            )
            .await?;
        }
        tx.commit().await.map_err(backend_error)?;
        if read && done.rows_affected() > 0 {
            metrics::counter!("tickethub_notifications_read_total").increment(1);
        }
        let sql = format!(
            "{} WHERE n.id = $1 AND n.user_id = $2 AND n.deleted_at IS NULL",
            crate::store::notifications::NOTIFICATION_SELECT
        );
        let found = db::query_as::<crate::store::notifications::NotificationRow>(&sql)
            .bind(id)
            .bind(user.0)
            .fetch_optional(self.writer())
            .await
            .map_err(backend_error)?
            .map(crate::store::notifications::NotificationRow::into_notification)
            .transpose()?;
        if read && found.is_some() {
            Self::cancel_seen(self.writer(), user, false).await?;
        }
        Ok(found)
    }

    async fn mark_all_read(
        &self,
        user: tickethub_actors::domain::UserId,
        filter: &tickethub_actors::ports::NotificationFilter,
    ) -> Result<Vec<i64>, tickethub_actors::ports::StoreError> {
        let mut q = db::Builder::new("UPDATE notifications SET is_read = ");
        q.push_bind(true)
            .push(", read_at = ")
            .push_bind(chrono::Utc::now())
            .push(", inbox_changed_at = ");
        self.push_now(&mut q);
        q.push(" WHERE deleted_at IS NULL AND is_read = ")
            .push_bind(false)
            .push(" AND user_id = ")
            .push_bind(user.0);
        if let Some(t) = &filter.notification_type {
            q.push(" AND notification_type = ").push_bind(t.as_str());
        }
        if let Some(t) = filter.ticket {
            q.push(" AND ticket_id = ").push_bind(t.0);
        }
        q.push(" RETURNING id");
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let ids = sorted_ids(
            q.build_query_as::<(i64,)>()
                .fetch_all(&mut tx)
                .await
                .map_err(backend_error)?,
        );
        let read: Vec<(i64, String)> = ids
            .iter()
            .map(|id| {
                let known = serde_json::json!({ "notification_id": id, "user_id": user.0 });
                (*id, known.to_string())
            })
            .collect();
        Self::queue_webhooks(&mut tx, "notification.read", &read, chrono::Utc::now()).await?;
        tx.commit().await.map_err(backend_error)?;
        if !ids.is_empty() {
            metrics::counter!("tickethub_notifications_read_total").increment(ids.len() as u64);
            Self::cancel_seen(self.writer(), user, false).await?;
        }
        Ok(ids)
    }

    async fn delete_notification(
        &self,
        user: tickethub_actors::domain::UserId,
        id: i64,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let sql = format!(
            "UPDATE notifications SET deleted_at = $1, inbox_changed_at = {} \
             WHERE id = $2 AND user_id = $3 AND deleted_at IS NULL",
            self.kind().now("$4")
        );
        let done = db::query(&sql)
            .bind(chrono::Utc::now())
            .bind(id)
            .bind(user.0)
            .bind(self.now())
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        if done.rows_affected() == 1 {
            Self::cancel_seen(self.writer(), user, true).await?;
        }
        Ok(done.rows_affected() == 1)
    }

    async fn inbox_changes(
        &self,
        users: &[tickethub_actors::domain::UserId],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<tickethub_actors::notification::InboxChange>, tickethub_actors::ports::StoreError>
    {
        use tickethub_actors::notification::{InboxChange, Update};
        let mut changes = Vec::new();
        for chunk in users.chunks(1000) {
            let mut q = db::Builder::new(
                "SELECT user_id, id, is_read, deleted_at IS NOT NULL AS deleted, inbox_changed_at \
                 FROM notifications WHERE inbox_changed_at >= ",
            );
            q.push_bind(since).push(" AND user_id");
            q.push_in(chunk.iter().map(|u| u.0).collect());
            q.push(" ORDER BY user_id, id");
            let rows = q
                .build_query_as::<(i64, i64, bool, bool, chrono::DateTime<chrono::Utc>)>()
                .fetch_all(self.reader())
                .await
                .map_err(backend_error)?;
            changes.extend(rows.into_iter().map(|(user, id, is_read, deleted, at)| {
                let update = match deleted {
                    true => Update::Deleted { id },
                    false => Update::Read { id, is_read },
                };
                InboxChange {
                    user: tickethub_actors::domain::UserId(user),
                    update,
                    at,
                }
            }));
        }
        Ok(changes)
    }

    async fn delete_all_notifications(
        &self,
        user: tickethub_actors::domain::UserId,
    ) -> Result<Vec<i64>, tickethub_actors::ports::StoreError> {
        let sql = format!(
            "UPDATE notifications SET deleted_at = $1, inbox_changed_at = {} \
             WHERE user_id = $2 AND deleted_at IS NULL RETURNING id",
            self.kind().now("$3")
        );
        let ids = sorted_ids(
            db::query_as::<(i64,)>(&sql)
                .bind(chrono::Utc::now())
                .bind(user.0)
                .bind(self.now())
                .fetch_all(self.writer())
                .await
                .map_err(backend_error)?,
        );
        if !ids.is_empty() {
            Self::cancel_seen(self.writer(), user, true).await?;
        }
        Ok(ids)
    }
}

/// The ids a `RETURNING id` answered, in order.
fn sorted_ids(rows: Vec<(i64,)>) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.into_iter().map(|(id,)| id).collect();
    ids.sort_unstable();
    ids
}

impl SqlStore {
    /// Pushes the time of an inbox change, by [`db::Kind::now`]'s clock.
    fn push_now(&self, q: &mut db::Builder) {
        match self.kind() {
            db::Kind::Postgres => q.push(self.kind().now("")),
            db::Kind::Sqlite => q.push_bind(self.now()),
        };
    }
}
