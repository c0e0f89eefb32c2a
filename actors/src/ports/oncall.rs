//! On-call schedules, stored: their layers, and the overrides made of them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{ProjectId, UserId};
use crate::oncall::{Layer, Override};

/// A stored on-call schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OncallSchedule {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The project it belongs to (`None`: global).
    pub project: Option<ProjectId>,
    /// Its IANA time zone.
    pub time_zone: String,
    /// Its layers, in order (later ones win).
    pub layers: Vec<Layer>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A schedule to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOncallSchedule {
    /// Its unique name.
    pub name: String,
    /// The project it belongs to (`None`: global).
    pub project: Option<ProjectId>,
    /// Its IANA time zone.
    pub time_zone: String,
    /// Its layers, in order.
    pub layers: Vec<Layer>,
}

/// The on-call schedules.
#[async_trait]
pub trait OncallStore: Send + Sync {
    /// Stores a schedule; `None` if its name is taken.
    async fn create_oncall_schedule(
        &self,
        schedule: NewOncallSchedule,
    ) -> Result<Option<OncallSchedule>, StoreError>;
    /// Every schedule, by name.
    async fn oncall_schedules(&self) -> Result<Vec<OncallSchedule>, StoreError>;
    /// The schedule of this name.
    async fn oncall_schedule(&self, name: &str) -> Result<Option<OncallSchedule>, StoreError>;
    /// Deletes the schedule of this name and its overrides; `false` if there is none.
    async fn delete_oncall_schedule(&self, name: &str) -> Result<bool, StoreError>;
    /// Puts `user` on call instead of the layers of schedule `schedule` from `from` to `to`.
    async fn add_oncall_override(
        &self,
        schedule: i64,
        user: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Override, StoreError>;
    /// The schedule's overrides that end after `from` and begin before `to`, oldest made
    /// first.
    async fn oncall_overrides(
        &self,
        schedule: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Override>, StoreError>;
    /// Deletes an override of the schedule; `false` if it has none of this id.
    async fn delete_oncall_override(&self, schedule: i64, id: i64) -> Result<bool, StoreError>;
}
