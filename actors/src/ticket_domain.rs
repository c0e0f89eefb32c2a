//! Tickets: their fields, the status machine and its permissions, as pure functions.
//!
//! [`transition`] decides what an action does to a ticket without any IO; the ticket actor
//! runs it, commits the result and fans out the notifications.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::domain::{ProjectId, Role, UserId};

/// The id of a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId(pub i64);

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An unknown name for one of the ticket enums.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("`{value}` is not a valid {what}; expected one of {expected}")]
pub struct BadValue {
    /// What kind of value it was.
    pub what: &'static str,
    /// The value given.
    pub value: String,
    /// The accepted values.
    pub expected: &'static str,
}

macro_rules! name_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, $expected:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal, $display:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),*
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The stored and wire name (uppercase).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            /// The human name.
            pub fn display(self) -> &'static str {
                match self { $($name::$variant => $display),* }
            }
        }

        impl FromStr for $name {
            type Err = BadValue;
            fn from_str(s: &str) -> Result<Self, BadValue> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err(BadValue { what: $what, value: s.to_owned(), expected: $expected }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

name_enum!(
    /// How urgent a ticket is.
    Priority, "priority", "LOW, MEDIUM, HIGH, CRITICAL", {
        /// Low.
        Low => "LOW", "Low",
        /// Medium.
        Medium => "MEDIUM", "Medium",
        /// High.
        High => "HIGH", "High",
        /// Critical.
        Critical => "CRITICAL", "Critical",
    }
);

name_enum!(
    /// What kind of work a ticket asks for.
    Category, "category", "BUG, FEATURE, SUPPORT, OTHER", {
        /// A defect.
        Bug => "BUG", "Bug",
        /// New functionality.
        Feature => "FEATURE", "Feature",
        /// Help with something.
        Support => "SUPPORT", "Support",
        /// Anything else.
        Other => "OTHER", "Other",
    }
);

name_enum!(
    /// Where a ticket stands in its lifecycle.
    TicketStatus, "status", "NEW, OPEN, ASSIGNED, IN_PROGRESS, FINISHED, APPROVED, REJECTED", {
        /// Created by a client, not yet triaged.
        New => "NEW", "New",
        /// Accepted by an admin.
        Open => "OPEN", "Open",
        /// Given to one or more developers.
        Assigned => "ASSIGNED", "Assigned",
        /// A developer is working on it.
        InProgress => "IN_PROGRESS", "In Progress",
        /// The developer says it is done.
        Finished => "FINISHED", "Finished",
        /// The client accepted the work (final).
        Approved => "APPROVED", "Approved",
        /// The client sent the work back.
        Rejected => "REJECTED", "Rejected",
    }
);

impl TicketStatus {
    /// A colour for status badges (seed 002's project stream carries one).
    pub fn color(self) -> &'static str {
        match self {
            TicketStatus::New => "#6b7280",
            TicketStatus::Open => "#2563eb",
            TicketStatus::Assigned => "#7c3aed",
            TicketStatus::InProgress => "#d97706",
            TicketStatus::Finished => "#0891b2",
            TicketStatus::Approved => "#16a34a",
            TicketStatus::Rejected => "#dc2626",
        }
    }
}

/// A ticket with everything its notifications show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The ticket's id.
    pub id: TicketId,
    /// Its project.
    pub project_id: ProjectId,
    /// The project's key, e.g. `WEB`.
    pub project_key: String,
    /// The project's name.
    pub project_name: String,
    /// The number within the project: the ticket's key is `{project_key}-{number}`.
    pub number: i64,
    /// One line.
    pub title: String,
    /// Free text.
    pub description: String,
    /// Urgency.
    pub priority: Priority,
    /// Kind of work.
    pub category: Category,
    /// Lifecycle position.
    pub status: TicketStatus,
    /// The client who created it.
    pub created_by: UserId,
    /// That client's display name.
    pub created_by_name: String,
    /// The developers it is assigned to, ordered by id.
    pub assignees: Vec<UserId>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Bumped by every change; a write checks it, so no update is lost.
    pub version: i64,
}

impl Ticket {
    /// The ticket's key, e.g. `WEB-5`.
    pub fn key(&self) -> String {
        format!("{}-{}", self.project_key, self.number)
    }
}

/// Reads a ticket's key, `WEB-5` (or `web-5`), as its project's key (upper case, as projects
/// are keyed) and its number.
pub fn parse_key(text: &str) -> Option<(String, i64)> {
    let (project, number) = text.trim().rsplit_once('-')?;
    let number = number.parse::<i64>().ok().filter(|n| *n > 0)?;
    (!project.is_empty() && !project.contains(char::is_whitespace))
        .then(|| (project.to_uppercase(), number))
}

/// A comment on a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// The comment's id.
    pub id: i64,
    /// Its ticket.
    pub ticket_id: TicketId,
    /// Who wrote it.
    pub author: UserId,
    /// The author's display name.
    pub author_name: String,
    /// The text (empty once deleted).
    pub body: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When its author last edited it.
    pub edited_at: Option<DateTime<Utc>>,
    /// When it was deleted: it stays as a tombstone, its text gone.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A field of a ticket that its creator (while it is `NEW` or `OPEN`) and admins may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The one line.
    Title,
    /// The free text.
    Description,
    /// The urgency.
    Priority,
    /// The kind of work.
    Category,
}

impl Field {
    /// Every field, in the order changes are listed.
    pub const ALL: [Field; 4] = [
        Field::Title,
        Field::Description,
        Field::Priority,
        Field::Category,
    ];

    /// The wire name, which is also the column's.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Description => "description",
            Field::Priority => "priority",
            Field::Category => "category",
        }
    }

    /// The field of a wire name.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The field's value in `t`, as stored.
    pub fn value(self, t: &Ticket) -> String {
        match self {
            Field::Title => t.title.clone(),
            Field::Description => t.description.clone(),
            Field::Priority => t.priority.as_str().to_owned(),
            Field::Category => t.category.as_str().to_owned(),
        }
    }
}

/// New values for some of a ticket's fields (validated by the caller: a title of 1 to 200
/// characters, a description of at most 20000).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edits {
    /// A new title.
    pub title: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new priority.
    pub priority: Option<Priority>,
    /// A new category.
    pub category: Option<Category>,
}

impl Edits {
    /// The value it gives `field`, as stored, if it gives one.
    fn value(&self, field: Field) -> Option<String> {
        match field {
            Field::Title => self.title.as_ref().map(|t| t.trim().to_owned()),
            Field::Description => self.description.clone(),
            Field::Priority => self.priority.map(|p| p.as_str().to_owned()),
            Field::Category => self.category.map(|c| c.as_str().to_owned()),
        }
    }
}

/// One field an edit changed, before and after (as stored: `HIGH`, not `High`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// The field.
    pub field: Field,
    /// Its value before.
    pub before: String,
    /// Its value after.
    pub after: String,
}

/// Who is acting, as far as permissions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub id: UserId,
    /// The user's role.
    pub role: Role,
}

/// Something a user does to an existing ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// NEW → OPEN, by an admin.
    Open,
    /// Give the ticket to these developers (the new set of assignees), by an admin.
    Assign {
        /// The developers; validated as developers by the caller.
        developer_ids: Vec<UserId>,
    },
    /// ASSIGNED or REJECTED → IN_PROGRESS, by an assigned developer.
    StartWork,
    /// IN_PROGRESS → FINISHED, by an assigned developer.
    FinishWork,
    /// FINISHED → APPROVED, by the creating client.
    Approve,
    /// FINISHED → REJECTED, by the creating client.
    Reject {
        /// Why.
        reason: String,
    },
    /// Add a comment, by the creator, an assignee or an admin; any status but APPROVED.
    Comment {
        /// The text.
        body: String,
    },
    /// Change some fields, by the creator while the ticket is NEW or OPEN, by admins always.
    Edit(Edits),
}

impl Action {
    /// The REST action name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Open => "open_ticket",
            Action::Assign { .. } => "assign",
            Action::StartWork => "start_work",
            Action::FinishWork => "finish_work",
            Action::Approve => "approve",
            Action::Reject { .. } => "reject",
            Action::Comment { .. } => "comments",
            Action::Edit(_) => "edit",
        }
    }
}

/// Why an action was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The action does not apply to the ticket's current status (409).
    #[error("Cannot {action} a ticket whose status is {current}.")]
    Conflict {
        /// The action's name.
        action: &'static str,
        /// The ticket's status.
        current: TicketStatus,
    },
    /// The wrong role or person (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The request itself is invalid (400).
    #[error("{0}")]
    Invalid(String),
}

/// What an action changes, and which event it raises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The status after the action.
    pub status: TicketStatus,
    /// The assignees after the action.
    pub assignees: Vec<UserId>,
    /// Assignees who were not assigned before (for `ticket_assigned`).
    pub newly_assigned: Vec<UserId>,
    /// The event the action raises.
    pub event: crate::event::EventType,
    /// A comment to store, for `comments`.
    pub comment: Option<String>,
    /// The rejection reason, for `reject`.
    pub reason: Option<String>,
    /// The REST action that made the change (`assign`, `start_work`, …).
    pub action: &'static str,
    /// The fields an edit changed; none for the other actions, and none for an edit that
    /// changes nothing (which is not committed).
    pub edits: Vec<FieldChange>,
}

impl Change {
    /// `ticket` as this change leaves it.
    pub fn applied_to(&self, ticket: &Ticket) -> Ticket {
        let mut t = ticket.clone();
        t.status = self.status;
        t.assignees = self.assignees.clone();
        for e in &self.edits {
            match e.field {
                Field::Title => t.title = e.after.clone(),
                Field::Description => t.description = e.after.clone(),
                Field::Priority => t.priority = e.after.parse().unwrap_or(t.priority),
                Field::Category => t.category = e.after.parse().unwrap_or(t.category),
            }
        }
        t
    }
}

/// Whether `by` may edit (or, with `delete`, delete) `comment` on `ticket`: its author may
/// edit and delete it, admins may delete it; not on an `APPROVED` ticket, whose comments are
/// closed, nor once it is deleted (for an edit).
pub fn may_change_comment(
    ticket: &Ticket,
    comment: &Comment,
    by: Principal,
    delete: bool,
) -> Result<(), TransitionError> {
    let action = if delete {
        "delete a comment on"
    } else {
        "edit a comment on"
    };
    let own = comment.author == by.id;
    if !(own || (delete && by.role == Role::Admin)) {
        return Err(TransitionError::Forbidden(if delete {
            "Only its author and admins can delete a comment."
        } else {
            "Only its author can edit a comment."
        }));
    }
    if ticket.status == TicketStatus::Approved {
        return Err(TransitionError::Conflict {
            action,
            current: ticket.status,
        });
    }
    if !delete && comment.deleted_at.is_some() {
        return Err(TransitionError::Invalid(
            "This comment was deleted; write a new one.".into(),
        ));
    }
    Ok(())
}

/// Whether `by` may attach a file to `ticket`: those who may comment (its creator, its
/// assignees and admins), while it is not `APPROVED`.
pub fn may_attach(ticket: &Ticket, by: Principal) -> Result<(), TransitionError> {
    let allowed = by.role == Role::Admin
        || by.id == ticket.created_by
        || (by.role == Role::Developer && ticket.assignees.contains(&by.id));
    if !allowed {
        return Err(TransitionError::Forbidden(
            "Only the creator, the assignees and admins can attach files to this ticket.",
        ));
    }
    if ticket.status == TicketStatus::Approved {
        return Err(TransitionError::Conflict {
            action: "attach a file to",
            current: ticket.status,
        });
    }
    Ok(())
}

/// Whether `by` may delete a file `uploader` attached to `ticket`: the uploader and admins,
/// while the ticket is not `APPROVED`.
pub fn may_remove_attachment(
    ticket: &Ticket,
    uploader: UserId,
    by: Principal,
) -> Result<(), TransitionError> {
    if !(uploader == by.id || by.role == Role::Admin) {
        return Err(TransitionError::Forbidden(
            "Only the person who attached a file and admins can delete it.",
        ));
    }
    if ticket.status == TicketStatus::Approved {
        return Err(TransitionError::Conflict {
            action: "delete a file of",
            current: ticket.status,
        });
    }
    Ok(())
}

/// Decides what `action` by `by` does to `ticket`. Permissions are checked before status, so
/// an action by the wrong person is 403 whatever the status.
pub fn transition(
    ticket: &Ticket,
    by: Principal,
    action: &Action,
) -> Result<Change, TransitionError> {
    use crate::event::EventType as E;
    use TicketStatus as S;
    let is_admin = by.role == Role::Admin;
    let is_assignee = by.role == Role::Developer && ticket.assignees.contains(&by.id);
    let is_creator = by.id == ticket.created_by;
    let conflict = |action: &Action| TransitionError::Conflict {
        action: action.name(),
        current: ticket.status,
    };
    let change = |status, event| Change {
        status,
        assignees: ticket.assignees.clone(),
        newly_assigned: Vec::new(),
        event,
        comment: None,
        reason: None,
        action: action.name(),
        edits: Vec::new(),
    };
    match action {
        Action::Open => {
            if !is_admin {
                return Err(TransitionError::Forbidden("Only admins can open tickets."));
            }
            match ticket.status {
                S::New => Ok(change(S::Open, E::TicketOpened)),
                _ => Err(conflict(action)),
            }
        }
        Action::Assign { developer_ids } => {
            if !is_admin {
                return Err(TransitionError::Forbidden(
                    "Only admins can assign tickets.",
                ));
            }
            if developer_ids.is_empty() {
                return Err(TransitionError::Invalid(
                    "developer_ids: Assign at least one developer.".into(),
                ));
            }
            let status = match ticket.status {
                S::Open | S::Assigned | S::Rejected => S::Assigned,
                S::InProgress => S::InProgress,
                _ => return Err(conflict(action)),
            };
            let mut assignees = developer_ids.clone();
            assignees.sort();
            assignees.dedup();
            let newly_assigned = assignees
                .iter()
                .copied()
                .filter(|d| !ticket.assignees.contains(d))
                .collect();
            Ok(Change {
                assignees,
                newly_assigned,
                ..change(status, E::TicketAssigned)
            })
        }
        Action::StartWork => {
            if !is_assignee {
                return Err(TransitionError::Forbidden(
                    "Only a developer assigned to this ticket can start work on it.",
                ));
            }
            match ticket.status {
                S::Assigned | S::Rejected => Ok(change(S::InProgress, E::WorkStarted)),
                _ => Err(conflict(action)),
            }
        }
        Action::FinishWork => {
            if !is_assignee {
                return Err(TransitionError::Forbidden(
                    "Only a developer assigned to this ticket can finish work on it.",
                ));
            }
            match ticket.status {
                S::InProgress => Ok(change(S::Finished, E::WorkFinished)),
                _ => Err(conflict(action)),
            }
        }
        Action::Approve | Action::Reject { .. } => {
            if !is_creator {
                return Err(TransitionError::Forbidden(
                    "Only the client who created this ticket can approve or reject it.",
                ));
            }
            if ticket.status != S::Finished {
                return Err(conflict(action));
            }
            Ok(match action {
                Action::Reject { reason } => Change {
                    reason: Some(reason.trim().to_owned()),
                    ..change(S::Rejected, E::TicketRejected)
                },
                _ => change(S::Approved, E::TicketApproved),
            })
        }
        Action::Comment { body } => {
            if !(is_admin || is_creator || is_assignee) {
                return Err(TransitionError::Forbidden(
                    "Only the creator, the assignees and admins can comment on this ticket.",
                ));
            }
            let body = body.trim();
            if body.is_empty() {
                return Err(TransitionError::Invalid(
                    "body: This field may not be blank.".into(),
                ));
            }
            if ticket.status == S::Approved {
                return Err(conflict(action));
            }
            Ok(Change {
                comment: Some(body.to_owned()),
                ..change(ticket.status, E::CommentAdded)
            })
        }
        Action::Edit(edits) => {
            if !(is_admin || is_creator) {
                return Err(TransitionError::Forbidden(
                    "Only the client who created this ticket and admins can edit it.",
                ));
            }
            if !is_admin && !matches!(ticket.status, S::New | S::Open) {
                return Err(conflict(action));
            }
            let edits = Field::ALL
                .into_iter()
                .filter_map(|field| {
                    let after = edits.value(field)?;
                    let before = field.value(ticket);
                    (after != before).then_some(FieldChange {
                        field,
                        before,
                        after,
                    })
                })
                .collect();
            Ok(Change {
                edits,
                ..change(ticket.status, E::TicketUpdated)
            })
        }
    }
}

/// A ticket for tests: `WEB-5` in project 1, created by user 3, assigned to user 2.
#[cfg(test)]
pub(crate) fn sample_ticket(status: TicketStatus) -> Ticket {
    use chrono::Utc;
    Ticket {
        id: TicketId(10),
        project_id: crate::domain::ProjectId(1),
        project_key: "WEB".into(),
        project_name: "Main Website".into(),
        number: 5,
        title: "Homepage not loading".into(),
        description: String::new(),
        priority: Priority::High,
        category: Category::Bug,
        status,
        created_by: crate::domain::UserId(3),
        created_by_name: "John Client".into(),
        assignees: vec![crate::domain::UserId(2)],
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 1,
    }
}

/// What a notification shows of its ticket, as of the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketSummary {
    /// The ticket's id.
    pub id: TicketId,
    /// The ticket's key, e.g. `WEB-5`.
    pub key: String,
    /// The title.
    pub title: String,
    /// Urgency.
    pub priority: Priority,
    /// Kind of work.
    pub category: Category,
    /// Status after the event.
    pub status: TicketStatus,
    /// The creator's display name.
    pub created_by: String,
    /// The project's name.
    pub project_name: String,
    /// When the ticket was created.
    pub created_at: DateTime<Utc>,
}

impl From<&Ticket> for TicketSummary {
    fn from(t: &Ticket) -> Self {
        TicketSummary {
            id: t.id,
            key: t.key(),
            title: t.title.clone(),
            priority: t.priority,
            category: t.category,
            status: t.status,
            created_by: t.created_by_name.clone(),
            project_name: t.project_name.clone(),
            created_at: t.created_at,
        }
    }
}

#[cfg(test)]
mod tests;
