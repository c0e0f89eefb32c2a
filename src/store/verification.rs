//! Address verification in SQL: the pending code per user and channel, and the messages each
//! address received in the last day.

use crate::store::{backend_error, db, SqlStore};

use tickethub_actors::routing::Channel;

/// How an address is kept in the message counts: the SHA-256 of its normalized form.
pub(crate) fn address_hash(channel: Channel, address_key: &str) -> String {
    crate::auth::api_keys::hash(&format!("{}:{address_key}", channel.as_str()))
}

impl SqlStore {
    /// Spends a pending code of `user` on `channel` and marks the address it was sent to
    /// verified, with its audit event, in `tx`: `None` when the user's address is no
    /// longer the one the code went to.
    async fn spend_verification(
        &self,
        mut tx: db::Tx,
        user: i64,
        channel: tickethub_actors::routing::Channel,
        address: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<tickethub_actors::ports::Checked, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Checked;
        db::query("DELETE FROM address_verifications WHERE user_id = $1 AND channel = $2")
            .bind(user)
            .bind(channel.as_str())
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        // Only the address the code was sent to: one changed since has its own code.
        let marked = db::query(
            "UPDATE user_addresses SET verified_at = $1 \
             WHERE user_id = $2 AND channel = $3 AND address = $4",
        )
        .bind(now)
        .bind(user)
        .bind(channel.as_str())
        .bind(address)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        if marked.rows_affected() == 0 {
            tx.commit().await.map_err(backend_error)?;
            return Ok(Checked::NoCode);
        }
        let event = tickethub_actors::ports::NewAuditEvent::new(
            format!("user:{user}"),
            "address.verified",
            format!("user:{user}"),
            serde_json::json!({ "channel": channel.as_str() }).to_string(),
        );
        Self::audit(&mut tx, &event, now).await?;
        tx.commit().await.map_err(backend_error)?;
        let id = tickethub_actors::domain::UserId(user);
        self.users().changed(id).await;
        let user = self
            .user_row(user)
            .await?
            .ok_or_else(|| tickethub_actors::ports::StoreError::NotFound(format!("user {user}")))?;
        Ok(Checked::Verified(Box::new(user)))
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::VerificationStore for SqlStore {
    async fn start_verification(
        &self,
        v: tickethub_actors::ports::NewVerification,
    ) -> Result<tickethub_actors::ports::Started, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Started;
        let day = chrono::Duration::days(1);
        let gap = chrono::Duration::from_std(v.limits.gap).unwrap_or(day);
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        // The user's row is held until the end: their requests take turns.
        db::query(&format!(
            "SELECT id FROM users WHERE id = $1 {}",
            self.kind().row_lock()
        ))
        .bind(v.user.0)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let current: Option<(Option<String>, Option<chrono::DateTime<chrono::Utc>>)> =
            db::query_as(
                "SELECT address, verified_at FROM user_addresses WHERE user_id = $1 AND channel = $2",
            )
            .bind(v.user.0)
            .bind(v.channel.as_str())
            .fetch_optional(&mut tx)
            .await
            .map_err(backend_error)?;
        match current {
            Some((Some(address), _)) if address != v.address => return Ok(Started::NoAddress),
            Some((Some(_), Some(_))) => return Ok(Started::Verified),
            Some((Some(_), None)) => {}
            _ => return Ok(Started::NoAddress),
        }
        let row: Option<(
            i64,
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
        )> = db::query_as(
            "SELECT sends, window_start, last_sent_at FROM address_verifications \
                 WHERE user_id = $1 AND channel = $2",
        )
        .bind(v.user.0)
        .bind(v.channel.as_str())
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let (mut sends, mut window_start) = (0, v.now);
        if let Some((sent, start, last)) = row {
            if last + gap > v.now {
                return Ok(Started::Later { at: last + gap });
            }
            if start + day > v.now {
                (sends, window_start) = (sent, start);
            }
            if sends >= v.limits.per_user_per_day {
                return Ok(Started::Later {
                    at: window_start + day,
                });
            }
        }
        // The address's count for the day, taken in one statement that holds its row:
        // accounts asking at once take turns, and past the cap nothing is sent.
        let hash = crate::store::verification::address_hash(v.channel, &v.address_key);
        let (to_address, since): (i64, chrono::DateTime<chrono::Utc>) = db::query_as(
            "INSERT INTO verification_counts (channel, address_hash, window_start, sends) \
             VALUES ($1, $2, $3, 1) ON CONFLICT (channel, address_hash) DO UPDATE SET \
             sends = CASE WHEN verification_counts.window_start <= $4 THEN 1 \
             ELSE verification_counts.sends + 1 END, \
             window_start = CASE WHEN verification_counts.window_start <= $4 THEN $3 \
             ELSE verification_counts.window_start END \
             RETURNING sends, window_start",
        )
        .bind(v.channel.as_str())
        .bind(&hash)
        .bind(v.now)
        .bind(v.now - day)
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        if to_address > v.limits.per_address_per_day {
            // Rolled back: the refusal counts for nothing.
            return Ok(Started::Later { at: since + day });
        }
        db::query(
            "INSERT INTO address_verifications (user_id, channel, address, code_hash, link_hash, \
             expires_at, attempts, sends, window_start, last_sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9) \
             ON CONFLICT (user_id, channel) DO UPDATE SET address = excluded.address, \
             code_hash = excluded.code_hash, link_hash = excluded.link_hash, \
             expires_at = excluded.expires_at, attempts = 0, sends = excluded.sends, \
             window_start = excluded.window_start, last_sent_at = excluded.last_sent_at",
        )
        .bind(v.user.0)
        .bind(v.channel.as_str())
        .bind(&v.address)
        .bind(&v.code_hash)
        .bind(&v.link_hash)
        .bind(v.expires_at)
        .bind(sends + 1)
        .bind(window_start)
        .bind(v.now)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        // Counts older than a day are worth nothing: swept as new ones come.
        db::query("DELETE FROM verification_counts WHERE window_start <= $1")
            .bind(v.now - day)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        Ok(Started::Send)
    }

    async fn check_verification(
        &self,
        user: tickethub_actors::domain::UserId,
        channel: tickethub_actors::routing::Channel,
        code_hash: &str,
        now: chrono::DateTime<chrono::Utc>,
        attempts: i64,
    ) -> Result<tickethub_actors::ports::Checked, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Checked;
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        // The try is spent before the code is compared, in one statement: guesses sent
        // at once each spend one, and none is compared past the last.
        let spent: Option<(String, String, i64)> = db::query_as(
            "UPDATE address_verifications SET attempts = attempts + 1 \
             WHERE user_id = $1 AND channel = $2 AND attempts < $3 AND expires_at > $4 \
             RETURNING address, code_hash, attempts",
        )
        .bind(user.0)
        .bind(channel.as_str())
        .bind(attempts)
        .bind(now)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some((address, stored, tried)) = spent else {
            return Ok(Checked::NoCode);
        };
        if !crate::auth::api_keys::same_hash(code_hash, &stored) {
            tx.commit().await.map_err(backend_error)?;
            return Ok(Checked::Wrong {
                left: (attempts - tried).max(0),
            });
        }
        self.spend_verification(tx, user.0, channel, &address, now)
            .await
    }

    async fn check_verification_link(
        &self,
        link_hash: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<tickethub_actors::ports::Checked, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Checked;
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let found: Option<(i64, String)> = db::query_as(&format!(
            "SELECT user_id, address FROM address_verifications \
             WHERE link_hash = $1 AND channel = 'email' AND expires_at > $2 {}",
            self.kind().row_lock()
        ))
        .bind(link_hash)
        .bind(now)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some((user, address)) = found else {
            return Ok(Checked::NoCode);
        };
        self.spend_verification(
            tx,
            user,
            tickethub_actors::routing::Channel::Email,
            &address,
            now,
        )
        .await
    }
}
