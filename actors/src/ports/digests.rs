//! Digests: one email a person asked for, hourly or daily in their time zone, summing up
//! their unread notifications that reached them on no other channel. A row per person holds
//! the next one (when it is due, what it covers); every node's poster claims due rows for a
//! lease, sends, and moves the row on in one write.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::UserId;
use crate::notification::Notification;

/// A digest that is due, claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDigest {
    /// Whose.
    pub user: UserId,
    /// When it was due.
    pub due_at: DateTime<Utc>,
    /// It covers the notifications after this, up to `due_at`.
    pub since: DateTime<Utc>,
}

/// Digests, stored.
#[async_trait]
pub trait DigestStore: Send + Sync {
    /// Claims up to `limit` digests due at `now` (or whose claim ran out) for `node`, until
    /// `lease_until`.
    async fn claim_digests(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueDigest>, StoreError>;
    /// A person's next digest, claimed or not; `None` without one.
    async fn next_digest(&self, user: UserId) -> Result<Option<DueDigest>, StoreError>;
    /// What a digest of `user` covering `(since, until]` sums up: their notifications still
    /// unread and not deleted, about a ticket or not, that no channel sent them (the in-app
    /// inbox aside; a deployment's webhook is not theirs), oldest first, at most `limit`.
    async fn digest_contents(
        &self,
        user: UserId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Moves a digest `node` holds on: it now covers from `until`, and is next due at `next`;
    /// `sent` notifications went out in it (none: nothing was sent). `false` if the claim was
    /// lost.
    async fn digest_done(
        &self,
        user: UserId,
        node: &str,
        until: DateTime<Utc>,
        next: DateTime<Utc>,
        sent: i64,
    ) -> Result<bool, StoreError>;
}
