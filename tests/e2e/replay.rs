//! Nothing lost: replay on connect, live traffic during replay, slow consumers, crashes.

use futures::future::join_all;
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};
use tickethub_actors::user::UserMsg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{
    eventually, eventually_some, patience, send_body, test_config, Backend, TestDb, TestHub, Ws,
    SECRET, SEND,
};

async fn send(hub: &TestHub, admin: &User, to: &User, title: &str) -> u16 {
    let (status, _) = hub
        .try_send(
            admin,
            &[to],
            json!({"title": title, "message": format!("{title} body")}),
        )
        .await;
    status
}

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|n| n["type"] == "notification")
        .map(|n| n["seq"].as_i64().unwrap())
        .collect()
}

async fn connect_from(hub: &TestHub, user: &User, last_seq: Option<i64>) -> Ws {
    connect_greeted(hub, user, last_seq).await.0
}

/// Connects and returns the socket with its `connection_established` frame.
async fn connect_greeted(hub: &TestHub, user: &User, last_seq: Option<i64>) -> (Ws, Value) {
    let mut url = format!("/ws/notifications/?token={}", hub.token(user));
    if let Some(s) = last_seq {
        url.push_str(&format!("&last_seq={s}"));
    }
    let mut ws = Ws::connect(&hub.ws_url(&url)).await;
    let hello = ws.established().await;
    (ws, hello)
}

async fn last_seq_replays_exactly_what_was_missed(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    for i in 0..5 {
        assert_eq!(send(&hub, &admin, &alice, &format!("n{i}")).await, 201);
    }
    // The greeting carries the user's newest seq, read as the socket is attached.
    let (mut ws, hello) = connect_greeted(&hub, &alice, Some(2)).await;
    assert_eq!(hello["last_seq"], 5);
    assert_eq!(seqs(&ws.replayed), vec![3, 4, 5]);
    assert!(ws.replayed.iter().all(|n| n["replayed"] == true));
    assert_eq!(ws.replayed[0]["title"], "n2");
    assert_eq!(
        ws.replay_complete,
        json!({"type": "replay_complete", "count": 3, "last_seq": 5})
    );
    send(&hub, &admin, &alice, "live").await;
    let live = ws.notifications(1).await;
    assert_eq!(
        (live[0]["seq"].clone(), live[0]["replayed"].clone()),
        (json!(6), json!(false))
    );

    // Up to date: an empty replay, still with its replay_complete; the greeting of a second
    // socket, to an actor that holds one already, is as new.
    let (ws, hello) = connect_greeted(&hub, &alice, Some(6)).await;
    assert_eq!(hello["last_seq"], 6);
    assert!(ws.replayed.is_empty());
    assert_eq!(
        ws.replay_complete,
        json!({"type": "replay_complete", "count": 0, "last_seq": 6})
    );
    // A last_seq ahead of the stream is clamped to it; nonsense is refused before the upgrade.
    let ws = connect_from(&hub, &alice, Some(1_000)).await;
    assert_eq!(ws.replay_complete["last_seq"], 6);
    for bad in ["-1", "abc"] {
        let url = hub.ws_url(&format!(
            "/ws/notifications/?token={}&last_seq={bad}",
            hub.token(&alice)
        ));
        assert!(Ws::connect_with(&url, &[]).await.is_err(), "{bad}");
    }
}

async fn without_last_seq_the_backlog_follows_acks_or_what_was_sent(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    // A first connection gets the whole (unsent) backlog.
    send(&hub, &admin, &alice, "a").await;
    let mut ws = connect_from(&hub, &alice, None).await;
    assert_eq!(seqs(&ws.replayed), vec![1]);
    send(&hub, &admin, &alice, "b").await;
    send(&hub, &admin, &alice, "c").await;
    assert_eq!(seqs(&ws.notifications(2).await), vec![2, 3]);
    drop(ws);
    eventually("the actor ends", || async {
        hub.hub.user(alice.id).is_none()
    })
    .await;
    // A client that never acks gets what no socket was sent.
    send(&hub, &admin, &alice, "d").await;
    send(&hub, &admin, &alice, "e").await;
    let mut ws = connect_from(&hub, &alice, None).await;
    assert_eq!(seqs(&ws.replayed), vec![4, 5]);
    // Once a client acks, the backlog starts after its ack, even if more was sent.
    ws.send_json(json!({"type": "ack", "seq": 4})).await;
    ws.roundtrip().await;
    send(&hub, &admin, &alice, "f").await;
    assert_eq!(seqs(&ws.notifications(1).await), vec![6]);
    drop(ws);
    eventually("the actor ends", || async {
        hub.hub.user(alice.id).is_none()
    })
    .await;
    let ws = connect_from(&hub, &alice, None).await;
    assert_eq!(seqs(&ws.replayed), vec![5, 6]);
    // Acks never move back, and never past the stream.
    let mut ws = ws;
    ws.send_json(json!({"type": "ack", "seq": 2})).await;
    ws.send_json(json!({"type": "ack", "seq": 99})).await;
    ws.send_json(json!({"type": "ack", "seq": "x"})).await;
    assert_eq!(ws.next_json().await["code"], "bad_request");
    ws.roundtrip().await;
    assert_eq!(
        hub.store
            .notification_cursor(alice.id)
            .await
            .unwrap()
            .acked_seq,
        6
    );
}

async fn a_replay_over_the_cap_is_truncated_to_the_newest(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.replay_cap = 10).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    for i in 0..25 {
        send(&hub, &admin, &alice, &format!("n{i}")).await;
    }
    let ws = connect_from(&hub, &alice, Some(0)).await;
    assert_eq!(
        ws.replayed[0],
        json!({"type": "replay_truncated", "remaining": 15})
    );
    assert_eq!(seqs(&ws.replayed), (16..=25).collect::<Vec<_>>());
    assert_eq!(
        ws.replay_complete,
        json!({"type": "replay_complete", "count": 10, "last_seq": 25})
    );
    // The rest is a REST page away.
    let older = hub
        .get_as(&alice, "/api/notifications/?page=2&page_size=10", 200)
        .await;
    assert_eq!(older["results"][0]["seq"], 15);
}

async fn live_notifications_during_a_replay_arrive_after_it_without_gaps(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    const TOTAL: i64 = 300;
    // A writer hammers the API from several tasks while the client connects mid-stream.
    let writers = join_all((0..4).map(|w| {
        let hub = &hub;
        let admin = admin.clone();
        let alice = alice.clone();
        async move {
            for i in 0..TOTAL / 4 {
                assert_eq!(send(hub, &admin, &alice, &format!("w{w}-{i}")).await, 201);
            }
        }
    }));
    let reader = async {
        // Connect once the stream is under way.
        eventually("some notifications exist", || async {
            hub.store
                .notification_cursor(alice.id)
                .await
                .unwrap()
                .last_seq
                >= 40
        })
        .await;
        let mut ws = connect_from(&hub, &alice, Some(0)).await;
        let mut seen = seqs(&ws.replayed);
        assert!(!seen.is_empty());
        while seen.len() < TOTAL as usize {
            let n = ws.notifications(1).await;
            assert_eq!(n[0]["replayed"], false);
            seen.push(n[0]["seq"].as_i64().unwrap());
        }
        seen
    };
    let (_, seen) = tokio::join!(writers, reader);
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());
}

/// Completes a WebSocket handshake over a socket with a tiny receive buffer, then never reads.
async fn stalled_client(hub: &TestHub, user: &User) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(hub.addr).await.unwrap();
    let request = format!(
        "GET /ws/notifications/?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        hub.token(user),
        hub.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"));
    stream
}

async fn a_socket_that_stops_reading_is_cut_off_and_nobody_waits(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| {
        c.ws_outbound_queue = 8;
        c.ws_outbound_queue_bytes = 1024 * 1024;
        // Two sockets per user: a third is let in only once the stalled one's session ended.
        c.max_sockets_per_user = 2;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    let mut fast = hub.connect(&alice).await;
    let mut other_user = hub.connect(&bob).await;
    let mut stalled = stalled_client(&hub, &alice).await;
    let actor = hub.hub.user(alice.id).unwrap();
    eventually("both of alice's sockets are attached", || async {
        ractor::call_t!(actor, UserMsg::Snapshot, crate::harness::patience_ms())
            .unwrap()
            .connections
            .len()
            == 2
    })
    .await;

    // 60 notifications of 150 KB: more than the kernel buffers of a socket (4 MiB at most
    // here) and the hub's queue can hold together.
    const TOTAL: usize = 60;
    let blob = "x".repeat(150 * 1024);
    let sender = async {
        for i in 0..TOTAL {
            hub.send(
                &admin,
                &[&alice, &bob],
                json!({"title": format!("n{i}"), "message": "big", "data": {"blob": blob}}),
            )
            .await;
        }
    };
    let fast_reader = async {
        let got = fast.notifications(TOTAL).await;
        seqs(&got)
    };
    let other_reader = async { seqs(&other_user.notifications(TOTAL).await) };
    let ((), fast_seqs, other_seqs) = tokio::join!(sender, fast_reader, other_reader);
    // The socket that reads gets everything in order; so does another user.
    assert_eq!(fast_seqs, (1..=TOTAL as i64).collect::<Vec<_>>());
    assert_eq!(other_seqs, (1..=TOTAL as i64).collect::<Vec<_>>());
    // The stalled socket was cut off; the actor holds the live one only.
    eventually("the stalled socket is dropped", || async {
        ractor::call_t!(actor, UserMsg::Snapshot, crate::harness::patience_ms())
            .unwrap()
            .connections
            .len()
            == 1
    })
    .await;
    // The stalled socket's session ends while its client still reads nothing (a write stuck on
    // it is abandoned at the kick): its slot takes a new socket, which replays the backlog.
    let url = hub.ws_url(&format!(
        "/ws/notifications/?token={}&last_seq=0",
        hub.token(&alice)
    ));
    let ws = eventually_some("the stalled session gives its socket slot back", || {
        let url = url.clone();
        async move {
            // A socket over the cap is closed at once, which fails `established`.
            tokio::spawn(async move {
                let mut ws = Ws::connect(&url).await;
                ws.established().await;
                ws
            })
            .await
            .ok()
        }
    })
    .await;
    assert_eq!(seqs(&ws.replayed), (1..=TOTAL as i64).collect::<Vec<_>>());
    // Reading the stalled socket now ends (a 4008 close if the hub could still send one).
    let mut sink = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(patience(), async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled socket was not closed");
}

async fn a_panicking_user_actor_mid_stream_loses_nothing(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    const TOTAL: i64 = 150;
    let writer = async {
        for i in 0..TOTAL {
            assert_eq!(send(&hub, &admin, &alice, &format!("n{i}")).await, 201);
        }
    };
    let reader = async {
        let mut ws = connect_from(&hub, &alice, Some(0)).await;
        let mut seen = seqs(&ws.replayed);
        let mut injected = false;
        while (seen.len() as i64) < TOTAL {
            if !injected && seen.len() >= 30 {
                injected = true;
                hub.hub
                    .user(alice.id)
                    .unwrap()
                    .send_message(UserMsg::InjectFault)
                    .unwrap();
            }
            let msg = tokio::time::timeout(patience(), futures::StreamExt::next(&mut ws.inner))
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["type"], "notification", "{v}");
                    seen.push(v["seq"].as_i64().unwrap());
                }
                Message::Close(frame) => {
                    // The actor died: the socket is told to reconnect, and resumes from what it has.
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1012));
                    ws = connect_from(&hub, &alice, seen.last().copied()).await;
                    seen.extend(seqs(&ws.replayed));
                }
                _ => {}
            }
        }
        assert!(injected);
        seen
    };
    let ((), seen) = tokio::join!(writer, reader);
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());
    assert_eq!(hub.hub.user_stats().await.unwrap().failures, 1);
}

/// A hub process on this database.
async fn spawn_hub(db: &str) -> crate::nodes::Node {
    crate::nodes::Node::start(
        ["--database-url", db, "--jwt-secret", SECRET]
            .map(String::from)
            .to_vec(),
    )
    .await
}

/// What a client that neither acks nor sends `last_seq` may be sent twice after a crash: the
/// hub records what it wrote to a user's sockets at least every `SENT_FLUSH_EVERY` (64)
/// notifications, and a socket's queue holds at most 256 frames.
const REPEAT_BOUND: usize = 64 + 256;

async fn kill_9_mid_stream_loses_nothing_that_was_acknowledged(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let (admin, alice) = crate::harness::admin_and_client(&db).await;
    let auth = tickethub::auth::Auth::from_config(&test_config(&db.url), Some(SECRET)).unwrap();
    let admin_token = auth.issue_access(&admin).unwrap();

    let mut node = spawn_hub(&db.url).await;
    let addr = node.addr.clone();
    let node_addr_before = addr.clone();
    // A seed-style client receives the stream live: no `last_seq`, no acks.
    let seed_url = format!(
        "ws://{addr}/ws/notifications/?token={}",
        auth.issue_access(&alice).unwrap()
    );
    let mut seed = Ws::connect(&seed_url).await;
    seed.established().await;
    let (seen_tx, seen_rx) = tokio::sync::watch::channel(0usize);
    let seed_reader = tokio::spawn(async move {
        let mut titles = Vec::new();
        while let Some(Ok(msg)) = futures::StreamExt::next(&mut seed.inner).await {
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "notification" {
                    titles.push(v["title"].as_str().unwrap().to_owned());
                    seen_tx.send_replace(titles.len());
                }
            }
        }
        titles
    });
    let client = reqwest::Client::builder()
        .timeout(patience())
        .build()
        .unwrap();
    // Four writers stream sends; each remembers the titles the hub answered 201 for.
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let writers = (0..4).map(|w| {
        let client = client.clone();
        let addr = addr.clone();
        let token = admin_token.clone();
        let alice = alice.id.0;
        let killed = killed_rx.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if *killed.borrow() {
                    break;
                }
                let title = format!("w{w}-{i}");
                let res = client
                    .post(format!("http://{addr}{SEND}"))
                    .bearer_auth(&token)
                    .json(&send_body(
                        &[alice],
                        json!({"title": title, "message": "m"}),
                    ))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 201 => acknowledged.push(title),
                    _ => break,
                }
            }
            acknowledged
        })
    });
    let writers: Vec<_> = writers.collect();
    // Kill -9 once the seed client has read well over what may be repeated.
    let mut seen = seen_rx.clone();
    tokio::time::timeout(patience() * 4, seen.wait_for(|n| *n >= 2 * REPEAT_BOUND))
        .await
        .expect("the stream is under way")
        .unwrap();
    node.kill().await;
    killed_tx.send(true).unwrap();
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(acknowledged.len() >= 60);

    let before = seed_reader.await.unwrap();

    // Restart on the same database. The seed client reconnects as it did, with no `last_seq`:
    // it gets what it had not been sent, and at most a bounded tail of what it had.
    let node = spawn_hub(&db.url).await;
    let addr = &node.addr;
    let mut seed = Ws::connect(&seed_url.replace(&node_addr_before, addr)).await;
    seed.established().await;
    let after: Vec<String> = seed
        .replayed
        .iter()
        .filter(|n| n["type"] == "notification")
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    let before_set: std::collections::HashSet<&String> = before.iter().collect();
    let repeated = after.iter().filter(|t| before_set.contains(t)).count();
    assert!(
        repeated < REPEAT_BOUND,
        "{repeated} of {} notifications were repeated after the restart",
        before.len()
    );
    for title in &acknowledged {
        assert!(
            before_set.contains(title) || after.contains(title),
            "acknowledged {title} never reached the seed client"
        );
    }

    // Everything is replayed, in order, to a client that asks from the start.
    let url = format!(
        "ws://{addr}/ws/notifications/?token={}&last_seq=0",
        auth.issue_access(&alice).unwrap()
    );
    let mut ws = Ws::connect(&url).await;
    ws.established().await;
    let replayed: Vec<&Value> = ws
        .replayed
        .iter()
        .filter(|n| n["type"] == "notification")
        .collect();
    let got: Vec<i64> = replayed
        .iter()
        .map(|n| n["seq"].as_i64().unwrap())
        .collect();
    // Gapless, in order, once each; every acknowledged call is there.
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>());
    let titles: std::collections::HashSet<&str> = replayed
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), got.len());
    for title in &acknowledged {
        assert!(
            titles.contains(title.as_str()),
            "acknowledged {title} is missing"
        );
    }
}

async fn a_slow_attach_that_is_retried_replays_once(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.actor_call_timeout_ms = 300).await;
    let admin = hub.user("root", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    for i in 0..3 {
        assert_eq!(send(&hub, &admin, &alice, &format!("n{i}")).await, 201);
    }
    let _first = connect_from(&hub, &alice, Some(3)).await;
    // The actor is held until the second socket's attach has been tried again: every try
    // reaches the actor once it is free.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    hub.hub
        .user(alice.id)
        .unwrap()
        .send_message(UserMsg::InjectHold(gate.clone()))
        .unwrap();
    let retried = hub.hub.attach_retries();
    let second = tokio::spawn({
        let url = hub.ws_url(&format!(
            "/ws/notifications/?token={}&last_seq=0",
            hub.token(&alice)
        ));
        async move {
            let mut ws = Ws::connect(&url).await;
            let hello = ws.established().await;
            (ws, hello)
        }
    });
    eventually("the second socket's attach is tried again", || async {
        hub.hub.attach_retries() > retried
    })
    .await;
    gate.add_permits(1);
    let (mut second, hello) = second.await.unwrap();
    assert_eq!(seqs(&second.replayed), vec![1, 2, 3]);
    // Answered by a retry, which finds the socket attached: the greeting is still as new.
    assert_eq!(hello["last_seq"], 3);
    // One replay, nothing after it: the next frame answers the next ping.
    second
        .send_json(json!({"type": "ping", "timestamp": 7}))
        .await;
    let next = second.next_json().await;
    assert_eq!(next["type"], "pong", "{next}");
    // And every live frame once.
    assert_eq!(send(&hub, &admin, &alice, "live").await, 201);
    let live = second.next_json().await;
    assert_eq!(live["seq"], 4, "{live}");
    second
        .send_json(json!({"type": "ping", "timestamp": 8}))
        .await;
    assert_eq!(second.next_json().await["type"], "pong");
}

async fn a_crashed_actor_does_not_repeat_what_a_seed_client_was_sent(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    // A seed client: no `last_seq`, no acks.
    let mut ws = connect_from(&hub, &alice, None).await;
    for i in 0..5 {
        assert_eq!(send(&hub, &admin, &alice, &format!("n{i}")).await, 201);
    }
    let live = ws.notifications(5).await;
    assert_eq!(seqs(&live), vec![1, 2, 3, 4, 5]);
    hub.hub
        .user(alice.id)
        .unwrap()
        .send_message(UserMsg::InjectFault)
        .unwrap();
    assert_eq!(ws.close_code().await, 1012);
    // It reconnects as it always does: what it was sent is not sent again, what came while it
    // was away is.
    eventually("the crashed actor is gone", || async {
        hub.hub.user(alice.id).is_none()
    })
    .await;
    assert_eq!(send(&hub, &admin, &alice, "after").await, 201);
    let ws = connect_from(&hub, &alice, None).await;
    assert_eq!(seqs(&ws.replayed), vec![6]);
}

/// A restarted hub alone (no bus) reads its users with where each one's stream stands in one
/// statement at start: a socket that comes back takes that cursor instead of a read, unless
/// news reached its user since, when the user's actor reads for itself. A hub with a bus reads.
async fn a_restarted_hub_opens_sockets_from_the_cursors_it_read_at_start(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    let carol = hub.user("carol", Role::Client).await;
    for (user, n) in [(&alice, 3), (&carol, 2)] {
        for i in 0..n {
            assert_eq!(send(&hub, &admin, user, &format!("n{i}")).await, 201);
        }
    }
    // A lifetime no loaded machine outlasts between the start and the connects.
    let warm = |c: &mut tickethub::ServeConfig| c.user_cache_ttl = 3_600;
    let hub = TestHub::start_on(hub.stop_keep_db().await, warm).await;
    // An acknowledgement written beside the hub is not heard (the lifetime bounds it, as for
    // any write beside the hubs): the cursor read at start stands, with nothing acknowledged.
    hub.store.ack(alice.id, 3).await.unwrap();
    let ws = connect_from(&hub, &alice, None).await;
    assert_eq!(
        seqs(&ws.replayed),
        vec![1, 2, 3],
        "the cursor read at start"
    );
    // Bob's news after the start: the cursor read at start (nothing) is not believed.
    assert_eq!(send(&hub, &admin, &bob, "b0").await, 201);
    let ws = connect_from(&hub, &bob, None).await;
    assert_eq!(
        seqs(&ws.replayed),
        vec![1],
        "news since the start is replayed"
    );
    drop(ws);

    // With a bus, other nodes' acknowledgements are not heard: every connect reads. Carol
    // never connected, so a cursor read at start would replay what is acknowledged now.
    let db = hub.stop_keep_db().await;
    let (redis, prefix) = (
        crate::harness::redis(),
        format!("tickethub-test-{}", uuid::Uuid::new_v4().simple()),
    );
    let hub = TestHub::start_on(db, |c| {
        warm(c);
        c.redis_url = Some(redis);
        c.redis_prefix = prefix;
    })
    .await;
    hub.store.ack(carol.id, 2).await.unwrap();
    let ws = connect_from(&hub, &carol, None).await;
    assert_eq!(
        seqs(&ws.replayed),
        Vec::<i64>::new(),
        "the cursor as it is now"
    );
}

/// A notification committed beside the hub after its start counts no news here: a socket
/// that opened from the cursor read at start did not replay it, and the pass that ends the
/// warm-up's lifetime catches the user up from the database.
async fn a_commit_beside_a_restarted_hub_reaches_a_socket_opened_from_the_start_read(
    backend: Backend,
) {
    let hub = TestHub::start(&backend).await;
    let dave = hub.user("dave", Role::Client).await;
    let hub = TestHub::start_on(hub.stop_keep_db().await, |c| c.user_cache_ttl = 2).await;
    let draft = crate::store::plain_draft(
        dave.id,
        "beside".into(),
        "committed by another process".into(),
    );
    hub.store
        .commit_notifications(vec![draft], None)
        .await
        .unwrap();
    let mut ws = connect_from(&hub, &dave, None).await;
    // Within the lifetime the replay started from the cursor read at start (nothing); on a
    // machine slow enough to miss it, from a read. Either way the notification arrives.
    let got = if ws.replayed.is_empty() {
        ws.notifications(1).await
    } else {
        ws.replayed.clone()
    };
    assert_eq!(seqs(&got), vec![1]);
    assert_eq!(got[0]["title"], "beside");
}

crate::trials! {
    both: [
        last_seq_replays_exactly_what_was_missed,
        without_last_seq_the_backlog_follows_acks_or_what_was_sent,
        a_replay_over_the_cap_is_truncated_to_the_newest,
        live_notifications_during_a_replay_arrive_after_it_without_gaps,
        a_socket_that_stops_reading_is_cut_off_and_nobody_waits,
        a_panicking_user_actor_mid_stream_loses_nothing,
        kill_9_mid_stream_loses_nothing_that_was_acknowledged,
        a_slow_attach_that_is_retried_replays_once,
        a_crashed_actor_does_not_repeat_what_a_seed_client_was_sent,
        a_restarted_hub_opens_sockets_from_the_cursors_it_read_at_start,
        a_commit_beside_a_restarted_hub_reaches_a_socket_opened_from_the_start_read,
    ],
    tests: [],
    sync: [],
}
