//! Retention (what the purge actor removes) and the faults a store can be told to simulate.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// What the purge actor removes, table by table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purgeable {
    /// Notifications read before the cutoff (with their deliveries and escalation steps).
    ReadNotifications,
    /// Notifications their recipient deleted before the cutoff.
    DeletedNotifications,
    /// Unread notifications committed before the cutoff that a socket of their user was
    /// written or acknowledged (`--retention-unread`): one never delivered is never purged.
    UnreadNotifications,
    /// Socket pushes and acks (`stream_events`).
    StreamEvents,
    /// Ticket history (`ticket_events`).
    TicketEvents,
    /// Delivery attempts.
    DeliveryAttempts,
    /// Outbox rows that were sent or failed for good (an unread notification that is kept
    /// keeps its in-app record; its email, WhatsApp and webhook rows go).
    FinishedDeliveries,
    /// Escalation steps that fired, were cancelled or failed.
    Escalations,
    /// Refresh-token records past their expiry (whatever the cutoff).
    RefreshTokens,
    /// Idempotency records older than [`IDEMPOTENCY_TTL`](super::IDEMPOTENCY_TTL) (whatever the cutoff).
    IdempotencyKeys,
    /// The tombstones of deleted attachments whose files were removed before the cutoff.
    RemovedAttachments,
}

impl Purgeable {
    /// Every kind, in the order a sweep takes them.
    pub const ALL: [Purgeable; 11] = [
        Purgeable::ReadNotifications,
        Purgeable::DeletedNotifications,
        Purgeable::UnreadNotifications,
        Purgeable::StreamEvents,
        Purgeable::TicketEvents,
        Purgeable::DeliveryAttempts,
        Purgeable::FinishedDeliveries,
        Purgeable::Escalations,
        Purgeable::RefreshTokens,
        Purgeable::IdempotencyKeys,
        Purgeable::RemovedAttachments,
    ];

    /// Its name in metrics, the supervision tree and `tickethub purge`.
    pub fn as_str(self) -> &'static str {
        match self {
            Purgeable::ReadNotifications => "read_notifications",
            Purgeable::DeletedNotifications => "deleted_notifications",
            Purgeable::UnreadNotifications => "unread_notifications",
            Purgeable::StreamEvents => "stream_events",
            Purgeable::TicketEvents => "ticket_events",
            Purgeable::DeliveryAttempts => "delivery_attempts",
            Purgeable::FinishedDeliveries => "finished_deliveries",
            Purgeable::Escalations => "escalations",
            Purgeable::RefreshTokens => "refresh_tokens",
            Purgeable::IdempotencyKeys => "idempotency_keys",
            Purgeable::RemovedAttachments => "removed_attachments",
        }
    }
}

/// Rows kept for a while, then purged.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes at most `limit` rows of `what` older than `cutoff`, in one short transaction;
    /// answers how many it deleted. Notifications, outbox rows and escalation steps are first
    /// folded into the analytics rollups ([`crate::analytics`]) in that transaction.
    async fn purge(
        &self,
        what: Purgeable,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError>;
    /// How many rows of `what` a purge with this cutoff would delete.
    async fn purgeable(&self, what: Purgeable, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;
    /// After a sweep that deleted rows of each of `purged`: makes the deleted rows' space
    /// reusable where the database would not do it on its own (PostgreSQL with autovacuum off
    /// vacuums their tables, and those the deletions cascaded to); answers the tables it
    /// reclaimed. SQLite reuses a deleted row's pages at once.
    async fn reclaim(&self, purged: &[Purgeable]) -> Result<Vec<String>, StoreError> {
        let _ = purged;
        Ok(Vec::new())
    }
}

/// Faults a store can be told to simulate, for fault-injection tests: each counter is how many
/// of the next such steps fail.
#[derive(Debug, Default)]
pub struct StoreFaults {
    /// Notification commits that apply, then answer as if the database's answer was lost.
    pub lost_commit_acks: std::sync::atomic::AtomicU32,
    /// Writes of a delivery's outcome that fail before they reach the database.
    pub failed_outcome_writes: std::sync::atomic::AtomicU32,
    /// Escalation steps whose settling fails before it reaches the database.
    pub failed_escalation_finishes: std::sync::atomic::AtomicU32,
    /// Claimed deliveries given back whose release fails before it reaches the database.
    pub failed_releases: std::sync::atomic::AtomicU32,
    /// Other nodes' board events whose content cannot be read.
    pub failed_board_reads: std::sync::atomic::AtomicU32,
    /// Answers to idempotent requests whose recording fails (what a crash between a commit
    /// and its answer leaves behind).
    pub failed_idempotent_answers: std::sync::atomic::AtomicU32,
    /// Counts down the parts of announcements: the part that takes it from 1 to 0 fails before
    /// it reaches the database (2: the next part commits, the one after fails).
    pub failing_part: std::sync::atomic::AtomicU32,
}

impl StoreFaults {
    /// Whether this step is to fail (and counts it off).
    pub fn take(counter: &std::sync::atomic::AtomicU32) -> bool {
        use std::sync::atomic::Ordering;
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether this step is the one `counter` counts down to (and counts it off).
    pub fn reached(counter: &std::sync::atomic::AtomicU32) -> bool {
        use std::sync::atomic::Ordering;
        counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)) == Ok(1)
    }
}
