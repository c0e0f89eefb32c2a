//! What providers say of messages after taking them (Twilio's status callbacks): a receipt
//! per report, kept for the notification's timeline; a failed one fails the delivery.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::UserId;
use crate::routing::Channel;

/// A provider's report on a message it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The delivery.
    pub delivery_id: i64,
    /// Its notification.
    pub notification: i64,
    /// Its recipient.
    pub user: UserId,
    /// Its channel.
    pub channel: Channel,
    /// Where it went.
    pub address: String,
    /// The provider's word (`delivered`, `undelivered`, `failed`, …).
    pub status: String,
    /// The provider's error code, if it gave one.
    pub error_code: Option<String>,
    /// When it came.
    pub at: DateTime<Utc>,
}

/// Receipts, stored.
#[async_trait]
pub trait ReceiptStore: Send + Sync {
    /// Keeps a report on the message the provider knows as `provider_id` on `channel`; when
    /// `failed`, the delivery is failed with the code (it was `SENT`). `None` when no
    /// delivery has that id.
    async fn record_receipt(
        &self,
        channel: Channel,
        provider_id: &str,
        status: &str,
        failed: bool,
        error_code: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<Receipt>, StoreError>;
    /// A notification's receipts, oldest first.
    async fn receipts(&self, notification: i64) -> Result<Vec<Receipt>, StoreError>;
}
