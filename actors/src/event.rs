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
    /// The creator or an admin changed the ticket's title, description, priority or category.
    TicketUpdated,
    /// Someone mentioned the user (`@name`) in a comment or a ticket's description.
    TicketMentioned,
    /// A client signed up.
    UserRegistered,
    /// An admin's own type, sent with `send`.
    Custom(String),
}

impl EventType {
    /// The built-in types.
    pub const BUILT_IN: [EventType; 11] = [
        EventType::TicketCreated,
        EventType::TicketOpened,
        EventType::TicketAssigned,
        EventType::WorkStarted,
        EventType::WorkFinished,
        EventType::TicketApproved,
        EventType::TicketRejected,
        EventType::CommentAdded,
        EventType::TicketUpdated,
        EventType::TicketMentioned,
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
            EventType::TicketUpdated => "ticket_updated",
            EventType::TicketMentioned => "ticket_mentioned",
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

/// How a channel reaches people, which decides what routing does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reach {
    /// The in-app record, over the WebSocket and the event stream: always stored.
    InApp,
    /// An address of each user's own (an email address, a number, a chat id), verified
    /// before anything but its verification message goes to it.
    Personal,
    /// The deployment's own destinations (webhook URLs): one delivery per event and
    /// destination, speaking for every recipient.
    Deployment,
    /// The user's registered devices: a routing channel, queued per device on the device's
    /// own carrier.
    Devices,
    /// The carrier of one kind of device (Web Push, FCM, APNs).
    Carrier,
}

/// A way to reach a user: a channel of the registry, by its wire and storage name.
///
/// The channels are plug-ins: the built-in ones are below, and a deployment's own register
/// with [`Channel::register`] before the hub starts. Two channels are equal when their names
/// are.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(&'static str);

/// The registry: every channel's name and reach, the built-in ones first.
static REGISTRY: std::sync::RwLock<Vec<(Channel, Reach)>> = std::sync::RwLock::new(Vec::new());

/// The built-in channels, in the order lists show them.
const BUILT_IN: [(Channel, Reach); 9] = [
    (Channel::Websocket, Reach::InApp),
    (Channel::Email, Reach::Personal),
    (Channel::Whatsapp, Reach::Personal),
    (Channel::Sms, Reach::Personal),
    (Channel::Webhook, Reach::Deployment),
    (Channel::Push, Reach::Devices),
    (Channel::Webpush, Reach::Carrier),
    (Channel::Fcm, Reach::Carrier),
    (Channel::Apns, Reach::Carrier),
];

#[allow(non_upper_case_globals)]
impl Channel {
    /// In-app, over the WebSocket; always stored.
    pub const Websocket: Channel = Channel("websocket");
    /// Email to the user's address.
    pub const Email: Channel = Channel("email");
    /// WhatsApp to the user's number.
    pub const Whatsapp: Channel = Channel("whatsapp");
    /// SMS (Twilio's Messages API) to the user's phone number.
    pub const Sms: Channel = Channel("sms");
    /// A signed POST to each of the deployment's webhook URLs.
    pub const Webhook: Channel = Channel("webhook");
    /// A push notification to each of the user's registered devices. A routing channel: the
    /// commit queues one delivery per device, on the device's own carrier below.
    pub const Push: Channel = Channel("push");
    /// Web Push (RFC 8030) to a browser's subscription: the carrier of `push` for one device.
    pub const Webpush: Channel = Channel("webpush");
    /// Firebase Cloud Messaging to an app's token: the carrier of `push` for one device.
    pub const Fcm: Channel = Channel("fcm");
    /// Apple Push Notification service to a device token: the carrier of `push` for one device.
    pub const Apns: Channel = Channel("apns");

    /// Registers a channel of this deployment's (a plug-in), reaching people as `reach`;
    /// registering a name again changes nothing. Answers the channel. A name is 1 to 32
    /// lowercase letters, digits and `_`.
    pub fn register(name: &'static str, reach: Reach) -> Result<Channel, String> {
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("`{name}` is not a channel name"));
        }
        let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
        Self::fill(&mut registry);
        if let Some((channel, known)) = registry.iter().find(|(c, _)| c.0 == name) {
            if *known != reach {
                return Err(format!(
                    "`{name}` reaches people as {known:?}, not {reach:?}"
                ));
            }
            return Ok(*channel);
        }
        if reach == Reach::InApp || reach == Reach::Devices {
            return Err(format!("`{name}`: only the hub's own channels reach so"));
        }
        let channel = Channel(name);
        registry.push((channel, reach));
        Ok(channel)
    }

    fn fill(registry: &mut Vec<(Channel, Reach)>) {
        if registry.is_empty() {
            registry.extend(BUILT_IN);
        }
    }

    /// Every registered channel with its reach, the built-in ones first.
    pub fn registered() -> Vec<(Channel, Reach)> {
        if let Ok(registry) = REGISTRY.read() {
            if !registry.is_empty() {
                return registry.clone();
            }
        }
        let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
        Self::fill(&mut registry);
        registry.clone()
    }

    /// How this channel reaches people (`Personal` for a name nobody registered).
    pub fn reach(self) -> Reach {
        BUILT_IN
            .iter()
            .chain(Self::registered().iter())
            .find(|(c, _)| *c == self)
            .map_or(Reach::Personal, |(_, r)| *r)
    }

    /// Every channel a route, a preference, an escalation step or a send names: all but the
    /// carriers.
    pub fn all() -> Vec<Channel> {
        Self::registered()
            .into_iter()
            .filter(|(_, r)| *r != Reach::Carrier)
            .map(|(c, _)| c)
            .collect()
    }

    /// The carriers of `push`, one per kind of device.
    pub const CARRIERS: [Channel; 3] = [Channel::Webpush, Channel::Fcm, Channel::Apns];

    /// The channels with an outbox and an actor that drains it (everything but the in-app
    /// record, and `push`, which is queued on its carriers).
    pub fn outbound() -> Vec<Channel> {
        Self::registered()
            .into_iter()
            .filter(|(_, r)| !matches!(r, Reach::InApp | Reach::Devices))
            .map(|(c, _)| c)
            .collect()
    }

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The outbox channels a delivery on this channel is queued on: the carriers for `push`,
    /// none for the in-app record, the channel itself otherwise.
    pub fn queues(self) -> Vec<Channel> {
        match self.reach() {
            Reach::Devices => Channel::CARRIERS.to_vec(),
            Reach::InApp => Vec::new(),
            _ => vec![self],
        }
    }

    /// The channel an outbox row or a device names, as stored: any registered channel.
    pub fn stored(s: &str) -> Option<Channel> {
        Self::registered()
            .into_iter()
            .map(|(c, _)| c)
            .find(|c| c.0 == s)
    }
}

/// The built-in channels as items of their own, for `use channel::*`.
#[allow(non_upper_case_globals)]
pub mod channel {
    use super::Channel;
    /// See [`Channel::Websocket`].
    pub const Websocket: Channel = Channel::Websocket;
    /// See [`Channel::Email`].
    pub const Email: Channel = Channel::Email;
    /// See [`Channel::Whatsapp`].
    pub const Whatsapp: Channel = Channel::Whatsapp;
    /// See [`Channel::Sms`].
    pub const Sms: Channel = Channel::Sms;
    /// See [`Channel::Webhook`].
    pub const Webhook: Channel = Channel::Webhook;
    /// See [`Channel::Push`].
    pub const Push: Channel = Channel::Push;
    /// See [`Channel::Webpush`].
    pub const Webpush: Channel = Channel::Webpush;
    /// See [`Channel::Fcm`].
    pub const Fcm: Channel = Channel::Fcm;
    /// See [`Channel::Apns`].
    pub const Apns: Channel = Channel::Apns;
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Channels' names as a sentence lists them: `email, whatsapp, sms or push`.
pub fn listed(channels: &[Channel], last_word: &str) -> String {
    let names: Vec<&str> = channels.iter().map(|c| c.0).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("{} {last_word} {last}", rest.join(", "))
        }
        _ => names.join(""),
    }
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = Channel::all();
        all.iter()
            .copied()
            .find(|c| c.0 == s)
            .ok_or_else(|| format!("unknown channel `{s}` (expected {})", listed(&all, "or")))
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
    /// The people the change's text mentions (`@name`), who may see the ticket.
    Mentioned,
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
            Audience::Mentioned => "mentioned",
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
            "mentioned" => Ok(Audience::Mentioned),
            other => Err(format!(
                "unknown audience `{other}` (expected admins, super_admins, creator, assignees, newly_assigned or mentioned)"
            )),
        }
    }
}
