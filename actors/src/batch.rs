//! Batching: a person's updates about one ticket, on a channel that reaches them as a person
//! (email, SMS, WhatsApp, a chat's direct message), go out as one message when they come
//! within a window of the first (`--batch-window`, or a type's `batch` in the routing file).
//! The first waits out the window, untried; when it goes, it takes the others still queued
//! for the same ticket, channel and address along ("3 updates on WEB-42"). In-app
//! notifications and pushes go at once, and so does a page (a CRITICAL ticket's notification,
//! an escalation, whoever is on call): nothing that pages waits. Escalation steps count from
//! each notification's own time, so a batch never delays one.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::event::Reach;
use crate::notification::Notification;
use crate::routing::{Channel, EventType};

/// How long updates wait for each other, by notification type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batching {
    /// Every type's window, unless it has its own; zero batches nothing.
    pub window: Duration,
    /// The types with a window of their own (zero: that type is never batched).
    pub per_type: HashMap<EventType, Duration>,
}

impl Batching {
    /// A type's window.
    pub fn window(&self, kind: &EventType) -> Duration {
        self.per_type.get(kind).copied().unwrap_or(self.window)
    }

    /// Whether a notification may go out in a batch on `channel`: a personal channel, a
    /// ticket's notification, not a page, a type with a window.
    pub fn batches(&self, channel: Channel, n: &Notification) -> bool {
        channel.reach() == Reach::Personal
            && n.ticket.is_some()
            && !crate::reply::is_page(n)
            && !self.window(&n.notification_type).is_zero()
    }

    /// Until when a first attempt at `now` waits for the rest of its batch; `None` when it
    /// goes now.
    pub fn wait_until(
        &self,
        channel: Channel,
        n: &Notification,
        attempts: i64,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if attempts > 0 || !self.batches(channel, n) {
            return None;
        }
        let window = chrono::Duration::from_std(self.window(&n.notification_type)).ok()?;
        let until = n.created_at + window;
        (now < until).then_some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;
    use crate::ticket_domain::{Category, Priority, TicketId, TicketStatus, TicketSummary};

    fn notification(kind: EventType, priority: Priority, at: DateTime<Utc>) -> Notification {
        Notification {
            id: 1,
            user_id: UserId(1),
            seq: 1,
            notification_type: kind,
            title: "t".into(),
            message: "m".into(),
            ticket: Some(TicketSummary {
                id: TicketId(1),
                key: "WEB-1".into(),
                title: "Login".into(),
                priority,
                category: Category::Bug,
                status: TicketStatus::Open,
                created_by: "ann".into(),
                project_name: "Web".into(),
                created_at: at,
            }),
            data: "{}".into(),
            action_url: None,
            is_read: false,
            read_at: None,
            created_at: at,
        }
    }

    #[test]
    fn a_first_update_waits_out_its_type_s_window_on_personal_channels_only() {
        let at = Utc::now();
        let batching = Batching {
            window: Duration::from_secs(120),
            per_type: [(EventType::TicketCreated, Duration::ZERO)].into(),
        };
        let n = notification(EventType::TicketAssigned, Priority::High, at);
        let two_minutes = at + chrono::Duration::seconds(120);
        assert_eq!(
            batching.wait_until(Channel::Email, &n, 0, at),
            Some(two_minutes)
        );
        assert_eq!(
            batching.wait_until(Channel::Email, &n, 0, two_minutes),
            None
        );
        assert_eq!(
            batching.wait_until(Channel::Email, &n, 1, at),
            None,
            "a retry"
        );
        assert!(!batching.batches(Channel::Websocket, &n));
        assert!(!batching.batches(Channel::Webhook, &n));
        let created = notification(EventType::TicketCreated, Priority::High, at);
        assert!(!batching.batches(Channel::Email, &created), "its own zero");
        let critical = notification(EventType::TicketAssigned, Priority::Critical, at);
        assert!(!batching.batches(Channel::Email, &critical), "a page");
        assert!(!Batching::default().batches(Channel::Email, &n), "off");
    }
}
