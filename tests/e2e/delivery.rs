//! Delivery channels end to end: a real SMTP server, a WhatsApp Cloud API stand-in and a webhook
//! receiver in this process; retries, permanent failures, outages and restarts.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tickethub_actors::domain::{NewUser, Role, User};
use tickethub_actors::routing::Channel;

use crate::fakes::{Gate, Http, Reply, Smtp};
use crate::harness::{eventually, eventually_ok, Backend, TestHub};
use crate::tickets::{cast, create_ticket};

/// Changes a user as an admin or the command line does: the addresses it sets count as
/// verified (one a user types for themselves waits for its code; see `security.rs`).
pub(crate) async fn vouch(
    hub: &TestHub,
    user: &User,
    changes: tickethub_actors::ports::ProfileChanges,
) -> User {
    hub.store
        .update_profile(
            user.id,
            tickethub_actors::ports::ProfileChanges {
                vouched: true,
                by: Some("cli".into()),
                ..changes
            },
        )
        .await
        .unwrap()
        .unwrap()
}

/// A user's address on `channel`, set as an admin sets it: verified at once.
pub(crate) async fn vouch_address(hub: &TestHub, user: &User, channel: &str, address: &str) {
    let channel = Channel::stored(channel).expect("a registered channel");
    let changes = tickethub_actors::ports::ProfileChanges {
        addresses: vec![(channel, Some(address.into()))],
        ..Default::default()
    };
    vouch(hub, user, changes).await;
}

/// A user's WhatsApp number, set as an admin sets it: verified at once.
pub(crate) async fn set_whatsapp(hub: &TestHub, user: &User, number: &str) {
    let changes = tickethub_actors::ports::ProfileChanges {
        addresses: vec![(
            tickethub_actors::routing::Channel::Whatsapp,
            Some(number.to_owned()),
        )],
        ..Default::default()
    };
    let changed = vouch(hub, user, changes).await;
    let address = changed
        .address(tickethub_actors::routing::Channel::Whatsapp)
        .unwrap();
    assert_eq!(address.address, number);
    assert!(address.verified_at.is_some());
}

/// Fast retries for tests.
pub(crate) fn quick(c: &mut tickethub::ServeConfig) {
    c.delivery_backoff_ms = 50;
    c.delivery_backoff_max_ms = 200;
    c.delivery_poll_ms = 50;
    c.circuit_cooldown_ms = 200;
    c.delivery_timeout = 1;
}

/// The deliveries of a user's newest notification of a type, once none is pending.
pub(crate) async fn settled_deliveries(hub: &TestHub, user: &User, kind: &str) -> Vec<Value> {
    eventually_ok(&format!("the deliveries of {kind} settle"), || async {
        let page = hub
            .get_as(
                user,
                &format!("/api/notifications/?notification_type={kind}"),
                200,
            )
            .await;
        let Some(id) = page["results"][0]["id"].as_i64() else {
            return Err(format!("no {kind} yet"));
        };
        let d = hub
            .get_as(user, &format!("/api/notifications/{id}/deliveries/"), 200)
            .await;
        let list = d["deliveries"].as_array().unwrap().clone();
        if list
            .iter()
            .all(|x| x["status"] == "STORED" || x["status"] == "SENT" || x["status"] == "FAILED")
        {
            Ok(list)
        } else {
            Err(format!("{list:?}"))
        }
    })
    .await
}

pub(crate) fn channel<'a>(deliveries: &'a [Value], name: &str) -> &'a Value {
    deliveries
        .iter()
        .find(|d| d["channel"] == name)
        .unwrap_or_else(|| panic!("no {name} delivery in {deliveries:?}"))
}

async fn lifecycle_mails_reach_the_right_inboxes(backend: Backend) {
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(url);
        c.channels.email.smtp_from = "Hub <hub@example.test>".into();
    })
    .await;
    let c = cast(&hub).await;
    create_ticket(&hub, &c.c1, c.project, "Homepage not loading").await;
    let mails = smtp.wait_for(2).await;
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["a1@example.test", "a2@example.test"]);
    let mail = mails.iter().find(|m| m.to == ["a1@example.test"]).unwrap();
    assert_eq!(mail.from, "hub@example.test");
    assert_eq!(
        mail.subject(),
        "New Ticket Created: WEB-1 Homepage not loading"
    );
    let text = mail.text();
    assert!(text.contains("Hello a1 display,"), "{text}");
    assert!(
        text.contains("New High priority ticket created: Homepage not loading"),
        "{text}"
    );
    assert!(text.contains("text/html"), "{text}");
    let d = settled_deliveries(&hub, &c.a1, "ticket_created").await;
    let email = channel(&d, "email");
    assert_eq!(
        (email["status"].clone(), email["attempts"].clone()),
        (json!("SENT"), json!(1))
    );
    assert!(email["sent_at"].is_string());
    // Seed 001's status fields follow the deliveries.
    let newest = |user: &User| {
        let hub = &hub;
        let user = user.clone();
        async move { hub.get_as(&user, "/api/notifications/", 200).await["results"][0].clone() }
    };
    let n = newest(&c.a1).await;
    assert_eq!(
        (&n["status"], &n["status_display"], &n["sent_at"]),
        (&json!("SENT"), &json!("Sent"), &email["sent_at"]),
        "{n}"
    );
    let bad = hub
        .store
        .create_user(NewUser {
            email: Some("nobody@invalid.test".into()),
            ..NewUser::new("bounce", Role::Client, "x")
        })
        .await
        .unwrap();
    hub.send(
        &c.a1,
        &[&bad],
        json!({"title": "x", "message": "y", "channels": ["email"]}),
    )
    .await;
    let d = settled_deliveries(&hub, &bad, "general").await;
    let email = channel(&d, "email");
    assert_eq!(
        (email["status"].clone(), email["attempts"].clone()),
        (json!("FAILED"), json!(1))
    );
    assert!(
        email["last_error"].as_str().unwrap().contains("550"),
        "{email}"
    );
    let n = newest(&bad).await;
    assert_eq!(
        (&n["status"], &n["status_display"], &n["sent_at"]),
        (&json!("FAILED"), &json!("Failed"), &Value::Null),
        "{n}"
    );
    // With no outbound channel, the in-app copy is the delivery: sent when committed.
    hub.send(
        &c.a1,
        &[&c.d1],
        json!({"title": "in-app", "message": "only", "channels": ["websocket"]}),
    )
    .await;
    let n = newest(&c.d1).await;
    assert_eq!(
        (&n["status"], &n["sent_at"]),
        (&json!("SENT"), &n["created_at"]),
        "{n}"
    );

    // Switching email off stops the mail but not the in-app notification.
    hub.call(
        reqwest::Method::PUT,
        "/api/notifications/preferences/",
        Some(&hub.token(&c.a2)),
        Some(json!({"channels": {"email": false}})),
    )
    .await;
    let before = smtp.mails().len();
    create_ticket(&hub, &c.c1, c.project, "Second").await;
    smtp.wait_for(before + 1).await;
    let page = hub
        .get_as(
            &c.a2,
            "/api/notifications/?notification_type=ticket_created",
            200,
        )
        .await;
    assert_eq!(page["count"], 2);
    let d = settled_deliveries(&hub, &c.a2, "ticket_created").await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(smtp.mails()[before..]
        .iter()
        .all(|m| m.to == ["a1@example.test"]));
}

async fn whatsapp_retries_with_backoff_and_refuses_permanently(backend: Backend) {
    let api = Http::start().await;
    let url = api.url();
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.whatsapp.whatsapp_api_url = url;
        c.channels.whatsapp.whatsapp_token = Some("test-token".into());
        c.channels.whatsapp.whatsapp_phone_number_id = Some("1234567".into());
        c.channels.whatsapp.whatsapp_templates = vec!["ticket_opened=ticket_update:es".into()];
    })
    .await;
    let c = cast(&hub).await;
    set_whatsapp(&hub, &c.c1, "+15550001111").await;
    let t = create_ticket(&hub, &c.c1, c.project, "Mobile app crash").await;
    let id = t["id"].as_i64().unwrap();
    // A 500, then a timeout, then success.
    api.script([
        Reply::Status(500, json!({"error": "boom"})),
        Reply::Hold(Gate::new()),
    ]);
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{id}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    let d = settled_deliveries(&hub, &c.c1, "ticket_opened").await;
    let wa = channel(&d, "whatsapp");
    assert_eq!(wa["status"], "SENT", "{wa}");
    assert_eq!(wa["attempts"], 3);
    assert_eq!(wa["provider_message_id"], "wamid.TEST");
    let requests = api.requests();
    assert_eq!(requests.len(), 3);
    // Backoff: each retry waits at least half its delay (50 ms, then 100 ms, with jitter in
    // [half, full]); the second also waited out the hung call's 1 s timeout.
    let gap = |i: usize| requests[i + 1].at.duration_since(requests[i].at);
    assert!(
        gap(0) >= Duration::from_millis(25),
        "first retry after {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= Duration::from_secs(1) + Duration::from_millis(50),
        "second retry after {:?}",
        gap(1)
    );
    for r in &requests {
        assert_eq!(r.path, "/1234567/messages");
        assert_eq!(r.headers["authorization"], "Bearer test-token");
    }
    let body = &requests[2].body;
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["to"], "15550001111");
    assert_eq!(body["type"], "template");
    assert_eq!(body["template"]["name"], "ticket_update");
    assert_eq!(body["template"]["language"]["code"], "es");
    assert_eq!(
        body["template"]["components"][0]["parameters"][0]["text"],
        "Ticket Opened"
    );

    // A 400 (an unknown number, say) is permanent: one attempt, FAILED.
    api.script([Reply::Status(
        400,
        json!({"error": {"message": "Recipient phone number not in allowed list"}}),
    )]);
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{id}/assign/"),
        json!({"developer_ids": [c.d1.id.0]}),
        200,
    )
    .await;
    set_whatsapp(&hub, &c.d1, "+15550002222").await;
    hub.post_as(
        &c.d1,
        &format!("/api/tickets/{id}/start_work/"),
        json!({}),
        200,
    )
    .await;
    let d = settled_deliveries(&hub, &c.c1, "work_started").await;
    let wa = channel(&d, "whatsapp");
    assert_eq!(
        (wa["status"].clone(), wa["attempts"].clone()),
        (json!("FAILED"), json!(1))
    );
    assert!(wa["last_error"]
        .as_str()
        .unwrap()
        .contains("not in allowed list"));
    // A user without a number gets no WhatsApp delivery at all.
    let d = settled_deliveries(&hub, &c.a1, "ticket_created").await;
    assert!(d.iter().all(|x| x["channel"] != "whatsapp"));
}

/// Verifies a Standard Webhooks signature the way a receiver would.
fn verify(secret: &str, id: &str, timestamp: &str, body: &str, signature: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signature.split(' ').any(|s| s == format!("v1,{expected}"))
}

/// The ids a webhook event names as its recipients, sorted.
fn named_in(event: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = event["data"]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

async fn webhooks_are_signed_and_private_destinations_refused(backend: Backend) {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = Http::start().await;
    let url = format!("{}/hooks/tickethub", receiver.url());
    let hub_url = url.clone();
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.webhook.webhook_urls = vec![hub_url];
        c.channels.webhook.webhook_secret = Some(SECRET.into());
        c.channels.webhook.webhook_allow_private = true;
    })
    .await;
    let c = cast(&hub).await;
    create_ticket(&hub, &c.c1, c.project, "Hooked").await;
    // One POST for the event, naming both admins it notified.
    let requests = receiver.wait_for(1).await;
    assert_eq!(named_in(&requests[0].body), vec![c.a1.id.0, c.a2.id.0]);
    assert_eq!(requests[0].body["data"]["recipients"][0]["username"], "a1");
    for r in &requests {
        assert_eq!(r.path, "/hooks/tickethub");
        let h = |k: &str| r.headers[k].to_str().unwrap().to_owned();
        assert!(h("webhook-id").starts_with("msg_"));
        assert!(verify(
            SECRET,
            &h("webhook-id"),
            &h("webhook-timestamp"),
            &r.raw,
            &h("webhook-signature")
        ));
        assert!(!verify(
            SECRET,
            &h("webhook-id"),
            &h("webhook-timestamp"),
            &r.raw.replace("Hooked", "Hacked"),
            &h("webhook-signature")
        ));
        assert_eq!(r.body["type"], "ticket_created");
        assert_eq!(r.body["data"]["ticket"]["title"], "Hooked");
    }
    let d = settled_deliveries(&hub, &c.a1, "ticket_created").await;
    assert_eq!(channel(&d, "webhook")["status"], "SENT");

    // An announcement to 40 users is one POST, not 40: its one webhook delivery hangs off the
    // first recipient's notification and lists all 40.
    let mut crowd = Vec::new();
    for i in 0..40 {
        crowd.push(hub.user(&format!("fan{i:02}"), Role::Client).await);
    }
    hub.send_ids(
        &c.a1,
        &crowd.iter().map(|u| u.id.0).collect::<Vec<_>>(),
        json!({"title": "Maintenance", "message": "Tonight"}),
    )
    .await;
    let mut hooks = Vec::new();
    for u in &crowd {
        let d = settled_deliveries(&hub, u, "general").await;
        hooks.extend(d.into_iter().filter(|x| x["channel"] == "webhook"));
    }
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["status"], "SENT");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let announced = &requests[1].body;
    assert_eq!(announced["data"]["title"], "Maintenance");
    assert_eq!(
        named_in(announced),
        crowd.iter().map(|u| u.id.0).collect::<Vec<_>>()
    );

    // Without the explicit allowance, a loopback destination is refused for good.
    let strict = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.webhook.webhook_urls = vec![url];
        c.channels.webhook.webhook_secret = Some(SECRET.into());
    })
    .await;
    let c = cast(&strict).await;
    let before = receiver.requests().len();
    create_ticket(&strict, &c.c1, c.project, "Refused").await;
    let d = settled_deliveries(&strict, &c.a1, "ticket_created").await;
    let hook = channel(&d, "webhook");
    assert_eq!(hook["status"], "FAILED");
    assert!(
        hook["last_error"].as_str().unwrap().contains("non-public"),
        "{hook}"
    );
    assert_eq!(receiver.requests().len(), before);
}

async fn queued_mail_survives_a_restart_and_is_sent_once(backend: Backend) {
    let smtp = Smtp::start().await;
    smtp.set_down(true).await;
    let url = smtp.url();
    let config = move |c: &mut tickethub::ServeConfig| {
        quick(c);
        c.channels.email.smtp_url = Some(url.clone());
    };
    let hub = TestHub::start_with(&backend, config.clone()).await;
    let c = cast(&hub).await;
    let mut admin_ws = hub.connect(&c.a1).await;
    for i in 0..3 {
        create_ticket(&hub, &c.c1, c.project, &format!("Outage {i}")).await;
    }
    // Sockets are not held up by the outage.
    assert_eq!(admin_ws.notifications(3).await.len(), 3);
    eventually("the email circuit opens", || async {
        hub.hub
            .channel_status(Channel::Email)
            .await
            .unwrap()
            .circuit
            != "closed"
    })
    .await;
    // A stopped hub leaves no actor behind: one still draining the outbox would send what
    // the next hub sends, and its outcome would never be recorded.
    let email = hub.hub.channel(Channel::Email).unwrap();
    let db = hub.stop_keep_db().await;
    assert_eq!(format!("{:?}", email.get_status()), "Stopped");
    assert!(smtp.mails().is_empty());

    // The server comes back; a new hub on the same database sends every queued mail once.
    smtp.set_down(false).await;
    let hub = TestHub::start_on(db, config).await;
    let mails = smtp.wait_for(6).await;
    eventually("every email delivery is final", || async {
        hub.store.outbox_depth(Channel::Email).await.unwrap() == 0
    })
    .await;
    let mails_now = smtp.mails();
    assert_eq!(
        mails_now.len(),
        6,
        "{:?}",
        mails_now
            .iter()
            .map(|m| (m.to.clone(), m.subject()))
            .collect::<Vec<_>>()
    );
    let mut pairs: Vec<(Vec<String>, String)> =
        mails.iter().map(|m| (m.to.clone(), m.subject())).collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 6, "a mail was sent twice");
    assert_eq!(
        hub.hub
            .channel_status(Channel::Email)
            .await
            .unwrap()
            .circuit,
        "closed"
    );
}

async fn a_crashed_channel_actor_is_restarted_and_resumes() {
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(url);
    })
    .await;
    let c = cast(&hub).await;
    hub.hub
        .channel(Channel::Email)
        .unwrap()
        .send_message(tickethub_actors::delivery::ChannelMsg::InjectFault)
        .unwrap();
    eventually("the email channel restarts", || async {
        hub.hub.channel_restarts().await.get(&Channel::Email) == Some(&1)
    })
    .await;
    create_ticket(&hub, &c.c1, c.project, "After the crash").await;
    assert_eq!(smtp.wait_for(2).await.len(), 2);
}

async fn a_send_that_panics_frees_its_slot_and_is_sent_again() {
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(url);
        // One slot: a panicking send that kept it would stop the channel for good.
        c.delivery_concurrency = 1;
    })
    .await;
    let c = cast(&hub).await;
    hub.hub
        .channel(Channel::Email)
        .unwrap()
        .send_message(tickethub_actors::delivery::ChannelMsg::InjectSendPanic)
        .unwrap();
    create_ticket(&hub, &c.c1, c.project, "Despite the panic").await;
    // Both admins get their mail once: the panicked send's row went back to the queue.
    let mails = smtp.wait_for(2).await;
    assert_eq!(mails.len(), 2);
    eventually("the channel accounts for the panic", || async {
        let email = hub.hub.channel_status(Channel::Email).await.unwrap();
        (email.sent, email.retried, email.in_flight) == (2, 1, 0)
    })
    .await;
    // The channel actor itself never failed.
    assert_eq!(hub.hub.channel_restarts().await.get(&Channel::Email), None);
}

async fn a_channel_actor_that_crashes_mid_send_does_not_send_again() {
    let receiver = Http::start().await;
    let url = format!("{}/hooks/tickethub", receiver.url());
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        quick(c);
        c.channels.webhook.webhook_urls = vec![url];
        c.channels.webhook.webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        c.channels.webhook.webhook_allow_private = true;
        // The held send below must not time out while the test crashes the actor.
        c.delivery_timeout = crate::harness::patience().as_secs();
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    // The receiver holds the first POST until the test lets it go: the send is in flight when
    // the webhook channel's actor crashes, and ends only after the actor has restarted.
    let gate = Gate::new();
    receiver.script([Reply::Hold(gate.clone())]);
    hub.send(
        &admin,
        &[&admin],
        json!({"title": "once", "message": "only once"}),
    )
    .await;
    receiver.wait_for(1).await;
    hub.hub
        .channel(Channel::Webhook)
        .unwrap()
        .send_message(tickethub_actors::delivery::ChannelMsg::InjectFault)
        .unwrap();
    eventually("the webhook channel restarts", || async {
        hub.hub.channel_restarts().await.get(&Channel::Webhook) == Some(&1)
    })
    .await;
    gate.open();
    // The send in flight finishes and records itself; the restarted actor does not take its
    // row back and send it again.
    let d = settled_deliveries(&hub, &admin, "general").await;
    let hook = channel(&d, "webhook");
    assert_eq!(hook["status"], "SENT", "{d:?}");
    assert_eq!(hook["attempts"], 1, "{d:?}");
    // SENT is final (claims take only queued rows and expired claims): one request, for good.
    assert_eq!(receiver.requests().len(), 1, "the webhook was sent once");
}

async fn sign_up_mails_are_coalesced(backend: Backend) {
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.email.smtp_url = Some(url);
        // A window the next three sign-ups (each an argon2 hash) surely fall in.
        c.signup_notice_interval = (crate::harness::scaled_ms(6_000) / 1000).max(6);
    })
    .await;
    let root = hub.user_with("root", Role::Admin, true).await;
    hub.user_with("chief", Role::Admin, true).await;
    let register = |username: &'static str| {
        let hub = &hub;
        async move {
            let (status, body) = hub
                .post(
                    "/api/auth/register/",
                    None,
                    json!({"username": username, "password": "long-enough"}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    };
    // The first sign-up is mailed at once; the next three wait for the window to close.
    register("carol").await;
    let first = smtp.wait_for(2).await;
    assert!(
        first.iter().all(|m| m.text().contains("carol")),
        "{first:?}"
    );
    // Any letter may be in a username; the digest must stay valid JSON all the same.
    for who in ["dave", "erin", "zoë"] {
        register(who).await;
    }
    let mails = smtp.wait_for(4).await;
    let mut to: Vec<String> = mails[2..].iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["chief@example.test", "root@example.test"]);
    for digest in &mails[2..] {
        assert_eq!(digest.subject(), "3 New Users Registered", "{digest:?}");
        // The mail body may encode the ë; the ASCII part is enough to find the name.
        for who in ["dave", "erin", "zo"] {
            assert!(
                digest.text().contains(who),
                "{who} missing: {}",
                digest.text()
            );
        }
        assert!(!digest.text().contains("carol"));
    }
    // Nothing is held back from the inbox: every sign-up is there, and the digest.
    let page = hub
        .get_as(
            &root,
            "/api/notifications/?notification_type=user_registered",
            200,
        )
        .await;
    assert_eq!(page["count"], 5, "{page}");
    let newest = &page["results"][0];
    assert_eq!(newest["title"], "3 New Users Registered", "{newest}");
    assert_eq!(
        newest["data"]["user_ids"].as_array().map(Vec::len),
        Some(3),
        "{newest}"
    );
}

/// How often the email and WhatsApp actors were woken, as the supervision tree shows them.
async fn wakes(hub: &TestHub, admin: &User) -> (u64, u64) {
    let tree = hub.get_as(admin, "/api/admin/actors", 200).await;
    let delivery = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "delivery")
        .unwrap_or_else(|| panic!("no delivery supervisor in {tree}"));
    let count = |name: &str| {
        let node = delivery["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {delivery}"));
        node["wakes"]
            .as_u64()
            .unwrap_or_else(|| panic!("no wakes in {node}"))
    };
    (count("channel:email"), count("channel:whatsapp"))
}

/// Each wake costs the channel a claim query, so a commit wakes only the channels it queued a
/// delivery on. The count read after an answer is exact: the commit's wakes are sent before
/// the request is answered, and the tree's status call queues behind them in the actor's
/// mailbox.
async fn a_commit_wakes_only_the_channel_actors_it_queued_work_for(backend: Backend) {
    let smtp = Smtp::start().await;
    let api = Http::start().await;
    let (mail_url, api_url) = (smtp.url(), api.url());
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        // No poll during the test: every wake counted is a commit's.
        c.delivery_poll_ms = 3_600_000;
        c.channels.email.smtp_url = Some(mail_url);
        c.channels.whatsapp.whatsapp_api_url = api_url;
        c.channels.whatsapp.whatsapp_token = Some("test-token".into());
        c.channels.whatsapp.whatsapp_phone_number_id = Some("1234567".into());
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_whatsapp(&hub, &ann, "+15550001111").await;
    let send = |channels: Value| {
        let (hub, admin, ann) = (&hub, &admin, &ann);
        async move {
            hub.send(
                admin,
                &[ann],
                json!({"title": "t", "message": "m", "channels": channels}),
            )
            .await;
        }
    };
    let (email, whatsapp) = wakes(&hub, &admin).await;

    // In the inbox only: nothing queued, no channel woken.
    send(json!(["websocket"])).await;
    assert_eq!(wakes(&hub, &admin).await, (email, whatsapp));

    // Email only: the email actor is woken (and sends it), WhatsApp is not.
    send(json!(["websocket", "email"])).await;
    assert_eq!(wakes(&hub, &admin).await, (email + 1, whatsapp));
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].to, ["ann@example.test"]);

    // WhatsApp only, then both.
    send(json!(["whatsapp"])).await;
    assert_eq!(wakes(&hub, &admin).await, (email + 1, whatsapp + 1));
    api.wait_for(1).await;
    send(json!(["email", "whatsapp"])).await;
    assert_eq!(wakes(&hub, &admin).await, (email + 2, whatsapp + 2));
    assert_eq!(smtp.wait_for(2).await.len(), 2);
}

crate::trials! {
    both: [
        lifecycle_mails_reach_the_right_inboxes,
        whatsapp_retries_with_backoff_and_refuses_permanently,
        webhooks_are_signed_and_private_destinations_refused,
        queued_mail_survives_a_restart_and_is_sent_once,
        sign_up_mails_are_coalesced,
        a_commit_wakes_only_the_channel_actors_it_queued_work_for,
    ],
    tests: [
        a_crashed_channel_actor_is_restarted_and_resumes,
        a_send_that_panics_frees_its_slot_and_is_sent_again,
        a_channel_actor_that_crashes_mid_send_does_not_send_again,
    ],
    sync: [],
}
