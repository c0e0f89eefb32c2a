//! On-call schedules: who is on call when, as data and pure arithmetic.
//!
//! A schedule has a time zone (IANA) and layers. Each layer rotates its users: one shift each,
//! in order, over and over, handing over at the layer's handoff time of day in the schedule's
//! time zone, so a 09:00 handoff stays at 09:00 across a daylight-saving change (that day's
//! shift is an hour shorter or longer). A layer covers from its start on; where several cover
//! a moment, the last one wins. Overrides win over every layer: the latest made wins where two
//! overlap.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use jiff::civil::{Date, DateTime as Civil};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use crate::domain::UserId;

mod page;
pub use page::{valid_name, Paged, Target, PREFIX};

/// How long one shift of a layer lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// This many calendar days (`daily`, `weekly`, `2d`): each shift hands over at the handoff
    /// time of day.
    Days(u16),
    /// This many hours of wall-clock time (`12h`), counted from the handoff time.
    Hours(u16),
}

impl Rotation {
    /// `daily`, `weekly`, `<n>d` (1 to 366) or `<n>h` (1 to 168, a divisor of 24 or a multiple
    /// of it, so that shifts line up with the handoff every day).
    pub fn parse(text: &str) -> Result<Rotation, String> {
        let bad = || {
            format!("rotation: `{text}` is not daily, weekly, a number of days (2d) or hours (12h)")
        };
        match text {
            "daily" => return Ok(Rotation::Days(1)),
            "weekly" => return Ok(Rotation::Days(7)),
            _ => {}
        }
        let unit = text.chars().last().ok_or_else(bad)?;
        let number = &text[..text.len() - unit.len_utf8()];
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u16 = number.parse().map_err(|_| bad())?;
        match unit {
            'd' if (1..=366).contains(&n) => Ok(Rotation::Days(n)),
            'h' if (1..=168).contains(&n) && (24 % n == 0 || n % 24 == 0) => {
                if n % 24 == 0 {
                    Ok(Rotation::Days(n / 24))
                } else {
                    Ok(Rotation::Hours(n))
                }
            }
            'h' => Err(format!(
                "rotation: `{text}`: hours must divide a day (1h, 2h, 3h, 4h, 6h, 8h, 12h) or be whole days"
            )),
            _ => Err(bad()),
        }
    }

    /// As the API writes it.
    pub fn name(self) -> String {
        match self {
            Rotation::Days(1) => "daily".into(),
            Rotation::Days(7) => "weekly".into(),
            Rotation::Days(n) => format!("{n}d"),
            Rotation::Hours(n) => format!("{n}h"),
        }
    }

    fn span(self, times: i64) -> Span {
        match self {
            Rotation::Days(n) => Span::new().days(i64::from(n) * times),
            Rotation::Hours(n) => Span::new().hours(i64::from(n) * times),
        }
    }

    /// A shift's length, roughly (a day as 24 h), to find a moment's shift in one step.
    fn seconds(self) -> i64 {
        match self {
            Rotation::Days(n) => i64::from(n) * 86_400,
            Rotation::Hours(n) => i64::from(n) * 3_600,
        }
    }
}

/// A time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// 0 to 23.
    pub hour: i8,
    /// 0 to 59.
    pub minute: i8,
}

impl Handoff {
    /// `HH:MM`, 24-hour.
    pub fn parse(text: &str) -> Result<Handoff, String> {
        let bad = || format!("handoff: `{text}` is not a time of day such as 09:00");
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return Err(bad());
        }
        let (hour, minute): (i8, i8) =
            (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..24).contains(&hour) || !(0..60).contains(&minute) {
            return Err(bad());
        }
        Ok(Handoff { hour, minute })
    }

    /// As the API writes it.
    pub fn name(self) -> String {
        format!("{:02}:{:02}", self.hour, self.minute)
    }
}

/// One layer of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Who takes the shifts, in order.
    pub users: Vec<UserId>,
    /// How long each shift lasts.
    pub rotation: Rotation,
    /// When a shift hands over to the next, in the schedule's time zone.
    pub handoff: Handoff,
    /// From when the layer covers; its first user is on call from then until the first handoff
    /// after it.
    pub start: DateTime<Utc>,
}

/// Someone on call instead of the layers, for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Its id.
    pub id: i64,
    /// Who is on call.
    pub user: UserId,
    /// From when.
    pub from: DateTime<Utc>,
    /// Until when (not included).
    pub to: DateTime<Utc>,
}

/// Why someone is on call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Their turn in the layer of this index (from 0).
    Layer(usize),
    /// The override of this id.
    Override(i64),
}

/// A stretch of time with one person on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    /// Who.
    pub user: UserId,
    /// From when.
    pub from: DateTime<Utc>,
    /// Until when (not included).
    pub to: DateTime<Utc>,
    /// Why.
    pub source: Source,
}

/// A schedule's rotation, ready to answer who is on call.
#[derive(Debug, Clone)]
pub struct Rota {
    tz: TimeZone,
    layers: Vec<Layer>,
    overrides: Vec<Override>,
}

/// The longest window [`Rota::shifts`] lists.
pub const LONGEST_WINDOW_DAYS: i64 = 92;

/// The time zone of this IANA name (`Europe/Berlin`, `UTC`).
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| format!("time_zone: `{name}` is not an IANA time zone"))
}

fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_millisecond(t.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn chrono_time(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.as_millisecond()).unwrap_or_default()
}

impl Rota {
    /// A rotation in the time zone `tz` (an IANA name), its layers in order (later ones win)
    /// and its overrides (later ids win).
    pub fn new(tz: &str, layers: Vec<Layer>, mut overrides: Vec<Override>) -> Result<Rota, String> {
        overrides.sort_by_key(|o| o.id);
        Ok(Rota {
            tz: time_zone(tz)?,
            layers,
            overrides,
        })
    }

    /// The moment a civil time of the schedule's zone happens (in a gap, the time after it;
    /// in a repeated hour, the first).
    fn instant(&self, civil: Civil) -> Option<DateTime<Utc>> {
        let zoned = self.tz.to_ambiguous_timestamp(civil).compatible().ok()?;
        Some(chrono_time(zoned))
    }

    /// The handoff of shift `k` of a layer (shift 0 is the one its start falls in).
    fn boundary(&self, layer: &Layer, anchor: Civil, k: i64) -> Option<DateTime<Utc>> {
        let civil = anchor.checked_add(layer.rotation.span(k)).ok()?;
        self.instant(civil)
    }

    /// The civil time of the last handoff at or before the layer's start: handoffs fall at
    /// the handoff time on the start's day, and whole shifts before and after it.
    fn anchor(&self, layer: &Layer) -> Option<Civil> {
        let start = timestamp(layer.start).to_zoned_datetime(self.tz.clone());
        let date: Date = start.datetime().date();
        let mut anchor = date.at(layer.handoff.hour, layer.handoff.minute, 0, 0);
        // At most a day's worth of shifts either way.
        for _ in 0..=24 {
            if self.instant(anchor)? <= layer.start {
                break;
            }
            anchor = anchor.checked_sub(layer.rotation.span(1)).ok()?;
        }
        for _ in 0..=24 {
            let next = anchor.checked_add(layer.rotation.span(1)).ok()?;
            if self.instant(next)? > layer.start {
                break;
            }
            anchor = next;
        }
        Some(anchor)
    }

    /// The shift of `layer` at `at`: its index, and when it began and ends (the first shift
    /// begins at the layer's start). `None` before the layer starts.
    fn layer_shift(
        &self,
        layer: &Layer,
        at: DateTime<Utc>,
    ) -> Option<(i64, DateTime<Utc>, DateTime<Utc>)> {
        if at < layer.start || layer.users.is_empty() {
            return None;
        }
        let anchor = self.anchor(layer)?;
        let first = self.instant(anchor)?;
        let mut k = (at - first).num_seconds() / layer.rotation.seconds();
        loop {
            let from = self.boundary(layer, anchor, k)?;
            let to = self.boundary(layer, anchor, k + 1)?;
            if at < from {
                k -= 1;
            } else if at >= to {
                k += 1;
            } else {
                return Some((k, from.max(layer.start), to));
            }
        }
    }

    /// Who is on call at `at`, and why; `None` when nobody is (before every layer's start,
    /// with no override).
    pub fn on_call(&self, at: DateTime<Utc>) -> Option<(UserId, Source)> {
        if let Some(o) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.from <= at && at < o.to)
        {
            return Some((o.user, Source::Override(o.id)));
        }
        self.layers.iter().enumerate().rev().find_map(|(i, layer)| {
            let (k, _, _) = self.layer_shift(layer, at)?;
            let user = layer.users[k.rem_euclid(layer.users.len() as i64) as usize];
            Some((user, Source::Layer(i)))
        })
    }

    /// The person on call after the one at `at`: whoever is on call once the current shift
    /// ends (the next turn of the same layer when that is the same person).
    pub fn next(&self, at: DateTime<Utc>) -> Option<UserId> {
        self.next_shift(at).map(|s| s.user)
    }

    /// The first shift after `at` of someone other than the person on call at `at` (with
    /// nobody on call, the first shift of anyone), looked for within the longest window.
    pub fn next_shift(&self, at: DateTime<Utc>) -> Option<Shift> {
        let now = self.on_call(at).map(|(user, _)| user);
        let horizon = at + chrono::Duration::days(LONGEST_WINDOW_DAYS);
        self.shifts(at, horizon)
            .into_iter()
            .find(|s| Some(s.user) != now)
    }

    /// Every moment in `[from, to]` at which who is on call may change.
    fn changes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
        let mut points = BTreeSet::from([from, to]);
        for o in &self.overrides {
            points.extend([o.from, o.to].into_iter().filter(|t| from < *t && *t < to));
        }
        for layer in &self.layers {
            if layer.start > from && layer.start < to {
                points.insert(layer.start);
            }
            let Some((mut k, _, _)) = self.layer_shift(layer, from.max(layer.start)) else {
                continue;
            };
            let Some(anchor) = self.anchor(layer) else {
                continue;
            };
            while let Some(next) = self.boundary(layer, anchor, k + 1) {
                if next >= to {
                    break;
                }
                points.insert(next);
                k += 1;
            }
        }
        points
    }

    /// Who is on call from `from` to `to`, as shifts in order (a stretch with nobody on call
    /// is left out; neighbouring stretches of one person for one reason are one shift).
    pub fn shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Shift> {
        let points: Vec<DateTime<Utc>> = self.changes(from, to).into_iter().collect();
        let mut shifts: Vec<Shift> = Vec::new();
        for pair in points.windows(2) {
            let Some((user, source)) = self.on_call(pair[0]) else {
                continue;
            };
            match shifts.last_mut() {
                Some(last) if last.to == pair[0] && last.user == user && last.source == source => {
                    last.to = pair[1];
                }
                _ => shifts.push(Shift {
                    user,
                    from: pair[0],
                    to: pair[1],
                    source,
                }),
            }
        }
        shifts
    }

    /// Until when the person on call at `at` stays on call (looked for within the longest
    /// window; `None` beyond it).
    pub fn until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let horizon = at + chrono::Duration::days(LONGEST_WINDOW_DAYS);
        let shifts = self.shifts(at, horizon);
        let first = shifts.first()?;
        // The same person may go on for another reason (an override inside their own shift).
        let mut until = first.to;
        for s in &shifts[1..] {
            if s.from != until || s.user != first.user {
                break;
            }
            until = s.to;
        }
        (until < horizon).then_some(until)
    }
}

/// An RFC 3339 time, for tests.
#[cfg(test)]
pub(crate) fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(users: &[i64], rotation: &str, handoff: &str, start: &str) -> Layer {
        Layer {
            users: users.iter().copied().map(UserId).collect(),
            rotation: Rotation::parse(rotation).unwrap(),
            handoff: Handoff::parse(handoff).unwrap(),
            start: utc(start),
        }
    }

    #[test]
    fn rotations_and_handoffs_parse_and_refuse_what_they_are_not() {
        assert_eq!(Rotation::parse("daily"), Ok(Rotation::Days(1)));
        assert_eq!(Rotation::parse("weekly"), Ok(Rotation::Days(7)));
        assert_eq!(Rotation::parse("2d"), Ok(Rotation::Days(2)));
        assert_eq!(Rotation::parse("12h"), Ok(Rotation::Hours(12)));
        assert_eq!(Rotation::parse("48h"), Ok(Rotation::Days(2)));
        for bad in [
            "", "d", "0d", "5h", "monthly", "-1d", "+1d", "400d", "12 h", "2é", "é",
        ] {
            assert!(Rotation::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Handoff::parse("09:00").unwrap().name(), "09:00");
        for bad in [
            "9:00", "24:00", "09:60", "0900", "", "aa:bb", "+9:00", "09:+0",
        ] {
            assert!(Handoff::parse(bad).is_err(), "{bad}");
        }
        assert!(time_zone("Europe/Berlin").is_ok());
        assert!(time_zone("Mars/Olympus").is_err());
    }

    /// A daily rotation handing over at 09:00 in Berlin hands over at 09:00 local on both
    /// sides of the spring and autumn changes: 08:00 UTC in summer, 07:00 in winter, and the
    /// changing days' shifts last 23 and 25 hours.
    #[test]
    fn a_daily_handoff_stays_at_nine_local_across_daylight_saving_changes() {
        let rota = Rota::new(
            "Europe/Berlin",
            vec![layer(&[1, 2, 3], "daily", "09:00", "2026-03-27T08:00:00Z")],
            vec![],
        )
        .unwrap();
        // Spring: clocks go forward on 2026-03-29 at 02:00 local.
        let shifts = rota.shifts(utc("2026-03-27T08:00:00Z"), utc("2026-03-31T07:00:00Z"));
        let got: Vec<(i64, String, String)> = shifts
            .iter()
            .map(|s| (s.user.0, s.from.to_rfc3339(), s.to.to_rfc3339()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "2026-03-27T08:00:00+00:00", "2026-03-28T08:00:00+00:00"),
                (2, "2026-03-28T08:00:00+00:00", "2026-03-29T07:00:00+00:00"),
                (3, "2026-03-29T07:00:00+00:00", "2026-03-30T07:00:00+00:00"),
                (1, "2026-03-30T07:00:00+00:00", "2026-03-31T07:00:00+00:00"),
            ]
            .map(|(u, f, t)| (u, f.to_owned(), t.to_owned()))
        );
        assert_eq!(shifts[1].to - shifts[1].from, chrono::Duration::hours(23));
        // Autumn: clocks go back on 2026-10-25 at 03:00 local; 09:00 is 07:00 UTC the day
        // before and 08:00 UTC from then on, so that day's shift lasts 25 hours.
        let on = |t: &str| rota.on_call(utc(t)).unwrap().0 .0;
        assert_eq!(
            rota.until(utc("2026-10-24T12:00:00Z")),
            Some(utc("2026-10-25T08:00:00Z"))
        );
        assert_eq!(
            rota.until(utc("2026-10-25T12:00:00Z")),
            Some(utc("2026-10-26T08:00:00Z"))
        );
        assert_eq!(on("2026-10-24T07:00:00Z"), on("2026-10-25T07:59:00Z"));
        assert_ne!(on("2026-10-25T07:59:00Z"), on("2026-10-25T08:00:00Z"));
    }

    #[test]
    fn the_first_user_covers_from_the_start_to_the_first_handoff() {
        // Starts at 15:00 local, handoff at 09:00: user 1 until tomorrow's 09:00.
        let rota = Rota::new(
            "UTC",
            vec![layer(&[1, 2], "daily", "09:00", "2026-06-01T15:00:00Z")],
            vec![],
        )
        .unwrap();
        assert_eq!(rota.on_call(utc("2026-06-01T14:59:00Z")), None);
        assert_eq!(
            rota.on_call(utc("2026-06-01T15:00:00Z")),
            Some((UserId(1), Source::Layer(0)))
        );
        assert_eq!(
            rota.until(utc("2026-06-01T15:00:00Z")),
            Some(utc("2026-06-02T09:00:00Z"))
        );
        assert_eq!(
            rota.on_call(utc("2026-06-02T09:00:00Z")).unwrap().0,
            UserId(2)
        );
        assert_eq!(
            rota.on_call(utc("2026-06-03T09:00:00Z")).unwrap().0,
            UserId(1)
        );
        assert_eq!(rota.next(utc("2026-06-01T16:00:00Z")), Some(UserId(2)));
    }

    #[test]
    fn a_start_between_handoffs_gives_the_first_user_that_shift() {
        // Twelve-hour shifts at 08:00 and 20:00; a start at 22:00 is in the 20:00 shift.
        let rota = Rota::new(
            "UTC",
            vec![layer(&[1, 2], "12h", "08:00", "2026-06-01T22:00:00Z")],
            vec![],
        )
        .unwrap();
        assert_eq!(
            rota.on_call(utc("2026-06-01T22:00:00Z")).unwrap().0,
            UserId(1)
        );
        assert_eq!(
            rota.until(utc("2026-06-01T22:00:00Z")),
            Some(utc("2026-06-02T08:00:00Z"))
        );
        assert_eq!(
            rota.on_call(utc("2026-06-02T08:00:00Z")).unwrap().0,
            UserId(2)
        );
    }

    #[test]
    fn twelve_hour_shifts_and_weekly_ones_turn_at_their_handoffs() {
        let rota = Rota::new(
            "America/New_York",
            vec![layer(&[1, 2], "12h", "08:00", "2026-11-02T13:00:00Z")],
            vec![],
        )
        .unwrap();
        // 08:00 and 20:00 New York (EST, -05:00).
        assert_eq!(
            rota.until(utc("2026-11-02T13:00:00Z")),
            Some(utc("2026-11-03T01:00:00Z"))
        );
        assert_eq!(
            rota.on_call(utc("2026-11-03T01:00:00Z")).unwrap().0,
            UserId(2)
        );
        assert_eq!(
            rota.on_call(utc("2026-11-03T13:00:00Z")).unwrap().0,
            UserId(1)
        );
        let weekly = Rota::new(
            "UTC",
            vec![layer(&[1, 2, 3], "weekly", "10:00", "2026-01-05T10:00:00Z")],
            vec![],
        )
        .unwrap();
        assert_eq!(
            weekly.on_call(utc("2026-01-11T23:00:00Z")).unwrap().0,
            UserId(1)
        );
        assert_eq!(
            weekly.on_call(utc("2026-01-12T10:00:00Z")).unwrap().0,
            UserId(2)
        );
        assert_eq!(
            weekly.on_call(utc("2026-01-26T10:00:00Z")).unwrap().0,
            UserId(1)
        );
        // A year on, still in step: 52 weeks later is week 52, 52 mod 3 = 1.
        assert_eq!(
            weekly.on_call(utc("2027-01-04T10:00:00Z")).unwrap().0,
            UserId(2)
        );
    }

    #[test]
    fn later_layers_and_overrides_win_where_they_cover() {
        let rota = Rota::new(
            "UTC",
            vec![
                layer(&[1, 2], "daily", "09:00", "2026-06-01T09:00:00Z"),
                layer(&[3], "daily", "09:00", "2026-06-10T09:00:00Z"),
            ],
            vec![
                Override {
                    id: 1,
                    user: UserId(4),
                    from: utc("2026-06-02T12:00:00Z"),
                    to: utc("2026-06-02T14:00:00Z"),
                },
                Override {
                    id: 2,
                    user: UserId(5),
                    from: utc("2026-06-02T13:00:00Z"),
                    to: utc("2026-06-02T13:30:00Z"),
                },
            ],
        )
        .unwrap();
        assert_eq!(
            rota.on_call(utc("2026-06-09T10:00:00Z")).unwrap().0,
            UserId(1)
        );
        assert_eq!(
            rota.on_call(utc("2026-06-10T10:00:00Z")),
            Some((UserId(3), Source::Layer(1)))
        );
        let day = rota.shifts(utc("2026-06-02T09:00:00Z"), utc("2026-06-03T09:00:00Z"));
        let got: Vec<(i64, String)> = day
            .iter()
            .map(|s| (s.user.0, s.from.format("%H:%M").to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "09:00"),
                (4, "12:00"),
                (5, "13:00"),
                (4, "13:30"),
                (2, "14:00")
            ]
            .map(|(u, t)| (u, t.to_owned()))
        );
        assert_eq!(day[1].source, Source::Override(1));
        // Until the override ends, then user 2 again.
        assert_eq!(
            rota.until(utc("2026-06-02T12:10:00Z")),
            Some(utc("2026-06-02T13:00:00Z"))
        );
        assert_eq!(
            rota.until(utc("2026-06-02T08:00:00Z")),
            Some(utc("2026-06-02T09:00:00Z"))
        );
    }
}
