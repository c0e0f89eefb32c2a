//! A database outage: the hub stays up, says so at once, and resumes when the database is
//! back. PostgreSQL is reached through a proxy in the test that can be cut, as if the server
//! stopped; the real server keeps serving the other tests.

use serde_json::json;
use tickethub_actors::domain::Role;

use crate::harness::{eventually, patience, Backend, Proxy, TestDb, TestHub};

/// `postgres://user@host:port/db` with `host:port` replaced by the proxy's.
fn through(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, rest) = rest.split_once('@').map_or(("", rest), |(a, r)| (a, r));
    let (hostport, path) = rest.split_once('/').unwrap();
    let at = if auth.is_empty() { "" } else { "@" };
    (
        format!("{scheme}://{auth}{at}127.0.0.1:{port}/{path}"),
        hostport.to_owned(),
    )
}

/// A hub on a fresh PostgreSQL database that it reaches through a [`Proxy`].
async fn behind_a_proxy(
    tweak: impl FnOnce(&mut tickethub::config::ServeConfig),
) -> (TestHub, Proxy) {
    let mut db = TestDb::create(&Backend::postgres()).await;
    let (_, upstream) = through(&db.url, 0);
    let proxy = Proxy::start(upstream).await;
    db.url = through(&db.url, proxy.port).0;
    (TestHub::start_on(db, tweak).await, proxy)
}

async fn a_database_outage_is_answered_at_once_and_healed_when_it_ends() {
    let (hub, proxy) = behind_a_proxy(|c| c.db_acquire_timeout_ms = 500).await;
    let alice = hub.user("alice", Role::Client).await;
    let token = hub.token(&alice);
    let mut ws = hub.connect(&alice).await;
    assert_eq!(hub.get("/readyz", None).await.0, 200);

    proxy.down();
    // The proxy holds every new connection without an answer, as a hung server would: a probe
    // or a request that waited on the database unbounded would never be answered. That they
    // are answered at all (within the test's patience, not a time the test measures, which a
    // loaded machine stretches) shows the probe's and the acquire timeout's bounds at work.
    let (status, body) = tokio::time::timeout(patience(), hub.get("/readyz", None))
        .await
        .expect("the probe answers while the database hangs");
    assert_eq!(
        (status, body["database"].as_str()),
        (503, Some("unreachable"))
    );
    let (status, body) =
        tokio::time::timeout(patience(), hub.get("/api/notifications/", Some(&token)))
            .await
            .expect("the API answers while the database hangs");
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    // The socket stays open; a command that needs the database says it is unavailable.
    ws.send_json(json!({"type": "get_notifications"})).await;
    let answer = ws.next_json().await;
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{answer}"
    );

    proxy.up();
    eventually("the hub is ready again", || async {
        hub.get("/readyz", None).await.0 == 200
    })
    .await;
    assert_eq!(hub.get("/api/notifications/", Some(&token)).await.0, 200);
    ws.send_json(json!({"type": "get_notifications"})).await;
    assert_eq!(ws.next_json().await["type"], "notifications_list");
}

/// `--db-max-connections` bounds the connections a hub opens to PostgreSQL, so that several
/// hubs can share one server's `max_connections`: forty calls at once go through two.
async fn a_hub_opens_at_most_its_database_connections() {
    let (hub, proxy) = behind_a_proxy(|c| c.db_max_connections = 2).await;
    let alice = hub.user("alice", Role::Client).await;
    let token = hub.token(&alice);
    let calls = (0..40).map(|_| hub.get("/api/notifications/", Some(&token)));
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    let opened = proxy.carried();
    assert!(
        (1..=2).contains(&opened),
        "the hub opened {opened} connections"
    );
}

crate::trials! {
    both: [],
    tests: [
        a_database_outage_is_answered_at_once_and_healed_when_it_ends,
        a_hub_opens_at_most_its_database_connections,
    ],
    sync: [],
}
