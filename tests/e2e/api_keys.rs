//! API keys for servers, end to end: made by the CLI and the admin API, used with
//! `Authorization: Api-Key <key>`, held to their scopes, revoked, stored hashed, rate limited,
//! shown by name in timelines, and never accepted on sockets.

use serde_json::{json, Value};
use tickethub_actors::domain::Role;

use crate::harness::{cli, cli_ok, db_number, send_body, Backend, TestHub, Ws, SEND};

/// A request with `Authorization: Api-Key <key>`.
pub(crate) async fn with_key(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = hub
        .http
        .request(method, hub.url(path))
        .header("authorization", format!("Api-Key {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `POST /api/notifications/send/` to one user with an API key.
async fn send_with_key(hub: &TestHub, key: &str, to: i64) -> (u16, Value) {
    with_key(
        hub,
        reqwest::Method::POST,
        SEND,
        key,
        Some(send_body(&[to], json!({}))),
    )
    .await
}

/// The key `tickethub keys create` printed (its only line on stdout).
fn printed_key(stdout: &str) -> String {
    let key = stdout.trim().to_owned();
    assert!(key.len() == 41 && key.as_bytes()[8] == b'.', "{stdout:?}");
    key
}

async fn a_key_from_the_cli_sends_within_its_scopes_and_is_refused_outside_them(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let alice = hub.user("alice", Role::Client).await;
    let db = hub.db.url.clone();
    let run = cli_ok(&[
        "keys",
        "create",
        "--name",
        "billing",
        "--scopes",
        "notifications:send",
        "--database-url",
        &db,
    ])
    .await;
    let key = printed_key(&run);

    // A send as the key: 201, the notification arrives, and shows as the key's name.
    let mut ws = hub.connect(&alice).await;
    let (status, body) = with_key(
        &hub,
        reqwest::Method::POST,
        SEND,
        &key,
        Some(send_body(&[alice.id.0], json!({"title": "Invoice paid"}))),
    )
    .await;
    assert_eq!((status, &body["count"]), (201, &json!(1)), "{body}");
    let n = ws.next_of("notification").await;
    assert_eq!(n["title"], "Invoice paid");
    let admin = hub.user("root", Role::Admin).await;
    let timeline = hub
        .get_as(
            &admin,
            &format!("/api/notifications/{}/timeline/", n["id"]),
            200,
        )
        .await;
    assert!(
        timeline.to_string().contains("\"key:billing\""),
        "the key's user, named after it, is the actor: {timeline}"
    );

    // Outside its scope: 403, whatever the route.
    for (method, path) in [
        (reqwest::Method::GET, "/api/admin/actors"),
        (reqwest::Method::GET, "/api/tickets/"),
        (reqwest::Method::GET, "/api/users/me/"),
        (reqwest::Method::POST, "/api/admin/api-keys/"),
    ] {
        let (status, body) = with_key(&hub, method.clone(), path, &key, Some(json!({}))).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("notifications:send"),
            "{body}"
        );
    }

    // Only a hash is stored: the secret part appears nowhere in the table.
    let secret = &key[9..];
    let stored = db_number(
        &hub.db,
        &format!("SELECT COUNT(*) FROM api_keys WHERE key_hash LIKE '%{secret}%' OR prefix LIKE '%{secret}%' OR name LIKE '%{secret}%'"),
    )
    .await;
    assert_eq!(stored, 0);
    // What is stored is the key's SHA-256, reckoned here on its own (no other encoding of the
    // key, a hex one say, would match it).
    let expected: String = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        key.as_bytes(),
    ))
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    assert_eq!(
        db_number(
            &hub.db,
            &format!("SELECT COUNT(*) FROM api_keys WHERE key_hash = '{expected}'"),
        )
        .await,
        1
    );

    // Listed with its prefix and its last use; revoked, it is refused with 401.
    let listed = cli_ok(&["keys", "list", "--json", "--database-url", &db]).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "billing");
    assert_eq!(listed[0]["prefix"], &key[..8]);
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");
    assert!(!listed.to_string().contains(secret));
    cli_ok(&["keys", "revoke", "billing", "--database-url", &db]).await;
    let (status, body) = send_with_key(&hub, &key, alice.id.0).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    // A second revoke, or an unknown name, fails with the reason.
    let again = cli(&["keys", "revoke", "billing", "--database-url", &db]).await;
    assert!(
        !again.ok && again.stderr.contains("billing"),
        "{}",
        again.stderr
    );

    // Unknown keys, and keys of the wrong shape, are 401.
    let mut forged = key.clone();
    forged.replace_range(20..21, if &key[20..21] == "A" { "B" } else { "A" });
    for bad in [forged.as_str(), "nonsense", ""] {
        let (status, _) = with_key(&hub, reqwest::Method::POST, SEND, bad, Some(json!({}))).await;
        assert_eq!(status, 401, "{bad}");
    }
}

async fn the_admin_api_makes_lists_and_revokes_keys_and_a_ticket_key_acts_as_its_user(
    backend: Backend,
) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let dev = hub.user("dev", Role::Developer).await;
    let svc = hub.user("crm", Role::Client).await;
    let project = hub.project("CRM", &[&svc, &dev]).await;

    // Only admins, with their own token, make keys; bad input is a 400 naming the field.
    let (status, _) = hub
        .post(
            "/api/admin/api-keys/",
            Some(&hub.token(&dev)),
            json!({"name": "x", "scopes": ["admin:read"]}),
        )
        .await;
    assert_eq!(status, 403);
    for (body, field) in [
        (
            json!({"name": "bad name", "scopes": ["admin:read"]}),
            "name",
        ),
        (json!({"name": "k", "scopes": ["admin:write"]}), "scopes"),
        (json!({"name": "k", "scopes": []}), "scopes"),
        (
            json!({"name": "k", "scopes": ["tickets:write"], "user": "nobody"}),
            "user",
        ),
    ] {
        let (status, res) = hub
            .post(
                "/api/admin/api-keys/",
                Some(&hub.token(&admin)),
                body.clone(),
            )
            .await;
        assert_eq!(status, 400, "{body}: {res}");
        assert!(
            res["detail"].as_str().unwrap().starts_with(field),
            "{body}: {res}"
        );
    }
    let made = hub
        .post_as(
            &admin,
            "/api/admin/api-keys/",
            json!({"name": "crm-sync", "scopes": ["tickets:write"], "user": "crm"}),
            201,
        )
        .await;
    let key = made["key"].as_str().unwrap().to_owned();
    assert_eq!(made["username"], "crm");
    assert_eq!(made["prefix"], &key[..8]);
    let reader = hub
        .post_as(
            &admin,
            "/api/admin/api-keys/",
            json!({"name": "auditor", "scopes": ["admin:read"]}),
            201,
        )
        .await;
    let reader_key = reader["key"].as_str().unwrap().to_owned();
    // A taken name is refused.
    let (status, _) = hub
        .post(
            "/api/admin/api-keys/",
            Some(&hub.token(&admin)),
            json!({"name": "auditor", "scopes": ["admin:read"]}),
        )
        .await;
    assert_eq!(status, 400);

    // tickets:write creates a ticket as the service user (a client), and acts with that
    // user's role only: an admin's action is refused.
    let (status, ticket) = with_key(
        &hub,
        reqwest::Method::POST,
        "/api/tickets/",
        &key,
        Some(json!({"project": project.id.0, "title": "Sync failed", "description": "d"})),
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["created_by"], svc.id.0, "{ticket}");
    let open = format!("/api/tickets/{}/open_ticket/", ticket["id"]);
    let (status, _) = with_key(&hub, reqwest::Method::POST, &open, &key, None).await;
    assert_eq!(status, 403, "a client may not open a ticket");
    let (status, _) = send_with_key(&hub, &key, dev.id.0).await;
    assert_eq!(status, 403, "tickets:write does not send");

    // admin:read reads what admins read, and nothing else.
    let (status, keys) = with_key(
        &hub,
        reqwest::Method::GET,
        "/api/admin/api-keys/",
        &reader_key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(!keys.to_string().contains(&key[9..]), "no secret is listed");
    let (status, tickets) = with_key(
        &hub,
        reqwest::Method::GET,
        "/api/tickets/",
        &reader_key,
        None,
    )
    .await;
    assert_eq!(
        (status, tickets["count"].as_i64()),
        (200, Some(1)),
        "{tickets}"
    );
    let (status, _) = with_key(&hub, reqwest::Method::POST, &open, &reader_key, None).await;
    assert_eq!(status, 403);
    let revoke = "/api/admin/api-keys/crm-sync/";
    let (status, _) = with_key(&hub, reqwest::Method::DELETE, revoke, &reader_key, None).await;
    assert_eq!(status, 403, "admin:read revokes nothing");

    // Revoked through the API: refused at once, and marked in the list.
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            revoke,
            Some(&hub.token(&admin)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            revoke,
            Some(&hub.token(&admin)),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = with_key(&hub, reqwest::Method::GET, "/api/tickets/", &key, None).await;
    assert_eq!(status, 401);
    let listed = hub.get_as(&admin, "/api/admin/api-keys/", 200).await;
    assert!(listed[0]["revoked_at"].is_string(), "{listed}");
    assert!(listed[1]["revoked_at"].is_null(), "{listed}");
}

async fn keys_have_their_own_rate_limit_and_never_open_a_socket() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.api_key_requests_per_minute = 3).await;
    let admin = hub.user("boss", Role::Admin).await;
    let alice = hub.user("alice", Role::Client).await;
    let made = hub
        .post_as(
            &admin,
            "/api/admin/api-keys/",
            json!({"name": "pager", "scopes": ["notifications:send", "admin:read"]}),
            201,
        )
        .await;
    let key = made["key"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (status, body) = send_with_key(&hub, &key, alice.id.0).await;
        assert_eq!(status, 201, "{body}");
    }
    let res = hub
        .http
        .post(hub.url(SEND))
        .header("authorization", format!("Api-Key {key}"))
        .json(&send_body(&[alice.id.0], json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().get("retry-after").is_some());
    // The admin's own token is not held to the key's limit.
    hub.send(&admin, &[&alice], json!({})).await;

    // Sockets and the event stream take tokens only: a key is refused as a token.
    let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={key}"))).await;
    assert_eq!(ws.close_code().await, 4001);
    let res = hub
        .http
        .get(hub.url("/sse/notifications/"))
        .header("authorization", format!("Api-Key {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let res = hub
        .http
        .get(hub.url(&format!("/sse/notifications/?token={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
}

crate::trials! {
    both: [
        a_key_from_the_cli_sends_within_its_scopes_and_is_refused_outside_them,
        the_admin_api_makes_lists_and_revokes_keys_and_a_ticket_key_acts_as_its_user,
    ],
    tests: [
        keys_have_their_own_rate_limit_and_never_open_a_socket,
    ],
    sync: [],
}
