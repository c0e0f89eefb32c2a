//! Paging whoever is on call: a target (`oncall:<schedule>`, or `oncall:<schedule>:next`), and
//! whom it chose at a moment with the reason (`crate::notifier::resolve` reads the schedule).

use chrono::{DateTime, Utc};

use super::Source;
use crate::domain::UserId;

/// Whom a page goes to on a schedule: the person on call, or the next one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The schedule's name.
    pub schedule: String,
    /// The person after the one on call (their next turn of duty), rather than them.
    pub next: bool,
}

/// The prefix of a target's name.
pub const PREFIX: &str = "oncall:";

impl Target {
    /// `oncall:<schedule>` or `oncall:<schedule>:next`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let bad = || {
            format!(
                "`{text}` is not oncall:<schedule> or oncall:<schedule>:next (a schedule's name is 1 to 64 lowercase letters, digits, `-` or `_`)"
            )
        };
        let rest = text.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (schedule, next) = match rest.strip_suffix(":next") {
            Some(schedule) => (schedule, true),
            None => (rest, false),
        };
        if !valid_name(schedule) {
            return Err(bad());
        }
        Ok(Target {
            schedule: schedule.to_owned(),
            next,
        })
    }

    /// As a policy and the database write it.
    pub fn name(&self) -> String {
        format!(
            "{PREFIX}{}{}",
            self.schedule,
            if self.next { ":next" } else { "" }
        )
    }
}

/// Whether `name` is a schedule's name: 1 to 64 lowercase letters, digits, `-` or `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Who a target chose at a moment, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged {
    /// The target.
    pub target: Target,
    /// The person chosen.
    pub user: UserId,
    /// Their username.
    pub username: String,
    /// Why them: their layer's turn, or an override.
    pub source: Source,
    /// The shift they were chosen from: when it begins (now, or later for `next`) and ends.
    pub from: DateTime<Utc>,
    /// See `from`; `None` beyond the longest window looked at.
    pub until: Option<DateTime<Utc>>,
    /// The moment the target was resolved at.
    pub at: DateTime<Utc>,
}

impl Paged {
    /// One sentence for timelines and step details: "alice is on call for primary (layer 1)
    /// until 2026-11-28T09:00:00Z".
    pub fn why(&self) -> String {
        let source = match self.source {
            Source::Layer(i) => format!("layer {}", i + 1),
            Source::Override(id) => format!("override {id}"),
        };
        let until = self
            .until
            .map(|t| {
                format!(
                    " until {}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            })
            .unwrap_or_default();
        if self.target.next {
            format!(
                "{} is next on call for {} ({source}, from {}{until})",
                self.username,
                self.target.schedule,
                self.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        } else {
            format!(
                "{} is on call for {} ({source}){until}",
                self.username, self.target.schedule
            )
        }
    }

    /// As notifications' `data.oncall` and timelines carry it.
    pub fn json(&self) -> serde_json::Value {
        let (source, source_id) = match self.source {
            Source::Layer(i) => ("layer", i as i64 + 1),
            Source::Override(id) => ("override", id),
        };
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        serde_json::json!({
            "schedule": self.target.schedule,
            "next": self.target.next,
            "user_id": self.user.0,
            "username": self.username,
            "source": source,
            "source_id": source_id,
            "from": time(self.from),
            "until": self.until.map(time),
            "resolved_at": time(self.at),
            "explanation": self.why(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        assert_eq!(
            Target::parse("oncall:primary").unwrap(),
            Target {
                schedule: "primary".into(),
                next: false
            }
        );
        let next = Target::parse("oncall:db-team_2:next").unwrap();
        assert!(next.next);
        assert_eq!(next.schedule, "db-team_2");
        assert_eq!(next.name(), "oncall:db-team_2:next");
        for bad in [
            "primary",
            "oncall:",
            "oncall::next",
            "oncall:Primary",
            "oncall:a:b",
            "oncall:primary:later",
            "admins",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
