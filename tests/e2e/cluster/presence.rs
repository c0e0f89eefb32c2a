//! Presence across nodes: who is in a project's rooms, as every node sees it, through a
//! node's death and a gap in the bus.

use super::*;

pub(super) async fn presence_holds_across_nodes_and_a_dead_nodes_users_leave() {
    let backend = postgres();
    let mut c = Cluster::start(
        &backend,
        2,
        &["--presence-lease", "3", "--presence-grace-ms", "300"],
    )
    .await;
    let (alice, bob, carol, project) = three_in_a_project(&c).await;
    let ids = |state: &Value| -> Vec<i64> {
        let mut v: Vec<i64> = state["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user_id"].as_i64().unwrap())
            .collect();
        v.sort();
        v
    };
    let (mut a0, _) = presence_on(&c, 0, &alice, project).await;
    let (_c0, _) = presence_on(&c, 0, &carol, project).await;
    assert_eq!(a0.next_json().await["username"], "carol");
    // Bob, on the other node, sees both, and both hear that he joined.
    let (mut b1, state) = presence_on(&c, 1, &bob, project).await;
    assert_eq!(ids(&state), vec![alice.id.0, bob.id.0, carol.id.0]);
    let joined = a0.next_json().await;
    assert_eq!(
        (joined["action"].as_str(), joined["user_id"].as_i64()),
        (Some("joined"), Some(bob.id.0))
    );
    // A second tab of Alice's on Bob's node is no second presence: no `joined`.
    let (mut a1, state) = presence_on(&c, 1, &alice, project).await;
    assert_eq!(ids(&state), vec![alice.id.0, bob.id.0, carol.id.0]);
    let ticket = c
        .post(
            0,
            &alice,
            "/api/tickets/",
            json!({"project": project, "title": "T", "description": "d", "priority": "LOW", "category": "BUG"}),
            201,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    a1.send_json(json!({"type": "ticket_viewing", "ticket_id": ticket}))
        .await;
    let next = b1.next_json().await;
    assert_eq!(next["type"], "ticket_viewing", "{next}");
    assert_eq!(next["user_id"], alice.id.0);
    // Typing on node 0 reaches node 1.
    a0.send_json(json!({"type": "user_typing", "ticket_id": ticket, "is_typing": true}))
        .await;
    let typing = b1.next_json().await;
    assert_eq!(
        typing,
        json!({"type": "user_typing", "user_id": alice.id.0, "ticket_id": ticket, "is_typing": true})
    );

    // Node 0 dies without a word. Carol was only there: she leaves Bob's presence once her
    // lease runs out. Alice still has a tab on node 1: she stays.
    c.nodes[0].kill().await;
    let mut lefts = Vec::new();
    while lefts.is_empty() {
        let v = b1.next_json().await;
        if v["type"] == "user_status" {
            assert_eq!(v["action"], "left", "{v}");
            lefts.push(v["user_id"].as_i64().unwrap());
        }
    }
    assert_eq!(lefts, vec![carol.id.0]);
    // Node 0's lease of Alice ran out with Carol's: a newcomer's state still shows her.
    let (_b2, state) = presence_on(&c, 1, &bob, project).await;
    assert_eq!(ids(&state), vec![alice.id.0, bob.id.0], "{state}");
    // Alice's last tab closes: she leaves after the grace period, and only once: the next
    // status Bob hears is Carol coming back.
    drop(a1.inner);
    let (mut statuses, mut back) = (Vec::new(), None);
    loop {
        let v = b1.next_json().await;
        if v["type"] != "user_status" {
            continue;
        }
        let status = (
            v["action"].as_str().unwrap().to_owned(),
            v["user_id"].as_i64().unwrap(),
        );
        if statuses.is_empty() {
            assert_eq!(status, ("left".to_owned(), alice.id.0));
            back = Some(presence_on(&c, 1, &carol, project).await.0);
        }
        statuses.push(status);
        if statuses.len() == 2 {
            break;
        }
    }
    assert_eq!(
        statuses[1],
        ("joined".to_owned(), carol.id.0),
        "{statuses:?}"
    );
    drop(back);
}

pub(super) async fn presence_heals_after_a_bus_gap() {
    let backend = postgres();
    let mut c = Cluster::start(
        &backend,
        2,
        &["--presence-lease", "3", "--presence-grace-ms", "300"],
    )
    .await;
    let alice = c.user("alice", Role::Client).await;
    let bob = c.user("bob", Role::Developer).await;
    let project = c
        .store
        .create_project("WEB", "Website", &[alice.id, bob.id])
        .await
        .unwrap()
        .id
        .0;
    let (mut b1, _) = presence_on(&c, 1, &bob, project).await;
    // Alice arrives on node 0 while Redis is down: her `joined` cannot cross.
    c.redis.kill().await;
    for node in 0..2 {
        c.bus_is(node, "disconnected").await;
    }
    let (a0, state) = presence_on(&c, 0, &alice, project).await;
    assert!(
        state["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["user_id"] == alice.id.0),
        "{state}"
    );
    // Redis comes back (empty): node 1 learns of her from the renewed leases, once.
    c.redis.restart().await;
    assert_eq!(next_status(&mut b1).await, ("joined".into(), alice.id.0));
    // And her leaving crosses as usual, once.
    drop(a0.inner);
    assert_eq!(next_status(&mut b1).await, ("left".into(), alice.id.0));
    b1.roundtrip().await;
}
