//! `GET /sse/notifications/`: the notification stream as Server-Sent Events, over real
//! sockets. The same frames as the WebSocket, the same replay from `Last-Event-ID`, the same
//! per-user cap and supervision, and a way through a proxy that refuses WebSocket upgrades.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use serde_json::{json, Value};
use tickethub::auth::TokenType;
use tickethub_actors::domain::{Role, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{
    eventually, eventually_some, patience, send_body, Backend, TestHub, Ws, SEND,
};
mod proxy;
use proxy::*;

/// The stream's path.
const PATH: &str = "/sse/notifications/";

/// A request header: name and value.
type Header = (&'static str, String);

/// One event of a stream, as an `EventSource` would dispatch it.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    /// The `id` field, if the event had one.
    pub id: Option<String>,
    /// The `event` field (`message` if none).
    pub event: String,
    /// The `data` field, parsed as JSON (every event of the hub carries JSON).
    pub data: Value,
}

impl Event {
    /// The `id` as a number; fails if there is none.
    pub fn seq(&self) -> i64 {
        self.id
            .as_deref()
            .unwrap_or_else(|| panic!("an event without an id: {self:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("an id that is no number: {self:?}"))
    }
}

/// A refused stream: the status, the `Content-Type` and the body (JSON if it parses).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

/// A client of the event stream: reads the response body chunk by chunk and parses the
/// `text/event-stream` format (comments skipped, `data` lines joined), as the standard says.
pub(crate) struct Sse {
    res: reqwest::Response,
    buf: Vec<u8>,
    /// The last `id` the stream gave (what an `EventSource` sends back as `Last-Event-ID`).
    pub last_event_id: Option<String>,
    /// The `connection_established` event's data.
    pub hello: Value,
    /// The events of the replay before `replay_complete` (notifications, `replay_truncated`).
    pub replayed: Vec<Event>,
    /// The `replay_complete` event.
    pub complete: Option<Event>,
}

impl Sse {
    /// `GET url` with these headers; a 200 is checked to be an event stream, anything else is
    /// the refusal.
    pub async fn open(
        http: &reqwest::Client,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Sse, Refusal> {
        let mut req = http.get(url).header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = tokio::time::timeout(patience(), req.send())
            .await
            .expect("the stream answers in time")
            .expect("the request is sent");
        let status = res.status().as_u16();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let content_type = header("content-type");
        if status != 200 {
            let text = tokio::time::timeout(patience(), res.text())
                .await
                .expect("a refusal's body in time")
                .unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(Refusal {
                status,
                content_type,
                body,
            });
        }
        assert_eq!(content_type, "text/event-stream", "{url}");
        assert!(header("cache-control").contains("no-cache"), "{url}");
        Ok(Sse {
            res,
            buf: Vec::new(),
            last_event_id: None,
            hello: Value::Null,
            replayed: Vec::new(),
            complete: None,
        })
    }

    /// [`Sse::open`] that must succeed; reads the greeting and the replay.
    pub async fn connect(http: &reqwest::Client, url: &str, headers: &[(&str, String)]) -> Sse {
        let mut sse = match Sse::open(http, url, headers).await {
            Ok(sse) => sse,
            Err(refused) => panic!("{url}: refused: {refused:?}"),
        };
        sse.established().await;
        sse
    }

    /// Reads `connection_established`, then the replay up to `replay_complete`.
    pub async fn established(&mut self) {
        let hello = self.next_event().await;
        assert_eq!(hello.event, "connection_established", "{hello:?}");
        assert_eq!(hello.data["type"], "connection_established", "{hello:?}");
        assert_eq!(hello.id, None, "{hello:?}");
        self.hello = hello.data;
        loop {
            let e = self.next_event().await;
            match e.event.as_str() {
                "notification" => {
                    assert_eq!(e.data["replayed"], true, "{e:?}");
                    assert_eq!(e.data["seq"], e.seq(), "the id is the seq: {e:?}");
                    self.replayed.push(e);
                }
                "replay_truncated" => self.replayed.push(e),
                "replay_complete" => {
                    assert_eq!(e.data["type"], "replay_complete", "{e:?}");
                    let count = self
                        .replayed
                        .iter()
                        .filter(|r| r.event == "notification")
                        .count();
                    assert_eq!(e.data["count"], count, "{e:?}");
                    // The completion carries the resume point as its id.
                    assert_eq!(e.data["last_seq"], e.seq(), "{e:?}");
                    self.complete = Some(e);
                    return;
                }
                _ => panic!("unexpected event during the replay: {e:?}"),
            }
        }
    }

    /// The seqs of the replayed notifications, in the order they came.
    pub fn replayed_seqs(&self) -> Vec<i64> {
        self.replayed
            .iter()
            .filter(|e| e.event == "notification")
            .map(Event::seq)
            .collect()
    }

    /// The `replay_complete` event's data.
    pub fn complete(&self) -> &Value {
        &self.complete.as_ref().expect("the replay is complete").data
    }

    /// The next event; fails if none comes in time or the stream ends.
    pub async fn next_event(&mut self) -> Event {
        match self.next_or_end().await {
            Some(e) => e,
            None => panic!("the stream ended while an event was awaited"),
        }
    }

    /// The next live notification event, failing on any other event.
    pub async fn notification(&mut self) -> Event {
        let e = self.next_event().await;
        assert_eq!(e.event, "notification", "expected a notification: {e:?}");
        assert_eq!(e.data["replayed"], false, "{e:?}");
        assert_eq!(e.data["seq"], e.seq(), "the id is the seq: {e:?}");
        e
    }

    /// The next event, or `None` once the stream has ended (cleanly or not); fails if neither
    /// happens in time.
    async fn next_or_end(&mut self) -> Option<Event> {
        // One deadline for the event, however many heartbeats come meanwhile.
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            if let Some(e) = self.parse() {
                return Some(e);
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .expect("an event (or the end of the stream) in time");
            match chunk {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Reads until the stream ends, and answers the events that came first.
    pub async fn ended(&mut self) -> Vec<Event> {
        let mut before = Vec::new();
        while let Some(e) = self.next_or_end().await {
            before.push(e);
        }
        before
    }

    /// The first complete event in the buffer, if any; comment-only blocks are dropped.
    fn parse(&mut self) -> Option<Event> {
        loop {
            let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.buf.drain(..end + 2).collect();
            let block = String::from_utf8(block).expect("the stream is UTF-8");
            let (mut id, mut name, mut data) = (None, None, Vec::new());
            for line in block.lines() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => name = Some(value.to_owned()),
                    "data" => data.push(value.to_owned()),
                    other => panic!("an unknown field {other:?} in {block:?}"),
                }
            }
            if id.is_some() {
                self.last_event_id.clone_from(&id);
            }
            if data.is_empty() {
                // A comment (heartbeat) or an event with no data: nothing to dispatch.
                continue;
            }
            let data = data.join("\n");
            let data = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("data that is not JSON ({e}): {data}"));
            return Some(Event {
                id,
                event: name.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
    }
}

/// `http://addr/sse/notifications/?query` (the query without its `?`; may be empty).
fn stream_url(addr: SocketAddr, query: &str) -> String {
    if query.is_empty() {
        format!("http://{addr}{PATH}")
    } else {
        format!("http://{addr}{PATH}?{query}")
    }
}

/// The `Authorization` header of a user's access token.
fn bearer(hub: &TestHub, user: &User) -> Header {
    ("authorization", format!("Bearer {}", hub.token(user)))
}

/// Opens a user's stream on the hub with a bearer token and reads its greeting and replay.
async fn stream(hub: &TestHub, user: &User, query: &str) -> Sse {
    Sse::connect(
        &hub.http,
        &stream_url(hub.addr, query),
        &[bearer(hub, user)],
    )
    .await
}

/// `by` sends `to` a notification titled `title`.
async fn send(hub: &TestHub, by: &User, to: &User, title: &str) {
    hub.send(
        by,
        &[to],
        json!({"title": title, "message": format!("{title} body")}),
    )
    .await;
}

/// The titles of events' notifications (seed 001's shape).
fn titles(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "notification")
        .map(|e| e.data["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn a_live_notification_is_an_event_with_the_sockets_frame(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let mut ws = hub.connect(&alice).await;
    let mut sse = stream(&hub, &alice, "").await;
    assert_eq!(sse.hello["user_id"], alice.id.0);
    assert_eq!(sse.hello["last_seq"], 0);
    assert_eq!(
        sse.hello["message"],
        format!("Connected successfully as {}", alice.username)
    );
    assert!(sse.replayed.is_empty());
    assert_eq!(
        sse.complete(),
        &json!({"type": "replay_complete", "count": 0, "last_seq": 0})
    );

    for (seq, title) in [(1, "first"), (2, "second")] {
        send(&hub, &admin, &alice, title).await;
        let frame = ws.notifications(1).await.remove(0);
        let event = sse.notification().await;
        assert_eq!(event.id.as_deref(), Some(seq.to_string().as_str()));
        assert_eq!(event.event, "notification");
        // The data is the socket's frame, byte for byte as JSON.
        assert_eq!(event.data, frame, "the stream's data is the socket's frame");
        assert_eq!(event.data["title"], title);
        assert_eq!(event.data["type"], "notification");
    }
    assert_eq!(sse.last_event_id.as_deref(), Some("2"));

    // In another dialect, the data is that dialect's frame, as a socket in it gets.
    let mut ws4 = Ws::connect(&hub.ws_url(&format!(
        "/ws/notifications/?token={}&dialect=seed004&last_seq=2",
        hub.token(&alice)
    )))
    .await;
    ws4.established().await;
    let mut sse4 = stream(&hub, &alice, "dialect=seed004&last_seq=2").await;
    assert!(sse4.replayed.is_empty());
    send(&hub, &admin, &alice, "third").await;
    let frame = ws4.next_json().await;
    let event = sse4.next_event().await;
    assert_eq!((event.event.as_str(), event.seq()), ("notification", 3));
    assert_eq!(frame["type"], "new_notification");
    assert_eq!(event.data, frame);
    // And the other two streams got it too, once.
    assert_eq!(sse.notification().await.seq(), 3);
    assert_eq!(ws.notifications(1).await[0]["seq"], 3);

    // A dialect that does not exist is refused before any stream.
    let refused = Sse::open(
        &hub.http,
        &stream_url(hub.addr, "dialect=seed009"),
        &[bearer(&hub, &alice)],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.body["detail"].is_string(), "{refused:?}");
}

async fn resuming_replays_exactly_what_was_missed_in_order_then_replay_complete(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    // Every notification event any stream gets, in order, by stream.
    let mut s1 = stream(&hub, &alice, "").await;
    for i in 1..=3 {
        send(&hub, &admin, &alice, &format!("n{i}")).await;
    }
    let first: Vec<i64> = [
        s1.notification().await,
        s1.notification().await,
        s1.notification().await,
    ]
    .iter()
    .map(Event::seq)
    .collect();
    assert_eq!(first, [1, 2, 3]);
    let resume_at = s1.last_event_id.clone().expect("an id to resume from");
    assert_eq!(resume_at, "3");
    drop(s1);
    for i in 4..=7 {
        send(&hub, &admin, &alice, &format!("n{i}")).await;
    }

    // `Last-Event-ID`, as an `EventSource` sends it: exactly 4..=7, in order, then the completion.
    let mut s2 = Sse::connect(
        &hub.http,
        &stream_url(hub.addr, ""),
        &[bearer(&hub, &alice), ("last-event-id", resume_at)],
    )
    .await;
    assert_eq!(s2.hello["last_seq"], 7);
    assert_eq!(s2.replayed_seqs(), [4, 5, 6, 7]);
    assert_eq!(titles(&s2.replayed), ["n4", "n5", "n6", "n7"]);
    assert_eq!(
        s2.complete(),
        &json!({"type": "replay_complete", "count": 4, "last_seq": 7})
    );
    assert_eq!(s2.last_event_id.as_deref(), Some("7"));
    // The next event is the next notification: nothing replayed twice, nothing skipped.
    send(&hub, &admin, &alice, "n8").await;
    let live = s2.notification().await;
    assert_eq!((live.seq(), live.data["title"].clone()), (8, json!("n8")));
    drop(s2);
    send(&hub, &admin, &alice, "n9").await;
    send(&hub, &admin, &alice, "n10").await;

    // `?last_event_id=`, for an `EventSource` that cannot set headers.
    let mut s3 = stream(&hub, &alice, "last_event_id=8").await;
    assert_eq!(s3.replayed_seqs(), [9, 10]);
    assert_eq!(titles(&s3.replayed), ["n9", "n10"]);
    assert_eq!(
        s3.complete(),
        &json!({"type": "replay_complete", "count": 2, "last_seq": 10})
    );
    // The header wins over the query.
    let mut s4 = Sse::connect(
        &hub.http,
        &stream_url(hub.addr, "last_event_id=2"),
        &[bearer(&hub, &alice), ("last-event-id", "9".to_owned())],
    )
    .await;
    assert_eq!(s4.replayed_seqs(), [10]);
    // `?last_seq=`, as on the socket; up to date, the replay is empty but still completes,
    // with the resume point as its id.
    let mut s5 = stream(&hub, &alice, "last_seq=10").await;
    assert!(s5.replayed.is_empty());
    assert_eq!(s5.complete.as_ref().unwrap().id.as_deref(), Some("10"));
    // One more reaches each open stream exactly once, as their next event.
    send(&hub, &admin, &alice, "n11").await;
    for s in [&mut s3, &mut s4, &mut s5] {
        let e = s.notification().await;
        assert_eq!((e.seq(), e.data["title"].clone()), (11, json!("n11")));
    }

    // A resume point that is not a non-negative integer is refused with a JSON error.
    for (query, headers) in [
        ("", vec![("last-event-id", "abc".to_owned())]),
        ("last_event_id=-1", vec![]),
        ("last_seq=1.5", vec![]),
    ] {
        let mut headers = headers;
        headers.push(bearer(&hub, &alice));
        let refused = Sse::open(&hub.http, &stream_url(hub.addr, query), &headers)
            .await
            .err()
            .unwrap_or_else(|| panic!("{query} {headers:?} was not refused"));
        assert_eq!(refused.status, 400, "{refused:?}");
        assert!(refused.content_type.starts_with("application/json"));
        assert!(refused.body["detail"].is_string(), "{refused:?}");
    }
}

async fn notifications_sent_during_the_replay_come_once_each_in_order(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    const TOTAL: i64 = 120;
    // Writers keep sending while the client resumes from the start of the stream.
    let writers = join_all((0..4).map(|w| {
        let (hub, admin, alice) = (&hub, &admin, &alice);
        async move {
            for i in 0..TOTAL / 4 {
                let (status, body) = hub
                    .try_send(
                        admin,
                        &[alice],
                        json!({"title": format!("w{w}-{i}"), "message": "m"}),
                    )
                    .await;
                assert_eq!(status, 201, "{body}");
            }
        }
    }));
    let reader = async {
        eventually("some notifications exist", || async {
            hub.store
                .notification_cursor(alice.id)
                .await
                .unwrap()
                .last_seq
                >= 20
        })
        .await;
        let mut sse = Sse::connect(
            &hub.http,
            &stream_url(hub.addr, ""),
            &[bearer(&hub, &alice), ("last-event-id", "0".to_owned())],
        )
        .await;
        let mut seen = sse.replayed_seqs();
        assert!(!seen.is_empty());
        while seen.len() < TOTAL as usize {
            seen.push(sse.notification().await.seq());
        }
        seen
    };
    let (_, seen) = tokio::join!(writers, reader);
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());
}

async fn tokens_by_header_or_query_and_every_bad_one_is_a_json_401(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let refresh = hub.auth.issue(&alice, TokenType::Refresh, 600).unwrap();
    let expired = hub.auth.issue(&alice, TokenType::Access, -60).unwrap();
    let url = stream_url(hub.addr, "");
    let cases: Vec<(&str, String, Vec<Header>)> = vec![
        ("no token", url.clone(), vec![]),
        (
            "garbage bearer",
            url.clone(),
            vec![("authorization", "Bearer abc.def.ghi".to_owned())],
        ),
        (
            "garbage query",
            stream_url(hub.addr, "token=abc.def.ghi"),
            vec![],
        ),
        (
            "refresh bearer",
            url.clone(),
            vec![("authorization", format!("Bearer {refresh}"))],
        ),
        (
            "refresh query",
            stream_url(hub.addr, &format!("token={refresh}")),
            vec![],
        ),
        (
            "expired",
            url.clone(),
            vec![("authorization", format!("Bearer {expired}"))],
        ),
        ("empty query", stream_url(hub.addr, "token="), vec![]),
    ];
    for (what, url, headers) in cases {
        let refused = Sse::open(&hub.http, &url, &headers)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: a stream was opened"));
        assert_eq!(refused.status, 401, "{what}: {refused:?}");
        assert!(
            refused.content_type.starts_with("application/json"),
            "{what}: {refused:?}"
        );
        let detail = refused.body["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty(), "{what}: {refused:?}");
        assert!(
            !detail.contains(&refresh) && !detail.contains(&expired),
            "{what}: the token is echoed"
        );
    }
    // No stream of any of them reached the user's actor.
    assert!(hub.hub.user(alice.id).is_none());

    // A token in the header, and one in the query: both streams get the notification.
    let mut by_header = Sse::connect(&hub.http, &url, &[bearer(&hub, &alice)]).await;
    let mut by_query = Sse::connect(
        &hub.http,
        &stream_url(hub.addr, &format!("token={}", hub.token(&alice))),
        &[],
    )
    .await;
    for s in [&by_header, &by_query] {
        assert_eq!(s.hello["user_id"], alice.id.0);
    }
    send(&hub, &admin, &alice, "both").await;
    assert_eq!(by_header.notification().await.data["title"], "both");
    assert_eq!(by_query.notification().await.data["title"], "both");

    // A token about to expire is warned about on the stream.
    let short = hub.auth.issue(&alice, TokenType::Access, 31).unwrap();
    let mut warned = Sse::connect(
        &hub.http,
        &url,
        &[("authorization", format!("Bearer {short}"))],
    )
    .await;
    let warning = warned.next_event().await;
    assert_eq!(warning.event, "token_expiring", "{warning:?}");
    let left = warning.data["expires_in"].as_i64().unwrap();
    assert!((1..=30).contains(&left), "{warning:?}");
}

/// The supervision tree's node of a user (`GET /api/admin/actors?q=<username>`), if listed.
async fn user_node(hub: &TestHub, admin: &User, user: &User) -> Option<Value> {
    let tree = hub
        .get_as(
            admin,
            &format!("/api/admin/actors?q={}", user.username),
            200,
        )
        .await;
    let users = tree["children"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "users")?;
    users["children"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == format!("user:{}", user.id))
        .cloned()
}

async fn streams_count_toward_the_socket_cap_and_show_in_the_tree(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.max_sockets_per_user = 2).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;

    // A stream alone keeps a user actor, and shows among the user's sockets.
    let first = stream(&hub, &alice, "").await;
    let node = user_node(&hub, &admin, &alice)
        .await
        .expect("alice's actor is in the tree");
    assert_eq!(node["sockets"]["count"], 1, "{node}");
    assert_eq!(node["status"], "running", "{node}");
    let mut ws = hub.connect(&alice).await;
    let node = user_node(&hub, &admin, &alice).await.unwrap();
    assert_eq!(node["sockets"]["count"], 2, "{node}");
    let root = hub.get_as(&admin, "/api/admin/actors", 200).await;
    assert_eq!(root["totals"]["sockets"], 2, "{root}");

    // Past the cap, a stream is refused with 429, and a socket with 4008.
    let refused = Sse::open(
        &hub.http,
        &stream_url(hub.addr, ""),
        &[bearer(&hub, &alice)],
    )
    .await
    .err()
    .expect("a third stream is refused");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.body["detail"].is_string(), "{refused:?}");
    let mut third =
        Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={}", hub.token(&alice)))).await;
    assert_eq!(third.close_code().await, 4008);
    // Another user is not counted against her.
    let _bob = stream(&hub, &bob, "").await;
    ws.roundtrip().await;

    // A closed stream gives its slot back and leaves the tree.
    drop(first);
    let _again = eventually_some("the stream's slot is free again", || async {
        Sse::open(
            &hub.http,
            &stream_url(hub.addr, ""),
            &[bearer(&hub, &alice)],
        )
        .await
        .ok()
    })
    .await;
    drop(ws);
    eventually("only the new stream is left", || async {
        user_node(&hub, &admin, &alice)
            .await
            .is_some_and(|n| n["sockets"]["count"] == 1)
    })
    .await;
}

async fn inbox_changes_from_rest_arrive_as_their_own_events(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let mut ws = hub.connect(&alice).await;
    let mut sse = stream(&hub, &alice, "").await;
    let mut ids = Vec::new();
    for title in ["a", "b"] {
        send(&hub, &admin, &alice, title).await;
        let n = sse.notification().await;
        assert_eq!(ws.notifications(1).await[0], n.data);
        ids.push(n.data["id"].as_i64().unwrap());
    }
    let last_id = sse.last_event_id.clone();
    let token = hub.token(&alice);
    let changes: Vec<(reqwest::Method, String, &str, Value)> = vec![
        (
            reqwest::Method::POST,
            format!("/api/notifications/{}/mark_as_read/", ids[0]),
            "notification_updated",
            json!({"type": "notification_updated", "id": ids[0], "is_read": true}),
        ),
        (
            reqwest::Method::POST,
            format!("/api/notifications/{}/mark_as_unread/", ids[0]),
            "notification_updated",
            json!({"type": "notification_updated", "id": ids[0], "is_read": false}),
        ),
        (
            reqwest::Method::POST,
            "/api/notifications/mark_all_as_read/".to_owned(),
            "all_marked_read",
            json!({"type": "all_marked_read", "count": 2, "notification_type": null, "ticket": null}),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/notifications/{}/", ids[1]),
            "notification_updated",
            json!({"type": "notification_updated", "id": ids[1], "deleted": true}),
        ),
        (
            reqwest::Method::DELETE,
            "/api/notifications/delete-all/".to_owned(),
            "notifications_cleared",
            json!({"type": "notifications_cleared", "count": 1}),
        ),
    ];
    for (method, path, name, data) in changes {
        let body = (method == reqwest::Method::POST).then(|| json!({}));
        let (status, res) = hub.call(method, &path, Some(&token), body).await;
        assert!(status == 200 || status == 204, "{path}: {status} {res}");
        let event = sse.next_event().await;
        assert_eq!(event.event, name, "{path}: {event:?}");
        assert_eq!(event.data, data, "{path}");
        // Not a notification: no id, so the resume point stays the last notification's.
        assert_eq!(event.id, None, "{path}: {event:?}");
        // The socket heard the same.
        assert_eq!(ws.next_json().await, data, "{path}");
    }
    assert_eq!(sse.last_event_id, last_id);
}

/// An HTTP proxy on a random port that refuses WebSocket upgrades (403) and passes everything
/// else to the hub byte for byte. It reads the head of each connection's first request: the
/// WebSocket client opens a connection of its own for its upgrade.
struct Proxy {
    addr: SocketAddr,
    /// Bumped to cut every connection open through the proxy.
    cut: tokio::sync::watch::Sender<u64>,
    refused: Arc<AtomicUsize>,
    passed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let refused = Arc::new(AtomicUsize::new(0));
        let passed = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (cut, refused, passed) = (cut.clone(), refused.clone(), passed.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let cut = cut.subscribe();
                    let (refused, passed) = (refused.clone(), passed.clone());
                    tokio::spawn(async move {
                        let _ = proxy_one(client, upstream, cut, &refused, &passed).await;
                    });
                }
            }
        });
        Proxy {
            addr,
            cut,
            refused,
            passed,
            task,
        }
    }

    /// Cuts every connection open through the proxy (both sides are closed); new ones are
    /// still taken.
    fn cut(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

crate::trials! {
    both: [
        a_live_notification_is_an_event_with_the_sockets_frame,
        resuming_replays_exactly_what_was_missed_in_order_then_replay_complete,
        notifications_sent_during_the_replay_come_once_each_in_order,
        tokens_by_header_or_query_and_every_bad_one_is_a_json_401,
        streams_count_toward_the_socket_cap_and_show_in_the_tree,
        inbox_changes_from_rest_arrive_as_their_own_events,
        a_proxy_that_refuses_websockets_still_carries_the_stream_and_its_resume,
    ],
    tests: [],
    sync: [],
}
