//! SMS end to end, through a Twilio Messages API stand-in (`sms_fakes.rs`): the number it goes
//! to and its template, segments, a number refused for good, throttling, preferences, routes
//! and escalation steps, and credentials the provider refuses.

use std::time::Duration;

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};
use tickethub_actors::routing::Channel;

use crate::delivery::{channel, quick, set_whatsapp, settled_deliveries};
use crate::harness::{eventually_ok, Backend, Crew, TestHub};
use crate::sms_fakes::{Refusal, Twilio, ACCOUNT_SID, FROM};
use crate::tickets::cast;

/// A hub sending SMS to the stand-in, with fast retries, then `tweak`.
async fn sms_hub(
    backend: &Backend,
    twilio: &Twilio,
    tweak: impl FnOnce(&mut tickethub::ServeConfig),
) -> TestHub {
    let twilio = twilio.clone();
    TestHub::start_with(backend, move |c| {
        quick(c);
        twilio.configure(c);
        tweak(c);
    })
    .await
}

/// `PATCH /api/users/me/` as `user`; answers the status and the body.
async fn patch_me(hub: &TestHub, user: &User, body: Value) -> (u16, Value) {
    hub.call(
        reqwest::Method::PATCH,
        "/api/users/me/",
        Some(&hub.token(user)),
        Some(body),
    )
    .await
}

/// A user's phone number set (or with `null` cleared) as an admin or the command line sets
/// it: verified at once (a number the user types for themselves waits for its code; see
/// `security.rs`). Answers them as they are now.
async fn set_phone(hub: &TestHub, user: &User, number: Value) -> Value {
    let changes = tickethub_actors::ports::ProfileChanges {
        addresses: vec![(
            tickethub_actors::routing::Channel::Sms,
            number.as_str().map(str::to_owned),
        )],
        ..Default::default()
    };
    crate::delivery::vouch(hub, user, changes).await;
    let me = hub.get_as(user, "/api/users/me/", 200).await;
    assert_eq!(me["phone_number"], number, "{me}");
    me
}

/// The id of a user's newest notification.
async fn newest(hub: &TestHub, user: &User) -> i64 {
    hub.get_as(user, "/api/notifications/", 200).await["results"][0]["id"]
        .as_i64()
        .expect("a notification")
}

/// The deliveries of one of a user's notifications.
async fn deliveries_of(hub: &TestHub, user: &User, id: i64) -> Vec<Value> {
    hub.get_as(user, &format!("/api/notifications/{id}/deliveries/"), 200)
        .await["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

fn no_sms(deliveries: &[Value]) -> bool {
    deliveries.iter().all(|d| d["channel"] != "sms")
}

/// An SMS goes to the user's phone number (not their WhatsApp number), through Twilio's
/// Messages API as Twilio checks it, with the type's template or the built-in one; the number
/// is validated, shown only to the user and admins, set by admins, cleared with `null`, and
/// taken at registration.
async fn an_sms_goes_to_the_phone_number_with_its_template(backend: Backend) {
    let twilio = Twilio::start().await;
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("general.sms.txt"),
        "[{{ notification_type }}] {{ title }} / {{ message }} (for {{ recipient_name }})\n",
    )
    .unwrap();
    let dir = templates.path().to_owned();
    let hub = sms_hub(&backend, &twilio, |c| c.templates_dir = Some(dir)).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    hub.project("SMS", &[&ann, &bob]).await;
    set_whatsapp(&hub, &ann, "+15550001111").await;

    // A number is in international format, like a WhatsApp number.
    for bad in ["555-0100", "15550002222", "+1555"] {
        let (status, body) = patch_me(&hub, &ann, json!({ "phone_number": bad })).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .starts_with("phone_number:"),
            "{body}"
        );
    }
    let me = set_phone(&hub, &ann, json!("+15550002222")).await;
    assert_eq!(me["phone_number_invalid_at"], Value::Null, "{me}");
    assert_eq!(me["whatsapp_number"], "+15550001111", "{me}");

    hub.send(&admin, &[&ann], json!({"channels": ["sms"]}))
        .await;
    let sent = twilio.wait_for(1).await;
    let sms = &sent[0];
    assert_eq!(sms.refused, None, "{sms:?}");
    assert_eq!(
        sms.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert_eq!(
        sms.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(sms.to(), "+15550002222");
    assert_eq!(sms.field("From"), Some(FROM));
    assert_eq!(
        sms.body(),
        "[general] Notice / Something happened (for ann display)"
    );
    assert_eq!(sms.field("StatusCallback"), None);
    let d = settled_deliveries(&hub, &ann, "general").await;
    let s = channel(&d, "sms");
    assert_eq!(
        (&s["status"], &s["attempts"], &s["address"]),
        (&json!("SENT"), &json!(1), &json!("+15550002222")),
        "{s}"
    );
    assert!(
        s["provider_message_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("SM") && id.len() == 34),
        "{s}"
    );
    assert!(d.iter().all(|x| x["channel"] != "whatsapp"), "{d:?}");
    // The channel counts the send once its row is settled: a moment after, under load.
    crate::harness::eventually("the SMS channel counts its send", || async {
        let status = hub.hub.channel_status(Channel::Sms).await.unwrap();
        (status.sent, status.circuit) == (1, "closed")
    })
    .await;

    // A type without a template of its own takes the built-in one.
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "notification_type": "deploy_done",
               "title": "Deploy", "message": "Version 2 is live."}),
    )
    .await;
    let sent = twilio.wait_for(2).await;
    assert_eq!(sent[1].body(), "Deploy: Version 2 is live.");

    // Another member sees ann's public fields only; admins see and change her number.
    let page = hub.get_as(&bob, "/api/users/", 200).await;
    let shown = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "ann")
        .unwrap_or_else(|| panic!("no ann in {page}"));
    assert!(shown.get("phone_number").is_none(), "{shown}");
    assert!(shown.get("phone_number_invalid_at").is_none(), "{shown}");
    let (status, changed) = hub
        .call(
            reqwest::Method::PATCH,
            &format!("/api/users/{}/", ann.id.0),
            Some(&hub.token(&admin)),
            Some(json!({"phone_number": "+15550003333"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["phone_number"], "+15550003333");
    let seen = hub
        .get_as(&admin, &format!("/api/users/{}/", ann.id.0), 200)
        .await;
    assert_eq!(seen["phone_number"], "+15550003333", "{seen}");

    // `null` clears it, and then no SMS is queued.
    set_phone(&hub, &ann, Value::Null).await;
    hub.send(&admin, &[&ann], json!({"channels": ["sms", "email"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert!(no_sms(&d), "{d:?}");
    assert_eq!(channel(&d, "email")["status"], "SENT", "{d:?}");
    assert_eq!(twilio.sent().len(), 2);

    // Registration takes a number too, checked the same way.
    let (status, carol) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "carol", "password": "carol-password", "phone_number": "+15550004444"}),
        )
        .await;
    assert_eq!(status, 201, "{carol}");
    assert_eq!(carol["phone_number"], "+15550004444", "{carol}");
    assert_eq!(carol["phone_number_invalid_at"], Value::Null, "{carol}");
    let (status, refused) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "dave", "password": "dave-password", "phone_number": "0044 20"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .starts_with("phone_number:"),
        "{refused}"
    );
}

/// One segment by default: a GSM-7 text is cut to 160 septets (an extension character taking
/// two), a text with an emoji to 70 UCS-2 code units; with `--sms-segments 3` a longer text
/// goes whole, as one concatenated message, up to 3 × 153 septets.
async fn long_texts_are_cut_to_the_segments_allowed(backend: Backend) {
    let twilio = Twilio::start().await;
    let hub = sms_hub(&backend, &twilio, |_| {}).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_phone(&hub, &ann, json!("+15550002222")).await;

    // GSM-7 has no `…`: the cut ends with three dots and stays in one 160-septet segment.
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "message": "a".repeat(300)}),
    )
    .await;
    let sent = twilio.wait_for(1).await;
    assert_eq!(sent[0].body(), format!("Notice: {}...", "a".repeat(149)));
    assert_eq!(sent[0].body().chars().count(), 160);
    // The euro sign is in GSM-7's extension table: two septets each.
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "message": "€".repeat(100)}),
    )
    .await;
    let sent = twilio.wait_for(2).await;
    assert_eq!(sent[1].body(), format!("Notice: {}...", "€".repeat(74)));
    // An emoji makes the text UCS-2: 70 code units, the emoji taking two.
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "message": format!("😀{}", "b".repeat(300))}),
    )
    .await;
    let sent = twilio.wait_for(3).await;
    assert_eq!(sent[2].body(), format!("Notice: 😀{}…", "b".repeat(59)));
    assert_eq!(sent[2].body().encode_utf16().count(), 70);
    // A short text goes as it is.
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "message": "Short and sweet"}),
    )
    .await;
    let sent = twilio.wait_for(4).await;
    assert_eq!(sent[3].body(), "Notice: Short and sweet");
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert_eq!(channel(&d, "sms")["status"], "SENT", "{d:?}");

    // Three segments: 408 septets go whole, a longer text is cut to 459.
    let wide = sms_hub(&backend, &twilio, |c| c.channels.sms.sms_segments = 3).await;
    let admin = wide.user("root", Role::Admin).await;
    let ann = wide.user("ann", Role::Client).await;
    set_phone(&wide, &ann, json!("+15550002222")).await;
    wide.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "message": "c".repeat(400)}),
    )
    .await;
    let sent = twilio.wait_for(5).await;
    assert_eq!(sent[4].body(), format!("Notice: {}", "c".repeat(400)));
    wide.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "message": "d".repeat(1000)}),
    )
    .await;
    let sent = twilio.wait_for(6).await;
    assert_eq!(sent[5].body(), format!("Notice: {}...", "d".repeat(448)));
    assert_eq!(sent[5].body().chars().count(), 459);
    assert!(sent.iter().all(|s| s.refused.is_none()), "{sent:?}");
}

/// Twilio's 21211 (not a valid phone number) fails the SMS at once, marks the number, fails
/// the SMS still queued to it without sending them, and queues none for later notifications;
/// setting a number again makes SMS work again.
async fn an_invalid_number_fails_at_once_and_gets_no_more_sms(backend: Backend) {
    let twilio = Twilio::start().await;
    // A retried SMS waits a minute: it is still queued when the number is refused.
    let hub = sms_hub(&backend, &twilio, |c| {
        c.delivery_backoff_ms = 60_000;
        c.delivery_backoff_max_ms = 60_000;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_phone(&hub, &ann, json!("+15550001234")).await;
    twilio.script([
        Refusal::unavailable(),
        Refusal::invalid_number("+15550001234"),
    ]);

    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "title": "First"}),
    )
    .await;
    let first = newest(&hub, &ann).await;
    eventually_ok("the first SMS waits for its retry", || async {
        let d = deliveries_of(&hub, &ann, first).await;
        let s = channel(&d, "sms");
        if s["status"] == "QUEUED" && s["attempts"] == 1 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;

    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "title": "Second"}),
    )
    .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let s = channel(&d, "sms");
    assert_eq!(
        (&s["status"], &s["attempts"]),
        (&json!("FAILED"), &json!(1)),
        "{s}"
    );
    let error = s["last_error"].as_str().unwrap();
    assert!(
        error.contains("Twilio 21211") && error.contains("marked invalid"),
        "{error}"
    );
    // The SMS that waited for its retry failed with it, and was not sent again.
    let d = deliveries_of(&hub, &ann, first).await;
    let s = channel(&d, "sms");
    assert_eq!(
        (&s["status"], &s["attempts"]),
        (&json!("FAILED"), &json!(1)),
        "{s}"
    );
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("refused for good"),
        "{s}"
    );
    assert_eq!(twilio.sent().len(), 2);
    let me = hub.get_as(&ann, "/api/users/me/", 200).await;
    assert_eq!(me["phone_number"], "+15550001234", "{me}");
    assert!(me["phone_number_invalid_at"].is_string(), "{me}");
    // The number is on the suppression list, with the provider's words.
    let listed = hub
        .get_as(&admin, "/api/admin/suppressions/?channel=sms", 200)
        .await;
    assert_eq!(listed["results"][0]["address"], "+15550001234", "{listed}");
    assert_eq!(listed["results"][0]["source"], "provider", "{listed}");

    // Later notifications queue no SMS.
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "title": "Third"}),
    )
    .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert!(no_sms(&d), "{d:?}");

    // A new number is tried again.
    let me = set_phone(&hub, &ann, json!("+15550005678")).await;
    assert_eq!(me["phone_number_invalid_at"], Value::Null, "{me}");
    hub.send(
        &admin,
        &[&ann],
        json!({"channels": ["sms"], "title": "Fourth"}),
    )
    .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let s = channel(&d, "sms");
    assert_eq!(
        (&s["status"], &s["attempts"], &s["address"]),
        (&json!("SENT"), &json!(1), &json!("+15550005678")),
        "{s}"
    );
    let sent = twilio.wait_for(3).await;
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].to(), "+15550005678");
    assert!(sent[2].body().starts_with("Fourth: "), "{:?}", sent[2]);
}

/// A 429 is retried after its `Retry-After`, held to `--delivery-backoff-max-ms`, then sent.
async fn a_throttled_sms_is_retried_then_delivered(backend: Backend) {
    let twilio = Twilio::start().await;
    let hub = sms_hub(&backend, &twilio, |_| {}).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_phone(&hub, &ann, json!("+15550002222")).await;
    // An hour, far past the test's patience: the cap is what lets the retry come in time.
    twilio.script([Refusal::throttled("3600")]);
    hub.send(&admin, &[&ann], json!({"channels": ["sms"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let s = channel(&d, "sms");
    assert_eq!(
        (&s["status"], &s["attempts"]),
        (&json!("SENT"), &json!(2)),
        "{s}"
    );
    let sent = twilio.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        (sent[0].refused, sent[1].refused),
        (Some(20429), None),
        "{sent:?}"
    );
    assert_eq!(sent[0].body(), sent[1].body());
    // `Retry-After: 3600` is held to the longest backoff, 200 ms; the retry waited that long.
    let gap = sent[1].at.duration_since(sent[0].at);
    assert!(gap >= Duration::from_millis(200), "retried after {gap:?}");
    let me = hub.get_as(&ann, "/api/users/me/", 200).await;
    assert_eq!(me["phone_number_invalid_at"], Value::Null, "{me}");
}

/// A user switches SMS off like email (for every type, or for one), and nothing is queued.
async fn preferences_switch_sms_off(backend: Backend) {
    let twilio = Twilio::start().await;
    let hub = sms_hub(&backend, &twilio, |_| {}).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_phone(&hub, &ann, json!("+15550002222")).await;
    let put = |body: Value| {
        let (hub, ann) = (&hub, &ann);
        async move {
            let (status, prefs) = hub
                .call(
                    reqwest::Method::PUT,
                    "/api/notifications/preferences/",
                    Some(&hub.token(ann)),
                    Some(body),
                )
                .await;
            assert_eq!(status, 200, "{prefs}");
            prefs
        }
    };
    let prefs = hub
        .get_as(&ann, "/api/notifications/preferences/", 200)
        .await;
    assert_eq!(prefs["channels"]["sms"], true, "{prefs}");
    let prefs = put(json!({"channels": {"sms": false}})).await;
    assert_eq!(
        (&prefs["channels"]["sms"], &prefs["channels"]["email"]),
        (&json!(false), &json!(true)),
        "{prefs}"
    );
    hub.send(&admin, &[&ann], json!({"channels": ["sms", "email"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert!(no_sms(&d), "{d:?}");
    assert_eq!(channel(&d, "email")["status"], "SENT", "{d:?}");

    // Back on for one type, which wins over the switch for every type.
    let prefs = put(json!({"types": {"general": {"sms": true}}})).await;
    assert_eq!(prefs["types"]["general"]["sms"], true, "{prefs}");
    hub.send(&admin, &[&ann], json!({"channels": ["sms"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    assert_eq!(channel(&d, "sms")["status"], "SENT", "{d:?}");
    assert_eq!(twilio.sent().len(), 1);
}

/// A routing file whose `ticket_opened` goes out by SMS, and whose unread CRITICAL assignments
/// escalate to SMS after a second.
fn sms_routing() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        r#"
[ticket_opened]
recipients = ["creator"]
channels = ["websocket", "sms"]

[ticket_assigned]
recipients = ["newly_assigned"]
channels = ["websocket"]

[[escalation]]
name = "unread-critical-by-sms"
events = ["ticket_assigned"]
when = { priority = ["CRITICAL"] }
steps = [ { after = "1s", unless = "read", channels = ["sms"] } ]
"#,
    )
    .unwrap();
    file
}

/// `sms` in a route and in an escalation step: the creator hears of the opening by SMS, and the
/// developer who does not read a critical assignment gets it by SMS a second later, as the
/// notification's timeline shows.
async fn routes_and_escalation_steps_send_sms(backend: Backend) {
    let twilio = Twilio::start().await;
    let file = sms_routing();
    let path = file.path().to_owned();
    let hub = sms_hub(&backend, &twilio, |c| {
        c.routing = Some(path);
        c.escalation_poll_ms = 100;
    })
    .await;
    let c = cast(&hub).await;
    set_phone(&hub, &c.c1, json!("+15550001111")).await;
    set_phone(&hub, &c.d1, json!("+15550003333")).await;
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1],
    };
    hub.ticket_in(
        "ASSIGNED",
        &crew,
        json!({"project": c.project, "title": "Checkout is down", "description": "500s",
               "priority": "CRITICAL", "category": "BUG"}),
    )
    .await;
    let sent = twilio.wait_for(1).await;
    assert_eq!(sent[0].to(), "+15550001111", "{sent:?}");
    assert!(sent[0].body().contains("Opened"), "{sent:?}");
    let sent = twilio.wait_for(2).await;
    assert_eq!(sent[1].to(), "+15550003333", "{sent:?}");
    assert!(sent[1].body().contains("Assigned"), "{sent:?}");

    let note = hub
        .get_as(
            &c.d1,
            "/api/notifications/?notification_type=ticket_assigned",
            200,
        )
        .await["results"][0]["id"]
        .as_i64()
        .unwrap();
    let timeline = eventually_ok("the step and its SMS are in the timeline", || async {
        let timeline = hub
            .get_as(&c.d1, &format!("/api/notifications/{note}/timeline/"), 200)
            .await;
        let events = timeline["events"].as_array().unwrap().clone();
        let fired = events.iter().any(|e| e["event"] == "escalation_fired");
        let attempt = events
            .iter()
            .any(|e| e["event"] == "delivery_attempt" && e["channel"] == "sms");
        if fired && attempt {
            Ok(events)
        } else {
            Err(timeline.to_string())
        }
    })
    .await;
    let fired = timeline
        .iter()
        .find(|e| e["event"] == "escalation_fired")
        .unwrap();
    assert!(fired["detail"].as_str().unwrap().contains("sms"), "{fired}");
    let attempt = timeline
        .iter()
        .find(|e| e["event"] == "delivery_attempt")
        .unwrap();
    assert_eq!(attempt["outcome"], "sent", "{attempt}");
}

/// Credentials Twilio refuses (401, 20003) fail the message, and leave the number as it is.
async fn refused_credentials_fail_the_message_and_keep_the_number(backend: Backend) {
    let twilio = Twilio::start().await;
    let hub = sms_hub(&backend, &twilio, |c| {
        c.channels.sms.twilio_auth_token = Some("not-the-auth-token".into());
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    set_phone(&hub, &ann, json!("+15550002222")).await;
    hub.send(&admin, &[&ann], json!({"channels": ["sms"]}))
        .await;
    let d = settled_deliveries(&hub, &ann, "general").await;
    let s = channel(&d, "sms");
    assert_eq!(
        (&s["status"], &s["attempts"]),
        (&json!("FAILED"), &json!(1)),
        "{s}"
    );
    let error = s["last_error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 401") && error.contains("Twilio 20003"),
        "{error}"
    );
    assert!(!error.contains("marked invalid"), "{error}");
    assert_eq!(twilio.sent()[0].refused, Some(20003));
    let me = hub.get_as(&ann, "/api/users/me/", 200).await;
    assert_eq!(me["phone_number_invalid_at"], Value::Null, "{me}");
    // The next notification is tried again.
    hub.send(&admin, &[&ann], json!({"channels": ["sms"]}))
        .await;
    twilio.wait_for(2).await;
}

crate::trials! {
    both: [
        an_sms_goes_to_the_phone_number_with_its_template,
        long_texts_are_cut_to_the_segments_allowed,
        an_invalid_number_fails_at_once_and_gets_no_more_sms,
        a_throttled_sms_is_retried_then_delivered,
        preferences_switch_sms_off,
        routes_and_escalation_steps_send_sms,
        refused_credentials_fail_the_message_and_keep_the_number,
    ],
    tests: [],
    sync: [],
}
