use super::*;

/// Every node keeps active users in memory between requests, and a write on one node drops
/// them on every node before anyone can use the stale copy: a deactivation, a demotion and a
/// profile change made through node 0 hold on node 1 at once, though node 1 had just served
/// each user from its cache.
pub(super) async fn a_user_change_on_one_node_holds_at_once_on_the_other() {
    let backend = postgres();
    let c = Cluster::start(&backend, 2, &[]).await;
    let admin = c.user("boss", Role::Admin).await;
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(c.user(&format!("u{i}"), Role::Admin).await);
    }
    let me = |node: usize, who: &User| {
        let who = who.clone();
        let c = &c;
        async move {
            c.call(node, reqwest::Method::GET, &who, "/api/users/me/", None)
                .await
        }
    };
    // Node 1 reads each user once, then serves them from memory.
    for u in &users {
        assert_eq!(me(1, u).await.0, 200);
    }
    let hits = || c.counter_with(1, "tickethub_user_cache_total", &["result=\"hit\""]);
    let before = hits().await;
    for u in &users {
        let (status, body) = me(1, u).await;
        assert_eq!((status, body["email"].clone()), (200, Value::Null));
    }
    let after = hits().await;
    assert!(after >= before + users.len() as f64, "{before} -> {after}");

    for (i, u) in users.iter().enumerate() {
        let path = format!("/api/users/{}/", u.id.0);
        let change = match i % 3 {
            0 => json!({"is_active": false}),
            1 => json!({"role": "client"}),
            _ => json!({"email": format!("u{i}@example.com")}),
        };
        let (status, body) = c
            .call(0, reqwest::Method::PATCH, &admin, &path, Some(change))
            .await;
        assert_eq!(status, 200, "{body}");
        // The very next request on the other node sees the change.
        let (status, body) = me(1, u).await;
        match i % 3 {
            0 | 1 => assert_eq!(status, 401, "user {i} kept access on node 1: {body}"),
            _ => assert_eq!(
                (status, body["email"].as_str()),
                (200, Some(format!("u{i}@example.com").as_str()))
            ),
        }
        // A demoted admin's new token is a client's on either node.
        if i % 3 == 1 {
            let mut demoted = u.clone();
            demoted.role = Role::Client;
            demoted.token_version += 1;
            for node in 0..2 {
                let (status, _) = c
                    .call(
                        node,
                        reqwest::Method::GET,
                        &demoted,
                        "/api/admin/analytics",
                        None,
                    )
                    .await;
                assert_eq!(status, 403, "node {node}");
            }
        }
    }
    // Every change was confirmed by the other node before its call answered.
    assert_eq!(
        c.counter(0, "tickethub_bus_confirm_timeouts_total").await,
        0.0
    );
}

/// While the bus is down a node cannot hear the others' writes, so it reads users from the
/// database: a deactivation made on node 0 during the outage holds on node 1 at once. Once
/// the bus is back, node 1 serves from memory again.
pub(super) async fn a_node_that_cannot_hear_the_bus_reads_users_from_the_database() {
    let backend = postgres();
    let mut c = Cluster::start(&backend, 2, &[]).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let bob = c.user("bob", Role::Client).await;
    for who in [&alice, &bob] {
        let (status, _) = c
            .call(1, reqwest::Method::GET, who, "/api/users/me/", None)
            .await;
        assert_eq!(status, 200);
    }
    c.redis.kill().await;
    c.bus_is(0, "disconnected").await;
    c.bus_is(1, "disconnected").await;
    let path = format!("/api/users/{}/", alice.id.0);
    let (status, body) = c
        .call(
            0,
            reqwest::Method::PATCH,
            &admin,
            &path,
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = c
        .call(1, reqwest::Method::GET, &alice, "/api/users/me/", None)
        .await;
    assert_eq!(status, 401, "a deactivation unheard on the bus kept access");
    c.redis.restart().await;
    c.bus_is(1, "connected").await;
    let hits = || c.counter_with(1, "tickethub_user_cache_total", &["result=\"hit\""]);
    eventually("node 1 serves bob from memory again", || async {
        let before = hits().await;
        for _ in 0..2 {
            let (status, _) = c
                .call(1, reqwest::Method::GET, &bob, "/api/users/me/", None)
                .await;
            assert_eq!(status, 200);
        }
        hits().await > before
    })
    .await;
}

/// Memberships and preferences come from memory too, and a change on one node holds on the
/// other at once: a member removed through node 0 can no longer file a ticket in the project
/// through node 1, even though node 1 held the membership; a switch turned off through node 0
/// holds for the very next send through node 1.
pub(super) async fn a_membership_or_preference_change_on_one_node_holds_at_once_on_the_other() {
    let backend = postgres();
    let c = Cluster::start(&backend, 2, &[]).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c
        .store
        .create_user(tickethub_actors::domain::NewUser {
            display_name: "Alice".into(),
            email: Some("alice@example.test".into()),
            ..tickethub_actors::domain::NewUser::new("alice", Role::Client, "x")
        })
        .await
        .unwrap();
    let project = c
        .store
        .create_project("MEM", "Members", &[alice.id])
        .await
        .unwrap()
        .id
        .0;
    let file = |title: &'static str| {
        let c = &c;
        let alice = alice.clone();
        async move {
            c.call(
                1,
                reqwest::Method::POST,
                &alice,
                "/api/tickets/",
                Some(json!({"project": project, "title": title, "description": "d"})),
            )
            .await
        }
    };
    assert_eq!(file("first").await.0, 201);
    let hits = || c.counter_with(1, "tickethub_user_cache_total", &["result=\"hit\""]);
    let before = hits().await;
    assert_eq!(file("second").await.0, 201);
    assert!(
        hits().await >= before + 2.0,
        "the caller and the membership from memory"
    );
    let (status, body) = c
        .call(
            0,
            reqwest::Method::PATCH,
            &admin,
            &format!("/api/projects/{project}/"),
            Some(json!({"member_ids": []})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = file("after removal").await;
    assert_eq!(
        status, 400,
        "a removed member filed a ticket through node 1: {body}"
    );

    // Preferences: an email per send while the switch is on, none once it is off.
    let emails = || async {
        db_number(
            &c.db,
            &format!(
                "SELECT COUNT(*) FROM deliveries d JOIN notifications n ON n.id = d.notification_id \
                 WHERE n.user_id = {} AND d.channel = 'email'",
                alice.id.0
            ),
        )
        .await
    };
    let send = |title: &'static str| {
        let c = &c;
        let admin = admin.clone();
        let to = alice.id.0;
        async move {
            let (status, body) = c
                .call(
                    1,
                    reqwest::Method::POST,
                    &admin,
                    "/api/notifications/send/",
                    Some(json!({"user_ids": [to], "title": title, "message": "m", "channels": ["websocket", "email"]})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    };
    send("one").await;
    send("two").await;
    assert_eq!(emails().await, 2);
    let (status, body) = c
        .call(
            0,
            reqwest::Method::PUT,
            &alice,
            "/api/notifications/preferences/",
            Some(json!({"channels": {"email": false}})),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    send("three").await;
    assert_eq!(
        emails().await,
        2,
        "the switch turned off on node 0 held on node 1"
    );
    assert_eq!(
        c.counter(0, "tickethub_bus_confirm_timeouts_total").await,
        0.0
    );
}

/// An inbox change made on one node while Redis is away reaches the user's tab on another
/// node once it is back, on the same socket: the node that missed the message tells its
/// sockets the changes made while the bus was away. The periodic reconciliation and the
/// catch-ups during the outage are pushed out of the way, so only the gap's own healing may
/// tell them.
pub(super) async fn inbox_changes_made_while_the_bus_was_away_reach_the_tabs() {
    let backend = postgres();
    let mut c = Cluster::start(&backend, 2, crate::nodes::ONLY_THE_RECONNECT_HEALS).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut tab = c.connect(1, &alice, None).await;
    for i in 0..3 {
        c.send(0, &admin, &alice, &format!("n{i}")).await;
    }
    let ids: Vec<i64> = tab
        .notifications(3)
        .await
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();

    c.redis.kill().await;
    c.bus_is(1, "disconnected").await;
    // Through node 0, where alice has no socket: only the bus could tell node 1.
    let read = format!("/api/notifications/{}/mark-as-read/", ids[0]);
    c.post(0, &alice, &read, json!({}), 200).await;
    let delete = format!("/api/notifications/{}/", ids[1]);
    let (status, _) = c
        .call(0, reqwest::Method::DELETE, &alice, &delete, None)
        .await;
    assert_eq!(status, 204);
    c.redis.restart().await;

    let mut heard = std::collections::BTreeSet::new();
    while heard.len() < 2 {
        let v = tab.next_of("notification_updated").await;
        if v["id"] == ids[0] && v["is_read"] == true {
            heard.insert("read");
        }
        if v["id"] == ids[1] && v["deleted"] == true {
            heard.insert("deleted");
        }
    }
    // The bus carries live changes again.
    let read = format!("/api/notifications/{}/mark-as-read/", ids[2]);
    c.post(0, &alice, &read, json!({}), 200).await;
    loop {
        let v = tab.next_of("notification_updated").await;
        if v["id"] == ids[2] && v["is_read"] == true {
            break;
        }
    }
}

/// A node that answered a read but could not publish it (its link to Redis was cut), and was
/// then killed, owed the other nodes a resync that died with it: once it starts again, it asks
/// every node to resync, and the tab on the other node hears the read.
pub(super) async fn a_change_a_killed_node_never_published_reaches_the_tabs_once_it_restarts() {
    let backend = postgres();
    let mut c = Cluster::start(&backend, 2, &["--bus-reconcile-interval", "3600"]).await;
    // Node 0 reaches Redis through a proxy of its own, which the test cuts.
    let proxy = Proxy::start(format!("127.0.0.1:{}", c.redis.port)).await;
    c.nodes[0].set_arg("--redis-url", &format!("redis://127.0.0.1:{}", proxy.port));
    c.nodes[0].kill().await;
    c.nodes[0].restart().await;
    c.bus_is(0, "connected").await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut tab = c.connect(1, &alice, None).await;
    c.send(1, &admin, &alice, "n0").await;
    let id = tab.notifications(1).await[0]["id"].as_i64().unwrap();

    proxy.down();
    c.bus_is(0, "disconnected").await;
    // Through node 0, where alice has no socket: only node 0 could tell node 1.
    let read = format!("/api/notifications/{id}/mark-as-read/");
    c.post(0, &alice, &read, json!({}), 200).await;
    c.nodes[0].kill().await;
    proxy.up();
    c.nodes[0].restart().await;

    loop {
        let v = tab.next_of("notification_updated").await;
        if v["id"] == id && v["is_read"] == true {
            break;
        }
    }
}
