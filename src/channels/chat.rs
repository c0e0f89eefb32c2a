//! What the chat channels (Slack, Mattermost, Microsoft Teams) share: the buttons a
//! notification's message offers, and the link it opens; and a project chat's [`Room`], where
//! each ticket is one message ([`Card`]) kept current, its thread the ticket's history.

use async_trait::async_trait;
use tickethub_actors::event::EventType;
use tickethub_actors::notification::Notification;
use tickethub_actors::ports::TransportError;
use tickethub_actors::ticket_domain::{Priority, TicketStatus};

/// The steps a notification asks for, as buttons: `(action, label, style)`. Acknowledge an
/// unread page; the ticket's next step by its status (Start work, Resolve, Approve). Who may
/// take a step is checked when it is clicked.
pub fn next_steps(n: &Notification) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut steps = Vec::new();
    if tickethub_actors::reply::is_page(n) && !n.is_read {
        steps.push(("ack", "Acknowledge", "primary"));
    }
    if let Some(t) = &n.ticket {
        steps.extend(ticket_steps(t.status));
    }
    steps
}

/// A ticket's next step by its status, as a button: Start work, Resolve, Approve.
pub fn ticket_steps(status: TicketStatus) -> Option<(&'static str, &'static str, &'static str)> {
    match status {
        TicketStatus::Assigned | TicketStatus::Rejected => {
            Some(("start_work", "Start work", "default"))
        }
        TicketStatus::InProgress => Some(("finish_work", "Resolve", "default")),
        TicketStatus::Finished => Some(("approve", "Approve", "default")),
        _ => None,
    }
}

/// The notification's link as an absolute URL: as given when it is one, else its path on
/// `public` (`--public-url`).
pub fn link(n: &Notification, public: Option<&str>) -> Option<String> {
    match (&n.action_url, public) {
        (Some(url), _) if url.starts_with("https://") || url.starts_with("http://") => {
            Some(url.clone())
        }
        (Some(path), Some(public)) if path.starts_with('/') => Some(format!("{public}{path}")),
        _ => None,
    }
}

/// The context line: the ticket, its priority and status, and a page's code.
pub fn context(n: &Notification, escape: impl Fn(&str) -> String) -> String {
    let mut context = Vec::new();
    if let Some(t) = &n.ticket {
        context.push(format!(
            "{} · {} · {}",
            escape(&t.key),
            t.priority.display(),
            t.status.display()
        ));
    }
    if tickethub_actors::reply::is_page(n) {
        context.push(format!("Page {}", tickethub_actors::reply::code(n.seq)));
    }
    context.join(" · ")
}

/// What a project chat's message about a ticket shows: the ticket as it is now, and its
/// latest event.
#[derive(Debug, Clone)]
pub struct Card {
    /// The ticket's id (its buttons name it: `ticket:<id>`).
    pub ticket: i64,
    /// Its key (`WEB-42`).
    pub key: String,
    /// Its title.
    pub title: String,
    /// Its status.
    pub status: TicketStatus,
    /// Its priority.
    pub priority: Priority,
    /// Its assignees, by name.
    pub assignees: Vec<String>,
    /// Its page on the hub (`--public-url`), if the hub has one.
    pub url: Option<String>,
    /// Its latest event, in words.
    pub latest: String,
}

impl Card {
    /// The value a button on the card carries.
    pub fn value(&self) -> String {
        format!("ticket:{}", self.ticket)
    }

    /// The facts line: priority, status, assignees.
    pub fn facts(&self) -> String {
        let mut facts = format!("{} · {}", self.priority.display(), self.status.display());
        if !self.assignees.is_empty() {
            facts.push_str(&format!(" · {}", self.assignees.join(", ")));
        }
        facts
    }
}

/// An event of a ticket in words, for a project chat's thread: `*Ann* started work.`, with
/// `bold` marking a name.
pub fn event_line(
    event: &EventType,
    actor: Option<&str>,
    assigned: &[String],
    detail: &str,
    bold: impl Fn(&str) -> String,
) -> String {
    let who = bold(actor.unwrap_or("Someone"));
    let detail = tickethub_actors::notification::excerpt(detail.trim(), 500);
    match event {
        EventType::TicketCreated => format!("{who} created the ticket."),
        EventType::TicketOpened => format!("{who} opened the ticket."),
        EventType::TicketAssigned if !assigned.is_empty() => {
            let names: Vec<String> = assigned.iter().map(|n| bold(n)).collect();
            format!("{who} assigned {}.", names.join(", "))
        }
        EventType::TicketAssigned => format!("{who} changed the assignees."),
        EventType::WorkStarted => format!("{who} started work."),
        EventType::WorkFinished => format!("{who} finished work."),
        EventType::TicketApproved => format!("{who} approved the work."),
        EventType::TicketRejected if !detail.is_empty() => {
            format!("{who} rejected the work: {detail}")
        }
        EventType::TicketRejected => format!("{who} rejected the work."),
        EventType::CommentAdded => format!("{who} commented: {detail}"),
        EventType::TicketUpdated => format!("{who} changed the {detail}."),
        other => format!("{who}: {}", other.as_str()),
    }
}

/// A chat where a project's tickets are told: each ticket is one message, posted with its
/// first event, changed in place with every later one, which its thread records.
#[async_trait]
pub trait Room: Send + Sync {
    /// Text as this chat shows it literally (Slack's control characters escaped).
    fn text(&self, text: &str) -> String {
        text.to_owned()
    }

    /// A name in bold, in this chat's markup (Markdown's by default).
    fn bold(&self, text: &str) -> String {
        format!("**{text}**")
    }

    /// Checks and normalizes a destination on this chat (a channel id, a workflow's URL).
    fn check_channel(&self, channel: &str) -> Result<String, String>;
    /// Posts the ticket's message; answers how to find it again, or `None` when the chat
    /// cannot change a message (each event is then a message of its own).
    async fn post(&self, channel: &str, card: &Card) -> Result<Option<String>, TransportError>;
    /// Changes the ticket's message; `Unreachable` when it is gone (a new one is posted).
    async fn update(&self, channel: &str, message: &str, card: &Card)
        -> Result<(), TransportError>;
    /// Adds a line to the message's thread.
    async fn reply(&self, channel: &str, message: &str, line: &str) -> Result<(), TransportError>;
}
