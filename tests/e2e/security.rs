//! What a revoked key, a demoted admin and a stranger can still do (SECURITY.md, "Powers that
//! end", "Devices", "Addresses"):
//!
//! - A scheduled send belongs to its sender, a person or an API key: a key lists, shows and
//!   cancels its own; revoking a key, or demoting, deactivating or erasing an admin, cancels the
//!   sends that needed that power in the same transaction, with the reason in `detail`, on the
//!   send's timeline and on the audit trail. A key or admin that keeps its power has its sends
//!   fire.
//! - A key's service user is `key:<name>`: a stranger who registers the key's name first takes
//!   nothing.
//! - A device another user registered is not taken over without the subscription's own keys,
//!   and a move is audited; registration is under the write rate, and its DNS lookups are
//!   cached, bounded and never refuse a login.
//! - An `admin:read` key sees a webhook's host, not its URL.
//! - An address a person types for themselves gets nothing but its verification message until
//!   they prove it (a code by email or SMS, or the email's link); verification messages are
//!   rate-limited per person and per address; an address an admin sets counts as verified.
//! - An erased admin's socket, where no bus told the node, loses its admin power within the
//!   user cache's lifetime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::api_keys::with_key;
use crate::fakes::{Http, Smtp};
use crate::harness::{
    cli_ok, db_number, eventually, eventually_ok, scaled_ms, send_body, Backend, TestHub, SEND,
};
use crate::sms_fakes::Twilio;
mod upgrade;
use upgrade::*;
mod addresses;
use addresses::*;

/// An API key made by `admin` over the API; answers the whole key and its record.
async fn make_key(hub: &TestHub, admin: &User, name: &str, scopes: &[&str]) -> (String, Value) {
    let made = hub
        .post_as(
            admin,
            "/api/admin/api-keys/",
            json!({"name": name, "scopes": scopes}),
            201,
        )
        .await;
    (made["key"].as_str().unwrap().to_owned(), made)
}

/// The wait of a scheduled send: long enough to act before it is due, on a loaded machine too.
fn ahead() -> Duration {
    Duration::from_millis(scaled_ms(3000))
}

fn delay(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// A send to `to` in `after`, titled `title`.
fn later(to: &User, title: &str, after: Duration) -> Value {
    send_body(
        &[to.id.0],
        json!({"notification_type": "reminder", "title": title, "delay": delay(after)}),
    )
}

/// The titles of `user`'s `reminder` notifications.
async fn reminders(hub: &TestHub, user: &User) -> Vec<String> {
    let page = hub
        .get_as(
            user,
            "/api/notifications/?notification_type=reminder&page_size=100",
            200,
        )
        .await;
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect()
}

/// A scheduled send as an admin sees it, with its timeline.
async fn scheduled(hub: &TestHub, admin: &User, id: &Value) -> Value {
    hub.get_as(admin, &format!("/api/notifications/scheduled/{id}/"), 200)
        .await
}

/// Waits until the send `id` is marked fired (its notifications are committed first, its mark
/// after), and answers it then.
async fn marked_fired(hub: &TestHub, admin: &User, id: &Value) -> Value {
    eventually_ok("the send is marked fired", || async {
        let send = scheduled(hub, admin, id).await;
        if send["status"] == "FIRED" {
            Ok(send)
        } else {
            Err(send.to_string())
        }
    })
    .await
}

/// Waits until `user` has a reminder titled `title` (a send that fires), and answers the
/// titles they have then.
async fn arrives(hub: &TestHub, user: &User, title: &str) -> Vec<String> {
    eventually_ok(&format!("`{title}` arrives"), || async {
        let got = reminders(hub, user).await;
        if got.iter().any(|t| t == title) {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

async fn a_revoked_key_s_sends_are_cancelled_and_a_kept_key_s_still_fire(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.escalation_poll_ms = 100).await;
    let admin = hub.user("root", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let (k1, made1) = make_key(&hub, &admin, "billing", &["notifications:send"]).await;
    let (k2, _) = make_key(&hub, &admin, "crm", &["notifications:send"]).await;
    assert_eq!(made1["username"], "key:billing", "{made1}");

    // Each key schedules; the revoked key's send is due first, the kept one's after it.
    let post = |key: &str, body: Value| {
        let key = key.to_owned();
        let hub = &hub;
        async move { with_key(hub, reqwest::Method::POST, SEND, &key, Some(body)).await }
    };
    let (status, doomed) = post(&k1, later(&ada, "From billing", ahead())).await;
    assert_eq!(status, 202, "{doomed}");
    assert_eq!(doomed["api_key"], "billing", "{doomed}");
    let (status, cancelled_by_key) = post(&k1, later(&ada, "Withdrawn", ahead())).await;
    assert_eq!(status, 202, "{cancelled_by_key}");
    let (status, kept) = post(&k2, later(&ada, "From crm", ahead() + ahead() / 2)).await;
    assert_eq!(status, 202, "{kept}");

    // A key lists, shows and cancels its own, and sees nothing of the other key's.
    let (status, mine) = with_key(
        &hub,
        reqwest::Method::GET,
        "/api/notifications/scheduled/",
        &k1,
        None,
    )
    .await;
    assert_eq!((status, &mine["count"]), (200, &json!(2)), "{mine}");
    assert!(mine.to_string().contains("From billing") && !mine.to_string().contains("From crm"));
    let theirs = format!("/api/notifications/scheduled/{}/", kept["id"]);
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, body) = with_key(&hub, method.clone(), &theirs, &k1, None).await;
        assert_eq!(status, 404, "{method} another key's send: {body}");
    }
    let withdrawn = format!("/api/notifications/scheduled/{}/", cancelled_by_key["id"]);
    let (status, _) = with_key(&hub, reqwest::Method::DELETE, &withdrawn, &k1, None).await;
    assert_eq!(status, 204);
    let (status, shown) = with_key(&hub, reqwest::Method::GET, &withdrawn, &k1, None).await;
    assert_eq!(
        (status, &shown["status"]),
        (200, &json!("CANCELLED")),
        "{shown}"
    );

    // Revoked: its pending send is cancelled with it, saying why, on its timeline and on the
    // audit trail; the key is refused from then on.
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            "/api/admin/api-keys/billing/",
            Some(&hub.token(&admin)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let seen = scheduled(&hub, &admin, &doomed["id"]).await;
    assert_eq!(seen["status"], "CANCELLED", "{seen}");
    assert!(
        seen["detail"].as_str().unwrap().contains("`billing`")
            && seen["detail"].as_str().unwrap().contains("revoked"),
        "{seen}"
    );
    let last = seen["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "cancelled", "{seen}");
    assert_eq!(last["by"], format!("user:{}", admin.id.0), "{seen}");
    let trail = hub
        .get_as(&admin, "/api/admin/audit/?action=api_key.revoked", 200)
        .await;
    assert_eq!(trail["count"], 1, "{trail}");
    assert_eq!(
        trail["results"][0]["detail"]["cancelled_sends"],
        json!([doomed["id"]]),
        "{trail}"
    );
    let (status, _) = post(&k1, later(&ada, "Too late", ahead())).await;
    assert_eq!(status, 401);

    // The kept key's send fires; the revoked key's, due before it, never did.
    let got = arrives(&hub, &ada, "From crm").await;
    assert_eq!(got, vec!["From crm".to_owned()]);
    let fired = marked_fired(&hub, &admin, &kept["id"]).await;
    assert_eq!(fired["timeline"][1]["event"], "fired", "{fired}");
}

async fn a_demoted_deactivated_or_erased_admin_s_sends_are_cancelled(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.escalation_poll_ms = 100).await;
    let root = hub.user("root", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let mut sends = HashMap::new();
    for (name, title, after) in [
        ("demoted", "From demoted", ahead()),
        ("deactivated", "From deactivated", ahead()),
        ("erased", "From erased", ahead()),
        ("kept", "From kept", ahead() + ahead() / 2),
    ] {
        let admin = hub.user(name, Role::Admin).await;
        let stored = hub
            .post_as(&admin, SEND, later(&ada, title, after), 202)
            .await;
        sends.insert(name, (admin, stored["id"].clone()));
    }
    let patch = |who: &str, body: Value| {
        let id = sends[who].0.id.0;
        let token = hub.token(&root);
        let hub = &hub;
        async move {
            let (status, res) = hub
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/users/{id}/"),
                    Some(&token),
                    Some(body),
                )
                .await;
            assert_eq!(status, 200, "{res}");
        }
    };
    patch("demoted", json!({"role": "developer"})).await;
    patch("deactivated", json!({"is_active": false})).await;
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/api/users/{}/?erase=true", sends["erased"].0.id.0),
            Some(&hub.token(&root)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    // A role change that keeps the power (an admin renamed) cancels nothing.
    patch("kept", json!({"display_name": "Still an admin"})).await;

    for (who, why) in [
        ("demoted", "no longer an admin"),
        ("deactivated", "deactivated"),
        ("erased", "erased"),
    ] {
        let seen = scheduled(&hub, &root, &sends[who].1).await;
        assert_eq!(seen["status"], "CANCELLED", "{who}: {seen}");
        assert!(
            seen["detail"].as_str().unwrap().contains(why),
            "{who}: {seen}"
        );
        assert_eq!(
            seen["timeline"][1]["by"],
            format!("user:{}", root.id.0),
            "{who}: {seen}"
        );
        let trail = hub
            .get_as(
                &root,
                &format!("/api/admin/audit/?subject=scheduled_send:{}", sends[who].1),
                200,
            )
            .await;
        assert_eq!(trail["count"], 1, "{who}: {trail}");
    }
    let got = arrives(&hub, &ada, "From kept").await;
    assert_eq!(got, vec!["From kept".to_owned()]);
}

async fn a_stranger_cannot_take_a_key_s_name(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("root", Role::Admin).await;
    let dev = hub.user("dev", Role::Developer).await;
    // Open registration: a stranger signs up as the name the backend's key will have.
    let (status, stranger) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "ci-bot", "password": "squatter-password"}),
        )
        .await;
    assert_eq!(status, 201, "{stranger}");
    // Nobody can sign up in the keys' namespace.
    let (status, refused) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "key:ci-bot", "password": "squatter-password"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["detail"].as_str().unwrap().starts_with("username:"));
    // Nor in a spelling that reads the same (U+02D0, a modifier letter that looks like `:`).
    let (status, refused) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "key\u{2d0}ci-bot", "password": "squatter-password"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("kept for API keys"),
        "{refused}"
    );

    let (status, made) = hub
        .post(
            "/api/admin/api-keys/",
            Some(&hub.token(&admin)),
            json!({"name": "ci-bot", "scopes": ["tickets:write"]}),
        )
        .await;
    assert_eq!(status, 201, "the squatted name is still the key's: {made}");
    assert_eq!(made["username"], "key:ci-bot", "{made}");
    assert_ne!(made["user"], stranger["id"], "{made}");
    let key = made["key"].as_str().unwrap();
    let service = hub
        .store
        .user_by_id(tickethub_actors::domain::UserId(
            made["user"].as_i64().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    let project = hub.project("API", &[&dev, &service]).await;
    // What the backend files is the key's own user's, not the stranger's.
    let (status, ticket) = with_key(
        &hub,
        reqwest::Method::POST,
        "/api/tickets/",
        key,
        Some(json!({"project": project.id.0, "title": "Build failed", "description": "d"})),
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["created_by"], made["user"], "{ticket}");
    // A second key of that name is refused, and the refusal suggests no user to act as.
    let (status, again) = hub
        .post(
            "/api/admin/api-keys/",
            Some(&hub.token(&admin)),
            json!({"name": "ci-bot", "scopes": ["tickets:write"]}),
        )
        .await;
    assert_eq!(status, 400, "{again}");
    let detail = again["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("name:") && !detail.contains("`user`"),
        "{detail}"
    );
    // Nobody logs in as a key's user, by password or by a provider's token naming it.
    let (status, _) = hub
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "key:ci-bot", "password": "anything-at-all"}),
        )
        .await;
    assert_eq!(status, 401);
}

/// A browser's subscription: an endpoint and keys of its own.
fn subscription(endpoint: &str) -> Value {
    use base64::Engine;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let secret = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
    let public = secret.public_key().to_encoded_point(false);
    json!({
        "endpoint": endpoint,
        "keys": {"p256dh": b64.encode(public.as_bytes()), "auth": b64.encode(rand::random::<[u8; 16]>())},
    })
}

/// Registers a Web Push subscription as `user`; answers status and body.
async fn register(hub: &TestHub, user: &User, sub: &Value) -> (u16, Value) {
    hub.post(
        "/api/devices/",
        Some(&hub.token(user)),
        json!({"kind": "webpush", "subscription": sub}),
    )
    .await
}

async fn a_device_is_not_taken_over_without_its_own_keys(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| {
        c.channels.push.push_allow_private = true;
        c.channels.push.push_device_cap = 2;
        if !matches!(backend, Backend::Sqlite) {
            let key = tickethub::channels::push::VapidKey::generate().unwrap();
            let path = crate::harness::scratch_path("vapid").with_extension("pem");
            std::fs::write(&path, &key.pem).unwrap();
            c.channels.webpush.webpush_vapid_key = Some(path);
        }
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let dev = hub.user("dev", Role::Developer).await;
    let eve = hub.user("eve", Role::Developer).await;
    let sub = subscription("http://127.0.0.1:9/push/browser-1");
    let (status, device) = register(&hub, &dev, &sub).await;
    assert_eq!(status, 201, "{device}");

    // Eve knows the endpoint, not the browser's secret: nothing moves.
    let mut forged = subscription("http://127.0.0.1:9/push/browser-1");
    forged["keys"]["p256dh"] = sub["keys"]["p256dh"].clone();
    let (status, refused) = register(&hub, &eve, &forged).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("Another account"));
    assert_eq!(
        hub.get_as(&dev, "/api/devices/", 200).await[0]["id"],
        device["id"]
    );
    assert_eq!(hub.get_as(&eve, "/api/devices/", 200).await, json!([]));

    // Within her cap, with the browser's own keys (she signed in on it): a new device of
    // hers, Dev's gone, and the move on the audit trail.
    let (status, moved) = register(&hub, &eve, &sub).await;
    assert_eq!(status, 201, "{moved}");
    assert_ne!(moved["id"], device["id"]);
    assert_eq!(hub.get_as(&dev, "/api/devices/", 200).await, json!([]));
    let trail = hub
        .get_as(&admin, "/api/admin/audit/?action=device.moved", 200)
        .await;
    assert_eq!(trail["count"], 1, "{trail}");
    let event = &trail["results"][0];
    assert_eq!(event["subject"], format!("device:{}", moved["id"]));
    assert_eq!(event["detail"]["from_user"], dev.id.0);
    assert_eq!(event["detail"]["to_user"], eve.id.0);
    assert_eq!(event["detail"]["removed_device"], device["id"]);

    // At her cap, even the browser's own keys do not bring a third device.
    for n in 2..=3 {
        let (status, body) = register(
            &hub,
            &dev,
            &subscription(&format!("http://127.0.0.1:9/push/dev-{n}")),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let dev_sub = {
        let devices = hub.store.devices(dev.id).await.unwrap();
        let d = &devices[0].device;
        json!({"endpoint": d.token, "keys": {"p256dh": d.p256dh, "auth": d.auth}})
    };
    let (status, _) = register(&hub, &eve, &subscription("http://127.0.0.1:9/push/eve-2")).await;
    assert_eq!(status, 201);
    let (status, full) = register(&hub, &eve, &dev_sub).await;
    assert_eq!(status, 409, "{full}");
    assert!(
        full["detail"].as_str().unwrap().contains("most allowed"),
        "{full}"
    );
    assert_eq!(hub.store.devices(dev.id).await.unwrap().len(), 2);

    // An app's token proves nothing: another user's stays where it is.
    use tickethub_actors::ports::{NewDevice, Registered};
    use tickethub_actors::routing::Channel;
    let token = |t: &str| NewDevice {
        kind: Channel::Fcm,
        token: t.into(),
        p256dh: None,
        auth: None,
    };
    let admin_device = hub
        .store
        .register_device(admin.id, token("fcm-token-1"), 5)
        .await
        .unwrap();
    assert!(matches!(admin_device, Registered::Created(_)));
    let taken = hub
        .store
        .register_device(eve.id, token("fcm-token-1"), 5)
        .await
        .unwrap();
    assert!(matches!(taken, Registered::Taken), "{taken:?}");
    assert_eq!(hub.store.devices(admin.id).await.unwrap().len(), 1);
}

/// A DNS server on loopback UDP that answers A queries: a name starting with `private`
/// resolves to 10.0.0.5, one starting with `slow` only once released, any other to
/// 93.184.216.34; every answer lives 300 s. It counts the A queries per name.
#[derive(Clone)]
struct Dns {
    addr: SocketAddr,
    queries: Arc<Mutex<HashMap<String, usize>>>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Dns {
    async fn start() -> Dns {
        let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let dns = Dns {
            addr: socket.local_addr().unwrap(),
            queries: Arc::default(),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let server = dns.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let query = buf[..n].to_vec();
                let (server, socket) = (server.clone(), socket.clone());
                tokio::spawn(async move {
                    if let Some(answer) = server.answer(&query).await {
                        let _ = socket.send_to(&answer, from).await;
                    }
                });
            }
        });
        dns
    }

    /// The answer to one query: its header and question, and an A record for an A query.
    async fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let mut at = 12;
        let mut labels = Vec::new();
        while *query.get(at)? != 0 {
            let len = usize::from(query[at]);
            labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).into_owned());
            at += 1 + len;
        }
        let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
        let question_end = at + 5;
        let name = labels.join(".").to_ascii_lowercase();
        let a = qtype == 1;
        if a {
            *self
                .queries
                .lock()
                .unwrap()
                .entry(name.clone())
                .or_default() += 1;
            if name.starts_with("slow") {
                self.release.acquire().await.ok()?.forget();
            }
        }
        let mut out = query[..question_end].to_vec();
        out[2] = 0x81; // a response, recursion desired
        out[3] = 0x80; // recursion available, no error
        out[6..8].copy_from_slice(&u16::from(a).to_be_bytes()); // answers
        out[8..12].copy_from_slice(&[0, 0, 0, 0]); // no authority, no additional
        if a {
            let ip: [u8; 4] = if name.starts_with("private") {
                [10, 0, 0, 5]
            } else {
                [93, 184, 216, 34]
            };
            out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
            out.extend_from_slice(&300u32.to_be_bytes());
            out.extend_from_slice(&[0, 4]);
            out.extend_from_slice(&ip);
        }
        Some(out)
    }

    fn queries(&self, name: &str) -> usize {
        self.queries.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn device_checks_resolve_through_a_bounded_cached_resolver() {
    let dns = Dns::start().await;
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.dns_server = Some(dns.addr);
        c.dns_concurrency = 2;
        c.writes_per_minute = 5;
    })
    .await;
    let users: Vec<User> = futures::future::join_all(
        ["ann", "bob", "cid", "dan", "eve", "fay"].map(|n| hub.user(n, Role::Developer)),
    )
    .await;

    // One lookup serves every registration of the same host while its answer lives.
    for (user, n) in users.iter().take(2).zip(1..) {
        let (status, body) = register(
            &hub,
            user,
            &subscription(&format!("https://push.example.test/sub/{n}")),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(dns.queries("push.example.test"), 1);

    // A name on a private address, and IPv6 forms that carry an IPv4 address, are refused.
    for endpoint in [
        "https://private.example.test/sub",
        "https://[::ffff:0:7f00:1]/sub",
        "https://[::ffff:127.0.0.1]/sub",
        "https://[::ffff:0:0:0]/sub",
    ] {
        let (status, body) = register(&hub, &users[2], &subscription(endpoint)).await;
        assert_eq!(status, 400, "{endpoint}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("public"),
            "{endpoint}: {body}"
        );
    }

    // A slow DNS server holds at most two lookups; the third request is told to come back,
    // and a login goes through meanwhile.
    let slow = |user: &User, n: usize| {
        let sub = subscription(&format!("https://slow{n}.example.test/sub"));
        let (hub, user) = (&hub, user.clone());
        async move { register(hub, &user, &sub).await }
    };
    let ((first, _), (second, _), (third, login)) =
        tokio::join!(slow(&users[3], 1), slow(&users[4], 2), async {
            eventually("two lookups wait on the DNS server", || async {
                dns.queries("slow1.example.test") + dns.queries("slow2.example.test") == 2
            })
            .await;
            let third = slow(&users[5], 3).await;
            let login = hub
                .post(
                    "/api/auth/login/",
                    None,
                    json!({"username": "fay", "password": "fay-password"}),
                )
                .await;
            dns.release.add_permits(2);
            (third, login)
        },);
    assert_eq!((first, second), (201, 201));
    assert_eq!(third.0, 503, "{}", third.1);
    assert!(
        third.1["detail"].as_str().unwrap().contains("busy"),
        "{}",
        third.1
    );
    assert_eq!(login.0, 200, "{}", login.1);
    assert_eq!(dns.queries("slow3.example.test"), 0);

    // Registration is a write: past the per-user rate, 429.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, _) = hub
            .post(
                "/api/devices/",
                Some(&hub.token(&users[0])),
                json!({"kind": "bogus"}),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses, vec![400, 400, 400, 400, 429]);
}

/// An `admin:read` key reads deliveries as an admin does, but sees a webhook's scheme and host
/// only; an admin with their own token sees the URL.
async fn an_admin_read_key_sees_a_webhook_s_host_not_its_url() {
    let receiver = Http::start().await;
    let url = format!("{}/hooks/T000/B000/SECRET-PART", receiver.url());
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.channels.webhook.webhook_urls = vec![url.clone()];
        c.channels.webhook.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        c.channels.webhook.webhook_allow_private = true;
        crate::delivery::quick(c);
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let (key, _) = make_key(&hub, &admin, "auditor", &["admin:read"]).await;
    hub.send(&admin, &[&ada], json!({"channels": ["webhook"]}))
        .await;
    let id = hub.get_as(&ada, "/api/notifications/", 200).await["results"][0]["id"].clone();
    receiver.wait_for(1).await;
    // The attempt is on the timeline once made.
    let path = format!("/api/notifications/{id}/timeline/");
    let webhook = |body: &Value| {
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["channel"] == "webhook" && e["event"] == "delivery_attempt")
            .cloned()
    };
    let by_admin = eventually_ok("the webhook's attempt is on the timeline", || async {
        let t = hub.get_as(&admin, &path, 200).await;
        webhook(&t).map(|_| t.clone()).ok_or_else(|| format!("{t}"))
    })
    .await;
    assert_eq!(webhook(&by_admin).unwrap()["address"], url);
    let (status, by_key) = with_key(&hub, reqwest::Method::GET, &path, &key, None).await;
    assert_eq!(status, 200, "{by_key}");
    assert_eq!(
        webhook(&by_key).unwrap()["address"],
        format!("{}/…", receiver.url())
    );
    assert!(!by_key.to_string().contains("SECRET-PART"), "{by_key}");
}

/// An admin erased from the command line without `--redis-url` keeps their open socket, but
/// not their power: once the hub's user cache forgets them, the socket cannot send.
async fn an_erased_admin_s_open_socket_loses_its_power(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.user_cache_ttl = 1).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let mut ws = hub.connect(&admin).await;
    let frame =
        json!({"type": "send_notification", "user_ids": [ada.id.0], "title": "t", "message": "m"});
    ws.send_json(frame.clone()).await;
    assert_eq!(ws.next_of("notification_sent").await["success"], true);
    let out = cli_ok(&[
        "users",
        "erase",
        "boss",
        "--yes",
        "--database-url",
        &hub.db.url,
    ])
    .await;
    assert!(
        out.contains("--redis-url"),
        "the command says what it leaves: {out}"
    );
    // Until the cache forgets them, the socket may still send; then it may not.
    let deadline = tokio::time::Instant::now() + crate::harness::patience();
    loop {
        ws.send_json(frame.clone()).await;
        let answer = ws.next_json().await;
        if answer["type"] == "error" && answer["code"] == "forbidden" {
            break;
        }
        assert_eq!(answer["type"], "notification_sent", "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the erased admin's socket still sends"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A sender whose power went without the cancelling transaction seeing it (a race, or a key
/// revoked before its sends were its own) is found out when the send is due: cancelled, not
/// fired; and one whose role changed under a cached token cannot schedule.
async fn a_send_whose_sender_lost_its_power_unseen_is_cancelled_when_due(backend: Backend) {
    let hub = TestHub::start_with(&backend, |c| c.escalation_poll_ms = 100).await;
    let root = hub.user("root", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let (key, _) = make_key(&hub, &root, "legacy", &["notifications:send"]).await;
    let (status, doomed) = with_key(
        &hub,
        reqwest::Method::POST,
        SEND,
        &key,
        Some(later(&ada, "From legacy", ahead())),
    )
    .await;
    assert_eq!(status, 202, "{doomed}");
    let kept = hub
        .post_as(
            &root,
            SEND,
            later(&ada, "From root", ahead() + ahead() / 2),
            202,
        )
        .await;
    // Revoked behind the hub's back: the send is still pending.
    let revoked = db_number(
        &hub.db,
        "UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE name = 'legacy' RETURNING id",
    )
    .await;
    assert!(revoked > 0);
    assert_eq!(
        scheduled(&hub, &root, &doomed["id"]).await["status"],
        "PENDING"
    );
    let got = arrives(&hub, &ada, "From root").await;
    assert_eq!(got, vec!["From root".to_owned()]);
    let seen = scheduled(&hub, &root, &doomed["id"]).await;
    assert_eq!(seen["status"], "CANCELLED", "{seen}");
    assert!(
        seen["detail"].as_str().unwrap().contains("revoked"),
        "{seen}"
    );
    let trail = hub
        .get_as(
            &root,
            &format!("/api/admin/audit/?subject=scheduled_send:{}", doomed["id"]),
            200,
        )
        .await;
    assert_eq!(trail["results"][0]["actor"], "hub", "{trail}");
    marked_fired(&hub, &root, &kept["id"]).await;

    // An admin demoted behind the hub's back, whose user is still cached as an admin: the
    // send is refused where it would be stored.
    let boss = hub.user("boss", Role::Admin).await;
    hub.get_as(&boss, "/api/users/me/", 200).await;
    let demoted = db_number(
        &hub.db,
        &format!(
            "UPDATE users SET role = 'developer' WHERE id = {} RETURNING id",
            boss.id.0
        ),
    )
    .await;
    assert_eq!(demoted, boss.id.0);
    let (status, refused) = hub
        .post(
            SEND,
            Some(&hub.token(&boss)),
            later(&ada, "From boss", ahead()),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("no longer an admin"),
        "{refused}"
    );
}

crate::trials! {
    both: [
        a_revoked_key_s_sends_are_cancelled_and_a_kept_key_s_still_fire,
        a_demoted_deactivated_or_erased_admin_s_sends_are_cancelled,
        a_stranger_cannot_take_a_key_s_name,
        a_device_is_not_taken_over_without_its_own_keys,
        an_erased_admin_s_open_socket_loses_its_power,
        typed_addresses_get_nothing_but_their_code_until_verified,
        guesses_sent_at_once_each_spend_a_try,
        a_send_whose_sender_lost_its_power_unseen_is_cancelled_when_due,
        an_upgrade_gives_old_sends_to_their_keys_and_moves_key_users,
    ],
    tests: [
        device_checks_resolve_through_a_bounded_cached_resolver,
        an_admin_read_key_sees_a_webhook_s_host_not_its_url,
        huge_delays_and_times_are_refused_naming_their_field,
    ],
    sync: [],
}
