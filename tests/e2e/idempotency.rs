//! `Idempotency-Key`, end to end: a retried send, ticket, action or comment answers as the
//! first try did and notifies nobody again, on the same node, on another node, and after the
//! hub was killed with `kill -9` while requests were in flight.

use serde_json::{json, Value};
use tickethub_actors::domain::Role;

use crate::harness::{
    db_number, patience, send_body, test_config, Backend, TestDb, TestHub, SECRET, SEND,
};

/// A POST with a bearer token and an `Idempotency-Key`; answers the status, whether the
/// answer was replayed, and the body.
async fn post_once(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> (u16, bool, Value) {
    let res = http
        .post(url)
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, res.json().await.unwrap_or(Value::Null))
}

/// How many notifications titled `title` exist.
async fn titled(db: &TestDb, title: &str) -> i64 {
    db_number(
        db,
        &format!("SELECT COUNT(*) FROM notifications WHERE title = '{title}'"),
    )
    .await
}

async fn retried_writes_answer_as_the_first_and_notify_nobody_again(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let dev = hub.user("dev", Role::Developer).await;
    let token = hub.token(&admin);
    let url = hub.url(SEND);
    let mut ws = hub.connect(&alice).await;

    let body = send_body(&[alice.id.0], json!({"title": "Deploy done"}));
    let first = post_once(&hub.http, &url, &token, "k-1", &body).await;
    assert_eq!(first, (201, false, json!({"success": true, "count": 1})));
    for _ in 0..3 {
        let again = post_once(&hub.http, &url, &token, "k-1", &body).await;
        assert_eq!(again, (201, true, json!({"success": true, "count": 1})));
    }
    assert_eq!(titled(&hub.db, "Deploy done").await, 1);
    // The socket got it once: the next notification it sees is the marker sent after.
    assert_eq!(ws.next_of("notification").await["title"], "Deploy done");
    hub.send(&admin, &[&alice], json!({"title": "marker"}))
        .await;
    assert_eq!(ws.next_of("notification").await["title"], "marker");

    // The same key with another body is refused; another caller's key of that name is theirs.
    let other = send_body(&[alice.id.0], json!({"title": "Deploy failed"}));
    let (status, _, res) = post_once(&hub.http, &url, &token, "k-1", &other).await;
    assert_eq!(status, 422, "{res}");
    let admin2 = hub.user("boss2", Role::Admin).await;
    let (status, replayed, _) =
        post_once(&hub.http, &url, &hub.token(&admin2), "k-1", &other).await;
    assert_eq!((status, replayed), (201, false));
    assert_eq!(titled(&hub.db, "Deploy failed").await, 1);
    // Keys must be 1 to 255 visible ASCII characters.
    for bad in ["x".repeat(256), "with space".to_owned()] {
        let (status, _, res) = post_once(&hub.http, &url, &token, &bad, &body).await;
        assert_eq!(status, 400, "{res}");
    }
    // A try refused before it committed anything does not hold its key.
    let invalid = json!({"title": "no recipients", "message": "m"});
    let (status, _, _) = post_once(&hub.http, &url, &token, "k-2", &invalid).await;
    assert_eq!(status, 400);
    let valid = send_body(&[alice.id.0], json!({"title": "second try"}));
    let (status, replayed, _) = post_once(&hub.http, &url, &token, "k-2", &valid).await;
    assert_eq!((status, replayed), (201, false));

    // A ticket, an action and a comment, each retried.
    let project = hub.project("IDEM", &[&alice, &dev]).await;
    let client_token = hub.token(&alice);
    let create = json!({"project": project.id.0, "title": "Printer on fire", "description": "d"});
    let tickets = hub.url("/api/tickets/");
    let (status, _, ticket) = post_once(&hub.http, &tickets, &client_token, "t-1", &create).await;
    assert_eq!(status, 201);
    let again = post_once(&hub.http, &tickets, &client_token, "t-1", &create).await;
    assert_eq!(again, (201, true, ticket.clone()));
    assert_eq!(db_number(&hub.db, "SELECT COUNT(*) FROM tickets").await, 1);
    let id = ticket["id"].as_i64().unwrap();
    let open = hub.url(&format!("/api/tickets/{id}/open_ticket/"));
    let (status, _, opened) = post_once(&hub.http, &open, &token, "a-1", &json!({})).await;
    assert_eq!((status, &opened["status"]), (200, &json!("OPEN")));
    let assign = hub.url(&format!("/api/tickets/{id}/assign/"));
    let devs = json!({"developer_ids": [dev.id.0]});
    let (status, _, assigned) = post_once(&hub.http, &assign, &token, "a-2", &devs).await;
    assert_eq!(status, 200, "{assigned}");
    let again = post_once(&hub.http, &assign, &token, "a-2", &devs).await;
    assert_eq!(again, (200, true, assigned));
    assert_eq!(
        db_number(
            &hub.db,
            "SELECT COUNT(*) FROM notifications WHERE notification_type = 'ticket_assigned'"
        )
        .await,
        1
    );
    // The key of the open action, used for another action, is refused.
    let (status, _, _) = post_once(&hub.http, &assign, &token, "a-1", &devs).await;
    assert_eq!(status, 422);
    let comments = hub.url(&format!("/api/tickets/{id}/comments/"));
    let text = json!({"body": "On it"});
    let (status, _, comment) =
        post_once(&hub.http, &comments, &hub.token(&dev), "c-1", &text).await;
    assert_eq!(status, 201, "{comment}");
    let again = post_once(&hub.http, &comments, &hub.token(&dev), "c-1", &text).await;
    assert_eq!(again, (201, true, comment));
    assert_eq!(db_number(&hub.db, "SELECT COUNT(*) FROM comments").await, 1);
}

async fn a_retry_sent_to_another_node_answers_from_the_record(backend: Backend) {
    let a = TestHub::start(&backend).await;
    let b = a.sibling().await;
    let admin = a.user("boss", Role::Admin).await;
    let alice = a.user("alice", Role::Client).await;
    let token = a.token(&admin);
    let body = send_body(&[alice.id.0], json!({"title": "Across nodes"}));
    let first = post_once(&a.http, &a.url(SEND), &token, "x-1", &body).await;
    assert_eq!(first.0, 201);
    let second = post_once(&b.http, &b.url(SEND), &token, "x-1", &body).await;
    assert_eq!(second, (201, true, first.2));
    assert_eq!(titled(&a.db, "Across nodes").await, 1);

    // Two nodes given the same new key at once: one commits, the other answers as it did (or
    // asks to retry while it runs); never two notifications.
    let body = send_body(&[alice.id.0], json!({"title": "Raced"}));
    let (url_a, url_b) = (a.url(SEND), b.url(SEND));
    let (ra, rb) = tokio::join!(
        post_once(&a.http, &url_a, &token, "x-2", &body),
        post_once(&b.http, &url_b, &token, "x-2", &body),
    );
    for (status, _, res) in [&ra, &rb] {
        assert!(*status == 201 || *status == 409, "{status}: {res}");
    }
    assert!(ra.0 == 201 || rb.0 == 201);
    assert_eq!(titled(&a.db, "Raced").await, 1);
}

/// Sends with a key until a final answer: a 409 (the first try still holds the key) is
/// retried after its `Retry-After`, and a refused connection after a short wait.
async fn send_until_answered(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> (u16, bool) {
    let deadline = tokio::time::Instant::now() + patience() * 3;
    loop {
        let res = http
            .post(url)
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await;
        match res {
            Ok(r) if r.status() != 409 => {
                let replayed = r.headers().get("idempotent-replayed").is_some();
                return (r.status().as_u16(), replayed);
            }
            Ok(r) => {
                let wait: u64 = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .expect("a 409 says when to retry");
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            }
            Err(e) => panic!("{key}: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} was never answered"
        );
    }
}

async fn a_retry_after_kill_9_between_commit_and_answer_notifies_once(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let (admin, alice) = crate::harness::admin_and_client(&db).await;
    let auth = tickethub::auth::Auth::from_config(&test_config(&db.url), Some(SECRET)).unwrap();
    let token = auth.issue_access(&admin).unwrap();
    let args = [
        "--database-url",
        &db.url,
        "--jwt-secret",
        SECRET,
        "--idempotency-lease",
        "1",
    ]
    .map(String::from)
    .to_vec();
    let mut node = crate::nodes::Node::start(args).await;
    let http = reqwest::Client::builder()
        .timeout(patience())
        .build()
        .unwrap();

    // Eight writers send, each request with a key of its own, until the hub dies under them:
    // the requests in flight then were committed or not, and their answers were lost.
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let (answered_tx, mut answered_rx) = tokio::sync::watch::channel(0usize);
    let answered_tx = std::sync::Arc::new(answered_tx);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let http = http.clone();
            let url = node.url(SEND);
            let token = token.clone();
            let killed = killed_rx.clone();
            let answered = answered_tx.clone();
            let alice = alice.id.0;
            tokio::spawn(async move {
                let mut tried = Vec::new();
                for i in 0.. {
                    if *killed.borrow() {
                        break;
                    }
                    let title = format!("w{w}-{i}");
                    let body = send_body(&[alice], json!({"title": title}));
                    tried.push((title.clone(), body.clone()));
                    let res = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("idempotency-key", &title)
                        .json(&body)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 201 => answered.send_modify(|n| *n += 1),
                        _ => break,
                    }
                }
                tried
            })
        })
        .collect();
    tokio::time::timeout(patience() * 2, answered_rx.wait_for(|n| *n >= 200))
        .await
        .expect("sends are under way")
        .unwrap();
    node.kill().await;
    killed_tx.send(true).unwrap();
    let mut tried = Vec::new();
    for w in writers {
        tried.extend(w.await.unwrap());
    }

    // The client retries every request it made, answered or not, on the restarted hub.
    node.restart().await;
    let url = node.url(SEND);
    let mut replayed = 0;
    for (title, body) in &tried {
        let (status, again) = send_until_answered(&http, &url, &token, title, body).await;
        assert_eq!(status, 201, "{title}");
        replayed += usize::from(again);
    }
    // Each request's notification exists exactly once.
    let total = db_number(&db, "SELECT COUNT(*) FROM notifications").await;
    assert_eq!(total as usize, tried.len(), "one notification per request");
    let distinct = db_number(&db, "SELECT COUNT(DISTINCT title) FROM notifications").await;
    assert_eq!(distinct as usize, tried.len());
    // Every request answered before the kill was answered again from its record.
    assert!(replayed >= 200, "{replayed} of {} replayed", tried.len());
    node.kill().await;
}

/// What a crash between a commit and its answer leaves behind (the request's effects and
/// its record committed, no answer recorded), made certain by a store told to fail the
/// answer's recording; the hub then stops and another starts on the database. Each retry
/// answers from what was committed and notifies nobody again.
async fn writes_committed_but_never_answered_are_answered_by_their_retry(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let project = hub.project("LOST", &[&alice]).await;
    let (token, client_token) = (hub.token(&admin), hub.token(&alice));
    let faults = &hub.store.faults().failed_idempotent_answers;
    let lose_answer = || faults.store(1, std::sync::atomic::Ordering::SeqCst);

    let send = send_body(&[alice.id.0], json!({"title": "Held"}));
    lose_answer();
    let first = post_once(&hub.http, &hub.url(SEND), &token, "s-1", &send).await;
    assert_eq!(first.0, 201);
    let create = json!({"project": project.id.0, "title": "Lost answer", "description": "d"});
    lose_answer();
    let (status, _, ticket) = post_once(
        &hub.http,
        &hub.url("/api/tickets/"),
        &client_token,
        "t-1",
        &create,
    )
    .await;
    assert_eq!(status, 201);
    let id = ticket["id"].as_i64().unwrap();
    let comment = json!({"body": "first words"});
    let comments = format!("/api/tickets/{id}/comments/");
    lose_answer();
    let (status, _, said) = post_once(
        &hub.http,
        &hub.url(&comments),
        &client_token,
        "c-1",
        &comment,
    )
    .await;
    assert_eq!(status, 201, "{said}");
    let open = format!("/api/tickets/{id}/open_ticket/");
    lose_answer();
    let (status, _, opened) =
        post_once(&hub.http, &hub.url(&open), &token, "o-1", &json!({})).await;
    assert_eq!(status, 200);
    let unanswered = "SELECT COUNT(*) FROM idempotency_keys \
                      WHERE committed_at IS NOT NULL AND status IS NULL";
    assert_eq!(db_number(&hub.db, unanswered).await, 4);

    // The hub goes; another serves the retries.
    let db = hub.stop_keep_db().await;
    let hub = TestHub::start_on(db, |_| {}).await;
    let again = post_once(&hub.http, &hub.url(SEND), &token, "s-1", &send).await;
    assert_eq!(again, (201, true, first.2));
    let again = post_once(
        &hub.http,
        &hub.url("/api/tickets/"),
        &client_token,
        "t-1",
        &create,
    )
    .await;
    assert_eq!(
        (again.0, again.1, &again.2["id"]),
        (201, true, &ticket["id"])
    );
    let again = post_once(
        &hub.http,
        &hub.url(&comments),
        &client_token,
        "c-1",
        &comment,
    )
    .await;
    assert_eq!(again, (201, true, said));
    let again = post_once(&hub.http, &hub.url(&open), &token, "o-1", &json!({})).await;
    assert_eq!(
        (again.0, again.1, &again.2["status"]),
        (200, true, &opened["status"])
    );
    assert_eq!(titled(&hub.db, "Held").await, 1);
    assert_eq!(db_number(&hub.db, "SELECT COUNT(*) FROM tickets").await, 1);
    assert_eq!(db_number(&hub.db, "SELECT COUNT(*) FROM comments").await, 1);
    assert_eq!(
        db_number(
            &hub.db,
            "SELECT COUNT(*) FROM ticket_events WHERE action = 'open_ticket'"
        )
        .await,
        1
    );
    assert_eq!(
        db_number(&hub.db, unanswered).await,
        0,
        "the answers are recorded now"
    );
}

/// A large announcement commits in parts (500 recipients, then 1,000, …); the second part is
/// made to fail. The call fails having notified the first part's recipients only; its retry
/// with the same key notifies the others and nobody twice, and answers the whole count; a
/// retry after that is a replay. Without a key, the parts after the first are committed side
/// by side: the same failure leaves the first part and the third (100 recipients), and the
/// call still fails.
async fn an_announcement_failing_part_way_is_finished_by_its_retry(backend: Backend) {
    use futures::StreamExt;
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let token = hub.token(&admin);
    const USERS: usize = 1_600;
    let users: Vec<i64> = futures::stream::iter(0..USERS)
        .map(|i| {
            let hub = &hub;
            async move { hub.user(&format!("many{i}"), Role::Client).await.id.0 }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let fail_second_part = || {
        hub.store
            .faults()
            .failing_part
            .store(2, std::sync::atomic::Ordering::SeqCst)
    };
    let send = send_body(&users, json!({"title": "In parts"}));
    fail_second_part();
    let (status, _, body) = post_once(&hub.http, &hub.url(SEND), &token, "parts-1", &send).await;
    assert!(status >= 500, "{status} {body}");
    let first_part = "SELECT COUNT(*) FROM notifications WHERE title = 'In parts' AND user_id IN \
                      (SELECT id FROM users WHERE username LIKE 'many%' ORDER BY id LIMIT 500)";
    assert_eq!(
        titled(&hub.db, "In parts").await,
        500,
        "the first part only"
    );
    assert_eq!(
        db_number(&hub.db, first_part).await,
        500,
        "the lowest ids first"
    );

    let retry = post_once(&hub.http, &hub.url(SEND), &token, "parts-1", &send).await;
    assert_eq!(retry.0, 201, "{:?}", retry.2);
    assert!(!retry.1, "the retry ran");
    assert_eq!(
        retry.2["count"], USERS as i64,
        "the whole count: {:?}",
        retry.2
    );
    assert_eq!(titled(&hub.db, "In parts").await, USERS as i64);
    let once = "SELECT COUNT(DISTINCT user_id) FROM notifications WHERE title = 'In parts'";
    assert_eq!(db_number(&hub.db, once).await, USERS as i64, "nobody twice");
    let again = post_once(&hub.http, &hub.url(SEND), &token, "parts-1", &send).await;
    assert_eq!(again, (201, true, retry.2));
    assert_eq!(titled(&hub.db, "In parts").await, USERS as i64);

    // Without a key: the parts that committed stay, and are all there is.
    let send_without_key = |title: &str| {
        let send = send_body(&users, json!({ "title": title }));
        hub.http
            .post(hub.url(SEND))
            .bearer_auth(&token)
            .json(&send)
            .send()
    };
    fail_second_part();
    let res = send_without_key("No key").await.unwrap();
    assert!(res.status().is_server_error(), "{}", res.status());
    assert_eq!(titled(&hub.db, "No key").await, 600);
    let second_part = "SELECT COUNT(*) FROM notifications WHERE title = 'No key' AND user_id IN \
                       (SELECT id FROM users WHERE username LIKE 'many%' ORDER BY id LIMIT 1000 OFFSET 500)";
    assert_eq!(db_number(&hub.db, second_part).await, 0, "the failed part");

    // Without a key and without a fault: every part lands, each recipient once.
    let res = send_without_key("All parts").await.unwrap();
    assert_eq!(res.status(), 201);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["count"], USERS as i64, "{body}");
    assert_eq!(titled(&hub.db, "All parts").await, USERS as i64);
    let once = "SELECT COUNT(DISTINCT user_id) FROM notifications WHERE title = 'All parts'";
    assert_eq!(db_number(&hub.db, once).await, USERS as i64, "nobody twice");
}

crate::trials! {
    both: [
        retried_writes_answer_as_the_first_and_notify_nobody_again,
        a_retry_sent_to_another_node_answers_from_the_record,
        a_retry_after_kill_9_between_commit_and_answer_notifies_once,
        writes_committed_but_never_answered_are_answered_by_their_retry,
        an_announcement_failing_part_way_is_finished_by_its_retry,
    ],
    tests: [],
    sync: [],
}
