//! The inbox: REST operations and pagination, isolation between users, WebSocket commands and
//! `notification_updated` across a user's sockets, registrations and admin sends.

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::harness::{Backend, TestHub};

/// Sends `n` notifications of a type to `to` as `admin`.
async fn send(hub: &TestHub, admin: &User, to: &User, n: usize, kind: &str) {
    for i in 0..n {
        hub.send(
            admin,
            &[to],
            json!({"title": format!("T{i}"), "message": format!("M{i}"), "notification_type": kind}),
        )
        .await;
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect()
}

async fn rest_inbox_operations_and_pagination(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    send(&hub, &admin, &alice, 18, "deploy").await;
    send(&hub, &admin, &alice, 7, "outage").await;

    let p1 = hub.get_as(&alice, "/api/notifications/", 200).await;
    assert_eq!(p1["count"], 25);
    assert_eq!(ids(&p1).len(), 20);
    assert_eq!(p1["results"][0]["seq"], 25);
    assert_eq!(p1["results"][0]["notification_type"], "outage");
    assert!(p1["next"]
        .as_str()
        .unwrap()
        .ends_with("/api/notifications/?page=2"));
    let p2 = hub.get_as(&alice, "/api/notifications/?page=2", 200).await;
    assert_eq!(ids(&p2).len(), 5);
    assert!(p2["previous"]
        .as_str()
        .unwrap()
        .ends_with("/api/notifications/"));
    hub.get_as(&alice, "/api/notifications/?page=3", 404).await;
    let small = hub
        .get_as(
            &alice,
            "/api/notifications/?page_size=5&notification_type=deploy&page=2",
            200,
        )
        .await;
    assert_eq!(small["count"], 18);
    let next = small["next"].as_str().unwrap();
    assert!(
        next.contains("page_size=5")
            && next.contains("notification_type=deploy")
            && next.contains("page=3"),
        "{next}"
    );

    let count = hub
        .get_as(&alice, "/api/notifications/unread_count/", 200)
        .await;
    assert_eq!(
        count,
        json!({"count": 25, "by_type": {"deploy": 18, "outage": 7}})
    );
    assert_eq!(
        hub.get_as(&alice, "/api/notifications/unread-count/", 200)
            .await["count"],
        25
    );

    let first = ids(&p1)[0];
    let read = hub
        .post_as(
            &alice,
            &format!("/api/notifications/{first}/mark_as_read/"),
            json!({}),
            200,
        )
        .await;
    assert_eq!(read["message"], "Notification marked as read");
    assert_eq!(read["notification"]["is_read"], true);
    assert!(read["notification"]["read_at"].is_string());
    assert_eq!(
        hub.get_as(&alice, "/api/notifications/?is_read=true", 200)
            .await["count"],
        1
    );
    assert_eq!(
        hub.get_as(&alice, "/api/notifications/unread/", 200).await["count"],
        24
    );
    hub.get_as(&alice, "/api/notifications/?is_read=maybe", 400)
        .await;
    hub.get_as(&alice, "/api/notifications/?ticket=abc", 400)
        .await;
    let unread = hub
        .post_as(
            &alice,
            &format!("/api/notifications/{first}/mark-as-unread/"),
            json!({}),
            200,
        )
        .await;
    assert_eq!(unread["notification"]["is_read"], false);
    assert!(unread["notification"]["read_at"].is_null());

    let all = hub
        .post_as(
            &alice,
            "/api/notifications/mark_all_as_read/?notification_type=outage",
            json!({}),
            200,
        )
        .await;
    assert_eq!(
        all,
        json!({"message": "7 notification(s) marked as read", "count": 7})
    );
    let count = hub
        .get_as(&alice, "/api/notifications/unread_count/", 200)
        .await;
    assert_eq!(count, json!({"count": 18, "by_type": {"deploy": 18}}));

    let one = hub
        .get_as(&alice, &format!("/api/notifications/{first}/"), 200)
        .await;
    assert_eq!(one["id"], first);
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/api/notifications/{first}/"),
            Some(&hub.token(&alice)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    hub.get_as(&alice, &format!("/api/notifications/{first}/"), 404)
        .await;
    assert_eq!(
        hub.get_as(&alice, "/api/notifications/", 200).await["count"],
        24
    );
    let (status, body) = hub
        .call(
            reqwest::Method::DELETE,
            "/api/notifications/delete-all/",
            Some(&hub.token(&alice)),
            None,
        )
        .await;
    assert_eq!((status, body["count"].clone()), (200, json!(24)));
    assert_eq!(
        hub.get_as(&alice, "/api/notifications/", 200).await["count"],
        0
    );
    // New notifications keep counting seq where the deleted ones left off.
    send(&hub, &admin, &alice, 1, "deploy").await;
    assert_eq!(
        hub.get_as(&alice, "/api/notifications/", 200).await["results"][0]["seq"],
        26
    );
}

async fn nobody_touches_another_users_notifications(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let mallory = hub.user("mallory", Role::Client).await;
    send(&hub, &admin, &alice, 1, "secret").await;
    let id = ids(&hub.get_as(&alice, "/api/notifications/", 200).await)[0];
    let token = hub.token(&mallory);
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/notifications/{id}/")),
        (
            reqwest::Method::POST,
            format!("/api/notifications/{id}/mark_as_read/"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/notifications/{id}/mark_as_unread/"),
        ),
        (reqwest::Method::DELETE, format!("/api/notifications/{id}/")),
        (
            reqwest::Method::GET,
            format!("/api/notifications/{id}/deliveries/"),
        ),
    ] {
        let (status, body) = hub.call(method.clone(), &path, Some(&token), None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body, json!({"detail": "Not found."}));
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
    hub.post_as(
        &mallory,
        "/api/notifications/mark_all_as_read/",
        json!({}),
        200,
    )
    .await;
    assert_eq!(
        hub.get_as(&mallory, "/api/notifications/", 200).await["count"],
        0
    );
    // Alice's notification is untouched.
    let mine = hub
        .get_as(&alice, &format!("/api/notifications/{id}/"), 200)
        .await;
    assert_eq!(mine["is_read"], false);
    // Over the socket too.
    let mut ws = hub.connect(&mallory).await;
    for frame in [
        json!({"type": "mark_read", "notification_id": id}),
        json!({"type": "delete_notification", "notification_id": id}),
    ] {
        ws.send_json(frame).await;
        let reply = ws.next_json().await;
        assert_eq!(reply["success"], false, "{reply}");
    }
    ws.send_json(json!({"type": "get_notifications"})).await;
    let list = ws.next_of("notifications_list").await;
    assert_eq!(list["total"], 0);
    let mine = hub
        .get_as(&alice, &format!("/api/notifications/{id}/"), 200)
        .await;
    assert_eq!(mine["is_read"], false);
    // Unauthenticated is 401, never data.
    let (status, _) = hub.get("/api/notifications/", None).await;
    assert_eq!(status, 401);
}

async fn socket_commands_and_updates_across_tabs(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let mut tab1 = hub.connect(&alice).await;
    let mut tab2 = hub.connect(&alice).await;
    send(&hub, &admin, &alice, 3, "deploy").await;
    let live1 = tab1.notifications(3).await;
    let live2 = tab2.notifications(3).await;
    assert_eq!(live1, live2);
    let ids: Vec<i64> = live1.iter().map(|n| n["id"].as_i64().unwrap()).collect();

    tab1.send_json(json!({"type": "get_notifications", "limit": 2}))
        .await;
    let list = tab1.next_of("notifications_list").await;
    assert_eq!(list["total"], 3);
    assert_eq!(list["unread_count"], 3);
    assert_eq!(list["notifications"].as_array().unwrap().len(), 2);
    assert_eq!(list["notifications"][0]["seq"], 3);
    tab1.send_json(json!({"type": "get_notifications", "before_seq": 2}))
        .await;
    let older = tab1.next_of("notifications_list").await;
    assert_eq!(older["notifications"][0]["seq"], 1);

    // A change on one tab is pushed to the other.
    tab1.send_json(json!({"type": "mark_read", "notification_id": ids[0]}))
        .await;
    assert_eq!(
        tab1.next_json().await,
        json!({"type": "notification_marked_read", "notification_id": ids[0], "success": true})
    );
    assert_eq!(
        tab2.next_json().await,
        json!({"type": "notification_updated", "id": ids[0], "is_read": true})
    );
    tab1.send_json(json!({"type": "mark_unread", "notification_id": ids[0]}))
        .await;
    assert_eq!(tab1.next_json().await["type"], "notification_marked_unread");
    assert_eq!(
        tab2.next_json().await,
        json!({"type": "notification_updated", "id": ids[0], "is_read": false})
    );

    // A change over REST reaches both tabs.
    hub.post_as(
        &alice,
        &format!("/api/notifications/{}/mark_as_read/", ids[1]),
        json!({}),
        200,
    )
    .await;
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(
            tab.next_json().await,
            json!({"type": "notification_updated", "id": ids[1], "is_read": true})
        );
    }
    tab2.send_json(json!({"type": "mark_all_read"})).await;
    assert_eq!(
        tab2.next_json().await,
        json!({"type": "all_marked_read", "count": 2})
    );
    // The other tab hears of the bulk change as one frame, however many it touched.
    assert_eq!(
        tab1.next_json().await,
        json!({"type": "all_marked_read", "count": 2, "notification_type": null, "ticket": null})
    );
    tab1.send_json(json!({"type": "delete_notification", "notification_id": ids[2]}))
        .await;
    assert_eq!(
        tab1.next_json().await,
        json!({"type": "notification_deleted", "notification_id": ids[2], "success": true})
    );
    assert_eq!(
        tab2.next_json().await,
        json!({"type": "notification_updated", "id": ids[2], "deleted": true})
    );
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            "/api/notifications/delete-all/",
            Some(&hub.token(&alice)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(
            tab.next_json().await,
            json!({"type": "notifications_cleared", "count": 2})
        );
    }

    // Bad commands get error frames; the socket stays.
    tab1.send_json(json!({"type": "mark_read"})).await;
    assert_eq!(tab1.next_json().await["code"], "bad_request");
    tab1.send_json(json!({"type": "get_notifications", "limit": 1000}))
        .await;
    assert_eq!(tab1.next_json().await["code"], "bad_request");
    tab1.send_json(json!({"type": "send_notification", "user_ids": [alice.id.0], "title": "x", "message": "y"})).await;
    assert_eq!(tab1.next_json().await["code"], "forbidden");
    tab1.roundtrip().await;
}

async fn registration_tells_super_admins_only(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let root = hub.user_with("root", Role::Admin, true).await;
    let plain = hub.user("plain", Role::Admin).await;
    let mut root_ws = hub.connect(&root).await;
    let mut plain_ws = hub.connect(&plain).await;
    let (status, user) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "newbie", "password": "long enough", "email": "n@example.test", "display_name": "New Bie"}),
        )
        .await;
    assert_eq!(status, 201);
    let n = &root_ws.notifications(1).await[0];
    assert_eq!(n["notification_type"], "user_registered");
    assert_eq!(
        n["message"],
        "A new client has registered: New Bie (newbie)"
    );
    assert_eq!(n["data"]["user_id"], user["id"]);
    assert_eq!(n["data"]["user_email"], "n@example.test");
    assert!(n["ticket"].is_null());
    plain_ws.roundtrip().await;
    assert_eq!(
        hub.get_as(&plain, "/api/notifications/", 200).await["count"],
        0
    );
    // Registration emails the super admin.
    let nid = n["id"].as_i64().unwrap();
    let d = hub
        .get_as(&root, &format!("/api/notifications/{nid}/deliveries/"), 200)
        .await;
    assert_eq!(d["deliveries"][1]["channel"], "email");
}

async fn admins_send_to_users_or_a_role(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let d1 = hub.user("d1", Role::Developer).await;
    let d2 = hub.user("d2", Role::Developer).await;
    let client = hub.user("client", Role::Client).await;
    let mut d1_ws = hub.connect(&d1).await;
    let mut client_ws = hub.connect(&client).await;
    let res = hub
        .post_as(
            &admin,
            "/api/notifications/send/",
            json!({"role": "developer", "title": "Freeze", "message": "Code freeze at 5", "notification_type": "announcement", "data": {"until": "17:00"}, "link": "/freeze"}),
            201,
        )
        .await;
    assert_eq!(res, json!({"success": true, "count": 2}));
    let n = &d1_ws.notifications(1).await[0];
    assert_eq!(n["notification_type"], "announcement");
    assert_eq!(n["title"], "Freeze");
    assert_eq!(n["data"], json!({"until": "17:00"}));
    assert_eq!(n["action_url"], "/freeze");
    assert_eq!(
        hub.get_as(&d2, "/api/notifications/", 200).await["count"],
        1
    );
    client_ws.roundtrip().await;
    assert_eq!(
        hub.get_as(&client, "/api/notifications/", 200).await["count"],
        0
    );

    // Over the admin's socket.
    let mut admin_ws = hub.connect(&admin).await;
    admin_ws
        .send_json(json!({"type": "send_notification", "user_ids": [client.id.0, 999_999], "title": "Hi", "message": "Hello", "notification_type": "general"}))
        .await;
    assert_eq!(
        admin_ws.next_of("notification_sent").await,
        json!({"type": "notification_sent", "success": true, "count": 1})
    );
    assert_eq!(client_ws.notifications(1).await[0]["title"], "Hi");

    for bad in [
        json!({"title": "x", "message": "y"}),
        json!({"role": "wizard", "title": "x", "message": "y"}),
        json!({"user_ids": [d1.id.0], "role": "client", "title": "x", "message": "y"}),
        json!({"user_ids": [d1.id.0], "title": "", "message": "y"}),
        json!({"user_ids": [d1.id.0], "title": "x", "message": "y", "data": [1]}),
        json!({"user_ids": [d1.id.0], "title": "x", "message": "y", "notification_type": "bad type!"}),
    ] {
        hub.post_as(&admin, "/api/notifications/send/", bad, 400)
            .await;
    }
    hub.post_as(
        &d1,
        "/api/notifications/send/",
        json!({"role": "client", "title": "x", "message": "y"}),
        403,
    )
    .await;
}

/// An announcement in the app only reads no user rows, only which recipients are active; one
/// that also goes by email reads their rows and addresses. Both leave out the same users.
async fn a_send_leaves_out_inactive_and_unknown_users(backend: Backend) {
    let smtp = crate::fakes::Smtp::start().await;
    let url = smtp.url();
    let hub = TestHub::start_with(&backend, |c| c.channels.email.smtp_url = Some(url)).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let gone = hub.user("gone", Role::Client).await;
    let set_active = |active: bool| {
        let (hub, admin, gone) = (&hub, &admin, &gone);
        async move {
            hub.call(
                reqwest::Method::PATCH,
                &format!("/api/users/{}/", gone.id.0),
                Some(&hub.token(admin)),
                Some(json!({"is_active": active})),
            )
            .await
        }
    };
    assert_eq!(set_active(false).await.0, 200);
    let mut ann_ws = hub.connect(&ann).await;
    for (title, channels) in [
        ("in the app", json!(["websocket"])),
        ("by email too", json!(["websocket", "email"])),
    ] {
        let res = hub
            .post_as(
                &admin,
                "/api/notifications/send/",
                json!({"user_ids": [gone.id.0, 999_999, ann.id.0, ann.id.0], "title": title, "message": "m", "channels": channels}),
                201,
            )
            .await;
        assert_eq!(res, json!({"success": true, "count": 1}), "{title}");
        assert_eq!(ann_ws.notifications(1).await[0]["title"], title);
    }
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].to, ["ann@example.test"]);
    assert_eq!(
        hub.get_as(&ann, "/api/notifications/", 200).await["count"],
        2
    );
    assert_eq!(set_active(true).await.0, 200);
    // The deactivation ended the tokens the user held; a new login works again.
    hub.get_as(&gone, "/api/notifications/", 401).await;
    let gone = hub.store.user_by_id(gone.id).await.unwrap().unwrap();
    assert_eq!(
        hub.get_as(&gone, "/api/notifications/", 200).await["count"],
        0
    );
}

async fn marking_hundreds_read_is_one_frame_and_closes_no_tab(backend: Backend) {
    // Past the 256 frames a socket's queue holds: one frame per id would close the other tab.
    const UNREAD: usize = 600;
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let ids: Vec<i64> = vec![alice.id.0; UNREAD];
    for chunk in ids.chunks(1) {
        hub.send_ids(&admin, chunk, json!({"title": "t", "message": "m"}))
            .await;
    }
    let mut tab1 = hub.connect(&alice).await;
    let mut tab2 = hub.connect(&alice).await;
    assert_eq!(tab1.replayed.len(), UNREAD);
    tab2.send_json(json!({"type": "mark_all_read"})).await;
    assert_eq!(tab2.next_of("all_marked_read").await["count"], UNREAD);
    let frame = tab1.next_json().await;
    assert_eq!(frame["type"], "all_marked_read", "{frame}");
    assert_eq!(frame["count"], UNREAD);
    // The other tab is still open, and so is the one that asked.
    tab1.roundtrip().await;
    tab2.roundtrip().await;
    // The same over REST: one frame to each tab, both stay open.
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            "/api/notifications/delete-all/",
            Some(&hub.token(&alice)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for tab in [&mut tab1, &mut tab2] {
        let v = tab.next_json().await;
        assert_eq!(
            (v["type"].as_str(), v["count"].as_u64()),
            (Some("notifications_cleared"), Some(UNREAD as u64))
        );
        tab.roundtrip().await;
    }
}

async fn preferences_round_trip_as_they_were_read() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let alice = hub.user("alice", Role::Client).await;
    let token = hub.token(&alice);
    let (status, _) = hub
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences/",
            Some(&token),
            Some(json!({"channels": {"whatsapp": false}, "types": {"ticket_created": {"email": false}}})),
        )
        .await;
    assert_eq!(status, 200);
    // What GET answers, read-only fields included, goes back with PUT unchanged.
    let read = hub
        .get_as(&alice, "/api/notifications/preferences/", 200)
        .await;
    assert!(read["notification_types"].is_array());
    let (status, written) = hub
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences/",
            Some(&token),
            Some(read.clone()),
        )
        .await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(
        hub.get_as(&alice, "/api/notifications/preferences/", 200)
            .await,
        read
    );
    // A field that is neither writable nor read-only is still an error, not silently dropped.
    let (status, res) = hub
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences/",
            Some(&token),
            Some(json!({"chanels": {"email": false}})),
        )
        .await;
    assert_eq!(status, 400, "{res}");
}

async fn links_are_relative_unless_the_public_url_is_set() {
    // A client's `Host` and `X-Forwarded-*` are its own words, from a trusted proxy too.
    let spoofed = |hub: &TestHub, user: &User| {
        let req = hub
            .http
            .get(hub.url("/api/notifications/?page_size=1"))
            .bearer_auth(hub.token(user))
            .header("host", "evil.example")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example");
        async move {
            let page: Value = req.send().await.unwrap().json().await.unwrap();
            (
                page["next"].as_str().unwrap().to_owned(),
                page["results"][0]["id"].clone(),
            )
        }
    };
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    send(&hub, &admin, &admin, 2, "deploy").await;
    let (next, _) = spoofed(&hub, &admin).await;
    assert_eq!(next, "/api/notifications/?page_size=1&page=2");
    // With `--public-url`, links are absolute at that address, whatever the request says.
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.public_url = Some("https://tickets.example.com/".into());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    send(&hub, &admin, &admin, 2, "deploy").await;
    let (next, _) = spoofed(&hub, &admin).await;
    assert_eq!(
        next,
        "https://tickets.example.com/api/notifications/?page_size=1&page=2"
    );
}

crate::trials! {
    both: [
        marking_hundreds_read_is_one_frame_and_closes_no_tab,
        rest_inbox_operations_and_pagination,
        nobody_touches_another_users_notifications,
        socket_commands_and_updates_across_tabs,
        registration_tells_super_admins_only,
        admins_send_to_users_or_a_role,
        a_send_leaves_out_inactive_and_unknown_users,
    ],
    tests: [
        preferences_round_trip_as_they_were_read,
        links_are_relative_unless_the_public_url_is_set,
    ],
    sync: [],
}
