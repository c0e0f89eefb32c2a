//! API keys and idempotency records in SQL.

use crate::store::{backend_error, db, SqlStore};

/// An API key row, with its service user's name.
#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: i64,
    name: String,
    prefix: String,
    key_hash: String,
    scopes: String,
    user_id: i64,
    username: String,
    created_at: chrono::DateTime<chrono::Utc>,
    last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl ApiKeyRow {
    pub(crate) fn into_key(self) -> (tickethub_actors::ports::ApiKey, String) {
        (
            tickethub_actors::ports::ApiKey {
                id: self.id,
                name: self.name,
                prefix: self.prefix,
                scopes: self
                    .scopes
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                user: tickethub_actors::domain::UserId(self.user_id),
                username: self.username,
                created_at: self.created_at,
                last_used_at: self.last_used_at,
                revoked_at: self.revoked_at,
            },
            self.key_hash,
        )
    }
}

/// The columns of [`ApiKeyRow`], from `api_keys k JOIN users u`.
pub(crate) const API_KEY_COLUMNS: &str =
    "k.id, k.name, k.prefix, k.key_hash, k.scopes, k.user_id, \
     u.username, k.created_at, k.last_used_at, k.revoked_at";

/// An idempotency record as a claim reads it.
#[derive(sqlx::FromRow)]
pub(crate) struct IdempotencyRow {
    pub(crate) fingerprint: String,
    pub(crate) lease_until: chrono::DateTime<chrono::Utc>,
    pub(crate) committed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub(crate) resource: Option<i64>,
    pub(crate) status: Option<i32>,
    pub(crate) response: Option<String>,
    pub(crate) created_at: chrono::DateTime<chrono::Utc>,
    /// The time the row was read at, by the clock its leases are measured by.
    pub(crate) now: chrono::DateTime<chrono::Utc>,
}

impl SqlStore {
    /// Marks an idempotent request committed, inside the transaction of its effects;
    /// a request whose key another try already committed is refused (`Conflict`), so
    /// that its transaction rolls back.
    pub(crate) async fn mark_committed(
        tx: &mut db::Tx,
        mark: &tickethub_actors::ports::IdempotencyMark,
        resource: i64,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        let done = db::query(
            "UPDATE idempotency_keys SET committed_at = $1, resource = $2 \
             WHERE caller = $3 AND idem_key = $4 AND committed_at IS NULL",
        )
        .bind(chrono::Utc::now())
        .bind(resource)
        .bind(&mark.caller)
        .bind(&mark.key)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Err(tickethub_actors::ports::StoreError::Conflict(
                "another request with this Idempotency-Key was committed".into(),
            ));
        }
        Ok(())
    }

    /// Records a part of an announcement committed with an idempotency key, in the
    /// part's transaction: the highest recipient it reached and how many notifications
    /// it added; `done` marks the whole committed.
    pub(crate) async fn mark_progress(
        tx: &mut db::Tx,
        mark: &tickethub_actors::ports::IdempotencyMark,
        reached: i64,
        count: i64,
        done: bool,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        let now = chrono::Utc::now();
        let marked = db::query(
            "UPDATE idempotency_keys SET progress = $1, resource = COALESCE(resource, 0) + $2, \
             committed_at = $3 WHERE caller = $4 AND idem_key = $5 AND committed_at IS NULL",
        )
        .bind(reached)
        .bind(count)
        .bind(done.then_some(now))
        .bind(&mark.caller)
        .bind(&mark.key)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        if marked.rows_affected() == 0 {
            return Err(tickethub_actors::ports::StoreError::Conflict(
                "another request with this Idempotency-Key was committed".into(),
            ));
        }
        Ok(())
    }

    /// Whether an idempotent request was committed (after a lost answer to `COMMIT`).
    pub(crate) async fn is_committed(
        pool: &db::Pool,
        mark: &tickethub_actors::ports::IdempotencyMark,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let row: Option<(Option<chrono::DateTime<chrono::Utc>>,)> = db::query_as(
            "SELECT committed_at FROM idempotency_keys WHERE caller = $1 AND idem_key = $2",
        )
        .bind(&mark.caller)
        .bind(&mark.key)
        .fetch_optional(pool)
        .await
        .map_err(backend_error)?;
        Ok(matches!(row, Some((Some(_),))))
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::ApiKeyStore for SqlStore {
    async fn create_api_key(
        &self,
        key: tickethub_actors::ports::NewApiKey,
        actor: &str,
    ) -> Result<tickethub_actors::ports::ApiKey, tickethub_actors::ports::StoreError> {
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let (id,): (i64,) = db::query_as(
            "INSERT INTO api_keys (name, prefix, key_hash, scopes, user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(key.scopes.join(","))
        .bind(key.user.0)
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        let event = tickethub_actors::ports::NewAuditEvent::new(
            actor,
            "api_key.created",
            format!("api_key:{id}"),
            serde_json::json!({ "name": key.name, "scopes": key.scopes, "user": key.user.0 })
                .to_string(),
        );
        Self::audit(&mut tx, &event, now).await?;
        tx.commit().await.map_err(backend_error)?;
        let sql = format!(
            "SELECT {} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1",
            crate::store::access::API_KEY_COLUMNS
        );
        let row: crate::store::access::ApiKeyRow = db::query_as(&sql)
            .bind(id)
            .fetch_one(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(row.into_key().0)
    }

    async fn api_keys(
        &self,
    ) -> Result<Vec<tickethub_actors::ports::ApiKey>, tickethub_actors::ports::StoreError> {
        let sql = format!(
            "SELECT {} FROM api_keys k JOIN users u ON u.id = k.user_id ORDER BY k.id",
            crate::store::access::API_KEY_COLUMNS
        );
        let rows: Vec<crate::store::access::ApiKeyRow> = db::query_as(&sql)
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        Ok(rows.into_iter().map(|r| r.into_key().0).collect())
    }

    async fn api_key_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<
        Option<(tickethub_actors::ports::ApiKey, String)>,
        tickethub_actors::ports::StoreError,
    > {
        let sql = format!(
            "SELECT {} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = $1",
            crate::store::access::API_KEY_COLUMNS
        );
        let row: Option<crate::store::access::ApiKeyRow> = db::query_as(&sql)
            .bind(prefix)
            .fetch_optional(self.reader())
            .await
            .map_err(backend_error)?;
        Ok(row.map(crate::store::access::ApiKeyRow::into_key))
    }

    async fn revoke_api_key(
        &self,
        name: &str,
        at: chrono::DateTime<chrono::Utc>,
        actor: &str,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let revoked: Option<(i64,)> = db::query_as(
            "UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL \
             RETURNING id",
        )
        .bind(at)
        .bind(name)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some((id,)) = revoked else {
            return Ok(false);
        };
        let why = format!("the API key `{name}` that scheduled it was revoked");
        let cancelled = Self::cancel_owned_sends(
            &mut tx,
            crate::store::schedule::Owned::Key(id),
            &why,
            actor,
            at,
        )
        .await?;
        let event = tickethub_actors::ports::NewAuditEvent::new(
            actor,
            "api_key.revoked",
            format!("api_key:{id}"),
            serde_json::json!({ "name": name, "cancelled_sends": cancelled }).to_string(),
        );
        Self::audit(&mut tx, &event, at).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }

    async fn touch_api_key(
        &self,
        id: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::IdempotencyStore for SqlStore {
    async fn claim_idempotency(
        &self,
        mark: &tickethub_actors::ports::IdempotencyMark,
        fingerprint: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<tickethub_actors::ports::IdempotencyClaim, tickethub_actors::ports::StoreError>
    {
        use tickethub_actors::ports::IdempotencyClaim;
        // Leases are written and compared by the database's clock on PostgreSQL
        // ([`db::Kind::now`]): a node whose clock runs ahead must not take over a lease that
        // has not run out, nor one behind write a lease that has.
        let kind = self.kind();
        let inserted = db::query(&format!(
            "INSERT INTO idempotency_keys (caller, idem_key, fingerprint, lease_until, created_at) \
             VALUES ($1, $2, $3, {}, {}) ON CONFLICT (caller, idem_key) DO NOTHING",
            kind.lease_until("$4", "$5"),
            kind.now("$5"),
        ))
        .bind(&mark.caller)
        .bind(&mark.key)
        .bind(fingerprint)
        .bind(lease_until)
        .bind(now)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        if inserted.rows_affected() == 1 {
            return Ok(IdempotencyClaim::Claimed);
        }
        let row: Option<crate::store::access::IdempotencyRow> = db::query_as(&format!(
            "SELECT fingerprint, lease_until, committed_at, resource, status, response, created_at, \
             {} AS now FROM idempotency_keys WHERE caller = $1 AND idem_key = $2",
            kind.now("$3"),
        ))
        .bind(&mark.caller)
        .bind(&mark.key)
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(backend_error)?;
        let Some(row) = row else {
            // Purged in between: the key is free again.
            return Ok(IdempotencyClaim::InProgress);
        };
        let ttl =
            chrono::Duration::from_std(tickethub_actors::ports::IDEMPOTENCY_TTL).expect("a day");
        let expired = row.created_at < row.now - ttl;
        if !expired {
            if row.fingerprint != fingerprint {
                return Ok(IdempotencyClaim::Mismatch);
            }
            if let (Some(status), Some(body)) = (row.status, row.response) {
                return Ok(IdempotencyClaim::Answered {
                    status: status as u16,
                    body,
                });
            }
            if row.committed_at.is_some() {
                return Ok(IdempotencyClaim::Committed {
                    resource: row.resource,
                });
            }
            if row.lease_until > row.now {
                return Ok(IdempotencyClaim::InProgress);
            }
        }
        // Expired, or a claim whose request died before committing: take it over,
        // unless another retry just did.
        let taken = db::query(&format!(
            // A try that committed part of an announcement keeps its progress for
            // the next (unless the record expired): it resumes after it.
            "UPDATE idempotency_keys SET fingerprint = $1, lease_until = {}, created_at = {}, \
             committed_at = NULL, status = NULL, response = NULL, \
             resource = CASE WHEN progress IS NULL OR created_at < $8 THEN NULL ELSE resource END, \
             progress = CASE WHEN created_at < $8 THEN NULL ELSE progress END \
             WHERE caller = $4 AND idem_key = $5 AND lease_until = $6 AND created_at = $7 \
             AND (committed_at IS NULL OR created_at < $8)",
            kind.lease_until("$2", "$3"),
            kind.now("$3"),
        ))
        .bind(fingerprint)
        .bind(lease_until)
        .bind(now)
        .bind(&mark.caller)
        .bind(&mark.key)
        .bind(row.lease_until)
        .bind(row.created_at)
        .bind(row.now - ttl)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(if taken.rows_affected() == 1 {
            IdempotencyClaim::Claimed
        } else {
            IdempotencyClaim::InProgress
        })
    }

    async fn answer_idempotency(
        &self,
        mark: &tickethub_actors::ports::IdempotencyMark,
        status: u16,
        body: &str,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        if tickethub_actors::ports::StoreFaults::take(&self.faults.failed_idempotent_answers) {
            return Err(tickethub_actors::ports::StoreError::Backend(
                "injected: the answer was not recorded".into(),
            ));
        }
        db::query(
            "UPDATE idempotency_keys SET status = $1, response = $2 \
             WHERE caller = $3 AND idem_key = $4",
        )
        .bind(i32::from(status))
        .bind(body)
        .bind(&mark.caller)
        .bind(&mark.key)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn release_idempotency(
        &self,
        mark: &tickethub_actors::ports::IdempotencyMark,
    ) -> Result<bool, tickethub_actors::ports::StoreError> {
        db::query(
            "DELETE FROM idempotency_keys WHERE caller = $1 AND idem_key = $2 \
             AND committed_at IS NULL AND status IS NULL AND progress IS NULL",
        )
        .bind(&mark.caller)
        .bind(&mark.key)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        // A try that committed part of an announcement: the record stays, with its
        // progress, and its lease ends now so that a retry resumes at once.
        db::query(
            "UPDATE idempotency_keys SET lease_until = $1 WHERE caller = $2 AND idem_key = $3 \
             AND committed_at IS NULL AND progress IS NOT NULL",
        )
        .bind(chrono::Utc::now())
        .bind(&mark.caller)
        .bind(&mark.key)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(!Self::is_committed(self.writer(), mark).await?)
    }

    async fn idempotency_progress(
        &self,
        mark: &tickethub_actors::ports::IdempotencyMark,
    ) -> Result<tickethub_actors::ports::Progress, tickethub_actors::ports::StoreError> {
        let row: Option<(Option<i64>, Option<i64>)> = db::query_as(
            "SELECT progress, resource FROM idempotency_keys WHERE caller = $1 AND idem_key = $2",
        )
        .bind(&mark.caller)
        .bind(&mark.key)
        .fetch_optional(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(match row {
            Some((Some(after), count)) => tickethub_actors::ports::Progress {
                after: Some(tickethub_actors::domain::UserId(after)),
                committed: count.unwrap_or(0),
            },
            _ => tickethub_actors::ports::Progress::default(),
        })
    }
}
