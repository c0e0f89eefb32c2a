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

/// How often a person wants a digest of what reached them nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestEvery {
    /// Each hour, at `at`'s minute.
    Hourly,
    /// Each day, at `at`.
    Daily,
}

impl DigestEvery {
    /// `hourly` or `daily`.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestEvery::Hourly => "hourly",
            DigestEvery::Daily => "daily",
        }
    }

    /// The word, as [`DigestEvery::as_str`] writes it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hourly" => Some(DigestEvery::Hourly),
            "daily" => Some(DigestEvery::Daily),
            _ => None,
        }
    }
}

/// A person's digest: how often, and at what local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// How often.
    pub every: DigestEvery,
    /// When, in their time zone (hourly: the minute).
    pub at: Handoff,
}

impl Digest {
    /// The first moment after `after` the digest is due, in `time_zone` (UTC when none or
    /// unknown). A local time that a change of clocks skips is taken as the moment after it.
    pub fn next_due(&self, after: DateTime<Utc>, time_zone: Option<&str>) -> DateTime<Utc> {
        let tz = time_zone
            .and_then(|z| TimeZone::get(z).ok())
            .unwrap_or(TimeZone::UTC);
        let fallback = after + chrono::Duration::hours(1);
        let Ok(instant) = Timestamp::from_millisecond(after.timestamp_millis()) else {
            return fallback;
        };
        let local = instant.to_zoned_datetime(tz.clone());
        let due = |day: jiff::civil::Date, hour: i8| {
            let civil = day.at(hour, self.at.minute, 0, 0);
            tz.to_ambiguous_timestamp(civil)
                .compatible()
                .ok()
                .and_then(|t| DateTime::from_timestamp_millis(t.as_millisecond()))
        };
        let day = local.date();
        let candidates: Vec<Option<DateTime<Utc>>> = match self.every {
            DigestEvery::Daily => vec![
                due(day, self.at.hour),
                day.tomorrow().ok().and_then(|d| due(d, self.at.hour)),
            ],
            DigestEvery::Hourly => {
                let this_hour = due(day, local.hour());
                vec![this_hour, this_hour.map(|t| t + chrono::Duration::hours(1))]
            }
        };
        candidates
            .into_iter()
            .flatten()
            .find(|t| *t > after)
            .unwrap_or(fallback)
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
    fn a_digest_is_due_next_at_its_local_time() {
        let daily = Digest {
            every: DigestEvery::Daily,
            at: Handoff::parse("08:00").unwrap(),
        };
        // 08:00 in Berlin is 07:00 UTC in winter: before it, today; after it, tomorrow.
        let berlin = Some("Europe/Berlin");
        assert_eq!(
            daily.next_due(utc("2026-11-27T06:00:00Z"), berlin),
            utc("2026-11-27T07:00:00Z")
        );
        assert_eq!(
            daily.next_due(utc("2026-11-27T07:00:00Z"), berlin),
            utc("2026-11-28T07:00:00Z")
        );
        assert_eq!(
            daily.next_due(utc("2026-11-27T06:00:00Z"), None),
            utc("2026-11-27T08:00:00Z")
        );
        let hourly = Digest {
            every: DigestEvery::Hourly,
            at: Handoff::parse("00:15").unwrap(),
        };
        assert_eq!(
            hourly.next_due(utc("2026-11-27T06:10:00Z"), berlin),
            utc("2026-11-27T06:15:00Z")
        );
        assert_eq!(
            hourly.next_due(utc("2026-11-27T06:20:00Z"), berlin),
            utc("2026-11-27T07:15:00Z")
        );
        assert_eq!(DigestEvery::parse("weekly"), None);
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
