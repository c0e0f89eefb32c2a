//! Delivery analytics: the figures of the notifications committed in a range of hours.

use async_trait::async_trait;

use super::StoreError;
use crate::analytics::{AnalyticsQuery, Tallies};

/// Reads delivery analytics.
#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    /// The tallies of every hour, type and channel the query asks for: the rollups of purged
    /// rows plus the live rows, each row counted once, read from one snapshot.
    async fn analytics(&self, query: &AnalyticsQuery) -> Result<Tallies, StoreError>;
}
