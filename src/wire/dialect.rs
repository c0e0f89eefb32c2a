//! The seed dialects of `/ws/notifications/`: the frame shapes each seed's frontend expects.
//!
//! Only shapes change. Every dialect gets the same replay (`replay_truncated`,
//! `replay_complete`), the same `seq` and `replayed` on each notification, the same acks, close
//! codes and guarantees, and understands the same commands. What a dialect renames or derives:
//!
//! | dialect | live notification | list item |
//! |---|---|---|
//! | `seed001` | `{"type":"notification","id","seq","notification_type","title","message","ticket","data","action_url","is_read","timestamp","replayed"}` | the same frame |
//! | `seed002` | `{"type":"notification_message","data":{"id","notification_type","title","message","ticket_id","ticket_key","timestamp"}}` | the `data` object |
//! | `seed003` | `{"type":"notification","notification":{"id","title","message","type","read","created_at","data"}}` | the `notification` object |
//! | `seed004` | `{"type":"new_notification","notification":{"id","type","title","body","action_url","is_read","time_ago","created_at","metadata"}}` | the `notification` object |
//!
//! In seeds 002–004, `seq` and `replayed` sit beside `type` at the top of the frame, where
//! their clients ignore them and a resuming client finds them.
//!
//! ## Notification types
//!
//! Seeds 001–003 get the hub's own notification types. Seed 004 has a vocabulary of its own
//! (`info`, `success`, `warning`, `error`, `course`, `enrollment`, `session`, `library`,
//! `system`, `user_registration`); where it names an equivalent of a hub type, its frames
//! (live, replayed, and the items of `notifications_list`) carry seed 004's name
//! ([`SEED004_TYPES`], [`Dialect::type_name`]):
//!
//! | hub type (`notification_type`) | seed 004 `type` |
//! |---|---|
//! | `user_registered` | `user_registration` |
//! | `ticket_created`, `ticket_opened`, `ticket_assigned`, `work_started`, `work_finished`, `ticket_approved`, `ticket_rejected`, `comment_added` | unchanged (seed 004 has no tickets) |
//! | a sender's own type (`general`, `approval`, …) | unchanged |
//!
//! Only frames change: the REST API, its `notification_type` filter, the socket's
//! `all_marked_read` filter echo and the stored records keep the hub's names.

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde_json::{json, Value};
use tickethub_actors::event::EventType;
use tickethub_actors::notification::Notification;

use super::timestamp;
use crate::wire;

/// The hub's notification types that seed 004 names otherwise, as `(hub, seed 004)`; every
/// other type keeps its name in seed 004's frames.
pub const SEED004_TYPES: [(EventType, &str); 1] =
    [(EventType::UserRegistered, "user_registration")];

/// The frame shapes a socket speaks.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Seed 001 (the contract's own shapes).
    #[default]
    Seed001,
    /// Seed 002: `notification_message` with a `data` object.
    Seed002,
    /// Seed 003: `notification` with a `notification` object (`type`, `read`).
    Seed003,
    /// Seed 004: `new_notification` with `body`, `time_ago` and `metadata`.
    Seed004,
}

impl Dialect {
    /// Every dialect, in order.
    pub const ALL: [Dialect; 4] = [
        Dialect::Seed001,
        Dialect::Seed002,
        Dialect::Seed003,
        Dialect::Seed004,
    ];

    /// The dialect's name (`seed001` …), as `?dialect=` and `--ws-dialect` take it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Seed001 => "seed001",
            Dialect::Seed002 => "seed002",
            Dialect::Seed003 => "seed003",
            Dialect::Seed004 => "seed004",
        }
    }

    /// A dialect by name.
    pub fn from_name(name: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The subprotocol that asks for this dialect: `tickethub.seed002` …
    pub fn subprotocol(self) -> String {
        format!("tickethub.{}", self.name())
    }

    /// A dialect asked for by a subprotocol.
    pub fn from_subprotocol(protocol: &str) -> Option<Dialect> {
        protocol
            .strip_prefix("tickethub.")
            .and_then(Dialect::from_name)
    }

    /// The name this dialect's frames give a notification type: seed 004's own word where it
    /// has one ([`SEED004_TYPES`]), else the hub's.
    pub fn type_name(self, kind: &EventType) -> &str {
        match self {
            Dialect::Seed004 => SEED004_TYPES
                .iter()
                .find(|(hub, _)| hub == kind)
                .map_or(kind.as_str(), |(_, seed)| seed),
            _ => kind.as_str(),
        }
    }

    /// A live (`replayed: false`) or replayed notification frame.
    pub fn notification(self, n: &Notification, replayed: bool) -> Value {
        self.notification_at(n, replayed, Utc::now())
    }

    /// [`Dialect::notification`] as the bytes of a text frame.
    pub fn notification_bytes(self, n: &Notification, replayed: bool) -> Vec<u8> {
        self.notification_bytes_at(n, replayed, Utc::now())
    }

    /// [`Dialect::notification_at`] as the bytes of a text frame, written from typed fields
    /// (no JSON tree per notification and socket, and the stored data not parsed): byte for
    /// byte the tree's serialization, whose keys are in order.
    pub fn notification_bytes_at(
        self,
        n: &Notification,
        replayed: bool,
        now: DateTime<Utc>,
    ) -> Vec<u8> {
        use serde::Serialize;
        use serde_json::value::RawValue;
        /// Seed 002's frame and item, keys in order.
        #[derive(Serialize)]
        struct Frame002<'a> {
            data: Item002<'a>,
            replayed: bool,
            seq: i64,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(Serialize)]
        struct Item002<'a> {
            id: i64,
            message: &'a str,
            notification_type: &'a str,
            ticket_id: Option<i64>,
            ticket_key: Option<&'a str>,
            timestamp: String,
            title: &'a str,
        }
        /// Seed 003's and 004's frame: the item under `notification`.
        #[derive(Serialize)]
        struct Framed<I> {
            notification: I,
            replayed: bool,
            seq: i64,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(Serialize)]
        struct Item003<'a> {
            created_at: String,
            data: &'a RawValue,
            id: i64,
            message: &'a str,
            read: bool,
            title: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
        }
        #[derive(Serialize)]
        struct Item004<'a> {
            action_url: &'a Option<String>,
            body: &'a str,
            created_at: String,
            id: i64,
            is_read: bool,
            metadata: &'a RawValue,
            time_ago: String,
            title: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
        }
        let written = match self {
            Dialect::Seed001 => return wire::notification_frame_bytes(n, replayed),
            Dialect::Seed002 => serde_json::to_vec(&Frame002 {
                data: Item002 {
                    id: n.id,
                    message: &n.message,
                    notification_type: n.notification_type.as_str(),
                    ticket_id: n.ticket.as_ref().map(|t| t.id.0),
                    ticket_key: n.ticket.as_ref().map(|t| t.key.as_str()),
                    timestamp: timestamp(n.created_at),
                    title: &n.title,
                },
                replayed,
                seq: n.seq,
                kind: "notification_message",
            }),
            Dialect::Seed003 => serde_json::to_vec(&Framed {
                notification: Item003 {
                    created_at: timestamp(n.created_at),
                    data: wire::raw_data(n),
                    id: n.id,
                    message: &n.message,
                    read: n.is_read,
                    title: &n.title,
                    kind: n.notification_type.as_str(),
                },
                replayed,
                seq: n.seq,
                kind: "notification",
            }),
            Dialect::Seed004 => serde_json::to_vec(&Framed {
                notification: Item004 {
                    action_url: &n.action_url,
                    body: &n.message,
                    created_at: timestamp(n.created_at),
                    id: n.id,
                    is_read: n.is_read,
                    metadata: wire::raw_data(n),
                    time_ago: time_ago(n.created_at, now),
                    title: &n.title,
                    kind: self.type_name(&n.notification_type),
                },
                replayed,
                seq: n.seq,
                kind: "new_notification",
            }),
        };
        written.expect("notification frames serialize")
    }

    /// [`Dialect::notification`] with the clock given (for `time_ago`).
    pub fn notification_at(self, n: &Notification, replayed: bool, now: DateTime<Utc>) -> Value {
        match self {
            Dialect::Seed001 => wire::notification_frame(n, replayed),
            Dialect::Seed002 => json!({
                "type": "notification_message",
                "seq": n.seq,
                "replayed": replayed,
                "data": self.item_at(n, now),
            }),
            Dialect::Seed003 => json!({
                "type": "notification",
                "seq": n.seq,
                "replayed": replayed,
                "notification": self.item_at(n, now),
            }),
            Dialect::Seed004 => json!({
                "type": "new_notification",
                "seq": n.seq,
                "replayed": replayed,
                "notification": self.item_at(n, now),
            }),
        }
    }

    /// A notification as an item of `notifications_list`.
    pub fn list_item(self, n: &Notification) -> Value {
        self.item_at(n, Utc::now())
    }

    fn item_at(self, n: &Notification, now: DateTime<Utc>) -> Value {
        match self {
            Dialect::Seed001 => wire::notification_frame(n, false),
            Dialect::Seed002 => json!({
                "id": n.id,
                "notification_type": n.notification_type.as_str(),
                "title": n.title,
                "message": n.message,
                "ticket_id": n.ticket.as_ref().map(|t| t.id.0),
                "ticket_key": n.ticket.as_ref().map(|t| t.key.clone()),
                "timestamp": timestamp(n.created_at),
            }),
            Dialect::Seed003 => json!({
                "id": n.id,
                "title": n.title,
                "message": n.message,
                "type": n.notification_type.as_str(),
                "read": n.is_read,
                "created_at": timestamp(n.created_at),
                "data": wire::data(n),
            }),
            Dialect::Seed004 => json!({
                "id": n.id,
                "type": self.type_name(&n.notification_type),
                "title": n.title,
                "body": n.message,
                "action_url": n.action_url,
                "is_read": n.is_read,
                "time_ago": time_ago(n.created_at, now),
                "created_at": timestamp(n.created_at),
                "metadata": wire::data(n),
            }),
        }
    }

    /// The answer to `send_notification`: how many were sent, and (seed 003) the id of the
    /// first one.
    pub fn notification_sent(self, ids: &[i64]) -> Value {
        match self {
            Dialect::Seed003 => json!({
                "type": "notification_sent",
                "success": true,
                "notification_id": ids.first(),
                "count": ids.len(),
            }),
            _ => json!({ "type": "notification_sent", "success": true, "count": ids.len() }),
        }
    }
}

/// Django's `timesince` in words: "Just now", "1 minute ago", "3 hours ago", "2 days ago".
pub fn time_ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    let (n, unit) = match secs {
        0..=59 => return "Just now".into(),
        60..=3_599 => (secs / 60, "minute"),
        3_600..=86_399 => (secs / 3_600, "hour"),
        86_400..=2_591_999 => (secs / 86_400, "day"),
        2_592_000..=31_535_999 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ago_reads_like_django() {
        let now = Utc::now();
        let ago = |s: i64| time_ago(now - chrono::Duration::seconds(s), now);
        assert_eq!(ago(0), "Just now");
        assert_eq!(ago(59), "Just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(150), "2 minutes ago");
        assert_eq!(ago(3_600), "1 hour ago");
        assert_eq!(ago(86_400 * 3), "3 days ago");
        assert_eq!(ago(86_400 * 65), "2 months ago");
        assert_eq!(ago(86_400 * 800), "2 years ago");
        // A clock a little behind the database's is not "in the future".
        assert_eq!(ago(-5), "Just now");
    }

    /// Seed 004's notification types, as its document lists them.
    const SEED004_VOCABULARY: [&str; 10] = [
        "info",
        "success",
        "warning",
        "error",
        "course",
        "enrollment",
        "session",
        "library",
        "system",
        "user_registration",
    ];

    fn notification_of(kind: &str) -> Notification {
        Notification {
            id: 9,
            user_id: tickethub_actors::domain::UserId(1),
            seq: 3,
            notification_type: kind.parse().unwrap(),
            title: "New User Registered".into(),
            message: "John Doe registered".into(),
            ticket: None,
            data: r#"{"user_id":5}"#.into(),
            action_url: Some("/users/5/".into()),
            is_read: false,
            read_at: None,
            created_at: Utc::now(),
        }
    }

    /// The type a dialect's live frame, replayed frame and list item carry (all must agree).
    fn types_shown(d: Dialect, n: &Notification) -> String {
        let pick = |v: &Value| -> Value {
            match d {
                Dialect::Seed001 => v["notification_type"].clone(),
                Dialect::Seed002 => v["data"]["notification_type"].clone(),
                Dialect::Seed003 | Dialect::Seed004 => v["notification"]["type"].clone(),
            }
        };
        let live = pick(&d.notification(n, false));
        let replayed: Value = serde_json::from_slice(&d.notification_bytes(n, true)).unwrap();
        let replayed = pick(&replayed);
        let item = d.list_item(n);
        let item = match d {
            Dialect::Seed001 | Dialect::Seed002 => item["notification_type"].clone(),
            Dialect::Seed003 | Dialect::Seed004 => item["type"].clone(),
        };
        assert_eq!(live, replayed, "{d:?}");
        assert_eq!(live, item, "{d:?}");
        live.as_str()
            .unwrap_or_else(|| panic!("{d:?}: {live}"))
            .to_owned()
    }

    /// Every dialect's frame written from typed fields is the frame of its JSON tree, byte for
    /// byte: with and without a ticket and a link, read or not, and with stored data that is
    /// not an object or not JSON at all.
    #[test]
    fn every_dialect_s_frame_bytes_are_those_of_its_tree() {
        let now = Utc::now();
        let plain = Notification {
            title: "Ticket \"Assigned\"".into(),
            message: "WEB-5 is yours\n— ünïcode \u{1F600}".into(),
            data: r#"{"a":[1,2,{"b":null}],"z":"x"}"#.into(),
            created_at: now - chrono::Duration::seconds(3_700),
            ..notification_of("ticket_assigned")
        };
        let full = Notification {
            ticket: Some(wire::sample_ticket(now)),
            action_url: Some("/tickets/5".into()),
            is_read: true,
            read_at: Some(now),
            ..plain.clone()
        };
        let registered = notification_of("user_registered");
        let not_an_object = Notification {
            data: "[1,2]".into(),
            ..plain.clone()
        };
        let not_json = Notification {
            data: "{oops".into(),
            ..plain.clone()
        };
        for d in [
            Dialect::Seed001,
            Dialect::Seed002,
            Dialect::Seed003,
            Dialect::Seed004,
        ] {
            for n in [&plain, &full, &registered, &not_an_object, &not_json] {
                for replayed in [false, true] {
                    let tree = serde_json::to_vec(&d.notification_at(n, replayed, now)).unwrap();
                    let bytes = d.notification_bytes_at(n, replayed, now);
                    assert_eq!(
                        String::from_utf8(bytes).unwrap(),
                        String::from_utf8(tree).unwrap(),
                        "{d:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn seed004_names_a_registration_user_registration_and_keeps_the_rest() {
        let registered = notification_of("user_registered");
        assert_eq!(registered.notification_type, EventType::UserRegistered);
        assert_eq!(
            types_shown(Dialect::Seed004, &registered),
            "user_registration"
        );
        // The other dialects keep the hub's name.
        for d in [Dialect::Seed001, Dialect::Seed002, Dialect::Seed003] {
            assert_eq!(types_shown(d, &registered), "user_registered", "{d:?}");
        }
        // Every other built-in type, and a sender's own types, pass unchanged, in every dialect.
        let kept = EventType::BUILT_IN
            .iter()
            .filter(|t| **t != EventType::UserRegistered)
            .map(|t| t.as_str().to_owned())
            .chain(["general", "approval", "info"].map(String::from));
        for kind in kept {
            for d in Dialect::ALL {
                assert_eq!(types_shown(d, &notification_of(&kind)), kind, "{d:?}");
            }
        }
        // Each mapping is to a word of seed 004's vocabulary, from a built-in type; no hub type
        // kept as it is collides with one of seed 004's words.
        for (hub, seed) in &SEED004_TYPES {
            assert!(EventType::BUILT_IN.contains(hub), "{hub}");
            assert!(SEED004_VOCABULARY.contains(seed), "{seed}");
            assert_eq!(Dialect::Seed004.type_name(hub), *seed);
        }
        for t in &EventType::BUILT_IN {
            let shown = Dialect::Seed004.type_name(t);
            if shown == t.as_str() {
                assert!(!SEED004_VOCABULARY.contains(&shown), "{shown}");
            }
        }
    }

    #[test]
    fn names_and_subprotocols_round_trip() {
        for d in Dialect::ALL {
            assert_eq!(Dialect::from_name(d.name()), Some(d));
            assert_eq!(Dialect::from_subprotocol(&d.subprotocol()), Some(d));
        }
        assert_eq!(Dialect::from_name("seed005"), None);
        assert_eq!(Dialect::from_subprotocol("tickethub.v1"), None);
    }
}
