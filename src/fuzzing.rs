//! Entry points for the fuzz targets in `fuzz/`: untrusted client input in, no panic out.
//!
//! Each function runs bytes a client could send through the decoding and validation the hub
//! applies to them before anything touches the database or an actor, and reports only whether
//! the input was accepted. The fuzz targets call them and look for panics; the unit tests below
//! check that well-formed input is accepted, so that the fuzzers explore the paths that matter.
//!
//! Not part of the hub's API.

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use tickethub_actors::domain::{is_valid_project_key, Role};
use tickethub_actors::ticket_domain::{Category, Priority};

use crate::http::error::ApiError;
use crate::http::{auth, notifications, projects, tickets, users};
use crate::wire::dialect::Dialect;
use crate::ws::protocol::{ClientFrame, ServerFrame};

/// A WebSocket text frame from a client, as a session decodes it: the frame itself, the
/// validation of an admin's `send_notification`, the `limit` check of `get_notifications`, and
/// the JSON of the answer (`pong` or `error`) the hub writes back. The same bytes are also read
/// as a seed dialect's name and subprotocol, as the handshake reads them.
///
/// `Ok` when the frame decodes and passes validation, else the reason.
pub fn ws_frame(bytes: &[u8]) -> Result<(), String> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = Dialect::from_name(text);
        let _ = Dialect::from_subprotocol(text);
    }
    let frame = match ClientFrame::decode(bytes) {
        Ok(frame) => frame,
        Err(e) => {
            let _ = e.to_frame().to_json();
            return Err(format!("{e:?}"));
        }
    };
    match frame {
        ClientFrame::Ping {
            timestamp: Some(timestamp),
        } => {
            let _ = ServerFrame::Pong { timestamp }.to_json();
        }
        ClientFrame::GetNotifications(q) if !(1..=100).contains(&q.limit.unwrap_or(20)) => {
            return Err("limit must be between 1 and 100".into());
        }
        ClientFrame::SendNotification(body) => {
            body.into_announcement()?;
        }
        _ => {}
    }
    Ok(())
}

/// The JSON request bodies of the REST API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestBody {
    /// `POST /api/auth/login/`.
    Login,
    /// `POST /api/auth/refresh/`.
    Refresh,
    /// `POST /api/auth/register/`.
    Register,
    /// `PATCH /api/users/me/`.
    Profile,
    /// `PATCH /api/users/{id}/`.
    UserChanges,
    /// `POST /api/tickets/`.
    TicketCreate,
    /// `POST /api/tickets/{id}/comments/` and the lifecycle actions (`assign`, `reject` …).
    TicketAction,
    /// `PUT /api/notifications/preferences/`.
    Preferences,
    /// `POST /api/notifications/send/`.
    Send,
    /// `POST /api/projects/`.
    ProjectCreate,
    /// `PATCH /api/projects/{id}/`.
    ProjectUpdate,
}

impl RestBody {
    /// Every kind, in order.
    pub const ALL: [RestBody; 11] = [
        RestBody::Login,
        RestBody::Refresh,
        RestBody::Register,
        RestBody::Profile,
        RestBody::UserChanges,
        RestBody::TicketCreate,
        RestBody::TicketAction,
        RestBody::Preferences,
        RestBody::Send,
        RestBody::ProjectCreate,
        RestBody::ProjectUpdate,
    ];

    /// The letter that selects this kind as the first byte of a fuzz input, so that seed
    /// files read as text: `r{"username":…}` is a registration.
    pub fn tag(self) -> u8 {
        match self {
            RestBody::Login => b'l',
            RestBody::Refresh => b'f',
            RestBody::Register => b'r',
            RestBody::Profile => b'm',
            RestBody::UserChanges => b'u',
            RestBody::TicketCreate => b't',
            RestBody::TicketAction => b'a',
            RestBody::Preferences => b'n',
            RestBody::Send => b's',
            RestBody::ProjectCreate => b'p',
            RestBody::ProjectUpdate => b'q',
        }
    }

    /// The kind a tag selects; any other byte selects a kind too, so that no input is wasted.
    pub fn from_tag(tag: u8) -> RestBody {
        Self::ALL
            .into_iter()
            .find(|k| k.tag() == tag)
            .unwrap_or(Self::ALL[usize::from(tag) % Self::ALL.len()])
    }

    /// Deserializes `body` into this kind's request type and runs the validation its handler
    /// runs before it reaches the store. `Ok` when the body is accepted, else the reason.
    pub fn check(self, body: &[u8]) -> Result<(), String> {
        let bad = |e: ApiError| format!("{e:?}");
        match self {
            RestBody::Login => {
                parse::<auth::LoginIn>(body)?;
            }
            RestBody::Refresh => {
                parse::<auth::RefreshIn>(body)?;
            }
            RestBody::Register => {
                let r: auth::RegisterIn = parse(body)?;
                users::validate_username(r.username.trim()).map_err(bad)?;
                if !(8..=128).contains(&r.password.chars().count()) {
                    return Err("password: 8 to 128 characters".into());
                }
                if r.display_name
                    .is_some_and(|n| n.trim().chars().count() > 150)
                {
                    return Err("display_name: at most 150 characters".into());
                }
                if r.email
                    .is_some_and(|e| !e.trim().is_empty() && !users::is_plausible_email(&e))
                {
                    return Err("email: not an address".into());
                }
                if r.whatsapp_number
                    .is_some_and(|n| !n.trim().is_empty() && !users::is_plausible_phone(&n))
                {
                    return Err("whatsapp_number: not an E.164 number".into());
                }
                if r.phone_number
                    .is_some_and(|n| !n.trim().is_empty() && !users::is_plausible_phone(&n))
                {
                    return Err("phone_number: not an E.164 number".into());
                }
            }
            RestBody::Profile => {
                let p: users::ProfileIn = parse(body)?;
                let addresses = crate::http::addresses::changes(
                    p.email,
                    p.whatsapp_number,
                    p.phone_number,
                    p.addresses,
                )
                .map_err(bad)?;
                users::profile_changes(p.display_name, addresses).map_err(bad)?;
            }
            RestBody::UserChanges => {
                let c: users::UserChangesIn = parse(body)?;
                if let Some(role) = &c.role {
                    role.parse::<Role>().map_err(|e| format!("role: {e}"))?;
                }
                let addresses = crate::http::addresses::changes(
                    c.email,
                    c.whatsapp_number,
                    c.phone_number,
                    c.addresses,
                )
                .map_err(bad)?;
                users::profile_changes(c.display_name, addresses).map_err(bad)?;
            }
            RestBody::TicketCreate => {
                let t: tickets::CreateIn = parse(body)?;
                let title = t.title.trim();
                if title.is_empty() || title.chars().count() > 200 {
                    return Err("title: 1 to 200 characters".into());
                }
                if t.description.chars().count() > 20_000 {
                    return Err("description: at most 20000 characters".into());
                }
                if let Some(p) = &t.priority {
                    p.parse::<Priority>()
                        .map_err(|e| format!("priority: {e}"))?;
                }
                if let Some(c) = &t.category {
                    c.parse::<Category>()
                        .map_err(|e| format!("category: {e}"))?;
                }
            }
            RestBody::TicketAction => {
                tickets::json_body(&Bytes::copy_from_slice(body)).map_err(bad)?;
            }
            RestBody::Preferences => {
                let p: notifications::PreferencesIn = parse(body)?;
                for (name, v) in &p.channels {
                    notifications::switchable(name).map_err(bad)?;
                    notifications::switch_value(&format!("channels.{name}"), v).map_err(bad)?;
                }
                for (kind, per_channel) in &p.types {
                    if kind.is_empty() || kind.len() > 64 || kind == "*" {
                        return Err(format!("types: `{kind}` is not a notification type"));
                    }
                    let per_channel = per_channel
                        .as_object()
                        .ok_or_else(|| format!("types.{kind}: not an object"))?;
                    for (name, v) in per_channel {
                        notifications::switchable(name).map_err(bad)?;
                        notifications::switch_value(&format!("types.{kind}.{name}"), v)
                            .map_err(bad)?;
                    }
                }
            }
            RestBody::Send => {
                parse::<crate::wire::SendIn>(body)?.into_announcement()?;
            }
            RestBody::ProjectCreate => {
                let p: projects::CreateIn = parse(body)?;
                if !is_valid_project_key(&p.key) {
                    return Err("key: not a project key".into());
                }
                projects::valid_name(&p.name).map_err(bad)?;
            }
            RestBody::ProjectUpdate => {
                let p: projects::UpdateIn = parse(body)?;
                if let Some(name) = &p.name {
                    projects::valid_name(name).map_err(bad)?;
                }
            }
        }
        Ok(())
    }
}

/// A REST fuzz input: the first byte selects the kind of body ([`RestBody::from_tag`]), the
/// rest is the body. An empty input is an empty login body.
pub fn rest_body(input: &[u8]) -> Result<(), String> {
    match input.split_first() {
        Some((&tag, body)) => RestBody::from_tag(tag).check(body),
        None => RestBody::Login.check(&[]),
    }
}

/// The readers of spans and times that people give, one per kind of input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeField {
    /// A send's `delay` (`POST /api/notifications/send/`).
    Delay,
    /// A send's `send_at`.
    SendAt,
    /// An escalation step's `after`, in the routing file.
    After,
    /// A route's `push.unless_seen_within`, in the routing file.
    PushWait,
    /// A span flag: `--retention`, `--retention-unread`, `--retention-interval`,
    /// `--schedule-max-ahead`.
    Flag,
}

impl TimeField {
    /// Every kind, in order.
    pub const ALL: [TimeField; 5] = [
        TimeField::Delay,
        TimeField::SendAt,
        TimeField::After,
        TimeField::PushWait,
        TimeField::Flag,
    ];

    /// The letter that selects this kind as the first byte of a fuzz input.
    pub fn tag(self) -> u8 {
        match self {
            TimeField::Delay => b'd',
            TimeField::SendAt => b's',
            TimeField::After => b'a',
            TimeField::PushWait => b'p',
            TimeField::Flag => b'f',
        }
    }

    /// The kind a tag selects; any other byte selects a kind too.
    pub fn from_tag(tag: u8) -> TimeField {
        Self::ALL
            .into_iter()
            .find(|k| k.tag() == tag)
            .unwrap_or(Self::ALL[usize::from(tag) % Self::ALL.len()])
    }
}

/// What reading a span or time came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeRead {
    /// A send due at this time (`delay`, `send_at`), read at `now` with `max_ahead`.
    Due {
        /// When it is due.
        at: chrono::DateTime<chrono::Utc>,
        /// The time it was read at.
        now: chrono::DateTime<chrono::Utc>,
        /// How far ahead a send may go.
        max_ahead: std::time::Duration,
    },
    /// A span (routing file, flags).
    Span(std::time::Duration),
}

/// How far ahead the fuzzed sends may be scheduled: the default, 30 days.
const FUZZ_MAX_AHEAD: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// A span or time a person gives, read as the hub reads it: the first byte selects the reader
/// ([`TimeField::from_tag`]), the rest is the text. `Ok` with what was read, else the reason.
pub fn time_input(input: &[u8]) -> Result<TimeRead, String> {
    let (field, text) = match input.split_first() {
        Some((&tag, rest)) => (TimeField::from_tag(tag), rest),
        None => (TimeField::Delay, &[][..]),
    };
    let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    let now = chrono::Utc::now();
    let due = |body: serde_json::Value| -> Result<TimeRead, String> {
        let send: crate::wire::SendIn = serde_json::from_value(body).map_err(|e| e.to_string())?;
        let at = send
            .due(now, FUZZ_MAX_AHEAD)?
            .ok_or_else(|| "not scheduled".to_owned())?;
        Ok(TimeRead::Due {
            at,
            now,
            max_ahead: FUZZ_MAX_AHEAD,
        })
    };
    let routed = |toml: String,
                  pick: fn(
        &tickethub_actors::routing::RoutingTable,
    ) -> Option<std::time::Duration>| {
        let mut table = tickethub_actors::routing::RoutingTable::default();
        crate::routing::apply(&mut table, &toml)?;
        pick(&table)
            .map(TimeRead::Span)
            .ok_or_else(|| "no span".to_owned())
    };
    let quoted = toml::Value::String(text.to_owned()).to_string();
    match field {
        TimeField::Delay => due(serde_json::json!({"user_id": 1, "title": "t", "message": "m", "delay": text})),
        TimeField::SendAt => due(serde_json::json!({"user_id": 1, "title": "t", "message": "m", "send_at": text})),
        TimeField::After => routed(
            format!("[[escalation]]\nevents = [\"ticket_assigned\"]\nsteps = [ {{ after = {quoted}, channels = [\"email\"] }} ]\n"),
            |t| t.escalations().first().and_then(|p| p.steps.first()).map(|s| s.after),
        ),
        TimeField::PushWait => routed(
            format!("[ticket_assigned]\nrecipients = [\"assignees\"]\nchannels = [\"push\"]\npush = {{ unless_seen_within = {quoted} }}\n"),
            |t| t.route(&tickethub_actors::routing::EventType::TicketAssigned).and_then(|r| r.push_unless_seen),
        ),
        TimeField::Flag => {
            use clap::Parser;
            #[derive(clap::Parser)]
            struct Flags {
                #[command(flatten)]
                serve: crate::config::ServeConfig,
            }
            let parsed = Flags::try_parse_from(["tickethub", "--retention", text])
                .map_err(|e| e.to_string())?;
            Ok(TimeRead::Span(parsed.serve.retention))
        }
    }
}

/// A JSON body as axum's `Json` extractor reads it.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_every_byte_selects_a_kind() {
        for kind in RestBody::ALL {
            assert_eq!(RestBody::from_tag(kind.tag()), kind);
        }
        for byte in 0..=u8::MAX {
            let _ = RestBody::from_tag(byte);
        }
    }

    #[test]
    fn well_formed_bodies_are_accepted_and_bad_ones_refused() {
        let ok: &[&[u8]] = &[
            br#"l{"username":"alice","password":"alice-password"}"#,
            br#"f{"refresh":"x.y.z"}"#,
            br#"r{"username":"carol","password":"carol-password","email":"carol@example.com","whatsapp_number":"+15551234567"}"#,
            br#"m{"display_name":"Carol","email":null}"#,
            br#"u{"role":"developer","is_active":true}"#,
            br#"t{"project":1,"title":"Printer on fire","priority":"HIGH","category":"BUG"}"#,
            br#"a{"body":"Looking into it."}"#,
            b"a",
            br#"n{"channels":{"email":true},"types":{"ticket_created":{"whatsapp":false}}}"#,
            br#"s{"user_ids":[1,2],"title":"Maintenance","message":"Tonight at 22:00."}"#,
            br#"p{"key":"WEB","name":"Website","member_ids":[1]}"#,
            br#"q{"name":"Website 2"}"#,
        ];
        for input in ok {
            assert_eq!(
                rest_body(input),
                Ok(()),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let refused: &[&[u8]] = &[
            b"",
            br#"r{"username":"a b","password":"long-enough"}"#,
            br#"t{"project":1,"title":"x","priority":"URGENT!"}"#,
            br#"t{"project":1,"title":"x","extra":1}"#,
            br#"a[1,2]"#,
            br#"n{"channels":{"websocket":true}}"#,
            br#"s{"user_id":1,"role":"admin","title":"T","message":"M"}"#,
            br#"p{"key":"web","name":"Website"}"#,
        ];
        for input in refused {
            assert!(
                rest_body(input).is_err(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// The committed seeds in `fuzz/seeds/<target>/`: those named `refused_*` are refused,
    /// every other one is accepted, so that each seed starts the fuzzer on the path it names.
    #[test]
    fn the_fuzz_seeds_are_accepted_unless_named_refused() {
        type Check = fn(&[u8]) -> Result<(), String>;
        let targets: [(&str, Check); 2] = [("ws_frame", ws_frame), ("rest_bodies", rest_body)];
        for (target, check) in targets {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/seeds")
                .join(target);
            let mut seen = 0;
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let refused = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("refused_"));
                let outcome = check(&std::fs::read(&path).unwrap());
                assert_eq!(outcome.is_err(), refused, "{}: {outcome:?}", path.display());
                seen += 1;
            }
            assert!(seen >= 12, "{target}: only {seen} seeds");
        }
    }

    #[test]
    fn socket_frames_are_decoded_and_validated() {
        assert_eq!(
            ws_frame(br#"{"type":"ping","timestamp":{"a":[1]}}"#),
            Ok(())
        );
        assert_eq!(
            ws_frame(br#"{"type":"get_notifications","limit":5}"#),
            Ok(())
        );
        assert!(ws_frame(br#"{"type":"get_notifications","limit":500}"#).is_err());
        assert!(ws_frame(br#"{"type":"send_notification","title":"T","message":"M"}"#).is_err());
        assert!(ws_frame(b"\xff").is_err());
    }
}
