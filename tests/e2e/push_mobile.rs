//! Pushes to apps, end to end: devices registered over the API, notifications sent with the
//! `push` channel, and the FCM and APNs stand-ins of `push_fakes`, which check tokens,
//! signatures and payloads as the real services do. A device its provider calls gone is
//! removed; busy answers are retried; refused credentials are replaced.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::delivery::{channel, quick, settled_deliveries};
use crate::harness::{eventually_ok, Backend, TestHub};
use crate::push_fakes::{Apns, ApnsReply, Fcm, FcmReply};

/// Registers a device for `user`; panics unless it is created.
async fn register(hub: &TestHub, user: &User, device: Value) -> Value {
    let created = hub
        .post_as(user, "/api/devices/", device.clone(), 201)
        .await;
    assert_eq!(created["kind"], device["kind"], "{created}");
    assert!(created["last_used_at"].is_null(), "{created}");
    created
}

/// The user's devices, as the API lists them.
async fn devices(hub: &TestHub, user: &User) -> Vec<Value> {
    hub.get_as(user, "/api/devices/", 200)
        .await
        .as_array()
        .expect("a list")
        .clone()
}

/// Waits until the user's devices are `ids`.
async fn devices_are(hub: &TestHub, user: &User, ids: &[i64]) {
    eventually_ok("the devices are as expected", || async {
        let listed = devices(hub, user).await;
        let got: Vec<i64> = listed.iter().map(|d| d["id"].as_i64().unwrap()).collect();
        if got == ids {
            Ok(())
        } else {
            Err(format!("{listed:?}"))
        }
    })
    .await
}

/// The user's newest notification, as the REST API shows it.
async fn newest(hub: &TestHub, user: &User) -> Value {
    hub.get_as(user, "/api/notifications/", 200).await["results"][0].clone()
}

/// A random APNs device token: 32 bytes in hex.
fn apns_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hub pushing through the FCM stand-in, with fast retries.
async fn fcm_hub(
    backend: &Backend,
    fcm: &Fcm,
    tweak: impl FnOnce(&mut tickethub::ServeConfig),
) -> TestHub {
    TestHub::start_with(backend, |c| {
        quick(c);
        fcm.configure(c);
        tweak(c);
    })
    .await
}

/// A hub pushing through the APNs stand-in, with fast retries.
async fn apns_hub(
    backend: &Backend,
    apns: &Apns,
    tweak: impl FnOnce(&mut tickethub::ServeConfig),
) -> TestHub {
    TestHub::start_with(backend, |c| {
        quick(c);
        apns.configure(c);
        tweak(c);
    })
    .await
}

/// An FCM push: the notification in `notification`, the payload as strings in `data`, normal
/// priority and the TTL; a CRITICAL one with high priority; one access token for both.
async fn fcm_push_arrives_with_its_payload_and_priority(backend: Backend) {
    let fcm = Fcm::start().await;
    let mut hub = fcm_hub(&backend, &fcm, |c| c.channels.push.push_ttl = 600).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let device = register(
        &hub,
        &ann,
        json!({"kind": "fcm", "token": "fcm-token-of-ann:APA91b-test"}),
    )
    .await;

    hub.send(
        &admin,
        &[&ann],
        json!({
            "channels": ["push"],
            "title": "Disk almost full",
            "message": "Volume /var is at 95%",
            "link": "/tickets/7/",
        }),
    )
    .await;
    let first = fcm.wait_for(1).await.remove(0);
    let n = newest(&hub, &ann).await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let sent = channel(&d, "fcm");
    assert_eq!(
        (&sent["status"], &sent["attempts"]),
        (&json!("SENT"), &json!(1)),
        "{sent}"
    );
    assert_eq!(sent["address"], device["id"].to_string(), "{sent}");
    assert_eq!(
        sent["provider_message_id"].as_str(),
        first.name.as_deref(),
        "the message's name is the provider id"
    );
    assert_eq!(
        first.path,
        format!("/v1/projects/{}/messages:send", fcm.project_id())
    );
    let message = &first.body["message"];
    assert_eq!(
        *message,
        json!({
            "token": "fcm-token-of-ann:APA91b-test",
            "notification": {"title": "Disk almost full", "body": "Volume /var is at 95%"},
            "data": {
                "title": "Disk almost full",
                "body": "Volume /var is at 95%",
                "url": "/tickets/7/",
                "notification_id": n["id"].to_string(),
                "seq": n["seq"].to_string(),
                "type": "general",
                "priority": "MEDIUM",
            },
            "android": {"priority": "normal", "ttl": "600s"},
        })
    );

    // A CRITICAL one goes out with high priority, on the same access token.
    hub.send(
        &admin,
        &[&ann],
        json!({
            "channels": ["push"],
            "title": "Payments down",
            "notification_type": "outage",
            "data": {"priority": "critical"},
        }),
    )
    .await;
    let second = fcm.wait_for(2).await.remove(1);
    let d = settled_deliveries(&hub, &ann, "outage").await;
    assert_eq!(channel(&d, "fcm")["status"], "SENT", "{d:?}");
    let message = &second.body["message"];
    assert_eq!(message["android"]["priority"], "high", "{message}");
    assert_eq!(message["data"]["priority"], "CRITICAL", "{message}");
    assert_eq!(message["data"]["type"], "outage", "{message}");
    assert!(message["data"].get("url").is_none(), "no link: {message}");

    // One token for both: fetched once, with an assertion the stand-in verified.
    let grants = fcm.grants();
    assert_eq!(grants.len(), 1, "the access token is fetched once");
    assert_eq!(first.bearer, grants[0].access_token);
    assert_eq!(second.bearer, grants[0].access_token);
    let claims = &grants[0].claims;
    assert_eq!(claims["iss"], fcm.client_email());
    assert_eq!(claims["aud"], fcm.token_url());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(fcm.refusals(), Vec::<String>::new());
    // The device is marked used.
    eventually_ok("the device is marked used", || async {
        let listed = devices(&hub, &ann).await;
        match listed.as_slice() {
            [d] if d["last_used_at"].is_string() => Ok(()),
            _ => Err(format!("{listed:?}")),
        }
    })
    .await;
    hub.stop().await;
}

/// A long message in a script of two bytes a letter fits FCM's 4 KiB, though the title and
/// body go out twice (in `notification` and in `data`): cut shorter, and sent.
async fn fcm_a_long_cyrillic_message_is_cut_to_fit(backend: Backend) {
    let fcm = Fcm::start().await;
    let mut hub = fcm_hub(&backend, &fcm, |_| {}).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    register(
        &hub,
        &ann,
        json!({"kind": "fcm", "token": "fcm-token-of-ann:APA91b-test"}),
    )
    .await;
    // A thousand letters (of a word run together, as in a log line or a path).
    let message: String = "Сервернедоступен".chars().cycle().take(1000).collect();
    assert_eq!(message.len(), 2000);
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["push"], "title": "Сбой оплаты", "message": message}),
    )
    .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert_eq!(channel(&d, "fcm")["status"], "SENT", "{d:?}");
    assert_eq!(fcm.refusals(), Vec::<String>::new());
    let sent = fcm.wait_for(1).await.remove(0);
    let body = sent.body["message"]["notification"]["body"]
        .as_str()
        .unwrap();
    assert!(body.starts_with("Сервернедоступен"), "{body}");
    assert!(body.len() < message.len(), "cut: {} bytes", body.len());
    assert_eq!(sent.body["message"]["data"]["body"], body);
    hub.stop().await;
}

/// 404 `UNREGISTERED`: the delivery fails at its first attempt, without a retry, and the
/// device is removed, so that the next push queues nothing for it.
async fn fcm_unregistered_prunes_the_device(backend: Backend) {
    let fcm = Fcm::start().await;
    let mut hub = fcm_hub(&backend, &fcm, |c| c.circuit_threshold = 100).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let device = register(
        &hub,
        &ann,
        json!({"kind": "fcm", "token": "uninstalled-app"}),
    )
    .await;
    devices_are(&hub, &ann, &[device["id"].as_i64().unwrap()]).await;
    // Were it retried, the second attempt would be answered 200.
    fcm.script([FcmReply::unregistered()]);
    hub.send(&admin, &[&ann], json!({"channels": ["push"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let failed = channel(&d, "fcm");
    assert_eq!(
        (&failed["status"], &failed["attempts"]),
        (&json!("FAILED"), &json!(1)),
        "{failed}"
    );
    assert_eq!(failed["address"], device["id"].to_string());
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("UNREGISTERED"), "{error}");
    devices_are(&hub, &ann, &[]).await;
    let messages = fcm.messages();
    assert_eq!(messages.len(), 1, "one attempt: {messages:?}");
    assert_eq!(messages[0].status, 404);

    // The next push has no device to go to.
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["push"], "notification_type": "later"}),
    )
    .await;
    let d = settled_deliveries(&hub, &ann, "later").await;
    assert!(d.iter().all(|x| x["channel"] != "fcm"), "{d:?}");
    assert_eq!(fcm.messages().len(), 1, "nothing more was sent");
    assert_eq!(fcm.refusals(), Vec::<String>::new());
    hub.stop().await;
}

/// 503 with `Retry-After`, then 429: retried (the first no sooner than it asked), then sent,
/// on the access token fetched once.
async fn fcm_busy_answers_are_retried_then_delivered(backend: Backend) {
    let fcm = Fcm::start().await;
    let mut hub = fcm_hub(&backend, &fcm, |c| {
        c.delivery_backoff_max_ms = 5_000;
        c.circuit_threshold = 100;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    register(&hub, &ann, json!({"kind": "fcm", "token": "busy-day"})).await;
    fcm.script([
        FcmReply::unavailable(Some("1")),
        FcmReply::quota_exceeded(None),
    ]);
    hub.send(&admin, &[&ann], json!({"channels": ["push"]}))
        .await;
    let messages = fcm.wait_for(3).await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let sent = channel(&d, "fcm");
    assert_eq!(
        (&sent["status"], &sent["attempts"]),
        (&json!("SENT"), &json!(3)),
        "{sent}"
    );
    let statuses: Vec<u16> = messages.iter().map(|m| m.status).collect();
    assert_eq!(statuses, [503, 429, 200]);
    let waited = messages[1].at.duration_since(messages[0].at);
    assert!(
        waited >= Duration::from_secs(1),
        "retried {waited:?} after `Retry-After: 1`"
    );
    assert_eq!(fcm.grants().len(), 1, "the token outlives the retries");
    assert_eq!(fcm.refusals(), Vec::<String>::new());
    assert_eq!(fcm.messages().len(), 3, "nothing was sent twice");
    hub.stop().await;
}

/// 401: the access token is dropped, a new one fetched, and the retry carries it.
async fn fcm_a_refused_access_token_is_replaced(backend: Backend) {
    let fcm = Fcm::start().await;
    let mut hub = fcm_hub(&backend, &fcm, |c| c.circuit_threshold = 100).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    register(
        &hub,
        &ann,
        json!({"kind": "fcm", "token": "revoked-session"}),
    )
    .await;
    fcm.script([FcmReply::RevokeToken]);
    hub.send(&admin, &[&ann], json!({"channels": ["push"]}))
        .await;
    let messages = fcm.wait_for(2).await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let sent = channel(&d, "fcm");
    assert_eq!(
        (&sent["status"], &sent["attempts"]),
        (&json!("SENT"), &json!(2)),
        "{sent}"
    );
    let grants = fcm.grants();
    assert_eq!(grants.len(), 2, "a second token was fetched");
    assert_eq!(
        (messages[0].status, messages[1].status),
        (401, 200),
        "{messages:?}"
    );
    assert_eq!(messages[0].bearer, grants[0].access_token);
    assert_eq!(messages[1].bearer, grants[1].access_token);
    assert_ne!(grants[0].access_token, grants[1].access_token);
    hub.stop().await;
}

/// An APNs push: HTTP/2, a provider token the stand-in verified (reused for the next push),
/// the topic, `apns-priority: 10` for CRITICAL, the alert and the payload's fields.
async fn apns_push_arrives_over_http2_with_a_signed_token(backend: Backend) {
    let apns = Apns::start().await;
    // The stand-in speaks HTTP/2 only: an HTTP/1.1 request is turned away.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http1 = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!("{}/3/device/{}", apns.url(), apns_token()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(http1.status().as_u16(), 505);
    assert_eq!(apns.http1_refused(), 1);

    let mut hub = apns_hub(&backend, &apns, |c| c.channels.push.push_ttl = 600).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let token = apns_token();
    let device = register(&hub, &ann, json!({"kind": "apns", "token": token})).await;

    hub.send(
        &admin,
        &[&ann],
        json!({
            "channels": ["push"],
            "title": "Ticket assigned",
            "message": "WEB-7 is yours",
            "link": "/tickets/7/",
        }),
    )
    .await;
    let first = apns.wait_for(1).await.remove(0);
    let n = newest(&hub, &ann).await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let sent = channel(&d, "apns");
    assert_eq!(
        (&sent["status"], &sent["attempts"]),
        (&json!("SENT"), &json!(1)),
        "{sent}"
    );
    assert_eq!(sent["address"], device["id"].to_string());
    assert_eq!(
        sent["provider_message_id"].as_str(),
        first.apns_id.as_deref()
    );
    assert_eq!(first.version, hyper::Version::HTTP_2);
    assert_eq!(first.path, format!("/3/device/{token}"));
    assert_eq!(first.header("apns-topic"), Some(apns.topic()));
    assert_eq!(first.header("apns-push-type"), Some("alert"));
    assert_eq!(first.header("apns-priority"), Some("5"));
    let expiration: i64 = first.header("apns-expiration").unwrap().parse().unwrap();
    let ahead = expiration - first.at_unix;
    assert!((590..=600).contains(&ahead), "expires {ahead} s ahead");
    assert_eq!(
        first.body,
        json!({
            "aps": {
                "alert": {"title": "Ticket assigned", "body": "WEB-7 is yours"},
                "sound": "default",
            },
            "url": "/tickets/7/",
            "notification_id": n["id"],
            "seq": n["seq"],
            "type": "general",
            "priority": "MEDIUM",
        })
    );
    assert!(first.iat.is_some(), "the token was verified");

    hub.send(
        &admin,
        &[&ann],
        json!({
            "channels": ["push"],
            "title": "Payments down",
            "notification_type": "outage",
            "data": {"priority": "critical"},
        }),
    )
    .await;
    let second = apns.wait_for(2).await.remove(1);
    let d = settled_deliveries(&hub, &ann, "outage").await;
    assert_eq!(channel(&d, "apns")["status"], "SENT", "{d:?}");
    assert_eq!(second.version, hyper::Version::HTTP_2);
    assert_eq!(second.header("apns-priority"), Some("10"));
    assert_eq!(second.body["priority"], "CRITICAL");
    assert_eq!(second.jwt, first.jwt, "the provider token is reused");
    assert_eq!(apns.refusals(), Vec::<String>::new());
    assert_eq!(apns.http1_refused(), 1, "the hub spoke HTTP/2 only");
    hub.stop().await;
}

/// 410 `Unregistered` and 400 `BadDeviceToken`: each delivery fails at its first attempt; the
/// unregistered device is removed, the other kept (a wrong environment or topic answers
/// `BadDeviceToken` for every device).
async fn apns_gone_devices_are_pruned(backend: Backend) {
    let apns = Apns::start().await;
    let mut hub = apns_hub(&backend, &apns, |c| c.circuit_threshold = 100).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    register(&hub, &ann, json!({"kind": "apns", "token": apns_token()})).await;
    register(&hub, &ann, json!({"kind": "apns", "token": apns_token()})).await;
    apns.script([ApnsReply::unregistered(), ApnsReply::bad_device_token()]);
    hub.send(&admin, &[&ann], json!({"channels": ["push"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let rows: Vec<&Value> = d.iter().filter(|x| x["channel"] == "apns").collect();
    assert_eq!(rows.len(), 2, "{d:?}");
    let mut reasons = BTreeSet::new();
    let mut kept = Vec::new();
    for row in rows {
        assert_eq!(
            (&row["status"], &row["attempts"]),
            (&json!("FAILED"), &json!(1)),
            "{row}"
        );
        let error = row["last_error"].as_str().unwrap();
        reasons.insert(if error.contains("HTTP 410 Unregistered") {
            "Unregistered"
        } else if error.contains("HTTP 400 BadDeviceToken") {
            kept.push(row["address"].as_str().unwrap().parse::<i64>().unwrap());
            "BadDeviceToken"
        } else {
            panic!("{error}")
        });
    }
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    devices_are(&hub, &ann, &kept).await;
    let statuses: BTreeSet<u16> = apns.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, BTreeSet::from([400, 410]));
    assert_eq!(apns.requests().len(), 2, "one attempt each");
    assert_eq!(apns.refusals(), Vec::<String>::new());
    hub.stop().await;
}

/// 403 `ExpiredProviderToken`: a new token is signed (a later `iat`) and the retry is
/// delivered; the next push reuses the new token.
async fn apns_expired_provider_token_is_replaced_and_retried(backend: Backend) {
    let apns = Apns::start().await;
    let mut hub = apns_hub(&backend, &apns, |c| c.circuit_threshold = 100).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    register(&hub, &ann, json!({"kind": "apns", "token": apns_token()})).await;
    apns.script([ApnsReply::expired_provider_token()]);
    hub.send(&admin, &[&ann], json!({"channels": ["push"]}))
        .await;
    let requests = apns.wait_for(2).await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let sent = channel(&d, "apns");
    assert_eq!(
        (&sent["status"], &sent["attempts"]),
        (&json!("SENT"), &json!(2)),
        "{sent}"
    );
    assert_eq!((requests[0].status, requests[1].status), (403, 200));
    assert_ne!(requests[1].jwt, requests[0].jwt, "a fresh token");
    assert!(
        requests[1].iat.unwrap() > requests[0].iat.unwrap(),
        "{:?} then {:?}",
        requests[0].iat,
        requests[1].iat
    );
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["push"], "notification_type": "later"}),
    )
    .await;
    let requests = apns.wait_for(3).await;
    let d = settled_deliveries(&hub, &ann, "later").await;
    assert_eq!(channel(&d, "apns")["status"], "SENT", "{d:?}");
    assert_eq!(requests[2].jwt, requests[1].jwt, "the new token is reused");
    assert_eq!(apns.refusals(), Vec::<String>::new());
    hub.stop().await;
}

/// `--push-content minimal`: both carriers carry the title and the ids, not the message.
async fn minimal_content_sends_the_title_only(backend: Backend) {
    let fcm = Fcm::start().await;
    let apns = Apns::start().await;
    let mut hub = TestHub::start_with(&backend, |c| {
        quick(c);
        fcm.configure(c);
        apns.configure(c);
        c.channels.push.push_content = tickethub::config::PushContent::Minimal;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    register(&hub, &ann, json!({"kind": "fcm", "token": "fcm-minimal"})).await;
    register(&hub, &ann, json!({"kind": "apns", "token": apns_token()})).await;
    let secret = "The root password is hunter2";
    hub.send(
        &admin,
        &[&ann],
        json!({
            "channels": ["push"],
            "title": "Credentials rotated",
            "message": secret,
            "link": "/tickets/9/",
            "data": {"priority": "critical"},
        }),
    )
    .await;
    let message = fcm.wait_for(1).await.remove(0);
    let push = apns.wait_for(1).await.remove(0);
    let n = newest(&hub, &ann).await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert_eq!(channel(&d, "fcm")["status"], "SENT", "{d:?}");
    assert_eq!(channel(&d, "apns")["status"], "SENT", "{d:?}");
    assert_eq!(
        message.body["message"],
        json!({
            "token": "fcm-minimal",
            "notification": {"title": "Credentials rotated"},
            "data": {
                "title": "Credentials rotated",
                "notification_id": n["id"].to_string(),
                "seq": n["seq"].to_string(),
            },
            "android": {"priority": "high", "ttl": "86400s"},
        })
    );
    assert_eq!(
        push.body,
        json!({
            "aps": {"alert": {"title": "Credentials rotated"}, "sound": "default"},
            "notification_id": n["id"],
            "seq": n["seq"],
        })
    );
    assert_eq!(push.header("apns-priority"), Some("10"), "still CRITICAL");
    assert!(!message.body.to_string().contains("hunter2"));
    assert!(!push.raw.contains("hunter2"));
    assert_eq!(fcm.refusals(), Vec::<String>::new());
    assert_eq!(apns.refusals(), Vec::<String>::new());
    hub.stop().await;
}

crate::trials! {
    both: [
        fcm_push_arrives_with_its_payload_and_priority,
        fcm_unregistered_prunes_the_device,
        fcm_a_long_cyrillic_message_is_cut_to_fit,
        fcm_busy_answers_are_retried_then_delivered,
        fcm_a_refused_access_token_is_replaced,
        apns_push_arrives_over_http2_with_a_signed_token,
        apns_gone_devices_are_pruned,
        apns_expired_provider_token_is_replaced_and_retried,
        minimal_content_sends_the_title_only,
    ],
    tests: [],
    sync: [],
}
