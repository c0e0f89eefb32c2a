//! Escalation of unseen notifications, timelines and the trace, end to end: a WhatsApp Cloud
//! API stand-in and a real SMTP server in this process, several hub processes on one
//! PostgreSQL database, and `kill -9`.

use std::time::Duration;

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::delivery::set_whatsapp;
use crate::fakes::{Http, Smtp};
use crate::harness::{
    eventually, eventually_ok, eventually_within, patience, ticket_in, Backend, Crew, TestHub,
};
use crate::nodes::Cluster;
use crate::tickets::cast;
mod durability;
use durability::*;

/// A routing file: assignments are in-app only, and CRITICAL and HIGH ones escalate to
/// WhatsApp after `first`, then to email with the admins told after `second`.
fn policy(first: &str, second: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            r#"
[ticket_assigned]
recipients = ["newly_assigned"]
channels = ["websocket"]

[[escalation]]
name = "critical-assignments"
events = ["ticket_assigned", "ticket_created"]
when = {{ priority = ["HIGH", "CRITICAL"] }}
steps = [
  {{ after = "{first}",  unless = "read", channels = ["whatsapp"] }},
  {{ after = "{second}", unless = "read", channels = ["email"], also = ["admins"] }},
]
"#
        ),
    )
    .unwrap();
    file
}

/// A hub running the policy file, with WhatsApp going to the stand-in; `tweak` adjusts the
/// rest.
async fn escalating_hub(
    backend: &Backend,
    file: &tempfile::NamedTempFile,
    api: &Http,
    tweak: impl FnOnce(&mut tickethub::ServeConfig),
) -> TestHub {
    let (api_url, path) = (api.url(), file.path().to_owned());
    TestHub::start_with(backend, |c| {
        c.routing = Some(path);
        c.escalation_poll_ms = 100;
        c.delivery_poll_ms = 50;
        c.channels.whatsapp.whatsapp_api_url = api_url;
        c.channels.whatsapp.whatsapp_token = Some("test-token".into());
        c.channels.whatsapp.whatsapp_phone_number_id = Some("1234567".into());
        tweak(c);
    })
    .await
}

/// The settings of a hub process running the policy file, with WhatsApp (as text) going to
/// the stand-in.
fn node_args(file: &tempfile::NamedTempFile, api: &Http, lease: &str) -> Vec<String> {
    [
        "--routing",
        &file.path().display().to_string(),
        "--escalation-poll-ms",
        "100",
        "--escalation-lease",
        lease,
        "--delivery-poll-ms",
        "50",
        "--whatsapp-api-url",
        &api.url(),
        "--whatsapp-token",
        "t",
        "--whatsapp-phone-number-id",
        "1",
        "--whatsapp-mode",
        "text",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A CRITICAL ticket of the client, opened and assigned to `dev` by the admin; answers the
/// ticket's id and the id of the developer's `ticket_assigned` notification.
async fn assign_critical(
    hub: &TestHub,
    client: &User,
    admin: &User,
    dev: &User,
    project: i64,
) -> (i64, i64) {
    let crew = Crew {
        creator: client,
        admin,
        devs: &[dev],
    };
    let t = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": project, "title": "Checkout is down", "description": "500s",
                   "priority": "CRITICAL", "category": "BUG"}),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let page = hub
        .get_as(
            dev,
            "/api/notifications/?notification_type=ticket_assigned",
            200,
        )
        .await;
    (id, page["results"][0]["id"].as_i64().unwrap())
}

fn events<'a>(timeline: &'a Value, kind: &str) -> Vec<&'a Value> {
    timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// The escalation steps of a notification, from its timeline.
async fn steps(hub: &TestHub, admin: &User, notification: i64) -> Value {
    hub.get_as(
        admin,
        &format!("/api/notifications/{notification}/timeline/"),
        200,
    )
    .await
}

async fn an_unread_critical_assignment_escalates_to_whatsapp_then_email_and_admins(
    backend: Backend,
) {
    let api = Http::start().await;
    let smtp = Smtp::start().await;
    let file = policy("1s", "2s");
    let smtp_url = smtp.url();
    let hub = escalating_hub(&backend, &file, &api, |c| {
        c.channels.whatsapp.whatsapp_mode = tickethub::config::WhatsappMode::Text;
        c.channels.email.smtp_url = Some(smtp_url);
    })
    .await;
    let c = cast(&hub).await;
    set_whatsapp(&hub, &c.d1, "+15550003333").await;
    // The developer is online: the notification reaches their socket and is acked, but never
    // read. An ack does not count as seen for `unless = "read"`.
    let mut ws = hub.connect(&c.d1).await;
    let (ticket, note) = assign_critical(&hub, &c.c1, &c.a1, &c.d1, c.project).await;
    let pushed = ws.next_of("notification").await;
    assert_eq!(pushed["id"], note, "{pushed}");
    ws.send_json(json!({"type": "ack", "seq": pushed["seq"]}))
        .await;

    // Two steps were scheduled for the notification (whichever has fired by now), and the
    // supervision tree shows the escalation actor that holds them.
    let scheduled = hub
        .get_as(&c.a1, "/api/admin/escalations?status=all", 200)
        .await;
    let mine: Vec<&Value> = scheduled["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["notification_id"] == note)
        .collect();
    assert_eq!(mine.len(), 2, "{scheduled}");
    assert!(mine.iter().all(|r| r["policy"] == "critical-assignments"));
    let tree = hub.get_as(&c.a1, "/api/admin/actors", 200).await;
    assert!(
        tree["children"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "escalation" && n["status"] == "running"),
        "{tree}"
    );

    // Step 1: WhatsApp to the developer.
    let requests = api.wait_for(1).await;
    assert_eq!(
        requests[0].body["to"], "15550003333",
        "{:?}",
        requests[0].body
    );
    // Step 2: email to the developer, and every admin told with a `ticket_escalated`
    // notification (in the inbox, by email).
    let escalation_mails = |smtp: &Smtp| {
        let mut to: Vec<String> = smtp
            .mails()
            .iter()
            .filter(|m| {
                m.subject().starts_with("Escalated: Ticket Assigned")
                    || (m.to == ["d1@example.test"] && m.subject().contains("Ticket Assigned"))
            })
            .flat_map(|m| m.to.clone())
            .collect();
        to.sort();
        to
    };
    eventually("the second step's mails arrive", || async {
        escalation_mails(&smtp).len() >= 3
    })
    .await;
    assert_eq!(
        escalation_mails(&smtp),
        ["a1@example.test", "a2@example.test", "d1@example.test"]
    );
    for admin in [&c.a1, &c.a2] {
        let page = hub
            .get_as(
                admin,
                "/api/notifications/?notification_type=ticket_escalated",
                200,
            )
            .await;
        assert_eq!(page["count"], 1, "{page}");
        let n = &page["results"][0];
        assert!(
            n["message"]
                .as_str()
                .unwrap()
                .contains("d1 display has not read"),
            "{n}"
        );
        assert_eq!(n["data"]["notification_id"], note);
    }
    // The developer's own inbox did not get the escalation notice.
    let own = hub
        .get_as(
            &c.d1,
            "/api/notifications/?notification_type=ticket_escalated",
            200,
        )
        .await;
    assert_eq!(own["count"], 0);

    // Now the developer reads it; the timeline lists every event, in order.
    hub.post_as(
        &c.d1,
        &format!("/api/notifications/{note}/mark_as_read/"),
        json!({}),
        200,
    )
    .await;
    let timeline = eventually_ok("every event is in the timeline", || async {
        let timeline = steps(&hub, &c.d1, note).await;
        if events(&timeline, "delivery_attempt").len() == 2
            && events(&timeline, "escalation_fired").len() == 2
            && !events(&timeline, "pushed").is_empty()
            && !events(&timeline, "read").is_empty()
        {
            Ok(timeline)
        } else {
            Err(format!("events missing: {timeline}"))
        }
    })
    .await;
    let kinds: Vec<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for kind in [
        "committed",
        "pushed",
        "acked",
        "read",
        "delivery_attempt",
        "escalation_scheduled",
        "escalation_fired",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(kinds[0], "committed");
    let at: Vec<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    let mut sorted = at.clone();
    sorted.sort();
    assert_eq!(at, sorted, "events are in time order");
    let committed = &events(&timeline, "committed")[0];
    assert_eq!(committed["action"], "assign");
    assert_eq!(committed["actor"]["username"], "a1");
    assert_eq!(events(&timeline, "pushed")[0]["sockets"], 1);
    let attempts = events(&timeline, "delivery_attempt");
    let channels: Vec<&str> = attempts
        .iter()
        .map(|a| a["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["whatsapp", "email"]);
    assert!(
        attempts.iter().all(|a| a["outcome"] == "sent"),
        "{attempts:?}"
    );
    let fired = events(&timeline, "escalation_fired");
    assert!(
        fired[0]["detail"].as_str().unwrap().contains("whatsapp"),
        "{fired:?}"
    );
    assert!(
        fired[1]["detail"].as_str().unwrap().contains("told a1, a2"),
        "{fired:?}"
    );
    // The recipient and admins may read the timeline; nobody else.
    hub.get_as(&c.a2, &format!("/api/notifications/{note}/timeline/"), 200)
        .await;
    hub.get_as(&c.d2, &format!("/api/notifications/{note}/timeline/"), 404)
        .await;
    hub.get_as(&c.d1, "/api/notifications/999999/timeline/", 404)
        .await;
    hub.get_as(&c.d1, "/api/notifications/abc/timeline/", 404)
        .await;
    hub.get_as(&c.d1, "/api/admin/escalations", 403).await;

    // Exactly one WhatsApp message and no step pending; the metrics count the steps.
    assert_eq!(api.requests().len(), 1);
    let left = hub.get_as(&c.a1, "/api/admin/escalations", 200).await;
    assert_eq!(left["count"], 0, "{left}");
    let all = hub
        .get_as(&c.a1, "/api/admin/escalations?status=all", 200)
        .await;
    // The admins' ticket_created steps were cancelled when the ticket was opened.
    let statuses: Vec<(&str, i64)> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap(),
                e["user_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 6, "{all}");
    for (status, user) in statuses {
        let expected = if user == c.d1.id.0 {
            "FIRED"
        } else {
            "CANCELLED"
        };
        assert_eq!(status, expected, "{all}");
    }
    hub.get_as(&c.a1, "/api/admin/escalations?status=soon", 400)
        .await;
    // The ticket's history shows both steps, after the assignment, with whom they paged.
    let history = hub
        .get_as(&c.c1, &format!("/api/tickets/{ticket}/history/"), 200)
        .await;
    let entries = history.as_array().unwrap();
    let paged: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "escalation")
        .collect();
    assert_eq!(paged.len(), 2, "{history}");
    let assigned = entries
        .iter()
        .position(|e| e["action"] == "assign")
        .unwrap();
    let first = entries
        .iter()
        .position(|e| e["kind"] == "escalation")
        .unwrap();
    assert!(first > assigned, "{history}");
    for (step, e) in paged.iter().enumerate() {
        assert_eq!(e["event"], "escalation_fired");
        assert_eq!(e["recipient"], c.d1.id.0);
        assert_eq!(e["recipient_name"], "d1 display");
        assert_eq!(e["step"], step as i64 + 1, "{e}");
        assert_eq!(e["status"], "ASSIGNED");
    }
    assert_eq!(paged[0]["channels"], json!(["whatsapp"]), "{history}");
    let metrics = hub.metrics().await;
    // The recorder is shared by every hub of this test process: at least these two.
    let fired = metrics.value("tickethub_escalation_steps_total", &["outcome=\"fired\""]);
    assert!(fired >= 2.0, "{metrics}");
}

async fn starting_work_cancels_the_escalation(backend: Backend) {
    let api = Http::start().await;
    // Long enough that the developer starts work first; the test never waits for it.
    let file = policy("30s", "60s");
    let hub = escalating_hub(&backend, &file, &api, |_| {}).await;
    let c = cast(&hub).await;
    set_whatsapp(&hub, &c.d1, "+15550004444").await;
    // A LOW ticket is not covered by the policy.
    let low = hub
        .post_as(
            &c.c1,
            "/api/tickets/",
            json!({"project": c.project, "title": "Typo", "priority": "LOW", "category": "BUG"}),
            201,
        )
        .await;
    let (id, note) = assign_critical(&hub, &c.c1, &c.a1, &c.d1, c.project).await;
    let low_id = low["id"].as_i64().unwrap();
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{low_id}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    hub.post_as(
        &c.a1,
        &format!("/api/tickets/{low_id}/assign/"),
        json!({"developer_ids": [c.d1.id.0]}),
        200,
    )
    .await;
    let pending = hub.get_as(&c.a1, "/api/admin/escalations", 200).await;
    // ticket_created (HIGH? no: CRITICAL) for two admins, and the assignment: 2 steps each.
    let for_note: Vec<&Value> = pending["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["notification_id"] == note)
        .collect();
    assert_eq!(for_note.len(), 2, "{pending}");
    assert!(
        pending["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["ticket_id"] == id),
        "the LOW ticket escalates nothing: {pending}"
    );

    // The escalation actor fails and is restarted by the root; the steps are rows, not state.
    hub.hub
        .inject_fault(tickethub_actors::hub::RootChild::Escalation);
    eventually("the tree is whole again", || async {
        hub.hub.tree_healthy().await && hub.hub.escalation_snapshot().await.is_some()
    })
    .await;

    hub.post_as(
        &c.d1,
        &format!("/api/tickets/{id}/start_work/"),
        json!({}),
        200,
    )
    .await;
    let timeline = steps(&hub, &c.a1, note).await;
    let cancelled = events(&timeline, "escalation_cancelled");
    assert_eq!(cancelled.len(), 2, "{timeline}");
    for e in cancelled {
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.contains("moved from ASSIGNED to IN_PROGRESS") && reason.contains("start_work"),
            "{reason}"
        );
    }
    // The admins' ticket_created steps stop too: the ticket left NEW long ago.
    let pending = hub.get_as(&c.a1, "/api/admin/escalations", 200).await;
    assert_eq!(pending["count"], 0, "{pending}");
    assert!(api.requests().is_empty());
}

async fn a_step_that_reaches_nobody_fails_with_the_reason(backend: Backend) {
    let api = Http::start().await;
    let file = policy("1s", "60s");
    let hub = escalating_hub(&backend, &file, &api, |_| {}).await;
    let c = cast(&hub).await;
    // d2 has no WhatsApp number: the first step has nobody to reach.
    let (_, note) = assign_critical(&hub, &c.c1, &c.a1, &c.d2, c.project).await;
    let failed = eventually_ok("the step fails", || async {
        let timeline = steps(&hub, &c.a1, note).await;
        events(&timeline, "escalation_failed")
            .first()
            .map(|f| (*f).clone())
            .ok_or_else(|| timeline.to_string())
    })
    .await;
    assert_eq!(failed["escalation"]["step"], 1);
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("reached nobody") && reason.contains("no whatsapp address"),
        "{reason}"
    );
    let tree = hub.get_as(&c.a1, "/api/admin/actors", 200).await;
    let node = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "escalation")
        .unwrap()
        .clone();
    assert!(node["failed"].as_u64() >= Some(1), "{node}");
    assert!(api.requests().is_empty());
}

/// Live pushes are recorded as runs; a notification committed while its recipient was offline
/// is shown pushed when the reconnect replayed it, not when it was committed.
async fn a_replayed_notification_is_shown_pushed_when_it_was_replayed(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let admin = hub.user("boss", Role::Admin).await;
    let dev = hub.user("dev", Role::Developer).await;
    let send = |title: &'static str| {
        let (hub, admin, dev) = (&hub, &admin, &dev);
        async move {
            hub.send(admin, &[dev], json!({ "title": title })).await;
        }
    };
    let mut ws = hub.connect(&dev).await;
    send("live one").await;
    send("live two").await;
    let live = ws.notifications(2).await;
    drop(ws);
    send("while away").await;
    let page = hub.get_as(&dev, "/api/notifications/", 200).await;
    let away = page["results"][0]["id"].as_i64().unwrap();
    // The clock has to move for the replay to be told apart from the commit (by more than a
    // live push could lag, on a loaded machine too).
    let apart = Duration::from_millis(crate::harness::scaled_ms(2_400));
    tokio::time::sleep(apart).await;
    let ws = hub.connect(&dev).await;
    assert_eq!(ws.replayed.len(), 1, "{:?}", ws.replayed);
    drop(ws);
    let pushed = |id: i64| {
        let (hub, dev) = (&hub, dev.clone());
        async move {
            eventually_ok("the notification is pushed", || async {
                let t = steps(hub, &dev, id).await;
                let Some(p) = events(&t, "pushed").first().map(|p| (*p).clone()) else {
                    return Err(format!("never pushed: {t}"));
                };
                let committed = events(&t, "committed")[0]["at"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                Ok((
                    committed,
                    p["at"].as_str().unwrap().to_owned(),
                    p["sockets"].clone(),
                ))
            })
            .await
        }
    };
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    for n in &live {
        let (committed, at, sockets) = pushed(n["id"].as_i64().unwrap()).await;
        assert_eq!(sockets, 1);
        let lag = parse(&at) - parse(&committed);
        assert!(
            lag >= chrono::Duration::zero() && lag < chrono::Duration::from_std(apart / 2).unwrap(),
            "a live push is shown as it happened, after its commit: {committed} {at}"
        );
    }
    let (committed, at, _) = pushed(away).await;
    let (committed, at) = (parse(&committed), parse(&at));
    assert!(
        at - committed >= chrono::Duration::from_std(apart).unwrap(),
        "the replayed one is shown pushed at the reconnect: committed {committed}, pushed {at}"
    );
}

async fn an_ack_stops_acked_steps_only_and_a_delete_stops_the_rest(backend: Backend) {
    let api = Http::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        r#"
[[escalation]]
events = ["ticket_assigned"]
steps = [
  { after = "60s", unless = "acked", channels = ["email"] },
  { after = "90s", channels = ["email"] },
]
"#,
    )
    .unwrap();
    let hub = escalating_hub(&backend, &file, &api, |_| {}).await;
    let c = cast(&hub).await;
    let mut ws = hub.connect(&c.d1).await;
    let (_, note) = assign_critical(&hub, &c.c1, &c.a1, &c.d1, c.project).await;
    let pushed = ws.next_of("notification").await;
    let status = |timeline: &Value| -> Vec<(i64, String)> {
        timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "escalation_scheduled")
            .map(|e| {
                (
                    e["escalation"]["step"].as_i64().unwrap(),
                    e["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let before = steps(&hub, &c.a1, note).await;
    assert_eq!(
        status(&before),
        [(1, "PENDING".to_owned()), (2, "PENDING".to_owned())]
    );
    // The ack stops the step that counts an ack as seen, and only that one.
    ws.send_json(json!({"type": "ack", "seq": pushed["seq"]}))
        .await;
    let acked = eventually_ok("the ack cancels a step", || async {
        let t = steps(&hub, &c.a1, note).await;
        if events(&t, "escalation_cancelled").is_empty() {
            Err(format!("the ack cancelled nothing: {t}"))
        } else {
            Ok(t)
        }
    })
    .await;
    assert_eq!(
        status(&acked),
        [(1, "CANCELLED".to_owned()), (2, "PENDING".to_owned())],
        "{acked}"
    );
    assert_eq!(
        events(&acked, "escalation_cancelled")[0]["reason"],
        "a client of the recipient acknowledged the notification"
    );
    // Deleting it stops the rest.
    let (code, _) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/api/notifications/{note}/"),
            Some(&hub.token(&c.d1)),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let deleted = steps(&hub, &c.a1, note).await;
    assert_eq!(
        status(&deleted),
        [(1, "CANCELLED".to_owned()), (2, "CANCELLED".to_owned())],
        "{deleted}"
    );
    assert_eq!(
        events(&deleted, "escalation_cancelled")[1]["reason"],
        "the recipient deleted the notification"
    );
    assert!(!events(&deleted, "deleted").is_empty());
    // The recipient no longer sees the timeline of a deleted notification; admins do.
    hub.get_as(&c.d1, &format!("/api/notifications/{note}/timeline/"), 404)
        .await;
}

async fn the_trace_explains_who_was_left_out_and_why(backend: Backend) {
    let hub = TestHub::start(&backend).await;
    let c = cast(&hub).await;
    let outsider = hub.user("d9", Role::Developer).await;
    // d1 switched email off for assignments.
    hub.call(
        reqwest::Method::PUT,
        "/api/notifications/preferences/",
        Some(&hub.token(&c.d1)),
        Some(json!({"types": {"ticket_assigned": {"email": false}}})),
    )
    .await;
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[&c.d1],
    };
    let t = hub
        .ticket_in(
            "ASSIGNED",
            &crew,
            json!({"project": c.project, "title": "Search is slow"}),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    hub.post_as(
        &c.c1,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "Any news?"}),
        201,
    )
    .await;
    let trace = |user: String| {
        let hub = &hub;
        let admin = c.a1.clone();
        async move {
            hub.get_as(
                &admin,
                &format!("/api/admin/trace?ticket={id}&user={user}"),
                200,
            )
            .await
        }
    };
    let by_type = |trace: &Value, kind: &str| -> Value {
        trace["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["notification_type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {trace}"))
            .clone()
    };

    // Left out by preference: a recipient, but email was switched off.
    let d1 = trace("d1".into()).await;
    let assigned = by_type(&d1, "ticket_assigned");
    assert_eq!(assigned["recipient"], true, "{assigned}");
    assert_eq!(assigned["audiences"], json!(["newly_assigned"]));
    let email = assigned["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ch| ch["channel"] == "email")
        .unwrap();
    assert_eq!(email["reached"], false, "{email}");
    assert_eq!(email["reason"], "switched_off");
    let timeline = assigned["notification"]["timeline"].as_str().unwrap();
    let tl = hub.get_as(&c.d1, timeline, 200).await;
    assert_eq!(events(&tl, "committed")[0]["action"], "assign");
    // d1 was not told of the ticket's creation: admins only.
    let created = by_type(&d1, "ticket_created");
    assert_eq!(created["recipient"], false);
    assert_eq!(created["reason"], "not_routed", "{created}");

    // Left out as the actor: the client's own comment.
    let c1 = trace(c.c1.id.0.to_string()).await;
    let comment = by_type(&c1, "comment_added");
    assert_eq!(comment["recipient"], false);
    assert_eq!(comment["reason"], "actor", "{comment}");
    assert!(comment["explanation"]
        .as_str()
        .unwrap()
        .contains("themselves"));
    assert_eq!(by_type(&c1, "ticket_opened")["recipient"], true);

    // Left out as not a member of the project.
    let d9 = trace("d9".into()).await;
    assert_eq!(d9["user"]["member"], false);
    for e in d9["events"].as_array().unwrap() {
        assert_eq!(e["reason"], "not_a_member", "{e}");
    }
    assert_eq!(d9["events"].as_array().unwrap().len(), 4);

    // Bad input and permissions.
    hub.get_as(
        &outsider,
        &format!("/api/admin/trace?ticket={id}&user=d9"),
        403,
    )
    .await;
    hub.get_as(&c.a1, "/api/admin/trace?ticket=x&user=d9", 400)
        .await;
    hub.get_as(&c.a1, &format!("/api/admin/trace?ticket={id}"), 400)
        .await;
    hub.get_as(
        &c.a1,
        &format!("/api/admin/trace?ticket={id}&user=nobody"),
        404,
    )
    .await;
    hub.get_as(&c.a1, "/api/admin/trace?ticket=999999&user=d9", 404)
        .await;
    // A ticket is named by its key as well, as every page shows it.
    let key = t["key"].as_str().unwrap().to_owned();
    let by_key = hub
        .get_as(
            &c.a1,
            &format!("/api/admin/trace?ticket={}&user=d1", key.to_lowercase()),
            200,
        )
        .await;
    assert_eq!(by_key["ticket"], d1["ticket"], "{by_key}");
    assert_eq!(by_key["events"], d1["events"], "{by_key}");
    let (project, _) = key.rsplit_once('-').unwrap();
    hub.get_as(
        &c.a1,
        &format!("/api/admin/trace?ticket={project}-999999&user=d1"),
        404,
    )
    .await;
    hub.get_as(
        &c.a1,
        &format!("/api/admin/trace?ticket={project}-&user=d1"),
        400,
    )
    .await;

    // The command line prints the same explanations.
    let text = crate::harness::cli_ok(&[
        "trace",
        "--url",
        &hub.url(""),
        "--token",
        &hub.token(&c.a1),
        "--ticket",
        &key,
        "--user",
        "c1",
    ])
    .await;
    assert!(text.contains("not notified (actor)"), "{text}");
    assert!(text.contains("timeline: /api/notifications/"), "{text}");
}

crate::trials! {
    both: [
        an_unread_critical_assignment_escalates_to_whatsapp_then_email_and_admins,
        starting_work_cancels_the_escalation,
        a_step_that_reaches_nobody_fails_with_the_reason,
        an_ack_stops_acked_steps_only_and_a_delete_stops_the_rest,
        kill_9_loses_no_step_and_fires_none_twice,
        a_step_decided_before_a_read_does_not_fire_after_it,
        a_replayed_notification_is_shown_pushed_when_it_was_replayed,
        the_trace_explains_who_was_left_out_and_why,
    ],
    tests: [
        reading_on_another_node_cancels_the_remaining_steps,
    ],
    sync: [],
}
