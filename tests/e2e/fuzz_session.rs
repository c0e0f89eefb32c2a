//! Property: no sequence of client frames panics a session or reaches another user.
//!
//! One hub; one user (`mallory`) sends generated sequences of frames on one socket: valid
//! commands with random field values, wrong types, unknown types, text that is not JSON,
//! huge numbers, negative ids, deeply nested JSON, any Unicode, binary frames, invalid UTF-8,
//! stray continuations and oversized messages. After each sequence the socket either still
//! answers a ping or was closed with the code the README documents for what was sent (4008
//! whatever was sent), and every `error` frame it was sent carries a code the README documents
//! for that socket. Three properties, one per socket:
//!
//! - `/ws/notifications/`: another user (`bob`) still connects and gets a pong, `/healthz`
//!   answers 200, no user actor failed, and bob's inbox is exactly as it was, though mallory
//!   names his notifications, his user id and his token.
//! - `/ws/projects/{id}/presence/` and `/ws/projects/{id}/tickets/`: mallory's frames also
//!   name the project's tickets, another project's ticket and ids of no ticket. Bob, a member
//!   of the same project, keeps a presence and a board socket open throughout: both still
//!   answer his pings, his board hears nothing, his presence socket hears only what the README
//!   says mallory's presence shows others (her arrival and departure, and `ticket_viewing` and
//!   `user_typing` naming a ticket of the project), a new presence socket of mallory's still
//!   lists bob, the room never fails, and `/healthz` answers 200.
//!
//! `PROPTEST_CASES` raises or lowers the number of sequences per property (48 by default).
//! A failing sequence, once shrunk, is recorded in `tests/e2e/proptest-regressions/` (one file
//! per property, `fuzz_session-<socket>.txt`, meant to be committed) and every later run
//! replays the recorded ones first: `PROPTEST_CASES=0 cargo test --test e2e -- fuzz_session`
//! replays only them. A failure also prints the run's `PROPTEST_RNG_SEED=…`, which repeats the
//! whole run (`PROPTEST_RNG_SEED=… cargo test --test e2e -- fuzz_session::<test>`);
//! `PROPTEST_DISABLE_FAILURE_PERSISTENCE=1` records nothing.

use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, Hasher};

use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};
use serde_json::{json, Value};
use tickethub_actors::directory::ListFilter;
use tickethub_actors::domain::{Role, User};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{patience, Backend, TestHub, Ws};
use crate::tickets::create_ticket;

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

/// The ids and tokens a sequence may name: the fuzzing user's own and other users'.
#[derive(Clone)]
struct Targets {
    notification_ids: Vec<i64>,
    tokens: Vec<String>,
    user_ids: Vec<i64>,
    /// Tickets of the project under test, of another project, and ids of none.
    ticket_ids: Vec<i64>,
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

/// A ticket id: one of the targets' (in the project, in another, or none), or any `i64`.
fn ticket_id(targets: &Targets) -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => prop::sample::select(targets.ticket_ids.clone()),
        1 => any::<i64>(),
    ]
}

/// A token: one of the targets' (the user's own or another's), or any text.
fn token(targets: &Targets) -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(targets.tokens.clone()), "\\PC{0,80}",]
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
        token(targets).prop_map(|token| json!({"type": "refresh_token", "token": token})),
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
        presence_command(targets),
    ]
}

/// What a presence socket sends: what its user looks at and types under, with any ticket id.
fn presence_command(targets: &Targets) -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::option::of(ticket_id(targets))
            .prop_map(|t| json!({"type": "ticket_viewing", "ticket_id": t})),
        (ticket_id(targets), any::<bool>()).prop_map(|(t, typing)| json!({
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
    ("user_typing", "ticket_id"),
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

/// One message of a sequence; most are text, a few fail the socket. A presence socket's
/// sequences carry more of its own commands.
fn client_msg(targets: &Targets, socket: Socket) -> impl Strategy<Value = ClientMsg> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..64);
    let presence = if matches!(socket, Socket::Presence(_)) {
        20
    } else {
        0
    };
    prop_oneof![
        60 => text_frame(targets).prop_map(ClientMsg::Text),
        presence => presence_command(targets).prop_map(|v| ClientMsg::Text(v.to_string())),
        1 => bytes().prop_map(ClientMsg::Binary),
        // Ending in a byte that no UTF-8 text ends with: an incomplete sequence's lead byte,
        // or one that UTF-8 never uses.
        1 => (bytes(), 0xc0u8..=0xff).prop_map(|(mut b, bad)| {
            b.push(bad);
            ClientMsg::BadUtf8(b)
        }),
        1 => bytes().prop_map(ClientMsg::StrayContinuation),
        1 => (65_537usize..80_000).prop_map(ClientMsg::Oversized),
    ]
}

/// A socket under test.
#[derive(Clone, Copy, Debug)]
enum Socket {
    /// `/ws/notifications/`.
    Notifications,
    /// `/ws/projects/{id}/presence/`.
    Presence(i64),
    /// `/ws/projects/{id}/tickets/`.
    Board(i64),
}

impl Socket {
    /// Its path.
    fn path(self) -> String {
        match self {
            Socket::Notifications => "/ws/notifications/".into(),
            Socket::Presence(p) => format!("/ws/projects/{p}/presence/"),
            Socket::Board(p) => format!("/ws/projects/{p}/tickets/"),
        }
    }

    /// Where its failing sequences are recorded.
    fn regressions(self) -> &'static str {
        macro_rules! recorded {
            ($name:literal) => {
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/e2e/proptest-regressions/fuzz_session-",
                    $name,
                    ".txt"
                )
            };
        }
        match self {
            Socket::Notifications => recorded!("notifications"),
            Socket::Presence(_) => recorded!("presence"),
            Socket::Board(_) => recorded!("board"),
        }
    }

    /// The `error` codes the README documents for it. `unavailable` is left out: the database
    /// is up, so it would mean an input broke a query. `rate_limited` stays, though commands
    /// are not throttled here.
    fn error_codes(self) -> &'static [&'static str] {
        match self {
            Socket::Notifications => &[
                "bad_request",
                "unknown_type",
                "invalid_token",
                "forbidden",
                "rate_limited",
            ],
            // `ping` and `refresh_token` work as on `/ws/notifications/`.
            Socket::Presence(_) => &[
                "not_found",
                "bad_request",
                "unknown_type",
                "invalid_token",
                "rate_limited",
            ],
            Socket::Board(_) => &[
                "bad_request",
                "unknown_type",
                "invalid_token",
                "rate_limited",
            ],
        }
    }

    /// The frame types the README documents for it after its first frame, if it has few.
    fn frame_types(self) -> Option<&'static [&'static str]> {
        const COMMON: [&str; 4] = ["pong", "error", "token_refreshed", "token_expiring"];
        match self {
            Socket::Notifications => None,
            Socket::Presence(_) => Some(&[
                COMMON[0],
                COMMON[1],
                COMMON[2],
                COMMON[3],
                "user_status",
                "ticket_viewing",
                "user_typing",
            ]),
            Socket::Board(_) => Some(&[
                COMMON[0],
                COMMON[1],
                COMMON[2],
                COMMON[3],
                "ticket_update",
                "comment_added",
            ]),
        }
    }

    /// Opens it as `user` and reads its first frame, which is returned (on
    /// `/ws/notifications/`, the greeting and the replay, and `replay_complete` is returned).
    async fn open(self, hub: &TestHub, user: &User) -> (Ws, Value) {
        if let Socket::Notifications = self {
            let ws = hub.connect(user).await;
            let replay = ws.replay_complete.clone();
            return (ws, replay);
        }
        let url = hub.ws_url(&format!("{}?token={}", self.path(), hub.token(user)));
        let mut ws = Ws::connect(&url).await;
        let first = ws.next_json().await;
        let expected = match self {
            Socket::Presence(_) => "presence_state",
            _ => "connection_established",
        };
        assert_eq!(first["type"], expected, "{first}");
        (ws, first)
    }
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

/// Sends `msgs` (up to the first that fails the socket; after that one only its close is
/// awaited), then a ping with a marker, and reads until its pong or the close. Every text frame
/// read must be JSON of a type the socket documents, and every `error` frame must carry a code
/// documented for it.
async fn run_sequence(
    ws: &mut Ws,
    socket: Socket,
    msgs: Vec<ClientMsg>,
    probe: u64,
) -> Result<Outcome, String> {
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
                let kind = v["type"].as_str().unwrap_or("");
                if let Some(types) = socket.frame_types() {
                    if !types.contains(&kind) {
                        return Err(format!("a frame {socket:?} does not document: {v}"));
                    }
                }
                match kind {
                    "pong" if v["timestamp"] == marker.as_str() => return Ok(Outcome::Alive),
                    "error"
                        if !socket
                            .error_codes()
                            .contains(&v["code"].as_str().unwrap_or("")) =>
                    {
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

/// Whether a sequence's outcome is one the README documents for what it sent.
fn check_outcome(outcome: &Outcome, msgs_closing: &[u16]) -> Result<(), TestCaseError> {
    match outcome {
        Outcome::Alive => prop_assert!(
            msgs_closing.is_empty(),
            "the socket stayed open after {msgs_closing:?}"
        ),
        // 4008: a socket that floods or cannot keep up, whatever it sent.
        Outcome::Closed(code) => prop_assert!(
            *code == 4008 || msgs_closing.first() == Some(code),
            "closed with {code}; the sequence could close it with {msgs_closing:?}"
        ),
        // The hub stops reading an oversized message at its header and closes the connection
        // with the rest unread, so the kernel answers with a reset that can overtake the 1009
        // while answers to earlier frames are still unread.
        Outcome::Reset => prop_assert_eq!(
            msgs_closing.first(),
            Some(&1009),
            "the connection was reset without a close frame"
        ),
    }
    Ok(())
}

/// Sends an application ping with `marker` and returns every text frame read before its pong.
async fn frames_until_pong(ws: &mut Ws, marker: &str) -> Vec<Value> {
    ws.send_json(json!({"type": "ping", "timestamp": marker}))
        .await;
    let mut before = Vec::new();
    loop {
        let v = ws.next_json().await;
        if v["type"] == "pong" && v["timestamp"] == marker {
            return before;
        }
        before.push(v);
    }
}

/// A test runner for one property: `PROPTEST_CASES` sequences (48 by default), failures
/// recorded in the socket's regressions file (unless `PROPTEST_DISABLE_FAILURE_PERSISTENCE`),
/// and a seed of its own unless `PROPTEST_RNG_SEED` names one. Returns the runner and what to
/// say on a failure: how to repeat the run, and where its failing sequence is kept.
fn runner(socket: Socket) -> (TestRunner, String) {
    let defaults = Config::default();
    let seed = match defaults.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish(),
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48);
    let recorded = defaults.failure_persistence.is_some();
    let rerun = if recorded {
        format!(
            "PROPTEST_RNG_SEED={seed} repeats this run; the failing sequence is recorded in {} \
             and every run replays it first",
            socket.regressions()
        )
    } else {
        format!("PROPTEST_RNG_SEED={seed} repeats this run")
    };
    let runner = TestRunner::new(Config {
        cases,
        failure_persistence: recorded.then(|| {
            Box::new(FileFailurePersistence::Direct(socket.regressions()))
                as Box<dyn proptest::test_runner::FailurePersistence>
        }),
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 200,
        max_shrink_time: 20_000,
        ..defaults
    });
    (runner, rerun)
}

/// Fails the test with the property's failure, saying how to run it again.
fn report<T: std::fmt::Debug>(rerun: &str, result: Result<(), TestError<T>>) {
    if let Err(e) = result {
        panic!("{e}\n{rerun}");
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

/// Every notification id of these users.
async fn notification_ids(hub: &TestHub, users: &[&User]) -> Vec<i64> {
    let mut ids = Vec::new();
    for user in users {
        let page = hub.get_as(user, "/api/notifications/", 200).await;
        ids.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_i64().unwrap()),
        );
    }
    ids
}

/// Failures of user actors and of room actors since the hub started.
async fn actor_failures(hub: &TestHub) -> (u64, u64) {
    let users = hub.hub.list_users(ListFilter {
        label: None,
        keys: None,
        offset: 0,
        limit: 1,
    });
    let rooms = hub.hub.list_rooms(ListFilter {
        label: None,
        keys: None,
        offset: 0,
        limit: 1,
    });
    let users = users.await.expect("the users directory answers");
    let rooms = rooms.await.expect("the rooms directory answers");
    (users.stats.failures, rooms.stats.failures)
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
            hub.send(
                &admin,
                &[user],
                json!({"title": format!("T{i}"), "message": "M"}),
            )
            .await;
        }
    }
    let targets = Targets {
        notification_ids: notification_ids(&hub, &[&mallory, &bob]).await,
        tokens: vec![hub.token(&mallory), hub.token(&bob), hub.token(&admin)],
        user_ids: vec![mallory.id.0, bob.id.0, admin.id.0, 0, -1],
        ticket_ids: vec![1, 2, 0, -1],
    };
    let bobs_inbox = inbox(&hub, &bob).await;
    assert_eq!(bobs_inbox["unread"]["count"], 3, "{bobs_inbox}");

    let socket_kind = Socket::Notifications;
    let (mut runner, rerun) = runner(socket_kind);
    let socket = RefCell::new(Some(socket_kind.open(&hub, &mallory).await.0));
    let probes = Cell::new(0u64);
    let rt = tokio::runtime::Handle::current();
    let strategy = prop::collection::vec(client_msg(&targets, socket_kind), 1..20);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |msgs| {
            rt.block_on(async {
                let may_close: Vec<u16> = msgs.iter().filter_map(ClientMsg::closes_with).collect();
                let mut ws = match socket.take() {
                    Some(ws) => ws,
                    None => socket_kind.open(&hub, &mallory).await.0,
                };
                probes.set(probes.get() + 1);
                let outcome = run_sequence(&mut ws, socket_kind, msgs, probes.get())
                    .await
                    .map_err(TestCaseError::fail)?;
                check_outcome(&outcome, &may_close)?;
                if outcome == Outcome::Alive {
                    socket.replace(Some(ws));
                }
                // Everyone else is served as before.
                let mut other = hub.connect(&bob).await;
                other.roundtrip().await;
                drop(other);
                let (status, health) = hub.get("/healthz", None).await;
                prop_assert_eq!(status, 200, "{}", health);
                prop_assert_eq!(actor_failures(&hub).await, (0, 0), "an actor failed");
                prop_assert_eq!(&inbox(&hub, &bob).await, &bobs_inbox);
                Ok(())
            })
        })
    });
    report(&rerun, result);
}

/// Whether `frame`, read by another member's presence socket, is one the README says
/// `mallory`'s presence shows: her arrival or departure, or what she looks at or types under,
/// naming a ticket of the project.
fn check_presence_relay(frame: &Value, mallory: &User, tickets: &[i64]) -> Result<(), String> {
    let of_project = |t: &Value| t.as_i64().is_some_and(|t| tickets.contains(&t));
    let fields = frame.as_object().map_or(0, |o| o.len());
    let ok = frame["user_id"] == mallory.id.0
        && match frame["type"].as_str() {
            Some("user_status") => match frame["action"].as_str() {
                Some("joined") => fields == 5 && frame["username"] == mallory.username.as_str(),
                Some("left") => fields == 4 && frame["username"] == mallory.username.as_str(),
                _ => false,
            },
            Some("ticket_viewing") => {
                fields == 3 && (frame["ticket_id"].is_null() || of_project(&frame["ticket_id"]))
            }
            Some("user_typing") => {
                fields == 4 && of_project(&frame["ticket_id"]) && frame["is_typing"].is_boolean()
            }
            _ => false,
        };
    if ok {
        Ok(())
    } else {
        Err(format!("another member's presence socket read {frame}"))
    }
}

/// The property on a project socket (`presence` or `tickets`): mallory fuzzes hers, bob keeps
/// both of his open in the same project.
async fn fuzz_a_project_socket(presence: bool) {
    // As above, commands are not throttled.
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.ws_commands_per_second = 0).await;
    let admin = hub.user("root", Role::Admin).await;
    let mallory = hub.user("mallory", Role::Client).await;
    let bob = hub.user("bob", Role::Developer).await;
    let outsider = hub.user("outsider", Role::Client).await;
    let project = hub.project("WEB", &[&mallory, &bob]).await.id.0;
    let elsewhere = hub.project("OPS", &[&outsider]).await.id.0;
    let mut tickets = Vec::new();
    for title in ["Printer on fire", "Login fails"] {
        tickets.push(
            create_ticket(&hub, &mallory, project, title).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let foreign = create_ticket(&hub, &outsider, elsewhere, "Not yours").await["id"]
        .as_i64()
        .unwrap();
    hub.send(&admin, &[&mallory, &bob], json!({})).await;
    let mut ticket_ids = tickets.clone();
    ticket_ids.extend([foreign, foreign + 1, 0, -1]);
    let targets = Targets {
        notification_ids: notification_ids(&hub, &[&mallory, &bob]).await,
        tokens: vec![hub.token(&mallory), hub.token(&bob), hub.token(&admin)],
        user_ids: vec![mallory.id.0, bob.id.0, admin.id.0, 0, -1],
        ticket_ids,
    };

    let socket_kind = if presence {
        Socket::Presence(project)
    } else {
        Socket::Board(project)
    };
    let (bobs_presence, state) = Socket::Presence(project).open(&hub, &bob).await;
    assert_eq!(state["users"][0]["user_id"], bob.id.0, "{state}");
    let (bobs_board, _) = Socket::Board(project).open(&hub, &bob).await;

    let (mut runner, rerun) = runner(socket_kind);
    let socket = RefCell::new(None::<Ws>);
    let bobs = Cell::new(Some((bobs_presence, bobs_board)));
    let probes = Cell::new(0u64);
    let rt = tokio::runtime::Handle::current();
    let strategy = prop::collection::vec(client_msg(&targets, socket_kind), 1..20);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |msgs| {
            rt.block_on(async {
                let may_close: Vec<u16> = msgs.iter().filter_map(ClientMsg::closes_with).collect();
                let mut ws = match socket.take() {
                    Some(ws) => ws,
                    None => {
                        let (ws, first) = socket_kind.open(&hub, &mallory).await;
                        // The room still knows who is present.
                        if presence {
                            let users = first["users"].as_array().cloned().unwrap_or_default();
                            prop_assert!(
                                users.iter().any(|u| u["user_id"] == bob.id.0),
                                "bob is missing from {first}"
                            );
                        }
                        ws
                    }
                };
                probes.set(probes.get() + 1);
                let probe = probes.get();
                let outcome = run_sequence(&mut ws, socket_kind, msgs, probe)
                    .await
                    .map_err(TestCaseError::fail)?;
                check_outcome(&outcome, &may_close)?;
                if outcome == Outcome::Alive {
                    socket.replace(Some(ws));
                }
                // Bob's sockets of the same room answer, and hear only what mallory's presence
                // may show them; his board hears nothing.
                // Out of the cell while awaited: one case runs at a time, and puts them back.
                let (mut bobs_presence, mut bobs_board) = bobs.take().expect("bob's sockets");
                let marker = format!("bob-{probe}");
                let relayed = frames_until_pong(&mut bobs_presence, &marker).await;
                let heard = frames_until_pong(&mut bobs_board, &marker).await;
                bobs.set(Some((bobs_presence, bobs_board)));
                for frame in relayed {
                    check_presence_relay(&frame, &mallory, &tickets)
                        .map_err(TestCaseError::fail)?;
                }
                prop_assert!(heard.is_empty(), "bob's board heard {heard:?}");
                let (status, health) = hub.get("/healthz", None).await;
                prop_assert_eq!(status, 200, "{}", health);
                prop_assert_eq!(actor_failures(&hub).await, (0, 0), "an actor failed");
                Ok(())
            })
        })
    });
    report(&rerun, result);
}

async fn no_sequence_of_client_frames_upsets_a_presence_room() {
    fuzz_a_project_socket(true).await;
}

async fn no_sequence_of_client_frames_upsets_a_board() {
    fuzz_a_project_socket(false).await;
}

crate::trials! {
    both: [],
    tests: [
        no_sequence_of_client_frames_panics_a_session,
        no_sequence_of_client_frames_upsets_a_presence_room,
        no_sequence_of_client_frames_upsets_a_board,
    ],
    sync: [],
}
