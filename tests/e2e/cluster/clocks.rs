//! Nodes whose wall clocks disagree (one runs under a clock shim, moved while it runs): timed
//! rows are due by the database's clock and presence leases run by Redis's, so a node set
//! ahead fires nothing early and a node set behind keeps its users present.

use super::*;
use chrono::SubsecRound;

/// Makes node `k` skewable, restarts it, and moves its clock `seconds`; waits until its
/// answers' `Date` says so.
async fn skew(c: &mut Cluster, k: usize, seconds: i64) {
    if c.nodes[k].clock_is_fixed() {
        c.nodes[k].skewable();
        c.nodes[k].kill().await;
        c.nodes[k].restart().await;
    }
    c.nodes[k].skew(seconds);
    let url = c.nodes[k].url("/api/health/");
    let http = c.http.clone();
    eventually(&format!("node {k}'s clock is {seconds:+} s off"), || {
        let (url, http) = (url.clone(), http.clone());
        async move {
            let Ok(answer) = http.get(&url).send().await else {
                return false;
            };
            let date = answer
                .headers()
                .get("date")
                .and_then(|d| d.to_str().ok())
                .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
            date.is_some_and(|d| {
                let off = (d.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
                (off - seconds).abs() <= 2
            })
        }
    })
    .await;
}

/// A send scheduled through node 0 for 3 s from now arrives no earlier, though node 1, whose
/// clock runs a minute ahead, looks for due sends every 100 ms.
pub(super) async fn a_node_whose_clock_runs_ahead_fires_no_scheduled_send_early() {
    let mut c = Cluster::start(&postgres(), 2, &["--escalation-poll-ms", "100"]).await;
    skew(&mut c, 1, 60).await;
    let admin = c.user("root", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let mut ws = c.connect(0, &alice, None).await;
    for round in 0..3 {
        let send_at = chrono::Utc::now() + chrono::Duration::seconds(3);
        let body = json!({
            "user_ids": [alice.id.0], "title": format!("later {round}"), "message": "m",
            "send_at": send_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        c.post(0, &admin, "/api/notifications/send/", body, 202)
            .await;
        let frame = loop {
            let frame = ws.next_json().await;
            if frame["type"] == "notification" {
                break frame;
            }
        };
        let arrived = chrono::Utc::now();
        assert_eq!(frame["title"], format!("later {round}"));
        assert!(
            arrived >= send_at,
            "round {round}: arrived {} ms before its send_at",
            (send_at - arrived).num_milliseconds()
        );
    }
}

/// Two nodes with 3-s presence leases, and Alice, Bob and Carol in one project.
async fn presence_cluster() -> (Cluster, User, User, i64) {
    let c = Cluster::start(
        &postgres(),
        2,
        &["--presence-lease", "3", "--presence-grace-ms", "300"],
    )
    .await;
    let (alice, bob, _, project) = three_in_a_project(&c).await;
    (c, alice, bob, project)
}

/// Waits until Bob, opening a presence socket on node 0, is told Alice is present.
async fn node_0_sees(c: &Cluster, alice: &User, bob: &User, project: i64, what: &str) {
    eventually(&format!("node 0 sees Alice on node 1 ({what})"), || async {
        let (_, state) = presence_on(c, 0, bob, project).await;
        state["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["user_id"] == alice.id.0)
    })
    .await;
}

/// Alice's presence on node 1 holds on node 0 whether node 1's clock runs half a minute behind
/// (ten leases) or ahead; and once node 1 (ahead) dies, she leaves within the lease, not
/// half a minute later.
pub(super) async fn presence_holds_across_nodes_whose_clocks_disagree() {
    let (mut c, alice, bob, project) = presence_cluster().await;
    for offset in [-30, 30] {
        skew(&mut c, 1, offset).await;
        let (a1, _) = presence_on(&c, 1, &alice, project).await;
        node_0_sees(&c, &alice, &bob, project, &format!("{offset:+} s")).await;
        if offset < 0 {
            drop(a1);
            continue;
        }
        let (mut b0, _) = presence_on(&c, 0, &bob, project).await;
        c.nodes[1].kill().await;
        assert_eq!(next_status(&mut b0).await, ("left".into(), alice.id.0));
        drop(a1);
    }
}

/// Node 1's clock jumps 50 s ahead while Alice is present through it: every lease it renews
/// after the jump still runs out a lease's length (3 s) after Redis's time, so once it dies
/// she leaves within the lease rather than fifty seconds later.
pub(super) async fn a_lease_renewed_just_after_a_clock_jump_runs_out_by_redis_clock() {
    let (mut c, alice, bob, project) = presence_cluster().await;
    skew(&mut c, 1, 0).await;
    let (a1, _) = presence_on(&c, 1, &alice, project).await;
    let (mut b0, _) = presence_on(&c, 0, &bob, project).await;
    node_0_sees(&c, &alice, &bob, project, "clocks agree").await;
    let redis = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&c.redis.url()).unwrap(),
    )
    .build()
    .unwrap();
    fred::prelude::ClientLike::init(&redis).await.unwrap();
    let key = format!("{}:presence:{project}", c.prefix);
    let field = format!("{}@", alice.id.0);
    c.nodes[1].skew(50);
    // Renewed every second: four renewals after the jump are watched, each read beside Redis's
    // own time.
    let (mut renewals, mut last) = (0, None);
    while renewals < 4 {
        // Redis's time (seconds, microseconds), then the hash's fields and values.
        let reply: Vec<String> = fred::prelude::LuaInterface::eval(
            &redis,
            "local t = redis.call('TIME') local all = redis.call('HGETALL', KEYS[1]) \
             table.insert(all, 1, t[2]) table.insert(all, 1, t[1]) return all",
            vec![key.clone()],
            None::<String>,
        )
        .await
        .unwrap();
        let now = reply[0].parse::<i64>().unwrap() * 1000 + reply[1].parse::<i64>().unwrap() / 1000;
        let value = reply[2..]
            .chunks(2)
            .find(|pair| pair[0].starts_with(&field))
            .map(|pair| &pair[1])
            .expect("Alice's lease on node 1 is held");
        let lease: Value = serde_json::from_str(value).unwrap();
        let expiry = lease["x"].as_i64().unwrap();
        assert!(
            expiry <= now + 3_000,
            "Alice's lease runs out {} ms after Redis's time, past the 3-s lease",
            expiry - now
        );
        if last.is_some_and(|x| x != expiry) {
            renewals += 1;
        }
        last = Some(expiry);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    c.nodes[1].kill().await;
    assert_eq!(next_status(&mut b0).await, ("left".into(), alice.id.0));
    drop(a1);
    let _ = fred::prelude::ClientLike::quit(&redis).await;
}

/// A send scheduled through a node whose clock runs ahead is due when it asked, by the
/// database's clock: a `send_at` is kept as given, not moved up to the node's "now", and a
/// `delay` runs from the database's now, not from the node's.
pub(super) async fn a_send_scheduled_through_a_node_whose_clock_runs_ahead_is_due_on_time() {
    let mut c = Cluster::start(&postgres(), 2, &[]).await;
    skew(&mut c, 1, 40).await;
    let admin = c.user("root", Role::Admin).await;
    let alice = c.user("alice", Role::Client).await;
    let due = |answer: &Value| {
        let at = answer["send_at"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let send_at = chrono::Utc::now() + chrono::Duration::seconds(20);
    let body = json!({
        "user_ids": [alice.id.0], "title": "at", "message": "m",
        "send_at": send_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let answer = c
        .post(1, &admin, "/api/notifications/send/", body, 202)
        .await;
    assert_eq!(due(&answer), send_at.trunc_subsecs(0), "{answer}");

    let before = chrono::Utc::now();
    let body = json!({"user_ids": [alice.id.0], "title": "in", "message": "m", "delay": "20s"});
    let answer = c
        .post(1, &admin, "/api/notifications/send/", body, 202)
        .await;
    let after = chrono::Utc::now();
    let (earliest, latest) = (
        before + chrono::Duration::seconds(19),
        after + chrono::Duration::seconds(21),
    );
    assert!(
        (earliest..=latest).contains(&due(&answer)),
        "due {} by a node 40 s ahead, not within {earliest}..{latest}",
        due(&answer)
    );
}
