//! The audit trail: what changed who may do what, and to whose data (keys made and revoked,
//! powers removed, sends cancelled because of it, devices that changed hands, addresses
//! verified). Events are written in the transaction of the change they record.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Its id, in the order events were recorded.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `user:<id>`, `key:<id>`, `cli` (a management command) or `hub`.
    pub actor: String,
    /// What, as `<thing>.<verb>`: `api_key.created`, `api_key.revoked`, `user.demoted`,
    /// `user.deactivated`, `user.erased`, `scheduled_send.cancelled`, `device.moved`,
    /// `address.verified`.
    pub action: String,
    /// Of what: `api_key:<id>`, `user:<id>`, `scheduled_send:<id>`, `device:<id>`.
    pub subject: String,
    /// The rest, a JSON object (ids and reasons, never an address or a secret).
    pub detail: String,
}

/// An event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Of what.
    pub subject: String,
    /// The rest, a JSON object.
    pub detail: String,
}

impl NewAuditEvent {
    /// An event by `actor`.
    pub fn new(
        actor: impl Into<String>,
        action: &str,
        subject: impl Into<String>,
        detail: String,
    ) -> Self {
        Self {
            actor: actor.into(),
            action: action.to_owned(),
            subject: subject.into(),
            detail,
        }
    }
}

/// Which events to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only of this subject (`user:4`).
    pub subject: Option<String>,
    /// Only this action (`device.moved`).
    pub action: Option<String>,
    /// Only by this actor.
    pub actor: Option<String>,
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records an event on its own.
    async fn record_audit(&self, event: NewAuditEvent) -> Result<(), StoreError>;
    /// Events matching `filter`, newest first, and how many match.
    async fn audit_events(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<AuditEvent>), StoreError>;
}
