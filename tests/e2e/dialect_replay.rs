//! Replay in the seed dialects, and project rooms when a member is removed.
//!
//! A socket speaking seed 003's or seed 004's shapes keeps every guarantee of
//! `/ws/notifications/`: `?last_seq=` replays exactly what was missed, in order, in the
//! dialect's frames; `ack` moves where the next connection's backlog starts; a backlog over
//! `--replay-cap` opens with `replay_truncated` and brings the newest; a `last_seq` that is not a
//! non-negative integer is refused before the upgrade, and one past the stream is clamped to it.
//!
//! A member removed from a project (`PATCH /api/projects/{id}/`) on a single node without Redis
//! is closed out of the project's board and presence with 4003, leaves the others' presence,
//! and cannot come back.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use tickethub::ws::dialect::Dialect;
use tickethub_actors::domain::{ProjectId, Role, User};
use tickethub_actors::room::RoomMsg;

use crate::harness::{eventually, patience, scaled_ms, Backend, TestHub, Ws};
use crate::tickets::{cast, create_ticket};

/// A seed dialect of `/ws/notifications/` with its own notification frame.
#[derive(Clone, Copy, Debug)]
enum Seed {
    /// `{"type":"notification","seq","replayed","notification":{"id","title","message","type","read","created_at","data"}}`
    S003,
    /// `{"type":"new_notification","seq","replayed","notification":{"id","type","title","body","action_url","is_read","time_ago","created_at","metadata"}}`
    S004,
}

/// How a socket comes to speak a dialect.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `?dialect=<name>` on a hub that speaks seed 001 by default.
    Query(&'static str),
    /// The subprotocol `tickethub.<name>` beside `bearer.<JWT>`.
    Subprotocol(&'static str),
    /// Nothing asked: the hub's `--ws-dialect`.
    HubDefault,
}

impl Seed {
    /// A hub for this seed's clients: seed 003's hub speaks seed 001 and its sockets ask for
    /// seed 003; seed 004's hub speaks seed 004 to every socket (`--ws-dialect seed004`).
    async fn hub(
        self,
        backend: &Backend,
        tweak: impl FnOnce(&mut tickethub::ServeConfig),
    ) -> TestHub {
        TestHub::start_with(backend, |c| {
            if let Seed::S004 = self {
                c.ws_dialect = Dialect::Seed004;
            }
            tweak(c);
        })
        .await
    }

    /// How a first connection asks for the dialect.
    fn first(self) -> Via {
        match self {
            Seed::S003 => Via::Query("seed003"),
            Seed::S004 => Via::HubDefault,
        }
    }

    /// How a reconnection asks for the dialect.
    fn again(self) -> Via {
        match self {
            Seed::S003 => Via::Subprotocol("seed003"),
            Seed::S004 => Via::HubDefault,
        }
    }

    /// The `type` of the dialect's notification frame.
    fn kind(self) -> &'static str {
        match self {
            Seed::S003 => "notification",
            Seed::S004 => "new_notification",
        }
    }

    /// The frame this dialect writes for a notification, from its REST representation.
    fn frame(self, n: &Value, replayed: bool) -> Value {
        match self {
            Seed::S003 => json!({
                "type": "notification",
                "seq": n["seq"],
                "replayed": replayed,
                "notification": {
                    "id": n["id"],
                    "title": n["title"],
                    "message": n["message"],
                    "type": n["notification_type"],
                    "read": n["is_read"],
                    "created_at": n["created_at"],
                    "data": n["data"],
                },
            }),
            Seed::S004 => json!({
                "type": "new_notification",
                "seq": n["seq"],
                "replayed": replayed,
                "notification": {
                    "id": n["id"],
                    "type": n["notification_type"],
                    "title": n["title"],
                    "body": n["message"],
                    "action_url": n["action_url"],
                    "is_read": n["is_read"],
                    "time_ago": "Just now",
                    "created_at": n["created_at"],
                    "metadata": n["data"],
                },
            }),
        }
    }
}

/// A socket of `/ws/notifications/` after its greeting and replay.
struct Opened {
    ws: Ws,
    hello: Value,
    /// The `replay_truncated` frame, if one came (it comes before any replayed notification).
    truncated: Option<Value>,
    /// The replayed notification frames, in the order they came.
    replayed: Vec<Value>,
    /// The `replay_complete` frame.
    complete: Value,
}

/// The URL and headers of a socket of `user` speaking a dialect as `via` asks, with more query
/// parameters (`&…`).
fn socket_request(
    hub: &TestHub,
    user: &User,
    via: Via,
    more: &str,
) -> (String, Vec<(&'static str, String)>) {
    let token = hub.token(user);
    match via {
        Via::Query(name) => (
            hub.ws_url(&format!(
                "/ws/notifications/?token={token}&dialect={name}{more}"
            )),
            Vec::new(),
        ),
        Via::HubDefault => (
            hub.ws_url(&format!("/ws/notifications/?token={token}{more}")),
            Vec::new(),
        ),
        Via::Subprotocol(name) => {
            let query = more.trim_start_matches('&');
            let path = if query.is_empty() {
                "/ws/notifications/".to_owned()
            } else {
                format!("/ws/notifications/?{query}")
            };
            (
                hub.ws_url(&path),
                vec![(
                    "sec-websocket-protocol",
                    format!("tickethub.{name}, bearer.{token}"),
                )],
            )
        }
    }
}

/// Opens a socket and reads its greeting, `replay_truncated` if any, the replayed
/// notifications (each of `seed`'s kind, marked `replayed`) and `replay_complete`.
async fn open(hub: &TestHub, user: &User, seed: Seed, via: Via, more: &str) -> Opened {
    let (url, headers) = socket_request(hub, user, via, more);
    let mut ws = Ws::connect_with(&url, &headers)
        .await
        .expect("websocket handshake");
    if let Via::Subprotocol(name) = via {
        assert_eq!(ws.protocol, Some(format!("tickethub.{name}")));
    }
    let hello = ws.next_json().await;
    assert_eq!(hello["type"], "connection_established", "{hello}");
    let (mut truncated, mut replayed) = (None, Vec::new());
    loop {
        let v = ws.next_json().await;
        match v["type"].as_str() {
            Some("replay_truncated") => {
                assert!(
                    truncated.is_none() && replayed.is_empty(),
                    "replay_truncated comes once, first: {v}"
                );
                truncated = Some(v);
            }
            Some("replay_complete") => {
                return Opened {
                    ws,
                    hello,
                    truncated,
                    replayed,
                    complete: v,
                }
            }
            _ => {
                assert_eq!(v["type"], seed.kind(), "during the replay: {v}");
                assert_eq!(v["replayed"], true, "{v}");
                replayed.push(v);
            }
        }
    }
}

/// The next `n` frames, each a live notification of `seed`'s kind.
async fn live(ws: &mut Ws, seed: Seed, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        let v = ws.next_json().await;
        assert_eq!(v["type"], seed.kind(), "expected a live notification: {v}");
        assert_eq!(v["replayed"], false, "{v}");
        out.push(v);
    }
    out
}

/// Asserts that nothing is on its way to the socket: the answer to a ping is the next frame.
async fn nothing_more(ws: &mut Ws) {
    ws.send_json(json!({"type": "ping", "timestamp": 7})).await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "pong", "timestamp": 7}),
        "nothing more"
    );
}

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames.iter().map(|f| f["seq"].as_i64().unwrap()).collect()
}

/// `admin` sends `to` a notification titled `title`: every other one is of seed 003's
/// `approval` type, and each carries data and a link.
async fn send(hub: &TestHub, admin: &User, to: &User, title: &str, i: usize) {
    let mut extra = json!({
        "title": title,
        "message": format!("{title} body"),
        "data": {"n": i},
        "link": format!("/tickets/{i}"),
    });
    if i % 2 == 1 {
        extra["notification_type"] = json!("approval");
    }
    hub.send(admin, &[to], extra).await;
}

/// The user's stored notifications (REST), by seq.
async fn inbox(hub: &TestHub, user: &User) -> BTreeMap<i64, Value> {
    let page = hub
        .get_as(user, "/api/notifications/?page_size=100", 200)
        .await;
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["seq"].as_i64().unwrap(), n.clone()))
        .collect()
}

/// The frames `seed` writes for these seqs of the user's inbox.
fn expected(seed: Seed, inbox: &BTreeMap<i64, Value>, seqs: &[i64], replayed: bool) -> Vec<Value> {
    seqs.iter()
        .map(|s| seed.frame(&inbox[s], replayed))
        .collect()
}

fn greeting(user: &User, last_seq: i64) -> Value {
    json!({
        "type": "connection_established",
        "message": format!("Connected successfully as {}", user.username),
        "user_id": user.id.0,
        "last_seq": last_seq,
    })
}

fn complete(count: usize, last_seq: i64) -> Value {
    json!({"type": "replay_complete", "count": count, "last_seq": last_seq})
}

/// Waits until the user's actor has stopped (every socket of theirs is gone), so that the next
/// connection reads what was recorded, not what an actor holds.
async fn actor_gone(hub: &TestHub, user: &User) {
    eventually("the user's actor ends", || async {
        hub.hub.user(user.id).is_none()
    })
    .await;
}

async fn reconnecting_with_last_seq_replays_what_was_missed(backend: Backend, seed: Seed) {
    let hub = seed.hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let first = open(&hub, &alice, seed, seed.first(), "").await;
    assert_eq!(first.hello, greeting(&alice, 0));
    assert!(first.truncated.is_none() && first.replayed.is_empty());
    assert_eq!(first.complete, complete(0, 0));
    let mut ws = first.ws;
    for i in 1..=2 {
        send(&hub, &admin, &alice, &format!("n{i}"), i).await;
    }
    let frames = live(&mut ws, seed, 2).await;
    assert_eq!(
        frames,
        expected(seed, &inbox(&hub, &alice).await, &[1, 2], false)
    );
    drop(ws);

    // Away: four more arrive; one is read elsewhere, one is deleted.
    for i in 3..=6 {
        send(&hub, &admin, &alice, &format!("n{i}"), i).await;
    }
    let stored = inbox(&hub, &alice).await;
    hub.post_as(
        &alice,
        &format!("/api/notifications/{}/mark_as_read/", stored[&3]["id"]),
        json!({}),
        200,
    )
    .await;
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/api/notifications/{}/", stored[&5]["id"]),
            Some(&hub.token(&alice)),
            None,
        )
        .await;
    assert_eq!(status, 204);

    // Back with the last seq it saw: what it missed, oldest first, in the dialect's frames; the
    // read one as read, the deleted one not at all.
    let back = open(&hub, &alice, seed, seed.again(), "&last_seq=2").await;
    assert_eq!(back.hello, greeting(&alice, 6));
    assert!(back.truncated.is_none());
    let stored = inbox(&hub, &alice).await;
    assert_eq!(stored[&3]["is_read"], true);
    assert_eq!(back.replayed, expected(seed, &stored, &[3, 4, 6], true));
    assert_eq!(back.complete, complete(3, 6));
    // Then live traffic, once.
    let mut ws = back.ws;
    send(&hub, &admin, &alice, "n7", 7).await;
    let frames = live(&mut ws, seed, 1).await;
    assert_eq!(
        frames,
        expected(seed, &inbox(&hub, &alice).await, &[7], false)
    );
    nothing_more(&mut ws).await;
}

async fn seed003_reconnecting_with_last_seq_replays_what_was_missed(backend: Backend) {
    reconnecting_with_last_seq_replays_what_was_missed(backend, Seed::S003).await
}

async fn seed004_reconnecting_with_last_seq_replays_what_was_missed(backend: Backend) {
    reconnecting_with_last_seq_replays_what_was_missed(backend, Seed::S004).await
}

async fn acks_decide_where_the_next_backlog_starts(backend: Backend, seed: Seed) {
    let hub = seed.hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let mut ws = open(&hub, &alice, seed, seed.first(), "").await.ws;
    for i in 1..=3 {
        send(&hub, &admin, &alice, &format!("n{i}"), i).await;
    }
    assert_eq!(seqs(&live(&mut ws, seed, 3).await), vec![1, 2, 3]);
    // The client has shown two of the three; an ack is the same frame in every dialect, and
    // has no answer.
    ws.send_json(json!({"type": "ack", "seq": 2})).await;
    nothing_more(&mut ws).await;
    // A malformed ack is answered with the usual error frame; the socket stays open.
    ws.send_json(json!({"type": "ack", "seq": "x"})).await;
    let error = ws.next_json().await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("bad_request")),
        "{error}"
    );
    assert!(error["message"].is_string(), "{error}");
    assert_eq!(error.as_object().unwrap().len(), 3, "{error}");
    nothing_more(&mut ws).await;
    drop(ws);
    actor_gone(&hub, &alice).await;

    // Two more while away. Without `last_seq`, the backlog starts after the ack: the third,
    // sent but not acknowledged, comes again; the acknowledged ones do not.
    for i in 4..=5 {
        send(&hub, &admin, &alice, &format!("n{i}"), i).await;
    }
    let back = open(&hub, &alice, seed, seed.again(), "").await;
    assert!(back.truncated.is_none());
    let stored = inbox(&hub, &alice).await;
    assert_eq!(back.replayed, expected(seed, &stored, &[3, 4, 5], true));
    assert_eq!(back.complete, complete(3, 5));
    let mut ws = back.ws;
    ws.send_json(json!({"type": "ack", "seq": 5})).await;
    nothing_more(&mut ws).await;
    // Another tab, opened while this one is live, starts after the ack too.
    let tab = open(&hub, &alice, seed, seed.first(), "").await;
    assert!(tab.replayed.is_empty() && tab.truncated.is_none());
    assert_eq!(tab.complete, complete(0, 5));
    drop(tab.ws);
    drop(ws);
    actor_gone(&hub, &alice).await;
    assert_eq!(
        hub.store
            .notification_cursor(alice.id)
            .await
            .unwrap()
            .acked_seq,
        5
    );

    // And after a restart of the user's actor: nothing acknowledged comes again.
    let mut ws = open(&hub, &alice, seed, seed.again(), "").await;
    assert!(ws.replayed.is_empty());
    assert_eq!(ws.complete, complete(0, 5));
    // An ack never moves back: the one after 5 is what the next connection replays.
    ws.ws.send_json(json!({"type": "ack", "seq": 1})).await;
    nothing_more(&mut ws.ws).await;
    drop(ws.ws);
    actor_gone(&hub, &alice).await;
    send(&hub, &admin, &alice, "n6", 6).await;
    let back = open(&hub, &alice, seed, seed.first(), "").await;
    assert_eq!(
        back.replayed,
        expected(seed, &inbox(&hub, &alice).await, &[6], true)
    );
    assert_eq!(back.complete, complete(1, 6));
}

async fn seed003_acks_decide_where_the_next_backlog_starts(backend: Backend) {
    acks_decide_where_the_next_backlog_starts(backend, Seed::S003).await
}

async fn seed004_acks_decide_where_the_next_backlog_starts(backend: Backend) {
    acks_decide_where_the_next_backlog_starts(backend, Seed::S004).await
}

async fn a_backlog_over_the_cap_is_truncated_to_the_newest(backend: Backend, seed: Seed) {
    const CAP: i64 = 4;
    let hub = seed.hub(&backend, |c| c.replay_cap = CAP).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    for i in 1..=11 {
        send(&hub, &admin, &alice, &format!("n{i}"), i).await;
    }
    let stored = inbox(&hub, &alice).await;
    // A first connection, without `last_seq`: eleven unsent, four replayed, seven left.
    let first = open(&hub, &alice, seed, seed.first(), "").await;
    assert_eq!(first.hello, greeting(&alice, 11));
    assert_eq!(
        first.truncated,
        Some(json!({"type": "replay_truncated", "remaining": 7}))
    );
    assert_eq!(
        first.replayed,
        expected(seed, &stored, &[8, 9, 10, 11], true)
    );
    assert_eq!(first.complete, complete(4, 11));
    drop(first.ws);

    // From `last_seq=2`: nine missed, the newest four replayed, five left.
    let back = open(&hub, &alice, seed, seed.again(), "&last_seq=2").await;
    assert_eq!(
        back.truncated,
        Some(json!({"type": "replay_truncated", "remaining": 5}))
    );
    assert_eq!(
        back.replayed,
        expected(seed, &stored, &[8, 9, 10, 11], true)
    );
    assert_eq!(back.complete, complete(4, 11));
    // Live traffic follows the truncated replay as usual.
    let mut ws = back.ws;
    send(&hub, &admin, &alice, "n12", 12).await;
    let frames = live(&mut ws, seed, 1).await;
    assert_eq!(
        frames,
        expected(seed, &inbox(&hub, &alice).await, &[12], false)
    );
    nothing_more(&mut ws).await;
    // The five left out (seqs 3 to 7) are a REST page away.
    let page = hub
        .get_as(&alice, "/api/notifications/?page_size=5&page=2", 200)
        .await;
    assert_eq!(
        seqs(page["results"].as_array().unwrap()),
        vec![7, 6, 5, 4, 3]
    );
    // A backlog of exactly the cap is not truncated.
    let exact = open(&hub, &alice, seed, seed.first(), "&last_seq=8").await;
    assert!(exact.truncated.is_none());
    assert_eq!(seqs(&exact.replayed), vec![9, 10, 11, 12]);
    assert_eq!(exact.complete, complete(4, 12));
}

async fn seed003_a_backlog_over_the_cap_is_truncated_to_the_newest(backend: Backend) {
    a_backlog_over_the_cap_is_truncated_to_the_newest(backend, Seed::S003).await
}

async fn seed004_a_backlog_over_the_cap_is_truncated_to_the_newest(backend: Backend) {
    a_backlog_over_the_cap_is_truncated_to_the_newest(backend, Seed::S004).await
}

/// The status and JSON body the hub answers to a WebSocket handshake at `url`, read with an
/// HTTP client so that the whole body is there.
async fn handshake_answer(hub: &TestHub, url: &str) -> (u16, Value) {
    let res = hub
        .http
        .get(url.replacen("ws://", "http://", 1))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request sent");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn a_bad_last_seq_is_refused_and_one_past_the_stream_is_clamped(
    backend: Backend,
    seed: Seed,
) {
    let hub = seed.hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    for i in 1..=3 {
        send(&hub, &admin, &alice, &format!("n{i}"), i).await;
    }
    // Negative, not a number, not an integer, too big for one: 400 before the upgrade.
    for bad in ["-1", "abc", "1.5", "99999999999999999999", ""] {
        let (url, headers) =
            socket_request(&hub, &alice, seed.first(), &format!("&last_seq={bad}"));
        match Ws::connect_with(&url, &headers).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 400, "last_seq={bad}")
            }
            Err(other) => panic!("last_seq={bad}: unexpected {other}"),
            Ok(_) => panic!("last_seq={bad} was accepted"),
        }
        assert_eq!(
            handshake_answer(&hub, &url).await,
            (
                400,
                json!({"detail": "last_seq must be a non-negative integer."})
            ),
            "last_seq={bad}"
        );
    }
    // Given twice: refused too, rather than one of them picked.
    let (url, headers) = socket_request(&hub, &alice, seed.first(), "&last_seq=1&last_seq=2");
    assert!(matches!(
        Ws::connect_with(&url, &headers).await,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) if res.status() == 400
    ));
    let (status, body) = handshake_answer(&hub, &url).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    // No refused socket started the user's actor.
    assert!(hub.hub.user(alice.id).is_none());

    // A `last_seq` past the stream (a client that kept a seq of a wiped database, say) is
    // clamped to it: nothing to replay, and live notifications still come.
    let ahead = open(&hub, &alice, seed, seed.first(), "&last_seq=1000").await;
    assert_eq!(ahead.hello, greeting(&alice, 3));
    assert!(ahead.replayed.is_empty() && ahead.truncated.is_none());
    assert_eq!(ahead.complete, complete(0, 3));
    let mut ws = ahead.ws;
    send(&hub, &admin, &alice, "n4", 4).await;
    let frames = live(&mut ws, seed, 1).await;
    assert_eq!(
        frames,
        expected(seed, &inbox(&hub, &alice).await, &[4], false)
    );
    nothing_more(&mut ws).await;
    let far = open(
        &hub,
        &alice,
        seed,
        seed.again(),
        &format!("&last_seq={}", i64::MAX),
    )
    .await;
    assert!(far.replayed.is_empty());
    assert_eq!(far.complete, complete(0, 4));
    // None of it changed what a client resuming from the start gets.
    let all = open(&hub, &alice, seed, seed.first(), "&last_seq=0").await;
    assert_eq!(
        all.replayed,
        expected(seed, &inbox(&hub, &alice).await, &[1, 2, 3, 4], true)
    );
    assert_eq!(all.complete, complete(4, 4));
}

async fn seed003_a_bad_last_seq_is_refused_and_one_past_the_stream_is_clamped(backend: Backend) {
    a_bad_last_seq_is_refused_and_one_past_the_stream_is_clamped(backend, Seed::S003).await
}

async fn seed004_a_bad_last_seq_is_refused_and_one_past_the_stream_is_clamped(backend: Backend) {
    a_bad_last_seq_is_refused_and_one_past_the_stream_is_clamped(backend, Seed::S004).await
}

// Project rooms.

/// Opens a project socket of `kind` (`tickets`, `presence`) with more query parameters.
async fn room_socket(hub: &TestHub, user: &User, project: i64, kind: &str, more: &str) -> Ws {
    Ws::connect(&hub.ws_url(&format!(
        "/ws/projects/{project}/{kind}/?token={}{more}",
        hub.token(user)
    )))
    .await
}

/// Opens a presence socket and returns it with its `presence_state`.
async fn presence(hub: &TestHub, user: &User, project: i64, more: &str) -> (Ws, Value) {
    let mut ws = room_socket(hub, user, project, "presence", more).await;
    let state = ws.next_json().await;
    assert_eq!(state["type"], "presence_state", "{state}");
    (ws, state)
}

/// Opens a board socket and reads its greeting.
async fn board(hub: &TestHub, user: &User, project: i64) -> Ws {
    let mut ws = room_socket(hub, user, project, "tickets", "").await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "connection_established", "message": "Subscribed to the project's tickets"})
    );
    ws
}

fn present(state: &Value) -> BTreeSet<i64> {
    state["users"]
        .as_array()
        .unwrap_or_else(|| panic!("{state}"))
        .iter()
        .map(|u| u["user_id"].as_i64().unwrap())
        .collect()
}

fn ids(users: &[&User]) -> BTreeSet<i64> {
    users.iter().map(|u| u.id.0).collect()
}

fn joined(user: &User) -> Value {
    json!({"type": "user_status", "action": "joined", "user_id": user.id.0, "username": user.username, "display_name": user.display_name})
}

fn left(user: &User) -> Value {
    json!({"type": "user_status", "action": "left", "user_id": user.id.0, "username": user.username})
}

/// The admin replaces the project's members with `members`.
async fn set_members(hub: &TestHub, admin: &User, project: i64, members: &[&User]) {
    let (status, body) = hub
        .call(
            reqwest::Method::PATCH,
            &format!("/api/projects/{project}/"),
            Some(&hub.token(admin)),
            Some(json!({"member_ids": members.iter().map(|u| u.id.0).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let now: BTreeSet<i64> = body["member_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert_eq!(now, ids(members), "{body}");
}

/// Every board and presence socket of `user` in the room, and whether the room lists them.
async fn in_room(hub: &TestHub, project: i64, user: &User) -> (usize, usize, bool) {
    let room = hub.hub.room(ProjectId(project)).expect("the room is live");
    let snapshot = ractor::call_t!(room, RoomMsg::Snapshot, crate::harness::patience_ms())
        .expect("the room answers");
    (
        snapshot.board_sockets,
        snapshot.presence_sockets,
        snapshot.members.iter().any(|(id, _, _)| *id == user.id),
    )
}

async fn a_removed_member_is_closed_out_of_the_rooms_and_cannot_rejoin() {
    // One node on SQLite, no Redis: presence lives in the room actor. The grace period is
    // short, so that no wait of the test depends on its length.
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.presence_grace_ms = scaled_ms(300);
    })
    .await;
    let c = cast(&hub).await;
    let p = c.project;
    let bob = &c.d1;
    // Bob has two presence tabs, the board and his notifications open.
    let (mut bob_tab1, state) = presence(&hub, bob, p, "").await;
    assert_eq!(present(&state), ids(&[bob]));
    let (mut bob_tab2, _) = presence(&hub, bob, p, "").await;
    let mut bob_board = board(&hub, bob, p).await;
    let mut bob_notes = hub.connect(bob).await;
    // An admin who is a member, and two watchers: one of seed 002's kind, one with diffs.
    let (mut admin_tab, _) = presence(&hub, &c.a2, p, "").await;
    let (mut events, state) = presence(&hub, &c.c1, p, "").await;
    assert_eq!(present(&state), ids(&[bob, &c.a2, &c.c1]));
    let (mut diffs, state) = presence(&hub, &c.d2, p, "&presence=diff").await;
    assert_eq!(present(&state), ids(&[bob, &c.a2, &c.c1, &c.d2]));
    assert_eq!(events.next_json().await, joined(&c.d2));
    assert_eq!(admin_tab.next_json().await, joined(&c.c1));
    assert_eq!(admin_tab.next_json().await, joined(&c.d2));
    let mut watcher_board = board(&hub, &c.c1, p).await;
    assert_eq!(in_room(&hub, p, bob).await, (2, 5, true));

    // Bob and the admin are left out of the new list.
    set_members(&hub, &c.a1, p, &[&c.a1, &c.d2, &c.c1, &c.c2]).await;
    // Every room socket of Bob's closes with 4003; his notifications stay open (he is no
    // longer a member, not deactivated).
    assert_eq!(bob_tab1.close_code().await, 4003);
    assert_eq!(bob_tab2.close_code().await, 4003);
    assert_eq!(bob_board.close_code().await, 4003);
    bob_notes.roundtrip().await;
    // The others see him leave, in the frames they asked for; the admin, who may see every
    // project, stays and hears it too.
    assert_eq!(events.next_json().await, left(bob));
    assert_eq!(
        diffs.next_json().await,
        json!({"type": "presence_diff", "joins": [], "leaves": [{"user_id": bob.id.0, "username": "d1"}]})
    );
    assert_eq!(admin_tab.next_json().await, left(bob));
    let (boards, sockets, listed) = in_room(&hub, p, bob).await;
    assert_eq!((boards, sockets, listed), (1, 3, false));

    // He cannot come back, on either path: 4003, as for anyone who is not a member.
    for kind in ["presence", "tickets"] {
        let mut ws = room_socket(&hub, bob, p, kind, "").await;
        assert_eq!(ws.close_code().await, 4003, "{kind}");
    }
    let (status, _) = hub
        .get(&format!("/api/projects/{p}/"), Some(&hub.token(bob)))
        .await;
    assert_eq!(status, 404);
    // A newcomer sees who is here: not Bob. The others' next frame is the newcomer's arrival,
    // so nothing of Bob's refused tries reached them.
    let (_newcomer, state) = presence(&hub, &c.c2, p, "").await;
    assert_eq!(present(&state), ids(&[&c.a2, &c.c1, &c.d2, &c.c2]));
    assert_eq!(events.next_json().await, joined(&c.c2));
    assert_eq!(
        diffs.next_json().await,
        json!({"type": "presence_diff", "joins": [{"user_id": c.c2.id.0, "username": "c2", "display_name": "c2 display", "viewing": null}], "leaves": []})
    );
    assert_eq!(admin_tab.next_json().await, joined(&c.c2));
    // The board goes on for the members.
    let t = create_ticket(&hub, &c.c1, p, "After the removal").await;
    let created = watcher_board.next_json().await;
    assert_eq!(
        (created["action"].as_str(), &created["data"]["ticket_id"]),
        (Some("created"), &t["id"])
    );
    assert_eq!(in_room(&hub, p, bob).await, (1, 4, false));
    nothing_more(&mut bob_notes).await;
}

async fn a_removed_member_leaves_presence_at_once_not_after_the_grace_period() {
    // A grace period far longer than any wait of the test: a `left` that comes at all came
    // because of the removal, not because the grace period ran out.
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.presence_grace_ms = 10 * patience().as_millis() as u64;
    })
    .await;
    let c = cast(&hub).await;
    let p = c.project;
    let bob = &c.d1;
    let (mut bob_tab, _) = presence(&hub, bob, p, "").await;
    let (mut events, state) = presence(&hub, &c.c1, p, "").await;
    assert_eq!(present(&state), ids(&[bob, &c.c1]));
    assert_eq!(bob_tab.next_json().await, joined(&c.c1));

    set_members(&hub, &c.a1, p, &[&c.a1, &c.a2, &c.d2, &c.c1, &c.c2]).await;
    assert_eq!(bob_tab.close_code().await, 4003);
    // Once his socket is closed, a newcomer is not told he is here…
    let (_newcomer, state) = presence(&hub, &c.c2, p, "").await;
    assert_eq!(
        present(&state),
        ids(&[&c.c1, &c.c2]),
        "the removed member is listed as present: {state}"
    );
    // …the room no longer lists him…
    let (_, _, listed) = in_room(&hub, p, bob).await;
    assert!(!listed, "the removed member is still present in the room");
    // …and the others heard him leave.
    let mut heard = vec![events.next_json().await, events.next_json().await];
    heard.sort_by_key(|f| f["action"].as_str().map(str::to_owned));
    assert_eq!(heard, vec![joined(&c.c2), left(bob)]);
}

crate::trials! {
    both: [
        seed003_reconnecting_with_last_seq_replays_what_was_missed,
        seed004_reconnecting_with_last_seq_replays_what_was_missed,
        seed003_acks_decide_where_the_next_backlog_starts,
        seed004_acks_decide_where_the_next_backlog_starts,
        seed003_a_backlog_over_the_cap_is_truncated_to_the_newest,
        seed004_a_backlog_over_the_cap_is_truncated_to_the_newest,
        seed003_a_bad_last_seq_is_refused_and_one_past_the_stream_is_clamped,
        seed004_a_bad_last_seq_is_refused_and_one_past_the_stream_is_clamped,
    ],
    tests: [
        a_removed_member_is_closed_out_of_the_rooms_and_cannot_rejoin,
        a_removed_member_leaves_presence_at_once_not_after_the_grace_period,
    ],
    sync: [],
}
