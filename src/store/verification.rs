//! Address verification in SQL: the pending code per user and channel, and the messages sent
//! per address.

use tickethub_actors::routing::Channel;

/// The user's columns for a channel's address: the address, and when it was verified.
pub(crate) fn columns(channel: Channel) -> Option<(&'static str, &'static str)> {
    match channel {
        Channel::Email => Some(("email", "email_verified_at")),
        Channel::Whatsapp => Some(("whatsapp_number", "whatsapp_verified_at")),
        Channel::Sms => Some(("phone_number", "phone_verified_at")),
        _ => None,
    }
}

/// How an address is kept in the message log: its SHA-256, hex.
pub(crate) fn address_hash(channel: Channel, address: &str) -> String {
    crate::auth::api_keys::hash(&format!("{}:{address}", channel.as_str()))
}

/// Implements `VerificationStore` for a store type.
macro_rules! impl_verification_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl tickethub_actors::ports::VerificationStore for $store {
            async fn start_verification(
                &self,
                v: tickethub_actors::ports::NewVerification,
            ) -> Result<tickethub_actors::ports::Started, tickethub_actors::ports::StoreError> {
                use tickethub_actors::ports::{Started, StoreError};
                let (column, verified) = $crate::store::verification::columns(v.channel)
                    .ok_or_else(|| StoreError::NotFound(format!("no addresses on {}", v.channel.as_str())))?;
                let day = chrono::Duration::days(1);
                let gap = chrono::Duration::from_std(v.limits.gap).unwrap_or(day);
                let mut tx = self.writer().begin().await.map_err($crate::store::backend_error)?;
                let current: Option<(Option<String>, Option<chrono::DateTime<chrono::Utc>>)> =
                    sqlx::query_as(&format!("SELECT {column}, {verified} FROM users WHERE id = $1"))
                        .bind(v.user.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err($crate::store::backend_error)?;
                match current {
                    Some((Some(address), _)) if address != v.address => return Ok(Started::NoAddress),
                    Some((Some(_), Some(_))) => return Ok(Started::Verified),
                    Some((Some(_), None)) => {}
                    _ => return Ok(Started::NoAddress),
                }
                let row: Option<(i64, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
                    sqlx::query_as(
                        "SELECT sends, window_start, last_sent_at FROM address_verifications \
                         WHERE user_id = $1 AND channel = $2",
                    )
                    .bind(v.user.0)
                    .bind(v.channel.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::store::backend_error)?;
                let (mut sends, mut window_start) = (0, v.now);
                if let Some((sent, start, last)) = row {
                    if last + gap > v.now {
                        return Ok(Started::Later { at: last + gap });
                    }
                    if start + day > v.now {
                        (sends, window_start) = (sent, start);
                    }
                    if sends >= v.limits.per_user_per_day {
                        return Ok(Started::Later { at: window_start + day });
                    }
                }
                let hash = $crate::store::verification::address_hash(v.channel, &v.address);
                let (to_address, first): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
                    "SELECT COUNT(*), MIN(sent_at) FROM verification_messages \
                     WHERE channel = $1 AND address_hash = $2 AND sent_at > $3",
                )
                .bind(v.channel.as_str())
                .bind(&hash)
                .bind(v.now - day)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                if to_address >= v.limits.per_address_per_day {
                    return Ok(Started::Later {
                        at: first.map_or(v.now + day, |t| t + day),
                    });
                }
                sqlx::query(
                    "INSERT INTO address_verifications (user_id, channel, address, code_hash, \
                     expires_at, attempts, sends, window_start, last_sent_at) \
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8) \
                     ON CONFLICT (user_id, channel) DO UPDATE SET address = excluded.address, \
                     code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = 0, \
                     sends = excluded.sends, window_start = excluded.window_start, \
                     last_sent_at = excluded.last_sent_at",
                )
                .bind(v.user.0)
                .bind(v.channel.as_str())
                .bind(&v.address)
                .bind(&v.code_hash)
                .bind(v.expires_at)
                .bind(sends + 1)
                .bind(window_start)
                .bind(v.now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                // The log keeps a day: older messages of this address go as new ones come.
                sqlx::query(
                    "DELETE FROM verification_messages WHERE channel = $1 AND address_hash = $2 AND sent_at <= $3",
                )
                .bind(v.channel.as_str())
                .bind(&hash)
                .bind(v.now - day)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                sqlx::query(
                    "INSERT INTO verification_messages (channel, address_hash, sent_at) VALUES ($1, $2, $3)",
                )
                .bind(v.channel.as_str())
                .bind(&hash)
                .bind(v.now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                tx.commit().await.map_err($crate::store::backend_error)?;
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
                let Some((column, verified)) = $crate::store::verification::columns(channel) else {
                    return Ok(Checked::NoCode);
                };
                let mut tx = self.writer().begin().await.map_err($crate::store::backend_error)?;
                let row: Option<(String, String, chrono::DateTime<chrono::Utc>, i64)> = sqlx::query_as(
                    "SELECT address, code_hash, expires_at, attempts FROM address_verifications \
                     WHERE user_id = $1 AND channel = $2",
                )
                .bind(user.0)
                .bind(channel.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                let Some((address, stored, expires_at, tried)) = row else {
                    return Ok(Checked::NoCode);
                };
                if expires_at <= now || tried >= attempts {
                    return Ok(Checked::NoCode);
                }
                if !$crate::auth::api_keys::same_hash(code_hash, &stored) {
                    sqlx::query(
                        "UPDATE address_verifications SET attempts = attempts + 1 \
                         WHERE user_id = $1 AND channel = $2",
                    )
                    .bind(user.0)
                    .bind(channel.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::backend_error)?;
                    tx.commit().await.map_err($crate::store::backend_error)?;
                    return Ok(Checked::Wrong {
                        left: (attempts - tried - 1).max(0),
                    });
                }
                sqlx::query("DELETE FROM address_verifications WHERE user_id = $1 AND channel = $2")
                    .bind(user.0)
                    .bind(channel.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::backend_error)?;
                // Only the address the code was sent to: one changed since has its own code.
                let marked = sqlx::query(&format!(
                    "UPDATE users SET {verified} = $1 WHERE id = $2 AND {column} = $3"
                ))
                .bind(now)
                .bind(user.0)
                .bind(&address)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                if marked.rows_affected() == 0 {
                    tx.commit().await.map_err($crate::store::backend_error)?;
                    return Ok(Checked::NoCode);
                }
                let event = tickethub_actors::ports::NewAuditEvent::new(
                    format!("user:{}", user.0),
                    "address.verified",
                    format!("user:{}", user.0),
                    serde_json::json!({ "channel": channel.as_str() }).to_string(),
                );
                Self::audit(&mut tx, &event, now).await?;
                tx.commit().await.map_err($crate::store::backend_error)?;
                self.users().changed(user).await;
                let sql = format!("SELECT {} FROM users WHERE id = $1", $crate::store::USER_COLUMNS);
                let user = sqlx::query_as::<_, $crate::store::UserRow>(&sql)
                    .bind(user.0)
                    .fetch_one(self.writer())
                    .await
                    .map_err($crate::store::backend_error)?
                    .into_user()?;
                Ok(Checked::Verified(Box::new(user)))
            }
        }
    };
}
pub(crate) use impl_verification_store;
