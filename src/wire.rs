//! JSON shapes shared by the REST API and the WebSocket: notifications and tickets.
//!
//! The domain types carry no serde; this module is where they become the contract's shapes.

use serde_json::{json, Map, Value};
use tickethub_actors::domain::{Role, User};
use tickethub_actors::notification::{Notification, TicketSummary};
use tickethub_actors::ports::DeliverySummary;
use tickethub_actors::routing::Channel;
use tickethub_actors::ticket_domain::{Comment, Ticket};

pub mod dialect;
mod send;

pub use send::{check_link, oncall_name, SendIn};

use tickethub_actors::ticket_domain::{Category as Cat, Priority as Pri, TicketStatus as Status};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Formats a time the way the seeds do: RFC 3339 in UTC with a `Z`.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The `ticket` object inside a notification (seed 001's shape plus `key`).
pub fn ticket_summary(t: &TicketSummary) -> Value {
    json!({
        "id": t.id.0,
        "key": t.key,
        "title": t.title,
        "priority": t.priority.as_str(),
        "priority_display": t.priority.display(),
        "category": t.category.as_str(),
        "status": t.status.as_str(),
        "created_by": t.created_by,
        "project_name": t.project_name,
        "created_at": timestamp(t.created_at),
    })
}

/// A notification's `data`: the stored JSON object, or `{}` if it is somehow not one.
pub fn data(n: &Notification) -> Value {
    serde_json::from_str::<Value>(&n.data)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// [`data`] without parsing it into a tree: the stored text when it is a JSON object (it was
/// written compact, keys in order, as a tree serializes), else `{}`.
pub fn raw_data(n: &Notification) -> &serde_json::value::RawValue {
    serde_json::from_str::<&serde_json::value::RawValue>(&n.data)
        .ok()
        .filter(|raw| raw.get().starts_with('{'))
        .unwrap_or_else(|| serde_json::from_str("{}").expect("an empty object is JSON"))
}

/// A ticket for the frame tests: critical, assigned, every field set.
#[cfg(test)]
pub(crate) fn sample_ticket(at: chrono::DateTime<chrono::Utc>) -> TicketSummary {
    use tickethub_actors::ticket_domain::{Category, Priority, TicketId, TicketStatus};
    TicketSummary {
        id: TicketId(5),
        key: "WEB-5".into(),
        title: "Login fails".into(),
        priority: Priority::Critical,
        category: Category::Bug,
        status: TicketStatus::Assigned,
        created_by: "Carl".into(),
        project_name: "Web".into(),
        created_at: at,
    }
}

/// The WebSocket `notification` frame (SPEC §3), also the items of `notifications_list`.
pub fn notification_frame(n: &Notification, replayed: bool) -> Value {
    json!({
        "type": "notification",
        "id": n.id,
        "seq": n.seq,
        "notification_type": n.notification_type.as_str(),
        "title": n.title,
        "message": n.message,
        "ticket": n.ticket.as_ref().map(ticket_summary),
        "data": data(n),
        "action_url": n.action_url,
        "is_read": n.is_read,
        "read_at": n.read_at.map(timestamp),
        "timestamp": timestamp(n.created_at),
        "replayed": replayed,
    })
}

/// [`notification_frame`] as bytes, written straight from the notification: no JSON tree is
/// built and `data` (checked to be an object) is copied as it is stored. The fields are in the
/// order `serde_json` gives a [`Value`]'s keys, so the bytes are those of the tree's wherever
/// `data` is stored compact with sorted keys, as every writer here stores it; otherwise the
/// JSON is the same, spelled as stored.
pub fn notification_frame_bytes(n: &Notification, replayed: bool) -> Vec<u8> {
    /// The fields of [`notification_frame`], in key order.
    #[derive(serde::Serialize)]
    struct Frame<'a> {
        action_url: &'a Option<String>,
        data: &'a serde_json::value::RawValue,
        id: i64,
        is_read: bool,
        message: &'a str,
        notification_type: &'a str,
        read_at: Option<String>,
        replayed: bool,
        seq: i64,
        ticket: Option<Ticket<'a>>,
        timestamp: String,
        title: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    /// [`ticket_summary`]'s fields, in key order.
    #[derive(serde::Serialize)]
    struct Ticket<'a> {
        category: &'a str,
        created_at: String,
        created_by: &'a str,
        id: i64,
        key: &'a str,
        priority: &'a str,
        priority_display: &'a str,
        project_name: &'a str,
        status: &'a str,
        title: &'a str,
    }
    let frame = Frame {
        action_url: &n.action_url,
        data: raw_data(n),
        id: n.id,
        is_read: n.is_read,
        message: &n.message,
        notification_type: n.notification_type.as_str(),
        read_at: n.read_at.map(timestamp),
        replayed,
        seq: n.seq,
        ticket: n.ticket.as_ref().map(|t| Ticket {
            category: t.category.as_str(),
            created_at: timestamp(t.created_at),
            created_by: &t.created_by,
            id: t.id.0,
            key: &t.key,
            priority: t.priority.as_str(),
            priority_display: t.priority.display(),
            project_name: &t.project_name,
            status: t.status.as_str(),
            title: &t.title,
        }),
        timestamp: timestamp(n.created_at),
        title: &n.title,
        kind: "notification",
    };
    serde_json::to_vec(&frame).expect("the frame serializes")
}

/// Seed 001's `status`, `status_display` and `sent_at`, from the outbound deliveries: `SENT`
/// once any channel delivered it (or at once, for a notification with no outbound channel: its
/// in-app copy is its delivery), `FAILED` once every channel failed for good, `PENDING` before.
fn delivery_status(
    created_at: chrono::DateTime<chrono::Utc>,
    deliveries: Option<&DeliverySummary>,
) -> (&'static str, &'static str, Option<String>) {
    match deliveries {
        None => ("SENT", "Sent", Some(timestamp(created_at))),
        Some(d) if d.sent > 0 => ("SENT", "Sent", d.first_sent_at.map(timestamp)),
        Some(d) if d.failed >= d.total => ("FAILED", "Failed", None),
        Some(_) => ("PENDING", "Pending", None),
    }
}

/// A notification in the caller's inbox, as the REST API shows it: seed 001's fields, plus
/// `seq`, `title`, `data` and `action_url`.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Notification)]
pub struct NotificationJson {
    /// The notification's id.
    pub id: i64,
    /// Its place in the recipient's sequence.
    pub seq: i64,
    /// The ticket's id, if it is about one.
    #[schema(required = true)]
    pub ticket: Option<i64>,
    /// The ticket's key.
    #[schema(required = true)]
    pub ticket_key: Option<String>,
    /// The ticket's title.
    #[schema(required = true)]
    pub ticket_title: Option<String>,
    /// The recipient's id (the caller).
    pub recipient: i64,
    /// The recipient's name.
    pub recipient_name: String,
    /// What happened, e.g. `ticket_created`; admins' sends may use types of their own.
    pub notification_type: String,
    /// The type, for people.
    pub notification_type_display: String,
    /// The title.
    pub title: String,
    /// The title again, under its older name.
    pub subject: String,
    /// The message.
    pub message: String,
    /// Extra data, a JSON object.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Where a client should take the user.
    #[schema(required = true)]
    pub action_url: Option<String>,
    /// How its outbound deliveries stand (seed 001): `SENT` once any channel delivered it, or
    /// at once with no outbound channel; `FAILED` once every channel failed for good;
    /// `PENDING` before.
    #[schema(examples("SENT"))]
    pub status: &'static str,
    /// `Sent`, `Failed` or `Pending`.
    pub status_display: &'static str,
    /// When it was first delivered.
    #[schema(required = true, format = DateTime)]
    pub sent_at: Option<String>,
    /// Whether the recipient has read it.
    pub is_read: bool,
    /// When it was read.
    #[schema(required = true, format = DateTime)]
    pub read_at: Option<String>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// The REST notification; `deliveries` is how its outbound deliveries stand, `None` if it has
/// none.
pub fn notification_rest(
    n: &Notification,
    recipient: &User,
    deliveries: Option<&DeliverySummary>,
) -> NotificationJson {
    let (status, status_display, sent_at) = delivery_status(n.created_at, deliveries);
    NotificationJson {
        id: n.id,
        seq: n.seq,
        ticket: n.ticket.as_ref().map(|t| t.id.0),
        ticket_key: n.ticket.as_ref().map(|t| t.key.clone()),
        ticket_title: n.ticket.as_ref().map(|t| t.title.clone()),
        recipient: recipient.id.0,
        recipient_name: recipient.name().to_owned(),
        notification_type: n.notification_type.as_str().to_owned(),
        notification_type_display: n.notification_type.display(),
        title: n.title.clone(),
        subject: n.title.clone(),
        message: n.message.clone(),
        data: data(n),
        action_url: n.action_url.clone(),
        status,
        status_display,
        sent_at,
        is_read: n.is_read,
        read_at: n.read_at.map(timestamp),
        created_at: timestamp(n.created_at),
    }
}

/// A ticket as the REST API shows it.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Ticket)]
pub struct TicketJson {
    /// The ticket's id.
    pub id: i64,
    /// `PROJECT-n`.
    #[schema(examples("WEB-7"))]
    pub key: String,
    /// The project's id.
    pub project: i64,
    /// The project's key.
    pub project_key: String,
    /// The project's name.
    pub project_name: String,
    /// The title.
    pub title: String,
    /// The description.
    pub description: String,
    /// The priority.
    #[schema(value_type = PriorityName)]
    pub priority: &'static str,
    /// The priority, for people.
    pub priority_display: &'static str,
    /// The category.
    #[schema(value_type = CategoryName)]
    pub category: &'static str,
    /// The category, for people.
    pub category_display: &'static str,
    /// The status.
    #[schema(value_type = TicketStatusName)]
    pub status: &'static str,
    /// The status, for people.
    pub status_display: &'static str,
    /// The creating client's id.
    pub created_by: i64,
    /// The creating client's name.
    pub created_by_name: String,
    /// The assigned developers' ids.
    pub assignees: Vec<i64>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Bumped by every change.
    pub version: i64,
}

/// A ticket as the REST API shows it.
pub fn ticket(t: &Ticket) -> TicketJson {
    TicketJson {
        id: t.id.0,
        key: t.key(),
        project: t.project_id.0,
        project_key: t.project_key.clone(),
        project_name: t.project_name.clone(),
        title: t.title.clone(),
        description: t.description.clone(),
        priority: t.priority.as_str(),
        priority_display: t.priority.display(),
        category: t.category.as_str(),
        category_display: t.category.display(),
        status: t.status.as_str(),
        status_display: t.status.display(),
        created_by: t.created_by.0,
        created_by_name: t.created_by_name.clone(),
        assignees: t.assignees.iter().map(|a| a.0).collect(),
        created_at: timestamp(t.created_at),
        updated_at: timestamp(t.updated_at),
        version: t.version,
    }
}

/// A comment on a ticket, as the REST API shows it.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Comment)]
pub struct CommentJson {
    /// The comment's id.
    pub id: i64,
    /// The ticket's id.
    pub ticket: i64,
    /// The author's id.
    pub author: i64,
    /// The author's name.
    pub author_name: String,
    /// The text (empty once deleted), Markdown as its author wrote it.
    pub body: String,
    /// The text as safe HTML (see the API guide's Markdown), for pages to show as it is.
    pub body_html: String,
    /// When it was written.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its author last edited it; null if never.
    #[schema(format = DateTime)]
    pub edited_at: Option<String>,
    /// Deleted: the comment stays in its place as a tombstone, without its text.
    pub deleted: bool,
}

/// A comment as the REST API shows it.
pub fn comment(c: &Comment) -> CommentJson {
    CommentJson {
        id: c.id,
        ticket: c.ticket_id.0,
        author: c.author.0,
        author_name: c.author_name.clone(),
        body: c.body.clone(),
        body_html: crate::markdown::to_html(&c.body),
        created_at: timestamp(c.created_at),
        edited_at: c.edited_at.map(timestamp),
        deleted: c.deleted_at.is_some(),
    }
}

/// Integers in request bodies as JSON counts them: `7` and `7.0` alike (a number without a
/// fraction is an integer in JSON Schema, and some clients' JSON writes every number so).
pub mod integer {
    use serde::de::{Deserialize, Deserializer, Error, Unexpected};

    /// One integer.
    struct Int(i64);

    impl<'de> Deserialize<'de> for Int {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match serde_json::Number::deserialize(d)? {
                n if n.is_i64() => Ok(Int(n.as_i64().expect("an i64"))),
                n => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                        Ok(Int(f as i64))
                    }
                    // serde's own wording, so the refusal points at the member by position.
                    Some(f) => Err(D::Error::invalid_value(
                        Unexpected::Float(f),
                        &"an integer of 64 bits",
                    )),
                    None => Err(D::Error::invalid_value(
                        Unexpected::Other("a number"),
                        &"an integer of 64 bits",
                    )),
                },
            }
        }
    }

    /// An integer field.
    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Int::deserialize(d).map(|i| i.0)
    }

    /// An optional integer field (`null` is absent).
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(Option::<Int>::deserialize(d)?.map(|i| i.0))
    }

    /// A list of integers.
    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        Ok(Vec::<Int>::deserialize(d)?
            .into_iter()
            .map(|i| i.0)
            .collect())
    }

    /// An optional list of integers (`null` is absent).
    pub fn option_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
        Ok(Option::<Vec<Int>>::deserialize(d)?.map(|v| v.into_iter().map(|i| i.0).collect()))
    }
}

/// One user in `presence_state` and `presence_diff`.
fn presence_entry(u: &tickethub_actors::room::PresenceEntry) -> Value {
    json!({
        "user_id": u.user_id.0,
        "username": u.username,
        "display_name": u.display_name,
        "viewing": u.viewing.map(|t| t.0),
    })
}

/// A project room's frame (seed 002's board and presence sockets).
pub fn room_event(event: &tickethub_actors::room::RoomEvent) -> Value {
    use tickethub_actors::room::{PresenceChange, RoomEvent};
    match event {
        RoomEvent::TicketUpdate { action, ticket } => json!({
            "type": "ticket_update",
            "action": action.as_str(),
            "data": {
                "ticket_id": ticket.id.0,
                "key": ticket.key(),
                "title": ticket.title,
                "priority": ticket.priority.as_str(),
                "status": {"name": ticket.status.display(), "code": ticket.status.as_str(), "color": ticket.status.color()},
                "assignees": ticket.assignees.iter().map(|a| a.0).collect::<Vec<_>>(),
                "updated_at": timestamp(ticket.updated_at),
                "version": ticket.version,
            },
        }),
        RoomEvent::CommentAdded { ticket, comment } => json!({
            "type": "comment_added",
            "data": {
                "ticket_id": ticket.id.0,
                "key": ticket.key(),
                "comment": {
                    "id": comment.id,
                    "author": comment.author_name,
                    "author_id": comment.author.0,
                    "body": comment.body,
                    "body_html": crate::markdown::to_html(&comment.body),
                    "created_at": timestamp(comment.created_at),
                },
            },
        }),
        RoomEvent::AttachmentsChanged { ticket } => json!({
            "type": "attachments_changed",
            "data": {"ticket_id": ticket.id.0, "key": ticket.key()},
        }),
        RoomEvent::PresenceState(users) => json!({
            "type": "presence_state",
            "users": users.iter().map(presence_entry).collect::<Vec<_>>(),
        }),
        RoomEvent::PresenceDiff { joins, leaves } => json!({
            "type": "presence_diff",
            "joins": joins.iter().map(presence_entry).collect::<Vec<_>>(),
            "leaves": leaves.iter().map(|(id, username)| json!({
                "user_id": id.0,
                "username": username,
            })).collect::<Vec<_>>(),
        }),
        RoomEvent::Presence(change) => match change {
            PresenceChange::Joined(entry) => json!({
                "type": "user_status",
                "action": "joined",
                "user_id": entry.user_id.0,
                "username": entry.username,
                "display_name": entry.display_name,
            }),
            PresenceChange::Left { user_id, username } => json!({
                "type": "user_status",
                "action": "left",
                "user_id": user_id.0,
                "username": username,
            }),
            PresenceChange::Viewing { user_id, ticket_id } => json!({
                "type": "ticket_viewing",
                "user_id": user_id.0,
                "ticket_id": ticket_id.map(|t| t.0),
            }),
            PresenceChange::Typing {
                user_id,
                ticket_id,
                is_typing,
            } => json!({
                "type": "user_typing",
                "user_id": user_id.0,
                "ticket_id": ticket_id.0,
                "is_typing": is_typing,
            }),
        },
        RoomEvent::Subscribed => json!({
            "type": "connection_established",
            "message": "Subscribed to the project's tickets",
        }),
    }
}

// === The wire's names of domain values, as schemas ===

/// A string schema with a fixed set of values.
fn string_enum<'a>(description: &str, values: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

/// Declares a schema-only type for a set of wire names taken from the domain, so the document
/// cannot drift from the values the hub accepts and answers.
macro_rules! wire_names {
    ($(#[$meta:meta])* $name:ident, $description:literal, $values:expr) => {
        $(#[$meta])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_enum($description, $values)
            }
        }

        impl ToSchema for $name {}
    };
}

wire_names!(
    /// A user's role.
    RoleName,
    "A user's role.",
    Role::ALL.iter().map(|r| r.as_str())
);
wire_names!(
    /// A ticket's status.
    TicketStatusName,
    "A ticket's status.",
    Status::ALL.iter().map(|s| s.as_str())
);
wire_names!(
    /// A ticket's priority.
    PriorityName,
    "A ticket's priority.",
    Pri::ALL.iter().map(|p| p.as_str())
);
wire_names!(
    /// A ticket's category.
    CategoryName,
    "A ticket's category.",
    Cat::ALL.iter().map(|c| c.as_str())
);
wire_names!(
    /// A ticket list's order.
    TicketOrderingName,
    "How a ticket list is ordered: a field, newest or largest first with `-`.",
    tickethub_actors::ports::TicketOrdering::NAMES.iter().map(|(name, _)| *name)
);
wire_names!(
    /// A delivery channel.
    ChannelName,
    "A way to reach a user.",
    Channel::all().into_iter().map(|c| c.as_str())
);
wire_names!(
    /// The channel of one delivery: a push's is its carrier.
    DeliveryChannelName,
    "The channel a delivery went on: the in-app record, email, WhatsApp, SMS, a webhook, or a push carrier (webpush, fcm, apns).",
    Channel::registered()
        .into_iter()
        .filter(|(c, _)| *c != Channel::Push)
        .map(|(c, _)| c.as_str())
);

#[cfg(test)]
mod tests {
    use super::*;
    use tickethub_actors::domain::UserId;
    #[test]
    fn seed_001_status_follows_the_deliveries() {
        let created = chrono::Utc::now() - chrono::Duration::seconds(5);
        let at = chrono::Utc::now();
        let summary = |total, sent, failed| DeliverySummary {
            total,
            sent,
            failed,
            first_sent_at: (sent > 0).then_some(at),
        };
        assert_eq!(
            delivery_status(created, None),
            ("SENT", "Sent", Some(timestamp(created)))
        );
        assert_eq!(
            delivery_status(created, Some(&summary(2, 0, 0))),
            ("PENDING", "Pending", None)
        );
        assert_eq!(
            delivery_status(created, Some(&summary(2, 0, 1))),
            ("PENDING", "Pending", None)
        );
        assert_eq!(
            delivery_status(created, Some(&summary(2, 1, 1))),
            ("SENT", "Sent", Some(timestamp(at)))
        );
        assert_eq!(
            delivery_status(created, Some(&summary(2, 0, 2))),
            ("FAILED", "Failed", None)
        );
    }

    /// The frame written from the notification is the frame of the JSON tree, byte for byte,
    /// with and without a ticket, a read time, a link, and with stored data that is not an
    /// object or not JSON at all.
    #[test]
    fn the_notification_frame_bytes_are_those_of_the_tree() {
        let at = chrono::Utc::now();
        let plain = Notification {
            id: 7,
            user_id: UserId(3),
            seq: 42,
            notification_type: "ticket_assigned".parse().unwrap(),
            title: "Ticket \"Assigned\"".into(),
            message: "WEB-5 is yours\n— ünïcode \u{1F600}".into(),
            ticket: None,
            data: r#"{"a":[1,2,{"b":null}],"z":"x"}"#.into(),
            action_url: None,
            is_read: false,
            read_at: None,
            created_at: at,
        };
        let full = Notification {
            ticket: Some(sample_ticket(at)),
            action_url: Some("/tickets/5".into()),
            is_read: true,
            read_at: Some(at),
            ..plain.clone()
        };
        let not_an_object = Notification {
            data: "[1,2]".into(),
            ..plain.clone()
        };
        let not_json = Notification {
            data: "{oops".into(),
            ..plain.clone()
        };
        for n in [&plain, &full, &not_an_object, &not_json] {
            for replayed in [false, true] {
                let tree = serde_json::to_vec(&notification_frame(n, replayed)).unwrap();
                let bytes = notification_frame_bytes(n, replayed);
                assert_eq!(
                    String::from_utf8(bytes).unwrap(),
                    String::from_utf8(tree).unwrap()
                );
            }
        }
    }
}

#[cfg(test)]
mod link_tests {
    use super::check_link;

    #[test]
    fn links_are_paths_or_web_urls() {
        for ok in [
            "/tickets/5",
            "/a?b=c#d",
            "https://app.example.com/t/5",
            "HTTP://Example.com",
        ] {
            assert!(check_link(ok).is_ok(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>",
            "//evil.example/x",
            "/\\evil.example",
            "https://",
            "tickets/5",
            "vbscript:x",
            "/a b",
            "java\tscript:alert(1)",
        ] {
            assert!(check_link(bad).is_err(), "{bad}");
        }
    }
}
wire_names!(
    /// A dialect of the notification frames (the seeds' shapes).
    DialectName,
    "The frame shapes of a connection: seed 001's (the default), or seed 002's, 003's or 004's.",
    dialect::Dialect::ALL.iter().map(|d| d.name())
);

/// One event of an event stream (`text/event-stream`), as a client's parser hands it over.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// The event's name: `notification`, `connection_established`, `replay_complete`,
    /// `replay_truncated`, `notification_updated`, `notifications_cleared`, `all_marked_read`,
    /// `token_expiring`, `error` or `shutdown`.
    event: String,
    /// The frame, as JSON text: the socket's frame of the same name, in the stream's dialect.
    data: String,
    /// A notification's seq (resume with it as `Last-Event-ID`).
    id: Option<String>,
}
