//! Event webhooks: subscriptions admins make at run time, and the events queued for each in
//! the transaction of what they tell, posted by every node's poster.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::UserId;

/// The events a subscription may hear.
pub const EVENTS: [&str; 4] = [
    "ticket.status_changed",
    "notification.read",
    "notification.delivered",
    "delivery.failed",
];

/// The event a subscription's test sends.
pub const TEST_EVENT: &str = "webhook.test";

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its id.
    pub id: i64,
    /// Where events are posted.
    pub url: String,
    /// The event types it hears.
    pub events: Vec<String>,
    /// Its signing secret, `whsec_` + base64.
    pub secret: String,
    /// What it is for.
    pub description: String,
    /// Whether events are queued for it.
    pub enabled: bool,
    /// Why it was turned off, if it was by the hub.
    pub disabled_reason: Option<String>,
    /// Since when every post to it has failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// Who made it.
    pub created_by: Option<UserId>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A subscription to make.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Where events are posted.
    pub url: String,
    /// The event types it hears.
    pub events: Vec<String>,
    /// Its signing secret.
    pub secret: String,
    /// What it is for.
    pub description: String,
    /// Who makes it.
    pub created_by: UserId,
}

/// One event for one subscription: the subscription's delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Its id (the message id is `msg_<id>`).
    pub id: i64,
    /// The subscription.
    pub subscription: i64,
    /// The event's type.
    pub event_type: String,
    /// What the event is of (a ticket event's, a notification's, a delivery's id).
    pub subject: i64,
    /// What the event knew, a JSON object.
    pub detail: String,
    /// `PENDING`, `SENDING`, `DELIVERED` or `FAILED`.
    pub status: String,
    /// Posts tried.
    pub attempts: i64,
    /// When it is tried next, while pending.
    pub next_attempt_at: DateTime<Utc>,
    /// The receiver's last HTTP status, if it answered.
    pub response_status: Option<i64>,
    /// Why the last post failed.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// When the receiver took it.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A claimed delivery, with what posting it needs.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    /// The delivery.
    pub delivery: WebhookDelivery,
    /// Its subscription's URL.
    pub url: String,
    /// Its subscription's secret.
    pub secret: String,
    /// The event's data: its detail, with what the database says of its subject.
    pub data: serde_json::Value,
}

/// What a failed post came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookFailed {
    /// Tried again at the time given, or kept as failed.
    Noted,
    /// Its subscription has failed for longer than it may: it is turned off.
    Disabled(Webhook),
}

/// Event webhooks, stored.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Makes a subscription.
    async fn add_webhook(&self, webhook: NewWebhook) -> Result<Webhook, StoreError>;
    /// Every subscription, oldest first.
    async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError>;
    /// One subscription.
    async fn webhook(&self, id: i64) -> Result<Option<Webhook>, StoreError>;
    /// Turns a subscription on (clearing why it was off and since when it fails) or off.
    async fn set_webhook_enabled(
        &self,
        id: i64,
        enabled: bool,
    ) -> Result<Option<Webhook>, StoreError>;
    /// Deletes a subscription and its log.
    async fn delete_webhook(&self, id: i64) -> Result<bool, StoreError>;
    /// A page of a subscription's log, newest first, and its length.
    async fn webhook_deliveries(
        &self,
        subscription: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<WebhookDelivery>), StoreError>;
    /// Queues a test event for a subscription (on or off); its delivery.
    async fn queue_webhook_test(
        &self,
        subscription: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<WebhookDelivery>, StoreError>;
    /// Claims up to `limit` due deliveries for `node` until `lease_until`: those of
    /// subscriptions that are on (a test event, whatever the subscription).
    async fn claim_webhook_deliveries(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WebhookJob>, StoreError>;
    /// Records a post the receiver took (its subscription fails no more), if `node` still
    /// holds the claim.
    async fn webhook_delivered(
        &self,
        id: i64,
        node: &str,
        status: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Records a failed post, if `node` still holds the claim: tried again at `due`, or
    /// failed for good without one; a subscription failing since before `disable_before` is
    /// turned off.
    #[allow(clippy::too_many_arguments)]
    async fn webhook_failed(
        &self,
        id: i64,
        node: &str,
        status: Option<i64>,
        error: &str,
        due: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
        disable_before: DateTime<Utc>,
    ) -> Result<WebhookFailed, StoreError>;
}
