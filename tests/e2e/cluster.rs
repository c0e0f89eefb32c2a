//! Several hub processes on one database and one Redis behave as one hub.

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::fakes::{Gate, Http, Reply};
use crate::harness::{db_number, eventually, send_body, Backend, Ended, Proxy, TestHub, Ws, SEND};
use crate::nodes::Cluster;
mod redis;
use redis::*;
mod changes;
use changes::*;
mod clocks;
use clocks::*;
mod presence;
use presence::*;

async fn a_user_on_one_node_hears_of_commits_on_another(backend: Backend) {
    let (a, b) = TestHub::pair_on_redis(&backend).await;
    for hub in [&a, &b] {
        let (status, ready) = hub.get("/readyz", None).await;
        assert_eq!(status, 200);
        assert_eq!(ready["bus"], "connected");
    }
    let admin = a.user("boss", Role::Admin).await;
    let alice = a.user("alice", Role::Client).await;
    // Alice is connected to node B only; the admin sends through both nodes in turn.
    let mut ws = b.connect(&alice).await;
    const TOTAL: i64 = 20;
    for i in 0..TOTAL {
        let via = if i % 2 == 0 { &a } else { &b };
        let (status, _) = via
            .try_send(&admin, &[&alice], json!({ "title": format!("n{i}") }))
            .await;
        assert_eq!(status, 201);
    }
    let live = ws.notifications(TOTAL as usize).await;
    let seqs: Vec<i64> = live.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=TOTAL).collect::<Vec<_>>());
    assert!(live.iter().all(|n| n["replayed"] == false));
    assert_eq!(live[0]["title"], "n0");
}

async fn a_hub_without_its_redis_does_not_start() {
    let err = tickethub::Application::build({
        let mut c = crate::harness::test_config("sqlite::memory:");
        c.redis_url = Some("redis://127.0.0.1:1".into());
        c
    })
    .await
    .err()
    .expect("no Redis there");
    assert!(err.to_string().starts_with("--redis-url"), "{err}");
}

// ---- Several hub processes, one private redis-server ----

/// The PostgreSQL backend (the test is reported ignored when there is none).
fn postgres() -> Backend {
    Backend::postgres()
}

async fn a_redis_restart_heals_without_any_client_reconnecting() {
    let backend = postgres();
    // The periodic reconciliation and the outage's catch-ups are pushed out of the way: only
    // the reconnect may heal.
    let mut c = Cluster::start(&backend, 2, crate::nodes::ONLY_THE_RECONNECT_HEALS).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut ws = c.connect(1, &alice, None).await;
    c.send(0, &admin, &alice, "before").await;
    assert_eq!(ws.notifications(1).await[0]["seq"], 1);

    c.redis.kill().await;
    // Both nodes stay ready and say so honestly.
    for node in 0..2 {
        c.bus_is(node, "disconnected").await;
        let (status, body) = c.ready(node).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("degraded")));
    }
    // Commits go on, and never wait for the bus.
    for i in 0..5 {
        c.send(0, &admin, &alice, &format!("during {i}")).await;
    }
    // Their publishes fail (at once, or when fred's command timeout runs out) and are counted.
    eventually("node 0 counts its lost publishes", || async {
        c.counter(0, "tickethub_bus_publish_failures_total").await >= 5.0
    })
    .await;
    c.redis.restart().await;
    // The same socket, never reconnected, receives everything committed during the outage.
    let healed = ws.notifications(5).await;
    let seqs: Vec<i64> = healed.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
    assert!(healed.iter().all(|n| n["replayed"] == false));
    assert_eq!(healed[0]["title"], "during 0");
    for node in 0..2 {
        c.bus_is(node, "connected").await;
        assert_eq!(c.ready(node).await.1["status"], "ok");
    }
    assert!(c.counter(1, "tickethub_bus_reconnects_total").await >= 1.0);
    // Node 1 read the five for alice in its batched catch-up, not one read per user actor.
    assert!(c.counter(1, "tickethub_catch_up_read_total").await >= 5.0);
    // The bus carries live traffic again, in both directions.
    c.send(0, &admin, &alice, "after").await;
    assert_eq!(ws.notifications(1).await[0]["seq"], 7);
    let mut on_zero = c.connect(0, &alice, Some(7)).await;
    c.send(1, &admin, &alice, "back").await;
    assert_eq!(on_zero.notifications(1).await[0]["seq"], 8);
    assert_eq!(ws.notifications(1).await[0]["seq"], 8);
}

/// While Redis is down, a node catches its connected users up from the database every
/// `--bus-outage-poll-ms`: a commit on another node reaches the socket before Redis is back,
/// with an inbox change after it, and nothing twice once the bus returns.
async fn a_node_without_its_bus_still_delivers_other_nodes_commits() {
    let backend = postgres();
    let mut c = Cluster::start(
        &backend,
        2,
        &[
            "--bus-reconcile-interval",
            "3600",
            "--bus-outage-poll-ms",
            "200",
        ],
    )
    .await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut ws = c.connect(1, &alice, None).await;
    c.send(0, &admin, &alice, "before").await;
    assert_eq!(ws.notifications(1).await[0]["seq"], 1);
    const PASSES: &str = "tickethub_bus_catch_ups_total";
    const OUTAGE: &[&str] = &["reason=\"outage\""];
    assert_eq!(
        c.counter_with(1, PASSES, OUTAGE).await,
        0.0,
        "no outage pass while the bus is up"
    );

    c.redis.kill().await;
    c.bus_is(1, "disconnected").await;
    // Through node 0, where alice has no socket: only the database can tell node 1.
    for i in 0..3 {
        c.send(0, &admin, &alice, &format!("during {i}")).await;
    }
    let during = ws.notifications(3).await;
    let seqs: Vec<i64> = during.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    assert_eq!(during[0]["title"], "during 0");
    let read = format!("/api/notifications/{}/mark-as-read/", during[0]["id"]);
    c.post(0, &alice, &read, json!({}), 200).await;
    loop {
        let v = ws.next_of("notification_updated").await;
        if v["id"] == during[0]["id"] && v["is_read"] == true {
            break;
        }
    }
    // All of it while Redis was still down.
    assert_eq!(c.ready(1).await.1["bus"], "disconnected");
    assert!(c.counter_with(1, PASSES, OUTAGE).await >= 1.0);

    c.redis.restart().await;
    c.bus_is(1, "connected").await;
    // The resync after the gap repeats nothing: the next frame is the next commit.
    c.send(0, &admin, &alice, "after").await;
    let after = ws.notifications(1).await;
    assert_eq!(
        (after[0]["seq"].as_i64(), after[0]["title"].as_str()),
        (Some(5), Some("after"))
    );
}

async fn inbox_changes_reach_the_tabs_on_every_node() {
    let backend = postgres();
    let c = Cluster::start(&backend, 2, &[]).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut tab0 = c.connect(0, &alice, None).await;
    let mut tab1 = c.connect(1, &alice, None).await;
    for i in 0..4 {
        c.send(0, &admin, &alice, &format!("n{i}")).await;
    }
    let ids: Vec<i64> = tab0
        .notifications(4)
        .await
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    tab1.notifications(4).await;

    // Read in one tab: the tab on the other node hears of it.
    tab0.send_json(json!({"type": "mark_read", "notification_id": ids[0]}))
        .await;
    assert_eq!(
        tab0.next_of("notification_marked_read").await["success"],
        true
    );
    let v = tab1.next_of("notification_updated").await;
    assert_eq!(
        (v["id"].as_i64(), v["is_read"].as_bool()),
        (Some(ids[0]), Some(true))
    );
    // Unread over REST on node 1: both tabs hear of it.
    c.post(
        1,
        &alice,
        &format!("/api/notifications/{}/mark_as_unread/", ids[0]),
        json!({}),
        200,
    )
    .await;
    for tab in [&mut tab0, &mut tab1] {
        let v = tab.next_of("notification_updated").await;
        assert_eq!(
            (v["id"].as_i64(), v["is_read"].as_bool()),
            (Some(ids[0]), Some(false))
        );
    }
    // Delete in the tab on node 1: the tab on node 0 hears of it.
    tab1.send_json(json!({"type": "delete_notification", "notification_id": ids[1]}))
        .await;
    assert_eq!(tab1.next_of("notification_deleted").await["success"], true);
    let v = tab0.next_of("notification_updated").await;
    assert_eq!(
        (v["id"].as_i64(), v["deleted"].as_bool()),
        (Some(ids[1]), Some(true))
    );
    // Mark all read over REST on node 0: one frame to every tab, whatever the count.
    c.post(
        0,
        &alice,
        "/api/notifications/mark_all_as_read/",
        json!({}),
        200,
    )
    .await;
    for tab in [&mut tab0, &mut tab1] {
        let v = tab.next_of("all_marked_read").await;
        assert_eq!(v["count"], 3, "{v}");
    }
    // Delete all over REST on node 1.
    let (status, _) = c
        .call(
            1,
            reqwest::Method::DELETE,
            &alice,
            "/api/notifications/delete-all/",
            None,
        )
        .await;
    assert_eq!(status, 200);
    for tab in [&mut tab0, &mut tab1] {
        let v = tab.next_of("notifications_cleared").await;
        assert_eq!(v["count"], 3, "{v}");
    }
}

async fn a_ticket_walks_its_lifecycle_with_each_action_on_the_other_node() {
    let backend = postgres();
    let c = Cluster::start(&backend, 2, &[]).await;
    let admin = c.user("boss", Role::Admin).await;
    let client = c.user("carol", Role::Client).await;
    let dev = c.user("dave", Role::Developer).await;
    let project = c
        .store
        .create_project("WEB", "Website", &[client.id, dev.id])
        .await
        .unwrap();
    let mut watcher = c.connect(1, &client, None).await;
    let ticket = c
        .post(
            0,
            &client,
            "/api/tickets/",
            json!({"project": project.id.0, "title": "Down", "description": "d", "priority": "HIGH", "category": "BUG"}),
            201,
        )
        .await;
    let id = ticket["id"].as_i64().unwrap();
    let act = |a: &str| format!("/api/tickets/{id}/{a}/");
    let steps: Vec<(&User, String, Value, &str)> = vec![
        (&admin, act("open_ticket"), json!({}), "OPEN"),
        (
            &admin,
            act("assign"),
            json!({"developer_ids": [dev.id.0]}),
            "ASSIGNED",
        ),
        (&dev, act("start_work"), json!({}), "IN_PROGRESS"),
        (&dev, act("finish_work"), json!({}), "FINISHED"),
        (
            &client,
            act("reject"),
            json!({"reason": "still down"}),
            "REJECTED",
        ),
        (&dev, act("start_work"), json!({}), "IN_PROGRESS"),
        (&dev, act("finish_work"), json!({}), "FINISHED"),
        (&client, act("approve"), json!({}), "APPROVED"),
    ];
    let mut version = ticket["version"].as_i64();
    for (i, (who, path, body, status)) in steps.into_iter().enumerate() {
        // Node 1, then node 0, then node 1…: every action lands on the node that did not
        // take the one before, whose ticket actor last saw an older version.
        let node = (i + 1) % 2;
        let res = c.post(node, who, &path, body, 200).await;
        assert_eq!(res["status"], status, "step {i} on node {node}: {res}");
        if let (Some(before), Some(after)) = (version, res["version"].as_i64()) {
            assert!(after > before, "step {i}: version {before} → {after}");
        }
        version = res["version"].as_i64();
    }
    // A refusal is decided on the latest state too: approved is final on both nodes.
    for node in 0..2 {
        let (status, res) = c
            .call(
                node,
                reqwest::Method::POST,
                &client,
                &act("approve"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 409, "{res}");
        assert_eq!(res["status"], "APPROVED");
    }
    // The client, connected to node 1, heard of every step in order, with no gap.
    let mut seqs = Vec::new();
    while seqs.last()
        != Some(
            &c.store
                .notification_cursor(client.id)
                .await
                .unwrap()
                .last_seq,
        )
    {
        seqs.push(watcher.notifications(1).await[0]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}

async fn a_killed_node_loses_nothing_and_rejoins_when_restarted() {
    let backend = postgres();
    let mut c = Cluster::start(&backend, 2, &[]).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut ws = c.connect(1, &alice, None).await;
    for i in 0..3 {
        c.send(0, &admin, &alice, &format!("n{i}")).await;
    }
    let seen = ws.notifications(3).await;
    let last = seen[2]["seq"].as_i64().unwrap();

    c.nodes[1].kill().await;
    assert_eq!(ws.ended().await, Ended::Dropped);
    for i in 3..6 {
        c.send(0, &admin, &alice, &format!("n{i}")).await;
    }
    // The client reconnects to the surviving node and replays what it missed, once each.
    let mut ws = c.connect(0, &alice, Some(last)).await;
    let replayed: Vec<i64> = ws
        .replayed
        .iter()
        .map(|n| n["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(replayed, vec![4, 5, 6]);

    // The restarted node rejoins the bus: a tab on it hears of commits on the other node.
    c.nodes[1].restart().await;
    c.bus_is(1, "connected").await;
    let mut tab = c.connect(1, &alice, Some(6)).await;
    assert!(tab.replayed.is_empty());
    c.send(0, &admin, &alice, "n6").await;
    assert_eq!(tab.notifications(1).await[0]["seq"], 7);
    assert_eq!(ws.notifications(1).await[0]["seq"], 7);
    c.send(1, &admin, &alice, "n7").await;
    assert_eq!(ws.notifications(1).await[0]["seq"], 8);
}

async fn the_outbox_claims_of_a_dead_node_are_taken_over() {
    let backend = postgres();
    let receiver = Http::start().await;
    let hook = format!("{}/hook", receiver.url());
    // The send timeout outlasts the moment the test holds a request (scaled on a loaded
    // machine); the lease is twice it.
    let timeout = (crate::harness::scaled_ms(2_000) / 1000).max(2);
    let mut c = Cluster::start(
        &backend,
        2,
        &[
            "--webhook-urls",
            &hook,
            "--webhook-allow-private",
            "--webhook-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "--delivery-timeout",
            &timeout.to_string(),
            "--delivery-lease",
            &(2 * timeout).to_string(),
        ],
    )
    .await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let webhook_ids = |requests: &[crate::fakes::Request]| -> Vec<String> {
        requests
            .iter()
            .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
            .collect()
    };
    let sent = |seq: i64| {
        let store = c.store.clone();
        let alice = alice.id;
        async move {
            let (_, list) = store
                .list_notifications(
                    alice,
                    &Default::default(),
                    tickethub_actors::ports::Page {
                        offset: 0,
                        limit: 100,
                    },
                )
                .await
                .unwrap();
            let n = list.iter().find(|n| n.seq == seq).unwrap();
            store.deliveries(alice, n.id).await.unwrap().unwrap()
        }
    };

    // Alive: a slow send (held by the receiver until the test saw it in flight, well within
    // the timeout) is made once, by one node.
    let gate = Gate::new();
    receiver.script([Reply::Hold(gate.clone())]);
    c.send(0, &admin, &alice, "slow").await;
    receiver.wait_for(1).await;
    assert_eq!(sent(1).await[0].status, "SENDING");
    gate.open();
    eventually("the slow webhook is sent", || async {
        sent(1).await.iter().all(|d| d.status == "SENT")
    })
    .await;
    let first = webhook_ids(&receiver.requests());
    assert_eq!(first.len(), 1);
    assert_eq!(sent(1).await[0].attempts, 1);

    // Dead: node 0 claims a delivery, hangs on it, and is killed; node 1 takes it over once
    // the claim's lease runs out, and sends it once.
    c.nodes[1].kill().await;
    receiver.script([Reply::Hold(Gate::new())]);
    c.send(0, &admin, &alice, "orphaned").await;
    receiver.wait_for(2).await;
    assert_eq!(sent(2).await[0].status, "SENDING");
    c.nodes[0].kill().await;
    c.nodes[1].restart().await;
    let requests = receiver.wait_for(3).await;
    let ids = webhook_ids(&requests);
    assert_eq!(
        ids[1], ids[2],
        "the same delivery, sent again by the other node"
    );
    eventually("the orphaned webhook is recorded as sent", || async {
        sent(2).await[0].status == "SENT"
    })
    .await;
    assert_eq!(sent(2).await[0].attempts, 1);
    assert_eq!(receiver.requests().len(), 3);
}

async fn the_periodic_reconciliation_delivers_what_the_bus_never_carried() {
    let backend = postgres();
    let c = Cluster::start(&backend, 1, &["--bus-reconcile-interval", "1"]).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut ws = c.connect(0, &alice, None).await;
    // A hub on the same database with no bus at all: its commits are never published.
    let silent = crate::nodes::Node::start(
        ["--database-url", c.db_url(), "--jwt-secret", &c.secret]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let res = c
        .http
        .post(silent.url(SEND))
        .bearer_auth(c.token(&admin))
        .json(&send_body(&[alice.id.0], json!({"title": "unannounced"})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let n = ws.notifications(1).await;
    assert_eq!(
        (n[0]["seq"].as_i64(), n[0]["title"].as_str()),
        (Some(1), Some("unannounced"))
    );
    assert!(c.counter(0, "tickethub_bus_catch_ups_total").await >= 1.0);
}

async fn a_fan_out_on_one_node_reaches_every_user_on_the_others_in_order() {
    let backend = postgres();
    let c = Cluster::start(&backend, 3, &[]).await;
    let admin = c.user("boss", Role::Admin).await;
    let mut users = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..24 {
        let u = c.user(&format!("u{i}"), Role::Client).await;
        sockets.push(c.connect(i % 3, &u, None).await);
        users.push(u);
    }
    let ids: Vec<i64> = users.iter().map(|u| u.id.0).collect();
    for round in 0..3 {
        c.send_ids(
            round % 3,
            &admin,
            &ids,
            json!({ "title": format!("all {round}") }),
        )
        .await;
    }
    for ws in &mut sockets {
        let got = ws.notifications(3).await;
        let seqs: Vec<i64> = got.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(got[2]["title"], "all 2");
    }
}

async fn an_inbox_change_never_overtakes_the_notification_it_changes() {
    let backend = postgres();
    let c = Cluster::start(&backend, 2, &[]).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let bob = c.user("bob", Role::Client).await;
    // Both on node 1, so that node reads the commit for them in one batch.
    let mut tab = c.connect(1, &alice, None).await;
    let _bob = c.connect(1, &bob, None).await;
    for round in 0..5 {
        c.send_ids(
            0,
            &admin,
            &[alice.id.0, bob.id.0],
            json!({ "title": format!("n{round}") }),
        )
        .await;
        // Read at once, on the node that committed.
        c.post(
            0,
            &alice,
            "/api/notifications/mark_all_as_read/",
            json!({}),
            200,
        )
        .await;
        let first = tab.next_json().await;
        assert_eq!(first["type"], "notification", "round {round}: {first}");
        assert_eq!(first["title"], format!("n{round}"));
        let second = tab.next_json().await;
        assert_eq!(second["type"], "all_marked_read", "round {round}: {second}");
    }
}

/// Alice (a client), Bob (a developer) and Carol (a client), all members of one project.
async fn three_in_a_project(c: &Cluster) -> (User, User, User, i64) {
    let alice = c.user("alice", Role::Client).await;
    let bob = c.user("bob", Role::Developer).await;
    let carol = c.user("carol", Role::Client).await;
    let project = c
        .store
        .create_project("WEB", "Website", &[alice.id, bob.id, carol.id])
        .await
        .unwrap()
        .id
        .0;
    (alice, bob, carol, project)
}

/// Opens a presence socket of a project on a node and returns it with its `presence_state`.
async fn presence_on(c: &Cluster, node: usize, user: &User, project: i64) -> (Ws, Value) {
    let url = format!(
        "ws://{}/ws/projects/{project}/presence/?token={}",
        c.nodes[node].addr,
        c.token(user)
    );
    let mut ws = Ws::connect(&url).await;
    let state = ws.next_json().await;
    assert_eq!(state["type"], "presence_state", "{state}");
    (ws, state)
}

/// The next `user_status` frame: (action, user id).
async fn next_status(ws: &mut Ws) -> (String, i64) {
    loop {
        let v = ws.next_json().await;
        if v["type"] == "user_status" {
            return (
                v["action"].as_str().unwrap().to_owned(),
                v["user_id"].as_i64().unwrap(),
            );
        }
    }
}

async fn a_member_removed_from_a_project_is_dropped_from_its_rooms_on_every_node() {
    let backend = postgres();
    let c = Cluster::start(&backend, 2, &["--presence-grace-ms", "300"]).await;
    let admin = c.user("root", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let bob = c.user("bob", Role::Developer).await;
    let project = c
        .store
        .create_project("WEB", "Website", &[alice.id, bob.id])
        .await
        .unwrap()
        .id
        .0;
    let (mut a0, _) = presence_on(&c, 0, &alice, project).await;
    let (mut b1, _) = presence_on(&c, 1, &bob, project).await;
    assert_eq!(next_status(&mut a0).await, ("joined".into(), bob.id.0));
    let board = format!(
        "ws://{}/ws/projects/{project}/tickets/?token={}",
        c.nodes[1].addr,
        c.token(&bob)
    );
    let mut b1_board = Ws::connect(&board).await;
    assert_eq!(b1_board.next_json().await["type"], "connection_established");
    // Only admins change a project; a member gets 403, anyone else 404.
    let path = format!("/api/projects/{project}/");
    let (status, _) = c
        .call(
            0,
            reqwest::Method::PATCH,
            &alice,
            &path,
            Some(json!({"member_ids": [alice.id.0]})),
        )
        .await;
    assert_eq!(status, 403);
    // The admin removes Bob through node 0: his sockets on node 1 close with 4003.
    let (status, body) = c
        .call(
            0,
            reqwest::Method::PATCH,
            &admin,
            &path,
            Some(json!({"member_ids": [alice.id.0]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["member_ids"], json!([alice.id.0]));
    assert_eq!(b1.close_code().await, 4003);
    assert_eq!(b1_board.close_code().await, 4003);
    // Alice hears that he left, and he cannot come back.
    assert_eq!(next_status(&mut a0).await, ("left".into(), bob.id.0));
    let url = format!(
        "ws://{}/ws/projects/{project}/presence/?token={}",
        c.nodes[0].addr,
        c.token(&bob)
    );
    assert_eq!(Ws::connect(&url).await.close_code().await, 4003);
    let (status, _) = c.call(1, reqwest::Method::GET, &bob, &path, None).await;
    assert_eq!(status, 404);
    // The body of a GET goes back as it is (read-only fields ignored).
    let (_, got) = c.call(1, reqwest::Method::GET, &admin, &path, None).await;
    let (status, again) = c
        .call(1, reqwest::Method::PATCH, &admin, &path, Some(got.clone()))
        .await;
    assert_eq!((status, &again), (200, &got));
}

async fn a_user_deactivated_from_the_command_line_is_cut_off_on_every_node() {
    let backend = postgres();
    let c = Cluster::start(&backend, 2, &[]).await;
    let alice = c.user("alice", Role::Client).await;
    let bob = c.user("bob", Role::Client).await;
    let url = |node: usize, who: &User| {
        format!(
            "ws://{}/ws/notifications/?token={}",
            c.nodes[node].addr,
            c.token(who)
        )
    };
    let mut on_a = Ws::connect(&url(0, &alice)).await;
    on_a.established().await;
    let mut on_b = Ws::connect(&url(1, &alice)).await;
    on_b.established().await;
    let mut bobs = Ws::connect(&url(1, &bob)).await;
    bobs.established().await;
    let cli = |args: &[&str]| {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--database-url".to_owned(), c.db_url().to_owned()]);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::harness::cli_ok(&args).await
        }
    };
    let said = cli(&[
        "users",
        "deactivate",
        "alice",
        "--redis-url",
        &c.redis.url(),
        "--redis-prefix",
        &c.prefix,
    ])
    .await;
    assert!(said.contains("deactivated `alice`"), "{said}");
    assert_eq!(on_a.close_code().await, 4001);
    assert_eq!(on_b.close_code().await, 4001);
    bobs.roundtrip().await;
    let (status, _) = c
        .call(0, reqwest::Method::GET, &alice, "/api/users/me/", None)
        .await;
    assert_eq!(status, 401);

    // Back again, with a password set from the command line.
    cli(&["users", "activate", "alice"]).await;
    let said = cli(&["users", "set-password", "alice", "--password", "new-secret"]).await;
    assert!(said.contains("set the password of `alice`"), "{said}");
    let res = c
        .http
        .post(c.nodes[1].url("/api/auth/login/"))
        .json(&json!({"username": "alice", "password": "new-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Unknown users and short passwords are refused with a message.
    let out = crate::harness::cli(&[
        "users",
        "deactivate",
        "nobody",
        "--database-url",
        c.db_url(),
    ])
    .await;
    assert!(!out.ok);
    assert!(out.stderr.contains("no user `nobody`"), "{}", out.stderr);
}

/// Redis connected but slow: the publish queue stays within its bound, what does not fit is
/// dropped and counted, and the other node resyncs once publishing works again, so nothing is
/// lost.
async fn a_slow_redis_never_grows_the_publish_queue_past_its_bound() {
    let backend = postgres();
    let c = Cluster::start(
        &backend,
        2,
        &[
            "--bus-publish-queue",
            "4",
            "--bus-reconcile-interval",
            "3600",
        ],
    )
    .await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut ws = c.connect(1, &alice, None).await;
    c.send(0, &admin, &alice, "before").await;
    assert_eq!(ws.notifications(1).await[0]["seq"], 1);
    // Redis holds every write (a PUBLISH among them) for a while: connected, but slow.
    let paused = tokio::process::Command::new("redis-cli")
        .args([
            "-p",
            &c.redis.port.to_string(),
            "CLIENT",
            "PAUSE",
            "4000",
            "WRITE",
        ])
        .output()
        .await
        .unwrap();
    assert!(paused.status.success());
    for i in 0..12 {
        c.send(0, &admin, &alice, &format!("during {i}")).await;
    }
    eventually("node 0 drops what does not fit its queue", || async {
        c.counter(0, "tickethub_bus_publish_dropped_total").await >= 1.0
    })
    .await;
    // Once Redis answers again, alice hears of everything, in order, on the same socket.
    let healed = ws.notifications(12).await;
    let seqs: Vec<i64> = healed.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (2..=13).collect::<Vec<_>>());
}

crate::trials! {
    both: [
        a_user_on_one_node_hears_of_commits_on_another,
        a_commit_published_while_a_node_subscribes_is_not_lost,
        an_inbox_change_lost_without_a_sign_reaches_the_tab_at_the_next_pass,
        a_subscriber_that_hears_nothing_is_reconnected_and_resyncs,
    ],
    tests: [
        a_hub_without_its_redis_does_not_start,
        a_redis_restart_heals_without_any_client_reconnecting,
        a_node_without_its_bus_still_delivers_other_nodes_commits,
        inbox_changes_reach_the_tabs_on_every_node,
        a_ticket_walks_its_lifecycle_with_each_action_on_the_other_node,
        a_killed_node_loses_nothing_and_rejoins_when_restarted,
        the_outbox_claims_of_a_dead_node_are_taken_over,
        the_periodic_reconciliation_delivers_what_the_bus_never_carried,
        a_fan_out_on_one_node_reaches_every_user_on_the_others_in_order,
        an_inbox_change_never_overtakes_the_notification_it_changes,
        inbox_changes_made_while_the_bus_was_away_reach_the_tabs,
        a_change_a_killed_node_never_published_reaches_the_tabs_once_it_restarts,
        presence_holds_across_nodes_and_a_dead_nodes_users_leave,
        presence_heals_after_a_bus_gap,
        a_member_removed_from_a_project_is_dropped_from_its_rooms_on_every_node,
        a_user_deactivated_from_the_command_line_is_cut_off_on_every_node,
        a_slow_redis_never_grows_the_publish_queue_past_its_bound,
        a_user_change_on_one_node_holds_at_once_on_the_other,
        a_node_that_cannot_hear_the_bus_reads_users_from_the_database,
        a_membership_or_preference_change_on_one_node_holds_at_once_on_the_other,
        a_node_without_recipients_hears_nothing_of_their_messages,
        a_redis_cluster_carries_everything_through_a_failover,
        rooms_on_a_failed_over_master_cross,
        a_sentinel_failover_carries_everything,
        a_node_whose_clock_runs_ahead_fires_no_scheduled_send_early,
        a_send_scheduled_through_a_node_whose_clock_runs_ahead_is_due_on_time,
        presence_holds_across_nodes_whose_clocks_disagree,
        a_lease_renewed_just_after_a_clock_jump_runs_out_by_redis_clock,
    ],
    sync: [],
}
