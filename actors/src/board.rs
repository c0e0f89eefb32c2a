//! What project rooms carry: board events, presence entries and changes, and the frames a
//! room pushes to its sockets (rendered once, shared by every socket). Value types only; the
//! room actor (`crate::room`) owns the sockets.

use std::sync::{Arc, OnceLock};

use crate::domain::UserId;
use crate::ticket_domain::{Comment, Ticket, TicketId};

/// What a board event says happened to a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardAction {
    /// The ticket was created.
    Created,
    /// Its status moved.
    StatusChanged,
    /// Something else changed (assignees).
    Updated,
}

impl BoardAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BoardAction::Created => "created",
            BoardAction::StatusChanged => "status_changed",
            BoardAction::Updated => "updated",
        }
    }

    /// The action by its wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(BoardAction::Created),
            "status_changed" => Some(BoardAction::StatusChanged),
            "updated" => Some(BoardAction::Updated),
            _ => None,
        }
    }
}

/// One present user, as `presence_state` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The user.
    pub user_id: UserId,
    /// Their username.
    pub username: String,
    /// Their display name.
    pub display_name: String,
    /// The ticket their most recent tab looks at.
    pub viewing: Option<TicketId>,
}

/// What a room pushes to its sockets; the adapter renders the JSON.
#[derive(Clone, Debug)]
pub enum RoomEvent {
    /// A ticket of the project was created or changed (board sockets).
    TicketUpdate {
        /// What happened.
        action: BoardAction,
        /// The ticket after the change.
        ticket: Arc<Ticket>,
    },
    /// A comment was added to a ticket of the project (board sockets).
    CommentAdded {
        /// The ticket.
        ticket: Arc<Ticket>,
        /// The comment.
        comment: Arc<Comment>,
    },
    /// A file was attached to a ticket of the project, or deleted (board sockets): pages that
    /// show the ticket load its files again (each viewer's links are their own).
    AttachmentsChanged {
        /// The ticket.
        ticket: Arc<Ticket>,
    },
    /// Who is present, sent to a presence socket when it joins.
    PresenceState(Vec<PresenceEntry>),
    /// A user joined or left, looks at a ticket, or types (presence sockets).
    Presence(PresenceChange),
    /// The joins and leaves of one batch in one frame, for presence sockets that asked for
    /// diffs (`?presence=diff`): a storm of arrivals is one frame per batch, not one per user.
    PresenceDiff {
        /// Users who joined.
        joins: Vec<PresenceEntry>,
        /// Users who left: (id, username).
        leaves: Vec<(UserId, String)>,
    },
    /// The board socket is subscribed: everything committed from now on reaches it.
    Subscribed,
}

/// A room event on its way to sockets, with its text once the first socket rendered it: every
/// socket that gets the same frame shares the one rendering.
#[derive(Debug)]
pub struct RoomFrame {
    event: RoomEvent,
    text: OnceLock<Box<[u8]>>,
}

impl RoomFrame {
    /// A frame for `event`, not rendered yet.
    pub fn new(event: RoomEvent) -> Arc<Self> {
        Arc::new(RoomFrame {
            event,
            text: OnceLock::new(),
        })
    }

    /// The event.
    pub fn event(&self) -> &RoomEvent {
        &self.event
    }

    /// The frame's text, rendered by `render` on first use.
    pub fn text(&self, render: impl FnOnce(&RoomEvent) -> Vec<u8>) -> &[u8] {
        self.text
            .get_or_init(|| render(&self.event).into_boxed_slice())
    }

    /// A cheap estimate of the frame's size on the wire.
    pub fn estimated_bytes(&self) -> usize {
        if let Some(t) = self.text.get() {
            return t.len();
        }
        match &self.event {
            RoomEvent::PresenceState(users) => 64 + 96 * users.len(),
            RoomEvent::PresenceDiff { joins, leaves } => 64 + 96 * (joins.len() + leaves.len()),
            _ => 256,
        }
    }
}

/// A presence change that crosses the bus between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceChange {
    /// The user is present in the cluster now (their first tab anywhere).
    Joined(PresenceEntry),
    /// The user's last tab anywhere is gone, and the grace period passed.
    Left {
        /// The user.
        user_id: UserId,
        /// Their username.
        username: String,
    },
    /// The user looks at a ticket, or at none.
    Viewing {
        /// The user.
        user_id: UserId,
        /// The ticket.
        ticket_id: Option<TicketId>,
    },
    /// The user types under a ticket's comments, or stopped.
    Typing {
        /// The user.
        user_id: UserId,
        /// The ticket.
        ticket_id: TicketId,
        /// Typing or stopped.
        is_typing: bool,
    },
}

impl PresenceChange {
    /// The frame the change becomes on a presence socket.
    pub fn event(&self) -> RoomEvent {
        RoomEvent::Presence(self.clone())
    }

    /// The user it is about.
    pub fn user(&self) -> UserId {
        match self {
            PresenceChange::Joined(entry) => entry.user_id,
            PresenceChange::Left { user_id, .. }
            | PresenceChange::Viewing { user_id, .. }
            | PresenceChange::Typing { user_id, .. } => *user_id,
        }
    }
}

/// Which of a project's sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomSocket {
    /// `/ws/projects/{id}/tickets/`.
    Board,
    /// `/ws/projects/{id}/presence/`.
    Presence,
}

/// What a presence socket's client says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceCommand {
    /// `{"type":"ticket_viewing","ticket_id":T|null}`.
    Viewing(Option<TicketId>),
    /// `{"type":"user_typing","ticket_id":T,"is_typing":bool}`.
    Typing {
        /// The ticket.
        ticket_id: TicketId,
        /// Typing or stopped.
        is_typing: bool,
    },
}
