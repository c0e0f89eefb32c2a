//! REST authentication: login, refresh, register, `me`.

use axum::response::IntoResponse;
use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::harness::{eventually, Backend, TestHub, Ws};
use crate::tickets::cast;
mod jwks;
use jwks::*;

async fn login_me_and_refresh(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    hub.user("alice", Role::Developer).await;
    let (status, tokens) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "alice", "password": "alice-password"}),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access"].as_str().unwrap();
    let refresh = tokens["refresh"].as_str().unwrap();

    let (status, me) = hub.get("/api/users/me/", Some(access)).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["role"], "developer");
    assert_eq!(me["display_name"], "alice display");
    assert!(me.get("password_hash").is_none());

    // A refresh token buys an access token, and is no access token itself.
    let (status, body) = hub.get("/api/users/me/", Some(refresh)).await;
    assert_eq!(status, 401);
    assert_eq!(body["detail"], "Token has wrong type.");
    let (status, body) = hub
        .post("/api/auth/refresh/", None, json!({"refresh": refresh}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = hub
        .get("/api/users/me/", Some(body["access"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    let (status, _) = hub
        .post("/api/auth/refresh/", None, json!({"refresh": access}))
        .await;
    assert_eq!(status, 401);
}

async fn bad_credentials_are_401_with_detail(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let bob = hub.user("bob", Role::Client).await;
    for body in [
        json!({"username": "bob", "password": "wrong"}),
        json!({"username": "nobody", "password": "bob-password"}),
    ] {
        let (status, res) = hub.post("/api/auth/login/", None, body).await;
        assert_eq!(status, 401);
        assert_eq!(
            res,
            json!({"detail": "No active account found with the given credentials"})
        );
    }
    let (status, res) = hub.get("/api/users/me/", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        res["detail"],
        "Authentication credentials were not provided."
    );
    let (status, res) = hub.get("/api/users/me/", Some("not-a-jwt")).await;
    assert_eq!(status, 401);
    assert!(res["detail"].is_string());

    // Malformed JSON and wrong field types are 400, oversized bodies 413.
    let res = hub
        .http
        .post(hub.url("/api/auth/login/"))
        .header("content-type", "application/json")
        .body("{\"username\":")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (status, res) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": 5, "password": []}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(res["detail"].is_string());
    // The hub closes a connection whose body it refused, so this request gets one of its own.
    let big = "x".repeat(2 * 1024 * 1024);
    let res = reqwest::Client::new()
        .post(hub.url("/api/auth/login/"))
        .json(&json!({"username": big, "password": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let res: serde_json::Value = res.json().await.unwrap();
    assert!(res["detail"].is_string(), "{res}");
    // The same on a handler that reads its body raw (a ticket action).
    let res = reqwest::Client::new()
        .post(hub.url("/api/tickets/1/comments/"))
        .bearer_auth(hub.token(&bob))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let res: serde_json::Value = res.json().await.unwrap();
    assert_eq!(res["detail"], "Request body is too large.", "{res}");
    let (status, res) = hub.get("/api/nothing-here/", None).await;
    assert_eq!(status, 404);
    assert_eq!(res["detail"], "Not found.");
}

async fn register_creates_clients(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let body = json!({
        "username": "carol",
        "password": "long enough",
        "email": "carol@example.test",
        "display_name": "Carol C",
        "whatsapp_number": "+15551234567"
    });
    let (status, user) = hub.post("/api/auth/register/", None, body.clone()).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["role"], "client");
    assert_eq!(user["is_superuser"], false);
    assert_eq!(user["whatsapp_number"], "+15551234567");

    let (status, res) = hub.post("/api/auth/register/", None, body).await;
    assert_eq!(status, 400);
    assert!(res["detail"].as_str().unwrap().contains("already exists"));
    for bad in [
        json!({"username": "d", "password": "short"}),
        json!({"username": "bad name", "password": "long enough"}),
        json!({"username": "e", "password": "long enough", "email": "nope"}),
        json!({"username": "f", "password": "long enough", "role": "admin"}),
    ] {
        let (status, res) = hub.post("/api/auth/register/", None, bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {res}");
        assert!(res["detail"].is_string());
    }
    let (status, _) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "carol", "password": "long enough"}),
        )
        .await;
    assert_eq!(status, 200);
}

/// An identity provider signs with its private key; the hub holds only the public key.
async fn external_identity_provider_tokens(alg: &str) {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let lower = alg.to_lowercase();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.jwt_algorithm = match alg {
            "RS256" => tickethub::config::JwtAlgorithm::Rs256,
            _ => tickethub::config::JwtAlgorithm::Es256,
        };
        c.jwt_secret = None;
        c.jwt_public_key = Some(fixtures.join(format!("{lower}-public.pem")));
    })
    .await;
    let user = hub.user("idp-user", Role::Developer).await;
    let pem = std::fs::read(fixtures.join(format!("{lower}-private.pem"))).unwrap();
    let (algorithm, key) = match alg {
        "RS256" => (
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        ),
        _ => (
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        ),
    };
    let exp = chrono::Utc::now().timestamp() + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        &json!({"sub": user.id.0.to_string(), "exp": exp}),
        &key,
    )
    .unwrap();
    let (status, me) = hub.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], "idp-user");
    let mut ws =
        crate::harness::Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={token}")))
            .await;
    ws.established().await;

    // An HS256 token, even one signed with the public key as its secret, is refused.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user.id.0.to_string(), "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(
            &std::fs::read(fixtures.join(format!("{lower}-public.pem"))).unwrap(),
        ),
    )
    .unwrap();
    let (status, _) = hub.get("/api/users/me/", Some(&forged)).await;
    assert_eq!(status, 401);
    // Without a private key the hub issues no tokens.
    let (status, res) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "idp-user", "password": "idp-user-password"}),
        )
        .await;
    assert_eq!(status, 503, "{res}");
}

async fn rs256_tokens_from_an_identity_provider() {
    external_identity_provider_tokens("RS256").await;
}

async fn es256_tokens_from_an_identity_provider() {
    external_identity_provider_tokens("ES256").await;
}

async fn es256_hub_with_a_private_key_issues_its_own_tokens() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.jwt_algorithm = tickethub::config::JwtAlgorithm::Es256;
        c.jwt_secret = None;
        c.jwt_public_key = Some(fixtures.join("es256-public.pem"));
        c.jwt_private_key = Some(fixtures.join("es256-private.pem"));
    })
    .await;
    hub.user("erin", Role::Client).await;
    let (status, tokens) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "erin", "password": "erin-password"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = hub.get("/api/users/me/", tokens["access"].as_str()).await;
    assert_eq!(status, 200);
}

async fn users_are_listed_to_those_who_share_a_project() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user("admin1", Role::Admin).await;
    let dev = hub.user("dev1", Role::Developer).await;
    let client = hub.user("client1", Role::Client).await;
    let stranger = hub.user("stranger", Role::Developer).await;
    hub.project("WEB", &[&dev, &client]).await;
    let all = hub.get_as(&admin, "/api/users/", 200).await;
    assert_eq!(all["count"], 4);
    assert_eq!(all["results"].as_array().unwrap().len(), 4);
    // A page at a time, as every list.
    let first = hub.get_as(&admin, "/api/users/?page_size=3", 200).await;
    assert_eq!(first["results"].as_array().unwrap().len(), 3);
    assert!(first["next"]
        .as_str()
        .unwrap()
        .ends_with("page_size=3&page=2"));
    let second = hub
        .get_as(&admin, "/api/users/?page_size=3&page=2", 200)
        .await;
    assert_eq!(second["results"][0]["username"], "stranger");
    let devs = hub.get_as(&admin, "/api/users/?role=developer", 200).await;
    let names: Vec<&str> = devs["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev1", "stranger"]);
    let seen = hub.get_as(&client, "/api/users/", 200).await;
    let names: Vec<&str> = seen["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev1", "client1"]);
    hub.get_as(&stranger, "/api/users/?role=wizard", 400).await;
    assert!(seen["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u.get("password_hash").is_none()));
}

/// A PATCH as a user, expecting a status.
async fn patch_as(hub: &TestHub, user: &User, path: &str, body: Value, expect: u16) -> Value {
    let (status, v) = hub
        .call(Method::PATCH, path, Some(&hub.token(user)), Some(body))
        .await;
    assert_eq!(status, expect, "PATCH {path}: {v}");
    v
}

async fn co_members_see_each_other_without_addresses(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    for u in [&c.c1, &c.c2, &c.a1] {
        patch_as(
            &hub,
            u,
            "/api/users/me/",
            json!({"email": format!("{}@example.test", u.username), "whatsapp_number": "+15551234567"}),
            200,
        )
        .await;
    }
    let seen = hub.get_as(&c.c1, "/api/users/", 200).await;
    let seen = seen["results"].as_array().unwrap();
    assert_eq!(seen.len(), 6);
    for u in seen {
        let keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
        if u["id"] == c.c1.id.0 {
            // Their own entry is whole.
            assert_eq!(u["email"], "c1@example.test");
        } else {
            let mut keys = keys.clone();
            keys.sort();
            assert_eq!(keys, ["display_name", "id", "role", "username"], "{u}");
        }
    }
    // Admins see every field of everyone.
    let all = hub.get_as(&c.a2, "/api/users/", 200).await;
    let c2 = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == c.c2.id.0)
        .unwrap();
    assert_eq!(c2["email"], "c2@example.test");
    assert_eq!(c2["whatsapp_number"], "+15551234567");
    // One user's page is for admins.
    hub.get_as(&c.c1, &format!("/api/users/{}/", c.c2.id.0), 403)
        .await;
    hub.get_as(&c.d1, &format!("/api/users/{}/", c.d1.id.0), 403)
        .await;
    let one = hub
        .get_as(&c.a1, &format!("/api/users/{}/", c.c2.id.0), 200)
        .await;
    assert_eq!(one["email"], "c2@example.test");
    hub.get_as(&c.a1, "/api/users/424242/", 404).await;
    hub.get_as(&c.a1, "/api/users/x/", 404).await;
}

async fn admins_change_users_and_deactivation_cuts_them_off(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let path = format!("/api/users/{}/", c.c2.id.0);
    // A token that has worked (and is now held as verified) stops working all the same.
    let before = hub.token(&c.c2);
    let (status, _) = hub.get("/api/users/me/", Some(&before)).await;
    assert_eq!(status, 200);
    // Changes, with read-only fields ignored as in DRF.
    let changed = patch_as(
        &hub,
        &c.a1,
        &path,
        json!({"display_name": "Carol", "email": "carol@example.test", "role": "developer", "username": "ignored", "id": 1}),
        200,
    )
    .await;
    assert_eq!(
        (
            &changed["display_name"],
            &changed["email"],
            &changed["role"],
            &changed["username"]
        ),
        (
            &json!("Carol"),
            &json!("carol@example.test"),
            &json!("developer"),
            &json!("c2")
        )
    );
    // Another role ended the tokens the user held.
    let (status, _) = hub.get("/api/users/me/", Some(&before)).await;
    assert_eq!(status, 401);
    let (status, _) = hub.get("/api/users/me/", Some(&hub.token(&c.c2))).await;
    assert_eq!(status, 401);
    let c2 = hub.store.user_by_id(c.c2.id).await.unwrap().unwrap();
    patch_as(&hub, &c.a1, &path, json!({"email": "nope"}), 400).await;
    patch_as(&hub, &c.a1, &path, json!({"role": "boss"}), 400).await;
    patch_as(
        &hub,
        &c.a1,
        &path,
        json!({"display_name": "x".repeat(151)}),
        400,
    )
    .await;
    patch_as(&hub, &c.c1, &path, json!({"is_active": false}), 403).await;
    let own = format!("/api/users/{}/", c.a1.id.0);
    patch_as(&hub, &c.a1, &own, json!({"is_active": false}), 400).await;
    patch_as(&hub, &c.a1, &own, json!({"role": "client"}), 400).await;

    // Deactivation: every socket closes with 4001, every token stops working.
    let token = hub.token(&c2);
    let (status, _) = hub.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 200);
    let mut notes = hub.connect(&c2).await;
    let mut board = Ws::connect(&hub.ws_url(&format!(
        "/ws/projects/{}/tickets/?token={token}",
        c.project
    )))
    .await;
    // Greeted: the board socket is in its room before the deactivation (a socket still
    // arriving as it happens is another test's matter).
    let hello = board.next_json().await;
    assert_eq!(hello["type"], "connection_established", "{hello}");
    let mut other = hub.connect(&c.c1).await;
    patch_as(&hub, &c.a1, &path, json!({"is_active": false}), 200).await;
    assert_eq!(notes.close_code().await, 4001);
    assert_eq!(board.close_code().await, 4001);
    // Nobody else noticed.
    other.roundtrip().await;
    let (status, _) = hub.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 401);
    let (status, _) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "c2", "password": "c2-password"}),
        )
        .await;
    assert_eq!(status, 401);
    let mut again = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={token}"))).await;
    assert_eq!(again.close_code().await, 4001);

    // A socket that outlived its account's deactivation (made behind the hub's back) cannot
    // refresh its token.
    let mut d1 = hub.connect(&c.d1).await;
    hub.store
        .update_profile(
            c.d1.id,
            tickethub_actors::ports::ProfileChanges {
                is_active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    d1.send_json(json!({"type": "refresh_token", "token": hub.token(&c.d1)}))
        .await;
    let refused = d1.next_of("error").await;
    assert_eq!(refused["code"], "invalid_token");

    // Activated again, the user is back, with new tokens: the deactivation ended the old.
    patch_as(&hub, &c.a1, &path, json!({"is_active": true}), 200).await;
    let (status, _) = hub.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 401);
    let (status, tokens) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "c2", "password": "c2-password"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = hub.get("/api/users/me/", tokens["access"].as_str()).await;
    assert_eq!(status, 200);
}

async fn login_and_registration_floods_are_throttled(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| {
        c.login_per_minute = 5;
        c.register_per_hour = 2;
    })
    .await;
    hub.user("alice", Role::Client).await;
    // Sixty wrong passwords in a row: the first five are checked, the rest refused at once,
    // while the hub stays healthy.
    let flood = async {
        let mut statuses = Vec::new();
        for _ in 0..60 {
            let res = hub
                .http
                .post(hub.url("/api/auth/login/"))
                .json(&json!({"username": "alice", "password": "wrong"}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            if status == 429 {
                let wait: u64 = res.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&wait), "{wait}");
                let body: Value = res.json().await.unwrap();
                assert!(body["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("Request was throttled."));
            }
            statuses.push(status);
        }
        statuses
    };
    let health = async {
        for _ in 0..10 {
            assert_eq!(hub.get("/healthz", None).await.0, 200);
        }
    };
    let (statuses, ()) = tokio::join!(flood, health);
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 55);
    // Even the right password waits its turn now.
    let (status, _) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "alice", "password": "alice-password"}),
        )
        .await;
    assert_eq!(status, 429);
    let metrics = hub.metrics().await;
    assert!(
        metrics.value("tickethub_throttled_total", &["limit=\"login_ip\""]) > 0.0,
        "{metrics}"
    );
    // Registrations: two an hour from one address.
    for (i, expect) in [(0, 201), (1, 201), (2, 429)] {
        let (status, body) = hub
            .post(
                "/api/auth/register/",
                None,
                json!({"username": format!("new{i}"), "password": "long-enough"}),
            )
            .await;
        assert_eq!(status, expect, "{body}");
    }
}

async fn password_hashing_runs_a_bounded_number_at_once() {
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.password_hashing_concurrency = 1;
        c.password_hashing_wait_ms = 1;
    })
    .await;
    for i in 0..16 {
        hub.user(&format!("u{i}"), Role::Client).await;
    }
    let tries = (0..16).map(|i| {
        let hub = &hub;
        async move {
            let res = hub
                .http
                .post(hub.url("/api/auth/login/"))
                .json(&json!({"username": format!("u{i}"), "password": format!("u{i}-password")}))
                .send()
                .await
                .unwrap();
            let retry = res.headers().get("retry-after").is_some();
            (res.status().as_u16(), retry)
        }
    });
    let answers = futures::future::join_all(tries).await;
    // One hashes at a time: the logins that found it busy got 503 with Retry-After.
    assert!(answers.contains(&(200, false)), "{answers:?}");
    assert!(answers.contains(&(503, true)), "{answers:?}");
    assert!(answers
        .iter()
        .all(|a| *a == (200, false) || *a == (503, true)));
}

async fn registration_can_be_closed_and_its_fields_are_bounded(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    for (body, field) in [
        (
            json!({"username": "u".repeat(151), "password": "long-enough"}),
            "username",
        ),
        (
            json!({"username": "carol", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "carol", "password": "p".repeat(129)}),
            "password",
        ),
        (
            json!({"username": "carol", "password": "long-enough", "display_name": "d".repeat(151)}),
            "display_name",
        ),
    ] {
        let (status, res) = hub.post("/api/auth/register/", None, body).await;
        assert_eq!(status, 400, "{res}");
        assert!(
            res["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{res}"
        );
    }
    let (status, _) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "carol", "password": "p".repeat(128), "display_name": "d".repeat(150)}),
        )
        .await;
    assert_eq!(status, 201);
    // A login page can ask, without a token, whether to offer sign-up.
    let (status, res) = hub.get("/api/auth/registration/", None).await;
    assert_eq!((status, res), (200, json!({"open": true})));

    let closed = TestHub::start_with(&backend, |c| {
        c.registration = tickethub::config::Registration::Closed
    })
    .await;
    let (status, res) = closed
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "dave", "password": "long-enough"}),
        )
        .await;
    assert_eq!(status, 403, "{res}");
    assert_eq!(
        res["detail"],
        "Registration is closed; ask an admin for an account."
    );
    let (status, res) = closed.get("/api/auth/registration/", None).await;
    assert_eq!((status, res), (200, json!({"open": false})));
}

async fn identity_provider_audience_issuer_and_leeway_are_checked() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    const AUD: &str = "tickethub-web";
    const ISS: &str = "https://idp.example.test/realms/ops";
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.jwt_algorithm = tickethub::config::JwtAlgorithm::Rs256;
        c.jwt_secret = None;
        c.jwt_public_key = Some(fixtures.join("rs256-public.pem"));
        c.jwt_audience = Some(AUD.into());
        c.jwt_issuer = Some(ISS.into());
        c.jwt_leeway = 60;
    })
    .await;
    let user = hub.user("kc-user", Role::Developer).await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(
        &std::fs::read(fixtures.join("rs256-private.pem")).unwrap(),
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let status_of = |claims: Value| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap();
        let hub = &hub;
        async move { hub.get("/api/users/me/", Some(&token)).await.0 }
    };
    let sub = user.id.0.to_string();
    let good = json!({"sub": sub, "exp": now + 600, "aud": AUD, "iss": ISS});
    assert_eq!(status_of(good.clone()).await, 200);
    // `aud` may be a list, as Keycloak and Entra ID send it.
    let mut listed = good.clone();
    listed["aud"] = json!(["account", AUD]);
    assert_eq!(status_of(listed).await, 200);
    for (field, value) in [
        ("aud", json!("someone-else")),
        ("iss", json!("https://evil.example.test")),
        // Past the 60 s leeway.
        ("exp", json!(now - 120)),
    ] {
        let mut bad = good.clone();
        bad[field] = value;
        assert_eq!(status_of(bad).await, 401, "{field}");
    }
    for missing in ["aud", "iss"] {
        let mut bad = good.clone();
        bad.as_object_mut().unwrap().remove(missing);
        assert_eq!(status_of(bad).await, 401, "without {missing}");
    }
    // Within the leeway, a token just expired still counts.
    let mut skewed = good.clone();
    skewed["exp"] = json!(now - 30);
    assert_eq!(status_of(skewed).await, 200);

    // A hub that issues its own tokens puts its audience and issuer in them.
    let own = TestHub::start_with(&Backend::Sqlite, |c| {
        c.jwt_audience = Some(AUD.into());
        c.jwt_issuer = Some(ISS.into());
    })
    .await;
    let alice = own.user("alice", Role::Client).await;
    let (status, tokens) = own
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "alice", "password": "alice-password"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        own.get("/api/users/me/", tokens["access"].as_str()).await.0,
        200
    );
    assert_eq!(
        own.get("/api/users/me/", Some(&own.token(&alice))).await.0,
        200
    );
}

async fn logins_are_limited_per_username_across_addresses(backend: Backend) {
    // Behind a trusted proxy, each attempt comes from another client address: the per-address
    // bucket never fills, the per-username one does.
    let hub = TestHub::start_with(&backend, |c| {
        c.login_per_minute = 3;
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    hub.user("alice", Role::Client).await;
    hub.user("bob", Role::Client).await;
    let login = |who: &'static str, from: String| {
        let hub = &hub;
        async move {
            hub.http
                .post(hub.url("/api/auth/login/"))
                .header("x-forwarded-for", from)
                .json(&json!({"username": who, "password": "wrong"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for i in 0..3 {
        assert_eq!(login("alice", format!("10.0.0.{i}")).await, 401);
    }
    assert_eq!(login("alice", "10.0.1.1".into()).await, 429);
    // Another user from a fresh address is not held back by alice's bucket.
    assert_eq!(login("bob", "10.0.2.1".into()).await, 401);
}

/// The permits of a [`JwksServer`]'s open gate: more fetches than any test makes.
const GATE: usize = 1 << 20;

/// A stand-in for an identity provider's JWKS endpoint, whose keys the test swaps.
struct JwksServer {
    url: String,
    keys: std::sync::Arc<std::sync::Mutex<Value>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// While closed, every fetch after the first waits for it to open.
    gate: std::sync::Arc<tokio::sync::Semaphore>,
}

impl JwksServer {
    async fn start(keys: Value) -> JwksServer {
        use std::sync::atomic::Ordering;
        let keys = std::sync::Arc::new(std::sync::Mutex::new(keys));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(GATE));
        let app = axum::Router::new().route(
            "/realms/ops/protocol/openid-connect/certs",
            axum::routing::get({
                let (keys, fetches, gate) = (keys.clone(), fetches.clone(), gate.clone());
                move || async move {
                    if fetches.fetch_add(1, Ordering::SeqCst) > 0 {
                        let _open = gate.acquire().await;
                    }
                    let keys = keys.lock().unwrap().clone();
                    if keys.is_null() {
                        // The provider is down.
                        axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        axum::Json(keys).into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer {
            url: format!("http://{addr}/realms/ops/protocol/openid-connect/certs"),
            keys,
            fetches,
            gate,
        }
    }

    /// Holds every later fetch until [`JwksServer::open`].
    async fn close(&self) {
        self.gate.acquire_many(GATE as u32).await.unwrap().forget();
    }

    fn open(&self) {
        self.gate.add_permits(GATE);
    }

    /// Serves these keys from now on; `Value::Null`: answers 503, as a provider that is down.
    fn serve(&self, keys: Value) {
        *self.keys.lock().unwrap() = keys;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

crate::trials! {
    both: [
        provider_keys_are_held_through_an_outage_age_out_and_never_outrank_the_local_user,
        login_me_and_refresh,
        bad_credentials_are_401_with_detail,
        register_creates_clients,
        co_members_see_each_other_without_addresses,
        admins_change_users_and_deactivation_cuts_them_off,
        login_and_registration_floods_are_throttled,
        logins_are_limited_per_username_across_addresses,
        registration_can_be_closed_and_its_fields_are_bounded,
        provider_users_are_linked_by_subject_and_only_access_tokens_count,
    ],
    tests: [
        rs256_tokens_from_an_identity_provider,
        es256_tokens_from_an_identity_provider,
        es256_hub_with_a_private_key_issues_its_own_tokens,
        users_are_listed_to_those_who_share_a_project,
        password_hashing_runs_a_bounded_number_at_once,
        identity_provider_audience_issuer_and_leeway_are_checked,
        identity_provider_keys_come_from_a_jwks_and_rotate,
        keys_grown_old_are_refreshed_without_holding_requests,
    ],
    sync: [],
}
