//! Project rooms (seed 002): the live ticket board and presence, on SQLite and PostgreSQL,
//! and across two hubs on one database and one Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use tickethub_actors::domain::{NewUser, ProjectId, Role, User};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::harness::{Backend, TestHub, Ws};
use crate::tickets::{cast, create_ticket};
mod tabs;
use tabs::*;

/// The hub's live rooms (the first page).
async fn live_rooms(
    hub: &TestHub,
) -> tickethub_actors::directory::Listing<ProjectId, tickethub_actors::room::RoomMsg> {
    hub.hub
        .list_rooms(tickethub_actors::directory::ListFilter {
            label: None,
            keys: None,
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap()
}

/// A hub whose presence grace period and typing silence are short, for tests: the grace still
/// outlasts a reconnect on a loaded machine (it scales with the patience factor).
async fn quick_hub(backend: &Backend) -> TestHub {
    TestHub::start_with(backend, |c| {
        c.presence_grace_ms = crate::harness::scaled_ms(2_000);
        c.typing_idle_ms = 600;
    })
    .await
}

fn path(project: i64, kind: &str) -> String {
    format!("/ws/projects/{project}/{kind}/")
}

/// The URL of a project socket of `user`, with more query parameters (`&…`) after the token.
fn socket_url(hub: &TestHub, user: &User, project: i64, kind: &str, more: &str) -> String {
    hub.ws_url(&format!(
        "{}?token={}{more}",
        path(project, kind),
        hub.token(user)
    ))
}

/// Opens a project socket as `user`.
async fn open(hub: &TestHub, user: &User, project: i64, kind: &str) -> Ws {
    Ws::connect(&socket_url(hub, user, project, kind, "")).await
}

/// Opens a board socket and reads its greeting.
async fn board(hub: &TestHub, user: &User, project: i64) -> Ws {
    let mut ws = open(hub, user, project, "tickets").await;
    let hello = ws.next_json().await;
    assert_eq!(hello["type"], "connection_established", "{hello}");
    ws
}

/// Opens a presence socket and returns it with its `presence_state`.
async fn presence(hub: &TestHub, user: &User, project: i64) -> (Ws, Value) {
    let mut ws = open(hub, user, project, "presence").await;
    let state = ws.next_json().await;
    assert_eq!(state["type"], "presence_state", "{state}");
    (ws, state)
}

/// Opens a presence socket with `?presence=<mode>` and returns it with its `presence_state`.
async fn presence_in(hub: &TestHub, user: &User, project: i64, mode: &str) -> (Ws, Value) {
    let url = socket_url(hub, user, project, "presence", &format!("&presence={mode}"));
    let mut ws = Ws::connect(&url).await;
    let state = ws.next_json().await;
    assert_eq!(state["type"], "presence_state", "{state}");
    (ws, state)
}

fn user_ids(state: &Value) -> Vec<i64> {
    state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_i64().unwrap())
        .collect()
}

async fn only_members_and_admins_get_in(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let outsider = hub.user("outsider", Role::Client).await;
    let other_admin = hub.user("other-admin", Role::Admin).await;
    let project = c.project;
    // Members get in on both paths, and so does an admin who is not a member.
    board(&hub, &c.c1, project).await;
    presence(&hub, &c.d1, project).await;
    presence(&hub, &other_admin, project).await;
    // A non-member, a project that does not exist and one that is not a number are all refused
    // the same way, after the upgrade: 4003 with the same reason.
    let mut reasons = Vec::new();
    for (who, p) in [
        (&outsider, project.to_string()),
        (&c.c1, "999999".to_owned()),
        (&c.c1, "abc".to_owned()),
    ] {
        for kind in ["tickets", "presence"] {
            let mut ws = Ws::connect(&hub.ws_url(&format!(
                "/ws/projects/{p}/{kind}/?token={}",
                hub.token(who)
            )))
            .await;
            let msg = tokio::time::timeout(
                crate::harness::patience(),
                futures::StreamExt::next(&mut ws.inner),
            )
            .await
            .unwrap()
            .unwrap()
            .unwrap();
            let tokio_tungstenite::tungstenite::Message::Close(Some(frame)) = msg else {
                panic!("expected a close frame, got {msg:?}");
            };
            assert_eq!(u16::from(frame.code), 4003);
            reasons.push(frame.reason.to_string());
        }
    }
    reasons.dedup();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    // No room started for the refused sockets of the missing project.
    assert!(hub.hub.room(ProjectId(999_999)).is_none());
    // No token: 4001, as on /ws/notifications/.
    let mut ws = Ws::connect(&hub.ws_url(&path(project, "presence"))).await;
    assert_eq!(ws.close_code().await, 4001);
    // A foreign Origin: 403 before the upgrade.
    let refused = Ws::connect_with(
        &hub.ws_url(&format!(
            "{}?token={}",
            path(project, "tickets"),
            hub.token(&c.c1)
        )),
        &[("origin", "https://evil.example".to_owned())],
    )
    .await;
    assert!(refused.is_err());
}

async fn the_board_streams_every_change_of_its_project_only(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let other = hub.project("OPS", &[&c.c1, &c.a1]).await.id.0;
    let mut ws = board(&hub, &c.d2, c.project).await;

    // A ticket of another project never reaches this board.
    create_ticket(&hub, &c.c1, other, "Elsewhere").await;
    let t = create_ticket(&hub, &c.c1, c.project, "Homepage down").await;
    let id = t["id"].as_i64().unwrap();
    let created = ws.next_json().await;
    assert_eq!(created["type"], "ticket_update", "{created}");
    assert_eq!(created["action"], "created");
    let data = &created["data"];
    assert_eq!(data["ticket_id"], id);
    assert_eq!(data["key"], t["key"]);
    assert_eq!(data["title"], "Homepage down");
    assert_eq!(data["priority"], "HIGH");
    assert_eq!(data["status"]["name"], "New");
    assert!(data["status"]["color"].as_str().unwrap().starts_with('#'));
    assert!(data["updated_at"].is_string());
    let mut versions = vec![data["version"].as_i64().unwrap()];

    let act = |a: &str| format!("/api/tickets/{id}/{a}/");
    hub.post_as(&c.a1, &act("open_ticket"), json!({}), 200)
        .await;
    hub.post_as(
        &c.a1,
        &act("assign"),
        json!({"developer_ids": [c.d1.id.0]}),
        200,
    )
    .await;
    hub.post_as(
        &c.c1,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "Any news?"}),
        201,
    )
    .await;
    hub.post_as(&c.d1, &act("start_work"), json!({}), 200).await;
    let opened = ws.next_json().await;
    assert_eq!(
        (
            opened["action"].as_str(),
            opened["data"]["status"]["code"].as_str()
        ),
        (Some("status_changed"), Some("OPEN"))
    );
    let assigned = ws.next_json().await;
    assert_eq!(assigned["action"], "status_changed");
    assert_eq!(assigned["data"]["assignees"], json!([c.d1.id.0]));
    let comment = ws.next_json().await;
    assert_eq!(comment["type"], "comment_added", "{comment}");
    assert_eq!(comment["data"]["ticket_id"], id);
    assert_eq!(comment["data"]["comment"]["body"], "Any news?");
    assert_eq!(comment["data"]["comment"]["author"], "c1 display");
    assert!(comment["data"]["comment"]["id"].is_i64());
    let started = ws.next_json().await;
    assert_eq!(started["data"]["status"]["code"], "IN_PROGRESS");
    for v in [&opened, &assigned, &started] {
        versions.push(v["data"]["version"].as_i64().unwrap());
    }
    // Versions only grow: a client drops any update older than the list it loaded.
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    // Nothing of the other project arrived in between, and the socket is quiet now.
    ws.roundtrip().await;
    // Seed 001's notification commands are not understood on a board socket.
    ws.send_json(json!({"type": "get_notifications"})).await;
    assert_eq!(ws.next_json().await["code"], "unknown_type");
}

async fn presence_counts_users_and_waits_out_the_grace_period(backend: Backend) {
    let hub = quick_hub(&backend).await;
    let c = cast(&hub).await;
    let p = c.project;
    let (mut bob, state) = presence(&hub, &c.d1, p).await;
    assert_eq!(user_ids(&state), vec![c.d1.id.0]);
    // Alice opens two tabs: one presence, one `joined`.
    let (tab1, _) = presence(&hub, &c.c1, p).await;
    let joined = bob.next_json().await;
    assert_eq!(
        joined,
        json!({"type": "user_status", "action": "joined", "user_id": c.c1.id.0, "username": "c1", "display_name": "c1 display"})
    );
    let (mut tab2, state) = presence(&hub, &c.c1, p).await;
    let mut ids = user_ids(&state);
    ids.sort();
    let mut want = vec![c.d1.id.0, c.c1.id.0];
    want.sort();
    assert_eq!(ids, want, "two tabs are one presence");
    // What she looks at reaches the others, with her id added.
    let t = create_ticket(&hub, &c.c1, p, "Look").await["id"]
        .as_i64()
        .unwrap();
    tab2.send_json(json!({"type": "ticket_viewing", "ticket_id": t}))
        .await;
    assert_eq!(
        bob.next_json().await,
        json!({"type": "ticket_viewing", "user_id": c.c1.id.0, "ticket_id": t})
    );
    // A new socket sees it in presence_state.
    let (_carol, state) = presence(&hub, &c.a2, p).await;
    let alice = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_id"] == c.c1.id.0)
        .unwrap()
        .clone();
    assert_eq!(alice["viewing"], t);
    assert_eq!(alice["display_name"], "c1 display");
    assert_eq!(bob.next_json().await["action"], "joined");

    // Closing one tab says nothing; a reload within the grace period says nothing either.
    drop(tab1.inner);
    drop(tab2.inner);
    let (mut tab3, _) = presence(&hub, &c.c1, p).await;
    tab3.send_json(json!({"type": "ticket_viewing", "ticket_id": null}))
        .await;
    let next = bob.next_json().await;
    assert_eq!(next["type"], "ticket_viewing", "no flapping: {next}");
    // The last tab closes: `left` comes once, after the grace period.
    drop(tab3.inner);
    let left = bob.next_json().await;
    assert_eq!(
        left,
        json!({"type": "user_status", "action": "left", "user_id": c.c1.id.0, "username": "c1"})
    );
    bob.roundtrip().await;
    // Notification sockets of the same user never notice any of it.
    let mut notes = hub.connect(&c.d1).await;
    notes.roundtrip().await;
}

async fn typing_is_throttled_and_stops_by_itself(backend: Backend) {
    // The bursts below are sent again and again until one is relayed: the socket's own
    // command rate limit is not what this test is about.
    let hub = TestHub::start_with(&backend, |c| {
        c.presence_grace_ms = crate::harness::scaled_ms(2_000);
        c.typing_idle_ms = 600;
        c.ws_commands_per_second = 10_000;
        c.ws_command_burst = 10_000;
    })
    .await;
    let c = cast(&hub).await;
    let p = c.project;
    let other = hub.project("OPS", &[&c.c1]).await.id.0;
    let t = create_ticket(&hub, &c.c1, p, "Typing").await["id"]
        .as_i64()
        .unwrap();
    let foreign = create_ticket(&hub, &c.c1, other, "Elsewhere").await["id"]
        .as_i64()
        .unwrap();
    let (mut bob, _) = presence(&hub, &c.d1, p).await;
    let (mut alice, _) = presence(&hub, &c.c1, p).await;
    assert_eq!(bob.next_json().await["action"], "joined");
    // Ten keystrokes in quick succession: one relay.
    for _ in 0..10 {
        alice
            .send_json(json!({"type": "user_typing", "ticket_id": t, "is_typing": true}))
            .await;
    }
    assert_eq!(
        bob.next_json().await,
        json!({"type": "user_typing", "user_id": c.c1.id.0, "ticket_id": t, "is_typing": true})
    );
    // Then silence: `is_typing: false` follows by itself.
    assert_eq!(
        bob.next_json().await,
        json!({"type": "user_typing", "user_id": c.c1.id.0, "ticket_id": t, "is_typing": false})
    );
    // A ticket of another project, or a malformed frame: an error, and the socket stays open.
    alice
        .send_json(json!({"type": "user_typing", "ticket_id": foreign, "is_typing": true}))
        .await;
    assert_eq!(alice.next_json().await["code"], "not_found");
    alice
        .send_json(json!({"type": "ticket_viewing", "ticket_id": foreign}))
        .await;
    assert_eq!(alice.next_json().await["code"], "not_found");
    alice
        .send_json(json!({"type": "user_typing", "ticket_id": "x"}))
        .await;
    assert_eq!(alice.next_json().await["code"], "bad_request");
    alice
        .send(tokio_tungstenite::tungstenite::Message::text("{nope"))
        .await;
    assert_eq!(alice.next_json().await["code"], "bad_request");
    alice.roundtrip().await;
    // Nothing of that reached Bob.
    bob.roundtrip().await;
    // Stops are relayed at once, and true/false/true/false… cannot beat the throttle: a burst
    // of them, sent again and again (each followed by a viewing change, relayed at once, that
    // says the burst was handled), relays nothing while the throttle's second since the last
    // relay runs, and once it has passed one start and one stop.
    let sockets = tokio::sync::Mutex::new((alice, bob));
    let relayed = crate::harness::eventually_some("a typing burst is relayed", || async {
        let mut sockets = sockets.lock().await;
        let (alice, bob) = &mut *sockets;
        for is_typing in [true, false, true, false, true, false] {
            alice
                .send_json(json!({"type": "user_typing", "ticket_id": t, "is_typing": is_typing}))
                .await;
        }
        alice
            .send_json(json!({"type": "ticket_viewing", "ticket_id": t}))
            .await;
        let mut typing = Vec::new();
        loop {
            let v = bob.next_json().await;
            if v["type"] == "ticket_viewing" {
                break;
            }
            assert_eq!(v["type"], "user_typing", "{v}");
            typing.push(v["is_typing"].clone());
        }
        (!typing.is_empty()).then_some(typing)
    })
    .await;
    assert_eq!(relayed, vec![json!(true), json!(false)]);
    let (alice, mut bob) = sockets.into_inner();
    // The room is an actor of its own, listed for operators.
    let rooms = live_rooms(&hub).await;
    assert_eq!(rooms.total, 1);
    assert_eq!(rooms.items[0].key, ProjectId(p));
    drop(alice.inner);
    assert!(matches!(bob.ended_or_next().await, Some(v) if v["action"] == "left"));
}

async fn the_board_crosses_nodes(backend: Backend) {
    let (a, b) = TestHub::pair_on_redis(&backend).await;
    let c = cast(&a).await;
    let mut on_b = board(&b, &c.d1, c.project).await;
    let t = create_ticket(&a, &c.c1, c.project, "Cross").await;
    let id = t["id"].as_i64().unwrap();
    let created = on_b.next_json().await;
    assert_eq!(
        (
            created["action"].as_str(),
            created["data"]["ticket_id"].as_i64()
        ),
        (Some("created"), Some(id))
    );
    a.post_as(
        &c.a1,
        &format!("/api/tickets/{id}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    a.post_as(
        &c.c1,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "from node A"}),
        201,
    )
    .await;
    assert_eq!(on_b.next_json().await["action"], "status_changed");
    let comment = on_b.next_json().await;
    assert_eq!(comment["type"], "comment_added");
    assert_eq!(comment["data"]["comment"]["body"], "from node A");
}

impl Ws {
    /// The next frame, or `None` if the socket ended.
    async fn ended_or_next(&mut self) -> Option<Value> {
        match tokio::time::timeout(
            crate::harness::patience(),
            futures::StreamExt::next(&mut self.inner),
        )
        .await
        {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
                serde_json::from_str(&t).ok()
            }
            _ => None,
        }
    }
}

/// The nice value in a `/proc/…/stat` line: the 19th field, the 17th after the command.
#[cfg(target_os = "linux")]
fn nice_in(stat: &str) -> i64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().nth(16).unwrap().parse().unwrap()
}

/// The nice value of each of this process's threads with this name.
#[cfg(target_os = "linux")]
fn nice_of_threads(name: &str) -> Vec<i64> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .map(|stat| nice_in(&stat))
        .collect()
}

#[cfg(target_os = "linux")]
async fn rooms_run_on_threads_that_yield_to_notifications() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.rooms_nice = 12).await;
    let c = cast(&hub).await;
    let (_bob, _) = presence(&hub, &c.d1, c.project).await;
    let mut alice = board(&hub, &c.c1, c.project).await;
    // Other tests' hubs run the default (10); this one's threads are the ones at 12.
    let nices = nice_of_threads("tickethub-rooms");
    assert!(nices.contains(&12), "{nices:?}");
    assert!(nices.iter().all(|n| *n == 10 || *n == 12), "{nices:?}");
    // The test's own threads, and so the hub's notification path, keep their priority.
    let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let own_nice: i64 = own
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(own_nice, 0);
    create_ticket(&hub, &c.c1, c.project, "Across runtimes").await;
    assert_eq!(alice.next_json().await["action"], "created");
}

async fn a_crashed_room_restarts_alone_and_operators_see_it() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let c = cast(&hub).await;
    let p = c.project;
    let (_bob, _) = presence(&hub, &c.d1, p).await;
    let mut alice = board(&hub, &c.c1, p).await;
    let mut notes = hub.connect(&c.c1).await;

    // The operators' tree shows the room with its members and socket counts.
    let tree = hub.get_as(&c.a1, "/api/admin/actors", 200).await;
    let rooms = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "rooms")
        .expect("a rooms directory")
        .clone();
    assert_eq!(tree["totals"]["rooms"], 1);
    let room = &rooms["children"][0];
    assert_eq!(room["name"], format!("room:{p}"));
    assert_eq!(
        (
            room["board_sockets"].as_u64(),
            room["presence_sockets"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(room["members"][0]["user_id"], c.d1.id.0);

    // A room that crashes takes its own sockets down (1012: reconnect), nobody else's.
    let actor = hub.hub.room(ProjectId(p)).unwrap();
    actor
        .send_message(tickethub_actors::room::RoomMsg::InjectFault)
        .unwrap();
    assert_eq!(alice.close_code().await, 1012);
    notes.roundtrip().await;
    // Reconnecting starts a fresh room, which streams as before.
    let mut alice = board(&hub, &c.c1, p).await;
    create_ticket(&hub, &c.c1, p, "After the crash").await;
    assert_eq!(alice.next_json().await["action"], "created");
    let stats = live_rooms(&hub).await;
    assert_eq!(stats.stats.failures, 1);
}

async fn a_ticket_that_did_not_exist_yet_is_not_held_against_it() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let c = cast(&hub).await;
    let p = c.project;
    let first = create_ticket(&hub, &c.c1, p, "First").await["id"]
        .as_i64()
        .unwrap();
    let (mut bob, _) = presence(&hub, &c.d1, p).await;
    let (mut alice, _) = presence(&hub, &c.c1, p).await;
    assert_eq!(bob.next_json().await["action"], "joined");
    // The next ticket's id is asked about before the ticket exists…
    alice
        .send_json(json!({"type": "ticket_viewing", "ticket_id": first + 1}))
        .await;
    assert_eq!(alice.next_json().await["code"], "not_found");
    // …and once it does, it is the project's like any other.
    let second = create_ticket(&hub, &c.c1, p, "Second").await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(second, first + 1);
    alice
        .send_json(json!({"type": "ticket_viewing", "ticket_id": second}))
        .await;
    assert_eq!(
        bob.next_json().await,
        json!({"type": "ticket_viewing", "user_id": c.c1.id.0, "ticket_id": second})
    );
}

/// `n` new users `{prefix}{i}`, each with a display name, made a few at a time and with one
/// password hash for all: hashing a password per user would take most of a big test's time.
async fn many_users(hub: &TestHub, prefix: &str, n: usize, role: Role) -> Vec<User> {
    let hash = tickethub::auth::hash_password_blocking("crowd-password");
    stream::iter(0..n)
        .map(|i| {
            let username = format!("{prefix}{i}");
            hub.store.create_user(NewUser {
                display_name: format!("{username} display"),
                email: Some(format!("{username}@example.test")),
                ..NewUser::new(username, role, hash.clone())
            })
        })
        .buffered(16)
        .map(|u| u.expect("user created"))
        .collect()
        .await
}

/// `n` new developers who are the members of a new project `key`, and the project's id.
async fn crowd(hub: &TestHub, key: &str, n: usize) -> (Vec<User>, i64) {
    let users = many_users(hub, &key.to_lowercase(), n, Role::Developer).await;
    let members: Vec<&User> = users.iter().collect();
    let project = hub.project(key, &members).await.id.0;
    (users, project)
}

/// A user as `presence_state` and `presence_diff` joins list them, looking at nothing.
fn entry(user: &User) -> Value {
    json!({
        "user_id": user.id.0,
        "username": user.username,
        "display_name": user.display_name,
        "viewing": null,
    })
}

/// Asserts that nothing is on its way to the socket: a ping's pong is the next frame.
async fn nothing_more(ws: &mut Ws) {
    ws.send_json(json!({"type": "ping", "timestamp": 7})).await;
    let next = ws.next_json().await;
    assert_eq!(
        next,
        json!({"type": "pong", "timestamp": 7}),
        "nothing more"
    );
}

/// What `presence_diff` frames said under `list` (`joins` or `leaves`) until `n` users were
/// listed there, by user id; the other list must stay empty and nobody may be listed twice.
/// Also how many frames that took and when the first came.
async fn diffs_until(ws: &mut Ws, list: &str, n: usize) -> (BTreeMap<i64, Value>, usize, Instant) {
    let other = if list == "joins" { "leaves" } else { "joins" };
    let (mut seen, mut frames, mut first) = (BTreeMap::new(), 0, None);
    while seen.len() < n {
        let diff = ws.next_json().await;
        first.get_or_insert_with(Instant::now);
        frames += 1;
        assert_eq!(diff["type"], "presence_diff", "{diff}");
        assert_eq!(diff[other], json!([]), "{diff}");
        let listed = diff[list].as_array().unwrap_or_else(|| panic!("{diff}"));
        assert!(!listed.is_empty(), "an empty diff: {diff}");
        for e in listed {
            let id = e["user_id"].as_i64().unwrap_or_else(|| panic!("{e}"));
            assert!(seen.insert(id, e.clone()).is_none(), "{id} listed twice");
        }
    }
    (seen, frames, first.expect("at least one frame"))
}

async fn presence_diff_batches_joins_and_leaves(backend: Backend) {
    const CROWD: usize = 20;
    let hub = quick_hub(&backend).await;
    let (users, p) = crowd(&hub, "CROWD", CROWD + 2).await;
    let (watchers, crowd) = users.split_at(2);
    // Any other mode than `events` and `diff` is refused before the upgrade.
    // A parameter given twice is refused too, rather than the query being ignored (and the
    // token with it).
    for bad in ["bogus", "", "Diff", "diff,events", "diff&presence=diff"] {
        let url = socket_url(
            &hub,
            &watchers[0],
            p,
            "presence",
            &format!("&presence={bad}"),
        );
        match Ws::connect_with(&url, &[]).await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), 400, "presence={bad}"),
            Err(other) => panic!("presence={bad}: unexpected {other}"),
            Ok(_) => panic!("presence={bad} was accepted"),
        }
    }
    let (mut diffs, state) = presence_in(&hub, &watchers[0], p, "diff").await;
    assert_eq!(state["users"], json!([entry(&watchers[0])]));
    let (mut events, state) = presence_in(&hub, &watchers[1], p, "events").await;
    assert_eq!(user_ids(&state).len(), 2);
    // A diff socket hears of one arrival as a diff too.
    assert_eq!(
        diffs.next_json().await,
        json!({"type": "presence_diff", "joins": [entry(&watchers[1])], "leaves": []})
    );

    // A crowd arrives at once.
    let tabs: Vec<Ws> =
        futures::future::join_all(crowd.iter().map(|u| async { presence(&hub, u, p).await.0 }))
            .await;
    let (joins, frames, _) = diffs_until(&mut diffs, "joins", CROWD).await;
    assert_eq!(
        joins.into_values().collect::<Vec<_>>(),
        {
            let mut want: Vec<&User> = crowd.iter().collect();
            want.sort_by_key(|u| u.id);
            want.into_iter().map(entry).collect::<Vec<_>>()
        },
        "every member of the crowd, as presence_state lists them"
    );
    // Batches are made by time, and on a busy machine the handshakes spread over a few of
    // them (up to 5 seen with 16 test threads on 2 CPUs); one frame per join would be 20.
    assert!(
        frames <= CROWD / 2,
        "{frames} presence_diff frames for {CROWD} joins"
    );
    // A socket of the seed's kind gets one `joined` per user.
    let mut heard = BTreeSet::new();
    for _ in 0..CROWD {
        let joined = events.next_json().await;
        let id = joined["user_id"].as_i64().unwrap();
        let user = crowd
            .iter()
            .find(|u| u.id.0 == id)
            .expect("one of the crowd");
        assert_eq!(
            joined,
            json!({"type": "user_status", "action": "joined", "user_id": id, "username": user.username, "display_name": user.display_name})
        );
        assert!(heard.insert(id));
    }
    nothing_more(&mut diffs).await;
    nothing_more(&mut events).await;

    // The crowd goes at once: its leaves come after the grace period, batched again.
    let closed = Instant::now();
    drop(tabs);
    let (leaves, frames, first) = diffs_until(&mut diffs, "leaves", CROWD).await;
    let grace = first.duration_since(closed);
    assert!(
        grace >= Duration::from_millis(crate::harness::scaled_ms(2_000) - 5),
        "left after {grace:?}"
    );
    assert_eq!(leaves.into_values().collect::<Vec<_>>(), {
        let mut want: Vec<&User> = crowd.iter().collect();
        want.sort_by_key(|u| u.id);
        want.into_iter()
            .map(|u| json!({"user_id": u.id.0, "username": u.username}))
            .collect::<Vec<_>>()
    });
    assert!(
        frames <= CROWD / 2,
        "{frames} presence_diff frames for {CROWD} leaves"
    );
    for _ in 0..CROWD {
        let left = events.next_json().await;
        assert_eq!(left["action"], "left", "{left}");
        assert!(heard.remove(&left["user_id"].as_i64().unwrap()), "{left}");
    }
    nothing_more(&mut diffs).await;
    nothing_more(&mut events).await;
}

async fn presence_state_for_2000_present_members_is_one_frame(backend: Backend) {
    const PRESENT: usize = 2_000;
    const CONCURRENCY: usize = 64;
    let hub = TestHub::start(&backend).await;
    // 2,001 members: a handshake checks one membership, whatever the project's size.
    let (mut present, p) = crowd(&hub, "BIG", PRESENT + 1).await;
    let newcomer = present.pop().unwrap();
    // The crowd's sockets are small (4 KiB read buffers). Each waits for its own
    // `presence_state` (then it is present) and reads everything else it is sent, unparsed, in
    // a task of its own, so that none of them is a slow consumer; any socket that ends before
    // the test does is counted. The handshakes are made a few at a time.
    let ended = Arc::new(AtomicUsize::new(0));
    let (present_tx, mut present_rx) = tokio::sync::mpsc::unbounded_channel();
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let drains: Vec<tokio::task::JoinHandle<()>> = stream::iter(&present)
        .map(|user| {
            let url = socket_url(&hub, user, p, "presence", "&presence=diff");
            async move {
                tokio_tungstenite::connect_async_with_config(url, Some(config), false)
                    .await
                    .expect("websocket handshake")
                    .0
            }
        })
        .buffer_unordered(CONCURRENCY)
        .map(|mut socket| {
            let (ended, present_tx) = (ended.clone(), present_tx.clone());
            tokio::spawn(async move {
                // The first text frame; a protocol ping may come first.
                let text = loop {
                    match socket.next().await {
                        Some(Ok(Message::Text(text))) => break text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        other => panic!("expected a presence_state, got {other:?}"),
                    }
                };
                // Not parsed: the crowd's states add up to millions of entries. The type comes
                // first whether the JSON keeps its keys in order or sorts them.
                assert!(
                    text.starts_with(r#"{"type":"presence_state","#),
                    "expected a presence_state, got {}",
                    text.chars().take(200).collect::<String>()
                );
                let _ = present_tx.send(());
                // From here on the bytes are thrown away unparsed; a socket the hub closes (as
                // a slow consumer, say) ends its connection too.
                let mut tcp = socket.into_inner();
                let mut buf = vec![0; 4 * 1024];
                while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                ended.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect()
        .await;
    drop(present_tx);
    for _ in &present {
        tokio::time::timeout(crate::harness::patience(), present_rx.recv())
            .await
            .expect("every crowd member present in time")
            .expect("a crowd member's socket failed");
    }

    // A newcomer's first frame is the whole room, itself included, in one presence_state.
    let (mut ws, state) = presence(&hub, &newcomer, p).await;
    let listed = state["users"].as_array().unwrap();
    assert_eq!(listed.len(), PRESENT + 1);
    let mut want: Vec<&User> = present.iter().chain([&newcomer]).collect();
    want.sort_by_key(|u| u.id);
    let mut got: Vec<&Value> = listed.iter().collect();
    got.sort_by_key(|e| e["user_id"].as_i64());
    for (e, u) in got.into_iter().zip(want) {
        assert_eq!(e, &entry(u));
    }
    // Nothing else: no second part of the state.
    nothing_more(&mut ws).await;
    assert_eq!(
        ended.load(Ordering::Relaxed),
        0,
        "a crowd member's socket ended"
    );
    for d in drains {
        d.abort();
    }
}

crate::trials! {
    both: [
        only_members_and_admins_get_in,
        the_board_streams_every_change_of_its_project_only,
        presence_counts_users_and_waits_out_the_grace_period,
        typing_is_throttled_and_stops_by_itself,
        the_board_crosses_nodes,
        presence_diff_batches_joins_and_leaves,
        presence_state_for_2000_present_members_is_one_frame,
    ],
    tests: [
        rooms_run_on_threads_that_yield_to_notifications,
        a_crashed_room_restarts_alone_and_operators_see_it,
        a_ticket_that_did_not_exist_yet_is_not_held_against_it,
        a_tab_that_comes_and_goes_never_leaves_without_having_joined,
        a_tab_that_comes_and_goes_within_one_batch_is_never_announced,
    ],
    sync: [],
}
