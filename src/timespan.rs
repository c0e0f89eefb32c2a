//! Durations and times read from people: requests (`delay`, `send_at`), the routing file
//! (`after`, `push.unless_seen_within`) and flags (`--retention`, `--schedule-max-ahead` …).
//!
//! Every span is read with [`parse`], which refuses what no setting needs (more than
//! [`LONGEST`]) instead of handing on a span that overflows a time it is added to; and every
//! time computed from one is [`later`] or [`earlier`], which stop at the ends of the calendar
//! instead of panicking.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest span anything may give: 100 years.
pub const LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A span such as `90s`, `15m`, `2h 30m` or `30d`, at most [`LONGEST`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let span = humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?;
    if span > LONGEST {
        return Err("at most 100 years".into());
    }
    Ok(span)
}

/// `at` plus `span`, or the last representable time.
pub fn later(at: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at` less `span`, or the first representable time.
pub fn earlier(at: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The instant of a Unix time in seconds: now if it has passed, and at most [`LONGEST`] ahead
/// (a token's `exp` is whatever its signer wrote).
pub fn instant_at(unix: i64) -> tokio::time::Instant {
    let left = unix.saturating_sub(Utc::now().timestamp()).max(0) as u64;
    instant_after(Duration::from_secs(left))
}

/// Now plus `span`, at most [`LONGEST`] ahead.
pub fn instant_after(span: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(span.min(LONGEST))
        .unwrap_or(now + Duration::from_secs(86_400))
}

/// An RFC 3339 time with its offset, such as `2026-05-01T09:00:00Z`, in UTC.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "an RFC 3339 time with its offset, such as 2026-05-01T09:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_past_a_century_are_refused_not_overflowed() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse(" 2h 30m ").unwrap(), Duration::from_secs(9_000));
        assert_eq!(parse("100y").unwrap_err(), "at most 100 years");
        assert!(parse("300000y").unwrap_err().contains("100 years"));
        assert!(parse("18446744073709551615s").is_err());
        assert!(parse("99999999999999999999999s").is_err());
        assert!(parse("").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("99y").is_ok());
    }

    #[test]
    fn times_stop_at_the_ends_of_the_calendar() {
        let now = Utc::now();
        assert_eq!(later(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(earlier(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(
            later(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            later(now, Duration::from_secs(60)),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(
            earlier(now, LONGEST),
            now - chrono::Duration::from_std(LONGEST).unwrap()
        );
    }

    #[test]
    fn instants_of_far_times_stay_within_a_century() {
        let now = tokio::time::Instant::now();
        assert!(instant_at(i64::MAX) <= now + LONGEST + Duration::from_secs(1));
        assert!(instant_at(i64::MIN) <= tokio::time::Instant::now());
        assert!(instant_after(Duration::MAX) > now);
    }

    #[test]
    fn instants_need_an_offset() {
        assert!(parse_instant("2026-05-01T09:00:00Z").is_ok());
        assert!(parse_instant("2026-05-01T09:00:00+02:00").is_ok());
        assert!(parse_instant("2026-05-01T09:00:00").is_err());
        assert!(parse_instant("9999-12-31T23:59:59Z").is_ok());
        assert!(parse_instant("+10000-01-01T00:00:00Z").is_err());
    }
}
