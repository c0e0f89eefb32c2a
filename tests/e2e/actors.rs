//! The actor tree seen from outside: one actor per user, fault isolation, shutdown, scale.

use futures::future::join_all;
use tickethub_actors::domain::{Role, UserId};
use tickethub_actors::ports::BusEvent;
use tickethub_actors::user::UserMsg;

use crate::harness::{eventually, Backend, Ended, TestHub};

async fn tabs_share_one_actor_which_ends_with_the_last_socket(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let user = hub.user("alice", Role::Client).await;
    let mut tab1 = hub.connect(&user).await;
    let mut tab2 = hub.connect(&user).await;
    let actor = hub.hub.user(user.id).expect("actor while connected");
    let snap = ractor::call_t!(actor, UserMsg::Snapshot, crate::harness::patience_ms()).unwrap();
    assert_eq!(snap.connections.len(), 2);
    assert_eq!(hub.hub.user_stats().await.unwrap().actors, 1);

    tab1.inner.close(None).await.unwrap();
    assert_eq!(tab1.ended().await, Ended::Closed(1000));
    eventually("one socket left", || async {
        let snap =
            ractor::call_t!(actor, UserMsg::Snapshot, crate::harness::patience_ms()).unwrap();
        snap.connections.len() == 1
    })
    .await;
    tab2.roundtrip().await;
    drop(tab2);
    eventually("actor gone after the last socket", || async {
        hub.hub.user(user.id).is_none()
    })
    .await;
    assert_eq!(hub.hub.user_stats().await.unwrap().actors, 0);
}

async fn a_panicking_user_actor_takes_nobody_else_down(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let alice = hub.user("alice", Role::Client).await;
    let bob = hub.user("bob", Role::Developer).await;
    let mut a1 = hub.connect(&alice).await;
    let mut a2 = hub.connect(&alice).await;
    let mut b = hub.connect(&bob).await;
    let bob_actor = hub.hub.user(bob.id).unwrap();

    hub.hub
        .user(alice.id)
        .unwrap()
        .send_message(UserMsg::InjectFault)
        .unwrap();

    // Alice's sockets are told to reconnect; Bob's socket and actor are untouched.
    assert_eq!(a1.close_code().await, 1012);
    assert_eq!(a2.close_code().await, 1012);
    b.roundtrip().await;
    assert_eq!(hub.hub.user(bob.id).unwrap().get_id(), bob_actor.get_id());
    let stats = hub.hub.user_stats().await.unwrap();
    assert_eq!(stats.failures, 1);
    assert!(stats.last_failure.unwrap().contains("injected fault"));

    // Alice reconnects to a fresh actor.
    let mut a3 = hub.connect(&alice).await;
    a3.roundtrip().await;
    assert!(hub.hub.user(alice.id).is_some());
    b.roundtrip().await;
}

async fn graceful_shutdown_closes_sockets_with_1001(backend: Backend) {
    let mut hub = TestHub::start(&backend).await;
    let alice = hub.user("alice", Role::Client).await;
    let bob = hub.user("bob", Role::Admin).await;
    let mut sockets = vec![
        hub.connect(&alice).await,
        hub.connect(&alice).await,
        hub.connect(&bob).await,
    ];
    let addr = hub.addr;
    hub.stop().await;
    for ws in &mut sockets {
        assert_eq!(ws.close_code().await, 1001);
    }
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

async fn shutdown_writes_what_is_queued_before_1001(backend: Backend) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut hub = TestHub::start(&backend).await;
    let admin = hub.user("root", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let mut ws = hub.connect(&alice).await;
    // A burst, committed and queued to the socket; the hub stops the moment the last call
    // has answered, with frames still in the socket's queue.
    let to = [&alice];
    let sent = join_all((0..200).map(|i| {
        hub.try_send(
            &admin,
            &to,
            serde_json::json!({"title": format!("n{i}"), "message": "m"}),
        )
    }))
    .await;
    assert!(sent.iter().all(|(status, _)| *status == 201));
    hub.stop().await;
    let mut seqs = Vec::new();
    loop {
        match ws.inner.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "notification" {
                    seqs.push(v["seq"].as_i64().unwrap());
                }
            }
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=200).collect::<Vec<i64>>(),
        "every committed frame before the 1001"
    );
}

async fn a_thousand_concurrent_sockets_are_all_established() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(hub.user(&format!("user{i}"), Role::Client).await);
    }
    let sockets = join_all((0..1000).map(|i| hub.connect(&users[i % users.len()]))).await;
    assert_eq!(sockets.len(), 1000);
    assert_eq!(hub.hub.user_stats().await.unwrap().actors, 50);
    let mut total = 0;
    for u in &users {
        let actor = hub.hub.user(u.id).unwrap();
        total += ractor::call_t!(actor, UserMsg::Snapshot, crate::harness::patience_ms())
            .unwrap()
            .connections
            .len();
    }
    assert_eq!(total, 1000);
}

async fn ticket_actors_passivate_and_recover_from_faults(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.ticket_actor_idle = 1).await;
    let c = crate::tickets::cast(&hub).await;
    let t = crate::tickets::create_ticket(&hub, &c.c1, c.project, "Passive").await;
    let id = t["id"].as_i64().unwrap();
    let ticket_id = tickethub_actors::ticket_domain::TicketId(id);
    // Creating a ticket starts no actor; the first action does.
    assert!(hub.hub.ticket(ticket_id).is_none());
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{id}/open_ticket/"),
        serde_json::json!({}),
        200,
    )
    .await;
    let actor = hub
        .hub
        .ticket(ticket_id)
        .expect("an active ticket has an actor");
    eventually("the idle ticket actor passivates", || async {
        hub.hub.ticket(ticket_id).is_none()
    })
    .await;
    assert_eq!(hub.hub.ticket_stats().await.unwrap().failures, 0);
    drop(actor);

    // A ticket actor that dies takes nothing committed with it, and the next action works.
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{id}/assign/"),
        serde_json::json!({"developer_ids": [c.d1.id.0]}),
        200,
    )
    .await;
    hub.hub
        .ticket(ticket_id)
        .unwrap()
        .send_message(tickethub_actors::ticket::TicketMsg::InjectFault)
        .unwrap();
    eventually("the failed ticket actor is pruned", || async {
        hub.hub.ticket_stats().await.unwrap().failures == 1
    })
    .await;
    let started = hub
        .post_as(
            &c.d1,
            &format!("/api/tickets/{id}/start_work/"),
            serde_json::json!({}),
            200,
        )
        .await;
    assert_eq!(started["status"], "IN_PROGRESS");
    assert_eq!(started["version"], 4);
}

/// Every path that hands a user news counts it before the user's actor is looked up: a cursor
/// a socket's handshake read stands in for the actor's own read only while nothing was counted
/// since. A path that forgot would let a starting actor miss a commit made between the two.
async fn every_path_of_a_user_s_news_is_counted(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("root", Role::Admin).await;
    let user = hub.user("alice", Role::Client).await;
    let counted = |before| hub.hub.notice_stamp(user.id) != before;

    let stamp = hub.hub.notice_stamp(user.id);
    assert!(!counted(stamp));
    hub.send(&admin, &[&user], serde_json::json!({})).await;
    assert!(counted(stamp), "a commit on this node");

    let (_, notes) = hub.store.backlog(user.id, 0, 10).await.unwrap();
    let note = std::sync::Arc::new(notes.into_iter().next().expect("the notification"));
    let stamp = hub.hub.notice_stamp(user.id);
    hub.hub.remote(BusEvent::Notified(vec![note]));
    assert!(counted(stamp), "a commit on another node, carried whole");

    let stamp = hub.hub.notice_stamp(user.id);
    hub.hub.remote(BusEvent::Committed(vec![(user.id, 1)]));
    assert!(counted(stamp), "a commit on another node, as a pair");

    let stamp = hub.hub.notice_stamp(user.id);
    hub.hub.remote_committed(user.id, 1);
    assert!(counted(stamp), "another node's newest seq");

    let stamp = hub.hub.notice_stamp(user.id);
    hub.hub.catch_up(vec![user.id]).await.unwrap();
    assert!(counted(stamp), "a shard newly heard");

    let stamp = hub.hub.notice_stamp(user.id);
    hub.hub.catch_up_all(None).await.unwrap();
    assert!(counted(stamp), "a resync");
}

/// The passes while a node's bus is away remember the seqs they read: a pass asks only the
/// actors of users whose committed seq moved since the last, and a full pass asks them all.
async fn a_pass_with_seen_seqs_asks_only_the_users_whose_seq_moved(backend: Backend) {
    use tickethub_actors::hub::Seen;
    let hub = TestHub::start(&backend).await;
    let alice = hub.user("alice", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    let mut alice_ws = hub.connect(&alice).await;
    let mut bob_ws = hub.connect(&bob).await;
    // Behind the hub's back: committed, never handed to the actors.
    let commit = |to: UserId, title: &'static str| {
        let store = hub.store.clone();
        async move {
            let draft = crate::store::plain_draft(to, title.into(), "m".into());
            store.commit_notifications(vec![draft], None).await.unwrap();
        }
    };
    let mut seen = Seen::new();
    assert_eq!(
        hub.hub.catch_up_all(Some(&mut seen)).await.unwrap(),
        2,
        "the first pass asks everyone"
    );
    assert_eq!(seen.get(&alice.id), Some(&0));
    assert_eq!(
        hub.hub.catch_up_all(Some(&mut seen)).await.unwrap(),
        0,
        "nothing moved"
    );

    commit(bob.id, "b1").await;
    assert_eq!(
        hub.hub.catch_up_all(Some(&mut seen)).await.unwrap(),
        1,
        "bob's seq moved"
    );
    assert_eq!(bob_ws.notifications(1).await[0]["title"], "b1");
    assert_eq!(seen.get(&bob.id), Some(&1));

    // A seq the last pass already read is trusted to have been told; a full pass asks anyway.
    commit(alice.id, "a1").await;
    seen.insert(alice.id, 1);
    assert_eq!(hub.hub.catch_up_all(Some(&mut seen)).await.unwrap(), 0);
    assert_eq!(hub.hub.catch_up_all(None).await.unwrap(), 2);
    let a = alice_ws.notifications(1).await;
    assert_eq!(
        (a[0]["seq"].as_i64(), a[0]["title"].as_str()),
        (Some(1), Some("a1"))
    );
}

crate::trials! {
    both: [
        tabs_share_one_actor_which_ends_with_the_last_socket,
        every_path_of_a_user_s_news_is_counted,
        a_pass_with_seen_seqs_asks_only_the_users_whose_seq_moved,
        a_panicking_user_actor_takes_nobody_else_down,
        graceful_shutdown_closes_sockets_with_1001,
        shutdown_writes_what_is_queued_before_1001,
        ticket_actors_passivate_and_recover_from_faults,
    ],
    tests: [
        a_thousand_concurrent_sockets_are_all_established,
    ],
    sync: [],
}
