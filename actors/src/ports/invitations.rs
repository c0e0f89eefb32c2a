//! Getting people into projects without the command line: invitations an admin sends (a link
//! that makes an account with a role, in a project) and join requests a signed-up person makes
//! (an admin approves or declines).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{ProjectId, Role, UserId};

/// An invitation to make an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// Its id.
    pub id: i64,
    /// Whom it was sent to.
    pub email: String,
    /// The account's role.
    pub role: Role,
    /// The project the account joins, if any.
    pub project: Option<ProjectId>,
    /// That project's name.
    pub project_name: Option<String>,
    /// The admin who sent it.
    pub created_by: UserId,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Until when it may be used.
    pub expires_at: DateTime<Utc>,
    /// When it was used.
    pub accepted_at: Option<DateTime<Utc>>,
    /// The account it made.
    pub accepted_user: Option<UserId>,
    /// When an admin took it back.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Invitation {
    /// `pending`, `accepted`, `revoked` or `expired`, at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.accepted_at.is_some() {
            "accepted"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "pending"
        }
    }
}

/// An invitation to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvitation {
    /// The SHA-256 (hex) of its link's token; the token itself is never stored.
    pub token_hash: String,
    /// Whom it is sent to.
    pub email: String,
    /// The account's role.
    pub role: Role,
    /// The project the account joins.
    pub project: Option<ProjectId>,
    /// The admin who sends it.
    pub created_by: UserId,
    /// Until when it may be used.
    pub expires_at: DateTime<Utc>,
}

/// A person's request to join a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Its id.
    pub id: i64,
    /// The project.
    pub project: ProjectId,
    /// Its key.
    pub project_key: String,
    /// Its name.
    pub project_name: String,
    /// Who asks.
    pub user: UserId,
    /// Their username.
    pub username: String,
    /// Their display name.
    pub user_name: String,
    /// What they wrote.
    pub message: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When an admin decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// Which admin.
    pub decided_by: Option<UserId>,
    /// Approved (`Some(true)`), declined (`Some(false)`), or waiting.
    pub approved: Option<bool>,
}

/// Invitations and join requests, stored.
#[async_trait]
pub trait InvitationStore: Send + Sync {
    /// Stores an invitation.
    async fn add_invitation(
        &self,
        new: NewInvitation,
        at: DateTime<Utc>,
    ) -> Result<Invitation, StoreError>;
    /// The newest invitations, at most `limit`.
    async fn invitations(&self, limit: i64) -> Result<Vec<Invitation>, StoreError>;
    /// The invitation whose token hashes to `token_hash`.
    async fn invitation_by_token(&self, token_hash: &str)
        -> Result<Option<Invitation>, StoreError>;
    /// Takes back a pending invitation; whether one was.
    async fn revoke_invitation(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Uses up the pending, unexpired invitation whose token hashes to `token_hash` (one
    /// caller wins a race), or `None`.
    async fn claim_invitation(
        &self,
        token_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Invitation>, StoreError>;
    /// Makes a claimed invitation pending again (the account could not be made).
    async fn release_invitation(&self, id: i64) -> Result<(), StoreError>;
    /// Records the account a claimed invitation made, and adds it to the invitation's project.
    async fn invitation_accepted(&self, id: i64, user: UserId) -> Result<(), StoreError>;
    /// Stores a request of `user` to join `project`; `Conflict` when one is waiting already.
    async fn add_join_request(
        &self,
        project: ProjectId,
        user: UserId,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<JoinRequest, StoreError>;
    /// Join requests, newest first, at most `limit`: of `user` only, if given; waiting ones
    /// only, if `waiting`.
    async fn join_requests(
        &self,
        user: Option<UserId>,
        waiting: bool,
        limit: i64,
    ) -> Result<Vec<JoinRequest>, StoreError>;
    /// Approves (adding the person to the project, in the same transaction) or declines a
    /// waiting request; `None` when there is no such request, `Conflict` when it was decided
    /// already.
    async fn decide_join_request(
        &self,
        id: i64,
        approve: bool,
        by: UserId,
        at: DateTime<Utc>,
    ) -> Result<Option<JoinRequest>, StoreError>;
}
