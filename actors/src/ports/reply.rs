//! Replies to what the hub sent, stored: who a channel's address belongs to, the notifications
//! a reply may name, acknowledgements, and the answers given to inbound messages (a provider
//! that sends one again gets the same answer, and nothing is done twice).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::UserId;
use crate::routing::Channel;
use crate::ticket_domain::TicketId;

/// A notification a reply may name: one sent to its recipient on the reply's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replyable {
    /// The notification.
    pub id: i64,
    /// Its recipient's seq, whose code names it.
    pub seq: i64,
    /// Its title.
    pub title: String,
    /// Its ticket, if any.
    pub ticket: Option<TicketId>,
    /// Whether it was read.
    pub is_read: bool,
}

impl From<crate::notification::Notification> for Replyable {
    fn from(n: crate::notification::Notification) -> Self {
        Self {
            id: n.id,
            seq: n.seq,
            title: n.title,
            ticket: n.ticket.map(|t| t.id),
            is_read: n.is_read,
        }
    }
}

/// A notification acknowledged from outside the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// Who acknowledged it.
    pub user: UserId,
    /// How: `sms`, `email`, `push`, `voice`.
    pub via: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Replies, stored.
#[async_trait]
pub trait ReplyStore: Send + Sync {
    /// The active users whose verified address on `channel` is `address`.
    async fn users_with_address(
        &self,
        channel: Channel,
        address: &str,
    ) -> Result<Vec<UserId>, StoreError>;
    /// The user's latest `limit` notifications sent on `channel` and not deleted, newest
    /// first.
    async fn replyable(
        &self,
        user: UserId,
        channel: Channel,
        limit: i64,
    ) -> Result<Vec<Replyable>, StoreError>;
    /// Records that `user` acknowledged the notification `via` a channel; `false` if it was
    /// acknowledged that way already.
    async fn record_acknowledgement(
        &self,
        notification: i64,
        user: UserId,
        via: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// A notification's acknowledgements, oldest first.
    async fn acknowledgements(&self, notification: i64)
        -> Result<Vec<Acknowledgement>, StoreError>;
    /// The answer given to the inbound message `id` of `provider`, if it was answered.
    async fn inbound_answer(&self, provider: &str, id: &str) -> Result<Option<String>, StoreError>;
    /// Keeps the answer to an inbound message; answers the one kept first, if another try
    /// kept one meanwhile.
    async fn keep_inbound_answer(
        &self,
        provider: &str,
        id: &str,
        answer: &str,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError>;
}
