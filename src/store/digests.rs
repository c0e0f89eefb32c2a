//! Digests in SQL: the row of each person's next digest, claimed like an escalation step, and
//! what a digest sums up.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::notification::Notification;
use tickethub_actors::ports::{DueDigest, StoreError};
use tickethub_actors::routing::{Channel, Reach};

use crate::store::{backend_error, db, SqlStore};

#[async_trait::async_trait]
impl tickethub_actors::ports::DigestStore for SqlStore {
    async fn claim_digests(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueDigest>, StoreError> {
        let kind = self.kind();
        let sql = format!(
            "UPDATE digests SET claimed_by = $4, claimed_until = {until} \
             WHERE user_id IN (SELECT user_id FROM digests WHERE due_at <= {now} \
             AND (claimed_until IS NULL OR claimed_until < {now}) ORDER BY due_at LIMIT $3 {lock}) \
             AND (claimed_until IS NULL OR claimed_until < {now}) \
             RETURNING user_id, due_at, since",
            until = kind.lease_until("$1", "$2"),
            now = kind.now("$2"),
            lock = kind.skip_locked(),
        );
        let rows: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = db::query_as(&sql)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .bind(node)
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(rows
            .into_iter()
            .map(|(user, due_at, since)| DueDigest {
                user: UserId(user),
                due_at,
                since,
            })
            .collect())
    }

    async fn next_digest(&self, user: UserId) -> Result<Option<DueDigest>, StoreError> {
        let row: Option<(DateTime<Utc>, DateTime<Utc>)> =
            db::query_as("SELECT due_at, since FROM digests WHERE user_id = $1")
                .bind(user.0)
                .fetch_optional(self.reader())
                .await
                .map_err(backend_error)?;
        Ok(row.map(|(due_at, since)| DueDigest {
            user,
            due_at,
            since,
        }))
    }

    async fn digest_contents(
        &self,
        user: UserId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        // Sent on a channel of the person's own (a deployment's webhook is not theirs).
        let mut q = db::Builder::new("SELECT n.id FROM notifications n WHERE n.user_id = ");
        q.push_bind(user.0);
        q.push(" AND n.is_read = FALSE AND n.deleted_at IS NULL AND n.created_at > ");
        q.push_bind(since);
        q.push(" AND n.created_at <= ");
        q.push_bind(until);
        q.push(
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = n.id \
             AND d.status = 'SENT' AND d.channel NOT IN (",
        );
        let mut names = q.separated(", ");
        for (channel, reach) in Channel::registered() {
            if reach == Reach::Deployment {
                names.push_bind(channel.as_str());
            }
        }
        names.push_bind("");
        q.push(")) ORDER BY n.id LIMIT ");
        q.push_bind(limit);
        let ids: Vec<(i64,)> = q
            .build_query_as()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        let notes = self
            .notifications_by_id(ids.iter().map(|(id,)| *id))
            .await?;
        Ok(ids
            .into_iter()
            .filter_map(|(id,)| notes.get(&id).cloned())
            .collect())
    }

    async fn digest_done(
        &self,
        user: UserId,
        node: &str,
        until: DateTime<Utc>,
        next: DateTime<Utc>,
        sent: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let done = db::query(
            "UPDATE digests SET since = CASE WHEN since < $3 THEN $3 ELSE since END, due_at = $4, \
             claimed_by = NULL, claimed_until = NULL WHERE user_id = $1 AND claimed_by = $2",
        )
        .bind(user.0)
        .bind(node)
        .bind(until)
        .bind(next)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if sent > 0 {
            db::query(
                "INSERT INTO digest_sends (user_id, notifications, sent_at) VALUES ($1, $2, $3)",
            )
            .bind(user.0)
            .bind(sent)
            .bind(Utc::now())
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }
}
