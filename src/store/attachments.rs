//! Attachments in SQL: the records of files attached to tickets (their bytes are in the
//! attachment store, `crate::attachments`).

use chrono::{DateTime, Utc};
use tickethub_actors::domain::UserId;
use tickethub_actors::ports::{Attachment, AttachmentStore, NewAttachment, StoreError};
use tickethub_actors::ticket_domain::TicketId;

use crate::store::{backend_error, db, SqlStore};

#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: i64,
    ticket_id: i64,
    uploader_id: i64,
    uploader_name: String,
    file_name: String,
    content_type: String,
    size: i64,
    object_key: String,
    created_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

impl From<AttachmentRow> for Attachment {
    fn from(r: AttachmentRow) -> Self {
        Attachment {
            id: r.id,
            ticket: TicketId(r.ticket_id),
            uploader: UserId(r.uploader_id),
            uploader_name: r.uploader_name,
            file_name: r.file_name,
            content_type: r.content_type,
            size: r.size,
            key: r.object_key,
            created_at: r.created_at,
            deleted_at: r.deleted_at,
        }
    }
}

const SELECT: &str = "SELECT a.id, a.ticket_id, a.uploader_id, \
     COALESCE(NULLIF(u.display_name, ''), u.username) AS uploader_name, a.file_name, \
     a.content_type, a.size, a.object_key, a.created_at, a.deleted_at \
     FROM attachments a JOIN users u ON u.id = a.uploader_id";

#[async_trait::async_trait]
impl AttachmentStore for SqlStore {
    async fn add_attachment(
        &self,
        new: NewAttachment,
        at: DateTime<Utc>,
    ) -> Result<Attachment, StoreError> {
        let (id,): (i64,) = db::query_as(
            "INSERT INTO attachments (ticket_id, uploader_id, file_name, content_type, size, \
             object_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(new.ticket.0)
        .bind(new.uploader.0)
        .bind(&new.file_name)
        .bind(&new.content_type)
        .bind(new.size)
        .bind(&new.key)
        .bind(at)
        .fetch_one(self.writer())
        .await
        .map_err(backend_error)?;
        let row: AttachmentRow = db::query_as(&format!("{SELECT} WHERE a.id = $1"))
            .bind(id)
            .fetch_one(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(row.into())
    }

    async fn attachments(&self, ticket: TicketId) -> Result<Vec<Attachment>, StoreError> {
        let rows: Vec<AttachmentRow> =
            db::query_as(&format!("{SELECT} WHERE a.ticket_id = $1 ORDER BY a.id"))
                .bind(ticket.0)
                .fetch_all(self.reader())
                .await
                .map_err(backend_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn attachment(
        &self,
        ticket: TicketId,
        id: i64,
    ) -> Result<Option<Attachment>, StoreError> {
        let row: Option<AttachmentRow> =
            db::query_as(&format!("{SELECT} WHERE a.id = $1 AND a.ticket_id = $2"))
                .bind(id)
                .bind(ticket.0)
                .fetch_optional(self.reader())
                .await
                .map_err(backend_error)?;
        Ok(row.map(Into::into))
    }

    async fn delete_attachment(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        db::query("UPDATE attachments SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn objects_to_remove(&self, limit: i64) -> Result<Vec<(i64, String)>, StoreError> {
        db::query_as(
            "SELECT id, object_key FROM attachments \
             WHERE deleted_at IS NOT NULL AND removed_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.writer())
        .await
        .map_err(backend_error)
    }

    async fn object_removed(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        db::query("UPDATE attachments SET removed_at = $1 WHERE id = $2 AND removed_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(self.writer())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn attachment_totals(&self) -> Result<(i64, i64), StoreError> {
        let (n, bytes): (i64, Option<i64>) = db::query_as(
            "SELECT COUNT(*), CAST(SUM(size) AS BIGINT) FROM attachments WHERE deleted_at IS NULL",
        )
        .fetch_one(self.reader())
        .await
        .map_err(backend_error)?;
        Ok((n, bytes.unwrap_or(0)))
    }
}
