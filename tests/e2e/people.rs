//! Getting people in without the command line: accounts an admin makes, passwords an admin
//! sets, invitation links (one account each, with a role, in a project, even where sign-up is
//! closed), and requests to join a project that admins approve or decline.

use reqwest::Method;
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, UserId};
use tickethub_actors::ports::NewInvitation;

use crate::harness::{db_number, Backend, TestHub};
use crate::tickets::cast;

/// Logs in; the status and the answer.
async fn login(hub: &TestHub, username: &str, password: &str) -> (u16, Value) {
    hub.post(
        "/api/auth/login/",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

/// The token of an invitation's link.
fn token_of(invitation: &Value) -> String {
    let url = invitation["url"].as_str().unwrap();
    url.split("/#/invite/").nth(1).unwrap().to_owned()
}

async fn admins_make_accounts_and_set_passwords(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let admin = hub.token(&c.a2);
    let body = json!({"username": "grace", "password": "compilers-1952", "role": "developer", "display_name": "Grace Hopper", "email": "grace@example.test"});
    let (status, res) = hub
        .post("/api/users/", Some(&hub.token(&c.d1)), body.clone())
        .await;
    assert_eq!(status, 403, "{res}");
    let made = hub.post_as(&c.a2, "/api/users/", body.clone(), 201).await;
    assert_eq!(made["role"], "developer");
    assert_eq!(made["display_name"], "Grace Hopper");
    assert_eq!(made["email"], "grace@example.test");
    // An address an admin gives is vouched for.
    assert!(made["email_verified_at"].is_string(), "{made}");
    assert_eq!(login(&hub, "grace", "compilers-1952").await.0, 200);
    for (bad, field) in [
        (
            json!({"username": "grace", "password": "compilers-1952", "role": "developer"}),
            "username",
        ),
        (
            json!({"username": "ada2", "password": "short", "role": "developer"}),
            "password",
        ),
        (
            json!({"username": "ada2", "password": "long enough", "role": "wizard"}),
            "role",
        ),
        (
            json!({"username": "ada2", "password": "long enough", "role": "client", "email": "nope"}),
            "email",
        ),
        (
            json!({"username": "bad name!", "password": "long enough", "role": "client"}),
            "username",
        ),
    ] {
        let (status, res) = hub.post("/api/users/", Some(&admin), bad).await;
        assert_eq!(status, 400, "{res}");
        assert!(res["detail"].as_str().unwrap().starts_with(field), "{res}");
    }
    let (status, _) = hub
        .post(
            "/api/users/",
            Some(&admin),
            json!({"username": "x", "password": "long enough", "role": "client", "admin": true}),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused");

    // A new password, set by an admin, ends what the person held.
    let grace = UserId(made["id"].as_i64().unwrap());
    let grace = hub.store.user_by_id(grace).await.unwrap().unwrap();
    let before = hub.token(&grace);
    let mut socket = hub.connect(&grace).await;
    let path = format!("/api/users/{}/password/", grace.id.0);
    let (status, _) = hub
        .post(
            &path,
            Some(&hub.token(&c.d1)),
            json!({"new_password": "taken-over-1"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, res) = hub
        .post(&path, Some(&admin), json!({"new_password": "short"}))
        .await;
    assert_eq!(
        (
            status,
            res["detail"].as_str().unwrap().starts_with("new_password")
        ),
        (400, true)
    );
    assert_eq!(
        hub.post(
            &path,
            Some(&admin),
            json!({"new_password": "debugging-1947"})
        )
        .await
        .0,
        204
    );
    assert_eq!(socket.close_code().await, 4001);
    assert_eq!(hub.get("/api/users/me/", Some(&before)).await.0, 401);
    assert_eq!(login(&hub, "grace", "compilers-1952").await.0, 401);
    assert_eq!(login(&hub, "grace", "debugging-1947").await.0, 200);
    let own = format!("/api/users/{}/password/", c.a2.id.0);
    let (status, _) = hub
        .post(&own, Some(&admin), json!({"new_password": "mine-to-set"}))
        .await;
    assert_eq!(
        status, 400,
        "an admin's own password is changed with the current one"
    );
    assert_eq!(
        hub.post(
            "/api/users/999999/password/",
            Some(&admin),
            json!({"new_password": "debugging-1947"})
        )
        .await
        .0,
        404
    );

    // Deactivated, they are listed for admins who ask, and found by their username.
    let grace_path = format!("/api/users/{}/", grace.id.0);
    let (status, _) = hub
        .call(
            Method::PATCH,
            &grace_path,
            Some(&admin),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, 200);
    let names = |page: Value| -> Vec<String> {
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let active = names(hub.get("/api/users/?page_size=100", Some(&admin)).await.1);
    assert!(!active.contains(&"grace".to_owned()), "{active:?}");
    let stopped = names(hub.get("/api/users/?is_active=false", Some(&admin)).await.1);
    assert_eq!(stopped, ["grace"]);
    let found = names(
        hub.get("/api/users/?is_active=all&search=grac", Some(&admin))
            .await
            .1,
    );
    assert_eq!(found, ["grace"]);
    let searched = names(hub.get("/api/users/?search=c", Some(&admin)).await.1);
    assert_eq!(searched, ["c1", "c2"]);
    // Others see active people only, whatever they ask.
    let theirs = names(
        hub.get("/api/users/?is_active=false", Some(&hub.token(&c.c1)))
            .await
            .1,
    );
    assert!(!theirs.contains(&"grace".to_owned()), "{theirs:?}");
    assert_eq!(
        hub.get("/api/users/?is_active=maybe", Some(&admin)).await.0,
        400
    );
}

async fn an_invitation_makes_one_account_in_its_project(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| {
        c.registration = tickethub::config::Registration::Closed;
    })
    .await;
    let c = cast(&hub).await;
    let admin = hub.token(&c.a2);
    let invite = |body: Value| {
        let admin = admin.clone();
        let hub = &hub;
        async move {
            hub.post("/api/admin/invitations/", Some(&admin), body)
                .await
        }
    };
    let (status, made) =
        invite(json!({"email": "linus@example.test", "role": "developer", "project": c.project}))
            .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["status"], "pending");
    assert_eq!(made["project_name"], "WEB project");
    assert!(
        made["url"].as_str().unwrap().starts_with("/#/invite/"),
        "{made}"
    );
    let token = token_of(&made);

    // What it offers, to anyone with the link.
    let (status, offer) = hub.get(&format!("/api/invitations/{token}/"), None).await;
    assert_eq!(status, 200, "{offer}");
    assert_eq!(offer["email"], "linus@example.test");
    assert_eq!(offer["role"], "developer");
    assert_eq!(offer["project_name"], "WEB project");
    assert_eq!(offer["project_key"], "WEB");
    assert_eq!(hub.get("/api/invitations/not-a-token/", None).await.0, 404);

    // A taken username keeps the link good; then one account is made, once.
    let accept = format!("/api/invitations/{token}/accept/");
    let (status, res) = hub
        .post(
            &accept,
            None,
            json!({"username": "c1", "password": "kernels-1991"}),
        )
        .await;
    assert_eq!(status, 400, "{res}");
    let (status, res) = hub
        .post(
            &accept,
            None,
            json!({"username": "linus", "password": "short"}),
        )
        .await;
    assert_eq!(status, 400, "{res}");
    let (status, user) = hub
        .post(
            &accept,
            None,
            json!({"username": "linus", "password": "kernels-1991", "display_name": "Linus"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["role"], "developer");
    assert_eq!(user["email"], "linus@example.test");
    let (status, again) = hub
        .post(
            &accept,
            None,
            json!({"username": "linus2", "password": "kernels-1991"}),
        )
        .await;
    assert_eq!(status, 404, "{again}");
    assert!(
        again["detail"].as_str().unwrap().contains("ask an admin"),
        "{again}"
    );
    assert_eq!(
        hub.get(&format!("/api/invitations/{token}/"), None).await.0,
        404
    );
    let (status, tokens) = login(&hub, "linus", "kernels-1991").await;
    assert_eq!(status, 200);
    let mine = hub.get("/api/projects/", tokens["access"].as_str()).await.1;
    assert_eq!(mine["results"][0]["key"], "WEB", "{mine}");
    let listed = hub.get("/api/admin/invitations/", Some(&admin)).await.1;
    assert_eq!(listed[0]["status"], "accepted");
    assert_eq!(listed[0]["accepted_user"], user["id"]);
    assert_eq!(listed[0]["url"], Value::Null, "the link is shown once");

    // Taken back: the link stops working.
    let (_, other) = invite(json!({"email": "ken@example.test"})).await;
    assert_eq!(other["role"], "client");
    let path = format!("/api/admin/invitations/{}/", other["id"]);
    assert_eq!(
        hub.call(Method::DELETE, &path, Some(&hub.token(&c.d1)), None)
            .await
            .0,
        403
    );
    assert_eq!(
        hub.call(Method::DELETE, &path, Some(&admin), None).await.0,
        204
    );
    assert_eq!(
        hub.call(Method::DELETE, &path, Some(&admin), None).await.0,
        404
    );
    let other_accept = format!("/api/invitations/{}/accept/", token_of(&other));
    assert_eq!(
        hub.post(
            &other_accept,
            None,
            json!({"username": "ken", "password": "unix-1969!"})
        )
        .await
        .0,
        404
    );

    // Run out.
    let stale = "stale-token";
    hub.store
        .add_invitation(
            NewInvitation {
                token_hash: hex_sha256(stale),
                email: "late@example.test".into(),
                role: Role::Client,
                project: None,
                created_by: c.a2.id,
                expires_at: chrono::Utc::now() - chrono::TimeDelta::minutes(1),
            },
            chrono::Utc::now() - chrono::TimeDelta::days(8),
        )
        .await
        .unwrap();
    assert_eq!(
        hub.post(
            &format!("/api/invitations/{stale}/accept/"),
            None,
            json!({"username": "late", "password": "too-late-1"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        hub.get("/api/admin/invitations/", Some(&admin)).await.1[0]["status"],
        "expired"
    );

    // Two people racing on one link: one account.
    let (_, race) = invite(json!({"email": "race@example.test"})).await;
    let race_path = format!("/api/invitations/{}/accept/", token_of(&race));
    let (a, b) = tokio::join!(
        hub.post(
            &race_path,
            None,
            json!({"username": "racer1", "password": "fast-enough-1"})
        ),
        hub.post(
            &race_path,
            None,
            json!({"username": "racer2", "password": "fast-enough-2"})
        ),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [201, 404]);

    // Only admins invite, and only what makes sense.
    let (status, _) = hub
        .post(
            "/api/admin/invitations/",
            Some(&hub.token(&c.c1)),
            json!({"email": "x@example.test"}),
        )
        .await;
    assert_eq!(status, 403);
    for bad in [
        json!({"email": "nope"}),
        json!({"email": "x@example.test", "role": "wizard"}),
        json!({"email": "x@example.test", "project": 999_999}),
        json!({"email": "x@example.test", "expires_in_days": 0}),
        json!({"email": "x@example.test", "expires_in_days": 31}),
        json!({"email": "x@example.test", "colour": "red"}),
    ] {
        let (status, res) = invite(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {res}");
    }
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

async fn admins_decide_requests_to_join(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let newbie = hub.user("newbie", Role::Client).await;
    let mine = hub.token(&newbie);
    let ask = |body: Value| {
        let mine = mine.clone();
        let hub = &hub;
        async move { hub.post("/api/join-requests/", Some(&mine), body).await }
    };
    let (status, asked) =
        ask(json!({"project": "web", "message": "I file the bugs of the shop"})).await;
    assert_eq!(status, 201, "{asked}");
    assert_eq!(asked["status"], "waiting");
    assert_eq!(asked["project_key"], "WEB");
    assert_eq!(asked["username"], "newbie");
    assert_eq!(ask(json!({"project": "WEB"})).await.0, 409);
    assert_eq!(ask(json!({"project": "NOPE"})).await.0, 404);
    assert_eq!(
        ask(json!({"project": "WEB", "message": "x".repeat(501)}))
            .await
            .0,
        400
    );
    let (status, _) = hub
        .post(
            "/api/join-requests/",
            Some(&hub.token(&c.c1)),
            json!({"project": "WEB"}),
        )
        .await;
    assert_eq!(status, 409, "a member asks");
    // Each sees their own; admins see the waiting ones.
    assert_eq!(
        hub.get("/api/join-requests/", Some(&mine))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(hub
        .get("/api/join-requests/", Some(&hub.token(&c.c1)))
        .await
        .1
        .as_array()
        .unwrap()
        .is_empty());
    let waiting = hub.get_as(&c.a2, "/api/join-requests/", 200).await;
    assert_eq!(waiting[0]["message"], "I file the bugs of the shop");
    assert_eq!(
        hub.get("/api/join-requests/?status=soon", Some(&mine))
            .await
            .0,
        400
    );

    let approve = format!("/api/join-requests/{}/approve/", asked["id"]);
    assert_eq!(
        hub.post(&approve, Some(&hub.token(&c.d1)), json!({}))
            .await
            .0,
        403
    );
    assert!(hub.get("/api/projects/", Some(&mine)).await.1["results"]
        .as_array()
        .unwrap()
        .is_empty());
    let approved = hub.post_as(&c.a2, &approve, json!({}), 200).await;
    assert_eq!(approved["status"], "approved");
    assert_eq!(
        hub.get("/api/projects/", Some(&mine)).await.1["results"][0]["key"],
        "WEB"
    );
    assert_eq!(
        hub.post(&approve, Some(&hub.token(&c.a2)), json!({}))
            .await
            .0,
        409
    );
    assert_eq!(
        hub.post(
            "/api/join-requests/999999/approve/",
            Some(&hub.token(&c.a2)),
            json!({})
        )
        .await
        .0,
        404
    );
    assert!(hub
        .get_as(&c.a2, "/api/join-requests/", 200)
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        hub.get_as(&c.a2, "/api/join-requests/?status=all", 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Declined, a person may ask again.
    let other = hub.project("OPS", &[&c.a1]).await;
    let (_, asked) = ask(json!({"project": "OPS"})).await;
    let declined = hub
        .post_as(
            &c.a2,
            &format!("/api/join-requests/{}/decline/", asked["id"]),
            json!({}),
            200,
        )
        .await;
    assert_eq!(declined["status"], "declined");
    let project = hub.store.project_by_id(other.id).await.unwrap().unwrap();
    assert!(!project.member_ids.contains(&newbie.id));
    assert_eq!(ask(json!({"project": "OPS"})).await.0, 201);

    // An erased person's requests go with them.
    hub.call(
        Method::DELETE,
        &format!("/api/users/{}/?erase=true", newbie.id.0),
        Some(&hub.token(&c.a1)),
        None,
    )
    .await;
    let left = db_number(
        &hub.db,
        &format!(
            "SELECT COUNT(*) FROM join_requests WHERE user_id = {}",
            newbie.id.0
        ),
    )
    .await;
    assert_eq!(left, 0);
}

crate::trials! {
    both: [
        admins_make_accounts_and_set_passwords,
        an_invitation_makes_one_account_in_its_project,
        admins_decide_requests_to_join,
    ],
    tests: [],
    sync: [],
}
