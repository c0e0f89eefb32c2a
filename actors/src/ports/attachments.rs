//! Files attached to tickets: their records. The bytes live in an object store beside the
//! database (a folder, or an S3-compatible bucket); a row names its object by `key`. A deleted
//! file leaves a tombstone row until its object is gone and retention purges the row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::UserId;
use crate::ticket_domain::TicketId;

/// A file attached to a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its id.
    pub id: i64,
    /// Its ticket.
    pub ticket: TicketId,
    /// Who uploaded it.
    pub uploader: UserId,
    /// The uploader's display name.
    pub uploader_name: String,
    /// The file's name as uploaded (cleaned of paths and control characters).
    pub file_name: String,
    /// Its media type, as the hub decided it.
    pub content_type: String,
    /// Its size in bytes.
    pub size: i64,
    /// Its object's key in the attachment store.
    pub key: String,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
    /// When it was deleted (by its uploader, an admin, or the erasure of its uploader).
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A file to record, once its object is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttachment {
    /// Its ticket.
    pub ticket: TicketId,
    /// Who uploaded it.
    pub uploader: UserId,
    /// The file's name.
    pub file_name: String,
    /// Its media type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: i64,
    /// Its object's key.
    pub key: String,
}

/// Attachments, stored.
#[async_trait]
pub trait AttachmentStore: Send + Sync {
    /// Records a stored file.
    async fn add_attachment(
        &self,
        new: NewAttachment,
        at: DateTime<Utc>,
    ) -> Result<Attachment, StoreError>;
    /// A ticket's files, oldest first, tombstones included.
    async fn attachments(&self, ticket: TicketId) -> Result<Vec<Attachment>, StoreError>;
    /// One file of a ticket.
    async fn attachment(&self, ticket: TicketId, id: i64)
        -> Result<Option<Attachment>, StoreError>;
    /// Deletes a file: its row stays as a tombstone, its object is removed by
    /// [`AttachmentStore::objects_to_remove`]'s sweeper. Deleting it again changes nothing.
    async fn delete_attachment(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The keys of deleted files whose objects are still stored, at most `limit`.
    async fn objects_to_remove(&self, limit: i64) -> Result<Vec<(i64, String)>, StoreError>;
    /// Records that a deleted file's object is gone.
    async fn object_removed(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The number of files kept (not deleted) and their bytes.
    async fn attachment_totals(&self) -> Result<(i64, i64), StoreError>;
}
