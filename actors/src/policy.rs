//! Escalation policies as data: which notifications a policy covers, and the steps it plans
//! for one. Pure, no serde; the escalation actor (`crate::escalation`) fires the steps.

use std::time::Duration;

use crate::event::{Audience, Channel, EventType};
use crate::ticket_domain::{Category, Priority, TicketSummary};

/// The type of the notification that tells the `also` audience about an escalation.
pub const ESCALATED: &str = "ticket_escalated";

/// What counts as seen: a step fires only while its notification is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unless {
    /// The recipient read it (on any client, REST or socket). The default: an `ack` only says
    /// a client showed it in a list, perhaps in a background tab.
    Read,
    /// A client of the recipient acknowledged it (or it was read).
    Acked,
}

impl Unless {
    /// The TOML and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unless::Read => "read",
            Unless::Acked => "acked",
        }
    }
}

impl std::str::FromStr for Unless {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Unless::Read),
            "acked" => Ok(Unless::Acked),
            other => Err(format!(
                "unknown `unless` value `{other}` (expected read or acked)"
            )),
        }
    }
}

/// One step of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// How long after the notification was committed.
    pub after: Duration,
    /// What stops it.
    pub unless: Unless,
    /// The outbound channels it sends the recipient's notification on.
    pub channels: Vec<Channel>,
    /// Who else is told, with a `ticket_escalated` notification.
    pub also: Vec<Audience>,
    /// Whoever these on-call schedules name as the step fires is told too (`also =
    /// ["oncall:primary"]`, or `"oncall:primary:next"` for the person after them).
    pub oncall: Vec<crate::oncall::Target>,
    /// With `push` among the channels: how long the push then waits for the notification to
    /// be seen before it goes (none: at once).
    pub push_unless_seen: Option<Duration>,
}

/// A policy: which notifications it escalates, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Its name, for timelines and operators (`escalation-1` if the file gives none).
    pub name: String,
    /// The notification types it covers.
    pub events: Vec<EventType>,
    /// Only tickets of these priorities (empty: any, and notifications without a ticket).
    pub priorities: Vec<Priority>,
    /// Only tickets of these categories (empty: any).
    pub categories: Vec<Category>,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

impl Policy {
    /// Whether the policy covers a notification of `event` about `ticket`.
    pub fn matches(&self, event: &EventType, ticket: Option<&TicketSummary>) -> bool {
        if !self.events.contains(event) {
            return false;
        }
        let priority_ok = self.priorities.is_empty()
            || ticket.is_some_and(|t| self.priorities.contains(&t.priority));
        let category_ok = self.categories.is_empty()
            || ticket.is_some_and(|t| self.categories.contains(&t.category));
        priority_ok && category_ok
    }
}

/// A step to schedule for one notification (or, read back, a scheduled one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStep {
    /// The policy's name.
    pub policy: String,
    /// The step's number in its policy, from 1.
    pub step: i64,
    /// How long after the commit it is due.
    pub after: Duration,
    /// What stops it.
    pub unless: Unless,
    /// Its channels.
    pub channels: Vec<Channel>,
    /// Who else is told.
    pub also: Vec<Audience>,
    /// See [`Step::oncall`].
    pub oncall: Vec<crate::oncall::Target>,
    /// See [`Step::push_unless_seen`].
    pub push_unless_seen: Option<Duration>,
}

/// The steps of the first policy that covers a notification of `event` about `ticket`.
pub fn plan(
    policies: &[Policy],
    event: &EventType,
    ticket: Option<&TicketSummary>,
) -> Vec<PlannedStep> {
    policies
        .iter()
        .find(|p| p.matches(event, ticket))
        .map(|p| {
            p.steps
                .iter()
                .enumerate()
                .map(|(i, s)| PlannedStep {
                    policy: p.name.clone(),
                    step: i as i64 + 1,
                    after: s.after,
                    unless: s.unless,
                    channels: s.channels.clone(),
                    also: s.also.clone(),
                    oncall: s.oncall.clone(),
                    push_unless_seen: s.push_unless_seen,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A human duration: `90s`, `5m`, `1h30m`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket_domain::TicketStatus;

    fn policy() -> Policy {
        Policy {
            name: "critical".into(),
            events: vec![EventType::TicketAssigned],
            priorities: vec![Priority::High, Priority::Critical],
            categories: vec![],
            steps: vec![
                Step {
                    after: Duration::from_secs(300),
                    unless: Unless::Read,
                    channels: vec![Channel::Whatsapp],
                    also: vec![],
                    oncall: vec![],
                    push_unless_seen: None,
                },
                Step {
                    after: Duration::from_secs(900),
                    unless: Unless::Read,
                    channels: vec![Channel::Email],
                    also: vec![Audience::Admins],
                    oncall: vec![],
                    push_unless_seen: None,
                },
            ],
        }
    }

    #[test]
    fn a_policy_plans_its_steps_for_the_events_and_priorities_it_names() {
        let mut t = crate::ticket_domain::sample_ticket(TicketStatus::Assigned);
        t.priority = Priority::Critical;
        let summary = TicketSummary::from(&t);
        let steps = plan(&[policy()], &EventType::TicketAssigned, Some(&summary));
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].step, 2);
        assert_eq!(steps[1].also, vec![Audience::Admins]);
        assert!(plan(&[policy()], &EventType::WorkStarted, Some(&summary)).is_empty());
        t.priority = Priority::Low;
        let low = TicketSummary::from(&t);
        assert!(plan(&[policy()], &EventType::TicketAssigned, Some(&low)).is_empty());
        assert!(plan(&[policy()], &EventType::TicketAssigned, None).is_empty());
    }

    #[test]
    fn durations_read_like_the_policy_file() {
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
    }
}
