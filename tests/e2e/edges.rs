//! A stranger at the door: each attack on the hub's edges, and the refusal it gets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use serde_json::json;
use tickethub_actors::domain::{Role, User};

use crate::harness::*;
mod floods_and_webhooks;
mod json_bodies;
use floods_and_webhooks::*;
use json_bodies::*;

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
    let body = hub.metrics_text().await;
    assert!(!body.contains("MQQQ"), "a made-up method became a label");
    assert!(
        body.lines()
            .any(|l| l.starts_with("tickethub_http_requests_total")
                && l.contains("method=\"other\"")
                && l.contains("route=\"/healthz\"")),
        "made-up methods count as `other`"
    );
}

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

async fn a_client_trickling_its_headers_is_disconnected() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.http_header_timeout = 1).await;
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    // One byte at a time, for longer than any test may take: without a header deadline the
    // connection would outlive the loop.
    let deadline = tokio::time::Instant::now() + patience();
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
        "the hub held a trickling connection for {:?}",
        patience()
    );
}

async fn a_body_that_never_ends_is_answered_503() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.http_request_timeout = 1).await;
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/auth/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"u",
    )
    .await
    .unwrap();
    let line = status_line(&mut tcp, patience()).await;
    assert_eq!(line.as_deref(), Some("HTTP/1.1 503 Service Unavailable"));
}

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
        status_line(&mut third, patience()).await.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the waiting connection is served once a slot frees"
    );
}

async fn a_recipient_never_reads_the_webhook_url_or_its_errors() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = crate::fakes::Http::start().await;
    let url = format!("{}/services/T000/B000/s3cr3tT0ken", receiver.url());
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.channels.webhook.webhook_urls = vec![url];
        c.channels.webhook.webhook_secret = Some(SECRET.into());
        c.channels.webhook.webhook_allow_private = true;
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
    // Her sockets are on one node; the demotion is made on the other.
    let (hub, node) = TestHub::pair_on_redis(&backend).await;
    let root = hub.user_with("root", Role::Admin, true).await;
    let eve = hub.user("eve", Role::Admin).await;
    let victim = hub.user("victim", Role::Client).await;
    // A project eve is not a member of: as an admin, she may watch its board.
    let project = hub.project("PRIV", &[&root, &victim]).await;
    let mut notes = node.connect(&eve).await;
    notes
        .send_json(json!({"type": "send_notification", "user_ids": [victim.id.0], "title": "Hi", "message": "m"}))
        .await;
    assert_eq!(notes.next_of("notification_sent").await["success"], true);
    let mut board = Ws::connect(&node.ws_url(&format!(
        "/ws/projects/{}/tickets/?token={}",
        project.id.0,
        node.token(&eve)
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
    // Sockets of earlier rounds may still hold their slots (a closing session waits a moment
    // for the client's close frame): no per-user cap, which is not what this is about.
    let hub = TestHub::start_with(&backend, |c| c.max_sockets_per_user = 0).await;
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

async fn spoofed_forwarded_addresses_never_escape_the_login_limit() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.login_per_minute = 5;
    })
    .await;
    hub.user("alice", Role::Client).await;
    // 25 wrong logins, each claiming a new first hop; the proxy (this test, on 127.0.0.1)
    // appends the real client's address last, as proxies do.
    let mut throttled = 0;
    for i in 0..25 {
        let res = hub
            .http
            .post(hub.url("/api/auth/login/"))
            .header("x-forwarded-for", format!("10.9.{i}.1, 203.0.113.50"))
            .json(&json!({"username": format!("nobody{i}"), "password": "wrong"}))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            throttled += 1;
        }
    }
    assert_eq!(throttled, 20, "the real client is throttled after 5 tries");
    // Another real client behind the same proxy is not.
    let res = hub
        .http
        .post(hub.url("/api/auth/login/"))
        .header("x-forwarded-for", "203.0.113.51")
        .json(&json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // An IPv6 client is one client across its /64: refreshes (30 a minute here) from 31
    // addresses of one /64 meet the limit.
    let mut statuses = Vec::new();
    for i in 0..31 {
        let res = hub
            .http
            .post(hub.url("/api/auth/refresh/"))
            .header("x-forwarded-for", format!("2001:db8:7:7::{i:x}"))
            .json(&json!({"refresh": "x"}))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[30], 429, "{statuses:?}");
}

async fn an_overlong_username_is_refused_like_a_wrong_one() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let (status, body) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "u".repeat(100_000), "password": "x"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
}

async fn preferences_take_only_types_the_hub_knows(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let put = |body: serde_json::Value| {
        let (hub, ann) = (&hub, &ann);
        async move {
            hub.call(
                reqwest::Method::PUT,
                "/api/notifications/preferences/",
                Some(&hub.token(ann)),
                Some(body),
            )
            .await
        }
    };
    // A flood of made-up types: refused whole, nothing stored.
    let flood: serde_json::Map<String, serde_json::Value> = (0..5_000)
        .map(|i| (format!("made_up_{i}"), json!({"email": false})))
        .collect();
    let (status, body) = put(json!({ "types": flood })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("At most 64"));
    let (status, body) = put(json!({"types": {"made_up": {"email": false}}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("made_up"));
    let prefs = hub
        .get_as(&ann, "/api/notifications/preferences/", 200)
        .await;
    assert_eq!(prefs["types"], json!({}));
    // Built-in types, and custom types the user has received, are accepted.
    let (status, body) = put(json!({"types": {"ticket_opened": {"email": false}}})).await;
    assert_eq!(status, 200, "{body}");
    hub.post_as(
        &admin,
        "/api/notifications/send/",
        json!({"user_ids": [ann.id.0], "title": "t", "message": "m", "notification_type": "maintenance"}),
        201,
    )
    .await;
    let (status, body) = put(json!({"types": {"maintenance": {"email": false}}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["types"]["maintenance"]["email"], false);
    assert_eq!(body["types"]["ticket_opened"]["email"], false);
}

async fn look_alike_usernames_cannot_be_registered(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    hub.user("admin", Role::Admin).await;
    let register = |username: &str, display: &str| {
        let body =
            json!({"username": username, "password": "long-enough-pw", "display_name": display});
        let hub = &hub;
        async move { hub.post("/api/auth/register/", None, body).await }
    };
    for taken in ["Admin", "ADMIN", "\u{430}dmin", "\u{ff41}dmin"] {
        let (status, body) = register(taken, "").await;
        assert_eq!(status, 400, "{taken}: {body}");
        assert_eq!(
            body["detail"], "username: A user with that username already exists.",
            "{taken}"
        );
    }
    for name in ["Eve\u{202E}nimda", "Mal\u{200B}lory", "Bell\u{7}"] {
        let (status, body) = register("mallory", name).await;
        assert_eq!(status, 400, "{name:?}: {body}");
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .starts_with("display_name:"));
    }
    let (status, body) = register("mallory", "Mallory O'Neil").await;
    assert_eq!(status, 201, "{body}");
    let mallory = hub
        .store
        .user_by_id(tickethub_actors::domain::UserId(
            body["id"].as_i64().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    let (status, body) = hub
        .call(
            reqwest::Method::PATCH,
            "/api/users/me/",
            Some(&hub.token(&mallory)),
            Some(json!({"display_name": "admin\u{2066}"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

async fn comments_are_paged_and_writes_are_limited_per_user(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.writes_per_minute = 8).await;
    let admin = hub.user("root", Role::Admin).await;
    let client = hub.user("cli", Role::Client).await;
    let outsider = hub.user("out", Role::Client).await;
    let project = hub.project("PG", &[&admin, &client]).await;
    // Not a member and no such project: the same answer.
    let create = |who: &User, project: i64| {
        let (hub, token) = (&hub, hub.token(who));
        async move {
            hub.post(
                "/api/tickets/",
                Some(&token),
                json!({"project": project, "title": "T", "description": "d"}),
            )
            .await
        }
    };
    let (s1, b1) = create(&outsider, project.id.0).await;
    let (s2, b2) = create(&outsider, 987_654).await;
    assert_eq!((s1, s2), (400, 400));
    assert_eq!(
        b1["detail"]
            .as_str()
            .unwrap()
            .replace(&project.id.0.to_string(), "N"),
        b2["detail"].as_str().unwrap().replace("987654", "N")
    );
    let (status, ticket) = create(&client, project.id.0).await;
    assert_eq!(status, 201, "{ticket}");
    let id = ticket["id"].as_i64().unwrap();
    // The client may write 8 things a minute: one ticket and 7 comments, then 429.
    let path = format!("/api/tickets/{id}/comments/");
    for i in 0..7 {
        hub.post_as(&client, &path, json!({"body": format!("c{i}")}), 201)
            .await;
    }
    let (status, body) = hub
        .post(
            &path,
            Some(&hub.token(&client)),
            json!({"body": "one too many"}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    // Others are not held back by it.
    for i in 7..12 {
        hub.post_as(&admin, &path, json!({"body": format!("c{i}")}), 201)
            .await;
    }
    // Paged, oldest first.
    let page = hub
        .get_as(&client, &format!("{path}?page_size=5"), 200)
        .await;
    assert_eq!(page["count"], 12);
    let bodies: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["c0", "c1", "c2", "c3", "c4"]);
    let last = hub
        .get_as(&client, &format!("{path}?page_size=5&page=3"), 200)
        .await;
    assert_eq!(last["results"].as_array().unwrap().len(), 2);
    assert!(last["next"].is_null());
    hub.get_as(&client, &format!("{path}?page_size=5&page=4"), 404)
        .await;
    let detail = hub
        .get_as(&client, &format!("/api/tickets/{id}/"), 200)
        .await;
    assert_eq!(detail["comment_count"], 12);
}

async fn links_other_than_paths_and_web_urls_are_refused() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    for link in [
        "javascript:alert(document.cookie)",
        "data:text/html,x",
        "//evil.example/",
    ] {
        let (status, body) = hub
            .post(
                "/api/notifications/send/",
                Some(&hub.token(&admin)),
                json!({"user_ids": [ann.id.0], "title": "t", "message": "m", "link": link}),
            )
            .await;
        assert_eq!(status, 400, "{link}: {body}");
        assert!(body["detail"].as_str().unwrap().starts_with("link:"));
    }
    // The socket command is refused the same way.
    let mut ws = hub.connect(&admin).await;
    ws.send_json(json!({"type": "send_notification", "user_ids": [ann.id.0], "title": "t", "message": "m", "link": "javascript:x"}))
        .await;
    let err = ws.next_of("error").await;
    assert!(
        err["message"].as_str().unwrap().starts_with("link:"),
        "{err}"
    );
    hub.post_as(
        &admin,
        "/api/notifications/send/",
        json!({"user_ids": [ann.id.0], "title": "t", "message": "m", "link": "/tickets/5"}),
        201,
    )
    .await;
    let inbox = hub.get_as(&ann, "/api/notifications/", 200).await;
    assert_eq!(inbox["count"], 1);
}

crate::trials! {
    both: [
        a_demoted_admin_keeps_no_admin_power_on_open_sockets,
        refresh_tokens_rotate_and_a_replay_ends_the_login,
        logout_ends_the_login_and_only_it,
        a_new_password_ends_every_token,
        a_socket_opening_during_a_deactivation_never_survives_it,
        preferences_take_only_types_the_hub_knows,
        look_alike_usernames_cannot_be_registered,
        comments_are_paged_and_writes_are_limited_per_user,
    ],
    tests: [
        made_up_methods_never_become_metric_series,
        metrics_ask_for_their_token_when_one_is_set,
        metrics_on_a_listener_of_their_own_leave_the_api_port,
        a_client_trickling_its_headers_is_disconnected,
        a_body_that_never_ends_is_answered_503,
        connections_past_the_cap_wait_for_a_free_slot,
        a_recipient_never_reads_the_webhook_url_or_its_errors,
        a_token_valid_only_later_is_refused_now,
        spoofed_forwarded_addresses_never_escape_the_login_limit,
        an_overlong_username_is_refused_like_a_wrong_one,
        links_other_than_paths_and_web_urls_are_refused,
        a_member_flooding_unknown_tickets_stalls_nobody_else,
        a_webhook_name_that_resolves_to_a_private_address_is_refused,
        a_receivers_oversized_answer_is_not_read,
        every_json_write_checks_its_body_alike,
    ],
    sync: [],
}
