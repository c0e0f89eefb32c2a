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
    /// The text.
    pub body: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
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
mod tests {
    use super::*;
    use crate::event::EventType as E;
    use TicketStatus as S;

    const ADMIN: Principal = Principal {
        id: UserId(1),
        role: Role::Admin,
    };
    const DEV: Principal = Principal {
        id: UserId(2),
        role: Role::Developer,
    };
    const OTHER_DEV: Principal = Principal {
        id: UserId(3),
        role: Role::Developer,
    };
    const CLIENT: Principal = Principal {
        id: UserId(4),
        role: Role::Client,
    };
    const OTHER_CLIENT: Principal = Principal {
        id: UserId(5),
        role: Role::Client,
    };

    fn ticket(status: TicketStatus) -> Ticket {
        let mut t = super::sample_ticket(status);
        t.created_by = CLIENT.id;
        t.assignees = vec![DEV.id];
        t
    }

    fn outcome(
        status: TicketStatus,
        by: Principal,
        action: Action,
    ) -> Result<(TicketStatus, E), TransitionError> {
        transition(&ticket(status), by, &action).map(|c| (c.status, c.event))
    }

    #[test]
    fn the_happy_path_walks_the_whole_lifecycle() {
        assert_eq!(
            outcome(S::New, ADMIN, Action::Open),
            Ok((S::Open, E::TicketOpened))
        );
        assert_eq!(
            outcome(
                S::Open,
                ADMIN,
                Action::Assign {
                    developer_ids: vec![DEV.id]
                }
            ),
            Ok((S::Assigned, E::TicketAssigned))
        );
        assert_eq!(
            outcome(S::Assigned, DEV, Action::StartWork),
            Ok((S::InProgress, E::WorkStarted))
        );
        assert_eq!(
            outcome(S::InProgress, DEV, Action::FinishWork),
            Ok((S::Finished, E::WorkFinished))
        );
        assert_eq!(
            outcome(S::Finished, CLIENT, Action::Approve),
            Ok((S::Approved, E::TicketApproved))
        );
        assert_eq!(
            outcome(
                S::Finished,
                CLIENT,
                Action::Reject {
                    reason: " meh ".into()
                }
            ),
            Ok((S::Rejected, E::TicketRejected))
        );
        assert_eq!(
            outcome(S::Rejected, DEV, Action::StartWork),
            Ok((S::InProgress, E::WorkStarted))
        );
    }

    /// Every action from every status, by the right person: which apply and which are 409.
    #[test]
    fn each_action_applies_only_from_its_statuses() {
        let table: &[(Action, Principal, &[TicketStatus])] = &[
            (Action::Open, ADMIN, &[S::New]),
            (
                Action::Assign {
                    developer_ids: vec![DEV.id],
                },
                ADMIN,
                &[S::Open, S::Assigned, S::InProgress, S::Rejected],
            ),
            (Action::StartWork, DEV, &[S::Assigned, S::Rejected]),
            (Action::FinishWork, DEV, &[S::InProgress]),
            (Action::Approve, CLIENT, &[S::Finished]),
            (
                Action::Reject {
                    reason: "no".into(),
                },
                CLIENT,
                &[S::Finished],
            ),
            (
                Action::Comment { body: "hi".into() },
                CLIENT,
                &[
                    S::New,
                    S::Open,
                    S::Assigned,
                    S::InProgress,
                    S::Finished,
                    S::Rejected,
                ],
            ),
        ];
        for (action, by, from) in table {
            for status in TicketStatus::ALL {
                let res = transition(&ticket(*status), *by, action);
                if from.contains(status) {
                    assert!(res.is_ok(), "{} from {status}: {res:?}", action.name());
                } else {
                    assert_eq!(
                        res,
                        Err(TransitionError::Conflict {
                            action: action.name(),
                            current: *status
                        }),
                        "{} from {status}",
                        action.name()
                    );
                }
            }
        }
    }

    #[test]
    fn assigning_in_progress_keeps_the_status_and_reports_only_new_assignees() {
        let c = transition(
            &ticket(S::InProgress),
            ADMIN,
            &Action::Assign {
                developer_ids: vec![OTHER_DEV.id, DEV.id, OTHER_DEV.id],
            },
        )
        .unwrap();
        assert_eq!(c.status, S::InProgress);
        assert_eq!(c.assignees, vec![DEV.id, OTHER_DEV.id]);
        assert_eq!(c.newly_assigned, vec![OTHER_DEV.id]);
        assert!(matches!(
            transition(
                &ticket(S::Open),
                ADMIN,
                &Action::Assign {
                    developer_ids: vec![]
                }
            ),
            Err(TransitionError::Invalid(_))
        ));
    }

    /// The wrong role or person is 403 from every status, before any status check.
    #[test]
    fn the_wrong_person_is_forbidden_whatever_the_status() {
        let table: &[(Action, &[Principal])] = &[
            (Action::Open, &[DEV, CLIENT]),
            (
                Action::Assign {
                    developer_ids: vec![DEV.id],
                },
                &[DEV, CLIENT],
            ),
            (Action::StartWork, &[ADMIN, OTHER_DEV, CLIENT]),
            (Action::FinishWork, &[ADMIN, OTHER_DEV, CLIENT]),
            (Action::Approve, &[ADMIN, DEV, OTHER_CLIENT]),
            (
                Action::Reject {
                    reason: String::new(),
                },
                &[ADMIN, DEV, OTHER_CLIENT],
            ),
            (
                Action::Comment { body: "x".into() },
                &[OTHER_DEV, OTHER_CLIENT],
            ),
        ];
        for (action, who) in table {
            for by in *who {
                for status in TicketStatus::ALL {
                    assert!(
                        matches!(
                            transition(&ticket(*status), *by, action),
                            Err(TransitionError::Forbidden(_))
                        ),
                        "{} by {by:?} from {status}",
                        action.name()
                    );
                }
            }
        }
    }

    #[test]
    fn comments_need_a_body_and_an_unapproved_ticket() {
        assert!(matches!(
            transition(
                &ticket(S::Open),
                ADMIN,
                &Action::Comment { body: "  ".into() }
            ),
            Err(TransitionError::Invalid(_))
        ));
        let c = transition(
            &ticket(S::Open),
            DEV,
            &Action::Comment {
                body: " ok ".into(),
            },
        )
        .unwrap();
        assert_eq!((c.status, c.comment.as_deref()), (S::Open, Some("ok")));
    }

    #[test]
    fn names_round_trip() {
        for s in TicketStatus::ALL {
            assert_eq!(s.as_str().parse::<TicketStatus>().unwrap(), *s);
        }
        assert_eq!(Priority::High.display(), "High");
        assert_eq!(TicketStatus::InProgress.display(), "In Progress");
        assert!("URGENT".parse::<Priority>().is_err());
        assert_eq!(ticket(S::New).key(), "WEB-5");
    }
}
