//! Holding outbound messages: a person's quiet hours (a stretch of each day, in their time
//! zone, when email, SMS, push, chat and voice wait unless the notification is a page) and a
//! project's maintenance windows (when every outbound message about its tickets waits). Pure:
//! the delivery actor asks [`hold`] before each send and puts a held message back until the
//! moment it answers.

use chrono::{DateTime, Utc};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::oncall::Handoff;

/// A person's quiet hours: from `start` to `end` each day, in `time_zone` (an `end` before
/// `start` runs past midnight; equal ones mean no quiet hours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietHours {
    /// An IANA time zone.
    pub time_zone: String,
    /// When they begin, local time.
    pub start: Handoff,
    /// When they end, local time.
    pub end: Handoff,
}

/// Why a message waits, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Until when.
    pub until: DateTime<Utc>,
    /// Why, for the timeline and operators: `quiet_hours` or `maintenance`.
    pub reason: &'static str,
}

fn minutes(h: Handoff) -> i32 {
    i32::from(h.hour) * 60 + i32::from(h.minute)
}

impl QuietHours {
    /// Until when the hours hold a message at `at`; `None` outside them (or with an unknown
    /// time zone, or hours of no length).
    pub fn until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (start, end) = (minutes(self.start), minutes(self.end));
        if start == end {
            return None;
        }
        let tz = TimeZone::get(&self.time_zone).ok()?;
        let local = Timestamp::from_millisecond(at.timestamp_millis())
            .ok()?
            .to_zoned_datetime(tz.clone());
        let now = i32::from(local.hour()) * 60 + i32::from(local.minute());
        let inside = if start < end {
            start <= now && now < end
        } else {
            now >= start || now < end
        };
        if !inside {
            return None;
        }
        // The end today, or tomorrow when the hours run past midnight and it is evening.
        let mut day = local.date();
        if start > end && now >= start {
            day = day.tomorrow().ok()?;
        }
        let civil = day.at(self.end.hour, self.end.minute, 0, 0);
        let ends = tz.to_ambiguous_timestamp(civil).compatible().ok()?;
        DateTime::from_timestamp_millis(ends.as_millisecond())
    }
}

/// Whether a message on a channel that reaches a person waits, and until when: a maintenance
/// window of its ticket's project holds every message (`maintenance_until`); quiet hours hold
/// one that is not a page.
pub fn hold(
    at: DateTime<Utc>,
    quiet: Option<&QuietHours>,
    is_page: bool,
    maintenance_until: Option<DateTime<Utc>>,
) -> Option<Hold> {
    if let Some(until) = maintenance_until.filter(|u| *u > at) {
        return Some(Hold {
            until,
            reason: "maintenance",
        });
    }
    if is_page {
        return None;
    }
    quiet.and_then(|q| q.until(at)).map(|until| Hold {
        until,
        reason: "quiet_hours",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::utc;

    fn hours(tz: &str, start: &str, end: &str) -> QuietHours {
        QuietHours {
            time_zone: tz.into(),
            start: Handoff::parse(start).unwrap(),
            end: Handoff::parse(end).unwrap(),
        }
    }

    #[test]
    fn overnight_hours_hold_until_the_morning_in_their_zone() {
        // 22:00 to 07:00 in Berlin (UTC+1 in winter).
        let q = hours("Europe/Berlin", "22:00", "07:00");
        assert_eq!(q.until(utc("2026-01-10T20:59:00Z")), None, "21:59 local");
        assert_eq!(
            q.until(utc("2026-01-10T21:00:00Z")),
            Some(utc("2026-01-11T06:00:00Z")),
            "22:00 local waits until 07:00 the next day"
        );
        assert_eq!(
            q.until(utc("2026-01-11T02:30:00Z")),
            Some(utc("2026-01-11T06:00:00Z")),
            "03:30 local, after midnight"
        );
        assert_eq!(q.until(utc("2026-01-11T06:00:00Z")), None, "07:00 local");
        // The night the clocks go forward: 07:00 local is 05:00 UTC.
        assert_eq!(
            q.until(utc("2026-03-28T23:00:00Z")),
            Some(utc("2026-03-29T05:00:00Z"))
        );
    }

    #[test]
    fn daytime_hours_and_hours_of_no_length() {
        let q = hours("UTC", "12:00", "13:00");
        assert_eq!(
            q.until(utc("2026-01-10T12:30:00Z")),
            Some(utc("2026-01-10T13:00:00Z"))
        );
        assert_eq!(q.until(utc("2026-01-10T13:00:00Z")), None);
        assert_eq!(
            hours("UTC", "09:00", "09:00").until(utc("2026-01-10T09:00:00Z")),
            None
        );
        assert_eq!(
            hours("Mars/Base", "00:00", "23:59").until(utc("2026-01-10T09:00:00Z")),
            None
        );
    }

    #[test]
    fn maintenance_holds_everything_quiet_hours_all_but_pages() {
        let at = utc("2026-01-10T23:00:00Z");
        let q = hours("UTC", "22:00", "07:00");
        let morning = utc("2026-01-11T07:00:00Z");
        let held = |q, page, m| hold(at, q, page, m).map(|h: Hold| (h.until, h.reason));
        assert_eq!(held(Some(&q), false, None), Some((morning, "quiet_hours")));
        assert_eq!(held(Some(&q), true, None), None, "a page goes through");
        assert_eq!(held(None, false, None), None);
        let done = utc("2026-01-11T01:00:00Z");
        assert_eq!(
            held(Some(&q), true, Some(done)),
            Some((done, "maintenance"))
        );
        assert_eq!(held(None, false, Some(at)), None, "a window that has ended");
    }
}
