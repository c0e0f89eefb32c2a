//! The official Rust client (`clients/rust`, `tickethub-client`) against a real hub: each
//! notification once and in order, resumed from the last seq, acknowledged; sends with an API
//! key and an idempotency key; inbox commands heard on the socket; one renewal per expiry; a
//! refused token given again stops the subscription.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use tickethub_actors::domain::Role;
use tickethub_client::{
    BoxError, Client, Error, Event, InboxChange, NewNotification, Sender, Subscribe, Subscription,
    TokenReason,
};

use crate::harness::{patience, Backend, TestHub, SECRET};

/// The next event that is not a warning, within the patience.
async fn next(sub: &mut Subscription) -> Event {
    loop {
        let event = tokio::time::timeout(patience(), sub.next())
            .await
            .expect("an event in time")
            .expect("the subscription goes on");
        if !matches!(event, Event::Warning(_)) {
            return event;
        }
    }
}

fn note(user: i64, title: &str) -> NewNotification {
    NewNotification {
        user_ids: vec![user],
        notification_type: "system".into(),
        title: title.into(),
        message: format!("{title}, from the Rust client"),
        ..Default::default()
    }
}

async fn api_key(hub: &TestHub, admin: &tickethub_actors::domain::User) -> String {
    let made = hub
        .post_as(
            admin,
            "/api/admin/api-keys/",
            json!({"name": "sender", "scopes": ["notifications:send"]}),
            201,
        )
        .await;
    made["key"].as_str().unwrap().to_owned()
}

async fn each_notification_once_in_order_resumed_and_acknowledged(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let token = hub.token(&alice);
    let client = Client::new(&hub.url(""), move |_: TokenReason| {
        let token = token.clone();
        async move { Ok::<_, BoxError>(token) }
    });
    let sender = Sender::new(&hub.url(""), &api_key(&hub, &admin).await);
    let mut sub = client.subscribe(Subscribe::default());
    assert_eq!(next(&mut sub).await, Event::Connected);
    assert!(matches!(
        next(&mut sub).await,
        Event::Replayed { count: 0, .. }
    ));

    for (i, title) in ["one", "two", "three"].into_iter().enumerate() {
        sender
            .send(&note(alice.id.0, title), &format!("k-{i}"))
            .await
            .unwrap();
    }
    // A retried send notifies once; the key with another request is refused.
    sender.send(&note(alice.id.0, "two"), "k-1").await.unwrap();
    match sender.send(&note(alice.id.0, "other"), "k-1").await {
        Err(Error::Http { status: 422, .. }) => {}
        other => panic!("the key with another request: {other:?}"),
    }
    let mut seqs = Vec::new();
    for title in ["one", "two", "three"] {
        match next(&mut sub).await {
            Event::Notification(n) => {
                assert_eq!(n.title, title);
                assert!(!n.replayed);
                seqs.push(n.seq);
            }
            other => panic!("expected {title}: {other:?}"),
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let last = sub.last_seq();
    assert_eq!(last, seqs.last().copied());
    sub.close().await;
    // Closing acknowledged what was delivered.
    crate::harness::eventually("the last seq is acknowledged", || async {
        let cursor = hub.store.notification_cursor(alice.id).await.unwrap();
        Some(cursor.acked_seq) == last
    })
    .await;

    // Two more while away: a new subscription from the saved seq gets exactly those.
    for title in ["four", "five"] {
        sender
            .send(&note(alice.id.0, title), &format!("k-{title}"))
            .await
            .unwrap();
    }
    let mut sub = client.subscribe(Subscribe {
        last_seq: last,
        ..Default::default()
    });
    assert_eq!(next(&mut sub).await, Event::Connected);
    let mut replayed = Vec::new();
    loop {
        match next(&mut sub).await {
            Event::Notification(n) => replayed.push(n),
            Event::Replayed { count, .. } => {
                assert_eq!(count, 2);
                break;
            }
            other => panic!("during the replay: {other:?}"),
        }
    }
    let titles: Vec<&str> = replayed.iter().map(|n| n.title.as_str()).collect();
    assert_eq!(titles, ["four", "five"]);
    assert!(replayed.iter().all(|n| n.replayed));

    // Inbox commands over REST, heard on the socket.
    let id = replayed[0].id;
    client.mark_read(id).await.unwrap();
    assert_eq!(next(&mut sub).await, Event::Inbox(InboxChange::Read(id)));
    client.delete(id).await.unwrap();
    assert_eq!(next(&mut sub).await, Event::Inbox(InboxChange::Deleted(id)));
    let page = client.list("is_read=false").await.unwrap();
    assert_eq!(page["count"], 4, "{page}");
    match client.mark_read(999_999).await {
        Err(Error::Http { status: 404, .. }) => {}
        other => panic!("an unknown notification: {other:?}"),
    }
    sub.close().await;
}

async fn one_renewal_per_expiry_and_a_refused_token_given_again_stops(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let alice = hub.user("alice", Role::Client).await;
    // Tokens with 31 s left: the hub warns at once.
    let short = {
        let id = alice.id.0;
        move || {
            let claims = json!({"user_id": id, "exp": chrono::Utc::now().timestamp() + 31, "token_type": "access"});
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap()
        }
    };
    let fresh = hub.token(&alice);
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = {
        let asked = asked.clone();
        Client::new(&hub.url(""), move |reason: TokenReason| {
            asked.lock().unwrap().push(reason);
            let token = match reason {
                TokenReason::Expiring => fresh.clone(),
                _ => short(),
            };
            async move { Ok::<_, BoxError>(token) }
        })
    };
    let mut sub = client.subscribe(Subscribe::default());
    assert_eq!(next(&mut sub).await, Event::Connected);
    loop {
        if next(&mut sub).await == Event::Renewed {
            break;
        }
    }
    assert_eq!(
        *asked.lock().unwrap(),
        [TokenReason::Connect, TokenReason::Expiring],
        "one renewal"
    );
    sub.close().await;

    // A provider that only has a token the hub refuses: refused once, then given again: the
    // subscription stops instead of reconnecting for ever.
    let calls = Arc::new(AtomicUsize::new(0));
    let stuck = {
        let calls = calls.clone();
        Client::new(&hub.url(""), move |_: TokenReason| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>("not-a-token".to_owned()) }
        })
    };
    let mut sub = stuck.subscribe(Subscribe {
        backoff_base: Duration::from_millis(10),
        ..Default::default()
    });
    match next(&mut sub).await {
        Event::Disconnected {
            code: 4001,
            will_reconnect: true,
            ..
        } => {}
        other => panic!("expected a 4001: {other:?}"),
    }
    assert_eq!(next(&mut sub).await, Event::Unauthorized);
    assert_eq!(sub.next().await, None, "the subscription ended");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    match stuck.list("").await {
        Err(Error::TokenRefused) => {}
        other => panic!("a REST call with the same refused token: {other:?}"),
    }
}

/// Scenario `resume-after-kill-9`: a hub process killed with SIGKILL and started again on its
/// database and address; the subscription reconnects by itself and hands over what follows,
/// each once, in order.
async fn the_subscription_rides_out_a_kill_9(backend: Backend) {
    let db = crate::harness::TestDb::create(&backend).await;
    let (admin, alice) = crate::harness::admin_and_client(&db).await;
    let auth =
        tickethub::auth::Auth::from_config(&crate::harness::test_config(&db.url), Some(SECRET))
            .unwrap();
    let admin_token = auth.issue_access(&admin).unwrap();
    let alice_token = auth.issue_access(&alice).unwrap();
    let mut node = crate::nodes::Node::start(
        ["--database-url", &db.url, "--jwt-secret", SECRET]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let base = format!("http://{}", node.addr);
    let client = Client::new(&base, move |_: TokenReason| {
        let token = alice_token.clone();
        async move { Ok::<_, BoxError>(token) }
    });
    let http = reqwest::Client::new();
    let send = |title: &str| {
        let req = http
            .post(format!("http://{}/api/notifications/send/", node.addr))
            .bearer_auth(&admin_token)
            .json(
                &json!({"user_ids": [alice.id.0], "notification_type": "system",
                          "title": title, "message": title}),
            );
        async move { assert_eq!(req.send().await.unwrap().status(), 201) }
    };
    let mut sub = client.subscribe(Subscribe {
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..Default::default()
    });
    assert_eq!(next(&mut sub).await, Event::Connected);
    for title in ["a", "b", "c"] {
        send(title).await;
    }
    let mut titles = Vec::new();
    let mut seqs = Vec::new();
    while titles.len() < 3 {
        if let Event::Notification(n) = next(&mut sub).await {
            titles.push(n.title.clone());
            seqs.push(n.seq);
        }
    }
    node.kill().await;
    loop {
        match next(&mut sub).await {
            Event::Disconnected { will_reconnect, .. } => {
                assert!(will_reconnect);
                break;
            }
            Event::Notification(n) => panic!("nothing more was sent: {n:?}"),
            _ => {}
        }
    }
    node.restart().await;
    assert_eq!(base, format!("http://{}", node.addr), "the same address");
    loop {
        if next(&mut sub).await == Event::Connected {
            break;
        }
    }
    let send = |title: &str| {
        let req = http
            .post(format!("http://{}/api/notifications/send/", node.addr))
            .bearer_auth(&admin_token)
            .json(
                &json!({"user_ids": [alice.id.0], "notification_type": "system",
                          "title": title, "message": title}),
            );
        async move { assert_eq!(req.send().await.unwrap().status(), 201) }
    };
    for title in ["d", "e"] {
        send(title).await;
    }
    while titles.len() < 5 {
        if let Event::Notification(n) = next(&mut sub).await {
            titles.push(n.title.clone());
            seqs.push(n.seq);
        }
    }
    assert_eq!(titles, ["a", "b", "c", "d", "e"]);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    sub.close().await;
    node.kill().await;
}

/// Scenario `slow-consumer`: an application that stops taking events stops the client reading
/// its socket; the hub cuts the slow socket off, and once the application reads again the
/// subscription reconnects and hands over every notification once, in order.
async fn a_consumer_that_falls_behind_is_cut_off_and_resumes(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| {
        c.ws_outbound_queue = 8;
        c.ws_outbound_queue_bytes = 1024 * 1024;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let token = hub.token(&alice);
    let client = Client::new(&hub.url(""), move |_: TokenReason| {
        let token = token.clone();
        async move { Ok::<_, BoxError>(token) }
    });
    let mut sub = client.subscribe(Subscribe {
        buffer: 2,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..Default::default()
    });
    assert_eq!(next(&mut sub).await, Event::Connected);
    // 120 notifications of 150 KB (18 MB) while the application takes nothing: far more than
    // the kernel's buffers (a few MiB each way) and the hub's queue hold together.
    const TOTAL: usize = 120;
    let blob = "x".repeat(150 * 1024);
    for i in 0..TOTAL {
        hub.send(
            &admin,
            &[&alice],
            json!({"title": format!("n{i}"), "message": "big", "data": {"blob": blob}}),
        )
        .await;
    }
    let mut titles = Vec::new();
    let mut cut_off = None;
    while titles.len() < TOTAL {
        match next(&mut sub).await {
            Event::Notification(n) => titles.push(n.title.clone()),
            Event::Disconnected {
                code,
                will_reconnect,
                ..
            } => {
                assert!(will_reconnect);
                cut_off.get_or_insert(code);
            }
            _ => {}
        }
    }
    assert!(cut_off.is_some(), "the slow socket was cut off");
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("n{i}")).collect();
    assert_eq!(titles, expected, "every notification once, in order");
    sub.close().await;
}

/// A server that keeps its connections alive, answers `{}` to every request and logs, for
/// each request in the order they come, the number of the connection it came on.
async fn keep_alive_server() -> (String, Arc<std::sync::Mutex<Vec<usize>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = served.clone();
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            connections += 1;
            let connection = connections;
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = tcp.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = request_end(&buf) {
                        buf.drain(..end);
                        log.lock().unwrap().push(connection);
                        let answer = "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if tcp.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (base, served)
}

/// Where the first whole request in `buf` ends (its head and a `content-length` body).
fn request_end(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap_or(0));
    (buf.len() >= head + length).then_some(head + length)
}

/// A connection idle for longer than the client keeps one is not used again: the hub
/// closes its idle connections after 10 s (by default), and a call sent on one as it is
/// closed would fail with no answer.
async fn a_connection_idle_past_the_pools_limit_is_not_used_again() {
    let (base, served) = keep_alive_server().await;
    // reqwest here is built with rustls and no provider of its own (the hub installs one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sender = Sender::new(&base, "key");
    let note = NewNotification {
        user_ids: vec![1],
        notification_type: "system".into(),
        title: "t".into(),
        message: "m".into(),
        ..Default::default()
    };
    let used = || served.lock().unwrap().clone();
    // A connection goes back to the pool a moment after its answer is read, so a call sent
    // at once may still open another; within a few calls one is used again.
    let mut reused = false;
    for call in 0..20 {
        sender.send(&note, &format!("k{call}")).await.unwrap();
        let log = used();
        if log.len() > 1 && log[..log.len() - 1].contains(log.last().unwrap()) {
            reused = true;
            break;
        }
    }
    assert!(
        reused,
        "a connection that is kept busy is used again: {:?}",
        used()
    );
    let before = used();
    // The pool's limit is the idle time under test: nothing else can be awaited here.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    sender.send(&note, "late").await.unwrap();
    let last = *used().last().unwrap();
    assert!(
        !before.contains(&last),
        "a connection idle past the limit is not used again: {before:?} then {last}"
    );
}

crate::trials! {
    both: [
        the_subscription_rides_out_a_kill_9,
        a_consumer_that_falls_behind_is_cut_off_and_resumes,
        each_notification_once_in_order_resumed_and_acknowledged,
        one_renewal_per_expiry_and_a_refused_token_given_again_stops,
    ],
    tests: [a_connection_idle_past_the_pools_limit_is_not_used_again],
    sync: [],
}
