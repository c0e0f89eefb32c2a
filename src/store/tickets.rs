//! Tickets in SQL: rows, the shared `SELECT`, and the ticket half of the ports.

use crate::store::{backend_error, db, SqlStore};

use chrono::{DateTime, Utc};
use tickethub_actors::domain::{ProjectId, UserId};
use tickethub_actors::ports::StoreError;
use tickethub_actors::ticket_domain::{Comment, Ticket, TicketId};

/// The columns of a ticket with its project and creator.
pub(crate) const TICKET_SELECT: &str = "SELECT t.id, t.project_id, p.key AS project_key, \
     p.name AS project_name, t.number, t.title, t.description, t.priority, t.category, t.status, \
     t.created_by, COALESCE(NULLIF(u.display_name, ''), u.username) AS created_by_name, \
     t.created_at, t.updated_at, t.version \
     FROM tickets t JOIN projects p ON p.id = t.project_id JOIN users u ON u.id = t.created_by";

/// The `ORDER BY` of a ticket list; ties go newest first.
pub(crate) fn order_by(ordering: tickethub_actors::ports::TicketOrdering) -> &'static str {
    use tickethub_actors::ports::TicketOrdering::*;
    match ordering {
        Newest => " ORDER BY t.id DESC",
        Oldest => " ORDER BY t.id ASC",
        RecentlyUpdated => " ORDER BY t.updated_at DESC, t.id DESC",
        LeastRecentlyUpdated => " ORDER BY t.updated_at ASC, t.id DESC",
        MostUrgent => {
            " ORDER BY CASE t.priority WHEN 'CRITICAL' THEN 3 WHEN 'HIGH' THEN 2 \
             WHEN 'MEDIUM' THEN 1 ELSE 0 END DESC, t.id DESC"
        }
        LeastUrgent => {
            " ORDER BY CASE t.priority WHEN 'CRITICAL' THEN 3 WHEN 'HIGH' THEN 2 \
             WHEN 'MEDIUM' THEN 1 ELSE 0 END ASC, t.id DESC"
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TicketRow {
    id: i64,
    project_id: i64,
    project_key: String,
    project_name: String,
    number: i64,
    title: String,
    description: String,
    priority: String,
    category: String,
    status: String,
    created_by: i64,
    created_by_name: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

fn corrupt(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl TicketRow {
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    pub(crate) fn into_ticket(self, assignees: Vec<UserId>) -> Result<Ticket, StoreError> {
        Ok(Ticket {
            id: TicketId(self.id),
            project_id: ProjectId(self.project_id),
            project_key: self.project_key,
            project_name: self.project_name,
            number: self.number,
            title: self.title,
            description: self.description,
            priority: self.priority.parse().map_err(corrupt)?,
            category: self.category.parse().map_err(corrupt)?,
            status: self.status.parse().map_err(corrupt)?,
            created_by: UserId(self.created_by),
            created_by_name: self.created_by_name,
            assignees,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CommentRow {
    id: i64,
    ticket_id: i64,
    author_id: i64,
    author_name: String,
    body: String,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
}

impl From<CommentRow> for Comment {
    fn from(r: CommentRow) -> Self {
        Comment {
            id: r.id,
            ticket_id: TicketId(r.ticket_id),
            author: UserId(r.author_id),
            author_name: r.author_name,
            body: r.body,
            created_at: r.created_at,
            edited_at: r.edited_at,
            deleted_at: r.deleted_at,
        }
    }
}

impl SqlStore {
    /// Loads tickets by a finished query, with their assignees.
    async fn tickets_with_assignees<'e, E>(
        exec: E,
        rows: Vec<crate::store::tickets::TicketRow>,
    ) -> Result<Vec<tickethub_actors::ticket_domain::Ticket>, tickethub_actors::ports::StoreError>
    where
        E: Into<db::On<'e>>,
    {
        use tickethub_actors::domain::UserId;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = db::Builder::new(
            "SELECT ticket_id, user_id FROM ticket_assignees WHERE ticket_id IN (",
        );
        let mut sep = q.separated(", ");
        for r in &rows {
            sep.push_bind(r.id());
        }
        q.push(") ORDER BY user_id");
        let pairs: Vec<(i64, i64)> = q
            .build_query_as()
            .fetch_all(exec)
            .await
            .map_err(backend_error)?;
        rows.into_iter()
            .map(|r| {
                let id = r.id();
                let assignees = pairs
                    .iter()
                    .filter(|(t, _)| *t == id)
                    .map(|(_, u)| UserId(*u))
                    .collect();
                r.into_ticket(assignees)
            })
            .collect()
    }

    async fn ticket_in<'e, E>(
        exec: E,
        id: i64,
    ) -> Result<Option<crate::store::tickets::TicketRow>, tickethub_actors::ports::StoreError>
    where
        E: Into<db::On<'e>>,
    {
        let sql = format!("{} WHERE t.id = $1", crate::store::tickets::TICKET_SELECT);
        db::query_as::<crate::store::tickets::TicketRow>(&sql)
            .bind(id)
            .fetch_optional(exec)
            .await
            .map_err(backend_error)
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::TicketStore for SqlStore {
    async fn create_ticket(
        &self,
        new: tickethub_actors::ports::NewTicket,
        plan: tickethub_actors::ports::PlanDrafts<'_>,
    ) -> Result<
        (
            tickethub_actors::ticket_domain::Ticket,
            Vec<tickethub_actors::notification::Notification>,
        ),
        tickethub_actors::ports::StoreError,
    > {
        use tickethub_actors::ports::StoreError;
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let number: Option<(i64,)> = db::query_as(
            "UPDATE projects SET next_ticket_number = next_ticket_number + 1 \
             WHERE id = $1 RETURNING next_ticket_number - 1",
        )
        .bind(new.project.0)
        .fetch_optional(&mut tx)
        .await
        .map_err(backend_error)?;
        let (number,) =
            number.ok_or_else(|| StoreError::NotFound(format!("project {}", new.project)))?;
        let (id,): (i64,) = db::query_as(
            "INSERT INTO tickets (project_id, number, title, description, priority, category, \
             status, created_by, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'NEW', $7, 1, $8, $8) RETURNING id",
        )
        .bind(new.project.0)
        .bind(number)
        .bind(&new.title)
        .bind(&new.description)
        .bind(new.priority.as_str())
        .bind(new.category.as_str())
        .bind(new.created_by.0)
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(backend_error)?;
        let row = Self::ticket_in(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("ticket {id}")))?;
        let ticket = row.into_ticket(Vec::new())?;
        let event = Self::insert_ticket_event(
            &mut tx,
            id,
            &tickethub_actors::routing::EventType::TicketCreated,
            "create",
            new.created_by,
            ticket.status,
            &[],
            &[],
            None,
            None,
            now,
        )
        .await?;
        let notifications = Self::insert_drafts(&mut tx, plan(&ticket), Some(event)).await?;
        if let Some(mark) = &new.idempotency {
            Self::mark_committed(&mut tx, mark, id).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok((ticket, notifications))
    }

    async fn ticket(
        &self,
        id: tickethub_actors::ticket_domain::TicketId,
    ) -> Result<Option<tickethub_actors::ticket_domain::Ticket>, tickethub_actors::ports::StoreError>
    {
        let Some(row) = Self::ticket_in(self.reader(), id.0).await? else {
            return Ok(None);
        };
        Ok(Self::tickets_with_assignees(self.reader(), vec![row])
            .await?
            .pop())
    }

    async fn ticket_by_key(
        &self,
        project_key: &str,
        number: i64,
    ) -> Result<Option<tickethub_actors::ticket_domain::Ticket>, tickethub_actors::ports::StoreError>
    {
        let sql = format!(
            "{} WHERE p.key = $1 AND t.number = $2",
            crate::store::tickets::TICKET_SELECT
        );
        let Some(row) = db::query_as::<crate::store::tickets::TicketRow>(&sql)
            .bind(project_key)
            .bind(number)
            .fetch_optional(self.reader())
            .await
            .map_err(backend_error)?
        else {
            return Ok(None);
        };
        Ok(Self::tickets_with_assignees(self.reader(), vec![row])
            .await?
            .pop())
    }

    async fn commit_change(
        &self,
        id: tickethub_actors::ticket_domain::TicketId,
        expected_version: i64,
        change: &tickethub_actors::ticket_domain::Change,
        author: tickethub_actors::domain::UserId,
        drafts: Vec<tickethub_actors::notification::Draft>,
        mark: Option<&tickethub_actors::ports::IdempotencyMark>,
    ) -> Result<tickethub_actors::ports::Committed, tickethub_actors::ports::StoreError> {
        use tickethub_actors::ports::StoreError;
        let now = chrono::Utc::now();
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let updated = db::query(
            "UPDATE tickets SET status = $1, version = version + 1, updated_at = $2 \
             WHERE id = $3 AND version = $4",
        )
        .bind(change.status.as_str())
        .bind(now)
        .bind(id.0)
        .bind(expected_version)
        .execute(&mut tx)
        .await
        .map_err(backend_error)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Stale(format!(
                "ticket {id} is past version {expected_version}"
            )));
        }
        let current: Vec<(i64,)> = db::query_as(
            "SELECT user_id FROM ticket_assignees WHERE ticket_id = $1 ORDER BY user_id",
        )
        .bind(id.0)
        .fetch_all(&mut tx)
        .await
        .map_err(backend_error)?;
        let current: Vec<i64> = current.into_iter().map(|(u,)| u).collect();
        let wanted: Vec<i64> = change.assignees.iter().map(|u| u.0).collect();
        if current != wanted {
            db::query("DELETE FROM ticket_assignees WHERE ticket_id = $1")
                .bind(id.0)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
            for user in &wanted {
                db::query("INSERT INTO ticket_assignees (ticket_id, user_id) VALUES ($1, $2)")
                    .bind(id.0)
                    .bind(user)
                    .execute(&mut tx)
                    .await
                    .map_err(backend_error)?;
            }
        }
        for edit in &change.edits {
            // The column is the field's own name, never the caller's text.
            db::query(&format!(
                "UPDATE tickets SET {} = $1 WHERE id = $2",
                edit.field.as_str()
            ))
            .bind(&edit.after)
            .bind(id.0)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        }
        let edited = (!change.edits.is_empty()).then(|| {
            let fields: Vec<&str> = change.edits.iter().map(|e| e.field.as_str()).collect();
            fields.join(", ")
        });
        let comment = match &change.comment {
            Some(body) => {
                let (cid,): (i64,) = db::query_as(
                    "INSERT INTO comments (ticket_id, author_id, body, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(id.0)
                .bind(author.0)
                .bind(body)
                .bind(now)
                .fetch_one(&mut tx)
                .await
                .map_err(backend_error)?;
                let row: crate::store::tickets::CommentRow =
                    db::query_as(&format!("{COMMENT_SELECT} WHERE c.id = $1"))
                        .bind(cid)
                        .fetch_one(&mut tx)
                        .await
                        .map_err(backend_error)?;
                Some(row.into())
            }
            None => None,
        };
        let event = Self::insert_ticket_event(
            &mut tx,
            id.0,
            &change.event,
            change.action,
            author,
            change.status,
            &change.assignees,
            &change.newly_assigned,
            change
                .reason
                .as_deref()
                .or(change.comment.as_deref())
                .or(edited.as_deref()),
            crate::store::history::event_record(change).as_deref(),
            now,
        )
        .await?;
        Self::cancel_moved_on(
            &mut tx,
            id.0,
            change.status,
            &format!(" ({} by user {author})", change.action),
            now,
        )
        .await?;
        let notifications = Self::insert_drafts(&mut tx, drafts, Some(event)).await?;
        let row = Self::ticket_in(&mut tx, id.0)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("ticket {id}")))?;
        let ticket = Self::tickets_with_assignees(&mut tx, vec![row])
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("ticket {id}")))?;
        if let Some(mark) = mark {
            // What a retry after a lost answer shows: the comment, or the ticket.
            let resource = comment
                .as_ref()
                .map_or(id.0, |c: &tickethub_actors::ticket_domain::Comment| c.id);
            Self::mark_committed(&mut tx, mark, resource).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(tickethub_actors::ports::Committed {
            ticket,
            notifications,
            comment,
        })
    }

    async fn list_tickets(
        &self,
        filter: &tickethub_actors::ports::TicketFilter,
        page: tickethub_actors::ports::Page,
    ) -> Result<
        (i64, Vec<tickethub_actors::ticket_domain::Ticket>),
        tickethub_actors::ports::StoreError,
    > {
        fn conditions<'a>(q: &mut db::Builder<'a>, f: &'a tickethub_actors::ports::TicketFilter) {
            q.push(" WHERE 1 = 1");
            if let Some(s) = f.status {
                q.push(" AND t.status = ").push_bind(s.as_str());
            }
            if let Some(p) = f.project {
                q.push(" AND t.project_id = ").push_bind(p.0);
            }
            if let Some(u) = f.assigned_to {
                q.push(" AND EXISTS (SELECT 1 FROM ticket_assignees a WHERE a.ticket_id = t.id AND a.user_id = ")
                    .push_bind(u.0)
                    .push(")");
            }
            if let Some(p) = f.priority {
                q.push(" AND t.priority = ").push_bind(p.as_str());
            }
            if let Some(text) = f.search.as_deref() {
                // The title contains the text (LIKE's own characters escaped), or the
                // text is the ticket's key.
                let escaped = text
                    .to_lowercase()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                q.push(" AND (LOWER(t.title) LIKE ")
                    .push_bind(format!("%{escaped}%"))
                    .push(" ESCAPE '\\'");
                if let Some((project, number)) = tickethub_actors::ticket_domain::parse_key(text) {
                    q.push(" OR (t.number = ")
                        .push_bind(number)
                        .push(" AND t.project_id IN (SELECT id FROM projects WHERE key = ")
                        .push_bind(project)
                        .push("))");
                }
                q.push(")");
            }
            if let Some(u) = f.visible_to {
                // Exactly who `visible` in the HTTP layer lets see a ticket: its
                // project's members, its creator and its assignees.
                q.push(" AND (t.project_id IN (SELECT project_id FROM project_members WHERE user_id = ")
                    .push_bind(u.0)
                    .push(") OR t.created_by = ")
                    .push_bind(u.0)
                    .push(" OR EXISTS (SELECT 1 FROM ticket_assignees v WHERE v.ticket_id = t.id AND v.user_id = ")
                    .push_bind(u.0)
                    .push("))");
            }
        }
        let mut count = db::Builder::new("SELECT COUNT(*) FROM tickets t");
        conditions(&mut count, filter);
        let (total,): (i64,) = count
            .build_query_as()
            .fetch_one(self.reader())
            .await
            .map_err(backend_error)?;
        let mut q = db::Builder::new(crate::store::tickets::TICKET_SELECT);
        conditions(&mut q, filter);
        q.push(crate::store::tickets::order_by(filter.ordering));
        q.push(" LIMIT ")
            .push_bind(page.limit)
            .push(" OFFSET ")
            .push_bind(page.offset);
        let rows = q
            .build_query_as::<crate::store::tickets::TicketRow>()
            .fetch_all(self.reader())
            .await
            .map_err(backend_error)?;
        Ok((
            total,
            Self::tickets_with_assignees(self.reader(), rows).await?,
        ))
    }

    async fn comments(
        &self,
        id: tickethub_actors::ticket_domain::TicketId,
        page: tickethub_actors::ports::Page,
    ) -> Result<
        (i64, Vec<tickethub_actors::ticket_domain::Comment>),
        tickethub_actors::ports::StoreError,
    > {
        let (count,): (i64,) = db::query_as("SELECT COUNT(*) FROM comments WHERE ticket_id = $1")
            .bind(id.0)
            .fetch_one(self.reader())
            .await
            .map_err(backend_error)?;
        let rows: Vec<crate::store::tickets::CommentRow> = db::query_as(&format!(
            "{}{}",
            COMMENT_SELECT, " WHERE c.ticket_id = $1 ORDER BY c.id LIMIT $2 OFFSET $3"
        ))
        .bind(id.0)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        Ok((count, rows.into_iter().map(Into::into).collect()))
    }

    async fn latest_comments(
        &self,
        id: tickethub_actors::ticket_domain::TicketId,
        limit: i64,
    ) -> Result<
        (i64, Vec<tickethub_actors::ticket_domain::Comment>),
        tickethub_actors::ports::StoreError,
    > {
        let (count,): (i64,) = db::query_as("SELECT COUNT(*) FROM comments WHERE ticket_id = $1")
            .bind(id.0)
            .fetch_one(self.reader())
            .await
            .map_err(backend_error)?;
        let mut rows: Vec<crate::store::tickets::CommentRow> = db::query_as(&format!(
            "{}{}",
            COMMENT_SELECT, " WHERE c.ticket_id = $1 ORDER BY c.id DESC LIMIT $2"
        ))
        .bind(id.0)
        .bind(limit)
        .fetch_all(self.reader())
        .await
        .map_err(backend_error)?;
        rows.reverse();
        Ok((count, rows.into_iter().map(Into::into).collect()))
    }

    async fn comment(
        &self,
        id: i64,
    ) -> Result<Option<tickethub_actors::ticket_domain::Comment>, tickethub_actors::ports::StoreError>
    {
        let row: Option<crate::store::tickets::CommentRow> =
            db::query_as(&format!("{}{}", COMMENT_SELECT, " WHERE c.id = $1"))
                .bind(id)
                .fetch_optional(self.reader())
                .await
                .map_err(backend_error)?;
        Ok(row.map(Into::into))
    }

    async fn change_comment(
        &self,
        id: i64,
        body: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<tickethub_actors::ticket_domain::Comment>, tickethub_actors::ports::StoreError>
    {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        let change = match body {
            Some(body) => db::query(
                "UPDATE comments SET body = $1, edited_at = $2 WHERE id = $3 AND deleted_at IS NULL",
            )
            .bind(body),
            None => db::query(
                "UPDATE comments SET body = '', deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
            ),
        };
        change
            .bind(at)
            .bind(id)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        let row: Option<crate::store::tickets::CommentRow> =
            db::query_as(&format!("{COMMENT_SELECT} WHERE c.id = $1"))
                .bind(id)
                .fetch_optional(&mut tx)
                .await
                .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        Ok(row.map(Into::into))
    }
}

/// The columns of a comment with its author's name, before a condition.
const COMMENT_SELECT: &str = "SELECT c.id, c.ticket_id, c.author_id, \
     COALESCE(NULLIF(u.display_name, ''), u.username) AS author_name, c.body, c.created_at, \
     c.edited_at, c.deleted_at \
     FROM comments c JOIN users u ON u.id = c.author_id";
