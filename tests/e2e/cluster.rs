//! Several hub processes on one database and one Redis behave as one hub.

use serde_json::json;
use tickethub_actors::domain::Role;

use crate::both_backends;
use crate::harness::{redis, Backend, TestHub};

both_backends!(a_user_on_one_node_hears_of_commits_on_another);

async fn a_user_on_one_node_hears_of_commits_on_another(backend: Backend) {
    let Some(url) = redis() else { return };
    // A prefix of its own keeps parallel tests' messages apart.
    let prefix = format!("tickethub-test-{}", uuid::Uuid::new_v4().simple());
    let (u1, p1) = (url.clone(), prefix.clone());
    let a = TestHub::start_with(&backend, move |c| {
        c.redis_url = Some(u1);
        c.redis_prefix = p1;
    })
    .await;
    let b = a
        .sibling_with(move |c| {
            c.redis_url = Some(url);
            c.redis_prefix = prefix;
        })
        .await;
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
            .post(
                "/api/notifications/send/",
                Some(&via.token(&admin)),
                json!({"user_ids": [alice.id.0], "title": format!("n{i}"), "message": "m"}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let live = ws.notifications(TOTAL as usize).await;
    let seqs: Vec<i64> = live.iter().map(|n| n["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=TOTAL).collect::<Vec<_>>());
    assert!(live.iter().all(|n| n["replayed"] == false));
    assert_eq!(live[0]["title"], "n0");
}

#[tokio::test]
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
