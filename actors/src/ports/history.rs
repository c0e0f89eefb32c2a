//! What happened to notifications and tickets, as recorded for timelines and the trace: writes
//! to sockets, ticket events, delivery attempts and escalation steps.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Delivery, StoreError};
use crate::domain::UserId;
use crate::routing::Channel;
use crate::ticket_domain::{TicketId, TicketStatus};

/// A run of one user's seqs written to their sockets on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Whose.
    pub user: UserId,
    /// The first seq of the run.
    pub first_seq: i64,
    /// The last.
    pub last_seq: i64,
    /// How many sockets each was written to.
    pub sockets: i64,
    /// When the first of them was written.
    pub first_at: DateTime<Utc>,
    /// When the last of them was written.
    pub at: DateTime<Utc>,
}

/// One event a ticket went through, with the parties routing resolved it against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketEvent {
    /// The event's id.
    pub id: i64,
    /// The ticket.
    pub ticket: TicketId,
    /// Its notification type.
    pub event: crate::event::EventType,
    /// The REST action (`create`, `assign`, …).
    pub action: String,
    /// Who took it.
    pub actor: Option<UserId>,
    /// The ticket's status after it.
    pub status: TicketStatus,
    /// The assignees after it.
    pub assignees: Vec<UserId>,
    /// Assignees it added.
    pub newly_assigned: Vec<UserId>,
    /// When.
    pub at: DateTime<Utc>,
    /// A rejection's reason.
    pub reason: Option<String>,
    /// The fields an edit changed.
    pub changes: Vec<crate::ticket_domain::FieldChange>,
}

/// What followed a ticket's notifications, for its history: an escalation step that fired
/// (someone was paged on more channels), or an acknowledgement from outside the hub (an SMS
/// reply, a push or chat button).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// An escalation step fired for `recipient`'s notification, on `channels`.
    Escalated {
        /// The step's row id.
        id: i64,
        /// Whose notification.
        recipient: UserId,
        /// The policy's name.
        policy: String,
        /// The step's number, from 1.
        step: i64,
        /// The channels it sent on.
        channels: Vec<String>,
        /// When it fired.
        at: DateTime<Utc>,
    },
    /// `by` acknowledged a notification about the ticket, `via` a channel.
    Acknowledged {
        /// The notification.
        notification: i64,
        /// Who.
        by: UserId,
        /// How (`sms`, `push`, `slack`, …).
        via: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl FollowUp {
    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            FollowUp::Escalated { at, .. } | FollowUp::Acknowledged { at, .. } => *at,
        }
    }
}

/// An escalation step as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationRow {
    /// The row's id.
    pub id: i64,
    /// The notification it escalates.
    pub notification_id: i64,
    /// The notification's recipient.
    pub user_id: UserId,
    /// The ticket, if any.
    pub ticket: Option<TicketId>,
    /// The step.
    pub step: crate::policy::PlannedStep,
    /// When it is (or was) due.
    pub due_at: DateTime<Utc>,
    /// `PENDING`, `FIRING`, `FIRED`, `CANCELLED` or `FAILED`.
    pub status: String,
    /// Why it was cancelled or failed, or what firing did.
    pub detail: Option<String>,
    /// The node that claimed it last.
    pub claimed_by: Option<String>,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
}

/// One attempt of an outbound delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The delivery.
    pub delivery_id: i64,
    /// Its channel.
    pub channel: Channel,
    /// Its address.
    pub address: String,
    /// The attempt's number, from 1.
    pub attempt: i64,
    /// `sent`, `retry` or `failed`.
    pub outcome: String,
    /// The error, if any.
    pub error: Option<String>,
    /// The node that made it.
    pub node: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A run of seqs pushed to a user's sockets, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRecord {
    /// When the run's first seq was written (its seqs were written between this and `at`,
    /// each as soon as it was committed).
    pub first_at: DateTime<Utc>,
    /// The sockets each was written to.
    pub sockets: i64,
    /// The node.
    pub node: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Everything recorded about one notification, for its timeline.
#[derive(Clone, Debug)]
pub struct TimelineRecord {
    /// The notification (deleted ones too).
    pub notification: crate::notification::Notification,
    /// When its recipient deleted it.
    pub deleted_at: Option<DateTime<Utc>>,
    /// The ticket event that committed it, if any.
    pub event: Option<TicketEvent>,
    /// The action recorded on the notification itself (commits without a ticket event).
    pub action: Option<String>,
    /// Who took it.
    pub actor: Option<UserId>,
    /// The writes to sockets that included it.
    pub pushes: Vec<PushRecord>,
    /// When a client of the recipient first acknowledged it.
    pub acked_at: Option<DateTime<Utc>>,
    /// Its outbound deliveries.
    pub deliveries: Vec<Delivery>,
    /// Their attempts.
    pub attempts: Vec<DeliveryAttempt>,
    /// Its escalation steps.
    pub escalations: Vec<EscalationRow>,
}

/// What happened to notifications and tickets, for timelines and the trace.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// Records writes to sockets made on `node`.
    async fn record_pushes(&self, node: &str, pushes: &[Pushed]) -> Result<(), StoreError>;
    /// Everything recorded about a notification; `None` if there is no such notification.
    async fn timeline(&self, id: i64) -> Result<Option<TimelineRecord>, StoreError>;
    /// A ticket's events, oldest first.
    async fn ticket_events(&self, ticket: TicketId) -> Result<Vec<TicketEvent>, StoreError>;
    /// The escalation steps that fired for notifications about `ticket`, and the
    /// acknowledgements of those notifications, oldest first (until retention removes them).
    async fn ticket_follow_ups(&self, ticket: TicketId) -> Result<Vec<FollowUp>, StoreError>;
    /// The notifications a ticket's events committed for one user: event id and notification
    /// id.
    async fn event_notifications(
        &self,
        ticket: TicketId,
        user: UserId,
    ) -> Result<Vec<(i64, i64)>, StoreError>;
}
