//! Arbitrary bytes as a REST request body: the first byte picks the endpoint's body type, the
//! rest is the body. Deserialization and validation must never panic, and what they decide
//! must hold together.
//!
//! Checked for every input:
//!
//! - **Only JSON is accepted.** A body that is not JSON is refused (an empty body of a ticket
//!   action is `{}`, as the endpoint documents).
//! - **Accepted bodies round-trip.** A body that validates, re-serialised as compact JSON, as
//!   pretty JSON and with every object's members in reverse order, validates again to the same
//!   JSON value; an admin's `send` validates to the same announcement each time, and to the same
//!   one as a `send_notification` frame on the WebSocket.
//! - **A refusal names a field** ("Bad input and what it gets": 400 `{"detail"}` naming the
//!   problem). When the body is a JSON object, its refusal names a field of the endpoint's body
//!   or a member of the body: a missing, unknown or repeated field by name, a value of the wrong
//!   type by the member it sits in, a validation error by the field it is about. A refusal
//!   that is an HTTP error is a 400.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use tickethub::fuzzing::RestBody;
// The includer declares `send_fields` beside this module (fuzz/checks/send_fields.rs).
use super::send_fields;

/// The checks on one input; a failed check panics.
pub fn check(input: &[u8]) {
    let verdict = tickethub::fuzzing::rest_body(input);
    let (kind, body) = match input.split_first() {
        Some((&tag, body)) => (RestBody::from_tag(tag), body),
        None => (RestBody::Login, &[][..]),
    };
    match (serde_json::from_slice::<Value>(body), verdict) {
        (Err(e), Ok(())) => assert!(
            (kind == RestBody::TicketAction && body.iter().all(u8::is_ascii_whitespace))
                || beyond_value(&e, body),
            "{kind:?} accepted a body that is not JSON ({e})"
        ),
        (Err(_), Err(reason)) => assert!(!reason.is_empty()),
        (Ok(value), Ok(())) => check_round_trip(kind, body, &value),
        (Ok(value), Err(reason)) => check_refusal(kind, body, &value, &reason),
    }
}

/// JSON a `Value` cannot hold but a body type may skip over unread: nesting past serde_json's
/// limit, a number past `f64`, an escaped lone surrogate (`"\ud800"`, which JSON's grammar
/// allows), or bytes that are not UTF-8 inside a string, in a member the endpoint ignores
/// (serde skips an ignored string without decoding it; every member read is decoded).
fn beyond_value(e: &serde_json::Error, body: &[u8]) -> bool {
    let text = e.to_string();
    let mended = without_surrogate_escapes(String::from_utf8_lossy(body).as_bytes());
    text.starts_with("recursion limit exceeded")
        || text.starts_with("number out of range")
        || serde_json::from_slice::<Value>(&mended).is_ok()
}

/// `body` with every `\uD800`…`\uDFFF` escape inside a string made `\u0041`.
fn without_surrogate_escapes(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let (mut i, mut in_string) = (0, false);
    while i < out.len() {
        match out[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                let hex = out.get(i + 2..i + 6).map(<[u8]>::to_ascii_lowercase);
                if out.get(i + 1) == Some(&b'u')
                    && hex.as_deref().is_some_and(|h| {
                        h[0] == b'd'
                            && matches!(h[1], b'8'..=b'9' | b'a'..=b'f')
                            && h[2..].iter().all(u8::is_ascii_hexdigit)
                    })
                {
                    out[i + 2..i + 6].copy_from_slice(b"0041");
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The fields of each body type, as the endpoint reads them.
fn fields(kind: RestBody) -> &'static [&'static str] {
    match kind {
        RestBody::Login => &["username", "password"],
        RestBody::Refresh => &["refresh"],
        RestBody::Register => &[
            "username",
            "password",
            "email",
            "display_name",
            "whatsapp_number",
            "phone_number",
        ],
        RestBody::Profile => &["display_name", "email", "whatsapp_number", "phone_number"],
        RestBody::UserChanges => &[
            "role",
            "is_active",
            "display_name",
            "email",
            "whatsapp_number",
            "phone_number",
        ],
        RestBody::TicketCreate => &["project", "title", "description", "priority", "category"],
        // Any object: each action reads its own members.
        RestBody::TicketAction => &[],
        RestBody::Preferences => &["channels", "types", "notification_types"],
        RestBody::Send => send_fields::SEND_FIELDS,
        RestBody::ProjectCreate => &["key", "name", "member_ids"],
        RestBody::ProjectUpdate => &["name", "member_ids", "id", "key", "created_at"],
    }
}

/// An accepted body, written three other ways, is accepted as the same value.
fn check_round_trip(kind: RestBody, body: &[u8], value: &Value) {
    let announcement = (kind == RestBody::Send).then(|| announce(body));
    let encodings = [
        serde_json::to_vec(value).expect("a Value serializes"),
        serde_json::to_vec_pretty(value).expect("a Value serializes"),
        reversed(value).into_bytes(),
    ];
    for encoded in &encodings {
        let shown = String::from_utf8_lossy(encoded);
        assert_eq!(
            kind.check(encoded),
            Ok(()),
            "{kind:?}: accepted {}, refused {shown}",
            String::from_utf8_lossy(body)
        );
        let again: Value = serde_json::from_slice(encoded).expect("written as JSON");
        assert_eq!(&again, value, "{kind:?}: {shown} reads as another value");
        if let Some(a) = &announcement {
            assert_eq!(&announce(encoded), a, "another announcement from {shown}");
        }
    }
    // The same body as a WebSocket `send_notification` (whose own second `type` would be the
    // notification's type: only for bodies without one).
    if let (Some(a), Some(object)) = (&announcement, value.as_object()) {
        if !object.contains_key("type") {
            let compact = String::from_utf8(encodings[0].clone()).expect("JSON is UTF-8");
            let frame = format!(r#"{{"type":"send_notification",{}"#, &compact[1..]);
            let via_socket = match tickethub::ws::protocol::ClientFrame::decode(frame.as_bytes()) {
                Ok(tickethub::ws::protocol::ClientFrame::SendNotification(b)) => {
                    format!("{:?}", b.into_announcement())
                }
                other => panic!("{frame} decoded as {other:?}"),
            };
            assert_eq!(&via_socket, a, "the frame {frame} announces something else");
        }
    }
}

/// The announcement a `send` body validates to, as its debug text.
fn announce(body: &[u8]) -> String {
    let parsed: tickethub::wire::SendIn =
        serde_json::from_slice(body).expect("an accepted send body parses");
    format!("{:?}", parsed.into_announcement())
}

/// `value` as JSON with every object's members in reverse order.
fn reversed(value: &Value) -> String {
    match value {
        Value::Object(members) => {
            let inner: Vec<String> = members
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), reversed(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(reversed).collect();
            format!("[{}]", inner.join(","))
        }
        leaf => leaf.to_string(),
    }
}

/// What serde says about a body of the wrong shape, and the field it names.
const SERDE_NAMING: &[&str] = &["missing field `", "unknown field `", "duplicate field `"];

/// What serde says about a value of the wrong type; the error's position is in its member.
const SERDE_TYPING: &[&str] = &["invalid type: ", "invalid value: ", "invalid length "];

/// A refused JSON body: a 400 if it is an HTTP error, and, for an object, a refusal that names
/// a field.
fn check_refusal(kind: RestBody, body: &[u8], value: &Value, reason: &str) {
    let detail = match reason.strip_prefix("ApiError {") {
        Some(rest) => {
            assert!(rest.contains("status: 400"), "{kind:?}: {reason}");
            debug_string_after(rest, "detail: ")
                .unwrap_or_else(|| panic!("{kind:?}: no detail in {reason}"))
        }
        None => reason.to_owned(),
    };
    let Some(object) = value.as_object() else {
        // The whole body is of the wrong kind; no field to name.
        assert!(!detail.is_empty());
        return;
    };
    let declared = fields(kind);
    let shown = String::from_utf8_lossy(body);
    if let Some(rest) = SERDE_NAMING.iter().find_map(|p| detail.strip_prefix(p)) {
        let named = |name: &str| rest.starts_with(&format!("{name}`"));
        assert!(
            declared.iter().any(|f| named(f)) || object.keys().any(|k| named(k)),
            "{kind:?}: `{detail}` names neither a field nor a member of {shown}"
        );
        return;
    }
    if SERDE_TYPING.iter().any(|p| detail.starts_with(p)) {
        let member = member_at(body, &detail)
            .unwrap_or_else(|| panic!("{kind:?}: `{detail}` points at no member of {shown}"));
        assert!(
            declared.contains(&member.as_str()),
            "{kind:?}: `{detail}` is about `{member}`, not a field, in {shown}"
        );
        return;
    }
    // A validation error: `field: …` or `field.member: …`, a member named in backticks, or
    // the fields it is about named in the sentence.
    let head = detail.split(':').next().unwrap_or_default();
    let by_path = detail.contains(':') && declared.contains(&head.split('.').next().unwrap_or(""));
    let by_member = keys(value)
        .iter()
        .any(|k| detail.contains(&format!("`{k}`")));
    let by_word = declared.iter().any(|f| names_word(&detail, f));
    assert!(
        by_path || by_member || by_word,
        "{kind:?}: the refusal `{detail}` names no field of {shown}"
    );
}

/// The names of the members of every object in `value`, at any depth.
fn keys(value: &Value) -> Vec<&str> {
    match value {
        Value::Object(members) => members
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.as_str()).chain(keys(v)))
            .collect(),
        Value::Array(items) => items.iter().flat_map(keys).collect(),
        _ => Vec::new(),
    }
}

/// Whether `text` holds `word` delimited by anything but letters, digits and `_`.
fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(ident)
            && !text[at + word.len()..].chars().next().is_some_and(ident)
    })
}

/// The string written with `{:?}` right after `label` in `text`, unescaped.
fn debug_string_after(text: &str, label: &str) -> Option<String> {
    let start = text.find(label)? + label.len();
    let mut chars = text[start..].chars();
    if chars.next()? != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The top-level member of the JSON object `body` in which serde's error `detail` (ending in
/// `at line L column C`) happened.
fn member_at(body: &[u8], detail: &str) -> Option<String> {
    let (_, position) = detail.rsplit_once(" at line ")?;
    let (line, column) = position.split_once(" column ")?;
    let (line, column): (usize, usize) = (line.parse().ok()?, column.parse().ok()?);
    let line_start = if line <= 1 {
        0
    } else {
        body.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(line - 2)?
            .0
            + 1
    };
    let offset = line_start + column;
    let Members(members) = serde_json::from_slice(body).ok()?;
    members.into_iter().find_map(|(key, raw)| {
        let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
        let end = start + raw.get().len();
        (start..=end).contains(&offset).then_some(key)
    })
}

/// A JSON object's members in order, each with the bytes of its value.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}
