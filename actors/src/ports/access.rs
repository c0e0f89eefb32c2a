//! Access that is not a person's login: API keys for servers, and the records that make a
//! retried write (`Idempotency-Key`) answer as its first try did.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{IdempotencyMark, UserId};

/// A key to be stored: only its hash is kept.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    /// Its unique name, shown in timelines and traces.
    pub name: String,
    /// The public part of the key, for recognition and lookup.
    pub prefix: String,
    /// The SHA-256 of the whole key, hex.
    pub hash: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// The service user it acts as.
    pub user: UserId,
}

/// A stored key, without its hash.
#[derive(Clone, Debug)]
pub struct ApiKey {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The public part of the key.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// The service user it acts as.
    pub user: UserId,
    /// That user's name.
    pub username: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When a request last used it (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a key; a taken name is [`StoreError::Conflict`].
    async fn create_api_key(&self, key: NewApiKey, actor: &str) -> Result<ApiKey, StoreError>;
    /// Every key, revoked ones too, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    /// The key with this prefix, and its hash.
    async fn api_key_by_prefix(&self, prefix: &str)
        -> Result<Option<(ApiKey, String)>, StoreError>;
    /// Revokes the key of this name and cancels the sends it scheduled that are still pending,
    /// in one transaction, recorded on the audit trail as by `actor`; whether a key that was
    /// not yet revoked was.
    async fn revoke_api_key(
        &self,
        name: &str,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<bool, StoreError>;
    /// Records a use.
    async fn touch_api_key(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
}

/// What a claim of an idempotency key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// Nobody used the key yet (or its last use failed without effect): the request runs.
    Claimed,
    /// The key was used for another request.
    Mismatch,
    /// A request with the key is running (its lease has not ended).
    InProgress,
    /// The first request was answered: the answer to give again.
    Answered {
        /// Its status.
        status: u16,
        /// Its body.
        body: String,
    },
    /// The first request's effects were committed, but it was never answered (the hub died
    /// in between): what it committed.
    Committed {
        /// The ticket it wrote, or the number of notifications it sent.
        resource: Option<i64>,
    },
}

/// Idempotency records, kept for [`IDEMPOTENCY_TTL`] (the purge actor forgets older ones).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `mark` for the request `fingerprint` until `lease_until`, unless a live claim, an
    /// answer or a commit already holds it. A claim whose lease ended without a commit (its
    /// request died before committing anything) is taken over.
    async fn claim_idempotency(
        &self,
        mark: &IdempotencyMark,
        fingerprint: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<IdempotencyClaim, StoreError>;
    /// Records the answer to the claimed request.
    async fn answer_idempotency(
        &self,
        mark: &IdempotencyMark,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError>;
    /// Lets go of a claim whose request failed before committing anything, so that a retry
    /// runs again; `false` if the record stays because a try with the key committed.
    async fn release_idempotency(&self, mark: &IdempotencyMark) -> Result<bool, StoreError>;
    /// How far earlier tries with the key got through an announcement committed in parts.
    async fn idempotency_progress(&self, mark: &IdempotencyMark) -> Result<Progress, StoreError>;
}

/// How far the tries of an idempotent announcement got: a retry notifies only the recipients
/// after `after` (recipients are committed in id order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The highest recipient committed, if any part was.
    pub after: Option<crate::domain::UserId>,
    /// The notifications committed so far.
    pub committed: i64,
}

/// How long an idempotency record is kept: a retry within it answers as the first try did.
pub const IDEMPOTENCY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
