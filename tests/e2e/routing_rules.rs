//! Routing rules, end to end: whom an escalation step's `also` tells (super admins, the
//! ticket's creator, its assignees), policies limited to categories and priorities, and the
//! trace's reasons for leaving a user out of an event or a channel unused (`inactive`,
//! `no_address`, `no_transport`). The hub runs on port 0 with a real SMTP server (Node) and a
//! WhatsApp Cloud API stand-in.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tickethub_actors::domain::User;

use crate::delivery::set_whatsapp;
use crate::fakes::{Http, Smtp};
use crate::harness::{eventually, eventually_some, Backend, Crew, TestHub};
use crate::tickets::{cast, create_ticket, Cast};
mod trace;
use trace::*;

/// Every ticket event in the app only: with these routes, each email and WhatsApp message a
/// hub sends comes from an escalation step.
const IN_APP_ONLY: &str = r#"
[ticket_created]
recipients = ["admins"]
channels = ["websocket"]

[ticket_opened]
recipients = ["creator"]
channels = ["websocket"]

[ticket_assigned]
recipients = ["newly_assigned"]
channels = ["websocket"]

[comment_added]
recipients = ["creator"]
channels = ["websocket"]
"#;

/// A routing file with this text.
fn routing_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// A hub running the routing file, with mail going to `smtp` if given (else to files nobody
/// reads) and WhatsApp (as text) to the stand-in if given; without `api` the hub has no
/// WhatsApp transport.
async fn hub_with(
    backend: &Backend,
    file: &tempfile::NamedTempFile,
    smtp: Option<&Smtp>,
    api: Option<&Http>,
) -> TestHub {
    let path = file.path().to_owned();
    let smtp_url = smtp.map(Smtp::url);
    let api_url = api.map(Http::url);
    TestHub::start_with(backend, move |c| {
        c.routing = Some(path);
        c.escalation_poll_ms = 100;
        c.delivery_poll_ms = 50;
        c.channels.email.smtp_url = smtp_url;
        if let Some(url) = api_url {
            c.channels.whatsapp.whatsapp_api_url = url;
            c.channels.whatsapp.whatsapp_token = Some("test-token".into());
            c.channels.whatsapp.whatsapp_phone_number_id = Some("1234567".into());
            c.channels.whatsapp.whatsapp_mode = tickethub::config::WhatsappMode::Text;
        }
    })
    .await
}

/// Every user of the cast, in a fixed order.
fn everyone(c: &Cast) -> [&User; 6] {
    [&c.a1, &c.a2, &c.d1, &c.d2, &c.c1, &c.c2]
}

/// A ticket of the client c1 with this priority and category, opened and assigned to `devs` by
/// `admin`; answers its id and key.
async fn assigned_ticket(
    hub: &TestHub,
    c: &Cast,
    admin: &User,
    devs: &[&User],
    title: &str,
    priority: &str,
    category: &str,
) -> (i64, String) {
    let crew = Crew {
        creator: &c.c1,
        admin,
        devs,
    };
    let t = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": c.project, "title": title, "description": "d",
                   "priority": priority, "category": category}),
        )
        .await;
    (
        t["id"].as_i64().unwrap(),
        t["key"].as_str().unwrap().to_owned(),
    )
}

/// The id of `user`'s notification of `kind` about `ticket`.
async fn note_of(hub: &TestHub, user: &User, kind: &str, ticket: i64) -> i64 {
    let page = hub
        .get_as(
            user,
            &format!("/api/notifications/?notification_type={kind}&ticket={ticket}"),
            200,
        )
        .await;
    assert_eq!(page["count"], 1, "{} {kind}: {page}", user.username);
    page["results"][0]["id"].as_i64().unwrap()
}

/// The events of a kind in a timeline.
fn events<'a>(timeline: &'a Value, kind: &str) -> Vec<&'a Value> {
    timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// The timeline of a notification, as an admin sees it.
async fn timeline(hub: &TestHub, admin: &User, note: i64) -> Value {
    hub.get_as(admin, &format!("/api/notifications/{note}/timeline/"), 200)
        .await
}

/// Waits until the first step of `note` has fired; answers its `escalation_fired` event.
async fn first_step_fired(hub: &TestHub, admin: &User, note: i64) -> Value {
    eventually_some("the escalation step fires", || async {
        let t = timeline(hub, admin, note).await;
        assert!(
            events(&t, "escalation_failed").is_empty()
                && events(&t, "escalation_cancelled").is_empty(),
            "the step did not fire: {t}"
        );
        events(&t, "escalation_fired").first().map(|e| (*e).clone())
    })
    .await
}

/// A user's `ticket_escalated` notifications.
async fn escalated_inbox(hub: &TestHub, user: &User) -> Vec<Value> {
    hub.get_as(
        user,
        "/api/notifications/?notification_type=ticket_escalated",
        200,
    )
    .await["results"]
        .as_array()
        .unwrap()
        .clone()
}

/// The outbound deliveries (email, WhatsApp) of `user`'s notification `note`, as they stand
/// (the in-app record, listed as `STORED`, left out).
async fn outbound_deliveries(hub: &TestHub, user: &User, note: i64) -> Vec<Value> {
    let d = hub
        .get_as(user, &format!("/api/notifications/{note}/deliveries/"), 200)
        .await;
    d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["channel"] != "websocket")
        .cloned()
        .collect()
}

/// Waits until every delivery of `user`'s notification `note` was sent; answers them as
/// `(channel, address)`, sorted.
async fn sent_deliveries(hub: &TestHub, user: &User, note: i64) -> Vec<(String, String)> {
    eventually_some("the deliveries are sent", || async {
        let list = outbound_deliveries(hub, user, note).await;
        if list.is_empty() || list.iter().any(|d| d["status"] != "SENT") {
            assert!(
                list.iter().all(|d| d["status"] != "FAILED"),
                "a delivery failed: {list:?}"
            );
            return None;
        }
        let mut out: Vec<(String, String)> = list
            .iter()
            .map(|d| {
                (
                    d["channel"].as_str().unwrap().to_owned(),
                    d["address"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        out.sort();
        Some(out)
    })
    .await
}

/// A hub whose one policy escalates notifications of `event` after a second, on email and
/// WhatsApp, telling `also`; every other message is in-app only, and every user of the cast
/// has a WhatsApp number.
struct Scene {
    hub: TestHub,
    smtp: Smtp,
    api: Http,
    c: Cast,
    /// Each user's number as the Cloud API is sent it (no `+`), by username.
    numbers: Vec<(String, String)>,
}

impl Scene {
    async fn start(backend: &Backend, event: &str, also: &str) -> Scene {
        let (smtp, api) = (Smtp::start().await, Http::start().await);
        let file = routing_file(&format!(
            r#"{IN_APP_ONLY}
[[escalation]]
name = "tell-{also}"
events = ["{event}"]
steps = [
  {{ after = "1s", unless = "read", channels = ["email", "whatsapp"], also = ["{also}"] }},
]
"#
        ));
        let hub = hub_with(backend, &file, Some(&smtp), Some(&api)).await;
        let c = cast(&hub).await;
        let mut numbers = Vec::new();
        for (i, u) in everyone(&c).into_iter().enumerate() {
            let number = format!("+1555010000{i}");
            set_whatsapp(&hub, u, &number).await;
            numbers.push((
                u.username.clone(),
                number.trim_start_matches('+').to_owned(),
            ));
        }
        Scene {
            hub,
            smtp,
            api,
            c,
            numbers,
        }
    }

    /// A user's number as the Cloud API is sent it.
    fn number(&self, user: &User) -> String {
        self.numbers
            .iter()
            .find(|(name, _)| *name == user.username)
            .map(|(_, number)| number.clone())
            .unwrap()
    }

    /// Checks what the fired step of `note` (the unread notification of `recipient`) did: the
    /// recipient got the notification again by email and WhatsApp; exactly the `told` users
    /// got a `ticket_escalated` notification about it, in the inbox, by email and by
    /// WhatsApp; nobody else of the cast got one, and no other mail or message went out.
    async fn assert_told_exactly(&self, recipient: &User, note: i64, told: &[&User]) {
        let (hub, c) = (&self.hub, &self.c);
        let fired = first_step_fired(hub, &c.a1, note).await;
        let names: Vec<&str> = told.iter().map(|u| u.username.as_str()).collect();
        let detail = fired["detail"].as_str().unwrap();
        assert!(
            detail.contains("sent on email, whatsapp")
                && detail.ends_with(&format!("told {}", names.join(", "))),
            "{detail}"
        );
        let addresses = |u: &User| {
            vec![
                ("email".to_owned(), format!("{}@example.test", u.username)),
                ("whatsapp".to_owned(), format!("+{}", self.number(u))),
            ]
        };

        // The recipient's own notification went out again on the step's channels.
        assert_eq!(
            sent_deliveries(hub, recipient, note).await,
            addresses(recipient)
        );
        // Each told user has one `ticket_escalated` notification about it, sent by email and
        // WhatsApp.
        for user in told {
            let inbox = escalated_inbox(hub, user).await;
            assert_eq!(inbox.len(), 1, "{}: {inbox:?}", user.username);
            let n = &inbox[0];
            assert_eq!(n["data"]["notification_id"], note, "{n}");
            assert_eq!(n["data"]["user_id"], recipient.id.0, "{n}");
            assert_eq!(n["data"]["policy_step"], 1, "{n}");
            assert!(
                n["title"].as_str().unwrap().starts_with("Escalated: "),
                "{n}"
            );
            assert!(
                n["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{} has not read", recipient.display_name)),
                "{n}"
            );
            let id = n["id"].as_i64().unwrap();
            assert_eq!(sent_deliveries(hub, user, id).await, addresses(user));
        }
        // Nobody else got one; the recipient is not told about their own notification.
        for user in everyone(c) {
            if told.iter().any(|t| t.id == user.id) {
                continue;
            }
            let inbox = escalated_inbox(hub, user).await;
            assert!(inbox.is_empty(), "{} was told: {inbox:?}", user.username);
        }
        // The mail server and the Cloud API saw exactly these messages.
        let expected = told.len() + 1;
        let mails = self.smtp.wait_for(expected).await;
        let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
        to.sort();
        let mut want: Vec<String> = told
            .iter()
            .chain([&recipient])
            .map(|u| format!("{}@example.test", u.username))
            .collect();
        want.sort();
        assert_eq!(to, want);
        for m in &mails {
            let escalated = m.subject().starts_with("Escalated: ");
            let to_recipient = m.to == [format!("{}@example.test", recipient.username)];
            assert_eq!(escalated, !to_recipient, "{}", m.subject());
        }
        let requests = self.api.wait_for(expected).await;
        let to: BTreeSet<String> = requests
            .iter()
            .map(|r| r.body["to"].as_str().unwrap().to_owned())
            .collect();
        let want: BTreeSet<String> = told
            .iter()
            .chain([&recipient])
            .map(|u| self.number(u))
            .collect();
        assert_eq!(to, want);
        for r in &requests {
            let body = r.body["text"]["body"].as_str().unwrap();
            assert_eq!(
                body.starts_with("*Escalated: "),
                r.body["to"] != self.number(recipient),
                "{body}"
            );
        }
        assert_eq!(self.smtp.mails().len(), expected);
        assert_eq!(self.api.requests().len(), expected);
    }
}

/// `also = ["super_admins"]` tells the super admins, and not the other admins.
async fn an_escalation_step_also_tells_the_super_admins_only(backend: Backend) {
    let s = Scene::start(&backend, "ticket_assigned", "super_admins").await;
    let c = &s.c;
    // a2, a plain admin, assigns d1; a1 is the only super admin.
    let (id, _) = assigned_ticket(
        &s.hub,
        c,
        &c.a2,
        &[&c.d1],
        "Checkout is down",
        "HIGH",
        "BUG",
    )
    .await;
    let note = note_of(&s.hub, &c.d1, "ticket_assigned", id).await;
    s.assert_told_exactly(&c.d1, note, &[&c.a1]).await;
}

/// `also = ["creator"]` tells the client who created the ticket.
async fn an_escalation_step_also_tells_the_ticket_creator(backend: Backend) {
    let s = Scene::start(&backend, "ticket_assigned", "creator").await;
    let c = &s.c;
    let (id, _) =
        assigned_ticket(&s.hub, c, &c.a1, &[&c.d1], "Checkout is down", "LOW", "BUG").await;
    let note = note_of(&s.hub, &c.d1, "ticket_assigned", id).await;
    s.assert_told_exactly(&c.d1, note, &[&c.c1]).await;
}

/// `also = ["assignees"]` tells every assignee of the ticket: here the client's unread comment
/// notification is escalated to both developers working on it.
async fn an_escalation_step_also_tells_the_assignees(backend: Backend) {
    let s = Scene::start(&backend, "comment_added", "assignees").await;
    let c = &s.c;
    let (id, _) = assigned_ticket(
        &s.hub,
        c,
        &c.a1,
        &[&c.d1, &c.d2],
        "Checkout is down",
        "MEDIUM",
        "BUG",
    )
    .await;
    s.hub
        .post_as(
            &c.a2,
            &format!("/api/tickets/{id}/comments/"),
            json!({"body": "Can you reproduce it?"}),
            201,
        )
        .await;
    let note = note_of(&s.hub, &c.c1, "comment_added", id).await;
    s.assert_told_exactly(&c.c1, note, &[&c.d1, &c.d2]).await;
}

/// The escalation steps scheduled for a notification, as `(policy, step)`.
async fn scheduled(hub: &TestHub, admin: &User, note: i64) -> Vec<(String, i64)> {
    let all = hub
        .get_as(admin, "/api/admin/escalations?status=all&limit=500", 200)
        .await;
    all["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["notification_id"] == note)
        .map(|r| {
            (
                r["policy"].as_str().unwrap().to_owned(),
                r["step"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A policy with `when.category` escalates notifications about tickets of that category, and
/// leaves another category's alone.
async fn a_category_policy_escalates_that_category_only(backend: Backend) {
    let smtp = Smtp::start().await;
    let file = routing_file(&format!(
        r#"{IN_APP_ONLY}
[[escalation]]
name = "bugs"
events = ["ticket_assigned"]
when = {{ category = ["BUG"] }}
steps = [ {{ after = "1s", channels = ["email"] }} ]
"#
    ));
    let hub = hub_with(&backend, &file, Some(&smtp), None).await;
    let c = cast(&hub).await;
    let (bug, bug_key) =
        assigned_ticket(&hub, &c, &c.a1, &[&c.d1], "Checkout fails", "HIGH", "BUG").await;
    let (feature, feature_key) =
        assigned_ticket(&hub, &c, &c.a1, &[&c.d1], "Dark mode", "HIGH", "FEATURE").await;
    let bug_note = note_of(&hub, &c.d1, "ticket_assigned", bug).await;
    let feature_note = note_of(&hub, &c.d1, "ticket_assigned", feature).await;

    // Steps are committed with their notification: the bug's assignment has its step, the
    // feature's none.
    assert_eq!(
        scheduled(&hub, &c.a1, bug_note).await,
        [("bugs".to_owned(), 1)]
    );
    assert_eq!(scheduled(&hub, &c.a1, feature_note).await, []);

    // The bug's step fires: its assignment is mailed to the developer.
    let fired = first_step_fired(&hub, &c.a1, bug_note).await;
    assert_eq!(fired["detail"], "sent on email");
    assert_eq!(
        sent_deliveries(&hub, &c.d1, bug_note).await,
        [("email".to_owned(), "d1@example.test".to_owned())]
    );
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].to, ["d1@example.test"]);
    assert!(
        mails[0].subject().contains(&bug_key),
        "{}",
        mails[0].subject()
    );

    // The feature's assignment was never escalated: no step in its timeline, no delivery, no
    // mail.
    let t = timeline(&hub, &c.a1, feature_note).await;
    assert!(
        events(&t, "escalation_scheduled").is_empty() && events(&t, "delivery_attempt").is_empty(),
        "{t}"
    );
    let d = outbound_deliveries(&hub, &c.d1, feature_note).await;
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(smtp.mails().len(), 1);
    assert!(
        smtp.mails()
            .iter()
            .all(|m| !m.subject().contains(&feature_key)),
        "the feature was mailed"
    );
}

/// `when.priority` and `when.category` together: a ticket must match both. Policies are tried
/// in order and the first that matches is followed; a notification without a ticket never
/// matches a policy with `when`, and falls through to the next.
async fn priority_and_category_must_both_match_and_the_first_match_wins(backend: Backend) {
    let file = routing_file(&format!(
        r#"{IN_APP_ONLY}
[[escalation]]
name = "critical-bugs"
events = ["ticket_assigned"]
when = {{ priority = ["CRITICAL"], category = ["BUG"] }}
steps = [ {{ after = "1h", channels = ["email"] }} ]

[[escalation]]
name = "bugs-and-support"
events = ["ticket_assigned", "deploy_done"]
when = {{ category = ["BUG", "SUPPORT"] }}
steps = [
  {{ after = "2h", channels = ["email"] }},
  {{ after = "3h", channels = ["email"], also = ["admins"] }},
]

[[escalation]]
name = "deploys"
events = ["deploy_done"]
steps = [ {{ after = "1h", channels = ["email"] }} ]
"#
    ));
    let hub = hub_with(&backend, &file, None, None).await;
    let c = cast(&hub).await;
    let cases = [
        ("CRITICAL", "BUG", vec![("critical-bugs", 1)]),
        (
            "LOW",
            "BUG",
            vec![("bugs-and-support", 1), ("bugs-and-support", 2)],
        ),
        (
            "CRITICAL",
            "SUPPORT",
            vec![("bugs-and-support", 1), ("bugs-and-support", 2)],
        ),
        ("CRITICAL", "FEATURE", vec![]),
        ("HIGH", "OTHER", vec![]),
    ];
    for (priority, category, want) in cases {
        let (id, _) = assigned_ticket(
            &hub,
            &c,
            &c.a1,
            &[&c.d1],
            &format!("{priority} {category}"),
            priority,
            category,
        )
        .await;
        let note = note_of(&hub, &c.d1, "ticket_assigned", id).await;
        let want: Vec<(String, i64)> = want.iter().map(|(p, s)| (p.to_string(), *s)).collect();
        assert_eq!(
            scheduled(&hub, &c.a1, note).await,
            want,
            "{priority} {category}"
        );
    }
    // An admin's own type, without a ticket: "bugs-and-support" names it but has a `when`.
    let sent = hub
        .send(&c.a1, &[&c.d2], json!({"notification_type": "deploy_done"}))
        .await;
    assert_eq!(sent["count"], 1, "{sent}");
    let page = hub
        .get_as(
            &c.d2,
            "/api/notifications/?notification_type=deploy_done",
            200,
        )
        .await;
    let note = page["results"][0]["id"].as_i64().unwrap();
    assert_eq!(
        scheduled(&hub, &c.a1, note).await,
        [("deploys".to_owned(), 1)]
    );
}

crate::trials! {
    both: [
        an_escalation_step_also_tells_the_super_admins_only,
        an_escalation_step_also_tells_the_ticket_creator,
        an_escalation_step_also_tells_the_assignees,
        a_category_policy_escalates_that_category_only,
        priority_and_category_must_both_match_and_the_first_match_wins,
        the_trace_names_a_deactivated_user_inactive,
        the_trace_says_which_channel_has_no_address,
        the_trace_says_which_channel_has_no_transport,
        the_trace_refuses_bad_input,
        the_trace_says_no_route_for_a_type_the_routing_file_emptied,
    ],
    tests: [],
    sync: [],
}
