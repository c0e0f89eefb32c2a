//! The words routing is written in: the kinds of events, the channels that reach a user, and
//! the groups of people an event concerns. Pure, no serde.

use std::fmt;
use std::str::FromStr;

/// The kind of a notification (`notification_type` on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A client created a ticket.
    TicketCreated,
    /// An admin opened a ticket.
    TicketOpened,
    /// An admin assigned developers.
    TicketAssigned,
    /// A developer started work.
    WorkStarted,
    /// A developer finished work.
    WorkFinished,
    /// The client approved the work.
    TicketApproved,
    /// The client rejected the work.
    TicketRejected,
    /// Someone commented.
    CommentAdded,
    /// A client signed up.
    UserRegistered,
    /// An admin's own type, sent with `send`.
    Custom(String),
}

impl EventType {
    /// The built-in types.
    pub const BUILT_IN: [EventType; 9] = [
        EventType::TicketCreated,
        EventType::TicketOpened,
        EventType::TicketAssigned,
        EventType::WorkStarted,
        EventType::WorkFinished,
        EventType::TicketApproved,
        EventType::TicketRejected,
        EventType::CommentAdded,
        EventType::UserRegistered,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::TicketCreated => "ticket_created",
            EventType::TicketOpened => "ticket_opened",
            EventType::TicketAssigned => "ticket_assigned",
            EventType::WorkStarted => "work_started",
            EventType::WorkFinished => "work_finished",
            EventType::TicketApproved => "ticket_approved",
            EventType::TicketRejected => "ticket_rejected",
            EventType::CommentAdded => "comment_added",
            EventType::UserRegistered => "user_registered",
            EventType::Custom(s) => s,
        }
    }

    /// A human name for the type.
    pub fn display(&self) -> String {
        match self {
            EventType::Custom(s) => s.replace('_', " "),
            other => {
                let s = other.as_str().replace('_', " ");
                let mut c = s.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
        }
    }
}

impl FromStr for EventType {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(EventType::BUILT_IN
            .iter()
            .find(|e| e.as_str() == s)
            .cloned()
            .unwrap_or_else(|| EventType::Custom(s.to_owned())))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A way to reach a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// In-app, over the WebSocket; always stored.
    Websocket,
    /// Email to the user's address.
    Email,
    /// WhatsApp to the user's number.
    Whatsapp,
    /// SMS (Twilio's Messages API) to the user's phone number.
    Sms,
    /// A signed POST to each of the deployment's webhook URLs.
    Webhook,
    /// A push notification to each of the user's registered devices. A routing channel: the
    /// commit queues one delivery per device, on the device's own carrier below.
    Push,
    /// Web Push (RFC 8030) to a browser's subscription: the carrier of `push` for one device.
    Webpush,
    /// Firebase Cloud Messaging to an app's token: the carrier of `push` for one device.
    Fcm,
    /// Apple Push Notification service to a device token: the carrier of `push` for one device.
    Apns,
}

impl Channel {
    /// Every channel a route, a preference, an escalation step or a send names.
    pub const ALL: [Channel; 6] = [
        Channel::Websocket,
        Channel::Email,
        Channel::Whatsapp,
        Channel::Sms,
        Channel::Webhook,
        Channel::Push,
    ];

    /// The carriers of `push`, one per kind of device.
    pub const CARRIERS: [Channel; 3] = [Channel::Webpush, Channel::Fcm, Channel::Apns];

    /// The channels with an outbox and an actor that drains it (everything but the in-app
    /// record, and `push`, which is queued on its carriers).
    pub const OUTBOUND: [Channel; 7] = [
        Channel::Email,
        Channel::Whatsapp,
        Channel::Sms,
        Channel::Webhook,
        Channel::Webpush,
        Channel::Fcm,
        Channel::Apns,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Websocket => "websocket",
            Channel::Email => "email",
            Channel::Whatsapp => "whatsapp",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
            Channel::Push => "push",
            Channel::Webpush => "webpush",
            Channel::Fcm => "fcm",
            Channel::Apns => "apns",
        }
    }

    /// The outbox channels a delivery on this channel is queued on: the carriers for `push`,
    /// the channel itself otherwise.
    pub fn queues(self) -> &'static [Channel] {
        match self {
            Channel::Push => &Channel::CARRIERS,
            Channel::Websocket => &[],
            Channel::Email => &[Channel::Email],
            Channel::Whatsapp => &[Channel::Whatsapp],
            Channel::Sms => &[Channel::Sms],
            Channel::Webhook => &[Channel::Webhook],
            Channel::Webpush => &[Channel::Webpush],
            Channel::Fcm => &[Channel::Fcm],
            Channel::Apns => &[Channel::Apns],
        }
    }

    /// The channel an outbox row names (`email` … `apns`), as stored.
    pub fn stored(s: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .chain(Channel::CARRIERS)
            .find(|c| c.as_str() == s)
    }
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown channel `{s}` (expected websocket, email, whatsapp, sms, webhook or push)"
                )
            })
    }
}

/// A group of recipients, resolved against one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every active admin.
    Admins,
    /// Every active super admin.
    SuperAdmins,
    /// The ticket's creator.
    Creator,
    /// Every assignee of the ticket (after the change).
    Assignees,
    /// Assignees added by this change.
    NewlyAssigned,
}

impl Audience {
    /// The TOML name.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Admins => "admins",
            Audience::SuperAdmins => "super_admins",
            Audience::Creator => "creator",
            Audience::Assignees => "assignees",
            Audience::NewlyAssigned => "newly_assigned",
        }
    }
}

impl FromStr for Audience {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admins" => Ok(Audience::Admins),
            "super_admins" => Ok(Audience::SuperAdmins),
            "creator" => Ok(Audience::Creator),
            "assignees" => Ok(Audience::Assignees),
            "newly_assigned" => Ok(Audience::NewlyAssigned),
            other => Err(format!(
                "unknown audience `{other}` (expected admins, super_admins, creator, assignees or newly_assigned)"
            )),
        }
    }
}
