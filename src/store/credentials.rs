//! Credentials in SQL: refresh-token families and identity-provider links.

use crate::store::{backend_error, db, SqlStore};

#[async_trait::async_trait]
impl tickethub_actors::ports::CredentialStore for SqlStore {
    async fn record_refresh(
        &self,
        token: tickethub_actors::ports::RefreshRecord,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query(
            "INSERT INTO refresh_tokens (jti, user_id, family, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.jti)
        .bind(token.user.0)
        .bind(&token.family)
        .bind(token.expires_at)
        .bind(chrono::Utc::now())
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn rotate_refresh(
        &self,
        jti: &str,
        next: tickethub_actors::ports::RefreshRecord,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<tickethub_actors::ports::Rotation, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::Rotation;
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        // Only one trade of a token can find it unused: the loser of a race, like a
        // replay, falls through to the reuse check below.
        let used: Option<(String,)> = db::query_as(
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE jti = $2 AND user_id = $3 AND used_at IS NULL AND revoked_at IS NULL \
             RETURNING family",
        )
        .bind(now)
        .bind(jti)
        .bind(next.user.0)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        if let Some((family,)) = used {
            db::query(
                "INSERT INTO refresh_tokens (jti, user_id, family, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&next.jti)
            .bind(next.user.0)
            .bind(&family)
            .bind(next.expires_at)
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
            tx.commit().await.map_err(backend_error)?;
            return Ok(Rotation::Rotated);
        }
        let found: Option<(String, bool)> = db::query_as(
            "SELECT family, revoked_at IS NOT NULL FROM refresh_tokens \
             WHERE jti = $1 AND user_id = $2",
        )
        .bind(jti)
        .bind(next.user.0)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let outcome = match found {
            None => Rotation::Unknown,
            Some((_, true)) => Rotation::Revoked,
            Some((family, false)) => {
                // Traded once already and shown again: whoever holds the family's
                // newest token may be the thief. End them all.
                db::query(
                    "UPDATE refresh_tokens SET revoked_at = $1 \
                     WHERE family = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(&family)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
                Rotation::Reused
            }
        };
        tx.commit().await.map_err(backend_error)?;
        Ok(outcome)
    }

    async fn revoke_refresh_family(
        &self,
        jti: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let found: Option<(String,)> =
            db::query_as("SELECT family FROM refresh_tokens WHERE jti = $1")
                .bind(jti)
                .fetch_optional(self.writer())
                .await
                .map_err(backend_error)?;
        let Some((family,)) = found else {
            return Ok(false);
        };
        db::query(
            "UPDATE refresh_tokens SET revoked_at = $1 \
             WHERE family = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&family)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(true)
    }

    async fn linked_user(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<tickethub_actors::domain::UserId>, tickethub_actors::ports::StoreError> {
        let found: Option<(i64,)> =
            db::query_as("SELECT user_id FROM identity_links WHERE issuer = $1 AND subject = $2")
                .bind(issuer)
                .bind(subject)
                .fetch_optional(self.reader())
                .await
                .map_err(backend_error)?;
        Ok(found.map(|(id,)| tickethub_actors::domain::UserId(id)))
    }

    async fn link_identity(
        &self,
        issuer: &str,
        subject: &str,
        user: tickethub_actors::domain::UserId,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query(
            "INSERT INTO identity_links (issuer, subject, user_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(issuer)
        .bind(subject)
        .bind(user.0)
        .bind(chrono::Utc::now())
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(())
    }
}
