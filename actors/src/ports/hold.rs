//! Holds on outbound messages, stored: people's time zones and quiet hours, projects'
//! maintenance windows, and deliveries put back until a hold ends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{ProjectId, UserId};
use crate::quiet::QuietHours;
use crate::ticket_domain::TicketId;

/// A person's time zone, quiet hours and language, as they set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quiet {
    /// Their IANA time zone, if they gave one.
    pub time_zone: Option<String>,
    /// Their language for messages (a BCP 47 tag, `de`, `pt-BR`), if they gave one.
    pub locale: Option<String>,
    /// Their quiet hours, if any (in `time_zone`, or UTC without one).
    pub hours: Option<QuietHours>,
    /// Their digest, if they want one (in `time_zone`, or UTC without one).
    pub digest: Option<crate::quiet::Digest>,
}

/// A stretch of time when every outbound message about a project's tickets waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Its id.
    pub id: i64,
    /// The project.
    pub project: ProjectId,
    /// From when.
    pub from: DateTime<Utc>,
    /// Until when (not included).
    pub to: DateTime<Utc>,
    /// Who made it.
    pub created_by: UserId,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Holds, stored.
#[async_trait]
pub trait HoldStore: Send + Sync {
    /// A person's time zone and quiet hours (none set: the default).
    async fn quiet(&self, user: UserId) -> Result<Quiet, StoreError>;
    /// Sets a person's time zone and quiet hours; the messages their quiet hours held go out
    /// at once (the new hours, if any, hold them again as they are tried).
    async fn set_quiet(&self, user: UserId, quiet: Quiet) -> Result<(), StoreError>;
    /// Adds a maintenance window to a project.
    async fn add_maintenance(
        &self,
        project: ProjectId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        by: UserId,
    ) -> Result<MaintenanceWindow, StoreError>;
    /// A project's maintenance windows that end after `after`, by start.
    async fn maintenance_windows(
        &self,
        project: ProjectId,
        after: DateTime<Utc>,
    ) -> Result<Vec<MaintenanceWindow>, StoreError>;
    /// Deletes a window of the project; the messages held for the project go out at once (the
    /// project's other windows hold them again as they are tried). `false` if it has none of
    /// this id.
    async fn delete_maintenance(&self, project: ProjectId, id: i64) -> Result<bool, StoreError>;
    /// Until when a window of the ticket's project that covers `at` lasts (the latest end).
    async fn maintenance_until(
        &self,
        ticket: TicketId,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// How many queued deliveries a hold puts back now, by reason (`quiet_hours`,
    /// `maintenance`).
    async fn held_deliveries(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Puts a delivery claimed by `node` back, untried, until `until`, saying why; `false` if
    /// the node no longer holds its claim.
    async fn hold_delivery(
        &self,
        id: i64,
        node: &str,
        until: DateTime<Utc>,
        why: &str,
    ) -> Result<bool, StoreError>;
}
