//! Unit tests of `timeline.rs`.

use super::*;

/// [`timeline`] as the JSON the API answers.
async fn timeline_value(
    store: &dyn Store,
    record: TimelineRecord,
    viewer: Viewer,
) -> Result<Value, StoreError> {
    timeline(store, record, viewer)
        .await
        .map(|t| serde_json::to_value(t).expect("a timeline serializes"))
}
use chrono::{Duration, TimeZone};
use tickethub_actors::domain::NewUser;
use tickethub_actors::escalation::{PlannedStep, Unless};
use tickethub_actors::notification::{Notification, TicketSummary};
use tickethub_actors::ports::{Delivery, DeliveryAttempt, PushRecord, TicketEvent};
use tickethub_actors::routing::{Audience, EventType};
use tickethub_actors::ticket_domain::{Category, Priority, TicketId, TicketStatus};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 2, 29, 12, 0, 0).unwrap()
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(s)
}

#[test]
fn timeline_times_are_utc_to_the_millisecond() {
    let epoch = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
    for (t, text) in [
        (epoch, "1970-01-01T00:00:00.000Z"),
        (t0(), "2024-02-29T12:00:00.000Z"),
        (
            t0() + Duration::nanoseconds(123_456_789),
            "2024-02-29T12:00:00.123Z",
        ),
        (
            t0() + Duration::nanoseconds(999_999_999),
            "2024-02-29T12:00:00.999Z",
        ),
        (
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            "9999-12-31T23:59:59.000Z",
        ),
    ] {
        assert_eq!(at(t), text);
    }
}

#[test]
fn a_recipient_sees_nothing_of_a_webhook_s_destination_or_answer() {
    let (email, whatsapp, webhook, websocket) = (
        Channel::Email,
        Channel::Whatsapp,
        Channel::Webhook,
        Channel::Websocket,
    );
    // (viewer, channel, whether the address and the error are shown)
    for (viewer, channel, shown) in [
        (Viewer::Operator, email, true),
        (Viewer::Operator, whatsapp, true),
        (Viewer::Operator, webhook, true),
        (Viewer::Operator, websocket, true),
        (Viewer::Recipient, email, true),
        (Viewer::Recipient, whatsapp, true),
        (Viewer::Recipient, websocket, true),
        (Viewer::Recipient, webhook, false),
    ] {
        let address = shown.then_some("dest");
        let error = shown.then_some("550 mailbox full");
        assert_eq!(
            viewer.address(channel, "dest").as_deref(),
            address,
            "{viewer:?} {channel:?}"
        );
        assert_eq!(
            viewer.error(channel, Some("550 mailbox full")),
            error,
            "{viewer:?} {channel:?}"
        );
        assert_eq!(viewer.error(channel, None), None);
    }
    // An `admin:read` key sees a webhook's scheme and host, not its path or query.
    let url = "https://hooks.example.com:8443/services/T000/B000/XXXXSECRET?token=abc";
    let shown = Viewer::Key.address(webhook, url).unwrap();
    assert_eq!(shown, "https://hooks.example.com:8443/…");
    assert_eq!(
        Viewer::Key.address(email, "a@example.com").as_deref(),
        Some("a@example.com")
    );
    assert_eq!(super::masked_url("not a url"), "…");
}

fn step(status: &str, detail: Option<&str>, created: i64, updated: i64) -> EscalationRow {
    EscalationRow {
        id: 7,
        notification_id: 1,
        user_id: UserId(1),
        ticket: Some(TicketId(3)),
        step: PlannedStep {
            policy: "sev1".into(),
            step: 2,
            after: std::time::Duration::from_secs(300),
            unless: Unless::Acked,
            channels: vec![Channel::Email, Channel::Whatsapp],
            also: vec![Audience::Admins],
            oncall: vec![],
            push_unless_seen: None,
        },
        due_at: secs(created + 300),
        status: status.into(),
        detail: detail.map(str::to_owned),
        claimed_by: Some("node-a".into()),
        created_at: secs(created),
        updated_at: secs(updated),
    }
}

#[test]
fn an_escalation_step_as_operators_see_it() {
    assert_eq!(
        escalation_json(&step("FIRED", Some("emailed"), 1, 301)),
        json!({
            "id": 7,
            "notification_id": 1,
            "user_id": 1,
            "ticket_id": 3,
            "policy": "sev1",
            "step": 2,
            "unless": "acked",
            "channels": ["email", "whatsapp"],
            "also": ["admins"],
            "due_at": "2024-02-29T12:05:01.000Z",
            "status": "FIRED",
            "detail": "emailed",
            "claimed_by": "node-a",
            "created_at": "2024-02-29T12:00:01.000Z",
            "updated_at": "2024-02-29T12:05:01.000Z",
        })
    );
    let mut bare = step("PENDING", None, 0, 0);
    bare.ticket = None;
    bare.claimed_by = None;
    let v = escalation_json(&bare);
    assert_eq!(v["ticket_id"], Value::Null);
    assert_eq!(v["detail"], Value::Null);
    assert_eq!(v["claimed_by"], Value::Null);
}

fn notification(user: UserId) -> Notification {
    Notification {
        id: 41,
        user_id: user,
        seq: 9,
        notification_type: EventType::TicketAssigned,
        title: "Ticket Assigned".into(),
        message: "WEB-5 is yours".into(),
        ticket: Some(TicketSummary {
            id: TicketId(5),
            key: "WEB-5".into(),
            title: "Löschen geht nicht".into(),
            priority: Priority::High,
            category: Category::Bug,
            status: TicketStatus::Assigned,
            created_by: "Zoë".into(),
            project_name: "Web".into(),
            created_at: secs(-3600),
        }),
        data: "{}".into(),
        action_url: None,
        is_read: false,
        read_at: None,
        created_at: t0(),
    }
}

fn record(user: UserId) -> TimelineRecord {
    TimelineRecord {
        notification: notification(user),
        deleted_at: None,
        event: None,
        action: None,
        actor: None,
        pushes: Vec::new(),
        acked_at: None,
        deliveries: Vec::new(),
        attempts: Vec::new(),
        escalations: Vec::new(),
    }
}

async fn store_with(names: &[&str]) -> (std::sync::Arc<dyn Store>, Vec<UserId>) {
    let store = crate::store::connect("sqlite::memory:").await.unwrap();
    let mut ids = Vec::new();
    for name in names {
        let user = store
            .create_user(NewUser::new(*name, Role::Developer, "x"))
            .await
            .unwrap();
        ids.push(user.id);
    }
    (store, ids)
}

fn kinds(v: &Value) -> Vec<&str> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_bare_notification_has_only_its_commit() {
    let (store, ids) = store_with(&["jürgen"]).await;
    let v = timeline_value(store.as_ref(), record(ids[0]), Viewer::Operator)
        .await
        .unwrap();
    assert_eq!(
        v["notification"],
        json!({
            "id": 41,
            "user_id": ids[0].0,
            "username": "jürgen",
            "seq": 9,
            "notification_type": "ticket_assigned",
            "title": "Ticket Assigned",
            "is_read": false,
            "ticket": {"id": 5, "key": "WEB-5"},
        })
    );
    assert_eq!(
        v["events"],
        json!([{
            "event": "committed",
            "at": "2024-02-29T12:00:00.000Z",
            "action": null,
            "actor": null,
            "ticket_event_id": null,
        }])
    );
}

#[tokio::test]
async fn the_ticket_event_names_the_action_and_actor_over_the_notification_s_own() {
    let (store, ids) = store_with(&["rec", "by-event", "by-record"]).await;
    let mut r = record(ids[0]);
    r.action = Some("send".into());
    r.actor = Some(ids[2]);
    let v = timeline_value(store.as_ref(), r.clone(), Viewer::Operator)
        .await
        .unwrap();
    assert_eq!(v["events"][0]["action"], "send");
    assert_eq!(
        v["events"][0]["actor"],
        json!({"id": ids[2].0, "username": "by-record"})
    );
    r.event = Some(TicketEvent {
        id: 77,
        ticket: TicketId(5),
        event: EventType::TicketAssigned,
        action: "assign".into(),
        actor: Some(ids[1]),
        status: TicketStatus::Assigned,
        assignees: vec![ids[0]],
        newly_assigned: vec![ids[0]],
        at: t0(),
        reason: None,
        changes: Vec::new(),
    });
    let v = timeline_value(store.as_ref(), r, Viewer::Operator)
        .await
        .unwrap();
    assert_eq!(v["events"][0]["action"], "assign");
    assert_eq!(v["events"][0]["ticket_event_id"], 77);
    assert_eq!(
        v["events"][0]["actor"],
        json!({"id": ids[1].0, "username": "by-event"})
    );
    // An actor the store does not know is named by id alone.
    let mut r = record(ids[0]);
    r.actor = Some(UserId(9_999));
    let v = timeline_value(store.as_ref(), r, Viewer::Operator)
        .await
        .unwrap();
    assert_eq!(
        v["events"][0]["actor"],
        json!({"id": 9_999, "username": null})
    );
}

#[tokio::test]
async fn events_are_ordered_by_time_then_by_their_place_in_a_notification_s_life() {
    let (store, ids) = store_with(&["rec"]).await;
    let mut r = record(ids[0]);
    // Everything at the commit's instant: the order of a notification's life decides.
    r.deleted_at = Some(t0());
    r.acked_at = Some(t0());
    r.notification.is_read = true;
    r.notification.read_at = Some(t0());
    r.pushes.push(PushRecord {
        first_at: t0(),
        sockets: 2,
        node: Some("n1".into()),
        at: t0(),
    });
    r.attempts.push(DeliveryAttempt {
        delivery_id: 3,
        channel: Channel::Email,
        address: "a@example.com".into(),
        attempt: 1,
        outcome: "retry".into(),
        error: Some("421".into()),
        node: None,
        at: t0(),
    });
    r.deliveries
        .push(delivery(3, Channel::Email, "QUEUED", t0()));
    r.escalations.push(step("FIRED", Some("emailed"), 0, 0));
    let v = timeline_value(store.as_ref(), r.clone(), Viewer::Operator)
        .await
        .unwrap();
    assert_eq!(
        kinds(&v),
        [
            "committed",
            "pushed",
            "acked",
            "read",
            "deleted",
            "delivery_attempt",
            "delivery_pending",
            "escalation_scheduled",
            "escalation_fired"
        ]
    );
    // Time comes first: a deletion a millisecond before everything else leads.
    r.deleted_at = Some(t0() - Duration::milliseconds(1));
    let v = timeline_value(store.as_ref(), r, Viewer::Operator)
        .await
        .unwrap();
    assert_eq!(kinds(&v)[..2], ["deleted", "committed"]);
}

fn delivery(id: i64, channel: Channel, status: &str, next: DateTime<Utc>) -> Delivery {
    Delivery {
        id,
        notification_id: 41,
        channel,
        address: format!("{}-address", channel.as_str()),
        status: status.into(),
        attempts: 1,
        last_error: None,
        provider_message_id: None,
        next_attempt_at: next,
        sent_at: None,
    }
}

#[tokio::test]
async fn a_push_is_placed_at_the_commit_within_its_run() {
    let (store, ids) = store_with(&["rec"]).await;
    // (run's first write, run's last write, where the push is shown)
    for (first, last, shown) in [
        // The commit falls inside the run: it was written as it was committed.
        (-3, 2, "2024-02-29T12:00:00.000Z"),
        // The run began after the commit (a socket that connected later).
        (1, 5, "2024-02-29T12:00:01.000Z"),
        // A run that ended before the commit, as recorded: its end.
        (-10, -5, "2024-02-29T11:59:55.000Z"),
        // A run whose ends are the wrong way round is its first write.
        (4, 2, "2024-02-29T12:00:04.000Z"),
    ] {
        let mut r = record(ids[0]);
        r.pushes.push(PushRecord {
            first_at: secs(first),
            sockets: 1,
            node: None,
            at: secs(last),
        });
        let v = timeline_value(store.as_ref(), r, Viewer::Operator)
            .await
            .unwrap();
        let push = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "pushed")
            .unwrap()
            .clone();
        assert_eq!(
            push,
            json!({"event": "pushed", "at": shown, "sockets": 1, "node": null}),
            "run {first}..{last}"
        );
    }
}

#[tokio::test]
async fn a_read_is_shown_only_while_the_notification_is_read() {
    let (store, ids) = store_with(&["rec"]).await;
    for (is_read, read_at, shown) in [
        (true, Some(secs(3)), true),
        // Marked unread again: the old read time stays in the row.
        (false, Some(secs(3)), false),
        (true, None, false),
        (false, None, false),
    ] {
        let mut r = record(ids[0]);
        r.notification.is_read = is_read;
        r.notification.read_at = read_at;
        let v = timeline_value(store.as_ref(), r, Viewer::Operator)
            .await
            .unwrap();
        assert_eq!(
            kinds(&v).contains(&"read"),
            shown,
            "is_read {is_read}, read_at {read_at:?}"
        );
    }
}

#[tokio::test]
async fn only_deliveries_still_to_go_are_pending() {
    let (store, ids) = store_with(&["rec"]).await;
    let mut r = record(ids[0]);
    for (id, status) in [(1, "QUEUED"), (2, "SENDING"), (3, "SENT"), (4, "FAILED")] {
        r.deliveries
            .push(delivery(id, Channel::Whatsapp, status, secs(10 - id)));
    }
    let v = timeline_value(store.as_ref(), r, Viewer::Operator)
        .await
        .unwrap();
    let pending: Vec<&Value> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "delivery_pending")
        .collect();
    assert_eq!(
        pending,
        [
            &json!({"event": "delivery_pending", "at": "2024-02-29T12:00:08.000Z", "delivery_id": 2, "channel": "whatsapp", "address": "whatsapp-address", "status": "SENDING", "attempts": 1}),
            &json!({"event": "delivery_pending", "at": "2024-02-29T12:00:09.000Z", "delivery_id": 1, "channel": "whatsapp", "address": "whatsapp-address", "status": "QUEUED", "attempts": 1}),
        ]
    );
}

#[tokio::test]
async fn a_recipient_s_timeline_hides_webhook_destinations_and_answers() {
    let (store, ids) = store_with(&["rec"]).await;
    let mut r = record(ids[0]);
    for (n, channel) in [(1, Channel::Email), (2, Channel::Webhook)] {
        r.attempts.push(DeliveryAttempt {
            delivery_id: n,
            channel,
            address: format!("{}-address", channel.as_str()),
            attempt: 1,
            outcome: "failed".into(),
            error: Some("boom".into()),
            node: Some("n1".into()),
            at: secs(n),
        });
        r.deliveries
            .push(delivery(n + 10, channel, "QUEUED", secs(n + 10)));
    }
    for (viewer, webhook_address, webhook_error) in [
        (Viewer::Operator, json!("webhook-address"), json!("boom")),
        (Viewer::Recipient, Value::Null, Value::Null),
    ] {
        let v = timeline_value(store.as_ref(), r.clone(), viewer)
            .await
            .unwrap();
        let e = &v["events"];
        assert_eq!(
            kinds(&v)[1..],
            [
                "delivery_attempt",
                "delivery_attempt",
                "delivery_pending",
                "delivery_pending"
            ]
        );
        assert_eq!(e[1]["address"], "email-address", "{viewer:?}");
        assert_eq!(e[1]["error"], "boom", "{viewer:?}");
        assert_eq!(e[2]["address"], webhook_address, "{viewer:?}");
        assert_eq!(e[2]["error"], webhook_error, "{viewer:?}");
        assert_eq!(e[3]["address"], "email-address", "{viewer:?}");
        assert_eq!(e[4]["address"], webhook_address, "{viewer:?}");
    }
}

#[tokio::test]
async fn a_settled_escalation_says_how_it_ended() {
    let (store, ids) = store_with(&["rec"]).await;
    // (status, the closing event and its key, if any)
    for (status, settled) in [
        ("PENDING", None),
        ("FIRING", None),
        ("FIRED", Some(("escalation_fired", "detail"))),
        ("CANCELLED", Some(("escalation_cancelled", "reason"))),
        ("FAILED", Some(("escalation_failed", "reason"))),
    ] {
        let mut r = record(ids[0]);
        r.escalations.push(step(status, Some("why"), 1, 400));
        let v = timeline_value(store.as_ref(), r, Viewer::Operator)
            .await
            .unwrap();
        let events = v["events"].as_array().unwrap();
        assert_eq!(
            events[1],
            json!({
                "event": "escalation_scheduled",
                "at": "2024-02-29T12:00:01.000Z",
                "escalation": {"policy": "sev1", "step": 2},
                "due_at": "2024-02-29T12:05:01.000Z",
                "unless": "acked",
                "channels": ["email", "whatsapp"],
                "also": ["admins"],
                "status": status,
            }),
            "{status}"
        );
        match settled {
            None => assert_eq!(events.len(), 2, "{status}"),
            Some((event, key)) => {
                assert_eq!(events.len(), 3, "{status}");
                let mut expected = json!({
                    "event": event,
                    "at": "2024-02-29T12:06:40.000Z",
                    "escalation": {"policy": "sev1", "step": 2},
                    "node": "node-a",
                });
                expected[key] = "why".into();
                assert_eq!(events[2], expected, "{status}");
            }
        }
    }
}

fn trace_doc(member: bool, events: Value) -> Value {
    json!({
        "ticket": {"key": "WEB-5", "title": "Löschen geht nicht", "status": "ASSIGNED", "project": {"key": "WEB"}},
        "user": {"username": "zoë", "role": "client", "member": member},
        "events": events,
    })
}

#[test]
fn a_trace_without_events_is_its_heading() {
    assert_eq!(
        render_trace(&trace_doc(true, json!([]))),
        "WEB-5 \"Löschen geht nicht\" (ASSIGNED) for zoë (client, member of WEB)\n"
    );
    assert_eq!(
        render_trace(&trace_doc(false, json!([]))),
        "WEB-5 \"Löschen geht nicht\" (ASSIGNED) for zoë (client, not a member of WEB)\n"
    );
    // Whatever is missing is shown as unknown.
    assert_eq!(
        render_trace(&json!({})),
        "? \"\" (?) for ? (?, not a member of ?)\n"
    );
}

#[test]
fn a_trace_says_per_event_who_was_told_on_which_channel_and_why_not() {
    let events = json!([
        {
            "at": "2024-02-29T12:00:00.000Z",
            "notification_type": "ticket_created",
            "action": "create",
            "actor": {"id": 1, "username": "zoë"},
            "recipient": false,
            "reason": "actor",
            "explanation": "zoë took this action (create) themselves, and nobody is told of their own action",
        },
        {
            "at": "2024-02-29T12:01:00.000Z",
            "notification_type": "work_started",
            "action": "start",
            "actor": null,
            "recipient": true,
            "explanation": "zoë was a recipient as creator",
            "channels": [
                {"channel": "email", "reached": true, "address": "z@example.com"},
                {"channel": "whatsapp", "reached": false, "explanation": "the user has no whatsapp address"},
            ],
            "notification": {"id": 12, "timeline": "/api/notifications/12/timeline/"},
        },
        {
            "at": "2024-02-29T12:02:00.000Z",
            "notification_type": "work_finished",
            "action": "finish",
            "actor": {"id": 2, "username": "dev"},
            "recipient": true,
            "explanation": "zoë was a recipient as creator",
            "channels": [],
            "notification": null,
        },
    ]);
    assert_eq!(
        render_trace(&trace_doc(true, events)),
        "WEB-5 \"Löschen geht nicht\" (ASSIGNED) for zoë (client, member of WEB)\n\
         \n\
         2024-02-29T12:00:00.000Z  ticket_created (create by zoë)\n\
         \x20 not notified (actor): zoë took this action (create) themselves, and nobody is told of their own action\n\
         \n\
         2024-02-29T12:01:00.000Z  work_started (start by -)\n\
         \x20 notified: zoë was a recipient as creator\n\
         \x20   email: to z@example.com\n\
         \x20   whatsapp: not sent, the user has no whatsapp address\n\
         \x20   timeline: /api/notifications/12/timeline/\n\
         \n\
         2024-02-29T12:02:00.000Z  work_finished (finish by dev)\n\
         \x20 notified: zoë was a recipient as creator\n\
         \x20   no notification was stored for this user\n"
    );
}
