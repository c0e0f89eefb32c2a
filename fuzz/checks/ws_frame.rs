//! Arbitrary bytes as a WebSocket text frame from a client: decoding, validation and the
//! answer's JSON must never panic, and what the hub makes of the bytes must hold together.
//!
//! Checked for every input:
//!
//! - **The verdict is the decoder's.** `tickethub::fuzzing::ws_frame` refuses exactly the
//!   frames the decoder refuses, a `get_notifications` whose `limit` is outside 1 to 100, and a
//!   `send_notification` whose body does not validate: no other refusal exists.
//! - **Refusals are told apart as documented** ("Bad input and what it gets"): bytes that are
//!   not a JSON object, or whose first `type` is not a string, are malformed; a string `type`
//!   the hub does not know is `unknown_type` and names that type; a known type with bad fields
//!   is `bad_request` for that type.
//! - **Every refusal carries a documented code.** The `error` frame the hub writes back is
//!   JSON `{"type":"error","code","message"}` whose code is one of those the README documents
//!   for the WebSocket sockets, and a validation refusal names the field it is about.
//! - **Decoding is a fixpoint.** A decoded frame, written back as JSON, decodes to the same
//!   frame; an admin's validated `send_notification`, written back, validates to the same
//!   announcement, over the WebSocket and as a REST body alike.
//! - **Replies round-trip.** A `ping`'s `pong` is JSON that carries the ping's `timestamp`.
//! - **Dialect names round-trip.** A name or subprotocol that selects a dialect is that
//!   dialect's own spelling, and `?dialect=` accepts exactly the names `--ws-dialect` does.

use clap::ValueEnum;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{json, Value};
use tickethub::ws::dialect::Dialect;
use tickethub::ws::protocol::{ClientFrame, DecodeError, ServerFrame};
use tickethub_actors::hub::{Announcement, Recipients};

/// The `error` codes the README documents for `/ws/notifications/` and the project sockets.
const DOCUMENTED_CODES: &[&str] = &[
    "bad_request",
    "unknown_type",
    "invalid_token",
    "forbidden",
    "unavailable",
    "rate_limited",
    "not_found",
];

/// The client frame types the README documents, on any socket.
const KNOWN_TYPES: &[&str] = &[
    "ping",
    "refresh_token",
    "get_notifications",
    "mark_read",
    "mark_unread",
    "mark_all_read",
    "delete_notification",
    "send_notification",
    "ack",
    "ticket_viewing",
    "user_typing",
];

// The includer declares `send_fields` beside this module (fuzz/checks/send_fields.rs).
use super::send_fields::SEND_FIELDS;

/// The checks on one input; a failed check panics.
pub fn check(data: &[u8]) {
    check_dialect_names(data);
    let verdict = tickethub::fuzzing::ws_frame(data);
    match ClientFrame::decode(data) {
        Err(e) => {
            assert!(verdict.is_err(), "accepted what the decoder refused: {e:?}");
            check_refusal(data, &e);
        }
        Ok(frame) => {
            assert!(
                std::str::from_utf8(data).is_ok(),
                "a frame that is not UTF-8 decoded: {frame:?}"
            );
            assert_eq!(
                first_type(data).as_deref(),
                Some(frame_type(&frame)),
                "decoded as another type than the frame's first `type`"
            );
            let expected = check_frame(frame);
            match (&verdict, expected) {
                (Ok(()), Ok(())) => {}
                (Err(reason), Err(field)) => assert!(
                    names_word(reason, field),
                    "the refusal `{reason}` does not name `{field}`"
                ),
                _ => panic!("verdict {verdict:?}, but the frame's own checks say {expected:?}"),
            }
        }
    }
}

/// The frame's `type`.
fn frame_type(frame: &ClientFrame) -> &'static str {
    match frame {
        ClientFrame::Ping { .. } => "ping",
        ClientFrame::RefreshToken { .. } => "refresh_token",
        ClientFrame::GetNotifications(_) => "get_notifications",
        ClientFrame::MarkRead { .. } => "mark_read",
        ClientFrame::MarkUnread { .. } => "mark_unread",
        ClientFrame::MarkAllRead(_) => "mark_all_read",
        ClientFrame::DeleteNotification { .. } => "delete_notification",
        ClientFrame::SendNotification(_) => "send_notification",
        ClientFrame::Ack { .. } => "ack",
        ClientFrame::TicketViewing { .. } => "ticket_viewing",
        ClientFrame::UserTyping { .. } => "user_typing",
    }
}

/// A decode refusal: the right kind for the bytes, and an `error` frame with a documented
/// code.
fn check_refusal(data: &[u8], e: &DecodeError) {
    let kind = first_type(data);
    match e {
        DecodeError::Malformed(_) => assert!(
            kind.is_none(),
            "malformed, though its first `type` is {kind:?}"
        ),
        DecodeError::UnknownType(t) => {
            assert_eq!(kind.as_deref(), Some(t.as_str()), "not the frame's type");
            assert!(!KNOWN_TYPES.contains(&t.as_str()), "`{t}` is known");
        }
        DecodeError::BadFields { kind: t, reason } => {
            assert_eq!(kind.as_deref(), Some(t.as_str()), "not the frame's type");
            assert!(KNOWN_TYPES.contains(&t.as_str()), "`{t}` is unknown");
            assert!(!reason.is_empty());
        }
    }
    let frame: Value =
        serde_json::from_slice(&e.to_frame().to_json()).expect("error frames are JSON");
    let code = frame["code"].as_str().unwrap_or_default();
    assert!(
        DOCUMENTED_CODES.contains(&code),
        "undocumented code in {frame}"
    );
    let expected = match e {
        DecodeError::UnknownType(_) => "unknown_type",
        _ => "bad_request",
    };
    assert_eq!(code, expected, "{e:?} answered with {frame}");
    assert_eq!(frame["type"], "error", "{frame}");
    assert!(
        frame["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{frame}"
    );
    assert_eq!(frame.as_object().map(|o| o.len()), Some(3), "{frame}");
}

/// A decoded frame: it is a fixpoint of encode→decode, its reply round-trips, and the
/// validation the hub runs after decoding passes (`Ok`) or is refused over the named field.
fn check_frame(frame: ClientFrame) -> Result<(), &'static str> {
    let outcome = match &frame {
        ClientFrame::GetNotifications(q) if !(1..=100).contains(&q.limit.unwrap_or(20)) => {
            Err("limit")
        }
        ClientFrame::Ping {
            timestamp: Some(timestamp),
        } => {
            let pong: Value = serde_json::from_slice(
                &ServerFrame::Pong {
                    timestamp: timestamp.clone(),
                }
                .to_json(),
            )
            .expect("a pong is JSON");
            assert_eq!(
                pong,
                json!({"type": "pong", "timestamp": timestamp}),
                "the pong does not carry the ping's timestamp"
            );
            Ok(())
        }
        _ => Ok(()),
    };
    let body = match frame {
        ClientFrame::SendNotification(body) => body,
        frame => {
            let encoded = encode(&frame).to_string();
            let again = ClientFrame::decode(encoded.as_bytes());
            assert_eq!(
                format!("{again:?}"),
                format!("{:?}", Ok::<_, DecodeError>(frame)),
                "decode(encode(frame)) differs; encoded as {encoded}"
            );
            return outcome;
        }
    };
    match body.into_announcement() {
        Ok(a) => {
            check_announcement(&a);
            Ok(())
        }
        Err(reason) => {
            let field = SEND_FIELDS
                .iter()
                .find(|f| names_word(&reason, f))
                .unwrap_or_else(|| panic!("the refusal `{reason}` names no field"));
            Err(field)
        }
    }
}

/// A frame other than `send_notification` as the JSON a client would send for it.
fn encode(frame: &ClientFrame) -> Value {
    match frame {
        ClientFrame::Ping { timestamp } => json!({"type": "ping", "timestamp": timestamp}),
        ClientFrame::RefreshToken { token } => json!({"type": "refresh_token", "token": token}),
        ClientFrame::GetNotifications(q) => json!({
            "type": "get_notifications",
            "is_read": q.is_read,
            "notification_type": q.notification_type,
            "ticket": q.ticket,
            "limit": q.limit,
            "before_seq": q.before_seq,
        }),
        ClientFrame::MarkRead { notification_id } => {
            json!({"type": "mark_read", "notification_id": notification_id})
        }
        ClientFrame::MarkUnread { notification_id } => {
            json!({"type": "mark_unread", "notification_id": notification_id})
        }
        ClientFrame::MarkAllRead(q) => json!({
            "type": "mark_all_read",
            "notification_type": q.notification_type,
            "ticket": q.ticket,
        }),
        ClientFrame::DeleteNotification { notification_id } => {
            json!({"type": "delete_notification", "notification_id": notification_id})
        }
        ClientFrame::Ack { seq } => json!({"type": "ack", "seq": seq}),
        ClientFrame::TicketViewing { ticket_id } => {
            json!({"type": "ticket_viewing", "ticket_id": ticket_id})
        }
        ClientFrame::UserTyping {
            ticket_id,
            is_typing,
        } => json!({"type": "user_typing", "ticket_id": ticket_id, "is_typing": is_typing}),
        ClientFrame::SendNotification(_) => unreachable!("encoded from its announcement"),
    }
}

/// The body of `send_notification` (and of `POST /api/notifications/send/`) that asks for
/// this announcement.
fn encode_announcement(a: &Announcement) -> Value {
    let mut body = json!({
        "title": a.title,
        "message": a.message,
        "notification_type": a.notification_type,
        "data": serde_json::from_str::<Value>(&a.data).expect("announcement data is JSON"),
        "link": a.link,
        "channels": a.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    });
    match &a.to {
        Recipients::Users(ids) => body["user_ids"] = ids.iter().map(|u| u.0).collect(),
        Recipients::Role(role) => body["role"] = role.as_str().into(),
        Recipients::OnCall(target) => body["oncall"] = tickethub::wire::oncall_name(target).into(),
    }
    body
}

/// A validated announcement, written back as a frame and as a REST body, validates to the same
/// announcement.
fn check_announcement(a: &Announcement) {
    let mut body = encode_announcement(a);
    let mut rest = b"s".to_vec();
    rest.extend(body.to_string().as_bytes());
    assert_eq!(
        tickethub::fuzzing::rest_body(&rest),
        Ok(()),
        "the REST body {} is refused",
        String::from_utf8_lossy(&rest[1..])
    );
    body["type"] = "send_notification".into();
    let encoded = body.to_string();
    let again = match ClientFrame::decode(encoded.as_bytes()) {
        Ok(ClientFrame::SendNotification(b)) => b.into_announcement(),
        other => panic!("{encoded} decoded as {other:?}"),
    };
    assert_eq!(
        format!("{again:?}"),
        format!("{:?}", Ok::<_, String>(a)),
        "validate(encode(announcement)) differs; encoded as {encoded}"
    );
}

/// The first `type` member of a JSON object, if the bytes are one and it is a string: the
/// frame's type (a second `type` is seed 003's notification type).
fn first_type(data: &[u8]) -> Option<String> {
    struct FirstType;
    impl<'de> Visitor<'de> for FirstType {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut first = None;
            while let Some((key, value)) = map.next_entry::<String, Value>()? {
                if key == "type" && first.is_none() {
                    first = Some(value);
                }
            }
            Ok(first.and_then(|v| v.as_str().map(str::to_owned)))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    let kind = de.deserialize_map(FirstType).ok()?;
    de.end().ok()?;
    kind
}

/// Whether `text` holds `word` delimited by anything but letters, digits and `_`.
fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(ident)
            && !text[at + word.len()..].chars().next().is_some_and(ident)
    })
}

/// A name or subprotocol that selects a dialect is its own spelling; `?dialect=` and
/// `--ws-dialect` accept the same names.
fn check_dialect_names(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let by_name = Dialect::from_name(text);
    if let Some(d) = by_name {
        assert_eq!(d.name(), text);
    }
    assert_eq!(
        <Dialect as ValueEnum>::from_str(text, false).ok(),
        by_name,
        "`--ws-dialect {text}` and `?dialect={text}` disagree"
    );
    if let Some(d) = Dialect::from_subprotocol(text) {
        assert_eq!(d.subprotocol(), text);
    }
    for d in Dialect::ALL {
        assert_eq!(Dialect::from_name(d.name()), Some(d));
        assert_eq!(Dialect::from_subprotocol(&d.subprotocol()), Some(d));
    }
}
