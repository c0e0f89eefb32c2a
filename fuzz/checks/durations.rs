//! Arbitrary bytes as a span or time a person gives: a send's `delay` or `send_at`, an
//! escalation step's `after` and a route's `push.unless_seen_within` in the routing file, and a
//! span flag (`--retention`). The first byte picks the reader (`d`, `s`, `a`, `p`, `f`), the
//! rest is the text. Reading must never panic, and what it accepts must hold:
//!
//! - **A send is due within its window**: not before a minute ago, not past `max_ahead` from
//!   the time it was read.
//! - **A span is at most 100 years** (`tickethub::timespan::LONGEST`), so that no time it is
//!   added to overflows; a route's push wait is 1 s to 7 days.
//! - **A refusal is words**, naming the field when it comes from a request.

use tickethub::fuzzing::{TimeField, TimeRead};

/// The checks on one input; a failed check panics.
pub fn check(input: &[u8]) {
    let field = input
        .first()
        .map(|&t| TimeField::from_tag(t))
        .unwrap_or(TimeField::Delay);
    match tickethub::fuzzing::time_input(input) {
        Ok(TimeRead::Due { at, now, max_ahead }) => {
            assert!(
                matches!(field, TimeField::Delay | TimeField::SendAt),
                "{field:?} read as a due time"
            );
            assert!(
                at >= now - chrono::Duration::minutes(1),
                "due {at}, read at {now}"
            );
            assert!(
                at <= now + chrono::Duration::from_std(max_ahead).unwrap(),
                "due {at}, past {max_ahead:?} from {now}"
            );
        }
        Ok(TimeRead::Span(span)) => {
            assert!(
                span <= tickethub::timespan::LONGEST,
                "{field:?} gave {span:?}"
            );
            if field == TimeField::PushWait {
                assert!(
                    (1..=7 * 86_400).contains(&span.as_secs()),
                    "a push wait of {span:?}"
                );
            }
        }
        Err(reason) => {
            assert!(!reason.is_empty(), "{field:?} refused without a reason");
            match field {
                TimeField::Delay => assert!(
                    reason.starts_with("delay:") || !reason.contains("send_at"),
                    "{reason}"
                ),
                TimeField::SendAt => assert!(
                    reason.starts_with("send_at:") || !reason.contains("delay"),
                    "{reason}"
                ),
                _ => {}
            }
        }
    }
}
