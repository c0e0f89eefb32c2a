//! Replies in SQL: addresses to users, the notifications a reply may name, acknowledgements
//! and the answers kept for inbound messages.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::{Acknowledgement, Replyable, StoreError};
use tickethub_actors::routing::Channel;
use tickethub_actors::ticket_domain::TicketId;

use crate::store::{backend_error, db, SqlStore};

#[async_trait::async_trait]
impl tickethub_actors::ports::ReplyStore for SqlStore {
    async fn users_with_address(
        &self,
        channel: Channel,
        address: &str,
    ) -> Result<Vec<UserId>, StoreError> {
        let ids: Vec<(i64,)> = db::query_as(
            "SELECT a.user_id FROM user_addresses a JOIN users u ON u.id = a.user_id \
             WHERE a.channel = $1 AND a.address = $2 AND a.verified_at IS NOT NULL \
             AND u.is_active = $3 ORDER BY a.user_id",
        )
        .bind(channel.as_str())
        .bind(address)
        .bind(true)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok(ids.into_iter().map(|(id,)| UserId(id)).collect())
    }

    async fn replyable(
        &self,
        user: UserId,
        channel: Channel,
        limit: i64,
    ) -> Result<Vec<Replyable>, StoreError> {
        let rows: Vec<(i64, i64, String, Option<i64>, bool)> = db::query_as(
            "SELECT n.id, n.seq, n.title, n.ticket_id, n.is_read FROM notifications n \
             WHERE n.user_id = $1 AND n.deleted_at IS NULL AND EXISTS \
             (SELECT 1 FROM deliveries d WHERE d.notification_id = n.id AND d.channel = $2) \
             ORDER BY n.seq DESC LIMIT $3",
        )
        .bind(user.0)
        .bind(channel.as_str())
        .bind(limit)
        .fetch_all(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, seq, title, ticket, is_read)| Replyable {
                id,
                seq,
                title,
                ticket: ticket.map(TicketId),
                is_read,
            })
            .collect())
    }

    async fn record_acknowledgement(
        &self,
        notification: i64,
        user: UserId,
        via: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = db::query(
            "INSERT INTO acknowledgements (notification_id, user_id, via, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(notification)
        .bind(user.0)
        .bind(via)
        .bind(at)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn acknowledgements(
        &self,
        notification: i64,
    ) -> Result<Vec<Acknowledgement>, StoreError> {
        let rows: Vec<(i64, String, DateTime<Utc>)> = db::query_as(
            "SELECT user_id, via, created_at FROM acknowledgements \
             WHERE notification_id = $1 ORDER BY created_at, via",
        )
        .bind(notification)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok(rows
            .into_iter()
            .map(|(user, via, at)| Acknowledgement {
                user: UserId(user),
                via,
                at,
            })
            .collect())
    }

    async fn inbound_answer(&self, provider: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = db::query_as(
            "SELECT answer FROM inbound_messages WHERE provider = $1 AND message_id = $2",
        )
        .bind(provider)
        .bind(id)
        .fetch_optional(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(row.map(|(a,)| a))
    }

    async fn keep_inbound_answer(
        &self,
        provider: &str,
        id: &str,
        answer: &str,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        // Providers send a message again within hours, not weeks.
        db::query("DELETE FROM inbound_messages WHERE created_at < $1")
            .bind(at - chrono::Duration::days(7))
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        db::query(
            "INSERT INTO inbound_messages (provider, message_id, answer, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(provider)
        .bind(id)
        .bind(answer)
        .bind(at)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(self
            .inbound_answer(provider, id)
            .await?
            .unwrap_or_else(|| answer.to_owned()))
    }
}
