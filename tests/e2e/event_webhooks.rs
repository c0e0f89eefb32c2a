//! Event webhooks end to end: subscriptions made at run time by admins, the hub's events
//! (`ticket.status_changed`, `notification.read`, `notification.delivered`,
//! `delivery.failed`) posted to a real HTTP receiver, signed per Standard Webhooks with the
//! subscription's own secret, retried under the same `webhook-id`, logged per subscription,
//! and a subscription that keeps failing turned off with the admins told by email.

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tickethub_actors::domain::Role;

use crate::delivery::quick;
use crate::fakes::{Http, Reply, Request, Smtp};
use crate::harness::{eventually_ok, Backend, Crew, TestHub};

const ALL: [&str; 4] = [
    "ticket.status_changed",
    "notification.read",
    "notification.delivered",
    "delivery.failed",
];

/// Checks a request's Standard Webhooks signature with `secret`, as a receiver does.
fn signed(secret: &str, r: &Request) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let header = |name: &str| r.headers[name].to_str().unwrap().to_owned();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.{}",
            header("webhook-id"),
            header("webhook-timestamp"),
            r.raw
        )
        .as_bytes(),
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    header("webhook-signature") == format!("v1,{expected}")
}

async fn subscribe(
    hub: &TestHub,
    admin: &tickethub_actors::domain::User,
    url: &str,
    events: &[&str],
) -> Value {
    hub.post_as(
        admin,
        "/api/admin/webhooks/",
        json!({"url": url, "events": events, "description": "ops"}),
        201,
    )
    .await
}

/// The receiver's events by type, once each type in `wanted` has come at least that often.
async fn events_by_type(
    receiver: &Http,
    wanted: &[(&str, usize)],
) -> BTreeMap<String, Vec<Request>> {
    eventually_ok("the events arrive", || async {
        let mut by: BTreeMap<String, Vec<Request>> = BTreeMap::new();
        for r in receiver.requests() {
            let kind = r.body["type"].as_str().unwrap_or_default().to_owned();
            by.entry(kind).or_default().push(r);
        }
        for (kind, n) in wanted {
            if by.get(*kind).map_or(0, Vec::len) < *n {
                return Err(format!("{:?}", by.keys().collect::<Vec<_>>()));
            }
        }
        Ok(by)
    })
    .await
}

/// A ticket's life, a read, a sent and a refused email reach the receiver as signed events,
/// each once, with what they are about; the log lists them delivered; a test event comes
/// too. Only admins manage subscriptions; bad fields are 400.
async fn the_hub_s_events_reach_a_subscribed_url_signed(backend: Backend) {
    let smtp = Smtp::start().await;
    let receiver = Http::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(smtp.url());
        c.channels.webhook.webhook_allow_private = true;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let carol = hub.user("carol", Role::Client).await;
    let project = hub.project("WEB", &[&carol, &ann]).await;

    let url = format!("{}/hooks", receiver.url());
    for bad in [
        json!({"url": url, "events": ["ticket.deleted"]}),
        json!({"url": url, "events": []}),
        json!({"url": "ftp://example.test/", "events": ALL}),
        json!({"url": url, "events": ALL, "secret": "not-a-secret"}),
    ] {
        let (code, said) = hub
            .post(
                "/api/admin/webhooks/",
                Some(&hub.token(&admin)),
                bad.clone(),
            )
            .await;
        assert_eq!(code, 400, "{bad}: {said}");
    }
    hub.post_as(
        &ann,
        "/api/admin/webhooks/",
        json!({"url": url, "events": ALL}),
        403,
    )
    .await;
    let made = subscribe(&hub, &admin, &url, &ALL).await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{made}");
    let id = made["id"].as_i64().unwrap();
    let listed = hub.get_as(&admin, "/api/admin/webhooks/", 200).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert!(listed[0].get("secret").is_none(), "{listed}");
    assert_eq!(listed[0]["enabled"], true);
    // An `admin:read` key sees the URL's scheme and host only.
    let key = hub
        .post_as(
            &admin,
            "/api/admin/api-keys/",
            json!({"name": "reader", "scopes": ["admin:read"]}),
            201,
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen: Value = reqwest::Client::new()
        .get(hub.url("/api/admin/webhooks/"))
        .header("authorization", format!("Api-Key {key}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        seen[0]["url"],
        format!("http://{}/…", receiver.addr),
        "{seen}"
    );

    // A ticket from new to assigned; ann's assignment email goes out; an email to an address
    // the server refuses fails; carol reads a notification.
    let crew = Crew {
        creator: &carol,
        admin: &admin,
        devs: &[&ann],
    };
    let ticket = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": project.id.0, "title": "Login fails"}),
        )
        .await;
    let ticket_id = ticket["id"].as_i64().unwrap();
    let nobody = hub.user("nobody", Role::Developer).await;
    let changes = tickethub_actors::ports::ProfileChanges {
        addresses: vec![(
            tickethub_actors::routing::Channel::Email,
            Some("nobody@invalid.test".into()),
        )],
        ..Default::default()
    };
    crate::delivery::vouch(&hub, &nobody, changes).await;
    hub.send(
        &admin,
        &[&nobody],
        json!({"title": "Hello", "channels": ["email"]}),
    )
    .await;
    let note = hub.get_as(&carol, "/api/notifications/", 200).await["results"][0].clone();
    hub.post_as(
        &carol,
        &format!("/api/notifications/{}/mark_as_read/", note["id"]),
        json!({}),
        200,
    )
    .await;

    let by = events_by_type(
        &receiver,
        &[
            ("ticket.status_changed", 3),
            ("notification.read", 1),
            ("notification.delivered", 1),
            ("delivery.failed", 1),
        ],
    )
    .await;
    let all: Vec<&Request> = by.values().flatten().collect();
    for r in &all {
        assert_eq!(r.path, "/hooks");
        assert!(signed(&secret, r), "{:?}", r.headers);
        assert!(!signed("whsec_AAAAAAAAAAAAAAAAAAAAAAAA", r));
    }
    let statuses: Vec<&str> = by["ticket.status_changed"]
        .iter()
        .map(|r| r.body["data"]["status"].as_str().unwrap())
        .collect();
    for status in ["NEW", "OPEN", "ASSIGNED"] {
        assert!(statuses.contains(&status), "{statuses:?}");
    }
    assert!(by["ticket.status_changed"]
        .iter()
        .all(|r| r.body["data"]["ticket_id"] == ticket_id));
    let read = &by["notification.read"][0].body["data"];
    assert_eq!(
        (&read["notification_id"], &read["user_id"]),
        (&note["id"], &json!(carol.id.0)),
        "{read}"
    );
    let delivered = &by["notification.delivered"];
    assert!(
        delivered
            .iter()
            .all(|r| r.body["data"]["channel"] == "email"),
        "{delivered:?}"
    );
    let failed = &by["delivery.failed"][0].body["data"];
    assert_eq!(failed["user_id"], nobody.id.0, "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("550"),
        "{failed}"
    );

    // The log lists each, delivered, by its webhook-id.
    let log = eventually_ok("the log is settled", || async {
        let log = hub
            .get_as(
                &admin,
                &format!("/api/admin/webhooks/{id}/deliveries/?page_size=100"),
                200,
            )
            .await;
        let rows = log["results"].as_array().unwrap().clone();
        if rows.iter().all(|r| r["status"] == "DELIVERED") {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    let logged: Vec<String> = log.iter().map(|r| format!("msg_{}", r["id"])).collect();
    for r in &all {
        let webhook_id = r.headers["webhook-id"].to_str().unwrap().to_owned();
        assert!(logged.contains(&webhook_id), "{webhook_id} in {logged:?}");
    }

    // A test event the receiver refuses twice is tried again under its one id, then taken.
    receiver.script([Reply::Status(500, json!({})), Reply::Status(503, json!({}))]);
    let queued = hub
        .post_as(
            &admin,
            &format!("/api/admin/webhooks/{id}/test/"),
            json!({}),
            202,
        )
        .await;
    let by = events_by_type(&receiver, &[("webhook.test", 3)]).await;
    for test in &by["webhook.test"] {
        assert!(signed(&secret, test));
        assert_eq!(
            test.headers["webhook-id"].to_str().unwrap(),
            format!("msg_{}", queued["id"])
        );
    }
    let row = eventually_ok("the test event is delivered", || async {
        let log = hub
            .get_as(
                &admin,
                &format!("/api/admin/webhooks/{id}/deliveries/"),
                200,
            )
            .await;
        let row = log["results"][0].clone();
        (row["status"] == "DELIVERED")
            .then_some(row.clone())
            .ok_or(row.to_string())
    })
    .await;
    assert_eq!(
        (
            &row["attempts"],
            &row["response_status"],
            &row["event_type"]
        ),
        (&json!(3), &json!(200), &json!("webhook.test")),
        "{row}"
    );
    hub.get_as(&ann, &format!("/api/admin/webhooks/{id}/deliveries/"), 403)
        .await;
    hub.get_as(&admin, "/api/admin/webhooks/999999/deliveries/", 404)
        .await;
}

/// A subscription whose posts fail past `--webhook-disable-after-days` (0 here: its first
/// failure) is turned off, what was still to go to it fails, it hears nothing more, and the
/// admins are told by email; turned on again, it hears; deleted, it is gone.
async fn a_failing_subscription_is_turned_off_and_admins_are_told(backend: Backend) {
    let smtp = Smtp::start().await;
    let healthy = Http::start().await;
    let broken = Http::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(smtp.url());
        c.channels.webhook.webhook_allow_private = true;
        c.channels.webhook.webhook_disable_after_days = 0;
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    subscribe(&hub, &admin, &healthy.url(), &ALL).await;
    let broken_hook = subscribe(&hub, &admin, &broken.url(), &ALL).await;
    broken.script([Reply::Status(500, json!({"error": "down"}))]);

    let path = format!("/api/admin/webhooks/{}/", broken_hook["id"]);
    hub.post_as(&admin, &format!("{path}test/"), json!({}), 202)
        .await;
    let off = eventually_ok("the broken subscription is turned off", || async {
        let w = hub.get_as(&admin, &path, 200).await;
        (w["enabled"] == false)
            .then_some(w.clone())
            .ok_or(w.to_string())
    })
    .await;
    assert!(
        off["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{off}"
    );
    assert!(off["failing_since"].is_string(), "{off}");
    let log = hub.get_as(&admin, &format!("{path}deliveries/"), 200).await;
    assert_eq!(log["count"], 1, "{log}");
    assert_eq!(
        (
            &log["results"][0]["status"],
            &log["results"][0]["response_status"]
        ),
        (&json!("FAILED"), &json!(500)),
        "{log}"
    );
    eventually_ok("the admins are told by email", || async {
        smtp.mails()
            .iter()
            .find(|m| {
                m.to.contains(&"boss@example.test".to_owned())
                    && m.subject().contains("Event webhook turned off")
            })
            .map(|_| ())
            .ok_or_else(|| "no mail yet".to_owned())
    })
    .await;

    // Off, it hears nothing: the healthy subscription hears a read, the broken one does not.
    hub.send(&admin, &[&admin], json!({"title": "Ping"})).await;
    let ping = hub.get_as(&admin, "/api/notifications/", 200).await["results"][0]["id"].clone();
    hub.post_as(
        &admin,
        &format!("/api/notifications/{ping}/mark_as_read/"),
        json!({}),
        200,
    )
    .await;
    events_by_type(&healthy, &[("notification.read", 1)]).await;
    let log = hub.get_as(&admin, &format!("{path}deliveries/"), 200).await;
    assert_eq!(log["count"], 1, "{log}");
    assert_eq!(broken.requests().len(), 1);

    // On again: it hears the next event.
    let token = hub.token(&admin);
    let (code, on) = hub
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(code, 200, "{on}");
    assert_eq!(
        (&on["enabled"], &on["disabled_reason"], &on["failing_since"]),
        (&json!(true), &Value::Null, &Value::Null),
        "{on}"
    );
    hub.post_as(&admin, &format!("{path}test/"), json!({}), 202)
        .await;
    broken.wait_for(2).await;

    // Deleted, with its log.
    let delete = || hub.call(reqwest::Method::DELETE, &path, Some(&token), None);
    assert_eq!(delete().await.0, 204);
    hub.get_as(&admin, &path, 404).await;
    assert_eq!(delete().await.0, 404);
}

/// Without `--webhook-allow-private`, a subscription whose URL is an address off the public
/// internet (the receiver on loopback) gets nothing: each try is refused before a byte is
/// sent, and the log says why. With it, an event that failed once and whose subscription is
/// switched off waits, untried, until it is on again, and then goes under its one id.
async fn a_private_address_is_refused_and_a_paused_subscription_keeps_its_events(backend: Backend) {
    let receiver = Http::start().await;
    let strict = TestHub::start_with(&backend, quick).await;
    let admin = strict.user("boss", Role::Admin).await;
    let hook = subscribe(&strict, &admin, &receiver.url(), &ALL).await;
    assert!(receiver.url().contains("127.0.0.1"), "{}", receiver.url());
    let path = format!("/api/admin/webhooks/{}/", hook["id"]);
    strict
        .post_as(&admin, &format!("{path}test/"), json!({}), 202)
        .await;
    let refused = eventually_ok("the post is refused", || async {
        let log = strict
            .get_as(&admin, &format!("{path}deliveries/"), 200)
            .await;
        let row = log["results"][0].clone();
        let error = row["last_error"].as_str().unwrap_or_default().to_owned();
        error
            .contains("non-public address")
            .then_some(row.clone())
            .ok_or(row.to_string())
    })
    .await;
    assert_eq!(refused["response_status"], Value::Null, "{refused}");
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the receiver"
    );

    // Allowed: refused once, then switched off before its retry (a test event would go even
    // to a subscription that is off; a read does not).
    let open = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.webhook.webhook_allow_private = true;
        c.delivery_backoff_max_ms = 3_000;
    })
    .await;
    let admin = open.user("boss", Role::Admin).await;
    let hook = subscribe(&open, &admin, &receiver.url(), &["notification.read"]).await;
    let path = format!("/api/admin/webhooks/{}/", hook["id"]);
    receiver.script([Reply::Status(500, json!({}))]);
    open.send(&admin, &[&admin], json!({"title": "Ping"})).await;
    let ping = open.get_as(&admin, "/api/notifications/", 200).await["results"][0]["id"].clone();
    open.post_as(
        &admin,
        &format!("/api/notifications/{ping}/mark_as_read/"),
        json!({}),
        200,
    )
    .await;
    receiver.wait_for(1).await;
    let token = open.token(&admin);
    let switch = |on: bool| {
        let (open, path, token) = (&open, path.clone(), token.clone());
        async move {
            let (code, w) = open
                .call(
                    reqwest::Method::PATCH,
                    &path,
                    Some(&token),
                    Some(json!({ "enabled": on })),
                )
                .await;
            assert_eq!(code, 200, "{w}");
        }
    };
    switch(false).await;
    let row = eventually_ok("the failed try is logged", || async {
        let log = open
            .get_as(&admin, &format!("{path}deliveries/"), 200)
            .await;
        let row = log["results"][0].clone();
        (row["attempts"] == 1)
            .then_some(row.clone())
            .ok_or(row.to_string())
    })
    .await;
    assert_eq!(row["status"], "PENDING", "{row}");
    // Past its retry's time it is still waiting, untried.
    let due = chrono::DateTime::parse_from_rfc3339(row["next_attempt_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_secs(1)).await;
    let log = open
        .get_as(&admin, &format!("{path}deliveries/"), 200)
        .await;
    assert_eq!(
        (&log["results"][0]["status"], &log["results"][0]["attempts"]),
        (&json!("PENDING"), &json!(1)),
        "{log}"
    );
    assert_eq!(receiver.requests().len(), 1);
    // On again: it goes, under the id it was first tried with.
    switch(true).await;
    let both = receiver.wait_for(2).await;
    assert_eq!(both.len(), 2);
    assert_eq!(
        both[0].headers["webhook-id"], both[1].headers["webhook-id"],
        "one event"
    );
    eventually_ok("it is delivered", || async {
        let log = open
            .get_as(&admin, &format!("{path}deliveries/"), 200)
            .await;
        (log["results"][0]["status"] == "DELIVERED")
            .then_some(())
            .ok_or(log.to_string())
    })
    .await;
}

crate::trials! {
    both: [
        the_hub_s_events_reach_a_subscribed_url_signed,
        a_failing_subscription_is_turned_off_and_admins_are_told,
        a_private_address_is_refused_and_a_paused_subscription_keeps_its_events,
    ],
    tests: [],
    sync: [],
}
