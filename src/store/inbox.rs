//! A user's inbox changes in SQL: read, unread, delete, delete all.

use crate::store::{backend_error, db, SqlStore};

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
        let done = db::query(
            "UPDATE notifications SET is_read = $1, read_at = $2 \
             WHERE id = $3 AND user_id = $4 AND deleted_at IS NULL AND is_read <> $1",
        )
        .bind(read)
        .bind(read_at)
        .bind(id)
        .bind(user.0)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
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
            .push(" WHERE deleted_at IS NULL AND is_read = ")
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
        let mut ids: Vec<i64> = q
            .build_query_as::<(i64,)>()
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|(id,)| id)
            .collect();
        ids.sort_unstable();
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
        let done = db::query(
            "UPDATE notifications SET deleted_at = $1 WHERE id = $2 AND user_id = $3 AND deleted_at IS NULL",
        )
        .bind(chrono::Utc::now())
        .bind(id)
        .bind(user.0)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 1 {
            Self::cancel_seen(self.writer(), user, true).await?;
        }
        Ok(done.rows_affected() == 1)
    }

    async fn delete_all_notifications(
        &self,
        user: tickethub_actors::domain::UserId,
    ) -> Result<i64, tickethub_actors::ports::StoreError> {
        let done = db::query(
            "UPDATE notifications SET deleted_at = $1 WHERE user_id = $2 AND deleted_at IS NULL",
        )
        .bind(chrono::Utc::now())
        .bind(user.0)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        if done.rows_affected() > 0 {
            Self::cancel_seen(self.writer(), user, true).await?;
        }
        Ok(done.rows_affected() as i64)
    }
}
