//! Which tickets a list shows, and in which order.

use crate::domain::{ProjectId, UserId};
use crate::ticket_domain::{Priority, TicketStatus};

/// Which tickets a list shows.
#[derive(Clone, Debug, Default)]
pub struct TicketFilter {
    /// Only this status.
    pub status: Option<TicketStatus>,
    /// Only this project.
    pub project: Option<ProjectId>,
    /// Only tickets assigned to this developer.
    pub assigned_to: Option<UserId>,
    /// Only tickets in projects this user belongs to (`None`: every ticket, for admins).
    pub visible_to: Option<UserId>,
    /// Only this priority.
    pub priority: Option<Priority>,
    /// Only tickets whose title contains this text (case-insensitively), or whose key it is.
    pub search: Option<String>,
    /// In which order.
    pub ordering: TicketOrdering,
}

/// The order of a ticket list; ties go newest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TicketOrdering {
    /// Newest first (the default).
    #[default]
    Newest,
    /// Oldest first.
    Oldest,
    /// Most recently changed first.
    RecentlyUpdated,
    /// Least recently changed first.
    LeastRecentlyUpdated,
    /// Most urgent first.
    MostUrgent,
    /// Least urgent first.
    LeastUrgent,
}

impl TicketOrdering {
    /// Every ordering with its name in `?ordering=` (Django REST framework's style).
    pub const NAMES: &'static [(&'static str, TicketOrdering)] = &[
        ("-created_at", TicketOrdering::Newest),
        ("created_at", TicketOrdering::Oldest),
        ("-updated_at", TicketOrdering::RecentlyUpdated),
        ("updated_at", TicketOrdering::LeastRecentlyUpdated),
        ("-priority", TicketOrdering::MostUrgent),
        ("priority", TicketOrdering::LeastUrgent),
    ];
}
