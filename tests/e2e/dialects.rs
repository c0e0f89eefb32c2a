//! The seed dialects of `/ws/notifications/`: each seed's frontend gets the frames its document
//! describes, with the hub's guarantees (seq, replay, acks) unchanged.

use serde_json::{json, Value};
use tickethub::ws::dialect::Dialect;
use tickethub_actors::domain::{Role, User};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Backend, Crew, TestHub, Ws};
use crate::tickets::cast;

/// Opens a socket at `url` and reads its greeting and replay, in any dialect; returns the
/// socket, the greeting and the replayed frames.
async fn open(url: &str, headers: &[(&'static str, String)]) -> (Ws, Value, Vec<Value>) {
    let mut ws = Ws::connect_with(url, headers).await.expect("handshake");
    let hello = ws.next_json().await;
    assert_eq!(hello["type"], "connection_established", "{hello}");
    let mut replayed = Vec::new();
    loop {
        let v = ws.next_json().await;
        if v["type"] == "replay_complete" {
            assert_eq!(v["count"].as_u64(), Some(replayed.len() as u64), "{v}");
            return (ws, hello, replayed);
        }
        replayed.push(v);
    }
}

fn url(hub: &TestHub, user: &User, query: &str) -> String {
    hub.ws_url(&format!(
        "/ws/notifications/?token={}{query}",
        hub.token(user)
    ))
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

async fn seed002_hears_of_an_assignment_and_a_custom_notification(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let (mut dev, _, _) = open(&url(&hub, &c.d1, "&dialect=seed002"), &[]).await;
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1],
    };
    let ticket = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": c.project, "title": "Login broken"}),
        )
        .await;
    let id = ticket["id"].as_i64().unwrap();
    let frame = dev.next_json().await;
    assert_eq!(keys(&frame), sorted(&["type", "seq", "replayed", "data"]));
    assert_eq!(frame["type"], "notification_message");
    assert_eq!(frame["replayed"], false);
    let data = &frame["data"];
    assert_eq!(
        keys(data),
        sorted(&[
            "id",
            "notification_type",
            "title",
            "message",
            "ticket_id",
            "ticket_key",
            "timestamp"
        ])
    );
    assert_eq!(data["notification_type"], "ticket_assigned");
    assert_eq!(data["ticket_id"], id);
    assert_eq!(data["ticket_key"], ticket["key"]);
    assert!(data["id"].is_i64() && data["timestamp"].is_string());

    // A custom notification, as seed 002's `send_notification(user_id, {...})` sends.
    hub.send(
        &c.a1,
        &[&c.d1],
        json!({"title": "System Alert", "message": "Your report is ready!"}),
    )
    .await;
    let frame = dev.next_json().await;
    assert_eq!(frame["type"], "notification_message");
    assert_eq!(frame_seq(&frame), 2);
    assert_eq!(frame["data"]["notification_type"], "general");
    assert_eq!(frame["data"]["title"], "System Alert");
    assert_eq!(frame["data"]["ticket_id"], Value::Null);
    // Application pings are answered as seed 002's hook expects.
    dev.send_json(json!({"type": "ping"})).await;
    assert_eq!(dev.next_json().await["type"], "pong");

    // The guarantees hold in the dialect: a reconnect resumes after the last seq it saw.
    drop(dev);
    hub.send(
        &c.a1,
        &[&c.d1],
        json!({"title": "While away", "message": "m"}),
    )
    .await;
    let (_dev, _, replayed) = open(&url(&hub, &c.d1, "&dialect=seed002&last_seq=2"), &[]).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["type"], "notification_message");
    assert_eq!(replayed[0]["replayed"], true);
    assert_eq!(replayed[0]["seq"], 3);
    assert_eq!(replayed[0]["data"]["title"], "While away");
}

fn frame_seq(frame: &Value) -> i64 {
    frame["seq"].as_i64().expect("every dialect carries seq")
}

async fn seed003_commands_and_their_confirmations(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    // The admin asks for the dialect with a subprotocol, beside the token.
    let (mut boss, _, _) = open(
        &hub.ws_url("/ws/notifications/"),
        &[(
            "sec-websocket-protocol",
            format!("tickethub.seed003, bearer.{}", hub.token(&admin)),
        )],
    )
    .await;
    assert_eq!(boss.protocol.as_deref(), Some("tickethub.seed003"));
    let (mut ws, _, _) = open(&url(&hub, &alice, "&dialect=seed003"), &[]).await;

    // send_notification exactly as seed 003 documents it: the notification's type in a second
    // "type" key (which no JSON library would write, so the frame is written by hand).
    let send = |title: &str| {
        format!(
            r#"{{"type":"send_notification","user_id":{},"title":"{title}","message":"Message","type":"approval","data":{{"form":"userdetail"}},"link":"/some/url"}}"#,
            alice.id.0
        )
    };
    boss.send(Message::text(send("Title"))).await;
    let sent = boss.next_json().await;
    assert_eq!(
        keys(&sent),
        sorted(&["type", "success", "notification_id", "count"])
    );
    assert_eq!(
        (sent["type"].as_str(), sent["success"].as_bool()),
        (Some("notification_sent"), Some(true))
    );
    let first = sent["notification_id"].as_i64().unwrap();

    let frame = ws.next_json().await;
    assert_eq!(
        keys(&frame),
        sorted(&["type", "seq", "replayed", "notification"])
    );
    assert_eq!(frame["type"], "notification");
    let n = &frame["notification"];
    assert_eq!(
        keys(n),
        sorted(&[
            "id",
            "title",
            "message",
            "type",
            "read",
            "created_at",
            "data"
        ])
    );
    assert_eq!(n["id"], first);
    assert_eq!(n["type"], "approval");
    assert_eq!(n["read"], false);
    assert_eq!(n["data"], json!({"form": "userdetail"}));

    boss.send(Message::text(send("Second"))).await;
    let second = boss.next_json().await["notification_id"].as_i64().unwrap();
    assert_eq!(ws.next_json().await["notification"]["id"], second);

    // get_notifications → notifications_list, items in the dialect's shape.
    ws.send_json(json!({"type": "get_notifications"})).await;
    let list = ws.next_json().await;
    assert_eq!(
        keys(&list),
        sorted(&["type", "notifications", "total", "unread_count"])
    );
    assert_eq!(
        (list["total"].as_i64(), list["unread_count"].as_i64()),
        (Some(2), Some(2))
    );
    let items = list["notifications"].as_array().unwrap();
    assert_eq!(items[0]["id"], second);
    assert_eq!(keys(&items[0]), keys(n));

    // mark_read → notification_marked_read {notification_id, success}.
    ws.send_json(json!({"type": "mark_read", "notification_id": first}))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "notification_marked_read", "notification_id": first, "success": true})
    );
    // mark_all_read → all_marked_read.
    ws.send_json(json!({"type": "mark_all_read"})).await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "all_marked_read", "count": 1})
    );
    // delete_notification → notification_deleted; another user's id is not theirs.
    ws.send_json(json!({"type": "delete_notification", "notification_id": first}))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "notification_deleted", "notification_id": first, "success": true})
    );
    ws.send_json(json!({"type": "delete_notification", "notification_id": first}))
        .await;
    assert_eq!(ws.next_json().await["success"], false);
    // A command from seed 001's vocabulary is understood in this dialect too.
    ws.send_json(json!({"type": "mark_unread", "notification_id": second}))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "notification_marked_unread", "notification_id": second, "success": true})
    );
    // And nonsense still gets the usual error frame.
    ws.send_json(json!({"type": "dance"})).await;
    assert_eq!(ws.next_json().await["code"], "unknown_type");
    // A client that is not an admin cannot send.
    ws.send(Message::text(send("Nope"))).await;
    assert_eq!(ws.next_json().await["code"], "forbidden");
}

async fn seed004_registrations_reach_super_admins_and_inbox_changes_follow(backend: Backend) {
    // This hub speaks seed 004 to every socket that does not ask for another dialect.
    let hub = TestHub::start_with(&backend, |c| c.ws_dialect = Dialect::Seed004).await;
    let root = hub.user_with("root", Role::Admin, true).await;
    let (mut ws, hello, _) = open(&url(&hub, &root, ""), &[]).await;
    assert!(hello["message"].as_str().unwrap().contains("root"));
    // A socket may still ask for seed 001's shapes.
    let (mut plain, _, _) = open(&url(&hub, &root, "&dialect=seed001"), &[]).await;

    let (status, user) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "john", "password": "long enough", "email": "john@example.com", "display_name": "John Doe"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let frame = ws.next_json().await;
    assert_eq!(
        keys(&frame),
        sorted(&["type", "seq", "replayed", "notification"])
    );
    assert_eq!(frame["type"], "new_notification");
    let n = &frame["notification"];
    assert_eq!(
        keys(n),
        sorted(&[
            "id",
            "type",
            "title",
            "body",
            "action_url",
            "is_read",
            "time_ago",
            "created_at",
            "metadata"
        ])
    );
    // Seed 004's word for the hub's `user_registered`.
    assert_eq!(n["type"], "user_registration");
    assert_eq!(n["title"], "New User Registered");
    assert!(n["body"].as_str().unwrap().contains("John Doe"), "{n}");
    assert_eq!(n["is_read"], false);
    assert_eq!(n["time_ago"], "Just now");
    assert_eq!(n["action_url"], format!("/users/{}/", user["id"]));
    let meta = &n["metadata"];
    assert_eq!(meta["user_id"], user["id"]);
    assert_eq!(meta["user_email"], "john@example.com");
    assert_eq!(meta["user_full_name"], "John Doe");
    assert_eq!(meta["user_role"], "client");
    let plain_frame = plain.next_json().await;
    assert_eq!(plain_frame["type"], "notification");
    assert_eq!(plain_frame["notification_type"], "user_registered");

    // Seed 004's REST paths: read, unread, delete all; the socket hears of each.
    let id = n["id"].as_i64().unwrap();
    let token = hub.token(&root);
    for (path, is_read) in [("mark-as-read", true), ("mark-as-unread", false)] {
        let (status, _) = hub
            .post(
                &format!("/api/notifications/{id}/{path}/"),
                Some(&token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            ws.next_json().await,
            json!({"type": "notification_updated", "id": id, "is_read": is_read})
        );
    }
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            "/api/notifications/delete-all/",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        ws.next_json().await,
        json!({"type": "notifications_cleared", "count": 1})
    );
    // Seed 004's keep-alive.
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["type"], "pong");
}

async fn seed004_calls_a_registration_user_registration_and_keeps_other_types(backend: Backend) {
    // A hub of seed 001's shapes; the super admin's frontend asks for seed 004's.
    let hub = TestHub::start(&backend).await;
    let root = hub.user_with("root", Role::Admin, true).await;
    let (mut s004, _, _) = open(&url(&hub, &root, "&dialect=seed004"), &[]).await;
    let (mut s003, _, _) = open(&url(&hub, &root, "&dialect=seed003"), &[]).await;
    let (mut s001, _, _) = open(&url(&hub, &root, ""), &[]).await;
    let mut stream = crate::sse::Sse::connect(
        &hub.http,
        &hub.url(&format!(
            "/sse/notifications/?dialect=seed004&token={}",
            hub.token(&root)
        )),
        &[],
    )
    .await;

    let (status, user) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "jane", "password": "long enough", "email": "jane@example.com", "display_name": "Jane Roe"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let frame = s004.next_json().await;
    assert_eq!(frame["type"], "new_notification");
    assert_eq!(
        frame["notification"]["type"], "user_registration",
        "{frame}"
    );
    assert_eq!(frame["notification"]["metadata"]["user_id"], user["id"]);
    // The event stream in seed 004's dialect says the same.
    let event = stream.next_event().await;
    assert_eq!(event.event, "notification");
    assert_eq!(event.data["notification"]["type"], "user_registration");
    assert_eq!(
        event.data["notification"]["id"],
        frame["notification"]["id"]
    );
    // Other dialects, and the REST API, keep the hub's word.
    assert_eq!(
        s003.next_json().await["notification"]["type"],
        "user_registered"
    );
    assert_eq!(
        s001.next_json().await["notification_type"],
        "user_registered"
    );
    let id = frame["notification"]["id"].as_i64().unwrap();
    let stored = hub
        .get_as(&root, &format!("/api/notifications/{id}/"), 200)
        .await;
    assert_eq!(stored["notification_type"], "user_registered");

    // A type seed 004 has no word for passes unchanged: a sender's own, and the default.
    for (extra, kind) in [
        (json!({"notification_type": "approval"}), "approval"),
        (json!({}), "general"),
    ] {
        let mut body = json!({"title": "Heads up", "message": "m"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        hub.send(&root, &[&root], body).await;
        assert_eq!(s004.next_json().await["notification"]["type"], kind);
        assert_eq!(s001.next_json().await["notification_type"], kind);
        s003.next_json().await;
    }

    // A replay and the list in seed 004's dialect use its word too.
    let (mut again, _, replayed) =
        open(&url(&hub, &root, "&dialect=seed004&last_seq=0"), &[]).await;
    let kinds: Vec<&Value> = replayed
        .iter()
        .map(|f| &f["notification"]["type"])
        .collect();
    assert_eq!(
        kinds,
        [
            &json!("user_registration"),
            &json!("approval"),
            &json!("general")
        ]
    );
    again.send_json(json!({"type": "get_notifications"})).await;
    let list = again.next_json().await;
    assert_eq!(list["type"], "notifications_list", "{list}");
    let mut listed: Vec<String> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["approval", "general", "user_registration"]);
}

async fn an_unknown_dialect_is_refused_before_the_upgrade() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let alice = hub.user("alice", Role::Client).await;
    let err = Ws::connect_with(&url(&hub, &alice, "&dialect=seed009"), &[])
        .await
        .err()
        .expect("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 400),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

crate::trials! {
    both: [
        seed002_hears_of_an_assignment_and_a_custom_notification,
        seed003_commands_and_their_confirmations,
        seed004_registrations_reach_super_admins_and_inbox_changes_follow,
        seed004_calls_a_registration_user_registration_and_keeps_other_types,
    ],
    tests: [
        an_unknown_dialect_is_refused_before_the_upgrade,
    ],
    sync: [],
}
