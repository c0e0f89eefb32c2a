//! What providers say of messages after taking them (Twilio's status callbacks, email
//! bounces and complaints): a receipt per report, kept for the notification's timeline; a
//! failed one fails the delivery. An address that cannot take messages for good goes on the
//! suppression list, and nothing more is sent to it until an admin takes it off.

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
    /// What the report said beyond its code (a bounce's diagnostic), if anything.
    pub detail: Option<String>,
    /// When it came.
    pub at: DateTime<Utc>,
}

/// A report on one delivery, named by its id (an email bounce's signed return address names
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The provider's word (`bounced`, `delayed`, `complained`, `delivered`).
    pub status: String,
    /// It failed the delivery.
    pub failed: bool,
    /// The report's code (an enhanced status code, `5.1.1`), if any.
    pub error_code: Option<String>,
    /// Its diagnostic.
    pub detail: Option<String>,
    /// The address cannot take messages for good: it goes on the suppression list with this
    /// source (`bounce`, `complaint`) and reason, and its owner's address is marked invalid.
    pub suppress: Option<(String, String)>,
    /// The addresses the report names (in lower case), if it names any: it suppresses only
    /// when one is the delivery's (a forwarded mailbox's bounce is about another address).
    pub about: Vec<String>,
}

/// An address nothing more goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// Its id.
    pub id: i64,
    /// The channel.
    pub channel: Channel,
    /// The address, in lower case.
    pub address: String,
    /// `bounce`, `complaint` or `provider`.
    pub source: String,
    /// Why, as the report said.
    pub reason: String,
    /// The delivery that told, if known.
    pub delivery_id: Option<i64>,
    /// Since when.
    pub created_at: DateTime<Utc>,
}

/// A new entry of the suppression list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSuppression<'a> {
    /// The channel.
    pub channel: Channel,
    /// The address (kept in lower case).
    pub address: &'a str,
    /// `bounce`, `complaint` or `provider`.
    pub source: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The delivery that told, if known.
    pub delivery_id: Option<i64>,
    /// When.
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
    /// Keeps a report on delivery `delivery` of `channel` to `user`'s notification (a bounce
    /// names both, signed); when it fails the delivery, the delivery is failed (it was
    /// `SENT`); when it suppresses, the address goes on the suppression list and `user`'s
    /// address on that channel, if it is this one, is marked invalid. `None` when no such
    /// delivery.
    async fn record_report(
        &self,
        channel: Channel,
        delivery: i64,
        user: UserId,
        report: &Report,
        at: DateTime<Utc>,
    ) -> Result<Option<Receipt>, StoreError>;
    /// A notification's receipts, oldest first.
    async fn receipts(&self, notification: i64) -> Result<Vec<Receipt>, StoreError>;
    /// Puts an address on the suppression list (a second report keeps the first entry).
    async fn suppress(&self, entry: NewSuppression<'_>) -> Result<(), StoreError>;
    /// A page of the suppression list, newest first, and its length; of one channel or
    /// address if given.
    async fn suppressions(
        &self,
        channel: Option<Channel>,
        address: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<Suppression>), StoreError>;
    /// Takes an entry off the list, recorded in the audit trail as `actor`'s: sends to the
    /// address resume, and the users whose address it is may be reached there again. The
    /// entry taken off, if there was one.
    async fn unsuppress(&self, id: i64, actor: &str) -> Result<Option<Suppression>, StoreError>;
}
