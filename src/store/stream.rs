//! A user's notification stream in SQL: the backlog a socket replays, gaps, acks and what was sent.

use crate::store::{backend_error, db, SqlStore};

impl SqlStore {
    /// The notifications joined to a `VALUES` list of keys (`k.column1`, …), one
    /// statement per thousand keys: `key` writes one key's row, `on` is the join's
    /// condition and the rest of the statement. PostgreSQL plans a row-value `IN` list
    /// one arm at a time (70 ms for 500 keys, against 2 ms joined).
    async fn notifications_joined<K>(
        &self,
        keys: &[K],
        key: impl Fn(&mut db::Builder<'static>, &K),
        on: &str,
    ) -> Result<
        Vec<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let mut q = db::Builder::new(crate::store::notifications::NOTIFICATION_SELECT);
            q.push(" JOIN (VALUES ");
            for (i, k) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                key(&mut q, k);
            }
            q.push(") AS k ON ").push(on);
            let rows = q
                .build_query_as::<crate::store::notifications::NotificationRow>()
                .fetch_all(self.writer())
                .await
                .map_err(backend_error)?;
            for row in rows {
                out.push(row.into_notification()?);
            }
        }
        Ok(out)
    }

    /// One ack inside a transaction: `None` for an unknown user.
    async fn ack_in(
        tx: &mut db::Tx,
        user: tickethub_actors::domain::UserId,
        seq: i64,
    ) -> Result<Option<i64>, tickethub_actors::ports::StoreError> {
        // Never past the user's highest seq.
        static SQL: db::PerKind = db::PerKind::new(|kind| {
            let last = kind.last_seq();
            format!(
                "UPDATE users SET acked_seq = CASE \
                   WHEN $2 > acked_seq THEN (CASE WHEN $2 < {last} THEN $2 ELSE {last} END) \
                   ELSE acked_seq END \
                 WHERE id = $1 RETURNING acked_seq"
            )
        });
        let row: Option<(i64,)> = db::query_as(SQL.get(tx.kind()))
            .bind(user.0)
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_error)?;
        let Some((acked,)) = row else {
            return Ok(None);
        };
        if acked > 0 {
            // When each seq was first acknowledged, for timelines: a row only when the
            // acknowledged seq moved past every earlier row's.
            let now = chrono::Utc::now();
            let moved = db::query(
                "INSERT INTO stream_events (user_id, kind, first_seq, last_seq, sockets, at) \
                 SELECT $1, 'acked', $2, $2, 0, $3 WHERE NOT EXISTS \
                 (SELECT 1 FROM stream_events WHERE user_id = $1 AND kind = 'acked' AND last_seq >= $2)",
            )
            .bind(user.0)
            .bind(acked)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
            if moved.rows_affected() > 0 {
                let done = db::query(
                    "UPDATE escalations SET status = 'CANCELLED', claimed_until = NULL, updated_at = $1, \
                     detail = 'a client of the recipient acknowledged the notification' \
                     WHERE user_id = $2 AND status IN ('PENDING', 'FIRING') AND unless_seen = 'acked' AND seq <= $3",
                )
                .bind(now)
                .bind(user.0)
                .bind(acked)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
                crate::store::history::count_cancelled(done.rows_affected());
            }
        }
        Ok(Some(acked))
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::StreamStore for SqlStore {
    async fn backlog(
        &self,
        user: tickethub_actors::domain::UserId,
        after_seq: i64,
        cap: i64,
    ) -> Result<
        (i64, Vec<tickethub_actors::notification::Notification>),
        tickethub_actors::ports::StoreError,
    > {
        let (count,): (i64,) = db::query_as(
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND seq > $2 AND deleted_at IS NULL",
        )
        .bind(user.0)
        .bind(after_seq)
        .fetch_one(self.reader())
        .await
        .map_err(backend_error)?;
        if count == 0 {
            return Ok((0, Vec::new()));
        }
        // The newest `cap`, read newest first and turned around.
        let sql = format!(
            "{} WHERE n.user_id = $1 AND n.seq > $2 AND n.deleted_at IS NULL ORDER BY n.seq DESC LIMIT $3",
            crate::store::notifications::NOTIFICATION_SELECT
        );
        let mut list = db::query_as::<crate::store::notifications::NotificationRow>(&sql)
            .bind(user.0)
            .bind(after_seq)
            .bind(cap)
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(crate::store::notifications::NotificationRow::into_notification)
            .collect::<Result<Vec<_>, _>>()?;
        list.reverse();
        Ok(((count - list.len() as i64).max(0), list))
    }

    async fn seq_range(
        &self,
        user: tickethub_actors::domain::UserId,
        after: i64,
        before: i64,
    ) -> Result<
        Vec<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        let sql = format!(
            "{} WHERE n.user_id = $1 AND n.seq > $2 AND n.seq < $3 AND n.deleted_at IS NULL \
             ORDER BY n.seq",
            crate::store::notifications::NOTIFICATION_SELECT
        );
        db::query_as::<crate::store::notifications::NotificationRow>(&sql)
            .bind(user.0)
            .bind(after)
            .bind(before)
            .fetch_all(self.writer())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(crate::store::notifications::NotificationRow::into_notification)
            .collect()
    }

    async fn seq_ranges(
        &self,
        ranges: &[(tickethub_actors::domain::UserId, i64, i64)],
    ) -> Result<
        Vec<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        self.notifications_joined(
            ranges,
            |q, (user, after, before)| {
                q.push("(")
                    .push_bind(user.0)
                    .push(", ")
                    .push_bind(*after)
                    .push(", ")
                    .push_bind(*before)
                    .push(")");
            },
            "n.user_id = k.column1 AND n.seq > k.column2 AND n.seq < k.column3 \
             WHERE n.deleted_at IS NULL ORDER BY n.user_id, n.seq",
        )
        .await
    }

    async fn notifications_at(
        &self,
        keys: &[(tickethub_actors::domain::UserId, i64)],
    ) -> Result<
        Vec<tickethub_actors::notification::Notification>,
        tickethub_actors::ports::StoreError,
    > {
        self.notifications_joined(
            keys,
            |q, (user, seq)| {
                q.push("(")
                    .push_bind(user.0)
                    .push(", ")
                    .push_bind(*seq)
                    .push(")");
            },
            "n.user_id = k.column1 AND n.seq = k.column2 WHERE n.deleted_at IS NULL",
        )
        .await
    }

    async fn ack(
        &self,
        user: tickethub_actors::domain::UserId,
        seq: i64,
    ) -> Result<i64, tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let acked = Self::ack_in(&mut tx, user, seq)
            .await?
            .ok_or_else(|| tickethub_actors::ports::StoreError::NotFound(format!("user {user}")))?;
        tx.commit().await.map_err(backend_error)?;
        Ok(acked)
    }

    async fn ack_many(
        &self,
        acks: &[(tickethub_actors::domain::UserId, i64)],
    ) -> Result<Vec<(tickethub_actors::domain::UserId, i64)>, tickethub_actors::ports::StoreError>
    {
        // In user order, as commits lock users' rows: no deadlock on PostgreSQL.
        let mut acks = acks.to_vec();
        acks.sort_unstable();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let mut acked = Vec::with_capacity(acks.len());
        for (user, seq) in acks {
            if let Some(seq) = Self::ack_in(&mut tx, user, seq).await? {
                acked.push((user, seq));
            }
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(acked)
    }

    async fn record_sent(
        &self,
        sent: &[(tickethub_actors::domain::UserId, i64)],
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        if sent.is_empty() {
            return Ok(());
        }
        let mut sent = sent.to_vec();
        sent.sort();
        let rows = sent.iter().map(|(user, seq)| (user.0, *seq)).collect();
        if let Some(written) = self.record_sent_directly(rows).await {
            return written;
        }
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        for chunk in sent.chunks(500) {
            if self.kind() == db::Kind::Postgres {
                // Rows are locked in id order, as commits lock them: no deadlock.
                let mut lock = db::Builder::new("SELECT id FROM users WHERE id IN (");
                let mut sep = lock.separated(", ");
                for (user, _) in chunk {
                    sep.push_bind(user.0);
                }
                lock.push(") ORDER BY id FOR NO KEY UPDATE");
                lock.build().execute(&mut tx).await.map_err(backend_error)?;
            }
            let mut q = db::Builder::new("WITH v(id, seq) AS (");
            q.push_values(chunk, |mut row, (user, seq)| {
                row.push_bind(user.0).push_bind(*seq);
            });
            q.push(") UPDATE users SET sent_seq = v.seq FROM v WHERE users.id = v.id AND users.sent_seq < v.seq");
            q.build().execute(&mut tx).await.map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(())
    }
}
