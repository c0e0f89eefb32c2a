//! Web Push end to end against a real push service: `web-push-testing` (npm), which checks
//! the VAPID token's signature against the key the subscription was made with, decrypts the
//! RFC 8291 payload, and answers 410 for an expired subscription. The devices API, pushes that
//! wait `unless_seen_within`, an escalation step on push, and `kill -9` inside the wait.

use std::time::Duration;

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{eventually_ok, patience, scaled_ms, ticket_in, Backend, Crew, TestHub};
use tickethub::ServeConfig;

/// A running `web-push-testing` server, in a Node process this test owns.
pub struct PushService {
    pub port: u16,
    http: reqwest::Client,
    /// What the hub's pushes go through (the subscriptions' endpoints name it).
    pub gate: crate::push_fakes::VapidGate,
    _child: tokio::process::Child,
}

/// A browser's subscription at the push service.
pub struct Subscription {
    /// `{endpoint, keys: {p256dh, auth}}`, as a browser's `toJSON()`.
    pub json: Value,
    pub client_hash: String,
}

impl PushService {
    /// Starts one on a free port.
    pub async fn start() -> PushService {
        crate::harness::require_node();
        crate::harness::npm_packages();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        // The server takes a port, not 0: a free one is picked, and another on a clash.
        for _ in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let mut child = tokio::process::Command::new("node")
                .arg(root.join("node_modules/web-push-testing/src/bin/server.js"))
                .arg(port.to_string())
                .current_dir(root)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("node starts web-push-testing");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let started = tokio::time::timeout(patience(), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("Server running on port") {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            if started {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return PushService {
                    port,
                    http: reqwest::Client::new(),
                    gate: crate::push_fakes::VapidGate::start(port).await,
                    _child: child,
                };
            }
        }
        panic!("web-push-testing did not start");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Subscribes a browser with the hub's application server key.
    pub async fn subscribe(&self, vapid_key: &str) -> Subscription {
        let answer: Value = self
            .http
            .post(self.url("/subscribe"))
            .json(&json!({"userVisibleOnly": "true", "applicationServerKey": vapid_key}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = &answer["data"];
        // Its pushes go through the gate, which checks their VAPID tokens.
        let endpoint = data["endpoint"].as_str().expect("an endpoint");
        let (_, path) = endpoint
            .split_once("/notify/")
            .expect("a /notify/ endpoint");
        let endpoint = format!("http://localhost:{}/notify/{path}", self.gate.port);
        Subscription {
            json: json!({"endpoint": endpoint, "keys": data["keys"]}),
            client_hash: data["clientHash"]
                .as_str()
                .expect("a client hash")
                .to_owned(),
        }
    }

    /// The decrypted pushes a subscription received.
    pub async fn messages(&self, sub: &Subscription) -> Vec<Value> {
        let response = self
            .http
            .post(self.url("/get-notifications"))
            .json(&json!({"clientHash": sub.client_hash}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        // An error answer is no empty inbox.
        assert!(
            status.is_success(),
            "the push service answered {status}: {answer}"
        );
        answer["data"]["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("the push service answered no messages: {answer}"))
            .iter()
            .map(|m| serde_json::from_str(m.as_str().unwrap()).expect("a push is JSON"))
            .collect()
    }

    /// Waits until a subscription received a push; answers what it received.
    pub async fn received(&self, sub: &Subscription, what: &str) -> Vec<Value> {
        eventually_ok(what, || async {
            let m = self.messages(sub).await;
            if m.is_empty() {
                Err("nothing yet".to_owned())
            } else {
                Ok(m)
            }
        })
        .await
    }

    /// Expires a subscription: the service answers 410 from now on.
    pub async fn expire(&self, sub: &Subscription) {
        let status = self
            .http
            .post(self.url(&format!("/expire-subscription/{}", sub.client_hash)))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
    }
}

/// A VAPID key file, as hubs on PostgreSQL need one (an embedded hub makes its own).
fn vapid_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let key = tickethub::channels::push::VapidKey::generate().unwrap();
    std::fs::write(file.path(), &key.pem).unwrap();
    file
}

/// A hub whose pushes may go to the local push service.
pub(crate) async fn push_hub(backend: &Backend, tweak: impl FnOnce(&mut ServeConfig)) -> TestHub {
    let key = vapid_file();
    TestHub::start_with(backend, |c| {
        if !matches!(backend, Backend::Sqlite) {
            c.channels.webpush.webpush_vapid_key = Some(key.path().to_owned());
        }
        c.channels.push.push_allow_private = true;
        c.channels.webpush.webpush_subject = Some("mailto:ops@tickethub.test".into());
        c.delivery_poll_ms = 50;
        c.escalation_poll_ms = 100;
        tweak(c);
    })
    .await
}

/// Registers `sub` as `user`'s device; answers the device.
pub(crate) async fn register(hub: &TestHub, user: &User, sub: &Subscription, expect: u16) -> Value {
    hub.post_as(
        user,
        "/api/devices/",
        json!({"kind": "webpush", "subscription": sub.json}),
        expect,
    )
    .await
}

pub(crate) async fn vapid(hub: &TestHub) -> String {
    let (status, body) = hub.get("/api/push/vapid/", None).await;
    assert_eq!(status, 200, "{body}");
    let key = body["public_key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 87, "65 bytes, base64url: {key}");
    key
}

/// The push deliveries of a notification, as its recipient sees them.
async fn deliveries(hub: &TestHub, user: &User, id: i64) -> Vec<Value> {
    hub.get_as(user, &format!("/api/notifications/{id}/deliveries/"), 200)
        .await["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["channel"] != "websocket")
        .cloned()
        .collect()
}

/// Waits until the one delivery of notification `id` has `status`.
async fn settled(hub: &TestHub, user: &User, id: i64, status: &str) -> Value {
    eventually_ok(&format!("the push is {status}"), || async {
        let d = deliveries(hub, user, id).await;
        match d.as_slice() {
            [one] if one["status"] == status => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// The id of `user`'s newest notification of `kind`.
async fn newest(hub: &TestHub, user: &User, kind: &str) -> i64 {
    let inbox = hub.get_as(user, "/api/notifications/", 200).await;
    inbox["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["notification_type"] == kind)
        .filter_map(|n| n["id"].as_i64())
        .max()
        .unwrap_or_else(|| panic!("a {kind} notification in {inbox}"))
}

/// Sends `to` one notification on push; answers its id.
async fn send_push(hub: &TestHub, admin: &User, to: &User, extra: Value) -> i64 {
    let mut body = json!({"channels": ["push"], "notification_type": "outage", "title": "Database down", "message": "Primary is unreachable"});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    hub.send(admin, &[to], body).await;
    newest(hub, to, "outage").await
}

async fn a_push_reaches_the_browser_and_decrypts_to_its_payload(backend: Backend) {
    let service = PushService::start().await;
    let hub = push_hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let user = hub.user("ada", Role::Developer).await;
    let key = vapid(&hub).await;
    let sub = service.subscribe(&key).await;
    let device = register(&hub, &user, &sub, 201).await;
    assert_eq!(device["kind"], "webpush");
    assert_eq!(device["push_service"], "localhost");
    assert!(device["last_used_at"].is_null());
    // The same subscription again is the same device.
    let again = register(&hub, &user, &sub, 200).await;
    assert_eq!(again["id"], device["id"]);

    let id = send_push(
        &hub,
        &admin,
        &user,
        json!({"data": {"priority": "critical"}}),
    )
    .await;
    let pushes = service.received(&sub, "the push arrives").await;
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let p = &pushes[0];
    assert_eq!(p["title"], "Database down");
    assert_eq!(p["body"], "Primary is unreachable");
    assert_eq!(p["notification_id"], id);
    assert_eq!(p["seq"], 1);
    assert_eq!(p["priority"], "CRITICAL");
    assert!(p["type"].is_string(), "{p}");
    let d = settled(&hub, &user, id, "SENT").await;
    assert_eq!(d["channel"], "webpush");
    let listed = hub.get_as(&user, "/api/devices/", 200).await;
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");
    assert_eq!(service.gate.refusals(), Vec::<String>::new());
}

/// Without a contact (`--webpush-subject`, or an https: `--public-url`), the VAPID token has no
/// `sub`, which Apple's push service refuses, as the gate does: the hub warns at start.
async fn a_push_without_a_contact_is_refused_as_apple_refuses_it() {
    let service = PushService::start().await;
    let hub = push_hub(&Backend::Sqlite, |c| {
        c.channels.webpush.webpush_subject = None
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let user = hub.user("ada", Role::Developer).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    register(&hub, &user, &sub, 201).await;
    send_push(&hub, &admin, &user, json!({})).await;
    let refusals = crate::harness::eventually_some("the gate refuses the push", || async {
        let r = service.gate.refusals();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert!(refusals[0].contains("sub None"), "{refusals:?}");
    assert!(service.messages(&sub).await.is_empty());
}

async fn minimal_content_carries_the_title_only(backend: Backend) {
    let service = PushService::start().await;
    let hub = push_hub(&backend, |c| {
        c.channels.push.push_content = tickethub::config::PushContent::Minimal
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let user = hub.user("ada", Role::Developer).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    register(&hub, &user, &sub, 201).await;
    let id = send_push(&hub, &admin, &user, json!({})).await;
    let pushes = service.received(&sub, "the push arrives").await;
    assert_eq!(
        pushes[0],
        json!({"title": "Database down", "notification_id": id, "seq": 1})
    );
}

async fn an_expired_subscription_is_pruned_without_a_retry(backend: Backend) {
    let service = PushService::start().await;
    let hub = push_hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let user = hub.user("ada", Role::Developer).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    register(&hub, &user, &sub, 201).await;
    service.expire(&sub).await;
    let id = send_push(&hub, &admin, &user, json!({})).await;
    let d = settled(&hub, &user, id, "FAILED").await;
    assert_eq!(d["attempts"], 1, "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("gone"), "{d}");
    let listed = hub.get_as(&user, "/api/devices/", 200).await;
    assert_eq!(listed, json!([]));
    // The next push finds no device: nothing is queued.
    let next = send_push(&hub, &admin, &user, json!({})).await;
    assert!(deliveries(&hub, &user, next).await.is_empty());
}

async fn devices_are_checked_capped_and_private(backend: Backend) {
    let key = vapid_file();
    let hub = TestHub::start_with(&backend, |c| {
        c.channels.push.push_device_cap = 2;
        c.channels.webpush.webpush_vapid_key = Some(key.path().to_owned());
    })
    .await;
    let ada = hub.user("ada", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    let keys = {
        use base64::Engine as _;
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        json!({"p256dh": b64.encode(secret.public_key().to_encoded_point(false).as_bytes()), "auth": b64.encode([1u8; 16])})
    };
    let webpush = |endpoint: &str| json!({"kind": "webpush", "subscription": {"endpoint": endpoint, "keys": keys}});
    for (body, why) in [
        (webpush("https://127.0.0.1/push/1"), "non-public"),
        (webpush("https://[::1]/push/1"), "non-public"),
        (webpush("https://169.254.169.254/latest"), "non-public"),
        (
            webpush("https://localhost/push/1"),
            "not on a public address",
        ),
        (webpush("http://8.8.8.8/1"), "https"),
        (webpush("not a url"), "URL"),
        (
            json!({"kind": "webpush", "subscription": {"endpoint": "https://8.8.8.8/1", "keys": {"p256dh": "AAAA", "auth": "AAAA"}}}),
            "p256dh",
        ),
        (json!({"kind": "webpush"}), "subscription"),
        (json!({"kind": "pigeon", "token": "x"}), "not a device kind"),
        (json!({"kind": "fcm", "token": "abc"}), "not configured"),
        (json!({"kind": "apns", "token": "abc"}), "not configured"),
    ] {
        let (status, answer) = hub
            .post("/api/devices/", Some(&hub.token(&ada)), body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(why),
            "{body}: {answer}"
        );
    }
    // Without a token: 401. Malformed JSON: 400.
    let (status, _) = hub
        .post("/api/devices/", None, webpush("https://8.8.8.8/x"))
        .await;
    assert_eq!(status, 401);
    // Public addresses are taken (nothing is sent here); the cap holds per user.
    let first = hub
        .post_as(
            &ada,
            "/api/devices/",
            webpush("https://8.8.8.8/push/1"),
            201,
        )
        .await;
    hub.post_as(
        &ada,
        "/api/devices/",
        webpush("https://8.8.4.4/push/2"),
        201,
    )
    .await;
    let (status, answer) = hub
        .post(
            "/api/devices/",
            Some(&hub.token(&ada)),
            webpush("https://1.1.1.1/push/3"),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    // Another user sees none of them and cannot remove them.
    assert_eq!(hub.get_as(&bob, "/api/devices/", 200).await, json!([]));
    let path = format!("/api/devices/{}/", first["id"]);
    let (status, _) = hub
        .call(reqwest::Method::DELETE, &path, Some(&hub.token(&bob)), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = hub
        .call(reqwest::Method::DELETE, &path, Some(&hub.token(&ada)), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        hub.get_as(&ada, "/api/devices/", 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Push is a channel a user can switch off.
    let prefs = hub
        .call(
            reqwest::Method::PUT,
            "/api/notifications/preferences/",
            Some(&hub.token(&ada)),
            Some(json!({"channels": {"push": false}})),
        )
        .await;
    assert_eq!(prefs.0, 200, "{}", prefs.1);
    assert_eq!(prefs.1["channels"]["push"], false);
}

/// A browser that changes hands (another user signs in and turns notifications on, so the
/// browser presents its own subscription keys) is a new device of the new user's, and takes
/// none of the pushes still queued for the one before.
async fn a_device_that_changes_hands_takes_none_of_the_former_owner_s_pushes(backend: Backend) {
    let Held {
        service,
        hub,
        admin,
        client,
        dev,
        _routing,
    } = Held::start(&backend).await;
    let other = hub.user("eve", Role::Developer).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    let device = register(&hub, &dev, &sub, 201).await;
    let id = assigned(&hub, &admin, &client, &dev).await;
    assert_eq!(deliveries(&hub, &dev, id).await[0]["status"], "QUEUED");
    let moved = register(&hub, &other, &sub, 201).await;
    assert_ne!(moved["id"], device["id"]);
    assert_eq!(hub.get_as(&dev, "/api/devices/", 200).await, json!([]));
    let d = settled(&hub, &dev, id, "FAILED").await;
    assert!(
        d["last_error"].as_str().unwrap().contains("another user"),
        "{d}"
    );
    // The new owner's pushes reach it; the former owner's never did.
    send_push(&hub, &admin, &other, json!({"title": "For Eve"})).await;
    let pushes = service.received(&sub, "Eve's push").await;
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0]["title"], "For Eve");
}

/// A push is queued only on carriers this hub sends on: a device of a carrier it was not given
/// (an FCM token registered while FCM was configured) gets no row that nothing would drain.
async fn pushes_are_queued_only_on_configured_carriers(backend: Backend) {
    let service = PushService::start().await;
    let hub = push_hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let user = hub.user("ada", Role::Developer).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    register(&hub, &user, &sub, 201).await;
    let registered = hub
        .store
        .register_device(
            user.id,
            tickethub_actors::ports::NewDevice {
                kind: tickethub_actors::routing::Channel::Fcm,
                token: "fcm-token-from-before".into(),
                p256dh: None,
                auth: None,
            },
            20,
        )
        .await
        .unwrap();
    assert!(matches!(
        registered,
        tickethub_actors::ports::Registered::Created(_)
    ));
    let id = send_push(&hub, &admin, &user, json!({})).await;
    let d = settled(&hub, &user, id, "SENT").await;
    assert_eq!(d["channel"], "webpush");
}

/// A routing file: assignments push to the assignee unless a client of theirs saw the
/// notification within `wait`.
fn unless_seen_routing(wait: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            r#"
[ticket_assigned]
recipients = ["newly_assigned"]
channels = ["websocket", "push"]
push = {{ unless_seen_within = "{wait}" }}
"#
        ),
    )
    .unwrap();
    file
}

/// A hub that routes assignments to push unless seen within [`wait_secs`], its push service,
/// and the people of an assignment.
struct Held {
    service: PushService,
    hub: TestHub,
    admin: User,
    client: User,
    dev: User,
    _routing: tempfile::NamedTempFile,
}

impl Held {
    async fn start(backend: &Backend) -> Held {
        let service = PushService::start().await;
        let routing = unless_seen_routing(&format!("{}s", wait_secs()));
        let path = routing.path().to_owned();
        let hub = push_hub(backend, |c| c.routing = Some(path)).await;
        Held {
            service,
            admin: hub.user("boss", Role::Admin).await,
            client: hub.user("cli", Role::Client).await,
            dev: hub.user("dev", Role::Developer).await,
            hub,
            _routing: routing,
        }
    }
}

/// The wait of the unless-seen tests: long enough for a client to ack on a loaded machine.
fn wait_secs() -> u64 {
    scaled_ms(3000).div_ceil(1000)
}

async fn assigned(hub: &TestHub, admin: &User, client: &User, dev: &User) -> i64 {
    let project = hub.project("OPS", &[admin, client, dev]).await;
    let crew = Crew {
        creator: client,
        admin,
        devs: &[dev],
    };
    ticket_in(hub, "ASSIGNED", &crew, json!({"project": project.id.0, "title": "Outage", "priority": "CRITICAL", "category": "BUG"})).await;
    newest(hub, dev, "ticket_assigned").await
}

async fn an_ack_within_the_window_cancels_the_push(backend: Backend) {
    let Held {
        service,
        hub,
        admin,
        client,
        dev,
        _routing,
    } = Held::start(&backend).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    register(&hub, &dev, &sub, 201).await;
    let mut ws = hub.connect(&dev).await;
    let id = assigned(&hub, &admin, &client, &dev).await;
    // Held back: queued, due only after the wait.
    let d = deliveries(&hub, &dev, id).await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["status"], "QUEUED");
    let note = loop {
        let note = ws.next_of("notification").await;
        if note["id"] == id {
            break note;
        }
    };
    let seq = note["seq"].as_i64().expect("a seq");
    ws.send_json(json!({"type": "ack", "seq": seq})).await;
    let d = settled(&hub, &dev, id, "SUPPRESSED").await;
    assert_eq!(d["channel"], "webpush");
    assert!(service.messages(&sub).await.is_empty());
}

async fn no_ack_sends_the_push_after_the_window(backend: Backend) {
    let wait = wait_secs();
    let Held {
        service,
        hub,
        admin,
        client,
        dev,
        _routing,
    } = Held::start(&backend).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    register(&hub, &dev, &sub, 201).await;
    let started = tokio::time::Instant::now();
    let id = assigned(&hub, &admin, &client, &dev).await;
    let pushes = service.received(&sub, "the push arrives").await;
    assert!(
        started.elapsed() >= Duration::from_secs(wait),
        "not before the window: {:?}",
        started.elapsed()
    );
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0]["notification_id"], id);
    assert_eq!(pushes[0]["priority"], "CRITICAL");
    settled(&hub, &dev, id, "SENT").await;
}

async fn an_escalation_step_on_push_fires(backend: Backend) {
    let service = PushService::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        r#"
[[escalation]]
name = "pager"
events = ["pager"]
steps = [ { after = "1s", unless = "read", channels = ["push"] } ]
"#,
    )
    .unwrap();
    let path = file.path().to_owned();
    let hub = push_hub(&backend, |c| c.routing = Some(path)).await;
    let admin = hub.user("boss", Role::Admin).await;
    let user = hub.user("ada", Role::Developer).await;
    let sub = service.subscribe(&vapid(&hub).await).await;
    register(&hub, &user, &sub, 201).await;
    let sent = hub
        .send(
            &admin,
            &[&user],
            json!({"notification_type": "pager", "channels": ["websocket"], "title": "Wake up"}),
        )
        .await;
    let pushes = service.received(&sub, "the escalation pushes").await;
    assert_eq!(pushes.len(), 1, "{pushes:?} after {sent}");
    assert_eq!(pushes[0]["title"], "Wake up");
}

/// Hub processes on one database routing assignments to push `unless_seen_within`, a developer
/// with a browser subscribed at the push service (registered through `device_node`), and what
/// the tests need of them.
struct Processes {
    cluster: crate::nodes::Cluster,
    service: PushService,
    sub: Subscription,
    admin: User,
    client: User,
    dev: User,
    project: i64,
    /// Between the hubs and the push service, when asked for.
    proxy: Option<crate::harness::Proxy>,
    _files: (tempfile::NamedTempFile, tempfile::NamedTempFile),
}

impl Processes {
    async fn start(backend: &Backend, nodes: usize, wait: u64, device_node: usize) -> Processes {
        Self::start_with(backend, nodes, wait, device_node, false, &[]).await
    }

    /// [`Processes::start`], with the subscription's endpoint behind a [`Proxy`] if `proxied`,
    /// and these settings too.
    async fn start_with(
        backend: &Backend,
        nodes: usize,
        wait: u64,
        device_node: usize,
        proxied: bool,
        settings: &[&str],
    ) -> Processes {
        let service = PushService::start().await;
        let proxy = match proxied {
            true => {
                Some(crate::harness::Proxy::start(format!("127.0.0.1:{}", service.gate.port)).await)
            }
            false => None,
        };
        let routing = unless_seen_routing(&format!("{wait}s"));
        let key = vapid_file();
        let (path, key_path) = (
            routing.path().to_str().unwrap().to_owned(),
            key.path().to_str().unwrap().to_owned(),
        );
        let mut args = vec![
            "--routing",
            &path,
            "--webpush-vapid-key",
            &key_path,
            "--push-allow-private",
            // The VAPID token's `sub`, for want of --webpush-subject.
            "--public-url",
            "https://hub.tickethub.test",
            "--delivery-poll-ms",
            "50",
        ];
        args.extend_from_slice(settings);
        let cluster = crate::nodes::Cluster::start(backend, nodes, &args).await;
        let admin = cluster.user("boss", Role::Admin).await;
        let client = cluster.user("cli", Role::Client).await;
        let dev = cluster.user("dev", Role::Developer).await;
        let project = cluster
            .store
            .create_project("OPS", "Operations", &[admin.id, client.id, dev.id])
            .await
            .unwrap();
        let (status, key_json) = cluster
            .call(0, reqwest::Method::GET, &dev, "/api/push/vapid/", None)
            .await;
        assert_eq!(status, 200, "{key_json}");
        let sub = service
            .subscribe(key_json["public_key"].as_str().unwrap())
            .await;
        let mut subscription = sub.json.clone();
        if let Some(proxy) = &proxy {
            let endpoint = subscription["endpoint"].as_str().unwrap().replacen(
                &format!(":{}/", service.gate.port),
                &format!(":{}/", proxy.port),
                1,
            );
            assert_ne!(subscription["endpoint"], endpoint, "{subscription}");
            subscription["endpoint"] = json!(endpoint);
        }
        cluster
            .post(
                device_node,
                &dev,
                "/api/devices/",
                json!({"kind": "webpush", "subscription": subscription}),
                201,
            )
            .await;
        Processes {
            cluster,
            service,
            sub,
            admin,
            client,
            dev,
            project: project.id.0,
            proxy,
            _files: (routing, key),
        }
    }

    /// The developer is assigned a ticket, on node 0.
    async fn assign(&self) {
        let crew = Crew {
            creator: &self.client,
            admin: &self.admin,
            devs: &[&self.dev],
        };
        ticket_in(
            &self.cluster.on(0),
            "ASSIGNED",
            &crew,
            json!({"project": self.project, "title": "Outage", "priority": "HIGH", "category": "BUG"}),
        )
        .await;
    }

    /// Waits until the one Web Push delivery has `status`.
    async fn settled(&self, status: &str) {
        let db = crate::harness::TestDb::existing(self.cluster.db_url());
        let sql = format!(
            "SELECT COUNT(*) FROM deliveries WHERE channel = 'webpush' AND status = '{status}' AND attempts <= 1"
        );
        eventually_ok(&format!("the push is {status}, once"), || async {
            let settled = crate::harness::db_number(&db, &sql).await;
            let all = crate::harness::db_number(
                &db,
                "SELECT COUNT(*) FROM deliveries WHERE channel = 'webpush'",
            )
            .await;
            if (settled, all) == (1, 1) {
                Ok(())
            } else {
                Err(format!("{settled} {status} of {all}"))
            }
        })
        .await;
    }
}

/// `kill -9` inside the wait: after the restart the push goes once, when due.
async fn kill_9_inside_the_window_neither_loses_nor_doubles_the_push(backend: Backend) {
    let mut p = Processes::start(&backend, 1, wait_secs() + 2, 0).await;
    p.assign().await;
    p.cluster.nodes[0].kill().await;
    assert!(
        p.service.messages(&p.sub).await.is_empty(),
        "nothing before the window"
    );
    p.cluster.nodes[0].restart().await;
    let pushes = p
        .service
        .received(&p.sub, "the push arrives after the restart")
        .await;
    p.settled("SENT").await;
    assert_eq!(p.service.messages(&p.sub).await.len(), 1, "{pushes:?}");
}

/// `kill -9` with the push in flight (its request held unanswered on the way to the push
/// service): once the dead process's claim has run out, the restarted one sends it, once.
async fn kill_9_with_the_push_in_flight_sends_it_after_the_restart(backend: Backend) {
    // The send timeout outlasts the moment the test holds the request (scaled on a loaded
    // machine); the lease is twice it.
    let timeout = (crate::harness::scaled_ms(2_000) / 1000).max(2);
    let (timeout, lease) = (timeout.to_string(), (2 * timeout).to_string());
    let settings = ["--delivery-timeout", &timeout, "--delivery-lease", &lease];
    let mut p = Processes::start_with(&backend, 1, wait_secs(), 0, true, &settings).await;
    let proxy = p.proxy.take().unwrap();
    proxy.down();
    p.assign().await;
    proxy.held(1).await;
    p.cluster.nodes[0].kill().await;
    assert!(
        p.service.messages(&p.sub).await.is_empty(),
        "it never arrived"
    );
    proxy.up();
    p.cluster.nodes[0].restart().await;
    let pushes = p
        .service
        .received(&p.sub, "the push arrives after the restart")
        .await;
    let db = crate::harness::TestDb::existing(p.cluster.db_url());
    crate::harness::eventually("the push is recorded as sent", || async {
        crate::harness::db_number(
            &db,
            "SELECT COUNT(*) FROM deliveries WHERE channel = 'webpush' AND status = 'SENT'",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(p.service.messages(&p.sub).await.len(), 1, "{pushes:?}");
}

/// Two nodes on one PostgreSQL database: the push is queued by the node that committed the
/// assignment, the user's only socket is on the other node and acknowledges it there, and the
/// push is not sent, whichever node claims it.
async fn an_ack_on_another_node_cancels_the_push() {
    let p = Processes::start(&Backend::postgres(), 2, wait_secs(), 1).await;
    let mut ws = p.cluster.connect(1, &p.dev, None).await;
    p.assign().await;
    let note = ws.next_of("notification").await;
    assert_eq!(note["notification_type"], "ticket_assigned", "{note}");
    ws.send_json(json!({"type": "ack", "seq": note["seq"]}))
        .await;
    p.settled("SUPPRESSED").await;
    assert!(p.service.messages(&p.sub).await.is_empty());
}

crate::trials! {
    both: [
        a_push_reaches_the_browser_and_decrypts_to_its_payload,
        minimal_content_carries_the_title_only,
        an_expired_subscription_is_pruned_without_a_retry,
        devices_are_checked_capped_and_private,
        an_ack_within_the_window_cancels_the_push,
        no_ack_sends_the_push_after_the_window,
        an_escalation_step_on_push_fires,
        kill_9_inside_the_window_neither_loses_nor_doubles_the_push,
        kill_9_with_the_push_in_flight_sends_it_after_the_restart,
        a_device_that_changes_hands_takes_none_of_the_former_owner_s_pushes,
        pushes_are_queued_only_on_configured_carriers,
    ],
    tests: [
        an_ack_on_another_node_cancels_the_push,
        a_push_without_a_contact_is_refused_as_apple_refuses_it,
    ],
    sync: [],
}
