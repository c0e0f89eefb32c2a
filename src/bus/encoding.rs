//! The text of bus messages: how each [`BusEvent`] is written as `<node>|<kind>|<payload>`
//! and read back, with the JSON forms of the notifications, inbox changes and presence
//! changes it carries.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tickethub_actors::connection::Update;
use tickethub_actors::domain::{ProjectId, UserId};
use tickethub_actors::notification::{Notification, TicketSummary};
use tickethub_actors::ports::{BoardNotice, BusEvent};
use tickethub_actors::room::{BoardAction, PresenceChange, PresenceEntry};
use tickethub_actors::ticket_domain::TicketId;

/// The wire form of a notification carried whole (times in nanoseconds since the epoch).
#[derive(Serialize, Deserialize)]
struct NotificationWire {
    id: i64,
    user: i64,
    seq: i64,
    #[serde(rename = "type")]
    kind: String,
    title: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ticket: Option<TicketWire>,
    data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    read: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_at: Option<i64>,
    at: i64,
}

/// The ticket of a carried notification.
#[derive(Serialize, Deserialize)]
struct TicketWire {
    id: i64,
    key: String,
    title: String,
    priority: String,
    category: String,
    status: String,
    by: String,
    project: String,
    at: i64,
}

fn nanos(at: &chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl From<&Notification> for NotificationWire {
    fn from(n: &Notification) -> Self {
        NotificationWire {
            id: n.id,
            user: n.user_id.0,
            seq: n.seq,
            kind: n.notification_type.as_str().to_owned(),
            title: n.title.clone(),
            message: n.message.clone(),
            ticket: n.ticket.as_ref().map(|t| TicketWire {
                id: t.id.0,
                key: t.key.clone(),
                title: t.title.clone(),
                priority: t.priority.as_str().to_owned(),
                category: t.category.as_str().to_owned(),
                status: t.status.as_str().to_owned(),
                by: t.created_by.clone(),
                project: t.project_name.clone(),
                at: nanos(&t.created_at),
            }),
            data: n.data.clone(),
            url: n.action_url.clone(),
            read: n.is_read,
            read_at: n.read_at.as_ref().map(nanos),
            at: nanos(&n.created_at),
        }
    }
}

impl NotificationWire {
    /// The notification; `None` for a value the hub would not have written.
    fn into_notification(self) -> Option<Notification> {
        let at = chrono::DateTime::from_timestamp_nanos;
        let ticket = match self.ticket {
            Some(t) => Some(TicketSummary {
                id: TicketId(t.id),
                key: t.key,
                title: t.title,
                priority: t.priority.parse().ok()?,
                category: t.category.parse().ok()?,
                status: t.status.parse().ok()?,
                created_by: t.by,
                project_name: t.project,
                created_at: at(t.at),
            }),
            None => None,
        };
        Some(Notification {
            id: self.id,
            user_id: UserId(self.user),
            seq: self.seq,
            notification_type: self.kind.parse().ok()?,
            title: self.title,
            message: self.message,
            ticket,
            data: self.data,
            action_url: self.url,
            is_read: self.read,
            read_at: self.read_at.map(at),
            created_at: at(self.at),
        })
    }
}

/// The wire form of an inbox change.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum InboxWire {
    Read {
        id: i64,
        is_read: bool,
    },
    Deleted {
        id: i64,
    },
    AllDeleted {
        count: i64,
        #[serde(default)]
        ids: Vec<i64>,
    },
    AllRead {
        count: i64,
        #[serde(default)]
        ids: Vec<i64>,
        notification_type: Option<String>,
        ticket: Option<i64>,
    },
}

impl From<&Update> for InboxWire {
    fn from(u: &Update) -> Self {
        match u.clone() {
            Update::Read { id, is_read } => InboxWire::Read { id, is_read },
            Update::Deleted { id } => InboxWire::Deleted { id },
            Update::AllDeleted { count, ids } => InboxWire::AllDeleted { count, ids },
            Update::AllRead {
                count,
                ids,
                notification_type,
                ticket,
            } => InboxWire::AllRead {
                count,
                ids,
                notification_type,
                ticket,
            },
        }
    }
}

impl From<InboxWire> for Update {
    fn from(w: InboxWire) -> Self {
        match w {
            InboxWire::Read { id, is_read } => Update::Read { id, is_read },
            InboxWire::Deleted { id } => Update::Deleted { id },
            InboxWire::AllDeleted { count, ids } => Update::AllDeleted { count, ids },
            InboxWire::AllRead {
                count,
                ids,
                notification_type,
                ticket,
            } => Update::AllRead {
                count,
                ids,
                notification_type,
                ticket,
            },
        }
    }
}

/// The wire form of a presence change.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PresenceWire {
    Joined {
        user: i64,
        username: String,
        #[serde(default)]
        display_name: String,
        #[serde(default)]
        viewing: Option<i64>,
    },
    Left {
        user: i64,
        username: String,
    },
    Viewing {
        user: i64,
        ticket: Option<i64>,
    },
    Typing {
        user: i64,
        ticket: i64,
        is_typing: bool,
    },
}

impl From<&PresenceChange> for PresenceWire {
    fn from(c: &PresenceChange) -> Self {
        match c.clone() {
            PresenceChange::Joined(entry) => PresenceWire::Joined {
                user: entry.user_id.0,
                username: entry.username,
                display_name: entry.display_name,
                viewing: entry.viewing.map(|t| t.0),
            },
            PresenceChange::Left { user_id, username } => PresenceWire::Left {
                user: user_id.0,
                username,
            },
            PresenceChange::Viewing { user_id, ticket_id } => PresenceWire::Viewing {
                user: user_id.0,
                ticket: ticket_id.map(|t| t.0),
            },
            PresenceChange::Typing {
                user_id,
                ticket_id,
                is_typing,
            } => PresenceWire::Typing {
                user: user_id.0,
                ticket: ticket_id.0,
                is_typing,
            },
        }
    }
}

impl From<PresenceWire> for PresenceChange {
    fn from(w: PresenceWire) -> Self {
        match w {
            PresenceWire::Joined {
                user,
                username,
                display_name,
                viewing,
            } => PresenceChange::Joined(PresenceEntry {
                user_id: UserId(user),
                display_name: if display_name.is_empty() {
                    username.clone()
                } else {
                    display_name
                },
                username,
                viewing: viewing.map(TicketId),
            }),
            PresenceWire::Left { user, username } => PresenceChange::Left {
                user_id: UserId(user),
                username,
            },
            PresenceWire::Viewing { user, ticket } => PresenceChange::Viewing {
                user_id: UserId(user),
                ticket_id: ticket.map(TicketId),
            },
            PresenceWire::Typing {
                user,
                ticket,
                is_typing,
            } => PresenceChange::Typing {
                user_id: UserId(user),
                ticket_id: TicketId(ticket),
                is_typing,
            },
        }
    }
}

/// `<node>|<kind>|<payload>`
pub(super) fn encode(node: &str, event: &BusEvent) -> String {
    match event {
        BusEvent::Committed(events) => {
            let pairs: Vec<String> = events.iter().map(|(u, s)| format!("{}:{s}", u.0)).collect();
            format!("{node}|n|{}", pairs.join(","))
        }
        BusEvent::Notified(notifications) => {
            let wire: Vec<NotificationWire> = notifications
                .iter()
                .map(|n| NotificationWire::from(&**n))
                .collect();
            format!(
                "{node}|m|{}",
                serde_json::to_string(&wire).expect("notifications serialize")
            )
        }
        BusEvent::Inbox(user, update) => format!(
            "{node}|i|{}|{}",
            user.0,
            serde_json::to_string(&InboxWire::from(update)).expect("inbox changes serialize")
        ),
        BusEvent::Ticket(id, version) => format!("{node}|t|{}:{version}", id.0),
        BusEvent::Board {
            project,
            ticket,
            notice,
        } => {
            let notice = match notice {
                BoardNotice::Update(action) => format!("u:{}", action.as_str()),
                BoardNotice::Comment(id) => format!("c:{id}"),
                BoardNotice::Attachments => "a:".to_owned(),
            };
            format!("{node}|b|{}:{}:{notice}", project.0, ticket.0)
        }
        BusEvent::Presence(project, change) => format!(
            "{node}|p|{}|{}",
            project.0,
            serde_json::to_string(&PresenceWire::from(change)).expect("presence changes serialize")
        ),
        BusEvent::Revoked(project, users) => format!(
            "{node}|v|{}|{}",
            project.0,
            users
                .iter()
                .map(|u| u.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        BusEvent::SessionsEnded(user) => format!("{node}|x|{}", user.0),
        BusEvent::UserChanged(user) => format!("{node}|u|{}", user.0),
        BusEvent::Resync(lost_for) => format!("{node}|r|{}", lost_for.as_millis()),
        // Told by this node's bus to itself, never published.
        BusEvent::Heard { .. } => format!("{node}|h|"),
    }
}

/// The event of another node's message; `None` for this node's own or a malformed one.
pub(super) fn decode(text: &str, own: &str) -> Option<BusEvent> {
    let (node, rest) = text.split_once('|')?;
    if node == own {
        return None;
    }
    let (kind, payload) = rest.split_once('|')?;
    match kind {
        "n" => payload
            .split(',')
            .map(|p| {
                let (u, s) = p.split_once(':')?;
                Some((UserId(u.parse().ok()?), s.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()
            .map(BusEvent::Committed),
        "m" => {
            let wire: Vec<NotificationWire> = serde_json::from_str(payload).ok()?;
            wire.into_iter()
                .map(|n| n.into_notification().map(Arc::new))
                .collect::<Option<Vec<_>>>()
                .map(BusEvent::Notified)
        }
        "i" => {
            let (user, json) = payload.split_once('|')?;
            let wire: InboxWire = serde_json::from_str(json).ok()?;
            Some(BusEvent::Inbox(UserId(user.parse().ok()?), wire.into()))
        }
        "t" => {
            let (id, version) = payload.split_once(':')?;
            Some(BusEvent::Ticket(
                TicketId(id.parse().ok()?),
                version.parse().ok()?,
            ))
        }
        "b" => {
            let mut parts = payload.splitn(4, ':');
            let project = ProjectId(parts.next()?.parse().ok()?);
            let ticket = TicketId(parts.next()?.parse().ok()?);
            let notice = match (parts.next()?, parts.next()?) {
                ("u", action) => BoardNotice::Update(BoardAction::parse(action)?),
                ("c", id) => BoardNotice::Comment(id.parse().ok()?),
                ("a", "") => BoardNotice::Attachments,
                _ => return None,
            };
            Some(BusEvent::Board {
                project,
                ticket,
                notice,
            })
        }
        "p" => {
            let (project, json) = payload.split_once('|')?;
            let wire: PresenceWire = serde_json::from_str(json).ok()?;
            Some(BusEvent::Presence(
                ProjectId(project.parse().ok()?),
                wire.into(),
            ))
        }
        "v" => {
            let (project, users) = payload.split_once('|')?;
            let users = users
                .split(',')
                .map(|u| u.parse().ok().map(UserId))
                .collect::<Option<Vec<_>>>()?;
            Some(BusEvent::Revoked(ProjectId(project.parse().ok()?), users))
        }
        "x" => Some(BusEvent::SessionsEnded(UserId(payload.parse().ok()?))),
        "u" => Some(BusEvent::UserChanged(UserId(payload.parse().ok()?))),
        // Older nodes sent no length: a gap of unknown length counts as a short one.
        "r" => Some(BusEvent::Resync(std::time::Duration::from_millis(
            payload.parse().unwrap_or(0),
        ))),
        _ => None,
    }
}
