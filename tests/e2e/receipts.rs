//! SMS delivery receipts end to end: Twilio's status callbacks, signed as Twilio signs them,
//! to the `StatusCallback` the hub gives each message: a receipt on the notification's
//! timeline, an undelivered message failing its delivery with Twilio's code, and a code that
//! says the number cannot take SMS marking it invalid.

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::delivery::{channel, quick, settled_deliveries};
use crate::harness::{Backend, TestHub};
use crate::sms_fakes::{Twilio, AUTH_TOKEN};

/// The hub's address as Twilio calls it (`--public-url`).
const PUBLIC: &str = "https://hub.example.com";

/// Twilio's status callback for a message: its status, and the error code if any; signed
/// with `token` (`None`: unsigned). Answers the status.
async fn callback(
    hub: &TestHub,
    sid: &str,
    status: &str,
    error: Option<&str>,
    token: Option<&str>,
) -> u16 {
    let path = tickethub::http::inbound::TWILIO_STATUS;
    let mut fields: Vec<(String, String)> = [
        ("AccountSid", crate::sms_fakes::ACCOUNT_SID),
        ("From", crate::sms_fakes::FROM),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "+15005550099"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(code) = error {
        fields.push(("ErrorCode".into(), code.into()));
    }
    let mut request = reqwest::Client::new()
        .post(hub.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&fields).unwrap());
    if let Some(token) = token {
        let signature =
            tickethub::http::inbound::twilio_signature(token, &format!("{PUBLIC}{path}"), &fields);
        request = request.header("x-twilio-signature", signature);
    }
    request.send().await.unwrap().status().as_u16()
}

/// The SMS delivery of a user's newest notification of `kind`, once settled.
async fn sms_of(hub: &TestHub, user: &User, kind: &str) -> Value {
    channel(&settled_deliveries(hub, user, kind).await, "sms").clone()
}

/// Each SMS names the hub's receipt URL; a signed `delivered` shows on the timeline; a signed
/// `undelivered` with 30005 (unknown destination) fails the delivery and marks the number
/// invalid, while 30003 (handset off) only fails it; an unsigned callback is refused, an
/// interim status and an unknown message change nothing.
async fn twilio_receipts_reach_the_timeline_and_fail_what_was_not_delivered(backend: Backend) {
    let twilio = Twilio::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        twilio.configure(c);
        c.public_url = Some(PUBLIC.into());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let mut people = Vec::new();
    for (name, number) in [
        ("ann", "+15005550101"),
        ("bob", "+15005550102"),
        ("cy", "+15005550103"),
    ] {
        let user = hub.user(name, Role::Developer).await;
        let changes = tickethub_actors::ports::ProfileChanges {
            addresses: vec![(tickethub_actors::routing::Channel::Sms, Some(number.into()))],
            ..Default::default()
        };
        crate::delivery::vouch(&hub, &user, changes).await;
        people.push(user);
    }
    let (ann, bob, cy) = (&people[0], &people[1], &people[2]);
    hub.send(
        &admin,
        &[ann, bob, cy],
        json!({"notification_type": "heads_up", "title": "Deploy at 5", "channels": ["sms"]}),
    )
    .await;
    let sent = twilio.wait_for(3).await;
    for s in &sent {
        assert_eq!(
            s.field("StatusCallback"),
            Some(format!("{PUBLIC}/api/inbound/twilio/status/").as_str())
        );
    }
    let mut sid = std::collections::HashMap::new();
    for user in [ann, bob, cy] {
        let d = sms_of(&hub, user, "heads_up").await;
        assert_eq!(d["status"], "SENT", "{d}");
        let number = d["address"].as_str().unwrap().to_owned();
        let s = twilio
            .sent()
            .into_iter()
            .find(|s| s.to() == number)
            .unwrap();
        sid.insert(
            user.username.clone(),
            s.sid.clone().expect("the message's sid"),
        );
    }

    // Refused unsigned; an interim status and an unknown message are taken and change nothing.
    assert_eq!(
        callback(&hub, &sid["ann"], "delivered", None, None).await,
        403
    );
    assert_eq!(
        callback(&hub, &sid["ann"], "delivered", None, Some("not-the-token")).await,
        403
    );
    assert_eq!(
        callback(&hub, &sid["ann"], "sent", None, Some(AUTH_TOKEN)).await,
        204
    );
    assert_eq!(
        callback(
            &hub,
            "SM00000000000000000000000000000000",
            "delivered",
            None,
            Some(AUTH_TOKEN)
        )
        .await,
        204
    );

    // Delivered: on the timeline, the delivery stays sent.
    assert_eq!(
        callback(&hub, &sid["ann"], "delivered", None, Some(AUTH_TOKEN)).await,
        204
    );
    let id = hub.get_as(ann, "/api/notifications/", 200).await["results"][0]["id"].clone();
    let receipts = crate::oncall::timeline_events(&hub, &admin, &id, "delivery_receipt").await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0]["status"], "delivered");
    assert_eq!(receipts[0]["channel"], "sms");
    assert_eq!(sms_of(&hub, ann, "heads_up").await["status"], "SENT");

    // Undelivered: the delivery fails with the code; 30005 marks the number, 30003 does not.
    assert_eq!(
        callback(
            &hub,
            &sid["bob"],
            "undelivered",
            Some("30005"),
            Some(AUTH_TOKEN)
        )
        .await,
        204
    );
    assert_eq!(
        callback(
            &hub,
            &sid["cy"],
            "undelivered",
            Some("30003"),
            Some(AUTH_TOKEN)
        )
        .await,
        204
    );
    for (user, marked) in [(bob, true), (cy, false)] {
        let d = sms_of(&hub, user, "heads_up").await;
        assert_eq!(d["status"], "FAILED", "{d}");
        assert!(
            d["last_error"].as_str().unwrap().contains("undelivered"),
            "{d}"
        );
        let me = hub.get_as(user, "/api/users/me/", 200).await;
        assert_eq!(
            me["phone_number_invalid_at"].is_string(),
            marked,
            "{}: {me}",
            user.username
        );
        let list = hub.get_as(user, "/api/notifications/", 200).await;
        assert_eq!(list["results"][0]["status"], "FAILED", "{list}");
    }
    // 30005 put bob's number on the suppression list, with the code; 30003 did not.
    let listed = hub
        .get_as(&admin, "/api/admin/suppressions/?channel=sms", 200)
        .await;
    assert_eq!(listed["count"], 1, "{listed}");
    let entry = &listed["results"][0];
    assert_eq!(
        (&entry["address"], &entry["source"]),
        (&json!("+15005550102"), &json!("provider")),
        "{entry}"
    );
    assert!(
        entry["reason"].as_str().unwrap().contains("30005"),
        "{entry}"
    );
    // Twilio sending a callback again keeps one receipt.
    assert_eq!(
        callback(
            &hub,
            &sid["bob"],
            "undelivered",
            Some("30005"),
            Some(AUTH_TOKEN)
        )
        .await,
        204
    );
    let id = hub.get_as(bob, "/api/notifications/", 200).await["results"][0]["id"].clone();
    let receipts = crate::oncall::timeline_events(&hub, &admin, &id, "delivery_receipt").await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
}

crate::trials! {
    both: [twilio_receipts_reach_the_timeline_and_fail_what_was_not_delivered],
    tests: [],
    sync: [],
}
