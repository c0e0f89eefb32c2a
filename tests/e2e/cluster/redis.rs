use super::*;

/// Redis's counts of the bytes it read from and sent to its clients.
pub(super) async fn redis_bytes(port: u16) -> (u64, u64) {
    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "stats"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("INFO stats has {name}"))
            .trim()
            .parse()
            .unwrap()
    };
    (
        field("total_net_input_bytes:"),
        field("total_net_output_bytes:"),
    )
}

/// Interest routing: a message reaches only the nodes that hold one of its recipients. Alice
/// is on node 0, Bob on node 2, and node 1 sends: node 2 hears nothing of Alice's
/// notifications (its own count of what it heard, and Redis's count of the bytes it sent, one
/// copy per notification rather than one per node), and a send to both reaches each node once.
pub(super) async fn a_node_without_recipients_hears_nothing_of_their_messages() {
    let backend = postgres();
    let c = Cluster::start(&backend, 3, &["--bus-reconcile-interval", "3600"]).await;
    let admin = c.user("boss", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let bob = c.user("bob", Role::Client).await;
    assert_ne!(
        tickethub::bus::shard(alice.id),
        tickethub::bus::shard(bob.id)
    );
    let mut on_0 = c.connect(0, &alice, None).await;
    let mut on_2 = c.connect(2, &bob, None).await;
    // A commit's message: its notifications whole (`m`) or as pairs (`n`).
    let c = &c;
    let heard_n = |node| async move {
        c.counter_with(node, "tickethub_bus_received_total", &["kind=\"n\""])
            .await
            + c.counter_with(node, "tickethub_bus_received_total", &["kind=\"m\""])
                .await
    };
    for node in [0, 2] {
        eventually("the node hears its user's shard", || async {
            c.counter(node, "tickethub_bus_subscribed_channels").await >= 1.0
        })
        .await;
    }
    c.send(1, &admin, &alice, "first").await;
    c.send(1, &admin, &bob, "first").await;
    assert_eq!(on_0.notifications(1).await[0]["seq"], 1);
    assert_eq!(on_2.notifications(1).await[0]["seq"], 1);
    assert_eq!(heard_n(0).await, 1.0);
    let before_2 = heard_n(2).await;
    let (in_before, out_before) = redis_bytes(c.redis.port).await;
    const SENDS: i64 = 200;
    for i in 0..SENDS {
        c.send(1, &admin, &alice, &format!("n{i}")).await;
    }
    let live = on_0.notifications(SENDS as usize).await;
    let seqs: Vec<i64> = live.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (2..=SENDS + 1).collect::<Vec<_>>());
    let (in_after, out_after) = redis_bytes(c.redis.port).await;
    assert_eq!(
        heard_n(2).await,
        before_2,
        "node 2 heard alice's notifications"
    );
    assert!(
        heard_n(0).await >= SENDS as f64,
        "node 0 heard them on the bus"
    );
    // Redis sent one copy of each message, to node 0: about as many bytes as it was sent (to
    // every node it would have been three times as many).
    let ratio = (out_after - out_before) as f64 / (in_after - in_before) as f64;
    assert!(
        ratio < 1.5,
        "Redis sent {ratio:.2} bytes per byte published"
    );
    // A send to both reaches each of their nodes once.
    c.send_ids(
        1,
        &admin,
        &[alice.id.0, bob.id.0],
        json!({ "title": "both" }),
    )
    .await;
    assert_eq!(on_0.notifications(1).await[0]["title"], "both");
    assert_eq!(on_2.notifications(1).await[0]["title"], "both");
    assert_eq!(heard_n(2).await, before_2 + 1.0);
}

/// A bus prefix of a test's own.
fn fresh_prefix() -> String {
    format!("tickethub-test-{}", uuid::Uuid::new_v4().simple())
}

/// An in-process hub's settings for the Redis at `url`, under `prefix`, reconciling every
/// `reconcile` seconds.
fn on_bus(
    url: &str,
    prefix: &str,
    reconcile: u64,
) -> impl FnOnce(&mut tickethub::config::ServeConfig) {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    move |c| {
        c.redis_url = Some(url);
        c.redis_prefix = prefix;
        c.bus_reconcile_interval = reconcile;
    }
}

/// A node that subscribes to a new user's shard while a commit for that user is published
/// loses nothing: its subscription is held back (fault injection) until the commit has
/// crossed Redis, and the user still gets it once the node hears the shard, though the
/// periodic reconciliation is out of the way.
pub(super) async fn a_commit_published_while_a_node_subscribes_is_not_lost(backend: Backend) {
    let (url, prefix) = (crate::harness::redis(), fresh_prefix());
    let a = TestHub::start_with(&backend, on_bus(&url, &prefix, 3600)).await;
    let b = a.sibling_with(on_bus(&url, &prefix, 3600)).await;
    let admin = a.user("boss", Role::Admin).await;
    let alice = a.user("alice", Role::Client).await;
    // The test listens on alice's shard itself, to know when the commit has crossed Redis.
    let listener =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&url).unwrap())
            .build_subscriber_client()
            .unwrap();
    fred::prelude::ClientLike::init(&listener).await.unwrap();
    let mut crossed = fred::prelude::EventInterface::message_rx(&listener);
    fred::prelude::PubsubInterface::subscribe(
        &listener,
        format!("{prefix}:bus:u:{}", tickethub::bus::shard(alice.id)),
    )
    .await
    .unwrap();
    let faults = b.hub.bus_faults().expect("a Redis bus has faults");
    faults.hold_subscriptions.send_replace(true);
    let mut ws = b.connect(&alice).await;
    let (status, _) = a
        .try_send(&admin, &[&alice], json!({ "title": "in flight" }))
        .await;
    assert_eq!(status, 201);
    let message = tokio::time::timeout(crate::harness::patience(), crossed.recv())
        .await
        .expect("the commit crosses Redis")
        .unwrap();
    // A notification to one user crosses whole.
    assert!(message.value.as_string().unwrap().contains("|m|"));
    faults.hold_subscriptions.send_replace(false);
    let got = ws.notifications(1).await;
    assert_eq!(got[0]["title"], "in flight");
    assert_eq!(got[0]["seq"], 1);
    let _ = fred::prelude::ClientLike::quit(&listener).await;
}

/// An inbox change whose bus message is lost without any sign of a gap (the node that holds
/// the tab drops everything it hears, fault injection: no reconnect, no lag) reaches the tab at
/// the next periodic reconciliation, once; a change the node heard live is not told again by
/// the passes that follow.
pub(super) async fn an_inbox_change_lost_without_a_sign_reaches_the_tab_at_the_next_pass(
    backend: Backend,
) {
    let (url, prefix) = (crate::harness::redis(), fresh_prefix());
    let a = TestHub::start_with(&backend, on_bus(&url, &prefix, 1)).await;
    let b = a.sibling_with(on_bus(&url, &prefix, 1)).await;
    let admin = a.user("boss", Role::Admin).await;
    let alice = a.user("alice", Role::Client).await;
    let mut tab = b.connect(&alice).await;
    for title in ["one", "two"] {
        a.send(&admin, &[&alice], json!({ "title": title })).await;
    }
    let ids: Vec<i64> = tab
        .notifications(2)
        .await
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    let read = |id: i64| format!("/api/notifications/{id}/mark-as-read/");
    // Heard live.
    a.post_as(&alice, &read(ids[0]), json!({}), 200).await;
    let heard = tab.next_of("notification_updated").await;
    assert_eq!(
        (heard["id"].as_i64(), heard["is_read"].as_bool()),
        (Some(ids[0]), Some(true))
    );
    // Lost on its way to node b, which notices nothing.
    b.hub
        .bus_faults()
        .expect("a Redis bus has faults")
        .drop_received
        .send_replace(true);
    a.post_as(&alice, &read(ids[1]), json!({}), 200).await;
    let healed = tab.next_of("notification_updated").await;
    assert_eq!(
        (healed["id"].as_i64(), healed["is_read"].as_bool()),
        (Some(ids[1]), Some(true))
    );
    // A notification sent now reaches the tab by a later pass too (node b still hears
    // nothing); the passes up to it told neither read again.
    a.send(&admin, &[&alice], json!({ "title": "three" })).await;
    loop {
        let frame = tab.next_json().await;
        match frame["type"].as_str() {
            Some("notification") => {
                assert_eq!(frame["title"], "three");
                break;
            }
            Some("pong") => {}
            _ => panic!("told again, or unexpected: {frame}"),
        }
    }
}

/// A subscriber that is connected but hears nothing (as one left on a demoted Redis does) is
/// found out by its own probe going unheard, and reconnected: what it missed reaches the tab
/// by the resync that follows, with no periodic pass to heal it (one an hour).
pub(super) async fn a_subscriber_that_hears_nothing_is_reconnected_and_resyncs(backend: Backend) {
    let (url, prefix) = (crate::harness::redis(), fresh_prefix());
    let a = TestHub::start_with(&backend, on_bus(&url, &prefix, 3600)).await;
    let b = a.sibling_with(on_bus(&url, &prefix, 3600)).await;
    let admin = a.user("boss", Role::Admin).await;
    let alice = a.user("alice", Role::Client).await;
    let mut tab = b.connect(&alice).await;
    a.send(&admin, &[&alice], json!({ "title": "heard" })).await;
    assert_eq!(tab.notifications(1).await[0]["title"], "heard");
    let faults = b.hub.bus_faults().expect("a Redis bus has faults");
    let mut deaf = faults.deaf.subscribe();
    faults.deaf.send_replace(true);
    a.send(&admin, &[&alice], json!({ "title": "unheard" }))
        .await;
    let missed = tab.notifications(1).await;
    assert_eq!(
        (missed[0]["title"].as_str(), missed[0]["seq"].as_i64()),
        (Some("unheard"), Some(2))
    );
    // It came by the reconnect, which is what ends the deafness.
    deaf.wait_for(|deaf| !deaf).await.unwrap();
    assert!(b.metrics().await.total("tickethub_bus_deaf_total") >= 1.0);
}

/// On a Redis Cluster of three masters and three replicas (sharded pub/sub): notifications,
/// inbox changes, board events and presence cross from node 0 to node 1; then the master that
/// serves the bus's common channel is killed, its replica takes over, and all of it crosses
/// again, though no socket reconnected.
pub(super) async fn a_redis_cluster_carries_everything_through_a_failover() {
    // Leases of 3 s, renewed every second: shorter than the failover, so a lease on the dead
    // master can run out or be lost in it, and no node may reap one before its holder renewed.
    let c = Cluster::start_on_redis_cluster(
        &postgres(),
        2,
        &["--presence-lease", "3", "--presence-grace-ms", "300"],
    )
    .await;
    everything_crosses_a_failover(c).await;
}

/// A master the bus's common channel does not live on fails over (no node's subscriber loses
/// its connection to the common channel). Rooms whose channels live on that master, opened
/// while it is down and once its replica has taken over, cross between the nodes.
pub(super) async fn rooms_on_a_failed_over_master_cross() {
    let mut c = Cluster::start_on_redis_cluster(&postgres(), 2, &[]).await;
    let (alice, bob, _, _) = three_in_a_project(&c).await;
    let redis = c.redis_cluster.as_ref().unwrap();
    let common = redis.master_of(&format!("{}:bus", c.prefix)).await;
    let gone = (0..3).find(|m| *m != common).unwrap();
    // Projects whose channels live on that master: three for while it is down, three after.
    let mut projects = Vec::new();
    for k in 0.. {
        if projects.len() == 6 {
            break;
        }
        let project = new_project(&c, k, &[&alice, &bob]).await;
        if redis
            .master_of(&format!("{}:bus:p:{project}", c.prefix))
            .await
            == gone
        {
            projects.push(project);
        }
    }
    c.redis_cluster.as_mut().unwrap().servers[gone].kill().await;
    let (during, after) = projects.split_at(3);
    for (k, project) in during.iter().enumerate() {
        let (watcher, joiner) = if k % 2 == 0 { (1, 0) } else { (0, 1) };
        room_crosses(&c, &alice, &bob, *project, watcher, joiner).await;
    }
    let channel = format!("{}:bus:p:{}", c.prefix, after[0]);
    let redis = c.redis_cluster.as_ref().unwrap();
    eventually("a replica takes over the slot", || async {
        redis
            .try_master_of(&channel)
            .await
            .is_some_and(|master| master != gone)
    })
    .await;
    for (k, project) in after.iter().enumerate() {
        let (watcher, joiner) = if k % 2 == 0 { (0, 1) } else { (1, 0) };
        room_crosses(&c, &alice, &bob, *project, watcher, joiner).await;
    }
}

/// The same with a primary and its replica watched by a Sentinel (`redis-sentinel://`): the
/// primary is killed, the Sentinel promotes the replica, and fred finds it through the Sentinel.
pub(super) async fn a_sentinel_failover_carries_everything() {
    let c = Cluster::start_on_redis_sentinel(
        &postgres(),
        2,
        &["--presence-lease", "3", "--presence-grace-ms", "300"],
    )
    .await;
    everything_crosses_a_failover(c).await;
}

/// Notifications, inbox changes, board events and presence cross from node 0 to node 1, before
/// and after the Redis the nodes use fails over to a replica.
pub(super) async fn everything_crosses_a_failover(mut c: Cluster) {
    let admin = c.user("boss", Role::Admin).await;
    let (alice, bob, carol, project) = three_in_a_project(&c).await;
    // Alice's notification tab, her presence and Bob's board are on node 1.
    let mut tab = c.connect(1, &alice, None).await;
    let (mut presence, _) = presence_on(&c, 1, &alice, project).await;
    let board = format!(
        "ws://{}/ws/projects/{project}/tickets/?token={}",
        c.nodes[1].addr,
        c.token(&bob)
    );
    let mut board = Ws::connect(&board).await;
    assert_eq!(board.next_json().await["type"], "connection_established");
    let mut seq = 0;
    let mut joiners = vec![&bob, &carol].into_iter();
    let mut present = Vec::new();
    for round in ["before", "after"] {
        if round == "after" {
            let channel = format!("{}:bus", c.prefix);
            c.fail_over_redis(&channel).await;
            // Rooms opened at once, while the nodes follow the cluster to the new master.
            rooms_opened_after_a_failover_cross(&c, &alice, &bob, 0).await;
            // Both nodes lost their connection to that master: each has reconnected,
            // resubscribed and resynced before the round (what was published into the gap is
            // the resync's to make up; live events after it must cross).
            let c = &c;
            for node in 0..2 {
                eventually("the node resynced after the failover", || async move {
                    c.counter_with(
                        node,
                        "tickethub_bus_catch_ups_total",
                        &["reason=\"resync\""],
                    )
                    .await
                        >= 1.0
                })
                .await;
            }
        }
        // A notification committed on node 0 reaches the tab on node 1 (at the latest once the
        // node has resubscribed and caught up).
        c.send(0, &admin, &alice, round).await;
        seq += 1;
        let n = tab.notifications(1).await.remove(0);
        assert_eq!(
            (n["seq"].as_i64(), n["title"].as_str()),
            (Some(seq), Some(round))
        );
        // An inbox change on node 0 reaches it too.
        let id = n["id"].as_i64().unwrap();
        c.post(
            0,
            &alice,
            &format!("/api/notifications/{id}/mark_as_read/"),
            json!({}),
            200,
        )
        .await;
        let v = tab.next_of("notification_updated").await;
        assert_eq!(
            (v["id"].as_i64(), v["is_read"].as_bool()),
            (Some(id), Some(true))
        );
        // A ticket filed on node 0 reaches the board on node 1.
        let ticket = c
            .post(
                0,
                &carol,
                "/api/tickets/",
                json!({"project": project, "title": round, "description": "d", "priority": "LOW", "category": "BUG"}),
                201,
            )
            .await;
        loop {
            let v = board.next_json().await;
            if v["type"] == "ticket_update" && v["data"]["ticket_id"] == ticket["id"] {
                break;
            }
        }
        // Someone joining the project's presence on node 0 is seen on node 1, and Bob, present
        // on node 0 since the first round, is never shown leaving: the failover may have lost
        // or let run out his lease, and no node reaps it before node 0 renewed it.
        let joiner = joiners.next().unwrap();
        present.push(presence_on(&c, 0, joiner, project).await.0);
        let skipped = until_status(&mut presence, "joined", joiner.id.0).await;
        assert!(
            !skipped.contains(&("left".to_owned(), bob.id.0)),
            "{round}: Bob was shown leaving: {skipped:?}"
        );
    }
    // And leaving: Carol's socket on node 0 closes, and node 1 sees her leave after the grace.
    drop(present.pop());
    until_status(&mut presence, "left", carol.id.0).await;
    // And once the nodes have settled.
    rooms_opened_after_a_failover_cross(&c, &alice, &bob, 6).await;
}

/// Rooms no node had subscribed to before the failover: their channels are subscribed to
/// wherever their slots live now, on both nodes. Several projects, so that their channels
/// fall on every master, the one that took over included.
async fn rooms_opened_after_a_failover_cross(c: &Cluster, alice: &User, bob: &User, first: usize) {
    for k in first..first + 6 {
        let project = new_project(c, k, &[alice, bob]).await;
        // The watcher on one node, the joiner on the other, each way in turn.
        let (watcher, joiner) = if k % 2 == 0 { (1, 0) } else { (0, 1) };
        room_crosses(c, alice, bob, project, watcher, joiner).await;
    }
}

/// Project `NEW<k>` of these members; answers its id.
async fn new_project(c: &Cluster, k: usize, members: &[&User]) -> i64 {
    let members: Vec<_> = members.iter().map(|u| u.id).collect();
    c.store
        .create_project(&format!("NEW{k}"), "New", &members)
        .await
        .unwrap()
        .id
        .0
}

/// Bob joining a project's presence on node `joiner` is seen by Alice watching on `watcher`.
async fn room_crosses(
    c: &Cluster,
    alice: &User,
    bob: &User,
    project: i64,
    watcher: usize,
    joiner: usize,
) {
    let (mut watching, _) = presence_on(c, watcher, alice, project).await;
    let (_joined, _) = presence_on(c, joiner, bob, project).await;
    until_status(&mut watching, "joined", bob.id.0).await;
}

/// Reads `user_status` frames until `user` has `action` (each within the socket's patience);
/// answers the ones read before it.
pub(super) async fn until_status(ws: &mut Ws, action: &str, user: i64) -> Vec<(String, i64)> {
    let mut before = Vec::new();
    loop {
        let status = next_status(ws).await;
        if status == (action.to_owned(), user) {
            return before;
        }
        before.push(status);
    }
}
