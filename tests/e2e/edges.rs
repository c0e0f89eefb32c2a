//! A stranger at the door: each attack on the hub's edges, and the refusal it gets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use serde_json::json;
use tickethub_actors::domain::{Role, User};

use crate::both_backends;
use crate::harness::*;

both_backends!(
    a_demoted_admin_keeps_no_admin_power_on_open_sockets,
    refresh_tokens_rotate_and_a_replay_ends_the_login,
    logout_ends_the_login_and_only_it,
    a_new_password_ends_every_token,
    a_socket_opening_during_a_deactivation_never_survives_it,
);

/// Logs in over the API: `(access, refresh)`.
async fn login(hub: &TestHub, username: &str) -> (String, String) {
    let (status, tokens) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": username, "password": format!("{username}-password")}),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    (
        tokens["access"].as_str().unwrap().to_owned(),
        tokens["refresh"].as_str().unwrap().to_owned(),
    )
}

/// `POST /api/auth/refresh/`: the status and, on success, the new `(access, refresh)`.
async fn refresh(hub: &TestHub, token: &str) -> (u16, Option<(String, String)>) {
    let (status, body) = hub
        .post("/api/auth/refresh/", None, json!({"refresh": token}))
        .await;
    let pair = (status == 200).then(|| {
        (
            body["access"].as_str().unwrap().to_owned(),
            body["refresh"].as_str().unwrap().to_owned(),
        )
    });
    (status, pair)
}

/// The user as the database has it now (its token version included).
async fn fresh(hub: &TestHub, user: &User) -> User {
    hub.store.user_by_id(user.id).await.unwrap().unwrap()
}

/// Reads from a raw connection until it closes or `limit` passes; `true` if it closed.
async fn closes_within(tcp: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// The first line of the answer to a raw request, or `None` if none came within `limit`.
async fn status_line(tcp: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_never_become_metric_series() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let method = format!("M{}", "Q".repeat(2_000));
    for i in 0..20 {
        let m = reqwest::Method::from_bytes(format!("{method}{i}").as_bytes()).unwrap();
        let res = hub
            .http
            .request(m, hub.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405);
    }
    let body = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("MQQQ"), "a made-up method became a label");
    assert!(
        body.lines()
            .any(|l| l.starts_with("tickethub_http_requests_total")
                && l.contains("method=\"other\"")
                && l.contains("route=\"/healthz\"")),
        "made-up methods count as `other`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_ask_for_their_token_when_one_is_set() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.metrics_token = Some("scrape-secret".into());
    })
    .await;
    let get = |token: Option<&'static str>| {
        let mut req = hub.http.get(hub.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap() }
    };
    assert_eq!(get(None).await.status(), 401);
    assert_eq!(get(Some("scrape-secreT")).await.status(), 401);
    let ok = get(Some("scrape-secret")).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("tickethub_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_a_listener_of_their_own_leave_the_api_port() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (status, _) = hub.get("/metrics", None).await;
    assert_eq!(status, 404, "/metrics is gone from the API's port");
    let addr = hub.metrics_addr.expect("a metrics listener");
    let res = hub
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("tickethub_"));
    let other = hub
        .http
        .get(format!("http://{addr}/api/users/me/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        404,
        "the metrics listener serves nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_disconnected() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.http_header_timeout = 1).await;
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    // One byte at a time, for longer than any test may take: without a header deadline the
    // connection would outlive the loop.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut closed = false;
    while tokio::time::Instant::now() < deadline {
        if tcp.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        if closes_within(&mut tcp, Duration::from_millis(200)).await {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the hub held a trickling connection for {PATIENCE:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_is_answered_503() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.http_request_timeout = 1).await;
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/auth/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"u",
    )
    .await
    .unwrap();
    let line = status_line(&mut tcp, PATIENCE).await;
    assert_eq!(line.as_deref(), Some("HTTP/1.1 503 Service Unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.max_connections = 2;
        c.http_header_timeout = 60;
    })
    .await;
    // Two connections that say nothing hold both slots.
    let idle_a = TcpStream::connect(hub.addr).await.unwrap();
    let _idle_b = TcpStream::connect(hub.addr).await.unwrap();
    // The accept backlog is first in, first out: both are taken before the third.
    let mut third = TcpStream::connect(hub.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        status_line(&mut third, Duration::from_millis(500)).await,
        None,
        "a third connection was served while two held the cap"
    );
    drop(idle_a);
    assert_eq!(
        status_line(&mut third, PATIENCE).await.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the waiting connection is served once a slot frees"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_never_reads_the_webhook_url_or_its_errors() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = crate::fakes::Http::start().await;
    let url = format!("{}/services/T000/B000/s3cr3tT0ken", receiver.url());
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.webhook_urls = vec![url];
        c.webhook_secret = Some(SECRET.into());
        c.webhook_allow_private = true;
        c.delivery_backoff_ms = 50;
        c.delivery_backoff_max_ms = 100;
        c.delivery_poll_ms = 50;
    })
    .await;
    let admin = hub
        .user("boss", tickethub_actors::domain::Role::Admin)
        .await;
    let client = hub
        .user("cara", tickethub_actors::domain::Role::Client)
        .await;
    let project = hub.project("SEC", &[&admin, &client]).await;
    let ticket = crate::tickets::create_ticket(&hub, &client, project.id.0, "Down").await;
    let id = ticket["id"].as_i64().unwrap();
    receiver.wait_for(1).await;
    // The receiver fails the next event once, in its own words, then takes it.
    receiver.script([crate::fakes::Reply::Status(
        500,
        serde_json::json!({"error": "internal-hostname db-7 refused"}),
    )]);
    hub.post_as(
        &admin,
        &format!("/api/tickets/{id}/open_ticket/"),
        serde_json::json!({}),
        200,
    )
    .await;
    // The client's `ticket_opened` carries the event's webhook delivery; wait until the
    // admin's view shows both attempts (the failure and the success).
    let mine = hub.get_as(&client, "/api/notifications/", 200).await;
    let nid = mine["results"][0]["id"].as_i64().unwrap();
    let timeline = format!("/api/notifications/{nid}/timeline/");
    eventually("both webhook attempts are recorded", || async {
        let t = hub.get_as(&admin, &timeline, 200).await;
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "delivery_attempt" && e["channel"] == "webhook")
            .count()
            == 2
    })
    .await;
    let operator = hub.get_as(&admin, &timeline, 200).await.to_string();
    assert!(
        operator.contains("s3cr3tT0ken"),
        "admins see the destination"
    );
    assert!(operator.contains("db-7"), "admins see the receiver's error");
    for path in [
        timeline.clone(),
        format!("/api/notifications/{nid}/deliveries/"),
    ] {
        let seen = hub.get_as(&client, &path, 200).await;
        let text = seen.to_string();
        assert!(
            text.contains("webhook"),
            "the delivery itself is shown: {text}"
        );
        assert!(
            !text.contains("s3cr3tT0ken"),
            "{path} shows the webhook URL: {text}"
        );
        assert!(
            !text.contains("db-7"),
            "{path} shows the receiver's error: {text}"
        );
    }
}

async fn a_demoted_admin_keeps_no_admin_power_on_open_sockets(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let root = hub.user_with("root", Role::Admin, true).await;
    let eve = hub.user("eve", Role::Admin).await;
    let victim = hub.user("victim", Role::Client).await;
    // A project eve is not a member of: as an admin, she may watch its board.
    let project = hub.project("PRIV", &[&root, &victim]).await;
    let mut notes = hub.connect(&eve).await;
    notes
        .send_json(json!({"type": "send_notification", "user_ids": [victim.id.0], "title": "Hi", "message": "m"}))
        .await;
    assert_eq!(notes.next_of("notification_sent").await["success"], true);
    let mut board = Ws::connect(&hub.ws_url(&format!(
        "/ws/projects/{}/tickets/?token={}",
        project.id.0,
        hub.token(&eve)
    )))
    .await;
    board.roundtrip().await;

    let (status, body) = hub
        .call(
            reqwest::Method::PATCH,
            &format!("/api/users/{}/", eve.id.0),
            Some(&hub.token(&root)),
            Some(json!({"role": "developer"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Both sockets close, as for a deactivation: no open socket keeps the old role.
    assert_eq!(notes.close_code().await, 4001);
    assert_eq!(board.close_code().await, 4001);
    // Her tokens are void; a new login is a developer's, who may not send.
    let (status, _) = hub.get("/api/users/me/", Some(&hub.token(&eve))).await;
    assert_eq!(status, 401);
    let (access, _) = login(&hub, "eve").await;
    let me = hub.get("/api/users/me/", Some(&access)).await.1;
    assert_eq!(me["role"], "developer");
    let mut again = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={access}"))).await;
    again.established().await;
    again
        .send_json(json!({"type": "send_notification", "user_ids": [victim.id.0], "title": "Hi", "message": "m"}))
        .await;
    assert_eq!(again.next_of("error").await["code"], "forbidden");
    let mut board = Ws::connect(&hub.ws_url(&format!(
        "/ws/projects/{}/tickets/?token={access}",
        project.id.0
    )))
    .await;
    assert_eq!(board.close_code().await, 4003, "not a member any more");
}

async fn refresh_tokens_rotate_and_a_replay_ends_the_login(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    hub.user("alice", Role::Client).await;
    let (_, r1) = login(&hub, "alice").await;
    let (_, other_login) = login(&hub, "alice").await;
    let (status, pair) = refresh(&hub, &r1).await;
    assert_eq!(status, 200);
    let (a2, r2) = pair.unwrap();
    assert_ne!(r1, r2, "the refresh token rotates");
    assert_eq!(hub.get("/api/users/me/", Some(&a2)).await.0, 200);
    // r1 shown again: a replay. It fails, and so does everything rotated from its login.
    let (status, _) = hub
        .post("/api/auth/refresh/", None, json!({"refresh": r1}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(refresh(&hub, &r2).await.0, 401, "the family is revoked");
    // Another login of the same user is another family, untouched.
    let (status, pair) = refresh(&hub, &other_login).await;
    assert_eq!(status, 200);
    // Two trades of one token at once: exactly one wins.
    let (_, r3) = pair.unwrap();
    let (x, y) = tokio::join!(refresh(&hub, &r3), refresh(&hub, &r3));
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [200, 401]);
}

async fn logout_ends_the_login_and_only_it(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    hub.user("bob", Role::Developer).await;
    let (_, phone) = login(&hub, "bob").await;
    let (_, laptop) = login(&hub, "bob").await;
    let (_, rotated) = refresh(&hub, &phone).await.1.unwrap();
    let (status, body) = hub
        .post("/api/auth/logout/", None, json!({"refresh": rotated}))
        .await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(refresh(&hub, &rotated).await.0, 401);
    assert_eq!(refresh(&hub, &laptop).await.0, 200, "the other login stays");
    // Garbage is refused as any bad token is.
    let (status, body) = hub
        .post("/api/auth/logout/", None, json!({"refresh": "garbage"}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].is_string());
}

async fn a_new_password_ends_every_token(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let carol = hub.user("carol", Role::Client).await;
    let (access, refresh_token) = login(&hub, "carol").await;
    // What `tickethub users set-password` does.
    hub.store
        .update_profile(
            carol.id,
            tickethub_actors::ports::ProfileChanges {
                password_hash: Some(tickethub::auth::hash_password_blocking("new-password-1")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, body) = hub.get("/api/users/me/", Some(&access)).await;
    assert_eq!(
        (status, &body["detail"]),
        (401, &json!("Token has been revoked."))
    );
    assert_eq!(refresh(&hub, &refresh_token).await.0, 401);
    let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={access}"))).await;
    assert_eq!(ws.close_code().await, 4001);
    // A profile change that touches no credential ends nothing.
    let carol = fresh(&hub, &carol).await;
    let token = hub.token(&carol);
    hub.call(
        reqwest::Method::PATCH,
        "/api/users/me/",
        Some(&token),
        Some(json!({"display_name": "Carol C."})),
    )
    .await;
    assert_eq!(hub.get("/api/users/me/", Some(&token)).await.0, 200);
}

/// A board socket's handshake reads its user, then its membership, then joins the room: a
/// deactivation committed in between must still close it. Many sockets open while the
/// deactivation runs, so that some straddle it; every one must end with 4001.
async fn a_socket_opening_during_a_deactivation_never_survives_it(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("root", Role::Admin).await;
    let dora = hub.user("dora", Role::Developer).await;
    let project = hub.project("RACE", &[&admin, &dora]).await;
    for round in 0..5 {
        let dora = fresh(&hub, &dora).await;
        let token = hub.token(&dora);
        let open = (0..12).map(|i| {
            let url = if i % 2 == 0 {
                hub.ws_url(&format!(
                    "/ws/projects/{}/tickets/?token={token}",
                    project.id.0
                ))
            } else {
                hub.ws_url(&format!("/ws/notifications/?token={token}"))
            };
            async move { Ws::connect_with(&url, &[]).await }
        });
        let (path, admin_token) = (format!("/api/users/{}/", dora.id.0), hub.token(&admin));
        let deactivate = hub.call(
            reqwest::Method::PATCH,
            &path,
            Some(&admin_token),
            Some(json!({"is_active": false})),
        );
        let (sockets, (status, _)) = tokio::join!(futures::future::join_all(open), deactivate);
        assert_eq!(status, 200);
        for ws in sockets {
            let mut ws = ws.expect("the handshake is answered");
            assert_eq!(
                ws.ended().await,
                Ended::Closed(4001),
                "round {round}: a socket outlived the deactivation"
            );
        }
        let (status, _) = hub
            .call(
                reqwest::Method::PATCH,
                &format!("/api/users/{}/", dora.id.0),
                Some(&hub.token(&admin)),
                Some(json!({"is_active": true})),
            )
            .await;
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_valid_only_later_is_refused_now() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let user = hub.user("nina", Role::Client).await;
    let later = chrono::Utc::now().timestamp() + 3600;
    let token = hub
        .auth
        .issue_claims(
            user.id,
            0,
            tickethub::auth::TokenType::Access,
            7200,
            "jti-later".into(),
            Some(later),
        )
        .unwrap();
    assert_eq!(hub.get("/api/users/me/", Some(&token)).await.0, 401);
    let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={token}"))).await;
    assert_eq!(ws.close_code().await, 4001);
    let now = hub
        .auth
        .issue_claims(
            user.id,
            0,
            tickethub::auth::TokenType::Access,
            7200,
            "jti-now".into(),
            Some(chrono::Utc::now().timestamp() - 1),
        )
        .unwrap();
    assert_eq!(hub.get("/api/users/me/", Some(&now)).await.0, 200);
}
