//! Notifications: the stored record, the draft committed with a change, and their wording.

use chrono::{DateTime, Utc};

use crate::domain::{Role, UserId};
use crate::event::{Channel, EventType};
use crate::ticket_domain::Ticket;
pub use crate::ticket_domain::TicketSummary;

/// A stored notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The notification's id.
    pub id: i64,
    /// Its recipient.
    pub user_id: UserId,
    /// The recipient's sequence number: 1, 2, 3, … with no gaps.
    pub seq: i64,
    /// The type.
    pub notification_type: EventType,
    /// A short title ("New Ticket Created").
    pub title: String,
    /// The sentence shown to the user.
    pub message: String,
    /// The ticket it is about, if any.
    pub ticket: Option<TicketSummary>,
    /// Extra data: a JSON object, validated at the edge, carried as text.
    pub data: String,
    /// Where a click should lead.
    pub action_url: Option<String>,
    /// Whether the user has read it.
    pub is_read: bool,
    /// When it was read.
    pub read_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A notification to commit, before it has an id and a seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// Who receives it.
    pub recipient: UserId,
    /// The type.
    pub notification_type: EventType,
    /// A short title.
    pub title: String,
    /// The sentence.
    pub message: String,
    /// The ticket it is about.
    pub ticket: Option<TicketSummary>,
    /// Extra data, a JSON object as text.
    pub data: String,
    /// Where a click should lead.
    pub action_url: Option<String>,
    /// The outbound deliveries to queue with it: channel and address.
    pub deliveries: Vec<(Channel, String)>,
    /// Why it is committed: the action and who took it (a ticket change records its event
    /// separately).
    pub cause: Cause,
    /// The escalation steps to schedule for it.
    pub escalations: Vec<crate::policy::PlannedStep>,
    /// Everyone its webhook deliveries speak for. A commit's drafts with the same content share
    /// one webhook POST per URL: the first draft carries the webhook deliveries and lists every
    /// recipient here; the others carry none. Empty means the draft's own recipient.
    pub webhook_recipients: Vec<Recipient>,
}

/// The action behind a commit of notifications and who took it, for their timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cause {
    /// `send`, `register`, `escalate`, a ticket action…; empty when not recorded.
    pub action: &'static str,
    /// Who took it.
    pub actor: Option<UserId>,
}

/// A recipient named in a webhook event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Their id.
    pub user_id: crate::domain::UserId,
    /// Their login name.
    pub username: String,
    /// The name shown to other people (may be empty).
    pub display_name: String,
}

/// What an event says, besides the ticket itself.
#[derive(Clone, Debug, Default)]
pub struct EventDetails<'a> {
    /// The acting user's display name.
    pub actor_name: &'a str,
    /// The rejection reason.
    pub reason: Option<&'a str>,
    /// The comment text.
    pub comment: Option<&'a str>,
    /// The fields an edit changed.
    pub changes: &'a [crate::ticket_domain::FieldChange],
}

/// The title and message of a ticket event, in the seeds' words.
pub fn ticket_wording(event: &EventType, t: &Ticket, d: &EventDetails<'_>) -> (String, String) {
    let key = t.key();
    let (title, message) = match event {
        EventType::TicketCreated => (
            "New Ticket Created",
            format!(
                "New {} priority ticket created: {}",
                t.priority.display(),
                t.title
            ),
        ),
        EventType::TicketOpened => (
            "Ticket Opened",
            format!("Your ticket {key} has been opened: {}", t.title),
        ),
        EventType::TicketAssigned => (
            "Ticket Assigned",
            format!("You have been assigned to ticket {key}: {}", t.title),
        ),
        EventType::WorkStarted => (
            "Work Started",
            format!(
                "{} started work on your ticket {key}: {}",
                d.actor_name, t.title
            ),
        ),
        EventType::WorkFinished => (
            "Work Finished",
            format!(
                "{} finished work on ticket {key}: {}",
                d.actor_name, t.title
            ),
        ),
        EventType::TicketApproved => (
            "Ticket Approved",
            format!("{} approved ticket {key}: {}", d.actor_name, t.title),
        ),
        EventType::TicketRejected => (
            "Ticket Rejected",
            match d.reason.filter(|r| !r.is_empty()) {
                Some(reason) => format!("{} rejected ticket {key}: {reason}", d.actor_name),
                None => format!("{} rejected ticket {key}: {}", d.actor_name, t.title),
            },
        ),
        EventType::CommentAdded => (
            "New Comment",
            format!(
                "{} commented on {key}: {}",
                d.actor_name,
                excerpt(d.comment.unwrap_or_default(), 140)
            ),
        ),
        EventType::TicketMentioned => (
            "You Were Mentioned",
            format!(
                "{} mentioned you on {key}: {}",
                d.actor_name,
                excerpt(d.comment.unwrap_or(&t.title), 140)
            ),
        ),
        EventType::TicketUpdated => (
            "Ticket Updated",
            format!(
                "{} changed {key}: {}",
                d.actor_name,
                changed_fields(t, d.changes)
            ),
        ),
        EventType::UserRegistered | EventType::Custom(_) => ("Notification", t.title.clone()),
    };
    (title.to_owned(), message)
}

/// What an edit changed, in words: "priority High → Critical, the description".
fn changed_fields(t: &Ticket, changes: &[crate::ticket_domain::FieldChange]) -> String {
    use crate::ticket_domain::{Category, Field, Priority};
    let words: Vec<String> = changes
        .iter()
        .map(|c| match c.field {
            Field::Title => format!("the title to \"{}\"", excerpt(&c.after, 80)),
            Field::Description => "the description".to_owned(),
            Field::Priority => {
                let name = |v: &str| {
                    v.parse::<Priority>()
                        .map_or(v.to_owned(), |p| p.display().to_owned())
                };
                format!("priority {} → {}", name(&c.before), name(&c.after))
            }
            Field::Category => {
                let name = |v: &str| {
                    v.parse::<Category>()
                        .map_or(v.to_owned(), |p| p.display().to_owned())
                };
                format!("category {} → {}", name(&c.before), name(&c.after))
            }
        })
        .collect();
    if words.is_empty() {
        t.title.clone()
    } else {
        words.join(", ")
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The most notification ids a bulk [`Update`] carries: a mark-all of more tells the rest again
/// one by one at the next catch-up, as any change a node had not told.
pub const UPDATE_IDS: usize = 1000;

/// A change another socket (or the REST API, or another hub process) made to the user's inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// A notification was marked read or unread.
    Read {
        /// The notification.
        id: i64,
        /// Its new state.
        is_read: bool,
    },
    /// A notification was deleted.
    Deleted {
        /// The notification.
        id: i64,
    },
    /// Every notification was deleted.
    AllDeleted {
        /// How many.
        count: i64,
        /// Which, up to [`UPDATE_IDS`] of them: the user actors remember them as told, so
        /// that a catch-up does not tell them again one by one. Not sent to sockets.
        ids: Vec<i64>,
    },
    /// Every unread notification matching a filter was marked read: one frame, however many.
    AllRead {
        /// How many changed.
        count: i64,
        /// Which, up to [`UPDATE_IDS`] of them, as for [`Update::AllDeleted`].
        ids: Vec<i64>,
        /// The type filter, if any.
        notification_type: Option<String>,
        /// The ticket filter, if any.
        ticket: Option<i64>,
    },
}

/// Who an admin's notification goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// These users.
    Users(Vec<UserId>),
    /// Every active user of a role.
    Role(Role),
    /// Whoever this on-call target names when the send commits (see
    /// [`crate::notifier::Deps::page`]).
    OnCall(crate::oncall::Target),
}

/// An admin's own notification.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// Who receives it.
    pub to: Recipients,
    /// Its type (any name).
    pub notification_type: String,
    /// Its title.
    pub title: String,
    /// Its sentence.
    pub message: String,
    /// Extra data, a JSON object as text.
    pub data: String,
    /// Where a click should lead.
    pub link: Option<String>,
    /// Outbound channels besides the in-app record.
    pub channels: Vec<Channel>,
    /// The admin who sends it, for the timeline.
    pub sent_by: Option<UserId>,
    /// The idempotent request that sends it, marked committed with the notifications.
    pub idempotency: Option<crate::domain::IdempotencyMark>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProjectId;
    use crate::ticket_domain::{Category, Priority, TicketId, TicketStatus};

    #[test]
    fn ticket_created_reads_like_the_seed() {
        let t = Ticket {
            id: TicketId(5),
            project_id: ProjectId(1),
            project_key: "WEB".into(),
            project_name: "Main Website".into(),
            number: 5,
            title: "Homepage not loading".into(),
            description: String::new(),
            priority: Priority::High,
            category: Category::Bug,
            status: TicketStatus::New,
            created_by: UserId(3),
            created_by_name: "John Client".into(),
            assignees: vec![],
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        };
        let (title, message) =
            ticket_wording(&EventType::TicketCreated, &t, &EventDetails::default());
        assert_eq!(title, "New Ticket Created");
        assert_eq!(
            message,
            "New High priority ticket created: Homepage not loading"
        );
        assert_eq!(excerpt("abcdef", 4), "abc…");
    }
}

/// An inbox change read back from the database: whose, what the notification is now, and when
/// it last changed (by [`crate::ports::Store::now`]'s clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxChange {
    /// Whose inbox.
    pub user: UserId,
    /// The notification as it stands.
    pub update: Update,
    /// When it changed.
    pub at: DateTime<Utc>,
}
