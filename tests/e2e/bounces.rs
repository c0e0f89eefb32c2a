//! Email bounces and complaints end to end, over real SMTP: every notification email goes out
//! with a return path signed for its delivery; a delivery status notification (RFC 3464) or an
//! abuse report (RFC 5965) sent back to it from the null reverse path, as mail servers send
//! them, reaches the hub's listener. A hard bounce fails the delivery with its code, marks the
//! address invalid and puts it on the suppression list; a send to a listed address is
//! suppressed with the reason; an admin takes it off and sends resume.

use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::delivery::quick;
use crate::fakes::{Mail, Smtp};
use crate::harness::{eventually_ok, Backend, TestHub};

/// The domain the listener takes mail at.
const DOMAIN: &str = "replies.example.test";

/// Sends `message` to `to` from the null reverse path, as a mail server sends a bounce;
/// answers the listener's code and text.
async fn bounce_to(hub: &TestHub, to: &str, message: &str) -> (u16, String) {
    let addr = hub.smtp_addr.expect("the SMTP listener is on");
    let client = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .build();
    let envelope = Envelope::new(None, vec![to.parse().unwrap()]).unwrap();
    match client.send_raw(&envelope, message.as_bytes()).await {
        Ok(response) => (
            u16::from(response.code()),
            response.message().collect::<Vec<_>>().join(" "),
        ),
        Err(e) => (e.status().map_or(0, u16::from), e.to_string()),
    }
}

/// A delivery status notification as Postfix writes one, for `recipient`.
fn dsn(to: &str, recipient: &str, action: &str, status: &str, diagnostic: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.test (Mail Delivery System)\r\n\
         To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Date: Fri, 27 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"=_B\"\r\n\r\n\
         --=_B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         This is the mail system at host mx.example.test.\r\n\r\n\
         --=_B\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.example.test\r\nArrival-Date: Fri, 27 Nov 2026 08:59:00 +0000\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n\
         Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx.example.test\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\r\n\
         --=_B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
         From: tickethub <noreply@tickethub.local>\r\nTo: {recipient}\r\nSubject: a notification\r\n\r\n\
         --=_B--\r\n"
    )
}

/// An abuse report (ARF) as a mailbox provider's feedback loop sends one.
fn complaint(to: &str, recipient: &str) -> String {
    format!(
        "From: fbl@isp.example.test\r\nTo: {to}\r\nSubject: FW: a notification\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"=_F\"\r\n\r\n\
         --=_F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
         --=_F\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n\
         Original-Rcpt-To: <{recipient}>\r\n\r\n\
         --=_F\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: a notification\r\n\r\n\
         --=_F--\r\n"
    )
}

/// The newest mail to `address` whose text holds `title`, once it arrives.
async fn mail_to(smtp: &Smtp, address: &str, title: &str) -> Mail {
    eventually_ok(&format!("{title} reaches {address}"), || async {
        smtp.mails()
            .into_iter()
            .rev()
            .find(|m| m.to.contains(&address.to_owned()) && m.subject().contains(title))
            .ok_or_else(|| {
                format!(
                    "{:?}",
                    smtp.mails().iter().map(Mail::subject).collect::<Vec<_>>()
                )
            })
    })
    .await
}

/// The email delivery of a user's newest notification, once it is `status`.
async fn email_delivery(hub: &TestHub, user: &User, status: &str) -> Value {
    eventually_ok(
        &format!("{}'s email is {status}", user.username),
        || async {
            let page = hub.get_as(user, "/api/notifications/", 200).await;
            let id = page["results"][0]["id"].as_i64().ok_or("no notification")?;
            let d = hub
                .get_as(user, &format!("/api/notifications/{id}/deliveries/"), 200)
                .await;
            let email = d["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["channel"] == "email")
                .cloned()
                .ok_or_else(|| format!("no email in {d}"))?;
            if email["status"] == status {
                Ok(email)
            } else {
                Err(format!("{email}"))
            }
        },
    )
    .await
}

/// The channels a user's newest notification was delivered on.
async fn channels_of_newest(hub: &TestHub, user: &User) -> Vec<String> {
    let page = hub.get_as(user, "/api/notifications/", 200).await;
    let id = page["results"][0]["id"].as_i64().unwrap();
    let d = hub
        .get_as(user, &format!("/api/notifications/{id}/deliveries/"), 200)
        .await;
    d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn delete_as(hub: &TestHub, user: &User, path: &str) -> u16 {
    let token = hub.token(user);
    hub.call(reqwest::Method::DELETE, path, Some(&token), None)
        .await
        .0
}

/// Ann's address bounces hard (5.1.1): her delivery fails with the code and the server's
/// words on the timeline, the address is invalid and on the list (once, however often the
/// bounce comes); no email is queued to it, and once an admin sets it again a send to it is
/// suppressed with the reason; taken off the list (audited), mail reaches her again. Bob's
/// delayed report changes nothing, his complaint lists him; a forged return path is refused
/// at `RCPT`, an out-of-office answer is taken and left.
async fn a_hard_bounce_suppresses_the_address_until_an_admin_takes_it_off(backend: Backend) {
    let smtp = Smtp::start().await;
    let receiver = crate::fakes::Http::start().await;
    let hub = TestHub::start_with(&backend, |c| {
        quick(c);
        c.channels.webhook.webhook_allow_private = true;
        c.channels.email.smtp_url = Some(smtp.url());
        c.channels.email.inbound_smtp_bind = Some("127.0.0.1:0".parse().unwrap());
        c.channels.email.inbound_email_domain = Some(DOMAIN.into());
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ann = hub.user("ann", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    let cy = hub.user("cy", Role::Developer).await;
    let dee = hub.user("dee", Role::Developer).await;
    let (ann_mail, bob_mail) = ("ann@example.test", "bob@example.test");
    // An event webhook hears deliveries that fail, a bounce's too.
    hub.post_as(
        &admin,
        "/api/admin/webhooks/",
        json!({"url": receiver.url(), "events": ["delivery.failed"]}),
        201,
    )
    .await;
    hub.send(
        &admin,
        &[&ann, &bob, &cy, &dee],
        json!({"title": "Deploy at five", "channels": ["email"]}),
    )
    .await;
    let cy_path = mail_to(&smtp, "cy@example.test", "Deploy at five")
        .await
        .from;
    let dee_mail = "dee@example.test";
    let dee_path = mail_to(&smtp, dee_mail, "Deploy at five").await.from;
    let to_ann = mail_to(&smtp, ann_mail, "Deploy at five").await;
    let to_bob = mail_to(&smtp, bob_mail, "Deploy at five").await;
    // Each message's return path is its own, at the listener's domain.
    for (mail, user) in [(&to_ann, &ann), (&to_bob, &bob)] {
        let prefix = format!(
            "bounce+{}-{}-",
            email_delivery(&hub, user, "SENT").await["id"],
            user.id.0
        );
        assert!(
            mail.from.starts_with(&prefix) && mail.from.ends_with(&format!("@{DOMAIN}")),
            "{} for {prefix}",
            mail.from
        );
    }
    let (ann_path, bob_path) = (to_ann.from.clone(), to_bob.from.clone());

    // A forged return path (bob's user in ann's token) is refused; an out-of-office answer is
    // taken and changes nothing.
    let forged = ann_path.replacen(&format!("-{}-", ann.id.0), &format!("-{}-", bob.id.0), 1);
    let (code, text) = bounce_to(
        &hub,
        &forged,
        &dsn(&forged, ann_mail, "failed", "5.1.1", "550 x"),
    )
    .await;
    assert_eq!(code, 550, "{text}");
    let away = format!(
        "From: {ann_mail}\r\nTo: {ann_path}\r\nSubject: Out of office\r\n\r\nBack Monday.\r\n"
    );
    let (code, text) = bounce_to(&hub, &ann_path, &away).await;
    assert_eq!(code, 250, "{text}");
    let listed = hub.get_as(&admin, "/api/admin/suppressions/", 200).await;
    assert_eq!(listed["count"], 0, "{listed}");

    // The hard bounce, twice (a server that did not hear the answer sends it again).
    let report = dsn(
        &ann_path,
        ann_mail,
        "failed",
        "5.1.1",
        "550 5.1.1 <ann@example.test>: Recipient address rejected: User unknown",
    );
    for _ in 0..2 {
        let (code, text) = bounce_to(&hub, &ann_path, &report).await;
        assert_eq!(code, 250, "{text}");
    }
    let failed = email_delivery(&hub, &ann, "FAILED").await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("bounced (error 5.1.1)"),
        "{failed}"
    );
    let told = receiver.wait_for(1).await;
    assert_eq!(told.len(), 1, "{told:?}");
    let data = &told[0].body["data"];
    assert_eq!(
        (&data["delivery_id"], &data["receipt"], &data["channel"]),
        (&failed["id"], &json!("bounced"), &json!("email")),
        "{data}"
    );
    let id = hub.get_as(&ann, "/api/notifications/", 200).await["results"][0]["id"].clone();
    let receipts = crate::oncall::timeline_events(&hub, &admin, &id, "delivery_receipt").await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(
        (
            &receipts[0]["status"],
            &receipts[0]["error_code"],
            &receipts[0]["channel"]
        ),
        (&json!("bounced"), &json!("5.1.1"), &json!("email")),
        "{receipts:?}"
    );
    assert!(
        receipts[0]["detail"]
            .as_str()
            .unwrap()
            .contains("User unknown"),
        "{receipts:?}"
    );
    let me = hub.get_as(&ann, "/api/users/me/", 200).await;
    assert!(me["addresses"]["email"]["invalid_at"].is_string(), "{me}");
    let listed = hub
        .get_as(&admin, "/api/admin/suppressions/?channel=email", 200)
        .await;
    assert_eq!(listed["count"], 1, "{listed}");
    let entry = listed["results"][0].clone();
    assert_eq!(
        (&entry["address"], &entry["source"], &entry["delivery_id"]),
        (&json!(ann_mail), &json!("bounce"), &failed["id"]),
        "{entry}"
    );
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .starts_with("bounced: 5.1.1 (smtp; 550"),
        "{entry}"
    );
    let found = hub
        .get_as(
            &admin,
            "/api/admin/suppressions/?address=ANN@example.test",
            200,
        )
        .await;
    assert_eq!(found["count"], 1, "{found}");
    // Only admins read or change the list.
    hub.get_as(&ann, "/api/admin/suppressions/", 403).await;
    let path = format!("/api/admin/suppressions/{}/", entry["id"]);
    assert_eq!(delete_as(&hub, &ann, &path).await, 403);
    let none = hub
        .get_as(&admin, "/api/admin/suppressions/?channel=pigeon", 200)
        .await;
    assert_eq!(none["count"], 0, "{none}");
    assert_eq!(
        delete_as(&hub, &admin, "/api/admin/suppressions/x/").await,
        404
    );

    // Nothing more is queued to the invalid address.
    hub.send(
        &admin,
        &[&ann],
        json!({"title": "Second", "channels": ["email"]}),
    )
    .await;
    crate::harness::eventually_ok("ann's second notification is stored", || async {
        let page = hub.get_as(&ann, "/api/notifications/", 200).await;
        (page["results"][0]["title"] == "Second")
            .then_some(())
            .ok_or(page.to_string())
    })
    .await;
    assert!(!channels_of_newest(&hub, &ann)
        .await
        .contains(&"email".to_owned()));
    // Set again by an admin, the address is valid for routing, but the list still stops the
    // send, and says why.
    let changes = tickethub_actors::ports::ProfileChanges {
        addresses: vec![(
            tickethub_actors::routing::Channel::Email,
            Some(ann_mail.into()),
        )],
        ..Default::default()
    };
    crate::delivery::vouch(&hub, &ann, changes).await;
    hub.send(
        &admin,
        &[&ann],
        json!({"title": "Third", "channels": ["email"]}),
    )
    .await;
    let suppressed = email_delivery(&hub, &ann, "SUPPRESSED").await;
    assert!(
        suppressed["last_error"]
            .as_str()
            .unwrap()
            .contains("on the suppression list: bounced: 5.1.1"),
        "{suppressed}"
    );
    // Bob: a delay changes nothing; a complaint lists him.
    let (code, _) = bounce_to(
        &hub,
        &bob_path,
        &dsn(
            &bob_path,
            bob_mail,
            "delayed",
            "4.4.1",
            "connection timed out",
        ),
    )
    .await;
    assert_eq!(code, 250);
    let (code, _) = bounce_to(&hub, &bob_path, &complaint(&bob_path, bob_mail)).await;
    assert_eq!(code, 250);
    let bob_id = hub.get_as(&bob, "/api/notifications/", 200).await["results"][0]["id"].clone();
    let receipts = crate::oncall::timeline_events(&hub, &admin, &bob_id, "delivery_receipt").await;
    let words: Vec<&str> = receipts
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["delayed", "complained"], "{receipts:?}");
    assert_eq!(email_delivery(&hub, &bob, "SENT").await["status"], "SENT");
    let listed = hub.get_as(&admin, "/api/admin/suppressions/", 200).await;
    assert_eq!(listed["count"], 2, "{listed}");
    assert_eq!(listed["results"][0]["address"], bob_mail, "{listed}");
    assert_eq!(listed["results"][0]["source"], "complaint", "{listed}");
    // Bob typing his address again (in other case) gets no code to it, and is told why.
    let token = hub.token(&bob);
    let (code, me) = hub
        .call(
            reqwest::Method::PATCH,
            "/api/users/me/",
            Some(&token),
            Some(json!({"email": "Bob@Example.test"})),
        )
        .await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(me["addresses"]["email"]["verified_at"], Value::Null, "{me}");
    let (code, said) = hub
        .post(
            "/api/users/me/verify/send/",
            Some(&token),
            json!({"channel": "email"}),
        )
        .await;
    assert_eq!(code, 400, "{said}");
    assert!(said.to_string().contains("suppression list"), "{said}");

    // A hard bounce about another address (cy's mailbox forwards to one that is gone) fails
    // cy's delivery, and leaves cy's address alone.
    let forwarded = dsn(
        &cy_path,
        "cy@elsewhere.example",
        "failed",
        "5.1.1",
        "550 no such user",
    );
    let (code, _) = bounce_to(&hub, &cy_path, &forwarded).await;
    assert_eq!(code, 250);
    email_delivery(&hub, &cy, "FAILED").await;
    let listed = hub.get_as(&admin, "/api/admin/suppressions/", 200).await;
    assert_eq!(listed["count"], 2, "{listed}");
    let me = hub.get_as(&cy, "/api/users/me/", 200).await;
    assert_eq!(me["addresses"]["email"]["invalid_at"], Value::Null, "{me}");

    // Taken off the list (audited): mail reaches ann again.
    assert_eq!(delete_as(&hub, &admin, &path).await, 204);
    assert_eq!(delete_as(&hub, &admin, &path).await, 404);
    let audit = hub
        .get_as(&admin, "/api/admin/audit/?action=suppression.removed", 200)
        .await;
    assert_eq!(audit["count"], 1, "{audit}");
    let audit = hub
        .get_as(&admin, "/api/admin/audit/?action=address.suppressed", 200)
        .await;
    assert_eq!(audit["count"], 2, "{audit}");
    hub.send(
        &admin,
        &[&ann],
        json!({"title": "Fourth", "channels": ["email"]}),
    )
    .await;
    mail_to(&smtp, ann_mail, "Fourth").await;
    email_delivery(&hub, &ann, "SENT").await;

    // Dee's mailbox is full (a soft bounce: nothing listed), then gone (a hard one: listed).
    let full = dsn(
        &dee_path,
        dee_mail,
        "failed",
        "4.2.2",
        "452 4.2.2 mailbox full",
    );
    assert_eq!(bounce_to(&hub, &dee_path, &full).await.0, 250);
    let listed = hub
        .get_as(
            &admin,
            "/api/admin/suppressions/?address=dee@example.test",
            200,
        )
        .await;
    assert_eq!(listed["count"], 0, "{listed}");
    let gone = dsn(
        &dee_path,
        dee_mail,
        "failed",
        "5.1.1",
        "550 5.1.1 no such user",
    );
    assert_eq!(bounce_to(&hub, &dee_path, &gone).await.0, 250);
    let listed = hub
        .get_as(
            &admin,
            "/api/admin/suppressions/?address=dee@example.test",
            200,
        )
        .await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["results"][0]["source"], "bounce", "{listed}");
    let me = hub.get_as(&dee, "/api/users/me/", 200).await;
    assert!(me["addresses"]["email"]["invalid_at"].is_string(), "{me}");
}

crate::trials! {
    both: [a_hard_bounce_suppresses_the_address_until_an_admin_takes_it_off],
    tests: [],
    sync: [],
}
