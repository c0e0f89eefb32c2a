//! Refresh-token families, rotated and ended, and the links of identity providers' subjects to
//! local users.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::UserId;

/// A refresh token as issued: recorded so that it can be rotated, and ended.
#[derive(Clone, Debug)]
pub struct RefreshRecord {
    /// The token's `jti`.
    pub jti: String,
    /// Whose it is.
    pub user: UserId,
    /// The login it descends from (the first token's `jti`).
    pub family: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// What trading a refresh token for its successor found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is used up, and its successor is recorded in its family.
    Rotated,
    /// The token had been traded already: someone replays it. Its whole family is revoked.
    Reused,
    /// Its family was ended (logout, or an earlier reuse).
    Revoked,
    /// No such token was issued (or its record was purged after it expired).
    Unknown,
}

/// Refresh-token families and identity-provider links.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Records a newly issued refresh token.
    async fn record_refresh(&self, token: RefreshRecord) -> Result<(), StoreError>;
    /// Trades refresh token `jti` for `next`, in `jti`'s family: atomically, so that of two
    /// concurrent trades of one token one rotates and the other counts as a reuse.
    async fn rotate_refresh(
        &self,
        jti: &str,
        next: RefreshRecord,
        now: DateTime<Utc>,
    ) -> Result<Rotation, StoreError>;
    /// Ends the family of refresh token `jti` (logout); `false` if no such token was issued.
    async fn revoke_refresh_family(
        &self,
        jti: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The local user an identity provider's subject was linked to, if any.
    async fn linked_user(&self, issuer: &str, subject: &str) -> Result<Option<UserId>, StoreError>;
    /// Links a provider's subject to a local user; [`StoreError::Conflict`] if the user is
    /// linked to another subject of that issuer already.
    async fn link_identity(
        &self,
        issuer: &str,
        subject: &str,
        user: UserId,
    ) -> Result<(), StoreError>;
}
