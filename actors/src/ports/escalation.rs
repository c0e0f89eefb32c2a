//! The durable escalation steps: claimed when due by one node, and settled as cancelled, fired
//! or failed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{EscalationRow, StoreError};
use crate::notification::Notification;
use crate::policy::PlannedStep;
use crate::routing::Channel;
use crate::ticket_domain::{Ticket, TicketStatus};

/// A due step claimed by this node, with what deciding it needs, as the database has it now.
#[derive(Clone, Debug)]
pub struct EscalationJob {
    /// The step's row id.
    pub id: i64,
    /// The step.
    pub step: PlannedStep,
    /// When it was due.
    pub due_at: DateTime<Utc>,
    /// The notification it escalates.
    pub notification: Notification,
    /// Whether the recipient deleted it.
    pub deleted: bool,
    /// The highest seq the recipient's clients acknowledged.
    pub acked_seq: i64,
    /// The ticket's status when the notification was committed.
    pub cause_status: Option<TicketStatus>,
    /// The ticket as it is now.
    pub ticket: Option<Ticket>,
}

/// How a claimed step ends.
#[derive(Clone, Debug)]
pub enum Finish {
    /// It no longer applies, and why.
    Cancelled(String),
    /// It sends the recipient's notification on these channels (outbox rows of that
    /// notification) and commits these notifications for the `also` audience.
    Fired {
        /// Channel and address of each new delivery of the escalated notification.
        deliveries: Vec<(Channel, String)>,
        /// The `ticket_escalated` notifications.
        drafts: Vec<crate::notification::Draft>,
        /// What it did, for the timeline.
        detail: String,
    },
    /// It reached nobody (no usable channel, nobody else to tell), and why.
    Failed(String),
}

/// How a claimed step was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// `fired`, `cancelled` or `failed`: as asked, or `cancelled` when the notification was
    /// read or deleted since the step was decided.
    pub outcome: &'static str,
    /// The notifications committed with it (to the `also` audience).
    pub notifications: Vec<crate::notification::Notification>,
}

/// The durable escalation steps.
#[async_trait]
pub trait EscalationStore: Send + Sync {
    /// Claims up to `limit` due steps (pending and due, or claimed by a node whose lease ran
    /// out) for `node` until `lease_until`, with what deciding them needs. Two nodes never
    /// claim the same step at once.
    async fn claim_escalations(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<EscalationJob>, StoreError>;
    /// Settles a claimed step in one transaction, if `node` still holds its claim and it was
    /// not cancelled meanwhile: its deliveries, the notifications it commits (answered), and
    /// its status. A step to fire whose notification was read or deleted since it was
    /// decided is cancelled instead: the check holds the notification's row, so a read
    /// committed before the step fired always stops it. `None`: the claim was lost and
    /// nothing was written.
    async fn finish_escalation(
        &self,
        id: i64,
        node: &str,
        finish: Finish,
    ) -> Result<Option<Settled>, StoreError>;
    /// Gives claimed steps back (`PENDING`, due as they were), if `node` still holds them: a
    /// step whose firing failed is tried again at the next look, not after the lease.
    async fn release_escalations(&self, ids: &[i64], node: &str) -> Result<(), StoreError>;
    /// Steps waiting, and when the next is due.
    async fn escalation_outlook(&self) -> Result<(i64, Option<DateTime<Utc>>), StoreError>;
    /// Steps with a status (`PENDING` …), or every step, soonest due first.
    async fn list_escalations(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EscalationRow>, StoreError>;
}
