//! Projects in SQL: projects and their members.

use crate::store::{backend_error, db, SqlStore};

#[async_trait::async_trait]
impl tickethub_actors::ports::ProjectStore for SqlStore {
    async fn create_project(
        &self,
        key: &str,
        name: &str,
        members: &[tickethub_actors::domain::UserId],
    ) -> Result<tickethub_actors::domain::Project, tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let row = db::query_as::<crate::store::ProjectRow>(
            "INSERT INTO projects (key, name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, key, name, created_at",
        )
        .bind(key)
        .bind(name)
        .bind(chrono::Utc::now())
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        let mut ids: Vec<_> = members.to_vec();
        ids.sort();
        ids.dedup();
        for m in &ids {
            db::query("INSERT INTO project_members (project_id, user_id) VALUES ($1, $2)")
                .bind(row.id)
                .bind(m.0)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(row.into_project(ids))
    }

    async fn project_by_id(
        &self,
        id: tickethub_actors::domain::ProjectId,
    ) -> Result<Option<tickethub_actors::domain::Project>, tickethub_actors::ports::StoreError>
    {
        let row = db::query_as::<crate::store::ProjectRow>(
            "SELECT id, key, name, created_at FROM projects WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        self.with_members(row).await
    }

    async fn membership(
        &self,
        id: tickethub_actors::domain::ProjectId,
        user: tickethub_actors::domain::UserId,
    ) -> Result<Option<bool>, tickethub_actors::ports::StoreError> {
        if self.users().is_member(user, id) {
            return Ok(Some(true));
        }
        let generation = self.users().generation();
        let row: Option<(i64, i64)> = db::query_as(
            "SELECT p.id, (SELECT COUNT(*) FROM project_members m \
             WHERE m.project_id = p.id AND m.user_id = $2) \
             FROM projects p WHERE p.id = $1",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        let member = row.map(|(_, n)| n > 0);
        if member == Some(true) {
            self.users().fill_member(generation, user, id);
        }
        Ok(member)
    }

    async fn project_by_key(
        &self,
        key: &str,
    ) -> Result<Option<tickethub_actors::domain::Project>, tickethub_actors::ports::StoreError>
    {
        let row = db::query_as::<crate::store::ProjectRow>(
            "SELECT id, key, name, created_at FROM projects WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(self.reader())
        .await
        .map_err(backend_error)?;
        self.with_members(row).await
    }

    async fn list_projects(
        &self,
        member: Option<tickethub_actors::domain::UserId>,
    ) -> Result<Vec<tickethub_actors::domain::Project>, tickethub_actors::ports::StoreError> {
        let rows = match member {
            None => {
                db::query_as::<crate::store::ProjectRow>(
                    "SELECT id, key, name, created_at FROM projects ORDER BY id",
                )
                .fetch_all(self.reader())
                .await
            }
            Some(user) => {
                db::query_as::<crate::store::ProjectRow>(
                    "SELECT p.id, p.key, p.name, p.created_at FROM projects p \
                 JOIN project_members m ON m.project_id = p.id \
                 WHERE m.user_id = $1 ORDER BY p.id",
                )
                .bind(user.0)
                .fetch_all(self.reader())
                .await
            }
        }
        .map_err(backend_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let members = self.members_of(row.id).await?;
            out.push(row.into_project(members));
        }
        Ok(out)
    }

    async fn add_members(
        &self,
        project: tickethub_actors::domain::ProjectId,
        members: &[tickethub_actors::domain::UserId],
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        self.for_each_member(
            "INSERT INTO project_members (project_id, user_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            project,
            members,
        )
        .await
    }

    async fn remove_members(
        &self,
        project: tickethub_actors::domain::ProjectId,
        members: &[tickethub_actors::domain::UserId],
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        self.for_each_member(
            "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2",
            project,
            members,
        )
        .await?;
        // No node may go on treating them as members.
        for user in members {
            self.users().changed(*user).await;
        }
        Ok(())
    }

    async fn rename_project(
        &self,
        project: tickethub_actors::domain::ProjectId,
        name: &str,
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        db::query("UPDATE projects SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(project.0)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

impl SqlStore {
    /// Runs `sql` (`$1` the project, `$2` a member) for each member, in one transaction.
    async fn for_each_member(
        &self,
        sql: &'static str,
        project: tickethub_actors::domain::ProjectId,
        members: &[tickethub_actors::domain::UserId],
    ) -> Result<(), tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        for m in members {
            db::query(sql)
                .bind(project.0)
                .bind(m.0)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(())
    }

    /// A project row with its members, if there is a row.
    async fn with_members(
        &self,
        row: Option<crate::store::ProjectRow>,
    ) -> Result<Option<tickethub_actors::domain::Project>, tickethub_actors::ports::StoreError>
    {
        match row {
            Some(row) => {
                let members = self.members_of(row.id).await?;
                Ok(Some(row.into_project(members)))
            }
            None => Ok(None),
        }
    }

    async fn members_of(
        &self,
        project: i64,
    ) -> Result<Vec<tickethub_actors::domain::UserId>, tickethub_actors::ports::StoreError> {
        let ids: Vec<(i64,)> = db::query_as(
            "SELECT user_id FROM project_members WHERE project_id = $1 ORDER BY user_id",
        )
        .bind(project)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok(ids
            .into_iter()
            .map(|(id,)| tickethub_actors::domain::UserId(id))
            .collect())
    }
}
