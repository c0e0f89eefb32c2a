//! Project chats, stored: the chat channels that hear a project's ticket events, the message
//! that stands for each ticket in them, and the events still to be told, written in the same
//! transaction as the event itself so that none is lost.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{ProjectId, UserId};
use crate::event::EventType;
use crate::ticket_domain::{Priority, TicketId};

/// A chat channel that hears a project's ticket events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectChat {
    /// Its id.
    pub id: i64,
    /// The project.
    pub project: ProjectId,
    /// The chat channel plug-in (`slack`, `mattermost`, `teams`).
    pub provider: String,
    /// Where on it (a channel id, a workflow's URL).
    pub channel: String,
    /// The events it hears; empty for every ticket event.
    pub events: Vec<EventType>,
    /// The priorities of the tickets it hears about; empty for every priority.
    pub priorities: Vec<Priority>,
    /// Who added it.
    pub created_by: Option<UserId>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Events it could not be told, for good.
    pub failed: i64,
    /// Events still to be told.
    pub pending: i64,
}

/// A project chat to add.
#[derive(Debug, Clone)]
pub struct NewProjectChat {
    /// The project.
    pub project: ProjectId,
    /// The chat channel plug-in.
    pub provider: String,
    /// Where on it, checked by the plug-in.
    pub channel: String,
    /// The events it hears (empty: all).
    pub events: Vec<EventType>,
    /// The priorities (empty: all).
    pub priorities: Vec<Priority>,
    /// Who adds it.
    pub created_by: UserId,
}

/// A ticket event to tell a chat, claimed.
#[derive(Debug, Clone)]
pub struct ChatUpdate {
    /// The row's id.
    pub id: i64,
    /// The chat.
    pub chat: ProjectChat,
    /// The ticket.
    pub ticket: TicketId,
    /// The event.
    pub event: EventType,
    /// Who took it, by name.
    pub actor_name: Option<String>,
    /// Whom it assigned, by name (for `ticket_assigned`).
    pub assigned_names: Vec<String>,
    /// A rejection's reason or a comment's text.
    pub detail: String,
    /// The message standing for the ticket in the chat, once there is one.
    pub message: Option<String>,
    /// Tries so far.
    pub attempts: i64,
}

/// Project chats, stored.
#[async_trait]
pub trait ChatStore: Send + Sync {
    /// Adds a chat to a project; `Conflict` when the project already has it.
    async fn add_project_chat(&self, chat: NewProjectChat) -> Result<ProjectChat, StoreError>;
    /// A project's chats, oldest first.
    async fn project_chats(&self, project: ProjectId) -> Result<Vec<ProjectChat>, StoreError>;
    /// Removes a chat of the project (its queued events with it); whether it was there.
    async fn delete_project_chat(&self, project: ProjectId, id: i64) -> Result<bool, StoreError>;
    /// Claims, for `node` until `lease_until`, up to `limit` events due, each the oldest of its
    /// chat and ticket still to be told (a ticket's events are told in order).
    async fn claim_chat_updates(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ChatUpdate>, StoreError>;
    /// Keeps the message standing for a ticket in a chat.
    async fn set_chat_thread(
        &self,
        chat: i64,
        ticket: TicketId,
        message: &str,
    ) -> Result<(), StoreError>;
    /// The event was told: gone.
    async fn chat_update_told(&self, id: i64) -> Result<(), StoreError>;
    /// The event is tried again at `due` (`failed`: never again), with why.
    async fn chat_update_failed(
        &self,
        id: i64,
        error: &str,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
}
