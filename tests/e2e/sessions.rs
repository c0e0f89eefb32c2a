//! A person's own logins: logging out everywhere (`POST /api/auth/logout-everywhere/`) and
//! changing their own password (`POST /api/users/me/password/`). Both end every token the
//! person holds, and close their sockets with 4001 on every node.

use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::Role;

use crate::harness::{Backend, TestHub, Ws};

/// Logs in over the API: the status and the body.
async fn login(hub: &TestHub, username: &str, password: &str) -> (u16, Value) {
    hub.post(
        "/api/auth/login/",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

/// A login's access and refresh tokens.
async fn logged_in(hub: &TestHub, username: &str, password: &str) -> (String, String) {
    let (status, body) = login(hub, username, password).await;
    assert_eq!(status, 200, "{username} logs in: {body}");
    pair(&body)
}

fn pair(body: &Value) -> (String, String) {
    (
        body["access"].as_str().expect("an access token").to_owned(),
        body["refresh"]
            .as_str()
            .expect("a refresh token")
            .to_owned(),
    )
}

/// `/ws/notifications/` with this token, greeted.
async fn socket(hub: &TestHub, access: &str) -> Ws {
    let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={access}"))).await;
    ws.established().await;
    ws
}

async fn me_status(hub: &TestHub, access: &str) -> u16 {
    hub.get("/api/users/me/", Some(access)).await.0
}

async fn refresh_status(hub: &TestHub, refresh: &str) -> u16 {
    hub.post("/api/auth/refresh/", None, json!({"refresh": refresh}))
        .await
        .0
}

/// Two logins of one person, with a socket open on each of two nodes: logging out everywhere
/// from one ends both logins' access and refresh tokens and closes both sockets with 4001.
/// Another person notices nothing; logging in again works.
async fn logging_out_everywhere_ends_every_token_and_socket(backend: Backend) {
    let (a, b) = TestHub::pair_on_redis(&backend).await;
    let ann = a.user("ann", Role::Developer).await;
    let bob = a.user("bob", Role::Developer).await;
    let (laptop, laptop_refresh) = logged_in(&a, "ann", "ann-password").await;
    let (phone, phone_refresh) = logged_in(&b, "ann", "ann-password").await;
    let mut here = socket(&a, &laptop).await;
    let mut there = socket(&b, &phone).await;
    let mut bobs = b.connect(&bob).await;

    let (status, body) = a
        .call(Method::POST, "/api/auth/logout-everywhere/", None, None)
        .await;
    assert_eq!(status, 401, "without a token: {body}");
    assert_eq!(me_status(&a, &laptop).await, 200, "nothing ended yet");

    let (status, body) = a
        .call(
            Method::POST,
            "/api/auth/logout-everywhere/",
            Some(&laptop),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(here.close_code().await, 4001, "this node's socket closes");
    assert_eq!(
        there.close_code().await,
        4001,
        "the other node's socket too"
    );
    bobs.roundtrip().await;
    assert_eq!(
        me_status(&a, &a.token(&bob)).await,
        200,
        "Bob is not touched"
    );
    for (hub, access) in [(&a, &laptop), (&b, &phone), (&a, &phone), (&b, &laptop)] {
        assert_eq!(me_status(hub, access).await, 401, "old access tokens end");
    }
    assert_eq!(refresh_status(&a, &laptop_refresh).await, 401);
    assert_eq!(refresh_status(&b, &phone_refresh).await, 401);
    let (status, _) = a
        .call(
            Method::POST,
            "/api/auth/logout-everywhere/",
            Some(&phone),
            None,
        )
        .await;
    assert_eq!(status, 401, "an ended token cannot log out again");
    // A socket opened with an old token now is refused.
    let mut late = Ws::connect(&b.ws_url(&format!("/ws/notifications/?token={phone}"))).await;
    assert_eq!(late.close_code().await, 4001);

    // Logging in again gives tokens that work, on both nodes.
    let (fresh, fresh_refresh) = logged_in(&b, "ann", "ann-password").await;
    assert_eq!(me_status(&a, &fresh).await, 200);
    assert_eq!(refresh_status(&a, &fresh_refresh).await, 200);
    let mut again = socket(&a, &fresh).await;
    again.roundtrip().await;
    let user = a.store.user_by_id(ann.id).await.unwrap().unwrap();
    assert_eq!(user.token_version, ann.token_version + 1);
}

/// Changing one's own password: a wrong current password or a weak new one is 400 and changes
/// nothing; the right one answers a new token pair that works, while every token issued before
/// (this login's included) ends and the person's sockets close with 4001. The old password no
/// longer logs in; the new one does.
async fn changing_ones_password_checks_it_and_ends_other_logins(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    hub.user("cleo", Role::Client).await;
    let (access, refresh) = logged_in(&hub, "cleo", "cleo-password").await;
    let (elsewhere, elsewhere_refresh) = logged_in(&hub, "cleo", "cleo-password").await;
    let mut open = socket(&hub, &elsewhere).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    let (status, body) = hub
        .post(
            "/api/users/me/password/",
            None,
            change("cleo-password", "a new secret"),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = hub
        .post(
            "/api/users/me/password/",
            Some(&access),
            change("not it", "a new secret"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["detail"],
        "current_password: This is not your current password."
    );
    for weak in ["short", ""] {
        let (status, body) = hub
            .post(
                "/api/users/me/password/",
                Some(&access),
                change("cleo-password", weak),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["detail"],
            "new_password: This password is too short. It must contain at least 8 characters."
        );
    }
    let (status, body) = hub
        .post(
            "/api/users/me/password/",
            Some(&access),
            change("cleo-password", &"x".repeat(129)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("new_password: "),
        "{body}"
    );
    let (status, body) = hub
        .post(
            "/api/users/me/password/",
            Some(&access),
            json!({"current_password": "cleo-password", "new_password": "a new secret", "extra": 1}),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    // None of that changed anything.
    assert_eq!(me_status(&hub, &access).await, 200);
    assert_eq!(me_status(&hub, &elsewhere).await, 200);

    let (status, body) = hub
        .post(
            "/api/users/me/password/",
            Some(&access),
            change("cleo-password", "a new secret"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (new_access, new_refresh) = pair(&body);
    assert_eq!(open.close_code().await, 4001, "the other login's socket");
    assert_eq!(
        me_status(&hub, &new_access).await,
        200,
        "the new access token"
    );
    for old in [&access, &elsewhere] {
        assert_eq!(me_status(&hub, old).await, 401, "old access tokens end");
    }
    for old in [&refresh, &elsewhere_refresh] {
        assert_eq!(
            refresh_status(&hub, old).await,
            401,
            "old refresh tokens end"
        );
    }
    // The new refresh token rotates like any other.
    let (status, rotated) = hub
        .post("/api/auth/refresh/", None, json!({"refresh": new_refresh}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (rotated_access, _) = pair(&rotated);
    let mut fresh = socket(&hub, &rotated_access).await;
    fresh.roundtrip().await;

    let (status, _) = login(&hub, "cleo", "cleo-password").await;
    assert_eq!(status, 401, "the old password no longer logs in");
    logged_in(&hub, "cleo", "a new secret").await;
    // The current password is the new one now: the old one is not taken as current.
    let (status, body) = hub
        .post(
            "/api/users/me/password/",
            Some(&rotated_access),
            change("cleo-password", "third one!"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

crate::trials! {
    both: [
        logging_out_everywhere_ends_every_token_and_socket,
        changing_ones_password_checks_it_and_ends_other_logins,
    ],
    tests: [],
    sync: [],
}
