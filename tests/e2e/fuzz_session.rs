//! Property: no sequence of client frames panics a session or reaches another user.
//!
//! One hub, one user (`mallory`) sending generated sequences of frames on one socket: valid
//! commands with random field values, wrong types, unknown types, text that is not JSON,
//! huge numbers, negative ids, deeply nested JSON, any Unicode, binary frames, invalid UTF-8,
//! stray continuations and oversized messages. After each sequence the socket either still
//! answers a ping or was closed with the code the README documents for what was sent (4008
//! whatever was sent); another user (`bob`) still connects and gets a pong, `/healthz` answers
//! 200, and bob's inbox is exactly as it was, though mallory names his notifications, his user
//! id and his token.
//!
//! `PROPTEST_CASES` raises or lowers the number of sequences (48 by default).

use std::cell::RefCell;

use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{patience, Backend, TestHub, Ws};

/// One message a client sends.
#[derive(Clone, Debug)]
enum ClientMsg {
    /// A text frame: JSON or not, valid or not.
    Text(String),
    /// A binary frame: the protocol is JSON text (1003).
    Binary(Vec<u8>),
    /// A text frame whose payload is not UTF-8 (1007).
    BadUtf8(Vec<u8>),
    /// A continuation frame with no message to continue (1002).
    StrayContinuation(Vec<u8>),
    /// A text message of this many bytes, over the hub's 64 KiB limit (1009).
    Oversized(usize),
}

impl ClientMsg {
    /// The close code this message fails the socket with, if it does.
    fn closes_with(&self) -> Option<u16> {
        match self {
            ClientMsg::Text(_) => None,
            ClientMsg::Binary(_) => Some(1003),
            ClientMsg::BadUtf8(_) => Some(1007),
            ClientMsg::StrayContinuation(_) => Some(1002),
            ClientMsg::Oversized(_) => Some(1009),
        }
    }

    /// The WebSocket message that carries it.
    fn into_message(self) -> Message {
        match self {
            ClientMsg::Text(t) => Message::text(t),
            ClientMsg::Binary(b) => Message::binary(b),
            ClientMsg::BadUtf8(b) => {
                Message::Frame(Frame::message(b, OpCode::Data(Data::Text), true))
            }
            ClientMsg::StrayContinuation(b) => {
                Message::Frame(Frame::message(b, OpCode::Data(Data::Continue), true))
            }
            ClientMsg::Oversized(n) => Message::text(format!(
                r#"{{"type":"ping","timestamp":"{}"}}"#,
                "x".repeat(n)
            )),
        }
    }
}

/// The ids and tokens a sequence may name: the fuzzing user's own and the other user's.
#[derive(Clone)]
struct Targets {
    notification_ids: Vec<i64>,
    tokens: Vec<String>,
    user_ids: Vec<i64>,
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "\\PC{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An id: one that exists (the user's own or someone else's), or any `i64`.
fn id(targets: &Targets) -> impl Strategy<Value = i64> {
    prop_oneof![
        prop::sample::select(targets.notification_ids.clone()),
        any::<i64>(),
        -3i64..3,
    ]
}

/// A well-formed command of every type the hub knows, with random field values.
fn command(targets: &Targets) -> impl Strategy<Value = Value> {
    let text = || prop::option::of("\\PC{0,40}");
    let int = || prop::option::of(any::<i64>());
    prop_oneof![
        prop::option::of(json_value()).prop_map(|t| json!({"type": "ping", "timestamp": t})),
        (
            prop::option::of(any::<bool>()),
            text(),
            int(),
            prop::option::of(-5i64..150),
            int()
        )
            .prop_map(|(is_read, kind, ticket, limit, before)| json!({
                "type": "get_notifications", "is_read": is_read, "notification_type": kind,
                "ticket": ticket, "limit": limit, "before_seq": before,
            })),
        (
            prop::sample::select(vec!["mark_read", "mark_unread", "delete_notification"]),
            id(targets)
        )
            .prop_map(|(kind, id)| json!({"type": kind, "notification_id": id})),
        (text(), int()).prop_map(|(kind, ticket)| json!({
            "type": "mark_all_read", "notification_type": kind, "ticket": ticket,
        })),
        any::<i64>().prop_map(|seq| json!({"type": "ack", "seq": seq})),
        prop_oneof![prop::sample::select(targets.tokens.clone()), "\\PC{0,80}",]
            .prop_map(|token| json!({"type": "refresh_token", "token": token})),
        (
            prop::collection::vec(prop::sample::select(targets.user_ids.clone()), 0..3),
            text(),
            text(),
            prop::option::of(json_value())
        )
            .prop_map(|(ids, title, message, data)| json!({
                "type": "send_notification", "user_ids": ids, "title": title,
                "message": message, "data": data,
            })),
        prop::option::of(any::<i64>())
            .prop_map(|t| json!({"type": "ticket_viewing", "ticket_id": t})),
        (any::<i64>(), any::<bool>()).prop_map(|(t, typing)| json!({
            "type": "user_typing", "ticket_id": t, "is_typing": typing,
        })),
    ]
}

/// The types the hub knows, and the fields they read.
const KNOWN: &[(&str, &str)] = &[
    ("ping", "timestamp"),
    ("get_notifications", "limit"),
    ("get_notifications", "is_read"),
    ("mark_read", "notification_id"),
    ("mark_unread", "notification_id"),
    ("mark_all_read", "ticket"),
    ("delete_notification", "notification_id"),
    ("ack", "seq"),
    ("refresh_token", "token"),
    ("send_notification", "user_ids"),
    ("ticket_viewing", "ticket_id"),
    ("user_typing", "is_typing"),
];

/// Numbers no `i64` holds, and other numerals serde has opinions about.
const NUMERALS: &[&str] = &[
    "18446744073709551616",
    "-9223372036854775809",
    "9223372036854775807",
    "-9223372036854775808",
    "123456789012345678901234567890",
    "1e400",
    "-1e400",
    "1.5",
    "-0",
    "0.0000001e-999",
];

/// One text frame.
fn text_frame(targets: &Targets) -> impl Strategy<Value = String> {
    let known = || prop::sample::select(KNOWN);
    prop_oneof![
        // Valid commands with random field values.
        8 => command(targets).prop_map(|v| v.to_string()),
        // A known type with a field of any type.
        3 => (known(), json_value())
            .prop_map(|((kind, field), v)| json!({"type": kind, field: v}).to_string()),
        // `type` that is not a string, or a type nobody knows, with any members.
        1 => json_value().prop_map(|t| json!({"type": t}).to_string()),
        2 => ("\\PC{0,20}", prop::collection::btree_map("\\PC{0,8}", json_value(), 0..4))
            .prop_map(|(kind, mut members)| {
                members.insert("type".into(), Value::from(kind));
                Value::Object(members.into_iter().collect()).to_string()
            }),
        // Any JSON, any Unicode text, and a command cut short.
        1 => json_value().prop_map(|v| v.to_string()),
        2 => "\\PC{0,200}",
        1 => (command(targets), any::<prop::sample::Index>()).prop_map(|(v, at)| {
            let s = v.to_string();
            let mut cut = at.index(s.len() + 1);
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s[..cut].to_owned()
        }),
        // Numbers out of range, as raw numerals.
        2 => (known(), prop::sample::select(NUMERALS))
            .prop_map(|((kind, field), n)| format!(r#"{{"type":"{kind}","{field}":{n}}}"#)),
        // Deep nesting, as a field and as the whole frame (serde stops at 128 levels).
        1 => (1usize..300, known()).prop_map(|(depth, (kind, field))| format!(
            r#"{{"type":"{kind}","{field}":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )),
        1 => (1usize..300).prop_map(|depth| format!(
            "{}\"type\":\"ping\"{}",
            "{\"a\":".repeat(depth) + "{",
            "}".repeat(depth + 1)
        )),
        // Duplicate `type` keys (seed 003's second `type`), and lone surrogates.
        1 => (known(), known()).prop_map(|((a, _), (b, _))| format!(
            r#"{{"type":"{a}","type":"{b}","title":"t","message":"m","user_id":1}}"#
        )),
        1 => known().prop_map(|(kind, field)| format!(r#"{{"type":"{kind}","{field}":"\ud800"}}"#)),
    ]
}

/// One message of a sequence; most are text, a few fail the socket.
fn client_msg(targets: &Targets) -> impl Strategy<Value = ClientMsg> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        60 => text_frame(targets).prop_map(ClientMsg::Text),
        1 => bytes().prop_map(ClientMsg::Binary),
        1 => (bytes(), 0x80u8..=0xff).prop_map(|(mut b, bad)| {
            b.push(bad);
            ClientMsg::BadUtf8(b)
        }),
        1 => bytes().prop_map(ClientMsg::StrayContinuation),
        1 => (65_537usize..80_000).prop_map(ClientMsg::Oversized),
    ]
}

/// How a socket stood after a sequence.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// It answered the probe's ping.
    Alive,
    /// It was closed with this code.
    Closed(u16),
    /// The connection was reset before its close frame could be read.
    Reset,
}

/// The `error` codes the README documents for `/ws/notifications/` (`unavailable` is left out:
/// the database is up, so it would mean an input broke a query).
const ERROR_CODES: &[&str] = &[
    "bad_request",
    "unknown_type",
    "invalid_token",
    "forbidden",
    "rate_limited",
];

/// Sends `msgs` (up to the first that fails the socket; after that one only its close is
/// awaited), then a ping with a marker, and reads until its pong or the close. Every text frame
/// read must be JSON, and every `error` frame must carry a documented code.
async fn run_sequence(ws: &mut Ws, msgs: Vec<ClientMsg>, probe: u64) -> Result<Outcome, String> {
    let mut fatal = false;
    for msg in msgs {
        fatal = msg.closes_with().is_some();
        if ws.inner.send(msg.into_message()).await.is_err() || fatal {
            break;
        }
    }
    let marker = format!("probe-{probe}");
    if !fatal {
        let ping = json!({"type": "ping", "timestamp": marker}).to_string();
        // A socket the hub closed may refuse the write; its close frame is still to be read.
        let _ = ws.inner.send(Message::text(ping)).await;
    }
    loop {
        let msg = tokio::time::timeout(patience(), ws.inner.next())
            .await
            .map_err(|_| "neither a pong nor a close in time".to_owned())?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value =
                    serde_json::from_str(&t).map_err(|e| format!("not JSON ({e}): {t}"))?;
                match v["type"].as_str() {
                    Some("pong") if v["timestamp"] == marker.as_str() => return Ok(Outcome::Alive),
                    Some("error") if !ERROR_CODES.contains(&v["code"].as_str().unwrap_or("")) => {
                        return Err(format!("undocumented error frame: {v}"))
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                return Ok(Outcome::Closed(u16::from(frame.code)))
            }
            Some(Ok(Message::Close(None))) => return Ok(Outcome::Closed(1005)),
            Some(Ok(Message::Binary(b))) => return Err(format!("a binary frame: {b:?}")),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Ok(Outcome::Reset),
        }
    }
}

/// Bob's inbox as REST shows it: the unread count and each notification's id and read state.
async fn inbox(hub: &TestHub, user: &User) -> Value {
    let count = hub
        .get_as(user, "/api/notifications/unread_count/", 200)
        .await;
    let page = hub.get_as(user, "/api/notifications/", 200).await;
    let items: Vec<Value> = page["results"]
        .as_array()
        .expect("a page of results")
        .iter()
        .map(|n| json!([n["id"], n["seq"], n["is_read"]]))
        .collect();
    json!({"unread": count, "items": items})
}

async fn no_sequence_of_client_frames_panics_a_session() {
    // Commands are not throttled here, so that every frame reaches the decoder and the
    // handlers; throttling has tests of its own in `ws.rs`.
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.ws_commands_per_second = 0).await;
    let admin = hub.user("root", Role::Admin).await;
    let mallory = hub.user("mallory", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    for (user, n) in [(&mallory, 2), (&bob, 3)] {
        for i in 0..n {
            hub.post_as(
                &admin,
                "/api/notifications/send/",
                json!({"user_ids": [user.id.0], "title": format!("T{i}"), "message": "M"}),
                201,
            )
            .await;
        }
    }
    let mut notification_ids = Vec::new();
    for user in [&mallory, &bob] {
        let page = hub.get_as(user, "/api/notifications/", 200).await;
        notification_ids.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_i64().unwrap()),
        );
    }
    let targets = Targets {
        notification_ids,
        tokens: vec![hub.token(&mallory), hub.token(&bob), hub.token(&admin)],
        user_ids: vec![mallory.id.0, bob.id.0, admin.id.0, 0, -1],
    };
    let bobs_inbox = inbox(&hub, &bob).await;
    assert_eq!(bobs_inbox["unread"]["count"], 3, "{bobs_inbox}");

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        max_shrink_time: 20_000,
        ..Config::default()
    });
    let socket = RefCell::new(Some(hub.connect(&mallory).await));
    let probes = std::cell::Cell::new(0u64);
    let rt = tokio::runtime::Handle::current();
    let strategy = prop::collection::vec(client_msg(&targets), 1..20);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |msgs| {
            rt.block_on(async {
                let may_close: Vec<u16> = msgs.iter().filter_map(ClientMsg::closes_with).collect();
                let must_close = !may_close.is_empty();
                let mut ws = match socket.take() {
                    Some(ws) => ws,
                    None => hub.connect(&mallory).await,
                };
                probes.set(probes.get() + 1);
                let outcome = run_sequence(&mut ws, msgs, probes.get())
                    .await
                    .map_err(TestCaseError::fail)?;
                match outcome {
                    Outcome::Alive => {
                        prop_assert!(!must_close, "the socket stayed open after {may_close:?}");
                        socket.replace(Some(ws));
                    }
                    // 4008: a socket that floods or cannot keep up, whatever it sent.
                    Outcome::Closed(code) => prop_assert!(
                        code == 4008 || may_close.first() == Some(&code),
                        "closed with {code}; the sequence could close it with {may_close:?}"
                    ),
                    // The hub stops reading an oversized message at its header and closes the
                    // connection with the rest unread, so the kernel answers with a reset that
                    // can overtake the 1009 while answers to earlier frames are still unread.
                    Outcome::Reset => prop_assert_eq!(
                        may_close.first(),
                        Some(&1009),
                        "the connection was reset without a close frame"
                    ),
                }
                // Everyone else is served as before.
                let mut other = hub.connect(&bob).await;
                other.roundtrip().await;
                drop(other);
                let (status, health) = hub.get("/healthz", None).await;
                prop_assert_eq!(status, 200, "{}", health);
                prop_assert_eq!(&inbox(&hub, &bob).await, &bobs_inbox);
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

crate::trials! {
    both: [],
    tests: [
        no_sequence_of_client_frames_panics_a_session,
    ],
    sync: [],
}
