//! Invitations and join requests in SQL.

use chrono::{DateTime, Utc};
use tickethub_actors::domain::{ProjectId, Role, UserId};
use tickethub_actors::ports::{
    Invitation, InvitationStore, JoinRequest, NewInvitation, StoreError,
};

use crate::store::{backend_error, db, SqlStore};

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: i64,
    email: String,
    role: String,
    project_id: Option<i64>,
    project_name: Option<String>,
    created_by: i64,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    accepted_user_id: Option<i64>,
    revoked_at: Option<DateTime<Utc>>,
}

impl InvitationRow {
    fn into_invitation(self) -> Result<Invitation, StoreError> {
        Ok(Invitation {
            id: self.id,
            email: self.email,
            role: self
                .role
                .parse::<Role>()
                .map_err(|e| StoreError::Backend(format!("invitation {}: {e}", self.id).into()))?,
            project: self.project_id.map(ProjectId),
            project_name: self.project_name,
            created_by: UserId(self.created_by),
            created_at: self.created_at,
            expires_at: self.expires_at,
            accepted_at: self.accepted_at,
            accepted_user: self.accepted_user_id.map(UserId),
            revoked_at: self.revoked_at,
        })
    }
}

const INVITATION: &str = "SELECT i.id, i.email, i.role, i.project_id, p.name AS project_name, \
     i.created_by, i.created_at, i.expires_at, i.accepted_at, i.accepted_user_id, i.revoked_at \
     FROM invitations i LEFT JOIN projects p ON p.id = i.project_id";

#[derive(sqlx::FromRow)]
struct JoinRow {
    id: i64,
    project_id: i64,
    project_key: String,
    project_name: String,
    user_id: i64,
    username: String,
    user_name: String,
    message: String,
    created_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    decided_by: Option<i64>,
    approved: Option<bool>,
}

impl From<JoinRow> for JoinRequest {
    fn from(r: JoinRow) -> Self {
        JoinRequest {
            id: r.id,
            project: ProjectId(r.project_id),
            project_key: r.project_key,
            project_name: r.project_name,
            user: UserId(r.user_id),
            username: r.username,
            user_name: r.user_name,
            message: r.message,
            created_at: r.created_at,
            decided_at: r.decided_at,
            decided_by: r.decided_by.map(UserId),
            approved: r.approved,
        }
    }
}

const JOIN: &str = "SELECT j.id, j.project_id, p.key AS project_key, p.name AS project_name, \
     j.user_id, u.username, COALESCE(NULLIF(u.display_name, ''), u.username) AS user_name, \
     j.message, j.created_at, j.decided_at, j.decided_by, j.approved \
     FROM join_requests j JOIN projects p ON p.id = j.project_id JOIN users u ON u.id = j.user_id";

impl SqlStore {
    async fn invitation_where(
        &self,
        filter: &str,
        bind: impl Into<InvitationKey>,
    ) -> Result<Option<Invitation>, StoreError> {
        let sql = format!("{INVITATION} WHERE {filter}");
        let q = db::query_as::<InvitationRow>(&sql);
        let q = match bind.into() {
            InvitationKey::Id(id) => q.bind(id),
            InvitationKey::Token(t) => q.bind(t),
        };
        q.fetch_optional(self.writer())
            .await
            .map_err(backend_error)?
            .map(InvitationRow::into_invitation)
            .transpose()
    }

    async fn join_request_row(&self, id: i64) -> Result<Option<JoinRequest>, StoreError> {
        Ok(db::query_as::<JoinRow>(&format!("{JOIN} WHERE j.id = $1"))
            .bind(id)
            .fetch_optional(self.writer())
            .await
            .map_err(backend_error)?
            .map(Into::into))
    }
}

enum InvitationKey {
    Id(i64),
    Token(String),
}

impl From<i64> for InvitationKey {
    fn from(id: i64) -> Self {
        InvitationKey::Id(id)
    }
}

impl From<&str> for InvitationKey {
    fn from(t: &str) -> Self {
        InvitationKey::Token(t.to_owned())
    }
}

#[async_trait::async_trait]
impl InvitationStore for SqlStore {
    async fn add_invitation(
        &self,
        new: NewInvitation,
        at: DateTime<Utc>,
    ) -> Result<Invitation, StoreError> {
        let (id,): (i64,) = db::query_as(
            "INSERT INTO invitations (token_hash, email, role, project_id, created_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&new.token_hash)
        .bind(&new.email)
        .bind(new.role.as_str())
        .bind(new.project.map(|p| p.0))
        .bind(new.created_by.0)
        .bind(at)
        .bind(new.expires_at)
        .fetch_one(self.writer())
        .await
        .map_err(backend_error)?;
        self.invitation_where("i.id = $1", id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("invitation {id}")))
    }

    async fn invitations(&self, limit: i64) -> Result<Vec<Invitation>, StoreError> {
        db::query_as::<InvitationRow>(&format!("{INVITATION} ORDER BY i.id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(InvitationRow::into_invitation)
            .collect()
    }

    async fn invitation_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<Invitation>, StoreError> {
        self.invitation_where("i.token_hash = $1", token_hash).await
    }

    async fn revoke_invitation(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = db::query(
            "UPDATE invitations SET revoked_at = $1 \
             WHERE id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_invitation(
        &self,
        token_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Invitation>, StoreError> {
        let claimed: Option<(i64,)> = db::query_as(
            "UPDATE invitations SET accepted_at = $1 WHERE token_hash = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $1 RETURNING id",
        )
        .bind(at)
        .bind(token_hash)
        .fetch_optional(self.writer())
        .await
        .map_err(backend_error)?;
        match claimed {
            Some((id,)) => self.invitation_where("i.id = $1", id).await,
            None => Ok(None),
        }
    }

    async fn release_invitation(&self, id: i64) -> Result<(), StoreError> {
        db::query(
            "UPDATE invitations SET accepted_at = NULL WHERE id = $1 AND accepted_user_id IS NULL",
        )
        .bind(id)
        .execute(self.writer())
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn invitation_accepted(&self, id: i64, user: UserId) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        db::query("UPDATE invitations SET accepted_user_id = $1 WHERE id = $2")
            .bind(user.0)
            .bind(id)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        db::query(
            "INSERT INTO project_members (project_id, user_id) \
             SELECT project_id, $1 FROM invitations WHERE id = $2 AND project_id IS NOT NULL \
             ON CONFLICT DO NOTHING",
        )
        .bind(user.0)
        .bind(id)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        self.users().changed(user).await;
        Ok(())
    }

    async fn add_join_request(
        &self,
        project: ProjectId,
        user: UserId,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<JoinRequest, StoreError> {
        let (id,): (i64,) = db::query_as(
            "INSERT INTO join_requests (project_id, user_id, message, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(project.0)
        .bind(user.0)
        .bind(message)
        .bind(at)
        .fetch_one(self.writer())
        .await
        .map_err(backend_error)?;
        self.join_request_row(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("join request {id}")))
    }

    async fn join_requests(
        &self,
        user: Option<UserId>,
        waiting: bool,
        limit: i64,
    ) -> Result<Vec<JoinRequest>, StoreError> {
        let mut filter = vec!["1 = 1"];
        if user.is_some() {
            filter.push("j.user_id = $2");
        }
        if waiting {
            filter.push("j.decided_at IS NULL");
        }
        let sql = format!(
            "{JOIN} WHERE {} ORDER BY j.id DESC LIMIT $1",
            filter.join(" AND ")
        );
        let mut q = db::query_as::<JoinRow>(&sql).bind(limit);
        if let Some(user) = user {
            q = q.bind(user.0);
        }
        Ok(q.fetch_all(self.reader())
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn decide_join_request(
        &self,
        id: i64,
        approve: bool,
        by: UserId,
        at: DateTime<Utc>,
    ) -> Result<Option<JoinRequest>, StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let decided: Option<(i64, i64)> = db::query_as(
            "UPDATE join_requests SET decided_at = $1, decided_by = $2, approved = $3 \
             WHERE id = $4 AND decided_at IS NULL RETURNING project_id, user_id",
        )
        .bind(at)
        .bind(by.0)
        .bind(approve)
        .bind(id)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let Some((project, user)) = decided else {
            let known: Option<(i64,)> = db::query_as("SELECT id FROM join_requests WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut tx)
                .await
                .map_err(backend_error)?;
            return match known {
                Some(_) => Err(StoreError::Conflict(format!(
                    "join request {id} was decided already"
                ))),
                None => Ok(None),
            };
        };
        if approve {
            db::query(
                "INSERT INTO project_members (project_id, user_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(project)
            .bind(user)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)?;
        self.users().changed(UserId(user)).await;
        self.join_request_row(id).await
    }
}
