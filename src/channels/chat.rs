//! What the chat channels (Slack, Mattermost) share: the buttons a notification's message
//! offers, and the link it opens.

use tickethub_actors::notification::Notification;
use tickethub_actors::ticket_domain::TicketStatus;

/// The steps a notification asks for, as buttons: `(action, label, style)`. Acknowledge an
/// unread page; the ticket's next step by its status (Start work, Resolve, Approve). Who may
/// take a step is checked when it is clicked.
pub fn next_steps(n: &Notification) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut steps = Vec::new();
    if tickethub_actors::reply::is_page(n) && !n.is_read {
        steps.push(("ack", "Acknowledge", "primary"));
    }
    match n.ticket.as_ref().map(|t| t.status) {
        Some(TicketStatus::Assigned | TicketStatus::Rejected) => {
            steps.push(("start_work", "Start work", "default"))
        }
        Some(TicketStatus::InProgress) => steps.push(("finish_work", "Resolve", "default")),
        Some(TicketStatus::Finished) => steps.push(("approve", "Approve", "default")),
        _ => {}
    }
    steps
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
