//! Every throttle the README lists refuses with its documented answer and counts itself in
//! `tickethub_throttled_total{limit}`.

use serde_json::{json, Value};
use tickethub_actors::domain::Role;

use crate::harness::{Backend, TestHub};

/// The refusals of `limit` counted so far.
async fn refused(hub: &TestHub, limit: &str) -> f64 {
    hub.metrics().await.value(
        "tickethub_throttled_total",
        &[&format!("limit=\"{limit}\"")],
    )
}

/// POSTs `body` to `path` as if from client address `from` (the hub trusts the loopback
/// proxy); answers the status and the `Retry-After` header.
async fn post_from(hub: &TestHub, path: &str, from: &str, body: Value) -> (u16, Option<u64>) {
    let res = hub
        .http
        .post(hub.url(path))
        .header("x-forwarded-for", from)
        .json(&body)
        .send()
        .await
        .unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (res.status().as_u16(), retry)
}

async fn every_throttle_refuses_with_retry_after_and_counts_itself() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.login_per_minute = 2;
        c.register_per_hour = 1;
        c.ws_commands_per_second = 1;
        c.ws_command_burst = 2;
        c.password_hashing_concurrency = 1;
        c.password_hashing_wait_ms = 1;
    })
    .await;
    let alice = hub.user("alice", Role::Client).await;
    let limits = [
        "login_ip",
        "login_username",
        "refresh_ip",
        "register_ip",
        "password_hashing",
        "ws_commands",
    ];
    let mut before = Vec::new();
    for limit in limits {
        before.push(refused(&hub, limit).await);
    }
    let wrong = |who: &str| json!({"username": who, "password": "wrong-password"});

    // login_ip: three names from one address; the third is refused before any hashing.
    assert_eq!(
        post_from(&hub, "/api/auth/login/", "10.9.0.1", wrong("x1"))
            .await
            .0,
        401
    );
    assert_eq!(
        post_from(&hub, "/api/auth/login/", "10.9.0.1", wrong("x2"))
            .await
            .0,
        401
    );
    let (status, retry) = post_from(&hub, "/api/auth/login/", "10.9.0.1", wrong("x3")).await;
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");

    // login_username: one name from three addresses.
    for from in ["10.9.1.1", "10.9.1.2"] {
        assert_eq!(
            post_from(&hub, "/api/auth/login/", from, wrong("alice"))
                .await
                .0,
            401
        );
    }
    let (status, retry) = post_from(&hub, "/api/auth/login/", "10.9.1.3", wrong("alice")).await;
    assert_eq!((status, retry.is_some()), (429, true));

    // refresh_ip: six times the logins per address (12), then 429.
    for i in 0..12 {
        let (status, _) = post_from(
            &hub,
            "/api/auth/refresh/",
            "10.9.2.1",
            json!({"refresh": "forged"}),
        )
        .await;
        assert_eq!(status, 401, "refresh {i}");
    }
    let (status, retry) = post_from(
        &hub,
        "/api/auth/refresh/",
        "10.9.2.1",
        json!({"refresh": "forged"}),
    )
    .await;
    assert_eq!((status, retry.is_some()), (429, true));
    // Another address still refreshes.
    assert_eq!(
        post_from(
            &hub,
            "/api/auth/refresh/",
            "10.9.2.2",
            json!({"refresh": "forged"})
        )
        .await
        .0,
        401
    );

    // register_ip: one an hour.
    let signup = |name: &str| json!({"username": name, "password": "long-enough-pass"});
    assert_eq!(
        post_from(&hub, "/api/auth/register/", "10.9.3.1", signup("newbie1"))
            .await
            .0,
        201
    );
    let (status, retry) =
        post_from(&hub, "/api/auth/register/", "10.9.3.1", signup("newbie2")).await;
    assert_eq!((status, retry.is_some()), (429, true));

    // password_hashing: one hash at a time, 1 ms to wait for it; of sixteen logins at once
    // (each from its own address, under every other limit) some find it busy: 503.
    for i in 0..16 {
        hub.user(&format!("u{i}"), Role::Client).await;
    }
    let logins = (0..16).map(|i| {
        let hub = &hub;
        async move {
            post_from(
                hub,
                "/api/auth/login/",
                &format!("10.9.4.{i}"),
                json!({"username": format!("u{i}"), "password": format!("u{i}-password")}),
            )
            .await
        }
    });
    let answers = futures::future::join_all(logins).await;
    assert!(answers.iter().any(|a| a.0 == 503), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| a.0 == 200 || (a.0 == 503 && a.1 == Some(1))),
        "{answers:?}"
    );

    // ws_commands: a socket's frames past its burst are answered `rate_limited`.
    let mut ws = hub.connect(&alice).await;
    for _ in 0..4 {
        ws.send_json(json!({"type": "ping"})).await;
    }
    let refusal = ws.next_of("error").await;
    assert_eq!(refusal["code"], "rate_limited", "{refusal}");

    for (limit, before) in limits.iter().zip(before) {
        let after = refused(&hub, limit).await;
        assert!(after > before, "{limit}: {before} → {after}");
    }
}

crate::trials! {
    both: [],
    tests: [
        every_throttle_refuses_with_retry_after_and_counts_itself,
    ],
    sync: [],
}
